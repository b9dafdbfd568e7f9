//! libxenctrl and libxenstore, loaded at run time with `libloading`: hvprof builds and runs on
//! hosts without Xen, and says clearly when the libraries are missing.
//!
//! Only these calls are used (prototypes from Xen 4.17's `tools/include/xenctrl.h` and
//! `tools/include/xenstore.h`):
//! - `xc_interface *xc_interface_open(xentoollog_logger *, xentoollog_logger *, unsigned)`,
//!   `int xc_interface_close(xc_interface *)`;
//! - `int xc_vcpu_getcontext(xc_interface *, uint32_t domid, uint32_t vcpu,
//!   vcpu_guest_context_any_t *)` (XEN_DOMCTL_getvcpucontext: Xen pauses the vCPU while it
//!   copies the registers);
//! - `int xc_vcpu_getinfo(xc_interface *, uint32_t domid, uint32_t vcpu, xc_vcpuinfo_t *)`;
//! - `int xc_version(xc_interface *, int cmd, void *arg)` with `XENVER_version` (0);
//! - `struct xs_handle *xs_open(unsigned long)`, `void xs_close(struct xs_handle *)`,
//!   `char **xs_directory(h, xs_transaction_t, const char *path, unsigned *num)`,
//!   `void *xs_read(h, xs_transaction_t, const char *path, unsigned *len)` (results are
//!   `malloc`ed; freed with `free`).

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CStr, CString};

use libloading::Library;

use super::abi::{DomctlGetvcpuinfo, VcpuGuestContextAny, VcpuRegs};
use super::error::{Result, XenError};

/// libxenctrl's file names, newest first (Debian: package libxenmisc4.NN).
const XENCTRL_NAMES: &[&str] = &[
    "libxenctrl.so",
    "libxenctrl.so.4.20",
    "libxenctrl.so.4.19",
    "libxenctrl.so.4.18",
    "libxenctrl.so.4.17",
    "libxenctrl.so.4.16",
];
/// libxenstore's file names (Debian: package libxenstore4).
const XENSTORE_NAMES: &[&str] = &["libxenstore.so", "libxenstore.so.4", "libxenstore.so.3.0"];

/// `XENVER_version` (xen/include/public/version.h): returns `major << 16 | minor`.
const XENVER_VERSION: c_int = 0;

/// Loads the first library of `names` that loads.
fn load(names: &[&str]) -> Result<(Library, String)> {
    let mut last = None;
    for n in names {
        // SAFETY: loading a Xen tools library runs its ELF constructors; Debian's
        // libxenctrl/libxenstore have none with preconditions on the caller.
        match unsafe { Library::new(n) } {
            Ok(l) => return Ok((l, n.to_string())),
            Err(e) => last = Some(e),
        }
    }
    Err(XenError::LibraryMissing {
        lib: names.join(" or "),
        source: last.unwrap_or(libloading::Error::DlOpenUnknown),
    })
}

/// Copies a function pointer of type `T` out of `lib`.
///
/// # Safety
/// `T` must be the C prototype of `symbol` in the loaded library.
unsafe fn sym<T: Copy>(lib: &Library, libname: &str, symbol: &'static str) -> Result<T> {
    // SAFETY: the caller vouches for the prototype; the name is NUL-terminated below.
    let s = unsafe { lib.get::<T>(format!("{symbol}\0").as_bytes()) };
    s.map(|s| *s).map_err(|source| XenError::SymbolMissing {
        lib: libname.to_string(),
        symbol,
        source,
    })
}

type XcOpen = unsafe extern "C" fn(*mut c_void, *mut c_void, c_uint) -> *mut c_void;
type XcClose = unsafe extern "C" fn(*mut c_void) -> c_int;
type XcGetContext = unsafe extern "C" fn(*mut c_void, u32, u32, *mut VcpuGuestContextAny) -> c_int;
type XcGetInfo = unsafe extern "C" fn(*mut c_void, u32, u32, *mut DomctlGetvcpuinfo) -> c_int;
type XcVersion = unsafe extern "C" fn(*mut c_void, c_int, *mut c_void) -> c_int;
type XsOpen = unsafe extern "C" fn(c_ulong) -> *mut c_void;
type XsClose = unsafe extern "C" fn(*mut c_void);
type XsDirectory =
    unsafe extern "C" fn(*mut c_void, u32, *const c_char, *mut c_uint) -> *mut *mut c_char;
type XsRead = unsafe extern "C" fn(*mut c_void, u32, *const c_char, *mut c_uint) -> *mut c_void;

/// An open `xc_interface` (privcmd underneath; root in dom0 only).
pub struct XenCtrl {
    handle: *mut c_void,
    close: XcClose,
    getcontext: XcGetContext,
    getinfo: XcGetInfo,
    version: XcVersion,
    _lib: Library,
}

impl std::fmt::Debug for XenCtrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("XenCtrl")
    }
}

// SAFETY: an xc_interface may move between threads; it must not be used by two at once
// (xenctrl.h), which `&mut self` on every call ensures: `XenCtrl` is `Send`, not `Sync`.
unsafe impl Send for XenCtrl {}

impl XenCtrl {
    /// Loads libxenctrl and opens an interface.
    ///
    /// # Errors
    /// The library or one of its symbols is missing, or `xc_interface_open` fails (not dom0,
    /// not root, privcmd not loaded).
    pub fn open() -> Result<XenCtrl> {
        let (lib, name) = load(XENCTRL_NAMES)?;
        // SAFETY: the prototypes are those of xenctrl.h (Xen 4.17), see the module docs.
        let (open, close, getcontext, getinfo, version) = unsafe {
            (
                sym::<XcOpen>(&lib, &name, "xc_interface_open")?,
                sym::<XcClose>(&lib, &name, "xc_interface_close")?,
                sym::<XcGetContext>(&lib, &name, "xc_vcpu_getcontext")?,
                sym::<XcGetInfo>(&lib, &name, "xc_vcpu_getinfo")?,
                sym::<XcVersion>(&lib, &name, "xc_version")?,
            )
        };
        // SAFETY: NULL loggers are allowed (libxenctrl then logs to stderr); flags 0.
        let handle = unsafe { open(std::ptr::null_mut(), std::ptr::null_mut(), 0) };
        if handle.is_null() {
            return Err(XenError::Call {
                call: "xc_interface_open".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(XenCtrl {
            handle,
            close,
            getcontext,
            getinfo,
            version,
            _lib: lib,
        })
    }

    /// The hypervisor's version, `major.minor`.
    pub fn xen_version(&mut self) -> Option<(u32, u32)> {
        // SAFETY: XENVER_version takes no argument; the handle is open.
        let v = unsafe { (self.version)(self.handle, XENVER_VERSION, std::ptr::null_mut()) };
        (v > 0).then_some(((v as u32) >> 16, (v as u32) & 0xffff))
    }
}

impl Drop for XenCtrl {
    fn drop(&mut self) {
        // SAFETY: the handle came from xc_interface_open and is closed once.
        unsafe { (self.close)(self.handle) };
    }
}

/// One vCPU as `XEN_DOMCTL_getvcpuinfo` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VcpuInfo {
    /// Online (not hot-unplugged).
    pub online: bool,
    /// Blocked waiting for an event.
    pub blocked: bool,
    /// Running on its pCPU now.
    pub running: bool,
    /// CPU time consumed since the domain started, ns.
    pub cpu_time_ns: u64,
    /// The pCPU it is on (or was last on).
    pub pcpu: u32,
}

/// What the Xen backend asks of the hypervisor about vCPUs: libxenctrl in dom0, a table in
/// unit tests.
pub trait VcpuSource {
    /// `XEN_DOMCTL_getvcpuinfo` for one vCPU.
    ///
    /// # Errors
    /// The domctl fails (no such domain or vCPU, not privileged).
    fn vcpu_info(&mut self, domid: u32, vcpu: u32) -> Result<VcpuInfo>;
    /// `XEN_DOMCTL_getvcpucontext` for one vCPU: its registers. Xen pauses the vCPU while it
    /// copies them.
    ///
    /// # Errors
    /// The domctl fails.
    fn vcpu_regs(&mut self, domid: u32, vcpu: u32) -> Result<VcpuRegs>;
}

impl VcpuSource for XenCtrl {
    fn vcpu_info(&mut self, domid: u32, vcpu: u32) -> Result<VcpuInfo> {
        let mut i = DomctlGetvcpuinfo {
            vcpu,
            ..Default::default()
        };
        // SAFETY: `i` is an xc_vcpuinfo_t (layout checked in abi.rs); the handle is open.
        let rc = unsafe { (self.getinfo)(self.handle, domid, vcpu, &mut i) };
        if rc != 0 {
            return Err(XenError::Call {
                call: format!("xc_vcpu_getinfo(domain {domid}, vCPU {vcpu})"),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(VcpuInfo {
            online: i.online != 0,
            blocked: i.blocked != 0,
            running: i.running != 0,
            cpu_time_ns: i.cpu_time,
            pcpu: i.cpu,
        })
    }

    fn vcpu_regs(&mut self, domid: u32, vcpu: u32) -> Result<VcpuRegs> {
        let mut c = Box::new(VcpuGuestContextAny::zeroed());
        // SAFETY: `c` is a vcpu_guest_context_any_t of 8 KiB (larger than every member of the
        // union, layout checked in abi.rs); the handle is open.
        let rc = unsafe { (self.getcontext)(self.handle, domid, vcpu, &mut *c) };
        if rc != 0 {
            return Err(XenError::Call {
                call: format!("xc_vcpu_getcontext(domain {domid}, vCPU {vcpu})"),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(VcpuRegs::of(&c.x64))
    }
}

/// An open connection to xenstored (libxenstore).
pub struct XenStoreLib {
    handle: *mut c_void,
    close: XsClose,
    directory: XsDirectory,
    read: XsRead,
    _lib: Library,
}

impl std::fmt::Debug for XenStoreLib {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("XenStoreLib")
    }
}

/// Entries of one `xs_directory` answer kept (bounds what a broken xenstored can make us walk).
const MAX_DIR_ENTRIES: usize = 65_536;
/// Bytes of one `xs_read` answer kept (xenstore values are at most 4 KiB, XENSTORE_PAYLOAD_MAX).
const MAX_VALUE: usize = 4096;

impl XenStoreLib {
    /// Loads libxenstore and connects (`xs_open(0)`).
    ///
    /// # Errors
    /// The library or a symbol is missing, or xenstored cannot be reached.
    pub fn open() -> Result<XenStoreLib> {
        let (lib, name) = load(XENSTORE_NAMES)?;
        // SAFETY: the prototypes are those of xenstore.h (Xen 4.17), see the module docs.
        let (open, close, directory, read) = unsafe {
            (
                sym::<XsOpen>(&lib, &name, "xs_open")?,
                sym::<XsClose>(&lib, &name, "xs_close")?,
                sym::<XsDirectory>(&lib, &name, "xs_directory")?,
                sym::<XsRead>(&lib, &name, "xs_read")?,
            )
        };
        // SAFETY: flags 0 = a read-write connection, socket or xenbus device.
        let handle = unsafe { open(0) };
        if handle.is_null() {
            return Err(XenError::Call {
                call: "xs_open".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(XenStoreLib {
            handle,
            close,
            directory,
            read,
            _lib: lib,
        })
    }

    /// `xs_directory(path)`: the names of its children (empty when absent).
    pub fn directory(&self, path: &str) -> Vec<String> {
        let Ok(p) = CString::new(path) else {
            return Vec::new();
        };
        let mut n: c_uint = 0;
        // SAFETY: the handle is open, `p` is NUL-terminated, `n` receives the count.
        let list = unsafe { (self.directory)(self.handle, 0, p.as_ptr(), &mut n) };
        if list.is_null() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for i in 0..(n as usize).min(MAX_DIR_ENTRIES) {
            // SAFETY: xs_directory returns `n` pointers to NUL-terminated strings, in one
            // malloc'ed block that is freed below.
            let s = unsafe { CStr::from_ptr(*list.add(i)) };
            out.push(s.to_string_lossy().into_owned());
        }
        // SAFETY: the block came from malloc in libxenstore (xenstore.h: "free() it").
        unsafe { libc::free(list.cast()) };
        out
    }

    /// `xs_read(path)`: its value, if present.
    pub fn read(&self, path: &str) -> Option<String> {
        let p = CString::new(path).ok()?;
        let mut len: c_uint = 0;
        // SAFETY: the handle is open, `p` is NUL-terminated, `len` receives the length.
        let v = unsafe { (self.read)(self.handle, 0, p.as_ptr(), &mut len) };
        if v.is_null() {
            return None;
        }
        let n = (len as usize).min(MAX_VALUE);
        // SAFETY: xs_read returns `len` bytes (plus a NUL) in a malloc'ed block.
        let bytes = unsafe { std::slice::from_raw_parts(v.cast::<u8>(), n) };
        let s = String::from_utf8_lossy(bytes).into_owned();
        // SAFETY: the block came from malloc in libxenstore.
        unsafe { libc::free(v) };
        Some(s)
    }
}

impl Drop for XenStoreLib {
    fn drop(&mut self) {
        // SAFETY: the handle came from xs_open and is closed once.
        unsafe { (self.close)(self.handle) };
    }
}

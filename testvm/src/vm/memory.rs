//! Guest physical memory: one anonymous host mapping backing GPA 0 up to
//! [`TestVmConfig::mem_bytes`](crate::TestVmConfig::mem_bytes).
//!
//! Input: a size in bytes. Output: [`GuestMemory`], whose `Drop` unmaps it;
//! writes while the image is built, then volatile aligned `u64` reads and
//! writes of the control blocks the guest updates concurrently.

use std::io;
use std::ptr::NonNull;

use crate::Error;

/// Anonymous private mapping backing guest physical memory from GPA 0.
pub(super) struct GuestMemory {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this struct; all accesses after
// setup go through volatile reads/writes of aligned u64s, which are sound to
// perform from any thread (the guest writes the same memory concurrently, as
// another CPU would).
unsafe impl Send for GuestMemory {}
// SAFETY: see `Send`: shared access only uses volatile aligned u64 accesses.
unsafe impl Sync for GuestMemory {}

impl GuestMemory {
    /// Maps `bytes` bytes of zeroed, lazily allocated (`MAP_NORESERVE`)
    /// memory.
    ///
    /// # Errors
    ///
    /// [`Error::Mmap`] if `mmap(2)` fails.
    pub(super) fn new(bytes: u64) -> Result<Self, Error> {
        let len = bytes as usize;
        // SAFETY: anonymous mapping request with no address hint; the result
        // is checked for MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::Mmap {
                bytes,
                source: io::Error::last_os_error(),
            });
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| Error::Mmap {
            bytes,
            source: io::Error::other("mmap returned NULL"),
        })?;
        Ok(GuestMemory { ptr, len })
    }

    /// The host virtual address of GPA 0, for
    /// `kvm_userspace_memory_region::userspace_addr`.
    pub(super) fn host_addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    fn check(&self, gpa: u64, len: usize) {
        assert!(
            gpa as usize <= self.len && len <= self.len - gpa as usize,
            "guest range {gpa:#x}+{len:#x} outside {:#x} bytes of guest memory",
            self.len
        );
    }

    /// Copies `bytes` to guest physical address `gpa`. Only used while
    /// building the image, before any vCPU runs.
    ///
    /// # Panics
    ///
    /// If the range is outside guest memory (a bug in the layout).
    pub(super) fn write_bytes(&self, gpa: u64, bytes: &[u8]) {
        self.check(gpa, bytes.len());
        // SAFETY: the range was bounds-checked against our mapping, `bytes`
        // cannot overlap it (it is Rust-owned memory), and no vCPU runs yet.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr.as_ptr().add(gpa as usize),
                bytes.len(),
            )
        };
    }

    /// Writes the `u64` at guest physical address `gpa` (volatile).
    ///
    /// # Panics
    ///
    /// If `gpa` is outside guest memory or not 8-aligned.
    pub(super) fn write_u64(&self, gpa: u64, val: u64) {
        self.check(gpa, 8);
        assert_eq!(gpa % 8, 0);
        // SAFETY: in bounds (checked), 8-aligned (the mapping is page
        // aligned), and volatile because the guest may access it concurrently.
        unsafe { std::ptr::write_volatile(self.ptr.as_ptr().add(gpa as usize).cast::<u64>(), val) };
    }

    /// Reads the `u64` at guest physical address `gpa` (volatile).
    ///
    /// # Panics
    ///
    /// If `gpa` is outside guest memory or not 8-aligned.
    pub(super) fn read_u64(&self, gpa: u64) -> u64 {
        self.check(gpa, 8);
        assert_eq!(gpa % 8, 0);
        // SAFETY: in bounds, aligned, volatile as for `write_u64`.
        unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(gpa as usize).cast::<u64>()) }
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region mmap returned; no references
        // into it outlive `self` (all accesses copy values out).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

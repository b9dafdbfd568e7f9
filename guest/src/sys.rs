//! Every `unsafe` of the hvprof-guest crate: `perf_event_open(2)` and its ioctls, the perf
//! ring buffer and metadata page, `rdtsc`, `poll(2)`, signal handlers and AF_VSOCK sockets.
//!
//! Each block states why it is sound. Everything else in the crate is safe code on top.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use memmap2::{MmapOptions, MmapRaw};
use perf_event_open_sys as pes;
use perf_event_open_sys::bindings::{perf_event_attr, perf_event_mmap_page};

/// Opens a perf event (`PERF_FLAG_FD_CLOEXEC`, no group). `attr.size` is set here.
///
/// # Errors
/// The kernel's errno.
pub fn perf_event_open(attr: &mut perf_event_attr, pid: i32, cpu: i32) -> io::Result<File> {
    attr.size = std::mem::size_of::<perf_event_attr>() as u32;
    // SAFETY: `attr` is a valid, initialised perf_event_attr whose `size` matches the struct;
    // the kernel reads it and may write back `size` (E2BIG), which `&mut` allows.
    let fd = unsafe {
        pes::perf_event_open(
            attr as *mut perf_event_attr,
            pid,
            cpu,
            -1,
            pes::bindings::PERF_FLAG_FD_CLOEXEC as libc::c_ulong,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// `PERF_EVENT_IOC_ENABLE` (`on`) or `PERF_EVENT_IOC_DISABLE`.
///
/// # Errors
/// The kernel's errno.
pub fn perf_enable(f: &File, on: bool) -> io::Result<()> {
    let fd = f.as_raw_fd();
    // SAFETY: `fd` is a live perf event fd (borrowed from `f`); both ioctls take an int.
    let r = unsafe {
        if on {
            pes::ioctls::ENABLE(fd, 0)
        } else {
            pes::ioctls::DISABLE(fd, 0)
        }
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The system page size in bytes.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as usize
    } else {
        4096
    }
}

/// Clock fields of a perf metadata page, read under its seqlock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageClock {
    /// `cap_user_time_zero`.
    pub cap_user_time_zero: bool,
    /// `cap_user_time_short`.
    pub cap_user_time_short: bool,
    /// `time_shift`.
    pub time_shift: u16,
    /// `time_mult`.
    pub time_mult: u32,
    /// `time_zero`.
    pub time_zero: u64,
    /// `time_cycles`.
    pub time_cycles: u64,
    /// `time_mask`.
    pub time_mask: u64,
}

impl PageClock {
    /// Converts a TSC value to the perf local clock, in ns (perf_event.h, `time_zero` comment).
    pub fn tsc_to_ns(&self, mut cyc: u64) -> u64 {
        if self.cap_user_time_short {
            cyc = self
                .time_cycles
                .wrapping_add(cyc.wrapping_sub(self.time_cycles) & self.time_mask);
        }
        let shift = u32::from(self.time_shift.min(63));
        let quot = cyc >> shift;
        let rem = cyc & ((1u64 << shift) - 1);
        self.time_zero
            .wrapping_add(quot.wrapping_mul(u64::from(self.time_mult)))
            .wrapping_add(rem.wrapping_mul(u64::from(self.time_mult)) >> shift)
    }
}

/// A perf event's mapping: the metadata page plus `2^n` data pages (0 data pages maps the
/// metadata page only, for its clock fields).
#[derive(Debug)]
pub struct Ring {
    map: MmapRaw,
    data_offset: usize,
    data_size: usize,
}

// SAFETY: the mapping is owned by this value and only touched through atomics and copies, so
// moving it to another thread is sound.
unsafe impl Send for Ring {}

const OFF_LOCK: usize = std::mem::offset_of!(perf_event_mmap_page, lock);
const OFF_CAPS: usize = std::mem::offset_of!(perf_event_mmap_page, __bindgen_anon_1);
const OFF_SHIFT: usize = std::mem::offset_of!(perf_event_mmap_page, time_shift);
const OFF_MULT: usize = std::mem::offset_of!(perf_event_mmap_page, time_mult);
const OFF_ZERO: usize = std::mem::offset_of!(perf_event_mmap_page, time_zero);
const OFF_CYCLES: usize = std::mem::offset_of!(perf_event_mmap_page, time_cycles);
const OFF_MASK: usize = std::mem::offset_of!(perf_event_mmap_page, time_mask);
const OFF_HEAD: usize = std::mem::offset_of!(perf_event_mmap_page, data_head);
const OFF_TAIL: usize = std::mem::offset_of!(perf_event_mmap_page, data_tail);
const OFF_DOFF: usize = std::mem::offset_of!(perf_event_mmap_page, data_offset);
const OFF_DSIZE: usize = std::mem::offset_of!(perf_event_mmap_page, data_size);
const _: () = assert!(OFF_HEAD == 1024 && OFF_TAIL == 1032 && OFF_DOFF == 1040);
const _: () = assert!(OFF_CAPS == 40 && OFF_SHIFT == 50 && OFF_MULT == 52 && OFF_ZERO == 64);
const _: () = assert!(OFF_CYCLES == 80 && OFF_MASK == 88 && OFF_LOCK == 8);

impl Ring {
    /// Maps `f` with `data_pages` data pages (0 or a power of two).
    ///
    /// # Errors
    /// `mmap(2)`'s errno; `InvalidInput` for a bad page count or an inconsistent page.
    pub fn map(f: &File, data_pages: usize) -> io::Result<Ring> {
        if data_pages != 0 && !data_pages.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ring pages must be 0 or a power of two",
            ));
        }
        let page = page_size();
        let len = page * (1 + data_pages);
        let map = MmapOptions::new().len(len).map_raw(f)?;
        let mut ring = Ring {
            map,
            data_offset: page,
            data_size: page * data_pages,
        };
        if data_pages > 0 {
            let off = ring.load_u64(OFF_DOFF) as usize;
            let size = ring.load_u64(OFF_DSIZE) as usize;
            if size != 0 {
                if !size.is_power_of_two() || off.checked_add(size).is_none_or(|e| e > len) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "perf metadata page announces a data area outside the mapping",
                    ));
                }
                ring.data_offset = off;
                ring.data_size = size;
            }
        }
        Ok(ring)
    }

    fn load_u64(&self, off: usize) -> u64 {
        // SAFETY: `off` is one of the constant offsets above, 8-aligned and inside the first
        // page of the live mapping; the kernel updates these fields concurrently, so read
        // them volatile.
        unsafe { std::ptr::read_volatile(self.map.as_ptr().add(off) as *const u64) }
    }

    fn load_u32(&self, off: usize) -> u32 {
        // SAFETY: as in `load_u64`, for a 4-aligned u32 field.
        unsafe { std::ptr::read_volatile(self.map.as_ptr().add(off) as *const u32) }
    }

    fn load_u16(&self, off: usize) -> u16 {
        // SAFETY: as in `load_u64`, for a 2-aligned u16 field.
        unsafe { std::ptr::read_volatile(self.map.as_ptr().add(off) as *const u16) }
    }

    /// Reads the clock fields under the page's seqlock (`lock`, perf_event.h).
    pub fn clock(&self) -> PageClock {
        for _ in 0..1000 {
            let seq = self.load_u32(OFF_LOCK);
            std::sync::atomic::fence(Ordering::Acquire);
            let caps = self.load_u64(OFF_CAPS);
            let c = PageClock {
                // bit 4: cap_user_time_zero, bit 5: cap_user_time_short (perf_event.h).
                cap_user_time_zero: caps & (1 << 4) != 0,
                cap_user_time_short: caps & (1 << 5) != 0,
                time_shift: self.load_u16(OFF_SHIFT),
                time_mult: self.load_u32(OFF_MULT),
                time_zero: self.load_u64(OFF_ZERO),
                time_cycles: self.load_u64(OFF_CYCLES),
                time_mask: self.load_u64(OFF_MASK),
            };
            std::sync::atomic::fence(Ordering::Acquire);
            if self.load_u32(OFF_LOCK) == seq && seq & 1 == 0 {
                return c;
            }
        }
        PageClock::default()
    }

    fn head(&self) -> &AtomicU64 {
        // SAFETY: data_head is an 8-aligned u64 inside the live mapping, which outlives the
        // returned reference (tied to &self); AtomicU64 has the same layout as u64.
        unsafe { &*(self.map.as_ptr().add(OFF_HEAD) as *const AtomicU64) }
    }

    fn tail(&self) -> &AtomicU64 {
        // SAFETY: as in `head`, for data_tail.
        unsafe { &*(self.map.as_ptr().add(OFF_TAIL) as *const AtomicU64) }
    }

    /// Copies the published records (`[data_tail, data_head)`) to `out`, contiguous, and
    /// hands the space back to the kernel. Returns the bytes copied.
    pub fn drain_into(&mut self, out: &mut Vec<u8>) -> usize {
        if self.data_size == 0 {
            return 0;
        }
        let head = self.head().load(Ordering::Acquire);
        let tail = self.tail().load(Ordering::Relaxed);
        let avail = head.wrapping_sub(tail) as usize;
        let avail = avail.min(self.data_size);
        let mask = self.data_size - 1;
        let start = (tail as usize) & mask;
        let first = avail.min(self.data_size - start);
        // SAFETY: `data_offset + data_size` lies inside the mapping (checked in `map`);
        // `start + first <= data_size` and `avail - first <= start`, so both ranges are in
        // the data area; the kernel does not write `[tail, head)` until data_tail moves.
        unsafe {
            let base = self.map.as_ptr().add(self.data_offset);
            out.extend_from_slice(std::slice::from_raw_parts(base.add(start), first));
            out.extend_from_slice(std::slice::from_raw_parts(base, avail - first));
        }
        self.tail()
            .store(tail.wrapping_add(avail as u64), Ordering::Release);
        avail
    }
}

/// Reads the CPU's time-stamp counter (`rdtsc`), or 0 on other architectures.
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions on x86-64 (every x86-64 CPU has it).
        #[allow(unused_unsafe)]
        unsafe {
            core::arch::x86_64::_rdtsc()
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// `clock_gettime(clock)` in ns.
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let r = unsafe { libc::clock_gettime(clock, &mut ts) };
    if r != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Result of [`poll_one`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollState {
    /// Readable.
    pub readable: bool,
    /// Writable.
    pub writable: bool,
    /// Hung up (a virtio-serial port whose host side is not connected).
    pub hangup: bool,
}

/// `poll(2)` on one fd for input (and output when `write`), waiting at most `timeout`.
/// Hang-up is always reported.
///
/// # Errors
/// poll's errno (EINTR is reported as nothing ready).
pub fn poll_one(fd: RawFd, write: bool, timeout: Duration) -> io::Result<PollState> {
    let mut p = libc::pollfd {
        fd,
        events: if write {
            libc::POLLIN | libc::POLLOUT
        } else {
            libc::POLLIN
        },
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd, count 1.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(PollState {
                readable: false,
                writable: false,
                hangup: false,
            });
        }
        return Err(e);
    }
    Ok(PollState {
        readable: p.revents & libc::POLLIN != 0,
        writable: p.revents & libc::POLLOUT != 0,
        hangup: p.revents & (libc::POLLHUP | libc::POLLERR) != 0,
    })
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Installs SIGINT/SIGTERM handlers that set a flag read by [`stop_requested`]; ignores
/// SIGPIPE (a closed channel is seen as an `EPIPE` write error instead).
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` is async-signal-safe (one atomic store) and has the
        // `extern "C" fn(c_int)` signature `signal` expects.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
    // SAFETY: SIG_IGN is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// True once SIGINT or SIGTERM arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

fn vsock_addr(cid: u32, port: u32) -> libc::sockaddr_vm {
    // SAFETY: sockaddr_vm is plain old data; all-zero is a valid value.
    let mut a: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    a.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    a.svm_cid = cid;
    a.svm_port = port;
    a
}

fn vsock_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) has no memory preconditions.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Connects an AF_VSOCK stream socket to `cid:port`; the stream is returned as a `File`
/// (read/write work on sockets).
///
/// # Errors
/// socket/connect errno (`EAFNOSUPPORT` without vsock support).
pub fn vsock_connect(cid: u32, port: u32) -> io::Result<File> {
    let s = vsock_socket()?;
    let a = vsock_addr(cid, port);
    // SAFETY: `a` is a valid sockaddr_vm and the length passed is its size.
    let r = unsafe {
        libc::connect(
            s.as_raw_fd(),
            &a as *const libc::sockaddr_vm as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(File::from(s))
}

/// A listening AF_VSOCK socket.
#[derive(Debug)]
pub struct VsockListener(OwnedFd);

impl VsockListener {
    /// Binds `VMADDR_CID_ANY:port` and listens.
    ///
    /// # Errors
    /// socket/bind/listen errno.
    pub fn bind(port: u32) -> io::Result<VsockListener> {
        let s = vsock_socket()?;
        let a = vsock_addr(libc::VMADDR_CID_ANY, port);
        // SAFETY: `a` is a valid sockaddr_vm and the length passed is its size.
        let r = unsafe {
            libc::bind(
                s.as_raw_fd(),
                &a as *const libc::sockaddr_vm as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: listen(2) on a socket we own.
        if unsafe { libc::listen(s.as_raw_fd(), 1) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(VsockListener(s))
    }

    /// Accepts one connection: the stream and the peer's CID.
    ///
    /// # Errors
    /// accept's errno.
    pub fn accept(&self) -> io::Result<(File, u32)> {
        let mut a = vsock_addr(0, 0);
        let mut len = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
        // SAFETY: `a`/`len` describe a writable sockaddr_vm buffer of the given size.
        let fd = unsafe {
            libc::accept4(
                self.0.as_raw_fd(),
                &mut a as *mut libc::sockaddr_vm as *mut libc::sockaddr,
                &mut len,
                libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        let f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok((f, a.svm_cid))
    }

    /// The listening fd (for `poll`).
    pub fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// `shutdown(fd, SHUT_RDWR)`, ignoring errors (wakes a thread blocked in `read`).
pub fn shutdown(fd: RawFd) {
    // SAFETY: shutdown(2) has no memory preconditions; a bad fd only yields an errno.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsc_conversion_matches_header_formula() {
        let c = PageClock {
            cap_user_time_zero: true,
            time_shift: 10,
            time_mult: 512, // 0.5 ns per cycle
            time_zero: 1000,
            ..PageClock::default()
        };
        assert_eq!(c.tsc_to_ns(0), 1000);
        assert_eq!(c.tsc_to_ns(2000), 2000);
        assert_eq!(c.tsc_to_ns(2001), 2000);
    }
}

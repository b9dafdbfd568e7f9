//! `perf_event_open(2)` and the `PERF_EVENT_IOC_*` ioctls, as an owned [`PerfFd`].

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use perf_event_open_sys as sys;
use perf_event_open_sys::bindings::perf_event_attr;

use crate::error::{Error, Result};

/// What a perf event observes: one thread on any CPU, or every task on one CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// One thread (`pid = tid, cpu = -1`).
    Thread(i32),
    /// One CPU, all tasks (`pid = -1, cpu = n`): system-wide profiling; needs
    /// `perf_event_paranoid <= 0` or CAP_PERFMON.
    Cpu(u32),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Thread(t) => write!(f, "tid {t}"),
            Target::Cpu(c) => write!(f, "cpu {c}"),
        }
    }
}

/// An open perf event file descriptor.
#[derive(Debug)]
pub struct PerfFd {
    file: File,
    target: Target,
}

impl PerfFd {
    /// Opens an event with `attr` on `target` (`PERF_FLAG_FD_CLOEXEC`, no group).
    ///
    /// `attr.size` is set here. `event` is only used in the error message.
    ///
    /// # Errors
    /// [`Error::PerfEventOpen`] with the kernel's errno: `EACCES`/`EPERM` for
    /// perf_event_paranoid or missing CAP_PERFMON, `ENOENT`/`EOPNOTSUPP` for an event the
    /// hardware lacks, `ESRCH` for a thread that is gone.
    pub fn open(attr: &mut perf_event_attr, target: Target, event: &str) -> Result<PerfFd> {
        attr.size = std::mem::size_of::<perf_event_attr>() as u32;
        let (pid, cpu) = match target {
            Target::Thread(tid) => (tid, -1),
            Target::Cpu(c) => (-1, c as i32),
        };
        // SAFETY: `attr` is a valid, fully initialised perf_event_attr whose `size` matches the
        // struct we pass; the kernel only reads it (and may write back `size` on E2BIG).
        let fd = unsafe {
            sys::perf_event_open(
                attr as *mut perf_event_attr,
                pid,
                cpu,
                -1,
                sys::bindings::PERF_FLAG_FD_CLOEXEC as libc::c_ulong,
            )
        };
        if fd < 0 {
            return Err(Error::PerfEventOpen {
                target: target.to_string(),
                event: event.to_string(),
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: `fd` was just returned by the kernel, is valid and owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(PerfFd {
            file: File::from(owned),
            target,
        })
    }

    /// A second handle to the same event (`dup(2)`), e.g. to enable or disable it from another
    /// thread than the one reading its ring buffer.
    ///
    /// # Errors
    /// [`Error::Sys`] when `dup` fails.
    pub fn try_clone(&self) -> Result<PerfFd> {
        let file = self.file.try_clone().map_err(|source| Error::Sys {
            op: "dup(perf event fd)",
            source,
        })?;
        Ok(PerfFd {
            file,
            target: self.target,
        })
    }

    /// The target this event observes.
    pub fn target(&self) -> Target {
        self.target
    }

    /// The underlying file (for `mmap` and `poll`).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// `PERF_EVENT_IOC_ENABLE`.
    ///
    /// # Errors
    /// [`Error::PerfIoctl`].
    pub fn enable(&self) -> Result<()> {
        // SAFETY: the fd is a live perf event fd; ENABLE takes an integer argument.
        let r = unsafe { sys::ioctls::ENABLE(self.file.as_raw_fd(), 0) };
        check(r, "PERF_EVENT_IOC_ENABLE")
    }

    /// `PERF_EVENT_IOC_DISABLE`.
    ///
    /// # Errors
    /// [`Error::PerfIoctl`].
    pub fn disable(&self) -> Result<()> {
        // SAFETY: the fd is a live perf event fd; DISABLE takes an integer argument.
        let r = unsafe { sys::ioctls::DISABLE(self.file.as_raw_fd(), 0) };
        check(r, "PERF_EVENT_IOC_DISABLE")
    }

    /// Reads the event's count (`read(2)` with `read_format = 0`: one `u64`).
    ///
    /// # Errors
    /// [`Error::Sys`] when the read fails or is short.
    pub fn read_count(&self) -> Result<u64> {
        use std::io::Read;
        let mut buf = [0u8; 8];
        (&self.file)
            .read_exact(&mut buf)
            .map_err(|source| Error::Sys {
                op: "read(perf event count)",
                source,
            })?;
        Ok(u64::from_ne_bytes(buf))
    }
}

fn check(r: libc::c_int, op: &'static str) -> Result<()> {
    if r < 0 {
        Err(Error::PerfIoctl {
            op,
            source: io::Error::last_os_error(),
        })
    } else {
        Ok(())
    }
}

/// Returns a zeroed `perf_event_attr` (all flags off, size set by [`PerfFd::open`]).
pub fn zeroed_attr() -> perf_event_attr {
    perf_event_attr::default()
}

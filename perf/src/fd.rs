//! `perf_event_open(2)` and the `PERF_EVENT_IOC_*` ioctls, as an owned [`PerfFd`].

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use perf_event_open_sys as sys;
use perf_event_open_sys::bindings::perf_event_attr;

use crate::error::{Error, Result};

/// What a perf event observes (the `pid`/`cpu` pair of perf_event_open(2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// One thread on any CPU (`pid = tid, cpu = -1`); `Thread(0)` is the calling thread.
    Thread(i32),
    /// Every task on one CPU (`pid = -1, cpu = n`): system-wide profiling; needs
    /// `kernel.perf_event_paranoid <= 0` or CAP_PERFMON.
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

/// An open perf event file descriptor; closed on drop.
#[derive(Debug)]
pub struct PerfFd {
    file: File,
    target: Target,
}

impl PerfFd {
    /// Opens an event described by `attr` on `target` (`PERF_FLAG_FD_CLOEXEC`, no group).
    /// `attr.size` is set to this build's struct size; `event` names it in errors.
    ///
    /// # Errors
    /// [`Error::Open`] with the kernel's errno (see there for their meanings).
    pub fn open(attr: &perf_event_attr, target: Target, event: &str) -> Result<PerfFd> {
        let mut attr = *attr;
        attr.size = std::mem::size_of::<perf_event_attr>() as u32;
        let (pid, cpu) = match target {
            Target::Thread(tid) => (tid, -1),
            Target::Cpu(c) => (-1, c as i32),
        };
        // SAFETY: `attr` is a valid, fully initialised perf_event_attr whose `size` matches the
        // struct we pass; the kernel reads it and may write back `size` (E2BIG) into our copy.
        let fd = unsafe {
            sys::perf_event_open(
                &mut attr,
                pid,
                cpu,
                -1,
                sys::bindings::PERF_FLAG_FD_CLOEXEC as libc::c_ulong,
            )
        };
        if fd < 0 {
            return Err(Error::Open {
                target,
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
    /// [`Error::Fd`] when `dup` fails.
    pub fn try_clone(&self) -> Result<PerfFd> {
        let file = self
            .file
            .try_clone()
            .map_err(|source| self.fd_error("dup", source))?;
        Ok(PerfFd {
            file,
            target: self.target,
        })
    }

    /// The target this event observes.
    pub fn target(&self) -> Target {
        self.target
    }

    /// The underlying file (for `mmap(2)` and `poll(2)`).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// `PERF_EVENT_IOC_ENABLE`: start counting and sampling.
    ///
    /// # Errors
    /// [`Error::Fd`].
    pub fn enable(&self) -> Result<()> {
        // SAFETY: the fd is a live perf event fd; ENABLE takes an integer argument.
        let r = unsafe { sys::ioctls::ENABLE(self.file.as_raw_fd(), 0) };
        self.check(r, "PERF_EVENT_IOC_ENABLE")
    }

    /// `PERF_EVENT_IOC_DISABLE`: stop counting and sampling.
    ///
    /// # Errors
    /// [`Error::Fd`].
    pub fn disable(&self) -> Result<()> {
        // SAFETY: the fd is a live perf event fd; DISABLE takes an integer argument.
        let r = unsafe { sys::ioctls::DISABLE(self.file.as_raw_fd(), 0) };
        self.check(r, "PERF_EVENT_IOC_DISABLE")
    }

    /// Enables (`on`) or disables the event.
    ///
    /// # Errors
    /// [`Error::Fd`].
    pub fn set_enabled(&self, on: bool) -> Result<()> {
        if on {
            self.enable()
        } else {
            self.disable()
        }
    }

    /// The event's id (`PERF_EVENT_IOC_ID`): the value its records carry in `PERF_SAMPLE_ID`
    /// / `PERF_SAMPLE_IDENTIFIER`, and what a perf.data attr lists in its ids.
    ///
    /// # Errors
    /// [`Error::Fd`].
    pub fn id(&self) -> Result<u64> {
        let mut id = 0u64;
        // SAFETY: the fd is a live perf event fd; ID writes one u64 through the pointer, which
        // points at `id`, alive for the call.
        let r = unsafe { sys::ioctls::ID(self.file.as_raw_fd(), &mut id) };
        self.check(r, "PERF_EVENT_IOC_ID")?;
        Ok(id)
    }

    /// Reads the event's count (`read(2)` with `read_format = 0`: one `u64`, in events).
    ///
    /// # Errors
    /// [`Error::Fd`] when the read fails or is short.
    pub fn read_count(&self) -> Result<u64> {
        let mut buf = [0u8; 8];
        (&self.file)
            .read_exact(&mut buf)
            .map_err(|source| self.fd_error("read(count)", source))?;
        Ok(u64::from_ne_bytes(buf))
    }

    fn check(&self, r: libc::c_int, op: &'static str) -> Result<()> {
        if r < 0 {
            Err(self.fd_error(op, io::Error::last_os_error()))
        } else {
            Ok(())
        }
    }

    fn fd_error(&self, op: &'static str, source: io::Error) -> Error {
        Error::Fd {
            op,
            target: self.target,
            source,
        }
    }
}

impl AsFd for PerfFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for PerfFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }
}

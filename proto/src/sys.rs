//! Every `unsafe` of the hvprof-proto crate: `poll(2)` on one fd and AF_VSOCK sockets, the
//! syscalls under the channels of [`crate::transport`] (used by the helper to connect and by
//! the host to listen).
//!
//! Each block states why it is sound. Everything else in the crate is safe code on top.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

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

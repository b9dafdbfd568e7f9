//! Byte streams between host and guest: a virtio-serial port (a character device in the guest,
//! a unix socket on the host: QEMU's chardev), TCP, AF_VSOCK, or a unix socket (tests).
//!
//! Stage: **channel**. Input: a [`Channel`] (helper) naming where to connect; output: a
//! [`Stream`] that reads and writes frames.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::sys;

/// The virtio-serial port name hvprof uses (QEMU `virtserialport,name=org.hvprof.0`).
pub const PORT_NAME: &str = "org.hvprof.0";

/// Where the helper connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// A virtio-serial port: the path, or None to find [`PORT_NAME`] (udev's
    /// `/dev/virtio-ports/NAME`, else `/sys/class/virtio-ports/*/name` → `/dev/vportNpM`).
    /// A path that is a unix socket is connected to as one (tests).
    Port(Option<PathBuf>),
    /// AF_VSOCK `cid:port` (the host is CID 2).
    Vsock {
        /// Context id.
        cid: u32,
        /// Port.
        port: u32,
    },
    /// TCP `host:port`.
    Tcp(String),
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Channel::Port(Some(p)) => write!(f, "port {}", p.display()),
            Channel::Port(None) => write!(f, "virtio-serial port {PORT_NAME}"),
            Channel::Vsock { cid, port } => write!(f, "vsock {cid}:{port}"),
            Channel::Tcp(a) => write!(f, "tcp {a}"),
        }
    }
}

/// Parses `CID:PORT`.
pub fn parse_vsock(s: &str) -> Option<(u32, u32)> {
    let (c, p) = s.split_once(':')?;
    Some((c.parse().ok()?, p.parse().ok()?))
}

/// Finds the virtio-serial port named `name` under `dev` (`/dev`) and `sys_class`
/// (`/sys/class/virtio-ports`).
pub fn find_port(dev: &Path, sys_class: &Path, name: &str) -> Option<PathBuf> {
    let by_name = dev.join("virtio-ports").join(name);
    if by_name.exists() {
        return Some(by_name);
    }
    let rd = std::fs::read_dir(sys_class).ok()?;
    for e in rd.flatten() {
        let n = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
        if n.trim() == name {
            let p = dev.join(e.file_name());
            if p.exists() {
                return Some(p);
            }
        }
    }
    None
}

/// An open channel.
#[derive(Debug)]
pub enum Stream {
    /// A character device (virtio-serial) or a vsock socket.
    File(File),
    /// TCP.
    Tcp(TcpStream),
    /// A unix socket.
    Unix(UnixStream),
}

impl Stream {
    /// Opens `ch`.
    ///
    /// # Errors
    /// `NotFound` when no port is found; the OS error otherwise.
    pub fn open(ch: &Channel) -> io::Result<Stream> {
        match ch {
            Channel::Port(p) => {
                let path = match p {
                    Some(p) => p.clone(),
                    None => find_port(
                        Path::new("/dev"),
                        Path::new("/sys/class/virtio-ports"),
                        PORT_NAME,
                    )
                    .ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::NotFound,
                            format!(
                                "no virtio-serial port named {PORT_NAME} (/dev/virtio-ports/{PORT_NAME} or /sys/class/virtio-ports/*/name); start QEMU with -device virtio-serial -device virtserialport,chardev=...,name={PORT_NAME}, or use --tcp/--vsock"
                            ),
                        )
                    })?,
                };
                let md = std::fs::metadata(&path)?;
                if md.file_type().is_socket() {
                    return UnixStream::connect(&path).map(Stream::Unix);
                }
                let f = OpenOptions::new().read(true).write(true).open(&path)?;
                Ok(Stream::File(f))
            }
            Channel::Vsock { cid, port } => sys::vsock_connect(*cid, *port).map(Stream::File),
            Channel::Tcp(a) => {
                let s = TcpStream::connect(a.as_str())?;
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
        }
    }

    /// A second handle to the same stream (one thread reads, another writes).
    ///
    /// # Errors
    /// `dup(2)`'s error.
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::File(f) => Stream::File(f.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    /// Shuts a socket down in both directions (wakes a blocked reader); no-op for devices.
    pub fn shutdown(&self) {
        match self {
            Stream::File(_) => {}
            Stream::Tcp(s) => {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            Stream::Unix(s) => {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// True for a virtio-serial character device (EOF means "host not attached", not the end).
    pub fn is_device(&self) -> bool {
        match self {
            Stream::File(f) => f
                .metadata()
                .map(|m| m.file_type().is_char_device())
                .unwrap_or(false),
            _ => false,
        }
    }

    /// Polls the stream for input (and output when `write`): readable, writable, hung up.
    ///
    /// # Errors
    /// poll's error.
    pub fn poll(&self, write: bool, timeout: std::time::Duration) -> io::Result<sys::PollState> {
        sys::poll_one(self.as_raw_fd(), write, timeout)
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::File(f) => f.as_raw_fd(),
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::File(f) => f.read(buf),
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::File(f) => f.write(buf),
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer shared between threads: each `write_all` holds the lock for the whole buffer, so
/// frames from different threads never interleave.
#[derive(Debug)]
pub struct SharedWriter<W: Write>(pub std::sync::Arc<std::sync::Mutex<W>>);

impl<W: Write> Clone for SharedWriter<W> {
    fn clone(&self) -> Self {
        SharedWriter(self.0.clone())
    }
}

impl<W: Write> SharedWriter<W> {
    /// Wraps `w`.
    pub fn new(w: W) -> SharedWriter<W> {
        SharedWriter(std::sync::Arc::new(std::sync::Mutex::new(w)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, W> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<W: Write> Write for SharedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.lock().write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.lock().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_port_by_sysfs_name() {
        let d = std::env::temp_dir().join(format!("hvprof-port-{}", std::process::id()));
        let dev = d.join("dev");
        let sys = d.join("sys");
        std::fs::create_dir_all(dev.join("virtio-ports")).unwrap();
        std::fs::create_dir_all(sys.join("vport1p1")).unwrap();
        std::fs::create_dir_all(sys.join("vport1p2")).unwrap();
        std::fs::write(sys.join("vport1p1/name"), "org.qemu.guest_agent.0\n").unwrap();
        std::fs::write(sys.join("vport1p2/name"), "org.hvprof.0\n").unwrap();
        std::fs::write(dev.join("vport1p2"), "").unwrap();
        assert_eq!(find_port(&dev, &sys, PORT_NAME), Some(dev.join("vport1p2")));
        std::fs::write(dev.join("virtio-ports/org.hvprof.0"), "").unwrap();
        assert_eq!(
            find_port(&dev, &sys, PORT_NAME),
            Some(dev.join("virtio-ports/org.hvprof.0"))
        );
        assert_eq!(find_port(&dev, &sys, "nope"), None);
        let _ = std::fs::remove_dir_all(&d);
        assert_eq!(parse_vsock("2:5000"), Some((2, 5000)));
        assert_eq!(parse_vsock("x:1"), None);
    }
}

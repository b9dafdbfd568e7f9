//! Collection: one reader thread per ring buffer, woken by `poll(2)` (the counters'
//! `wakeup_watermark`, or a 100 ms timeout), decoding records and sending them in batches over
//! a crossbeam channel to one aggregator.
//!
//! Stage: ring buffers → **collection** → attribution. A reader ends when asked to stop (it
//! then disables its counter and drains the rest), or when its fd reports `POLLHUP` (the
//! monitored thread exited: the VM is going away), after a final drain.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::record::{Record, RecordDecoder};
use crate::ring::RingBuffer;
use crate::sys::abi;
use crate::sys::perf::{PerfFd, Target};

/// What a reader sends to the aggregator.
#[derive(Debug)]
pub enum Batch {
    /// Records decoded from one drain of `target`'s ring.
    Records {
        /// Whose ring.
        target: Target,
        /// The records, in ring order.
        records: Vec<Record>,
    },
    /// `target`'s fd reported POLLHUP (its thread exited); no more records will come.
    Hangup {
        /// Whose ring.
        target: Target,
    },
    /// Reading `target`'s ring failed; the message says why. Records before it were sent.
    Error {
        /// Whose ring.
        target: Target,
        /// The error, as a sentence.
        message: String,
    },
}

/// A running reader thread.
#[derive(Debug)]
pub struct Reader {
    handle: JoinHandle<()>,
}

impl Reader {
    /// Starts a reader for `fd`'s `ring`. It stops when `stop` becomes true.
    ///
    /// # Errors
    /// [`crate::Error::Sys`] when the thread cannot be spawned.
    pub fn spawn(
        fd: PerfFd,
        ring: RingBuffer,
        tx: Sender<Batch>,
        stop: Arc<AtomicBool>,
    ) -> crate::Result<Reader> {
        let name = match fd.target() {
            Target::Thread(t) => format!("hvprof-rd-{t}"),
            Target::Cpu(c) => format!("hvprof-rd-cpu{c}"),
        };
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || read_loop(fd, ring, tx, stop))
            .map_err(|source| crate::Error::Sys {
                op: "spawn reader thread",
                source,
            })?;
        Ok(Reader { handle })
    }

    /// Waits for the reader to finish.
    pub fn join(self) {
        let _ = self.handle.join();
    }
}

fn read_loop(fd: PerfFd, mut ring: RingBuffer, tx: Sender<Batch>, stop: Arc<AtomicBool>) {
    let target = fd.target();
    let decoder = RecordDecoder::new(abi::HVPROF_SAMPLE_TYPE);
    let mut bytes = Vec::with_capacity(ring.data_size());
    let drain = |ring: &mut RingBuffer, bytes: &mut Vec<u8>| -> bool {
        bytes.clear();
        if let Err(e) = ring.drain_into(bytes) {
            let _ = tx.send(Batch::Error {
                target,
                message: crate::error_chain(&e),
            });
        }
        if bytes.is_empty() {
            return true;
        }
        let mut records = Vec::with_capacity(bytes.len() / 48 + 1);
        decoder.decode(bytes, |r| records.push(r));
        tx.send(Batch::Records { target, records }).is_ok()
    };
    loop {
        if stop.load(Ordering::Acquire) {
            let _ = fd.disable();
            drain(&mut ring, &mut bytes);
            return;
        }
        let mut fds = [PollFd::new(fd.file().as_fd(), PollFlags::POLLIN)];
        let r = poll(&mut fds, PollTimeout::from(100u16));
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if !drain(&mut ring, &mut bytes) {
            return; // aggregator gone
        }
        match r {
            Ok(_) if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) => {
                drain(&mut ring, &mut bytes);
                let _ = tx.send(Batch::Hangup { target });
                return;
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                let _ = tx.send(Batch::Error {
                    target,
                    message: format!("poll failed: {e}"),
                });
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

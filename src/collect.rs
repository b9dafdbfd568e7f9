//! Collection: one reader thread per ring buffer, woken by `poll(2)` (the counters'
//! `wakeup_watermark`, or a 100 ms timeout), copying the ring's records out as the kernel wrote
//! them and sending them in batches over a crossbeam channel to one consumer, which decodes
//! them (readers do IO only; the bytes can also be stored as they are, as perf record does).
//!
//! Stage: ring buffers → **collection** → attribution. A reader ends when asked to stop (it
//! then disables its counter and drains the rest), or when its fd reports `POLLHUP` (the
//! monitored thread exited: the VM is going away), after a final drain.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use hvprof_perf::{PerfFd, RingBuffer, Target};

/// What a reader sends to the aggregator.
#[derive(Debug)]
pub enum Batch {
    /// The records of one drain of `target`'s ring, as the kernel laid them out (decode them
    /// with [`hvprof_perf::RecordDecoder`] and the counter's attr).
    Records {
        /// Whose ring.
        target: Target,
        /// Whole records, in ring order, native endianness.
        bytes: Vec<u8>,
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
        fd: Arc<PerfFd>,
        ring: RingBuffer,
        tx: Sender<Batch>,
        stop: Arc<AtomicBool>,
        pool: BufferPool,
    ) -> crate::Result<Reader> {
        let name = match fd.target() {
            Target::Thread(t) => format!("hvprof-rd-{t}"),
            Target::Cpu(c) => format!("hvprof-rd-cpu{c}"),
        };
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || read_loop(fd, ring, tx, stop, pool))
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

/// The readers of one session. Dropping the set asks every reader to stop (they notice within
/// one poll timeout and exit once their last batch is sent or the channel is gone); the normal
/// end of a session calls [`ReaderSet::stop_and_drain`] instead, which also collects what they
/// still hold.
#[derive(Debug, Default)]
pub struct ReaderSet {
    stop: Arc<AtomicBool>,
    readers: Vec<Reader>,
    pool: BufferPool,
}

impl ReaderSet {
    /// An empty set.
    pub fn new() -> ReaderSet {
        ReaderSet::default()
    }

    /// Starts a reader for `fd`'s `ring` in this set.
    ///
    /// # Errors
    /// As [`Reader::spawn`].
    pub fn spawn(
        &mut self,
        fd: Arc<PerfFd>,
        ring: RingBuffer,
        tx: Sender<Batch>,
    ) -> crate::Result<()> {
        self.readers.push(Reader::spawn(
            fd,
            ring,
            tx,
            self.stop.clone(),
            self.pool.clone(),
        )?);
        Ok(())
    }

    /// The readers' buffer pool: the consumer gives each batch's bytes back to it.
    pub fn pool(&self) -> BufferPool {
        self.pool.clone()
    }

    /// Number of readers.
    pub fn len(&self) -> usize {
        self.readers.len()
    }

    /// True when no reader runs.
    pub fn is_empty(&self) -> bool {
        self.readers.is_empty()
    }

    /// Asks every reader to stop, passes each batch still coming to `f` until every reader has
    /// hung up its sender, then joins them. Receiving while they finish is what keeps a
    /// reader's last send from blocking on a full channel. The caller must have dropped its own
    /// sender. Stops early, and returns the error, when `f` fails.
    pub fn stop_and_drain<E>(
        mut self,
        rx: &crossbeam_channel::Receiver<Batch>,
        mut f: impl FnMut(Batch) -> Result<(), E>,
    ) -> Result<(), E> {
        self.stop.store(true, Ordering::Release);
        while let Ok(b) = rx.recv() {
            f(b)?;
        }
        for r in std::mem::take(&mut self.readers) {
            r.join();
        }
        Ok(())
    }
}

impl Drop for ReaderSet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Buffers of drained ring bytes, handed back by the consumer when it is done with a batch, so
/// a reader refills warm memory instead of faulting in fresh pages for every drain (a drain
/// can be half a ring: 256 KiB under `--call-graph dwarf`). Bounded: past `max` buffers, a
/// returned one is freed.
#[derive(Debug, Clone)]
pub struct BufferPool {
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
}

impl BufferPool {
    /// A pool keeping at most `max` idle buffers.
    pub fn new(max: usize) -> BufferPool {
        let (tx, rx) = crossbeam_channel::bounded(max.max(1));
        BufferPool { tx, rx }
    }

    /// An empty buffer with room for `capacity` bytes: a returned one when there is one.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        match self.rx.try_recv() {
            Ok(mut b) => {
                b.clear();
                b.reserve(capacity);
                b
            }
            Err(_) => Vec::with_capacity(capacity),
        }
    }

    /// Hands a buffer back for reuse (freed when the pool is full).
    pub fn give(&self, b: Vec<u8>) {
        let _ = self.tx.try_send(b);
    }
}

impl Default for BufferPool {
    fn default() -> BufferPool {
        BufferPool::new(64)
    }
}

fn read_loop(
    fd: Arc<PerfFd>,
    mut ring: RingBuffer,
    tx: Sender<Batch>,
    stop: Arc<AtomicBool>,
    pool: BufferPool,
) {
    let target = fd.target();
    let mut bytes = pool.take(ring.data_size());
    let drain = |ring: &mut RingBuffer, bytes: &mut Vec<u8>| -> bool {
        if let Err(e) = ring.drain_into(bytes) {
            let _ = tx.send(Batch::Error {
                target,
                message: crate::error_chain(&e),
            });
        }
        if bytes.is_empty() {
            return true;
        }
        let full = std::mem::replace(bytes, pool.take(ring.data_size()));
        tx.send(Batch::Records {
            target,
            bytes: full,
        })
        .is_ok()
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

//! "Now" in the perf event clock of this system, for relating perf timestamps to other
//! clocks (the host's clock pings in active mode, the helper's pongs).

use std::io;

use crate::abi::{self, AttrBuilder};
use crate::record::{Record, RecordDecoder};
use crate::{PageClock, PerfFd, RingBuffer, Target};

/// Reads "now" in the perf event clock of *this* system (perf's `local_clock()`, the clock of
/// perf timestamps without `use_clockid`): from the TSC when the perf page allows
/// (`cap_user_time_zero`), else by renaming the thread to its own name — which makes the
/// kernel emit a `PERF_RECORD_COMM` stamped with the perf clock — and reading that stamp.
///
/// The host uses it to stamp clock pings in the clock of its own perf samples.
pub struct PerfNow {
    _fd: PerfFd,
    ring: RingBuffer,
    decoder: RecordDecoder,
    page: PageClock,
    comm_path: std::path::PathBuf,
    comm: String,
    buf: Vec<u8>,
}

impl std::fmt::Debug for PerfNow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerfNow").field("page", &self.page).finish()
    }
}

impl PerfNow {
    /// Opens a dummy event with `comm` records on the calling thread.
    ///
    /// # Errors
    /// perf_event_open/mmap errors, or `/proc/thread-self` unreadable.
    pub fn open() -> io::Result<PerfNow> {
        let link = std::fs::read_link("/proc/thread-self")?;
        let comm_path = std::path::Path::new("/proc").join(link).join("comm");
        let comm = std::fs::read_to_string(&comm_path)?.trim_end().to_string();
        let a = AttrBuilder::new(abi::TYPE_SOFTWARE, abi::sw::DUMMY)
            .sample_type(abi::SAMPLE_TID | abi::SAMPLE_TIME | abi::SAMPLE_CPU)
            .disabled(true)
            .sample_id_all(true)
            .comm(true)
            .build();
        let fd = PerfFd::open(&a, Target::Thread(0), "dummy (comm clock)")?;
        let ring = RingBuffer::map(&fd, 1)?;
        let page = ring.clock();
        fd.enable()?;
        Ok(PerfNow {
            _fd: fd,
            ring,
            decoder: RecordDecoder::from_attr(&a),
            page,
            comm_path,
            comm,
            buf: Vec::new(),
        })
    }

    /// The page's clock fields (for TSC conversion when `cap_user_time_zero`).
    pub fn page(&self) -> PageClock {
        self.page
    }

    /// The current perf-clock time in ns, or None when it could not be read.
    pub fn now(&mut self) -> Option<u64> {
        if self.page.cap_user_time_zero && cfg!(target_arch = "x86_64") {
            return Some(self.page.tsc_to_ns(crate::sys::rdtsc()));
        }
        std::fs::write(&self.comm_path, self.comm.as_bytes()).ok()?;
        self.buf.clear();
        // A corrupt head loses this reading only; the next call reads again.
        self.ring.drain_into(&mut self.buf).ok()?;
        let mut t = None;
        for r in self.decoder.records(&self.buf) {
            if let Record::Comm { sid, .. } = r {
                t = sid.time_ns.or(t);
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_now_is_monotonic_and_close_to_sample_clock() {
        let mut p = match PerfNow::open() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("skipped: perf_event_open not permitted here: {e}");
                return;
            }
        };
        let a = p.now().expect("time");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = p.now().expect("time");
        assert!(
            b > a && b - a >= 20_000_000 && b - a < 2_000_000_000,
            "{a} {b}"
        );
    }
}

//! The helper's perf events inside the guest: per guest CPU, a dummy event carrying the
//! sideband (comm, mmap2 with build-ids, fork/exit, context switches) and, unless disabled, a
//! cpu-clock sampling event (`IP|TID|TIME|CPU|PERIOD`).
//!
//! Stage: guest kernel → **perf rings** → records. Input: CPU list and options; output:
//! decoded [`PerfEvent`]s per drain.

use std::fs::File;
use std::io;

use perf_event_open_sys::bindings::{self as b, perf_event_attr};

use crate::perfrec::{self, PerfEvent};
use crate::proto::{ClockInfo, CLOCK_PERF_LOCAL};
use crate::sys::{self, PageClock, Ring};

/// `CLOCK_MONOTONIC`, the fallback event clock when the guest's perf page cannot convert TSC.
pub const CLOCK_MONOTONIC: i32 = libc::CLOCK_MONOTONIC;

/// Sample type of the sampling event.
pub const SAMPLE_TYPE: u64 = (b::PERF_SAMPLE_IP
    | b::PERF_SAMPLE_TID
    | b::PERF_SAMPLE_TIME
    | b::PERF_SAMPLE_CPU
    | b::PERF_SAMPLE_PERIOD) as u64;
/// Sample type (and `sample_id` trailer) of the sideband event.
pub const SIDEBAND_TYPE: u64 =
    (b::PERF_SAMPLE_TID | b::PERF_SAMPLE_TIME | b::PERF_SAMPLE_CPU) as u64;

/// How the guest's timestamps are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventClock {
    /// [`CLOCK_PERF_LOCAL`] or [`CLOCK_MONOTONIC`].
    pub clock_id: i32,
    /// The page's conversion fields (meaningful for the perf clock).
    pub page: PageClock,
}

impl EventClock {
    /// Probes the perf metadata page of a dummy event on this thread: the perf local clock
    /// when `cap_user_time_zero` is set (so the TSC can be converted, by the helper for pongs
    /// and by the host for TSC-offset conversion), else CLOCK_MONOTONIC.
    pub fn probe() -> EventClock {
        let mut a = dummy_attr();
        a.set_disabled(1);
        let page = sys::perf_event_open(&mut a, 0, -1)
            .and_then(|f| Ring::map(&f, 0))
            .map(|r| r.clock())
            .unwrap_or_default();
        let clock_id = if page.cap_user_time_zero && cfg!(target_arch = "x86_64") {
            CLOCK_PERF_LOCAL
        } else {
            CLOCK_MONOTONIC
        };
        EventClock { clock_id, page }
    }

    /// The current time in this clock, ns.
    pub fn now(&self) -> u64 {
        if self.clock_id == CLOCK_PERF_LOCAL {
            self.page.tsc_to_ns(sys::rdtsc())
        } else {
            sys::clock_ns(self.clock_id)
        }
    }

    /// As sent in the hello.
    pub fn info(&self) -> ClockInfo {
        ClockInfo {
            clock_id: self.clock_id,
            cap_user_time_zero: self.page.cap_user_time_zero,
            time_shift: self.page.time_shift,
            time_mult: self.page.time_mult,
            time_zero: self.page.time_zero,
        }
    }

    fn apply(&self, a: &mut perf_event_attr) {
        if self.clock_id != CLOCK_PERF_LOCAL {
            a.set_use_clockid(1);
            a.clockid = self.clock_id;
        }
    }
}

fn dummy_attr() -> perf_event_attr {
    let mut a = perf_event_attr {
        type_: b::PERF_TYPE_SOFTWARE,
        config: b::PERF_COUNT_SW_DUMMY as u64,
        ..Default::default()
    };
    a.sample_type = SIDEBAND_TYPE;
    a
}

struct Stream {
    ring: Ring,
    _fd: File,
    cpu: u32,
    sampling: bool,
}

/// The helper's open events.
pub struct Collector {
    streams: Vec<Stream>,
    fds: Vec<File>,
    /// The event clock.
    pub clock: EventClock,
    /// MMAP2 records carry build-ids (`attr.build_id`, Linux ≥ 5.12).
    pub mmap_build_id: bool,
    /// Sideband events are open.
    pub sideband: bool,
    /// Sampling events are open.
    pub sampling: bool,
    /// Problems met while opening, for notes to the host.
    pub problems: Vec<String>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("streams", &self.streams.len())
            .field("clock", &self.clock)
            .field("mmap_build_id", &self.mmap_build_id)
            .finish()
    }
}

impl Collector {
    /// Opens the events on `cpus` (disabled; see [`Collector::enable`]). `freq` is the
    /// sampling frequency in Hz, 0 for no sampling.
    ///
    /// # Errors
    /// The first `perf_event_open` error when no event at all could be opened.
    pub fn open(cpus: &[u32], freq: u32, clock: EventClock) -> io::Result<Collector> {
        let mut c = Collector {
            streams: Vec::new(),
            fds: Vec::new(),
            clock,
            mmap_build_id: true,
            sideband: false,
            sampling: false,
            problems: Vec::new(),
            buf: Vec::new(),
        };
        let mut first_err = None;
        for &cpu in cpus {
            match c.open_sideband(cpu) {
                Ok(()) => c.sideband = true,
                Err(e) => {
                    c.problems
                        .push(format!("sideband event on guest cpu {cpu}: {e}"));
                    first_err.get_or_insert(e);
                }
            }
            if freq > 0 {
                let mut a = perf_event_attr {
                    type_: b::PERF_TYPE_SOFTWARE,
                    config: b::PERF_COUNT_SW_CPU_CLOCK as u64,
                    ..Default::default()
                };
                a.sample_type = SAMPLE_TYPE;
                a.__bindgen_anon_1.sample_freq = freq as u64;
                a.set_freq(1);
                a.set_disabled(1);
                a.set_sample_id_all(1);
                a.__bindgen_anon_2.wakeup_events = 0;
                clock.apply(&mut a);
                match sys::perf_event_open(&mut a, -1, cpu as i32)
                    .and_then(|f| Ok((Ring::map(&f, 64)?, f)))
                {
                    Ok((ring, f)) => {
                        c.fds.push(f.try_clone()?);
                        c.streams.push(Stream {
                            ring,
                            _fd: f,
                            cpu,
                            sampling: true,
                        });
                        c.sampling = true;
                    }
                    Err(e) => {
                        c.problems
                            .push(format!("cpu-clock sampling on guest cpu {cpu}: {e}"));
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        if c.streams.is_empty() {
            return Err(first_err.unwrap_or_else(|| io::Error::other("no CPUs")));
        }
        Ok(c)
    }

    fn open_sideband(&mut self, cpu: u32) -> io::Result<()> {
        let mk = |build_id: bool| {
            let mut a = dummy_attr();
            a.set_disabled(1);
            a.set_sample_id_all(1);
            a.set_comm(1);
            a.set_comm_exec(1);
            a.set_mmap(1);
            a.set_mmap2(1);
            a.set_task(1);
            a.set_context_switch(1);
            a.set_build_id(build_id as u64);
            a.__bindgen_anon_2.wakeup_events = 0;
            self.clock.apply(&mut a);
            a
        };
        let f = if self.mmap_build_id {
            match sys::perf_event_open(&mut mk(true), -1, cpu as i32) {
                Ok(f) => f,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    self.mmap_build_id = false;
                    sys::perf_event_open(&mut mk(false), -1, cpu as i32)?
                }
                Err(e) => return Err(e),
            }
        } else {
            sys::perf_event_open(&mut mk(false), -1, cpu as i32)?
        };
        let ring = Ring::map(&f, 32)?;
        self.fds.push(f.try_clone()?);
        self.streams.push(Stream {
            ring,
            _fd: f,
            cpu,
            sampling: false,
        });
        Ok(())
    }

    /// Enables (or disables) every event.
    ///
    /// # Errors
    /// The first ioctl error.
    pub fn enable(&self, on: bool) -> io::Result<()> {
        self.enable_sideband(on)?;
        self.enable_sampling(on)
    }

    /// Enables (or disables) the sideband events.
    ///
    /// # Errors
    /// The first ioctl error.
    pub fn enable_sideband(&self, on: bool) -> io::Result<()> {
        for (f, s) in self.fds.iter().zip(&self.streams) {
            if !s.sampling {
                sys::perf_enable(f, on)?;
            }
        }
        Ok(())
    }

    /// Enables (or disables) the sampling events.
    ///
    /// # Errors
    /// The first ioctl error.
    pub fn enable_sampling(&self, on: bool) -> io::Result<()> {
        for (f, s) in self.fds.iter().zip(&self.streams) {
            if s.sampling {
                sys::perf_enable(f, on)?;
            }
        }
        Ok(())
    }

    /// Drains every ring; `f(cpu, is_sampling_stream, event)` gets each record. Returns bytes
    /// that did not decode (corrupt ring data).
    pub fn drain(&mut self, mut f: impl FnMut(u32, bool, PerfEvent)) -> usize {
        let mut bad = 0;
        for s in &mut self.streams {
            self.buf.clear();
            s.ring.drain_into(&mut self.buf);
            bad += perfrec::decode(&self.buf, |e| f(s.cpu, s.sampling, e));
        }
        bad
    }
}

/// Reads "now" in the perf event clock of *this* system (perf's `local_clock()`, the clock of
/// perf timestamps without `use_clockid`): from the TSC when the perf page allows
/// (`cap_user_time_zero`), else by renaming the thread to its own name — which makes the
/// kernel emit a `PERF_RECORD_COMM` stamped with the perf clock — and reading that stamp.
///
/// The host uses it to stamp clock pings in the clock of its own perf samples.
pub struct PerfNow {
    _fd: File,
    ring: Ring,
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
        let mut a = dummy_attr();
        a.set_disabled(1);
        a.set_sample_id_all(1);
        a.set_comm(1);
        let fd = sys::perf_event_open(&mut a, 0, -1)?;
        let ring = Ring::map(&fd, 1)?;
        let page = ring.clock();
        sys::perf_enable(&fd, true)?;
        Ok(PerfNow {
            _fd: fd,
            ring,
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
            return Some(self.page.tsc_to_ns(sys::rdtsc()));
        }
        std::fs::write(&self.comm_path, self.comm.as_bytes()).ok()?;
        self.buf.clear();
        self.ring.drain_into(&mut self.buf);
        let mut t = None;
        perfrec::decode(&self.buf, |e| {
            if let PerfEvent::Comm { sid, .. } = e {
                t = Some(sid.time);
            }
        });
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

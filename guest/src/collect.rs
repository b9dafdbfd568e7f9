//! The helper's perf events inside the guest: per guest CPU, a dummy event carrying the
//! sideband (comm, mmap2 with build-ids, fork/exit, context switches) and, unless disabled, a
//! cpu-clock sampling event (`IP|TID|TIME|CPU|PERIOD`, plus `CALLCHAIN` with kernel and user
//! frames, at most `callchain_depth` of them, unless that is 0).
//!
//! Stage: guest kernel → **perf rings** → records. Input: CPU list and options; output:
//! decoded [`Record`]s per drain, from the one perf layer (`hvprof-perf`) the host uses too.

use std::io;

use hvprof_perf::abi::{self, AttrBuilder};
use hvprof_perf::record::{Record, RecordDecoder};
use hvprof_perf::{PageClock, PerfFd, RingBuffer, Target};

use crate::sys;
use hvprof_proto::{ClockInfo, CLOCK_PERF_LOCAL};

/// `CLOCK_MONOTONIC`, the fallback event clock when the guest's perf page cannot convert TSC.
pub const CLOCK_MONOTONIC: i32 = libc::CLOCK_MONOTONIC;

/// Sample type of the sampling event.
pub const SAMPLE_TYPE: u64 = abi::HVPROF_SAMPLE_TYPE;
/// Default deepest callchain the helper asks for, in frames (`attr.sample_max_stack`;
/// Linux's `kernel.perf_event_max_stack` defaults to 127).
pub const CALLCHAIN_DEPTH: u16 = 64;
/// Sample type (and `sample_id` trailer) of the sideband event.
pub const SIDEBAND_TYPE: u64 = abi::SAMPLE_TID | abi::SAMPLE_TIME | abi::SAMPLE_CPU;

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
        let page = PerfFd::open(
            &dummy_attr().disabled(true).build(),
            Target::Thread(0),
            "dummy",
        )
        .and_then(|f| RingBuffer::map(&f, 0))
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
            self.page.tsc_to_ns(hvprof_perf::sys::rdtsc())
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

    fn apply(&self, a: AttrBuilder) -> AttrBuilder {
        if self.clock_id != CLOCK_PERF_LOCAL {
            a.clockid(self.clock_id)
        } else {
            a
        }
    }
}

/// The cpu-clock sampling attr at `freq` Hz; with `depth` > 0 it also takes callchains of
/// at most `depth` frames (`PERF_SAMPLE_CALLCHAIN`, `sample_max_stack`; perf_event_open(2)).
fn sampling_attr(clock: EventClock, freq: u32, depth: u16) -> hvprof_perf::abi::perf_event_attr {
    let sample_type = if depth > 0 {
        SAMPLE_TYPE | abi::SAMPLE_CALLCHAIN
    } else {
        SAMPLE_TYPE
    };
    let mut a = clock
        .apply(
            AttrBuilder::new(abi::TYPE_SOFTWARE, abi::sw::CPU_CLOCK)
                .sample_type(sample_type)
                .frequency(u64::from(freq))
                .disabled(true)
                .sample_id_all(true)
                .wakeup_events(0),
        )
        .build();
    // AttrBuilder has no setter for it; the field is plain data (include/uapi/linux/
    // perf_event.h, `__u16 sample_max_stack`, Linux ≥ 4.8; 0 = the sysctl's maximum).
    a.sample_max_stack = depth;
    a
}

fn dummy_attr() -> AttrBuilder {
    AttrBuilder::new(abi::TYPE_SOFTWARE, abi::sw::DUMMY).sample_type(SIDEBAND_TYPE)
}

struct Stream {
    ring: RingBuffer,
    fd: PerfFd,
    decoder: RecordDecoder,
    cpu: u32,
    sampling: bool,
}

impl Stream {
    /// Maps `fd`'s ring (`pages` data pages) with the decoder of its `attr`.
    fn new(
        fd: PerfFd,
        attr: &hvprof_perf::abi::perf_event_attr,
        pages: usize,
        cpu: u32,
        sampling: bool,
    ) -> hvprof_perf::Result<Stream> {
        Ok(Stream {
            ring: RingBuffer::map(&fd, pages)?,
            fd,
            decoder: RecordDecoder::from_attr(attr),
            cpu,
            sampling,
        })
    }
}

/// What one [`Collector::drain`] could not decode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainLoss {
    /// Bytes of corrupt records skipped.
    pub corrupt_bytes: usize,
    /// Rings whose `data_head` was corrupt and were resynchronised (their pending bytes lost).
    pub corrupt_heads: u64,
}

/// The helper's open events.
pub struct Collector {
    streams: Vec<Stream>,
    /// The event clock.
    pub clock: EventClock,
    /// MMAP2 records carry build-ids (`attr.build_id`, Linux ≥ 5.12).
    pub mmap_build_id: bool,
    /// Sideband events are open.
    pub sideband: bool,
    /// Sampling events are open.
    pub sampling: bool,
    /// Deepest callchain the sampling events take, in frames; 0: they take none.
    pub callchain_depth: u16,
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
    /// sampling frequency in Hz, 0 for no sampling; `callchain_depth` the deepest callchain
    /// (kernel and user frames) a sample takes, 0 for none. When the guest kernel refuses
    /// callchains, the sampling events are opened without them and a problem is noted.
    ///
    /// # Errors
    /// The first `perf_event_open` error when no event at all could be opened.
    pub fn open(
        cpus: &[u32],
        freq: u32,
        callchain_depth: u16,
        clock: EventClock,
    ) -> io::Result<Collector> {
        let mut c = Collector {
            streams: Vec::new(),
            clock,
            mmap_build_id: true,
            sideband: false,
            sampling: false,
            callchain_depth,
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
                let mut a = sampling_attr(clock, freq, c.callchain_depth);
                let mut fd = PerfFd::open(&a, Target::Cpu(cpu), "cpu-clock");
                if c.callchain_depth > 0 {
                    if let Err(e) = &fd {
                        c.problems.push(format!(
                            "cpu-clock sampling with callchains on guest cpu {cpu}: {e}; sampling without them (leaf-only guest stacks)"
                        ));
                        c.callchain_depth = 0;
                        a = sampling_attr(clock, freq, 0);
                        fd = PerfFd::open(&a, Target::Cpu(cpu), "cpu-clock");
                    }
                }
                match fd.and_then(|fd| Stream::new(fd, &a, 64, cpu, true)) {
                    Ok(stream) => {
                        c.streams.push(stream);
                        c.sampling = true;
                    }
                    Err(e) => {
                        c.problems
                            .push(format!("cpu-clock sampling on guest cpu {cpu}: {e}"));
                        first_err.get_or_insert(e.into());
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
            self.clock
                .apply(
                    dummy_attr()
                        .disabled(true)
                        .sample_id_all(true)
                        .comm(true)
                        .comm_exec(true)
                        .mmap(true)
                        .mmap2(true)
                        .task(true)
                        .context_switch(true)
                        .build_id(build_id)
                        .wakeup_events(0),
                )
                .build()
        };
        let open = |a| PerfFd::open(&a, Target::Cpu(cpu), "dummy (sideband)");
        let (fd, a) = if self.mmap_build_id {
            match open(mk(true)) {
                Ok(f) => (f, mk(true)),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    self.mmap_build_id = false;
                    (open(mk(false))?, mk(false))
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            (open(mk(false))?, mk(false))
        };
        self.streams.push(Stream::new(fd, &a, 32, cpu, false)?);
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
        for s in self.streams.iter().filter(|s| !s.sampling) {
            s.fd.set_enabled(on)?;
        }
        Ok(())
    }

    /// Enables (or disables) the sampling events.
    ///
    /// # Errors
    /// The first ioctl error.
    pub fn enable_sampling(&self, on: bool) -> io::Result<()> {
        for s in self.streams.iter().filter(|s| s.sampling) {
            s.fd.set_enabled(on)?;
        }
        Ok(())
    }

    /// Drains every ring; `f(cpu, is_sampling_stream, record)` gets each record, in ring
    /// order, and the first error it returns ends the drain. Corrupt records and corrupt ring
    /// heads are counted in the returned [`DrainLoss`], never passed on or dropped silently.
    ///
    /// # Errors
    /// The first error of `f`.
    pub fn drain(
        &mut self,
        mut f: impl FnMut(u32, bool, Record<'_>) -> io::Result<()>,
    ) -> io::Result<DrainLoss> {
        let mut loss = DrainLoss::default();
        for s in &mut self.streams {
            self.buf.clear();
            if s.ring.drain_into(&mut self.buf).is_err() {
                loss.corrupt_heads += 1;
            }
            for r in s.decoder.records(&self.buf) {
                match r {
                    Record::Corrupt { skipped, .. } => loss.corrupt_bytes += skipped,
                    r => f(s.cpu, s.sampling, r)?,
                }
            }
        }
        Ok(loss)
    }
}

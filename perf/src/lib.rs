//! # hvprof-perf — the one perf layer of hvprof
//!
//! Everything hvprof does with `perf_event_open(2)` lives here, used by host recording, `hvprof
//! stat`, `hvprof detect --probe` and the in-guest helper alike:
//!
//! - [`abi`] — the constants of `include/uapi/linux/perf_event.h` and an [`abi::AttrBuilder`];
//! - [`fd`] — the owned perf event fd ([`PerfFd`]): open, ioctls, counts;
//! - [`ring`] — the mmap'ed ring buffer ([`RingBuffer`]): `data_head`/`data_tail` ordering,
//!   wrap-around, one policy for a corrupt head (counted, reported, resynchronised), and the
//!   metadata page's clock fields;
//! - [`record`] — the IO-free decoder of every record type hvprof uses ([`Record`]), and
//!   [`record::encode`] to lay records out byte for byte as the kernel does (test fixtures).
//!
//! - [`perf_data`] — the perf.data container: [`perf_data::PerfDataWriter`], [`perf_data::PerfData`].
//!
//! [`clock`] reads "now" in the perf clock. `unsafe` lives in [`fd`], [`ring`], [`sys`] and
//! the attr copies of [`perf_data`] only; every block says why it is sound.
//!
//! ```no_run
//! use hvprof_perf::{abi::AttrBuilder, PerfFd, RingBuffer, Target, record::{RecordDecoder, Record}};
//! let attr = AttrBuilder::new(hvprof_perf::abi::TYPE_SOFTWARE, hvprof_perf::abi::sw::CPU_CLOCK)
//!     .frequency(1000)
//!     .sample_type(hvprof_perf::abi::HVPROF_SAMPLE_TYPE)
//!     .build();
//! let fd = PerfFd::open(&attr, Target::Thread(0), "cpu-clock")?;
//! let mut ring = RingBuffer::map(&fd, 8)?;
//! fd.enable()?;
//! let mut bytes = Vec::new();
//! ring.drain_into(&mut bytes)?;
//! RecordDecoder::new(hvprof_perf::abi::HVPROF_SAMPLE_TYPE).decode(&bytes, |r| {
//!     if let Record::Sample(s) = r { println!("{:#x}", s.sample.ip) }
//! });
//! # Ok::<(), hvprof_perf::Error>(())
//! ```

pub mod abi;
pub mod clock;
mod error;
pub mod fd;
pub mod perf_data;
pub mod record;
pub mod ring;
pub mod sys;

pub use error::{Error, Result};
pub use fd::{PerfFd, Target};
pub use record::{CpuMode, Record, RecordDecoder, Sample, SampleId};
pub use ring::{PageClock, RingBuffer};

//! Transitional paths into the perf layer (`hvprof-perf`), for modules not yet moved to it.
//! New code uses [`crate::perf`] directly.

pub use hvprof_perf::abi;
pub use hvprof_perf::sys::{cpu_count, page_size};

/// `perf_event_open(2)`: see [`hvprof_perf::fd`].
pub mod perf {
    pub use hvprof_perf::abi::perf_event_attr;
    pub use hvprof_perf::{PerfFd, Target};

    /// A zeroed `perf_event_attr` (all flags off); prefer [`hvprof_perf::abi::AttrBuilder`].
    pub fn zeroed_attr() -> perf_event_attr {
        perf_event_attr::default()
    }
}

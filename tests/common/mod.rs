//! Helpers shared by the live tests of `tests/`: sample counts are checked against the
//! measured on-CPU time of the threads sampled, never against `duration × frequency` (see
//! [`on_cpu`]); the built-in test VM of the end-to-end tests is [`vm`].

#![allow(dead_code)] // each test binary uses a different part

pub mod on_cpu;
pub mod real_guest;
pub mod vm;

use hvprof::report::ThreadReport;

use on_cpu::{assert_samples, expected_samples, EDGE_NS};

/// Checks one thread of an hvprof report sampled by a clock event at `hz`: its samples match
/// the on-CPU time hvprof measured for it ([`on_cpu::check_samples`]); the report's own
/// `expected_samples` is that same arithmetic; and, when the test measured the thread itself
/// around the whole hvprof run (`outer_ns`, a window that encloses hvprof's), hvprof's
/// on-CPU time is not larger than that.
///
/// # Panics
///
/// When any of these fails, or the report has no on-CPU time for the thread.
pub fn assert_thread_samples(what: &str, t: &ThreadReport, hz: u64, outer_ns: Option<u64>) {
    let on_cpu = t.on_cpu_ns.unwrap_or_else(|| {
        panic!(
            "{what} (tid {}): the report has no on_cpu_ns to check samples against",
            t.tid
        )
    });
    if let Some(outer) = outer_ns {
        assert!(
            on_cpu <= outer + EDGE_NS,
            "{what}: hvprof says {on_cpu} ns on CPU, more than the {outer} ns the test measured \
             around the whole run"
        );
    }
    let want = expected_samples(on_cpu, hz);
    if let Some(e) = t.expected_samples {
        assert!(
            (e as f64 - want).abs() <= 1.0,
            "{what}: report expects {e} samples, {on_cpu} ns at {hz} Hz gives {want:.1}"
        );
    }
    assert_samples(what, t.samples, on_cpu, hz);
}

//! Xen hypercalls of this kernel as a Xen PV guest, from the `xen:xen_mc_entry` tracepoint
//! opened on every online CPU: opening, draining (by `op`), and the figures of a span.
//!
//! Input: tracefs and `/sys/devices/system/cpu/online`; output: [`XenHypercalls`]. On a host
//! that is not a Xen PV guest the tracepoint is absent and the figures say why.
//!
//! ```ignore
//! // (private module)
//! let (status, xen) = xen::open(&opts.tracefs, tracefs_ok);
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use super::drain::{account, drain_ring, RingNotes};
use super::names;
use super::report::RingHealth;
use super::report::{HypercallStat, XenHypercalls};
use super::setup::{open_tracepoint, os_msg};
use super::tracefs::{self, Tracepoint};
use crate::error::Result;
use hvprof_perf::{PerfFd, RingBuffer, Target};

/// Pages of each per-CPU ring.
const RING_PAGES: usize = 16;

/// Hypercalls counted over a span.
#[derive(Debug, Default, Clone)]
struct XenAcc {
    by_op: BTreeMap<u32, u64>,
    count: u64,
    ring: RingHealth,
}

/// The open tracepoint, one fd and ring per CPU.
#[derive(Debug)]
pub(super) struct XenRt {
    fds: Vec<(PerfFd, RingBuffer)>,
    op: tracefs::Field,
    interval: XenAcc,
    total: XenAcc,
}

impl XenHypercalls {
    /// No hypercall figures, because of `detail`.
    pub(super) fn unavailable(detail: String) -> XenHypercalls {
        XenHypercalls {
            source: "none".into(),
            available: false,
            detail: Some(detail),
            total: 0,
            by_op: Vec::new(),
            lost: 0,
            corrupt: 0,
            ring_errors: 0,
        }
    }
}

/// Opens `xen:xen_mc_entry` (disabled) on every online CPU when tracefs (at `tracefs`) is
/// usable. Returns the status to report (which says why not, when not) and the open
/// tracepoint, if any CPU could open it.
pub(super) fn open(tracefs: &Path, tracefs_ok: bool) -> (XenHypercalls, Option<XenRt>) {
    if !tracefs_ok {
        return (
            XenHypercalls::unavailable("tracefs unavailable".into()),
            None,
        );
    }
    let t = match Tracepoint::load(tracefs, "xen", "xen_mc_entry") {
        Ok(t) => t,
        Err(why) => {
            let detail = format!("{why}: not a Xen PV guest, no hypercall counts");
            return (XenHypercalls::unavailable(detail), None);
        }
    };
    let Some(op) = t.format.field("op").cloned() else {
        let detail = "xen:xen_mc_entry has no `op` field".into();
        return (XenHypercalls::unavailable(detail), None);
    };
    let mut fds = Vec::new();
    let mut err = None;
    for cpu in hvprof_perf::sys::online_cpus(Path::new("/")) {
        match open_tracepoint(&t, Target::Cpu(cpu), true)
            .and_then(|fd| Ok(RingBuffer::map(&fd, RING_PAGES).map(|r| (fd, r))?))
        {
            Ok(x) => fds.push(x),
            Err(e) => err = Some(os_msg(&e)),
        }
    }
    if fds.is_empty() {
        let detail = format!(
            "xen:xen_mc_entry could not be opened: {}",
            err.unwrap_or_default()
        );
        return (XenHypercalls::unavailable(detail), None);
    }
    let mut status = XenHypercalls::unavailable(String::new());
    status.source = "tracepoint xen:xen_mc_entry".into();
    status.available = true;
    status.detail = err.map(|e| format!("some CPUs failed: {e}"));
    let rt = XenRt {
        fds,
        op,
        interval: XenAcc::default(),
        total: XenAcc::default(),
    };
    (status, Some(rt))
}

impl XenRt {
    /// Enables the tracepoint on every CPU.
    ///
    /// # Errors
    /// [`crate::Error::PerfIoctl`] when a counter cannot be enabled.
    pub(super) fn enable(&self) -> Result<()> {
        for (fd, _) in &self.fds {
            fd.enable()?;
        }
        Ok(())
    }

    /// Drains every CPU's ring, counting hypercalls by `op` and lost and corrupt records and
    /// ring errors (the first of those as notes).
    pub(super) fn drain(
        &mut self,
        buf: &mut Vec<u8>,
        ring_notes: &mut RingNotes,
        notes: &mut Vec<String>,
    ) {
        let mut health = RingHealth::default();
        let mut by_op: BTreeMap<u32, u64> = BTreeMap::new();
        let mut count = 0u64;
        for (_, ring) in &mut self.fds {
            if let Some(e) = drain_ring(ring, buf, &mut health) {
                let what = format!("xen:xen_mc_entry ring of {}", ring.target());
                ring_notes.note(notes, &what, &e);
            }
            let op = &self.op;
            account(buf, &mut health, |s| {
                if let Some(op) = op.read_u32(s.raw) {
                    *by_op.entry(op).or_default() += 1;
                }
                count += 1;
            });
        }
        for acc in [&mut self.interval, &mut self.total] {
            for (&op, &n) in &by_op {
                let e = acc.by_op.entry(op).or_default();
                *e = e.saturating_add(n);
            }
            acc.count = acc.count.saturating_add(count);
            acc.ring.add(health);
        }
    }

    /// The figures of the span of `wall_ns` (ns of wall time): the current interval (then
    /// reset) when `is_interval`, else the whole run; `status` as returned by [`open`].
    pub(super) fn span_stat(
        &mut self,
        status: &XenHypercalls,
        is_interval: bool,
        wall_ns: u64,
    ) -> XenHypercalls {
        let acc = if is_interval {
            std::mem::take(&mut self.interval)
        } else {
            self.total.clone()
        };
        let secs = wall_ns.max(1) as f64 / 1e9;
        let mut by_op: Vec<HypercallStat> = acc
            .by_op
            .iter()
            .map(|(&op, &n)| HypercallStat {
                nr: u64::from(op),
                name: names::xen_hypercall_name(op),
                count: n,
                per_s: n as f64 / secs,
            })
            .collect();
        by_op.sort_by(|a, b| b.count.cmp(&a.count).then(a.nr.cmp(&b.nr)));
        XenHypercalls {
            total: acc.count,
            by_op,
            lost: acc.ring.lost,
            corrupt: acc.ring.corrupt,
            ring_errors: acc.ring.ring_errors,
            ..status.clone()
        }
    }
}

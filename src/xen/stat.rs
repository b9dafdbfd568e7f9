//! `hvprof stat` in dom0: per domain and vCPU, CPU time (the hypervisor's
//! `XEN_DOMCTL_getvcpuinfo` counter, before and after), runstate times (running, runnable =
//! steal, blocked, offline) from xentrace's scheduler records, PV hypercalls and HVM exits by
//! reason with latency when those classes were traced. Every figure names its source.
//!
//! ```no_run
//! use hvprof::xen::stat::{run, render_text, XenStatOptions};
//! let r = run(&XenStatOptions::default())?;
//! print!("{}", render_text(&r));
//! # Ok::<(), hvprof::xen::XenError>(())
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::domains::{self, Domain};
use super::error::{Result, XenError};
use super::ffi::{XenCtrl, XenStoreLib};
use super::xentrace::{self, runstate::TraceSummary};
use crate::stat::names;

/// What to measure.
#[derive(Debug, Clone)]
pub struct XenStatOptions {
    /// How long (xentrace's `-T`, whole seconds, at least 1).
    pub duration: Duration,
    /// Also trace PV hypercalls (`TRC_PV`; many records).
    pub hypercalls: bool,
    /// Also trace HVM exits and entries (`TRC_HVM`).
    pub hvm_exits: bool,
    /// Where xentrace writes its file while it runs.
    pub tmp_dir: PathBuf,
}

impl Default for XenStatOptions {
    fn default() -> XenStatOptions {
        XenStatOptions {
            duration: Duration::from_secs(5),
            hypercalls: true,
            hvm_exits: true,
            tmp_dir: std::env::temp_dir(),
        }
    }
}

/// One vCPU's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VcpuStat {
    /// vCPU number.
    pub vcpu: u32,
    /// The pCPU it was on at the end (getvcpuinfo).
    pub pcpu: Option<u32>,
    /// CPU time during the run, ns (getvcpuinfo's `cpu_time`, after − before).
    pub cpu_time_ns: Option<u64>,
    /// ns in running, runnable (steal), blocked, offline (xentrace runstate changes, TSC
    /// cycles at the TSC rate).
    pub runstate_ns: [u64; 4],
    /// Share of the traced span runnable: steal, %.
    pub steal_percent: f64,
    /// Runstate changes seen.
    pub runstate_changes: u64,
}

/// A count by name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedCount {
    /// The name (`sched_op`, `IO_INSTRUCTION`, ...).
    pub name: String,
    /// How many.
    pub count: u64,
    /// Mean latency, ns, where measured (HVM exit to entry).
    pub mean_ns: Option<u64>,
}

/// One domain's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomainStat {
    /// domid.
    pub domid: u32,
    /// Name.
    pub name: String,
    /// Sum of its vCPUs' CPU time during the run, ns.
    pub cpu_time_ns: Option<u64>,
    /// Its vCPUs.
    pub vcpus: Vec<VcpuStat>,
    /// PV hypercalls by op (xentrace `TRC_PV_HYPERCALL_V2`).
    pub hypercalls: Vec<NamedCount>,
    /// HVM exits by reason (xentrace `TRC_HVM_VMEXIT` → `TRC_HVM_VMENTRY`).
    pub exits: Vec<NamedCount>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct XenStatReport {
    /// Wall time of the run, ns.
    pub duration_ns: u64,
    /// Sources, one line each: which figure comes from where.
    pub sources: Vec<String>,
    /// TSC kHz used to turn trace cycles into ns, and where it came from.
    pub tsc_khz: u64,
    /// Where `tsc_khz` came from.
    pub tsc_source: String,
    /// Cycles between the first and the last trace record.
    pub trace_span_cycles: u64,
    /// Records Xen lost (TRC_LOST_RECORDS) and bytes cut off at the end of the file.
    pub lost_records: u64,
    /// Bytes of a partial record at the end of the trace.
    pub truncated_bytes: u64,
    /// Per domain.
    pub domains: Vec<DomainStat>,
    /// Why a class of figures is missing, if any.
    pub notes: Vec<String>,
}

/// Whether this CPU is AMD's (SVM exit codes) rather than Intel's (VMX exit reasons), from
/// `/proc/cpuinfo`'s vendor.
fn amd_cpu(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("vendor_id"))
        .is_some_and(|l| l.contains("AuthenticAMD") || l.contains("HygonGenuine"))
}

/// The TSC rate: `cpu MHz` of `/proc/cpuinfo` (dom0's kernel gets it from Xen), else the
/// trace span over the wall time.
pub fn tsc_khz(cpuinfo: &str, span_cycles: u64, wall: Duration) -> (u64, String) {
    let mhz = cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|m| *m > 1.0 && *m < 100_000.0);
    match mhz {
        Some(m) => ((m * 1000.0) as u64, "/proc/cpuinfo cpu MHz".into()),
        None if wall.as_millis() > 0 && span_cycles > 0 => (
            (span_cycles as u128 / wall.as_millis()) as u64,
            "trace span over wall time (no cpu MHz in /proc/cpuinfo)".into(),
        ),
        None => (
            0,
            "unknown: runstate figures in cycles are not converted".into(),
        ),
    }
}

/// Builds the report from domain lists before and after the run and the trace's summary.
pub fn build(
    before: &[Domain],
    after: &[Domain],
    trace: &TraceSummary,
    wall: Duration,
    cpuinfo: &str,
) -> XenStatReport {
    let (khz, tsc_source) = tsc_khz(cpuinfo, trace.span_cycles(), wall);
    let ns = |c: u64| {
        if khz == 0 {
            0
        } else {
            (c as u128 * 1_000_000 / khz as u128).min(u64::MAX as u128) as u64
        }
    };
    let isa = if amd_cpu(cpuinfo) {
        names::KVM_ISA_SVM
    } else {
        names::KVM_ISA_VMX
    };
    let span = trace.span_cycles().max(1);
    let mut doms = Vec::new();
    for d in after {
        let b = before.iter().find(|x| x.domid == d.domid);
        let mut vcpus = Vec::new();
        for v in &d.vcpus {
            let bv = b.and_then(|b| b.vcpus.iter().find(|x| x.index == v.index));
            let cpu = match (bv.and_then(|x| x.info), v.info) {
                (Some(x), Some(y)) => Some(y.cpu_time_ns.saturating_sub(x.cpu_time_ns)),
                _ => None,
            };
            let rs = trace
                .vcpus
                .get(&(d.domid, v.index))
                .copied()
                .unwrap_or_default();
            vcpus.push(VcpuStat {
                vcpu: v.index,
                pcpu: v.info.map(|i| i.pcpu),
                cpu_time_ns: cpu,
                runstate_ns: rs.cycles.map(ns),
                steal_percent: rs.cycles[1] as f64 * 100.0 / span as f64,
                runstate_changes: rs.changes,
            });
        }
        let hypercalls = trace
            .hypercalls
            .get(&d.domid)
            .map(|m| {
                let mut v: Vec<NamedCount> = m
                    .iter()
                    .map(|(op, n)| NamedCount {
                        name: names::xen_hypercall_name(*op),
                        count: *n,
                        mean_ns: None,
                    })
                    .collect();
                v.sort_by_key(|x| std::cmp::Reverse(x.count));
                v
            })
            .unwrap_or_default();
        let exits = trace
            .exits
            .get(&d.domid)
            .map(|m| {
                let mut v: Vec<NamedCount> = m
                    .iter()
                    .map(|(r, e)| NamedCount {
                        name: names::exit_reason_name(isa, *r),
                        count: e.count,
                        mean_ns: (e.timed > 0).then(|| ns(e.cycles / e.timed)),
                    })
                    .collect();
                v.sort_by_key(|x| std::cmp::Reverse(x.count));
                v
            })
            .unwrap_or_default();
        doms.push(DomainStat {
            domid: d.domid,
            name: d.name.clone(),
            cpu_time_ns: vcpus.iter().map(|v| v.cpu_time_ns).sum(),
            vcpus,
            hypercalls,
            exits,
        });
    }
    let mut notes = Vec::new();
    if trace.vcpus.is_empty() {
        notes.push("the trace holds no runstate change (xentrace saw no scheduler records): runstate figures are zero".into());
    }
    if trace.parse.lost_records > 0 {
        notes.push(format!(
            "Xen lost {} trace records (its per-pCPU buffers filled): runstate times are less exact",
            trace.parse.lost_records
        ));
    }
    XenStatReport {
        duration_ns: wall.as_nanos() as u64,
        sources: vec![
            "CPU time: XEN_DOMCTL_getvcpuinfo cpu_time (libxenctrl xc_vcpu_getinfo), after minus before".into(),
            "runstates: xentrace TRC_SCHED_RUNSTATE_CHANGE records (runnable = steal)".into(),
            "hypercalls: xentrace TRC_PV_HYPERCALL_V2 (PV domains), charged to the vCPU running on that pCPU".into(),
            "HVM exits: xentrace TRC_HVM_VMEXIT → TRC_HVM_VMENTRY on the same pCPU".into(),
            "vCPU placement: XEN_DOMCTL_getvcpuinfo cpu".into(),
        ],
        tsc_khz: khz,
        tsc_source,
        trace_span_cycles: trace.span_cycles(),
        lost_records: trace.parse.lost_records,
        truncated_bytes: trace.parse.truncated_bytes,
        domains: doms,
        notes,
    }
}

/// Runs the measurement in this dom0: domains before, `xentrace` for the duration, domains
/// after.
///
/// # Errors
/// Not dom0, Xen libraries missing, xentrace missing or failing.
pub fn run(opts: &XenStatOptions) -> Result<XenStatReport> {
    super::check_dom0(Path::new("/")).map_err(XenError::NotDom0)?;
    let store = XenStoreLib::open()?;
    let mut ctl = XenCtrl::open()?;
    let list = |ctl: &mut XenCtrl| {
        let mut d = domains::discover(&store, Some(ctl));
        for x in d.iter_mut().filter(|x| x.domid == 0) {
            domains::probe_vcpus(ctl, x, 512);
        }
        d
    };
    let before = list(&mut ctl);
    let mut mask = xentrace::TRC_SCHED;
    if opts.hypercalls {
        mask |= xentrace::TRC_PV;
    }
    if opts.hvm_exits {
        mask |= xentrace::TRC_HVM;
    }
    let t0 = Instant::now();
    let bytes = xentrace::record(mask, opts.duration, &opts.tmp_dir)?;
    let wall = t0.elapsed();
    let after = list(&mut ctl);
    let summary = xentrace::runstate::summarize(&bytes);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    Ok(build(&before, &after, &summary, wall, &cpuinfo))
}

/// The report as text.
pub fn render_text(r: &XenStatReport) -> String {
    use std::fmt::Write;
    let ms = |ns: u64| ns as f64 / 1e6;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Xen dom0: {:.2} s measured; trace span {} cycles, TSC {} kHz ({})",
        r.duration_ns as f64 / 1e9,
        r.trace_span_cycles,
        r.tsc_khz,
        r.tsc_source
    );
    for d in &r.domains {
        let _ = writeln!(
            s,
            "\ndomain {} ({}): CPU time {}",
            d.domid,
            d.name,
            d.cpu_time_ns
                .map_or("unknown".into(), |n| format!("{:.1} ms", ms(n)))
        );
        let _ = writeln!(
            s,
            "  {:<6} {:>5} {:>12} {:>12} {:>12} {:>12} {:>12} {:>7}",
            "vCPU",
            "pCPU",
            "cpu ms",
            "running ms",
            "runnable ms",
            "blocked ms",
            "offline ms",
            "steal%"
        );
        for v in &d.vcpus {
            let _ = writeln!(
                s,
                "  {:<6} {:>5} {:>12} {:>12.1} {:>12.1} {:>12.1} {:>12.1} {:>7.2}",
                v.vcpu,
                v.pcpu.map_or("-".into(), |p| p.to_string()),
                v.cpu_time_ns
                    .map_or("-".into(), |n| format!("{:.1}", ms(n))),
                ms(v.runstate_ns[0]),
                ms(v.runstate_ns[1]),
                ms(v.runstate_ns[2]),
                ms(v.runstate_ns[3]),
                v.steal_percent
            );
        }
        if !d.hypercalls.is_empty() {
            let list: Vec<String> = d
                .hypercalls
                .iter()
                .take(8)
                .map(|h| format!("{} {}", h.name, h.count))
                .collect();
            let _ = writeln!(s, "  hypercalls: {}", list.join(", "));
        }
        for e in d.exits.iter().take(10) {
            let _ = writeln!(
                s,
                "  exit {:<24} {:>10}  mean {}",
                e.name,
                e.count,
                e.mean_ns
                    .map_or("-".into(), |n| format!("{:.1} µs", n as f64 / 1e3))
            );
        }
    }
    let _ = writeln!(s, "\nsources:");
    for src in &r.sources {
        let _ = writeln!(s, "  {src}");
    }
    if r.lost_records > 0 || r.truncated_bytes > 0 {
        let _ = writeln!(
            s,
            "trace: {} records lost by Xen, {} bytes of a partial record at the end",
            r.lost_records, r.truncated_bytes
        );
    }
    for n in &r.notes {
        let _ = writeln!(s, "NOTE: {n}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::domains::{DomainVcpu, VcpuInfoView};
    use crate::xen::xentrace::parse::{TraceWriter, TRC_PV_HYPERCALL_V2};
    use crate::xen::xentrace::runstate::summarize;

    fn dom(cpu: u64) -> Domain {
        Domain {
            domid: 1,
            name: "domu".into(),
            kind: Some("pv".into()),
            device_model_pid: None,
            vcpus: vec![DomainVcpu {
                index: 0,
                availability: Some("online".into()),
                info: Some(VcpuInfoView {
                    online: true,
                    blocked: false,
                    running: true,
                    cpu_time_ns: cpu,
                    pcpu: 1,
                }),
            }],
        }
    }

    #[test]
    fn figures_per_vcpu_with_sources() {
        // 1 GHz TSC: 1 cycle = 1 ns. vCPU 0: runnable 0..2 ms, running 2..10 ms.
        let mut w = TraceWriter::new();
        w.cpu_change(1, 0)
            .runstate(0, 0x7fff, 1, 1, 0)
            .runstate(2_000_000, 1, 0, 1, 0)
            .record(TRC_PV_HYPERCALL_V2, Some(3_000_000), &[29])
            .record(TRC_PV_HYPERCALL_V2, Some(4_000_000), &[29])
            .record(TRC_PV_HYPERCALL_V2, Some(5_000_000), &[24])
            .runstate(10_000_000, 0x7fff, 1, 0, 1);
        let s = summarize(&w.bytes);
        let cpuinfo = "vendor_id\t: GenuineIntel\ncpu MHz\t\t: 1000.000\n";
        let r = build(
            &[dom(5_000_000)],
            &[dom(13_000_000)],
            &s,
            Duration::from_millis(10),
            cpuinfo,
        );
        assert_eq!(r.tsc_khz, 1_000_000);
        let d = &r.domains[0];
        assert_eq!(d.cpu_time_ns, Some(8_000_000));
        let v = &d.vcpus[0];
        assert_eq!(v.runstate_ns, [8_000_000, 2_000_000, 0, 0]);
        assert!((v.steal_percent - 20.0).abs() < 1e-9);
        assert_eq!(v.pcpu, Some(1));
        assert_eq!(d.hypercalls[0].name, "sched_op");
        assert_eq!(d.hypercalls[0].count, 2);
        let text = render_text(&r);
        assert!(text.contains("domain 1 (domu): CPU time 8.0 ms"), "{text}");
        assert!(text.contains("TRC_SCHED_RUNSTATE_CHANGE"));
        assert!(text.contains("sched_op 2"));
    }

    #[test]
    fn tsc_rate_sources() {
        assert_eq!(tsc_khz("cpu MHz : 2400.5", 0, Duration::ZERO).0, 2_400_500);
        let (k, src) = tsc_khz("", 3_000_000, Duration::from_millis(1));
        assert_eq!(k, 3_000_000);
        assert!(src.contains("span"));
        assert_eq!(tsc_khz("", 0, Duration::ZERO).0, 0);
    }
}

//! Steal time: how long a runnable vCPU waited for a CPU.
//!
//! * **Host view** (per vCPU thread): `run_delay`, the 2nd field of
//!   `/proc/PID/task/TID/schedstat` (ns the task spent runnable on a run queue but not
//!   running; Documentation/scheduler/sched-stats.rst). From inside the guest this time is
//!   stolen: the vCPU was ready and the host did not run it.
//! * **Guest view** (per CPU of the kernel hvprof runs on): the `steal` column (8th value) of
//!   the `cpuN` lines of `/proc/stat`, in `USER_HZ` ticks, converted to ns. It is what the
//!   host's `run_delay` of this guest's vCPUs looks like from inside (via the steal clock:
//!   `kvm_steal_clock`, `xen_steal_clock`).
//!
//! Both are reported in ns, ms per second of wall time, and percent of wall time, so the two
//! views can be compared directly.

use std::path::Path;

use serde::Serialize;

use super::hist::{Hist, LatencySummary};

/// The three fields of a schedstat file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedStat {
    /// Time spent on a CPU, ns.
    pub on_cpu_ns: u64,
    /// Time spent runnable but waiting on a run queue, ns.
    pub run_delay_ns: u64,
    /// Number of timeslices run on a CPU.
    pub timeslices: u64,
}

impl SchedStat {
    /// Parses `"<on_cpu_ns> <run_delay_ns> <timeslices>\n"`.
    pub fn parse(text: &str) -> Option<SchedStat> {
        let mut it = text.split_whitespace().map(|v| v.parse::<u64>().ok());
        Some(SchedStat {
            on_cpu_ns: it.next()??,
            run_delay_ns: it.next()??,
            timeslices: it.next().flatten().unwrap_or(0),
        })
    }

    /// Reads `<proc_root>/<pid>/task/<tid>/schedstat`.
    ///
    /// # Errors
    /// The IO error (`NotFound` once the thread has exited), or `InvalidData`.
    pub fn read(proc_root: &Path, pid: i32, tid: i32) -> std::io::Result<SchedStat> {
        let path = proc_root.join(format!("{pid}/task/{tid}/schedstat"));
        let text = std::fs::read_to_string(path)?;
        SchedStat::parse(&text).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed schedstat")
        })
    }
}

/// Steal of one vCPU thread (host view) over a time span.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VcpuSteal {
    /// Where the figures come from: `schedstat` (`/proc/PID/task/TID/schedstat` run_delay).
    pub source: String,
    /// Time runnable but not running, ns.
    pub run_delay_ns: u64,
    /// `run_delay_ns` per second of wall time, in ms/s.
    pub ms_per_s: f64,
    /// `run_delay_ns` as a percentage of wall time.
    pub percent: f64,
    /// Time on a CPU (schedstat field 1), ns.
    pub on_cpu_ns: u64,
    /// `on_cpu_ns` as a percentage of wall time.
    pub on_cpu_percent: f64,
    /// Distribution of the run delay accumulated per sampling tick (ns per tick of
    /// `tick_ms`): how the steal was spread over the span.
    pub per_tick: Option<LatencySummary>,
    /// Sampling tick, ms.
    pub tick_ms: f64,
}

/// Accumulates schedstat deltas for one thread.
#[derive(Debug, Clone, Default)]
pub struct StealAcc {
    last: Option<SchedStat>,
    run_delay_ns: u64,
    on_cpu_ns: u64,
    per_tick: Hist,
}

impl StealAcc {
    /// Feeds a new reading (the first reading only sets the baseline).
    pub fn update(&mut self, now: SchedStat) {
        if let Some(prev) = self.last {
            let d = now.run_delay_ns.saturating_sub(prev.run_delay_ns);
            self.run_delay_ns += d;
            self.on_cpu_ns += now.on_cpu_ns.saturating_sub(prev.on_cpu_ns);
            self.per_tick.add(d);
        }
        self.last = Some(now);
    }

    /// The figures since the last `take` over `wall_ns` of wall time, then resets them (the
    /// baseline reading stays).
    pub fn take(&mut self, wall_ns: u64, tick_ms: f64) -> VcpuSteal {
        let wall = wall_ns.max(1) as f64;
        let r = VcpuSteal {
            source: "schedstat".into(),
            run_delay_ns: self.run_delay_ns,
            ms_per_s: self.run_delay_ns as f64 / wall * 1000.0,
            percent: self.run_delay_ns as f64 / wall * 100.0,
            on_cpu_ns: self.on_cpu_ns,
            on_cpu_percent: self.on_cpu_ns as f64 / wall * 100.0,
            per_tick: self.per_tick.summary(),
            tick_ms,
        };
        self.run_delay_ns = 0;
        self.on_cpu_ns = 0;
        self.per_tick = Hist::default();
        r
    }
}

/// Per-CPU `steal` ticks from `/proc/stat` (`cpuN` lines only, not the `cpu` total).
pub fn parse_proc_stat_steal(text: &str) -> Vec<(u32, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let cpu = it.next()?.strip_prefix("cpu")?.parse::<u32>().ok()?;
            // user nice system idle iowait irq softirq steal
            let steal = it.nth(7)?.parse::<u64>().ok()?;
            Some((cpu, steal))
        })
        .collect()
}

/// `USER_HZ`, the unit of `/proc/stat` (`sysconf(_SC_CLK_TCK)`, 100 on every Linux ABI).
pub fn user_hz() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(v)) if v > 0 => v as u64,
        _ => 100,
    }
}

/// Steal of one CPU of this kernel, as a guest (guest view).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuSteal {
    /// CPU number.
    pub cpu: u32,
    /// Stolen time, ns (USER_HZ ticks × 10^9 / USER_HZ: resolution 10 ms at USER_HZ = 100).
    pub steal_ns: u64,
    /// ms per second of wall time.
    pub ms_per_s: f64,
    /// Percentage of wall time.
    pub percent: f64,
}

/// Guest-view steal over a span: this kernel's own CPUs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuestSteal {
    /// `/proc/stat steal`.
    pub source: String,
    /// Per CPU.
    pub cpus: Vec<CpuSteal>,
    /// Sum over CPUs, ns.
    pub total_ns: u64,
}

/// Converts two `/proc/stat` readings into [`GuestSteal`].
pub fn guest_steal(
    before: &[(u32, u64)],
    after: &[(u32, u64)],
    wall_ns: u64,
    hz: u64,
) -> GuestSteal {
    let wall = wall_ns.max(1) as f64;
    let cpus: Vec<CpuSteal> = after
        .iter()
        .map(|&(cpu, a)| {
            let b = before
                .iter()
                .find(|(c, _)| *c == cpu)
                .map_or(a, |(_, b)| *b);
            let ns = a
                .saturating_sub(b)
                .saturating_mul(1_000_000_000 / hz.max(1));
            CpuSteal {
                cpu,
                steal_ns: ns,
                ms_per_s: ns as f64 / wall * 1000.0,
                percent: ns as f64 / wall * 100.0,
            }
        })
        .collect();
    GuestSteal {
        source: "/proc/stat steal".into(),
        total_ns: cpus.iter().map(|c| c.steal_ns).sum(),
        cpus,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat() {
        assert_eq!(
            SchedStat::parse("123 456 7\n"),
            Some(SchedStat {
                on_cpu_ns: 123,
                run_delay_ns: 456,
                timeslices: 7
            })
        );
        assert_eq!(SchedStat::parse("x y z"), None);
        assert_eq!(SchedStat::parse("1"), None);
    }

    #[test]
    fn acc() {
        let mut a = StealAcc::default();
        let s = |on, rd| SchedStat {
            on_cpu_ns: on,
            run_delay_ns: rd,
            timeslices: 0,
        };
        a.update(s(0, 1000));
        a.update(s(5_000_000, 6_000_000));
        a.update(s(10_000_000, 11_000_000));
        let r = a.take(20_000_000, 10.0);
        assert_eq!(r.run_delay_ns, 10_999_000);
        assert!((r.percent - 54.995).abs() < 1e-9);
        assert!((r.ms_per_s - 549.95).abs() < 1e-9);
        assert_eq!(r.per_tick.unwrap().count, 2);
        let r = a.take(10, 10.0);
        assert_eq!(r.run_delay_ns, 0);
    }

    #[test]
    fn proc_stat() {
        let text = "cpu  37241 0 14961 160443 359 0 59 29 7970 0\n\
                    cpu0 17933 0 7248 81218 64 0 7 13 4189 0\n\
                    cpu1 19307 0 7713 79224 295 0 52 16 3780 0\nintr 1 2\n";
        let v = parse_proc_stat_steal(text);
        assert_eq!(v, vec![(0, 13), (1, 16)]);
        let after = vec![(0, 63), (1, 16)];
        let g = guest_steal(&v, &after, 1_000_000_000, 100);
        assert_eq!(g.cpus[0].steal_ns, 500_000_000);
        assert!((g.cpus[0].percent - 50.0).abs() < 1e-9);
        assert_eq!(g.cpus[1].steal_ns, 0);
        assert_eq!(g.total_ns, 500_000_000);
    }
}

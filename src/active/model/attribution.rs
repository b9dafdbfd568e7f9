//! Attribution with the guest model: a helper sample ([`GuestModel::attribute`]) or a host
//! sample the host kernel tagged as guest mode ([`GuestModel::attribute_host`]) becomes an
//! [`Attributed`] sample (guest class and symbol) with a [`GuestContext`] (who ran in the
//! guest).

use serde::{Deserialize, Serialize};

use super::{GuestModel, GuestSample, OnCpu};
use crate::attribute::{Attributed, Class, Symbol};
use hvprof_perf::{CpuMode, Sample};

/// Who ran in the guest for an attributed sample.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GuestContext {
    /// Guest pid (0: idle), None when unknown.
    pub guest_pid: Option<u32>,
    /// Guest tid.
    pub guest_tid: Option<u32>,
    /// Thread name (`comm` of the thread, or of the process), `[unknown]` when unknown.
    pub comm: String,
    /// Process name (`comm` of the process's main thread), `[unknown]` when unknown.
    pub process: String,
    /// Guest CPU.
    pub guest_cpu: u32,
    /// Guest event-clock time, ns (converted for host samples).
    pub guest_time_ns: Option<u64>,
    /// For host samples: the clock error bound straddles a guest context switch, so the
    /// thread may be the neighbour's.
    pub ambiguous: bool,
}

impl GuestModel {
    /// The host thread of vCPU `cpu`; the VMM pid when unknown.
    fn vcpu_tid(&self, cpu: u32) -> i32 {
        self.vcpu_tids.get(&cpu).copied().unwrap_or(self.vm_pid)
    }

    /// Attributes one of the helper's samples. The sample's `pid` is the VMM pid, its `tid`
    /// the vCPU thread of the guest CPU (the VMM pid when unknown), its time the host time
    /// when the clock relation is known (else the guest time), its `cpu` `u32::MAX` (the host
    /// CPU is not known).
    pub fn attribute(&self, s: &GuestSample) -> (Attributed, GuestContext) {
        let (class, symbol) = match s.cpumode {
            CpuMode::GuestKernel => (Class::GuestKernel, self.kernel_symbol(s.ip)),
            _ => (
                Class::GuestUser,
                self.user_symbol(s.guest_pid, s.ip, s.guest_time_ns),
            ),
        };
        let time_ns = self
            .clock
            .guest_to_host(s.guest_time_ns, s.guest_cpu)
            .map_or(s.guest_time_ns, |x| x.0);
        let a = Attributed {
            sample: Sample {
                ip: s.ip,
                pid: self.vm_pid,
                tid: self.vcpu_tid(s.guest_cpu),
                time_ns,
                cpu: u32::MAX,
                period: s.period,
                cpumode: s.cpumode,
                exact_ip: false,
            },
            class,
            symbol,
            landing: false,
        };
        let ctx = GuestContext {
            guest_pid: Some(s.guest_pid),
            guest_tid: Some(s.guest_tid),
            comm: self.comm(s.guest_pid, s.guest_tid, s.guest_time_ns),
            process: self.comm(s.guest_pid, s.guest_pid, s.guest_time_ns),
            guest_cpu: s.guest_cpu,
            guest_time_ns: Some(s.guest_time_ns),
            ambiguous: false,
        };
        (a, ctx)
    }

    /// Attributes a sample the *host* kernel tagged as guest mode (VMX/SVM hosts): vCPU
    /// `vcpu` → guest CPU `vcpu` → the guest thread on it at the sample's instant (host time
    /// converted with [`GuestModel::clock`]) → that process's map → symbol. `class` and
    /// `symbol` of the returned sample are the guest's; everything else is kept.
    pub fn attribute_host(&self, s: &Sample, vcpu: u32) -> (Attributed, GuestContext) {
        let conv = self.clock.host_to_guest(s.time_ns, vcpu);
        let tl = self.timelines.get(&vcpu);
        let (who, ambiguous) = match (conv, tl) {
            (Some((g, err)), Some(tl)) => (tl.at(g), tl.switch_near(g, err)),
            _ => (None, false),
        };
        let (pid, tid) = match who {
            Some(OnCpu::Task { pid, tid }) => (Some(pid), Some(tid)),
            _ => (None, None),
        };
        let gtime = conv.map(|c| c.0);
        let (class, symbol) = match s.cpumode {
            CpuMode::GuestUser => (
                Class::GuestUser,
                match (pid, gtime) {
                    (Some(p), Some(t)) => self.user_symbol(p, s.ip, t),
                    _ => Symbol::unknown(
                        s.ip,
                        "[guest.user]",
                        if conv.is_none() {
                            "no host-to-guest clock relation"
                        } else if tl.is_none_or(|t| t.is_empty()) {
                            "no guest context switches received for this CPU"
                        } else if who.is_none() {
                            "sample before the first guest context switch on this CPU"
                        } else {
                            "guest thread unknown at this time (switched out, or the helper reconnected)"
                        },
                    ),
                },
            ),
            _ => (Class::GuestKernel, self.kernel_symbol(s.ip)),
        };
        let (comm, process) = match (pid, tid) {
            (Some(p), Some(t)) => (
                self.comm(p, t, gtime.unwrap_or(0)),
                self.comm(p, p, gtime.unwrap_or(0)),
            ),
            _ => ("[unknown]".into(), "[unknown]".into()),
        };
        (
            Attributed {
                sample: *s,
                class,
                symbol,
                landing: false,
            },
            GuestContext {
                guest_pid: pid,
                guest_tid: tid,
                comm,
                process,
                guest_cpu: vcpu,
                guest_time_ns: gtime,
                ambiguous,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{model_with_process, sw};
    use super::*;
    use crate::active::clock::{ClockSync, RoundTrip};
    use hvprof_proto::Message;

    #[test]
    fn helper_samples_resolve_user_and_kernel() {
        let m = model_with_process();
        let s = GuestSample {
            ip: 0x5555_0000_1150,
            guest_pid: 77,
            guest_tid: 77,
            guest_time_ns: 10,
            guest_cpu: 1,
            cpumode: CpuMode::GuestUser,
            period: 1_000_000,
        };
        let (a, ctx) = m.attribute(&s);
        assert_eq!(a.symbol, Symbol::named("hot_alpha", "hvprof-workload"));
        assert_eq!(a.class, Class::GuestUser);
        assert_eq!(a.sample.pid, 4242);
        assert_eq!(a.sample.tid, 5001);
        assert_eq!(ctx.comm, "hvprof-workload");
        assert_eq!(ctx.guest_pid, Some(77));
        let (a, _) = m.attribute(&GuestSample {
            ip: 0x5555_0000_1350,
            ..s
        });
        assert_eq!(a.symbol.name, "core::fmt::write");
        let (a, _) = m.attribute(&GuestSample { ip: 0x9999, ..s });
        assert_eq!(a.symbol.name, "[unknown]");
        let (a, _) = m.attribute(&GuestSample {
            ip: 0xffff_ffff_8100_2010,
            cpumode: CpuMode::GuestKernel,
            ..s
        });
        assert_eq!(a.symbol, Symbol::named("schedule", "[guest.kernel]"));
        let (a, _) = m.attribute(&GuestSample {
            ip: 0xffff_ffff_c000_0004,
            cpumode: CpuMode::GuestKernel,
            ..s
        });
        assert_eq!(a.symbol, Symbol::named("vp_notify", "[guest.virtio_pci]"));
    }

    #[test]
    fn host_tagged_samples_use_timeline_and_clock() {
        let mut m = model_with_process();
        m.apply(Message::Switches(vec![
            sw(1, 1_000_000, 77, 77, false),
            sw(1, 2_000_000, 77, 77, true),
            sw(1, 2_000_000, 0, 0, false),
        ]))
        .unwrap();
        let host = |t: u64, mode: CpuMode, ip: u64| Sample {
            ip,
            pid: 4242,
            tid: 5001,
            time_ns: t,
            cpu: 3,
            period: 1,
            cpumode: mode,
            exact_ip: false,
        };
        // No clock relation yet.
        let (a, ctx) = m.attribute_host(&host(1_500_000, CpuMode::GuestUser, 0x5555_0000_1150), 1);
        assert_eq!(a.symbol.name, "[unknown]");
        assert!(a.symbol.reason.as_deref().unwrap().contains("clock"));
        assert_eq!(ctx.guest_pid, None);
        // Guest clock = host clock + 500_000, ±10 ns.
        let mut rt = RoundTrip::default();
        rt.add(0, 20, 500_010);
        m.clock = ClockSync::RoundTrip(rt);
        let (a, ctx) = m.attribute_host(&host(1_000_000, CpuMode::GuestUser, 0x5555_0000_1150), 1);
        assert_eq!(a.symbol.name, "hot_alpha");
        assert_eq!(ctx.comm, "hvprof-workload");
        assert_eq!(ctx.guest_time_ns, Some(1_500_000));
        assert!(!ctx.ambiguous);
        assert_eq!(a.sample.cpu, 3, "host fields kept");
        // Converted to guest time 400_000: before the first switch.
        let (a, _) = m.attribute_host(&host(0, CpuMode::GuestUser, 0x5555_0000_1150), 1);
        assert!(a
            .symbol
            .reason
            .as_deref()
            .unwrap()
            .contains("before the first"));
        // Near a switch: ambiguous.
        let (_, ctx) = m.attribute_host(
            &host(1_499_995, CpuMode::GuestKernel, 0xffff_ffff_8100_1004),
            1,
        );
        assert!(ctx.ambiguous);
        // After the switch to idle: kernel symbol and swapper.
        let (a, ctx) = m.attribute_host(
            &host(1_600_000, CpuMode::GuestKernel, 0xffff_ffff_8100_1004),
            1,
        );
        assert_eq!(a.symbol.name, "do_idle");
        assert_eq!(ctx.comm, "swapper");
        // A CPU with no switches.
        let (a, _) = m.attribute_host(&host(1_600_000, CpuMode::GuestUser, 0x5555_0000_1150), 0);
        assert!(a
            .symbol
            .reason
            .as_deref()
            .unwrap()
            .contains("no guest context switches"));
    }
}

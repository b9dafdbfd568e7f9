//! Guest call stacks of active mode: the helper's samples with their callchains
//! ([`GuestChain`]) → [`StackRow`]s under VM → vCPU → guest process, every frame resolved
//! through the guest's own symbols exactly like a leaf (guest kernel frames through the
//! kallsyms the helper sent, guest user frames through the process's maps and the symbol
//! tables of its files).
//!
//! Stage: guest model → **guest stacks** → report. Input: the samples and chains taken out
//! of the model; output: rows with [`StackOrigin::Helper`], most samples first.
//!
//! - The leaf (frame 0 of a chain, the interrupted instruction) is looked up as it is; every
//!   other frame is a return address, so `ip - 1` (inside the call instruction) is looked up,
//!   which keeps a call that ends a function on that function. Unknown frames stay, as
//!   `[unknown]` with their address and reason: a stack is never shortened.
//! - A sample that came without a chain (the guest kernel could not take one, or an older
//!   helper) is a one-frame stack with [`StackRow::leaf_only`] set: no frame is invented.
//! - Chains are cut at [`MAX_STACK_FRAMES`] frames from the leaf (the wire allows no more).

use std::collections::HashMap;

use super::{GuestChain, GuestModel, GuestSample};
use crate::attribute::Class;
use crate::report::stack::{Frame, GuestProc, StackOrigin, StackRow};
use hvprof_perf::CpuMode;

/// Most frames kept per guest stack ([`hvprof_proto::MAX_CALLCHAIN`]).
pub const MAX_STACK_FRAMES: usize = hvprof_proto::MAX_CALLCHAIN;

/// Aggregation key of a guest stack: guest CPU, guest pid, process name, frames (root
/// first), leaf-only.
type StackKey = (u32, u32, String, Vec<Frame>, bool);

impl GuestModel {
    /// Resolves frame `i` (0 = leaf) of a chain of process `pid` at guest time `time`
    /// (ns): `ip` as is for the leaf, `ip - 1` for callers. An unknown frame keeps `ip`
    /// itself as its address.
    pub fn stack_frame(&self, pid: u32, mode: CpuMode, ip: u64, i: usize, time: u64) -> Frame {
        let lookup = if i == 0 { ip } else { ip.saturating_sub(1) };
        let (class, mut symbol) = match mode {
            CpuMode::GuestKernel => (Class::GuestKernel, self.kernel_symbol(lookup)),
            _ => (Class::GuestUser, self.user_symbol(pid, lookup, time)),
        };
        if symbol.addr.is_some() {
            symbol.addr = Some(ip);
        }
        Frame { class, symbol }
    }

    /// The frames of one sample, root first: its chain when it has one, else its leaf
    /// alone (`leaf_only` true).
    fn sample_frames(&self, s: &GuestSample, chain: Option<&GuestChain>) -> (Vec<Frame>, bool) {
        match chain {
            Some(c) if !c.ips.is_empty() => {
                let n = c.ips.len().min(MAX_STACK_FRAMES);
                let mut frames: Vec<Frame> = (0..n)
                    .map(|i| self.stack_frame(s.guest_pid, c.mode(i), c.ips[i], i, s.guest_time_ns))
                    .collect();
                frames.reverse();
                (frames, false)
            }
            _ => (
                vec![self.stack_frame(s.guest_pid, s.cpumode, s.ip, 0, s.guest_time_ns)],
                true,
            ),
        }
    }

    /// The guest stacks of the helper's `samples` (as [`GuestModel::take_samples`] returned
    /// them) with their `chains` ([`GuestModel::take_chains`]), one row per distinct (guest
    /// CPU, guest process, frames), most samples first. Rows have `tid` -1, `vcpu` the guest
    /// CPU (= vCPU index), `thread_name` `vCPU N` and the guest process.
    pub fn guest_stacks(&self, samples: &[GuestSample], chains: &[GuestChain]) -> Vec<StackRow> {
        let by_sample: HashMap<usize, &GuestChain> = chains.iter().map(|c| (c.sample, c)).collect();
        let mut rows: HashMap<StackKey, (u64, u64)> = HashMap::new();
        for (i, s) in samples.iter().enumerate() {
            let (frames, leaf_only) = self.sample_frames(s, by_sample.get(&i).copied());
            let process = self.comm(s.guest_pid, s.guest_pid, s.guest_time_ns);
            let e = rows
                .entry((s.guest_cpu, s.guest_pid, process, frames, leaf_only))
                .or_default();
            e.0 = e.0.saturating_add(1);
            e.1 = e.1.saturating_add(s.period);
        }
        let mut out: Vec<StackRow> = rows
            .into_iter()
            .map(
                |((cpu, pid, comm, frames, leaf_only), (samples, period))| StackRow {
                    tid: -1,
                    vcpu: Some(cpu),
                    thread_name: format!("vCPU {cpu}"),
                    guest: Some(GuestProc {
                        pid: Some(pid),
                        comm,
                    }),
                    origin: StackOrigin::Helper,
                    frames,
                    leaf_only,
                    samples,
                    period,
                },
            )
            .collect();
        out.sort_by(|a, b| {
            b.samples
                .cmp(&a.samples)
                .then_with(|| a.vcpu.cmp(&b.vcpu))
                .then_with(|| frame_names(&a.frames).cmp(&frame_names(&b.frames)))
        });
        out
    }
}

/// The frames' display names, for a stable order of rows with equal counts.
fn frame_names(f: &[Frame]) -> Vec<String> {
    f.iter().map(|f| f.symbol.display_name()).collect()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::model_with_process;
    use super::*;
    use crate::attribute::Symbol;

    fn sample(ip: u64, cpu: u32) -> GuestSample {
        GuestSample {
            ip,
            guest_pid: 77,
            guest_tid: 77,
            guest_time_ns: 10,
            guest_cpu: cpu,
            cpumode: CpuMode::GuestUser,
            period: 1_000_000,
        }
    }

    fn names(r: &StackRow) -> Vec<String> {
        r.frames.iter().map(|f| f.symbol.name.clone()).collect()
    }

    #[test]
    fn caller_frames_are_looked_up_at_ip_minus_one() {
        let m = model_with_process();
        // hot_alpha is [0x5555_0000_1100, 0x1200) in the test table: a return address at its
        // very end belongs to the call instruction inside it, one byte before.
        let end = 0x5555_0000_1200;
        let f = m.stack_frame(77, CpuMode::GuestUser, end, 1, 10);
        assert_eq!(f.symbol.name, "hot_alpha", "{f:?}");
        assert_eq!(f.class, Class::GuestUser);
        // The same address as a leaf is looked up as is: not hot_alpha.
        let leaf = m.stack_frame(77, CpuMode::GuestUser, end, 0, 10);
        assert_ne!(leaf.symbol.name, "hot_alpha", "{leaf:?}");
        // Kernel frames go through the guest kallsyms.
        let k = m.stack_frame(77, CpuMode::GuestKernel, 0xffff_ffff_8100_2010, 2, 10);
        assert_eq!(k.symbol, Symbol::named("schedule", "[guest.kernel]"));
        assert_eq!(k.class, Class::GuestKernel);
    }

    #[test]
    fn stacks_aggregate_root_first_and_keep_unknown_frames() {
        let m = model_with_process();
        let samples = vec![
            sample(0x5555_0000_1150, 1),
            sample(0x5555_0000_1150, 1),
            sample(0x5555_0000_1160, 1),
            sample(0x5555_0000_1150, 0),
        ];
        // Kernel leaf, then user hot_alpha, an unmapped frame, then core::fmt::write (root).
        let chain = |sample: usize, ips: Vec<u64>, kernel_frames: usize| GuestChain {
            sample,
            kernel_frames,
            ips,
        };
        let chains = vec![
            chain(0, vec![0x5555_0000_1150, 0x9999, 0x5555_0000_1351], 0),
            chain(1, vec![0x5555_0000_1150, 0x9999, 0x5555_0000_1351], 0),
            chain(
                2,
                vec![
                    0xffff_ffff_8100_2010,
                    0x5555_0000_1160,
                    0x9999,
                    0x5555_0000_1351,
                ],
                1,
            ),
        ];
        let rows = m.guest_stacks(&samples, &chains);
        assert_eq!(rows.len(), 3, "{rows:#?}");
        let top = &rows[0];
        assert_eq!(top.samples, 2);
        assert_eq!(top.period, 2_000_000);
        assert_eq!(top.vcpu, Some(1));
        assert_eq!(top.tid, -1);
        assert_eq!(top.origin, StackOrigin::Helper);
        assert!(!top.leaf_only);
        assert_eq!(
            top.guest,
            Some(GuestProc {
                pid: Some(77),
                comm: "hvprof-workload".into()
            })
        );
        assert_eq!(names(top), ["core::fmt::write", "[unknown]", "hot_alpha"]);
        assert_eq!(
            top.frames[1].symbol.addr,
            Some(0x9999),
            "unknown frame kept"
        );
        assert_eq!(top.frames[1].symbol.dso, "[guest.user]");
        assert!(top.frames[1].symbol.reason.is_some());
        let k = rows
            .iter()
            .find(|r| r.frames.len() == 4)
            .expect("kernel row");
        assert_eq!(
            names(k),
            ["core::fmt::write", "[unknown]", "hot_alpha", "schedule"]
        );
        assert_eq!(k.frames[3].class, Class::GuestKernel);
        assert_eq!(k.frames[2].class, Class::GuestUser);
        // No chain: the leaf alone, marked.
        let lone = rows.iter().find(|r| r.vcpu == Some(0)).expect("vCPU 0 row");
        assert!(lone.leaf_only);
        assert_eq!(names(lone), ["hot_alpha"]);
    }

    #[test]
    fn stack_samples_messages_keep_chains_beside_their_samples() {
        use hvprof_proto::{Message, StackSample, WireSample};
        let mut m = model_with_process();
        let w = |ip: u64| WireSample {
            ip,
            pid: 77,
            tid: 77,
            time: 10,
            cpu: 1,
            misc: 2,
            period: 1_000_000,
        };
        m.apply(Message::Samples(vec![w(0x5555_0000_1250)]))
            .unwrap();
        m.apply(Message::StackSamples(vec![
            StackSample {
                sample: w(0x5555_0000_1150),
                kernel_frames: 0,
                ips: vec![0x5555_0000_1150, 0x5555_0000_1351],
            },
            StackSample {
                sample: w(0x5555_0000_1160),
                kernel_frames: 0,
                ips: vec![],
            },
        ]))
        .unwrap();
        let held = m.heap_bytes();
        let (samples, chains) = (m.take_samples(), m.take_chains());
        assert!(m.heap_bytes() < held);
        assert_eq!(samples.len(), 3);
        assert_eq!(chains.len(), 1);
        assert_eq!(chains[0].sample, 1);
        let rows = m.guest_stacks(&samples, &chains);
        let chained: Vec<_> = rows.iter().filter(|r| !r.leaf_only).collect();
        assert_eq!(chained.len(), 1);
        assert_eq!(names(chained[0]), ["core::fmt::write", "hot_alpha"]);
        let mut lone: Vec<_> = rows.iter().filter(|r| r.leaf_only).map(names).collect();
        lone.sort();
        assert_eq!(lone, [["hot_alpha"], ["hot_beta"]]);
    }

    #[test]
    fn hostile_chains_give_rows_for_every_sample() {
        use hvprof_proto::{Message, StackSample, WireSample};
        let mut m = model_with_process();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut batch = Vec::new();
        for _ in 0..500 {
            let n = (next() % 130) as usize;
            let ips: Vec<u64> = (0..n).map(|_| next()).collect();
            batch.push(StackSample {
                sample: WireSample {
                    ip: next(),
                    pid: (next() % 100) as u32,
                    tid: 1,
                    time: next(),
                    cpu: (next() % 3) as u32,
                    misc: next() as u16,
                    period: next(),
                },
                kernel_frames: (next() % (n as u64 + 1)) as u16,
                ips,
            });
        }
        m.apply(Message::StackSamples(batch)).unwrap();
        let (samples, chains) = (m.take_samples(), m.take_chains());
        let rows = m.guest_stacks(&samples, &chains);
        assert_eq!(rows.iter().map(|r| r.samples).sum::<u64>(), 500);
        assert!(rows
            .iter()
            .all(|r| !r.frames.is_empty() && r.frames.len() <= MAX_STACK_FRAMES));
    }

    #[test]
    fn stack_depth_is_capped_at_the_leaf_end() {
        let m = model_with_process();
        let mut ips = vec![0x5555_0000_1150];
        ips.extend(std::iter::repeat_n(0x5555_0000_1351, MAX_STACK_FRAMES + 20));
        let chains = vec![GuestChain {
            sample: 0,
            kernel_frames: 0,
            ips,
        }];
        let rows = m.guest_stacks(&[sample(0x5555_0000_1150, 1)], &chains);
        assert_eq!(rows[0].frames.len(), MAX_STACK_FRAMES);
        assert_eq!(rows[0].leaf().unwrap().symbol.name, "hot_alpha");
    }
}

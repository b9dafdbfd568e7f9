//! Stacks: every frame of a sample's call stack attributed like a sample of its own, then the
//! whole path handed to the aggregator ([`Aggregator::add_stack`]).
//!
//! Frames come from `PERF_SAMPLE_CALLCHAIN` (include/uapi/linux/perf_event.h): entries leaf
//! first, each run announced by a `PERF_CONTEXT_*` marker giving its cpumode — host kernel
//! frames, then (after `PERF_CONTEXT_USER`) the user frames the kernel walked by frame
//! pointers. A context's first entry is the interrupted IP (the sample's own IP for the first
//! context, the user IP at syscall entry for the user context); every later entry is a return
//! address, looked up at `ip - 1` so a call at the end of a function names that function, as
//! perf and every unwinder do.
//!
//! Guest-tagged samples keep their leaf alone, marked `leaf_only`: the host kernel returns no
//! guest callchain (x86's perf_callchain_kernel/user stop at `perf_guest_state()`), and
//! hvprof does not invent frames.

use hvprof_perf::record::SampleRecord;
use hvprof_perf::{CpuMode, Sample};
use hvprof_symbols::UserRegs;

use super::{Attributor, Class};
use crate::aggregate::{Aggregator, SymId, MAX_FRAMES};

impl Attributor {
    /// Attributes one decoded sample record and adds it to `agg`: with its call stack when
    /// the record carries one (`PERF_SAMPLE_CALLCHAIN`, and under `--call-graph dwarf` the
    /// user registers and stack copy), as a leaf otherwise ([`Attributor::attribute_into`]).
    pub fn attribute_record_into(&mut self, r: &SampleRecord<'_>, agg: &mut Aggregator) {
        let s = &r.sample;
        if r.callchain.is_none() && r.regs_user.is_none() {
            self.attribute_into(s, agg);
            return;
        }
        let leaf = self.resolve(s, agg);
        if s.cpumode.is_guest() {
            agg.add_stack(s, leaf, &[], true);
            return;
        }
        let mut callers = std::mem::take(&mut self.frames);
        callers.clear();
        if let Some(chain) = r.callchain {
            let mut mode = None;
            let mut first_of_context = true;
            let mut skipped_leaf = false;
            for (m, ip) in chain.frames(s.cpumode) {
                if callers.len() >= MAX_FRAMES || m.is_guest() {
                    // A host callchain never holds guest frames: stop rather than mix spaces.
                    break;
                }
                if mode != Some(m) {
                    mode = Some(m);
                    first_of_context = true;
                }
                // The first context's first entry is the sample's IP: the leaf, already done.
                if !skipped_leaf && m == s.cpumode && ip == s.ip {
                    skipped_leaf = true;
                    first_of_context = false;
                    continue;
                }
                skipped_leaf = true;
                let lookup = if first_of_context {
                    ip
                } else {
                    ip.wrapping_sub(1)
                };
                first_of_context = false;
                callers.push(self.frame(s, m, lookup, agg));
            }
        }
        // `--call-graph dwarf` excludes the kernel's user callchain: the user side comes from
        // the registers and stack copy.
        self.unwind_user(r, agg, &mut callers);
        agg.add_stack(s, leaf, &callers, false);
        self.frames = callers;
    }

    /// One caller frame: its class and interned symbol, through the same caches as samples.
    fn frame(
        &mut self,
        s: &Sample,
        mode: CpuMode,
        ip: u64,
        agg: &mut Aggregator,
    ) -> (Class, SymId) {
        let f = Sample {
            ip,
            cpumode: mode,
            ..*s
        };
        let (class, _, sym) = self.resolve(&f, agg);
        (class, sym)
    }

    /// `--call-graph dwarf`: unwinds the sample's user stack copy and pushes the user frames
    /// (the interrupted user IP first, then return addresses) onto `out`. None when the
    /// record carries no registers or stack copy; Some(frames pushed) otherwise.
    fn unwind_user(
        &mut self,
        r: &SampleRecord<'_>,
        agg: &mut Aggregator,
        out: &mut Vec<(Class, SymId)>,
    ) -> Option<usize> {
        let (regs, stack) = (r.regs_user?, r.stack_user?);
        let s = &r.sample;
        // PERF_SAMPLE_REGS_ABI_64; ABI_NONE (0) for samples of kernel threads.
        if regs.abi != 2 || out.len() >= MAX_FRAMES {
            return None;
        }
        let reg = |bit: u32| {
            let below = self.regs_user_mask & ((1u64 << bit) - 1);
            (self.regs_user_mask & (1 << bit) != 0)
                .then(|| regs.get(below.count_ones() as usize))
                .flatten()
        };
        let regs = UserRegs {
            bp: reg(6)?,
            sp: reg(7)?,
            ip: reg(8)?,
        };
        self.ensure_maps(s.pid);
        let maps = self.maps.get(&s.pid)?;
        let mut ips = std::mem::take(&mut self.user_ips);
        self.unwinder.unwind(
            s.pid,
            maps,
            regs,
            stack,
            MAX_FRAMES - out.len() + 1,
            &mut ips,
        );
        let before = out.len();
        for (i, &ip) in ips.iter().enumerate() {
            // A user-mode sample's first frame is its own IP: the leaf, already done. A kernel
            // sample's is the user IP at kernel entry: a frame, not a return address.
            if i == 0 && s.cpumode == CpuMode::User {
                continue;
            }
            let lookup = if i == 0 { ip } else { ip.wrapping_sub(1) };
            out.push(self.frame(s, CpuMode::User, lookup, agg));
        }
        self.user_ips = ips;
        Some(out.len() - before)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use hvprof_perf::abi;
    use hvprof_perf::record::encode::{Encoder, SampleParts};
    use hvprof_perf::record::{Record, RecordDecoder};
    use hvprof_symbols::Kallsyms;

    use super::*;
    use crate::attribute::HostSymbols;
    use crate::counters::Rate;
    use crate::model::{GuestMachine, Machines, Thread, Vcpu, VmId};
    use crate::report::Meta;

    const KALLSYMS: &str = "\
ffffffff81000100 T entry_SYSCALL_64
ffffffff81001000 T do_syscall_64
ffffffff81002000 T __x64_sys_ioctl
ffffffff81003000 T kvm_vcpu_ioctl
ffffffff81004000 T kvm_arch_vcpu_ioctl_run
ffffffff81005000 T vcpu_put
ffffffff81006000 T native_read_msr
ffffffff81007000 T _etext
";

    fn setup() -> (Attributor, Aggregator) {
        let mut vm = GuestMachine::new(VmId::Vmm(10), "vm");
        vm.vcpus.push(Vcpu {
            index: 0,
            tid: Some(11),
        });
        vm.threads.insert(
            11,
            Thread {
                tid: 11,
                name: "vcpu0".into(),
                vcpu: Some(0),
                tcg: false,
            },
        );
        let mut m = Machines::new();
        m.add(vm);
        let m = Arc::new(m);
        let host = HostSymbols {
            kallsyms: Some(Kallsyms::parse(KALLSYMS).unwrap()),
            kallsyms_error: None,
        };
        let mut a = Attributor::new(host, Path::new("/nonexistent"), Arc::clone(&m));
        a.use_recorded_maps();
        (a, Aggregator::new(m))
    }

    fn meta() -> Meta {
        Meta {
            event: "cpu-clock".into(),
            rate: Rate::Frequency(1000),
            period_is_ns: true,
            duration_ns: 1,
            mode: "threads".into(),
            host: "h".into(),
            kernel: "k".into(),
            start_unix_ns: 0,
        }
    }

    /// Encodes one sample with `chain` (markers included) and feeds it through the decoder
    /// and the attributor, as a session does.
    fn feed(a: &mut Attributor, agg: &mut Aggregator, mode: CpuMode, ip: u64, chain: &[u64]) {
        let st = abi::HVPROF_SAMPLE_TYPE | abi::SAMPLE_CALLCHAIN;
        let mut bytes = Vec::new();
        Encoder::new(st).sample(
            &mut bytes,
            &SampleParts {
                cpumode: Some(mode),
                ip,
                pid: 10,
                tid: 11,
                period: 1_000_000,
                callchain: chain,
                ..SampleParts::default()
            },
        );
        for r in RecordDecoder::new(st).records(&bytes) {
            let Record::Sample(r) = r else {
                panic!("not a sample: {r:?}")
            };
            a.attribute_record_into(&r, agg);
        }
    }

    #[test]
    fn kernel_callchain_becomes_a_root_first_stack_with_inclusive_counts() {
        let (mut a, mut agg) = setup();
        // Leaf first, as the kernel writes it: the IP, then return addresses (each just past
        // a call, at the start of the next function's range for the last byte case).
        let chain = [
            abi::CONTEXT_KERNEL,
            0xffff_ffff_8100_6010, // native_read_msr (the sample IP)
            0xffff_ffff_8100_4020, // in kvm_arch_vcpu_ioctl_run
            0xffff_ffff_8100_4000, // return address at the very start of …_run: ip-1 is kvm_vcpu_ioctl
            0xffff_ffff_8100_2010, // __x64_sys_ioctl
            0xffff_ffff_8100_1010, // do_syscall_64
        ];
        for _ in 0..3 {
            feed(&mut a, &mut agg, CpuMode::Kernel, chain[1], &chain);
        }
        let p = agg.snapshot(meta(), Some((false, String::new())), usize::MAX);
        assert!(p.callchains);
        let v = &p.vms[0];
        assert_eq!(v.stacks.len(), 1, "{:?}", v.stacks);
        let s = &v.stacks[0];
        let names: Vec<String> = s.frames.iter().map(|f| f.symbol.name.clone()).collect();
        assert_eq!(
            names,
            [
                "do_syscall_64",
                "__x64_sys_ioctl",
                "kvm_vcpu_ioctl",
                "kvm_arch_vcpu_ioctl_run",
                "native_read_msr"
            ]
        );
        assert_eq!((s.samples, s.vcpu, s.leaf_only), (3, Some(0), false));
        assert_eq!(s.frames[2].class, Class::HypervisorKvm);
        assert_eq!(s.frames[0].class, Class::HypervisorKernel);
        let row = |n: &str| {
            v.top_symbols
                .iter()
                .find(|r| r.symbol.name == n)
                .unwrap_or_else(|| panic!("{n} in {:?}", v.top_symbols))
                .clone()
        };
        let run = row("kvm_arch_vcpu_ioctl_run");
        assert_eq!((run.samples, run.inclusive_samples), (0, 3));
        assert!((run.inclusive_percent - 100.0).abs() < 1e-9);
        let leaf = row("native_read_msr");
        assert_eq!((leaf.samples, leaf.inclusive_samples), (3, 3));
    }

    #[test]
    fn guest_samples_stay_leaf_only_and_recursion_counts_once() {
        let (mut a, mut agg) = setup();
        // A guest-tagged sample: whatever the chain holds, the stack is the leaf alone.
        feed(
            &mut a,
            &mut agg,
            CpuMode::GuestUser,
            0x40_0221,
            &[abi::CONTEXT_GUEST_USER, 0x40_0221],
        );
        // Recursion: do_syscall_64 twice in one stack counts once inclusively.
        let chain = [
            abi::CONTEXT_KERNEL,
            0xffff_ffff_8100_5010,
            0xffff_ffff_8100_1020,
            0xffff_ffff_8100_1030,
        ];
        feed(&mut a, &mut agg, CpuMode::Kernel, chain[1], &chain);
        let p = agg.snapshot(meta(), Some((false, String::new())), usize::MAX);
        let v = &p.vms[0];
        let guest = v.stacks.iter().find(|s| s.leaf_only).expect("guest stack");
        assert_eq!(guest.frames.len(), 1);
        assert_eq!(guest.frames[0].class, Class::GuestUser);
        let ds = v
            .top_symbols
            .iter()
            .find(|r| r.symbol.name == "do_syscall_64")
            .unwrap();
        assert_eq!(ds.inclusive_samples, 1);
        let host = v.stacks.iter().find(|s| !s.leaf_only).unwrap();
        assert_eq!(host.frames.len(), 3);
    }

    #[test]
    fn samples_without_callchains_cost_no_stack() {
        let (mut a, mut agg) = setup();
        let s = Sample {
            ip: 0xffff_ffff_8100_6010,
            pid: 10,
            tid: 11,
            period: 1,
            cpumode: CpuMode::Kernel,
            ..Sample::default()
        };
        a.attribute_into(&s, &mut agg);
        assert!(!agg.has_stacks());
        let p = agg.snapshot(meta(), None, usize::MAX);
        assert!(!p.callchains && p.vms[0].stacks.is_empty());
    }
}

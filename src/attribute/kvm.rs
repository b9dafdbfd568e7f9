//! Which host kernel code is the hypervisor (KVM), and where vCPU samples land when the host
//! does not report guest IPs.

/// Host kernel functions where a vCPU thread's samples land when the host takes a sampling
/// interrupt while the guest runs and does not report the guest IP:
/// PVM's `pvm_do_event_irqoff` (arch/x86/kvm/pvm/pvm.c), VMX's interrupt-dispatch after a
/// VM exit and its entry/exit path (arch/x86/kvm/vmx/vmenter.S, vmx.c), SVM's (svm/vmenter.S).
pub const GUEST_LANDING_SYMBOLS: &[&str] = &[
    "pvm_do_event_irqoff",
    "vmx_do_interrupt_irqoff",
    "vmx_do_interrupt_nmi_irqoff",
    "vmx_do_nmi_irqoff",
    "__vmx_vcpu_run",
    "vmx_vcpu_enter_exit",
    "__svm_vcpu_run",
    "svm_vcpu_enter_exit",
    "__svm_sev_es_vcpu_run",
];

/// KVM's loadable modules by name.
pub const KVM_MODULES: &[&str] = &["kvm", "kvm_intel", "kvm_amd", "kvm_pvm", "pvm"];

/// Whether a host kernel symbol is KVM code: in a KVM module, or — for a KVM built into the
/// kernel, whose symbols carry no module — named by KVM's conventions (`kvm*`, `__kvm*`, `pvm_*`,
/// `vmx_*`, `svm_*`, `vcpu_*`, the x86 instruction emulator `x86_emulate*`/`x86_decode*`/
/// `emulator_*`, its opcode handlers `em_*` and fetch/segment helpers, and the MMU's
/// `paging64_*`, `paging32_*`, `ept_*`, `tdp_*`, `mmu_*`).
/// The name rule is a heuristic; module membership is exact.
pub fn is_kvm_symbol(name: &str, module: Option<&str>) -> bool {
    if let Some(m) = module {
        return KVM_MODULES.contains(&m);
    }
    let n = name.trim_start_matches('_');
    const PREFIXES: &[&str] = &[
        "kvm",
        "pvm_",
        "vmx_",
        "svm_",
        "vcpu_",
        "x86_emulate",
        "x86_decode",
        "emulator_",
        "paging64_",
        "paging32_",
        "ept_",
        "nested_vmx",
        "nested_svm",
        "em_",
        "do_insn_fetch",
        "segmented_",
        "linearize",
        "tdp_",
        "mmu_",
        "fast_page_fault",
        "direct_page_fault",
    ];
    // Kernel code that shares those prefixes but is not the hypervisor: the MMU notifier
    // (mm/), the energy model (kernel/power), and a KVM *guest's* paravirtual code
    // (arch/x86/kernel/kvm.c, kvmclock.c), present whenever the host itself runs as a guest.
    const NOT_KVM: &[&str] = &[
        "mmu_notifier",
        "mmu_interval",
        "em_cpu",
        "em_dev",
        "em_pd",
        "em_perf",
        "kvm_sched_clock",
        "kvm_clock",
        "kvmclock",
        "kvm_guest",
        "kvm_steal",
        "kvm_para",
        "kvm_pv_",
        "kvm_async_pf_task",
        "kvm_read_and_reset_apf",
        "kvm_send_ipi",
        "kvm_smp_send",
        "kvm_flush_tlb",
        "kvm_wait",
        "kvm_kick_cpu",
        "kvm_cpu_online",
        "kvm_cpu_down",
        "kvm_crash",
        "kvm_io_delay",
        "kvm_setup",
        "kvm_spurious_fault",
        "kvm_save_sched_clock",
        "kvm_restore_sched_clock",
        "kvm_get_wallclock",
        "kvm_set_wallclock",
        "kvm_check_and_clear_guest_paused",
    ];
    PREFIXES.iter().any(|p| n.starts_with(p)) && !NOT_KVM.iter().any(|p| n.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn kvm_symbol_rule() {
        let yes = [
            ("kvm_arch_vcpu_ioctl_run", None),
            ("__kvm_set_memory_region", None),
            ("pvm_do_event_irqoff", None),
            ("vmx_vcpu_run", None),
            ("x86_emulate_insn", None),
            ("paging64_walk_addr_generic", None),
            ("vcpu_enter_guest", None),
            ("handle_exception_nmi", Some("kvm_intel")),
            ("anything", Some("kvm")),
        ];
        for (n, m) in yes {
            assert!(is_kvm_symbol(n, m), "{n}");
        }
        let no = [
            ("__mmu_notifier_invalidate_range_start", None),
            ("em_cpu_get", None),
            ("kvm_sched_clock_read", None),
            ("kvm_steal_clock", None),
            ("schedule", None),
            ("do_syscall_64", None),
            ("emulate_vsyscall", None),
            ("foo", Some("ext4")),
        ];
        for (n, m) in no {
            assert!(!is_kvm_symbol(n, m), "{n}");
        }
    }
}

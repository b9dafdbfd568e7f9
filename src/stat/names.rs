//! Names for the numbers that KVM and Xen tracepoints carry: VMX and SVM exit reasons,
//! `KVM_EXIT_*` userspace exit reasons, KVM and Xen hypercall numbers.
//!
//! The tables are copies of the kernel's (Linux v6.18) and Xen's public headers, cited per table.
//! A number missing from a table is shown as `<prefix>_<n>`, never dropped.

/// `KVM_ISA_VMX` (arch/x86/kvm/trace.h, Linux v6.18): the `isa` field of `kvm:kvm_exit` for
/// Intel VT-x.
pub const KVM_ISA_VMX: u32 = 1;
/// `KVM_ISA_SVM` (arch/x86/kvm/trace.h, Linux v6.18): the `isa` field of `kvm:kvm_exit` for
/// AMD-V.
pub const KVM_ISA_SVM: u32 = 2;

/// `VMX_EXIT_REASONS` of arch/x86/include/uapi/asm/vmx.h (Linux v6.18), as printed by
/// `kvm:kvm_exit`: basic exit reason (low 16 bits of `exit_reason`) → name.
///
/// <https://elixir.bootlin.com/linux/v6.18/source/arch/x86/include/uapi/asm/vmx.h>
pub const VMX_EXIT_REASONS: &[(u32, &str)] = &[
    (0, "EXCEPTION_NMI"),
    (1, "EXTERNAL_INTERRUPT"),
    (2, "TRIPLE_FAULT"),
    (3, "INIT_SIGNAL"),
    (4, "SIPI_SIGNAL"),
    (7, "INTERRUPT_WINDOW"),
    (8, "NMI_WINDOW"),
    (9, "TASK_SWITCH"),
    (10, "CPUID"),
    (12, "HLT"),
    (13, "INVD"),
    (14, "INVLPG"),
    (15, "RDPMC"),
    (16, "RDTSC"),
    (18, "VMCALL"),
    (19, "VMCLEAR"),
    (20, "VMLAUNCH"),
    (21, "VMPTRLD"),
    (22, "VMPTRST"),
    (23, "VMREAD"),
    (24, "VMRESUME"),
    (25, "VMWRITE"),
    (26, "VMOFF"),
    (27, "VMON"),
    (28, "CR_ACCESS"),
    (29, "DR_ACCESS"),
    (30, "IO_INSTRUCTION"),
    (31, "MSR_READ"),
    (32, "MSR_WRITE"),
    (33, "INVALID_STATE"),
    (34, "MSR_LOAD_FAIL"),
    (36, "MWAIT_INSTRUCTION"),
    (37, "MONITOR_TRAP_FLAG"),
    (39, "MONITOR_INSTRUCTION"),
    (40, "PAUSE_INSTRUCTION"),
    (41, "MCE_DURING_VMENTRY"),
    (43, "TPR_BELOW_THRESHOLD"),
    (44, "APIC_ACCESS"),
    (45, "EOI_INDUCED"),
    (46, "GDTR_IDTR"),
    (47, "LDTR_TR"),
    (48, "EPT_VIOLATION"),
    (49, "EPT_MISCONFIG"),
    (50, "INVEPT"),
    (51, "RDTSCP"),
    (52, "PREEMPTION_TIMER"),
    (53, "INVVPID"),
    (54, "WBINVD"),
    (55, "XSETBV"),
    (56, "APIC_WRITE"),
    (57, "RDRAND"),
    (58, "INVPCID"),
    (59, "VMFUNC"),
    (60, "ENCLS"),
    (61, "RDSEED"),
    (62, "PML_FULL"),
    (63, "XSAVES"),
    (64, "XRSTORS"),
    (67, "UMWAIT"),
    (68, "TPAUSE"),
    (74, "BUS_LOCK"),
    (75, "NOTIFY"),
    (77, "TDCALL"),
    (84, "MSR_READ_IMM"),
    (85, "MSR_WRITE_IMM"),
];

/// `VMX_EXIT_REASONS_FAILED_VMENTRY` (bit 31 of a VMX `exit_reason`, arch/x86/include/uapi/asm/vmx.h).
pub const VMX_FAILED_VMENTRY: u32 = 0x8000_0000;

/// `SVM_EXIT_REASONS` of arch/x86/include/uapi/asm/svm.h (Linux v6.18): `exit_code` → name.
///
/// <https://elixir.bootlin.com/linux/v6.18/source/arch/x86/include/uapi/asm/svm.h>
pub const SVM_EXIT_REASONS: &[(u32, &str)] = &[
    (0x000, "read_cr0"),
    (0x002, "read_cr2"),
    (0x003, "read_cr3"),
    (0x004, "read_cr4"),
    (0x008, "read_cr8"),
    (0x010, "write_cr0"),
    (0x012, "write_cr2"),
    (0x013, "write_cr3"),
    (0x014, "write_cr4"),
    (0x018, "write_cr8"),
    (0x020, "read_dr0"),
    (0x021, "read_dr1"),
    (0x022, "read_dr2"),
    (0x023, "read_dr3"),
    (0x024, "read_dr4"),
    (0x025, "read_dr5"),
    (0x026, "read_dr6"),
    (0x027, "read_dr7"),
    (0x030, "write_dr0"),
    (0x031, "write_dr1"),
    (0x032, "write_dr2"),
    (0x033, "write_dr3"),
    (0x034, "write_dr4"),
    (0x035, "write_dr5"),
    (0x036, "write_dr6"),
    (0x037, "write_dr7"),
    (0x040, "DE excp"),
    (0x041, "DB excp"),
    (0x043, "BP excp"),
    (0x044, "OF excp"),
    (0x045, "BR excp"),
    (0x046, "UD excp"),
    (0x047, "NM excp"),
    (0x048, "DF excp"),
    (0x04a, "TS excp"),
    (0x04b, "NP excp"),
    (0x04c, "SS excp"),
    (0x04d, "GP excp"),
    (0x04e, "PF excp"),
    (0x050, "MF excp"),
    (0x051, "AC excp"),
    (0x052, "MC excp"),
    (0x053, "XF excp"),
    (0x060, "interrupt"),
    (0x061, "nmi"),
    (0x062, "smi"),
    (0x063, "init"),
    (0x064, "vintr"),
    (0x065, "cr0_sel_write"),
    (0x066, "read_idtr"),
    (0x067, "read_gdtr"),
    (0x068, "read_ldtr"),
    (0x069, "read_rt"),
    (0x06a, "write_idtr"),
    (0x06b, "write_gdtr"),
    (0x06c, "write_ldtr"),
    (0x06d, "write_rt"),
    (0x06e, "rdtsc"),
    (0x06f, "rdpmc"),
    (0x070, "pushf"),
    (0x071, "popf"),
    (0x072, "cpuid"),
    (0x073, "rsm"),
    (0x074, "iret"),
    (0x075, "swint"),
    (0x076, "invd"),
    (0x077, "pause"),
    (0x078, "hlt"),
    (0x079, "invlpg"),
    (0x07a, "invlpga"),
    (0x07b, "io"),
    (0x07c, "msr"),
    (0x07d, "task_switch"),
    (0x07e, "ferr_freeze"),
    (0x07f, "shutdown"),
    (0x080, "vmrun"),
    (0x081, "hypercall"),
    (0x082, "vmload"),
    (0x083, "vmsave"),
    (0x084, "stgi"),
    (0x085, "clgi"),
    (0x086, "skinit"),
    (0x087, "rdtscp"),
    (0x088, "icebp"),
    (0x089, "wbinvd"),
    (0x08a, "monitor"),
    (0x08b, "mwait"),
    (0x08d, "xsetbv"),
    (0x08f, "write_efer_trap"),
    (0x090, "write_cr0_trap"),
    (0x094, "write_cr4_trap"),
    (0x098, "write_cr8_trap"),
    (0x0a2, "invpcid"),
    (0x0a5, "buslock"),
    (0x0a6, "idle-halt"),
    (0x400, "npf"),
    (0x401, "avic_incomplete_ipi"),
    (0x402, "avic_unaccelerated_access"),
    (0x403, "vmgexit"),
    (0x8000_0001, "vmgexit_mmio_read"),
    (0x8000_0002, "vmgexit_mmio_write"),
    (0x8000_0003, "vmgexit_nmi_complete"),
    (0x8000_0004, "vmgexit_ap_hlt_loop"),
    (0x8000_0005, "vmgexit_ap_jump_table"),
    (0x8000_0010, "vmgexit_page_state_change"),
    (0x8000_0011, "vmgexit_guest_request"),
    (0x8000_0012, "vmgexit_ext_guest_request"),
    (0x8000_0013, "vmgexit_ap_creation"),
    (0x8000_fffd, "vmgexit_hypervisor_feature"),
    (0xffff_ffff, "invalid_guest_state"),
];

/// `KVM_EXIT_*` of include/uapi/linux/kvm.h (Linux v6.18), the `reason` of
/// `kvm:kvm_userspace_exit` (`kvm_run->exit_reason`), as printed by the tracepoint.
pub const KVM_EXIT_REASONS: &[(u32, &str)] = &[
    (0, "UNKNOWN"),
    (1, "EXCEPTION"),
    (2, "IO"),
    (3, "HYPERCALL"),
    (4, "DEBUG"),
    (5, "HLT"),
    (6, "MMIO"),
    (7, "IRQ_WINDOW_OPEN"),
    (8, "SHUTDOWN"),
    (9, "FAIL_ENTRY"),
    (10, "INTR"),
    (11, "SET_TPR"),
    (12, "TPR_ACCESS"),
    (13, "S390_SIEIC"),
    (14, "S390_RESET"),
    (15, "DCR"),
    (16, "NMI"),
    (17, "INTERNAL_ERROR"),
    (18, "OSI"),
    (19, "PAPR_HCALL"),
    (20, "S390_UCONTROL"),
    (21, "WATCHDOG"),
    (22, "S390_TSCH"),
    (23, "EPR"),
    (24, "SYSTEM_EVENT"),
    (25, "S390_STSI"),
    (26, "IOAPIC_EOI"),
    (27, "HYPERV"),
    (28, "ARM_NISV"),
    (29, "X86_RDMSR"),
    (30, "X86_WRMSR"),
    (31, "DIRTY_RING_FULL"),
    (32, "AP_RESET_HOLD"),
    (33, "X86_BUS_LOCK"),
    (34, "XEN"),
    (35, "RISCV_SBI"),
    (36, "RISCV_CSR"),
    (37, "NOTIFY"),
    (38, "LOONGARCH_IOCSR"),
    (39, "MEMORY_FAULT"),
    (40, "TDX"),
];

/// `KVM_EXIT_IO` (include/uapi/linux/kvm.h).
pub const KVM_EXIT_IO: u32 = 2;
/// `KVM_EXIT_HYPERCALL` (include/uapi/linux/kvm.h).
pub const KVM_EXIT_HYPERCALL: u32 = 3;
/// `KVM_EXIT_MMIO` (include/uapi/linux/kvm.h).
pub const KVM_EXIT_MMIO: u32 = 6;

/// `KVM_HC_*` of include/uapi/linux/kvm_para.h (Linux v6.18): the `nr` of `kvm:kvm_hypercall`.
pub const KVM_HYPERCALLS: &[(u64, &str)] = &[
    (1, "KVM_HC_VAPIC_POLL_IRQ"),
    (2, "KVM_HC_MMU_OP"),
    (3, "KVM_HC_FEATURES"),
    (4, "KVM_HC_PPC_MAP_MAGIC_PAGE"),
    (5, "KVM_HC_KICK_CPU"),
    (6, "KVM_HC_MIPS_GET_CLOCK_FREQ"),
    (7, "KVM_HC_MIPS_EXIT_VM"),
    (8, "KVM_HC_MIPS_CONSOLE_OUTPUT"),
    (9, "KVM_HC_CLOCK_PAIRING"),
    (10, "KVM_HC_SEND_IPI"),
    (11, "KVM_HC_SCHED_YIELD"),
    (12, "KVM_HC_MAP_GPA_RANGE"),
];

/// `__HYPERVISOR_*` of Xen's xen/include/public/xen.h (Xen 4.19): the `op` of
/// `xen:xen_mc_entry`.
///
/// <https://xenbits.xen.org/gitweb/?p=xen.git;a=blob;f=xen/include/public/xen.h;hb=RELEASE-4.19.0>
pub const XEN_HYPERCALLS: &[(u32, &str)] = &[
    (0, "set_trap_table"),
    (1, "mmu_update"),
    (2, "set_gdt"),
    (3, "stack_switch"),
    (4, "set_callbacks"),
    (5, "fpu_taskswitch"),
    (6, "sched_op_compat"),
    (7, "platform_op"),
    (8, "set_debugreg"),
    (9, "get_debugreg"),
    (10, "update_descriptor"),
    (12, "memory_op"),
    (13, "multicall"),
    (14, "update_va_mapping"),
    (15, "set_timer_op"),
    (16, "event_channel_op_compat"),
    (17, "xen_version"),
    (18, "console_io"),
    (19, "physdev_op_compat"),
    (20, "grant_table_op"),
    (21, "vm_assist"),
    (22, "update_va_mapping_otherdomain"),
    (23, "iret"),
    (24, "vcpu_op"),
    (25, "set_segment_base"),
    (26, "mmuext_op"),
    (27, "xsm_op"),
    (28, "nmi_op"),
    (29, "sched_op"),
    (30, "callback_op"),
    (31, "xenoprof_op"),
    (32, "event_channel_op"),
    (33, "physdev_op"),
    (34, "hvm_op"),
    (35, "sysctl"),
    (36, "domctl"),
    (37, "kexec_op"),
    (38, "tmem_op"),
    (39, "argo_op"),
    (40, "xenpmu_op"),
    (41, "dm_op"),
    (42, "hypfs_op"),
    (48, "arch_0"),
    (49, "arch_1"),
    (50, "arch_2"),
    (51, "arch_3"),
    (52, "arch_4"),
    (53, "arch_5"),
    (54, "arch_6"),
    (55, "arch_7"),
];

fn lookup<K: PartialEq + Copy>(table: &[(K, &'static str)], k: K) -> Option<&'static str> {
    table.iter().find(|(n, _)| *n == k).map(|(_, s)| *s)
}

/// The name of a `kvm:kvm_exit` exit reason given the tracepoint's `isa` field.
///
/// VMX: the basic reason (low 16 bits) from [`VMX_EXIT_REASONS`], with ` FAILED_VMENTRY`
/// appended when bit 31 is set. SVM: the exit code from [`SVM_EXIT_REASONS`]. Unknown
/// numbers come out as `VMX_<n>`, `SVM_0x<n>` or `ISA<isa>_<n>`.
pub fn exit_reason_name(isa: u32, reason: u32) -> String {
    match isa {
        KVM_ISA_VMX => {
            let basic = reason & 0xffff;
            let mut s = match lookup(VMX_EXIT_REASONS, basic) {
                Some(n) => n.to_string(),
                None => format!("VMX_{basic}"),
            };
            if reason & VMX_FAILED_VMENTRY != 0 {
                s.push_str(" FAILED_VMENTRY");
            }
            s
        }
        KVM_ISA_SVM => match lookup(SVM_EXIT_REASONS, reason) {
            Some(n) => n.to_string(),
            None => format!("SVM_{reason:#x}"),
        },
        _ => format!("ISA{isa}_{reason}"),
    }
}

/// The ISA's name for the report: `vmx`, `svm`, or `isa<n>`.
pub fn isa_name(isa: u32) -> String {
    match isa {
        KVM_ISA_VMX => "vmx".into(),
        KVM_ISA_SVM => "svm".into(),
        n => format!("isa{n}"),
    }
}

/// The name of a `kvm:kvm_userspace_exit` event: `KVM_EXIT_<NAME>`, or `restart` (`errno ==
/// -EINTR`, a signal interrupted `KVM_RUN`) / `error` (other negative errno), as the tracepoint
/// prints it.
pub fn userspace_exit_name(reason: u32, errno: i32) -> String {
    if errno < 0 {
        return if errno == -libc::EINTR {
            "restart (EINTR)".into()
        } else {
            format!("error ({errno})")
        };
    }
    match lookup(KVM_EXIT_REASONS, reason) {
        Some(n) => format!("KVM_EXIT_{n}"),
        None => format!("KVM_EXIT_{reason}"),
    }
}

/// The name of a KVM hypercall number (`kvm:kvm_hypercall` `nr`), or `nr_<n>`.
pub fn kvm_hypercall_name(nr: u64) -> String {
    lookup(KVM_HYPERCALLS, nr).map_or_else(|| format!("nr_{nr}"), str::to_string)
}

/// The name of a Xen hypercall number (`__HYPERVISOR_<name>`), or `hypercall_<n>`.
pub fn xen_hypercall_name(op: u32) -> String {
    lookup(XEN_HYPERCALLS, op).map_or_else(|| format!("hypercall_{op}"), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(exit_reason_name(KVM_ISA_VMX, 30), "IO_INSTRUCTION");
        assert_eq!(exit_reason_name(KVM_ISA_VMX, 48), "EPT_VIOLATION");
        assert_eq!(
            exit_reason_name(KVM_ISA_VMX, 0x8000_0021),
            "INVALID_STATE FAILED_VMENTRY"
        );
        assert_eq!(exit_reason_name(KVM_ISA_VMX, 99), "VMX_99");
        assert_eq!(exit_reason_name(KVM_ISA_SVM, 0x7b), "io");
        assert_eq!(exit_reason_name(KVM_ISA_SVM, 0x400), "npf");
        assert_eq!(exit_reason_name(KVM_ISA_SVM, 0x123), "SVM_0x123");
        assert_eq!(exit_reason_name(7, 1), "ISA7_1");
        assert_eq!(userspace_exit_name(2, 0), "KVM_EXIT_IO");
        assert_eq!(userspace_exit_name(0, -4), "restart (EINTR)");
        assert_eq!(userspace_exit_name(0, -14), "error (-14)");
        assert_eq!(kvm_hypercall_name(5), "KVM_HC_KICK_CPU");
        assert_eq!(kvm_hypercall_name(77), "nr_77");
        assert_eq!(xen_hypercall_name(13), "multicall");
        assert_eq!(xen_hypercall_name(29), "sched_op");
        assert_eq!(xen_hypercall_name(11), "hypercall_11");
    }

    #[test]
    fn tables_are_sorted_and_unique() {
        fn check<K: PartialOrd + Copy + std::fmt::Debug>(t: &[(K, &str)]) {
            for w in t.windows(2) {
                assert!(w[0].0 < w[1].0, "{:?} !< {:?}", w[0].0, w[1].0);
            }
        }
        check(VMX_EXIT_REASONS);
        check(SVM_EXIT_REASONS);
        check(KVM_EXIT_REASONS);
        check(KVM_HYPERCALLS);
        check(XEN_HYPERCALLS);
    }
}

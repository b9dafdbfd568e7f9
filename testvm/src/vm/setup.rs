//! The guest's initial state, built from the host side: the memory image
//! (page tables, GDT, TSS, payload text, per-vCPU control blocks) and each
//! vCPU's long-mode entry state (CPUID, segments, control registers, GPRs,
//! FPU).
//!
//! Input: a [`TestVmConfig`] and the addresses and encodings of
//! [`crate::layout`] and [`crate::payload`]. Output: written guest memory and
//! configured vCPU fds, ready for `KVM_RUN`. See `docs/testvm.md` for the
//! layout and entry state.

use std::io;

use kvm_bindings::{kvm_fpu, CpuId};
use kvm_ioctls::VcpuFd;

use super::memory::GuestMemory;
use crate::layout::{self, ctl_addr, kvm_segment_from_gdt};
use crate::payload::{self, CTL_FLAGS, CTL_PORT, CTL_UNIT};
use crate::{Error, Privilege, TestVmConfig, Workload};

/// Maps a failing KVM ioctl, named as in the KVM API doc (e.g.
/// `KVM_SET_SREGS`), to [`Error::Ioctl`].
pub(super) fn ioctl(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |e| Error::Ioctl {
        op,
        source: io::Error::from_raw_os_error(e.errno()),
    }
}

/// Writes page tables, GDT, TSS, text and control blocks into guest memory.
///
/// # Panics
///
/// If the layout does not fit in `mem` (a validated config always fits:
/// [`TestVmConfig::validate`] requires [`layout::MIN_MEM_BYTES`]).
pub(super) fn build_image(mem: &GuestMemory, cfg: &TestVmConfig) {
    for (addr, table) in layout::page_tables() {
        let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
        mem.write_bytes(addr, &bytes);
    }
    let gdt: Vec<u8> = layout::gdt().iter().flat_map(|e| e.to_le_bytes()).collect();
    mem.write_bytes(layout::GDT_ADDR, &gdt);
    mem.write_bytes(layout::TSS_ADDR, &layout::tss());
    mem.write_bytes(payload::TEXT_BASE, &payload::text_image());
    let (flags, port) = match cfg.workload {
        Workload::Compute => (0, 0),
        Workload::PortIo { port } => (payload::FLAG_OUT, u64::from(port)),
        Workload::Halt => (payload::FLAG_HLT, 0),
    };
    for index in 0..cfg.vcpus {
        let ctl = ctl_addr(index);
        mem.write_u64(ctl + CTL_FLAGS, flags);
        mem.write_u64(ctl + CTL_PORT, port);
        mem.write_u64(ctl + CTL_UNIT, cfg.effective_unit_iterations());
        mem.write_u64(ctl + payload::CTL_HIST, layout::hist_addr(index));
    }
}

/// Sets CPUID, special registers (long mode, segments), general registers
/// and FPU state of vCPU `index` so that it starts at `vcpu_main`.
///
/// # Errors
///
/// [`Error::Ioctl`] for a failing `KVM_SET_CPUID2`, `KVM_GET_SREGS`,
/// `KVM_SET_SREGS`, `KVM_SET_FPU` or `KVM_SET_REGS`.
pub(super) fn setup_vcpu(
    vcpu: &VcpuFd,
    index: usize,
    cfg: &TestVmConfig,
    cpuid: &CpuId,
) -> Result<(), Error> {
    let mut cpuid = cpuid.clone();
    for e in cpuid.as_mut_slice() {
        match e.function {
            // Initial APIC ID in CPUID.1:EBX[31:24] (Intel SDM Vol. 2A, CPUID).
            1 => e.ebx = (e.ebx & 0x00ff_ffff) | ((index as u32 & 0xff) << 24),
            // x2APIC ID in CPUID.0BH/1FH:EDX.
            0xb | 0x1f => e.edx = index as u32,
            _ => {}
        }
    }
    vcpu.set_cpuid2(&cpuid).map_err(ioctl("KVM_SET_CPUID2"))?;

    let mut sregs = vcpu.get_sregs().map_err(ioctl("KVM_GET_SREGS"))?;
    let gdt = layout::gdt();
    let (code, data) = match cfg.privilege {
        Privilege::Ring3 => (
            kvm_segment_from_gdt(gdt[4], layout::SEL_USER_CS),
            kvm_segment_from_gdt(gdt[3], layout::SEL_USER_DS),
        ),
        Privilege::Ring0 => (
            kvm_segment_from_gdt(gdt[1], layout::SEL_KERNEL_CS),
            kvm_segment_from_gdt(gdt[2], layout::SEL_KERNEL_DS),
        ),
    };
    sregs.cs = code;
    sregs.ss = data;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.tr = kvm_segment_from_gdt(gdt[5], layout::SEL_TSS);
    sregs.ldt.selector = 0;
    sregs.ldt.unusable = 1;
    sregs.ldt.present = 0;
    sregs.gdt.base = layout::GDT_ADDR;
    sregs.gdt.limit = layout::GDT_LIMIT;
    // No IDT: any exception escalates to a triple fault (KVM_EXIT_SHUTDOWN).
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 = layout::CR0;
    sregs.cr3 = layout::PML4_ADDR;
    sregs.cr4 = layout::CR4;
    sregs.efer = layout::EFER;
    vcpu.set_sregs(&sregs).map_err(ioctl("KVM_SET_SREGS"))?;

    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(ioctl("KVM_SET_FPU"))?;

    let regs = kvm_bindings::kvm_regs {
        rip: payload::VCPU_MAIN,
        rsp: layout::stack_top(index),
        rdi: index as u64,
        rsi: ctl_addr(index),
        rflags: match cfg.privilege {
            Privilege::Ring3 => layout::RFLAGS_RING3,
            Privilege::Ring0 => layout::RFLAGS_RING0,
        },
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(ioctl("KVM_SET_REGS"))?;
    Ok(())
}

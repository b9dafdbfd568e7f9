//! Structures passed to libxenctrl, laid out exactly as Xen 4.17's public headers for x86-64.
//!
//! - [`VcpuGuestContext`]: `struct vcpu_guest_context` of
//!   `xen/include/public/arch-x86/xen.h` (RELEASE-4.17.5), with `struct cpu_user_regs` of
//!   `xen/include/public/arch-x86/xen-x86_64.h` and `struct trap_info` of `arch-x86/xen.h`.
//!   libxenctrl's `vcpu_guest_context_any_t` (tools/include/xenctrl.h) is a union of the
//!   x86-32 and x86-64 layouts; [`VcpuGuestContextAny`] is that union with room to spare.
//! - [`DomctlGetvcpuinfo`]: `struct xen_domctl_getvcpuinfo` of `xen/include/public/domctl.h`
//!   (`xc_vcpuinfo_t` in xenctrl.h).
//!
//! Sizes and field offsets are checked at compile time.

/// `VGCF_in_kernel` (arch-x86/xen.h): the PV vCPU was in guest kernel mode.
pub const VGCF_IN_KERNEL: u64 = 1 << 2;
/// `VGCF_online` (arch-x86/xen.h).
pub const VGCF_ONLINE: u64 = 1 << 5;

/// `struct cpu_user_regs` (x86-64): general registers, then `rip`, `cs`, `rflags`, `rsp` and
/// the segment selectors, each padded to 8 bytes. 200 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUserRegs {
    /// r15 .. rdi in the header's order: r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax,
    /// rcx, rdx, rsi, rdi.
    pub gprs: [u64; 15],
    /// `error_code` (private to Xen).
    pub error_code: u32,
    /// `entry_vector` (private to Xen).
    pub entry_vector: u32,
    /// Instruction pointer: a guest virtual address.
    pub rip: u64,
    /// Code segment selector; its low 2 bits are the ring (a 64-bit PV kernel runs in ring 3,
    /// so `VGCF_in_kernel` tells its mode).
    pub cs: u16,
    /// `_pad0[1]`.
    pub pad0: u16,
    /// `saved_upcall_mask`.
    pub saved_upcall_mask: u8,
    /// `_pad1[3]`.
    pub pad1: [u8; 3],
    /// rflags.
    pub rflags: u64,
    /// Stack pointer (guest virtual).
    pub rsp: u64,
    /// ss, es, ds, fs, gs, each a u16 and 3 u16 of padding.
    pub segs: [[u16; 4]; 5],
}

/// Index of rbp in [`CpuUserRegs::gprs`].
pub const GPR_RBP: usize = 4;

/// `struct trap_info` (x86-64): 16 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct TrapInfo {
    /// Exception vector.
    pub vector: u8,
    /// Privilege level and event-enable flag.
    pub flags: u8,
    /// Code selector.
    pub cs: u16,
    /// Handler address.
    pub address: u64,
}

/// `struct vcpu_guest_context` (x86-64, as seen by the tools, i.e. without `__XEN__`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VcpuGuestContext {
    /// `fpu_ctxt`: 512 bytes of FXSAVE area.
    pub fpu_ctxt: [u8; 512],
    /// `VGCF_*` flags.
    pub flags: u64,
    /// The vCPU's user-level registers.
    pub user_regs: CpuUserRegs,
    /// The virtual IDT.
    pub trap_ctxt: [TrapInfo; 256],
    /// `ldt_base`, `ldt_ents`.
    pub ldt: [u64; 2],
    /// `gdt_frames[16]`.
    pub gdt_frames: [u64; 16],
    /// `gdt_ents`.
    pub gdt_ents: u64,
    /// `kernel_ss`, `kernel_sp`.
    pub kernel_ss_sp: [u64; 2],
    /// CR0–CR7 (`ctrlreg[1]` is the user page table on x86-64).
    pub ctrlreg: [u64; 8],
    /// DB0–DB7.
    pub debugreg: [u64; 8],
    /// `event_callback_eip`, `failsafe_callback_eip`, `syscall_callback_eip`.
    pub callbacks: [u64; 3],
    /// `vm_assist`.
    pub vm_assist: u64,
    /// `fs_base`, `gs_base_kernel`, `gs_base_user`.
    pub seg_bases: [u64; 3],
}

/// libxenctrl's `vcpu_guest_context_any_t`: the x86-64 layout, padded to 8 KiB so that the
/// larger member of any union variant fits.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct VcpuGuestContextAny {
    /// The x86-64 view.
    pub x64: VcpuGuestContext,
    /// Room for other members of the union.
    pub pad: [u8; 8192 - std::mem::size_of::<VcpuGuestContext>()],
}

impl VcpuGuestContextAny {
    /// All zeros (what libxenctrl overwrites).
    pub fn zeroed() -> VcpuGuestContextAny {
        VcpuGuestContextAny {
            x64: VcpuGuestContext {
                fpu_ctxt: [0; 512],
                flags: 0,
                user_regs: CpuUserRegs::default(),
                trap_ctxt: [TrapInfo::default(); 256],
                ldt: [0; 2],
                gdt_frames: [0; 16],
                gdt_ents: 0,
                kernel_ss_sp: [0; 2],
                ctrlreg: [0; 8],
                debugreg: [0; 8],
                callbacks: [0; 3],
                vm_assist: 0,
                seg_bases: [0; 3],
            },
            pad: [0; 8192 - std::mem::size_of::<VcpuGuestContext>()],
        }
    }
}

/// `struct xen_domctl_getvcpuinfo` (`xc_vcpuinfo_t`): 24 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DomctlGetvcpuinfo {
    /// IN: the vCPU.
    pub vcpu: u32,
    /// Currently online (not hot-unplugged).
    pub online: u8,
    /// Blocked waiting for an event.
    pub blocked: u8,
    /// Currently scheduled on its pCPU.
    pub running: u8,
    /// Padding to `uint64_aligned_t`.
    pub pad: u8,
    /// Total CPU time consumed, ns.
    pub cpu_time: u64,
    /// The pCPU it is (or was last) on.
    pub cpu: u32,
    /// Tail padding.
    pub pad2: u32,
}

const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<CpuUserRegs>() == 200);
    assert!(offset_of!(CpuUserRegs, rip) == 128);
    assert!(offset_of!(CpuUserRegs, cs) == 136);
    assert!(offset_of!(CpuUserRegs, rflags) == 144);
    assert!(offset_of!(CpuUserRegs, rsp) == 152);
    assert!(size_of::<TrapInfo>() == 16);
    assert!(offset_of!(VcpuGuestContext, flags) == 512);
    assert!(offset_of!(VcpuGuestContext, user_regs) == 520);
    assert!(offset_of!(VcpuGuestContext, trap_ctxt) == 720);
    assert!(offset_of!(VcpuGuestContext, ctrlreg) == 4984);
    assert!(size_of::<VcpuGuestContext>() == 5168);
    assert!(size_of::<VcpuGuestContextAny>() == 8192);
    assert!(size_of::<DomctlGetvcpuinfo>() == 24);
    assert!(offset_of!(DomctlGetvcpuinfo, cpu_time) == 8);
    assert!(offset_of!(DomctlGetvcpuinfo, cpu) == 16);
};

/// What hvprof reads of a vCPU's context: the registers that place a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VcpuRegs {
    /// Instruction pointer (guest virtual).
    pub rip: u64,
    /// Stack pointer (guest virtual).
    pub rsp: u64,
    /// Frame pointer (guest virtual).
    pub rbp: u64,
    /// Code segment selector.
    pub cs: u16,
    /// `VGCF_*` flags.
    pub flags: u64,
}

impl VcpuRegs {
    /// The registers of a context returned by `xc_vcpu_getcontext`.
    pub fn of(c: &VcpuGuestContext) -> VcpuRegs {
        VcpuRegs {
            rip: c.user_regs.rip,
            rsp: c.user_regs.rsp,
            rbp: c.user_regs.gprs[GPR_RBP],
            cs: c.user_regs.cs,
            flags: c.flags,
        }
    }

    /// Whether the vCPU was in guest kernel mode: `VGCF_in_kernel` for a PV guest (whose
    /// 64-bit kernel runs in ring 3); for others ring 0 (`cs & 3 == 0`); and an IP in the
    /// upper half of the canonical address space, where x86-64 kernels live, either way.
    pub fn in_kernel(&self) -> bool {
        self.flags & VGCF_IN_KERNEL != 0 || self.cs & 3 == 0 || self.rip >= 0xffff_8000_0000_0000
    }
}

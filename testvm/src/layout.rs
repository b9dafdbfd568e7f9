//! Guest memory layout, page tables, GDT and TSS of the test VM.
//!
//! Guest virtual addresses equal guest physical addresses for everything that
//! is mapped (identity mapping), and only the pages the guest needs are
//! present; any other access page-faults, which (no IDT) escalates to a triple
//! fault and `KVM_EXIT_SHUTDOWN`.
//!
//! | GPA / GVA | size | contents | mapping |
//! | --- | --- | --- | --- |
//! | `0x0000_0000` | 4 KiB | null page | not present |
//! | [`GDT_ADDR`] `0x0000_1000` | 4 KiB | GDT (7 slots) | supervisor, RW, NX |
//! | [`TSS_ADDR`] `0x0000_2000` | 12 KiB | 64-bit TSS (104 bytes) + I/O permission bitmap (8 KiB + 1) | supervisor, RW, NX |
//! | [`PML4_ADDR`] `0x0000_8000` | 4 KiB | PML4 | not mapped |
//! | [`PDPT_ADDR`] `0x0000_9000` | 4 KiB | PDPT | not mapped |
//! | [`PD_ADDR`] `0x0000_a000` | 4 KiB | PD (1 GiB) | not mapped |
//! | [`PT_LOW_ADDR`] `0x0000_b000` | 4 KiB | PT for 0–2 MiB | not mapped |
//! | [`PT_TEXT_ADDR`] `0x0000_c000` | 4 KiB | PT for 4–6 MiB | not mapped |
//! | [`PT_DATA_ADDR`] `0x0000_d000` | 4 KiB | PT for 6–8 MiB | not mapped |
//! | [`PT_HIST_ADDR`] `0x0000_e000` | 4 KiB | PT for 8–10 MiB | not mapped |
//! | [`crate::payload::TEXT_BASE`] `0x0040_0000` | 4 KiB | payload text | user, RX |
//! | [`CTL_BASE`] `0x0060_0000` | 16 KiB | per-vCPU control blocks, [`CTL_STRIDE`] apart | user, RW, NX |
//! | [`STACK_BASE`] `0x0070_0000` | 1 MiB | per-vCPU stacks, [`STACK_SIZE`] each | user, RW, NX |
//! | [`HIST_BASE`] `0x0080_0000` | 1 MiB | per-vCPU round history rings, [`HIST_STRIDE`] each | user, RW, NX |
//!
//! Sources: Intel SDM Vol. 3A §4.5 (4-level paging), §3.4.5 (segment
//! descriptors), §7.2.3 and §7.7 (64-bit TSS and its descriptor).

use kvm_bindings::kvm_segment;

/// Guest physical address of the GDT.
pub const GDT_ADDR: u64 = 0x1000;
/// Guest physical address of the (single, shared) 64-bit TSS.
pub const TSS_ADDR: u64 = 0x2000;
/// Size of a 64-bit TSS in bytes without I/O bitmap (Intel SDM Vol. 3A
/// Figure 7-11).
pub const TSS_SIZE: u64 = 0x68;
/// Offset of the I/O permission bitmap inside the TSS (the TSS's "I/O map
/// base address" field at offset 0x66): right after the TSS proper.
pub const IOPB_OFFSET: u64 = TSS_SIZE;
/// Size of the I/O permission bitmap: one bit per port, 65536 ports.
pub const IOPB_SIZE: u64 = 0x2000;
/// TSS segment limit: TSS + bitmap + the mandatory trailing `0xff` byte,
/// minus one (Intel SDM Vol. 1 §19.5.2).
pub const TSS_LIMIT: u64 = IOPB_OFFSET + IOPB_SIZE;
/// Guest physical address of the PML4 (loaded into CR3).
pub const PML4_ADDR: u64 = 0x8000;
/// Guest physical address of the PDPT (PML4 entry 0).
pub const PDPT_ADDR: u64 = 0x9000;
/// Guest physical address of the page directory for VA 0–1 GiB.
pub const PD_ADDR: u64 = 0xa000;
/// Guest physical address of the page table for VA 0–2 MiB (GDT, TSS).
pub const PT_LOW_ADDR: u64 = 0xb000;
/// Guest physical address of the page table for VA 4–6 MiB (text).
pub const PT_TEXT_ADDR: u64 = 0xc000;
/// Guest physical address of the page table for VA 6–8 MiB (data, stacks).
pub const PT_DATA_ADDR: u64 = 0xd000;
/// Guest physical address of the page table for VA 8–10 MiB (history rings).
pub const PT_HIST_ADDR: u64 = 0xe000;

/// Guest address of vCPU 0's control block (see `payload::CTL_*` offsets).
pub const CTL_BASE: u64 = 0x60_0000;
/// Distance between consecutive vCPUs' control blocks, in bytes.
pub const CTL_STRIDE: u64 = 0x100;
/// Guest address of the lowest stack (vCPU 0's stack occupies
/// `STACK_BASE..STACK_BASE + STACK_SIZE`).
pub const STACK_BASE: u64 = 0x70_0000;
/// Size of each vCPU's stack in bytes.
pub const STACK_SIZE: u64 = 0x4000;
/// Largest number of vCPUs the layout has control blocks, stacks and
/// history rings for.
pub const MAX_VCPUS: usize = 64;
/// Guest address of vCPU 0's round history ring
/// ([`crate::payload::HIST_LEN`] entries of [`crate::payload::HIST_ENTRY`]
/// bytes).
pub const HIST_BASE: u64 = 0x80_0000;
/// Distance between consecutive vCPUs' history rings, in bytes.
pub const HIST_STRIDE: u64 = crate::payload::HIST_LEN * crate::payload::HIST_ENTRY;
/// Smallest guest memory size in bytes: the end of the history area (9 MiB).
pub const MIN_MEM_BYTES: u64 = HIST_BASE + HIST_STRIDE * MAX_VCPUS as u64;

/// GDT selector of the 64-bit CPL 0 code segment.
pub const SEL_KERNEL_CS: u16 = 0x08;
/// GDT selector of the CPL 0 data/stack segment.
pub const SEL_KERNEL_DS: u16 = 0x10;
/// GDT selector of the CPL 3 data/stack segment (index 3, RPL 3).
pub const SEL_USER_DS: u16 = 0x18 | 3;
/// GDT selector of the 64-bit CPL 3 code segment (index 4, RPL 3).
pub const SEL_USER_CS: u16 = 0x20 | 3;
/// GDT selector of the TSS (index 5; a 16-byte descriptor using slots 5–6).
pub const SEL_TSS: u16 = 0x28;

/// Page-table entry bit: present.
pub const PTE_P: u64 = 1 << 0;
/// Page-table entry bit: writable.
pub const PTE_RW: u64 = 1 << 1;
/// Page-table entry bit: user (U/S = 1, accessible at CPL 3).
pub const PTE_US: u64 = 1 << 2;
/// Page-table entry bit: accessed (preset so the guest never has to set it).
pub const PTE_A: u64 = 1 << 5;
/// Page-table entry bit: dirty (preset on writable leaf pages).
pub const PTE_D: u64 = 1 << 6;
/// Page-table entry bit: execute disable (needs `EFER.NXE`).
pub const PTE_NX: u64 = 1 << 63;

/// CR0 bits set: PE (0), MP (1), ET (4), NE (5), WP (16), PG (31).
pub const CR0: u64 = (1 << 0) | (1 << 1) | (1 << 4) | (1 << 5) | (1 << 16) | (1 << 31);
/// CR4 bits set: PAE (5), OSFXSR (9), OSXMMEXCPT (10). TSD (2) is clear so
/// `rdtsc` works at CPL 3; SMEP/SMAP are clear so the ring-0 variant can run
/// the same user pages.
pub const CR4: u64 = (1 << 5) | (1 << 9) | (1 << 10);
/// EFER bits set: LME (8), LMA (10), NXE (11).
pub const EFER: u64 = (1 << 8) | (1 << 10) | (1 << 11);
/// RFLAGS at entry for the ring-3 payload: bit 1 (reserved, always 1) and
/// IOPL = 3 (bits 12–13) so `out` is allowed at CPL 3; IF = 0.
pub const RFLAGS_RING3: u64 = 0x3002;
/// RFLAGS at entry for the ring-0 payload: bit 1 only; IF = 0.
pub const RFLAGS_RING0: u64 = 0x0002;

/// Guest address of vCPU `index`'s control block.
pub fn ctl_addr(index: usize) -> u64 {
    CTL_BASE + CTL_STRIDE * index as u64
}

/// Guest address of vCPU `index`'s round history ring.
pub fn hist_addr(index: usize) -> u64 {
    HIST_BASE + HIST_STRIDE * index as u64
}

/// Initial RSP of vCPU `index`: the (16-byte aligned) top of its stack.
pub fn stack_top(index: usize) -> u64 {
    STACK_BASE + STACK_SIZE * (index as u64 + 1)
}

/// A 4 KiB page to map: guest page address and leaf PTE flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// Guest virtual (= physical) address of the page.
    pub addr: u64,
    /// Leaf entry flags (`PTE_*`), without the address.
    pub flags: u64,
}

/// Every 4 KiB page the guest can touch, with its leaf PTE flags.
pub fn mappings() -> Vec<Mapping> {
    let sys = PTE_P | PTE_RW | PTE_A | PTE_D | PTE_NX;
    let text = PTE_P | PTE_US | PTE_A;
    let data = PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D | PTE_NX;
    let mut m = vec![Mapping {
        addr: GDT_ADDR,
        flags: sys,
    }];
    m.extend((0..=TSS_LIMIT / 0x1000).map(|i| Mapping {
        addr: TSS_ADDR + i * 0x1000,
        flags: sys,
    }));
    let text_pages = crate::payload::TEXT_SIZE / 0x1000;
    m.extend((0..text_pages).map(|i| Mapping {
        addr: crate::payload::TEXT_BASE + i * 0x1000,
        flags: text,
    }));
    let ctl_pages = (CTL_STRIDE * MAX_VCPUS as u64).div_ceil(0x1000);
    m.extend((0..ctl_pages).map(|i| Mapping {
        addr: CTL_BASE + i * 0x1000,
        flags: data,
    }));
    let stack_pages = STACK_SIZE * MAX_VCPUS as u64 / 0x1000;
    m.extend((0..stack_pages).map(|i| Mapping {
        addr: STACK_BASE + i * 0x1000,
        flags: data,
    }));
    let hist_pages = HIST_STRIDE * MAX_VCPUS as u64 / 0x1000;
    m.extend((0..hist_pages).map(|i| Mapping {
        addr: HIST_BASE + i * 0x1000,
        flags: data,
    }));
    m
}

/// Builds the page-table pages as `(guest physical address, 512 entries)`.
///
/// 4-level paging: `PML4[0]` → `PDPT[0]` → PD; `PD[0]`, `PD[2]`, `PD[3]`, `PD[4]` point
/// to the page tables for 0–2, 4–6, 6–8 and 8–10 MiB. Non-leaf entries are
/// `P | RW | US | A` (the effective rights are the AND over all levels, Intel
/// SDM Vol. 3A §4.6), leaf entries carry the [`mappings()`] flags.
pub fn page_tables() -> Vec<(u64, [u64; 512])> {
    let table = PTE_P | PTE_RW | PTE_US | PTE_A;
    let mut pml4 = [0u64; 512];
    let mut pdpt = [0u64; 512];
    let mut pd = [0u64; 512];
    pml4[0] = PDPT_ADDR | table;
    pdpt[0] = PD_ADDR | table;
    let pts = [
        (0usize, PT_LOW_ADDR),
        (2, PT_TEXT_ADDR),
        (3, PT_DATA_ADDR),
        (4, PT_HIST_ADDR),
    ];
    let mut out = Vec::new();
    for &(pd_index, pt_addr) in &pts {
        pd[pd_index] = pt_addr | table;
        let mut pt = [0u64; 512];
        let lo = pd_index as u64 * 0x20_0000;
        for m in mappings()
            .into_iter()
            .filter(|m| m.addr >= lo && m.addr < lo + 0x20_0000)
        {
            pt[((m.addr - lo) / 0x1000) as usize] = m.addr | m.flags;
        }
        out.push((pt_addr, pt));
    }
    out.insert(0, (PD_ADDR, pd));
    out.insert(0, (PDPT_ADDR, pdpt));
    out.insert(0, (PML4_ADDR, pml4));
    out
}

/// Encodes an 8-byte segment descriptor (Intel SDM Vol. 3A §3.4.5).
///
/// `flags` packs the access byte in bits 0–7 (type, S, DPL, P) and the
/// G/DB/L/AVL nibble in bits 12–15, the layout Linux's `GDT_ENTRY` uses.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << (56 - 24))
        | ((flags as u64 & 0xf0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << (48 - 16))
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// Flags for [`gdt_entry`]: 64-bit code, CPL 0 (P, DPL 0, S, type 0xb
/// execute/read/accessed; G, L).
pub const FLAGS_KERNEL_CODE64: u16 = 0xa09b;
/// Flags: data, CPL 0 (P, DPL 0, S, type 3 read/write/accessed; G, DB).
pub const FLAGS_KERNEL_DATA: u16 = 0xc093;
/// Flags: 64-bit code, CPL 3 (P, DPL 3, S, type 0xb; G, L).
pub const FLAGS_USER_CODE64: u16 = 0xa0fb;
/// Flags: data, CPL 3 (P, DPL 3, S, type 3; G, DB).
pub const FLAGS_USER_DATA: u16 = 0xc0f3;
/// Flags: 64-bit TSS, busy (P, DPL 0, S = 0, type 0xb). Busy because the
/// host loads TR directly, as `ltr` would have marked it.
pub const FLAGS_TSS_BUSY: u16 = 0x008b;

/// The GDT contents: null, kernel code, kernel data, user data, user code,
/// and the two slots of the 16-byte TSS descriptor (base [`TSS_ADDR`], limit
/// [`TSS_LIMIT`]).
pub fn gdt() -> [u64; 7] {
    [
        0,
        gdt_entry(FLAGS_KERNEL_CODE64, 0, 0xfffff),
        gdt_entry(FLAGS_KERNEL_DATA, 0, 0xfffff),
        gdt_entry(FLAGS_USER_DATA, 0, 0xfffff),
        gdt_entry(FLAGS_USER_CODE64, 0, 0xfffff),
        gdt_entry(FLAGS_TSS_BUSY, TSS_ADDR as u32, TSS_LIMIT as u32),
        TSS_ADDR >> 32, // upper half of the TSS descriptor: base[63:32]
    ]
}

/// GDT limit for `GDTR`/`kvm_sregs.gdt.limit`: size in bytes minus one.
pub const GDT_LIMIT: u16 = 7 * 8 - 1;

/// The TSS image ([`TSS_LIMIT`] + 1 bytes): a zero 64-bit TSS whose I/O map
/// base (offset 0x66) points to an all-zero I/O permission bitmap, i.e. every
/// port is allowed at CPL 3, followed by the `0xff` terminator byte.
///
/// `RFLAGS.IOPL = 3` alone would allow port I/O at CPL 3 on hardware
/// (Intel SDM Vol. 1 §19.5), but PVM does not keep the guest's IOPL while it
/// runs CPL 3 code natively (RFLAGS reads back with IOPL = 0); it does emulate
/// `in`/`out` that the bitmap permits. With both, the payload works either way.
pub fn tss() -> Vec<u8> {
    let mut t = vec![0u8; TSS_LIMIT as usize + 1];
    t[0x66..0x68].copy_from_slice(&(IOPB_OFFSET as u16).to_le_bytes());
    t[TSS_LIMIT as usize] = 0xff;
    t
}

/// Decodes GDT entry `entry` loaded with `selector` into the
/// `kvm_segment` that `KVM_SET_SREGS` expects (the hidden descriptor cache).
pub fn kvm_segment_from_gdt(entry: u64, selector: u16) -> kvm_segment {
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    let raw_limit = ((entry & 0xffff) | ((entry >> 32) & 0x000f_0000)) as u32;
    let g = ((entry >> 55) & 1) as u8;
    kvm_segment {
        base,
        // With G = 1 the limit is in 4 KiB units; KVM wants the byte limit.
        limit: if g == 1 {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        },
        selector,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_entries_match_known_encodings() {
        // Values as in Linux's arch/x86/include/asm/segment.h GDT_ENTRY_INIT.
        let g = gdt();
        assert_eq!(g[1], 0x00af_9b00_0000_ffff);
        assert_eq!(g[2], 0x00cf_9300_0000_ffff);
        assert_eq!(g[3], 0x00cf_f300_0000_ffff);
        assert_eq!(g[4], 0x00af_fb00_0000_ffff);
        assert_eq!(g[5], 0x0000_8b00_2000_2068);
    }

    #[test]
    fn user_code_segment_decodes() {
        let cs = kvm_segment_from_gdt(gdt()[4], SEL_USER_CS);
        assert_eq!((cs.dpl, cs.l, cs.db, cs.s, cs.type_), (3, 1, 0, 1, 0xb));
        assert_eq!(cs.limit, 0xffff_ffff);
        let tr = kvm_segment_from_gdt(gdt()[5], SEL_TSS);
        assert_eq!(
            (tr.base, tr.limit, tr.type_, tr.s),
            (TSS_ADDR, 0x2068, 0xb, 0)
        );
        let t = tss();
        assert_eq!(u16::from_le_bytes([t[0x66], t[0x67]]), 0x68);
        assert!(t[0x68..0x2068].iter().all(|&b| b == 0));
        assert_eq!(t[0x2068], 0xff);
    }

    #[test]
    fn page_tables_map_payload_as_user() {
        let pts = page_tables();
        let find = |addr: u64| pts.iter().find(|(a, _)| *a == addr).unwrap().1;
        let pt_text = find(PT_TEXT_ADDR);
        let e = pt_text[0];
        assert_eq!(e & !0xfff & !PTE_NX, crate::payload::TEXT_BASE);
        assert_ne!(e & PTE_US, 0);
        assert_eq!(e & PTE_RW, 0);
        assert_eq!(e & PTE_NX, 0);
        let low = find(PT_LOW_ADDR);
        assert_eq!(low[0], 0, "null page unmapped");
        assert_eq!(low[1] & PTE_US, 0, "GDT is supervisor-only");
        assert!(
            low[2..=4].iter().all(|e| e & PTE_P != 0),
            "TSS + I/O bitmap pages mapped"
        );
        assert_eq!(low[5], 0);
        let data = find(PT_DATA_ADDR);
        assert_ne!(data[0] & PTE_US, 0);
        assert_ne!(data[511] & PTE_P, 0, "last stack page mapped");
        let hist = find(PT_HIST_ADDR);
        assert!(hist
            .iter()
            .take(256)
            .all(|e| e & (PTE_P | PTE_US | PTE_RW) == 7));
        assert_eq!(hist[256], 0);
        assert_eq!(MIN_MEM_BYTES, 0x90_0000);
    }
}

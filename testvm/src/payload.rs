//! The guest payload: hand-assembled x86-64 machine code, its symbol map and
//! the time shares it is built to produce.
//!
//! All functions live in one text image mapped at [`TEXT_BASE`] (guest
//! virtual == guest physical address, see [`crate::layout`]). Every function
//! starts on a 256-byte boundary; the gaps are filled with `int3` (`0xcc`), so
//! a stray jump into padding raises `#BP`, which (there is no IDT) escalates to
//! a triple fault and a `KVM_EXIT_SHUTDOWN` the host reports.
//!
//! The listings below are GNU `as` Intel syntax; the bytes were checked with
//! `as` + `objdump -d -M intel` and the unit tests re-check every branch target
//! and absolute address against the symbol constants.
//!
//! # Private register convention
//!
//! | register | meaning | set by |
//! | --- | --- | --- |
//! | `rdi` | vCPU index at entry; iteration count for `timed_call`/`hot_loop_*` | host / caller |
//! | `rsi` | guest address of this vCPU's control block at entry; function pointer for `timed_call` | host / caller |
//! | `rdx` | address of the TSC accumulator for `timed_call` | caller |
//! | `r8`  | workload flags ([`FLAG_OUT`], [`FLAG_HLT`]), loaded once by `vcpu_main` | `vcpu_main` |
//! | `r9`  | I/O port for [`FLAG_OUT`], loaded once by `vcpu_main` | `vcpu_main` |
//! | `rcx` | address of the history slot for `timed_call` | caller |
//! | `r12`–`r15` | vCPU index, control block, iterations per unit, history ring | `vcpu_main` |
//! | `rbx` | this round's history entry | `vcpu_main` |

use std::io::Write;
use std::path::Path;

use crate::Error;

/// Guest virtual (and physical) address of the payload's text image: the
/// classic non-PIE x86-64 ELF text address, so the guest looks like a
/// statically linked unikernel.
pub const TEXT_BASE: u64 = 0x40_0000;

/// Size in bytes of the text image (one 4 KiB page, mapped user, read-only,
/// executable).
pub const TEXT_SIZE: u64 = 0x1000;

/// Address of `vcpu_main`, the entry point of every vCPU.
pub const VCPU_MAIN: u64 = TEXT_BASE;
/// Address of `timed_call`, the helper that brackets one hot-function call
/// with `rdtsc` and adds the TSC delta to an accumulator.
pub const TIMED_CALL: u64 = TEXT_BASE + 0x100;
/// Address of `hot_loop_a` (run by even vCPUs).
pub const HOT_LOOP_A: u64 = TEXT_BASE + 0x200;
/// Address of `hot_loop_b` (run by odd vCPUs, 3 units per round).
pub const HOT_LOOP_B: u64 = TEXT_BASE + 0x300;
/// Address of `hot_loop_c` (run by odd vCPUs, 1 unit per round).
pub const HOT_LOOP_C: u64 = TEXT_BASE + 0x400;

/// Workload flag bit (control block offset [`CTL_FLAGS`]): execute
/// `out dx, al` with `dx` = [`CTL_PORT`] on every hot-loop iteration.
pub const FLAG_OUT: u64 = 1 << 0;
/// Workload flag bit: execute `hlt` on every hot-loop iteration (only valid
/// at CPL 0; at CPL 3 `hlt` raises `#GP`).
pub const FLAG_HLT: u64 = 1 << 1;

/// Control block offset of the round counter (`u64`, written by the guest:
/// `inc qword [r13]` after every round of `vcpu_main`).
pub const CTL_PROGRESS: u64 = 0x00;
/// Control block offset of the workload flags (`u64`, written by the host).
pub const CTL_FLAGS: u64 = 0x08;
/// Control block offset of the I/O port (`u64`, low 16 bits used; written by
/// the host).
pub const CTL_PORT: u64 = 0x10;
/// Control block offset of the loop iterations per share unit (`u64`, written
/// by the host). A round is 4 units on every vCPU.
pub const CTL_UNIT: u64 = 0x18;
/// Control block offset of the guest address of this vCPU's round history
/// ring (`u64`, written by the host; see [`HIST_LEN`]).
pub const CTL_HIST: u64 = 0x20;
/// Number of rounds kept in each vCPU's history ring.
pub const HIST_LEN: u64 = 1024;
/// Size of one history entry: two `u64` TSC deltas, the round's first and
/// second hot-function call (`[a, 0]` on even vCPUs, `[b, c]` on odd ones),
/// stored by `timed_call` in slot `round % HIST_LEN`.
pub const HIST_ENTRY: u64 = 16;
/// Control block offset of the accumulated TSC ticks spent in `hot_loop_a`
/// (`u64`, written by the guest's `timed_call`).
pub const CTL_TSC_A: u64 = 0x30;
/// Control block offset of the accumulated TSC ticks in `hot_loop_b`.
pub const CTL_TSC_B: u64 = 0x38;
/// Control block offset of the accumulated TSC ticks in `hot_loop_c`.
pub const CTL_TSC_C: u64 = 0x40;

/// `vcpu_main(rdi = vcpu index, rsi = &control_block)`: the dispatch loop.
/// Each round it picks the history slot `progress % HIST_LEN`, runs its
/// vCPU's mix through `timed_call` and increments the progress counter.
///
/// ```text
/// 400000: 49 89 fc             mov    r12, rdi              ; vCPU index
/// 400003: 49 89 f5             mov    r13, rsi              ; control block
/// 400006: 4d 8b 45 08          mov    r8,  [r13+0x08]       ; flags
/// 40000a: 4d 8b 4d 10          mov    r9,  [r13+0x10]       ; port
/// 40000e: 4d 8b 75 18          mov    r14, [r13+0x18]       ; unit
/// 400012: 4d 8b 7d 20          mov    r15, [r13+0x20]       ; history ring
/// .round:
/// 400016: 41 8b 5d 00          mov    ebx, [r13+0x00]       ; progress (low half)
/// 40001a: 81 e3 ff 03 00 00    and    ebx, 0x3ff            ; % HIST_LEN
/// 400020: c1 e3 04             shl    ebx, 4                ; * HIST_ENTRY
/// 400023: 4c 01 fb             add    rbx, r15              ; &hist[slot]
/// 400026: 41 f6 c4 01          test   r12b, 1
/// 40002a: 75 1b                jnz    .odd                  ; -> 400047
/// 40002c: 4a 8d 3c b5 00 00 00 00
///                              lea    rdi, [r14*4]          ; 4 units
/// 400034: be 00 02 40 00       mov    esi, hot_loop_a       ; 0x400200
/// 400039: 49 8d 55 30          lea    rdx, [r13+0x30]       ; &tsc_a
/// 40003d: 48 89 d9             mov    rcx, rbx              ; &hist[slot][0]
/// 400040: e8 bb 00 00 00       call   timed_call            ; -> 400100
/// 400045: eb 2a                jmp    .done                 ; -> 400071
/// .odd:
/// 400047: 4b 8d 3c 76          lea    rdi, [r14+r14*2]      ; 3 units
/// 40004b: be 00 03 40 00       mov    esi, hot_loop_b       ; 0x400300
/// 400050: 49 8d 55 38          lea    rdx, [r13+0x38]       ; &tsc_b
/// 400054: 48 89 d9             mov    rcx, rbx              ; &hist[slot][0]
/// 400057: e8 a4 00 00 00       call   timed_call            ; -> 400100
/// 40005c: 4c 89 f7             mov    rdi, r14              ; 1 unit
/// 40005f: be 00 04 40 00       mov    esi, hot_loop_c       ; 0x400400
/// 400064: 49 8d 55 40          lea    rdx, [r13+0x40]       ; &tsc_c
/// 400068: 48 8d 4b 08          lea    rcx, [rbx+8]          ; &hist[slot][1]
/// 40006c: e8 8f 00 00 00       call   timed_call            ; -> 400100
/// .done:
/// 400071: 49 ff 45 00          inc    qword [r13+0x00]      ; progress++
/// 400075: eb 9f                jmp    .round                ; -> 400016
/// ```
pub const VCPU_MAIN_CODE: [u8; 0x77] = [
    0x49, 0x89, 0xfc, // mov r12, rdi
    0x49, 0x89, 0xf5, // mov r13, rsi
    0x4d, 0x8b, 0x45, 0x08, // mov r8, [r13+0x08]
    0x4d, 0x8b, 0x4d, 0x10, // mov r9, [r13+0x10]
    0x4d, 0x8b, 0x75, 0x18, // mov r14, [r13+0x18]
    0x4d, 0x8b, 0x7d, 0x20, // mov r15, [r13+0x20]
    0x41, 0x8b, 0x5d, 0x00, // .round: mov ebx, [r13+0x00]
    0x81, 0xe3, 0xff, 0x03, 0x00, 0x00, // and ebx, 0x3ff
    0xc1, 0xe3, 0x04, // shl ebx, 4
    0x4c, 0x01, 0xfb, // add rbx, r15
    0x41, 0xf6, 0xc4, 0x01, // test r12b, 1
    0x75, 0x1b, // jnz .odd
    0x4a, 0x8d, 0x3c, 0xb5, 0x00, 0x00, 0x00, 0x00, // lea rdi, [r14*4]
    0xbe, 0x00, 0x02, 0x40, 0x00, // mov esi, 0x400200 (hot_loop_a)
    0x49, 0x8d, 0x55, 0x30, // lea rdx, [r13+0x30]
    0x48, 0x89, 0xd9, // mov rcx, rbx
    0xe8, 0xbb, 0x00, 0x00, 0x00, // call timed_call
    0xeb, 0x2a, // jmp .done
    0x4b, 0x8d, 0x3c, 0x76, // .odd: lea rdi, [r14+r14*2]
    0xbe, 0x00, 0x03, 0x40, 0x00, // mov esi, 0x400300 (hot_loop_b)
    0x49, 0x8d, 0x55, 0x38, // lea rdx, [r13+0x38]
    0x48, 0x89, 0xd9, // mov rcx, rbx
    0xe8, 0xa4, 0x00, 0x00, 0x00, // call timed_call
    0x4c, 0x89, 0xf7, // mov rdi, r14
    0xbe, 0x00, 0x04, 0x40, 0x00, // mov esi, 0x400400 (hot_loop_c)
    0x49, 0x8d, 0x55, 0x40, // lea rdx, [r13+0x40]
    0x48, 0x8d, 0x4b, 0x08, // lea rcx, [rbx+8]
    0xe8, 0x8f, 0x00, 0x00, 0x00, // call timed_call
    0x49, 0xff, 0x45, 0x00, // .done: inc qword [r13+0x00]
    0xeb, 0x9f, // jmp .round
];

/// `timed_call(rdi = iterations, rsi = function, rdx = &accumulator,
/// rcx = &history_slot)`: calls `function(rdi)`, adds the elapsed TSC ticks
/// to `*accumulator` and stores them in `*history_slot`.
/// Preserves `rbx`, `rbp`, `r8`–`r15`; clobbers `rax`, `rcx`, `rdx`, `rdi`.
///
/// ```text
/// 400100: 53                   push   rbx
/// 400101: 55                   push   rbp
/// 400102: 41 54                push   r12
/// 400104: 41 55                push   r13
/// 400106: 41 56                push   r14
/// 400108: 48 89 d3             mov    rbx, rdx              ; accumulator
/// 40010b: 48 89 f5             mov    rbp, rsi              ; function
/// 40010e: 49 89 fc             mov    r12, rdi              ; iterations
/// 400111: 49 89 ce             mov    r14, rcx              ; history slot
/// 400114: 0f 31                rdtsc
/// 400116: 48 c1 e2 20          shl    rdx, 32
/// 40011a: 48 09 d0             or     rax, rdx
/// 40011d: 49 89 c5             mov    r13, rax              ; start TSC
/// 400120: 4c 89 e7             mov    rdi, r12
/// 400123: ff d5                call   rbp
/// 400125: 0f 31                rdtsc
/// 400127: 48 c1 e2 20          shl    rdx, 32
/// 40012b: 48 09 d0             or     rax, rdx
/// 40012e: 4c 29 e8             sub    rax, r13              ; delta
/// 400131: 48 01 03             add    [rbx], rax
/// 400134: 49 89 06             mov    [r14], rax
/// 400137: 41 5e                pop    r14
/// 400139: 41 5d                pop    r13
/// 40013b: 41 5c                pop    r12
/// 40013d: 5d                   pop    rbp
/// 40013e: 5b                   pop    rbx
/// 40013f: c3                   ret
/// ```
pub const TIMED_CALL_CODE: [u8; 0x40] = [
    0x53, // push rbx
    0x55, // push rbp
    0x41, 0x54, // push r12
    0x41, 0x55, // push r13
    0x41, 0x56, // push r14
    0x48, 0x89, 0xd3, // mov rbx, rdx
    0x48, 0x89, 0xf5, // mov rbp, rsi
    0x49, 0x89, 0xfc, // mov r12, rdi
    0x49, 0x89, 0xce, // mov r14, rcx
    0x0f, 0x31, // rdtsc
    0x48, 0xc1, 0xe2, 0x20, // shl rdx, 32
    0x48, 0x09, 0xd0, // or rax, rdx
    0x49, 0x89, 0xc5, // mov r13, rax
    0x4c, 0x89, 0xe7, // mov rdi, r12
    0xff, 0xd5, // call rbp
    0x0f, 0x31, // rdtsc
    0x48, 0xc1, 0xe2, 0x20, // shl rdx, 32
    0x48, 0x09, 0xd0, // or rax, rdx
    0x4c, 0x29, 0xe8, // sub rax, r13
    0x48, 0x01, 0x03, // add [rbx], rax
    0x49, 0x89, 0x06, // mov [r14], rax
    0x41, 0x5e, // pop r14
    0x41, 0x5d, // pop r13
    0x41, 0x5c, // pop r12
    0x5d, // pop rbp
    0x5b, // pop rbx
    0xc3, // ret
];

/// `hot_loop_{a,b,c}(rdi = iterations)`: the hot function body, copied
/// byte-for-byte to [`HOT_LOOP_A`], [`HOT_LOOP_B`] and [`HOT_LOOP_C`] (it is
/// position independent), so all three cost the same per iteration and time
/// shares follow iteration counts. Each iteration is a dependent
/// multiply-add chain (about 4 cycles natively) plus the flag tests; with
/// [`FLAG_OUT`] it also writes `al` to port `r9w` (one `KVM_EXIT_IO`), with
/// [`FLAG_HLT`] it halts (one `KVM_EXIT_HLT`). Clobbers `rax`, `rcx`, `rdx`.
///
/// ```text
/// +00: 48 89 f9             mov    rcx, rdi
/// +03: b8 01 00 00 00       mov    eax, 1
/// +08: 48 85 c9             test   rcx, rcx
/// +0b: 74 20                jz     .ret                  ; -> +2d
/// .loop:
/// +0d: 48 69 c0 91 f4 45 25 imul   rax, rax, 0x2545f491
/// +14: 48 01 c8             add    rax, rcx
/// +17: 41 f6 c0 01          test   r8b, 1                ; FLAG_OUT?
/// +1b: 74 04                jz     .no_out               ; -> +21
/// +1d: 44 89 ca             mov    edx, r9d
/// +20: ee                   out    dx, al
/// .no_out:
/// +21: 41 f6 c0 02          test   r8b, 2                ; FLAG_HLT?
/// +25: 74 01                jz     .no_hlt               ; -> +28
/// +27: f4                   hlt
/// .no_hlt:
/// +28: 48 ff c9             dec    rcx
/// +2b: 75 e0                jnz    .loop                 ; -> +0d
/// .ret:
/// +2d: c3                   ret
/// ```
pub const HOT_LOOP_CODE: [u8; 0x2e] = [
    0x48, 0x89, 0xf9, // mov rcx, rdi
    0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
    0x48, 0x85, 0xc9, // test rcx, rcx
    0x74, 0x20, // jz .ret
    0x48, 0x69, 0xc0, 0x91, 0xf4, 0x45, 0x25, // .loop: imul rax, rax, 0x2545f491
    0x48, 0x01, 0xc8, // add rax, rcx
    0x41, 0xf6, 0xc0, 0x01, // test r8b, 1
    0x74, 0x04, // jz .no_out
    0x44, 0x89, 0xca, // mov edx, r9d
    0xee, // out dx, al
    0x41, 0xf6, 0xc0, 0x02, // .no_out: test r8b, 2
    0x74, 0x01, // jz .no_hlt
    0xf4, // hlt
    0x48, 0xff, 0xc9, // .no_hlt: dec rcx
    0x75, 0xe0, // jnz .loop
    0xc3, // .ret: ret
];

/// One function of the guest payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GuestSymbol {
    /// Symbol name, as written to the kallsyms file.
    pub name: &'static str,
    /// Guest virtual address of the first instruction (also the guest
    /// physical address: the payload is identity mapped).
    pub addr: u64,
    /// Size of the function's code in bytes (excluding `int3` padding).
    pub size: u64,
}

impl GuestSymbol {
    /// Whether the guest virtual address `gva` lies inside this function's
    /// code (`addr <= gva < addr + size`).
    pub fn contains(&self, gva: u64) -> bool {
        gva >= self.addr && gva - self.addr < self.size
    }
}

static SYMBOLS: [GuestSymbol; 5] = [
    GuestSymbol {
        name: "vcpu_main",
        addr: VCPU_MAIN,
        size: VCPU_MAIN_CODE.len() as u64,
    },
    GuestSymbol {
        name: "timed_call",
        addr: TIMED_CALL,
        size: TIMED_CALL_CODE.len() as u64,
    },
    GuestSymbol {
        name: "hot_loop_a",
        addr: HOT_LOOP_A,
        size: HOT_LOOP_CODE.len() as u64,
    },
    GuestSymbol {
        name: "hot_loop_b",
        addr: HOT_LOOP_B,
        size: HOT_LOOP_CODE.len() as u64,
    },
    GuestSymbol {
        name: "hot_loop_c",
        addr: HOT_LOOP_C,
        size: HOT_LOOP_CODE.len() as u64,
    },
];

/// The payload's symbol table, sorted by address: every function the guest
/// executes (`vcpu_main`, `timed_call`, `hot_loop_a`, `hot_loop_b`,
/// `hot_loop_c`). The same for every workload and privilege level.
pub fn symbols() -> &'static [GuestSymbol] {
    &SYMBOLS
}

/// The symbol containing guest virtual address `gva`, if any.
pub fn symbol_at(gva: u64) -> Option<&'static GuestSymbol> {
    SYMBOLS.iter().find(|s| s.contains(gva))
}

/// The expected split of vCPU `vcpu`'s time among hot functions, as
/// `(symbol name, fraction of that vCPU's time)`; the fractions sum to 1.
///
/// Even vCPUs run only `hot_loop_a` (4 units per round); odd vCPUs run
/// `hot_loop_b` for 3 units and `hot_loop_c` for 1 unit per round, i.e.
/// 75 % / 25 %. `vcpu_main` and `timed_call` run a few dozen instructions per
/// round of at least 4 × [`crate::TestVmConfig::unit_iterations`] loop
/// iterations and are left out (well under 0.1 % at the default unit).
pub fn expected_shares(vcpu: usize) -> Vec<(&'static str, f64)> {
    if vcpu % 2 == 0 {
        vec![("hot_loop_a", 1.0)]
    } else {
        vec![("hot_loop_b", 0.75), ("hot_loop_c", 0.25)]
    }
}

/// Builds the text image: [`TEXT_SIZE`] bytes of `int3` with each function's
/// code copied to its symbol address minus [`TEXT_BASE`].
pub fn text_image() -> Vec<u8> {
    let mut text = vec![0xcc_u8; TEXT_SIZE as usize];
    let mut put = |addr: u64, code: &[u8]| {
        let off = (addr - TEXT_BASE) as usize;
        text[off..off + code.len()].copy_from_slice(code);
    };
    put(VCPU_MAIN, &VCPU_MAIN_CODE);
    put(TIMED_CALL, &TIMED_CALL_CODE);
    put(HOT_LOOP_A, &HOT_LOOP_CODE);
    put(HOT_LOOP_B, &HOT_LOOP_CODE);
    put(HOT_LOOP_C, &HOT_LOOP_CODE);
    text
}

/// Renders [`symbols()`] in `/proc/kallsyms` format: one
/// `"%016x T name\n"` line per function, sorted by address.
pub fn kallsyms_text() -> String {
    let mut syms: Vec<&GuestSymbol> = SYMBOLS.iter().collect();
    syms.sort_by_key(|s| s.addr);
    syms.iter()
        .map(|s| format!("{:016x} T {}\n", s.addr, s.name))
        .collect()
}

/// Writes [`kallsyms_text()`] to `path` (created or truncated).
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be created or written.
pub fn write_kallsyms(path: &Path) -> Result<(), Error> {
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::create(path).map_err(io_err)?;
    f.write_all(kallsyms_text().as_bytes()).map_err(io_err)?;
    f.flush().map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel32_target(code: &[u8], base: u64, insn_off: usize) -> u64 {
        // `e8 rel32`: target = address of next instruction + rel32.
        assert_eq!(code[insn_off], 0xe8);
        let rel = i32::from_le_bytes(code[insn_off + 1..insn_off + 5].try_into().unwrap());
        (base + insn_off as u64 + 5).wrapping_add(rel as i64 as u64)
    }

    fn imm32(code: &[u8], insn_off: usize) -> u64 {
        // `be imm32`: mov esi, imm32.
        assert_eq!(code[insn_off], 0xbe);
        u32::from_le_bytes(code[insn_off + 1..insn_off + 5].try_into().unwrap()) as u64
    }

    #[test]
    fn vcpu_main_targets_match_symbols() {
        let c = &VCPU_MAIN_CODE;
        assert_eq!(imm32(c, 0x34), HOT_LOOP_A);
        assert_eq!(imm32(c, 0x4b), HOT_LOOP_B);
        assert_eq!(imm32(c, 0x5f), HOT_LOOP_C);
        for call in [0x40, 0x57, 0x6c] {
            assert_eq!(rel32_target(c, VCPU_MAIN, call), TIMED_CALL);
        }
        // Control block offsets in `mov reg, [r13+disp8]` / `lea rdx, [r13+disp8]`.
        assert_eq!(c[0x09] as u64, CTL_FLAGS);
        assert_eq!(c[0x0d] as u64, CTL_PORT);
        assert_eq!(c[0x11] as u64, CTL_UNIT);
        assert_eq!(c[0x15] as u64, CTL_HIST);
        assert_eq!(c[0x19] as u64, CTL_PROGRESS);
        assert_eq!(c[0x3c] as u64, CTL_TSC_A);
        assert_eq!(c[0x53] as u64, CTL_TSC_B);
        assert_eq!(c[0x67] as u64, CTL_TSC_C);
        assert_eq!(c[0x74] as u64, CTL_PROGRESS);
        // History slot arithmetic: and ebx, HIST_LEN - 1; shl ebx, log2(HIST_ENTRY).
        assert_eq!(
            u32::from_le_bytes(c[0x1c..0x20].try_into().unwrap()) as u64,
            HIST_LEN - 1
        );
        assert_eq!(1u64 << c[0x22], HIST_ENTRY);
        assert_eq!(c[0x6b] as u64, HIST_ENTRY / 2);
        // Short jumps: jnz .odd, jmp .done, jmp .round.
        let short = |off: usize| (off as i64 + 2 + c[off + 1] as i8 as i64) as usize;
        assert_eq!(short(0x2a), 0x47);
        assert_eq!(short(0x45), 0x71);
        assert_eq!(short(0x75), 0x16);
    }

    #[test]
    fn hot_loop_branches_stay_inside() {
        let c = &HOT_LOOP_CODE;
        let short = |off: usize| (off as i64 + 2 + c[off + 1] as i8 as i64) as usize;
        assert_eq!(short(0x0b), 0x2d);
        assert_eq!(short(0x1b), 0x21);
        assert_eq!(short(0x25), 0x28);
        assert_eq!(short(0x2b), 0x0d);
        assert_eq!(*c.last().unwrap(), 0xc3);
    }

    #[test]
    fn text_image_places_functions() {
        let t = text_image();
        assert_eq!(t.len() as u64, TEXT_SIZE);
        for s in symbols() {
            let off = (s.addr - TEXT_BASE) as usize;
            assert_ne!(t[off], 0xcc, "{} starts with code", s.name);
            assert_eq!(
                t[off + s.size as usize],
                0xcc,
                "{} is followed by padding",
                s.name
            );
        }
        assert_eq!(symbol_at(HOT_LOOP_B + 0x10).unwrap().name, "hot_loop_b");
        assert!(symbol_at(HOT_LOOP_B + 0x80).is_none());
    }

    #[test]
    fn symbols_sorted_and_disjoint() {
        for w in symbols().windows(2) {
            assert!(w[0].addr + w[0].size <= w[1].addr);
        }
    }

    #[test]
    fn kallsyms_lines() {
        let text = kallsyms_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), symbols().len());
        assert_eq!(lines[0], "0000000000400000 T vcpu_main");
        assert_eq!(lines[4], "0000000000400400 T hot_loop_c");
    }

    #[test]
    fn shares_sum_to_one() {
        for v in 0..4 {
            let sum: f64 = expected_shares(v).iter().map(|(_, f)| f).sum();
            assert!((sum - 1.0).abs() < 1e-12);
        }
        assert_eq!(expected_shares(2), expected_shares(0));
        assert_eq!(expected_shares(3), expected_shares(1));
    }
}

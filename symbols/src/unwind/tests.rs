//! Bounds of [`Unwinder::unwind`] on hostile or broken input: no panic, bounded output.
//!
//! Code lives in an anonymous executable mapping here (no CFI: the frame-pointer rule), so each
//! test controls the walk exactly through the stack words it hands in. Real DWARF unwinding is
//! tested end to end in `tests/unwind.rs`.

use super::*;

/// 0x400000..0x401000 anonymous r-x (JIT-like code), 0x500000..0x501000 r-- data, and the test
/// executable's own mappings are not included.
const MAPS: &str = "\
00400000-00401000 r-xp 00000000 00:00 0 
00500000-00501000 r--p 00000000 00:00 0 
";

const IP: u64 = 0x40_0010;
const RA1: u64 = 0x40_0100;
const RA2: u64 = 0x40_0200;
const SP: u64 = 0x7fff_0000;

fn maps() -> ProcMaps {
    ProcMaps::parse(MAPS).unwrap()
}

/// The bytes of a stack copy holding `words` (little-endian) from `SP` up.
fn stack_of(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn unwind(regs: UserRegs, stack: &[u8], max_frames: usize) -> Vec<u64> {
    let mut u = Unwinder::new();
    let mut out = vec![0xdead]; // cleared by unwind
    u.unwind(7, &maps(), regs, stack, max_frames, &mut out);
    out
}

fn regs(ip: u64, bp: u64) -> UserRegs {
    UserRegs { ip, sp: SP, bp }
}

/// A frame-pointer chain of two frames: bp → [SP+16] → [SP+32] → end (bp 0).
fn two_frames() -> Vec<u8> {
    stack_of(&[
        0x1111,  // SP+0: spill slot of the leaf
        0x2222,  // SP+8
        SP + 32, // SP+16 = bp: caller's bp
        RA1,     // SP+24: return address into the caller
        0,       // SP+32: outermost bp (0 ends the chain)
        RA2,     // SP+40
    ])
}

#[test]
fn frame_pointer_fallback_walks_a_good_chain() {
    let out = unwind(regs(IP, SP + 16), &two_frames(), 64);
    assert_eq!(out, [IP, RA1, RA2]);
}

#[test]
fn max_frames_bounds_the_output() {
    assert!(unwind(regs(IP, SP + 16), &two_frames(), 0).is_empty());
    assert_eq!(unwind(regs(IP, SP + 16), &two_frames(), 1), [IP]);
    assert_eq!(unwind(regs(IP, SP + 16), &two_frames(), 2), [IP, RA1]);
}

#[test]
fn empty_stack_gives_the_ip_only() {
    assert_eq!(unwind(regs(IP, SP + 16), &[], 64), [IP]);
}

#[test]
fn truncated_stack_stops_at_its_end() {
    let full = two_frames();
    // Cut inside the second frame's return address: one caller survives.
    assert_eq!(unwind(regs(IP, SP + 16), &full[..44], 64), [IP, RA1]);
    // Cut inside the first frame record.
    assert_eq!(unwind(regs(IP, SP + 16), &full[..20], 64), [IP]);
    // Odd lengths never read past the copy.
    for len in 0..full.len() {
        let out = unwind(regs(IP, SP + 16), &full[..len], 64);
        assert!(out.len() <= 3 && out[0] == IP, "{len}: {out:x?}");
    }
}

#[test]
fn sp_not_matching_the_stack_stops() {
    let stack = two_frames();
    // bp below sp: the frame would move the stack pointer down.
    let r = UserRegs {
        ip: IP,
        sp: SP + 0x1000,
        bp: SP + 16,
    };
    assert_eq!(unwind(r, &stack, 64), [IP]);
    // sp far above the copy: every read is outside it.
    let r = UserRegs {
        ip: IP,
        sp: u64::MAX - 4,
        bp: u64::MAX - 2,
    };
    assert_eq!(unwind(r, &stack, 64), [IP]);
    // sp near 0 with bp below it.
    let r = UserRegs {
        ip: IP,
        sp: 8,
        bp: 0,
    };
    assert_eq!(unwind(r, &stack, 64), [IP]);
}

#[test]
fn ip_outside_code_stops_after_the_ip() {
    let stack = two_frames();
    // Unmapped.
    assert_eq!(unwind(regs(0x10, SP + 16), &stack, 64), [0x10]);
    // Mapped but not executable.
    assert_eq!(unwind(regs(0x50_0010, SP + 16), &stack, 64), [0x50_0010]);
    // No mappings at all.
    let mut u = Unwinder::new();
    let mut out = Vec::new();
    u.unwind(
        7,
        &ProcMaps::default(),
        regs(IP, SP + 16),
        &stack,
        64,
        &mut out,
    );
    assert_eq!(out, [IP]);
}

#[test]
fn return_address_outside_code_is_not_pushed() {
    for bad in [0x50_0010, 0x7fff_1234, 1] {
        let stack = stack_of(&[0, 0, SP + 32, bad, 0, RA2]);
        assert_eq!(unwind(regs(IP, SP + 16), &stack, 64), [IP], "{bad:#x}");
    }
    // A null return address ends the stack.
    let stack = stack_of(&[0, 0, SP + 32, 0, 0, RA2]);
    assert_eq!(unwind(regs(IP, SP + 16), &stack, 64), [IP]);
}

#[test]
fn frame_pointing_at_itself_does_not_loop() {
    // [bp] = bp: the second frame would not move sp up.
    let stack = stack_of(&[SP, RA1, 0, 0]);
    assert_eq!(unwind(regs(IP, SP), &stack, 1000), [IP, RA1]);
    // Two frames pointing at each other.
    let stack = stack_of(&[SP + 16, RA1, SP, RA2]);
    assert_eq!(unwind(regs(IP, SP), &stack, 1000), [IP, RA1, RA2]);
}

#[test]
fn repeating_return_address_is_bounded_by_stack_and_max_frames() {
    // A chain up the whole copy whose return address is always the same (deep recursion, or
    // garbage that looks like it): bounded by the copy, then by max_frames.
    let words: Vec<u64> = (0..512u64).flat_map(|i| [SP + 16 * (i + 1), RA1]).collect();
    let stack = stack_of(&words);
    let out = unwind(regs(IP, SP), &stack, 100_000);
    assert_eq!(out.len(), 1 + 512);
    assert!(out[1..].iter().all(|&a| a == RA1));
    assert_eq!(unwind(regs(IP, SP), &stack, 64).len(), 64);
}

#[test]
fn read_u64_bounds() {
    let s = stack_of(&[1, 2]);
    assert_eq!(read_u64(&s, 100, 100), Ok(1));
    assert_eq!(read_u64(&s, 100, 108), Ok(2));
    assert_eq!(read_u64(&s, 100, 104), Ok(2u64 << 32));
    assert_eq!(read_u64(&s, 100, 109), Err(()));
    assert_eq!(read_u64(&s, 100, 99), Err(()));
    assert_eq!(read_u64(&s, 0, u64::MAX), Err(()));
    assert_eq!(read_u64(&[], 0, 0), Err(()));
}

/// The test executable's own text mapping: the file is opened once for every process that maps
/// it, and each process gets its own module set until invalidated.
#[test]
fn files_are_cached_per_identity_and_modules_per_process() {
    let maps = ProcMaps::read(std::process::id()).unwrap();
    let ip = read_u64 as *const () as usize as u64;
    let exe = maps.find(ip).expect("own text is mapped").clone();
    assert!(exe.is_exec() && exe.file_path().is_some());
    let mut u = Unwinder::new();
    let mut out = Vec::new();
    for pid in [100, 200] {
        u.unwind(pid, &maps, regs(ip, 0), &[], 16, &mut out);
        assert_eq!(out, [ip]);
    }
    assert_eq!(u.cached_files(), 1);
    assert_eq!(u.cached_processes(), 2);
    u.invalidate(100);
    assert_eq!(u.cached_processes(), 1);
    // The same path with another inode (the file was replaced) is a different file, and not
    // used: the path no longer names the mapped inode.
    let replaced = ProcMaps::from_entries([MapEntry {
        inode: exe.inode.wrapping_add(1),
        ..exe.clone()
    }]);
    u.unwind(300, &replaced, regs(ip, 0), &[], 16, &mut out);
    assert_eq!(out, [ip]);
    assert_eq!(u.cached_files(), 2);
    assert!(u.files.values().filter(|f| f.is_some()).count() == 1);
}

#[test]
fn a_changed_mapping_at_the_same_start_replaces_the_module() {
    let mut u = Unwinder::new();
    let mut out = Vec::new();
    let stack = two_frames();
    u.unwind(7, &maps(), regs(IP, SP + 16), &stack, 64, &mut out);
    assert_eq!(out, [IP, RA1, RA2]);
    // The code mapping shrank: RA2 is no longer code.
    let smaller = ProcMaps::parse("00400000-00400180 r-xp 00000000 00:00 0 \n").unwrap();
    u.unwind(7, &smaller, regs(IP, SP + 16), &stack, 64, &mut out);
    assert_eq!(out, [IP, RA1]);
    let seen = &u.processes[&7].seen;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[&0x40_0000].end, 0x40_0180);
}

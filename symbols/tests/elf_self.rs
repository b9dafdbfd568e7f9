//! Symbolizes the test binary's own functions (as blazesym's `tests/correctness.rs` does).
//!
//! The test binary is a PIE (`ET_DYN`) whose text segment usually has `p_vaddr != p_offset`
//! (lld), so the AVMA, file offset and SVMA all differ.

use hvprof_symbols::{ElfFile, ElfKind, ProcMaps, Reason, Symbolized, Symbolizer};

const TARGET_LINE: u32 = line!() + 4;
/// The function this test looks itself up by.
#[inline(never)]
#[no_mangle]
pub extern "C" fn hvprof_symbols_test_target(x: u64) -> u64 {
    std::hint::black_box(x).wrapping_mul(3) ^ 0x55
}

#[inline(never)]
fn rust_named_target(x: u64) -> u64 {
    std::hint::black_box(x).wrapping_add(7)
}

#[test]
fn own_function_by_file_offset() {
    assert_eq!(hvprof_symbols_test_target(1), 3 ^ 0x55);
    let addr = hvprof_symbols_test_target as *const () as u64;
    let maps = ProcMaps::read(std::process::id()).unwrap();
    let map = maps.find(addr).unwrap();
    let off = map.file_offset(addr).unwrap();
    let elf = ElfFile::open(map.file_path().unwrap()).unwrap();
    assert_eq!(elf.kind(), ElfKind::Dynamic);
    let svma = elf.file_offset_to_svma(off).unwrap();
    eprintln!("avma {addr:#x} file offset {off:#x} svma {svma:#x}");
    let sym = elf.lookup_svma(svma).unwrap();
    assert_eq!(sym.name, "hvprof_symbols_test_target");
    assert_eq!(sym.addr, svma, "function pointer is the symbol start");
    assert!(sym.size > 0);
    // One byte in is still the same function.
    assert_eq!(
        elf.lookup_svma(svma + 1).unwrap().name,
        "hvprof_symbols_test_target"
    );

    let loc = elf.location(svma).expect("test binaries have DWARF");
    assert!(loc.file.ends_with("elf_self.rs"), "{loc:?}");
    let line = loc.line.unwrap();
    assert!(
        (TARGET_LINE..TARGET_LINE + 3).contains(&line),
        "{line} vs {TARGET_LINE}"
    );
    assert!(elf.build_id().is_some_and(|b| !b.is_empty()));
}

#[test]
fn symbolizer_demangles_rust_names() {
    assert_eq!(rust_named_target(1), 8);
    let addr = rust_named_target as *const () as u64;
    let maps = ProcMaps::read(std::process::id()).unwrap();
    let mut s = Symbolizer::new();
    match s.symbolize_user(&maps, addr + 2) {
        Symbolized::Sym(info) => {
            assert_eq!(info.name, "elf_self::rust_named_target");
            assert_eq!(info.offset, 2);
            let exe = std::env::current_exe().unwrap();
            assert_eq!(info.dso, exe.file_name().unwrap().to_string_lossy());
            assert!(info.location.unwrap().file.ends_with("elf_self.rs"));
        }
        other => panic!("{other:?}"),
    }
    // Without locations.
    let mut s = Symbolizer::new().with_source_locations(false);
    match s.symbolize_user(&maps, addr) {
        Symbolized::Sym(info) => assert_eq!(info.location, None),
        other => panic!("{other:?}"),
    }
    // The vDSO has no file.
    let vdso = maps
        .iter()
        .find(|e| e.path == hvprof_symbols::MapPath::Pseudo("[vdso]".into()));
    if let Some(v) = vdso {
        assert_eq!(
            s.symbolize_user(&maps, v.start),
            Symbolized::Unknown(Reason::PseudoMapping {
                name: "[vdso]".into()
            })
        );
    }
}

#[test]
fn libc_function_from_shared_library() {
    // `getpid` lives in libc (a shared object, ET_DYN, mapped at a random base).
    let addr = libc_getpid_address();
    let maps = ProcMaps::read(std::process::id()).unwrap();
    let mut s = Symbolizer::new().with_source_locations(false);
    match s.symbolize_user(&maps, addr) {
        Symbolized::Sym(info) => {
            assert!(info.dso.starts_with("libc"), "{info:?}");
            assert!(info.name.contains("getpid"), "{info:?}");
        }
        other => panic!("{other:?}"),
    }
}

fn libc_getpid_address() -> u64 {
    extern "C" {
        fn getpid() -> i32;
    }
    // Taking the address is safe; only calling would not be.
    getpid as *const () as u64
}

//! Reads the test process's own `/proc/self/maps`.

use std::path::Path;

use hvprof_symbols::{MapPath, ProcMaps};

#[inline(never)]
fn some_code() -> u64 {
    std::hint::black_box(42)
}

#[test]
fn own_maps_contain_own_code_and_vdso() {
    let maps = ProcMaps::read(std::process::id()).unwrap();
    let from_self = ProcMaps::parse(&std::fs::read_to_string("/proc/self/maps").unwrap()).unwrap();
    assert!(!maps.is_empty());
    // The two reads can differ by a few allocations, but not by the executable's mappings.
    let addr = some_code as *const () as u64;
    let m = maps.find(addr).expect("own code is mapped");
    assert_eq!(
        from_self.find(addr).map(|e| (e.start, e.end)),
        Some((m.start, m.end))
    );
    assert!(m.is_exec());
    let exe = std::env::current_exe().unwrap().canonicalize().unwrap();
    assert_eq!(m.file_path(), Some(exe.as_path()));
    assert!(m.file_offset(addr).is_some());
    assert!(maps
        .iter()
        .any(|e| e.path == MapPath::Pseudo("[vdso]".into()) && e.is_exec()));
    assert!(maps
        .iter()
        .any(|e| e.path == MapPath::Anonymous || e.path == MapPath::Pseudo("[heap]".into())));
    // Sorted and non-overlapping.
    for w in maps.entries().windows(2) {
        assert!(w[0].end <= w[1].start);
    }
}

#[test]
fn read_from_fake_proc_root() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("4242")).unwrap();
    std::fs::write(
        dir.path().join("4242/maps"),
        "00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/qemu system\n",
    )
    .unwrap();
    let maps = ProcMaps::read_from(dir.path(), 4242).unwrap();
    assert_eq!(
        maps.find(0x40_1000).unwrap().file_path(),
        Some(Path::new("/usr/bin/qemu system"))
    );
    let e = ProcMaps::read_from(dir.path(), 1).unwrap_err();
    assert!(e.to_string().starts_with("reading "), "{e}");
}

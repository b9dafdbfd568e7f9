//! Loads the live `/proc/kallsyms` (needs root, or `kernel.kptr_restrict=0`).

mod common;

use std::time::Instant;

use hvprof_symbols::{Error, Kallsyms};

#[test]
fn real_kallsyms_finds_x86_emulate_insn() {
    let t = Instant::now();
    let k = match Kallsyms::load("/proc/kallsyms") {
        Ok(k) => k,
        Err(e @ Error::AddressesHidden { .. }) => skip!("{e}"),
        Err(e) => panic!("loading /proc/kallsyms: {e:?}"),
    };
    eprintln!(
        "loaded {} text symbols in {:?} (debug build)",
        k.len(),
        t.elapsed()
    );
    assert!(k.len() > 1000);

    let Some(sym) = k.iter().find(|s| s.name == "x86_emulate_insn") else {
        skip!("x86_emulate_insn is not in /proc/kallsyms (kvm not loaded/built in?)");
    };
    let (addr, module) = (sym.addr, sym.module);
    for off in [0, 1, 0x10] {
        let hit = k
            .lookup(addr + off)
            .expect("lookup inside x86_emulate_insn");
        assert_eq!(
            (hit.name, hit.module, hit.addr, hit.offset),
            ("x86_emulate_insn", module, addr, off)
        );
    }
    assert_eq!(k.module_of(addr), module);
    // A kernel text address before the symbol belongs to something else.
    assert_ne!(k.lookup(addr - 1).map(|s| s.name), Some("x86_emulate_insn"));
    // The whole table is sorted and every symbol finds itself.
    let mut prev = 0;
    for s in k.iter() {
        assert!(s.addr > prev || prev == 0, "{} not sorted", s.name);
        prev = s.addr;
        assert_eq!(k.lookup(s.addr).map(|h| h.addr), Some(s.addr), "{}", s.name);
    }
}

#[test]
fn missing_file_error_names_path() {
    let e = Kallsyms::load("/nonexistent/hvprof/System.map").unwrap_err();
    assert!(matches!(e, Error::Open { .. }));
    assert_eq!(e.to_string(), "opening /nonexistent/hvprof/System.map");
}

#[test]
fn load_errors_carry_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let hidden = dir.path().join("kallsyms");
    std::fs::write(
        &hidden,
        "0000000000000000 T _stext\n0000000000000000 t foo\t[kvm]\n",
    )
    .unwrap();
    match Kallsyms::load(&hidden) {
        Err(Error::AddressesHidden { path: Some(p) }) => assert_eq!(p, hidden),
        other => panic!("{other:?}"),
    }
    let bad = dir.path().join("System.map");
    std::fs::write(&bad, "ffffffff81000000 T _stext\nnot-hex T x\n").unwrap();
    let e = Kallsyms::load(&bad).unwrap_err();
    assert!(matches!(e, Error::Parse { line: 2, .. }), "{e:?}");
    assert!(e.to_string().contains(&*bad.to_string_lossy()), "{e}");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    assert!(matches!(
        Kallsyms::load(&empty),
        Err(Error::NoSymbols { path: Some(_), .. })
    ));
    let ok = dir.path().join("ok.map");
    std::fs::write(&ok, "ffffffff81000000 T _stext\nffffffff81000100 T next\n").unwrap();
    assert_eq!(
        Kallsyms::load(&ok)
            .unwrap()
            .lookup(0xffff_ffff_8100_0010)
            .unwrap()
            .name,
        "_stext"
    );
}

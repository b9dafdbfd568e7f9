//! Separate debug files: a C fixture split as Debian splits its packages
//! (`objcopy --only-keep-debug`, `strip --strip-all`, `objcopy --add-gnu-debuglink`), found by
//! build ID and by `.gnu_debuglink` in each of its directories, and refused when the build ID or
//! CRC does not match; the unwinder taking `.debug_frame` from a debug file; then this machine's
//! libc and its libc6-dbg file, if installed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use hvprof_symbols::debugfile::{DebugDirs, Via};
use hvprof_symbols::{ElfFile, ProcMaps, Reason, Symbolized, Symbolizer, Unwinder, UserRegs};

/// `fixture_static` has no `.dynsym` entry: only `.symtab` names it.
const PROG_C: &str = r#"
#include <stdio.h>
__attribute__((noinline)) static int fixture_static(int x) { return x * FACTOR + 1; }
int main(int argc, char **argv) { (void)argv; printf("%d\n", fixture_static(argc)); return 0; }
"#;

/// Runs `cmd args` in `dir`, panicking with its stderr on failure.
fn run(dir: &Path, cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn have_tools() -> bool {
    ["gcc", "objcopy", "strip"]
        .iter()
        .all(|t| Command::new(t).arg("--version").output().is_ok())
}

/// A split fixture in its own directory: `DIR/NAME` (stripped) and `DIR/NAME.debug`.
struct Split {
    dir: PathBuf,
    exe: PathBuf,
    debug: PathBuf,
    /// SVMA of `fixture_static`, read from the unstripped build.
    svma: u64,
}

/// Builds `NAME` with `-DFACTOR=factor` (a different factor gives a different build ID), a
/// non-PIE linked at 0x10000000 so that file offset ≠ SVMA, then splits it. With `link`, the
/// stripped file gets a `.gnu_debuglink` to `NAME.debug`.
fn split(dir: &Path, name: &str, factor: u32, link: bool) -> Split {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("prog.c"), PROG_C).unwrap();
    let debug_name = format!("{name}.debug");
    let def = format!("-DFACTOR={factor}");
    run(
        &dir,
        "gcc",
        &[
            "-g",
            "-O1",
            &def,
            "-no-pie",
            "-fno-pie",
            "-Wl,-Ttext-segment=0x10000000",
            "-Wl,--build-id",
            "-o",
            name,
            "prog.c",
        ],
    );
    let exe = dir.join(name);
    let svma = ElfFile::open(&exe)
        .unwrap()
        .symbols()
        .find(|s| s.name == "fixture_static")
        .expect("unstripped build has fixture_static in .symtab")
        .addr;
    run(&dir, "objcopy", &["--only-keep-debug", name, &debug_name]);
    run(&dir, "strip", &["--strip-all", name]);
    if link {
        let arg = format!("--add-gnu-debuglink={debug_name}");
        run(&dir, "objcopy", &[&arg, name]);
    }
    Split {
        debug: dir.join(&debug_name),
        exe,
        dir,
        svma,
    }
}

/// The file offset of `svma` in `elf`, through its `PT_LOAD` headers.
fn file_offset(elf: &ElfFile, svma: u64) -> u64 {
    let seg = elf
        .load_segments()
        .iter()
        .find(|s| s.svma <= svma && svma - s.svma < s.file_size)
        .expect("svma in a PT_LOAD segment");
    seg.file_offset + (svma - seg.svma)
}

/// Symbolizes `fixture_static + 2` of `f` with debug files under `root`.
fn symbolize(f: &Split, root: &Path) -> (Symbolized, Symbolizer) {
    let mut s = Symbolizer::new().with_debug_root(root);
    let stripped = ElfFile::open(&f.exe).unwrap();
    assert!(!stripped.has_symtab_symbols());
    let off = file_offset(&stripped, f.svma + 2);
    assert_ne!(off, f.svma + 2, "file offset and SVMA must differ");
    (s.symbolize_file_offset(&f.exe, off), s)
}

fn expect_static(got: &Symbolized, name: &str) {
    match got {
        Symbolized::Sym(info) => {
            assert_eq!(
                (info.name.as_str(), info.dso.as_str(), info.offset),
                ("fixture_static", name, 2)
            );
            let loc = info
                .location
                .as_ref()
                .expect("DWARF comes from the debug file");
            assert!(loc.file.ends_with("prog.c"), "{loc:?}");
        }
        other => panic!("{other:?}"),
    }
}

fn build_id_path(root: &Path, exe: &Path) -> PathBuf {
    let id: String = ElfFile::open(exe)
        .unwrap()
        .build_id()
        .expect("-Wl,--build-id")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    root.join("usr/lib/debug/.build-id")
        .join(&id[..2])
        .join(format!("{}.debug", &id[2..]))
}

fn place(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::rename(from, to).unwrap();
}

#[test]
fn static_function_through_gnu_debuglink_in_each_directory() {
    if !have_tools() {
        skip!("gcc/objcopy/strip not found");
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let f = split(tmp.path(), "fx_link", 3, true);
    let link = ElfFile::open(&f.exe).unwrap();
    assert_eq!(
        link.debuglink().map(|l| l.name.clone()),
        Some(PathBuf::from("fx_link.debug"))
    );

    // DIR/NAME, DIR/.debug/NAME, ROOT/usr/lib/debug/DIR/NAME.
    let rel: PathBuf = f.dir.components().skip(1).collect();
    let places = [
        f.debug.clone(),
        f.dir.join(".debug/fx_link.debug"),
        root.join("usr/lib/debug").join(rel).join("fx_link.debug"),
    ];
    let mut at = f.debug.clone();
    for want in places {
        place(&at, &want);
        at = want.clone();
        let (got, mut s) = symbolize(&f, &root);
        expect_static(&got, "fx_link");
        let elf = s.file(&f.exe).unwrap();
        assert_eq!(elf.debug_file(), Some(want.as_path()));
        assert!(!elf.symbols_from_dynsym());
    }

    // Without a debug file the stripped executable has no function symbols at all.
    std::fs::remove_file(&at).unwrap();
    let (got, _) = symbolize(&f, &root);
    assert_eq!(
        got,
        Symbolized::Unknown(Reason::NoSymbols {
            dso: "fx_link".into()
        })
    );
}

#[test]
fn static_function_through_build_id_directory() {
    if !have_tools() {
        skip!("gcc/objcopy/strip not found");
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let f = split(tmp.path(), "fx_bid", 5, false);
    assert!(ElfFile::open(&f.exe).unwrap().debuglink().is_none());
    let at = build_id_path(&root, &f.exe);
    place(&f.debug, &at);

    let (got, mut s) = symbolize(&f, &root);
    expect_static(&got, "fx_bid");
    assert_eq!(s.file(&f.exe).unwrap().debug_file(), Some(at.as_path()));

    let mut elf = ElfFile::open(&f.exe).unwrap();
    let search = DebugDirs::with_root(&root).attach(&mut elf);
    assert_eq!(search.found, Some((at, Via::BuildId)));
    assert!(search.rejected.is_empty(), "{search:?}");
    assert!(!elf.wants_debug_file());
}

#[test]
fn mismatched_build_id_corrupt_file_and_bad_crc_are_refused() {
    if !have_tools() {
        skip!("gcc/objcopy/strip not found");
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let f = split(tmp.path(), "fx_main", 3, true);
    let other = split(tmp.path(), "fx_other", 7, false);
    let at = build_id_path(&root, &f.exe);
    assert_ne!(at, build_id_path(&root, &other.exe), "different builds");

    // Another build's debug file under our build ID: refused, then a bad-CRC debuglink file.
    place(&other.debug, &at);
    let mut bytes = std::fs::read(&f.debug).unwrap();
    bytes.extend_from_slice(b"tampered");
    std::fs::write(&f.debug, &bytes).unwrap();

    let mut elf = ElfFile::open(&f.exe).unwrap();
    let search = DebugDirs::with_root(&root).attach(&mut elf);
    assert_eq!(search.found, None);
    let why: Vec<(Via, &str)> = search
        .rejected
        .iter()
        .map(|r| (r.via, r.why.as_str()))
        .collect();
    assert_eq!(why.len(), 2, "{search:?}");
    assert_eq!(why[0].0, Via::BuildId);
    assert!(why[0].1.starts_with("build ID mismatch"), "{why:?}");
    assert_eq!(why[1].0, Via::DebugLink);
    assert!(why[1].1.starts_with("CRC-32"), "{why:?}");
    assert!(elf.wants_debug_file());

    let (got, _) = symbolize(&f, &root);
    assert_eq!(
        got,
        Symbolized::Unknown(Reason::NoSymbols {
            dso: "fx_main".into()
        })
    );

    // A corrupt file at the build-ID path: refused without a panic. The untampered debuglink
    // file behind it is then used.
    std::fs::write(&at, b"\x7fELF\x02\x01\x01\0garbage").unwrap();
    bytes.truncate(bytes.len() - b"tampered".len());
    std::fs::write(&f.debug, &bytes).unwrap();
    let mut elf = ElfFile::open(&f.exe).unwrap();
    let search = DebugDirs::with_root(&root).attach(&mut elf);
    assert_eq!(search.found, Some((f.debug.clone(), Via::DebugLink)));
    assert_eq!(search.rejected.len(), 1);
    assert!(
        search.rejected[0].why.contains("reading ELF file"),
        "{search:?}"
    );
    let (got, _) = symbolize(&f, &root);
    expect_static(&got, "fx_main");
}

/// This machine's libc, as mapped into the test process, with its libc6-dbg debug file.
#[test]
fn libc_start_thread_from_its_debug_file() {
    let maps = ProcMaps::read(std::process::id()).unwrap();
    let Some(libc) = maps.entries().iter().find_map(|m| match &m.path {
        hvprof_symbols::MapPath::File {
            path,
            deleted: false,
        } if path.file_name().is_some_and(|n| n == "libc.so.6") => Some(path.clone()),
        _ => None,
    }) else {
        eprintln!("SKIPPED: no libc.so.6 mapped (not a glibc system)");
        return;
    };
    let stripped = ElfFile::open(&libc).unwrap();
    if stripped.has_symtab_symbols() {
        eprintln!("SKIPPED: {} is not stripped", libc.display());
        return;
    }
    let mut probe = ElfFile::open(&libc).unwrap();
    let search = DebugDirs::with_root("/").attach(&mut probe);
    let Some((debug, _)) = search.found else {
        eprintln!(
            "SKIPPED: no debug file for {} (libc6-dbg): {search:?}",
            libc.display()
        );
        return;
    };
    let start_thread = ElfFile::open(&debug)
        .unwrap()
        .symbols()
        .find(|s| s.name == "start_thread")
        .expect("the debug file's .symtab has start_thread");
    let svma = start_thread.addr + start_thread.size.max(1) / 2;
    let off = file_offset(&stripped, svma);
    // The AVMA of that byte in this process.
    let avma = maps
        .entries()
        .iter()
        .find(|m| {
            matches!(&m.path, hvprof_symbols::MapPath::File { path, .. } if *path == libc)
                && m.offset <= off
                && off - m.offset < m.end - m.start
        })
        .map(|m| m.start + (off - m.offset))
        .expect("libc text is mapped");

    let without = Symbolizer::new()
        .with_debug_root(tempfile::tempdir().unwrap().path())
        .symbolize_user(&maps, avma);
    assert!(
        !matches!(&without, Symbolized::Sym(i) if i.name == "start_thread"),
        ".dynsym alone cannot name start_thread: {without:?}"
    );
    match Symbolizer::new()
        .with_source_locations(false)
        .symbolize_user(&maps, avma)
    {
        Symbolized::Sym(info) => {
            assert_eq!(info.name, "start_thread");
            assert_eq!(info.dso, "libc.so.6");
            assert_eq!(info.offset, svma - start_thread.addr);
        }
        other => panic!("{other:?}"),
    }
}

/// A library built without unwind tables has only `.debug_frame`, which stripping moves to the
/// debug file: the unwinder must take it from there.
const NOEH_C: &str = r#"
__attribute__((noinline)) int noeh_leaf(int x) { volatile int y = x * 3; return y; }
"#;

#[test]
fn unwinder_takes_debug_frame_from_the_debug_file() {
    if !have_tools() {
        skip!("gcc/objcopy/strip not found");
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("root");
    std::fs::write(dir.join("noeh.c"), NOEH_C).unwrap();
    run(
        dir,
        "gcc",
        &[
            "-shared",
            "-fPIC",
            "-g",
            "-O0",
            "-fno-omit-frame-pointer",
            "-fcf-protection=none",
            "-fno-asynchronous-unwind-tables",
            "-fno-unwind-tables",
            "-nostartfiles",
            "-Wl,--build-id",
            "-o",
            "libnoeh.so",
            "noeh.c",
        ],
    );
    let lib = dir.join("libnoeh.so");
    let full = ElfFile::open(&lib).unwrap();
    let entry = full
        .symbols()
        .find(|s| s.name == "noeh_leaf")
        .expect("noeh_leaf in .symtab")
        .addr;
    let entry_off = file_offset(&full, entry);
    drop(full);
    let bytes = std::fs::read(&lib).unwrap();
    assert_eq!(
        bytes[entry_off as usize], 0x55,
        "noeh_leaf starts with push %rbp"
    );
    run(
        dir,
        "objcopy",
        &["--only-keep-debug", "libnoeh.so", "libnoeh.so.debug"],
    );
    run(dir, "strip", &["--strip-all", "libnoeh.so"]);
    place(&dir.join("libnoeh.so.debug"), &build_id_path(&root, &lib));

    // Map the segment holding noeh_leaf at a page-aligned AVMA, as ld.so would.
    let stripped = ElfFile::open(&lib).unwrap();
    let seg = *stripped
        .load_segments()
        .iter()
        .find(|s| s.svma <= entry && entry - s.svma < s.file_size)
        .unwrap();
    let page = 0x1000;
    let svma_down = seg.svma & !(page - 1);
    let off_down = seg.file_offset & !(page - 1);
    let start = 0x7f00_0000_0000 + svma_down;
    let len = (seg.svma + seg.file_size - svma_down).div_ceil(page) * page;
    let inode = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&lib).unwrap().ino()
    };
    let maps = ProcMaps::parse(&format!(
        "{start:x}-{:x} r-xp {off_down:08x} 00:00 {inode} {}\n",
        start + len,
        lib.display()
    ))
    .unwrap();
    let avma = |svma: u64| start + (svma - svma_down);

    // Just after `push %rbp`: the CFI says the return address is at sp+8. The frame-pointer
    // rule would follow rbp to a different one.
    let sp = 0x7ffd_0000_0000u64;
    let (ra_cfi, ra_fp) = (avma(entry) + 0x40, avma(entry) + 0x80);
    let words = [0, ra_cfi, 0, 0, 0, ra_fp];
    let stack: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let regs = UserRegs {
        ip: avma(entry) + 1,
        sp,
        bp: sp + 32,
    };
    let caller = |dirs: DebugDirs| {
        let mut u = Unwinder::new().with_debug_dirs(dirs);
        let mut out = Vec::new();
        u.unwind(1, &maps, regs, &stack, 2, &mut out);
        out.get(1).copied()
    };
    assert_eq!(
        caller(DebugDirs::with_root(dir.join("empty"))),
        Some(ra_fp),
        "no CFI without the debug file: frame pointers"
    );
    assert_eq!(caller(DebugDirs::with_root(&root)), Some(ra_cfi));
}

//! ELF fixtures built with the system C compiler, where image base ≠ 0 and file offset ≠ SVMA
//! (STYLE.md §5): a non-PIE executable linked at 0x10000000, a PIE, and a shared library,
//! each run as a child process so their real `/proc/PID/maps` are used.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use hvprof_symbols::{ElfFile, ElfKind, ProcMaps, Reason, Symbolized, Symbolizer};

const LIB_C: &str = r#"
__attribute__((noinline, visibility("hidden"))) int fixture_lib_hidden(int x) { return x * 7 + 3; }
int fixture_lib_fn(int x) { return fixture_lib_hidden(x) + 1; }
/* A hidden symbol's address is its real one; a default-visibility function's address, taken
   in a non-PIE executable, is the executable's canonical PLT entry. */
void *fixture_lib_addr(void) { return (void *)&fixture_lib_hidden; }
"#;

const MAIN_C: &str = r#"
#include <stdio.h>
int fixture_lib_fn(int x);
void *fixture_lib_addr(void);
__attribute__((noinline)) int fixture_target(int x) { return x * 3 + 1; }
int main(void) {
    printf("%lx %lx %lx\n", (unsigned long)&fixture_target, (unsigned long)fixture_lib_addr(),
           (unsigned long)&fixture_lib_fn);
    fflush(stdout);
    int c = getchar(); /* wait until the test has read our maps */
    return fixture_target(c) + fixture_lib_fn(c) == 12345;
}
"#;

const BUILD_ID: &str = "0123456789abcdef0123456789abcdef01234567";

/// Builds `libfx.so` and an executable linked against it; `None` if there is no gcc.
fn build(dir: &Path, exe: &str, flags: &[&str]) -> Option<()> {
    if Command::new("gcc").arg("--version").output().is_err() {
        return None;
    }
    std::fs::write(dir.join("fixture_lib.c"), LIB_C).unwrap();
    std::fs::write(dir.join("fixture.c"), MAIN_C).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("gcc")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gcc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    if !dir.join("libfx.so").exists() {
        run(&[
            "-g",
            "-O1",
            "-shared",
            "-fPIC",
            "-o",
            "libfx.so",
            "fixture_lib.c",
        ]);
    }
    let build_id = format!("-Wl,--build-id=0x{BUILD_ID}");
    let mut args = vec![
        "-g",
        "-O1",
        &build_id,
        "-o",
        exe,
        "fixture.c",
        "-L.",
        "-lfx",
        "-Wl,-rpath,$ORIGIN",
    ];
    args.extend_from_slice(flags);
    run(&args);
    Some(())
}

/// The fixture's maps and the addresses it printed, read while it was alive.
struct Run {
    maps: ProcMaps,
    /// `&fixture_target` in the executable.
    target: u64,
    /// `&fixture_lib_hidden` in libfx.so.
    lib_hidden: u64,
    /// `&fixture_lib_fn` as the executable sees it (its PLT entry if non-PIE).
    lib_fn_ptr: u64,
}

fn run_fixture(exe: &Path) -> Run {
    let mut child = Command::new(exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut it = line
        .split_whitespace()
        .map(|h| u64::from_str_radix(h, 16).unwrap());
    let mut next = || it.next().unwrap();
    let (target, lib_hidden, lib_fn_ptr) = (next(), next(), next());
    let maps = ProcMaps::read(child.id()).unwrap();
    child.stdin.take().unwrap().write_all(b"x").unwrap();
    child.wait().unwrap();
    Run {
        maps,
        target,
        lib_hidden,
        lib_fn_ptr,
    }
}

fn expect_sym(s: &mut Symbolizer, maps: &ProcMaps, addr: u64, name: &str, dso: &str, file: &str) {
    match s.symbolize_user(maps, addr + 1) {
        Symbolized::Sym(info) => {
            assert_eq!(
                (info.name.as_str(), info.dso.as_str(), info.offset),
                (name, dso, 1)
            );
            let loc = info.location.expect("built with -g");
            assert!(loc.file.ends_with(file), "{loc:?}");
            assert!(loc.line.is_some());
        }
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn non_pie_executable_at_0x10000000() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["-no-pie", "-fno-pie", "-Wl,-Ttext-segment=0x10000000"];
    if build(dir.path(), "fx_nopie", &flags).is_none() {
        skip!("gcc not found");
    }
    let exe = dir.path().join("fx_nopie");
    let elf = ElfFile::open(&exe).unwrap();
    assert_eq!(elf.kind(), ElfKind::Executable);
    assert_eq!(hex(elf.build_id().unwrap()), BUILD_ID);
    assert!(
        elf.load_segments().iter().all(|s| s.svma >= 0x1000_0000),
        "{elf:?}"
    );

    let Run {
        maps,
        target,
        lib_hidden,
        lib_fn_ptr,
    } = run_fixture(&exe);
    // Non-PIE: the runtime address is the SVMA, and it is not the file offset.
    let map = maps.find(target).unwrap();
    let off = map.file_offset(target).unwrap();
    assert_eq!(elf.file_offset_to_svma(off), Some(target));
    assert_ne!(off, target);
    assert_eq!(elf.lookup_svma(target).unwrap().name, "fixture_target");

    let mut s = Symbolizer::new();
    expect_sym(
        &mut s,
        &maps,
        target,
        "fixture_target",
        "fx_nopie",
        "fixture.c",
    );
    expect_sym(
        &mut s,
        &maps,
        lib_hidden,
        "fixture_lib_hidden",
        "libfx.so",
        "fixture_lib.c",
    );
    // `&fixture_lib_fn` is the executable's PLT entry: no symbol covers `.plt` (the sizeless
    // `_init` before it must not swallow it).
    assert_eq!(
        s.symbolize_user(&maps, lib_fn_ptr),
        Symbolized::Unknown(Reason::NotInSymbolTable {
            dso: "fx_nopie".into()
        })
    );
}

#[test]
fn pie_executable_and_shared_library() {
    let dir = tempfile::tempdir().unwrap();
    if build(dir.path(), "fx_pie", &["-pie", "-fPIE"]).is_none() {
        skip!("gcc not found");
    }
    let exe = dir.path().join("fx_pie");
    let elf = ElfFile::open(&exe).unwrap();
    assert_eq!(elf.kind(), ElfKind::Dynamic);
    let Run {
        maps,
        target,
        lib_hidden,
        lib_fn_ptr,
    } = run_fixture(&exe);
    let map = maps.find(target).unwrap();
    let svma = elf
        .file_offset_to_svma(map.file_offset(target).unwrap())
        .unwrap();
    assert_ne!(svma, target, "PIE is loaded at a non-zero bias");
    assert_eq!(elf.lookup_svma(svma).unwrap().name, "fixture_target");

    let mut s = Symbolizer::new();
    expect_sym(
        &mut s,
        &maps,
        target,
        "fixture_target",
        "fx_pie",
        "fixture.c",
    );
    expect_sym(
        &mut s,
        &maps,
        lib_hidden,
        "fixture_lib_hidden",
        "libfx.so",
        "fixture_lib.c",
    );
    // In a PIE, a function pointer to a library function is its real address.
    expect_sym(
        &mut s,
        &maps,
        lib_fn_ptr,
        "fixture_lib_fn",
        "libfx.so",
        "fixture_lib.c",
    );
    let lib = s.file(&dir.path().join("libfx.so")).unwrap();
    assert_eq!(lib.kind(), ElfKind::Dynamic);
}

#[test]
fn stripped_library_falls_back_to_dynsym() {
    let dir = tempfile::tempdir().unwrap();
    if build(dir.path(), "fx", &[]).is_none() {
        skip!("gcc not found");
    }
    let lib = dir.path().join("libfx.so");
    let full = ElfFile::open(&lib).unwrap();
    assert!(!full.symbols_from_dynsym());
    assert!(full.has_debug_info());
    match Command::new("strip").arg(&lib).status() {
        Ok(st) if st.success() => {}
        _ => skip!("strip not available"),
    }
    let stripped = ElfFile::open(&lib).unwrap();
    assert!(stripped.symbols_from_dynsym());
    assert!(!stripped.has_debug_info());
    let svma = full
        .symbols()
        .find(|s| s.name == "fixture_lib_fn")
        .unwrap()
        .addr;
    assert_eq!(stripped.lookup_svma(svma).unwrap().name, "fixture_lib_fn");
    assert_eq!(stripped.location(svma), None);
}

#[test]
fn missing_and_garbage_files_are_unknown_not_errors() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.so");
    std::fs::write(&garbage, vec![0xa5u8; 4096]).unwrap();
    assert!(ElfFile::open(&garbage).is_err());
    let mut s = Symbolizer::new();
    for (path, dso, why) in [
        (garbage.clone(), "garbage.so", "not an ELF file"),
        (dir.path().join("missing.so"), "missing.so", "No such file"),
        (dir.path().to_path_buf(), "", "not a regular file"),
    ] {
        match s.symbolize_file_offset(&path, 0x1000) {
            Symbolized::Unknown(Reason::FileUnreadable { dso: d, why: w }) => {
                if !dso.is_empty() {
                    assert_eq!(d, dso);
                }
                assert!(w.contains(why), "{w}");
            }
            other => panic!("{path:?}: {other:?}"),
        }
    }
    assert_eq!(s.cached_files(), 3);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

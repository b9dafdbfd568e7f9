//! Passive-mode guest symbols for domains: each `--guest-kallsyms [DOMID=]FILE` is a
//! kallsyms/System.map file (the guest kernel) or a non-PIE ELF executable (a guest program
//! whose functions sit at their link addresses, such as a static workload); the files given
//! for one domain are merged into that domain's one symbol map.
//!
//! ```no_run
//! use hvprof::xen::guest_symbols::load_map;
//! let k = load_map(&["System.map".into(), "workload".into()])?;
//! # Ok::<(), hvprof::xen::XenError>(())
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};

use hvprof_symbols::{ElfFile, ElfKind, Kallsyms};

use super::error::{Result, XenError};

/// Symbols taken from one ELF at most.
const MAX_ELF_SYMBOLS: usize = 1 << 20;

fn bad(path: &Path, why: String) -> XenError {
    XenError::Read {
        path: path.to_path_buf(),
        source: std::io::Error::other(why),
    }
}

fn is_elf(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(|source| XenError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let n = f.read(&mut magic).unwrap_or(0);
    Ok(n == 4 && magic == *b"\x7fELF")
}

/// The kallsyms-format lines (`ADDR T NAME`) of a non-PIE ELF's functions.
///
/// # Errors
/// The file cannot be read as ELF, or is position-independent (its run-time bias is unknown
/// from dom0).
pub fn elf_as_kallsyms(path: &Path) -> Result<String> {
    let elf = ElfFile::open(path).map_err(|e| bad(path, crate::error_chain(&e)))?;
    if elf.kind() != ElfKind::Executable {
        return Err(bad(
            path,
            "not a non-PIE executable (ET_EXEC): a PIE or library is loaded at a bias hvprof cannot see from dom0; give its symbols as a System.map-style file at their run-time addresses".into(),
        ));
    }
    let mut s = String::new();
    for sym in elf.symbols().take(MAX_ELF_SYMBOLS) {
        if sym.addr == 0 || sym.name.is_empty() || sym.name.contains(char::is_whitespace) {
            continue;
        }
        s.push_str(&format!("{:016x} T {}\n", sym.addr, sym.name));
        if sym.size > 0 {
            // The function's end: a boundary, so an IP past it is not named after it.
            s.push_str(&format!(
                "{:016x} t .end.{}\n",
                sym.addr.saturating_add(sym.size),
                sym.name
            ));
        }
    }
    Ok(s)
}

/// One domain's symbol map from its files, merged.
///
/// # Errors
/// A file that cannot be read or parsed.
pub fn load_map(files: &[PathBuf]) -> Result<Kallsyms> {
    let mut text = String::new();
    for f in files {
        if is_elf(f)? {
            text.push_str(&elf_as_kallsyms(f)?);
        } else {
            let s = std::fs::read_to_string(f).map_err(|source| XenError::Read {
                path: f.clone(),
                source,
            })?;
            text.push_str(&s);
            if !text.ends_with('\n') {
                text.push('\n');
            }
        }
    }
    Kallsyms::parse(&text).map_err(|e| {
        let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        bad(Path::new(&names.join(" + ")), crate::error_chain(&e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_map_and_non_pie_elf_merge() {
        let d = tempfile::tempdir().unwrap();
        let map = d.path().join("System.map");
        std::fs::write(
            &map,
            "ffffffff81000000 T _text\nffffffff81001000 T do_idle\nffffffff81002000 T _etext\n",
        )
        .unwrap();
        let c = d.path().join("w.c");
        std::fs::write(
            &c,
            "__attribute__((noinline)) int hot_alpha(int x){return x*3+1;}\nint main(int c,char**v){return hot_alpha(c);}\n",
        )
        .unwrap();
        let exe = d.path().join("w");
        let ok = std::process::Command::new("gcc")
            .args(["-O1", "-no-pie", "-fno-pie", "-o"])
            .arg(&exe)
            .arg(&c)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipping: no gcc");
            return;
        }
        let text = elf_as_kallsyms(&exe).unwrap();
        let addr = text
            .lines()
            .find(|l| l.ends_with(" T hot_alpha"))
            .and_then(|l| u64::from_str_radix(&l[..16], 16).ok())
            .expect("hot_alpha in the ELF");
        let k = load_map(&[map.clone(), exe]).unwrap();
        assert_eq!(k.lookup(addr + 1).map(|s| s.name), Some("hot_alpha"));
        assert_eq!(
            k.lookup(0xffff_ffff_8100_1010).map(|s| s.name),
            Some("do_idle")
        );
        // A PIE is refused with the reason.
        let pie = std::env::current_exe().unwrap();
        let e = crate::error_chain(&elf_as_kallsyms(&pie).unwrap_err());
        assert!(e.contains("non-PIE"), "{e}");
        assert!(load_map(&[d.path().join("missing")]).is_err());
    }
}

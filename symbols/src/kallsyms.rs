//! Kernel symbol tables: `/proc/kallsyms` and `System.map`.
//!
//! Stage: kernel symbolization. Input: the text of `/proc/kallsyms` (host, or a guest's copy)
//! or a `System.map`. Output: a [`Kallsyms`] table answering "which function contains this
//! kernel virtual address" by binary search.
//!
//! # Format
//!
//! One symbol per line (see `Documentation/filesystems/proc.rst` and `kernel/kallsyms.c`,
//! `s_show()`; the type letters are those of `nm(1)`):
//!
//! ```text
//! ffffffff81000000 T _stext
//! ffffffffc0a01000 t vmx_vcpu_run\t[kvm_intel]
//! ```
//!
//! `ADDRESS` is 1–16 hex digits (a kernel virtual address), `TYPE` one letter, `NAME` the symbol,
//! and `/proc/kallsyms` appends `\t[MODULE]` for symbols of loadable modules (and pseudo-modules
//! such as `[bpf]`). `System.map`, written by `scripts/mksysmap` at build time, has the same
//! three columns and no module column.
//!
//! Only text symbols — types `T t W w` — become lookup targets. Other types (data, bss, rodata)
//! are kept only as *end boundaries*, because kallsyms has no sizes: a function is taken to end
//! at the next symbol of any kind, at the markers `_etext`/`_einittext`, or
//! [`MAX_SYMBOL_SPAN`] bytes after its start, whichever is first. Absolute (`A a`), undefined
//! (`U`) and debug (`N n`) symbols are ignored: on x86-64 the per-CPU variables are absolute
//! symbols near address 0.
//!
//! When the reader lacks privilege, `/proc/kallsyms` prints every address as zero
//! (`kernel.kptr_restrict`); that is reported as [`Error::AddressesHidden`].
//!
//! # Example
//!
//! ```no_run
//! # fn main() -> hvprof_symbols::Result<()> {
//! let ksyms = hvprof_symbols::Kallsyms::load("/proc/kallsyms")?;
//! if let Some(sym) = ksyms.lookup(0xffff_ffff_8100_0010) {
//!     println!("{}+{:#x} [{}]", sym.name, sym.offset, sym.module.unwrap_or("kernel"));
//! }
//! # Ok(())
//! # }
//! ```

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Longest distance, in bytes, from a kernel symbol's start at which an address is still
/// attributed to it when no later symbol bounds it (1 MiB; no kernel function is that large).
pub const MAX_SYMBOL_SPAN: u64 = 1 << 20;

const FORMAT: &str = "kallsyms";
const NO_MODULE: u32 = u32::MAX;

/// A kernel symbol table parsed from `/proc/kallsyms` or `System.map`.
///
/// Holds the text symbols (types `T t W w`) sorted by address, one per address (see
/// [`Kallsyms::parse`] for which alias wins), each with an estimated end.
#[derive(Debug, Clone)]
pub struct Kallsyms {
    /// `syms[i].addr`, searched alone so a lookup touches 8 bytes per probe, not 32.
    addrs: Vec<u64>,
    syms: Vec<Entry>,
    names: String,
    modules: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Start address (kernel virtual address).
    addr: u64,
    /// Exclusive end estimate (kernel virtual address).
    end: u64,
    name_start: u32,
    name_len: u32,
    /// Index into `modules`, or `NO_MODULE`.
    module: u32,
    /// Preference among aliases at one address: lower wins.
    rank: u8,
}

/// A kernel text symbol that contains a looked-up address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSym<'a> {
    /// The symbol name as printed by the kernel (kernel symbols are not mangled).
    pub name: &'a str,
    /// The module, without brackets (`kvm_intel`, `bpf`), or `None` for the core kernel.
    pub module: Option<&'a str>,
    /// The symbol's start (kernel virtual address).
    pub addr: u64,
    /// Bytes from `addr` to the looked-up address (0 from [`Kallsyms::iter`]).
    pub offset: u64,
}

impl Kallsyms {
    /// Parses kallsyms or System.map text (format in the [module docs](self)).
    ///
    /// Blank lines are skipped, as are symbols of non-text types (after recording their address
    /// as a boundary). Among aliases at one address the first-listed of the preferred type wins,
    /// in the order `T`, `t`, `W`, `w`.
    ///
    /// # Errors
    ///
    /// - [`Error::Parse`] (1-based line number, `path: None`) for a line with a malformed
    ///   address (not 1–16 hex digits), a type that is not one character, a missing name, a
    ///   module column not in `[...]`, or extra fields.
    /// - [`Error::AddressesHidden`] if every address is zero (`kptr_restrict`).
    /// - [`Error::NoSymbols`] if there is no text symbol (e.g. empty input).
    pub fn parse(text: &str) -> Result<Self> {
        parse_inner(text, None)
    }

    /// Reads and parses a kallsyms or System.map file, e.g. `/proc/kallsyms`.
    ///
    /// Reading the real `/proc/kallsyms` (~120k–250k lines) and parsing it takes tens of
    /// milliseconds in a release build, most of it in the kernel (see `benches/kallsyms.rs`).
    ///
    /// # Errors
    ///
    /// [`Error::Open`] / [`Error::Read`] naming `path`, then the errors of [`Kallsyms::parse`]
    /// with `path` filled in.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut file = std::fs::File::open(path).map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?;
        // procfs reports size 0; /proc/kallsyms is several MiB.
        let hint = file.metadata().map(|m| m.len()).unwrap_or(0);
        let cap = if hint == 0 {
            8 << 20
        } else {
            hint as usize + 1
        };
        let mut bytes = Vec::with_capacity(cap);
        file.read_to_end(&mut bytes).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        let text = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        parse_inner(&text, Some(path))
    }

    /// Number of text symbols in the table (after merging aliases).
    pub fn len(&self) -> usize {
        self.syms.len()
    }

    /// Whether the table has no text symbol. Always `false` for a table built by
    /// [`Kallsyms::parse`] or [`Kallsyms::load`], which reject such input.
    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }

    /// The text symbol containing `addr` (a kernel virtual address), by binary search.
    ///
    /// Returns `None` before the first symbol, at or past a symbol's estimated end (next
    /// symbol of any type, `_etext`, or [`MAX_SYMBOL_SPAN`]), and for addresses covered by a
    /// non-text symbol.
    pub fn lookup(&self, addr: u64) -> Option<KernelSym<'_>> {
        let idx = self.addrs.partition_point(|&a| a <= addr);
        let e = self.syms.get(idx.checked_sub(1)?)?;
        (addr < e.end).then(|| self.sym(e, addr - e.addr))
    }

    /// The module of the text symbol containing `addr`: `None` for the core kernel or when no
    /// symbol contains `addr` (see [`Kallsyms::lookup`]).
    pub fn module_of(&self, addr: u64) -> Option<&str> {
        self.lookup(addr).and_then(|s| s.module)
    }

    /// Kallsyms text holding only the symbols that contain `addrs`, each followed by a boundary
    /// line at its end, so that [`Kallsyms::lookup`] of those addresses in the parsed text gives
    /// the same symbols. A recording keeps this instead of the whole table: its report is right
    /// on another host or after a reboot, and fast. Addresses no symbol contains are left out.
    pub fn extract(&self, addrs: impl IntoIterator<Item = u64>) -> String {
        let mut idx: Vec<usize> = addrs
            .into_iter()
            .filter_map(|a| {
                let i = self.addrs.partition_point(|&x| x <= a).checked_sub(1)?;
                (a < self.syms.get(i)?.end).then_some(i)
            })
            .collect();
        idx.sort_unstable();
        idx.dedup();
        let mut out = String::with_capacity(idx.len() * 64);
        for i in idx {
            let e = &self.syms[i];
            let s = self.sym(e, 0);
            let ty = match e.rank {
                0 => 'T',
                1 => 't',
                2 => 'W',
                _ => 'w',
            };
            out.push_str(&format!("{:016x} {ty} {}", e.addr, s.name));
            if let Some(m) = s.module {
                out.push_str(&format!("\t[{m}]"));
            }
            out.push_str(&format!("\n{:016x} d .hvprof_end\n", e.end));
        }
        out
    }

    /// All text symbols in address order, with `offset` 0.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = KernelSym<'_>> + '_ {
        self.syms.iter().map(|e| self.sym(e, 0))
    }

    fn sym(&self, e: &Entry, offset: u64) -> KernelSym<'_> {
        let start = e.name_start as usize;
        KernelSym {
            name: &self.names[start..start + e.name_len as usize],
            module: self.modules.get(e.module as usize).map(String::as_str),
            addr: e.addr,
            offset,
        }
    }
}

/// One parsed line: address, type letter, name, module.
type Line<'a> = (u64, u8, &'a str, Option<&'a str>);

/// Splits one non-blank line; `Err` holds the reason.
fn parse_line(line: &str) -> std::result::Result<Option<Line<'_>>, String> {
    let mut it = line.split_ascii_whitespace();
    let Some(addr) = it.next() else {
        return Ok(None);
    };
    let ty = it.next().ok_or("missing symbol type")?;
    let name = it.next().ok_or("missing symbol name")?;
    let module = match it.next() {
        None => None,
        Some(m) => Some(
            m.strip_prefix('[')
                .and_then(|m| m.strip_suffix(']'))
                .filter(|m| !m.is_empty())
                .ok_or_else(|| format!("module column {m:?} is not `[name]`"))?,
        ),
    };
    if let Some(extra) = it.next() {
        return Err(format!("unexpected extra field {extra:?}"));
    }
    if addr.is_empty() || addr.len() > 16 || !addr.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("malformed address {addr:?} (want 1-16 hex digits)"));
    }
    let addr = u64::from_str_radix(addr, 16).map_err(|e| format!("address {addr:?}: {e}"))?;
    let &[ty] = ty.as_bytes() else {
        return Err(format!("symbol type {ty:?} is not one character"));
    };
    Ok(Some((addr, ty, name, module)))
}

fn text_rank(ty: u8) -> Option<u8> {
    match ty {
        b'T' => Some(0),
        b't' => Some(1),
        b'W' => Some(2),
        b'w' => Some(3),
        _ => None,
    }
}

fn parse_inner(text: &str, path: Option<&Path>) -> Result<Kallsyms> {
    let perr = |line: usize, reason: String| Error::Parse {
        format: FORMAT,
        path: path.map(Path::to_owned),
        line,
        reason,
    };
    let mut syms: Vec<Entry> = Vec::with_capacity(text.len() / 48);
    let mut bounds: Vec<u64> = Vec::new();
    let mut names = String::with_capacity(text.len() / 3);
    let mut modules: Vec<String> = Vec::new();
    let mut lines = 0usize;
    let mut nonzero = false;

    for (i, line) in text.lines().enumerate() {
        let (addr, ty, name, module) = match parse_line(line) {
            Ok(Some(l)) => l,
            Ok(None) => continue,
            Err(reason) => return Err(perr(i + 1, reason)),
        };
        lines += 1;
        nonzero |= addr != 0;
        let Some(rank) = text_rank(ty) else {
            if !matches!(ty, b'A' | b'a' | b'U' | b'N' | b'n') {
                bounds.push(addr);
            }
            continue;
        };
        if module.is_none() && (name == "_etext" || name == "_einittext") {
            bounds.push(addr);
            continue;
        }
        let module = match module {
            None => NO_MODULE,
            Some(m) => {
                // Modules come in contiguous runs: compare with the last one first.
                match modules.iter().rposition(|x| x == m) {
                    Some(idx) => idx as u32,
                    None => {
                        modules.push(m.to_owned());
                        (modules.len() - 1) as u32
                    }
                }
            }
        };
        let too_big = || perr(i + 1, "symbol table larger than 4 GiB".into());
        let name_start = u32::try_from(names.len()).map_err(|_| too_big())?;
        let name_len = u32::try_from(name.len()).map_err(|_| too_big())?;
        names.push_str(name);
        syms.push(Entry {
            addr,
            end: 0,
            name_start,
            name_len,
            module,
            rank,
        });
    }

    if lines > 0 && !nonzero {
        return Err(Error::AddressesHidden {
            path: path.map(Path::to_owned),
        });
    }
    if syms.is_empty() {
        return Err(Error::NoSymbols {
            format: FORMAT,
            path: path.map(Path::to_owned),
        });
    }

    // Stable: among equal (addr, rank) the first-listed alias stays first.
    syms.sort_by_key(|e| (e.addr, e.rank));
    syms.dedup_by_key(|e| e.addr);
    bounds.sort_unstable();

    let mut b = 0;
    for i in 0..syms.len() {
        let addr = syms[i].addr;
        while b < bounds.len() && bounds[b] <= addr {
            b += 1;
        }
        let mut end = addr.saturating_add(MAX_SYMBOL_SPAN);
        if let Some(next) = syms.get(i + 1) {
            end = end.min(next.addr);
        }
        if let Some(&next) = bounds.get(b) {
            end = end.min(next);
        }
        syms[i].end = end;
    }

    Ok(Kallsyms {
        addrs: syms.iter().map(|e| e.addr).collect(),
        syms,
        names,
        modules,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_extract_answers_its_addresses_alike() {
        let k = Kallsyms::parse(
            "ffffffff81000000 T _text\nffffffff81000100 t alpha\nffffffff81000200 T beta\n\
             ffffffff81000300 D some_data\nffffffffc0000000 t mod_fn\t[kvm]\nffffffffc0000100 t mod_next\t[kvm]\n",
        )
        .unwrap();
        let hits = [
            0xffff_ffff_8100_0150,
            0xffff_ffff_8100_0210,
            0xffff_ffff_c000_0010,
            0x10,
        ];
        let text = k.extract(hits);
        let e = Kallsyms::parse(&text).unwrap();
        for a in hits {
            let (x, y) = (k.lookup(a), e.lookup(a));
            assert_eq!(
                x.map(|s| (s.name, s.module, s.addr)),
                y.map(|s| (s.name, s.module, s.addr)),
                "{a:#x}"
            );
        }
        // Past beta's end (the data symbol): not beta in either.
        assert!(e.lookup(0xffff_ffff_8100_0310).is_none());
        assert_eq!(e.len(), 3, "only the symbols hit: {text}");
    }

    use super::*;

    const KALLSYMS: &str = "\
0000000000000000 A fixed_percpu_data
ffffffff81000000 T _stext
ffffffff81000000 t _text_alias
ffffffff81000040 T do_one_initcall
ffffffff81000100 W weak_fn
ffffffff81000180 D some_data
ffffffff81000200 T _etext
ffffffffc0a01000 t vmx_vcpu_run\t[kvm_intel]
ffffffffc0a01400 T vmx_exit\t[kvm_intel]
ffffffffc0c00000 t bpf_prog_abc\t[bpf]
";

    #[test]
    fn table_lookups() {
        let k = Kallsyms::parse(KALLSYMS).unwrap();
        assert_eq!(k.len(), 6);
        type Want = Option<(&'static str, Option<&'static str>, u64)>;
        let cases: &[(u64, Want)] = &[
            (0xffff_ffff_80ff_ffff, None),                         // before first
            (0xffff_ffff_8100_0000, Some(("_stext", None, 0))),    // start; T beats t
            (0xffff_ffff_8100_003f, Some(("_stext", None, 0x3f))), // last byte
            (0xffff_ffff_8100_0040, Some(("do_one_initcall", None, 0))), // next start
            (0xffff_ffff_8100_0150, Some(("weak_fn", None, 0x50))), // middle of W
            (0xffff_ffff_8100_0180, None),                         // data symbol
            (0xffff_ffff_8100_01ff, None),                         // still data
            (0xffff_ffff_8100_0200, None),                         // _etext
            (
                0xffff_ffff_c0a0_1010,
                Some(("vmx_vcpu_run", Some("kvm_intel"), 0x10)),
            ),
            (
                0xffff_ffff_c0a0_1500,
                Some(("vmx_exit", Some("kvm_intel"), 0x100)),
            ),
            (
                0xffff_ffff_c0c0_0008,
                Some(("bpf_prog_abc", Some("bpf"), 8)),
            ),
            (
                0xffff_ffff_c0c0_0000 + MAX_SYMBOL_SPAN - 1,
                Some(("bpf_prog_abc", Some("bpf"), MAX_SYMBOL_SPAN - 1)),
            ),
            (0xffff_ffff_c0c0_0000 + MAX_SYMBOL_SPAN, None), // past the cap
            (u64::MAX, None),
        ];
        for &(addr, want) in cases {
            let got = k.lookup(addr).map(|s| (s.name, s.module, s.offset));
            assert_eq!(got, want, "addr {addr:#x}");
        }
        // vmx_exit's span is capped by the 1 MiB limit, not by bpf_prog_abc's far-away start.
        assert!(k.lookup(0xffff_ffff_c0a0_1400 + MAX_SYMBOL_SPAN).is_none());
        assert_eq!(k.module_of(0xffff_ffff_c0a0_1010), Some("kvm_intel"));
        assert_eq!(k.module_of(0xffff_ffff_8100_0040), None);
    }

    #[test]
    fn iter_in_address_order() {
        let k = Kallsyms::parse(KALLSYMS).unwrap();
        let names: Vec<_> = k.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "_stext",
                "do_one_initcall",
                "weak_fn",
                "vmx_vcpu_run",
                "vmx_exit",
                "bpf_prog_abc"
            ]
        );
        assert!(k.iter().all(|s| s.offset == 0));
        assert!(!k.is_empty());
    }

    #[test]
    fn system_map_unsorted_without_modules() {
        let k = Kallsyms::parse(
            "ffffffff81000200 T second\nffffffff81000100 T first\n\nffffffff81000300 r rodata\n",
        )
        .unwrap();
        assert_eq!(k.lookup(0xffff_ffff_8100_01ff).unwrap().name, "first");
        let s = k.lookup(0xffff_ffff_8100_0280).unwrap();
        assert_eq!(
            (s.name, s.module, s.addr, s.offset),
            ("second", None, 0xffff_ffff_8100_0200, 0x80)
        );
        assert!(k.lookup(0xffff_ffff_8100_0300).is_none());
    }

    #[test]
    fn short_addresses_and_crlf() {
        let k = Kallsyms::parse("1000 T a\r\n2000 T b\r\n").unwrap();
        assert_eq!(k.lookup(0x1fff).unwrap().name, "a");
    }

    #[test]
    fn malformed_lines_are_line_numbered() {
        let cases = [
            (
                "ffffffff81000000 T ok\nzzzz T bad\n",
                2,
                "malformed address",
            ),
            (
                "ffffffff81000000 T ok\n+fff T bad\n",
                2,
                "malformed address",
            ),
            ("11112222333344445 T too_long\n", 1, "malformed address"),
            ("ffffffff81000000\n", 1, "missing symbol type"),
            ("ffffffff81000000 T\n", 1, "missing symbol name"),
            ("ffffffff81000000 TT x\n", 1, "not one character"),
            ("ffffffff81000000 T x kvm\n", 1, "module column"),
            ("ffffffff81000000 T x [kvm] y\n", 1, "extra field"),
        ];
        for (text, line, reason) in cases {
            match Kallsyms::parse(text) {
                Err(Error::Parse {
                    line: l,
                    reason: r,
                    path: None,
                    ..
                }) => {
                    assert_eq!(l, line, "{text:?}");
                    assert!(r.contains(reason), "{text:?}: {r}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn empty_and_data_only_have_no_symbols() {
        for text in ["", "\n\n", "ffffffff82000000 D data_only\n"] {
            assert!(
                matches!(
                    Kallsyms::parse(text),
                    Err(Error::NoSymbols { path: None, .. })
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn all_zero_addresses_are_hidden() {
        let text = "0000000000000000 T _stext\n0000000000000000 t foo\t[kvm]\n";
        let e = Kallsyms::parse(text).unwrap_err();
        assert!(matches!(e, Error::AddressesHidden { path: None }), "{e:?}");
        assert!(e.to_string().contains("kptr_restrict"));
    }
}

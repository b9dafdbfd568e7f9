//! Guest symbols: kallsyms and modules, the symbol tables of mapped files (begun, filled in
//! chunks, ended), their handlers, and the lookups that name a guest kernel or guest user
//! address.

use hvprof_proto::{self as proto, Segment, WireSymbol};
use hvprof_symbols::{demangle, Kallsyms};

use super::{limit, GuestModel, ModelError};
use crate::active::symtab::{file_offset_to_svma, SymbolTable};
use crate::attribute::Symbol;
use hvprof_perf::CpuMode;

/// A guest file's symbol table, complete or still arriving.
#[derive(Debug)]
pub(super) struct Table {
    /// The file's build-id (raw bytes; may be empty).
    build_id: Vec<u8>,
    /// The guest's path (a label).
    path: String,
    /// PT_LOAD segments, to turn file offsets into SVMAs.
    segments: Vec<Segment>,
    /// Symbols received before the end.
    pending: Vec<WireSymbol>,
    /// The table, once ended.
    table: Option<SymbolTable>,
}

impl GuestModel {
    /// A chunk of `/proc/kallsyms` text.
    pub(super) fn on_kallsyms_chunk(&mut self, b: &[u8]) -> Result<(), ModelError> {
        if self.kallsyms_text.len() + b.len() > self.budget.max_kallsyms_bytes {
            return Err(limit(format!(
                "guest kallsyms larger than {} MiB",
                self.budget.max_kallsyms_bytes >> 20
            )));
        }
        self.charge(b.len())?;
        self.kallsyms_text.extend_from_slice(b);
        Ok(())
    }

    /// The end of kallsyms (`total` bytes sent): parses it; unparsable text is a note.
    pub(super) fn on_kallsyms_end(&mut self, total: u64) -> Result<(), ModelError> {
        let text = std::mem::take(&mut self.kallsyms_text);
        self.bytes = self.bytes.saturating_sub(text.len());
        if total != text.len() as u64 {
            return Err(ModelError::Sequence(format!(
                "kallsyms end says {total} bytes, {} received",
                text.len()
            )));
        }
        let s = String::from_utf8_lossy(&text);
        match Kallsyms::parse(&s) {
            Ok(k) => {
                self.charge(k.len() * 40)?;
                self.kallsyms = Some(k);
            }
            Err(e) => {
                self.note(format!(
                    "guest kallsyms unusable: {}",
                    crate::error_chain(&e)
                ));
            }
        }
        Ok(())
    }

    /// The guest's modules (replaces the previous list).
    pub(super) fn on_modules(&mut self, m: Vec<proto::Module>) -> Result<(), ModelError> {
        self.charge(m.len() * 64)?;
        self.modules = m;
        Ok(())
    }

    /// The start of a symbol table for `file_key`; a table already complete is kept (re-sent
    /// after a reconnect).
    pub(super) fn on_symtab_begin(
        &mut self,
        file_key: Vec<u8>,
        build_id: Vec<u8>,
        path: String,
        segments: Vec<Segment>,
        symbol_count: u32,
    ) -> Result<(), ModelError> {
        if symbol_count as usize > self.budget.max_symbols_per_table {
            return Err(limit(format!(
                "symbol table of {path} announces {symbol_count} symbols (limit {})",
                self.budget.max_symbols_per_table
            )));
        }
        if !self.tables.contains_key(&file_key) && self.tables.len() >= self.budget.max_tables {
            return Err(limit(format!(
                "more than {} symbol tables",
                self.budget.max_tables
            )));
        }
        self.charge(path.len() + segments.len() * 32 + 128)?;
        if self
            .tables
            .get(&file_key)
            .is_some_and(|t| t.table.is_some())
        {
            self.stats.ignored += 1;
            return Ok(());
        }
        self.tables.insert(
            file_key,
            Table {
                build_id,
                path,
                segments,
                pending: Vec::new(),
                table: None,
            },
        );
        Ok(())
    }

    /// Symbols of the table being received for `file_key`.
    pub(super) fn on_symtab_chunk(
        &mut self,
        file_key: &[u8],
        symbols: Vec<WireSymbol>,
    ) -> Result<(), ModelError> {
        let max = self.budget.max_symbols_per_table;
        let add: usize = symbols.iter().map(|s| s.name.len() + 40).sum();
        let Some(t) = self.tables.get_mut(file_key) else {
            return Err(ModelError::Sequence(
                "symbol chunk for a table that was never begun".into(),
            ));
        };
        if t.table.is_some() {
            self.stats.ignored += 1;
            return Ok(());
        }
        if t.pending.len() + symbols.len() > max {
            return Err(limit(format!(
                "symbol table of {} has more than {max} symbols",
                t.path
            )));
        }
        t.pending.extend(symbols);
        self.charge(add)
    }

    /// The end of the table for `file_key`: it becomes usable.
    pub(super) fn on_symtab_end(&mut self, file_key: &[u8]) -> Result<(), ModelError> {
        let Some(t) = self.tables.get_mut(file_key) else {
            return Err(ModelError::Sequence(
                "symbol table end for a table that was never begun".into(),
            ));
        };
        if t.table.is_some() {
            self.stats.ignored += 1;
            return Ok(());
        }
        let pending = std::mem::take(&mut t.pending);
        let n = pending.len();
        let table = SymbolTable::from_entries(
            pending
                .into_iter()
                .map(|s| (s.start, s.size, s.name))
                .collect(),
        );
        t.table = Some(table);
        self.stats.tables += 1;
        self.stats.symbols += n as u64;
        Ok(())
    }

    /// Guest kernel symbols, when received and parsed.
    pub fn kallsyms(&self) -> Option<&Kallsyms> {
        self.kallsyms.as_ref()
    }

    /// Guest kernel modules.
    pub fn modules(&self) -> &[proto::Module] {
        &self.modules
    }

    /// Number of complete symbol tables.
    pub fn table_count(&self) -> usize {
        self.tables.values().filter(|t| t.table.is_some()).count()
    }

    /// Complete symbol tables: `(guest path, build-id in hex, symbols)`, by path.
    pub fn tables(&self) -> Vec<(String, String, usize)> {
        let mut v: Vec<(String, String, usize)> = self
            .tables
            .values()
            .filter_map(|t| {
                let n = t.table.as_ref()?.len();
                let hex = t.build_id.iter().map(|b| format!("{b:02x}")).collect();
                Some((t.path.clone(), hex, n))
            })
            .collect();
        v.sort();
        v
    }

    /// Resolves a guest kernel address (`ip`: guest virtual).
    pub fn kernel_symbol(&self, ip: u64) -> Symbol {
        match &self.kallsyms {
            None => Symbol::unknown(
                ip,
                "[guest.kernel]",
                "no guest kallsyms from the helper (kptr_restrict?)",
            ),
            Some(k) => match k.lookup(ip) {
                Some(s) => Symbol::named(
                    s.name,
                    crate::attribute::guest_dso(s.module, CpuMode::GuestKernel),
                ),
                None => Symbol::unknown(ip, "[guest.kernel]", "address outside guest kallsyms"),
            },
        }
    }

    /// Resolves a guest user address (`ip`: guest virtual) of process `pid` at guest time
    /// `time`.
    pub fn user_symbol(&self, pid: u32, ip: u64, time: u64) -> Symbol {
        let Some(m) = self.find_map(pid, ip, time) else {
            return Symbol::unknown(ip, "[guest.user]", "no guest map contains the address");
        };
        let dso = m
            .path
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or(&m.path)
            .to_string();
        let dso = if dso.is_empty() {
            "[guest.user]".to_string()
        } else {
            dso
        };
        if m.key.is_empty() {
            return Symbol::unknown(ip, dso, "the helper sent no symbol table for this file");
        }
        let Some(t) = self.tables.get(&m.key) else {
            return Symbol::unknown(ip, dso, "symbol table announced but never sent");
        };
        let Some(table) = &t.table else {
            return Symbol::unknown(ip, dso, "symbol table incomplete (connection ended)");
        };
        let off = ip.wrapping_sub(m.start).wrapping_add(m.pgoff);
        let Some(svma) = file_offset_to_svma(&t.segments, off) else {
            return Symbol::unknown(ip, dso, "file offset outside the file's segments");
        };
        match table.lookup(svma) {
            Some((name, _)) => Symbol::named(demangle(name), dso),
            None => Symbol::unknown(ip, dso, "no symbol at this address in the guest file"),
        }
    }
}

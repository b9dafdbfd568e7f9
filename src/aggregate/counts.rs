//! The aggregator's storage: interned symbols ([`SymbolTable`]), per-bucket counts
//! ([`Counts`]) and the per-thread index ([`ThreadTable`]).

use rustc_hash::FxHashMap;

use super::stacks::{StackCounts, StackKey};
use crate::attribute::{Class, Symbol};

/// An interned [`Symbol`]: its index in the aggregator's [`SymbolTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SymId(u32);

impl SymId {
    /// No symbol (the stack tree's root).
    pub(crate) const NONE: SymId = SymId(u32::MAX);

    /// The table index.
    pub(crate) fn raw(self) -> u32 {
        self.0
    }
}

/// Every distinct symbol seen, each stored once; samples refer to them by [`SymId`], so the
/// per-sample path hashes a small integer key, never a string.
#[derive(Debug, Default, Clone)]
pub struct SymbolTable {
    syms: Vec<Symbol>,
    index: FxHashMap<Symbol, SymId>,
}

impl SymbolTable {
    /// The id of `sym`, adding it on first sight.
    pub fn intern(&mut self, sym: &Symbol) -> SymId {
        if let Some(&id) = self.index.get(sym) {
            return id;
        }
        let id = SymId(self.syms.len() as u32);
        self.syms.push(sym.clone());
        self.index.insert(sym.clone(), id);
        id
    }

    /// The symbol of `id`.
    pub fn get(&self, id: SymId) -> &Symbol {
        &self.syms[id.0 as usize]
    }

    /// Distinct symbols.
    pub fn len(&self) -> usize {
        self.syms.len()
    }

    /// True before the first symbol.
    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }
}

/// Samples, period, losses and per-(class, landing, symbol) counts of one bucket (a thread, a
/// VM, a guest process).
#[derive(Debug, Default, Clone)]
pub(crate) struct Counts {
    /// The process of the first sample (places a thread unknown to the machines in its VM).
    pub(super) pid: Option<i32>,
    pub(crate) samples: u64,
    pub(crate) period: u64,
    pub(super) lost: u64,
    pub(super) throttled: u64,
    /// (class, landing, symbol) → (samples, period).
    by_symbol: FxHashMap<Key, (u64, u64)>,
    /// Samples by stack (only samples that went through [`Counts::add_stack`]).
    pub(crate) stacks: StackCounts,
}

/// A bucket of [`Counts`]: hashed as one packed u64 (one multiply with Fx, not three).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    class: Class,
    landing: bool,
    sym: SymId,
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u64(
            (self.class as u64) << 33 | u64::from(self.landing) << 32 | u64::from(self.sym.0),
        );
    }
}

impl Counts {
    /// Adds one sample of `period` events.
    pub(crate) fn add(&mut self, class: Class, landing: bool, sym: SymId, period: u64) {
        // Saturating: periods and counts may come from a recording, which is untrusted input.
        self.samples = self.samples.saturating_add(1);
        self.period = self.period.saturating_add(period);
        let e = self
            .by_symbol
            .entry(Key {
                class,
                landing,
                sym,
            })
            .or_default();
        e.0 = e.0.saturating_add(1);
        e.1 = e.1.saturating_add(period);
    }

    /// Adds the stack of a sample already counted by [`Counts::add`].
    pub(crate) fn add_stack(&mut self, key: StackKey, period: u64) {
        let e = self.stacks.entry(key).or_default();
        e.0 = e.0.saturating_add(1);
        e.1 = e.1.saturating_add(period);
    }

    pub(super) fn merge(&mut self, o: &Counts) {
        self.samples = self.samples.saturating_add(o.samples);
        self.period = self.period.saturating_add(o.period);
        self.lost = self.lost.saturating_add(o.lost);
        self.throttled = self.throttled.saturating_add(o.throttled);
        for (k, (n, p)) in &o.by_symbol {
            let e = self.by_symbol.entry(*k).or_default();
            e.0 = e.0.saturating_add(*n);
            e.1 = e.1.saturating_add(*p);
        }
        for (k, (n, p)) in &o.stacks {
            let e = self.stacks.entry(*k).or_default();
            e.0 = e.0.saturating_add(*n);
            e.1 = e.1.saturating_add(*p);
        }
    }

    /// Whether any sample of class `class` was counted.
    pub(super) fn has_class(&self, class: Class) -> bool {
        self.by_symbol.keys().any(|k| k.class == class)
    }

    /// Every (effective class, symbol, samples, period) with the hidden-guest policy applied.
    pub(crate) fn rows(&self, hide: bool) -> impl Iterator<Item = (Class, SymId, u64, u64)> + '_ {
        self.by_symbol
            .iter()
            .map(move |(k, (n, p))| (k.class.effective(k.landing, hide), k.sym, *n, *p))
    }
}

/// Per-thread counts: an index by tid, and the last thread used (samples come in runs of one
/// thread, a ring's drain at a time), so most samples find their thread without hashing.
#[derive(Debug, Default)]
pub(super) struct ThreadTable {
    index: FxHashMap<i32, usize>,
    counts: Vec<(i32, Counts)>,
    last: Option<(i32, usize)>,
}

impl ThreadTable {
    pub(super) fn get_mut(&mut self, tid: i32) -> &mut Counts {
        let i = match self.last {
            Some((t, i)) if t == tid => i,
            _ => {
                let counts = &mut self.counts;
                let i = *self.index.entry(tid).or_insert_with(|| {
                    counts.push((tid, Counts::default()));
                    counts.len() - 1
                });
                self.last = Some((tid, i));
                i
            }
        };
        &mut self.counts[i].1
    }

    pub(super) fn get(&self, tid: i32) -> Option<&Counts> {
        Some(&self.counts[*self.index.get(&tid)?].1)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &(i32, Counts)> {
        self.counts.iter()
    }
}

//! Call stacks in the aggregator: one prefix tree of frames ([`StackTable`], like perf's
//! callchain cursor → `callchain_node` tree) shared by every thread, and per-bucket counts by
//! leaf node ([`StackCounts`]). A sample's stack costs one hash lookup per frame; the tree
//! keeps each distinct path once, so a million samples of a few hundred paths stay small.
//!
//! Snapshots turn the counts into [`StackRow`]s (frames root first) and inclusive
//! ("children") counts per symbol: each sample counts once for every distinct symbol in its
//! stack, as `perf report --children` does.

use rustc_hash::{FxHashMap, FxHashSet};

use super::counts::{Counts, SymId, SymbolTable};
use crate::attribute::Class;
use crate::report::{Frame, StackOrigin, StackRow};

/// A node of the stack tree: an index in [`StackTable`]; 0 is the root (no frame).
pub type NodeId = u32;

/// The root of the tree (above every outermost caller).
const ROOT: NodeId = 0;

/// Frames deeper than this are cut at the root end (perf's default `kernel.perf_event_max_stack`
/// is 127; hvprof joins kernel and user stacks, so it keeps twice that).
pub const MAX_FRAMES: usize = 256;

#[derive(Debug, Clone, Copy)]
struct Node {
    parent: NodeId,
    class: Class,
    sym: SymId,
}

/// Every distinct call path seen, as a tree of (class, symbol) frames.
#[derive(Debug, Clone)]
pub struct StackTable {
    nodes: Vec<Node>,
    index: FxHashMap<(NodeId, u64), NodeId>,
}

impl Default for StackTable {
    fn default() -> StackTable {
        StackTable {
            nodes: vec![Node {
                parent: ROOT,
                class: Class::Unknown,
                sym: SymId::NONE,
            }],
            index: FxHashMap::default(),
        }
    }
}

impl StackTable {
    /// The node for frame (`class`, `sym`) called from `parent`, added on first sight.
    fn child(&mut self, parent: NodeId, class: Class, sym: SymId) -> NodeId {
        let key = (parent, (class as u64) << 32 | u64::from(sym.raw()));
        if let Some(&n) = self.index.get(&key) {
            return n;
        }
        let n = self.nodes.len() as NodeId;
        self.nodes.push(Node { parent, class, sym });
        self.index.insert(key, n);
        n
    }

    /// The leaf node of the path `leaf` ← `callers[0]` ← `callers[1]` ← …: `callers` nearest
    /// caller first (a callchain's order), cut to [`MAX_FRAMES`] at the root end.
    pub fn intern(&mut self, leaf: (Class, SymId), callers: &[(Class, SymId)]) -> NodeId {
        let keep = callers.len().min(MAX_FRAMES - 1);
        let mut n = ROOT;
        for &(class, sym) in callers[..keep].iter().rev() {
            n = self.child(n, class, sym);
        }
        self.child(n, leaf.0, leaf.1)
    }

    /// The frames of `leaf`'s path, root first, into `out` (cleared first).
    fn path(&self, leaf: NodeId, out: &mut Vec<(Class, SymId)>) {
        out.clear();
        let mut n = leaf;
        // Bounded: a node's parent always has a smaller index.
        while n != ROOT {
            let Some(node) = self.nodes.get(n as usize) else {
                break;
            };
            out.push((node.class, node.sym));
            n = node.parent;
        }
        out.reverse();
    }

    /// Distinct paths (nodes) so far.
    pub fn len(&self) -> usize {
        self.nodes.len() - 1
    }

    /// True before the first stack.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What one bucket's stack was: its leaf node, whether the leaf landed in the guest-interrupt
/// path, and whether the sample had no callchain (a one-frame stack).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StackKey {
    /// The leaf's node.
    pub leaf: NodeId,
    /// The leaf sample's `landing` flag (see [`crate::attribute::Attributed::landing`]).
    pub landing: bool,
    /// No callchain came with the sample.
    pub leaf_only: bool,
}

/// Per-bucket stack counts: [`StackKey`] → (samples, period).
pub type StackCounts = FxHashMap<StackKey, (u64, u64)>;

/// Inclusive counts of a bucket: (effective class, symbol) → samples with that frame anywhere
/// in their stack (each sample counted once per distinct frame).
pub(crate) fn inclusive(
    c: &Counts,
    table: &StackTable,
    hide: bool,
) -> FxHashMap<(Class, SymId), u64> {
    let mut out: FxHashMap<(Class, SymId), u64> = FxHashMap::default();
    let mut path = Vec::new();
    let mut seen = FxHashSet::default();
    for (k, (n, _)) in &c.stacks {
        table.path(k.leaf, &mut path);
        seen.clear();
        let last = path.len().saturating_sub(1);
        for (i, &(class, sym)) in path.iter().enumerate() {
            let class = if i == last {
                class.effective(k.landing, hide)
            } else {
                class
            };
            if seen.insert((class, sym)) {
                let e = out.entry((class, sym)).or_default();
                *e = e.saturating_add(*n);
            }
        }
    }
    out
}

/// Who a bucket's stacks belong to, for their rows.
pub(crate) struct StackOwner<'a> {
    /// Host thread id.
    pub tid: i32,
    /// vCPU index.
    pub vcpu: Option<u32>,
    /// Thread name.
    pub name: &'a str,
}

/// The stack rows of bucket `c`: its recorded stacks, or — when no sample of it carried a
/// callchain — one-frame stacks from its symbol counts (marked `leaf_only`).
pub(crate) fn stack_rows(
    c: &Counts,
    table: &StackTable,
    symbols: &SymbolTable,
    hide: bool,
    owner: &StackOwner<'_>,
    out: &mut Vec<StackRow>,
) {
    let row = |frames: Vec<Frame>, leaf_only: bool, samples: u64, period: u64| StackRow {
        tid: owner.tid,
        vcpu: owner.vcpu,
        thread_name: owner.name.to_string(),
        guest: None,
        origin: StackOrigin::Host,
        frames,
        leaf_only,
        samples,
        period,
    };
    if c.stacks.is_empty() {
        let mut merged: FxHashMap<(Class, SymId), (u64, u64)> = FxHashMap::default();
        for (class, sym, n, p) in c.rows(hide) {
            let e = merged.entry((class, sym)).or_default();
            e.0 = e.0.saturating_add(n);
            e.1 = e.1.saturating_add(p);
        }
        for ((class, sym), (n, p)) in merged {
            let f = Frame {
                class,
                symbol: symbols.get(sym).clone(),
            };
            out.push(row(vec![f], true, n, p));
        }
        return;
    }
    let mut path = Vec::new();
    // (frames root first, leaf_only) → (samples, period): landing and non-landing leaves of one
    // path merge once the hidden-guest policy has been applied.
    type Path = (Vec<(Class, SymId)>, bool);
    let mut merged: FxHashMap<Path, (u64, u64)> = FxHashMap::default();
    for (k, (n, p)) in &c.stacks {
        table.path(k.leaf, &mut path);
        if let Some(leaf) = path.last_mut() {
            leaf.0 = leaf.0.effective(k.landing, hide);
        }
        let e = merged.entry((path.clone(), k.leaf_only)).or_default();
        e.0 = e.0.saturating_add(*n);
        e.1 = e.1.saturating_add(*p);
    }
    for ((frames, leaf_only), (n, p)) in merged {
        let frames = frames
            .into_iter()
            .map(|(class, sym)| Frame {
                class,
                symbol: symbols.get(sym).clone(),
            })
            .collect();
        out.push(row(frames, leaf_only, n, p));
    }
}

/// Sorts stack rows most samples first, then by frames (stable output).
pub(crate) fn sort_rows(rows: &mut [StackRow]) {
    rows.sort_by(|a, b| {
        b.samples
            .cmp(&a.samples)
            .then_with(|| a.tid.cmp(&b.tid))
            .then_with(|| {
                let names = |r: &StackRow| -> Vec<String> {
                    r.frames.iter().map(|f| f.symbol.display_name()).collect()
                };
                names(a).cmp(&names(b))
            })
    });
}

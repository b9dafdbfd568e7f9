//! Reading xenstore: libxenstore in dom0 ([`super::ffi::XenStoreLib`]), or a directory tree
//! laid out like `xenstore-ls` paths ([`DirStore`], fixtures and captures).
//!
//! ```no_run
//! use hvprof::xen::xenstore::{DirStore, Store};
//! let s = DirStore::new("tests/fixtures/xenstore");
//! let names = s.list("/local/domain");
//! ```

use std::path::{Path, PathBuf};

use super::ffi::XenStoreLib;

/// Bytes of one value read from a [`DirStore`] file (xenstore values are at most 4 KiB).
const MAX_VALUE: u64 = 4096;

/// Read access to a xenstore tree.
pub trait Store {
    /// The value at `path` (`/local/domain/1/name`), trimmed of a trailing newline.
    fn read(&self, path: &str) -> Option<String>;
    /// The children of `path`, sorted; empty when absent.
    fn list(&self, path: &str) -> Vec<String>;
}

impl Store for XenStoreLib {
    fn read(&self, path: &str) -> Option<String> {
        XenStoreLib::read(self, path).map(|v| v.trim_end_matches(['\n', '\0']).to_string())
    }

    fn list(&self, path: &str) -> Vec<String> {
        let mut v = self.directory(path);
        v.sort();
        v
    }
}

/// A xenstore tree as directories and files: `ROOT/local/domain/1/name` holds the value of
/// `/local/domain/1/name`. A node with both a value and children keeps its value in a file
/// named `.value` inside its directory.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// A tree under `root`.
    pub fn new(root: impl Into<PathBuf>) -> DirStore {
        DirStore { root: root.into() }
    }

    fn path(&self, p: &str) -> Option<PathBuf> {
        let rel = p.trim_start_matches('/');
        if rel.split('/').any(|c| c == ".." || c == ".") {
            return None;
        }
        Some(self.root.join(rel))
    }
}

fn read_small(p: &Path) -> Option<String> {
    use std::io::Read;
    let f = std::fs::File::open(p).ok()?;
    let mut s = String::new();
    f.take(MAX_VALUE).read_to_string(&mut s).ok()?;
    Some(s.trim_end_matches('\n').to_string())
}

impl Store for DirStore {
    fn read(&self, path: &str) -> Option<String> {
        let p = self.path(path)?;
        if p.is_dir() {
            return read_small(&p.join(".value"));
        }
        read_small(&p)
    }

    fn list(&self, path: &str) -> Vec<String> {
        let Some(p) = self.path(path) else {
            return Vec::new();
        };
        let Ok(rd) = std::fs::read_dir(p) else {
            return Vec::new();
        };
        let mut v: Vec<String> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != ".value")
            .take(65_536)
            .collect();
        v.sort();
        v
    }
}

/// A xenstore tree held in memory: `(path, value)` pairs (unit tests).
#[derive(Debug, Clone, Default)]
pub struct MapStore {
    values: std::collections::BTreeMap<String, String>,
}

impl MapStore {
    /// A tree with these values; parent nodes exist implicitly.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> MapStore {
        MapStore {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

impl Store for MapStore {
    fn read(&self, path: &str) -> Option<String> {
        self.values.get(path).cloned()
    }

    fn list(&self, path: &str) -> Vec<String> {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        let mut v: Vec<String> = self
            .values
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter_map(|rest| rest.split('/').next())
            .map(str::to_string)
            .collect();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_store_reads_values_and_children() {
        let d = tempfile::tempdir().unwrap();
        let dom = d.path().join("local/domain/1");
        std::fs::create_dir_all(dom.join("cpu/0")).unwrap();
        std::fs::write(dom.join("name"), "guest1\n").unwrap();
        std::fs::write(dom.join("cpu/0/availability"), "online").unwrap();
        let s = DirStore::new(d.path());
        assert_eq!(s.read("/local/domain/1/name").as_deref(), Some("guest1"));
        assert_eq!(s.list("/local/domain"), ["1"]);
        assert_eq!(s.list("/local/domain/1"), ["cpu", "name"]);
        assert_eq!(s.read("/local/domain/1/../1/name"), None);
        assert!(s.list("/nope").is_empty());
    }

    #[test]
    fn map_store_lists_implicit_parents() {
        let s = MapStore::new([
            ("/local/domain/0/name", "Domain-0"),
            ("/local/domain/3/name", "web"),
            ("/local/domain/3/cpu/1/availability", "online"),
        ]);
        assert_eq!(s.list("/local/domain"), ["0", "3"]);
        assert_eq!(s.list("/local/domain/3/cpu"), ["1"]);
        assert_eq!(s.read("/local/domain/3/name").as_deref(), Some("web"));
    }
}

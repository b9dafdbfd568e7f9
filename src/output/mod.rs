//! Output formats: every renderer reads the [`crate::report::Profile`] tree and nothing else
//! (a new format touches only this folder).
//!
//! - [`text`] — the human report (per VM → vCPU → class → symbols);
//! - [`json`] — the same tree as JSON (schema in `docs/formats.md`);
//! - [`flame`] — folded stacks and an SVG flame graph (inferno);
//! - [`pprof`] — gzipped `profile.proto` for `go tool pprof`, Pyroscope, Parca;
//! - [`top`] — `hvprof top`'s frames (the interval between two snapshots), as text and JSON.

pub mod flame;
pub mod json;
pub mod pprof;
pub mod text;
pub mod top;

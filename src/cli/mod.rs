//! The subcommands of the `hvprof` binary, one module each.
//!
//! Each subcommand module owns its clap arguments struct (`XxxArgs`) and a
//! `run(args) -> anyhow::Result<()>` function; `main.rs` only parses the command line and
//! dispatches. The shared pieces are small: [`output`] (the `--format`/`--top`/`--flamegraph`
//! flags and the profile printer), [`parse`] (value parsers), [`signal`] (the SIGINT/SIGTERM
//! flag) and [`hint`] (the one-line error message with its fix).
//!
//! These modules belong to the binary, not to the `hvprof` library: they are the only users of
//! `anyhow`.

pub mod demo;
pub mod detect;
pub mod hint;
pub mod output;
pub mod parse;
pub mod probe;
pub mod record;
pub mod report;
pub mod signal;
pub mod stat;
pub mod testvm;
pub mod top;
pub mod vms;

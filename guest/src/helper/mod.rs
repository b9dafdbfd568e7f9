//! The helper's main loop: open the guest-wide perf events, connect to the host, send the
//! guest's state (hello, kallsyms, modules, processes, maps, symbol tables), then stream
//! sideband records and samples until the duration ends or a signal arrives. When the
//! channel breaks, the helper reconnects and sends the whole state again; when the host
//! sends a host-hello (it (re)attached to a virtio-serial port), likewise.
//!
//! Stage: guest → **helper** → wire. Input: [`Options`]; output: frames on the channel.
//!
//! ```no_run
//! use hvprof_guest::helper::{run, Options};
//! use hvprof_proto::transport::Channel;
//! let mut o = Options::new(Channel::Tcp("10.0.2.2:7777".into()));
//! o.duration = Some(std::time::Duration::from_secs(10));
//! let why = run(&o).unwrap();
//! eprintln!("stopped: {why}");
//! ```
//!
//! Modules, one job each:
//!
//! - `options` — [`Options`], [`parse_args`], [`USAGE`] (the command line);
//! - `connect` — [`run`]: opens the perf events, then connects, waits for a host and
//!   reconnects;
//! - `session` — one connection: the reader thread (pings, host-hellos) and the send loop;
//! - `snapshot` — the initial state: hello, notes, kallsyms, modules, the /proc snapshot;
//! - `maps` — maps and the symbol tables of mapped files, with the per-file cache;
//! - `records` — one perf record → wire messages;
//! - `pump` — draining the perf rings, onto the channel or (no host) discarded.

use std::collections::HashMap;
use std::io;

use hvprof_proto::transport::{SharedWriter, Stream};

use crate::collect::{Collector, EventClock};
use crate::procfs::Proc;
use crate::sender::Sender;

mod connect;
mod maps;
mod options;
mod pump;
mod records;
mod session;
mod snapshot;

pub use connect::run;
pub use options::{parse_args, Options, USAGE};

use maps::FileEntry;

/// A fatal helper error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HelperError {
    /// No perf event could be opened in the guest.
    #[error("opening perf events in the guest (needs root or kernel.perf_event_paranoid <= -1, and CONFIG_PERF_EVENTS)")]
    Perf(#[source] io::Error),
    /// The channel could not be opened.
    #[error("connecting to the host over {channel}")]
    Connect {
        /// Which channel.
        channel: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// The sender of one connection.
type Tx = Sender<SharedWriter<Stream>>;

/// Everything the helper keeps across connections.
struct State {
    opts: Options,
    proc: Proc,
    clock: EventClock,
    cpus: Vec<u32>,
    collector: Option<Collector>,
    notes: Vec<String>,
    /// (path, dev-ino or build-id) → file.
    files: HashMap<(String, Vec<u8>), FileEntry>,
    pending_lost: u64,
    connected_once: bool,
}

/// Prints `msg` to stderr when `--verbose`.
fn log(opts: &Options, msg: &str) {
    if opts.verbose {
        eprintln!("hvprof-guest: {msg}");
    }
}

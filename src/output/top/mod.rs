//! `hvprof top`'s frames: what changed in the aggregate since the last refresh, per VM → vCPU
//! → class → symbols, beside the latest `hvprof stat` interval (VM exits by reason, steal per
//! vCPU), as a [`TopFrame`]; and its one text rendering (the lines of batch mode and of the
//! terminal UI's rows) and its JSON rendering (one object per frame).
//!
//! Stage: aggregation → **output**. Input: successive cumulative
//! [`Profile`](crate::report::Profile) snapshots of one session (`crate::session::record_live`)
//! and, optionally, a [`StatReport`](crate::stat::StatReport) interval; output: a [`TopFrame`] of
//! the interval between the last two snapshots. No IO: whether a VM's process still exists is the
//! caller's question ([`TopState::frame`]'s `alive`).
//!
//! ```
//! use std::sync::Arc;
//! use hvprof::aggregate::Aggregator;
//! use hvprof::counters::Rate;
//! use hvprof::model::Machines;
//! use hvprof::output::top::{render_text, TopState};
//! use hvprof::report::Meta;
//! let agg = Aggregator::new(Arc::new(Machines::new()));
//! let meta = Meta {
//!     event: "cpu-clock".into(),
//!     rate: Rate::Frequency(1000),
//!     period_is_ns: true,
//!     duration_ns: 1_000_000_000,
//!     mode: "threads".into(),
//!     host: "h".into(),
//!     kernel: "k".into(),
//!     start_unix_ns: 0,
//! };
//! let mut state = TopState::default();
//! let frame = state.frame(&agg.snapshot(meta, None, 10), None, &|_pid| true);
//! print!("{}", render_text(&frame, 5));
//! ```
//!
//! Layout: the frame's types ([`TopFrame`] and its rows) in `frame.rs`; the difference between
//! two snapshots ([`TopState`]) in `state.rs`; the text rendering (batch lines and the terminal
//! UI's rows) in `text.rs`; the JSON rendering in `json.rs`; the tests' snapshots in
//! `fixtures.rs`.

mod frame;
mod json;
mod state;
mod text;

#[cfg(test)]
mod fixtures;

pub use frame::{
    TopExits, TopFrame, TopReason, TopSteal, TopThread, TopVm, VmState, FRAME_REASONS,
    FRAME_SYMBOLS,
};
pub use json::render_json;
pub use state::TopState;
pub use text::{
    column_header, column_shares, exits_line, header_line, render_text, steal_line, symbol_line,
    thread_line, vm_line, COLUMNS,
};

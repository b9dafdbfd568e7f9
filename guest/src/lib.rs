//! # hvprof-guest — hvprof's in-guest helper
//!
//! Xenoprof's *active* mode for KVM: a small static binary runs inside the guest and sends
//! the host what only the guest knows — its kernel symbols, process names, memory maps with
//! build-ids, the symbol tables of mapped executables, context switches per guest CPU and,
//! where the host cannot see guest IPs (PVM, QEMU TCG), its own samples.
//!
//! Modules, in pipeline order:
//!
//! 1. [`collect`] — guest-wide perf events (sideband dummy + cpu-clock) per guest CPU;
//! 2. [`perfrec`] — IO-free decoding of their records;
//! 3. [`procfs`], [`elfsyms`] — /proc snapshot, kallsyms, modules; ELF symbols and build-ids;
//! 4. [`sender`] — framing, batching and chunking onto the channel;
//! 5. `hvprof_proto::transport` — virtio-serial port, vsock, TCP;
//! 6. [`helper`] — the main loop (reconnects and resends on a new host attachment).
//!
//! The wire protocol (`docs/protocol.md`) and the channels are the `hvprof-proto` crate,
//! shared with the host; [`proto`] re-exports it. `unsafe` lives only in [`sys`].

pub mod collect;
pub mod elfsyms;
pub mod helper;
pub mod perfrec;
pub mod procfs;
pub mod sender;
pub mod sys;

pub use hvprof_proto as proto;

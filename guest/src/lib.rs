//! # hvprof-guest — hvprof's in-guest helper
//!
//! Xenoprof's *active* mode for KVM: a small static binary runs inside the guest and sends
//! the host what only the guest knows — its kernel symbols, process names, memory maps with
//! build-ids, the symbol tables of mapped executables, context switches per guest CPU and,
//! where the host cannot see guest IPs (PVM, QEMU TCG), its own samples.
//!
//! Modules, in pipeline order:
//!
//! 1. [`collect`] — guest-wide perf events (sideband dummy + cpu-clock) per guest CPU, opened,
//!    read and decoded through the one perf layer (`hvprof-perf`) the host uses too;
//! 2. [`procfs`], [`elfsyms`] — /proc snapshot, kallsyms, modules; ELF symbols and build-ids;
//! 3. [`sender`] — framing, batching and chunking onto the channel;
//! 4. `hvprof_proto::transport` — virtio-serial port, vsock, TCP;
//! 5. [`helper`] — the main loop (reconnects and resends on a new host attachment).
//!
//! The wire protocol (`docs/protocol.md`) and the channels are the `hvprof-proto` crate,
//! shared with the host. `unsafe` lives only in [`sys`] (and the shared perf layer, `hvprof-perf`).

pub mod collect;
pub mod elfsyms;
pub mod helper;
pub mod procfs;
pub mod sender;
pub mod sys;

//! The initial state, sent on every connection and host attachment: hello, notes, kallsyms,
//! modules, the count of records lost while no host listened, every process's threads
//! and executable maps from /proc, and ready.

use std::io;

use hvprof_proto::{
    Hello, Message, HELLO_CALLCHAINS, HELLO_KALLSYMS, HELLO_MMAP_BUILD_ID, HELLO_SIDEBAND,
    LOST_HELPER,
};

use super::maps::{dev_ino_key, MapInfo};
use super::{State, Tx};
use crate::procfs;

impl State {
    pub(super) fn send_state(&mut self, tx: &mut Tx) -> io::Result<()> {
        let mut kallsyms = self.proc.kallsyms().unwrap_or_default();
        let mut notes = std::mem::take(&mut self.notes);
        if procfs::kallsyms_hidden(&kallsyms) {
            if self.proc.allow_kallsyms() {
                kallsyms = self.proc.kallsyms().unwrap_or_default();
                notes.push("set kernel.kptr_restrict=0 in the guest to read kallsyms".into());
            }
            if procfs::kallsyms_hidden(&kallsyms) {
                notes.push("guest /proc/kallsyms shows no addresses (kernel.kptr_restrict): guest kernel symbols unavailable".into());
                kallsyms.clear();
            }
        }
        let mut flags = 0;
        if !kallsyms.is_empty() {
            flags |= HELLO_KALLSYMS;
        }
        let (sideband, sampling, bid) =
            self.collector.as_ref().map_or((false, false, false), |c| {
                (c.sideband, c.sampling, c.mmap_build_id)
            });
        if sampling
            && self
                .collector
                .as_ref()
                .is_some_and(|c| c.callchain_depth > 0)
        {
            flags |= HELLO_CALLCHAINS;
        }
        if sideband {
            flags |= HELLO_SIDEBAND;
        }
        if bid {
            flags |= HELLO_MMAP_BUILD_ID;
        }
        let cpus = self.cpus.iter().max().map_or(1, |m| m + 1);
        tx.send(&Message::Hello(Hello {
            helper_version: env!("CARGO_PKG_VERSION").into(),
            kernel_release: self.proc.kernel_release(),
            boot_id: self.proc.boot_id(),
            hostname: self.proc.hostname(),
            cpus,
            clock: self.clock.info(),
            now_ns: self.clock.now(),
            sampling_hz: if sampling { self.opts.freq } else { 0 },
            flags,
        }))?;
        for n in &notes {
            tx.send(&Message::Note {
                level: 1,
                text: n.clone(),
            })?;
        }
        self.notes = notes;
        if !kallsyms.is_empty() {
            tx.kallsyms(kallsyms.as_bytes())?;
        }
        tx.send(&Message::Modules(self.proc.modules()))?;
        if self.pending_lost > 0 {
            tx.send(&Message::Lost {
                cpu: u32::MAX,
                kind: LOST_HELPER,
                count: std::mem::take(&mut self.pending_lost),
            })?;
        }
        // Processes that existed before the sideband stream (time 0).
        for p in self.proc.snapshot() {
            for (tid, comm) in &p.threads {
                tx.send(&Message::Comm {
                    pid: p.pid,
                    tid: *tid,
                    time: 0,
                    exec: false,
                    comm: comm.clone(),
                })?;
            }
            for m in &p.maps {
                let dev_ino = dev_ino_key(m.dev_major, m.dev_minor, m.inode);
                self.send_map(
                    tx,
                    MapInfo {
                        pid: p.pid,
                        tid: p.pid,
                        time: 0,
                        start: m.start,
                        len: m.end.saturating_sub(m.start),
                        pgoff: m.offset,
                        prot: m.prot,
                        path: &m.path,
                        ident: dev_ino,
                        build_id: None,
                    },
                )?;
            }
        }
        tx.send(&Message::Ready {
            now_ns: self.clock.now(),
        })?;
        tx.flush()
    }
}

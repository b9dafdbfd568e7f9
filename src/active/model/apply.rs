//! The message dispatcher ([`GuestModel::apply`]) and the handlers of session messages:
//! hello (reconnect or reboot), ready, lost counts, notes. The other handlers live with the
//! part of the model they feed.

use hvprof_proto::{self as proto, Hello, Message};

use super::tasks::GuestMap;
use super::{limit, GuestModel, ModelError};

impl GuestModel {
    /// Applies one message.
    ///
    /// # Errors
    /// [`ModelError`] when the guest exceeds the [`Budget`](super::Budget) or breaks the
    /// message order; the caller drops the connection.
    pub fn apply(&mut self, m: Message) -> Result<(), ModelError> {
        self.stats.messages += 1;
        match m {
            Message::Hello(h) => self.on_hello(h),
            Message::Ready { now_ns } => {
                self.see_time(now_ns);
                self.ready = true;
                Ok(())
            }
            Message::KallsymsChunk(b) => self.on_kallsyms_chunk(&b),
            Message::KallsymsEnd { total } => self.on_kallsyms_end(total),
            Message::Modules(m) => self.on_modules(m),
            Message::Comm {
                pid,
                tid,
                time,
                exec,
                comm,
            } => self.on_comm(pid, tid, time, exec, comm),
            Message::Mmap {
                pid,
                time,
                start,
                len,
                pgoff,
                file_key,
                path,
                ..
            } => self.on_mmap(
                pid,
                GuestMap {
                    time,
                    start,
                    end: start.saturating_add(len),
                    pgoff,
                    key: file_key,
                    path,
                },
            ),
            Message::Task { time, .. } => {
                // Forks and exits: the switch timeline and the comm records say who ran.
                self.see_time(time);
                Ok(())
            }
            Message::Switches(v) => self.on_switches(v),
            Message::SymtabBegin {
                file_key,
                build_id,
                path,
                segments,
                symbol_count,
                ..
            } => self.on_symtab_begin(file_key, build_id, path, segments, symbol_count),
            Message::SymtabChunk { file_key, symbols } => self.on_symtab_chunk(&file_key, symbols),
            Message::SymtabEnd { file_key } => self.on_symtab_end(&file_key),
            Message::Samples(v) => self.on_samples(v),
            Message::StackSamples(v) => self.on_stack_samples(v),
            Message::Lost { kind, count, .. } => {
                self.on_lost(kind, count);
                Ok(())
            }
            Message::Note { text, .. } => {
                self.note(format!("guest helper: {text}"));
                Ok(())
            }
            Message::Bye { .. } | Message::Pong { .. } => Ok(()),
            Message::HostHello { .. } | Message::Ping { .. } => Err(ModelError::Sequence(
                "host-to-guest message received from the guest".into(),
            )),
        }
    }

    /// A hello: the same boot id continues the model after a reconnect (every CPU's
    /// occupant unknown until its next switch), another one means the guest rebooted and
    /// drops what it sent before.
    fn on_hello(&mut self, h: Hello) -> Result<(), ModelError> {
        if let Some(old) = self.hello.as_ref().map(|o| o.boot_id.clone()) {
            if old != h.boot_id {
                self.reset_for_reboot();
                self.note(format!(
                    "the guest rebooted (boot id {old} → {}): guest data before the reboot was dropped",
                    h.boot_id
                ));
            } else {
                self.disconnected();
            }
        }
        if h.cpus > self.budget.max_cpus {
            return Err(limit(format!(
                "hello announces {} CPUs (limit {})",
                h.cpus, self.budget.max_cpus
            )));
        }
        self.see_time(h.now_ns);
        self.stats.sessions += 1;
        self.kallsyms_text.clear();
        self.ready = false;
        self.hello = Some(h);
        Ok(())
    }

    /// Records the guest kernel or helper reported lost (`kind`: `proto::LOST_*`).
    fn on_lost(&mut self, kind: u8, count: u64) {
        let c = match kind {
            proto::LOST_SIDEBAND => &mut self.stats.lost_sideband,
            proto::LOST_SAMPLES => &mut self.stats.lost_samples,
            _ => &mut self.stats.lost_helper,
        };
        *c = c.saturating_add(count);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::table_msgs;
    use super::super::Budget;
    use super::*;

    #[test]
    fn limits_are_enforced() {
        let b = Budget {
            max_symbols_per_table: 10,
            max_tasks: 3,
            max_kallsyms_bytes: 8,
            ..Budget::default()
        };
        let mut m = GuestModel::new(1, b);
        let mut begin = table_msgs(b"k").remove(0);
        if let Message::SymtabBegin { symbol_count, .. } = &mut begin {
            *symbol_count = 11;
        }
        assert!(matches!(m.apply(begin), Err(ModelError::Limit(_))));
        assert!(matches!(
            m.apply(Message::SymtabChunk {
                file_key: b"zz".to_vec(),
                symbols: vec![]
            }),
            Err(ModelError::Sequence(_))
        ));
        for pid in 0..3 {
            m.apply(Message::Comm {
                pid,
                tid: pid,
                time: 0,
                exec: false,
                comm: "x".into(),
            })
            .unwrap();
        }
        assert!(m
            .apply(Message::Comm {
                pid: 9,
                tid: 9,
                time: 0,
                exec: false,
                comm: "x".into()
            })
            .is_err());
        assert!(m.apply(Message::KallsymsChunk(vec![b'a'; 9])).is_err());
        assert!(m
            .apply(Message::Ping {
                seq: 0,
                host_time: 0
            })
            .is_err());
    }
}

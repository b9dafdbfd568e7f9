//! Draining the perf rings: onto the channel while a host listens ([`State::pump`]),
//! discarded and counted as lost while none does ([`State::drain_discard`]).

use std::io;

use super::{log, State, Tx};

impl State {
    pub(super) fn drain_discard(&mut self) {
        if let Some(c) = &mut self.collector {
            // Sideband records while no host listens: the /proc snapshot at the next
            // connection covers the processes they describe; count them as lost.
            let mut n = 0u64;
            let _ = c.drain(|_, _, _| {
                n += 1;
                Ok(())
            });
            if self.connected_once {
                self.pending_lost += n;
            }
        }
    }

    /// Drains the perf rings and sends what they held.
    pub(super) fn pump(&mut self, tx: &mut Tx) -> io::Result<()> {
        let Some(mut c) = self.collector.take() else {
            return Ok(());
        };
        let res = c.drain(|cpu, sampling, r| self.handle(tx, cpu, sampling, r));
        self.collector = Some(c);
        let loss = res?;
        if loss.corrupt_bytes > 0 || loss.corrupt_heads > 0 {
            log(
                &self.opts,
                &format!(
                    "perf rings: {} corrupt record bytes skipped, {} corrupt ring heads resynchronised",
                    loss.corrupt_bytes, loss.corrupt_heads
                ),
            );
        }
        tx.flush()
    }
}

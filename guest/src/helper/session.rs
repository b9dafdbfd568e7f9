//! One connection: the reader thread (answers pings, notices host-hellos) and the send loop
//! (state, then the rings every 20 ms, until the deadline or a signal; then a bye).

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hvprof_proto::transport::{SharedWriter, Stream};
use hvprof_proto::{FrameDecoder, Limits, Message};

use super::{log, State, Tx};
use crate::collect::EventClock;
use crate::sender::Sender;

fn spawn_reader(
    mut stream: Stream,
    writer: SharedWriter<Stream>,
    clock: EventClock,
    resync: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
) {
    let device = stream.is_device();
    let _ = std::thread::Builder::new()
        .name("hvprof-guest-rx".into())
        .spawn(move || {
            let mut dec = FrameDecoder::new(Limits {
                max_payload: 1 << 16,
                ..Limits::default()
            });
            let mut buf = [0u8; 4096];
            let mut w = writer;
            while !done.load(Ordering::Relaxed) {
                if device {
                    // A virtio-serial port reads EOF while the host side is detached: wait.
                    match stream.poll(false, Duration::from_millis(200)) {
                        Ok(p) if p.readable => {}
                        Ok(_) => continue,
                        Err(_) => return,
                    }
                }
                let n = match stream.read(&mut buf) {
                    Ok(0) if device => {
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                };
                dec.push(&buf[..n]);
                loop {
                    match dec.next_message() {
                        Ok(Some(Message::Ping { seq, host_time })) => {
                            let m = Message::Pong {
                                seq,
                                host_time,
                                guest_time: clock.now(),
                            };
                            if w.write_all(&m.to_frame()).is_err() && !device {
                                return;
                            }
                        }
                        Ok(Some(Message::HostHello { .. })) => {
                            resync.store(true, Ordering::Relaxed)
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => {
                            dec.resync();
                        }
                    }
                }
            }
        });
}

impl State {
    pub(super) fn session(
        &mut self,
        stream: Stream,
        deadline: Option<Instant>,
    ) -> io::Result<String> {
        let resync = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let reader = stream.try_clone()?;
        let closer = stream.try_clone()?;
        let writer = SharedWriter::new(stream);
        spawn_reader(
            reader,
            writer.clone(),
            self.clock,
            resync.clone(),
            done.clone(),
        );
        let mut tx = Sender::new(writer);
        if let Some(c) = &self.collector {
            let _ = c.enable_sampling(true);
        }
        let r = self.session_inner(&mut tx, &resync, deadline);
        if let Some(c) = &self.collector {
            let _ = c.enable_sampling(false);
        }
        done.store(true, Ordering::Relaxed);
        if r.is_err() {
            let (s, w) = tx.discard_queued();
            self.pending_lost += (s + w) as u64;
        }
        closer.shutdown();
        r
    }

    fn session_inner(
        &mut self,
        tx: &mut Tx,
        resync: &AtomicBool,
        deadline: Option<Instant>,
    ) -> io::Result<String> {
        // The host greets every new attachment with a host-hello, which asks for the state:
        // wait a moment for it so the state is sent once, not twice.
        let t0 = Instant::now();
        while !resync.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(10));
        }
        resync.store(false, Ordering::Relaxed);
        self.connected_once = true;
        self.send_state(tx)?;
        loop {
            if hvprof_rt::process_token().is_stopped() {
                return self.bye(tx, "interrupted");
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return self.bye(tx, "duration reached");
            }
            if resync.swap(false, Ordering::Relaxed) {
                log(&self.opts, "host attached: sending state again");
                tx.reset_tables();
                self.send_state(tx)?;
            }
            self.pump(tx)?;
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn bye(&mut self, tx: &mut Tx, why: &str) -> io::Result<String> {
        if let Some(c) = &self.collector {
            let _ = c.enable(false);
        }
        self.pump(tx)?;
        tx.send(&Message::Bye {
            reason: why.to_string(),
        })?;
        tx.flush()?;
        Ok(why.to_string())
    }
}

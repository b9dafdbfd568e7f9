//! [`run`]: opens the guest-wide perf events, then connects to the host, waits for it to
//! attach (virtio-serial), runs a session and reconnects when the channel breaks. The
//! rings stay drained while no host listens.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hvprof_proto::transport::Stream;

use super::{log, HelperError, Options, State};
use crate::collect::{Collector, EventClock};
use crate::procfs::{self, Proc};

/// Runs the helper until its duration ends or SIGINT/SIGTERM; returns why it stopped.
///
/// # Errors
/// [`HelperError::Perf`] when no perf event opens and sampling or sideband was wanted;
/// [`HelperError::Connect`] when `no_retry` is set and the first connection fails.
pub fn run(opts: &Options) -> Result<String, HelperError> {
    let _ = hvprof_rt::stop_on_signals(true);
    let proc = Proc {
        root: opts.proc_root.clone(),
    };
    let clock = EventClock::probe();
    let cpus = procfs::online_cpus();
    let mut notes = Vec::new();
    let collector = match Collector::open(&cpus, opts.freq, opts.callchain_depth, clock) {
        Ok(c) => {
            notes.extend(c.problems.iter().cloned());
            Some(c)
        }
        Err(e) => return Err(HelperError::Perf(e)),
    };
    // The sideband runs from the start; sampling only while a host listens.
    if let Some(c) = &collector {
        c.enable_sideband(true).map_err(HelperError::Perf)?;
    }
    log(
        opts,
        &format!(
            "{} guest CPUs, clock {}, sampling {} Hz",
            cpus.len(),
            if clock.clock_id == hvprof_proto::CLOCK_PERF_LOCAL {
                "perf local (TSC convertible)".to_string()
            } else {
                format!("clockid {}", clock.clock_id)
            },
            opts.freq
        ),
    );
    let mut st = State {
        opts: opts.clone(),
        proc,
        clock,
        cpus,
        collector,
        notes,
        files: HashMap::new(),
        pending_lost: 0,
        connected_once: false,
    };
    let mut deadline: Option<Instant> = None;
    let mut announced = false;
    loop {
        if hvprof_rt::process_token().is_stopped() {
            return Ok("interrupted".into());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok("duration reached".into());
        }
        let stream = match Stream::open(&opts.channel) {
            Ok(s) => s,
            Err(e) => {
                if opts.no_retry {
                    return Err(HelperError::Connect {
                        channel: opts.channel.to_string(),
                        source: e,
                    });
                }
                if !announced {
                    eprintln!(
                        "hvprof-guest: cannot connect over {}: {e}; retrying every second",
                        opts.channel
                    );
                    announced = true;
                }
                // Keep the rings drained while waiting, counting what is dropped.
                st.drain_discard();
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        announced = false;
        if stream.is_device() {
            // A virtio-serial port hangs up while no host is attached, and writes block:
            // wait for a host, keeping the rings drained.
            let mut said = false;
            loop {
                if hvprof_rt::process_token().is_stopped() {
                    return Ok("interrupted".into());
                }
                match stream.poll(true, Duration::from_millis(200)) {
                    Ok(p) if !p.hangup => break,
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("hvprof-guest: poll on {}: {e}", opts.channel);
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
                if !said {
                    log(opts, "waiting for the host to attach to the port");
                    said = true;
                }
                st.drain_discard();
            }
        }
        log(opts, &format!("connected over {}", opts.channel));
        if deadline.is_none() {
            deadline = opts.duration.map(|d| Instant::now() + d);
        }
        match st.session(stream, deadline) {
            Ok(reason) => return Ok(reason),
            Err(e) => {
                eprintln!("hvprof-guest: channel error: {e}; reconnecting");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

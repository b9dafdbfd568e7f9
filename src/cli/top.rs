//! `hvprof top`: a live view of every VM's CPU — per VM, where its time goes (classes, vCPUs,
//! top symbols) beside what the hypervisor costs it (VM exits by reason, steal per vCPU).
//!
//! One recording session ([`hvprof::session::record_live`]) runs on its own thread and sends
//! a snapshot of its aggregate every `-d` seconds; an `hvprof stat` run
//! ([`hvprof::stat::run`]) on another thread sends its intervals. The main thread turns them
//! into frames ([`hvprof::output::top`]) and shows them: in a terminal UI ([`tui`]) or, with
//! `-b`, as plain-text or JSON frames on stdout.

mod tui;

use std::io::Write;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use hvprof::counters::{CounterSpec, EventSpec, Rate};
use hvprof::output::top::{render_json, render_text, TopFrame, TopState, VmState};
use hvprof::report::Profile;
use hvprof::rt::StopToken;
use hvprof::session::{self, Live, RecordOptions};
use hvprof::stat::{StatOptions, StatReport};

use super::parse::{parse_guest_kallsyms, parse_seconds};

/// `--format` of batch mode.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TopFormat {
    // No doc comments: clap would print them in `--help`.
    Text,
    Json,
}

/// `hvprof top` arguments.
#[derive(Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub target: super::parse::ScopeArgs,
    /// Event, by perf's name. cpu-clock gives CPU% (its period is time on CPU); other events
    /// give each row's share of the samples.
    #[arg(short = 'e', long, default_value = "cpu-clock")]
    pub event: String,
    /// Sampling frequency in Hz.
    #[arg(short = 'F', long, default_value_t = 1000)]
    pub freq: u64,
    /// Guest symbol map in kallsyms/System.map format: FILE for every VM, or PID=FILE.
    #[arg(long = "guest-kallsyms")]
    pub guest_kallsyms: Vec<String>,
    /// Seconds between refreshes.
    #[arg(value_parser = parse_seconds, short = 'd', long = "delay", default_value_t = 1.0)]
    pub delay: f64,
    /// Batch mode: plain frames on stdout instead of the terminal UI.
    #[arg(short = 'b', long)]
    pub batch: bool,
    /// Batch mode: stop after this many frames.
    #[arg(short = 'n', long = "iterations")]
    pub iterations: Option<u64>,
    /// Batch mode's frame format: text, or one JSON object per line.
    #[arg(long, value_enum, default_value = "text")]
    pub format: TopFormat,
    /// Symbols listed per VM in batch text frames.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
}

/// What the session and stat threads send to the main thread.
pub(crate) enum Msg {
    /// A cumulative snapshot of the session's aggregate.
    Profile(Box<Profile>),
    /// An interval of the stat run of this generation.
    Stat(u64, Box<StatReport>),
    /// The stat run of this generation ended with this error.
    StatFailed(u64, String),
    /// The session ended: why, or its error.
    Ended(Result<String, hvprof::Error>),
}

/// Runs `hvprof top` until `q`, Ctrl-C/SIGTERM, `-n` frames, or the end of the session (every
/// watched VM gone).
///
/// # Errors
/// Bad flags (event name, `-n` without `-b`), no terminal or one that cannot be set up, and every
/// error of [`session::record_live`] (no such VM, counters that cannot be opened).
pub fn run(a: TopArgs) -> anyhow::Result<()> {
    if a.iterations.is_some() && !a.batch {
        bail!("-n counts batch frames: use it with -b");
    }
    if a.format == TopFormat::Json && !a.batch {
        bail!("--format json is for batch mode: use it with -b");
    }
    if !a.batch && !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        bail!("stdout is not a terminal: use -b for batch mode");
    }
    let every = Duration::from_secs_f64(a.delay.max(0.1));
    let mut feed = Feed::start(&a, every)?;
    let r = if a.batch {
        batch(&a, &mut feed)
    } else {
        tui::run(&mut feed)
    };
    let ended = feed.finish();
    r?;
    match ended {
        Some(Err(e)) => Err(e.into()),
        Some(Ok(why)) => {
            eprintln!("hvprof top: stopped: {why}");
            Ok(())
        }
        None => Ok(()),
    }
}

/// Batch mode: a frame per snapshot on stdout until `-n` frames, a signal or the session's end.
fn batch(a: &TopArgs, feed: &mut Feed) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut printed = 0u64;
    while let Some(frame) = feed.next_frame(Duration::from_millis(100))? {
        let Some(frame) = frame else { continue };
        let s = match a.format {
            TopFormat::Text => render_text(&frame, a.top),
            TopFormat::Json => render_json(&frame) + "\n",
        };
        if let Err(e) = out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(e).context("cannot write to stdout");
        }
        printed += 1;
        if a.iterations.is_some_and(|n| printed >= n) {
            feed.stop(&format!("{printed} frames printed (-n)"));
            break;
        }
    }
    Ok(())
}

/// The session and stat threads, and the frames made of what they send.
pub(crate) struct Feed {
    rx: Receiver<Msg>,
    tx: Sender<Msg>,
    /// Stops the session (and so the stat runs).
    session_stop: StopToken,
    session: Option<JoinHandle<()>>,
    /// The current stat run: its generation, stop token and the pids it watches (`None`:
    /// every VM).
    stat_gen: u64,
    stat_stop: StopToken,
    stat_pids: Option<Vec<i32>>,
    system_wide: bool,
    every: Duration,
    state: TopState,
    stat: Option<StatReport>,
    /// Why the stat figures are missing, when its run failed.
    pub(crate) stat_error: Option<String>,
    /// The session's end, once it ended.
    ended: Option<Result<String, hvprof::Error>>,
}

impl Feed {
    /// Starts the session and the stat run.
    fn start(a: &TopArgs, every: Duration) -> anyhow::Result<Feed> {
        let scope = a.target.scope();
        let mut opts = RecordOptions::new(scope);
        opts.counter = CounterSpec {
            event: EventSpec::parse(&a.event)?,
            rate: Rate::Frequency(a.freq),
            ..CounterSpec::default()
        };
        opts.guest_kallsyms = parse_guest_kallsyms(&a.guest_kallsyms)?;
        let session_stop = StopToken::new();
        opts.stop = session_stop.clone();
        let (tx, rx) = crossbeam_channel::bounded(64);
        let stx = tx.clone();
        let session = std::thread::Builder::new()
            .name("hvprof-top-session".into())
            .spawn(move || {
                let ptx = stx.clone();
                let mut show = |p: &Profile| {
                    // A full channel drops the snapshot: the next one is cumulative too.
                    let _ = ptx.try_send(Msg::Profile(Box::new(p.clone())));
                };
                let live = Live {
                    every,
                    show: &mut show,
                };
                let r = session::record_live(&opts, Some(live)).map(|o| o.stopped_because);
                let _ = stx.send(Msg::Ended(r));
            })
            .context("cannot start the session thread")?;
        let mut feed = Feed {
            rx,
            tx,
            session_stop,
            session: Some(session),
            stat_gen: 0,
            stat_stop: StopToken::new(),
            stat_pids: None,
            system_wide: a.target.all_cpus,
            every,
            state: TopState::default(),
            stat: None,
            stat_error: None,
            ended: None,
        };
        feed.start_stat((!a.target.all_cpus).then(|| a.target.pids.clone()))?;
        Ok(feed)
    }

    /// Starts a stat run over `pids` (`None`: every VM), stopping the previous one.
    fn start_stat(&mut self, pids: Option<Vec<i32>>) -> anyhow::Result<()> {
        self.stat_stop.stop("the VMs changed");
        self.stat_gen += 1;
        self.stat_stop = StopToken::new();
        self.stat_pids = pids.clone();
        self.stat = None;
        self.stat_error = None;
        let opts = StatOptions {
            pids: pids.unwrap_or_default(),
            interval: Some(self.every),
            stop: self.stat_stop.clone(),
            ..StatOptions::default()
        };
        let (tx, generation) = (self.tx.clone(), self.stat_gen);
        std::thread::Builder::new()
            .name("hvprof-top-stat".into())
            .spawn(move || {
                let r = hvprof::stat::run(&opts, &mut |iv| {
                    let _ = tx.try_send(Msg::Stat(generation, Box::new(iv.clone())));
                });
                if let Err(e) = r {
                    let _ = tx.send(Msg::StatFailed(generation, hvprof::error_chain(&e)));
                }
            })
            .context("cannot start the stat thread")?;
        Ok(())
    }

    /// Waits up to `wait` for the next message: `Ok(None)` once the session ended,
    /// `Ok(Some(Some(frame)))` for a new frame, `Ok(Some(None))` for nothing new. A signal
    /// (the process token) stops the session.
    pub(crate) fn next_frame(
        &mut self,
        wait: Duration,
    ) -> anyhow::Result<Option<Option<TopFrame>>> {
        if super::signal::stop_requested() {
            self.session_stop.stop("interrupted (SIGINT/SIGTERM)");
        }
        if self.ended.is_some() {
            return Ok(None);
        }
        let msg = match self.rx.recv_timeout(wait) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => return Ok(Some(None)),
            Err(RecvTimeoutError::Disconnected) => return Ok(None),
        };
        match msg {
            Msg::Profile(p) => {
                let alive = |pid: i32| pid < 0 || Path::new(&format!("/proc/{pid}")).exists();
                let frame = self.state.frame(&p, self.stat.as_ref(), &alive);
                self.follow_vms(&frame)?;
                return Ok(Some(Some(frame)));
            }
            Msg::Stat(g, r) if g == self.stat_gen => self.stat = Some(*r),
            Msg::StatFailed(g, e) if g == self.stat_gen => self.stat_error = Some(e),
            Msg::Stat(..) | Msg::StatFailed(..) => {}
            Msg::Ended(r) => {
                self.stat_stop.stop("the session ended");
                self.ended = Some(r);
                return Ok(None);
            }
        }
        Ok(Some(None))
    }

    /// System-wide, a stat run follows the VMs that run: restarted over them when they change.
    fn follow_vms(&mut self, f: &TopFrame) -> anyhow::Result<()> {
        if !self.system_wide {
            return Ok(());
        }
        let mut running: Vec<i32> = f
            .vms
            .iter()
            .filter(|v| v.state == VmState::Running && v.pid > 0)
            .map(|v| v.pid)
            .collect();
        running.sort_unstable();
        match &self.stat_pids {
            // The first frame: the stat run already watches every VM.
            None => self.stat_pids = Some(running),
            Some(p) if *p != running && !running.is_empty() => self.start_stat(Some(running))?,
            Some(_) => {}
        }
        Ok(())
    }

    /// Stops the session (and so the stat run) for this reason, unless it already stopped.
    pub(crate) fn stop(&self, why: &str) {
        self.session_stop.stop(why);
    }

    /// Why the session ended, once it did.
    pub(crate) fn ended(&self) -> Option<String> {
        match &self.ended {
            Some(Ok(why)) => Some(why.clone()),
            Some(Err(e)) => Some(format!("error: {}", hvprof::error_chain(e))),
            None => None,
        }
    }

    /// Whether the session ended with an error (the UI then leaves at once).
    pub(crate) fn failed(&self) -> bool {
        matches!(self.ended, Some(Err(_)))
    }

    /// Stops both runs, waits up to 5 s for the session to end, and returns its end.
    fn finish(mut self) -> Option<Result<String, hvprof::Error>> {
        self.session_stop.stop("quit");
        self.stat_stop.stop("quit");
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.ended.is_none() && Instant::now() < deadline {
            match self.rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Msg::Ended(r)) => self.ended = Some(r),
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if self.ended.is_some() {
            if let Some(h) = self.session.take() {
                let _ = h.join();
            }
        }
        self.ended
    }
}

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

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hvprof_proto::transport::{Channel, SharedWriter, Stream};
use hvprof_proto::{
    FrameDecoder, Hello, Limits, Message, TaskKind, WireSample, WireSwitch, HELLO_KALLSYMS,
    HELLO_MMAP_BUILD_ID, HELLO_SIDEBAND, LOST_HELPER, LOST_SAMPLES, LOST_SIDEBAND,
};

use crate::collect::{Collector, EventClock};
use crate::elfsyms::{self, FileSymbols};
use crate::procfs::{self, Proc};
use crate::sender::Sender;
use crate::sys;
use hvprof_perf::record::{MmapFile, Record, SampleId};

/// Helper options (the command line).
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to connect.
    pub channel: Channel,
    /// Sampling frequency in Hz; 0 disables the helper's own sampling.
    pub freq: u32,
    /// Stop after this long (from the first connection); None: until SIGINT/SIGTERM.
    pub duration: Option<Duration>,
    /// The guest's proc root.
    pub proc_root: PathBuf,
    /// Print progress to stderr.
    pub verbose: bool,
    /// Give up when the first connection fails instead of retrying (tests).
    pub no_retry: bool,
}

impl Options {
    /// Defaults: 1000 Hz sampling, no duration, `/proc`.
    pub fn new(channel: Channel) -> Options {
        Options {
            channel,
            freq: 1000,
            duration: None,
            proc_root: PathBuf::from("/proc"),
            verbose: false,
            no_retry: false,
        }
    }
}

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

#[derive(Debug, Clone)]
struct FileEntry {
    key: Vec<u8>,
    build_id: Vec<u8>,
    syms: Option<Arc<FileSymbols>>,
}

/// FNV-1a 64, for keys of files without a build-id.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

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

fn log(opts: &Options, msg: &str) {
    if opts.verbose {
        eprintln!("hvprof-guest: {msg}");
    }
}

/// Runs the helper until its duration ends or SIGINT/SIGTERM; returns why it stopped.
///
/// # Errors
/// [`HelperError::Perf`] when no perf event opens and sampling or sideband was wanted;
/// [`HelperError::Connect`] when `no_retry` is set and the first connection fails.
pub fn run(opts: &Options) -> Result<String, HelperError> {
    sys::install_signal_handlers();
    let proc = Proc {
        root: opts.proc_root.clone(),
    };
    let clock = EventClock::probe();
    let cpus = procfs::online_cpus();
    let mut notes = Vec::new();
    let collector = match Collector::open(&cpus, opts.freq, clock) {
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
        if sys::stop_requested() {
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
                if sys::stop_requested() {
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
    fn drain_discard(&mut self) {
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

    fn session(&mut self, stream: Stream, deadline: Option<Instant>) -> io::Result<String> {
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
        tx: &mut Sender<SharedWriter<Stream>>,
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
            if sys::stop_requested() {
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

    fn bye(&mut self, tx: &mut Sender<SharedWriter<Stream>>, why: &str) -> io::Result<String> {
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

    fn send_state(&mut self, tx: &mut Sender<SharedWriter<Stream>>) -> io::Result<()> {
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

    fn send_map(
        &mut self,
        tx: &mut Sender<SharedWriter<Stream>>,
        m: MapInfo<'_>,
    ) -> io::Result<()> {
        let mut key = Vec::new();
        let mut build_id = m.build_id.clone().unwrap_or_default();
        let mut table = None;
        if m.path.starts_with('/') && m.prot & libc::PROT_EXEC as u32 != 0 {
            let ident = match &m.build_id {
                Some(b) => b.clone(),
                None => m.ident.clone(),
            };
            let cache_key = (m.path.to_string(), ident);
            let entry = match self.files.get(&cache_key) {
                Some(e) => e.clone(),
                None => {
                    let e = self.read_file(m.pid, m.path, m.build_id.as_deref(), &cache_key.1);
                    if self.files.len() < 65536 {
                        self.files.insert(cache_key, e.clone());
                    }
                    e
                }
            };
            key = entry.key.clone();
            if build_id.is_empty() {
                build_id = entry.build_id.clone();
            }
            table = entry.syms.clone();
        }
        if let Some(t) = &table {
            tx.symtab(&key, &build_id, m.path, t.elf_type, &t.segments, &t.symbols)?;
        }
        tx.send(&Message::Mmap {
            pid: m.pid,
            tid: m.tid,
            time: m.time,
            start: m.start,
            len: m.len,
            pgoff: m.pgoff,
            prot: m.prot,
            file_key: if table.is_some() { key } else { Vec::new() },
            build_id,
            path: m.path.to_string(),
        })
    }

    fn read_file(
        &mut self,
        pid: u32,
        path: &str,
        want_bid: Option<&[u8]>,
        ident: &[u8],
    ) -> FileEntry {
        let candidates = [
            PathBuf::from(path),
            self.proc
                .root
                .join(pid.to_string())
                .join("root")
                .join(path.trim_start_matches('/')),
        ];
        let mut last_err = None;
        for p in &candidates {
            match elfsyms::read(Path::new(p)) {
                Ok(fs) => {
                    if let (Some(w), Some(have)) = (want_bid, fs.build_id.as_deref()) {
                        if w != have {
                            self.notes.push(format!(
                                "{path}: the file's build-id differs from the mapped one (replaced on disk?): no symbols"
                            ));
                            return FileEntry {
                                key: Vec::new(),
                                build_id: w.to_vec(),
                                syms: None,
                            };
                        }
                    }
                    let build_id = fs.build_id.clone().unwrap_or_default();
                    let key = if build_id.is_empty() {
                        let mut k = b"nobid:".to_vec();
                        k.extend_from_slice(&fnv(&[path.as_bytes(), ident]).to_le_bytes());
                        k
                    } else {
                        build_id.clone()
                    };
                    return FileEntry {
                        key,
                        build_id,
                        syms: Some(Arc::new(fs)),
                    };
                }
                Err(e) => last_err = Some(e),
            }
        }
        if let Some(e) = last_err {
            log(&self.opts, &format!("no symbols for {path}: {e}"));
        }
        FileEntry {
            key: Vec::new(),
            build_id: want_bid.map(|b| b.to_vec()).unwrap_or_default(),
            syms: None,
        }
    }

    /// Drains the perf rings and sends what they held.
    fn pump(&mut self, tx: &mut Sender<SharedWriter<Stream>>) -> io::Result<()> {
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

    fn handle(
        &mut self,
        tx: &mut Sender<SharedWriter<Stream>>,
        ring_cpu: u32,
        sampling: bool,
        r: Record<'_>,
    ) -> io::Result<()> {
        // Every event of the helper asks for TID|TIME|CPU, so these are present.
        let pid = |sid: &SampleId| sid.pid.unwrap_or(-1) as u32;
        let tid = |sid: &SampleId| sid.tid.unwrap_or(-1) as u32;
        let time = |sid: &SampleId| sid.time_ns.unwrap_or(0);
        match r {
            Record::Sample(rec) => {
                let s = rec.sample;
                tx.sample(WireSample {
                    ip: s.ip,
                    pid: s.pid as u32,
                    tid: s.tid as u32,
                    time: s.time_ns,
                    cpu: s.cpu,
                    misc: s.cpumode.to_misc()
                        | if s.exact_ip {
                            hvprof_perf::abi::MISC_EXACT_IP
                        } else {
                            0
                        },
                    period: s.period,
                })
            }
            Record::Comm {
                pid,
                tid,
                exec,
                comm,
                sid,
            } => tx.send(&Message::Comm {
                pid: pid as u32,
                tid: tid as u32,
                time: time(&sid),
                exec,
                comm: comm.into_owned(),
            }),
            Record::Mmap(m) => {
                if m.prot & libc::PROT_EXEC as u32 == 0 {
                    return Ok(());
                }
                let (ident, build_id) = match m.file {
                    Some(MmapFile::Inode { maj, min, ino, .. }) => {
                        (dev_ino_key(maj, min, ino), None)
                    }
                    Some(MmapFile::BuildId(b)) => (Vec::new(), Some(b.to_vec())),
                    None => (Vec::new(), None),
                };
                self.send_map(
                    tx,
                    MapInfo {
                        pid: m.pid as u32,
                        tid: m.tid as u32,
                        time: time(&m.sid),
                        start: m.addr,
                        len: m.len,
                        pgoff: m.pgoff,
                        prot: m.prot,
                        path: &m.filename,
                        ident,
                        build_id,
                    },
                )
            }
            Record::Fork(t) | Record::Exit(t) => tx.send(&Message::Task {
                kind: if matches!(r, Record::Exit(_)) {
                    TaskKind::Exit
                } else {
                    TaskKind::Fork
                },
                pid: t.pid as u32,
                ppid: t.ppid as u32,
                tid: t.tid as u32,
                ptid: t.ptid as u32,
                time: t.time_ns,
            }),
            Record::Switch {
                out, preempt, sid, ..
            } => tx.switch(WireSwitch {
                cpu: sid.cpu.unwrap_or(ring_cpu),
                time: time(&sid),
                pid: pid(&sid),
                tid: tid(&sid),
                out,
                preempt,
            }),
            Record::Lost { lost, .. } => tx.send(&Message::Lost {
                cpu: ring_cpu,
                kind: if sampling {
                    LOST_SAMPLES
                } else {
                    LOST_SIDEBAND
                },
                count: lost,
            }),
            _ => Ok(()),
        }
    }
}

struct MapInfo<'a> {
    pid: u32,
    tid: u32,
    time: u64,
    start: u64,
    len: u64,
    pgoff: u64,
    prot: u32,
    path: &'a str,
    ident: Vec<u8>,
    build_id: Option<Vec<u8>>,
}

fn dev_ino_key(major: u32, minor: u32, ino: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&major.to_le_bytes());
    v.extend_from_slice(&minor.to_le_bytes());
    v.extend_from_slice(&ino.to_le_bytes());
    v
}

/// Parses the helper's command line (without the program name).
///
/// # Errors
/// A usage message.
pub fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options::new(Channel::Port(None));
    let mut i = 0;
    let val = |i: &mut usize, flag: &str| -> Result<String, String> {
        *i += 1;
        args.get(*i)
            .cloned()
            .ok_or_else(|| format!("{flag} needs a value"))
    };
    while i < args.len() {
        let a = args[i].as_str();
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a, None),
        };
        let get = |i: &mut usize| match &inline {
            Some(v) => Ok(v.clone()),
            None => val(i, flag),
        };
        match flag {
            "--port" => o.channel = Channel::Port(Some(PathBuf::from(get(&mut i)?))),
            "--vsock" => {
                let v = get(&mut i)?;
                let (cid, port) = hvprof_proto::transport::parse_vsock(&v)
                    .ok_or_else(|| format!("--vsock wants CID:PORT, got {v:?}"))?;
                o.channel = Channel::Vsock { cid, port };
            }
            "--tcp" => o.channel = Channel::Tcp(get(&mut i)?),
            "--freq" => {
                let v = get(&mut i)?;
                o.freq =
                    v.parse().ok().filter(|&f: &u32| f > 0).ok_or_else(|| {
                        format!("--freq wants a positive number of Hz, got {v:?}")
                    })?;
            }
            "--no-sampling" => o.freq = 0,
            "--duration" => {
                let v = get(&mut i)?;
                let s: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| format!("--duration wants seconds, got {v:?}"))?;
                o.duration = Some(Duration::from_secs_f64(s));
            }
            "--proc" => o.proc_root = PathBuf::from(get(&mut i)?),
            "--no-retry" => o.no_retry = true,
            "-v" | "--verbose" => o.verbose = true,
            _ => return Err(format!("unknown argument {a:?}")),
        }
        i += 1;
    }
    Ok(o)
}

/// The `--help` text.
pub const USAGE: &str = "\
hvprof-guest: hvprof's in-guest helper. Streams the guest's symbols, processes, memory maps,
context switches and (unless --no-sampling) its own cpu-clock samples to hvprof on the host.

USAGE: hvprof-guest [--port PATH | --vsock CID:PORT | --tcp HOST:PORT] [--freq HZ]
                    [--no-sampling] [--duration SECONDS] [-v]

  --port PATH        virtio-serial port (default: the port named org.hvprof.0, found via
                     /dev/virtio-ports/ or /sys/class/virtio-ports/*/name)
  --vsock CID:PORT   AF_VSOCK (the host is CID 2)
  --tcp HOST:PORT    TCP (QEMU user networking: the host is 10.0.2.2)
  --freq HZ          sampling frequency inside the guest (default 1000)
  --no-sampling      sideband and symbols only (hosts that see guest IPs themselves)
  --duration S       stop after S seconds (default: until SIGINT/SIGTERM)
  -v, --verbose      progress on stderr
Runs as root in the guest (system-wide perf events, kallsyms).";

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn command_lines() {
        let o = parse_args(&[]).unwrap();
        assert_eq!(o.channel, Channel::Port(None));
        assert_eq!(o.freq, 1000);
        let o = parse_args(&args("--tcp 127.0.0.1:9 --freq 99 --duration 2.5")).unwrap();
        assert_eq!(o.channel, Channel::Tcp("127.0.0.1:9".into()));
        assert_eq!(o.freq, 99);
        assert_eq!(o.duration, Some(Duration::from_millis(2500)));
        let o = parse_args(&args("--vsock=2:5000 --no-sampling")).unwrap();
        assert_eq!(o.channel, Channel::Vsock { cid: 2, port: 5000 });
        assert_eq!(o.freq, 0);
        assert!(parse_args(&args("--freq 0")).is_err());
        assert!(parse_args(&args("--bogus")).is_err());
        assert!(parse_args(&args("--tcp")).is_err());
        assert!(parse_args(&args("--duration -1")).is_err());
    }
}

//! The host end of the helper channel: where to find the helper ([`HelperSpec`]), a receiver
//! thread that decodes its frames into a [`GuestModel`], and clock pings.
//!
//! Stage: channel → **receiver** → guest model. Input: a spec (`unix:PATH` — QEMU's
//! virtio-serial chardev socket, `tcp:ADDR`, `vsock:CID:PORT`); output: a [`HelperConn`]
//! whose model fills while the session runs.
//!
//! Who dials: for `unix:` the host connects to QEMU's listening chardev socket; for `tcp:`
//! and `vsock:` the host listens and the helper dials (`hvprof-guest --tcp 10.0.2.2:PORT`,
//! `--vsock 2:PORT`), so the guest needs no open port. A helper that reconnects is accepted
//! again; a new hello with the same boot id continues the model.
//!
//! Guest bytes are untrusted: frames are bounded by [`Limits`], the model by its
//! [`Budget`]; any violation drops that connection with the reason in
//! [`ConnStatus::last_error`] and a model note. Nothing the guest sends names a host path.
//!
//! ```no_run
//! use hvprof::active::conn::{connect, HelperSpec};
//! let spec: HelperSpec = "unix:/tmp/hvprof-vm.sock".parse().unwrap();
//! let conn = connect(&spec).unwrap();
//! conn.wait_ready(std::time::Duration::from_secs(60));
//! let model = conn.finish();
//! println!("{} guest processes", model.processes().len());
//! ```

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hvprof_perf::clock::PerfNow;
use hvprof_proto::sys::{poll_one, VsockListener};
use hvprof_proto::transport::Stream;
use hvprof_proto::{FrameDecoder, Limits, Message, CLOCK_PERF_LOCAL};

use super::clock::{read_tsc_offsets, ClockSync, PerfClockParams, RoundTrip, TscConversion};
use super::error::{ActiveError, HelperSpec};
use super::model::{Budget, GuestModel};
use crate::report::guest::ConnStatus;

/// Connection options.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// VMM pid the model belongs to.
    pub vm_pid: i32,
    /// vCPU index → host thread.
    pub vcpus: Vec<(u32, Option<i32>)>,
    /// KVM debugfs (`/sys/kernel/debug/kvm`) for TSC offsets; None: round trips only.
    pub kvm_debugfs: Option<PathBuf>,
    /// Frame limits.
    pub limits: Limits,
    /// Model limits.
    pub budget: Budget,
    /// Interval between clock pings after the first burst.
    pub ping_interval: Duration,
    /// Connections accepted over the session (a misbehaving guest cannot loop forever).
    pub max_connections: u32,
}

impl Default for ConnectOptions {
    fn default() -> ConnectOptions {
        ConnectOptions {
            vm_pid: 0,
            vcpus: Vec::new(),
            kvm_debugfs: None,
            limits: Limits::default(),
            budget: Budget::default(),
            ping_interval: Duration::from_secs(1),
            max_connections: 64,
        }
    }
}

struct Shared {
    model: Mutex<GuestModel>,
    status: Mutex<ConnStatus>,
    changed: Condvar,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A live connection to a guest helper.
pub struct HelperConn {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    spec: HelperSpec,
}

impl std::fmt::Debug for HelperConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelperConn")
            .field("spec", &self.spec)
            .field("status", &self.status())
            .finish()
    }
}

/// [`connect_with`] with default options (VM pid 0: set it with [`connect_with`]).
///
/// # Errors
/// As [`connect_with`].
pub fn connect(spec: &HelperSpec) -> Result<HelperConn, ActiveError> {
    connect_with(spec, ConnectOptions::default())
}

enum Endpoint {
    Unix(PathBuf),
    Tcp(TcpListener),
    Vsock(VsockListener, Option<u32>),
}

/// Opens the endpoint (connects to the unix socket, or binds the TCP/vsock listener) and
/// starts the receiver thread. Returns at once; the model fills as frames arrive.
///
/// # Errors
/// [`ActiveError::Connect`] when the unix socket refuses (QEMU not running with the
/// chardev), [`ActiveError::Listen`] when the listener cannot bind (vsock: no
/// `/dev/vhost-vsock` / `vsock` module on the host), [`ActiveError::Thread`].
pub fn connect_with(spec: &HelperSpec, opts: ConnectOptions) -> Result<HelperConn, ActiveError> {
    let (endpoint, first) = match spec {
        HelperSpec::Unix(p) => {
            let s = UnixStream::connect(p).map_err(|source| ActiveError::Connect {
                spec: spec.to_string(),
                source,
            })?;
            (Endpoint::Unix(p.clone()), Some(Stream::Unix(s)))
        }
        HelperSpec::Tcp(a) => {
            let l = TcpListener::bind(a.as_str()).map_err(|source| ActiveError::Listen {
                spec: spec.to_string(),
                source,
            })?;
            l.set_nonblocking(true)
                .map_err(|source| ActiveError::Listen {
                    spec: spec.to_string(),
                    source,
                })?;
            (Endpoint::Tcp(l), None)
        }
        HelperSpec::Vsock { cid, port } => {
            let l = VsockListener::bind(*port).map_err(|source| ActiveError::Listen {
                spec: spec.to_string(),
                source,
            })?;
            (Endpoint::Vsock(l, *cid), None)
        }
    };
    let mut model = GuestModel::new(opts.vm_pid, opts.budget);
    model.set_vcpu_threads(&opts.vcpus);
    let shared = Arc::new(Shared {
        model: Mutex::new(model),
        status: Mutex::new(ConnStatus::default()),
        changed: Condvar::new(),
        stop: AtomicBool::new(false),
    });
    let sh = shared.clone();
    let thread = std::thread::Builder::new()
        .name("hvprof-helper-rx".into())
        .spawn(move || {
            receiver(&sh, endpoint, first, &opts);
            lock(&sh.status).finished = true;
            sh.changed.notify_all();
        })
        .map_err(ActiveError::Thread)?;
    Ok(HelperConn {
        shared,
        thread: Some(thread),
        spec: spec.clone(),
    })
}

impl HelperConn {
    /// The spec this connection was made with.
    pub fn spec(&self) -> &HelperSpec {
        &self.spec
    }

    /// A snapshot of the receiver's status.
    pub fn status(&self) -> ConnStatus {
        lock(&self.shared.status).clone()
    }

    /// The model, locked (hold it briefly: the receiver waits meanwhile).
    pub fn model(&self) -> MutexGuard<'_, GuestModel> {
        lock(&self.shared.model)
    }

    /// Waits until the helper's initial state (hello … ready) has arrived, or `timeout`.
    /// Returns whether it is ready.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, |m, _| m.is_ready())
    }

    /// Waits until `f(model, status)` holds or `timeout`; returns whether it held.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&GuestModel, &ConnStatus) -> bool,
    ) -> bool {
        let end = Instant::now() + timeout;
        loop {
            {
                let st = lock(&self.shared.status);
                let m = lock(&self.shared.model);
                if f(&m, &st) {
                    return true;
                }
                if st.finished {
                    return false;
                }
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            let st = lock(&self.shared.status);
            let _ = self
                .shared
                .changed
                .wait_timeout(st, (end - now).min(Duration::from_millis(50)));
        }
    }

    /// Stops the receiver and returns the model.
    pub fn finish(mut self) -> GuestModel {
        self.stop_thread();
        let status = self.status();
        let mut m = std::mem::replace(
            &mut *lock(&self.shared.model),
            GuestModel::new(0, Budget::default()),
        );
        if let Some(e) = status.last_error {
            m.note(format!("guest helper connection dropped: {e}"));
        }
        m
    }

    fn stop_thread(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HelperConn {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// A source of host perf-clock time for pings.
struct HostClock {
    now: Option<PerfNow>,
}

impl HostClock {
    fn now(&mut self) -> Option<u64> {
        self.now.as_mut()?.now()
    }

    fn page(&self) -> Option<PerfClockParams> {
        let p = self.now.as_ref()?.page();
        p.cap_user_time_zero.then_some(PerfClockParams {
            time_shift: p.time_shift,
            time_mult: p.time_mult,
            time_zero: p.time_zero,
        })
    }
}

fn next_stream(shared: &Shared, ep: &Endpoint, spec_err: &mut Option<String>) -> Option<Stream> {
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return None;
        }
        match ep {
            Endpoint::Unix(p) => match UnixStream::connect(p) {
                Ok(s) => return Some(Stream::Unix(s)),
                Err(e) => {
                    *spec_err = Some(format!("reconnecting to {}: {e}", p.display()));
                    std::thread::sleep(Duration::from_millis(500));
                }
            },
            Endpoint::Tcp(l) => match poll_one(l.as_raw_fd(), false, Duration::from_millis(100)) {
                Ok(p) if p.readable => match l.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_nodelay(true);
                        return Some(Stream::Tcp(s));
                    }
                    Err(_) => continue,
                },
                Ok(_) => continue,
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            },
            Endpoint::Vsock(l, want) => {
                match poll_one(l.as_raw_fd(), false, Duration::from_millis(100)) {
                    Ok(p) if p.readable => match l.accept() {
                        Ok((f, cid)) => {
                            if want.is_some_and(|w| w != cid) {
                                *spec_err = Some(format!(
                                    "refused a vsock connection from CID {cid} (expected {})",
                                    want.unwrap_or_default()
                                ));
                                continue;
                            }
                            return Some(Stream::File(f));
                        }
                        Err(_) => continue,
                    },
                    Ok(_) => continue,
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }
    }
}

fn receiver(shared: &Shared, ep: Endpoint, mut first: Option<Stream>, opts: &ConnectOptions) {
    let mut clock = HostClock {
        now: PerfNow::open().ok(),
    };
    if clock.now.is_none() {
        lock(&shared.model).note(
            "cannot read the host perf clock (perf_event_open denied): guest times are not related to host times",
        );
    }
    let mut err_note = None;
    let mut n = 0;
    while n < opts.max_connections {
        let stream = match first.take() {
            Some(s) => s,
            None => match next_stream(shared, &ep, &mut err_note) {
                Some(s) => s,
                None => return,
            },
        };
        n += 1;
        {
            let mut st = lock(&shared.status);
            st.connections += 1;
            st.connected = true;
        }
        shared.changed.notify_all();
        let r = session(shared, stream, &mut clock, opts);
        lock(&shared.model).disconnected();
        {
            let mut st = lock(&shared.status);
            st.connected = false;
            if let Err(e) = r {
                st.last_error = Some(e.clone());
                drop(st);
                lock(&shared.model).note(format!("guest helper connection dropped: {e}"));
            }
        }
        shared.changed.notify_all();
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        if matches!(ep, Endpoint::Unix(_)) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    lock(&shared.model).note(format!(
        "stopped accepting helper connections after {} attempts",
        opts.max_connections
    ));
}

/// Most bytes skipped looking for the first frame of a stream joined mid-way.
const MAX_RESYNC_SKIP: u64 = 16 << 20;
/// Pings sent back to back after a hello, 10 ms apart.
const PING_BURST: u32 = 16;

fn setup_tsc(model: &mut GuestModel, clock: &HostClock, opts: &ConnectOptions) {
    let Some(h) = model.hello() else { return };
    let c = h.clock;
    if c.clock_id != CLOCK_PERF_LOCAL || !c.cap_user_time_zero {
        return;
    }
    let (Some(host), Some(dbg)) = (clock.page(), opts.kvm_debugfs.as_deref()) else {
        return;
    };
    let vcpus = read_tsc_offsets(dbg, opts.vm_pid);
    if vcpus.is_empty() {
        return;
    }
    model.clock = ClockSync::Tsc(TscConversion {
        host,
        guest: PerfClockParams {
            time_shift: c.time_shift,
            time_mult: c.time_mult,
            time_zero: c.time_zero,
        },
        vcpus,
    });
}

fn session(
    shared: &Shared,
    mut stream: Stream,
    clock: &mut HostClock,
    opts: &ConnectOptions,
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("channel I/O: {e}");
    stream
        .write_all(
            &Message::HostHello {
                host_version: env!("CARGO_PKG_VERSION").into(),
            }
            .to_frame(),
        )
        .map_err(io)?;
    let mut dec = FrameDecoder::new(opts.limits);
    let mut seen_hello = false;
    let mut buf = vec![0u8; 256 << 10];
    let mut seq: u32 = 0;
    let mut outstanding: HashMap<u32, u64> = HashMap::new();
    let mut burst = 0u32;
    let mut next_ping = Instant::now();
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if seen_hello && Instant::now() >= next_ping && clock.now.is_some() {
            if let Some(t0) = clock.now() {
                seq = seq.wrapping_add(1);
                if outstanding.len() > 64 {
                    outstanding.clear();
                }
                outstanding.insert(seq, t0);
                stream
                    .write_all(&Message::Ping { seq, host_time: t0 }.to_frame())
                    .map_err(io)?;
            }
            next_ping = Instant::now()
                + if burst < PING_BURST {
                    burst += 1;
                    Duration::from_millis(10)
                } else {
                    opts.ping_interval
                };
        }
        let p = stream.poll(false, Duration::from_millis(10)).map_err(io)?;
        if !p.readable {
            if p.hangup {
                return Ok(());
            }
            continue;
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        let t_rx = clock.now();
        dec.push(&buf[..n]);
        let mut model = lock(&shared.model);
        let mut frames = 0u64;
        let mut skipped = 0u64;
        let mut bye = None;
        let mut result = Ok(());
        loop {
            match dec.next_message() {
                Ok(None) => break,
                Ok(Some(m)) => {
                    frames += 1;
                    match m {
                        Message::Pong {
                            seq,
                            host_time,
                            guest_time,
                        } => {
                            if outstanding.remove(&seq) == Some(host_time) {
                                if let (Some(t1), false) =
                                    (t_rx, matches!(model.clock, ClockSync::Tsc(_)))
                                {
                                    if !matches!(model.clock, ClockSync::RoundTrip(_)) {
                                        model.clock = ClockSync::RoundTrip(RoundTrip::default());
                                    }
                                    if let ClockSync::RoundTrip(rt) = &mut model.clock {
                                        rt.add(host_time, t1, guest_time);
                                    }
                                }
                            }
                        }
                        Message::Hello(h) => {
                            seen_hello = true;
                            let same_boot = model.hello().is_some_and(|o| o.boot_id == h.boot_id);
                            if !same_boot {
                                model.clock = ClockSync::None;
                                burst = 0;
                                next_ping = Instant::now();
                            }
                            if let Err(e) = model.apply(Message::Hello(h)) {
                                result = Err(e.to_string());
                                break;
                            }
                            if !matches!(model.clock, ClockSync::Tsc(_)) {
                                setup_tsc(&mut model, clock, opts);
                            }
                        }
                        Message::Bye { reason } => bye = Some(reason),
                        m if !seen_hello => {
                            let _ = m;
                            model.note("guest helper data before its hello was skipped");
                        }
                        m => {
                            if let Err(e) = model.apply(m) {
                                result = Err(e.to_string());
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    if !seen_hello && skipped + status_skipped(shared) < MAX_RESYNC_SKIP {
                        skipped += dec.resync() as u64;
                        continue;
                    }
                    result = Err(format!("protocol error: {e}"));
                    break;
                }
            }
        }
        drop(model);
        {
            let mut st = lock(&shared.status);
            st.frames += frames;
            st.bytes += n as u64;
            st.skipped_bytes += skipped;
            if bye.is_some() {
                st.bye = bye;
            }
        }
        shared.changed.notify_all();
        result?;
    }
}

fn status_skipped(shared: &Shared) -> u64 {
    lock(&shared.status).skipped_bytes
}

/// True when `p` looks like a QEMU chardev socket path that exists.
pub fn unix_socket_exists(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            "unix:/run/a.sock".parse::<HelperSpec>().unwrap(),
            HelperSpec::Unix("/run/a.sock".into())
        );
        assert_eq!(
            "/run/a.sock".parse::<HelperSpec>().unwrap(),
            HelperSpec::Unix("/run/a.sock".into())
        );
        assert_eq!(
            "tcp:127.0.0.1:7000".parse::<HelperSpec>().unwrap(),
            HelperSpec::Tcp("127.0.0.1:7000".into())
        );
        assert_eq!(
            "vsock:3:5000".parse::<HelperSpec>().unwrap(),
            HelperSpec::Vsock {
                cid: Some(3),
                port: 5000
            }
        );
        assert_eq!(
            "vsock:5000".parse::<HelperSpec>().unwrap(),
            HelperSpec::Vsock {
                cid: None,
                port: 5000
            }
        );
        for bad in ["", "unix:", "tcp:", "vsock:x:1", "vsock:1:y", "http://x"] {
            assert!(bad.parse::<HelperSpec>().is_err(), "{bad}");
        }
        assert_eq!(
            "vsock:3:5000".parse::<HelperSpec>().unwrap().to_string(),
            "vsock:3:5000"
        );
    }
}

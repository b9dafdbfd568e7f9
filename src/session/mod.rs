//! A recording session, end to end: discover → counters → ring buffers → collection →
//! attribution → aggregation. This is what `hvprof record` runs.
//!
//! ```no_run
//! # fn main() -> hvprof::Result<()> {
//! use hvprof::session::{record, RecordOptions, Scope};
//! let mut opts = RecordOptions::new(Scope::Vms(vec![1234]));
//! opts.duration = Some(std::time::Duration::from_secs(5));
//! let out = record(&opts)?;
//! print!("{}", hvprof::output::text::render(&out.profile, 10));
//! # Ok(()) }
//! ```

mod sink;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use hvprof_perf::record::RecordDecoder;
use hvprof_perf::{PerfFd, RingBuffer, Target};
use hvprof_symbols::Kallsyms;

use crate::active::ActiveSession;
use crate::aggregate::Aggregator;
use crate::attribute::{Attributor, HostSymbols};
use crate::collect::{Batch, ReaderSet};
use crate::counters::{open_counter, CounterSpec, EventSpec};
use crate::discover::{self, Vm};
use crate::error::{Error, Result};
use crate::model::{Machines, VmId};
use crate::recording::{synth, HvprofSection, Recorder};
use crate::report::{Meta, Profile};
use hvprof_rt::StopToken;
use sink::Sink;

/// What to profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// These VMM processes: one counter per thread (vCPU threads and the VMM's other threads).
    Vms(Vec<i32>),
    /// Every host CPU (`-a`): one counter per CPU; VMs found at start are reported by name.
    SystemWide,
}

/// Options of a recording session.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// What to profile.
    pub scope: Scope,
    /// The counter to open.
    pub counter: CounterSpec,
    /// Data pages per ring buffer (power of two). 64 pages = 256 KiB with 4 KiB pages.
    pub ring_pages: usize,
    /// Stop after this long (None: until SIGINT, the workload's end, or the VM's exit).
    pub duration: Option<Duration>,
    /// Guest symbol maps (kallsyms / System.map format), per VM pid; `None` applies to every VM.
    pub guest_kallsyms: Vec<(Option<i32>, PathBuf)>,
    /// Where `/proc` and `/sys` live (`/` normally).
    pub root: PathBuf,
    /// KVM debugfs directory, if mounted.
    pub debugfs: Option<PathBuf>,
    /// Write a recording here.
    pub output: Option<PathBuf>,
    /// The run's stop token: stopped by the caller (a signal, a workload that ended) or by
    /// the session itself (duration reached, VM gone); its reason is `stopped_because`.
    pub stop: StopToken,
    /// Whether the host hides guest IPs, and why. None: hidden when the event excludes guest
    /// mode, else decided from the run's samples.
    pub guest_ips_hidden: Option<(bool, String)>,
    /// Why guest IPs may be hidden on this host, added to the report's reason when the run's
    /// samples show it. None: from `hvprof detect` of the host.
    pub guest_ip_hint: Option<String>,
    /// Active mode: the in-guest helper's channel (one VM only).
    pub active: Option<crate::active::HelperSpec>,
    /// Active mode: how long to wait for the helper's initial state before sampling starts.
    pub active_ready_timeout: Duration,
}

impl RecordOptions {
    /// Defaults: cpu-clock at 1000 Hz, 64-page rings, live system.
    pub fn new(scope: Scope) -> RecordOptions {
        RecordOptions {
            scope,
            counter: CounterSpec::default(),
            ring_pages: 64,
            duration: None,
            guest_kallsyms: Vec::new(),
            root: PathBuf::from("/"),
            debugfs: discover::default_debugfs(),
            output: None,
            stop: StopToken::new(),
            guest_ips_hidden: None,
            guest_ip_hint: None,
            active: None,
            active_ready_timeout: Duration::from_secs(120),
        }
    }
}

/// What a session produced.
#[derive(Debug)]
pub struct RecordOutcome {
    /// The full profile (every symbol kept; renderers cut the lists).
    pub profile: Profile,
    /// Why collection stopped, in words.
    pub stopped_because: String,
    /// With `-o`: the samples written to the recording (the profile then holds only losses;
    /// attribution happens at report time).
    pub samples_written: Option<u64>,
}

/// Runs a session until its duration ends, `opts.stop` is stopped (a signal, a workload that
/// ended), or every monitored thread exited (the VM is gone).
///
/// # Errors
/// [`Error::NoSuchProcess`] / [`Error::NotAVm`] for a bad pid, [`Error::Symbols`] for an
/// unreadable guest symbol file, [`Error::PerfEventOpen`] when no counter can be opened (the
/// errno tells why: permission, unsupported event), [`Error::RingMmap`], [`Error::Write`],
/// [`Error::Active`] when active mode's helper does not answer.
pub fn record(opts: &RecordOptions) -> Result<RecordOutcome> {
    record_live(opts, None)
}

/// A live view of a running session: every `every`, `show` gets a snapshot of the profile so
/// far (`meta.duration_ns` is the time since sampling started; on-CPU times come only at the
/// end). `hvprof top` is built on it.
pub struct Live<'a> {
    /// How often to take a snapshot.
    pub every: Duration,
    /// Called with each snapshot, on the session's thread.
    pub show: &'a mut dyn FnMut(&Profile),
}

impl std::fmt::Debug for Live<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").field("every", &self.every).finish()
    }
}

/// [`record`], with a [`Live`] view of the aggregate while it runs. System-wide (`-a`), the
/// VMs are discovered again every 2 s of a live run, so VMs that start are attributed from
/// then on (their threads' samples were host samples until then) and VMs that exit drop out
/// of the snapshots.
///
/// # Errors
/// As [`record`].
pub fn record_live(opts: &RecordOptions, mut live: Option<Live<'_>>) -> Result<RecordOutcome> {
    if opts.ring_pages == 0 || !opts.ring_pages.is_power_of_two() {
        return Err(Error::InvalidOption(format!(
            "ring buffer size (-m) must be a power of two number of pages, got {}",
            opts.ring_pages
        )));
    }
    let proc_root = opts.root.join("proc");
    let mut notes = Vec::new();
    let vms = discover_vms(opts, &proc_root, &mut notes)?;
    let mut plan = plan_event(opts, &mut notes)?;
    // A recording also keeps the sideband (new mappings, names) for report-time symbols.
    plan.counter.sideband = opts.output.is_some();
    // A recording attributes at report time: it needs no host symbols now.
    let host = if opts.output.is_some() {
        HostSymbols::default()
    } else {
        HostSymbols::load(&opts.root)
    };
    if let Some(e) = &host.kallsyms_error {
        notes.push(format!("host kernel symbols unavailable: {e}"));
    }
    let machines = build_machines(opts, &vms)?;
    let mut attributor = Attributor::new(host, &proc_root, Arc::clone(&machines));
    for vm in &vms {
        attributor.snapshot_maps(vm.pid);
    }
    let mut meta = session_meta(opts, &plan.counter);
    let active = start_active(opts, &vms, &mut notes)?;
    let counters = open_counters(opts, &plan.counter, &vms, &mut notes)?;
    let writer = match &opts.output {
        Some(p) => Some(start_recording(opts, p, &plan.counter, &counters, &vms)?),
        None => None,
    };

    // Collect: every counter enabled at once, on-CPU time measured around the window.
    let on_cpu_start: HashMap<i32, u64> = machines
        .guests()
        .flat_map(|g| g.threads.keys())
        .filter_map(|&tid| Some((tid, on_cpu_ns(&proc_root, tid)?)))
        .collect();
    let t0 = Instant::now();
    for f in &counters.fds {
        f.enable()?;
    }
    let target = counters.fds.first().map_or(Target::Cpu(0), |f| f.target());
    let decoder = RecordDecoder::from_attr(&crate::counters::counter_attr(&plan.counter, target)?);
    let mut sink = Sink {
        attributor,
        decoder,
        pool: counters.readers.pool(),
        agg: Aggregator::new(Arc::clone(&machines)),
        writer,
        hung_up: HashSet::new(),
        notes,
        active_vm: active.as_ref().map(|(_, pid)| VmId::Vmm(*pid)),
        host_tagged: Vec::new(),
        ring_notes: 0,
        active_samples: Vec::new(),
        guest_views: Vec::new(),
    };
    let mut view = live.as_mut().map(|l| LiveState {
        every: l.every,
        show: &mut *l.show,
        meta: meta.clone(),
        hidden: plan.guest_ips_hidden.clone(),
        last: t0,
        last_discovery: t0,
    });
    collect(opts, &mut sink, &counters, t0, view.as_mut())?;
    let stopped_because = opts.stop.reason().unwrap_or_default();
    // Stop every counter at once, so the sampling window is the same for all threads and
    // matches the duration and on-CPU times reported; readers then drain what is left.
    for f in &counters.fds {
        let _ = f.disable();
    }
    let elapsed = t0.elapsed();
    let on_cpu_end: HashMap<i32, u64> = on_cpu_start
        .keys()
        .filter_map(|tid| Some((*tid, on_cpu_ns(&proc_root, *tid)?)))
        .collect();
    let Counters { readers, rx, .. } = counters;
    readers.stop_and_drain(&rx, |b| sink.handle(b))?;
    let active_vm_pid = active.as_ref().map(|(_, vm)| *vm);
    if let Some((session, vm)) = active {
        sink.finish_active(session, vm)?;
    }
    let mut on_cpu = Vec::new();
    for (tid, start) in &on_cpu_start {
        if let Some(&end) = on_cpu_end.get(tid) {
            let ns = end.saturating_sub(*start);
            sink.agg.set_on_cpu(*tid, ns);
            on_cpu.push((*tid, ns));
        }
    }
    let notes = std::mem::take(&mut sink.notes);
    for n in &notes {
        sink.agg.note(n.clone());
    }
    meta.duration_ns = elapsed.as_nanos() as u64;
    let Sink {
        mut agg,
        writer,
        active_samples,
        guest_views,
        ..
    } = sink;
    let samples_written = match writer {
        Some(w) => {
            let n = w.samples();
            let section = HvprofSection {
                version: crate::recording::SECTION_VERSION,
                meta: Some(meta.clone()),
                vms: machines.guests().cloned().collect(),
                guest_kallsyms: opts.guest_kallsyms.clone(),
                on_cpu,
                notes,
                hidden: plan.guest_ips_hidden.clone(),
                hint: plan.guest_ip_hint.clone(),
                active_vm: active_vm_pid,
                active_samples,
                guest_views,
                detection: Some(plan.detection.clone()),
            };
            w.finish(&section, &proc_root)?;
            Some(n)
        }
        None => None,
    };
    if let Some(h) = plan.guest_ip_hint {
        agg.set_guest_ip_hint(h);
    }
    let profile = agg.snapshot(meta, plan.guest_ips_hidden, usize::MAX);
    Ok(RecordOutcome {
        profile,
        stopped_because,
        samples_written,
    })
}

/// Step 1: the VMs to profile, with notes on vCPUs whose thread was not found.
fn discover_vms(
    opts: &RecordOptions,
    proc_root: &Path,
    notes: &mut Vec<String>,
) -> Result<Vec<Vm>> {
    let vms: Vec<Vm> = match &opts.scope {
        Scope::Vms(pids) => pids
            .iter()
            .map(|&pid| discover::inspect(proc_root, opts.debugfs.as_deref(), pid))
            .collect::<Result<_>>()?,
        Scope::SystemWide => discover::find_vms(proc_root, opts.debugfs.as_deref())?,
    };
    for vm in &vms {
        let missing: Vec<String> = vm
            .vcpus
            .iter()
            .filter(|v| v.tid.is_none())
            .map(|v| v.index.to_string())
            .collect();
        if vm.accel == "tcg" && missing.len() == vm.vcpus.len() {
            notes.push(format!(
                "VM {} (pid {}): QEMU TCG without -name ...,debug-threads=on names no vCPU thread; its vCPU threads are recognised by their samples in QEMU's translated-code buffer",
                vm.name, vm.pid
            ));
        } else if !missing.is_empty() {
            notes.push(format!(
                "VM {} (pid {}): no thread found for vCPU {} (not running KVM_RUN, no debugfs, unknown thread names)",
                vm.name,
                vm.pid,
                missing.join(", ")
            ));
        }
    }
    Ok(vms)
}

/// The event actually used and what the report will say about guest IPs.
struct EventPlan {
    /// `hvprof detect`'s result for this host, as JSON (kept in recordings).
    detection: serde_json::Value,
    counter: CounterSpec,
    guest_ip_hint: Option<String>,
    guest_ips_hidden: Option<(bool, String)>,
}

/// Step 2: what this host can measure (`hvprof detect`): the PMU decides the event, the KVM
/// backend explains hidden guest IPs.
fn plan_event(opts: &RecordOptions, notes: &mut Vec<String>) -> Result<EventPlan> {
    let src = if opts.root == Path::new("/") {
        hvprof_detect::Source::live()
    } else {
        hvprof_detect::Source::tree(&opts.root)
    };
    let detection = hvprof_detect::detect(&src);
    let host = detection.host.clone();
    let mut counter = opts.counter.clone();
    if counter.event.is_hardware() && !host.hardware_pmu {
        notes.push(format!(
            "no hardware PMU on this host (event sources: {}): using cpu-clock instead of {}",
            host.event_sources.join(" "),
            counter.event.name
        ));
        counter.event = EventSpec::parse(host.default_event())?;
    }
    // Wake the reader when half the data area is full at most: a threshold as large as the
    // buffer (the kernel caps it there) would wake it only once records are being dropped.
    let half_ring = (opts.ring_pages * hvprof_perf::sys::page_size() / 2).max(8) as u32;
    counter.wakeup_bytes = counter.wakeup_bytes.min(half_ring);
    if let Some(crate::counters::CallGraph::Dwarf { .. }) = counter.call_graph {
        // Each sample carries its stack copy (8 KiB by default): waking the reader every 16 KiB
        // would mean a wake-up per two samples. A quarter of the ring leaves room while it drains.
        counter.wakeup_bytes = counter.wakeup_bytes.max(half_ring / 2);
    }
    let guest_ip_hint = opts
        .guest_ip_hint
        .clone()
        .or_else(|| host.guest_ips_hidden_reason());
    let guest_ips_hidden = opts.guest_ips_hidden.clone().or_else(|| {
        (counter.exclude_guest || counter.event.exclude_guest).then(|| {
            let mut why = "the event excludes guest mode (--exclude-guest, attr.exclude_guest=1), so the kernel reports no guest IP; a vCPU's samples taken while its guest ran land in the hypervisor's guest-interrupt path".to_string();
            if let Some(h) = &guest_ip_hint {
                why.push_str("; host: ");
                why.push_str(h);
            }
            (true, why)
        })
    });
    Ok(EventPlan {
        detection: serde_json::to_value(&detection).unwrap_or_default(),
        counter,
        guest_ip_hint,
        guest_ips_hidden,
    })
}

/// Step 3: the machine model: every VM, its vCPUs and threads, its guest symbols.
fn build_machines(opts: &RecordOptions, vms: &[Vm]) -> Result<Arc<Machines>> {
    let mut machines = Machines::new();
    for vm in vms {
        machines.add(vm.to_machine());
    }
    for (pid, path) in &opts.guest_kallsyms {
        let syms = Kallsyms::load(path).map_err(|source| Error::Symbols {
            path: path.clone(),
            source,
        })?;
        machines.set_guest_kernel_symbols(pid.map(VmId::Vmm), Arc::new(syms));
    }
    Ok(Arc::new(machines))
}

/// What was measured and where (the report's and the recording's header).
fn session_meta(opts: &RecordOptions, counter: &CounterSpec) -> Meta {
    let uts = nix::sys::utsname::uname().ok();
    let uts_field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uts.as_ref()
            .map(|u| f(u).to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    Meta {
        event: counter.event.name.clone(),
        rate: counter.rate,
        period_is_ns: counter.event.period_is_ns(),
        duration_ns: 0,
        mode: match opts.scope {
            Scope::Vms(_) => "threads".into(),
            Scope::SystemWide => "system-wide".into(),
        },
        host: uts_field(|u| u.nodename()),
        kernel: uts_field(|u| u.release()),
        start_unix_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    }
}

/// Step 4 (active mode): connect to the in-guest helper before sampling starts. No helper at
/// all is an error here, before any counter is opened; a slow one is a note.
fn start_active(
    opts: &RecordOptions,
    vms: &[Vm],
    notes: &mut Vec<String>,
) -> Result<Option<(ActiveSession, i32)>> {
    let (spec, vm) = match (&opts.active, vms) {
        (None, _) => return Ok(None),
        (Some(spec), [vm]) => (spec, vm),
        (Some(_), _) => {
            return Err(Error::InvalidOption(
                "active mode profiles exactly one VM: give one -p PID".into(),
            ))
        }
    };
    let ao = crate::active::ActiveOptions::new(spec.clone(), vm.pid)
        .with_vcpus(vm.vcpus.iter().map(|v| (v.index, v.tid)).collect())
        .with_debugfs(opts.debugfs.clone());
    let session = ActiveSession::start(&ao)?;
    let ready = session.await_helper(opts.active_ready_timeout, &mut || opts.stop.is_stopped())?;
    if ready == crate::active::Readiness::Partial {
        notes.push(format!(
            "the guest helper did not send its initial state within {:.0} s; guest symbols may be incomplete",
            opts.active_ready_timeout.as_secs_f64()
        ));
    }
    Ok(Some((session, vm.pid)))
}

/// A [`Live`] view's state inside [`collect`].
struct LiveState<'a> {
    every: Duration,
    show: &'a mut dyn FnMut(&Profile),
    meta: Meta,
    hidden: Option<(bool, String)>,
    last: Instant,
    last_discovery: Instant,
}

impl LiveState<'_> {
    /// Shows a snapshot when one is due; system-wide, rediscovers the VMs every 2 s.
    fn tick(&mut self, opts: &RecordOptions, sink: &mut Sink, t0: Instant) -> Result<()> {
        let now = Instant::now();
        if opts.scope == Scope::SystemWide && now - self.last_discovery >= Duration::from_secs(2) {
            self.last_discovery = now;
            let proc_root = opts.root.join("proc");
            if let Ok(vms) = discover::find_vms(&proc_root, opts.debugfs.as_deref()) {
                let known: Vec<VmId> = sink.agg.machines().guests().map(|g| g.id).collect();
                let found: Vec<VmId> = vms.iter().map(|v| VmId::Vmm(v.pid)).collect();
                if known != found {
                    let machines = build_machines(opts, &vms)?;
                    for vm in vms.iter().filter(|v| !known.contains(&VmId::Vmm(v.pid))) {
                        sink.attributor.snapshot_maps(vm.pid);
                    }
                    sink.attributor.set_machines(Arc::clone(&machines));
                    sink.agg.set_machines(machines);
                }
            }
        }
        if now - self.last >= self.every {
            self.last = now;
            let mut meta = self.meta.clone();
            meta.duration_ns = (now - t0).as_nanos() as u64;
            (self.show)(&sink.agg.snapshot(meta, self.hidden.clone(), usize::MAX));
        }
        Ok(())
    }
}

/// Step 5b (`-o`): the perf.data recording, started with the counters' attr and ids and the
/// records synthesized from /proc (threads, executable mappings, the kernel map).
fn start_recording(
    opts: &RecordOptions,
    path: &Path,
    counter: &CounterSpec,
    c: &Counters,
    vms: &[Vm],
) -> Result<Recorder> {
    let target = c.fds.first().map_or(Target::Cpu(0), |f| f.target());
    let attr = crate::counters::counter_attr(counter, target)?;
    let ids = c.fds.iter().filter_map(|f| f.id().ok()).collect();
    let proc_root = opts.root.join("proc");
    let pids: Vec<i32> = vms.iter().map(|v| v.pid).collect();
    let scope = match opts.scope {
        Scope::Vms(_) => Some(pids.as_slice()),
        Scope::SystemWide => None,
    };
    // Read once: the kernel's map now, the kernel symbols the samples hit at the end.
    let kallsyms = std::fs::read_to_string(proc_root.join("kallsyms")).ok();
    let mut synthesized = Vec::new();
    synth::synthesize(
        &proc_root,
        scope,
        kallsyms.as_deref(),
        synth::SAMPLE_TYPE,
        &mut synthesized,
    );
    let mut r = Recorder::create(path, &attr, ids, &counter.event.name, &synthesized)?;
    r.keep_kallsyms(kallsyms);
    Ok(r)
}

/// The open counters of a session, their readers and the channel they feed.
struct Counters {
    fds: Vec<Arc<PerfFd>>,
    readers: ReaderSet,
    rx: Receiver<Batch>,
}

/// Step 5: one counter and ring per vCPU/VMM thread (`-p`) or per host CPU (`-a`), each with
/// its reader thread; disabled until [`record`] enables them all at once.
fn open_counters(
    opts: &RecordOptions,
    counter: &CounterSpec,
    vms: &[Vm],
    notes: &mut Vec<String>,
) -> Result<Counters> {
    let targets: Vec<Target> = match opts.scope {
        Scope::Vms(_) => vms
            .iter()
            .flat_map(|vm| vm.threads.iter().map(|t| Target::Thread(t.tid)))
            .collect(),
        Scope::SystemWide => hvprof_perf::sys::online_cpus(&opts.root)
            .into_iter()
            .map(Target::Cpu)
            .collect(),
    };
    let (tx, rx) = crossbeam_channel::bounded::<Batch>(1024);
    let mut readers = ReaderSet::new();
    let (mut first_err, mut vanished, mut fds) = (None, 0usize, Vec::new());
    for &t in &targets {
        let fd = match open_counter(counter, t) {
            Ok(fd) => fd,
            // A thread that exited between discovery and now is no error.
            Err(Error::PerfEventOpen { source, .. })
                if source.raw_os_error() == Some(libc::ESRCH) =>
            {
                vanished += 1;
                continue;
            }
            Err(e) => {
                first_err.get_or_insert(e);
                continue;
            }
        };
        let ring = RingBuffer::map(&fd, opts.ring_pages)?;
        let fd = Arc::new(fd);
        fds.push(fd.clone());
        readers.spawn(fd, ring, tx.clone())?;
    }
    if fds.is_empty() {
        return Err(first_err.unwrap_or_else(|| {
            Error::InvalidOption(if vanished > 0 {
                "every thread of the VM exited before its counter could be opened (the VM is gone)"
                    .into()
            } else {
                "nothing to profile: no threads or CPUs".into()
            })
        }));
    }
    if let Some(e) = first_err {
        notes.push(format!(
            "some counters could not be opened: {}",
            crate::error_chain(&e)
        ));
    }
    Ok(Counters { fds, readers, rx })
}

/// Step 6: feed the sink until the run's stop token stops: the duration, every monitored
/// thread gone, the readers gone, or the caller (signal, workload end).
fn collect(
    opts: &RecordOptions,
    sink: &mut Sink,
    c: &Counters,
    t0: Instant,
    mut live: Option<&mut LiveState<'_>>,
) -> Result<()> {
    let stop = &opts.stop;
    while !stop.is_stopped() {
        if let Some(l) = live.as_deref_mut() {
            l.tick(opts, sink, t0)?;
        }
        if opts.duration.is_some_and(|d| t0.elapsed() >= d) {
            stop.stop(format!(
                "duration of {:.1} s reached",
                t0.elapsed().as_secs_f64()
            ));
            break;
        }
        if sink.hung_up.len() == c.fds.len() {
            stop.stop("every monitored thread exited (the VM is gone)");
            sink.notes.push(
                "the VM exited during the collection; the report covers the time until then".into(),
            );
            break;
        }
        let wait = opts.duration.map_or(Duration::from_millis(50), |d| {
            d.saturating_sub(t0.elapsed())
                .min(Duration::from_millis(50))
        });
        match c.rx.recv_timeout(wait) {
            Ok(b) => sink.handle(b)?,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => stop.stop("all readers ended"),
        }
    }
    Ok(())
}

/// A thread's total time on CPU in ns (`se.sum_exec_runtime`, the first field of
/// `/proc/TID/task/TID/schedstat`, Documentation/scheduler/sched-stats.rst).
pub fn on_cpu_ns(proc_root: &Path, tid: i32) -> Option<u64> {
    crate::stat::steal::SchedStat::read(proc_root, tid, tid)
        .ok()
        .map(|s| s.on_cpu_ns)
}

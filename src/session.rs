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

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::RecvTimeoutError;
use hvprof_symbols::Kallsyms;

use crate::aggregate::Aggregator;
use crate::attribute::{Attributor, HostSymbols};
use crate::collect::{Batch, ReaderSet};
use crate::counters::{open_counter, CounterSpec, EventSpec};
use crate::discover::{self, Vm};
use crate::error::{Error, Result};
use crate::model::{Machines, VmId};
use crate::recording::{self, Entry, Header};
use crate::report::{Meta, Profile};
use crate::stop::StopToken;
use hvprof_perf::abi;
use hvprof_perf::record::{Record, RecordDecoder};
use hvprof_perf::{RingBuffer, Target};

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
}

/// Runs a session until its duration ends, `opts.stop` is stopped (a signal, a workload that
/// ended), or every monitored thread exited (the VM is gone).
///
/// # Errors
/// [`Error::NoSuchProcess`] / [`Error::NotAVm`] for a bad pid, [`Error::Symbols`] for an
/// unreadable guest symbol file, [`Error::PerfEventOpen`] when no counter can be opened (the
/// errno tells why: permission, unsupported event), [`Error::RingMmap`], [`Error::Write`].
pub fn record(opts: &RecordOptions) -> Result<RecordOutcome> {
    if opts.ring_pages == 0 || !opts.ring_pages.is_power_of_two() {
        return Err(Error::InvalidOption(format!(
            "ring buffer size (-m) must be a power of two number of pages, got {}",
            opts.ring_pages
        )));
    }
    let proc_root = opts.root.join("proc");
    let mut notes = Vec::new();

    // Discover.
    let vms: Vec<Vm> = match &opts.scope {
        Scope::Vms(pids) => pids
            .iter()
            .map(|&pid| discover::inspect(&proc_root, opts.debugfs.as_deref(), pid))
            .collect::<Result<_>>()?,
        Scope::SystemWide => discover::find_vms(&proc_root, opts.debugfs.as_deref())?,
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

    // What this host can measure (`hvprof detect`): the PMU decides the event, the KVM
    // backend explains hidden guest IPs.
    let src = if opts.root == Path::new("/") {
        hvprof_detect::Source::live()
    } else {
        hvprof_detect::Source::tree(&opts.root)
    };
    let host = hvprof_detect::detect(&src).host;
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

    // Symbols.
    let host = HostSymbols::load(&opts.root);
    if let Some(e) = &host.kallsyms_error {
        notes.push(format!("host kernel symbols unavailable: {e}"));
    }
    // The machine model: every VM, its vCPUs and threads, its guest symbols.
    let mut machines = Machines::new();
    for vm in &vms {
        machines.add(vm.to_machine());
    }
    for (pid, path) in &opts.guest_kallsyms {
        let syms = Kallsyms::load(path).map_err(|source| Error::Symbols {
            path: path.clone(),
            source,
        })?;
        machines.set_guest_kernel_symbols(pid.map(VmId::Vmm), Arc::new(syms));
    }
    let machines = Arc::new(machines);
    let mut attributor = Attributor::new(host, &proc_root, Arc::clone(&machines));

    // Aggregator (VMs and threads come from the machines).
    let agg = Aggregator::new(Arc::clone(&machines));
    for vm in &vms {
        attributor.snapshot_maps(vm.pid);
    }
    let start_unix_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let uts = nix::sys::utsname::uname().ok();
    let mut meta = Meta {
        event: counter.event.name.clone(),
        rate: counter.rate,
        period_is_ns: counter.event.period_is_ns(),
        duration_ns: 0,
        mode: match opts.scope {
            Scope::Vms(_) => "threads".into(),
            Scope::SystemWide => "system-wide".into(),
        },
        host: uts
            .as_ref()
            .map(|u| u.nodename().to_string_lossy().into_owned())
            .unwrap_or_default(),
        kernel: uts
            .as_ref()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        start_unix_ns,
    };
    let writer = match &opts.output {
        Some(p) => Some(recording::Writer::create(
            p,
            &Header {
                format: recording::FORMAT_NAME.into(),
                version: recording::FORMAT_VERSION,
                meta: meta.clone(),
                vms: machines.guests().cloned().collect(),
            },
        )?),
        None => None,
    };

    // Active mode: connect to the in-guest helper before sampling starts.
    let active = match (&opts.active, &vms[..]) {
        (None, _) => None,
        (Some(spec), [vm]) => {
            let ao = crate::active::ActiveOptions::new(spec.clone(), vm.pid)
                .with_vcpus(vm.vcpus.iter().map(|v| (v.index, v.tid)).collect())
                .with_debugfs(opts.debugfs.clone());
            let session = crate::active::ActiveSession::start(&ao)?;
            // No helper at all is an error here, before any counter is opened; a helper
            // that said hello but is slow is a note.
            let mut stop = || opts.stop.is_stopped();
            let ready = session.await_helper(opts.active_ready_timeout, &mut stop)?;
            if ready == crate::active::Readiness::Partial {
                notes.push(format!(
                    "the guest helper did not send its initial state within {:.0} s; guest symbols may be incomplete",
                    opts.active_ready_timeout.as_secs_f64()
                ));
            }
            Some((session, vm.pid))
        }
        (Some(_), _) => {
            return Err(Error::InvalidOption(
                "active mode profiles exactly one VM: give one -p PID".into(),
            ))
        }
    };

    // Counters and rings.
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
    let mut fds_opened = 0usize;
    let mut first_err = None;
    let mut vanished = 0usize;
    let mut enable_list = Vec::new();
    for &t in &targets {
        let fd = match open_counter(&counter, t) {
            Ok(fd) => fd,
            Err(e) => {
                // A thread that exited between discovery and now is no error.
                if let Error::PerfEventOpen { source, .. } = &e {
                    if source.raw_os_error() == Some(libc::ESRCH) {
                        vanished += 1;
                        continue;
                    }
                }
                first_err.get_or_insert(e);
                continue;
            }
        };
        let ring = RingBuffer::map(&fd, opts.ring_pages)?;
        let fd = Arc::new(fd);
        enable_list.push(fd.clone());
        readers.spawn(fd, ring, tx.clone())?;
        fds_opened += 1;
    }
    drop(tx);
    if fds_opened == 0 {
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
    let on_cpu_start: HashMap<i32, u64> = machines
        .guests()
        .flat_map(|g| g.threads.keys())
        .filter_map(|&tid| Some((tid, on_cpu_ns(&proc_root, tid)?)))
        .collect();
    let t0 = Instant::now();
    for f in &enable_list {
        f.enable()?;
    }

    // Collect.
    let mut sink = Sink {
        attributor,
        agg,
        writer,
        hung_up: HashSet::new(),
        notes,
        active_vm: active.as_ref().map(|(_, pid)| VmId::Vmm(*pid)),
        host_tagged: Vec::new(),
        ring_notes: 0,
    };
    let stop = &opts.stop;
    while !stop.is_stopped() {
        if opts.duration.is_some_and(|d| t0.elapsed() >= d) {
            stop.stop(format!(
                "duration of {:.1} s reached",
                t0.elapsed().as_secs_f64()
            ));
            break;
        }
        if sink.hung_up.len() == fds_opened {
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
        match rx.recv_timeout(wait) {
            Ok(b) => sink.handle(b)?,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => stop.stop("all readers ended"),
        }
    }
    let stopped_because = stop.reason().unwrap_or_default();
    // Stop every counter at once, so the sampling window is the same for all threads and
    // matches the duration and on-CPU times reported; readers then drain what is left.
    for f in &enable_list {
        let _ = f.disable();
    }
    let elapsed = t0.elapsed();
    let on_cpu_end: HashMap<i32, u64> = on_cpu_start
        .keys()
        .filter_map(|tid| Some((*tid, on_cpu_ns(&proc_root, *tid)?)))
        .collect();
    drop(enable_list);
    readers.stop_and_drain(&rx, |b| sink.handle(b))?;
    if let Some((session, vm)) = active {
        sink.finish_active(session, vm)?;
    }
    for (tid, start) in &on_cpu_start {
        if let Some(&end) = on_cpu_end.get(tid) {
            let ns = end.saturating_sub(*start);
            sink.agg.set_on_cpu(*tid, ns);
            sink.write(&Entry::OnCpu { tid: *tid, ns })?;
        }
    }
    for n in std::mem::take(&mut sink.notes) {
        sink.write(&Entry::Note { text: n.clone() })?;
        sink.agg.note(n);
    }
    meta.duration_ns = elapsed.as_nanos() as u64;
    let Sink {
        mut agg, writer, ..
    } = sink;
    if let Some(mut w) = writer {
        w.write(&Entry::End {
            duration_ns: meta.duration_ns,
            hidden: guest_ips_hidden.clone(),
            hint: guest_ip_hint.clone(),
        })?;
        w.finish()?;
    }
    if let Some(h) = guest_ip_hint {
        agg.set_guest_ip_hint(h);
    }
    let profile = agg.snapshot(meta, guest_ips_hidden, usize::MAX);
    Ok(RecordOutcome {
        profile,
        stopped_because,
    })
}

/// The aggregator side of a session: attributes each record and routes it to the aggregator,
/// the recording, or (active mode, guest-tagged samples of the VM) the merge with the guest.
struct Sink {
    attributor: Attributor,
    agg: Aggregator,
    writer: Option<recording::Writer>,
    hung_up: HashSet<Target>,
    notes: Vec<String>,
    /// Active mode: the VM whose guest-tagged samples are held back (with their vCPU index)
    /// for the merge with the helper's view.
    active_vm: Option<VmId>,
    host_tagged: Vec<(hvprof_perf::Sample, u32)>,
    ring_notes: usize,
}

/// Notes kept from ring errors and corrupt data; past this, they are counted.
const MAX_RING_NOTES: usize = 20;

impl Sink {
    /// Adds a note about ring data, bounded: a stream of corrupt batches must not grow the
    /// report without limit.
    fn ring_note(&mut self, n: String) {
        self.ring_notes += 1;
        if self.ring_notes <= MAX_RING_NOTES {
            self.notes.push(n);
        } else if self.ring_notes == MAX_RING_NOTES + 1 {
            self.notes.push(format!(
                "more ring errors after the first {MAX_RING_NOTES} were counted, not listed"
            ));
        }
    }

    fn write(&mut self, e: &Entry) -> Result<()> {
        match self.writer.as_mut() {
            Some(w) => w.write(e),
            None => Ok(()),
        }
    }

    fn handle(&mut self, b: Batch) -> Result<()> {
        // Losses belong to the ring's thread; a per-CPU ring's (tid -1) to no thread: the
        // kernel stamps a LOST record with whatever task runs when it is written.
        let owner_tid = |t: Target| match t {
            Target::Thread(tid) => tid,
            Target::Cpu(_) => -1,
        };
        let (target, bytes) = match b {
            Batch::Records { target, bytes } => (target, bytes),
            Batch::Hangup { target } => {
                self.hung_up.insert(target);
                return Ok(());
            }
            Batch::Error { target, message } => {
                self.ring_note(format!("{target}: {message}"));
                return Ok(());
            }
        };
        for r in RecordDecoder::new(abi::HVPROF_SAMPLE_TYPE).records(&bytes) {
            let entry = match r {
                Record::Sample(rec) => {
                    let s = rec.sample;
                    if let (Some(vm), true) = (self.active_vm, s.cpumode.is_guest()) {
                        let vcpu = match self.attributor.machines().thread(s.tid) {
                            Some((g, Some(t))) if g.id == vm => t.vcpu,
                            _ => None,
                        };
                        if let Some(i) = vcpu {
                            self.host_tagged.push((s, i));
                            continue;
                        }
                    }
                    let a = self.attributor.attribute(&s);
                    self.agg.add(&a);
                    Some(Entry::Sample(a))
                }
                Record::Lost { lost, .. } | Record::LostSamples { lost, .. } => {
                    let tid = owner_tid(target);
                    self.agg.add_lost(tid, lost);
                    Some(Entry::Lost { tid, n: lost })
                }
                Record::Throttle {
                    throttled: true, ..
                } => {
                    let tid = owner_tid(target);
                    self.agg.add_throttle(tid);
                    Some(Entry::Throttle { tid })
                }
                Record::Corrupt {
                    offset,
                    skipped,
                    reason,
                } => {
                    self.ring_note(format!(
                        "{target}: {skipped} bytes of corrupt ring data at offset {offset} skipped ({reason})"
                    ));
                    None
                }
                _ => None,
            };
            if let Some(e) = entry {
                self.write(&e)?;
            }
        }
        Ok(())
    }

    /// Active mode: merges what the helper told with the held-back guest-tagged samples.
    fn finish_active(&mut self, session: crate::active::ActiveSession, vm: i32) -> Result<()> {
        let held = std::mem::take(&mut self.host_tagged);
        let out = session.finish(&held);
        let in_class_table = !held.is_empty();
        if in_class_table {
            for (a, _) in &out.attributed {
                self.agg.add(a);
                self.write(&Entry::Sample(a.clone()))?;
            }
        } else {
            self.notes.push(format!(
                "VM {vm}: this host reports no guest IPs for the VM (QEMU TCG, or a host that hides them): the guest breakdown comes from the in-guest helper's own sampling ({} samples at {} Hz) and is shown beside the host's classes, not added to them",
                out.attributed.len(),
                out.summary.sampling_hz
            ));
        }
        self.notes.extend(out.notes.iter().cloned());
        let view = crate::report::GuestView {
            summary: out.summary,
            processes: out.processes,
            samples: out.attributed.len() as u64,
            in_class_table,
        };
        self.write(&Entry::GuestView {
            vm,
            view: Box::new(view.clone()),
        })?;
        self.agg.set_guest_view(VmId::Vmm(vm), view);
        Ok(())
    }
}

/// A thread's total time on CPU in ns (`se.sum_exec_runtime`, the first field of
/// `/proc/TID/task/TID/schedstat`, Documentation/scheduler/sched-stats.rst).
pub fn on_cpu_ns(proc_root: &Path, tid: i32) -> Option<u64> {
    crate::stat::steal::SchedStat::read(proc_root, tid, tid)
        .ok()
        .map(|s| s.on_cpu_ns)
}

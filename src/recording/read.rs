//! Reporting a perf.data file (hvprof's or perf's): attribution at report time.
//!
//! One pass over the data section in file order: MMAP/MMAP2 records build each process's maps
//! (hvprof never reads this host's /proc for a recording), samples go through the same
//! [`Attributor`] and [`Aggregator`] as a live session. VMs come from hvprof's section, or —
//! in a file perf wrote — from a first, cheap pass over the COMM records: a process with vCPU
//! thread names (`CPU n/KVM`, `fc_vcpu n`, ...) or guest-tagged samples is a VM.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hvprof_perf::perf_data::{Feature, PerfData};
use hvprof_perf::record::{Mmap, MmapFile, Record, RecordDecoder};
use hvprof_perf::{abi, CpuMode};
use hvprof_symbols::{Kallsyms, MapEntry, MapPath, Perms};

use super::HvprofSection;
use crate::aggregate::Aggregator;
use crate::attribute::{Attributor, HostSymbols, HostSymbolsState};
use crate::counters::Rate;
use crate::discover::vcpu_index_from_thread_name;
use crate::error::Result;
use crate::model::{GuestMachine, Machines, Thread, Vcpu, VmId};
use crate::report::Meta;

/// Corrupt records listed one by one in the notes; past this they are counted.
const MAX_CORRUPT_NOTES: usize = 20;

/// A recording read into an [`Aggregator`].
#[derive(Debug)]
pub struct Replay {
    /// What was measured (`duration_ns` set).
    pub meta: Meta,
    /// Every sample, attributed and aggregated.
    pub agg: Aggregator,
    /// The recording's hidden-guest-IP decision (None: decided from the data).
    pub hidden: Option<(bool, String)>,
    /// Whether the file was written by hvprof (its section present).
    pub from_hvprof: bool,
}

/// Reads `path` (perf.data from hvprof or perf) and attributes every sample. Guest symbols come
/// from `guest_kallsyms` (per VMM pid, or `None` for every VM), else from the paths the
/// recording names, when they are still readable.
///
/// # Errors
/// [`crate::Error::PerfData`] naming the file and byte offset for a file that is not usable
/// perf.data; a data section cut short or a corrupt record is reported up to the cut with a
/// note instead.
pub fn replay(path: &Path, guest_kallsyms: Vec<(Option<i32>, Kallsyms)>) -> Result<Replay> {
    let pd = PerfData::open(path)?;
    // hvprof's recordings carry the kernel symbols their samples hit: right after a reboot or
    // on another host, and no /proc/kallsyms to read. Otherwise this host's, read on a thread
    // (tens of ms, most of it in the kernel) while the records are walked.
    let kept = pd
        .feature(Feature::HVPROF_KSYMS)
        .map(|b| Kallsyms::parse(&String::from_utf8_lossy(b)));
    let host = match kept {
        Some(Ok(k)) => HostSymbolsState::Ready(HostSymbols {
            kallsyms: Some(k),
            kallsyms_error: None,
        }),
        Some(Err(hvprof_symbols::Error::NoSymbols { .. })) => {
            HostSymbolsState::Ready(HostSymbols {
                kallsyms: None,
                kallsyms_error: Some("the recording hit no host kernel symbol".into()),
            })
        }
        _ => HostSymbolsState::load_in_background(Path::new("/")),
    };
    let mut notes: Vec<String> = pd.notes().to_vec();
    let section = match pd.feature(Feature::HVPROF) {
        None => None,
        Some(b) => match serde_json::from_slice::<HvprofSection>(b) {
            Ok(s) => Some(s),
            Err(e) => {
                notes.push(format!(
                    "hvprof's section of {} is unreadable ({e}); the file is read as perf's",
                    path.display()
                ));
                None
            }
        },
    };
    let decoders: Vec<RecordDecoder> = (0..pd.attrs().len())
        .filter_map(|i| pd.decoder(i))
        .collect();
    let mut machines = Machines::new();
    match &section {
        Some(s) if !s.vms.is_empty() => s.vms.iter().cloned().for_each(|vm| machines.add(vm)),
        _ => rebuild_machines(&pd, &decoders, &mut machines),
    }
    let given = !guest_kallsyms.is_empty();
    for (pid, k) in guest_kallsyms {
        machines.set_guest_kernel_symbols(pid.map(VmId::Vmm), Arc::new(k));
    }
    if !given {
        for (pid, p) in section.iter().flat_map(|s| &s.guest_kallsyms) {
            match Kallsyms::load(p) {
                Ok(k) => machines.set_guest_kernel_symbols(pid.map(VmId::Vmm), Arc::new(k)),
                Err(e) => notes.push(format!(
                    "guest symbol map {} named by the recording is unreadable here ({}); give --guest-kallsyms",
                    p.display(),
                    crate::error_chain(&e)
                )),
            }
        }
    }
    let machines = Arc::new(machines);
    let recorded_kernel = pd.feature_string(Feature::OSRELEASE).unwrap_or_default();
    let this_kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let kernel_symbols_kept = pd.feature(Feature::HVPROF_KSYMS).is_some();
    if !kernel_symbols_kept && !recorded_kernel.is_empty() && recorded_kernel != this_kernel {
        notes.push(format!(
            "recorded on kernel {recorded_kernel}, reported on {this_kernel}: host kernel symbols may be wrong"
        ));
    }
    let mut attributor =
        Attributor::with_host_state(host, Path::new("/proc"), Arc::clone(&machines));
    attributor.use_recorded_maps();
    if let Some(a) = pd.attrs().first() {
        attributor.set_regs_user_mask(a.attr.sample_regs_user);
    }
    let mut agg = Aggregator::new(Arc::clone(&machines));
    let active_vm = section.as_ref().and_then(|s| s.active_vm);
    let (mut first_ns, mut last_ns) = (None, 0u64);
    let mut corrupt = 0usize;
    // A per-CPU recording's losses belong to no thread (the kernel stamps the running task).
    let per_cpu = pd.attrs()[0].attr.task() == 0;
    let loss_tid = |tid: Option<i32>| if per_cpu { -1 } else { tid.unwrap_or(-1) };
    walk(&pd, &decoders, |rec, off| {
        match rec {
            Record::Sample(r) => {
                let s = r.sample;
                first_ns.get_or_insert(s.time_ns);
                last_ns = last_ns.max(s.time_ns);
                // Active mode replaced these with the helper's attributed view (below).
                if active_vm == Some(s.pid)
                    && s.cpumode.is_guest()
                    && machines
                        .thread(s.tid)
                        .is_some_and(|(_, t)| t.is_some_and(|t| t.vcpu.is_some()))
                {
                    return;
                }
                attributor.attribute_record_into(&r, &mut agg);
            }
            Record::Mmap(m) => {
                if let Some(e) = map_entry(&m) {
                    attributor.add_mapping(m.pid, e);
                }
            }
            Record::Lost { lost, sid } | Record::LostSamples { lost, sid } => {
                agg.add_lost(loss_tid(sid.tid), lost)
            }
            Record::Throttle {
                throttled: true,
                sid,
                ..
            } => agg.add_throttle(loss_tid(sid.tid)),
            Record::Corrupt {
                skipped, reason, ..
            } => {
                corrupt += 1;
                if corrupt <= MAX_CORRUPT_NOTES {
                    notes.push(format!(
                        "{}: corrupt record at byte {} ({reason}); {skipped} bytes skipped",
                        path.display(),
                        pd.data_offset() + off as u64
                    ));
                }
            }
            _ => {}
        }
    });
    if corrupt > MAX_CORRUPT_NOTES {
        notes.push(format!(
            "{}: {corrupt} corrupt records in all (the first {MAX_CORRUPT_NOTES} are listed)",
            path.display()
        ));
    }
    let from_hvprof = section.is_some();
    let s = section.unwrap_or_default();
    for a in &s.active_samples {
        agg.add(a);
    }
    for (vm, view) in s.guest_views {
        agg.set_guest_view(VmId::Vmm(vm), view);
    }
    for (tid, ns) in s.on_cpu {
        agg.set_on_cpu(tid, ns);
    }
    for n in s.notes.into_iter().chain(notes) {
        agg.note(n);
    }
    if let Some(h) = s.hint {
        agg.set_guest_ip_hint(h);
    }
    let span = last_ns.saturating_sub(first_ns.unwrap_or(last_ns));
    let meta = match s.meta {
        Some(m) => m,
        None => perf_meta(&pd, span),
    };
    Ok(Replay {
        meta,
        agg,
        hidden: s.hidden,
        from_hvprof,
    })
}

/// What a file perf wrote says about its collection.
fn perf_meta(pd: &PerfData, duration_ns: u64) -> Meta {
    let a = &pd.attrs()[0];
    // SAFETY: both union members are plain u64s; `freq` says which one perf wrote.
    let (freq, period) = unsafe {
        (
            a.attr.__bindgen_anon_1.sample_freq,
            a.attr.__bindgen_anon_1.sample_period,
        )
    };
    let clock = a.attr.type_ == abi::TYPE_SOFTWARE
        && matches!(a.attr.config, abi::sw::CPU_CLOCK | abi::sw::TASK_CLOCK);
    Meta {
        event: a
            .name
            .clone()
            .unwrap_or_else(|| format!("type {} config {}", a.attr.type_, a.attr.config)),
        rate: if a.attr.freq() != 0 {
            Rate::Frequency(freq)
        } else {
            Rate::Period(period)
        },
        period_is_ns: clock,
        duration_ns,
        mode: "perf record".into(),
        host: pd.feature_string(Feature::HOSTNAME).unwrap_or_default(),
        kernel: pd.feature_string(Feature::OSRELEASE).unwrap_or_default(),
        start_unix_ns: 0,
    }
}

/// A process mapping from an MMAP/MMAP2 record (user space only: the kernel's come from
/// kallsyms).
fn map_entry(m: &Mmap<'_>) -> Option<MapEntry> {
    if m.pid < 0 || m.cpumode == CpuMode::Kernel || m.cpumode.is_guest() {
        return None;
    }
    let exec = match m.file {
        Some(_) => m.prot & libc::PROT_EXEC as u32 != 0,
        None => !m.data,
    };
    let name = m.filename.as_ref();
    let path = if let Some(p) = name.strip_prefix('/').filter(|p| !p.starts_with('/')) {
        let (p, deleted) = match p.strip_suffix(" (deleted)") {
            Some(p) => (p, true),
            None => (p, false),
        };
        MapPath::File {
            path: PathBuf::from(format!("/{p}")),
            deleted,
        }
    } else if name.is_empty() || name.starts_with("//anon") {
        MapPath::Anonymous
    } else {
        MapPath::Pseudo(name.to_string())
    };
    let (dev, inode) = match m.file {
        Some(MmapFile::Inode { maj, min, ino, .. }) => ((maj, min), ino),
        _ => ((0, 0), 0),
    };
    Some(MapEntry {
        start: m.addr,
        end: m.addr.checked_add(m.len)?,
        perms: Perms {
            read: true,
            write: false,
            exec,
            shared: false,
        },
        offset: m.pgoff,
        dev,
        inode,
        path,
    })
}

/// Calls `f` with every record of the data section and its offset in the section, in file
/// order, each decoded with its attr's layout; ends after a record whose size cannot be trusted
/// (the rest of the section).
fn walk<'a>(pd: &'a PerfData, decoders: &[RecordDecoder], mut f: impl FnMut(Record<'a>, usize)) {
    let data = pd.data();
    let mut off = 0usize;
    while let Some(rest) = data.get(off..).filter(|r| !r.is_empty()) {
        let Some((rec, size)) = decoders[pd.attr_of(rest)].decode_one(rest) else {
            return;
        };
        let last = matches!(rec, Record::Corrupt { skipped, .. } if skipped >= rest.len());
        f(rec, off);
        if last {
            return;
        }
        off += size;
    }
}

/// VMs of a file perf wrote: processes whose threads carry vCPU names or guest-tagged samples.
fn rebuild_machines(pd: &PerfData, decoders: &[RecordDecoder], machines: &mut Machines) {
    let mut comms: BTreeMap<i32, BTreeMap<i32, String>> = BTreeMap::new();
    let mut guest_pids = HashSet::new();
    walk(pd, decoders, |rec, _| match rec {
        Record::Comm { pid, tid, comm, .. } if pid > 0 => {
            comms.entry(pid).or_default().insert(tid, comm.into_owned());
        }
        Record::Sample(r) if r.sample.cpumode.is_guest() && r.sample.pid > 0 => {
            guest_pids.insert(r.sample.pid);
        }
        _ => {}
    });
    for pid in guest_pids.iter().copied() {
        comms.entry(pid).or_default();
    }
    for (pid, threads) in comms {
        let vcpu_of = |name: &str| vcpu_index_from_thread_name(name);
        if !guest_pids.contains(&pid) && !threads.values().any(|n| vcpu_of(n).is_some()) {
            continue;
        }
        let name = threads
            .get(&pid)
            .cloned()
            .unwrap_or_else(|| format!("pid {pid}"));
        let mut g = GuestMachine::new(VmId::Vmm(pid), name);
        for (tid, comm) in threads {
            let vcpu = vcpu_of(&comm);
            if let Some(index) = vcpu {
                g.vcpus.push(Vcpu {
                    index,
                    tid: Some(tid),
                });
            }
            let tcg = comm.ends_with("/TCG");
            g.emulated |= tcg;
            g.threads.insert(
                tid,
                Thread {
                    tid,
                    name: comm,
                    vcpu,
                    tcg,
                },
            );
        }
        g.vcpus.sort_by_key(|v| v.index);
        machines.add(g);
    }
}

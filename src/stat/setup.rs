//! Setting up `hvprof stat`: checks the options, finds the VMs and their KVM debugfs
//! directories, loads the `kvm:*` tracepoints from tracefs and opens them (disabled) on every
//! vCPU thread, with a ring for the sampled ones.
//!
//! Input: [`StatOptions`]; output: one `VmRt` per VM and a [`TracepointStatus`] per
//! tracepoint (`sampled`, `counted`, `absent`, `failed`). Missing sources are notes, not errors.
//!
//! ```no_run
//! # fn main() -> hvprof::Result<()> {
//! use hvprof::stat::{open_tracepoint, tracefs::Tracepoint};
//! use hvprof::perf::Target;
//! let tp = Tracepoint::load(std::path::Path::new("/sys/kernel/tracing"), "kvm", "kvm_exit")
//!     .map_err(hvprof::Error::InvalidOption)?;
//! let fd = open_tracepoint(&tp, Target::Thread(1234), true)?;
//! # drop(fd); Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::debugfs;
use super::decode::STAT_SAMPLE_TYPE;
use super::exits::{Layouts, Tp};
use super::report::TracepointStatus;
use super::tracefs::{self, MountState, Tracepoint};
use super::vm::{OpenTp, VcpuRt, VmRt};
use super::StatOptions;
use crate::discover::{self, Vm};
use crate::error::{Error, Result};
use hvprof_perf::abi::{self, AttrBuilder};
use hvprof_perf::{PerfFd, RingBuffer, Target};

/// Opens one tracepoint on `target` for `hvprof stat`: sampling every hit (`period 1`,
/// `TID | TIME | CPU | RAW`, `CLOCK_MONOTONIC` timestamps) when `sampled`, else counting only.
/// The event starts disabled.
///
/// # Errors
/// [`Error::PerfEventOpen`].
pub fn open_tracepoint(tp: &Tracepoint, target: Target, sampled: bool) -> Result<PerfFd> {
    let mut b = AttrBuilder::new(abi::TYPE_TRACEPOINT, tp.format.id).disabled(true);
    if sampled {
        b = b
            .sample_type(STAT_SAMPLE_TYPE)
            .period(1)
            .clockid(libc::CLOCK_MONOTONIC);
    }
    let attr = b.build();
    Ok(PerfFd::open(&attr, target, &tp.full_name())?)
}

/// An error's message with its causes.
pub(super) fn os_msg(e: &dyn std::error::Error) -> String {
    crate::error_chain(e)
}

/// Pages of each sampled tracepoint's ring when there are `sampled_fds` of them: a total
/// budget of about 2048 pages (8 MiB with 4 KiB pages), 8..=64 pages each, a power of two.
fn ring_pages(sampled_fds: usize) -> usize {
    let per = (2048 / sampled_fds.max(1)).clamp(8, 64);
    1usize << (usize::BITS - 1 - per.leading_zeros())
}

/// The thread is gone (`ESRCH` from `perf_event_open`).
fn is_gone(e: &Error) -> bool {
    matches!(e, Error::PerfEventOpen { source, .. } if source.raw_os_error() == Some(libc::ESRCH))
}

/// Checks the options.
///
/// # Errors
/// [`Error::InvalidOption`] for an interval under 10 ms or a zero duration.
pub(super) fn validate(opts: &StatOptions) -> Result<()> {
    if let Some(i) = opts.interval {
        if i < Duration::from_millis(10) {
            return Err(Error::InvalidOption(format!(
                "interval {i:?} is too short: at least 10 ms"
            )));
        }
    }
    if opts.duration == Some(Duration::ZERO) {
        return Err(Error::InvalidOption("duration must be > 0".into()));
    }
    Ok(())
}

/// KVM's debugfs directory (`<debugfs>/kvm`), mounting debugfs when needed and allowed;
/// `None` when debugfs is not to be used or has no `kvm` directory.
pub(super) fn kvm_debugfs(opts: &StatOptions, notes: &mut Vec<String>) -> Option<PathBuf> {
    let d = opts.debugfs.as_ref()?;
    let root = if d.file_name().is_some_and(|n| n == "kvm") {
        d.parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| d.clone())
    } else {
        d.clone()
    };
    match tracefs::ensure_mounted(&root, "debugfs", "kvm") {
        MountState::Present => {}
        MountState::Mounted => notes.push(format!("mounted debugfs at {}", root.display())),
        MountState::Absent(why) => notes.push(format!("debugfs: {why}")),
    }
    let k = debugfs::kvm_dir(d);
    k.is_dir().then_some(k)
}

/// The VMs to observe: `opts.pids`, or every KVM VM under `opts.proc_root` when empty.
///
/// # Errors
/// [`Error::NoSuchProcess`] / [`Error::NotAVm`] / [`Error::Read`] for a pid that is not an
/// inspectable KVM VM; [`Error::Read`] when `proc_root` cannot be listed.
pub(super) fn find_vms(
    opts: &StatOptions,
    kvm_dbg: Option<&Path>,
    notes: &mut Vec<String>,
) -> Result<Vec<Vm>> {
    if !opts.pids.is_empty() {
        return opts
            .pids
            .iter()
            .map(|&p| discover::inspect(&opts.proc_root, kvm_dbg, p))
            .collect();
    }
    let v = discover::find_vms(&opts.proc_root, kvm_dbg)?;
    if v.is_empty() {
        notes.push(format!(
            "no KVM VMs found under {} (no process holds an anon_inode:kvm-vm fd)",
            opts.proc_root.display()
        ));
    }
    Ok(v)
}

/// The `kvm:*` tracepoints found in tracefs, with their field layouts.
pub(super) struct Tracepoints {
    /// tracefs is mounted (tracepoints can be looked up at all).
    pub(super) tracefs_ok: bool,
    /// The ones found, by kind.
    pub(super) found: BTreeMap<Tp, Tracepoint>,
    /// Their field layouts.
    pub(super) layouts: Layouts,
    /// The `absent` ones, with why.
    pub(super) absent: Vec<TracepointStatus>,
}

/// Mounts tracefs when needed and allowed, and loads every tracepoint of [`Tp::ALL`].
pub(super) fn load_tracepoints(tracefs: &Path, notes: &mut Vec<String>) -> Tracepoints {
    let tracefs_ok = match tracefs::ensure_mounted(tracefs, "tracefs", "events") {
        MountState::Present => true,
        MountState::Mounted => {
            notes.push(format!("mounted tracefs at {}", tracefs.display()));
            true
        }
        MountState::Absent(why) => {
            notes.push(format!(
                "tracefs unavailable, no tracepoints: {why}; exits from debugfs only"
            ));
            false
        }
    };
    let mut t = Tracepoints {
        tracefs_ok,
        found: BTreeMap::new(),
        layouts: Layouts::default(),
        absent: Vec::new(),
    };
    for tp in Tp::ALL {
        let loaded = if tracefs_ok {
            let layouts = &mut t.layouts;
            Tracepoint::load(tracefs, "kvm", tp.name())
                .and_then(|x| layouts.add(tp, &x.format).map(|()| x))
        } else {
            Err("tracefs unavailable".to_string())
        };
        match loaded {
            Ok(x) => {
                t.found.insert(tp, x);
            }
            Err(why) => t.absent.push(status(tp, "absent", why)),
        }
    }
    if tracefs_ok && t.found.is_empty() {
        notes.push("no kvm:* tracepoints in tracefs: is the kvm module loaded?".into());
    }
    t
}

fn status(tp: Tp, state: &str, detail: String) -> TracepointStatus {
    TracepointStatus {
        name: tp.full_name(),
        state: state.into(),
        detail,
        count: 0,
        lost: 0,
        corrupt: 0,
        ring_errors: 0,
    }
}

/// What opening one tracepoint on every vCPU thread gave.
#[derive(Default)]
struct OpenResults {
    /// Threads it was opened on, by tracepoint.
    opened: BTreeMap<Tp, usize>,
    /// The first error, by tracepoint.
    errors: BTreeMap<Tp, String>,
}

/// Opens every found tracepoint on every vCPU thread of `vms` (rings of `ring_pages` for the
/// sampled ones) and finds each VM's debugfs directory under `kvm_dbg`. Returns the VMs and
/// the status of every tracepoint of [`Tp::ALL`] (`tps.absent` included), in that order.
pub(super) fn open_vms(
    vms: Vec<Vm>,
    tps: &Tracepoints,
    kvm_dbg: Option<&Path>,
    notes: &mut Vec<String>,
) -> (Vec<VmRt>, Vec<TracepointStatus>) {
    let sampled_fds = vms
        .iter()
        .flat_map(|v| &v.vcpus)
        .filter(|c| c.tid.is_some())
        .count()
        * tps.found.keys().filter(|t| t.sampled()).count();
    let pages = ring_pages(sampled_fds);
    let mut res = OpenResults::default();
    let mut rts = Vec::new();
    for vm in vms {
        let mut vcpus = Vec::new();
        for c in &vm.vcpus {
            let mut rt = VcpuRt::new(c.index, c.tid);
            match c.tid {
                None => notes.push(format!(
                    "VM {} (pid {}): no thread found for vCPU {}: no figures for it",
                    vm.name, vm.pid, c.index
                )),
                Some(tid) => open_vcpu(&mut rt, tid, tps, pages, &mut res),
            }
            vcpus.push(rt);
        }
        let tasks: Vec<i32> = std::iter::once(vm.pid)
            .chain(vm.threads.iter().map(|t| t.tid))
            .collect();
        let dbg_dir =
            kvm_dbg.and_then(|k| debugfs::vm_dirs(k, &tasks, &vm.vm_fds).into_iter().next());
        rts.push(VmRt::new(vm.pid, vm.name, vcpus, dbg_dir));
    }
    let n_threads = rts
        .iter()
        .flat_map(|v| &v.vcpus)
        .filter(|c| c.tid.is_some())
        .count();
    let mut statuses = tps.absent.clone();
    for &tp in tps.found.keys() {
        statuses.push(open_status(tp, &res, n_threads));
    }
    statuses.sort_by_key(|s| Tp::ALL.iter().position(|t| t.full_name() == s.name));
    (rts, statuses)
}

/// Opens every found tracepoint on vCPU thread `tid`; stops at the first `ESRCH` (the
/// thread is gone: the vCPU is marked exited).
fn open_vcpu(rt: &mut VcpuRt, tid: i32, tps: &Tracepoints, pages: usize, res: &mut OpenResults) {
    for (&tp, t) in &tps.found {
        match open_tracepoint(t, Target::Thread(tid), tp.sampled()) {
            Ok(fd) => {
                let ring = if tp.sampled() {
                    match RingBuffer::map(&fd, pages) {
                        Ok(r) => Some(r),
                        Err(e) => {
                            res.errors.entry(tp).or_insert_with(|| {
                                format!("ring buffer: {}; counted only", os_msg(&e))
                            });
                            None
                        }
                    }
                } else {
                    None
                };
                *res.opened.entry(tp).or_default() += 1;
                rt.tps.push(OpenTp::new(tp, fd, ring));
            }
            Err(e) if is_gone(&e) => {
                rt.exited = true;
                break;
            }
            Err(e) => {
                res.errors.entry(tp).or_insert_with(|| os_msg(&e));
            }
        }
    }
}

/// The status of found tracepoint `tp` after opening it on `n_threads` vCPU threads.
fn open_status(tp: Tp, res: &OpenResults, n_threads: usize) -> TracepointStatus {
    let n = res.opened.get(&tp).copied().unwrap_or(0);
    let (state, detail) = match (n, res.errors.get(&tp)) {
        (0, Some(e)) => ("failed", e.clone()),
        (0, None) if n_threads == 0 => ("failed", "no vCPU thread to open it on".into()),
        (0, None) => ("failed", "not opened".into()),
        (n, e) => (
            if tp.sampled() && e.is_none() {
                "sampled"
            } else {
                "counted"
            },
            match e {
                Some(e) => format!("{n} of {n_threads} vCPU threads; {e}"),
                None => format!("{n} vCPU threads"),
            },
        ),
    };
    status(tp, state, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_budget() {
        assert_eq!(ring_pages(0), 64);
        assert_eq!(ring_pages(8), 64);
        assert_eq!(ring_pages(100), 16);
        assert_eq!(ring_pages(10_000), 8);
    }

    #[test]
    fn status_of_opened_tracepoints() {
        let mut res = OpenResults::default();
        assert_eq!(
            open_status(Tp::Exit, &res, 0).detail,
            "no vCPU thread to open it on"
        );
        res.opened.insert(Tp::Exit, 2);
        let s = open_status(Tp::Exit, &res, 2);
        assert_eq!(
            (s.state.as_str(), s.detail.as_str()),
            ("sampled", "2 vCPU threads")
        );
        res.errors
            .insert(Tp::Exit, "ring buffer: ENOMEM; counted only".into());
        let s = open_status(Tp::Exit, &res, 3);
        assert_eq!(s.state, "counted");
        assert_eq!(
            s.detail,
            "2 of 3 vCPU threads; ring buffer: ENOMEM; counted only"
        );
    }

    #[test]
    fn short_intervals_and_zero_durations_are_refused() {
        let opts = StatOptions {
            interval: Some(Duration::from_millis(5)),
            ..StatOptions::default()
        };
        assert!(matches!(validate(&opts), Err(Error::InvalidOption(_))));
        let opts = StatOptions {
            duration: Some(Duration::ZERO),
            ..StatOptions::default()
        };
        assert!(matches!(validate(&opts), Err(Error::InvalidOption(_))));
        assert!(validate(&StatOptions::default()).is_ok());
    }
}

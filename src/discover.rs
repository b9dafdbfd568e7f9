//! VM discovery: which processes are KVM VMs, and which thread runs each vCPU.
//!
//! Stage: **discover** → counters. Input: a proc root (`/proc`, or a captured tree in tests)
//! and optionally KVM's debugfs directory; output: [`Vm`]s with their vCPU index → thread map.
//!
//! A process is a KVM VM when it holds a file descriptor whose link reads
//! `anon_inode:kvm-vm` (`KVM_CREATE_VM` returns one; see Documentation/virt/kvm/api.rst).
//! Each vCPU is an `anon_inode:kvm-vcpu:N` fd. The thread running a vCPU is found, in order:
//! 1. KVM's debugfs: `<debugfs>/kvm/<pid>-<vmfd>/vcpu<N>/pid` holds the thread id of the task
//!    that last ran `KVM_RUN` on vCPU N (virt/kvm/kvm_main.c, `vcpu_get_pid`);
//! 2. `/proc/<pid>/task/<tid>/syscall`: a thread blocked in `ioctl(fd, KVM_RUN)` shows syscall
//!    16 (x86-64 `ioctl`) with a `kvm-vcpu:N` fd and request `0xae80` (`KVM_RUN = _IO(0xAE, 0x80)`);
//!    a thread in guest mode shows `running`, so the read is retried a few times;
//! 3. thread names: QEMU `CPU n/KVM` (or `CPU n/TCG`), Firecracker `fc_vcpu n`,
//!    cloud-hypervisor and crosvm `vcpuN` / `vcpu N`.
//!
//! ```no_run
//! # fn main() -> hvprof::Result<()> {
//! for vm in hvprof::discover::find_vms(std::path::Path::new("/proc"), None)? {
//!     println!("{} {} vCPUs", vm.pid, vm.vcpus.len());
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `KVM_RUN` = `_IO(KVMIO, 0x80)` with `KVMIO = 0xAE` (include/uapi/linux/kvm.h).
pub const KVM_RUN_IOCTL: u64 = 0xae80;
/// x86-64 syscall number of `ioctl` (arch/x86/entry/syscalls/syscall_64.tbl). hvprof's
/// syscall-based vCPU lookup is x86-64 only; elsewhere debugfs and thread names still work.
pub const SYS_IOCTL_X86_64: u64 = 16;

/// How a vCPU's thread was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VcpuSource {
    /// KVM debugfs `vcpuN/pid`.
    Debugfs,
    /// `/proc/PID/task/TID/syscall` showed `ioctl(vcpu_fd, KVM_RUN)`.
    Syscall,
    /// The thread's name follows a VMM's convention.
    ThreadName,
}

/// One vCPU of a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vcpu {
    /// vCPU index (`N` of `kvm-vcpu:N`, KVM's vcpu_id order).
    pub index: u32,
    /// Host thread id running it, if found.
    pub tid: Option<i32>,
    /// How `tid` was found.
    pub source: Option<VcpuSource>,
}

/// A thread of a VMM process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadInfo {
    /// Thread id.
    pub tid: i32,
    /// Thread name (`/proc/PID/task/TID/comm`).
    pub comm: String,
    /// A kernel worker living in the VMM process (`PF_USER_WORKER` or `PF_KTHREAD` in
    /// `/proc/PID/task/TID/stat` flags), such as KVM's `kvm-nx-lpage-recovery` thread. Its
    /// saved user registers are those of the thread that created it, so its `syscall` file can
    /// show `ioctl(vcpu_fd, KVM_RUN)`: it is never taken for a vCPU.
    pub kernel_worker: bool,
}

/// A virtual machine: the VMM process holding a `kvm-vm` fd, or a QEMU running its guest
/// with TCG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vm {
    /// VMM process id; hvprof's VM key (perf's `machine_pid`).
    pub pid: i32,
    /// VM name: QEMU's `-name`, else the process name.
    pub name: String,
    /// Process name (`comm`).
    pub comm: String,
    /// Command line, arguments joined by spaces.
    pub cmdline: String,
    /// The `kvm-vm` fd numbers (usually one).
    pub vm_fds: Vec<u32>,
    /// vCPUs by index.
    pub vcpus: Vec<Vcpu>,
    /// Every thread of the process.
    pub threads: Vec<ThreadInfo>,
    /// Guest memory in bytes when the command line says (QEMU `-m`), else None.
    pub guest_memory_bytes: Option<u64>,
    /// Resident set size of the VMM in bytes (`VmRSS`).
    pub rss_bytes: Option<u64>,
    /// How the guest runs: `kvm` (a `kvm-vm` fd) or `tcg` (QEMU's software emulator: no KVM
    /// fd, vCPU threads named `CPU n/TCG` or a `qemu-system-*` process).
    #[serde(default = "default_accel")]
    pub accel: String,
}

fn default_accel() -> String {
    "kvm".into()
}

impl Vm {
    /// The vCPU index run by `tid`, if `tid` is a vCPU thread.
    pub fn vcpu_of_tid(&self, tid: i32) -> Option<u32> {
        self.vcpus
            .iter()
            .find(|v| v.tid == Some(tid))
            .map(|v| v.index)
    }

    /// The thread name of `tid`.
    pub fn thread_name(&self, tid: i32) -> Option<&str> {
        self.threads
            .iter()
            .find(|t| t.tid == tid)
            .map(|t| t.comm.as_str())
    }

    /// This VM as a guest machine of the [`crate::model::Machines`]: keyed by its VMM pid,
    /// with its vCPUs and threads (kernel workers of the VM included). A vCPU thread of an emulator
    /// (`accel` tcg) is marked `tcg`.
    pub fn to_machine(&self) -> crate::model::GuestMachine {
        use crate::model::{GuestMachine, Thread, Vcpu, VmId};
        let mut g = GuestMachine::new(VmId::Vmm(self.pid), self.name.clone());
        g.emulated = self.accel == "tcg";
        g.vcpus = self
            .vcpus
            .iter()
            .map(|v| Vcpu {
                index: v.index,
                tid: v.tid,
            })
            .collect();
        for t in &self.threads {
            let vcpu = self.vcpu_of_tid(t.tid);
            let tcg = vcpu.is_some() && (self.accel == "tcg" || t.comm.ends_with("/TCG"));
            g.threads.insert(
                t.tid,
                Thread {
                    tid: t.tid,
                    name: t.comm.clone(),
                    vcpu,
                    tcg,
                },
            );
        }
        g
    }
}

/// What a scan of every process found: the VMs, and how many processes could not be
/// inspected for lack of permission.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmScan {
    /// The VMs, by pid.
    pub vms: Vec<Vm>,
    /// Processes whose `/proc/PID/fd` could not be listed or whose fd links could not be read
    /// (`EACCES`/`EPERM`: another user's process without CAP_DAC_READ_SEARCH and
    /// CAP_SYS_PTRACE). Any of them may be a VM missing from `vms`. Kernel threads
    /// (`PF_KTHREAD`), which are never VMs, are not counted.
    pub denied: usize,
}

/// Finds every KVM VM under `proc_root`. Processes that vanish or cannot be read while being
/// scanned are skipped (as `ps` does); [`scan_vms`] also counts those it lacked permission for.
///
/// # Errors
/// [`Error::Read`] when `proc_root` itself cannot be listed.
pub fn find_vms(proc_root: &Path, debugfs: Option<&Path>) -> Result<Vec<Vm>> {
    scan_vms(proc_root, debugfs).map(|s| s.vms)
}

/// Finds every KVM VM under `proc_root`, and counts the processes that could not be inspected
/// for lack of permission ([`VmScan::denied`]). One unreadable process never fails the scan.
///
/// # Errors
/// [`Error::Read`] when `proc_root` itself cannot be listed.
pub fn scan_vms(proc_root: &Path, debugfs: Option<&Path>) -> Result<VmScan> {
    scan_with(proc_root, debugfs, &read_fd_links)
}

/// The fds of a process, from its fd directory: `(fd number, link target or readlink error)`.
/// An indirection so tests can deny permission, which root (the test runner) is never denied.
type FdLinks<'a> = &'a dyn Fn(&Path) -> io::Result<Vec<(u32, io::Result<PathBuf>)>>;

/// Lists `fddir` (`/proc/PID/fd`) and reads each fd's link.
fn read_fd_links(fddir: &Path) -> io::Result<Vec<(u32, io::Result<PathBuf>)>> {
    let mut fds = Vec::new();
    for e in fs::read_dir(fddir)?.flatten() {
        if let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
            fds.push((fd, fs::read_link(e.path())));
        }
    }
    Ok(fds)
}

fn scan_with(proc_root: &Path, debugfs: Option<&Path>, links: FdLinks<'_>) -> Result<VmScan> {
    let rd = fs::read_dir(proc_root).map_err(|source| Error::Read {
        path: proc_root.to_path_buf(),
        source,
    })?;
    let mut pids: Vec<i32> = rd
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    let mut scan = VmScan::default();
    for pid in pids {
        match inspect_with(proc_root, debugfs, pid, links) {
            Ok(vm) => scan.vms.push(vm),
            Err(Error::Read { source, .. })
                if source.kind() == io::ErrorKind::PermissionDenied
                    && !is_kernel_thread(proc_root, pid) =>
            {
                scan.denied += 1
            }
            Err(_) => {}
        }
    }
    Ok(scan)
}

/// Whether `/proc/PID/stat` (world-readable) has `PF_KTHREAD` in its flags.
fn is_kernel_thread(proc_root: &Path, pid: i32) -> bool {
    fs::read_to_string(proc_root.join(format!("{pid}/stat")))
        .ok()
        .and_then(|s| task_flags(&s))
        .is_some_and(|f| f & PF_KTHREAD != 0)
}

/// Inspects one process and returns it as a [`Vm`].
///
/// # Errors
/// [`Error::NoSuchProcess`] when `/proc/PID` does not exist; [`Error::Read`] when its fd
/// directory cannot be listed, or when it shows no `kvm-vm` fd but some fd links could not be
/// read (another user's process without CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE: the source
/// is then `PermissionDenied`); [`Error::NotAVm`] when it holds no `kvm-vm` fd and is no QEMU
/// TCG process.
pub fn inspect(proc_root: &Path, debugfs: Option<&Path>, pid: i32) -> Result<Vm> {
    inspect_with(proc_root, debugfs, pid, &read_fd_links)
}

fn inspect_with(
    proc_root: &Path,
    debugfs: Option<&Path>,
    pid: i32,
    links: FdLinks<'_>,
) -> Result<Vm> {
    let pdir = proc_root.join(pid.to_string());
    if !pdir.is_dir() {
        return Err(Error::NoSuchProcess { pid });
    }
    let comm = read_trim(&pdir.join("comm")).unwrap_or_default();
    let fddir = pdir.join("fd");
    let fds = links(&fddir).map_err(|source| Error::Read {
        path: fddir.clone(),
        source,
    })?;
    let mut vm_fds = Vec::new();
    let mut vcpu_fds: BTreeMap<u32, u32> = BTreeMap::new(); // fd -> index
    let mut denied_link: Option<(u32, io::Error)> = None;
    for (fd, link) in fds {
        let link = match link {
            Ok(link) => link,
            Err(e) => {
                if e.kind() == io::ErrorKind::PermissionDenied && denied_link.is_none() {
                    denied_link = Some((fd, e));
                }
                continue;
            }
        };
        let link = link.to_string_lossy();
        if link == "anon_inode:kvm-vm" {
            vm_fds.push(fd);
        } else if let Some(n) = link.strip_prefix("anon_inode:kvm-vcpu:") {
            if let Ok(n) = n.parse() {
                vcpu_fds.insert(fd, n);
            }
        }
    }
    let threads = read_threads(&pdir);
    // QEMU without KVM (TCG) holds no kvm-vm fd: recognize it by its vCPU thread names
    // (`-name ...,debug-threads=on`) or its process name.
    let tcg = vm_fds.is_empty()
        && (threads
            .iter()
            .any(|t| t.comm.starts_with("CPU ") && t.comm.ends_with("/TCG"))
            || comm.starts_with("qemu-system"));
    if vm_fds.is_empty() && !tcg {
        if let Some((fd, source)) = denied_link {
            return Err(Error::Read {
                path: fddir.join(fd.to_string()),
                source,
            });
        }
        return Err(Error::NotAVm { pid, comm });
    }
    vm_fds.sort_unstable();
    let cmdline_raw = fs::read(pdir.join("cmdline")).unwrap_or_default();
    let args: Vec<String> = cmdline_raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let mut indices: Vec<u32> = vcpu_fds.values().copied().collect();
    indices.sort_unstable();
    indices.dedup();
    let mut vcpus: Vec<Vcpu> = indices
        .iter()
        .map(|&index| Vcpu {
            index,
            tid: None,
            source: None,
        })
        .collect();

    // 1. debugfs.
    if let Some(dbg) = debugfs {
        for vmdir in debugfs_vm_dirs(dbg, pid, &threads, &vm_fds) {
            for v in vcpus.iter_mut().filter(|v| v.tid.is_none()) {
                if let Some(tid) = read_trim(&vmdir.join(format!("vcpu{}/pid", v.index)))
                    .and_then(|s| s.parse().ok())
                {
                    if tid > 0 && threads.iter().any(|t| t.tid == tid && !t.kernel_worker) {
                        v.tid = Some(tid);
                        v.source = Some(VcpuSource::Debugfs);
                    }
                }
            }
        }
    }
    // 2. /proc/PID/task/TID/syscall, retried while threads are running guest code.
    for _attempt in 0..20 {
        if vcpus.iter().all(|v| v.tid.is_some()) {
            break;
        }
        for t in threads.iter().filter(|t| !t.kernel_worker) {
            if vcpus.iter().any(|v| v.tid == Some(t.tid)) {
                continue;
            }
            let Some(line) = read_trim(&pdir.join(format!("task/{}/syscall", t.tid))) else {
                continue;
            };
            if let Some(fd) = kvm_run_fd(&line) {
                if let Some(&index) = vcpu_fds.get(&fd) {
                    if let Some(v) = vcpus
                        .iter_mut()
                        .find(|v| v.index == index && v.tid.is_none())
                    {
                        v.tid = Some(t.tid);
                        v.source = Some(VcpuSource::Syscall);
                    }
                }
            }
        }
        if vcpus.iter().all(|v| v.tid.is_some()) || proc_root != Path::new("/proc") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // 3. thread names.
    for t in threads.iter().filter(|t| !t.kernel_worker) {
        if let Some(index) = vcpu_index_from_thread_name(&t.comm) {
            if vcpus.iter().any(|v| v.tid == Some(t.tid)) {
                continue;
            }
            match vcpus.iter_mut().find(|v| v.index == index) {
                Some(v) if v.tid.is_none() => {
                    v.tid = Some(t.tid);
                    v.source = Some(VcpuSource::ThreadName);
                }
                Some(_) => {}
                // A vCPU whose fd is not visible (closed after setup): trust the name.
                None => vcpus.push(Vcpu {
                    index,
                    tid: Some(t.tid),
                    source: Some(VcpuSource::ThreadName),
                }),
            }
        }
    }
    // 4. QEMU TCG without `-name ...,debug-threads=on` names no vCPU thread: its vCPUs are
    // known from `-smp`, their threads only from their samples in QEMU's translated-code buffer
    // (found at record time, see `aggregate`).
    if tcg && vcpus.is_empty() {
        vcpus = (0..qemu_smp(&args).unwrap_or(1))
            .map(|index| Vcpu {
                index,
                tid: None,
                source: None,
            })
            .collect();
    }
    vcpus.sort_by_key(|v| v.index);
    let name = qemu_name(&args).unwrap_or_else(|| comm.clone());
    let status = fs::read_to_string(pdir.join("status")).unwrap_or_default();
    let rss_bytes = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024);
    Ok(Vm {
        pid,
        name,
        comm,
        cmdline: args.join(" "),
        vm_fds,
        vcpus,
        threads,
        guest_memory_bytes: qemu_memory(&args),
        rss_bytes,
        accel: if tcg { "tcg".into() } else { "kvm".into() },
    })
}

/// KVM's debugfs directories of a VM: `<debugfs>/<id>-<vmfd>`, where `id` is the id of the
/// task that called `KVM_CREATE_VM` (virt/kvm/kvm_main.c `kvm_create_vm_debugfs` uses
/// `task_pid_nr(current)`): the pid for most VMMs, another thread's id when a non-main thread
/// created the VM.
pub fn debugfs_vm_dirs(
    debugfs: &Path,
    pid: i32,
    threads: &[ThreadInfo],
    vm_fds: &[u32],
) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for e in fs::read_dir(debugfs).into_iter().flatten().flatten() {
        let name = e.file_name();
        let Some((id, fd)) = name.to_str().and_then(|n| n.split_once('-')) else {
            continue;
        };
        let (Ok(id), Ok(fd)) = (id.parse::<i32>(), fd.parse::<u32>()) else {
            continue;
        };
        if vm_fds.contains(&fd) && (id == pid || threads.iter().any(|t| t.tid == id)) {
            dirs.push(e.path());
        }
    }
    dirs.sort();
    dirs
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn read_threads(pdir: &Path) -> Vec<ThreadInfo> {
    let mut v: Vec<ThreadInfo> = fs::read_dir(pdir.join("task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let tid: i32 = e.file_name().to_str()?.parse().ok()?;
            let comm = read_trim(&e.path().join("comm")).unwrap_or_default();
            let flags = fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|s| task_flags(&s))
                .unwrap_or(0);
            let kernel_worker = flags & (PF_USER_WORKER | PF_KTHREAD) != 0;
            Some(ThreadInfo {
                tid,
                comm,
                kernel_worker,
            })
        })
        .collect();
    v.sort_by_key(|t| t.tid);
    v
}

/// `PF_KTHREAD` (include/linux/sched.h).
pub const PF_KTHREAD: u64 = 0x0020_0000;
/// `PF_USER_WORKER` (include/linux/sched.h, Linux ≥ 6.4): kernel worker in a user process.
pub const PF_USER_WORKER: u64 = 0x0000_4000;

/// The `flags` field (9th) of a `/proc/PID/task/TID/stat` line (proc(5)); the name in
/// parentheses may contain spaces and parentheses, so fields are counted after the last `)`.
pub fn task_flags(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(6)?.parse().ok()
}

/// Parses a `/proc/PID/task/TID/syscall` line and returns the fd when the thread is in
/// `ioctl(fd, KVM_RUN, ...)`. Format (fs/proc/base.c `proc_pid_syscall`): `nr arg1 .. arg6 sp pc`
/// with hex arguments, or `running`, or `-1 sp pc` outside a system call.
pub fn kvm_run_fd(line: &str) -> Option<u32> {
    let mut it = line.split_whitespace();
    let nr: u64 = it.next()?.parse().ok()?;
    if nr != SYS_IOCTL_X86_64 {
        return None;
    }
    let fd = parse_hex(it.next()?)?;
    let req = parse_hex(it.next()?)?;
    (req == KVM_RUN_IOCTL).then_some(fd as u32)
}

fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

/// The vCPU index encoded in a thread name by common VMMs: QEMU `CPU 3/KVM` and `CPU 3/TCG`,
/// Firecracker `fc_vcpu 3`, cloud-hypervisor and crosvm `vcpu3` / `vcpu 3` / `vcpu_3`.
pub fn vcpu_index_from_thread_name(name: &str) -> Option<u32> {
    if let Some(rest) = name.strip_prefix("CPU ") {
        let (n, acc) = rest.split_once('/')?;
        if matches!(acc, "KVM" | "TCG" | "HVF" | "WHPX") {
            return n.parse().ok();
        }
        return None;
    }
    let rest = name
        .strip_prefix("fc_vcpu")
        .or_else(|| name.strip_prefix("vcpu"))?;
    rest.trim_start_matches([' ', '_']).parse().ok()
}

/// QEMU's `-name guest=NAME,...` or `-name NAME`.
fn qemu_name(args: &[String]) -> Option<String> {
    let i = args.iter().position(|a| a == "-name")?;
    let v = args.get(i + 1)?;
    let first = v.split(',').next()?;
    let n = first.strip_prefix("guest=").unwrap_or(first);
    (!n.is_empty()).then(|| n.to_string())
}

/// QEMU's vCPU count: `-smp 4`, `-smp cpus=4,...`, `-smp sockets=2,cores=2,threads=1` (the
/// product when `cpus` is absent); at most 4096.
fn qemu_smp(args: &[String]) -> Option<u32> {
    let i = args.iter().position(|a| a == "-smp")?;
    let v = args.get(i + 1)?;
    let mut cpus = None;
    let mut product = 1u32;
    let mut any_topology = false;
    for part in v.split(',') {
        match part.split_once('=') {
            None => cpus = part.parse().ok(),
            Some(("cpus", n)) => cpus = n.parse().ok(),
            Some(("sockets" | "dies" | "clusters" | "cores" | "threads", n)) => {
                product = product.saturating_mul(n.parse().ok()?);
                any_topology = true;
            }
            Some(_) => {}
        }
    }
    cpus.or(any_topology.then_some(product))
        .filter(|&n| (1..=4096).contains(&n))
}

/// QEMU's `-m 2G`, `-m 512`, `-m size=4G,...` (MiB by default), in bytes.
fn qemu_memory(args: &[String]) -> Option<u64> {
    let i = args.iter().position(|a| a == "-m")?;
    let v = args.get(i + 1)?.split(',').next()?;
    let v = v.strip_prefix("size=").unwrap_or(v);
    let (num, mult) = match v.chars().last()? {
        'k' | 'K' => (&v[..v.len() - 1], 1u64 << 10),
        'm' | 'M' => (&v[..v.len() - 1], 1 << 20),
        'g' | 'G' => (&v[..v.len() - 1], 1 << 30),
        't' | 'T' => (&v[..v.len() - 1], 1 << 40),
        _ => (v, 1 << 20),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// The default KVM debugfs directory, when mounted: `/sys/kernel/debug/kvm`.
pub fn default_debugfs() -> Option<PathBuf> {
    let p = PathBuf::from("/sys/kernel/debug/kvm");
    p.is_dir().then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_smp_forms() {
        let a = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(qemu_smp(&a("qemu -smp 4")), Some(4));
        assert_eq!(qemu_smp(&a("qemu -smp cpus=2,maxcpus=8")), Some(2));
        assert_eq!(
            qemu_smp(&a("qemu -smp sockets=2,cores=3,threads=1")),
            Some(6)
        );
        assert_eq!(qemu_smp(&a("qemu -smp 0")), None);
        assert_eq!(qemu_smp(&a("qemu -smp cores=x")), None);
        assert_eq!(qemu_smp(&a("qemu -m 1G")), None);
    }

    #[test]
    fn thread_name_conventions() {
        let table = [
            ("CPU 0/KVM", Some(0)),
            ("CPU 12/KVM", Some(12)),
            ("CPU 1/TCG", Some(1)),
            ("fc_vcpu 3", Some(3)),
            ("fc_vcpu3", Some(3)),
            ("vcpu0", Some(0)),
            ("vcpu 7", Some(7)),
            ("vcpu_2", Some(2)),
            ("CPU 1/XYZ", None),
            ("qemu-system-x86", None),
            ("vcpu", None),
            ("worker", None),
        ];
        for (name, want) in table {
            assert_eq!(vcpu_index_from_thread_name(name), want, "{name}");
        }
    }

    #[test]
    fn stat_flags() {
        let line = "15875 (kvm-nx-lpage-re) S 1 15418 15418 0 -1 2146368 0 0 0 0 0 0 0 0 20 0 1 0";
        assert_eq!(task_flags(line), Some(2146368));
        assert!(task_flags(line).unwrap() & PF_USER_WORKER != 0);
        let line = "77 (a) b) c) R 1 77 77 0 -1 4194304 0";
        assert_eq!(task_flags(line), Some(4194304));
        assert_eq!(task_flags("garbage"), None);
    }

    #[test]
    fn syscall_lines() {
        assert_eq!(
            kvm_run_fd("16 0xc 0xae80 0x0 0x0 0x0 0x0 0x7ffd 0x7f12"),
            Some(12)
        );
        assert_eq!(
            kvm_run_fd("16 0xc 0xae41 0x0 0x0 0x0 0x0 0x7ffd 0x7f12"),
            None
        );
        assert_eq!(kvm_run_fd("running"), None);
        assert_eq!(kvm_run_fd("-1 0x7ffd 0x7f12"), None);
        assert_eq!(kvm_run_fd("7 0x5 0x1 0x0 0 0 0 0 0"), None);
        assert_eq!(kvm_run_fd(""), None);
    }

    /// A process in a fake proc tree: comm, stat flags, and fd links.
    fn fake_proc(root: &Path, pid: i32, comm: &str, flags: u64, fds: &[(u32, &str)]) {
        let p = root.join(pid.to_string());
        fs::create_dir_all(p.join("fd")).unwrap();
        fs::create_dir_all(p.join("task").join(pid.to_string())).unwrap();
        fs::write(p.join("comm"), format!("{comm}\n")).unwrap();
        fs::write(
            p.join("stat"),
            format!("{pid} ({comm}) S 0 {pid} {pid} 0 -1 {flags} 0 0"),
        )
        .unwrap();
        for (fd, target) in fds {
            std::os::unix::fs::symlink(target, p.join("fd").join(fd.to_string())).unwrap();
        }
    }

    /// Permission denied for another user's processes, injected into the fd reader (the tests
    /// run as root, which the kernel never denies): pid 200's fd directory cannot be listed
    /// (EACCES), pid 300's links cannot be read (EPERM), pid 2 is a kernel thread (EACCES).
    #[test]
    fn processes_without_permission_are_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fake_proc(root, 2, "kthreadd", PF_KTHREAD, &[]);
        fake_proc(root, 100, "qemu-kvm", 0, &[(10, "anon_inode:kvm-vm")]);
        fake_proc(root, 200, "other-user", 0, &[(3, "anon_inode:kvm-vm")]);
        fake_proc(root, 300, "setuid-thing", 0, &[(3, "/dev/null")]);
        fake_proc(root, 400, "bash", 0, &[(0, "/dev/pts/0")]);
        // pid 500: one unreadable link, but its kvm-vm fd is readable: still a VM.
        fake_proc(root, 500, "fc", 0, &[(4, "anon_inode:kvm-vm"), (5, "x")]);
        let denied = |fddir: &Path| -> io::Result<Vec<(u32, io::Result<PathBuf>)>> {
            let pid = fddir.parent().and_then(Path::file_name);
            let pid = pid.and_then(|p| p.to_str()).unwrap_or_default();
            match pid {
                "2" | "200" => Err(io::Error::from_raw_os_error(libc::EACCES)),
                "300" => Ok(vec![(3, Err(io::Error::from_raw_os_error(libc::EPERM)))]),
                "500" => Ok(vec![
                    (4, fs::read_link(fddir.join("4"))),
                    (5, Err(io::Error::from_raw_os_error(libc::EACCES))),
                ]),
                _ => read_fd_links(fddir),
            }
        };
        let scan = scan_with(root, None, &denied).unwrap();
        assert_eq!(
            scan.vms.iter().map(|v| v.pid).collect::<Vec<_>>(),
            vec![100, 500]
        );
        assert_eq!(scan.denied, 2, "pids 200 and 300; not the kernel thread");

        let err = inspect_with(root, None, 300, &denied).unwrap_err();
        assert!(
            matches!(&err, Error::Read { path, source }
                if path.ends_with("300/fd/3") && source.kind() == io::ErrorKind::PermissionDenied),
            "{err:?}"
        );
        assert!(matches!(
            inspect_with(root, None, 400, &denied),
            Err(Error::NotAVm { pid: 400, .. })
        ));

        // The real reader, as root: nothing is denied.
        let scan = scan_vms(root, None).unwrap();
        assert_eq!(
            scan.vms.iter().map(|v| v.pid).collect::<Vec<_>>(),
            vec![100, 200, 500]
        );
        assert_eq!(scan.denied, 0);
    }

    #[test]
    fn qemu_args() {
        let a: Vec<String> = ["qemu", "-name", "guest=web1,debug-threads=on", "-m", "2G"]
            .map(String::from)
            .into();
        assert_eq!(qemu_name(&a).as_deref(), Some("web1"));
        assert_eq!(qemu_memory(&a), Some(2 << 30));
        let a: Vec<String> = ["qemu", "-name", "db", "-m", "512"]
            .map(String::from)
            .into();
        assert_eq!(qemu_name(&a).as_deref(), Some("db"));
        assert_eq!(qemu_memory(&a), Some(512 << 20));
    }
}

//! Discovery on captured /proc trees: each VMM's conventions, debugfs, the syscall method,
//! kernel workers, and processes that are not VMs.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use hvprof::discover::{find_vms, inspect, VcpuSource};

struct Thread<'a> {
    tid: i32,
    comm: &'a str,
    syscall: &'a str,
    flags: u64,
}

fn make_proc(
    root: &Path,
    pid: i32,
    comm: &str,
    cmdline: &[&str],
    fds: &[(u32, &str)],
    threads: &[Thread<'_>],
) {
    let p = root.join(pid.to_string());
    fs::create_dir_all(p.join("fd")).unwrap();
    fs::write(p.join("comm"), format!("{comm}\n")).unwrap();
    fs::write(p.join("cmdline"), cmdline.join("\0") + "\0").unwrap();
    fs::write(p.join("status"), "Name:\tx\nVmRSS:\t  2048 kB\n").unwrap();
    for (fd, target) in fds {
        symlink(target, p.join("fd").join(fd.to_string())).unwrap();
    }
    for t in threads {
        let td = p.join("task").join(t.tid.to_string());
        fs::create_dir_all(&td).unwrap();
        fs::write(td.join("comm"), format!("{}\n", t.comm)).unwrap();
        fs::write(td.join("syscall"), format!("{}\n", t.syscall)).unwrap();
        fs::write(
            td.join("stat"),
            format!(
                "{} ({}) S 1 {pid} {pid} 0 -1 {} 0 0",
                t.tid, t.comm, t.flags
            ),
        )
        .unwrap();
    }
}

const IDLE: &str = "7 0x5 0x1 0xffffffff 0x0 0x0 0x0 0x7ffc 0x7f00";

#[test]
fn qemu_firecracker_cloud_hypervisor_and_plain_processes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // QEMU: names "CPU n/KVM"; vCPU 0 blocked in KVM_RUN on fd 12, vCPU 1 running guest code.
    make_proc(
        root,
        100,
        "qemu-system-x86",
        &[
            "qemu-system-x86_64",
            "-name",
            "guest=web1,debug-threads=on",
            "-m",
            "4G",
            "-enable-kvm",
        ],
        &[
            (3, "/dev/kvm"),
            (10, "anon_inode:kvm-vm"),
            (12, "anon_inode:kvm-vcpu:0"),
            (13, "anon_inode:kvm-vcpu:1"),
            (14, "anon_inode:[eventfd]"),
        ],
        &[
            Thread {
                tid: 100,
                comm: "qemu-system-x86",
                syscall: IDLE,
                flags: 0x400040,
            },
            Thread {
                tid: 101,
                comm: "CPU 0/KVM",
                syscall: "16 0xc 0xae80 0x0 0x0 0x0 0x0 0x7ffc 0x7f00",
                flags: 0x400040,
            },
            Thread {
                tid: 102,
                comm: "CPU 1/KVM",
                syscall: "running",
                flags: 0x400040,
            },
            // KVM's NX huge page recovery worker: created from a KVM_RUN, so its saved
            // registers show ioctl(12, KVM_RUN); it must not be taken for vCPU 0.
            Thread {
                tid: 103,
                comm: "kvm-nx-lpage-re",
                syscall: "16 0xc 0xae80 0x0 0x0 0x0 0x0 0x7ffc 0x7f00",
                flags: 0x20c040,
            },
        ],
    );
    // Firecracker: "fc_vcpu n"; no vCPU fds visible (closed), names only.
    make_proc(
        root,
        200,
        "firecracker",
        &["firecracker", "--api-sock", "/tmp/fc.sock"],
        &[(5, "anon_inode:kvm-vm")],
        &[
            Thread {
                tid: 200,
                comm: "firecracker",
                syscall: IDLE,
                flags: 0,
            },
            Thread {
                tid: 201,
                comm: "fc_vcpu 0",
                syscall: "running",
                flags: 0,
            },
            Thread {
                tid: 202,
                comm: "fc_vcpu 1",
                syscall: "running",
                flags: 0,
            },
        ],
    );
    // cloud-hypervisor: "vcpu0"; debugfs names vCPU 1's thread.
    make_proc(
        root,
        300,
        "cloud-hyperviso",
        &["cloud-hypervisor", "--kernel", "vmlinux"],
        &[
            (7, "anon_inode:kvm-vm"),
            (8, "anon_inode:kvm-vcpu:0"),
            (9, "anon_inode:kvm-vcpu:1"),
        ],
        &[
            Thread {
                tid: 300,
                comm: "cloud-hyperviso",
                syscall: IDLE,
                flags: 0,
            },
            Thread {
                tid: 301,
                comm: "vcpu0",
                syscall: "running",
                flags: 0,
            },
            Thread {
                tid: 302,
                comm: "worker",
                syscall: "running",
                flags: 0,
            },
        ],
    );
    // Not a VM.
    make_proc(
        root,
        400,
        "bash",
        &["bash"],
        &[(0, "/dev/pts/0")],
        &[Thread {
            tid: 400,
            comm: "bash",
            syscall: IDLE,
            flags: 0,
        }],
    );
    let debugfs = root.join("debugfs-kvm");
    fs::create_dir_all(debugfs.join("300-7/vcpu1")).unwrap();
    fs::write(debugfs.join("300-7/vcpu1/pid"), "302\n").unwrap();

    let vms = find_vms(root, Some(&debugfs)).unwrap();
    assert_eq!(
        vms.iter().map(|v| v.pid).collect::<Vec<_>>(),
        vec![100, 200, 300]
    );

    let q = &vms[0];
    assert_eq!(q.name, "web1");
    assert_eq!(q.guest_memory_bytes, Some(4 << 30));
    assert_eq!(q.rss_bytes, Some(2048 * 1024));
    assert_eq!(q.vcpus.len(), 2);
    assert_eq!(
        (q.vcpus[0].tid, q.vcpus[0].source),
        (Some(101), Some(VcpuSource::Syscall))
    );
    assert_eq!(
        (q.vcpus[1].tid, q.vcpus[1].source),
        (Some(102), Some(VcpuSource::ThreadName))
    );
    assert!(q.threads.iter().any(|t| t.tid == 103 && t.kernel_worker));

    let f = &vms[1];
    assert_eq!(f.name, "firecracker");
    assert_eq!(
        f.vcpus.iter().map(|v| (v.index, v.tid)).collect::<Vec<_>>(),
        vec![(0, Some(201)), (1, Some(202))]
    );

    let c = &vms[2];
    assert_eq!(
        (c.vcpus[0].tid, c.vcpus[0].source),
        (Some(301), Some(VcpuSource::ThreadName))
    );
    assert_eq!(
        (c.vcpus[1].tid, c.vcpus[1].source),
        (Some(302), Some(VcpuSource::Debugfs))
    );

    let err = inspect(root, None, 400).unwrap_err().to_string();
    assert_eq!(
        err,
        "pid 400 (bash) is not a KVM VM: it holds no anon_inode:kvm-vm file descriptor"
    );
    let err = inspect(root, None, 999).unwrap_err().to_string();
    assert_eq!(err, "no process with pid 999");
}

//! Messages and a populated model shared by the model's unit tests.

use hvprof_proto::{ClockInfo, Hello, Message, Segment, WireSwitch, WireSymbol};

use super::{Budget, GuestModel};

/// A hello from boot `boot`.
pub(super) fn hello(boot: &str) -> Message {
    Message::Hello(Hello {
        helper_version: "t".into(),
        kernel_release: "6.1".into(),
        boot_id: boot.into(),
        hostname: "g".into(),
        cpus: 2,
        clock: ClockInfo::default(),
        now_ns: 0,
        sampling_hz: 0,
        flags: 0,
    })
}

/// A switch on `cpu` at `time`: `pid`/`tid` in, or out with `out`.
pub(super) fn sw(cpu: u32, time: u64, pid: u32, tid: u32, out: bool) -> WireSwitch {
    WireSwitch {
        cpu,
        time,
        pid,
        tid,
        out,
        preempt: false,
    }
}

/// The three messages of a table for `/bin/hvprof-workload` (`hot_alpha`, `hot_beta`, a
/// mangled Rust name at 0x1100.., one segment at file offset 0x1000).
pub(super) fn table_msgs(key: &[u8]) -> Vec<Message> {
    vec![
        Message::SymtabBegin {
            file_key: key.to_vec(),
            build_id: key.to_vec(),
            path: "/bin/hvprof-workload".into(),
            elf_type: 3,
            segments: vec![Segment {
                offset: 0x1000,
                vaddr: 0x1000,
                filesz: 0x3000,
                memsz: 0x3000,
            }],
            symbol_count: 3,
        },
        Message::SymtabChunk {
            file_key: key.to_vec(),
            symbols: vec![
                WireSymbol {
                    start: 0x1100,
                    size: 0x100,
                    name: "hot_alpha".into(),
                },
                WireSymbol {
                    start: 0x1200,
                    size: 0x100,
                    name: "hot_beta".into(),
                },
                WireSymbol {
                    start: 0x1300,
                    size: 0x100,
                    name: "_ZN4core3fmt5write17h0123456789abcdefE".into(),
                },
            ],
        },
        Message::SymtabEnd {
            file_key: key.to_vec(),
        },
    ]
}

/// A model of VM 4242 (vCPUs 0, 1 on host threads 5000, 5001) with process 77 running
/// `/bin/hvprof-workload` mapped at 0x5555_0000_1000, its table, and guest kallsyms.
pub(super) fn model_with_process() -> GuestModel {
    let mut m = GuestModel::new(4242, Budget::default());
    m.set_vcpu_threads(&[(0, Some(5000)), (1, Some(5001))]);
    m.apply(hello("b")).unwrap();
    for t in table_msgs(b"BID1") {
        m.apply(t).unwrap();
    }
    m.apply(Message::Comm {
        pid: 77,
        tid: 77,
        time: 0,
        exec: false,
        comm: "hvprof-workload".into(),
    })
    .unwrap();
    m.apply(Message::Mmap {
        pid: 77,
        tid: 77,
        time: 0,
        start: 0x5555_0000_1000,
        len: 0x3000,
        pgoff: 0x1000,
        prot: 5,
        file_key: b"BID1".to_vec(),
        build_id: b"BID1".to_vec(),
        path: "/bin/hvprof-workload".into(),
    })
    .unwrap();
    let a = b"ffffffff81000000 T _stext\nffffffff81001000 T do_idle\nffffffff81002000 T ";
    let b = b"schedule\nffffffffc0000000 t vp_notify\t[virtio_pci]\n";
    m.apply(Message::KallsymsChunk(a.to_vec())).unwrap();
    m.apply(Message::KallsymsChunk(b.to_vec())).unwrap();
    m.apply(Message::KallsymsEnd {
        total: (a.len() + b.len()) as u64,
    })
    .unwrap();
    m
}

//! Decoder tests on bytes laid out by hand or by [`super::encode`] per perf_event.h.

use super::encode::{self, Encoder, SampleParts};
use super::*;

const HV: u64 = abi::HVPROF_SAMPLE_TYPE;

fn decode_all(d: &RecordDecoder, b: &[u8]) -> Vec<Record<'static>> {
    let leaked: &'static [u8] = Box::leak(b.to_vec().into_boxed_slice());
    d.records(leaked).collect()
}

#[test]
fn cpumode_from_misc_table() {
    let table = [
        (0u16, CpuMode::Unknown),
        (1, CpuMode::Kernel),
        (2, CpuMode::User),
        (3, CpuMode::Hypervisor),
        (4, CpuMode::GuestKernel),
        (5, CpuMode::GuestUser),
        (6, CpuMode::Unknown),
        (7, CpuMode::Unknown),
        (abi::MISC_EXACT_IP | 4, CpuMode::GuestKernel),
        (0x2000 | 2, CpuMode::User),
    ];
    for (misc, mode) in table {
        assert_eq!(CpuMode::from_misc(misc), mode, "misc {misc:#x}");
        if mode != CpuMode::Unknown {
            assert_eq!(CpuMode::from_misc(mode.to_misc()), mode);
        }
    }
}

#[test]
fn decodes_sample_bytes_laid_out_by_hand() {
    // header: type 9, misc 4 (GUEST_KERNEL), size 48; then ip, pid, tid, time, cpu, res, period.
    let mut b = vec![9, 0, 0, 0, 4, 0, 48, 0];
    b.extend_from_slice(&0xffff_ffff_8100_1234u64.to_le_bytes());
    b.extend_from_slice(&100u32.to_le_bytes());
    b.extend_from_slice(&101u32.to_le_bytes());
    b.extend_from_slice(&5_000u64.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&1_000_000u64.to_le_bytes());
    let out = decode_all(&RecordDecoder::new(HV), &b);
    let want = Sample {
        ip: 0xffff_ffff_8100_1234,
        pid: 100,
        tid: 101,
        time_ns: 5000,
        cpu: 1,
        period: 1_000_000,
        cpumode: CpuMode::GuestKernel,
        exact_ip: false,
    };
    assert!(matches!(&out[..], [Record::Sample(s)] if s.sample == want && s.callchain.is_none()));
    let mut enc = vec![];
    encode::sample(
        &mut enc,
        CpuMode::GuestKernel,
        want.ip,
        100,
        101,
        5000,
        1,
        1_000_000,
    );
    assert_eq!(enc, b, "encoder matches the hand-laid bytes");
}

#[test]
fn corrupt_sizes_are_reported_and_bounded() {
    let d = RecordDecoder::new(HV);
    let mut b = vec![];
    encode::sample(&mut b, CpuMode::User, 1, 2, 3, 4, 0, 5);
    b.extend_from_slice(&[9, 0, 0, 0, 2, 0, 4, 0]); // size 4 < header
    let out = decode_all(&d, &b);
    assert_eq!(out.len(), 2);
    assert!(matches!(
        out[1],
        Record::Corrupt {
            offset: 48,
            skipped: 8,
            ..
        }
    ));
    // A size past the end of the batch.
    let out = decode_all(&d, &[9u8, 0, 0, 0, 2, 0, 200, 0, 0, 0]);
    assert!(matches!(
        &out[..],
        [Record::Corrupt {
            offset: 0,
            skipped: 10,
            ..
        }]
    ));
    // A truncated header.
    let out = decode_all(&d, &[9u8, 0, 0]);
    assert!(matches!(
        &out[..],
        [Record::Corrupt {
            offset: 0,
            skipped: 3,
            ..
        }]
    ));
    // A sample too short for its sample_type is skipped by size; the next record decodes.
    let mut b = vec![9u8, 0, 0, 0, 2, 0, 16, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    encode::sample(&mut b, CpuMode::User, 1, 2, 3, 4, 0, 5);
    let out = decode_all(&d, &b);
    assert!(matches!(
        out[0],
        Record::Corrupt {
            offset: 0,
            skipped: 16,
            ..
        }
    ));
    assert!(matches!(&out[1], Record::Sample(s) if s.sample.ip == 1));
}

#[test]
fn decodes_lost_throttle_task_comm_mmap2() {
    let mut b = vec![];
    encode::lost(&mut b, 7, 42, 10, 11, 99, 1);
    encode::throttle(&mut b, true, 100, 10, 11, 1);
    encode::throttle(&mut b, false, 200, 10, 11, 1);
    encode::exit(&mut b, 10, 11, 300, 1);
    encode::task(&mut b, true, 10, 12, 310, 1);
    encode::comm(&mut b, 10, 12, "CPU 0/KVM", false, 320, 1);
    encode::mmap2(
        &mut b,
        CpuMode::User,
        10,
        10,
        0x40_0000,
        0x1000,
        0,
        5,
        "/usr/bin/qemu",
        330,
    );
    let out = decode_all(&RecordDecoder::new(HV), &b);
    let sid = SampleId {
        pid: Some(10),
        tid: Some(11),
        time_ns: Some(99),
        id: None,
        cpu: Some(1),
    };
    assert_eq!(out[0], Record::Lost { lost: 42, sid });
    assert!(matches!(
        out[1],
        Record::Throttle {
            throttled: true,
            time_ns: 100,
            ..
        }
    ));
    assert!(matches!(
        out[2],
        Record::Throttle {
            throttled: false,
            time_ns: 200,
            ..
        }
    ));
    assert!(matches!(
        out[3],
        Record::Exit(Task {
            pid: 10,
            tid: 11,
            time_ns: 300,
            ..
        })
    ));
    assert!(matches!(out[4], Record::Fork(Task { tid: 12, .. })));
    assert!(
        matches!(&out[5], Record::Comm { tid: 12, comm, exec: false, .. } if comm == "CPU 0/KVM")
    );
    match &out[6] {
        Record::Mmap(m) => {
            assert_eq!((m.pid, m.addr, m.len, m.prot), (10, 0x40_0000, 0x1000, 5));
            assert_eq!(m.filename, "/usr/bin/qemu");
            assert!(matches!(m.file, Some(MmapFile::Inode { ino: 1234, .. })));
            assert_eq!(m.sid.time_ns, Some(330));
        }
        r => panic!("not an mmap: {r:?}"),
    }
    assert_eq!(out.len(), 7);
}

#[test]
fn mmap2_with_build_id() {
    // u32 pid, tid; u64 addr, len, pgoff; u8 size, 3 reserved; u8 build_id[20]; u32 prot, flags;
    // filename; then the 24-byte TID|TIME|CPU trailer.
    let mut f = vec![];
    for v in [7u32, 7] {
        f.extend_from_slice(&v.to_ne_bytes());
    }
    for v in [0x1000u64, 0x2000, 0] {
        f.extend_from_slice(&v.to_ne_bytes());
    }
    f.extend_from_slice(&[3, 0, 0, 0]);
    f.extend_from_slice(&[0xaa, 0xbb, 0xcc]);
    f.extend_from_slice(&[0; 17]);
    for v in [5u32, 2] {
        f.extend_from_slice(&v.to_ne_bytes());
    }
    f.extend_from_slice(b"/bin/sh\0");
    let e = Encoder::new(abi::SAMPLE_TID | abi::SAMPLE_TIME | abi::SAMPLE_CPU);
    let mut b = vec![];
    e.sideband(
        &mut b,
        abi::RECORD_MMAP2,
        abi::MISC_MMAP_BUILD_ID | 2,
        &f,
        7,
        7,
        1,
        0,
    );
    let d = RecordDecoder::new(e.sample_type);
    match &decode_all(&d, &b)[..] {
        [Record::Mmap(m)] => {
            assert_eq!(m.file, Some(MmapFile::BuildId(&[0xaa, 0xbb, 0xcc])));
            assert_eq!(m.filename, "/bin/sh");
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn callchain_markers_keep_guest_frames_apart() {
    let st = HV | abi::SAMPLE_CALLCHAIN;
    let chain = [
        abi::CONTEXT_KERNEL,
        0xffff_ffff_8100_0010,
        0xffff_ffff_8100_0020,
        abi::CONTEXT_USER,
        0x40_1000,
        abi::CONTEXT_GUEST,
        abi::CONTEXT_GUEST_KERNEL,
        0xffff_ffff_a000_0000,
        abi::CONTEXT_GUEST_USER,
        0x7f00_0000,
    ];
    let mut b = vec![];
    Encoder::new(st).sample(
        &mut b,
        &SampleParts {
            cpumode: Some(CpuMode::Kernel),
            ip: 0xffff_ffff_8100_0010,
            callchain: &chain,
            ..SampleParts::default()
        },
    );
    let out = decode_all(&RecordDecoder::new(st), &b);
    let Record::Sample(s) = &out[0] else {
        panic!("{out:?}")
    };
    let cc = s.callchain.expect("callchain");
    assert_eq!(cc.len(), chain.len());
    let frames: Vec<_> = cc.frames(CpuMode::Kernel).collect();
    assert_eq!(
        frames,
        vec![
            (CpuMode::Kernel, 0xffff_ffff_8100_0010),
            (CpuMode::Kernel, 0xffff_ffff_8100_0020),
            (CpuMode::User, 0x40_1000),
            (CpuMode::GuestKernel, 0xffff_ffff_a000_0000),
            (CpuMode::GuestUser, 0x7f00_0000),
        ]
    );
    // A callchain whose nr runs past the record is corrupt, not a panic or a huge allocation.
    let mut bad = b.clone();
    let nr_at = 8 + 40;
    bad[nr_at..nr_at + 8].copy_from_slice(&u64::MAX.to_ne_bytes());
    assert!(matches!(
        decode_all(&RecordDecoder::new(st), &bad)[0],
        Record::Corrupt { .. }
    ));
}

#[test]
fn user_regs_and_stack_follow_the_abi() {
    // sample_regs_user with 3 registers (e.g. BP, SP, IP: bits 6, 7, 8 of perf_regs.h).
    let mask = (1 << 6) | (1 << 7) | (1 << 8);
    let st = HV | abi::SAMPLE_REGS_USER | abi::SAMPLE_STACK_USER;
    let stack: Vec<u8> = (0..64).collect();
    let mut b = vec![];
    Encoder::new(st).sample(
        &mut b,
        &SampleParts {
            cpumode: Some(CpuMode::User),
            ip: 0x40_1000,
            regs_user: (abi::REGS_ABI_64, &[0x7ffc_0100, 0x7ffc_00f0, 0x40_1000]),
            stack_user: (&stack, 40),
            ..SampleParts::default()
        },
    );
    let d = RecordDecoder::new(st).regs_user(mask);
    let out = decode_all(&d, &b);
    let Record::Sample(s) = &out[0] else {
        panic!("{out:?}")
    };
    let regs = s.regs_user.expect("regs");
    assert_eq!(
        (regs.abi, regs.len(), regs.get(1), regs.get(3)),
        (2, 3, Some(0x7ffc_00f0), None)
    );
    assert_eq!(
        s.stack_user,
        Some(&stack[..40]),
        "dyn_size bounds the valid stack"
    );
    // ABI_NONE: no registers follow, and a zero-size stack has no dyn_size.
    let mut b = vec![];
    Encoder::new(st).sample(
        &mut b,
        &SampleParts {
            regs_user: (abi::REGS_ABI_NONE, &[]),
            ..SampleParts::default()
        },
    );
    let out = decode_all(&d, &b);
    let Record::Sample(s) = &out[0] else {
        panic!("{out:?}")
    };
    assert!(s.regs_user.unwrap().is_empty());
    assert_eq!(s.stack_user, Some(&[][..]));
}

#[test]
fn tracepoint_raw_and_trailerless_lost() {
    let st = abi::SAMPLE_TID | abi::SAMPLE_TIME | abi::SAMPLE_CPU | abi::SAMPLE_RAW;
    let mut b = vec![];
    Encoder::new(st).sample(
        &mut b,
        &SampleParts {
            pid: 5,
            tid: 6,
            time: 7,
            cpu: 1,
            raw: &[1, 2, 3, 4, 5],
            ..SampleParts::default()
        },
    );
    assert_eq!(b.len() % 8, 0);
    // LOST without sample_id_all: `u64 id; u64 lost`.
    let mut lost = vec![2, 0, 0, 0, 0, 0, 24, 0];
    lost.extend_from_slice(&0u64.to_ne_bytes());
    lost.extend_from_slice(&9u64.to_ne_bytes());
    b.extend_from_slice(&lost);
    let d = RecordDecoder::new(st).sample_id_all(false);
    let out = decode_all(&d, &b);
    let Record::Sample(s) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(
        (s.sample.pid, s.sample.tid, s.sample.time_ns, s.sample.cpu),
        (5, 6, 7, 1)
    );
    assert_eq!(&s.raw.unwrap()[..5], &[1, 2, 3, 4, 5]);
    assert_eq!(
        out[1],
        Record::Lost {
            lost: 9,
            sid: SampleId::default()
        }
    );
}

#[test]
fn switch_cpu_wide_ksymbol_and_unknown_types() {
    let e = Encoder::new(HV);
    let mut b = vec![];
    let mut f = vec![];
    f.extend_from_slice(&20u32.to_ne_bytes());
    f.extend_from_slice(&21u32.to_ne_bytes());
    e.sideband(
        &mut b,
        abi::RECORD_SWITCH_CPU_WIDE,
        abi::MISC_SWITCH_OUT | abi::MISC_SWITCH_OUT_PREEMPT,
        &f,
        10,
        11,
        5,
        0,
    );
    e.sideband(&mut b, abi::RECORD_SWITCH, 0, &[], 10, 11, 6, 0);
    let mut k = vec![];
    k.extend_from_slice(&0xffff_ffff_c000_0000u64.to_ne_bytes());
    k.extend_from_slice(&64u32.to_ne_bytes());
    k.extend_from_slice(&1u16.to_ne_bytes());
    k.extend_from_slice(&0u16.to_ne_bytes());
    k.extend_from_slice(b"bpf_prog_1\0");
    e.sideband(&mut b, abi::RECORD_KSYMBOL, 1, &k, 0, 0, 7, 0);
    // A user record type (perf.data's PERF_RECORD_FINISHED_ROUND = 68) with no trailer.
    b.extend_from_slice(&[68, 0, 0, 0, 0, 0, 8, 0]);
    let out = decode_all(&RecordDecoder::new(HV), &b);
    assert!(matches!(
        out[0],
        Record::Switch {
            out: true,
            preempt: true,
            next_prev: Some((20, 21)),
            ..
        }
    ));
    assert!(matches!(
        out[1],
        Record::Switch {
            out: false,
            next_prev: None,
            sid: SampleId {
                time_ns: Some(6),
                ..
            },
            ..
        }
    ));
    assert!(
        matches!(&out[2], Record::Ksymbol(k) if k.name == "bpf_prog_1" && k.len == 64 && !k.unregister)
    );
    assert!(matches!(out[3], Record::Other { kind: 68, .. }));
}

#[test]
fn read_format_group_counts_near_usize_max_do_not_overflow() {
    // Found by the records fuzz target: a PERF_FORMAT_GROUP `nr` whose word count overflows.
    let st = abi::SAMPLE_READ;
    let d = RecordDecoder::new(st).read_format(abi::FORMAT_GROUP | abi::FORMAT_ID);
    let mut b = vec![9u8, 0, 0, 0, 2, 0, 24, 0];
    b.extend_from_slice(&(u64::MAX / 2).to_ne_bytes());
    b.extend_from_slice(&[0u8; 8]);
    assert!(matches!(decode_all(&d, &b)[..], [Record::Corrupt { .. }]));
}

#[test]
fn never_panics_on_arbitrary_bytes() {
    // A cheap deterministic fuzz: every prefix and single-byte corruption of a valid batch.
    let st = HV
        | abi::SAMPLE_CALLCHAIN
        | abi::SAMPLE_RAW
        | abi::SAMPLE_REGS_USER
        | abi::SAMPLE_STACK_USER
        | abi::SAMPLE_READ;
    let mut b = vec![];
    Encoder::new(st).sample(
        &mut b,
        &SampleParts {
            callchain: &[1, 2],
            raw: &[1],
            stack_user: (&[0; 16], 8),
            regs_user: (2, &[1]),
            ..SampleParts::default()
        },
    );
    encode::comm(&mut b, 1, 1, "x", true, 1, 0);
    let d = RecordDecoder::new(st)
        .regs_user(1)
        .read_format(abi::FORMAT_GROUP | abi::FORMAT_ID);
    for n in 0..b.len() {
        let _ = d.records(&b[..n]).count();
        for bit in 0..8 {
            let mut c = b.clone();
            c[n] ^= 1 << bit;
            let _ = d.records(&c).count();
        }
    }
}

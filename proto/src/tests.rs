//! Round trips of every message, the pinned header layout, and hostile frames.

use crate::*;

fn all_messages() -> Vec<Message> {
    vec![
        Message::Hello(Hello {
            helper_version: "0.1.0".into(),
            kernel_release: "6.1.0-18-amd64".into(),
            boot_id: "b0e7c9d2-0000-4000-8000-000000000001".into(),
            hostname: "guest".into(),
            cpus: 2,
            clock: ClockInfo {
                clock_id: CLOCK_PERF_LOCAL,
                cap_user_time_zero: true,
                time_shift: 31,
                time_mult: 1_234_567,
                time_zero: 42,
            },
            now_ns: 123,
            sampling_hz: 1000,
            flags: HELLO_KALLSYMS | HELLO_SIDEBAND,
        }),
        Message::KallsymsChunk(b"ffffffff81000000 T _stext\n".to_vec()),
        Message::KallsymsEnd { total: 26 },
        Message::Modules(vec![Module {
            name: "virtio_console".into(),
            base: 0xffff_ffff_c000_0000,
            size: 4096,
        }]),
        Message::Comm {
            pid: 7,
            tid: 8,
            time: 9,
            exec: true,
            comm: "hvprof-workload".into(),
        },
        Message::Mmap {
            pid: 7,
            tid: 7,
            time: 10,
            start: 0x40_0000,
            len: 0x1000,
            pgoff: 0,
            prot: 5,
            file_key: vec![1, 2, 3],
            build_id: vec![1, 2, 3],
            path: "/bin/hvprof-workload".into(),
        },
        Message::Task {
            kind: TaskKind::Exit,
            pid: 1,
            ppid: 0,
            tid: 1,
            ptid: 0,
            time: 5,
        },
        Message::Switches(vec![WireSwitch {
            cpu: 1,
            time: 2,
            pid: 3,
            tid: 4,
            out: true,
            preempt: true,
        }]),
        Message::SymtabBegin {
            file_key: vec![9; 20],
            build_id: vec![9; 20],
            path: "/lib/libc.so.6".into(),
            elf_type: 3,
            segments: vec![Segment {
                offset: 0,
                vaddr: 0,
                filesz: 10,
                memsz: 10,
            }],
            symbol_count: 1,
        },
        Message::SymtabChunk {
            file_key: vec![9; 20],
            symbols: vec![WireSymbol {
                start: 0x1000,
                size: 16,
                name: "hot_alpha".into(),
            }],
        },
        Message::SymtabEnd {
            file_key: vec![9; 20],
        },
        Message::Samples(vec![WireSample {
            ip: 1,
            pid: 2,
            tid: 3,
            time: 4,
            cpu: 5,
            misc: 2,
            period: 1_000_000,
        }]),
        Message::Lost {
            cpu: 0,
            kind: LOST_SAMPLES,
            count: 3,
        },
        Message::Pong {
            seq: 1,
            host_time: 2,
            guest_time: 3,
        },
        Message::Note {
            level: 1,
            text: "kptr_restrict".into(),
        },
        Message::Bye {
            reason: "duration".into(),
        },
        Message::HostHello {
            host_version: "0.1.0".into(),
        },
        Message::Ready { now_ns: 77 },
        Message::Ping {
            seq: 1,
            host_time: 99,
        },
    ]
}

#[test]
fn round_trip_every_message() {
    let mut wire = Vec::new();
    let msgs = all_messages();
    for m in &msgs {
        m.encode(&mut wire);
    }
    // Byte at a time: the incremental decoder must not care about boundaries.
    let mut d = FrameDecoder::new(Limits::default());
    let mut got = Vec::new();
    for b in &wire {
        d.push(std::slice::from_ref(b));
        while let Some(m) = d.next_message().unwrap() {
            got.push(m);
        }
    }
    assert_eq!(got, msgs);
    // And through the blocking reader.
    let mut r = &wire[..];
    let mut got = Vec::new();
    while let Some(m) = read_message(&mut r, &Limits::default()).unwrap() {
        got.push(m);
    }
    assert_eq!(got, msgs);
}

#[test]
fn header_layout_is_pinned() {
    let f = Message::Bye { reason: "x".into() }.to_frame();
    assert_eq!(&f[..4], b"HVPG");
    assert_eq!(&f[4..6], &[1, 0]);
    assert_eq!(&f[6..8], &[16, 0]);
    assert_eq!(&f[8..12], &[3, 0, 0, 0]);
    assert_eq!(&f[12..], &[1, 0, b'x']);
}

#[test]
fn oversized_length_is_rejected_before_reading() {
    let mut f = Message::Bye { reason: "x".into() }.to_frame();
    f[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut d = FrameDecoder::new(Limits::default());
    d.push(&f);
    assert!(matches!(
        d.next_message(),
        Err(ProtoError::TooLong { len: u32::MAX, .. })
    ));
    // Stays failed.
    assert!(d.next_message().is_err());
}

#[test]
fn huge_count_in_small_payload() {
    // Samples: count 1e9 with 4 payload bytes.
    let mut f = Vec::new();
    f.extend_from_slice(&MAGIC.to_le_bytes());
    f.extend_from_slice(&VERSION.to_le_bytes());
    f.extend_from_slice(&(MsgType::SymtabChunk as u16).to_le_bytes());
    f.extend_from_slice(&6u32.to_le_bytes());
    f.extend_from_slice(&0u16.to_le_bytes());
    f.extend_from_slice(&1_000_000_000u32.to_le_bytes());
    let mut d = FrameDecoder::new(Limits::default());
    d.push(&f);
    assert!(matches!(
        d.next_message(),
        Err(ProtoError::Truncated { field: "count", .. })
    ));
}

#[test]
fn truncated_frames_wait_or_fail() {
    let f = all_messages()[0].to_frame();
    for cut in 0..f.len() {
        let mut d = FrameDecoder::new(Limits::default());
        d.push(&f[..cut]);
        assert_eq!(d.next_message(), Ok(None), "cut at {cut}");
        let mut r = &f[..cut];
        let res = read_message(&mut r, &Limits::default());
        if cut == 0 {
            assert!(matches!(res, Ok(None)));
        } else {
            assert!(res.is_err());
        }
    }
    // A frame whose declared length is shorter than its fields.
    let mut g = f.clone();
    let len = u32::from_le_bytes(g[8..12].try_into().unwrap()) - 5;
    g[8..12].copy_from_slice(&len.to_le_bytes());
    let mut d = FrameDecoder::new(Limits::default());
    d.push(&g);
    assert!(matches!(
        d.next_message(),
        Err(ProtoError::Truncated { .. })
    ));
}

#[test]
fn bad_magic_version_type_trailing() {
    let f = Message::Bye { reason: "x".into() }.to_frame();
    let mut g = f.clone();
    g[0] = b'X';
    assert!(matches!(decode_all(&g), Err(ProtoError::BadMagic { .. })));
    let mut g = f.clone();
    g[4] = 2;
    assert_eq!(decode_all(&g), Err(ProtoError::BadVersion { found: 2 }));
    let mut g = f.clone();
    g[6] = 200;
    assert_eq!(decode_all(&g), Err(ProtoError::UnknownType(200)));
    let mut g = f.clone();
    g.push(0);
    g[8] = 4;
    assert!(matches!(
        decode_all(&g),
        Err(ProtoError::Trailing { extra: 1, .. })
    ));
}

fn decode_all(b: &[u8]) -> Result<Vec<Message>, ProtoError> {
    let mut d = FrameDecoder::new(Limits::default());
    d.push(b);
    let mut v = Vec::new();
    while let Some(m) = d.next_message()? {
        v.push(m);
    }
    Ok(v)
}

#[test]
fn non_utf8_names_are_replaced_not_rejected() {
    let mut f = Message::Note {
        level: 0,
        text: "ab".into(),
    }
    .to_frame();
    let n = f.len();
    f[n - 1] = 0xff;
    let m = decode_all(&f).unwrap();
    assert_eq!(
        m,
        vec![Message::Note {
            level: 0,
            text: "a\u{fffd}".into()
        }]
    );
}

#[test]
fn long_strings_are_cut_by_encoder_and_rejected_by_decoder() {
    let long = "é".repeat(MAX_STR);
    let f = Message::Bye {
        reason: long.clone(),
    }
    .to_frame();
    match &decode_all(&f).unwrap()[0] {
        Message::Bye { reason } => {
            assert!(reason.len() <= MAX_STR && long.starts_with(reason.as_str()))
        }
        m => panic!("{m:?}"),
    }
    let mut g = Vec::new();
    g.extend_from_slice(&MAGIC.to_le_bytes());
    g.extend_from_slice(&VERSION.to_le_bytes());
    g.extend_from_slice(&(MsgType::Bye as u16).to_le_bytes());
    g.extend_from_slice(&(2 + 5000u32).to_le_bytes());
    g.extend_from_slice(&5000u16.to_le_bytes());
    g.extend(std::iter::repeat_n(b'a', 5000));
    assert!(matches!(
        decode_all(&g),
        Err(ProtoError::FieldTooLong { len: 5000, .. })
    ));
}

#[test]
fn resync_finds_next_frame() {
    let mut wire = b"garbage-HVP".to_vec();
    Message::Bye { reason: "r".into() }.encode(&mut wire);
    let mut d = FrameDecoder::new(Limits::default());
    d.push(&wire);
    assert!(d.next_message().is_err());
    assert_eq!(d.resync(), 11);
    assert_eq!(
        d.next_message().unwrap(),
        Some(Message::Bye { reason: "r".into() })
    );
}

/// The wire format is pinned byte for byte: `all_messages()` encoded by the implementation
/// that preceded the message table (guest/src/proto.rs, protocol version 1).
#[test]
fn encoding_matches_pinned_bytes() {
    let golden: &[u8] = include_bytes!("../tests/fixtures/all_messages.bin");
    let mut wire = Vec::new();
    for m in all_messages() {
        m.encode(&mut wire);
    }
    assert_eq!(wire, golden);
}

#[test]
fn type_codes_and_names_round_trip() {
    let mut seen = std::collections::HashSet::new();
    for m in all_messages() {
        let t = m.msg_type();
        assert_eq!(MsgType::from_code(t as u16), Some(t));
        assert!(seen.insert(t.name()), "duplicate name {t}");
    }
    assert_eq!(seen.len(), 19);
    assert_eq!(MsgType::from_code(0), None);
    assert_eq!(MsgType::Ping.to_string(), "ping");
}

fn stack_sample(kernel_frames: u16, ips: Vec<u64>) -> StackSample {
    StackSample {
        sample: WireSample {
            ip: ips.first().copied().unwrap_or(1),
            pid: 2,
            tid: 3,
            time: 4,
            cpu: 1,
            misc: 2,
            period: 1_000_000,
        },
        kernel_frames,
        ips,
    }
}

#[test]
fn stack_samples_round_trip_with_pinned_layout() {
    let m = Message::StackSamples(vec![
        stack_sample(0, vec![0x40_1000, 0x40_2005, 0x40_3009]),
        stack_sample(
            2,
            vec![0xffff_ffff_8100_1000, 0xffff_ffff_8100_2000, 0x40_1000],
        ),
        stack_sample(0, vec![]),
    ]);
    let f = m.to_frame();
    assert_eq!(&f[6..8], &[18, 0], "type 18");
    // count, then the first element: 38 sample bytes, u16 kernel_frames, u32 count, u64s.
    assert_eq!(&f[12..16], &3u32.to_le_bytes());
    assert_eq!(&f[16..24], &0x40_1000u64.to_le_bytes(), "sample.ip");
    assert_eq!(&f[16 + 38..16 + 40], &0u16.to_le_bytes(), "kernel_frames");
    assert_eq!(&f[16 + 40..16 + 44], &3u32.to_le_bytes(), "ips count");
    assert_eq!(&f[16 + 44..16 + 52], &0x40_1000u64.to_le_bytes(), "ips[0]");
    let len = 4 + 3 * STACK_SAMPLE_MIN_LEN + 8 * (3 + 3);
    assert_eq!(f.len(), HEADER_LEN + len);
    assert_eq!(decode_all(&f).unwrap(), vec![m]);
    assert_eq!(MsgType::from_code(18), Some(MsgType::StackSamples));
    assert_eq!(MsgType::StackSamples.to_string(), "stack-samples");
}

#[test]
fn stack_samples_bounds_are_clean_errors() {
    // The encoder cuts a chain to MAX_CALLCHAIN frames (leaf first), so it decodes.
    let long: Vec<u64> = (0..MAX_CALLCHAIN as u64 + 10).collect();
    let f = Message::StackSamples(vec![stack_sample(200, long.clone())]).to_frame();
    match &decode_all(&f).unwrap()[0] {
        Message::StackSamples(v) => {
            assert_eq!(v[0].ips, long[..MAX_CALLCHAIN]);
            assert_eq!(usize::from(v[0].kernel_frames), MAX_CALLCHAIN);
        }
        m => panic!("{m:?}"),
    }
    // kernel_frames past the chain.
    let mut f = Message::StackSamples(vec![stack_sample(1, vec![7])]).to_frame();
    f[12 + 4 + 38..12 + 4 + 40].copy_from_slice(&2u16.to_le_bytes());
    assert!(matches!(
        decode_all(&f),
        Err(ProtoError::Invalid {
            field: "kernel_frames",
            value: 2,
            ..
        })
    ));
    // A chain count over MAX_CALLCHAIN whose words are all present.
    let n = MAX_CALLCHAIN + 1;
    let mut p = Vec::new();
    p.extend_from_slice(&1u32.to_le_bytes());
    p.extend_from_slice(&[0u8; 38]);
    p.extend_from_slice(&0u16.to_le_bytes());
    p.extend_from_slice(&(n as u32).to_le_bytes());
    p.extend_from_slice(&vec![0u8; 8 * n]);
    let mut f = Vec::new();
    f.extend_from_slice(&MAGIC.to_le_bytes());
    f.extend_from_slice(&VERSION.to_le_bytes());
    f.extend_from_slice(&(MsgType::StackSamples as u16).to_le_bytes());
    f.extend_from_slice(&(p.len() as u32).to_le_bytes());
    f.extend_from_slice(&p);
    assert!(matches!(
        decode_all(&f),
        Err(ProtoError::FieldTooLong { field: "ips", len, max: MAX_CALLCHAIN, .. }) if len == n
    ));
    // A chain count far larger than the bytes present: refused before allocating.
    let cut = 12 + 4 + 38 + 2;
    f[cut..cut + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        decode_all(&f),
        Err(ProtoError::Truncated { field: "ips", .. })
    ));
}

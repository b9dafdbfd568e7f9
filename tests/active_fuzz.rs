//! The protocol decoder and the guest model on hostile input, without cargo-fuzz: 100 000
//! random and mutated frames from a fixed seed (so CI runs the same cases every time), and a
//! table of 10⁶ symbols. Nothing may panic, and memory stays bounded by the limits.

use hvprof::active::{Budget, GuestModel};
use hvprof_proto::{
    decode_payload, ClockInfo, FrameDecoder, Hello, Limits, Message, Module, Segment, StackSample,
    TaskKind, WireSample, WireSwitch, WireSymbol, HEADER_LEN, MAGIC, MAX_CALLCHAIN, VERSION,
};

/// xorshift64*: small, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn rbytes(&mut self, max: u64) -> Vec<u8> {
        let n = self.below(max) as usize;
        self.bytes(n)
    }
    fn string(&mut self, max: usize) -> String {
        let n = self.below(max as u64 + 1) as usize;
        // Mostly ASCII, sometimes arbitrary (lossy UTF-8).
        let b: Vec<u8> = (0..n)
            .map(|_| {
                if self.below(8) == 0 {
                    self.next() as u8
                } else {
                    b'a' + self.below(26) as u8
                }
            })
            .collect();
        String::from_utf8_lossy(&b).into_owned()
    }
}

/// A random sample record (any IP, time, CPU, misc; pids and tids below 50).
fn wire_sample(r: &mut Rng) -> WireSample {
    WireSample {
        ip: r.next(),
        pid: r.below(50) as u32,
        tid: r.below(50) as u32,
        time: r.next(),
        cpu: r.next() as u32,
        misc: r.next() as u16,
        period: r.next(),
    }
}

fn random_message(r: &mut Rng) -> Message {
    let key = |r: &mut Rng| r.rbytes(24);
    match r.below(18) {
        0 => Message::Hello(Hello {
            helper_version: r.string(10),
            kernel_release: r.string(20),
            boot_id: ["a", "b"][r.below(2) as usize].into(),
            hostname: r.string(8),
            cpus: r.below(8) as u32,
            clock: ClockInfo {
                clock_id: r.next() as i32,
                cap_user_time_zero: r.below(2) == 0,
                time_shift: r.next() as u16,
                time_mult: r.next() as u32,
                time_zero: r.next(),
            },
            now_ns: r.next(),
            sampling_hz: r.next() as u32,
            flags: r.next() as u32,
        }),
        1 => {
            let lines: String = (0..r.below(5))
                .map(|_| {
                    format!(
                        "{:016x} {} {}\n",
                        r.next(),
                        ['T', 't', 'd'][r.below(3) as usize],
                        r.string(12)
                    )
                })
                .collect();
            Message::KallsymsChunk(lines.into_bytes())
        }
        2 => Message::KallsymsEnd {
            total: r.below(400),
        },
        3 => Message::Modules(
            (0..r.below(4))
                .map(|_| Module {
                    name: r.string(10),
                    base: r.next(),
                    size: r.next(),
                })
                .collect(),
        ),
        4 => Message::Comm {
            pid: r.below(50) as u32,
            tid: r.below(50) as u32,
            time: r.next(),
            exec: r.below(2) == 0,
            comm: r.string(16),
        },
        5 => Message::Mmap {
            pid: r.below(50) as u32,
            tid: r.below(50) as u32,
            time: r.below(1000),
            start: r.next(),
            len: r.next(),
            pgoff: r.next(),
            prot: r.next() as u32,
            file_key: key(r),
            build_id: key(r),
            path: r.string(30),
        },
        6 => Message::Task {
            kind: if r.below(2) == 0 {
                TaskKind::Fork
            } else {
                TaskKind::Exit
            },
            pid: r.next() as u32,
            ppid: r.next() as u32,
            tid: r.next() as u32,
            ptid: r.next() as u32,
            time: r.next(),
        },
        7 => Message::Switches(
            (0..r.below(20))
                .map(|_| WireSwitch {
                    cpu: r.below(6) as u32,
                    time: r.below(10_000),
                    pid: r.below(50) as u32,
                    tid: r.below(50) as u32,
                    out: r.below(2) == 0,
                    preempt: r.below(2) == 0,
                })
                .collect(),
        ),
        8 => Message::SymtabBegin {
            file_key: key(r),
            build_id: key(r),
            path: r.string(20),
            elf_type: r.next() as u16,
            segments: (0..r.below(4))
                .map(|_| Segment {
                    offset: r.next(),
                    vaddr: r.next(),
                    filesz: r.next(),
                    memsz: r.next(),
                })
                .collect(),
            symbol_count: r.below(100) as u32,
        },
        9 => Message::SymtabChunk {
            file_key: key(r),
            symbols: (0..r.below(30))
                .map(|_| WireSymbol {
                    start: r.next(),
                    size: r.next(),
                    name: r.string(20),
                })
                .collect(),
        },
        10 => Message::SymtabEnd { file_key: key(r) },
        11 => Message::Samples((0..r.below(30)).map(|_| wire_sample(r)).collect()),
        12 => Message::Lost {
            cpu: r.next() as u32,
            kind: r.next() as u8,
            count: r.below(1000),
        },
        13 => Message::Pong {
            seq: r.next() as u32,
            host_time: r.next(),
            guest_time: r.next(),
        },
        14 => Message::Note {
            level: r.next() as u8,
            text: r.string(50),
        },
        15 => Message::Ready { now_ns: r.next() },
        16 => Message::StackSamples(
            (0..r.below(10))
                .map(|_| {
                    let n = r.below(MAX_CALLCHAIN as u64 + 1) as usize;
                    StackSample {
                        sample: wire_sample(r),
                        kernel_frames: r.below(n as u64 + 1) as u16,
                        ips: (0..n).map(|_| r.next()).collect(),
                    }
                })
                .collect(),
        ),
        _ => Message::Bye {
            reason: r.string(20),
        },
    }
}

fn mutate(r: &mut Rng, f: &mut Vec<u8>) {
    match r.below(6) {
        0 => {
            // Bit flips.
            for _ in 0..=r.below(4) {
                if !f.is_empty() {
                    let i = r.below(f.len() as u64) as usize;
                    f[i] ^= 1 << r.below(8);
                }
            }
        }
        1 => {
            let n = r.below(f.len() as u64 + 1) as usize;
            f.truncate(n);
        }
        2 if f.len() >= HEADER_LEN + 4 => {
            // Hostile length or count field.
            let v = [u32::MAX, 1 << 24, 1 << 30, r.next() as u32][r.below(4) as usize];
            let at = [8usize, HEADER_LEN, HEADER_LEN + 2][r.below(3) as usize];
            if at + 4 <= f.len() {
                f[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        3 => {
            let extra = r.rbytes(64);
            let at = r.below(f.len() as u64 + 1) as usize;
            f.splice(at..at, extra);
        }
        4 => {
            // Valid header, random payload of the announced length.
            let kind = r.below(70) as u16;
            let len = r.below(200) as u32;
            f.clear();
            f.extend_from_slice(&MAGIC.to_le_bytes());
            f.extend_from_slice(&VERSION.to_le_bytes());
            f.extend_from_slice(&kind.to_le_bytes());
            f.extend_from_slice(&len.to_le_bytes());
            f.extend(r.bytes(len as usize));
        }
        _ => {}
    }
}

#[test]
fn hundred_thousand_random_and_mutated_frames() {
    let mut r = Rng(0x5eed_1234_abcd_ef01);
    let limits = Limits {
        max_payload: 1 << 16,
        max_str: 4096,
    };
    let budget = Budget {
        max_symbols_per_table: 1000,
        max_tables: 64,
        max_tasks: 200,
        max_maps_per_process: 64,
        max_kallsyms_bytes: 4096,
        max_cpus: 8,
        max_switches_per_cpu: 1000,
        max_samples: 5000,
        max_bytes: 8 << 20,
    };
    let mut model = GuestModel::new(7, budget);
    let mut dec = FrameDecoder::new(limits);
    let (mut ok, mut errs, mut model_errs) = (0u64, 0u64, 0u64);
    for i in 0..100_000u32 {
        let m = random_message(&mut r);
        let mut f = m.to_frame();
        let mutated = r.below(3) != 0;
        if mutated {
            mutate(&mut r, &mut f);
        } else if dec.pending() > 0 {
            // What a mutated frame left behind poisons the stream: a new connection.
            dec = FrameDecoder::new(limits);
        }
        // Stream decoding in random pieces, as from a socket.
        let mut rest = &f[..];
        while !rest.is_empty() {
            let n = 1 + r.below(rest.len() as u64) as usize;
            dec.push(&rest[..n]);
            rest = &rest[n..];
            loop {
                match dec.next_message() {
                    Ok(Some(m)) => {
                        ok += 1;
                        if model.apply(m).is_err() {
                            model_errs += 1;
                            model = GuestModel::new(7, budget);
                        }
                        assert!(model.heap_bytes() <= budget.max_bytes + (1 << 20));
                    }
                    Ok(None) => break,
                    Err(_) => {
                        errs += 1;
                        // A host drops the connection; start a fresh stream.
                        dec = FrameDecoder::new(limits);
                        break;
                    }
                }
            }
        }
        if !mutated {
            // An intact frame decodes to itself (when not behind a broken stream).
            let mut d = FrameDecoder::new(limits);
            d.push(&f);
            assert_eq!(d.next_message().unwrap(), Some(m), "frame {i}");
        }
        // The payload decoder alone, on random bytes of any type.
        let payload = r.rbytes(100);
        let _ = decode_payload(r.below(70) as u16, &payload, &limits);
        if i % 5000 == 0 {
            // Attribution on whatever the model holds must not panic either.
            for s in model.samples().iter().take(50) {
                let _ = model.attribute(s);
            }
            let stacks = model.guest_stacks(model.samples(), model.chains());
            assert!(stacks.iter().all(|s| s.frames.len() <= MAX_CALLCHAIN + 1));
        }
    }
    assert!(
        ok > 50_000 && errs > 10_000,
        "ok {ok} errs {errs} model {model_errs}"
    );
}

#[test]
fn a_million_symbols_in_chunks() {
    let mut model = GuestModel::new(7, Budget::default());
    model
        .apply(Message::Hello(Hello {
            helper_version: String::new(),
            kernel_release: String::new(),
            boot_id: "b".into(),
            hostname: String::new(),
            cpus: 1,
            clock: ClockInfo::default(),
            now_ns: 0,
            sampling_hz: 0,
            flags: 0,
        }))
        .unwrap();
    let key = b"big".to_vec();
    let mut wire = Vec::new();
    let mut tx = hvprof_guest::sender::Sender::new(&mut wire);
    let syms: Vec<WireSymbol> = (0..1_000_000u64)
        .map(|i| WireSymbol {
            start: 0x10_0000 + i * 32,
            size: 32,
            name: format!("f{i}"),
        })
        .collect();
    tx.symtab(&key, b"", "/big", 3, &[], &syms).unwrap();
    tx.send(&Message::Mmap {
        pid: 1,
        tid: 1,
        time: 0,
        start: 0x7000_0000_0000,
        len: 0x0400_0000,
        pgoff: 0,
        prot: 5,
        file_key: key.clone(),
        build_id: vec![],
        path: "/big".into(),
    })
    .unwrap();
    drop(tx);
    let mut dec = FrameDecoder::new(Limits::default());
    dec.push(&wire);
    while let Some(m) = dec.next_message().unwrap() {
        model.apply(m).unwrap();
    }
    assert_eq!(model.stats().symbols, 1_000_000);
    let s = model.user_symbol(1, 0x7000_0000_0000 + 0x10_0000 + 999_999 * 32 + 5, 1);
    assert_eq!(s.name, "f999999");
    // One more than the per-table limit is refused.
    let small = Budget {
        max_symbols_per_table: 999_999,
        ..Budget::default()
    };
    let mut m2 = GuestModel::new(7, small);
    let mut dec = FrameDecoder::new(Limits::default());
    dec.push(&wire);
    let mut refused = false;
    while let Some(m) = dec.next_message().unwrap() {
        if m2.apply(m).is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused);
}

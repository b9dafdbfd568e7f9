//! Loopback tests of active mode without a VM: the helper's sending side ([`Sender`]) writes
//! synthetic guest data into a unix socket that stands in for QEMU's virtio-serial chardev;
//! the host's receiver ([`connect_with`]) decodes it into a guest model.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use hvprof::active::{
    connect_with, ActiveError, ActiveOptions, ActiveSession, ConnectOptions, HelperSpec, Readiness,
};
use hvprof::attribute::Class;
use hvprof::perf::CpuMode;
use hvprof_guest::sender::Sender;
use hvprof_proto::{
    ClockInfo, FrameDecoder, Hello, Limits, Message, Segment, WireSample, WireSwitch, WireSymbol,
    CLOCK_PERF_LOCAL,
};

fn hello(boot: &str, now: u64) -> Message {
    Message::Hello(Hello {
        helper_version: "test".into(),
        kernel_release: "6.1.0-test".into(),
        boot_id: boot.into(),
        hostname: "guest".into(),
        cpus: 2,
        clock: ClockInfo {
            clock_id: CLOCK_PERF_LOCAL,
            ..ClockInfo::default()
        },
        now_ns: now,
        sampling_hz: 1000,
        flags: 0,
    })
}

const WORKLOAD_BASE: u64 = 0x5555_5555_0000;

/// Sends a guest's state: kallsyms, a workload process with its map and symbol table.
fn send_state<W: Write>(tx: &mut Sender<W>, boot: &str) {
    tx.send(&hello(boot, 1_000)).unwrap();
    tx.kallsyms(
        b"ffffffff81000000 T _stext\nffffffff81001000 T do_idle\nffffffff81002000 T _etext\n",
    )
    .unwrap();
    let syms: Vec<WireSymbol> = ["hot_alpha", "hot_beta", "hot_gamma"]
        .iter()
        .enumerate()
        .map(|(i, n)| WireSymbol {
            start: 0x1100 + 0x100 * i as u64,
            size: 0x100,
            name: n.to_string(),
        })
        .collect();
    tx.symtab(
        b"BUILDID-W",
        b"BUILDID-W",
        "/bin/hvprof-workload",
        3,
        &[Segment {
            offset: 0x1000,
            vaddr: 0x1000,
            filesz: 0x1000,
            memsz: 0x1000,
        }],
        &syms,
    )
    .unwrap();
    tx.send(&Message::Comm {
        pid: 42,
        tid: 42,
        time: 0,
        exec: false,
        comm: "hvprof-workload".into(),
    })
    .unwrap();
    tx.send(&Message::Mmap {
        pid: 42,
        tid: 42,
        time: 0,
        start: WORKLOAD_BASE + 0x1000,
        len: 0x1000,
        pgoff: 0x1000,
        prot: 5,
        file_key: b"BUILDID-W".to_vec(),
        build_id: b"BUILDID-W".to_vec(),
        path: "/bin/hvprof-workload".into(),
    })
    .unwrap();
    tx.send(&Message::Ready { now_ns: 2_000 }).unwrap();
    tx.flush().unwrap();
}

fn sample(ip: u64, time: u64, misc: u16, pid: u32) -> WireSample {
    WireSample {
        ip,
        pid,
        tid: pid,
        time,
        cpu: 1,
        misc,
        period: 1_000_000,
    }
}

/// Answers the host's pings on `s` for a while (the guest clock = host clock + 1 ms).
fn answer_pings(s: &mut UnixStream, for_ms: u64) -> u32 {
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut dec = FrameDecoder::new(Limits::default());
    let mut buf = [0u8; 4096];
    let mut pongs = 0;
    let end = std::time::Instant::now() + Duration::from_millis(for_ms);
    while std::time::Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => dec.push(&buf[..n]),
            Err(_) => continue,
        }
        while let Some(m) = dec.next_message().unwrap() {
            if let Message::Ping { seq, host_time } = m {
                let pong = Message::Pong {
                    seq,
                    host_time,
                    guest_time: host_time + 1_000_000,
                };
                s.write_all(&pong.to_frame()).unwrap();
                pongs += 1;
            }
        }
    }
    pongs
}

#[test]
fn helper_sender_to_host_receiver_over_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chardev.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let spec: HelperSpec = format!("unix:{}", path.display()).parse().unwrap();
    let opts = ConnectOptions {
        vm_pid: 4242,
        vcpus: vec![(0, Some(5000)), (1, Some(5001))],
        ..ConnectOptions::default()
    };
    let conn = connect_with(&spec, opts).unwrap();
    let (mut guest, _) = listener.accept().unwrap();

    // Joining a virtio-serial stream mid-way: half a frame of the previous session first.
    let stale = Message::Bye {
        reason: "previous".into(),
    }
    .to_frame();
    guest.write_all(&stale[5..]).unwrap();
    let mut tx = Sender::new(guest.try_clone().unwrap());
    send_state(&mut tx, "boot-1");
    assert!(
        conn.wait_ready(Duration::from_secs(10)),
        "{:?}",
        conn.status()
    );
    // 6:3:1 samples of alpha:beta:gamma, one kernel sample, one in an unmapped place.
    let mut t = 10_000u64;
    for (off, n) in [(0x1110u64, 6), (0x1210, 3), (0x1310, 1)] {
        for _ in 0..n {
            tx.sample(sample(WORKLOAD_BASE + off, t, 2, 42)).unwrap();
            t += 1000;
        }
    }
    tx.sample(sample(0xffff_ffff_8100_1010, t, 1, 0)).unwrap();
    tx.sample(sample(0x1234, t, 2, 42)).unwrap();
    tx.switch(WireSwitch {
        cpu: 1,
        time: 5_000,
        pid: 42,
        tid: 42,
        out: false,
        preempt: false,
    })
    .unwrap();
    tx.flush().unwrap();
    let pongs = answer_pings(&mut guest, 400);
    assert!(pongs >= 3, "host pinged {pongs} times");
    assert!(conn.wait_until(Duration::from_secs(10), |m, _| m.samples().len() == 12));
    {
        let m = conn.model();
        let st = conn.status();
        assert!(st.skipped_bytes > 0, "stale half frame was skipped: {st:?}");
        assert_eq!(m.hello().unwrap().boot_id, "boot-1");
        assert_eq!(m.kallsyms().unwrap().len(), 2);
        assert_eq!(m.table_count(), 1);
        assert_eq!(m.processes(), vec![(42, "hvprof-workload".to_string())]);
        let hvprof::active::clock::ClockSync::RoundTrip(rt) = &m.clock else {
            panic!("round-trip clock expected: {:?}", m.clock);
        };
        let mid = rt.estimates[0].0;
        let (g, err) = m.clock.host_to_guest(mid, 1).unwrap();
        assert!(err < 50_000_000, "error bound {err}");
        // The fake guest answers with host time + 1 ms at receipt: within the bound.
        assert!(
            g.abs_diff(mid + 1_000_000) <= err,
            "{g} vs {} ± {err}",
            mid + 1_000_000
        );
    }

    // Helper reconnect: the guest side drops, the host reconnects to the "chardev" and the
    // helper resends its state with the same boot id.
    drop(tx);
    drop(guest);
    let (guest2, _) = listener.accept().unwrap();
    let mut tx = Sender::new(guest2.try_clone().unwrap());
    assert!(conn.wait_until(Duration::from_secs(10), |_, s| s.connections == 2));
    send_state(&mut tx, "boot-1");
    tx.sample(sample(WORKLOAD_BASE + 0x1110, 900_000, 2, 42))
        .unwrap();
    tx.send(&Message::Bye {
        reason: "duration reached".into(),
    })
    .unwrap();
    tx.flush().unwrap();
    assert!(
        conn.wait_until(Duration::from_secs(10), |m, s| m.samples().len() == 13
            && s.bye.is_some())
    );
    let mut model = conn.finish();
    assert_eq!(model.stats().sessions, 2);
    assert_eq!(
        model.table_count(),
        1,
        "the re-sent table is not duplicated"
    );
    let samples = model.take_samples();
    let attributed: Vec<_> = samples.iter().map(|s| model.attribute(s)).collect();
    let count = |name: &str| {
        attributed
            .iter()
            .filter(|(a, _)| a.symbol.name == name)
            .count()
    };
    assert_eq!(count("hot_alpha"), 7);
    assert_eq!(count("hot_beta"), 3);
    assert_eq!(count("hot_gamma"), 1);
    assert_eq!(count("do_idle"), 1);
    assert_eq!(count("[unknown]"), 1);
    let (a, ctx) = &attributed[0];
    assert_eq!(a.class, Class::GuestUser);
    assert_eq!(a.sample.cpumode, CpuMode::GuestUser);
    assert_eq!(a.sample.pid, 4242, "VM key");
    assert_eq!(a.sample.tid, 5001, "vCPU 1's thread");
    assert_eq!(ctx.comm, "hvprof-workload");
    assert_eq!(a.symbol.dso, "hvprof-workload");
    let rows = hvprof::active::guest_process_reports(4242, &attributed, 3);
    assert_eq!(rows[0].guest_pid, Some(42));
    assert_eq!(rows[0].top_symbols[0].symbol.name, "hot_alpha");
}

#[test]
fn hostile_guest_is_dropped_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evil.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let spec = HelperSpec::Unix(path.clone());
    let opts = ConnectOptions {
        vm_pid: 1,
        max_connections: 1,
        ..ConnectOptions::default()
    };
    let conn = connect_with(&spec, opts).unwrap();
    let (mut guest, _) = listener.accept().unwrap();
    let mut f = hello("b", 0).to_frame();
    // A second frame announcing 4 GiB.
    let mut evil = Message::Bye { reason: "x".into() }.to_frame();
    evil[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    f.extend_from_slice(&evil);
    guest.write_all(&f).unwrap();
    assert!(conn.wait_until(Duration::from_secs(10), |_, s| s.last_error.is_some()));
    let st = conn.status();
    let e = st.last_error.unwrap();
    assert!(e.contains("announces 4294967295 payload bytes"), "{e}");
    let m = conn.finish();
    assert!(m.notes().iter().any(|n| n.contains("connection dropped")));
}

/// A channel nobody answers on (QEMU's chardev accepts, no helper runs in the guest) fails
/// with what happened and what to check, not later with an unrelated counter error.
#[test]
fn silent_channel_says_no_helper_answered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silent.sock");
    let listener = UnixListener::bind(&path).unwrap();
    // Stands in for QEMU: accepts and keeps the connection open, says nothing.
    let held = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let spec = HelperSpec::Unix(path.clone());
    let opts = ActiveOptions::new(spec.clone(), 4242);
    let session = ActiveSession::start(&opts).unwrap();
    let t0 = std::time::Instant::now();
    let e = session
        .await_helper(Duration::from_millis(300), &mut || false)
        .unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(matches!(e, ActiveError::NoHelper { .. }), "{e:?}");
    // As the CLI prints it: the library error wrapped in `hvprof::Error`, one line.
    let msg = hvprof::error_chain(&hvprof::Error::from(e));
    for want in [
        &format!(
            "no hvprof-guest helper answered on unix:{} within 0.3 s",
            path.display()
        ) as &str,
        "accepted the connection but nothing answered",
        "hvprof-guest runs inside the guest",
        &format!("{} is this VM's chardev socket", path.display()),
        "virtserialport",
        "org.hvprof.0",
    ] {
        assert!(msg.contains(want), "{want:?} not in {msg}");
    }
    assert!(!msg.contains("exited"), "{msg}");
    assert_eq!(msg.lines().count(), 1, "{msg}");
    drop(session);
    drop(held.join().unwrap());

    // A listener nothing connects to (the helper dials tcp: and vsock:).
    let opts = ActiveOptions {
        ready_timeout: Duration::from_millis(200),
        ..ActiveOptions::new("tcp:127.0.0.1:0".parse().unwrap(), 4242)
    };
    let stop = hvprof::rt::StopToken::new();
    let e = hvprof::active::record_active(&opts, Some(Duration::ZERO), &stop).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(
            "no hvprof-guest helper answered on tcp:127.0.0.1:0 within 0.2 s (nothing connected)"
        ),
        "{msg}"
    );
    assert!(msg.contains("--tcp"), "{msg}");

    // Stopped while waiting, before any hello: the same error, saying so.
    let opts = ActiveOptions::new("tcp:127.0.0.1:0".parse().unwrap(), 4242);
    let session = ActiveSession::start(&opts).unwrap();
    let e = session
        .await_helper(Duration::from_secs(60), &mut || true)
        .unwrap_err();
    assert!(e.to_string().contains("stopped early"), "{e}");

    // A helper that says hello but is slow with its initial state: not an error.
    let path = dir.path().join("slow.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let session = ActiveSession::start(&ActiveOptions::new(HelperSpec::Unix(path), 1)).unwrap();
    let (mut guest, _) = listener.accept().unwrap();
    guest.write_all(&hello("b", 0).to_frame()).unwrap();
    let r = session.await_helper(Duration::from_millis(500), &mut || false);
    assert_eq!(r.unwrap(), Readiness::Partial);
}

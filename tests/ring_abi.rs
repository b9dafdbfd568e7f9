//! Ring-buffer and attribution tests on byte fixtures written to the kernel ABI
//! (include/uapi/linux/perf_event.h): records that wrap past the end of the data area, LOST
//! records, and samples tagged PERF_RECORD_MISC_GUEST_KERNEL / GUEST_USER — which this
//! machine (PVM) cannot produce — resolved through a guest kallsyms file.

use std::path::Path;
use std::sync::Arc;

use hvprof::attribute::{Attributor, Class, HostSymbols};
use hvprof::model::{Machines, VmId};
use hvprof::perf::abi;
use hvprof::perf::record::{encode, CpuMode, Record, RecordDecoder};
use hvprof::perf::ring::copy_ring_span;
use hvprof_symbols::Kallsyms;

/// A fake kernel writer: appends records to a power-of-two data area at a free-running head,
/// wrapping byte by byte exactly as perf_output_copy does.
struct FakeRing {
    data: Vec<u8>,
    head: u64,
    tail: u64,
}

impl FakeRing {
    fn new(size: usize, start: u64) -> FakeRing {
        FakeRing {
            data: vec![0xAA; size],
            head: start,
            tail: start,
        }
    }
    fn write(&mut self, rec: &[u8]) {
        let n = self.data.len() as u64;
        for (i, b) in rec.iter().enumerate() {
            self.data[((self.head + i as u64) % n) as usize] = *b;
        }
        self.head += rec.len() as u64;
    }
    fn drain(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let data = &self.data;
        copy_ring_span(
            data.len(),
            self.tail,
            self.head,
            &mut out,
            |off, len, dst| dst.copy_from_slice(&data[off..off + len]),
        )
        .unwrap();
        self.tail = self.head;
        out
    }
}

fn decode(bytes: &[u8]) -> Vec<Record<'_>> {
    let mut v = Vec::new();
    RecordDecoder::new(abi::HVPROF_SAMPLE_TYPE).decode(bytes, |r| v.push(r));
    v
}

#[test]
fn records_that_wrap_come_out_whole() {
    // 4096-byte data area; the first record starts 20 bytes before the end, so its header,
    // then its body, straddle the boundary.
    let mut ring = FakeRing::new(4096, 3 * 4096 - 20);
    let mut expect = Vec::new();
    for i in 0..100u64 {
        let mut rec = Vec::new();
        encode::sample(
            &mut rec,
            CpuMode::Kernel,
            0xffff_ffff_8100_0000 + i,
            10,
            11,
            1000 + i,
            0,
            1_000_000,
        );
        ring.write(&rec);
        expect.push(0xffff_ffff_8100_0000 + i);
        if i % 30 == 29 {
            let bytes = ring.drain();
            let got: Vec<u64> = decode(&bytes)
                .into_iter()
                .map(|r| match r {
                    Record::Sample(s) => s.sample.ip,
                    other => panic!("unexpected {other:?}"),
                })
                .collect();
            assert_eq!(got, expect);
            expect.clear();
        }
    }
    // A header split 4/4 across the end: place head at size - 4.
    let mut ring = FakeRing::new(256, 256 - 4);
    let mut rec = Vec::new();
    encode::lost(&mut rec, 1, 77, 10, 11, 5, 0);
    ring.write(&rec);
    let bytes = ring.drain();
    assert!(matches!(
        decode(&bytes)[..],
        [Record::Lost { lost: 77, .. }]
    ));
}

#[test]
fn lost_and_throttle_records_are_counted() {
    let mut ring = FakeRing::new(1024, 1000);
    let mut b = Vec::new();
    encode::sample(&mut b, CpuMode::User, 0x401000, 10, 11, 1, 0, 1);
    encode::lost(&mut b, 5, 12, 10, 11, 2, 0);
    encode::throttle(&mut b, true, 3, 10, 11, 0);
    encode::throttle(&mut b, false, 4, 10, 11, 0);
    encode::lost(&mut b, 5, 30, 10, 11, 5, 0);
    ring.write(&b);
    let bytes = ring.drain();
    let recs = decode(&bytes);
    let lost: u64 = recs
        .iter()
        .filter_map(|r| {
            if let Record::Lost { lost, .. } = r {
                Some(*lost)
            } else {
                None
            }
        })
        .sum();
    assert_eq!(lost, 42);
    assert_eq!(
        recs.iter()
            .filter(|r| matches!(
                r,
                Record::Throttle {
                    throttled: true,
                    ..
                }
            ))
            .count(),
        1
    );
    assert_eq!(
        recs.iter()
            .filter(|r| matches!(
                r,
                Record::Throttle {
                    throttled: false,
                    ..
                }
            ))
            .count(),
        1
    );
}

#[test]
fn guest_tagged_samples_resolve_through_guest_kallsyms() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/guest.kallsyms");
    let syms = Kallsyms::load(&fixture).expect("fixture loads");
    let vm_pid = 4242;
    let mut machines = Machines::new();
    machines.set_guest_kernel_symbols(Some(VmId::Vmm(vm_pid)), Arc::new(syms));
    let mut attr = Attributor::new(
        HostSymbols::default(),
        Path::new("/nonexistent-proc"),
        Arc::new(machines),
    );

    let mut ring = FakeRing::new(512, 512 - 30);
    let mut b = Vec::new();
    // misc = 4: PERF_RECORD_MISC_GUEST_KERNEL; misc = 5: GUEST_USER.
    encode::sample(
        &mut b,
        CpuMode::GuestKernel,
        0xffff_ffff_8100_1010,
        vm_pid as u32,
        4243,
        1,
        1,
        1_000_000,
    );
    encode::sample(
        &mut b,
        CpuMode::GuestKernel,
        0xffff_ffff_c010_0810,
        vm_pid as u32,
        4243,
        2,
        1,
        1_000_000,
    );
    encode::sample(
        &mut b,
        CpuMode::GuestUser,
        0x401234,
        vm_pid as u32,
        4244,
        3,
        0,
        1_000_000,
    );
    encode::sample(
        &mut b,
        CpuMode::GuestKernel,
        0xffff_8000_0000_0000,
        vm_pid as u32,
        4244,
        4,
        0,
        1_000_000,
    );
    encode::sample(
        &mut b,
        CpuMode::GuestUser,
        0x7fff_0000_1000,
        999,
        1000,
        5,
        0,
        1_000_000,
    );
    ring.write(&b);
    let bytes = ring.drain();
    let recs = decode(&bytes);
    assert_eq!(recs.len(), 5);
    let out: Vec<_> = recs
        .iter()
        .map(|r| match r {
            Record::Sample(s) => attr.attribute(&s.sample),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(out[0].class, Class::GuestKernel);
    assert_eq!(out[0].symbol.name, "do_idle");
    assert_eq!(out[0].symbol.dso, "[guest.kernel]");
    assert_eq!(out[1].symbol.name, "start_xmit");
    assert_eq!(out[1].symbol.dso, "[guest.virtio_net]");
    assert_eq!(out[2].class, Class::GuestUser);
    assert_eq!(out[2].symbol.name, "guest_app_hot");
    // Below the first symbol of the map: unknown, with its guest address, never dropped.
    assert_eq!(out[3].symbol.name, "[unknown]");
    assert_eq!(out[3].symbol.addr, Some(0xffff_8000_0000_0000));
    // Another VM, no map: unknown with the reason.
    assert_eq!(out[4].class, Class::GuestUser);
    assert!(out[4]
        .symbol
        .reason
        .as_deref()
        .unwrap()
        .contains("active mode"));
}

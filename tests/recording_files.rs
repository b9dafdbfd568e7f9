//! perf.data recordings built byte for byte (perf_event.h record layouts, perf.data-file-format)
//! that are hostile, cut short, or written by perf rather than hvprof: a clear error naming the
//! byte, or a report up to the cut with a note — never a panic or an overflow — and VMs rebuilt
//! from COMM records when hvprof's own section is absent.

use std::path::Path;

use hvprof::perf::abi::{self, AttrBuilder};
use hvprof::perf::perf_data::{Feature, FeatureWriter, PerfData, PerfDataWriter};
use hvprof::perf::record::encode;
use hvprof::perf::CpuMode;
use hvprof::recording::replay;

fn attr() -> abi::perf_event_attr {
    AttrBuilder::new(abi::TYPE_SOFTWARE, abi::sw::CPU_CLOCK)
        .sample_type(abi::HVPROF_SAMPLE_TYPE)
        .frequency(1000)
        .sample_id_all(true)
        .task(true)
        .build()
}

/// A file as `perf record -e cpu-clock:HG -p 10` writes it: COMM records for the VMM's threads
/// (`CPU 0/KVM`, `CPU 1/KVM`), guest-user samples, and no hvprof section.
fn perf_like(path: &Path, records: &[u8], hvprof: Option<&str>) {
    let mut w = PerfDataWriter::create(path, &[(attr(), vec![1], "cpu-clock:HG".into())]).unwrap();
    w.write_records(records).unwrap();
    let mut features = vec![(Feature::HOSTNAME, FeatureWriter::new().string("h").finish())];
    if let Some(json) = hvprof {
        features.push((Feature::HVPROF, json.as_bytes().to_vec()));
    }
    w.finish(features).unwrap();
}

fn comms(b: &mut Vec<u8>) {
    encode::comm(b, 10, 10, "qemu-system-x86", false, 0, 0);
    encode::comm(b, 10, 11, "CPU 0/KVM", false, 0, 0);
    encode::comm(b, 10, 12, "CPU 1/KVM", false, 0, 0);
}

#[test]
fn perfs_own_file_gets_vms_and_vcpus_from_comm_records() {
    let dir = tempfile::tempdir().unwrap();
    let kallsyms = dir.path().join("guest.map");
    std::fs::write(
        &kallsyms,
        "0000000000400000 T hot_a\n0000000000400100 T hot_b\n0000000000400200 T end\n",
    )
    .unwrap();
    let mut b = Vec::new();
    comms(&mut b);
    for i in 0..30 {
        encode::sample(
            &mut b,
            CpuMode::GuestUser,
            0x400010,
            10,
            11,
            i,
            0,
            1_000_000,
        );
    }
    for i in 0..10 {
        encode::sample(
            &mut b,
            CpuMode::GuestUser,
            0x400110,
            10,
            12,
            i,
            1,
            1_000_000,
        );
    }
    encode::sample(&mut b, CpuMode::User, 0x1234, 99, 99, 50, 0, 1_000_000); // not a VM
    let f = dir.path().join("perf.data");
    perf_like(&f, &b, None);
    let k = hvprof_symbols::Kallsyms::load(&kallsyms).unwrap();
    let r = replay(&f, vec![(None, k)]).expect("reads perf's file");
    assert!(!r.from_hvprof);
    assert_eq!(r.meta.event, "cpu-clock:HG");
    let p = r.agg.snapshot(r.meta.clone(), r.hidden.clone(), 10);
    assert_eq!(p.vms.len(), 1, "{:?}", p.vms);
    let vm = &p.vms[0];
    assert_eq!(
        (vm.pid, vm.name.as_str(), vm.vcpu_count),
        (10, "qemu-system-x86", 2)
    );
    let v: Vec<_> = vm.vcpus.iter().map(|t| (t.vcpu, t.samples)).collect();
    assert_eq!(v, vec![(Some(0), 30), (Some(1), 10)]);
    assert_eq!(vm.vcpus[0].top_symbols[0].symbol.name, "hot_a");
    assert_eq!(vm.vcpus[1].top_symbols[0].symbol.name, "hot_b");
    assert_eq!(p.total_samples, 41, "the non-VM sample is host time, kept");
}

#[test]
fn huge_values_saturate_instead_of_overflowing() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Vec::new();
    comms(&mut b);
    encode::sample(&mut b, CpuMode::GuestUser, 0x4000, 10, 11, 5, 0, u64::MAX);
    encode::sample(&mut b, CpuMode::GuestUser, 0x4000, 10, 11, 6, 0, u64::MAX);
    encode::lost(&mut b, 1, u64::MAX, 10, 11, 7, 0);
    encode::lost(&mut b, 1, u64::MAX, 10, 11, 8, 0);
    let f = dir.path().join("huge.data");
    perf_like(&f, &b, None);
    let r = replay(&f, Vec::new()).expect("replays");
    let p = r.agg.snapshot(r.meta.clone(), r.hidden.clone(), 10);
    assert_eq!(p.vms[0].vcpus[0].samples, 2);
    assert_eq!(p.vms[0].vcpus[0].period, u64::MAX);
    assert_eq!(p.total_lost, u64::MAX);
}

#[test]
fn cut_and_corrupt_files_report_up_to_the_cut_or_name_the_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Vec::new();
    comms(&mut b);
    for i in 0..20 {
        encode::sample(&mut b, CpuMode::GuestUser, 0x4000, 10, 11, i, 0, 1_000_000);
    }
    let f = dir.path().join("ok.data");
    perf_like(&f, &b, None);
    let whole = std::fs::read(&f).unwrap();
    let data_end = {
        let d = PerfData::open(&f).unwrap();
        d.data_offset() as usize + d.data().len()
    };
    // Cut in the middle of a sample: the samples before the cut, and a note.
    let cut = dir.path().join("cut.data");
    std::fs::write(&cut, &whole[..data_end - 20]).unwrap();
    let r = replay(&cut, Vec::new()).expect("a cut file still reports");
    let p = r.agg.snapshot(r.meta.clone(), r.hidden.clone(), 10);
    assert_eq!(p.total_samples, 19);
    assert!(
        p.notes.iter().any(|n| n.contains("read up to the cut")),
        "{:?}",
        p.notes
    );
    // A record whose size runs past the data section: a note naming its byte offset.
    let mut bad = whole.clone();
    let last = data_end - 48;
    bad[last + 6..last + 8].copy_from_slice(&4000u16.to_ne_bytes());
    let bad_path = dir.path().join("bad-record.data");
    std::fs::write(&bad_path, &bad).unwrap();
    let r = replay(&bad_path, Vec::new()).expect("reports up to the bad record");
    let p = r.agg.snapshot(r.meta.clone(), r.hidden.clone(), 10);
    assert_eq!(p.total_samples, 19);
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains(&format!("corrupt record at byte {last}"))),
        "{:?}",
        p.notes
    );
    // Not perf.data at all: one line naming the file and the byte.
    let junk = dir.path().join("junk.data");
    std::fs::write(&junk, b"this is not a recording, not even 104 bytes long").unwrap();
    let e = replay(&junk, Vec::new()).unwrap_err().to_string();
    assert!(
        e.contains("junk.data is not a usable perf.data file at byte"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1);
    // hvprof's own section unreadable: read as perf's, with a note.
    let f2 = dir.path().join("badsection.data");
    perf_like(&f2, &b, Some("{not json"));
    let r = replay(&f2, Vec::new()).unwrap();
    let p = r.agg.snapshot(r.meta.clone(), r.hidden.clone(), 10);
    assert!(p
        .notes
        .iter()
        .any(|n| n.contains("section") && n.contains("unreadable")));
    assert_eq!(p.vms.len(), 1);
}

//! Round trips and hostile files.

use super::*;
use crate::abi::{self, AttrBuilder};
use crate::record::{encode, CpuMode, Record};

fn attr() -> crate::abi::perf_event_attr {
    AttrBuilder::new(abi::TYPE_SOFTWARE, abi::sw::CPU_CLOCK)
        .sample_type(abi::HVPROF_SAMPLE_TYPE)
        .frequency(1000)
        .sample_id_all(true)
        .build()
}

fn write_file(dir: &std::path::Path, samples: u64) -> std::path::PathBuf {
    let p = dir.join("t.data");
    let mut w = PerfDataWriter::create(&p, &[(attr(), vec![7, 8], "cpu-clock".into())]).unwrap();
    let mut b = Vec::new();
    for i in 0..samples {
        encode::sample(
            &mut b,
            CpuMode::GuestUser,
            0x400000 + i,
            10,
            11,
            i,
            0,
            1_000_000,
        );
    }
    encode::comm(&mut b, 10, 11, "CPU 0/KVM", false, 0, 0);
    w.write_records(&b).unwrap();
    let desc = {
        let mut f = FeatureWriter::new();
        f.u32(1)
            .u32(std::mem::size_of::<crate::abi::perf_event_attr>() as u32);
        let a = attr();
        // SAFETY: a plain repr(C) integer struct viewed as its bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(&a as *const _ as *const u8, std::mem::size_of_val(&a))
        };
        f.bytes(bytes).u32(2).string("cpu-clock:HG").u64(7).u64(8);
        f.finish()
    };
    w.finish(vec![
        (
            Feature::HOSTNAME,
            FeatureWriter::new().string("vmhost").finish(),
        ),
        (Feature::EVENT_DESC, desc),
        (Feature::HVPROF, b"{\"v\":1}".to_vec()),
    ])
    .unwrap();
    p
}

#[test]
fn writes_what_it_reads() {
    let dir = tempfile_dir();
    let p = write_file(&dir, 100);
    let d = PerfData::open(&p).unwrap();
    assert_eq!(d.attrs().len(), 1);
    assert_eq!(d.attrs()[0].ids, vec![7, 8]);
    assert_eq!(d.attrs()[0].name.as_deref(), Some("cpu-clock:HG"));
    assert_eq!(d.attrs()[0].attr.sample_type, abi::HVPROF_SAMPLE_TYPE);
    assert_eq!(
        d.feature_string(Feature::HOSTNAME).as_deref(),
        Some("vmhost")
    );
    assert_eq!(d.feature(Feature::HVPROF), Some(&b"{\"v\":1}"[..]));
    let dec = d.decoder(0).unwrap();
    let recs: Vec<_> = dec.records(d.data()).collect();
    assert_eq!(
        recs.iter()
            .filter(|r| matches!(r, Record::Sample(_)))
            .count(),
        100
    );
    assert!(matches!(recs.last(), Some(Record::Comm { .. })));
    assert!(d.notes().is_empty(), "{:?}", d.notes());
}

#[test]
fn hostile_files_name_the_byte_or_read_to_the_cut() {
    let dir = tempfile_dir();
    let p = write_file(&dir, 50);
    let good = std::fs::read(&p).unwrap();
    let err = |b: Vec<u8>| PerfData::parse(b, &p).unwrap_err().to_string();
    // Truncated inside the header.
    let e = err(good[..50].to_vec());
    assert!(
        e.contains("at byte 50") && e.contains("shorter than the 104-byte header"),
        "{e}"
    );
    // Wrong magic.
    let mut b = good.clone();
    b[0] = b'X';
    assert!(err(b).contains("at byte 0: wrong magic"));
    // attr_size mismatch: a slot too small for the attr's own size.
    let mut b = good.clone();
    b[16..24].copy_from_slice(&100u64.to_ne_bytes());
    let e = err(b);
    assert!(
        e.contains("at byte 24") || e.contains("does not fit"),
        "{e}"
    );
    // Data section running past the end: read up to the cut, with a note.
    let data_end = {
        let d = PerfData::open(&p).unwrap();
        d.data_offset() as usize + d.data().len()
    };
    let cut = good[..data_end - 20].to_vec();
    let d = PerfData::parse(cut, &p).unwrap();
    assert!(
        d.notes().iter().any(|n| n.contains("read up to the cut")),
        "{:?}",
        d.notes()
    );
    let recs: Vec<_> = d.decoder(0).unwrap().records(d.data()).collect();
    assert!(
        matches!(recs.last(), Some(Record::Corrupt { .. })),
        "the cut record is reported"
    );
    // A feature lying about its size: ignored with a note naming the table entry.
    let mut b = good.clone();
    let table = data_end;
    b[table + 8..table + 16].copy_from_slice(&(1u64 << 40).to_ne_bytes());
    let d = PerfData::parse(b, &p).unwrap();
    assert!(
        d.notes().iter().any(|n| n.contains("past the end")),
        "{:?}",
        d.notes()
    );
    assert!(d.feature(Feature::HOSTNAME).is_none());
    // An unfinished file (header data size 0): records up to the end of the file.
    let mut b = good[..data_end].to_vec();
    b[48..56].copy_from_slice(&0u64.to_ne_bytes());
    let d = PerfData::parse(b, &p).unwrap();
    assert_eq!(
        d.decoder(0)
            .unwrap()
            .records(d.data())
            .filter(|r| matches!(r, Record::Sample(_)))
            .count(),
        50
    );
    // Sizes near u64::MAX (found by fuzzing): no wrap-around, no panic.
    for size in [u64::MAX, u64::MAX - 100, 1 << 63] {
        let mut b = good.clone();
        b[48..56].copy_from_slice(&size.to_ne_bytes());
        let d = PerfData::parse(b, &p).unwrap();
        assert!(d.data().len() <= good.len());
        let _ = d.decoder(0).unwrap().records(d.data()).count();
        let mut b = good.clone();
        b[40..48].copy_from_slice(&size.to_ne_bytes());
        if let Ok(d) = PerfData::parse(b, &p) {
            let _ = d.decoder(0).unwrap().records(d.data()).count();
        }
    }
    // Every prefix and single-byte flip of the whole file: an error or a read, never a panic.
    for n in (0..good.len()).step_by(7) {
        let _ = PerfData::parse(good[..n].to_vec(), &p)
            .map(|d| d.decoder(0).map(|x| x.records(d.data()).count()));
        let mut b = good.clone();
        b[n] ^= 0xff;
        let _ = PerfData::parse(b, &p).map(|d| d.decoder(0).map(|x| x.records(d.data()).count()));
    }
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "hvprof-perf-data-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

//! Fuzz target: the perf.data reader (hvprof-perf's `PerfData`) on arbitrary bytes, as
//! `hvprof report -i FILE` meets a file from anyone: the header, the attrs and their ids
//! sections, `HEADER_EVENT_DESC`, the feature section table, then every record of the data
//! section decoded with its attr's decoder in file order, exactly as src/recording/read.rs
//! walks it. Must never panic, hang or allocate by a length read from the file.
#![no_main]

use std::path::Path;

use hvprof_perf::perf_data::{Feature, PerfData};
use hvprof_perf::record::Record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(pd) = PerfData::parse(data.to_vec(), Path::new("fuzz")) else {
        return;
    };
    let mut n = pd.notes().len() + pd.attrs().len();
    for a in pd.attrs() {
        n += a.ids.len() + a.name.as_ref().map_or(0, String::len);
    }
    for f in [
        Feature::HOSTNAME,
        Feature::OSRELEASE,
        Feature::ARCH,
        Feature::VERSION,
    ] {
        n += pd.feature_string(f).map_or(0, |s| s.len());
    }
    for f in [
        Feature::BUILD_ID,
        Feature::NRCPUS,
        Feature::CMDLINE,
        Feature::EVENT_DESC,
        Feature::HVPROF,
    ] {
        n += pd.feature(f).map_or(0, <[u8]>::len);
    }
    // The data section, one record at a time, as `replay` reads it.
    let data = pd.data();
    let mut off = 0usize;
    while let Some(rest) = data.get(off..).filter(|r| !r.is_empty()) {
        let Some(decoder) = pd.decoder(pd.attr_of(rest)) else {
            break;
        };
        let Some((rec, size)) = decoder.decode_one(rest) else {
            break;
        };
        n += 1;
        match rec {
            Record::Sample(r) => {
                n += usize::from(r.sample.cpumode.is_guest()) + r.sample.ip as usize % 7;
            }
            Record::Mmap(m) => n += m.filename.len(),
            Record::Comm { comm, .. } => n += comm.len(),
            Record::Corrupt { skipped, .. } if skipped >= rest.len() => break,
            _ => {}
        }
        off += size;
    }
    std::hint::black_box(n);
});

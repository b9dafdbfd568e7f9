//! Fuzz target: the one perf record decoder (hvprof-perf) on arbitrary bytes — ring data or a
//! perf.data data section written by anyone. The first 16 bytes choose the attr's layout
//! (`sample_type`, `sample_regs_user`, `read_format`, `sample_id_all`); every record, callchain
//! frame, register and stack byte is then walked. Must never panic, hang or allocate by a
//! length read from the data.
#![no_main]

use hvprof_perf::record::{Record, RecordDecoder};
use hvprof_perf::CpuMode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, body)) = data.split_first_chunk::<16>() else {
        return;
    };
    let word = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().unwrap_or([0; 8]));
    let sample_type = word(0) & hvprof_perf::abi::SAMPLE_KNOWN;
    let knobs = word(8);
    let d = RecordDecoder::new(sample_type)
        .regs_user(knobs & 0xffff_ffff)
        .read_format((knobs >> 32) & 0x1f)
        .sample_id_all(knobs >> 40 & 1 == 1)
        .branch_hw_index(knobs >> 41 & 1 == 1);
    let mut n = 0usize;
    for r in d.records(body) {
        n += 1;
        if let Record::Sample(s) = r {
            if let Some(cc) = s.callchain {
                n += cc.frames(CpuMode::Kernel).count();
            }
            if let Some(regs) = s.regs_user {
                n += (0..regs.len() + 1).filter_map(|i| regs.get(i)).count();
            }
            n += s.stack_user.map_or(0, <[u8]>::len);
        }
    }
    std::hint::black_box(n);
});

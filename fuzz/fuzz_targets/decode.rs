//! Fuzz target: the host's decoding of untrusted guest bytes — frames (incremental decoder
//! and blocking reader), re-encoding of what decoded, and the guest model fed with the
//! messages (limits, attribution). Must never panic, hang or allocate past the limits.
#![no_main]

use hvprof::active::{Budget, GuestModel};
use hvprof_proto::{read_message, FrameDecoder, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_payload: 1 << 20,
        max_str: 4096,
    };
    let budget = Budget {
        max_symbols_per_table: 10_000,
        max_tables: 64,
        max_tasks: 1000,
        max_maps_per_process: 256,
        max_kallsyms_bytes: 1 << 20,
        max_cpus: 64,
        max_switches_per_cpu: 10_000,
        max_samples: 100_000,
        max_bytes: 64 << 20,
    };
    // The first byte chooses where the stream is split, as a socket would.
    let (split, body) = match data.split_first() {
        Some((s, b)) => (*s as usize, b),
        None => return,
    };
    let mut dec = FrameDecoder::new(limits);
    let mut model = GuestModel::new(1, budget);
    let cut = split.min(body.len());
    for part in [&body[..cut], &body[cut..]] {
        dec.push(part);
        loop {
            match dec.next_message() {
                Ok(Some(m)) => {
                    // What decodes re-encodes to a frame that decodes to the same message.
                    let f = m.to_frame();
                    let mut d2 = FrameDecoder::new(limits);
                    d2.push(&f);
                    assert_eq!(d2.next_message().ok().flatten().as_ref(), Some(&m));
                    if model.apply(m).is_err() {
                        model = GuestModel::new(1, budget);
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    if dec.resync() == 0 {
                        break;
                    }
                }
            }
        }
    }
    for s in model.samples().iter().take(1000) {
        let _ = model.attribute(s);
    }
    let _ = model.guest_stacks(model.samples(), model.chains());
    let mut r = body;
    while let Ok(Some(_)) = read_message(&mut r, &limits) {}
});

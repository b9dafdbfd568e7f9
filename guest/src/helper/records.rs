//! One perf record → wire messages: samples (with their callchains when the event takes
//! them), comm, exec maps (through the symbol-table cache), fork/exit, context switches and
//! lost counts.

use std::io;

use hvprof_perf::record::{Callchain, MmapFile, Record, SampleId};
use hvprof_perf::CpuMode;
use hvprof_proto::{
    Message, StackSample, TaskKind, WireSample, WireSwitch, LOST_SAMPLES, LOST_SIDEBAND,
};

use super::maps::{dev_ino_key, MapInfo};
use super::{State, Tx};

/// The frames of a guest callchain as the wire carries them: `(kernel_frames, ips)`, leaf
/// first, markers removed, at most `max` frames. Kernel frames (`PERF_CONTEXT_KERNEL`) come
/// first, then user frames (`PERF_CONTEXT_USER`); a frame in any other context, or a kernel
/// frame after a user one, ends the chain (the guest kernel writes none such).
/// `default` is the sample's cpumode, for entries before any marker.
pub(crate) fn chain_frames(c: &Callchain<'_>, default: CpuMode, max: usize) -> (u16, Vec<u64>) {
    let mut ips = Vec::with_capacity(c.len().min(max));
    let mut kernel = 0u16;
    for (mode, ip) in c.frames(default).take(max) {
        match mode {
            CpuMode::Kernel if ips.len() == usize::from(kernel) => kernel += 1,
            CpuMode::User => {}
            _ => break,
        }
        ips.push(ip);
    }
    (kernel, ips)
}

impl State {
    /// Deepest callchain kept per sample, in frames.
    fn depth(&self) -> usize {
        usize::from(self.opts.callchain_depth).min(hvprof_proto::MAX_CALLCHAIN)
    }

    pub(super) fn handle(
        &mut self,
        tx: &mut Tx,
        ring_cpu: u32,
        sampling: bool,
        r: Record<'_>,
    ) -> io::Result<()> {
        // Every event of the helper asks for TID|TIME|CPU, so these are present.
        let pid = |sid: &SampleId| sid.pid.unwrap_or(-1) as u32;
        let tid = |sid: &SampleId| sid.tid.unwrap_or(-1) as u32;
        let time = |sid: &SampleId| sid.time_ns.unwrap_or(0);
        match r {
            Record::Sample(rec) => {
                let s = rec.sample;
                let w = WireSample {
                    ip: s.ip,
                    pid: s.pid as u32,
                    tid: s.tid as u32,
                    time: s.time_ns,
                    cpu: s.cpu,
                    misc: s.cpumode.to_misc()
                        | if s.exact_ip {
                            hvprof_perf::abi::MISC_EXACT_IP
                        } else {
                            0
                        },
                    period: s.period,
                };
                match rec
                    .callchain
                    .map(|c| chain_frames(&c, s.cpumode, self.depth()))
                {
                    Some((kernel_frames, ips)) if !ips.is_empty() => tx.stack_sample(StackSample {
                        sample: w,
                        kernel_frames,
                        ips,
                    }),
                    _ => tx.sample(w),
                }
            }
            Record::Comm {
                pid,
                tid,
                exec,
                comm,
                sid,
            } => tx.send(&Message::Comm {
                pid: pid as u32,
                tid: tid as u32,
                time: time(&sid),
                exec,
                comm: comm.into_owned(),
            }),
            Record::Mmap(m) => {
                if m.prot & libc::PROT_EXEC as u32 == 0 {
                    return Ok(());
                }
                let (ident, build_id) = match m.file {
                    Some(MmapFile::Inode { maj, min, ino, .. }) => {
                        (dev_ino_key(maj, min, ino), None)
                    }
                    Some(MmapFile::BuildId(b)) => (Vec::new(), Some(b.to_vec())),
                    None => (Vec::new(), None),
                };
                self.send_map(
                    tx,
                    MapInfo {
                        pid: m.pid as u32,
                        tid: m.tid as u32,
                        time: time(&m.sid),
                        start: m.addr,
                        len: m.len,
                        pgoff: m.pgoff,
                        prot: m.prot,
                        path: &m.filename,
                        ident,
                        build_id,
                    },
                )
            }
            Record::Fork(t) | Record::Exit(t) => tx.send(&Message::Task {
                kind: if matches!(r, Record::Exit(_)) {
                    TaskKind::Exit
                } else {
                    TaskKind::Fork
                },
                pid: t.pid as u32,
                ppid: t.ppid as u32,
                tid: t.tid as u32,
                ptid: t.ptid as u32,
                time: t.time_ns,
            }),
            Record::Switch {
                out, preempt, sid, ..
            } => tx.switch(WireSwitch {
                cpu: sid.cpu.unwrap_or(ring_cpu),
                time: time(&sid),
                pid: pid(&sid),
                tid: tid(&sid),
                out,
                preempt,
            }),
            Record::Lost { lost, .. } => tx.send(&Message::Lost {
                cpu: ring_cpu,
                kind: if sampling {
                    LOST_SAMPLES
                } else {
                    LOST_SIDEBAND
                },
                count: lost,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hvprof_perf::abi;
    use hvprof_perf::record::encode::{Encoder, SampleParts};
    use hvprof_perf::record::RecordDecoder;

    /// Decodes one sample with `entries` as its raw callchain and returns its frames.
    fn frames(entries: &[u64], mode: CpuMode, max: usize) -> (u16, Vec<u64>) {
        let st = abi::HVPROF_SAMPLE_TYPE | abi::SAMPLE_CALLCHAIN;
        let mut b = Vec::new();
        Encoder::new(st).sample(
            &mut b,
            &SampleParts {
                cpumode: Some(mode),
                ip: entries.get(1).copied().unwrap_or(0),
                callchain: entries,
                ..SampleParts::default()
            },
        );
        let attr = abi::AttrBuilder::new(abi::TYPE_SOFTWARE, abi::sw::CPU_CLOCK)
            .sample_type(st)
            .build();
        let d = RecordDecoder::from_attr(&attr);
        let rec = d.records(&b).next();
        match rec {
            Some(Record::Sample(r)) => chain_frames(&r.callchain.expect("callchain"), mode, max),
            r => panic!("not a sample: {r:?}"),
        }
    }

    #[test]
    fn kernel_then_user_frames_without_markers() {
        let k = abi::CONTEXT_KERNEL;
        let u = abi::CONTEXT_USER;
        let (kf, ips) = frames(
            &[
                k,
                0xffff_ffff_8100_1000,
                0xffff_ffff_8100_2000,
                u,
                0x40_1000,
                0x40_2000,
            ],
            CpuMode::Kernel,
            64,
        );
        assert_eq!(kf, 2);
        assert_eq!(
            ips,
            [
                0xffff_ffff_8100_1000,
                0xffff_ffff_8100_2000,
                0x40_1000,
                0x40_2000
            ]
        );
        let (kf, ips) = frames(&[u, 0x40_1000, 0x40_2000], CpuMode::User, 64);
        assert_eq!((kf, ips), (0, vec![0x40_1000, 0x40_2000]));
    }

    #[test]
    fn depth_is_capped_from_the_leaf() {
        let mut e = vec![abi::CONTEXT_USER];
        e.extend(0x40_0000..0x40_0000 + 100);
        let (kf, ips) = frames(&e, CpuMode::User, 64);
        assert_eq!(kf, 0);
        assert_eq!(ips.len(), 64);
        assert_eq!(ips[0], 0x40_0000, "leaf kept");
        assert_eq!(ips[63], 0x40_0000 + 63);
    }

    #[test]
    fn out_of_order_contexts_end_the_chain() {
        let (k, u) = (abi::CONTEXT_KERNEL, abi::CONTEXT_USER);
        let (kf, ips) = frames(&[u, 0x40_1000, k, 0xffff_ffff_8100_1000], CpuMode::User, 64);
        assert_eq!((kf, ips), (0, vec![0x40_1000]));
        let (kf, ips) = frames(&[abi::CONTEXT_HV, 0x1234], CpuMode::Kernel, 64);
        assert_eq!((kf, ips), (0, vec![]));
    }
}

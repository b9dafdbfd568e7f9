//! One perf record → wire messages: samples, comm, exec maps (through the symbol-table
//! cache), fork/exit, context switches and lost counts.

use std::io;

use hvprof_perf::record::{MmapFile, Record, SampleId};
use hvprof_proto::{Message, TaskKind, WireSample, WireSwitch, LOST_SAMPLES, LOST_SIDEBAND};

use super::maps::{dev_ino_key, MapInfo};
use super::{State, Tx};

impl State {
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
                tx.sample(WireSample {
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
                })
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

//! IO-free decoding of the perf records the helper requests (`include/uapi/linux/perf_event.h`,
//! Linux 6.1): samples with `IP|TID|TIME|CPU|PERIOD` and sideband records with
//! `sample_id_all` and `TID|TIME|CPU`.
//!
//! Stage: guest ring buffers → **records** → wire messages. Input: contiguous record bytes
//! (native endianness, x86-64 little-endian); output: [`PerfEvent`]s. A record whose size is
//! smaller than its header or runs past the buffer ends decoding of the batch.

/// `PERF_RECORD_LOST`.
pub const RECORD_LOST: u32 = 2;
/// `PERF_RECORD_COMM`.
pub const RECORD_COMM: u32 = 3;
/// `PERF_RECORD_EXIT`.
pub const RECORD_EXIT: u32 = 4;
/// `PERF_RECORD_FORK`.
pub const RECORD_FORK: u32 = 7;
/// `PERF_RECORD_SAMPLE`.
pub const RECORD_SAMPLE: u32 = 9;
/// `PERF_RECORD_MMAP2`.
pub const RECORD_MMAP2: u32 = 10;
/// `PERF_RECORD_SWITCH`.
pub const RECORD_SWITCH: u32 = 14;
/// `PERF_RECORD_SWITCH_CPU_WIDE`.
pub const RECORD_SWITCH_CPU_WIDE: u32 = 15;
/// `PERF_RECORD_MISC_COMM_EXEC` (1 << 13), on COMM records.
pub const MISC_COMM_EXEC: u16 = 1 << 13;
/// `PERF_RECORD_MISC_SWITCH_OUT` (1 << 13), on SWITCH records.
pub const MISC_SWITCH_OUT: u16 = 1 << 13;
/// `PERF_RECORD_MISC_SWITCH_OUT_PREEMPT` (1 << 14).
pub const MISC_SWITCH_OUT_PREEMPT: u16 = 1 << 14;
/// `PERF_RECORD_MISC_MMAP_BUILD_ID` (1 << 14), on MMAP2 records (Linux ≥ 5.12).
pub const MISC_MMAP_BUILD_ID: u16 = 1 << 14;

/// Size of the `sample_id` trailer for `TID|TIME|CPU`: `u32 pid, tid; u64 time; u32 cpu, res`.
pub const SAMPLE_ID_LEN: usize = 24;

/// The `sample_id` trailer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sid {
    /// pid.
    pub pid: u32,
    /// tid.
    pub tid: u32,
    /// Event-clock ns.
    pub time: u64,
    /// CPU.
    pub cpu: u32,
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PerfEvent {
    /// A sample.
    Sample {
        /// Guest VA.
        ip: u64,
        /// Identity, time and CPU.
        sid: Sid,
        /// Period (ns for cpu-clock).
        period: u64,
        /// Header `misc`.
        misc: u16,
    },
    /// COMM.
    Comm {
        /// pid.
        pid: u32,
        /// tid.
        tid: u32,
        /// Set by exec.
        exec: bool,
        /// Name.
        comm: String,
        /// Trailer.
        sid: Sid,
    },
    /// MMAP2.
    Mmap2 {
        /// pid.
        pid: u32,
        /// tid.
        tid: u32,
        /// Start.
        addr: u64,
        /// Length.
        len: u64,
        /// File offset.
        pgoff: u64,
        /// Build-id when the record carries one.
        build_id: Option<Vec<u8>>,
        /// Device major, minor and inode (when no build-id).
        dev_ino: Option<(u32, u32, u64)>,
        /// PROT_*.
        prot: u32,
        /// MAP_*.
        flags: u32,
        /// Path, or a pseudo-name (`[vdso]`, `//anon`).
        filename: String,
        /// Trailer.
        sid: Sid,
    },
    /// FORK or EXIT.
    Task {
        /// True for EXIT.
        exit: bool,
        /// pid.
        pid: u32,
        /// ppid.
        ppid: u32,
        /// tid.
        tid: u32,
        /// ptid.
        ptid: u32,
        /// ns.
        time: u64,
    },
    /// SWITCH or SWITCH_CPU_WIDE: `sid` is the task switching out (`out`) or in.
    Switch {
        /// Switch-out.
        out: bool,
        /// Preempted.
        preempt: bool,
        /// Trailer.
        sid: Sid,
    },
    /// LOST.
    Lost {
        /// Records lost.
        lost: u64,
        /// Trailer.
        sid: Sid,
    },
    /// Anything else.
    Other(u32),
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

fn sid_of(body: &[u8]) -> Option<Sid> {
    let o = body.len().checked_sub(SAMPLE_ID_LEN)?;
    Some(Sid {
        pid: u32_at(body, o)?,
        tid: u32_at(body, o + 4)?,
        time: u64_at(body, o + 8)?,
        cpu: u32_at(body, o + 16)?,
    })
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Decodes a batch; `f` gets each record. Returns the bytes that did not form a record
/// (0 when the batch was whole).
pub fn decode(bytes: &[u8], mut f: impl FnMut(PerfEvent)) -> usize {
    let mut off = 0;
    while off + 8 <= bytes.len() {
        let kind = u32::from_ne_bytes([bytes[off], bytes[off + 1], bytes[off + 2], bytes[off + 3]]);
        let misc = u16::from_ne_bytes([bytes[off + 4], bytes[off + 5]]);
        let size = u16::from_ne_bytes([bytes[off + 6], bytes[off + 7]]) as usize;
        if size < 8 || off + size > bytes.len() {
            return bytes.len() - off;
        }
        let body = &bytes[off + 8..off + size];
        if let Some(e) = decode_one(kind, misc, body) {
            f(e);
        }
        off += size;
    }
    bytes.len() - off
}

fn decode_one(kind: u32, misc: u16, b: &[u8]) -> Option<PerfEvent> {
    Some(match kind {
        RECORD_SAMPLE => PerfEvent::Sample {
            ip: u64_at(b, 0)?,
            sid: Sid {
                pid: u32_at(b, 8)?,
                tid: u32_at(b, 12)?,
                time: u64_at(b, 16)?,
                cpu: u32_at(b, 24)?,
            },
            period: u64_at(b, 32)?,
            misc,
        },
        RECORD_COMM => {
            let sid = sid_of(b)?;
            let name = b.get(8..b.len() - SAMPLE_ID_LEN)?;
            PerfEvent::Comm {
                pid: u32_at(b, 0)?,
                tid: u32_at(b, 4)?,
                exec: misc & MISC_COMM_EXEC != 0,
                comm: cstr(name),
                sid,
            }
        }
        RECORD_MMAP2 => {
            let sid = sid_of(b)?;
            let (build_id, dev_ino) = if misc & MISC_MMAP_BUILD_ID != 0 {
                let n = (*b.get(32)? as usize).min(20);
                (Some(b.get(36..36 + n)?.to_vec()), None)
            } else {
                (None, Some((u32_at(b, 32)?, u32_at(b, 36)?, u64_at(b, 40)?)))
            };
            PerfEvent::Mmap2 {
                pid: u32_at(b, 0)?,
                tid: u32_at(b, 4)?,
                addr: u64_at(b, 8)?,
                len: u64_at(b, 16)?,
                pgoff: u64_at(b, 24)?,
                build_id,
                dev_ino,
                prot: u32_at(b, 56)?,
                flags: u32_at(b, 60)?,
                filename: cstr(b.get(64..b.len() - SAMPLE_ID_LEN)?),
                sid,
            }
        }
        RECORD_FORK | RECORD_EXIT => PerfEvent::Task {
            exit: kind == RECORD_EXIT,
            pid: u32_at(b, 0)?,
            ppid: u32_at(b, 4)?,
            tid: u32_at(b, 8)?,
            ptid: u32_at(b, 12)?,
            time: u64_at(b, 16)?,
        },
        RECORD_SWITCH | RECORD_SWITCH_CPU_WIDE => PerfEvent::Switch {
            out: misc & MISC_SWITCH_OUT != 0,
            preempt: misc & MISC_SWITCH_OUT_PREEMPT != 0,
            sid: sid_of(b)?,
        },
        RECORD_LOST => PerfEvent::Lost {
            lost: u64_at(b, 8)?,
            sid: sid_of(b)?,
        },
        k => PerfEvent::Other(k),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: u32, misc: u16, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(&misc.to_ne_bytes());
        v.extend_from_slice(&((8 + body.len()) as u16).to_ne_bytes());
        v.extend_from_slice(body);
        v
    }

    fn sid(pid: u32, tid: u32, time: u64, cpu: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&pid.to_ne_bytes());
        v.extend_from_slice(&tid.to_ne_bytes());
        v.extend_from_slice(&time.to_ne_bytes());
        v.extend_from_slice(&cpu.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v
    }

    #[test]
    fn decodes_sideband_and_samples() {
        let mut b = Vec::new();
        // COMM with exec.
        let mut body = Vec::new();
        body.extend_from_slice(&5u32.to_ne_bytes());
        body.extend_from_slice(&6u32.to_ne_bytes());
        body.extend_from_slice(b"work\0\0\0\0");
        body.extend(sid(5, 6, 100, 1));
        b.extend(rec(RECORD_COMM, MISC_COMM_EXEC, &body));
        // MMAP2 with build id.
        let mut body = Vec::new();
        for v in [5u32, 6] {
            body.extend_from_slice(&v.to_ne_bytes());
        }
        for v in [0x1000u64, 0x2000, 0] {
            body.extend_from_slice(&v.to_ne_bytes());
        }
        body.push(3);
        body.extend_from_slice(&[0, 0, 0]);
        let mut bid = [0u8; 20];
        bid[..3].copy_from_slice(&[0xaa, 0xbb, 0xcc]);
        body.extend_from_slice(&bid);
        body.extend_from_slice(&5u32.to_ne_bytes());
        body.extend_from_slice(&2u32.to_ne_bytes());
        body.extend_from_slice(b"/bin/w\0\0");
        body.extend(sid(5, 6, 101, 1));
        b.extend(rec(RECORD_MMAP2, MISC_MMAP_BUILD_ID, &body));
        // SWITCH_CPU_WIDE out.
        let mut body = vec![0u8; 8];
        body.extend(sid(5, 6, 102, 1));
        b.extend(rec(RECORD_SWITCH_CPU_WIDE, MISC_SWITCH_OUT, &body));
        // SAMPLE.
        let mut body = Vec::new();
        body.extend_from_slice(&0x1234u64.to_ne_bytes());
        body.extend(sid(5, 6, 103, 1));
        body.extend_from_slice(&1_000_000u64.to_ne_bytes());
        b.extend(rec(RECORD_SAMPLE, 2, &body));
        b.extend_from_slice(&[1, 2, 3]);
        let mut got = Vec::new();
        let rest = decode(&b, |e| got.push(e));
        assert_eq!(rest, 3);
        assert_eq!(got.len(), 4);
        assert!(matches!(&got[0], PerfEvent::Comm { exec: true, comm, .. } if comm == "work"));
        match &got[1] {
            PerfEvent::Mmap2 {
                build_id,
                prot,
                filename,
                addr,
                ..
            } => {
                assert_eq!(build_id.as_deref(), Some(&[0xaa, 0xbb, 0xcc][..]));
                assert_eq!(*prot, 5);
                assert_eq!(filename, "/bin/w");
                assert_eq!(*addr, 0x1000);
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(
            got[2],
            PerfEvent::Switch {
                out: true,
                preempt: false,
                sid: Sid {
                    tid: 6,
                    time: 102,
                    ..
                }
            }
        ));
        assert!(matches!(
            got[3],
            PerfEvent::Sample {
                ip: 0x1234,
                period: 1_000_000,
                misc: 2,
                ..
            }
        ));
    }

    #[test]
    fn bad_sizes_stop_decoding() {
        let b = rec(RECORD_SAMPLE, 0, &[0u8; 4]);
        let mut n = 0;
        assert_eq!(decode(&b, |_| n += 1), 0);
        assert_eq!(n, 0, "short sample body is skipped, not decoded");
        let mut b = rec(RECORD_LOST, 0, &[0u8; 40]);
        b[6] = 4; // size 4 < header
        assert_eq!(decode(&b, |_| n += 1), b.len());
    }
}

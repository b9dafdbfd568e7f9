//! Writing a recording: [`Recorder`] wraps the perf.data writer with what `hvprof record -o`
//! adds around the ring buffers' bytes.

use std::path::{Path, PathBuf};

use hvprof_perf::abi::perf_event_attr;
use hvprof_perf::perf_data::{Feature, FeatureWriter, PerfDataWriter};
use hvprof_symbols::{ElfFile, Kallsyms, ProcMaps};
use rustc_hash::FxHashSet;

/// Distinct kernel IPs kept for the kernel symbols of a recording.
const MAX_KERNEL_IPS: usize = 1 << 20;

use super::HvprofSection;
use crate::error::Result;

/// A perf.data recording being written: synthesized records first, then every ring drain as
/// the kernel wrote it (no decoding, no symbolization on this path), then the features.
#[derive(Debug)]
pub struct Recorder {
    w: PerfDataWriter,
    path: PathBuf,
    samples: u64,
    /// Distinct host kernel IPs sampled (bounded), for the kernel symbols kept at the end.
    kernel_ips: FxHashSet<u64>,
    /// Decodes samples for their callchains' kernel frames (`-g`); None without callchains.
    callchains: Option<hvprof_perf::record::RecordDecoder>,
    /// Hashes of the callchains already noted (most samples repeat a few hundred chains).
    chains_seen: FxHashSet<u64>,
    /// The text of `/proc/kallsyms` read when the recording started, if kept
    /// ([`Recorder::keep_kallsyms`]): the kernel symbols kept at the end come from it.
    kallsyms: Option<String>,
}

impl Recorder {
    /// Creates `path` for one event (`attr`, its counters' `ids`, its `event` name) and writes
    /// the `synthesized` records (see [`super::synth`]).
    ///
    /// # Errors
    /// [`crate::Error::PerfData`] when the file cannot be created or written.
    pub fn create(
        path: &Path,
        attr: &perf_event_attr,
        ids: Vec<u64>,
        event: &str,
        synthesized: &[u8],
    ) -> Result<Recorder> {
        let mut w = PerfDataWriter::create(path, &[(*attr, ids, event.to_string())])?;
        w.write_records(synthesized)?;
        Ok(Recorder {
            w,
            path: path.to_path_buf(),
            samples: 0,
            kernel_ips: FxHashSet::default(),
            chains_seen: FxHashSet::default(),
            kallsyms: None,
            callchains: (attr.sample_type & hvprof_perf::abi::SAMPLE_CALLCHAIN != 0)
                .then(|| hvprof_perf::record::RecordDecoder::from_attr(attr)),
        })
    }

    /// Keeps the text of `/proc/kallsyms` read at the start, so [`Recorder::finish`] does not
    /// read the file again (formatting it costs the kernel tens of ms); None: read it then.
    pub fn keep_kallsyms(&mut self, text: Option<String>) {
        self.kallsyms = text;
    }

    /// `-g`: counts the drain's samples and notes the host kernel IPs of their callchains
    /// (the first entry of a kernel chain is the sample's IP). A chain seen before costs one
    /// hash of its entries.
    fn note_callchains(&mut self, d: &hvprof_perf::record::RecordDecoder, bytes: &[u8]) {
        use std::hash::Hasher;

        use hvprof_perf::record::Record;
        use hvprof_perf::CpuMode;
        for r in d.records(bytes) {
            let Record::Sample(r) = r else { continue };
            self.samples += 1;
            let Some(chain) = r.callchain else {
                if r.sample.cpumode == CpuMode::Kernel && self.kernel_ips.len() < MAX_KERNEL_IPS {
                    self.kernel_ips.insert(r.sample.ip);
                }
                continue;
            };
            let mut h = rustc_hash::FxHasher::default();
            chain.entries().for_each(|e| h.write_u64(e));
            if self.chains_seen.len() >= MAX_KERNEL_IPS {
                self.chains_seen.clear();
            }
            if !self.chains_seen.insert(h.finish()) {
                continue;
            }
            for (mode, ip) in chain.frames(r.sample.cpumode) {
                if mode == CpuMode::Kernel && self.kernel_ips.len() < MAX_KERNEL_IPS {
                    self.kernel_ips.insert(ip);
                }
            }
        }
    }

    /// Appends one drain's records, counting its samples from the record headers and noting the
    /// host kernel IPs they hit (the IP is a sample's first field: `sample_type` starts with
    /// `PERF_SAMPLE_IP`, see [`super::synth::SAMPLE_TYPE`]).
    ///
    /// # Errors
    /// [`crate::Error::PerfData`] (a full disk: what was written stays readable).
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(d) = self.callchains {
            self.note_callchains(&d, bytes);
            self.w.write_records(bytes)?;
            return Ok(());
        }
        let mut at = 0usize;
        while let Some(h) = bytes.get(at..at + 8) {
            let size = u16::from_ne_bytes([h[6], h[7]]) as usize;
            if u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) == hvprof_perf::abi::RECORD_SAMPLE {
                self.samples += 1;
                let misc = u16::from_ne_bytes([h[4], h[5]]);
                if misc & hvprof_perf::abi::MISC_CPUMODE_MASK == hvprof_perf::abi::MISC_KERNEL
                    && self.kernel_ips.len() < MAX_KERNEL_IPS
                {
                    if let Some(ip) = bytes.get(at + 8..at + 16) {
                        self.kernel_ips
                            .insert(u64::from_ne_bytes(ip.try_into().unwrap_or([0; 8])));
                    }
                }
            }
            if size < 8 {
                break;
            }
            at += size;
        }
        self.w.write_records(bytes)?;
        Ok(())
    }

    /// Samples written so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the feature sections — perf's (HOSTNAME, OSRELEASE, ARCH, VERSION, NRCPUS,
    /// CMDLINE, BUILD_ID of the VM processes' executable files) and hvprof's own
    /// `section` — and closes the file.
    ///
    /// # Errors
    /// [`crate::Error::PerfData`].
    pub fn finish(self, section: &HvprofSection, proc_root: &Path) -> Result<()> {
        let uts = nix::sys::utsname::uname().ok();
        let u = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
            uts.as_ref()
                .map(|u| f(u).to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let s = |v: &str| FeatureWriter::new().string(v).finish();
        let cpus = hvprof_perf::sys::cpu_count() as u32;
        let online = hvprof_perf::sys::online_cpus(Path::new("/")).len() as u32;
        let args: Vec<String> = std::env::args().collect();
        let mut features = vec![
            (Feature::HOSTNAME, s(&u(|u| u.nodename()))),
            (Feature::OSRELEASE, s(&u(|u| u.release()))),
            (Feature::ARCH, s(&u(|u| u.machine()))),
            (
                Feature::VERSION,
                s(concat!("hvprof ", env!("CARGO_PKG_VERSION"))),
            ),
            (
                Feature::NRCPUS,
                FeatureWriter::new().u32(cpus).u32(online).finish(),
            ),
            (
                Feature::CMDLINE,
                FeatureWriter::new()
                    .strings(args.iter().map(String::as_str))
                    .finish(),
            ),
            (Feature::BUILD_ID, build_ids(section, proc_root)),
        ];
        let json = serde_json::to_vec(section).unwrap_or_default();
        features.push((Feature::HVPROF, json));
        // What vanishes or changes with the host (a reboot, a module unloaded): the kernel
        // symbols the samples hit, so the report needs no /proc/kallsyms.
        let kept = self.kallsyms.as_deref().map(Kallsyms::parse);
        let k = match kept {
            Some(k) => k.ok(),
            None => Kallsyms::load(proc_root.join("kallsyms")).ok(),
        };
        if let Some(k) = k {
            // Callers are looked up at `ip - 1` (a call at a function's end names it).
            let callers = self.callchains.is_some();
            let ips = self.kernel_ips.iter().flat_map(|&ip| {
                let caller = callers.then(|| ip.wrapping_sub(1));
                std::iter::once(ip).chain(caller)
            });
            let text = k.extract(ips);
            features.push((Feature::HVPROF_KSYMS, text.into_bytes()));
        }
        self.w.finish(features)?;
        Ok(())
    }
}

/// `HEADER_BUILD_ID`: a `perf_record_header_build_id` per executable file mapped by the VM
/// processes (tools/perf/util/build-id.c `write_buildid`): header (type 0, misc user |
/// `PERF_RECORD_MISC_BUILD_ID_SIZE`), pid, 20-byte build-id with its size, 4 bytes, then the
/// path, NUL-padded to 64 bytes.
fn build_ids(section: &HvprofSection, proc_root: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for vm in &section.vms {
        let Some(pid) = vm.id.vmm_pid() else { continue };
        let Ok(maps) = ProcMaps::read_from(proc_root, pid as u32) else {
            continue;
        };
        for path in maps
            .iter()
            .filter(|m| m.is_exec())
            .filter_map(|m| m.file_path())
        {
            if !seen.insert(path.to_path_buf()) {
                continue;
            }
            let Ok(elf) = ElfFile::open(path) else {
                continue;
            };
            let Some(id) = elf.build_id() else { continue };
            let name = path.to_string_lossy();
            let name_len = (name.len() + 1).div_ceil(64) * 64;
            let size = 8 + 4 + 24 + name_len;
            let misc: u16 = hvprof_perf::abi::MISC_USER | (1 << 15);
            out.extend_from_slice(&0u32.to_ne_bytes());
            out.extend_from_slice(&misc.to_ne_bytes());
            out.extend_from_slice(&(size as u16).to_ne_bytes());
            out.extend_from_slice(&pid.to_ne_bytes());
            let mut bid = [0u8; 24];
            let n = id.len().min(20);
            bid[..n].copy_from_slice(&id[..n]);
            bid[20] = n as u8;
            out.extend_from_slice(&bid);
            let at = out.len();
            out.extend_from_slice(name.as_bytes());
            out.resize(at + name_len, 0);
        }
    }
    out
}

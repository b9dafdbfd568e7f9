//! The `hvprof detect --probe` measurements: run the built-in test VM for a moment and see
//! what this host's kernel reports.
//!
//! - **Guest IP tagging**: sample the test VM's vCPU threads with cpu-clock twice — once with
//!   `exclude_guest = 0` (hvprof's default), once with `exclude_guest = 1` (perf's default) —
//!   and count samples whose cpumode is `GUEST_KERNEL`/`GUEST_USER` with an IP inside the test
//!   VM's payload, versus samples at a guest-interrupt landing symbol.
//! - **kvm:kvm_exit firing**: count `kvm:kvm_exit` and `kvm:kvm_pio` on the vCPU threads of a
//!   test VM that writes an I/O port in a loop (every write is a VM exit).

use std::path::Path;
use std::time::Duration;

use hvprof_detect::{GuestIpProbe, Probe, ProbeOutcome};
use hvprof_testvm::{TestVm, TestVmConfig, Workload};

use hvprof::attribute::{HostSymbols, GUEST_LANDING_SYMBOLS};
use hvprof::counters::{open_counter, CounterSpec};
use hvprof_perf::abi::{self, AttrBuilder};
use hvprof_perf::record::{Record, RecordDecoder};
use hvprof_perf::{PerfFd, RingBuffer, Target};

/// A [`GuestIpProbe`] backed by the built-in test VM.
#[derive(Debug, Clone)]
pub struct TestVmProbe {
    /// How long each measurement samples.
    pub window: Duration,
    /// tracefs mount point.
    pub tracefs: std::path::PathBuf,
}

impl Default for TestVmProbe {
    fn default() -> Self {
        TestVmProbe {
            window: Duration::from_millis(400),
            tracefs: "/sys/kernel/tracing".into(),
        }
    }
}

/// Counts of one sampling pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TagCounts {
    /// All samples of the vCPU threads.
    pub total: u64,
    /// Guest-tagged samples whose IP lies in the test VM's payload.
    pub tagged_in_payload: u64,
    /// Guest-tagged samples elsewhere.
    pub tagged_elsewhere: u64,
    /// Host kernel samples at a guest-interrupt landing symbol.
    pub landing: u64,
}

impl TestVmProbe {
    /// Samples the test VM's vCPUs for the window with `exclude_guest` as given.
    ///
    /// # Errors
    /// Starting the VM or opening counters failed; the message says which.
    pub fn sample_tags(&self, exclude_guest: bool) -> Result<TagCounts, String> {
        let vm = TestVm::start(TestVmConfig {
            vcpus: 1,
            ..Default::default()
        })
        .map_err(|e| hvprof::error_chain(&e))?;
        let host = HostSymbols::load(Path::new("/"));
        let spec = CounterSpec {
            exclude_guest,
            ..CounterSpec::default()
        };
        let mut rings = Vec::new();
        for tid in vm.vcpu_tids() {
            let fd =
                open_counter(&spec, Target::Thread(tid)).map_err(|e| hvprof::error_chain(&e))?;
            let ring = RingBuffer::map(&fd, 16).map_err(|e| hvprof::error_chain(&e))?;
            fd.enable().map_err(|e| hvprof::error_chain(&e))?;
            rings.push((fd, ring));
        }
        std::thread::sleep(self.window);
        let mut c = TagCounts::default();
        let dec = RecordDecoder::new(abi::HVPROF_SAMPLE_TYPE);
        for (fd, ring) in &mut rings {
            let _ = fd.disable();
            let mut bytes = Vec::new();
            ring.drain_into(&mut bytes)
                .map_err(|e| hvprof::error_chain(&e))?;
            dec.decode(&bytes, |r| {
                let Record::Sample(rec) = r else { return };
                let s = rec.sample;
                c.total += 1;
                if s.cpumode.is_guest() {
                    if hvprof_testvm::symbol_at(s.ip).is_some() {
                        c.tagged_in_payload += 1;
                    } else {
                        c.tagged_elsewhere += 1;
                    }
                } else if let Some(k) = host.kallsyms.as_ref().and_then(|k| k.lookup(s.ip)) {
                    if GUEST_LANDING_SYMBOLS.contains(&k.name) {
                        c.landing += 1;
                    }
                }
            });
        }
        drop(rings);
        vm.stop().map_err(|e| hvprof::error_chain(&e))?;
        Ok(c)
    }

    fn guest_ip_tagging(&self) -> Probe {
        let with = match self.sample_tags(false) {
            Ok(c) => c,
            Err(e) => {
                return Probe::No {
                    reason: format!("the probe could not run: {e}"),
                }
            }
        };
        let without = self.sample_tags(true).ok();
        let excl = without
            .map(|c| format!("; with exclude_guest=1 (perf's default): {} of {} samples tagged, {} at the guest-interrupt path", c.tagged_in_payload + c.tagged_elsewhere, c.total, c.landing))
            .unwrap_or_default();
        if with.total > 0 && with.tagged_in_payload * 2 > with.total {
            Probe::Yes {
                detail: format!(
                    "with exclude_guest=0: {} of {} samples of the test VM's ring-3 vCPU tagged as guest with IPs in its payload{excl}",
                    with.tagged_in_payload, with.total
                ),
            }
        } else {
            Probe::No {
                reason: format!(
                    "with exclude_guest=0: {} of {} samples tagged as guest ({} in the payload), {} at the guest-interrupt path{excl}",
                    with.tagged_in_payload + with.tagged_elsewhere,
                    with.total,
                    with.tagged_in_payload,
                    with.landing
                ),
            }
        }
    }

    /// Counts `kvm:kvm_exit` and `kvm:kvm_pio` on a port-I/O test VM's vCPU thread.
    ///
    /// # Errors
    /// A message when tracefs or the VM is unavailable.
    pub fn count_exits(&self) -> Result<(u64, u64, u64), String> {
        let id = |name: &str| -> Result<u64, String> {
            let p = self.tracefs.join(format!("events/kvm/{name}/id"));
            std::fs::read_to_string(&p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .trim()
                .parse()
                .map_err(|e| format!("{}: {e}", p.display()))
        };
        let (exit_id, pio_id) = (id("kvm_exit")?, id("kvm_pio")?);
        let cfg = TestVmConfig {
            vcpus: 1,
            workload: Workload::PortIo { port: 0x80 },
            ..Default::default()
        };
        let vm = TestVm::start(cfg).map_err(|e| hvprof::error_chain(&e))?;
        let tid = vm.vcpu_tids()[0];
        let open = |config: u64, name: &str| -> Result<PerfFd, String> {
            let attr = AttrBuilder::new(abi::TYPE_TRACEPOINT, config)
                .disabled(true)
                .build();
            PerfFd::open(&attr, Target::Thread(tid), name).map_err(|e| hvprof::error_chain(&e))
        };
        let exit = open(exit_id, "kvm:kvm_exit")?;
        let pio = open(pio_id, "kvm:kvm_pio")?;
        let before = vm.exits(0).io;
        for f in [&exit, &pio] {
            f.enable().map_err(|e| hvprof::error_chain(&e))?;
        }
        std::thread::sleep(self.window);
        for f in [&exit, &pio] {
            let _ = f.disable();
        }
        let io = vm.exits(0).io.saturating_sub(before);
        let counts = (
            exit.read_count().unwrap_or(0),
            pio.read_count().unwrap_or(0),
            io,
        );
        vm.stop().map_err(|e| hvprof::error_chain(&e))?;
        Ok(counts)
    }

    fn kvm_exit_firing(&self) -> Probe {
        match self.count_exits() {
            Ok((exits, _, io)) if exits > 0 => Probe::Yes {
                detail: format!("{exits} kvm:kvm_exit events while the test VM made {io} port-I/O exits"),
            },
            Ok((_, pio, io)) => Probe::No {
                reason: format!(
                    "0 kvm:kvm_exit events while the test VM made {io} port-I/O exits (kvm:kvm_pio fired {pio} times): the exit tracepoints do not fire on this host"
                ),
            },
            Err(e) => Probe::No { reason: format!("the probe could not run: {e}") },
        }
    }
}

impl GuestIpProbe for TestVmProbe {
    fn probe(&self) -> ProbeOutcome {
        ProbeOutcome {
            guest_ip_tagging: self.guest_ip_tagging(),
            kvm_exit_firing: self.kvm_exit_firing(),
        }
    }
}

//! Active mode: profiling with a helper inside the guest (Xenoprof's "active domain" for KVM).
//!
//! Passive profiling sees guest IPs only when the host kernel tags samples as guest mode, and
//! even then cannot name guest user code: the memory maps that turn a guest user IP into a
//! symbol are known only inside the guest. The helper `hvprof-guest` (crate `guest/`) runs in
//! the guest and streams, over virtio-serial (or vsock, TCP), the guest's kallsyms and
//! modules, process names, executable maps with build-ids, symbol tables of mapped files,
//! context switches per guest CPU, and — when the host sees no guest IPs (PVM, QEMU TCG) —
//! its own samples.
//!
//! Stage: helper channel → [`conn`] (receiver thread) → [`model`] (guest model) →
//! attribution ([`GuestModel::attribute`], [`GuestModel::attribute_host`]) → report
//! ([`report`]). Clock relation: [`clock`]. Protocol: `hvprof_proto` and
//! `docs/protocol.md`; usage: `docs/active.md`.
//!
//! ```no_run
//! # fn main() -> Result<(), hvprof::active::ActiveError> {
//! use hvprof::active::{record_active, ActiveOptions};
//! use hvprof::rt::StopToken;
//! let opts = ActiveOptions::new("unix:/tmp/vm.sock".parse()?, 4242);
//! let out = record_active(&opts, Some(std::time::Duration::from_secs(10)), &StopToken::new())?;
//! print!("{}", hvprof::output::text::guest_processes(&out.processes, 5));
//! # Ok(()) }
//! ```

pub mod clock;
pub mod conn;
pub mod error;
pub mod model;
pub mod report;
pub mod symtab;

use hvprof_rt::StopToken;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use crate::report::guest::{ConnStatus, GuestProcessReport, GuestSummary, ModelStats};
pub use conn::{connect, connect_with, ConnectOptions, HelperConn};
pub use error::{ActiveError, HelperSpec};
pub use model::{Budget, GuestContext, GuestModel, GuestSample};
pub use report::guest_process_reports;

use crate::attribute::Attributed;
use hvprof_perf::Sample;

/// Options of an active session for one VM.
#[derive(Debug, Clone)]
pub struct ActiveOptions {
    /// Where the helper is.
    pub spec: HelperSpec,
    /// Connection options (VM pid, vCPU threads, debugfs, limits).
    pub connect: ConnectOptions,
    /// Symbols per guest process in the report.
    pub top: usize,
    /// How long [`record_active`] waits for the helper's initial state before starting the
    /// clock of its duration.
    pub ready_timeout: Duration,
}

impl ActiveOptions {
    /// Defaults for VM `vm_pid`: KVM debugfs when mounted, 10 symbols per process, 120 s to
    /// wait for the helper.
    pub fn new(spec: HelperSpec, vm_pid: i32) -> ActiveOptions {
        ActiveOptions {
            spec,
            connect: ConnectOptions {
                vm_pid,
                kvm_debugfs: crate::discover::default_debugfs(),
                ..ConnectOptions::default()
            },
            top: 10,
            ready_timeout: Duration::from_secs(120),
        }
    }

    /// Sets the vCPU threads (`vm.vcpus` as `(index, tid)`).
    pub fn with_vcpus(mut self, vcpus: Vec<(u32, Option<i32>)>) -> ActiveOptions {
        self.connect.vcpus = vcpus;
        self
    }

    /// Sets the KVM debugfs directory.
    pub fn with_debugfs(mut self, d: Option<PathBuf>) -> ActiveOptions {
        self.connect.kvm_debugfs = d;
        self
    }
}

/// The result of an active session.
#[derive(Debug, Clone)]
pub struct ActiveOutcome {
    /// Guest samples with attribution and guest context, to feed
    /// [`crate::aggregate::Aggregator::add`] (`.0`) and keep for per-process rows.
    pub attributed: Vec<(Attributed, GuestContext)>,
    /// Per guest process rows of this VM.
    pub processes: Vec<GuestProcessReport>,
    /// About the guest and the session.
    pub summary: GuestSummary,
    /// Notes for the report.
    pub notes: Vec<String>,
    /// Guest call stacks from the helper's own samples (their callchains resolved through
    /// the guest's symbols; leaf-only rows for samples without a chain), per guest CPU and
    /// guest process, most samples first ([`GuestModel::guest_stacks`]). Empty when the
    /// helper did not sample.
    pub stacks: Vec<crate::report::stack::StackRow>,
}

/// How far the helper got within [`ActiveSession::await_helper`]'s wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Its initial state (hello … ready) arrived.
    Ready,
    /// It said hello but its initial state was not complete in time: guest symbols may be
    /// incomplete.
    Partial,
    /// It said hello, then `stop` returned true before its initial state was complete.
    Interrupted,
}

/// An active session running next to a host recording.
#[derive(Debug)]
pub struct ActiveSession {
    conn: HelperConn,
    opts: ActiveOptions,
}

impl ActiveSession {
    /// Connects (or starts listening) and starts receiving. Returns at once.
    ///
    /// # Errors
    /// As [`connect_with`].
    pub fn start(opts: &ActiveOptions) -> Result<ActiveSession, ActiveError> {
        let conn = connect_with(&opts.spec, opts.connect.clone())?;
        Ok(ActiveSession {
            conn,
            opts: opts.clone(),
        })
    }

    /// Waits for the helper's initial state; returns whether it arrived in `timeout`.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        self.conn.wait_ready(timeout)
    }

    /// Waits at most `timeout` for the helper's initial state (hello … ready), polling `stop`
    /// every 100 ms.
    ///
    /// # Errors
    /// [`ActiveError::NoHelper`] when no helper said hello in that time (or before `stop`, or
    /// before the receiver gave up reconnecting): there is no guest to merge, and profiling
    /// on would only hide why.
    pub fn await_helper(
        &self,
        timeout: Duration,
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<Readiness, ActiveError> {
        let t0 = Instant::now();
        let end = t0 + timeout;
        let interrupted = loop {
            let left = end.saturating_duration_since(Instant::now());
            if self.conn.wait_ready(left.min(Duration::from_millis(100))) {
                return Ok(Readiness::Ready);
            }
            if stop() {
                break true;
            }
            if Instant::now() >= end || self.conn.status().finished {
                break false;
            }
        };
        if self.conn.model().hello().is_some() {
            return Ok(if interrupted {
                Readiness::Interrupted
            } else {
                Readiness::Partial
            });
        }
        let st = self.conn.status();
        Err(ActiveError::NoHelper {
            spec: self.opts.spec.clone(),
            waited: t0.elapsed(),
            connections: st.connections,
            last_error: st.last_error,
            interrupted,
        })
    }

    /// The connection (status, model).
    pub fn conn(&self) -> &HelperConn {
        &self.conn
    }

    /// Stops receiving and attributes. `host_tagged` are the host's samples that the host
    /// kernel tagged as guest mode (`cpumode` GuestKernel/GuestUser), each with its vCPU
    /// index: when there are any, they are the guest samples (merged through the switch
    /// timeline and the clock relation) and the helper's own samples are not used (they
    /// would count guest time twice); otherwise the helper's samples are.
    pub fn finish(self, host_tagged: &[(Sample, u32)]) -> ActiveOutcome {
        let status = self.conn.status();
        let mut model = self.conn.finish();
        let helper_samples = model.take_samples();
        let helper_chains = model.take_chains();
        let mut notes: Vec<String> = model.notes().to_vec();
        let (attributed, from): (Vec<_>, &str) = if !host_tagged.is_empty() {
            if !helper_chains.is_empty() {
                notes.push(format!(
                    "the host tags guest samples: the {} samples taken by the guest helper were not added to the classes; their callchains give the guest stacks",
                    helper_samples.len()
                ));
            } else if !helper_samples.is_empty() {
                notes.push(format!(
                    "the host tags guest samples: {} samples taken by the guest helper were not used (run it with --no-sampling)",
                    helper_samples.len()
                ));
            }
            (
                host_tagged
                    .iter()
                    .map(|(s, v)| model.attribute_host(s, *v))
                    .collect(),
                "host",
            )
        } else {
            (
                helper_samples.iter().map(|s| model.attribute(s)).collect(),
                "helper",
            )
        };
        if status.connections == 0 {
            notes.push(format!(
                "no guest helper connected on {} (is hvprof-guest running in the guest?)",
                self.opts.spec
            ));
        } else if model.hello().is_none() {
            notes.push("the guest helper connected but sent no hello".into());
        }
        let st = model.stats().clone();
        if st.lost_samples + st.lost_sideband + st.lost_helper > 0 {
            notes.push(format!(
                "guest helper lost records: {} samples, {} sideband, {} while disconnected",
                st.lost_samples, st.lost_sideband, st.lost_helper
            ));
        }
        let processes = guest_process_reports(model.vm_pid(), &attributed, self.opts.top);
        // The helper's callchains are the only guest stacks there are (the host kernel gives
        // none for guest-tagged samples), so they are shown whichever samples fed the classes;
        // when the host tags guest samples and the helper sent no chains, its leaf-only rows
        // would add nothing to the host's own.
        let stacks = if from == "host" && helper_chains.is_empty() {
            Vec::new()
        } else {
            model.guest_stacks(&helper_samples, &helper_chains)
        };
        let h = model.hello().cloned();
        let summary = GuestSummary {
            vm_pid: model.vm_pid(),
            kernel_release: h
                .as_ref()
                .map(|h| h.kernel_release.clone())
                .unwrap_or_default(),
            boot_id: h.as_ref().map(|h| h.boot_id.clone()).unwrap_or_default(),
            hostname: h.as_ref().map(|h| h.hostname.clone()).unwrap_or_default(),
            cpus: h.as_ref().map_or(0, |h| h.cpus),
            helper_version: h
                .as_ref()
                .map(|h| h.helper_version.clone())
                .unwrap_or_default(),
            sampling_hz: h.as_ref().map_or(0, |h| h.sampling_hz),
            clock: model.clock.describe(),
            clock_error_ns: model.clock.error_ns(),
            kallsyms_symbols: model.kallsyms().map_or(0, |k| k.len()),
            symbol_tables: model.table_count(),
            processes: model.processes().len(),
            stats: st,
            channel: status,
            samples_from: from.into(),
        };
        ActiveOutcome {
            attributed,
            processes,
            summary,
            notes,
            stacks,
        }
    }
}

/// Runs an active session alone: connects, waits for the helper's initial state (at most
/// `opts.ready_timeout`), then collects for `duration` (None: until `stop` is set or the
/// helper says bye), and attributes the helper's samples.
///
/// # Errors
/// As [`ActiveSession::start`]; [`ActiveError::NoHelper`] when no helper says hello within
/// `opts.ready_timeout`.
pub fn record_active(
    opts: &ActiveOptions,
    duration: Option<Duration>,
    stop: &StopToken,
) -> Result<ActiveOutcome, ActiveError> {
    let s = ActiveSession::start(opts)?;
    s.await_helper(opts.ready_timeout, &mut || stop.is_stopped())?;
    let t0 = Instant::now();
    loop {
        if stop.is_stopped() || duration.is_some_and(|d| t0.elapsed() >= d) {
            break;
        }
        let st = s.conn().status();
        if st.bye.is_some() && !st.connected || st.finished {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(s.finish(&[]))
}

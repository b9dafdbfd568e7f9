//! One-line error messages with a hint for the errors users can fix: perf permissions
//! (`kernel.perf_event_paranoid`, CAP_PERFMON), sampling limits, missing PMU, mmap limits,
//! unknown pids.

/// The error chain on one line, plus ` — HINT` when an [`hvprof::Error`] in the chain has one.
pub fn explain(e: &anyhow::Error) -> String {
    let mut msg = format!("{e:#}");
    for cause in e.chain() {
        if let Some(hv) = cause.downcast_ref::<hvprof::Error>() {
            if let Some(h) = hint(hv) {
                msg.push_str(" — ");
                msg.push_str(&h);
            }
            break;
        }
    }
    msg
}

/// What the user can do about `e`, if anything. Reads `/proc/sys/kernel/perf_event_paranoid`
/// and `perf_event_max_sample_rate` to show the current values.
fn hint(e: &hvprof::Error) -> Option<String> {
    use hvprof::Error as E;
    match e {
        E::PerfEventOpen { source, target, .. } => match source.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => {
                let paranoid: Option<i32> = read_sysctl("perf_event_paranoid");
                let shown = paranoid.map_or("unknown".to_string(), |p| p.to_string());
                Some(if target.starts_with("cpu") {
                    format!(
                        "not permitted: kernel.perf_event_paranoid is {shown}; profiling a whole CPU (-a) needs it at 0 or below (sysctl -w kernel.perf_event_paranoid=0), or CAP_PERFMON (CAP_SYS_ADMIN before Linux 5.8), or root"
                    )
                } else {
                    format!(
                        "not permitted: kernel.perf_event_paranoid is {shown}; sampling a thread with kernel samples needs it at 1 or below (sysctl -w kernel.perf_event_paranoid=1) or CAP_PERFMON; a thread of another user also needs the same uid or CAP_SYS_PTRACE — or run as root"
                    )
                })
            }
            Some(libc::EINVAL) => {
                let max: Option<i32> = read_sysctl("perf_event_max_sample_rate");
                Some(format!(
                    "the kernel refused the event's settings; a sampling frequency above kernel.perf_event_max_sample_rate ({}) is the usual cause: lower -F",
                    max.map_or("unknown".to_string(), |m| m.to_string())
                ))
            }
            Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) | Some(libc::ENODEV) => {
                Some("this event is not supported here (no hardware PMU?); try -e cpu-clock".into())
            }
            Some(libc::EMFILE) => Some("too many open files: raise the limit with ulimit -n".into()),
            _ => None,
        },
        E::RingMmap { .. } => Some("the perf mmap limit was hit: lower -m/--mmap-pages or raise kernel.perf_event_mlock_kb".into()),
        E::NoSuchProcess { .. } => Some("list VMs with `hvprof vms`".into()),
        E::Read { source, path } if source.raw_os_error() == Some(libc::EACCES) && path.starts_with("/proc") => {
            Some("reading another user's /proc/PID entries needs root or CAP_SYS_PTRACE".into())
        }
        E::NotAVm { .. } => Some("list VMs with `hvprof vms`".into()),
        _ => None,
    }
}

/// Reads `/proc/sys/kernel/NAME` as a number; `None` when absent or not a number.
fn read_sysctl<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn hint_follows_the_chain() {
        let e: hvprof::Result<()> = Err(hvprof::Error::NoSuchProcess { pid: 999 });
        let e = e.context("cannot profile").unwrap_err();
        assert_eq!(
            explain(&e),
            "cannot profile: no process with pid 999 — list VMs with `hvprof vms`"
        );
    }

    #[test]
    fn no_hint_for_other_errors() {
        let e = anyhow::anyhow!("plain");
        assert_eq!(explain(&e), "plain");
    }
}

//! Value parsers shared by several subcommands: seconds and `--guest-kallsyms` lists.

use std::path::PathBuf;

use anyhow::Context;

/// Parses a number of seconds: finite, not negative, at most a year (366 days).
///
/// # Errors
/// A message naming the bad value, for clap to print.
pub fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !v.is_finite() || !(0.0..=366.0 * 86400.0).contains(&v) {
        return Err(format!(
            "'{s}' is not a number of seconds between 0 and one year"
        ));
    }
    Ok(v)
}

/// Parses `--guest-kallsyms` values: `FILE` (every VM, pid `None`) or `PID=FILE`.
///
/// # Errors
/// When the digits before `=` do not fit a pid (`i32`).
pub fn parse_guest_kallsyms(v: &[String]) -> anyhow::Result<Vec<(Option<i32>, PathBuf)>> {
    v.iter()
        .map(|s| match s.split_once('=') {
            Some((pid, file)) if pid.chars().all(|c| c.is_ascii_digit()) && !pid.is_empty() => {
                Ok((
                    Some(pid.parse().context("pid in --guest-kallsyms")?),
                    PathBuf::from(file),
                ))
            }
            _ => Ok((None, PathBuf::from(s))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("2.5"), Ok(2.5));
        assert_eq!(parse_seconds("0"), Ok(0.0));
        for bad in ["x", "-1", "inf", "NaN", "1e9"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn guest_kallsyms() {
        let v = parse_guest_kallsyms(&["a.map".into(), "12=b.map".into(), "x=c".into()]).unwrap();
        assert_eq!(
            v,
            vec![
                (None, PathBuf::from("a.map")),
                (Some(12), PathBuf::from("b.map")),
                (None, PathBuf::from("x=c")),
            ]
        );
        assert!(parse_guest_kallsyms(&["99999999999=f".into()]).is_err());
    }
}

/// What a sampling subcommand watches: VMM processes (`-p`) or the whole host (`-a`).
#[derive(clap::Args, Clone, Debug)]
pub struct ScopeArgs {
    /// VMM process ids to profile (repeat or comma-separate).
    #[arg(
        short = 'p',
        long = "pid",
        value_delimiter = ',',
        required_unless_present = "all_cpus",
        conflicts_with = "all_cpus"
    )]
    pub pids: Vec<i32>,
    /// System-wide: one counter per host CPU; VM threads are reported per VM (VMs that start or
    /// exit during a live view appear or are marked gone).
    #[arg(short = 'a', long = "all-cpus")]
    pub all_cpus: bool,
}

impl ScopeArgs {
    /// The session scope these flags name.
    pub fn scope(&self) -> hvprof::session::Scope {
        if self.all_cpus {
            hvprof::session::Scope::SystemWide
        } else {
            hvprof::session::Scope::Vms(self.pids.clone())
        }
    }
}

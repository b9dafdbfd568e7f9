//! The helper's command line: [`Options`], [`parse_args`] and the `--help` text [`USAGE`].

use std::path::PathBuf;
use std::time::Duration;

use hvprof_proto::transport::Channel;

/// Helper options (the command line).
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to connect.
    pub channel: Channel,
    /// Sampling frequency in Hz; 0 disables the helper's own sampling.
    pub freq: u32,
    /// Deepest callchain (guest kernel + user frames) of each sample; 0: no callchains.
    pub callchain_depth: u16,
    /// Stop after this long (from the first connection); None: until SIGINT/SIGTERM.
    pub duration: Option<Duration>,
    /// The guest's proc root.
    pub proc_root: PathBuf,
    /// Print progress to stderr.
    pub verbose: bool,
    /// Give up when the first connection fails instead of retrying (tests).
    pub no_retry: bool,
}

impl Options {
    /// Defaults: 1000 Hz sampling with callchains of at most
    /// [`CALLCHAIN_DEPTH`](crate::collect::CALLCHAIN_DEPTH) frames, no duration, `/proc`.
    pub fn new(channel: Channel) -> Options {
        Options {
            channel,
            freq: 1000,
            callchain_depth: crate::collect::CALLCHAIN_DEPTH,
            duration: None,
            proc_root: PathBuf::from("/proc"),
            verbose: false,
            no_retry: false,
        }
    }
}
/// Parses the helper's command line (without the program name).
///
/// # Errors
/// A usage message.
pub fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options::new(Channel::Port(None));
    let mut i = 0;
    let val = |i: &mut usize, flag: &str| -> Result<String, String> {
        *i += 1;
        args.get(*i)
            .cloned()
            .ok_or_else(|| format!("{flag} needs a value"))
    };
    while i < args.len() {
        let a = args[i].as_str();
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a, None),
        };
        let get = |i: &mut usize| match &inline {
            Some(v) => Ok(v.clone()),
            None => val(i, flag),
        };
        match flag {
            "--port" => o.channel = Channel::Port(Some(PathBuf::from(get(&mut i)?))),
            "--vsock" => {
                let v = get(&mut i)?;
                let (cid, port) = hvprof_proto::transport::parse_vsock(&v)
                    .ok_or_else(|| format!("--vsock wants CID:PORT, got {v:?}"))?;
                o.channel = Channel::Vsock { cid, port };
            }
            "--tcp" => o.channel = Channel::Tcp(get(&mut i)?),
            "--freq" => {
                let v = get(&mut i)?;
                o.freq =
                    v.parse().ok().filter(|&f: &u32| f > 0).ok_or_else(|| {
                        format!("--freq wants a positive number of Hz, got {v:?}")
                    })?;
            }
            "--no-sampling" => o.freq = 0,
            "--callchain-depth" => {
                let v = get(&mut i)?;
                o.callchain_depth = v
                    .parse()
                    .ok()
                    .filter(|&d: &u16| usize::from(d) <= hvprof_proto::MAX_CALLCHAIN)
                    .ok_or_else(|| {
                        format!(
                            "--callchain-depth wants 0..={} frames, got {v:?}",
                            hvprof_proto::MAX_CALLCHAIN
                        )
                    })?;
            }
            "--no-callchain" => o.callchain_depth = 0,
            "--duration" => {
                let v = get(&mut i)?;
                let s: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| format!("--duration wants seconds, got {v:?}"))?;
                o.duration = Some(Duration::from_secs_f64(s));
            }
            "--proc" => o.proc_root = PathBuf::from(get(&mut i)?),
            "--no-retry" => o.no_retry = true,
            "-v" | "--verbose" => o.verbose = true,
            _ => return Err(format!("unknown argument {a:?}")),
        }
        i += 1;
    }
    Ok(o)
}

/// The `--help` text.
pub const USAGE: &str = "\
hvprof-guest: hvprof's in-guest helper. Streams the guest's symbols, processes, memory maps,
context switches and (unless --no-sampling) its own cpu-clock samples to hvprof on the host.

USAGE: hvprof-guest [--port PATH | --vsock CID:PORT | --tcp HOST:PORT] [--freq HZ]
                    [--no-sampling] [--callchain-depth N | --no-callchain]
                    [--duration SECONDS] [-v]

  --port PATH        virtio-serial port (default: the port named org.hvprof.0, found via
                     /dev/virtio-ports/ or /sys/class/virtio-ports/*/name)
  --vsock CID:PORT   AF_VSOCK (the host is CID 2)
  --tcp HOST:PORT    TCP (QEMU user networking: the host is 10.0.2.2)
  --freq HZ          sampling frequency inside the guest (default 1000)
  --no-sampling      sideband and symbols only (hosts that see guest IPs themselves)
  --callchain-depth N  deepest callchain (guest kernel + user frames, frame pointers) of
                     each sample (default 64, at most 128)
  --no-callchain     samples without callchains (leaf-only guest stacks on the host)
  --duration S       stop after S seconds (default: until SIGINT/SIGTERM)
  -v, --verbose      progress on stderr
Runs as root in the guest (system-wide perf events, kallsyms).";

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn command_lines() {
        let o = parse_args(&[]).unwrap();
        assert_eq!(o.channel, Channel::Port(None));
        assert_eq!(o.freq, 1000);
        assert_eq!(o.callchain_depth, crate::collect::CALLCHAIN_DEPTH);
        let o = parse_args(&args("--tcp 127.0.0.1:9 --freq 99 --duration 2.5")).unwrap();
        assert_eq!(o.channel, Channel::Tcp("127.0.0.1:9".into()));
        assert_eq!(o.freq, 99);
        assert_eq!(o.duration, Some(Duration::from_millis(2500)));
        let o = parse_args(&args("--vsock=2:5000 --no-sampling")).unwrap();
        assert_eq!(o.channel, Channel::Vsock { cid: 2, port: 5000 });
        assert_eq!(o.freq, 0);
        assert!(parse_args(&args("--freq 0")).is_err());
        assert_eq!(
            parse_args(&args("--no-callchain")).unwrap().callchain_depth,
            0
        );
        assert_eq!(
            parse_args(&args("--callchain-depth=16"))
                .unwrap()
                .callchain_depth,
            16
        );
        assert!(parse_args(&args("--callchain-depth 129")).is_err());
        assert!(parse_args(&args("--bogus")).is_err());
        assert!(parse_args(&args("--tcp")).is_err());
        assert!(parse_args(&args("--duration -1")).is_err());
    }
}

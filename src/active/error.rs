//! Active mode's error type and the helper channel's address ([`HelperSpec`]): the leaf of the
//! active module that the crate's [`crate::Error`] refers to.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Where the helper is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperSpec {
    /// `unix:PATH`: QEMU's chardev socket of the virtio-serial port (`-chardev
    /// socket,id=hvp,path=PATH,server=on,wait=off -device virtserialport,chardev=hvp,name=org.hvprof.0`).
    Unix(PathBuf),
    /// `tcp:ADDR`: listen on ADDR; the helper connects.
    Tcp(String),
    /// `vsock:CID:PORT` (or `vsock:PORT`): listen on vsock PORT; accept only guest CID (any
    /// when omitted).
    Vsock {
        /// The guest's CID, if it should be checked.
        cid: Option<u32>,
        /// Port.
        port: u32,
    },
}

impl FromStr for HelperSpec {
    type Err = ActiveError;

    fn from_str(s: &str) -> Result<HelperSpec, ActiveError> {
        let bad = |why: &str| ActiveError::InvalidSpec(format!("{s:?}: {why}"));
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(bad("empty path"));
            }
            return Ok(HelperSpec::Unix(PathBuf::from(p)));
        }
        if let Some(a) = s.strip_prefix("tcp:") {
            if a.is_empty() {
                return Err(bad("empty address"));
            }
            return Ok(HelperSpec::Tcp(a.to_string()));
        }
        if let Some(v) = s.strip_prefix("vsock:") {
            let (cid, port) = match v.split_once(':') {
                Some((c, p)) => (
                    Some(c.parse::<u32>().map_err(|_| bad("CID is not a number"))?),
                    p,
                ),
                None => (None, v),
            };
            let port = port
                .parse::<u32>()
                .map_err(|_| bad("port is not a number"))?;
            return Ok(HelperSpec::Vsock { cid, port });
        }
        if s.starts_with('/') || s.starts_with('.') {
            return Ok(HelperSpec::Unix(PathBuf::from(s)));
        }
        Err(bad("expected unix:PATH, tcp:ADDR or vsock:CID:PORT"))
    }
}

impl std::fmt::Display for HelperSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HelperSpec::Unix(p) => write!(f, "unix:{}", p.display()),
            HelperSpec::Tcp(a) => write!(f, "tcp:{a}"),
            HelperSpec::Vsock { cid: Some(c), port } => write!(f, "vsock:{c}:{port}"),
            HelperSpec::Vsock { cid: None, port } => write!(f, "vsock:{port}"),
        }
    }
}

/// Errors of active mode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActiveError {
    /// A helper spec that does not parse.
    #[error("invalid --helper value {0}")]
    InvalidSpec(String),
    /// Connecting to the helper's socket failed.
    #[error("connecting to the guest helper channel {spec} (is the VM running with the hvprof virtio-serial port?)")]
    Connect {
        /// The spec.
        spec: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Binding the listener failed.
    #[error("listening for the guest helper on {spec}")]
    Listen {
        /// The spec.
        spec: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The receiver thread could not start.
    #[error("starting the helper receiver thread")]
    Thread(#[source] std::io::Error),
    /// The channel opened (or the listener was bound) but no `hvprof-guest` helper said
    /// hello on it within the wait ([`super::ActiveSession::await_helper`]). The message names the
    /// channel, the wait, what was seen and what to check.
    #[error("{}", no_helper_message(.spec, .waited, .connections, .last_error, .interrupted))]
    NoHelper {
        /// The channel.
        spec: HelperSpec,
        /// How long hvprof waited.
        waited: Duration,
        /// Connections made (`unix:`) or accepted (`tcp:`, `vsock:`) meanwhile.
        connections: u32,
        /// Why the last connection was dropped, if one was.
        last_error: Option<String>,
        /// The wait was cut short by a stop request.
        interrupted: bool,
    },
}

/// The one-line message of [`ActiveError::NoHelper`]: what happened, then what to check for
/// this kind of channel.
fn no_helper_message(
    spec: &HelperSpec,
    waited: &Duration,
    connections: &u32,
    last_error: &Option<String>,
    interrupted: &bool,
) -> String {
    let secs = waited.as_secs_f64();
    let secs = if secs >= 10.0 {
        format!("{secs:.0}")
    } else {
        format!("{secs:.1}")
    };
    let seen = match (spec, *connections) {
        (HelperSpec::Unix(_), 0) => "the socket refused every connection",
        (HelperSpec::Unix(_), _) => "the socket accepted the connection but nothing answered",
        (_, 0) => "nothing connected",
        (_, _) => "a peer connected but sent no hello",
    };
    // The cause may quote bytes from the channel: one line, bounded.
    let last = last_error
        .as_deref()
        .map(|e| {
            let e: String = e.chars().filter(|c| !c.is_control()).take(200).collect();
            format!("; last error: {e}")
        })
        .unwrap_or_default();
    let stopped = if *interrupted { "; stopped early" } else { "" };
    let check = match spec {
        HelperSpec::Unix(p) => format!(
            "that hvprof-guest runs inside the guest, that {} is this VM's chardev socket, and that the VM has the virtio-serial port (-device virtserialport,chardev=ID,name=org.hvprof.0)",
            p.display()
        ),
        HelperSpec::Tcp(a) => format!(
            "that hvprof-guest runs inside the guest with --tcp pointing at {a} (QEMU user networking: 10.0.2.2:PORT), and that the guest can reach it"
        ),
        HelperSpec::Vsock { port, .. } => format!(
            "that hvprof-guest runs inside the guest with --vsock 2:{port}, and that the VM has a vsock device (-device vhost-vsock-pci,guest-cid=CID)"
        ),
    };
    format!(
        "no hvprof-guest helper answered on {spec} within {secs} s ({seen}{last}{stopped}); check {check}"
    )
}

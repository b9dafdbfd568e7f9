//! The real Linux test guest (guest-image/) for the active-mode end-to-end tests: Debian's
//! kernel under QEMU (TCG here) with the static `hvprof-guest` helper and `hvprof-workload`,
//! built and booted by the guest-image scripts; QEMU is killed on drop.
//!
//! ```ignore
//! let Some(g) = RealGuest::boot(&["--workload-mode", "callers"]) else { return };
//! // ... `hvprof record -p {g.qemu_pid} --active --helper unix:{g.socket}` ...
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the crate is (the scripts are relative to it).
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A booted real guest: QEMU's pid and the helper channel's socket.
pub struct RealGuest {
    /// QEMU's pid (the VM's VMM).
    pub qemu_pid: i32,
    /// The unix socket of the virtio-serial port the helper talks on.
    pub socket: String,
}

impl Drop for RealGuest {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.qemu_pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Prints why a test skips and returns true — or panics under `CI=true`, where a missing
/// prerequisite must fail.
pub fn skip(why: &str) -> bool {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true, but {why}");
    }
    eprintln!("skipping: {why}");
    true
}

/// Runs `cmd`, panicking with its output when it fails; its stdout.
pub fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of `KEY=value` in `text`'s lines.
fn kv(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} missing in:\n{text}"))
        .to_string()
}

impl RealGuest {
    /// The guest's QEMU as `hvprof vms --format json` finds it.
    ///
    /// # Panics
    /// When hvprof vms fails or does not list it.
    pub fn discovered(&self) -> hvprof::discover::Vm {
        let vms = run(
            Command::new(super::vm::HVPROF).args(["vms", "--format", "json"]),
            "hvprof vms",
        );
        let vms: Vec<hvprof::discover::Vm> = serde_json::from_str(&vms).unwrap();
        vms.into_iter()
            .find(|v| v.pid == self.qemu_pid)
            .expect("QEMU found by hvprof vms")
    }

    /// Builds the static helper and the guest image (cached kernel: seconds when warm) and
    /// boots the guest for 60 s with `run_args` added to guest-image/run.sh's (e.g.
    /// `--workload-mode callers`). None when this machine cannot (not root, no QEMU) and the
    /// test should skip.
    pub fn boot(run_args: &[&str]) -> Option<RealGuest> {
        if !nix::unistd::geteuid().is_root() && skip("not root") {
            return None;
        }
        if Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .is_err()
            && skip("qemu-system-x86_64 is not installed (guest-image/ci-deps.sh)")
        {
            return None;
        }
        let helper = run(
            Command::new("bash")
                .arg(format!("{ROOT}/guest/build-static.sh"))
                .current_dir(ROOT),
            "guest/build-static.sh",
        );
        let helper = Path::new(ROOT).join(helper.trim().lines().last().unwrap());
        let image = PathBuf::from(format!("{ROOT}/target/guest-image"));
        run(
            Command::new("bash")
                .arg(format!("{ROOT}/guest-image/build.sh"))
                .arg("--out")
                .arg(&image)
                .arg("--helper")
                .arg(&helper),
            "guest-image/build.sh",
        );
        let env = run(
            Command::new("bash")
                .arg(format!("{ROOT}/guest-image/run.sh"))
                .arg("--out")
                .arg(&image)
                .args(["--duration", "60"])
                .args(run_args),
            "guest-image/run.sh",
        );
        Some(RealGuest {
            qemu_pid: kv(&env, "QEMU_PID").parse().unwrap(),
            socket: kv(&env, "SERIAL_SOCKET"),
        })
    }
}

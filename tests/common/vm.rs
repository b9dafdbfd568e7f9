//! The built-in test VM for the end-to-end tests: whether this machine can run it
//! ([`prerequisites`]), and [`Vm`], `hvprof testvm` started as a child process with its guest
//! kallsyms file, stopped on drop.
//!
//! ```ignore
//! if !prerequisites(false) {
//!     return;
//! }
//! let vm = Vm::start(&[]);
//! // ... `hvprof record -p {vm.pid} --guest-kallsyms {vm.kallsyms}` ...
//! ```

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The `hvprof` binary under test.
pub const HVPROF: &str = env!("CARGO_BIN_EXE_hvprof");

/// Whether this machine can run the end-to-end tests: root, `/dev/kvm`, and tmux when
/// `need_tmux` (the terminal UI tests drive it through a tmux pane). Without them it prints
/// why and returns `false`, so the test passes by skipping.
///
/// # Panics
///
/// Under `CI=true` when something is missing, so CI can never pass by skipping.
pub fn prerequisites(need_tmux: bool) -> bool {
    let tmux = !need_tmux
        || Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
    let ok = Path::new("/dev/kvm").exists() && nix::unistd::geteuid().is_root() && tmux;
    if !ok {
        let (lacks, needs) = if need_tmux {
            ("root, /dev/kvm or tmux", "root, /dev/kvm and tmux")
        } else {
            ("root or /dev/kvm", "root and /dev/kvm")
        };
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but this machine lacks {lacks}: the end-to-end tests cannot run");
        }
        eprintln!("skipping: needs {needs}");
    }
    ok
}

/// The test VM (`hvprof testvm --vcpus 2`: vCPU 0 runs hot_loop_a, vCPU 1 hot_loop_b and
/// hot_loop_c) as a child process, stopped (SIGTERM, then waited for) on drop.
pub struct Vm {
    child: Child,
    /// The VM's pid (its VMM process: the child).
    pub pid: i32,
    /// The guest kallsyms file the test VM wrote, for `--guest-kallsyms`.
    pub kallsyms: PathBuf,
    _dir: tempfile::TempDir,
}

impl Vm {
    /// Starts `hvprof testvm --vcpus 2 --kallsyms FILE` plus `extra` (e.g. `--ring0`,
    /// `--duration 1.5`) and waits for its `ready` line.
    ///
    /// # Panics
    ///
    /// When the test VM cannot be started or does not say `ready`.
    pub fn start(extra: &[&str]) -> Vm {
        let dir = tempfile::tempdir().unwrap();
        let kallsyms = dir.path().join("testvm.kallsyms");
        let mut child = Command::new(HVPROF)
            .args(["testvm", "--vcpus", "2", "--kallsyms"])
            .arg(&kallsyms)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start hvprof testvm");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("ready"), "test VM did not start: {line:?}");
        let pid = child.id() as i32;
        Vm {
            child,
            pid,
            kallsyms,
            _dir: dir,
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

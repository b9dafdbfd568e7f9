//! End to end, on this machine's real KVM: `hvprof top` on the built-in test VM — in a tmux
//! pane (the screen shows the VM's pid, its vCPUs and its hot guest function; `e` toggles the
//! exits pane; `q` and Ctrl-C exit 0 and give the terminal back in cooked mode, off the
//! alternate screen) and in batch mode (`-b -n N`: N frames that each name the VM, as text
//! and as JSON).
//!
//! Needs root, /dev/kvm and tmux. Without them each test prints why and passes — except
//! under `CI=true`, where a missing prerequisite fails, so CI can never pass by skipping.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::vm::{prerequisites, Vm, HVPROF};

impl Vm {
    /// `hvprof top -p PID --guest-kallsyms FILE` plus `extra`, as shell words.
    fn top_command(&self, extra: &str) -> String {
        format!(
            "{HVPROF} top -p {} --guest-kallsyms {} {extra}",
            self.pid,
            self.kallsyms.display()
        )
    }
}

/// A tmux server of its own (`tmux -L NAME`) with one 220×50 pane; killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Runs `cmd` in a new pane, then prints its exit status and whether the terminal is back
    /// in cooked mode (`stty -a` shows `icanon`, not `-icanon`), and waits.
    fn start(name: &str, cmd: &str) -> Tmux {
        let t = Tmux {
            socket: format!("hvprof-e2e-{name}-{}", std::process::id()),
        };
        let script = format!(
            "{cmd}; echo hvprof-exit=$?; stty -a | grep -q ' icanon' && echo tty-cooked; sleep 120"
        );
        t.tmux(&[
            "new-session",
            "-d",
            "-x",
            "220",
            "-y",
            "50",
            "sh",
            "-c",
            &script,
        ]);
        t
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p"])
    }

    fn keys(&self, keys: &str) {
        self.tmux(&["send-keys", keys]);
    }

    /// Waits up to `secs` for the screen to satisfy `ok`; returns the last screen.
    fn wait_for(&self, secs: u64, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                Instant::now() < end,
                "after {secs} s the screen still lacks {what}:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// tmux's `#{...}` format of the pane.
    fn format(&self, f: &str) -> String {
        self.tmux(&["display-message", "-p", f]).trim().to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// After top exited: status 0, cooked mode, primary screen, cursor shown.
fn assert_restored(t: &Tmux, how: &str) {
    let s = t.wait_for(15, "hvprof-exit=", |s| s.contains("hvprof-exit="));
    assert!(
        s.contains("hvprof-exit=0"),
        "{how}: top did not exit 0:\n{s}"
    );
    t.wait_for(5, "tty-cooked", |s| s.contains("tty-cooked"));
    assert_eq!(
        t.format("#{alternate_on}"),
        "0",
        "{how}: still on the alternate screen"
    );
    assert_eq!(t.format("#{cursor_flag}"), "1", "{how}: cursor left hidden");
    assert!(
        !s.contains("q quit"),
        "{how}: the UI is still on the screen:\n{s}"
    );
}

#[test]
fn tui_shows_the_vm_its_vcpus_and_hot_function_and_q_restores_the_terminal() {
    if !prerequisites(true) {
        return;
    }
    let vm = Vm::start(&[]);
    let t = Tmux::start("q", &vm.top_command("-d 0.5"));
    let pid = vm.pid.to_string();
    let s = t.wait_for(30, "the VM's pid, its vCPUs and hot_loop_a", |s| {
        s.contains(&pid) && s.contains("vCPU 0") && s.contains("vCPU 1") && s.contains("hot_loop_a")
    });
    assert!(s.contains("hvprof-testvm"), "VM name shown:\n{s}");
    assert!(s.contains("VM exits and steal"), "exits pane shown:\n{s}");
    assert!(
        s.contains("steal [source: schedstat]"),
        "steal names its source:\n{s}"
    );
    assert_eq!(
        t.format("#{alternate_on}"),
        "1",
        "the UI uses the alternate screen"
    );

    // `e` hides the exits pane, `e` again shows it.
    t.keys("e");
    t.wait_for(5, "no exits pane", |s| !s.contains("VM exits and steal"));
    t.keys("e");
    t.wait_for(5, "the exits pane", |s| s.contains("VM exits and steal"));
    // Drill down: the second row is vCPU 0; Enter lists its symbols (hot_loop_a first).
    t.keys("Down");
    t.keys("Enter");
    t.wait_for(5, "vCPU 0's symbols", |s| {
        s.lines()
            .skip_while(|l| !l.contains("vCPU 0"))
            .nth(1)
            .is_some_and(|l| l.contains("hot_loop_a") && l.contains("guest-user"))
    });
    // `/` filters by VM name or symbol: a name that matches nothing hides the VM.
    t.keys("/");
    t.tmux(&["send-keys", "-l", "no-such-vm"]);
    t.keys("Enter");
    t.wait_for(5, "the VM filtered out", |s| {
        s.contains("filter: no-such-vm") && !s.contains("hvprof-testvm (2 vCPUs)")
    });
    t.keys("/");
    t.tmux(&["send-keys", "-l", "hot_loop_b"]);
    t.keys("Enter");
    t.wait_for(5, "the VM found by a symbol", |s| {
        s.contains("hvprof-testvm (2 vCPUs)")
    });
    t.keys("p");
    t.wait_for(5, "[paused]", |s| s.contains("[paused]"));
    t.keys("q");
    assert_restored(&t, "q");
}

#[test]
fn ctrl_c_exits_the_tui_and_restores_the_terminal() {
    if !prerequisites(true) {
        return;
    }
    let vm = Vm::start(&[]);
    let t = Tmux::start("ctrlc", &vm.top_command(""));
    let pid = vm.pid.to_string();
    t.wait_for(30, "the VM's row", |s| {
        s.contains(&pid) && s.contains("running")
    });
    t.keys("C-c");
    assert_restored(&t, "Ctrl-C");
}

#[test]
fn batch_mode_prints_n_frames_that_each_name_the_vm() {
    if !prerequisites(false) {
        return;
    }
    let vm = Vm::start(&[]);
    let pid = vm.pid.to_string();
    let k = vm.kallsyms.display().to_string();
    let args = [
        "top",
        "-b",
        "-n",
        "3",
        "-d",
        "0.5",
        "-p",
        &pid,
        "--guest-kallsyms",
        &k,
    ];
    let out = Command::new(HVPROF)
        .args(args)
        .output()
        .expect("run hvprof top");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "hvprof top -b failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames: Vec<&str> = text
        .split("hvprof top: frame ")
        .filter(|f| !f.is_empty())
        .collect();
    assert_eq!(frames.len(), 3, "3 frames:\n{text}");
    for (i, f) in frames.iter().enumerate() {
        assert!(
            f.starts_with(&format!("{} at", i + 1)),
            "frame {}:\n{f}",
            i + 1
        );
        let row = f
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{pid} hvprof-testvm")))
            .unwrap_or_else(|| panic!("frame {} names the VM by pid:\n{f}", i + 1));
        assert!(row.contains("running"), "{row}");
        assert!(f.contains("vCPU 0 tid") && f.contains("vCPU 1 tid"), "{f}");
    }
    assert!(
        text.contains("hot_loop_a"),
        "the hot guest function:\n{text}"
    );

    let args = [
        "top",
        "-b",
        "-n",
        "2",
        "-d",
        "0.5",
        "--format",
        "json",
        "-p",
        &pid,
        "--guest-kallsyms",
        &k,
    ];
    let out = Command::new(HVPROF)
        .args(args)
        .output()
        .expect("run hvprof top");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per frame"))
        .collect();
    assert_eq!(lines.len(), 2);
    for (i, f) in lines.iter().enumerate() {
        assert_eq!(f["frame"], i as u64 + 1);
        assert_eq!(f["vms"][0]["pid"], vm.pid);
        assert_eq!(f["vms"][0]["state"], "running");
        assert_eq!(f["vms"][0]["vcpus"].as_array().map(Vec::len), Some(2));
        assert!(f["vms"][0]["cpu_percent"].as_f64().is_some(), "{f}");
    }
}

#[test]
fn batch_mode_ends_cleanly_when_its_vm_is_gone() {
    if !prerequisites(false) {
        return;
    }
    let vm = Vm::start(&[]);
    let pid = vm.pid.to_string();
    let mut child = Command::new(HVPROF)
        .args(["top", "-b", "-d", "0.5", "--format", "json", "-p", &pid])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hvprof top");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a first frame").unwrap();
    let first: serde_json::Value = serde_json::from_str(&first).expect("one JSON object per frame");
    assert_eq!(first["vms"][0]["state"], "running", "{first}");
    // The VM exits: top marks it gone (if a frame comes before the session notices) and ends.
    drop(vm);
    for l in lines {
        let f: serde_json::Value = serde_json::from_str(&l.unwrap()).unwrap();
        let state = f["vms"][0]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(state == "running" || state == "gone", "{f}");
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "top exits 0 when its VM is gone: {stderr}"
    );
    assert!(stderr.contains("stopped"), "says why it stopped: {stderr}");
}

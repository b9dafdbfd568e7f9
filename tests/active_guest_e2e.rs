//! Active mode against the real test guest (guest-image/: Debian kernel under QEMU, busybox
//! initramfs with /bin/hvprof-guest and /bin/hvprof-workload whose hot functions take
//! 60/30/10 %). Opt-in, because it boots a VM:
//!
//! - `HVPROF_ACTIVE_SOCKET=PATH` (and `HVPROF_ACTIVE_VM_PID=PID`): use a guest already
//!   running with its virtio-serial chardev at PATH;
//! - else `HVPROF_ACTIVE_E2E=1`: boot `guest-image/run.sh --out $HVPROF_ACTIVE_IMAGE`
//!   (default `target/guest-image`, built with `guest-image/build.sh --helper
//!   target/x86_64-unknown-linux-gnu/release/hvprof-guest`).
//!
//! Otherwise it prints why and passes.

use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use hvprof::active::{record_active, ActiveOptions, HelperSpec};
use hvprof::attribute::Class;

struct Qemu(Option<i32>);

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

#[test]
fn real_guest_workload_shares_from_the_helper() {
    let (sock, vm_pid, _qemu) = if let Ok(s) = std::env::var("HVPROF_ACTIVE_SOCKET") {
        let pid = std::env::var("HVPROF_ACTIVE_VM_PID")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        (s, pid, Qemu(None))
    } else if std::env::var("HVPROF_ACTIVE_E2E").as_deref() == Ok("1") {
        let out_dir = std::env::var("HVPROF_ACTIVE_IMAGE")
            .unwrap_or_else(|_| format!("{}/target/guest-image", env!("CARGO_MANIFEST_DIR")));
        let out = Command::new(format!("{}/guest-image/run.sh", env!("CARGO_MANIFEST_DIR")))
            .args(["--out", &out_dir, "--duration", "40"])
            .output()
            .expect("guest-image/run.sh");
        assert!(
            out.status.success(),
            "run.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kv = String::from_utf8_lossy(&out.stdout).to_string();
        let get = |k: &str| {
            kv.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .map(str::to_string)
        };
        let pid: i32 = get("QEMU_PID")
            .and_then(|p| p.parse().ok())
            .expect("QEMU_PID");
        (
            get("SERIAL_SOCKET").expect("SERIAL_SOCKET"),
            pid,
            Qemu(Some(pid)),
        )
    } else {
        eprintln!(
            "skipped: set HVPROF_ACTIVE_E2E=1 (or HVPROF_ACTIVE_SOCKET) to boot the test guest"
        );
        return;
    };
    let spec: HelperSpec = format!("unix:{sock}").parse().unwrap();
    let mut opts = ActiveOptions::new(spec, vm_pid);
    opts.ready_timeout = Duration::from_secs(120);
    let out = record_active(
        &opts,
        Some(Duration::from_secs(10)),
        &AtomicBool::new(false),
    )
    .expect("active session");
    eprintln!("summary: {:#?}", out.summary);
    eprintln!("notes: {:#?}", out.notes);
    eprint!("{}", hvprof::active::report::render_text(&out.processes, 6));
    assert!(
        out.summary.kernel_release.starts_with("6."),
        "{:?}",
        out.summary
    );
    assert!(out.summary.kallsyms_symbols > 10_000);
    let w = out
        .processes
        .iter()
        .find(|p| p.comm == "hvprof-workload")
        .expect("workload process in the guest report");
    let share = |name: &str| {
        w.top_symbols
            .iter()
            .filter(|s| s.class == Class::GuestUser && s.symbol.name == name)
            .map(|s| s.samples)
            .sum::<u64>() as f64
    };
    let (a, b, c) = (share("hot_alpha"), share("hot_beta"), share("hot_gamma"));
    let t = a + b + c;
    assert!(t > 100.0, "too few workload samples: {a} {b} {c}");
    eprintln!(
        "hot_alpha {:.1}%  hot_beta {:.1}%  hot_gamma {:.1}%",
        a * 100.0 / t,
        b * 100.0 / t,
        c * 100.0 / t
    );
    assert!((a / t - 0.6).abs() < 0.1 && (b / t - 0.3).abs() < 0.1 && (c / t - 0.1).abs() < 0.07);
}

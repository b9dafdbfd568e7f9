//! Guest call stacks in active mode, end to end on a real Linux guest: Debian's kernel under
//! QEMU (TCG here), the static `hvprof-guest` helper sampling with callchains inside the
//! guest, and `hvprof-workload -m callers`, whose one hot function `hot_shared` is called
//! from `via_left` for 70 % of its iterations and from `via_right` for 30 % (frame pointers,
//! no inlining, no tail calls). `hvprof record --active -g --format folded` must show both
//! paths under the VM, a vCPU and the workload's guest process, with `via_right`'s share of
//! the two within ±5 points of 30 %.
//!
//! Needs root, qemu-system-x86 and the Debian kernel package (guest-image/ci-deps.sh and
//! guest-image/build.sh install and fetch them). Without them the test prints why and passes,
//! except under CI=true.

mod common;

use std::process::Command;

use common::real_guest::{run, RealGuest};
use common::vm::HVPROF;

/// `via_right`'s share of the iterations of `hot_shared`, in percent (workload.c, mode
/// callers: chunks 7–9 of 10).
const VIA_RIGHT_PCT: f64 = 30.0;

/// One folded line split into its frames and count.
fn parse_folded(line: &str) -> Option<(Vec<&str>, u64)> {
    let (stack, count) = line.rsplit_once(' ')?;
    Some((stack.split(';').collect(), count.parse().ok()?))
}

/// Samples of folded lines under the VM frame ending in `vm_frame` → a vCPU → a `hvprof-workload` guest process
/// whose last two frames are `caller;hot_shared`.
fn path_samples(lines: &[(Vec<&str>, u64)], vm_frame: &str, caller: &str) -> u64 {
    lines
        .iter()
        .filter(|(f, _)| {
            f.len() >= 5
                && f[0].ends_with(vm_frame)
                && f[1].starts_with("vCPU_")
                && f[2].starts_with("hvprof-workload_(")
                && f[f.len() - 2] == caller
                && f[f.len() - 1] == "hot_shared"
        })
        .map(|(_, n)| n)
        .sum()
}

#[test]
fn guest_stacks_show_both_callers_of_the_hot_function_in_their_shares() {
    let Some(guest) = RealGuest::boot(&["--workload-mode", "callers"]) else {
        return;
    };
    let sock = guest.socket.clone();

    let vm = guest.discovered();
    // The folded VM frame is `NAME_(PID)`.
    let vm_frame = format!("_({})", vm.pid);

    let out = run(
        Command::new(HVPROF).args([
            "record",
            "-p",
            &guest.qemu_pid.to_string(),
            "--active",
            "--helper",
            &format!("unix:{sock}"),
            "--helper-timeout",
            "60",
            "-e",
            "cpu-clock",
            "-g",
            "-d",
            "6",
            "--format",
            "folded",
        ]),
        "hvprof record --active -g --format folded",
    );
    let lines: Vec<(Vec<&str>, u64)> = out.lines().filter_map(parse_folded).collect();
    let guest_lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(";hvprof-workload_("))
        .collect();
    let left = path_samples(&lines, &vm_frame, "via_left");
    let right = path_samples(&lines, &vm_frame, "via_right");
    let shown = || {
        let mut v = guest_lines.clone();
        v.sort_by_key(|l| std::cmp::Reverse(parse_folded(l).map_or(0, |x| x.1)));
        v.truncate(20);
        v.join("\n")
    };
    assert!(
        left + right > 300,
        "enough hot_shared samples with their callers: via_left {left}, via_right {right}; top guest lines:\n{}",
        shown()
    );
    // Both paths continue to the workload's main (frame pointers all the way up).
    for caller in ["via_left", "via_right"] {
        assert!(
            lines.iter().any(|(f, _)| {
                f.ends_with(&[caller, "hot_shared"])
                    && f.contains(&"main")
                    && f.contains(&"run_round_callers")
            }),
            "a {caller} stack reaching main through run_round_callers:\n{}",
            shown()
        );
    }
    let pct = right as f64 * 100.0 / (left + right) as f64;
    assert!(
        (pct - VIA_RIGHT_PCT).abs() <= 5.0,
        "via_right share of hot_shared: {pct:.1}% (want {VIA_RIGHT_PCT} ± 5): via_left {left}, via_right {right}\n{}",
        shown()
    );
    eprintln!("via_left {left}, via_right {right}: via_right {pct:.1}%");
}

//! QEMU TCG started the way most people start it — without `-name ...,debug-threads=on` — names
//! no vCPU thread `CPU n/TCG`. hvprof must still list its vCPUs (from `-smp`) and, when
//! recording, recognise the vCPU threads by their samples in QEMU's translated-code buffer and
//! count that time as class `emulation`, saying how it found them.
//!
//! The guest is a 64 KiB BIOS image whose reset vector is `jmp $` (EB FE at 0xFFFF0): the boot
//! vCPU spins in one translated block forever; the second vCPU waits for INIT/SIPI.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HVPROF: &str = env!("CARGO_BIN_EXE_hvprof");

struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn qemu() -> Option<&'static str> {
    let ok = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok && std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but qemu-system-x86_64 is missing (guest-image/ci-deps.sh installs it)");
    }
    ok.then_some("qemu-system-x86_64")
}

fn start_spinning_tcg_vm(dir: &std::path::Path) -> Qemu {
    let mut bios = vec![0u8; 64 << 10];
    bios[0xfff0] = 0xeb; // jmp $
    bios[0xfff1] = 0xfe;
    let path = dir.join("spin.bios");
    std::fs::write(&path, &bios).unwrap();
    let child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-smp", "2", "-m", "32", "-nodefaults"])
        .args(["-display", "none", "-monitor", "none", "-serial", "none"])
        .arg("-bios")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start qemu");
    Qemu(child)
}

fn hvprof(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(HVPROF)
        .args(args)
        .output()
        .expect("run hvprof");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unnamed_tcg_vcpu_threads_are_found_by_their_translated_code() {
    if qemu().is_none() {
        eprintln!("skipping: no qemu-system-x86_64");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let vm = start_spinning_tcg_vm(dir.path());
    let pid = vm.0.id().to_string();
    // QEMU creates its vCPU threads during machine init: wait until they run (hvprof -p, like
    // perf -p, follows the threads that exist when it starts).
    let t0 = Instant::now();
    while std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count()) < 3
        || t0.elapsed() < Duration::from_millis(500)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "QEMU never started its vCPU threads"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Discovery: the TCG VM with its 2 vCPUs from -smp, their threads unnamed.
    let t0 = Instant::now();
    let listing = loop {
        let (ok, out, err) = hvprof(&["vms"]);
        assert!(ok, "hvprof vms failed: {err}");
        if out.contains(&format!("pid {pid}")) || t0.elapsed() > Duration::from_secs(20) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let block: String = listing
        .split("VM ")
        .find(|b| b.contains(&format!("pid {pid},")))
        .unwrap_or_else(|| panic!("VM {pid} not listed:\n{listing}"))
        .to_string();
    assert!(
        block.contains("tcg") && block.contains("2 vCPUs"),
        "{block}"
    );
    assert!(block.contains("thread unnamed"), "{block}");

    // Recording: the spinning vCPU's thread is found by its translated-code samples.
    let (ok, out, err) = hvprof(&[
        "record",
        "-p",
        &pid,
        "-d",
        "2",
        "-e",
        "cpu-clock",
        "-F",
        "500",
        "--format",
        "json",
    ]);
    assert!(ok, "record failed: {err}");
    let p: serde_json::Value = serde_json::from_str(&out).expect("json report");
    let vm_report = &p["vms"][0];
    let vcpus = vm_report["vcpus"].as_array().expect("vcpus");
    assert!(!vcpus.is_empty(), "no vCPU thread found: {vm_report:#}");
    let v0 = &vcpus[0];
    assert_eq!(v0["vcpu"], 0, "{v0:#}");
    let emulation = v0["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == "emulation")
        .unwrap_or_else(|| panic!("no emulation class on the spinning vCPU: {v0:#}"));
    assert!(
        emulation["percent"].as_f64().unwrap() > 50.0,
        "the spinning vCPU runs translated code most of its time: {v0:#}"
    );
    let notes = p["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n
            .as_str()
            .unwrap_or_default()
            .contains("ran its translated code")),
        "the report says how the vCPU threads were found: {notes:?}"
    );
}

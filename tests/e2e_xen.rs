//! hvprof inside the dom0 of a real Xen: Debian's Xen 4.17 and a Debian dom0 (xen-utils,
//! xenstored, xl, xentrace) under QEMU TCG, with a PV domU running `hvprof-workload`
//! (hot_alpha/hot_beta/hot_gamma at 60/30/10 % of its time) on 2 vCPUs, all built and booted
//! by `xen-image/run.sh` (docs/xen.md).
//!
//! A boot costs 1–2 minutes of TCG (more on a loaded machine), so the test boots once and runs
//! a list of [`Probe`]s in that one dom0: each probe is a shell command and a check of its
//! output. Add a probe to [`probes`] to test more inside dom0 (the Xen backend's `hvprof vms`,
//! `stat`, `record --domain`); every probe's environment has `DOMU_NAME`, `DOMU_ID`,
//! `DOMU_VCPUS`, `DOMU_KALLSYMS` (the domU kernel's System.map), `DOMU_WORKLOAD` (the workload
//! ELF) and `DOMU_WORKLOAD_SYMS` (the hot functions' address ranges).
//!
//! Needs root, qemu-system-x86 and debootstrap (guest-image/ci-deps.sh installs them) and a
//! Debian mirror on a cold cache. Without them the test prints why and passes, except under
//! CI=true.

use std::path::Path;
use std::process::Command;

const HVPROF: &str = env!("CARGO_BIN_EXE_hvprof");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Marker lines around each probe's output in the one command run in dom0.
const BEGIN: &str = "@@E2E-XEN-BEGIN";
const END: &str = "@@E2E-XEN-END";

/// One command run in dom0 (by `bash -c`, stderr merged into stdout) and the check of what it
/// printed and its exit status.
struct Probe {
    name: &'static str,
    cmd: &'static str,
    check: fn(&ProbeOutput),
}

/// What one probe printed (stdout and stderr, interleaved) and its exit status in dom0.
#[derive(Debug)]
struct ProbeOutput {
    name: String,
    text: String,
    status: i32,
}

fn skip(why: &str) -> bool {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true, but {why}");
    }
    eprintln!("skipping: {why}");
    true
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The dom0 script: each probe between markers, with its exit status on the end marker.
fn script(probes: &[Probe]) -> String {
    let mut s = String::new();
    for p in probes {
        s.push_str(&format!(
            "printf '\\n{BEGIN} %s\\n' '{name}'\n( {cmd}\n) </dev/null 2>&1\n\
             printf '\\n{END} %s %d\\n' '{name}' $?\n",
            name = p.name,
            cmd = p.cmd,
        ));
    }
    s
}

/// Splits the dom0 command's stdout into the probes' outputs, by marker.
fn split(stdout: &str) -> Vec<ProbeOutput> {
    let mut outs = Vec::new();
    let mut cur: Option<(String, String)> = None;
    for line in stdout.lines() {
        if let Some(name) = line.strip_prefix(&format!("{BEGIN} ")) {
            cur = Some((name.to_string(), String::new()));
        } else if let Some(rest) = line.strip_prefix(&format!("{END} ")) {
            let (name, status) = rest.rsplit_once(' ').expect("end marker: NAME STATUS");
            let (n, text) = cur.take().expect("end marker without a begin marker");
            assert_eq!(n, name, "markers of different probes interleaved");
            outs.push(ProbeOutput {
                name: n,
                // The end marker starts with a newline of its own.
                text: text.trim_end_matches('\n').to_string(),
                status: status.parse().expect("end marker status"),
            });
        } else if let Some((_, text)) = cur.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    outs
}

/// Boots Xen once through `xen-image/run.sh` and runs every probe in dom0, in order.
///
/// # Panics
///
/// When run.sh fails (boot failure, timeout) or a probe's output is missing.
fn run_in_dom0(probes: &[Probe]) -> Vec<ProbeOutput> {
    let out = Command::new("bash")
        .arg(Path::new(ROOT).join("xen-image/run.sh"))
        .args(["--hvprof", HVPROF, "--timeout", "420", "--"])
        .args(["bash", "-c", &script(probes)])
        .current_dir(ROOT)
        .output()
        .expect("spawn xen-image/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("xen-image/run.sh stderr:\n{stderr}");
    assert!(
        out.status.success(),
        "xen-image/run.sh failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    let outs = split(&stdout);
    let names: Vec<&str> = outs.iter().map(|o| o.name.as_str()).collect();
    let want: Vec<&str> = probes.iter().map(|p| p.name).collect();
    assert_eq!(names, want, "probe outputs in:\n{stdout}");
    outs
}

/// The `xl list` row of a domain: (name, id, memory MiB, vCPUs).
fn xl_list_row<'a>(text: &'a str, name: &str) -> Option<(&'a str, u32, u64, u32)> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() >= 5 && f[0] == name {
            Some((
                f[0],
                f[1].parse().ok()?,
                f[2].parse().ok()?,
                f[3].parse().ok()?,
            ))
        } else {
            None
        }
    })
}

fn check_xl(o: &ProbeOutput) {
    assert_eq!(o.status, 0, "{}:\n{}", o.name, o.text);
    let (_, id, mem, vcpus) = xl_list_row(&o.text, "hvprof-domu")
        .unwrap_or_else(|| panic!("xl list has no hvprof-domu:\n{}", o.text));
    assert!(id > 0, "domU id {id}");
    assert_eq!(mem, 256, "domU memory:\n{}", o.text);
    assert_eq!(vcpus, 2, "domU vCPUs in xl list:\n{}", o.text);
    let dom0 = xl_list_row(&o.text, "Domain-0").expect("xl list has Domain-0");
    assert_eq!(dom0.1, 0, "Domain-0 id");
    // xl vcpu-list (after its header, which ends in "Affinity (Hard / Soft)"): one row per
    // vCPU, "NAME ID VCPU CPU STATE TIME AFFINITY".
    let vcpu_rows: Vec<u32> = o
        .text
        .lines()
        .skip_while(|l| !l.contains("Affinity"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 6 && f[0] == "hvprof-domu" && f[1] == id.to_string())
                .then(|| f[2].parse().ok())
                .flatten()
        })
        .collect();
    assert_eq!(
        vcpu_rows,
        [0, 1],
        "xl vcpu-list rows of the domU:\n{}",
        o.text
    );
    assert!(
        o.text.lines().any(|l| l.trim() == "control_d"),
        "/proc/xen/capabilities of dom0 is control_d:\n{}",
        o.text
    );
    assert!(
        o.text.contains(&format!(
            "DOMU hvprof-domu {id} 2 /xen-test/domu-System.map"
        )),
        "the command's environment names the domU:\n{}",
        o.text
    );
}

fn check_kallsyms(o: &ProbeOutput) {
    assert_eq!(o.status, 0, "{}:\n{}", o.name, o.text);
    // System.map lines "ADDR TYPE NAME": the domU kernel's _text and a function.
    assert!(
        o.text.lines().any(|l| l.ends_with(" T _text")),
        "$DOMU_KALLSYMS has _text:\n{}",
        o.text
    );
    for f in ["hot_alpha", "hot_beta", "hot_gamma"] {
        assert!(
            o.text.lines().any(|l| l == format!("workload-symbol {f}")),
            "the workload ELF in dom0 has {f}:\n{}",
            o.text
        );
    }
}

fn check_domu_rip(o: &ProbeOutput) {
    assert_eq!(o.status, 0, "{}:\n{}", o.name, o.text);
    // "sample vcpu=V rip=HEX fn=NAME" lines: 6 per vCPU.
    let samples: Vec<(u32, &str)> = o
        .text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("sample vcpu=")?;
            let (v, rest) = rest.split_once(' ')?;
            Some((v.parse().ok()?, rest.rsplit_once("fn=")?.1))
        })
        .collect();
    assert_eq!(samples.len(), 12, "xenctx samples:\n{}", o.text);
    // The two workload threads keep both vCPUs in hot_* nearly all the time; the bounds
    // leave room for the workload's kernel part and for a vCPU caught in the guest kernel.
    for vcpu in [0, 1] {
        let hot = samples
            .iter()
            .filter(|(v, f)| *v == vcpu && f.starts_with("hot_"))
            .count();
        assert!(
            hot >= 3,
            "vCPU {vcpu}: only {hot} of 6 rips in hot_alpha/beta/gamma:\n{}",
            o.text
        );
    }
}

fn check_detect(o: &ProbeOutput) {
    assert_eq!(o.status, 0, "{}:\n{}", o.name, o.text);
    assert!(
        o.text.contains("dom0: yes"),
        "hvprof detect in dom0 says it is dom0:\n{}",
        o.text
    );
}

fn check_vms(o: &ProbeOutput) {
    // Whatever `hvprof vms` prints today: that it ran in dom0 (not "command not found" (127),
    // not killed by a signal (128+N)).
    assert!(
        o.status < 126,
        "{}: status {}:\n{}",
        o.name,
        o.status,
        o.text
    );
    assert!(!o.text.trim().is_empty(), "{} printed nothing", o.name);
}

// ---- The Xen dom0 backend (src/xen): vms, stat, record --domain, in the same boot. ----

/// `hvprof vms` in dom0 lists the domU by name and domid with its 2 vCPUs, each placed on a
/// pCPU by the hypervisor.
fn check_xen_vms(o: &ProbeOutput) {
    assert_eq!(o.status, 0, "{}:\n{}", o.name, o.text);
    let head = o
        .text
        .lines()
        .find(|l| l.starts_with("Xen domain hvprof-domu (domain "))
        .unwrap_or_else(|| panic!("hvprof vms lists the domU:\n{}", o.text));
    assert!(head.contains("2 vCPUs"), "{head}");
    let placed = o
        .text
        .lines()
        .skip_while(|l| !l.starts_with("Xen domain hvprof-domu"))
        .skip(1)
        .take_while(|l| l.starts_with("  vCPU "))
        .filter(|l| l.contains("→ pCPU ") && l.contains("xenstore online"))
        .count();
    assert_eq!(placed, 2, "both domU vCPUs placed:\n{}", o.text);
    assert!(
        o.text.contains("Xen domain Domain-0 (domain 0"),
        "{}",
        o.text
    );
}

/// `hvprof stat --domain` shows the domU's CPU time and runstates; each vCPU's runstate times
/// add up to the traced span (within 5 %), and the sources are named.
fn check_xen_stat(o: &ProbeOutput) {
    assert_eq!(o.status, 0, "{}:\n{}", o.name, o.text);
    let v: serde_json::Value = serde_json::from_str(json_part(&o.text))
        .unwrap_or_else(|e| panic!("stat JSON: {e}:\n{}", o.text));
    let khz = v["tsc_khz"].as_f64().unwrap_or(0.0);
    assert!(khz > 0.0, "TSC rate known: {}", o.text);
    let span_ms = v["trace_span_cycles"].as_f64().unwrap_or(0.0) / khz;
    assert!(span_ms > 1000.0, "a trace of ~3 s: {span_ms} ms");
    let doms = v["domains"].as_array().expect("domains");
    assert_eq!(doms.len(), 1, "--domain keeps one domain:\n{}", o.text);
    let d = &doms[0];
    assert_eq!(d["name"], "hvprof-domu");
    assert!(
        d["cpu_time_ns"].as_u64().unwrap_or(0) > 100_000_000,
        "domU CPU time: {d}"
    );
    let vcpus = d["vcpus"].as_array().expect("vcpus");
    assert_eq!(vcpus.len(), 2, "{d}");
    for vc in vcpus {
        let rs: Vec<f64> = vc["runstate_ns"]
            .as_array()
            .expect("runstate_ns")
            .iter()
            .map(|x| x.as_f64().unwrap_or(0.0) / 1e6)
            .collect();
        let sum: f64 = rs.iter().sum();
        assert!(rs[0] > 0.0, "the busy vCPU ran: {vc}");
        assert!(
            (sum - span_ms).abs() <= 0.05 * span_ms,
            "runstates {rs:?} add up to the span {span_ms:.0} ms"
        );
    }
    let sources = v["sources"].to_string();
    assert!(sources.contains("TRC_SCHED_RUNSTATE_CHANGE"), "{sources}");
    assert!(sources.contains("XEN_DOMCTL_getvcpuinfo"), "{sources}");
}

/// `hvprof record --domain NAME` names the workload's hot functions from the guest symbol
/// files (System.map + the workload ELF) with the workload's shares (60/30/10 ± 5 points of
/// the three), says what the samples are and what they cost, and keeps that cost under its
/// bounds: reads ≤ --max-cost, the guest's measured pause ≤ 2 % of a vCPU's time.
fn check_xen_record(o: &ProbeOutput) {
    assert_eq!(o.status, 0, "{}:\n{}", o.name, o.text);
    let v: serde_json::Value = serde_json::from_str(json_part(&o.text))
        .unwrap_or_else(|e| panic!("record JSON: {e}:\n{}", o.text));
    let vm = v["vms"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == "hvprof-domu"))
        .unwrap_or_else(|| panic!("the domU in the profile:\n{}", o.text));
    assert_eq!(vm["id"]["kind"], "xen-domain", "{}", vm["id"]);
    let samples = |name: &str| -> f64 {
        vm["top_symbols"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["symbol"]["name"] == name && s["class"] == "guest-user")
            .map(|s| s["samples"].as_f64().unwrap_or(0.0))
            .sum()
    };
    let (a, b, c) = (
        samples("hot_alpha"),
        samples("hot_beta"),
        samples("hot_gamma"),
    );
    let total = a + b + c;
    assert!(
        total >= 200.0,
        "enough workload samples: {a} {b} {c}:\n{}",
        o.text
    );
    for (name, got, want) in [
        ("hot_alpha", a, 60.0),
        ("hot_beta", b, 30.0),
        ("hot_gamma", c, 10.0),
    ] {
        let pct = got * 100.0 / total;
        assert!(
            (pct - want).abs() <= 5.0,
            "{name}: {pct:.1}% (want {want} ± 5)"
        );
    }
    let notes = v["notes"].to_string();
    assert!(
        notes.contains("not PMU samples"),
        "the report says what the samples are: {notes}"
    );
    let cost = o
        .text
        .lines()
        .find_map(|l| l.split("reads took ").nth(1))
        .and_then(|r| r.split(" %").next())
        .and_then(|x| x.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("the measured cost on stderr:\n{}", o.text));
    // The rate is lowered to keep the reads within --max-cost 25 (the first tick runs at the
    // asked rate before a read has been timed).
    assert!(
        cost <= 26.0,
        "reads took {cost} % of a vCPU's time (bound 25 %)"
    );
    // What the guest actually lost: its vCPUs' pause (runstate offline, xentrace), stated
    // bound 2 % of a vCPU's time.
    let paused = notes
        .split("the most paused vCPU lost ")
        .nth(1)
        .and_then(|r| r.split(" %").next())
        .and_then(|x| x.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("the measured pause in the notes: {notes}"));
    assert!(
        paused <= 2.0,
        "the domU's vCPUs were paused {paused} % of their time (bound 2 %)"
    );
}

/// The JSON document in a probe's output (stderr lines are interleaved before it).
fn json_part(text: &str) -> &str {
    let start = text.find("\n{").map_or(0, |i| i + 1);
    let start = if text.starts_with('{') { 0 } else { start };
    let end = text.rfind('}').map_or(text.len(), |i| i + 1);
    &text[start..end.max(start)]
}

/// The probes run in one boot, in order.
fn probes() -> Vec<Probe> {
    vec![
        Probe {
            name: "xl",
            cmd: "xl list && xl vcpu-list && cat /proc/xen/capabilities && \
                  echo DOMU $DOMU_NAME $DOMU_ID $DOMU_VCPUS $DOMU_KALLSYMS",
            check: check_xl,
        },
        Probe {
            name: "kallsyms",
            // dom0 is minbase: no binutils; the symbol names are in the ELF's .strtab.
            cmd: "grep -m1 ' T _text$' \"$DOMU_KALLSYMS\" && \
                  for f in hot_alpha hot_beta hot_gamma; do \
                  grep -qa \"$f\" \"$DOMU_WORKLOAD\" && echo \"workload-symbol $f\"; done",
            check: check_kallsyms,
        },
        Probe {
            name: "domu-rip",
            // The domU's vCPUs run the workload: vCPU registers (xenctx, XEN_DOMCTL_getvcpucontext)
            // sampled from dom0, the rip mapped to the hot functions by their address ranges.
            cmd: "declare -A lo hi\n\
                  while read -r a s _ n; do lo[$n]=$((16#$a)); hi[$n]=$((16#$a + 16#$s)); \
                  done < \"$DOMU_WORKLOAD_SYMS\"\n\
                  for i in $(seq 0 11); do v=$((i % 2)); \
                  rip=$(xenctx \"$DOMU_ID\" $v | awk '$1 == \"rip:\" { print $2; exit }'); \
                  r=$((16#${rip:-0})); f=other; \
                  for n in \"${!lo[@]}\"; do \
                  if [ $r -ge ${lo[$n]} ] && [ $r -lt ${hi[$n]} ]; then f=$n; fi; done; \
                  echo \"sample vcpu=$v rip=$rip fn=$f\"; done",
            check: check_domu_rip,
        },
        Probe {
            name: "hvprof-detect",
            cmd: "hvprof detect",
            check: check_detect,
        },
        Probe {
            name: "hvprof-vms",
            cmd: "hvprof vms",
            check: check_vms,
        },
        Probe {
            name: "xen-vms",
            cmd: "hvprof vms",
            check: check_xen_vms,
        },
        Probe {
            name: "xen-stat",
            cmd: "hvprof stat --domain \"$DOMU_NAME\" -d 3 --format json",
            check: check_xen_stat,
        },
        Probe {
            name: "xen-record",
            cmd: "hvprof record --domain \"$DOMU_NAME\" -d 40 -F 100 --max-cost 25 --format json \
                  --guest-kallsyms \"$DOMU_ID=$DOMU_KALLSYMS\" \
                  --guest-kallsyms \"$DOMU_ID=$DOMU_WORKLOAD\"",
            check: check_xen_record,
        },
    ]
}

#[test]
fn xen_dom0_runs_commands_with_a_pv_domu_up() {
    if !nix::unistd::geteuid().is_root() && skip("not root") {
        return;
    }
    for (cmd, pkg) in [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("debootstrap", "debootstrap"),
    ] {
        if !have(cmd)
            && skip(&format!(
                "{cmd} is not installed (guest-image/ci-deps.sh: {pkg})"
            ))
        {
            return;
        }
    }
    let probes = probes();
    let outs = run_in_dom0(&probes);
    for (p, o) in probes.iter().zip(&outs) {
        eprintln!("--- probe {} (status {}) ---\n{}", o.name, o.status, o.text);
        (p.check)(o);
    }
}

#[test]
fn probe_outputs_split_by_marker() {
    let probes = [
        Probe {
            name: "a",
            cmd: "echo 1",
            check: |_| {},
        },
        Probe {
            name: "b",
            cmd: "false",
            check: |_| {},
        },
    ];
    // What bash prints for script(&probes), with a stray line before the first marker.
    let stdout = format!("noise\n\n{BEGIN} a\n1\n\n{END} a 0\n\n{BEGIN} b\n\n{END} b 1\n");
    assert!(script(&probes).contains("( echo 1\n)"));
    let outs = split(&stdout);
    assert_eq!(outs.len(), 2);
    assert_eq!(
        (outs[0].name.as_str(), outs[0].text.as_str(), outs[0].status),
        ("a", "1", 0)
    );
    assert_eq!(
        (outs[1].name.as_str(), outs[1].text.as_str(), outs[1].status),
        ("b", "", 1)
    );
    assert_eq!(
        xl_list_row(
            "hvprof-domu   1   256     2     r-----      41.8",
            "hvprof-domu"
        ),
        Some(("hvprof-domu", 1, 256, 2))
    );
}

#[test]
fn xl_check_reads_the_domu_vcpus_from_vcpu_list_only() {
    // Measured dom0 output (xl list, xl vcpu-list, /proc/xen/capabilities, the env line).
    let text = "\
Name                                        ID   Mem VCPUs\tState\tTime(s)
Domain-0                                     0  1024     2     r-----     214.7
hvprof-domu                                  1   256     2     r-----     167.6
Name                                ID  VCPU   CPU State   Time(s) Affinity (Hard / Soft)
Domain-0                             0     0    0   -b-     117.3  all / all
Domain-0                             0     1    1   r--      99.4  all / all
hvprof-domu                          1     0    0   r--      89.5  all / all
hvprof-domu                          1     1    0   r--      81.3  all / all
control_d
DOMU hvprof-domu 1 2 /xen-test/domu-System.map";
    let ok = ProbeOutput {
        name: "xl".into(),
        text: text.into(),
        status: 0,
    };
    check_xl(&ok);
    // vCPU 1's row missing: the check fails.
    let vcpu1 = "hvprof-domu                          1     1    0   r--      81.3  all / all\n";
    assert!(text.contains(vcpu1));
    let one_vcpu = ProbeOutput {
        text: text.replace(vcpu1, ""),
        ..ok
    };
    assert!(std::panic::catch_unwind(|| check_xl(&one_vcpu)).is_err());
}

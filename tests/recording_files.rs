//! Recordings that are corrupt, cut short or hostile: a clear error or a partial report, never
//! a panic or an overflow.

use std::io::Write;

use hvprof::recording::{replay, FORMAT_NAME, FORMAT_VERSION};

fn header() -> String {
    format!(
        r#"{{"format":"{FORMAT_NAME}","version":{FORMAT_VERSION},"meta":{{"event":"cpu-clock","rate":{{"frequency":1000}},"period_is_ns":true,"duration_ns":0,"mode":"threads","host":"h","kernel":"k","start_unix_ns":0}},"vms":[{{"id":{{"kind":"vmm","id":10}},"name":"vm","vcpus":[{{"index":0,"tid":11}}],"threads":{{"11":{{"tid":11,"name":"vcpu0","vcpu":0}}}}}}]}}"#
    )
}

fn sample(period: u64) -> String {
    format!(
        r#"{{"t":"sample","sample":{{"ip":4096,"pid":10,"tid":11,"time_ns":5,"cpu":0,"period":{period},"cpumode":"guest-user","exact_ip":false}},"class":"guest-user","symbol":{{"name":"f","dso":"[guest.user]","addr":null}},"landing":false}}"#
    )
}

fn write(lines: &[String], terminated: bool) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    let text = lines.join("\n");
    f.write_all(text.as_bytes()).unwrap();
    if terminated {
        f.write_all(b"\n").unwrap();
    }
    f
}

#[test]
fn huge_values_saturate_instead_of_overflowing() {
    let f = write(
        &[
            header(),
            sample(u64::MAX),
            sample(u64::MAX),
            r#"{"t":"lost","tid":11,"n":18446744073709551615}"#.into(),
            r#"{"t":"lost","tid":11,"n":18446744073709551615}"#.into(),
            r#"{"t":"lost","tid":-1,"n":18446744073709551615}"#.into(),
            r#"{"t":"end","duration_ns":1000,"hidden":null}"#.into(),
        ],
        true,
    );
    let r = replay(f.path(), Vec::new()).expect("replays");
    assert!(r.complete);
    let p = r.agg.snapshot(r.header.meta.clone(), r.hidden, 10);
    assert_eq!(p.vms[0].vcpus[0].samples, 2);
    assert_eq!(p.vms[0].vcpus[0].period, u64::MAX);
    assert_eq!(p.total_lost, u64::MAX);
    assert!(p
        .notes
        .iter()
        .any(|n| n.contains("per-CPU ring buffers lost")));
}

#[test]
fn cut_files_report_up_to_the_cut_and_bad_files_name_the_line() {
    let mut cut = sample(1_000_000);
    cut.truncate(cut.len() / 2);
    let f = write(&[header(), sample(1_000_000), cut], false);
    let r = replay(f.path(), Vec::new()).expect("a file cut mid-line still replays");
    assert!(!r.complete);
    let p = r.agg.snapshot(r.header.meta.clone(), r.hidden, 10);
    assert_eq!(p.total_samples, 1);
    assert!(p
        .notes
        .iter()
        .any(|n| n.contains("ends without its end marker")));

    let f = write(
        &[header(), "{\"t\":\"sample\",\"oops\":1}".into(), sample(1)],
        true,
    );
    let e = replay(f.path(), Vec::new()).unwrap_err().to_string();
    assert!(e.contains("is unusable at line 2"), "{e}");

    let bad_version = header().replace(&format!("\"version\":{FORMAT_VERSION}"), "\"version\":99");
    let f = write(&[bad_version], true);
    let e = replay(f.path(), Vec::new()).unwrap_err().to_string();
    assert!(e.contains("version 99 is not supported"), "{e}");

    let f = write(&[], false);
    assert!(replay(f.path(), Vec::new())
        .unwrap_err()
        .to_string()
        .contains("empty file"));

    let long = format!("{}{}", header(), " ".repeat(2 << 20));
    let f = write(&[long], true);
    assert!(replay(f.path(), Vec::new())
        .unwrap_err()
        .to_string()
        .contains("longer than"));
}

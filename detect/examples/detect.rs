//! Run detection from the command line until `hvprof detect` exists in the main CLI.
//!
//! `cargo run -p hvprof-detect --example detect -- [--root DIR] [--dmesg FILE] [--json]
//! [--dump-cpuid]`; `--dump-cpuid` prints this CPU's CPUID in the `cpuid.txt` format, for
//! capturing a tree.

use hvprof_detect::{detect, render_text, CpuidDump, Source};

fn main() {
    let mut src = Source::live();
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--root" => src = Source::tree(args.next().unwrap_or_default()),
            "--dmesg" => src = src.with_dmesg(args.next().unwrap_or_default()),
            "--json" => json = true,
            "--dump-cpuid" => {
                match CpuidDump::capture_live() {
                    Some(d) => print!("{}", d.to_text()),
                    None => eprintln!("CPUID not available on this architecture"),
                }
                return;
            }
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let d = detect(&src);
    if json {
        match serde_json::to_string_pretty(&d) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("serializing: {e}"),
        }
    } else {
        print!("{}", render_text(&d));
    }
}

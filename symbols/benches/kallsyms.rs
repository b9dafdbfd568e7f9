//! Times `Kallsyms::load("/proc/kallsyms")`, parsing alone, and 1M lookups.
//!
//! Run with `cargo bench -p hvprof-symbols --bench kallsyms`. Prints figures; asserts nothing.

use std::hint::black_box;
use std::time::{Duration, Instant};

use hvprof_symbols::Kallsyms;

fn best_of<T>(n: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..n {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed());
        out = Some(v);
    }
    (best, out.expect("n > 0"))
}

fn main() {
    let path = std::env::var("KALLSYMS").unwrap_or_else(|_| "/proc/kallsyms".into());
    let (load, k) = best_of(5, || Kallsyms::load(&path));
    let k = match k {
        Ok(k) => k,
        Err(e) => {
            println!("kallsyms bench skipped: {e}");
            return;
        }
    };
    let text = std::fs::read_to_string(&path).expect("readable: it just loaded");
    let (read, _) = best_of(5, || std::fs::read_to_string(&path).map(|s| s.len()));
    let (parse, _) = best_of(5, || Kallsyms::parse(&text).map(|k| k.len()));
    println!(
        "{path}: {} lines, {} text symbols, {} bytes",
        text.lines().count(),
        k.len(),
        text.len()
    );
    println!("  load (read + parse), best of 5: {load:?}");
    println!("  read only, best of 5:           {read:?}");
    println!("  parse only, best of 5:          {parse:?}");

    // Random addresses spanning the table (mostly misses: the gap between kernel text and the
    // module area is huge), then random addresses a few bytes into random symbols (all hits).
    let lo = k.iter().next().map_or(0, |s| s.addr);
    let hi = k.iter().last().map_or(0, |s| s.addr);
    let span = (hi - lo).max(1);
    let starts: Vec<u64> = k.iter().map(|s| s.addr).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let spread: Vec<u64> = (0..1_000_000).map(|_| lo + rand() % span).collect();
    let inside: Vec<u64> = (0..1_000_000)
        .map(|_| starts[(rand() % starts.len() as u64) as usize] + rand() % 4)
        .collect();
    for (what, addrs) in [
        ("spread over the table", &spread),
        ("inside symbols", &inside),
    ] {
        let t = Instant::now();
        let mut hits = 0usize;
        for &a in addrs {
            hits += usize::from(black_box(k.lookup(black_box(a))).is_some());
        }
        let el = t.elapsed();
        println!(
            "  1M random lookups {what}: {el:?} ({:.1} ns/lookup, {hits} hits)",
            el.as_nanos() as f64 / addrs.len() as f64
        );
    }
}

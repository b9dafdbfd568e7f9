//! DWARF unwinding of a real process sampled through hvprof's own perf layer, as `perf record
//! --call-graph dwarf` does: `PERF_SAMPLE_REGS_USER` (bp, sp, ip) and `PERF_SAMPLE_STACK_USER`
//! (8 KiB from sp), unwound with [`Unwinder`] over the process's `/proc/PID/maps` and the ELF
//! files' `.eh_frame`, then symbolized with [`Symbolizer`].
//!
//! The fixture (`fixtures/unwind_chain.c`) is built with `-O2 -fomit-frame-pointer
//! -fasynchronous-unwind-tables`: its hot `leaf` is reached through `main → outer → middle →
//! leaf` on the main thread and `worker → outer → middle → leaf` on a second one, so a
//! frame-pointer walk cannot find the chain and only DWARF can. Both threads' stacks continue
//! into libc (PIE executable + shared library): `__libc_start_call_main` then
//! `__libc_start_main`, and `start_thread` then `clone3`. A third thread lives in system calls
//! as a VMM's vCPU threads do (`io_worker → io_outer → io_middle → ioctl`): its samples start in
//! libc's `ioctl` and must unwind out of it.
//!
//! Needs gcc and perf_event_open on a child process with kernel-mode samples (root, or
//! `perf_event_paranoid` ≤ 1); skips with the reason otherwise, and fails under `CI=true`.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hvprof_perf::abi::{self, AttrBuilder};
use hvprof_perf::record::{Record, RecordDecoder};
use hvprof_perf::{PerfFd, RingBuffer, Target};
use hvprof_symbols::{MapEntry, ProcMaps, Symbolized, Symbolizer, Unwinder, UserRegs};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/unwind_chain.c");
/// Bytes of user stack each sample copies (perf's default for `--call-graph dwarf`).
const STACK_BYTES: u32 = 8192;
/// Samples wanted in the hot function of each thread before the sampling stops (CPU time, not
/// wall time: on a busy machine it just takes longer, up to `SAMPLING_LIMIT`).
const HOT_SAMPLES_WANTED: usize = 150;
const SAMPLING_LIMIT: Duration = Duration::from_secs(40);
const MAX_FRAMES: usize = 128;

/// Kills the fixture process when the test ends, passing or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One decoded sample: thread, registers and a copy of its user stack.
struct UserSample {
    tid: i32,
    regs: UserRegs,
    stack: Vec<u8>,
}

/// Compiles the fixture into `dir` with `extra` flags; `Err` with gcc's complaint (or its
/// absence).
fn build_fixture(dir: &Path, extra: &[&str]) -> Result<PathBuf, String> {
    let exe = dir.join("unwind_chain");
    let out = Command::new("gcc")
        .args([
            "-O2",
            "-fomit-frame-pointer",
            "-fasynchronous-unwind-tables",
            "-pthread",
        ])
        .args(extra)
        .arg("-o")
        .arg(&exe)
        .arg(FIXTURE)
        .output()
        .map_err(|e| format!("running gcc: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "gcc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(exe)
}

/// A perf event as `perf record --call-graph dwarf -e cpu-clock` opens it, on one thread.
/// Samples taken in the kernel (the io thread's system calls) carry the user registers and
/// stack of the moment the thread entered the kernel.
fn dwarf_attr() -> hvprof_perf::abi::perf_event_attr {
    AttrBuilder::new(abi::TYPE_SOFTWARE, abi::sw::CPU_CLOCK)
        .frequency(1000)
        .sample_type(
            abi::SAMPLE_IP
                | abi::SAMPLE_TID
                | abi::SAMPLE_TIME
                | abi::SAMPLE_REGS_USER
                | abi::SAMPLE_STACK_USER,
        )
        .sample_regs_user(UserRegs::PERF_REGS_MASK)
        .sample_stack_user(STACK_BYTES)
        .exclude_hv(true)
        .disabled(true)
        .build()
}

/// Decodes the user samples of `bytes`; registers come in mask bit order: bp, sp, ip.
fn decode_samples(decoder: &RecordDecoder, bytes: &[u8], out: &mut Vec<UserSample>) {
    decoder.decode(bytes, |r| {
        let Record::Sample(s) = r else { return };
        let (Some(regs), Some(stack)) = (s.regs_user, s.stack_user) else {
            return;
        };
        let (Some(bp), Some(sp), Some(ip)) = (regs.get(0), regs.get(1), regs.get(2)) else {
            return; // abi NONE: no user context (a kernel-only moment)
        };
        out.push(UserSample {
            tid: s.sample.tid,
            regs: UserRegs { ip, sp, bp },
            stack: stack.to_vec(),
        });
    });
}

/// The walk a profiler without DWARF does: `[bp]` is the caller's bp, `[bp + 8]` the return
/// address, for as long as bp rises inside the copied stack.
fn frame_pointer_walk(regs: UserRegs, stack: &[u8], max_frames: usize) -> Vec<u64> {
    let read = |addr: u64| -> Option<u64> {
        let at = usize::try_from(addr.checked_sub(regs.sp)?).ok()?;
        Some(u64::from_le_bytes(
            stack.get(at..at.checked_add(8)?)?.try_into().ok()?,
        ))
    };
    let mut out = vec![regs.ip];
    let (mut bp, mut floor) = (regs.bp, regs.sp);
    while out.len() < max_frames && bp >= floor {
        let (Some(next_bp), Some(ra)) = (read(bp), bp.checked_add(8).and_then(read)) else {
            break;
        };
        if ra == 0 {
            break;
        }
        out.push(ra);
        floor = bp + 16;
        bp = next_bp;
    }
    out
}

/// The function name of each frame (`?` when unknown), and the mapping it lies in.
fn describe<'m>(
    symbolizer: &mut Symbolizer,
    maps: &'m ProcMaps,
    frames: &[u64],
) -> Vec<(String, Option<&'m MapEntry>)> {
    frames
        .iter()
        .enumerate()
        .map(|(i, &addr)| {
            // A return address belongs to the call before it.
            let lookup = if i == 0 { addr } else { addr.wrapping_sub(1) };
            let name = match symbolizer.symbolize_user(maps, lookup) {
                Symbolized::Sym(s) => s.name,
                Symbolized::Unknown(_) => "?".to_owned(),
            };
            (name, maps.find(lookup))
        })
        .collect()
}

fn file_name(m: Option<&MapEntry>) -> String {
    m.and_then(MapEntry::file_path)
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn names<'a>(frames: &'a [(String, Option<&MapEntry>)]) -> Vec<&'a str> {
    frames.iter().map(|(n, _)| n.as_str()).collect()
}

/// A PIE (the distribution default): image base 0, file offsets equal to SVMAs.
#[test]
fn dwarf_unwinds_a_pie_without_frame_pointers() {
    check_dwarf_unwinding(&["-pie"]);
}

/// A non-PIE executable linked at 0x10000000: image base ≠ 0 and file offset ≠ SVMA
/// (STYLE.md §5), so a wrong module base would misplace every CFI row.
#[test]
fn dwarf_unwinds_a_non_pie_linked_high_without_frame_pointers() {
    check_dwarf_unwinding(&["-no-pie", "-Wl,-Ttext-segment=0x10000000"]);
}

/// A thread of the fixture, and the stack its samples must unwind to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// `main → outer → middle → leaf`, under libc's `__libc_start_call_main`.
    Main,
    /// `worker → outer → middle → leaf`, under libc's `start_thread` and `clone3`.
    Worker,
    /// `io_worker → io_outer → io_middle → ioctl` (libc), under `start_thread` and `clone3`.
    Io,
}

impl Role {
    /// The function whose samples are checked.
    fn hot(self) -> &'static str {
        match self {
            Role::Main | Role::Worker => "leaf",
            Role::Io => "ioctl",
        }
    }

    /// Whether the unwound, described stack (leaf first) is this thread's whole stack.
    fn stack_ok(self, d: &[(String, Option<&MapEntry>)]) -> bool {
        let n = names(d);
        let in_libc = |i: usize| d.get(i).is_some_and(|f| file_name(f.1) == "libc.so.6");
        match self {
            // main's caller is libc's __libc_start_call_main (not in libc's .dynsym), called by
            // __libc_start_main (exported), called by the executable's _start.
            Role::Main => {
                n.starts_with(&["leaf", "middle", "outer", "main"])
                    && in_libc(4)
                    && n.get(5) == Some(&"__libc_start_main")
                    && n.get(6) == Some(&"_start")
            }
            // worker's caller is libc's start_thread, called by clone3 (both local to libc).
            Role::Worker => {
                n.starts_with(&["leaf", "middle", "outer", "worker"]) && in_libc(4) && in_libc(5)
            }
            Role::Io => {
                n.starts_with(&["ioctl", "io_middle", "io_outer", "io_worker"])
                    && in_libc(0)
                    && in_libc(4)
                    && in_libc(5)
            }
        }
    }
}

/// Builds the fixture with `extra` flags, samples its three threads with DWARF call-graph data
/// until each has enough samples in its hot function, and checks their unwound stacks.
fn check_dwarf_unwinding(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let exe = match build_fixture(dir.path(), extra) {
        Ok(exe) => exe,
        Err(why) => skip!("cannot build the C fixture: {why}"),
    };
    let mut child = KillOnDrop(
        Command::new(&exe)
            .arg("60")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let tids: Vec<i32> = line
        .strip_prefix("ready ")
        .map(|t| {
            t.split_whitespace()
                .filter_map(|t| t.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let [worker, io] = tids[..] else {
        panic!("fixture said {line:?}");
    };
    let roles: HashMap<i32, Role> = [
        (pid as i32, Role::Main),
        (worker, Role::Worker),
        (io, Role::Io),
    ]
    .into();
    // All threads run and libc is mapped: the maps are final.
    let maps = ProcMaps::read_from(Path::new("/proc"), pid).unwrap();

    let attr = dwarf_attr();
    let mut rings = Vec::new();
    for &tid in roles.keys() {
        let fd = match PerfFd::open(&attr, Target::Thread(tid), "cpu-clock") {
            Ok(fd) => fd,
            Err(e) => skip!("perf_event_open refused: {e} (perf_event_paranoid, root)"),
        };
        let ring = RingBuffer::map(&fd, 256).unwrap();
        rings.push((fd, ring));
    }
    for (fd, _) in &rings {
        fd.enable().unwrap();
    }

    let decoder = RecordDecoder::from_attr(&attr);
    let mut symbolizer = Symbolizer::new().with_source_locations(false);
    let mut samples = Vec::new();
    let mut hot_samples: HashMap<i32, usize> = HashMap::new();
    let started = Instant::now();
    let mut bytes = Vec::new();
    while started.elapsed() < SAMPLING_LIMIT
        && roles
            .keys()
            .any(|t| hot_samples.get(t).copied().unwrap_or(0) < HOT_SAMPLES_WANTED)
    {
        std::thread::sleep(Duration::from_millis(20));
        for (_, ring) in &mut rings {
            bytes.clear();
            ring.drain_into(&mut bytes).unwrap();
            let first = samples.len();
            decode_samples(&decoder, &bytes, &mut samples);
            for s in &samples[first..] {
                let Some(role) = roles.get(&s.tid) else {
                    continue;
                };
                if matches!(symbolizer.symbolize_user(&maps, s.regs.ip),
                            Symbolized::Sym(ref i) if i.name == role.hot())
                {
                    *hot_samples.entry(s.tid).or_default() += 1;
                }
            }
        }
    }
    for (fd, _) in &rings {
        fd.disable().unwrap();
    }
    drop(child);
    eprintln!(
        "{} user samples in {:?}; in the hot function: {hot_samples:?}",
        samples.len(),
        started.elapsed()
    );

    // Per thread: samples in the hot function, and how many of them unwound to the whole stack.
    let mut unwinder = Unwinder::new();
    let mut frames = Vec::new();
    let mut in_hot: HashMap<i32, usize> = HashMap::new();
    let mut whole: HashMap<i32, usize> = HashMap::new();
    let mut shown = 0;
    let unwinding = Instant::now();
    for s in &samples {
        let Some(&role) = roles.get(&s.tid) else {
            continue;
        };
        unwinder.unwind(pid as i32, &maps, s.regs, &s.stack, MAX_FRAMES, &mut frames);
        assert!(frames.len() <= MAX_FRAMES && frames[0] == s.regs.ip);
        let described = describe(&mut symbolizer, &maps, &frames);
        if described[0].0 != role.hot() {
            continue;
        }
        *in_hot.entry(s.tid).or_default() += 1;
        if role.stack_ok(&described) {
            *whole.entry(s.tid).or_default() += 1;
            if role != Role::Io {
                // Frame pointers alone cannot find this chain: it is DWARF's work.
                let fp = frame_pointer_walk(s.regs, &s.stack, MAX_FRAMES);
                let fp_described = describe(&mut symbolizer, &maps, &fp);
                assert!(
                    !names(&fp_described).starts_with(&["leaf", "middle", "outer"]),
                    "a frame-pointer walk found the chain too: {:?}",
                    names(&fp_described)
                );
            }
        } else if shown < 5 {
            shown += 1;
            eprintln!(
                "{role:?} not unwound: {:?}",
                described
                    .iter()
                    .map(|(n, m)| format!("{n} ({})", file_name(*m)))
                    .collect::<Vec<_>>()
            );
        }
    }
    eprintln!(
        "unwound and symbolized {} samples in {:?}",
        samples.len(),
        unwinding.elapsed()
    );
    for (tid, role) in &roles {
        let total = in_hot.get(tid).copied().unwrap_or(0);
        let good = whole.get(tid).copied().unwrap_or(0);
        eprintln!(
            "{role:?}: {good}/{total} samples in {} unwound whole",
            role.hot()
        );
        assert!(
            total >= 50,
            "{role:?}: only {total} samples in {}",
            role.hot()
        );
        assert!(
            good * 100 >= total * 80,
            "{role:?}: only {good} of {total} samples in {} unwound whole",
            role.hot()
        );
    }
    // The executable and libc were each opened once; one process's module set.
    assert!(unwinder.cached_files() >= 2);
    assert_eq!(unwinder.cached_processes(), 1);
}

//! Recordings: what `hvprof record -o FILE` writes and `hvprof report -i FILE` reads.
//!
//! Format (documented in `docs/formats.md`): JSON Lines. Line 1 is a [`Header`]; every further
//! line is one [`Entry`] — an attributed sample, a loss, a throttle, a thread's on-CPU time, a
//! note — and the last is [`Entry::End`]. Host symbols are resolved at record time (process
//! maps vanish with the VM), raw IPs and cpumodes are kept so guest symbols can be resolved
//! again at report time. A file cut short (no `End`) still reports what it holds, with a note.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use hvprof_symbols::Kallsyms;

use crate::aggregate::Aggregator;
use crate::attribute::{guest_symbol, Attributed};
use crate::error::{Error, Result};
use crate::model::{Address, GuestMachine, Machines, VmId};
use crate::report::Meta;

/// The value of [`Header::format`].
pub const FORMAT_NAME: &str = "hvprof-recording";
/// The version this build writes and reads (2: the header carries the machines).
pub const FORMAT_VERSION: u32 = 2;

/// First line of a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Collection parameters (`duration_ns` is 0 here; the real one is in [`Entry::End`]).
    pub meta: Meta,
    /// The VMs profiled, as guest machines: vCPUs and threads (guest symbols are not stored:
    /// give them again to `report`).
    pub vms: Vec<GuestMachine>,
}

/// One line after the header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case")]
pub enum Entry {
    /// An attributed sample.
    Sample(Attributed),
    /// `n` records lost in thread `tid`'s ring.
    Lost {
        /// Ring owner thread (-1: a per-CPU ring).
        tid: i32,
        /// Lost records.
        n: u64,
    },
    /// A throttle event in thread `tid`'s ring.
    Throttle {
        /// Ring owner thread.
        tid: i32,
    },
    /// Thread `tid` ran `ns` nanoseconds during the collection.
    OnCpu {
        /// Thread.
        tid: i32,
        /// Time on CPU in ns.
        ns: u64,
    },
    /// Active mode's guest view of VM `vm`.
    GuestView {
        /// VMM pid.
        vm: i32,
        /// The view.
        view: Box<crate::report::GuestView>,
    },
    /// A note for the report.
    Note {
        /// The text.
        text: String,
    },
    /// End of the recording.
    End {
        /// Collection duration in ns.
        duration_ns: u64,
        /// Whether the host hid guest IPs, and why (None: decided from the data).
        hidden: Option<(bool, String)>,
        /// Why guest IPs may be hidden on the recording host (from detection).
        #[serde(default)]
        hint: Option<String>,
    },
}

/// Writes a recording line by line.
#[derive(Debug)]
pub struct Writer {
    out: BufWriter<File>,
    path: PathBuf,
}

impl Writer {
    /// Creates `path` and writes the header.
    ///
    /// # Errors
    /// [`Error::Write`].
    pub fn create(path: &Path, header: &Header) -> Result<Writer> {
        let f = File::create(path).map_err(|source| Error::Write {
            path: path.into(),
            source,
        })?;
        let mut w = Writer {
            out: BufWriter::new(f),
            path: path.into(),
        };
        w.line(header)?;
        Ok(w)
    }

    /// Appends one entry.
    ///
    /// # Errors
    /// [`Error::Write`].
    pub fn write(&mut self, e: &Entry) -> Result<()> {
        self.line(e)
    }

    fn line<T: Serialize>(&mut self, v: &T) -> Result<()> {
        let werr = |source| Error::Write {
            path: self.path.clone(),
            source,
        };
        serde_json::to_writer(&mut self.out, v).map_err(|e| werr(e.into()))?;
        self.out.write_all(b"\n").map_err(werr)
    }

    /// Flushes the file.
    ///
    /// # Errors
    /// [`Error::Write`].
    pub fn finish(mut self) -> Result<()> {
        self.out.flush().map_err(|source| Error::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// A recording replayed into an [`Aggregator`].
#[derive(Debug)]
pub struct Replay {
    /// The header.
    pub header: Header,
    /// Every entry, aggregated.
    pub agg: Aggregator,
    /// Collection duration in ns (from the end marker; for a cut file, the span of its samples).
    pub duration_ns: u64,
    /// The end marker's hidden-guest-IP decision.
    pub hidden: Option<(bool, String)>,
    /// False when the file ended without its end marker.
    pub complete: bool,
}

/// Longest line accepted, in bytes.
pub const MAX_LINE: u64 = 1 << 20;

/// Reads a recording line by line straight into an [`Aggregator`] (memory stays bounded by
/// the aggregate, not the file). Guest-mode samples are resolved again through
/// `guest_kallsyms` (per VMM pid, or `None` for every VM) when any is given.
///
/// # Errors
/// [`Error::Read`] when the file cannot be opened or read, [`Error::CorruptRecording`] with the
/// line number when a line is longer than [`MAX_LINE`], is not valid JSON of the expected shape,
/// or the header is not an hvprof recording of a supported version. A final line cut off
/// mid-way (a crash while writing) is dropped and the replay marked incomplete.
pub fn replay(path: &Path, guest_kallsyms: Vec<(Option<i32>, Kallsyms)>) -> Result<Replay> {
    let f = File::open(path).map_err(|source| Error::Read {
        path: path.into(),
        source,
    })?;
    let corrupt = |line: usize, reason: String| Error::CorruptRecording {
        path: path.into(),
        line,
        reason,
    };
    let mut r = BufReader::new(f);
    let mut buf = Vec::new();
    // Returns (bytes read, newline-terminated).
    let mut next_line = |buf: &mut Vec<u8>, lineno: usize| -> Result<(usize, bool)> {
        buf.clear();
        let n = std::io::Read::take(&mut r, MAX_LINE)
            .read_until(b'\n', buf)
            .map_err(|source| Error::Read {
                path: path.into(),
                source,
            })?;
        let terminated = buf.last() == Some(&b'\n');
        if !terminated && n as u64 == MAX_LINE {
            return Err(corrupt(
                lineno,
                format!("line longer than {MAX_LINE} bytes"),
            ));
        }
        Ok((n, terminated))
    };
    if next_line(&mut buf, 1)?.0 == 0 {
        return Err(corrupt(1, "empty file".into()));
    }
    let header: Header = serde_json::from_slice(&buf)
        .map_err(|e| corrupt(1, format!("not an hvprof recording header ({e})")))?;
    if header.format != FORMAT_NAME {
        return Err(corrupt(
            1,
            format!("format is '{}', expected '{FORMAT_NAME}'", header.format),
        ));
    }
    if header.version != FORMAT_VERSION {
        return Err(corrupt(
            1,
            format!(
                "version {} is not supported (this hvprof reads {FORMAT_VERSION})",
                header.version
            ),
        ));
    }
    let mut machines = Machines::new();
    for vm in &header.vms {
        machines.add(vm.clone());
    }
    let resolve = !guest_kallsyms.is_empty();
    for (pid, k) in guest_kallsyms {
        machines.set_guest_kernel_symbols(pid.map(VmId::Vmm), Arc::new(k));
    }
    let machines = Arc::new(machines);
    let mut agg = Aggregator::new(Arc::clone(&machines));
    let (mut duration_ns, mut hidden, mut complete) = (0, None, false);
    let (mut first_time, mut last_time) = (None, 0u64);
    let mut lineno = 1;
    loop {
        lineno += 1;
        let (n, terminated) = next_line(&mut buf, lineno)?;
        if n == 0 {
            break;
        }
        let entry: Entry = match serde_json::from_slice(&buf) {
            Ok(e) => e,
            Err(_) if !terminated => break, // the last line, cut mid-way
            Err(e) => return Err(corrupt(lineno, e.to_string())),
        };
        complete = false;
        match entry {
            Entry::Sample(mut a) => {
                first_time.get_or_insert(a.sample.time_ns);
                last_time = last_time.max(a.sample.time_ns);
                if let (true, Address::Guest(ip)) = (resolve, Address::of_sample(&a.sample)) {
                    let vm = machines.owner_of(&a.sample);
                    a.symbol = guest_symbol(&machines, vm, ip, a.sample.cpumode);
                }
                agg.add(&a);
            }
            Entry::Lost { tid, n } => agg.add_lost(tid, n),
            Entry::Throttle { tid } => agg.add_throttle(tid),
            Entry::OnCpu { tid, ns } => agg.set_on_cpu(tid, ns),
            Entry::GuestView { vm, view } => agg.set_guest_view(VmId::Vmm(vm), *view),
            Entry::Note { text } => agg.note(text),
            Entry::End {
                duration_ns: d,
                hidden: h,
                hint,
            } => {
                duration_ns = d;
                hidden = h;
                if let Some(hint) = hint {
                    agg.set_guest_ip_hint(hint);
                }
                complete = true;
            }
        }
    }
    if !complete {
        agg.note("the recording ends without its end marker (hvprof was interrupted while writing); everything up to the cut is reported");
        duration_ns = last_time.saturating_sub(first_time.unwrap_or(last_time));
    }
    Ok(Replay {
        header,
        agg,
        duration_ns,
        hidden,
        complete,
    })
}

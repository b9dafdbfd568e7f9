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

use crate::attribute::Attributed;
use crate::error::{Error, Result};
use crate::report::{Aggregator, Meta, ThreadMeta, VmMeta};

/// The value of [`Header::format`].
pub const FORMAT_NAME: &str = "hvprof-recording";
/// The version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// First line of a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Collection parameters (`duration_ns` is 0 here; the real one is in [`Entry::End`]).
    pub meta: Meta,
    /// VMs profiled.
    pub vms: Vec<VmMeta>,
    /// Known threads: tid and identity.
    pub threads: Vec<(i32, ThreadMeta)>,
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

/// A recording read back.
#[derive(Debug, Clone)]
pub struct Recording {
    /// The header.
    pub header: Header,
    /// Every entry in order (including `End` if present).
    pub entries: Vec<Entry>,
    /// False when the file ended without an `End` entry.
    pub complete: bool,
}

/// Reads a recording. Lines are bounded to 1 MiB each.
///
/// # Errors
/// [`Error::Read`] when the file cannot be opened, [`Error::CorruptRecording`] with the line
/// number when a line is not valid JSON of the expected shape, or the header is not an
/// hvprof recording of a supported version. A final line cut off mid-way (a crash while
/// writing) is dropped and the recording marked incomplete.
pub fn read(path: &Path) -> Result<Recording> {
    let f = File::open(path).map_err(|source| Error::Read {
        path: path.into(),
        source,
    })?;
    let corrupt = |line: usize, reason: String| Error::CorruptRecording {
        path: path.into(),
        line,
        reason,
    };
    let mut lines = Vec::new();
    let mut r = BufReader::new(f);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = std::io::Read::take(&mut r, 1 << 20)
            .read_until(b'\n', &mut buf)
            .map_err(|source| Error::Read {
                path: path.into(),
                source,
            })?;
        if n == 0 {
            break;
        }
        let terminated = buf.last() == Some(&b'\n');
        if !terminated && n == 1 << 20 {
            return Err(corrupt(lines.len() + 1, "line longer than 1 MiB".into()));
        }
        lines.push((buf.clone(), terminated));
    }
    let Some((first, _)) = lines.first() else {
        return Err(corrupt(1, "empty file".into()));
    };
    let header: Header = serde_json::from_slice(first)
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
    let mut entries = Vec::new();
    let count = lines.len();
    for (i, (l, terminated)) in lines.into_iter().enumerate().skip(1) {
        match serde_json::from_slice::<Entry>(&l) {
            Ok(e) => entries.push(e),
            Err(_) if i + 1 == count && !terminated => break,
            Err(e) => return Err(corrupt(i + 1, e.to_string())),
        }
    }
    let complete = matches!(entries.last(), Some(Entry::End { .. }));
    Ok(Recording {
        header,
        entries,
        complete,
    })
}

impl Recording {
    /// Replays the entries into a fresh [`Aggregator`]; returns it with the duration and the
    /// hidden-guest decision of the `End` entry.
    pub fn replay(
        &self,
        mut each_sample: impl FnMut(&mut Attributed),
    ) -> (Aggregator, u64, Option<(bool, String)>) {
        let mut agg = Aggregator::new();
        for vm in &self.header.vms {
            agg.add_vm(vm.clone());
        }
        for (tid, m) in &self.header.threads {
            agg.add_thread(*tid, m.clone());
        }
        let mut duration = 0;
        let mut hidden = None;
        for e in &self.entries {
            match e {
                Entry::Sample(a) => {
                    let mut a = a.clone();
                    each_sample(&mut a);
                    agg.add(&a);
                }
                Entry::Lost { tid, n } => agg.add_lost(*tid, *n),
                Entry::Throttle { tid } => agg.add_throttle(*tid),
                Entry::OnCpu { tid, ns } => agg.set_on_cpu(*tid, *ns),
                Entry::Note { text } => agg.note(text.clone()),
                Entry::GuestView { vm, view } => agg.set_guest_view(*vm, (**view).clone()),
                Entry::End {
                    duration_ns,
                    hidden: h,
                    hint,
                } => {
                    duration = *duration_ns;
                    hidden = h.clone();
                    if let Some(hint) = hint {
                        agg.set_guest_ip_hint(hint.clone());
                    }
                }
            }
        }
        if !self.complete {
            agg.note("the recording ends without its end marker (hvprof was interrupted while writing); everything up to the cut is reported");
            if let Some(last) = self.entries.iter().rev().find_map(|e| match e {
                Entry::Sample(a) => Some(a.sample.time_ns),
                _ => None,
            }) {
                let first = self.entries.iter().find_map(|e| match e {
                    Entry::Sample(a) => Some(a.sample.time_ns),
                    _ => None,
                });
                duration = last.saturating_sub(first.unwrap_or(last));
            }
        }
        (agg, duration, hidden)
    }
}

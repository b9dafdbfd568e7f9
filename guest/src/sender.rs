//! The helper's sending side: frames messages onto a byte stream, batches samples and
//! switches, and splits kallsyms text and symbol tables into frames under the payload limit.
//!
//! Stage: helper state → **wire**. Input: values from the perf streams and /proc; output:
//! frames written with one `write_all` each (so a writer shared with the pong-answering
//! thread never interleaves two frames). IO-generic, so tests run it over a socket pair.
//!
//! ```
//! use hvprof_guest::sender::Sender;
//! use hvprof_proto::{read_message, Limits, Message};
//! let mut s = Sender::new(Vec::new());
//! s.send(&Message::Bye { reason: "done".into() }).unwrap();
//! let bytes = s.into_inner();
//! let m = read_message(&mut &bytes[..], &Limits::default()).unwrap();
//! assert_eq!(m, Some(Message::Bye { reason: "done".into() }));
//! ```

use std::collections::HashSet;
use std::io::{self, Write};

use hvprof_proto::{
    Message, Segment, StackSample, WireSample, WireSwitch, WireSymbol, MAX_CALLCHAIN, MAX_STR,
    STACK_SAMPLE_MIN_LEN,
};

/// Largest kallsyms piece per frame, in bytes (1 MiB).
pub const KALLSYMS_CHUNK: usize = 1 << 20;
/// Target payload size of a symbol-table chunk, in bytes (4 MiB; far under the 16 MiB limit).
pub const SYMTAB_CHUNK_BYTES: usize = 4 << 20;
/// Samples per [`Message::Samples`] frame.
pub const SAMPLE_BATCH: usize = 4096;
/// Switches per [`Message::Switches`] frame.
pub const SWITCH_BATCH: usize = 4096;
/// Samples with callchains per [`Message::StackSamples`] frame (at most ~1.1 MiB of payload
/// with full [`MAX_CALLCHAIN`]-frame chains, far under the 16 MiB limit).
pub const STACK_BATCH: usize = 1024;
const _: () = assert!(STACK_BATCH * (STACK_SAMPLE_MIN_LEN + 8 * MAX_CALLCHAIN) < 2 << 20);

/// Frames messages onto `W`.
#[derive(Debug)]
pub struct Sender<W: Write> {
    w: W,
    buf: Vec<u8>,
    samples: Vec<WireSample>,
    stacks: Vec<StackSample>,
    switches: Vec<WireSwitch>,
    tables: HashSet<Vec<u8>>,
    bytes: u64,
    frames: u64,
}

impl<W: Write> Sender<W> {
    /// A sender writing to `w`.
    pub fn new(w: W) -> Sender<W> {
        Sender {
            w,
            buf: Vec::new(),
            samples: Vec::new(),
            stacks: Vec::new(),
            switches: Vec::new(),
            tables: HashSet::new(),
            bytes: 0,
            frames: 0,
        }
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.w
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Sends one message now.
    ///
    /// # Errors
    /// The writer's error.
    pub fn send(&mut self, m: &Message) -> io::Result<()> {
        self.buf.clear();
        m.encode(&mut self.buf);
        self.w.write_all(&self.buf)?;
        self.bytes += self.buf.len() as u64;
        self.frames += 1;
        Ok(())
    }

    /// Sends kallsyms text in [`KALLSYMS_CHUNK`] pieces, then the end marker.
    ///
    /// # Errors
    /// The writer's error.
    pub fn kallsyms(&mut self, text: &[u8]) -> io::Result<()> {
        for c in text.chunks(KALLSYMS_CHUNK) {
            self.send(&Message::KallsymsChunk(c.to_vec()))?;
        }
        self.send(&Message::KallsymsEnd {
            total: text.len() as u64,
        })
    }

    /// Whether the table `key` was already sent on this connection.
    pub fn has_table(&self, key: &[u8]) -> bool {
        self.tables.contains(key)
    }

    /// Forgets which tables were sent (after a reconnect everything is sent again).
    pub fn reset_tables(&mut self) {
        self.tables.clear();
    }

    /// Sends a symbol table (begin, chunks of about [`SYMTAB_CHUNK_BYTES`], end) once per
    /// key per connection; returns false when it was already sent.
    ///
    /// # Errors
    /// The writer's error.
    pub fn symtab(
        &mut self,
        key: &[u8],
        build_id: &[u8],
        path: &str,
        elf_type: u16,
        segments: &[Segment],
        symbols: &[WireSymbol],
    ) -> io::Result<bool> {
        if !self.tables.insert(key.to_vec()) {
            return Ok(false);
        }
        self.send(&Message::SymtabBegin {
            file_key: key.to_vec(),
            build_id: build_id.to_vec(),
            path: path.to_string(),
            elf_type,
            segments: segments.to_vec(),
            symbol_count: symbols.len().min(u32::MAX as usize) as u32,
        })?;
        let mut chunk = Vec::new();
        let mut size = 0;
        for s in symbols {
            size += 18 + s.name.len().min(MAX_STR);
            chunk.push(s.clone());
            if size >= SYMTAB_CHUNK_BYTES {
                self.send(&Message::SymtabChunk {
                    file_key: key.to_vec(),
                    symbols: std::mem::take(&mut chunk),
                })?;
                size = 0;
            }
        }
        if !chunk.is_empty() {
            self.send(&Message::SymtabChunk {
                file_key: key.to_vec(),
                symbols: chunk,
            })?;
        }
        self.send(&Message::SymtabEnd {
            file_key: key.to_vec(),
        })?;
        Ok(true)
    }

    /// Queues a sample; sends a batch when [`SAMPLE_BATCH`] are queued.
    ///
    /// # Errors
    /// The writer's error.
    pub fn sample(&mut self, s: WireSample) -> io::Result<()> {
        self.samples.push(s);
        if self.samples.len() >= SAMPLE_BATCH {
            self.flush_samples()?;
        }
        Ok(())
    }

    /// Queues a sample with its callchain; sends a batch when [`STACK_BATCH`] are queued.
    ///
    /// # Errors
    /// The writer's error.
    pub fn stack_sample(&mut self, s: StackSample) -> io::Result<()> {
        self.stacks.push(s);
        if self.stacks.len() >= STACK_BATCH {
            self.flush_stacks()?;
        }
        Ok(())
    }

    /// Queues a switch; sends a batch when [`SWITCH_BATCH`] are queued.
    ///
    /// # Errors
    /// The writer's error.
    pub fn switch(&mut self, s: WireSwitch) -> io::Result<()> {
        self.switches.push(s);
        if self.switches.len() >= SWITCH_BATCH {
            self.flush_switches()?;
        }
        Ok(())
    }

    fn flush_samples(&mut self) -> io::Result<()> {
        if !self.samples.is_empty() {
            let v = std::mem::take(&mut self.samples);
            self.send(&Message::Samples(v))?;
        }
        Ok(())
    }

    fn flush_stacks(&mut self) -> io::Result<()> {
        if !self.stacks.is_empty() {
            let v = std::mem::take(&mut self.stacks);
            self.send(&Message::StackSamples(v))?;
        }
        Ok(())
    }

    fn flush_switches(&mut self) -> io::Result<()> {
        if !self.switches.is_empty() {
            let v = std::mem::take(&mut self.switches);
            self.send(&Message::Switches(v))?;
        }
        Ok(())
    }

    /// Sends queued switches, then queued samples (without, then with callchains), and
    /// flushes the writer.
    ///
    /// # Errors
    /// The writer's error.
    pub fn flush(&mut self) -> io::Result<()> {
        self.flush_switches()?;
        self.flush_samples()?;
        self.flush_stacks()?;
        self.w.flush()
    }

    /// Drops queued samples (with or without callchains) and switches (after a write error);
    /// returns how many.
    pub fn discard_queued(&mut self) -> (usize, usize) {
        let r = (self.samples.len() + self.stacks.len(), self.switches.len());
        self.samples.clear();
        self.stacks.clear();
        self.switches.clear();
        r
    }

    /// The writer.
    pub fn writer_mut(&mut self) -> &mut W {
        &mut self.w
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hvprof_proto::{FrameDecoder, Limits};

    #[test]
    fn big_table_is_chunked_under_the_limit_and_sent_once() {
        let syms: Vec<WireSymbol> = (0..300_000u64)
            .map(|i| WireSymbol {
                start: i * 16,
                size: 16,
                name: format!("function_with_a_long_name_{i:08}"),
            })
            .collect();
        let mut s = Sender::new(Vec::new());
        assert!(s.symtab(b"k", b"", "/x", 3, &[], &syms).unwrap());
        assert!(!s.symtab(b"k", b"", "/x", 3, &[], &syms).unwrap());
        let bytes = s.into_inner();
        let mut d = FrameDecoder::new(Limits::default());
        d.push(&bytes);
        let mut n = 0;
        let mut chunks = 0;
        while let Some(m) = d.next_message().unwrap() {
            if let Message::SymtabChunk { symbols, .. } = m {
                n += symbols.len();
                chunks += 1;
            }
        }
        assert_eq!(n, syms.len());
        assert!(chunks >= 3);
    }

    #[test]
    fn kallsyms_chunks() {
        let text = vec![b'a'; KALLSYMS_CHUNK * 2 + 5];
        let mut s = Sender::new(Vec::new());
        s.kallsyms(&text).unwrap();
        assert_eq!(s.frames(), 4);
    }
}

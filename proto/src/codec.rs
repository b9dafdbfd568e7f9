//! Field codecs: how each wire type of `docs/protocol.md` ("Encoding") is written and read.
//!
//! A codec is a type-level name for a wire type (`U32`, `Str`, `Key`, `List`, ...) that
//! implements [`Wire<T>`] for the Rust type `T` it carries: `put` appends the field, `get`
//! reads it back from a [`Dec`] that never reads past the payload, never allocates more than
//! the bytes present and never panics. The message table (`message.rs`) names one codec per
//! field, so encoder and decoder cannot disagree on the layout.

use crate::error::ProtoError;
use crate::limits::{MAX_KEY, MAX_STR};

/// The encoder's output: a frame under construction.
pub(crate) struct Enc<'a>(pub(crate) &'a mut Vec<u8>);

impl Enc<'_> {
    fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
}

/// The decoder's input: the rest of one payload, and what to name in errors.
pub(crate) struct Dec<'a> {
    /// Bytes not yet read.
    b: &'a [u8],
    /// Message name, for errors.
    msg: &'static str,
    /// Longest string accepted, in bytes.
    max_str: usize,
}

impl<'a> Dec<'a> {
    /// A decoder over `payload` of the message named `msg`.
    pub(crate) fn new(payload: &'a [u8], msg: &'static str, max_str: usize) -> Dec<'a> {
        Dec {
            b: payload,
            msg,
            max_str,
        }
    }

    /// An [`ProtoError::Invalid`] naming this message.
    pub(crate) fn invalid(&self, field: &'static str, value: u64) -> ProtoError {
        ProtoError::Invalid {
            msg: self.msg,
            field,
            value,
        }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], ProtoError> {
        if self.b.len() < n {
            return Err(ProtoError::Truncated {
                msg: self.msg,
                field,
                need: n,
                left: self.b.len(),
            });
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }

    fn arr<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ProtoError> {
        let s = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// Reads an element count and checks that `count * min_size` bytes are present, so the
    /// allocation that follows is bounded by the payload.
    fn count(&mut self, field: &'static str, min_size: usize) -> Result<usize, ProtoError> {
        let n = u32::from_le_bytes(self.arr(field)?) as usize;
        let need = n.saturating_mul(min_size);
        if need > self.b.len() {
            return Err(ProtoError::Truncated {
                msg: self.msg,
                field,
                need,
                left: self.b.len(),
            });
        }
        Ok(n)
    }

    /// Checks that the whole payload was read.
    ///
    /// # Errors
    /// [`ProtoError::Trailing`].
    pub(crate) fn end(self) -> Result<(), ProtoError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(ProtoError::Trailing {
                msg: self.msg,
                extra: self.b.len(),
            })
        }
    }
}

/// A wire type carrying Rust values of type `T`.
pub(crate) trait Wire<T> {
    /// Fewest bytes one encoded value takes (what a count of them is checked against).
    const MIN_LEN: usize;
    /// Appends `v`.
    fn put(v: &T, w: &mut Enc<'_>);
    /// Reads one value; `field` names it in errors.
    fn get(d: &mut Dec<'_>, field: &'static str) -> Result<T, ProtoError>;
}

/// A value that encodes itself as a sequence of fields (the element structs of the table:
/// [`crate::Hello`], [`crate::Module`], ...). Carried by the [`Rec`] codec.
pub(crate) trait Record: Sized {
    /// Fewest bytes one encoded value takes.
    const MIN_LEN: usize;
    /// Appends the fields.
    fn put(&self, w: &mut Enc<'_>);
    /// Reads the fields.
    fn get(d: &mut Dec<'_>) -> Result<Self, ProtoError>;
}

macro_rules! int_codec {
    ($(#[$m:meta])* $name:ident, $t:ty, $n:literal) => {
        $(#[$m])*
        pub(crate) enum $name {}

        impl Wire<$t> for $name {
            const MIN_LEN: usize = $n;
            fn put(v: &$t, w: &mut Enc<'_>) {
                w.raw(&v.to_le_bytes());
            }
            fn get(d: &mut Dec<'_>, field: &'static str) -> Result<$t, ProtoError> {
                Ok(<$t>::from_le_bytes(d.arr(field)?))
            }
        }
    };
}

int_codec!(
    /// `u8`.
    U8, u8, 1
);
int_codec!(
    /// `u16`, little-endian.
    U16, u16, 2
);
int_codec!(
    /// `u32`, little-endian.
    U32, u32, 4
);
int_codec!(
    /// `i32`, little-endian.
    I32, i32, 4
);
int_codec!(
    /// `u64`, little-endian.
    U64, u64, 8
);

/// `bool`: one byte, 0 or 1; any other value is [`ProtoError::Invalid`].
pub(crate) enum Bool {}

impl Wire<bool> for Bool {
    const MIN_LEN: usize = 1;
    fn put(v: &bool, w: &mut Enc<'_>) {
        w.raw(&[*v as u8]);
    }
    fn get(d: &mut Dec<'_>, field: &'static str) -> Result<bool, ProtoError> {
        match d.arr::<1>(field)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(d.invalid(field, v as u64)),
        }
    }
}

/// `str`: `u16 len` + bytes. The encoder cuts to [`MAX_STR`] bytes at a character boundary;
/// the decoder rejects more than `Limits::max_str` and replaces invalid UTF-8 with U+FFFD.
pub(crate) enum Str {}

impl Wire<String> for Str {
    const MIN_LEN: usize = 2;
    fn put(v: &String, w: &mut Enc<'_>) {
        let s = truncate_str(v, MAX_STR);
        w.raw(&(s.len() as u16).to_le_bytes());
        w.raw(s.as_bytes());
    }
    fn get(d: &mut Dec<'_>, field: &'static str) -> Result<String, ProtoError> {
        let n = u16::from_le_bytes(d.arr(field)?) as usize;
        if n > d.max_str {
            return Err(ProtoError::FieldTooLong {
                msg: d.msg,
                field,
                len: n,
                max: d.max_str,
            });
        }
        let b = d.take(n, field)?;
        Ok(String::from_utf8_lossy(b).into_owned())
    }
}

/// `bytes`: `u16 len` + bytes, at most [`MAX_KEY`] (file keys, build-ids); the encoder cuts
/// longer values.
pub(crate) enum Key {}

impl Wire<Vec<u8>> for Key {
    const MIN_LEN: usize = 2;
    fn put(v: &Vec<u8>, w: &mut Enc<'_>) {
        let b = &v[..v.len().min(MAX_KEY)];
        w.raw(&(b.len() as u16).to_le_bytes());
        w.raw(b);
    }
    fn get(d: &mut Dec<'_>, field: &'static str) -> Result<Vec<u8>, ProtoError> {
        let n = u16::from_le_bytes(d.arr(field)?) as usize;
        if n > MAX_KEY {
            return Err(ProtoError::FieldTooLong {
                msg: d.msg,
                field,
                len: n,
                max: MAX_KEY,
            });
        }
        Ok(d.take(n, field)?.to_vec())
    }
}

/// `blob`: `u32 len` + bytes, bounded only by the payload.
pub(crate) enum Blob {}

impl Wire<Vec<u8>> for Blob {
    const MIN_LEN: usize = 4;
    fn put(v: &Vec<u8>, w: &mut Enc<'_>) {
        w.raw(&(v.len() as u32).to_le_bytes());
        w.raw(v);
    }
    fn get(d: &mut Dec<'_>, field: &'static str) -> Result<Vec<u8>, ProtoError> {
        let n = u32::from_le_bytes(d.arr(field)?) as usize;
        Ok(d.take(n, field)?.to_vec())
    }
}

/// A [`Record`] inline: its fields, in order.
pub(crate) enum Rec {}

impl<T: Record> Wire<T> for Rec {
    const MIN_LEN: usize = T::MIN_LEN;
    fn put(v: &T, w: &mut Enc<'_>) {
        v.put(w);
    }
    fn get(d: &mut Dec<'_>, _field: &'static str) -> Result<T, ProtoError> {
        T::get(d)
    }
}

/// An array: `u32 count` + [`Record`]s, at most `MAX` of them. The encoder sends the first
/// `MAX`; the decoder checks `count * MIN_LEN` against the bytes present before allocating,
/// then `count <= MAX` ([`ProtoError::FieldTooLong`]).
pub(crate) enum List<const MAX: usize = { u32::MAX as usize }> {}

impl<E: Record, const MAX: usize> Wire<Vec<E>> for List<MAX> {
    const MIN_LEN: usize = 4;
    fn put(v: &Vec<E>, w: &mut Enc<'_>) {
        let n = v.len().min(MAX).min(u32::MAX as usize);
        w.raw(&(n as u32).to_le_bytes());
        for e in &v[..n] {
            e.put(w);
        }
    }
    fn get(d: &mut Dec<'_>, field: &'static str) -> Result<Vec<E>, ProtoError> {
        let n = d.count(field, E::MIN_LEN)?;
        at_most(d, field, n, MAX)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(E::get(d)?);
        }
        Ok(v)
    }
}

/// `u64[]`: `u32 count` + `count` little-endian `u64`s, at most `MAX` of them (callchain
/// addresses). The encoder sends the first `MAX`; the decoder checks `count * 8` against the
/// bytes present before allocating, then `count <= MAX` ([`ProtoError::FieldTooLong`]).
pub(crate) enum Words<const MAX: usize> {}

impl<const MAX: usize> Wire<Vec<u64>> for Words<MAX> {
    const MIN_LEN: usize = 4;
    fn put(v: &Vec<u64>, w: &mut Enc<'_>) {
        let n = v.len().min(MAX).min(u32::MAX as usize);
        w.raw(&(n as u32).to_le_bytes());
        for x in &v[..n] {
            w.raw(&x.to_le_bytes());
        }
    }
    fn get(d: &mut Dec<'_>, field: &'static str) -> Result<Vec<u64>, ProtoError> {
        let n = d.count(field, 8)?;
        at_most(d, field, n, MAX)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(u64::from_le_bytes(d.arr(field)?));
        }
        Ok(v)
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
pub fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `n` elements of `field` where at most `max` are allowed: [`ProtoError::FieldTooLong`] past it.
fn at_most(d: &Dec<'_>, field: &'static str, n: usize, max: usize) -> Result<(), ProtoError> {
    if n > max {
        return Err(ProtoError::FieldTooLong {
            msg: d.msg,
            field,
            len: n,
            max,
        });
    }
    Ok(())
}

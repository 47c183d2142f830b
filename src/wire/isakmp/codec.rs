//! The codec underneath every ISAKMP structure: a bounded [`Reader`] over a byte slice and the
//! [`Codec`] trait (the shape of rustls `msgs/codec.rs`, docs/design.md convention 2).
//!
//! Every length-prefixed child is read through [`Reader::sub`], so a child can never read past
//! the length its parent announced, and leftover bytes inside a child are reported by
//! [`Reader::expect_empty`] instead of being skipped. On emit, lengths are written as zero and
//! back-patched by [`LengthPatch`] once the child is complete, so no length is ever computed twice.

use super::DecodeError;

/// A cursor over a byte slice that never reads past its end.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    cursor: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, cursor: 0 }
    }

    /// The next `n` bytes, or [`DecodeError::Truncated`] (and nothing consumed).
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let left = self.left();
        if n > left {
            return Err(DecodeError::Truncated {
                needed: n,
                available: left,
            });
        }
        let out = &self.buf[self.cursor..self.cursor + n];
        self.cursor += n;
        Ok(out)
    }

    /// A child reader over the next `n` bytes (a length-prefixed element).
    pub fn sub(&mut self, n: usize) -> Result<Reader<'a>, DecodeError> {
        self.take(n).map(Reader::new)
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.cursor..];
        self.cursor = self.buf.len();
        out
    }

    pub fn any_left(&self) -> bool {
        self.cursor < self.buf.len()
    }

    pub fn left(&self) -> usize {
        self.buf.len() - self.cursor
    }

    /// Bytes consumed so far (the offset of the next read within this reader's slice).
    pub fn used(&self) -> usize {
        self.cursor
    }

    /// [`DecodeError::TrailingBytes`] unless everything was consumed.
    pub fn expect_empty(&self, what: &'static str) -> Result<(), DecodeError> {
        match self.left() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { what, count }),
        }
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A fixed-size array (cookies).
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

/// A wire structure that can be written to and read from bytes.
pub trait Codec: Sized {
    /// Appends the encoding to `out`, lengths included.
    fn encode(&self, out: &mut Vec<u8>);

    /// Reads one value; the caller decides whether bytes may follow.
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    fn get_encoding(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Reads one value that must span all of `bytes`.
    fn read_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = Self::read(&mut r)?;
        r.expect_empty(std::any::type_name::<Self>())?;
        Ok(v)
    }
}

/// Width of a back-patched length field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LengthWidth {
    U16,
    U32,
}

/// A length field written as zero, filled in by [`finish`](Self::finish) with the number of
/// bytes from `start` to the end of the buffer. ISAKMP lengths count their own header
/// (RFC 2408 §3.1, §3.2), so `start` is where the structure's header begins, not its body.
#[must_use = "the length stays zero unless finish() is called"]
pub struct LengthPatch {
    start: usize,
    field_at: usize,
    width: LengthWidth,
}

impl LengthPatch {
    /// Writes a zero length field at the end of `out` for a structure that began at `start`.
    pub fn begin(out: &mut Vec<u8>, start: usize, width: LengthWidth) -> Self {
        let field_at = out.len();
        match width {
            LengthWidth::U16 => out.extend_from_slice(&[0; 2]),
            LengthWidth::U32 => out.extend_from_slice(&[0; 4]),
        }
        Self {
            start,
            field_at,
            width,
        }
    }

    /// Patches the length. A structure larger than its field can express is a bug in what we
    /// built (our own payloads are far below 64 KiB and a UDP datagram cannot carry more), so it
    /// saturates rather than wraps and asserts in debug builds.
    pub fn finish(self, out: &mut [u8]) {
        let len = out.len() - self.start;
        match self.width {
            LengthWidth::U16 => {
                debug_assert!(len <= usize::from(u16::MAX), "ISAKMP length {len} > 65535");
                let v = u16::try_from(len).unwrap_or(u16::MAX);
                out[self.field_at..self.field_at + 2].copy_from_slice(&v.to_be_bytes());
            }
            LengthWidth::U32 => {
                let v = u32::try_from(len).unwrap_or(u32::MAX);
                out[self.field_at..self.field_at + 4].copy_from_slice(&v.to_be_bytes());
            }
        }
    }
}

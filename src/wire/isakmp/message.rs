//! A whole ISAKMP message: header plus payload chain, or header plus encrypted body.

use super::DecodeError;
use super::codec::{Codec, Reader};
use super::header::{HEADER_LEN, Header, HeaderView};
use super::payload::{Payload, decode_payloads, encode_payloads_into};
use super::registry::PayloadType;

/// What follows the header.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Body {
    /// The decoded payload chain of a message without the encryption flag.
    Payloads(Vec<Payload>),
    /// The ciphertext of a message with the encryption flag (RFC 2408 §3.1 E bit). The first
    /// payload type is the header's `next_payload`; the session decrypts this and calls
    /// [`decode_payloads_padded`](super::decode_payloads_padded).
    Encrypted(Vec<u8>),
}

/// An ISAKMP message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Message {
    pub header: Header,
    pub body: Body,
}

impl Message {
    /// A plaintext message; the header's next-payload and length are computed on encode.
    pub fn new(header: Header, payloads: Vec<Payload>) -> Self {
        Self {
            header,
            body: Body::Payloads(payloads),
        }
    }

    /// An encrypted message: `first` is the type of the first payload inside `ciphertext`
    /// (from [`encode_payloads`](super::encode_payloads)). Sets the encryption flag.
    pub fn encrypted(mut header: Header, first: PayloadType, ciphertext: Vec<u8>) -> Self {
        header.next_payload = first;
        header.flags = header.flags.with(super::Flags::ENCRYPTION);
        Self {
            header,
            body: Body::Encrypted(ciphertext),
        }
    }

    /// Decodes one datagram (after the non-ESP marker on port 4500). The header's length
    /// must equal the datagram's length.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let m = Self::read(&mut r)?;
        r.expect_empty("datagram after the ISAKMP length")?;
        Ok(m)
    }

    pub fn encode(&self) -> Vec<u8> {
        self.get_encoding()
    }

    /// The decoded payloads of a plaintext message.
    pub fn payloads(&self) -> Option<&[Payload]> {
        match &self.body {
            Body::Payloads(p) => Some(p),
            Body::Encrypted(_) => None,
        }
    }
}

impl Codec for Message {
    /// Writes the header with `next_payload` taken from the first payload (plaintext) or
    /// from the header (encrypted), and `length` computed; then the body.
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let mut header = self.header;
        header.length = 0;
        header.encode(out);
        let first = match &self.body {
            Body::Payloads(p) => encode_payloads_into(p, out),
            Body::Encrypted(c) => {
                out.extend_from_slice(c);
                self.header.next_payload
            }
        };
        out[start + 16] = first.0;
        let len = u32::try_from(out.len() - start).unwrap_or(u32::MAX);
        out[start + 24..start + HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let header = Header::read(r)?;
        let length = usize::try_from(header.length).unwrap_or(usize::MAX);
        if length < HEADER_LEN {
            return Err(DecodeError::BadLength {
                what: "ISAKMP header",
                length,
                min: HEADER_LEN,
            });
        }
        let body = r.take(length - HEADER_LEN)?;
        let body = if header.flags.encrypted() {
            Body::Encrypted(body.to_vec())
        } else {
            Body::Payloads(decode_payloads(header.next_payload, body)?)
        };
        Ok(Self { header, body })
    }
}

/// The routing peek: the header of a datagram without decoding anything after it.
pub fn peek_header(bytes: &[u8]) -> Result<HeaderView<&[u8]>, DecodeError> {
    HeaderView::new_checked(bytes)
}

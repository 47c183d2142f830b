//! The fixed ISAKMP header (RFC 2408 §3.1): a zero-copy view for routing and a typed repr.
//!
//! The IkeSocket routes every datagram on the cookies, exchange type and flags before anything
//! else is decoded (docs/design.md "How data flows"), so [`HeaderView`] reads those fields straight
//! from the datagram and never looks at the payloads.

use std::fmt;

use super::DecodeError;
use super::codec::{Codec, Reader};
use super::registry::{ExchangeType, PayloadType};

/// Length of the ISAKMP header.
pub const HEADER_LEN: usize = 28;
/// ISAKMP version 1.0: major 1 in the high nibble, minor 0 in the low one.
pub const VERSION_1_0: u8 = 0x10;

mod field {
    use core::ops::Range;
    pub const INITIATOR_COOKIE: Range<usize> = 0..8;
    pub const RESPONDER_COOKIE: Range<usize> = 8..16;
    pub const NEXT_PAYLOAD: usize = 16;
    pub const VERSION: usize = 17;
    pub const EXCHANGE_TYPE: usize = 18;
    pub const FLAGS: usize = 19;
    pub const MESSAGE_ID: Range<usize> = 20..24;
    pub const LENGTH: Range<usize> = 24..28;
}

/// Header flags (RFC 2408 §3.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// Everything after the header is encrypted (RFC 2408 §3.1 E bit).
    pub const ENCRYPTION: Self = Self(0x01);
    /// The commit bit (RFC 2408 §3.1, RFC 2409 §5.5 CONNECTED notify).
    pub const COMMIT: Self = Self(0x02);
    /// Authentication only: integrity without encryption (RFC 2408 §3.1 A bit).
    pub const AUTH_ONLY: Self = Self(0x04);
    pub const NONE: Self = Self(0);

    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn encrypted(self) -> bool {
        self.contains(Self::ENCRYPTION)
    }

    /// Bits RFC 2408 does not define; a receiver should refuse them with INVALID-FLAGS.
    pub fn unknown_bits(self) -> u8 {
        self.0 & !0x07
    }

    #[must_use]
    pub fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.contains(Self::ENCRYPTION) {
            parts.push("E".to_string());
        }
        if self.contains(Self::COMMIT) {
            parts.push("C".to_string());
        }
        if self.contains(Self::AUTH_ONLY) {
            parts.push("A".to_string());
        }
        if self.unknown_bits() != 0 {
            parts.push(format!("{:#04x}", self.unknown_bits()));
        }
        if parts.is_empty() {
            f.write_str("Flags()")
        } else {
            write!(f, "Flags({})", parts.join("|"))
        }
    }
}

/// A zero-copy view of an ISAKMP header at the start of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderView<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> HeaderView<T> {
    /// Wraps without checks; accessors panic on buffers shorter than [`HEADER_LEN`].
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer that holds at least the 28-byte header. Version and length are not
    /// checked: the router must be able to answer an IKEv2 or oversized datagram too.
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(DecodeError::Truncated {
                needed: HEADER_LEN,
                available: len,
            });
        }
        Ok(Self { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn initiator_cookie(&self) -> [u8; 8] {
        let mut c = [0u8; 8];
        c.copy_from_slice(&self.buffer.as_ref()[field::INITIATOR_COOKIE]);
        c
    }

    /// All zero in the first message of a phase-1 exchange.
    pub fn responder_cookie(&self) -> [u8; 8] {
        let mut c = [0u8; 8];
        c.copy_from_slice(&self.buffer.as_ref()[field::RESPONDER_COOKIE]);
        c
    }

    pub fn next_payload(&self) -> PayloadType {
        PayloadType(self.buffer.as_ref()[field::NEXT_PAYLOAD])
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    pub fn major_version(&self) -> u8 {
        self.version() >> 4
    }

    pub fn minor_version(&self) -> u8 {
        self.version() & 0x0f
    }

    pub fn exchange_type(&self) -> ExchangeType {
        ExchangeType(self.buffer.as_ref()[field::EXCHANGE_TYPE])
    }

    pub fn flags(&self) -> Flags {
        Flags(self.buffer.as_ref()[field::FLAGS])
    }

    pub fn message_id(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::MESSAGE_ID];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The length field: header plus payloads, as the sender claims it.
    pub fn length(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::LENGTH];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Everything after the header in the buffer (which the length field may disagree with).
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

/// A parsed ISAKMP header.
///
/// `next_payload` and `length` are what was received; [`Message`](super::Message) encoding
/// recomputes both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    pub initiator_cookie: [u8; 8],
    pub responder_cookie: [u8; 8],
    pub next_payload: PayloadType,
    /// [`VERSION_1_0`] for everything we send.
    pub version: u8,
    pub exchange_type: ExchangeType,
    pub flags: Flags,
    pub message_id: u32,
    pub length: u32,
}

impl Header {
    /// A version-1.0 header; `next_payload` and `length` are filled in on encode.
    pub fn new(
        initiator_cookie: [u8; 8],
        responder_cookie: [u8; 8],
        exchange_type: ExchangeType,
        flags: Flags,
        message_id: u32,
    ) -> Self {
        Self {
            initiator_cookie,
            responder_cookie,
            next_payload: PayloadType::NONE,
            version: VERSION_1_0,
            exchange_type,
            flags,
            message_id,
            length: HEADER_LEN as u32,
        }
    }

    /// Reads the fields of a view. A major version other than 1 is refused
    /// (RFC 2408 §5.2: INVALID-MAJOR-VERSION); a higher minor version is refused too, since
    /// no ISAKMP 1.x beyond 1.0 exists and the receiver "SHOULD" reject it (INVALID-MINOR-VERSION).
    pub fn parse<T: AsRef<[u8]>>(v: &HeaderView<T>) -> Result<Self, DecodeError> {
        if v.version() != VERSION_1_0 {
            return Err(DecodeError::UnsupportedVersion(v.version()));
        }
        Ok(Self {
            initiator_cookie: v.initiator_cookie(),
            responder_cookie: v.responder_cookie(),
            next_payload: v.next_payload(),
            version: v.version(),
            exchange_type: v.exchange_type(),
            flags: v.flags(),
            message_id: v.message_id(),
            length: v.length(),
        })
    }
}

impl Codec for Header {
    /// Writes the header as it stands, `length` and `next_payload` included.
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.initiator_cookie);
        out.extend_from_slice(&self.responder_cookie);
        out.push(self.next_payload.0);
        out.push(self.version);
        out.push(self.exchange_type.0);
        out.push(self.flags.0);
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let b = r.take(HEADER_LEN)?;
        Self::parse(&HeaderView::new_unchecked(b))
    }
}

//! ISAKMP (RFC 2408) with the IPsec DOI (RFC 2407), IKEv1 (RFC 2409), NAT-T (RFC 3947) and
//! DPD (RFC 3706): bytes <-> types.
//!
//! * Routing: [`peek_header`] / [`HeaderView`] read the cookies, exchange type, flags and
//!   message ID of a datagram without decoding anything else.
//! * Plaintext messages: [`Message::decode`] / [`Message::encode`]; every length and
//!   next-payload field is computed on encode.
//! * Encrypted messages: [`Message::decode`] returns [`Body::Encrypted`] when the E flag is
//!   set; decrypt it, then [`decode_payloads_padded`] with `header.next_payload`. To send,
//!   [`encode_payloads`] gives the first payload type and the plaintext to pad and encrypt,
//!   and [`Message::encrypted`] frames the ciphertext.
//! * Hash inputs: [`split_payloads`] / [`split_payloads_padded`] give each payload's bytes as
//!   received, which is what HASH_I/HASH_R and the quick-mode hashes cover.
//!
//! Structure follows docs/design.md conventions 1–3: a zero-copy header view, one [`Codec`] over a
//! bounded [`Reader`] (every length-prefixed child is a sub-reader; trailing bytes are an
//! error), and open registries whose unknown values round-trip.

mod codec;
mod header;
mod id;
mod macros;
mod message;
mod payload;
mod registry;
mod sa;
pub mod vendor;

#[cfg(test)]
mod tests;

pub use codec::{Codec, LengthPatch, LengthWidth, Reader};
pub use header::{Flags, HEADER_LEN, Header, HeaderView, VERSION_1_0};
pub use id::{IdValue, Identification};
pub use message::{Body, Message, peek_header};
pub use payload::{
    Delete, GENERIC_HEADER_LEN, NatOa, Notification, Payload, RawPayload, decode_payloads,
    decode_payloads_padded, encode_payloads, encode_payloads_into, split_payloads,
    split_payloads_padded,
};
pub use registry::{
    AhTransformId, AuthAlgorithm, AuthMethod, CertEncoding, Doi, EncapsulationMode,
    EncryptionAlgorithm, EspTransformId, ExchangeType, GroupDescription, HashAlgorithm, IdType,
    IsakmpTransformId, LifeType, NotifyType, PayloadType, Phase1Attr, Phase2Attr, ProtocolId,
};
pub use sa::{Attribute, AttributeValue, Proposal, SaPayload, Transform, situation};
pub use vendor::KnownVendorId;

/// Why bytes could not be read as ISAKMP (the wire layer of docs/design.md convention 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DecodeError {
    /// The input ends before a field or an element its length announced.
    #[error("truncated: needed {needed} bytes, {available} left")]
    Truncated { needed: usize, available: usize },
    /// A length field is below the size of the structure's own fixed part.
    #[error("{what}: length {length} is below the minimum of {min}")]
    BadLength {
        what: &'static str,
        length: usize,
        min: usize,
    },
    /// Bytes are left inside an element after everything it holds was read.
    #[error("{what}: {count} trailing bytes")]
    TrailingBytes { what: &'static str, count: usize },
    /// A proposal or transform chain does not add up (RFC 2408 §5.5: BAD-PROPOSAL-SYNTAX).
    #[error("bad proposal syntax: {0}")]
    BadProposalSyntax(&'static str),
    /// A payload type that cannot appear in a payload chain (P or T outside an SA, NONE).
    #[error("payload {0:?} cannot appear in a payload chain")]
    UnexpectedPayload(PayloadType),
    /// A field has a value the format does not allow.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// The header's version is not ISAKMP 1.0 (0x20 is IKEv2).
    #[error("unsupported ISAKMP version {}.{} (expected 1.0)", .0 >> 4, .0 & 0x0f)]
    UnsupportedVersion(u8),
}

impl DecodeError {
    /// The error notify RFC 2408 §5 prescribes for this failure.
    pub fn notify_type(&self) -> NotifyType {
        match self {
            DecodeError::UnsupportedVersion(v) if v >> 4 != 1 => NotifyType::INVALID_MAJOR_VERSION,
            DecodeError::UnsupportedVersion(_) => NotifyType::INVALID_MINOR_VERSION,
            DecodeError::BadProposalSyntax(_) => NotifyType::BAD_PROPOSAL_SYNTAX,
            DecodeError::UnexpectedPayload(_) => NotifyType::INVALID_PAYLOAD_TYPE,
            _ => NotifyType::PAYLOAD_MALFORMED,
        }
    }
}

/// The first unknown payload marked critical (see [`Payload::is_critical`]), which a receiver
/// following strongSwan's (IKEv2-derived) rule refuses with INVALID-PAYLOAD-TYPE.
pub fn unsupported_critical(payloads: &[Payload]) -> Option<PayloadType> {
    payloads
        .iter()
        .find(|p| p.is_critical())
        .map(Payload::payload_type)
}

/// A one-byte count or size field. What we build stays far below 256 SPI bytes or
/// transforms; anything larger is a bug in the caller, caught in debug builds.
pub(crate) fn len_u8(n: usize) -> u8 {
    debug_assert!(n <= 255, "ISAKMP one-byte count {n} > 255");
    u8::try_from(n).unwrap_or(u8::MAX)
}

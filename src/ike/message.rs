//! Building and reading whole messages for the exchanges: plaintext or encrypted under the
//! ISAKMP SA's IV chain, the HASH-first layout of phase 2 and informational exchanges
//! (RFC 2409 §5.5, §5.7), and the tables of payloads each message must and may carry.

use crate::wire::isakmp::{
    Header, Message, Payload, PayloadType, RawPayload, encode_payloads, split_payloads,
    split_payloads_padded,
};

use super::cipher::{IvChain, PendingIv};
use super::error::{IkeError, IkeResult};

/// How often a payload type may appear in a message.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rule {
    pub ty: PayloadType,
    pub min: u8,
    pub max: u8,
}

const fn must(ty: PayloadType) -> Rule {
    Rule { ty, min: 1, max: 1 }
}
const fn may(ty: PayloadType) -> Rule {
    Rule { ty, min: 0, max: 1 }
}
const fn any(ty: PayloadType) -> Rule {
    Rule {
        ty,
        min: 0,
        max: 255,
    }
}

use PayloadType as P;

/// Main mode (RFC 2409 §5, PSK): what each message must and may carry.
///
/// | msg | must          | may                          |
/// |-----|---------------|------------------------------|
/// | 1,2 | SA            | VID*                         |
/// | 3,4 | KE, Nonce     | NAT-D* (RFC/draft), VID*     |
/// | 5,6 | ID, HASH      | N* (INITIAL-CONTACT), VID*   |
pub(crate) const MM_SA: &[Rule] = &[must(P::SA), any(P::VENDOR_ID)];
pub(crate) const MM_KE: &[Rule] = &[
    must(P::KEY_EXCHANGE),
    must(P::NONCE),
    any(P::NAT_D),
    any(P::NAT_D_DRAFT),
    any(P::VENDOR_ID),
];
pub(crate) const MM_ID: &[Rule] = &[
    must(P::IDENTIFICATION),
    must(P::HASH),
    any(P::NOTIFICATION),
    any(P::VENDOR_ID),
];
/// Quick mode (RFC 2409 §5.5): messages 1 and 2.
///
/// | msg | must                 | may                                                  |
/// |-----|----------------------|------------------------------------------------------|
/// | 1,2 | HASH (first), SA, Ni | KE (PFS), IDci+IDcr, N* (RESPONDER-LIFETIME), NAT-OA* |
/// | 3   | HASH                 |                                                      |
pub(crate) const QM_SA: &[Rule] = &[
    must(P::HASH),
    must(P::SA),
    must(P::NONCE),
    may(P::KEY_EXCHANGE),
    Rule {
        ty: P::IDENTIFICATION,
        min: 0,
        max: 2,
    },
    any(P::NOTIFICATION),
    any(P::NAT_OA),
    any(P::NAT_OA_DRAFT),
    any(P::VENDOR_ID),
];
pub(crate) const QM_3: &[Rule] = &[must(P::HASH)];
/// Informational (RFC 2409 §5.7): HASH first when encrypted, then notifies and deletes.
pub(crate) const INFO: &[Rule] = &[
    may(P::HASH),
    any(P::NOTIFICATION),
    any(P::DELETE),
    any(P::VENDOR_ID),
];

/// Checks a message against its table. Unknown payloads not marked critical are ignored
/// (RFC 2408 §5.2 would refuse them; strongSwan and racoon skip them, so do we).
pub(crate) fn check(table: &[Rule], payloads: &[Payload], what: &str) -> IkeResult<()> {
    for r in table {
        let n = payloads.iter().filter(|p| p.payload_type() == r.ty).count();
        if n < usize::from(r.min) {
            return Err(IkeError::malformed(format!(
                "{what} lacks a {} payload",
                r.ty
            )));
        }
        if n > usize::from(r.max) {
            return Err(IkeError::malformed(format!(
                "{what} carries {n} {} payloads",
                r.ty
            )));
        }
    }
    for p in payloads {
        let t = p.payload_type();
        if table.iter().any(|r| r.ty == t) {
            continue;
        }
        if p.is_critical() {
            return Err(IkeError::notify(
                crate::wire::isakmp::NotifyType::INVALID_PAYLOAD_TYPE,
                format!("{what} carries unsupported critical payload {t}"),
            ));
        }
        if !matches!(p, Payload::Unknown { .. }) {
            return Err(IkeError::malformed(format!(
                "{what} carries an unexpected {t} payload"
            )));
        }
    }
    Ok(())
}

/// A received message, decoded.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub header: Header,
    pub payloads: Vec<Payload>,
    /// Bodies of the payloads as received (SAi_b, IDii_b, Ni_b for the hashes).
    pub bodies: Vec<Vec<u8>>,
    /// The bytes from the second payload to the end of the chain (quick-mode and
    /// informational HASH inputs).
    pub after_first: Vec<u8>,
    /// The IV to commit once the message is verified (encrypted messages).
    pub pending: Option<PendingIv>,
}

impl Parsed {
    pub fn body_of(&self, ty: PayloadType) -> Option<&[u8]> {
        self.payloads
            .iter()
            .position(|p| p.payload_type() == ty)
            .map(|i| self.bodies[i].as_slice())
    }

    pub fn first<T>(&self, f: impl Fn(&Payload) -> Option<&T>) -> Option<&T> {
        self.payloads.iter().find_map(f)
    }
}

fn from_raw(
    header: Header,
    raw: &[RawPayload<'_>],
    chain: &[u8],
    pending: Option<PendingIv>,
) -> IkeResult<Parsed> {
    let mut payloads = Vec::with_capacity(raw.len());
    let mut bodies = Vec::with_capacity(raw.len());
    for r in raw {
        payloads.push(r.decode().map_err(IkeError::malformed)?);
        bodies.push(r.body.to_vec());
    }
    let after_first = match (raw.get(1), raw.last()) {
        (Some(second), Some(last)) => chain[second.offset..last.offset + last.bytes.len()].to_vec(),
        _ => Vec::new(),
    };
    Ok(Parsed {
        header,
        payloads,
        bodies,
        after_first,
        pending,
    })
}

/// Decodes a datagram's header and, for a plaintext message, its payloads. Encrypted
/// messages come back with `Err(ciphertext)` in the second slot.
pub(crate) fn decode(bytes: &[u8]) -> IkeResult<(Header, Result<Parsed, Vec<u8>>)> {
    let msg =
        Message::decode(bytes).map_err(|e| IkeError::drop(format!("undecodable datagram: {e}")))?;
    match msg.body {
        crate::wire::isakmp::Body::Encrypted(c) => Ok((msg.header, Err(c))),
        crate::wire::isakmp::Body::Payloads(_) => {
            let chain = &bytes[crate::wire::isakmp::HEADER_LEN..];
            let raw =
                split_payloads(msg.header.next_payload, chain).map_err(IkeError::malformed)?;
            Ok((msg.header, Ok(from_raw(msg.header, &raw, chain, None)?)))
        }
    }
}

/// Decrypts an encrypted body without moving the IV chain.
pub(crate) fn decrypt(header: Header, ciphertext: &[u8], iv: &IvChain) -> IkeResult<Parsed> {
    let d = iv
        .decrypt(header.message_id, ciphertext)
        .map_err(|e| IkeError::drop(format!("cannot decrypt: {e}")))?;
    let raw = split_payloads_padded(header.next_payload, &d.plaintext)
        .map_err(|e| IkeError::drop(format!("decrypted to garbage ({e})")))?;
    from_raw(header, &raw, &d.plaintext, Some(d.pending))
}

/// A plaintext message.
pub(crate) fn plain(header: Header, payloads: Vec<Payload>) -> Vec<u8> {
    Message::new(header, payloads).encode()
}

/// An encrypted message; advances the IV chain of `header.message_id`.
pub(crate) fn encrypted(header: Header, payloads: &[Payload], iv: &mut IvChain) -> Vec<u8> {
    let (first, body) = encode_payloads(payloads);
    let c = iv.encrypt(header.message_id, &body);
    Message::encrypted(header, first, c).encode()
}

/// An encrypted message whose first payload is a HASH over the payloads after it:
/// `hash(rest)` gets those bytes exactly as sent.
pub(crate) fn hashed(
    header: Header,
    rest: &[Payload],
    hash: impl FnOnce(&[u8]) -> Vec<u8>,
    iv: &mut IvChain,
) -> Vec<u8> {
    let (first, rest_bytes) = encode_payloads(rest);
    let h = hash(&rest_bytes);
    let mut body = Vec::with_capacity(4 + h.len() + rest_bytes.len());
    body.push(first.0);
    body.push(0);
    body.extend_from_slice(&((4 + h.len()) as u16).to_be_bytes());
    body.extend_from_slice(&h);
    body.extend_from_slice(&rest_bytes);
    let c = iv.encrypt(header.message_id, &body);
    Message::encrypted(header, PayloadType::HASH, c).encode()
}

/// The HASH payload that must open an encrypted phase-2 / informational message.
pub(crate) fn leading_hash(p: &Parsed, what: &str) -> IkeResult<Vec<u8>> {
    match p.payloads.first() {
        Some(Payload::Hash(h)) => Ok(h.clone()),
        _ => Err(IkeError::drop(format!("{what} does not start with HASH"))),
    }
}

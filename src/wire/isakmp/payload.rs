//! The payloads of a message and the generic payload header chain (RFC 2408 §3.2–§3.15,
//! RFC 3947 §3.2 / §5.2, RFC 3706 §5).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::codec::{LengthPatch, LengthWidth, Reader};
use super::id::Identification;
use super::registry::{CertEncoding, Doi, IdType, NotifyType, PayloadType, ProtocolId};
use super::sa::SaPayload;
use super::{DecodeError, len_u8};

/// Length of the generic payload header: next payload, reserved, payload length.
pub const GENERIC_HEADER_LEN: usize = 4;

/// A Notification payload body (RFC 2408 §3.14).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Notification {
    pub doi: Doi,
    pub protocol_id: ProtocolId,
    /// Empty, the 16 bytes CKY-I | CKY-R for an ISAKMP SA, or a 4-byte AH/ESP SPI.
    pub spi: Vec<u8>,
    pub message_type: NotifyType,
    pub data: Vec<u8>,
}

impl Notification {
    /// A notify about the ISAKMP SA (IPsec DOI, PROTO_ISAKMP, SPI = CKY-I | CKY-R).
    pub fn isakmp(
        message_type: NotifyType,
        initiator_cookie: [u8; 8],
        responder_cookie: [u8; 8],
        data: Vec<u8>,
    ) -> Self {
        Self {
            doi: Doi::IPSEC,
            protocol_id: ProtocolId::ISAKMP,
            spi: [initiator_cookie, responder_cookie].concat(),
            message_type,
            data,
        }
    }

    /// R-U-THERE or R-U-THERE-ACK (RFC 3706 §5.1): the SPI is CKY-I | CKY-R and the data is
    /// the 32-bit sequence number.
    pub fn dpd(ack: bool, initiator_cookie: [u8; 8], responder_cookie: [u8; 8], seq: u32) -> Self {
        let t = if ack {
            NotifyType::R_U_THERE_ACK
        } else {
            NotifyType::R_U_THERE
        };
        Self::isakmp(
            t,
            initiator_cookie,
            responder_cookie,
            seq.to_be_bytes().to_vec(),
        )
    }

    /// The DPD sequence number of an R-U-THERE / R-U-THERE-ACK with 4 bytes of data.
    pub fn dpd_sequence(&self) -> Option<u32> {
        if self.message_type != NotifyType::R_U_THERE
            && self.message_type != NotifyType::R_U_THERE_ACK
        {
            return None;
        }
        <[u8; 4]>::try_from(self.data.as_slice())
            .ok()
            .map(u32::from_be_bytes)
    }

    /// The SPI as a number when it is 4 bytes long (AH, ESP).
    pub fn spi_u32(&self) -> Option<u32> {
        <[u8; 4]>::try_from(self.spi.as_slice())
            .ok()
            .map(u32::from_be_bytes)
    }

    fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let doi = Doi(r.u32()?);
        let protocol_id = ProtocolId(r.u8()?);
        let spi_size = usize::from(r.u8()?);
        let message_type = NotifyType(r.u16()?);
        let spi = r.take(spi_size)?.to_vec();
        Ok(Self {
            doi,
            protocol_id,
            spi,
            message_type,
            data: r.rest().to_vec(),
        })
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.doi.0.to_be_bytes());
        out.push(self.protocol_id.0);
        out.push(len_u8(self.spi.len()));
        out.extend_from_slice(&self.message_type.0.to_be_bytes());
        out.extend_from_slice(&self.spi);
        out.extend_from_slice(&self.data);
    }
}

/// A Delete payload body (RFC 2408 §3.15).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Delete {
    pub doi: Doi,
    pub protocol_id: ProtocolId,
    /// 16 for PROTO_ISAKMP (the cookies), 4 for AH/ESP. Every SPI must have this size.
    pub spi_size: u8,
    pub spis: Vec<Vec<u8>>,
}

impl Delete {
    /// Deletes IPsec SAs of one protocol by their 32-bit SPIs.
    pub fn ipsec(protocol_id: ProtocolId, spis: &[u32]) -> Self {
        Self {
            doi: Doi::IPSEC,
            protocol_id,
            spi_size: 4,
            spis: spis.iter().map(|s| s.to_be_bytes().to_vec()).collect(),
        }
    }

    /// Deletes the ISAKMP SA named by its cookies.
    pub fn isakmp(initiator_cookie: [u8; 8], responder_cookie: [u8; 8]) -> Self {
        Self {
            doi: Doi::IPSEC,
            protocol_id: ProtocolId::ISAKMP,
            spi_size: 16,
            spis: vec![[initiator_cookie, responder_cookie].concat()],
        }
    }

    /// The SPIs as numbers, when they are 4 bytes long.
    pub fn spis_u32(&self) -> Option<Vec<u32>> {
        self.spis
            .iter()
            .map(|s| {
                <[u8; 4]>::try_from(s.as_slice())
                    .ok()
                    .map(u32::from_be_bytes)
            })
            .collect()
    }

    fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let doi = Doi(r.u32()?);
        let protocol_id = ProtocolId(r.u8()?);
        let spi_size = r.u8()?;
        let count = usize::from(r.u16()?);
        if spi_size == 0 && count != 0 {
            // Zero-sized SPIs would let 12 bytes announce 65535 deletions.
            return Err(DecodeError::Malformed("delete: SPIs of size 0"));
        }
        let mut spis = Vec::with_capacity(count.min(r.left()));
        for _ in 0..count {
            spis.push(r.take(usize::from(spi_size))?.to_vec());
        }
        r.expect_empty("delete payload after the announced SPIs")?;
        Ok(Self {
            doi,
            protocol_id,
            spi_size,
            spis,
        })
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.doi.0.to_be_bytes());
        out.push(self.protocol_id.0);
        out.push(self.spi_size);
        let count = u16::try_from(self.spis.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for s in self.spis.iter().take(usize::from(count)) {
            debug_assert_eq!(
                s.len(),
                usize::from(self.spi_size),
                "delete: SPI of wrong size"
            );
            out.extend_from_slice(s);
        }
    }
}

/// A NAT-OA payload body (RFC 3947 §5.2): the original address of a transport-mode peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NatOa {
    /// Payload type 131 of draft-ietf-ipsec-nat-t-ike-02/03 instead of 21.
    pub draft: bool,
    pub address: IpAddr,
}

impl NatOa {
    fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let id_type = IdType(r.u8()?);
        let _reserved = r.take(3)?;
        let address = match id_type {
            IdType::IPV4_ADDR => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
            IdType::IPV6_ADDR => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
            _ => return Err(DecodeError::Malformed("NAT-OA: ID type is not an address")),
        };
        r.expect_empty("NAT-OA")?;
        Ok(Self {
            draft: false,
            address,
        })
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        match self.address {
            IpAddr::V4(a) => {
                out.extend_from_slice(&[IdType::IPV4_ADDR.0, 0, 0, 0]);
                out.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                out.extend_from_slice(&[IdType::IPV6_ADDR.0, 0, 0, 0]);
                out.extend_from_slice(&a.octets());
            }
        }
    }
}

/// One payload of the chain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Payload {
    Sa(SaPayload),
    /// Key Exchange data: the Diffie-Hellman public value g^x (RFC 2408 §3.7).
    KeyExchange(Vec<u8>),
    Identification(Identification),
    Certificate {
        encoding: CertEncoding,
        data: Vec<u8>,
    },
    CertificateRequest {
        cert_type: CertEncoding,
        authority: Vec<u8>,
    },
    Hash(Vec<u8>),
    Signature(Vec<u8>),
    Nonce(Vec<u8>),
    Notification(Notification),
    Delete(Delete),
    VendorId(Vec<u8>),
    /// NAT-D (RFC 3947 §3.2): HASH(CKY-I | CKY-R | IP | Port).
    NatD {
        /// Payload type 130 of draft-ietf-ipsec-nat-t-ike-02/03 instead of 20.
        draft: bool,
        hash: Vec<u8>,
    },
    NatOa(NatOa),
    /// A payload type we do not interpret, kept whole so it round-trips.
    Unknown {
        payload_type: PayloadType,
        /// The generic header's RESERVED byte as received; see [`Payload::is_critical`].
        reserved: u8,
        body: Vec<u8>,
    },
}

impl Payload {
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Payload::Sa(_) => PayloadType::SA,
            Payload::KeyExchange(_) => PayloadType::KEY_EXCHANGE,
            Payload::Identification(_) => PayloadType::IDENTIFICATION,
            Payload::Certificate { .. } => PayloadType::CERTIFICATE,
            Payload::CertificateRequest { .. } => PayloadType::CERTIFICATE_REQUEST,
            Payload::Hash(_) => PayloadType::HASH,
            Payload::Signature(_) => PayloadType::SIGNATURE,
            Payload::Nonce(_) => PayloadType::NONCE,
            Payload::Notification(_) => PayloadType::NOTIFICATION,
            Payload::Delete(_) => PayloadType::DELETE,
            Payload::VendorId(_) => PayloadType::VENDOR_ID,
            Payload::NatD { draft: false, .. } => PayloadType::NAT_D,
            Payload::NatD { draft: true, .. } => PayloadType::NAT_D_DRAFT,
            Payload::NatOa(NatOa { draft: false, .. }) => PayloadType::NAT_OA,
            Payload::NatOa(NatOa { draft: true, .. }) => PayloadType::NAT_OA_DRAFT,
            Payload::Unknown { payload_type, .. } => *payload_type,
        }
    }

    /// An unknown payload whose RESERVED byte has its top bit set.
    ///
    /// RFC 2408 §3.2 defines that byte as RESERVED ("Unused, set to 0") and has no critical
    /// bit; IKEv2 (RFC 7296 §3.2) later gave the top bit that meaning and IKEv1
    /// implementations such as strongSwan apply it to IKEv1 too, refusing a message with an
    /// unknown payload so marked. The decoder tolerates any value and keeps it here; the
    /// session decides (see [`unsupported_critical`](super::unsupported_critical)).
    pub fn is_critical(&self) -> bool {
        matches!(self, Payload::Unknown { reserved, .. } if reserved & 0x80 != 0)
    }

    /// Decodes the body (after the generic header) of a payload of the given type.
    pub fn decode_body(
        payload_type: PayloadType,
        reserved: u8,
        body: &[u8],
    ) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let bytes = |r: &mut Reader<'_>| r.rest().to_vec();
        let p = match payload_type {
            PayloadType::SA => Payload::Sa(SaPayload::read_body(&mut r)?),
            PayloadType::KEY_EXCHANGE => Payload::KeyExchange(bytes(&mut r)),
            PayloadType::IDENTIFICATION => {
                Payload::Identification(Identification::read_body(&mut r)?)
            }
            PayloadType::CERTIFICATE => Payload::Certificate {
                encoding: CertEncoding(r.u8()?),
                data: bytes(&mut r),
            },
            PayloadType::CERTIFICATE_REQUEST => Payload::CertificateRequest {
                cert_type: CertEncoding(r.u8()?),
                authority: bytes(&mut r),
            },
            PayloadType::HASH => Payload::Hash(bytes(&mut r)),
            PayloadType::SIGNATURE => Payload::Signature(bytes(&mut r)),
            PayloadType::NONCE => Payload::Nonce(bytes(&mut r)),
            PayloadType::NOTIFICATION => Payload::Notification(Notification::read_body(&mut r)?),
            PayloadType::DELETE => Payload::Delete(Delete::read_body(&mut r)?),
            PayloadType::VENDOR_ID => Payload::VendorId(bytes(&mut r)),
            PayloadType::NAT_D | PayloadType::NAT_D_DRAFT => Payload::NatD {
                draft: payload_type == PayloadType::NAT_D_DRAFT,
                hash: bytes(&mut r),
            },
            PayloadType::NAT_OA | PayloadType::NAT_OA_DRAFT => {
                let mut oa = NatOa::read_body(&mut r)?;
                oa.draft = payload_type == PayloadType::NAT_OA_DRAFT;
                Payload::NatOa(oa)
            }
            // Proposals and transforms live only inside an SA (RFC 2408 §3.5, §3.6), and
            // NONE cannot name a payload.
            PayloadType::PROPOSAL | PayloadType::TRANSFORM | PayloadType::NONE => {
                return Err(DecodeError::UnexpectedPayload(payload_type));
            }
            _ => Payload::Unknown {
                payload_type,
                reserved,
                body: bytes(&mut r),
            },
        };
        r.expect_empty("payload")?;
        Ok(p)
    }

    /// Appends the body (no generic header).
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Payload::Sa(sa) => sa.encode_body(out),
            Payload::Identification(id) => id.encode_body(out),
            Payload::Certificate { encoding, data } => {
                out.push(encoding.0);
                out.extend_from_slice(data);
            }
            Payload::CertificateRequest {
                cert_type,
                authority,
            } => {
                out.push(cert_type.0);
                out.extend_from_slice(authority);
            }
            Payload::KeyExchange(b)
            | Payload::Hash(b)
            | Payload::Signature(b)
            | Payload::Nonce(b)
            | Payload::VendorId(b)
            | Payload::NatD { hash: b, .. }
            | Payload::Unknown { body: b, .. } => out.extend_from_slice(b),
            Payload::Notification(n) => n.encode_body(out),
            Payload::Delete(d) => d.encode_body(out),
            Payload::NatOa(oa) => oa.encode_body(out),
        }
    }

    fn reserved(&self) -> u8 {
        match self {
            Payload::Unknown { reserved, .. } => *reserved,
            _ => 0,
        }
    }
}

/// One payload of a chain as it is on the wire, before interpretation. The session needs
/// these exact bytes for its hashes: HASH_I/HASH_R cover the received SAi_b and IDii_b bodies
/// (RFC 2409 §5), and quick-mode HASH(1)/HASH(2) cover the message from the payload after
/// HASH to the end (RFC 2409 §5.5) — bytes a peer may have encoded differently from how we
/// would re-encode them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawPayload<'a> {
    pub payload_type: PayloadType,
    pub next_payload: PayloadType,
    pub reserved: u8,
    /// Offset of the generic header within the chain that was split.
    pub offset: usize,
    /// The whole payload, generic header included.
    pub bytes: &'a [u8],
    /// The payload body after the generic header.
    pub body: &'a [u8],
}

impl RawPayload<'_> {
    pub fn decode(&self) -> Result<Payload, DecodeError> {
        Payload::decode_body(self.payload_type, self.reserved, self.body)
    }
}

/// Splits a payload chain into its payloads without interpreting them; `first` is the
/// next-payload field of the ISAKMP header. The chain must end exactly at the end of `bytes`.
pub fn split_payloads(
    first: PayloadType,
    bytes: &[u8],
) -> Result<Vec<RawPayload<'_>>, DecodeError> {
    let (raw, rest) = split_payloads_partial(first, bytes)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            what: "payload chain after the last payload",
            count: rest.len(),
        });
    }
    Ok(raw)
}

/// Splits until a payload says NONE; returns the payloads and whatever follows them.
fn split_payloads_partial(
    first: PayloadType,
    bytes: &[u8],
) -> Result<(Vec<RawPayload<'_>>, &[u8]), DecodeError> {
    let mut r = Reader::new(bytes);
    let mut out = Vec::new();
    let mut next = first;
    while next != PayloadType::NONE {
        let offset = r.used();
        let next_payload = PayloadType(r.u8()?);
        let reserved = r.u8()?;
        let length = usize::from(r.u16()?);
        if length < GENERIC_HEADER_LEN {
            return Err(DecodeError::BadLength {
                what: "generic payload header",
                length,
                min: GENERIC_HEADER_LEN,
            });
        }
        let body = r.take(length - GENERIC_HEADER_LEN)?;
        out.push(RawPayload {
            payload_type: next,
            next_payload,
            reserved,
            offset,
            bytes: &bytes[offset..offset + length],
            body,
        });
        next = next_payload;
    }
    Ok((out, r.rest()))
}

/// Decodes a payload chain that must end exactly at the end of `bytes`: a plaintext message
/// body, or one that was encrypted and has had its padding removed.
pub fn decode_payloads(first: PayloadType, bytes: &[u8]) -> Result<Vec<Payload>, DecodeError> {
    split_payloads(first, bytes)?
        .iter()
        .map(RawPayload::decode)
        .collect()
}

/// Decodes a decrypted message body, whose chain is followed by the cipher padding.
///
/// The padding is not length-prefixed: the chain ends where a payload says NONE, and the
/// bytes after it must look like padding — all zero, or zero bytes followed by a last byte
/// that counts them (RFC 2409 §5.3 describes padding whose last byte is the pad length
/// "excluding the last one"; implementations such as strongSwan pad with plain zeros).
/// Anything else after the chain is an error, so only this function — never
/// [`decode_payloads`] — accepts trailing bytes.
pub fn decode_payloads_padded(
    first: PayloadType,
    bytes: &[u8],
) -> Result<Vec<Payload>, DecodeError> {
    let (raw, pad) = split_payloads_partial(first, bytes)?;
    if !is_padding(pad) {
        return Err(DecodeError::TrailingBytes {
            what: "decrypted payload chain (padding that is not zero)",
            count: pad.len(),
        });
    }
    raw.iter().map(RawPayload::decode).collect()
}

/// Like [`split_payloads`] for a decrypted body: the chain followed by padding.
pub fn split_payloads_padded(
    first: PayloadType,
    bytes: &[u8],
) -> Result<Vec<RawPayload<'_>>, DecodeError> {
    let (raw, pad) = split_payloads_partial(first, bytes)?;
    if !is_padding(pad) {
        return Err(DecodeError::TrailingBytes {
            what: "decrypted payload chain (padding that is not zero)",
            count: pad.len(),
        });
    }
    Ok(raw)
}

fn is_padding(pad: &[u8]) -> bool {
    match pad.split_last() {
        None => true,
        Some((&last, zeros)) => {
            zeros.iter().all(|&b| b == 0) && (last == 0 || usize::from(last) == zeros.len())
        }
    }
}

/// Appends the payload chain to `out`, computing every next-payload and length field, and
/// returns the type of the first payload (for the ISAKMP header), NONE when empty.
pub fn encode_payloads_into(payloads: &[Payload], out: &mut Vec<u8>) -> PayloadType {
    for (i, p) in payloads.iter().enumerate() {
        let next = payloads
            .get(i + 1)
            .map_or(PayloadType::NONE, Payload::payload_type);
        let start = out.len();
        out.push(next.0);
        out.push(p.reserved());
        let patch = LengthPatch::begin(out, start, LengthWidth::U16);
        p.encode_body(out);
        patch.finish(out);
    }
    payloads
        .first()
        .map_or(PayloadType::NONE, Payload::payload_type)
}

/// Encodes a payload chain: the first payload's type and the bytes (to be encrypted, or to
/// follow a plaintext header).
pub fn encode_payloads(payloads: &[Payload]) -> (PayloadType, Vec<u8>) {
    let mut out = Vec::new();
    let first = encode_payloads_into(payloads, &mut out);
    (first, out)
}

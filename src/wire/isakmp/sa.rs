//! The SA payload and what nests inside it: proposals, transforms and data attributes
//! (RFC 2408 §3.3–§3.6, RFC 2407 §4.6.1).
//!
//! Proposals and transforms are ISAKMP payloads of their own (types 2 and 3) with generic
//! headers, but they only ever appear inside an SA payload; their next-payload field says only
//! "another one follows" (P / T) or "last" (NONE).

use super::codec::{Codec, LengthPatch, LengthWidth, Reader};
use super::registry::{
    AhTransformId, Doi, EspTransformId, IsakmpTransformId, PayloadType, ProtocolId,
};
use super::{DecodeError, len_u8};

/// Situation bits of the IPsec DOI (RFC 2407 §4.2).
pub mod situation {
    pub const IDENTITY_ONLY: u32 = 0x01;
    pub const SECRECY: u32 = 0x02;
    pub const INTEGRITY: u32 = 0x04;
}

/// Attribute Format bit: set for TV (fixed 16-bit value), clear for TLV (RFC 2408 §3.3).
const AF_TV: u16 = 0x8000;

/// The value of a data attribute, in the form it has (or will have) on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AttributeValue {
    /// AF = 1: a 16-bit value in place of the length.
    Tv(u16),
    /// AF = 0: a length and that many value bytes.
    Tlv(Vec<u8>),
}

/// A data attribute (RFC 2408 §3.3). The type is a phase-1 ([`Phase1Attr`](super::Phase1Attr))
/// or phase-2 ([`Phase2Attr`](super::Phase2Attr)) class, depending on the proposal's protocol;
/// it is kept as the raw 15-bit number so that unknown classes round-trip.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attribute {
    /// The attribute class without the AF bit.
    pub attr_type: u16,
    pub value: AttributeValue,
}

impl Attribute {
    /// A TV attribute.
    pub fn tv(attr_type: impl Into<u16>, value: u16) -> Self {
        Self {
            attr_type: attr_type.into() & !AF_TV,
            value: AttributeValue::Tv(value),
        }
    }

    /// A TLV attribute with the given value bytes.
    pub fn tlv(attr_type: impl Into<u16>, value: Vec<u8>) -> Self {
        Self {
            attr_type: attr_type.into() & !AF_TV,
            value: AttributeValue::Tlv(value),
        }
    }

    /// A numeric attribute in the shortest form that holds it: TV up to 0xffff, otherwise a
    /// 4-byte TLV (8 bytes above `u32::MAX`). Life durations above 65535 seconds or kilobytes
    /// are "variable" attributes in RFC 2409 Appendix A and RFC 2407 §4.5 and travel as TLV.
    pub fn number(attr_type: impl Into<u16>, value: u64) -> Self {
        match u16::try_from(value) {
            Ok(v) => Self::tv(attr_type, v),
            Err(_) => match u32::try_from(value) {
                Ok(v) => Self::tlv(attr_type, v.to_be_bytes().to_vec()),
                Err(_) => Self::tlv(attr_type, value.to_be_bytes().to_vec()),
            },
        }
    }

    pub fn is_tv(&self) -> bool {
        matches!(self.value, AttributeValue::Tv(_))
    }

    /// The value as a number: the TV value, or a TLV of 1 to 8 bytes read big-endian.
    /// `None` for an empty or longer TLV.
    pub fn as_u64(&self) -> Option<u64> {
        match &self.value {
            AttributeValue::Tv(v) => Some(u64::from(*v)),
            AttributeValue::Tlv(b) if (1..=8).contains(&b.len()) => {
                Some(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
            }
            AttributeValue::Tlv(_) => None,
        }
    }

    /// The value as a 16-bit number (basic attributes such as algorithm identifiers), also
    /// when a peer sent it as a short TLV.
    pub fn as_u16(&self) -> Option<u16> {
        self.as_u64().and_then(|v| u16::try_from(v).ok())
    }

    /// The value as a 32-bit number (durations), TV or TLV.
    pub fn as_u32(&self) -> Option<u32> {
        self.as_u64().and_then(|v| u32::try_from(v).ok())
    }

    /// The value bytes as they are on the wire (2 bytes for TV).
    pub fn value_bytes(&self) -> Vec<u8> {
        match &self.value {
            AttributeValue::Tv(v) => v.to_be_bytes().to_vec(),
            AttributeValue::Tlv(b) => b.clone(),
        }
    }
}

impl Codec for Attribute {
    fn encode(&self, out: &mut Vec<u8>) {
        let t = self.attr_type & !AF_TV;
        match &self.value {
            AttributeValue::Tv(v) => {
                out.extend_from_slice(&(t | AF_TV).to_be_bytes());
                out.extend_from_slice(&v.to_be_bytes());
            }
            AttributeValue::Tlv(b) => {
                out.extend_from_slice(&t.to_be_bytes());
                let start = out.len() + 2;
                let patch = LengthPatch::begin(out, start, LengthWidth::U16);
                out.extend_from_slice(b);
                patch.finish(out);
            }
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let t = r.u16()?;
        let attr_type = t & !AF_TV;
        let value = if t & AF_TV != 0 {
            AttributeValue::Tv(r.u16()?)
        } else {
            let len = usize::from(r.u16()?);
            AttributeValue::Tlv(r.take(len)?.to_vec())
        };
        Ok(Self { attr_type, value })
    }
}

/// A transform (RFC 2408 §3.6): one alternative of a proposal.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Transform {
    pub number: u8,
    /// Interpreted per the proposal's protocol: see [`isakmp_id`](Self::isakmp_id),
    /// [`esp_id`](Self::esp_id), [`ah_id`](Self::ah_id).
    pub transform_id: u8,
    pub attributes: Vec<Attribute>,
}

impl Transform {
    pub fn isakmp_id(&self) -> IsakmpTransformId {
        IsakmpTransformId(self.transform_id)
    }

    pub fn esp_id(&self) -> EspTransformId {
        EspTransformId(self.transform_id)
    }

    pub fn ah_id(&self) -> AhTransformId {
        AhTransformId(self.transform_id)
    }

    /// The first attribute of a class (use [`attributes_of`](Self::attributes_of) for life
    /// type / duration, which may repeat).
    pub fn attribute(&self, attr_type: impl Into<u16>) -> Option<&Attribute> {
        let t = attr_type.into();
        self.attributes.iter().find(|a| a.attr_type == t)
    }

    pub fn attributes_of(&self, attr_type: impl Into<u16>) -> impl Iterator<Item = &Attribute> {
        let t = attr_type.into();
        self.attributes.iter().filter(move |a| a.attr_type == t)
    }

    /// Reads a transform body: after the generic header.
    fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let number = r.u8()?;
        let transform_id = r.u8()?;
        let _reserved = r.u16()?; // RESERVED2: sent as 0, ignored on receipt
        let mut attributes = Vec::new();
        while r.any_left() {
            attributes.push(Attribute::read(r)?);
        }
        Ok(Self {
            number,
            transform_id,
            attributes,
        })
    }

    fn encode_with(&self, out: &mut Vec<u8>, last: bool) {
        let start = out.len();
        out.push(if last { 0 } else { PayloadType::TRANSFORM.0 });
        out.push(0);
        let patch = LengthPatch::begin(out, start, LengthWidth::U16);
        out.push(self.number);
        out.push(self.transform_id);
        out.extend_from_slice(&[0, 0]);
        for a in &self.attributes {
            a.encode(out);
        }
        patch.finish(out);
    }
}

/// A proposal (RFC 2408 §3.5). Proposals with the same number form one offer (AND, e.g.
/// AH plus ESP); different numbers are alternatives (OR).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Proposal {
    pub number: u8,
    pub protocol_id: ProtocolId,
    /// Empty in phase 1 (RFC 2409 §5: the cookies are the SPI); 4 bytes for AH/ESP.
    pub spi: Vec<u8>,
    pub transforms: Vec<Transform>,
}

impl Proposal {
    /// The SPI as a number when it is 4 bytes long (AH, ESP).
    pub fn spi_u32(&self) -> Option<u32> {
        <[u8; 4]>::try_from(self.spi.as_slice())
            .ok()
            .map(u32::from_be_bytes)
    }

    fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let number = r.u8()?;
        let protocol_id = ProtocolId(r.u8()?);
        let spi_size = usize::from(r.u8()?);
        let count = r.u8()?;
        let spi = r.take(spi_size)?.to_vec();
        if count == 0 {
            return Err(DecodeError::BadProposalSyntax(
                "proposal without transforms",
            ));
        }
        let mut transforms = Vec::with_capacity(usize::from(count));
        for i in 0..count {
            let (next, mut body) = read_child(r, "transform", 8)?;
            transforms.push(Transform::read_body(&mut body)?);
            body.expect_empty("transform")?;
            let last = i + 1 == count;
            match (last, next) {
                (false, PayloadType::TRANSFORM) | (true, PayloadType::NONE) => {}
                (false, _) => {
                    return Err(DecodeError::BadProposalSyntax(
                        "fewer transforms than the proposal announces",
                    ));
                }
                (true, _) => {
                    return Err(DecodeError::BadProposalSyntax(
                        "last transform announced does not end the chain",
                    ));
                }
            }
        }
        r.expect_empty("proposal (more transforms than announced)")?;
        Ok(Self {
            number,
            protocol_id,
            spi,
            transforms,
        })
    }

    fn encode_with(&self, out: &mut Vec<u8>, last: bool) {
        let start = out.len();
        out.push(if last { 0 } else { PayloadType::PROPOSAL.0 });
        out.push(0);
        let patch = LengthPatch::begin(out, start, LengthWidth::U16);
        out.push(self.number);
        out.push(self.protocol_id.0);
        out.push(len_u8(self.spi.len()));
        out.push(len_u8(self.transforms.len()));
        out.extend_from_slice(&self.spi);
        for (i, t) in self.transforms.iter().enumerate() {
            t.encode_with(out, i + 1 == self.transforms.len());
        }
        patch.finish(out);
    }
}

/// Reads a proposal or transform generic header and returns its next-payload field and a
/// reader over its body. `min` is the smallest legal length, header included.
fn read_child<'a>(
    r: &mut Reader<'a>,
    what: &'static str,
    min: usize,
) -> Result<(PayloadType, Reader<'a>), DecodeError> {
    let next = PayloadType(r.u8()?);
    let _reserved = r.u8()?;
    let length = usize::from(r.u16()?);
    if length < min {
        return Err(DecodeError::BadLength { what, length, min });
    }
    Ok((next, r.sub(length - 4)?))
}

/// The SA payload body (RFC 2408 §3.4 with the IPsec DOI situation of RFC 2407 §4.6.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SaPayload {
    pub doi: Doi,
    /// A bitmap of [`situation`] bits; we only ever send and accept SIT_IDENTITY_ONLY.
    pub situation: u32,
    pub proposals: Vec<Proposal>,
}

impl SaPayload {
    /// Reads the body of an SA payload (after the generic header).
    pub(crate) fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let doi = Doi(r.u32()?);
        let situation = r.u32()?;
        // SIT_SECRECY / SIT_INTEGRITY add labelled-domain fields after the situation
        // (RFC 2407 §4.6.1); nobody uses them with IKE and we cannot parse what follows.
        if situation & (situation::SECRECY | situation::INTEGRITY) != 0 {
            return Err(DecodeError::Malformed(
                "SA with a labelled situation (SIT_SECRECY/SIT_INTEGRITY)",
            ));
        }
        let mut proposals = Vec::new();
        loop {
            let (next, mut body) = read_child(r, "proposal", 8)?;
            proposals.push(Proposal::read_body(&mut body)?);
            match next {
                PayloadType::NONE => break,
                PayloadType::PROPOSAL => {}
                _ => {
                    return Err(DecodeError::BadProposalSyntax(
                        "proposal followed by something other than a proposal",
                    ));
                }
            }
        }
        r.expect_empty("SA payload after the last proposal")?;
        Ok(Self {
            doi,
            situation,
            proposals,
        })
    }

    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.doi.0.to_be_bytes());
        out.extend_from_slice(&self.situation.to_be_bytes());
        for (i, p) in self.proposals.iter().enumerate() {
            p.encode_with(out, i + 1 == self.proposals.len());
        }
    }
}

//! The Identification payload of the IPsec DOI (RFC 2407 §4.6.2) and the typed forms of its
//! data. The data stay as received bytes in [`Identification`]; [`Identification::value`]
//! interprets them, so a malformed identity surfaces where the session can answer it with
//! INVALID-ID-INFORMATION rather than as a payload decode failure.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::DecodeError;
use super::codec::Reader;
use super::registry::IdType;
use crate::wire::IpProtocol;

/// An Identification payload body.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identification {
    pub id_type: IdType,
    /// IP protocol the identity is restricted to; 0 = any (RFC 2407 §4.6.2). Phase-1 IDs
    /// carry 0 or UDP (17) with port 0 or 500 (RFC 2407 §4.6.2.1).
    pub protocol_id: IpProtocol,
    pub port: u16,
    pub data: Vec<u8>,
}

/// The interpreted identification data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdValue<'a> {
    Ipv4Addr(Ipv4Addr),
    /// Address and netmask (RFC 2407 §4.6.2.4). The mask need not be contiguous on the wire;
    /// see [`IdValue::prefix_len`].
    Ipv4Subnet {
        addr: Ipv4Addr,
        mask: Ipv4Addr,
    },
    /// First and last address, inclusive (RFC 2407 §4.6.2.7).
    Ipv4Range {
        start: Ipv4Addr,
        end: Ipv4Addr,
    },
    Ipv6Addr(Ipv6Addr),
    Ipv6Subnet {
        addr: Ipv6Addr,
        mask: Ipv6Addr,
    },
    Ipv6Range {
        start: Ipv6Addr,
        end: Ipv6Addr,
    },
    /// A domain name, no terminator (RFC 2407 §4.6.2.2); not necessarily UTF-8.
    Fqdn(&'a [u8]),
    /// `user@domain` (RFC 2407 §4.6.2.3).
    UserFqdn(&'a [u8]),
    DerAsn1Dn(&'a [u8]),
    DerAsn1Gn(&'a [u8]),
    KeyId(&'a [u8]),
    /// An ID type we do not interpret.
    Other(IdType, &'a [u8]),
}

impl IdValue<'_> {
    pub fn id_type(&self) -> IdType {
        match self {
            IdValue::Ipv4Addr(_) => IdType::IPV4_ADDR,
            IdValue::Ipv4Subnet { .. } => IdType::IPV4_ADDR_SUBNET,
            IdValue::Ipv4Range { .. } => IdType::IPV4_ADDR_RANGE,
            IdValue::Ipv6Addr(_) => IdType::IPV6_ADDR,
            IdValue::Ipv6Subnet { .. } => IdType::IPV6_ADDR_SUBNET,
            IdValue::Ipv6Range { .. } => IdType::IPV6_ADDR_RANGE,
            IdValue::Fqdn(_) => IdType::FQDN,
            IdValue::UserFqdn(_) => IdType::USER_FQDN,
            IdValue::DerAsn1Dn(_) => IdType::DER_ASN1_DN,
            IdValue::DerAsn1Gn(_) => IdType::DER_ASN1_GN,
            IdValue::KeyId(_) => IdType::KEY_ID,
            IdValue::Other(t, _) => *t,
        }
    }

    /// The prefix length of a subnet whose mask is contiguous; `None` otherwise or for
    /// non-subnet values.
    pub fn prefix_len(&self) -> Option<u8> {
        let (ones, bits) = match self {
            IdValue::Ipv4Subnet { mask, .. } => (u128::from(u32::from(*mask)) << 96, 32),
            IdValue::Ipv6Subnet { mask, .. } => (u128::from(*mask), 128),
            _ => return None,
        };
        let n = ones.leading_ones();
        (ones.checked_shl(n).unwrap_or(0) == 0 && n <= bits).then_some(n as u8)
    }

    /// The identification data bytes of this value.
    pub fn to_data(&self) -> Vec<u8> {
        match self {
            IdValue::Ipv4Addr(a) => a.octets().to_vec(),
            IdValue::Ipv4Subnet { addr: a, mask: b } | IdValue::Ipv4Range { start: a, end: b } => {
                [a.octets(), b.octets()].concat()
            }
            IdValue::Ipv6Addr(a) => a.octets().to_vec(),
            IdValue::Ipv6Subnet { addr: a, mask: b } | IdValue::Ipv6Range { start: a, end: b } => {
                [a.octets(), b.octets()].concat()
            }
            IdValue::Fqdn(b)
            | IdValue::UserFqdn(b)
            | IdValue::DerAsn1Dn(b)
            | IdValue::DerAsn1Gn(b)
            | IdValue::KeyId(b)
            | IdValue::Other(_, b) => b.to_vec(),
        }
    }
}

fn v4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

fn v6(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(b);
    Ipv6Addr::from(o)
}

impl Identification {
    /// An identity with protocol and port 0 (any).
    pub fn new(value: IdValue<'_>) -> Self {
        Self::with_ports(value, IpProtocol(0), 0)
    }

    pub fn with_ports(value: IdValue<'_>, protocol_id: IpProtocol, port: u16) -> Self {
        Self {
            id_type: value.id_type(),
            protocol_id,
            port,
            data: value.to_data(),
        }
    }

    /// ID_IPV4_ADDR_SUBNET from an address and prefix length (0..=32, clamped).
    pub fn ipv4_subnet(addr: Ipv4Addr, prefix_len: u8) -> Self {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(prefix_len.min(32)))
            .unwrap_or(0);
        Self::new(IdValue::Ipv4Subnet {
            addr,
            mask: Ipv4Addr::from(mask),
        })
    }

    /// Interprets the data per the ID type. Addresses must have exactly their size.
    pub fn value(&self) -> Result<IdValue<'_>, DecodeError> {
        let d = self.data.as_slice();
        let exact = |n: usize, what: &'static str| {
            if d.len() == n {
                Ok(())
            } else {
                Err(DecodeError::BadLength {
                    what,
                    length: d.len(),
                    min: n,
                })
            }
        };
        Ok(match self.id_type {
            IdType::IPV4_ADDR => {
                exact(4, "ID_IPV4_ADDR data")?;
                IdValue::Ipv4Addr(v4(d))
            }
            IdType::IPV4_ADDR_SUBNET => {
                exact(8, "ID_IPV4_ADDR_SUBNET data")?;
                IdValue::Ipv4Subnet {
                    addr: v4(&d[..4]),
                    mask: v4(&d[4..]),
                }
            }
            IdType::IPV4_ADDR_RANGE => {
                exact(8, "ID_IPV4_ADDR_RANGE data")?;
                IdValue::Ipv4Range {
                    start: v4(&d[..4]),
                    end: v4(&d[4..]),
                }
            }
            IdType::IPV6_ADDR => {
                exact(16, "ID_IPV6_ADDR data")?;
                IdValue::Ipv6Addr(v6(d))
            }
            IdType::IPV6_ADDR_SUBNET => {
                exact(32, "ID_IPV6_ADDR_SUBNET data")?;
                IdValue::Ipv6Subnet {
                    addr: v6(&d[..16]),
                    mask: v6(&d[16..]),
                }
            }
            IdType::IPV6_ADDR_RANGE => {
                exact(32, "ID_IPV6_ADDR_RANGE data")?;
                IdValue::Ipv6Range {
                    start: v6(&d[..16]),
                    end: v6(&d[16..]),
                }
            }
            IdType::FQDN => IdValue::Fqdn(d),
            IdType::USER_FQDN => IdValue::UserFqdn(d),
            IdType::DER_ASN1_DN => IdValue::DerAsn1Dn(d),
            IdType::DER_ASN1_GN => IdValue::DerAsn1Gn(d),
            IdType::KEY_ID => IdValue::KeyId(d),
            other => IdValue::Other(other, d),
        })
    }

    pub(crate) fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            id_type: IdType(r.u8()?),
            protocol_id: IpProtocol(r.u8()?),
            port: r.u16()?,
            data: r.rest().to_vec(),
        })
    }

    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(self.id_type.0);
        out.push(self.protocol_id.0);
        out.extend_from_slice(&self.port.to_be_bytes());
        out.extend_from_slice(&self.data);
    }
}

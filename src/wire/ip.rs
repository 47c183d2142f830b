//! IP protocol numbers (IANA "Assigned Internet Protocol Numbers") and the version-independent
//! IP representation.

use std::fmt;

use super::ipv4::Ipv4Repr;

/// An IP protocol / next-header number. Open newtype: unknown values round-trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// IPv6 hop-by-hop options (RFC 8200 §4.3).
    pub const HOP_BY_HOP: Self = Self(0);
    pub const ICMP: Self = Self(1);
    /// IPv4 encapsulated in IP: the ESP/AH next header of a tunnel-mode IPv4 packet.
    pub const IPV4: Self = Self(4);
    pub const TCP: Self = Self(6);
    pub const UDP: Self = Self(17);
    /// IPv6 encapsulated in IP (tunnel-mode IPv6 inner packet).
    pub const IPV6: Self = Self(41);
    pub const ESP: Self = Self(50);
    pub const AH: Self = Self(51);
    pub const ICMPV6: Self = Self(58);
    /// "No next header": an ESP dummy packet (RFC 4303 §2.6).
    pub const NO_NEXT_HEADER: Self = Self(59);

    /// The IANA keyword for known values.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::HOP_BY_HOP => "HOPOPT",
            Self::ICMP => "ICMP",
            Self::IPV4 => "IPv4",
            Self::TCP => "TCP",
            Self::UDP => "UDP",
            Self::IPV6 => "IPv6",
            Self::ESP => "ESP",
            Self::AH => "AH",
            Self::ICMPV6 => "IPv6-ICMP",
            Self::NO_NEXT_HEADER => "IPv6-NoNxt",
            _ => return None,
        })
    }
}

impl From<u8> for IpProtocol {
    fn from(v: u8) -> Self {
        Self(v)
    }
}

impl From<IpProtocol> for u8 {
    fn from(p: IpProtocol) -> u8 {
        p.0
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{}", self.0),
        }
    }
}

/// An IP header of either version; only IPv4 exists today, IPv6 will join it here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpRepr {
    Ipv4(Ipv4Repr),
}

impl IpRepr {
    /// Length of the emitted header.
    pub fn buffer_len(&self) -> usize {
        match self {
            IpRepr::Ipv4(r) => r.buffer_len(),
        }
    }

    /// The protocol of the payload.
    pub fn next_header(&self) -> IpProtocol {
        match self {
            IpRepr::Ipv4(r) => r.protocol,
        }
    }

    /// Emits the header into `buf` (which must hold at least `buffer_len()` bytes).
    pub fn emit(&self, buf: &mut [u8]) -> super::Result<()> {
        match self {
            IpRepr::Ipv4(r) => r.emit(buf),
        }
    }
}

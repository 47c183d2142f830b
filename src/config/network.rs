//! Protected networks (SmartWare `protected-network host|subnet|range`): the security policy's
//! traffic selectors and the quick-mode identities (ID_IPV4_ADDR, ID_IPV4_ADDR_SUBNET,
//! ID_IPV4_ADDR_RANGE and their IPv6 forms, RFC 2407 §4.6.2.1).
//!
//! A spec holds addresses of one family. Arithmetic is done on the address as an unsigned
//! number of its family's width (32 or 128 bits) widened to `u128`, so one code path serves
//! both; an address of the other family is never contained and never overlaps.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP version. A protected network, an SPD entry and a quick-mode ID carry one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    /// Address width in bits: the longest prefix.
    pub const fn bits(self) -> u8 {
        match self {
            Self::V4 => 32,
            Self::V6 => 128,
        }
    }

    /// The highest address as a number of this family's width.
    pub const fn max(self) -> u128 {
        match self {
            Self::V4 => u32::MAX as u128,
            Self::V6 => u128::MAX,
        }
    }

    /// The address whose number (see [`ordinal`]) is `n`, truncated to the family's width.
    pub fn addr(self, n: u128) -> IpAddr {
        match self {
            Self::V4 => IpAddr::V4(Ipv4Addr::from(n as u32)),
            Self::V6 => IpAddr::V6(Ipv6Addr::from(n)),
        }
    }

    /// The prefix of length `prefix` as a mask over the family's width (`prefix` is clamped).
    pub fn mask(self, prefix: u8) -> u128 {
        let bits = self.bits();
        let p = prefix.min(bits);
        if p == 0 {
            0
        } else {
            (self.max() >> (bits - p)) << (bits - p)
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        })
    }
}

/// An address as an unsigned number of its family's width.
pub fn ordinal(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// One side of a protected network, as written in a profile. Both addresses of a range are of
/// one family (the parser refuses a mixed one; a mixed range built in code is read as its start
/// host, never as a block spanning families).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NetworkSpec {
    Host(IpAddr),
    Subnet { addr: IpAddr, prefix: u8 },
    Range { start: IpAddr, end: IpAddr },
}

impl NetworkSpec {
    /// `0.0.0.0/0`: every IPv4 address (`"any"` when neither side of the pair is IPv6).
    pub const ANY: Self = Self::Subnet {
        addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        prefix: 0,
    };

    /// `::/0`: every IPv6 address (`"any"` opposite an IPv6 network).
    pub const ANY6: Self = Self::Subnet {
        addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        prefix: 0,
    };

    /// Every address of `family`.
    pub const fn any(family: Family) -> Self {
        match family {
            Family::V4 => Self::ANY,
            Family::V6 => Self::ANY6,
        }
    }

    pub fn family(&self) -> Family {
        match *self {
            Self::Host(a) | Self::Subnet { addr: a, .. } | Self::Range { start: a, .. } => {
                Family::of(a)
            }
        }
    }

    /// The first and last address as numbers of the family's width (see [`ordinal`]).
    pub fn bounds(&self) -> (u128, u128) {
        let f = self.family();
        match *self {
            Self::Host(a) => (ordinal(a), ordinal(a)),
            Self::Subnet { addr, prefix } => {
                let m = f.mask(prefix);
                let a = ordinal(addr);
                (a & m, a | (f.max() & !m))
            }
            Self::Range { start, end } if Family::of(end) == f => (ordinal(start), ordinal(end)),
            Self::Range { start, .. } => (ordinal(start), ordinal(start)),
        }
    }

    pub fn first(&self) -> IpAddr {
        self.family().addr(self.bounds().0)
    }

    pub fn last(&self) -> IpAddr {
        self.family().addr(self.bounds().1)
    }

    /// How many addresses the spec holds, saturating at `u128::MAX` (`::/0` holds 2^128).
    pub fn size(&self) -> u128 {
        let (a, b) = self.bounds();
        (b - a).saturating_add(1)
    }

    /// True when `ip` is in the network (an address of the other family never is).
    pub fn contains(&self, ip: impl Into<IpAddr>) -> bool {
        let ip = ip.into();
        if Family::of(ip) != self.family() {
            return false;
        }
        let (a, b) = self.bounds();
        (a..=b).contains(&ordinal(ip))
    }

    /// True when every address of `other` is also in `self` (never across families).
    pub fn covers(&self, other: &NetworkSpec) -> bool {
        let ((a, b), (c, d)) = (self.bounds(), other.bounds());
        self.family() == other.family() && a <= c && d <= b
    }

    /// True when some address is in both (never across families).
    pub fn overlaps(&self, other: &NetworkSpec) -> bool {
        let ((a, b), (c, d)) = (self.bounds(), other.bounds());
        self.family() == other.family() && a <= d && c <= b
    }

    /// The subnet form (`addr/len`) when the spec is a CIDR block, for installing routes.
    pub fn as_cidr(&self) -> Option<(IpAddr, u8)> {
        let f = self.family();
        match *self {
            Self::Host(a) => Some((a, f.bits())),
            Self::Subnet { prefix, .. } => Some((self.first(), prefix.min(f.bits()))),
            Self::Range { .. } => {
                let (start, end) = self.bounds();
                // A whole-family range holds 2^bits addresses: one more than fits in u128.
                if start == 0 && end == f.max() {
                    return Some((f.addr(0), 0));
                }
                let size = end - start + 1;
                if size.is_power_of_two() && start % size == 0 {
                    Some((f.addr(start), f.bits() - size.trailing_zeros() as u8))
                } else {
                    None
                }
            }
        }
    }
}

/// Why a protected network string did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetworkSpecError {
    #[error("`{0}` is not an IPv4 address, subnet (a.b.c.d/len) or range (a.b.c.d-e.f.g.h)")]
    Syntax(String),
    #[error(
        "`{0}` is not an IPv6 address, subnet (2001:db8::/len) or range (2001:db8::1-2001:db8::9)"
    )]
    Syntax6(String),
    #[error("prefix length {0} is out of range 0..=32")]
    Prefix(u32),
    #[error("IPv6 prefix length {0} is out of range 0..=128")]
    Prefix6(u32),
    #[error("range `{0}` ends before it starts")]
    Range(String),
    #[error("range `{0}` mixes IPv4 and IPv6: both ends must be of one family")]
    MixedRange(String),
}

impl FromStr for NetworkSpec {
    type Err = NetworkSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "any" {
            return Ok(Self::ANY);
        }
        // A colon appears only in IPv6 addresses: it picks the message a typo gets.
        let syntax = || {
            if s.contains(':') {
                NetworkSpecError::Syntax6(s.to_string())
            } else {
                NetworkSpecError::Syntax(s.to_string())
            }
        };
        if let Some((a, p)) = s.split_once('/') {
            let addr: IpAddr = a.trim().parse().map_err(|_| syntax())?;
            let prefix: u32 = p.trim().parse().map_err(|_| syntax())?;
            match addr {
                IpAddr::V4(_) if prefix > 32 => return Err(NetworkSpecError::Prefix(prefix)),
                IpAddr::V6(_) if prefix > 128 => return Err(NetworkSpecError::Prefix6(prefix)),
                _ => {}
            }
            return Ok(Self::Subnet {
                addr,
                prefix: prefix as u8,
            });
        }
        if let Some((a, b)) = s.split_once('-') {
            let start: IpAddr = a.trim().parse().map_err(|_| syntax())?;
            let end: IpAddr = b.trim().parse().map_err(|_| syntax())?;
            if Family::of(start) != Family::of(end) {
                return Err(NetworkSpecError::MixedRange(s.to_string()));
            }
            if ordinal(end) < ordinal(start) {
                return Err(NetworkSpecError::Range(s.to_string()));
            }
            return Ok(Self::Range { start, end });
        }
        s.parse().map(Self::Host).map_err(|_| syntax())
    }
}

impl fmt::Display for NetworkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host(a) => write!(f, "{a}"),
            Self::Subnet { addr, prefix } => write!(f, "{addr}/{prefix}"),
            Self::Range { start, end } => write!(f, "{start}-{end}"),
        }
    }
}

/// A protected network pair: cleartext between `local` and `remote` goes through the tunnel.
/// Validation keeps both sides of one family (`config::policy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProtectedNetwork {
    pub local: NetworkSpec,
    pub remote: NetworkSpec,
}

impl ProtectedNetwork {
    /// The family of the pair (its remote side's; validation makes both sides agree).
    pub fn family(&self) -> Family {
        self.remote.family()
    }

    /// True when some packet could match both: the two overlap on the local and the remote side.
    pub fn overlaps(&self, other: &ProtectedNetwork) -> bool {
        self.local.overlaps(&other.local) && self.remote.overlaps(&other.remote)
    }

    /// True when every (local, remote) pair of `self` is also in `other` and the two are not
    /// the same set: `self` is more specific and wins the policy lookup (see
    /// `config::conflicts::ambiguous` for the rule the validator enforces).
    pub fn is_more_specific_than(&self, other: &ProtectedNetwork) -> bool {
        let same =
            |a: &NetworkSpec, b: &NetworkSpec| a.family() == b.family() && a.bounds() == b.bounds();
        other.local.covers(&self.local)
            && other.remote.covers(&self.remote)
            && !(same(&self.local, &other.local) && same(&self.remote, &other.remote))
    }

    /// How many (local, remote) address pairs the selector holds, saturating at `u128::MAX`
    /// (IPv6 blocks easily exceed it): among several matching policies the smallest is the
    /// most specific one.
    pub fn size(&self) -> u128 {
        self.local.size().saturating_mul(self.remote.size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> NetworkSpec {
        s.parse().unwrap()
    }

    #[test]
    fn parses_each_form() {
        assert_eq!(
            spec("198.51.100.7"),
            NetworkSpec::Host(Ipv4Addr::new(198, 51, 100, 7).into())
        );
        let s = spec("198.51.100.9/24");
        assert_eq!(s.first(), Ipv4Addr::new(198, 51, 100, 0));
        assert_eq!(s.last(), Ipv4Addr::new(198, 51, 100, 255));
        let r = spec("198.51.100.10-198.51.100.20");
        assert!(r.contains(Ipv4Addr::new(198, 51, 100, 15)));
        assert!(!r.contains(Ipv4Addr::new(198, 51, 100, 21)));
        assert_eq!(spec("any"), NetworkSpec::ANY);
        assert!(NetworkSpec::ANY.contains(Ipv4Addr::new(255, 255, 255, 255)));
        assert!("10.0.0.1/33".parse::<NetworkSpec>().is_err());
        assert!("10.0.0.9-10.0.0.1".parse::<NetworkSpec>().is_err());
        assert!("nonsense".parse::<NetworkSpec>().is_err());
    }

    #[test]
    fn ipv4_messages_unchanged() {
        let e = |s: &str| s.parse::<NetworkSpec>().unwrap_err().to_string();
        assert_eq!(
            e("nonsense"),
            "`nonsense` is not an IPv4 address, subnet (a.b.c.d/len) or range (a.b.c.d-e.f.g.h)"
        );
        assert_eq!(e("10.0.0.1/33"), "prefix length 33 is out of range 0..=32");
        assert_eq!(
            e("10.0.0.9-10.0.0.1"),
            "range `10.0.0.9-10.0.0.1` ends before it starts"
        );
    }

    #[test]
    fn parses_each_ipv6_form() {
        let h = spec("2001:db8::7");
        assert_eq!(h, NetworkSpec::Host("2001:db8::7".parse().unwrap()));
        assert_eq!(h.family(), Family::V6);
        let s = spec("2001:db8:1::9/48");
        assert_eq!(s.first(), "2001:db8:1::".parse::<IpAddr>().unwrap());
        assert_eq!(
            s.last(),
            "2001:db8:1:ffff:ffff:ffff:ffff:ffff"
                .parse::<IpAddr>()
                .unwrap()
        );
        assert_eq!(s.as_cidr(), Some(("2001:db8:1::".parse().unwrap(), 48)));
        let r = spec("2001:db8::10-2001:db8::20");
        assert!(r.contains("2001:db8::15".parse::<Ipv6Addr>().unwrap()));
        assert!(!r.contains("2001:db8::21".parse::<Ipv6Addr>().unwrap()));
        assert_eq!(r.size(), 0x11);
        assert_eq!(spec("::/0"), NetworkSpec::ANY6);
        assert_eq!(NetworkSpec::ANY6.size(), u128::MAX);
        assert!(NetworkSpec::ANY6.contains(Ipv6Addr::from(u128::MAX)));
        assert_eq!(spec("2001:db8::/128").as_cidr().map(|c| c.1), Some(128));
        assert!(spec("2001:db8::/128").contains("2001:db8::".parse::<IpAddr>().unwrap()));
    }

    #[test]
    fn ipv6_errors_are_specific() {
        let e = |s: &str| s.parse::<NetworkSpec>().unwrap_err();
        assert_eq!(e("2001:db8::/129"), NetworkSpecError::Prefix6(129));
        assert!(matches!(e("2001:db8::/48/1"), NetworkSpecError::Syntax6(_)));
        assert!(matches!(e("2001:db8::zz"), NetworkSpecError::Syntax6(_)));
        assert!(matches!(
            e("2001:db8::20-2001:db8::10"),
            NetworkSpecError::Range(_)
        ));
        let mixed = e("192.0.2.1-2001:db8::1");
        assert_eq!(
            mixed,
            NetworkSpecError::MixedRange("192.0.2.1-2001:db8::1".into())
        );
        assert!(mixed.to_string().contains("mixes IPv4 and IPv6"));
    }

    #[test]
    fn families_never_meet() {
        // ::/0 and 0.0.0.0/0 share the numbers 0..2^32 but not a single address.
        assert!(!NetworkSpec::ANY.overlaps(&NetworkSpec::ANY6));
        assert!(!NetworkSpec::ANY6.covers(&spec("0.0.0.0/32")));
        assert!(!NetworkSpec::ANY.contains("::1".parse::<IpAddr>().unwrap()));
        assert!(!NetworkSpec::ANY6.contains(Ipv4Addr::new(0, 0, 0, 1)));
        // IPv4-mapped addresses are IPv6 addresses here, not IPv4 ones.
        assert!(!NetworkSpec::ANY.contains("::ffff:192.0.2.1".parse::<IpAddr>().unwrap()));
        let v6 = ProtectedNetwork {
            local: spec("2001:db8:1::/48"),
            remote: spec("2001:db8:2::/48"),
        };
        let v4 = ProtectedNetwork {
            local: spec("any"),
            remote: spec("any"),
        };
        assert!(!v6.overlaps(&v4) && !v4.overlaps(&v6));
        assert!(!v6.is_more_specific_than(&v4));
        assert_eq!(v6.size(), u128::MAX);
    }

    #[test]
    fn ipv6_cover_and_overlap() {
        let wide = spec("2001:db8::/32");
        let narrow = spec("2001:db8:5::/48");
        assert!(wide.covers(&narrow) && !narrow.covers(&wide));
        assert!(wide.overlaps(&narrow) && narrow.overlaps(&wide));
        let a = spec("2001:db8::10-2001:db8::20");
        let b = spec("2001:db8::20-2001:db8::30");
        let c = spec("2001:db8::21-2001:db8::30");
        assert!(a.overlaps(&b) && !a.overlaps(&c));
        assert!(spec("2001:db8::7").overlaps(&spec("2001:db8::7/128")));
    }

    #[test]
    fn cidr_of_aligned_range() {
        let r = spec("192.0.2.0-192.0.2.255");
        assert_eq!(r.as_cidr(), Some((Ipv4Addr::new(192, 0, 2, 0).into(), 24)));
        let r = spec("192.0.2.1-192.0.2.3");
        assert_eq!(r.as_cidr(), None);
        let all = spec("0.0.0.0-255.255.255.255");
        assert_eq!(all.as_cidr(), Some((Ipv4Addr::UNSPECIFIED.into(), 0)));
        let r = spec("2001:db8::100-2001:db8::1ff");
        assert_eq!(r.as_cidr(), Some(("2001:db8::100".parse().unwrap(), 120)));
        let all6 = spec("::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        assert_eq!(all6.as_cidr(), Some(("::".parse().unwrap(), 0)));
        assert_eq!(spec("2001:db8::1-2001:db8::2").as_cidr(), None);
    }

    #[test]
    fn mixed_range_built_in_code_is_its_start_host() {
        let odd = NetworkSpec::Range {
            start: Ipv4Addr::new(192, 0, 2, 1).into(),
            end: "2001:db8::1".parse().unwrap(),
        };
        assert_eq!(odd.size(), 1);
        assert!(odd.contains(Ipv4Addr::new(192, 0, 2, 1)));
        assert!(!odd.contains(Ipv4Addr::new(192, 0, 2, 2)));
    }
}

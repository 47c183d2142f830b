//! Protected networks (SmartWare `protected-network host|subnet|range`): the security policy's
//! traffic selectors and the quick-mode identities (ID_IPV4_ADDR, ID_IPV4_ADDR_SUBNET,
//! ID_IPV4_ADDR_RANGE, RFC 2407 §4.6.2.1).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// One side of a protected network, as written in a profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NetworkSpec {
    Host(Ipv4Addr),
    Subnet { addr: Ipv4Addr, prefix: u8 },
    Range { start: Ipv4Addr, end: Ipv4Addr },
}

impl NetworkSpec {
    pub const ANY: Self = Self::Subnet {
        addr: Ipv4Addr::UNSPECIFIED,
        prefix: 0,
    };

    pub fn first(&self) -> Ipv4Addr {
        match *self {
            Self::Host(a) => a,
            Self::Subnet { addr, prefix } => Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            Self::Range { start, .. } => start,
        }
    }

    pub fn last(&self) -> Ipv4Addr {
        match *self {
            Self::Host(a) => a,
            Self::Subnet { addr, prefix } => Ipv4Addr::from(u32::from(addr) | !mask(prefix)),
            Self::Range { end, .. } => end,
        }
    }

    /// True when `ip` is in the network (an address of the other family never is).
    pub fn contains(&self, ip: impl Into<IpAddr>) -> bool {
        let IpAddr::V4(ip) = ip.into() else {
            return false;
        };
        let ip = u32::from(ip);
        u32::from(self.first()) <= ip && ip <= u32::from(self.last())
    }

    /// True when every address of `other` is also in `self`.
    pub fn covers(&self, other: &NetworkSpec) -> bool {
        u32::from(self.first()) <= u32::from(other.first())
            && u32::from(other.last()) <= u32::from(self.last())
    }

    pub fn overlaps(&self, other: &NetworkSpec) -> bool {
        u32::from(self.first()) <= u32::from(other.last())
            && u32::from(other.first()) <= u32::from(self.last())
    }

    /// The subnet form (`a.b.c.d/len`) when the spec is a CIDR block, for installing routes.
    pub fn as_cidr(&self) -> Option<(Ipv4Addr, u8)> {
        match *self {
            Self::Host(a) => Some((a, 32)),
            Self::Subnet { prefix, .. } => Some((self.first(), prefix)),
            Self::Range { start, end } => {
                let size = u32::from(end)
                    .wrapping_sub(u32::from(start))
                    .wrapping_add(1);
                if size.is_power_of_two() && u32::from(start) % size == 0 {
                    Some((start, 32 - size.trailing_zeros() as u8))
                } else {
                    None
                }
            }
        }
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

/// Why a protected network string did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetworkSpecError {
    #[error("`{0}` is not an IPv4 address, subnet (a.b.c.d/len) or range (a.b.c.d-e.f.g.h)")]
    Syntax(String),
    #[error("prefix length {0} is out of range 0..=32")]
    Prefix(u32),
    #[error("range `{0}` ends before it starts")]
    Range(String),
}

impl FromStr for NetworkSpec {
    type Err = NetworkSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let syntax = || NetworkSpecError::Syntax(s.to_string());
        if s == "any" {
            return Ok(Self::ANY);
        }
        if let Some((a, p)) = s.split_once('/') {
            let addr: Ipv4Addr = a.parse().map_err(|_| syntax())?;
            let prefix: u32 = p.parse().map_err(|_| syntax())?;
            if prefix > 32 {
                return Err(NetworkSpecError::Prefix(prefix));
            }
            return Ok(Self::Subnet {
                addr,
                prefix: prefix as u8,
            });
        }
        if let Some((a, b)) = s.split_once('-') {
            let start: Ipv4Addr = a.trim().parse().map_err(|_| syntax())?;
            let end: Ipv4Addr = b.trim().parse().map_err(|_| syntax())?;
            if u32::from(end) < u32::from(start) {
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProtectedNetwork {
    pub local: NetworkSpec,
    pub remote: NetworkSpec,
}

impl ProtectedNetwork {
    /// True when some packet could match both: the two overlap on the local and the remote side.
    pub fn overlaps(&self, other: &ProtectedNetwork) -> bool {
        self.local.overlaps(&other.local) && self.remote.overlaps(&other.remote)
    }

    /// True when every (local, remote) pair of `self` is also in `other` and the two are not
    /// the same set: `self` is more specific and wins the policy lookup (see
    /// `config::conflicts::ambiguous` for the rule the validator enforces).
    pub fn is_more_specific_than(&self, other: &ProtectedNetwork) -> bool {
        let same =
            |a: &NetworkSpec, b: &NetworkSpec| a.first() == b.first() && a.last() == b.last();
        other.local.covers(&self.local)
            && other.remote.covers(&self.remote)
            && !(same(&self.local, &other.local) && same(&self.remote, &other.remote))
    }

    /// How many (local, remote) address pairs the selector holds: among several matching
    /// policies the SPD picks the smallest, which is the most specific one.
    pub fn size(&self) -> u128 {
        let n = |s: &NetworkSpec| u128::from(u32::from(s.last()) - u32::from(s.first())) + 1;
        n(&self.local) * n(&self.remote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        assert_eq!(
            "198.51.100.7".parse::<NetworkSpec>().unwrap(),
            NetworkSpec::Host(Ipv4Addr::new(198, 51, 100, 7))
        );
        let s: NetworkSpec = "198.51.100.9/24".parse().unwrap();
        assert_eq!(s.first(), Ipv4Addr::new(198, 51, 100, 0));
        assert_eq!(s.last(), Ipv4Addr::new(198, 51, 100, 255));
        let r: NetworkSpec = "198.51.100.10-198.51.100.20".parse().unwrap();
        assert!(r.contains(Ipv4Addr::new(198, 51, 100, 15)));
        assert!(!r.contains(Ipv4Addr::new(198, 51, 100, 21)));
        assert_eq!("any".parse::<NetworkSpec>().unwrap(), NetworkSpec::ANY);
        assert!(NetworkSpec::ANY.contains(Ipv4Addr::new(255, 255, 255, 255)));
        assert!("10.0.0.1/33".parse::<NetworkSpec>().is_err());
        assert!("10.0.0.9-10.0.0.1".parse::<NetworkSpec>().is_err());
        assert!("nonsense".parse::<NetworkSpec>().is_err());
    }

    #[test]
    fn cidr_of_aligned_range() {
        let r: NetworkSpec = "192.0.2.0-192.0.2.255".parse().unwrap();
        assert_eq!(r.as_cidr(), Some((Ipv4Addr::new(192, 0, 2, 0), 24)));
        let r: NetworkSpec = "192.0.2.1-192.0.2.3".parse().unwrap();
        assert_eq!(r.as_cidr(), None);
    }
}

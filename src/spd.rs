//! Security policy database: cleartext packet -> policy / outbound SA, and the inbound SA
//! table keyed by SPI.
//!
//! # Outbound lookup
//!
//! A policy protects traffic between its `local` and `remote` networks (docs/profiles.md
//! `protected-network`). [`Spd::lookup`] takes the (src, dst) of a cleartext IPv4 or IPv6
//! packet from the TUN and finds the policy whose `local` contains src and `remote` contains
//! dst. A policy may hold pairs of both families (tunnel mode carries either); each pair is
//! indexed in its family's index, so a lookup probes only the prefix lengths in use in the
//! packet's family.
//!
//! **Ambiguity rule**: when several pairs match, the most specific wins: the one with the
//! smallest remote block, then the smallest local block, then the lowest policy id (the
//! order policies were added in, a removed policy's id being reused first). Profiles validation
//! already refuses ambiguous overlaps between different policies; the rule makes the result
//! deterministic anyway.
//!
//! Cost: every remote network is split into CIDR blocks and indexed in one hash map per
//! prefix length; a lookup probes only the prefix lengths in use (typically a handful), so it
//! is independent of the number of policies (IPv4 keys are `u32`, IPv6 keys `u128`). Within one remote block the local networks are
//! scanned, which is short for the hub-and-spoke shape (one local network, many remotes).
//! A removal un-indexes only the removed policy's blocks and frees its slot for the next
//! insert, so spokes coming and going never rebuild the index.
//!
//! # Inbound lookup
//!
//! [`SpiTable`] maps the outer SPI of a received packet to its SA in O(1), hashing the SPI with
//! a multiplicative hash: SPIs are chosen by us (inbound), so no peer controls the keys.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use crate::config::{Family, NetworkSpec, ProtectedNetwork};

mod list;

pub use list::OneOrMany;

/// Index of a policy in its [`Spd`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId(pub u32);

/// One policy: a name, its protected networks, and the outbound SA handle once one exists
/// ("none yet" triggers an IKE acquire for on-demand policies).
#[derive(Clone, Debug)]
pub struct Policy<H> {
    /// The profile name (`ipsec-policy-manual.NAME`, or `policy@peer` for a spoke), shared
    /// with whoever else names the policy.
    pub name: Arc<str>,
    /// Its protected-network pairs (local = our side); one, inline, in the common case.
    pub networks: OneOrMany<ProtectedNetwork>,
    /// The outbound SA handle, `None` until one is installed.
    pub outbound: Option<H>,
}

/// One indexed pair, as numbers of its family's width: an IPv4 entry is 20 bytes (with the
/// local `NetworkSpec` and `u128` spans it was 80, aligned for IPv6).
#[derive(Clone, Copy, Debug)]
struct Entry<K> {
    policy: u32,
    /// The local network's first and last address.
    local_first: K,
    local_last: K,
    /// Span (last - first, exact in both families) of the remote and local networks, for the
    /// ambiguity rule.
    remote_span: K,
    local_span: K,
}

/// The minimal list of CIDR blocks of a spec, as (first address number, prefix length).
fn blocks(n: &NetworkSpec) -> impl Iterator<Item = (u128, u8)> + use<> {
    let width = n.family().bits();
    let (first, end) = n.bounds();
    let mut next = Some(first);
    // 2^bits - 1 without overflowing at bits = 128.
    let ones = |bits: u8| {
        if bits >= 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        }
    };
    std::iter::from_fn(move || {
        let start = next.filter(|s| *s <= end)?;
        let mut bits = if start == 0 {
            width
        } else {
            (start.trailing_zeros() as u8).min(width)
        };
        while bits > 0 && ones(bits) > end - start {
            bits -= 1;
        }
        next = start.checked_add(ones(bits)).and_then(|l| l.checked_add(1));
        Some((start, width - bits))
    })
}

/// Splits a protected network into the minimal list of CIDR blocks (for routes and the index).
pub fn cidrs(n: &NetworkSpec) -> impl Iterator<Item = (IpAddr, u8)> + use<> {
    let family = n.family();
    blocks(n).map(move |(start, len)| (family.addr(start), len))
}

/// An address number of one family: `u32` for IPv4 keeps its index and entries as small and
/// fast as before IPv6 existed.
trait Key: Copy + Ord + Eq + std::hash::Hash + std::fmt::Debug {
    /// `n`, a number of this family's width.
    fn of(n: u128) -> Self;
    /// The number of `ip` when it is of this family.
    fn of_ip(ip: IpAddr) -> Option<Self>;
}

impl Key for u32 {
    fn of(n: u128) -> Self {
        n as u32
    }

    fn of_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(a) => Some(u32::from(a)),
            IpAddr::V6(_) => None,
        }
    }
}

impl Key for u128 {
    fn of(n: u128) -> Self {
        n
    }

    fn of_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V6(a) => Some(u128::from(a)),
            IpAddr::V4(_) => None,
        }
    }
}

/// The remote blocks of one family: one map per prefix length.
#[derive(Debug)]
struct Index<K> {
    family: Family,
    /// `by_prefix[len]`: masked remote address -> entries (one, inline, in the common case).
    by_prefix: Vec<HashMap<K, OneOrMany<Entry<K>>, BuildHasherDefault<SpiHasher>>>,
    /// Prefix lengths in use, longest first.
    lengths: Vec<u8>,
}

impl<K: Key> Index<K> {
    fn new(family: Family) -> Self {
        Self {
            family,
            by_prefix: (0..=family.bits()).map(|_| HashMap::default()).collect(),
            lengths: Vec::new(),
        }
    }

    /// Indexes the pair `pn` (both sides of this index's family) of `policy`.
    fn add(&mut self, pn: &ProtectedNetwork, policy: u32) {
        let ((local_first, local_last), (remote_first, remote_last)) =
            (pn.local.bounds(), pn.remote.bounds());
        let e = Entry {
            policy,
            local_first: K::of(local_first),
            local_last: K::of(local_last),
            remote_span: K::of(remote_last - remote_first),
            local_span: K::of(local_last - local_first),
        };
        for (addr, len) in blocks(&pn.remote) {
            let Some(map) = self.by_prefix.get_mut(usize::from(len)) else {
                continue;
            };
            map.entry(K::of(addr)).or_default().push(e);
            if !self.lengths.contains(&len) {
                self.lengths.push(len);
                self.lengths.sort_unstable_by(|a, b| b.cmp(a));
            }
        }
    }

    fn remove(&mut self, remote: &NetworkSpec, policy: u32) {
        for (addr, len) in blocks(remote) {
            let Some(map) = self.by_prefix.get_mut(usize::from(len)) else {
                continue;
            };
            let Some(entries) = map.get_mut(&K::of(addr)) else {
                continue;
            };
            entries.retain(|e| e.policy != policy);
            if entries.is_empty() {
                map.remove(&K::of(addr));
                if map.is_empty() {
                    self.lengths.retain(|l| *l != len);
                }
            }
        }
    }

    /// The best entry (module documentation) for a packet to `dst`, an address number of this
    /// family, from `src` (never found when of the other family).
    fn best(&self, src: IpAddr, dst: u128) -> Option<&Entry<K>> {
        let src = K::of_ip(src)?;
        let mut best: Option<&Entry<K>> = None;
        for &len in &self.lengths {
            let key = K::of(dst & self.family.mask(len));
            let Some(entries) = self.by_prefix[usize::from(len)].get(&key) else {
                continue;
            };
            for e in entries.iter() {
                if src < e.local_first || src > e.local_last {
                    continue;
                }
                let better = match best {
                    None => true,
                    Some(b) => {
                        (e.remote_span, e.local_span, e.policy)
                            < (b.remote_span, b.local_span, b.policy)
                    }
                };
                if better {
                    best = Some(e);
                }
            }
        }
        best
    }
}

/// The security policy database of one interface.
#[derive(Debug)]
pub struct Spd<H> {
    /// By id; `None` is a removed policy's slot, reused by the next insert.
    policies: Vec<Option<Policy<H>>>,
    free: Vec<u32>,
    v4: Index<u32>,
    v6: Index<u128>,
}

impl<H> Default for Spd<H> {
    fn default() -> Self {
        Self::new()
    }
}

impl<H> Spd<H> {
    /// An empty database.
    pub fn new() -> Self {
        Self {
            policies: Vec::new(),
            free: Vec::new(),
            v4: Index::new(Family::V4),
            v6: Index::new(Family::V6),
        }
    }

    /// Adds a policy and indexes its networks; returns its id (a removed policy's id may be
    /// given again). A pair whose sides are of different families matches no packet (both
    /// addresses of a packet are of one family; validation refuses such a pair) and is not
    /// indexed.
    pub fn insert(&mut self, policy: Policy<H>) -> PolicyId {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.policies.push(None);
                (self.policies.len() - 1) as u32
            }
        };
        for pn in policy.networks.iter() {
            match (pn.local.family(), pn.remote.family()) {
                (Family::V4, Family::V4) => self.v4.add(pn, id),
                (Family::V6, Family::V6) => self.v6.add(pn, id),
                _ => {}
            }
        }
        self.policies[id as usize] = Some(policy);
        PolicyId(id)
    }

    /// Removes a policy and its index entries; its id becomes free.
    pub fn remove(&mut self, id: PolicyId) -> Option<Policy<H>> {
        let policy = self.policies.get_mut(id.0 as usize)?.take()?;
        for pn in policy.networks.iter() {
            match pn.remote.family() {
                Family::V4 => self.v4.remove(&pn.remote, id.0),
                Family::V6 => self.v6.remove(&pn.remote, id.0),
            }
        }
        self.free.push(id.0);
        Some(policy)
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.policies.len() - self.free.len()
    }

    /// True without policies.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The policy with this id.
    pub fn get(&self, id: PolicyId) -> Option<&Policy<H>> {
        self.policies.get(id.0 as usize)?.as_ref()
    }

    /// Sets (or clears) the outbound SA of a policy, e.g. after quick mode or a re-key.
    pub fn set_outbound(&mut self, id: PolicyId, sa: Option<H>) -> bool {
        match self
            .policies
            .get_mut(id.0 as usize)
            .and_then(Option::as_mut)
        {
            Some(p) => {
                p.outbound = sa;
                true
            }
            None => false,
        }
    }

    /// The policy for a cleartext packet from `src` (our side) to `dst` (the peer's side),
    /// by the ambiguity rule of the module documentation.
    pub fn lookup(
        &self,
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
    ) -> Option<(PolicyId, &Policy<H>)> {
        let (src, dst) = (src.into(), dst.into());
        let policy = match dst {
            IpAddr::V4(d) => self.v4.best(src, u128::from(u32::from(d)))?.policy,
            IpAddr::V6(d) => self.v6.best(src, u128::from(d))?.policy,
        };
        let p = self.policies.get(policy as usize)?.as_ref()?;
        Some((PolicyId(policy), p))
    }

    /// The outbound SA handle for a packet, if its policy has one.
    pub fn outbound_sa(&self, src: impl Into<IpAddr>, dst: impl Into<IpAddr>) -> Option<&H> {
        self.lookup(src, dst).and_then(|(_, p)| p.outbound.as_ref())
    }
}

/// A fast hasher for 32-bit keys (SPIs, masked addresses; 128-bit IPv6 ones folded): one multiply by 2^32/phi
/// (Fibonacci hashing), the high bits moved down. Not DoS-resistant; keys here are ours.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpiHasher(u64);

impl Hasher for SpiHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, v: u32) {
        let h = (self.0 ^ u64::from(v)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }

    /// Masked IPv6 addresses: both halves folded in, two multiplies instead of sixteen.
    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }

    /// 64-bit keys: the daemon's SA handles, which it issues itself.
    fn write_u64(&mut self, v: u64) {
        let h = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }
}

/// Inbound SAs by SPI.
#[derive(Debug)]
pub struct SpiTable<V> {
    map: HashMap<u32, V, BuildHasherDefault<SpiHasher>>,
}

impl<V> Default for SpiTable<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> SpiTable<V> {
    /// An empty table.
    pub fn new() -> Self {
        Self {
            map: HashMap::default(),
        }
    }

    /// An empty table with room for `n` SAs.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            map: HashMap::with_capacity_and_hasher(n, BuildHasherDefault::default()),
        }
    }

    /// Installs or replaces the SA for `spi`; returns the one it replaced.
    pub fn insert(&mut self, spi: u32, sa: V) -> Option<V> {
        self.map.insert(spi, sa)
    }

    /// Removes the SA of `spi`.
    pub fn remove(&mut self, spi: u32) -> Option<V> {
        self.map.remove(&spi)
    }

    /// The SA of `spi` (no allocation, one hash probe).
    pub fn get(&self, spi: u32) -> Option<&V> {
        self.map.get(&spi)
    }

    /// The SA of `spi`, mutable (decap needs `&mut`).
    pub fn get_mut(&mut self, spi: u32) -> Option<&mut V> {
        self.map.get_mut(&spi)
    }

    /// Number of SAs.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True without SAs.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// All (SPI, SA) pairs (`show sa`).
    pub fn iter(&self) -> impl Iterator<Item = (u32, &V)> {
        self.map.iter().map(|(k, v)| (*k, v))
    }

    /// All (SPI, SA) pairs, mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u32, &mut V)> {
        self.map.iter_mut().map(|(k, v)| (*k, v))
    }
}

/// The SPI of a received ESP or AH packet: the first 4 bytes of the IPsec header, wherever it
/// starts (after the IP header on a raw socket, at the start of a UDP 4500 payload).
pub fn spi_of(ipsec_header: &[u8]) -> Option<u32> {
    let b = ipsec_header.get(..4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn pn(local: &str, remote: &str) -> ProtectedNetwork {
        ProtectedNetwork {
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn ip6(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_split() {
        let r: NetworkSpec = "10.0.0.1-10.0.0.6".parse().unwrap();
        let v: Vec<_> = cidrs(&r).collect();
        assert_eq!(
            v,
            vec![
                (ip("10.0.0.1").into(), 32),
                (ip("10.0.0.2").into(), 31),
                (ip("10.0.0.4").into(), 31),
                (ip("10.0.0.6").into(), 32)
            ]
        );
        assert_eq!(
            cidrs(&NetworkSpec::ANY).collect::<Vec<_>>(),
            vec![(Ipv4Addr::UNSPECIFIED.into(), 0)]
        );
        let all: NetworkSpec = "0.0.0.0-255.255.255.255".parse().unwrap();
        assert_eq!(cidrs(&all).count(), 1);
        let top: NetworkSpec = "255.255.255.254-255.255.255.255".parse().unwrap();
        assert_eq!(
            cidrs(&top).collect::<Vec<_>>(),
            vec![(ip("255.255.255.254").into(), 31)]
        );
    }

    #[test]
    fn cidr_split_ipv6() {
        let r: NetworkSpec = "2001:db8::1-2001:db8::6".parse().unwrap();
        let v: Vec<_> = cidrs(&r).collect();
        assert_eq!(
            v,
            vec![
                (ip6("2001:db8::1"), 128),
                (ip6("2001:db8::2"), 127),
                (ip6("2001:db8::4"), 127),
                (ip6("2001:db8::6"), 128)
            ]
        );
        // ::/0 holds 2^128 addresses, one more than a u128 counts: one block, no overflow.
        assert_eq!(
            cidrs(&NetworkSpec::ANY6).collect::<Vec<_>>(),
            vec![(ip6("::"), 0)]
        );
        let all: NetworkSpec = "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
            .parse()
            .unwrap();
        assert_eq!(cidrs(&all).collect::<Vec<_>>(), vec![(ip6("::"), 0)]);
        let top: NetworkSpec =
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
                .parse()
                .unwrap();
        assert_eq!(cidrs(&top).count(), 1);
        let p: NetworkSpec = "2001:db8:1::/48".parse().unwrap();
        assert_eq!(
            cidrs(&p).collect::<Vec<_>>(),
            vec![(ip6("2001:db8:1::"), 48)]
        );
    }

    /// The IPv4 rules hold the same in IPv6: most specific remote, then local.
    #[test]
    fn most_specific_wins_ipv6() {
        let mut spd: Spd<&str> = Spd::new();
        let any = spd.insert(Policy {
            name: "Default".into(),
            networks: vec![pn("2001:db8:1::/48", "::/0")].into(),
            outbound: Some("sa-any"),
        });
        let branch = spd.insert(Policy {
            name: "Branch".into(),
            networks: vec![pn("2001:db8:1::/48", "2001:db8:2::/48")].into(),
            outbound: None,
        });
        let host = spd.insert(Policy {
            name: "Host".into(),
            networks: vec![pn("2001:db8:1::7", "2001:db8:2::10-2001:db8:2::20")].into(),
            outbound: Some("sa-host"),
        });
        let l = |s: &str, d: &str| spd.lookup(ip6(s), ip6(d)).map(|(id, _)| id);
        assert_eq!(l("2001:db8:1::1", "2001:db8:ff::8"), Some(any));
        assert_eq!(l("2001:db8:1::1", "2001:db8:2::15"), Some(branch));
        assert_eq!(l("2001:db8:1::7", "2001:db8:2::15"), Some(host));
        assert_eq!(l("2001:db8:1::7", "2001:db8:2::21"), Some(branch));
        assert_eq!(l("2001:db8:9::1", "2001:db8:2::15"), None);
        assert_eq!(spd.v6.lengths, vec![128, 124, 48, 0]);
        assert!(spd.v4.lengths.is_empty());
    }

    /// One policy with a pair of each family (a tunnel carrying both): each packet finds it
    /// through its own family, and addresses with the same low bits never cross over.
    #[test]
    fn mixed_family_policy() {
        let mut spd: Spd<&str> = Spd::new();
        let both = spd.insert(Policy {
            name: "Both".into(),
            networks: vec![
                pn("198.51.100.0/24", "203.0.113.0/24"),
                pn("2001:db8:1::/48", "2001:db8:2::/48"),
            ]
            .into(),
            outbound: Some("sa"),
        });
        let v4 = spd.lookup(ip("198.51.100.1"), ip("203.0.113.9"));
        assert_eq!(v4.map(|(id, _)| id), Some(both));
        let v6 = spd.lookup(ip6("2001:db8:1::1"), ip6("2001:db8:2::9"));
        assert_eq!(v6.map(|(id, _)| id), Some(both));
        // Crossed families, and the v4 numbers seen as IPv6 (::c633:6401 is 198.51.100.1).
        assert!(
            spd.lookup(ip("198.51.100.1"), ip6("2001:db8:2::9"))
                .is_none()
        );
        assert!(
            spd.lookup(ip6("2001:db8:1::1"), ip("203.0.113.9"))
                .is_none()
        );
        assert!(spd.lookup(ip6("::c633:6401"), ip6("::cb00:7109")).is_none());
        assert!(
            spd.lookup(ip6("::ffff:198.51.100.1"), ip6("::ffff:203.0.113.9"))
                .is_none()
        );
        let removed = spd.remove(both).map(|p| p.networks.len());
        assert_eq!(removed, Some(2));
        assert!(spd.v4.lengths.is_empty() && spd.v6.lengths.is_empty());
        assert!(
            spd.lookup(ip6("2001:db8:1::1"), ip6("2001:db8:2::9"))
                .is_none()
        );
    }

    #[test]
    fn many_ipv6_spokes() {
        let mut spd: Spd<u32> = Spd::new();
        let net = |i: u32| 0x2001_0db8_u128 << 96 | u128::from(i) << 64;
        for i in 0..20_000u32 {
            spd.insert(Policy {
                name: format!("spoke{i}").into(),
                networks: vec![ProtectedNetwork {
                    local: "2001:db8:ffff::/48".parse().unwrap(),
                    remote: NetworkSpec::Subnet {
                        addr: Ipv6Addr::from(net(i)).into(),
                        prefix: 64,
                    },
                }]
                .into(),
                outbound: Some(i),
            });
        }
        assert_eq!(spd.v6.lengths, vec![64]);
        for i in (0..20_000u32).step_by(997) {
            let dst = Ipv6Addr::from(net(i) | 77);
            assert_eq!(spd.outbound_sa(ip6("2001:db8:ffff::9"), dst), Some(&i));
        }
    }

    #[test]
    fn most_specific_wins() {
        let mut spd: Spd<&str> = Spd::new();
        let any = spd.insert(Policy {
            name: "Default".into(),
            networks: vec![pn("198.51.100.0/24", "any")].into(),
            outbound: Some("sa-any"),
        });
        let branch = spd.insert(Policy {
            name: "Branch".into(),
            networks: vec![pn("198.51.100.0/24", "203.0.113.0/24")].into(),
            outbound: None,
        });
        let host = spd.insert(Policy {
            name: "Host".into(),
            networks: vec![pn("198.51.100.7", "203.0.113.10-203.0.113.20")].into(),
            outbound: Some("sa-host"),
        });
        let l = |s: &str, d: &str| spd.lookup(ip(s), ip(d)).map(|(id, _)| id);
        assert_eq!(l("198.51.100.1", "8.8.8.8"), Some(any));
        assert_eq!(l("198.51.100.1", "203.0.113.15"), Some(branch));
        assert_eq!(l("198.51.100.7", "203.0.113.15"), Some(host));
        assert_eq!(l("198.51.100.7", "203.0.113.21"), Some(branch));
        assert_eq!(l("10.0.0.1", "203.0.113.15"), None);
        assert_eq!(
            spd.outbound_sa(ip("198.51.100.7"), ip("203.0.113.11")),
            Some(&"sa-host")
        );
        assert_eq!(
            spd.outbound_sa(ip("198.51.100.1"), ip("203.0.113.11")),
            None
        );
        assert!(spd.set_outbound(branch, Some("sa-branch")));
        assert_eq!(
            spd.outbound_sa(ip("198.51.100.1"), ip("203.0.113.11")),
            Some(&"sa-branch")
        );
    }

    #[test]
    fn hundred_thousand_spokes() {
        let mut spd: Spd<u32> = Spd::new();
        for i in 0..100_000u32 {
            let net = Ipv4Addr::from((10 << 24) | (i << 8));
            spd.insert(Policy {
                name: format!("spoke{i}").into(),
                networks: vec![ProtectedNetwork {
                    local: "198.51.100.0/24".parse().unwrap(),
                    remote: NetworkSpec::Subnet {
                        addr: net.into(),
                        prefix: 24,
                    },
                }]
                .into(),
                outbound: Some(i),
            });
        }
        assert_eq!(spd.v4.lengths, vec![24]);
        for i in (0..100_000u32).step_by(997) {
            let dst = Ipv4Addr::from((10 << 24) | (i << 8) | 77);
            assert_eq!(spd.outbound_sa(ip("198.51.100.9"), dst), Some(&i));
        }
    }

    #[test]
    fn remove_unindexes_and_reuses_the_slot() {
        let mut spd: Spd<u32> = Spd::new();
        let wide = spd.insert(Policy {
            name: "Wide".into(),
            networks: vec![pn("198.51.100.0/24", "203.0.113.0/24")].into(),
            outbound: Some(1),
        });
        let narrow = spd.insert(Policy {
            name: "Narrow".into(),
            networks: vec![pn("198.51.100.0/24", "203.0.113.10-203.0.113.20")].into(),
            outbound: Some(2),
        });
        let src = ip("198.51.100.1");
        assert_eq!(spd.outbound_sa(src, ip("203.0.113.15")), Some(&2));
        assert_eq!(spd.remove(narrow).map(|p| p.name), Some("Narrow".into()));
        assert!(spd.remove(narrow).is_none());
        assert!(spd.get(narrow).is_none());
        assert!(!spd.set_outbound(narrow, Some(9)));
        // The wider policy covers it again; the narrow blocks' prefix lengths are gone.
        assert_eq!(spd.outbound_sa(src, ip("203.0.113.15")), Some(&1));
        assert_eq!(spd.v4.lengths, vec![24]);
        assert_eq!(spd.len(), 1);
        let again = spd.insert(Policy {
            name: "Again".into(),
            networks: vec![pn("198.51.100.0/24", "203.0.113.128/25")].into(),
            outbound: Some(3),
        });
        assert_eq!(again, narrow);
        assert_eq!(spd.outbound_sa(src, ip("203.0.113.200")), Some(&3));
        assert_eq!(spd.outbound_sa(src, ip("203.0.113.15")), Some(&1));
        spd.remove(wide);
        spd.remove(again);
        assert!(spd.is_empty());
        assert_eq!(spd.lookup(src, ip("203.0.113.200")).map(|(id, _)| id), None);
        assert!(spd.v4.lengths.is_empty());
    }

    /// The per-tunnel budget (docs/design.md): an IPv4 index entry is five 32-bit numbers, a
    /// spoke's policy keeps its one pair inline, and one block's single entry needs no heap
    /// block (a `Vec`'s first push reserved four 80-byte entries).
    #[test]
    fn ipv4_entries_stay_compact() {
        assert_eq!(std::mem::size_of::<Entry<u32>>(), 20);
        let mut spd: Spd<u64> = Spd::new();
        let id = spd.insert(Policy {
            name: "T@192.0.2.7".into(),
            networks: vec![pn("198.51.100.0/24", "203.0.113.0/28")].into(),
            outbound: Some(7),
        });
        let networks = spd.get(id).map(|p| &p.networks);
        assert!(matches!(networks, Some(OneOrMany::One(_))));
        let block = spd.v4.by_prefix[28].get(&u32::from(ip("203.0.113.0")));
        assert!(matches!(block, Some(OneOrMany::One(e)) if e.policy == id.0));
        assert_eq!(
            spd.outbound_sa(ip("198.51.100.9"), ip("203.0.113.15")),
            Some(&7)
        );
    }

    #[test]
    fn spi_table() {
        let mut t: SpiTable<&str> = SpiTable::with_capacity(4);
        assert!(t.insert(1111, "a").is_none());
        assert_eq!(t.insert(1111, "b"), Some("a"));
        assert_eq!(t.get(1111), Some(&"b"));
        assert_eq!(t.get(2222), None);
        *t.get_mut(1111).unwrap() = "c";
        assert_eq!(t.remove(1111), Some("c"));
        assert!(t.is_empty());
        assert_eq!(spi_of(&[0, 0, 4, 0x57, 0]), Some(1111));
        assert_eq!(spi_of(&[0, 0, 4]), None);
    }
}

//! Security policy database: cleartext packet -> policy / outbound SA, and the inbound SA
//! table keyed by SPI.
//!
//! # Outbound lookup
//!
//! A policy protects traffic between its `local` and `remote` networks (docs/profiles.md
//! `protected-network`). [`Spd::lookup`] takes the (src, dst) of a cleartext IPv4 packet from
//! the TUN and finds the policy whose `local` contains src and `remote` contains dst.
//!
//! **Ambiguity rule**: when several pairs match, the most specific wins: the one with the
//! smallest remote block, then the smallest local block, then the lowest policy id (the
//! order policies were added in, a removed policy's id being reused first). Profiles validation
//! already refuses ambiguous overlaps between different policies; the rule makes the result
//! deterministic anyway.
//!
//! Cost: every remote network is split into CIDR blocks and indexed in one hash map per
//! prefix length; a lookup probes only the prefix lengths in use (typically a handful), so it
//! is independent of the number of policies. Within one remote block the local networks are
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

use crate::config::{NetworkSpec, ProtectedNetwork};

/// Index of a policy in its [`Spd`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId(pub u32);

/// One policy: a name, its protected networks, and the outbound SA handle once one exists
/// ("none yet" triggers an IKE acquire for on-demand policies).
#[derive(Clone, Debug)]
pub struct Policy<H> {
    /// The profile name (`ipsec-policy-manual.NAME`).
    pub name: String,
    /// Its protected-network pairs (local = our side).
    pub networks: Vec<ProtectedNetwork>,
    /// The outbound SA handle, `None` until one is installed.
    pub outbound: Option<H>,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    policy: u32,
    local: NetworkSpec,
    /// Size of the remote and local blocks (addresses), for the ambiguity rule.
    remote_size: u64,
    local_size: u64,
}

fn size(n: &NetworkSpec) -> u64 {
    u64::from(u32::from(n.last())) - u64::from(u32::from(n.first())) + 1
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// Splits a protected network into the minimal list of CIDR blocks (for routes and the index).
pub fn cidrs(n: &NetworkSpec) -> impl Iterator<Item = (u32, u8)> {
    let mut start = u64::from(u32::from(n.first()));
    let end = u64::from(u32::from(n.last()));
    std::iter::from_fn(move || {
        if start > end {
            return None;
        }
        let align = if start == 0 {
            32
        } else {
            start.trailing_zeros().min(32)
        };
        let mut bits = align;
        while bits > 0 && start + (1u64 << bits) - 1 > end {
            bits -= 1;
        }
        let block = (start as u32, (32 - bits) as u8);
        start += 1u64 << bits;
        Some(block)
    })
}

/// The security policy database of one interface.
#[derive(Debug)]
pub struct Spd<H> {
    /// By id; `None` is a removed policy's slot, reused by the next insert.
    policies: Vec<Option<Policy<H>>>,
    free: Vec<u32>,
    /// `by_prefix[len]`: masked remote address -> entries.
    by_prefix: Vec<HashMap<u32, Vec<Entry>, BuildHasherDefault<SpiHasher>>>,
    /// Prefix lengths in use, longest first.
    lengths: Vec<u8>,
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
            by_prefix: (0..=32).map(|_| HashMap::default()).collect(),
            lengths: Vec::new(),
        }
    }

    /// Adds a policy and indexes its networks; returns its id (a removed policy's id may be
    /// given again).
    pub fn insert(&mut self, policy: Policy<H>) -> PolicyId {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.policies.push(None);
                (self.policies.len() - 1) as u32
            }
        };
        for pn in &policy.networks {
            let e = Entry {
                policy: id,
                local: pn.local,
                remote_size: size(&pn.remote),
                local_size: size(&pn.local),
            };
            for (addr, len) in cidrs(&pn.remote) {
                self.by_prefix[usize::from(len)]
                    .entry(addr)
                    .or_default()
                    .push(e);
                if !self.lengths.contains(&len) {
                    self.lengths.push(len);
                    self.lengths.sort_unstable_by(|a, b| b.cmp(a));
                }
            }
        }
        self.policies[id as usize] = Some(policy);
        PolicyId(id)
    }

    /// Removes a policy and its index entries; its id becomes free.
    pub fn remove(&mut self, id: PolicyId) -> Option<Policy<H>> {
        let policy = self.policies.get_mut(id.0 as usize)?.take()?;
        for pn in &policy.networks {
            for (addr, len) in cidrs(&pn.remote) {
                let map = &mut self.by_prefix[usize::from(len)];
                let Some(entries) = map.get_mut(&addr) else {
                    continue;
                };
                entries.retain(|e| e.policy != id.0);
                if entries.is_empty() {
                    map.remove(&addr);
                    if map.is_empty() {
                        self.lengths.retain(|l| *l != len);
                    }
                }
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
        let (src, IpAddr::V4(dst)) = (src.into(), dst.into()) else {
            return None;
        };
        let d = u32::from(dst);
        let mut best: Option<&Entry> = None;
        for &len in &self.lengths {
            let Some(entries) = self.by_prefix[usize::from(len)].get(&(d & mask(len))) else {
                continue;
            };
            for e in entries {
                if !e.local.contains(src) {
                    continue;
                }
                let better = match best {
                    None => true,
                    Some(b) => {
                        (e.remote_size, e.local_size, e.policy)
                            < (b.remote_size, b.local_size, b.policy)
                    }
                };
                if better {
                    best = Some(e);
                }
            }
        }
        let e = best?;
        let policy = self.policies.get(e.policy as usize)?.as_ref()?;
        Some((PolicyId(e.policy), policy))
    }

    /// The outbound SA handle for a packet, if its policy has one.
    pub fn outbound_sa(&self, src: impl Into<IpAddr>, dst: impl Into<IpAddr>) -> Option<&H> {
        self.lookup(src, dst).and_then(|(_, p)| p.outbound.as_ref())
    }
}

/// A fast hasher for 32-bit keys (SPIs, masked addresses): one multiply by 2^32/phi
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
    use std::net::Ipv4Addr;

    fn pn(local: &str, remote: &str) -> ProtectedNetwork {
        ProtectedNetwork {
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_split() {
        let r: NetworkSpec = "10.0.0.1-10.0.0.6".parse().unwrap();
        let v: Vec<_> = cidrs(&r).collect();
        assert_eq!(
            v,
            vec![
                (u32::from(ip("10.0.0.1")), 32),
                (u32::from(ip("10.0.0.2")), 31),
                (u32::from(ip("10.0.0.4")), 31),
                (u32::from(ip("10.0.0.6")), 32)
            ]
        );
        assert_eq!(cidrs(&NetworkSpec::ANY).collect::<Vec<_>>(), vec![(0, 0)]);
        let all: NetworkSpec = "0.0.0.0-255.255.255.255".parse().unwrap();
        assert_eq!(cidrs(&all).count(), 1);
    }

    #[test]
    fn most_specific_wins() {
        let mut spd: Spd<&str> = Spd::new();
        let any = spd.insert(Policy {
            name: "Default".into(),
            networks: vec![pn("198.51.100.0/24", "any")],
            outbound: Some("sa-any"),
        });
        let branch = spd.insert(Policy {
            name: "Branch".into(),
            networks: vec![pn("198.51.100.0/24", "203.0.113.0/24")],
            outbound: None,
        });
        let host = spd.insert(Policy {
            name: "Host".into(),
            networks: vec![pn("198.51.100.7", "203.0.113.10-203.0.113.20")],
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
                name: format!("spoke{i}"),
                networks: vec![ProtectedNetwork {
                    local: "198.51.100.0/24".parse().unwrap(),
                    remote: NetworkSpec::Subnet {
                        addr: net,
                        prefix: 24,
                    },
                }],
                outbound: Some(i),
            });
        }
        assert_eq!(spd.lengths, vec![24]);
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
            networks: vec![pn("198.51.100.0/24", "203.0.113.0/24")],
            outbound: Some(1),
        });
        let narrow = spd.insert(Policy {
            name: "Narrow".into(),
            networks: vec![pn("198.51.100.0/24", "203.0.113.10-203.0.113.20")],
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
        assert_eq!(spd.lengths, vec![24]);
        assert_eq!(spd.len(), 1);
        let again = spd.insert(Policy {
            name: "Again".into(),
            networks: vec![pn("198.51.100.0/24", "203.0.113.128/25")],
            outbound: Some(3),
        });
        assert_eq!(again, narrow);
        assert_eq!(spd.outbound_sa(src, ip("203.0.113.200")), Some(&3));
        assert_eq!(spd.outbound_sa(src, ip("203.0.113.15")), Some(&1));
        spd.remove(wide);
        spd.remove(again);
        assert!(spd.is_empty());
        assert_eq!(spd.lookup(src, ip("203.0.113.200")).map(|(id, _)| id), None);
        assert!(spd.lengths.is_empty());
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

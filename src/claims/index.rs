//! Protected-network pairs indexed by where their remote side starts, so that the pairs
//! overlapping a new one are found in O(log n + k) instead of by a scan of every pair.
//!
//! A hub with 10,000 spokes holds 10,000 pairs and checks one on every quick mode: a scan made
//! each check O(n) and a restart of the whole hub O(n²) (measured with `ikehub loadgen`: the
//! scan's comparisons took a fifth of the hub's CPU at 10,000 tunnels).
//!
//! An entry overlaps a query's remote range only if it starts at or before the query's end and
//! ends at or after its start. Entries are kept ordered by their start, and the index knows the
//! widest remote range it holds, so only the entries starting in [query start - widest, query
//! end] can overlap. Spokes usually hold host or small-subnet remotes, so that window holds a
//! handful of entries; one wide entry widens every window (correct, only slower), which is no
//! worse than the scan it replaces. Both sides of a candidate are then checked exactly.
//!
//! IPv4 and IPv6 pairs live in one map, ordered family first: a window never leaves its
//! family (pairs of two families never overlap), and each family has its own widest entry, so
//! one wide IPv6 template does not widen the IPv4 windows.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::config::{Family, NetworkSpec, ProtectedNetwork};

/// Where an entry is in the index: its remote family and start, and an insertion number
/// (several entries may start at the same address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot(Family, u128, u64);

#[derive(Clone, Debug)]
pub struct PairIndex<V> {
    by_remote: BTreeMap<Slot, (ProtectedNetwork, V)>,
    /// Remote widths (family, last - first) of the entries, with how many entries have each:
    /// the widest of a family bounds that family's look-back window.
    widths: BTreeMap<(Family, u128), usize>,
    next: u64,
}

impl<V> Default for PairIndex<V> {
    fn default() -> Self {
        Self {
            by_remote: BTreeMap::new(),
            widths: BTreeMap::new(),
            next: 0,
        }
    }
}

/// The remote side as its family and a closed range of integers of the family's width.
fn bounds(spec: &NetworkSpec) -> (Family, u128, u128) {
    let (first, last) = spec.bounds();
    (spec.family(), first, last)
}

impl<V> PairIndex<V> {
    pub fn insert(&mut self, pair: ProtectedNetwork, value: V) -> Slot {
        let (family, first, last) = bounds(&pair.remote);
        let slot = Slot(family, first, self.next);
        self.next += 1;
        *self.widths.entry((family, last - first)).or_default() += 1;
        self.by_remote.insert(slot, (pair, value));
        slot
    }

    pub fn remove(&mut self, slot: Slot) -> Option<(ProtectedNetwork, V)> {
        let (pair, value) = self.by_remote.remove(&slot)?;
        let (family, first, last) = bounds(&pair.remote);
        let key = (family, last - first);
        if let Some(n) = self.widths.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.widths.remove(&key);
            }
        }
        Some((pair, value))
    }

    pub fn get(&self, slot: Slot) -> Option<&(ProtectedNetwork, V)> {
        self.by_remote.get(&slot)
    }

    /// The entries that overlap `pair` on both sides, in order of their remote start.
    pub fn overlapping<'a>(
        &'a self,
        pair: &'a ProtectedNetwork,
    ) -> impl Iterator<Item = (Slot, &'a ProtectedNetwork, &'a V)> + 'a {
        let (family, first, last) = bounds(&pair.remote);
        let widest = self
            .widths
            .range((family, 0)..=(family, u128::MAX))
            .next_back()
            .map_or(0, |((_, w), _)| *w);
        let from = Slot(family, first.saturating_sub(widest), 0);
        let to = Slot(family, last, u64::MAX);
        self.by_remote
            .range((Bound::Included(from), Bound::Included(to)))
            .filter(move |(_, (p, _))| p.overlaps(pair))
            .map(|(s, (p, v))| (*s, p, v))
    }

    pub fn iter(&self) -> impl Iterator<Item = (Slot, &ProtectedNetwork, &V)> {
        self.by_remote.iter().map(|(s, (p, v))| (*s, p, v))
    }

    pub fn len(&self) -> usize {
        self.by_remote.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    /// Numbers 0..4096 as addresses of one family: the same numbers in IPv4 and IPv6 (inside
    /// 2001:db8::/32) so that a family mix-up would show as a false overlap.
    fn range(family: Family, a: u32, b: u32) -> NetworkSpec {
        let addr = |n: u32| match family {
            Family::V4 => std::net::IpAddr::from(std::net::Ipv4Addr::from(n)),
            Family::V6 => std::net::IpAddr::from(std::net::Ipv6Addr::from(
                0x2001_0db8_u128 << 96 | u128::from(n),
            )),
        };
        NetworkSpec::Range {
            start: addr(a),
            end: addr(b),
        }
    }

    /// Against a scan of every entry, with entries of every width and both families coming and
    /// going.
    #[test]
    fn finds_exactly_what_a_scan_finds() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut index = PairIndex::default();
        let mut all: Vec<(Slot, ProtectedNetwork)> = Vec::new();
        let pair = |rng: &mut StdRng| {
            let family = if rng.random_range(0..2) == 0 {
                Family::V4
            } else {
                Family::V6
            };
            let side = |rng: &mut StdRng| {
                let start = rng.random_range(0..4096u32);
                // Mostly narrow, sometimes very wide, as spokes and a careless template are.
                let width = if rng.random_range(0..20) == 0 {
                    rng.random_range(0..4096)
                } else {
                    rng.random_range(0..8)
                };
                range(family, start, start.saturating_add(width))
            };
            ProtectedNetwork {
                local: side(rng),
                remote: side(rng),
            }
        };
        let mut found = 0usize;
        for _ in 0..5000 {
            if !all.is_empty() && rng.random_range(0..3) == 0 {
                let (slot, p) = all.swap_remove(rng.random_range(0..all.len()));
                assert_eq!(index.remove(slot).map(|(q, ())| q), Some(p));
            } else {
                let p = pair(&mut rng);
                all.push((index.insert(p, ()), p));
            }
            let q = pair(&mut rng);
            let mut want: Vec<Slot> = all
                .iter()
                .filter(|(_, p)| p.overlaps(&q))
                .map(|(s, _)| *s)
                .collect();
            want.sort();
            let got: Vec<Slot> = index.overlapping(&q).map(|(s, _, _)| s).collect();
            assert_eq!(got, want, "query {q:?}");
            found += got.len();
            assert_eq!(index.len(), all.len());
        }
        assert!(found > 1000, "the queries must hit something: {found}");
        for (slot, _) in all.drain(..) {
            assert!(index.remove(slot).is_some());
        }
        assert!(index.by_remote.is_empty() && index.widths.is_empty());
    }

    #[test]
    fn a_removed_slot_is_gone_once() {
        let mut index = PairIndex::default();
        let p = ProtectedNetwork {
            local: range(Family::V4, 1, 1),
            remote: range(Family::V4, 5, 9),
        };
        let s = index.insert(p, "a");
        assert_eq!(index.get(s).map(|(_, v)| *v), Some("a"));
        assert!(index.remove(s).is_some());
        assert!(index.remove(s).is_none());
        assert_eq!(index.overlapping(&p).count(), 0);
    }

    /// A wide IPv6 entry widens only the IPv6 window, and the same numbers in the other family
    /// never match.
    #[test]
    fn families_are_kept_apart() {
        let mut index = PairIndex::default();
        let pn = |f, a, b| ProtectedNetwork {
            local: range(f, 0, 0),
            remote: range(f, a, b),
        };
        index.insert(pn(Family::V6, 0, 4000), "wide6");
        index.insert(pn(Family::V4, 100, 100), "host4");
        let q4 = pn(Family::V4, 100, 100);
        let got: Vec<_> = index.overlapping(&q4).map(|(_, _, v)| *v).collect();
        assert_eq!(got, ["host4"]);
        let q6 = pn(Family::V6, 100, 100);
        let got: Vec<_> = index.overlapping(&q6).map(|(_, _, v)| *v).collect();
        assert_eq!(got, ["wide6"]);
    }
}

//! Who may hold which protected-network pair (docs/design.md, "Invariants that keep spokes apart").
//!
//! The security policy lookup is most-specific-wins (`spd.rs`), and a spoke of a template policy
//! may propose any pair inside its template's (RFC 2409 §5.5 IDci/IDcr, narrower accepted). So
//! without this table a spoke that holds the template's pre-shared key could propose a network
//! that belongs to another policy and, being more specific, take that policy's cleartext.
//!
//! The rule:
//! * Every manual policy's and every single-peer IKE policy's pairs are *reserved* for it when the
//!   profiles load, whether its tunnel is up or not, and re-reserved / released on each reload.
//! * A single-peer IKE policy's own children lie inside its reservation (the session checks
//!   that they lie inside its protected networks): always granted, nothing more to hold.
//! * A spoke of a template gets a pair (already inside its template's, checked by the session)
//!   only if the pair overlaps, on both sides, no reserved pair and no pair another spoke
//!   holds. Overlap on one side only is harmless: no packet can match both.
//!
//! Pure data, no locks: the daemon wraps one table in a mutex. Claims happen once per child SA
//! (setup and re-key), never per packet; both sets of pairs are indexed by their remote range
//! (`claims/index.rs`) so that a check stays cheap with tens of thousands of spokes.

mod index;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use index::{PairIndex, Slot};

use crate::config::{IsakmpPolicy, PeerSpec, Profiles, ProtectedNetwork};

/// The policy a pair is reserved for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    Manual(Arc<str>),
    Isakmp(Arc<str>),
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Manual(n) => write!(f, "ipsec-policy-manual.{n}"),
            Owner::Isakmp(n) => write!(f, "ipsec-policy-isakmp.{n}"),
        }
    }
}

/// Who asks for a pair.
#[derive(Clone, Copy, Debug)]
pub enum Claimant<'a> {
    /// The children of a single-peer `ipsec-policy-isakmp` (by policy name).
    Policy(&'a str),
    /// A spoke of a template policy, by its holder key (`policy@address`, unique per spoke).
    Spoke(&'a str),
}

/// Why a pair was refused, naming the owner (log line, `show peers` last error, notify reason).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The pair asked for.
    pub asked: ProtectedNetwork,
    /// The pair in the way and who has it.
    pub taken: ProtectedNetwork,
    pub by: String,
    /// Reserved for a policy (true) or held by another spoke (false).
    pub reserved: bool,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "remote network {} is {} {} (its pair {} <-> {}; asked for {} <-> {})",
            self.asked.remote,
            if self.reserved {
                "reserved by"
            } else {
                "already protected by spoke"
            },
            self.by,
            self.taken.local,
            self.taken.remote,
            self.asked.local,
            self.asked.remote,
        )
    }
}

#[derive(Clone, Debug, Default)]
pub struct ClaimTable {
    /// Reserved at load: pair -> owner.
    reserved: PairIndex<Owner>,
    /// Granted to template spokes: pair -> holder key.
    held: PairIndex<Arc<str>>,
    /// What each holder holds, to give it back without a scan.
    holdings: HashMap<Arc<str>, Vec<Slot>>,
    /// Pairs refused so far (`show counters`).
    refused: u64,
}

/// The pairs every non-template policy of `profiles` reserves.
pub fn reservations(profiles: &Profiles) -> Vec<(ProtectedNetwork, Owner)> {
    let mut out = Vec::new();
    for p in profiles.manual_policies.values() {
        let owner = Owner::Manual(Arc::from(p.name.as_str()));
        out.extend(p.protected_networks.iter().map(|n| (*n, owner.clone())));
    }
    for p in profiles.isakmp_policies.values() {
        if is_template(p) {
            continue;
        }
        let owner = Owner::Isakmp(Arc::from(p.name.as_str()));
        out.extend(p.protected_networks.iter().map(|n| (*n, owner.clone())));
    }
    out
}

/// A policy whose peer is a block or `any`: its spokes claim pairs when they come up.
pub fn is_template(p: &IsakmpPolicy) -> bool {
    !matches!(p.peer, PeerSpec::Address(_))
}

impl ClaimTable {
    pub fn new(profiles: &Profiles) -> Self {
        let mut t = Self::default();
        t.reserve(profiles);
        t
    }

    /// Replaces the reservations by those of `profiles` (load and every reload). Returns the
    /// spokes whose held pairs now overlap a reservation: their holdings are dropped here and
    /// the daemon must take them down (a reload that adds a policy wins over a spoke).
    pub fn reserve(&mut self, profiles: &Profiles) -> Vec<Arc<str>> {
        self.reserved = PairIndex::default();
        for (pair, owner) in reservations(profiles) {
            self.reserved.insert(pair, owner);
        }
        let mut displaced: Vec<Arc<str>> = Vec::new();
        for (_, pair, holder) in self.held.iter() {
            if self.reserved.overlapping(pair).next().is_some() && !displaced.contains(holder) {
                displaced.push(holder.clone());
            }
        }
        for holder in &displaced {
            self.release(holder);
        }
        displaced
    }

    /// Whether `who` may have `pair`, without taking it (quick mode asks before it answers).
    /// A refusal is boxed: it holds two pairs of 16-byte-capable addresses and is the cold path.
    pub fn check(&self, who: Claimant<'_>, pair: &ProtectedNetwork) -> Result<(), Box<Refusal>> {
        let holder = match who {
            // Its children lie inside its own protected networks (the session checked), which
            // it reserved; the validator already settled its overlaps with other policies.
            Claimant::Policy(_) => return Ok(()),
            Claimant::Spoke(h) => h,
        };
        if let Some((_, r, owner)) = self.reserved.overlapping(pair).next() {
            return Err(Box::new(Refusal {
                asked: *pair,
                taken: *r,
                by: owner.to_string(),
                reserved: true,
            }));
        }
        if let Some((_, r, h)) = self
            .held
            .overlapping(pair)
            .find(|(_, _, h)| &***h != holder)
        {
            return Err(Box::new(Refusal {
                asked: *pair,
                taken: *r,
                by: h.to_string(),
                reserved: false,
            }));
        }
        Ok(())
    }

    /// Takes `pair` for `who` (child SA installed, or re-keyed: a holder may claim again what it
    /// holds). A refusal is counted.
    pub fn claim(
        &mut self,
        who: Claimant<'_>,
        pair: &ProtectedNetwork,
    ) -> Result<(), Box<Refusal>> {
        if let Err(r) = self.check(who, pair) {
            self.refused = self.refused.saturating_add(1);
            return Err(r);
        }
        if let Claimant::Spoke(h) = who {
            let held = &self.held;
            let has = |slots: &Vec<Slot>| {
                slots
                    .iter()
                    .any(|s| held.get(*s).is_some_and(|(p, _)| p == pair))
            };
            if !self.holdings.get(h).is_some_and(has) {
                // One copy of the holder's key for both tables.
                let key: Arc<str> = Arc::from(h);
                let slot = self.held.insert(*pair, key.clone());
                self.holdings.entry(key).or_default().push(slot);
            }
        }
        Ok(())
    }

    /// Gives back everything `holder` holds (its peer is gone).
    pub fn release(&mut self, holder: &str) {
        for slot in self.holdings.remove(holder).unwrap_or_default() {
            self.held.remove(slot);
        }
    }

    /// Gives back one pair of `holder` (its last child SA for that pair is gone).
    pub fn release_pair(&mut self, holder: &str, pair: &ProtectedNetwork) {
        let Some(slots) = self.holdings.get_mut(holder) else {
            return;
        };
        let held = &mut self.held;
        slots.retain(|s| {
            let same = held.get(*s).is_some_and(|(p, _)| p == pair);
            if same {
                held.remove(*s);
            }
            !same
        });
        if slots.is_empty() {
            self.holdings.remove(holder);
        }
    }

    /// Counts a refusal decided through [`ClaimTable::check`] (quick mode refused the pair).
    pub fn count_refusal(&mut self) {
        self.refused = self.refused.saturating_add(1);
    }

    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Pairs held by spokes (tests, `show` commands).
    pub fn held(&self) -> impl Iterator<Item = (&ProtectedNetwork, &str)> {
        self.held.iter().map(|(_, p, h)| (p, &**h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_sources;

    fn pn(local: &str, remote: &str) -> ProtectedNetwork {
        ProtectedNetwork {
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
        }
    }

    const BASE: &str = r#"
[interface.wan]
address = "192.0.2.1"
[ipsec-transform.T]
esp-encryption = "aes-cbc-128"
esp-authentication = "hmac-sha1"
[isakmp-transform.P]
encryption = "aes-cbc-128"
hash = "sha1"
dh-group = 14
[ipsec-policy-isakmp.Branches]
interface = "wan"
peer = "192.0.2.0/24"
preshared-key = "a long random secret"
isakmp-transform = ["P"]
ipsec-transform = ["T"]
protected-network = [ { local = "198.51.100.0/24", remote = "203.0.113.0/24" } ]
"#;

    const TO_BERNE: &str = r#"
[ipsec-policy-manual.ToBerne]
interface = "wan"
peer = "192.0.2.2"
transform = "T"
protected-network = [ { local = "198.51.100.0/24", remote = "203.0.113.0/28" } ]
inbound  = { esp-spi = 1111, esp-encryption-key = "0x00112233445566778899aabbccddeeff", esp-authentication-key = "0x0102030405060708090a0b0c0d0e0f1011121314" }
outbound = { esp-spi = 2222, esp-encryption-key = "0xffeeddccbbaa99887766554433221100", esp-authentication-key = "0x1413121110090807060504030201000f0e0d0c0b" }
"#;

    const HQ: &str = r#"
[ipsec-policy-isakmp.HQ]
interface = "wan"
peer = "192.0.2.3"
preshared-key = "another long random secret"
isakmp-transform = ["P"]
ipsec-transform = ["T"]
protected-network = [ { local = "198.51.100.0/24", remote = "203.0.113.64/26" } ]
"#;

    fn profiles(extra: &[&str]) -> Profiles {
        let text = std::iter::once(BASE)
            .chain(extra.iter().copied())
            .collect::<String>();
        match load_sources(vec![("t.toml".into(), text)]) {
            Ok(l) => l.profiles,
            Err(e) => panic!("profiles refused: {e:?}"),
        }
    }

    #[test]
    fn manual_and_single_peer_pairs_are_reserved_from_load() {
        let t = ClaimTable::new(&profiles(&[TO_BERNE, HQ]));
        let owners: Vec<String> = t.reserved.iter().map(|(_, _, o)| o.to_string()).collect();
        assert_eq!(
            owners,
            ["ipsec-policy-manual.ToBerne", "ipsec-policy-isakmp.HQ"],
            "templates reserve nothing; everything else does"
        );
    }

    #[test]
    fn spoke_refused_a_pair_reserved_by_a_down_policy() {
        let mut t = ClaimTable::new(&profiles(&[TO_BERNE, HQ]));
        let spoke = Claimant::Spoke("Branches@192.0.2.10");
        // Inside the manual policy's remote network: refused, naming the owner.
        let e = t
            .claim(spoke, &pn("198.51.100.0/24", "203.0.113.0/29"))
            .unwrap_err();
        assert!(e.reserved);
        assert_eq!(e.by, "ipsec-policy-manual.ToBerne");
        assert!(
            e.to_string().starts_with(
                "remote network 203.0.113.0/29 is reserved by ipsec-policy-manual.ToBerne"
            ),
            "{e}"
        );
        // Covering the single-peer policy's (whose tunnel was never up): refused.
        let e = t
            .claim(spoke, &pn("198.51.100.7", "203.0.113.64/27"))
            .unwrap_err();
        assert_eq!(e.by, "ipsec-policy-isakmp.HQ");
        // The whole template network overlaps both.
        assert!(
            t.check(spoke, &pn("198.51.100.0/24", "203.0.113.0/24"))
                .is_err()
        );
        assert_eq!(t.refused(), 2, "check() does not count, claim() does");
        // Elsewhere in the template: granted.
        assert!(
            t.claim(spoke, &pn("198.51.100.0/24", "203.0.113.16/28"))
                .is_ok()
        );
    }

    #[test]
    fn overlap_must_be_on_both_sides() {
        let mut t = ClaimTable::new(&profiles(&[TO_BERNE]));
        // Same remote network, but a local side ToBerne does not protect: no packet can match
        // both, so it is not ToBerne's traffic.
        let other_local = pn("198.51.101.0/24", "203.0.113.0/28");
        assert!(
            t.claim(Claimant::Spoke("B@192.0.2.10"), &other_local)
                .is_ok()
        );
        // Two spokes: same local side, disjoint remotes are fine; overlapping remotes are not.
        let a = Claimant::Spoke("B@192.0.2.10");
        let b = Claimant::Spoke("B@192.0.2.11");
        assert!(
            t.claim(a, &pn("198.51.100.0/24", "203.0.113.32/28"))
                .is_ok()
        );
        assert!(
            t.claim(b, &pn("198.51.100.0/24", "203.0.113.48/28"))
                .is_ok()
        );
        let e = t
            .claim(b, &pn("198.51.100.128/25", "203.0.113.40/29"))
            .unwrap_err();
        assert!(!e.reserved);
        assert_eq!(e.by, "B@192.0.2.10");
        assert!(
            t.claim(b, &pn("198.51.101.0/24", "203.0.113.40/29"))
                .is_ok()
        );
    }

    #[test]
    fn holder_reclaims_its_own_pair_on_rekey_and_releases() {
        let mut t = ClaimTable::new(&profiles(&[]));
        let a = Claimant::Spoke("B@192.0.2.10");
        let b = Claimant::Spoke("B@192.0.2.11");
        let pair = pn("198.51.100.0/24", "203.0.113.0/25");
        assert!(t.claim(a, &pair).is_ok());
        assert!(t.claim(a, &pair).is_ok(), "re-key of the same pair");
        assert!(t.claim(a, &pn("198.51.100.0/24", "203.0.113.0/26")).is_ok());
        assert_eq!(t.held().count(), 2, "a re-claim is not stored twice");
        assert!(t.claim(b, &pn("198.51.100.1", "203.0.113.1")).is_err());
        t.release_pair("B@192.0.2.10", &pair);
        assert!(
            t.claim(b, &pn("198.51.100.1", "203.0.113.1")).is_err(),
            "/26 still held"
        );
        t.release("B@192.0.2.10");
        assert!(t.claim(b, &pn("198.51.100.1", "203.0.113.1")).is_ok());
    }

    #[test]
    fn single_peer_policy_children_always_granted() {
        let mut t = ClaimTable::new(&profiles(&[HQ]));
        let hq = Claimant::Policy("HQ");
        assert!(
            t.claim(hq, &pn("198.51.100.0/24", "203.0.113.64/26"))
                .is_ok()
        );
        assert!(t.claim(hq, &pn("198.51.100.9", "203.0.113.70")).is_ok());
        assert_eq!(t.held().count(), 0, "covered by its reservation");
    }

    /// A manual policy reserving an IPv6 pair and an IPv4 one (a tunnel carrying both).
    const DUAL: &str = r#"
[ipsec-policy-manual.Dual]
interface = "wan"
peer = "192.0.2.4"
transform = "T"
protected-network = [
  { local = "198.51.100.0/24", remote = "203.0.113.128/28" },
  { local = "2001:db8:1::/48", remote = "2001:db8:2::/64" },
]
inbound  = { esp-spi = 3333, esp-encryption-key = "0x00112233445566778899aabbccddeeff", esp-authentication-key = "0x0102030405060708090a0b0c0d0e0f1011121314" }
outbound = { esp-spi = 4444, esp-encryption-key = "0xffeeddccbbaa99887766554433221100", esp-authentication-key = "0x1413121110090807060504030201000f0e0d0c0b" }
"#;

    /// IPv6 pairs are reserved and held like IPv4 ones, and a pair of one family never stands
    /// in the way of the other.
    #[test]
    fn ipv6_pairs_reserved_and_held_per_family() {
        let mut t = ClaimTable::new(&profiles(&[DUAL]));
        assert_eq!(t.reserved.len(), 2);
        let a = Claimant::Spoke("Branches@192.0.2.10");
        let b = Claimant::Spoke("Branches@192.0.2.11");
        // Inside Dual's IPv6 reservation: refused, naming Dual.
        let e = t
            .claim(a, &pn("2001:db8:1::/64", "2001:db8:2::5"))
            .unwrap_err();
        assert!(e.reserved);
        assert_eq!(e.by, "ipsec-policy-manual.Dual");
        // Another /64 of the same /48: granted; a second spoke cannot take an overlap of it.
        assert!(
            t.claim(a, &pn("2001:db8:1::/48", "2001:db8:2:1::/64"))
                .is_ok()
        );
        let e = t
            .claim(b, &pn("2001:db8:1::9", "2001:db8:2:1::/80"))
            .unwrap_err();
        assert_eq!((e.reserved, e.by.as_str()), (false, "Branches@192.0.2.10"));
        // IPv4 pairs beside them are judged on their own: Dual's IPv4 block is refused, the
        // rest of the template is granted, whatever the IPv6 holdings.
        assert!(t.claim(b, &pn("198.51.100.0/24", "203.0.113.130")).is_err());
        assert!(t.claim(b, &pn("198.51.100.0/24", "203.0.113.0/28")).is_ok());
        // ::/0 overlaps every IPv6 pair and no IPv4 one.
        let all6 = pn("::/0", "::/0");
        assert_eq!(
            t.check(b, &all6).map_err(|e| e.by),
            Err("ipsec-policy-manual.Dual".to_string())
        );
        t.release("Branches@192.0.2.10");
        assert!(
            t.claim(b, &pn("2001:db8:1::9", "2001:db8:2:1::/80"))
                .is_ok()
        );
    }

    #[test]
    fn reload_reserves_and_releases_by_diff() {
        let mut t = ClaimTable::new(&profiles(&[]));
        let a = Claimant::Spoke("Branches@192.0.2.10");
        let b = Claimant::Spoke("Branches@192.0.2.11");
        assert!(t.claim(a, &pn("198.51.100.0/24", "203.0.113.0/29")).is_ok());
        assert!(
            t.claim(b, &pn("198.51.100.0/24", "203.0.113.200/29"))
                .is_ok()
        );
        // ToBerne is added: the spoke holding part of its network is displaced, the other kept.
        let displaced = t.reserve(&profiles(&[TO_BERNE]));
        assert_eq!(displaced, [Arc::<str>::from("Branches@192.0.2.10")]);
        assert_eq!(t.held().count(), 1);
        assert!(
            t.claim(a, &pn("198.51.100.0/24", "203.0.113.0/29"))
                .is_err()
        );
        // ToBerne is removed again: its networks are free.
        assert!(t.reserve(&profiles(&[])).is_empty());
        assert!(t.claim(a, &pn("198.51.100.0/24", "203.0.113.0/29")).is_ok());
    }
}

/// The fuzz target `claims` (and a unit test): bytes drive reservations, then claims and
/// releases of eight spokes over a small address space where overlaps are frequent; after every
/// step the table's promise is checked and a violation panics. Never panics otherwise.
/// Returns (claims granted, claims refused), so a test can see both paths ran.
#[doc(hidden)]
pub fn fuzz_ops(data: &[u8]) -> (u64, u64) {
    use crate::config::NetworkSpec;
    // Two bytes per side: start and length inside x.x.x.0/26, or inside 2001:db8:x:x::/122
    // with the same last byte when the local length's top bit is set (both families at once,
    // with equal low bits, so a family mix-up would show as an overlap).
    let pair = |b: &[u8]| {
        let v6 = b[1] & 0x80 != 0;
        let side = |base: [u8; 3], start: u8, len: u8| {
            let start = start % 64;
            let end = start.saturating_add(len % 16);
            let addr = |last: u8| -> std::net::IpAddr {
                if v6 {
                    let net = u16::from_be_bytes([base[0], base[1]]);
                    std::net::Ipv6Addr::new(
                        0x2001,
                        0xdb8,
                        net,
                        u16::from(base[2]),
                        0,
                        0,
                        0,
                        last.into(),
                    )
                    .into()
                } else {
                    [base[0], base[1], base[2], last].into()
                }
            };
            NetworkSpec::Range {
                start: addr(start),
                end: addr(end),
            }
        };
        ProtectedNetwork {
            local: side([198, 51, 100], b[0], b[1]),
            remote: side([203, 0, 113], b[2], b[3]),
        }
    };
    let Some((&n, mut rest)) = data.split_first() else {
        return (0, 0);
    };
    let mut t = ClaimTable::default();
    for i in 0..(n % 5) {
        let Some((b, r)) = rest.split_first_chunk::<4>() else {
            return (0, 0);
        };
        rest = r;
        let owner = Owner::Manual(Arc::from(format!("M{i}")));
        t.reserved.insert(pair(b), owner);
    }
    let holders: Vec<String> = (0..8).map(|i| format!("T@192.0.2.{i}")).collect();
    let mut granted = 0u64;
    while let Some((b, r)) = rest.split_first_chunk::<5>() {
        rest = r;
        let h = holders[usize::from(b[0] & 7)].as_str();
        let p = pair(&b[1..]);
        match b[0] >> 3 {
            0 => t.release(h),
            1 => t.release_pair(h, &p),
            2 => {
                let checked = t.check(Claimant::Spoke(h), &p).is_ok();
                assert_eq!(checked, t.claim(Claimant::Spoke(h), &p).is_ok());
            }
            3 => assert!(t.claim(Claimant::Policy("M0"), &p).is_ok()),
            _ => {
                // The indexes must decide as a scan of every pair would.
                let scan = t.reserved.iter().all(|(_, r, _)| !r.overlaps(&p))
                    && t.held.iter().all(|(_, q, x)| &**x == h || !q.overlaps(&p));
                let ok = t.claim(Claimant::Spoke(h), &p).is_ok();
                assert_eq!(ok, scan, "{h} {p:?}");
                granted += u64::from(ok);
            }
        }
        let held: Vec<(&ProtectedNetwork, &str)> = t.held().collect();
        for (i, (p, a)) in held.iter().enumerate() {
            assert!(t.reserved.iter().all(|(_, r, _)| !r.overlaps(p)), "{p:?}");
            for (q, b) in &held[i + 1..] {
                assert!(a == b || !p.overlaps(q), "{a} {p:?} and {b} {q:?}");
            }
        }
        for (holder, slots) in &t.holdings {
            assert!(!slots.is_empty(), "{holder} holds nothing but is listed");
        }
        assert_eq!(
            t.holdings.values().map(Vec::len).sum::<usize>(),
            t.held.len(),
            "every held pair is in its holder's list"
        );
    }
    (granted, t.refused())
}

#[cfg(test)]
mod invariant {
    //! Random claims and releases against the table's promise: whatever the order, no granted
    //! pair overlaps a reserved pair or another holder's pair.
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn granted_pairs_never_overlap_what_others_have() {
        let mut rng = StdRng::seed_from_u64(9);
        let (mut granted, mut refused) = (0, 0);
        for _ in 0..200 {
            let len = rng.random_range(0..2000usize);
            let data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let (g, r) = super::fuzz_ops(&data);
            granted += g;
            refused += r;
        }
        assert!(granted > 1000 && refused > 1000, "{granted} {refused}");
    }
}

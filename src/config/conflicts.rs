//! Problems between tables rather than inside one: SPIs used twice, protected networks that make
//! the security policy lookup ambiguous, interfaces that would bind the same socket.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::diagnostic::{Loc, Sink};
use super::model::{Interface, PeerSpec};
use super::network::{NetworkSpec, ProtectedNetwork};
use super::raw::{self, Named, RawInterface};

/// An SPI written in a manual policy.
#[derive(Debug)]
pub(crate) struct SpiUse {
    /// `ipsec-policy-manual.NAME`
    pub policy: String,
    /// `inbound.esp-spi` ...
    pub key: String,
    pub interface: String,
    pub peer: IpAddr,
    pub inbound: bool,
    pub proto: &'static str,
    pub spi: u32,
    pub loc: Loc,
}

/// A protected network of a policy.
#[derive(Debug)]
pub(crate) struct SelectorUse {
    pub policy: String,
    pub network: ProtectedNetwork,
    pub loc: Loc,
    /// `Some(peer)` for a template policy (peer block or `any`).
    pub template: Option<PeerSpec>,
}

#[derive(Debug, Default)]
pub(crate) struct Uses {
    pub spis: Vec<SpiUse>,
    pub selectors: Vec<SelectorUse>,
}

fn position(l: &Loc) -> (&std::path::Path, usize, usize) {
    (&l.file, l.line, l.col)
}

pub(crate) fn check(
    raw_ifaces: &[Named<RawInterface>],
    ifaces: &BTreeMap<String, Interface>,
    uses: &Uses,
    sink: &Sink,
) {
    sockets(raw_ifaces, ifaces, sink);
    spis(&uses.spis, sink);
    overlaps(&uses.selectors, sink);
}

/// Two interfaces on one address must not share a UDP port.
fn sockets(raw_ifaces: &[Named<RawInterface>], ifaces: &BTreeMap<String, Interface>, sink: &Sink) {
    let valid: Vec<(&Named<RawInterface>, &Interface)> = raw_ifaces
        .iter()
        .filter_map(|r| ifaces.get(&r.name).map(|i| (r, i)))
        .collect();
    for (j, (rj, b)) in valid.iter().enumerate() {
        for (ra, a) in &valid[..j] {
            if a.address != b.address {
                continue;
            }
            let pa = [a.ike_port, a.nat_t_port];
            if let Some(p) = [b.ike_port, b.nat_t_port]
                .into_iter()
                .find(|p| pa.contains(p))
            {
                sink.error(
                    &rj.loc,
                    format!(
                        "{}.{}: address {} port {p} is already bound by {}.{} (at {})",
                        raw::INTERFACE,
                        b.name,
                        b.address,
                        raw::INTERFACE,
                        a.name,
                        ra.loc
                    ),
                );
            }
        }
    }
}

/// Inbound SAs are found by (SPI, protocol) on the interface that receives them (RFC 4301
/// §4.1), so an inbound SPI may appear only once per interface and protocol. An outbound SPI
/// is the peer's inbound SPI: it must be unique per interface, peer and protocol (different
/// peers may well choose the same number).
fn spis(all: &[SpiUse], sink: &Sink) {
    for (j, b) in all.iter().enumerate() {
        let clash = all[..j].iter().find(|a| {
            a.spi == b.spi
                && a.proto == b.proto
                && a.inbound == b.inbound
                && a.interface == b.interface
                && (b.inbound || a.peer == b.peer)
        });
        if let Some(a) = clash {
            let (first, second) = if position(&a.loc) <= position(&b.loc) {
                (a, b)
            } else {
                (b, a)
            };
            let scope = if b.inbound {
                format!("inbound {} SPIs must be unique per interface", b.proto)
            } else {
                format!(
                    "outbound {} SPIs must be unique per interface and peer",
                    b.proto
                )
            };
            sink.error(
                &second.loc,
                format!(
                    "{}: {} {} is already used by {} {} on interface {} (at {}); {scope}",
                    second.policy,
                    second.key,
                    second.spi,
                    first.policy,
                    first.key,
                    b.interface,
                    first.loc
                ),
            );
        }
    }
}

/// Whether two protected networks of different policies make the policy lookup ambiguous.
///
/// The rule: a cleartext packet is matched against every policy's (local, remote) pairs.
/// When two pairs overlap on both sides, a packet could match both; that is accepted only when
/// one pair lies entirely inside the other (each side inside the other's side, and not the very
/// same pair): the more specific pair then wins, as in a longest-prefix route lookup. Anything
/// else (partial overlap, or the same networks twice) is refused, naming both policies.
///
/// Checked over all policies, not per interface: the cleartext side is one tunnel device, so a
/// packet from it is looked up against every policy.
///
/// Template policies (peer a block or `any`) hold no security policy entry of their own: each
/// spoke that authenticates gets entries for the networks it negotiated (equal to or narrower
/// than the template's). So a template is checked here only against other templates whose
/// peers overlap (a spoke could then match either), not against policies with one peer address;
/// that is what lets the contract's example (a manual ToBerne and a template Branches with the
/// same networks) load. At run time `crate::claims` keeps them apart: every manual and
/// single-peer IKE policy reserves its pairs when the profiles load (tunnel up or not), and a
/// spoke is granted a negotiated pair only if it overlaps, on both sides, no reserved pair and
/// no pair another spoke holds. So in that example the Branches spokes can never take ToBerne's
/// networks; quick mode refuses them with INVALID-ID-INFORMATION naming ToBerne.
pub fn ambiguous(a: &ProtectedNetwork, b: &ProtectedNetwork) -> bool {
    a.overlaps(b) && !a.is_more_specific_than(b) && !b.is_more_specific_than(a)
}

fn overlaps(all: &[SelectorUse], sink: &Sink) {
    let mut reported = std::collections::BTreeSet::new();
    for (j, b) in all.iter().enumerate() {
        for a in &all[..j] {
            let comparable = match (&a.template, &b.template) {
                (None, None) => true,
                (Some(pa), Some(pb)) => peers_overlap(pa, pb),
                _ => false,
            };
            if a.policy == b.policy || !comparable || !ambiguous(&a.network, &b.network) {
                continue;
            }
            if !reported.insert((a.policy.clone(), b.policy.clone())) {
                continue;
            }
            let (first, second) = if position(&a.loc) <= position(&b.loc) {
                (a, b)
            } else {
                (b, a)
            };
            let (f, s) = (&first.network, &second.network);
            let local = std::cmp::max(f.local.first(), s.local.first());
            let remote = std::cmp::max(f.remote.first(), s.remote.first());
            sink.error(
                &second.loc,
                format!(
                    "{}: protected-network {} <-> {} overlaps {}'s {} <-> {} (at {}), and neither \
                     lies inside the other: a packet {local} -> {remote} would match both. Make \
                     them disjoint, or make one strictly more specific (the more specific wins)",
                    second.policy, s.local, s.remote, first.policy, f.local, f.remote, first.loc
                ),
            );
        }
    }
}

fn peers_overlap(a: &PeerSpec, b: &PeerSpec) -> bool {
    // `any` admits spokes of either family, so it overlaps every other peer.
    let block = |p: &PeerSpec| match p {
        PeerSpec::Any => None,
        PeerSpec::Block(b) => Some(*b),
        PeerSpec::Address(a) => Some(NetworkSpec::Host(*a)),
    };
    match (block(a), block(b)) {
        (Some(x), Some(y)) => x.overlaps(&y),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pn(local: &str, remote: &str) -> ProtectedNetwork {
        ProtectedNetwork {
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
        }
    }

    #[test]
    fn overlap_rule() {
        let wide = pn("198.51.100.0/24", "any");
        // Disjoint on one side: never ambiguous.
        assert!(!ambiguous(&wide, &pn("192.168.0.0/24", "203.0.113.0/24")));
        // Inside on both sides (one side equal): the specific one wins.
        assert!(!ambiguous(&wide, &pn("198.51.100.0/24", "203.0.113.0/24")));
        assert!(!ambiguous(&pn("198.51.100.0/24", "203.0.113.0/24"), &wide));
        // The same networks twice.
        assert!(ambiguous(&wide, &pn("198.51.100.0/24", "0.0.0.0/0")));
        // Host and /32 are the same set.
        assert!(ambiguous(
            &pn("198.51.100.7", "203.0.113.0/24"),
            &pn("198.51.100.7/32", "203.0.113.0/24")
        ));
        // Narrower on one side, wider on the other: crossed.
        assert!(ambiguous(
            &pn("198.51.100.0/25", "203.0.113.0/24"),
            &pn("198.51.100.0/24", "203.0.113.0/25")
        ));
        // Partial range overlap.
        assert!(ambiguous(
            &pn("198.51.100.10-198.51.100.20", "203.0.113.0/24"),
            &pn("198.51.100.15-198.51.100.30", "203.0.113.0/24")
        ));
    }

    /// The same rule in IPv6, and never across families.
    #[test]
    fn overlap_rule_ipv6_and_across_families() {
        let wide = pn("2001:db8:1::/48", "::/0");
        assert!(!ambiguous(&wide, &pn("2001:db8:1::/48", "2001:db8:2::/48")));
        assert!(ambiguous(&wide, &pn("2001:db8:1::/48", "::/0")));
        assert!(ambiguous(
            &pn("2001:db8:1::/64", "2001:db8:2::/48"),
            &pn("2001:db8:1::/48", "2001:db8:2::/64")
        ));
        assert!(ambiguous(
            &pn("2001:db8:1::7", "2001:db8:2::/48"),
            &pn("2001:db8:1::7/128", "2001:db8:2::/48")
        ));
        // any <-> any (IPv4) and ::/0 <-> ::/0 share no packet.
        assert!(!ambiguous(&pn("any", "any"), &pn("::/0", "::/0")));
    }

    #[test]
    fn template_peers_overlap_within_a_family() {
        let block = |s: &str| PeerSpec::Block(s.parse().unwrap());
        let addr = |s: &str| PeerSpec::Address(s.parse().unwrap());
        assert!(peers_overlap(
            &block("2001:db8::/32"),
            &block("2001:db8:5::/48")
        ));
        assert!(peers_overlap(&block("2001:db8::/32"), &addr("2001:db8::9")));
        assert!(!peers_overlap(
            &block("2001:db8::/32"),
            &block("2001:db9::/32")
        ));
        assert!(!peers_overlap(&block("::/0"), &block("0.0.0.0/1")));
        assert!(!peers_overlap(&addr("2001:db8::9"), &addr("192.0.2.9")));
        assert!(peers_overlap(&PeerSpec::Any, &block("2001:db8::/32")));
        assert!(peers_overlap(&PeerSpec::Any, &block("192.0.2.0/24")));
    }
}

//! IPv6 protected networks negotiated over IPv4 endpoints (issue 11: IPv6 in IPv4): the
//! quick-mode IDs are ID_IPV6_ADDR_SUBNET / _ADDR / _RANGE, a narrower spoke proposal is
//! accepted, a wider or other-family one refused with INVALID-ID-INFORMATION and a reason.

use super::harness::*;
use crate::config::{Family, ProtectedNetwork};
use crate::ike::ChildSaInfo;
use crate::ike::config::PeerConfig;
use crate::wire::isakmp::NotifyType;

const HUB_LAN: &str = "2001:db8:1::/48";
const SPOKE_LAN: &str = "2001:db8:2::/48";

/// A (the spoke, initiator) protects `a`; B (the hub, responder) protects HUB_LAN <-> SPOKE_LAN.
fn pair(a: ProtectedNetwork, seed: u64) -> Pair {
    let mut ca: PeerConfig = config("ToHub", true);
    ca.protected_networks = vec![a];
    let mut cb = config("Spokes", false);
    cb.protected_networks = vec![net(HUB_LAN, SPOKE_LAN)];
    Pair::new(ca, cb, seed)
}

fn both_up(p: &Pair) -> (ChildSaInfo, ChildSaInfo) {
    let (a, b) = (p.installed(0), p.installed(1));
    assert_eq!(
        a.len(),
        1,
        "A: {:?} / B: {:?}",
        p.failures(0),
        p.failures(1)
    );
    assert_eq!(b.len(), 1, "B: {:?}", p.failures(1));
    assert_eq!(a[0].spis().inbound, b[0].spis().outbound);
    (a[0].clone(), b[0].clone())
}

/// The hub's INVALID-ID-INFORMATION reason; nothing installed on either side.
fn refused(p: &Pair) -> String {
    let f = p.failures(1);
    let Some((reason, _)) = f
        .iter()
        .find(|(_, n)| *n == Some(NotifyType::INVALID_ID_INFORMATION))
    else {
        panic!("the hub did not refuse: {f:?}");
    };
    assert!(p.installed(0).is_empty() && p.installed(1).is_empty());
    reason.clone()
}

#[test]
fn ipv6_networks_over_ipv4_endpoints() {
    let mut p = pair(net(SPOKE_LAN, HUB_LAN), 1100);
    p.run_until(5.0);
    let (a, b) = both_up(&p);
    assert_eq!(a.protected_networks, vec![net(SPOKE_LAN, HUB_LAN)]);
    assert_eq!(b.protected_networks, vec![net(HUB_LAN, SPOKE_LAN)]);
    assert_eq!(b.protected_networks[0].family(), Family::V6);
    // The outer endpoints stay IPv4.
    assert!(b.outbound.peer.is_ipv4() && b.outbound.local.is_ipv4());
}

#[test]
fn narrower_ipv6_spoke_proposal_accepted() {
    // A host and a range inside the template's /48s: ID_IPV6_ADDR and ID_IPV6_ADDR_RANGE.
    let narrow = net("2001:db8:2::7", "2001:db8:1::10-2001:db8:1::20");
    let mut p = pair(narrow, 1101);
    p.run_until(5.0);
    let (_, b) = both_up(&p);
    assert_eq!(
        b.protected_networks,
        vec![net("2001:db8:1::10-2001:db8:1::20", "2001:db8:2::7")]
    );
}

#[test]
fn wider_ipv6_proposal_refused() {
    let mut p = pair(net("2001:db8::/32", HUB_LAN), 1102);
    p.run_until(5.0);
    let reason = refused(&p);
    assert!(
        reason.contains("peer proposed 2001:db8::/32 <-> 2001:db8:1::/48 (its side first), policy Spokes protects"),
        "{reason}"
    );
    // The family is right, so the reason does not blame it.
    assert!(!reason.contains("protects no"), "{reason}");
}

#[test]
fn other_family_proposal_refused_with_the_reason() {
    let mut p = pair(net("10.1.0.0/16", "10.2.0.0/16"), 1103);
    p.run_until(5.0);
    let reason = refused(&p);
    assert!(
        reason.contains("peer proposed 10.1.0.0/16 <-> 10.2.0.0/16 (its side first) (IPv4; the policy protects no IPv4 network)"),
        "{reason}"
    );
}

/// A peer whose IDci and IDcr are of two families (our validator never writes such a pair, so
/// side A's config is built by hand, as a hostile peer's would be): refused before the policy
/// is even consulted, naming both families.
#[test]
fn ids_of_two_families_refused() {
    let mut p = pair(net("10.1.0.0/16", HUB_LAN), 1104);
    p.run_until(5.0);
    let reason = refused(&p);
    assert_eq!(
        reason,
        "IDci 10.1.0.0/16 is IPv4, IDcr 2001:db8:1::/48 is IPv6: a protected network carries one family"
    );
}

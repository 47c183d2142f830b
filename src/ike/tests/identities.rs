//! Phase-1 identities (`local-id` / `remote-id`, docs/profiles.md) and the quick-mode selector
//! guard (point 2), session against session on virtual time.

use std::sync::Arc;

use super::harness::*;
use crate::config::{LocalId, ProtectedNetwork, RemoteId};
use crate::ike::Event;
use crate::ike::config::{PeerConfig, SelectorGuard};
use crate::wire::isakmp::NotifyType;

fn ids(mut c: PeerConfig, local: &str, remote: &str) -> PeerConfig {
    c.local_id = local.parse::<LocalId>().unwrap();
    c.remote_id = remote.parse::<RemoteId>().unwrap();
    c
}

/// The `peer_id` of each IsakmpSaEstablished of `side`.
fn peer_ids(p: &Pair, side: usize) -> Vec<String> {
    p.events(side)
        .into_iter()
        .filter_map(|e| match e {
            Event::IsakmpSaEstablished { peer_id, .. } => Some(peer_id.clone()),
            _ => None,
        })
        .collect()
}

/// Phase 1 failed on `side` with INVALID-ID-INFORMATION, and nothing was established there.
fn refused_id(p: &Pair, side: usize) -> String {
    let f = p.failures(side);
    let Some((reason, _)) = f
        .iter()
        .find(|(_, n)| *n == Some(NotifyType::INVALID_ID_INFORMATION))
    else {
        panic!(
            "side {side} did not refuse the ID: {f:?} / {:?}",
            p.events(side)
        );
    };
    assert!(peer_ids(p, side).is_empty(), "{:?}", p.events(side));
    assert!(p.installed(side).is_empty());
    reason.clone()
}

#[test]
fn fqdn_both_ways_with_a_wildcard() {
    let a = ids(
        config("ToB", true),
        "fqdn:spoke1.branches.example.net",
        "fqdn:hub.example.net",
    );
    let b = ids(
        config("ToA", false),
        "fqdn:hub.example.net",
        "fqdn:*.branches.example.net",
    );
    let mut p = Pair::new(a, b, 900);
    p.run_until(5.0);
    assert!(p.failures(0).is_empty() && p.failures(1).is_empty());
    assert_eq!(peer_ids(&p, 0), ["fqdn:hub.example.net"]);
    assert_eq!(peer_ids(&p, 1), ["fqdn:spoke1.branches.example.net"]);
    assert_eq!(p.installed(0).len(), 1);
    assert_eq!(p.installed(1).len(), 1);
}

#[test]
fn user_fqdn_and_keyid_wildcards_match() {
    let a = ids(
        config("ToB", true),
        "user-fqdn:branch7@example.net",
        "keyid:hub-1",
    );
    let b = ids(
        config("ToA", false),
        "keyid:hub-1",
        "user-fqdn:*@example.net",
    );
    let mut p = Pair::new(a, b, 901);
    p.run_until(5.0);
    assert_eq!(peer_ids(&p, 0), ["keyid:hub-1"]);
    assert_eq!(peer_ids(&p, 1), ["user-fqdn:branch7@example.net"]);
}

#[test]
fn wildcard_mismatch_fails_phase_1_with_invalid_id() {
    let a = ids(config("ToB", true), "fqdn:spoke1.evil.example.net", "any");
    let b = ids(
        config("ToA", false),
        "fqdn:hub.example.net",
        "fqdn:*.branches.example.net",
    );
    let mut p = Pair::new(a, b, 902);
    p.run_until(5.0);
    let reason = refused_id(&p, 1);
    assert_eq!(
        reason,
        "peer sent ID fqdn:spoke1.evil.example.net, policy ToA accepts fqdn:*.branches.example.net"
    );
    assert!(p.installed(0).is_empty(), "no child SA on either side");
}

#[test]
fn initiator_checks_the_responder_id_too() {
    let a = ids(config("ToB", true), "address", "fqdn:hub.example.net");
    let b = ids(config("ToA", false), "fqdn:other.example.net", "address");
    let mut p = Pair::new(a, b, 903);
    p.run_until(5.0);
    let reason = refused_id(&p, 0);
    assert!(
        reason.contains("peer sent ID fqdn:other.example.net"),
        "{reason}"
    );
}

#[test]
fn address_id_of_a_peer_behind_nat_is_its_private_address() {
    // Defaults on both sides: "address". A sends 192.0.2.1 from behind NAT_IP.
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 904);
    p.nat_a = true;
    p.run_until(10.0);
    assert!(p.failures(1).is_empty(), "{:?}", p.failures(1));
    assert_eq!(peer_ids(&p, 1), ["address:192.0.2.1"]);
    assert_eq!(peer_ids(&p, 0), ["address:192.0.2.2"]);
    assert_eq!(p.installed(1).len(), 1);
}

#[test]
fn address_id_that_is_not_the_sender_is_refused_without_nat() {
    // No NAT-T, so no NAT-D: A's ID (192.0.2.1) must equal the address B sees (192.0.2.77).
    let mut a = config("ToB", true);
    let mut b = config("ToA", false);
    a.nat.enabled = false;
    b.nat.enabled = false;
    let mut p = Pair::new(a, b, 905);
    p.a_seen_as = Some([192, 0, 2, 77]);
    p.run_until(5.0);
    let reason = refused_id(&p, 1);
    assert_eq!(
        reason,
        "peer sent ID address:192.0.2.1, policy ToA accepts address:192.0.2.77"
    );
    // The same with the address matching: accepted (the harness itself is not the cause).
    let mut a = config("ToB", true);
    let mut b = config("ToA", false);
    a.nat.enabled = false;
    b.nat.enabled = false;
    let mut p = Pair::new(a, b, 906);
    p.run_until(5.0);
    assert_eq!(peer_ids(&p, 1), ["address:192.0.2.1"]);
}

#[test]
fn hostile_long_id_is_shown_bounded() {
    let long = format!("fqdn:{}.example.net", "x".repeat(200));
    let a = ids(config("ToB", true), &long, "any");
    let b = ids(
        config("ToA", false),
        "address",
        "fqdn:*.branches.example.net",
    );
    let mut p = Pair::new(a, b, 907);
    p.run_until(5.0);
    let reason = refused_id(&p, 1);
    assert!(reason.len() < 200, "{reason}");
    assert!(reason.contains("(212 bytes)"), "{reason}");
}

/// Refuses every pair whose remote side overlaps `taken`, naming an owner.
#[derive(Debug)]
struct Taken(ProtectedNetwork);

impl SelectorGuard for Taken {
    fn check(&self, pair: &ProtectedNetwork) -> Result<(), String> {
        if pair.overlaps(&self.0) {
            Err(format!(
                "remote network {} is reserved by ipsec-policy-manual.ToBerne",
                pair.remote
            ))
        } else {
            Ok(())
        }
    }
}

#[test]
fn quick_mode_asks_the_selector_guard_before_anything_is_installed() {
    let mut b = config("Branches", false);
    // B's remote is 10.1.0.0/16: A's side.
    b.selector_guard = Some(Arc::new(Taken(net("10.2.0.0/16", "10.1.0.0/16"))));
    let mut p = Pair::new(config("ToB", true), b, 908);
    p.run_until(5.0);
    let f = p.failures(1);
    assert!(
        f.iter().any(|(r, n)| *n == Some(NotifyType::INVALID_ID_INFORMATION)
            && r == "refused: remote network 10.1.0.0/16 is reserved by ipsec-policy-manual.ToBerne"),
        "{f:?}"
    );
    assert_eq!(peer_ids(&p, 1).len(), 1, "phase 1 itself is fine");
    assert!(p.installed(1).is_empty(), "nothing installed on the hub");
    assert!(p.installed(0).is_empty(), "nothing on the spoke either");
    assert!(
        p.sides[1].spis.live.lock().unwrap().is_empty(),
        "no SPI reserved for the refused pair"
    );
    // A pair the guard does not object to goes through.
    let mut b = config("Branches", false);
    b.selector_guard = Some(Arc::new(Taken(net("10.2.0.0/16", "10.9.0.0/16"))));
    let mut p = Pair::new(config("ToB", true), b, 909);
    p.run_until(5.0);
    assert_eq!(p.installed(1).len(), 1, "{:?}", p.failures(1));
}

/// The daemon shares one `PeerConfig` among a template's spokes and gives each session its own
/// guard (`set_selector_guard`): that guard is asked, and wins over the policy's.
#[test]
fn a_session_guard_is_asked_and_wins_over_the_policys() {
    let mut b = config("Branches", false);
    b.selector_guard = Some(Arc::new(Taken(net("10.2.0.0/16", "10.9.0.0/16"))));
    let mut p = Pair::new(config("ToB", true), b, 910);
    p.sides[1]
        .s
        .set_selector_guard(Arc::new(Taken(net("10.2.0.0/16", "10.1.0.0/16"))));
    p.run_until(5.0);
    let f = p.failures(1);
    assert!(
        f.iter()
            .any(|(_, n)| *n == Some(NotifyType::INVALID_ID_INFORMATION)),
        "{f:?}"
    );
    assert!(p.installed(1).is_empty(), "nothing installed on the hub");
    // And with a policy that has no guard at all.
    let mut p = Pair::new(config("ToB", true), config("Branches", false), 911);
    p.sides[1]
        .s
        .set_selector_guard(Arc::new(Taken(net("10.2.0.0/16", "10.1.0.0/16"))));
    p.run_until(5.0);
    assert!(p.installed(1).is_empty(), "nothing installed on the hub");
}

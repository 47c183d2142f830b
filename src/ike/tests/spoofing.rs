//! Forged message 1s with an established peer's address (docs/design.md: IKE demultiplexing):
//! answered where they came from, never moving the peer, never locking it out, never marking it
//! failed.

use std::net::SocketAddr;
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::harness::*;
use crate::config::HashAlgorithm;
use crate::crypto::EncrAlgorithm;
use crate::ike::{Event, IkeSession, Transmit};

/// Main-mode message 1 of a fresh initiator with this policy (what a spoofer can send: it
/// needs no secret).
fn message_1(cfg: crate::ike::PeerConfig, seed: u64) -> Vec<u8> {
    let mut s = IkeSession::new_initiator(
        Arc::new(cfg),
        addr(A_IP, 500),
        addr(B_IP, 500),
        std::time::Instant::now(),
        Box::new(StdRng::seed_from_u64(seed)),
        CountingSpis::new(0x4000_0000),
    );
    s.poll_transmit().expect("message 1").bytes
}

/// Feeds a datagram to side B and returns what B sent in answer (taken off the network).
fn inject_into_b(p: &mut Pair, from: SocketAddr, nat_port: bool, bytes: &[u8]) -> Vec<Transmit> {
    let now = p.now;
    p.sides[1].s.handle_datagram(now, from, nat_port, bytes);
    let mut out = Vec::new();
    while let Some(t) = p.sides[1].s.poll_transmit() {
        out.push(t);
    }
    while let Some(e) = p.sides[1].s.poll_event() {
        p.sides[1].events.push((now - p.t0, e));
    }
    out
}

#[test]
fn forged_message_1_never_moves_an_established_peer() {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 901);
    p.run_until(5.0);
    assert_eq!(p.installed(1).len(), 1);
    assert_eq!(p.sides[1].s.peer(), addr(A_IP, 500));
    let spoofed_from = addr(A_IP, 40000);
    let replies = inject_into_b(
        &mut p,
        spoofed_from,
        false,
        &message_1(config("X", true), 1),
    );
    assert_eq!(replies.len(), 1, "message 2 for the new exchange");
    assert_eq!(
        replies[0].destination, spoofed_from,
        "answered where it came from"
    );
    assert_eq!(
        p.sides[1].s.peer(),
        addr(A_IP, 500),
        "the peer did not move"
    );
    // The tunnel goes on: A re-keys its child later and B answers A, not the spoofer.
    let before = p.log.len();
    p.run_until(4000.0);
    assert!(
        p.log[before..]
            .iter()
            .filter(|(_, side, ..)| *side == 1)
            .all(|(_, _, to, ..)| *to == addr(A_IP, 500)),
        "B sent to {:?}",
        p.log[before..].iter().map(|l| l.2).collect::<Vec<_>>()
    );
    assert!(p.failures(1).is_empty(), "{:?}", p.failures(1));
    assert_eq!(p.installed(1).len(), 1);
}

#[test]
fn forged_message_1s_cannot_lock_out_a_restarting_peer() {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 902);
    p.run_until(5.0);
    // More forged exchanges than B keeps half open, from A's very address and port.
    for seed in 0..20 {
        inject_into_b(
            &mut p,
            addr(A_IP, 500),
            false,
            &message_1(config("X", true), seed),
        );
    }
    // A restarts: its new message 1 must still be answered and its tunnel come back.
    let now = p.now;
    p.sides[0].s = IkeSession::new_initiator(
        Arc::new(config("ToB", true)),
        addr(A_IP, 500),
        addr(B_IP, 500),
        now,
        Box::new(StdRng::seed_from_u64(77)),
        CountingSpis::new(0x3000_0000),
    );
    p.sides[0].events.clear();
    p.run_until(8.0);
    assert!(
        p.events(1)
            .iter()
            .any(|e| matches!(e, Event::InitialContact)),
        "{:?}",
        p.events(1)
    );
    let b = p.installed(1);
    assert_eq!(b.len(), 1, "{:?}", p.events(1));
    assert_crosswise(&p.installed(0)[0], &b[0]);
}

#[test]
fn nat_t_session_answers_a_new_exchange_on_the_port_it_came_from() {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 903);
    p.nat_a = true;
    p.run_until(5.0);
    assert_eq!(p.installed(1).len(), 1);
    let floated = p.sides[1].s.peer();
    assert_eq!(floated, addr(NAT_IP, 14500));
    // A new exchange from the NAT's IKE port (the peer starting over, or a spoofer).
    let from = addr(NAT_IP, 10500);
    let replies = inject_into_b(&mut p, from, false, &message_1(config("X", true), 3));
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].destination, from);
    assert!(!replies[0].source_port_nat_t, "answered from port 500");
    assert_ne!(
        &replies[0].bytes[..4],
        &[0, 0, 0, 0],
        "no non-ESP marker on port 500"
    );
    assert_eq!(
        p.sides[1].s.peer(),
        floated,
        "the established peer stays where it is"
    );
}

#[test]
fn an_unauthenticated_failure_does_not_mark_an_established_peer_failed() {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 904);
    p.run_until(5.0);
    let mut other = config("X", true);
    other.isakmp_transforms = vec![p1(EncrAlgorithm::TripleDes, HashAlgorithm::Md5, 2)];
    let replies = inject_into_b(&mut p, addr(A_IP, 40001), false, &message_1(other, 4));
    assert_eq!(replies.len(), 1, "NO-PROPOSAL-CHOSEN to the sender");
    assert_eq!(replies[0].destination, addr(A_IP, 40001));
    assert!(p.failures(1).is_empty(), "{:?}", p.failures(1));
    assert_eq!(p.installed(1).len(), 1);
}

#[test]
fn a_fresh_responder_still_reports_why_it_failed() {
    let mut a = config("ToB", true);
    a.isakmp_transforms = vec![p1(EncrAlgorithm::TripleDes, HashAlgorithm::Md5, 2)];
    let mut p = Pair::new(a, config("ToA", false), 905);
    p.run_until(2.0);
    assert!(
        !p.failures(1).is_empty(),
        "the operator learns why: {:?}",
        p.events(1)
    );
}

#[test]
fn an_unauthenticated_exchange_cannot_switch_an_established_peer_to_nat_t() {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 906);
    p.run_until(5.0);
    assert_eq!(p.installed(1).len(), 1);
    // An on-path forger runs main mode from another port of A's address: its NAT-D hashes
    // (public values) then say "NAT", and message 3 needs no secret.
    let forged_from = addr(A_IP, 40002);
    let events_before = p.sides[1].events.len();
    let now = p.now;
    let mut forger = IkeSession::new_initiator(
        Arc::new(config("X", true)),
        addr(A_IP, 500),
        addr(B_IP, 500),
        now,
        Box::new(StdRng::seed_from_u64(6)),
        CountingSpis::new(0x5000_0000),
    );
    let mut to_b = forger.poll_transmit().expect("message 1").bytes;
    for _ in 0..2 {
        let replies = inject_into_b(&mut p, forged_from, false, &to_b);
        assert_eq!(replies.len(), 1, "B answers the forged exchange");
        forger.handle_datagram(now, addr(B_IP, 500), false, &replies[0].bytes);
        let Some(t) = forger.poll_transmit() else {
            break;
        };
        to_b = t.bytes;
    }
    // B's tunnel with A stays as it was: no NAT detected, no NAT-T, IKE on port 500.
    let nat: Vec<_> = p.sides[1].events[events_before..]
        .iter()
        .filter(|(_, e)| matches!(e, Event::NatDetected { .. }))
        .collect();
    assert!(
        nat.is_empty(),
        "the forged exchange's NAT-D was applied: {nat:?}"
    );
    let before = p.log.len();
    p.run_until(4000.0);
    let b_sent: Vec<_> = p.log[before..].iter().filter(|l| l.1 == 1).collect();
    assert!(!b_sent.is_empty());
    assert!(
        b_sent.iter().all(|l| !l.3 && l.2 == addr(A_IP, 500)),
        "B moved its IKE with A: {b_sent:?}"
    );
    assert!(
        p.installed(1)
            .iter()
            .all(|c| c.outbound.encapsulation == crate::esp::SaEncapsulation::Raw),
        "{:?}",
        p.installed(1)
    );
}

//! A hostile network and an authenticated but hostile peer (garbage, bounded children, lifetimes):
//! what one peer can make the hub hold is bounded, and what it replays or omits is refused.

use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::ike::{ChildRequest, Event, IkeSession};
use crate::wire::isakmp::{
    Body, ExchangeType, Flags, Message, Notification, NotifyType, Payload, Transform,
};

use super::forge::*;
use super::harness::*;

fn exchange(bytes: &[u8]) -> Option<ExchangeType> {
    bytes.get(18).map(|b| ExchangeType(*b))
}

fn deleted_reasons(p: &Pair, side: usize) -> Vec<String> {
    p.events(side)
        .iter()
        .filter_map(|e| match e {
            Event::ChildSaDeleted { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// Point 8: a peer re-keys a pair and never deletes the old one (its deletes are lost or never
/// sent): the responder deletes the replaced pair itself after the grace period. The old code
/// kept both until the old one's hard expiry, so every re-key left a pair behind.
#[test]
fn responder_deletes_the_pair_a_peer_rekey_replaced() {
    let mut a = config("ToB", true);
    let mut b = config("ToA", false);
    for c in [&mut a, &mut b] {
        let mut t = (*c.ipsec_transforms[0]).clone();
        t.lifetime_seconds = 100;
        c.ipsec_transforms = vec![Arc::new(t)];
        c.rekey.jitter_percent = 0;
        c.rekey.grace = Duration::from_secs(5);
    }
    let mut p = Pair::new(a, b, 601);
    // A's informational exchanges (its deletes) never reach B.
    p.filter = Box::new(|_, from, t| {
        if from == 0 && exchange(&t.bytes) == Some(ExchangeType::INFORMATIONAL) {
            Vec::new()
        } else {
            vec![Duration::ZERO]
        }
    });
    p.run_until(97.0);
    let rekeyed = p
        .events(1)
        .iter()
        .filter(|e| matches!(e, Event::ChildSaRekeyed { .. }))
        .count();
    assert_eq!(rekeyed, 1, "{:?}", p.events(1));
    assert_eq!(p.installed(1).len(), 1, "B: {:?}", p.events(1));
    assert_eq!(p.sides[1].s.child_sas().len(), 1);
    assert_eq!(
        deleted_reasons(&p, 1),
        ["replaced by its re-key (grace period over)"]
    );
    // And A, which did get B's delete, holds the same single pair.
    assert_eq!(p.installed(0).len(), 1);
    assert_crosswise(&p.installed(0)[0], &p.installed(1)[0]);
}

/// Point 8: an authenticated peer asking for ever more child SAs (narrower selectors inside
/// the policy's pair) gets at most `max_children` of them; the rest are refused with
/// NO-PROPOSAL-CHOSEN and a reason. The old code installed every one.
#[test]
fn child_sas_per_peer_are_bounded() {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 602);
    p.run_until(5.0);
    assert_eq!(p.installed(1).len(), 1);
    let limit = p.sides[1].s.max_children();
    assert_eq!(limit, 4);
    for i in 0..10 {
        let now = p.now;
        p.sides[0].s.initiate_child(
            now,
            ChildRequest {
                network: net(&format!("10.1.{i}.0/24"), &format!("10.2.{i}.0/24")),
            },
        );
        p.run_until(6.0 + f64::from(i));
    }
    assert_eq!(p.installed(1).len(), limit, "B: {:?}", p.failures(1));
    assert_eq!(p.sides[1].s.child_sas().len(), limit);
    let refused = p.failures(1);
    assert_eq!(refused.len(), 10 + 1 - limit, "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|(r, n)| r.contains("child SA pairs (at most 4)")
                && *n == Some(crate::wire::isakmp::NotifyType::NO_PROPOSAL_CHOSEN)),
        "{refused:?}"
    );
    // A heard the refusals and holds no more than B.
    assert_eq!(p.installed(0).len(), limit, "A: {:?}", p.failures(0));
}

/// Point 8: quick modes the peer runs at once under one ISAKMP SA are bounded too.
#[test]
fn quick_modes_in_progress_are_bounded() {
    let mut a = config("ToB", true);
    let mut b = config("ToA", false);
    b.protected_networks.push(net("10.9.0.0/16", "10.8.0.0/16"));
    b.protected_networks.push(net("10.7.0.0/16", "10.6.0.0/16"));
    a.initiate = crate::config::Initiate::OnDemand;
    let mut p = Pair::new(a, b, 603);
    p.run_until(5.0);
    let running = p.sides[1].s.max_quick_modes_per_sa();
    assert_eq!(running, 5);
    let now = p.now;
    for i in 0..7 {
        p.sides[0].s.initiate_child(
            now,
            ChildRequest {
                network: net(&format!("10.1.{i}.0/24"), &format!("10.2.{i}.0/24")),
            },
        );
    }
    p.run_until(10.0);
    assert_eq!(p.installed(1).len(), running, "B: {:?}", p.failures(1));
    let refused = p.failures(1);
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|(r, _)| r.contains("quick modes from the peer in progress")),
        "{refused:?}"
    );
}

/// Point 4: what a responder holds for unauthenticated message 1s is bounded: four half-open
/// exchanges whose 60 KB message 1 carries a good transform and 1,750 junk ones. The old code
/// kept each message whole twice (SAi_b and the reply cache): about 480 KB.
#[test]
fn unauthenticated_main_mode_state_is_bounded() {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 604);
    p.filter = Box::new(|_, _, _| Vec::new());
    p.run_until(0.5);
    for seed in 0..4u64 {
        let mut i = IkeSession::new_initiator(
            Arc::new(config("X", true)),
            addr(A_IP, 500),
            addr(B_IP, 500),
            p.now,
            Box::new(StdRng::seed_from_u64(700 + seed)),
            CountingSpis::new(0x3000_0000),
        );
        let m1 = i.poll_transmit().unwrap().bytes;
        let mut m = Message::decode(&m1).unwrap();
        let Body::Payloads(ps) = &mut m.body else {
            panic!()
        };
        for pl in ps.iter_mut() {
            if let Payload::Sa(sa) = pl {
                let good = sa.proposals[0].clone();
                for n in 0..7u8 {
                    let mut junk = good.clone();
                    junk.number = n + 2;
                    junk.transforms = (0..250u8)
                        .map(|t| Transform {
                            number: t + 1,
                            transform_id: 99,
                            attributes: good.transforms[0].attributes.clone(),
                        })
                        .collect();
                    sa.proposals.push(junk);
                }
            }
        }
        let big = m.encode();
        assert!(big.len() > 50_000);
        p.deliver(1, &big);
    }
    let b = &p.sides[1].s;
    let held: usize =
        b.main_modes.iter().map(|m| m.sai_b.len()).sum::<usize>() + b.replies.held_bytes();
    assert!(held < 16 * 1024, "responder holds {held} bytes");
    assert!(b.main_modes.len() <= 1, "only A's own exchange is held");
    let refused = p.failures(1);
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert!(refused.iter().all(|(r, _)| r.contains("SA payload of")));
}

fn sent_by(p: &Pair, side: usize) -> usize {
    p.log.iter().filter(|l| l.1 == side).count()
}

/// Point 9: an authenticated informational is acted on once. A replayed R-U-THERE (after the
/// reply cache forgot it) used to be answered again; the same path replays deletes.
#[test]
fn replayed_informational_is_dropped() {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 605);
    p.run_until(5.0);
    let (ci, cr) = p.sides[0].s.isakmp[0].cookies();
    let probe = forge_info_to_a(
        &p,
        0x1234_5678,
        &[Payload::Notification(Notification::dpd(false, ci, cr, 7))],
    );
    let before = sent_by(&p, 0);
    p.deliver(0, &probe);
    assert_eq!(
        sent_by(&p, 0),
        before + 1,
        "the first R-U-THERE is answered"
    );
    // Sixteen other requests later the reply cache has forgotten it.
    p.sides[0].s.replies = Default::default();
    p.run_until(6.0);
    p.deliver(0, &probe);
    assert_eq!(sent_by(&p, 0), before + 1, "the replay is not answered");
    // A fresh one (new Message ID) still is.
    let fresh = forge_info_to_a(
        &p,
        0x1234_5679,
        &[Payload::Notification(Notification::dpd(false, ci, cr, 8))],
    );
    p.deliver(0, &fresh);
    assert_eq!(sent_by(&p, 0), before + 2);
}

/// Point 9: we sent IDci/IDcr, the responder's message 2 has none: refused with
/// INVALID-ID-INFORMATION (RFC 2409 §5.5), nothing installed. The old code installed the pair.
#[test]
fn quick_mode_reply_without_ids_is_refused() {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 606);
    let replies = capture_quick_mode_replies(&mut p);
    p.run_until(2.0);
    let m2 = replies.borrow()[0].clone();
    let forged = forge_qm2(&p, &m2, Flags::NONE, |ps| {
        ps.retain(|p| !matches!(p, Payload::Identification(_)))
    });
    p.deliver(0, &forged);
    assert!(p.installed(0).is_empty(), "{:?}", p.events(0));
    let f = p.failures(0);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].1, Some(NotifyType::INVALID_ID_INFORMATION));
    assert!(f[0].0.contains("carries no IDci/IDcr"), "{}", f[0].0);
}

fn commit_pair(seed: u64) -> (Pair, Vec<u8>) {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), seed);
    let replies = capture_quick_mode_replies(&mut p);
    p.run_until(2.0);
    let m2 = replies.borrow()[0].clone();
    let forged = forge_qm2(&p, &m2, Flags::COMMIT, |_| {});
    let msg_id = p.sides[0].s.quick_modes[0].msg_id;
    p.filter = Box::new(|_, _, _| vec![Duration::ZERO]);
    let before = sent_by(&p, 0);
    p.deliver(0, &forged);
    // Message 3 went out, but the pair is not announced before CONNECTED.
    assert_eq!(sent_by(&p, 0), before + 1);
    assert!(p.installed(0).is_empty(), "{:?}", p.events(0));
    (p, msg_id.to_be_bytes().to_vec())
}

/// Point 9: the commit bit (RFC 2408 §3.1): the initiator uses the pair only once the
/// responder's CONNECTED arrives (the old code ignored the bit and installed at once).
#[test]
fn commit_bit_waits_for_connected() {
    let (mut p, id) = commit_pair(607);
    let msg_id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
    p.run_until(3.0);
    assert!(p.installed(0).is_empty());
    let spi = p.sides[1].s.child_sas()[0].inbound;
    let connected = Notification {
        doi: crate::wire::isakmp::Doi::IPSEC,
        protocol_id: crate::wire::isakmp::ProtocolId::IPSEC_ESP,
        spi: spi.to_be_bytes().to_vec(),
        message_type: NotifyType::CONNECTED,
        data: Vec::new(),
    };
    let c = forge_info_to_a(&p, msg_id, &[Payload::Notification(connected)]);
    p.deliver(0, &c);
    let a = p.installed(0);
    assert_eq!(a.len(), 1, "{:?}", p.failures(0));
    assert_crosswise(&a[0], &p.installed(1)[0]);
    // A replayed CONNECTED changes nothing.
    p.sides[0].s.replies = Default::default();
    p.deliver(0, &c);
    assert_eq!(p.installed(0).len(), 1);
    assert_eq!(p.sides[0].s.child_sas().len(), 1);
    assert!(p.failures(0).is_empty());
}

/// Point 9: without CONNECTED the initiator gives up after the exchange timeout, never used
/// the pair, frees its SPIs and asks the responder to delete its side.
#[test]
fn commit_bit_without_connected_gives_up() {
    let (mut p, _) = commit_pair(608);
    p.run_until(40.0);
    assert!(p.installed(0).is_empty());
    let f = p.failures(0);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].0.contains("never sent CONNECTED"), "{}", f[0].0);
    assert!(p.sides[0].s.quick_modes.is_empty());
    assert!(
        p.sides[0].spis.live.lock().unwrap().is_empty(),
        "SPIs freed"
    );
    assert!(
        p.installed(1).is_empty(),
        "B deleted its side: {:?}",
        p.events(1)
    );
}

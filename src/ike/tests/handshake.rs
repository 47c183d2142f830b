use super::harness::*;
use crate::ike::Event;

#[test]
fn main_mode_and_quick_mode_agree_on_keys() {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 1);
    p.run_until(5.0);
    let fa = p.failures(0);
    let fb = p.failures(1);
    assert!(fa.is_empty() && fb.is_empty(), "{fa:?} {fb:?}");
    let a = p.installed(0);
    let b = p.installed(1);
    assert_eq!(a.len(), 1, "{:?}", p.events(0));
    assert_eq!(b.len(), 1, "{:?}", p.events(1));
    assert_crosswise(&a[0], &b[0]);
    assert!(
        p.events(0)
            .iter()
            .any(|e| matches!(e, Event::IsakmpSaEstablished { .. }))
    );
}

use std::time::Duration;

use crate::config::HashAlgorithm;
use crate::crypto::{AuthAlgorithm, EncrAlgorithm};
use crate::wire::isakmp::NotifyType;

fn up(p: &Pair) -> (crate::ike::ChildSaInfo, crate::ike::ChildSaInfo) {
    let a = p.installed(0);
    let b = p.installed(1);
    assert_eq!(
        a.len(),
        1,
        "A: {:?} / B: {:?}",
        p.failures(0),
        p.failures(1)
    );
    assert_eq!(b.len(), 1, "B: {:?}", p.failures(1));
    assert_crosswise(&a[0], &b[0]);
    (a[0].clone(), b[0].clone())
}

#[test]
fn every_phase1_combination_agrees() {
    let encrs = [
        EncrAlgorithm::Des,
        EncrAlgorithm::TripleDes,
        EncrAlgorithm::AesCbc128,
        EncrAlgorithm::AesCbc192,
        EncrAlgorithm::AesCbc256,
    ];
    let hashes = [
        HashAlgorithm::Md5,
        HashAlgorithm::Sha1,
        HashAlgorithm::Sha256,
    ];
    let mut seed = 100;
    for g in [1u16, 2, 5, 14] {
        for e in encrs {
            for h in hashes {
                let mut a = config("ToB", true);
                let mut b = config("ToA", false);
                a.isakmp_transforms = vec![p1(e, h, g)];
                // The responder accepts several; the initiator's one must be picked.
                b.isakmp_transforms = vec![
                    p1(EncrAlgorithm::AesCbc256, HashAlgorithm::Sha256, 16),
                    p1(e, h, g),
                ];
                seed += 1;
                let mut p = Pair::new(a, b, seed);
                p.run_until(5.0);
                up(&p);
                let suite = p.events(1).iter().find_map(|e| match e {
                    Event::IsakmpSaEstablished { suite, .. } => Some(suite.clone()),
                    _ => None,
                });
                assert!(suite.is_some(), "{e:?} {h:?} {g}");
            }
        }
    }
}

type Suite = (
    Option<(EncrAlgorithm, AuthAlgorithm)>,
    Option<AuthAlgorithm>,
);

#[test]
fn every_phase2_suite_agrees_with_and_without_pfs() {
    let mut suites: Vec<Suite> = Vec::new();
    for e in [
        EncrAlgorithm::Des,
        EncrAlgorithm::TripleDes,
        EncrAlgorithm::AesCbc128,
        EncrAlgorithm::AesCbc192,
        EncrAlgorithm::AesCbc256,
    ] {
        for a in [
            AuthAlgorithm::HmacMd5,
            AuthAlgorithm::HmacSha1,
            AuthAlgorithm::HmacSha256,
        ] {
            suites.push((Some((e, a)), None));
        }
        suites.push((Some((e, AuthAlgorithm::None)), None));
    }
    suites.push((Some((EncrAlgorithm::Null, AuthAlgorithm::HmacSha1)), None));
    // RFC 4106 §8.1: KEYMAT gives key + 4-byte salt (the harness checks the length).
    suites.push((Some((EncrAlgorithm::AesGcm128, AuthAlgorithm::None)), None));
    suites.push((Some((EncrAlgorithm::AesGcm256, AuthAlgorithm::None)), None));
    for a in [
        AuthAlgorithm::HmacMd5,
        AuthAlgorithm::HmacSha1,
        AuthAlgorithm::HmacSha256,
    ] {
        suites.push((None, Some(a)));
    }
    suites.push((
        Some((EncrAlgorithm::AesCbc128, AuthAlgorithm::HmacSha1)),
        Some(AuthAlgorithm::HmacSha256),
    ));
    let mut seed = 500;
    for pfs in [None, Some(2u16), Some(14)] {
        for (esp, ah) in &suites {
            let mut a = config("ToB", true);
            let mut b = config("ToA", false);
            a.nat.enabled = false;
            b.nat.enabled = false;
            a.ipsec_transforms = vec![p2(*esp, *ah)];
            b.ipsec_transforms = vec![
                p2(
                    Some((EncrAlgorithm::TripleDes, AuthAlgorithm::HmacMd5)),
                    Some(AuthAlgorithm::HmacMd5),
                ),
                p2(*esp, *ah),
            ];
            a.pfs_group = pfs;
            b.pfs_group = pfs;
            seed += 1;
            let mut p = Pair::new(a, b, seed);
            p.run_until(5.0);
            let (ca, _) = up(&p);
            assert_eq!(ca.inbound.esp.is_some(), esp.is_some());
            assert_eq!(ca.inbound.ah.is_some(), ah.is_some());
            // The pair must build real SAs.
            crate::esp::SecurityAssociation::new(ca.inbound.clone(), p.now).unwrap();
            crate::esp::SecurityAssociation::new(ca.outbound.clone(), p.now).unwrap();
        }
    }
}

#[test]
fn phase1_mismatch_fails_both_sides_with_reason() {
    let mut a = config("ToBerne", true);
    let mut b = config("ToBerne", false);
    a.isakmp_transforms = vec![p1(EncrAlgorithm::TripleDes, HashAlgorithm::Md5, 2)];
    b.isakmp_transforms = vec![p1(EncrAlgorithm::AesCbc128, HashAlgorithm::Sha1, 14)];
    let mut p = Pair::new(a, b, 7);
    p.run_until(60.0);
    let fb = p.failures(1);
    assert_eq!(
        fb,
        vec![(
            "no proposal chosen: peer offered 3DES-MD5-modp1024, policy ToBerne accepts AES128-SHA1-modp2048".to_string(),
            Some(NotifyType::NO_PROPOSAL_CHOSEN)
        )]
    );
    let fa = p.failures(0);
    assert_eq!(fa.len(), 1, "{fa:?}");
    assert_eq!(fa[0].1, Some(NotifyType::NO_PROPOSAL_CHOSEN));
    assert!(p.sides[0].s.is_closed() && p.sides[1].s.is_closed());
}

#[test]
fn phase2_mismatch_fails_with_reason() {
    let mut a = config("ToB", true);
    let mut b = config("ToA", false);
    a.ipsec_transforms = vec![p2(
        Some((EncrAlgorithm::TripleDes, AuthAlgorithm::HmacMd5)),
        None,
    )];
    b.ipsec_transforms = vec![p2(
        Some((EncrAlgorithm::AesCbc256, AuthAlgorithm::HmacSha256)),
        None,
    )];
    let mut p = Pair::new(a, b, 8);
    p.run_until(60.0);
    let fb = p.failures(1);
    assert_eq!(fb.len(), 1, "{fb:?}");
    assert_eq!(fb[0].1, Some(NotifyType::NO_PROPOSAL_CHOSEN));
    assert!(fb[0].0.contains("peer offered ESP-3DES-MD5-nopfs tunnel, policy ToA accepts ESP-AES256-SHA256-nopfs tunnel"), "{}", fb[0].0);
    let fa = p.failures(0);
    assert_eq!(fa.len(), 1, "{fa:?}");
    assert_eq!(fa[0].1, Some(NotifyType::NO_PROPOSAL_CHOSEN));
    assert!(p.installed(0).is_empty() && p.installed(1).is_empty());
}

#[test]
fn wrong_psk_fails_both_sides() {
    let a = config("ToB", true);
    let mut b = config("ToA", false);
    b.preshared_key = crate::config::KeyBytes(b"another secret".to_vec());
    let mut p = Pair::new(a, b, 9);
    p.run_until(60.0);
    let fa = p.failures(0);
    let fb = p.failures(1);
    assert_eq!(fb.len(), 1, "{fb:?}");
    assert_eq!(fb[0].1, Some(NotifyType::AUTHENTICATION_FAILED));
    assert!(fb[0].0.contains("pre-shared keys"), "{}", fb[0].0);
    assert_eq!(fa.len(), 1, "{fa:?}");
    assert_eq!(fa[0].1, Some(NotifyType::AUTHENTICATION_FAILED));
    assert!(p.installed(0).is_empty() && p.installed(1).is_empty());
    assert!(
        !p.events(0)
            .iter()
            .any(|e| matches!(e, Event::IsakmpSaEstablished { .. }))
    );
}

#[test]
fn wrong_protected_networks_invalid_id() {
    let a = config("ToB", true);
    let mut b = config("ToA", false);
    b.protected_networks = vec![net("10.2.0.0/16", "10.1.0.0/24")];
    let mut p = Pair::new(a, b, 10);
    p.run_until(60.0);
    let fb = p.failures(1);
    assert_eq!(fb.len(), 1, "{fb:?}");
    assert_eq!(fb[0].1, Some(NotifyType::INVALID_ID_INFORMATION));
    assert!(
        fb[0]
            .0
            .contains("peer proposed 10.1.0.0/16 <-> 10.2.0.0/16"),
        "{}",
        fb[0].0
    );
    let fa = p.failures(0);
    assert_eq!(fa.len(), 1, "{fa:?}");
    assert_eq!(fa[0].1, Some(NotifyType::INVALID_ID_INFORMATION));
}

#[test]
fn narrower_remote_is_accepted() {
    let mut a = config("ToB", true);
    a.protected_networks = vec![net("10.1.5.0-10.1.5.20", "10.2.0.7")];
    let b = config("ToA", false);
    let mut p = Pair::new(a, b, 11);
    p.run_until(5.0);
    let (_, cb) = up(&p);
    assert_eq!(
        cb.protected_networks,
        vec![net("10.2.0.7", "10.1.5.0-10.1.5.20")]
    );
}

#[test]
fn aggressive_mode_refused() {
    let b = config("ToA", false);
    let mut s = crate::ike::IkeSession::new_responder(
        std::sync::Arc::new(b),
        addr(B_IP, 500),
        addr(A_IP, 500),
        std::time::Instant::now(),
        Box::new(<rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3)),
        std::sync::Arc::new(crate::ike::RandomSpis),
    );
    // An aggressive-mode message 1 as ike-scan sends it: header only is enough to refuse.
    let h = crate::wire::isakmp::Header::new(
        [7; 8],
        [0; 8],
        crate::wire::isakmp::ExchangeType::AGGRESSIVE,
        crate::wire::isakmp::Flags::NONE,
        0,
    );
    let m = crate::wire::isakmp::Message::new(
        h,
        vec![crate::wire::isakmp::Payload::Nonce(vec![1; 16])],
    )
    .encode();
    let info = crate::ike::peek_first_message(&m).unwrap();
    assert!(info.aggressive && !info.main_mode_start);
    let now = std::time::Instant::now();
    s.handle_datagram(now, addr(A_IP, 500), false, &m);
    let e = s.poll_event().unwrap();
    match e {
        Event::Failed { reason, notify } => {
            assert_eq!(notify, Some(NotifyType::INVALID_EXCHANGE_TYPE));
            assert!(reason.contains("aggressive mode refused"), "{reason}");
            assert!(reason.contains("cracked offline"), "{reason}");
        }
        e => panic!("{e:?}"),
    }
    let t = s.poll_transmit().unwrap();
    let reply = crate::wire::isakmp::Message::decode(&t.bytes).unwrap();
    assert_eq!(
        reply.header.exchange_type,
        crate::wire::isakmp::ExchangeType::INFORMATIONAL
    );
    assert!(s.is_closed());
    let _ = Duration::ZERO;
}

/// A refused phase 1 ends the attempt: the child that asked for it is not retried at once with a
/// new main mode (that would be a message 1 per round trip for as long as the peer refuses).
#[test]
fn refused_phase1_with_a_waiting_child_sends_no_new_message_1() {
    let mut a = config("ToBerne", true);
    let mut b = config("ToBerne", false);
    a.isakmp_transforms = vec![p1(EncrAlgorithm::TripleDes, HashAlgorithm::Md5, 2)];
    b.isakmp_transforms = vec![p1(EncrAlgorithm::AesCbc128, HashAlgorithm::Sha1, 14)];
    let mut p = Pair::new(a, b, 11);
    let now = p.now;
    p.sides[0].s.initiate_child(
        now,
        crate::ike::ChildRequest {
            network: net("10.1.0.0/24", "10.2.0.0/24"),
        },
    );
    p.run_until(60.0);
    let from_a = p.log.iter().filter(|(_, side, ..)| *side == 0).count();
    assert_eq!(p.failures(0).len(), 1, "{:?}", p.failures(0));
    assert_eq!(from_a, 1, "A sent {from_a} datagrams: {:?}", p.log);
    assert!(p.sides[0].s.is_closed());
}

/// `dh-key-reuse-seconds`: responders sharing the daemon's cache answer with one key pair while
/// the policy's window lasts, a new one after it, and a fresh one per exchange without the
/// switch; every handshake still agrees on its keys (the nonces make them differ).
#[test]
fn a_responder_reuses_its_dh_key_pair_only_as_long_as_the_policy_allows() {
    use crate::ike::dh::DhKeyCache;
    use crate::wire::isakmp::{Message, Payload};
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::Arc;

    let cache = Arc::new(DhKeyCache::new());
    // Runs one handshake with B's clock starting `start` seconds after the first one, and
    // returns B's KE payload data and the child pair's keys.
    let t_first = std::time::Instant::now();
    let run = |reuse: Option<u64>, start: u64, seed: u64| {
        let mut b = config("ToA", false);
        b.dh_key_reuse = reuse.map(Duration::from_secs);
        let mut p = Pair::new_at(
            config("ToB", true),
            b,
            seed,
            t_first + Duration::from_secs(start),
        );
        p.sides[1].s.set_dh_key_cache(cache.clone());
        let kes: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
        let seen = kes.clone();
        p.tamper = Box::new(move |side, bytes| {
            let Ok(m) = Message::decode(bytes) else {
                return;
            };
            for pl in m.payloads().unwrap_or_default() {
                if let (1, Payload::KeyExchange(ke)) = (side, pl) {
                    seen.borrow_mut().push(ke.clone());
                }
            }
        });
        p.run_until(5.0);
        let (a, _) = up(&p);
        let kes = kes.borrow().clone();
        assert_eq!(kes.len(), 1, "B sent one KE");
        (kes[0].clone(), a)
    };
    let (ke1, sa1) = run(Some(30), 0, 21);
    let (ke2, sa2) = run(Some(30), 20, 22);
    assert_eq!(ke1, ke2, "within the window B answers with the same g^x");
    let key =
        |sa: &crate::ike::ChildSaInfo| sa.outbound.esp.as_ref().unwrap().encryption_key.0.clone();
    assert_ne!(
        key(&sa1),
        key(&sa2),
        "the nonces still give each exchange its own keys"
    );
    let (ke3, _) = run(Some(30), 40, 23);
    assert_ne!(ke1, ke3, "after the window a new pair");
    let (ke4, _) = run(None, 41, 24);
    assert_ne!(ke3, ke4, "without the switch a fresh pair, cache or not");
    let (ke5, _) = run(Some(30), 42, 25);
    assert_eq!(
        ke3, ke5,
        "the switch off elsewhere leaves the cached pair alone"
    );
}

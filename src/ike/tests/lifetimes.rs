//! Lifetimes from the peer (RFC 2407 §4.5.4, §4.6.3.1): a responder may only
//! shorten what was offered, 0 means "no limit of mine", and no value overflows a deadline.

use std::time::Duration;

use crate::ike::Event;
use crate::wire::isakmp::{ExchangeType, Flags, Payload};

use super::forge::*;
use super::harness::*;

fn isakmp_lifetimes(p: &Pair, side: usize) -> Vec<Option<Duration>> {
    p.events(side)
        .iter()
        .filter_map(|e| match e {
            Event::IsakmpSaEstablished { lifetime, .. } => Some(*lifetime),
            _ => None,
        })
        .collect()
}

fn isakmp_deleted(p: &Pair, side: usize) -> Vec<String> {
    p.events(side)
        .iter()
        .filter_map(|e| match e {
            Event::IsakmpSaDeleted { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

fn both_up(p: &Pair) {
    assert_eq!(p.installed(0).len(), 1, "A: {:?}", p.failures(0));
    assert_eq!(p.installed(1).len(), 1, "B: {:?}", p.failures(1));
    assert_eq!(p.sides[0].s.isakmp_sas().len(), 1);
    assert_eq!(p.sides[1].s.isakmp_sas().len(), 1);
}

const H: Duration = Duration::from_secs(28800);

/// strongSwan's load-tester offers a phase-1 Life Duration of 0. That is "no limit of mine":
/// both ends run their own lifetime (the old code deleted the ISAKMP SA 1 ms after main mode).
#[test]
fn phase1_life_duration_zero_means_our_own_lifetime() {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 501);
    initiator_offers_phase1_life(&mut p, 0);
    p.run_until(120.0);
    both_up(&p);
    assert_eq!(isakmp_lifetimes(&p, 1), [Some(H)], "responder runs its own");
    assert_eq!(isakmp_lifetimes(&p, 0), [Some(H)], "initiator runs its own");
    assert!(isakmp_deleted(&p, 0).is_empty() && isakmp_deleted(&p, 1).is_empty());
}

/// A huge offered lifetime is capped, not a panic on `Instant + Duration` (responder without a
/// lifetime of its own), and the initiator keeps its own shorter one.
#[test]
fn huge_phase1_lifetime_is_capped() {
    let mut b = config("ToA", false);
    let mut t = (*b.isakmp_transforms[0]).clone();
    t.lifetime_seconds = 0;
    b.isakmp_transforms = vec![std::sync::Arc::new(t)];
    let mut p = Pair::new(config("ToB", true), b, 502);
    initiator_offers_phase1_life(&mut p, u64::MAX);
    p.run_until(120.0);
    both_up(&p);
    assert_eq!(
        isakmp_lifetimes(&p, 1),
        [Some(Duration::from_secs(u64::from(u32::MAX)))]
    );
    assert_eq!(isakmp_lifetimes(&p, 0), [Some(H)]);
}

/// A responder that answers with a longer lifetime than we offered does not lengthen ours;
/// one that answers 0 leaves ours.
#[test]
fn responder_cannot_lengthen_phase1_lifetime() {
    for (answer, seed) in [(10 * 28800u64, 503), (0, 504), (u64::MAX, 505)] {
        let mut p = Pair::new(config("ToB", true), config("ToA", false), seed);
        p.tamper = Box::new(move |from, bytes| {
            let mm_sa = from == 1 && bytes.get(18) == Some(&ExchangeType::MAIN_MODE.0);
            if let Some((m, _)) = mm_sa.then(|| set_sa_attribute(bytes, 12, answer)).flatten() {
                *bytes = m;
            }
        });
        p.run_until(120.0);
        both_up(&p);
        assert_eq!(isakmp_lifetimes(&p, 0), [Some(H)], "answer {answer}");
        let a = &p.sides[0].s.isakmp[0];
        assert_eq!(a.hard, Some(a.established + H));
        assert!(a.soft.is_some_and(|s| s < a.established + H));
    }
}

/// The responder shortens a longer offer to its own lifetime and says so with
/// RESPONDER-LIFETIME (RFC 2407 §4.6.3.1): the initiator then re-keys before
/// the responder's SA expires instead of losing phase 1 to the responder's delete.
#[test]
fn responder_lifetime_in_phase1_shortens_the_initiators_sa() {
    let mut a = config("ToB", true);
    let mut t = (*a.isakmp_transforms[0]).clone();
    t.lifetime_seconds = 86400;
    a.isakmp_transforms = vec![std::sync::Arc::new(t)];
    let mut p = Pair::new(a, config("ToA", false), 506);
    p.run_until(120.0);
    both_up(&p);
    assert_eq!(isakmp_lifetimes(&p, 1), [Some(H)]);
    let sa = &p.sides[0].s.isakmp[0];
    assert_eq!(sa.lifetime(), Some(H), "initiator took RESPONDER-LIFETIME");
    assert_eq!(sa.hard, Some(sa.established + H));
    assert!(sa.soft.is_some_and(|s| s < sa.established + H));
    // Over the whole lifetime: A re-keys phase 1 before B's SA expires, so B never deletes
    // an ISAKMP SA as "lifetime expired" while A still uses it.
    p.run_until(28800.0 + 60.0);
    assert!(
        !isakmp_deleted(&p, 1)
            .iter()
            .any(|r| r == "lifetime expired"),
        "{:?}",
        isakmp_deleted(&p, 1)
    );
    assert!(isakmp_lifetimes(&p, 0).len() >= 2, "A re-keyed phase 1");
}

/// Quick mode: a responder's longer, 0 or huge lifetime (seconds and kilobytes) in message 2
/// leaves the initiator's own; the old code took it (and panicked on a huge one).
#[test]
fn responder_cannot_lengthen_phase2_lifetime() {
    for (secs, kb, seed) in [
        (36000u64, 1u64 << 50, 511),
        (0, 0, 512),
        (u64::MAX, u64::MAX, 513),
    ] {
        let mut a = config("ToB", true);
        let mut t = (*a.ipsec_transforms[0]).clone();
        t.lifetime_kilobytes = 100_000;
        a.ipsec_transforms = vec![std::sync::Arc::new(t)];
        let mut b = config("ToA", false);
        b.ipsec_transforms = a.ipsec_transforms.clone();
        let mut p = Pair::new(a, b, seed);
        let replies = capture_quick_mode_replies(&mut p);
        p.run_until(2.0);
        let m2 = replies.borrow()[0].clone();
        let forged = forge_qm2(&p, &m2, Flags::NONE, |ps| {
            // SA Life Type seconds comes first in our transforms, then kilobytes: rewrite
            // the durations in order.
            for pl in ps.iter_mut() {
                if let Payload::Sa(sa) = pl {
                    for t in sa
                        .proposals
                        .iter_mut()
                        .flat_map(|p| p.transforms.iter_mut())
                    {
                        let durations = t.attributes.iter_mut().filter(|a| a.attr_type == 2);
                        for (n, at) in durations.enumerate() {
                            let v = if n == 0 { secs } else { kb };
                            *at = crate::wire::isakmp::Attribute::number(2u16, v);
                        }
                    }
                }
            }
        });
        p.filter = Box::new(|_, _, _| vec![Duration::ZERO]);
        p.deliver(0, &forged);
        p.run_until(5.0);
        let a = p.installed(0);
        assert_eq!(a.len(), 1, "{:?}", p.failures(0));
        assert_eq!(a[0].lifetime, Some(Duration::from_secs(3600)), "{secs}");
        assert_eq!(a[0].inbound.lifetime.seconds, Some(3600));
        assert_eq!(a[0].inbound.lifetime.kilobytes, Some(100_000), "{kb}");
        let c = &p.sides[0].s.children[0];
        assert!(c.hard.is_some() && c.soft.is_some() && c.soft < c.hard);
    }
}

/// The quick-mode half of RESPONDER-LIFETIME: the responder runs its shorter lifetime, tells the
/// initiator, and both ends expire the pair together.
#[test]
fn responder_lifetime_in_quick_mode_shortens_the_initiators_pair() {
    let mut b = config("ToA", false);
    let mut t = (*b.ipsec_transforms[0]).clone();
    t.lifetime_seconds = 1800;
    t.lifetime_kilobytes = 5000;
    b.ipsec_transforms = vec![std::sync::Arc::new(t)];
    let mut p = Pair::new(config("ToB", true), b, 514);
    p.run_until(5.0);
    let (a, b) = (p.installed(0), p.installed(1));
    assert_eq!((a.len(), b.len()), (1, 1), "{:?}", p.failures(0));
    for c in [&a[0], &b[0]] {
        assert_eq!(c.lifetime, Some(Duration::from_secs(1800)));
        assert_eq!(c.inbound.lifetime.kilobytes, Some(5000));
    }
}

/// RESPONDER-LIFETIME for the ISAKMP SA may also come in an informational after main mode:
/// it shortens the SA it names, and only shortens.
#[test]
fn responder_lifetime_in_an_informational_shortens_the_named_sa() {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 515);
    p.run_until(5.0);
    let (ci, cr) = p.sides[0].s.isakmp[0].cookies();
    let rl = |secs: u64, cky_r: [u8; 8]| {
        let data = crate::ike::sa_payload::phase1_lifetime_attributes(Some(secs), None);
        Payload::Notification(crate::wire::isakmp::Notification::isakmp(
            crate::wire::isakmp::NotifyType::RESPONDER_LIFETIME,
            ci,
            cky_r,
            data,
        ))
    };
    let longer = forge_info_to_a(&p, 0x0101_0101, &[rl(100_000, cr)]);
    p.deliver(0, &longer);
    let other_sa = forge_info_to_a(&p, 0x0202_0202, &[rl(60, [9; 8])]);
    p.deliver(0, &other_sa);
    assert_eq!(p.sides[0].s.isakmp[0].lifetime(), Some(H));
    let shorter = forge_info_to_a(&p, 0x0303_0303, &[rl(3600, cr)]);
    p.deliver(0, &shorter);
    let sa = &p.sides[0].s.isakmp[0];
    let hour = Duration::from_secs(3600);
    assert_eq!(sa.lifetime(), Some(hour));
    assert_eq!(sa.hard, Some(sa.established + hour));
    assert!(sa.soft.is_some_and(|s| s < sa.established + hour));
}

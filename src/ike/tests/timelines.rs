//! Exact timelines on virtual time: DPD, child and ISAKMP re-keying, NAT-T.

use std::time::Duration;

use super::harness::*;
use crate::config::Dpd;
use crate::esp::SaEncapsulation;
use crate::ike::Event;
use crate::ike::proposal::EncapMode;

fn time_of(p: &Pair, side: usize, f: impl Fn(&Event) -> bool) -> Vec<Duration> {
    p.sides[side]
        .events
        .iter()
        .filter(|(_, e)| f(e))
        .map(|(t, _)| *t)
        .collect()
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn dpd_pair(seed: u64) -> Pair {
    let mut a = config("ToB", true);
    let mut b = config("ToA", false);
    let d = Dpd {
        interval_seconds: 30,
        timeout_seconds: 120,
    };
    a.dpd = Some(d);
    b.dpd = Some(d);
    Pair::new(a, b, seed)
}

#[test]
fn dpd_declares_a_silent_peer_dead_on_time() {
    let mut p = dpd_pair(200);
    // Main mode and quick mode pass (datagrams 0..9), then the network dies.
    p.filter = Box::new(|i, _, _| if i < 9 { vec![Duration::ZERO] } else { vec![] });
    p.run_until(400.0);
    let est = time_of(&p, 0, |e| matches!(e, Event::ChildSaEstablished(_)))[0];
    // A's last sign of life from B is quick-mode message 2 (when A installs the pair).
    let probes: Vec<u128> = p
        .log
        .iter()
        .filter(|l| l.1 == 0 && l.0 > est + Duration::from_secs(1))
        .map(|l| ms(l.0 - est))
        .collect();
    assert_eq!(probes, [30_000, 60_000, 90_000, 120_000]);
    let dead = time_of(&p, 0, |e| matches!(e, Event::PeerDead));
    assert_eq!(
        dead.iter().map(|d| ms(*d - est)).collect::<Vec<_>>(),
        [150_000]
    );
    // Its SAs were reported deleted before PeerDead.
    assert!(p.installed(0).is_empty());
    assert!(p.sides[0].s.is_closed());
    // B's last sign of life is quick-mode message 3, 10 ms later.
    let dead_b = time_of(&p, 1, |e| matches!(e, Event::PeerDead));
    assert_eq!(
        dead_b.iter().map(|d| ms(*d - est)).collect::<Vec<_>>(),
        [150_010]
    );
}

#[test]
fn dpd_probes_only_an_idle_peer_and_acks_keep_it_alive() {
    let mut p = dpd_pair(201);
    p.run_until(1.0);
    let after_setup = p.log.len();
    // ESP traffic reported every 10 s: no probe at all.
    for k in 1..=20 {
        p.run_until(f64::from(k) * 10.0);
        let now = p.now;
        p.sides[0].s.note_inbound_traffic(now, None);
        p.sides[1].s.note_inbound_traffic(now, None);
    }
    assert_eq!(
        p.log.len(),
        after_setup,
        "probes sent although traffic flowed"
    );
    // Idle from 200 s: probes every 30 s (plus the round trip), each answered; nobody dies.
    p.run_until(400.0);
    assert!(p.log.len() > after_setup + 4);
    assert!(time_of(&p, 0, |e| matches!(e, Event::PeerDead)).is_empty());
    assert!(time_of(&p, 1, |e| matches!(e, Event::PeerDead)).is_empty());
    assert_eq!(p.installed(0).len(), 1);
    // The first probe went out exactly 30 s after the last traffic report.
    let first = p.log[after_setup].0;
    assert_eq!(ms(first), 230_000);
}

/// The daemon's liveness check (a spoke was refused a network this peer holds): without `dpd`
/// in either policy there are no idle probes, but a check probes at once; a live peer answers
/// and keeps everything (and is not probed again), a silent one is dead 20 s after the check.
#[test]
fn liveness_check_keeps_a_live_peer_and_ends_a_silent_one() {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 210);
    p.run_until(1.0);
    assert_eq!(p.installed(0).len(), 1);
    let quiet = p.log.len();
    p.run_until(300.0);
    assert_eq!(p.log.len(), quiet, "no dpd configured: no probes");

    let asked = p.now;
    assert!(p.sides[0].s.check_liveness(asked));
    assert!(!p.sides[0].s.check_liveness(asked), "one round at a time");
    p.run_until(301.0);
    let exchanged: Vec<usize> = p.log[quiet..].iter().map(|l| l.1).collect();
    assert_eq!(exchanged, [0, 1], "R-U-THERE from A, its ACK from B");
    p.run_until(600.0);
    assert_eq!(p.log.len(), quiet + 2, "answered: no probes afterwards");
    assert!(time_of(&p, 0, |e| matches!(e, Event::PeerDead)).is_empty());
    assert_eq!(p.installed(0).len(), 1);

    // B falls silent (restarted behind a NAT that gave it another port: nothing arrives).
    p.filter = Box::new(|_, _, _| vec![]);
    let asked = p.now - p.t0;
    assert!(p.sides[0].s.check_liveness(p.now));
    p.run_until(700.0);
    let dead = time_of(&p, 0, |e| matches!(e, Event::PeerDead));
    assert_eq!(
        dead.iter().map(|d| ms(*d - asked)).collect::<Vec<_>>(),
        [20_000]
    );
    // Probes every 5 s until then.
    let probes: Vec<u128> = p.log[quiet + 2..]
        .iter()
        .filter(|l| l.1 == 0)
        .map(|l| ms(l.0 - asked))
        .collect();
    assert_eq!(probes, [0, 5_000, 10_000, 15_000]);
    assert!(p.installed(0).is_empty());
    assert!(p.sides[0].s.is_closed());
}

fn rekey_pair(seed: u64, life: u64) -> Pair {
    let mut a = config("ToB", true);
    let mut b = config("ToA", false);
    for c in [&mut a, &mut b] {
        let mut t = (*c.ipsec_transforms[0]).clone();
        t.lifetime_seconds = life;
        c.ipsec_transforms = vec![std::sync::Arc::new(t)];
        c.rekey.jitter_percent = 0;
        c.rekey.grace = Duration::from_secs(5);
    }
    Pair::new(a, b, seed)
}

#[test]
fn child_rekey_timeline_is_exact() {
    let mut p = rekey_pair(300, 100);
    p.run_until(200.0);
    let est = time_of(&p, 0, |e| matches!(e, Event::ChildSaEstablished(_)))[0];
    let rel = |v: Vec<Duration>| v.iter().map(|d| ms(*d - est)).collect::<Vec<_>>();
    // A re-keys at 90% (jitter off); the new pair is installed one round trip later, and
    // again 90 s after that.
    assert_eq!(
        rel(time_of(&p, 0, |e| matches!(
            e,
            Event::ChildSaRekeyed { .. }
        ))),
        [90_020, 180_040]
    );
    // B installs it when it answers (10 ms earlier).
    assert_eq!(
        rel(time_of(&p, 1, |e| matches!(
            e,
            Event::ChildSaRekeyed { .. }
        ))),
        [90_010, 180_030]
    );
    // The old pair is deleted after the 5 s grace period, never expired: by each end on its
    // own clock (B installed the successor 10 ms before A), whichever started the re-key.
    assert_eq!(
        rel(time_of(&p, 0, |e| matches!(
            e,
            Event::ChildSaDeleted { .. }
        ))),
        [95_020, 185_040]
    );
    assert_eq!(
        rel(time_of(&p, 1, |e| matches!(
            e,
            Event::ChildSaDeleted { .. }
        ))),
        [95_010, 185_030]
    );
    assert!(time_of(&p, 0, |e| matches!(e, Event::ChildSaExpired(_))).is_empty());
    // B's successor carries traffic only once A has it: message 3 confirms it one round
    // trip after B announced it, and A's own announcement needs no confirmation.
    let confirmed = |side: usize| -> Vec<bool> {
        p.sides[side]
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::ChildSaEstablished(i) | Event::ChildSaRekeyed { new: i, .. } => {
                    Some(i.confirmed)
                }
                _ => None,
            })
            .collect()
    };
    assert_eq!(confirmed(0), [true, true, true]);
    assert_eq!(confirmed(1), [false, false, false]);
    assert_eq!(
        rel(time_of(&p, 1, |e| matches!(e, Event::ChildSaConfirmed(_)))),
        [10, 90_030, 180_050]
    );
    assert!(time_of(&p, 0, |e| matches!(e, Event::ChildSaConfirmed(_))).is_empty());
    let a = p.installed(0);
    let b = p.installed(1);
    assert_eq!((a.len(), b.len()), (1, 1));
    assert_crosswise(&a[0], &b[0]);
    assert!(p.failures(0).is_empty() && p.failures(1).is_empty());
    // The SPIs of the deleted pairs went back to the allocator.
    assert_eq!(p.sides[0].spis.live.lock().unwrap().len(), 1);
    assert_eq!(p.sides[1].spis.live.lock().unwrap().len(), 1);
}

#[test]
fn simultaneous_rekey_leaves_one_pair() {
    let mut p = rekey_pair(301, 1000);
    p.run_until(10.0);
    let now = p.now;
    let a_in = p.installed(0)[0].spis().inbound;
    let b_in = p.installed(1)[0].spis().inbound;
    // Both ends hit their soft kilobyte limit at the same moment.
    p.sides[0].s.child_soft_expired(now, a_in);
    p.sides[1].s.child_soft_expired(now, b_in);
    p.run_until(30.0);
    let a = p.installed(0);
    let b = p.installed(1);
    assert_eq!(
        (a.len(), b.len()),
        (1, 1),
        "A {:?}\nB {:?}",
        p.events(0),
        p.events(1)
    );
    assert_crosswise(&a[0], &b[0]);
    assert_ne!(a[0].spis().inbound, a_in);
    assert!(p.failures(0).is_empty() && p.failures(1).is_empty());
}

#[test]
fn isakmp_rekey_replaces_phase1_and_children_keep_working() {
    let mut a = config("ToB", true);
    let mut b = config("ToA", false);
    for c in [&mut a, &mut b] {
        let mut t = (*c.isakmp_transforms[0]).clone();
        t.lifetime_seconds = 200;
        c.isakmp_transforms = vec![std::sync::Arc::new(t)];
        c.rekey.jitter_percent = 0;
    }
    let mut p = Pair::new(a, b, 302);
    p.run_until(400.0);
    let est = time_of(&p, 0, |e| matches!(e, Event::IsakmpSaEstablished { .. }));
    assert_eq!(est.len(), 3, "{:?}", p.events(0));
    // Re-keyed at 90% of 200 s after each establishment (message 6 arrives 50 ms after start).
    assert_eq!(ms(est[1] - est[0]), 180_000 + 60);
    let deleted = time_of(&p, 0, |e| matches!(e, Event::IsakmpSaDeleted { .. }));
    assert_eq!(deleted.len(), 2);
    assert_eq!(ms(deleted[0] - est[1]), 10_000);
    assert_eq!(p.sides[0].s.isakmp_sas().len(), 1);
    assert_eq!(p.sides[1].s.isakmp_sas().len(), 1);
    assert_eq!(
        p.sides[0].s.isakmp_sas()[0].0,
        p.sides[1].s.isakmp_sas()[0].0
    );
    // A new child under the new ISAKMP SA.
    let now = p.now;
    p.sides[0].s.initiate_child(
        now,
        crate::ike::ChildRequest {
            network: net("10.1.9.0/24", "10.2.9.0/24"),
        },
    );
    p.run_until(405.0);
    assert_eq!(p.installed(0).len(), 2);
    assert!(p.failures(0).is_empty() && p.failures(1).is_empty());
}

#[test]
fn nat_detected_floats_to_4500_and_encapsulates() {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 400);
    p.nat_a = true;
    p.run_until(65.0);
    let na: Vec<_> = p
        .events(0)
        .into_iter()
        .filter_map(|e| match e {
            Event::NatDetected {
                local_behind_nat,
                peer_behind_nat,
            } => Some((*local_behind_nat, *peer_behind_nat)),
            _ => None,
        })
        .collect();
    assert_eq!(na, [(true, false)]);
    let nb: Vec<_> = p
        .events(1)
        .into_iter()
        .filter_map(|e| match e {
            Event::NatDetected {
                local_behind_nat,
                peer_behind_nat,
            } => Some((*local_behind_nat, *peer_behind_nat)),
            _ => None,
        })
        .collect();
    assert_eq!(nb, [(false, true)]);
    // Messages 1-4 on 500, from message 5 on 4500 (both directions).
    for (i, l) in p.log.iter().enumerate().take(9) {
        assert_eq!(l.3, i >= 4, "datagram {i}");
        assert_eq!(
            l.2.port() % 10000,
            if i >= 4 { 4500 } else { 500 },
            "datagram {i}"
        );
    }
    let a = p.installed(0);
    let b = p.installed(1);
    assert_crosswise(&a[0], &b[0]);
    assert_eq!(
        a[0].outbound.encapsulation,
        SaEncapsulation::Udp {
            local_port: 4500,
            peer_port: 4500
        }
    );
    // B sends to the NAT's mapping of A's port 4500.
    assert_eq!(
        b[0].outbound.encapsulation,
        SaEncapsulation::Udp {
            local_port: 4500,
            peer_port: 14500
        }
    );
    assert_eq!(p.sides[1].s.peer(), addr(NAT_IP, 14500));
    assert!(a[0].suite.contains("tunnel"));
    let _ = EncapMode::UdpTunnel;
    // NAT keepalives from A (behind the NAT) every 20 s, one byte 0xFF, on 4500.
    let ka: Vec<u128> = p
        .log
        .iter()
        .filter(|l| l.1 == 0 && l.4 == 1)
        .map(|l| l.0.as_millis())
        .collect();
    assert_eq!(ka.len(), 3, "{ka:?}");
    assert_eq!(ka[1] - ka[0], 20_000);
}

#[test]
fn forced_encapsulation_without_nat_uses_udp_tunnel_mode() {
    // strongSwan with kernel-libipsec forces NAT-T: its NAT-D for itself never matches.
    let mut a = config("ToB", true);
    a.nat.force_encapsulation = true;
    let mut p = Pair::new(a, config("ToA", false), 401);
    p.run_until(5.0);
    let a = p.installed(0);
    let b = p.installed(1);
    assert_eq!(
        (a.len(), b.len()),
        (1, 1),
        "{:?} {:?}",
        p.failures(0),
        p.failures(1)
    );
    assert_crosswise(&a[0], &b[0]);
    assert_eq!(
        b[0].outbound.encapsulation,
        SaEncapsulation::Udp {
            local_port: 4500,
            peer_port: 4500
        }
    );
    assert_eq!(
        a[0].outbound.encapsulation,
        SaEncapsulation::Udp {
            local_port: 4500,
            peer_port: 4500
        }
    );
    assert!(p.events(1).iter().any(|e| matches!(
        e,
        Event::NatDetected {
            peer_behind_nat: true,
            ..
        }
    )));

    // And the other way round: the responder forces, the initiator sees "the peer is NATed".
    let mut b = config("ToA", false);
    b.nat.force_encapsulation = true;
    let mut p = Pair::new(config("ToB", true), b, 402);
    p.run_until(5.0);
    let a = p.installed(0);
    let b = p.installed(1);
    assert_eq!((a.len(), b.len()), (1, 1));
    assert_crosswise(&a[0], &b[0]);
    assert_eq!(
        a[0].inbound.encapsulation,
        SaEncapsulation::Udp {
            local_port: 4500,
            peer_port: 4500
        }
    );
}

#[test]
fn no_nat_t_when_disabled() {
    let mut a = config("ToB", true);
    a.nat.enabled = false;
    // Without NAT-D nobody sees the NAT, so A's address ID (its private address) could not
    // match the address B sees: B accepts any ID here (what this test is about is ESP).
    let mut b = config("ToA", false);
    b.remote_id = crate::config::RemoteId::Any;
    let mut p = Pair::new(a, b, 403);
    p.nat_a = true;
    p.run_until(5.0);
    let b = p.installed(1);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].outbound.encapsulation, SaEncapsulation::Raw);
    assert!(p.log.iter().all(|l| !l.3));
}

#[test]
fn delete_all_removes_everything_on_both_sides() {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 404);
    p.run_until(5.0);
    let now = p.now;
    p.sides[0].s.delete_all(now);
    p.run_until(6.0);
    assert!(p.installed(0).is_empty());
    assert!(p.installed(1).is_empty(), "{:?}", p.events(1));
    assert!(p.sides[1].s.isakmp_sas().is_empty());
    assert!(p.events(1).iter().any(
        |e| matches!(e, Event::ChildSaDeleted { reason, .. } if reason == "deleted by the peer")
    ));
}

#[test]
fn initial_contact_after_restart_clears_old_state() {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 405);
    p.run_until(5.0);
    assert_eq!(p.installed(1).len(), 1);
    // A restarts: a new initiator session (no deletes sent) talks to the same B session.
    let now = p.now;
    let a = IkeSessionFactory::initiator(config("ToB", true), now, 77);
    p.sides[0].s = a;
    p.sides[0].events.clear();
    p.run_until(10.0);
    assert!(
        p.events(1)
            .iter()
            .any(|e| matches!(e, Event::InitialContact))
    );
    let b = p.installed(1);
    assert_eq!(b.len(), 1, "{:?}", p.events(1));
    assert_crosswise(&p.installed(0)[0], &b[0]);
}

struct IkeSessionFactory;

impl IkeSessionFactory {
    fn initiator(
        c: crate::ike::PeerConfig,
        now: std::time::Instant,
        seed: u64,
    ) -> crate::ike::IkeSession {
        crate::ike::IkeSession::new_initiator(
            std::sync::Arc::new(c),
            addr(A_IP, 500),
            addr(B_IP, 500),
            now,
            Box::new(<rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(
                seed,
            )),
            CountingSpis::new(0x3000_0000),
        )
    }
}

/// Quick-mode message 3 of a re-key never reaches the responder: its successor pair is kept and
/// confirmed when the retransmissions of message 2 run out, so its outbound SA takes the traffic
/// then (and no later), and the old pair is still deleted after the grace period.
#[test]
fn lost_message_3_confirms_the_successor_when_retransmissions_end() {
    let mut p = rekey_pair(301, 100);
    // A's quick-mode message 3 is its only datagram of 60 bytes or less (a hash payload);
    // the first one (the initial exchange) passes, every later one is lost.
    let mut seen = 0;
    p.filter = Box::new(move |_, from, t| {
        if from == 0 && t.bytes.len() <= 60 {
            seen += 1;
            if seen > 1 {
                return Vec::new();
            }
        }
        vec![Duration::ZERO]
    });
    p.run_until(150.0);
    let est = time_of(&p, 1, |e| matches!(e, Event::ChildSaEstablished(_)))[0];
    let rel = |v: Vec<Duration>| v.iter().map(|d| ms(*d - est)).collect::<Vec<_>>();
    let rekeyed: Vec<_> = p.sides[1]
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::ChildSaRekeyed { new, .. } => Some(new.spis()),
            _ => None,
        })
        .collect();
    let confirmed: Vec<_> = p.sides[1]
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::ChildSaConfirmed(s) => Some(*s),
            _ => None,
        })
        .collect();
    assert_eq!(rekeyed.len(), 1, "{:?}", p.sides[1].events);
    assert_eq!(confirmed.len(), 2, "{:?}", p.sides[1].events);
    assert_eq!(confirmed[1], rekeyed[0]);
    // (Times from B's first pair.) Message 2 went out at 90.02 s and again at 1, 3, 7 and 15 s after; given up at 31 s.
    let total = crate::ike::config::RetransmitConfig::default().total();
    assert_eq!(
        rel(time_of(&p, 1, |e| matches!(e, Event::ChildSaConfirmed(_))))[1],
        90_020 + ms(total)
    );
    assert!(p.failures(1).is_empty(), "{:?}", p.failures(1));
    assert_eq!(
        rel(time_of(&p, 1, |e| matches!(
            e,
            Event::ChildSaDeleted { .. }
        ))),
        [95_020]
    );
}

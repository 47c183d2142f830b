//! What an established session keeps (docs/design.md "Per-tunnel memory budget"): no finished
//! exchange, no reply that can no longer be asked for, no spare table capacity. The byte counts
//! are measured by `benches/tunnel_memory.rs`; these tests hold the structure to it.

use std::time::Duration;

use super::harness::*;

/// After main mode and quick mode (and its message 3), the responder (a hub) holds one ISAKMP
/// SA and one child in tables of exactly that size, no exchange, no queued output and no
/// cached reply; the initiator keeps only quick-mode message 3, which the responder may still
/// ask for by retransmitting message 2. Old code: the responder kept five cached replies, the
/// finished `MainMode` and `QuickMode` slots (1.6 KB and 4 x 296 bytes), and queues of
/// capacity 4.
#[test]
fn an_established_session_keeps_no_finished_exchange() {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 7);
    p.run_until(10.0);
    assert_eq!(p.installed(0).len(), 1);
    assert_eq!(p.installed(1).len(), 1);
    let hub = &p.sides[1].s;
    assert_eq!(hub.replies.len(), 0, "the responder's reply cache");
    assert_eq!(hub.main_modes.capacity(), 0);
    assert_eq!(hub.quick_modes.capacity(), 0);
    assert_eq!(hub.pending.capacity(), 0);
    assert_eq!(hub.isakmp.capacity(), 1);
    assert_eq!(hub.children.capacity(), 1);
    assert_eq!(hub.transmits.capacity(), 0);
    assert_eq!(hub.events.capacity(), 0);
    let spoke = &p.sides[0].s;
    assert_eq!(
        spoke.replies.len(),
        1,
        "the initiator keeps quick-mode message 3"
    );
    assert_eq!(spoke.main_modes.capacity(), 0);
    assert_eq!(spoke.quick_modes.capacity(), 0);
}

/// Message 6 is lost: the responder still answers the retransmitted message 5 from its cache
/// (RFC 2408 §5), and forgets it once quick mode shows the initiator has the ISAKMP SA.
#[test]
fn message_6_stays_answerable_until_the_peer_uses_the_sa() {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 8);
    // Datagram 5 (0-based, both directions) is main-mode message 6.
    p.filter = Box::new(|i, _, _| if i == 5 { vec![] } else { vec![Duration::ZERO] });
    p.run_until(0.5);
    assert_eq!(p.sides[1].s.isakmp.len(), 1, "the responder is established");
    assert_eq!(p.sides[1].s.replies.len(), 1, "message 5 -> message 6 kept");
    assert!(p.installed(0).is_empty());
    p.run_until(10.0);
    assert_eq!(
        p.installed(0).len(),
        1,
        "message 6 came with the retransmission"
    );
    assert_eq!(p.installed(1).len(), 1);
    assert_eq!(p.sides[1].s.replies.len(), 0);
}

/// Quick-mode message 3 is lost: the responder retransmits message 2, and the initiator
/// answers it from its reply cache (RFC 2408 §5) with the same message 3, so the responder's
/// exchange ends, nothing fails and both ends keep the one pair they installed. This is the
/// entry `an_established_session_keeps_no_finished_exchange` sees the initiator keep.
#[test]
fn a_lost_quick_mode_message_3_is_sent_again_from_the_cache() {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 9);
    // Datagrams 0-5 are main mode, 6-8 quick mode: 8 is message 3.
    p.filter = Box::new(|i, _, _| if i == 8 { vec![] } else { vec![Duration::ZERO] });
    p.run_until(0.5);
    assert_eq!(p.sides[1].s.quick_modes.len(), 1, "B waits for message 3");
    let sent_by_a = |p: &Pair| p.log.iter().filter(|l| l.1 == 0).count();
    let before = sent_by_a(&p);
    p.run_until(60.0);
    assert!(
        sent_by_a(&p) > before,
        "A answered the retransmitted message 2"
    );
    assert_eq!(p.sides[1].s.quick_modes.len(), 0, "B's exchange ended");
    assert!(p.failures(0).is_empty() && p.failures(1).is_empty());
    assert_eq!(p.installed(0).len(), 1);
    assert_eq!(p.installed(1).len(), 1);
    assert_crosswise(&p.installed(0)[0], &p.installed(1)[0]);
}

/// The initiator's quick-mode message 3 is kept only while the responder could still be
/// retransmitting message 2 (`UNACKNOWLEDGED_REPLY_KEPT`), then forgotten by the session's
/// own timer, with no other input. Old code: it stayed until 16 newer entries pushed it out,
/// for the session's life in a tunnel that re-keys rarely (about 2 KB after many re-keys).
#[test]
fn the_initiator_forgets_message_3_once_no_retransmission_can_come() {
    use crate::ike::retransmit::UNACKNOWLEDGED_REPLY_KEPT;
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 10);
    p.run_until(10.0);
    assert_eq!(p.sides[0].s.replies.len(), 1, "message 3 is kept at first");
    let limit = UNACKNOWLEDGED_REPLY_KEPT.as_secs_f64();
    p.run_until(limit - 1.0);
    assert_eq!(
        p.sides[0].s.replies.len(),
        1,
        "and while a peer may retransmit"
    );
    p.run_until(limit + 1.0);
    assert_eq!(p.sides[0].s.replies.len(), 0, "then forgotten");
    assert_eq!(p.sides[0].s.replies.next_expiry(), None);
    assert!(p.failures(0).is_empty() && p.failures(1).is_empty());
    assert_eq!(p.installed(0).len(), 1);
    assert_eq!(p.installed(1).len(), 1);
}

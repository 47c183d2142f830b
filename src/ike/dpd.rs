//! Dead peer detection (RFC 3706): probe only when the peer has been silent for the interval
//! (no ESP reported by the daemon, no IKE message), R-U-THERE with increasing sequence numbers,
//! the peer declared dead when nothing came back within the timeout after the first probe.

use std::time::{Duration, Instant};

use crate::config::Dpd;

/// The probe round of a liveness check (`IkeSession::check_liveness`) when the policy has no
/// `dpd`: RFC 3706 leaves the timing to us. A probe every 5 s, dead after 20 s without an
/// answer: four probes, so one lost datagram does not kill a live peer.
pub(crate) const LIVENESS_CHECK: Dpd = Dpd {
    interval_seconds: 5,
    timeout_seconds: 20,
};

/// What the DPD timer wants done.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DpdAction {
    Nothing,
    /// Send R-U-THERE with this sequence number.
    Probe(u32),
    /// No answer within the timeout.
    Dead,
}

#[derive(Clone, Debug)]
pub(crate) struct DpdState {
    interval: Duration,
    timeout: Duration,
    /// Last sign of life from the peer.
    last_seen: Instant,
    /// Sequence number of the next R-U-THERE.
    next_seq: u32,
    /// First unanswered probe of the current round, and the next probe time.
    outstanding: Option<(Instant, Instant)>,
    /// Probe an idle peer on our own (the policy's `dpd`); false when the state exists only
    /// for rounds the daemon asks for ([`DpdState::liveness_only`]).
    idle_probes: bool,
    /// Sequence numbers sent this round (an ACK for any of them counts).
    sent: Vec<u32>,
}

impl DpdState {
    /// `first_seq` should be random (RFC 3706 §7 suggests a random start below 2^31).
    pub fn new(cfg: &Dpd, now: Instant, first_seq: u32) -> Self {
        Self {
            interval: Duration::from_secs(cfg.interval_seconds),
            timeout: Duration::from_secs(cfg.timeout_seconds),
            last_seen: now,
            next_seq: (first_seq & 0x7fff_ffff).max(1),
            outstanding: None,
            idle_probes: true,
            sent: Vec::new(),
        }
    }

    /// For a session whose policy has no `dpd`: no probes of an idle peer, only the rounds
    /// [`DpdState::probe_now`] starts, timed by [`LIVENESS_CHECK`].
    pub fn liveness_only(now: Instant, first_seq: u32) -> Self {
        Self {
            idle_probes: false,
            ..Self::new(&LIVENESS_CHECK, now, first_seq)
        }
    }

    /// The peer is alive (ESP received, or any authenticated IKE message).
    pub fn activity(&mut self, now: Instant) {
        if now > self.last_seen {
            self.last_seen = now;
        }
        self.outstanding = None;
        self.sent.clear();
    }

    /// An R-U-THERE-ACK: alive if it answers one of our probes.
    pub fn ack(&mut self, seq: u32, now: Instant) -> bool {
        if self.sent.contains(&seq) {
            self.activity(now);
            true
        } else {
            false
        }
    }

    /// When [`DpdState::on_timeout`] has something to do; `None` when nothing is due ever
    /// (no round under way and no probes of an idle peer).
    pub fn deadline(&self) -> Option<Instant> {
        match self.outstanding {
            None if self.idle_probes => Some(self.last_seen + self.interval),
            None => None,
            Some((first, next)) => Some(next.min(first + self.timeout)),
        }
    }

    pub fn on_timeout(&mut self, now: Instant) -> DpdAction {
        match self.outstanding {
            None => {
                if !self.idle_probes || now < self.last_seen + self.interval {
                    return DpdAction::Nothing;
                }
                let at = self.last_seen + self.interval;
                self.outstanding = Some((at, at + self.interval));
                DpdAction::Probe(self.take_seq())
            }
            Some((first, next)) => {
                if now >= first + self.timeout {
                    return DpdAction::Dead;
                }
                if now < next {
                    return DpdAction::Nothing;
                }
                self.outstanding = Some((first, next + self.interval));
                DpdAction::Probe(self.take_seq())
            }
        }
    }

    /// Starts a probe round now, whatever the idle interval says (the daemon asks whether the
    /// peer is still there, see `IkeSession::check_liveness`). A round already under way is
    /// left alone: asking again sends nothing more. Returns whether a round was started.
    pub fn probe_now(&mut self, now: Instant) -> bool {
        if self.outstanding.is_some() {
            return false;
        }
        // The first R-U-THERE goes at the next timeout (`deadline()` is `now`); the round then
        // runs as one started by idleness: a probe per interval, dead after the timeout.
        self.outstanding = Some((now, now));
        true
    }

    fn take_seq(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        self.sent.push(s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_probe_then_dead() {
        let t0 = Instant::now();
        let cfg = Dpd {
            interval_seconds: 30,
            timeout_seconds: 120,
        };
        let mut d = DpdState::new(&cfg, t0, 7);
        assert_eq!(d.deadline(), Some(t0 + Duration::from_secs(30)));
        d.activity(t0 + Duration::from_secs(10));
        assert_eq!(
            d.on_timeout(t0 + Duration::from_secs(30)),
            DpdAction::Nothing
        );
        let mut probes = Vec::new();
        loop {
            let Some(t) = d.deadline() else {
                panic!("a round under way always has a deadline")
            };
            match d.on_timeout(t) {
                DpdAction::Probe(s) => probes.push(((t - t0).as_secs(), s)),
                DpdAction::Dead => {
                    assert_eq!((t - t0).as_secs(), 160);
                    break;
                }
                DpdAction::Nothing => unreachable!(),
            }
        }
        assert_eq!(probes, [(40, 7), (70, 8), (100, 9), (130, 10)]);
    }

    #[test]
    fn probe_now_starts_one_round_at_once() {
        let t0 = Instant::now();
        let mut d = DpdState::liveness_only(t0, 7);
        // No probes of an idle peer: nothing due until asked.
        assert_eq!(d.deadline(), None);
        assert_eq!(
            d.on_timeout(t0 + Duration::from_secs(3600)),
            DpdAction::Nothing
        );
        let t1 = t0 + Duration::from_secs(1);
        assert!(d.probe_now(t1));
        assert!(!d.probe_now(t1), "a round is under way: nothing more");
        assert_eq!(
            d.deadline(),
            Some(t1),
            "probes at once, not after the idle interval"
        );
        assert_eq!(d.on_timeout(t1), DpdAction::Probe(7));
        assert_eq!(d.deadline(), Some(t1 + Duration::from_secs(5)));
        // An answer ends the round: alive.
        assert!(d.ack(7, t1 + Duration::from_secs(2)));
        assert_eq!(
            d.deadline(),
            None,
            "answered: nothing due until asked again"
        );
        assert!(d.probe_now(t1 + Duration::from_secs(3)));
        // No answer: dead after the timeout, probing every interval until then.
        let t3 = t1 + Duration::from_secs(3);
        let mut probes = Vec::new();
        loop {
            let Some(t) = d.deadline() else {
                panic!("a round under way always has a deadline")
            };
            match d.on_timeout(t) {
                DpdAction::Probe(s) => probes.push(((t - t3).as_secs(), s)),
                DpdAction::Dead => {
                    assert_eq!((t - t3).as_secs(), 20);
                    break;
                }
                DpdAction::Nothing => unreachable!(),
            }
        }
        assert_eq!(probes, [(0, 8), (5, 9), (10, 10), (15, 11)]);
    }
}

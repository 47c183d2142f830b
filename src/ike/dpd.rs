//! Dead peer detection (RFC 3706): probe only when the peer has been silent for the interval
//! (no ESP reported by the daemon, no IKE message), R-U-THERE with increasing sequence numbers,
//! the peer declared dead when nothing came back within the timeout after the first probe.

use std::time::{Duration, Instant};

use crate::config::Dpd;

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
            sent: Vec::new(),
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

    pub fn deadline(&self) -> Instant {
        match self.outstanding {
            None => self.last_seen + self.interval,
            Some((first, next)) => next.min(first + self.timeout),
        }
    }

    pub fn on_timeout(&mut self, now: Instant) -> DpdAction {
        match self.outstanding {
            None => {
                if now < self.last_seen + self.interval {
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
        assert_eq!(d.deadline(), t0 + Duration::from_secs(30));
        d.activity(t0 + Duration::from_secs(10));
        assert_eq!(
            d.on_timeout(t0 + Duration::from_secs(30)),
            DpdAction::Nothing
        );
        let mut probes = Vec::new();
        loop {
            let t = d.deadline();
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
}

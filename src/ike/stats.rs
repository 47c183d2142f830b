//! Process-wide IKE exchange counters for monitoring (`ikehub show counters`, docs/metrics.md).
//!
//! The sessions are sans-IO values owned by many peer actors; what a NOC graphs is their sum.
//! Relaxed atomic increments, once per exchange or retransmission, never per data packet: the
//! router reads them when `show counters` or a metrics scrape asks (actors/ike/router.rs).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::wire::isakmp::NotifyType;

/// Why an exchange failed, in a few fixed classes so that a metric label stays bounded (the
/// operator-readable reason is in the log and in `show peers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureClass {
    /// The peer never answered (retransmissions exhausted) or went silent.
    Timeout,
    /// NO-PROPOSAL-CHOSEN sent or received (RFC 2408 §3.14.1).
    NoProposalChosen,
    /// AUTHENTICATION-FAILED, INVALID-ID-INFORMATION, INVALID-HASH-INFORMATION,
    /// INVALID-SIGNATURE: the peer is not who the policy expects, or the keys differ.
    Authentication,
    /// Everything else.
    Other,
}

impl FailureClass {
    pub const ALL: [FailureClass; 4] = [
        Self::Timeout,
        Self::NoProposalChosen,
        Self::Authentication,
        Self::Other,
    ];

    /// From an `Event::Failed`: the notify decides when there is one; a failure without a
    /// notify is a timeout when the session says nobody answered (src/ike/timers.rs).
    pub fn of(reason: &str, notify: Option<NotifyType>) -> Self {
        match notify {
            Some(NotifyType::NO_PROPOSAL_CHOSEN) => Self::NoProposalChosen,
            Some(
                NotifyType::AUTHENTICATION_FAILED
                | NotifyType::INVALID_ID_INFORMATION
                | NotifyType::INVALID_HASH_INFORMATION
                | NotifyType::INVALID_SIGNATURE,
            ) => Self::Authentication,
            Some(_) => Self::Other,
            None if reason.contains("no answer") || reason.contains("went silent") => Self::Timeout,
            None => Self::Other,
        }
    }

    /// The metric label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::NoProposalChosen => "no_proposal_chosen",
            Self::Authentication => "authentication",
            Self::Other => "other",
        }
    }
}

/// The counters; one static instance, [`IKE_STATS`].
#[derive(Debug, Default)]
pub struct IkeStats {
    /// Main-mode exchanges begun, as initiator or responder.
    pub handshakes_started: AtomicU64,
    /// ISAKMP SAs established (phase 1 complete, first or re-key).
    pub handshakes_completed: AtomicU64,
    /// Failed exchanges, by [`FailureClass`] (index in `FailureClass::ALL`).
    pub handshakes_failed: [AtomicU64; 4],
    /// Requests sent again because no answer came (RFC 2408 §5).
    pub retransmissions: AtomicU64,
    /// Peers declared dead by DPD (RFC 3706).
    pub dpd_deaths: AtomicU64,
    /// Child SA pairs re-keyed (quick mode for an existing pair completed).
    pub rekeys: AtomicU64,
}

pub static IKE_STATS: IkeStats = IkeStats {
    handshakes_started: AtomicU64::new(0),
    handshakes_completed: AtomicU64::new(0),
    handshakes_failed: [const { AtomicU64::new(0) }; 4],
    retransmissions: AtomicU64::new(0),
    dpd_deaths: AtomicU64::new(0),
    rekeys: AtomicU64::new(0),
};

impl IkeStats {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub fn failed(&self, class: FailureClass) {
        let i = FailureClass::ALL
            .iter()
            .position(|c| *c == class)
            .unwrap_or(3);
        self.handshakes_failed[i].fetch_add(1, Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_classes() {
        let c = |r, n| FailureClass::of(r, n);
        assert_eq!(
            c("anything", Some(NotifyType::NO_PROPOSAL_CHOSEN)),
            FailureClass::NoProposalChosen
        );
        assert_eq!(
            c("x", Some(NotifyType::AUTHENTICATION_FAILED)),
            FailureClass::Authentication
        );
        assert_eq!(
            c("main mode: no answer from 192.0.2.2 to message 1", None),
            FailureClass::Timeout
        );
        assert_eq!(
            c("main mode: initiator 192.0.2.2 went silent", None),
            FailureClass::Timeout
        );
        // A peer-chosen notify number still lands in a fixed class.
        assert_eq!(c("x", Some(NotifyType(40000))), FailureClass::Other);
        assert_eq!(c("x", None), FailureClass::Other);
    }
}

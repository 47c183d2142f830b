//! The last status of peers whose actor is gone, so `show peers` can say why a tunnel is down.
//! Bounded (docs/design.md: every structure unauthenticated input can grow has a bound and an
//! eviction rule): configured single-peer policies keep one row each (bounded by the profiles);
//! spokes of templates and unknown initiators each have a first-in-first-out bound of their own,
//! so a flood of failing unknown initiators never pushes out what authenticated spokes left.

use std::collections::{HashMap, VecDeque};

use super::peer::PeerStatus;

/// Rows kept for template spokes that authenticated, and for initiators that never did.
const SPOKES: usize = 1024;
const UNKNOWN: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A policy with one peer address (one row per policy).
    Configured,
    /// A spoke of a template that completed phase 1 at least once.
    Spoke,
    /// An initiator that never authenticated.
    Unknown,
}

#[derive(Default)]
pub struct History {
    rows: HashMap<String, (Kind, PeerStatus)>,
    spokes: VecDeque<String>,
    unknown: VecDeque<String>,
}

impl History {
    /// Records the last status under `key` (a policy name, or policy and peer address).
    pub fn record(&mut self, key: String, kind: Kind, status: PeerStatus) {
        let (order, bound) = match kind {
            Kind::Configured => {
                self.rows.insert(key, (kind, status));
                return;
            }
            Kind::Spoke => (&mut self.spokes, SPOKES),
            Kind::Unknown => (&mut self.unknown, UNKNOWN),
        };
        if self.rows.insert(key.clone(), (kind, status)).is_none() {
            order.push_back(key);
        }
        while order.len() > bound {
            if let Some(old) = order.pop_front() {
                self.rows.remove(&old);
            }
        }
    }

    /// Drops the rows of these policies (removed or changed by a reload).
    pub fn forget_policies(&mut self, policies: &[String]) {
        self.rows.retain(|_, (_, s)| !policies.contains(&s.policy));
        let rows = &self.rows;
        self.spokes.retain(|k| rows.contains_key(k));
        self.unknown.retain(|k| rows.contains_key(k));
    }

    pub fn get(&self, key: &str) -> Option<&PeerStatus> {
        self.rows.get(key).map(|(_, s)| s)
    }

    pub fn rows(&self) -> impl Iterator<Item = (&String, &PeerStatus)> {
        self.rows.iter().map(|(k, (_, s))| (k, s))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.rows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(policy: &str) -> PeerStatus {
        PeerStatus {
            policy: policy.into(),
            ..PeerStatus::default()
        }
    }

    #[test]
    fn unknown_initiators_never_push_out_spokes_or_configured_peers() {
        let mut h = History::default();
        h.record("ToBerne".into(), Kind::Configured, status("ToBerne"));
        h.record("Branches@192.0.2.7".into(), Kind::Spoke, status("Branches"));
        for i in 0..100_000u32 {
            h.record(format!("Branches@{i}"), Kind::Unknown, status("Branches"));
        }
        assert_eq!(h.len(), 2 + UNKNOWN);
        assert!(h.get("ToBerne").is_some());
        assert!(h.get("Branches@192.0.2.7").is_some());
        for i in 0..2 * SPOKES as u32 {
            h.record(format!("Branches@s{i}"), Kind::Spoke, status("Branches"));
        }
        assert_eq!(h.len(), 1 + SPOKES + UNKNOWN);
        assert!(
            h.get("ToBerne").is_some(),
            "configured rows are bounded by the profiles"
        );
        h.forget_policies(&["Branches".into()]);
        assert_eq!(h.len(), 1);
        h.record("Branches@again".into(), Kind::Spoke, status("Branches"));
        assert_eq!(h.len(), 2);
    }
}

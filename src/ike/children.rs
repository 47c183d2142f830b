//! Child SA bookkeeping: installation, re-keying at the soft lifetime, the grace period before
//! the replaced pair is deleted, and simultaneous re-keys.
//!
//! Simultaneous re-keys (both ends start a quick mode for the same pair): both new pairs are
//! installed; the one whose exchange has the lower initiator nonce Ni is redundant (the rule of
//! RFC 7296 §2.8.1 applied to IKEv1). Both ends reach the same verdict since both know both
//! nonces; the end that initiated the redundant exchange deletes it at once, the other waits for
//! that delete (or the pair's hard expiry) and never re-keys it. One pair survives.
//!
//! A responder cannot tell a re-key from a new child in IKEv1; a new pair with the same
//! selectors as an installed one that has no successor yet is taken as its re-key. Either end
//! deletes a replaced pair when the grace period ends, whoever started the re-key.
//!
//! Bounds against an authenticated but hostile peer (a key holder must not exhaust the hub): at
//! most [`IkeSession::max_children`] pairs and [`IkeSession::max_quick_modes_per_sa`] quick modes
//! it started at once; beyond, its quick mode is refused with NO-PROPOSAL-CHOSEN.

use std::time::Instant;

use tracing::debug;

use crate::config::{Initiate, ProtectedNetwork};
use crate::wire::isakmp::{Delete, Payload, ProtocolId};

use super::events::{ChildSaInfo, Event, SpiPair};
use super::lifetimes::{hard_deadline, soft_deadline};
use super::sa_payload::SuiteSpis;
use super::session::{Child, IkeSession};

impl IkeSession {
    /// Child SA pairs one peer may hold at once: per protected-network pair, the pair and its
    /// successor during the grace period, plus two for simultaneous re-keys. An authenticated
    /// peer asking for more (e.g. ever narrower selectors) is refused.
    pub(crate) fn max_children(&self) -> usize {
        2 * self.env.config.protected_networks.len().max(1) + 2
    }

    /// Quick modes the peer may have in progress under one ISAKMP SA: one per protected-network
    /// pair (a permanent peer starts them all at once) plus two re-keys.
    pub(crate) fn max_quick_modes_per_sa(&self) -> usize {
        self.env.config.protected_networks.len().max(1) + 2
    }

    /// Why a quick mode the peer starts under ISAKMP SA (`cky_i`, `cky_r`) must be refused.
    pub(crate) fn quick_mode_refusal(&self, cky_i: &[u8; 8], cky_r: &[u8; 8]) -> Option<String> {
        let policy = &self.env.config.policy;
        let running = self
            .quick_modes
            .iter()
            .filter(|q| !q.initiator && &q.cky_i == cky_i && &q.cky_r == cky_r)
            .count();
        if running >= self.max_quick_modes_per_sa() {
            return Some(format!(
                "policy {policy}: {running} quick modes from the peer in progress under one \
                 ISAKMP SA (at most {}); quick mode refused",
                self.max_quick_modes_per_sa()
            ));
        }
        if self.children.len() >= self.max_children() {
            return Some(format!(
                "policy {policy}: the peer already holds {} child SA pairs (at most {}); \
                 quick mode refused",
                self.children.len(),
                self.max_children()
            ));
        }
        None
    }

    pub(crate) fn add_child(
        &mut self,
        now: Instant,
        info: ChildSaInfo,
        network: ProtectedNetwork,
        rekey_of: Option<SpiPair>,
        we_initiated: bool,
        ni: Box<[u8]>,
    ) {
        let spis = info.spis();
        let rk = self.env.config.rekey;
        let life = info.lifetime;
        let r = self.env.rng.next_u32();
        let old = rekey_of.or_else(|| {
            let cands: Vec<&Child> = self
                .children
                .iter()
                .filter(|c| c.network == network && !c.redundant)
                .collect();
            // A fresh successor whose predecessor is still in its grace period: the peer
            // re-keyed that predecessor too (simultaneous re-key).
            let present = |s: SpiPair| self.children.iter().any(|c| c.spis == s);
            cands
                .iter()
                .find(|c| c.replaced_by.is_none() && c.rekey_of.is_some_and(present))
                .and_then(|c| c.rekey_of)
                .or_else(|| {
                    cands
                        .iter()
                        .find(|c| c.replaced_by.is_none())
                        .map(|c| c.spis)
                })
        });
        let protocols = |p: &crate::esp::SaParams| SuiteSpis {
            esp: p.esp.as_ref().map(|e| e.spi),
            ah: p.ah.as_ref().map(|a| a.spi),
        };
        let child = Child {
            spis,
            inbound: protocols(&info.inbound),
            outbound: protocols(&info.outbound),
            lifetime: info.lifetime,
            network,
            soft: life.and_then(|l| soft_deadline(now, l, rk.soft_percent, rk.jitter_percent, r)),
            hard: life.and_then(|l| hard_deadline(now, l)),
            rekeying: false,
            replaced_by: None,
            rekey_of: old,
            redundant: false,
            we_initiated,
            ni,
            delete_at: None,
            traffic: false,
        };
        let mut sibling = None;
        if let Some(o) = old
            && let Some(oc) = self.children.iter_mut().find(|c| c.spis == o)
        {
            sibling = oc.replaced_by;
            if sibling.is_none() {
                oc.replaced_by = Some(spis);
            }
            // Both ends delete the old pair after the grace period, whichever started the
            // re-key: a peer that re-keys and never deletes must not pile pairs up here (issue
            // 9 point 8). The delete that comes second finds nothing and changes nothing.
            oc.delete_at.get_or_insert(now + rk.grace);
        }
        // The keys go to the daemon with the event; the session keeps none (`Child`).
        let event = match old {
            Some(o) => Event::ChildSaRekeyed { old: o, new: info },
            None => Event::ChildSaEstablished(info),
        };
        self.emit(event);
        self.children.push(child);
        if let Some(s) = sibling {
            self.resolve_duplicate(now, s, spis);
        }
    }

    /// Two pairs replace the same one: keep the one from the exchange with the higher Ni.
    fn resolve_duplicate(&mut self, now: Instant, a: SpiPair, b: SpiPair) {
        let (Some(ca), Some(cb)) = (
            self.children.iter().find(|c| c.spis == a),
            self.children.iter().find(|c| c.spis == b),
        ) else {
            return;
        };
        let loser = if ca.ni < cb.ni { a } else { b };
        debug!("simultaneous re-key: {loser:?} is redundant");
        let Some(lc) = self.children.iter_mut().find(|c| c.spis == loser) else {
            return;
        };
        lc.redundant = true;
        let ours = lc.we_initiated;
        let winner = if loser == a { b } else { a };
        if let Some(old) = lc.rekey_of
            && let Some(oc) = self.children.iter_mut().find(|c| c.spis == old)
        {
            oc.replaced_by = Some(winner);
        }
        if ours {
            self.delete_child(now, loser, "redundant after a simultaneous re-key", true);
        }
    }

    /// Removes a pair, tells the daemon, and (when `notify`) the peer.
    pub(crate) fn delete_child(&mut self, now: Instant, spis: SpiPair, reason: &str, notify: bool) {
        let via = notify
            .then(|| self.active_sa().or(self.isakmp.len().checked_sub(1)))
            .flatten();
        if self.remove_child(now, spis, via) {
            self.emit(Event::ChildSaDeleted {
                spis,
                reason: reason.to_string(),
            });
        }
    }

    /// Removes a pair and releases its SPIs; with `via`, tells the peer under that ISAKMP SA.
    /// `false` when there is no such pair.
    fn remove_child(&mut self, now: Instant, spis: SpiPair, via: Option<usize>) -> bool {
        let Some(i) = self.children.iter().position(|c| c.spis == spis) else {
            return false;
        };
        let c = self.children.remove(i);
        if let Some(si) = via {
            // RFC 2408 §3.15: we name our inbound SPIs, which the peer sends to.
            let mut payloads = Vec::new();
            if let Some(spi) = c.inbound.esp {
                payloads.push(Payload::Delete(Delete::ipsec(
                    ProtocolId::IPSEC_ESP,
                    &[spi],
                )));
            }
            if let Some(spi) = c.inbound.ah {
                payloads.push(Payload::Delete(Delete::ipsec(ProtocolId::IPSEC_AH, &[spi])));
            }
            self.send_info(now, si, payloads);
        }
        self.release(&c);
        true
    }

    pub(crate) fn child_timers(&mut self, now: Instant) {
        // Hard expiry and the end of grace periods.
        let due: Vec<(SpiPair, bool)> = self
            .children
            .iter()
            .filter_map(|c| {
                if c.hard.is_some_and(|t| now >= t) {
                    Some((c.spis, true))
                } else if c.delete_at.is_some_and(|t| now >= t) {
                    Some((c.spis, false))
                } else {
                    None
                }
            })
            .collect();
        for (spis, expired) in due {
            if expired {
                let Some(i) = self.children.iter().position(|c| c.spis == spis) else {
                    continue;
                };
                let c = &self.children[i];
                let notify = c.replaced_by.is_none() || c.we_initiated;
                // Reported as expired, not deleted.
                let via = notify.then(|| self.active_sa()).flatten();
                self.remove_child(now, spis, via);
                self.emit(Event::ChildSaExpired(spis));
            } else {
                self.delete_child(
                    now,
                    spis,
                    "replaced by its re-key (grace period over)",
                    true,
                );
            }
        }
        // Soft expiry: re-key.
        let may_initiate = self.env.config.initiate != Initiate::Never;
        let permanent = self.env.config.initiate == Initiate::Permanent;
        let soft: Vec<(SpiPair, ProtectedNetwork)> = self
            .children
            .iter_mut()
            .filter(|c| {
                !c.rekeying
                    && c.replaced_by.is_none()
                    && !c.redundant
                    && c.soft.is_some_and(|t| now >= t)
            })
            .filter_map(|c| {
                c.rekeying = true;
                (may_initiate && (permanent || c.traffic || c.we_initiated))
                    .then_some((c.spis, c.network))
            })
            .collect();
        for (spis, network) in soft {
            debug!("child {spis:?}: soft lifetime, re-keying");
            self.start_quick_mode(now, network, Some(spis));
        }
    }
}

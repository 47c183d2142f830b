//! Ending SAs wholesale: INITIAL-CONTACT from a restarted peer (RFC 2407 §4.6.3.3), a peer
//! declared dead by DPD, and local shutdown (`delete_all`, which tells the peer, and
//! `terminate`, which does not).

use std::time::Instant;

use super::events::{Event, SpiPair};
use super::isakmp_sa::IsakmpSa;
use super::quick_mode::QuickMode;
use super::session::{Child, IkeSession};
use super::state::Lifecycle;

impl IkeSession {
    /// INITIAL-CONTACT (RFC 2407 §4.6.3.3): the peer lost all state; everything we hold from
    /// before `keep` (cookies of the SA that carried it) is stale.
    pub(crate) fn initial_contact(&mut self, _now: Instant, keep: Option<([u8; 8], [u8; 8])>) {
        self.drop_children("peer sent INITIAL-CONTACT (it restarted)");
        let newest = keep.or(self.isakmp.last().map(IsakmpSa::cookies));
        let (keep_sa, old): (Vec<_>, Vec<_>) = std::mem::take(&mut self.isakmp)
            .into_iter()
            .partition(|s| Some(s.cookies()) == newest);
        for s in old {
            self.emit(Event::IsakmpSaDeleted {
                initiator_cookie: s.cky_i,
                responder_cookie: s.cky_r,
                reason: "peer sent INITIAL-CONTACT (it restarted)".into(),
            });
        }
        self.isakmp = keep_sa;
        self.emit(Event::InitialContact);
    }

    /// Forgets every child SA without telling the peer (the daemon removes them on the events).
    fn drop_children(&mut self, reason: &str) {
        for c in std::mem::take(&mut self.children) {
            self.release(&c);
            self.emit(Event::ChildSaDeleted {
                spis: c.spis,
                reason: reason.to_string(),
            });
        }
    }

    /// Forgets everything else: ISAKMP SAs (reported with `reason`), exchanges under way and
    /// what waited for them.
    fn drop_phase1_and_exchanges(&mut self, reason: &str) {
        for s in std::mem::take(&mut self.isakmp) {
            self.emit(Event::IsakmpSaDeleted {
                initiator_cookie: s.cky_i,
                responder_cookie: s.cky_r,
                reason: reason.to_string(),
            });
        }
        for q in std::mem::take(&mut self.quick_modes) {
            self.release_reserved(&q);
        }
        self.main_modes.clear();
        self.pending.clear();
    }

    /// A quick mode that will not complete: the SPIs reserved for its offers are free again.
    pub(crate) fn release_reserved(&self, qm: &QuickMode) {
        for s in &qm.reserved {
            self.env.spis.release(*s);
        }
        // A pair negotiated but waiting for CONNECTED holds the chosen SPIs.
        if let Some((c, _)) = &qm.committed {
            for spi in [
                c.inbound.esp.as_ref().map(|e| e.spi),
                c.inbound.ah.as_ref().map(|a| a.spi),
            ]
            .into_iter()
            .flatten()
            {
                self.env.spis.release(spi);
            }
        }
    }

    pub(crate) fn release(&self, c: &Child) {
        for spi in [c.inbound.esp, c.inbound.ah].into_iter().flatten() {
            self.env.spis.release(spi);
        }
    }

    pub(crate) fn peer_dead(&mut self) {
        // The policy's DPD, or the liveness check's when the policy has none.
        let timeout = self
            .env
            .config
            .dpd
            .unwrap_or(super::dpd::LIVENESS_CHECK)
            .timeout_seconds;
        self.drop_children(&format!("peer dead (no DPD answer within {timeout} s)"));
        self.drop_phase1_and_exchanges("peer dead");
        self.emit(Event::PeerDead);
        self.set_lifecycle(Lifecycle::Closed);
    }

    /// Graceful shutdown: delete notifications for every SA, then the session is closed.
    pub fn delete_all(&mut self, now: Instant) {
        if self.closed() {
            return;
        }
        let children: Vec<SpiPair> = self.children.iter().map(|c| c.spis).collect();
        for spis in children {
            self.delete_child(now, spis, "deleted locally (shutdown or terminate)", true);
        }
        while !self.isakmp.is_empty() {
            self.delete_isakmp(now, 0, "deleted locally (shutdown or terminate)");
        }
        self.terminate(now);
    }

    /// Drops everything without telling the peer (the daemon removes the SAs on the events).
    pub fn terminate(&mut self, _now: Instant) {
        self.drop_children("terminated locally");
        self.drop_phase1_and_exchanges("terminated locally");
        self.set_lifecycle(Lifecycle::Closed);
    }
}

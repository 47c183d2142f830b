//! The session's clock: when `handle_timeout` is due next and what it does then —
//! retransmission and give-up of main and quick modes, ISAKMP SA re-key and expiry, DPD probes
//! and NAT keepalives (child SAs: `children.rs`). It only reads deadlines; they are set where
//! the SAs are made (`lifetimes.rs`, from `isakmp_sa.rs` and `children.rs`).

use std::time::Instant;

use tracing::debug;

use crate::config::Initiate;
use crate::wire::isakmp::{Notification, Payload};

use super::dpd::{DpdAction, DpdState};
use super::error::IkeError;
use super::events::Event;
use super::isakmp_sa::hex;
use super::main_mode::MmState;
use super::nat_t;
use super::quick_mode::QmState;
use super::retransmit::{Retransmit, RetransmitAction};
use super::session::{IkeSession, Transmit};
use super::stats::{IKE_STATS, IkeStats};

impl IkeSession {
    /// When `handle_timeout` must be called next (`None`: nothing scheduled).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed() {
            return None;
        }
        let mut t: Option<Instant> = None;
        let mut at = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        for mm in &self.main_modes {
            at(mm.retransmit.as_ref().map(|r| r.deadline));
            if !mm.initiator {
                at(Some(mm.expires));
            }
        }
        for qm in &self.quick_modes {
            at(qm.retransmit.as_ref().map(|r| r.deadline));
            at(qm.committed.as_ref().map(|(_, until)| *until));
        }
        for sa in &self.isakmp {
            if !sa.rekeying {
                at(sa.soft);
            }
            at(sa.hard);
            at(sa.retire_at);
        }
        for c in &self.children {
            if !c.rekeying && c.replaced_by.is_none() && !c.redundant {
                at(c.soft);
            }
            at(c.hard);
            at(c.delete_at);
        }
        if !self.isakmp.is_empty() {
            at(self.dpd.as_ref().and_then(DpdState::deadline));
        }
        at(self.keepalive_at);
        at(self.replies.next_expiry());
        t
    }

    /// Time passed: retransmissions, expiry, re-keying, DPD, keepalives.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed() {
            return;
        }
        self.main_mode_timers(now);
        self.quick_mode_timers(now);
        self.isakmp_timers(now);
        self.child_timers(now);
        self.dpd_timer(now);
        self.replies.expire(now);
        if let Some(t) = self.keepalive_at
            && now >= t
        {
            self.transmits.push_back(Transmit {
                destination: self.path.peer,
                source_port_nat_t: true,
                bytes: vec![nat_t::NAT_KEEPALIVE],
            });
            self.keepalive_at = Some(t + self.env.config.nat.keepalive_interval);
        }
        self.run_pending(now);
    }

    fn main_mode_timers(&mut self, now: Instant) {
        let cfg = self.env.config.retransmit;
        let mut i = 0;
        while i < self.main_modes.len() {
            let mm = &mut self.main_modes[i];
            let state = mm.state;
            let action = match &mut mm.retransmit {
                Some(r) if mm.initiator => r.on_timeout(now, &cfg),
                _ if !mm.initiator && now >= mm.expires => RetransmitAction::GiveUp,
                _ => RetransmitAction::Wait,
            };
            match action {
                RetransmitAction::Wait => i += 1,
                RetransmitAction::Resend => {
                    IkeStats::count(&IKE_STATS.retransmissions);
                    let msg = stored_request(&mm.retransmit);
                    self.send(msg);
                    i += 1;
                }
                RetransmitAction::GiveUp => {
                    let mm = self.remove_failed_main_mode(i);
                    let reason = if mm.initiator {
                        let n = match state {
                            MmState::SentSa => 1,
                            MmState::SentKe => 3,
                            _ => 5,
                        };
                        format!(
                            "main mode: no answer from {} to message {n} after {} tries over {} s{}",
                            self.path.peer,
                            cfg.max_tries,
                            cfg.total().as_secs(),
                            if n == 5 {
                                " (a pre-shared key mismatch looks like this too)"
                            } else {
                                ""
                            }
                        )
                    } else {
                        format!(
                            "main mode: initiator {} went silent after our message {}",
                            mm.reply_to.map_or(self.path.peer, |(a, _)| a),
                            if state == MmState::RepliedSa { 2 } else { 4 }
                        )
                    };
                    if mm.initiator {
                        self.fail(&IkeError::fatal(reason));
                    } else {
                        self.fail_exchange(&IkeError::fatal(reason));
                    }
                }
            }
        }
    }

    fn quick_mode_timers(&mut self, now: Instant) {
        let cfg = self.env.config.retransmit;
        let mut i = 0;
        while i < self.quick_modes.len() {
            if self.quick_modes[i]
                .committed
                .as_ref()
                .is_some_and(|(_, until)| now >= *until)
            {
                let qm = self.quick_modes.remove(i);
                self.connected_never_came(now, qm);
                continue;
            }
            let qm = &mut self.quick_modes[i];
            let action = match &mut qm.retransmit {
                Some(r) => r.on_timeout(now, &cfg),
                None => RetransmitAction::Wait,
            };
            match action {
                RetransmitAction::Wait => i += 1,
                RetransmitAction::Resend => {
                    IkeStats::count(&IKE_STATS.retransmissions);
                    let msg = stored_request(&qm.retransmit);
                    self.send(msg);
                    i += 1;
                }
                RetransmitAction::GiveUp => {
                    let qm = self.quick_modes.remove(i);
                    if qm.state == QmState::SentReply {
                        // The pair is installed and the initiator may be using it; only the
                        // confirmation was lost.
                        debug!("quick mode {:08x}: no message 3, keeping the SA", qm.msg_id);
                        if let Some(spis) = qm.announced {
                            self.emit(Event::ChildSaConfirmed(spis));
                        }
                        continue;
                    }
                    self.release_reserved(&qm);
                    if let Some(old) = qm.rekey_of
                        && let Some(c) = self.children.iter_mut().find(|c| c.spis == old)
                    {
                        c.rekeying = false;
                        c.soft = None;
                    }
                    self.fail(&IkeError::fatal(format!(
                        "quick mode for {} <-> {}: no answer from {} after {} tries over {} s",
                        qm.network.local,
                        qm.network.remote,
                        self.path.peer,
                        cfg.max_tries,
                        cfg.total().as_secs()
                    )));
                }
            }
        }
    }

    fn isakmp_timers(&mut self, now: Instant) {
        // Re-key (initiator of the SA only, so both ends never race).
        let rekey = self.isakmp.iter().position(|s| {
            s.active() && !s.rekeying && s.soft.is_some_and(|t| now >= t) && s.initiator
        });
        if let Some(i) = rekey {
            self.isakmp[i].rekeying = true;
            let wanted =
                self.env.config.initiate == Initiate::Permanent || !self.children.is_empty();
            if wanted && !self.main_modes.iter().any(|m| m.initiator) {
                debug!(
                    "ISAKMP SA {}: soft lifetime, re-keying",
                    hex(&self.isakmp[i].cky_i)
                );
                self.start_main_mode(now, true);
            }
        }
        let mut i = 0;
        while i < self.isakmp.len() {
            let s = &self.isakmp[i];
            let expired = s.hard.is_some_and(|t| now >= t);
            let retired = s.retire_at.is_some_and(|t| now >= t);
            if expired || retired {
                let reason = if retired {
                    "replaced by a newer ISAKMP SA"
                } else {
                    "lifetime expired"
                };
                self.delete_isakmp(now, i, reason);
            } else {
                i += 1;
            }
        }
    }

    fn dpd_timer(&mut self, now: Instant) {
        if self.isakmp.is_empty() {
            return;
        }
        let Some(d) = &mut self.dpd else { return };
        match d.on_timeout(now) {
            DpdAction::Nothing => {}
            DpdAction::Probe(seq) => {
                if let Some(i) = self.active_sa().or(self.isakmp.len().checked_sub(1)) {
                    let (ci, cr) = self.isakmp[i].cookies();
                    debug!("DPD: R-U-THERE {seq}");
                    self.send_info(
                        now,
                        i,
                        vec![Payload::Notification(Notification::dpd(false, ci, cr, seq))],
                    );
                }
            }
            DpdAction::Dead => self.peer_dead(),
        }
    }
}

/// The request a retransmission sends again.
fn stored_request(r: &Option<Retransmit>) -> Vec<u8> {
    r.as_ref().map(|r| r.message.clone()).unwrap_or_default()
}

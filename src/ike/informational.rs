//! Informational exchanges (RFC 2409 §5.7): `HDR*, HASH(1), N/D` under the ISAKMP SA, each with
//! its own message ID and IV. Deletes (ISAKMP and IPsec SPIs), INITIAL-CONTACT, DPD
//! (RFC 3706 R-U-THERE / R-U-THERE-ACK) and error notifies; before phase 1 has keys, error
//! notifies travel in the clear and are honoured only for the exchange whose cookies they carry.

use std::net::SocketAddr;
use std::time::Instant;

use tracing::{debug, info};

use crate::wire::isakmp::{
    Delete, ExchangeType, Flags, Header, Notification, NotifyType, Payload, ProtocolId,
};

use super::error::IkeError;
use super::events::Event;
use super::message::{self, INFO};
use super::quick_mode::{QmState, QuickMode};
use super::sa_payload;
use super::session::IkeSession;

impl IkeSession {
    /// Sends `payloads` in an informational exchange under ISAKMP SA `si`.
    pub(crate) fn send_info(&mut self, _now: Instant, si: usize, payloads: Vec<Payload>) {
        if payloads.is_empty() {
            return;
        }
        let rng = &mut self.env.rng;
        let sa = &mut self.isakmp[si];
        let msg_id = sa.new_message_id(|| rng.next_u32());
        let h = Header::new(
            sa.cky_i,
            sa.cky_r,
            ExchangeType::INFORMATIONAL,
            Flags::ENCRYPTION,
            msg_id,
        );
        let keys = &sa.keys;
        let msg = message::hashed(
            h,
            &payloads,
            |r| keys.info_hash(msg_id, r).as_bytes().to_vec(),
            &mut sa.iv,
        );
        sa.iv.forget(msg_id);
        self.send(msg);
    }

    /// Deletes ISAKMP SA `i`, telling the peer.
    pub(crate) fn delete_isakmp(&mut self, now: Instant, i: usize, reason: &str) {
        let (ci, cr) = self.isakmp[i].cookies();
        self.send_info(now, i, vec![Payload::Delete(Delete::isakmp(ci, cr))]);
        self.isakmp.remove(i);
        self.emit(Event::IsakmpSaDeleted {
            initiator_cookie: ci,
            responder_cookie: cr,
            reason: reason.to_string(),
        });
    }

    pub(crate) fn on_informational(
        &mut self,
        now: Instant,
        from: SocketAddr,
        nat_port: bool,
        bytes: &[u8],
    ) {
        let (h, body) = match message::decode(bytes) {
            Ok(x) => x,
            Err(e) => {
                debug!(peer = %from, "informational: {}", e.reason);
                return;
            }
        };
        let cipher = match body {
            Ok(plain) => return self.on_plain_informational(plain.payloads, h),
            Err(c) => c,
        };
        let Some(si) = self
            .isakmp
            .iter()
            .position(|s| s.matches(&h.initiator_cookie, &h.responder_cookie))
        else {
            debug!(peer = %from, "informational for an unknown ISAKMP SA dropped");
            return;
        };
        // RFC 2408 §3.1: a Message ID is used by one exchange only, so an authenticated
        // informational is never acted on twice (a replayed delete, DPD or notify is
        // dropped), beyond the byte-identical copies the reply cache catches. An
        // informational may reuse the ID of one of our quick modes in progress: CONNECTED
        // must (RFC 2408 §3.1), and some peers send their refusal of it that way.
        let ours_running = self.quick_modes.iter().any(|q| {
            q.initiator && q.msg_id == h.message_id && self.isakmp[si].matches(&q.cky_i, &q.cky_r)
        });
        if self.isakmp[si].used_ids.contains(&h.message_id) && !ours_running {
            debug!(peer = %from, "informational: message ID {:08x} already used, dropped", h.message_id);
            return;
        }
        let sa = &mut self.isakmp[si];
        let m = match message::decrypt(h, &cipher, &sa.iv) {
            Ok(m) => m,
            Err(e) => {
                debug!(peer = %from, "informational: {}", e.reason);
                return;
            }
        };
        let Ok(got) = message::leading_hash(&m, "informational") else {
            debug!(peer = %from, "informational without HASH dropped");
            return;
        };
        let expect = sa.keys.info_hash(h.message_id, &m.after_first);
        if !super::nat_t::ct_eq(expect.as_bytes(), &got) {
            debug!(peer = %from, "informational: HASH does not verify, dropped");
            return;
        }
        if let Some(p) = m.pending {
            sa.iv.commit(p);
        }
        sa.iv.forget(h.message_id);
        sa.note_message_id(h.message_id);
        // No reply-cache entry: a copy of this message finds its message ID used (above).
        self.peer_has_sa(h.initiator_cookie);
        if let Err(e) = message::check(INFO, &m.payloads, "informational") {
            debug!(peer = %from, "informational: {}", e.reason);
            return;
        }
        self.authenticated(now, from, nat_port);
        let cookies = self.isakmp[si].cookies();
        for p in m.payloads.into_iter().skip(1) {
            match p {
                Payload::Notification(n) if n.message_type == NotifyType::CONNECTED => {
                    self.on_connected(now, h.message_id, si)
                }
                Payload::Notification(n) => self.on_notify(now, si, cookies, n),
                Payload::Delete(d) => self.on_delete(now, d),
                _ => {}
            }
        }
    }

    /// The quick mode under ISAKMP SA `si` with this Message ID that waits for CONNECTED.
    fn awaiting_connected(&self, msg_id: u32, si: usize) -> Option<usize> {
        let (ci, cr) = self.isakmp.get(si)?.cookies();
        self.quick_modes.iter().position(|q| {
            q.state == QmState::AwaitConnected
                && q.msg_id == msg_id
                && q.cky_i == ci
                && q.cky_r == cr
        })
    }

    /// CONNECTED (RFC 2408 §3.1, commit bit): the responder installed the pair; announce it.
    fn on_connected(&mut self, now: Instant, msg_id: u32, si: usize) {
        let Some(qi) = self.awaiting_connected(msg_id, si) else {
            debug!("informational: CONNECTED for no quick mode of ours, ignored");
            return;
        };
        let qm = self.quick_modes.remove(qi);
        if let Some((child, _)) = qm.committed {
            debug!(
                msg_id = format_args!("{msg_id:08x}"),
                "quick mode: CONNECTED"
            );
            self.add_child(
                now,
                *child,
                qm.network,
                qm.rekey_of,
                true,
                qm.ni.into_boxed_slice(),
            );
        }
    }

    /// A commit-bit quick mode whose CONNECTED never came: the pair was never announced; free
    /// its SPIs and ask the responder to delete its side (our inbound SPIs name it).
    pub(crate) fn connected_never_came(&mut self, now: Instant, qm: QuickMode) {
        let Some((child, _)) = qm.committed else {
            return;
        };
        let mut payloads = Vec::new();
        if let Some(e) = &child.inbound.esp {
            self.env.spis.release(e.spi);
            payloads.push(Payload::Delete(Delete::ipsec(
                ProtocolId::IPSEC_ESP,
                &[e.spi],
            )));
        }
        if let Some(a) = &child.inbound.ah {
            self.env.spis.release(a.spi);
            payloads.push(Payload::Delete(Delete::ipsec(
                ProtocolId::IPSEC_AH,
                &[a.spi],
            )));
        }
        if let Some(si) = self.active_sa() {
            self.send_info(now, si, payloads);
        }
        if let Some(old) = qm.rekey_of
            && let Some(c) = self.children.iter_mut().find(|c| c.spis == old)
        {
            c.rekeying = false;
            c.soft = None;
        }
        self.fail(&IkeError::fatal(format!(
            "quick mode for {} <-> {}: the responder set the commit bit and never sent \
             CONNECTED (RFC 2408 §3.1); the pair was not used and is deleted",
            qm.network.local, qm.network.remote
        )));
    }

    fn on_notify(&mut self, now: Instant, si: usize, cookies: ([u8; 8], [u8; 8]), n: Notification) {
        match n.message_type {
            NotifyType::R_U_THERE => {
                let Some(seq) = n.dpd_sequence() else { return };
                if si < self.isakmp.len() {
                    self.send_info(
                        now,
                        si,
                        vec![Payload::Notification(Notification::dpd(
                            true, cookies.0, cookies.1, seq,
                        ))],
                    );
                }
            }
            NotifyType::R_U_THERE_ACK => {
                if let (Some(seq), Some(d)) = (n.dpd_sequence(), &mut self.dpd) {
                    d.ack(seq, now);
                }
            }
            NotifyType::INITIAL_CONTACT => {
                // Children made under this SA are fresh; the ones from before are stale.
                let keep = self.isakmp.get(si).map(|s| (s.cookies(), s.established));
                let stale: Vec<_> = self
                    .children
                    .iter()
                    .filter(|c| {
                        keep.is_none_or(|(_, t)| {
                            c.hard.is_none_or(|h| {
                                h.checked_sub(c.lifetime.unwrap_or_default())
                                    .is_none_or(|made| made < t)
                            })
                        })
                    })
                    .map(|c| c.spis)
                    .collect();
                for s in stale {
                    self.delete_child(now, s, "peer sent INITIAL-CONTACT (it restarted)", false);
                }
                self.emit(Event::InitialContact);
            }
            NotifyType::RESPONDER_LIFETIME if n.protocol_id == ProtocolId::ISAKMP => {
                // We receive it in main-mode message 6; a peer may send it in an informational
                // after main mode instead. Only about the SA it names, only
                // from the responder of an SA we initiated, and it can only shorten
                // (isakmp_sa.rs, `shorten_lifetime`).
                let (secs, kb) = sa_payload::parse_phase1_lifetime_attributes(&n.data);
                let r = self.env.rng.next_u32();
                let rekey = self.env.config.rekey;
                if let Some(sa) = self.isakmp.iter_mut().find(|s| {
                    s.initiator
                        && n.spi.len() == 16
                        && n.spi[..8] == s.cky_i
                        && n.spi[8..] == s.cky_r
                }) {
                    debug!("RESPONDER-LIFETIME for the ISAKMP SA: {secs:?} s / {kb:?} KB");
                    sa.shorten_lifetime(secs, kb, rekey, r);
                }
            }
            t if t.is_error() => {
                let reason = format!("peer reports {t}");
                // A refusal of one of our pending quick modes: match by SPI, else the oldest.
                let spi = n.spi_u32();
                let qi = self
                    .quick_modes
                    .iter()
                    .position(|q| {
                        q.state == QmState::SentOffer
                            && spi.is_some_and(|s| q.reserved.contains(&s))
                    })
                    .or_else(|| {
                        self.quick_modes
                            .iter()
                            .position(|q| q.state == QmState::SentOffer)
                    });
                if let Some(qi) = qi {
                    let q = self.quick_modes.remove(qi);
                    self.release_reserved(&q);
                    self.fail(&IkeError::notify(
                        t,
                        format!(
                            "{reason}: quick mode for {} <-> {} refused",
                            q.network.local, q.network.remote
                        ),
                    ));
                } else {
                    info!(policy = %self.env.config.policy, "{reason}");
                }
            }
            t => debug!("informational: notify {t} ignored"),
        }
    }

    fn on_delete(&mut self, now: Instant, d: Delete) {
        match d.protocol_id {
            ProtocolId::ISAKMP => {
                for spi in &d.spis {
                    let Ok(c) = <[u8; 16]>::try_from(spi.as_slice()) else {
                        continue;
                    };
                    let (ci, cr) = c.split_at(8);
                    if let Some(i) = self
                        .isakmp
                        .iter()
                        .position(|s| s.cky_i[..] == *ci && s.cky_r[..] == *cr)
                    {
                        let s = self.isakmp.remove(i);
                        self.emit(Event::IsakmpSaDeleted {
                            initiator_cookie: s.cky_i,
                            responder_cookie: s.cky_r,
                            reason: "deleted by the peer".into(),
                        });
                    }
                }
            }
            ProtocolId::IPSEC_ESP | ProtocolId::IPSEC_AH => {
                let esp = d.protocol_id == ProtocolId::IPSEC_ESP;
                for spi in d.spis_u32().unwrap_or_default() {
                    // The peer names its inbound SPI: our outbound one.
                    let hit = self.children.iter().find(|c| {
                        let o = c.outbound;
                        if esp {
                            o.esp == Some(spi)
                        } else {
                            o.ah == Some(spi)
                        }
                    });
                    if let Some(c) = hit {
                        let spis = c.spis;
                        self.delete_child(now, spis, "deleted by the peer", false);
                    }
                }
            }
            p => debug!("delete for protocol {p} ignored"),
        }
    }

    /// A notify in the clear: honoured only as an error for a main mode in progress with these
    /// cookies (RFC 2408 §5: the peer has no keys yet, or ours differ).
    fn on_plain_informational(&mut self, payloads: Vec<Payload>, h: Header) {
        let Some(i) = self.main_modes.iter().position(|m| {
            m.cky_i == h.initiator_cookie && (m.cky_r == h.responder_cookie || m.cky_r == [0; 8])
        }) else {
            debug!("unencrypted informational outside a main mode dropped");
            return;
        };
        for p in payloads {
            if let Payload::Notification(n) = p
                && n.message_type.is_error()
            {
                let mm = self.remove_failed_main_mode(i);
                let stage = if mm.initiator {
                    "our main mode"
                } else {
                    "main mode"
                };
                let hint = if n.message_type == NotifyType::NO_PROPOSAL_CHOSEN {
                    ": the peer accepts none of the isakmp-transforms we offered"
                } else if n.message_type == NotifyType::AUTHENTICATION_FAILED
                    || n.message_type == NotifyType::PAYLOAD_MALFORMED
                {
                    ": the pre-shared keys probably differ"
                } else {
                    ""
                };
                self.fail(&IkeError::notify(
                    n.message_type,
                    format!("peer refused {stage} with {}{hint}", n.message_type),
                ));
                return;
            }
        }
    }
}

//! `ike_established`: what an authenticated peer can make the responder do after phase 1.
//!
//! A real initiator and responder first bring up an ISAKMP SA and a child SA over a clean
//! network. The harness then takes the initiator's ISAKMP SA out of its session and becomes
//! that peer: it sends quick-mode and informational messages whose payloads after the HASH
//! are fuzzed (a captured quick-mode message 1, a delete or a DPD notify, mutated by the
//! input), under fuzz-chosen message IDs, with HASH(1) computed over exactly the bytes the
//! responder will hash (RFC 2409 §5.5, §5.7), and encrypted on the ISAKMP SA's IV chain,
//! which the harness keeps as a peer does (it decrypts the responder's replies and moves the
//! chain on, RFC 2409 Appendix B). It can also finish a quick mode with HASH(3) over the
//! nonces of the exchange. So quick mode and informational handling see hostile but authentic
//! input; the keys, IVs and hashes are the crate's own (`keys.rs`, `cipher.rs`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::wire::isakmp::{
    Body, Delete, ExchangeType, Flags, Header, Message, Notification, Payload, PayloadType,
    ProtocolId, decode_payloads_padded, encode_payloads, split_payloads_padded,
};

use super::super::isakmp_sa::IsakmpSa;
use super::super::message;
use super::super::nat_t::{NON_ESP_MARKER, strip_marker};
use super::super::{Event, IkeSession};
use super::Input;

const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Messages per input: enough for several complete exchanges.
const MAX_MESSAGES: usize = 32;

/// What the fuzzed messages made the responder do (the unit tests check the harness gets
/// past authentication, not only that nothing panics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reached {
    /// Bring-up completed (ISAKMP SA and first child).
    pub established: bool,
    /// Encrypted messages the responder sent in answer to fuzzed ones (quick mode 2,
    /// R-U-THERE-ACK, notifies).
    pub replies: usize,
    /// Child SAs established or re-keyed by fuzzed quick modes.
    pub children: usize,
    /// Child or ISAKMP SAs deleted by fuzzed messages.
    pub deletes: usize,
}

/// The responder after bring-up, and the harness as its authenticated peer.
struct Peer {
    responder: IkeSession,
    /// The initiator's ISAKMP SA: keys, cookies and the IV chain the harness advances.
    sa: IsakmpSa,
    /// Where the harness sends from: port 4500 with the non-ESP marker once IKE floated.
    nat_t: bool,
    /// Quick-mode exchanges by message ID: Ni_b sent, Nr_b received.
    nonces: Vec<(u32, Vec<u8>, Vec<u8>)>,
}

/// A captured quick-mode message 1 (bring-up's own): the payloads after its HASH.
struct BaseQm {
    msg_id: u32,
    first: PayloadType,
    rest: Vec<u8>,
}

/// Runs one input on virtual time from `t0`: byte 0 seeds the RNGs (bit 0: the initiator
/// forces UDP encapsulation, so everything travels on port 4500 with the marker); then each
/// message is described by a control byte:
///
/// | bits | choice |
/// |------|--------|
/// | 0-1  | 0 quick mode with HASH(1), 1 informational with HASH(1), 2 quick mode HASH(3) only, 3 advance time (next byte, seconds) |
/// | 2-3  | message ID: fresh (next 4 bytes), the previous message's, bring-up's quick mode's, a small one (next byte) |
/// | 4-5  | payloads after HASH: the captured quick-mode message 1, a delete of the child, DPD R-U-THERE, a delete of the ISAKMP SA |
///
/// followed (HASH(1) messages) by a count byte and that many mutations of the payload bytes.
pub fn run(t0: Instant, data: &[u8]) -> Reached {
    let mut input = Input::new(data);
    let seed = input.byte();
    let mut now = t0;
    let mut reached = Reached::default();
    let Some((mut peer, base)) = bring_up(now, seed) else {
        return reached;
    };
    reached.established = true;
    peer.nonces
        .push((base.msg_id, nonce(base.first, &base.rest), Vec::new()));
    let mut last_id = base.msg_id;
    for _ in 0..MAX_MESSAGES {
        if input.is_empty() {
            break;
        }
        let ctl = input.byte();
        if ctl & 3 == 3 {
            now += Duration::from_secs(u64::from(input.byte()));
            if peer.responder.poll_timeout().is_some_and(|t| t <= now) {
                peer.responder.handle_timeout(now);
            }
            peer.drain(&mut reached, false);
            continue;
        }
        let msg_id = match ctl >> 2 & 3 {
            0 => input.u32(),
            1 => last_id,
            2 => base.msg_id,
            _ => u32::from(input.byte()),
        };
        let (exchange, body) = if ctl & 3 == 2 {
            (ExchangeType::QUICK_MODE, peer.hash3_body(msg_id))
        } else {
            let (mut first, mut rest) = match ctl >> 4 & 3 {
                0 => (base.first, base.rest.clone()),
                1 => {
                    let spi = peer.responder.child_sas().first().map_or(0, |p| p.outbound);
                    info(Payload::Delete(Delete::ipsec(
                        ProtocolId::IPSEC_ESP,
                        &[spi],
                    )))
                }
                2 => {
                    let (i, r) = peer.sa.cookies();
                    info(Payload::Notification(Notification::dpd(
                        false,
                        i,
                        r,
                        input.u32(),
                    )))
                }
                _ => {
                    let (i, r) = peer.sa.cookies();
                    info(Payload::Delete(Delete::isakmp(i, r)))
                }
            };
            mutate(&mut input, &mut first, &mut rest);
            if ctl & 3 == 0 {
                peer.note_ni(msg_id, first, &rest);
                (
                    ExchangeType::QUICK_MODE,
                    peer.hash1_body(msg_id, first, &rest),
                )
            } else {
                (
                    ExchangeType::INFORMATIONAL,
                    peer.hash1_body(msg_id, first, &rest),
                )
            }
        };
        peer.send(now, exchange, msg_id, &body);
        peer.drain(&mut reached, true);
        last_id = msg_id;
    }
    peer.responder.delete_all(now);
    peer.drain(&mut reached, false);
    reached
}

fn info(p: Payload) -> (PayloadType, Vec<u8>) {
    encode_payloads(&[p])
}

/// The body of a Nonce payload in a chain, if it decodes.
fn nonce(first: PayloadType, chain: &[u8]) -> Vec<u8> {
    decode_payloads_padded(first, chain)
        .ok()
        .and_then(|ps| {
            ps.into_iter().find_map(|p| match p {
                Payload::Nonce(n) => Some(n),
                _ => None,
            })
        })
        .unwrap_or_default()
}

/// Up to three edits of the payload bytes after HASH (a count byte of 0 keeps them intact).
fn mutate(input: &mut Input<'_>, first: &mut PayloadType, rest: &mut Vec<u8>) {
    for _ in 0..input.byte() % 4 {
        let op = input.byte();
        let at = usize::from(input.u16()) % (rest.len() + 1);
        match op % 6 {
            0 if at < rest.len() => rest[at] ^= input.byte() | 1,
            1 => rest.truncate(at),
            2 => {
                let n = usize::from(input.byte() % 64);
                let bytes = input.take(n);
                rest.splice(at..at, bytes.iter().copied());
            }
            // A 16-bit field (payload lengths, attribute values) set to an input value.
            3 if at + 2 <= rest.len() => {
                rest[at..at + 2].copy_from_slice(&input.u16().to_be_bytes())
            }
            4 => *first = PayloadType(input.byte()),
            5 => {
                let end = (at + usize::from(input.byte())).min(rest.len());
                rest.drain(at..end);
            }
            _ => {}
        }
    }
}

/// Brings up an ISAKMP SA and a child SA between a real initiator and the responder over a
/// clean network, capturing the initiator's quick-mode message 1 on the way (decrypted with
/// the responder's IV chain before the responder sees it).
fn bring_up(now: Instant, seed: u8) -> Option<(Peer, BaseQm)> {
    let (a_addr, b_addr): (SocketAddr, SocketAddr) = ((A, 500).into(), (B, 500).into());
    let [mut a, mut b] = super::pair(now, seed, a_addr, b_addr);
    let mut base = None;
    let mut nat_t = false;
    for _ in 0..16 {
        let mut moved = false;
        while a.poll_event().is_some() {}
        while let Some(t) = a.poll_transmit() {
            moved = true;
            nat_t = t.source_port_nat_t;
            if base.is_none() {
                base = capture_qm1(&b, &t.bytes, nat_t);
            }
            let from = SocketAddr::new(IpAddr::V4(A), if nat_t { 4500 } else { 500 });
            b.handle_datagram(now, from, nat_t, &t.bytes);
        }
        while b.poll_event().is_some() {}
        while let Some(t) = b.poll_transmit() {
            moved = true;
            let from = SocketAddr::new(IpAddr::V4(B), if t.source_port_nat_t { 4500 } else { 500 });
            a.handle_datagram(now, from, t.source_port_nat_t, &t.bytes);
        }
        if !moved {
            break;
        }
    }
    if b.child_sas().is_empty() {
        return None;
    }
    let base = base?;
    // The harness is the initiator from now on: its newest ISAKMP SA (session-internal; the
    // session itself is dropped).
    let sa = a.isakmp.pop()?;
    let peer = Peer {
        responder: b,
        sa,
        nat_t,
        nonces: Vec::new(),
    };
    Some((peer, base))
}

/// The payloads after HASH of a quick-mode message 1 from the initiator, decrypted with the
/// responder's (not yet advanced) IV chain.
fn capture_qm1(responder: &IkeSession, bytes: &[u8], nat_t: bool) -> Option<BaseQm> {
    let bytes = if nat_t { strip_marker(bytes)? } else { bytes };
    let (h, body) = message::decode(bytes).ok()?;
    let Err(ciphertext) = body else { return None };
    if h.exchange_type != ExchangeType::QUICK_MODE {
        return None;
    }
    let sa = responder
        .isakmp
        .iter()
        .find(|s| s.matches(&h.initiator_cookie, &h.responder_cookie))?;
    let p = message::decrypt(h, &ciphertext, &sa.iv).ok()?;
    Some(BaseQm {
        msg_id: h.message_id,
        first: p.payloads.get(1)?.payload_type(),
        rest: p.after_first,
    })
}

impl Peer {
    fn note_ni(&mut self, msg_id: u32, first: PayloadType, rest: &[u8]) {
        let ni = nonce(first, rest);
        self.nonces.retain(|(m, _, _)| *m != msg_id);
        self.nonces.push((msg_id, ni, Vec::new()));
        if self.nonces.len() > 8 {
            self.nonces.remove(0);
        }
    }

    /// HASH | rest, the HASH (RFC 2409 §5.5 HASH(1), §5.7) computed over the bytes the
    /// responder will take as "the payloads after HASH": from the second payload to the end of
    /// the last one of the chain as it will be decrypted (zero padding to the block size
    /// included), split by the crate's own splitter. When the chain does not split, the
    /// responder drops the message before any hash, so any value does.
    fn hash1_body(&self, msg_id: u32, first: PayloadType, rest: &[u8]) -> Vec<u8> {
        let keys = &self.sa.keys;
        let hash_len = keys.qm_hash1(msg_id, &[]).len();
        let mut body = hash_payload(first, hash_len);
        let at = body.len() - hash_len;
        body.extend_from_slice(rest);
        let bs = self.sa.iv.block_len();
        let mut padded = body.clone();
        padded.resize(body.len().next_multiple_of(bs).max(bs), 0);
        let covered = match split_payloads_padded(PayloadType::HASH, &padded) {
            Ok(raw) => match (raw.get(1), raw.last()) {
                (Some(second), Some(last)) => {
                    &padded[second.offset..last.offset + last.bytes.len()]
                }
                _ => &[][..],
            },
            Err(_) => rest,
        };
        // Quick mode and informational HASH(1) are the same function (keys.rs).
        let h = keys.qm_hash1(msg_id, covered);
        body[at..at + hash_len].copy_from_slice(h.as_bytes());
        body
    }

    /// A quick-mode message 3: HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b) alone, over
    /// the nonces of exchange `msg_id` as the harness knows them (empty when it does not).
    fn hash3_body(&self, msg_id: u32) -> Vec<u8> {
        let (ni, nr) = self
            .nonces
            .iter()
            .find(|(m, _, _)| *m == msg_id)
            .map_or((&[][..], &[][..]), |(_, ni, nr)| (&ni[..], &nr[..]));
        let h = self.sa.keys.qm_hash3(msg_id, ni, nr);
        let mut body = hash_payload(PayloadType::NONE, h.len());
        let at = body.len() - h.len();
        body[at..].copy_from_slice(h.as_bytes());
        body
    }

    /// Encrypts `body` on the IV chain of `msg_id` and delivers it to the responder.
    fn send(&mut self, now: Instant, exchange: ExchangeType, msg_id: u32, body: &[u8]) {
        let (i, r) = self.sa.cookies();
        let header = Header::new(i, r, exchange, Flags::ENCRYPTION, msg_id);
        let c = self.sa.iv.encrypt(msg_id, body);
        let msg = Message::encrypted(header, PayloadType::HASH, c).encode();
        let (from, bytes) = if self.nat_t {
            ((A, 4500).into(), [&NON_ESP_MARKER[..], &msg].concat())
        } else {
            ((A, 500).into(), msg)
        };
        self.responder
            .handle_datagram(now, from, self.nat_t, &bytes);
    }

    /// Takes the responder's events and replies; an encrypted reply moves the IV chain of
    /// its exchange on (as the real peer would after decrypting it) and gives Nr_b.
    fn drain(&mut self, reached: &mut Reached, answers: bool) {
        while let Some(e) = self.responder.poll_event() {
            match e {
                Event::ChildSaEstablished(_) | Event::ChildSaRekeyed { .. } => {
                    reached.children += usize::from(answers)
                }
                Event::ChildSaDeleted { .. } | Event::IsakmpSaDeleted { .. } => {
                    reached.deletes += usize::from(answers)
                }
                _ => {}
            }
        }
        while let Some(t) = self.responder.poll_transmit() {
            let bytes = if t.source_port_nat_t {
                match strip_marker(&t.bytes) {
                    Some(b) => b,
                    None => continue,
                }
            } else {
                &t.bytes[..]
            };
            let Ok(m) = Message::decode(bytes) else {
                continue;
            };
            let h = m.header;
            let Body::Encrypted(c) = m.body else { continue };
            if !self.sa.matches(&h.initiator_cookie, &h.responder_cookie) {
                continue;
            }
            let Ok(d) = self.sa.iv.decrypt(h.message_id, &c) else {
                continue;
            };
            self.sa.iv.commit(d.pending);
            reached.replies += usize::from(answers);
            if h.exchange_type == ExchangeType::QUICK_MODE {
                let nr = nonce(h.next_payload, &d.plaintext);
                if let Some(e) = self.nonces.iter_mut().find(|(m, _, _)| *m == h.message_id) {
                    e.2 = nr;
                }
            }
        }
    }
}

/// A HASH payload's generic header and a zeroed hash of `len` bytes.
fn hash_payload(next: PayloadType, len: usize) -> Vec<u8> {
    let mut b = vec![next.0, 0];
    b.extend_from_slice(&((4 + len) as u16).to_be_bytes());
    b.resize(4 + len, 0);
    b
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::test_inputs;

    /// A fixed script: quick mode 1 (the captured payloads, fresh ID) is answered, HASH(3)
    /// completes it (a child SA), an authentic delete of the child deletes it (no answer),
    /// DPD is answered.
    #[test]
    fn authentic_quick_mode_delete_and_dpd_get_through() {
        let script = [
            0x00, // seed
            0x00, 0x12, 0x34, 0x56, 0x78, 0,    // QM HASH(1), fresh ID, captured payloads, as is
            0x06, // QM HASH(3), previous ID
            0x11, 0x00, 0x00, 0x00, 0x09, 0, // informational, fresh ID, delete child, as is
            0x21, 0x00, 0x00, 0x00, 0x0a, 0, 0, 0, 1, 0, // informational, DPD seq 1
        ];
        let r = super::run(Instant::now(), &script);
        assert!(r.established);
        assert_eq!(r.replies, 2, "{r:?}"); // quick mode 2 and the R-U-THERE-ACK
        assert_eq!(r.children, 1, "{r:?}");
        assert_eq!(r.deletes, 1, "{r:?}");
    }

    /// The fuzz target's function on 300 pseudo-random inputs: nothing panics, and mutated
    /// authentic messages keep getting answers.
    #[test]
    fn hundreds_of_fuzzed_authentic_messages_never_panic() {
        let mut replies = 0;
        for data in test_inputs(0xe57a, 300, 300, 160) {
            replies += super::run(Instant::now(), &data).replies;
        }
        assert!(replies >= 100, "{replies}");
    }
}

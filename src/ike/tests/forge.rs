//! A hostile but authenticated peer for session tests: rewrites of plaintext main-mode
//! messages, and quick-mode message 2 re-encrypted under the real ISAKMP SA after its payloads
//! were changed, as a responder that knows the keys could send it.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::ike::message;
use crate::wire::isakmp::{
    Attribute, Body, ExchangeType, Flags, Header, Message, Payload, PayloadType, encode_payloads,
};

use super::harness::Pair;

/// Sets every attribute `attr` of every transform in the SA payloads of a plaintext message to
/// `value` (e.g. Life Duration). Returns the message and the new SA payload body (SAi_b).
pub fn set_sa_attribute(bytes: &[u8], attr: u16, value: u64) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut m = Message::decode(bytes).ok()?;
    let Body::Payloads(ps) = &mut m.body else {
        return None;
    };
    let mut body = None;
    for p in ps.iter_mut() {
        if let Payload::Sa(sa) = p {
            for t in sa
                .proposals
                .iter_mut()
                .flat_map(|p| p.transforms.iter_mut())
            {
                for a in t.attributes.iter_mut().filter(|a| a.attr_type == attr) {
                    *a = Attribute::number(attr, value);
                }
            }
            let mut b = Vec::new();
            p.encode_body(&mut b);
            body = Some(b);
        }
    }
    Some((m.encode(), body?))
}

/// Rewrites the Life Duration of side A's queued main-mode message 1 (and the SAi_b it will
/// hash), as an initiator that offers `secs` would send it.
pub fn initiator_offers_phase1_life(p: &mut Pair, secs: u64) {
    let a = &mut p.sides[0].s;
    let t = a.transmits.front_mut().expect("message 1 queued");
    let (msg, sai_b) = set_sa_attribute(&t.bytes, 12, secs).expect("message 1 with an SA");
    t.bytes = msg;
    a.main_modes[0].sai_b = sai_b;
}

fn is_quick_mode(bytes: &[u8]) -> bool {
    bytes.get(18) == Some(&ExchangeType::QUICK_MODE.0)
}

/// Drops every quick-mode datagram side B sends and keeps them: the test forges what A gets.
pub fn capture_quick_mode_replies(p: &mut Pair) -> Rc<RefCell<Vec<Vec<u8>>>> {
    let got = Rc::new(RefCell::new(Vec::new()));
    let keep = Rc::clone(&got);
    p.filter = Box::new(move |_, from, t| {
        if from == 1 && is_quick_mode(&t.bytes) {
            keep.borrow_mut().push(t.bytes.clone());
            Vec::new()
        } else {
            vec![Duration::ZERO]
        }
    });
    got
}

/// Quick-mode message 2 for side A's pending exchange, as B would send it after `edit`
/// changed its payloads (HASH(2) recomputed, encrypted under the ISAKMP SA, with `flags`).
pub fn forge_qm2(
    p: &Pair,
    m2: &[u8],
    flags: Flags,
    edit: impl FnOnce(&mut Vec<Payload>),
) -> Vec<u8> {
    let a = &p.sides[0].s;
    let sa = &a.isakmp[0];
    let (h, body) = message::decode(m2).expect("quick mode message 2");
    let Err(c) = body else {
        panic!("quick mode message 2 in the clear")
    };
    let qm = a
        .quick_modes
        .iter()
        .find(|q| q.msg_id == h.message_id)
        .expect("A waits for this message 2");
    let parsed = message::decrypt(h, &c, &sa.iv).expect("decrypts under A's SA");
    let mut rest: Vec<Payload> = parsed.payloads[1..].to_vec();
    edit(&mut rest);
    let (first, rest_bytes) = encode_payloads(&rest);
    let hash = sa.keys.qm_hash2(h.message_id, &qm.ni, &rest_bytes);
    let hb = hash.as_bytes();
    let mut plain = vec![first.0, 0];
    plain.extend_from_slice(&((4 + hb.len()) as u16).to_be_bytes());
    plain.extend_from_slice(hb);
    plain.extend_from_slice(&rest_bytes);
    let c = sa.iv.encrypt_detached(h.message_id, &plain);
    let mut hdr = h;
    hdr.flags = flags;
    Message::encrypted(hdr, PayloadType::HASH, c).encode()
}

/// An informational exchange to side A under its ISAKMP SA with Message ID `msg_id`, as B
/// would send it (HASH(1), encrypted with the IV of a new exchange).
pub fn forge_info_to_a(p: &Pair, msg_id: u32, payloads: &[Payload]) -> Vec<u8> {
    let sa = &p.sides[0].s.isakmp[0];
    let (first, rest) = encode_payloads(payloads);
    let hash = sa.keys.info_hash(msg_id, &rest);
    let hb = hash.as_bytes();
    let mut plain = vec![first.0, 0];
    plain.extend_from_slice(&((4 + hb.len()) as u16).to_be_bytes());
    plain.extend_from_slice(hb);
    plain.extend_from_slice(&rest);
    let c = sa.iv.encrypt_detached(msg_id, &plain);
    let h = Header::new(
        sa.cky_i,
        sa.cky_r,
        ExchangeType::INFORMATIONAL,
        Flags::ENCRYPTION,
        msg_id,
    );
    Message::encrypted(h, PayloadType::HASH, c).encode()
}

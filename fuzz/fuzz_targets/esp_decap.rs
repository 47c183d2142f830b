//! Arbitrary bytes into inbound decapsulation of SAs of several suites, both as a raw-socket
//! IPv4 packet and as a UDP 4500 payload. The first input byte picks the SA and the framing.
//! Behind an ICV the fuzzer could only get by forging HMACs, so for the ESP-NULL + HMAC-SHA1
//! suites (whose key is fixed here) bit 0x40 of the selector makes the target re-compute the
//! ICV over whatever the input holds: the fuzzer then drives the replay window, padding check,
//! inner-packet parsing, transport-mode header rebuild and selector check directly. The 3DES
//! suite without integrity reaches decryption and padding the same way.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;
use std::time::Instant;

use ikehub::config::{KeyBytes, Mode, ProtectedNetwork};
use ikehub::crypto::{AuthAlgorithm, EncrAlgorithm, Integrity};
use ikehub::wire::Ipv4Packet;
use ikehub::esp::{
    AhKeys, Direction, EspKeys, LifetimeLimits, Received, SaEncapsulation, SaParams,
    SecurityAssociation,
};
use libfuzzer_sys::fuzz_target;

const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

fn params(i: u8) -> SaParams {
    let key = |n: usize| KeyBytes((0..n as u8).collect());
    let esp = |e: EncrAlgorithm, a: AuthAlgorithm| EspKeys {
        spi: 0x1000,
        encryption: e,
        encryption_key: key(e.key_len()),
        authentication: a,
        authentication_key: key(a.key_len()),
    };
    let ah = AhKeys {
        spi: 0x2000,
        authentication: AuthAlgorithm::HmacSha1,
        authentication_key: key(20),
    };
    let (esp, ah, mode) = match i % 6 {
        0 => (Some(esp(EncrAlgorithm::Null, AuthAlgorithm::HmacSha1)), None, Mode::Tunnel),
        1 => (Some(esp(EncrAlgorithm::AesCbc128, AuthAlgorithm::HmacSha1)), None, Mode::Tunnel),
        2 => (None, Some(ah), Mode::Tunnel),
        3 => (Some(esp(EncrAlgorithm::AesCbc256, AuthAlgorithm::HmacSha256)), Some(ah), Mode::Tunnel),
        4 => (Some(esp(EncrAlgorithm::Null, AuthAlgorithm::HmacSha1)), None, Mode::Transport),
        _ => (Some(esp(EncrAlgorithm::TripleDes, AuthAlgorithm::None)), None, Mode::Transport),
    };
    SaParams {
        direction: Direction::Inbound,
        mode,
        esp,
        ah,
        local: IpAddr::V4(LOCAL),
        peer: IpAddr::V4(PEER),
        encapsulation: SaEncapsulation::Raw,
        replay_window: 64,
        lifetime: LifetimeLimits::UNLIMITED,
        protected_networks: vec![ProtectedNetwork {
            local: "0.0.0.0/1".parse().unwrap(),
            remote: "any".parse().unwrap(),
        }],
    }
}

fn start() -> Instant {
    static T: OnceLock<Instant> = OnceLock::new();
    *T.get_or_init(Instant::now)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let now = start();
    let mut sa = SecurityAssociation::new(params(sel), now).expect("valid SA");
    let mut buf = rest.to_vec();
    let received = if sel & 0x80 != 0 {
        Received::Udp {
            src: PEER,
            dst: LOCAL,
            offset: usize::from(sel >> 3 & 0x0f).min(buf.len()),
        }
    } else {
        Received::Ip
    };
    if sel & 0x40 != 0 && matches!(sel % 6, 0 | 4) {
        reauthenticate(&mut buf, received);
    }
    let before = *sa.counters();
    match sa.decap(now, &mut buf, received) {
        Ok(d) => {
            assert!(d.inner.end <= buf.len());
            assert_eq!(sa.counters().packets, before.packets + 1);
        }
        Err(_) => assert_eq!(sa.counters().drops(), before.drops() + 1),
    }
    // Feed it twice: the second time is a replay or the same drop, never a panic.
    let mut again = rest.to_vec();
    let _ = sa.decap(now, &mut again, received);
});

/// Writes a valid HMAC-SHA1-96 over the ESP part of `buf` (key 00 01 .. 13, as `params`).
fn reauthenticate(buf: &mut [u8], received: Received) {
    let (start, end) = match received {
        Received::Ip => match Ipv4Packet::new_checked(&buf[..]) {
            Ok(p) => (p.header_len(), usize::from(p.total_len())),
            Err(_) => return,
        },
        Received::Udp { offset, .. } => (offset, buf.len()),
    };
    if end < start + 8 + 12 {
        return;
    }
    let key: Vec<u8> = (0..20).collect();
    let integ = Integrity::new(AuthAlgorithm::HmacSha1, &key).expect("key");
    let (body, icv) = buf[start..end].split_at_mut(end - start - 12);
    integ.compute(&[body], icv).expect("icv length");
}

//! The ESP/AH data plane under arbitrary input: `esp_encap` (arbitrary cleartext and SA
//! parameters through encapsulation, and decapsulation of the result by the peer's SA must
//! give the cleartext back) and `esp_decap` (arbitrary bytes into decapsulation). Both cover
//! IPv4 and IPv6, inside and outside.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::config::{KeyBytes, Mode, NetworkSpec, ProtectedNetwork};
use crate::crypto::{AuthAlgorithm, EncrAlgorithm, Integrity};
use crate::esp::{
    AhKeys, Direction, EncapOutcome, EncapParams, EspKeys, LifetimeLimits, OuterPacket, Received,
    SaEncapsulation, SaParams, SecurityAssociation,
};
use crate::wire::{IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, ipv6};

use super::Input;

const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const LOCAL6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const PEER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
/// Headroom in front of a socket-delivered payload: transport mode rebuilds the IPv4 (20) or
/// IPv6 (40) header there.
const HEADROOM: usize = 40;
/// Room for every header and trailer an SA adds (outer IP, UDP, AH with a 32-byte ICV, ESP
/// header, IV, padding, trailer, ICV) and for an ICMP "fragmentation needed".
const OVERHEAD: usize = 640;

/// What an input reached (the unit test checks that the harness gets packets through).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncapReached {
    /// Packets encapsulated and decapsulated back to their cleartext.
    pub round_trips: usize,
    /// ICMP "fragmentation needed" and ICMPv6 Packet Too Big answers.
    pub icmp: usize,
}

/// `esp_encap`. Input: two selector bytes (ESP encryption and integrity, AH and its
/// integrity, mode, UDP encapsulation, how the peer receives, whether cleartexts are built
/// from fields, IPv6 outside, IPv6 inside), ports, replay window, SPIs, keys and path MTU from the input, then up to four
/// cleartext packets. Every packet the SA sends must decapsulate on the peer's SA to exactly
/// the cleartext (tunnel mode) or to the same addresses, protocol and payload (transport
/// mode); a panic here is a finding.
pub fn encap(now: Instant, data: &[u8]) -> EncapReached {
    let mut reached = EncapReached::default();
    let mut input = Input::new(data);
    let (s1, s2) = (input.byte(), input.byte());
    let mut key = |n: usize| {
        let mut k = input.take(n).to_vec();
        k.resize(n, 0x5a);
        KeyBytes(k)
    };
    // The choices the SA constructor refuses (no transform, AH without integrity, AH over
    // UDP) are left out, so inputs are not wasted on them: its checks have their own tests.
    let udp = s2 & 0x08 != 0;
    let outer_v6 = s2 & 0x10 != 0;
    // AH over an IPv6 outer header is refused by the SA (not implemented yet).
    let with_ah = s1 & 0x40 != 0 && !udp && !outer_v6;
    let encr = EncrAlgorithm::ALL[usize::from(s1) % EncrAlgorithm::ALL.len()];
    // AES-GCM takes no separate integrity algorithm (the SA refuses one).
    let integ = match encr.is_aead() {
        true => AuthAlgorithm::None,
        false => AuthAlgorithm::ALL[usize::from(s1 >> 3) % AuthAlgorithm::ALL.len()],
    };
    let esp = (s1 & 0x80 == 0 || !with_ah).then(|| EspKeys {
        spi: 0,
        encryption: encr,
        encryption_key: key(encr.keymat_len()),
        authentication: integ,
        authentication_key: key(integ.key_len()),
    });
    let ah_algs = [
        AuthAlgorithm::HmacMd5,
        AuthAlgorithm::HmacSha1,
        AuthAlgorithm::HmacSha256,
    ];
    let ah_integ = ah_algs[usize::from(s2) % ah_algs.len()];
    let ah = with_ah.then(|| AhKeys {
        spi: 0,
        authentication: ah_integ,
        authentication_key: key(ah_integ.key_len()),
    });
    let mode = if s2 & 0x04 != 0 {
        Mode::Transport
    } else {
        Mode::Tunnel
    };
    let encapsulation = if udp {
        SaEncapsulation::Udp {
            local_port: input.u16(),
            peer_port: input.u16(),
        }
    } else {
        SaEncapsulation::Raw
    };
    let mut params = SaParams {
        direction: Direction::Outbound,
        mode,
        esp,
        ah,
        local: if outer_v6 {
            LOCAL6.into()
        } else {
            LOCAL.into()
        },
        peer: if outer_v6 { PEER6.into() } else { PEER.into() },
        encapsulation,
        replay_window: u32::from(input.u16()),
        lifetime: LifetimeLimits::UNLIMITED,
        protected_networks: Vec::new(),
    };
    let (esp_spi, ah_spi) = (input.u32(), input.u32());
    if let Some(e) = &mut params.esp {
        e.spi = esp_spi;
    }
    if let Some(a) = &mut params.ah {
        a.spi = ah_spi;
    }
    let Ok(mut out_sa) = SecurityAssociation::new(params.clone(), now) else {
        return reached;
    };
    params.direction = Direction::Inbound;
    std::mem::swap(&mut params.local, &mut params.peer);
    let Ok(mut in_sa) = SecurityAssociation::new(params, now) else {
        panic!("the inbound twin of a valid outbound SA must be valid too");
    };
    let enc = EncapParams {
        path_mtu: usize::from(input.u16()),
        ip_id: input.u16(),
        icmp_source: Ipv4Addr::new(198, 51, 100, 1),
        icmp_source_v6: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
    };
    let mut rng = StdRng::seed_from_u64(u64::from(s1));
    for _ in 0..4 {
        if input.is_empty() {
            break;
        }
        let inner = if s2 & 0x80 != 0 {
            // Transport mode carries the hosts' own packets, of the outer family.
            let inner_v6 = match mode {
                Mode::Transport => outer_v6,
                Mode::Tunnel => s2 & 0x20 != 0,
            };
            if inner_v6 {
                built_cleartext_v6(&mut input, mode)
            } else {
                built_cleartext(&mut input, mode)
            }
        } else {
            let n = usize::from(input.u16() % 2048);
            input.take(n).to_vec()
        };
        let mut out = vec![0u8; inner.len() + OVERHEAD];
        match out_sa.encap(now, &inner, &enc, &mut rng, &mut out) {
            Ok(EncapOutcome::Send(p) | EncapOutcome::Fragment(p)) => {
                let udp_socket = s2 & 0x40 != 0;
                check_round_trip(&mut in_sa, now, &inner, &out, p, udp_socket, mode);
                reached.round_trips += 1;
            }
            Ok(EncapOutcome::IcmpFragNeeded { len, mtu }) => {
                assert!(len <= out.len() && usize::from(mtu) < enc.path_mtu.max(68) + 1);
                let icmp = Ipv4Packet::new_checked(&out[..len]).expect("ICMP we built parses");
                assert_eq!(icmp.protocol(), IpProtocol::ICMP);
                reached.icmp += 1;
            }
            Ok(EncapOutcome::IcmpPacketTooBig { len, mtu }) => {
                assert!(len <= out.len() && mtu as usize >= ipv6::MIN_MTU);
                let icmp = Ipv6Packet::new_checked(&out[..len]).expect("ICMPv6 we built parses");
                assert_eq!(icmp.next_header(), IpProtocol::ICMPV6);
                assert!(len <= ipv6::MIN_MTU);
                reached.icmp += 1;
            }
            Err(_) => {}
        }
    }
    reached
}

/// A cleartext IPv4 packet from input fields: addresses (the SA's endpoints in transport
/// mode), protocol, flags, and a payload of input bytes.
fn built_cleartext(input: &mut Input<'_>, mode: Mode) -> Vec<u8> {
    let (src, dst) = match mode {
        Mode::Transport => (LOCAL, PEER),
        Mode::Tunnel => (input.u32().into(), input.u32().into()),
    };
    let (protocol, flags, tos) = (input.byte(), input.byte(), input.byte());
    let n = usize::from(input.u16() % 1600);
    let payload = input.take(n);
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: IpProtocol(protocol),
        payload_len: payload.len(),
        ttl: 64,
        tos,
        ident: 0x1234,
        dont_frag: flags & 1 != 0,
        more_frags: flags & 2 != 0,
        frag_offset: if flags & 4 != 0 { 8 } else { 0 },
    };
    let mut p = vec![0u8; 20 + payload.len()];
    if repr.emit(&mut p).is_err() {
        return Vec::new();
    }
    p[20..].copy_from_slice(payload);
    p
}

/// A cleartext IPv6 packet from input fields: addresses (the SA's endpoints in transport
/// mode), next header, traffic class, and a payload of input bytes.
fn built_cleartext_v6(input: &mut Input<'_>, mode: Mode) -> Vec<u8> {
    let (src, dst) = match mode {
        Mode::Transport => (LOCAL6, PEER6),
        Mode::Tunnel => {
            let a = |input: &mut Input<'_>| {
                let (hi, lo) = (input.u32(), input.u32());
                Ipv6Addr::from((0x2001_0db8_u128 << 96) | (u128::from(hi) << 32) | u128::from(lo))
            };
            (a(input), a(input))
        }
    };
    let (next, tc) = (input.byte(), input.byte());
    let n = usize::from(input.u16() % 1600);
    let payload = input.take(n);
    let mut p = vec![0u8; ipv6::HEADER_LEN + payload.len()];
    let repr = Ipv6Repr {
        traffic_class: tc,
        ..Ipv6Repr::new(src, dst, IpProtocol(next), payload.len())
    };
    if repr.emit(&mut p).is_err() {
        return Vec::new();
    }
    p[ipv6::HEADER_LEN..].copy_from_slice(payload);
    p
}

/// The addresses, protocol, header length and total length of a cleartext packet `encap`
/// took (IPv4 or IPv6).
fn inner_fields(inner: &[u8]) -> (IpAddr, IpAddr, IpProtocol, usize, usize) {
    if inner.first().map(|b| b >> 4) == Some(6) {
        let p = Ipv6Packet::new_checked(inner).expect("encap took it");
        let len = p.packet().len();
        (
            p.src_addr().into(),
            p.dst_addr().into(),
            p.next_header(),
            ipv6::HEADER_LEN,
            len,
        )
    } else {
        let p = Ipv4Packet::new_checked(inner).expect("encap took it");
        (
            p.src_addr().into(),
            p.dst_addr().into(),
            p.protocol(),
            p.header_len(),
            usize::from(p.total_len()),
        )
    }
}

/// Decapsulates what `encap` sent (as a raw socket or, for UDP encapsulation or an IPv6 outer
/// header and `udp_socket`, as the socket delivers it) and compares with the cleartext.
fn check_round_trip(
    in_sa: &mut SecurityAssociation,
    now: Instant,
    inner: &[u8],
    out: &[u8],
    p: OuterPacket,
    udp_socket: bool,
    mode: Mode,
) {
    let (src, dst, proto, hdr_len, len) = inner_fields(inner);
    let inner = &inner[..len];
    let (from, to): (IpAddr, IpAddr) = if p.ipv6 {
        (LOCAL6.into(), PEER6.into())
    } else {
        (LOCAL.into(), PEER.into())
    };
    let (mut buf, received) = if udp_socket && (p.udp_payload_offset.is_some() || p.ipv6) {
        // A UDP socket (or a raw IPv6 one) hands over only the payload; leave the headroom
        // transport mode needs to rebuild the IP header.
        let r = p.socket_payload();
        let mut rx = vec![0u8; HEADROOM + r.len()];
        rx[HEADROOM..].copy_from_slice(&out[r]);
        let (src, dst, offset) = (from, to, HEADROOM);
        let r = match p.udp_payload_offset {
            Some(_) => Received::Udp { src, dst, offset },
            None => Received::Esp { src, dst, offset },
        };
        (rx, r)
    } else {
        (out[..p.len].to_vec(), Received::Ip)
    };
    let d = match in_sa.decap(now, &mut buf, received) {
        Ok(d) => d,
        Err(e) => panic!(
            "the peer SA drops our own packet: {e:?} ({mode:?}, {received:?}, cleartext {:02x?})",
            inner
        ),
    };
    let got = &buf[d.inner.clone()];
    match mode {
        Mode::Tunnel => assert_eq!(got, inner, "tunnel-mode round trip"),
        Mode::Transport => {
            let (g_src, g_dst, g_proto, g_hdr, g_len) = inner_fields(got);
            assert_eq!((g_src, g_dst, g_proto), (src, dst, proto));
            assert_eq!(g_len, got.len());
            assert_eq!(&got[g_hdr..], &inner[hdr_len..]);
        }
    }
}

/// How many SAs `esp_decap` picks from.
const DECAP_SAS: u8 = 8;

/// The SAs of `esp_decap`, by the selector byte: ESP-NULL/HMAC-SHA1 tunnel, AES/SHA1 tunnel,
/// AH tunnel, AES-256/SHA-256 + AH bundle, ESP-NULL/SHA1 transport, 3DES without integrity
/// transport over IPv4; ESP-NULL/HMAC-SHA1 tunnel and transport over IPv6 (no selectors, so
/// any inner packet that parses is delivered). Keys are 00 01 02 ...
fn decap_params(i: u8) -> SaParams {
    let key = |n: usize| KeyBytes((0..n as u8).collect());
    let esp = |e: EncrAlgorithm, a: AuthAlgorithm| EspKeys {
        spi: 0x1000,
        encryption: e,
        encryption_key: key(e.keymat_len()),
        authentication: a,
        authentication_key: key(a.key_len()),
    };
    let ah = AhKeys {
        spi: 0x2000,
        authentication: AuthAlgorithm::HmacSha1,
        authentication_key: key(20),
    };
    use AuthAlgorithm as A;
    use EncrAlgorithm as E;
    let (esp, ah, mode) = match i % DECAP_SAS {
        0 => (Some(esp(E::Null, A::HmacSha1)), None, Mode::Tunnel),
        1 => (Some(esp(E::AesCbc128, A::HmacSha1)), None, Mode::Tunnel),
        2 => (None, Some(ah), Mode::Tunnel),
        3 => (
            Some(esp(E::AesCbc256, A::HmacSha256)),
            Some(ah),
            Mode::Tunnel,
        ),
        4 | 7 => (Some(esp(E::Null, A::HmacSha1)), None, Mode::Transport),
        5 => (Some(esp(E::TripleDes, A::None)), None, Mode::Transport),
        _ => (Some(esp(E::Null, A::HmacSha1)), None, Mode::Tunnel),
    };
    let v6 = decap_v6(i);
    SaParams {
        direction: Direction::Inbound,
        mode,
        esp,
        ah,
        local: if v6 { LOCAL6.into() } else { LOCAL.into() },
        peer: if v6 { PEER6.into() } else { PEER.into() },
        encapsulation: SaEncapsulation::Raw,
        replay_window: 64,
        lifetime: LifetimeLimits::UNLIMITED,
        protected_networks: match v6 {
            true => Vec::new(),
            false => vec![ProtectedNetwork {
                local: "0.0.0.0/1".parse().unwrap_or(NetworkSpec::ANY),
                remote: NetworkSpec::ANY,
            }],
        },
    }
}

/// Whether SA `i` of `esp_decap` has IPv6 outer addresses.
fn decap_v6(i: u8) -> bool {
    i % DECAP_SAS >= 6
}

/// `esp_decap`: arbitrary bytes into inbound decapsulation of SAs of several suites, both as
/// a whole IPv4 or IPv6 packet and as a UDP 4500 payload (or, over IPv6, a raw socket's ESP
/// packet). The first byte picks the SA and the
/// framing. Behind an ICV the fuzzer could only get by forging HMACs, so for the ESP-NULL +
/// HMAC-SHA1 suites bit 0x40 of the selector makes the harness re-compute the ICV over
/// whatever the input holds: the fuzzer then drives the replay window, padding check,
/// inner-packet parsing, transport-mode header rebuild and selector check directly. The 3DES
/// suite without integrity reaches decryption and padding the same way. Returns whether the
/// packet was accepted.
pub fn decap(now: Instant, data: &[u8]) -> bool {
    let Some((&sel, rest)) = data.split_first() else {
        return false;
    };
    let Ok(mut sa) = SecurityAssociation::new(decap_params(sel), now) else {
        panic!("the fixed SAs are valid");
    };
    let mut buf = rest.to_vec();
    let v6 = decap_v6(sel);
    let (src, dst): (IpAddr, IpAddr) = match v6 {
        true => (PEER6.into(), LOCAL6.into()),
        false => (PEER.into(), LOCAL.into()),
    };
    let offset = usize::from(sel >> 3 & 0x0f).min(buf.len());
    let received = match (sel & 0x80 != 0, v6 && sel & 0x08 != 0) {
        (false, _) => Received::Ip,
        (true, false) => Received::Udp { src, dst, offset },
        (true, true) => Received::Esp { src, dst, offset },
    };
    if sel & 0x40 != 0 && matches!(sel % DECAP_SAS, 0 | 4 | 6 | 7) {
        reauthenticate(&mut buf, received);
    }
    let before = *sa.counters();
    let accepted = match sa.decap(now, &mut buf, received) {
        Ok(d) => {
            assert!(d.inner.end <= buf.len());
            assert_eq!(sa.counters().packets, before.packets + 1);
            true
        }
        Err(_) => {
            assert_eq!(sa.counters().drops(), before.drops() + 1);
            false
        }
    };
    // Feed it twice: the second time is a replay or the same drop, never a panic.
    let mut again = rest.to_vec();
    let _ = sa.decap(now, &mut again, received);
    accepted
}

/// Writes a valid HMAC-SHA1-96 over the ESP part of `buf` (key 00 01 .. 13, as the params).
fn reauthenticate(buf: &mut [u8], received: Received) {
    let (start, end) = match received {
        Received::Ip if buf.first().map(|b| b >> 4) == Some(6) => {
            match Ipv6Packet::new_checked(&buf[..]) {
                Ok(p) => (ipv6::HEADER_LEN, p.packet().len()),
                Err(_) => return,
            }
        }
        Received::Ip => match Ipv4Packet::new_checked(&buf[..]) {
            Ok(p) => (p.header_len(), usize::from(p.total_len())),
            Err(_) => return,
        },
        Received::Udp { offset, .. } | Received::Esp { offset, .. } => (offset, buf.len()),
    };
    if end < start + 8 + 12 || end > buf.len() {
        return;
    }
    let key: Vec<u8> = (0..20).collect();
    let Ok(integ) = Integrity::new(AuthAlgorithm::HmacSha1, &key) else {
        return;
    };
    let (body, icv) = buf[start..end].split_at_mut(end - start - 12);
    let _ = integ.compute(&[body], icv);
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::test_inputs;

    /// 400 pseudo-random SA parameter sets and cleartexts, half of them built from fields so
    /// that they are valid IPv4: every packet sent decapsulates back to its cleartext (the
    /// harness asserts it), and many do get through.
    #[test]
    fn hundreds_of_encap_decap_round_trips() {
        let mut total = super::EncapReached::default();
        for (n, mut data) in test_inputs(0xe5c, 400, 1200, 0).into_iter().enumerate() {
            if data.len() < 2 {
                continue;
            }
            // Valid cleartexts in half of the cases; ESP in 7 of 8 (bit 7 of s1 clear).
            data[1] |= if n % 2 == 0 { 0x80 } else { 0 };
            let r = super::encap(Instant::now(), &data);
            total.round_trips += r.round_trips;
            total.icmp += r.icmp;
        }
        assert!(total.round_trips >= 100, "{total:?}");
    }

    /// The same with every SA over IPv6 and, in tunnel mode, IPv6 cleartexts built from
    /// fields (transport mode carries the hosts' IPv6 packets): IPv6 gets through too.
    #[test]
    fn ipv6_encap_decap_round_trips() {
        let mut total = super::EncapReached::default();
        for mut data in test_inputs(0xe56, 300, 1200, 0) {
            if data.len() < 2 {
                continue;
            }
            data[1] |= 0x80 | 0x10 | 0x20;
            let r = super::encap(Instant::now(), &data);
            total.round_trips += r.round_trips;
            total.icmp += r.icmp;
        }
        assert!(total.round_trips >= 100, "{total:?}");
    }

    /// 400 pseudo-random packets into the decap harness (half re-authenticated): counters
    /// move by exactly one per packet, nothing panics.
    #[test]
    fn hundreds_of_hostile_packets_into_decap() {
        for (n, mut data) in test_inputs(0xdeca, 400, 200, 0).into_iter().enumerate() {
            if let Some(s) = data.first_mut() {
                *s = (*s & !0x40) | if n % 2 == 0 { 0x40 } else { 0 };
            }
            super::decap(Instant::now(), &data);
        }
    }
}

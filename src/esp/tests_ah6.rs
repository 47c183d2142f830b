//! AH over IPv6 (RFC 4302 §3.3.3.1.2, issue 11 point 3): round trips in tunnel and transport
//! mode, alone and in a bundle with ESP, the 8-byte alignment of the AH header (RFC 4302
//! §2.6), the ICV against one computed by hand, and which header fields it covers.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use cipher::KeyInit;
use hmac::{Hmac, Mac as _};

use super::tests::{ScriptRng, ipv4_packet, key, mtu, pair};
use super::*;
use crate::config::Mode;
use crate::crypto::{AuthAlgorithm, EncrAlgorithm};
use crate::wire::{AhPacket, IpProtocol, Ipv6Packet, Ipv6Repr, ipv6};

const LOCAL6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const PEER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

fn ah_keys(spi: u32, a: AuthAlgorithm) -> AhKeys {
    AhKeys {
        spi,
        authentication: a,
        authentication_key: key(a.key_len(), 5),
    }
}

fn params(mode: Mode, esp: Option<EspKeys>, ah: AhKeys) -> SaParams {
    SaParams {
        direction: Direction::Outbound,
        mode,
        esp,
        ah: Some(ah),
        local: LOCAL6.into(),
        peer: PEER6.into(),
        encapsulation: SaEncapsulation::Raw,
        replay_window: 64,
        lifetime: LifetimeLimits::UNLIMITED,
        protected_networks: vec![],
    }
}

fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, proto: IpProtocol, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; ipv6::HEADER_LEN + payload.len()];
    Ipv6Repr {
        traffic_class: 0x28,
        flow_label: 0xabcde,
        ..Ipv6Repr::new(src, dst, proto, payload.len())
    }
    .emit(&mut p)
    .unwrap();
    p[ipv6::HEADER_LEN..].copy_from_slice(payload);
    p
}

/// AH alone and bundled with ESP, tunnel (IPv6 and IPv4 inner) and transport mode, with
/// 96-bit and 128-bit ICVs: the outer header says AH, the AH header is a multiple of 8 bytes
/// (SHA-256-128 gets 4 bytes of padding), the peer takes the packet back, also after the
/// fields AH does not cover changed on the way (traffic class, flow label, hop limit), and
/// refuses it when a covered one changed (the destination address, a payload byte).
#[test]
fn ah_over_ipv6_round_trips_and_covers_the_right_fields() {
    let now = Instant::now();
    let esp = EspKeys {
        spi: 0x3000,
        encryption: EncrAlgorithm::AesCbc128,
        encryption_key: key(16, 1),
        authentication: AuthAlgorithm::HmacSha1,
        authentication_key: key(20, 2),
    };
    let v6_inner = ipv6_packet(
        "2001:db8:a::7".parse().unwrap(),
        "2001:db8:b::9".parse().unwrap(),
        IpProtocol::UDP,
        &[0x11; 120],
    );
    let v4_inner = ipv4_packet(
        Ipv4Addr::new(198, 51, 100, 7),
        Ipv4Addr::new(203, 0, 113, 9),
        IpProtocol::UDP,
        &[0x22; 90],
        false,
    );
    let transport = ipv6_packet(LOCAL6, PEER6, IpProtocol::TCP, &[0x33; 77]);
    let cases = [
        (Mode::Tunnel, None, AuthAlgorithm::HmacSha1, &v6_inner, 24),
        (Mode::Tunnel, None, AuthAlgorithm::HmacSha256, &v6_inner, 32),
        (Mode::Tunnel, None, AuthAlgorithm::HmacMd5, &v4_inner, 24),
        (
            Mode::Tunnel,
            Some(esp.clone()),
            AuthAlgorithm::HmacSha256,
            &v6_inner,
            32,
        ),
        (
            Mode::Transport,
            None,
            AuthAlgorithm::HmacSha1,
            &transport,
            24,
        ),
        (
            Mode::Transport,
            Some(esp),
            AuthAlgorithm::HmacSha256,
            &transport,
            32,
        ),
    ];
    for (mode, esp, auth, inner, ah_len) in cases {
        let what = format!("{mode:?} esp {} {auth:?}", esp.is_some());
        let p = params(mode, esp.clone(), ah_keys(0x4000, auth));
        let (mut o, _) = pair(p.clone(), now);
        let mut out = vec![0u8; 2000];
        let mut rng = ScriptRng::new(vec![]);
        let Ok(EncapOutcome::Send(op)) = o.encap(now, inner, &mtu(1500), &mut rng, &mut out) else {
            panic!("{what}: sent");
        };
        let pkt = out[..op.len].to_vec();
        let ip = Ipv6Packet::new_checked(&pkt[..]).unwrap();
        assert_eq!(ip.next_header(), IpProtocol::AH, "{what}");
        let ah = AhPacket::new_checked(&pkt[40..]).unwrap();
        assert_eq!(
            ah.header_len(),
            ah_len,
            "{what}: RFC 4302 §2.6 8-byte multiple"
        );
        let expect_next = match (&esp, mode, inner[0] >> 4) {
            (Some(_), ..) => IpProtocol::ESP,
            (None, Mode::Transport, _) => IpProtocol::TCP,
            (None, Mode::Tunnel, 6) => IpProtocol::IPV6,
            (None, Mode::Tunnel, _) => IpProtocol::IPV4,
        };
        assert_eq!(ah.next_header(), expect_next, "{what}");

        let decap = |mut rx: Vec<u8>| {
            let mut i = pair(p.clone(), now).1;
            let r = i.decap(now, &mut rx, Received::Ip);
            r.map(|d| rx[d.inner].to_vec())
        };
        let back = decap(pkt.clone()).unwrap_or_else(|e| panic!("{what}: {e:?}"));
        match mode {
            Mode::Tunnel => assert_eq!(&back, inner, "{what}"),
            Mode::Transport => {
                let g = Ipv6Packet::new_checked(&back[..]).unwrap();
                assert_eq!(g.next_header(), IpProtocol::TCP, "{what}");
                assert_eq!(g.payload(), &inner[40..], "{what}");
            }
        }
        // Mutable in transit (RFC 4302 §3.3.3.1.2.1): traffic class, flow label, hop limit.
        let mut m = pkt.clone();
        m[0] = 0x6f;
        m[1] ^= 0xff;
        m[3] ^= 0x55;
        m[7] = 3;
        assert!(decap(m).is_ok(), "{what}: mutable fields are not covered");
        // Immutable: the destination address, and any byte after the AH header.
        let mut d = pkt.clone();
        d[39] ^= 1;
        assert_eq!(decap(d), Err(DropReason::IcvFailure), "{what}");
        let mut b = pkt.clone();
        let last = b.len() - 1;
        b[last] ^= 0x80;
        assert_eq!(decap(b), Err(DropReason::IcvFailure), "{what}");
        // A padded ICV field of the wrong length is not ours.
        let mut l = pkt.clone();
        l[41] += 2;
        assert_eq!(decap(l), Err(DropReason::Malformed), "{what}");
    }
}

/// The ICV of one AH-over-IPv6 packet computed by hand from RFC 4302 §3.3.3.1.2 and §2 with
/// the `hmac` crate: the IPv6 header with traffic class, flow label and hop limit zeroed,
/// the AH header with the ICV field (and its padding) zeroed, then the inner packet. The
/// encapsulator's ICV (and zero padding) must be exactly that, for HMAC-SHA1-96 and for
/// HMAC-SHA-256-128 (padded to 32 bytes).
#[test]
fn ah_over_ipv6_icv_known_answer() {
    let now = Instant::now();
    let inner = ipv6_packet(
        "2001:db8:a::7".parse().unwrap(),
        "2001:db8:b::9".parse().unwrap(),
        IpProtocol::UDP,
        &[0x44; 21],
    );
    for (auth, field, icv_len) in [
        (AuthAlgorithm::HmacSha1, 12usize, 12usize),
        (AuthAlgorithm::HmacSha256, 20, 16),
    ] {
        let k = ah_keys(0x5151, auth);
        let key_bytes = k.authentication_key.0.clone();
        let (mut o, _) = pair(params(Mode::Tunnel, None, k), now);
        let mut out = vec![0u8; 400];
        let Ok(EncapOutcome::Send(p)) = o.encap(
            now,
            &inner,
            &mtu(1500),
            &mut ScriptRng::new(vec![]),
            &mut out,
        ) else {
            panic!("sent");
        };
        let pkt = &out[..p.len];
        assert_eq!(p.len, 40 + 12 + field + inner.len());
        let mut covered = Vec::new();
        // Version 6, traffic class/flow label 0, payload length, next header 51, hop limit 0.
        covered.extend([0x60, 0, 0, 0]);
        covered.extend(((12 + field + inner.len()) as u16).to_be_bytes());
        covered.extend([51, 0]);
        covered.extend(LOCAL6.octets());
        covered.extend(PEER6.octets());
        // AH: next header 41, payload length in words - 2, reserved, SPI, sequence number 1.
        covered.extend([41, ((12 + field) / 4 - 2) as u8, 0, 0]);
        covered.extend(0x5151u32.to_be_bytes());
        covered.extend(1u32.to_be_bytes());
        covered.extend(vec![0u8; field]);
        covered.extend(&inner);
        let icv = match auth {
            AuthAlgorithm::HmacSha1 => {
                let mut m = <Hmac<sha1::Sha1>>::new_from_slice(&key_bytes).unwrap();
                m.update(&covered);
                m.finalize().into_bytes().to_vec()
            }
            _ => {
                let mut m = <Hmac<sha2::Sha256>>::new_from_slice(&key_bytes).unwrap();
                m.update(&covered);
                m.finalize().into_bytes().to_vec()
            }
        };
        // Everything but the ICV field is the covered bytes with the real header fields.
        assert_eq!(&pkt[52..52 + icv_len], &icv[..icv_len], "{auth:?} ICV");
        assert!(pkt[52 + icv_len..52 + field].iter().all(|b| *b == 0));
        assert_eq!(&pkt[40..52], &covered[40..52], "{auth:?} AH header");
        assert_eq!(&pkt[52 + field..], &inner[..]);
    }
}

/// An inbound AH-over-IPv6 packet with a hop-by-hop header before AH, built by hand: one
/// option whose type says it may change en route (0x3e: its data is covered as zeros) and
/// one that may not (0x1e). The packet verifies with any value in the first option's data
/// and fails with a changed second one (RFC 4302 §3.3.3.1.2.1, RFC 8200 §4.2).
#[test]
fn ah_over_ipv6_covers_extension_headers_before_it() {
    let now = Instant::now();
    let k = ah_keys(0x6161, AuthAlgorithm::HmacSha1);
    let key_bytes = k.authentication_key.0.clone();
    let mut p = params(Mode::Tunnel, None, k);
    p.direction = Direction::Inbound;
    std::mem::swap(&mut p.local, &mut p.peer);
    let inner = ipv6_packet(
        "2001:db8:b::9".parse().unwrap(),
        "2001:db8:a::7".parse().unwrap(),
        IpProtocol::UDP,
        &[0x55; 30],
    );
    // Builds the packet with sequence number `seq`, the options' data as sent (`mutable`,
    // `immutable`) and the ICV over the data the sender saw (`immutable_signed`).
    let build = |seq: u32, mutable: u8, immutable: u8, immutable_signed: u8| {
        let hbh = |m: u8, i: u8| vec![51, 0, 0x3e, 1, m, 0x1e, 1, i];
        let ah_len = 12 + 12;
        let payload_len = 8 + ah_len + inner.len();
        let mut hdr = vec![0x60, 0, 0, 0];
        hdr.extend((payload_len as u16).to_be_bytes());
        hdr.extend([0, 0]);
        hdr.extend(PEER6.octets());
        hdr.extend(LOCAL6.octets());
        let mut ah = vec![41, (ah_len / 4 - 2) as u8, 0, 0];
        ah.extend(0x6161u32.to_be_bytes());
        ah.extend(seq.to_be_bytes());
        let mut covered = hdr.clone();
        covered.extend(hbh(0, immutable_signed));
        covered.extend(&ah);
        covered.extend([0u8; 12]);
        covered.extend(&inner);
        let mut m = <Hmac<sha1::Sha1>>::new_from_slice(&key_bytes).unwrap();
        m.update(&covered);
        let icv = m.finalize().into_bytes();
        let mut pkt = hdr;
        pkt[1] = 0x0c; // a traffic class / flow label and a hop limit, as seen on arrival
        pkt[7] = 57;
        pkt.extend(hbh(mutable, immutable));
        pkt.extend(&ah);
        pkt.extend(&icv[..12]);
        pkt.extend(&inner);
        pkt
    };
    let mut sa = SecurityAssociation::new(p, now).unwrap();
    for (seq, mutable) in [(1, 0u8), (2, 0xee)] {
        let mut rx = build(seq, mutable, 7, 7);
        let d = sa
            .decap(now, &mut rx, Received::Ip)
            .unwrap_or_else(|e| panic!("mutable option data {mutable:#x}: {e:?}"));
        assert_eq!(&rx[d.inner], &inner[..]);
    }
    let mut rx = build(3, 0, 8, 7);
    assert_eq!(
        sa.decap(now, &mut rx, Received::Ip),
        Err(DropReason::IcvFailure)
    );
    assert_eq!(sa.counters().icv_failures, 1);
}

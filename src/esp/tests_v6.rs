//! IPv6 SA tests (issue 11): every inner/outer family combination round-tripping over raw ESP
//! and ESP-in-UDP, transport mode over IPv6, one IPv6 ESP packet against bytes computed by
//! hand from the RFCs, the ICMPv6 Packet Too Big, and hostile IPv6 input dropped and counted.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use super::tests::{LOCAL, PEER, ScriptRng, ipv4_packet, key, mtu, pair};
use super::*;
use crate::config::{KeyBytes, Mode, ProtectedNetwork};
use crate::crypto::{AuthAlgorithm, EncrAlgorithm, Integrity};
use crate::wire::{IpProtocol, Ipv4Packet, Ipv6Packet, Ipv6Repr, UdpPacket, checksum, ipv6};

const LOCAL6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const PEER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
/// Hosts behind the gateways (inner addresses of tunnel mode).
const HOST_A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 7);
const HOST_B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 9);
const ICMP_SOURCE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);

fn esp(spi: u32, e: EncrAlgorithm, a: AuthAlgorithm) -> EspKeys {
    EspKeys {
        spi,
        encryption: e,
        encryption_key: key(e.keymat_len(), 1),
        authentication: a,
        authentication_key: key(a.key_len(), 2),
    }
}

/// Outbound params of an ESP SA between the IPv4 or IPv6 gateways.
fn params6(outer_v6: bool, mode: Mode, keys: EspKeys, encapsulation: SaEncapsulation) -> SaParams {
    let (local, peer) = if outer_v6 {
        (IpAddr::V6(LOCAL6), IpAddr::V6(PEER6))
    } else {
        (IpAddr::V4(LOCAL), IpAddr::V4(PEER))
    };
    SaParams {
        direction: Direction::Outbound,
        mode,
        esp: Some(keys),
        ah: None,
        local,
        peer,
        encapsulation,
        replay_window: 64,
        lifetime: LifetimeLimits::UNLIMITED,
        protected_networks: vec![],
    }
}

/// An IPv6 packet with `payload` after the fixed header (next header `proto`).
fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, proto: IpProtocol, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; ipv6::HEADER_LEN + payload.len()];
    Ipv6Repr {
        traffic_class: 0xb8,
        flow_label: 0x12345,
        ..Ipv6Repr::new(src, dst, proto, payload.len())
    }
    .emit(&mut p)
    .unwrap();
    p[ipv6::HEADER_LEN..].copy_from_slice(payload);
    p
}

/// An ICMPv6 echo request of `len` bytes in all (type 128, RFC 4443 §4.1).
fn echo6(src: Ipv6Addr, dst: Ipv6Addr, len: usize) -> Vec<u8> {
    let mut body: Vec<u8> = (0..len - ipv6::HEADER_LEN).map(|i| i as u8).collect();
    body[0] = 128;
    body[1] = 0;
    ipv6_packet(src, dst, IpProtocol::ICMPV6, &body)
}

fn udp_encap() -> SaEncapsulation {
    SaEncapsulation::Udp {
        local_port: 4500,
        peer_port: 4501,
    }
}

/// The ways the peer can receive `out[..p.len]`: the whole packet (`Received::Ip`) and what a
/// socket delivers (the UDP payload; over IPv6 raw, the ESP packet without the IPv6 header),
/// each behind 40 bytes of headroom.
fn receptions(sa: &SecurityAssociation, out: &[u8], p: OuterPacket) -> Vec<(Vec<u8>, Received)> {
    let (src, dst) = (sa.local(), sa.peer());
    let mut v = vec![(out[..p.len].to_vec(), Received::Ip)];
    let r = p.socket_payload();
    if p.udp_payload_offset.is_some() || p.ipv6 {
        let mut rx = vec![0u8; 40 + r.len()];
        rx[40..].copy_from_slice(&out[r]);
        let offset = 40;
        let received = if p.udp_payload_offset.is_some() {
            Received::Udp { src, dst, offset }
        } else {
            Received::Esp { src, dst, offset }
        };
        v.push((rx, received));
    }
    v
}

/// Every combination of inner family (4, 6), outer family (4, 6), raw or UDP, AES-CBC with
/// HMAC-SHA1 or AES-GCM, in tunnel mode: the outer header is of the SA's family with the
/// right protocol and lengths (and over IPv6 a UDP checksum that verifies), and the peer gets
/// the cleartext back byte for byte however its socket hands the packet over.
#[test]
fn tunnel_round_trips_for_every_family_combination() {
    let now = Instant::now();
    let suites = [
        (EncrAlgorithm::AesCbc128, AuthAlgorithm::HmacSha1),
        (EncrAlgorithm::AesGcm128, AuthAlgorithm::None),
    ];
    let mut checked = 0;
    for outer_v6 in [false, true] {
        for inner_v6 in [false, true] {
            for udp in [false, true] {
                for (e, a) in suites {
                    let enc = if udp {
                        udp_encap()
                    } else {
                        SaEncapsulation::Raw
                    };
                    let what =
                        format!("outer v6 {outer_v6}, inner v6 {inner_v6}, udp {udp}, {e:?}");
                    let (mut o, mut i) =
                        pair(params6(outer_v6, Mode::Tunnel, esp(0x1234, e, a), enc), now);
                    let inner = if inner_v6 {
                        echo6(HOST_A6, HOST_B6, 300)
                    } else {
                        ipv4_packet(
                            Ipv4Addr::new(198, 51, 100, 7),
                            Ipv4Addr::new(203, 0, 113, 9),
                            IpProtocol::UDP,
                            &[7u8; 280],
                            true,
                        )
                    };
                    let mut out = vec![0u8; 2000];
                    let mut rng = ScriptRng::new(vec![]);
                    let p = match o.encap(now, &inner, &mtu(1500), &mut rng, &mut out) {
                        Ok(EncapOutcome::Send(p)) => p,
                        other => panic!("{what}: {other:?}"),
                    };
                    assert_eq!(p.ipv6, outer_v6, "{what}");
                    check_outer(&out[..p.len], p, outer_v6, udp, &what);
                    for (mut rx, received) in receptions(&o, &out, p) {
                        let d = i
                            .decap(now, &mut rx, received)
                            .unwrap_or_else(|e| panic!("{what} {received:?}: {e:?}"));
                        assert_eq!(&rx[d.inner], &inner[..], "{what} {received:?}");
                        checked += 1;
                        // The next reception of the same packet is a replay.
                        i = pair(params6(outer_v6, Mode::Tunnel, esp(0x1234, e, a), enc), now).1;
                    }
                }
            }
        }
    }
    // 16 combinations; each received whole, and over UDP or IPv6 raw also as a socket gives it.
    assert_eq!(checked, 16 + 12);
}

/// The outer header: family, protocol, lengths, and over IPv6 a valid UDP checksum.
fn check_outer(pkt: &[u8], p: OuterPacket, v6: bool, udp: bool, what: &str) {
    let proto = if udp {
        IpProtocol::UDP
    } else {
        IpProtocol::ESP
    };
    if v6 {
        let ip = Ipv6Packet::new_checked(pkt).unwrap();
        assert_eq!(p.ip_header_len, ipv6::HEADER_LEN, "{what}");
        assert_eq!(ip.next_header(), proto, "{what}");
        assert_eq!(usize::from(ip.payload_len()), pkt.len() - 40, "{what}");
        assert_eq!((ip.src_addr(), ip.dst_addr()), (LOCAL6, PEER6), "{what}");
        assert_eq!(ip.hop_limit(), 64, "{what}");
        assert_eq!(p.ip_payload(), 40..p.len, "{what}");
        if udp {
            let u = UdpPacket::new_checked(&pkt[40..]).unwrap();
            assert_ne!(
                u.checksum(),
                0,
                "{what}: RFC 8200 §8.1 forbids a zero UDP checksum"
            );
            let sum = checksum::combine(&[
                checksum::pseudo_header(
                    LOCAL6.into(),
                    PEER6.into(),
                    IpProtocol::UDP,
                    (pkt.len() - 40) as u32,
                ),
                checksum::sum(&pkt[40..]),
            ]);
            assert_eq!(sum, 0, "{what}: the UDP checksum verifies");
            assert_eq!(p.socket_payload(), 48..p.len, "{what}");
        } else {
            assert_eq!(p.socket_payload(), 40..p.len, "{what}");
        }
    } else {
        let ip = Ipv4Packet::new_checked(pkt).unwrap();
        assert!(ip.verify_checksum(), "{what}");
        assert_eq!(ip.protocol(), proto, "{what}");
        assert_eq!(usize::from(ip.total_len()), pkt.len(), "{what}");
        assert_eq!(p.ip_header_len, 20, "{what}");
        if !udp {
            assert_eq!(p.socket_payload(), 0..p.len, "{what}");
        }
    }
}

/// ESP-NULL leaves the trailer readable: its Next Header is 41 for an IPv6 inner packet and
/// 4 for an IPv4 one (RFC 4303 §2.6), over either outer family.
#[test]
fn trailer_next_header_names_the_inner_version() {
    let now = Instant::now();
    for outer_v6 in [false, true] {
        for (inner, next) in [
            (echo6(HOST_A6, HOST_B6, 100), 41u8),
            (
                ipv4_packet(
                    Ipv4Addr::new(198, 51, 100, 7),
                    Ipv4Addr::new(203, 0, 113, 9),
                    IpProtocol::UDP,
                    &[1u8; 50],
                    false,
                ),
                4,
            ),
        ] {
            let keys = esp(0x999, EncrAlgorithm::Null, AuthAlgorithm::HmacSha1);
            let (mut o, _) = pair(
                params6(outer_v6, Mode::Tunnel, keys, SaEncapsulation::Raw),
                now,
            );
            let mut out = vec![0u8; 2000];
            let Ok(EncapOutcome::Send(p)) = o.encap(
                now,
                &inner,
                &mtu(1500),
                &mut ScriptRng::new(vec![]),
                &mut out,
            ) else {
                panic!("sent");
            };
            // ICV 12 bytes at the end, Next Header just before it.
            assert_eq!(out[p.len - 12 - 1], next, "outer v6 {outer_v6}");
            // ESP-NULL: the inner packet follows the 8-byte ESP header in clear.
            let at = p.ip_header_len + 8;
            assert_eq!(&out[at..at + inner.len()], &inner[..]);
        }
    }
}

/// Transport mode over IPv6 keeps the hosts' IPv6 header (next header becomes ESP or UDP,
/// payload length the new one) and the peer restores it, from the received header or rebuilt
/// in the headroom; IPv6 extension headers and fragments are refused with their own errors.
#[test]
fn transport_mode_over_ipv6() {
    let now = Instant::now();
    for udp in [false, true] {
        let enc = if udp {
            udp_encap()
        } else {
            SaEncapsulation::Raw
        };
        let keys = esp(0x4444, EncrAlgorithm::AesCbc256, AuthAlgorithm::HmacSha256);
        let p6 = params6(true, Mode::Transport, keys, enc);
        let (mut o, _) = pair(p6.clone(), now);
        let tcp: Vec<u8> = (0..200).map(|i| (i * 7) as u8).collect();
        let inner = ipv6_packet(LOCAL6, PEER6, IpProtocol::TCP, &tcp);
        let mut out = vec![0u8; 2000];
        let mut rng = ScriptRng::new(vec![]);
        let Ok(EncapOutcome::Send(p)) = o.encap(now, &inner, &mtu(1500), &mut rng, &mut out) else {
            panic!("sent");
        };
        let hdr = Ipv6Packet::new_checked(&out[..p.len]).unwrap();
        assert_eq!(p.ip_header_len, 40);
        assert_eq!(
            hdr.next_header(),
            if udp {
                IpProtocol::UDP
            } else {
                IpProtocol::ESP
            }
        );
        // Traffic class and flow label are the inner header's: transport mode keeps it.
        assert_eq!((hdr.traffic_class(), hdr.flow_label()), (0xb8, 0x12345));
        for (mut rx, received) in receptions(&o, &out, p) {
            let mut i = pair(p6.clone(), now).1;
            let d = i.decap(now, &mut rx, received).unwrap();
            let got = Ipv6Packet::new_checked(&rx[d.inner.clone()]).unwrap();
            assert_eq!(got.next_header(), IpProtocol::TCP, "{received:?}");
            assert_eq!((got.src_addr(), got.dst_addr()), (LOCAL6, PEER6));
            assert_eq!(got.payload(), &tcp[..], "{received:?}");
            assert_eq!(rx[d.inner].len(), inner.len());
        }
        // Hop-by-hop (0), routing (43), destination options (60): not carried.
        for ext in [0u8, 43, 60] {
            let p = ipv6_packet(LOCAL6, PEER6, IpProtocol(ext), &[6, 0, 0, 0, 0, 0, 0, 0]);
            assert_eq!(
                o.encap(now, &p, &mtu(1500), &mut rng, &mut out),
                Err(EncapError::TransportExtensionHeaders),
                "ext {ext}"
            );
        }
        let frag = ipv6_packet(LOCAL6, PEER6, IpProtocol(44), &[6, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(
            o.encap(now, &frag, &mtu(1500), &mut rng, &mut out),
            Err(EncapError::TransportFragment)
        );
        // Not between the SA's endpoints (nor of its family).
        let other = ipv6_packet(HOST_A6, PEER6, IpProtocol::TCP, &tcp);
        assert_eq!(
            o.encap(now, &other, &mtu(1500), &mut rng, &mut out),
            Err(EncapError::TransportAddressMismatch)
        );
        let v4 = ipv4_packet(LOCAL, PEER, IpProtocol::TCP, &tcp, false);
        assert_eq!(
            o.encap(now, &v4, &mtu(1500), &mut rng, &mut out),
            Err(EncapError::TransportAddressMismatch)
        );
        assert_eq!(o.counters().packets, 1);
    }
}

/// Hand-computed bytes of one IPv6 ESP packet (RFC 8200 §3 header, RFC 4303 §2 layout, RFC
/// 3602 AES-128-CBC done block by block with the `aes` crate, RFC 2404 HMAC-SHA1-96 with the
/// `hmac` crate): the encapsulator's output must be exactly these bytes.
#[test]
fn known_answer_ipv6_esp_packet() {
    use aes::Aes128;
    use cipher::{Block, BlockCipherEncrypt, KeyInit};
    use hmac::{Hmac, Mac as _};

    let now = Instant::now();
    let enc_key: Vec<u8> = (0x10..0x20).collect();
    let auth_key: Vec<u8> = (0x40..0x54).collect();
    let iv: [u8; 16] = core::array::from_fn(|i| 0xa0 + i as u8);
    let spi = 0x0000_c0de;
    let keys = EspKeys {
        spi,
        encryption: EncrAlgorithm::AesCbc128,
        encryption_key: KeyBytes(enc_key.clone()),
        authentication: AuthAlgorithm::HmacSha1,
        authentication_key: KeyBytes(auth_key.clone()),
    };
    let (mut o, mut i) = pair(params6(true, Mode::Tunnel, keys, SaEncapsulation::Raw), now);
    // 8 + 40 + 13 = 61 bytes of inner packet: 61 + 2 = 63, so one byte of padding.
    let inner = ipv6_packet(HOST_A6, HOST_B6, IpProtocol::UDP, &[0x5a; 13]);
    assert_eq!(inner.len(), 53);
    let mut out = vec![0u8; 400];
    let mut rng = ScriptRng::new(iv.to_vec());
    let Ok(EncapOutcome::Send(p)) = o.encap(now, &inner, &mtu(1500), &mut rng, &mut out) else {
        panic!("sent");
    };

    // Plaintext: inner (53) + padding 1..9 (9) + pad length 9 + next header 41 = 64 bytes.
    let mut plain = inner.clone();
    plain.extend(1..=9u8);
    plain.extend([9, 41]);
    assert_eq!(plain.len(), 64);
    let aes = Aes128::new_from_slice(&enc_key).unwrap();
    let mut chain = iv;
    let mut ct = Vec::new();
    for block in plain.chunks(16) {
        let mut b = [0u8; 16];
        for k in 0..16 {
            b[k] = block[k] ^ chain[k];
        }
        let mut blk = Block::<Aes128>::from(b);
        aes.encrypt_block(&mut blk);
        chain.copy_from_slice(&blk);
        ct.extend_from_slice(&blk);
    }
    let mut esp_bytes = Vec::new();
    esp_bytes.extend(spi.to_be_bytes());
    esp_bytes.extend(1u32.to_be_bytes());
    esp_bytes.extend(iv);
    esp_bytes.extend(&ct);
    let mut mac = <Hmac<sha1::Sha1>>::new_from_slice(&auth_key).unwrap();
    mac.update(&esp_bytes);
    let full = mac.finalize().into_bytes();
    esp_bytes.extend(&full[..12]);
    // IPv6 header: version 6, traffic class copied (0xb8), flow label 0, payload length,
    // next header 50, hop limit 64, source, destination.
    let mut expected = vec![0x6b, 0x80, 0x00, 0x00];
    expected.extend((esp_bytes.len() as u16).to_be_bytes());
    expected.extend([50, 64]);
    expected.extend(LOCAL6.octets());
    expected.extend(PEER6.octets());
    expected.extend(&esp_bytes);
    assert_eq!(esp_bytes.len(), 8 + 16 + 64 + 12);
    assert_eq!(&out[..p.len], &expected[..]);
    // And the peer takes these bytes back to the inner packet.
    let mut rx = expected.clone();
    let d = i.decap(now, &mut rx, Received::Ip).unwrap();
    assert_eq!(&rx[d.inner], &inner[..]);
}

/// ICMPv6 Packet Too Big (RFC 4443 §3.2) for an IPv6 packet that does not fit: sent from
/// `icmp_source_v6` to the packet's source, type 2 code 0, valid checksum, the MTU that fits
/// exactly, the original quoted up to the 1280-byte minimum; nothing sent, no sequence
/// number used. Below 1280 inside, the announced MTU stays 1280 and a packet of that size is
/// fragmented on the outside instead (RFC 8200 §5).
#[test]
fn ipv6_packet_too_big() {
    let now = Instant::now();
    for outer_v6 in [false, true] {
        let keys = esp(0x5555, EncrAlgorithm::AesCbc128, AuthAlgorithm::HmacSha1);
        let (mut o, _) = pair(params6(outer_v6, Mode::Tunnel, keys, udp_encap()), now);
        let mut rng = ScriptRng::new(vec![]);
        let mut out = vec![0u8; 3000];
        let big = echo6(HOST_A6, HOST_B6, 1500);
        let r = o.encap(now, &big, &mtu(1400), &mut rng, &mut out);
        let Ok(EncapOutcome::IcmpPacketTooBig { len, mtu: m }) = r else {
            panic!("outer v6 {outer_v6}: {r:?}");
        };
        // Exactly the largest that fits: one more byte does not.
        let m = m as usize;
        let fits = echo6(HOST_A6, HOST_B6, m);
        let over = echo6(HOST_A6, HOST_B6, m + 1);
        assert!(o.layout(m, 40).total <= 1400);
        assert!(o.layout(m + 1, 40).total > 1400);
        assert_eq!(len, 1280, "quoted up to the IPv6 minimum MTU");
        let ip = Ipv6Packet::new_checked(&out[..len]).unwrap();
        assert_eq!(ip.src_addr(), ICMP_SOURCE6);
        assert_eq!(ip.dst_addr(), HOST_A6);
        assert_eq!(ip.next_header(), IpProtocol::ICMPV6);
        assert_eq!(usize::from(ip.payload_len()), 1240);
        let icmp = ip.payload();
        assert_eq!(&icmp[..2], &[2, 0]);
        assert_eq!(&icmp[4..8], &(m as u32).to_be_bytes());
        assert_eq!(&icmp[8..], &big[..1232]);
        let sum = checksum::combine(&[
            checksum::pseudo_header(
                ICMP_SOURCE6.into(),
                HOST_A6.into(),
                IpProtocol::ICMPV6,
                1240,
            ),
            checksum::sum(icmp),
        ]);
        assert_eq!(sum, 0, "the ICMPv6 checksum verifies");
        assert_eq!(o.counters().packets, 0);
        assert_eq!(o.esp.as_ref().unwrap().seq, 0, "no sequence number used");
        assert!(matches!(
            o.encap(now, &fits, &mtu(1400), &mut rng, &mut out),
            Ok(EncapOutcome::Send(_))
        ));
        assert!(matches!(
            o.encap(now, &over, &mtu(1400), &mut rng, &mut out),
            Ok(EncapOutcome::IcmpPacketTooBig { .. })
        ));

        // A path that cannot carry 1280 inside: announce 1280, fragment what is not above it.
        let r = o.encap(now, &big, &mtu(1200), &mut rng, &mut out);
        assert!(
            matches!(r, Ok(EncapOutcome::IcmpPacketTooBig { mtu: 1280, .. })),
            "{r:?}"
        );
        let min = echo6(HOST_A6, HOST_B6, 1280);
        let r = o.encap(now, &min, &mtu(1200), &mut rng, &mut out);
        let Ok(EncapOutcome::Fragment(p)) = r else {
            panic!("outer v6 {outer_v6}: {r:?}");
        };
        if !outer_v6 {
            // The outer IPv4 packet must be fragmentable: DF clear.
            assert!(!Ipv4Packet::new_checked(&out[..p.len]).unwrap().dont_frag());
        }

        // No error answers an ICMPv6 error (RFC 4443 §2.4 e): dropped instead.
        let mut err = echo6(HOST_A6, HOST_B6, 1500);
        err[40] = 1; // destination unreachable
        assert_eq!(
            o.encap(now, &err, &mtu(1400), &mut rng, &mut out),
            Err(EncapError::TooBigNoIcmp)
        );
        // Nor a packet from the unspecified address.
        let anon = echo6(Ipv6Addr::UNSPECIFIED, HOST_B6, 1500);
        assert_eq!(
            o.encap(now, &anon, &mtu(1400), &mut rng, &mut out),
            Err(EncapError::TooBigNoIcmp)
        );
    }
    // An IPv4 inner packet with DF over an IPv6 outer still gets the ICMPv4 frag-needed,
    // computed for the 40-byte outer header.
    let keys = esp(0x5556, EncrAlgorithm::AesCbc128, AuthAlgorithm::HmacSha1);
    let (mut o, _) = pair(params6(true, Mode::Tunnel, keys, SaEncapsulation::Raw), now);
    let v4 = ipv4_packet(LOCAL, PEER, IpProtocol::UDP, &[0u8; 1480], true);
    let mut out = vec![0u8; 3000];
    let r = o.encap(now, &v4, &mtu(1500), &mut ScriptRng::new(vec![]), &mut out);
    let Ok(EncapOutcome::IcmpFragNeeded { mtu: m, .. }) = r else {
        panic!("{r:?}");
    };
    assert!(o.layout(usize::from(m), 20).total <= 1500);
    assert!(o.layout(usize::from(m) + 1, 20).total > 1500);
    assert_eq!(o.max_inner_len(1500, 20), usize::from(m));
}

/// Builds the ESP-NULL + HMAC-SHA1-96 packet an SA of `esp(spi, Null, HmacSha1)` accepts,
/// around `payload` with Next Header `next`, padded to 4 bytes (RFC 4303 §2.4): lets a test
/// put any inner bytes behind a valid ICV.
fn esp_null(spi: u32, seq: u32, payload: &[u8], next: u8) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend(spi.to_be_bytes());
    p.extend(seq.to_be_bytes());
    p.extend(payload);
    let pad = (4 - (payload.len() + 2) % 4) % 4;
    p.extend((1..=pad as u8).collect::<Vec<_>>());
    p.extend([pad as u8, next]);
    let integ = Integrity::new(AuthAlgorithm::HmacSha1, &key(20, 2).0).unwrap();
    let mut icv = [0u8; 12];
    integ.compute(&[&p], &mut icv).unwrap();
    p.extend(icv);
    p
}

/// An inbound tunnel SA over IPv6 (raw ESP-NULL/HMAC-SHA1, SPI 0x777) with IPv4 selectors.
fn inbound6() -> SecurityAssociation {
    let mut p = params6(
        true,
        Mode::Tunnel,
        esp(0x777, EncrAlgorithm::Null, AuthAlgorithm::HmacSha1),
        SaEncapsulation::Raw,
    );
    p.direction = Direction::Inbound;
    std::mem::swap(&mut p.local, &mut p.peer);
    p.protected_networks = vec![ProtectedNetwork {
        local: "10.1.0.0/16".parse().unwrap(),
        remote: "10.2.0.0/16".parse().unwrap(),
    }];
    SecurityAssociation::new(p, Instant::now()).unwrap()
}

fn received6(offset: usize) -> Received {
    Received::Esp {
        src: PEER6.into(),
        dst: LOCAL6.into(),
        offset,
    }
}

/// A named inner payload, the Next Header it travels with and what decap must answer.
type Case = (&'static str, Vec<u8>, u8, Result<(), DropReason>);

/// Authenticated but hostile inner IPv6 packets are dropped with their reason and counted:
/// a length the trailer does not cover, a wrong version behind Next Header 41, a header cut
/// short, an address outside the selectors (RFC 4301 §5.2). A well-formed one with TFC
/// padding behind it is trimmed to its own length.
#[test]
fn hostile_ipv6_inner_packets_are_dropped_and_counted() {
    let now = Instant::now();
    let mut sa = inbound6();
    let good4 = ipv4_packet(
        Ipv4Addr::new(10, 2, 0, 5),
        Ipv4Addr::new(10, 1, 0, 5),
        IpProtocol::UDP,
        &[3u8; 20],
        false,
    );
    let v6 = echo6(HOST_A6, HOST_B6, 100);
    let mut long = v6.clone();
    long[4..6].copy_from_slice(&200u16.to_be_bytes()); // claims 200 bytes, 60 follow
    let mut not6 = v6.clone();
    not6[0] = 0x45;
    let cases: Vec<Case> = vec![
        ("IPv4 inside selectors", good4.clone(), 4, Ok(())),
        (
            "IPv6 outside IPv4 selectors",
            v6.clone(),
            41,
            Err(DropReason::SelectorMismatch),
        ),
        (
            "length past trailer",
            long,
            41,
            Err(DropReason::InnerMalformed),
        ),
        (
            "version 4 behind 41",
            not6,
            41,
            Err(DropReason::InnerMalformed),
        ),
        (
            "header cut",
            v6[..39].to_vec(),
            41,
            Err(DropReason::InnerMalformed),
        ),
        ("empty", Vec::new(), 41, Err(DropReason::InnerMalformed)),
        (
            "IPv6 behind 4",
            v6.clone(),
            4,
            Err(DropReason::InnerMalformed),
        ),
        (
            "unknown next",
            v6.clone(),
            42,
            Err(DropReason::UnknownNextHeader),
        ),
    ];
    for (seq, (what, payload, next, want)) in cases.into_iter().enumerate() {
        let esp = esp_null(0x777, seq as u32 + 1, &payload, next);
        let mut rx = vec![0u8; 40];
        rx.extend(&esp);
        let before = *sa.counters();
        let got = sa.decap(now, &mut rx, received6(40));
        match want {
            Ok(()) => assert_eq!(&rx[got.unwrap().inner], &payload[..], "{what}"),
            Err(reason) => {
                assert_eq!(got, Err(reason), "{what}");
                assert_eq!(sa.counters().drops(), before.drops() + 1, "{what}");
                if reason == DropReason::SelectorMismatch {
                    assert_eq!(
                        sa.counters().selector_mismatches,
                        before.selector_mismatches + 1
                    );
                }
            }
        }
    }
    // TFC padding (RFC 4303 §2.7) after a valid IPv6 packet: trimmed to its payload length
    // (then refused by the IPv4 selectors, so test with an SA without selectors).
    let mut p = params6(
        true,
        Mode::Tunnel,
        esp(0x777, EncrAlgorithm::Null, AuthAlgorithm::HmacSha1),
        SaEncapsulation::Raw,
    );
    p.direction = Direction::Inbound;
    std::mem::swap(&mut p.local, &mut p.peer);
    let mut open = SecurityAssociation::new(p, now).unwrap();
    let mut padded = v6.clone();
    padded.extend([0u8; 24]);
    let mut rx = vec![0u8; 40];
    rx.extend(esp_null(0x777, 1, &padded, 41));
    let d = open.decap(now, &mut rx, received6(40)).unwrap();
    assert_eq!(&rx[d.inner], &v6[..]);
}

/// Hostile outer IPv6 packets: a fragment (reassemble first), a chain of nine extension
/// headers, an IPv6 packet at an IPv4 SA and the reverse, mixed-family socket addresses, and
/// every truncation of a valid packet: each dropped with its reason and counted, none panics.
/// A hop-by-hop header before ESP is walked through (RFC 8200 §4).
#[test]
fn hostile_ipv6_outer_packets_are_dropped_and_counted() {
    let now = Instant::now();
    let mut sa = inbound6();
    let inner = ipv4_packet(
        Ipv4Addr::new(10, 2, 0, 5),
        Ipv4Addr::new(10, 1, 0, 5),
        IpProtocol::UDP,
        &[3u8; 20],
        false,
    );
    let esp_pkt = esp_null(0x777, 1, &inner, 4);
    let whole = ipv6_packet(PEER6, LOCAL6, IpProtocol::ESP, &esp_pkt);
    let mut frag = esp_pkt.clone();
    frag.splice(0..0, [50, 0, 0, 0, 0, 0, 0, 1]);
    let frag = ipv6_packet(PEER6, LOCAL6, IpProtocol(44), &frag);
    let mut hbh = esp_null(0x777, 2, &inner, 4);
    hbh.splice(0..0, [50, 0, 1, 4, 0, 0, 0, 0]);
    let hbh = ipv6_packet(PEER6, LOCAL6, IpProtocol::HOP_BY_HOP, &hbh);
    // Nine destination-options headers (PadN), one more than the walk takes.
    let mut nine = esp_pkt.clone();
    for k in 0..9 {
        let next = if k == 0 { 50 } else { 60 };
        nine.splice(0..0, [next, 0, 1, 4, 0, 0, 0, 0]);
    }
    let nine = ipv6_packet(PEER6, LOCAL6, IpProtocol(60), &nine);
    for (what, pkt, want) in [
        ("fragment", frag, DropReason::Fragment),
        ("nine extension headers", nine, DropReason::Malformed),
    ] {
        let mut rx = pkt.clone();
        let before = sa.counters().other_drops;
        assert_eq!(sa.decap(now, &mut rx, Received::Ip), Err(want), "{what}");
        assert_eq!(sa.counters().other_drops, before + 1);
    }
    // Mixed-family addresses from a socket.
    let mut rx = esp_pkt.clone();
    let mixed = Received::Udp {
        src: PEER6.into(),
        dst: LOCAL.into(),
        offset: 0,
    };
    assert_eq!(sa.decap(now, &mut rx, mixed), Err(DropReason::Malformed));
    // An IPv4 outer packet at this IPv6 SA, and this IPv6 packet at an IPv4 SA.
    let v4_outer = ipv4_packet(PEER, LOCAL, IpProtocol::ESP, &esp_pkt, false);
    assert_eq!(
        sa.decap(now, &mut v4_outer.clone(), Received::Ip),
        Err(DropReason::WrongProtocol)
    );
    let mut p4 = params6(
        false,
        Mode::Tunnel,
        esp(0x777, EncrAlgorithm::Null, AuthAlgorithm::HmacSha1),
        SaEncapsulation::Raw,
    );
    p4.direction = Direction::Inbound;
    let mut sa4 = SecurityAssociation::new(p4, now).unwrap();
    assert_eq!(
        sa4.decap(now, &mut whole.clone(), Received::Ip),
        Err(DropReason::WrongProtocol)
    );
    // Every truncation of the valid packet is a counted drop, never a panic.
    for n in 0..whole.len() {
        let before = sa.counters().drops();
        assert!(
            sa.decap(now, &mut whole[..n].to_vec(), Received::Ip)
                .is_err(),
            "{n}"
        );
        assert_eq!(sa.counters().drops(), before + 1);
    }
    // The whole packet goes through (received with its IPv6 header), and one with a
    // hop-by-hop header before ESP.
    let mut rx = whole.clone();
    let d = sa.decap(now, &mut rx, Received::Ip).unwrap();
    assert_eq!(&rx[d.inner], &inner[..]);
    let mut rx = hbh.clone();
    let d = sa.decap(now, &mut rx, Received::Ip).unwrap();
    assert_eq!(&rx[d.inner], &inner[..]);
    // In transport mode the extension headers would have to be rebuilt: refused.
    let mut pt = params6(
        true,
        Mode::Transport,
        esp(0x777, EncrAlgorithm::Null, AuthAlgorithm::HmacSha1),
        SaEncapsulation::Raw,
    );
    pt.direction = Direction::Inbound;
    std::mem::swap(&mut pt.local, &mut pt.peer);
    let mut st = SecurityAssociation::new(pt, now).unwrap();
    let mut t = esp_null(0x777, 1, &[9u8; 30], 17);
    t.splice(0..0, [50, 0, 1, 4, 0, 0, 0, 0]);
    let mut t = ipv6_packet(PEER6, LOCAL6, IpProtocol::HOP_BY_HOP, &t);
    assert_eq!(
        st.decap(now, &mut t, Received::Ip),
        Err(DropReason::Unsupported)
    );
}

/// SA construction with IPv6 addresses: ESP and AH are built, the families must match.
#[test]
fn ipv6_sa_construction() {
    let now = Instant::now();
    let keys = esp(0x1000, EncrAlgorithm::AesGcm256, AuthAlgorithm::None);
    let p = params6(true, Mode::Tunnel, keys.clone(), udp_encap());
    let sa = SecurityAssociation::new(p.clone(), now).unwrap();
    assert_eq!(sa.local(), IpAddr::V6(LOCAL6));
    assert_eq!(sa.peer(), IpAddr::V6(PEER6));
    assert!(sa.outer_is_ipv6());
    let mut mixed = p.clone();
    mixed.peer = IpAddr::V4(PEER);
    assert_eq!(
        SecurityAssociation::new(mixed, now).unwrap_err(),
        SaError::MixedFamilies
    );
    let mut ah = params6(true, Mode::Tunnel, keys, SaEncapsulation::Raw);
    ah.ah = Some(AhKeys {
        spi: 0x2000,
        authentication: AuthAlgorithm::HmacSha1,
        authentication_key: key(20, 3),
    });
    assert!(SecurityAssociation::new(ah, now).is_ok());
}

/// The batch path gives the same bytes as one-by-one encapsulation for IPv6 inner and outer
/// packets (same IVs), and `decap_batch` takes them back.
#[test]
fn batch_paths_carry_ipv6() {
    let now = Instant::now();
    for outer_v6 in [false, true] {
        let keys = esp(0x3333, EncrAlgorithm::AesCbc128, AuthAlgorithm::HmacSha1);
        let p = params6(outer_v6, Mode::Tunnel, keys, udp_encap());
        let (mut single, _) = pair(p.clone(), now);
        let (mut batch, mut inb) = pair(p, now);
        let inners: Vec<Vec<u8>> = (0..5)
            .map(|k| echo6(HOST_A6, HOST_B6, 100 + 97 * k))
            .collect();
        let mut expect = Vec::new();
        let mut rng = ScriptRng::new(vec![]);
        for inn in &inners {
            let mut out = vec![0u8; 2000];
            let p = super::tests::sent(
                single
                    .encap(now, inn, &mtu(1500), &mut rng, &mut out)
                    .unwrap(),
            );
            expect.push(out[..p.len].to_vec());
        }
        let mut outs = vec![vec![0u8; 2000]; inners.len()];
        let mut jobs: Vec<EncapJob> = inners
            .iter()
            .zip(outs.iter_mut())
            .map(|(inn, out)| EncapJob::new(inn, out, 7))
            .collect();
        batch.encap_batch(now, &mut jobs, &mtu(1500), &mut ScriptRng::new(vec![]));
        let lens: Vec<usize> = jobs
            .iter()
            .map(|j| super::tests::sent(j.result.unwrap()).len)
            .collect();
        drop(jobs);
        for (k, out) in outs.iter().enumerate() {
            assert_eq!(&out[..lens[k]], &expect[k][..], "outer v6 {outer_v6} #{k}");
        }
        let mut bufs: Vec<Vec<u8>> = expect.clone();
        let mut jobs: Vec<DecapJob> = bufs
            .iter_mut()
            .map(|b| DecapJob::new(b, Received::Ip))
            .collect();
        inb.decap_batch(now, &mut jobs);
        for (k, j) in jobs.iter().enumerate() {
            let d = j.result.clone().unwrap();
            assert_eq!(d.sequence_number, k as u32 + 1);
        }
        drop(jobs);
        for (k, b) in bufs.iter().enumerate() {
            // The inner packet sits after the outer header, UDP, ESP header and IV.
            let at = if outer_v6 { 40 } else { 20 } + 8 + 8 + 16;
            assert_eq!(&b[at..at + inners[k].len()], &inners[k][..], "#{k}");
        }
    }
}

/// RFC 4301 §5.2 with IPv6 traffic selectors: an inbound inner IPv6 packet from the remote
/// network to the local one is delivered; one from another IPv6 network, to another local
/// address, or an IPv4 packet, is dropped as a selector mismatch and counted as one.
#[test]
fn ipv6_selectors_refuse_the_wrong_networks() {
    let now = Instant::now();
    let mut p = params6(
        false,
        Mode::Tunnel,
        esp(0x777, EncrAlgorithm::Null, AuthAlgorithm::HmacSha1),
        SaEncapsulation::Raw,
    );
    p.direction = Direction::Inbound;
    std::mem::swap(&mut p.local, &mut p.peer);
    p.protected_networks = vec![ProtectedNetwork {
        local: "2001:db8:b::/48".parse().unwrap(),
        remote: "2001:db8:a::/48".parse().unwrap(),
    }];
    let mut sa = SecurityAssociation::new(p, now).unwrap();
    let stranger: Ipv6Addr = "2001:db8:c::1".parse().unwrap();
    let v4 = ipv4_packet(
        Ipv4Addr::new(198, 51, 100, 7),
        Ipv4Addr::new(203, 0, 113, 9),
        IpProtocol::UDP,
        &[1u8; 20],
        false,
    );
    let cases = [
        (echo6(HOST_A6, HOST_B6, 80), 41, true),
        (echo6(stranger, HOST_B6, 80), 41, false),
        (echo6(HOST_A6, stranger, 80), 41, false),
        (echo6(HOST_B6, HOST_A6, 80), 41, false),
        (v4, 4, false),
    ];
    for (seq, (inner, next, ok)) in cases.into_iter().enumerate() {
        let mut rx = vec![0u8; 20];
        rx.extend(esp_null(0x777, seq as u32 + 1, &inner, next));
        let received = Received::Udp {
            src: PEER.into(),
            dst: LOCAL.into(),
            offset: 20,
        };
        let before = sa.counters().selector_mismatches;
        let r = sa.decap(now, &mut rx, received);
        if ok {
            assert_eq!(&rx[r.unwrap().inner], &inner[..]);
        } else {
            assert_eq!(r, Err(DropReason::SelectorMismatch), "#{seq}");
            assert_eq!(sa.counters().selector_mismatches, before + 1);
        }
    }
    assert_eq!(sa.counters().packets, 1);
}

//! SA tests: RFC 3602 ESP packet cases #5-#8 through encap and decap, every suite and mode
//! round-tripping, and every drop reason counted.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::*;
use crate::config::{KeyBytes, Mode, NetworkSpec, ProtectedNetwork};
use crate::crypto::kat::hex;
use crate::crypto::{AuthAlgorithm, EncrAlgorithm, Integrity};
use crate::wire::{IpProtocol, Ipv4Fragmenter, Ipv4Packet, Ipv4Repr};

/// Replays a fixed byte string as "randomness" (for known-answer IVs), then counts up.
pub(super) struct ScriptRng {
    script: Vec<u8>,
    at: usize,
}

impl ScriptRng {
    pub(super) fn new(script: Vec<u8>) -> Self {
        Self { script, at: 0 }
    }
}

impl rand::TryRng for ScriptRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for d in dst {
            *d = self.script.get(self.at).copied().unwrap_or(self.at as u8);
            self.at += 1;
        }
        Ok(())
    }
}

impl rand::TryCryptoRng for ScriptRng {}

pub(super) const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub(super) const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

pub(super) fn key(len: usize, seed: u8) -> KeyBytes {
    KeyBytes((0..len).map(|i| seed.wrapping_add(i as u8 * 3)).collect())
}

fn esp_keys(spi: u32, e: EncrAlgorithm, a: AuthAlgorithm) -> EspKeys {
    EspKeys {
        spi,
        encryption: e,
        encryption_key: key(e.keymat_len(), 1),
        authentication: a,
        authentication_key: key(a.key_len(), 2),
    }
}

pub(super) fn params(
    dir: Direction,
    mode: Mode,
    esp: Option<EspKeys>,
    ah: Option<AhKeys>,
) -> SaParams {
    let (local, peer) = match dir {
        Direction::Outbound => (LOCAL, PEER),
        Direction::Inbound => (PEER, LOCAL),
    };
    SaParams {
        direction: dir,
        mode,
        esp,
        ah,
        local: IpAddr::V4(local),
        peer: IpAddr::V4(peer),
        encapsulation: SaEncapsulation::Raw,
        replay_window: 64,
        lifetime: LifetimeLimits::UNLIMITED,
        protected_networks: vec![],
    }
}

/// An outbound/inbound pair with the same keys.
pub(super) fn pair(mut p: SaParams, now: Instant) -> (SecurityAssociation, SecurityAssociation) {
    p.direction = Direction::Outbound;
    let out = SecurityAssociation::new(p.clone(), now).unwrap();
    p.direction = Direction::Inbound;
    std::mem::swap(&mut p.local, &mut p.peer);
    let inb = SecurityAssociation::new(p, now).unwrap();
    (out, inb)
}

pub(super) fn ipv4_packet(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: IpProtocol,
    payload: &[u8],
    df: bool,
) -> Vec<u8> {
    let mut p = vec![0u8; 20 + payload.len()];
    Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: proto,
        payload_len: payload.len(),
        ttl: 64,
        tos: 0,
        ident: 0x4242,
        dont_frag: df,
        more_frags: false,
        frag_offset: 0,
    }
    .emit(&mut p)
    .unwrap();
    p[20..].copy_from_slice(payload);
    p
}

pub(super) fn mtu(path_mtu: usize) -> EncapParams {
    EncapParams {
        path_mtu,
        ip_id: 7,
        icmp_source: Ipv4Addr::new(198, 51, 100, 1),
        icmp_source_v6: "2001:db8:1::1".parse().unwrap(),
    }
}

pub(super) fn sent(o: EncapOutcome) -> OuterPacket {
    match o {
        EncapOutcome::Send(p) => p,
        other => panic!("expected Send, got {other:?}"),
    }
}

/// RFC 3602 §4 cases #5-#8: the ESP part of our output must equal the RFC's packet
/// byte for byte (SPI, sequence number, IV, ciphertext with 1,2,3... padding), and decap of
/// that packet must give the inner packet back.
#[test]
fn rfc3602_esp_packet_cases_5_to_8() {
    let now = Instant::now();
    struct Case {
        name: &'static str,
        mode: Mode,
        key: &'static str,
        spi: u32,
        seq: u32,
        iv: &'static str,
        payload: &'static str,
        esp: &'static str,
    }
    let cases = [
        Case {
            name: "#5 transport ICMP 64 bytes",
            mode: Mode::Transport,
            key: "90d382b410eeba7ad938c46cec1a82bf",
            spi: 0x4321,
            seq: 1,
            iv: "e96e8c08ab465763fd098d45dd3ff893",
            payload: "08000ebda70a00008e9c083db95b070008090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637",
            esp: "0000432100000001e96e8c08ab465763fd098d45dd3ff893f663c25d325c18c6a9453e194e120849a4870b66cc6b9965330013b4898dc856a4699e523a55db080b59ec3a8e4b7e52775b07d1db34ed9c538ab50c551b874aa269add047ad2d5913ac19b7cfbad4a6",
        },
        Case {
            name: "#6 transport ICMP 28 bytes",
            mode: Mode::Transport,
            key: "90d382b410eeba7ad938c46cec1a82bf",
            spi: 0x4321,
            seq: 8,
            iv: "69d08df7d203329db093fc4924e5bd80",
            payload: "0800b5e8a80a0500a69c083d0b660e00777777777777777777777777",
            esp: "000043210000000869d08df7d203329db093fc4924e5bd80f51995881ec4e0c4488987ce742e8109689bb379d2d750c0d915dca346a89f75",
        },
        Case {
            name: "#7 tunnel 84-byte IPv4",
            mode: Mode::Tunnel,
            key: "0123456789abcdef0123456789abcdef",
            spi: 0x8765,
            seq: 2,
            iv: "f4e765244f6407adf13dc1380f673f37",
            payload: "45000054090400004001f988c0a87b03c0a87bc808009f76a90a0100b49c083d02a2040008090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637",
            esp: "0000876500000002f4e765244f6407adf13dc1380f673f37773b5241a4c449225e4f3ce5ed611b0c237ca96cf74a93013c1b0ea1a0cf70f8e4ecaec78ac53aad7a0f022b859243c647752e94a859352b8a4d4d2decd136e5c177f132ad3fbfb2201ac9904c74ee0a109e0ca1e4dfe9d5a100b842f1c22f0d",
        },
        Case {
            name: "#8 tunnel 68-byte IPv4",
            mode: Mode::Tunnel,
            key: "0123456789abcdef0123456789abcdef",
            spi: 0x8765,
            seq: 5,
            iv: "85d47224b5f3dd5d2101d4ea8dffab22",
            payload: "45000044090c00004001f990c0a87b03c0a87bc80800d63caa0a0200c69c083da3de0300ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            esp: "000087650000000585d47224b5f3dd5d2101d4ea8dffab2215b92683819596a8047232cc00f7048fe45318e11f8a0f62ede3c3fc61203bb50f980a08c9843fd3a1b06d5c07ff9639b7eb7dfb3512e5de435e7207ed971ef3d2726d9b5ef6affc6d17a0decbb13892",
        },
    ];
    for c in cases {
        let mut p = params(
            Direction::Outbound,
            c.mode,
            Some(EspKeys {
                spi: c.spi,
                encryption: EncrAlgorithm::AesCbc128,
                encryption_key: KeyBytes(hex(c.key)),
                authentication: AuthAlgorithm::None,
                authentication_key: KeyBytes(vec![]),
            }),
            None,
        );
        p.replay_window = 0;
        let (mut out_sa, mut in_sa) = pair(p, now);
        out_sa.esp.as_mut().unwrap().seq = c.seq - 1;
        let inner = match c.mode {
            Mode::Tunnel => hex(c.payload),
            Mode::Transport => ipv4_packet(LOCAL, PEER, IpProtocol::ICMP, &hex(c.payload), false),
        };
        let mut rng = ScriptRng::new(hex(c.iv));
        let mut buf = vec![0u8; 2000];
        let o = sent(
            out_sa
                .encap(now, &inner, &mtu(1500), &mut rng, &mut buf)
                .unwrap(),
        );
        let outer = Ipv4Packet::new_checked(&buf[..o.len]).unwrap();
        assert!(outer.verify_checksum(), "{}", c.name);
        assert_eq!(outer.protocol(), IpProtocol::ESP);
        assert_eq!(outer.payload(), &hex(c.esp)[..], "{}", c.name);
        let d = in_sa.decap(now, &mut buf[..o.len], Received::Ip).unwrap();
        assert_eq!(&buf[d.inner], &inner[..], "{} decap", c.name);
        assert_eq!(d.sequence_number, c.seq);
    }
}

fn all_suites() -> Vec<(Option<EspKeys>, Option<AhKeys>)> {
    let mut v = vec![];
    for e in EncrAlgorithm::ALL {
        for a in AuthAlgorithm::ALL {
            if e == EncrAlgorithm::Null && a == AuthAlgorithm::None
                || e.is_aead() && a != AuthAlgorithm::None
            {
                continue;
            }
            v.push((Some(esp_keys(1000, e, a)), None));
        }
    }
    for a in [
        AuthAlgorithm::HmacMd5,
        AuthAlgorithm::HmacSha1,
        AuthAlgorithm::HmacSha256,
    ] {
        let ah = AhKeys {
            spi: 2000,
            authentication: a,
            authentication_key: key(a.key_len(), 9),
        };
        v.push((None, Some(ah.clone())));
        v.push((
            Some(esp_keys(
                1001,
                EncrAlgorithm::AesCbc256,
                AuthAlgorithm::HmacSha256,
            )),
            Some(ah),
        ));
    }
    v
}

#[test]
fn every_suite_mode_and_encapsulation_round_trips() {
    let now = Instant::now();
    let mut rng = ScriptRng::new(vec![]);
    for (esp, ah) in all_suites() {
        for mode in [Mode::Tunnel, Mode::Transport] {
            for udp in [false, true] {
                if udp && ah.is_some() {
                    continue;
                }
                let mut p = params(Direction::Outbound, mode, esp.clone(), ah.clone());
                if udp {
                    p.encapsulation = SaEncapsulation::Udp {
                        local_port: 4500,
                        peer_port: 4500,
                    };
                }
                let (mut o, mut i) = pair(p, now);
                for len in [0usize, 1, 13, 64, 333, 1400] {
                    let payload: Vec<u8> = (0..len).map(|b| b as u8).collect();
                    let inner = match mode {
                        Mode::Tunnel => ipv4_packet(
                            Ipv4Addr::new(198, 51, 100, 7),
                            Ipv4Addr::new(203, 0, 113, 9),
                            IpProtocol::UDP,
                            &payload,
                            true,
                        ),
                        Mode::Transport => {
                            ipv4_packet(LOCAL, PEER, IpProtocol::UDP, &payload, true)
                        }
                    };
                    let mut buf = vec![0u8; 2000];
                    let what = format!(
                        "{:?} {:?} {mode:?} udp={udp} len={len}",
                        o.esp_encryption(),
                        o.ah_authentication()
                    );
                    let op = sent(
                        o.encap(now, &inner, &mtu(1600), &mut rng, &mut buf)
                            .unwrap(),
                    );
                    let outer = Ipv4Packet::new_checked(&buf[..op.len]).unwrap();
                    assert!(outer.verify_checksum(), "{what}");
                    assert_eq!(outer.src_addr(), LOCAL);
                    assert_eq!(outer.dst_addr(), PEER);
                    assert!(outer.dont_frag(), "DF copied: {what}");
                    let d = if udp {
                        assert_eq!(outer.protocol(), IpProtocol::UDP);
                        let off = op.udp_payload_offset.unwrap();
                        // Over a UDP socket the daemon gets only the payload; give it 20
                        // bytes of headroom as transport mode needs.
                        let mut rx = vec![0u8; 20 + op.len - off];
                        rx[20..].copy_from_slice(&buf[off..op.len]);
                        let d = i
                            .decap(
                                now,
                                &mut rx,
                                Received::Udp {
                                    src: LOCAL.into(),
                                    dst: PEER.into(),
                                    offset: 20,
                                },
                            )
                            .unwrap_or_else(|e| panic!("{what}: {e}"));
                        let got = &rx[d.inner.clone()];
                        if mode == Mode::Transport {
                            // The IP header is rebuilt from the UDP datagram's addresses;
                            // identification and flags of the original are not carried.
                            assert_eq!(&got[20..], &inner[20..], "{what}");
                            assert_eq!(&got[9..10], &inner[9..10], "{what}");
                            assert_eq!(&got[12..20], &inner[12..20], "{what}");
                        } else {
                            assert_eq!(got, &inner[..], "{what}");
                        }
                        // And the same packet as a raw socket would deliver it: a replay now.
                        assert_eq!(
                            i.decap(now, &mut buf[..op.len], Received::Ip),
                            Err(DropReason::Replayed),
                            "{what}"
                        );
                        d
                    } else {
                        let d = i
                            .decap(now, &mut buf[..op.len], Received::Ip)
                            .unwrap_or_else(|e| panic!("{what}: {e}"));
                        assert_eq!(&buf[d.inner.clone()], &inner[..], "{what}");
                        d
                    };
                    assert!(d.sequence_number > 0);
                }
                assert_eq!(o.counters().packets, 6);
                assert_eq!(i.counters().packets, 6);
                assert_eq!(o.counters().bytes, i.counters().bytes);
            }
        }
    }
}

#[test]
fn refuses_bad_sa_parameters() {
    let now = Instant::now();
    let bad = |p: SaParams| SecurityAssociation::new(p, now).unwrap_err();
    let p = params(
        Direction::Outbound,
        Mode::Tunnel,
        Some(esp_keys(1000, EncrAlgorithm::Null, AuthAlgorithm::None)),
        None,
    );
    assert_eq!(bad(p), SaError::EspNullNull);
    assert_eq!(
        bad(params(Direction::Outbound, Mode::Tunnel, None, None)),
        SaError::NoTransform
    );
    let mut k = esp_keys(1000, EncrAlgorithm::AesCbc128, AuthAlgorithm::HmacSha1);
    k.encryption_key = key(15, 0);
    assert!(matches!(
        bad(params(Direction::Outbound, Mode::Tunnel, Some(k), None)),
        SaError::KeyLength {
            expected: 16,
            got: 15,
            ..
        }
    ));
    let k = esp_keys(255, EncrAlgorithm::AesCbc128, AuthAlgorithm::HmacSha1);
    assert_eq!(
        bad(params(Direction::Outbound, Mode::Tunnel, Some(k), None)),
        SaError::ReservedSpi(255)
    );
    let ah = AhKeys {
        spi: 300,
        authentication: AuthAlgorithm::HmacSha1,
        authentication_key: key(20, 0),
    };
    let mut p = params(Direction::Outbound, Mode::Tunnel, None, Some(ah));
    p.encapsulation = SaEncapsulation::Udp {
        local_port: 4500,
        peer_port: 4500,
    };
    assert_eq!(bad(p), SaError::AhOverUdp);
    let mut p = params(
        Direction::Outbound,
        Mode::Tunnel,
        Some(esp_keys(1000, EncrAlgorithm::Null, AuthAlgorithm::HmacSha1)),
        None,
    );
    p.peer = "2001:db8::1".parse().unwrap();
    assert_eq!(bad(p), SaError::MixedFamilies);
}

fn aes_sha1() -> SaParams {
    params(
        Direction::Outbound,
        Mode::Tunnel,
        Some(esp_keys(
            1000,
            EncrAlgorithm::AesCbc128,
            AuthAlgorithm::HmacSha1,
        )),
        None,
    )
}

fn one_packet(o: &mut SecurityAssociation, inner: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 2000];
    let mut rng = ScriptRng::new(vec![]);
    let p = sent(
        o.encap(Instant::now(), inner, &mtu(1500), &mut rng, &mut buf)
            .unwrap(),
    );
    buf.truncate(p.len);
    buf
}

fn cleartext() -> Vec<u8> {
    ipv4_packet(
        Ipv4Addr::new(198, 51, 100, 7),
        Ipv4Addr::new(203, 0, 113, 9),
        IpProtocol::ICMP,
        &[8, 0, 0, 0, 1, 2, 3, 4],
        false,
    )
}

#[test]
fn icv_failure_and_replay_are_counted_and_do_not_move_the_window() {
    let now = Instant::now();
    let (mut o, mut i) = pair(aes_sha1(), now);
    let p1 = one_packet(&mut o, &cleartext());
    let p2 = one_packet(&mut o, &cleartext());
    let mut forged = p2.clone();
    let n = forged.len();
    forged[n - 1] ^= 0x80;
    assert_eq!(
        i.decap(now, &mut forged, Received::Ip),
        Err(DropReason::IcvFailure)
    );
    assert_eq!(i.counters().icv_failures, 1);
    // The forged packet did not commit sequence number 2.
    assert!(i.decap(now, &mut p2.clone(), Received::Ip).is_ok());
    assert!(i.decap(now, &mut p1.clone(), Received::Ip).is_ok());
    assert_eq!(
        i.decap(now, &mut p1.clone(), Received::Ip),
        Err(DropReason::Replayed)
    );
    assert_eq!(i.counters().replay_drops, 1);
    assert_eq!(i.counters().packets, 2);
    // Wrong key on the receiver: every packet an ICV failure.
    let mut p = aes_sha1();
    p.direction = Direction::Inbound;
    std::mem::swap(&mut p.local, &mut p.peer);
    p.esp.as_mut().unwrap().authentication_key = key(20, 77);
    let mut wrong = SecurityAssociation::new(p, now).unwrap();
    for _ in 0..3 {
        let mut pk = one_packet(&mut o, &cleartext());
        assert_eq!(
            wrong.decap(now, &mut pk, Received::Ip),
            Err(DropReason::IcvFailure)
        );
    }
    assert_eq!(wrong.counters().icv_failures, 3);
}

/// Re-authenticates an ESP-NULL packet after the test changed its trailer.
fn reauth(pk: &mut [u8], key: &KeyBytes) {
    let i = Integrity::new(AuthAlgorithm::HmacSha1, &key.0).unwrap();
    let n = pk.len();
    let (body, icv) = pk[20..].split_at_mut(n - 20 - 12);
    i.compute(&[body], icv).unwrap();
}

#[test]
fn bad_padding_bad_pad_length_and_next_header_are_counted() {
    let now = Instant::now();
    let p = params(
        Direction::Outbound,
        Mode::Tunnel,
        Some(esp_keys(1000, EncrAlgorithm::Null, AuthAlgorithm::HmacSha1)),
        None,
    );
    let akey = p.esp.as_ref().unwrap().authentication_key.clone();
    let (mut o, mut i) = pair(p, now);
    // 28-byte inner + 2 = 30 -> 2 pad bytes: trailer is 01 02 02 04 before the ICV.
    let good = one_packet(&mut o, &cleartext());
    let n = good.len();
    let trailer = n - 12 - 4;
    assert_eq!(&good[trailer..trailer + 4], &[1, 2, 2, 4]);

    let mut pk = one_packet(&mut o, &cleartext());
    pk[trailer + 1] = 9;
    reauth(&mut pk, &akey);
    assert_eq!(
        i.decap(now, &mut pk, Received::Ip),
        Err(DropReason::BadPadding)
    );
    assert_eq!(i.counters().padding_errors, 1);

    let mut pk = one_packet(&mut o, &cleartext());
    pk[trailer + 2] = 200;
    reauth(&mut pk, &akey);
    assert_eq!(
        i.decap(now, &mut pk, Received::Ip),
        Err(DropReason::BadPadLength)
    );
    assert_eq!(i.counters().padding_errors, 2);

    let mut pk = one_packet(&mut o, &cleartext());
    pk[trailer + 3] = 6;
    reauth(&mut pk, &akey);
    assert_eq!(
        i.decap(now, &mut pk, Received::Ip),
        Err(DropReason::UnknownNextHeader)
    );

    let mut pk = one_packet(&mut o, &cleartext());
    pk[trailer + 3] = 59;
    reauth(&mut pk, &akey);
    assert_eq!(i.decap(now, &mut pk, Received::Ip), Err(DropReason::Dummy));
    assert_eq!(i.counters().other_drops, 2);
    assert_eq!(i.counters().packets, 0);
    let mut pk = good.clone();
    assert!(i.decap(now, &mut pk, Received::Ip).is_ok());
}

#[test]
fn selector_mismatch_is_dropped_and_counted() {
    let now = Instant::now();
    let mut p = aes_sha1();
    p.protected_networks = vec![ProtectedNetwork {
        local: "203.0.113.0/24".parse().unwrap(),
        remote: "198.51.100.0/24".parse().unwrap(),
    }];
    // Sender side: local/remote are its own view; the pair helper keeps one list for both,
    // so give the receiver the mirrored list.
    let (mut o, _) = pair(p.clone(), now);
    p.direction = Direction::Inbound;
    std::mem::swap(&mut p.local, &mut p.peer);
    let mut i = SecurityAssociation::new(p, now).unwrap();
    let mut ok = one_packet(&mut o, &cleartext());
    assert!(i.decap(now, &mut ok, Received::Ip).is_ok());
    let stray = ipv4_packet(
        Ipv4Addr::new(10, 9, 9, 9),
        Ipv4Addr::new(203, 0, 113, 9),
        IpProtocol::ICMP,
        &[0; 8],
        false,
    );
    let mut bad = one_packet(&mut o, &stray);
    assert_eq!(
        i.decap(now, &mut bad, Received::Ip),
        Err(DropReason::SelectorMismatch)
    );
    assert_eq!(i.counters().selector_mismatches, 1);
    assert!(i.selectors_allow(
        Ipv4Addr::new(198, 51, 100, 1),
        Ipv4Addr::new(203, 0, 113, 1)
    ));
    assert!(!i.selectors_allow(
        Ipv4Addr::new(203, 0, 113, 1),
        Ipv4Addr::new(198, 51, 100, 1)
    ));
    // The pair's two SAs hold one copy of equal selectors (per-tunnel memory), and the
    // outbound one still checks them from its own side; other selectors are never taken.
    assert!(o.share_selectors(&i));
    assert!(o.shares_selectors_with(&i));
    assert!(o.selectors_allow(
        Ipv4Addr::new(203, 0, 113, 1),
        Ipv4Addr::new(198, 51, 100, 1)
    ));
    let mut other = SecurityAssociation::new(aes_sha1(), now).unwrap();
    assert!(!other.share_selectors(&i));
    assert!(!other.shares_selectors_with(&i));
    assert!(other.protected_networks().is_empty());
    let _ = NetworkSpec::ANY;
}

#[test]
fn every_truncation_and_bit_flip_is_a_counted_drop() {
    let now = Instant::now();
    for (esp, ah) in all_suites() {
        let (mut o, mut i) = pair(params(Direction::Outbound, Mode::Tunnel, esp, ah), now);
        let good = one_packet(&mut o, &cleartext());
        let mut drops = 0;
        for n in 0..good.len() {
            let mut pk = good[..n].to_vec();
            assert!(i.decap(now, &mut pk, Received::Ip).is_err(), "prefix {n}");
            drops += 1;
            let mut pk = good[..n].to_vec();
            let _ = i.decap(
                now,
                &mut pk,
                Received::Udp {
                    src: LOCAL.into(),
                    dst: PEER.into(),
                    offset: n.min(20),
                },
            );
            drops += 1;
        }
        // Flip every bit past the IP header's mutable fields: authenticated suites drop.
        if o.esp_authentication() != Some(AuthAlgorithm::None) || o.ah_spi().is_some() {
            for byte in 20..good.len() {
                let mut pk = good.clone();
                pk[byte] ^= 1;
                assert!(i.decap(now, &mut pk, Received::Ip).is_err(), "flip {byte}");
                drops += 1;
            }
        }
        assert_eq!(i.counters().drops(), drops);
        let mut pk = good.clone();
        let r = i.decap(now, &mut pk, Received::Ip);
        assert!(
            r.is_ok(),
            "{:?} {:?}: {r:?}",
            o.esp_encryption(),
            o.ah_authentication()
        );
    }
}

#[test]
fn path_mtu_icmp_and_fragmentation() {
    let now = Instant::now();
    let (mut o, mut i) = pair(aes_sha1(), now);
    let mut rng = ScriptRng::new(vec![]);
    let mut buf = vec![0u8; 3000];
    let big_df = ipv4_packet(
        Ipv4Addr::new(198, 51, 100, 7),
        Ipv4Addr::new(203, 0, 113, 9),
        IpProtocol::UDP,
        &[0x55; 1480],
        true,
    );
    match o
        .encap(now, &big_df, &mtu(1500), &mut rng, &mut buf)
        .unwrap()
    {
        EncapOutcome::IcmpFragNeeded { len, mtu: m } => {
            let ip = Ipv4Packet::new_checked(&buf[..len]).unwrap();
            assert_eq!(ip.dst_addr(), Ipv4Addr::new(198, 51, 100, 7));
            assert_eq!(ip.src_addr(), Ipv4Addr::new(198, 51, 100, 1));
            let icmp = crate::wire::Icmpv4Packet::new_checked(ip.payload()).unwrap();
            assert_eq!((icmp.msg_type(), icmp.code()), (3, 4));
            assert_eq!(icmp.next_hop_mtu(), m);
            // AES-SHA1 tunnel: 20 + 8 + 16 + pad-to-16 (payload+2) + 12. Largest inner that
            // fits 1500 is 1438 (1440 = 90 blocks, minus the 2 trailer bytes).
            assert_eq!(m, 1438);
            let fits = ipv4_packet(LOCAL, PEER, IpProtocol::UDP, &vec![0; 1438 - 20], true);
            assert!(matches!(
                o.encap(now, &fits, &mtu(1500), &mut rng, &mut buf).unwrap(),
                EncapOutcome::Send(p) if p.len <= 1500
            ));
            let over = ipv4_packet(LOCAL, PEER, IpProtocol::UDP, &vec![0; 1439 - 20], true);
            assert!(matches!(
                o.encap(now, &over, &mtu(1500), &mut rng, &mut buf).unwrap(),
                EncapOutcome::IcmpFragNeeded { mtu: 1438, .. }
            ));
        }
        other => panic!("expected ICMP, got {other:?}"),
    }
    let seq_before = o.sequence_number();
    let big = ipv4_packet(
        Ipv4Addr::new(198, 51, 100, 7),
        Ipv4Addr::new(203, 0, 113, 9),
        IpProtocol::UDP,
        &[0x55; 1480],
        false,
    );
    let EncapOutcome::Fragment(p) = o.encap(now, &big, &mtu(1500), &mut rng, &mut buf).unwrap()
    else {
        panic!("expected Fragment")
    };
    assert_eq!(o.sequence_number(), seq_before + 1);
    assert!(p.len > 1500);
    let mut f = Ipv4Fragmenter::new(&buf[..p.len], 1500).unwrap();
    let mut re = vec![0u8; p.len];
    re[..20].copy_from_slice(&buf[..20]);
    let mut frag = [0u8; 1500];
    while let Some(n) = f.next_into(&mut frag).unwrap() {
        let fp = Ipv4Packet::new_checked(&frag[..n]).unwrap();
        let off = 20 + usize::from(fp.frag_offset());
        re[off..off + fp.payload().len()].copy_from_slice(fp.payload());
        // A fragment fed directly is dropped as such.
        let mut copy = frag[..n].to_vec();
        assert_eq!(
            i.decap(now, &mut copy, Received::Ip),
            Err(DropReason::Fragment)
        );
    }
    let d = i.decap(now, &mut re, Received::Ip).unwrap();
    assert_eq!(&re[d.inner], &big[..]);
}

#[test]
fn batch_encap_equals_single_encap() {
    let now = Instant::now();
    for suite in [
        (EncrAlgorithm::AesCbc128, AuthAlgorithm::HmacSha1),
        (EncrAlgorithm::AesCbc256, AuthAlgorithm::HmacSha256),
        (EncrAlgorithm::TripleDes, AuthAlgorithm::HmacMd5),
        (EncrAlgorithm::Null, AuthAlgorithm::HmacSha1),
    ] {
        let p = params(
            Direction::Outbound,
            Mode::Tunnel,
            Some(esp_keys(1000, suite.0, suite.1)),
            None,
        );
        let (mut single, mut i) = pair(p.clone(), now);
        let (mut batch, _) = pair(p, now);
        let inners: Vec<Vec<u8>> = (0..45)
            .map(|k| {
                ipv4_packet(
                    Ipv4Addr::new(198, 51, 100, 7),
                    Ipv4Addr::new(203, 0, 113, 9),
                    IpProtocol::UDP,
                    &vec![k as u8; 10 + 29 * k],
                    k % 2 == 0,
                )
            })
            .collect();
        // Same RNG stream: single draws IVs one packet at a time, batch all at once.
        let mut rng1 = ScriptRng::new(vec![]);
        let mut expect = vec![];
        for inner in &inners {
            expect.push(one_with(&mut single, inner, &mut rng1));
        }
        let mut outs: Vec<Vec<u8>> = inners.iter().map(|_| vec![0u8; 2000]).collect();
        let mut jobs: Vec<EncapJob> = inners
            .iter()
            .zip(outs.iter_mut())
            .map(|(inn, out)| EncapJob::new(inn, out, 7))
            .collect();
        let mut rng2 = ScriptRng::new(vec![]);
        batch.encap_batch(now, &mut jobs, &mtu(1500), &mut rng2);
        for (k, j) in jobs.iter().enumerate() {
            let p = sent(j.result.unwrap());
            assert_eq!(&j.out[..p.len], &expect[k][..], "{suite:?} packet {k}");
        }
        for e in expect.iter_mut() {
            assert!(i.decap(now, e, Received::Ip).is_ok());
        }
        assert_eq!(batch.counters(), single.counters());
    }
}

/// DES and 3DES through real ESP SAs (tunnel mode, with and without HMAC-SHA1): the
/// ciphertext of our encap is what the `des` crate makes of the padded payload with the
/// packet's IV, and a packet whose ciphertext the crate made decaps to its inner packet.
#[test]
fn des_and_3des_packets_match_the_des_crate() {
    use crate::crypto::des_cbc::tests::des_crate_cbc;
    let now = Instant::now();
    for e in [EncrAlgorithm::Des, EncrAlgorithm::TripleDes] {
        for a in [AuthAlgorithm::None, AuthAlgorithm::HmacSha1] {
            for size in [0, 1, 6, 7, 8, 100, 1000, 1400] {
                let mut p = params(
                    Direction::Outbound,
                    Mode::Tunnel,
                    Some(esp_keys(0x3de5, e, a)),
                    None,
                );
                if a == AuthAlgorithm::None {
                    p.replay_window = 0;
                }
                let enc_key = p.esp.as_ref().unwrap().encryption_key.0.clone();
                let auth_key = p.esp.as_ref().unwrap().authentication_key.0.clone();
                // A second inbound SA for the crate's packet, which reuses sequence number 1.
                let (_, mut i2) = pair(p.clone(), now);
                let (mut o, mut i) = pair(p, now);
                let payload: Vec<u8> = (0..size).map(|b| (b * 13 + size) as u8).collect();
                let inner = ipv4_packet(
                    Ipv4Addr::new(198, 51, 100, 7),
                    Ipv4Addr::new(203, 0, 113, 9),
                    IpProtocol::UDP,
                    &payload,
                    false,
                );
                let mut pk = one_packet(&mut o, &inner);
                let icv = a.icv_len();
                let (iv, ct) = pk[20 + 8..pk.len() - icv].split_at(8);
                let (iv, ct) = (iv.to_vec(), ct.to_vec());
                // Payload | 1, 2, ... padding | pad length | next header 4 (IPv4),
                // RFC 4303 §2.4-2.6.
                let pad = ct.len() - inner.len() - 2;
                let mut plain = inner.clone();
                plain.extend((1..=pad).map(|b| b as u8));
                plain.extend([pad as u8, 4]);
                let mut want = plain.clone();
                des_crate_cbc(e, &enc_key, &iv, &mut want, true);
                assert_eq!(ct, want, "{e:?} {a:?} {size}: our ciphertext");
                let d = i.decap(now, &mut pk.clone(), Received::Ip).unwrap();
                assert_eq!(d.sequence_number, 1);

                // The crate's ciphertext of another inner packet of the same length.
                let other = ipv4_packet(
                    Ipv4Addr::new(198, 51, 100, 8),
                    Ipv4Addr::new(203, 0, 113, 10),
                    IpProtocol::UDP,
                    &vec![0xa5; size],
                    true,
                );
                let mut plain = other.clone();
                plain.extend((1..=pad).map(|b| b as u8));
                plain.extend([pad as u8, 4]);
                des_crate_cbc(e, &enc_key, &iv, &mut plain, true);
                let n = pk.len();
                pk[20 + 16..n - icv].copy_from_slice(&plain);
                if a == AuthAlgorithm::HmacSha1 {
                    let integ = Integrity::new(a, &auth_key).unwrap();
                    let (body, icv) = pk[20..].split_at_mut(n - 20 - 12);
                    integ.compute(&[body], icv).unwrap();
                }
                let d = i2.decap(now, &mut pk, Received::Ip).unwrap();
                assert_eq!(
                    &pk[d.inner],
                    &other[..],
                    "{e:?} {a:?} {size}: crate's packet"
                );
            }
        }
    }
}

fn one_with(o: &mut SecurityAssociation, inner: &[u8], rng: &mut ScriptRng) -> Vec<u8> {
    let mut buf = vec![0u8; 2000];
    let p = sent(
        o.encap(Instant::now(), inner, &mtu(1500), rng, &mut buf)
            .unwrap(),
    );
    buf.truncate(p.len);
    buf
}

#[test]
fn sequence_overflow_lifetimes_and_direction() {
    let now = Instant::now();
    let mut p = aes_sha1();
    p.lifetime = LifetimeLimits::from_profile(100, 1);
    let (mut o, mut i) = pair(p, now);
    assert_eq!(o.lifetime_state(now), LifetimeState::Alive);
    assert_eq!(
        o.lifetime_state(now + Duration::from_secs(90)),
        LifetimeState::SoftExpired
    );
    assert_eq!(
        o.lifetime_state(now + Duration::from_secs(100)),
        LifetimeState::HardExpired
    );
    let mut rng = ScriptRng::new(vec![]);
    let mut buf = vec![0u8; 2000];
    assert_eq!(
        o.encap(
            now + Duration::from_secs(100),
            &cleartext(),
            &mtu(1500),
            &mut rng,
            &mut buf
        ),
        Err(EncapError::Expired)
    );
    // 1 KB volume limit: 40 packets of 28 bytes pass it.
    for _ in 0..37 {
        let mut pk = one_packet(&mut o, &cleartext());
        i.decap(now, &mut pk, Received::Ip).unwrap();
    }
    assert_eq!(o.kilobytes(), 1);
    assert_eq!(o.lifetime_state(now), LifetimeState::HardExpired);
    assert_eq!(i.lifetime_state(now), LifetimeState::HardExpired);
    let mut pk = vec![0u8; 100];
    assert_eq!(
        i.decap(now, &mut pk, Received::Ip),
        Err(DropReason::Expired)
    );

    let (mut o, mut i) = pair(aes_sha1(), now);
    assert_eq!(
        o.lifetime_state(now + Duration::from_secs(1 << 40)),
        LifetimeState::Alive
    );
    o.esp.as_mut().unwrap().seq = u32::MAX - 1;
    let mut pk = one_packet(&mut o, &cleartext());
    assert_eq!(o.sequence_number(), u32::MAX);
    assert_eq!(
        o.encap(now, &cleartext(), &mtu(1500), &mut rng, &mut buf),
        Err(EncapError::SequenceOverflow)
    );
    assert!(i.decap(now, &mut pk, Received::Ip).is_ok());
    assert_eq!(
        i.encap(now, &cleartext(), &mtu(1500), &mut rng, &mut buf),
        Err(EncapError::WrongDirection)
    );
    assert_eq!(
        o.decap(now, &mut pk, Received::Ip),
        Err(DropReason::Unsupported)
    );
}

/// An SA is simplex (RFC 4301 §4.1): the outbound SA's cipher only encrypts and the inbound
/// one only decrypts, each without the other way's AES state (half of the both-ways key
/// schedule at most: docs/design.md "Per-tunnel memory budget"), and the pair still carries
/// traffic, packet by packet and in batches, for every AES key length.
#[test]
fn each_sa_keeps_the_aes_state_of_its_own_direction_only() {
    use crate::crypto::{EspCipher, Way};
    let now = Instant::now();
    for e in [
        EncrAlgorithm::AesCbc128,
        EncrAlgorithm::AesCbc192,
        EncrAlgorithm::AesCbc256,
    ] {
        let mut p = aes_sha1();
        let keys = esp_keys(1000, e, AuthAlgorithm::HmacSha1);
        let both = EspCipher::unbatched(e, &keys.encryption_key.0)
            .unwrap()
            .key_schedule_bytes();
        p.esp = Some(keys);
        let (mut o, mut i) = pair(p, now);
        let oc = &o.esp.as_ref().unwrap().cipher;
        let ic = &i.esp.as_ref().unwrap().cipher;
        assert_eq!((oc.way(), ic.way()), (Way::Encrypt, Way::Decrypt), "{e:?}");
        assert!(2 * oc.key_schedule_bytes() <= both, "{e:?} outbound");
        assert!(2 * ic.key_schedule_bytes() <= both, "{e:?} inbound");
        let mut pk = one_packet(&mut o, &cleartext());
        let d = i.decap(now, &mut pk, Received::Ip).unwrap();
        assert_eq!(pk[d.inner], cleartext()[..], "{e:?}");
    }
}

#[test]
fn transport_mode_checks_endpoints() {
    let now = Instant::now();
    let mut p = aes_sha1();
    p.mode = Mode::Transport;
    let (mut o, _) = pair(p, now);
    let mut rng = ScriptRng::new(vec![]);
    let mut buf = vec![0u8; 2000];
    assert_eq!(
        o.encap(now, &cleartext(), &mtu(1500), &mut rng, &mut buf),
        Err(EncapError::TransportAddressMismatch)
    );
    assert!(matches!(
        o.encap(now, &[0x70, 0, 0, 0], &mtu(1500), &mut rng, &mut buf),
        Err(EncapError::InnerNotIp)
    ));
    assert!(matches!(
        o.encap(now, &[0x60, 0, 0, 0], &mtu(1500), &mut rng, &mut buf),
        Err(EncapError::InnerMalformed(_))
    ));
    assert!(matches!(
        o.encap(now, &[0x45, 0, 0], &mtu(1500), &mut rng, &mut buf),
        Err(EncapError::InnerMalformed(_))
    ));
    let ok = ipv4_packet(LOCAL, PEER, IpProtocol::TCP, &[1; 40], false);
    assert_eq!(
        o.encap(now, &ok, &mtu(1500), &mut rng, &mut buf[..50]),
        Err(EncapError::BufferTooSmall)
    );
}

/// Found by the esp_encap fuzz target: a transport-mode packet of IP protocol 59 went out
/// with ESP Next Header 59, which the peer must discard as a dummy packet (RFC 4303 §2.6):
/// encap reported "sent" for a packet that could never arrive. It is refused now (the old
/// code returned `Send`); other protocols still round-trip.
#[test]
fn transport_mode_refuses_protocol_59_which_the_peer_would_take_for_a_dummy() {
    let now = Instant::now();
    let mut p = aes_sha1();
    p.mode = Mode::Transport;
    let (mut o, mut i) = pair(p, now);
    let mut rng = ScriptRng::new(vec![]);
    let mut buf = vec![0u8; 2000];
    let dummy = ipv4_packet(LOCAL, PEER, IpProtocol::NO_NEXT_HEADER, &[7; 20], false);
    assert_eq!(
        o.encap(now, &dummy, &mtu(1500), &mut rng, &mut buf),
        Err(EncapError::TransportNoNextHeader)
    );
    let udp = ipv4_packet(LOCAL, PEER, IpProtocol::UDP, &[7; 20], false);
    let op = sent(o.encap(now, &udp, &mtu(1500), &mut rng, &mut buf).unwrap());
    let d = i.decap(now, &mut buf[..op.len], Received::Ip).unwrap();
    assert_eq!(&buf[d.inner.start + 20..d.inner.end], &udp[20..]);
}

/// The SAs the batch paths are checked on: AES-CBC + HMAC-SHA1 (stitched or two-pass engines)
/// and + HMAC-SHA-256 (two-pass), ESP-NULL and AH with HMAC-SHA1 (the batch hash alone), AH bundled with ESP, AH in transport
/// mode, and suites no batch hash takes (ESP-NULL with SHA-256, HMAC-MD5, 3DES), which go
/// packet by packet.
fn batch_suites() -> Vec<(String, Mode, Option<EspKeys>, Option<AhKeys>)> {
    let ah = |a: AuthAlgorithm| AhKeys {
        spi: 2000,
        authentication: a,
        authentication_key: key(a.key_len(), 9),
    };
    let sha1 = AuthAlgorithm::HmacSha1;
    let mut v = Vec::new();
    for e in [
        EncrAlgorithm::AesCbc128,
        EncrAlgorithm::AesCbc192,
        EncrAlgorithm::AesCbc256,
        EncrAlgorithm::Null,
    ] {
        for a in [sha1, AuthAlgorithm::HmacSha256] {
            let k = esp_keys(1000, e, a);
            v.push((format!("{e:?}-{a:?}"), Mode::Tunnel, Some(k), None));
        }
    }
    v.push(("ah-sha1".into(), Mode::Tunnel, None, Some(ah(sha1))));
    v.push((
        "ah-sha1 transport".into(),
        Mode::Transport,
        None,
        Some(ah(sha1)),
    ));
    v.push((
        "ah-sha1+aes128-sha1".into(),
        Mode::Tunnel,
        Some(esp_keys(1000, EncrAlgorithm::AesCbc128, sha1)),
        Some(ah(sha1)),
    ));
    v.push((
        "ah-sha1+3des-md5".into(),
        Mode::Tunnel,
        Some(esp_keys(
            1000,
            EncrAlgorithm::TripleDes,
            AuthAlgorithm::HmacMd5,
        )),
        Some(ah(sha1)),
    ));
    v.push((
        "null-md5".into(),
        Mode::Tunnel,
        Some(esp_keys(1000, EncrAlgorithm::Null, AuthAlgorithm::HmacMd5)),
        None,
    ));
    v.push((
        "ah-md5".into(),
        Mode::Tunnel,
        None,
        Some(ah(AuthAlgorithm::HmacMd5)),
    ));
    v
}

/// An inner packet of `size` bytes for `mode` (transport mode: between the SA's own addresses).
fn batch_inner(mode: Mode, size: usize) -> Vec<u8> {
    let (src, dst) = match mode {
        Mode::Tunnel => (
            Ipv4Addr::new(198, 51, 100, 7),
            Ipv4Addr::new(203, 0, 113, 9),
        ),
        Mode::Transport => (LOCAL, PEER),
    };
    ipv4_packet(
        src,
        dst,
        IpProtocol::UDP,
        &vec![size as u8; size - 20],
        true,
    )
}

/// Issue 12 point 3: the batch paths (the stitched AES-CBC + HMAC-SHA1, the two-pass engines,
/// the batch hash of ESP-NULL and AH, and the portable engine they fall back to) give the same
/// bytes as single-packet encapsulation for every inner size 20..=2048 and every batch size
/// 1..=64, on every suite of [`batch_suites`]; the peer decapsulates every packet.
#[test]
fn batch_equals_single_encap_for_every_size_and_batch_size() {
    use crate::crypto::stitch::Engine;
    let now = Instant::now();
    let engines = Engine::supported();
    // SHA-256 chains on wherever SHA-NI is (speed only, never bytes).
    crate::crypto::sha256_ni::set_chains_pay(crate::crypto::sha256_ni::available());
    eprintln!("engines checked: {engines:?}");
    for (name, mode, esp, ah) in batch_suites() {
        let inner = |size: usize| batch_inner(mode, size);
        let p = params(Direction::Outbound, mode, esp, ah);
        for &engine in &engines {
            let (mut single, mut peer) = pair(p.clone(), now);
            let (mut batch, _) = pair(p.clone(), now);
            let mut rng1 = ScriptRng::new(vec![]);
            let mut rng2 = ScriptRng::new(vec![]);
            // Every size once (in batches of 7), then every batch size with mixed sizes.
            let mut batches: Vec<Vec<usize>> = (20..=2048usize)
                .collect::<Vec<_>>()
                .chunks(7)
                .map(<[usize]>::to_vec)
                .collect();
            batches.extend(
                (1..=64usize).map(|n| (0..n).map(|i| 20 + (n * 97 + i * 211) % 2029).collect()),
            );
            for sizes in batches {
                let inners: Vec<Vec<u8>> = sizes.iter().map(|s| inner(*s)).collect();
                let mut outs: Vec<Vec<u8>> = inners.iter().map(|_| vec![0u8; 2200]).collect();
                let mut jobs: Vec<EncapJob> = inners
                    .iter()
                    .zip(outs.iter_mut())
                    .map(|(inn, out)| EncapJob::new(inn, out, 7))
                    .collect();
                batch.encap_batch_on(engine, now, &mut jobs, &mtu(9000), &mut rng2);
                for (k, j) in jobs.iter_mut().enumerate() {
                    let o = sent(j.result.unwrap());
                    let mut buf = vec![0u8; 2200];
                    let s = sent(
                        single
                            .encap(now, &inners[k], &mtu(9000), &mut rng1, &mut buf)
                            .unwrap(),
                    );
                    assert_eq!(
                        j.out[..o.len],
                        buf[..s.len],
                        "{name} {engine:?} inner {} B",
                        sizes[k]
                    );
                    let d = peer.decap(now, &mut j.out[..o.len], Received::Ip).unwrap();
                    assert_eq!(&j.out[d.inner], &inners[k][..]);
                }
            }
            assert_eq!(batch.counters(), single.counters());
        }
    }
}

/// Issue 12 point 3, inbound: `decap_batch` (stitched verify + decrypt, and the portable
/// engine) gives the same result, inner bytes and counters as `decap` packet by packet, for
/// every inner size 20..=2048 and batch sizes 1..=64, with corrupted ICVs, a sequence number
/// sent twice inside one batch, a wrong SPI and a truncated packet mixed in.
#[test]
fn decap_batch_equals_single_decap_with_hostile_packets_mixed_in() {
    use crate::crypto::stitch::Engine;
    let now = Instant::now();
    let engines = Engine::supported();
    crate::crypto::sha256_ni::set_chains_pay(crate::crypto::sha256_ni::available());
    for (name, mode, esp, ah) in batch_suites() {
        let p = params(Direction::Outbound, mode, esp, ah);
        for &engine in &engines {
            let (mut out, mut single) = pair(p.clone(), now);
            let (_, mut batched) = pair(p.clone(), now);
            let mut rng = ScriptRng::new(vec![]);
            let mut wire: Vec<Vec<u8>> = (20..=2048usize)
                .map(|size| {
                    let inner = batch_inner(mode, size);
                    let mut buf = vec![0u8; 2200];
                    let o = sent(
                        out.encap(now, &inner, &mtu(9000), &mut rng, &mut buf)
                            .unwrap(),
                    );
                    buf.truncate(o.len);
                    buf
                })
                .collect();
            for (k, w) in wire.iter_mut().enumerate() {
                match k % 50 {
                    7 => *w.last_mut().unwrap() ^= 1, // ICV
                    19 => w[40] ^= 0x80,              // ciphertext
                    23 => w[20] ^= 1,                 // SPI
                    31 => w.truncate(30),             // truncated ESP
                    _ => {}
                }
            }
            // Packet 41 of each 50 is packet 40 again (same sequence number; 40 is untouched,
            // so this is a replay, not an ICV drop), inside one batch for most batch sizes.
            for k in (41..wire.len()).step_by(50) {
                wire[k] = wire[k - 1].clone();
            }
            let mut expect = Vec::new();
            for w in &wire {
                let mut b = w.clone();
                let r = single.decap(now, &mut b, Received::Ip);
                expect.push((r.clone(), r.map(|d| b[d.inner].to_vec()).ok()));
            }
            let mut bufs = wire.clone();
            let mut at = 0;
            let mut n = 1;
            while at < bufs.len() {
                let end = (at + n).min(bufs.len());
                let mut jobs: Vec<DecapJob> = bufs[at..end]
                    .iter_mut()
                    .map(|b| DecapJob::new(&mut b[..], Received::Ip))
                    .collect();
                batched.decap_batch_on(engine, now, &mut jobs);
                for (i, j) in jobs.iter().enumerate() {
                    let (r, inner) = &expect[at + i];
                    assert_eq!(&j.result, r, "{name} {engine:?} packet {}", at + i);
                    if let (Ok(d), Some(inner)) = (&j.result, inner) {
                        assert_eq!(&j.packet[d.inner.clone()], &inner[..]);
                    }
                }
                at = end;
                n = n % 64 + 1;
            }
            assert_eq!(batched.counters(), single.counters(), "{name} {engine:?}");
            assert!(expect.iter().any(|(r, _)| *r == Err(DropReason::Replayed)));
            assert!(
                expect
                    .iter()
                    .any(|(r, _)| *r == Err(DropReason::IcvFailure))
            );
        }
    }
}

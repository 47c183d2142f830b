//! AES-GCM ESP (RFC 4106) through the SA: known-answer packets computed independently of
//! the implementation (Python `cryptography`'s AESGCM over the RFC 4106 §3-§5 layout), the
//! sequence-number IV, every tampered byte, truncation and replay, and the batch path.

use std::net::Ipv4Addr;
use std::time::Instant;

use super::tests::{LOCAL, PEER, ScriptRng, ipv4_packet, key, mtu, pair, params, sent};
use super::*;
use crate::config::{KeyBytes, Mode};
use crate::crypto::kat::hex;
use crate::crypto::{AuthAlgorithm, EncrAlgorithm};
use crate::wire::{IpProtocol, Ipv4Packet};

/// The 84-byte IPv4 packet of RFC 3602 case #7, used as the tunnel-mode inner packet.
const INNER: &str = "45000054090400004001f988c0a87b03c0a87bc808009f76a90a0100b49c083d02a2040008090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637";

fn gcm(spi: u32, alg: EncrAlgorithm, keymat: Vec<u8>) -> SaParams {
    params(
        Direction::Outbound,
        Mode::Tunnel,
        Some(EspKeys {
            spi,
            encryption: alg,
            encryption_key: KeyBytes(keymat),
            authentication: AuthAlgorithm::None,
            authentication_key: KeyBytes(vec![]),
        }),
        None,
    )
}

fn gcm128() -> SaParams {
    gcm(
        0x1234,
        EncrAlgorithm::AesGcm128,
        key(EncrAlgorithm::AesGcm128.keymat_len(), 5).0.clone(),
    )
}

fn encap_one(o: &mut SecurityAssociation, inner: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 2000];
    // AES-GCM draws nothing from the RNG: the IV is the sequence number.
    let mut rng = ScriptRng::new(vec![]);
    let p = sent(
        o.encap(Instant::now(), inner, &mtu(1500), &mut rng, &mut buf)
            .unwrap(),
    );
    buf.truncate(p.len);
    buf
}

/// ESP = SPI || seq || IV (= 64-bit seq) || AES-GCM(payload || 1,2.. pad || pad len || 4)
/// || 16-byte ICV, with nonce = salt || IV and AAD = SPI || seq. Expected bytes from
/// `cryptography.hazmat.primitives.ciphers.aead.AESGCM(key).encrypt(salt + iv, pt, aad)`.
#[test]
fn rfc4106_packets_equal_independently_computed_bytes() {
    let now = Instant::now();
    let cases = [
        (
            EncrAlgorithm::AesGcm128,
            "feffe9928665731c6d6a8f9467308308cafebabe",
            0x8765,
            0x1000,
            "00008765000010000000000000001000e2778eb15681874dbe8e5aceb467b98bc92be51b38d1c3b0267ceef45a73204fe68f924b04e4d8b60680b4eb0c24520e9bf0f61404f5d9d2b540681ae9d45a315bf5edc004b2e39ec4af3dd23bc3f7071b2722daaa2fbe04dc6a5cb40c1f5ac5872d047e7a6af117",
        ),
        (
            EncrAlgorithm::AesGcm256,
            "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308decaf888",
            0x1234_5678,
            1,
            "123456780000000100000000000000013b7452618f1b4b14bc00e3a9b0474a8c30237d72d2c2af78a17dc030e8441bc823f4bfa491e80239aaf6c8399c858e6e47e001d985944cca82ba94fa2bc41e6d5e390747f13032d9388e3181d757be41a3644655ca8ba51c7363a2e614036a5973e8cac4e8f3551c",
        ),
    ];
    let inner = hex(INNER);
    for (alg, keymat, spi, seq, esp) in cases {
        let (mut o, mut i) = pair(gcm(spi, alg, hex(keymat)), now);
        o.esp.as_mut().unwrap().seq = seq - 1;
        let mut pk = encap_one(&mut o, &inner);
        let outer = Ipv4Packet::new_checked(&pk[..]).unwrap();
        assert!(outer.verify_checksum());
        assert_eq!(outer.protocol(), IpProtocol::ESP);
        assert_eq!(outer.payload(), &hex(esp)[..], "{alg:?}");
        // The batch path produces the same bytes.
        let (mut b, _) = pair(gcm(spi, alg, hex(keymat)), now);
        b.esp.as_mut().unwrap().seq = seq - 1;
        let mut out = vec![0u8; 2000];
        let mut jobs = [EncapJob::new(&inner, &mut out, 7)];
        b.encap_batch(now, &mut jobs, &mtu(1500), &mut ScriptRng::new(vec![]));
        let n = sent(jobs[0].result.unwrap()).len;
        assert_eq!(&out[20..n], &hex(esp)[..], "{alg:?} batch");
        // And decap gives the inner packet back.
        let d = i.decap(now, &mut pk, Received::Ip).unwrap();
        assert_eq!(&pk[d.inner], &inner[..]);
        assert_eq!(d.sequence_number, seq);
    }
}

#[test]
fn the_explicit_iv_is_the_sequence_number() {
    let (mut o, _) = pair(gcm128(), Instant::now());
    let inner = hex(INNER);
    for seq in 1..=5u64 {
        let pk = encap_one(&mut o, &inner);
        assert_eq!(pk[20 + 8..20 + 16], seq.to_be_bytes());
    }
}

#[test]
fn every_flipped_byte_and_truncation_is_dropped_without_moving_the_window() {
    let now = Instant::now();
    let (mut o, mut i) = pair(gcm128(), now);
    let good = encap_one(&mut o, &hex(INNER));
    let mut drops = 0;
    // Past the outer IPv4 header everything is covered: SPI and sequence number by the AAD,
    // IV through the nonce, ciphertext and ICV.
    for byte in 20..good.len() {
        let mut pk = good.clone();
        pk[byte] ^= 0x01;
        let e = i.decap(now, &mut pk, Received::Ip).unwrap_err();
        let ok = match byte {
            20..24 => e == DropReason::SpiMismatch,
            // Sequence number 1 flipped to 0 is refused by the window before the ICV.
            24..28 => e == DropReason::IcvFailure || e == DropReason::Replayed,
            _ => e == DropReason::IcvFailure,
        };
        assert!(ok, "flip {byte}: {e:?}");
        drops += 1;
    }
    for n in 0..good.len() {
        let mut pk = good[..n].to_vec();
        assert!(i.decap(now, &mut pk, Received::Ip).is_err(), "prefix {n}");
        drops += 1;
        // Truncated inside the UDP payload view too (the IP length no longer hides it).
        let mut pk = good[20..n.max(20)].to_vec();
        let r = i.decap(
            now,
            &mut pk,
            Received::Udp {
                src: PEER.into(),
                dst: LOCAL.into(),
                offset: 0,
            },
        );
        assert!(r.is_err(), "udp prefix {n}");
        drops += 1;
    }
    assert_eq!(i.counters().drops(), drops);
    assert_eq!(i.counters().packets, 0);
    assert_eq!(i.sequence_number(), 0, "no failure moved the window");
    let mut pk = good.clone();
    i.decap(now, &mut pk, Received::Ip).unwrap();
    let mut pk = good.clone();
    assert_eq!(
        i.decap(now, &mut pk, Received::Ip),
        Err(DropReason::Replayed)
    );
}

#[test]
fn a_packet_keyed_with_another_salt_fails() {
    let now = Instant::now();
    let (mut o, _) = pair(gcm128(), now);
    let mut other = gcm128();
    if let Some(e) = &mut other.esp {
        e.encryption_key.0[19] ^= 1;
    }
    let (_, mut i) = pair(other, now);
    let mut pk = encap_one(&mut o, &hex(INNER));
    assert_eq!(
        i.decap(now, &mut pk, Received::Ip),
        Err(DropReason::IcvFailure)
    );
}

#[test]
fn batch_equals_single_for_many_sizes() {
    let now = Instant::now();
    let (mut single, mut i) = pair(gcm128(), now);
    let (mut batch, _) = pair(gcm128(), now);
    let inners: Vec<Vec<u8>> = (0..70)
        .map(|k| {
            ipv4_packet(
                Ipv4Addr::new(198, 51, 100, 7),
                Ipv4Addr::new(203, 0, 113, 9),
                IpProtocol::UDP,
                &vec![k as u8; 1 + 20 * k],
                false,
            )
        })
        .collect();
    let expect: Vec<Vec<u8>> = inners.iter().map(|p| encap_one(&mut single, p)).collect();
    let mut outs: Vec<Vec<u8>> = inners.iter().map(|_| vec![0u8; 2000]).collect();
    let mut jobs: Vec<EncapJob> = inners
        .iter()
        .zip(outs.iter_mut())
        .map(|(inn, out)| EncapJob::new(inn, out, 7))
        .collect();
    batch.encap_batch(now, &mut jobs, &mtu(1500), &mut ScriptRng::new(vec![]));
    let lens: Vec<usize> = jobs.iter().map(|j| sent(j.result.unwrap()).len).collect();
    for (k, ((out, want), inner)) in outs.iter_mut().zip(&expect).zip(&inners).enumerate() {
        assert_eq!(&out[..lens[k]], &want[..], "packet {k}");
        let d = i.decap(now, &mut out[..lens[k]], Received::Ip).unwrap();
        assert_eq!(&out[d.inner], &inner[..], "packet {k}");
    }
}

#[test]
fn refuses_gcm_with_authentication_or_a_key_without_salt() {
    let now = Instant::now();
    let mut p = gcm128();
    if let Some(e) = &mut p.esp {
        e.authentication = AuthAlgorithm::HmacSha1;
        e.authentication_key = key(20, 1);
    }
    assert_eq!(
        SecurityAssociation::new(p, now).unwrap_err(),
        SaError::AeadWithAuthentication
    );
    let p = gcm(0x1234, EncrAlgorithm::AesGcm128, vec![0; 16]);
    assert_eq!(
        SecurityAssociation::new(p, now).unwrap_err(),
        SaError::KeyLength {
            what: "ESP encryption",
            expected: 20,
            got: 16
        }
    );
}

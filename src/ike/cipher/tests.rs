use hex_literal::hex;
use sha1::{Digest, Sha1};

use super::*;

fn chain(encr: EncrAlgorithm, key: &[u8], iv0: &[u8]) -> IvChain {
    IvChain::new(encr, HashAlgorithm::Sha1, key, iv0).unwrap()
}

#[test]
fn rfc3602_vectors_through_the_chain() {
    // RFC 3602 §4 case 1 (one block, so no padding) and case 2 (two blocks).
    let mut c = chain(
        EncrAlgorithm::AesCbc128,
        &hex!("06a9214036b8a15b512e03d534120006"),
        &hex!("3dafba429d9eb430b422da802c9fac41"),
    );
    let ct = c.encrypt(0, b"Single block msg");
    assert_eq!(ct, hex!("e353779c1079aeb82708942dbe77181a"));
    assert_eq!(c.current_iv(0), ct);

    let mut c = chain(
        EncrAlgorithm::AesCbc128,
        &hex!("c286696d887c9aa0611bbb3e2025a45a"),
        &hex!("562e17996d093d28ddb3ba695a2e6f58"),
    );
    let pt: Vec<u8> = (0u8..32).collect();
    let ct = c.encrypt(0, &pt);
    assert_eq!(
        ct,
        hex!("d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1")
    );
    assert_eq!(c.current_iv(0), &ct[16..]);
}

#[test]
fn padding_is_zeros_to_the_block_boundary() {
    let key = [3u8; 24];
    let iv0 = [9u8; 8];
    for len in 0..40usize {
        let mut a = chain(EncrAlgorithm::TripleDes, &key, &iv0);
        let b = chain(EncrAlgorithm::TripleDes, &key, &iv0);
        let pt = vec![0xa5u8; len];
        let ct = a.encrypt(0, &pt);
        let want_len = len.next_multiple_of(8).max(8);
        assert_eq!(ct.len(), want_len, "len {len}");
        let d = b.decrypt(0, &ct).unwrap();
        assert_eq!(&d.plaintext[..len], &pt[..]);
        assert!(d.plaintext[len..].iter().all(|&z| z == 0));
    }
}

#[test]
fn every_cipher_round_trips() {
    for encr in [
        EncrAlgorithm::Des,
        EncrAlgorithm::TripleDes,
        EncrAlgorithm::AesCbc128,
        EncrAlgorithm::AesCbc192,
        EncrAlgorithm::AesCbc256,
    ] {
        let key: Vec<u8> = (0..encr.key_len() as u8).collect();
        let iv0 = vec![0x42u8; encr.block_len()];
        let mut a = chain(encr, &key, &iv0);
        let mut b = chain(encr, &key, &iv0);
        for len in [1usize, 7, 8, 16, 17, 100] {
            let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let ct = a.encrypt(0, &pt);
            assert_ne!(&ct[..len.min(8)], &pt[..len.min(8)]);
            let d = b.decrypt(0, &ct).unwrap();
            assert_eq!(&d.plaintext[..len], &pt[..], "{encr:?}");
            b.commit(d.pending);
        }
    }
}

/// Main mode 5/6, then a quick mode with an informational exchange in the middle of it, the
/// two sides taking turns; checks the IVs against Appendix B computed by hand.
#[test]
fn appendix_b_chain_across_phases() {
    let key = [0x11u8; 16];
    let iv0 = [0x22u8; 16];
    let mut ini = chain(EncrAlgorithm::AesCbc128, &key, &iv0);
    let mut res = chain(EncrAlgorithm::AesCbc128, &key, &iv0);
    let send = |from: &mut IvChain, to: &mut IvChain, m: u32, pt: &[u8]| -> Vec<u8> {
        let ct = from.encrypt(m, pt);
        let d = to.decrypt(m, &ct).unwrap();
        assert_eq!(&d.plaintext[..pt.len()], pt);
        to.commit(d.pending);
        assert_eq!(from.current_iv(m), to.current_iv(m));
        ct
    };
    let mm5 = send(&mut ini, &mut res, 0, &[5u8; 40]);
    assert_eq!(ini.current_iv(0), &mm5[mm5.len() - 16..]);
    let mm6 = send(&mut res, &mut ini, 0, &[6u8; 40]);
    let p1_last = mm6[mm6.len() - 16..].to_vec();
    assert_eq!(ini.current_iv(0), p1_last);

    let (qm, info) = (0xdead_beefu32, 0x0102_0304u32);
    let first_iv = |m: u32| {
        let h = Sha1::new()
            .chain_update(&p1_last)
            .chain_update(m.to_be_bytes())
            .finalize();
        h[..16].to_vec()
    };
    assert_eq!(ini.current_iv(qm), first_iv(qm));
    let qm1 = send(&mut ini, &mut res, qm, &[1u8; 60]);
    // An informational exchange in between starts from the phase-1 IV, not from QM's.
    assert_eq!(res.current_iv(info), first_iv(info));
    send(&mut res, &mut ini, info, &[9u8; 28]);
    assert_eq!(ini.current_iv(qm), &qm1[qm1.len() - 16..]);
    let qm2 = send(&mut res, &mut ini, qm, &[2u8; 60]);
    assert_eq!(res.current_iv(qm), &qm2[qm2.len() - 16..]);
    send(&mut ini, &mut res, qm, &[3u8; 24]);
    // Phase 2 never moved the phase-1 IV.
    assert_eq!(ini.current_iv(0), p1_last);
    assert_eq!(res.current_iv(0), p1_last);
    ini.forget(qm);
    assert_eq!(ini.current_iv(qm), first_iv(qm));
}

#[test]
fn uncommitted_messages_do_not_move_the_chain() {
    let key = [0x33u8; 32];
    let iv0 = [0x44u8; 16];
    let mut ini = chain(EncrAlgorithm::AesCbc256, &key, &iv0);
    let mut res = chain(EncrAlgorithm::AesCbc256, &key, &iv0);
    let m = 77;
    let ct1 = ini.encrypt(m, b"quick mode message 1");
    // A forged message with the same message ID arrives first: it decrypts to garbage, the
    // HASH check fails and the session drops it without committing.
    let mut forged = ct1.clone();
    forged[3] ^= 0x80;
    let before = res.current_iv(m);
    let bad = res.decrypt(m, &forged).unwrap();
    assert_ne!(&bad.plaintext[..20], b"quick mode message 1");
    assert_eq!(res.current_iv(m), before);
    // The genuine message still decrypts, and is committed.
    let good = res.decrypt(m, &ct1).unwrap();
    assert_eq!(&good.plaintext[..20], b"quick mode message 1");
    // A duplicate of it (retransmission) decrypts identically before commit...
    assert_eq!(res.decrypt(m, &ct1).unwrap().pending, good.pending);
    res.commit(good.pending);
    // ...and after commit the chain has moved on; the session answers the duplicate from its
    // stored reply and must not commit again.
    let ct2 = res.encrypt(m, b"quick mode message 2");
    let d = ini.decrypt(m, &ct2).unwrap();
    assert_eq!(&d.plaintext[..20], b"quick mode message 2");
    ini.commit(d.pending);
    assert_eq!(ini.current_iv(m), res.current_iv(m));
}

#[test]
fn errors() {
    let e = IvChain::new(EncrAlgorithm::Null, HashAlgorithm::Sha1, &[], &[]).unwrap_err();
    assert_eq!(e, CipherError::NullCipher);
    let e = IvChain::new(
        EncrAlgorithm::AesCbc128,
        HashAlgorithm::Sha1,
        &[0; 15],
        &[0; 16],
    );
    assert!(matches!(e, Err(CipherError::Key(_))));
    let e = IvChain::new(
        EncrAlgorithm::AesCbc128,
        HashAlgorithm::Sha1,
        &[0; 16],
        &[0; 8],
    );
    assert_eq!(
        e.unwrap_err(),
        CipherError::IvLength {
            expected: 16,
            got: 8
        }
    );
    let c = chain(EncrAlgorithm::Des, &[1; 8], &[0; 8]);
    for len in [0usize, 1, 7, 9, 15] {
        assert_eq!(
            c.decrypt(0, &vec![0; len]).unwrap_err(),
            CipherError::NotBlockAligned { len, block: 8 }
        );
    }
}

#[test]
fn exchange_table_is_bounded() {
    let mut c = chain(EncrAlgorithm::AesCbc128, &[1; 16], &[2; 16]);
    for m in 1..=(MAX_EXCHANGES as u32 + 10) {
        c.encrypt(m, b"x");
    }
    assert_eq!(c.exchanges.len(), MAX_EXCHANGES);
    // The oldest were dropped and restart from the phase-1 derivation.
    let fresh = chain(EncrAlgorithm::AesCbc128, &[1; 16], &[2; 16]);
    assert_eq!(c.current_iv(1), fresh.current_iv(1));
    assert_ne!(
        c.current_iv(MAX_EXCHANGES as u32 + 10),
        fresh.current_iv(MAX_EXCHANGES as u32 + 10)
    );
}

#[test]
fn from_keys_matches_new() {
    use crate::ike::keys::{Phase1Inputs, Phase1Keys};
    let inp = Phase1Inputs {
        hash: HashAlgorithm::Sha256,
        encr: EncrAlgorithm::AesCbc256,
        ni_b: b"ni",
        nr_b: b"nr",
        g_xy: &[7; 256],
        cky_i: &[1; 8],
        cky_r: &[2; 8],
        g_xi: &[3; 256],
        g_xr: &[4; 256],
    };
    let k = Phase1Keys::derive_psk(b"psk", &inp);
    let mut a = IvChain::from_keys(&k).unwrap();
    let b = IvChain::new(k.encr, k.hash, k.enc_key.as_bytes(), &k.iv0).unwrap();
    assert_eq!(a.current_iv(0), b.current_iv(0));
    let ct = a.encrypt(0, b"hello");
    assert_eq!(&b.decrypt(0, &ct).unwrap().plaintext[..5], b"hello");
}

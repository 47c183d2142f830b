use hex_literal::hex;

use super::*;

/// NIST CAVS IKEv1 PSK (SHA-1) known-answer vector.
#[test]
fn cavs_psk_sha1() {
    let cky_i = hex!("83d374c30b3b5082");
    let cky_r = hex!("5afc0da06c728029");
    let ni = hex!("b9a2d0e922dc66dd");
    let nr = hex!("2130166863b5ddef");
    let g_xy = hex!("739003ba2c11c982946c65e26acf661fbf8ebb78011a9fead79efa12fe3e71cc");
    let psk = hex!("75");
    let h = HashAlgorithm::Sha1;
    let skeyid = skeyid_psk(h, &psk, &ni, &nr);
    assert_eq!(
        skeyid.as_bytes(),
        hex!("62b04d112877e442fc3282fc37c076997718a0b9")
    );
    let d = skeyid_d(h, &skeyid, &g_xy, &cky_i, &cky_r);
    assert_eq!(
        d.as_bytes(),
        hex!("369e5aad1bdb5faf6a3d929d500cdc236710a9ab")
    );
    let a = skeyid_a(h, &skeyid, &d, &g_xy, &cky_i, &cky_r);
    assert_eq!(
        a.as_bytes(),
        hex!("588e957d8d790d093b3a39f121473473af78e9bb")
    );
    let e = skeyid_e(h, &skeyid, &a, &g_xy, &cky_i, &cky_r);
    assert_eq!(
        e.as_bytes(),
        hex!("cd74b0c048219db81384d3fda8f6cda51e398a2b")
    );
}

/// Independent HMAC (the hmac crate directly, not `prf`/`Integrity`).
fn hmac(h: HashAlgorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    use hmac::{Hmac, KeyInit, Mac};
    fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut m = <M as KeyInit>::new_from_slice(key).unwrap();
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().to_vec()
    }
    match h {
        HashAlgorithm::Md5 => run::<Hmac<md5::Md5>>(key, parts),
        HashAlgorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, parts),
        HashAlgorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, parts),
    }
}

const HASHES: [HashAlgorithm; 3] = [
    HashAlgorithm::Md5,
    HashAlgorithm::Sha1,
    HashAlgorithm::Sha256,
];
const CKY_I: [u8; 8] = hex!("83d374c30b3b5082");
const CKY_R: [u8; 8] = hex!("5afc0da06c728029");

fn inputs<'a>(
    hash: HashAlgorithm,
    encr: EncrAlgorithm,
    g_xy: &'a [u8],
    g_xi: &'a [u8],
    g_xr: &'a [u8],
) -> Phase1Inputs<'a> {
    Phase1Inputs {
        hash,
        encr,
        ni_b: &hex!("b9a2d0e922dc66dd"),
        nr_b: &hex!("2130166863b5ddef"),
        g_xy,
        cky_i: &CKY_I,
        cky_r: &CKY_R,
        g_xi,
        g_xr,
    }
}

#[test]
fn phase1_keys_match_cavs_and_derivations() {
    let g_xy = hex!("739003ba2c11c982946c65e26acf661fbf8ebb78011a9fead79efa12fe3e71cc");
    let (g_xi, g_xr) = ([0x11u8; 128], [0x22u8; 128]);
    let inp = inputs(
        HashAlgorithm::Sha1,
        EncrAlgorithm::AesCbc128,
        &g_xy,
        &g_xi,
        &g_xr,
    );
    let k = Phase1Keys::derive_psk(&hex!("75"), &inp);
    assert_eq!(
        k.skeyid.as_bytes(),
        hex!("62b04d112877e442fc3282fc37c076997718a0b9")
    );
    assert_eq!(
        k.skeyid_d.as_bytes(),
        hex!("369e5aad1bdb5faf6a3d929d500cdc236710a9ab")
    );
    assert_eq!(
        k.skeyid_a.as_bytes(),
        hex!("588e957d8d790d093b3a39f121473473af78e9bb")
    );
    assert_eq!(
        k.skeyid_e.as_bytes(),
        hex!("cd74b0c048219db81384d3fda8f6cda51e398a2b")
    );
    // AES-128 needs 16 bytes: SKEYID_e is long enough, no expansion.
    assert_eq!(
        k.enc_key.as_bytes(),
        &hex!("cd74b0c048219db81384d3fda8f6cda51e398a2b")[..16]
    );
    let iv0 = {
        use sha1::Digest;
        sha1::Sha1::new()
            .chain_update(g_xi)
            .chain_update(g_xr)
            .finalize()
    };
    assert_eq!(k.iv0, &iv0[..16]);
}

#[test]
fn schedule_for_every_hash_against_independent_hmac() {
    let g_xy = [0x5au8; 256];
    let (g_xi, g_xr) = ([0x11u8; 256], [0x22u8; 256]);
    let psk = b"a pre-shared key";
    for h in HASHES {
        let inp = inputs(h, EncrAlgorithm::TripleDes, &g_xy, &g_xi, &g_xr);
        let k = Phase1Keys::derive_psk(psk, &inp);
        let skeyid = hmac(h, psk, &[inp.ni_b, inp.nr_b]);
        let d = hmac(h, &skeyid, &[&g_xy, &CKY_I, &CKY_R, &[0]]);
        let a = hmac(h, &skeyid, &[&d, &g_xy, &CKY_I, &CKY_R, &[1]]);
        let e = hmac(h, &skeyid, &[&a, &g_xy, &CKY_I, &CKY_R, &[2]]);
        assert_eq!(k.skeyid.as_bytes(), skeyid);
        assert_eq!(k.skeyid_d.as_bytes(), d);
        assert_eq!(k.skeyid_a.as_bytes(), a);
        assert_eq!(k.skeyid_e.as_bytes(), e);
        assert_eq!(k.iv0.len(), 8);

        let (sai_b, idii_b, idir_b) = (
            b"SAi body".as_slice(),
            b"\x01\x11\x01\xf4\x0a\0\0\x01",
            b"\x01\x11\x01\xf4\x0a\0\0\x02",
        );
        let hi = k.hash_i(&g_xi, &g_xr, &CKY_I, &CKY_R, sai_b, idii_b);
        assert_eq!(
            hi.as_bytes(),
            hmac(h, &skeyid, &[&g_xi, &g_xr, &CKY_I, &CKY_R, sai_b, idii_b])
        );
        let hr = k.hash_r(&g_xi, &g_xr, &CKY_I, &CKY_R, sai_b, idir_b);
        assert_eq!(
            hr.as_bytes(),
            hmac(h, &skeyid, &[&g_xr, &g_xi, &CKY_R, &CKY_I, sai_b, idir_b])
        );
        assert!(hi.ct_eq(&hmac(
            h,
            &skeyid,
            &[&g_xi, &g_xr, &CKY_I, &CKY_R, sai_b, idii_b]
        )));

        let mid = 0x0102_0304u32;
        let (ni, nr, rest) = (
            b"Ni_b nonce".as_slice(),
            b"Nr_b nonce".as_slice(),
            b"payloads",
        );
        assert_eq!(
            k.qm_hash1(mid, rest).as_bytes(),
            hmac(h, &a, &[&[1, 2, 3, 4], rest])
        );
        assert_eq!(
            k.qm_hash2(mid, ni, rest).as_bytes(),
            hmac(h, &a, &[&[1, 2, 3, 4], ni, rest])
        );
        assert_eq!(
            k.qm_hash3(mid, ni, nr).as_bytes(),
            hmac(h, &a, &[&[0, 1, 2, 3, 4], ni, nr])
        );
        assert_eq!(
            k.info_hash(mid, rest).as_bytes(),
            hmac(h, &a, &[&[1, 2, 3, 4], rest])
        );

        // KEYMAT without and with PFS, several blocks long (3DES + SHA-256 keys = 56 bytes).
        let spi = 0xc0ffee01u32.to_be_bytes();
        for pfs in [None, Some(&[0x77u8; 128][..])] {
            let km = k.keymat(pfs, 3, 0xc0ffee01, ni, nr, 56);
            let pfs_b = pfs.unwrap_or(&[]);
            let mut want = Vec::new();
            let mut prev: Vec<u8> = Vec::new();
            while want.len() < 56 {
                prev = hmac(h, &d, &[&prev, pfs_b, &[3], &spi, ni, nr]);
                want.extend_from_slice(&prev);
            }
            assert_eq!(km.as_bytes(), &want[..56]);
            let (ek, ak) = km.split(24, 32).unwrap();
            assert_eq!((ek, ak), (&want[..24], &want[24..56]));
            assert!(km.split(24, 33).is_none());
        }
    }
}

#[test]
fn keymat_is_a_prefix_family_and_depends_on_every_input() {
    let g_xy = [1u8; 128];
    let inp = inputs(
        HashAlgorithm::Sha1,
        EncrAlgorithm::AesCbc256,
        &g_xy,
        &[2; 128],
        &[3; 128],
    );
    let k = Phase1Keys::derive_psk(b"k", &inp);
    let long = k.keymat(None, 3, 1000, b"ni", b"nr", 100);
    for n in 0..100 {
        assert_eq!(
            k.keymat(None, 3, 1000, b"ni", b"nr", n).as_bytes(),
            &long.as_bytes()[..n]
        );
    }
    let base = long.as_bytes()[..20].to_vec();
    assert_ne!(k.keymat(None, 2, 1000, b"ni", b"nr", 20).as_bytes(), base);
    assert_ne!(k.keymat(None, 3, 1001, b"ni", b"nr", 20).as_bytes(), base);
    assert_ne!(k.keymat(None, 3, 1000, b"nr", b"ni", 20).as_bytes(), base);
    assert_ne!(
        k.keymat(Some(&[9; 128]), 3, 1000, b"ni", b"nr", 20)
            .as_bytes(),
        base
    );
}

#[test]
fn appendix_b_key_expansion() {
    for h in HASHES {
        let skeyid = skeyid_psk(h, b"psk", b"ni", b"nr");
        let d = skeyid_d(h, &skeyid, b"gxy", &CKY_I, &CKY_R);
        let a = skeyid_a(h, &skeyid, &d, b"gxy", &CKY_I, &CKY_R);
        let e = skeyid_e(h, &skeyid, &a, b"gxy", &CKY_I, &CKY_R);
        let k1 = hmac(h, e.as_bytes(), &[&[0]]);
        let k2 = hmac(h, e.as_bytes(), &[&k1]);
        let expanded = [k1, k2].concat();
        for encr in [
            EncrAlgorithm::Des,
            EncrAlgorithm::TripleDes,
            EncrAlgorithm::AesCbc128,
            EncrAlgorithm::AesCbc192,
            EncrAlgorithm::AesCbc256,
        ] {
            let n = encr.key_len();
            let key = encryption_key(h, &e, n);
            assert_eq!(key.as_bytes().len(), n);
            if e.as_bytes().len() >= n {
                // Long enough: the first n bytes of SKEYID_e, no expansion.
                assert_eq!(key.as_bytes(), &e.as_bytes()[..n], "{h:?} {encr:?}");
            } else {
                assert_eq!(key.as_bytes(), &expanded[..n], "{h:?} {encr:?}");
            }
        }
    }
    // The cases that expand: MD5 with 3DES/AES-192/256, SHA-1 with 3DES/AES-192/256.
    let e = SkeyidE(prf::prf(HashAlgorithm::Sha1, b"x", &[b"y"]));
    assert_ne!(
        encryption_key(HashAlgorithm::Sha1, &e, 24).as_bytes()[..20],
        e.as_bytes()[..20]
    );
}

#[test]
fn secrets_are_redacted_in_debug() {
    let g_xy = [1u8; 128];
    let inp = inputs(
        HashAlgorithm::Sha1,
        EncrAlgorithm::AesCbc128,
        &g_xy,
        &[2; 128],
        &[3; 128],
    );
    let k = Phase1Keys::derive_psk(b"k", &inp);
    let s = format!("{k:?}");
    assert!(s.contains("Skeyid(<20 bytes redacted>)"));
    assert!(s.contains("SkeyidE(<20 bytes redacted>)"));
    assert!(s.contains("EncKey(<16 bytes redacted>)"));
    let hexd: String = k
        .skeyid_d
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!s.to_lowercase().contains(&hexd));
}

use hex_literal::hex;

use super::*;

/// NIST CAVS IKEv1 PSK (SHA-1), from issue 3.
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

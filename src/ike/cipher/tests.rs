use super::*;

#[test]
fn round_trip_phase1_and_phase2() {
    let key = [7u8; 16];
    let iv0 = [1u8; 16];
    let mut a = IvChain::new(EncrAlgorithm::AesCbc128, HashAlgorithm::Sha1, &key, &iv0).unwrap();
    let mut b = IvChain::new(EncrAlgorithm::AesCbc128, HashAlgorithm::Sha1, &key, &iv0).unwrap();
    for (m, len) in [(0u32, 40usize), (0, 48), (0x1234, 3), (0x1234, 16), (0, 1)] {
        let pt: Vec<u8> = (0..len as u8).collect();
        let ct = a.encrypt(m, &pt);
        let d = b.decrypt(m, &ct).unwrap();
        assert_eq!(&d.plaintext[..len], &pt[..]);
        b.commit(d.pending);
        assert_eq!(a.current_iv(m), b.current_iv(m));
    }
}

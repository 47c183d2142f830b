//! The IKEv1 pseudo-random function and hash (RFC 2409 §5: "prf" is the HMAC version of the
//! negotiated hash when no PRF is negotiated, which ikehub never does).
//!
//! The keyed PRF is the ESP [`Integrity`] transform untruncated: same HMAC, same zeroizing
//! key schedule. The plain hash serves the phase-1 IV (Appendix B) and NAT-D (RFC 3947 §3.2).

use md5::Md5;
use sha1::{Digest, Sha1};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::config::HashAlgorithm;
use crate::crypto::{AuthAlgorithm, Integrity};

/// Largest PRF / hash output among the supported hashes (SHA-256).
pub const MAX_PRF_LEN: usize = 32;

/// Output length in bytes of the negotiated hash (and of its HMAC): 16, 20 or 32.
pub fn output_len(hash: HashAlgorithm) -> usize {
    match hash {
        HashAlgorithm::Md5 => 16,
        HashAlgorithm::Sha1 => 20,
        HashAlgorithm::Sha256 => 32,
    }
}

/// One PRF or hash output: `output_len(hash)` bytes, wiped on drop (it is often key
/// material: SKEYID, KEYMAT blocks). Compare received hashes with [`PrfOutput::ct_eq`].
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PrfOutput {
    buf: [u8; MAX_PRF_LEN],
    len: u8,
}

impl PrfOutput {
    fn from_slice(s: &[u8]) -> Self {
        let mut buf = [0u8; MAX_PRF_LEN];
        buf[..s.len()].copy_from_slice(s);
        Self {
            buf,
            len: s.len() as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Constant-time comparison with a received value (HASH_I, HASH(1)...). A length
    /// mismatch is simply unequal; the length is public.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        bool::from(self.as_bytes().ct_eq(other))
    }
}

impl AsRef<[u8]> for PrfOutput {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::fmt::Debug for PrfOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrfOutput(<{} bytes redacted>)", self.len)
    }
}

fn auth_of(hash: HashAlgorithm) -> AuthAlgorithm {
    match hash {
        HashAlgorithm::Md5 => AuthAlgorithm::HmacMd5,
        HashAlgorithm::Sha1 => AuthAlgorithm::HmacSha1,
        HashAlgorithm::Sha256 => AuthAlgorithm::HmacSha256,
    }
}

/// A PRF keyed once, for keys used many times (SKEYID, SKEYID_a, SKEYID_d, SKEYID_e): the
/// HMAC pads are absorbed once and cloned per call.
#[derive(Clone, Debug)]
pub struct KeyedPrf {
    hash: HashAlgorithm,
    mac: Integrity,
}

impl KeyedPrf {
    pub fn new(hash: HashAlgorithm, key: &[u8]) -> Self {
        // HMAC pads the key with zeros to the block size (RFC 2104 §2), so the empty key and
        // the one-byte key 0x00 are the same HMAC key; `Integrity` refuses an empty key.
        let key = if key.is_empty() { &[0u8][..] } else { key };
        let mac = match Integrity::new(auth_of(hash), key) {
            Ok(m) => m,
            // Unreachable: HMAC accepts any non-empty key and the algorithm is never `None`.
            Err(_) => unreachable!("HMAC accepts every non-empty key"),
        };
        Self { hash, mac }
    }

    pub fn hash_algorithm(&self) -> HashAlgorithm {
        self.hash
    }

    pub fn output_len(&self) -> usize {
        output_len(self.hash)
    }

    /// `prf(key, parts[0] | parts[1] | ...)`.
    pub fn prf(&self, parts: &[&[u8]]) -> PrfOutput {
        let mut full = [0u8; MAX_PRF_LEN];
        let n = self.mac.full_mac(parts, &mut full);
        let out = PrfOutput::from_slice(&full[..n]);
        full.zeroize();
        out
    }
}

/// `prf(key, parts[0] | parts[1] | ...)`: HMAC with the negotiated hash.
pub fn prf(hash: HashAlgorithm, key: &[u8], parts: &[&[u8]]) -> PrfOutput {
    KeyedPrf::new(hash, key).prf(parts)
}

fn digest<D: Digest>(parts: &[&[u8]]) -> PrfOutput {
    let mut d = D::new();
    for p in parts {
        d.update(p);
    }
    PrfOutput::from_slice(&d.finalize())
}

/// The plain negotiated hash of `parts[0] | parts[1] | ...` (phase-1 IV, NAT-D).
pub fn hash(hash: HashAlgorithm, parts: &[&[u8]]) -> PrfOutput {
    match hash {
        HashAlgorithm::Md5 => digest::<Md5>(parts),
        HashAlgorithm::Sha1 => digest::<Sha1>(parts),
        HashAlgorithm::Sha256 => digest::<Sha256>(parts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    #[test]
    fn hmac_kats() {
        // RFC 2202 §3 test case 2 (HMAC-MD5) and §3 test case 2 (HMAC-SHA-1), RFC 4231 §4.3.
        let md5 = prf(
            HashAlgorithm::Md5,
            b"Jefe",
            &[b"what do ya want ", b"for nothing?"],
        );
        assert_eq!(md5.as_bytes(), hex!("750c783e6ab0b503eaa86e310a5db738"));
        let sha1 = prf(
            HashAlgorithm::Sha1,
            b"Jefe",
            &[b"what do ya want for nothing?"],
        );
        assert_eq!(
            sha1.as_bytes(),
            hex!("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
        );
        let sha256 = prf(
            HashAlgorithm::Sha256,
            b"Jefe",
            &[b"what do ya want for nothing?"],
        );
        assert_eq!(
            sha256.as_bytes(),
            hex!("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
    }

    #[test]
    fn hash_kats() {
        // FIPS 180 / RFC 1321 "abc".
        assert_eq!(
            hash(HashAlgorithm::Md5, &[b"a", b"bc"]).as_bytes(),
            hex!("900150983cd24fb0d6963f7d28e17f72")
        );
        assert_eq!(
            hash(HashAlgorithm::Sha1, &[b"abc"]).as_bytes(),
            hex!("a9993e364706816aba3e25717850c26c9cd0d89d")
        );
        assert_eq!(
            hash(HashAlgorithm::Sha256, &[b"abc"]).as_bytes(),
            hex!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }

    #[test]
    fn empty_key_is_zero_key() {
        for h in [
            HashAlgorithm::Md5,
            HashAlgorithm::Sha1,
            HashAlgorithm::Sha256,
        ] {
            let a = prf(h, b"", &[b"x"]);
            let b = prf(h, &[0], &[b"x"]);
            assert_eq!(a.as_bytes(), b.as_bytes());
            assert_eq!(a.len(), output_len(h));
        }
        // RFC 2104 / well-known HMAC-MD5 with the empty key over the empty message.
        assert_eq!(
            prf(HashAlgorithm::Md5, b"", &[]).as_bytes(),
            hex!("74e6f7298a9c2d168935f58c001bad88")
        );
    }

    #[test]
    fn ct_eq_compares_length_and_content() {
        let a = prf(HashAlgorithm::Sha1, b"k", &[b"m"]);
        let bytes = a.as_bytes().to_vec();
        assert!(a.ct_eq(&bytes));
        assert!(!a.ct_eq(&bytes[..19]));
        let mut flipped = bytes.clone();
        flipped[7] ^= 1;
        assert!(!a.ct_eq(&flipped));
    }
}

//! AES-GCM for ESP (RFC 4106): the combined-mode transform, sealing and opening in place on
//! caller buffers with a separate AAD and a separate 16-byte ICV.
//!
//! The AES-GCM itself is `ring`'s (BoringSSL's constant-time assembly: AES-NI + PCLMULQDQ, or
//! VAES + VPCLMULQDQ with AVX2, picked at run time, with a constant-time fallback). Measured on
//! this kind of machine at 1408 bytes it seals at about 3x the rate of RustCrypto `aes-gcm`
//! 0.11 and above `openssl speed -evp aes-128-gcm`; that is why it is used here and not for the
//! CBC suites (measure with `ikehub bench`).
//!
//! RFC 4106 §3-§4: the nonce is the 4-byte salt (keying material after the AES key, §8.1)
//! followed by the 8-byte explicit IV the packet carries; §5: the AAD is SPI || sequence
//! number (32-bit sequence numbers: no ESN).

use std::mem::ManuallyDrop;

use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use zeroize::Zeroize;

use super::CryptoError;
use super::algorithm::EncrAlgorithm;

/// Length of the salt that follows the AES key in the keying material (RFC 4106 §8.1).
pub const SALT_LEN: usize = 4;
/// Length of the explicit IV carried in every ESP packet (RFC 4106 §3.1).
pub const IV_LEN: usize = 8;
/// Length of the ICV: this implementation does the 16-octet ICV variant only (RFC 4106 §6
/// says it MUST be supported; the 8- and 12-octet ones MAY).
pub const ICV_LEN: usize = 16;
/// The AAD of an SA without extended sequence numbers: SPI || sequence number (RFC 4106 §5).
pub const AAD_LEN: usize = 8;

/// The ICV did not verify: the packet was altered, or keyed differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("AES-GCM ICV does not verify")]
pub struct OpenError;

/// A keyed AES-GCM ESP transform (one SA direction).
pub struct EspAead {
    alg: EncrAlgorithm,
    // `ring` does not wipe its key schedule on drop; `Drop` below does, which is why the key
    // is never dropped the ordinary way.
    key: ManuallyDrop<LessSafeKey>,
    salt: [u8; SALT_LEN],
}

impl std::fmt::Debug for EspAead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EspAead({})", self.alg.name())
    }
}

impl Drop for EspAead {
    fn drop(&mut self) {
        // SAFETY: `LessSafeKey` is plain data (the expanded AES key, the GHASH key table and a
        // `&'static` to its algorithm descriptor: no heap, no `Drop` impl), so overwriting
        // its bytes leaks and frees nothing. It sits in a `ManuallyDrop` and is never read or
        // dropped after this, so the all-zero pattern (invalid for the reference) is never
        // observed as a value. This is the contract of `zeroize_flat_type`.
        unsafe { zeroize::zeroize_flat_type(&mut *self.key as *mut LessSafeKey) };
        self.salt.zeroize();
    }
}

impl EspAead {
    /// Keys the transform from keying material of `alg.keymat_len()` bytes: the AES key
    /// followed by the 4-byte salt (RFC 4106 §8.1; manual keys are written the same way).
    pub fn new(alg: EncrAlgorithm, keymat: &[u8]) -> Result<Self, CryptoError> {
        let wrong = CryptoError::KeyLength {
            expected: alg.keymat_len(),
            got: keymat.len(),
        };
        let ring_alg = match alg {
            EncrAlgorithm::AesGcm128 => &AES_128_GCM,
            EncrAlgorithm::AesGcm256 => &AES_256_GCM,
            _ => return Err(CryptoError::NotAead),
        };
        if keymat.len() != alg.keymat_len() {
            return Err(wrong);
        }
        let (key, salt) = keymat.split_at(alg.key_len());
        let key = UnboundKey::new(ring_alg, key).map_err(|_| wrong)?;
        let mut s = [0u8; SALT_LEN];
        s.copy_from_slice(salt);
        Ok(Self {
            alg,
            key: ManuallyDrop::new(LessSafeKey::new(key)),
            salt: s,
        })
    }

    pub fn algorithm(&self) -> EncrAlgorithm {
        self.alg
    }

    fn nonce(&self, iv: &[u8; IV_LEN]) -> Nonce {
        let mut n = [0u8; SALT_LEN + IV_LEN];
        n[..SALT_LEN].copy_from_slice(&self.salt);
        n[SALT_LEN..].copy_from_slice(iv);
        // The caller derives the IV from the SA's sequence counter, which never repeats
        // under one key (RFC 4106 §3.1, RFC 4303 §3.3.3: the SA refuses to wrap).
        Nonce::assume_unique_for_key(n)
    }

    /// Encrypts `data` in place and writes the ICV over `aad` and the ciphertext into `icv`.
    /// `iv` must be unique for this key: ESP uses the sequence number.
    pub fn seal_in_place(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        data: &mut [u8],
        icv: &mut [u8; ICV_LEN],
    ) -> Result<(), CryptoError> {
        // `ring` refuses only inputs beyond GCM's 2^36-byte limit, which no packet reaches.
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(iv), Aad::from(aad), data)
            .map_err(|_| CryptoError::NotBlockAligned)?;
        icv.copy_from_slice(tag.as_ref());
        Ok(())
    }

    /// Verifies `icv` over `aad` and the ciphertext in `data` (in constant time) and decrypts
    /// `data` in place. On failure the contents of `data` are unspecified and must be
    /// dropped, never used.
    pub fn open_in_place(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        data: &mut [u8],
        icv: &[u8; ICV_LEN],
    ) -> Result<(), OpenError> {
        self.key
            .open_in_place_separate_tag(self.nonce(iv), Aad::from(aad), Tag::from(*icv), data, 0..)
            .map(|_| ())
            .map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    /// McGrew & Viega, "The Galois/Counter Mode of Operation", test case 4 (AES-128, 60-byte
    /// plaintext, 20-byte AAD) and test case 16 (AES-256): the IV there is 12 bytes, which
    /// here is salt (first 4) || explicit IV (last 8), exactly the RFC 4106 nonce.
    struct Case {
        alg: EncrAlgorithm,
        key: &'static [u8],
        nonce: [u8; 12],
        aad: &'static [u8],
        pt: &'static [u8],
        ct: &'static [u8],
        tag: [u8; 16],
    }

    const PT: [u8; 60] = hex!(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
    );
    const AAD: [u8; 20] = hex!("feedfacedeadbeeffeedfacedeadbeefabaddad2");

    fn cases() -> [Case; 2] {
        [
            Case {
                alg: EncrAlgorithm::AesGcm128,
                key: &hex!("feffe9928665731c6d6a8f9467308308"),
                nonce: hex!("cafebabefacedbaddecaf888"),
                aad: &AAD,
                pt: &PT,
                ct: &hex!(
                    "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
                    "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"
                ),
                tag: hex!("5bc94fbc3221a5db94fae95ae7121a47"),
            },
            Case {
                alg: EncrAlgorithm::AesGcm256,
                key: &hex!("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"),
                nonce: hex!("cafebabefacedbaddecaf888"),
                aad: &AAD,
                pt: &PT,
                ct: &hex!(
                    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
                    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
                ),
                tag: hex!("76fc6ece0f4e1768cddf8853bb2d551b"),
            },
        ]
    }

    fn keyed(c: &Case) -> EspAead {
        let mut km = c.key.to_vec();
        km.extend_from_slice(&c.nonce[..SALT_LEN]);
        EspAead::new(c.alg, &km).unwrap()
    }

    #[test]
    fn mcgrew_viega_vectors_seal_and_open() {
        for c in cases() {
            let a = keyed(&c);
            let iv: [u8; IV_LEN] = c.nonce[SALT_LEN..].try_into().unwrap();
            let mut buf = c.pt.to_vec();
            let mut icv = [0u8; ICV_LEN];
            a.seal_in_place(&iv, c.aad, &mut buf, &mut icv).unwrap();
            assert_eq!(buf, c.ct, "{:?}", c.alg);
            assert_eq!(icv, c.tag, "{:?}", c.alg);
            a.open_in_place(&iv, c.aad, &mut buf, &icv).unwrap();
            assert_eq!(buf, c.pt);
        }
    }

    #[test]
    fn any_flipped_bit_fails_to_open() {
        let c = &cases()[0];
        let a = keyed(c);
        let iv: [u8; IV_LEN] = c.nonce[SALT_LEN..].try_into().unwrap();
        for (what, byte) in [("ct", 0usize), ("aad", 1), ("icv", 2), ("iv", 3)] {
            let mut buf = c.ct.to_vec();
            let mut aad = c.aad.to_vec();
            let mut icv = c.tag;
            let mut iv = iv;
            match byte {
                0 => buf[7] ^= 0x01,
                1 => aad[19] ^= 0x80,
                2 => icv[15] ^= 0x01,
                _ => iv[0] ^= 0x01,
            }
            assert_eq!(
                a.open_in_place(&iv, &aad, &mut buf, &icv),
                Err(OpenError),
                "{what}"
            );
        }
    }

    #[test]
    fn keying_material_is_key_plus_salt() {
        assert!(EspAead::new(EncrAlgorithm::AesGcm128, &[0; 20]).is_ok());
        assert!(EspAead::new(EncrAlgorithm::AesGcm256, &[0; 36]).is_ok());
        for (alg, n) in [
            (EncrAlgorithm::AesGcm128, 16),
            (EncrAlgorithm::AesGcm128, 36),
            (EncrAlgorithm::AesGcm256, 32),
        ] {
            assert_eq!(
                EspAead::new(alg, &vec![0; n]).unwrap_err(),
                CryptoError::KeyLength {
                    expected: alg.keymat_len(),
                    got: n
                }
            );
        }
        assert_eq!(
            EspAead::new(EncrAlgorithm::AesCbc128, &[0; 16]).unwrap_err(),
            CryptoError::NotAead
        );
    }
}

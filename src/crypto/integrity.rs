//! Integrity transforms for ESP and AH: HMAC-MD5-96 (RFC 2403), HMAC-SHA1-96 (RFC 2404) and
//! HMAC-SHA-256-128 (RFC 4868), computed over one or more slices and truncated.
//!
//! The keyed HMAC state (inner and outer pads already absorbed) is built once per SA; each
//! packet clones it, which is a copy of a few hundred bytes: no key setup, no allocation.
//! HMAC-SHA1 and HMAC-SHA-256 keys also keep the bare pad states the ESP batch paths hash
//! with ([`super::stitch::HmacSha1Pads`], [`super::sha256_ni::HmacSha256Pads`]).

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::CryptoError;
use super::algorithm::AuthAlgorithm;
use super::sha256_ni::HmacSha256Pads;
use super::stitch::{Engine, HmacSha1Pads};

/// Largest untruncated HMAC output among the supported hashes (SHA-256).
const MAX_TAG: usize = 32;

#[derive(Clone)]
enum Inner {
    None,
    Md5(Hmac<Md5>),
    Sha1(Hmac<Sha1>),
    Sha256(Hmac<Sha256>),
}

/// A keyed integrity transform.
#[derive(Clone)]
pub struct Integrity {
    alg: AuthAlgorithm,
    inner: Inner,
    /// HMAC-SHA1's inner and outer pad states for the batch paths ([`super::stitch`]).
    sha1_pads: Option<HmacSha1Pads>,
    /// HMAC-SHA-256's, likewise ([`super::sha256_ni`]).
    sha256_pads: Option<HmacSha256Pads>,
}

impl std::fmt::Debug for Integrity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Integrity({})", self.alg.name())
    }
}

fn run<M: Mac + Clone>(keyed: &M, parts: &[&[u8]], out: &mut [u8; MAX_TAG]) {
    let mut m = keyed.clone();
    for p in parts {
        m.update(p);
    }
    let tag = m.finalize().into_bytes();
    out[..tag.len()].copy_from_slice(&tag);
}

impl Integrity {
    /// Keys the transform. HMAC is defined for any key length (RFC 2104); the SA builder
    /// enforces the exact lengths of RFC 2403/2404/4868, this constructor only refuses an
    /// empty key for a real algorithm.
    pub fn new(alg: AuthAlgorithm, key: &[u8]) -> Result<Self, CryptoError> {
        let bad = |_| CryptoError::KeyLength {
            expected: alg.key_len(),
            got: key.len(),
        };
        if alg != AuthAlgorithm::None && key.is_empty() {
            return Err(CryptoError::KeyLength {
                expected: alg.key_len(),
                got: 0,
            });
        }
        let inner = match alg {
            AuthAlgorithm::None => Inner::None,
            AuthAlgorithm::HmacMd5 => Inner::Md5(Hmac::new_from_slice(key).map_err(bad)?),
            AuthAlgorithm::HmacSha1 => Inner::Sha1(Hmac::new_from_slice(key).map_err(bad)?),
            AuthAlgorithm::HmacSha256 => Inner::Sha256(Hmac::new_from_slice(key).map_err(bad)?),
        };
        let sha1_pads = (alg == AuthAlgorithm::HmacSha1).then(|| HmacSha1Pads::new(key));
        let sha256_pads = (alg == AuthAlgorithm::HmacSha256).then(|| HmacSha256Pads::new(key));
        Ok(Self {
            alg,
            inner,
            sha1_pads,
            sha256_pads,
        })
    }

    /// HMAC-SHA1 keyed for the batch paths; `None` for other algorithms.
    pub fn sha1_pads(&self) -> Option<&HmacSha1Pads> {
        self.sha1_pads.as_ref()
    }

    /// HMAC-SHA-256 keyed for the batch paths; `None` for other algorithms.
    pub fn sha256_pads(&self) -> Option<&HmacSha256Pads> {
        self.sha256_pads.as_ref()
    }

    /// Whether the ESP batch paths ([`super::EspCipher::seal_hmac_batch`]) may take this
    /// transform: HMAC-SHA1 or HMAC-SHA-256 with an ICV.
    pub fn batches(&self) -> bool {
        (self.sha1_pads.is_some() || self.sha256_pads.is_some()) && self.icv_len() > 0
    }

    pub fn algorithm(&self) -> AuthAlgorithm {
        self.alg
    }

    /// Length of the truncated ICV on the wire (0 for `none`).
    pub fn icv_len(&self) -> usize {
        self.alg.icv_len()
    }

    /// The full (untruncated) HMAC over the concatenation of `parts`; returns its length.
    pub fn full_mac(&self, parts: &[&[u8]], out: &mut [u8; 32]) -> usize {
        match &self.inner {
            Inner::None => 0,
            Inner::Md5(m) => {
                run(m, parts, out);
                16
            }
            Inner::Sha1(m) => {
                run(m, parts, out);
                20
            }
            Inner::Sha256(m) => {
                run(m, parts, out);
                32
            }
        }
    }

    /// Writes the truncated ICV over the concatenation of `parts` into `icv` (exactly
    /// `icv_len()` bytes).
    pub fn compute(&self, parts: &[&[u8]], icv: &mut [u8]) -> Result<(), CryptoError> {
        let n = self.icv_len();
        if icv.len() != n {
            return Err(CryptoError::IcvLength);
        }
        let mut full = [0u8; MAX_TAG];
        self.full_mac(parts, &mut full);
        icv.copy_from_slice(&full[..n]);
        Ok(())
    }

    /// HMAC-SHA1 of many messages at once on `engine`'s batch hash: `macs[i]` gets the full
    /// tag of `msgs[i]` without its last `trim` bytes. For the batches with nothing to encrypt
    /// or decrypt (ESP-NULL, RFC 2410, and AH), where the hash is all the work. Returns false,
    /// having written nothing, unless this is HMAC-SHA1 and the engine hashes several packets
    /// at once (the SHA-NI chains or the AVX-512 lanes): elsewhere one packet at a time is as
    /// fast, and the caller goes that way.
    pub fn sha1_macs_batch(
        &self,
        engine: Engine,
        msgs: &[&mut [u8]],
        trim: usize,
        macs: &mut [[u8; 20]],
    ) -> bool {
        let Some(pads) = &self.sha1_pads else {
            return false;
        };
        match engine {
            Engine::ShaNiChains | Engine::MultiBuffer => {
                let (_, hash) = engine.batch_hash();
                hash(pads, msgs, trim, macs);
                true
            }
            Engine::Stitched | Engine::Portable => false,
        }
    }

    /// Verifies a received ICV in constant time (with respect to its content).
    pub fn verify(&self, parts: &[&[u8]], icv: &[u8]) -> bool {
        let n = self.icv_len();
        if icv.len() != n {
            return false;
        }
        let mut full = [0u8; MAX_TAG];
        self.full_mac(parts, &mut full);
        bool::from(full[..n].ct_eq(icv))
    }
}

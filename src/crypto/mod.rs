//! Cipher suites behind one small interface, and the batch paths the hot loop uses.
//!
//! * [`EspCipher`]: ESP encryption (NULL, DES, 3DES, AES-CBC-128/192/256), CBC in place on
//!   caller buffers with a caller-supplied IV, plus [`EspCipher::encrypt_cbc_batch`] which
//!   interleaves AES blocks of several packets. Keyed one [`Way`] (an ESP SA's, which keeps
//!   only that direction's AES state) or both (the ISAKMP SA's).
//! * [`EspAead`]: AES-GCM (RFC 4106), sealing and opening in place with a separate AAD and
//!   ICV.
//! * [`Integrity`]: HMAC-MD5-96, HMAC-SHA1-96, HMAC-SHA-256-128 over one or more slices, with
//!   constant-time verification.
//! * [`aes_ni`]: AES-CBC keyed one way (an ESP SA's [`aes_ni::AesKeys`]), with AES-NI or the
//!   `aes` crate.
//! * [`stitch`]: AES-CBC + HMAC-SHA1 over a batch of ESP packets with AES-NI and SHA-NI
//!   interleaved in one kernel (run-time detection, portable fallback), or in two passes
//!   (AES-CBC of the batch, then the HMAC of several packets at once: SHA-1, and SHA-256 for
//!   AES-CBC + HMAC-SHA-256-128), used by the SA's `encap_batch` and `decap_batch`.
//! * [`des_cbc`]: DES-CBC and 3DES-CBC, table-driven, keyed once per SA; batch encryption and
//!   decryption run several chains or blocks in lockstep.
//! * [`sha1_mb`]: SHA-1 of sixteen messages at once on AVX-512 and HMAC-SHA1 of a batch with
//!   it, which the stitched batch paths' multi-buffer engine hashes with; its lane scheduler
//!   serves [`sha1_ni`] too.
//! * [`sha1_ni`]: SHA-1 on SHA-NI, one block in round groups (the stitched kernel's) and several
//!   independent chains at once (the chained engine's, where the CPU's `sha1rnds4` is
//!   latency-bound).
//! * [`sha256_ni`]: SHA-256 on several interleaved SHA-NI chains and HMAC-SHA-256 of a batch
//!   with it (the same lane scheduler), which the two-pass AES-CBC + HMAC-SHA-256-128 batch of
//!   [`stitch::seal_sha256`] / [`stitch::open_sha256`] hashes with where the chains pay.

/// Straight-line code for each listed index (`$t` is a constant in the body): the x86-64
/// kernels of `stitch`, `sha1_mb` and `sha1_ni` must be fully unrolled for their rounds to stay in
/// registers and their AES and SHA instructions to interleave, and loops of this size are past
/// the compiler's unrolling threshold. Defined before the modules so that they see it.
#[cfg(target_arch = "x86_64")]
macro_rules! unroll {
    ($t:ident in [$($n:literal),*] $body:block) => {
        $( { const $t: usize = $n; $body } )*
    };
}

/// `$f::<Nr>(args)` for AES keys' number of rounds (a constant in the kernels of `aes_ni` and
/// `stitch`, so their round loops unroll).
#[cfg(target_arch = "x86_64")]
macro_rules! by_rounds {
    ($keys:expr, $f:ident($($a:expr),*)) => {
        match $keys.rounds() {
            10 => $f::<10>($($a),*),
            12 => $f::<12>($($a),*),
            _ => $f::<14>($($a),*),
        }
    };
}

pub mod aead;
pub mod aes_ni;
pub mod algorithm;
pub mod cipher;
pub mod des_cbc;
pub mod integrity;
pub mod sha1_mb;
pub mod sha1_ni;
pub mod sha256_ni;
pub mod stitch;

#[cfg(test)]
pub(crate) mod kat;

pub use self::cipher::{BATCH_LANES, EspCipher, Way};
pub use aead::EspAead;
pub use algorithm::{AuthAlgorithm, EncrAlgorithm};
pub use integrity::Integrity;

/// A caller passed a key, IV or buffer of the wrong size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("key is {got} bytes, the algorithm needs {expected}")]
    KeyLength { expected: usize, got: usize },
    #[error("IV has the wrong length")]
    IvLength,
    #[error("data is not a multiple of the cipher block size")]
    NotBlockAligned,
    #[error("ICV buffer has the wrong length")]
    IcvLength,
    #[error("the algorithm is a combined-mode (AEAD) one; use EspAead")]
    NotCbc,
    #[error("the algorithm is not a combined-mode (AEAD) one; use EspCipher")]
    NotAead,
    /// An ESP SA's cipher is keyed one way (RFC 4301 §4.1: an SA is simplex).
    #[error("the cipher is keyed for the other direction")]
    WrongDirection,
}

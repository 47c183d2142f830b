//! y^x for a peer's public value y by OpenSSL's `BN_mod_exp_mont_consttime` (the `openssl`
//! crate, linked against the system libcrypto).
//!
//! Why OpenSSL here: a variable base cannot be precomputed, so this exponentiation is a full
//! `exponent_bits` squarings; OpenSSL's x86-64 Montgomery code (MULX/ADX assembly,
//! `bn_mul_mont_gather5` / `bn_power5`) does one 2048-bit multiplication in about half the
//! time of crypto-bigint's portable one (`benches/ike_crypto.rs`, group `dh_options`). It is
//! the same routine OpenSSL's own DH and strongSwan's openssl plugin use for the shared
//! secret.
//!
//! Constant time: `BN_mod_exp` takes the constant-time path (`BN_mod_exp_mont_consttime`:
//! fixed 5-bit windows, table reads by scattered gather, no secret-dependent branch) when the
//! exponent carries `BN_FLG_CONSTTIME` (`set_const_time`). That routine's running time depends
//! on the exponent's length in 64-bit words: x has `exponent_bits` random bits, so its top word
//! is zero with probability 2^-64. The bytes-to-BIGNUM conversion skips leading zero bytes in a
//! short variable-length loop (the top byte is zero with probability 1/256): the same exposure
//! OpenSSL's own DH has, nanoseconds against a sub-millisecond operation.
//!
//! Every BIGNUM that held x or y^x is cleared (`BN_clear`) before it is freed.

use openssl::bn::{BigNum, BigNumContext};
use zeroize::{Zeroize, Zeroizing};

use super::DhGroup;
use crypto_bigint::U512;

/// `base^exp mod p` with the low `exp_bits` bits of `exp` (as `pow_bounded_exp` takes them),
/// big-endian, `group.len()` bytes; `None` only if OpenSSL fails (allocation).
pub(super) fn modexp(
    group: DhGroup,
    base: &[u8],
    exp: &U512,
    exp_bits: u32,
) -> Option<Zeroizing<Vec<u8>>> {
    let mut bytes = Zeroizing::new(exp.to_be_bytes());
    let bytes: &mut [u8] = bytes.as_mut();
    // Keep the low exp_bits bits only (callers pass a multiple of 8; a partial top byte is
    // masked for completeness). A bound past 512 bits keeps all of them.
    let exp_bits = exp_bits.min(U512::BITS);
    let keep = (exp_bits as usize).div_ceil(8);
    let cut = bytes.len() - keep;
    bytes[..cut].zeroize();
    if !exp_bits.is_multiple_of(8) {
        bytes[cut] &= (1u8 << (exp_bits % 8)) - 1;
    }
    let mut x = BigNum::from_slice(bytes).ok()?;
    x.set_const_time();
    let result = (|| {
        let p = BigNum::from_slice(&group.prime()).ok()?;
        let y = BigNum::from_slice(base).ok()?;
        let mut ctx = BigNumContext::new().ok()?;
        let mut r = BigNum::new().ok()?;
        let ok = r.mod_exp(&y, &x, &p, &mut ctx).is_ok();
        let out = ok
            .then(|| r.to_vec_padded(group.len() as i32).ok())
            .flatten()
            .map(Zeroizing::new);
        r.clear();
        out
    })();
    x.clear();
    result
}

//! g^x for the fixed generator g = 2 by a precomputed table (fixed-base exponentiation,
//! Handbook of Applied Cryptography §14.6.3; where Algorithm 14.109 stores only g^(16^i) and
//! multiplies the digits in by value, this table holds every g^(j·16^i), so each digit costs
//! exactly one multiplication).
//!
//! Every MODP group has the same base (RFC 2409 §6, RFC 3526: generator 2), so the powers
//! g^(j·16^i) can be computed once per group. With x = Σ d_i·16^i (4-bit digits d_i),
//! g^x = Π_i g^(d_i·16^i): one Montgomery multiplication per digit and no squaring at all,
//! `exponent_bits / 4` multiplications in total (64 for group 14) instead of the
//! `exponent_bits` squarings + `exponent_bits / 4` multiplications of a windowed
//! exponentiation (about 320 for group 14).
//!
//! Constant time: the loop runs over every digit position up to the public bit bound, each
//! step reads all 16 entries of its row and keeps one by masking (each entry ANDed with a mask
//! that is all ones only where j equals the digit, from `ct_eq` / `ct_select`, then ORed in;
//! never an index or a branch on the digit), then multiplies. The sequence of
//! operations and memory addresses depends only on the group and the bit bound, which are
//! public; the digits only decide masked copies.
//!
//! Memory: 16 entries (j = 0 included, so a zero digit needs no special case) of one group
//! element per digit position, `exponent_bits / 4 · 16 · len()` bytes, built lazily on a
//! group's first key pair: 96 KiB for group 1, 128 KiB for group 2, 192 KiB for group 5,
//! 256 KiB for group 14, 480 KiB for group 15, 768 KiB for group 16. Building it costs about
//! 18 multiplications per digit position (a few milliseconds for group 14), once.

use crypto_bigint::ctutils::{CtEq, CtSelect};
use crypto_bigint::modular::{FixedMontyForm, FixedMontyParams};
use crypto_bigint::{U512, Uint, Word};
use zeroize::Zeroize;

/// Bits per digit.
const WINDOW: u32 = 4;
/// Entries per row: g^(0·16^i) .. g^(15·16^i).
const ROW: usize = 1 << WINDOW;

/// The table of one group: row i holds g^(j·16^i) for j = 0..16, in Montgomery form.
pub(super) struct FixedBase<const L: usize> {
    params: FixedMontyParams<L>,
    rows: Box<[[Uint<L>; ROW]]>,
}

impl<const L: usize> FixedBase<L> {
    /// Precomputes the rows for exponents of up to `exponent_bits` bits (a multiple of 4).
    /// The base and modulus are public: nothing here is secret.
    pub(super) fn new(params: FixedMontyParams<L>, g: u8, exponent_bits: u32) -> Self {
        let positions = exponent_bits.min(U512::BITS).div_ceil(WINDOW) as usize;
        let one = FixedMontyForm::one(&params);
        let mut base = FixedMontyForm::new(&Uint::from_u8(g), &params);
        let mut rows = Vec::with_capacity(positions);
        for _ in 0..positions {
            let mut row = [*one.as_montgomery(); ROW];
            let mut power = one;
            for entry in row.iter_mut().skip(1) {
                power = power.mul(&base);
                *entry = *power.as_montgomery();
            }
            rows.push(row);
            // base = base^16 for the next digit position.
            for _ in 0..WINDOW {
                base = base.square();
            }
        }
        Self {
            params,
            rows: rows.into_boxed_slice(),
        }
    }

    /// g^x mod p, taking the low `exponent_bits` bits of `x` (the same bound as
    /// `pow_bounded_exp`; at most the table's bound). Constant-time in `x`: see the module
    /// comment.
    pub(super) fn pow(&self, x: &U512, exponent_bits: u32) -> FixedMontyForm<L> {
        let exponent_bits = exponent_bits.min(U512::BITS);
        let positions = (exponent_bits.div_ceil(WINDOW) as usize).min(self.rows.len());
        let limbs = x.as_limbs();
        let mut acc = FixedMontyForm::one(&self.params);
        let mut entry = Uint::<L>::ZERO;
        for (i, row) in self.rows[..positions].iter().enumerate() {
            let bit = i * WINDOW as usize;
            let mut digit: Word =
                (limbs[bit / Word::BITS as usize].0 >> (bit % Word::BITS as usize)) & 0xf;
            // Bits past the bound are ignored, as pow_bounded_exp does.
            let left = exponent_bits as usize - bit;
            if left < WINDOW as usize {
                digit &= (1 << left) - 1;
            }
            // entry = OR over the row of (candidate AND mask), the mask all ones for j = digit
            // only: every entry is read, whatever the digit.
            entry = Uint::ZERO;
            for (j, candidate) in row.iter().enumerate() {
                let mask = Word::ct_select(&0, &Word::MAX, (j as Word).ct_eq(&digit));
                for (e, c) in entry.as_mut_limbs().iter_mut().zip(candidate.as_limbs()) {
                    e.0 |= c.0 & mask;
                }
            }
            digit.zeroize();
            acc = acc.mul(&FixedMontyForm::from_montgomery(entry, &self.params));
        }
        entry.zeroize();
        acc
    }
}

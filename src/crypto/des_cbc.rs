//! DES-CBC and 3DES-CBC (EDE3) for ESP (RFC 2405, RFC 2451) and the ISAKMP SA: a table-driven
//! DES (FIPS 46-3) keyed once per SA.
//!
//! * Each S-box is merged with the P permutation into one table of 64 words (`SP`, 8 x 64
//!   `u32`, 2 KiB, computed at compile time from the FIPS 46-3 tables below), so a round is
//!   eight lookups and XORs; the E expansion is two rotations of R, because R is kept rotated
//!   left by one bit, which puts the eight 6-bit S-box inputs on byte boundaries of two words.
//! * IP and FP are delta swaps on the two 32-bit halves (five each). In CBC they sit off the
//!   serial chain: IP is a bit permutation, so IP(P ^ C) = IP(P) ^ IP(C), and IP(C) of the last
//!   ciphertext is the state the rounds left. EDE3 runs its 48 rounds between one IP and one FP
//!   (FP then IP between the three DES operations cancel).
//! * The 16 subkeys of each DES key are computed once, pre-split into the two words the round
//!   XORs into R (`Subkeys`: 128 bytes per DES key). Decryption runs the same subkeys in
//!   reverse order, so one schedule serves both directions and an SA keeps nothing extra for
//!   its [`super::Way`]. Schedules zeroize on drop.
//! * CBC decryption and a batch of CBC encryptions run several independent blocks (or packets'
//!   chains) through the rounds in lockstep ([`LANES`]): one chain is latency-bound (each
//!   round waits for the loads of the previous one).
//!
//! Side channels: the table index of every lookup is secret (key bits XOR data bits), so which
//! cache lines of `SP` a block touches depends on key and data: cache-timing attacks by a
//! process sharing the core or its caches are possible in principle. Each S-box's table is
//! 256 bytes, four 64-byte lines, so a line-granular observer learns two of the six index bits
//! per lookup. The `des` crate (0.9) also indexes tables by secret bits (its E and P are
//! shifts and masks, its S-boxes lookups): `[u8; 64]` per box, 512 bytes in all and not
//! line-aligned, so one or two lines per box, and a line-granular observer learns at most one
//! index bit per lookup from it; sub-line effects (cache-bank conflicts, 4K aliasing) apply to
//! both. OpenSSL's DES (`DES_SPtrans`, 8 x 64 `u32`) is laid out as here: the same posture as
//! OpenSSL's, a larger footprint than the crate's. DES and 3DES are legacy suites kept for old
//! peers; AES (AES-NI, no tables) is what the project recommends.

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Independent blocks (CBC decryption) or packets' chains (batch encryption) run through the
/// rounds together: enough to hide one chain's load-to-use latency, few enough for the states
/// to stay in registers.
pub const LANES: usize = 4;

/// FIPS 46-3 S-boxes S1..S8: `S[i][row][column]`, row = bits 1 and 6 of the 6-bit input,
/// column = bits 2..5.
#[rustfmt::skip]
const S: [[[u8; 16]; 4]; 8] = [
    [
        [14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7],
        [0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12, 11, 9, 5, 3, 8],
        [4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0],
        [15, 12, 8, 2, 4, 9, 1, 7, 5, 11, 3, 14, 10, 0, 6, 13],
    ],
    [
        [15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10],
        [3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1, 10, 6, 9, 11, 5],
        [0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15],
        [13, 8, 10, 1, 3, 15, 4, 2, 11, 6, 7, 12, 0, 5, 14, 9],
    ],
    [
        [10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8],
        [13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5, 14, 12, 11, 15, 1],
        [13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7],
        [1, 10, 13, 0, 6, 9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12],
    ],
    [
        [7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15],
        [13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2, 12, 1, 10, 14, 9],
        [10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4],
        [3, 15, 0, 6, 10, 1, 13, 8, 9, 4, 5, 11, 12, 7, 2, 14],
    ],
    [
        [2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9],
        [14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15, 10, 3, 9, 8, 6],
        [4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14],
        [11, 8, 12, 7, 1, 14, 2, 13, 6, 15, 0, 9, 10, 4, 5, 3],
    ],
    [
        [12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11],
        [10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13, 14, 0, 11, 3, 8],
        [9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6],
        [4, 3, 2, 12, 9, 5, 15, 10, 11, 14, 1, 7, 6, 0, 8, 13],
    ],
    [
        [4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1],
        [13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5, 12, 2, 15, 8, 6],
        [1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2],
        [6, 11, 13, 8, 1, 4, 10, 7, 9, 5, 0, 15, 14, 2, 3, 12],
    ],
    [
        [13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7],
        [1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6, 11, 0, 14, 9, 2],
        [7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8],
        [2, 1, 14, 7, 4, 10, 8, 13, 15, 12, 9, 0, 3, 5, 6, 11],
    ],
];

/// FIPS 46-3 P: output bit `j` (1-based, 1 = most significant) is input bit `P[j - 1]`.
#[rustfmt::skip]
const P: [u8; 32] = [
    16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10,
    2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25,
];

/// FIPS 46-3 PC-1 (key bits to C0 || D0) and PC-2 (Cn || Dn to the round's 48-bit subkey).
#[rustfmt::skip]
const PC1: [u8; 56] = [
    57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18,
    10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60, 52, 44, 36,
    63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22,
    14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4,
];
#[rustfmt::skip]
const PC2: [u8; 48] = [
    14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10,
    23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2,
    41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48,
    44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32,
];

/// FIPS 46-3: left rotations of C and D before each round's PC-2.
const SHIFTS: [u8; 16] = [1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1];

/// The S-boxes merged with P, one cache-line-aligned 2 KiB block: `SP.0[i][x]` is
/// P(S(i+1)(x) in its nibble of the S-box output), rotated left by one bit like the halves
/// the rounds work on, for the S-box input `x` as FIPS 46-3 numbers it (bit 1 the most
/// significant of the six).
#[repr(align(64))]
struct SpTables([[u32; 64]; 8]);

static SP: SpTables = SpTables(sp_tables());

const fn sp_tables() -> [[u32; 64]; 8] {
    let mut t = [[0u32; 64]; 8];
    let mut i = 0;
    while i < 8 {
        let mut x = 0;
        while x < 64 {
            let row = ((x >> 4) & 2) | (x & 1);
            let col = (x >> 1) & 15;
            let s = (S[i][row][col] as u32) << (28 - 4 * i);
            t[i][x] = permute_p(s).rotate_left(1);
            x += 1;
        }
        i += 1;
    }
    t
}

const fn permute_p(s: u32) -> u32 {
    let mut out = 0;
    let mut j = 0;
    while j < 32 {
        out |= ((s >> (32 - P[j] as u32)) & 1) << (31 - j);
        j += 1;
    }
    out
}

/// One DES key's 16 round subkeys, each as the two words XORed into R before the lookups:
/// `[0]` holds the 6-bit groups of S1, S3, S5, S7 in its bytes 3..0 (low six bits of each),
/// `[1]` those of S2, S4, S6, S8.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct Subkeys([[u32; 2]; 16]);

impl Subkeys {
    /// FIPS 46-3 key schedule: PC-1, the rotations, PC-2; the parity bits are ignored.
    fn new(key: &[u8; 8]) -> Self {
        let mut k = u64::from_be_bytes(*key);
        let bit = |v: u64, n: u8| (v >> (64 - n)) & 1;
        // C || D in the top 56 bits of a u64, bit 1 of C the most significant.
        let mut cd = 0u64;
        for (j, &n) in PC1.iter().enumerate() {
            cd |= bit(k, n) << (63 - j);
        }
        k.zeroize();
        let mut c = (cd >> 36) as u32 & 0x0fff_ffff;
        let mut d = (cd >> 8) as u32 & 0x0fff_ffff;
        let rot28 = |v: u32, n: u8| ((v << n) | (v >> (28 - n))) & 0x0fff_ffff;
        let mut out = [[0u32; 2]; 16];
        for (round, &shift) in SHIFTS.iter().enumerate() {
            c = rot28(c, shift);
            d = rot28(d, shift);
            cd = (u64::from(c) << 36) | (u64::from(d) << 8);
            let mut groups = [0u32; 8];
            for (j, &n) in PC2.iter().enumerate() {
                groups[j / 6] |= (bit(cd, n) as u32) << (5 - j % 6);
            }
            out[round] = [
                groups[0] << 24 | groups[2] << 16 | groups[4] << 8 | groups[6],
                groups[1] << 24 | groups[3] << 16 | groups[5] << 8 | groups[7],
            ];
            groups.zeroize();
        }
        (c, d, cd).zeroize();
        Self(out)
    }
}

/// f(R, K) of one round for R kept rotated left by one bit (FIPS 46-3 §"The cipher function
/// f"): the six-bit groups of E(R) are then bytes 3..0 of R rotated right by four (S1, S3,
/// S5, S7) and of R itself (S2, S4, S6, S8).
#[inline(always)]
fn f(r: u32, k: &[u32; 2]) -> u32 {
    let sp = &SP.0;
    let a = r.rotate_right(4) ^ k[0];
    let b = r ^ k[1];
    let i = |w: u32, shift: u32| (w >> shift) as usize & 63;
    sp[0][i(a, 24)]
        ^ sp[2][i(a, 16)]
        ^ sp[4][i(a, 8)]
        ^ sp[6][i(a, 0)]
        ^ sp[1][i(b, 24)]
        ^ sp[3][i(b, 16)]
        ^ sp[5][i(b, 8)]
        ^ sp[7][i(b, 0)]
}

/// Sixteen rounds on `N` independent states, subkeys in order or (decryption) reversed:
/// afterwards `a` holds L16 and `b` R16.
#[inline(always)]
fn rounds16<const REV: bool, const N: usize>(k: &Subkeys, a: &mut [u32; N], b: &mut [u32; N]) {
    for pair in 0..8 {
        let (k0, k1) = if REV {
            (&k.0[15 - 2 * pair], &k.0[14 - 2 * pair])
        } else {
            (&k.0[2 * pair], &k.0[2 * pair + 1])
        };
        for n in 0..N {
            a[n] ^= f(b[n], k0);
        }
        for n in 0..N {
            b[n] ^= f(a[n], k1);
        }
    }
}

/// `t = ((a >> shift) ^ b) & mask`, then the selected bits of `b` and of `a << shift` trade
/// places: a delta swap across the two halves.
#[inline(always)]
fn swap(a: &mut u32, b: &mut u32, shift: u32, mask: u32) {
    let t = ((*a >> shift) ^ *b) & mask;
    *b ^= t;
    *a ^= t << shift;
}

/// IP (FIPS 46-3) of a block as two big-endian halves, then each half rotated left by one
/// bit (the form the rounds use).
#[inline(always)]
fn ip(block: &[u8]) -> (u32, u32) {
    let mut l = u32::from_be_bytes([block[0], block[1], block[2], block[3]]);
    let mut r = u32::from_be_bytes([block[4], block[5], block[6], block[7]]);
    swap(&mut l, &mut r, 4, 0x0f0f_0f0f);
    swap(&mut l, &mut r, 16, 0x0000_ffff);
    swap(&mut r, &mut l, 2, 0x3333_3333);
    swap(&mut r, &mut l, 8, 0x00ff_00ff);
    swap(&mut l, &mut r, 1, 0x5555_5555);
    (l.rotate_left(1), r.rotate_left(1))
}

/// FP = IP⁻¹ of the pre-output (R16 as `l`, L16 as `r`, both rotated as [`ip`] leaves them):
/// the swaps of [`ip`] in reverse order.
#[inline(always)]
fn fp(l: u32, r: u32, out: &mut [u8]) {
    let (mut l, mut r) = (l.rotate_right(1), r.rotate_right(1));
    swap(&mut l, &mut r, 1, 0x5555_5555);
    swap(&mut r, &mut l, 8, 0x00ff_00ff);
    swap(&mut r, &mut l, 2, 0x3333_3333);
    swap(&mut l, &mut r, 16, 0x0000_ffff);
    swap(&mut l, &mut r, 4, 0x0f0f_0f0f);
    out[..4].copy_from_slice(&l.to_be_bytes());
    out[4..8].copy_from_slice(&r.to_be_bytes());
}

/// A DES or EDE3 key schedule: the rounds between IP and FP, both ways.
pub trait DesRounds {
    /// Encrypts `N` blocks given as IP halves; leaves the pre-output halves (R, L).
    fn encrypt<const N: usize>(&self, l: &mut [u32; N], r: &mut [u32; N]);
    /// Decrypts likewise.
    fn decrypt<const N: usize>(&self, l: &mut [u32; N], r: &mut [u32; N]);
}

/// A single-DES key schedule (128 bytes), both directions.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DesKey(Subkeys);

impl DesKey {
    pub fn new(key: &[u8; 8]) -> Self {
        Self(Subkeys::new(key))
    }
}

impl DesRounds for DesKey {
    #[inline(always)]
    fn encrypt<const N: usize>(&self, l: &mut [u32; N], r: &mut [u32; N]) {
        rounds16::<false, N>(&self.0, l, r);
        std::mem::swap(l, r);
    }

    #[inline(always)]
    fn decrypt<const N: usize>(&self, l: &mut [u32; N], r: &mut [u32; N]) {
        rounds16::<true, N>(&self.0, l, r);
        std::mem::swap(l, r);
    }
}

/// A 3DES (EDE3, NIST SP 800-67) key schedule: three DES schedules (384 bytes), both
/// directions.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct TdesKey([Subkeys; 3]);

impl TdesKey {
    /// Keys K1, K2, K3 are the 24 bytes in that order (RFC 2451 §2.4).
    pub fn new(key: &[u8; 24]) -> Self {
        let part = |i: usize| {
            let mut k = [0u8; 8];
            k.copy_from_slice(&key[8 * i..8 * i + 8]);
            let s = Subkeys::new(&k);
            k.zeroize();
            s
        };
        Self([part(0), part(1), part(2)])
    }
}

impl DesRounds for TdesKey {
    /// E(K1), D(K2), E(K3): between two DES operations FP and IP cancel and the halves
    /// trade places, which is running the next sixteen rounds with the roles of the halves
    /// exchanged.
    #[inline(always)]
    fn encrypt<const N: usize>(&self, l: &mut [u32; N], r: &mut [u32; N]) {
        rounds16::<false, N>(&self.0[0], l, r);
        rounds16::<true, N>(&self.0[1], r, l);
        rounds16::<false, N>(&self.0[2], l, r);
        std::mem::swap(l, r);
    }

    /// D(K3), E(K2), D(K1).
    #[inline(always)]
    fn decrypt<const N: usize>(&self, l: &mut [u32; N], r: &mut [u32; N]) {
        rounds16::<true, N>(&self.0[2], l, r);
        rounds16::<false, N>(&self.0[1], r, l);
        rounds16::<true, N>(&self.0[0], l, r);
        std::mem::swap(l, r);
    }
}

/// CBC-encrypts `data` (whole 8-byte blocks, checked by the caller) in place after `iv`.
/// The chain stays in the IP domain: IP(P ^ C) = IP(P) ^ IP(C), and IP(C) is the pre-output
/// the rounds left, so IP and FP are off the serial path.
pub fn encrypt_cbc<K: DesRounds>(k: &K, iv: &[u8; 8], data: &mut [u8]) {
    let (mut cl, mut cr) = ip(iv);
    for block in data.chunks_exact_mut(8) {
        let (pl, pr) = ip(block);
        let (mut l, mut r) = ([pl ^ cl], [pr ^ cr]);
        k.encrypt(&mut l, &mut r);
        (cl, cr) = (l[0], r[0]);
        fp(cl, cr, block);
    }
}

/// CBC-decrypts `data` (whole 8-byte blocks, checked by the caller) in place after `iv`,
/// [`LANES`] blocks at a time (each block's decryption is independent in CBC).
pub fn decrypt_cbc<K: DesRounds>(k: &K, iv: &[u8; 8], data: &mut [u8]) {
    let (mut cl, mut cr) = ip(iv);
    let mut groups = data.chunks_exact_mut(8 * LANES);
    for group in &mut groups {
        let (mut l, mut r) = ([0u32; LANES], [0u32; LANES]);
        let mut prev = ([0u32; LANES], [0u32; LANES]);
        for n in 0..LANES {
            (prev.0[n], prev.1[n]) = (cl, cr);
            (l[n], r[n]) = ip(&group[8 * n..]);
            (cl, cr) = (l[n], r[n]);
        }
        k.decrypt(&mut l, &mut r);
        for n in 0..LANES {
            fp(l[n] ^ prev.0[n], r[n] ^ prev.1[n], &mut group[8 * n..]);
        }
    }
    for block in groups.into_remainder().chunks_exact_mut(8) {
        let (bl, br) = ip(block);
        let (mut l, mut r) = ([bl], [br]);
        k.decrypt(&mut l, &mut r);
        fp(l[0] ^ cl, r[0] ^ cr, block);
        (cl, cr) = (bl, br);
    }
}

/// CBC-encrypts several packets in place, each `IV (8 bytes) | whole blocks` (checked by the
/// caller): [`LANES`] packets' chains at a time (two for the rest of the batch) in lockstep
/// over their common length, then each one's rest alone.
pub fn encrypt_cbc_lanes<K: DesRounds>(k: &K, packets: &mut [&mut [u8]]) {
    let mut groups = packets.chunks_exact_mut(LANES);
    for group in &mut groups {
        encrypt_cbc_group::<K, LANES>(k, group);
    }
    let mut pairs = groups.into_remainder().chunks_exact_mut(2);
    for pair in &mut pairs {
        encrypt_cbc_group::<K, 2>(k, pair);
    }
    for p in pairs.into_remainder() {
        encrypt_cbc_group::<K, 1>(k, std::slice::from_mut(p));
    }
}

/// [`encrypt_cbc_lanes`] of exactly `N` packets.
fn encrypt_cbc_group<K: DesRounds, const N: usize>(k: &K, group: &mut [&mut [u8]]) {
    let common = group.iter().map(|p| p.len()).min().unwrap_or(0);
    let (mut cl, mut cr) = ([0u32; N], [0u32; N]);
    for n in 0..N {
        (cl[n], cr[n]) = ip(&group[n][..8]);
    }
    let mut at = 8;
    while at + 8 <= common {
        for n in 0..N {
            let (pl, pr) = ip(&group[n][at..]);
            cl[n] ^= pl;
            cr[n] ^= pr;
        }
        k.encrypt(&mut cl, &mut cr);
        for n in 0..N {
            fp(cl[n], cr[n], &mut group[n][at..]);
        }
        at += 8;
    }
    for (n, p) in group.iter_mut().enumerate() {
        if at < p.len() {
            // The chain goes on from the last ciphertext block (or the IV).
            let mut iv = [0u8; 8];
            fp(cl[n], cr[n], &mut iv);
            encrypt_cbc(k, &iv, &mut p[at..]);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::crypto::{CryptoError, EncrAlgorithm, EspCipher, Way};

    /// CBC with the `des` crate's block ciphers, block by block: the reference.
    pub(crate) fn des_crate_cbc(
        alg: EncrAlgorithm,
        key: &[u8],
        iv: &[u8],
        data: &mut [u8],
        encrypt: bool,
    ) {
        fn run<C: BlockCipherEncrypt + BlockCipherDecrypt + KeyInit>(
            key: &[u8],
            iv: &[u8],
            data: &mut [u8],
            encrypt: bool,
        ) {
            let c = C::new_from_slice(key).unwrap();
            let mut prev = [0u8; 8];
            prev.copy_from_slice(iv);
            for block in data.chunks_exact_mut(8) {
                if encrypt {
                    block.iter_mut().zip(&prev).for_each(|(b, p)| *b ^= p);
                    c.encrypt_block(block.try_into().unwrap());
                    prev.copy_from_slice(block);
                } else {
                    let next: [u8; 8] = (&*block).try_into().unwrap();
                    c.decrypt_block(block.try_into().unwrap());
                    block.iter_mut().zip(&prev).for_each(|(b, p)| *b ^= p);
                    prev = next;
                }
            }
        }
        match alg {
            EncrAlgorithm::Des => run::<des::Des>(key, iv, data, encrypt),
            EncrAlgorithm::TripleDes => run::<des::TdesEde3>(key, iv, data, encrypt),
            other => panic!("{other:?} is not DES"),
        }
    }

    const ALGS: [EncrAlgorithm; 2] = [EncrAlgorithm::Des, EncrAlgorithm::TripleDes];

    /// Every length 0..=2048 in steps of 8, a fresh random key, IV and message each time,
    /// through the ESP SA's one-way ciphers and the ISAKMP SA's both-ways one, against the
    /// `des` crate both ways.
    #[test]
    fn cbc_matches_the_des_crate_for_every_length_0_to_2048() {
        let mut rng = StdRng::seed_from_u64(0xde5);
        for alg in ALGS {
            for len in (0..=2048).step_by(8) {
                let mut key = vec![0u8; alg.key_len()];
                let (mut iv, mut plain) = ([0u8; 8], vec![0u8; len]);
                rng.fill_bytes(&mut key);
                rng.fill_bytes(&mut iv);
                rng.fill_bytes(&mut plain);
                let mut want = plain.clone();
                des_crate_cbc(alg, &key, &iv, &mut want, true);
                let enc = EspCipher::new(alg, &key, Way::Encrypt).unwrap();
                let dec = EspCipher::new(alg, &key, Way::Decrypt).unwrap();
                let both = EspCipher::unbatched(alg, &key).unwrap();
                for (e, d) in [(&enc, &dec), (&both, &both)] {
                    let mut buf = plain.clone();
                    e.encrypt_cbc(&iv, &mut buf).unwrap();
                    assert_eq!(buf, want, "{alg:?} {len} encrypt {:?}", e.way());
                    d.decrypt_cbc(&iv, &mut buf).unwrap();
                    assert_eq!(buf, plain, "{alg:?} {len} decrypt {:?}", d.way());
                }
                // Decryption of data the crate did not make: random "ciphertext".
                let mut want = plain.clone();
                des_crate_cbc(alg, &key, &iv, &mut want, false);
                let mut buf = plain.clone();
                dec.decrypt_cbc(&iv, &mut buf).unwrap();
                assert_eq!(buf, want, "{alg:?} {len} decrypt of random data");
            }
        }
    }

    /// Batches of 1..=8 packets of random lengths (the lanes run in lockstep over the
    /// shortest, then each alone) equal the crate's CBC of each packet.
    #[test]
    fn batch_encryption_matches_the_des_crate_for_batches_of_1_to_8() {
        let mut rng = StdRng::seed_from_u64(0x3de5);
        for alg in ALGS {
            for round in 0..64 {
                let count = 1 + round % 8;
                let mut key = vec![0u8; alg.key_len()];
                rng.fill_bytes(&mut key);
                let mut bufs: Vec<Vec<u8>> = (0..count)
                    .map(|_| {
                        let mut v = vec![0u8; 8 + 8 * (rng.next_u32() as usize % 40)];
                        rng.fill_bytes(&mut v);
                        v
                    })
                    .collect();
                let mut want = bufs.clone();
                for w in want.iter_mut() {
                    let (iv, data) = w.split_at_mut(8);
                    des_crate_cbc(alg, &key, iv, data, true);
                }
                for way in [Way::Encrypt, Way::Both] {
                    let c = EspCipher::new(alg, &key, way).unwrap();
                    let mut got = bufs.clone();
                    let mut refs: Vec<&mut [u8]> = got.iter_mut().map(|b| &mut b[..]).collect();
                    c.encrypt_cbc_batch(&mut refs).unwrap();
                    assert_eq!(got, want, "{alg:?} {way:?} {count} packets");
                }
                bufs.clear();
            }
        }
    }

    /// An ESP SA's cipher is one way (RFC 4301 §4.1) and refuses the other, as for AES; the
    /// one DES schedule serves both directions, so every way keeps the same bytes.
    #[test]
    fn wrong_direction_is_refused_and_the_schedule_is_the_same_size_every_way() {
        for (alg, bytes) in [(EncrAlgorithm::Des, 128), (EncrAlgorithm::TripleDes, 384)] {
            let key = vec![5u8; alg.key_len()];
            let enc = EspCipher::new(alg, &key, Way::Encrypt).unwrap();
            let dec = EspCipher::new(alg, &key, Way::Decrypt).unwrap();
            let both = EspCipher::unbatched(alg, &key).unwrap();
            let mut b = [0u8; 16];
            assert_eq!(
                enc.decrypt_cbc(&[0; 8], &mut b),
                Err(CryptoError::WrongDirection)
            );
            assert_eq!(
                dec.encrypt_cbc(&[0; 8], &mut b),
                Err(CryptoError::WrongDirection)
            );
            assert_eq!(
                dec.encrypt_cbc_batch(&mut [&mut b[..]]),
                Err(CryptoError::WrongDirection)
            );
            assert_eq!(b, [0; 16], "a refused call changed the data");
            for c in [&enc, &dec, &both] {
                assert_eq!(c.key_schedule_bytes(), bytes, "{alg:?} {:?}", c.way());
            }
            assert_eq!(
                enc.encrypt_cbc(&[0; 8], &mut [0; 12]),
                Err(CryptoError::NotBlockAligned)
            );
            assert_eq!(
                dec.decrypt_cbc(&[0; 16], &mut [0; 16]),
                Err(CryptoError::IvLength)
            );
            assert_eq!(
                enc.encrypt_cbc_batch(&mut [&mut [0u8; 20][..]]),
                Err(CryptoError::NotBlockAligned)
            );
        }
        assert!(EspCipher::new(EncrAlgorithm::Des, &[0; 7], Way::Encrypt).is_err());
    }

    /// FIPS 46-3 IP, bit by bit.
    #[rustfmt::skip]
    const IP: [u8; 64] = [
        58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4,
        62, 54, 46, 38, 30, 22, 14, 6, 64, 56, 48, 40, 32, 24, 16, 8,
        57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3,
        61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7,
    ];

    fn ip_by_table(x: u64) -> u64 {
        (0..64).fold(0, |o, j| o | ((x >> (64 - IP[j] as u32)) & 1) << (63 - j))
    }

    #[test]
    fn delta_swaps_are_ip_and_fp() {
        let mut x = 0x0123_4567_89ab_cdefu64;
        for _ in 0..1000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let want = ip_by_table(x);
            let (l, r) = ip(&x.to_be_bytes());
            let got = (u64::from(l.rotate_right(1)) << 32) | u64::from(r.rotate_right(1));
            assert_eq!(got, want, "{x:016x}");
            let mut back = [0u8; 8];
            fp(l, r, &mut back);
            assert_eq!(u64::from_be_bytes(back), x);
        }
        // One bit at a time, so that no permutation slips through.
        for b in 0..64 {
            let (l, r) = ip(&(1u64 << b).to_be_bytes());
            let got = (u64::from(l.rotate_right(1)) << 32) | u64::from(r.rotate_right(1));
            assert_eq!(got, ip_by_table(1 << b), "bit {b}");
        }
    }

    #[test]
    fn s_box_rows_are_permutations() {
        for (i, sbox) in S.iter().enumerate() {
            for row in sbox {
                let mut seen = 0u16;
                for &v in row {
                    seen |= 1 << v;
                }
                assert_eq!(seen, 0xffff, "S{}", i + 1);
            }
        }
        let mut seen = 0u64;
        for &p in &P {
            seen |= 1 << (p - 1);
        }
        assert_eq!(seen, 0xffff_ffff);
    }
}

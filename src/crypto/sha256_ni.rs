//! SHA-256 on SHA-NI, several independent chains at once ([`compress_chains`]), HMAC-SHA-256
//! keyed once per SA ([`HmacSha256Pads`]) and the HMAC-SHA-256 of a batch of ESP packets on
//! those chains ([`hmac_batch`]): the integrity half of AES-CBC + HMAC-SHA-256-128 (RFC 4868)
//! in the two-pass batch path of [`super::stitch`] (issue 12 point 3).
//!
//! One SHA-256 chain is serial: each `sha256rnds2` (two rounds) needs the state the previous
//! one wrote. On AMD Zen 3 (the EPYC this was written on) the instruction is latency-bound, as
//! `sha1rnds4` is ([`super::sha1_ni`]), so independent chains interleaved fill the unit. A
//! scratch microbench over 264 blocks, best of five runs: the `sha2` crate's one-chain SHA-NI
//! compression 1,560-1,600 MB/s, [`compress_chains`] with 1 chain 1,450-1,460, 2 chains
//! 2,000-2,060, 3 2,430-2,470, 4 2,550-2,600, 5 2,620-2,670 (one run of 4 and 5 fell to
//! 2,070 / 1,700, the core being shared). Four chains: 1.6x the crate's one chain.
//! Whether that holds on another CPU no table tells: the daemon times it once at start
//! (`actors/crypto_probe.rs`; the core reads no clock) and tells the core with
//! [`set_chains_pay`].
//!
//! The chains interleave four rounds at a time (`sha256msg1`, `palignr` + add, `sha256msg2`
//! for the schedule, two `sha256rnds2`), chain 0, then chain 1, ..., the Intel SHA extensions
//! whitepaper's order within a chain, the same as the `sha2` crate's x86 backend.

#[cfg(target_arch = "x86_64")]
pub use x86::compress_chains;

use std::sync::atomic::{AtomicBool, Ordering};

use sha2::Digest;
use zeroize::Zeroize;

use super::sha1_mb;
use super::stitch::{BLOCK, HmacPads, keyed_pads};

/// Chains one [`compress_chains`] call of [`hmac_batch`] runs (four: see the module docs).
pub const CHAINS: usize = 4;

/// Below this many busy chains, with no message waiting, the last one finishes alone on the
/// `sha2` crate's one-chain compression; a batch of one message goes that way throughout.
pub const MIN_CHAINS: usize = 2;

/// FIPS 180-4 §5.3.3 initial hash value.
const H0: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Whether [`compress_chains`] can run on this CPU: SHA-NI with SSSE3 and SSE4.1, the same
/// extensions as SHA-1's chains.
pub use super::sha1_ni::available;

/// Whether [`CHAINS`] chains at once were measured to hash clearly faster than one chain on
/// this CPU (`actors/crypto_probe.rs`, once at start: at least 1.3 times the bytes per unit of
/// time). Until told, the core assumes they do not and HMAC-SHA-256 stays packet by packet;
/// the answer decides only how fast a batch goes, never its bytes (tested).
pub fn chains_pay() -> bool {
    CHAINS_PAY.load(Ordering::Relaxed)
}

/// Records the start-up probe's answer for [`chains_pay`].
pub fn set_chains_pay(pays: bool) {
    CHAINS_PAY.store(pays, Ordering::Relaxed);
}

static CHAINS_PAY: AtomicBool = AtomicBool::new(false);

/// HMAC-SHA-256 (RFC 2104, RFC 4868) keyed once per SA: the SHA-256 states after the
/// `K ^ ipad` and `K ^ opad` blocks, so a packet costs only its own blocks plus one outer
/// block.
#[derive(Clone)]
pub struct HmacSha256Pads {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl Drop for HmacSha256Pads {
    fn drop(&mut self) {
        self.inner.zeroize();
        self.outer.zeroize();
    }
}

impl HmacSha256Pads {
    pub fn new(key: &[u8]) -> Self {
        let (inner, outer) = keyed_pads::<Self>(key, H0, |k| sha2::Sha256::digest(k).into());
        Self { inner, outer }
    }

    /// The full HMAC of `msg`, one block after the other.
    pub fn mac(&self, msg: &[u8]) -> [u8; 32] {
        let mut m = [[0u8; 32]; 1];
        sha1_mb::hmac_each(self, &[msg], 0, &mut m);
        m[0]
    }
}

impl HmacPads for HmacSha256Pads {
    type State = [u32; 8];
    type Digest = [u8; 32];
    const DIGEST: usize = 32;
    fn inner(&self) -> [u32; 8] {
        self.inner
    }
    fn outer(&self) -> [u32; 8] {
        self.outer
    }
    fn compress(state: &mut [u32; 8], block: &[u8; BLOCK]) {
        sha2::block_api::compress256(state, std::slice::from_ref(block));
    }
    fn digest(state: &[u32; 8]) -> [u8; 32] {
        let mut d = [0u8; 32];
        for (c, w) in d.chunks_exact_mut(4).zip(state) {
            c.copy_from_slice(&w.to_be_bytes());
        }
        d
    }
}

/// HMAC-SHA-256 of many messages at once: `macs[i]` gets the MAC of `msgs[i]` without its
/// last `trim` bytes (an ESP packet's ICV). The messages run [`CHAINS`] at a time through
/// [`compress_chains`], each chain taking the next message when its own is done (the lane
/// scheduler of [`sha1_mb`]); without SHA-NI, or with fewer than [`MIN_CHAINS`] messages, one
/// after the other.
pub fn hmac_batch<M: AsRef<[u8]>>(
    pads: &HmacSha256Pads,
    msgs: &[M],
    trim: usize,
    macs: &mut [[u8; 32]],
) {
    #[cfg(target_arch = "x86_64")]
    sha1_mb::lanes_or_each::<HmacSha256Pads, M, CHAINS>(
        available(),
        MIN_CHAINS,
        pads,
        msgs,
        trim,
        macs,
        // SAFETY: run only where `available` found sha, ssse3 and sse4.1.
        |state, blocks| unsafe { compress_chains(state, blocks) },
    );
    #[cfg(not(target_arch = "x86_64"))]
    sha1_mb::hmac_each(pads, msgs, trim, macs);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    use crate::crypto::aes_ni::x86::load;

    /// FIPS 180-4 §4.2.2: the 64 round constants.
    static K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    /// The state as `sha256rnds2` takes it: A, B, E, F in one register, C, D, G, H in the
    /// other (highest lane first).
    #[derive(Clone, Copy)]
    struct State {
        abef: __m128i,
        cdgh: __m128i,
    }

    impl State {
        #[inline]
        #[target_feature(enable = "sse2,ssse3,sse4.1")]
        fn load(h: &[u32; 8]) -> Self {
            let s = h.map(|x| x as i32);
            Self {
                abef: _mm_set_epi32(s[0], s[1], s[4], s[5]),
                cdgh: _mm_set_epi32(s[2], s[3], s[6], s[7]),
            }
        }

        #[inline]
        #[target_feature(enable = "sse2,ssse3,sse4.1")]
        fn store(self, h: &mut [u32; 8]) {
            let w = |v: __m128i, i: usize| -> u32 {
                match i {
                    0 => _mm_extract_epi32::<0>(v) as u32,
                    1 => _mm_extract_epi32::<1>(v) as u32,
                    2 => _mm_extract_epi32::<2>(v) as u32,
                    _ => _mm_extract_epi32::<3>(v) as u32,
                }
            };
            *h = [
                w(self.abef, 3),
                w(self.abef, 2),
                w(self.cdgh, 3),
                w(self.cdgh, 2),
                w(self.abef, 1),
                w(self.abef, 0),
                w(self.cdgh, 1),
                w(self.cdgh, 0),
            ];
        }
    }

    /// One block of one chain in progress: its start state, the current one and the last
    /// four 4-word groups of the message schedule (group `t` in slot `t % 4`).
    struct Block {
        start: State,
        cur: State,
        w: [__m128i; 4],
    }

    impl Block {
        #[inline]
        #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
        fn new(start: State, msg: &[u8]) -> Self {
            // Message words are big-endian (FIPS 180-4 §3.1).
            let bswap = _mm_set_epi64x(0x0C0D_0E0F_0809_0A0B, 0x0405_0607_0001_0203);
            Self {
                start,
                cur: start,
                w: core::array::from_fn(|g| _mm_shuffle_epi8(load(&msg[16 * g..]), bswap)),
            }
        }

        /// Rounds 4t..4t+4 (FIPS 180-4 §6.2.2). From t = 4 on, W_t..W_t+3 =
        /// σ1(W_t-2) + W_t-7 + σ0(W_t-15) + W_t-16: `sha256msg1` adds σ0, `palignr` picks
        /// W_t-7.., `sha256msg2` adds σ1 (which needs the words it has just made).
        #[inline]
        #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
        fn group(&mut self, t: usize) {
            let w = &mut self.w;
            let i = t % 4;
            if t >= 4 {
                let (w1, w2, w3) = (w[(i + 1) % 4], w[(i + 2) % 4], w[(i + 3) % 4]);
                let s0 = _mm_sha256msg1_epu32(w[i], w1);
                let w7 = _mm_alignr_epi8::<4>(w3, w2);
                w[i] = _mm_sha256msg2_epu32(_mm_add_epi32(s0, w7), w3);
            }
            let wk = _mm_add_epi32(w[i], load_k(t));
            self.cur.cdgh = _mm_sha256rnds2_epu32(self.cur.cdgh, self.cur.abef, wk);
            let hi = _mm_shuffle_epi32::<0x0E>(wk);
            self.cur.abef = _mm_sha256rnds2_epu32(self.cur.abef, self.cur.cdgh, hi);
        }

        #[inline]
        #[target_feature(enable = "sse2")]
        fn finish(self) -> State {
            State {
                abef: _mm_add_epi32(self.start.abef, self.cur.abef),
                cdgh: _mm_add_epi32(self.start.cdgh, self.cur.cdgh),
            }
        }
    }

    /// K_4t..K_4t+3, K_4t in the lowest lane.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn load_k(t: usize) -> __m128i {
        let k: &[u32; 4] = K[4 * t..4 * t + 4]
            .try_into()
            .unwrap_or_else(|_| unreachable!());
        // SAFETY: 16 readable bytes; unaligned load.
        unsafe { _mm_loadu_si128(k.as_ptr().cast()) }
    }

    /// SHA-256 blocks of `N` independent messages at once (FIPS 180-4 §6.2): `state[k]` is
    /// chain `k`'s H0..H7, `blocks[k]` its next 64-byte blocks, as many as `blocks[0]` holds
    /// (whole blocks; every chain has at least as many). Each four rounds of chain 0, then the
    /// same four of chain 1, ..., so `N` `sha256rnds2` chains are in flight at once.
    ///
    /// # Safety
    /// The CPU must support sha, ssse3 and sse4.1 ([`super::available`]).
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub unsafe fn compress_chains<const N: usize>(state: &mut [[u32; 8]; N], blocks: &[&[u8]; N]) {
        let n = blocks[0].len() / 64;
        assert!(blocks.iter().all(|b| b.len() >= n * 64));
        let mut h: [State; N] = core::array::from_fn(|k| State::load(&state[k]));
        for j in 0..n {
            let mut b: [Block; N] =
                core::array::from_fn(|k| Block::new(h[k], &blocks[k][64 * j..64 * j + 64]));
            unroll!(T in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15] {
                for s in b.iter_mut() {
                    s.group(T);
                }
            });
            h = b.map(|s| s.finish());
        }
        for (s, h) in state.iter_mut().zip(h) {
            h.store(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;
    use hmac::{Hmac, KeyInit, Mac as _};

    use super::*;
    use crate::crypto::stitch::tests::fill;

    fn plain_hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
        let mut m = <Hmac<sha2::Sha256>>::new_from_slice(key).expect("any key length");
        m.update(msg);
        m.finalize().into_bytes().into()
    }

    /// `K` chains over calls of 1, 2, 3 and 1 blocks, from pseudo-random states, against the
    /// `sha2` crate's `compress256` chain by chain.
    #[cfg(target_arch = "x86_64")]
    fn check_chains<const K: usize>(seed: usize) {
        let mut state = [[0u32; 8]; K];
        for (k, s) in state.iter_mut().enumerate() {
            let mut b = [0u8; 32];
            fill(&mut b, seed * 31 + k + 1);
            *s = core::array::from_fn(|i| {
                u32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap())
            });
        }
        let mut expected = state;
        for (call, n) in [1usize, 2, 3, 1].into_iter().enumerate() {
            // Chain k gets more bytes than the call hashes: only the first n blocks count.
            let data: Vec<Vec<u8>> = (0..K)
                .map(|k| {
                    let mut d = vec![0u8; 64 * n + 64 * k];
                    fill(&mut d, seed * 1000 + call * 10 + k);
                    d
                })
                .collect();
            for k in 0..K {
                let (b, _) = data[k][..64 * n].as_chunks::<64>();
                sha2::block_api::compress256(&mut expected[k], b);
            }
            let blocks: [&[u8]; K] = core::array::from_fn(|k| {
                if k == 0 {
                    &data[0][..64 * n]
                } else {
                    &data[k][..]
                }
            });
            // SAFETY: the caller checked `available`.
            unsafe { compress_chains(&mut state, &blocks) };
            assert_eq!(
                state, expected,
                "{K} chains, call {call} of {n} blocks, seed {seed}"
            );
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn chains_match_the_sha2_crate_compression() {
        if !available() {
            eprintln!("no SHA-NI: the chained SHA-256 is not built here");
            return;
        }
        for seed in 0..50 {
            check_chains::<1>(seed);
            check_chains::<2>(seed);
            check_chains::<3>(seed);
            check_chains::<4>(seed);
            check_chains::<5>(seed);
        }
    }

    /// RFC 4231 §4.2-4.8 test cases 1-4, 6 and 7 (5 is a truncation case, covered by the
    /// Integrity known answers): through the pads, and each in every chain of a batch.
    #[test]
    fn pads_and_batch_known_answers_rfc_4231() {
        let cases: [(&[u8], &[u8], [u8; 32]); 6] = [
            (
                &[0x0b; 20],
                b"Hi There",
                hex!("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                hex!("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
            ),
            (
                &[0xaa; 20],
                &[0xdd; 50],
                hex!("773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
            ),
            (
                &hex!("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                &[0xcd; 50],
                hex!("82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
            ),
            (
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                hex!("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
            ),
            (
                &[0xaa; 131],
                b"This is a test using a larger than block-size key and a larger than \
                  block-size data. The key needs to be hashed before being used by the \
                  HMAC algorithm.",
                hex!("9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
            ),
        ];
        for (key, data, expected) in cases {
            let pads = HmacSha256Pads::new(key);
            assert_eq!(pads.mac(data), expected, "key {key:02x?}");
            let msgs = [data; CHAINS + 3];
            let mut macs = [[0u8; 32]; CHAINS + 3];
            hmac_batch(&pads, &msgs, 0, &mut macs);
            assert!(macs.iter().all(|m| *m == expected), "batch, key {key:02x?}");
        }
    }

    #[test]
    fn pads_match_the_hmac_crate_for_every_length_0_to_2048() {
        for key_len in [0usize, 32, 64, 65, 100] {
            let mut key = vec![0u8; key_len];
            fill(&mut key, key_len);
            let pads = HmacSha256Pads::new(&key);
            let mut msg = vec![0u8; 2048];
            fill(&mut msg, 1);
            for len in 0..=2048usize {
                assert_eq!(
                    pads.mac(&msg[..len]),
                    plain_hmac(&key, &msg[..len]),
                    "key {key_len} B message {len} B"
                );
            }
        }
    }

    /// `hmac_batch` over messages of `lens` (each with a 16-byte ICV to trim, RFC 4868)
    /// against the `hmac` crate, message by message.
    fn check(key: &[u8], lens: &[usize], seed: usize) {
        let trim = 16;
        let msgs: Vec<Vec<u8>> = lens
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut m = vec![0u8; l + trim];
                fill(&mut m, seed * 1009 + i);
                m
            })
            .collect();
        let pads = HmacSha256Pads::new(key);
        let mut macs = vec![[0u8; 32]; msgs.len()];
        hmac_batch(&pads, &msgs, trim, &mut macs);
        for (i, (m, mac)) in msgs.iter().zip(&macs).enumerate() {
            assert_eq!(
                *mac,
                plain_hmac(key, &m[..lens[i]]),
                "message {i} of lengths {lens:?}"
            );
        }
    }

    /// Messages of different lengths in one batch, every batch size 1..=64, and every length
    /// 0..=2048 in some chain, against the `hmac` crate.
    #[test]
    fn hmac_batch_matches_the_hmac_crate_for_mixed_lengths() {
        if !available() {
            eprintln!("no SHA-NI: only the one-chain path is checked");
        }
        for n in 1..=64usize {
            let lens: Vec<usize> = (0..n).map(|i| (n * 37 + i * 211) % 2049).collect();
            check(&[0x0b; 32], &lens, n);
            check(&[0x42; 80], &vec![1396; n], n + 100);
        }
        for len in 0..=2048usize {
            let lens: Vec<usize> = (0..CHAINS + 2).map(|i| (len + i * 67) % 2049).collect();
            check(&[0x0b; 32], &lens, len);
        }
    }
}

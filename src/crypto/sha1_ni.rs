//! SHA-1 on SHA-NI (RFC 3174 §6.1): one block split into its twenty round groups, which the
//! stitched kernel of [`super::stitch`] puts AES rounds between, and [`compress_chains`]: the
//! blocks of `K` independent messages at once, their `K` dependency chains interleaved group by
//! group, and the HMAC-SHA1 of a batch on it ([`hmac_batch`], issue 12 point 3).
//!
//! One SHA-1 chain is serial: every `sha1rnds4` waits on the previous one. Whether several
//! chains at once go faster depends on the CPU. On AMD Zen 3 (the EPYC this was written on)
//! `sha1rnds4` is latency-bound, so independent chains fill the unit: a scratch microbench
//! gave 1 chain 1,700 MB/s, 2 chains 3,000, 3 chains 3,860 (see [`CHAINS`] for the count
//! chosen). On the Intel SHA-NI cores this code first ran on, one chain already kept the unit
//! busy and several chains brought nothing. Neither is written in a vendor table: the daemon
//! times both once at start (`actors/crypto_probe.rs`: the core reads no clock) and tells the
//! core with [`set_chains_pay`]; [`super::stitch::Engine::detect`] picks the chained engine only
//! where it was found clearly faster.
//!
//! The chains interleave group by group (`sha1msg1`, xor, `sha1msg2`, `sha1nexte`, `sha1rnds4`
//! of chain 0, then of chain 1, ...); the out-of-order core mixes them finer. Each chain keeps
//! its start state, its last two A..D and a ring of five message-schedule groups in xmm
//! registers, so past two chains the sixteen xmm registers spill; the spills stay off the
//! `sha1rnds4` chain and four chains still go fastest. Computing a block's whole message
//! schedule first, then the rounds, was tried and is slower (3 chains 3,050 MB/s, 4 2,140-2,740).

#[cfg(target_arch = "x86_64")]
pub use x86::compress_chains;

use std::sync::atomic::{AtomicBool, Ordering};

use super::sha1_mb;
use super::stitch::HmacSha1Pads;

/// Chains one [`compress_chains`] call of [`hmac_batch`] runs. Measured on Zen 3 (best of
/// many runs): the bare compression over 22 blocks per chain gives 1 chain 1,705 MB/s, 2
/// 2,900, 3 3,740, 4 3,790-4,355, 5 3,690-4,450; [`hmac_batch`] of 1408-byte messages, 64 a
/// batch: 2 chains 2,270, 3 2,990, 4 3,450, 5 2,800; 32 a batch 2,860-2,940 / 2,830-3,450
/// (3 / 4 chains); but of 32 mixed lengths 64..1464 B: 3 chains 1,890-2,120, 4 1,540-2,040,
/// where more chains leave more of them waiting on single-block calls (tails, outer blocks).
/// Four wins on the equal-size packets that a bulk flow's segments give, and in `ikehub
/// bench` (32 x 1400 B); three would suit mixed batches slightly better.
pub const CHAINS: usize = 4;

/// Below this many busy chains, with no message waiting, the last one finishes alone on the
/// `sha1` crate's one-chain compression; a batch of one message goes that way throughout.
pub const MIN_CHAINS: usize = 2;

/// Whether [`compress_chains`] can run on this CPU (SHA-NI with SSSE3 and SSE4.1).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sha")
        && std::arch::is_x86_feature_detected!("ssse3")
        && std::arch::is_x86_feature_detected!("sse4.1")
    {
        return true;
    }
    false
}

/// Whether [`CHAINS`] chains at once were measured to hash clearly faster than one chain on
/// this CPU (`actors/crypto_probe.rs`, once at start: at least 1.3 times the bytes per unit of
/// time). Until told, the core assumes they do not and [`super::stitch::Engine::detect`] keeps
/// the stitched engine; the answer decides only how fast a batch goes, never its bytes (every
/// engine gives the same ones, tested).
pub fn chains_pay() -> bool {
    CHAINS_PAY.load(Ordering::Relaxed)
}

/// Records the start-up probe's answer for [`chains_pay`].
pub fn set_chains_pay(pays: bool) {
    CHAINS_PAY.store(pays, Ordering::Relaxed);
}

static CHAINS_PAY: AtomicBool = AtomicBool::new(false);

/// HMAC-SHA1 (RFC 2104) of many messages at once: `macs[i]` gets the MAC of `msgs[i]` without
/// its last `trim` bytes (an ESP packet's ICV). The messages run [`CHAINS`] at a time through
/// [`compress_chains`], each chain taking the next message when its own is done (the lane
/// scheduler of [`sha1_mb`]); without SHA-NI, or with fewer than [`MIN_CHAINS`] messages, one
/// after the other.
pub fn hmac_batch<M: AsRef<[u8]>>(
    pads: &HmacSha1Pads,
    msgs: &[M],
    trim: usize,
    macs: &mut [[u8; 20]],
) {
    #[cfg(target_arch = "x86_64")]
    sha1_mb::lanes_or_each::<HmacSha1Pads, M, CHAINS>(
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
pub(in crate::crypto) mod x86 {
    use core::arch::x86_64::*;

    use crate::crypto::aes_ni::x86::load;

    /// The SHA-1 state in registers: A..D (A in the top lane) and E (top lane).
    #[derive(Clone, Copy)]
    pub(in crate::crypto) struct Sha1State {
        abcd: __m128i,
        e: __m128i,
    }

    impl Sha1State {
        #[inline]
        #[target_feature(enable = "sse2,sse4.1")]
        pub(in crate::crypto) fn load(state: &[u32; 5]) -> Self {
            let s = state.map(|x| x as i32);
            Self {
                abcd: _mm_set_epi32(s[0], s[1], s[2], s[3]),
                e: _mm_set_epi32(s[4], 0, 0, 0),
            }
        }

        #[inline]
        #[target_feature(enable = "sse2,sse4.1")]
        pub(in crate::crypto) fn store(self, state: &mut [u32; 5]) {
            state[0] = _mm_extract_epi32::<3>(self.abcd) as u32;
            state[1] = _mm_extract_epi32::<2>(self.abcd) as u32;
            state[2] = _mm_extract_epi32::<1>(self.abcd) as u32;
            state[3] = _mm_extract_epi32::<0>(self.abcd) as u32;
            state[4] = _mm_extract_epi32::<3>(self.e) as u32;
        }
    }

    /// One SHA-1 block split into its twenty groups of four rounds (RFC 3174 §6.1), so the
    /// caller can put AES rounds between them. `w` is a ring of five 4-word groups of the
    /// message schedule, group `t` in slot `t % 5`.
    pub(in crate::crypto) struct Sha1Block {
        start: Sha1State,
        cur: __m128i,
        prev: __m128i,
        w: [__m128i; 5],
    }

    impl Sha1Block {
        #[inline]
        #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
        pub(in crate::crypto) fn new(start: Sha1State, msg: &[u8]) -> Self {
            // Message words are big-endian (RFC 3174 §2).
            let bswap = _mm_set_epi64x(0x0001_0203_0405_0607, 0x0809_0A0B_0C0D_0E0F);
            let mut w = [_mm_setzero_si128(); 5];
            for (g, w) in w.iter_mut().take(4).enumerate() {
                *w = _mm_shuffle_epi8(load(&msg[16 * g..]), bswap);
            }
            Self {
                start,
                cur: start.abcd,
                prev: start.abcd,
                w,
            }
        }

        /// Rounds 4t..4t+4. W_t = rol1(W_t-3 ^ W_t-8 ^ W_t-14 ^ W_t-16), four at a time:
        /// `sha1msg1` folds W_t-16 ^ W_t-14, the xor adds W_t-8, `sha1msg2` adds W_t-3 and
        /// rotates. E of four rounds is rol30(A) of the state four rounds back (`sha1nexte`).
        #[inline]
        #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
        pub(in crate::crypto) fn group(&mut self, t: usize) {
            let w = &mut self.w;
            if t >= 4 {
                w[t % 5] = _mm_sha1msg2_epu32(
                    _mm_xor_si128(
                        _mm_sha1msg1_epu32(w[(t - 4) % 5], w[(t - 3) % 5]),
                        w[(t - 2) % 5],
                    ),
                    w[(t - 1) % 5],
                );
            }
            let wk = if t == 0 {
                _mm_add_epi32(self.start.e, w[0])
            } else {
                _mm_sha1nexte_epu32(self.prev, w[t % 5])
            };
            let next = match t / 5 {
                0 => _mm_sha1rnds4_epu32::<0>(self.cur, wk),
                1 => _mm_sha1rnds4_epu32::<1>(self.cur, wk),
                2 => _mm_sha1rnds4_epu32::<2>(self.cur, wk),
                _ => _mm_sha1rnds4_epu32::<3>(self.cur, wk),
            };
            self.prev = self.cur;
            self.cur = next;
        }

        #[inline]
        #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
        pub(in crate::crypto) fn finish(self) -> Sha1State {
            Sha1State {
                abcd: _mm_add_epi32(self.start.abcd, self.cur),
                e: _mm_sha1nexte_epu32(self.prev, self.start.e),
            }
        }
    }

    /// SHA-1 blocks of `K` independent messages at once (RFC 3174 §6.1): `state[k]` is chain
    /// `k`'s H0..H4, `blocks[k]` its next 64-byte blocks, as many as `blocks[0]` holds (whole
    /// blocks; every chain has at least as many). Each round group of chain 0, then the same
    /// group of chain 1, ..., so `K` `sha1rnds4` chains are in flight at once.
    ///
    /// # Safety
    /// The CPU must support sha, ssse3 and sse4.1 ([`super::available`]).
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub unsafe fn compress_chains<const K: usize>(state: &mut [[u32; 5]; K], blocks: &[&[u8]; K]) {
        let n = blocks[0].len() / 64;
        assert!(blocks.iter().all(|b| b.len() >= n * 64));
        let mut h: [Sha1State; K] = core::array::from_fn(|k| Sha1State::load(&state[k]));
        for j in 0..n {
            let mut sha: [Sha1Block; K] =
                core::array::from_fn(|k| Sha1Block::new(h[k], &blocks[k][64 * j..64 * j + 64]));
            unroll!(T in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19] {
                for s in sha.iter_mut() {
                    s.group(T);
                }
            });
            h = sha.map(|s| s.finish());
        }
        for (s, h) in state.iter_mut().zip(h) {
            h.store(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::sha1_mb::tests::check_with;
    use crate::crypto::stitch::tests::fill;

    /// `K` chains over `runs` calls of 1, 2 and 3 blocks each, from pseudo-random states,
    /// against the `sha1` crate's compression chain by chain.
    #[cfg(target_arch = "x86_64")]
    fn check_chains<const K: usize>(seed: usize) {
        let mut state = [[0u32; 5]; K];
        for (k, s) in state.iter_mut().enumerate() {
            let mut b = [0u8; 20];
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
            let blocks: [&[u8]; K] = core::array::from_fn(|k| &data[k][..]);
            for k in 0..K {
                let (b, _) = data[k][..64 * n].as_chunks::<64>();
                sha1::block_api::compress(&mut expected[k], b);
            }
            let mut first = data[0].clone();
            first.truncate(64 * n);
            let blocks: [&[u8]; K] =
                core::array::from_fn(|k| if k == 0 { &first[..] } else { blocks[k] });
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
    fn chains_match_the_sha1_crate_compression() {
        if !available() {
            eprintln!("no SHA-NI: the chained SHA-1 is not built here");
            return;
        }
        for seed in 0..50 {
            check_chains::<1>(seed);
            check_chains::<2>(seed);
            check_chains::<3>(seed);
            check_chains::<4>(seed);
            check_chains::<CHAINS>(seed);
        }
    }

    /// Messages of different lengths in one batch (each with a 12-byte ICV to trim), every
    /// batch size 1..=64, and every length 0..=2048 in some chain, against the `hmac` crate.
    #[test]
    fn hmac_batch_matches_the_hmac_crate_for_mixed_lengths() {
        if !available() {
            eprintln!("no SHA-NI: only the one-chain path is checked");
        }
        let check = |key: &[u8], lens: &[usize], seed: usize| {
            check_with(hmac_batch, key, lens, 12, seed);
        };
        for n in 1..=64usize {
            let lens: Vec<usize> = (0..n).map(|i| (n * 37 + i * 211) % 2049).collect();
            check(&[0x0b; 20], &lens, n);
            check(&[0x42; 80], &vec![1396; n], n + 100);
        }
        for len in 0..=2048usize {
            let lens: Vec<usize> = (0..CHAINS + 2).map(|i| (len + i * 67) % 2049).collect();
            check(&[0x0b; 20], &lens, len);
        }
    }
}

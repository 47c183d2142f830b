//! Multi-buffer SHA-1: the compression function (RFC 3174 §6.1) of sixteen independent
//! messages at once, one message per 32-bit lane of the AVX-512 registers (issue 12 point 3).
//!
//! One SHA-1 chain is serial (every block is chained through the state, RFC 3174 §6). On the
//! Intel SHA-NI cores SHA-NI's `sha1rnds4` is throughput-bound, so one core's SHA-NI caps every
//! design that hashes on it, one chain or several; on AMD Zen 3 it is latency-bound and several
//! SHA-NI chains do go faster ([`super::sha1_ni`], which runs on this module's lane scheduler
//! `lanes`). The packets of an ESP batch are independent messages: with each lane running
//! its own chain, the vector units hash sixteen of them in the time of one round sequence, as
//! Intel's isa-l_crypto `sha1_mb` does.

#[cfg(target_arch = "x86_64")]
pub use x86::compress16;

use zeroize::Zeroize;

use super::stitch::{HmacPads, HmacSha1Pads, Mac};

/// Lanes of one call: 16 x 32-bit words in a 512-bit register.
pub const LANES: usize = 16;

/// Below this many busy lanes, with no message waiting, the last ones finish one chain at a
/// time: a sixteen-lane call costs about as much as eight single-chain SHA-NI blocks
/// (benches/sha1.rs: ~320 ns against ~41 ns here), so it pays only with eight lanes or more.
/// The same makes a batch of fewer than eight messages go the single-chain way throughout.
pub const MIN_LANES: usize = 8;

/// Most blocks one call hashes per lane: an idle lane reads as many zero blocks.
const IDLE_BLOCKS: usize = 32;
static IDLE: [u8; 64 * IDLE_BLOCKS] = [0; 64 * IDLE_BLOCKS];

/// HMAC-SHA1 (RFC 2104) of many messages at once: `macs[i]` gets the MAC of `msgs[i]` without
/// its last `trim` bytes (an ESP packet's ICV). The messages run sixteen at a time through
/// [`compress16`], each lane taking the next message when its own is done (lengths may
/// differ); without AVX-512, or with fewer than [`MIN_LANES`] messages, one after the other.
pub fn hmac_batch<M: AsRef<[u8]>>(
    pads: &HmacSha1Pads,
    msgs: &[M],
    trim: usize,
    macs: &mut [[u8; 20]],
) {
    #[cfg(target_arch = "x86_64")]
    {
        let mut rows = [[0u32; LANES]; 5];
        lanes_or_each::<HmacSha1Pads, M, LANES>(
            available(),
            MIN_LANES,
            pads,
            msgs,
            trim,
            macs,
            |state, blocks| {
                // compress16 keeps word i of every lane in row i (one zmm register).
                for (l, s) in state.iter().enumerate() {
                    for (row, w) in rows.iter_mut().zip(s) {
                        row[l] = *w;
                    }
                }
                // SAFETY: `available` found avx512f and avx512bw.
                unsafe { compress16(&mut rows, blocks) };
                for (l, s) in state.iter_mut().enumerate() {
                    *s = core::array::from_fn(|i| rows[i][l]);
                }
            },
        );
        rows.zeroize();
    }
    #[cfg(not(target_arch = "x86_64"))]
    hmac_each(pads, msgs, trim, macs);
}

/// The batch HMAC on [`lanes`] (`L` messages at a time through `compress`) where `run` says
/// the lanes' kernel runs on this CPU and the batch has at least `min` messages; otherwise one
/// message after the other ([`hmac_each`]). The SHA-NI chains of SHA-1 and SHA-256 both come
/// here.
pub(super) fn lanes_or_each<P: HmacPads, M: AsRef<[u8]>, const L: usize>(
    run: bool,
    min: usize,
    pads: &P,
    msgs: &[M],
    trim: usize,
    macs: &mut [P::Digest],
    compress: impl FnMut(&mut [P::State; L], &[&[u8]; L]),
) {
    if run && msgs.len().min(macs.len()) >= min {
        lanes::<P, M, L>(pads, msgs, trim, macs, min, compress);
    } else {
        hmac_each(pads, msgs, trim, macs);
    }
}

/// Message `i` of a batch without its last `trim` bytes (an ESP packet's ICV).
fn without_icv<M: AsRef<[u8]>>(msgs: &[M], trim: usize, i: usize) -> &[u8] {
    let m = msgs[i].as_ref();
    &m[..m.len().saturating_sub(trim)]
}

/// The batch HMAC one message after the other: the batch engines' fallback.
pub(super) fn hmac_each<P: HmacPads, M: AsRef<[u8]>>(
    pads: &P,
    msgs: &[M],
    trim: usize,
    macs: &mut [P::Digest],
) {
    for (i, mac) in macs.iter_mut().enumerate().take(msgs.len()) {
        let m = without_icv(msgs, trim, i);
        *mac = Mac::new(i, pads, m).finish(pads, m);
    }
}

/// The lane scheduler, for any number `L` of lanes, any HMAC hash `P` (SHA-1, SHA-256) and
/// any compression of `L` chains at once (the sixteen AVX-512 lanes here, the SHA-NI chains
/// of [`super::sha1_ni`] and [`super::sha256_ni`]): lane `l` takes
/// the next message when it is free; a lane whose inner hash ends goes on with the outer block
/// (the `Mac` does that), one whose outer block is in writes its MAC and takes the next
/// message. Once no message waits and fewer than `min_lanes` lanes are busy, those finish one
/// chain at a time. `compress(state, blocks)` runs, for each lane `l`, the whole blocks of
/// `blocks[l]` (as many as `blocks[0]` holds) on `state[l]`. `macs[i]` gets the MAC of
/// `msgs[i]` without its last `trim` bytes.
pub(super) fn lanes<P: HmacPads, M: AsRef<[u8]>, const L: usize>(
    pads: &P,
    msgs: &[M],
    trim: usize,
    macs: &mut [P::Digest],
    min_lanes: usize,
    mut compress: impl FnMut(&mut [P::State; L], &[&[u8]; L]),
) {
    let n = msgs.len().min(macs.len());
    let msg = |i: usize| without_icv(msgs, trim, i);
    let mut lane: [Option<Mac<P>>; L] = [None; L];
    let mut state = [P::State::default(); L];
    let mut next = 0;
    loop {
        let mut busy = 0;
        for slot in lane.iter_mut() {
            if slot.is_none() && next < n {
                *slot = Some(Mac::new(next, pads, msg(next)));
                next += 1;
            }
            busy += usize::from(slot.is_some());
        }
        if next == n && busy < min_lanes {
            for m in lane.iter().flatten() {
                macs[m.job] = m.finish(pads, msg(m.job));
            }
            state.zeroize();
            return;
        }
        // With every busy lane in its message's whole blocks, as many as all of them have go
        // in one call (the state stays in registers; idle lanes hash zeros); else one block,
        // a padded tail or the outer block where a lane is there.
        let run = lane
            .iter()
            .flatten()
            .map(Mac::whole_left)
            .min()
            .unwrap_or(0)
            .min(IDLE_BLOCKS);
        let blocks: [&[u8]; L] = core::array::from_fn(|l| match &lane[l] {
            Some(m) if run > 0 => m.whole_blocks(msg(m.job), run),
            Some(m) => &m.block(msg(m.job))[..],
            None => &IDLE[..64 * run.max(1)],
        });
        for (s, slot) in state.iter_mut().zip(&lane) {
            *s = slot.as_ref().map_or_else(P::State::default, |m| m.state);
        }
        compress(&mut state, &blocks);
        for (s, slot) in state.iter().zip(lane.iter_mut()) {
            if let Some(m) = slot {
                m.state = *s;
                if let Some(mac) = m.advance_by(pads, run.max(1)) {
                    macs[m.job] = mac;
                    *slot = None;
                }
            }
        }
    }
}

/// Whether [`compress16`] can run on this CPU.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
    {
        return true;
    }
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    use super::LANES;

    /// The 16 x 16 transpose: row `i` (block `i`'s words) in, word `t` of every block out,
    /// big-endian words made native (RFC 3174 §2).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn load_words(blocks: &[&[u8; 64]; LANES]) -> [__m512i; 16] {
        let mut r = [_mm512_setzero_si512(); 16];
        for (r, b) in r.iter_mut().zip(blocks) {
            // SAFETY: `b` is 64 readable bytes; unaligned load.
            *r = unsafe { _mm512_loadu_si512(b.as_ptr().cast()) };
        }
        // Stage 1: pairs of rows, 32-bit interleave within each 128-bit lane.
        let mut t = [_mm512_setzero_si512(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
        }
        // Stage 2: u[4i + j], 128-bit lane k = rows 4i..4i+4 of word 4k + j.
        let mut u = [_mm512_setzero_si512(); 16];
        for i in 0..4 {
            u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
            u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
            u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
            u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
        }
        // Stages 3 and 4: a 4 x 4 transpose of 128-bit lanes over u[j], u[4+j], u[8+j], u[12+j].
        let bswap = _mm512_broadcast_i32x4(_mm_set_epi8(
            12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3,
        ));
        let mut w = [_mm512_setzero_si512(); 16];
        for j in 0..4 {
            let x0 = _mm512_shuffle_i32x4::<0x44>(u[j], u[4 + j]);
            let x1 = _mm512_shuffle_i32x4::<0xEE>(u[j], u[4 + j]);
            let y0 = _mm512_shuffle_i32x4::<0x44>(u[8 + j], u[12 + j]);
            let y1 = _mm512_shuffle_i32x4::<0xEE>(u[8 + j], u[12 + j]);
            w[j] = _mm512_shuffle_i32x4::<0x88>(x0, y0);
            w[4 + j] = _mm512_shuffle_i32x4::<0xDD>(x0, y0);
            w[8 + j] = _mm512_shuffle_i32x4::<0x88>(x1, y1);
            w[12 + j] = _mm512_shuffle_i32x4::<0xDD>(x1, y1);
        }
        w.map(|w| _mm512_shuffle_epi8(w, bswap))
    }

    /// SHA-1 blocks for each of sixteen messages (RFC 3174 §6.1): `state[i][lane]` is word
    /// H_i of lane `lane`'s chain, `blocks[lane]` its next 64-byte blocks, as many as lane 0
    /// has (whole blocks; every lane has at least as many).
    ///
    /// # Safety
    /// The CPU must support avx512f and avx512bw ([`super::available`]).
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn compress16(state: &mut [[u32; LANES]; 5], blocks: &[&[u8]; LANES]) {
        let n = blocks[0].len() / 64;
        assert!(blocks.iter().all(|b| b.len() >= n * 64));
        // SAFETY: each row is 16 u32 = 64 readable bytes; unaligned load.
        let mut h = state.map(|s| unsafe { _mm512_loadu_si512(s.as_ptr().cast()) });
        for j in 0..n {
            let block: [&[u8; 64]; LANES] = core::array::from_fn(|l| {
                blocks[l][64 * j..64 * j + 64]
                    .try_into()
                    .unwrap_or_else(|_| unreachable!())
            });
            h = block16(h, &block);
        }
        for (s, h) in state.iter_mut().zip(h) {
            // SAFETY: each row is 64 writable bytes; unaligned store.
            unsafe { _mm512_storeu_si512(s.as_mut_ptr().cast(), h) };
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn block16(h: [__m512i; 5], blocks: &[&[u8; 64]; LANES]) -> [__m512i; 5] {
        let mut w = load_words(blocks);
        let [mut a, mut b, mut c, mut d, mut e] = h;
        unroll!(T in [
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
            20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39,
            40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
            60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79
        ] {
            // RFC 3174 §6.1 step (b): W_t = S^1(W_t-3 ^ W_t-8 ^ W_t-14 ^ W_t-16), in a ring of 16
            // (slot t - k is slot t + 16 - k, which stays in range for the rounds that skip this).
            if (16..80).contains(&T) {
                let x = _mm512_ternarylogic_epi32::<0x96>(
                    w[(T + 13) % 16],
                    w[(T + 8) % 16],
                    w[(T + 2) % 16],
                );
                w[T % 16] = _mm512_rol_epi32::<1>(_mm512_xor_si512(x, w[T % 16]));
            }
            // §5: f_t and K_t; one ternary-logic instruction per f (truth tables of
            // (B AND C) OR (NOT B AND D), B XOR C XOR D, and the majority).
            let (f, k) = match T / 20 {
                0 => (_mm512_ternarylogic_epi32::<0xCA>(b, c, d), 0x5A82_7999u32),
                1 => (_mm512_ternarylogic_epi32::<0x96>(b, c, d), 0x6ED9_EBA1),
                2 => (_mm512_ternarylogic_epi32::<0xE8>(b, c, d), 0x8F1B_BCDC),
                _ => (_mm512_ternarylogic_epi32::<0x96>(b, c, d), 0xCA62_C1D6),
            };
            // Step (d): TEMP = S^5(A) + f_t(B,C,D) + E + W_t + K_t; E = D; D = C; C = S^30(B);
            // B = A; A = TEMP.
            let ek = _mm512_add_epi32(e, _mm512_set1_epi32(k as i32));
            let temp = _mm512_add_epi32(
                _mm512_add_epi32(_mm512_rol_epi32::<5>(a), f),
                _mm512_add_epi32(ek, w[T % 16]),
            );
            e = d;
            d = c;
            c = _mm512_rol_epi32::<30>(b);
            b = a;
            a = temp;
        });
        // Step (e): H_i = H_i + the new A..E.
        let x = [a, b, c, d, e];
        core::array::from_fn(|i| _mm512_add_epi32(h[i], x[i]))
    }
}

#[cfg(test)]
pub(in crate::crypto) mod tests {
    use cipher::KeyInit;
    use hex_literal::hex;
    use hmac::{Hmac, Mac as _};

    use super::*;
    use crate::crypto::stitch::tests::fill;

    fn plain_hmac(key: &[u8], msg: &[u8]) -> [u8; 20] {
        let mut m = <Hmac<sha1::Sha1>>::new_from_slice(key).expect("any key length");
        m.update(msg);
        m.finalize().into_bytes().into()
    }

    /// A batch HMAC (this module's or [`super::super::sha1_ni`]'s `hmac_batch`).
    pub(in crate::crypto) type BatchHmac = fn(&HmacSha1Pads, &[Vec<u8>], usize, &mut [[u8; 20]]);

    fn check(key: &[u8], lens: &[usize], trim: usize, seed: usize) {
        check_with(hmac_batch, key, lens, trim, seed);
    }

    /// `batch` over messages of `lens` (each with `trim` extra bytes) against the `hmac`
    /// crate, message by message.
    pub(in crate::crypto) fn check_with(
        batch: BatchHmac,
        key: &[u8],
        lens: &[usize],
        trim: usize,
        seed: usize,
    ) {
        let msgs: Vec<Vec<u8>> = lens
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut m = vec![0u8; l + trim];
                fill(&mut m, seed * 1009 + i);
                m
            })
            .collect();
        let pads = HmacSha1Pads::new(key);
        let mut macs = vec![[0u8; 20]; msgs.len()];
        batch(&pads, &msgs, trim, &mut macs);
        for (i, (m, mac)) in msgs.iter().zip(&macs).enumerate() {
            assert_eq!(
                *mac,
                plain_hmac(key, &m[..lens[i]]),
                "message {i} of lengths {lens:?}"
            );
        }
    }

    #[test]
    fn hmac_batch_matches_the_hmac_crate_for_every_length_0_to_2048() {
        if !available() {
            eprintln!("no AVX-512: only the one-chain path is checked");
        }
        // Sixteen messages a batch: lane 0 takes every length in turn, the others lengths
        // around it, so lanes end their inner hash on different calls.
        for len in 0..=2048usize {
            let lens: Vec<usize> = (0..LANES).map(|i| (len + i * 131) % 2049).collect();
            check(&[0x0b; 20], &lens, 12, len);
        }
    }

    #[test]
    fn hmac_batch_matches_the_hmac_crate_for_every_batch_size_1_to_64() {
        for n in 1..=64usize {
            let mixed: Vec<usize> = (0..n).map(|i| (n * 7 + i * 13 * 16) % 2049).collect();
            check(&[0x55; 20], &mixed, 12, n);
            // Equal lengths, as the TSO segments of one flow give (1408-byte ESP packets).
            check(&[0x55; 64], &vec![1396; n], 12, n + 100);
        }
    }

    /// RFC 2202 §3 test cases 1, 2 and 6 (a key longer than the block), each in every lane.
    #[test]
    fn hmac_batch_known_answers_rfc_2202() {
        let cases: [(&[u8], &[u8], [u8; 20]); 3] = [
            (
                &[0x0b; 20],
                b"Hi There",
                hex!("b617318655057264e28bc0b6fb378c8ef146be00"),
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                hex!("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
            ),
            (
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                hex!("aa4ae5e15272d00e95705637ce8a3b55ed402112"),
            ),
        ];
        for (key, data, expected) in cases {
            let pads = HmacSha1Pads::new(key);
            let msgs = [data; LANES + 3];
            let mut macs = [[0u8; 20]; LANES + 3];
            hmac_batch(&pads, &msgs, 0, &mut macs);
            assert!(macs.iter().all(|m| *m == expected), "key {key:02x?}");
        }
    }

    #[test]
    fn sixteen_lanes_match_the_sha1_crate_compression() {
        if !available() {
            eprintln!("no AVX-512: the multi-buffer SHA-1 is not built here");
            return;
        }
        let mut data = [[0u8; 64]; 3 * LANES];
        for (i, b) in data.iter_mut().enumerate() {
            fill(b, i + 1);
        }
        // Then three blocks per lane in one call, the state kept in registers between them.
        let mut run = vec![0u8; 3 * 64 * LANES];
        fill(&mut run, 99);
        let mut expected = [[0u32; 5]; LANES];
        let mut state = [[0u32; LANES]; 5];
        for lane in 0..LANES {
            let s0 = [lane as u32, 2, 3, 4, 5].map(|x| x.wrapping_mul(0x9E37_79B9));
            expected[lane] = s0;
            for (i, w) in s0.iter().enumerate() {
                state[i][lane] = *w;
            }
        }
        for round in 0..3 {
            let blocks: [&[u8]; LANES] = core::array::from_fn(|l| &data[round * LANES + l][..]);
            for lane in 0..LANES {
                sha1::block_api::compress(&mut expected[lane], &data[round * LANES + lane..][..1]);
            }
            // SAFETY: `available` checked avx512f and avx512bw.
            unsafe { compress16(&mut state, &blocks) };
        }
        let blocks: [&[u8]; LANES] = core::array::from_fn(|l| &run[3 * 64 * l..3 * 64 * (l + 1)]);
        for lane in 0..LANES {
            let (b, _) = blocks[lane].as_chunks::<64>();
            sha1::block_api::compress(&mut expected[lane], b);
        }
        // SAFETY: as above.
        unsafe { compress16(&mut state, &blocks) };
        for lane in 0..LANES {
            let got: [u32; 5] = core::array::from_fn(|i| state[i][lane]);
            assert_eq!(got, expected[lane], "lane {lane}");
        }
    }
}

//! AES-CBC keyed one way, for ESP SAs (RFC 3602; an SA is simplex, RFC 4301 §4.1): the round
//! keys of one direction ([`AesKeys`]) with the AES-NI CBC of one packet and of eight
//! interleaved chains, and the `aes` crate's ciphers behind the same two traits for a CPU
//! without AES-NI. The stitched and multi-buffer kernels ([`super::stitch`]) run on the same
//! round keys.
//!
//! What a crate does well comes from crates: the `aes` crate keeps its round keys private, so
//! the key expansion here is FIPS-197 §5.2 with SubWord from `aeskeygenassist`; without AES-NI
//! the `aes` and `cbc` crates run.

use std::marker::PhantomData;

use cipher::{Block, BlockModeDecrypt, BlockModeEncrypt, InnerIvInit};
use zeroize::Zeroize;

/// CBC chains [`AesKeys::encrypt_cbc_lanes`] interleaves: enough independent chains to cover
/// the `aesenc` latency, few enough for the round keys and states to stay in registers.
pub const CBC_LANES: usize = 8;

/// Marks [`AesKeys`] holding the cipher's round keys (FIPS-197 §5.2): they only encrypt.
#[derive(Debug)]
pub enum Encrypt {}

/// Marks [`AesKeys`] holding the equivalent inverse cipher's round keys (FIPS-197 §5.3.5):
/// they only decrypt.
#[derive(Debug)]
pub enum Decrypt {}

/// The AES round keys of one direction for the AES-NI kernels, as many as the key length
/// needs (11, 13 or 15: AES-128, 192, 256), boxed at that size and zeroized on drop. An ESP SA
/// is simplex (RFC 4301 §4.1): an outbound one keeps `AesKeys<Encrypt>` only, an inbound one
/// `AesKeys<Decrypt>` only, and the type keeps the other half from coming back (per tunnel
/// that half and the `aes` crate's schedule were about 1 KB: docs/design.md "Per-tunnel
/// memory budget"). One exists only on a CPU with AES-NI (aes and sse4.1 detected), which is
/// what makes its methods safe.
pub struct AesKeys<D> {
    /// Round keys 0..=Nr (the stitched kernels read them too).
    pub(in crate::crypto) rk: Box<[[u8; 16]]>,
    way: PhantomData<D>,
}

impl<D> Drop for AesKeys<D> {
    fn drop(&mut self) {
        self.rk.iter_mut().for_each(Zeroize::zeroize);
    }
}

impl<D> std::fmt::Debug for AesKeys<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AesKeys({} rounds)", self.rounds())
    }
}

impl<D> AesKeys<D> {
    /// Nr (FIPS-197 §5: 10, 12 or 14).
    pub(in crate::crypto) fn rounds(&self) -> usize {
        self.rk.len().saturating_sub(1)
    }

    /// Heap bytes the round keys take (16 per round key).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.rk)
    }

    /// Whether this CPU runs the AES-NI kernels (the key expansion needs sse4.1 too).
    fn aes_ni() -> bool {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("sse4.1")
        {
            return true;
        }
        false
    }
}

impl AesKeys<Encrypt> {
    /// Expands a 16, 24 or 32-byte key for encryption; `None` for another length or without
    /// AES-NI.
    pub fn new(key: &[u8]) -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if Self::aes_ni() {
            // SAFETY: `aes_ni` found aes and sse4.1.
            let (mut enc, rounds) = unsafe { x86::expand(key) }?;
            let rk = enc[..=rounds].into();
            enc.zeroize();
            return Some(Self {
                rk,
                way: PhantomData,
            });
        }
        let _ = key;
        None
    }

    /// CBC-encrypts buffers (`IV | plaintext`, whole blocks) in place, eight at a time with
    /// their chains interleaved, so AES-NI is pipelined although each chain is serial (RFC 3602
    /// §2).
    pub fn encrypt_cbc_lanes(&self, lanes: &mut [&mut [u8]]) {
        for group in lanes.chunks_mut(CBC_LANES) {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: an `AesKeys` exists only where `aes_ni` found aes.
            unsafe {
                x86::cbc_encrypt_lanes(self, group)
            };
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("AesKeys exist only with AES-NI: {}", group.len());
        }
    }
}

impl AesKeys<Decrypt> {
    /// Expands a 16, 24 or 32-byte key for decryption; `None` for another length or without
    /// AES-NI.
    pub fn new(key: &[u8]) -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if Self::aes_ni() {
            // SAFETY: `aes_ni` found aes and sse4.1.
            let (mut enc, rounds) = unsafe { x86::expand(key) }?;
            // SAFETY: as above.
            let mut dec = unsafe { x86::invert(&enc, rounds) };
            let rk = dec[..=rounds].into();
            enc.zeroize();
            dec.zeroize();
            return Some(Self {
                rk,
                way: PhantomData,
            });
        }
        let _ = key;
        None
    }
}

/// The AES of one ESP SA on its way out as the batch paths take it: [`AesKeys<Encrypt>`],
/// which every engine runs on, or a cipher of the `aes` crate (a CPU without AES-NI, where
/// only [`Engine::Portable`](super::stitch::Engine::Portable) runs).
pub trait CbcEncrypt {
    /// The round keys of the AES-NI kernels, if this is them.
    fn aes_ni(&self) -> Option<&AesKeys<Encrypt>> {
        None
    }

    /// CBC-encrypts `data` (whole blocks; a partial last block is left alone) in place,
    /// chained from `iv` (RFC 3602 §2).
    fn encrypt_cbc(&self, iv: &[u8; 16], data: &mut [u8]);
}

/// The other way: [`AesKeys<Decrypt>`] or a cipher of the `aes` crate.
pub trait CbcDecrypt {
    /// The round keys of the AES-NI kernels, if this is them.
    fn aes_ni(&self) -> Option<&AesKeys<Decrypt>> {
        None
    }

    /// CBC-decrypts `data` (whole blocks) in place; `iv` is the block before it.
    fn decrypt_cbc(&self, iv: &[u8; 16], data: &mut [u8]);
}

impl CbcEncrypt for AesKeys<Encrypt> {
    fn aes_ni(&self) -> Option<&AesKeys<Encrypt>> {
        Some(self)
    }

    /// One chain, one block after the other: CBC encryption is serial (RFC 3602 §2).
    fn encrypt_cbc(&self, iv: &[u8; 16], data: &mut [u8]) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `AesKeys` exists only where `aes_ni` found aes.
        unsafe {
            x86::cbc_encrypt(self, iv, data)
        };
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("AesKeys exist only with AES-NI: {iv:?} {}", data.len());
    }
}

impl CbcDecrypt for AesKeys<Decrypt> {
    fn aes_ni(&self) -> Option<&AesKeys<Decrypt>> {
        Some(self)
    }

    /// The blocks are independent on the way in (RFC 3602 §2: P_i = D(C_i) ^ C_i-1), so they
    /// run sixteen at a time in four VAES registers where the CPU has AVX-512 VAES (as the
    /// `aes` crate does), eight at a time with AES-NI otherwise.
    fn decrypt_cbc(&self, iv: &[u8; 16], data: &mut [u8]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("vaes")
            && std::arch::is_x86_feature_detected!("avx512f")
        {
            // SAFETY: aes (an `AesKeys` exists), vaes and avx512f just detected.
            unsafe { x86::cbc_decrypt_wide(self, iv, data) };
        } else {
            // SAFETY: an `AesKeys` exists only where `aes_ni` found aes.
            unsafe { x86::cbc_decrypt(self, iv, data) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("AesKeys exist only with AES-NI: {iv:?} {}", data.len());
    }
}

/// The `aes` crate's ciphers (the portable engine; the `cbc` crate runs the mode).
macro_rules! crate_cbc {
    (encrypt: $($e:ty),*; decrypt: $($d:ty),*) => {
        $(impl CbcEncrypt for $e {
            fn encrypt_cbc(&self, iv: &[u8; 16], data: &mut [u8]) {
                let (blocks, _) = Block::<$e>::slice_as_chunks_mut(data);
                cbc::Encryptor::<&$e>::inner_iv_init(self, &(*iv).into()).encrypt_blocks(blocks);
            }
        })*

        $(impl CbcDecrypt for $d {
            fn decrypt_cbc(&self, iv: &[u8; 16], data: &mut [u8]) {
                let (blocks, _) = Block::<$d>::slice_as_chunks_mut(data);
                cbc::Decryptor::<&$d>::inner_iv_init(self, &(*iv).into()).decrypt_blocks(blocks);
            }
        })*
    };
}

crate_cbc!(
    encrypt: aes::Aes128, aes::Aes192, aes::Aes256, aes::Aes128Enc, aes::Aes192Enc, aes::Aes256Enc;
    decrypt: aes::Aes128, aes::Aes192, aes::Aes256, aes::Aes128Dec, aes::Aes192Dec, aes::Aes256Dec
);

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    //! The AES-NI CBC kernels. Every function needs aes (and sse2), which
    //! [`AesKeys::new`](super::AesKeys) checked before an [`AesKeys`] could exist.

    use core::arch::x86_64::*;

    use super::{AesKeys, CBC_LANES, Decrypt, Encrypt};

    #[inline]
    #[target_feature(enable = "sse2")]
    pub(in crate::crypto) fn load(b: &[u8]) -> __m128i {
        assert!(b.len() >= 16);
        // SAFETY: at least 16 readable bytes (asserted); unaligned load.
        unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    pub(in crate::crypto) fn store(b: &mut [u8], v: __m128i) {
        assert!(b.len() >= 16);
        // SAFETY: at least 16 writable bytes (asserted); unaligned store.
        unsafe { _mm_storeu_si128(b.as_mut_ptr().cast(), v) }
    }

    /// Round keys 0..=NR in registers (the rest zero).
    #[inline]
    #[target_feature(enable = "sse2")]
    pub(in crate::crypto) fn round_keys<const NR: usize>(k: &[[u8; 16]]) -> [__m128i; 15] {
        let mut r = [_mm_setzero_si128(); 15];
        for (r, k) in r.iter_mut().zip(&k[..=NR]) {
            *r = load(k);
        }
        r
    }

    /// FIPS-197 §5.2 SubWord: `aeskeygenassist` puts SubWord of the word in lane 1 into lane 0.
    #[inline]
    #[target_feature(enable = "aes,sse4.1")]
    fn sub_word(w: u32) -> u32 {
        _mm_extract_epi32::<0>(_mm_aeskeygenassist_si128::<0>(_mm_set_epi32(
            0, 0, w as i32, 0,
        ))) as u32
    }

    /// FIPS-197 §5.2 KeyExpansion (words little-endian, so RotWord is a right rotation and Rcon
    /// goes into the low byte), and the decryption keys of the equivalent inverse cipher
    /// (§5.3.5: InvMixColumns applied to the middle round keys).
    ///
    /// # Safety
    /// The CPU must support aes and sse4.1.
    #[target_feature(enable = "aes,sse2,sse4.1")]
    pub(super) unsafe fn expand(key: &[u8]) -> Option<([[u8; 16]; 15], usize)> {
        let rounds = match key.len() {
            16 => 10,
            24 => 12,
            32 => 14,
            _ => return None,
        };
        let nk = key.len() / 4;
        let mut w = [0u32; 60];
        for (w, k) in w.iter_mut().zip(key.chunks_exact(4)) {
            *w = u32::from_le_bytes([k[0], k[1], k[2], k[3]]);
        }
        let mut rcon = 1u8;
        for i in nk..4 * (rounds + 1) {
            let mut t = w[i - 1];
            if i % nk == 0 {
                t = sub_word(t.rotate_right(8)) ^ u32::from(rcon);
                rcon = (rcon << 1) ^ if rcon & 0x80 != 0 { 0x1b } else { 0 };
            } else if nk > 6 && i % nk == 4 {
                t = sub_word(t);
            }
            w[i] = w[i - nk] ^ t;
        }
        let mut enc = [[0u8; 16]; 15];
        for (r, k) in enc.iter_mut().enumerate().take(rounds + 1) {
            for (c, word) in k.chunks_exact_mut(4).zip(&w[4 * r..4 * r + 4]) {
                c.copy_from_slice(&word.to_le_bytes());
            }
        }
        w.iter_mut().for_each(|x| *x = 0);
        Some((enc, rounds))
    }

    /// The decryption keys of the equivalent inverse cipher (FIPS-197 §5.3.5) from the
    /// encryption keys `enc[..=rounds]`: reversed, InvMixColumns applied to the middle ones.
    ///
    /// # Safety
    /// The CPU must support aes.
    #[target_feature(enable = "aes,sse2")]
    pub(super) unsafe fn invert(enc: &[[u8; 16]; 15], rounds: usize) -> [[u8; 16]; 15] {
        let mut dec = [[0u8; 16]; 15];
        dec[0] = enc[rounds];
        dec[rounds] = enc[0];
        for r in 1..rounds {
            store(&mut dec[r], _mm_aesimc_si128(load(&enc[rounds - r])));
        }
        dec
    }

    /// One CBC encryption block: `blk = E(blk ^ chain)`, `chain = blk`.
    ///
    /// # Safety
    /// The CPU must support aes.
    #[target_feature(enable = "aes,sse2")]
    pub(in crate::crypto) unsafe fn encrypt_block(
        keys: &AesKeys<Encrypt>,
        chain: &mut [u8; 16],
        blk: &mut [u8; 16],
    ) {
        by_rounds!(keys, encrypt_chain(&keys.rk, chain, blk));
    }

    /// CBC-encrypts `data` (whole blocks) in place, chained from `iv`: one packet.
    ///
    /// # Safety
    /// The CPU must support aes.
    #[target_feature(enable = "aes,sse2")]
    pub(super) unsafe fn cbc_encrypt(keys: &AesKeys<Encrypt>, iv: &[u8; 16], data: &mut [u8]) {
        let mut chain = *iv;
        by_rounds!(keys, encrypt_chain(&keys.rk, &mut chain, data));
    }

    /// One CBC chain over `data`'s whole blocks; `chain` ends as the last ciphertext block.
    #[inline]
    #[target_feature(enable = "aes,sse2")]
    fn encrypt_chain<const NR: usize>(rk: &[[u8; 16]], chain: &mut [u8; 16], data: &mut [u8]) {
        let k = round_keys::<NR>(rk);
        let mut x = load(chain);
        for b in data.chunks_exact_mut(16) {
            x = _mm_xor_si128(_mm_xor_si128(load(b), x), k[0]);
            for rk in &k[1..NR] {
                x = _mm_aesenc_si128(x, *rk);
            }
            x = _mm_aesenclast_si128(x, k[NR]);
            store(b, x);
        }
        store(chain, x);
    }

    /// CBC-encrypts up to [`CBC_LANES`] buffers (`IV | plaintext`, whole blocks) at once:
    /// block `j` of every buffer goes through the rounds together, so AES-NI is pipelined
    /// although each chain is serial (RFC 3602 §2). Lanes whose buffer has ended compute on
    /// zeros and store nothing.
    ///
    /// # Safety
    /// The CPU must support aes.
    #[target_feature(enable = "aes,sse2")]
    pub(super) unsafe fn cbc_encrypt_lanes(keys: &AesKeys<Encrypt>, lanes: &mut [&mut [u8]]) {
        by_rounds!(keys, cbc_lanes(&keys.rk, lanes));
    }

    #[inline]
    #[target_feature(enable = "aes,sse2")]
    fn cbc_lanes<const NR: usize>(rk: &[[u8; 16]], lanes: &mut [&mut [u8]]) {
        let k = round_keys::<NR>(rk);
        let n = lanes.len().min(CBC_LANES);
        let mut chain = [_mm_setzero_si128(); CBC_LANES];
        let mut end = 0;
        for (c, l) in chain.iter_mut().zip(lanes.iter()) {
            *c = load(l);
            end = end.max(l.len());
        }
        let mut at = 16;
        while at < end {
            let mut x = [_mm_setzero_si128(); CBC_LANES];
            for (i, x) in x.iter_mut().enumerate() {
                if i < n && at < lanes[i].len() {
                    *x = load(&lanes[i][at..]);
                }
                *x = _mm_xor_si128(_mm_xor_si128(*x, chain[i]), k[0]);
            }
            for rk in &k[1..NR] {
                x = x.map(|x| _mm_aesenc_si128(x, *rk));
            }
            x = x.map(|x| _mm_aesenclast_si128(x, k[NR]));
            for (i, l) in lanes.iter_mut().enumerate().take(n) {
                if at < l.len() {
                    store(&mut l[at..], x[i]);
                    chain[i] = x[i];
                }
            }
            at += 16;
        }
    }

    /// CBC-decrypts `data` (whole blocks, `iv` before them) in place, sixteen blocks per step
    /// in four 512-bit VAES registers: decryption blocks are independent (RFC 3602 §2,
    /// P_i = D(C_i) ^ C_i-1). It runs from the end, so the C_i-1 a step reads is still
    /// ciphertext; the first blocks that do not fill a step go eight at a time.
    ///
    /// # Safety
    /// The CPU must support aes, vaes and avx512f.
    #[target_feature(enable = "aes,vaes,avx512f")]
    pub(super) unsafe fn cbc_decrypt_wide(keys: &AesKeys<Decrypt>, iv: &[u8; 16], data: &mut [u8]) {
        by_rounds!(keys, decrypt_wide(&keys.rk, iv, data));
    }

    #[inline]
    #[target_feature(enable = "aes,vaes,avx512f")]
    fn load4(b: &[u8]) -> __m512i {
        assert!(b.len() >= 64);
        // SAFETY: at least 64 readable bytes (asserted); unaligned load.
        unsafe { _mm512_loadu_si512(b.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "aes,vaes,avx512f")]
    fn store4(b: &mut [u8], v: __m512i) {
        assert!(b.len() >= 64);
        // SAFETY: at least 64 writable bytes (asserted); unaligned store.
        unsafe { _mm512_storeu_si512(b.as_mut_ptr().cast(), v) }
    }

    #[inline]
    #[target_feature(enable = "aes,vaes,avx512f")]
    fn decrypt_wide<const NR: usize>(dk: &[[u8; 16]], iv: &[u8; 16], data: &mut [u8]) {
        let k = round_keys::<NR>(dk);
        let kw = k.map(|k| _mm512_broadcast_i32x4(k));
        // Blocks 0..n are still ciphertext; block 0 chains from `iv`.
        let mut n = data.len() / 16;
        while n >= 16 {
            let at = 16 * (n - 16);
            let mut c = [_mm512_setzero_si512(); 4];
            let mut prev = [_mm512_setzero_si512(); 4];
            for q in 0..4 {
                c[q] = load4(&data[at + 64 * q..]);
                prev[q] = if at + 64 * q >= 16 {
                    load4(&data[at + 64 * q - 16..])
                } else {
                    let mut first = [0u8; 64];
                    first[..16].copy_from_slice(iv);
                    first[16..].copy_from_slice(&data[..48]);
                    load4(&first)
                };
            }
            let mut x = c.map(|c| _mm512_xor_si512(c, kw[0]));
            for rk in &kw[1..NR] {
                x = x.map(|x| _mm512_aesdec_epi128(x, *rk));
            }
            x = x.map(|x| _mm512_aesdeclast_epi128(x, kw[NR]));
            for q in 0..4 {
                store4(&mut data[at + 64 * q..], _mm512_xor_si512(x[q], prev[q]));
            }
            n -= 16;
        }
        decrypt_eights::<NR>(&k, iv, data, n);
    }

    /// [`cbc_decrypt_wide`] with 128-bit AES-NI: eight blocks per step.
    ///
    /// # Safety
    /// The CPU must support aes.
    #[target_feature(enable = "aes,sse2")]
    pub(super) unsafe fn cbc_decrypt(keys: &AesKeys<Decrypt>, iv: &[u8; 16], data: &mut [u8]) {
        by_rounds!(keys, decrypt_lanes(&keys.rk, iv, data));
    }

    #[inline]
    #[target_feature(enable = "aes,sse2")]
    fn decrypt_lanes<const NR: usize>(dk: &[[u8; 16]], iv: &[u8; 16], data: &mut [u8]) {
        let k = round_keys::<NR>(dk);
        decrypt_eights::<NR>(&k, iv, data, data.len() / 16);
    }

    /// Blocks 0..n of `data` (block 0 chains from `iv`), eight at a time from the end; the
    /// first group, if shorter, runs its blocks side by side all the same (lanes past them
    /// compute on zeros and store nothing).
    #[inline]
    #[target_feature(enable = "aes,sse2")]
    fn decrypt_eights<const NR: usize>(
        k: &[__m128i; 15],
        iv: &[u8; 16],
        data: &mut [u8],
        mut n: usize,
    ) {
        while n > 0 {
            let m = n.min(8);
            let at = 16 * (n - m);
            let mut c = [_mm_setzero_si128(); 8];
            for (j, c) in c.iter_mut().enumerate().take(m) {
                *c = load(&data[at + 16 * j..]);
            }
            let prev = if at >= 16 {
                load(&data[at - 16..])
            } else {
                load(iv)
            };
            let mut x = c.map(|c| _mm_xor_si128(c, k[0]));
            for rk in &k[1..NR] {
                x = x.map(|x| _mm_aesdec_si128(x, *rk));
            }
            x = x.map(|x| _mm_aesdeclast_si128(x, k[NR]));
            store(&mut data[at..], _mm_xor_si128(x[0], prev));
            for j in 1..m {
                store(&mut data[at + 16 * j..], _mm_xor_si128(x[j], c[j - 1]));
            }
            n -= m;
        }
    }

    /// One CBC decryption block: `blk = D(blk) ^ chain`, `chain` = the old `blk`.
    ///
    /// # Safety
    /// The CPU must support aes.
    #[target_feature(enable = "aes,sse2")]
    pub(in crate::crypto) unsafe fn decrypt_block(
        keys: &AesKeys<Decrypt>,
        chain: &mut [u8; 16],
        blk: &mut [u8; 16],
    ) {
        let c = *blk;
        by_rounds!(keys, decrypt_lanes(&keys.rk, chain, blk));
        *chain = c;
    }
}

#[cfg(test)]
mod tests {
    //! The AES-NI kernels against the `aes` crate.

    use aes::{Aes128, Aes192, Aes256};
    use cipher::{BlockCipherEncrypt, KeyInit};

    use super::*;
    use crate::crypto::stitch::tests::fill;

    #[test]
    fn expanded_keys_match_the_aes_crate() {
        let Some(_) = AesKeys::<Encrypt>::new(&[0u8; 16]) else {
            eprintln!("no AES-NI: the AES-NI kernels are not built here");
            return;
        };
        for len in [16usize, 24, 32] {
            let mut key = vec![0u8; len];
            fill(&mut key, len);
            let enc = AesKeys::<Encrypt>::new(&key).expect("AES-NI present");
            let dec = AesKeys::<Decrypt>::new(&key).expect("AES-NI present");
            assert!(AesKeys::<Encrypt>::new(&key[..len - 1]).is_none());
            assert!(AesKeys::<Decrypt>::new(&key[..len - 1]).is_none());
            // One direction's round keys only, Nr + 1 of them (FIPS-197 §5).
            let rounds = len / 4 + 6;
            assert_eq!(enc.heap_bytes(), 16 * (rounds + 1));
            assert_eq!(dec.heap_bytes(), 16 * (rounds + 1));
            let mut block = [0u8; 16];
            fill(&mut block, 3);
            let mut expected = Block::<Aes128>::from(block);
            match len {
                16 => Aes128::new_from_slice(&key)
                    .expect("16")
                    .encrypt_block(&mut expected),
                24 => Aes192::new_from_slice(&key)
                    .expect("24")
                    .encrypt_block(&mut expected),
                _ => Aes256::new_from_slice(&key)
                    .expect("32")
                    .encrypt_block(&mut expected),
            }
            let mut got = block;
            enc.encrypt_cbc(&[0; 16], &mut got);
            assert_eq!(got[..], expected[..], "AES-{} encryption", len * 8);
            dec.decrypt_cbc(&[0; 16], &mut got);
            assert_eq!(got, block, "AES-{} decryption", len * 8);
        }
    }

    /// One packet through the AES-NI single-packet paths against the `cbc` crate, for every
    /// length of 0 to 40 blocks (the decryption's 16- and 8-block steps, their tails, the
    /// first step chaining from the IV).
    #[test]
    fn single_packet_cbc_matches_the_crates_for_0_to_40_blocks() {
        for len in [16usize, 24, 32] {
            let mut key = vec![0u8; len];
            fill(&mut key, len + 1);
            let (Some(enc), Some(dec)) =
                (AesKeys::<Encrypt>::new(&key), AesKeys::<Decrypt>::new(&key))
            else {
                eprintln!("no AES-NI: the AES-NI kernels are not built here");
                return;
            };
            let soft: Box<dyn CbcEncrypt> = match len {
                16 => Box::new(Aes128::new_from_slice(&key).expect("16")),
                24 => Box::new(Aes192::new_from_slice(&key).expect("24")),
                _ => Box::new(Aes256::new_from_slice(&key).expect("32")),
            };
            for blocks in 0..=40usize {
                let mut plain = vec![0u8; 16 * blocks];
                fill(&mut plain, blocks);
                let mut expected = plain.clone();
                soft.encrypt_cbc(&[9; 16], &mut expected);
                let mut got = plain.clone();
                enc.encrypt_cbc(&[9; 16], &mut got);
                assert_eq!(got, expected, "AES-{} encrypt {blocks} blocks", len * 8);
                dec.decrypt_cbc(&[9; 16], &mut got);
                assert_eq!(got, plain, "AES-{} decrypt {blocks} blocks", len * 8);
                let mut one_by_one = expected.clone();
                let mut chain = [9u8; 16];
                for b in one_by_one.chunks_exact_mut(16) {
                    let b: &mut [u8; 16] = b.try_into().expect("16 bytes");
                    // SAFETY: `AesKeys::new` succeeded, so the CPU has AES-NI.
                    unsafe { x86::decrypt_block(&dec, &mut chain, b) };
                }
                assert_eq!(one_by_one, plain, "AES-{} block by block", len * 8);
            }
        }
    }
}

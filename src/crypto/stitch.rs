//! Stitched AES-CBC + HMAC-SHA1 over a batch of ESP packets of one SA (issue 12 point 3).
//!
//! AES-CBC encryption is serial within a packet (RFC 3602 §2: each block is chained through the
//! previous ciphertext) and so is SHA-1 (RFC 3174 §6: each block is chained through the state).
//! One packet alone waits on the latency of one unit at a time. AES-NI and SHA-NI are separate
//! execution units, so the kernel here runs one instruction stream that advances the CBC chain
//! of packet `i` by four blocks between the twenty `sha1rnds4` groups of one SHA-1 block of
//! packet `i - 1`, which is already encrypted: ESP is encrypt-then-MAC (RFC 4303 §3.3.4). On the
//! way in (RFC 4303 §3.4.4) the roles swap: packet `i` is verified while packet `i - 1`, whose ICV
//! already matched, is decrypted; nothing is decrypted before its ICV verified.
//!
//! Several SHA-NI chains at once were measured first and bring nothing on the SHA-NI CPUs
//! this runs on (`sha1rnds4` is throughput-bound there), so one hash chain is stitched with
//! one cipher chain, as OpenSSL's `aesni_cbc_sha1_enc` does. That single SHA-NI chain is the
//! ceiling of this kernel; with AVX-512 the [`Engine::MultiBuffer`] engine hashes sixteen
//! packets at once on the vector units instead ([`sha1_mb`]), about twice SHA-NI's rate, and
//! runs the AES of the batch in a separate pass (eight CBC chains interleaved on the way out,
//! sixteen blocks per VAES step on the way in).
//!
//! What a crate does well comes from crates: AES key expansion is FIPS-197 §5.2 with SubWord
//! from `aeskeygenassist` (the `aes` crate keeps its round keys private), the portable
//! [`Engine`] is the `cbc`/`aes` and `sha1` crates packet by packet, and [`HmacSha1Pads`] keys
//! HMAC once per SA with the `sha1` crate's compression function.

use std::marker::PhantomData;

use cipher::{Block, BlockModeDecrypt, BlockModeEncrypt, InnerIvInit};
use sha1::Digest;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use super::sha1_mb;

/// Most packets one call handles; longer batches are cut.
pub const MAX_BATCH: usize = 64;

/// CBC chains [`AesKeys::encrypt_cbc_lanes`] interleaves: enough independent chains to cover
/// the `aesenc` latency, few enough for the round keys and states to stay in registers.
pub const CBC_LANES: usize = 8;

const BLOCK: usize = 64;
/// RFC 3174 §6.1 initial hash value.
const H0: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];
/// ESP header (SPI, sequence number) in front of the IV (RFC 4303 §2).
const ESP_HEADER: usize = 8;
/// AES block = IV length for AES-CBC (RFC 3602 §3).
const AES_BLOCK: usize = 16;
/// AES blocks per SHA-1 block in the kernel: 64 bytes each, the same pace.
const STEP: usize = BLOCK;

/// Fewest packets [`Engine::MultiBuffer`] hashes sixteen lanes at a time; smaller batches run
/// stitched (one SHA-NI chain keeps pace with the AES then, and the vector lanes would idle).
pub const MULTI_BUFFER_MIN: usize = sha1_mb::MIN_LANES;

/// Which implementation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// AES-CBC of the whole batch with AES-NI (packets interleaved), then HMAC-SHA1 of the
    /// batch sixteen packets at a time on the AVX-512 units ([`sha1_mb`]): one SHA-NI chain
    /// caps the stitched kernel, the vector units do not share it. Batches of fewer than
    /// [`MULTI_BUFFER_MIN`] packets run stitched.
    MultiBuffer,
    /// x86-64 AES-NI and SHA-NI stitched in one kernel.
    Stitched,
    /// The `cbc`/`aes` and `sha1` crates, packet after packet.
    Portable,
}

impl Engine {
    /// The fastest engine this CPU runs.
    pub fn detect() -> Self {
        if !Self::stitched_runs() {
            Self::Portable
        } else if sha1_mb::available() {
            Self::MultiBuffer
        } else {
            Self::Stitched
        }
    }

    /// Every engine this CPU runs, slowest first (tests compare them all).
    pub fn supported() -> Vec<Self> {
        let mut e = vec![Self::Portable];
        if Self::stitched_runs() {
            e.push(Self::Stitched);
            if sha1_mb::available() {
                e.push(Self::MultiBuffer);
            }
        }
        e
    }

    fn stitched_runs() -> bool {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("ssse3")
            && std::arch::is_x86_feature_detected!("sse4.1")
        {
            return true;
        }
        false
    }
}

/// HMAC-SHA1 (RFC 2104) keyed once per SA: the SHA-1 states after the `K ^ ipad` and
/// `K ^ opad` blocks, so a packet costs only its own blocks plus one outer block.
#[derive(Clone)]
pub struct HmacSha1Pads {
    inner: [u32; 5],
    outer: [u32; 5],
}

impl Drop for HmacSha1Pads {
    fn drop(&mut self) {
        self.inner.zeroize();
        self.outer.zeroize();
    }
}

impl HmacSha1Pads {
    pub fn new(key: &[u8]) -> Self {
        // RFC 2104 §2: a key longer than the block is hashed first, a shorter one zero-padded.
        let mut k = [0u8; BLOCK];
        if key.len() > BLOCK {
            k[..20].copy_from_slice(&sha1::Sha1::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let pad = |byte: u8| {
            let mut b = [0u8; BLOCK];
            for (o, x) in b.iter_mut().zip(k.iter()) {
                *o = x ^ byte;
            }
            let mut s = H0;
            sha1::block_api::compress(&mut s, std::slice::from_ref(&b));
            b.zeroize();
            s
        };
        let pads = Self {
            inner: pad(0x36),
            outer: pad(0x5c),
        };
        k.zeroize();
        pads
    }

    /// The full HMAC of `msg`, one block after the other.
    pub fn mac(&self, msg: &[u8]) -> [u8; 20] {
        Mac::new(0, self, msg).finish(self, msg)
    }
}

/// One HMAC in progress: the message's whole blocks, its padded tail (one or two blocks), then
/// the outer block over the inner digest.
#[derive(Clone, Copy)]
pub(super) struct Mac {
    pub(super) job: usize,
    pub(super) state: [u32; 5],
    next: usize,
    whole: usize,
    tail: [u8; 2 * BLOCK],
    tail_blocks: usize,
    outer: bool,
}

impl Mac {
    pub(super) fn new(job: usize, pads: &HmacSha1Pads, msg: &[u8]) -> Self {
        let whole = msg.len() / BLOCK;
        let rem = &msg[whole * BLOCK..];
        let mut tail = [0u8; 2 * BLOCK];
        tail[..rem.len()].copy_from_slice(rem);
        tail[rem.len()] = 0x80;
        let tail_blocks = if rem.len() + 9 <= BLOCK { 1 } else { 2 };
        // The length counts the ipad block already absorbed (RFC 3174 §4).
        let bits = (BLOCK as u64 + msg.len() as u64).saturating_mul(8);
        tail[tail_blocks * BLOCK - 8..tail_blocks * BLOCK].copy_from_slice(&bits.to_be_bytes());
        Self {
            job,
            state: pads.inner,
            next: 0,
            whole,
            tail,
            tail_blocks,
            outer: false,
        }
    }

    /// The remaining blocks one after the other (the `sha1` crate's compression: SHA-NI
    /// where the CPU has it).
    pub(super) fn finish(mut self, pads: &HmacSha1Pads, msg: &[u8]) -> [u8; 20] {
        loop {
            let b = *self.block(msg);
            sha1::block_api::compress(&mut self.state, std::slice::from_ref(&b));
            if let Some(mac) = self.advance(pads) {
                return mac;
            }
        }
    }

    fn done(&self) -> bool {
        self.outer && self.next == 1
    }

    pub(super) fn block<'a>(&'a self, msg: &'a [u8]) -> &'a [u8; BLOCK] {
        let (src, at) = if self.next < self.whole {
            (msg, self.next * BLOCK)
        } else {
            (&self.tail[..], (self.next - self.whole) * BLOCK)
        };
        src[at..at + BLOCK].try_into().unwrap_or(&[0; BLOCK])
    }

    /// Whole message blocks left before the padded tail.
    pub(super) fn whole_left(&self) -> usize {
        self.whole.saturating_sub(self.next)
    }

    /// The next `n` (at least one, at most [`Self::whole_left`]) whole message blocks.
    pub(super) fn whole_blocks<'a>(&self, msg: &'a [u8], n: usize) -> &'a [u8] {
        &msg[self.next * BLOCK..(self.next + n) * BLOCK]
    }

    /// [`Self::advance`] after `n` compressions.
    pub(super) fn advance_by(&mut self, pads: &HmacSha1Pads, n: usize) -> Option<[u8; 20]> {
        self.next += n.saturating_sub(1);
        self.advance(pads)
    }

    /// After a compression: moves to the next block; returns the MAC once the outer block is in.
    pub(super) fn advance(&mut self, pads: &HmacSha1Pads) -> Option<[u8; 20]> {
        self.next += 1;
        if self.next < self.whole + self.tail_blocks {
            return None;
        }
        let digest = digest_bytes(&self.state);
        if self.outer {
            return Some(digest);
        }
        // Outer hash: H(K ^ opad || inner digest), one block of 20 + padding, 84 bytes counted.
        self.tail = [0u8; 2 * BLOCK];
        self.tail[..20].copy_from_slice(&digest);
        self.tail[20] = 0x80;
        self.tail[56..64].copy_from_slice(&((BLOCK as u64 + 20) * 8).to_be_bytes());
        self.state = pads.outer;
        self.outer = true;
        self.whole = 0;
        self.tail_blocks = 1;
        self.next = 0;
        None
    }
}

fn digest_bytes(state: &[u32; 5]) -> [u8; 20] {
    let mut d = [0u8; 20];
    for (c, w) in d.chunks_exact_mut(4).zip(state) {
        c.copy_from_slice(&w.to_be_bytes());
    }
    d
}

/// Each buffer is one ESP packet from the SPI to the end of the ICV
/// (`header | IV | ciphertext | ICV`); the MAC covers all but the ICV (RFC 4303 §2).
fn esp_message(p: &[u8], icv_len: usize) -> &[u8] {
    &p[..p.len().saturating_sub(icv_len)]
}

/// Whether a buffer has the shape [`seal`] and [`open`] work on.
fn well_formed(p: &[u8], icv_len: usize) -> bool {
    let body = p.len().saturating_sub(ESP_HEADER + icv_len);
    icv_len <= 20 && p.len() >= ESP_HEADER + icv_len + AES_BLOCK && body.is_multiple_of(AES_BLOCK)
}

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
    rk: Box<[[u8; 16]]>,
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
    fn rounds(&self) -> usize {
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
/// only [`Engine::Portable`] runs).
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

/// One CBC chain in progress: packet `job`, next block at `at`, its ciphertext ends at `end`,
/// `chain` is the previous ciphertext block (the IV at first).
struct Chain {
    job: usize,
    at: usize,
    end: usize,
    chain: [u8; AES_BLOCK],
}

impl Chain {
    fn start(job: usize, p: &[u8], icv_len: usize) -> Self {
        let mut chain = [0u8; AES_BLOCK];
        chain.copy_from_slice(&p[ESP_HEADER..ESP_HEADER + AES_BLOCK]);
        Self {
            job,
            at: ESP_HEADER + AES_BLOCK,
            end: p.len() - icv_len,
            chain,
        }
    }

    fn left(&self) -> usize {
        self.end - self.at
    }
}

/// Packet `a` mutably and packet `b` (another one) shared.
fn pair<'p>(packets: &'p mut [&mut [u8]], a: usize, b: usize) -> (&'p mut [u8], &'p [u8]) {
    if b < a {
        let (lo, hi) = packets.split_at_mut(a);
        (&mut *hi[0], &*lo[b])
    } else {
        let (lo, hi) = packets.split_at_mut(b);
        (&mut *lo[a], &*hi[0])
    }
}

/// Encrypt-then-MAC for ESP packets of one AES-CBC + HMAC-SHA1 SA. Each buffer is
/// `ESP header | IV | plaintext | ICV space`, the IV already random and the plaintext padded;
/// afterwards the plaintext is CBC ciphertext (RFC 3602) and the ICV holds the HMAC truncated
/// to `icv_len` (RFC 2404: 12). The stitched and multi-buffer engines need `cipher` to be
/// [`AesKeys`]. Returns false, changing nothing, if a buffer has another shape or the engine
/// cannot run.
pub fn seal<C: CbcEncrypt + ?Sized>(
    cipher: &C,
    pads: &HmacSha1Pads,
    icv_len: usize,
    engine: Engine,
    packets: &mut [&mut [u8]],
) -> bool {
    if !packets.iter().all(|p| well_formed(p, icv_len)) {
        return false;
    }
    // AES-NI keys exist without SHA-NI: the kernels need both.
    let keys = cipher.aes_ni().filter(|_| Engine::stitched_runs());
    match (engine, keys) {
        #[cfg(target_arch = "x86_64")]
        (Engine::Stitched, Some(k)) => {
            for chunk in packets.chunks_mut(MAX_BATCH) {
                seal_stitched(k, pads, icv_len, chunk);
            }
        }
        #[cfg(target_arch = "x86_64")]
        (Engine::MultiBuffer, Some(k)) => {
            for chunk in packets.chunks_mut(MAX_BATCH) {
                if chunk.len() < MULTI_BUFFER_MIN {
                    seal_stitched(k, pads, icv_len, chunk);
                } else {
                    seal_multi(k, pads, icv_len, chunk);
                }
            }
        }
        (Engine::Stitched | Engine::MultiBuffer, _) => return false,
        (Engine::Portable, _) => {
            for p in packets.iter_mut() {
                let c = Chain::start(0, p, icv_len);
                cipher.encrypt_cbc(&c.chain, &mut p[c.at..c.end]);
                let mac = pads.mac(esp_message(p, icv_len));
                let at = p.len() - icv_len;
                p[at..].copy_from_slice(&mac[..icv_len]);
            }
        }
    }
    true
}

/// Encrypt-then-MAC in two passes over at most [`MAX_BATCH`] packets: every CBC chain (eight
/// packets interleaved, so AES-NI is pipelined although each chain is serial), then every
/// ICV over the ciphertexts sixteen at a time ([`sha1_mb::hmac_batch`]).
#[cfg(target_arch = "x86_64")]
fn seal_multi(
    keys: &AesKeys<Encrypt>,
    pads: &HmacSha1Pads,
    icv_len: usize,
    packets: &mut [&mut [u8]],
) {
    for group in packets.chunks_mut(CBC_LANES) {
        let k = group.len();
        let mut cbc: [&mut [u8]; CBC_LANES] = Default::default();
        for (c, p) in cbc.iter_mut().zip(group.iter_mut()) {
            let end = p.len() - icv_len;
            *c = &mut p[ESP_HEADER..end];
        }
        keys.encrypt_cbc_lanes(&mut cbc[..k]);
    }
    let mut macs = [[0u8; 20]; MAX_BATCH];
    let macs = &mut macs[..packets.len()];
    sha1_mb::hmac_batch(pads, packets, icv_len, macs);
    for (p, mac) in packets.iter_mut().zip(macs.iter()) {
        let at = p.len() - icv_len;
        p[at..].copy_from_slice(&mac[..icv_len]);
    }
}

/// Which way the CBC chain of a stitched pass runs, with the round keys of that way.
#[derive(Clone, Copy)]
enum Cbc<'k> {
    Encrypt(&'k AesKeys<Encrypt>),
    Decrypt(&'k AesKeys<Decrypt>),
}

/// One step of a stitched pass, shared by [`seal_stitched`] and [`open_stitched`]: CBC blocks
/// of chain `cbc` interleaved with SHA-1 blocks of `mac` when both have work, else whichever
/// has. Returns false when neither has anything left.
fn step(
    dir: Cbc<'_>,
    pads: &HmacSha1Pads,
    icv_len: usize,
    packets: &mut [&mut [u8]],
    cbc: &mut Option<Chain>,
    mac: &mut Option<Mac>,
) -> bool {
    match (cbc, mac) {
        (Some(c), Some(m)) if c.left() >= STEP => {
            let (p, q) = pair(packets, c.job, m.job);
            let q = esp_message(q, icv_len);
            // Whole message blocks straight from the packet, as many as both sides have;
            // the padded tail and the outer block one at a time.
            let steps = (c.left() / STEP).min(m.whole.saturating_sub(m.next)).max(1);
            let tail;
            let msg = if m.next < m.whole {
                &q[m.next * BLOCK..(m.next + steps) * BLOCK]
            } else {
                tail = *m.block(q);
                &tail[..]
            };
            let io = &mut p[c.at..c.at + steps * STEP];
            // SAFETY: `seal` and `open` pass keys only if `Engine::stitched_runs` found aes,
            // sha, ssse3 and sse4.1.
            unsafe {
                match dir {
                    Cbc::Encrypt(k) => x86::seal_run(k, &mut c.chain, io, &mut m.state, msg),
                    Cbc::Decrypt(k) => x86::open_run(k, &mut c.chain, io, &mut m.state, msg),
                }
            };
            c.at += steps * STEP;
            m.next += steps - 1;
            m.advance(pads);
        }
        (Some(c), _) => {
            let p = &mut packets[c.job];
            let blk: &mut [u8; AES_BLOCK] = (&mut p[c.at..c.at + AES_BLOCK])
                .try_into()
                .unwrap_or_else(|_| unreachable!());
            // SAFETY: as above.
            unsafe {
                match dir {
                    Cbc::Encrypt(k) => x86::encrypt_block(k, &mut c.chain, blk),
                    Cbc::Decrypt(k) => x86::decrypt_block(k, &mut c.chain, blk),
                }
            };
            c.at += AES_BLOCK;
        }
        (None, Some(m)) => {
            let b = *m.block(esp_message(packets[m.job], icv_len));
            sha1::block_api::compress(&mut m.state, std::slice::from_ref(&b));
            m.advance(pads);
        }
        (None, None) => return false,
    }
    true
}

/// The pipeline: packet `a` is encrypted while packet `b < a` (encrypted already) is hashed,
/// 64 bytes of each per kernel call; the first packet's encryption and the last one's hashing
/// run alone.
#[cfg(target_arch = "x86_64")]
fn seal_stitched(
    keys: &AesKeys<Encrypt>,
    pads: &HmacSha1Pads,
    icv_len: usize,
    packets: &mut [&mut [u8]],
) {
    let n = packets.len();
    let mut enc = (n > 0).then(|| Chain::start(0, packets[0], icv_len));
    let mut mac: Option<Mac> = None;
    let mut hashed = 0;
    loop {
        // A finished chain (or an empty packet) hands over to the next packet.
        while let Some(c) = &enc
            && c.left() == 0
        {
            let next = c.job + 1;
            enc = (next < n).then(|| Chain::start(next, packets[next], icv_len));
        }
        let encrypted = enc.as_ref().map_or(n, |c| c.job);
        if mac.is_none() && hashed < encrypted {
            mac = Some(Mac::new(
                hashed,
                pads,
                esp_message(packets[hashed], icv_len),
            ));
            hashed += 1;
        }
        if !step(
            Cbc::Encrypt(keys),
            pads,
            icv_len,
            packets,
            &mut enc,
            &mut mac,
        ) {
            break;
        }
        if let Some(m) = &mac
            && m.done()
        {
            let digest = digest_bytes(&m.state);
            let p = &mut packets[m.job];
            let at = p.len() - icv_len;
            p[at..].copy_from_slice(&digest[..icv_len]);
            mac = None;
        }
    }
}

/// Verify-then-decrypt for ESP packets of one AES-CBC + HMAC-SHA1 SA (RFC 4303 §3.4.4): each
/// buffer is `ESP header | IV | ciphertext | ICV`. `ok[i]` tells whether packet `i`'s ICV
/// matched (compared in constant time); only those packets are decrypted in place, the others
/// are left as received. Returns false, changing nothing, if a buffer has another shape or the
/// engine cannot run (the stitched and multi-buffer engines need `cipher` to be [`AesKeys`]).
pub fn open<C: CbcDecrypt + ?Sized>(
    cipher: &C,
    pads: &HmacSha1Pads,
    icv_len: usize,
    engine: Engine,
    packets: &mut [&mut [u8]],
    ok: &mut [bool],
) -> bool {
    if ok.len() != packets.len() || !packets.iter().all(|p| well_formed(p, icv_len)) {
        return false;
    }
    let keys = cipher.aes_ni().filter(|_| Engine::stitched_runs());
    match (engine, keys) {
        #[cfg(target_arch = "x86_64")]
        (Engine::Stitched, Some(k)) => {
            for (chunk, ok) in packets.chunks_mut(MAX_BATCH).zip(ok.chunks_mut(MAX_BATCH)) {
                open_stitched(k, pads, icv_len, chunk, ok);
            }
        }
        #[cfg(target_arch = "x86_64")]
        (Engine::MultiBuffer, Some(k)) => {
            for (chunk, ok) in packets.chunks_mut(MAX_BATCH).zip(ok.chunks_mut(MAX_BATCH)) {
                if chunk.len() < MULTI_BUFFER_MIN {
                    open_stitched(k, pads, icv_len, chunk, ok);
                } else {
                    open_multi(k, pads, icv_len, chunk, ok);
                }
            }
        }
        (Engine::Stitched | Engine::MultiBuffer, _) => return false,
        (Engine::Portable, _) => {
            for (p, ok) in packets.iter_mut().zip(ok.iter_mut()) {
                *ok = verify(pads, p, icv_len);
                if *ok {
                    cbc_decrypt(cipher, p, icv_len);
                }
            }
        }
    }
    true
}

/// CBC-decrypts one ESP packet in place (the blocks of one packet are independent on the way
/// in, RFC 3602 §2, so they run in parallel).
fn cbc_decrypt<C: CbcDecrypt + ?Sized>(cipher: &C, p: &mut [u8], icv_len: usize) {
    let c = Chain::start(0, p, icv_len);
    cipher.decrypt_cbc(&c.chain, &mut p[c.at..c.end]);
}

/// Verify-then-decrypt in two passes over at most [`MAX_BATCH`] packets: every ICV sixteen
/// packets at a time ([`sha1_mb::hmac_batch`]), compared in constant time, then the
/// decryption of the packets whose ICV matched only (RFC 4303 §3.4.4), sixteen blocks at a
/// time with VAES where the CPU has it ([`CbcDecrypt::decrypt_cbc`]).
#[cfg(target_arch = "x86_64")]
fn open_multi(
    keys: &AesKeys<Decrypt>,
    pads: &HmacSha1Pads,
    icv_len: usize,
    packets: &mut [&mut [u8]],
    ok: &mut [bool],
) {
    let mut macs = [[0u8; 20]; MAX_BATCH];
    let macs = &mut macs[..packets.len()];
    sha1_mb::hmac_batch(pads, packets, icv_len, macs);
    for ((p, ok), mac) in packets.iter_mut().zip(ok.iter_mut()).zip(macs.iter()) {
        *ok = bool::from(mac[..icv_len].ct_eq(&p[p.len() - icv_len..]));
        if *ok {
            cbc_decrypt(keys, p, icv_len);
        }
    }
}

fn verify(pads: &HmacSha1Pads, p: &[u8], icv_len: usize) -> bool {
    let mac = pads.mac(esp_message(p, icv_len));
    bool::from(mac[..icv_len].ct_eq(&p[p.len() - icv_len..]))
}

/// The pipeline the other way: packet `b` is hashed while packet `a < b`, whose ICV matched,
/// is decrypted, 64 bytes of each per kernel call.
#[cfg(target_arch = "x86_64")]
fn open_stitched(
    keys: &AesKeys<Decrypt>,
    pads: &HmacSha1Pads,
    icv_len: usize,
    packets: &mut [&mut [u8]],
    ok: &mut [bool],
) {
    let n = packets.len();
    let mut mac = (n > 0).then(|| Mac::new(0, pads, esp_message(packets[0], icv_len)));
    let mut dec: Option<Chain> = None;
    // Verified packets not yet decrypted, oldest first.
    let mut queue = [0usize; MAX_BATCH];
    let (mut head, mut tail) = (0, 0);
    loop {
        while dec.is_none() && head < tail {
            let job = queue[head];
            head += 1;
            dec = Some(Chain::start(job, packets[job], icv_len)).filter(|c| c.left() > 0);
        }
        if !step(
            Cbc::Decrypt(keys),
            pads,
            icv_len,
            packets,
            &mut dec,
            &mut mac,
        ) {
            break;
        }
        if let Some(c) = &dec
            && c.left() == 0
        {
            dec = None;
        }
        if let Some(m) = &mac
            && m.done()
        {
            let digest = digest_bytes(&m.state);
            let p = &packets[m.job];
            let good = bool::from(digest[..icv_len].ct_eq(&p[p.len() - icv_len..]));
            ok[m.job] = good;
            if good {
                queue[tail] = m.job;
                tail += 1;
            }
            let next = m.job + 1;
            mac = (next < n).then(|| Mac::new(next, pads, esp_message(packets[next], icv_len)));
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The kernels. Every function needs aes, sha, ssse3 and sse4.1, which
    //! [`super::Engine::detect`] checked before an [`AesKeys`] could exist.

    use core::arch::x86_64::*;

    use super::{AesKeys, CBC_LANES, Decrypt, Encrypt};

    /// `$f::<Nr>(args)` for the keys' number of rounds (a constant in the kernels, so their
    /// round loops unroll).
    macro_rules! by_rounds {
        ($keys:expr, $f:ident($($a:expr),*)) => {
            match $keys.rounds() {
                10 => $f::<10>($($a),*),
                12 => $f::<12>($($a),*),
                _ => $f::<14>($($a),*),
            }
        };
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn load(b: &[u8]) -> __m128i {
        assert!(b.len() >= 16);
        // SAFETY: at least 16 readable bytes (asserted); unaligned load.
        unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn store(b: &mut [u8], v: __m128i) {
        assert!(b.len() >= 16);
        // SAFETY: at least 16 writable bytes (asserted); unaligned store.
        unsafe { _mm_storeu_si128(b.as_mut_ptr().cast(), v) }
    }

    /// Round keys 0..=NR in registers (the rest zero).
    #[inline]
    #[target_feature(enable = "sse2")]
    fn round_keys<const NR: usize>(k: &[[u8; 16]]) -> [__m128i; 15] {
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
    pub(super) unsafe fn encrypt_block(
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
    /// ciphertext; the first blocks that do not fill a step go one at a time.
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
        decrypt_singles::<NR>(&k, iv, data, n);
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
        let mut n = data.len() / 16;
        while n >= 8 {
            let at = 16 * (n - 8);
            let mut c = [_mm_setzero_si128(); 8];
            for (j, c) in c.iter_mut().enumerate() {
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
            for j in 1..8 {
                store(&mut data[at + 16 * j..], _mm_xor_si128(x[j], c[j - 1]));
            }
            n -= 8;
        }
        decrypt_singles::<NR>(&k, iv, data, n);
    }

    /// Blocks `n - 1` down to 0 of `data` one at a time (block 0 chains from `iv`).
    #[inline]
    #[target_feature(enable = "aes,sse2")]
    fn decrypt_singles<const NR: usize>(
        k: &[__m128i; 15],
        iv: &[u8; 16],
        data: &mut [u8],
        mut n: usize,
    ) {
        while n > 0 {
            let at = 16 * (n - 1);
            let prev = if at >= 16 {
                load(&data[at - 16..])
            } else {
                load(iv)
            };
            let mut x = _mm_xor_si128(load(&data[at..]), k[0]);
            for rk in &k[1..NR] {
                x = _mm_aesdec_si128(x, *rk);
            }
            x = _mm_aesdeclast_si128(x, k[NR]);
            store(&mut data[at..], _mm_xor_si128(x, prev));
            n -= 1;
        }
    }

    /// One CBC decryption block: `blk = D(blk) ^ chain`, `chain` = the old `blk`.
    ///
    /// # Safety
    /// The CPU must support aes.
    #[target_feature(enable = "aes,sse2")]
    pub(super) unsafe fn decrypt_block(
        keys: &AesKeys<Decrypt>,
        chain: &mut [u8; 16],
        blk: &mut [u8; 16],
    ) {
        let c = *blk;
        by_rounds!(keys, decrypt_lanes(&keys.rk, chain, blk));
        *chain = c;
    }

    /// The SHA-1 state in registers: A..D (A in the top lane) and E (top lane).
    #[derive(Clone, Copy)]
    struct Sha1State {
        abcd: __m128i,
        e: __m128i,
    }

    impl Sha1State {
        #[inline]
        #[target_feature(enable = "sse2,sse4.1")]
        fn load(state: &[u32; 5]) -> Self {
            let s = state.map(|x| x as i32);
            Self {
                abcd: _mm_set_epi32(s[0], s[1], s[2], s[3]),
                e: _mm_set_epi32(s[4], 0, 0, 0),
            }
        }

        #[inline]
        #[target_feature(enable = "sse2,sse4.1")]
        fn store(self, state: &mut [u32; 5]) {
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
    struct Sha1Block {
        start: Sha1State,
        cur: __m128i,
        prev: __m128i,
        w: [__m128i; 5],
    }

    impl Sha1Block {
        #[inline]
        #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
        fn new(start: Sha1State, msg: &[u8]) -> Self {
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
        fn group(&mut self, t: usize) {
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
        fn finish(self) -> Sha1State {
            Sha1State {
                abcd: _mm_add_epi32(self.start.abcd, self.cur),
                e: _mm_sha1nexte_epu32(self.prev, self.start.e),
            }
        }
    }

    /// CBC-encrypts `io` (64-byte steps, chained from `chain`) while hashing `msg` (as many
    /// 64-byte blocks) into `state`: each step puts the four AES blocks of `io` between the
    /// twenty round groups of one SHA-1 block. `io` and `msg` belong to different packets.
    ///
    /// # Safety
    /// The CPU must support aes, sha, ssse3 and sse4.1.
    #[target_feature(enable = "aes,sha,sse2,ssse3,sse4.1")]
    pub(super) unsafe fn seal_run(
        keys: &AesKeys<Encrypt>,
        chain: &mut [u8; 16],
        io: &mut [u8],
        state: &mut [u32; 5],
        msg: &[u8],
    ) {
        by_rounds!(keys, seal(&keys.rk, chain, io, state, msg));
    }

    #[inline]
    #[target_feature(enable = "aes,sha,sse2,ssse3,sse4.1")]
    fn seal<const NR: usize>(
        rk: &[[u8; 16]],
        chain: &mut [u8; 16],
        io: &mut [u8],
        state: &mut [u32; 5],
        msg: &[u8],
    ) {
        let k = round_keys::<NR>(rk);
        let mut x = load(chain);
        let mut h = Sha1State::load(state);
        // The four blocks are one chain: 4 * (NR + 1) dependent AES steps, spread over the
        // twenty SHA-1 groups (all indices are constants once unrolled).
        let total = 4 * (NR + 1);
        let per_group = total.div_ceil(20);
        debug_assert!(per_group <= 3);
        for (io, msg) in io.chunks_exact_mut(64).zip(msg.chunks_exact(64)) {
            let mut blocks = [_mm_setzero_si128(); 4];
            for (j, b) in blocks.iter_mut().enumerate() {
                *b = load(&io[16 * j..]);
            }
            let mut sha = Sha1Block::new(h, msg);
            unroll!(T in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19] {
                sha.group(T);
                unroll!(Q in [0, 1, 2] {
                    let op = T * per_group + Q;
                    if Q < per_group && op < total {
                        let (j, r) = (op / (NR + 1), op % (NR + 1));
                        if r == 0 {
                            x = _mm_xor_si128(_mm_xor_si128(blocks[j], x), k[0]);
                        } else if r < NR {
                            x = _mm_aesenc_si128(x, k[r]);
                        } else {
                            x = _mm_aesenclast_si128(x, k[NR]);
                            blocks[j] = x;
                        }
                    }
                });
            });
            h = sha.finish();
            for (j, b) in blocks.iter().enumerate() {
                store(&mut io[16 * j..], *b);
            }
        }
        h.store(state);
        store(chain, x);
    }

    /// CBC-decrypts `io` (64-byte steps; `chain` is the ciphertext block before it) while
    /// hashing `msg` into `state`. The four blocks of a step are independent, one AES round of
    /// all four per SHA-1 round group. `io` and `msg` belong to different packets.
    ///
    /// # Safety
    /// The CPU must support aes, sha, ssse3 and sse4.1.
    #[target_feature(enable = "aes,sha,sse2,ssse3,sse4.1")]
    pub(super) unsafe fn open_run(
        keys: &AesKeys<Decrypt>,
        chain: &mut [u8; 16],
        io: &mut [u8],
        state: &mut [u32; 5],
        msg: &[u8],
    ) {
        by_rounds!(keys, open(&keys.rk, chain, io, state, msg));
    }

    #[inline]
    #[target_feature(enable = "aes,sha,sse2,ssse3,sse4.1")]
    fn open<const NR: usize>(
        dk: &[[u8; 16]],
        chain: &mut [u8; 16],
        io: &mut [u8],
        state: &mut [u32; 5],
        msg: &[u8],
    ) {
        let k = round_keys::<NR>(dk);
        let mut prev = load(chain);
        let mut h = Sha1State::load(state);
        for (io, msg) in io.chunks_exact_mut(64).zip(msg.chunks_exact(64)) {
            let mut c = [_mm_setzero_si128(); 4];
            for (j, c) in c.iter_mut().enumerate() {
                *c = load(&io[16 * j..]);
            }
            let mut x = c;
            let mut sha = Sha1Block::new(h, msg);
            unroll!(R in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19] {
                sha.group(R);
                if R == 0 {
                    x = x.map(|x| _mm_xor_si128(x, k[0]));
                } else if R < NR {
                    x = x.map(|x| _mm_aesdec_si128(x, k[R % 15]));
                } else if R == NR {
                    x = x.map(|x| _mm_aesdeclast_si128(x, k[NR]));
                }
            });
            h = sha.finish();
            let before = [prev, c[0], c[1], c[2]];
            for j in 0..4 {
                store(&mut io[16 * j..], _mm_xor_si128(x[j], before[j]));
            }
            prev = c[3];
        }
        h.store(state);
        store(chain, prev);
    }
}

#[cfg(test)]
pub(super) mod tests {
    //! The stitched paths against the plain RustCrypto ones (`cbc` + `hmac`), both engines.

    use aes::{Aes128, Aes192, Aes256};
    use cipher::typenum::U16;
    use cipher::{BlockCipherEncrypt, BlockSizeUser, KeyInit};
    use hmac::{Hmac, Mac as _};

    use super::*;

    fn engines() -> Vec<Engine> {
        let e = Engine::supported();
        if e.len() < 3 {
            eprintln!("no AES-NI + SHA-NI or no AVX-512: only {e:?} checked");
        }
        e
    }

    /// Deterministic filler so a failure reproduces (the multi-buffer tests use it too).
    pub(in crate::crypto) fn fill(buf: &mut [u8], seed: usize) {
        let mut x = (seed as u32).wrapping_mul(2_654_435_761) | 1;
        for b in buf {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
    }

    fn plain_hmac(key: &[u8], msg: &[u8]) -> [u8; 20] {
        let mut m = <Hmac<sha1::Sha1>>::new_from_slice(key).expect("any key length");
        m.update(msg);
        m.finalize().into_bytes().into()
    }

    #[test]
    fn hmac_pads_match_rustcrypto_for_every_length_0_to_2048() {
        for key_len in [0usize, 20, 64, 65, 100] {
            let mut key = vec![0u8; key_len];
            fill(&mut key, key_len);
            let pads = HmacSha1Pads::new(&key);
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

    /// Plain encrypt-then-MAC of one ESP-shaped buffer with RustCrypto.
    fn plain_seal<C: BlockCipherEncrypt + BlockSizeUser<BlockSize = U16>>(
        c: &C,
        key: &[u8],
        p: &mut [u8],
        icv_len: usize,
    ) {
        let end = p.len() - icv_len;
        let (iv, body) = p[ESP_HEADER..end].split_at_mut(AES_BLOCK);
        let iv = Block::<C>::try_from(&iv[..]).expect("16 bytes");
        let (blocks, rest) = Block::<C>::slice_as_chunks_mut(body);
        assert!(rest.is_empty());
        cbc::Encryptor::<&C>::inner_iv_init(c, &iv).encrypt_blocks(blocks);
        let mac = plain_hmac(key, &p[..end]);
        p[end..].copy_from_slice(&mac[..icv_len]);
    }

    /// Seals `sizes` (plaintext bytes, multiples of 16) both ways and compares; then opens the
    /// sealed packets (one corrupted) and compares with the original plaintext. `c` is the
    /// reference; `enc` and `dec` are what the engine runs on.
    #[allow(clippy::too_many_arguments)]
    fn check_batch<C>(
        c: &C,
        enc: &dyn CbcEncrypt,
        dec: &dyn CbcDecrypt,
        key: &[u8],
        engine: Engine,
        sizes: &[usize],
        seed: usize,
    ) where
        C: BlockCipherEncrypt + BlockSizeUser<BlockSize = U16>,
    {
        let icv_len = 12;
        let mut bufs: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut b = vec![0u8; ESP_HEADER + AES_BLOCK + s + icv_len];
                fill(&mut b, seed * 131 + i);
                b
            })
            .collect();
        let original = bufs.clone();
        let mut expected = bufs.clone();
        for b in expected.iter_mut() {
            plain_seal(c, key, b, icv_len);
        }
        let pads = HmacSha1Pads::new(key);
        let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
        assert!(seal(enc, &pads, icv_len, engine, &mut refs));
        assert_eq!(bufs, expected, "{engine:?} sizes {sizes:?}");

        // One packet (if there are two or more) gets a flipped ciphertext bit: it must fail
        // and stay as received, every other one must decrypt to the original.
        let bad = if sizes.len() > 1 {
            sizes.len() / 2
        } else {
            usize::MAX
        };
        if let Some(b) = bufs.get_mut(bad) {
            b[ESP_HEADER] ^= 1;
        }
        let received = bufs.clone();
        let mut ok = vec![false; sizes.len()];
        let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
        assert!(open(dec, &pads, icv_len, engine, &mut refs, &mut ok));
        for (i, b) in bufs.iter().enumerate() {
            let end = b.len() - icv_len;
            if i == bad {
                assert!(!ok[i], "corrupted packet {i} verified");
                assert_eq!(b, &received[i], "corrupted packet {i} was changed");
            } else {
                assert!(ok[i], "{engine:?} packet {i} of {sizes:?} failed to verify");
                assert_eq!(
                    b[ESP_HEADER + AES_BLOCK..end],
                    original[i][ESP_HEADER + AES_BLOCK..end]
                );
            }
        }
    }

    /// Runs a batch check: engine, plaintext sizes, seed.
    type Check<'a> = &'a dyn Fn(Engine, &[usize], usize);

    /// Every key length, and every engine: each one this CPU runs on an SA's one-way AES-NI
    /// keys, and the portable engine on the `aes` crate too (a CPU without AES-NI).
    fn each_aes(f: &mut dyn FnMut(Engine, Check<'_>)) {
        let mut key = [0u8; 32];
        fill(&mut key, 7);
        let mac_key = [0x0bu8; 20];
        for len in [16usize, 24, 32] {
            let key = &key[..len];
            let (enc, dec) = (AesKeys::<Encrypt>::new(key), AesKeys::<Decrypt>::new(key));
            let k128 = Aes128::new_from_slice(&key[..16]).expect("16");
            let k192 = Aes192::new_from_slice(&key[..len.min(24)]);
            let k256 = Aes256::new_from_slice(key);
            let check =
                |e: Engine, enc: &dyn CbcEncrypt, dec: &dyn CbcDecrypt, s: &[usize], seed| match (
                    len, &k192, &k256,
                ) {
                    (16, _, _) => check_batch(&k128, enc, dec, &mac_key, e, s, seed),
                    (24, Ok(c), _) => check_batch(c, enc, dec, &mac_key, e, s, seed),
                    (_, _, Ok(c)) => check_batch(c, enc, dec, &mac_key, e, s, seed),
                    _ => unreachable!("key lengths 16, 24, 32"),
                };
            let soft: (&dyn CbcEncrypt, &dyn CbcDecrypt) = match (len, &k192, &k256) {
                (16, _, _) => (&k128, &k128),
                (24, Ok(c), _) => (c, c),
                (_, _, Ok(c)) => (c, c),
                _ => unreachable!("key lengths 16, 24, 32"),
            };
            f(Engine::Portable, &|e, s, seed| {
                check(e, soft.0, soft.1, s, seed)
            });
            if let (Some(enc), Some(dec)) = (&enc, &dec) {
                for engine in engines() {
                    f(engine, &|e, s, seed| check(e, enc, dec, s, seed));
                }
            }
        }
    }

    #[test]
    fn seal_and_open_match_plain_path_for_every_size_0_to_2048() {
        each_aes(&mut |engine, check| {
            {
                for blocks in 0..=128usize {
                    // The size under test beside smaller and larger neighbours, sixteen
                    // packets so that the multi-buffer engine runs its lanes too.
                    let mut sizes = [blocks * 16; 16];
                    sizes[1] = (128 - blocks) * 16;
                    sizes[3] = 16;
                    for (i, s) in sizes.iter_mut().enumerate().skip(4).step_by(2) {
                        *s = ((blocks + i * 17) % 129) * 16;
                    }
                    check(engine, &sizes, blocks);
                }
            }
        });
    }

    #[test]
    fn seal_and_open_match_plain_path_for_every_batch_size_1_to_64() {
        each_aes(&mut |engine, check| {
            {
                for n in 1..=64usize {
                    let sizes: Vec<usize> = (0..n).map(|i| ((n * 7 + i * 13) % 129) * 16).collect();
                    check(engine, &sizes, n);
                    // Equal sizes, as TSO segments of one flow are.
                    check(engine, &vec![1392; n], n + 1000);
                }
            }
        });
    }

    #[test]
    fn misshapen_buffers_are_refused_untouched() {
        let c = Aes128::new_from_slice(&[1u8; 16]).expect("16");
        let (enc, dec) = (
            AesKeys::<Encrypt>::new(&[1u8; 16]),
            AesKeys::<Decrypt>::new(&[1u8; 16]),
        );
        let mut ciphers: Vec<(&dyn CbcEncrypt, &dyn CbcDecrypt)> = vec![(&c, &c)];
        if let (Some(e), Some(d)) = (&enc, &dec) {
            ciphers.push((e, d));
        }
        let pads = HmacSha1Pads::new(&[2u8; 20]);
        for len in [0usize, 7, 8 + 16 + 12 - 1, 8 + 16 + 5 + 12] {
            let mut b = vec![0x55u8; len];
            let mut refs: Vec<&mut [u8]> = vec![&mut b[..]];
            for &(enc, dec) in &ciphers {
                for engine in [Engine::Portable, Engine::Stitched, Engine::MultiBuffer] {
                    assert!(!seal(enc, &pads, 12, engine, &mut refs));
                    let mut ok = [true];
                    assert!(!open(dec, &pads, 12, engine, &mut refs, &mut ok));
                }
            }
            assert!(b.iter().all(|x| *x == 0x55));
        }
    }
}

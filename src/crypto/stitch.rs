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
//! One hash chain is stitched with one cipher chain here, as OpenSSL's `aesni_cbc_sha1_enc`
//! does; that single SHA-NI chain (or, on the way out, the single AES-CBC chain: `aesenc`
//! latency) is the ceiling of this kernel. Whether more SHA-NI chains help depends on the CPU:
//! on the Intel SHA-NI cores this was first measured on, `sha1rnds4` is throughput-bound and
//! several chains brought nothing, so [`Engine::Stitched`] is the engine there; on AMD Zen 3
//! `sha1rnds4` is latency-bound and four chains hash about 2.2-2.6 times one chain's bytes
//! ([`sha1_ni`]), so [`Engine::ShaNiChains`] runs the AES of the batch in a separate pass
//! (eight CBC chains interleaved on the way out, sixteen blocks per VAES step on the way in)
//! and then HMAC-SHA1 of four packets at a time; [`Engine::detect`] tells the two cases apart
//! with a one-time probe. With AVX-512 the [`Engine::MultiBuffer`] engine hashes sixteen
//! packets at once on the vector units instead ([`sha1_mb`]), about twice one SHA-NI chain's
//! rate, with the same separate AES pass.
//!
//! AES-CBC + HMAC-SHA-256-128 (RFC 4868) has no stitched kernel here; [`seal_sha256`] and
//! [`open_sha256`] run the same two passes with [`sha256_ni::hmac_batch`] (four SHA-NI
//! chains; `sha256rnds2` is latency-bound on Zen 3 too), where [`Engine::sha256_chains`]
//! says the start-up probe found the chains worth it; elsewhere that suite stays packet by
//! packet. [`Mac`] and the lane scheduler serve both hashes through [`HmacPads`].
//!
//! The AES runs on the SA's one-way round keys ([`AesKeys`], expanded in [`super::aes_ni`]).
//! What a crate does well comes from crates: the portable [`Engine`] is the SA's CBC of one
//! packet ([`CbcEncrypt`], [`CbcDecrypt`]: AES-NI, or the `cbc`/`aes` crates without it) and
//! the `sha1` crate packet by packet, and [`HmacSha1Pads`] keys HMAC once per SA with the
//! `sha1` crate's compression function.

use core::marker::PhantomData;

use sha1::Digest;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use super::aes_ni::{AesKeys, CBC_LANES, CbcDecrypt, CbcEncrypt, Decrypt, Encrypt};
use super::sha256_ni::{self, HmacSha256Pads};
use super::{sha1_mb, sha1_ni};

/// Most packets one call handles; longer batches are cut.
pub const MAX_BATCH: usize = 64;

pub(super) const BLOCK: usize = 64;
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

/// Fewest packets [`Engine::ShaNiChains`] hashes several chains at a time; a single packet runs
/// stitched (it has no second chain to run beside).
pub const CHAINS_MIN: usize = sha1_ni::MIN_CHAINS;

/// HMAC-SHA1 of a batch of ESP packets without their ICVs ([`sha1_mb::hmac_batch`],
/// [`sha1_ni::hmac_batch`]).
type BatchHash<P> = fn(&P, &[&mut [u8]], usize, &mut [<P as HmacPads>::Digest]);

/// Which implementation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// AES-CBC of the whole batch with AES-NI (packets interleaved), then HMAC-SHA1 of the
    /// batch sixteen packets at a time on the AVX-512 units ([`sha1_mb`]): one SHA-NI chain
    /// caps the stitched kernel, the vector units do not share it. Batches of fewer than
    /// [`MULTI_BUFFER_MIN`] packets run stitched.
    MultiBuffer,
    /// AES-CBC of the whole batch with AES-NI (packets interleaved), then HMAC-SHA1 of the
    /// batch [`sha1_ni::CHAINS`] packets at a time on SHA-NI, their chains interleaved
    /// ([`sha1_ni`]): for CPUs without AVX-512 whose `sha1rnds4` is latency-bound, where one
    /// chain leaves SHA-NI mostly idle. Batches of fewer than [`CHAINS_MIN`] packets run
    /// stitched.
    ShaNiChains,
    /// x86-64 AES-NI and SHA-NI stitched in one kernel.
    Stitched,
    /// The `cbc`/`aes` and `sha1` crates, packet after packet.
    Portable,
}

impl Engine {
    /// The fastest engine this CPU runs. With AVX-512, the sixteen vector lanes
    /// ([`Engine::MultiBuffer`]). Without, several SHA-NI chains ([`Engine::ShaNiChains`])
    /// only where the daemon's start-up probe found them at least 1.3 times one chain's rate
    /// ([`sha1_ni::chains_pay`]; AMD Zen 3: `sha1rnds4` latency-bound, the probe sees 2.2-2.6x
    /// with four chains); else one chain stitched with the AES ([`Engine::Stitched`]), which
    /// wins where one chain already keeps SHA-NI busy (the Intel cores it was written on). A
    /// probe (tens of microseconds, once per process, in `actors/crypto_probe.rs`: the core
    /// reads no clock) rather than a vendor/model table: the property is the unit's latency
    /// against its throughput, which no CPUID bit tells and which new cores change; the margin
    /// keeps a noisy probe on the stitched engine when the two are close.
    pub fn detect() -> Self {
        if !Self::stitched_runs() {
            Self::Portable
        } else if sha1_mb::available() {
            Self::MultiBuffer
        } else if sha1_ni::chains_pay() {
            Self::ShaNiChains
        } else {
            Self::Stitched
        }
    }

    /// Every engine this CPU runs, slowest first (tests compare them all); the chained one
    /// wherever SHA-NI is, whether or not [`Self::detect`] would pick it.
    pub fn supported() -> Vec<Self> {
        let mut e = vec![Self::Portable];
        if Self::stitched_runs() {
            e.push(Self::Stitched);
            e.push(Self::ShaNiChains);
            if sha1_mb::available() {
                e.push(Self::MultiBuffer);
            }
        }
        e
    }

    /// For the two-pass engines: the fewest packets they take (smaller batches run
    /// stitched) and the batch HMAC they hash with.
    pub(super) fn batch_hash(self) -> (usize, BatchHash<HmacSha1Pads>) {
        match self {
            Self::ShaNiChains => (CHAINS_MIN, |p, m, t, macs| {
                sha1_ni::hmac_batch(p, m, t, macs)
            }),
            Self::MultiBuffer | Self::Stitched | Self::Portable => {
                (MULTI_BUFFER_MIN, |p, m, t, macs| {
                    sha1_mb::hmac_batch(p, m, t, macs)
                })
            }
        }
    }

    /// Whether this engine, given an AES-CBC + HMAC-SHA-256 SA, runs the two-pass batch
    /// ([`seal_sha256`], [`open_sha256`]): every engine but the portable one, where the
    /// start-up probe found four SHA-256 chains at least 1.3 times one chain's rate
    /// ([`sha256_ni::chains_pay`]). Elsewhere HMAC-SHA-256 stays packet by packet (the `hmac`
    /// and `sha2` crates, one SHA-NI chain).
    pub fn sha256_chains(self) -> bool {
        self != Self::Portable && sha256_ni::chains_pay() && Self::stitched_runs()
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
        let (inner, outer) = keyed_pads::<Self>(key, H0, |k| sha1::Sha1::digest(k).into());
        Self { inner, outer }
    }

    /// The full HMAC of `msg`, one block after the other.
    pub fn mac(&self, msg: &[u8]) -> [u8; 20] {
        Mac::new(0, self, msg).finish(self, msg)
    }
}

/// A hash keyed for HMAC once per SA (RFC 2104): its states after the `K ^ ipad` and
/// `K ^ opad` blocks. SHA-1 (RFC 3174) and SHA-256 (FIPS 180-4) share what [`Mac`] and the
/// lane scheduler rely on: 64-byte blocks, a message padded with 0x80, zeros and its bit
/// length as a big-endian 64-bit number.
pub trait HmacPads {
    /// The chaining state (H0..H4, H0..H7).
    type State: Copy + Default + Zeroize;
    /// The untruncated MAC.
    type Digest: Copy + Default + AsRef<[u8]>;
    /// Bytes of [`Self::Digest`].
    const DIGEST: usize;
    fn inner(&self) -> Self::State;
    fn outer(&self) -> Self::State;
    /// One block on `state` (the crate's compression: SHA-NI where the CPU has it).
    fn compress(state: &mut Self::State, block: &[u8; BLOCK]);
    /// The state as big-endian bytes.
    fn digest(state: &Self::State) -> Self::Digest;
}

/// RFC 2104 §2: the states after the `K ^ ipad` and `K ^ opad` blocks, each compressed onto
/// `h0`. A key longer than the block is hashed first (`digest`), a shorter one zero-padded.
pub(super) fn keyed_pads<P: HmacPads>(
    key: &[u8],
    h0: P::State,
    digest: impl Fn(&[u8]) -> P::Digest,
) -> (P::State, P::State) {
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        let d = digest(key);
        k[..P::DIGEST].copy_from_slice(d.as_ref());
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| {
        let mut b = [0u8; BLOCK];
        for (o, x) in b.iter_mut().zip(k.iter()) {
            *o = x ^ byte;
        }
        let mut s = h0;
        P::compress(&mut s, &b);
        b.zeroize();
        s
    };
    let pads = (pad(0x36), pad(0x5c));
    k.zeroize();
    pads
}

impl HmacPads for HmacSha1Pads {
    type State = [u32; 5];
    type Digest = [u8; 20];
    const DIGEST: usize = 20;
    fn inner(&self) -> [u32; 5] {
        self.inner
    }
    fn outer(&self) -> [u32; 5] {
        self.outer
    }
    fn compress(state: &mut [u32; 5], block: &[u8; BLOCK]) {
        sha1::block_api::compress(state, std::slice::from_ref(block));
    }
    fn digest(state: &[u32; 5]) -> [u8; 20] {
        digest_bytes(state)
    }
}

/// One HMAC in progress: the message's whole blocks, its padded tail (one or two blocks), then
/// the outer block over the inner digest.
pub(super) struct Mac<P: HmacPads> {
    pub(super) job: usize,
    pub(super) state: P::State,
    next: usize,
    whole: usize,
    tail: [u8; 2 * BLOCK],
    tail_blocks: usize,
    outer: bool,
    hash: PhantomData<fn() -> P>,
}

impl<P: HmacPads> Clone for Mac<P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P: HmacPads> Copy for Mac<P> {}

impl<P: HmacPads> Mac<P> {
    pub(super) fn new(job: usize, pads: &P, msg: &[u8]) -> Self {
        let whole = msg.len() / BLOCK;
        let rem = &msg[whole * BLOCK..];
        let mut tail = [0u8; 2 * BLOCK];
        tail[..rem.len()].copy_from_slice(rem);
        tail[rem.len()] = 0x80;
        let tail_blocks = if rem.len() + 9 <= BLOCK { 1 } else { 2 };
        // The length counts the ipad block already absorbed (RFC 3174 §4, FIPS 180-4 §5.1.1).
        let bits = (BLOCK as u64 + msg.len() as u64).saturating_mul(8);
        tail[tail_blocks * BLOCK - 8..tail_blocks * BLOCK].copy_from_slice(&bits.to_be_bytes());
        Self {
            job,
            state: pads.inner(),
            next: 0,
            whole,
            tail,
            tail_blocks,
            outer: false,
            hash: PhantomData,
        }
    }

    /// The remaining blocks one after the other ([`HmacPads::compress`]).
    pub(super) fn finish(mut self, pads: &P, msg: &[u8]) -> P::Digest {
        loop {
            let b = *self.block(msg);
            P::compress(&mut self.state, &b);
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
    pub(super) fn advance_by(&mut self, pads: &P, n: usize) -> Option<P::Digest> {
        self.next += n.saturating_sub(1);
        self.advance(pads)
    }

    /// After a compression: moves to the next block; returns the MAC once the outer block is in.
    pub(super) fn advance(&mut self, pads: &P) -> Option<P::Digest> {
        self.next += 1;
        if self.next < self.whole + self.tail_blocks {
            return None;
        }
        let digest = P::digest(&self.state);
        if self.outer {
            return Some(digest);
        }
        // Outer hash: H(K ^ opad || inner digest), one block of the digest + padding, the
        // ipad block's 64 bytes counted.
        let d = P::DIGEST;
        self.tail = [0u8; 2 * BLOCK];
        self.tail[..d].copy_from_slice(digest.as_ref());
        self.tail[d] = 0x80;
        self.tail[56..64].copy_from_slice(&((BLOCK + d) as u64 * 8).to_be_bytes());
        self.state = pads.outer();
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

/// Whether every buffer of a batch has the shape the seal and open passes work on, for a MAC
/// of hash `P` truncated to `icv_len` bytes.
fn well_formed<P: HmacPads>(packets: &[&mut [u8]], icv_len: usize) -> bool {
    icv_len <= P::DIGEST
        && packets.iter().all(|p| {
            let body = p.len().saturating_sub(ESP_HEADER + icv_len);
            p.len() >= ESP_HEADER + icv_len + AES_BLOCK && body.is_multiple_of(AES_BLOCK)
        })
}

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
    if !well_formed::<HmacSha1Pads>(packets, icv_len) {
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
        (Engine::MultiBuffer | Engine::ShaNiChains, Some(k)) => {
            let (min, hash) = engine.batch_hash();
            for chunk in packets.chunks_mut(MAX_BATCH) {
                if chunk.len() < min {
                    seal_stitched(k, pads, icv_len, chunk);
                } else {
                    seal_multi(k, pads, icv_len, chunk, hash);
                }
            }
        }
        (Engine::Stitched | Engine::MultiBuffer | Engine::ShaNiChains, _) => return false,
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
/// ICV over the ciphertexts with `hash`, several packets at a time ([`sha1_mb::hmac_batch`]:
/// sixteen, [`sha1_ni::hmac_batch`]: [`sha1_ni::CHAINS`]).
#[cfg(target_arch = "x86_64")]
fn seal_multi<P: HmacPads>(
    keys: &AesKeys<Encrypt>,
    pads: &P,
    icv_len: usize,
    packets: &mut [&mut [u8]],
    hash: BatchHash<P>,
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
    let mut macs = [P::Digest::default(); MAX_BATCH];
    let macs = &mut macs[..packets.len()];
    hash(pads, packets, icv_len, macs);
    for (p, mac) in packets.iter_mut().zip(macs.iter()) {
        let at = p.len() - icv_len;
        p[at..].copy_from_slice(&mac.as_ref()[..icv_len]);
    }
}

/// Encrypt-then-MAC for ESP packets of one AES-CBC + HMAC-SHA-256 SA (RFC 4868: the ICV is
/// the MAC truncated to `icv_len`, 16), laid out as for [`seal`]: the two-pass path of
/// [`Engine::ShaNiChains`], AES-CBC of the batch (eight packets interleaved) then
/// [`sha256_ni::hmac_batch`] on [`sha256_ni::CHAINS`] SHA-NI chains. There is no stitched
/// SHA-256 kernel: the callers choose this only where the chains pay
/// ([`Engine::sha256_chains`]). Returns false, changing nothing, if a buffer has another
/// shape or `cipher` is not AES-NI keys on a CPU with SHA-NI.
pub fn seal_sha256<C: CbcEncrypt + ?Sized>(
    cipher: &C,
    pads: &HmacSha256Pads,
    icv_len: usize,
    packets: &mut [&mut [u8]],
) -> bool {
    if !well_formed::<HmacSha256Pads>(packets, icv_len) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(k) = cipher.aes_ni().filter(|_| Engine::stitched_runs()) {
        for chunk in packets.chunks_mut(MAX_BATCH) {
            seal_multi(k, pads, icv_len, chunk, |p, m, t, macs| {
                sha256_ni::hmac_batch(p, m, t, macs)
            });
        }
        return true;
    }
    let _ = (cipher, pads);
    false
}

/// Verify-then-decrypt for ESP packets of one AES-CBC + HMAC-SHA-256 SA, as [`open`]: every
/// ICV of the batch on the SHA-NI chains first, compared in constant time, then the decryption
/// of the packets whose ICV matched only (RFC 4303 §3.4.4); `ok[i]` tells which. Returns
/// false, changing nothing, as [`seal_sha256`].
pub fn open_sha256<C: CbcDecrypt + ?Sized>(
    cipher: &C,
    pads: &HmacSha256Pads,
    icv_len: usize,
    packets: &mut [&mut [u8]],
    ok: &mut [bool],
) -> bool {
    if ok.len() != packets.len() || !well_formed::<HmacSha256Pads>(packets, icv_len) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(k) = cipher.aes_ni().filter(|_| Engine::stitched_runs()) {
        for (chunk, ok) in packets.chunks_mut(MAX_BATCH).zip(ok.chunks_mut(MAX_BATCH)) {
            open_multi(k, pads, icv_len, chunk, ok, |p, m, t, macs| {
                sha256_ni::hmac_batch(p, m, t, macs)
            });
        }
        return true;
    }
    let _ = (cipher, pads);
    false
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
    mac: &mut Option<Mac<HmacSha1Pads>>,
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
    let mut mac: Option<Mac<HmacSha1Pads>> = None;
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
    if ok.len() != packets.len() || !well_formed::<HmacSha1Pads>(packets, icv_len) {
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
        (Engine::MultiBuffer | Engine::ShaNiChains, Some(k)) => {
            let (min, hash) = engine.batch_hash();
            for (chunk, ok) in packets.chunks_mut(MAX_BATCH).zip(ok.chunks_mut(MAX_BATCH)) {
                if chunk.len() < min {
                    open_stitched(k, pads, icv_len, chunk, ok);
                } else {
                    open_multi(k, pads, icv_len, chunk, ok, hash);
                }
            }
        }
        (Engine::Stitched | Engine::MultiBuffer | Engine::ShaNiChains, _) => return false,
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

/// Verify-then-decrypt in two passes over at most [`MAX_BATCH`] packets: every ICV with
/// `hash`, several packets at a time ([`sha1_mb::hmac_batch`], [`sha1_ni::hmac_batch`]),
/// compared in constant time, then the
/// decryption of the packets whose ICV matched only (RFC 4303 §3.4.4), sixteen blocks at a
/// time with VAES where the CPU has it ([`CbcDecrypt::decrypt_cbc`]).
#[cfg(target_arch = "x86_64")]
fn open_multi<P: HmacPads>(
    keys: &AesKeys<Decrypt>,
    pads: &P,
    icv_len: usize,
    packets: &mut [&mut [u8]],
    ok: &mut [bool],
    hash: BatchHash<P>,
) {
    let mut macs = [P::Digest::default(); MAX_BATCH];
    let macs = &mut macs[..packets.len()];
    hash(pads, packets, icv_len, macs);
    for ((p, ok), mac) in packets.iter_mut().zip(ok.iter_mut()).zip(macs.iter()) {
        *ok = bool::from(mac.as_ref()[..icv_len].ct_eq(&p[p.len() - icv_len..]));
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
    //! The stitched kernels. Every function needs aes, sha, ssse3 and sse4.1, which
    //! [`super::seal`] and [`super::open`] checked ([`super::Engine::stitched_runs`]).

    use core::arch::x86_64::*;

    pub(super) use crate::crypto::aes_ni::x86::{decrypt_block, encrypt_block};
    use crate::crypto::aes_ni::x86::{load, round_keys, store};
    use crate::crypto::sha1_ni::x86::{Sha1Block, Sha1State};

    use super::{AesKeys, Decrypt, Encrypt};

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
    use cipher::{
        Block, BlockCipherEncrypt, BlockModeEncrypt, BlockSizeUser, InnerIvInit, KeyInit,
    };
    use hmac::{Hmac, Mac as _};

    use super::*;

    fn engines() -> Vec<Engine> {
        let e = Engine::supported();
        if e.len() < 4 {
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

    fn plain_hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
        let mut m = <Hmac<sha2::Sha256>>::new_from_slice(key).expect("any key length");
        m.update(msg);
        m.finalize().into_bytes().into()
    }

    /// Plain encrypt-then-MAC of one ESP-shaped buffer with RustCrypto (HMAC-SHA-256 if
    /// `sha256`, else HMAC-SHA1).
    fn plain_seal<C: BlockCipherEncrypt + BlockSizeUser<BlockSize = U16>>(
        c: &C,
        key: &[u8],
        p: &mut [u8],
        icv_len: usize,
        sha256: bool,
    ) {
        let end = p.len() - icv_len;
        let (iv, body) = p[ESP_HEADER..end].split_at_mut(AES_BLOCK);
        let iv = Block::<C>::try_from(&iv[..]).expect("16 bytes");
        let (blocks, rest) = Block::<C>::slice_as_chunks_mut(body);
        assert!(rest.is_empty());
        cbc::Encryptor::<&C>::inner_iv_init(c, &iv).encrypt_blocks(blocks);
        if sha256 {
            let mac = plain_hmac_sha256(key, &p[..end]);
            p[end..].copy_from_slice(&mac[..icv_len]);
        } else {
            let mac = plain_hmac(key, &p[..end]);
            p[end..].copy_from_slice(&mac[..icv_len]);
        }
    }

    /// Seals `sizes` (plaintext bytes, multiples of 16) both ways and compares; then opens the
    /// sealed packets (one corrupted) and compares with the original plaintext. `c` is the
    /// reference; `enc` and `dec` are what the engine runs on. With `sha256`, AES-CBC +
    /// HMAC-SHA-256-128 through [`seal_sha256`] and [`open_sha256`] (which take no engine and
    /// must refuse, changing nothing, where `enc` is not AES-NI keys), else AES-CBC +
    /// HMAC-SHA1-96 through [`seal`] and [`open`] on `engine`.
    #[allow(clippy::too_many_arguments)]
    fn check_batch<C>(
        c: &C,
        enc: &dyn CbcEncrypt,
        dec: &dyn CbcDecrypt,
        key: &[u8],
        engine: Engine,
        sha256: bool,
        sizes: &[usize],
        seed: usize,
    ) where
        C: BlockCipherEncrypt + BlockSizeUser<BlockSize = U16>,
    {
        let icv_len = if sha256 { 16 } else { 12 };
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
            plain_seal(c, key, b, icv_len, sha256);
        }
        let pads = HmacSha1Pads::new(key);
        let pads256 = HmacSha256Pads::new(key);
        let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
        if sha256 {
            if !seal_sha256(enc, &pads256, icv_len, &mut refs) {
                assert!(enc.aes_ni().is_none() || !Engine::stitched_runs());
                assert_eq!(bufs, original, "refused, yet changed");
                return;
            }
        } else {
            assert!(seal(enc, &pads, icv_len, engine, &mut refs));
        }
        assert_eq!(bufs, expected, "{engine:?} sha256 {sha256} sizes {sizes:?}");

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
        if sha256 {
            assert!(open_sha256(dec, &pads256, icv_len, &mut refs, &mut ok));
        } else {
            assert!(open(dec, &pads, icv_len, engine, &mut refs, &mut ok));
        }
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

    /// Runs a batch check: engine, HMAC-SHA-256 (else HMAC-SHA1), plaintext sizes, seed.
    type Check<'a> = &'a dyn Fn(Engine, bool, &[usize], usize);

    /// Every key length, and every engine: each one this CPU runs on an SA's one-way AES-NI
    /// keys, and the portable engine on the `aes` crate too (a CPU without AES-NI; AES-128
    /// only where the CPU has AES-NI).
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
            let check = |e: Engine,
                         enc: &dyn CbcEncrypt,
                         dec: &dyn CbcDecrypt,
                         h,
                         s: &[usize],
                         seed| match (len, &k192, &k256) {
                (16, _, _) => check_batch(&k128, enc, dec, &mac_key, e, h, s, seed),
                (24, Ok(c), _) => check_batch(c, enc, dec, &mac_key, e, h, s, seed),
                (_, _, Ok(c)) => check_batch(c, enc, dec, &mac_key, e, h, s, seed),
                _ => unreachable!("key lengths 16, 24, 32"),
            };
            let soft: (&dyn CbcEncrypt, &dyn CbcDecrypt) = match (len, &k192, &k256) {
                (16, _, _) => (&k128, &k128),
                (24, Ok(c), _) => (c, c),
                (_, _, Ok(c)) => (c, c),
                _ => unreachable!("key lengths 16, 24, 32"),
            };
            // The crate path is the same generic code for every key length (the known
            // answers cover each): once is enough, the tests' time is counted.
            if len == 16 || enc.is_none() {
                f(Engine::Portable, &|e, h, s, seed| {
                    check(e, soft.0, soft.1, h, s, seed)
                });
            }
            if let (Some(enc), Some(dec)) = (&enc, &dec) {
                for engine in engines() {
                    f(engine, &|e, h, s, seed| check(e, enc, dec, h, s, seed));
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
                    check(engine, false, &sizes, blocks);
                    // HMAC-SHA-256 takes no engine: once per cipher.
                    if matches!(engine, Engine::Portable | Engine::ShaNiChains) {
                        check(engine, true, &sizes, blocks);
                    }
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
                    // Equal sizes, as TSO segments of one flow are.
                    for sha256 in [false, true] {
                        if sha256 && !matches!(engine, Engine::Portable | Engine::ShaNiChains) {
                            continue;
                        }
                        check(engine, sha256, &sizes, n);
                        check(engine, sha256, &vec![1392; n], n + 1000);
                    }
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
                for engine in [
                    Engine::Portable,
                    Engine::Stitched,
                    Engine::ShaNiChains,
                    Engine::MultiBuffer,
                ] {
                    assert!(!seal(enc, &pads, 12, engine, &mut refs));
                    let mut ok = [true];
                    assert!(!open(dec, &pads, 12, engine, &mut refs, &mut ok));
                }
                let pads256 = HmacSha256Pads::new(&[2u8; 32]);
                assert!(!seal_sha256(enc, &pads256, 16, &mut refs));
                let mut ok = [true];
                assert!(!open_sha256(dec, &pads256, 16, &mut refs, &mut ok));
            }
            assert!(b.iter().all(|x| *x == 0x55));
        }
    }
}

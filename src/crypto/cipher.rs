//! ESP encryption transforms: ESP-NULL (RFC 2410), DES-CBC and 3DES-CBC (RFC 2405, RFC 2451)
//! and AES-CBC (RFC 3602). CBC runs in place on caller buffers with a caller-supplied IV.
//!
//! The key schedule is computed once per SA, for the SA's direction only (an SA is simplex,
//! RFC 4301 §4.1: [`Way`]); the block-cipher types zeroize it on drop (the `zeroize` feature of
//! `aes`, [`AesKeys`]' own `Drop`, and the DES schedules of [`des_cbc`]).

use super::CryptoError;
use super::aes_ni::{AesKeys, CbcDecrypt, CbcEncrypt, Decrypt, Encrypt};
use super::algorithm::EncrAlgorithm;
use super::des_cbc::{self, DesKey, TdesKey};
use super::integrity::Integrity;
use super::stitch::{self, Engine};
use aes::{
    Aes128, Aes128Dec, Aes128Enc, Aes192, Aes192Dec, Aes192Enc, Aes256, Aes256Dec, Aes256Enc,
};
use cipher::array::Array;
use cipher::typenum::Unsigned;
use cipher::{
    Block, BlockCipherDecrypt, BlockCipherEncrypt, BlockModeDecrypt, BlockModeEncrypt,
    BlockSizeUser, InnerIvInit, KeyInit,
};

/// How many packets' blocks go through the block cipher together on the batch path. AES-NI
/// pipelines 8 independent blocks (the `aes` crate's `ParBlocksSize` for x86 AES-NI).
pub const BATCH_LANES: usize = 8;

/// Which way a cipher is keyed. An ESP SA is simplex (RFC 4301 §4.1): an outbound one only
/// encrypts, an inbound one only decrypts, and each keeps only that half of the AES state.
/// The ISAKMP SA's cipher goes both ways (RFC 2409 §5: one key for both directions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    Encrypt,
    Decrypt,
    Both,
}

/// Each key schedule on the heap at its own size: inline, the enum would take the largest
/// (AES-256's, with the `aes` crate's software fallback beside the AES-NI one) for every SA,
/// and an SA record is held per tunnel and direction (docs/design.md "Per-tunnel memory
/// budget"). One pointer more per packet, no allocation.
enum Inner {
    Null,
    /// DES and 3DES: one schedule serves both directions (decryption runs the subkeys in
    /// reverse), so every [`Way`] keeps the same 128 / 384 bytes.
    Des(Box<DesKey>),
    TripleDes(Box<TdesKey>),
    /// AES with AES-NI, one way: its round keys only (176 to 240 bytes), which every path
    /// runs on: the single packet, the interleaved batch, the stitched and multi-buffer
    /// engines.
    AesEncrypt(AesKeys<Encrypt>),
    AesDecrypt(AesKeys<Decrypt>),
    /// AES without AES-NI, one way: the `aes` crate's one-way ciphers (as small as the
    /// AES-NI round keys: 176 bytes for AES-128 against 352 both ways).
    AesEnc(ByKey<Aes128Enc, Aes192Enc, Aes256Enc>),
    AesDec(ByKey<Aes128Dec, Aes192Dec, Aes256Dec>),
    /// AES both ways (the ISAKMP SA's): the `aes` crate.
    Aes(ByKey<Aes128, Aes192, Aes256>),
}

/// An `aes` crate cipher of one key length, boxed at its own size.
enum ByKey<A, B, C> {
    Aes128(Box<A>),
    Aes192(Box<B>),
    Aes256(Box<C>),
}

impl<A: KeyInit, B: KeyInit, C: KeyInit> ByKey<A, B, C> {
    /// Keys the cipher of the key's length (16, 24 or 32 bytes, checked by the caller).
    fn new(key: &[u8]) -> Result<Self, cipher::InvalidLength> {
        Ok(match key.len() {
            16 => Self::Aes128(Box::new(A::new_from_slice(key)?)),
            24 => Self::Aes192(Box::new(B::new_from_slice(key)?)),
            _ => Self::Aes256(Box::new(C::new_from_slice(key)?)),
        })
    }
}

/// `$body` with `$c` bound to the `aes` crate cipher in a [`ByKey`], whatever its key length.
macro_rules! by_key {
    ($k:expr, $c:ident => $body:expr) => {
        match $k {
            ByKey::Aes128($c) => $body,
            ByKey::Aes192($c) => $body,
            ByKey::Aes256($c) => $body,
        }
    };
}

/// A keyed ESP cipher.
pub struct EspCipher {
    alg: EncrAlgorithm,
    way: Way,
    inner: Inner,
}

impl std::fmt::Debug for EspCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EspCipher({}, {:?})", self.alg.name(), self.way)
    }
}

impl EspCipher {
    /// Keys the cipher for `way`; `key` must have exactly `alg.key_len()` bytes. A call the
    /// other way fails with [`CryptoError::WrongDirection`].
    pub fn new(alg: EncrAlgorithm, key: &[u8], way: Way) -> Result<Self, CryptoError> {
        Self::keyed(alg, key, way, true)
    }

    /// [`Self::new`] on the `aes` crate whether or not the CPU has AES-NI: the tests check
    /// the path of a CPU without it.
    #[cfg(test)]
    pub(crate) fn without_aes_ni(
        alg: EncrAlgorithm,
        key: &[u8],
        way: Way,
    ) -> Result<Self, CryptoError> {
        Self::keyed(alg, key, way, false)
    }

    fn keyed(alg: EncrAlgorithm, key: &[u8], way: Way, ni: bool) -> Result<Self, CryptoError> {
        if key.len() != alg.key_len() {
            return Err(CryptoError::KeyLength {
                expected: alg.key_len(),
                got: key.len(),
            });
        }
        let bad = |_| CryptoError::KeyLength {
            expected: alg.key_len(),
            got: key.len(),
        };
        let inner = match alg {
            EncrAlgorithm::Null => Inner::Null,
            EncrAlgorithm::Des => Inner::Des(Box::new(DesKey::new(
                key.try_into().map_err(|_| bad(cipher::InvalidLength))?,
            ))),
            EncrAlgorithm::TripleDes => Inner::TripleDes(Box::new(TdesKey::new(
                key.try_into().map_err(|_| bad(cipher::InvalidLength))?,
            ))),
            EncrAlgorithm::AesCbc128 | EncrAlgorithm::AesCbc192 | EncrAlgorithm::AesCbc256 => {
                match way {
                    Way::Encrypt => match AesKeys::<Encrypt>::new(key).filter(|_| ni) {
                        Some(k) => Inner::AesEncrypt(k),
                        None => Inner::AesEnc(ByKey::new(key).map_err(bad)?),
                    },
                    Way::Decrypt => match AesKeys::<Decrypt>::new(key).filter(|_| ni) {
                        Some(k) => Inner::AesDecrypt(k),
                        None => Inner::AesDec(ByKey::new(key).map_err(bad)?),
                    },
                    Way::Both => Inner::Aes(ByKey::new(key).map_err(bad)?),
                }
            }
            EncrAlgorithm::AesGcm128 | EncrAlgorithm::AesGcm256 => {
                return Err(CryptoError::NotCbc);
            }
        };
        Ok(Self { alg, way, inner })
    }

    /// A cipher both ways for single messages (the ISAKMP SA's): the `aes` crate's key
    /// schedule, no AES-NI round keys of its own; its batch calls take the portable path.
    pub fn unbatched(alg: EncrAlgorithm, key: &[u8]) -> Result<Self, CryptoError> {
        Self::new(alg, key, Way::Both)
    }

    pub fn algorithm(&self) -> EncrAlgorithm {
        self.alg
    }

    /// Which way this cipher was keyed.
    pub fn way(&self) -> Way {
        self.way
    }

    /// Heap bytes of the key schedule: what an SA's cipher costs besides its inline record
    /// (docs/design.md "Per-tunnel memory budget").
    pub fn key_schedule_bytes(&self) -> usize {
        match &self.inner {
            Inner::Null => 0,
            Inner::Des(_) => size_of::<DesKey>(),
            Inner::TripleDes(_) => size_of::<TdesKey>(),
            Inner::AesEncrypt(k) => k.heap_bytes(),
            Inner::AesDecrypt(k) => k.heap_bytes(),
            Inner::AesEnc(k) => by_key!(k, c => size_of_val(&**c)),
            Inner::AesDec(k) => by_key!(k, c => size_of_val(&**c)),
            Inner::Aes(k) => by_key!(k, c => size_of_val(&**c)),
        }
    }

    /// Block size the ciphertext must be a multiple of (1 for ESP-NULL).
    pub fn block_len(&self) -> usize {
        self.alg.block_len()
    }

    /// Explicit IV length carried in each ESP packet (0 for ESP-NULL).
    pub fn iv_len(&self) -> usize {
        self.alg.iv_len()
    }

    fn may(&self, way: Way) -> Result<(), CryptoError> {
        if self.way == way || self.way == Way::Both {
            Ok(())
        } else {
            Err(CryptoError::WrongDirection)
        }
    }

    /// CBC-encrypts `data` in place. `iv` must be `iv_len()` bytes and `data` a multiple of
    /// the block size.
    pub fn encrypt_cbc(&self, iv: &[u8], data: &mut [u8]) -> Result<(), CryptoError> {
        self.may(Way::Encrypt)?;
        match &self.inner {
            Inner::Null => Ok(()),
            Inner::Des(k) => {
                cbc_args::<8>(iv, data).map(|(iv, d)| des_cbc::encrypt_cbc(&**k, iv, d))
            }
            Inner::TripleDes(k) => {
                cbc_args::<8>(iv, data).map(|(iv, d)| des_cbc::encrypt_cbc(&**k, iv, d))
            }
            Inner::AesEncrypt(k) => {
                let (iv, data) = cbc_args::<16>(iv, data)?;
                k.encrypt_cbc(iv, data);
                Ok(())
            }
            Inner::AesEnc(k) => by_key!(k, c => cbc_encrypt(&**c, iv, data)),
            Inner::Aes(k) => by_key!(k, c => cbc_encrypt(&**c, iv, data)),
            Inner::AesDecrypt(_) | Inner::AesDec(_) => Err(CryptoError::WrongDirection),
        }
    }

    /// CBC-decrypts `data` in place (blocks are decrypted in parallel: CBC decryption is not
    /// chained through the cipher).
    pub fn decrypt_cbc(&self, iv: &[u8], data: &mut [u8]) -> Result<(), CryptoError> {
        self.may(Way::Decrypt)?;
        match &self.inner {
            Inner::Null => Ok(()),
            Inner::Des(k) => {
                cbc_args::<8>(iv, data).map(|(iv, d)| des_cbc::decrypt_cbc(&**k, iv, d))
            }
            Inner::TripleDes(k) => {
                cbc_args::<8>(iv, data).map(|(iv, d)| des_cbc::decrypt_cbc(&**k, iv, d))
            }
            Inner::AesDecrypt(k) => {
                let (iv, data) = cbc_args::<16>(iv, data)?;
                k.decrypt_cbc(iv, data);
                Ok(())
            }
            Inner::AesDec(k) => by_key!(k, c => cbc_decrypt(&**c, iv, data)),
            Inner::Aes(k) => by_key!(k, c => cbc_decrypt(&**c, iv, data)),
            Inner::AesEncrypt(_) | Inner::AesEnc(_) => Err(CryptoError::WrongDirection),
        }
    }

    /// Encrypt-then-MAC of several ESP packets (each `header | IV | plaintext | ICV space`)
    /// with AES-CBC and HMAC-SHA1 or HMAC-SHA-256. HMAC-SHA1: the two interleaved over the
    /// batch or in two passes, as `engine` says ([`stitch::seal`]). HMAC-SHA-256: AES-CBC of
    /// the batch, then HMAC-SHA-256 on several SHA-NI chains ([`stitch::seal_sha256`]), where
    /// [`Engine::sha256_chains`] says they pay. Returns false, having changed nothing, when
    /// this cipher/integrity pair is not one of those, the cipher does not encrypt, the engine
    /// cannot run here, or a buffer is misshapen: the caller then takes the packet-by-packet
    /// path.
    pub fn seal_hmac_batch(
        &self,
        integ: &Integrity,
        engine: Engine,
        packets: &mut [&mut [u8]],
    ) -> bool {
        if self.may(Way::Encrypt).is_err() {
            return false;
        }
        let icv = integ.icv_len();
        if let Some(pads) = integ.sha1_pads() {
            return match &self.inner {
                Inner::AesEncrypt(k) => stitch::seal(k, pads, icv, engine, packets),
                Inner::AesEnc(k) => by_key!(k, c => stitch::seal(&**c, pads, icv, engine, packets)),
                Inner::Aes(k) => by_key!(k, c => stitch::seal(&**c, pads, icv, engine, packets)),
                _ => false,
            };
        }
        match (integ.sha256_pads(), &self.inner) {
            (Some(pads), Inner::AesEncrypt(k)) if engine.sha256_chains() => {
                stitch::seal_sha256(k, pads, icv, packets)
            }
            _ => false,
        }
    }

    /// Verify-then-decrypt of several ESP packets (each `header | IV | ciphertext | ICV`) with
    /// AES-CBC and HMAC-SHA1 ([`stitch::open`]) or HMAC-SHA-256 ([`stitch::open_sha256`]):
    /// `ok[i]` says whether packet `i` verified and was decrypted. Returns false, having
    /// changed nothing, as [`Self::seal_hmac_batch`].
    pub fn open_hmac_batch(
        &self,
        integ: &Integrity,
        engine: Engine,
        packets: &mut [&mut [u8]],
        ok: &mut [bool],
    ) -> bool {
        if self.may(Way::Decrypt).is_err() {
            return false;
        }
        let icv = integ.icv_len();
        if let Some(pads) = integ.sha1_pads() {
            return match &self.inner {
                Inner::AesDecrypt(k) => stitch::open(k, pads, icv, engine, packets, ok),
                Inner::AesDec(k) => {
                    by_key!(k, c => stitch::open(&**c, pads, icv, engine, packets, ok))
                }
                Inner::Aes(k) => {
                    by_key!(k, c => stitch::open(&**c, pads, icv, engine, packets, ok))
                }
                _ => false,
            };
        }
        match (integ.sha256_pads(), &self.inner) {
            (Some(pads), Inner::AesDecrypt(k)) if engine.sha256_chains() => {
                stitch::open_sha256(k, pads, icv, packets, ok)
            }
            _ => false,
        }
    }

    /// CBC-encrypts several packets in place; each buffer holds the IV (`iv_len()` bytes)
    /// followed by the plaintext, which is how ESP lays them out. For AES the packets' blocks
    /// are interleaved, one block of up to [`BATCH_LANES`] packets per cipher call, so the
    /// pipelined AES-NI path is used although CBC is serial within one packet (docs/design.md "The
    /// hot path"). Every buffer is checked before anything is encrypted; on error nothing has
    /// been changed.
    pub fn encrypt_cbc_batch(&self, packets: &mut [&mut [u8]]) -> Result<(), CryptoError> {
        self.may(Way::Encrypt)?;
        let (bs, ivl) = (self.block_len(), self.iv_len());
        for p in packets.iter() {
            if p.len() < ivl || (p.len() - ivl) % bs != 0 {
                return Err(CryptoError::NotBlockAligned);
            }
        }
        match &self.inner {
            Inner::Null => Ok(()),
            Inner::AesEncrypt(k) => {
                k.encrypt_cbc_lanes(packets);
                Ok(())
            }
            Inner::AesEnc(k) => by_key!(k, c => cbc_encrypt_interleaved(&**c, packets)),
            Inner::Aes(k) => by_key!(k, c => cbc_encrypt_interleaved(&**c, packets)),
            Inner::Des(k) => {
                des_cbc::encrypt_cbc_lanes(&**k, packets);
                Ok(())
            }
            Inner::TripleDes(k) => {
                des_cbc::encrypt_cbc_lanes(&**k, packets);
                Ok(())
            }
            _ => {
                for p in packets.iter_mut() {
                    let (iv, data) = p.split_at_mut(ivl);
                    self.encrypt_cbc(iv, data)?;
                }
                Ok(())
            }
        }
    }
}

/// The IV as one `B`-byte block and `data` as whole blocks, or the error (AES: 16, DES: 8).
fn cbc_args<'a, const B: usize>(
    iv: &'a [u8],
    data: &'a mut [u8],
) -> Result<(&'a [u8; B], &'a mut [u8]), CryptoError> {
    let iv = iv.try_into().map_err(|_| CryptoError::IvLength)?;
    if !data.len().is_multiple_of(B) {
        return Err(CryptoError::NotBlockAligned);
    }
    Ok((iv, data))
}

fn xor_into<N: cipher::array::ArraySize>(a: &mut Array<u8, N>, b: &Array<u8, N>) {
    for (x, y) in a.iter_mut().zip(b.iter()) {
        *x ^= *y;
    }
}

/// What CBC needs in either direction: the IV as one block and `data` as whole blocks.
fn cbc_blocks<'a, C: BlockSizeUser>(
    iv: &[u8],
    data: &'a mut [u8],
) -> Result<(Block<C>, &'a mut [Block<C>]), CryptoError> {
    let iv = Block::<C>::try_from(iv).map_err(|_| CryptoError::IvLength)?;
    let (blocks, rest) = Block::<C>::slice_as_chunks_mut(data);
    if !rest.is_empty() {
        return Err(CryptoError::NotBlockAligned);
    }
    Ok((iv, blocks))
}

fn cbc_encrypt<C: BlockCipherEncrypt>(
    c: &C,
    iv: &[u8],
    data: &mut [u8],
) -> Result<(), CryptoError> {
    let (iv, blocks) = cbc_blocks::<C>(iv, data)?;
    // One backend dispatch for the whole packet: calling `encrypt_block` per block pays the
    // run-time AES-NI detection and backend set-up on every 16 bytes.
    cbc::Encryptor::<&C>::inner_iv_init(c, &iv).encrypt_blocks(blocks);
    Ok(())
}

fn cbc_decrypt<C: BlockCipherDecrypt>(
    c: &C,
    iv: &[u8],
    data: &mut [u8],
) -> Result<(), CryptoError> {
    let (iv, blocks) = cbc_blocks::<C>(iv, data)?;
    cbc::Decryptor::<&C>::inner_iv_init(c, &iv).decrypt_blocks(blocks);
    Ok(())
}

fn cbc_encrypt_interleaved<C: BlockCipherEncrypt>(
    c: &C,
    packets: &mut [&mut [u8]],
) -> Result<(), CryptoError> {
    let bs = C::BlockSize::USIZE;
    for group in packets.chunks_mut(BATCH_LANES) {
        let mut chain: [Block<C>; BATCH_LANES] = Default::default();
        let mut max_len = 0;
        for (i, p) in group.iter().enumerate() {
            chain[i].copy_from_slice(&p[..bs]);
            max_len = max_len.max(p.len());
        }
        let mut lanes: [Block<C>; BATCH_LANES] = Default::default();
        let mut owner = [0usize; BATCH_LANES];
        // Block positions include the IV block, so plaintext starts at `bs`.
        let mut at = bs;
        while at < max_len {
            let mut k = 0;
            for (i, p) in group.iter().enumerate() {
                if at < p.len() {
                    lanes[k].copy_from_slice(&p[at..at + bs]);
                    xor_into(&mut lanes[k], &chain[i]);
                    owner[k] = i;
                    k += 1;
                }
            }
            c.encrypt_blocks(&mut lanes[..k]);
            for (lane, &i) in lanes[..k].iter().zip(owner[..k].iter()) {
                group[i][at..at + bs].copy_from_slice(lane);
                chain[i].copy_from_slice(lane);
            }
            at += bs;
        }
    }
    Ok(())
}

//! ESP encryption transforms: ESP-NULL (RFC 2410), DES-CBC and 3DES-CBC (RFC 2405, RFC 2451)
//! and AES-CBC (RFC 3602). CBC runs in place on caller buffers with a caller-supplied IV.
//!
//! The key schedule is computed once per SA; the block-cipher types zeroize it on drop (the
//! `zeroize` feature of `aes` and `des`).

use aes::{Aes128, Aes192, Aes256};
use cipher::array::Array;
use cipher::typenum::Unsigned;
use cipher::{
    Block, BlockCipherDecrypt, BlockCipherEncrypt, BlockModeDecrypt, BlockModeEncrypt,
    BlockSizeUser, InnerIvInit, KeyInit,
};
use des::{Des, TdesEde3};

use super::CryptoError;
use super::algorithm::EncrAlgorithm;
use super::integrity::Integrity;
use super::stitch::{self, AesKeys, Engine};

/// How many packets' blocks go through the block cipher together on the batch path. AES-NI
/// pipelines 8 independent blocks (the `aes` crate's `ParBlocksSize` for x86 AES-NI).
pub const BATCH_LANES: usize = 8;

/// Each key schedule on the heap at its own size: inline, the enum would take the largest
/// (AES-256's, with the `aes` crate's software fallback beside the AES-NI one) for every SA,
/// and an SA record is held per tunnel and direction (docs/design.md "Per-tunnel memory
/// budget"). One pointer more per packet, no allocation.
enum Inner {
    Null,
    Des(Box<Des>),
    TripleDes(Box<TdesEde3>),
    Aes128(Box<Aes128>),
    Aes192(Box<Aes192>),
    Aes256(Box<Aes256>),
}

/// A keyed ESP cipher.
pub struct EspCipher {
    alg: EncrAlgorithm,
    inner: Inner,
    /// The AES round keys the stitched AES-CBC + HMAC-SHA1 kernel uses (`None` for other
    /// ciphers and without AES-NI + SHA-NI), expanded once per SA.
    stitch_keys: Option<Box<AesKeys>>,
}

impl std::fmt::Debug for EspCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EspCipher({})", self.alg.name())
    }
}

impl EspCipher {
    /// Keys the cipher; `key` must have exactly `alg.key_len()` bytes.
    pub fn new(alg: EncrAlgorithm, key: &[u8]) -> Result<Self, CryptoError> {
        let mut c = Self::unbatched(alg, key)?;
        if matches!(
            c.inner,
            Inner::Aes128(_) | Inner::Aes192(_) | Inner::Aes256(_)
        ) {
            c.stitch_keys = AesKeys::new(key).map(Box::new);
        }
        Ok(c)
    }

    /// A cipher for single messages (the ISAKMP SA's): without the round keys of the stitched
    /// batch kernel (488 bytes per SA); its batch calls take the portable path.
    pub fn unbatched(alg: EncrAlgorithm, key: &[u8]) -> Result<Self, CryptoError> {
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
            EncrAlgorithm::Des => Inner::Des(Box::new(Des::new_from_slice(key).map_err(bad)?)),
            EncrAlgorithm::TripleDes => {
                Inner::TripleDes(Box::new(TdesEde3::new_from_slice(key).map_err(bad)?))
            }
            EncrAlgorithm::AesCbc128 => {
                Inner::Aes128(Box::new(Aes128::new_from_slice(key).map_err(bad)?))
            }
            EncrAlgorithm::AesCbc192 => {
                Inner::Aes192(Box::new(Aes192::new_from_slice(key).map_err(bad)?))
            }
            EncrAlgorithm::AesCbc256 => {
                Inner::Aes256(Box::new(Aes256::new_from_slice(key).map_err(bad)?))
            }
            EncrAlgorithm::AesGcm128 | EncrAlgorithm::AesGcm256 => {
                return Err(CryptoError::NotCbc);
            }
        };
        Ok(Self {
            alg,
            inner,
            stitch_keys: None,
        })
    }

    pub fn algorithm(&self) -> EncrAlgorithm {
        self.alg
    }

    /// Block size the ciphertext must be a multiple of (1 for ESP-NULL).
    pub fn block_len(&self) -> usize {
        self.alg.block_len()
    }

    /// Explicit IV length carried in each ESP packet (0 for ESP-NULL).
    pub fn iv_len(&self) -> usize {
        self.alg.iv_len()
    }

    /// CBC-encrypts `data` in place. `iv` must be `iv_len()` bytes and `data` a multiple of
    /// the block size.
    pub fn encrypt_cbc(&self, iv: &[u8], data: &mut [u8]) -> Result<(), CryptoError> {
        match &self.inner {
            Inner::Null => Ok(()),
            Inner::Des(c) => cbc_encrypt(&**c, iv, data),
            Inner::TripleDes(c) => cbc_encrypt(&**c, iv, data),
            Inner::Aes128(c) => cbc_encrypt(&**c, iv, data),
            Inner::Aes192(c) => cbc_encrypt(&**c, iv, data),
            Inner::Aes256(c) => cbc_encrypt(&**c, iv, data),
        }
    }

    /// CBC-decrypts `data` in place (blocks are decrypted in parallel: CBC decryption is not
    /// chained through the cipher).
    pub fn decrypt_cbc(&self, iv: &[u8], data: &mut [u8]) -> Result<(), CryptoError> {
        match &self.inner {
            Inner::Null => Ok(()),
            Inner::Des(c) => cbc_decrypt(&**c, iv, data),
            Inner::TripleDes(c) => cbc_decrypt(&**c, iv, data),
            Inner::Aes128(c) => cbc_decrypt(&**c, iv, data),
            Inner::Aes192(c) => cbc_decrypt(&**c, iv, data),
            Inner::Aes256(c) => cbc_decrypt(&**c, iv, data),
        }
    }

    /// Encrypt-then-MAC of several ESP packets (each `header | IV | plaintext | ICV space`)
    /// with AES-CBC and HMAC-SHA1, the two interleaved over the batch ([`stitch`]). Returns
    /// false, having changed nothing, when this cipher/integrity pair is not AES-CBC with
    /// HMAC-SHA1, the engine cannot run here, or a buffer is misshapen: the caller then takes
    /// the packet-by-packet path.
    pub fn seal_sha1_batch(
        &self,
        integ: &Integrity,
        engine: Engine,
        packets: &mut [&mut [u8]],
    ) -> bool {
        let Some(pads) = integ.sha1_pads() else {
            return false;
        };
        let (keys, icv) = (self.stitch_keys.as_deref(), integ.icv_len());
        match &self.inner {
            Inner::Aes128(c) => stitch::seal(&**c, keys, pads, icv, engine, packets),
            Inner::Aes192(c) => stitch::seal(&**c, keys, pads, icv, engine, packets),
            Inner::Aes256(c) => stitch::seal(&**c, keys, pads, icv, engine, packets),
            _ => false,
        }
    }

    /// Verify-then-decrypt of several ESP packets (each `header | IV | ciphertext | ICV`) with
    /// AES-CBC and HMAC-SHA1 ([`stitch::open`]): `ok[i]` says whether packet `i` verified and
    /// was decrypted. Returns false, having changed nothing, as [`Self::seal_sha1_batch`].
    pub fn open_sha1_batch(
        &self,
        integ: &Integrity,
        engine: Engine,
        packets: &mut [&mut [u8]],
        ok: &mut [bool],
    ) -> bool {
        let Some(pads) = integ.sha1_pads() else {
            return false;
        };
        let (keys, icv) = (self.stitch_keys.as_deref(), integ.icv_len());
        match &self.inner {
            Inner::Aes128(c) => stitch::open(&**c, keys, pads, icv, engine, packets, ok),
            Inner::Aes192(c) => stitch::open(&**c, keys, pads, icv, engine, packets, ok),
            Inner::Aes256(c) => stitch::open(&**c, keys, pads, icv, engine, packets, ok),
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
        let (bs, ivl) = (self.block_len(), self.iv_len());
        for p in packets.iter() {
            if p.len() < ivl || (p.len() - ivl) % bs != 0 {
                return Err(CryptoError::NotBlockAligned);
            }
        }
        match &self.inner {
            Inner::Null => Ok(()),
            Inner::Aes128(c) => cbc_encrypt_interleaved(&**c, packets),
            Inner::Aes192(c) => cbc_encrypt_interleaved(&**c, packets),
            Inner::Aes256(c) => cbc_encrypt_interleaved(&**c, packets),
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

//! Encryption of ISAKMP message bodies for the ISAKMP SA (RFC 2409 §5.3 and Appendix B,
//! RFC 2408 §3.1 "E" flag): CBC with the phase-1 cipher and the IKEv1 IV chain.
//!
//! IV chain (Appendix B):
//! * phase 1 (message ID 0): the first IV is `hash(g^xi | g^xr)` truncated ([`super::keys::
//!   phase1_iv`]); every later message uses the last ciphertext block of the previous one,
//!   whoever sent it.
//! * each phase-2 or informational exchange (message ID M-ID != 0) starts from
//!   `hash(last phase-1 CBC output block | M-ID)` truncated, then chains within that exchange.
//!   Starting it never changes the phase-1 IV.
//!
//! Padding: RFC 2409 is self-contradictory. Appendix B says each message is padded to the
//! block size with 0x00 octets; §5.3 says padding is always present and its last octet counts
//! the others. libreswan documents the conflict and follows Appendix B (zeros, only up to the
//! block boundary), as strongSwan does; every receiver, ikehub included, ignores what follows
//! the last payload, since the payload chain's length fields say where the payloads end. So
//! [`IvChain::encrypt`] pads with zeros to the next block boundary (nothing when aligned), and
//! [`IvChain::decrypt`] returns the whole decrypted body: the payload parser must accept and
//! ignore trailing bytes after the payload whose Next Payload is NONE, whatever their value
//! (a §5.3-style peer ends them with a count byte).
//!
//! Committing: [`IvChain::decrypt`] does not touch the chain. It returns the plaintext and a
//! [`PendingIv`]; the caller verifies the message (HASH payload, or in main mode the
//! HASH_I/HASH_R) and only then calls [`IvChain::commit`]. A forged, corrupted or replayed
//! message therefore cannot move the chain, and a retransmitted request that the session
//! answers from its stored reply must not be committed a second time. Our own messages
//! advance the chain when encrypted: a retransmission resends the stored ciphertext bytes and
//! is never encrypted again.

use zeroize::Zeroize;

use super::prf;
use crate::config::HashAlgorithm;
use crate::crypto::{CryptoError, EncrAlgorithm, EspCipher};

/// Largest block size (AES).
const MAX_BLOCK: usize = 16;

/// How many phase-2 / informational exchanges keep their IV at once; the oldest is dropped
/// past this. Entries are only created by our own sends and by verified (committed) messages.
pub const MAX_EXCHANGES: usize = 32;

/// A phase-1 encryption failure; the session logs it and drops the message
/// (PAYLOAD-MALFORMED at most: it may be a forgery).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("ISAKMP phase-1 encryption cannot be NULL")]
    NullCipher,
    #[error("phase-1 key setup: {0}")]
    Key(CryptoError),
    #[error("IV is {got} bytes, the cipher needs {expected}")]
    IvLength { expected: usize, got: usize },
    #[error("encrypted body of {len} bytes is empty or not a multiple of the {block}-byte block")]
    NotBlockAligned { len: usize, block: usize },
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Iv {
    buf: [u8; MAX_BLOCK],
    len: u8,
}

impl Iv {
    fn new(s: &[u8]) -> Self {
        let mut buf = [0u8; MAX_BLOCK];
        buf[..s.len()].copy_from_slice(s);
        Self {
            buf,
            len: s.len() as u8,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl std::fmt::Debug for Iv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The IV a decrypted message would move its exchange to; pass it to [`IvChain::commit`]
/// once the message has been verified, or drop it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "commit the IV once the message verifies, or the chain stays behind"]
pub struct PendingIv {
    msg_id: u32,
    next: Iv,
}

impl PendingIv {
    pub fn msg_id(&self) -> u32 {
        self.msg_id
    }
}

/// A decrypted message body (padding included; see the module documentation).
#[derive(Debug)]
pub struct Decrypted {
    pub plaintext: Vec<u8>,
    pub pending: PendingIv,
}

/// The phase-1 cipher and the IV chains of one ISAKMP SA.
pub struct IvChain {
    cipher: EspCipher,
    hash: HashAlgorithm,
    /// The last CBC output block of phase 1 (initially iv0).
    phase1: Iv,
    /// Per message ID, the IV the next message of that exchange uses. Most recent last.
    exchanges: Vec<(u32, Iv)>,
}

impl std::fmt::Debug for IvChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IvChain")
            .field("cipher", &self.cipher)
            .field("phase1", &self.phase1)
            .field("exchanges", &self.exchanges)
            .finish()
    }
}

impl IvChain {
    /// Keys the phase-1 cipher. `enc_key` is [`super::keys::Phase1Keys::enc_key`] and `iv0`
    /// [`super::keys::Phase1Keys::iv0`] (block size bytes); `hash` is the negotiated hash,
    /// used for the phase-2 IVs.
    pub fn new(
        encr: EncrAlgorithm,
        hash: HashAlgorithm,
        enc_key: &[u8],
        iv0: &[u8],
    ) -> Result<Self, CipherError> {
        if encr == EncrAlgorithm::Null {
            return Err(CipherError::NullCipher);
        }
        if iv0.len() != encr.block_len() {
            return Err(CipherError::IvLength {
                expected: encr.block_len(),
                got: iv0.len(),
            });
        }
        // ISAKMP messages are encrypted one at a time: no batch-kernel keys per ISAKMP SA.
        let cipher = EspCipher::unbatched(encr, enc_key).map_err(CipherError::Key)?;
        Ok(Self {
            cipher,
            hash,
            phase1: Iv::new(iv0),
            exchanges: Vec::new(),
        })
    }

    /// Convenience: keys from a derived [`super::keys::Phase1Keys`].
    pub fn from_keys(keys: &super::keys::Phase1Keys) -> Result<Self, CipherError> {
        Self::new(keys.encr, keys.hash, keys.enc_key.as_bytes(), &keys.iv0)
    }

    pub fn block_len(&self) -> usize {
        self.cipher.block_len()
    }

    /// The IV the next message of exchange `msg_id` uses (0 = phase 1). For a new phase-2 /
    /// informational exchange: `hash(phase-1 IV | M-ID)` truncated.
    pub fn current_iv(&self, msg_id: u32) -> Vec<u8> {
        self.iv_for(msg_id).as_bytes().to_vec()
    }

    fn iv_for(&self, msg_id: u32) -> Iv {
        if msg_id == 0 {
            return self.phase1;
        }
        if let Some((_, iv)) = self.exchanges.iter().find(|(m, _)| *m == msg_id) {
            return *iv;
        }
        let h = prf::hash(self.hash, &[self.phase1.as_bytes(), &msg_id.to_be_bytes()]);
        Iv::new(&h.as_bytes()[..self.block_len()])
    }

    fn set(&mut self, msg_id: u32, iv: Iv) {
        if msg_id == 0 {
            self.phase1 = iv;
            return;
        }
        self.exchanges.retain(|(m, _)| *m != msg_id);
        if self.exchanges.len() >= MAX_EXCHANGES {
            self.exchanges.remove(0);
        }
        self.exchanges.push((msg_id, iv));
    }

    /// Pads with zeros to the block size (Appendix B) and encrypts a message body (the
    /// payloads after the ISAKMP header) for exchange `msg_id`, and advances that exchange's
    /// IV. The result is what follows the header on the wire; the header's length field covers
    /// it. An empty body is encrypted as one block of zeros.
    pub fn encrypt(&mut self, msg_id: u32, plaintext: &[u8]) -> Vec<u8> {
        let bs = self.block_len();
        let padded = plaintext.len().next_multiple_of(bs).max(bs);
        let mut out = Vec::with_capacity(padded);
        out.extend_from_slice(plaintext);
        out.resize(padded, 0);
        let iv = self.iv_for(msg_id);
        // Cannot fail: the IV is block-sized and the data block-aligned.
        if self.cipher.encrypt_cbc(iv.as_bytes(), &mut out).is_err() {
            unreachable!("block-aligned CBC with a block-sized IV");
        }
        self.set(msg_id, Iv::new(&out[out.len() - bs..]));
        out
    }

    /// Tests: encrypts as [`Self::encrypt`] without moving the chain (to forge, as the peer,
    /// the message this end will decrypt next).
    #[cfg(test)]
    pub(crate) fn encrypt_detached(&self, msg_id: u32, plaintext: &[u8]) -> Vec<u8> {
        let bs = self.block_len();
        let padded = plaintext.len().next_multiple_of(bs).max(bs);
        let mut out = plaintext.to_vec();
        out.resize(padded, 0);
        let iv = self.iv_for(msg_id);
        if self.cipher.encrypt_cbc(iv.as_bytes(), &mut out).is_err() {
            unreachable!("block-aligned CBC with a block-sized IV");
        }
        out
    }

    /// Decrypts a received body for exchange `msg_id` without changing the chain. The
    /// plaintext keeps its padding. Commit the returned [`PendingIv`] after verifying it.
    pub fn decrypt(&self, msg_id: u32, ciphertext: &[u8]) -> Result<Decrypted, CipherError> {
        let bs = self.block_len();
        if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(bs) {
            return Err(CipherError::NotBlockAligned {
                len: ciphertext.len(),
                block: bs,
            });
        }
        let iv = self.iv_for(msg_id);
        let mut plaintext = ciphertext.to_vec();
        if let Err(e) = self.cipher.decrypt_cbc(iv.as_bytes(), &mut plaintext) {
            plaintext.zeroize();
            return Err(CipherError::Key(e));
        }
        Ok(Decrypted {
            plaintext,
            pending: PendingIv {
                msg_id,
                next: Iv::new(&ciphertext[ciphertext.len() - bs..]),
            },
        })
    }

    /// Moves the chain past a verified received message.
    pub fn commit(&mut self, pending: PendingIv) {
        self.set(pending.msg_id, pending.next);
    }

    /// Drops the IV state of a finished phase-2 / informational exchange.
    pub fn forget(&mut self, msg_id: u32) {
        self.exchanges.retain(|(m, _)| *m != msg_id);
    }
}

#[cfg(test)]
mod tests;

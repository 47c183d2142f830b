//! The algorithms a transform can name (docs/profiles.md), with the sizes RFC 4303/4302 and the
//! cipher specifications fix for them.

use std::fmt;

/// ESP encryption (RFC 4303 §3.2): `none` is ESP-NULL (RFC 2410); AES-GCM (RFC 4106) is a
/// combined-mode algorithm that also provides integrity (its 16-byte ICV).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EncrAlgorithm {
    Null,
    Des,
    TripleDes,
    AesCbc128,
    AesCbc192,
    AesCbc256,
    AesGcm128,
    AesGcm256,
}

impl EncrAlgorithm {
    pub const ALL: [Self; 8] = [
        Self::Null,
        Self::Des,
        Self::TripleDes,
        Self::AesCbc128,
        Self::AesCbc192,
        Self::AesCbc256,
        Self::AesGcm128,
        Self::AesGcm256,
    ];

    /// The CBC ciphers, which are also the ones IKEv1 phase 1 can use (RFC 2409 Appendix A).
    pub const CBC: [Self; 5] = [
        Self::Des,
        Self::TripleDes,
        Self::AesCbc128,
        Self::AesCbc192,
        Self::AesCbc256,
    ];

    /// Cipher key length in bytes (DES 8, 3DES 24, AES 16/24/32). For AES-GCM this is the AES
    /// key only; the salt is [`Self::salt_len`].
    pub fn key_len(self) -> usize {
        match self {
            Self::Null => 0,
            Self::Des => 8,
            Self::TripleDes => 24,
            Self::AesCbc128 | Self::AesGcm128 => 16,
            Self::AesCbc192 => 24,
            Self::AesCbc256 | Self::AesGcm256 => 32,
        }
    }

    /// Bytes of salt that follow the key in the keying material: 4 for AES-GCM (RFC 4106
    /// §8.1), none for the others.
    pub fn salt_len(self) -> usize {
        if self.is_aead() { 4 } else { 0 }
    }

    /// Keying material an SA of this algorithm takes: key + salt (the length of a manual
    /// `esp-encryption-key`, and what quick mode draws from KEYMAT).
    pub fn keymat_len(self) -> usize {
        self.key_len() + self.salt_len()
    }

    /// Whether this is a combined-mode (AEAD) algorithm, which needs no separate integrity
    /// algorithm (RFC 4303 §3.2.3).
    pub fn is_aead(self) -> bool {
        matches!(self, Self::AesGcm128 | Self::AesGcm256)
    }

    /// Cipher block size, which is also the explicit IV length for CBC (RFC 2451, RFC 3602).
    /// AES-GCM is a counter mode: the ESP payload only has to end on a 4-byte boundary
    /// (RFC 4106 §3.2).
    pub fn block_len(self) -> usize {
        match self {
            Self::Null => 1,
            Self::Des | Self::TripleDes => 8,
            Self::AesCbc128 | Self::AesCbc192 | Self::AesCbc256 => 16,
            Self::AesGcm128 | Self::AesGcm256 => 4,
        }
    }

    /// Explicit IV carried in each packet (RFC 4106 §3.1: 8 bytes for AES-GCM).
    pub fn iv_len(self) -> usize {
        match self {
            Self::Null => 0,
            Self::AesGcm128 | Self::AesGcm256 => 8,
            _ => self.block_len(),
        }
    }

    /// ICV the algorithm itself appends (16 for AES-GCM with the 16-octet ICV; 0 for the
    /// ciphers that need a separate integrity algorithm).
    pub fn icv_len(self) -> usize {
        if self.is_aead() { 16 } else { 0 }
    }

    /// The profile word (`esp-encryption = "..."`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Null => "none",
            Self::Des => "des",
            Self::TripleDes => "3des",
            Self::AesCbc128 => "aes-cbc-128",
            Self::AesCbc192 => "aes-cbc-192",
            Self::AesCbc256 => "aes-cbc-256",
            Self::AesGcm128 => "aes-gcm-128",
            Self::AesGcm256 => "aes-gcm-256",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }

    /// The SmartWare status-table spelling (`AES-CBC 128`).
    pub fn display_name(self) -> &'static str {
        match self {
            Self::Null => "NULL",
            Self::Des => "DES-CBC",
            Self::TripleDes => "3DES-CBC",
            Self::AesCbc128 => "AES-CBC 128",
            Self::AesCbc192 => "AES-CBC 192",
            Self::AesCbc256 => "AES-CBC 256",
            Self::AesGcm128 => "AES-GCM 128",
            Self::AesGcm256 => "AES-GCM 256",
        }
    }

    pub fn is_weak(self) -> bool {
        matches!(self, Self::Des)
    }
}

impl fmt::Display for EncrAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// Integrity algorithms for ESP and AH: HMAC-MD5-96 and HMAC-SHA1-96 (RFC 2403/2404),
/// HMAC-SHA-256-128 (RFC 4868).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthAlgorithm {
    None,
    HmacMd5,
    HmacSha1,
    HmacSha256,
}

impl AuthAlgorithm {
    pub const ALL: [Self; 4] = [Self::None, Self::HmacMd5, Self::HmacSha1, Self::HmacSha256];

    pub fn key_len(self) -> usize {
        match self {
            Self::None => 0,
            Self::HmacMd5 => 16,
            Self::HmacSha1 => 20,
            Self::HmacSha256 => 32,
        }
    }

    /// Truncated ICV length on the wire.
    pub fn icv_len(self) -> usize {
        match self {
            Self::None => 0,
            Self::HmacMd5 | Self::HmacSha1 => 12,
            Self::HmacSha256 => 16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::HmacMd5 => "hmac-md5",
            Self::HmacSha1 => "hmac-sha1",
            Self::HmacSha256 => "hmac-sha256",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }

    pub fn display_name(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::HmacMd5 => "HMAC-MD5",
            Self::HmacSha1 => "HMAC-SHA1",
            Self::HmacSha256 => "HMAC-SHA256",
        }
    }

    pub fn is_weak(self) -> bool {
        matches!(self, Self::HmacMd5)
    }
}

impl fmt::Display for AuthAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

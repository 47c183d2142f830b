//! The algorithms a transform can name (PROFILES.md), with the sizes RFC 4303/4302 and the
//! cipher specifications fix for them.

use std::fmt;

/// ESP encryption (RFC 4303 §3.2): `none` is ESP-NULL (RFC 2410).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EncrAlgorithm {
    Null,
    Des,
    TripleDes,
    AesCbc128,
    AesCbc192,
    AesCbc256,
}

impl EncrAlgorithm {
    pub const ALL: [Self; 6] = [
        Self::Null,
        Self::Des,
        Self::TripleDes,
        Self::AesCbc128,
        Self::AesCbc192,
        Self::AesCbc256,
    ];

    /// Key length in bytes (DES 8, 3DES 24, AES 16/24/32).
    pub fn key_len(self) -> usize {
        match self {
            Self::Null => 0,
            Self::Des => 8,
            Self::TripleDes => 24,
            Self::AesCbc128 => 16,
            Self::AesCbc192 => 24,
            Self::AesCbc256 => 32,
        }
    }

    /// Cipher block size, which is also the explicit IV length for CBC (RFC 2451, RFC 3602).
    pub fn block_len(self) -> usize {
        match self {
            Self::Null => 1,
            Self::Des | Self::TripleDes => 8,
            Self::AesCbc128 | Self::AesCbc192 | Self::AesCbc256 => 16,
        }
    }

    pub fn iv_len(self) -> usize {
        match self {
            Self::Null => 0,
            _ => self.block_len(),
        }
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

//! The manual ToBerne pair of docs/profiles.md, parametrised by transform and encapsulation:
//! profile text for both sides and the matching Wireshark `esp_sa` entries.

use std::path::Path;

use super::netns::{A_HOST, A_NET, A_WAN, B_HOST, B_NET, B_WAN};
use super::wireshark::EspSaEntry;

pub const POLICY: &str = "ToBerne";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encr {
    None,
    Des,
    TripleDes,
    Aes128,
    Aes192,
    Aes256,
    /// RFC 4106 with the 16-byte ICV; `esp-authentication` must be `none`.
    AesGcm128,
    AesGcm256,
}

impl Encr {
    /// The profile keyword (`esp-encryption`).
    pub fn profile_name(self) -> &'static str {
        match self {
            Encr::None => "none",
            Encr::Des => "des",
            Encr::TripleDes => "3des",
            Encr::Aes128 => "aes-cbc-128",
            Encr::Aes192 => "aes-cbc-192",
            Encr::Aes256 => "aes-cbc-256",
            Encr::AesGcm128 => "aes-gcm-128",
            Encr::AesGcm256 => "aes-gcm-256",
        }
    }

    /// Length of the manual key: for AES-GCM the AES key followed by the 4-byte salt.
    pub fn key_len(self) -> usize {
        match self {
            Encr::None => 0,
            Encr::Des => 8,
            Encr::TripleDes => 24,
            Encr::Aes128 => 16,
            Encr::Aes192 => 24,
            Encr::Aes256 => 32,
            Encr::AesGcm128 => 16 + 4,
            Encr::AesGcm256 => 32 + 4,
        }
    }

    /// Cipher block size = IV length (RFC 2451, RFC 3602); 4 for no encryption (ESP alignment).
    pub fn block_len(self) -> usize {
        match self {
            Encr::None | Encr::AesGcm128 | Encr::AesGcm256 => 4,
            Encr::Des | Encr::TripleDes => 8,
            Encr::Aes128 | Encr::Aes192 | Encr::Aes256 => 16,
        }
    }

    /// The name in Wireshark's `esp_sa` table (packet-ipsec.c `esp_encryption_type_vals`).
    pub fn wireshark_name(self) -> &'static str {
        match self {
            Encr::None => "NULL",
            Encr::Des => "DES-CBC [RFC2405]",
            Encr::TripleDes => "TripleDES-CBC [RFC2451]",
            Encr::Aes128 | Encr::Aes192 | Encr::Aes256 => "AES-CBC [RFC3602]",
            // The key field takes key + salt as one hex string.
            Encr::AesGcm128 | Encr::AesGcm256 => "AES-GCM with 16 octet ICV [RFC4106]",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    None,
    HmacMd5,
    HmacSha1,
    HmacSha256,
}

impl Auth {
    pub fn profile_name(self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::HmacMd5 => "hmac-md5",
            Auth::HmacSha1 => "hmac-sha1",
            Auth::HmacSha256 => "hmac-sha256",
        }
    }

    pub fn key_len(self) -> usize {
        match self {
            Auth::None => 0,
            Auth::HmacMd5 => 16,
            Auth::HmacSha1 => 20,
            Auth::HmacSha256 => 32,
        }
    }

    /// Truncated ICV length: HMAC-MD5-96, HMAC-SHA1-96 (RFC 2403/2404), HMAC-SHA-256-128 (RFC
    /// 4868).
    pub fn icv_len(self) -> usize {
        match self {
            Auth::None => 0,
            Auth::HmacMd5 | Auth::HmacSha1 => 12,
            Auth::HmacSha256 => 16,
        }
    }

    /// The name in Wireshark's `esp_sa` table (packet-ipsec.c `esp_authentication_type_vals`).
    pub fn wireshark_name(self) -> &'static str {
        match self {
            Auth::None => "NULL",
            Auth::HmacMd5 => "HMAC-MD5-96 [RFC2403]",
            Auth::HmacSha1 => "HMAC-SHA-1-96 [RFC2404]",
            Auth::HmacSha256 => "HMAC-SHA-256-128 [RFC4868]",
        }
    }
}

/// An `[ipsec-transform.NAME]` table.
#[derive(Clone, Copy, Debug)]
pub struct Transform {
    pub name: &'static str,
    pub esp_encryption: Encr,
    pub esp_authentication: Auth,
    pub ah_authentication: Auth,
}

impl Transform {
    pub const fn esp(name: &'static str, encr: Encr, auth: Auth) -> Transform {
        Transform {
            name,
            esp_encryption: encr,
            esp_authentication: auth,
            ah_authentication: Auth::None,
        }
    }

    pub fn uses_esp(&self) -> bool {
        self.esp_encryption != Encr::None || self.esp_authentication != Auth::None
    }

    pub fn uses_ah(&self) -> bool {
        self.ah_authentication != Auth::None
    }

    pub fn toml(&self) -> String {
        format!(
            "[ipsec-transform.{}]\nesp-encryption = \"{}\"\nesp-authentication = \"{}\"\n\
             ah-authentication = \"{}\"\nmode = \"tunnel\"\n",
            self.name,
            self.esp_encryption.profile_name(),
            self.esp_authentication.profile_name(),
            self.ah_authentication.profile_name()
        )
    }
}

pub const AES128_SHA1: Transform = Transform::esp("AES128_SHA1", Encr::Aes128, Auth::HmacSha1);
pub const AES256_SHA256: Transform =
    Transform::esp("AES256_SHA256", Encr::Aes256, Auth::HmacSha256);
pub const AES128_GCM: Transform = Transform::esp("AES128_GCM", Encr::AesGcm128, Auth::None);
pub const AES256_GCM: Transform = Transform::esp("AES256_GCM", Encr::AesGcm256, Auth::None);
pub const TDES_MD5: Transform = Transform::esp("TDES_MD5", Encr::TripleDes, Auth::HmacMd5);
pub const AH_SHA1: Transform = Transform {
    name: "AH_SHA1",
    esp_encryption: Encr::None,
    esp_authentication: Auth::None,
    ah_authentication: Auth::HmacSha1,
};
pub const AH_SHA1_ESP_AES128_SHA1: Transform = Transform {
    name: "AH_SHA1_ESP_AES128_SHA1",
    esp_encryption: Encr::Aes128,
    esp_authentication: Auth::HmacSha1,
    ah_authentication: Auth::HmacSha1,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encapsulation {
    /// IP protocol 50 (and 51 for AH)
    Esp,
    /// RFC 3948 ESP-in-UDP on the nat-t-port
    Udp,
}

impl Encapsulation {
    pub fn profile_name(self) -> &'static str {
        match self {
            Encapsulation::Esp => "esp",
            Encapsulation::Udp => "udp",
        }
    }
}

/// Keys and SPIs of one direction (one SA, or an AH+ESP bundle).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaKeys {
    pub esp_spi: Option<u32>,
    pub esp_encryption_key: Vec<u8>,
    pub esp_authentication_key: Vec<u8>,
    pub ah_spi: Option<u32>,
    pub ah_authentication_key: Vec<u8>,
}

impl SaKeys {
    /// Deterministic keys of the right length; `seed` makes each direction's keys differ.
    fn generate(t: &Transform, esp_spi: u32, ah_spi: u32, seed: u8) -> SaKeys {
        let key = |len: usize, salt: u8| -> Vec<u8> {
            (0..len)
                .map(|i| {
                    (i as u8)
                        .wrapping_mul(17)
                        .wrapping_add(seed)
                        .wrapping_add(salt)
                })
                .collect()
        };
        SaKeys {
            esp_spi: t.uses_esp().then_some(esp_spi),
            esp_encryption_key: key(t.esp_encryption.key_len(), 0x11),
            esp_authentication_key: key(t.esp_authentication.key_len(), 0x22),
            ah_spi: t.uses_ah().then_some(ah_spi),
            ah_authentication_key: key(t.ah_authentication.key_len(), 0x33),
        }
    }

    /// The inline table of `inbound = {...}` / `outbound = {...}`.
    pub fn toml_inline(&self, t: &Transform) -> String {
        let mut parts = Vec::new();
        if let Some(spi) = self.esp_spi {
            parts.push(format!("esp-spi = {spi}"));
            if t.esp_encryption != Encr::None {
                parts.push(format!(
                    "esp-encryption-key = \"0x{}\"",
                    super::hex(&self.esp_encryption_key)
                ));
            }
            if t.esp_authentication != Auth::None {
                parts.push(format!(
                    "esp-authentication-key = \"0x{}\"",
                    super::hex(&self.esp_authentication_key)
                ));
            }
        }
        if let Some(spi) = self.ah_spi {
            parts.push(format!("ah-spi = {spi}"));
            parts.push(format!(
                "ah-authentication-key = \"0x{}\"",
                super::hex(&self.ah_authentication_key)
            ));
        }
        format!("{{ {} }}", parts.join(", "))
    }

    /// Flips one bit of the authentication key the receiver checks first (AH if present, which
    /// is verified before the inner ESP, else ESP).
    pub fn corrupt_auth_key(&mut self) {
        let key = if self.ah_spi.is_some() {
            &mut self.ah_authentication_key
        } else {
            &mut self.esp_authentication_key
        };
        assert!(
            !key.is_empty(),
            "this transform has no authentication key to corrupt"
        );
        key[0] ^= 0x01;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// The ToBerne pair: A (192.0.2.1, protects 198.51.100.0/24) and B (192.0.2.2, protects
/// 203.0.113.0/24). `a_to_b` is A's outbound = B's inbound, `b_to_a` the reverse.
#[derive(Clone, Debug)]
pub struct ManualPair {
    pub transform: Transform,
    pub encapsulation: Encapsulation,
    pub a_to_b: SaKeys,
    pub b_to_a: SaKeys,
    /// Shards per daemon (`system.shards`).
    pub shards: u32,
}

impl ManualPair {
    pub fn new(transform: Transform, encapsulation: Encapsulation) -> ManualPair {
        ManualPair {
            transform,
            encapsulation,
            a_to_b: SaKeys::generate(&transform, 2222, 2223, 0x40),
            b_to_a: SaKeys::generate(&transform, 1111, 1112, 0x80),
            shards: 2,
        }
    }

    pub fn local_wan(side: Side) -> &'static str {
        match side {
            Side::A => A_WAN,
            Side::B => B_WAN,
        }
    }

    pub fn host(side: Side) -> &'static str {
        match side {
            Side::A => A_HOST,
            Side::B => B_HOST,
        }
    }

    /// The profile of one side; `dir` holds its control socket.
    pub fn profile(&self, side: Side, dir: &Path) -> String {
        let (wan, peer, host, local_net, remote_net, inbound, outbound) = match side {
            Side::A => (
                A_WAN,
                B_WAN,
                A_HOST,
                A_NET,
                B_NET,
                &self.b_to_a,
                &self.a_to_b,
            ),
            Side::B => (
                B_WAN,
                A_WAN,
                B_HOST,
                B_NET,
                A_NET,
                &self.a_to_b,
                &self.b_to_a,
            ),
        };
        let t = &self.transform;
        format!(
            r#"# generated by tests/common/tunnel.rs: manual ToBerne pair, side {side:?}
[system]
control-socket = "{sock}"
shards = {shards}

[interface.wan]
address = "{wan}"

[tunnel-device]
name = "ikehub0"
mtu = 1400
source-address = "{host}"
routes = true

{transform}
[ipsec-policy-manual.{POLICY}]
interface = "wan"
peer = "{peer}"
transform = "{tname}"
encapsulation = "{encap}"
protected-network = [ {{ local = "{local_net}", remote = "{remote_net}" }} ]
inbound = {inbound}
outbound = {outbound}
"#,
            sock = dir.join("ikehub.sock").display(),
            shards = self.shards,
            transform = t.toml(),
            tname = t.name,
            encap = self.encapsulation.profile_name(),
            inbound = inbound.toml_inline(t),
            outbound = outbound.toml_inline(t),
        )
    }

    /// Wireshark SAs for both directions (ESP only; Wireshark does not check AH ICVs).
    pub fn esp_sa_entries(&self) -> Vec<EspSaEntry> {
        let t = &self.transform;
        let mut v = Vec::new();
        for (src, dst, keys) in [(A_WAN, B_WAN, &self.a_to_b), (B_WAN, A_WAN, &self.b_to_a)] {
            if let Some(spi) = keys.esp_spi {
                v.push(EspSaEntry {
                    src: src.to_string(),
                    dst: dst.to_string(),
                    spi,
                    encryption: t.esp_encryption,
                    encryption_key: keys.esp_encryption_key.clone(),
                    authentication: t.esp_authentication,
                    authentication_key: keys.esp_authentication_key.clone(),
                });
            }
        }
        v
    }
}

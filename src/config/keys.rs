//! The keys and SPIs of one direction of a manual policy, checked against its transform: hex,
//! exact length for the algorithm, present when needed, absent when not, SPIs outside 0..=255.

use super::check::Check;
use super::conflicts::{SpiUse, Uses};
use super::model::*;
use super::raw::{At, RawManualKeys};
use crate::crypto::{AuthAlgorithm, EncrAlgorithm};
use std::net::IpAddr;

fn hex_key(s: &str) -> Result<Vec<u8>, String> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if let Some((i, ch)) = digits
        .char_indices()
        .find(|(_, ch)| !ch.is_ascii_hexdigit())
    {
        return Err(format!(
            "is not hexadecimal (`{ch}` at character {})",
            i + 1 + (s.len() - digits.len())
        ));
    }
    if digits.is_empty() {
        return Err("is empty".into());
    }
    if digits.len() % 2 == 1 {
        return Err(format!(
            "has an odd number of hex digits ({}); write two digits per byte",
            digits.len()
        ));
    }
    Ok((0..digits.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
        .collect())
}

/// Whether the transform needs a key or SPI; `Unknown` when the transform did not resolve (the
/// value is then only checked for itself: hex, SPI range).
#[derive(Clone, Copy)]
enum Need<T> {
    Yes(T),
    No,
    Unknown,
}

impl<T> Need<T> {
    fn of(
        transform: Option<&IpsecTransform>,
        f: impl FnOnce(&IpsecTransform) -> Option<T>,
    ) -> Self {
        match transform {
            None => Self::Unknown,
            Some(t) => f(t).map_or(Self::No, Self::Yes),
        }
    }
}

/// Checks of one direction (`inbound` / `outbound`) of a manual policy against its transform.
pub(crate) struct Direction<'c, 'a> {
    pub c: &'c Check<'a>,
    pub dir: &'static str,
    pub table: &'c At<RawManualKeys>,
    pub transform: Option<&'c IpsecTransform>,
}

impl Direction<'_, '_> {
    fn transform_name(&self) -> &str {
        self.transform.map_or("?", |t| t.name.as_str())
    }

    fn missing(&self, key: &str, why: std::fmt::Arguments<'_>) {
        // A value refused for its type was reported already.
        if !self
            .c
            .sink
            .was_refused(&self.c.path, &format!("{}.{key}", self.dir))
        {
            self.c.error(
                &self.table.loc,
                format_args!("missing {}.{key}: {why}", self.dir),
            );
        }
    }

    /// A key the transform needs (`Yes(algorithm name, length)`) or must not have (`No`).
    fn key(
        &self,
        key: &str,
        raw: &Option<At<String>>,
        need: Need<(&str, usize)>,
        unused: &str,
    ) -> Option<Option<KeyBytes>> {
        let t = self.transform_name();
        let dir = self.dir;
        match (raw, need) {
            (None, Need::No) => Some(None),
            (None, Need::Unknown) => None,
            (Some(at), Need::No) => {
                self.c.error(
                    &at.loc,
                    format_args!("{dir}.{key} is set but transform {t} {unused}; remove it"),
                );
                None
            }
            (None, Need::Yes((alg, len))) => {
                self.missing(
                    key,
                    format_args!("transform {t} uses {alg}, which needs a {len}-byte key"),
                );
                None
            }
            (Some(at), need) => match (hex_key(at.value.trim()), need) {
                (Err(why), _) => {
                    self.c.error(&at.loc, format_args!("{dir}.{key} {why}"));
                    None
                }
                (Ok(bytes), Need::Yes((alg, len))) if bytes.len() != len => {
                    self.c.error(
                        &at.loc,
                        format_args!("{dir}.{key} is {} bytes, {alg} needs {len}", bytes.len()),
                    );
                    None
                }
                (Ok(bytes), _) => Some(Some(KeyBytes(bytes))),
            },
        }
    }

    fn spi(&self, key: &str, raw: &Option<At<i64>>, proto: Need<&str>) -> Option<Option<u32>> {
        let t = self.transform_name();
        let dir = self.dir;
        let at = match (raw, proto) {
            (None, Need::No) => return Some(None),
            (None, Need::Unknown) => return None,
            (Some(at), Need::No) => {
                let other = if key.starts_with("esp") { "ESP" } else { "AH" };
                self.c.error(
                    &at.loc,
                    format_args!("{dir}.{key} is set but transform {t} uses no {other}; remove it"),
                );
                return None;
            }
            (None, Need::Yes(proto)) => {
                self.missing(key, format_args!("transform {t} uses {proto}"));
                return None;
            }
            (Some(at), _) => at,
        };
        match at.value {
            0 => {
                self.c.error(
                    &at.loc,
                    format_args!(
                        "{dir}.{key} 0 is not a valid SPI (RFC 4303 §2.1 reserves 0 for local use)"
                    ),
                );
                None
            }
            1..=255 => {
                self.c.error(
                    &at.loc,
                    format_args!(
                        "{dir}.{key} {} is reserved: SPIs 1..=255 are reserved by IANA (RFC 4303 §2.1); use 256..=4294967295",
                        at.value
                    ),
                );
                None
            }
            v if v > i64::from(u32::MAX) || v < 0 => {
                self.c.error(
                    &at.loc,
                    format_args!("{dir}.{key} {v} is out of range: SPIs are 256..=4294967295"),
                );
                None
            }
            v => Some(Some(v as u32)),
        }
    }

    pub fn keys(&self) -> Option<ManualKeys> {
        let r = &self.table.value;
        let t = self.transform;
        let esp = Need::of(t, |t| t.esp);
        let enc = Need::of(t, |t| {
            t.esp
                .map(|e| e.encryption)
                .filter(|e| *e != EncrAlgorithm::Null)
                .map(|e| (keymat_word(e), e.keymat_len()))
        });
        let auth = Need::of(t, |t| {
            t.esp
                .map(|e| e.authentication)
                .filter(|a| *a != AuthAlgorithm::None)
                .map(|a| (a.name(), a.key_len()))
        });
        let ah = Need::of(t, |t| t.ah.map(|a| (a.name(), a.key_len())));
        let esp_spi = self.spi(
            "esp-spi",
            &r.esp_spi,
            match esp {
                Need::Yes(_) => Need::Yes("ESP"),
                Need::No => Need::No,
                Need::Unknown => Need::Unknown,
            },
        );
        let esp_encryption_key = self.key(
            "esp-encryption-key",
            &r.esp_encryption_key,
            enc,
            "uses no ESP encryption",
        );
        let esp_authentication_key = self.key(
            "esp-authentication-key",
            &r.esp_authentication_key,
            auth,
            "uses no ESP authentication",
        );
        let ah_spi = self.spi(
            "ah-spi",
            &r.ah_spi,
            match ah {
                Need::Yes(_) => Need::Yes("AH"),
                Need::No => Need::No,
                Need::Unknown => Need::Unknown,
            },
        );
        let ah_authentication_key = self.key(
            "ah-authentication-key",
            &r.ah_authentication_key,
            ah,
            "uses no AH",
        );
        Some(ManualKeys {
            esp_spi: esp_spi?,
            esp_encryption_key: esp_encryption_key?,
            esp_authentication_key: esp_authentication_key?,
            ah_spi: ah_spi?,
            ah_authentication_key: ah_authentication_key?,
        })
    }

    pub fn record(&self, policy: &str, iface: &Interface, peer: IpAddr, uses: &mut Uses) {
        let r = &self.table.value;
        for (key, proto, raw) in [("esp-spi", "ESP", &r.esp_spi), ("ah-spi", "AH", &r.ah_spi)] {
            if let Some(at) = raw
                && let Ok(spi) = u32::try_from(at.value)
            {
                uses.spis.push(SpiUse {
                    policy: policy.to_string(),
                    key: format!("{}.{key}", self.dir),
                    interface: iface.name.clone(),
                    peer,
                    inbound: self.dir == "inbound",
                    proto,
                    spi,
                    loc: at.loc.clone(),
                });
            }
        }
    }
}

/// How a key-length message names the algorithm: AES-GCM's manual key is the AES key
/// followed by the 4-byte salt (RFC 4106 §8.1, docs/profiles.md, Keys).
fn keymat_word(e: EncrAlgorithm) -> &'static str {
    match e {
        EncrAlgorithm::AesGcm128 => "aes-gcm-128 (16-byte key + 4-byte salt)",
        EncrAlgorithm::AesGcm256 => "aes-gcm-256 (32-byte key + 4-byte salt)",
        _ => e.name(),
    }
}

#[cfg(test)]
mod tests {
    use super::hex_key;

    #[test]
    fn hex_keys_with_and_without_prefix() {
        assert_eq!(hex_key("0x0a0B").unwrap(), vec![0x0a, 0x0b]);
        assert_eq!(hex_key("0a0b").unwrap(), vec![0x0a, 0x0b]);
        assert!(hex_key("0x0g").unwrap_err().contains("`g` at character 4"));
        assert!(hex_key("abc").unwrap_err().contains("odd"));
        assert!(hex_key("0x").unwrap_err().contains("empty"));
    }
}

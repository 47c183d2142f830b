//! What `ikehub loadgen` offers and from where: the phase-1 and phase-2 suites in strongSwan's
//! proposal words (`aes128-sha1`, `aes256gcm16`), the source addresses of the spokes and the
//! protected host of each, and the pre-shared key file.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ikehub::config::{HashAlgorithm, NetworkSpec};
use ikehub::crypto::{AuthAlgorithm, EncrAlgorithm};
use ikehub::ike::dh::DhGroup;

/// Upper bound of one address list (`--sources`, `--networks`): far above what one host can
/// open sockets for, low enough that a typo such as `/0` is refused before anything is built.
pub const MAX_ADDRESSES: u64 = 1 << 24;

/// The CBC ciphers in strongSwan's words: all phase 1 may use (RFC 2409 Appendix A), and ESP's
/// besides `null` and the GCM suites.
const CBC: [(&str, EncrAlgorithm); 5] = [
    ("des", EncrAlgorithm::Des),
    ("3des", EncrAlgorithm::TripleDes),
    ("aes128", EncrAlgorithm::AesCbc128),
    ("aes192", EncrAlgorithm::AesCbc192),
    ("aes256", EncrAlgorithm::AesCbc256),
];

const HASHES: [(&str, HashAlgorithm); 3] = [
    ("md5", HashAlgorithm::Md5),
    ("sha1", HashAlgorithm::Sha1),
    ("sha256", HashAlgorithm::Sha256),
];

const ESP_AUTH: [(&str, AuthAlgorithm); 3] = [
    ("md5", AuthAlgorithm::HmacMd5),
    ("sha1", AuthAlgorithm::HmacSha1),
    ("sha256", AuthAlgorithm::HmacSha256),
];

/// `word`'s value in `table`, or an error naming `what` and the words it may be.
fn lookup<T: Copy>(table: &[(&str, T)], word: &str, what: &str) -> Result<T, String> {
    table
        .iter()
        .find(|(w, _)| *w == word)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let words: Vec<&str> = table.iter().map(|(w, _)| *w).collect();
            format!("`{word}`: {what} is one of {}", words.join(", "))
        })
}

/// `--ike ENC-HASH`: the main-mode cipher and hash (RFC 2409 Appendix A: CBC ciphers only).
pub fn ike_suite(s: &str) -> Result<(EncrAlgorithm, HashAlgorithm), String> {
    let (enc, hash) = s
        .split_once('-')
        .ok_or_else(|| format!("`{s}`: write the phase-1 suite as ENC-HASH, e.g. aes128-sha1"))?;
    Ok((
        lookup(&CBC, enc, "phase-1 encryption")?,
        lookup(&HASHES, hash, "phase-1 hash")?,
    ))
}

/// `--esp SUITE`: `ENC-AUTH` for CBC ciphers (`aes128-sha1`, `3des-md5`, `aes256-sha256`) or
/// `aes128gcm16` / `aes256gcm16` (RFC 4106, 16-byte ICV, no separate authentication).
pub fn esp_suite(s: &str) -> Result<(EncrAlgorithm, AuthAlgorithm), String> {
    match s {
        "aes128gcm16" => return Ok((EncrAlgorithm::AesGcm128, AuthAlgorithm::None)),
        "aes256gcm16" => return Ok((EncrAlgorithm::AesGcm256, AuthAlgorithm::None)),
        _ => {}
    }
    let (enc, auth) = s.split_once('-').ok_or_else(|| {
        format!("`{s}`: write the ESP suite as ENC-AUTH (aes128-sha1) or aes128gcm16")
    })?;
    let enc = match enc {
        "null" => EncrAlgorithm::Null,
        _ => lookup(
            &CBC,
            enc,
            "ESP encryption (besides null, aes128gcm16, aes256gcm16)",
        )?,
    };
    Ok((enc, lookup(&ESP_AUTH, auth, "ESP authentication")?))
}

/// `--ike-group` / `--pfs`: a MODP group this build implements (RFC 2409 §6, RFC 3526).
pub fn dh_group(g: u16) -> Result<u16, String> {
    DhGroup::from_id(g).map(DhGroup::id).ok_or_else(|| {
        let known: Vec<String> = DhGroup::ALL.iter().map(|g| g.id().to_string()).collect();
        format!(
            "DH group {g} is not implemented (one of {})",
            known.join(", ")
        )
    })
}

/// The addresses of `--sources` or `--networks`, in order: a range `FIRST-LAST` or a host as
/// written; a CIDR block without its network and broadcast addresses (prefixes up to /30),
/// since those cannot be a host's address on a real segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressPool {
    first: u32,
    count: u64,
}

impl AddressPool {
    pub fn parse(s: &str) -> Result<Self, String> {
        let spec: NetworkSpec = s.parse().map_err(|e| format!("{e}"))?;
        let (IpAddr::V4(first), IpAddr::V4(last)) = (spec.first(), spec.last()) else {
            return Err(format!("`{s}` is IPv6; address pools are IPv4"));
        };
        let (first, last) = (u32::from(first), u32::from(last));
        let (first, last) = match spec {
            NetworkSpec::Subnet { prefix, .. } if prefix <= 30 => (first + 1, last - 1),
            _ => (first, last),
        };
        let count = u64::from(last - first) + 1;
        if count > MAX_ADDRESSES {
            return Err(format!(
                "`{s}` holds {count} addresses; at most {MAX_ADDRESSES} are supported"
            ));
        }
        Ok(Self { first, count })
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    /// Address `i` (0-based), if the pool has that many.
    pub fn get(&self, i: u64) -> Option<Ipv4Addr> {
        // `count` <= 2^24 and `first + count - 1` is the pool's last address: no overflow.
        (i < self.count).then(|| Ipv4Addr::from(self.first + i as u32))
    }
}

/// The pre-shared key: the file's bytes without trailing line ends (an editor's final newline
/// is not part of the key), as `preshared-key-file` reads it.
pub fn read_psk(path: &Path) -> Result<Vec<u8>, String> {
    let mut psk = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read the pre-shared key file {}: {e}",
            path.display()
        )
    })?;
    while psk.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        psk.pop();
    }
    if psk.is_empty() {
        return Err(format!(
            "the pre-shared key file {} is empty",
            path.display()
        ));
    }
    Ok(psk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_in_strongswan_words() {
        assert_eq!(
            ike_suite("aes128-sha1"),
            Ok((EncrAlgorithm::AesCbc128, HashAlgorithm::Sha1))
        );
        assert_eq!(
            ike_suite("3des-md5"),
            Ok((EncrAlgorithm::TripleDes, HashAlgorithm::Md5))
        );
        assert!(ike_suite("aes128gcm16-sha1").is_err());
        assert!(ike_suite("aes128").is_err());
        assert_eq!(
            esp_suite("aes256-sha256"),
            Ok((EncrAlgorithm::AesCbc256, AuthAlgorithm::HmacSha256))
        );
        assert_eq!(
            esp_suite("aes128gcm16"),
            Ok((EncrAlgorithm::AesGcm128, AuthAlgorithm::None))
        );
        assert!(esp_suite("aes128-sha512").is_err());
        assert_eq!(
            esp_suite("null-md5"),
            Ok((EncrAlgorithm::Null, AuthAlgorithm::HmacMd5))
        );
        // A refusal names the words there are.
        assert_eq!(
            ike_suite("aes128-sha384"),
            Err("`sha384`: phase-1 hash is one of md5, sha1, sha256".into())
        );
        assert!(
            ike_suite("null-sha1").is_err(),
            "phase 1 never runs unencrypted"
        );
        assert_eq!(dh_group(14), Ok(14));
        assert!(dh_group(19).is_err());
    }

    #[test]
    fn pools_skip_network_and_broadcast_of_a_block_only() {
        let p = AddressPool::parse("127.1.0.0/16").unwrap();
        assert_eq!(p.len(), 65534);
        assert_eq!(p.get(0), Some(Ipv4Addr::new(127, 1, 0, 1)));
        assert_eq!(p.get(65533), Some(Ipv4Addr::new(127, 1, 255, 254)));
        assert_eq!(p.get(65534), None);
        let r = AddressPool::parse("192.0.2.10-192.0.2.12").unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r.get(2), Some(Ipv4Addr::new(192, 0, 2, 12)));
        let h = AddressPool::parse("192.0.2.7").unwrap();
        assert_eq!((h.len(), h.get(0)), (1, Some(Ipv4Addr::new(192, 0, 2, 7))));
        let p31 = AddressPool::parse("192.0.2.0/31").unwrap();
        assert_eq!(p31.len(), 2);
        assert!(AddressPool::parse("any").is_err());
        assert!(AddressPool::parse("10.0.0.0/7").is_err());
        assert!(AddressPool::parse("192.0.2.300").is_err());
    }
}

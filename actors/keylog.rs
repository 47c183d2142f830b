//! `ikehub run --esp-key-log FILE`: the keys of every child SA, for Wireshark / tshark
//! (a debugging aid, like `SSLKEYLOGFILE` for TLS; docs/cli.md).
//!
//! The file *is* a Wireshark ESP SA table (`esp_sa` UAT file, packet-ipsec.c `esp_uat_flds`):
//! one line per installed SA, eight quoted fields
//! ```text
//! "IPv4","192.0.2.2","192.0.2.1","0x8f3a61c2","AES-CBC [RFC3602]","0x…","HMAC-SHA-1-96 [RFC2404]","0x…"
//! ```
//! (family, outer source, outer destination, SPI, encryption algorithm and key, authentication
//! algorithm and key), so copying it to `~/.config/wireshark/esp_sa` or pointing
//! `WIRESHARK_CONFIG_DIR` at a directory holding it makes tshark decrypt the capture. For AES-GCM
//! the key field is the key followed by the 4-byte salt (RFC 4106 §8.1), as Wireshark wants it.
//!
//! A CLI flag, not a profile key: profiles are copied, shared and attached to bug reports, and
//! a secret-writing switch must not travel with them; it is also set for one run, never by a
//! reload. Every SA installed (manual and IKE-keyed, both directions, re-keys) appends its line
//! once, from the actor that installs it (the registry or a peer actor), never from a shard:
//! the packet path does not know the file exists. Only ESP is written: Wireshark has no table
//! for AH keys (it shows AH without checking its ICV), so an AH-only SA writes nothing and a
//! bundle writes its ESP half.
//!
//! The table is process-wide, set once at start ([`open`]), as an environment variable would be.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ikehub::crypto::{AuthAlgorithm, EncrAlgorithm};
use ikehub::esp::{Direction, SaParams};
use tracing::{error, warn};

/// The first line of a new file: Wireshark's own UAT header (a comment to it).
const HEADER: &str = "# ikehub ESP key log: SECRET KEYS. A Wireshark esp_sa table.\n";

struct KeyLog {
    path: PathBuf,
    file: Mutex<File>,
}

static KEY_LOG: OnceLock<KeyLog> = OnceLock::new();

/// Opens (creates, mode 0600) or appends to `path` and makes it the key log of this process,
/// with a WARN that secrets are being written.
pub fn open(path: &Path) -> Result<(), String> {
    let log = KeyLog {
        path: path.to_path_buf(),
        file: Mutex::new(open_file(path)?),
    };
    KEY_LOG
        .set(log)
        .map_err(|_| "--esp-key-log: the key log is already open".to_string())?;
    warn!(
        path = %path.display(),
        "--esp-key-log: the ESP keys of every SA are written to {} (anyone who reads it can \
         decrypt the tunnels; for debugging only)",
        path.display()
    );
    Ok(())
}

/// The file, ready to append to (O_NONBLOCK: a FIFO must not hang the start). Refuses what is not a regular file and a symbolic link (the
/// daemon runs as root: a link planted in a shared directory must not redirect secrets). An
/// existing file is narrowed to 0600; a new or empty one gets [`HEADER`].
fn open_file(path: &Path) -> Result<File, String> {
    let what = |e: std::io::Error| format!("--esp-key-log {}: {e}", path.display());
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(what)?;
    let meta = file.metadata().map_err(what)?;
    if !meta.is_file() {
        return Err(format!(
            "--esp-key-log {}: not a regular file",
            path.display()
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(what)?;
    }
    if meta.len() == 0 {
        file.write_all(HEADER.as_bytes()).map_err(what)?;
    }
    Ok(file)
}

/// Appends the lines of an SA pair (inbound first) when a key log is open; one write.
pub fn record_pair(inbound: &SaParams, outbound: &SaParams) {
    let Some(log) = KEY_LOG.get() else {
        return;
    };
    let mut lines = String::new();
    for p in [inbound, outbound] {
        if let Some(line) = esp_sa_line(p) {
            lines.push_str(&line);
            lines.push('\n');
        }
    }
    if lines.is_empty() {
        return;
    }
    let written = match log.file.lock() {
        Ok(mut f) => f.write_all(lines.as_bytes()),
        Err(poisoned) => poisoned.into_inner().write_all(lines.as_bytes()),
    };
    if let Err(e) = written {
        error!(path = %log.path.display(), "--esp-key-log: cannot write: {e}");
    }
}

/// Wireshark's `esp_sa` line for the ESP half of `p`, `None` for an AH-only SA.
pub fn esp_sa_line(p: &SaParams) -> Option<String> {
    let esp = p.esp.as_ref()?;
    // The SA table matches the outer header: an inbound SA's packets come from the peer.
    let (src, dst) = match p.direction {
        Direction::Inbound => (p.peer, p.local),
        Direction::Outbound => (p.local, p.peer),
    };
    let family = match src {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    };
    Some(format!(
        "\"{family}\",\"{src}\",\"{dst}\",\"0x{:08x}\",\"{}\",\"{}\",\"{}\",\"{}\"",
        esp.spi,
        encryption_name(esp.encryption),
        key_hex(&esp.encryption_key.0),
        authentication_name(esp.authentication),
        key_hex(&esp.authentication_key.0),
    ))
}

/// packet-ipsec.c `esp_encryption_type_vals` (Wireshark 3.x/4.x).
fn encryption_name(e: EncrAlgorithm) -> &'static str {
    match e {
        EncrAlgorithm::Null => "NULL",
        EncrAlgorithm::Des => "DES-CBC [RFC2405]",
        EncrAlgorithm::TripleDes => "TripleDES-CBC [RFC2451]",
        EncrAlgorithm::AesCbc128 | EncrAlgorithm::AesCbc192 | EncrAlgorithm::AesCbc256 => {
            "AES-CBC [RFC3602]"
        }
        // RFC 4106 with the 16-byte ICV, the only one ikehub negotiates.
        EncrAlgorithm::AesGcm128 | EncrAlgorithm::AesGcm256 => {
            "AES-GCM with 16 octet ICV [RFC4106]"
        }
    }
}

/// packet-ipsec.c `esp_authentication_type_vals`; the truncations of RFC 2403/2404/4868.
fn authentication_name(a: AuthAlgorithm) -> &'static str {
    match a {
        AuthAlgorithm::None => "NULL",
        AuthAlgorithm::HmacMd5 => "HMAC-MD5-96 [RFC2403]",
        AuthAlgorithm::HmacSha1 => "HMAC-SHA-1-96 [RFC2404]",
        AuthAlgorithm::HmacSha256 => "HMAC-SHA-256-128 [RFC4868]",
    }
}

/// `0x` and lower-case hex; an empty key is an empty field (NULL algorithms).
fn key_hex(k: &[u8]) -> String {
    if k.is_empty() {
        return String::new();
    }
    let mut s = String::with_capacity(2 + 2 * k.len());
    s.push_str("0x");
    for b in k {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests;

//! AES-GCM (RFC 4106) in profiles: `aes-gcm-128` / `aes-gcm-256` load with key + salt manual
//! keys; a separate ESP integrity, AH beside it, a phase-1 AES-GCM or a key without its salt
//! are refused at FILE:LINE:COL.

use std::path::PathBuf;

use ikehub::config::{self, Diagnostic};
use ikehub::crypto::{AuthAlgorithm, EncrAlgorithm};

/// Writes `text` to a scratch file, loads it, removes the file.
fn load(text: &str) -> (PathBuf, Result<config::Loaded, Vec<Diagnostic>>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ikehub-gcm-profiles-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("p.toml");
    std::fs::write(&file, text).unwrap();
    let r = config::load(&file);
    let _ = std::fs::remove_dir_all(&dir);
    (file, r)
}

/// Exactly one error, at the `^` of `needle`, containing every fragment.
fn one_error(text: &str, needle: &str, fragments: &[&str]) {
    let (file, r) = load(text);
    let errs = match r {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    };
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let d = &errs[0];
    let caret = needle.find('^').unwrap();
    let at = text.find(&needle.replace('^', "")).unwrap() + caret;
    let line = text[..at].matches('\n').count() + 1;
    let col = text[..at].rsplit('\n').next().unwrap().chars().count() + 1;
    assert_eq!((&d.file, d.line, d.col), (&file, line, col), "{d}");
    for f in fragments {
        assert!(d.message.contains(f), "`{}` lacks `{f}`", d.message);
    }
}

const KEY20: &str = "feffe9928665731c6d6a8f9467308308cafebabe";
const KEY36: &str = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308decaf888";

fn profile(encryption: &str, extra: &str, key_in: &str, key_out: &str) -> String {
    format!(
        r#"[interface.wan]
address = "192.0.2.1"

[ipsec-transform.G]
esp-encryption = "{encryption}"
{extra}
[ipsec-policy-manual.M]
interface = "wan"
peer = "192.0.2.2"
transform = "G"
protected-network = [ {{ local = "198.51.100.0/24", remote = "203.0.113.0/24" }} ]
inbound = {{ esp-spi = 1111, esp-encryption-key = "{key_in}" }}
outbound = {{ esp-spi = 2222, esp-encryption-key = "0x{key_out}" }}
"#
    )
}

#[test]
fn aes_gcm_transforms_load_with_key_and_salt() {
    for (word, alg, key) in [
        ("aes-gcm-128", EncrAlgorithm::AesGcm128, KEY20),
        ("aes-gcm-256", EncrAlgorithm::AesGcm256, KEY36),
    ] {
        for extra in ["", "esp-authentication = \"none\"\n"] {
            let (_, r) = load(&profile(word, extra, key, key));
            let l = r.unwrap_or_else(|e| panic!("{word}: {e:#?}"));
            let esp = l.profiles.ipsec_transforms["G"].esp.unwrap();
            assert_eq!(
                (esp.encryption, esp.authentication),
                (alg, AuthAlgorithm::None)
            );
            assert!(l.warnings.is_empty(), "{:#?}", l.warnings);
            let m = &l.profiles.manual_policies["M"];
            let k = m.outbound.esp_encryption_key.as_ref().unwrap();
            assert_eq!(k.0.len(), alg.keymat_len());
        }
    }
}

#[test]
fn aes_gcm_refuses_a_separate_esp_authentication() {
    let text = profile(
        "aes-gcm-128",
        "esp-authentication = \"hmac-sha1\"\n",
        KEY20,
        KEY20,
    );
    one_error(
        &text,
        "esp-authentication = ^\"hmac-sha1\"",
        &[
            "ipsec-transform.G",
            "esp-authentication must be `none` with esp-encryption aes-gcm-128",
            "RFC 4106",
        ],
    );
}

#[test]
fn aes_gcm_is_esp_only() {
    let text = profile(
        "aes-gcm-256",
        "ah-authentication = \"hmac-sha256\"\n",
        KEY36,
        KEY36,
    );
    one_error(
        &text,
        "ah-authentication = ^\"hmac-sha256\"",
        &["ah-authentication must be `none` with esp-encryption aes-gcm-256"],
    );
    let text = format!(
        "{}\n[isakmp-transform.I]\nencryption = \"aes-gcm-128\"\nhash = \"sha1\"\ndh-group = 14\n",
        profile("aes-gcm-128", "", KEY20, KEY20)
    );
    one_error(
        &text,
        "encryption = ^\"aes-gcm-128\"\nhash",
        &[
            "isakmp-transform.I",
            "ESP only",
            "IKEv1 phase 1 has no AES-GCM",
        ],
    );
}

#[test]
fn aes_gcm_manual_key_needs_the_salt() {
    let text = profile("aes-gcm-128", "", &KEY20[..32], KEY20);
    one_error(
        &text,
        "esp-encryption-key = ^\"feffe9928665731c6d6a8f9467308308\"",
        &[
            "inbound.esp-encryption-key is 16 bytes",
            "aes-gcm-128 (16-byte key + 4-byte salt) needs 20",
        ],
    );
    let text = profile("aes-gcm-256", "", KEY36, &KEY36[..64]);
    one_error(
        &text,
        "esp-encryption-key = ^\"0xfeffe",
        &["outbound.esp-encryption-key is 32 bytes", "needs 36"],
    );
}

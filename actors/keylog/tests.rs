use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;

use ikehub::config::Mode;
use ikehub::config::model::KeyBytes;
use ikehub::esp::{AhKeys, EspKeys, LifetimeLimits, SaEncapsulation};

use super::*;

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

/// Key bytes 0x00, 0x01, ... (distinct, so a swapped or truncated key shows).
fn key(len: usize, first: u8) -> KeyBytes {
    KeyBytes((0..len).map(|i| first.wrapping_add(i as u8)).collect())
}

fn params(
    direction: Direction,
    spi: u32,
    encryption: EncrAlgorithm,
    authentication: AuthAlgorithm,
) -> SaParams {
    SaParams {
        direction,
        mode: Mode::Tunnel,
        esp: Some(EspKeys {
            spi,
            encryption,
            encryption_key: key(encryption.keymat_len(), 0x10),
            authentication,
            authentication_key: key(authentication.key_len(), 0xa0),
        }),
        ah: None,
        local: A,
        peer: B,
        encapsulation: SaEncapsulation::Raw,
        replay_window: 64,
        lifetime: LifetimeLimits::UNLIMITED,
        protected_networks: vec![],
    }
}

fn line(p: &SaParams) -> String {
    esp_sa_line(p).expect("an ESP SA has a line")
}

#[test]
fn aes128_cbc_hmac_sha1_inbound_comes_from_the_peer() {
    let p = params(
        Direction::Inbound,
        0xc1a2_0003,
        EncrAlgorithm::AesCbc128,
        AuthAlgorithm::HmacSha1,
    );
    assert_eq!(
        line(&p),
        "\"IPv4\",\"192.0.2.2\",\"192.0.2.1\",\"0xc1a20003\",\"AES-CBC [RFC3602]\",\
         \"0x101112131415161718191a1b1c1d1e1f\",\"HMAC-SHA-1-96 [RFC2404]\",\
         \"0xa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3\""
    );
}

#[test]
fn aes256_cbc_hmac_sha256_outbound_goes_to_the_peer() {
    let p = params(
        Direction::Outbound,
        0x0000_ab01,
        EncrAlgorithm::AesCbc256,
        AuthAlgorithm::HmacSha256,
    );
    assert_eq!(
        line(&p),
        "\"IPv4\",\"192.0.2.1\",\"192.0.2.2\",\"0x0000ab01\",\"AES-CBC [RFC3602]\",\
         \"0x101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f\",\
         \"HMAC-SHA-256-128 [RFC4868]\",\
         \"0xa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf\""
    );
}

/// RFC 4106 §8.1: the keying material is the key then the 4-byte salt; Wireshark takes both as
/// one hex string, and GCM has no separate authentication.
#[test]
fn aes_gcm_key_carries_the_salt_and_no_authentication() {
    for (alg, hex_len) in [
        (EncrAlgorithm::AesGcm128, 2 * (16 + 4)),
        (EncrAlgorithm::AesGcm256, 2 * (32 + 4)),
    ] {
        let p = params(Direction::Outbound, 0x1234_5678, alg, AuthAlgorithm::None);
        let l = line(&p);
        let fields: Vec<&str> = l.split(',').map(|f| f.trim_matches('"')).collect();
        assert_eq!(fields.len(), 8, "{l}");
        assert_eq!(fields[4], "AES-GCM with 16 octet ICV [RFC4106]", "{l}");
        let k = fields[5].strip_prefix("0x").expect("hex key");
        assert_eq!(k.len(), hex_len, "{alg:?}: key + salt: {l}");
        assert!(k.starts_with("101112") && k.ends_with(&format!("{:02x}", 0x10 + hex_len / 2 - 1)));
        assert_eq!((fields[6], fields[7]), ("NULL", ""), "{l}");
    }
}

#[test]
fn null_encryption_and_3des_md5_names() {
    let p = params(
        Direction::Inbound,
        0x100,
        EncrAlgorithm::Null,
        AuthAlgorithm::HmacSha1,
    );
    assert!(
        line(&p).contains("\"0x00000100\",\"NULL\",\"\",\"HMAC-SHA-1-96 [RFC2404]\""),
        "{}",
        line(&p)
    );
    let p = params(
        Direction::Inbound,
        0x100,
        EncrAlgorithm::TripleDes,
        AuthAlgorithm::HmacMd5,
    );
    let l = line(&p);
    assert!(l.contains("\"TripleDES-CBC [RFC2451]\",\"0x1011"), "{l}");
    assert!(l.contains("\"HMAC-MD5-96 [RFC2403]\",\"0xa0a1"), "{l}");
}

#[test]
fn ipv6_outer_addresses_are_family_ipv6() {
    let mut p = params(
        Direction::Inbound,
        0x4242,
        EncrAlgorithm::AesCbc128,
        AuthAlgorithm::HmacSha1,
    );
    p.local = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    p.peer = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));
    assert!(
        line(&p).starts_with("\"IPv6\",\"2001:db8::2\",\"2001:db8::1\",\"0x00004242\""),
        "{}",
        line(&p)
    );
}

/// Wireshark has no AH key table: an AH-only SA writes nothing, a bundle its ESP half.
#[test]
fn ah_only_writes_nothing_and_a_bundle_its_esp_half() {
    let mut p = params(
        Direction::Inbound,
        0x5000,
        EncrAlgorithm::AesCbc128,
        AuthAlgorithm::None,
    );
    p.ah = Some(AhKeys {
        spi: 0x6000,
        authentication: AuthAlgorithm::HmacSha1,
        authentication_key: key(20, 0),
    });
    assert!(line(&p).contains("\"0x00005000\""), "{}", line(&p));
    p.esp = None;
    assert_eq!(esp_sa_line(&p), None);
}

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("ikehub-keylog-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_new_file_is_0600_with_the_header_and_an_old_one_is_narrowed_and_appended_to() {
    let dir = Dir::new("mode");
    let path = dir.0.join("keys");
    drop(open_file(&path).unwrap());
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), HEADER);

    std::fs::write(&path, "old line\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut f = open_file(&path).unwrap();
    f.write_all(b"new line\n").unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "old line\nnew line\n"
    );
}

#[test]
fn a_symlink_a_directory_and_a_missing_directory_are_refused() {
    let dir = Dir::new("refuse");
    let target = dir.0.join("target");
    std::fs::write(&target, "").unwrap();
    let link = dir.0.join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for (path, what) in [
        (link, "symbolic link"),
        (dir.0.clone(), "directory"),
        (dir.0.join("no/such/dir/keys"), "missing directory"),
    ] {
        let e = open_file(&path).expect_err(what);
        assert!(
            e.starts_with("--esp-key-log ") && e.contains(&path.display().to_string()),
            "{what}: {e}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "",
        "followed the link"
    );
}

/// The process-wide log: a pair writes its two lines, inbound first. (The only test that
/// opens it; other tests of this binary that install SAs may append lines of their own.)
#[test]
fn an_open_key_log_gets_both_lines_of_a_pair() {
    let dir = Dir::new("global");
    let path = dir.0.join("keys");
    let inbound = params(
        Direction::Inbound,
        0x7777_0001,
        EncrAlgorithm::AesCbc128,
        AuthAlgorithm::HmacSha1,
    );
    let outbound = params(
        Direction::Outbound,
        0x7777_0002,
        EncrAlgorithm::AesCbc128,
        AuthAlgorithm::HmacSha1,
    );
    open(&path).unwrap();
    assert!(open(&path).is_err(), "opened twice");
    record_pair(&inbound, &outbound);
    let text = std::fs::read_to_string(&path).unwrap();
    let want = format!("{}\n{}\n", line(&inbound), line(&outbound));
    assert!(text.starts_with(HEADER) && text.contains(&want), "{text}");
}

//! Profile loading and validation through the library API: one test per class of error, each
//! checking the reported file, line, column and message; merges; the example profiles; warnings.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ikehub::config::{self, Diagnostic, Encapsulation, Initiate, Mode, PeerSpec};
use ikehub::crypto::{AuthAlgorithm, EncrAlgorithm};

/// A scratch directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ikehub-profiles-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Loads `text` as `p.toml`; returns the diagnostics of a refused set (panics if it loads).
fn errors(text: &str) -> (PathBuf, Vec<Diagnostic>) {
    let dir = TempDir::new();
    let file = dir.write("p.toml", text);
    match config::load(&file) {
        Ok(_) => panic!("profile was accepted:\n{text}"),
        Err(e) => (file, e),
    }
}

/// Loads `text` as `p.toml` and expects success.
fn loads(text: &str) -> config::Loaded {
    let dir = TempDir::new();
    let file = dir.write("p.toml", text);
    match config::load(&file) {
        Ok(l) => l,
        Err(e) => panic!("refused: {e:#?}"),
    }
}

/// The 1-based line and column of the `^` in `needle` (written without the `^` in `text`).
fn pos(text: &str, needle: &str) -> (usize, usize) {
    let caret = needle.find('^').expect("needle marks the place with ^");
    let plain = needle.replace('^', "");
    let at = text
        .find(&plain)
        .unwrap_or_else(|| panic!("`{plain}` not in text"))
        + caret;
    let line = text[..at].matches('\n').count() + 1;
    let col = text[..at].rsplit('\n').next().unwrap().chars().count() + 1;
    (line, col)
}

/// Asserts that exactly one error is reported, at `needle`'s `^`, containing every fragment.
fn one_error(text: &str, needle: &str, fragments: &[&str]) -> Diagnostic {
    let (file, errs) = errors(text);
    assert_eq!(errs.len(), 1, "expected one error, got: {errs:#?}");
    let d = errs.into_iter().next().unwrap();
    assert_eq!(d.file, file);
    assert_eq!((d.line, d.col), pos(text, needle), "{d}");
    for f in fragments {
        assert!(d.message.contains(f), "`{}` lacks `{f}`", d.message);
    }
    let shown = d.to_string();
    assert!(
        shown.starts_with(&format!("{}:{}:{}: ", file.display(), d.line, d.col)),
        "{shown}"
    );
    d
}

const BASE: &str = r#"[interface.wan]
address = "192.0.2.1"

[ipsec-transform.T]
esp-encryption = "aes-cbc-128"
esp-authentication = "hmac-sha1"

[isakmp-transform.I]
encryption = "aes-cbc-128"
hash = "sha1"
dh-group = 14
"#;

const KEY16: &str = "00112233445566778899aabbccddeeff";
const KEY20: &str = "0102030405060708090a0b0c0d0e0f1011121314";

/// BASE plus a manual policy `M`, with `policy` lines appended inside its table.
fn manual(policy: &str) -> String {
    format!("{BASE}\n[ipsec-policy-manual.M]\n{policy}")
}

fn manual_ok_lines(spi_in: u32, spi_out: u32) -> String {
    format!(
        "interface = \"wan\"\npeer = \"192.0.2.2\"\ntransform = \"T\"\n\
         protected-network = [ {{ local = \"198.51.100.0/24\", remote = \"203.0.113.0/24\" }} ]\n\
         inbound = {{ esp-spi = {spi_in}, esp-encryption-key = \"{KEY16}\", esp-authentication-key = \"{KEY20}\" }}\n\
         outbound = {{ esp-spi = {spi_out}, esp-encryption-key = \"0x{KEY16}\", esp-authentication-key = \"0x{KEY20}\" }}\n"
    )
}

fn isakmp(policy: &str) -> String {
    format!("{BASE}\n[ipsec-policy-isakmp.B]\n{policy}")
}

const ISAKMP_OK: &str = r#"interface = "wan"
peer = "any"
preshared-key = "secret"
isakmp-transform = ["I"]
ipsec-transform = ["T"]
protected-network = [ { local = "198.51.100.0/24", remote = "10.0.0.0/8" } ]
"#;

#[test]
fn base_profiles_are_valid() {
    loads(&manual(&manual_ok_lines(1111, 2222)));
    loads(&isakmp(ISAKMP_OK));
}

#[test]
fn toml_syntax_error() {
    let text = "[interface.wan]\naddress = \"192.0.2.1\nike-port = 500\n";
    let (file, errs) = errors(text);
    assert!(!errs.is_empty());
    let d = &errs[0];
    assert_eq!(d.file, file);
    // The parser notices the unterminated string at the end of its line.
    assert_eq!((d.line, d.col), (2, 21), "{d}");
    assert!(d.message.starts_with("TOML syntax error"), "{d}");
}

#[test]
fn unknown_key_in_table() {
    let text = format!("{BASE}lifetime = 5\n");
    // The key lands in the last table, isakmp-transform.I.
    one_error(
        &text,
        "^lifetime = 5",
        &[
            "isakmp-transform.I: unknown key `lifetime`",
            "lifetime-seconds",
        ],
    );
    let text = BASE.replace("esp-encryption =", "esp-encrpytion =");
    let d = one_error(
        &text,
        "^esp-encrpytion",
        &["ipsec-transform.T: unknown key `esp-encrpytion`"],
    );
    assert!(d.message.contains("did you mean `esp-encryption`"), "{d}");
}

#[test]
fn unknown_key_in_inline_table_and_unknown_table() {
    let text = manual(&manual_ok_lines(1111, 2222).replace("esp-spi = 1111", "esp-sip = 1111"));
    let (_, errs) = errors(&text);
    let d = errs
        .iter()
        .find(|d| d.message.contains("unknown key"))
        .expect("unknown key reported");
    assert_eq!((d.line, d.col), pos(&text, "inbound = { ^esp-sip"));
    assert!(
        d.message
            .contains("ipsec-policy-manual.M: unknown key `inbound.esp-sip`"),
        "{d}"
    );
    // The missing SPI is reported as well, at the inline table.
    assert!(
        errs.iter()
            .any(|d| d.message.contains("missing inbound.esp-spi"))
    );

    let text = format!("{BASE}\n[ipsec-policy-manaul.X]\npeer = \"1.2.3.4\"\n");
    one_error(
        &text,
        "[^ipsec-policy-manaul",
        &[
            "unknown table `ipsec-policy-manaul`",
            "did you mean `ipsec-policy-manual`",
        ],
    );
}

#[test]
fn wrong_value_type() {
    let text = BASE.replace("dh-group = 14", "dh-group = true");
    one_error(
        &text,
        "dh-group = ^true",
        &["isakmp-transform.I: dh-group must be a number or a string, not a boolean"],
    );
    let text = BASE.replace(
        "address = \"192.0.2.1\"",
        "address = \"192.0.2.1\"\nike-port = \"500\"",
    );
    one_error(
        &text,
        "ike-port = ^\"500\"",
        &["interface.wan: ike-port must be an integer"],
    );
}

#[test]
fn names_must_resolve() {
    let text =
        manual(&manual_ok_lines(1111, 2222).replace("interface = \"wan\"", "interface = \"wan0\""));
    one_error(
        &text,
        "interface = ^\"wan0\"",
        &[
            "ipsec-policy-manual.M: interface `wan0` does not name a [interface.NAME] table",
            "did you mean `wan`",
        ],
    );
    let text =
        manual(&manual_ok_lines(1111, 2222).replace("transform = \"T\"", "transform = \"AES\""));
    one_error(
        &text,
        "transform = ^\"AES\"",
        &[
            "transform `AES` does not name a [ipsec-transform.NAME] table",
            "defined: T",
        ],
    );
    let text = isakmp(&ISAKMP_OK.replace(
        "isakmp-transform = [\"I\"]",
        "isakmp-transform = [\"I\", \"J\"]",
    ));
    one_error(
        &text,
        "[\"I\", ^\"J\"]",
        &["ipsec-policy-isakmp.B: isakmp-transform `J` does not name a [isakmp-transform.NAME]"],
    );
    let text = isakmp(&ISAKMP_OK.replace("ipsec-transform = [\"T\"]", "ipsec-transform = [\"X\"]"));
    one_error(
        &text,
        "ipsec-transform = [^\"X\"]",
        &["ipsec-transform `X` does not name a [ipsec-transform.NAME]"],
    );
}

#[test]
fn words_must_be_from_their_lists() {
    let cases: [(&str, &str, &str, &str); 5] = [
        (
            "esp-encryption = \"aes-cbc-128\"",
            "esp-encryption = \"aes128\"",
            "esp-encryption = ^\"aes128\"",
            "esp-encryption `aes128` is not one of: none | des | 3des | aes-cbc-128",
        ),
        (
            "esp-authentication = \"hmac-sha1\"",
            "esp-authentication = \"sha1\"",
            "esp-authentication = ^\"sha1\"",
            "esp-authentication `sha1` is not one of",
        ),
        (
            "hash = \"sha1\"",
            "hash = \"sha512\"",
            "hash = ^\"sha512\"",
            "hash `sha512` is not one of: md5 | sha1 | sha256",
        ),
        (
            "esp-authentication = \"hmac-sha1\"",
            "esp-authentication = \"hmac-sha1\"\nmode = \"tunel\"",
            "mode = ^\"tunel\"",
            "did you mean `tunnel`",
        ),
        (
            "\nencryption = \"aes-cbc-128\"",
            "\nencryption = \"none\"",
            "\nencryption = ^\"none\"",
            "isakmp-transform.I: encryption `none` is not one of: des",
        ),
    ];
    for (from, to, at, msg) in cases {
        let text = BASE.replacen(from, to, 1);
        one_error(&text, at, &[msg]);
    }
    let text = manual(&format!(
        "{}encapsulation = \"gre\"\n",
        manual_ok_lines(1111, 2222)
    ));
    one_error(
        &text,
        "encapsulation = ^\"gre\"",
        &["encapsulation `gre` is not one of: esp | udp"],
    );
    let text = isakmp(&format!("{ISAKMP_OK}initiate = \"always\"\n"));
    one_error(
        &text,
        "initiate = ^\"always\"",
        &["initiate `always` is not one of: on-demand | permanent | never"],
    );
}

#[test]
fn dh_and_pfs_groups() {
    let text = BASE.replace("dh-group = 14", "dh-group = 3");
    one_error(
        &text,
        "dh-group = ^3",
        &["dh-group 3 is not a supported Diffie-Hellman group: 1 | 2 | 5 | 14 | 15 | 16"],
    );
    let text = isakmp(&format!("{ISAKMP_OK}pfs-group = \"24\"\n"));
    one_error(
        &text,
        "pfs-group = ^\"24\"",
        &["pfs-group `24` is not a supported Diffie-Hellman group: none | 1"],
    );
    // "14" and 14 are both accepted.
    let l = loads(&isakmp(&format!("{ISAKMP_OK}pfs-group = \"14\"\n")));
    assert_eq!(l.profiles.isakmp_policies["B"].pfs_group, Some(14));
}

#[test]
fn ports_mtu_and_shards_in_range() {
    let text = BASE.replace(
        "address = \"192.0.2.1\"",
        "address = \"192.0.2.1\"\nnat-t-port = 70000",
    );
    one_error(
        &text,
        "nat-t-port = ^70000",
        &["interface.wan: nat-t-port 70000 is out of range: UDP ports are 1..=65535"],
    );
    let text = BASE.replace(
        "address = \"192.0.2.1\"",
        "address = \"192.0.2.1\"\nike-port = 0",
    );
    one_error(&text, "ike-port = ^0", &["ike-port 0 is out of range"]);
    let text = BASE.replace(
        "address = \"192.0.2.1\"",
        "address = \"192.0.2.1\"\nike-port = 4500",
    );
    one_error(
        &text,
        "ike-port = ^4500",
        &["ike-port and nat-t-port are both 4500"],
    );
    let text = format!("{BASE}\n[tunnel-device]\nmtu = 200\n");
    one_error(
        &text,
        "mtu = ^200",
        &["tunnel-device: mtu 200 is out of range: 576..=9000 bytes"],
    );
    let text = format!("{BASE}\n[tunnel-device]\nname = \"a-very-long-tun-name\"\n");
    one_error(
        &text,
        "name = ^\"a-very",
        &["tunnel-device: name `a-very-long-tun-name` is not a valid network device name"],
    );
    let text = format!("[system]\nshards = -1\n{BASE}");
    one_error(
        &text,
        "shards = ^-1",
        &["system: shards -1 is out of range: 0 (one per CPU core)"],
    );
}

#[test]
fn lifetimes_and_replay_window() {
    let t = |extra: &str| {
        BASE.replace(
            "esp-authentication = \"hmac-sha1\"",
            &format!("esp-authentication = \"hmac-sha1\"\n{extra}"),
        )
    };
    one_error(
        &t("lifetime-seconds = 0"),
        "lifetime-seconds = ^0",
        &[
            "ipsec-transform.T: lifetime-seconds 0 is out of range: a lifetime must be at least 1 second",
        ],
    );
    one_error(
        &t("lifetime-kilobytes = -5"),
        "lifetime-kilobytes = ^-5",
        &["lifetime-kilobytes -5 is out of range: 0 (no volume limit) or more"],
    );
    one_error(
        &t("replay-window = 5000"),
        "replay-window = ^5000",
        &[
            "ipsec-transform.T: replay-window 5000 is out of range: 0..=4096 packets (0 disables anti-replay)",
        ],
    );
    let text = BASE.replace("dh-group = 14", "dh-group = 14\nlifetime-seconds = 0");
    one_error(
        &text,
        "lifetime-seconds = ^0",
        &["isakmp-transform.I: lifetime-seconds 0"],
    );
    let l = loads(&t("replay-window = 4096"));
    assert_eq!(l.profiles.ipsec_transforms["T"].replay_window, Some(4096));
}

#[test]
fn key_of_wrong_length() {
    let text = manual(&manual_ok_lines(1111, 2222).replacen(KEY16, "00112233445566778899aabb", 1));
    one_error(
        &text,
        "esp-encryption-key = ^\"00112233445566778899aabb\"",
        &["ipsec-policy-manual.M: inbound.esp-encryption-key is 12 bytes, aes-cbc-128 needs 16"],
    );
    let text = manual(&manual_ok_lines(1111, 2222).replacen(&format!("0x{KEY20}"), "0x0102", 1));
    one_error(
        &text,
        "esp-authentication-key = ^\"0x0102\"",
        &["outbound.esp-authentication-key is 2 bytes, hmac-sha1 needs 20"],
    );
}

#[test]
fn key_not_hex() {
    let text = manual(&manual_ok_lines(1111, 2222).replacen(
        KEY16,
        "0x0011223344556677889zaabbccddeeff",
        1,
    ));
    one_error(
        &text,
        "esp-encryption-key = ^\"0x001122",
        &["inbound.esp-encryption-key is not hexadecimal (`z` at character 22)"],
    );
    let text =
        manual(&manual_ok_lines(1111, 2222).replacen(KEY16, "0011223344556677889aabbccddeeff", 1));
    one_error(
        &text,
        "esp-encryption-key = ^\"001122",
        &["has an odd number of hex digits (31)"],
    );
}

#[test]
fn keys_needed_and_keys_unused() {
    // Drop the inbound authentication key: missing, reported at the inline table.
    let lines = manual_ok_lines(1111, 2222).replacen(
        &format!(", esp-authentication-key = \"{KEY20}\""),
        "",
        1,
    );
    one_error(
        &manual(&lines),
        "inbound = ^{",
        &[
            "missing inbound.esp-authentication-key: transform T uses hmac-sha1, which needs a 20-byte key",
        ],
    );
    // A key the transform does not use.
    let lines = manual_ok_lines(1111, 2222).replacen(
        " }\noutbound",
        &format!(", ah-authentication-key = \"{KEY20}\" }}\noutbound"),
        1,
    );
    one_error(
        &manual(&lines),
        "ah-authentication-key = ^\"",
        &["inbound.ah-authentication-key is set but transform T uses no AH; remove it"],
    );
}

#[test]
fn spis_needed_reserved_and_unused() {
    let lines = manual_ok_lines(1111, 2222).replacen("esp-spi = 1111, ", "", 1);
    one_error(
        &manual(&lines),
        "inbound = ^{",
        &["missing inbound.esp-spi: transform T uses ESP"],
    );
    one_error(
        &manual(&manual_ok_lines(255, 2222)),
        "esp-spi = ^255",
        &["inbound.esp-spi 255 is reserved: SPIs 1..=255 are reserved by IANA (RFC 4303"],
    );
    one_error(
        &manual(&manual_ok_lines(1111, 0)),
        "esp-spi = ^0",
        &["outbound.esp-spi 0 is not a valid SPI"],
    );
    let lines = manual_ok_lines(1111, 2222).replacen("esp-spi = 2222", "esp-spi = 4294967296", 1);
    one_error(
        &manual(&lines),
        "esp-spi = ^4294967296",
        &["outbound.esp-spi 4294967296 is out of range: SPIs are 256..=4294967295"],
    );
    let lines =
        manual_ok_lines(1111, 2222).replacen("esp-spi = 2222", "esp-spi = 2222, ah-spi = 3333", 1);
    one_error(
        &manual(&lines),
        "ah-spi = ^3333",
        &["outbound.ah-spi is set but transform T uses no AH"],
    );
}

#[test]
fn duplicate_inbound_spi_on_one_interface() {
    let second = manual_ok_lines(1111, 4444)
        .replace("192.0.2.2", "192.0.2.3")
        .replace("203.0.113.0/24", "203.0.114.0/24");
    let text = format!(
        "{}\n[ipsec-policy-manual.N]\n{second}",
        manual(&manual_ok_lines(1111, 2222))
    );
    let d = one_error(
        &text,
        "[ipsec-policy-manual.N]\ninterface = \"wan\"\npeer = \"192.0.2.3\"\ntransform = \"T\"\nprotected-network = [ { local = \"198.51.100.0/24\", remote = \"203.0.114.0/24\" } ]\ninbound = { esp-spi = ^1111",
        &[
            "ipsec-policy-manual.N: inbound.esp-spi 1111 is already used by ipsec-policy-manual.M inbound.esp-spi on interface wan",
            "inbound ESP SPIs must be unique per interface",
        ],
    );
    let (l, c) = pos(&text, "inbound = { esp-spi = ^1111");
    assert!(d.message.contains(&format!("p.toml:{l}:{c}")), "{d}");
    // The same outbound SPI towards two different peers is fine.
    let second = manual_ok_lines(3333, 2222)
        .replace("192.0.2.2", "192.0.2.3")
        .replace("203.0.113.0/24", "203.0.114.0/24");
    loads(&format!(
        "{}\n[ipsec-policy-manual.N]\n{second}",
        manual(&manual_ok_lines(1111, 2222))
    ));
}

#[test]
fn transform_with_nothing_or_unauthenticated_esp() {
    let text = BASE.replace(
        "esp-encryption = \"aes-cbc-128\"\nesp-authentication = \"hmac-sha1\"\n",
        "esp-encryption = \"none\"\n",
    );
    one_error(
        &text,
        "[ipsec-transform.^T]",
        &[
            "ipsec-transform.T: protects nothing",
            "ESP with neither encryption nor authentication is refused",
        ],
    );
    // esp none+none with AH: an AH-only transform.
    let text = BASE.replace("esp-encryption = \"aes-cbc-128\"\nesp-authentication = \"hmac-sha1\"\n", "esp-encryption = \"none\"\nesp-authentication = \"none\"\nah-authentication = \"hmac-sha256\"\n");
    let l = loads(&text);
    let t = &l.profiles.ipsec_transforms["T"];
    assert_eq!(t.esp, None);
    assert_eq!(t.ah, Some(AuthAlgorithm::HmacSha256));
}

#[test]
fn ah_cannot_use_udp_encapsulation() {
    let text = manual(&format!(
        "interface = \"wan\"\npeer = \"192.0.2.2\"\ntransform = \"AH\"\nencapsulation = \"udp\"\n\
         protected-network = [ {{ local = \"198.51.100.0/24\", remote = \"203.0.113.0/24\" }} ]\n\
         inbound = {{ ah-spi = 1000, ah-authentication-key = \"{KEY20}\" }}\n\
         outbound = {{ ah-spi = 1001, ah-authentication-key = \"{KEY20}\" }}\n\
         \n[ipsec-transform.AH]\nah-authentication = \"hmac-sha1\"\n"
    ));
    one_error(
        &text,
        "encapsulation = ^\"udp\"",
        &[
            "encapsulation = \"udp\" cannot carry AH: RFC 3948 encapsulates ESP only, and transform AH uses AH",
        ],
    );
    // The same with raw ESP/AH encapsulation loads.
    let l = loads(&text.replace("encapsulation = \"udp\"", "encapsulation = \"esp\""));
    assert_eq!(l.profiles.manual_policies["M"].inbound.ah_spi, Some(1000));
}

#[test]
fn addresses_must_parse() {
    let text = BASE.replace("address = \"192.0.2.1\"", "address = \"192.0.2.300\"");
    one_error(
        &text,
        "address = ^\"192.0.2.300\"",
        &["interface.wan: address `192.0.2.300` is not an IP address"],
    );
    let text = manual(
        &manual_ok_lines(1111, 2222).replace("peer = \"192.0.2.2\"", "peer = \"192.0.2.0/24\""),
    );
    one_error(
        &text,
        "peer = ^\"192.0.2.0/24\"",
        &[
            "ipsec-policy-manual.M: peer `192.0.2.0/24` is not an IP address (a manual policy has exactly one peer)",
        ],
    );
    let text = isakmp(&ISAKMP_OK.replace("peer = \"any\"", "peer = \"everyone\""));
    one_error(
        &text,
        "peer = ^\"everyone\"",
        &["ipsec-policy-isakmp.B: peer `everyone` is not an address, a CIDR block"],
    );
    let l = loads(&isakmp(
        &ISAKMP_OK.replace("peer = \"any\"", "peer = \"203.0.113.0/24\""),
    ));
    assert_eq!(
        l.profiles.isakmp_policies["B"].peer,
        PeerSpec::Block("203.0.113.0/24".parse().unwrap())
    );
}

#[test]
fn protected_networks_must_parse() {
    let text = isakmp(&ISAKMP_OK.replace("10.0.0.0/8", "10.0.0.0/33"));
    one_error(
        &text,
        "remote = ^\"10.0.0.0/33\"",
        &["ipsec-policy-isakmp.B: protected-network.remote: prefix length 33 is out of range"],
    );
    let text = isakmp(&ISAKMP_OK.replace("10.0.0.0/8", "10.0.0.9-10.0.0.1"));
    one_error(
        &text,
        "remote = ^\"10.0.0.9",
        &["range `10.0.0.9-10.0.0.1` ends before it starts"],
    );
    let text = isakmp(&ISAKMP_OK.replace("local = \"198.51.100.0/24\", ", ""));
    one_error(
        &text,
        "protected-network = [ ^{",
        &["protected-network entry has no `local`"],
    );
}

#[test]
fn ambiguous_protected_networks_are_refused() {
    // Two manual policies: crossed overlap (narrower local, wider remote).
    let second = manual_ok_lines(3333, 4444)
        .replace("192.0.2.2", "192.0.2.3")
        .replace(
            "local = \"198.51.100.0/24\", remote = \"203.0.113.0/24\"",
            "local = \"198.51.100.0/25\", remote = \"203.0.0.0/16\"",
        );
    let text = format!(
        "{}\n[ipsec-policy-manual.N]\n{second}",
        manual(&manual_ok_lines(1111, 2222))
    );
    let d = one_error(
        &text,
        "protected-network = [ ^{ local = \"198.51.100.0/25\"",
        &[
            "ipsec-policy-manual.N: protected-network 198.51.100.0/25 <-> 203.0.0.0/16 overlaps ipsec-policy-manual.M's 198.51.100.0/24 <-> 203.0.113.0/24",
            "neither lies inside the other",
            "a packet 198.51.100.0 -> 203.0.113.0 would match both",
        ],
    );
    let (l, c) = pos(
        &text,
        "protected-network = [ ^{ local = \"198.51.100.0/24\"",
    );
    assert!(d.message.contains(&format!("p.toml:{l}:{c}")), "{d}");

    // One strictly inside the other on both sides: accepted, the specific one wins.
    let second = manual_ok_lines(3333, 4444)
        .replace("192.0.2.2", "192.0.2.3")
        .replace(
            "local = \"198.51.100.0/24\", remote = \"203.0.113.0/24\"",
            "local = \"198.51.100.0/25\", remote = \"203.0.113.7\"",
        );
    loads(&format!(
        "{}\n[ipsec-policy-manual.N]\n{second}",
        manual(&manual_ok_lines(1111, 2222))
    ));

    // A single-peer isakmp policy with the very same networks as the manual one.
    let pol = ISAKMP_OK
        .replace("\"any\"", "\"192.0.2.9\"")
        .replace("10.0.0.0/8", "203.0.113.0/24");
    let text = format!(
        "{}\n[ipsec-policy-isakmp.B]\n{pol}",
        manual(&manual_ok_lines(1111, 2222))
    );
    let (_, errs) = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let pn = "protected-network = [ { local = \"198.51.100.0/24\", remote = \"203.0.113.0/24\" } ]";
    let second = text.rfind(pn).unwrap();
    assert_eq!(errs[0].line, text[..second].matches('\n').count() + 1);
    assert_eq!(errs[0].col, 23);
    assert!(errs[0].message.contains("ipsec-policy-isakmp.B: protected-network 198.51.100.0/24 <-> 203.0.113.0/24 overlaps ipsec-policy-manual.M's"));
}

#[test]
fn preshared_key_exactly_one() {
    let text = isakmp(&ISAKMP_OK.replace(
        "preshared-key = \"secret\"",
        "preshared-key = \"secret\"\npreshared-key-file = \"k.psk\"",
    ));
    one_error(
        &text,
        "preshared-key-file = ^\"k.psk\"",
        &["set exactly one of preshared-key and preshared-key-file, not both"],
    );
    let text = isakmp(&ISAKMP_OK.replace("preshared-key = \"secret\"\n", ""));
    one_error(
        &text,
        "[ipsec-policy-isakmp.^B]",
        &["missing key `preshared-key` (or `preshared-key-file`)"],
    );
    let text = isakmp(&ISAKMP_OK.replace("preshared-key = \"secret\"", "preshared-key = \"\""));
    one_error(&text, "preshared-key = ^\"\"", &["preshared-key is empty"]);
}

#[test]
fn preshared_key_file_relative_missing_and_empty() {
    let dir = TempDir::new();
    let text = isakmp(&ISAKMP_OK.replace(
        "preshared-key = \"secret\"",
        "preshared-key-file = \"keys/b.psk\"",
    ));
    let file = dir.write("p.toml", &text);
    let errs = config::load(&file).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(
        (errs[0].line, errs[0].col),
        pos(&text, "preshared-key-file = ^\"")
    );
    assert!(
        errs[0].message.contains("preshared-key-file") && errs[0].message.contains("cannot read"),
        "{}",
        errs[0]
    );

    std::fs::create_dir_all(dir.0.join("keys")).unwrap();
    dir.write("keys/b.psk", "\n");
    let errs = config::load(&file).unwrap_err();
    assert_eq!(
        (errs[0].line, errs[0].col),
        pos(&text, "preshared-key-file = ^\"")
    );
    assert!(errs[0].message.ends_with("is empty"), "{}", errs[0]);

    dir.write("keys/b.psk", "file secret\n");
    let l = config::load(&file).unwrap();
    assert_eq!(
        l.profiles.isakmp_policies["B"].preshared_key.0,
        b"file secret"
    );
}

#[test]
fn missing_required_keys() {
    let text = manual(&manual_ok_lines(1111, 2222).replace("peer = \"192.0.2.2\"\n", ""));
    one_error(
        &text,
        "[ipsec-policy-manual.^M]",
        &["ipsec-policy-manual.M: missing key `peer`"],
    );
    let text = BASE.replace("address = \"192.0.2.1\"\n", "");
    let (_, errs) = errors(&text);
    assert_eq!(errs[0].message, "interface.wan: missing key `address`");
    assert_eq!((errs[0].line, errs[0].col), (1, 12));
}

#[test]
fn template_cannot_initiate_permanently_and_dpd_timeout() {
    let text = isakmp(&format!("{ISAKMP_OK}initiate = \"permanent\"\n"));
    one_error(
        &text,
        "initiate = ^\"permanent\"",
        &["initiate = \"permanent\" needs one peer address"],
    );
    let text = isakmp(&format!(
        "{ISAKMP_OK}dpd = {{ interval-seconds = 60, timeout-seconds = 10 }}\n"
    ));
    one_error(
        &text,
        "timeout-seconds = ^10",
        &["dpd.timeout-seconds 10 is shorter than dpd.interval-seconds 60"],
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = r#"[interface.wan]
address = "192.0.2.1"
ike-port = 0

[ipsec-transform.T]
esp-encryption = "aes-cbc-129"
esp-authentication = "hmac-sha1"
replay-window = 9999
colour = "blue"

[ipsec-policy-manual.M]
interface = "lan"
peer = "192.0.2.2"
transform = "T"
protected-network = [ { local = "198.51.100.0/24", remote = "203.0.113.0/24" } ]
inbound = { esp-spi = 12 }
outbound = { esp-spi = 2222 }
"#;
    let (_, errs) = errors(text);
    let got: Vec<(usize, usize)> = errs.iter().map(|d| (d.line, d.col)).collect();
    assert_eq!(
        got,
        vec![(3, 12), (6, 18), (8, 17), (9, 1), (12, 13), (16, 23)],
        "{errs:#?}"
    );
    assert!(errs[0].message.contains("ike-port 0"));
    assert!(errs[1].message.contains("aes-cbc-129"));
    assert!(errs[2].message.contains("0..=4096"));
    assert!(errs[3].message.contains("unknown key `colour`"));
    assert!(errs[4].message.contains("interface `lan`"));
    assert!(errs[5].message.contains("inbound.esp-spi 12 is reserved"));
}

#[test]
fn directory_merge_and_duplicates_across_files() {
    let dir = TempDir::new();
    dir.write(
        "10-interface.toml",
        "[interface.wan]\naddress = \"192.0.2.1\"\n",
    );
    dir.write(
        "20-transforms.toml",
        "[ipsec-transform.T]\nesp-encryption = \"aes-cbc-128\"\nesp-authentication = \"hmac-sha1\"\n",
    );
    dir.write(
        "30-policy.toml",
        &format!("[ipsec-policy-manual.M]\n{}", manual_ok_lines(1111, 2222)),
    );
    dir.write("notes.txt", "not a profile");
    let l = config::load(&dir.0).unwrap();
    assert_eq!(l.files.len(), 3);
    assert!(l.files[0].ends_with("10-interface.toml"));
    assert_eq!(l.profiles.manual_policies["M"].transform.name, "T");

    dir.write("40-again.toml", "# another copy\n[ipsec-transform.T]\nesp-encryption = \"3des\"\nesp-authentication = \"hmac-sha1\"\n");
    let errs = config::load(&dir.0).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let d = &errs[0];
    assert!(d.file.ends_with("40-again.toml"));
    assert_eq!((d.line, d.col), (2, 18));
    let first = dir.0.join("20-transforms.toml");
    assert!(
        d.message.contains(&format!(
            "ipsec-transform.T is defined twice: here and at {}:1:18",
            first.display()
        )),
        "{d}"
    );

    // A singleton table in two files.
    std::fs::remove_file(dir.0.join("40-again.toml")).unwrap();
    dir.write("50-a.toml", "[system]\nshards = 1\n");
    dir.write("60-b.toml", "[system]\nshards = 2\n");
    let errs = config::load(&dir.0).unwrap_err();
    assert!(
        errs[0].message.contains("[system] is defined twice"),
        "{errs:#?}"
    );
    assert!(errs[0].file.ends_with("60-b.toml"));
}

#[test]
fn unreadable_path_and_empty_directory() {
    let dir = TempDir::new();
    let errs = config::load(&dir.0).unwrap_err();
    assert!(
        errs[0].message.contains("no *.toml profile files"),
        "{errs:?}"
    );
    let errs = config::load(&dir.0.join("missing.toml")).unwrap_err();
    assert_eq!((errs[0].line, errs[0].col), (1, 1));
    assert!(errs[0].message.contains("cannot read"));
}

#[test]
fn weak_choices_warn() {
    let text = r#"[interface.wan]
address = "192.0.2.1"

[ipsec-transform.OLD]
esp-encryption = "des"
esp-authentication = "hmac-md5"

[isakmp-transform.OLDIKE]
encryption = "3des"
hash = "md5"
dh-group = 1
"#;
    let l = loads(text);
    let w: Vec<String> = l
        .warnings
        .iter()
        .map(|d| format!("{}:{} {}", d.line, d.col, d.message))
        .collect();
    assert_eq!(w.len(), 4, "{w:#?}");
    assert!(
        w[0].starts_with("5:18 ipsec-transform.OLD: esp-encryption des is weak"),
        "{w:#?}"
    );
    assert!(
        w[1].starts_with("6:22 ipsec-transform.OLD: esp-authentication hmac-md5 is weak"),
        "{w:#?}"
    );
    assert!(
        w[2].starts_with("10:8 isakmp-transform.OLDIKE: hash md5 is weak"),
        "{w:#?}"
    );
    assert!(
        w[3].starts_with("11:12 isakmp-transform.OLDIKE: dh-group 1 (768-bit MODP) is weak"),
        "{w:#?}"
    );
    assert!(
        l.warnings
            .iter()
            .all(|d| d.is_warning() && d.to_string().contains(": warning: "))
    );
    assert!(config::summary(&l).contains("warnings: 4"));
}

/// The example profile block of the profile contract (every table of docs/profiles.md), verbatim.
const PROFILES_MD: &str = r#"[system]
control-socket = "/run/ikehub.sock"   # default; tests and parallel instances set their own
shards = 0                            # ESP forwarding shards; 0 = one per CPU core

[interface.wan]                       # a network interface the concentrator is bound to
address = "192.0.2.1"                 # local IKE and ESP endpoint (IPv4; IPv6 welcome)
device = "eth0"                       # optional: bind sockets to this device
ike-port = 500                        # default 500
nat-t-port = 4500                     # default 4500

[tunnel-device]                       # the cleartext side: a TUN device
name = "ikehub0"
mtu = 1400
source-address = "198.51.100.1"       # optional: preferred source of the installed routes
routes = true                         # install a route for each remote protected network

[ipsec-transform.AES128_SHA1]
esp-encryption = "aes-cbc-128"        # none | des | 3des | aes-cbc-128 | aes-cbc-192 | aes-cbc-256
esp-authentication = "hmac-sha1"      # none | hmac-md5 | hmac-sha1 | hmac-sha256
ah-authentication = "none"            # none | hmac-md5 | hmac-sha1 | hmac-sha256
mode = "tunnel"                       # tunnel | transport
lifetime-seconds = 3600               # IKE-keyed SAs; manual SAs never expire
lifetime-kilobytes = 4608000          # 0 = no volume limit
replay-window = 64                    # packets; 0 disables anti-replay

[isakmp-transform.AES128_SHA1_G2]
encryption = "aes-cbc-128"            # des | 3des | aes-cbc-128 | aes-cbc-192 | aes-cbc-256
hash = "sha1"                         # md5 | sha1 | sha256
dh-group = 2                          # 1 | 2 | 5 | 14 (15, 16 welcome)
lifetime-seconds = 28800

[ipsec-policy-manual.ToBerne]
interface = "wan"
peer = "192.0.2.2"
transform = "AES128_SHA1"
encapsulation = "esp"                 # esp = IP protocol 50 | udp = RFC 3948 on nat-t-port
protected-network = [ { local = "198.51.100.0/24", remote = "203.0.113.0/24" } ]
inbound  = { esp-spi = 1111, esp-encryption-key = "0x00112233445566778899aabbccddeeff", esp-authentication-key = "0x0102030405060708090a0b0c0d0e0f1011121314" }
outbound = { esp-spi = 2222, esp-encryption-key = "0xffeeddccbbaa99887766554433221100", esp-authentication-key = "0x1413121110090807060504030201000f0e0d0c0b" }
# AH: ah-spi and ah-authentication-key in the same inline tables when the transform uses AH.

[ipsec-policy-isakmp.Branches]
interface = "wan"
peer = "203.0.113.0/24"               # one address, a CIDR block of spokes, or "any"
preshared-key = "a long random secret"    # or preshared-key-file = "path" (exactly one of the two)
isakmp-transform = ["AES128_SHA1_G2"] # offered and accepted, in order of preference
ipsec-transform = ["AES128_SHA1"]
pfs-group = "none"                    # none | 1 | 2 | 5 | 14
initiate = "on-demand"                # on-demand (first packet) | permanent (at start, re-keyed without traffic) | never
nat-traversal = true                  # RFC 3947 / RFC 3948
dpd = { interval-seconds = 30, timeout-seconds = 120 }   # RFC 3706; omit to disable
protected-network = [ { local = "198.51.100.0/24", remote = "203.0.113.0/24" } ]
"#;

#[test]
fn full_profiles_md_example_loads() {
    let l = loads(PROFILES_MD);
    assert!(l.warnings.is_empty(), "{:#?}", l.warnings);
    let p = &l.profiles;
    assert_eq!(p.system.control_socket, Path::new("/run/ikehub.sock"));
    assert_eq!(
        p.system.shards,
        std::thread::available_parallelism().unwrap().get()
    );
    let wan = &p.interfaces["wan"];
    assert_eq!(wan.address.to_string(), "192.0.2.1");
    assert_eq!(wan.device.as_deref(), Some("eth0"));
    assert_eq!((wan.ike_port, wan.nat_t_port), (500, 4500));
    let tun = p.tunnel_device.as_ref().unwrap();
    assert_eq!(
        (tun.name.as_str(), tun.mtu, tun.routes),
        ("ikehub0", 1400, true)
    );
    assert_eq!(tun.source_v4.unwrap().to_string(), "198.51.100.1");
    assert_eq!(tun.source_v6, None);

    let t = &p.ipsec_transforms["AES128_SHA1"];
    let esp = t.esp.unwrap();
    assert_eq!(esp.encryption, EncrAlgorithm::AesCbc128);
    assert_eq!(esp.authentication, AuthAlgorithm::HmacSha1);
    assert_eq!(t.ah, None);
    assert_eq!(t.mode, Mode::Tunnel);
    assert_eq!(
        (t.lifetime_seconds, t.lifetime_kilobytes, t.replay_window),
        (3600, 4608000, Some(64))
    );

    let m = &p.manual_policies["ToBerne"];
    assert_eq!(m.interface, "wan");
    assert_eq!(m.peer.to_string(), "192.0.2.2");
    assert_eq!(m.encapsulation, Encapsulation::Esp);
    assert_eq!(m.inbound.esp_spi, Some(1111));
    assert_eq!(m.outbound.esp_spi, Some(2222));
    assert_eq!(
        m.inbound.esp_encryption_key.as_ref().unwrap().0,
        (0..16u8).map(|i| i * 0x11).collect::<Vec<_>>()
    );
    assert_eq!(
        m.outbound.esp_authentication_key.as_ref().unwrap().0[0],
        0x14
    );
    assert_eq!(m.inbound.ah_spi, None);
    assert_eq!(m.protected_networks[0].local.to_string(), "198.51.100.0/24");
    assert!(std::sync::Arc::ptr_eq(&m.transform, t) || *m.transform == **t);

    let b = &p.isakmp_policies["Branches"];
    assert_eq!(b.peer, PeerSpec::Block("203.0.113.0/24".parse().unwrap()));
    assert_eq!(b.preshared_key.0, b"a long random secret");
    assert_eq!(b.isakmp_transforms[0].dh_group, 2);
    assert_eq!(b.isakmp_transforms[0].lifetime_seconds, 28800);
    assert_eq!(b.pfs_group, None);
    assert_eq!(b.initiate, Initiate::OnDemand);
    assert!(b.nat_traversal);
    assert_eq!(b.dpd.unwrap().timeout_seconds, 120);

    let s = config::summary(&l);
    assert!(
        s.contains("ToBerne")
            && s.contains("Branches")
            && s.contains("policies: 1 manual, 1 isakmp"),
        "{s}"
    );
}

#[test]
fn defaults_are_applied() {
    let l = loads(&manual(&manual_ok_lines(1111, 2222)));
    let p = &l.profiles;
    assert_eq!(p.system.control_socket, Path::new("/run/ikehub.sock"));
    assert!(p.system.shards >= 1);
    assert_eq!(
        (p.interfaces["wan"].ike_port, p.interfaces["wan"].nat_t_port),
        (500, 4500)
    );
    assert_eq!(p.tunnel_device, None);
    let t = &p.ipsec_transforms["T"];
    assert_eq!(
        (
            t.mode,
            t.lifetime_seconds,
            t.lifetime_kilobytes,
            t.replay_window
        ),
        (Mode::Tunnel, 3600, 0, None)
    );
    assert_eq!(p.isakmp_transforms["I"].lifetime_seconds, 28800);
    assert_eq!(p.manual_policies["M"].encapsulation, Encapsulation::Esp);

    let l = loads(&isakmp(&format!("{ISAKMP_OK}dpd = {{}}\n")));
    let b = &l.profiles.isakmp_policies["B"];
    assert_eq!(
        (b.pfs_group, b.initiate, b.nat_traversal),
        (None, Initiate::OnDemand, true)
    );
    assert_eq!(
        b.dpd.map(|d| (d.interval_seconds, d.timeout_seconds)),
        Some((30, 120))
    );

    let l = loads(&format!("{BASE}[tunnel-device]\n"));
    let tun = l.profiles.tunnel_device.unwrap();
    assert_eq!(
        (
            tun.name.as_str(),
            tun.mtu,
            tun.source_v4,
            tun.source_v6,
            tun.routes
        ),
        ("ikehub0", 1400, None, None, true)
    );
}

#[test]
fn example_profiles_each_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    let mut n = 0;
    for f in config::profile_files(&dir).unwrap() {
        match config::load(&f) {
            Ok(l) => {
                assert!(l.warnings.is_empty(), "{}: {:#?}", f.display(), l.warnings);
                assert!(!config::summary(&l).is_empty());
            }
            Err(e) => panic!(
                "{} is refused:\n{}",
                f.display(),
                e.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
        n += 1;
    }
    assert!(n >= 5, "hub, spoke, toberne-a, toberne-b, demo");
}

#[test]
fn toberne_pair_mirrors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    let a = config::load(&dir.join("toberne-a.toml")).unwrap().profiles;
    let b = config::load(&dir.join("toberne-b.toml")).unwrap().profiles;
    let (a, b) = (&a.manual_policies["ToBerne"], &b.manual_policies["ToBerne"]);
    assert_eq!(a.inbound, b.outbound);
    assert_eq!(a.outbound, b.inbound);
    assert_eq!(
        a.protected_networks[0].local,
        b.protected_networks[0].remote
    );
    assert_eq!(a.transform, b.transform);
}

#[test]
fn top_level_key_outside_any_table() {
    let text = format!("shards = 4\n{BASE}");
    one_error(
        &text,
        "^shards = 4",
        &["unknown top-level key (keys belong in a table such as [system]) `shards`"],
    );
}

#[test]
fn transport_mode_protects_only_the_endpoints() {
    let text = manual(&manual_ok_lines(1111, 2222)).replace(
        "esp-authentication = \"hmac-sha1\"",
        "esp-authentication = \"hmac-sha1\"\nmode = \"transport\"",
    );
    one_error(
        &text,
        "protected-network = [ ^{",
        &[
            "transform T uses transport mode",
            "protected-network must be { local = \"192.0.2.1\", remote = \"192.0.2.2\" }",
        ],
    );
    loads(&text.replace(
        "local = \"198.51.100.0/24\", remote = \"203.0.113.0/24\"",
        "local = \"192.0.2.1\", remote = \"192.0.2.2/32\"",
    ));
}

#[test]
fn peer_must_match_the_interface() {
    let text = manual(
        &manual_ok_lines(1111, 2222).replace("peer = \"192.0.2.2\"", "peer = \"2001:db8::2\""),
    );
    one_error(
        &text,
        "peer = ^\"2001:db8::2\"",
        &["peer 2001:db8::2 and interface wan (192.0.2.1) are of different IP versions"],
    );
    let text = manual(
        &manual_ok_lines(1111, 2222).replace("peer = \"192.0.2.2\"", "peer = \"192.0.2.1\""),
    );
    one_error(
        &text,
        "peer = ^\"192.0.2.1\"",
        &["peer 192.0.2.1 is the address of interface wan itself"],
    );
}

#[test]
fn two_interfaces_cannot_share_a_socket() {
    let text = format!(
        "{BASE}\n[interface.second]\naddress = \"192.0.2.1\"\nike-port = 4500\nnat-t-port = 4501\n"
    );
    one_error(
        &text,
        "[interface.^second]",
        &["interface.second: address 192.0.2.1 port 4500 is already bound by interface.wan (at "],
    );
    loads(&text.replace("ike-port = 4500", "ike-port = 5500"));
}

#[test]
fn ah_and_esp_bundle_needs_both_spis_and_all_keys() {
    let bundle = |inbound: &str| {
        manual(&format!(
            "interface = \"wan\"\npeer = \"192.0.2.2\"\ntransform = \"B\"\n\
             protected-network = [ {{ local = \"198.51.100.0/24\", remote = \"203.0.113.0/24\" }} ]\n\
             inbound = {{ {inbound} }}\n\
             outbound = {{ esp-spi = 2000, ah-spi = 2000, esp-encryption-key = \"{KEY16}{KEY16}\", ah-authentication-key = \"{KEY20}\" }}\n\
             \n[ipsec-transform.B]\nesp-encryption = \"aes-cbc-256\"\nah-authentication = \"hmac-sha1\"\n"
        ))
    };
    let l = loads(&bundle(&format!(
        "esp-spi = 1000, ah-spi = 1000, esp-encryption-key = \"{KEY16}{KEY16}\", ah-authentication-key = \"{KEY20}\""
    )));
    let m = &l.profiles.manual_policies["M"];
    assert_eq!(
        (m.inbound.esp_spi, m.inbound.ah_spi),
        (Some(1000), Some(1000))
    );
    assert_eq!(m.inbound.esp_encryption_key.as_ref().unwrap().0.len(), 32);
    assert_eq!(m.inbound.esp_authentication_key, None);

    let text = bundle(&format!(
        "esp-spi = 1000, esp-encryption-key = \"{KEY16}{KEY16}\", ah-authentication-key = \"{KEY20}\""
    ));
    one_error(
        &text,
        "inbound = ^{",
        &["missing inbound.ah-spi: transform B uses AH"],
    );
}

#[test]
fn local_id_and_remote_id() {
    use ikehub::config::{LocalId, RemoteId};
    // Defaults: the address both ways.
    let l = loads(&isakmp(ISAKMP_OK));
    let b = &l.profiles.isakmp_policies["B"];
    assert_eq!(
        (&b.local_id, &b.remote_id),
        (&LocalId::Address, &RemoteId::Address)
    );
    // Every form docs/profiles.md names.
    for (local, remote) in [
        ("fqdn:hub.example.net", "fqdn:*.branches.example.net"),
        ("user-fqdn:vpn@example.net", "user-fqdn:*@example.net"),
        ("keyid:hub-1", "keyid:branch-*"),
        ("address", "any"),
    ] {
        let text = isakmp(&format!(
            "{ISAKMP_OK}local-id = \"{local}\"\nremote-id = \"{remote}\"\n"
        ));
        let l = loads(&text);
        let b = &l.profiles.isakmp_policies["B"];
        assert_eq!(b.local_id.to_string(), local);
        assert_eq!(b.remote_id.to_string(), remote);
    }
    // Errors at the value, naming the key and what is wrong.
    let cases = [
        (
            "local-id = \"fqdn:*.example.net\"",
            "local-id = ^\"fqdn:*.example.net\"",
            "ipsec-policy-isakmp.B: local-id `fqdn:*.example.net`: local-id is the identity we send, it cannot hold a `*`",
        ),
        (
            "local-id = \"any\"",
            "local-id = ^\"any\"",
            "local-id `any` is not \"address\", \"fqdn:NAME\", \"user-fqdn:NAME\" or \"keyid:NAME\"",
        ),
        (
            "remote-id = \"fqdn:*.*.example.net\"",
            "remote-id = ^\"fqdn:*.*.example.net\"",
            "remote-id `fqdn:*.*.example.net` has 2 `*`; at most one wildcard",
        ),
        (
            "remote-id = \"dns:x.example.net\"",
            "remote-id = ^\"dns:x.example.net\"",
            "remote-id `dns:x.example.net` is not \"address\", \"any\", \"fqdn:NAME\"",
        ),
        (
            "remote-id = \"user-fqdn:nobody\"",
            "remote-id = ^\"user-fqdn:nobody\"",
            "a user-fqdn is user@domain",
        ),
        (
            "local-id = \"fqdn:\"",
            "local-id = ^\"fqdn:\"",
            "names nothing after `fqdn:`",
        ),
    ];
    for (line, at, msg) in cases {
        let text = isakmp(&format!("{ISAKMP_OK}{line}\n"));
        one_error(&text, at, &[msg]);
    }
    // Both wrong at once: both reported.
    let text = isakmp(&format!(
        "{ISAKMP_OK}local-id = \"fqdn:a b\"\nremote-id = \"keyid:\"\n"
    ));
    let (_, errs) = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    // A number is a type error like for any other string key.
    let text = isakmp(&format!("{ISAKMP_OK}remote-id = 7\n"));
    one_error(&text, "remote-id = ^7", &["remote-id must be a string"]);
}

/// `[tunnel-device] offload` (PROFILES.md "Additions"): on by default, `false` turns it off,
/// anything but a boolean is refused at its place.
#[test]
fn tunnel_device_offload_key() {
    let tun = |extra: &str| {
        loads(&format!("{BASE}[tunnel-device]\n{extra}"))
            .profiles
            .tunnel_device
            .unwrap()
    };
    assert!(tun("").offload, "default on");
    assert!(tun("offload = true\n").offload);
    assert!(!tun("offload = false\n").offload);
    let text = format!("{BASE}\n[tunnel-device]\noffload = \"yes\"\n");
    let (_, errs) = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].message.contains("offload"), "{}", errs[0]);
}

/// docs/metrics.md: the endpoint is off by default, any loopback address (IPv4 or IPv6) is
/// taken, a remote one only with `metrics-allow-remote = true`, and a refusal names the place.
#[test]
fn metrics_address_rule() {
    let sys = |lines: &str| format!("[system]\n{lines}\n{BASE}");
    assert_eq!(loads(BASE).profiles.system.metrics, None);
    let l = loads(&sys("metrics = \"127.0.0.1:9469\""));
    assert_eq!(
        l.profiles.system.metrics,
        Some("127.0.0.1:9469".parse().unwrap())
    );
    let l = loads(&sys("metrics = \"127.3.4.5:9100\""));
    assert_eq!(
        l.profiles.system.metrics,
        Some("127.3.4.5:9100".parse().unwrap())
    );
    let l = loads(&sys("metrics = \"[::1]:9469\""));
    assert_eq!(
        l.profiles.system.metrics,
        Some("[::1]:9469".parse().unwrap())
    );
    let text = sys("metrics = \"192.0.2.1:9469\"");
    one_error(
        &text,
        "metrics = ^\"192.0.2.1",
        &[
            "system: metrics 192.0.2.1:9469 is not a loopback address",
            "metrics-allow-remote = true",
        ],
    );
    let text = sys("metrics = \"0.0.0.0:9469\"");
    one_error(&text, "metrics = ^\"0.0.0.0", &["not a loopback address"]);
    let text = sys("metrics = \"[2001:db8::1]:9469\"");
    one_error(&text, "metrics = ^\"[2001", &["not a loopback address"]);
    let text = sys("metrics = \"192.0.2.1:9469\"\nmetrics-allow-remote = false");
    one_error(&text, "metrics = ^\"192", &["not a loopback address"]);
    let l = loads(&sys(
        "metrics = \"192.0.2.1:9469\"\nmetrics-allow-remote = true",
    ));
    assert_eq!(
        l.profiles.system.metrics,
        Some("192.0.2.1:9469".parse().unwrap())
    );
    let l = loads(&sys("metrics = \"[::]:9469\"\nmetrics-allow-remote = true"));
    assert_eq!(
        l.profiles.system.metrics,
        Some("[::]:9469".parse().unwrap())
    );
    let text = sys("metrics = \"localhost\"");
    one_error(
        &text,
        "metrics = ^\"localhost",
        &["not an address and port"],
    );
    let text = sys("metrics = \"127.0.0.1:0\"");
    one_error(&text, "metrics = ^\"127.0.0.1:0", &["not 0"]);
    let text = sys("metrics = 9469");
    one_error(&text, "metrics = ^9469", &["metrics"]);
}

#[test]
fn ike_workers_key() {
    // Left out or 0: one IKE worker per core.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(loads(BASE).profiles.system.ike_workers, cores);
    let l = loads(&format!("[system]\nike-workers = 0\n{BASE}"));
    assert_eq!(l.profiles.system.ike_workers, cores);
    let l = loads(&format!("[system]\nike-workers = 3\n{BASE}"));
    assert_eq!(l.profiles.system.ike_workers, 3);
    // `ikehub check` says how many.
    let summary = config::summary(&l);
    assert!(summary.contains(", 3 IKE worker(s)"), "{summary}");
    assert_eq!(
        loads(&format!("[system]\nike-workers = 256\n{BASE}"))
            .profiles
            .system
            .ike_workers,
        256
    );
    // Past the bound, negative or not a number: refused at the value, FILE:LINE:COL.
    let text = format!("[system]\nike-workers = 257\n{BASE}");
    one_error(
        &text,
        "ike-workers = ^257",
        &[
            "system: ike-workers 257 is out of range: 0 (one per CPU core) to 256 IKE worker threads",
        ],
    );
    let text = format!("[system]\nshards = 2\nike-workers = -1\n{BASE}");
    one_error(
        &text,
        "ike-workers = ^-1",
        &["ike-workers -1 is out of range"],
    );
    let text = format!("[system]\nike-workers = \"two\"\n{BASE}");
    one_error(&text, "ike-workers = ^\"two\"", &["ike-workers"]);
}

#[test]
fn half_open_per_source_key() {
    assert_eq!(loads(BASE).profiles.system.half_open_per_source, 128);
    for n in [1, 600, 1024] {
        let l = loads(&format!("[system]\nhalf-open-per-source = {n}\n{BASE}"));
        assert_eq!(l.profiles.system.half_open_per_source, n);
    }
    for bad in ["0", "1025", "-3"] {
        let text = format!("[system]\nhalf-open-per-source = {bad}\n{BASE}");
        one_error(
            &text,
            &format!("half-open-per-source = ^{bad}"),
            &[&format!(
                "system: half-open-per-source {bad} is out of range: 1 to 1024 half-open \
                 exchanges per source address"
            )],
        );
    }
}

#[test]
fn dh_key_reuse_seconds_key() {
    // Off by default, and no warning.
    let l = loads(&isakmp(ISAKMP_OK));
    assert_eq!(l.profiles.isakmp_policies["B"].dh_key_reuse_seconds, 0);
    assert!(l.warnings.is_empty(), "{:#?}", l.warnings);
    let l = loads(&isakmp(&format!("{ISAKMP_OK}dh-key-reuse-seconds = 0\n")));
    assert_eq!(l.profiles.isakmp_policies["B"].dh_key_reuse_seconds, 0);
    assert!(l.warnings.is_empty(), "{:#?}", l.warnings);
    // On: loads, with a warning at the value that names the cost.
    let l = loads(&isakmp(&format!("{ISAKMP_OK}dh-key-reuse-seconds = 300\n")));
    assert_eq!(l.profiles.isakmp_policies["B"].dh_key_reuse_seconds, 300);
    let w: Vec<String> = l.warnings.iter().map(|d| d.to_string()).collect();
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].contains("dh-key-reuse-seconds = 300") && w[0].contains("weaker forward secrecy"),
        "{w:#?}"
    );
    // Past five minutes or negative: refused at the value.
    one_error(
        &isakmp(&format!("{ISAKMP_OK}dh-key-reuse-seconds = 301\n")),
        "dh-key-reuse-seconds = ^301",
        &["dh-key-reuse-seconds 301 is out of range: 0 (off) to 300 seconds"],
    );
    one_error(
        &isakmp(&format!("{ISAKMP_OK}dh-key-reuse-seconds = -1\n")),
        "dh-key-reuse-seconds = ^-1",
        &["dh-key-reuse-seconds -1 is out of range"],
    );
}

// ---- IPv6 (issue 11; docs/profiles.md "IPv6") ------------------------------------------------

/// ISAKMP_OK with its one protected-network list replaced by `pairs`.
fn isakmp_pairs(pairs: &str) -> String {
    isakmp(&ISAKMP_OK.replace(
        "protected-network = [ { local = \"198.51.100.0/24\", remote = \"10.0.0.0/8\" } ]",
        &format!("protected-network = [ {pairs} ]"),
    ))
}

#[test]
fn ipv6_protected_networks_load_beside_ipv4() {
    use ikehub::config::{Family, NetworkSpec};
    let l = loads(&isakmp_pairs(
        "{ local = \"198.51.100.0/24\", remote = \"10.0.0.0/8\" }, \
         { local = \"2001:db8:1::/48\", remote = \"2001:db8:2::10-2001:db8:2::20\" }, \
         { local = \"2001:db8:1::7\", remote = \"any\" }, \
         { local = \"any\", remote = \"any\" }",
    ));
    let nets = &l.profiles.isakmp_policies["B"].protected_networks;
    let shown: Vec<String> = nets
        .iter()
        .map(|p| format!("{} <-> {}", p.local, p.remote))
        .collect();
    assert_eq!(
        shown,
        [
            "198.51.100.0/24 <-> 10.0.0.0/8",
            "2001:db8:1::/48 <-> 2001:db8:2::10-2001:db8:2::20",
            // "any" opposite an IPv6 network is ::/0, any <-> any stays IPv4.
            "2001:db8:1::7 <-> ::/0",
            "0.0.0.0/0 <-> 0.0.0.0/0",
        ]
    );
    assert_eq!(nets[2].remote, NetworkSpec::ANY6);
    assert_eq!(nets[1].family(), Family::V6);
    assert_eq!(nets[3].family(), Family::V4);
}

#[test]
fn a_pair_carries_one_family() {
    let text = isakmp_pairs("{ local = \"198.51.100.0/24\", remote = \"2001:db8::/32\" }");
    one_error(
        &text,
        "protected-network = [ ^{",
        &[
            "ipsec-policy-isakmp.B: protected-network: local 198.51.100.0/24 is IPv4, remote \
             2001:db8::/32 is IPv6: a protected network carries one family",
        ],
    );
    // Every problem at once: both crossed pairs are reported, each at its place.
    let text = isakmp_pairs(
        "{ local = \"198.51.100.0/24\", remote = \"2001:db8::/32\" }, \
         { local = \"2001:db8::1\", remote = \"203.0.113.9\" }",
    );
    let (_, errs) = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(
        (errs[1].line, errs[1].col),
        pos(&text, "^{ local = \"2001:db8::1\"")
    );
    assert!(
        errs[1]
            .message
            .contains("local 2001:db8::1 is IPv6, remote 203.0.113.9 is IPv4"),
        "{}",
        errs[1]
    );
}

#[test]
fn ipv6_networks_must_parse() {
    let text = isakmp_pairs("{ local = \"2001:db8::/129\", remote = \"2001:db8:2::/48\" }");
    one_error(
        &text,
        "local = ^\"2001:db8::/129\"",
        &["protected-network.local: IPv6 prefix length 129 is out of range 0..=128"],
    );
    let text = isakmp_pairs("{ local = \"192.0.2.1-2001:db8::1\", remote = \"2001:db8:2::/48\" }");
    one_error(
        &text,
        "local = ^\"192.0.2.1-",
        &["range `192.0.2.1-2001:db8::1` mixes IPv4 and IPv6"],
    );
    let text =
        isakmp_pairs("{ local = \"2001:db8::9-2001:db8::1\", remote = \"2001:db8:2::/48\" }");
    one_error(
        &text,
        "local = ^\"2001:db8::9",
        &["range `2001:db8::9-2001:db8::1` ends before it starts"],
    );
    let text = isakmp_pairs("{ local = \"2001:db8::zz\", remote = \"2001:db8:2::/48\" }");
    one_error(
        &text,
        "local = ^\"2001:db8::zz\"",
        &["`2001:db8::zz` is not an IPv6 address"],
    );
}

/// Overlaps are judged per family: the same IPv6 networks in two policies are refused, while
/// `any <-> any` (IPv4) and `::/0 <-> ::/0` never meet.
#[test]
fn ipv6_overlaps_refused_per_family() {
    let second = |pairs: &str| {
        manual_ok_lines(3333, 4444)
            .replace("192.0.2.2", "192.0.2.3")
            .replace(
                "{ local = \"198.51.100.0/24\", remote = \"203.0.113.0/24\" }",
                pairs,
            )
    };
    let first = manual(&manual_ok_lines(1111, 2222).replace(
        "{ local = \"198.51.100.0/24\", remote = \"203.0.113.0/24\" }",
        "{ local = \"2001:db8:1::/48\", remote = \"2001:db8:2::/48\" }",
    ));
    let crossed = "{ local = \"2001:db8:1::/64\", remote = \"2001:db8::/32\" }";
    let text = format!("{first}\n[ipsec-policy-manual.N]\n{}", second(crossed));
    one_error(
        &text,
        "protected-network = [ ^{ local = \"2001:db8:1::/64\"",
        &[
            "ipsec-policy-manual.N: protected-network 2001:db8:1::/64 <-> 2001:db8::/32 overlaps ipsec-policy-manual.M's 2001:db8:1::/48 <-> 2001:db8:2::/48",
            "a packet 2001:db8:1:: -> 2001:db8:2:: would match both",
        ],
    );
    let both_any = format!(
        "{}\n[ipsec-policy-manual.N]\n{}",
        manual(&manual_ok_lines(1111, 2222).replace(
            "{ local = \"198.51.100.0/24\", remote = \"203.0.113.0/24\" }",
            "{ local = \"any\", remote = \"any\" }",
        )),
        second("{ local = \"::/0\", remote = \"any\" }")
    );
    loads(&both_any);
}

#[test]
fn transport_mode_networks_are_of_the_peers_family() {
    let text = manual(
        &manual_ok_lines(1111, 2222)
            .replace("peer = \"192.0.2.2\"", "peer = \"2001:db8::2\"")
            .replace(
                "{ local = \"198.51.100.0/24\", remote = \"203.0.113.0/24\" }",
                "{ local = \"192.0.2.1\", remote = \"192.0.2.2\" }",
            ),
    )
    .replace("address = \"192.0.2.1\"", "address = \"2001:db8::1\"")
    .replace(
        "esp-authentication = \"hmac-sha1\"",
        "esp-authentication = \"hmac-sha1\"\nmode = \"transport\"",
    );
    one_error(
        &text,
        "protected-network = [ ^{",
        &[
            "transform T uses transport mode",
            "protected-network must be { local = \"2001:db8::1\", remote = \"2001:db8::2\" }, not 192.0.2.1 <-> 192.0.2.2",
        ],
    );
    loads(&text.replace(
        "{ local = \"192.0.2.1\", remote = \"192.0.2.2\" }",
        "{ local = \"2001:db8::1/128\", remote = \"2001:db8::2\" }",
    ));
    // Tunnel mode carries IPv4 in IPv6.
    loads(&text.replace("\nmode = \"transport\"", ""));
}

#[test]
fn template_block_is_of_the_interfaces_family() {
    let text = isakmp(&ISAKMP_OK.replace("peer = \"any\"", "peer = \"2001:db8::/32\""));
    one_error(
        &text,
        "peer = ^\"2001:db8::/32\"",
        &["peer 2001:db8::/32 and interface wan (192.0.2.1) are of different IP versions"],
    );
}

#[test]
fn source_address_one_per_family() {
    let tun = |extra: &str| {
        loads(&format!("{BASE}[tunnel-device]\n{extra}"))
            .profiles
            .tunnel_device
            .unwrap()
    };
    let t = tun("source-address = [\"198.51.100.1\", \"2001:db8:1::1\"]\n");
    assert_eq!(t.source_v4, Some("198.51.100.1".parse().unwrap()));
    assert_eq!(t.source_v6, Some("2001:db8:1::1".parse().unwrap()));
    let t = tun("source-address = \"2001:db8:1::1\"\n");
    assert_eq!((t.source_v4, t.source_v6.is_some()), (None, true));
    let text = format!(
        "{BASE}[tunnel-device]\nsource-address = [\"198.51.100.1\", \"2001:db8:1::1\", \"198.51.100.2\"]\n"
    );
    one_error(
        &text,
        "^\"198.51.100.2\"",
        &[
            "source-address lists two IPv4 addresses (198.51.100.1 and 198.51.100.2): give at most one per family",
        ],
    );
    let text =
        format!("{BASE}[tunnel-device]\nsource-address = [\"2001:db8::1\", \"2001:db8::1\"]\n");
    let (_, errs) = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].message.contains("two IPv6 addresses"),
        "{}",
        errs[0]
    );
}

//! IKE-keyed ikehub for the IKE acceptance tests (`tests/ike_*.rs`): `ipsec-policy-isakmp`
//! profiles and the matching strongSwan connection, the daemon's IKE views (`show isakmp`,
//! `show peers`, the ISAKMP rows of `show sa`), `initiate` / `terminate` / `reload`, a hard
//! kill, a port-translating NAT to force NAT-T, per-sequence ping, and tshark checks of what
//! ikehub sends.
//!
//! # The daemon contract these helpers encode (docs/profiles.md, docs/cli.md)
//!
//! * `show isakmp --json`: an array of phase-1 rows `{policy, peer ("ADDR:PORT"), state
//!   ("up" | "phase1-up" | "connecting" | "failed"), initiator_cookie, responder_cookie (hex),
//!   transform (e.g. "AES128-SHA1-modp1024"), age_seconds, lifetime_seconds, child_sas,
//!   last_error}` ([`IsakmpRow`]; cookies and `last_error` may be null, extra fields are fine).
//! * `show peers --json`: an array of `{policy, type ("MANUAL" | "ISAKMP"), peer, state,
//!   child_sas, last_error}` ([`PeerRow`]); `last_error` is the operator-readable reason a
//!   tunnel did not come up ("no proposal chosen ...", "authentication failed" / "hash",
//!   "invalid id ...").
//! * `show sa --json`: the rows of [`super::sa::SaRow`]; IKE-keyed SAs have `type = "ISAKMP"`
//!   and `seconds_limit` = the negotiated lifetime. While a rekey overlaps, a policy may show
//!   two SAs per direction; [`child_pair`] picks the youngest.
//! * `initiate POLICY`, `terminate POLICY` and `reload` exit 0 on success.
//!
//! Text is compared after [`normalize`] (lower case, `-` and `_` as spaces), so
//! "NO-PROPOSAL-CHOSEN", "NO_PROPOSAL_CHOSEN" and "no proposal chosen" all match.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::daemon::Daemon;
use super::ikescan;
use super::netns::{A_HOST, A_NET, A_WAN, B_HOST, B_NET, B_WAN};
use super::sa::{SaRow, parse_rows};
use super::strongswan::{SwanConfig, output_with_timeout};
use super::tunnel::{Auth, Encr};
use super::{Netns, TempDir, ikehub_bin, poll_until};

/// The policy name every IKE test uses (docs/profiles.md's ToBerne, keyed by IKE).
pub const POLICY: &str = "ToBerne";
/// The TUN device of the generated profiles.
pub const TUN: &str = "ikehub0";
/// How long a tunnel may take to come up (main mode + quick mode, retransmissions on a busy
/// shared machine included).
pub const UP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one `ikehub` CLI call.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(20);

/// ISAKMP exchange types (RFC 2408 section 3.1, RFC 2409).
pub const EXCH_MAIN_MODE: u8 = 2;
pub const EXCH_AGGRESSIVE: u8 = 4;
pub const EXCH_INFORMATIONAL: u8 = 5;
pub const EXCH_QUICK_MODE: u8 = 32;
/// Notify message types (RFC 2408 section 3.14.1).
pub const NOTIFY_INVALID_ID_INFORMATION: u16 = 18;

// ----- transforms --------------------------------------------------------------------------

/// Phase-1 encryption (`isakmp-transform.encryption`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IkeEncr {
    Des,
    TripleDes,
    Aes128,
    Aes192,
    Aes256,
}

impl IkeEncr {
    pub fn profile_name(self) -> &'static str {
        match self {
            IkeEncr::Des => "des",
            IkeEncr::TripleDes => "3des",
            IkeEncr::Aes128 => "aes-cbc-128",
            IkeEncr::Aes192 => "aes-cbc-192",
            IkeEncr::Aes256 => "aes-cbc-256",
        }
    }

    /// strongSwan's proposal keyword.
    pub fn swan_name(self) -> &'static str {
        match self {
            IkeEncr::Des => "des",
            IkeEncr::TripleDes => "3des",
            IkeEncr::Aes128 => "aes128",
            IkeEncr::Aes192 => "aes192",
            IkeEncr::Aes256 => "aes256",
        }
    }

    /// The short name an operator reads in `show isakmp` ("AES128", "3DES"), squashed.
    pub fn short(self) -> &'static str {
        match self {
            IkeEncr::Des => "des",
            IkeEncr::TripleDes => "3des",
            IkeEncr::Aes128 => "aes128",
            IkeEncr::Aes192 => "aes192",
            IkeEncr::Aes256 => "aes256",
        }
    }
}

/// Phase-1 hash (`isakmp-transform.hash`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IkeHash {
    Md5,
    Sha1,
    Sha256,
}

impl IkeHash {
    pub fn profile_name(self) -> &'static str {
        match self {
            IkeHash::Md5 => "md5",
            IkeHash::Sha1 => "sha1",
            IkeHash::Sha256 => "sha256",
        }
    }

    /// strongSwan's keyword (the same words).
    pub fn swan_name(self) -> &'static str {
        self.profile_name()
    }
}

/// The MODP group of a DH group number, as strongSwan and the contract's `transform` name it.
pub fn modp_name(group: u8) -> &'static str {
    match group {
        1 => "modp768",
        2 => "modp1024",
        5 => "modp1536",
        14 => "modp2048",
        15 => "modp3072",
        16 => "modp4096",
        other => panic!("no MODP group {other} in the profile contract"),
    }
}

/// An `[isakmp-transform.NAME]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsakmpTransform {
    pub name: String,
    pub encryption: IkeEncr,
    pub hash: IkeHash,
    pub dh_group: u8,
    pub lifetime_seconds: u32,
}

impl IsakmpTransform {
    /// With the profile default lifetime (28800 s).
    pub fn new(name: &str, encryption: IkeEncr, hash: IkeHash, dh_group: u8) -> IsakmpTransform {
        IsakmpTransform {
            name: name.into(),
            encryption,
            hash,
            dh_group,
            lifetime_seconds: 28800,
        }
    }

    pub fn lifetime(mut self, seconds: u32) -> Self {
        self.lifetime_seconds = seconds;
        self
    }

    pub fn toml(&self) -> String {
        format!(
            "[isakmp-transform.{}]\nencryption = \"{}\"\nhash = \"{}\"\ndh-group = {}\n\
             lifetime-seconds = {}\n",
            self.name,
            self.encryption.profile_name(),
            self.hash.profile_name(),
            self.dh_group,
            self.lifetime_seconds
        )
    }

    /// strongSwan's IKE proposal: `aes128-sha1-modp1024`.
    pub fn swan_proposal(&self) -> String {
        format!(
            "{}-{}-{}",
            self.encryption.swan_name(),
            self.hash.swan_name(),
            modp_name(self.dh_group)
        )
    }

    /// The same transform as an ike-scan `--trans`.
    pub fn ikescan(&self) -> ikescan::Transform {
        let (enc, len) = match self.encryption {
            IkeEncr::Des => (ikescan::enc::DES, None),
            IkeEncr::TripleDes => (ikescan::enc::TRIPLE_DES, None),
            IkeEncr::Aes128 => (ikescan::enc::AES, Some(128)),
            IkeEncr::Aes192 => (ikescan::enc::AES, Some(192)),
            IkeEncr::Aes256 => (ikescan::enc::AES, Some(256)),
        };
        let hash = match self.hash {
            IkeHash::Md5 => ikescan::hash::MD5,
            IkeHash::Sha1 => ikescan::hash::SHA1,
            IkeHash::Sha256 => ikescan::hash::SHA256,
        };
        ikescan::Transform::psk(enc, len, hash, u16::from(self.dh_group))
    }

    /// The words `show isakmp`'s `transform` must contain (after [`squash`]), e.g.
    /// `["aes128", "sha1", "modp1024"]`.
    pub fn expected_words(&self) -> [&'static str; 3] {
        [
            self.encryption.short(),
            self.hash.profile_name(),
            modp_name(self.dh_group),
        ]
    }
}

/// An `[ipsec-transform.NAME]` table for ESP (tunnel mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EspTransform {
    pub name: String,
    pub encryption: Encr,
    pub authentication: Auth,
    pub lifetime_seconds: u32,
}

impl EspTransform {
    /// With the profile default lifetime (3600 s).
    pub fn new(name: &str, encryption: Encr, authentication: Auth) -> EspTransform {
        EspTransform {
            name: name.into(),
            encryption,
            authentication,
            lifetime_seconds: 3600,
        }
    }

    pub fn lifetime(mut self, seconds: u32) -> Self {
        self.lifetime_seconds = seconds;
        self
    }

    pub fn toml(&self) -> String {
        format!(
            "[ipsec-transform.{}]\nesp-encryption = \"{}\"\nesp-authentication = \"{}\"\n\
             mode = \"tunnel\"\nlifetime-seconds = {}\n",
            self.name,
            self.encryption.profile_name(),
            self.authentication.profile_name(),
            self.lifetime_seconds
        )
    }

    /// strongSwan's ESP proposal, with the PFS group appended when there is one:
    /// `aes128-sha1`, `aes256-sha256-modp2048`.
    pub fn swan_proposal(&self, pfs: Option<u8>) -> String {
        let enc = match self.encryption {
            Encr::None => "null",
            Encr::Des => "des",
            Encr::TripleDes => "3des",
            Encr::Aes128 => "aes128",
            Encr::Aes192 => "aes192",
            Encr::Aes256 => "aes256",
            // RFC 4106 combined mode: strongSwan's keyword names no integrity algorithm.
            Encr::AesGcm128 => "aes128gcm16",
            Encr::AesGcm256 => "aes256gcm16",
        };
        let auth = match self.authentication {
            Auth::None if matches!(self.encryption, Encr::AesGcm128 | Encr::AesGcm256) => {
                return match pfs {
                    Some(g) => format!("{enc}-{}", modp_name(g)),
                    None => enc.to_string(),
                };
            }
            Auth::None => panic!("ESP without authentication is not used by the IKE tests"),
            Auth::HmacMd5 => "md5",
            Auth::HmacSha1 => "sha1",
            Auth::HmacSha256 => "sha256",
        };
        match pfs {
            Some(g) => format!("{enc}-{auth}-{}", modp_name(g)),
            None => format!("{enc}-{auth}"),
        }
    }

    /// strongSwan's `encr-alg` / `encr-keysize` / `integ-alg` of a CHILD_SA with this transform.
    pub fn swan_child_algs(&self) -> (&'static str, Option<u32>, &'static str) {
        let (enc, size) = match self.encryption {
            Encr::None => ("NULL", None),
            Encr::Des => ("DES_CBC", None),
            Encr::TripleDes => ("3DES_CBC", None),
            Encr::Aes128 => ("AES_CBC", Some(128)),
            Encr::Aes192 => ("AES_CBC", Some(192)),
            Encr::Aes256 => ("AES_CBC", Some(256)),
            Encr::AesGcm128 => ("AES_GCM_16", Some(128)),
            Encr::AesGcm256 => ("AES_GCM_16", Some(256)),
        };
        let integ = match self.authentication {
            Auth::None => "",
            Auth::HmacMd5 => "HMAC_MD5_96",
            Auth::HmacSha1 => "HMAC_SHA1_96",
            Auth::HmacSha256 => "HMAC_SHA2_256_128",
        };
        (enc, size, integ)
    }
}

/// The default phase 1 of the contract: AES-CBC-128, SHA1, group 2, 28800 s, named `P1`.
pub fn p1_aes128_sha1_g2() -> IsakmpTransform {
    IsakmpTransform::new("P1", IkeEncr::Aes128, IkeHash::Sha1, 2)
}

/// The default phase 2 of the contract: ESP AES-CBC-128 + HMAC-SHA1, tunnel, 3600 s, `P2`.
pub fn p2_aes128_sha1() -> EspTransform {
    EspTransform::new("P2", Encr::Aes128, Auth::HmacSha1)
}

// ----- the policy ---------------------------------------------------------------------------

/// `initiate` of an `ipsec-policy-isakmp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Initiate {
    Never,
    OnDemand,
    Permanent,
}

impl Initiate {
    pub fn profile_name(self) -> &'static str {
        match self {
            Initiate::Never => "never",
            Initiate::OnDemand => "on-demand",
            Initiate::Permanent => "permanent",
        }
    }
}

/// A whole ikehub profile with one `ipsec-policy-isakmp` (plus its transforms), for one side of
/// the two-site topology. Rendered by [`IkeProfile::toml`]; [`IkeProfile::swan_peer`] gives the
/// strongSwan connection of the other side that matches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IkeProfile {
    pub policy: String,
    /// `interface.wan.address`.
    pub local_wan: String,
    /// `peer` of the policy.
    pub peer: String,
    /// `tunnel-device.source-address`: the protected host on this side.
    pub local_host: String,
    pub psk: String,
    pub isakmp: Vec<IsakmpTransform>,
    pub esp: Vec<EspTransform>,
    /// `pfs-group`: `None` = "none".
    pub pfs_group: Option<u8>,
    pub initiate: Initiate,
    pub nat_traversal: bool,
    /// `dpd = { interval-seconds, timeout-seconds }`.
    pub dpd: Option<(u32, u32)>,
    /// `protected-network` entries (local, remote).
    pub protected: Vec<(String, String)>,
    /// `system.shards`.
    pub shards: u32,
}

impl IkeProfile {
    /// ikehub in namespace A (192.0.2.1, protects 198.51.100.0/24) with peer B (192.0.2.2,
    /// 203.0.113.0/24): `P1` (AES128-SHA1-G2), `P2` (ESP AES128/HMAC-SHA1), no PFS,
    /// `initiate = "never"`, NAT-T on, no DPD, 2 shards.
    pub fn site_a(psk: &str) -> IkeProfile {
        IkeProfile {
            policy: POLICY.into(),
            local_wan: A_WAN.into(),
            peer: B_WAN.into(),
            local_host: A_HOST.into(),
            psk: psk.into(),
            isakmp: vec![p1_aes128_sha1_g2()],
            esp: vec![p2_aes128_sha1()],
            pfs_group: None,
            initiate: Initiate::Never,
            nat_traversal: true,
            dpd: None,
            protected: vec![(A_NET.into(), B_NET.into())],
            shards: 2,
        }
    }

    /// The same policy seen from the other end (addresses and networks swapped); everything
    /// else, `initiate` included, is kept: set it on the result.
    pub fn mirrored(&self) -> IkeProfile {
        let mut m = self.clone();
        std::mem::swap(&mut m.local_wan, &mut m.peer);
        m.local_host = if self.local_host == A_HOST {
            B_HOST.into()
        } else {
            A_HOST.into()
        };
        m.protected = self
            .protected
            .iter()
            .map(|(l, r)| (r.clone(), l.clone()))
            .collect();
        m
    }

    pub fn psk(mut self, psk: &str) -> Self {
        self.psk = psk.into();
        self
    }

    pub fn isakmp(mut self, t: &[IsakmpTransform]) -> Self {
        self.isakmp = t.to_vec();
        self
    }

    pub fn esp(mut self, t: &[EspTransform]) -> Self {
        self.esp = t.to_vec();
        self
    }

    pub fn pfs(mut self, group: Option<u8>) -> Self {
        self.pfs_group = group;
        self
    }

    pub fn initiate(mut self, i: Initiate) -> Self {
        self.initiate = i;
        self
    }

    pub fn nat_traversal(mut self, on: bool) -> Self {
        self.nat_traversal = on;
        self
    }

    pub fn dpd(mut self, interval: u32, timeout: u32) -> Self {
        self.dpd = Some((interval, timeout));
        self
    }

    pub fn protected(mut self, local: &str, remote: &str) -> Self {
        self.protected = vec![(local.into(), remote.into())];
        self
    }

    /// The remote protected network of the first entry.
    pub fn remote_net(&self) -> &str {
        &self.protected[0].1
    }

    pub fn local_net(&self) -> &str {
        &self.protected[0].0
    }

    /// The profile text; `dir` holds the control socket.
    pub fn toml(&self, dir: &Path) -> String {
        assert!(
            !self.psk.contains('"') && !self.psk.contains('\\') && !self.psk.contains('\n'),
            "the generator does not escape PSKs: {:?}",
            self.psk
        );
        let mut s = format!(
            "# generated by tests/common/ike.rs: IKE-keyed {policy}, {wan} <-> {peer}\n\
             [system]\ncontrol-socket = \"{sock}\"\nshards = {shards}\n\n\
             [interface.wan]\naddress = \"{wan}\"\n\n\
             [tunnel-device]\nname = \"{TUN}\"\nmtu = 1400\nsource-address = \"{host}\"\n\
             routes = true\n\n",
            policy = self.policy,
            wan = self.local_wan,
            peer = self.peer,
            sock = dir.join("ikehub.sock").display(),
            shards = self.shards,
            host = self.local_host,
        );
        let mut seen = BTreeSet::new();
        for t in &self.isakmp {
            if seen.insert(t.name.clone()) {
                s.push_str(&t.toml());
                s.push('\n');
            }
        }
        for t in &self.esp {
            if seen.insert(t.name.clone()) {
                s.push_str(&t.toml());
                s.push('\n');
            }
        }
        let names = |v: Vec<&str>| {
            v.iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let pfs = match self.pfs_group {
            Some(g) => g.to_string(),
            None => "\"none\"".into(),
        };
        let nets = self
            .protected
            .iter()
            .map(|(l, r)| format!("{{ local = \"{l}\", remote = \"{r}\" }}"))
            .collect::<Vec<_>>()
            .join(", ");
        s.push_str(&format!(
            "[ipsec-policy-isakmp.{policy}]\ninterface = \"wan\"\npeer = \"{peer}\"\n\
             preshared-key = \"{psk}\"\nisakmp-transform = [{p1}]\nipsec-transform = [{p2}]\n\
             pfs-group = {pfs}\ninitiate = \"{initiate}\"\nnat-traversal = {natt}\n",
            policy = self.policy,
            peer = self.peer,
            psk = self.psk,
            p1 = names(self.isakmp.iter().map(|t| t.name.as_str()).collect()),
            p2 = names(self.esp.iter().map(|t| t.name.as_str()).collect()),
            initiate = self.initiate.profile_name(),
            natt = self.nat_traversal,
        ));
        if let Some((interval, timeout)) = self.dpd {
            s.push_str(&format!(
                "dpd = {{ interval-seconds = {interval}, timeout-seconds = {timeout} }}\n"
            ));
        }
        s.push_str(&format!("protected-network = [ {nets} ]\n"));
        s
    }

    /// The strongSwan connection (`tun` / child `net`) at the peer's address that matches this
    /// policy: same PSK, the IKE and ESP proposals (PFS group appended), traffic selectors =
    /// this policy's protected networks mirrored. Lifetimes are strongSwan's defaults.
    pub fn swan_peer(&self) -> SwanConfig {
        let proposals: Vec<String> = self.isakmp.iter().map(|t| t.swan_proposal()).collect();
        let esp: Vec<String> = self
            .esp
            .iter()
            .map(|t| t.swan_proposal(self.pfs_group))
            .collect();
        let p: Vec<&str> = proposals.iter().map(String::as_str).collect();
        let e: Vec<&str> = esp.iter().map(String::as_str).collect();
        SwanConfig::ikev1_psk(&self.peer, &self.local_wan, &self.psk)
            .proposals(&p)
            .esp_proposals(&e)
            .ts(self.remote_net(), self.local_net())
    }
}

/// `ikehub check -c FILE` on `profile` (written to a temp file); panics with the problems
/// unless it exits 0. Returns the summary. Needs no root.
#[track_caller]
pub fn assert_profile_checks(label: &str, profile: &IkeProfile) -> String {
    let dir = TempDir::new("ike-check");
    let text = profile.toml(dir.path());
    let file = dir.join("ikehub.toml");
    std::fs::write(&file, &text).expect("writing the profile");
    let out = std::process::Command::new(ikehub_bin())
        .arg("check")
        .arg("-c")
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .expect("ikehub check runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "profile {label} is refused by `ikehub check` ({}):\n{stdout}{}\n----- profile -----\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

// ----- the daemon's IKE views -------------------------------------------------------------

/// One row of `show isakmp --json`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct IsakmpRow {
    pub policy: String,
    /// "192.0.2.2:4500"
    pub peer: String,
    /// "up" | "phase1-up" | "connecting" | "failed"
    pub state: String,
    pub initiator_cookie: Option<String>,
    pub responder_cookie: Option<String>,
    /// e.g. "AES128-SHA1-modp1024"
    pub transform: Option<String>,
    pub age_seconds: Option<u64>,
    pub lifetime_seconds: Option<u64>,
    pub child_sas: Option<u64>,
    pub last_error: Option<String>,
}

impl IsakmpRow {
    /// Both cookies, normalised (lower-case hex digits only), as one key.
    pub fn cookies(&self) -> (String, String) {
        (
            hex_only(self.initiator_cookie.as_deref().unwrap_or("")),
            hex_only(self.responder_cookie.as_deref().unwrap_or("")),
        )
    }

    pub fn is_up(&self) -> bool {
        self.state == "up" || self.state == "phase1-up"
    }
}

/// One row of `show peers --json`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct PeerRow {
    pub policy: String,
    /// "MANUAL" | "ISAKMP"
    #[serde(rename = "type")]
    pub kind: String,
    pub peer: String,
    pub state: String,
    pub child_sas: Option<u64>,
    pub last_error: Option<String>,
}

/// Runs `ikehub ARGS -c CONFIG` in the daemon's namespace, bounded by [`CLI_TIMEOUT`]:
/// Ok(stdout) on exit 0, Err(status, stdout and stderr) otherwise.
pub fn cli(d: &Daemon, args: &[&str]) -> Result<String, String> {
    let mut cmd = d.cli(args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run ikehub {}: {e}", args.join(" ")))?;
    let out = output_with_timeout(child, CLI_TIMEOUT)
        .map_err(|e| format!("ikehub {}: {e}", args.join(" ")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "ikehub {} failed ({}):\n{stdout}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `ikehub show WHAT --json`, parsed as JSON.
pub fn show_json(d: &Daemon, what: &str) -> Result<Value, String> {
    let out = cli(d, &["show", what, "--json"])?;
    serde_json::from_str(&out).map_err(|e| format!("show {what} --json is not JSON ({e}): {out}"))
}

fn parse_array<T: for<'de> Deserialize<'de>>(what: &str, v: &Value) -> Vec<T> {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| {
        panic!(
            "`show {what} --json` does not have the contract's shape ({e}):\n{}",
            serde_json::to_string_pretty(v).unwrap_or_default()
        )
    })
}

/// `show sa --json` rows; panics (with the daemon's log, via the guard) if the daemon does not
/// answer.
#[track_caller]
pub fn sa_rows(d: &Daemon) -> Vec<SaRow> {
    match show_json(d, "sa") {
        Ok(v) => parse_rows(&v),
        Err(e) => panic!("daemon {}: {e}", d.label()),
    }
}

/// `show isakmp --json` rows (panics if the daemon does not answer or the shape is wrong).
#[track_caller]
pub fn isakmp_rows(d: &Daemon) -> Vec<IsakmpRow> {
    match show_json(d, "isakmp") {
        Ok(v) => parse_array("isakmp", &v),
        Err(e) => panic!("daemon {}: {e}", d.label()),
    }
}

/// `show peers --json` rows.
#[track_caller]
pub fn peer_rows(d: &Daemon) -> Vec<PeerRow> {
    match show_json(d, "peers") {
        Ok(v) => parse_array("peers", &v),
        Err(e) => panic!("daemon {}: {e}", d.label()),
    }
}

/// The `show peers` row of `policy`, if any.
pub fn peer_row(d: &Daemon, policy: &str) -> Option<PeerRow> {
    peer_rows(d).into_iter().find(|r| r.policy == policy)
}

/// The ISAKMP (IKE-keyed) rows of `policy` in one direction.
pub fn ike_rows<'a>(rows: &'a [SaRow], policy: &str, direction: &str) -> Vec<&'a SaRow> {
    rows.iter()
        .filter(|r| r.policy == policy && r.direction == direction && r.sa_type == "ISAKMP")
        .collect()
}

/// The youngest ISAKMP IN and OUT SAs of `policy`, if both exist.
pub fn child_pair(rows: &[SaRow], policy: &str) -> Option<(SaRow, SaRow)> {
    let youngest = |dir: &str| {
        ike_rows(rows, policy, dir)
            .into_iter()
            .min_by_key(|r| r.seconds)
            .cloned()
    };
    Some((youngest("IN")?, youngest("OUT")?))
}

/// Waits until `show sa` lists an ISAKMP IN and OUT SA of `policy`; returns them (IN, OUT).
/// Panics after `timeout` with the three views of the daemon.
#[track_caller]
pub fn wait_child_sas(d: &Daemon, policy: &str, timeout: Duration) -> (SaRow, SaRow) {
    match poll_until(timeout, || child_pair(&sa_rows(d), policy)) {
        Some(pair) => pair,
        None => panic!(
            "daemon {}: no ISAKMP IN/OUT SAs of {policy} after {timeout:?}\n{}",
            d.label(),
            views(d)
        ),
    }
}

/// Waits until `show sa` lists no ISAKMP SA of `policy`; panics after `timeout`.
#[track_caller]
pub fn wait_no_child_sas(d: &Daemon, policy: &str, timeout: Duration) {
    let gone = poll_until(timeout, || {
        let rows = sa_rows(d);
        (ike_rows(&rows, policy, "IN").is_empty() && ike_rows(&rows, policy, "OUT").is_empty())
            .then_some(())
    });
    if gone.is_none() {
        panic!(
            "daemon {}: ISAKMP SAs of {policy} still listed after {timeout:?}\n{}",
            d.label(),
            views(d)
        );
    }
}

/// The `show isakmp` row of `policy` whose state is "up" (the youngest if several).
pub fn phase1_up(d: &Daemon, policy: &str) -> Option<IsakmpRow> {
    isakmp_rows(d)
        .into_iter()
        .filter(|r| r.policy == policy && r.state == "up")
        .min_by_key(|r| r.age_seconds.unwrap_or(0))
}

/// Waits until `show isakmp` shows an "up" phase-1 SA of `policy`.
#[track_caller]
pub fn wait_phase1_up(d: &Daemon, policy: &str, timeout: Duration) -> IsakmpRow {
    match poll_until(timeout, || phase1_up(d, policy)) {
        Some(row) => row,
        None => panic!(
            "daemon {}: no phase-1 SA of {policy} in state \"up\" after {timeout:?}\n{}",
            d.label(),
            views(d)
        ),
    }
}

/// `show sa`, `show isakmp` and `show peers` (JSON, or the error), for failure messages.
pub fn views(d: &Daemon) -> String {
    let mut s = String::new();
    for what in ["sa", "isakmp", "peers", "counters"] {
        let v = match show_json(d, what) {
            Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
            Err(e) => e,
        };
        s.push_str(&format!("--- show {what} --json ---\n{v}\n"));
    }
    s
}

/// Waits until the `show peers` row of `policy` has a `last_error` that mentions one of
/// `phrases` (see [`mentions_any`]); returns that row, or `None` after `timeout`.
pub fn wait_last_error(
    d: &Daemon,
    policy: &str,
    phrases: &[&str],
    timeout: Duration,
) -> Option<PeerRow> {
    poll_until(timeout, || {
        peer_row(d, policy).filter(|r| {
            r.last_error
                .as_deref()
                .is_some_and(|e| mentions_any(e, phrases))
        })
    })
}

/// Waits until the daemon's log mentions one of `phrases`; returns the matching lines.
pub fn wait_log_mentions(d: &Daemon, phrases: &[&str], timeout: Duration) -> Option<Vec<String>> {
    poll_until(timeout, || {
        let lines = lines_mentioning(&d.log(), phrases);
        (!lines.is_empty()).then_some(lines)
    })
}

/// `ikehub initiate POLICY`.
pub fn initiate(d: &Daemon, policy: &str) -> Result<String, String> {
    cli(d, &["initiate", policy])
}

/// `ikehub terminate POLICY`.
pub fn terminate(d: &Daemon, policy: &str) -> Result<String, String> {
    cli(d, &["terminate", policy])
}

/// Rewrites the daemon's profile file with `profile` and runs `ikehub reload`: Ok(what the
/// daemon says changed) on exit 0.
pub fn reload_with(d: &Daemon, profile: &IkeProfile) -> Result<String, String> {
    std::fs::write(d.config_path(), profile.toml(d.dir()))
        .unwrap_or_else(|e| panic!("rewriting {}: {e}", d.config_path().display()));
    cli(d, &["reload"])
}

/// How a corrected profile reached the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Reload,
    Restart,
}

/// Corrects a running daemon's profile and brings the tunnel up: first `ikehub reload` with
/// the profile file rewritten, then `bring_up` (which initiates from whichever side and waits
/// for the SAs); if reload fails or the tunnel still does not come up, the daemon is
/// restarted with the corrected profile (reload of a changed isakmp policy may not be
/// implemented yet) and `bring_up` must succeed then. Returns the daemon that runs now.
#[track_caller]
pub fn apply_fix(
    ns: &Netns,
    d: Daemon,
    fixed: &IkeProfile,
    mut bring_up: impl FnMut(&Daemon) -> Result<(), String>,
) -> (Daemon, Applied) {
    match reload_with(&d, fixed) {
        Ok(out) => {
            eprintln!("ikehub reload with the corrected profile said:\n{out}");
            match bring_up(&d) {
                Ok(()) => return (d, Applied::Reload),
                Err(e) => eprintln!(
                    "FALLBACK: reload exited 0 but the tunnel did not come up ({e}); \
                     restarting the daemon with the corrected profile"
                ),
            }
        }
        Err(e) => eprintln!("FALLBACK: ikehub reload refused ({e}); restarting the daemon"),
    }
    eprintln!(
        "----- log of daemon {} before the restart -----\n{}\n----- end -----",
        d.label(),
        d.log()
    );
    let label = format!("{}-restarted", d.label());
    let status = d.stop();
    eprintln!("daemon stopped: {status:?}");
    let d = Daemon::start(ns, &label, |dir| fixed.toml(dir));
    if let Err(e) = bring_up(&d) {
        panic!(
            "the tunnel did not come up with the corrected profile, even after a restart: {e}\n{}",
            views(&d)
        );
    }
    (d, Applied::Restart)
}

/// The pid of the daemon's `ikehub run` process (found in its namespace by its config path).
pub fn daemon_pid(ns: &Netns, d: &Daemon) -> Option<i32> {
    let config = d.config_path().to_string_lossy().into_owned();
    ns.pids().into_iter().find(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| {
                let args: Vec<String> = c
                    .split(|b| *b == 0)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                args.iter().any(|a| a == "run") && args.contains(&config)
            })
            .unwrap_or(false)
    })
}

/// SIGKILLs the daemon (a crash: no delete notifications) and waits until it is gone. The
/// guard stays usable for its log.
#[track_caller]
pub fn kill_daemon(ns: &Netns, d: &mut Daemon) {
    let pid = daemon_pid(ns, d)
        .unwrap_or_else(|| panic!("daemon {}: its process is not in {}", d.label(), ns.name()));
    // SAFETY: kill(2) on the daemon this test started (found by its own config path).
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let gone = poll_until(Duration::from_secs(10), || (!d.is_running()).then_some(()));
    assert!(gone.is_some(), "daemon {} survived SIGKILL", d.label());
}

// ----- text matching -----------------------------------------------------------------------

/// `text` without ANSI escape sequences (`ESC [ ... letter`): the daemon's text log may be
/// coloured even when written to a file.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Lower case, `-` and `_` turned into spaces, runs of spaces collapsed, ANSI colours removed.
pub fn normalize(text: &str) -> String {
    let t: String = strip_ansi(text)
        .to_lowercase()
        .chars()
        .map(|c| if c == '-' || c == '_' { ' ' } else { c })
        .collect();
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Lower-case letters and digits only: "AES-128 / SHA1" -> "aes128sha1".
pub fn squash(text: &str) -> String {
    strip_ansi(text)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn hex_only(text: &str) -> String {
    let t = text.trim().trim_start_matches("0x");
    t.chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Whether `text` mentions `phrase`, both [`normalize`]d.
pub fn mentions(text: &str, phrase: &str) -> bool {
    normalize(text).contains(&normalize(phrase))
}

pub fn mentions_any(text: &str, phrases: &[&str]) -> bool {
    phrases.iter().any(|p| mentions(text, p))
}

/// The lines of `text` that mention one of `phrases` (ANSI colours removed).
pub fn lines_mentioning(text: &str, phrases: &[&str]) -> Vec<String> {
    strip_ansi(text)
        .lines()
        .filter(|l| mentions_any(l, phrases))
        .map(str::to_string)
        .collect()
}

/// Lines of a log at WARN or ERROR (tracing's text format: the level word on the line; JSON:
/// `"level":"WARN"`), ANSI colours removed.
pub fn warn_lines(log: &str) -> Vec<String> {
    strip_ansi(log)
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .map(str::to_string)
        .collect()
}

/// Whether the log shows a panic.
pub fn log_shows_panic(log: &str) -> bool {
    log.contains("panicked at") || log.contains("RUST_BACKTRACE")
}

// ----- traffic ------------------------------------------------------------------------------

/// A ping run: which echo requests (by `icmp_seq`, from 1) got a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PingRun {
    pub transmitted: u32,
    pub received: u32,
    pub replied: BTreeSet<u32>,
    pub output: String,
}

impl PingRun {
    pub fn lost(&self) -> u32 {
        self.transmitted.saturating_sub(self.received)
    }

    /// Whether every request from `first` to `last` (inclusive) got a reply.
    pub fn replied_all(&self, first: u32, last: u32) -> bool {
        (first..=last).all(|s| self.replied.contains(&s))
    }

    /// The sequence numbers in 1..=transmitted without a reply.
    pub fn missing(&self) -> Vec<u32> {
        (1..=self.transmitted)
            .filter(|s| !self.replied.contains(s))
            .collect()
    }
}

/// `ping -i INTERVAL -c COUNT -I src dst` in `ns` (not quiet: the replied sequence numbers are
/// parsed), bounded by a deadline of `count * interval + 5` s.
#[track_caller]
pub fn ping_run(ns: &Netns, src: &str, dst: &str, count: u32, interval: f64) -> PingRun {
    let deadline = (f64::from(count) * interval + 5.0).ceil() as u32;
    let out = ns
        .command("ping")
        .args(["-n", "-W", "1", "-i", &format!("{interval}")])
        .args(["-c", &count.to_string(), "-w", &deadline.to_string()])
        .args(["-I", src, dst])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ping in {}: {e}", ns.name()));
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    parse_ping_run(&output)
}

/// Parses ping's per-reply lines ("... icmp_seq=N ttl=...") and its statistics line.
pub fn parse_ping_run(output: &str) -> PingRun {
    let mut replied = BTreeSet::new();
    for line in output.lines() {
        if !line.contains("bytes from") {
            continue;
        }
        if let Some(seq) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("icmp_seq="))
            .and_then(|s| s.parse().ok())
        {
            replied.insert(seq);
        }
    }
    let stat = |word: &str| -> Option<u32> {
        let line = output.lines().find(|l| l.contains("packets transmitted"))?;
        line.split(',')
            .find(|f| f.contains(word))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    PingRun {
        transmitted: stat("transmitted").unwrap_or(0),
        received: stat("received").unwrap_or(replied.len() as u32),
        replied,
        output: output.to_string(),
    }
}

// ----- NAT ----------------------------------------------------------------------------------

/// Source-port translation of `addr`'s UDP traffic leaving `dev` in `ns`: (500 -> `ike`) and
/// (4500 -> `natt`), addresses unchanged (nftables `snat to ADDR:PORT` in postrouting). To the
/// other side the host looks like it sits behind a NAPT: NAT-D hashes do not match, both ends
/// detect the NAT, float to 4500 and use ESP-in-UDP, and the far end sees the translated ports.
/// Only flows this host opens are translated (replies follow conntrack), so the host behind
/// the NAT must be the initiator. Removed with the namespace.
#[track_caller]
pub fn port_nat(ns: &Netns, dev: &str, addr: &str, ike: u16, natt: u16) {
    let rules = format!(
        "table ip ikehub_test_nat {{\n\
         \x20 chain post {{\n\
         \x20   type nat hook postrouting priority srcnat; policy accept;\n\
         \x20   oifname \"{dev}\" ip saddr {addr} udp sport 500 snat to {addr}:{ike}\n\
         \x20   oifname \"{dev}\" ip saddr {addr} udp sport 4500 snat to {addr}:{natt}\n\
         \x20 }}\n\
         }}\n"
    );
    let dir = TempDir::new("nft");
    let file = dir.join("nat.nft");
    std::fs::write(&file, &rules).expect("writing nft rules");
    let f = file.to_string_lossy().into_owned();
    ns.run("nft", &["-f", &f]);
}

// ----- the wire: what ikehub sent -----------------------------------------------------------

/// Wireshark expert-info severities (epan/proto.h `PI_SEVERITY_MASK` values).
pub const EXPERT_WARN: u32 = 0x0060_0000;
pub const EXPERT_ERROR: u32 = 0x0080_0000;

/// One UDP datagram on the IKE ports (500 / 4500 / translated) as tshark dissected it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SentDatagram {
    pub frame: u64,
    pub src: String,
    pub dst: String,
    pub sport: u16,
    pub dport: u16,
    /// `frame.protocols`, e.g. `eth:ethertype:ip:udp:udpencap:isakmp`.
    pub protocols: String,
    pub isakmp_exchange: Option<u8>,
    pub isakmp_version: Option<u8>,
    /// Unencrypted notify types.
    pub notify_types: Vec<u16>,
    pub esp_spi: Option<u32>,
    /// UDP length (9 = a NAT keepalive: the header and one 0xFF byte).
    pub udp_len: Option<u16>,
    /// `_ws.malformed` present.
    pub malformed: bool,
    /// (severity, message) of every expert item.
    pub expert: Vec<(u32, String)>,
}

impl SentDatagram {
    pub fn is_isakmp(&self) -> bool {
        self.isakmp_exchange.is_some()
    }

    pub fn is_keepalive(&self) -> bool {
        self.udp_len == Some(9) && self.esp_spi.is_none() && !self.is_isakmp()
    }

    /// Expert items at warning level or above.
    pub fn warnings(&self) -> Vec<&(u32, String)> {
        self.expert
            .iter()
            .filter(|(s, _)| *s >= EXPERT_WARN)
            .collect()
    }
}

/// Every UDP datagram from `src` in `pcap` (IKE, ESP-in-UDP, keepalives and anything else),
/// with tshark's dissection, malformed flag and expert items. An empty Wireshark configuration
/// is used, so the user's preferences do not matter. `extra_udp_ports` are decoded as
/// `udpencap` too (translated NAT-T ports).
pub fn decode_udp_from(pcap: &Path, src: &str, extra_udp_ports: &[u16]) -> Vec<SentDatagram> {
    const FIELDS: &[&str] = &[
        "frame.number",
        "ip.src",
        "ip.dst",
        "udp.srcport",
        "udp.dstport",
        "frame.protocols",
        "isakmp.exchangetype",
        "isakmp.version",
        "isakmp.notify.msgtype",
        "esp.spi",
        "udp.length",
        "_ws.malformed",
        "_ws.expert.severity",
        "_ws.expert.message",
    ];
    let cfg = TempDir::new("tshark-sent");
    let mut cmd = std::process::Command::new("tshark");
    cmd.env("WIRESHARK_CONFIG_DIR", cfg.path())
        .arg("-n")
        .arg("-r")
        .arg(pcap)
        .args(["-Y", &format!("udp && !icmp && ip.src == {src}")]);
    for p in extra_udp_ports {
        cmd.args(["-d", &format!("udp.port=={p},udpencap")]);
    }
    cmd.args([
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=|",
    ]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = super::output_ok(&mut cmd);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(parse_sent_line)
        .collect()
}

fn parse_sent_line(line: &str) -> SentDatagram {
    let cols: Vec<&str> = line.split('\t').collect();
    let col = |i: usize| cols.get(i).copied().unwrap_or("");
    let all = |i: usize| -> Vec<&str> { col(i).split('|').filter(|s| !s.is_empty()).collect() };
    let num = |s: &str| -> Option<u64> {
        match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => s.parse().ok(),
        }
    };
    let first = |i: usize| all(i).first().and_then(|s| num(s));
    let first_str = |i: usize| all(i).first().map(|s| s.to_string()).unwrap_or_default();
    let severities: Vec<u32> = all(12)
        .iter()
        .filter_map(|s| num(s))
        .map(|v| v as u32)
        .collect();
    let messages = all(13);
    SentDatagram {
        frame: first(0).unwrap_or(0),
        src: first_str(1),
        dst: first_str(2),
        sport: first(3).unwrap_or(0) as u16,
        dport: first(4).unwrap_or(0) as u16,
        protocols: col(5).to_string(),
        isakmp_exchange: first(6).map(|v| v as u8),
        isakmp_version: first(7).map(|v| v as u8),
        notify_types: all(8)
            .iter()
            .filter_map(|s| num(s))
            .map(|v| v as u16)
            .collect(),
        esp_spi: first(9).map(|v| v as u32),
        udp_len: first(10).map(|v| v as u16),
        malformed: !col(11).is_empty() || col(5).contains("malformed"),
        expert: severities
            .iter()
            .enumerate()
            .map(|(i, s)| (*s, messages.get(i).copied().unwrap_or("").to_string()))
            .collect(),
    }
}

//! `ike-scan` (1.9.5) probes from a namespace: main mode with chosen transforms, aggressive
//! mode, and the parsed answer.
//!
//! Findings (verified against strongSwan 5.9.8, see `tests/strongswan_harness.rs`):
//!
//! * Transforms use the "old" syntax `--trans=ENC[/KEYLEN],HASH,AUTH,GROUP` with the RFC 2409
//!   Appendix A numbers: ENC 1 DES, 5 3DES, 7 AES (key length 128/192/256); HASH 1 MD5,
//!   2 SHA1, 4 SHA2-256; AUTH 1 PSK; GROUP 1, 2, 5, 14. Several `--trans` make one proposal
//!   with several transforms. Without `--trans` ike-scan offers 8 DES/3DES transforms.
//! * ike-scan binds UDP source port 500 by default, which fails (or steals packets) when an
//!   IKE daemon of the same namespace owns port 500, so the harness uses `--sport=0` (a random
//!   port) unless told otherwise; strongSwan answers to whatever port asked.
//! * Output (without `-M`), one line per answering host, a tab after the address:
//!   `192.0.2.2\tMain Mode Handshake returned HDR=(CKY-R=…) SA=(Enc=AES KeyLength=128
//!   Hash=SHA1 Group=2:modp1024 Auth=PSK LifeType=Seconds LifeDuration=28800) VID=… (XAUTH)
//!   VID=… (Dead Peer Detection v1.0)`, or
//!   `192.0.2.2\tNotify message 14 (NO-PROPOSAL-CHOSEN) HDR=(CKY-R=…, msgid=…)`; nothing but
//!   the banner and the summary line (`0 returned handshake; 0 returned notify`) when no answer
//!   came within `--retry` × `--timeout` (with backoff).
//! * strongSwan answers an unacceptable main-mode transform with `Notify message 14
//!   (NO-PROPOSAL-CHOSEN)`, and an aggressive-mode PSK request when `aggressive = no` with
//!   `Notify message 24 (AUTHENTICATION-FAILED)` ("Aggressive Mode PSK disabled for security
//!   reasons" in its log), or with NO-PROPOSAL-CHOSEN if the transform is not acceptable either
//!   (the proposal is checked first).
//! * Aggressive mode needs `--id` (with `--idtype`, 1 = ID_IPV4_ADDR, 3 = ID_USER_FQDN default)
//!   and `--dhgroup` equal to the group of the transforms (it sizes the KE payload).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use super::Netns;
use super::strongswan::output_with_timeout;

/// One ISAKMP transform in ike-scan's `enc[/len],hash,auth,group` form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transform {
    pub enc: u16,
    pub key_len: Option<u16>,
    pub hash: u16,
    pub auth: u16,
    pub group: u16,
}

pub mod enc {
    pub const DES: u16 = 1;
    pub const TRIPLE_DES: u16 = 5;
    pub const AES: u16 = 7;
}
pub mod hash {
    pub const MD5: u16 = 1;
    pub const SHA1: u16 = 2;
    pub const SHA256: u16 = 4;
}
pub const AUTH_PSK: u16 = 1;

impl Transform {
    /// PSK transform: `Transform::psk(enc::AES, Some(128), hash::SHA1, 2)`.
    pub const fn psk(enc: u16, key_len: Option<u16>, hash: u16, group: u16) -> Transform {
        Transform {
            enc,
            key_len,
            hash,
            auth: AUTH_PSK,
            group,
        }
    }

    pub const fn aes_sha1(key_len: u16, group: u16) -> Transform {
        Transform::psk(enc::AES, Some(key_len), hash::SHA1, group)
    }

    pub const fn aes_sha256(key_len: u16, group: u16) -> Transform {
        Transform::psk(enc::AES, Some(key_len), hash::SHA256, group)
    }

    pub const fn triple_des_md5(group: u16) -> Transform {
        Transform::psk(enc::TRIPLE_DES, None, hash::MD5, group)
    }

    pub const fn triple_des_sha1(group: u16) -> Transform {
        Transform::psk(enc::TRIPLE_DES, None, hash::SHA1, group)
    }

    /// `7/128,2,1,2`
    pub fn arg(&self) -> String {
        match self.key_len {
            Some(len) => format!(
                "{}/{},{},{},{}",
                self.enc, len, self.hash, self.auth, self.group
            ),
            None => format!("{},{},{},{}", self.enc, self.hash, self.auth, self.group),
        }
    }
}

/// What came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IkeScanReply {
    /// "Main Mode Handshake returned" / "Aggressive Mode Handshake returned": the responder
    /// chose a transform (`sa`: Enc, KeyLength, Hash, Group, Auth, LifeType, LifeDuration...).
    Handshake {
        aggressive: bool,
        sa: BTreeMap<String, String>,
        vendor_ids: Vec<String>,
    },
    /// "Notify message N (NAME)".
    Notify { code: u16, name: String },
    /// No answer within ike-scan's retries.
    NoResponse,
    /// An answer line the parser does not know.
    Other(String),
}

/// The parsed answer plus ike-scan's whole output.
#[derive(Clone, Debug)]
pub struct IkeScanResult {
    pub reply: IkeScanReply,
    pub stdout: String,
    pub stderr: String,
    pub command: String,
}

impl IkeScanResult {
    pub fn is_handshake(&self) -> bool {
        matches!(self.reply, IkeScanReply::Handshake { .. })
    }

    /// The notify code, if the answer was a notify.
    pub fn notify(&self) -> Option<u16> {
        match self.reply {
            IkeScanReply::Notify { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A field of the chosen SA (`Enc`, `KeyLength`, `Hash`, `Group`, `Auth`...).
    pub fn sa(&self, key: &str) -> Option<&str> {
        match &self.reply {
            IkeScanReply::Handshake { sa, .. } => sa.get(key).map(String::as_str),
            _ => None,
        }
    }
}

pub const NOTIFY_NO_PROPOSAL_CHOSEN: u16 = 14;
pub const NOTIFY_AUTHENTICATION_FAILED: u16 = 24;

/// An ike-scan invocation, built then [`IkeScan::run`].
#[derive(Clone, Debug)]
pub struct IkeScan {
    pub target: String,
    pub transforms: Vec<Transform>,
    pub aggressive: bool,
    /// Aggressive mode identity and its type (1 ID_IPV4_ADDR, 2 FQDN, 3 USER_FQDN).
    pub id: Option<(String, u8)>,
    /// Source port; 0 = random (the default here, see the module doc).
    pub sport: u16,
    pub dport: Option<u16>,
    /// `--nat-t`: RFC 3947 non-ESP marker, default ports 4500.
    pub nat_t: bool,
    pub retry: u32,
    pub timeout_ms: u32,
    pub extra: Vec<String>,
}

impl IkeScan {
    /// Main mode against `target`, ike-scan's default transforms, 2 tries 500 ms apart.
    pub fn main_mode(target: &str) -> IkeScan {
        IkeScan {
            target: target.into(),
            transforms: Vec::new(),
            aggressive: false,
            id: None,
            sport: 0,
            dport: None,
            nat_t: false,
            retry: 2,
            timeout_ms: 500,
            extra: Vec::new(),
        }
    }

    /// Aggressive mode with identity `id` of type `id_type` (1 = ID_IPV4_ADDR).
    pub fn aggressive(target: &str, id: &str, id_type: u8) -> IkeScan {
        IkeScan {
            aggressive: true,
            id: Some((id.into(), id_type)),
            ..IkeScan::main_mode(target)
        }
    }

    pub fn transform(mut self, t: Transform) -> Self {
        self.transforms.push(t);
        self
    }

    pub fn transforms(mut self, ts: &[Transform]) -> Self {
        self.transforms.extend_from_slice(ts);
        self
    }

    pub fn sport(mut self, port: u16) -> Self {
        self.sport = port;
        self
    }

    pub fn dport(mut self, port: u16) -> Self {
        self.dport = Some(port);
        self
    }

    pub fn nat_t(mut self) -> Self {
        self.nat_t = true;
        self
    }

    pub fn retry(mut self, tries: u32, timeout_ms: u32) -> Self {
        self.retry = tries;
        self.timeout_ms = timeout_ms;
        self
    }

    pub fn arg(mut self, a: &str) -> Self {
        self.extra.push(a.into());
        self
    }

    /// The ike-scan arguments (without the program name).
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            format!("--sport={}", self.sport),
            format!("--retry={}", self.retry),
            format!("--timeout={}", self.timeout_ms),
        ];
        if let Some(p) = self.dport {
            a.push(format!("--dport={p}"));
        }
        if self.nat_t {
            a.push("--nat-t".into());
        }
        if self.aggressive {
            a.push("--aggressive".into());
            if let Some((id, ty)) = &self.id {
                a.push(format!("--id={id}"));
                a.push(format!("--idtype={ty}"));
            }
            // The KE payload is sized by --dhgroup: it must match the offered transforms.
            if let Some(t) = self.transforms.first() {
                a.push(format!("--dhgroup={}", t.group));
            }
        }
        for t in &self.transforms {
            a.push(format!("--trans={}", t.arg()));
        }
        a.extend(self.extra.iter().cloned());
        a.push(self.target.clone());
        a
    }

    /// Runs ike-scan in `ns` (bounded: retries × timeout with backoff, plus slack) and parses
    /// the answer. Panics if ike-scan cannot run or errors out.
    pub fn run(&self, ns: &Netns) -> IkeScanResult {
        let args = self.args();
        let command = format!("ike-scan {}", args.join(" "));
        let child = ns
            .command("ike-scan")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {command}: {e}"));
        // Backoff 1.5: total wait is below timeout * (1 + 1.5 + 2.25 + ...) < 3^retry * timeout.
        let bound = Duration::from_millis(
            u64::from(self.timeout_ms) * 3u64.saturating_pow(self.retry.min(6)) + 10_000,
        );
        let out = output_with_timeout(child, bound)
            .unwrap_or_else(|e| panic!("{command} in {}: {e}", ns.name()));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "{command} failed ({}):\n{stdout}{stderr}",
            out.status
        );
        IkeScanResult {
            reply: parse_ike_scan(&stdout, &self.target),
            stdout,
            stderr,
            command,
        }
    }
}

/// Parses ike-scan's (single-line, no `-M`) output for `target`.
pub fn parse_ike_scan(stdout: &str, target: &str) -> IkeScanReply {
    let prefix = format!("{target}\t");
    let Some(line) = stdout.lines().find_map(|l| l.strip_prefix(&prefix)) else {
        return IkeScanReply::NoResponse;
    };
    let line = line.trim();
    for (mode, aggressive) in [
        ("Main Mode Handshake returned", false),
        ("Aggressive Mode Handshake returned", true),
    ] {
        if let Some(rest) = line.strip_prefix(mode) {
            let sa = paren_after(rest, "SA=(")
                .map(|body| {
                    body.split_whitespace()
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let vendor_ids = rest
                .split("VID=")
                .skip(1)
                .map(|v| v.trim().to_string())
                .collect();
            return IkeScanReply::Handshake {
                aggressive,
                sa,
                vendor_ids,
            };
        }
    }
    if let Some(rest) = line.strip_prefix("Notify message ") {
        let code = rest
            .split_whitespace()
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let name = paren_after(rest, "(").unwrap_or_default().to_string();
        return IkeScanReply::Notify { code, name };
    }
    IkeScanReply::Other(line.to_string())
}

/// The text between `open` and the next `)` in `s`.
fn paren_after<'a>(s: &'a str, open: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let end = s[start..].find(')')? + start;
    Some(&s[start..end])
}

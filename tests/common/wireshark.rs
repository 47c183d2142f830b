//! Packet capture in a namespace and independent decryption with tshark.
//!
//! tshark (Wireshark 4.0 here) is given the configured SAs through an `esp_sa` UAT file and two
//! preferences in a throw-away personal configuration directory (`WIRESHARK_CONFIG_DIR`), so the
//! user's own Wireshark settings neither help nor hurt. Formats verified against tshark 4.0.17:
//!
//! `esp_sa`, one SA per line, eight quoted fields (packet-ipsec.c `esp_uat_flds`):
//! ```text
//! "IPv4","192.0.2.1","192.0.2.2","0x000008ae","AES-CBC [RFC3602]","0x0011…","HMAC-SHA-1-96 [RFC2404]","0x2233…"
//! ```
//! `preferences`:
//! ```text
//! esp.enable_encryption_decode: TRUE
//! esp.enable_authentication_check: TRUE
//! ```
//! ESP in UDP 4500 needs nothing more: Wireshark's `udpencap` dissector owns UDP port 4500 and
//! hands non-zero-SPI payloads to ESP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use super::tunnel::{Auth, Encr};
use super::{Netns, TempDir, hex, stop_child};

/// One row of Wireshark's ESP SA table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EspSaEntry {
    pub src: String,
    pub dst: String,
    pub spi: u32,
    pub encryption: Encr,
    pub encryption_key: Vec<u8>,
    pub authentication: Auth,
    pub authentication_key: Vec<u8>,
}

impl EspSaEntry {
    /// The `esp_sa` line for this SA.
    pub fn uat_line(&self) -> String {
        let key = |k: &[u8]| {
            if k.is_empty() {
                String::new()
            } else {
                format!("0x{}", hex(k))
            }
        };
        // The outer family of the SA's addresses (an IPv6 WAN, issue 11).
        let family = if self.src.contains(':') {
            "IPv6"
        } else {
            "IPv4"
        };
        format!(
            "\"{family}\",\"{}\",\"{}\",\"0x{:08x}\",\"{}\",\"{}\",\"{}\",\"{}\"",
            self.src,
            self.dst,
            self.spi,
            self.encryption.wireshark_name(),
            key(&self.encryption_key),
            self.authentication.wireshark_name(),
            key(&self.authentication_key),
        )
    }
}

impl EspSaEntry {
    /// Reads one `esp_sa` line back (the inverse of [`EspSaEntry::uat_line`]): how a
    /// test turns `ikehub run --esp-key-log` output into entries. AES-CBC key sizes share one
    /// Wireshark name and are told apart by the key's length.
    pub fn parse_uat_line(line: &str) -> Result<EspSaEntry, String> {
        let bad = |why: &str| format!("esp_sa line {line:?}: {why}");
        let fields: Vec<&str> = line
            .split(',')
            .map(|f| {
                f.strip_prefix('"')
                    .and_then(|f| f.strip_suffix('"'))
                    .ok_or_else(|| bad("a field is not quoted"))
            })
            .collect::<Result<_, _>>()?;
        let [family, src, dst, spi, encr, encr_key, auth, auth_key] = fields[..] else {
            return Err(bad("not eight fields"));
        };
        // `uat_line` writes the family from the address (IPv6 for an IPv6 WAN, issue 11).
        let v6 = src.contains(':');
        if family != if v6 { "IPv6" } else { "IPv4" } {
            return Err(bad("family does not match the addresses"));
        }
        let key = |k: &str| -> Result<Vec<u8>, String> {
            if k.is_empty() {
                return Ok(Vec::new());
            }
            let h = k.strip_prefix("0x").ok_or_else(|| bad("key without 0x"))?;
            if h.len() % 2 != 0 {
                return Err(bad("odd key length"));
            }
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).map_err(|_| bad("key is not hex")))
                .collect()
        };
        let encryption_key = key(encr_key)?;
        let authentication_key = key(auth_key)?;
        let encryption = [
            Encr::None,
            Encr::Des,
            Encr::TripleDes,
            Encr::Aes128,
            Encr::Aes192,
            Encr::Aes256,
            Encr::AesGcm128,
            Encr::AesGcm256,
        ]
        .into_iter()
        .find(|e| e.wireshark_name() == encr && e.key_len() == encryption_key.len())
        .ok_or_else(|| bad("unknown encryption or key length"))?;
        let authentication = [Auth::None, Auth::HmacMd5, Auth::HmacSha1, Auth::HmacSha256]
            .into_iter()
            .find(|a| a.wireshark_name() == auth && a.key_len() == authentication_key.len())
            .ok_or_else(|| bad("unknown authentication or key length"))?;
        let spi = spi
            .strip_prefix("0x")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| bad("SPI is not 0x-hex"))?;
        Ok(EspSaEntry {
            src: src.to_string(),
            dst: dst.to_string(),
            spi,
            encryption,
            encryption_key,
            authentication,
            authentication_key,
        })
    }
}

pub const PREFERENCES: &str =
    "esp.enable_encryption_decode: TRUE\nesp.enable_authentication_check: TRUE\n";

/// A Wireshark personal configuration directory with `esp_sa` and `preferences`.
pub struct WiresharkConfig {
    dir: TempDir,
}

impl WiresharkConfig {
    pub fn new(sas: &[EspSaEntry]) -> WiresharkConfig {
        let dir = TempDir::new("wireshark");
        let mut esp_sa = String::from("# This file is automatically generated, DO NOT MODIFY.\n");
        for sa in sas {
            esp_sa.push_str(&sa.uat_line());
            esp_sa.push('\n');
        }
        std::fs::write(dir.join("esp_sa"), esp_sa).expect("writing esp_sa");
        std::fs::write(dir.join("preferences"), PREFERENCES).expect("writing preferences");
        WiresharkConfig { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// What tshark made of one captured IPsec packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpsecPacket {
    pub frame: u64,
    /// Outer addresses.
    pub src: String,
    pub dst: String,
    /// Carried in UDP (RFC 3948); the UDP destination port.
    pub udp_dport: Option<u16>,
    pub esp_spi: Option<u32>,
    pub ah_spi: Option<u32>,
    /// ESP payload decrypted (an inner packet or a next-header value was recovered).
    pub decrypted: bool,
    /// `Some(true)` ICV checked and good, `Some(false)` checked and bad, `None` not checked.
    pub esp_icv_good: Option<bool>,
    /// The innermost IPv4 header, if it was reached (after ESP decryption or under AH).
    pub inner_src: Option<String>,
    pub inner_dst: Option<String>,
    /// IP protocol number of the innermost IPv4 packet (1 = ICMP).
    pub inner_proto: Option<u8>,
    /// ICMP types seen inside (8 echo request, 0 echo reply).
    pub icmp_type: Option<u8>,
    /// The innermost IPv6 header, if one was reached (an IPv6 packet carried in the tunnel).
    pub inner_ipv6_src: Option<String>,
    pub inner_ipv6_dst: Option<String>,
    /// Its next header (58 = ICMPv6, 6 = TCP).
    pub inner_ipv6_next: Option<u8>,
    /// ICMPv6 type inside (128 echo request, 129 echo reply).
    pub icmpv6_type: Option<u8>,
    /// TCP ports inside (source, destination).
    pub tcp_ports: Option<(u16, u16)>,
    /// The outer IPv6 packet came in fragments (a fragment header; tshark reassembled them
    /// and shows the ESP on the last one).
    pub outer_fragmented: bool,
}

const FIELDS: &[&str] = &[
    "frame.number",
    "eth.type",
    "ip.src",
    "ip.dst",
    "ip.proto",
    "udp.dstport",
    "esp.spi",
    "esp.icv_good",
    "esp.icv_bad",
    "esp.protocol",
    "esp.decrypted_data",
    "ah.spi",
    "icmp.type",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.nxt",
    "icmpv6.type",
    "tcp.srcport",
    "tcp.dstport",
    "ipv6.fraghdr.ident",
];

/// Runs `tshark -r PCAP` with `config` and returns every packet that has an ESP or AH header.
pub fn decode_ipsec(pcap: &Path, config: &WiresharkConfig) -> Vec<IpsecPacket> {
    let mut cmd = Command::new("tshark");
    cmd.env("WIRESHARK_CONFIG_DIR", config.path())
        .arg("-n")
        .arg("-r")
        .arg(pcap)
        .args(["-Y", "esp || ah", "-T", "json"]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = super::output_ok(&mut cmd);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "tshark output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    // tshark reports unreadable UAT/preference lines on stderr but still exits 0.
    for line in stderr.lines() {
        assert!(
            !(line.contains("esp_sa") || line.contains("preferences")),
            "tshark rejected the harness's Wireshark configuration: {stderr}"
        );
    }
    json.as_array()
        .map(|pkts| pkts.iter().map(parse_packet).collect())
        .unwrap_or_default()
}

fn parse_packet(p: &Value) -> IpsecPacket {
    let layers = &p["_source"]["layers"];
    let all = |f: &str| -> Vec<String> {
        layers[f]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let first = |f: &str| all(f).into_iter().next();
    let num = |s: &str| -> Option<u64> {
        match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => s.parse().ok(),
        }
    };
    let flag = |f: &str| first(f).map(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let srcs = all("ip.src");
    let dsts = all("ip.dst");
    let protos = all("ip.proto");
    let icv_good = flag("esp.icv_good");
    let icv_bad = flag("esp.icv_bad");
    // An IPv6 outer header (EtherType 0x86dd, issue 11): the first IPv6 header is the outer
    // one, every IPv4 header is inside.
    let outer_v6 = first("eth.type").and_then(|s| num(&s)) == Some(0x86dd);
    let (mut srcs6, mut dsts6) = (all("ipv6.src"), all("ipv6.dst"));
    let (src, dst) = if outer_v6 && !srcs6.is_empty() && !dsts6.is_empty() {
        (srcs6.remove(0), dsts6.remove(0))
    } else {
        (
            srcs.first().cloned().unwrap_or_default(),
            dsts.first().cloned().unwrap_or_default(),
        )
    };
    let has_inner = srcs.len() >= if outer_v6 { 1 } else { 2 };
    let mut nxts6 = all("ipv6.nxt");
    if outer_v6 && !nxts6.is_empty() {
        nxts6.remove(0);
    }
    IpsecPacket {
        frame: first("frame.number").and_then(|s| num(&s)).unwrap_or(0),
        src,
        dst,
        udp_dport: first("udp.dstport").and_then(|s| num(&s)).map(|v| v as u16),
        esp_spi: first("esp.spi").and_then(|s| num(&s)).map(|v| v as u32),
        ah_spi: first("ah.spi").and_then(|s| num(&s)).map(|v| v as u32),
        decrypted: first("esp.decrypted_data").is_some() || first("esp.protocol").is_some(),
        esp_icv_good: match (icv_good, icv_bad) {
            (Some(true), _) => Some(true),
            (_, Some(true)) => Some(false),
            _ => None,
        },
        inner_src: has_inner.then(|| srcs.last().cloned()).flatten(),
        inner_dst: has_inner.then(|| dsts.last().cloned()).flatten(),
        inner_proto: has_inner
            .then(|| protos.last().and_then(|s| num(s)).map(|v| v as u8))
            .flatten(),
        icmp_type: first("icmp.type").and_then(|s| num(&s)).map(|v| v as u8),
        inner_ipv6_src: srcs6.last().cloned(),
        inner_ipv6_dst: dsts6.last().cloned(),
        inner_ipv6_next: nxts6.last().and_then(|s| num(s)).map(|v| v as u8),
        icmpv6_type: first("icmpv6.type").and_then(|s| num(&s)).map(|v| v as u8),
        tcp_ports: first("tcp.srcport")
            .and_then(|s| num(&s))
            .zip(first("tcp.dstport").and_then(|s| num(&s)))
            .map(|(s, d)| (s as u16, d as u16)),
        outer_fragmented: first("ipv6.fraghdr.ident").is_some(),
    }
}

/// `tcpdump -i DEV -w FILE` inside a namespace, for the life of the guard. [`Capture::finish`]
/// stops it cleanly (the file is complete); drop alone kills it.
pub struct Capture {
    child: Option<Child>,
    file: PathBuf,
    _dir: TempDir,
}

impl Capture {
    /// Starts capturing IPv4 on `dev` in `ns` and returns once tcpdump is listening.
    pub fn start(ns: &Netns, dev: &str) -> Capture {
        Self::start_filtered(ns, dev, "ip")
    }

    /// Starts capturing what the tcpdump `filter` takes (`"ip6"` for an IPv6 WAN).
    pub fn start_filtered(ns: &Netns, dev: &str, filter: &str) -> Capture {
        let dir = TempDir::new("capture");
        let file = dir.join("wan.pcap");
        let mut child = ns
            .command("tcpdump")
            // --immediate-mode: without it packets wait in a TPACKET_V3 ring block and the
            // last block is lost at SIGINT (seen here: "6 received by filter, 0 captured").
            // -Z root: keep writing as root (tcpdump drops to its own user by default).
            .args([
                "--immediate-mode",
                "-n",
                "-U",
                "-s",
                "0",
                "-Z",
                "root",
                "-i",
                dev,
                "-w",
            ])
            .arg(&file)
            .arg(filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tcpdump: {e}"));
        // tcpdump says "listening on DEV" on stderr once the capture is set up.
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let cap = Capture {
            child: Some(child),
            file,
            _dir: dir,
        };
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains("listening on") => break,
                Ok(line) => seen.push(line),
                Err(_) => panic!("tcpdump on {dev} in {} did not start: {seen:?}", ns.name()),
            }
        }
        cap
    }

    /// Stops tcpdump (SIGINT flushes the file) and returns the capture's path. The file lives as
    /// long as the guard.
    pub fn finish(&mut self) -> &Path {
        if let Some(mut child) = self.child.take() {
            // Let the last packets reach the file (-U writes per packet; this is for the kernel).
            std::thread::sleep(Duration::from_millis(200));
            stop_child(&mut child, libc::SIGINT, Duration::from_secs(10));
        }
        &self.file
    }

    pub fn path(&self) -> &Path {
        &self.file
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, libc::SIGKILL, Duration::from_secs(5));
        }
    }
}

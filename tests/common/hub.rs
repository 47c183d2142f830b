//! Concentrator operations (template policies, reload, supervision, shutdown): a hub namespace
//! whose WAN is a bridge joining one veth per spoke namespace, manual policies appended to
//! generated IKE profiles, the classification `ikehub reload` prints, continuous pings, and what a
//! stopped daemon must leave behind.
//!
//! ```text
//!   netns hub                                  netns spoke i (i = 1..=N)
//!   lo: 198.51.100.1/32                        lo: its protected host(s)
//!   br0: 192.0.2.1/24 ─┬─ s1  <── veth ──>     wan0: 192.0.2.(10+i)/24
//!                      ├─ s2  <── veth ──>     ...
//!                      └─ sN
//! ```
//!
//! The kernel has no dummy interfaces: protected hosts are addresses on `lo`.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};

use super::ike::{IkeProfile, Initiate, PingRun};
use super::netns::WAN_DEV;
use super::{Netns, run_ok};

/// The hub's WAN address (on its bridge).
pub const HUB_WAN: &str = "192.0.2.1";
/// The hub's protected host.
pub const HUB_HOST: &str = "198.51.100.1";
/// The bridge in the hub namespace.
pub const BRIDGE: &str = "br0";

/// Spoke `i`'s WAN address: 192.0.2.(10+i).
pub fn spoke_wan(i: usize) -> String {
    assert!((1..=200).contains(&i), "spoke index {i} out of range");
    format!("192.0.2.{}", 10 + i)
}

/// Spoke `i`'s protected host: 203.0.113.(10+i).
pub fn spoke_host(i: usize) -> String {
    assert!((1..=200).contains(&i), "spoke index {i} out of range");
    format!("203.0.113.{}", 10 + i)
}

/// A hub namespace and `n` spoke namespaces on one bridged segment (192.0.2.0/24). The
/// protected host addresses are left to the test (each spoke's may differ).
pub struct HubSites {
    pub hub: Netns,
    /// `spokes[i - 1]` is spoke `i`, at [`spoke_wan`]`(i)`.
    pub spokes: Vec<Netns>,
}

impl HubSites {
    pub fn new(tag: &str, n: usize) -> HubSites {
        let hub = Netns::new(&format!("{tag}-hub"));
        hub.ip(&["link", "add", BRIDGE, "type", "bridge"]);
        hub.ip(&["addr", "add", &format!("{HUB_WAN}/24"), "dev", BRIDGE]);
        hub.ip(&["link", "set", BRIDGE, "up"]);
        hub.add_lo_address(&format!("{HUB_HOST}/32"));
        let mut sites = HubSites {
            hub,
            spokes: Vec::with_capacity(n),
        };
        for i in 1..=n {
            let spoke = Netns::new(&format!("{tag}-s{i}"));
            bridge_port(
                &sites.hub,
                BRIDGE,
                &format!("s{i}"),
                &spoke,
                &format!("{}/24", spoke_wan(i)),
            );
            sites.spokes.push(spoke);
        }
        sites
    }

    /// Spoke `i` (1-based).
    pub fn spoke(&self, i: usize) -> &Netns {
        &self.spokes[i - 1]
    }
}

/// "192.0.2.11:500" -> "192.0.2.11"; an address without a port is returned as is.
pub fn peer_ip(peer: &str) -> &str {
    match peer.rsplit_once(':') {
        Some((ip, port)) if port.chars().all(|c| c.is_ascii_digit()) && !ip.contains(':') => ip,
        _ => peer,
    }
}

/// An `[ipsec-transform.NAME]` for manual ESP policies: AES-CBC-128 + HMAC-SHA1, tunnel mode.
pub fn manual_transform(name: &str) -> String {
    format!(
        "\n[ipsec-transform.{name}]\nesp-encryption = \"aes-cbc-128\"\n\
         esp-authentication = \"hmac-sha1\"\nmode = \"tunnel\"\n"
    )
}

/// Deterministic 16-byte encryption and 20-byte authentication keys (hex) of the SA with `spi`:
/// both ends derive the same keys from the SPI, and every SPI gets different keys.
fn manual_keys(spi: u32) -> (String, String) {
    let seed = spi.to_be_bytes();
    let key = |len: usize, salt: u8| -> String {
        (0..len)
            .map(|i| {
                let b = seed[i % 4]
                    .wrapping_mul(31)
                    .wrapping_add(i as u8 * 7)
                    .wrapping_add(salt);
                format!("{b:02x}")
            })
            .collect()
    };
    (key(16, 0x5a), key(20, 0xa5))
}

/// One `[ipsec-policy-manual.NAME]` on interface `wan`, using `transform` (see
/// [`manual_transform`]) with keys derived from the SPIs, so the mirrored call on the other side
/// (`spi_in` and `spi_out` swapped) matches. `encapsulation` is `esp` or `udp`.
#[allow(clippy::too_many_arguments)]
pub fn manual_policy(
    name: &str,
    transform: &str,
    encapsulation: &str,
    peer: &str,
    local: &str,
    remote: &str,
    spi_in: u32,
    spi_out: u32,
) -> String {
    let (ei, ai) = manual_keys(spi_in);
    let (eo, ao) = manual_keys(spi_out);
    format!(
        "\n[ipsec-policy-manual.{name}]\ninterface = \"wan\"\npeer = \"{peer}\"\n\
         transform = \"{transform}\"\nencapsulation = \"{encapsulation}\"\n\
         protected-network = [ {{ local = \"{local}\", remote = \"{remote}\" }} ]\n\
         inbound = {{ esp-spi = {spi_in}, esp-encryption-key = \"0x{ei}\", \
         esp-authentication-key = \"0x{ai}\" }}\n\
         outbound = {{ esp-spi = {spi_out}, esp-encryption-key = \"0x{eo}\", \
         esp-authentication-key = \"0x{ao}\" }}\n"
    )
}

/// One kind's line of the reload classification.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Classification {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Parses `ikehub reload`'s classification lines,
/// `"manual policies: added A, B; removed -; changed C; unchanged D"` (and `isakmp policies:`),
/// into kind ("manual" / "isakmp") -> lists. `-` is an empty list. Other lines are ignored.
pub fn parse_classification(text: &str) -> BTreeMap<String, Classification> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some((kind, rest)) = line.split_once(" policies:") else {
            continue;
        };
        let kind = kind.split_whitespace().last().unwrap_or("").to_lowercase();
        let mut c = Classification::default();
        for part in rest.split(';') {
            let part = part.trim();
            let Some((word, names)) = part.split_once(' ') else {
                continue;
            };
            let names: Vec<String> = names
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty() && *n != "-")
                .map(str::to_string)
                .collect();
            match word {
                "added" => c.added = names,
                "removed" => c.removed = names,
                "changed" => c.changed = names,
                "unchanged" => c.unchanged = names,
                _ => {}
            }
        }
        out.insert(kind, c);
    }
    out
}

/// Starts `ping -i INTERVAL -c COUNT -I src dst` in `ns` (not quiet, so [`finish_ping`] can
/// tell which echo requests were answered), bounded by `-w count*interval+5`. The child is
/// killed by the namespace guard if the test fails before it is reaped.
pub fn spawn_ping(ns: &Netns, src: &str, dst: &str, count: u32, interval: f64) -> Child {
    let deadline = (f64::from(count) * interval + 5.0).ceil() as u32;
    ns.command("ping")
        .args(["-n", "-W", "1", "-i", &format!("{interval}")])
        .args(["-c", &count.to_string(), "-w", &deadline.to_string()])
        .args(["-I", src, dst])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run ping in {}: {e}", ns.name()))
}

/// Waits for a [`spawn_ping`] child (it ends by itself at its deadline) and parses its output.
pub fn finish_ping(child: Child) -> PingRun {
    let out = child.wait_with_output().expect("ping finishes");
    super::ike::parse_ping_run(&format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Whether `dev` exists in `ns` (`ip -n NS link show DEV` succeeds).
pub fn link_exists(ns: &Netns, dev: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns.name(), "link", "show", dev])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `ip route show table all` in `ns`.
pub fn all_routes(ns: &Netns) -> String {
    String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-n", ns.name(), "route", "show", "table", "all"])
            .stdin(Stdio::null())
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default(),
    )
    .into_owned()
}

/// The routes of `ns` (all tables) whose destination starts with `prefix` (e.g. "203.0.113.").
pub fn routes_to(ns: &Netns, prefix: &str) -> Vec<String> {
    all_routes(ns)
        .lines()
        .filter(|l| {
            let dst = l.split_whitespace().find(|w| {
                !matches!(
                    *w,
                    "local" | "broadcast" | "unicast" | "multicast" | "anycast"
                )
            });
            dst.is_some_and(|d| d.starts_with(prefix))
        })
        .map(str::to_string)
        .collect()
}

/// Makes `ns` drop every packet in and out (nftables, removed with the namespace): a peer
/// that does not answer anything any more.
pub fn drop_all_traffic(ns: &Netns) {
    let rules = "table inet ikehub_test_blackhole {\n\
                 \x20 chain in { type filter hook input priority -300; policy drop; }\n\
                 \x20 chain out { type filter hook output priority -300; policy drop; }\n\
                 }\n";
    let mut child = ns
        .command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run nft in {}: {e}", ns.name()));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("nft stdin");
        stdin
            .write_all(rules.as_bytes())
            .expect("writing nft rules");
    }
    let out = child.wait_with_output().expect("nft finishes");
    assert!(
        out.status.success(),
        "nft -f failed in {}: {}",
        ns.name(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A hub's template policy `Hub` (peer 192.0.2.0/24, protects 198.51.100.0/24 for spokes in
/// 203.0.113.0/24, responder only).
pub fn template_hub_profile(psk: &str) -> IkeProfile {
    IkeProfile {
        policy: "Hub".into(),
        local_wan: HUB_WAN.into(),
        peer: "192.0.2.0/24".into(),
        local_host: HUB_HOST.into(),
        ..IkeProfile::site_a(psk)
    }
    .protected("198.51.100.0/24", "203.0.113.0/24")
    .initiate(Initiate::Never)
}

/// Spoke `i`'s policy `ToHub`: protects `host`/32, initiates at start, one shard.
pub fn template_spoke_profile(psk: &str, i: usize, host: &str) -> IkeProfile {
    let mut p = IkeProfile {
        policy: "ToHub".into(),
        local_wan: spoke_wan(i),
        peer: HUB_WAN.into(),
        local_host: host.into(),
        ..IkeProfile::site_a(psk)
    }
    .protected(&format!("{host}/32"), "198.51.100.0/24")
    .initiate(Initiate::Permanent);
    p.shards = 1;
    p
}

/// A veth from `bridge` in `bridge_ns` (end `port`) to `other` (end `WAN_DEV`, addressed
/// `addr_cidr`), both ends up. Created directly in the two namespaces: no name clash in the
/// root namespace.
pub fn bridge_port(bridge_ns: &Netns, bridge: &str, port: &str, other: &Netns, addr_cidr: &str) {
    run_ok(
        "ip",
        [
            "link",
            "add",
            port,
            "netns",
            bridge_ns.name(),
            "type",
            "veth",
            "peer",
            "name",
            WAN_DEV,
            "netns",
            other.name(),
        ],
    );
    bridge_ns.ip(&["link", "set", port, "master", bridge]);
    bridge_ns.ip(&["link", "set", port, "up"]);
    other.ip(&["addr", "add", addr_cidr, "dev", WAN_DEV]);
    other.ip(&["link", "set", WAN_DEV, "up"]);
}

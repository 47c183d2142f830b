//! Several spokes behind one NAT address (docs/design.md: IKE demultiplexing by cookie, msg1 by
//! address and port): a hub, a NAT router doing nftables `masquerade` on its WAN side, and spokes
//! on the router's private LAN side.
//!
//! ```text
//!   netns hub                 netns nat                              netns spoke i (i = 1..=N)
//!   lo: 198.51.100.1/32       wan0: 192.0.2.2/24  (masquerade)       lo: spoke_host(i)/32
//!   wan0: 192.0.2.1/24 <────> br0: 203.0.113.1/26 ─┬─ s1 <── veth ──> wan0: 203.0.113.(10+i)/26
//!                                                  └─ sN              default via 203.0.113.1
//! ```
//!
//! Every address is a documentation address (RFC 5737): the "private" LAN is 203.0.113.0/26 and
//! spoke i protects its own network [`spoke_net`]`(i)` = 203.0.113.(64+16(i-1))/28 (host .1 of
//! it on `lo`), all inside 203.0.113.64/26 ([`SPOKE_NETS`]), which a hub template may allow. The
//! hub has no route to the LAN: everything a spoke sends reaches it from 192.0.2.2, the UDP
//! source ports rewritten by the router's connection tracking (the first flow to claim a port
//! keeps it, the next gets another), so two spokes' IKE and ESP-in-UDP arrive from one address
//! and different ports.

use std::io::Write;
use std::process::Stdio;

use super::Netns;
use super::netns::{WAN_DEV, veth_pair};
use super::run_ok;

/// The hub's WAN address.
pub const HUB_WAN: &str = "192.0.2.1";
/// The hub's protected host (inside 198.51.100.0/24).
pub const HUB_HOST: &str = "198.51.100.1";
/// The NAT router's public (WAN) address: every spoke appears at the hub from here.
pub const NAT_PUBLIC: &str = "192.0.2.2";
/// The NAT router's LAN address, the spokes' default gateway.
pub const NAT_LAN: &str = "203.0.113.1";
/// The bridge on the router's LAN side.
pub const LAN_BRIDGE: &str = "br0";
/// The block holding every spoke's protected network.
pub const SPOKE_NETS: &str = "203.0.113.64/26";

/// Spoke `i`'s private (LAN) address, 203.0.113.(10+i); also its IKE ID (strongSwan's default).
pub fn spoke_lan(i: usize) -> String {
    assert!((1..=3).contains(&i), "spoke index {i} out of range");
    format!("203.0.113.{}", 10 + i)
}

/// Spoke `i`'s protected network: 203.0.113.64/28, .80/28, .96/28.
pub fn spoke_net(i: usize) -> String {
    assert!((1..=3).contains(&i), "spoke index {i} out of range");
    format!("203.0.113.{}/28", 64 + 16 * (i - 1))
}

/// Spoke `i`'s protected host: the first address of [`spoke_net`]`(i)`.
pub fn spoke_host(i: usize) -> String {
    assert!((1..=3).contains(&i), "spoke index {i} out of range");
    format!("203.0.113.{}", 65 + 16 * (i - 1))
}

/// The nftables ruleset of the router: source NAT of everything leaving the WAN side.
const MASQUERADE: &str = "table ip ikehub_test_nat {\n\
                          \x20 chain post {\n\
                          \x20   type nat hook postrouting priority srcnat; policy accept;\n\
                          \x20   oifname \"wan0\" masquerade\n\
                          \x20 }\n\
                          }\n";

/// Hub, NAT router and `n` spokes; each namespace is removed on drop (the spokes first).
pub struct NatSites {
    /// `spokes[i - 1]` is spoke `i`.
    pub spokes: Vec<Netns>,
    pub nat: Netns,
    pub hub: Netns,
}

impl NatSites {
    pub fn new(tag: &str, n: usize) -> NatSites {
        let hub = Netns::new(&format!("{tag}-hub"));
        let nat = Netns::new(&format!("{tag}-nat"));
        veth_pair(
            &hub,
            &format!("{HUB_WAN}/24"),
            &nat,
            &format!("{NAT_PUBLIC}/24"),
            WAN_DEV,
        );
        hub.add_lo_address(&format!("{HUB_HOST}/32"));
        nat.ip(&["link", "add", LAN_BRIDGE, "type", "bridge"]);
        nat.ip(&["addr", "add", &format!("{NAT_LAN}/26"), "dev", LAN_BRIDGE]);
        nat.ip(&["link", "set", LAN_BRIDGE, "up"]);
        // Forwarding is per namespace; /proc/sys/net shows the namespace of the reader.
        nat.run("sh", &["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
        nft_load(&nat, MASQUERADE);
        let mut sites = NatSites {
            spokes: Vec::with_capacity(n),
            nat,
            hub,
        };
        for i in 1..=n {
            let spoke = Netns::new(&format!("{tag}-s{i}"));
            super::hub::bridge_port(
                &sites.nat,
                LAN_BRIDGE,
                &format!("s{i}"),
                &spoke,
                &format!("{}/26", spoke_lan(i)),
            );
            spoke.ip(&["route", "add", "default", "via", NAT_LAN]);
            spoke.add_lo_address(&format!("{}/32", spoke_host(i)));
            sites.spokes.push(spoke);
        }
        sites
    }

    /// Spoke `i` (1-based).
    pub fn spoke(&self, i: usize) -> &Netns {
        &self.spokes[i - 1]
    }

    /// The router's connection-tracking table (`conntrack -L` if installed, else the NAT
    /// view of `nft list ruleset`), for failure messages.
    pub fn nat_state(&self) -> String {
        let out = self
            .nat
            .command("conntrack")
            .args(["-L", "-p", "udp"])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
            _ => String::from_utf8_lossy(
                &self
                    .nat
                    .command("nft")
                    .args(["list", "ruleset"])
                    .stdin(Stdio::null())
                    .output()
                    .map(|o| o.stdout)
                    .unwrap_or_default(),
            )
            .into_owned(),
        }
    }
}

/// Loads an nftables ruleset into `ns` (`nft -f -`); panics with nft's message if it fails.
pub fn nft_load(ns: &Netns, rules: &str) {
    let mut child = ns
        .command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run nft in {}: {e}", ns.name()));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(rules.as_bytes())
            .unwrap_or_else(|e| panic!("writing nft rules: {e}"));
    }
    let out = child.wait_with_output().expect("nft finishes");
    assert!(
        out.status.success(),
        "nft -f failed in {}: {}\n{rules}",
        ns.name(),
        String::from_utf8_lossy(&out.stderr)
    );
}

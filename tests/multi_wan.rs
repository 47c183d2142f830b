//! A hub with two WAN interfaces on two devices (`[interface.X] device`), one spoke behind each,
//! manually keyed raw ESP to both. Each interface's raw packets leave through its own sender,
//! which is bound to its device: the shards used to send every raw ESP packet through the first
//! interface's sender, so the second spoke's packets went out on the first link and were lost.
//!
//! ```text
//!   B 192.0.2.2/25 ──wan0── 192.0.2.1/25   H   192.0.2.129/25 ──wan1── 192.0.2.130/25 C
//!   203.0.113.1 (B's /25)           198.51.100.1 (H's /24)          203.0.113.129 (C's /25)
//! ```
//! Needs root; outside CI it skips without it.

mod common;

use std::path::Path;
use std::time::Duration;

use common::netns::{Netns, veth_pair, wait_for_route};
use common::sa::{parse_rows, row};
use common::tunnel::{AES128_SHA1, Encapsulation, ManualPair, SaKeys, Transform};
use common::{Daemon, daemon::show_sa_json, ping};

const TOOLS: &[&str] = &["ip", "ping"];
const PINGS: u32 = 10;
const ROUTE_TIMEOUT: Duration = Duration::from_secs(20);
const TUN: &str = "ikehub0";

const H_HOST: &str = "198.51.100.1";
const H_NET: &str = "198.51.100.0/24";

/// One spoke of the hub: its link, addresses and keys.
struct Spoke {
    policy: &'static str,
    /// The hub's interface table and device toward this spoke.
    interface: &'static str,
    dev: &'static str,
    hub_wan: &'static str,
    wan: &'static str,
    host: &'static str,
    net: &'static str,
    /// `hub_to_spoke` / `spoke_to_hub` keys.
    keys: ManualPair,
}

fn spokes() -> [Spoke; 2] {
    let mut c = ManualPair::new(AES128_SHA1, Encapsulation::Esp);
    c.a_to_b.esp_spi = Some(3222);
    c.b_to_a.esp_spi = Some(3111);
    [
        Spoke {
            policy: "ToB",
            interface: "wan",
            dev: "wan0",
            hub_wan: "192.0.2.1",
            wan: "192.0.2.2",
            host: "203.0.113.1",
            net: "203.0.113.0/25",
            keys: ManualPair::new(AES128_SHA1, Encapsulation::Esp),
        },
        Spoke {
            policy: "ToC",
            interface: "wan2",
            dev: "wan1",
            hub_wan: "192.0.2.129",
            wan: "192.0.2.130",
            host: "203.0.113.129",
            net: "203.0.113.128/25",
            keys: c,
        },
    ]
}

#[allow(clippy::too_many_arguments)]
fn policy(
    name: &str,
    interface: &str,
    peer: &str,
    t: &Transform,
    local: &str,
    remote: &str,
    inbound: &SaKeys,
    outbound: &SaKeys,
) -> String {
    format!(
        "[ipsec-policy-manual.{name}]\ninterface = \"{interface}\"\npeer = \"{peer}\"\n\
         transform = \"{tname}\"\nencapsulation = \"esp\"\n\
         protected-network = [ {{ local = \"{local}\", remote = \"{remote}\" }} ]\n\
         inbound = {inb}\noutbound = {outb}\n\n",
        tname = t.name,
        inb = inbound.toml_inline(t),
        outb = outbound.toml_inline(t),
    )
}

fn head(dir: &Path, source: &str) -> String {
    format!(
        "[system]\ncontrol-socket = \"{}\"\nshards = 2\n\n\
         [tunnel-device]\nname = \"{TUN}\"\nmtu = 1400\nsource-address = \"{source}\"\n\
         routes = true\n\n{}\n",
        dir.join("ikehub.sock").display(),
        AES128_SHA1.toml()
    )
}

fn hub_profile(dir: &Path, spokes: &[Spoke]) -> String {
    let mut text = head(dir, H_HOST);
    for s in spokes {
        text += &format!(
            "[interface.{}]\naddress = \"{}\"\ndevice = \"{}\"\n\n",
            s.interface, s.hub_wan, s.dev
        );
        let k = &s.keys;
        text += &policy(
            s.policy,
            s.interface,
            s.wan,
            &k.transform,
            H_NET,
            s.net,
            &k.b_to_a,
            &k.a_to_b,
        );
    }
    text
}

fn spoke_profile(dir: &Path, s: &Spoke) -> String {
    let k = &s.keys;
    head(dir, s.host)
        + &format!(
            "[interface.wan]\naddress = \"{}\"\ndevice = \"{}\"\n\n",
            s.wan, s.dev
        )
        + &policy(
            "ToHub",
            "wan",
            s.hub_wan,
            &k.transform,
            s.net,
            H_NET,
            &k.a_to_b,
            &k.b_to_a,
        )
}

#[test]
fn raw_esp_leaves_through_each_interfaces_own_device() {
    if !common::require_env_or_skip(TOOLS) {
        return;
    }
    let spokes = spokes();
    let hub = Netns::new("mwan-h");
    let sites: Vec<Netns> = spokes
        .iter()
        .map(|s| {
            let ns = Netns::new(&format!("mwan-{}", s.policy.to_lowercase()));
            veth_pair(
                &hub,
                &format!("{}/25", s.hub_wan),
                &ns,
                &format!("{}/25", s.wan),
                s.dev,
            );
            ns.add_lo_address(&format!("{}/32", s.host));
            ns
        })
        .collect();
    hub.add_lo_address(&format!("{H_HOST}/32"));

    let dh = Daemon::start(&hub, "H", |dir| hub_profile(dir, &spokes));
    let daemons: Vec<Daemon> = spokes
        .iter()
        .zip(&sites)
        .map(|(s, ns)| Daemon::start(ns, s.policy, |dir| spoke_profile(dir, s)))
        .collect();
    for (s, ns) in spokes.iter().zip(&sites) {
        wait_for_route(&hub, H_HOST, s.host, TUN, ROUTE_TIMEOUT);
        wait_for_route(ns, s.host, H_HOST, TUN, ROUTE_TIMEOUT);
    }
    for (s, ns) in spokes.iter().zip(&sites) {
        let out = ping(&hub, H_HOST, s.host, PINGS);
        let back = ping(ns, s.host, H_HOST, PINGS);
        assert_eq!(
            (out, back),
            (0.0, 0.0),
            "{}: loss hub -> spoke, spoke -> hub (over {} on {})\nhub log:\n{}",
            s.policy,
            s.interface,
            s.dev,
            dh.log()
        );
    }
    // Each spoke's SAs at the hub carried exactly its own pings: every request and reply
    // one way, nothing of the other spoke's.
    let rows = parse_rows(&show_sa_json(&dh));
    for s in &spokes {
        for dir in ["IN", "OUT"] {
            let r = row(&rows, s.policy, dir);
            assert_eq!(
                r.packets,
                u64::from(2 * PINGS),
                "{} {dir}: {r:#?}",
                s.policy
            );
            assert_eq!((r.icv_failures, r.replay_drops), (0, 0), "{r:#?}");
        }
    }
    for d in &daemons {
        let rows = parse_rows(&show_sa_json(d));
        for dir in ["IN", "OUT"] {
            let r = row(&rows, "ToHub", dir);
            assert_eq!(
                r.packets,
                u64::from(2 * PINGS),
                "{} {dir}: {r:#?}",
                d.label()
            );
        }
    }
}

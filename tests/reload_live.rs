//! A reload under live tunnels (issue 10, acceptance: "reload with 100 live tunnels losing
//! nothing"): the hub holds 100 `ikehub loadgen` tunnels (template policy `Swarm`, spokes on
//! 127.1.0.x in the hub's own namespace, against the hub's second interface, 127.0.0.1) and one real `ikehub run` spoke (template policy `Hub`,
//! its own namespace on the hub's bridge, tests/common/hub.rs) through which a ping runs, while
//! the hub reloads with a third policy, `Other`, changed (its pre-shared key). The ping loses
//! nothing, the reload reply names `Other` alone as changed and says how long it took, and the
//! 100 swarm tunnels are the very same ones after it (same ISAKMP cookies, same SPIs).
//!
//! ```text
//!   netns hub: br0 192.0.2.1/24, lo 198.51.100.1 + the swarm on 127.1.0.1-100 -> 127.0.0.1
//!   netns spoke 1: wan0 192.0.2.11, lo 203.0.113.11 (ToHub, permanent)
//! ```
//!
//! Needs root (namespaces, TUN devices), ip, ping.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::hub::{
    HUB_HOST, HUB_WAN, HubSites, finish_ping, parse_classification, peer_ip, spawn_ping,
    spoke_host, template_spoke_profile,
};
use common::ike::{
    CLI_TIMEOUT, IkeProfile, Initiate, TUN, isakmp_rows, peer_rows, sa_rows, views, wait_child_sas,
};
use common::strongswan::output_with_timeout;
use common::swarm::{HUB_NET, PSK, SWARM_100, count, interrupt, spawn_loadgen};
use common::{Daemon, TempDir, poll_until, require_root_or_skip};

const N: usize = 100;
const SWARM: &str = "Swarm";
const OTHER: &str = "Other";
/// Bound on the hub showing every swarm tunnel (100 handshakes, busy shared machine).
const ALL_UP_TIMEOUT: Duration = Duration::from_secs(120);
/// Pings through the real spoke's tunnel: 200 at 50 ms, the reload in the middle.
const PINGS: u32 = 200;
const PING_INTERVAL: f64 = 0.05;

/// The hub: `Hub` (template for the real spoke, 203.0.113.0/25), `Swarm` (template for the
/// loadgen spokes, 127.1.0.0/16) and `Other` (one absent peer, 203.0.113.200), whose PSK is the
/// only thing `other_psk` changes.
fn hub_profile(dir: &Path, other_psk: &str) -> String {
    let hub = IkeProfile {
        policy: "Hub".into(),
        local_wan: HUB_WAN.into(),
        peer: "192.0.2.0/24".into(),
        local_host: HUB_HOST.into(),
        shards: 1,
        ..IkeProfile::site_a(PSK)
    }
    .protected(HUB_NET, "203.0.113.0/25")
    .initiate(Initiate::Never);
    // No routes from the daemon: a route for the swarm's 127.1.0.0/16 into the TUN device
    // makes those addresses unbindable in the namespace. The test routes the real spoke's
    // network itself.
    let mut s = hub.toml(dir).replace("routes = true", "routes = false");
    s.push_str(&format!(
        "\n[interface.lo]\naddress = \"127.0.0.1\"\n\
         \n[ipsec-policy-isakmp.{SWARM}]\ninterface = \"lo\"\npeer = \"127.1.0.0/16\"\n\
         preshared-key = \"{PSK}\"\nisakmp-transform = [\"P1\"]\nipsec-transform = [\"P2\"]\n\
         initiate = \"never\"\nnat-traversal = true\n\
         protected-network = [ {{ local = \"{HUB_NET}\", remote = \"127.1.0.0/16\" }} ]\n\
         \n[ipsec-policy-isakmp.{OTHER}]\ninterface = \"wan\"\npeer = \"203.0.113.250\"\n\
         preshared-key = \"{other_psk}\"\nisakmp-transform = [\"P1\"]\n\
         ipsec-transform = [\"P2\"]\ninitiate = \"never\"\n\
         protected-network = [ {{ local = \"{HUB_NET}\", remote = \"203.0.113.200\" }} ]\n"
    ));
    s
}

/// The swarm's tunnels as the hub shows them: ISAKMP cookies and ESP SPIs of policy `Swarm`.
fn swarm_state(hub: &Daemon) -> (BTreeSet<String>, BTreeSet<u32>) {
    let cookies = isakmp_rows(hub)
        .into_iter()
        .filter(|r| r.policy == SWARM)
        .map(|r| {
            format!(
                "{} {}/{}",
                r.peer,
                r.initiator_cookie.unwrap_or_default(),
                r.responder_cookie.unwrap_or_default()
            )
        })
        .collect();
    // `show sa` names a template's SAs by the spoke: told apart by peer address.
    let spis = sa_rows(hub)
        .into_iter()
        .filter(|r| r.sa_type == "ISAKMP" && peer_ip(&r.peer).starts_with("127.1."))
        .filter_map(|r| r.esp_spi)
        .collect();
    (cookies, spis)
}

fn swarm_tunnels(hub: &Daemon) -> usize {
    peer_rows(hub)
        .iter()
        .filter(|r| r.policy == SWARM && r.child_sas.unwrap_or(0) > 0)
        .count()
}

#[test]
fn reload_changing_one_policy_loses_nothing_on_100_live_tunnels_and_a_real_spoke() {
    if !require_root_or_skip() {
        return;
    }
    let sites = HubSites::new("rl", 1);
    let host = spoke_host(1);
    sites.spoke(1).add_lo_address(&format!("{host}/32"));
    let hub = Daemon::start(&sites.hub, "hub", |dir| {
        hub_profile(dir, "other key before")
    });
    sites.hub.ip(&[
        "route",
        "add",
        "203.0.113.0/25",
        "dev",
        TUN,
        "src",
        HUB_HOST,
    ]);
    let spoke_profile = template_spoke_profile(PSK, 1, &host);
    let spoke = Daemon::start(sites.spoke(1), "spoke1", |dir| spoke_profile.toml(dir));
    wait_child_sas(&spoke, "ToHub", Duration::from_secs(30));

    let dir = TempDir::new("rl-psk");
    let swarm = spawn_loadgen(&sites.hub, &dir, &SWARM_100);
    let up = poll_until(ALL_UP_TIMEOUT, || (swarm_tunnels(&hub) == N).then_some(()));
    if up.is_none() {
        let shown = swarm_tunnels(&hub);
        let (_, r) = interrupt(swarm);
        panic!(
            "the hub shows {shown}/{N} swarm tunnels; swarm report: {r:#}\n{}",
            views(&hub)
        );
    }
    let before = swarm_state(&hub);
    assert_eq!(before.0.len(), N, "one ISAKMP SA per swarm spoke");
    assert_eq!(before.1.len(), 2 * N, "one SA pair per swarm spoke");

    // The ping runs 10 s; the reload comes 3 s in.
    let ping = spawn_ping(sites.spoke(1), &host, HUB_HOST, PINGS, PING_INTERVAL);
    std::thread::sleep(Duration::from_secs(3));
    std::fs::write(hub.config_path(), hub_profile(hub.dir(), "other key after"))
        .expect("rewrite the hub profile");
    let child = hub
        .cli(&["reload"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ikehub reload runs");
    let out = output_with_timeout(child, CLI_TIMEOUT).expect("ikehub reload finishes");
    let reply = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let pinged = finish_ping(ping);
    assert!(out.status.success(), "reload refused:\n{reply}");
    eprintln!("reload reply:\n{reply}");

    let c = parse_classification(&reply);
    let isakmp = c.get("isakmp").expect("isakmp classification line");
    assert_eq!(isakmp.changed, [OTHER], "{reply}");
    assert!(
        isakmp.added.is_empty() && isakmp.removed.is_empty(),
        "{reply}"
    );
    assert_eq!(isakmp.unchanged, ["Hub", SWARM], "{reply}");
    let took = reply
        .lines()
        .find_map(|l| l.strip_prefix("reload took ")?.strip_suffix(" ms"))
        .and_then(|ms| ms.parse::<f64>().ok());
    assert!(
        took.is_some(),
        "the reply says how long the reload took:\n{reply}"
    );

    assert_eq!(pinged.transmitted, PINGS, "{}", pinged.output);
    assert_eq!(
        pinged.lost(),
        0,
        "pings lost through the untouched real spoke:\n{}",
        pinged.output
    );
    // The pings went through the tunnel: the hub's inbound SA of the real spoke counted them.
    let through: u64 = sa_rows(&hub)
        .iter()
        .filter(|r| r.direction == "IN" && peer_ip(&r.peer) == "192.0.2.11")
        .map(|r| r.packets)
        .sum();
    assert!(
        through >= u64::from(PINGS),
        "{through} packets on the real spoke's inbound SA for {PINGS} pings"
    );
    let after = swarm_state(&hub);
    assert_eq!(
        after, before,
        "the swarm's tunnels are the same ones after the reload"
    );
    assert_eq!(swarm_tunnels(&hub), N);

    let (code, r) = interrupt(swarm);
    assert_eq!(code, Some(0), "{r:#}");
    for (key, want) in [
        ("up", N as u64),
        ("closed_by_peer", 0),
        ("deleted", N as u64),
    ] {
        assert_eq!(count(&r, key), want, "{key}: {r:#}");
    }
    drop(spoke);
}

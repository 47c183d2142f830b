//! Network reservations (docs/design.md): networks are reserved from load time, so a spoke of a
//! template policy cannot take the networks of a manual policy, nor those of a single-peer IKE
//! policy whose tunnel is down.
//!
//! ```text
//!   hub 192.0.2.1 (protects 198.51.100.0/24)
//!     ipsec-policy-isakmp.Hub      template, peer 192.0.2.0/24, 198.51.100.0/24 <-> 203.0.113.0/24
//!     ipsec-policy-manual.ToBerne  peer 192.0.2.11 (spoke 1), 198.51.100.0/24 <-> 203.0.113.8/29
//!     ipsec-policy-isakmp.HQ       peer 192.0.2.12 (nothing runs there: its tunnel is down),
//!                                  198.51.100.0/24 <-> 203.0.113.16/29
//!   spoke 3 (192.0.2.13), a Hub spoke with the PSK, proposes 203.0.113.11/32 (ToBerne's)
//!   spoke 4 (192.0.2.14), a Hub spoke with the PSK, proposes 203.0.113.17/32 (HQ's)
//! ```
//! Both proposals lie inside the template and are more specific than the owners' pairs: before
//! the fix they were installed and took the owners' cleartext (most-specific-wins SPD).
//!
//! Needs root, ip, ping. Outside CI the test skips (with a message) when those are missing;
//! under `CI=true` it fails.

mod common;

use std::time::Duration;

use common::hub::{
    HUB_HOST, HUB_WAN, HubSites, finish_ping, manual_policy, manual_transform, peer_ip, spawn_ping,
    spoke_wan,
};
use common::ike::{
    IkeProfile, Initiate, cli, log_shows_panic, p1_aes128_sha1_g2, p2_aes128_sha1, peer_rows,
    sa_rows, views, wait_log_mentions,
};
use common::{Daemon, ping, poll_until};

const PSK: &str = "ikehub isolation claims pre-shared key 5d21e8";
const HQ_PSK: &str = "ikehub isolation HQ pre-shared key 0b9f47";
const MAN_T: &str = "MAN";
/// ToBerne's remote network and the host in it (on spoke 1's loopback).
const BERNE_NET: &str = "203.0.113.8/29";
const BERNE_HOST: &str = "203.0.113.11";
const HQ_NET: &str = "203.0.113.16/29";
const HQ_HOST: &str = "203.0.113.17";

fn hub_profile(dir: &std::path::Path) -> String {
    hub_profile_with(dir, true)
}

/// The hub's profile; `owners`: with ToBerne and HQ (else the template alone).
fn hub_profile_with(dir: &std::path::Path, owners: bool) -> String {
    let mut s = IkeProfile {
        policy: "Hub".into(),
        local_wan: HUB_WAN.into(),
        peer: "192.0.2.0/24".into(),
        local_host: HUB_HOST.into(),
        ..IkeProfile::site_a(PSK)
    }
    .protected("198.51.100.0/24", "203.0.113.0/24")
    .initiate(Initiate::Never)
    .toml(dir);
    if !owners {
        return s;
    }
    s.push_str(&manual_transform(MAN_T));
    s.push_str(&manual_policy(
        "ToBerne",
        MAN_T,
        "esp",
        &spoke_wan(1),
        "198.51.100.0/24",
        BERNE_NET,
        7101,
        7102,
    ));
    s.push_str(&format!(
        "\n[ipsec-policy-isakmp.HQ]\ninterface = \"wan\"\npeer = \"{}\"\n\
         preshared-key = \"{HQ_PSK}\"\nisakmp-transform = [\"{}\"]\nipsec-transform = [\"{}\"]\n\
         initiate = \"never\"\n\
         protected-network = [ {{ local = \"198.51.100.0/24\", remote = \"{HQ_NET}\" }} ]\n",
        spoke_wan(2),
        p1_aes128_sha1_g2().name,
        p2_aes128_sha1().name,
    ));
    s
}

/// Spoke 1: the manual ToBerne tunnel's far end (its IKE policy is unused).
fn berne_profile(dir: &std::path::Path) -> String {
    let mut s = IkeProfile {
        policy: "Unused".into(),
        local_wan: spoke_wan(1),
        peer: "192.0.2.250".into(),
        local_host: BERNE_HOST.into(),
        ..IkeProfile::site_a(PSK)
    }
    .protected("203.0.113.250/32", "198.51.100.250/32")
    .initiate(Initiate::Never)
    .toml(dir);
    s.push_str(&manual_transform(MAN_T));
    s.push_str(&manual_policy(
        "ToHub",
        MAN_T,
        "esp",
        HUB_WAN,
        BERNE_NET,
        "198.51.100.0/24",
        7102,
        7101,
    ));
    s
}

/// A Hub spoke (it has the template's PSK) that proposes `host`/32 in quick mode.
fn thief_profile(i: usize, host: &str) -> IkeProfile {
    let mut p = IkeProfile {
        policy: "ToHub".into(),
        local_wan: spoke_wan(i),
        peer: HUB_WAN.into(),
        local_host: host.into(),
        ..IkeProfile::site_a(PSK)
    }
    .protected(&format!("{host}/32"), "198.51.100.0/24")
    .initiate(Initiate::Permanent);
    p.shards = 1;
    p
}

#[test]
fn template_spokes_cannot_take_reserved_networks() {
    if !common::require_env_or_skip(&["ip", "ping"]) {
        return;
    }
    let sites = HubSites::new("claims", 4);
    sites.spoke(1).add_lo_address(&format!("{BERNE_HOST}/32"));
    // The thieves answer for the stolen hosts too: before the fix, pings to them went
    // through the thieves' tunnels and came back as if nothing happened.
    sites.spoke(3).add_lo_address(&format!("{BERNE_HOST}/32"));
    sites.spoke(4).add_lo_address(&format!("{HQ_HOST}/32"));
    let mut hub = Daemon::start(&sites.hub, "hub", hub_profile);
    let mut berne = Daemon::start(sites.spoke(1), "berne", berne_profile);

    // Before: the manual tunnel carries traffic.
    let before = poll_until(Duration::from_secs(20), || {
        (ping(&sites.hub, HUB_HOST, BERNE_HOST, 2) == 0.0).then_some(())
    });
    assert!(
        before.is_some(),
        "the ToBerne manual tunnel does not carry traffic:\n{}",
        views(&hub)
    );
    // During: a continuous ping through ToBerne while the thieves come and keep retrying.
    let during = spawn_ping(&sites.hub, HUB_HOST, BERNE_HOST, 60, 0.2);

    let p3 = thief_profile(3, BERNE_HOST);
    let p4 = thief_profile(4, HQ_HOST);
    let mut thief3 = Daemon::start(sites.spoke(3), "thief3", |dir| p3.toml(dir));
    let mut thief4 = Daemon::start(sites.spoke(4), "thief4", |dir| p4.toml(dir));

    for (who, owner) in [
        (3, "reserved by ipsec-policy-manual.ToBerne"),
        (4, "reserved by ipsec-policy-isakmp.HQ"),
    ] {
        let logged =
            wait_log_mentions(&hub, &[owner], Duration::from_secs(30)).unwrap_or_else(|| {
                panic!(
                    "the hub did not log spoke {who}'s refusal ({owner}):\n{}\nhub log:\n{}",
                    views(&hub),
                    hub.log()
                )
            });
        eprintln!("hub logged for spoke {who}: {logged:#?}");
        assert!(
            logged.iter().any(|l| l.contains("WARN")),
            "the refusal is not logged at WARN: {logged:#?}"
        );
        let row = poll_until(Duration::from_secs(30), || {
            peer_rows(&hub).into_iter().find(|r| {
                peer_ip(&r.peer) == spoke_wan(who)
                    && r.last_error.as_deref().is_some_and(|e| e.contains(owner))
            })
        })
        .unwrap_or_else(|| {
            panic!(
                "show peers has no row of {} naming the owner:\n{}",
                spoke_wan(who),
                views(&hub)
            )
        });
        eprintln!("show peers row of spoke {who}: {row:?}");
    }
    // For a while (the thieves keep retrying): the hub never holds an SA of theirs.
    let watch_until = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < watch_until {
        let rows = sa_rows(&hub);
        let theirs: Vec<_> = rows
            .iter()
            .filter(|r| [spoke_wan(3), spoke_wan(4)].contains(&peer_ip(&r.peer).to_string()))
            .collect();
        assert!(
            theirs.is_empty(),
            "the hub installed SAs of a refused spoke: {theirs:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The thieves' traffic goes nowhere.
    assert_eq!(
        ping(sites.spoke(4), HQ_HOST, HUB_HOST, 3),
        100.0,
        "spoke 4's traffic for HQ's network got through:\n{}",
        views(&hub)
    );

    // The owner's traffic was never disturbed, and is fine after.
    let run = finish_ping(during);
    assert!(run.transmitted >= 30, "ping ran too short: {}", run.output);
    assert_eq!(
        run.lost(),
        0,
        "ToBerne lost echo requests {:?} while the spokes tried its networks:\n{}",
        run.missing(),
        views(&hub)
    );
    assert_eq!(
        ping(&sites.hub, HUB_HOST, BERNE_HOST, 5),
        0.0,
        "ToBerne broken after the attempts:\n{}",
        views(&hub)
    );
    let manual_in = berne_packets_in(&berne);
    assert!(
        manual_in >= 30,
        "the pings did not go through spoke 1's manual SA ({manual_in} packets in)"
    );

    for d in [&mut hub, &mut berne, &mut thief3, &mut thief4] {
        assert!(d.is_running(), "daemon {} died:\n{}", d.label(), d.log());
        assert!(
            !log_shows_panic(&d.log()),
            "daemon {} logged a panic:\n{}",
            d.label(),
            d.log()
        );
    }
}

/// The packets spoke 1's manual inbound SA has received.
fn berne_packets_in(berne: &Daemon) -> u64 {
    sa_rows(berne)
        .into_iter()
        .find(|r| r.sa_type == "MANUAL" && r.direction == "IN")
        .map(|r| r.packets)
        .unwrap_or(0)
}

/// A spoke holds a network; a reload adds the manual policy that owns it: the reservation wins,
/// the spoke's SAs go, its new attempts are refused, and the new owner's tunnel carries the
/// traffic (before the fix the spoke kept its more specific SAs and the cleartext).
#[test]
fn a_reload_reserving_a_spokes_network_takes_it_back() {
    if !common::require_env_or_skip(&["ip", "ping"]) {
        return;
    }
    let sites = HubSites::new("reclaim", 3);
    sites.spoke(1).add_lo_address(&format!("{BERNE_HOST}/32"));
    sites.spoke(3).add_lo_address(&format!("{BERNE_HOST}/32"));
    let mut hub = Daemon::start(&sites.hub, "hub", |dir| hub_profile_with(dir, false));
    let p3 = thief_profile(3, BERNE_HOST);
    let mut spoke3 = Daemon::start(sites.spoke(3), "spoke3", |dir| p3.toml(dir));
    let of_3 = |hub: &Daemon| -> usize {
        sa_rows(hub)
            .iter()
            .filter(|r| r.sa_type == "ISAKMP" && peer_ip(&r.peer) == spoke_wan(3))
            .count()
    };
    // Nobody owns 203.0.113.8/29 yet: spoke 3 may have 203.0.113.11/32.
    poll_until(Duration::from_secs(30), || (of_3(&hub) == 2).then_some(()))
        .unwrap_or_else(|| panic!("spoke 3 did not come up:\n{}", views(&hub)));
    assert_eq!(
        ping(sites.spoke(3), BERNE_HOST, HUB_HOST, 3),
        0.0,
        "spoke 3's tunnel does not carry traffic:\n{}",
        views(&hub)
    );
    let mut berne = Daemon::start(sites.spoke(1), "berne", berne_profile);

    // The reload adds ToBerne (and HQ): `check` passes, and the spoke loses the network.
    std::fs::write(hub.config_path(), hub_profile_with(hub.dir(), true)).expect("profile");
    let said = cli(&hub, &["reload"]).unwrap_or_else(|e| panic!("reload refused: {e}"));
    eprintln!("reload: {said}");
    poll_until(Duration::from_secs(30), || (of_3(&hub) == 0).then_some(())).unwrap_or_else(|| {
        panic!(
            "the hub kept spoke 3's SAs for ToBerne's network:\n{}",
            views(&hub)
        )
    });
    let logged = wait_log_mentions(
        &hub,
        &["reserved by ipsec-policy-manual.ToBerne"],
        Duration::from_secs(30),
    )
    .unwrap_or_else(|| panic!("spoke 3's new attempt was not refused:\n{}", hub.log()));
    eprintln!("hub logged: {logged:#?}");

    // ToBerne carries the hub's traffic for the network now, and spoke 3 never gets it back.
    poll_until(Duration::from_secs(20), || {
        (ping(&sites.hub, HUB_HOST, BERNE_HOST, 2) == 0.0).then_some(())
    })
    .unwrap_or_else(|| panic!("ToBerne does not carry traffic:\n{}", views(&hub)));
    let before = berne_packets_in(&berne);
    assert_eq!(ping(&sites.hub, HUB_HOST, BERNE_HOST, 10), 0.0);
    let after = berne_packets_in(&berne);
    assert!(
        after >= before + 10,
        "the pings did not go through ToBerne ({before} -> {after} packets in)"
    );
    assert_eq!(of_3(&hub), 0, "spoke 3 came back:\n{}", views(&hub));

    for d in [&mut hub, &mut berne, &mut spoke3] {
        assert!(d.is_running(), "daemon {} died:\n{}", d.label(), d.log());
        assert!(!log_shows_panic(&d.log()), "{} panicked", d.label());
    }
}

//! A hub under a flood of forged main-mode message 1s (the flood figure of the half-open bounds):
//! while 20 spokes' tunnels carry traffic, a forger on the hub's segment sends message 1s (a real
//! offer the hub's template accepts, so each costs the hub a half-open session) from many forged
//! source addresses inside the template's block. No tunnel may be lost, a fresh spoke must come up
//! during the flood, and the hub's memory must stay bounded (half-open state is bounded and the
//! oldest half-open exchange is evicted, docs/design.md).
//!
//! The flood is bounded in rate and time; defaults keep the suite quick, and
//! `IKEHUB_FLOOD_RATE` (message 1s per second), `IKEHUB_FLOOD_SECONDS` and
//! `IKEHUB_FLOOD_SOURCES` (distinct forged addresses, at most 150) make it larger for the
//! figure in a closing note (`cargo test --release --test flood -- --nocapture`).
//!
//! Needs root, ip, ping, python3. Outside CI the test skips (with a message) when those are
//! missing; under `CI=true` it fails.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::hub::{
    HUB_HOST, HUB_WAN, HubSites, finish_ping, peer_ip, spawn_ping, spoke_host, spoke_wan,
};
use common::ike::{IkeProfile, log_shows_panic, peer_rows, views, wait_child_sas};
use common::{Daemon, poll_until};

const PSK: &str = "ikehub flood pre-shared key 7a3e";
const SPOKE_POLICY: &str = "ToHub";
/// Spokes up before the flood, and one more that starts during it.
const SPOKES: usize = 20;
const FRESH: usize = SPOKES + 1;
const UP_TIMEOUT: Duration = Duration::from_secs(90);

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn hub_profile() -> IkeProfile {
    common::hub::template_hub_profile(PSK)
}

fn spoke_profile(i: usize) -> IkeProfile {
    common::hub::template_spoke_profile(PSK, i, &spoke_host(i))
}

/// The hub daemon's resident memory in KiB.
fn rss_kib(sites: &HubSites) -> u64 {
    sites
        .hub
        .pids()
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter(|s| s.contains("Name:\tikehub"))
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .sum()
}

#[test]
fn hub_keeps_its_tunnels_and_admits_a_new_spoke_under_a_message_1_flood() {
    if !common::require_env_or_skip(&["ip", "ping", "python3"]) {
        return;
    }
    let rate = env_or("IKEHUB_FLOOD_RATE", 1000).max(1);
    let seconds = env_or("IKEHUB_FLOOD_SECONDS", 10).clamp(1, 120);
    let sources = env_or("IKEHUB_FLOOD_SOURCES", 100).clamp(1, 150);
    let sites = HubSites::new("flood", FRESH);
    for i in 1..=FRESH {
        sites
            .spoke(i)
            .add_lo_address(&format!("{}/32", spoke_host(i)));
    }
    let mut hub = Daemon::start(&sites.hub, "hub", |dir| hub_profile().toml(dir));
    let spokes: Vec<Daemon> = (1..=SPOKES)
        .map(|i| {
            let p = spoke_profile(i);
            Daemon::spawn(sites.spoke(i), &format!("spoke{i}"), move |dir| p.toml(dir))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(Daemon::wait_ready)
        .collect();
    let up = |expected: &BTreeSet<String>| {
        let rows = peer_rows(&hub);
        let now: BTreeSet<String> = rows
            .iter()
            .filter(|r| r.state == "up")
            .map(|r| peer_ip(&r.peer).to_string())
            .collect();
        expected.is_subset(&now)
    };
    let first: BTreeSet<String> = (1..=SPOKES).map(spoke_wan).collect();
    assert!(
        poll_until(UP_TIMEOUT, || up(&first).then_some(())).is_some(),
        "not all {SPOKES} spokes up before the flood:\n{}",
        views(&hub)
    );
    for s in &spokes {
        wait_child_sas(s, SPOKE_POLICY, Duration::from_secs(20));
    }
    let rss_before = rss_kib(&sites);

    // Traffic through every tunnel for the whole flood.
    let interval = 0.5;
    let count = ((f64::from(seconds) + 4.0) / interval) as u32;
    let pingers: Vec<_> = (1..=SPOKES)
        .map(|i| spawn_ping(sites.spoke(i), &spoke_host(i), HUB_HOST, count, interval))
        .collect();

    // The forger sits on spoke 1's segment (the bridge) and forges 192.0.2.(100 + k).
    let msg = common::forge::main_mode_1(&spoke_profile(1), hub.dir());
    let forger = common::forge::spawn_flood(
        sites.spoke(1),
        HUB_WAN,
        &msg,
        (rate, seconds),
        ([192, 0, 2], 100, sources),
    );

    // A fresh spoke starts once the flood is on.
    std::thread::sleep(Duration::from_secs(1));
    let fresh_started = Instant::now();
    let fresh_profile = spoke_profile(FRESH);
    let fresh = Daemon::start(sites.spoke(FRESH), "fresh", |dir| fresh_profile.toml(dir));
    let fresh_set: BTreeSet<String> = [spoke_wan(FRESH)].into();
    let fresh_up = poll_until(UP_TIMEOUT, || {
        up(&fresh_set).then(|| fresh_started.elapsed())
    });
    let rss_during = rss_kib(&sites);

    let sent = common::forge::finish(forger);
    let runs: Vec<_> = pingers.into_iter().map(finish_ping).collect();
    let rss_after = rss_kib(&sites);
    let counters = common::ike::show_json(&hub, "counters").unwrap_or_default();
    let ike = counters
        .as_array()
        .and_then(|a| a.iter().find_map(|e| e.get("ike").cloned()))
        .unwrap_or_default();
    let lost_tunnels: Vec<usize> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.received == 0 || r.lost() > 2)
        .map(|(i, _)| i + 1)
        .collect();
    let lost_pings: u32 = runs.iter().map(|r| r.lost()).sum();
    println!(
        "flood: {sent} forged message 1s in {seconds} s (asked {rate}/s) from {sources} \
         addresses; tunnels with loss: {lost_tunnels:?} ({lost_pings} pings lost of {}); hub RSS \
         {rss_before} KiB before, {rss_during} KiB during, {rss_after} KiB after; fresh spoke \
         up after {fresh_up:?}; hub IKE counters {ike}",
        runs.iter().map(|r| r.transmitted).sum::<u32>()
    );
    for l in hub.log().lines().filter(|l| l.contains("WARN")) {
        println!("hub: {l}");
    }
    assert!(
        fresh_up.is_some(),
        "a fresh spoke did not come up during the flood:\n{}",
        views(&hub)
    );
    assert!(
        lost_tunnels.is_empty(),
        "tunnels stopped carrying traffic during the flood: {lost_tunnels:?}"
    );
    assert!(
        sent >= u64::from(rate * seconds) / 2,
        "the forger sent only {sent} datagrams: the flood did not happen"
    );
    assert!(
        ike["peers_started"].as_u64().unwrap_or(0) > 0
            && ike["half_open_evicted"].as_u64().is_some(),
        "hub IKE counters: {ike}"
    );
    // Past the per-policy bound (1,024 half-open exchanges), the oldest were evicted.
    if sent > 1100 {
        assert!(
            ike["half_open_evicted"].as_u64().unwrap_or(0) > 0,
            "{sent} forged exchanges and nothing evicted: {ike}"
        );
    }
    // Half-open state is bounded (2,048 exchanges of a few KiB): the flood must not grow the
    // hub by more than that, whatever its length.
    assert!(
        rss_after.saturating_sub(rss_before) < 200 * 1024,
        "hub RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert!(hub.is_running(), "hub died");
    assert!(!log_shows_panic(&hub.log()), "hub panicked");
    drop(fresh);
}

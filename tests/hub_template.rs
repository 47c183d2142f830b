//! Template policies (acceptance: "a hub with a template policy and 20 spokes ...
//! all up, ping through each"; "Two spokes claiming the same remote network: the later one is
//! refused and logged").
//!
//! The hub (192.0.2.1 on a bridge joining one veth per spoke, protects 198.51.100.0/24) runs
//! ikehub with ONE `ipsec-policy-isakmp` `Hub` whose `peer = "192.0.2.0/24"` and
//! `initiate = "never"`, with one IKE worker in the 20-spoke test (its peer actors on the
//! router's thread). Each spoke i (192.0.2.(10+i)) runs its own ikehub daemon (`shards = 1`,
//! `initiate = "permanent"`) protecting only its own host 203.0.113.(10+i)/32, which is what it
//! proposes in quick mode (narrower than the template's 203.0.113.0/24).
//!
//! Needs root, ip, ping. Outside CI the tests skip (with a message) when those are missing;
//! under `CI=true` they fail.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::hub::{HUB_HOST, HubSites, peer_ip, spoke_host, spoke_wan};
use common::ike::{
    IkeProfile, child_pair, log_shows_panic, mentions, peer_rows, sa_rows, views, wait_child_sas,
    wait_log_mentions,
};
use common::sa::SaRow;
use common::{Daemon, ping, poll_until};

const PSK: &str = "ikehub hub template pre-shared key 91f0c2";
/// The hub's template policy.
const HUB_POLICY: &str = "Hub";
/// Every spoke's policy.
const SPOKE_POLICY: &str = "ToHub";
const SPOKES: usize = 20;
/// Bound on bringing all spokes up (each main mode + quick mode on a shared 2-core machine).
const ALL_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// Echo requests per direction and spoke.
const PINGS: u32 = 4;

/// The hub's profile: one template policy admitting 192.0.2.0/24, responder only.
fn hub_profile() -> IkeProfile {
    common::hub::template_hub_profile(PSK)
}

/// Spoke `i`'s profile: protects `host`/32 (its own 203.0.113.(10+i) unless a test makes two
/// spokes claim the same one), initiates at start, one shard.
fn spoke_profile(i: usize, host: &str) -> IkeProfile {
    common::hub::template_spoke_profile(PSK, i, host)
}

/// The ISAKMP rows of `rows` in `direction`, by peer address.
fn ike_peers(rows: &[SaRow], direction: &str) -> BTreeSet<String> {
    rows.iter()
        .filter(|r| r.sa_type == "ISAKMP" && r.direction == direction)
        .map(|r| peer_ip(&r.peer).to_string())
        .collect()
}

fn assert_alive(d: &mut Daemon) {
    assert!(d.is_running(), "daemon {} died:\n{}", d.label(), d.log());
    assert!(
        !log_shows_panic(&d.log()),
        "daemon {} logged a panic:\n{}",
        d.label(),
        d.log()
    );
}

#[test]
fn hub_template_policy_with_20_spokes() {
    if !common::require_env_or_skip(&["ip", "ping"]) {
        return;
    }
    let t0 = Instant::now();
    let sites = HubSites::new("tmpl", SPOKES);
    for i in 1..=SPOKES {
        sites
            .spoke(i)
            .add_lo_address(&format!("{}/32", spoke_host(i)));
    }
    // One IKE worker: the peer actors run on the router's own thread (actors/ike/workers.rs);
    // tests/ike_workers.rs covers two worker threads.
    let mut hub = Daemon::start(&sites.hub, "hub", |dir| {
        let toml = hub_profile().toml(dir);
        let one = toml.replacen("[system]\n", "[system]\nike-workers = 1\n", 1);
        assert_ne!(one, toml, "no [system] table in the generated profile");
        one
    });
    eprintln!("topology and hub ready after {:?}", t0.elapsed());

    // All spokes at once: each initiates as soon as it runs.
    let started = Instant::now();
    let spawned: Vec<Daemon> = (1..=SPOKES)
        .map(|i| {
            let p = spoke_profile(i, &spoke_host(i));
            Daemon::spawn(sites.spoke(i), &format!("spoke{i}"), move |dir| p.toml(dir))
        })
        .collect();
    let mut spokes: Vec<Daemon> = spawned.into_iter().map(Daemon::wait_ready).collect();

    let expected: BTreeSet<String> = (1..=SPOKES).map(spoke_wan).collect();
    let all_up = poll_until(ALL_UP_TIMEOUT, || {
        let rows = sa_rows(&hub);
        let up: BTreeSet<String> = peer_rows(&hub)
            .iter()
            .filter(|r| r.state == "up")
            .map(|r| peer_ip(&r.peer).to_string())
            .collect();
        (ike_peers(&rows, "IN") == expected
            && ike_peers(&rows, "OUT") == expected
            && up == expected)
            .then_some(rows)
    });
    let up_after = started.elapsed();
    let Some(rows) = all_up else {
        let rows = sa_rows(&hub);
        panic!(
            "not all {SPOKES} spokes up after {ALL_UP_TIMEOUT:?}: IN from {:?}, OUT to {:?}\n{}",
            ike_peers(&rows, "IN"),
            ike_peers(&rows, "OUT"),
            views(&hub)
        );
    };
    eprintln!("all {SPOKES} spokes up {up_after:?} after the spoke daemons were started");

    // Exactly one IN and one OUT per spoke, each with the policy and SPIs of its own.
    for dir in ["IN", "OUT"] {
        let n = rows
            .iter()
            .filter(|r| r.sa_type == "ISAKMP" && r.direction == dir)
            .count();
        assert_eq!(n, SPOKES, "hub: {n} ISAKMP {dir} rows:\n{}", views(&hub));
    }
    let spis: BTreeSet<Option<u32>> = rows.iter().map(|r| r.esp_spi).collect();
    assert_eq!(
        spis.len(),
        2 * SPOKES,
        "SPIs reused across spokes: {rows:#?}"
    );
    let peers = peer_rows(&hub);
    assert_eq!(
        peers.iter().filter(|r| r.state == "up").count(),
        SPOKES,
        "show peers: {peers:#?}"
    );
    for r in &peers {
        assert_eq!(r.policy, HUB_POLICY, "{r:#?}");
    }
    // Each spoke sees its own pair.
    for s in &spokes {
        wait_child_sas(s, SPOKE_POLICY, Duration::from_secs(10));
    }

    // Traffic through every tunnel, both ways, all spokes in parallel.
    let ping_started = Instant::now();
    let losses: Vec<(usize, f64, f64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..=SPOKES)
            .map(|i| {
                let sites = &sites;
                scope.spawn(move || {
                    let host = spoke_host(i);
                    let out = ping(sites.spoke(i), &host, HUB_HOST, PINGS);
                    let back = ping(&sites.hub, HUB_HOST, &host, PINGS);
                    (i, out, back)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("ping thread"))
            .collect()
    });
    eprintln!(
        "pings through {SPOKES} tunnels took {:?}",
        ping_started.elapsed()
    );
    let lossy: Vec<_> = losses
        .iter()
        .filter(|(_, out, back)| *out != 0.0 || *back != 0.0)
        .collect();
    assert!(
        lossy.is_empty(),
        "loss (spoke, spoke->hub %, hub->spoke %): {lossy:?}\n{}",
        views(&hub)
    );

    assert_alive(&mut hub);
    for s in &mut spokes {
        assert_alive(s);
    }
    eprintln!("whole test: {:?}", t0.elapsed());
}

#[test]
fn two_spokes_claiming_the_same_network_the_later_is_refused() {
    if !common::require_env_or_skip(&["ip", "ping"]) {
        return;
    }
    const SHARED: &str = "203.0.113.50";
    let sites = HubSites::new("claim", 2);
    for s in &sites.spokes {
        s.add_lo_address(&format!("{SHARED}/32"));
    }
    let mut hub = Daemon::start(&sites.hub, "hub", |dir| hub_profile().toml(dir));
    let p1 = spoke_profile(1, SHARED);
    let s1 = Daemon::start(sites.spoke(1), "spoke1", |dir| p1.toml(dir));
    let first = poll_until(Duration::from_secs(30), || {
        let rows = sa_rows(&hub);
        let mine: Vec<SaRow> = rows
            .into_iter()
            .filter(|r| r.sa_type == "ISAKMP" && peer_ip(&r.peer) == spoke_wan(1))
            .collect();
        (mine.len() == 2).then_some(mine)
    })
    .unwrap_or_else(|| panic!("spoke 1 did not come up:\n{}", views(&hub)));
    wait_child_sas(&s1, SPOKE_POLICY, Duration::from_secs(10));
    assert_eq!(
        ping(sites.spoke(1), SHARED, HUB_HOST, 5),
        0.0,
        "spoke 1 tunnel down before spoke 2 came:\n{}",
        views(&hub)
    );

    // The second spoke proposes the very same network.
    let p2 = spoke_profile(2, SHARED);
    let mut s2 = Daemon::start(sites.spoke(2), "spoke2", |dir| p2.toml(dir));
    let logged = wait_log_mentions(&hub, &["already protected by"], Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "the hub did not log the refused claim:\n{}\nhub log:\n{}",
                views(&hub),
                hub.log()
            )
        });
    eprintln!("hub logged: {logged:#?}");
    assert!(
        logged.iter().any(|l| l.contains("WARN")),
        "the refusal is not logged at WARN: {logged:#?}"
    );
    assert!(
        logged
            .iter()
            .any(|l| l.contains(SHARED) && l.contains("Hub@192.0.2.11")),
        "the log does not name the network and its holder: {logged:#?}"
    );
    let row = poll_until(Duration::from_secs(30), || {
        peer_rows(&hub).into_iter().find(|r| {
            peer_ip(&r.peer) == spoke_wan(2)
                && r.last_error
                    .as_deref()
                    .is_some_and(|e| mentions(e, "already protected by"))
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "show peers has no row of {} with the reason:\n{}",
            spoke_wan(2),
            views(&hub)
        )
    });
    eprintln!("show peers row of spoke 2: {row:?}");

    // For a while (spoke 2 keeps trying): the hub never holds SAs of spoke 2, spoke 2's traffic
    // goes nowhere, spoke 1's SAs are the same ones and carry traffic.
    let watch_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < watch_until {
        let rows = sa_rows(&hub);
        let of_2: Vec<&SaRow> = rows
            .iter()
            .filter(|r| peer_ip(&r.peer) == spoke_wan(2))
            .collect();
        assert!(
            of_2.is_empty(),
            "the hub holds SAs of the refused spoke: {of_2:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let loss2 = ping(sites.spoke(2), SHARED, HUB_HOST, 5);
    assert_eq!(
        loss2,
        100.0,
        "the refused spoke's traffic got through:\n{}",
        views(&hub)
    );
    // Whatever spoke 2 held for a moment on its side never carried a packet in.
    let carried: Vec<SaRow> = sa_rows(&s2)
        .into_iter()
        .filter(|r| r.sa_type == "ISAKMP" && r.direction == "IN" && r.packets > 0)
        .collect();
    assert!(
        carried.is_empty(),
        "the refused spoke has SAs that carried traffic: {carried:#?}"
    );
    let now: Vec<SaRow> = sa_rows(&hub)
        .into_iter()
        .filter(|r| r.sa_type == "ISAKMP" && peer_ip(&r.peer) == spoke_wan(1))
        .collect();
    let spis = |v: &[SaRow]| -> BTreeSet<Option<u32>> { v.iter().map(|r| r.esp_spi).collect() };
    assert_eq!(
        spis(&now),
        spis(&first),
        "spoke 1's SAs were disturbed by spoke 2"
    );
    assert_eq!(
        ping(sites.spoke(1), SHARED, HUB_HOST, 10),
        0.0,
        "spoke 1 stopped working after spoke 2 was refused:\n{}",
        views(&hub)
    );
    assert_eq!(
        ping(&sites.hub, HUB_HOST, SHARED, 5),
        0.0,
        "hub -> spoke 1 broken:\n{}",
        views(&hub)
    );
    assert!(child_pair(&sa_rows(&s1), SPOKE_POLICY).is_some());
    assert_alive(&mut hub);
    assert_alive(&mut s2);
}

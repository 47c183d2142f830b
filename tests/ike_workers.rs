//! IKE on every core (issue 10): a hub with `[system] ike-workers = 2` starts its peer actors on
//! two worker threads. Several spokes of one template policy come up at once and carry traffic
//! both ways; `show counters` shows peers on both workers and the IKE socket drop counter; a
//! spoke that leaves is no longer counted on its worker; on SIGTERM the peer actors on the
//! workers still send their deletes (every spoke loses its SAs) and the hub exits cleanly.
//!
//! Topology as tests/hub_template.rs (tests/common/hub.rs): the hub at 192.0.2.1 on a bridge,
//! spoke i at 192.0.2.(10+i) protecting its own host 203.0.113.(10+i)/32.
//!
//! Needs root, ip, ping. Outside CI the test skips (with a message) when those are missing;
//! under `CI=true` it fails.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::hub::{HUB_HOST, HubSites, peer_ip, spoke_host, spoke_wan};
use common::ike::{cli, log_shows_panic, peer_rows, show_json, views, wait_no_child_sas};
use common::{Daemon, ping, poll_until};
use serde_json::Value;

const PSK: &str = "ikehub workers pre-shared key 3c51e0a7";
const SPOKES: usize = 6;
const WORKERS: usize = 2;
/// Bound on bringing all spokes up on a shared 2-core machine.
const ALL_UP_TIMEOUT: Duration = Duration::from_secs(60);
const PINGS: u32 = 4;

/// The template hub of tests/common/hub.rs with `ike-workers` in its `[system]` table.
fn hub_toml(dir: &std::path::Path) -> String {
    let toml = common::hub::template_hub_profile(PSK).toml(dir);
    let marked = toml.replacen(
        "[system]\n",
        &format!("[system]\nike-workers = {WORKERS}\n"),
        1,
    );
    assert_ne!(marked, toml, "no [system] table in the generated profile");
    marked
}

/// The `{ "ike": {...} }` element of `show counters --json`.
fn ike_counters(hub: &Daemon) -> Value {
    let v = show_json(hub, "counters").unwrap_or_else(|e| panic!("hub: {e}"));
    v.as_array()
        .and_then(|a| a.iter().find_map(|e| e.get("ike").cloned()))
        .unwrap_or_else(|| panic!("no ike element in show counters: {v:#}"))
}

#[test]
fn spokes_on_two_ike_workers_come_up_carry_traffic_and_are_deleted_on_stop() {
    if !common::require_env_or_skip(&["ip", "ping"]) {
        return;
    }
    let sites = HubSites::new("wrk", SPOKES);
    for i in 1..=SPOKES {
        sites
            .spoke(i)
            .add_lo_address(&format!("{}/32", spoke_host(i)));
    }
    let hub = Daemon::start(&sites.hub, "hub", hub_toml);
    let spawned: Vec<Daemon> = (1..=SPOKES)
        .map(|i| {
            let p = common::hub::template_spoke_profile(PSK, i, &spoke_host(i));
            Daemon::spawn(sites.spoke(i), &format!("spoke{i}"), move |dir| p.toml(dir))
        })
        .collect();
    let mut spokes: Vec<Daemon> = spawned.into_iter().map(Daemon::wait_ready).collect();

    let expected: BTreeSet<String> = (1..=SPOKES).map(spoke_wan).collect();
    let all_up = poll_until(ALL_UP_TIMEOUT, || {
        let up: BTreeSet<String> = peer_rows(&hub)
            .iter()
            .filter(|r| r.state == "up")
            .map(|r| peer_ip(&r.peer).to_string())
            .collect();
        (up == expected).then_some(())
    });
    assert!(
        all_up.is_some(),
        "not all {SPOKES} spokes up after {ALL_UP_TIMEOUT:?}:\n{}",
        views(&hub)
    );

    // Traffic through every tunnel, both ways.
    for i in 1..=SPOKES {
        let host = spoke_host(i);
        let out = ping(sites.spoke(i), &host, HUB_HOST, PINGS);
        let back = ping(&sites.hub, HUB_HOST, &host, PINGS);
        assert!(
            out == 0.0 && back == 0.0,
            "spoke {i}: loss {out}% out, {back}% back\n{}",
            views(&hub)
        );
    }

    // The peer actors are on both workers (new peers go to the least-loaded one), and the
    // kernel dropped nothing at the IKE sockets.
    let ike = ike_counters(&hub);
    let workers = ike["workers"]
        .as_array()
        .unwrap_or_else(|| panic!("no workers in {ike:#}"));
    assert_eq!(workers.len(), WORKERS, "{ike:#}");
    let peers: Vec<u64> = workers
        .iter()
        .map(|w| w["peers"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        peers.iter().all(|&p| p >= 1),
        "a worker has no peers: {ike:#}"
    );
    assert_eq!(peers.iter().sum::<u64>(), SPOKES as u64, "{ike:#}");
    assert_eq!(ike["ike_socket_drops"].as_u64(), Some(0), "{ike:#}");
    // The table form names each worker's row.
    let table = cli(&hub, &["show", "counters"]).unwrap_or_else(|e| panic!("hub: {e}"));
    for needle in ["workers[0].peers", "workers[1].peers", "ike_socket_drops"] {
        assert!(table.contains(needle), "no {needle} in:\n{table}");
    }

    // A spoke that leaves (its deletes end the hub's session): its peer actor, on a worker
    // thread, stops and the router forgets it (it is no longer counted on any worker).
    let gone = spokes.remove(0);
    assert!(gone.stop().is_some_and(|s| s.success()));
    let left = poll_until(Duration::from_secs(20), || {
        let ike = ike_counters(&hub);
        let sum: u64 = ike["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| w["peers"].as_u64().unwrap_or(0))
            .sum();
        (sum == SPOKES as u64 - 1).then_some(())
    });
    assert!(
        left.is_some(),
        "the departed spoke's peer actor is still counted: {:#}\n{}",
        ike_counters(&hub),
        views(&hub)
    );

    // SIGTERM: the peer actors on the workers send their deletes before the daemon exits.
    let log = hub.log();
    assert!(!log_shows_panic(&log), "hub logged a panic:\n{log}");
    let status = hub.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "hub did not stop cleanly: {status:?}"
    );
    for s in &spokes {
        wait_no_child_sas(s, "ToHub", Duration::from_secs(20));
    }
}

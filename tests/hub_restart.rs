//! A hub restart under 100 live spokes (issue 10, acceptance: "hub restart recovery with 100
//! spokes"): `ikehub run` as the hub and an `ikehub loadgen --reconnect` swarm holding 100
//! tunnels in one namespace (tests/common/swarm.rs); the hub is stopped and started again with
//! the same profile, and every spoke must be back at the hub (`show peers`), none given up on.
//!
//! Two ways down: SIGKILL (a crash: the hub forgets every SA and says nothing, so each spoke
//! learns it only from RFC 3706 DPD, its R-U-THERE unanswered) and SIGTERM (the hub deletes
//! every tunnel as it stops, so the spokes re-initiate at once, into a hub that is not there
//! yet). Either way the spokes come back with backoff and jitter through the swarm's in-flight
//! slots; the report's retransmissions are printed, not bounded (they depend on how long the
//! hub took to come back on a busy machine).
//!
//! Needs root (namespace; the hub's TUN device).

mod common;

use std::time::Duration;

use common::swarm::{SWARM_100, count, hub_profile, hub_tunnels, interrupt, spawn_loadgen};
use common::{Daemon, Netns, TempDir, poll_until, require_root_or_skip};

const N: usize = 100;
/// Bound on the hub showing every tunnel (100 handshakes, debug build, shared 2-core machine).
const ALL_UP_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on every tunnel being back after the restart: DPD's detection (2 s idle, dead 6 s
/// after the first probe), the backoff (at most 1 s on the first try) and 100 handshakes.
const ALL_BACK_TIMEOUT: Duration = Duration::from_secs(180);

/// Brings 100 spokes up, restarts the hub with `signal`, waits for all 100 back; returns the
/// swarm's report.
fn restart_under_swarm(signal: i32, tag: &str) -> serde_json::Value {
    let ns = Netns::new(tag);
    let hub = Daemon::start(&ns, "hub", |dir| hub_profile(dir, "127.1.0.0/16"));
    let dir = TempDir::new("rs-psk");
    let child = spawn_loadgen(
        &ns,
        &dir,
        &[
            &SWARM_100[..],
            &["--reconnect", "--dpd-interval", "2", "--dpd-timeout", "6"],
        ]
        .concat(),
    );
    let up = poll_until(ALL_UP_TIMEOUT, || (hub_tunnels(&hub) == N).then_some(()));
    assert!(
        up.is_some(),
        "before the restart the hub shows {}/{N} tunnels",
        hub_tunnels(&hub)
    );

    let (_, hub) = hub.restart(signal);
    // The new hub starts empty; every spoke must come back on its own.
    let back = poll_until(ALL_BACK_TIMEOUT, || (hub_tunnels(&hub) == N).then_some(()));
    let shown = hub_tunnels(&hub);
    let (code, r) = interrupt(child);
    assert!(
        back.is_some(),
        "after the restart the hub shows {shown}/{N} tunnels; swarm report: {r:#}"
    );
    eprintln!(
        "restart ({tag}): {} tunnels lost, {} back after {} attempts in {} s; retransmissions \
         since the first loss {} (whole run {})",
        r["lost"],
        r["reconnected"],
        r["reconnect_attempts"],
        r["recovery_seconds"],
        r["recovery_retransmissions"],
        r["retransmissions"]
    );
    assert_eq!(
        code,
        Some(0),
        "every spoke up and none down at the end: {r:#}"
    );
    for (key, want) in [
        ("up", N as u64),
        ("failed", 0),
        ("lost", N as u64),
        ("reconnected", N as u64),
        ("down_at_end", 0),
        ("deleted", N as u64),
    ] {
        assert_eq!(count(&r, key), want, "{key}: {r:#}");
    }
    assert!(r["reconnect"].as_bool() == Some(true), "{r:#}");
    assert!(
        count(&r, "reconnect_attempts") >= N as u64,
        "every lost tunnel took at least one attempt: {r:#}"
    );
    assert!(
        r["recovery_seconds"].as_f64().is_some_and(|s| s > 0.0),
        "all back, so the recovery time is reported: {r:#}"
    );
    r
}

#[test]
fn spokes_come_back_after_the_hub_crashes() {
    if !require_root_or_skip() {
        return;
    }
    restart_under_swarm(libc::SIGKILL, "rs-kill");
}

#[test]
fn spokes_come_back_after_the_hub_stops_cleanly_and_starts_again() {
    if !require_root_or_skip() {
        return;
    }
    restart_under_swarm(libc::SIGTERM, "rs-term");
}

//! `ikehub loadgen` against real responders (issue 10, acceptance: "loadgen against ikehub (100
//! spokes) and against strongSwan (a handful)").
//!
//! Against ikehub, one namespace holds both: the hub on 127.0.0.1 (ports 500 and 4500), the
//! swarm's spokes on their own 127.1.0.x addresses, which `lo` answers for without any address
//! setup (the whole 127.0.0.0/8 is local). Against strongSwan, charon (which binds the wildcard
//! address) runs in its own namespace and the spokes use five addresses on the other end of a
//! veth. Each spoke proposes its own address as its /32 against the responder's 198.51.100.0/24.
//!
//! Needs root (namespaces; the hub's TUN device) and, for the second test, strongSwan.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::ike::{cli, isakmp_rows};
use common::netns::{A_WAN, WAN_DEV};
use common::strongswan::{Charon, SwanConfig, require_strongswan_or_skip};
use common::swarm::{
    EXIT_TIMEOUT, HUB_NET, PSK, SWARM_100, count, hub_profile, hub_tunnels, interrupt, report,
    report_within, spawn_loadgen,
};
use common::{Daemon, Netns, TempDir, TwoSites, ikehub_bin, poll_until, require_root_or_skip};
use serde_json::Value;

/// Bound on the hub showing every tunnel (100 handshakes, debug build, shared 2-core machine).
const ALL_UP_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn loadgen_brings_100_spokes_up_against_ikehub_and_deletes_them() {
    if !require_root_or_skip() {
        return;
    }
    const N: usize = 100;
    let ns = Netns::new("lg-hub");
    let hub = Daemon::start(&ns, "hub", |dir| hub_profile(dir, "127.1.0.0/16"));
    let dir = TempDir::new("lg-psk");
    // Held far longer than the test waits: it is interrupted (SIGINT) once the hub shows every
    // tunnel, which makes it delete them all at once.
    let child = spawn_loadgen(&ns, &dir, &SWARM_100);
    let all = poll_until(ALL_UP_TIMEOUT, || (hub_tunnels(&hub) == N).then_some(()));
    let shown = hub_tunnels(&hub);
    let (code, r) = interrupt(child);
    assert!(
        all.is_some(),
        "the hub shows {shown}/{N} tunnels\n{}",
        hub.log()
    );

    assert_eq!(code, Some(0), "{r:#}");
    assert_eq!(r["ok"], Value::Bool(true), "{r:#}");
    for (key, want) in [
        ("spokes", N as u64),
        ("started", N as u64),
        ("up", N as u64),
        ("failed", 0),
        ("not_started", 0),
        ("deleted", N as u64),
        ("closed_by_peer", 0),
        ("send_errors", 0),
    ] {
        assert_eq!(count(&r, key), want, "{key}: {r:#}");
    }
    assert_eq!(r["failures"], serde_json::json!({}), "{r:#}");
    // Per spoke: main mode 1, 3, 5, quick mode 1, 3, then the two deletes (child, ISAKMP SA);
    // more only when a message was sent again (our retransmission, or the stored answer to the
    // hub's, which a slow machine may provoke).
    assert!(
        count(&r, "ike_messages_sent") >= 7 * N as u64 + count(&r, "retransmissions"),
        "{r:#}"
    );
    let lat = &r["latency_ms"];
    let (p50, p99, max) = (
        lat["p50"].as_f64().unwrap_or(-1.0),
        lat["p99"].as_f64().unwrap_or(-1.0),
        lat["max"].as_f64().unwrap_or(-1.0),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{r:#}");
    assert!(r["setup_rate"].as_f64().unwrap_or(0.0) > 0.0, "{r:#}");

    // The deletes reached the hub: no child SA and no ISAKMP SA is left (the template's peer
    // rows stay, `down`).
    let gone = poll_until(Duration::from_secs(30), || {
        (hub_tunnels(&hub) == 0 && isakmp_rows(&hub).is_empty()).then_some(())
    });
    assert!(
        gone.is_some(),
        "the hub still shows {} tunnels and {} ISAKMP SAs after the deletes:\n{}",
        hub_tunnels(&hub),
        isakmp_rows(&hub).len(),
        hub.log()
    );
}

#[test]
fn a_tunnel_the_hub_deletes_during_the_hold_is_reported_closed_by_the_hub() {
    if !require_root_or_skip() {
        return;
    }
    let ns = Netns::new("lg-term");
    let hub = Daemon::start(&ns, "hub", |dir| hub_profile(dir, "127.1.0.0/16"));
    let dir = TempDir::new("lg-psk");
    // Spoke 2 is deleted by the swarm when its hold ends; spoke 1 must be gone long before.
    const HOLD: Duration = Duration::from_secs(30);
    let child = spawn_loadgen(
        &ns,
        &dir,
        &[
            "--hub",
            "127.0.0.1",
            "--spokes",
            "2",
            "--sources",
            "127.1.4.1-127.1.4.2",
            "--ike-group",
            "2",
            "--hold",
            &HOLD.as_secs().to_string(),
            "--timeout",
            "600",
        ],
    );
    let all = poll_until(ALL_UP_TIMEOUT, || (hub_tunnels(&hub) == 2).then_some(()));
    // The hub tears spoke 1's tunnel down (delete notifications); the swarm, still listening
    // while it holds the tunnel, sees it go.
    let terminated = all.and_then(|_| {
        cli(&hub, &["terminate", "Spokes", "--peer", "127.1.4.1"])
            .map_err(|e| eprintln!("{e}"))
            .ok()
    });
    let one_left = terminated.as_ref().and_then(|_| {
        poll_until(Duration::from_secs(30), || {
            (hub_tunnels(&hub) == 1).then_some(())
        })
    });
    let (code, r) = report_within(child, HOLD + EXIT_TIMEOUT);
    assert!(
        all.is_some(),
        "the hub never showed both tunnels:\n{}",
        hub.log()
    );
    assert!(
        terminated.is_some(),
        "ikehub terminate failed:\n{}",
        hub.log()
    );
    assert!(
        one_left.is_some(),
        "the hub still shows both tunnels:\n{}",
        hub.log()
    );
    assert_eq!(code, Some(0), "{r:#}");
    for (key, want) in [
        ("up", 2),
        ("closed_by_peer", 1),
        ("deleted", 1),
        ("failed", 0),
    ] {
        assert_eq!(count(&r, key), want, "{key}: {r:#}");
    }
}

#[test]
fn loadgen_reports_refused_spokes_by_reason_and_does_not_retry_them() {
    if !require_root_or_skip() {
        return;
    }
    let ns = Netns::new("lg-refused");
    let hub = Daemon::start(&ns, "hub", |dir| hub_profile(dir, "127.1.0.0/16"));
    let dir = TempDir::new("lg-psk");
    // Group 5: the hub accepts 2 and 14 only, and answers message 1 with NO-PROPOSAL-CHOSEN.
    let child = spawn_loadgen(
        &ns,
        &dir,
        &[
            "--hub",
            "127.0.0.1",
            "--spokes",
            "3",
            "--sources",
            "127.1.3.1-127.1.3.3",
            "--ike-group",
            "5",
            "--timeout",
            "60",
        ],
    );
    let (code, r) = report(child);
    assert_eq!(code, Some(1), "{r:#}\n{}", hub.log());
    assert_eq!(r["ok"], Value::Bool(false), "{r:#}");
    for (key, want) in [("up", 0), ("failed", 3), ("started", 3), ("not_started", 0)] {
        assert_eq!(count(&r, key), want, "{key}: {r:#}");
    }
    let f = &r["failures"]["no_proposal_chosen"];
    assert_eq!(f["count"], 3, "{r:#}");
    assert!(
        f["example"]
            .as_str()
            .is_some_and(|e| e.contains("NO-PROPOSAL-CHOSEN")),
        "{r:#}"
    );
    assert!(r["latency_ms"].is_null(), "{r:#}");
    // One message 1 per spoke (and its retransmissions, if the hub was slower than 1 s) and
    // nothing after the refusal: the session's immediate new main mode for the still-pending
    // child is not sent.
    assert_eq!(
        count(&r, "ike_messages_sent"),
        3 + count(&r, "retransmissions"),
        "{r:#}"
    );
}

#[test]
fn loadgen_refuses_options_that_cannot_work() {
    let dir = TempDir::new("lg-opts");
    let psk = dir.join("psk");
    std::fs::write(&psk, "k\n").expect("write the PSK file");
    let psk = psk.to_string_lossy().into_owned();
    for (args, says) in [
        (
            vec!["--spokes", "3", "--sources", "127.1.0.1-127.1.0.2"],
            "holds 2 addresses for 3 spokes",
        ),
        (
            vec![
                "--spokes",
                "1",
                "--sources",
                "127.1.0.1",
                "--ike-group",
                "19",
            ],
            "DH group 19",
        ),
        (
            vec![
                "--spokes",
                "1",
                "--sources",
                "127.1.0.1",
                "--esp",
                "aes128-sha512",
            ],
            "--esp",
        ),
        (
            vec!["--spokes", "1", "--sources", "127.1.0.0/0"],
            "--sources",
        ),
        (
            vec![
                "--spokes",
                "1",
                "--sources",
                "127.1.0.1",
                "--reconnect",
                "--dpd-interval",
                "10",
                "--dpd-timeout",
                "5",
            ],
            "--dpd-timeout 5 is shorter than --dpd-interval 10",
        ),
        (
            vec![
                "--spokes",
                "1",
                "--sources",
                "127.1.0.1",
                "--dpd-timeout",
                "5",
            ],
            "--dpd-timeout needs --dpd-interval or --reconnect",
        ),
        // Refused, not a panic: the run's end would overflow an Instant.
        (
            vec!["--spokes", "1", "--sources", "127.1.0.1", "--hold", "1e19"],
            "--hold 10000000000000000000: at most 31536000 seconds",
        ),
        (
            vec![
                "--spokes",
                "1",
                "--sources",
                "127.1.0.1",
                "--timeout",
                "1e19",
            ],
            "--timeout 10000000000000000000: at most 31536000 seconds",
        ),
    ] {
        let out = std::process::Command::new(ikehub_bin())
            .args(["loadgen", "--hub", "127.0.0.1", "--psk-file", &psk])
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run ikehub loadgen");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn loadgen_brings_a_handful_of_spokes_up_against_strongswan() {
    if !require_strongswan_or_skip(&[]) {
        return;
    }
    const N: u64 = 5;
    // charon binds the wildcard address of ports 500 and 4500 without SO_REUSEADDR, so the
    // swarm cannot share its namespace: charon in A (192.0.2.1), the spokes in B on
    // 192.0.2.11-15, five more addresses of B's end of the veth.
    let sites = TwoSites::new("lg-swan");
    for i in 11..=15 {
        sites
            .b
            .ip(&["addr", "add", &format!("192.0.2.{i}/24"), "dev", WAN_DEV]);
    }
    // charon (kernel-libipsec) fakes a NAT, so the spokes float to 4500: --nat-t.
    // The spokes protect 203.0.113.11-15 (--networks), not their own addresses.
    let swan = SwanConfig::ikev1_psk(A_WAN, "192.0.2.0/24", PSK)
        .remote_id("%any")
        .ts(HUB_NET, "203.0.113.0/24");
    let charon = Charon::start(&sites.a, "responder", &swan);
    let dir = TempDir::new("lg-psk");
    let child = spawn_loadgen(
        &sites.b,
        &dir,
        &[
            "--hub",
            A_WAN,
            "--spokes",
            "5",
            "--sources",
            "192.0.2.11-192.0.2.15",
            "--networks",
            "203.0.113.11-203.0.113.15",
            "--ike-group",
            "2",
            "--nat-t",
            "--rate",
            "20",
            "--hold",
            "1",
            "--timeout",
            "90",
        ],
    );
    let (code, r) = report(child);
    assert_eq!(code, Some(0), "{r:#}\ncharon log:\n{}", charon.log());
    for (key, want) in [("up", N), ("failed", 0), ("deleted", N), ("not_started", 0)] {
        assert_eq!(count(&r, key), want, "{key}: {r:#}");
    }
    assert_eq!(r["nat_t"], Value::Bool(true));
    // charon saw five spokes, each with its own /32.
    let log = charon.log();
    for i in 11..=15 {
        let ts = format!("203.0.113.{i}/32");
        assert!(
            log.contains(&ts),
            "charon's log never mentions {ts}:\n{log}"
        );
    }
    // Our deletes end charon's SAs too.
    charon.wait_no_sas(Duration::from_secs(20));
}

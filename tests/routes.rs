//! Routes a daemon installs through rtnetlink (issue 13 point 5): one route per CIDR block of
//! each policy's remote network, into the TUN device with the `source-address` as preferred
//! source; a reload that removes a policy removes its routes and only them; stop removes them
//! all; `routes = false` installs none.
//!
//! One namespace, manually keyed policies (they install at start-up without a peer), the WAN
//! address on `lo`. Checked from outside with `ip route show table all`.
//!
//! Needs root and ip. Outside CI the tests skip (with a message) when those are missing; under
//! `CI=true` they fail.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::hub::{all_routes, link_exists, manual_policy, manual_transform, routes_to};
use common::ike::{CLI_TIMEOUT, daemon_pid};
use common::strongswan::output_with_timeout;
use common::{Daemon, Netns, poll_until};

const TUN: &str = "ikehub0";
const WAN: &str = "192.0.2.1";
const PEER: &str = "192.0.2.2";
const HOST: &str = "198.51.100.1";
const ROUTE_TIMEOUT: Duration = Duration::from_secs(20);

/// `Range` covers 203.0.113.0-203.0.113.191: two CIDR blocks, so two routes.
const RANGE: &str = "203.0.113.0-203.0.113.191";
/// `Host` is one address: one /32 route (`ip route` shows it without the length).
const HOST_REMOTE: &str = "203.0.113.200";

fn profile(dir: &Path, routes: bool, with_range: bool) -> String {
    let mut s = format!(
        "[system]\ncontrol-socket = \"{sock}\"\n\n[interface.wan]\naddress = \"{WAN}\"\n\n\
         [tunnel-device]\nname = \"{TUN}\"\nmtu = 1400\nsource-address = \"{HOST}\"\n\
         routes = {routes}\n",
        sock = dir.join("ikehub.sock").display(),
    );
    s.push_str(&manual_transform("ManT"));
    s.push_str(&manual_policy(
        "Host",
        "ManT",
        "esp",
        PEER,
        HOST,
        HOST_REMOTE,
        5001,
        5002,
    ));
    if with_range {
        s.push_str(&manual_policy(
            "Range", "ManT", "esp", PEER, HOST, RANGE, 5011, 5012,
        ));
    }
    s
}

fn site(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    ns.add_lo_address(&format!("{WAN}/32"));
    ns.add_lo_address(&format!("{HOST}/32"));
    ns
}

/// The routes to 203.0.113.x, each reduced to `dst dev src` (the words `ip` prints vary by
/// version), sorted.
fn routes(ns: &Netns) -> Vec<String> {
    let mut v: Vec<String> = routes_to(ns, "203.0.113.")
        .iter()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let after = |k: &str| {
                w.iter()
                    .position(|x| *x == k)
                    .and_then(|i| w.get(i + 1))
                    .copied()
                    .unwrap_or("-")
            };
            format!("{} dev {} src {}", w[0], after("dev"), after("src"))
        })
        .collect();
    v.sort();
    v
}

fn expected(with_range: bool) -> Vec<String> {
    let mut v = vec![format!("{HOST_REMOTE} dev {TUN} src {HOST}")];
    if with_range {
        v.push(format!("203.0.113.0/25 dev {TUN} src {HOST}"));
        v.push(format!("203.0.113.128/26 dev {TUN} src {HOST}"));
    }
    v.sort();
    v
}

/// Waits (bounded) until the routes to 203.0.113.x are `want`; panics with the table and log.
#[track_caller]
fn wait_routes(ns: &Netns, d: &Daemon, want: &[String], what: &str) {
    let got = poll_until(ROUTE_TIMEOUT, || (routes(ns) == want).then_some(()));
    assert!(
        got.is_some(),
        "{what}: routes {:?}, want {want:?}\ntable:\n{}\nlog:\n{}",
        routes(ns),
        all_routes(ns),
        d.log()
    );
}

fn reload(d: &Daemon, text: &str) -> String {
    std::fs::write(d.config_path(), text).expect("rewriting the profile");
    let mut cmd = d.cli(&["reload"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = output_with_timeout(cmd.spawn().expect("ikehub reload runs"), CLI_TIMEOUT)
        .expect("ikehub reload finishes");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "reload refused:\n{text}");
    text
}

/// SIGTERM, wait (bounded) for a clean exit; returns the log of the whole run (read before
/// `stop()`, which removes the daemon's directory).
fn sigterm(ns: &Netns, mut d: Daemon) -> String {
    let pid = daemon_pid(ns, &d).expect("the daemon's pid");
    // SAFETY: kill(2) on the daemon this test started (found by its own config path).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let exited = poll_until(ROUTE_TIMEOUT, || (!d.is_running()).then_some(()));
    let log = d.log();
    assert!(exited.is_some(), "still running after SIGTERM\n{log}");
    let status = d.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after SIGTERM: {status:?}\n{log}"
    );
    log
}

#[test]
fn policy_routes_follow_reload_and_are_gone_after_stop() {
    if !common::require_env_or_skip(&["ip"]) {
        return;
    }
    let ns = site("routes");
    let d = Daemon::start(&ns, "routes", |dir| profile(dir, true, true));
    let dir = d.dir().to_path_buf();
    wait_routes(&ns, &d, &expected(true), "after start");
    let shown = routes_to(&ns, "203.0.113.0/25").join("\n");
    assert!(
        shown.contains("proto static") && shown.contains("scope link"),
        "{shown}"
    );

    // Removing a policy removes its two routes and leaves the other policy's.
    reload(&d, &profile(&dir, true, false));
    wait_routes(&ns, &d, &expected(false), "after removing Range");
    // Adding it back installs them again.
    reload(&d, &profile(&dir, true, true));
    wait_routes(&ns, &d, &expected(true), "after adding Range back");

    let log = sigterm(&ns, d);
    let left = routes(&ns);
    assert!(left.is_empty(), "routes left after stop: {left:?}\n{log}");
    assert!(!link_exists(&ns, TUN), "{TUN} left after stop");
    assert!(!log.contains("route left behind"), "{log}");
    // Route and link handling logs nothing beyond the daemon's own lines (the crate's full
    // link parse warned twice per route about attributes newer kernels have grown).
    assert!(!log.contains("netlink_packet"), "{log}");
}

#[test]
fn routes_false_installs_none() {
    if !common::require_env_or_skip(&["ip"]) {
        return;
    }
    let ns = site("noroutes");
    let d = Daemon::start(&ns, "noroutes", |dir| profile(dir, false, true));
    let up = poll_until(ROUTE_TIMEOUT, || link_exists(&ns, TUN).then_some(()));
    assert!(up.is_some(), "no {TUN}\n{}", d.log());
    // The device is there and the policies are installed (the control socket answered):
    // still no route to the remote networks.
    let rows = common::sa::parse_rows(&common::daemon::show_sa_json(&d));
    assert!(!rows.is_empty(), "no SA rows\n{}", d.log());
    assert_eq!(routes(&ns), Vec::<String>::new(), "{}", all_routes(&ns));
    d.stop();
}

/// An operator's route to one block of a policy's range: that block is refused (the log names
/// the route and why), the policy's other blocks are installed all the same, and at stop the
/// daemon removes only what it installed: the operator's route stays. (Before, the first
/// refusal ended the policy's routes: 203.0.113.128/26 was never installed.)
#[test]
fn an_existing_route_blocks_only_its_own_block_and_stays_after_stop() {
    if !common::require_env_or_skip(&["ip"]) {
        return;
    }
    let ns = site("oproute");
    ns.ip(&["route", "add", "203.0.113.0/25", "dev", "lo"]);
    let operators = "203.0.113.0/25 dev lo src -".to_string();
    let d = Daemon::start(&ns, "oproute", |dir| profile(dir, true, true));
    let mut want = expected(true);
    want.retain(|r| !r.starts_with("203.0.113.0/25 "));
    want.push(operators.clone());
    want.sort();
    wait_routes(&ns, &d, &want, "after start");
    let refusal = "route 203.0.113.0/25 already exists";
    let found = poll_until(ROUTE_TIMEOUT, || d.log().contains(refusal).then_some(()));
    assert!(found.is_some(), "no `{refusal}` in the log:\n{}", d.log());

    let log = sigterm(&ns, d);
    assert_eq!(routes(&ns), vec![operators], "{}\n{log}", all_routes(&ns));
    let line = log
        .lines()
        .find(|l| l.contains(refusal))
        .unwrap_or_default();
    assert!(line.contains("Range") && line.contains("WARN"), "{line}");
}

/// IPv6 remote networks (issue 11): an IPv6 protected network carried over the IPv4 WAN gets
/// its routes too, one per CIDR block, with the IPv6 `source-address` as preferred source while
/// the IPv4 routes keep the IPv4 one; stop removes both families' routes.
#[test]
fn ipv6_remote_networks_get_routes_with_the_ipv6_source() {
    if !common::require_env_or_skip(&["ip"]) {
        return;
    }
    const HOST6: &str = "2001:db8:1::1";
    let ns = site("routes6");
    ns.add_lo_address(&format!("{HOST6}/128"));
    let text = |dir: &Path| {
        profile(dir, true, false).replace(
            &format!("source-address = \"{HOST}\""),
            &format!("source-address = [\"{HOST}\", \"{HOST6}\"]"),
        ) + &manual_policy(
            "Six",
            "ManT",
            "esp",
            PEER,
            HOST6,
            "2001:db8:2::-2001:db8:2::bf",
            5021,
            5022,
        )
    };
    let d = Daemon::start(&ns, "routes6", text);
    let routes6 = || {
        let table = ns.ip(&["-6", "route", "show", "table", "all"]);
        let mut v: Vec<String> = table
            .lines()
            .filter(|l| l.starts_with("2001:db8:2:"))
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let after = |k: &str| {
                    w.iter()
                        .position(|x| *x == k)
                        .and_then(|i| w.get(i + 1))
                        .copied()
                        .unwrap_or("-")
                };
                format!("{} dev {} src {}", w[0], after("dev"), after("src"))
            })
            .collect();
        v.sort();
        v
    };
    let want6 = vec![
        format!("2001:db8:2::/121 dev {TUN} src {HOST6}"),
        format!("2001:db8:2::80/122 dev {TUN} src {HOST6}"),
    ];
    let got = poll_until(ROUTE_TIMEOUT, || (routes6() == want6).then_some(()));
    assert!(
        got.is_some(),
        "IPv6 routes {:?}, want {want6:?}\n{}\nlog:\n{}",
        routes6(),
        ns.ip(&["-6", "route", "show", "table", "all"]),
        d.log()
    );
    wait_routes(&ns, &d, &expected(false), "IPv4 beside IPv6");
    let log = sigterm(&ns, d);
    assert!(routes6().is_empty(), "IPv6 routes left after stop\n{log}");
    assert!(routes(&ns).is_empty(), "IPv4 routes left after stop\n{log}");
}

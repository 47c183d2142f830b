//! Phase-1 identities against strongSwan (docs/profiles.md, `local-id` / `remote-id`): ikehub in
//! namespace A (192.0.2.1) names itself `fqdn:hub.example.net` and accepts
//! `fqdn:*.branches.example.net`; strongSwan in B (192.0.2.2) initiates with an FQDN identity
//! (ID_FQDN on the wire, RFC 2407 §4.6.2.2). A matching name brings the tunnel up and ikehub
//! logs the authenticated identity; a name outside the wildcard fails phase 1 with
//! INVALID-ID-INFORMATION and the reason in `show peers`.
//!
//! Needs root, charon, swanctl, ping. Outside CI the test skips (with a message) when those are
//! missing; under `CI=true` it fails.

mod common;

use std::time::Duration;

use common::ike::{IkeProfile, Initiate, POLICY, UP_TIMEOUT, views, wait_child_sas};
use common::ike::{wait_last_error, wait_log_mentions};
use common::netns::{A_HOST, B_HOST};
use common::strongswan::{Charon, require_strongswan_or_skip};
use common::{Daemon, TwoSites, ping, poll_until};

const PSK: &str = "ikehub identities pre-shared key 3a8c52";
const CHILD: &str = "net";

fn profile() -> IkeProfile {
    IkeProfile::site_a(PSK).initiate(Initiate::Never)
}

/// ikehub's profile with the identity keys appended to its (last) policy table.
fn ikehub_toml(dir: &std::path::Path) -> String {
    let mut s = profile().toml(dir);
    s.push_str("local-id = \"fqdn:hub.example.net\"\n");
    s.push_str("remote-id = \"fqdn:*.branches.example.net\"\n");
    s
}

#[test]
fn strongswan_fqdn_identities_matched_by_wildcard() {
    if !require_strongswan_or_skip(&["ip", "ping"]) {
        return;
    }
    let sites = TwoSites::new("ike-ids");
    let d = Daemon::start(&sites.a, "A", ikehub_toml);

    // A name the wildcard accepts: up, and the identity is what ikehub authenticated.
    let good = profile()
        .swan_peer()
        .local_id("@spoke1.branches.example.net")
        .remote_id("@hub.example.net");
    let swan = Charon::start(&sites.b, "b", &good);
    swan.initiate(CHILD, 20).unwrap_or_else(|e| {
        panic!(
            "strongSwan could not bring the tunnel up: {e}\n{}\n{}",
            views(&d),
            d.log()
        )
    });
    wait_child_sas(&d, POLICY, UP_TIMEOUT);
    let logged = wait_log_mentions(
        &d,
        &["peer ID fqdn:spoke1.branches.example.net"],
        Duration::from_secs(10),
    )
    .unwrap_or_else(|| panic!("ikehub did not log the peer's identity:\n{}", d.log()));
    eprintln!("ikehub logged: {logged:#?}");
    // `show peers` names the authenticated identity too (its IDENTITY column).
    let peers = common::ike::show_json(&d, "peers").unwrap_or_else(|e| panic!("{e}"));
    let identities: Vec<_> = peers
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["policy"].as_str().is_some_and(|p| p.starts_with(POLICY)))
        .map(|r| r["identity"].clone())
        .collect();
    assert_eq!(
        identities,
        [serde_json::json!("fqdn:spoke1.branches.example.net")],
        "show peers --json: {peers:#}"
    );
    poll_until(Duration::from_secs(10), || {
        (ping(&sites.b, B_HOST, A_HOST, 2) == 0.0).then_some(())
    })
    .unwrap_or_else(|| panic!("no traffic through the tunnel:\n{}", views(&d)));
    swan.terminate_ike("tun").unwrap_or_else(|e| panic!("{e}"));
    common::ike::wait_no_child_sas(&d, POLICY, Duration::from_secs(10));
    drop(swan);

    // A name outside the wildcard: phase 1 fails with the reason, no tunnel.
    let bad = profile()
        .swan_peer()
        .local_id("@spoke1.evil.example.net")
        .remote_id("@hub.example.net");
    let swan = Charon::start(&sites.b, "b2", &bad);
    let out = swan.initiate(CHILD, 10);
    assert!(
        out.is_err() || swan.installed_child(CHILD).is_none(),
        "strongSwan got a tunnel with a refused identity: {out:?}"
    );
    let row = wait_last_error(
        &d,
        POLICY,
        &["peer sent ID fqdn:spoke1.evil.example.net"],
        Duration::from_secs(20),
    )
    .unwrap_or_else(|| panic!("show peers lacks the reason:\n{}\n{}", views(&d), d.log()));
    let e = row.last_error.unwrap_or_default();
    assert!(
        e.contains("accepts fqdn:*.branches.example.net") && e.contains("INVALID-ID-INFORMATION"),
        "{e}"
    );
    assert_eq!(
        ping(&sites.b, B_HOST, A_HOST, 2),
        100.0,
        "traffic passes without a tunnel"
    );
}

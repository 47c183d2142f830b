//! Lifetimes against strongSwan (RFC 2407 lifetimes and RESPONDER-LIFETIME): strongSwan initiates
//! and offers a longer phase-1 lifetime than ikehub's policy; ikehub runs its own, tells strongSwan
//! with RESPONDER-LIFETIME (RFC 2407 §4.6.3.1) in main-mode message 6, and strongSwan takes that
//! notify without harm: the tunnel stays up and carries traffic. (Sent in an informational of its
//! own right after message 6, the notify overtook message 6 at strongSwan and failed to decrypt
//! there: this test caught that.) The session-level proofs (0 = "no limit of mine", clamping,
//! overflow) are in `src/ike/tests/lifetimes.rs`.
//!
//! Needs root, charon, swanctl, ping; outside CI it skips when those are missing.

mod common;

use std::time::Duration;

use common::ike::{self, IkeProfile, POLICY, UP_TIMEOUT, isakmp_rows, views, wait_child_sas};
use common::netns::{A_HOST, B_HOST};
use common::strongswan::{Charon, require_strongswan_or_skip};
use common::{Daemon, TwoSites, ping, poll_until};

const PSK: &str = "ikehub lifetime interop key 51c0e2";
/// ikehub's phase-1 lifetime; strongSwan offers several times more.
const OURS: u64 = 600;

#[test]
fn strongswan_offering_a_longer_phase1_lifetime_is_told_ours() {
    if !require_strongswan_or_skip(&["ip", "ping"]) {
        return;
    }
    let sites = TwoSites::new("ike-rl");
    let profile = IkeProfile::site_a(PSK).isakmp(&[ike::p1_aes128_sha1_g2().lifetime(OURS as u32)]);
    let d = Daemon::start(&sites.a, "A", |dir| profile.toml(dir));
    // strongSwan's IKEv1 Life Duration is its renewal time plus over_time: 3300 s.
    let swan = Charon::start(
        &sites.b,
        "b",
        &profile.swan_peer().ike_lifetime(3000, 300, 0),
    );
    swan.initiate("net", 20).unwrap_or_else(|e| {
        panic!(
            "strongSwan could not bring the tunnel up: {e}\n{}",
            views(&d)
        )
    });
    wait_child_sas(&d, POLICY, UP_TIMEOUT);
    let row = poll_until(Duration::from_secs(10), || {
        isakmp_rows(&d)
            .into_iter()
            .find(|r| r.policy == POLICY && r.lifetime_seconds.is_some())
    })
    .unwrap_or_else(|| panic!("no phase-1 row:\n{}", views(&d)));
    assert_eq!(row.lifetime_seconds, Some(OURS), "{row:?}");
    // strongSwan parsed message 6 with our RESPONDER-LIFETIME (it prints unknown notify
    // types by number) and nothing failed to decrypt.
    let told = poll_until(Duration::from_secs(10), || {
        swan.log()
            .lines()
            .find(|l| l.contains("parsed ID_PROT response") && l.contains("N((24576))"))
            .map(str::to_string)
    });
    println!("strongSwan: {told:?}");
    assert!(
        told.is_some(),
        "strongSwan never got our RESPONDER-LIFETIME in message 6:\n{}",
        swan.log()
    );
    assert!(
        !swan.log().contains("processing failed"),
        "strongSwan failed on a message of ours:\n{}",
        swan.log()
    );
    // The notify did no harm: the tunnel carries traffic and strongSwan still has its SAs.
    let through = poll_until(Duration::from_secs(10), || {
        (ping(&sites.b, B_HOST, A_HOST, 1) == 0.0).then_some(())
    });
    assert!(
        through.is_some(),
        "no ping through the tunnel:\n{}",
        views(&d)
    );
    assert!(
        !swan.sas().is_empty(),
        "strongSwan dropped its SAs:\n{}",
        swan.log()
    );
    assert!(!ike::log_shows_panic(&d.log()), "{}", d.log());
}

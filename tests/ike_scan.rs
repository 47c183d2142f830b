//! ike-scan against ikehub (acceptance: "ike-scan against ikehub: a main-mode
//! answer for an acceptable transform, NO-PROPOSAL-CHOSEN otherwise, aggressive mode
//! refused"). ikehub in namespace A responds only (`initiate = "never"`); ike-scan probes from
//! namespace B, the policy's peer address, from a random source port.
//!
//! Needs root, ip and ike-scan. Outside CI the tests skip (with a message) when those are
//! missing; under `CI=true` they fail.

mod common;

use std::time::Duration;

use common::ike::{self, IkeEncr, IkeHash, IkeProfile, IsakmpTransform, POLICY, phase1_up, views};
use common::ikescan::{IkeScan, IkeScanReply, NOTIFY_NO_PROPOSAL_CHOSEN, Transform};
use common::netns::A_WAN;
use common::{Daemon, TwoSites};

const PSK: &str = "ikehub scan pre-shared key 90ad6e17";
const TOOLS: &[&str] = &["ip", "ike-scan"];

/// Accepts AES128-SHA1-G2 and AES256-SHA256-G14, in that order.
fn profile() -> IkeProfile {
    IkeProfile::site_a(PSK).isakmp(&[
        IsakmpTransform::new("P1", IkeEncr::Aes128, IkeHash::Sha1, 2),
        IsakmpTransform::new("P1_G14", IkeEncr::Aes256, IkeHash::Sha256, 14),
    ])
}

fn start(sites: &TwoSites) -> Daemon {
    Daemon::start(&sites.a, "A", |dir| profile().toml(dir))
}

fn assert_alive(d: &mut Daemon) {
    assert!(d.is_running(), "ikehub died; log:\n{}", d.log());
    assert!(!ike::log_shows_panic(&d.log()), "ikehub logged a panic");
}

#[test]
fn ike_scan_acceptable_transform_gets_main_mode_answer() {
    if !common::require_env_or_skip(TOOLS) {
        return;
    }
    let sites = TwoSites::new("iscan-ok");
    let mut d = start(&sites);

    let r = IkeScan::main_mode(A_WAN)
        .transform(Transform::aes_sha1(128, 2))
        .run(&sites.b);
    println!("ike-scan aes128-sha1-modp1024: {:?}", r.reply);
    assert!(r.is_handshake(), "{}\n{}", r.stdout, views(&d));
    assert_eq!(r.sa("Enc"), Some("AES"), "{}", r.stdout);
    assert_eq!(r.sa("KeyLength"), Some("128"), "{}", r.stdout);
    assert_eq!(r.sa("Hash"), Some("SHA1"), "{}", r.stdout);
    assert_eq!(r.sa("Group"), Some("2:modp1024"), "{}", r.stdout);
    assert_eq!(r.sa("Auth"), Some("PSK"), "{}", r.stdout);

    // Several transforms in one proposal, only the second acceptable: ikehub picks it.
    let r = IkeScan::main_mode(A_WAN)
        .transforms(&[Transform::triple_des_md5(2), Transform::aes_sha256(256, 14)])
        .run(&sites.b);
    println!(
        "ike-scan 3des-md5-modp1024 + aes256-sha256-modp2048: {:?}",
        r.reply
    );
    assert!(r.is_handshake(), "{}\n{}", r.stdout, views(&d));
    assert_eq!(r.sa("KeyLength"), Some("256"), "{}", r.stdout);
    assert_eq!(r.sa("Group"), Some("14:modp2048"), "{}", r.stdout);

    // A probe is not a tunnel: no phase-1 SA is up.
    assert!(phase1_up(&d, POLICY).is_none(), "{}", views(&d));
    assert_alive(&mut d);
}

#[test]
fn ike_scan_unacceptable_transform_gets_no_proposal_chosen() {
    if !common::require_env_or_skip(TOOLS) {
        return;
    }
    let sites = TwoSites::new("iscan-nop");
    let mut d = start(&sites);

    let r = IkeScan::main_mode(A_WAN)
        .transform(Transform::triple_des_md5(2))
        .run(&sites.b);
    println!("ike-scan 3des-md5-modp1024: {:?}", r.reply);
    assert_eq!(
        r.notify(),
        Some(NOTIFY_NO_PROPOSAL_CHOSEN),
        "{}\n{}",
        r.stdout,
        views(&d)
    );
    // ike-scan's default offer: eight DES/3DES transforms, none acceptable.
    let r = IkeScan::main_mode(A_WAN).run(&sites.b);
    println!("ike-scan default transforms: {:?}", r.reply);
    assert_eq!(r.notify(), Some(NOTIFY_NO_PROPOSAL_CHOSEN), "{}", r.stdout);
    // AES-128 with the right hash but a group ikehub does not accept with it.
    let r = IkeScan::main_mode(A_WAN)
        .transform(Transform::aes_sha1(128, 14))
        .run(&sites.b);
    println!("ike-scan aes128-sha1-modp2048: {:?}", r.reply);
    assert_eq!(r.notify(), Some(NOTIFY_NO_PROPOSAL_CHOSEN), "{}", r.stdout);

    let lines = ike::wait_log_mentions(&d, &["no proposal chosen"], Duration::from_secs(5))
        .unwrap_or_else(|| panic!("ikehub did not log \"no proposal chosen\""));
    println!("ikehub:\n{}", lines.join("\n"));
    assert!(
        lines.iter().any(|l| {
            let s = ike::squash(l);
            s.contains("3des") && s.contains("md5")
        }),
        "ikehub's reason does not say what was offered (3DES-MD5-modp1024)"
    );
    assert_alive(&mut d);
}

#[test]
fn ike_scan_aggressive_mode_refused_and_logged() {
    if !common::require_env_or_skip(TOOLS) {
        return;
    }
    let sites = TwoSites::new("iscan-aggr");
    let mut d = start(&sites);

    // An acceptable transform, so only the exchange type can be the reason.
    let r = IkeScan::aggressive(A_WAN, common::netns::B_WAN, 1)
        .transform(Transform::aes_sha1(128, 2))
        .run(&sites.b);
    println!("ike-scan aggressive aes128-sha1-modp1024: {:?}", r.reply);
    assert!(
        matches!(
            r.reply,
            IkeScanReply::Notify { .. } | IkeScanReply::NoResponse
        ),
        "aggressive mode must be refused with a notify or not answered:\n{}\n{}",
        r.stdout,
        views(&d)
    );
    let lines = ike::wait_log_mentions(&d, &["aggressive mode"], Duration::from_secs(5))
        .unwrap_or_else(|| panic!("ikehub did not log why it refused aggressive mode"));
    println!("ikehub:\n{}", lines.join("\n"));
    assert!(phase1_up(&d, POLICY).is_none(), "{}", views(&d));
    assert_alive(&mut d);
}

/// The profile passes `ikehub check`, and the transforms map to the probes above (no root).
#[test]
fn scan_profile_passes_ikehub_check() {
    let p = profile();
    ike::assert_profile_checks("scan", &p);
    assert_eq!(p.isakmp[0].ikescan(), Transform::aes_sha1(128, 2));
    assert_eq!(p.isakmp[1].ikescan(), Transform::aes_sha256(256, 14));
}

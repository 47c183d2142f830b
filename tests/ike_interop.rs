//! IKEv1 end to end against strongSwan (the IKEv1 acceptance cases): ikehub in namespace A
//! (192.0.2.1, protects 198.51.100.0/24), strongSwan 5.9.8 in namespace B (192.0.2.2, protects
//! 203.0.113.0/24), one `ipsec-policy-isakmp` ToBerne keyed by main mode + quick mode with a
//! pre-shared key; pings between 198.51.100.1 and 203.0.113.1 through the tunnel.
//!
//! strongSwan here runs kernel-libipsec, which forces UDP encapsulation: ikehub always sees it
//! as NATed and must float to 4500 and use ESP-in-UDP (`tests/common/strongswan.rs`).
//!
//! What the tests assume of the daemon beyond docs/profiles.md and docs/cli.md is listed in
//! `tests/common/ike.rs` (the JSON shapes of `show isakmp` / `show peers`, "ISAKMP" rows in `show
//! sa`). Failure output includes both daemons' logs and ikehub's `show sa` / `show isakmp` / `show
//! peers`.
//!
//! Needs root, charon, swanctl, ping (+ iperf3, tcpdump, tshark, ike-scan for some). Outside CI
//! the tests skip (with a message) when those are missing; under `CI=true` they fail.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::ike::{
    self, Applied, EXCH_INFORMATIONAL, EXCH_MAIN_MODE, EXCH_QUICK_MODE, EspTransform, IkeEncr,
    IkeHash, IkeProfile, Initiate, IsakmpTransform, POLICY, TUN, UP_TIMEOUT, child_pair, ike_rows,
    isakmp_rows, mentions_any, phase1_up, sa_rows, squash, views, wait_child_sas, wait_last_error,
    wait_no_child_sas, wait_phase1_up,
};
use common::ikescan::{IkeScan, Transform as ScanTransform};
use common::iperf::{IperfServer, iperf3_client};
use common::netns::{A_HOST, A_WAN, B_HOST, B_NET, B_WAN, WAN_DEV, wait_for_route};
use common::sa::SaRow;
use common::strongswan::{Charon, ChildSa, SwanConfig, require_strongswan_or_skip};
use common::tunnel::{Auth, Encr};
use common::{Capture, Daemon, TwoSites, ping, poll_until};

const PSK: &str = "ikehub interop pre-shared key 7d3e91c4";
/// Echo requests per direction.
const PINGS: u32 = 20;
/// strongSwan's connection and child names (the harness defaults).
const CONN: &str = "tun";
const CHILD: &str = "net";
/// `swanctl --initiate --timeout`.
const INITIATE_TIMEOUT: u32 = 20;

// ----- the profiles of each case (also checked by `ikehub check` without root) -------------

fn p1_g14() -> IsakmpTransform {
    IsakmpTransform::new("P1_G14", IkeEncr::Aes128, IkeHash::Sha1, 14)
}

fn p1_3des_md5() -> IsakmpTransform {
    IsakmpTransform::new("P1_3DES_MD5", IkeEncr::TripleDes, IkeHash::Md5, 2)
}

/// Case 1 (and 6): the contract's default, ikehub responder only.
fn profile_default() -> IkeProfile {
    IkeProfile::site_a(PSK)
}

/// Case 2: AES-256 / SHA-256 / group 14 in both phases, PFS group 14, ikehub initiates at start.
fn profile_pfs_aes256() -> IkeProfile {
    IkeProfile::site_a(PSK)
        .isakmp(&[IsakmpTransform::new(
            "P1",
            IkeEncr::Aes256,
            IkeHash::Sha256,
            14,
        )])
        .esp(&[EspTransform::new("P2", Encr::Aes256, Auth::HmacSha256)])
        .pfs(Some(14))
        .initiate(Initiate::Permanent)
}

/// Case 3: 3DES / MD5 / group 2, on demand.
fn profile_on_demand_3des() -> IkeProfile {
    IkeProfile::site_a(PSK)
        .isakmp(&[IsakmpTransform::new(
            "P1",
            IkeEncr::TripleDes,
            IkeHash::Md5,
            2,
        )])
        .esp(&[EspTransform::new("P2", Encr::TripleDes, Auth::HmacMd5)])
        .initiate(Initiate::OnDemand)
}

/// Case 4: phase 1 only AES128-SHA1-G14 (strongSwan offers 3DES-MD5-G2) ...
fn profile_mismatch() -> IkeProfile {
    IkeProfile::site_a(PSK).isakmp(&[p1_g14()])
}

/// ... corrected by accepting 3DES-MD5-G2 too.
fn profile_mismatch_fixed() -> IkeProfile {
    IkeProfile::site_a(PSK).isakmp(&[p1_g14(), p1_3des_md5()])
}

const WRONG_PSK: &str = "not the pre-shared key strongSwan has";

/// Case 5: a PSK that differs from strongSwan's (corrected: [`profile_default`]).
fn profile_wrong_psk() -> IkeProfile {
    IkeProfile::site_a(WRONG_PSK)
}

/// Case 7: phase 2 every 20 s, phase 1 every 40 s, ikehub keeps the tunnel up.
fn profile_short_lifetimes() -> IkeProfile {
    IkeProfile::site_a(PSK)
        .isakmp(&[common::ike::p1_aes128_sha1_g2().lifetime(40)])
        .esp(&[common::ike::p2_aes128_sha1().lifetime(20)])
        .initiate(Initiate::Permanent)
}

/// Case 9: the default suite on demand, so that both strongSwan (first) and `ikehub initiate`
/// (second) can bring it up. (Whether `ikehub initiate` overrides `initiate = "never"` is not
/// assumed anywhere.)
fn profile_on_demand() -> IkeProfile {
    IkeProfile::site_a(PSK).initiate(Initiate::OnDemand)
}

/// Case 8: ikehub initiates at start (and again after its restart).
fn profile_permanent() -> IkeProfile {
    IkeProfile::site_a(PSK).initiate(Initiate::Permanent)
}

// ----- shared steps -------------------------------------------------------------------------

fn start_ikehub(sites: &TwoSites, label: &str, profile: &IkeProfile) -> Daemon {
    Daemon::start(&sites.a, label, |dir| profile.toml(dir))
}

/// Both ends agree the tunnel is up: ikehub lists an ISAKMP IN/OUT SA pair, strongSwan has the
/// CHILD_SA installed, and A routes B's host into the TUN device. Returns the current views.
fn wait_up(sites: &TwoSites, d: &Daemon, swan: &Charon) -> (SaRow, SaRow, ChildSa) {
    wait_child_sas(d, POLICY, UP_TIMEOUT);
    swan.wait_child_installed(CHILD, UP_TIMEOUT);
    wait_for_route(&sites.a, A_HOST, B_HOST, TUN, UP_TIMEOUT);
    // The two views at (nearly) the same moment, SPIs agreeing.
    let agreed = poll_until(Duration::from_secs(10), || {
        let (i, o) = child_pair(&sa_rows(d), POLICY)?;
        let c = swan.installed_child(CHILD)?;
        (i.esp_spi == Some(c.spi_out) && o.esp_spi == Some(c.spi_in)).then_some((i, o, c))
    });
    agreed.unwrap_or_else(|| {
        panic!(
            "ikehub's and strongSwan's SPIs do not agree (ikehub IN = strongSwan out, ikehub \
             OUT = strongSwan in):\n{}\nstrongSwan:\n{}",
            views(d),
            swan.list_sas()
        )
    })
}

/// The `show sa` pair of an IKE-keyed tunnel to strongSwan with transform `esp`.
fn check_sa_pair(sa_in: &SaRow, sa_out: &SaRow, esp: &EspTransform) {
    for r in [sa_in, sa_out] {
        let ctx = format!("{r:#?}");
        assert_eq!(r.sa_type, "ISAKMP", "{ctx}");
        assert_eq!(r.policy, POLICY, "{ctx}");
        assert!(r.peer.starts_with(B_WAN), "peer: {ctx}");
        assert!(r.mode.eq_ignore_ascii_case("tunnel"), "mode: {ctx}");
        assert!(
            r.replay,
            "IKE-keyed SAs check anti-replay by default: {ctx}"
        );
        assert!(
            r.esp_spi.is_some_and(|s| s > 255),
            "ESP SPI must be outside 1-255 (RFC 4303): {ctx}"
        );
        assert_eq!(r.ah_spi, None, "{ctx}");
        assert!(r.esp_enc.is_some() && r.esp_auth.is_some(), "{ctx}");
        assert!(
            r.seconds_limit
                .is_some_and(|s| s > 0 && s <= u64::from(esp.lifetime_seconds)),
            "seconds_limit must be the negotiated lifetime, at most the policy's {} s: {ctx}",
            esp.lifetime_seconds
        );
    }
}

/// strongSwan's CHILD_SA uses `esp`, tunnel mode, UDP-encapsulated.
fn check_swan_child(c: &ChildSa, esp: &EspTransform) {
    let (enc, size, integ) = esp.swan_child_algs();
    assert_eq!(
        (
            c.mode.as_str(),
            c.protocol.as_str(),
            c.encap,
            c.encr_alg.as_str(),
            c.encr_keysize,
            c.integ_alg.as_str()
        ),
        ("TUNNEL", "ESP", true, enc, size, integ),
        "strongSwan's CHILD_SA: {c:#?}"
    );
}

/// `show isakmp`: the phase-1 SA of ToBerne is up with strongSwan (floated to 4500), uses
/// `p1`, and its cookies are strongSwan's IKE_SA SPIs.
fn check_phase1(d: &Daemon, swan: &Charon, p1: &IsakmpTransform) -> ike::IsakmpRow {
    let row = wait_phase1_up(d, POLICY, UP_TIMEOUT);
    let ctx = format!("{row:#?}\n{}", swan.list_sas());
    assert_eq!(
        row.peer,
        format!("{B_WAN}:4500"),
        "strongSwan (NATed) must be reached on 4500: {ctx}"
    );
    let t = squash(row.transform.as_deref().unwrap_or(""));
    for w in p1.expected_words() {
        assert!(t.contains(w), "transform should name {w}: {ctx}");
    }
    let ike_sa = swan
        .sas()
        .into_iter()
        .find(|s| s.state == "ESTABLISHED")
        .unwrap_or_else(|| panic!("strongSwan has no ESTABLISHED IKE_SA: {ctx}"));
    assert_eq!(
        row.cookies(),
        (
            ike_sa.initiator_spi.to_lowercase(),
            ike_sa.responder_spi.to_lowercase()
        ),
        "phase-1 cookies differ from strongSwan's IKE_SA SPIs: {ctx}"
    );
    row
}

/// Pings both ways, `count` each, and requires no loss.
fn ping_both_ways(sites: &TwoSites, count: u32, d: &Daemon) {
    let ab = ping(&sites.a, A_HOST, B_HOST, count);
    let ba = ping(&sites.b, B_HOST, A_HOST, count);
    assert!(
        ab == 0.0 && ba == 0.0,
        "ping through the tunnel lost packets: {A_HOST} -> {B_HOST} {ab}%, {B_HOST} -> {A_HOST} \
         {ba}%\n{}",
        views(d)
    );
}

/// The daemon is alive and its log shows no panic.
fn assert_alive(d: &mut Daemon) {
    assert!(d.is_running(), "daemon {} died", d.label());
    assert!(
        !ike::log_shows_panic(&d.log()),
        "daemon {} logged a panic",
        d.label()
    );
}

/// strongSwan initiates and ikehub's SAs show up; for [`ike::apply_fix`].
fn swan_brings_up(swan: &Charon) -> impl FnMut(&Daemon) -> Result<(), String> + '_ {
    move |d: &Daemon| {
        // A leftover IKE_SA (e.g. one the daemon forgot when it was restarted) would be reused
        // for the quick mode: start from scratch.
        if !swan.sas().is_empty() {
            let _ = swan.terminate_ike(CONN);
            poll_until(Duration::from_secs(10), || {
                swan.sas().is_empty().then_some(())
            });
        }
        swan.initiate(CHILD, INITIATE_TIMEOUT)?;
        poll_until(Duration::from_secs(10), || child_pair(&sa_rows(d), POLICY))
            .map(|_| ())
            .ok_or_else(|| format!("strongSwan is up but ikehub lists no SAs:\n{}", views(d)))
    }
}

// ----- 1. strongSwan initiates, the contract's default suite --------------------------------

#[test]
fn strongswan_initiates_aes128_sha1_modp1024() {
    if !require_strongswan_or_skip(&["ip", "ping", "iperf3"]) {
        return;
    }
    let started = Instant::now();
    let sites = TwoSites::new("ike-ssi");
    let profile = profile_default();
    let mut d = start_ikehub(&sites, "A", &profile);
    let swan = Charon::start(&sites.b, "b", &profile.swan_peer());

    let t0 = Instant::now();
    let out = swan.initiate(CHILD, INITIATE_TIMEOUT).unwrap_or_else(|e| {
        panic!(
            "strongSwan could not bring the tunnel up: {e}\n{}",
            views(&d)
        )
    });
    let t_initiate = t0.elapsed();
    let first = poll_until(Duration::from_secs(10), || {
        (ping(&sites.b, B_HOST, A_HOST, 1) == 0.0).then(Instant::now)
    })
    .unwrap_or_else(|| {
        panic!(
            "no ping through the tunnel within 10 s; swanctl said:\n{out}\n{}",
            views(&d)
        )
    });
    println!(
        "FIGURE ikehub<->strongSwan: swanctl --initiate returned after {} ms; \
         initiate->first ping: {} ms",
        t_initiate.as_millis(),
        (first - t0).as_millis()
    );

    let (sa_in, sa_out, child) = wait_up(&sites, &d, &swan);
    check_sa_pair(&sa_in, &sa_out, &profile.esp[0]);
    check_swan_child(&child, &profile.esp[0]);
    let p1 = check_phase1(&d, &swan, &profile.isakmp[0]);
    println!("show isakmp: {p1:?}");

    ping_both_ways(&sites, PINGS, &d);
    let min = u64::from(2 * PINGS);
    let moved = poll_until(Duration::from_secs(5), || {
        let (i, o) = child_pair(&sa_rows(&d), POLICY)?;
        (i.packets >= min && o.packets >= min).then_some((i, o))
    });
    let (i, o) = moved.unwrap_or_else(|| {
        panic!(
            "packet counters did not move by {min} per direction:\n{}",
            views(&d)
        )
    });
    assert!(i.bytes > 0 && o.bytes > 0, "{i:#?}\n{o:#?}");
    assert_eq!(
        (i.icv_failures, i.replay_drops, i.padding_errors),
        (0, 0, 0),
        "{i:#?}"
    );

    // Bulk, bounded: that it flows, and the figure for the closing note.
    let server = IperfServer::start(&sites.b, B_HOST);
    let res = iperf3_client(&sites.a, A_HOST, B_HOST, 3);
    drop(server);
    let res = res.unwrap_or_else(|e| panic!("iperf3 through the tunnel: {e}\n{}", views(&d)));
    println!(
        "FIGURE ikehub<->strongSwan iperf3: {:.1} Mbit/s (TCP, 3 s, ikehub -> strongSwan, {} bytes)",
        res.bits_per_second / 1e6,
        res.bytes_received
    );
    assert!(res.bytes_received > 0, "{res:?}");

    // strongSwan deletes the IKE_SA: ikehub removes the SAs it keyed.
    swan.terminate_ike(CONN).unwrap_or_else(|e| panic!("{e}"));
    wait_no_child_sas(&d, POLICY, Duration::from_secs(10));
    let p1_gone = poll_until(Duration::from_secs(10), || {
        phase1_up(&d, POLICY).is_none().then_some(())
    });
    assert!(
        p1_gone.is_some(),
        "the phase-1 SA is still up after strongSwan deleted it:\n{}",
        views(&d)
    );
    swan.wait_no_sas(Duration::from_secs(10));
    assert_eq!(
        ping(&sites.a, A_HOST, B_HOST, 1),
        100.0,
        "traffic still passes after terminate"
    );
    assert_alive(&mut d);
    println!("test took {:.1} s", started.elapsed().as_secs_f64());
}

// ----- 2. ikehub initiates at start, PFS ----------------------------------------------------

#[test]
fn ikehub_initiates_with_pfs_aes256_sha256_modp2048() {
    if !require_strongswan_or_skip(&["ip", "ping"]) {
        return;
    }
    let sites = TwoSites::new("ike-pfs");
    let profile = profile_pfs_aes256();
    // strongSwan first: ikehub initiates as soon as it starts.
    let swan = Charon::start(&sites.b, "b", &profile.swan_peer());
    let t0 = Instant::now();
    let mut d = start_ikehub(&sites, "A", &profile);
    let (sa_in, sa_out, child) = wait_up(&sites, &d, &swan);
    println!(
        "permanent: tunnel up {} ms after the daemon was started (no traffic)",
        t0.elapsed().as_millis()
    );
    check_sa_pair(&sa_in, &sa_out, &profile.esp[0]);
    check_swan_child(&child, &profile.esp[0]);
    assert_eq!(
        child.dh_group.as_deref(),
        Some("MODP_2048"),
        "quick mode did not use PFS group 14: {child:#?}"
    );
    let ike_sa = swan.sas().into_iter().next().expect("strongSwan IKE_SA");
    assert!(
        !ike_sa.initiator,
        "strongSwan initiated, not ikehub: {ike_sa:#?}"
    );
    assert_eq!(
        (
            ike_sa.encr_alg.as_str(),
            ike_sa.encr_keysize,
            ike_sa.dh_group.as_str()
        ),
        ("AES_CBC", Some(256), "MODP_2048"),
        "{ike_sa:#?}"
    );
    assert!(ike_sa.integ_alg.contains("SHA2_256"), "{ike_sa:#?}");
    check_phase1(&d, &swan, &profile.isakmp[0]);
    ping_both_ways(&sites, PINGS, &d);
    assert_alive(&mut d);
}

// ----- 3. on demand, 3DES/MD5 ----------------------------------------------------------------

#[test]
fn ikehub_on_demand_3des_md5_modp1024() {
    if !require_strongswan_or_skip(&["ip", "ping"]) {
        return;
    }
    let sites = TwoSites::new("ike-ond");
    let profile = profile_on_demand_3des();
    let swan = Charon::start(&sites.b, "b", &profile.swan_peer());
    let mut d = start_ikehub(&sites, "A", &profile);
    // On demand: the route into the TUN device exists before any SA, and nothing is
    // negotiated without traffic.
    wait_for_route(&sites.a, A_HOST, B_HOST, TUN, UP_TIMEOUT);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        swan.sas().is_empty(),
        "on-demand policy negotiated without traffic:\n{}",
        swan.list_sas()
    );
    assert!(
        ike_rows(&sa_rows(&d), POLICY, "OUT").is_empty(),
        "{}",
        views(&d)
    );

    // The first packet triggers main mode + quick mode; the first few may be lost.
    let t0 = Instant::now();
    let run = ike::ping_run(&sites.a, A_HOST, B_HOST, 20, 0.2);
    println!(
        "on-demand: {} of {} echo requests answered, missing {:?} ({} ms)",
        run.received,
        run.transmitted,
        run.missing(),
        t0.elapsed().as_millis()
    );
    assert!(
        // With -w, ping's -c counts replies: a lost first request means one more is sent.
        run.transmitted >= 20 && run.replied_all(run.transmitted - 4, run.transmitted),
        "the on-demand tunnel did not carry the last pings:\n{}\n{}",
        run.output,
        views(&d)
    );

    let (sa_in, sa_out, child) = wait_up(&sites, &d, &swan);
    check_sa_pair(&sa_in, &sa_out, &profile.esp[0]);
    check_swan_child(&child, &profile.esp[0]);
    let ike_sa = swan.sas().into_iter().next().expect("strongSwan IKE_SA");
    assert!(
        !ike_sa.initiator,
        "ikehub should have initiated: {ike_sa:#?}"
    );
    assert_eq!(
        (
            ike_sa.encr_alg.as_str(),
            ike_sa.integ_alg.as_str(),
            ike_sa.dh_group.as_str()
        ),
        ("3DES_CBC", "HMAC_MD5_96", "MODP_1024"),
        "{ike_sa:#?}"
    );
    check_phase1(&d, &swan, &profile.isakmp[0]);
    ping_both_ways(&sites, PINGS, &d);
    assert_alive(&mut d);
}

// ----- 4-6. misconfigurations: down with the reason on both sides, then corrected ----------

#[test]
fn proposal_mismatch_then_fixed() {
    if !require_strongswan_or_skip(&["ip", "ping"]) {
        return;
    }
    let sites = TwoSites::new("ike-nop");
    let profile = profile_mismatch();
    let mut d = start_ikehub(&sites, "A", &profile);
    // strongSwan offers only 3DES-MD5-G2; ikehub accepts only AES128-SHA1-G14.
    let swan_cfg = profile
        .swan_peer()
        .proposals(&["3des-md5-modp1024"])
        .retransmit(2, 1.0, 1.5);
    let swan = Charon::start(&sites.b, "b", &swan_cfg);
    let err = match swan.initiate(CHILD, INITIATE_TIMEOUT) {
        Ok(out) => panic!(
            "the tunnel came up despite the proposal mismatch:\n{out}\n{}",
            views(&d)
        ),
        Err(e) => e,
    };

    // ikehub: the reason, in operator terms, naming what the peer offered.
    let peer = wait_last_error(&d, POLICY, &["no proposal chosen"], Duration::from_secs(10))
        .unwrap_or_else(|| {
            panic!(
                "show peers: last_error of {POLICY} does not say \"no proposal chosen\":\n{}",
                views(&d)
            )
        });
    let lines = ike::wait_log_mentions(&d, &["no proposal chosen"], Duration::from_secs(5))
        .unwrap_or_else(|| panic!("ikehub did not log \"no proposal chosen\""));
    let reason = format!(
        "{}\n{}",
        peer.last_error.clone().unwrap_or_default(),
        lines.join("\n")
    );
    let r = squash(&reason);
    assert!(
        r.contains("3des") && r.contains("md5"),
        "ikehub's reason does not say what the peer offered (3DES-MD5-modp1024):\n{reason}"
    );
    println!("ikehub's reason: {reason}");
    // strongSwan: the notify it received.
    let swan_log = format!("{err}\n{}", swan.log());
    assert!(
        swan_log.contains("NO_PROPOSAL_CHOSEN"),
        "strongSwan did not log NO_PROPOSAL_CHOSEN"
    );
    assert!(
        child_pair(&sa_rows(&d), POLICY).is_none() && phase1_up(&d, POLICY).is_none(),
        "{}",
        views(&d)
    );
    swan.wait_no_sas(Duration::from_secs(15));
    assert_alive(&mut d);

    // Corrected: ikehub also accepts 3DES-MD5-G2.
    let (mut d, applied) = ike::apply_fix(
        &sites.a,
        d,
        &profile_mismatch_fixed(),
        swan_brings_up(&swan),
    );
    println!("corrected profile applied by {applied:?}");
    let (_, _, child) = wait_up(&sites, &d, &swan);
    check_swan_child(&child, &profile.esp[0]);
    ping_both_ways(&sites, PINGS, &d);
    assert_alive(&mut d);
    if applied == Applied::Restart {
        println!("NOTE: reload did not apply the changed isakmp policy; a restart did");
    }
}

#[test]
fn wrong_psk_then_fixed() {
    if !require_strongswan_or_skip(&["ip", "ping"]) {
        return;
    }
    let sites = TwoSites::new("ike-psk");
    let profile = profile_wrong_psk();
    let mut d = start_ikehub(&sites, "A", &profile);
    // strongSwan has the right key, ikehub (the responder) the wrong one; strongSwan gives up
    // after ~5 s instead of ~165 s.
    let swan_cfg = profile.swan_peer().psk(PSK).retransmit(2, 1.0, 1.5);
    let swan = Charon::start(&sites.b, "b", &swan_cfg);
    let err = match swan.initiate(CHILD, INITIATE_TIMEOUT) {
        Ok(out) => panic!(
            "the tunnel came up with different PSKs:\n{out}\n{}",
            views(&d)
        ),
        Err(e) => e,
    };

    // ikehub: message 5 does not decrypt / HASH_I does not verify: an authentication reason.
    const IKEHUB_REASONS: &[&str] = &[
        "authentication",
        "hash",
        "pre shared key",
        "preshared key",
        "psk",
    ];
    let peer =
        wait_last_error(&d, POLICY, IKEHUB_REASONS, Duration::from_secs(10)).unwrap_or_else(|| {
            panic!(
                "show peers: last_error of {POLICY} does not give an authentication reason \
                 ({IKEHUB_REASONS:?}):\n{}",
                views(&d)
            )
        });
    let logged = poll_until(Duration::from_secs(5), || {
        let w = ike::warn_lines(&d.log());
        let hits: Vec<String> = w
            .into_iter()
            .filter(|l| mentions_any(l, IKEHUB_REASONS))
            .collect();
        (!hits.is_empty()).then_some(hits)
    })
    .unwrap_or_else(|| panic!("ikehub logged no WARN line with an authentication reason"));
    println!(
        "ikehub: last_error {:?}; log:\n{}",
        peer.last_error,
        logged.join("\n")
    );
    // strongSwan: whatever it concluded (see tests/common/strongswan.rs, "Wrong PSK").
    const SWAN_REASONS: &[&str] = &[
        "peer not responding",
        "giving up after",
        "decryption failed",
        "AUTHENTICATION_FAILED",
        "INVALID_HASH_INFORMATION",
        "PAYLOAD_MALFORMED",
        "error notify",
        "message parsing failed",
    ];
    let swan_log = format!("{err}\n{}", swan.log());
    let swan_lines = ike::lines_mentioning(&swan_log, SWAN_REASONS);
    assert!(
        !swan_lines.is_empty(),
        "strongSwan logged none of {SWAN_REASONS:?}"
    );
    println!("strongSwan:\n{}", swan_lines.join("\n"));
    assert!(child_pair(&sa_rows(&d), POLICY).is_none(), "{}", views(&d));
    assert_alive(&mut d);

    // Corrected: the same PSK on both sides.
    let (mut d, applied) = ike::apply_fix(&sites.a, d, &profile_default(), swan_brings_up(&swan));
    println!("corrected profile applied by {applied:?}");
    wait_up(&sites, &d, &swan);
    ping_both_ways(&sites, PINGS, &d);
    assert_alive(&mut d);
}

/// A network outside ikehub's policy (strongSwan asks for 192.0.2.128/25 behind ikehub instead
/// of 198.51.100.0/24): phase 1 succeeds, quick mode is refused with INVALID-ID-INFORMATION.
const FOREIGN_NET: &str = "192.0.2.128/25";

#[test]
fn wrong_protected_networks() {
    if !require_strongswan_or_skip(&["ip", "ping"]) {
        return;
    }
    let sites = TwoSites::new("ike-ids");
    let profile = profile_default();
    let mut d = start_ikehub(&sites, "A", &profile);
    let good = profile.swan_peer().retransmit(2, 1.0, 1.5);
    let wrong = good.clone().ts(B_NET, FOREIGN_NET);
    let mut swan = Charon::start(&sites.b, "b", &wrong);
    let err = match swan.initiate(CHILD, INITIATE_TIMEOUT) {
        Ok(out) => panic!(
            "a CHILD_SA for {FOREIGN_NET} came up although ikehub protects only {}:\n{out}\n{}",
            profile.local_net(),
            views(&d)
        ),
        Err(e) => e,
    };
    let peer = wait_last_error(&d, POLICY, &["invalid id"], Duration::from_secs(10))
        .unwrap_or_else(|| {
            panic!(
                "show peers: last_error of {POLICY} does not say \"invalid id\":\n{}",
                views(&d)
            )
        });
    let logged = poll_until(Duration::from_secs(5), || {
        let hits: Vec<String> = ike::warn_lines(&d.log())
            .into_iter()
            .filter(|l| mentions_any(l, &["invalid id", "192.0.2.128"]))
            .collect();
        (!hits.is_empty()).then_some(hits)
    })
    .unwrap_or_else(|| panic!("ikehub logged no WARN line about the refused identities"));
    println!(
        "ikehub: last_error {:?}; log:\n{}",
        peer.last_error,
        logged.join("\n")
    );
    let swan_log = format!("{err}\n{}", swan.log());
    assert!(
        swan_log.contains("INVALID_ID_INFORMATION"),
        "strongSwan did not log INVALID_ID_INFORMATION"
    );
    assert!(child_pair(&sa_rows(&d), POLICY).is_none(), "{}", views(&d));
    assert!(swan.installed_child(CHILD).is_none(), "{}", swan.list_sas());
    println!("ikehub's phase 1 after the refusal: {:?}", isakmp_rows(&d));
    assert_alive(&mut d);

    // Corrected on the side that was wrong (strongSwan's traffic selectors).
    swan.reload(&good);
    swan.initiate(CHILD, INITIATE_TIMEOUT).unwrap_or_else(|e| {
        panic!(
            "the corrected traffic selectors did not bring the tunnel up: {e}\n{}",
            views(&d)
        )
    });
    wait_up(&sites, &d, &swan);
    ping_both_ways(&sites, PINGS, &d);
    assert_alive(&mut d);
}

// ----- 7. rekeying while traffic flows ------------------------------------------------------

const PINGS_ACROSS_REKEYS: u32 = 260;

#[test]
fn short_lifetimes_rekey_while_traffic_flows() {
    if !require_strongswan_or_skip(&["ip", "ping"]) {
        return;
    }
    let started = Instant::now();
    let sites = TwoSites::new("ike-rekey");
    let profile = profile_short_lifetimes();
    // strongSwan: phase 2 rekey at ~13 s (life 20 s), phase 1 reauth at ~26 s (hard 40 s);
    // ikehub: phase 2 lifetime 20 s, phase 1 40 s. Both ends take turns at renewing.
    let swan_cfg = profile
        .swan_peer()
        .child_lifetime(13, 20, 2)
        .ike_lifetime(26, 14, 2);
    let swan = Charon::start(&sites.b, "b", &swan_cfg);
    let mut d = start_ikehub(&sites, "A", &profile);
    let (in0, out0, child0) = wait_up(&sites, &d, &swan);
    check_sa_pair(&in0, &out0, &profile.esp[0]);
    let p1_0 = wait_phase1_up(&d, POLICY, UP_TIMEOUT);

    // 260 echo requests 0.2 s apart (52 s: three child re-keys and a phase-1 renewal) while
    // ikehub's views are sampled every second.
    let mut out_spis: Vec<u32> = Vec::new();
    let mut cookies: Vec<(String, String)> = Vec::new();
    let mut max_rows = (0usize, 0usize);
    let run = std::thread::scope(|s| {
        let pinger = s.spawn(|| ike::ping_run(&sites.a, A_HOST, B_HOST, PINGS_ACROSS_REKEYS, 0.2));
        while !pinger.is_finished() {
            let rows = sa_rows(&d);
            let ins = ike_rows(&rows, POLICY, "IN");
            let outs = ike_rows(&rows, POLICY, "OUT");
            max_rows = (max_rows.0.max(ins.len()), max_rows.1.max(outs.len()));
            for r in outs {
                if let Some(spi) = r.esp_spi
                    && !out_spis.contains(&spi)
                {
                    out_spis.push(spi);
                }
            }
            for r in isakmp_rows(&d)
                .iter()
                .filter(|r| r.policy == POLICY && r.is_up())
            {
                let c = r.cookies();
                if !cookies.contains(&c) {
                    cookies.push(c);
                }
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        pinger.join().expect("ping thread")
    });
    let (in1, out1) = child_pair(&sa_rows(&d), POLICY)
        .unwrap_or_else(|| panic!("no SAs after 52 s of rekeying:\n{}", views(&d)));
    let p1_1 = wait_phase1_up(&d, POLICY, Duration::from_secs(10));
    let child1 = swan.wait_child_installed(CHILD, Duration::from_secs(10));
    let (log_d, log_s) = (d.log(), swan.log());
    let count = |log: &str, what: &str| log.lines().filter(|l| l.contains(what)).count();
    println!(
        "over 52 s: ping lost {} of {} (missing {:?}); ikehub OUT SPIs {:08x?}; phase-1 \
         cookies {:?}; at most {} IN / {} OUT SAs listed at once; strongSwan logged {} CHILD_SAs \
         and {} IKE_SAs established; test took {:.1} s",
        run.lost(),
        run.transmitted,
        run.missing(),
        out_spis,
        cookies,
        max_rows.0,
        max_rows.1,
        count(&log_s, "established with SPIs"),
        count(&log_s, "] established between"),
        started.elapsed().as_secs_f64()
    );
    println!(
        "ikehub log lines mentioning rekey/renew: {}",
        ike::lines_mentioning(&log_d, &["rekey", "renew", "expire"]).len()
    );
    assert!(
        run.transmitted + 5 >= PINGS_ACROSS_REKEYS,
        "ping did not run: {}",
        run.output
    );
    assert!(
        run.lost() <= 5,
        "{} of {} pings lost across rekeys (missing {:?})",
        run.lost(),
        run.transmitted,
        run.missing()
    );
    assert!(
        out_spis.len() >= 2 && out1.esp_spi != out0.esp_spi && in1.esp_spi != in0.esp_spi,
        "phase 2 was not rekeyed (OUT SPIs seen: {out_spis:08x?})\n{}",
        views(&d)
    );
    assert_ne!(child1.spi_in, child0.spi_in, "strongSwan kept its CHILD_SA");
    assert!(
        cookies.len() >= 2 && p1_1.cookies() != p1_0.cookies(),
        "phase 1 was not renewed (cookies seen: {cookies:?})\n{}",
        views(&d)
    );
    // Old SAs are deleted, not piled up: within a child lifetime there is a moment with at
    // most one SA pair of the policy besides the one being replaced.
    let lean = poll_until(Duration::from_secs(30), || {
        let rows = sa_rows(&d);
        (ike_rows(&rows, POLICY, "IN").len() <= 2 && ike_rows(&rows, POLICY, "OUT").len() <= 2)
            .then_some(())
    });
    assert!(lean.is_some(), "SAs pile up:\n{}", views(&d));
    assert_alive(&mut d);
}

// ----- 8. INITIAL-CONTACT after an ikehub crash ----------------------------------------------

#[test]
fn ikehub_restart_makes_strongswan_replace_sas() {
    if !require_strongswan_or_skip(&["ip", "ping"]) {
        return;
    }
    let sites = TwoSites::new("ike-ic");
    let profile = profile_permanent();
    let swan = Charon::start(&sites.b, "b", &profile.swan_peer());
    let mut first = start_ikehub(&sites, "A-first", &profile);
    let (_, _, child0) = wait_up(&sites, &first, &swan);
    ping_both_ways(&sites, 5, &first);
    let ike0 = swan.sas().into_iter().next().expect("strongSwan IKE_SA");

    // A crash: no delete notifications. strongSwan still holds the old SAs.
    ike::kill_daemon(&sites.a, &mut first);
    assert_eq!(swan.sas().len(), 1, "{}", swan.list_sas());

    let t0 = Instant::now();
    let mut d = start_ikehub(&sites, "A", &profile);
    let back = poll_until(Duration::from_secs(20), || {
        (ping(&sites.a, A_HOST, B_HOST, 1) == 0.0).then(Instant::now)
    });
    let back = back.unwrap_or_else(|| {
        panic!(
            "no ping through the tunnel within 20 s of the restart:\n{}\nstrongSwan:\n{}",
            views(&d),
            swan.list_sas()
        )
    });
    println!("restart -> first ping: {} ms", (back - t0).as_millis());
    // INITIAL-CONTACT: strongSwan replaces the old IKE_SA and CHILD_SA instead of keeping both.
    let settled = poll_until(Duration::from_secs(15), || {
        let sas = swan.sas();
        match sas.as_slice() {
            [one]
                if one.uniqueid != ike0.uniqueid
                    && one.state == "ESTABLISHED"
                    && one.children.len() == 1
                    && one.children[0].state == "INSTALLED" =>
            {
                Some(one.clone())
            }
            _ => None,
        }
    });
    let ike1 = settled.unwrap_or_else(|| {
        panic!(
            "strongSwan did not end with exactly one new IKE_SA and one CHILD_SA (old IKE_SA \
             #{}, SPIs {}/{}):\n{}",
            ike0.uniqueid,
            ike0.initiator_spi,
            ike0.responder_spi,
            swan.list_sas()
        )
    });
    assert_ne!(ike1.children[0].spi_in, child0.spi_in, "{ike1:#?}");
    let log = swan.log();
    println!(
        "strongSwan on INITIAL-CONTACT: {:?}",
        ike::lines_mentioning(&log, &["INITIAL_CONTACT", "initial contact", "deleting"])
    );
    wait_up(&sites, &d, &swan);
    ping_both_ways(&sites, PINGS, &d);
    assert_alive(&mut d);
}

// ----- 9. what ikehub sends, dissected by tshark ----------------------------------------------

#[test]
fn tshark_dissects_ikehub_isakmp_cleanly() {
    if !require_strongswan_or_skip(&["ip", "ping", "tcpdump", "tshark", "ike-scan"]) {
        return;
    }
    let sites = TwoSites::new("ike-ws");
    let profile = profile_on_demand();
    let mut cap = Capture::start(&sites.a, WAN_DEV);
    let mut d = start_ikehub(&sites, "A", &profile);
    let swan = Charon::start(&sites.b, "b", &profile.swan_peer());

    // ikehub's unencrypted NO-PROPOSAL-CHOSEN notify (to ike-scan from B).
    let scan = IkeScan::main_mode(A_WAN)
        .transform(ScanTransform::triple_des_md5(2))
        .run(&sites.b);
    println!("ike-scan 3des-md5: {:?}", scan.reply);
    // ikehub as responder: main mode 2/4/6, quick mode 2; then its deletes.
    swan.initiate(CHILD, INITIATE_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", views(&d)));
    wait_up(&sites, &d, &swan);
    ping_both_ways(&sites, 3, &d);
    ike::terminate(&d, POLICY).unwrap_or_else(|e| panic!("{e}"));
    wait_no_child_sas(&d, POLICY, Duration::from_secs(10));
    swan.wait_no_sas(Duration::from_secs(10));
    // ikehub as initiator: main mode 1/3/5, quick mode 1/3; then its deletes again.
    ike::initiate(&d, POLICY).unwrap_or_else(|e| panic!("{e}\n{}", views(&d)));
    wait_up(&sites, &d, &swan);
    ping_both_ways(&sites, 3, &d);
    ike::terminate(&d, POLICY).unwrap_or_else(|e| panic!("{e}"));
    wait_no_child_sas(&d, POLICY, Duration::from_secs(10));
    swan.wait_no_sas(Duration::from_secs(10));
    assert_alive(&mut d);

    let pcap = cap.finish().to_path_buf();
    let sent = ike::decode_udp_from(&pcap, A_WAN, &[]);
    let isakmp: Vec<_> = sent.iter().filter(|p| p.is_isakmp()).collect();
    for p in &isakmp {
        println!(
            "frame {:>4} {}:{} -> {}:{} exchange {:>2} notify {:?} expert {:?}",
            p.frame,
            p.src,
            p.sport,
            p.dst,
            p.dport,
            p.isakmp_exchange.unwrap_or(0),
            p.notify_types,
            p.expert
        );
    }
    let undissected: Vec<_> = sent
        .iter()
        .filter(|p| !(p.is_isakmp() || p.esp_spi.is_some() || p.is_keepalive()))
        .collect();
    assert!(
        undissected.is_empty(),
        "UDP datagrams from ikehub that tshark does not dissect as ISAKMP, ESP or a NAT \
         keepalive: {undissected:#?}"
    );
    let bad: Vec<_> = sent
        .iter()
        .filter(|p| p.malformed || !p.warnings().is_empty())
        .collect();
    assert!(
        bad.is_empty(),
        "tshark flags datagrams from ikehub as malformed or warns about them: {bad:#?}"
    );
    for p in &isakmp {
        assert_eq!(p.isakmp_version, Some(0x10), "not IKEv1: {p:#?}");
        assert!(
            matches!(
                p.isakmp_exchange,
                Some(EXCH_MAIN_MODE | EXCH_QUICK_MODE | EXCH_INFORMATIONAL)
            ),
            "unexpected exchange type: {p:#?}"
        );
    }
    let count = |x: u8| {
        isakmp
            .iter()
            .filter(|p| p.isakmp_exchange == Some(x))
            .count()
    };
    assert!(
        count(EXCH_MAIN_MODE) >= 6,
        "main mode: 3 messages as responder + 3 as initiator expected"
    );
    assert!(
        count(EXCH_QUICK_MODE) >= 3,
        "quick mode: 1 as responder + 2 as initiator expected"
    );
    assert!(
        count(EXCH_INFORMATIONAL) >= 3,
        "informational: the notify to ike-scan and the deletes of two terminates expected"
    );
    assert!(
        isakmp
            .iter()
            .any(|p| p.isakmp_exchange == Some(EXCH_INFORMATIONAL) && p.notify_types.contains(&14)),
        "no NO-PROPOSAL-CHOSEN notify (14) from ikehub on the wire"
    );
    assert!(
        isakmp.iter().any(|p| p.sport == 4500 && p.dst == B_WAN),
        "ikehub never floated to 4500 with strongSwan (NATed)"
    );
    let ports: BTreeSet<(u16, u16)> = isakmp.iter().map(|p| (p.sport, p.dport)).collect();
    println!(
        "ikehub sent {} ISAKMP messages (main mode {}, quick mode {}, informational {}), \
         ports {ports:?}; {} ESP-in-UDP, {} keepalives",
        isakmp.len(),
        count(EXCH_MAIN_MODE),
        count(EXCH_QUICK_MODE),
        count(EXCH_INFORMATIONAL),
        sent.iter().filter(|p| p.esp_spi.is_some()).count(),
        sent.iter().filter(|p| p.is_keepalive()).count()
    );
}

// ----- harness self-tests ---------------------------------------------------------------------

/// The checks of [`tshark_dissects_ikehub_isakmp_cleanly`] applied to strongSwan talking to
/// strongSwan: well-formed IKEv1 (main mode, quick mode, deletes, ESP-in-UDP) passes them, so
/// a failure with ikehub is ikehub's.
#[test]
fn harness_strongswan_pair_dissects_cleanly() {
    if !require_strongswan_or_skip(&["ip", "ping", "tcpdump", "tshark"]) {
        return;
    }
    let sites = TwoSites::new("ike-wsbase");
    let mut cap = Capture::start(&sites.a, WAN_DEV);
    // strongSwan in A with the connection strongSwan in B has with ikehub, mirrored.
    let cfg_a = profile_default().swan_peer().mirrored();
    let a = Charon::start(&sites.a, "a", &cfg_a);
    let b = Charon::start(&sites.b, "b", &profile_default().swan_peer());
    a.initiate(CHILD, INITIATE_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ping(&sites.a, A_HOST, B_HOST, 3), 0.0);
    a.terminate_ike(CONN).unwrap_or_else(|e| panic!("{e}"));
    a.wait_no_sas(Duration::from_secs(10));
    b.wait_no_sas(Duration::from_secs(10));
    let pcap = cap.finish().to_path_buf();
    for src in [A_WAN, B_WAN] {
        let sent = ike::decode_udp_from(&pcap, src, &[]);
        let isakmp = sent.iter().filter(|p| p.is_isakmp()).count();
        assert!(isakmp >= 4, "{src}: {sent:#?}");
        let odd: Vec<_> = sent
            .iter()
            .filter(|p| {
                !(p.is_isakmp() || p.esp_spi.is_some() || p.is_keepalive())
                    || p.malformed
                    || !p.warnings().is_empty()
            })
            .collect();
        assert!(odd.is_empty(), "{src}: {odd:#?}");
        println!(
            "{src}: {isakmp} ISAKMP, {} ESP-in-UDP, expert items {:?}",
            sent.iter().filter(|p| p.esp_spi.is_some()).count(),
            sent.iter()
                .flat_map(|p| p.expert.clone())
                .collect::<Vec<_>>()
        );
    }
    // A deliberately broken datagram is caught by the same checks.
    let dir = common::TempDir::new("broken-isakmp");
    let mut isakmp = vec![0u8; 28];
    isakmp[8] = 1;
    isakmp[16] = 1; // next payload: SA
    isakmp[17] = 0x10;
    isakmp[18] = EXCH_MAIN_MODE;
    isakmp[27] = 60; // length 60, but the SA payload that follows is cut short
    isakmp.extend_from_slice(&[0, 0, 0, 40]);
    let a = common::refpkt::addr(A_WAN);
    let b = common::refpkt::addr(B_WAN);
    let pkt = common::refpkt::ipv4(a, b, 17, 1, &common::refpkt::udp(500, 500, &isakmp));
    let file = dir.join("broken.pcap");
    std::fs::write(&file, common::refpkt::pcap_raw_ip(&[pkt])).expect("writing pcap");
    let sent = ike::decode_udp_from(&file, A_WAN, &[]);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert!(
        sent[0].malformed && !sent[0].warnings().is_empty(),
        "{sent:#?}"
    );
    // The strongSwan harness's decoder (used by the two-daemon tests) catches it too.
    let wire = common::strongswan::decode_ike_wire(&file);
    assert_eq!(wire.len(), 1, "{wire:#?}");
    assert!(wire[0].malformed, "{wire:#?}");
}

// ----- no root needed -------------------------------------------------------------------------

/// Every profile this file runs passes `ikehub check` (the part of the contract that works
/// already), and the strongSwan counterpart names the same algorithms.
#[test]
fn interop_profiles_pass_ikehub_check() {
    let profiles = [
        ("default", profile_default()),
        ("pfs-aes256", profile_pfs_aes256()),
        ("on-demand-3des", profile_on_demand_3des()),
        ("mismatch", profile_mismatch()),
        ("mismatch-fixed", profile_mismatch_fixed()),
        ("wrong-psk", profile_wrong_psk()),
        ("short-lifetimes", profile_short_lifetimes()),
        ("permanent", profile_permanent()),
        ("on-demand", profile_on_demand()),
    ];
    for (label, p) in &profiles {
        let summary = ike::assert_profile_checks(label, p);
        assert!(summary.contains(POLICY), "{label}: summary:\n{summary}");
    }
    let swan: SwanConfig = profile_pfs_aes256().swan_peer();
    assert_eq!(swan.proposals, ["aes256-sha256-modp2048"]);
    assert_eq!(swan.esp_proposals, ["aes256-sha256-modp2048"]);
    assert_eq!(
        (swan.local_addr.as_str(), swan.remote_addr.as_str()),
        (B_WAN, A_WAN)
    );
    assert_eq!(swan.local_ts, [B_NET]);
    let swan = profile_on_demand_3des().swan_peer();
    assert_eq!(swan.proposals, ["3des-md5-modp1024"]);
    assert_eq!(swan.esp_proposals, ["3des-md5"]);
    assert_eq!(
        profile_default().isakmp[0].ikescan().arg(),
        ScanTransform::aes_sha1(128, 2).arg()
    );
}

/// The helpers' text handling on recorded output.
#[test]
fn ike_helpers_parse_recorded_output() {
    let out = "PING 203.0.113.1 (203.0.113.1) from 198.51.100.1 : 56(84) bytes of data.\n\
        64 bytes from 203.0.113.1: icmp_seq=3 ttl=64 time=0.311 ms\n\
        64 bytes from 203.0.113.1: icmp_seq=4 ttl=64 time=0.120 ms\n\
        \n--- 203.0.113.1 ping statistics ---\n\
        4 packets transmitted, 2 received, 50% packet loss, time 603ms\n";
    let run = ike::parse_ping_run(out);
    assert_eq!((run.transmitted, run.received, run.lost()), (4, 2, 2));
    assert!(run.replied_all(3, 4) && !run.replied_all(2, 4));
    assert_eq!(run.missing(), [1, 2]);
    assert!(ike::mentions(
        "WARN ToBerne: NO-PROPOSAL-CHOSEN: peer offered 3DES-MD5-modp1024",
        "no proposal chosen"
    ));
    assert!(ike::mentions(
        "received NO_PROPOSAL_CHOSEN error notify",
        "no proposal chosen"
    ));
    assert!(!ike::mentions("proposal chosen", "no proposal chosen"));
    assert_eq!(squash("AES128-SHA1-modp1024"), "aes128sha1modp1024");
    let coloured =
        "\x1b[2m2026-11-27T11:28:35Z\x1b[0m \x1b[33m WARN\x1b[0m ToBerne: no proposal chosen";
    assert_eq!(
        ike::strip_ansi(coloured),
        "2026-11-27T11:28:35Z  WARN ToBerne: no proposal chosen"
    );
    assert_eq!(ike::warn_lines(coloured).len(), 1);
    let row: ike::IsakmpRow = serde_json::from_str(
        r#"{"policy":"ToBerne","peer":"192.0.2.2:4500","state":"up",
            "initiator_cookie":"A10237B62551B1B5","responder_cookie":"0xccf524faf45d8c39",
            "transform":"AES128-SHA1-modp1024","age_seconds":3,"lifetime_seconds":28800,
            "child_sas":1,"last_error":null}"#,
    )
    .expect("contract shape");
    assert_eq!(
        row.cookies(),
        ("a10237b62551b1b5".into(), "ccf524faf45d8c39".into())
    );
    let peer: ike::PeerRow = serde_json::from_str(
        r#"{"policy":"ToBerne","type":"ISAKMP","peer":"192.0.2.2","state":"down",
            "child_sas":0,"last_error":"no proposal chosen: peer offered 3DES-MD5-modp1024"}"#,
    )
    .expect("contract shape");
    assert_eq!(peer.kind, "ISAKMP");
}

// ----- 10. dead peer detection (RFC 3706) ---------------------------------------------------

/// The tunnel is up and idle; strongSwan dies without a word (SIGKILL): ikehub's R-U-THERE
/// probes go unanswered, the peer is declared dead after the DPD timeout, its SAs are removed
/// and `show peers` says why. While strongSwan was alive, its own DPD probes were answered.
#[test]
fn dead_peer_detected_and_sas_cleared() {
    if !require_strongswan_or_skip(&["ip", "ping"]) {
        return;
    }
    let sites = TwoSites::new("ike-dpd");
    let profile = profile_default().dpd(2, 6);
    let d = start_ikehub(&sites, "A", &profile);
    let swan_cfg = profile.swan_peer().dpd(2, 30, "clear");
    let mut swan = Charon::start(&sites.b, "b", &swan_cfg);
    swan.initiate(CHILD, INITIATE_TIMEOUT)
        .unwrap_or_else(|e| panic!("strongSwan could not initiate: {e}\n{}", views(&d)));
    wait_up(&sites, &d, &swan);
    // Idle for a few DPD intervals: both ends probe and answer, nothing goes down.
    std::thread::sleep(Duration::from_secs(7));
    assert!(
        child_pair(&sa_rows(&d), POLICY).is_some(),
        "the tunnel went down while the peer was alive:\n{}",
        views(&d)
    );
    swan.kill();
    let gone = poll_until(Duration::from_secs(25), || {
        child_pair(&sa_rows(&d), POLICY).is_none().then_some(())
    });
    assert!(
        gone.is_some(),
        "SAs of a dead peer were not removed:\n{}",
        views(&d)
    );
    let peer = wait_last_error(&d, POLICY, &["dead"], Duration::from_secs(5));
    assert!(
        peer.is_some(),
        "show peers does not say the peer is dead:\n{}",
        views(&d)
    );
}

//! Forged IKE from an established peer's address (docs/design.md: IKE demultiplexing), between two
//! ikehub daemons in namespaces: A (192.0.2.1) initiates at start, B (192.0.2.2) is the hub that
//! answers.
//!
//! The forger runs in A's namespace with a raw socket (IP_HDRINCL), so it can put any source
//! address and port on a main-mode message 1 that ikehub itself built (a real offer B accepts:
//! B spends state on it, as on a real initiator). A burst and then a steady trickle come from
//! A's own address, on other ports and on A's very port 500. The tunnel must go on carrying
//! traffic, B must keep A where it is, and A must be able to come back after its own restart
//! while the trickle goes on.
//!
//! Needs root, ip, ping, python3. Outside CI the test skips (with a message) when those are
//! missing; under `CI=true` it fails.

mod common;

use common::hub::{finish_ping, spawn_ping};
use common::ike::{
    self, IkeProfile, Initiate, POLICY, UP_TIMEOUT, child_pair, sa_rows, views, wait_child_sas,
};
use common::netns::{A_HOST, A_WAN, B_HOST, B_WAN, wait_for_route};
use common::{Daemon, TwoSites, forge, ping};

const PSK: &str = "ikehub isolation pre-shared key 5d1c";
const TOOLS: &[&str] = &["ip", "ping", "python3"];

fn profile_a() -> IkeProfile {
    IkeProfile::site_a(PSK).initiate(Initiate::Permanent)
}

fn profile_b() -> IkeProfile {
    profile_a().mirrored().initiate(Initiate::Never)
}

/// The router's counters from `show counters --json`.
fn ike_counters(d: &Daemon) -> serde_json::Value {
    let v = ike::show_json(d, "counters").unwrap_or(serde_json::Value::Null);
    v.as_array()
        .and_then(|a| a.iter().find_map(|e| e.get("ike").cloned()))
        .unwrap_or(serde_json::Value::Null)
}

#[test]
fn forged_message_1s_from_an_established_peer_leave_the_tunnel_up() {
    if !common::require_env_or_skip(TOOLS) {
        return;
    }
    let sites = TwoSites::new("forged-mm1");
    let db = Daemon::start(&sites.b, "B", |dir| profile_b().toml(dir));
    let mut da = Daemon::start(&sites.a, "A", |dir| profile_a().toml(dir));
    let (b_in, _) = wait_child_sas(&db, POLICY, UP_TIMEOUT);
    wait_child_sas(&da, POLICY, UP_TIMEOUT);
    wait_for_route(&sites.a, A_HOST, B_HOST, ike::TUN, UP_TIMEOUT);
    wait_for_route(&sites.b, B_HOST, A_HOST, ike::TUN, UP_TIMEOUT);
    assert_eq!(ping(&sites.a, A_HOST, B_HOST, 3), 0.0, "tunnel up");
    let msg = forge::main_mode_1(&profile_a(), db.dir());

    // A burst from A's address on 48 other ports and 16 on its own port 500, then a trickle,
    // while traffic flows.
    let pinger = spawn_ping(&sites.a, A_HOST, B_HOST, 40, 0.2);
    let burst = forge::spawn_forger(
        &sites.a,
        B_WAN,
        &msg,
        &[
            (A_WAN, 40000, 48, 0.0),
            (A_WAN, 500, 16, 0.0),
            (A_WAN, 41000, 10, 0.3),
            (A_WAN, 500, 10, 0.3),
        ],
    );
    forge::finish(burst);
    let run = finish_ping(pinger);
    assert!(
        run.lost() <= 1,
        "the tunnel stopped carrying traffic under forged message 1s: {run:?}\nB:\n{}",
        views(&db)
    );
    // B still has A where A is, the same child SA, and A's peer row is not failed.
    // (The forged exchanges on other ports are listed too, each its own half-open session.)
    let rows = ike::peer_rows(&db);
    let up: Vec<_> = rows.iter().filter(|r| r.state == "up").collect();
    assert_eq!(up.len(), 1, "{rows:#?}");
    assert_eq!(up[0].peer, format!("{A_WAN}:500"), "{rows:#?}");
    assert!(
        rows.iter().all(|r| r.state != "failed"),
        "a forged exchange marked a peer failed: {rows:#?}"
    );
    let (b_in_now, _) = child_pair(&sa_rows(&db), POLICY).expect("B's child SA");
    assert_eq!(
        b_in_now.esp_spi, b_in.esp_spi,
        "the child SA was not replaced"
    );
    let c = ike_counters(&db);
    println!("B's IKE counters after the burst: {c}");

    // A restarts while forged message 1s keep coming from its address and port: it must come
    // back (its INITIAL-CONTACT replaces the old SAs on B).
    let trickle = forge::spawn_forger(&sites.a, B_WAN, &msg, &[(A_WAN, 500, 40, 0.25)]);
    drop(da);
    da = Daemon::start(&sites.a, "A", |dir| profile_a().toml(dir));
    let up = common::poll_until(UP_TIMEOUT, || {
        let (a_in, a_out) = child_pair(&sa_rows(&da), POLICY)?;
        let (b_in, b_out) = child_pair(&sa_rows(&db), POLICY)?;
        (a_out.esp_spi == b_in.esp_spi && a_in.esp_spi == b_out.esp_spi).then_some(())
    });
    assert!(
        up.is_some(),
        "A did not come back after its restart under forged message 1s\nA:\n{}\nB:\n{}\nB log:\n{}",
        views(&da),
        views(&db),
        db.log()
    );
    wait_for_route(&sites.a, A_HOST, B_HOST, ike::TUN, UP_TIMEOUT);
    assert_eq!(
        ping(&sites.a, A_HOST, B_HOST, 5),
        0.0,
        "tunnel back after restart"
    );
    forge::finish(trickle);
    let c = ike_counters(&db);
    println!("B's IKE counters at the end: {c}");
    assert!(
        c["peers_started"].as_u64().unwrap_or(0) >= 48,
        "the forged exchanges on other ports each got a half-open session: {c}"
    );
    assert!(!ike::log_shows_panic(&db.log()), "B panicked");
}

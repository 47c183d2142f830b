//! ESP-in-UDP with UDP GSO/GRO (issue 12 point 2): bursts of cleartext leave the daemon as
//! GSO sends, and what reaches the wire is still one ordinary ESP-in-UDP datagram per packet,
//! each decrypted and verified by tshark with the configured keys.
//!
//! A veth passes a GSO send to the other namespace in one piece; `TwoSites` makes each WAN
//! device segment GSO sends in software (`cut_gso_before_the_wire`), so the capture sees what a
//! NIC would put on the wire.
//!
//! Needs root and ip, ping, tcpdump, tshark. Outside CI the test skips (with a message)
//! when those are missing; under `CI=true` it fails.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::daemon::{shard_counter, show_sa_json};
use common::netns::{A_HOST, A_WAN, B_HOST, B_WAN, WAN_DEV, wait_for_route};
use common::sa::parse_rows;
use common::tunnel::{AES128_SHA1, Auth, Encapsulation, ManualPair, POLICY, Side};
use common::wireshark::{WiresharkConfig, decode_ipsec};
use common::{Capture, Daemon, Netns, TwoSites};

const TOOLS: &[&str] = &["ip", "ping", "tcpdump", "tshark"];
const TUN: &str = "ikehub0";
const UP_TIMEOUT: Duration = Duration::from_secs(20);
/// Echo requests sent back to back per burst (`ping -l`): the daemon reads them from its TUN
/// queue together and sends them as one GSO run.
const BURST: u32 = 16;
/// Bursts at most, until both daemons have sent GSO runs (bounded, no timing assumption).
const MAX_BURSTS: u32 = 20;

fn wait_until_up(ns: &Netns, d: &Daemon, side: Side, other: Side) {
    wait_for_route(
        ns,
        ManualPair::host(side),
        ManualPair::host(other),
        TUN,
        UP_TIMEOUT,
    );
    let up = common::poll_until(UP_TIMEOUT, || {
        let r = parse_rows(&show_sa_json(d));
        let has = |dir: &str| r.iter().any(|x| x.policy == POLICY && x.direction == dir);
        (has("IN") && has("OUT")).then_some(())
    });
    assert!(up.is_some(), "{side:?}: SAs of {POLICY} not listed");
}

/// One burst of `BURST` echo requests of 1000 bytes, all sent before the first reply;
/// returns the number of replies.
fn burst(ns: &Netns) -> u32 {
    let out = ns
        .command("ping")
        .args([
            "-n",
            "-q",
            "-l",
            &BURST.to_string(),
            "-c",
            &BURST.to_string(),
        ])
        .args(["-s", "1000", "-W", "2", "-w", "5", "-I", A_HOST, B_HOST])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ping: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let loss = common::netns::parse_ping_loss(&stdout).unwrap_or(100.0);
    (f64::from(BURST) * (100.0 - loss) / 100.0).round() as u32
}

#[test]
fn gso_bursts_reach_the_wire_as_verified_esp_in_udp() {
    if !common::require_env_or_skip(TOOLS) {
        return;
    }
    let pair = ManualPair::new(AES128_SHA1, Encapsulation::Udp);
    let sites = TwoSites::new("gso");
    let mut da = Daemon::start(&sites.a, "A", |dir| pair.profile(Side::A, dir));
    let mut db = Daemon::start(&sites.b, "B", |dir| pair.profile(Side::B, dir));
    wait_until_up(&sites.a, &da, Side::A, Side::B);
    wait_until_up(&sites.b, &db, Side::B, Side::A);

    let mut cap = Capture::start(&sites.a, WAN_DEV);
    let mut bursts = 0;
    while bursts < MAX_BURSTS {
        bursts += 1;
        assert_eq!(burst(&sites.a), BURST, "burst {bursts} lost echo replies");
        if shard_counter(&da, "udp_gso_sends") > 0 && shard_counter(&db, "udp_gso_sends") > 0 {
            break;
        }
    }
    let pcap = cap.finish().to_path_buf();
    let (gso_a, gso_b) = (
        shard_counter(&da, "udp_gso_sends"),
        shard_counter(&db, "udp_gso_sends"),
    );
    assert!(
        gso_a > 0 && gso_b > 0,
        "no GSO send after {bursts} bursts of {BURST}: A {gso_a}, B {gso_b}"
    );

    // Every request and every reply is its own datagram on the wire, decrypted and verified.
    let pkts = decode_ipsec(&pcap, &WiresharkConfig::new(&pair.esp_sa_entries()));
    assert_eq!(
        pkts.len(),
        (2 * BURST * bursts) as usize,
        "ESP packets on the wire after {bursts} bursts: {pkts:#?}"
    );
    for p in &pkts {
        let keys = match (p.src.as_str(), p.dst.as_str()) {
            (A_WAN, B_WAN) => &pair.a_to_b,
            (B_WAN, A_WAN) => &pair.b_to_a,
            _ => panic!("unexpected outer addresses: {p:#?}"),
        };
        assert_eq!(p.udp_dport, Some(4500), "{p:#?}");
        assert_eq!(p.esp_spi, keys.esp_spi, "{p:#?}");
        assert!(p.decrypted, "tshark could not decrypt: {p:#?}");
        assert_ne!(pair.transform.esp_authentication, Auth::None);
        assert_eq!(p.esp_icv_good, Some(true), "bad ICV: {p:#?}");
        assert_eq!(p.inner_proto, Some(1), "{p:#?}");
        assert!(matches!(p.icmp_type, Some(0 | 8)), "{p:#?}");
    }
    assert!(da.is_running(), "daemon A died; log:\n{}", da.log());
    assert!(db.is_running(), "daemon B died; log:\n{}", db.log());
}

//! Two ikehub daemons keyed by IKEv1 (acceptance: "Two ikehub daemons in namespaces
//! keyed by IKE without NAT (raw ESP) and with NAT-T forced"). A (192.0.2.1, protects
//! 198.51.100.0/24) initiates at start (`initiate = "permanent"`), B (192.0.2.2, protects
//! 203.0.113.0/24) only responds (`initiate = "never"`).
//!
//! NAT-T is forced without a third namespace: an nftables source-port translation in A
//! (UDP 500 -> 1500, 4500 -> 14500, address unchanged, [`common::ike::port_nat`]) makes the
//! NAT-D hashes disagree, so both ends detect a NAT, float to 4500 and switch to ESP-in-UDP,
//! and B sees A at the translated ports.
//!
//! Needs root, ip, ping, tcpdump, tshark, nft. Outside CI the tests skip (with a message) when
//! those are missing; under `CI=true` they fail.

mod common;

use std::time::Duration;

use common::ike::{
    self, EXCH_MAIN_MODE, IkeProfile, Initiate, POLICY, TUN, UP_TIMEOUT, child_pair, sa_rows,
    views, wait_child_sas, wait_phase1_up,
};
use common::netns::{A_HOST, A_WAN, B_HOST, B_WAN, WAN_DEV, wait_for_route};
use common::sa::SaRow;
use common::strongswan::decode_ike_wire;
use common::{Capture, Daemon, TwoSites, ping, poll_until};

const PSK: &str = "ikehub pair pre-shared key 3b8e0f52";
const TOOLS: &[&str] = &["ip", "ping", "tcpdump", "tshark"];
/// Echo requests per direction.
const PINGS: u32 = 20;
/// The ports A's UDP 500 and 4500 are translated to in the NAT-T case.
const NAT_IKE_PORT: u16 = 1500;
const NAT_NATT_PORT: u16 = 14500;

fn profile_a() -> IkeProfile {
    IkeProfile::site_a(PSK).initiate(Initiate::Permanent)
}

fn profile_b() -> IkeProfile {
    profile_a().mirrored().initiate(Initiate::Never)
}

/// Starts B (responder) then A (initiates at start), and waits until both list an ISAKMP SA
/// pair whose SPIs agree (A's OUT = B's IN and the reverse) and both route the other side's
/// host into their TUN device. Returns ((A in, A out), (B in, B out)).
fn start_pair(sites: &TwoSites) -> (Daemon, Daemon, (SaRow, SaRow), (SaRow, SaRow)) {
    let db = Daemon::start(&sites.b, "B", |dir| profile_b().toml(dir));
    let da = Daemon::start(&sites.a, "A", |dir| profile_a().toml(dir));
    wait_child_sas(&da, POLICY, UP_TIMEOUT);
    wait_child_sas(&db, POLICY, UP_TIMEOUT);
    wait_for_route(&sites.a, A_HOST, B_HOST, TUN, UP_TIMEOUT);
    wait_for_route(&sites.b, B_HOST, A_HOST, TUN, UP_TIMEOUT);
    let agreed = poll_until(Duration::from_secs(10), || {
        let a = child_pair(&sa_rows(&da), POLICY)?;
        let b = child_pair(&sa_rows(&db), POLICY)?;
        (a.1.esp_spi == b.0.esp_spi && a.0.esp_spi == b.1.esp_spi).then_some((a, b))
    });
    let (a, b) = agreed.unwrap_or_else(|| {
        panic!(
            "the daemons' SPIs do not agree:\nA:\n{}\nB:\n{}",
            views(&da),
            views(&db)
        )
    });
    for (side, (i, o), peer) in [("A", &a, B_WAN), ("B", &b, A_WAN)] {
        for r in [i, o] {
            assert_eq!(r.sa_type, "ISAKMP", "{side}: {r:#?}");
            assert!(r.peer.starts_with(peer), "{side}: {r:#?}");
            assert!(r.esp_spi.is_some_and(|s| s > 255), "{side}: {r:#?}");
            assert!(r.replay, "{side}: anti-replay on by default: {r:#?}");
        }
    }
    (da, db, a, b)
}

/// Pings both ways without loss, then waits until every SA of both daemons counted them.
fn traffic(sites: &TwoSites, da: &Daemon, db: &Daemon) {
    let ab = ping(&sites.a, A_HOST, B_HOST, PINGS);
    let ba = ping(&sites.b, B_HOST, A_HOST, PINGS);
    assert!(
        ab == 0.0 && ba == 0.0,
        "ping lost packets: A->B {ab}%, B->A {ba}%\nA:\n{}\nB:\n{}",
        views(da),
        views(db)
    );
    let min = u64::from(2 * PINGS);
    let counted = poll_until(Duration::from_secs(5), || {
        let a = child_pair(&sa_rows(da), POLICY)?;
        let b = child_pair(&sa_rows(db), POLICY)?;
        [&a.0, &a.1, &b.0, &b.1]
            .iter()
            .all(|r| r.packets >= min && r.icv_failures == 0)
            .then_some(())
    });
    assert!(
        counted.is_some(),
        "SA counters did not reach {min} packets each:\nA:\n{}\nB:\n{}",
        views(da),
        views(db)
    );
}

fn assert_alive(d: &mut Daemon) {
    assert!(d.is_running(), "daemon {} died", d.label());
    assert!(
        !ike::log_shows_panic(&d.log()),
        "daemon {} logged a panic",
        d.label()
    );
}

#[test]
fn two_daemons_ike_without_nat_use_raw_esp() {
    if !common::require_env_or_skip(TOOLS) {
        return;
    }
    let sites = TwoSites::new("ike-raw");
    let mut cap = Capture::start(&sites.a, WAN_DEV);
    let (mut da, mut db, (a_in, a_out), _) = start_pair(&sites);
    traffic(&sites, &da, &db);

    // Phase 1 without NAT stays on port 500 at both ends.
    let p1a = wait_phase1_up(&da, POLICY, UP_TIMEOUT);
    let p1b = wait_phase1_up(&db, POLICY, UP_TIMEOUT);
    assert_eq!(p1a.peer, format!("{B_WAN}:500"), "{p1a:#?}");
    assert_eq!(p1b.peer, format!("{A_WAN}:500"), "{p1b:#?}");
    assert_eq!(p1a.cookies(), p1b.cookies(), "A: {p1a:#?}\nB: {p1b:#?}");

    let pcap = cap.finish().to_path_buf();
    let wire = decode_ike_wire(&pcap);
    let esp: Vec<_> = wire.iter().filter(|p| p.esp_spi.is_some()).collect();
    assert!(
        esp.len() >= 4 * PINGS as usize,
        "{} ESP packets on the wire",
        esp.len()
    );
    let in_udp: Vec<_> = esp.iter().filter(|p| !p.raw_esp).collect();
    assert!(
        in_udp.is_empty(),
        "ESP in UDP without a NAT (expected raw IP protocol 50): {in_udp:#?}"
    );
    for p in &esp {
        assert!(
            p.esp_spi == a_out.esp_spi || p.esp_spi == a_in.esp_spi,
            "ESP with an SPI neither daemon lists: {p:#?}"
        );
    }
    // RFC 3947 section 4: the initiator changes to port 4500 only when a NAT was detected.
    let isakmp: Vec<_> = wire.iter().filter(|p| p.is_isakmp()).collect();
    assert!(
        isakmp.len() >= 9,
        "main mode (6) + quick mode (3) expected: {isakmp:#?}"
    );
    assert!(
        isakmp
            .iter()
            .all(|p| p.sport == Some(500) && p.dport == Some(500)),
        "ISAKMP left port 500 although there is no NAT: {isakmp:#?}"
    );
    assert!(
        isakmp
            .iter()
            .filter(|p| p.isakmp_exchange == Some(EXCH_MAIN_MODE))
            .count()
            >= 6
    );
    for src in [A_WAN, B_WAN] {
        let bad: Vec<_> = ike::decode_udp_from(&pcap, src, &[])
            .into_iter()
            .filter(|p| p.malformed || !p.warnings().is_empty())
            .collect();
        assert!(
            bad.is_empty(),
            "tshark: malformed datagrams from {src}: {bad:#?}"
        );
    }
    println!(
        "no NAT: {} ISAKMP on 500, {} raw ESP packets",
        isakmp.len(),
        esp.len()
    );
    assert_alive(&mut da);
    assert_alive(&mut db);
}

#[test]
fn two_daemons_ike_with_nat_t_forced_by_port_translation() {
    if !common::require_env_or_skip(&[TOOLS, &["nft"]].concat()) {
        return;
    }
    let sites = TwoSites::new("ike-natt");
    // A sits behind a NAPT: its IKE and NAT-T source ports are translated on the way out.
    ike::port_nat(&sites.a, WAN_DEV, A_WAN, NAT_IKE_PORT, NAT_NATT_PORT);
    // Captured at B: what the far side of the NAT sees.
    let mut cap = Capture::start(&sites.b, WAN_DEV);
    let (mut da, mut db, (a_in, a_out), _) = start_pair(&sites);
    traffic(&sites, &da, &db);

    // Both float to 4500; B follows A to its translated port.
    let p1a = wait_phase1_up(&da, POLICY, UP_TIMEOUT);
    let p1b = wait_phase1_up(&db, POLICY, UP_TIMEOUT);
    assert_eq!(p1a.peer, format!("{B_WAN}:4500"), "{p1a:#?}");
    assert_eq!(p1b.peer, format!("{A_WAN}:{NAT_NATT_PORT}"), "{p1b:#?}");

    let pcap = cap.finish().to_path_buf();
    let wire = decode_ike_wire(&pcap);
    let esp: Vec<_> = wire.iter().filter(|p| p.esp_spi.is_some()).collect();
    assert!(
        esp.len() >= 4 * PINGS as usize,
        "{} ESP packets on the wire",
        esp.len()
    );
    for p in &esp {
        assert!(!p.raw_esp, "raw ESP through a NAT: {p:#?}");
        let ports = (p.sport, p.dport);
        let ok = match (p.src.as_str(), p.dst.as_str()) {
            (A_WAN, B_WAN) => ports == (Some(NAT_NATT_PORT), Some(4500)),
            (B_WAN, A_WAN) => ports == (Some(4500), Some(NAT_NATT_PORT)),
            _ => false,
        };
        assert!(ok, "ESP-in-UDP with unexpected addresses or ports: {p:#?}");
        assert!(
            p.esp_spi == a_out.esp_spi || p.esp_spi == a_in.esp_spi,
            "ESP with an SPI neither daemon lists: {p:#?}"
        );
    }
    let from_a: Vec<_> = wire
        .iter()
        .filter(|p| p.is_isakmp() && p.src == A_WAN)
        .collect();
    let on_500: Vec<_> = from_a
        .iter()
        .filter(|p| p.sport == Some(NAT_IKE_PORT) && p.dport == Some(500))
        .collect();
    let on_4500: Vec<_> = from_a
        .iter()
        .filter(|p| p.sport == Some(NAT_NATT_PORT) && p.dport == Some(4500))
        .collect();
    // Main mode 1 and 3 (and any retransmission) from the translated 500, then main mode 5
    // and quick mode 1/3 from the translated 4500 (RFC 3947 section 4), never back.
    assert!(
        on_500.len() >= 2
            && on_500
                .iter()
                .all(|p| p.isakmp_exchange == Some(EXCH_MAIN_MODE)),
        "A's main mode 1 and 3 before the float: {from_a:#?}"
    );
    assert!(
        on_4500.len() >= 3,
        "A's main mode 5 and quick mode 1/3 after the float: {from_a:#?}"
    );
    assert_eq!(on_500.len() + on_4500.len(), from_a.len(), "{from_a:#?}");
    let last_500 = on_500.iter().map(|p| p.frame).max().unwrap_or(0);
    assert!(
        on_4500.iter().all(|p| p.frame > last_500),
        "A went back to port 500 after floating: {from_a:#?}"
    );
    let malformed: Vec<_> = ike::decode_udp_from(&pcap, B_WAN, &[NAT_NATT_PORT])
        .into_iter()
        .chain(ike::decode_udp_from(&pcap, A_WAN, &[NAT_NATT_PORT]))
        .filter(|p| p.malformed || !p.warnings().is_empty())
        .collect();
    assert!(malformed.is_empty(), "tshark: {malformed:#?}");
    println!(
        "NAT-T: A's ISAKMP {} on {NAT_IKE_PORT}->500, {} on {NAT_NATT_PORT}->4500; {} ESP-in-UDP; \
         {} NAT keepalives",
        on_500.len(),
        on_4500.len(),
        esp.len(),
        wire.iter().filter(|p| p.nat_keepalive).count()
    );
    assert_alive(&mut da);
    assert_alive(&mut db);
}

/// Both profiles pass `ikehub check` (no root needed).
#[test]
fn daemon_pair_profiles_pass_ikehub_check() {
    ike::assert_profile_checks("A", &profile_a());
    ike::assert_profile_checks("B", &profile_b());
    let (a, b) = (profile_a(), profile_b());
    assert_eq!((a.local_wan.as_str(), a.peer.as_str()), (A_WAN, B_WAN));
    assert_eq!((b.local_wan.as_str(), b.peer.as_str()), (B_WAN, A_WAN));
    assert_eq!(a.local_net(), b.remote_net());
    assert_eq!(b.local_host, B_HOST);
}

/// The port-translating NAT of the NAT-T case, proven with strongSwan in A (initiating) and
/// strongSwan in B: B sees A's IKE at 192.0.2.1:1500 and then 192.0.2.1:14500, and its ESP-in-UDP
/// from 14500 (strongSwan floats anyway, see tests/common/strongswan.rs, but the ports it sees
/// are the NAT's).
#[test]
fn harness_port_nat_seen_by_strongswan() {
    use common::strongswan::{Charon, require_strongswan_or_skip};
    if !require_strongswan_or_skip(&["ip", "ping", "tcpdump", "tshark", "nft"]) {
        return;
    }
    let sites = TwoSites::new("ike-natbase");
    ike::port_nat(&sites.a, WAN_DEV, A_WAN, NAT_IKE_PORT, NAT_NATT_PORT);
    let mut cap = Capture::start(&sites.b, WAN_DEV);
    let cfg_b = profile_b().mirrored().swan_peer();
    let cfg_a = cfg_b.mirrored();
    let b = Charon::start(&sites.b, "b", &cfg_b);
    let a = Charon::start(&sites.a, "a", &cfg_a);
    a.initiate("net", 20).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ping(&sites.a, A_HOST, B_HOST, 5), 0.0);
    let ike_b = b.sas().into_iter().next().expect("IKE_SA in B");
    assert_eq!(
        (ike_b.remote_host.as_str(), ike_b.remote_port),
        (A_WAN, NAT_NATT_PORT),
        "{ike_b:#?}"
    );
    let pcap = cap.finish().to_path_buf();
    let wire = decode_ike_wire(&pcap);
    let from_a: Vec<_> = wire
        .iter()
        .filter(|p| p.is_isakmp() && p.src == A_WAN)
        .collect();
    let ports: Vec<_> = from_a.iter().map(|p| (p.sport, p.dport)).collect();
    assert_eq!(
        ports[..2],
        [(Some(NAT_IKE_PORT), Some(500)); 2],
        "{from_a:#?}"
    );
    assert!(
        ports[2..]
            .iter()
            .all(|p| *p == (Some(NAT_NATT_PORT), Some(4500))),
        "{from_a:#?}"
    );
    let esp_from_a: Vec<_> = wire
        .iter()
        .filter(|p| p.esp_spi.is_some() && p.src == A_WAN)
        .collect();
    assert!(esp_from_a.len() >= 5, "{wire:#?}");
    assert!(
        esp_from_a
            .iter()
            .all(|p| !p.raw_esp && p.sport == Some(NAT_NATT_PORT) && p.dport == Some(4500)),
        "{esp_from_a:#?}"
    );
}

/// [`ike::kill_daemon`] finds the daemon's process by its profile path, SIGKILLs it (no
/// graceful stop: the TUN device goes with the process) and a new daemon can start in the same
/// namespace right away, as the INITIAL-CONTACT interop test does.
#[test]
fn harness_kill_daemon_and_restart() {
    if !common::require_env_or_skip(&["ip"]) {
        return;
    }
    let sites = TwoSites::new("ike-kill");
    let mut first = Daemon::start(&sites.a, "A-first", |dir| profile_a().toml(dir));
    let pid = ike::daemon_pid(&sites.a, &first).expect("the daemon's pid");
    ike::kill_daemon(&sites.a, &mut first);
    assert!(!first.is_running());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} still exists"
    );
    let gone = poll_until(Duration::from_secs(5), || {
        (!sites.a.ip(&["-br", "link"]).contains(TUN)).then_some(())
    });
    assert!(gone.is_some(), "{TUN} outlived its daemon");
    let mut second = Daemon::start(&sites.a, "A", |dir| profile_a().toml(dir));
    assert!(second.is_running());
    assert_ne!(ike::daemon_pid(&sites.a, &second), Some(pid));
}

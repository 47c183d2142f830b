//! Self-tests of the strongSwan and ike-scan harness (`tests/common/strongswan.rs`,
//! `tests/common/ikescan.rs`) that the IKE interop tests build on: strongSwan talking to
//! strongSwan over IKEv1 PSK in two namespaces (userspace ESP, NAT-T forced), and ike-scan
//! probing a strongSwan responder. They also give the baseline figures the IKE issue asks for
//! (strongSwan↔strongSwan iperf3 throughput, time from `swanctl --initiate` to the first ping).
//!
//! Needs root and charon, swanctl, ike-scan, ping, iperf3, tcpdump, tshark. Outside CI the
//! tests skip (with a message) when those are missing; under `CI=true` they fail.

mod common;

use std::time::{Duration, Instant};

use common::ikescan::{
    IkeScan, IkeScanReply, NOTIFY_AUTHENTICATION_FAILED, NOTIFY_NO_PROPOSAL_CHOSEN, Transform,
    parse_ike_scan,
};
use common::iperf::{IperfServer, iperf3_client};
use common::netns::{A_HOST, A_NET, A_WAN, B_HOST, B_NET, B_WAN, WAN_DEV};
use common::strongswan::{Charon, SwanConfig, decode_ike_wire, require_strongswan_or_skip};
use common::{Capture, TwoSites, ping, poll_until};

const PSK: &str = "harness pre-shared key 5f1c2a9e";
/// Echo requests per direction.
const PINGS: u32 = 20;
/// ISAKMP exchange types (RFC 2408 section 3.1, RFC 2409).
const EXCH_MAIN_MODE: u8 = 2;
const EXCH_INFORMATIONAL: u8 = 5;
const EXCH_QUICK_MODE: u8 = 32;

#[test]
fn strongswan_to_strongswan_ikev1_psk_tunnel() {
    if !require_strongswan_or_skip(&["ip", "ping", "iperf3", "tcpdump", "tshark"]) {
        return;
    }
    let started = Instant::now();
    let sites = TwoSites::new("swan");
    let mut cap = Capture::start(&sites.a, WAN_DEV);
    let cfg_a = SwanConfig::ikev1_psk(A_WAN, B_WAN, PSK)
        .proposals(&["aes128-sha1-modp1024"])
        .esp_proposals(&["aes128-sha1"])
        .ts(&format!("{A_HOST}/32"), &format!("{B_HOST}/32"));
    let cfg_b = cfg_a.mirrored();
    let a = Charon::start(&sites.a, "a", &cfg_a);
    let b = Charon::start(&sites.b, "b", &cfg_b);
    assert!(
        a.routes().trim().is_empty(),
        "routes before any SA:\n{}",
        a.routes()
    );

    // A initiates; time until the first echo reply comes back through the tunnel.
    let t0 = Instant::now();
    let out = a.initiate("net", 15).unwrap_or_else(|e| panic!("{e}"));
    let t_up = t0.elapsed();
    let first_reply = poll_until(Duration::from_secs(10), || {
        (ping(&sites.a, A_HOST, B_HOST, 1) == 0.0).then(Instant::now)
    })
    .unwrap_or_else(|| panic!("no ping through the tunnel; initiate said:\n{out}"));
    let t_ping = first_reply - t0;
    println!(
        "FIGURE strongswan<->strongswan: swanctl --initiate returned after {} ms, \
         first ping reply {} ms after --initiate",
        t_up.as_millis(),
        t_ping.as_millis()
    );

    // Both ends agree on one CHILD_SA, UDP-encapsulated, floated to 4500.
    let ca = a.wait_child_installed("net", Duration::from_secs(5));
    let cb = b.wait_child_installed("net", Duration::from_secs(5));
    assert_eq!(ca.spi_out, cb.spi_in, "A out / B in SPI");
    assert_eq!(ca.spi_in, cb.spi_out, "A in / B out SPI");
    for c in [&ca, &cb] {
        assert_eq!(
            (c.mode.as_str(), c.protocol.as_str(), c.encap),
            ("TUNNEL", "ESP", true)
        );
        assert_eq!(
            (c.encr_alg.as_str(), c.encr_keysize, c.integ_alg.as_str()),
            ("AES_CBC", Some(128), "HMAC_SHA1_96")
        );
        assert!(c.spi_in > 255 && c.spi_out > 255);
    }
    assert_eq!(ca.local_ts, [format!("{A_HOST}/32")]);
    assert_eq!(ca.remote_ts, [format!("{B_HOST}/32")]);
    let ike_a = a.sas().into_iter().next().expect("IKE_SA in A");
    assert_eq!(ike_a.version, 1);
    assert_eq!(ike_a.state, "ESTABLISHED");
    assert!(ike_a.initiator);
    assert_eq!((ike_a.local_port, ike_a.remote_port), (4500, 4500));
    assert_eq!(
        (
            ike_a.encr_alg.as_str(),
            ike_a.integ_alg.as_str(),
            ike_a.dh_group.as_str()
        ),
        ("AES_CBC", "HMAC_SHA1_96", "MODP_1024")
    );
    let routes = a.routes();
    assert!(
        routes.contains(&format!("{B_HOST} dev ipsec0"))
            && routes.contains(&format!("src {A_HOST}")),
        "table 220 in A:\n{routes}"
    );

    // Both directions, then bulk.
    assert_eq!(ping(&sites.a, A_HOST, B_HOST, PINGS), 0.0, "ping A -> B");
    assert_eq!(ping(&sites.b, B_HOST, A_HOST, PINGS), 0.0, "ping B -> A");
    let server = IperfServer::start(&sites.b, B_HOST);
    let res = iperf3_client(&sites.a, A_HOST, B_HOST, 3).unwrap_or_else(|e| panic!("{e}"));
    drop(server);
    println!(
        "FIGURE strongswan<->strongswan iperf3 (TCP, 3 s, A -> B): {:.0} Mbit/s ({} bytes)",
        res.bits_per_second / 1e6,
        res.bytes_received
    );
    assert!(res.bytes_received > 0);

    println!("swanctl --list-sas in A:\n{}", a.list_sas());
    let ca = a
        .installed_child("net")
        .expect("CHILD_SA in A after traffic");
    let cb = b
        .installed_child("net")
        .expect("CHILD_SA in B after traffic");
    let min = u64::from(2 * PINGS);
    assert!(ca.packets_out >= min && ca.packets_in >= min, "A: {ca:?}");
    assert!(cb.packets_out >= min && cb.packets_in >= min, "B: {cb:?}");
    assert!(ca.bytes_out >= res.bytes_received, "A out bytes {ca:?}");
    assert!(cb.packets_in <= ca.packets_out && ca.packets_in <= cb.packets_out);

    // Terminate from A: the delete reaches B, routes go, traffic stops.
    a.terminate_ike("tun").unwrap_or_else(|e| panic!("{e}"));
    a.wait_no_sas(Duration::from_secs(10));
    b.wait_no_sas(Duration::from_secs(10));
    assert!(a.routes().trim().is_empty(), "routes left:\n{}", a.routes());
    assert_eq!(
        ping(&sites.a, A_HOST, B_HOST, 1),
        100.0,
        "ping after terminate"
    );

    // On the wire: main mode 1-4 on port 500, then everything on 4500 (NAT-T float):
    // main mode 5/6, quick mode, the delete, and ESP in UDP with the negotiated SPIs.
    let pkts = decode_ike_wire(cap.finish());
    let isakmp: Vec<_> = pkts.iter().filter(|p| p.is_isakmp()).collect();
    let on_500: Vec<_> = isakmp.iter().filter(|p| p.dport == Some(500)).collect();
    let on_4500: Vec<_> = isakmp.iter().filter(|p| p.dport == Some(4500)).collect();
    assert_eq!(
        on_500.len(),
        4,
        "main mode messages 1-4 on port 500: {isakmp:#?}"
    );
    assert!(
        on_500
            .iter()
            .all(|p| p.isakmp_exchange == Some(EXCH_MAIN_MODE) && p.sport == Some(500))
    );
    assert_eq!(on_500.len() + on_4500.len(), isakmp.len(), "{isakmp:#?}");
    let last_500 = on_500.iter().map(|p| p.frame).max().unwrap_or(0);
    assert!(
        on_4500
            .iter()
            .all(|p| p.frame > last_500 && p.sport == Some(4500)),
        "ISAKMP on 4500 before the float: {isakmp:#?}"
    );
    let count = |x: u8| {
        on_4500
            .iter()
            .filter(|p| p.isakmp_exchange == Some(x))
            .count()
    };
    assert_eq!(count(EXCH_MAIN_MODE), 2, "main mode 5/6 on 4500");
    assert_eq!(count(EXCH_QUICK_MODE), 3, "quick mode on 4500");
    assert!(count(EXCH_INFORMATIONAL) >= 1, "delete on 4500");
    assert!(isakmp.iter().all(|p| p.isakmp_version == Some(0x10)));
    let esp: Vec<_> = pkts.iter().filter(|p| p.esp_spi.is_some()).collect();
    assert!(
        esp.len() as u64 >= 4 * u64::from(PINGS),
        "{} ESP packets",
        esp.len()
    );
    assert!(
        esp.iter()
            .all(|p| !p.raw_esp && p.dport == Some(4500) && p.sport == Some(4500))
    );
    for spi in [ca.spi_in, ca.spi_out] {
        assert!(
            esp.iter().any(|p| p.esp_spi == Some(spi)),
            "no ESP with SPI {spi:08x}"
        );
    }
    assert!(
        esp.iter()
            .all(|p| p.esp_spi == Some(ca.spi_in) || p.esp_spi == Some(ca.spi_out)),
        "ESP with an unknown SPI"
    );
    let malformed: Vec<_> = pkts.iter().filter(|p| p.malformed).collect();
    assert!(malformed.is_empty(), "tshark: malformed {malformed:#?}");
    println!(
        "capture: {} ISAKMP ({} on 500, {} on 4500), {} ESP-in-UDP; test took {:.1} s",
        isakmp.len(),
        on_500.len(),
        on_4500.len(),
        esp.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn ike_scan_against_strongswan() {
    if !require_strongswan_or_skip(&["ip", "ike-scan"]) {
        return;
    }
    let started = Instant::now();
    let sites = TwoSites::new("swscan");
    let cfg_b = SwanConfig::ikev1_psk(B_WAN, A_WAN, PSK)
        .proposals(&["aes128-sha1-modp1024", "aes256-sha256-modp2048"])
        .ts(B_NET, A_NET);
    let b = Charon::start(&sites.b, "b", &cfg_b);
    let report = |what: &str, r: &common::ikescan::IkeScanResult| {
        println!("ike-scan {what}: {:?}   [{}]", r.reply, r.command);
    };

    // An acceptable transform: a main-mode answer that names it.
    let r = IkeScan::main_mode(B_WAN)
        .transform(Transform::aes_sha1(128, 2))
        .run(&sites.a);
    report("aes128-sha1-modp1024", &r);
    assert!(r.is_handshake(), "{}", r.stdout);
    assert_eq!(r.sa("Enc"), Some("AES"));
    assert_eq!(r.sa("KeyLength"), Some("128"));
    assert_eq!(r.sa("Hash"), Some("SHA1"));
    assert_eq!(r.sa("Group"), Some("2:modp1024"));
    assert_eq!(r.sa("Auth"), Some("PSK"));

    // Several transforms, only the second acceptable: the responder picks it.
    let r = IkeScan::main_mode(B_WAN)
        .transforms(&[Transform::triple_des_md5(2), Transform::aes_sha256(256, 14)])
        .run(&sites.a);
    report("3des-md5-modp1024 + aes256-sha256-modp2048", &r);
    assert!(r.is_handshake(), "{}", r.stdout);
    assert_eq!(r.sa("KeyLength"), Some("256"));
    assert_eq!(r.sa("Group"), Some("14:modp2048"));

    // Nothing acceptable: NO-PROPOSAL-CHOSEN.
    let r = IkeScan::main_mode(B_WAN)
        .transform(Transform::triple_des_md5(2))
        .run(&sites.a);
    report("3des-md5-modp1024", &r);
    assert_eq!(r.notify(), Some(NOTIFY_NO_PROPOSAL_CHOSEN), "{}", r.stdout);
    let r = IkeScan::main_mode(B_WAN).run(&sites.a);
    report("ike-scan's default DES/3DES set", &r);
    assert_eq!(r.notify(), Some(NOTIFY_NO_PROPOSAL_CHOSEN), "{}", r.stdout);

    // The same over NAT-T (port 4500, non-ESP marker).
    let r = IkeScan::main_mode(B_WAN)
        .transform(Transform::aes_sha1(128, 2))
        .nat_t()
        .run(&sites.a);
    report("aes128-sha1-modp1024 --nat-t", &r);
    assert!(r.is_handshake(), "{}", r.stdout);

    // Aggressive mode with a PSK connection that does not allow it: refused.
    let r = IkeScan::aggressive(B_WAN, A_WAN, 1)
        .transform(Transform::aes_sha1(128, 2))
        .run(&sites.a);
    report("aggressive aes128-sha1-modp1024", &r);
    assert!(!r.is_handshake(), "aggressive mode answered:\n{}", r.stdout);
    assert_eq!(
        r.notify(),
        Some(NOTIFY_AUTHENTICATION_FAILED),
        "{}",
        r.stdout
    );
    let r = IkeScan::aggressive(B_WAN, A_WAN, 1)
        .transform(Transform::triple_des_md5(2))
        .run(&sites.a);
    report("aggressive 3des-md5-modp1024", &r);
    assert_eq!(r.notify(), Some(NOTIFY_NO_PROPOSAL_CHOSEN), "{}", r.stdout);
    let log = b.log();
    assert!(
        log.contains("Aggressive Mode PSK disabled for security reasons"),
        "strongSwan did not log why it refused aggressive mode"
    );

    // Nobody listening (A runs no IKE daemon): no response, within ike-scan's bound.
    let t = Instant::now();
    let r = IkeScan::main_mode(A_WAN)
        .transform(Transform::aes_sha1(128, 2))
        .retry(2, 300)
        .run(&sites.b);
    report("against a host without IKE", &r);
    assert_eq!(r.reply, IkeScanReply::NoResponse, "{}", r.stdout);
    println!(
        "no-response probe took {} ms; test took {:.1} s",
        t.elapsed().as_millis(),
        started.elapsed().as_secs_f64()
    );
}

/// Short lifetimes on both ends (phase 2 rekeyed every ~10 s with PFS, phase 1 renewed by
/// reauthentication after ~20 s) while pings flow: the baseline for the ikehub rekey tests.
#[test]
fn strongswan_to_strongswan_short_lifetimes_rekey() {
    if !require_strongswan_or_skip(&["ip", "ping"]) {
        return;
    }
    let started = Instant::now();
    let sites = TwoSites::new("swrekey");
    let cfg_a = SwanConfig::ikev1_psk(A_WAN, B_WAN, PSK)
        .proposals(&["aes256-sha256-modp2048"])
        .esp_proposals(&["aes128-sha1-modp1024"])
        .ts(A_NET, B_NET)
        .child_lifetime(10, 15, 2)
        .ike_lifetime(20, 5, 2);
    // Different lifetimes at B, so both ends take turns at rekeying.
    let cfg_b = cfg_a
        .mirrored()
        .child_lifetime(12, 17, 2)
        .ike_lifetime(24, 5, 2);
    let a = Charon::start(&sites.a, "a", &cfg_a);
    let b = Charon::start(&sites.b, "b", &cfg_b);
    a.initiate("net", 15).unwrap_or_else(|e| panic!("{e}"));
    let c0 = a.wait_child_installed("net", Duration::from_secs(5));
    assert_eq!(c0.dh_group.as_deref(), Some("MODP_1024"), "PFS group");
    let ike0 = a.sas().into_iter().next().expect("IKE_SA");
    assert_eq!(ike0.dh_group, "MODP_2048");

    // 600 echo requests 50 ms apart: 30 s across about three phase-2 rekeys and one or two
    // phase-1 reauthentications.
    let loss = ping(&sites.a, A_HOST, B_HOST, 600);
    let c1 = a.wait_child_installed("net", Duration::from_secs(5));
    let ike1 = a.sas().into_iter().next().expect("IKE_SA after the rekeys");
    let count = |log: &str, what: &str| log.lines().filter(|l| l.contains(what)).count();
    let (log_a, log_b) = (a.log(), b.log());
    const CHILD_UP: &str = "established with SPIs";
    const IKE_UP: &str = "] established between";
    println!(
        "over 30 s: A logged {} CHILD_SAs and {} IKE_SAs established, B {} and {}; \
         ping loss {loss}% of 600",
        count(&log_a, CHILD_UP),
        count(&log_a, IKE_UP),
        count(&log_b, CHILD_UP),
        count(&log_b, IKE_UP),
    );
    println!("A after 30 s:\n{}", a.list_sas());
    assert_ne!(c1.spi_in, c0.spi_in, "phase 2 was not rekeyed");
    assert_ne!(ike1.uniqueid, ike0.uniqueid, "phase 1 was not renewed");
    assert!(
        count(&log_a, CHILD_UP) >= 3 && count(&log_a, IKE_UP) >= 2,
        "too few CHILD_SAs for 30 s of 10-12 s lifetimes"
    );
    assert!(loss <= 1.0, "{loss}% of 600 pings lost across rekeys");
    // Old SAs are deleted, not piled up: with renewals overlapping, look for a moment (within
    // one child lifetime) with at most 2 IKE_SAs and 3 CHILD_SAs.
    let lean = poll_until(Duration::from_secs(12), || {
        let sas = a.sas();
        let children: usize = sas.iter().map(|s| s.children.len()).sum();
        (sas.len() <= 2 && children <= 3).then_some(())
    });
    assert!(lean.is_some(), "SAs pile up:\n{}", a.list_sas());
    println!("test took {:.1} s", started.elapsed().as_secs_f64());
}

/// The ike-scan output parser on recorded output (no root needed).
#[test]
fn ike_scan_output_parser() {
    let hs = "Starting ike-scan 1.9.5 with 1 hosts (http://www.nta-monitor.com/tools/ike-scan/)\n\
        192.0.2.2\tMain Mode Handshake returned HDR=(CKY-R=25f4d7dc68bfa16a) SA=(Enc=AES KeyLength=128 Hash=SHA1 Group=2:modp1024 Auth=PSK LifeType=Seconds LifeDuration=28800) VID=09002689dfd6b712 (XAUTH) VID=afcad71368a1f1c96b8696fc77570100 (Dead Peer Detection v1.0)\n\n\
        Ending ike-scan 1.9.5: 1 hosts scanned in 0.021 seconds (47.51 hosts/sec).  1 returned handshake; 0 returned notify\n";
    match parse_ike_scan(hs, "192.0.2.2") {
        IkeScanReply::Handshake {
            aggressive,
            sa,
            vendor_ids,
        } => {
            assert!(!aggressive);
            assert_eq!(sa["Enc"], "AES");
            assert_eq!(sa["KeyLength"], "128");
            assert_eq!(sa["Group"], "2:modp1024");
            assert_eq!(vendor_ids.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    let n = "192.0.2.2\tNotify message 14 (NO-PROPOSAL-CHOSEN) HDR=(CKY-R=9c747fe85e5a4b38, msgid=a90c9ee1)\n";
    assert_eq!(
        parse_ike_scan(n, "192.0.2.2"),
        IkeScanReply::Notify {
            code: 14,
            name: "NO-PROPOSAL-CHOSEN".into()
        }
    );
    let none = "Starting ike-scan\n\nEnding ike-scan 1.9.5: 1 hosts scanned in 1.5 seconds.  0 returned handshake; 0 returned notify\n";
    assert_eq!(parse_ike_scan(none, "192.0.2.2"), IkeScanReply::NoResponse);
    assert_eq!(Transform::aes_sha1(128, 2).arg(), "7/128,2,1,2");
    assert_eq!(Transform::triple_des_md5(2).arg(), "5,1,1,2");
}

/// The `swanctl --list-sas --pretty` parser on recorded output (no root needed).
#[test]
fn swanctl_list_sas_parser() {
    let text = "list-sa event {\n  tun {\n    uniqueid = 1\n    version = 1\n    state = ESTABLISHED\n    local-host = 192.0.2.1\n    local-port = 4500\n    remote-host = 192.0.2.2\n    remote-port = 4500\n    initiator = yes\n    initiator-spi = a10237b62551b1b5\n    responder-spi = ccf524faf45d8c39\n    nat-any = yes\n    encr-alg = AES_CBC\n    encr-keysize = 128\n    integ-alg = HMAC_SHA1_96\n    prf-alg = PRF_HMAC_SHA1\n    dh-group = MODP_1024\n    child-sas {\n      net-1 {\n        name = net\n        uniqueid = 1\n        reqid = 1\n        state = INSTALLED\n        mode = TUNNEL\n        protocol = ESP\n        encap = yes\n        spi-in = af9230d6\n        spi-out = e36ff150\n        encr-alg = AES_CBC\n        encr-keysize = 128\n        integ-alg = HMAC_SHA1_96\n        bytes-in = 168\n        packets-in = 2\n        bytes-out = 170\n        packets-out = 3\n        local-ts = [\n          198.51.100.0/24\n        ]\n        remote-ts = [\n          203.0.113.0/24\n        ]\n      }\n    }\n  }\n}\nlist-sas reply {\n}\n";
    let sas = common::strongswan::parse_list_sas(text);
    assert_eq!(sas.len(), 1);
    let ike = &sas[0];
    assert_eq!(
        (ike.name.as_str(), ike.version, ike.state.as_str()),
        ("tun", 1, "ESTABLISHED")
    );
    assert_eq!(
        (ike.local_port, ike.remote_port, ike.nat_any),
        (4500, 4500, true)
    );
    assert_eq!(ike.children.len(), 1);
    let c = &ike.children[0];
    assert_eq!((c.spi_in, c.spi_out), (0xaf9230d6, 0xe36ff150));
    assert_eq!(
        (c.packets_in, c.packets_out, c.bytes_in, c.bytes_out),
        (2, 3, 168, 170)
    );
    assert_eq!(c.local_ts, ["198.51.100.0/24"]);
    assert_eq!(c.remote_ts, ["203.0.113.0/24"]);
    assert!(c.encap && c.dh_group.is_none());
    assert!(common::strongswan::parse_list_sas("list-sas reply {\n}\n").is_empty());
}

//! Manually keyed tunnels end to end: two `ikehub run` daemons in two network namespaces (the
//! ToBerne pair of docs/profiles.md), real TUN devices and sockets, checked from outside with ping,
//! iperf3, `show sa --json` and tshark decrypting the captured ESP with the configured keys.
//!
//! Also the harness's own self-tests (names starting with `harness_` or `tshark_`), which need no
//! daemon: they prove the namespace guards, capture, iperf3 and Wireshark decryption set-up.
//!
//! Needs root and ip, ping, tcpdump, tshark, iperf3. Outside CI the tests skip (with a message)
//! when those are missing; under `CI=true` they fail.

mod common;

use std::time::Duration;

use serde_json::Value;

use common::netns::{A_HOST, A_WAN, B_HOST, B_WAN, WAN_DEV, wait_for_route};
use common::refpkt::{self, AhParams, EspParams};
use common::sa::{SaRow, parse_rows, row};
use common::tunnel::{
    AES128_SHA1, AES256_SHA256, AH_SHA1, AH_SHA1_ESP_AES128_SHA1, Auth, Encapsulation, Encr,
    ManualPair, POLICY, Side, TDES_MD5, Transform,
};
use common::wireshark::{EspSaEntry, IpsecPacket, WiresharkConfig, decode_ipsec};
use common::{Capture, Daemon, TempDir, TwoSites, daemon::show_sa_json, ping};

const TOOLS: &[&str] = &["ip", "ping", "tcpdump", "tshark", "iperf3"];
/// Echo requests per direction.
const PINGS: u32 = 20;
/// Time the daemons get to bring up the TUN device and install routes.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(20);
const TUN: &str = "ikehub0";

// ---------------------------------------------------------------------------------------------
// The acceptance cases of manual keying: every transform and encapsulation, checked from outside.

#[test]
fn esp_aes128_sha1() {
    tunnel_case("e-a128", AES128_SHA1, Encapsulation::Esp);
}

#[test]
fn udp_aes128_sha1() {
    tunnel_case("u-a128", AES128_SHA1, Encapsulation::Udp);
}

#[test]
fn esp_aes256_sha256() {
    tunnel_case("e-a256", AES256_SHA256, Encapsulation::Esp);
}

#[test]
fn udp_aes256_sha256() {
    tunnel_case("u-a256", AES256_SHA256, Encapsulation::Udp);
}

#[test]
fn esp_3des_md5() {
    tunnel_case("e-3des", TDES_MD5, Encapsulation::Esp);
}

#[test]
fn udp_3des_md5() {
    tunnel_case("u-3des", TDES_MD5, Encapsulation::Udp);
}

/// AH cannot be UDP-encapsulated (RFC 3948 covers ESP only), so AH cases run over IP only.
#[test]
fn ah_sha1() {
    tunnel_case("ah", AH_SHA1, Encapsulation::Esp);
}

#[test]
fn ah_sha1_plus_esp_aes128_sha1() {
    tunnel_case("ahesp", AH_SHA1_ESP_AES128_SHA1, Encapsulation::Esp);
}

#[test]
fn esp_wrong_auth_key_drops_then_fixed_key_recovers() {
    wrong_key_case("e-bad", AES128_SHA1, Encapsulation::Esp);
}

#[test]
fn udp_wrong_auth_key_drops_then_fixed_key_recovers() {
    wrong_key_case("u-bad", AES128_SHA1, Encapsulation::Udp);
}

#[test]
fn ah_wrong_auth_key_drops_then_fixed_key_recovers() {
    wrong_key_case("ah-bad", AH_SHA1, Encapsulation::Esp);
}

/// Starts both daemons of `pair` (B's profile may differ, see the wrong-key case) and waits
/// until each routes the other's protected host through its TUN device.
fn start_pair(sites: &TwoSites, a: &ManualPair, b: &ManualPair) -> (Daemon, Daemon) {
    let da = Daemon::start(&sites.a, "A", |dir| a.profile(Side::A, dir));
    let db = Daemon::start(&sites.b, "B", |dir| b.profile(Side::B, dir));
    wait_until_up(&sites.a, &da, Side::A);
    wait_until_up(&sites.b, &db, Side::B);
    (da, db)
}

/// Ready for traffic: the route to the other side's host goes through the TUN device and
/// `show sa` lists both SAs of the policy.
fn wait_until_up(ns: &common::Netns, d: &Daemon, side: Side) {
    let other = match side {
        Side::A => Side::B,
        Side::B => Side::A,
    };
    wait_for_route(
        ns,
        ManualPair::host(side),
        ManualPair::host(other),
        TUN,
        ROUTE_TIMEOUT,
    );
    let up = common::poll_until(ROUTE_TIMEOUT, || {
        let r = rows(d);
        let has = |dir: &str| r.iter().any(|x| x.policy == POLICY && x.direction == dir);
        (has("IN") && has("OUT")).then_some(())
    });
    assert!(
        up.is_some(),
        "{side:?}: SAs of {POLICY} not listed: {:#?}",
        rows(d)
    );
}

/// Counters may be published with a delay: waits (bounded) until every SA of both sides shows
/// at least `expected` packets, then returns the rows (the caller asserts exact values).
fn rows_after_traffic(da: &Daemon, db: &Daemon, expected: u64) -> (Vec<SaRow>, Vec<SaRow>) {
    let _ = common::poll_until(Duration::from_secs(5), || {
        let (ra, rb) = (rows(da), rows(db));
        ra.iter()
            .chain(&rb)
            .filter(|r| r.policy == POLICY)
            .all(|r| r.packets >= expected)
            .then_some(())
    });
    (rows(da), rows(db))
}

fn rows(d: &Daemon) -> Vec<SaRow> {
    parse_rows(&show_sa_json(d))
}

fn tunnel_case(tag: &str, transform: Transform, encap: Encapsulation) {
    if !common::require_env_or_skip(TOOLS) {
        return;
    }
    let pair = ManualPair::new(transform, encap);
    let sites = TwoSites::new(tag);
    let (mut da, mut db) = start_pair(&sites, &pair, &pair);

    let mut cap = Capture::start(&sites.a, WAN_DEV);
    let loss_ab = ping(&sites.a, A_HOST, B_HOST, PINGS);
    let loss_ba = ping(&sites.b, B_HOST, A_HOST, PINGS);
    let pcap = cap.finish().to_path_buf();
    assert_eq!(
        loss_ab, 0.0,
        "ping {A_HOST} -> {B_HOST} through the tunnel lost packets"
    );
    assert_eq!(
        loss_ba, 0.0,
        "ping {B_HOST} -> {A_HOST} through the tunnel lost packets"
    );

    // Each ping: one request and one reply, so every SA carried 2 x PINGS packets.
    let expected = u64::from(2 * PINGS);
    let (ra, rb) = rows_after_traffic(&da, &db, expected);
    check_sa_rows(&ra, &pair, Side::A);
    check_sa_rows(&rb, &pair, Side::B);
    for (name, r) in [
        ("A OUT", row(&ra, POLICY, "OUT")),
        ("A IN", row(&ra, POLICY, "IN")),
        ("B OUT", row(&rb, POLICY, "OUT")),
        ("B IN", row(&rb, POLICY, "IN")),
    ] {
        assert_eq!(r.packets, expected, "{name}: packets counter\n{r:#?}");
        assert!(
            r.bytes >= expected * 84,
            "{name}: bytes counter too small\n{r:#?}"
        );
        assert_eq!(
            (
                r.icv_failures,
                r.replay_drops,
                r.padding_errors,
                r.selector_mismatches
            ),
            (0, 0, 0, 0),
            "{name}: drop counters\n{r:#?}"
        );
    }

    // An independent implementation agrees: tshark decrypts and verifies every packet.
    let ws = WiresharkConfig::new(&pair.esp_sa_entries());
    let pkts = decode_ipsec(&pcap, &ws);
    check_capture(&pkts, &pair, 4 * PINGS as usize);

    // Bulk traffic, bounded: only that it flows (speed is for `ikehub bench`, not tests).
    let server = common::iperf::IperfServer::start(&sites.b, B_HOST);
    let res = common::iperf::iperf3_client(&sites.a, A_HOST, B_HOST, 3);
    drop(server);
    let res = res.unwrap_or_else(|e| panic!("iperf3 through the tunnel: {e}"));
    eprintln!(
        "{tag}: iperf3 through the tunnel: {:.1} Mbit/s ({} bytes)",
        res.bits_per_second / 1e6,
        res.bytes_received
    );
    assert!(res.bytes_received > 0, "iperf3 carried nothing: {res:?}");
    // The KBYTES column moves as traffic flows.
    let out = row(&rows(&da), POLICY, "OUT").clone();
    assert!(
        out.kbytes > 0 && out.packets > expected,
        "A OUT after iperf3: {out:#?}"
    );

    assert!(da.is_running(), "daemon A died; log:\n{}", da.log());
    assert!(db.is_running(), "daemon B died; log:\n{}", db.log());
}

/// `show sa` of one side: the IN and OUT rows of the manual policy with the configured SPIs.
fn check_sa_rows(rows: &[SaRow], pair: &ManualPair, side: Side) {
    let (inbound, outbound) = match side {
        Side::A => (&pair.b_to_a, &pair.a_to_b),
        Side::B => (&pair.a_to_b, &pair.b_to_a),
    };
    let peer = ManualPair::local_wan(match side {
        Side::A => Side::B,
        Side::B => Side::A,
    });
    for (dir, keys) in [("IN", inbound), ("OUT", outbound)] {
        let r = row(rows, POLICY, dir);
        let ctx = format!("side {side:?} {dir}: {r:#?}");
        assert_eq!(r.sa_type, "MANUAL", "{ctx}");
        assert_eq!(r.peer, peer, "{ctx}");
        assert_eq!(r.esp_spi, keys.esp_spi, "{ctx}");
        assert_eq!(r.ah_spi, keys.ah_spi, "{ctx}");
        assert!(!r.replay, "manual SAs default to no anti-replay: {ctx}");
        assert_eq!(
            (r.kbytes_limit, r.seconds_limit),
            (None, None),
            "manual SAs never expire: {ctx}"
        );
        let t = &pair.transform;
        assert_eq!(r.esp_enc.is_some(), t.esp_encryption != Encr::None, "{ctx}");
        assert_eq!(
            r.esp_auth.is_some(),
            t.esp_authentication != Auth::None,
            "{ctx}"
        );
        assert_eq!(r.ah_auth.is_some(), t.uses_ah(), "{ctx}");
    }
}

/// Every captured IPsec packet: right outer addresses and SPI, UDP 4500 iff encapsulation = udp,
/// ESP decrypted with a good ICV, inner ICMP between the protected hosts.
fn check_capture(pkts: &[IpsecPacket], pair: &ManualPair, expected: usize) {
    assert_eq!(pkts.len(), expected, "IPsec packets on the wire: {pkts:#?}");
    let t = &pair.transform;
    for p in pkts {
        let keys = match (p.src.as_str(), p.dst.as_str()) {
            (A_WAN, B_WAN) => &pair.a_to_b,
            (B_WAN, A_WAN) => &pair.b_to_a,
            _ => panic!("unexpected outer addresses: {p:#?}"),
        };
        match pair.encapsulation {
            Encapsulation::Udp => assert_eq!(p.udp_dport, Some(4500), "{p:#?}"),
            Encapsulation::Esp => assert_eq!(p.udp_dport, None, "{p:#?}"),
        }
        assert_eq!(p.ah_spi, keys.ah_spi, "AH SPI: {p:#?}");
        assert_eq!(p.esp_spi, keys.esp_spi, "ESP SPI: {p:#?}");
        if t.uses_esp() {
            assert!(p.decrypted, "tshark could not decrypt: {p:#?}");
            if t.esp_authentication != Auth::None {
                assert_eq!(
                    p.esp_icv_good,
                    Some(true),
                    "tshark says the ICV is not good: {p:#?}"
                );
            }
        }
        let inner = (p.inner_src.as_deref(), p.inner_dst.as_deref());
        assert!(
            inner == (Some(A_HOST), Some(B_HOST)) || inner == (Some(B_HOST), Some(A_HOST)),
            "inner packet is not between the protected hosts: {p:#?}"
        );
        assert_eq!(p.inner_proto, Some(1), "inner packet is not ICMP: {p:#?}");
        assert!(
            matches!(p.icmp_type, Some(0 | 8)),
            "not an echo request/reply: {p:#?}"
        );
    }
}

fn wrong_key_case(tag: &str, transform: Transform, encap: Encapsulation) {
    if !common::require_env_or_skip(TOOLS) {
        return;
    }
    let pair = ManualPair::new(transform, encap);
    let mut wrong = pair.clone();
    wrong.a_to_b.corrupt_auth_key();
    let sites = TwoSites::new(tag);
    let (mut da, mut db) = start_pair(&sites, &pair, &wrong);

    let loss = ping(&sites.a, A_HOST, B_HOST, 10);
    assert_eq!(
        loss, 100.0,
        "B accepted packets although its inbound auth key is wrong"
    );
    let failures = common::poll_until(Duration::from_secs(5), || {
        let r = row(&rows(&db), POLICY, "IN").clone();
        (r.icv_failures > 0).then_some(r)
    });
    let r = failures
        .unwrap_or_else(|| panic!("B's inbound SA counted no ICV failures: {:#?}", rows(&db)));
    assert_eq!(
        r.packets, 0,
        "B's inbound SA counted packets that failed the ICV: {r:#?}"
    );
    assert!(da.is_running(), "daemon A died; log:\n{}", da.log());
    assert!(
        db.is_running(),
        "daemon B died on bad ICVs; log:\n{}",
        db.log()
    );

    // Fix the key (reload is a later issue: restart B) and traffic flows again.
    let status = db.stop();
    eprintln!("{tag}: daemon B stopped: {status:?}");
    let db = Daemon::start(&sites.b, "B-fixed", |dir| pair.profile(Side::B, dir));
    wait_until_up(&sites.b, &db, Side::B);
    let loss = ping(&sites.a, A_HOST, B_HOST, 10);
    assert_eq!(loss, 0.0, "traffic did not come back with the right key");
    let _ = common::poll_until(Duration::from_secs(5), || {
        (row(&rows(&db), POLICY, "IN").packets >= 10).then_some(())
    });
    let r = row(&rows(&db), POLICY, "IN").clone();
    assert_eq!((r.packets, r.icv_failures), (10, 0), "{r:#?}");
}

/// Path MTU handling (RFC 4301 §8, RFC 1191): with the WAN link's MTU lowered, a large
/// cleartext packet without DF is carried in outer fragments (the raw socket cannot fragment
/// for us), and one with DF is answered by an ICMP fragmentation-needed written back into the
/// tunnel device, so the sender learns the tunnel's MTU; smaller DF packets still pass.
#[test]
fn path_mtu_fragments_without_df_and_sends_icmp_with_df() {
    if !common::require_env_or_skip(TOOLS) {
        return;
    }
    let pair = ManualPair::new(AES128_SHA1, Encapsulation::Esp);
    let sites = TwoSites::new("pmtu");
    sites.set_wan_mtu(1280);
    let (mut da, db) = start_pair(&sites, &pair, &pair);
    let big_ping = |df: &str, size: &str| {
        sites
            .a
            .command("ping")
            .args(["-n", "-q", "-c", "3", "-i", "0.2", "-W", "2", "-w", "8"])
            .args(["-M", df, "-s", size, "-I", A_HOST, B_HOST])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("ping runs")
    };
    // 1300 bytes of payload: too large for a 1280-byte path once encapsulated.
    let out = big_ping("dont", "1300");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        common::netns::parse_ping_loss(&text),
        Some(0.0),
        "fragmented ESP did not get through:\n{text}{}\nA:\n{}",
        String::from_utf8_lossy(&out.stderr),
        da.log()
    );
    let out = big_ping("do", "1300");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "a DF packet larger than the path got through:\n{text}"
    );
    let counted = common::poll_until(Duration::from_secs(5), || {
        let out = da.cli(&["show", "counters", "--json"]).output().ok()?;
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        let n: u64 = v
            .as_array()?
            .iter()
            .map(|s| s["counters"]["icmp_frag_needed"].as_u64().unwrap_or(0))
            .sum();
        (n > 0).then_some(n)
    });
    assert!(
        counted.is_some(),
        "no ICMP fragmentation-needed counted:\n{text}"
    );
    // Below the tunnel's MTU, DF packets pass.
    let out = big_ping("do", "1000");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(common::netns::parse_ping_loss(&text), Some(0.0), "{text}");
    assert!(da.is_running(), "daemon A died; log:\n{}", da.log());
    drop(db);
}

/// Hostile input on the WAN side: ESP packets with an unknown SPI, truncated ESP headers, and
/// garbage under a known SPI are dropped and counted (per shard or on the SA), the daemon
/// survives, and the tunnel keeps carrying traffic.
#[test]
fn hostile_esp_input_is_dropped_counted_and_survived() {
    if !common::require_env_or_skip(TOOLS) || !common::require_env_or_skip(&["python3"]) {
        return;
    }
    let pair = ManualPair::new(AES128_SHA1, Encapsulation::Esp);
    let sites = TwoSites::new("hostile");
    let (mut da, db) = start_pair(&sites, &pair, &pair);
    let known = pair.b_to_a.esp_spi.expect("ESP transform");
    // From B's namespace, straight onto A's raw ESP socket (the kernel adds the IP header).
    let script = format!(
        "import socket, struct\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50)\n\
         for i in range(5):\n\
         \x20   s.sendto(struct.pack('>II', 0x77770000 + i, 1) + bytes(64), ('{A_WAN}', 0))\n\
         for n in range(0, 8):\n\
         \x20   s.sendto(bytes([0x77] * n), ('{A_WAN}', 0))\n\
         for i in range(3):\n\
         \x20   s.sendto(struct.pack('>II', {known}, 100 + i) + bytes(range(60)), ('{A_WAN}', 0))\n"
    );
    let out = sites
        .b
        .command("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "sender failed: {out:?}");

    let counters = || -> (u64, Value) {
        let out = da
            .cli(&["show", "counters", "--json"])
            .output()
            .expect("ikehub show counters runs");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let unknown = v
            .as_array()
            .map(|shards| {
                shards
                    .iter()
                    .map(|s| s["counters"]["unknown_spi"].as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0);
        (unknown, v)
    };
    let seen = common::poll_until(Duration::from_secs(5), || {
        let (unknown, _) = counters();
        (unknown >= 13).then_some(unknown)
    });
    assert_eq!(
        seen,
        Some(13),
        "5 unknown SPIs + 8 truncated headers must be counted: {:#}",
        counters().1
    );
    let r = common::poll_until(Duration::from_secs(5), || {
        let r = row(&rows(&da), POLICY, "IN").clone();
        (r.icv_failures >= 3).then_some(r)
    })
    .unwrap_or_else(|| panic!("garbage under SPI {known} not counted: {:#?}", rows(&da)));
    assert_eq!((r.icv_failures, r.packets), (3, 0), "{r:#?}");
    assert!(da.is_running(), "daemon A died; log:\n{}", da.log());
    assert_eq!(
        ping(&sites.a, A_HOST, B_HOST, 5),
        0.0,
        "tunnel broken after bad input"
    );
    // Logged as a bounded summary, not a line per packet.
    let summary = common::poll_until(Duration::from_secs(15), || {
        let log = da.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("packets dropped in the last"))
            .collect();
        (lines.iter().any(|l| l.contains("unknown SPI")) && lines.len() <= 2)
            .then(|| lines.join("\n"))
    });
    assert!(
        summary.is_some(),
        "no bounded drop summary in the log:\n{}",
        da.log()
    );
    drop(db);
}

// ---------------------------------------------------------------------------------------------
// Self-tests of the harness (no daemon needed).

/// A packet set covering every suite the tunnel tests use, over IP and UDP 4500, plus AH and a
/// packet with a corrupted ICV: tshark must decrypt and verify them with the harness's esp_sa
/// file (and flag the corrupted one). Packets are built with the RustCrypto primitives directly
/// (RFC 4303 by hand), not with ikehub's ESP code.
#[test]
fn tshark_decrypts_reference_esp_packet() {
    if !common::require_tool_or_skip("tshark") {
        return;
    }
    let (a, b) = (refpkt::addr(A_WAN), refpkt::addr(B_WAN));
    let (ha, hb) = (refpkt::addr(A_HOST), refpkt::addr(B_HOST));
    let mut packets = Vec::new();
    let mut entries = Vec::new();
    let mut expect = Vec::new(); // (spi, udp, icv good)
    let suites = [
        (Encr::Aes128, Auth::HmacSha1),
        (Encr::Aes256, Auth::HmacSha256),
        (Encr::TripleDes, Auth::HmacMd5),
        (Encr::Aes192, Auth::HmacSha1),
        (Encr::Des, Auth::HmacSha1),
        (Encr::None, Auth::HmacSha256),
    ];
    for (i, (encr, auth)) in suites.into_iter().enumerate() {
        for udp in [false, true] {
            let spi = 0x1000 + (i as u32) * 2 + u32::from(udp);
            let ekey: Vec<u8> = (0..encr.key_len() as u8).map(|x| x ^ 0x5a).collect();
            let akey: Vec<u8> = (0..auth.key_len() as u8)
                .map(|x| x.wrapping_mul(3))
                .collect();
            let iv: Vec<u8> = (0..encr.block_len() as u8)
                .map(|x| x.wrapping_add(0xa0))
                .collect();
            let inner = refpkt::ipv4(ha, hb, 1, 7, &refpkt::icmp_echo_request(0x77, i as u16));
            let p = EspParams {
                spi,
                seq: 1,
                encr,
                encr_key: &ekey,
                auth,
                auth_key: &akey,
                iv: &iv,
            };
            let esp = refpkt::esp_payload(&p, 4, &inner);
            packets.push(if udp {
                refpkt::ipv4(a, b, 17, 1, &refpkt::udp(4500, 4500, &esp))
            } else {
                refpkt::ipv4(a, b, 50, 1, &esp)
            });
            entries.push(EspSaEntry {
                src: A_WAN.into(),
                dst: B_WAN.into(),
                spi,
                encryption: encr,
                encryption_key: ekey,
                authentication: auth,
                authentication_key: akey,
            });
            expect.push((spi, udp, true));
        }
    }
    // The first suite again with one ciphertext bit flipped: decrypts (CBC), ICV must be bad.
    let mut bad = packets[0].clone();
    bad[20 + 8 + 16] ^= 0x01;
    packets.push(bad);
    expect.push((0x1000, false, false));
    // AH (tunnel mode, HMAC-SHA1-96) around the same inner packet; Wireshark 4.0 shows the AH
    // header and the inner packet but does not verify AH ICVs.
    let inner = refpkt::ipv4(ha, hb, 1, 9, &refpkt::icmp_echo_request(0x77, 99));
    let akey = [0x42u8; 20];
    let ah = AhParams {
        spi: 0x2000,
        seq: 1,
        auth: Auth::HmacSha1,
        auth_key: &akey,
    };
    packets.push(refpkt::ah_packet(a, b, &ah, 4, &inner));
    // The AH+ESP bundle (RFC 4301: outer IP | AH | ESP | inner): Wireshark decrypts the ESP
    // under the AH with the first SA of the table.
    let e = &entries[0];
    let iv = [0x11u8; 16];
    let p = EspParams {
        spi: e.spi,
        seq: 2,
        encr: e.encryption,
        encr_key: &e.encryption_key,
        auth: e.authentication,
        auth_key: &e.authentication_key,
        iv: &iv,
    };
    let esp = refpkt::esp_payload(&p, 4, &inner);
    packets.push(refpkt::ah_packet(a, b, &ah, 50, &esp));

    let dir = TempDir::new("refpkt");
    let pcap = dir.join("reference.pcap");
    std::fs::write(&pcap, refpkt::pcap_raw_ip(&packets)).expect("writing pcap");
    let ws = WiresharkConfig::new(&entries);
    let decoded = decode_ipsec(&pcap, &ws);
    assert_eq!(decoded.len(), packets.len(), "{decoded:#?}");
    // zip stops after the ESP packets; the AH and AH+ESP ones are checked below.
    for (p, (spi, udp, good)) in decoded.iter().zip(&expect) {
        let ctx = format!("{p:#?}");
        assert_eq!(p.esp_spi, Some(*spi), "{ctx}");
        assert_eq!(p.udp_dport, udp.then_some(4500), "{ctx}");
        assert!(p.decrypted, "not decrypted: {ctx}");
        assert_eq!(p.esp_icv_good, Some(*good), "{ctx}");
        if *good {
            assert_eq!(p.inner_src.as_deref(), Some(A_HOST), "{ctx}");
            assert_eq!(p.inner_dst.as_deref(), Some(B_HOST), "{ctx}");
            assert_eq!(p.inner_proto, Some(1), "{ctx}");
            assert_eq!(p.icmp_type, Some(8), "{ctx}");
        }
    }
    let [.., ah, bundle] = decoded.as_slice() else {
        panic!("{decoded:#?}")
    };
    assert_eq!(ah.ah_spi, Some(0x2000), "{ah:#?}");
    assert_eq!(ah.esp_spi, None, "{ah:#?}");
    assert_eq!(
        (ah.inner_src.as_deref(), ah.inner_proto),
        (Some(A_HOST), Some(1)),
        "{ah:#?}"
    );
    assert_eq!(
        (bundle.ah_spi, bundle.esp_spi),
        (Some(0x2000), Some(0x1000)),
        "{bundle:#?}"
    );
    assert_eq!(bundle.esp_icv_good, Some(true), "{bundle:#?}");
    assert_eq!(
        (
            bundle.inner_src.as_deref(),
            bundle.inner_dst.as_deref(),
            bundle.icmp_type
        ),
        (Some(A_HOST), Some(B_HOST), Some(8)),
        "{bundle:#?}"
    );

    // And without the SA table tshark cannot see inside: the check above is not vacuous.
    let decoded = decode_ipsec(&pcap, &WiresharkConfig::new(&[]));
    assert!(
        decoded[0].inner_src.is_none() && decoded[0].esp_icv_good.is_none(),
        "{decoded:#?}"
    );
}

/// Namespaces, veth and processes inside them are removed when a test panics.
#[test]
fn harness_netns_cleanup_on_panic() {
    use std::os::unix::process::ExitStatusExt;
    if !common::require_env_or_skip(&["ip", "ping"]) {
        return;
    }
    let names = std::sync::Mutex::new(Vec::new());
    let stray = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(|| {
        let sites = TwoSites::new("panic");
        names
            .lock()
            .unwrap()
            .extend([sites.a.name().to_string(), sites.b.name().to_string()]);
        assert_eq!(
            ping(&sites.a, A_WAN, B_WAN, 3),
            0.0,
            "veth does not carry traffic"
        );
        assert_eq!(ping(&sites.a, A_HOST, A_HOST, 1), 0.0, "lo address missing");
        // A stray process no guard knows about: the namespace guard must kill it.
        let child = sites.a.command("sleep").arg("600").spawn().expect("sleep");
        *stray.lock().unwrap() = Some(child);
        std::thread::sleep(Duration::from_millis(200)); // let `ip netns exec` exec sleep
        panic!("deliberate panic inside the harness self-test");
    });
    assert!(result.is_err());
    let mut child = stray.into_inner().unwrap().expect("stray process");
    let status = common::wait_timeout(&mut child, Duration::from_secs(5));
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "stray process survived"
    );
    let names = names.into_inner().unwrap();
    assert_eq!(names.len(), 2);
    let list = common::run_ok("ip", ["netns", "list"]);
    let list = String::from_utf8_lossy(&list.stdout);
    for n in &names {
        assert!(
            !list.lines().any(|l| l.split_whitespace().next() == Some(n)),
            "{n} left: {list}"
        );
    }
}

/// Capture guard + tshark read a plain ping; iperf3 over the bare veth works (and gives the
/// baseline the tunnel figure is compared with).
#[test]
fn harness_capture_and_iperf3_over_plain_veth() {
    if !common::require_env_or_skip(TOOLS) {
        return;
    }
    let sites = TwoSites::new("plain");
    let mut cap = Capture::start(&sites.a, WAN_DEV);
    assert_eq!(ping(&sites.a, A_WAN, B_WAN, 5), 0.0);
    let pcap = cap.finish().to_path_buf();
    let out = common::run_ok(
        "tshark",
        [
            "-n",
            "-r",
            pcap.to_str().unwrap(),
            "-Y",
            "icmp",
            "-T",
            "fields",
            "-e",
            "icmp.type",
        ],
    );
    let types: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(types.iter().filter(|t| *t == "8").count(), 5, "{types:?}");
    assert_eq!(types.iter().filter(|t| *t == "0").count(), 5, "{types:?}");

    let server = common::iperf::IperfServer::start(&sites.b, B_WAN);
    let res = common::iperf::iperf3_client(&sites.a, A_WAN, B_WAN, 1).expect("iperf3");
    drop(server);
    eprintln!(
        "iperf3 over the plain veth: {:.1} Mbit/s",
        res.bits_per_second / 1e6
    );
    assert!(res.bytes_received > 0, "{res:?}");
}

/// The generated profiles name everything docs/profiles.md requires (a cheap check that needs no
/// root, so a broken generator shows up everywhere).
#[test]
fn harness_profiles_are_consistent() {
    let dir = TempDir::new("profiles");
    for t in [
        AES128_SHA1,
        AES256_SHA256,
        TDES_MD5,
        AH_SHA1,
        AH_SHA1_ESP_AES128_SHA1,
    ] {
        for e in [Encapsulation::Esp, Encapsulation::Udp] {
            let pair = ManualPair::new(t, e);
            let a = pair.profile(Side::A, dir.path());
            let b = pair.profile(Side::B, dir.path());
            let va: toml::Value = toml::from_str(&a).unwrap_or_else(|e| panic!("{e}\n{a}"));
            let vb: toml::Value = toml::from_str(&b).unwrap_or_else(|e| panic!("{e}\n{b}"));
            let pa = &va["ipsec-policy-manual"][POLICY];
            let pb = &vb["ipsec-policy-manual"][POLICY];
            assert_eq!(pa["outbound"], pb["inbound"]);
            assert_eq!(pa["inbound"], pb["outbound"]);
            assert_eq!(pa["encapsulation"].as_str(), Some(e.profile_name()));
            assert_eq!(va["system"]["shards"].as_integer(), Some(2));
            if let Some(key) = pa["outbound"].get("esp-encryption-key") {
                let hex = key.as_str().unwrap().trim_start_matches("0x");
                assert_eq!(hex.len(), 2 * t.esp_encryption.key_len());
            }
        }
    }
}

/// A stand-in for `ikehub` (shell script: `run` brings up a TUN device with a route and waits
/// for SIGTERM, `show sa --json` prints two rows) drives the Daemon guard, the readiness and
/// route waits, the `show sa` shape and the clean-up, without the real daemon.
#[test]
fn harness_daemon_guard_with_stand_in() {
    if !common::require_env_or_skip(&["ip", "ping"]) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("stand-in");
    let bin = dir.join("ikehub-stand-in");
    let json_row = |dir: &str, spi: u32| {
        format!(
            r#"{{"direction":"{dir}","type":"MANUAL","policy":"{POLICY}","mode":"Tunnel","replay":false,"peer":"{B_WAN}","ah_spi":null,"esp_spi":{spi},"ah_auth":null,"esp_auth":"HMAC-SHA1","esp_enc":"AES-CBC 128","kbytes":0,"kbytes_limit":null,"seconds":1,"seconds_limit":null,"packets":0,"bytes":0,"replay_drops":0,"icv_failures":0,"padding_errors":0,"selector_mismatches":0,"other_drops":0}}"#
        )
    };
    let script = format!(
        r#"#!/bin/bash
set -e
case "$1 $2" in
"run -c")
    sock=$(sed -n 's/^control-socket = "\(.*\)"/\1/p' "$3")
    ip tuntap add dev {TUN} mode tun
    ip link set {TUN} up
    ip route add 203.0.113.0/24 dev {TUN} src {A_HOST}
    trap 'ip link del {TUN}; rm -f "$sock"; echo stopped >&2; exit 0' TERM
    touch "$sock"
    echo "stand-in running" >&2
    while :; do sleep 0.1; done ;;
"show sa")
    sock=$(sed -n 's/^control-socket = "\(.*\)"/\1/p' "$5")
    [ -e "$sock" ] || exit 1
    echo '[{in},{out}]' ;;
*) exit 2 ;;
esac
"#,
        in = json_row("IN", 1111),
        out = json_row("OUT", 2222),
    );
    std::fs::write(&bin, script).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();

    let sites = TwoSites::new("stand-in");
    let pair = ManualPair::new(AES128_SHA1, Encapsulation::Esp);
    let d = Daemon::spawn_with(&bin, &sites.a, "stand-in", |dir| pair.profile(Side::A, dir))
        .wait_ready();
    wait_until_up(&sites.a, &d, Side::A);
    let rows = rows(&d);
    assert_eq!(row(&rows, POLICY, "IN").esp_spi, Some(1111));
    assert_eq!(row(&rows, POLICY, "OUT").esp_spi, Some(2222));
    // Nobody reads the TUN device: the ping is lost, and `ping` reports it as 100%.
    assert_eq!(ping(&sites.a, A_HOST, B_HOST, 2), 100.0);
    let status = d.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "stand-in did not stop on SIGTERM: {status:?}"
    );
    assert!(
        !sites.a.ip(&["-br", "link"]).contains(TUN),
        "TUN device left behind"
    );
}

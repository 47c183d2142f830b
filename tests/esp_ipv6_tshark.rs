//! IPv6 ESP packets of `ikehub::esp` checked by an independent implementation: tshark
//! (Wireshark) decrypts them with the SAs' keys, checks every ICV and, for ESP-in-UDP over
//! IPv6, the UDP checksum RFC 8200 §8.1 makes mandatory (issue 11).
//!
//! No namespace: the packets are written to a pcap file (LINKTYPE_RAW, IPv4 and IPv6 frames)
//! from the public encapsulation API. Needs tshark; outside CI the test skips without it.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::time::Instant;

use ikehub::config::{KeyBytes, Mode};
use ikehub::crypto::{AuthAlgorithm, EncrAlgorithm};
use ikehub::esp::{
    Direction, EncapOutcome, EncapParams, EspKeys, LifetimeLimits, SaEncapsulation, SaParams,
    SecurityAssociation,
};
use ikehub::wire::{IpProtocol, Ipv4Repr, Ipv6Repr};

use common::{TempDir, hex, require_tool_or_skip};

const LOCAL6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const PEER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
const LOCAL4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PEER4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const HOST_A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 7);
const HOST_B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 9);

/// One SA of the capture: how it is built and what tshark must see inside.
struct Case {
    spi: u32,
    outer_v6: bool,
    inner_v6: bool,
    udp: bool,
    encryption: EncrAlgorithm,
    authentication: AuthAlgorithm,
}

fn wireshark_encr(e: EncrAlgorithm) -> &'static str {
    match e {
        EncrAlgorithm::AesCbc128 | EncrAlgorithm::AesCbc256 => "AES-CBC [RFC3602]",
        EncrAlgorithm::AesGcm128 => "AES-GCM with 16 octet ICV [RFC4106]",
        other => panic!("not used here: {other:?}"),
    }
}

fn wireshark_auth(a: AuthAlgorithm) -> &'static str {
    match a {
        AuthAlgorithm::None => "NULL",
        AuthAlgorithm::HmacSha1 => "HMAC-SHA-1-96 [RFC2404]",
        AuthAlgorithm::HmacSha256 => "HMAC-SHA-256-128 [RFC4868]",
        other => panic!("not used here: {other:?}"),
    }
}

fn keys(case: &Case) -> EspKeys {
    let k =
        |n: usize, seed: u8| KeyBytes((0..n).map(|i| seed ^ (i as u8).wrapping_mul(29)).collect());
    EspKeys {
        spi: case.spi,
        encryption: case.encryption,
        encryption_key: k(case.encryption.keymat_len(), 0x5c),
        authentication: case.authentication,
        authentication_key: k(case.authentication.key_len(), 0x3a),
    }
}

/// An ICMPv6 echo request (type 128) or ICMP echo request (type 8), 100 bytes in all.
fn echo(v6: bool) -> Vec<u8> {
    let mut body = vec![0u8; 60];
    for (i, b) in body.iter_mut().enumerate() {
        *b = i as u8;
    }
    if v6 {
        body[0] = 128;
        body[1] = 0;
        let mut p = vec![0u8; 40 + body.len()];
        Ipv6Repr::new(HOST_A6, HOST_B6, IpProtocol::ICMPV6, body.len())
            .emit(&mut p)
            .unwrap();
        p[40..].copy_from_slice(&body);
        p
    } else {
        body[0] = 8;
        body[1] = 0;
        let mut p = vec![0u8; 20 + body.len()];
        Ipv4Repr::new(
            Ipv4Addr::new(198, 51, 100, 7),
            Ipv4Addr::new(203, 0, 113, 9),
            IpProtocol::ICMP,
            body.len(),
        )
        .emit(&mut p)
        .unwrap();
        p[20..].copy_from_slice(&body);
        p
    }
}

/// A pcap file (libpcap format, LINKTYPE_RAW: each frame an IPv4 or IPv6 packet).
fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(0xa1b2_c3d4u32.to_le_bytes());
    f.extend(2u16.to_le_bytes());
    f.extend(4u16.to_le_bytes());
    f.extend(0u32.to_le_bytes());
    f.extend(0u32.to_le_bytes());
    f.extend(65535u32.to_le_bytes());
    f.extend(101u32.to_le_bytes());
    for (i, fr) in frames.iter().enumerate() {
        f.extend((1_700_000_000u32 + i as u32).to_le_bytes());
        f.extend(0u32.to_le_bytes());
        f.extend((fr.len() as u32).to_le_bytes());
        f.extend((fr.len() as u32).to_le_bytes());
        f.extend(fr);
    }
    f
}

/// 6-in-6 raw (AES-CBC + HMAC-SHA1), 4-in-6 over UDP (AES-GCM), 6-in-4 raw (AES-CBC +
/// HMAC-SHA1), 6-in-6 over UDP (AES-256-CBC + HMAC-SHA-256): tshark decrypts every packet,
/// finds the ICV good, the inner echo request of the right family, and the UDP checksum of
/// every ESP-in-UDP-over-IPv6 datagram good.
#[test]
fn tshark_decrypts_and_verifies_ipv6_esp() {
    if !require_tool_or_skip("tshark") {
        return;
    }
    let cases = [
        Case {
            spi: 0x6601,
            outer_v6: true,
            inner_v6: true,
            udp: false,
            encryption: EncrAlgorithm::AesCbc128,
            authentication: AuthAlgorithm::HmacSha1,
        },
        Case {
            spi: 0x6602,
            outer_v6: true,
            inner_v6: false,
            udp: true,
            encryption: EncrAlgorithm::AesGcm128,
            authentication: AuthAlgorithm::None,
        },
        Case {
            spi: 0x6603,
            outer_v6: false,
            inner_v6: true,
            udp: false,
            encryption: EncrAlgorithm::AesCbc128,
            authentication: AuthAlgorithm::HmacSha1,
        },
        Case {
            spi: 0x6604,
            outer_v6: true,
            inner_v6: true,
            udp: true,
            encryption: EncrAlgorithm::AesCbc256,
            authentication: AuthAlgorithm::HmacSha256,
        },
    ];
    let now = Instant::now();
    let mut frames = Vec::new();
    let mut esp_sa = String::from("# This file is automatically generated, DO NOT MODIFY.\n");
    for case in &cases {
        let (local, peer): (IpAddr, IpAddr) = if case.outer_v6 {
            (LOCAL6.into(), PEER6.into())
        } else {
            (LOCAL4.into(), PEER4.into())
        };
        let mut sa = SecurityAssociation::new(
            SaParams {
                direction: Direction::Outbound,
                mode: Mode::Tunnel,
                esp: Some(keys(case)),
                ah: None,
                local,
                peer,
                encapsulation: if case.udp {
                    SaEncapsulation::Udp {
                        local_port: 4500,
                        peer_port: 4500,
                    }
                } else {
                    SaEncapsulation::Raw
                },
                replay_window: 64,
                lifetime: LifetimeLimits::UNLIMITED,
                protected_networks: vec![],
            },
            now,
        )
        .unwrap();
        let params = EncapParams {
            path_mtu: 1500,
            ip_id: 1,
            icmp_source: LOCAL4,
            icmp_source_v6: LOCAL6,
        };
        let inner = echo(case.inner_v6);
        let mut rng = rand::make_rng::<rand::rngs::StdRng>();
        for _ in 0..2 {
            let mut out = vec![0u8; 2048];
            match sa.encap(now, &inner, &params, &mut rng, &mut out) {
                Ok(EncapOutcome::Send(p)) => frames.push(out[..p.len].to_vec()),
                other => panic!("spi {:#x}: {other:?}", case.spi),
            }
        }
        let k = keys(case);
        let key = |b: &[u8]| match b.is_empty() {
            true => String::new(),
            false => format!("0x{}", hex(b)),
        };
        esp_sa.push_str(&format!(
            "\"{}\",\"{}\",\"{}\",\"0x{:08x}\",\"{}\",\"{}\",\"{}\",\"{}\"\n",
            if case.outer_v6 { "IPv6" } else { "IPv4" },
            local,
            peer,
            case.spi,
            wireshark_encr(case.encryption),
            key(&k.encryption_key.0),
            wireshark_auth(case.authentication),
            key(&k.authentication_key.0),
        ));
    }
    let dir = TempDir::new("esp6-tshark");
    let capture = dir.join("esp6.pcap");
    std::fs::write(&capture, pcap(&frames)).unwrap();
    let conf = dir.join("wireshark");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("esp_sa"), esp_sa).unwrap();
    std::fs::write(
        conf.join("preferences"),
        "esp.enable_encryption_decode: TRUE\nesp.enable_authentication_check: TRUE\n\
         udp.check_checksum: TRUE\n",
    )
    .unwrap();
    let fields = [
        "frame.number",
        "esp.spi",
        "esp.icv_good",
        "ipv6.src",
        "ip.src",
        "icmpv6.type",
        "icmp.type",
        "udp.checksum.status",
    ];
    let mut cmd = Command::new("tshark");
    cmd.env("WIRESHARK_CONFIG_DIR", &conf)
        .arg("-n")
        .arg("-r")
        .arg(&capture)
        .args(["-T", "fields", "-E", "separator=|", "-E", "occurrence=a"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("running tshark");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), frames.len(), "{text}");
    for (n, row) in rows.iter().enumerate() {
        let case = &cases[n / 2];
        let what = format!("frame {} (spi {:#x}): {row:?}", n + 1, case.spi);
        assert_eq!(row.len(), fields.len(), "{what}");
        let spi = u32::from_str_radix(row[1].trim_start_matches("0x"), 16).unwrap_or(0);
        assert_eq!(spi, case.spi, "{what}");
        assert!(
            row[2] == "1" || row[2].eq_ignore_ascii_case("true"),
            "{what}: ICV good"
        );
        let v6_addrs: Vec<&str> = row[3].split(',').filter(|s| !s.is_empty()).collect();
        if case.outer_v6 {
            assert_eq!(v6_addrs.first().copied(), Some("2001:db8::1"), "{what}");
        }
        if case.inner_v6 {
            // The decrypted inner IPv6 header and its ICMPv6 echo request.
            assert!(v6_addrs.contains(&"2001:db8:a::7"), "{what}");
            assert_eq!(row[5], "128", "{what}");
        } else {
            assert!(row[4].split(',').any(|a| a == "198.51.100.7"), "{what}");
            assert_eq!(row[6], "8", "{what}");
        }
        if case.udp && case.outer_v6 {
            // Wireshark: 1 = good (0 bad, 2 not checked, 3 not present).
            assert_eq!(row[7], "1", "{what}: UDP checksum over IPv6");
        }
    }
}

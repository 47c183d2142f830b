//! The TUN device in throw-away network namespaces: queues, routes, traffic both ways, and
//! the offload paths (NEEDS_CSUM, USO super-packets cut across calls, coalesced TCP writes).

use super::*;
use crate::io::batch::send_all;
use crate::io::link::{interface_index, interface_mtu};
use crate::io::route::{Route, RouteError, RouteGuard};
use crate::io::testns::in_netns;
use crate::io::udp::{UdpBatchSocket, UdpOptions};
use ikehub::wire::Ipv4Packet;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv4 + UDP (checksum 0) packet.
fn udp_packet(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        unreachable!()
    };
    let total = 28 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&s.ip().octets());
    p[16..20].copy_from_slice(&d.ip().octets());
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&s.port().to_be_bytes());
    p[22..24].copy_from_slice(&d.port().to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

#[test]
fn tun_queues_routes_and_traffic_both_ways() {
    in_netns("tun_queues_routes_and_traffic_both_ways", || {
        queues_routes_and_traffic(false)
    });
}

/// The same with the virtio-net header: writes carry it, reads lose it, and the UDP
/// checksums the kernel left partial (NEEDS_CSUM) come out complete.
#[test]
fn tun_queues_routes_and_traffic_both_ways_with_offload() {
    in_netns(
        "tun_queues_routes_and_traffic_both_ways_with_offload",
        || queues_routes_and_traffic(true),
    );
}

fn queues_routes_and_traffic(offload: bool) {
    {
        let name = "iktest0";
        let dev = TunDevice::create(&TunConfig {
            name: name.into(),
            mtu: 1400,
            queues: 2,
            address: Some((LOCAL, 32)),
            offload,
        })
        .unwrap();
        assert_eq!(dev.offload(), offload, "this kernel has TUN offloads");
        assert_eq!(dev.queues().len(), 2);
        assert!(dev.queues().iter().all(|q| q.offload() == offload));
        assert_eq!(interface_mtu(name).unwrap(), 1400);
        let link = ip(&["-d", "link", "show", name]);
        assert!(link.contains(",UP") || link.contains("<UP"), "{link}");
        assert!(link.contains("multi_queue"), "{link}");
        assert!(ip(&["-4", "addr", "show", name]).contains("198.51.100.1/32"));

        // Routes: add, duplicate, bad device, bad source, remove, guard drop.
        let route = Route::new(Ipv4Addr::new(203, 0, 113, 0), 24, name).with_src(LOCAL);
        let mut guard = RouteGuard::new().unwrap();
        guard.add(route.clone()).unwrap();
        let shown = ip(&["route", "show", "203.0.113.0/24"]);
        assert!(
            shown.contains("dev iktest0") && shown.contains("src 198.51.100.1"),
            "{shown}"
        );
        let dup = guard.add(route.clone()).unwrap_err();
        assert_eq!(dup.to_string(), "route 203.0.113.0/24 already exists");
        let no_dev = guard
            .add(Route::new(Ipv4Addr::new(192, 0, 2, 0), 24, "nosuch0"))
            .unwrap_err();
        assert!(matches!(no_dev, RouteError::NoDevice { .. }), "{no_dev:?}");
        assert_eq!(
            no_dev.to_string(),
            "route 192.0.2.0/24 dev nosuch0: no such device nosuch0"
        );
        let bad_src = guard
            .add(
                Route::new(Ipv4Addr::new(192, 0, 2, 0), 24, name)
                    .with_src(Ipv4Addr::new(192, 0, 2, 99)),
            )
            .unwrap_err();
        eprintln!("bad source reported as: {bad_src}");
        assert!(matches!(bad_src, RouteError::Kernel { .. }), "{bad_src}");
        // The kernel's extended ack names the reason (Linux >= 4.12 sends them).
        assert!(bad_src.to_string().contains("prefsrc"), "{bad_src}");
        // IPv6 goes through the same code (the device has no IPv6 address: no source).
        let v6 = Route::new(
            "2001:db8:5::".parse::<std::net::Ipv6Addr>().unwrap(),
            48,
            name,
        );
        guard.add(v6.clone()).unwrap();
        let shown = ip(&["-6", "route", "show", "2001:db8:5::/48"]);
        assert!(shown.contains("dev iktest0"), "{shown}");
        guard.remove(&v6).unwrap();
        assert_eq!(ip(&["-6", "route", "show", "2001:db8:5::/48"]).trim(), "");
        guard.add(v6).unwrap();
        guard.remove(&route).unwrap();
        assert_eq!(ip(&["route", "show", "203.0.113.0/24"]).trim(), "");
        guard.add(route.clone()).unwrap();
        guard
            .add(Route::new(Ipv4Addr::new(192, 0, 2, 128), 25, name))
            .unwrap();
        assert_eq!(guard.installed().len(), 3);
        drop(guard);
        assert!(!ip(&["route", "show", "dev", name]).contains("192.0.2.128/25"));
        assert_eq!(ip(&["-6", "route", "show", "2001:db8:5::/48"]).trim(), "");
        assert_eq!(ip(&["route", "show", "203.0.113.0/24"]).trim(), "");

        let mut guard = RouteGuard::new().unwrap();
        guard.add(route).unwrap();
        let queues = dev.into_queues();

        // TUN -> stack: packets written to queue 0 reach a UDP socket on 198.51.100.1.
        let sock =
            UdpBatchSocket::bind(SocketAddr::from((LOCAL, 5000)), &UdpOptions::default()).unwrap();
        let peer = SocketAddr::from((REMOTE, 1234));
        let mut out = PacketBatch::with_defaults();
        for k in 0..8u8 {
            out.push(
                &udp_packet(peer, sock.local_addr().unwrap(), &[k; 100]),
                None,
            )
            .unwrap();
        }
        let mut cursor = 0;
        send_all(&queues[0], &mut out, &mut cursor, |i, e| {
            panic!("TUN write {i}: {e}")
        })
        .unwrap();
        let mut inb = PacketBatch::with_defaults();
        let deadline = Instant::now() + Duration::from_secs(2);
        while inb.len() < 8 && Instant::now() < deadline {
            if sock.recv_batch(&mut inb).is_err() {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        assert_eq!(inb.len(), 8, "datagrams from the TUN");
        for k in 0..8 {
            assert_eq!(inb.addr(k), Some(peer));
            assert_eq!(inb.packet(k), &[k as u8; 100]);
        }

        // Stack -> TUN: datagrams to 203.0.113.5 come out of one of the queues.
        out.clear();
        for k in 0..8u8 {
            out.push(&[k; 64], Some(peer)).unwrap();
        }
        let mut cursor = 0;
        send_all(&sock, &mut out, &mut cursor, |i, e| {
            panic!("UDP send {i}: {e}")
        })
        .unwrap();
        let mut got: Vec<u8> = Vec::new();
        let mut per_queue = [0usize; 2];
        let deadline = Instant::now() + Duration::from_secs(2);
        while got.len() < 8 && Instant::now() < deadline {
            for (q, queue) in queues.iter().enumerate() {
                let mut b = PacketBatch::with_defaults();
                if queue.recv_batch(&mut b).is_ok() {
                    for (p, _) in b.iter() {
                        // Only our datagrams: IPv4, UDP, to 203.0.113.5:1234.
                        if p.len() == 28 + 64 && p[9] == 17 && p[16..20] == REMOTE.octets() {
                            assert_eq!(u16::from_be_bytes([p[22], p[23]]), 1234);
                            assert!(udp_checksum_ok(p), "UDP checksum of {p:02x?}");
                            got.push(p[28]);
                            per_queue[q] += 1;
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(
            got,
            (0..8).collect::<Vec<u8>>(),
            "one flow, one queue, in order"
        );
        assert!(
            per_queue.contains(&8),
            "a flow stays on one queue: {per_queue:?}"
        );
        // The socket left the UDP checksums to the device (NEEDS_CSUM): completed here.
        let completed: u64 = queues
            .iter()
            .map(|q| q.offload_stats().checksums_completed.get())
            .sum();
        if offload {
            assert!(completed >= 8, "{completed} checksums completed");
        } else {
            assert_eq!(completed, 0);
        }

        // Closing every queue removes the device and its routes. A child that another
        // test thread forks holds copies of our fds until its exec (close-on-exec), so the
        // last close may come a moment later: wait for it, bounded.
        drop(queues);
        let deadline = Instant::now() + Duration::from_secs(5);
        while interface_index(name).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let gone = interface_index(name).unwrap_err();
        assert_eq!(gone.kind(), io::ErrorKind::NotFound, "{gone}");
        drop(guard); // routes already gone with the device: not an error
    }
}

/// UDP checksum over the pseudo-header, computed here independently of `wire`.
fn udp_checksum_ok(p: &[u8]) -> bool {
    let udp = &p[20..];
    if udp[6..8] == [0, 0] {
        return true; // no checksum (RFC 768)
    }
    let mut pseudo = Vec::from(&p[12..20]);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(udp);
    checksum(&pseudo) == 0
}

/// Five TCP segments of one flow to a closed port, written with `send_coalesced`: with
/// offload the kernel takes them as one packet (one RST comes back, so the merged packet
/// was valid, checksum included), without it as five (five RSTs).
#[test]
fn coalesced_tcp_write_is_one_packet_to_the_kernel() {
    in_netns("coalesced_tcp_write_is_one_packet_to_the_kernel", || {
        assert_eq!(
            rsts_for_five_segments(true),
            1,
            "offload: one merged packet"
        );
        assert_eq!(rsts_for_five_segments(false), 5, "no offload: five packets");
    });
}

fn rsts_for_five_segments(offload: bool) -> usize {
    let name = "iktest3";
    let dev = TunDevice::create(&TunConfig {
        name: name.into(),
        mtu: 1400,
        queues: 1,
        address: Some((LOCAL, 32)),
        offload,
    })
    .unwrap();
    let mut guard = RouteGuard::new().unwrap();
    guard
        .add(Route::new(Ipv4Addr::new(203, 0, 113, 0), 24, name).with_src(LOCAL))
        .unwrap();
    let queues = dev.into_queues();
    let q = &queues[0];
    let mut out = PacketBatch::new(8, 2048, 0);
    for k in 0..5u32 {
        out.push(
            &tcp_segment(REMOTE, LOCAL, 1000 + k * 1000, k as u16, 1000),
            None,
        )
        .unwrap();
    }
    assert_eq!(q.send_coalesced(&mut out), 0, "the kernel took every write");
    // The RSTs (to 203.0.113.5, which routes back into the device); then a quiet spell
    // so that late ones are counted too.
    let mut rsts = 0;
    let mut quiet_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && (rsts == 0 || quiet_since.elapsed() < Duration::from_millis(300))
    {
        let mut b = PacketBatch::with_defaults();
        match q.recv_batch(&mut b) {
            Ok(_) => {
                for (p, _) in b.iter() {
                    if p.len() >= 40 && p[9] == 6 && p[16..20] == REMOTE.octets() {
                        assert_eq!(p[33] & 0x04, 0x04, "a RST: {p:02x?}");
                        rsts += 1;
                        quiet_since = Instant::now();
                    }
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    drop(queues);
    drop(guard);
    rsts
}

/// IPv4/TCP (ACK, DF) from `src`:40000 to `dst`:9 with `len` payload bytes, checksums
/// filled.
fn tcp_segment(src: Ipv4Addr, dst: Ipv4Addr, seq: u32, id: u16, len: usize) -> Vec<u8> {
    let total = 40 + len;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&9u16.to_be_bytes());
    p[24..28].copy_from_slice(&seq.to_be_bytes());
    p[28..32].copy_from_slice(&77u32.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = 0x10;
    p[34..36].copy_from_slice(&1000u16.to_be_bytes());
    for (i, b) in p[40..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let mut pseudo = Vec::from(&p[12..20]);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&((total - 20) as u16).to_be_bytes());
    pseudo.extend_from_slice(&p[20..]);
    let c = checksum(&pseudo);
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

/// A UDP socket in the namespace sends one 10,000-byte `UDP_SEGMENT` (USO) write through
/// the device; the queue that gets it hands over 10 datagrams of 1000 bytes with good
/// checksums, a small batch at a time (the rest of the super-packet waits in the queue
/// for the next call).
#[test]
fn uso_super_packet_is_cut_into_datagrams_across_calls() {
    in_netns(
        "uso_super_packet_is_cut_into_datagrams_across_calls",
        || {
            let name = "iktest2";
            let dev = TunDevice::create(&TunConfig {
                name: name.into(),
                mtu: 1400,
                queues: 1,
                address: Some((LOCAL, 32)),
                offload: true,
            })
            .unwrap();
            let uso = dev.udp_offload();
            let mut guard = RouteGuard::new().unwrap();
            guard
                .add(Route::new(Ipv4Addr::new(203, 0, 113, 0), 24, name).with_src(LOCAL))
                .unwrap();
            let queues = dev.into_queues();
            let q = &queues[0];

            let sock = std::net::UdpSocket::bind((LOCAL, 0)).unwrap();
            let seg: libc::c_int = 1000;
            // SAFETY: a valid socket fd and a c_int option value of the right size.
            let rc = unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_UDP,
                    libc::UDP_SEGMENT,
                    (&seg as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "UDP_SEGMENT: {}", io::Error::last_os_error());
            let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
            sock.send_to(&data, (REMOTE, 1234)).unwrap();

            let mut got = Vec::new();
            let mut calls = Vec::new();
            let mut b = PacketBatch::new(4, 2048, 128);
            let deadline = Instant::now() + Duration::from_secs(5);
            while got.len() < data.len() && Instant::now() < deadline {
                b.clear();
                match q.recv_batch(&mut b) {
                    Ok(n) => {
                        let mut ours = 0;
                        for (p, _) in b.iter() {
                            if p.len() > 28 && p[9] == 17 && p[16..20] == REMOTE.octets() {
                                assert_eq!(p.len(), 28 + 1000);
                                assert!(Ipv4Packet::new_checked(p).unwrap().verify_checksum());
                                assert!(udp_checksum_ok(p), "UDP checksum");
                                got.extend_from_slice(&p[28..]);
                                ours += 1;
                            }
                        }
                        calls.push((n, ours));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(e) => panic!("recv_batch: {e}"),
                }
            }
            assert_eq!(got, data, "the datagrams carry the write in order");
            let s = q.offload_stats();
            eprintln!("USO {uso}: calls {calls:?}, stats {s:?}");
            if uso {
                assert_eq!(s.super_packets.get(), 1, "one super-packet read");
                assert_eq!(s.segments.get(), 10);
                let ours: Vec<usize> = calls.iter().map(|c| c.1).filter(|&o| o > 0).collect();
                // Other packets (IPv6 router solicitations) may share a call's 4 slots, so
                // the split varies; 10 segments in 4 slots take at least 3 calls.
                assert!(ours.len() >= 3 && ours.iter().all(|&o| o <= 4), "{calls:?}");
            }
            assert_eq!(
                (s.malformed.get(), s.unsupported.get(), s.too_big.get()),
                (0, 0, 0)
            );
            drop(queues);
            drop(guard);
        },
    );
}

#[test]
fn zero_queues_refused() {
    let e = TunDevice::create(&TunConfig {
        name: "iktest1".into(),
        mtu: 1400,
        queues: 0,
        address: None,
        offload: true,
    })
    .unwrap_err();
    assert!(e.to_string().contains("0 queues"), "{e}");
}

//! IPv6 through the TUN device with offloads, in throw-away network namespaces: the kernel's
//! TSO6 super-packets are cut into valid segments, and coalesced TCPv6 writes reach the
//! kernel's stack as one packet.

use super::*;
use crate::io::route::{Route, RouteGuard};
use crate::io::testns::in_netns;
use std::net::{Ipv6Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The device's own address, and the far side reached through it.
const LOCAL: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
const REMOTE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 5);
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// Creates the device `name` with `LOCAL` and a route to 2001:db8:2::/64 through it.
fn v6_device(name: &str, offload: bool) -> (Vec<TunQueue>, RouteGuard) {
    let dev = TunDevice::create(&TunConfig {
        name: name.into(),
        mtu: 1400,
        queues: 1,
        address: None,
        offload,
    })
    .unwrap();
    assert_eq!(dev.offload(), offload, "this kernel has TUN offloads");
    let out = Command::new("ip")
        .args([
            "-6",
            "addr",
            "add",
            "2001:db8:1::1/128",
            "dev",
            name,
            "nodad",
        ])
        .output()
        .expect("running ip");
    assert!(
        out.status.success(),
        "ip -6 addr add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The address takes effect (its local route appears) from the kernel's address work
    // queue, even without DAD: wait for it, bounded, or the first packets go unanswered.
    let deadline = Instant::now() + Duration::from_secs(5);
    let local_route = || {
        let out = Command::new("ip")
            .args(["-6", "route", "show", "table", "local", "2001:db8:1::1"])
            .output()
            .expect("running ip");
        String::from_utf8_lossy(&out.stdout).contains("local 2001:db8:1::1")
    };
    while !local_route() {
        assert!(
            Instant::now() < deadline,
            "2001:db8:1::1 never became local"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut guard = RouteGuard::new().unwrap();
    let net = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0);
    guard.add(Route::new(net, 64, name)).unwrap();
    (dev.into_queues(), guard)
}

/// True when the TCP checksum of IPv6 packet `p` (no extension headers) verifies over the
/// RFC 8200 §8.1 pseudo-header, laid out here as bytes (independent of `ikehub::wire`).
fn tcp6_checksum_ok(p: &[u8]) -> bool {
    let mut bytes = Vec::from(&p[8..40]);
    bytes.extend_from_slice(&((p.len() - 40) as u32).to_be_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 6]);
    bytes.extend_from_slice(&p[40..]);
    let mut s: u64 = 0;
    for c in bytes.chunks(2) {
        s += u64::from(c[0]) << 8 | u64::from(*c.get(1).unwrap_or(&0));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s == 0xffff
}

/// IPv6/TCP from `REMOTE`:`sport` to `LOCAL`:`dport` with `opts` (a multiple of 4 bytes)
/// and `payload`, checksum filled.
fn tcp6(
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    opts: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let l4 = 20 + opts.len();
    let mut p = vec![0u8; 40 + l4 + payload.len()];
    p[0] = 0x60;
    let plen = (p.len() - 40) as u16;
    p[4..6].copy_from_slice(&plen.to_be_bytes());
    p[6] = 6;
    p[7] = 64;
    p[8..24].copy_from_slice(&REMOTE.octets());
    p[24..40].copy_from_slice(&LOCAL.octets());
    let t = &mut p[40..];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = ((l4 / 4) as u8) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    t[20..l4].copy_from_slice(opts);
    t[l4..].copy_from_slice(payload);
    // Fill the checksum so that the sum verifies: the complement of the sum with 0 in it.
    let mut s: u32 = 0;
    let mut bytes = Vec::from(&p[8..40]);
    bytes.extend_from_slice(&u32::from(plen).to_be_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 6]);
    bytes.extend_from_slice(&p[40..]);
    for c in bytes.chunks(2) {
        s += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    p[56..58].copy_from_slice(&(!(s as u16)).to_be_bytes());
    p
}

/// Our TCP packets on the device: IPv6, TCP, between `LOCAL` and `REMOTE` (the kernel also
/// sends router and multicast listener solicitations through it).
fn is_ours(p: &[u8]) -> bool {
    p.len() >= 60
        && p[0] >> 4 == 6
        && p[6] == 6
        && p[8..24] == LOCAL.octets()
        && p[24..40] == REMOTE.octets()
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A TCP connection from the namespace's stack to `REMOTE`, whose far end is played here
/// through the device (SYN-ACK with MSS 1000), sends 8000 bytes in one write. With TSO6 the
/// kernel hands them over as one super-packet: it comes out of `recv_batch` as segments of
/// at most 1000 bytes, in sequence, each with a valid checksum over the IPv6 pseudo-header.
#[test]
fn tso6_super_packet_is_cut_into_valid_segments() {
    in_netns("tso6_super_packet_is_cut_into_valid_segments", || {
        let (queues, guard) = v6_device("iktest6", true);
        let q = &queues[0];
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let data: Vec<u8> = (0..8000u32).map(|i| (i * 13 % 251) as u8).collect();
        let sent = data.clone();
        // Threads made here share the namespace of the thread that makes them.
        let client = std::thread::spawn(move || {
            let mut s = TcpStream::connect_timeout(
                &SocketAddr::from((REMOTE, 5201)),
                Duration::from_secs(5),
            )?;
            std::io::Write::write_all(&mut s, &sent)?;
            // Keep the connection open until the reader is done.
            let _ = stop_rx.recv_timeout(Duration::from_secs(10));
            Ok::<_, io::Error>(())
        });

        let mut b = PacketBatch::new(64, 2048, 0);
        let deadline = Instant::now() + Duration::from_secs(5);
        // The SYN, answered with a SYN-ACK offering MSS 1000.
        let mut syn = None;
        while syn.is_none() && Instant::now() < deadline {
            b.clear();
            if q.recv_batch(&mut b).is_err() {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            syn = b
                .iter()
                .map(|(p, _)| p)
                .find(|p| is_ours(p) && p[53] & SYN != 0)
                .map(|p| {
                    // Left partial by the stack (NEEDS_CSUM), completed by the queue.
                    assert!(tcp6_checksum_ok(p), "SYN checksum of {p:02x?}");
                    (u16::from_be_bytes([p[40], p[41]]), be32(&p[44..48]))
                });
        }
        let (port, isn) = syn.expect("the SYN came out of the device");
        let mss = [2, 4, 0x03, 0xe8];
        let synack = tcp6(5201, port, 7000, isn.wrapping_add(1), SYN | ACK, &mss, &[]);
        q.send(&synack).unwrap();

        // The data: segments of at most 1000 bytes, in order, checksums valid.
        let mut got = Vec::new();
        let mut segments = 0;
        while got.len() < data.len() && Instant::now() < deadline {
            b.clear();
            if q.recv_batch(&mut b).is_err() {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            for (p, _) in b.iter() {
                if !is_ours(p) {
                    continue;
                }
                let l4 = usize::from(p[52] >> 4) * 4;
                let payload = &p[40 + l4..];
                assert_eq!(usize::from(u16::from_be_bytes([p[4], p[5]])), p.len() - 40);
                assert!(tcp6_checksum_ok(p), "TCP checksum of {:02x?}", &p[..60]);
                if payload.is_empty() {
                    continue;
                }
                assert!(payload.len() <= 1000, "a segment of {}", payload.len());
                let seq = be32(&p[44..48]);
                // A retransmission (the stack was not ACKed) repeats what was seen.
                let off = seq.wrapping_sub(isn.wrapping_add(1)) as usize;
                if off < got.len() {
                    continue;
                }
                assert_eq!(off, got.len(), "segments in sequence");
                got.extend_from_slice(payload);
                segments += 1;
            }
        }
        let _ = stop_tx.send(());
        client.join().unwrap().unwrap();
        assert_eq!(got, data, "the segments carry the write");
        let s = q.offload_stats();
        eprintln!("TSO6: {segments} segments, stats {s:?}");
        assert!(segments >= 8);
        assert!(s.super_packets.get() >= 1, "the kernel used TSO6: {s:?}");
        assert!(
            s.checksums_completed.get() >= 1,
            "the SYN's partial checksum: {s:?}"
        );
        assert_eq!(
            (s.malformed.get(), s.unsupported.get(), s.too_big.get()),
            (0, 0, 0)
        );
        drop(queues);
        drop(guard);
    });
}

/// Five TCPv6 segments of one flow to a closed port, written with `send_coalesced`: with
/// offload the kernel takes them as one `GSO_TCPV6` packet (one RST comes back, so the
/// merged packet was valid, checksum included), without it as five (five RSTs).
#[test]
fn coalesced_tcpv6_write_is_one_packet_to_the_kernel() {
    in_netns("coalesced_tcpv6_write_is_one_packet_to_the_kernel", || {
        assert_eq!(
            rsts_for_five_segments(true),
            1,
            "offload: one merged packet"
        );
        assert_eq!(rsts_for_five_segments(false), 5, "no offload: five packets");
    });
}

fn rsts_for_five_segments(offload: bool) -> usize {
    let (queues, guard) = v6_device("iktest7", offload);
    let q = &queues[0];
    let mut out = PacketBatch::new(8, 2048, 0);
    let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    for k in 0..5u32 {
        out.push(
            &tcp6(40000, 9, 1000 + k * 1000, 77, ACK, &[], &payload),
            None,
        )
        .unwrap();
    }
    assert_eq!(q.send_coalesced(&mut out), 0, "the kernel took every write");
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
                    if is_ours(p) {
                        assert_eq!(p[53] & RST, RST, "a RST: {p:02x?}");
                        assert!(tcp6_checksum_ok(p));
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

/// A UDP socket sends one 5000-byte `UDP_SEGMENT` (USO) write to `REMOTE` over IPv6: the
/// queue hands over five datagrams of 1000 bytes with valid checksums (mandatory over IPv6),
/// from one super-packet when the kernel has USO for TUN (Linux 6.2), else as the stack cut
/// them.
#[test]
fn uso_over_ipv6_is_cut_into_datagrams() {
    in_netns("uso_over_ipv6_is_cut_into_datagrams", || {
        let (queues, guard) = v6_device("iktest8", true);
        let q = &queues[0];
        let uso = q.dev.udp_gso();
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
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        sock.send_to(&data, (REMOTE, 1234)).unwrap();

        let mut got = Vec::new();
        let mut b = PacketBatch::new(16, 2048, 0);
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < data.len() && Instant::now() < deadline {
            b.clear();
            if q.recv_batch(&mut b).is_err() {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            for (p, _) in b.iter() {
                let udp6 = p.len() > 48 && p[0] >> 4 == 6 && p[6] == 17;
                if !(udp6 && p[24..40] == REMOTE.octets()) {
                    continue;
                }
                assert_eq!(p.len(), 48 + 1000);
                assert_eq!(u16::from_be_bytes([p[44], p[45]]), 1008, "UDP length");
                assert_ne!(p[46..48], [0, 0], "a UDP checksum is mandatory over IPv6");
                let mut bytes = Vec::from(&p[8..40]);
                bytes.extend_from_slice(&1008u32.to_be_bytes());
                bytes.extend_from_slice(&[0, 0, 0, 17]);
                bytes.extend_from_slice(&p[40..]);
                let mut s: u64 = 0;
                for c in bytes.chunks(2) {
                    s += u64::from(c[0]) << 8 | u64::from(*c.get(1).unwrap_or(&0));
                }
                while s > 0xffff {
                    s = (s & 0xffff) + (s >> 16);
                }
                assert_eq!(s, 0xffff, "UDP checksum");
                got.extend_from_slice(&p[48..]);
            }
        }
        assert_eq!(got, data, "the datagrams carry the write in order");
        let s = q.offload_stats();
        eprintln!("USO over IPv6 ({uso}): stats {s:?}");
        if uso {
            assert_eq!(s.super_packets.get(), 1, "one super-packet read");
            assert_eq!(s.segments.get(), 5);
        }
        assert_eq!(
            (s.malformed.get(), s.unsupported.get(), s.too_big.get()),
            (0, 0, 0)
        );
        drop(queues);
        drop(guard);
    });
}

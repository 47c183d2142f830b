//! IPv6 super-packets (TSO6, USO over IPv6) and partial checksums over IPv6, read as the TUN
//! device hands them over: every segment's header, length, sequence number and checksum,
//! the checksum verified against the RFC 8200 §8.1 pseudo-header laid out here byte by byte.

use super::super::vnet::{
    F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, OffloadError, Plan,
    VnetHeader, prepare,
};
use super::*;

/// 2001:db8:1::1 and 2001:db8:2::5.
const SRC: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const DST: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const AH: u8 = 51;
const DEST_OPTS: u8 = 60;
const ACK: u8 = 0x10;

/// True when the RFC 8200 §8.1 pseudo-header (source, destination, 32-bit upper-layer
/// length, three zero bytes, next header) followed by `upper` sums to 0xffff: written without
/// `checksum.rs`, a u64 accumulator over a byte vector built from the RFC's figure.
fn rfc8200_checksum_ok(ip: &[u8], next_header: u8, upper: &[u8]) -> bool {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&ip[8..24]);
    bytes.extend_from_slice(&ip[24..40]);
    bytes.extend_from_slice(&(upper.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&[0, 0, 0, next_header]);
    bytes.extend_from_slice(upper);
    let mut s: u64 = 0;
    for i in (0..bytes.len()).step_by(2) {
        s += u64::from(bytes[i]) * 256 + bytes.get(i + 1).map_or(0, |&b| u64::from(b));
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s == 0xffff
}

/// An IPv6 super-packet as the kernel hands it over: traffic class 0xb8 (EF, not-ECT),
/// flow label 0x12345, hop limit 64, the extension headers `exts` (type, length in bytes, a
/// multiple of 8) in that order, then TCP (with `tcp_opts` option bytes) or UDP, payload
/// bytes `i as u8`. The checksum field holds garbage, to prove it is recomputed.
fn super_packet(
    proto: u8,
    exts: &[(u8, usize)],
    tcp_opts: usize,
    flags: u8,
    payload: usize,
) -> Vec<u8> {
    let ext_len: usize = exts.iter().map(|e| e.1).sum();
    let l3 = 40 + ext_len;
    let l4 = if proto == 6 { 20 + tcp_opts } else { 8 };
    let total = l3 + l4 + payload;
    let mut p = vec![0u8; total];
    p[0..4].copy_from_slice(&[0x6b, 0x81, 0x23, 0x45]);
    p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
    p[6] = exts.first().map_or(proto, |e| e.0);
    p[7] = 64;
    p[8..24].copy_from_slice(&SRC);
    p[24..40].copy_from_slice(&DST);
    let mut at = 40;
    for (i, &(_, len)) in exts.iter().enumerate() {
        p[at] = exts.get(i + 1).map_or(proto, |e| e.0);
        p[at + 1] = (len / 8 - 1) as u8;
        // One PadN option filling the rest (RFC 8200 §4.2).
        p[at + 2] = 1;
        p[at + 3] = (len - 4) as u8;
        at += len;
    }
    let t = &mut p[l3..];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&5201u16.to_be_bytes());
    if proto == 6 {
        t[4..8].copy_from_slice(&0xffff_f800u32.to_be_bytes()); // seq wraps inside
        t[8..12].copy_from_slice(&77u32.to_be_bytes());
        t[12] = ((l4 / 4) as u8) << 4;
        t[13] = flags;
        t[14..16].copy_from_slice(&512u16.to_be_bytes());
        for (i, b) in t[20..l4].iter_mut().enumerate() {
            *b = 0xa0 + i as u8;
        }
        t[16..18].copy_from_slice(&[0xde, 0xad]);
    } else {
        t[4..6].copy_from_slice(&((l4 + payload) as u16).to_be_bytes());
        t[6..8].copy_from_slice(&[0xbe, 0xef]);
    }
    for (i, b) in p[l3 + l4..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

fn header(gso_type: u8, mss: u16, csum_start: u16, l4: u16) -> VnetHeader {
    VnetHeader {
        flags: F_NEEDS_CSUM,
        gso_type,
        hdr_len: csum_start + l4,
        gso_size: mss,
        csum_start,
        csum_offset: if gso_type & !GSO_ECN == GSO_UDP_L4 {
            6
        } else {
            16
        },
    }
}

fn segments(hdr: &VnetHeader, p: &mut [u8]) -> Vec<Vec<u8>> {
    let Ok(Plan::Segment(gso)) = prepare(hdr, p) else {
        panic!("not a GSO plan: {:?}", prepare(hdr, p))
    };
    (0..gso.count())
        .map(|k| {
            let mut buf = vec![0u8; gso.max_segment_len()];
            let n = gso.write_segment(p, k, &mut buf).unwrap();
            assert_eq!(n, gso.segment_len(k));
            buf.truncate(n);
            buf
        })
        .collect()
}

#[test]
fn tcpv6_of_three_and_a_half_mss_is_cut_into_four_segments() {
    let (mss, payload, l4) = (1000usize, 3500usize, 32usize);
    let flags = TCP_CWR | TCP_PSH | TCP_FIN | ACK;
    let orig = super_packet(6, &[], 12, flags, payload);
    let mut p = orig.clone();
    let segs = segments(&header(GSO_TCPV6 | GSO_ECN, mss as u16, 40, 32), &mut p);
    assert_eq!(
        segs.len(),
        4,
        "3500 bytes at 1000: three full and one of 500"
    );
    let mut data = Vec::new();
    for (k, s) in segs.iter().enumerate() {
        let last = k == 3;
        let chunk = if last { 500 } else { mss };
        assert_eq!(s.len(), 40 + l4 + chunk, "segment {k}: length");
        // IPv6: version, traffic class, flow label kept; payload length its own; next
        // header, hop limit and addresses kept.
        assert_eq!(s[..4], orig[..4], "segment {k}: version/class/flow");
        assert_eq!(
            usize::from(u16::from_be_bytes([s[4], s[5]])),
            l4 + chunk,
            "segment {k}: payload length"
        );
        assert_eq!(
            s[6..40],
            orig[6..40],
            "segment {k}: next header, hops, addresses"
        );
        let t = &s[40..];
        let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
        assert_eq!(
            seq,
            0xffff_f800u32.wrapping_add((k * mss) as u32),
            "segment {k}: seq"
        );
        assert_eq!(t[..4], orig[40..44], "ports");
        assert_eq!(t[8..13], orig[48..53], "ack and data offset");
        assert_eq!(t[14..16], orig[54..56], "window");
        assert_eq!(t[18..l4], orig[58..40 + l4], "urgent pointer and options");
        let want = match (k, last) {
            (0, _) => TCP_CWR | ACK,
            (_, false) => ACK,
            (_, true) => TCP_PSH | TCP_FIN | ACK,
        };
        assert_eq!(t[13], want, "segment {k}: flags");
        assert!(rfc8200_checksum_ok(s, 6, t), "segment {k}: TCP checksum");
        data.extend_from_slice(&t[l4..]);
    }
    assert_eq!(data, orig[40 + l4..], "payload reassembles");
}

#[test]
fn hop_by_hop_and_destination_options_are_copied_into_every_segment() {
    let exts = [(HOP_BY_HOP, 8), (DEST_OPTS, 16)];
    let orig = super_packet(6, &exts, 0, ACK | TCP_PSH, 2100);
    let mut p = orig.clone();
    let segs = segments(&header(GSO_TCPV6, 1000, 64, 20), &mut p);
    assert_eq!(segs.len(), 3);
    for (k, s) in segs.iter().enumerate() {
        let chunk = [1000, 1000, 100][k];
        assert_eq!(s.len(), 64 + 20 + chunk);
        // The payload length counts the extension headers (RFC 8200 §3) ...
        assert_eq!(
            usize::from(u16::from_be_bytes([s[4], s[5]])),
            24 + 20 + chunk
        );
        assert_eq!(
            s[6..64],
            orig[6..64],
            "segment {k}: extension headers copied"
        );
        // ... the pseudo-header's upper-layer length does not (§8.1).
        assert!(
            rfc8200_checksum_ok(s, 6, &s[64..]),
            "segment {k}: TCP checksum"
        );
        assert_eq!(s[64 + 13], if k == 2 { ACK | TCP_PSH } else { ACK });
    }
}

/// The headers segmentation cannot copy are refused as unsupported (counted apart), a chain
/// the walk (`wire::ipv6_ext`) refuses is malformed. `super_packet` fills each extension
/// header with one PadN option: for a routing header that puts 20 in segments left (in transit).
#[test]
fn extension_headers_segmentation_cannot_copy_are_refused_as_unsupported() {
    type Case = (&'static str, &'static [(u8, usize)], OffloadError);
    let cases: [Case; 6] = [
        (
            "Routing in transit (changes the pseudo-header)",
            &[(ROUTING, 24)],
            OffloadError::Unsupported,
        ),
        ("Fragment", &[(FRAGMENT, 8)], OffloadError::Unsupported),
        ("AH", &[(AH, 16)], OffloadError::Unsupported),
        (
            "Routing after Hop-by-Hop",
            &[(HOP_BY_HOP, 8), (ROUTING, 24)],
            OffloadError::Unsupported,
        ),
        (
            "Hop-by-Hop not first (RFC 8200 §4.1)",
            &[(DEST_OPTS, 8), (HOP_BY_HOP, 8)],
            OffloadError::Malformed,
        ),
        (
            "nine extension headers",
            &[(DEST_OPTS, 8); 9],
            OffloadError::Malformed,
        ),
    ];
    for (what, exts, expected) in cases {
        let mut p = super_packet(6, exts, 0, ACK, 3000);
        let l3: usize = 40 + exts.iter().map(|e| e.1).sum::<usize>();
        let hdr = header(GSO_TCPV6, 1000, l3 as u16, 20);
        assert_eq!(prepare(&hdr, &mut p), Err(expected), "{what}");
    }
    // Five destination options headers are a legal chain: copied into every segment.
    let exts = [(DEST_OPTS, 8); 5];
    let mut p = super_packet(6, &exts, 0, ACK, 3000);
    let segs = segments(&header(GSO_TCPV6, 1000, 80, 20), &mut p);
    assert_eq!(segs.len(), 3);
    assert!(segs.iter().all(|s| s[40..80] == p[40..80]));
}

#[test]
fn udpv6_uso_each_segment_is_a_datagram_with_a_checksum() {
    let orig = super_packet(17, &[], 0, 0, 2500);
    let mut p = orig.clone();
    let segs = segments(&header(GSO_UDP_L4, 1000, 40, 8), &mut p);
    assert_eq!(segs.len(), 3);
    let mut data = Vec::new();
    for (k, s) in segs.iter().enumerate() {
        let udp = &s[40..];
        assert_eq!(udp.len(), 8 + [1000, 1000, 500][k]);
        assert_eq!(usize::from(u16::from_be_bytes([s[4], s[5]])), udp.len());
        assert_eq!(usize::from(u16::from_be_bytes([udp[4], udp[5]])), udp.len());
        // A UDP checksum is mandatory over IPv6 (RFC 8200 §8.1): never 0.
        assert_ne!(udp[6..8], [0, 0]);
        assert!(rfc8200_checksum_ok(s, 17, udp), "segment {k}: UDP checksum");
        data.extend_from_slice(&udp[8..]);
    }
    assert_eq!(data, orig[48..]);
}

#[test]
fn needs_csum_completes_ipv6_tcp_and_udp_checksums() {
    for (proto, at) in [(6u8, 16usize), (17, 6)] {
        let mut p = super_packet(proto, &[], 0, ACK, 333);
        // The kernel leaves the pseudo-header sum (not complemented) in the field.
        let upper_len = p.len() - 40;
        p[40 + at..40 + at + 2].copy_from_slice(&[0, 0]);
        let partial =
            checksum::fold(checksum::sum(&p[8..40]) + u32::from(proto) + upper_len as u32) as u16;
        p[40 + at..40 + at + 2].copy_from_slice(&partial.to_be_bytes());
        let hdr = VnetHeader {
            flags: F_NEEDS_CSUM,
            csum_start: 40,
            csum_offset: at as u16,
            ..VnetHeader::PLAIN
        };
        assert_eq!(prepare(&hdr, &mut p), Ok(Plan::Single));
        assert!(rfc8200_checksum_ok(&p, proto, &p[40..]), "protocol {proto}");
    }
}

#[test]
fn hostile_ipv6_vnet_headers_are_dropped() {
    let good = super_packet(6, &[], 0, ACK, 3000);
    let tso = header(GSO_TCPV6, 1000, 40, 20);
    let cases: Vec<(&str, VnetHeader, Vec<u8>)> = vec![
        ("gso_size 0", header(GSO_TCPV6, 0, 40, 20), good.clone()),
        (
            "hdr_len past the packet",
            VnetHeader {
                hdr_len: 3061,
                ..tso
            },
            good.clone(),
        ),
        (
            "csum_start inside the IPv6 header",
            VnetHeader {
                csum_start: 20,
                ..tso
            },
            good.clone(),
        ),
        (
            "csum_start past the TCP header",
            VnetHeader {
                csum_start: 60,
                ..tso
            },
            good.clone(),
        ),
        (
            "NEEDS_CSUM starting inside the IPv6 header",
            VnetHeader {
                gso_type: GSO_NONE,
                gso_size: 0,
                csum_start: 8,
                csum_offset: 48,
                ..tso
            },
            good.clone(),
        ),
        (
            "NEEDS_CSUM field past the end",
            VnetHeader {
                gso_type: GSO_NONE,
                csum_start: 40,
                csum_offset: 3019,
                ..tso
            },
            good.clone(),
        ),
        (
            "TSO6 of a UDP packet",
            tso,
            super_packet(17, &[], 0, 0, 3000),
        ),
        (
            "USO of a TCP packet",
            header(GSO_UDP_L4, 1000, 40, 8),
            good.clone(),
        ),
        (
            "TSO4 of an IPv6 packet",
            header(GSO_TCPV4, 1000, 40, 20),
            good.clone(),
        ),
        ("TSO6 of an IPv4 packet", tso, {
            let mut p = good.clone();
            p[0] = 0x45;
            p
        }),
        ("TCP data offset 4", tso, {
            let mut p = good.clone();
            p[52] = 4 << 4;
            p
        }),
        ("payload length past the buffer", tso, {
            let mut p = good.clone();
            p[4..6].copy_from_slice(&3100u16.to_be_bytes());
            p
        }),
        ("headers only", tso, super_packet(6, &[], 0, ACK, 0)),
        ("payload length 0", tso, {
            let mut p = good.clone();
            p[4..6].copy_from_slice(&[0, 0]);
            p
        }),
        ("a jumbogram (RFC 2675)", header(GSO_TCPV6, 1000, 48, 20), {
            let mut p = super_packet(6, &[(HOP_BY_HOP, 8)], 0, ACK, 3000);
            p[4..6].copy_from_slice(&[0, 0]);
            p
        }),
        ("ICMPv6 behind a TSO6 header", tso, {
            let mut p = good.clone();
            p[6] = 58;
            p
        }),
        (
            "extension header running past the packet",
            header(GSO_TCPV6, 1000, 48, 20),
            {
                let mut p = super_packet(6, &[(HOP_BY_HOP, 8)], 0, ACK, 3000);
                p[41] = 0xff;
                p
            },
        ),
    ];
    for (what, hdr, mut p) in cases {
        assert_eq!(
            prepare(&hdr, &mut p),
            Err(OffloadError::Malformed),
            "{what}"
        );
    }
}

#[test]
fn ipv6_truncation_at_every_length_never_panics() {
    let orig = super_packet(6, &[(HOP_BY_HOP, 8)], 20, ACK | TCP_PSH, 3000);
    let hdr = header(GSO_TCPV6, 1200, 48, 40);
    let mut planned = 0;
    for cut in 0..orig.len() {
        let mut p = orig[..cut].to_vec();
        // The payload length still says the whole packet: every cut is refused.
        assert!(prepare(&hdr, &mut p).is_err(), "cut at {cut}");
        // With a matching length some cuts parse; every segment they plan is writable and
        // carries a valid checksum.
        if cut >= 40 {
            p[4..6].copy_from_slice(&((cut - 40) as u16).to_be_bytes());
        }
        if let Ok(Plan::Segment(g)) = prepare(&hdr, &mut p) {
            planned += 1;
            let mut out = [0u8; 2048];
            for k in 0..g.count() {
                let n = g
                    .write_segment(&p, k, &mut out)
                    .expect("planned segment fits");
                assert!(
                    rfc8200_checksum_ok(&out[..n], 6, &out[48..n]),
                    "cut {cut} k {k}"
                );
            }
        }
    }
    // Cuts keeping 1..=2999 payload bytes (the whole packet is not a cut).
    assert_eq!(planned, 2999, "every cut with some payload plans");
}

//! Coalescing of IPv6 TCP segments: a merged run is a valid `GSO_TCPV6` packet that our own
//! segmentation (and so the kernel's) cuts back into the very segments it was made of.

use super::super::gso::Gso;
use super::super::vnet::{Plan, complete_checksum, prepare};
use super::*;

const SRC: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
const DST: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// IPv6/TCP segment (flow label 0xabcde, hop limit 63) with timestamps (12 option bytes),
/// `payload` bytes starting at value `seq as u8`, checksum filled.
fn seg6(seq: u32, flags: u8, payload: usize) -> Vec<u8> {
    let (l3, l4) = (40, 32);
    let total = l3 + l4 + payload;
    let mut p = vec![0u8; total];
    p[0..4].copy_from_slice(&[0x60, 0x0a, 0xbc, 0xde]);
    p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
    p[6] = TCP;
    p[7] = 63;
    p[8..24].copy_from_slice(&SRC);
    p[24..40].copy_from_slice(&DST);
    let t = &mut p[l3..];
    t[0..2].copy_from_slice(&5201u16.to_be_bytes());
    t[2..4].copy_from_slice(&40000u16.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&1234u32.to_be_bytes());
    t[12] = 8 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&1000u16.to_be_bytes());
    t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]);
    for (i, b) in t[32..].iter_mut().enumerate() {
        *b = seq.wrapping_add(i as u32) as u8;
    }
    refill(&mut p);
    p
}

/// Sets the TCP checksum of an IPv6 segment (no extension headers) from the RFC 8200 §8.1
/// pseudo-header, laid out here as bytes.
fn refill(p: &mut [u8]) {
    put16(&mut p[40..], TCP_CHECKSUM, 0);
    let mut bytes = Vec::from(&p[8..40]);
    bytes.extend_from_slice(&((p.len() - 40) as u32).to_be_bytes());
    bytes.extend_from_slice(&[0, 0, 0, TCP]);
    bytes.extend_from_slice(&p[40..]);
    put16(&mut p[40..], TCP_CHECKSUM, checksum::checksum(&bytes));
}

fn merges(a: &[u8], b: &[u8]) -> bool {
    let mut r = Run::new(Segment::parse(a).expect("first segment parses"));
    Segment::parse(b).is_some_and(|s| r.push(a, &s, b))
}

#[test]
fn an_ipv6_flow_merges_and_cuts_back_into_the_same_segments() {
    let mss = 1200u32;
    let mut pkts: Vec<Vec<u8>> = (0..4u32)
        .map(|k| seg6(0xffff_f000 + k * mss, TCP_ACK, mss as usize))
        .collect();
    pkts.push(seg6(
        0xffff_f000u32.wrapping_add(4 * mss),
        TCP_ACK | TCP_PSH,
        77,
    ));
    let mut run = Run::new(Segment::parse(&pkts[0]).unwrap());
    for p in &pkts[1..] {
        assert!(run.push(&pkts[0], &Segment::parse(p).unwrap(), p));
    }
    assert_eq!(run.count(), 5);
    let mut merged = pkts[0].clone();
    let hdr = run.finish(&mut merged[..72]);
    for p in &pkts[1..] {
        merged.extend_from_slice(&p[72..]);
    }
    assert_eq!(merged.len(), 72 + 4 * 1200 + 77);
    assert_eq!(
        (
            hdr.flags,
            hdr.gso_type,
            hdr.gso_size,
            hdr.hdr_len,
            hdr.csum_start,
            hdr.csum_offset
        ),
        (F_NEEDS_CSUM, GSO_TCPV6, 1200, 72, 40, 16)
    );
    assert_eq!(
        usize::from(u16::from_be_bytes([merged[4], merged[5]])),
        merged.len() - 40,
        "payload length of the merged packet"
    );
    assert_eq!(
        merged[40 + 13],
        TCP_ACK | TCP_PSH,
        "PSH of the last segment"
    );
    // The kernel completes the partial checksum (CHECKSUM_PARTIAL): done here the same way,
    // the merged packet's checksum must then verify over the RFC 8200 pseudo-header.
    let mut completed = merged.clone();
    complete_checksum(&mut completed, hdr.csum_start, hdr.csum_offset).unwrap();
    let claimed = u16::from_be_bytes([completed[56], completed[57]]);
    refill(&mut completed);
    assert_eq!(claimed, u16::from_be_bytes([completed[56], completed[57]]));
    // Cut at gso_size: IPv6 has no ID to renumber, so the original segments come back byte
    // for byte, checksums included.
    let Ok(Plan::Segment(g)) = prepare(&hdr, &mut merged) else {
        panic!("merged packet is not a valid TSO6 packet")
    };
    let g: Gso = g;
    assert_eq!(g.count(), 5);
    for (k, orig) in pkts.iter().enumerate() {
        let mut out = vec![0u8; 2048];
        let len = g.write_segment(&merged, k, &mut out).unwrap();
        assert_eq!(&out[..len], &orig[..], "segment {k}");
    }
}

#[test]
fn what_must_not_merge_in_ipv6() {
    let base = seg6(1000, TCP_ACK, 500);
    let next = seg6(1500, TCP_ACK, 500);
    assert!(merges(&base, &next));
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut p = next.clone();
        f(&mut p);
        p
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("gap in seq", seg6(1501, TCP_ACK, 500)),
        ("longer than the first", seg6(1500, TCP_ACK, 501)),
        ("FIN", seg6(1500, TCP_ACK | 0x01, 500)),
        ("CWR", seg6(1500, TCP_ACK | 0x80, 500)),
        ("no payload", seg6(1500, TCP_ACK, 0)),
        ("other flow label", edit(&|p| p[3] ^= 1)),
        ("other traffic class (ECN CE)", edit(&|p| p[1] |= 0x30)),
        ("other hop limit", edit(&|p| p[7] = 62)),
        ("other source", edit(&|p| p[23] ^= 1)),
        ("other destination", edit(&|p| p[39] ^= 1)),
        ("other port", edit(&|p| p[41] ^= 1)),
        ("other timestamp", edit(&|p| p[71] ^= 1)),
        ("payload length not the buffer's", edit(&|p| p.push(0))),
        ("bad TCP checksum", edit(&|p| p[80] ^= 0x80)),
    ];
    for (what, mut p) in cases {
        if what != "bad TCP checksum" && what != "payload length not the buffer's" {
            refill(&mut p);
        }
        assert!(!merges(&base, &p), "{what}");
    }
    // A Destination Options header in front of TCP: the segment goes alone.
    let mut ext = vec![0u8; next.len() + 8];
    ext[..40].copy_from_slice(&next[..40]);
    let ext_len = (ext.len() - 40) as u16;
    ext[4..6].copy_from_slice(&ext_len.to_be_bytes());
    ext[6] = 60;
    ext[40..48].copy_from_slice(&[TCP, 0, 1, 4, 0, 0, 0, 0]);
    ext[48..].copy_from_slice(&next[40..]);
    assert_eq!(Segment::parse(&ext), None, "extension header");
    // IPv4 and IPv6 never mix, whatever their bytes.
    let mut v4 = vec![0u8; 20 + next.len() - 40];
    v4[0] = 0x45;
    let v4_len = v4.len() as u16;
    v4[2..4].copy_from_slice(&v4_len.to_be_bytes());
    v4[6] = 0x40;
    v4[8] = 64;
    v4[9] = TCP;
    v4[20..].copy_from_slice(&next[40..]);
    Ipv4Packet::new_unchecked(&mut v4[..]).fill_checksum();
    put16(&mut v4[20..], TCP_CHECKSUM, 0);
    let pseudo = pseudo_sum(&v4, false, v4.len() - 20);
    let c = checksum::combine(&[pseudo, checksum::sum(&v4[20..])]);
    put16(&mut v4[20..], TCP_CHECKSUM, c);
    assert!(Segment::parse(&v4).is_some());
    assert!(!merges(&base, &v4), "IPv4 after IPv6");
    assert!(!merges(&v4, &base), "IPv6 after IPv4");
}

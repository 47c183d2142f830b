//! Coalescing of consecutive TCP segments of one flow into one super-packet (GRO, as Linux
//! `tcp_gro_receive` does), for a TUN device with the virtio-net header: the decapsulated
//! packets of a batch are written as one `GSO_TCPV4` (`GSO_TCPV6`) packet, so the kernel's
//! stack handles one skb where it would have handled up to 45.
//!
//! Only what the kernel could have received as one stream of equal segments is merged:
//! IPv4 without fragmentation, the same IP header but for length, ID (+1 each, or fixed with
//! DF: RFC 6864 §4.1) and checksum; or IPv6 with TCP right after the fixed header (a packet
//! with extension headers goes alone, as Linux `ipv6_gro_receive` keeps it apart too), the
//! same fixed header (traffic class, flow label, hop limit, addresses) but for the payload
//! length; the same TCP header but for the sequence number (each
//! segment starting where the previous ended), PSH and the checksum; ACK (and PSH on the
//! last) as the only flags, so SYN, FIN, RST, URG, ECE and CWR always travel alone; every
//! segment but the last as long as the first (which sets `gso_size`), and at most 64 KB in all.

use super::checksum;
use super::ipv4::Ipv4Packet;
use super::ipv6::{self, Ipv6Packet};
use super::vnet::{F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, VnetHeader};
use super::{be16, be32, put16};

const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_FLAGS: usize = 13;
const TCP_CHECKSUM: usize = 16;
/// The protocol number of TCP.
const TCP: u8 = 6;
/// Offset of the payload length in the IPv6 fixed header.
const IPV6_PAYLOAD_LEN: usize = 4;

/// Sum of the TCP pseudo-header of `packet` (not folded): RFC 9293 §3.1 for IPv4, RFC 8200
/// §8.1 for IPv6 (a TCP length below 64 KB has no upper 16 bits to add).
fn pseudo_sum(packet: &[u8], v6: bool, tcp_len: usize) -> u32 {
    let addrs = if v6 { &packet[8..40] } else { &packet[12..20] };
    checksum::sum(addrs) + u32::from(TCP) + tcp_len as u32
}

/// A TCP segment that may take part in a merge, with the fields the merge compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// IPv6 (else IPv4).
    v6: bool,
    /// IP header length (40 for IPv6).
    l3: usize,
    /// TCP header length.
    l4: usize,
    seq: u32,
    ident: u16,
    dont_frag: bool,
    /// TCP payload bytes.
    payload: usize,
    push: bool,
}

impl Segment {
    /// Reads `packet` as a mergeable segment: IPv4 not a fragment or IPv6 without extension
    /// headers, TCP with only ACK (and perhaps PSH) set and some payload, its IP length equal
    /// to the buffer's, and a TCP
    /// checksum that verifies. The merged packet goes up as `CHECKSUM_PARTIAL`, which the
    /// kernel does not verify again, so a segment with a bad checksum is left alone for the
    /// kernel to drop (Linux GRO validates before it merges, too).
    pub fn parse(packet: &[u8]) -> Option<Self> {
        let v6 = *packet.first()? >> 4 == 6;
        let (l3, ident, dont_frag) = if v6 {
            let ip = Ipv6Packet::new_checked(packet).ok()?;
            if ip.next_header().0 != TCP || ip.packet().len() != packet.len() {
                return None;
            }
            // No identification outside a Fragment header, and IPv6 routers never fragment.
            (ipv6::HEADER_LEN, 0, true)
        } else {
            let ip = Ipv4Packet::new_checked(packet).ok()?;
            if ip.protocol().0 != TCP
                || ip.is_fragment()
                || usize::from(ip.total_len()) != packet.len()
            {
                return None;
            }
            (ip.header_len(), ip.ident(), ip.dont_frag())
        };
        let tcp = packet.get(l3..)?;
        let l4 = usize::from(*tcp.get(12)? >> 4) * 4;
        if l4 < 20 || tcp.len() <= l4 {
            return None;
        }
        let flags = tcp[TCP_FLAGS];
        if flags & !TCP_PSH != TCP_ACK {
            return None;
        }
        let pseudo = pseudo_sum(packet, v6, tcp.len());
        if checksum::combine(&[pseudo, checksum::sum(tcp)]) != 0 {
            return None;
        }
        Some(Self {
            v6,
            l3,
            l4,
            seq: be32(tcp, 4),
            ident,
            dont_frag,
            payload: tcp.len() - l4,
            push: flags & TCP_PSH != 0,
        })
    }

    /// Headers in front of the payload.
    pub fn header_len(&self) -> usize {
        self.l3 + self.l4
    }
}

/// A run of segments being merged: the first decides `gso_size`, the last where the next
/// must start.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    first: Segment,
    last: Segment,
    count: usize,
    total: usize,
}

impl Run {
    /// Starts a run at `first`.
    pub fn new(first: Segment) -> Self {
        Self {
            first,
            last: first,
            count: 1,
            total: first.header_len() + first.payload,
        }
    }

    /// Headers in front of the payload (the same in every segment).
    pub fn header_len(&self) -> usize {
        self.first.header_len()
    }

    /// Number of segments merged so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Adds `next` (bytes `next_pkt`) when it continues the run that began with `first_pkt`;
    /// returns whether it did.
    pub fn push(&mut self, first_pkt: &[u8], next: &Segment, next_pkt: &[u8]) -> bool {
        let (f, l) = (&self.first, &self.last);
        let ok = next.v6 == f.v6
            && next.l3 == f.l3
            && next.l4 == f.l4
            // A PSH ends a run (the receiver should see it without waiting: Linux flushes).
            && !l.push
            && l.payload == f.payload
            && next.payload <= f.payload
            && next.seq == l.seq.wrapping_add(l.payload as u32)
            && (f.v6
                || next.ident == l.ident.wrapping_add(1)
                || (next.dont_frag && f.dont_frag && next.ident == l.ident))
            // 64 KB in all for IPv6 too: what the kernel's GRO builds without BIG TCP.
            && self.total + next.payload <= usize::from(u16::MAX)
            && same_headers(first_pkt, next_pkt, f.v6, f.l3, f.l4);
        if ok {
            self.last = *next;
            self.count += 1;
            self.total += next.payload;
        }
        ok
    }

    /// Turns the first packet's headers (`first_hdrs`, at least `header_len` bytes) into those
    /// of the merged packet: total length and IP checksum (IPv6: payload length), PSH of the last segment, and the TCP
    /// checksum field set to the pseudo-header sum the kernel completes (`CHECKSUM_PARTIAL`).
    /// Returns the virtio-net header to write in front.
    pub fn finish(&self, first_hdrs: &mut [u8]) -> VnetHeader {
        let (v6, l3, l4) = (self.first.v6, self.first.l3, self.first.l4);
        if v6 {
            put16(first_hdrs, IPV6_PAYLOAD_LEN, (self.total - l3) as u16);
        } else {
            let mut ip = Ipv4Packet::new_unchecked(&mut *first_hdrs);
            ip.set_total_len(self.total as u16);
            ip.fill_checksum();
        }
        let pseudo = checksum::fold(pseudo_sum(first_hdrs, v6, self.total - l3));
        let tcp = &mut first_hdrs[l3..l3 + l4];
        if self.last.push {
            tcp[TCP_FLAGS] |= TCP_PSH;
        }
        put16(tcp, TCP_CHECKSUM, pseudo as u16);
        VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
            hdr_len: (l3 + l4) as u16,
            gso_size: self.first.payload as u16,
            csum_start: l3 as u16,
            csum_offset: TCP_CHECKSUM as u16,
        }
    }
}

/// The IP and TCP headers of `a` and `b` agree but for the fields that differ per segment
/// (IP length, ID, checksum; TCP sequence number, PSH, checksum).
fn same_headers(a: &[u8], b: &[u8], v6: bool, l3: usize, l4: usize) -> bool {
    let (ta, tb) = (&a[l3..l3 + l4], &b[l3..l3 + l4]);
    let ip = if v6 {
        // Version, traffic class, flow label; next header, hop limit, addresses.
        a[..4] == b[..4] && a[6..l3] == b[6..l3]
    } else {
        a[..2] == b[..2] && a[6..10] == b[6..10] && a[12..l3] == b[12..l3]
    };
    ip && ta[..4] == tb[..4]
        && ta[8..TCP_FLAGS] == tb[8..TCP_FLAGS]
        && ta[TCP_FLAGS] & !TCP_PSH == tb[TCP_FLAGS] & !TCP_PSH
        && be16(ta, 14) == be16(tb, 14)
        && ta[18..] == tb[18..]
}

#[cfg(test)]
mod tests {
    use super::super::gso::Gso;
    use super::super::vnet::{Plan, prepare};
    use super::*;

    /// IPv4/TCP segment with timestamps (12 option bytes), `payload` bytes starting at value
    /// `seq as u8`.
    fn seg(seq: u32, ident: u16, flags: u8, payload: usize) -> Vec<u8> {
        let (l3, l4) = (20, 32);
        let total = l3 + l4 + payload;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&ident.to_be_bytes());
        p[6] = 0x40;
        p[8] = 63;
        p[9] = TCP;
        p[12..16].copy_from_slice(&[198, 51, 100, 1]);
        p[16..20].copy_from_slice(&[203, 0, 113, 1]);
        Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
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
        let pseudo = checksum::sum(&p[12..20]) + u32::from(TCP) + (total - l3) as u32;
        let c = checksum::combine(&[pseudo, checksum::sum(&p[l3..])]);
        put16(&mut p[l3..], TCP_CHECKSUM, c);
        p
    }

    fn refill_tcp_checksum(p: &mut [u8]) {
        put16(&mut p[20..], TCP_CHECKSUM, 0);
        let pseudo = checksum::sum(&p[12..20]) + u32::from(TCP) + (p.len() - 20) as u32;
        let c = checksum::combine(&[pseudo, checksum::sum(&p[20..])]);
        put16(&mut p[20..], TCP_CHECKSUM, c);
    }

    fn run_of(pkts: &[Vec<u8>]) -> (Run, usize) {
        let mut run = Run::new(Segment::parse(&pkts[0]).unwrap());
        let mut n = 1;
        for p in &pkts[1..] {
            let Some(s) = Segment::parse(p) else { break };
            if !run.push(&pkts[0], &s, p) {
                break;
            }
            n += 1;
        }
        (run, n)
    }

    #[test]
    fn a_flow_merges_and_cuts_back_into_the_same_segments() {
        let mss = 1000;
        let mut pkts: Vec<Vec<u8>> = (0..4u32)
            .map(|k| seg(5000 + k * mss, 7 + k as u16, TCP_ACK, mss as usize))
            .collect();
        pkts.push(seg(5000 + 4 * mss, 11, TCP_ACK | TCP_PSH, 300));
        let (run, n) = run_of(&pkts);
        assert_eq!((n, run.count()), (5, 5));
        let mut merged = pkts[0].clone();
        let hdr = run.finish(&mut merged[..52]);
        for p in &pkts[1..] {
            merged.extend_from_slice(&p[52..]);
        }
        assert_eq!(merged.len(), 52 + 4300);
        assert_eq!(
            (
                hdr.gso_type,
                hdr.gso_size,
                hdr.hdr_len,
                hdr.csum_start,
                hdr.csum_offset
            ),
            (GSO_TCPV4, 1000, 52, 20, 16)
        );
        // What the kernel would do with it: cut at gso_size (our own GSO path, which computes
        // checksums in full), giving back the original segments byte for byte but the IP ID
        // (the GSO path numbers from the first) and the checksums.
        let Ok(Plan::Segment(g)) = prepare(&hdr, &mut merged) else {
            panic!("merged packet is not a valid TSO packet")
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
    fn what_must_not_merge() {
        let base = seg(1000, 1, TCP_ACK, 500);
        let next = seg(1500, 2, TCP_ACK, 500);
        let merges = |a: &[u8], b: &[u8]| {
            let mut r = Run::new(Segment::parse(a).unwrap());
            Segment::parse(b).is_some_and(|s| r.push(a, &s, b))
        };
        assert!(merges(&base, &next));
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("gap in seq", seg(1501, 2, TCP_ACK, 500)),
            ("overlap", seg(1499, 2, TCP_ACK, 500)),
            ("longer than the first", seg(1500, 2, TCP_ACK, 501)),
            ("FIN", seg(1500, 2, TCP_ACK | 0x01, 500)),
            ("SYN", seg(1500, 2, TCP_ACK | 0x02, 500)),
            ("RST", seg(1500, 2, TCP_ACK | 0x04, 500)),
            ("URG", seg(1500, 2, TCP_ACK | 0x20, 500)),
            ("ECE", seg(1500, 2, TCP_ACK | 0x40, 500)),
            ("CWR", seg(1500, 2, TCP_ACK | 0x80, 500)),
            ("no ACK", seg(1500, 2, 0, 500)),
            ("no payload", seg(1500, 2, TCP_ACK, 0)),
            ("ID jump", seg(1500, 9, TCP_ACK, 500)),
            ("other port", {
                let mut p = next.clone();
                p[21] ^= 1;
                p
            }),
            ("other ack", {
                let mut p = next.clone();
                p[31] ^= 1;
                p
            }),
            ("other window", {
                let mut p = next.clone();
                p[35] ^= 1;
                p
            }),
            ("other timestamp", {
                let mut p = next.clone();
                p[51] ^= 1;
                p
            }),
            ("other TTL", {
                let mut p = next.clone();
                p[8] = 62;
                p
            }),
            ("other TOS (ECN CE)", {
                let mut p = next.clone();
                p[1] = 3;
                p
            }),
            ("other source", {
                let mut p = next.clone();
                p[15] = 2;
                p
            }),
            ("a fragment", {
                let mut p = next.clone();
                p[6] = 0x20;
                p
            }),
            ("UDP", {
                let mut p = next.clone();
                p[9] = 17;
                p
            }),
            ("IP length not the buffer's", {
                let mut p = next.clone();
                p.push(0);
                p
            }),
            ("bad TCP checksum", {
                let mut p = next.clone();
                p[60] ^= 0x80;
                p
            }),
        ];
        for (what, mut p) in cases {
            // Each case differs in the one way it names: the TCP checksum is made right
            // again (but for the case about it).
            if what != "bad TCP checksum" {
                refill_tcp_checksum(&mut p);
            }
            assert!(!merges(&base, &p), "{what}");
        }
        // A PSH ends the run; a short segment must be the last.
        assert!(!merges(&seg(1000, 1, TCP_ACK | TCP_PSH, 500), &next));
        let mut r = Run::new(Segment::parse(&base).unwrap());
        let short = seg(1500, 2, TCP_ACK, 100);
        assert!(r.push(&base, &Segment::parse(&short).unwrap(), &short));
        let after = seg(1600, 3, TCP_ACK, 100);
        assert!(!r.push(&base, &Segment::parse(&after).unwrap(), &after));
        // Fixed IDs are fine with DF (RFC 6864), not without.
        assert!(merges(&base, &seg(1500, 1, TCP_ACK, 500)));
        let mut no_df = base.clone();
        no_df[6] = 0;
        let mut no_df_next = seg(1500, 1, TCP_ACK, 500);
        no_df_next[6] = 0;
        assert!(!merges(&no_df, &no_df_next));
    }

    #[test]
    fn never_beyond_64_kb() {
        let mss = 1400usize;
        let mut run = Run::new(Segment::parse(&seg(0, 0, TCP_ACK, mss)).unwrap());
        let first = seg(0, 0, TCP_ACK, mss);
        let mut k = 1u32;
        loop {
            let p = seg(k * mss as u32, k as u16, TCP_ACK, mss);
            if !run.push(&first, &Segment::parse(&p).unwrap(), &p) {
                break;
            }
            k += 1;
        }
        assert_eq!(run.count(), (65535 - 52) / mss);
    }
}

#[cfg(test)]
mod tests_v6;

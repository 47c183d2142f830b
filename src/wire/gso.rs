//! Segmentation of a GSO super-packet (TSO for TCP, USO for UDP) into the packets the wire
//! would have carried, as Linux `tcp_gso_segment` / `__udp_gso_segment` do in software.
//!
//! A TUN device with `TUN_F_TSO4`/`TUN_F_USO4` (`TSO6`/`USO6`) hands over one IPv4 (IPv6)
//! packet of up to 64 KB whose payload must be cut every `gso_size` bytes. Each segment gets a
//! copy of the IP and transport headers with the fields that differ per segment rewritten:
//!
//! * IPv4: total length, identification (+1 per segment, as the stack would have numbered the
//!   packets, RFC 6864 §4.1), header checksum;
//! * IPv6: payload length (RFC 8200 §3; there is no identification outside a Fragment header,
//!   and no header checksum); extension headers in front of the transport header (only
//!   Hop-by-Hop and Destination Options are let through, see [`super::vnet`]) are copied as
//!   they are;
//! * TCP: sequence number (+ payload offset), FIN and PSH only on the last segment, CWR only on
//!   the first (RFC 3168 §6.1.2: CWR marks one packet), checksum over the pseudo-header (RFC 768
//!   layout for IPv4, RFC 8200 §8.1 for IPv6);
//! * UDP: length and checksum (each segment is a datagram of its own).
//!
//! Checksums are computed in full, not patched from the partial value the kernel left, so a
//! wrong partial sum cannot reach the wire.

use std::net::{IpAddr, Ipv6Addr};

use super::checksum;
use super::ip::IpProtocol;
use super::ipv4::Ipv4Packet;
use super::ipv6;
use super::{be32, put16, put32};

/// TCP flag bits in byte 13 of the header (RFC 9293 §3.1, RFC 3168 §23.2).
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;
/// Offsets inside the TCP / UDP header.
const TCP_SEQ: usize = 4;
const TCP_FLAGS: usize = 13;
const TCP_CHECKSUM: usize = 16;
const UDP_LENGTH: usize = 4;
const UDP_CHECKSUM: usize = 6;
/// Offset of the payload length in the IPv6 fixed header.
const IPV6_PAYLOAD_LEN: usize = 4;

/// The segmentation plan of one IPv4 or IPv6 super-packet; made by [`super::vnet::prepare`],
/// which checked the headers. Stateless: segment `k` can be written at any time, in any order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gso {
    proto: IpProtocol,
    /// IPv6 (else IPv4).
    v6: bool,
    /// IP header length: IPv4 options, or the IPv6 fixed header and its extension headers.
    l3: usize,
    /// Transport header length (TCP options included).
    l4: usize,
    /// Length of the super-packet (its IPv4 total length, IPv6 fixed header + payload length).
    total: usize,
    /// Payload bytes per segment.
    mss: usize,
    count: usize,
}

impl Gso {
    /// A plan for a packet of `total` bytes with `l3 + l4` bytes of headers, cut every `mss`
    /// payload bytes. `None` when the headers do not fit, there is no payload, or a segment
    /// would exceed 64 KB (an IPv4 datagram; for IPv6 a payload length the header can say
    /// without a jumbogram, RFC 2675).
    pub(super) fn new(
        proto: IpProtocol,
        v6: bool,
        l3: usize,
        l4: usize,
        total: usize,
        mss: usize,
    ) -> Option<Self> {
        let hdrs = l3.checked_add(l4)?;
        let payload = total.checked_sub(hdrs).filter(|&p| p > 0)?;
        if mss == 0 || hdrs + mss.min(payload) > usize::from(u16::MAX) {
            return None;
        }
        if v6 && l3 < ipv6::HEADER_LEN {
            return None;
        }
        Some(Self {
            proto,
            v6,
            l3,
            l4,
            total,
            mss,
            count: payload.div_ceil(mss),
        })
    }

    /// Number of segments.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Bytes of IP and transport headers at the front of every segment.
    pub fn header_len(&self) -> usize {
        self.l3 + self.l4
    }

    /// Length of the longest segment (the first): what an output buffer must hold.
    pub fn max_segment_len(&self) -> usize {
        self.segment_len(0)
    }

    /// Length of segment `k` (0 when `k >= count()`).
    pub fn segment_len(&self, k: usize) -> usize {
        let hdrs = self.l3 + self.l4;
        let from = k.saturating_mul(self.mss);
        let payload = self.total - hdrs;
        if k >= self.count {
            return 0;
        }
        hdrs + self.mss.min(payload - from)
    }

    /// Writes segment `k` of `packet` (the super-packet this plan was made for) into `out`
    /// and returns its length. `None` when `k >= count()`, `packet` is shorter than planned or
    /// `out` is too small.
    pub fn write_segment(&self, packet: &[u8], k: usize, out: &mut [u8]) -> Option<usize> {
        let len = self.segment_len(k);
        if len == 0 || packet.len() < self.total || out.len() < len {
            return None;
        }
        let hdrs = self.l3 + self.l4;
        let from = hdrs + k * self.mss;
        let chunk = len - hdrs;
        let out = &mut out[..len];
        out[..hdrs].copy_from_slice(&packet[..hdrs]);
        out[hdrs..].copy_from_slice(&packet[from..from + chunk]);

        if self.v6 {
            // RFC 8200 §3: the payload length counts the extension headers too.
            put16(out, IPV6_PAYLOAD_LEN, (len - ipv6::HEADER_LEN) as u16);
        } else {
            let mut ip = Ipv4Packet::new_unchecked(&mut *out);
            ip.set_total_len(len as u16);
            ip.set_ident(ip.ident().wrapping_add(k as u16));
            ip.fill_checksum();
        }

        let l4_len = len - self.l3;
        let (ip_hdrs, l4) = out.split_at_mut(self.l3);
        let check_at = if self.proto == IpProtocol::TCP {
            let seq = be32(l4, TCP_SEQ).wrapping_add((k * self.mss) as u32);
            put32(l4, TCP_SEQ, seq);
            if k + 1 < self.count {
                l4[TCP_FLAGS] &= !(TCP_FIN | TCP_PSH);
            }
            if k > 0 {
                l4[TCP_FLAGS] &= !TCP_CWR;
            }
            TCP_CHECKSUM
        } else {
            put16(l4, UDP_LENGTH, l4_len as u16);
            UDP_CHECKSUM
        };
        put16(l4, check_at, 0);
        let pseudo = if self.v6 {
            // RFC 8200 §8.1: the upper-layer length excludes the extension headers, and the
            // destination is the packet's own (no Routing header gets this far).
            let addr = |at: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&ip_hdrs[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(a))
            };
            checksum::pseudo_header(addr(8), addr(24), self.proto, l4_len as u32)
        } else {
            // RFC 9293 §3.1 / RFC 768: pseudo-header of source, destination, protocol, length.
            checksum::sum(&ip_hdrs[12..20]) + u32::from(self.proto.0) + l4_len as u32
        };
        let c = checksum::combine(&[pseudo, checksum::sum(l4)]);
        // A computed 0 is sent as 0xffff (the same in ones'-complement; 0 means "none" in UDP).
        put16(l4, check_at, if c == 0 { 0xffff } else { c });
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::super::vnet::{
        F_NEEDS_CSUM, GSO_ECN, GSO_TCPV4, GSO_UDP_L4, OffloadError, Plan, VnetHeader, prepare,
    };
    use super::*;

    /// Ones'-complement check written independently of `checksum.rs`: a u64 accumulator,
    /// bytes paired by hand. True when the data (checksum field included) sums to 0xffff.
    fn sums_to_ffff(parts: &[&[u8]], extra: u64) -> bool {
        let mut s = extra;
        for part in parts {
            for i in (0..part.len()).step_by(2) {
                let hi = u64::from(part[i]);
                let lo = part.get(i + 1).map_or(0, |&b| u64::from(b));
                s += hi * 256 + lo;
            }
        }
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        s == 0xffff
    }

    const SRC: [u8; 4] = [198, 51, 100, 1];
    const DST: [u8; 4] = [203, 0, 113, 1];

    /// An IPv4 super-packet as the kernel hands it over: `opts` IP option bytes, a transport
    /// header (TCP with `tcp_opts` option bytes, or UDP), payload bytes `i as u8`.
    fn super_packet(
        proto: u8,
        ip_opts: usize,
        tcp_opts: usize,
        flags: u8,
        payload: usize,
    ) -> Vec<u8> {
        let l3 = 20 + ip_opts;
        let l4 = if proto == 6 { 20 + tcp_opts } else { 8 };
        let total = l3 + l4 + payload;
        let mut p = vec![0u8; total];
        p[0] = 0x40 | (l3 / 4) as u8;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&0xfffeu16.to_be_bytes()); // the ID wraps on segment 2
        p[6] = 0x40; // DF
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&SRC);
        p[16..20].copy_from_slice(&DST);
        for (i, b) in p[20..l3].iter_mut().enumerate() {
            *b = if i + 1 == ip_opts { 0 } else { 1 }; // NOPs, then end of list
        }
        let t = &mut p[l3..];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&5201u16.to_be_bytes());
        if proto == 6 {
            t[4..8].copy_from_slice(&0xffff_f000u32.to_be_bytes()); // seq wraps inside
            t[8..12].copy_from_slice(&77u32.to_be_bytes());
            t[12] = ((l4 / 4) as u8) << 4;
            t[13] = flags;
            t[14..16].copy_from_slice(&512u16.to_be_bytes());
            for (i, b) in t[20..l4].iter_mut().enumerate() {
                *b = 0xa0 + i as u8; // recognisable option bytes
            }
            // The kernel leaves a partial (pseudo-header) sum: put garbage to prove it is
            // recomputed, not patched.
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

    fn header(gso_type: u8, mss: u16, csum_start: u16) -> VnetHeader {
        VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type,
            hdr_len: csum_start,
            gso_size: mss,
            csum_start,
            csum_offset: if gso_type & !GSO_ECN == GSO_TCPV4 {
                16
            } else {
                6
            },
        }
    }

    fn segments(hdr: &VnetHeader, p: &mut [u8]) -> Vec<Vec<u8>> {
        let Ok(Plan::Segment(gso)) = prepare(hdr, p) else {
            panic!("not a GSO plan: {:?}", prepare(hdr, p))
        };
        let mut out = Vec::new();
        for k in 0..gso.count() {
            let mut buf = vec![0u8; gso.max_segment_len()];
            let n = gso.write_segment(p, k, &mut buf).unwrap();
            assert_eq!(n, gso.segment_len(k));
            buf.truncate(n);
            out.push(buf);
        }
        assert_eq!(gso.write_segment(p, gso.count(), &mut [0u8; 2048]), None);
        out
    }

    #[test]
    fn tcp_with_options_cut_at_mss_with_a_short_last_segment() {
        let (ip_opts, tcp_opts, payload, mss) = (4, 12, 5000, 1448);
        let flags = TCP_CWR | TCP_PSH | TCP_FIN | 0x10; // CWR PSH FIN ACK
        let orig = super_packet(6, ip_opts, tcp_opts, flags, payload);
        let mut p = orig.clone();
        let segs = segments(&header(GSO_TCPV4 | GSO_ECN, mss as u16, 24), &mut p);
        let (l3, l4) = (20 + ip_opts, 20 + tcp_opts);
        assert_eq!(segs.len(), 4, "5000 bytes at 1448: 3 full and one of 656");
        let mut data = Vec::new();
        for (k, s) in segs.iter().enumerate() {
            let last = k == segs.len() - 1;
            let chunk = if last { 5000 - 3 * mss } else { mss };
            assert_eq!(s.len(), l3 + l4 + chunk, "segment {k} length");
            // IPv4: length, ID + k (wrapping), DF kept, options kept, checksum valid.
            assert_eq!(u16::from_be_bytes([s[2], s[3]]) as usize, s.len());
            assert_eq!(
                u16::from_be_bytes([s[4], s[5]]),
                0xfffeu16.wrapping_add(k as u16)
            );
            assert_eq!(s[6], 0x40);
            assert_eq!(s[20..l3], orig[20..l3]);
            assert!(sums_to_ffff(&[&s[..l3]], 0), "segment {k}: IP checksum");
            // TCP: seq advanced by the payload before it, ports/ack/options kept.
            let t = &s[l3..];
            let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
            assert_eq!(seq, 0xffff_f000u32.wrapping_add((k * mss) as u32));
            assert_eq!(t[..4], orig[l3..l3 + 4]);
            assert_eq!(t[8..13], orig[l3 + 8..l3 + 13]);
            assert_eq!(t[20..l4], orig[l3 + 20..l3 + l4]);
            let want = match (k == 0, last) {
                (true, _) => TCP_CWR | 0x10,
                (false, false) => 0x10,
                (false, true) => TCP_PSH | TCP_FIN | 0x10,
            };
            assert_eq!(t[13], want, "segment {k}: flags");
            let tcp_len = (s.len() - l3) as u64;
            let pseudo: &[u8] = &s[12..20];
            assert!(
                sums_to_ffff(&[pseudo, t], 6 + tcp_len),
                "segment {k}: TCP checksum"
            );
            data.extend_from_slice(&t[l4..]);
        }
        assert_eq!(data, orig[l3 + l4..], "payload reassembles");
    }

    #[test]
    fn payload_a_multiple_of_mss_and_a_single_segment() {
        let mut p = super_packet(6, 0, 0, TCP_PSH | 0x10, 2 * 1000);
        let segs = segments(&header(GSO_TCPV4, 1000, 20), &mut p);
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0][20 + 13], 0x10);
        assert_eq!(segs[1][20 + 13], TCP_PSH | 0x10);
        let mut p = super_packet(6, 0, 0, TCP_PSH | 0x10, 300);
        let segs = segments(&header(GSO_TCPV4, 1000, 20), &mut p);
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].len(), 340);
        assert_eq!(segs[0][20 + 13], TCP_PSH | 0x10);
        assert!(sums_to_ffff(&[&segs[0][12..20], &segs[0][20..]], 6 + 320));
    }

    #[test]
    fn udp_uso_each_segment_is_a_datagram() {
        let orig = super_packet(17, 0, 0, 0, 3001);
        let mut p = orig.clone();
        let segs = segments(&header(GSO_UDP_L4, 1000, 20), &mut p);
        assert_eq!(segs.len(), 4);
        let mut data = Vec::new();
        for (k, s) in segs.iter().enumerate() {
            let udp = &s[20..];
            assert_eq!(u16::from_be_bytes([udp[4], udp[5]]) as usize, udp.len());
            assert_eq!(udp.len(), 8 + if k == 3 { 1 } else { 1000 });
            assert_ne!(u16::from_be_bytes([udp[6], udp[7]]), 0);
            assert!(sums_to_ffff(&[&s[..20]], 0));
            assert!(
                sums_to_ffff(&[&s[12..20], udp], 17 + udp.len() as u64),
                "segment {k}: UDP checksum"
            );
            data.extend_from_slice(&udp[8..]);
        }
        assert_eq!(data, orig[28..]);
    }

    #[test]
    fn malformed_super_packets_are_refused() {
        let good = super_packet(6, 0, 0, 0x10, 3000);
        let cases: Vec<(&str, VnetHeader, Vec<u8>)> = vec![
            ("gso_size 0", header(GSO_TCPV4, 0, 20), good.clone()),
            (
                "hdr_len beyond",
                VnetHeader {
                    hdr_len: 3041,
                    ..header(GSO_TCPV4, 1000, 20)
                },
                good.clone(),
            ),
            ("TCP data offset 4", header(GSO_TCPV4, 1000, 20), {
                let mut p = good.clone();
                p[32] = 4 << 4;
                p
            }),
            (
                "UDP header for TSO",
                header(GSO_TCPV4, 1000, 20),
                super_packet(17, 0, 0, 0, 3000),
            ),
            (
                "TCP header for USO",
                header(GSO_UDP_L4, 1000, 20),
                good.clone(),
            ),
            ("fragment", header(GSO_TCPV4, 1000, 20), {
                let mut p = good.clone();
                p[6] = 0x20;
                p
            }),
            ("total length beyond buffer", header(GSO_TCPV4, 1000, 20), {
                let mut p = good.clone();
                p[2..4].copy_from_slice(&4000u16.to_be_bytes());
                p
            }),
            (
                "headers only",
                header(GSO_TCPV4, 1000, 20),
                super_packet(6, 0, 0, 0x10, 0),
            ),
            ("not IPv4", header(GSO_TCPV4, 1000, 20), {
                let mut p = good.clone();
                p[0] = 0x55;
                p
            }),
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
    fn truncation_at_every_length_never_panics() {
        let orig = super_packet(6, 8, 20, 0x18, 3000);
        let hdr = header(GSO_TCPV4, 1200, 28);
        for cut in 0..orig.len() {
            let mut p = orig[..cut].to_vec();
            // The IP length still says 3068: every cut is refused.
            assert!(prepare(&hdr, &mut p).is_err(), "cut at {cut}");
            // With a matching length some cuts parse; every segment they plan is writable.
            if cut >= 4 {
                p[2..4].copy_from_slice(&(cut as u16).to_be_bytes());
            }
            if let Ok(Plan::Segment(g)) = prepare(&hdr, &mut p) {
                let mut out = [0u8; 2048];
                for k in 0..g.count() {
                    assert!(
                        g.write_segment(&p, k, &mut out).is_some(),
                        "cut {cut} k {k}"
                    );
                }
            }
        }
    }

    #[test]
    fn output_buffer_too_small_or_packet_shorter_than_planned() {
        let mut p = super_packet(6, 0, 0, 0x10, 3000);
        let Ok(Plan::Segment(g)) = prepare(&header(GSO_TCPV4, 1000, 20), &mut p) else {
            panic!()
        };
        assert_eq!(g.max_segment_len(), 1040);
        assert_eq!(g.write_segment(&p, 0, &mut [0u8; 1039]), None);
        assert_eq!(g.write_segment(&p[..3039], 2, &mut [0u8; 1040]), None);
        assert_eq!(g.write_segment(&p, 2, &mut [0u8; 1040]), Some(1040));
    }
}

#[cfg(test)]
mod tests_v6;

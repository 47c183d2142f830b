//! The virtio-net header (`struct virtio_net_hdr`, Linux `include/uapi/linux/virtio_net.h`,
//! virtio 1.x §5.1.6) that a TUN device opened with `IFF_VNET_HDR` puts in front of every packet,
//! and what a packet read that way needs before the data plane may use it: a partial checksum
//! completed (`NEEDS_CSUM`, the skb's `CHECKSUM_PARTIAL`), or a GSO super-packet planned for
//! segmentation (see [`super::gso`]). IPv4 and IPv6 alike: TSO4/TSO6 (`GSO_TCPV4`,
//! `GSO_TCPV6`) and USO (`GSO_UDP_L4`, either family).
//!
//! The TUN device uses the header in the host's byte order unless told otherwise
//! (`TUNSETVNETLE`); this view reads and writes little-endian, so the daemon enables the
//! offload only on little-endian hosts.
//!
//! Everything here is checked as if hostile: the header comes from the kernel, but a bug or a
//! future kernel must cost a counted drop, never a panic or an out-of-bounds write.

use super::checksum;
use super::gso::Gso;
use super::ip::IpProtocol;
use super::ipv4::Ipv4Packet;
use super::ipv6::{self, Ipv6Packet};
use super::ipv6_ext;

/// Length of the header the TUN device uses by default (`TUNSETVNETHDRSZ` not called): the
/// legacy 10-byte `struct virtio_net_hdr`, without `num_buffers`.
pub const HEADER_LEN: usize = 10;

/// `flags`: the checksum at `csum_start + csum_offset` is partial (pseudo-header only); the
/// receiver of the packet must complete it over `csum_start..`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was verified (only meaningful towards the kernel).
pub const F_DATA_VALID: u8 = 2;

/// `gso_type`: not a GSO packet.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: IPv4 TCP super-packet (TSO).
pub const GSO_TCPV4: u8 = 1;
/// `gso_type`: IPv4 UDP fragmentation offload (UFO, obsolete; never enabled by us).
pub const GSO_UDP: u8 = 3;
/// `gso_type`: IPv6 TCP super-packet.
pub const GSO_TCPV6: u8 = 4;
/// `gso_type`: UDP segmentation offload (USO), IPv4 or IPv6.
pub const GSO_UDP_L4: u8 = 5;
/// `gso_type` bit: the TCP super-packet carries ECN (CWR set on the first segment only).
pub const GSO_ECN: u8 = 0x80;

/// The virtio-net header, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHeader {
    pub flags: u8,
    pub gso_type: u8,
    /// Length of the headers copied into every segment. Not trusted: the kernel may set it to
    /// the whole first packet on the forwarding path, so segmentation parses the headers
    /// itself and only checks that this value is not beyond the packet.
    pub hdr_len: u16,
    /// Payload bytes per segment (the MSS for TCP).
    pub gso_size: u16,
    /// Where the checksummed part starts (the transport header).
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHeader {
    /// Reads the header from the first [`HEADER_LEN`] bytes of `buf`; `None` when shorter.
    pub fn parse(buf: &[u8]) -> Option<Self> {
        let b: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
        let le = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        Some(Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: le(2),
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
        })
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`HEADER_LEN`] (a caller's buffer, not input).
    pub fn emit(&self, buf: &mut [u8]) {
        buf[0] = self.flags;
        buf[1] = self.gso_type;
        buf[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        buf[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        buf[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        buf[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }

    /// The header written in front of a packet handed to the kernel: one whole packet
    /// (`GSO_NONE`) whose checksums are complete, to be verified by the stack as usual.
    pub const PLAIN: Self = Self {
        flags: 0,
        gso_type: GSO_NONE,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };
}

/// Why a packet read with a virtio-net header was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum OffloadError {
    /// The header or the packet does not hold together (lengths, offsets, protocol, `gso_size`
    /// of 0, an IPv4 fragment marked for GSO, ...).
    #[error("malformed offload packet")]
    Malformed,
    /// A GSO type the data plane does not carry (UFO), or an IPv6 super-packet with an
    /// extension header that segmentation cannot copy as it is (Routing, Fragment, AH, ...).
    #[error("unsupported GSO type")]
    Unsupported,
}

/// What to do with a packet read from the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// One ordinary packet, checksums complete: use it as it is.
    Single,
    /// A super-packet: cut it with [`Gso::write_segment`].
    Segment(Gso),
}

/// Makes `packet` (the bytes after the header) usable by the data plane: completes a partial
/// checksum in place, or plans the segmentation of a GSO super-packet.
pub fn prepare(hdr: &VnetHeader, packet: &mut [u8]) -> Result<Plan, OffloadError> {
    if usize::from(hdr.hdr_len) > packet.len() {
        return Err(OffloadError::Malformed);
    }
    match hdr.gso_type & !GSO_ECN {
        GSO_NONE => {
            if hdr.flags & F_NEEDS_CSUM != 0 {
                // The sum must not take in the IPv6 header: its addresses are in the
                // pseudo-header sum already (the IPv4 path is left as it always was).
                if is_ipv6(packet) && usize::from(hdr.csum_start) < ipv6::HEADER_LEN {
                    return Err(OffloadError::Malformed);
                }
                complete_checksum(packet, hdr.csum_start, hdr.csum_offset)?;
            }
            Ok(Plan::Single)
        }
        GSO_TCPV4 => plan_ipv4(hdr, packet, IpProtocol::TCP).map(Plan::Segment),
        GSO_TCPV6 => plan_ipv6(hdr, packet, IpProtocol::TCP).map(Plan::Segment),
        GSO_UDP_L4 => match packet.first().map(|b| b >> 4) {
            Some(4) => plan_ipv4(hdr, packet, IpProtocol::UDP).map(Plan::Segment),
            Some(6) => plan_ipv6(hdr, packet, IpProtocol::UDP).map(Plan::Segment),
            _ => Err(OffloadError::Malformed),
        },
        GSO_UDP => Err(OffloadError::Unsupported),
        _ => Err(OffloadError::Malformed),
    }
}

/// Completes a `CHECKSUM_PARTIAL` checksum: the field at `start + offset` holds the
/// pseudo-header sum, so the ones'-complement sum of `start..` with it in place, complemented,
/// is the final value (Linux `skb_checksum_help`). A result of 0 is sent as 0xffff, which is
/// the same value in ones'-complement and keeps a UDP checksum from reading as "none"
/// (RFC 768).
pub fn complete_checksum(packet: &mut [u8], start: u16, offset: u16) -> Result<(), OffloadError> {
    let start = usize::from(start);
    let at = start.saturating_add(usize::from(offset));
    if at.saturating_add(2) > packet.len() {
        return Err(OffloadError::Malformed);
    }
    let c = checksum::checksum(&packet[start..]);
    let c = if c == 0 { 0xffff } else { c };
    packet[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// Checks an IPv4 TCP or UDP super-packet and returns its segmentation plan.
fn plan_ipv4(hdr: &VnetHeader, packet: &[u8], proto: IpProtocol) -> Result<Gso, OffloadError> {
    let ip = Ipv4Packet::new_checked(packet).map_err(|_| OffloadError::Malformed)?;
    if ip.protocol() != proto || ip.is_fragment() || hdr.gso_size == 0 {
        return Err(OffloadError::Malformed);
    }
    let l3 = ip.header_len();
    let total = usize::from(ip.total_len());
    let l4 = if proto == IpProtocol::TCP {
        // Data offset (RFC 9293 §3.1), in 32-bit words: 5..=15.
        let doff = packet.get(l3 + 12).ok_or(OffloadError::Malformed)? >> 4;
        usize::from(doff) * 4
    } else {
        super::udp::HEADER_LEN
    };
    if l4 < super::udp::HEADER_LEN || (proto == IpProtocol::TCP && l4 < 20) {
        return Err(OffloadError::Malformed);
    }
    Gso::new(proto, false, l3, l4, total, usize::from(hdr.gso_size)).ok_or(OffloadError::Malformed)
}

fn is_ipv6(packet: &[u8]) -> bool {
    packet.first().is_some_and(|b| b >> 4 == 6)
}

/// Checks an IPv6 TCP or UDP super-packet and returns its segmentation plan.
///
/// The transport header is found by the extension-header walk ([`ipv6_ext::upper_layer`]),
/// not taken from `csum_start`; when the header says `NEEDS_CSUM`, its `csum_start` must
/// agree. The headers in front of it are copied into every segment, which is right for
/// hop-by-hop and destination options and for a routing header with no segments left. A
/// routing header in transit would change the pseudo-header's destination (RFC 8200 §8.1), a
/// fragment header cannot be on a super-packet and AH or ESP cover the payload: those are
/// refused as [`OffloadError::Unsupported`] (counted apart from malformed input).
fn plan_ipv6(hdr: &VnetHeader, packet: &[u8], proto: IpProtocol) -> Result<Gso, OffloadError> {
    let ip = Ipv6Packet::new_checked(packet).map_err(|_| OffloadError::Malformed)?;
    if hdr.gso_size == 0 {
        return Err(OffloadError::Malformed);
    }
    let packet = ip.packet();
    let total = packet.len();
    let upper = ipv6_ext::upper_layer(&ip).map_err(|_| OffloadError::Malformed)?;
    if upper.fragment.is_some()
        || upper.segments_left > 0
        || matches!(upper.protocol, IpProtocol::AH | IpProtocol::ESP)
    {
        return Err(OffloadError::Unsupported);
    }
    if upper.protocol != proto {
        return Err(OffloadError::Malformed);
    }
    let l3 = upper.offset;
    if hdr.flags & F_NEEDS_CSUM != 0 && usize::from(hdr.csum_start) != l3 {
        return Err(OffloadError::Malformed);
    }
    let l4 = if proto == IpProtocol::TCP {
        let doff = packet.get(l3 + 12).ok_or(OffloadError::Malformed)? >> 4;
        usize::from(doff) * 4
    } else {
        super::udp::HEADER_LEN
    };
    if proto == IpProtocol::TCP && l4 < 20 {
        return Err(OffloadError::Malformed);
    }
    Gso::new(proto, true, l3, l4, total, usize::from(hdr.gso_size)).ok_or(OffloadError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_is_little_endian() {
        let h = VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 0x0102,
            gso_size: 1360,
            csum_start: 20,
            csum_offset: 16,
        };
        let mut b = [0u8; HEADER_LEN];
        h.emit(&mut b);
        assert_eq!(b, [1, 0x81, 0x02, 0x01, 0x50, 0x05, 20, 0, 16, 0]);
        assert_eq!(VnetHeader::parse(&b), Some(h));
        assert_eq!(VnetHeader::parse(&b[..HEADER_LEN - 1]), None);
    }

    #[test]
    fn needs_csum_completes_the_partial_checksum() {
        // UDP 198.51.100.1:1000 -> 203.0.113.1:2000, 5 payload bytes; the kernel leaves the
        // pseudo-header sum (not complemented) in the checksum field.
        let mut p = [
            0x45, 0, 0, 33, 0, 0, 0, 0, 64, 17, 0, 0, 198, 51, 100, 1, 203, 0, 113, 1, //
            0x03, 0xe8, 0x07, 0xd0, 0, 13, 0, 0, b'h', b'e', b'l', b'l', b'o',
        ];
        let pseudo =
            checksum::fold(checksum::sum(&p[12..20]) + u32::from(IpProtocol::UDP.0) + 13) as u16;
        p[26..28].copy_from_slice(&pseudo.to_be_bytes());
        let hdr = VnetHeader {
            flags: F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 6,
            ..VnetHeader::PLAIN
        };
        assert_eq!(prepare(&hdr, &mut p), Ok(Plan::Single));
        // Independent check: the sum over pseudo-header + UDP datagram folds to 0xffff.
        let mut s: u64 = 0;
        for c in p[12..20].chunks(2).chain(p[20..].chunks(2)) {
            s += u64::from(c[0]) << 8 | u64::from(*c.get(1).unwrap_or(&0));
        }
        s += 17 + 13;
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        assert_eq!(s, 0xffff);
    }

    #[test]
    fn needs_csum_offsets_beyond_the_packet_are_dropped() {
        let mut p = [0x45u8; 40];
        for (start, offset) in [(39, 0), (20, 19), (u16::MAX, u16::MAX), (0, 39)] {
            let hdr = VnetHeader {
                flags: F_NEEDS_CSUM,
                csum_start: start,
                csum_offset: offset,
                ..VnetHeader::PLAIN
            };
            assert_eq!(
                prepare(&hdr, &mut p),
                Err(OffloadError::Malformed),
                "{start}+{offset}"
            );
        }
    }

    #[test]
    fn unknown_and_unsupported_gso_types() {
        let mut p = [0u8; 64];
        p[0] = 0x45;
        let h = |gso_type| VnetHeader {
            gso_type,
            gso_size: 100,
            ..VnetHeader::PLAIN
        };
        // IPv6 GSO is carried now (see gso.rs): on an IPv4 packet it is malformed.
        assert_eq!(prepare(&h(GSO_TCPV6), &mut p), Err(OffloadError::Malformed));
        assert_eq!(prepare(&h(GSO_UDP), &mut p), Err(OffloadError::Unsupported));
        assert_eq!(prepare(&h(2), &mut p), Err(OffloadError::Malformed));
        assert_eq!(prepare(&h(0x7f), &mut p), Err(OffloadError::Malformed));
        // An IPv6 header of zeros: a Hop-by-Hop jumbogram (payload length 0), refused.
        p[0] = 0x60;
        assert_eq!(
            prepare(&h(GSO_UDP_L4), &mut p),
            Err(OffloadError::Malformed)
        );
        assert_eq!(prepare(&h(GSO_TCPV4), &mut p), Err(OffloadError::Malformed));
        // hdr_len beyond the packet.
        let mut short = [0x45u8; 30];
        let bad = VnetHeader {
            hdr_len: 31,
            ..h(GSO_NONE)
        };
        assert_eq!(prepare(&bad, &mut short), Err(OffloadError::Malformed));
    }
}

//! `ipv6`: arbitrary bytes as an IPv6 packet through the fixed-header view, the
//! extension-header walk, the AH ICV zeroing and the Packet Too Big builder (issue 11's hostile
//! input). Each input is tried as it is and with its version and payload length fixed up, so
//! that most inputs reach the extension headers. Errors are fine, panics are not; whatever
//! parses must re-emit to the same repr, and the walk must stay inside the packet.

use std::net::Ipv6Addr;

use crate::wire::icmpv6::{self, Icmpv6Packet, Icmpv6Repr};
use crate::wire::ipv6_ext::{self, Ipv6FragmentRepr};
use crate::wire::{IpProtocol, Ipv6Packet, Ipv6Repr, build_packet_too_big, ipv6};

/// Returns whether the input (as it is) walked to an upper layer.
pub fn run(data: &[u8]) -> bool {
    let walked = packet(data);
    if data.len() >= ipv6::HEADER_LEN {
        let mut fixed = data.to_vec();
        fixed[0] = 0x60 | (fixed[0] & 0x0f);
        let len = u16::try_from(data.len() - ipv6::HEADER_LEN).unwrap_or(u16::MAX);
        fixed[4..6].copy_from_slice(&len.to_be_bytes());
        packet(&fixed);
        // The same bytes as the copy of a header chain that ends at AH.
        let _ = ipv6_ext::zero_mutable_fields(&mut fixed);
    }
    if let Ok(r) = Ipv6FragmentRepr::parse(data) {
        let mut out = [0u8; 8];
        r.emit(&mut out)
            .expect("a parsed offset is a multiple of 8");
        assert_eq!(Ipv6FragmentRepr::parse(&out), Ok(r));
    }
    if let Ok(p) = Icmpv6Packet::new_checked(data) {
        let r = Icmpv6Repr::parse(&p).expect("checked ICMPv6 parses");
        let (s, d) = (Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED);
        let mut out = vec![0u8; data.len()];
        r.emit(s, d, &mut out, p.data())
            .expect("sized as the input");
        let again = Icmpv6Packet::new_checked(&out[..]).expect("emitted ICMPv6 parses");
        assert!(again.verify_checksum(s, d));
        assert_eq!(Icmpv6Repr::parse(&again), Ok(r));
    }
    walked
}

fn packet(data: &[u8]) -> bool {
    let Ok(p) = Ipv6Packet::new_checked(data) else {
        return false;
    };
    let r = Ipv6Repr::parse(&p).expect("checked IPv6 parses");
    let mut out = vec![0u8; r.buffer_len() + r.payload_len];
    r.emit(&mut out).expect("sized for the repr");
    out[ipv6::HEADER_LEN..].copy_from_slice(p.payload());
    assert_eq!(
        Ipv6Repr::parse(&Ipv6Packet::new_checked(&out[..]).unwrap()),
        Ok(r)
    );

    let mut ptb = [0u8; icmpv6::MAX_ERROR_LEN];
    if let Ok(Some(n)) = build_packet_too_big(Ipv6Addr::LOCALHOST, data, 1280, &mut ptb) {
        let ip = Ipv6Packet::new_checked(&ptb[..n]).expect("built packet parses");
        let icmp = Icmpv6Packet::new_checked(ip.payload()).expect("built ICMPv6 parses");
        assert!(icmp.verify_checksum(ip.src_addr(), ip.dst_addr()));
        assert_eq!(icmp.data(), &p.packet()[..icmp.data().len()]);
    }

    let Ok(upper) = ipv6_ext::upper_layer(&p) else {
        return false;
    };
    let bytes = p.packet();
    assert!(upper.offset <= bytes.len());
    assert!(upper.next_header_at < upper.offset);
    assert_eq!(bytes[upper.next_header_at], upper.protocol.0);
    if upper.protocol == IpProtocol::AH {
        let mut hdr = bytes[..upper.offset].to_vec();
        if ipv6_ext::zero_mutable_fields(&mut hdr).is_ok() {
            // Only the mutable fields change: version, lengths, next headers and addresses
            // stay, and zeroing is idempotent.
            assert_eq!(hdr[0] >> 4, 6);
            assert_eq!(hdr[4..7], bytes[4..7]);
            assert_eq!(hdr[8..40], bytes[8..40]);
            let once = hdr.clone();
            ipv6_ext::zero_mutable_fields(&mut hdr).expect("zeroed twice");
            assert_eq!(hdr, once);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::super::test_inputs;

    /// A packet with hop-by-hop, destination options, routing and AH headers, every prefix and
    /// bit flip of it, and 400 pseudo-random buffers through the harness: its assertions hold
    /// and nothing panics.
    #[test]
    fn hundreds_of_inputs_through_the_ipv6_harness() {
        let mut p = vec![0x60, 0, 0, 0, 0, 0, 0, 64];
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p.extend_from_slice(&[
            60, 0, 0x3e, 2, 7, 7, 0x01, 0, // hop-by-hop: a mutable option, PadN
            43, 0, 0x01, 4, 0, 0, 0, 0, // destination options
            51, 0, 0, 0, 0, 0, 0, 0, // routing, segments left 0
            58, 4, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // AH
            128, 0, 0, 0, 0, 1, 0, 1, // ICMPv6 echo request
        ]);
        let len = (p.len() - 40) as u16;
        p[4..6].copy_from_slice(&len.to_be_bytes());
        assert!(super::run(&p));
        // The seed reaches the AH zeroing (the header chain ends at offset 64).
        let mut hdr = p[..64].to_vec();
        crate::wire::ipv6_ext::zero_mutable_fields(&mut hdr).unwrap();
        assert_eq!(hdr[44..46], [0, 0]);
        for n in 0..p.len() {
            super::run(&p[..n]);
        }
        for i in 0..p.len() * 8 {
            let mut t = p.clone();
            t[i / 8] ^= 1 << (i % 8);
            super::run(&t);
        }
        for data in test_inputs(0x1b6, 400, 200, 128) {
            super::run(&data);
        }
    }
}

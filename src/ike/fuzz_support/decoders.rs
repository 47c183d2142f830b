//! The parsers under arbitrary bytes: `isakmp_decode` (ISAKMP messages and payload chains) and
//! `wire_headers` (IPv4, UDP, ESP, AH, ICMP, the fragmenter, a TUN read with a virtio-net
//! header and its GSO segmentation). Errors are fine, panics are
//! not, and whatever decodes must re-encode into bytes that decode to the same value.

use std::net::Ipv4Addr;

use crate::wire::isakmp::{
    Message, PayloadType, decode_payloads, decode_payloads_padded, encode_payloads, peek_header,
    split_payloads,
};
use crate::wire::{
    AhPacket, AhRepr, EspPacket, EspRepr, Icmpv4Packet, Icmpv4Repr, Ipv4Fragmenter, Ipv4Packet,
    Ipv4Repr, UdpPacket, UdpRepr, build_frag_needed,
};

/// `isakmp_decode`: the input as a whole datagram (header, plaintext chain or encrypted
/// body), and as a decrypted payload chain (strict and padded) whose first payload type is
/// the first input byte. Returns whether the input decoded as a message.
pub fn isakmp(data: &[u8]) -> bool {
    if let Ok(view) = peek_header(data) {
        let _ = (
            view.initiator_cookie(),
            view.flags(),
            view.exchange_type(),
            view.length(),
        );
    }
    let message = Message::decode(data);
    if let Ok(m) = &message {
        let bytes = m.encode();
        let again = Message::decode(&bytes).expect("re-encoded message decodes");
        assert_eq!(&again, m);
        assert_eq!(again.encode(), bytes);
    }
    let Some((&first, chain)) = data.split_first() else {
        return message.is_ok();
    };
    let first = PayloadType(first);
    if let Ok(p) = decode_payloads(first, chain) {
        let raw = split_payloads(first, chain).expect("a decodable chain splits");
        assert_eq!(raw.len(), p.len());
        let (f, bytes) = encode_payloads(&p);
        let again = decode_payloads(f, &bytes).expect("re-encoded chain decodes");
        assert_eq!(again, p);
    }
    if let Ok(p) = decode_payloads_padded(first, chain) {
        let (f, bytes) = encode_payloads(&p);
        let again = decode_payloads(f, &bytes).expect("re-encoded chain decodes");
        assert_eq!(again, p);
    }
    message.is_ok()
}

/// `wire_headers`: the input into every header parser, the fragmenter and the ICMP builder;
/// whatever parses must re-emit and re-parse to the same repr. Returns whether it parsed as
/// an IPv4 packet.
pub fn headers(data: &[u8]) -> bool {
    let ipv4 = Ipv4Packet::new_checked(data);
    if let Ok(p) = &ipv4 {
        let _ = (p.payload(), p.options(), p.verify_checksum());
        if let Ok(r) = Ipv4Repr::parse(p, false) {
            let mut out = vec![0u8; r.buffer_len()];
            r.emit(&mut out).expect("sized for the repr");
            let mut full = out.clone();
            full.resize(r.buffer_len() + r.payload_len, 0);
            let again = Ipv4Packet::new_checked(&full[..]).expect("emitted header parses");
            assert_eq!(Ipv4Repr::parse(&again, true).expect("checksum filled"), r);
        }
        let mtu = 68 + usize::from(data.first().copied().unwrap_or(0)) * 4;
        if let Ok(mut f) = Ipv4Fragmenter::new(data, mtu) {
            let mut out = vec![0u8; mtu];
            let mut n = 0;
            while let Ok(Some(len)) = f.next_into(&mut out) {
                assert!(len <= mtu);
                n += 1;
                assert!(n <= 70_000);
            }
        }
        let mut icmp = [0u8; 600];
        let _ = build_frag_needed(Ipv4Addr::LOCALHOST, data, 1400, &mut icmp);
    }
    if let Ok(p) = UdpPacket::new_checked(data) {
        let r = UdpRepr::parse(&p).expect("checked UDP parses");
        let mut out = [0u8; 8];
        r.emit(&mut out, p.payload().len()).expect("8 bytes");
        assert_eq!(out[..6], data[..6]);
    }
    if let Ok(p) = EspPacket::new_checked(data) {
        let r = EspRepr::parse(&p).expect("checked ESP parses");
        let mut out = [0u8; 8];
        r.emit(&mut out).expect("8 bytes");
        assert_eq!(out, data[..8]);
    }
    if let Ok(p) = AhPacket::new_checked(data) {
        let r = AhRepr::parse(&p).expect("checked AH parses");
        let _ = (p.icv(), p.payload());
        let mut out = vec![0u8; r.buffer_len()];
        if r.emit(&mut out).is_ok() {
            assert_eq!(out[..2], data[..2]);
            assert_eq!(out[4..12], data[4..12]);
        }
    }
    if let Ok(p) = Icmpv4Packet::new_checked(data) {
        let r = Icmpv4Repr::parse(&p).expect("checked ICMP parses");
        let mut out = vec![0u8; data.len()];
        r.emit(&mut out, p.data()).expect("sized as the input");
        let again = Icmpv4Packet::new_checked(&out[..]).expect("emitted ICMP parses");
        assert!(again.verify_checksum());
    }
    vnet_segments(data);
    ipv4.is_ok()
}

/// The input as a TUN read with offload: a virtio-net header and a packet. A planned
/// super-packet must cut into valid IPv4 (IPv6) packets whose payloads add up to the original's.
/// Returns the number of segments.
fn vnet_segments(data: &[u8]) -> usize {
    use crate::wire::vnet::{self, Plan, VnetHeader};
    let Some(h) = VnetHeader::parse(data) else {
        return 0;
    };
    let mut again = [0u8; vnet::HEADER_LEN];
    h.emit(&mut again);
    assert_eq!(again, data[..vnet::HEADER_LEN]);
    let mut packet = data[vnet::HEADER_LEN..].to_vec();
    let Ok(Plan::Segment(g)) = vnet::prepare(&h, &mut packet) else {
        return 0;
    };
    let mut out = vec![0u8; g.max_segment_len()];
    let mut data_len = 0usize;
    for k in 0..g.count() {
        let len = g
            .write_segment(&packet, k, &mut out)
            .expect("planned segment fits");
        assert_eq!(len, g.segment_len(k));
        if packet[0] >> 4 == 6 {
            let ip = crate::wire::Ipv6Packet::new_checked(&out[..len]).expect("segment is IPv6");
            assert_eq!(ip.packet().len(), len);
        } else {
            let ip = Ipv4Packet::new_checked(&out[..len]).expect("segment is IPv4");
            assert!(ip.verify_checksum());
            assert_eq!(usize::from(ip.total_len()), len);
        }
        data_len += len - g.header_len();
    }
    let total = match crate::wire::Ipv6Packet::new_checked(&packet[..]) {
        Ok(ip6) => ip6.packet().len(),
        Err(_) => usize::from(
            Ipv4Packet::new_checked(&packet[..])
                .expect("planned packet is IPv4 or IPv6")
                .total_len(),
        ),
    };
    assert_eq!(data_len, total - g.header_len());
    g.count()
}

#[cfg(test)]
mod tests {
    use super::super::test_inputs;

    /// A valid message and IPv4 packet, every prefix of them, and 400 pseudo-random buffers
    /// through both harnesses: their round-trip assertions hold and nothing panics.
    #[test]
    fn hundreds_of_inputs_through_the_decoders() {
        use crate::wire::isakmp::{
            ExchangeType, Flags, Header, Message, Notification, NotifyType, Payload,
        };
        let msg = Message::new(
            Header::new([1; 8], [2; 8], ExchangeType::INFORMATIONAL, Flags(0), 7),
            vec![
                Payload::Notification(Notification::isakmp(
                    NotifyType::INVALID_PAYLOAD_TYPE,
                    [1; 8],
                    [2; 8],
                    vec![9; 3],
                )),
                Payload::VendorId(vec![0xab; 16]),
            ],
        )
        .encode();
        assert!(super::isakmp(&msg));
        for n in 0..msg.len() {
            super::isakmp(&msg[..n]);
        }
        let mut ip = vec![
            0x45, 0, 0, 28, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0, 53, 0, 53, 0,
            8, 0, 0,
        ];
        crate::wire::Ipv4Packet::new_unchecked(&mut ip[..]).fill_checksum();
        assert!(super::headers(&ip));
        for data in test_inputs(0xdec0, 400, 300, 0) {
            super::isakmp(&data);
            super::headers(&data);
            super::headers(&ip[..data.len() % (ip.len() + 1)]);
        }

        // A TUN read with offload: virtio-net header (TSO, gso_size 100, little-endian) and
        // an IPv4 TCP super-packet of 350 payload bytes; then every prefix and bit flip.
        let mut tso = vec![1, 1, 40, 0, 100, 0, 20, 0, 16, 0];
        let mut pkt = vec![0u8; 40 + 350];
        pkt[..20].copy_from_slice(&[
            0x45, 0, 0x01, 0x86, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        pkt[32] = 5 << 4;
        tso.extend_from_slice(&pkt);
        assert_eq!(super::vnet_segments(&tso), 4);
        for n in 0..tso.len() {
            super::headers(&tso[..n]);
        }
        for i in 0..tso.len() * 8 {
            let mut t = tso.clone();
            t[i / 8] ^= 1 << (i % 8);
            super::headers(&t);
        }
    }
}

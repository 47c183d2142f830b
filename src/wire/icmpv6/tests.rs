use super::*;

const HUB: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const SENDER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0x7, 0, 0, 0, 7);
const TARGET: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 9);

/// An IPv6 packet of `len` bytes from `src` to TARGET carrying `upper` (its first bytes given)
/// padded with a counting pattern.
fn original(src: Ipv6Addr, proto: IpProtocol, upper: &[u8], len: usize) -> Vec<u8> {
    let mut b: Vec<u8> = (0..len).map(|i| i as u8).collect();
    Ipv6Repr::new(src, TARGET, proto, len - ipv6::HEADER_LEN)
        .emit(&mut b)
        .unwrap();
    b[40..40 + upper.len()].copy_from_slice(upper);
    b
}

/// The RFC 4443 §2.3 checksum written out from RFC 8200 §8.1's pseudo-header layout.
fn checksum_by_hand(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&src.octets());
    bytes.extend_from_slice(&dst.octets());
    bytes.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 58]);
    bytes.extend_from_slice(msg);
    let mut zeroed = bytes.clone();
    let at = 40 + 2;
    zeroed[at] = 0;
    zeroed[at + 1] = 0;
    checksum::checksum(&zeroed)
}

#[test]
fn packet_too_big_bytes() {
    // A 1500-byte UDP datagram that no longer fits a 1400-byte tunnel.
    let orig = original(SENDER, IpProtocol::UDP, &[0x30, 0x39, 0x00, 0x35], 1500);
    let mut out = [0u8; 1500];
    let n = build_packet_too_big(HUB, &orig, 1400, &mut out)
        .unwrap()
        .unwrap();
    assert_eq!(n, 1280);
    let ip = Ipv6Packet::new_checked(&out[..n]).unwrap();
    assert_eq!(
        &out[..8],
        &[0x60, 0, 0, 0, 0x04, 0xd8, 58, 64],
        "payload 1240, ICMPv6, hop limit 64"
    );
    assert_eq!((ip.src_addr(), ip.dst_addr()), (HUB, SENDER));
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    let c = icmp.checksum().to_be_bytes();
    assert_eq!(&ip.payload()[..8], &[2, 0, c[0], c[1], 0, 0, 0x05, 0x78]);
    assert_eq!(icmp.checksum(), checksum_by_hand(HUB, SENDER, ip.payload()));
    assert!(icmp.verify_checksum(HUB, SENDER));
    assert!(!icmp.verify_checksum(HUB, TARGET));
    assert_eq!(icmp.mtu(), 1400);
    assert!(icmp.is_error());
    assert_eq!(icmp.data(), &orig[..1232]);
}

#[test]
fn a_short_original_is_quoted_whole_and_the_mtu_is_at_least_1280() {
    let mut orig = original(SENDER, IpProtocol::TCP, &[0, 80, 0x1f, 0x90], 100);
    orig.extend_from_slice(&[0xee; 4]); // link padding: not quoted
    let mut out = [0u8; 1280];
    let n = build_packet_too_big(HUB, &orig, 1200, &mut out)
        .unwrap()
        .unwrap();
    assert_eq!(n, 40 + 8 + 100);
    let icmp = Icmpv6Packet::new_checked(&out[40..n]).unwrap();
    assert_eq!(icmp.mtu(), 1280);
    assert_eq!(icmp.data(), &orig[..100]);
    assert!(icmp.verify_checksum(HUB, SENDER));
}

#[test]
fn never_answers_an_icmpv6_error_or_a_source_that_is_not_one_node() {
    let mut out = [0u8; 1280];
    let mut build = |o: &[u8]| build_packet_too_big(HUB, o, 1400, &mut out).unwrap();
    // An ICMPv6 error (destination unreachable) and a packet too big: no answer.
    for t in [1u8, 2, 127] {
        assert_eq!(
            build(&original(SENDER, IpProtocol::ICMPV6, &[t, 0], 1300)),
            None
        );
    }
    // A redirect neither (e.2).
    assert_eq!(
        build(&original(SENDER, IpProtocol::ICMPV6, &[137, 0], 1300)),
        None
    );
    // An echo request is answered.
    assert!(build(&original(SENDER, IpProtocol::ICMPV6, &[128, 0], 1300)).is_some());
    // An ICMPv6 header cut off: cannot tell, so no answer.
    assert_eq!(build(&original(SENDER, IpProtocol::ICMPV6, &[], 40)), None);
    // The same behind a hop-by-hop header.
    let hbh_err = original(
        SENDER,
        IpProtocol::HOP_BY_HOP,
        &[58, 0, 1, 4, 0, 0, 0, 0, 1],
        1300,
    );
    assert_eq!(build(&hbh_err), None);
    // A later fragment does not show the type: answered (as Linux does).
    let frag = original(
        SENDER,
        IpProtocol::IPV6_FRAG,
        &[58, 0, 0, 8, 0, 0, 0, 1, 1],
        1300,
    );
    assert!(build(&frag).is_some());
    // Unspecified and multicast sources name no single node (RFC 4443 §2.4 e.3, e.6).
    let mcast: Ipv6Addr = "ff02::1".parse().unwrap();
    for src in [Ipv6Addr::UNSPECIFIED, mcast] {
        assert_eq!(build(&original(src, IpProtocol::UDP, &[], 1300)), None);
    }
    // A multicast destination is answered (Packet Too Big is the exception of e.3).
    let mut to_group = original(SENDER, IpProtocol::UDP, &[], 1300);
    to_group[24..40].copy_from_slice(&mcast.octets());
    assert!(build(&to_group).is_some());
    // A hostile header chain gets no answer.
    let jumbo = original(
        SENDER,
        IpProtocol::HOP_BY_HOP,
        &[17, 0, 0xc2, 4, 0, 1, 0, 0],
        1300,
    );
    assert_eq!(build(&jumbo), None);
}

#[test]
fn truncated_originals_and_short_outputs_are_errors() {
    let orig = original(SENDER, IpProtocol::UDP, &[], 1300);
    let mut out = [0u8; 1280];
    for n in 0..orig.len() {
        assert!(
            build_packet_too_big(HUB, &orig[..n], 1400, &mut out).is_err(),
            "prefix {n}"
        );
    }
    assert_eq!(
        build_packet_too_big(HUB, &orig, 1400, &mut out[..1279]),
        Err(Error::BufferTooSmall)
    );
}

#[test]
fn header_round_trip() {
    let r = Icmpv6Repr {
        msg_type: 128,
        code: 0,
        rest_of_header: 0x0001_0002,
    };
    let mut buf = [0u8; 12];
    let n = r.emit(HUB, SENDER, &mut buf, &[1, 2, 3, 4]).unwrap();
    assert_eq!(n, 12);
    let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
    assert!(p.verify_checksum(HUB, SENDER));
    assert!(!p.is_error());
    assert_eq!(Icmpv6Repr::parse(&p).unwrap(), r);
    assert_eq!(p.checksum(), checksum_by_hand(HUB, SENDER, &buf));
    for n in 0..8 {
        assert_eq!(Icmpv6Packet::new_checked(&buf[..n]), Err(Error::Truncated));
    }
    assert_eq!(
        r.emit(HUB, SENDER, &mut buf[..11], &[1, 2, 3, 4]),
        Err(Error::BufferTooSmall)
    );
}

//! One table of every header type, driving round-trip and truncation-at-every-length tests
//! (docs/design.md convention 8).

use super::*;

/// Parses `bytes`, re-emits the repr and returns what it emitted (header plus any payload the
/// emitter needs), or the decode error.
type RoundTrip = fn(&[u8]) -> Result<Vec<u8>>;

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    roundtrip: RoundTrip,
}

fn ipv4(b: &[u8]) -> Result<Vec<u8>> {
    let p = Ipv4Packet::new_checked(b)?;
    let r = Ipv4Repr::parse(&p, true)?;
    let mut out = vec![0u8; r.buffer_len() + r.payload_len];
    r.emit(&mut out)?;
    out[r.buffer_len()..].copy_from_slice(p.payload());
    Ok(out)
}

/// IPv4 with options: the repr drops options, so compare the repr of the re-emitted header
/// and keep the options from the view.
fn ipv4_options(b: &[u8]) -> Result<Vec<u8>> {
    let p = Ipv4Packet::new_checked(b)?;
    let r = Ipv4Repr::parse(&p, true)?;
    let mut out = b.to_vec();
    let mut hdr = [0u8; 20];
    r.emit(&mut hdr)?;
    out[..2].copy_from_slice(&b[..2]); // version/IHL with options
    out[2..20].copy_from_slice(&hdr[2..20]);
    let mut v = Ipv4Packet::new_unchecked(&mut out[..]);
    // The repr counts the payload only; the view adds the option bytes back.
    v.set_total_len((p.header_len() + r.payload_len) as u16);
    v.fill_checksum();
    Ok(out)
}

fn udp(b: &[u8]) -> Result<Vec<u8>> {
    let p = UdpPacket::new_checked(b)?;
    let r = UdpRepr::parse(&p)?;
    let mut out = vec![0u8; r.buffer_len() + p.payload().len()];
    r.emit(&mut out, p.payload().len())?;
    out[8..].copy_from_slice(p.payload());
    Ok(out)
}

fn esp(b: &[u8]) -> Result<Vec<u8>> {
    let r = EspRepr::parse(&EspPacket::new_checked(b)?)?;
    let mut out = vec![0u8; r.buffer_len()];
    r.emit(&mut out)?;
    Ok(out)
}

fn ah(b: &[u8]) -> Result<Vec<u8>> {
    let p = AhPacket::new_checked(b)?;
    let r = AhRepr::parse(&p)?;
    let mut out = vec![0u8; r.buffer_len()];
    r.emit(&mut out)?;
    out[ah::FIXED_LEN..].copy_from_slice(p.icv());
    Ok(out)
}

fn icmp(b: &[u8]) -> Result<Vec<u8>> {
    let p = Icmpv4Packet::new_checked(b)?;
    let r = Icmpv4Repr::parse(&p)?;
    let mut out = vec![0u8; r.buffer_len() + p.data().len()];
    r.emit(&mut out, p.data())?;
    Ok(out)
}

fn ipv6(b: &[u8]) -> Result<Vec<u8>> {
    let p = Ipv6Packet::new_checked(b)?;
    let r = Ipv6Repr::parse(&p)?;
    let mut out = vec![0u8; r.buffer_len() + r.payload_len];
    r.emit(&mut out)?;
    out[r.buffer_len()..].copy_from_slice(p.payload());
    Ok(out)
}

/// IPv6 with extension headers: the fixed header by its repr, each extension header re-emitted
/// from its view (fragment header by its repr), then the upper layer where the walk says.
fn ipv6_ext(b: &[u8]) -> Result<Vec<u8>> {
    let p = Ipv6Packet::new_checked(b)?;
    let upper = ipv6_ext::upper_layer(&p)?;
    let mut out = ipv6(b)?;
    let mut next = p.next_header();
    let mut at = ipv6::HEADER_LEN;
    while ipv6_ext::is_extension_header(next) {
        if next == IpProtocol::IPV6_FRAG {
            let r = Ipv6FragmentRepr::parse(&b[at..])?;
            r.emit(&mut out[at..])?;
            (next, at) = (r.next_header, at + r.buffer_len());
        } else {
            let h = ipv6_ext::ExtHeader::new_checked(&b[at..])?;
            let len = h.header_len();
            let mut e = ipv6_ext::ExtHeader::new_unchecked(&mut out[at..at + len]);
            e.set_next_header(h.next_header());
            e.set_header_len_field(h.header_len_field());
            e.data_mut().copy_from_slice(h.data());
            (next, at) = (h.next_header(), at + len);
        }
    }
    assert_eq!((next, at), (upper.protocol, upper.offset));
    Ok(out)
}

fn ipv6_frag(b: &[u8]) -> Result<Vec<u8>> {
    let r = Ipv6FragmentRepr::parse(b)?;
    let mut out = vec![0u8; r.buffer_len()];
    r.emit(&mut out)?;
    Ok(out)
}

const ICMPV6_SRC: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const ICMPV6_DST: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

fn icmpv6(b: &[u8]) -> Result<Vec<u8>> {
    let p = Icmpv6Packet::new_checked(b)?;
    if !p.verify_checksum(ICMPV6_SRC, ICMPV6_DST) {
        return Err(Error::Checksum);
    }
    let r = Icmpv6Repr::parse(&p)?;
    let mut out = vec![0u8; r.buffer_len() + p.data().len()];
    r.emit(ICMPV6_SRC, ICMPV6_DST, &mut out, p.data())?;
    Ok(out)
}

fn table() -> Vec<Case> {
    // RFC 3602 case #7 inner packet: ICMP echo 192.168.123.3 -> .200, 84 bytes.
    let mut ip = vec![
        0x45, 0x00, 0x00, 0x54, 0x09, 0x04, 0x00, 0x00, 0x40, 0x01, 0xf9, 0x88, 0xc0, 0xa8, 0x7b,
        0x03, 0xc0, 0xa8, 0x7b, 0xc8,
    ];
    ip.extend((0..64).map(|i| i as u8));
    // Same with a 4-byte router-alert option (IHL 6), total 28, checksum filled below.
    let mut ip_opt = vec![
        0x46, 0x00, 0x00, 0x1c, 0x00, 0x01, 0x40, 0x00, 0x01, 0x02, 0x00, 0x00, 0xc0, 0x00, 0x02,
        0x01, 0xe0, 0x00, 0x00, 0x16, 0x94, 0x04, 0x00, 0x00, 1, 2, 3, 4,
    ];
    let c = checksum::checksum(&ip_opt[..24]);
    ip_opt[10..12].copy_from_slice(&c.to_be_bytes());
    let udp_b = vec![
        0x11, 0x94, 0x11, 0x94, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x12, 0x34,
    ];
    let esp_b = vec![0x00, 0x00, 0x43, 0x21, 0x00, 0x00, 0x00, 0x01];
    let mut ah_b = vec![
        0x32, 0x04, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x07,
    ];
    ah_b.extend([0x5a; 12]);
    let mut icmp_b = vec![3, 4, 0, 0, 0, 0, 0x05, 0x78];
    let c = checksum::checksum(&icmp_b);
    icmp_b[2..4].copy_from_slice(&c.to_be_bytes());
    // An IPv6 UDP datagram 2001:db8::1 -> 2001:db8::2 (traffic class 0x28, flow label
    // 0xabcde, hop limit 63), then the same behind hop-by-hop (router alert), destination
    // options (PadN) and fragment headers (offset 0, more fragments).
    let mut ip6 = vec![0x62, 0x8a, 0xbc, 0xde, 0x00, 0x0c, 17, 63];
    ip6.extend_from_slice(&ICMPV6_SRC.octets());
    ip6.extend_from_slice(&ICMPV6_DST.octets());
    ip6.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 1, 2, 3, 4]);
    let mut ip6_ext = ip6.clone();
    ip6_ext[5] = 12 + 24;
    ip6_ext[6] = 0;
    ip6_ext.splice(
        40..40,
        [
            60, 0, 0x05, 2, 0, 0, 0x01, 0, // hop-by-hop
            44, 0, 0x01, 2, 0, 0, 0, 0, // destination options
            17, 0, 0, 1, 0, 0, 0, 42, // fragment
        ],
    );
    let frag6 = vec![6, 0, 0x05, 0xa9, 0xde, 0xad, 0xbe, 0xef];
    let mut icmp6 = vec![0u8; 12];
    Icmpv6Repr::packet_too_big(1280)
        .emit(ICMPV6_SRC, ICMPV6_DST, &mut icmp6, &[0x60, 1, 2, 3])
        .unwrap();
    vec![
        Case {
            name: "ipv6",
            bytes: ip6,
            roundtrip: ipv6,
        },
        Case {
            name: "ipv6+extension headers",
            bytes: ip6_ext,
            roundtrip: ipv6_ext,
        },
        Case {
            name: "ipv6 fragment header",
            bytes: frag6,
            roundtrip: ipv6_frag,
        },
        Case {
            name: "icmpv6",
            bytes: icmp6,
            roundtrip: icmpv6,
        },
        Case {
            name: "ipv4",
            bytes: ip,
            roundtrip: ipv4,
        },
        Case {
            name: "ipv4+options",
            bytes: ip_opt,
            roundtrip: ipv4_options,
        },
        Case {
            name: "udp",
            bytes: udp_b,
            roundtrip: udp,
        },
        Case {
            name: "esp",
            bytes: esp_b,
            roundtrip: esp,
        },
        Case {
            name: "ah",
            bytes: ah_b,
            roundtrip: ah,
        },
        Case {
            name: "icmp",
            bytes: icmp_b,
            roundtrip: icmp,
        },
    ]
}

#[test]
fn every_header_round_trips() {
    for case in table() {
        let out = (case.roundtrip)(&case.bytes).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(out, case.bytes, "{} did not round-trip", case.name);
    }
}

#[test]
fn every_header_rejects_every_truncation() {
    for case in table() {
        for n in 0..case.bytes.len() {
            let r = std::panic::catch_unwind(|| (case.roundtrip)(&case.bytes[..n]));
            match r {
                Ok(Err(_)) => {}
                Ok(Ok(_)) => panic!("{}: prefix of {n} bytes was accepted", case.name),
                Err(_) => panic!("{}: prefix of {n} bytes panicked", case.name),
            }
        }
    }
}

#[test]
fn emit_into_short_buffers_is_an_error() {
    for case in table() {
        let good = (case.roundtrip)(&case.bytes).unwrap();
        assert!(!good.is_empty());
    }
    let r = EspRepr {
        spi: 1,
        sequence_number: 1,
    };
    assert_eq!(r.emit(&mut [0u8; 7]), Err(Error::BufferTooSmall));
    let r = AhRepr {
        next_header: IpProtocol::IPV4,
        spi: 1,
        sequence_number: 1,
        icv_len: 12,
    };
    assert_eq!(r.emit(&mut [0u8; 23]), Err(Error::BufferTooSmall));
    let r = UdpRepr {
        src_port: 1,
        dst_port: 2,
    };
    assert_eq!(r.emit(&mut [0u8; 7], 0), Err(Error::BufferTooSmall));
}

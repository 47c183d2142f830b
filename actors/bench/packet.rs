//! Synthetic cleartext packets for the bench and the demo: IPv4/UDP with a payload pattern.

use std::net::Ipv4Addr;

use ikehub::wire::{IpProtocol, Ipv4Repr, UdpRepr};
use ikehub::wire::{ipv4::HEADER_LEN as IP, udp::HEADER_LEN as UDP};

/// Writes an IPv4/UDP datagram of `total_len` bytes (at least the two headers) into `buf`; returns its
/// length. `tag` is stamped into the first payload bytes so a receiver can check what came back.
pub fn udp_datagram(
    buf: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ports: (u16, u16),
    total_len: usize,
    tag: u64,
) -> usize {
    let total_len = total_len.clamp(IP + UDP, buf.len());
    let payload_len = total_len - IP - UDP;
    let ip = Ipv4Repr {
        ident: tag as u16,
        dont_frag: true,
        ..Ipv4Repr::new(src, dst, IpProtocol::UDP, UDP + payload_len)
    };
    let _ = ip.emit(&mut buf[..IP]);
    let udp = UdpRepr {
        src_port: ports.0,
        dst_port: ports.1,
    };
    let _ = udp.emit(&mut buf[IP..IP + UDP], payload_len);
    for (i, b) in buf[IP + UDP..total_len].iter_mut().enumerate() {
        *b = i as u8;
    }
    let n = payload_len.min(8);
    buf[IP + UDP..IP + UDP + n].copy_from_slice(&tag.to_be_bytes()[..n]);
    total_len
}

//! Synthetic cleartext packets for the bench and the demo: IPv4/UDP with a payload pattern.

use std::net::Ipv4Addr;

use ikehub::wire::{IpProtocol, Ipv4Repr, UdpRepr};

/// Writes an IPv4/UDP datagram of `total_len` bytes (at least 28) into `buf`; returns its
/// length. `tag` is stamped into the first payload bytes so a receiver can check what came back.
pub fn udp_datagram(
    buf: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ports: (u16, u16),
    total_len: usize,
    tag: u64,
) -> usize {
    let total_len = total_len.clamp(28, buf.len());
    let payload_len = total_len - 28;
    let ip = Ipv4Repr {
        ident: tag as u16,
        dont_frag: true,
        ..Ipv4Repr::new(src, dst, IpProtocol::UDP, payload_len + 8)
    };
    let _ = ip.emit(&mut buf[..20]);
    let udp = UdpRepr {
        src_port: ports.0,
        dst_port: ports.1,
    };
    let _ = udp.emit(&mut buf[20..28], payload_len);
    for (i, b) in buf[28..total_len].iter_mut().enumerate() {
        *b = i as u8;
    }
    let n = payload_len.min(8);
    buf[28..28 + n].copy_from_slice(&tag.to_be_bytes()[..n]);
    total_len
}

//! Bytes <-> types for the data plane: IPv4, UDP, ESP, AH and the ICMP messages the concentrator
//! originates, plus IPv4 and IPv6 (source) fragmentation and the TUN device's virtio-net header and GSO
//! segmentation; IPv6, its extension headers (`ipv6_ext`: the walk to the upper layer, AH's
//! zeroing of mutable fields) and ICMPv6 Packet Too Big.
//!
//! Each fixed header is a zero-copy view over a byte slice (`XxxPacket<T: AsRef<[u8]>>`) with a
//! checked constructor (`new_checked`) and a typed `XxxRepr` with `parse` / `buffer_len` /
//! `emit`, in the style of smoltcp's `src/wire`. Views never panic on short input once
//! `new_checked` succeeded; every decode failure is a [`Error`].

pub mod ah;
pub mod checksum;
pub mod esp;
pub mod frag;
pub mod frag6;
pub mod gro;
pub mod gso;
pub mod icmp;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod ipv6_ext;
pub mod isakmp;
pub mod udp;
pub mod udp_encap;
pub mod vnet;

#[cfg(test)]
mod tests;

pub use ah::{AhPacket, AhRepr};
pub use esp::{EspPacket, EspRepr};
pub use frag::Ipv4Fragmenter;
pub use frag6::Ipv6Fragmenter;
pub use icmp::{Icmpv4Packet, Icmpv4Repr, build_frag_needed};
pub use icmpv6::{Icmpv6Packet, Icmpv6Repr, build_packet_too_big};
pub use ip::{IpProtocol, IpRepr};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Packet, Ipv6Repr};
pub use ipv6_ext::{Ipv6FragmentRepr, UpperLayer};
pub use udp::{UdpPacket, UdpRepr};

/// Why bytes could not be read as a header (the wire-layer error of docs/design.md convention 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the header or than a length field says.
    #[error("truncated")]
    Truncated,
    /// A field has a value the format does not allow (version, length below minimum, ...).
    #[error("malformed")]
    Malformed,
    /// A checksum does not verify.
    #[error("bad checksum")]
    Checksum,
    /// The caller's output buffer is too small for what should be emitted.
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// Result of wire-layer decoding.
pub type Result<T> = core::result::Result<T, Error>;

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

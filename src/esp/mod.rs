//! IPsec security associations: ESP (RFC 4303) and AH (RFC 4302), tunnel and transport mode,
//! raw or RFC 3948 UDP encapsulation, anti-replay, lifetimes and counters; IPv4 or IPv6 inside
//! (tunnel mode carries either over either) and outside.
//!
//! Sans-IO like the rest of the core: [`SecurityAssociation::encap`] and
//! [`SecurityAssociation::decap`] work on caller buffers, take the time and the RNG from the
//! caller, and return what to do with the result.
//!
//! * Outbound: build the SA with [`SecurityAssociation::new`] from [`SaParams`] (direction
//!   [`Direction::Outbound`]); for each cleartext packet call `encap` (or `encap_batch` for a
//!   batch read from the TUN) with an [`EncapParams`]; the [`EncapOutcome`] says whether to send
//!   the packet, fragment it first, or write an ICMP "fragmentation needed" (IPv4) or ICMPv6
//!   Packet Too Big (IPv6) back to the TUN.
//! * Inbound: build with [`Direction::Inbound`], find it by SPI (`crate::spd::SpiTable`) and call
//!   `decap` on the received bytes ([`Received::Ip`] for a whole IPv4 or IPv6 packet,
//!   [`Received::Udp`] for the payload of a UDP 4500 datagram, [`Received::Esp`] for what a raw
//!   `AF_INET6` ESP socket reads). `Ok` gives the range of the cleartext packet in the
//!   buffer; `Err` gives the [`DropReason`], already counted on the SA.

pub mod counters;
mod decap;
mod encap;
pub mod manual;
pub mod replay;
pub mod sa;
pub mod suite;

#[cfg(test)]
mod gcm_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_ah6;
#[cfg(test)]
mod tests_v6;

pub use counters::SaCounters;
pub use decap::{DecapJob, Decapsulated, Received};
pub use encap::{EncapJob, EncapOutcome, EncapParams, OuterPacket};
pub use replay::ReplayWindow;
pub use sa::{
    AhKeys, Direction, EspKeys, LifetimeLimits, LifetimeState, SaEncapsulation, SaError, SaParams,
    SecurityAssociation,
};

use crate::wire;

/// Why an inbound packet was dropped. Every reason is counted on the SA
/// in one of the [`SaCounters`] fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DropReason {
    /// Some header or the ESP/AH payload is shorter than it must be.
    #[error("truncated packet")]
    Truncated,
    /// A header field is invalid (bad IPv4 version or lengths, AH ICV length not ours, ...).
    #[error("malformed packet")]
    Malformed,
    /// The outer packet is not of the protocol this SA carries (ESP, AH or UDP).
    #[error("unexpected outer protocol")]
    WrongProtocol,
    /// The SPI in the packet is not this SA's.
    #[error("SPI does not belong to this SA")]
    SpiMismatch,
    /// An outer fragment: reassemble before decapsulation (RFC 4303 §3.4.1).
    #[error("outer fragment")]
    Fragment,
    /// Sequence number already seen or left of the window (RFC 4303 §3.4.3).
    #[error("replayed sequence number")]
    Replayed,
    /// The ICV did not verify (RFC 4303 §3.4.4, RFC 4302 §3.4.4).
    #[error("ICV verification failed")]
    IcvFailure,
    /// The ciphertext is not a multiple of the cipher block size.
    #[error("ciphertext not a multiple of the block size")]
    BadLength,
    /// Pad length larger than the decrypted payload.
    #[error("bad pad length")]
    BadPadLength,
    /// Padding bytes are not 1, 2, 3, ... (RFC 4303 §2.4).
    #[error("bad padding bytes")]
    BadPadding,
    /// Next header is neither IPv4 nor IPv6 (tunnel) nor a protocol transport mode can carry.
    #[error("unknown next header")]
    UnknownNextHeader,
    /// An ESP dummy packet (next header 59, RFC 4303 §2.6): dropped silently by design.
    #[error("dummy packet")]
    Dummy,
    /// The decapsulated packet is not a valid IPv4 (or, for next header 41, IPv6) packet.
    #[error("inner packet malformed")]
    InnerMalformed,
    /// Inner addresses outside the SA's protected networks (RFC 4301 §5.2).
    #[error("inner packet outside the SA's protected networks")]
    SelectorMismatch,
    /// The SA reached its hard lifetime.
    #[error("SA expired")]
    Expired,
    /// Called on an outbound SA, or a transport-mode packet with no headroom to rebuild the IP
    /// header, or with IPv6 extension headers before ESP/AH (transport mode only), or an AH
    /// packet behind more than 512 bytes of IPv6 header chain.
    #[error("not supported")]
    Unsupported,
}

impl From<wire::Error> for DropReason {
    fn from(e: wire::Error) -> Self {
        match e {
            wire::Error::Truncated => DropReason::Truncated,
            _ => DropReason::Malformed,
        }
    }
}

/// Why a cleartext packet could not be encapsulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncapError {
    /// The SA reached its hard lifetime.
    #[error("SA reached its hard lifetime")]
    Expired,
    /// RFC 4303 §3.3.3: without ESN the counter must not cycle; the SA must be replaced.
    #[error("sequence number space exhausted")]
    SequenceOverflow,
    /// The output buffer cannot hold the outer packet (or the ICMP message).
    #[error("output buffer too small")]
    BufferTooSmall,
    /// The cleartext packet failed to parse.
    #[error("cleartext packet is not a valid IP packet: {0}")]
    InnerMalformed(wire::Error),
    /// The cleartext packet is neither IPv4 nor IPv6.
    #[error("cleartext packet is not IP")]
    InnerNotIp,
    /// Transport mode protects the hosts' own traffic: inner addresses must be local/peer.
    #[error("transport mode packet is not between the SA's endpoints")]
    TransportAddressMismatch,
    /// In transport mode the ESP/AH Next Header is the packet's own protocol, and 59 there
    /// marks a dummy packet the peer must discard (RFC 4303 §2.6; our decap drops it behind
    /// AH too): such a packet cannot be carried.
    #[error(
        "transport mode cannot carry IP protocol 59 (the peer would discard it as a dummy packet)"
    )]
    TransportNoNextHeader,
    /// Transport mode applies to whole datagrams only (RFC 4301 §4.1).
    #[error("transport mode cannot carry a fragment")]
    TransportFragment,
    /// RFC 4303 §3.1.1 puts ESP after the IPv6 hop-by-hop, routing, fragment and some
    /// destination-options headers; we carry only IPv6 packets without extension headers in
    /// transport mode.
    #[error("transport mode does not carry IPv6 packets with extension headers")]
    TransportExtensionHeaders,
    /// An IPv6 packet does not fit, and RFC 4443 §2.4 (e) forbids the Packet Too Big that
    /// would say so (it answers an ICMPv6 error, or its source is unspecified or multicast).
    #[error("packet too big, and no ICMPv6 error may answer it")]
    TooBigNoIcmp,
    /// The encapsulated packet would exceed the IPv4 maximum.
    #[error("the encapsulated packet would exceed 65535 bytes")]
    TooLarge,
    /// `encap` on an inbound SA.
    #[error("encap called on an inbound SA")]
    WrongDirection,
}

//! The daemon's IKE side: the sockets IKE uses (UDP 500 and, through shard 0's NAT-T socket,
//! UDP 4500 behind the non-ESP marker), the router that admits unknown initiators against the
//! policies before any state or DH work, and one supervised PeerActor per peer around the
//! sans-IO `ikehub::ike::IkeSession`.

pub mod claims;
pub mod history;
pub mod peer;
pub mod router;
pub mod socket;
pub mod spis;

use std::net::SocketAddr;

use actix::prelude::*;

/// One IKE datagram from the wire (the non-ESP marker already removed on port 4500).
#[derive(Message)]
#[rtype(result = "()")]
pub struct IkeDatagram {
    /// Our address and port it arrived on.
    pub local: SocketAddr,
    pub from: SocketAddr,
    /// Arrived on the NAT-T port.
    pub nat_t: bool,
    pub bytes: Vec<u8>,
}

/// A shard saw cleartext for a policy that has no SA yet (on-demand initiation).
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct Acquire {
    pub policy: std::sync::Arc<str>,
    pub src: std::net::Ipv4Addr,
    pub dst: std::net::Ipv4Addr,
}

//! Messages between the IKE side and the ESP shards, in one place so that neither imports the
//! other: IKE datagrams the shards read on the NAT-T port, Acquires for policies without an SA,
//! and the wiring that tells the shards where to send them. (The shards' own API, SA and
//! policy installs, is `shard::messages`.)

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

/// A shard saw cleartext for a policy that has no SA yet (on-demand initiation). The
/// addresses are the packet's (IPv4 or IPv6; both of one family), for the log line only: the
/// policy is what the router acts on.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct Acquire {
    pub policy: std::sync::Arc<str>,
    pub src: std::net::IpAddr,
    pub dst: std::net::IpAddr,
}

/// Where a shard sends IKE datagrams that arrive on its NAT-T socket, and Acquires.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ConnectIke {
    pub ike: Recipient<IkeDatagram>,
    pub acquire: Recipient<Acquire>,
}

//! The daemon's IKE side: the sockets IKE uses (UDP 500 and, through shard 0's NAT-T socket,
//! UDP 4500 behind the non-ESP marker), the router that admits unknown initiators against the
//! policies before any state or DH work, and one supervised PeerActor per peer around the
//! sans-IO `ikehub::ike::IkeSession`.

pub mod claims;
pub mod history;
pub mod peer;
pub mod rng;
pub mod router;
pub mod small_map;
pub mod socket;
pub mod spis;
pub mod workers;

//! OS I/O for the ESP forwarding shards: multi-queue TUN, batched UDP, raw IP sockets, the
//! packet arena they share, cBPF steering by SPI, routes and interface queries. No ESP logic
//! here; every fd is non-blocking and can be registered with `tokio::io::unix::AsyncFd`.
#![allow(dead_code, unused_imports)]

pub mod batch;
pub mod bpf;
pub mod link;
pub mod raw;
pub mod route;
pub mod tun;
pub mod udp;

#[cfg(test)]
mod testns;

pub use batch::{BatchRecv, BatchSend, PacketBatch, send_all};
pub use bpf::{IpsecProto, spi_shard};
pub use link::{
    interface_index, interface_mtu, mtu_of_address, set_interface_mtu, set_interface_up,
};
pub use raw::{RawReceiver, RawSender, Share};
pub use route::{Ipv4Route, Netlink, RouteError, RouteGuard};
pub use tun::{TunConfig, TunDevice, TunQueue};
pub use udp::{PmtuDisc, UdpBatchSocket, UdpOptions};

//! OS I/O for the ESP forwarding shards: multi-queue TUN, batched UDP, raw IP sockets, the
//! packet arena they share, cBPF steering by SPI, routes and interface queries. No ESP logic
//! here; every fd is non-blocking and can be registered with `tokio::io::unix::AsyncFd`.
#![allow(dead_code, unused_imports)]

pub mod batch;
pub mod bpf;
pub mod udp;

pub use batch::{BatchRecv, BatchSend, PacketBatch, send_all};
pub use bpf::{SpiAt, spi_shard};
pub use udp::{PmtuDisc, UdpBatchSocket, UdpOptions};

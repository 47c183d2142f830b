//! OS I/O for the ESP forwarding shards: multi-queue TUN, batched UDP, raw IP sockets, the
//! packet arena they share, cBPF steering by SPI, routes and interface queries. No ESP logic
//! here; every fd is non-blocking and is registered with [`register`] (tokio `AsyncFd`).
//!
//! Shard `k` of `N` on one interface owns:
//! * `TunQueue` `k` of a [`TunDevice`] with `N` queues (cleartext in and out);
//! * socket `k` of a [`UdpBatchSocket::bind_group`] on the NAT-T port, the group steered with
//!   [`UdpBatchSocket::steer_by_spi`] (IKE and keepalives land on socket 0);
//! * a [`RawReceiver`] for ESP (and one for AH when used) with `Share { shard: k, shards: N }`
//!   and a [`RawSender`] (one per shard; `IPPROTO_RAW` sockets do not receive);
//! * two or more [`PacketBatch`]es, reused for ever.
//!
//! The loop: `readable().await` → `try_io(recv_batch)` until `WouldBlock` or the batch is
//! full → transform in place (headroom in front, tail room behind) → set each packet's
//! destination → [`send_all`] with a cursor; on `WouldBlock`, `writable().await` and call
//! again with the same cursor. Packets the kernel refuses one by one (EMSGSIZE, ...) are
//! reported to the callback and skipped, never retried for ever.
//!
//! Every [`BatchSend`] has `sendmmsg` semantics: an error on the first packet is an `Err`,
//! an error on a later one ends the call early with the count before it.

pub mod batch;
pub mod bpf;
mod gro;
pub mod link;
pub mod memory;
pub mod netlink;
pub mod raw;
pub mod raw6;
pub mod route;
pub mod tun;
pub mod udp;

#[cfg(test)]
mod testns;

pub use batch::{PacketBatch, send_all};
pub use bpf::{IpsecProto, spi_shard};
pub use link::mtu_of_address;
pub use memory::MemoryPort;
pub use raw::{RawReceiver, RawSender, Share};
pub use raw6::{RawIpv6Sender, RawReceiver6};
pub use route::{Route, RouteError, RouteGuard};
pub use tun::{OffloadStats, TunConfig, TunDevice, TunQueue};
pub use udp::{PmtuDisc, UdpBatchSocket, UdpOptions};

use std::os::fd::AsRawFd;
use tokio::io::unix::AsyncFd;

/// The raw ESP or AH receiver of one shard on one interface, of the interface address's
/// family.
#[derive(Debug)]
pub enum WanRawReceiver {
    V4(RawReceiver),
    V6(RawReceiver6),
}

impl WanRawReceiver {
    /// Reads a batch of whole IP packets: IPv4 as the kernel hands them over, IPv6 with the
    /// header written back in front ([`RawReceiver6::recv_whole`]).
    pub fn recv_whole(&self, batch: &mut PacketBatch) -> std::io::Result<usize> {
        match self {
            WanRawReceiver::V4(r) => r.recv_batch(batch),
            WanRawReceiver::V6(r) => r.recv_whole(batch),
        }
    }
}

impl AsRawFd for WanRawReceiver {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            WanRawReceiver::V4(r) => r.as_raw_fd(),
            WanRawReceiver::V6(r) => r.as_raw_fd(),
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::UdpBatchSocket {}
    impl Sealed for super::RawReceiver {}
    impl Sealed for super::RawSender {}
    impl Sealed for super::WanRawReceiver {}
    impl Sealed for super::RawIpv6Sender {}
    impl Sealed for super::TunQueue {}
    impl Sealed for super::MemoryPort {}
}

/// The I/O types of this module: each owns exactly one fd for its whole life and
/// `as_raw_fd` always returns that fd, which is what `AsyncFd::register` requires.
pub trait OwnedIoFd: AsRawFd + sealed::Sealed {}
impl OwnedIoFd for UdpBatchSocket {}
impl OwnedIoFd for RawReceiver {}
impl OwnedIoFd for RawSender {}
impl OwnedIoFd for WanRawReceiver {}
impl OwnedIoFd for RawIpv6Sender {}
impl OwnedIoFd for MemoryPort {}
impl OwnedIoFd for TunQueue {}

/// Registers `io` with the current tokio reactor (readable and writable interest).
///
/// tokio 1.54 deprecates the safe `AsyncFd::new` in favour of `unsafe AsyncFd::register`;
/// this wrapper discharges the safety contract once for the types of this module.
pub fn register<T: OwnedIoFd>(io: T) -> std::io::Result<AsyncFd<T>> {
    // SAFETY: `OwnedIoFd` is sealed to types that own their fd and never swap it.
    unsafe { AsyncFd::register(io) }.map_err(|e| e.into_parts().1)
}

//! The cleartext side: a multi-queue TUN device (`IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE`),
//! one queue per forwarding shard, created through tun-rs.
//!
//! The kernel spreads packets leaving through the device over the queues by flow hash, so
//! one flow (and so one SA's cleartext) stays on one queue. The device is not persistent:
//! it disappears, with its addresses and routes, when the last queue is closed (verified in
//! the tests below).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use tun_rs::{DeviceBuilder, SyncDevice};

use super::batch::{BatchSend, PacketBatch};

/// How to create (or attach to) the TUN device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunConfig {
    /// Interface name (at most 15 bytes).
    pub name: String,
    /// Device MTU; batch slots must have at least this much room.
    pub mtu: u16,
    /// Number of queues (one per shard), 1..=256.
    pub queues: usize,
    /// Address and prefix length to assign, e.g. the `source-address` of the profile as a /32.
    pub address: Option<(Ipv4Addr, u8)>,
}

/// A TUN device and its queues. Hand the queues to the shards with
/// [`into_queues`](Self::into_queues); the device lives as long as any queue does.
#[derive(Debug)]
pub struct TunDevice {
    queues: Vec<TunQueue>,
}

impl TunDevice {
    /// Creates the device (or attaches to an existing multi-queue device of that name) with
    /// `config.queues` queues, sets the MTU and address and brings it up. Needs CAP_NET_ADMIN.
    pub fn create(config: &TunConfig) -> io::Result<Self> {
        let ctx = |e: io::Error, what: &str| {
            io::Error::new(e.kind(), format!("TUN device {}: {what}: {e}", config.name))
        };
        if config.queues == 0 || config.queues > 256 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "TUN device {}: {} queues (1..=256 allowed)",
                    config.name, config.queues
                ),
            ));
        }
        let mut builder = DeviceBuilder::new()
            .name(config.name.clone())
            .mtu(config.mtu)
            .multi_queue(true)
            .packet_information(false)
            .enable(true);
        if let Some((addr, prefix)) = config.address {
            builder = builder.ipv4(addr, prefix, None);
        }
        let first = builder.build_sync().map_err(|e| ctx(e, "creating"))?;
        let mut dev = Self {
            queues: Vec::with_capacity(config.queues),
        };
        dev.queues
            .push(TunQueue::new(first, 0).map_err(|e| ctx(e, "queue 0"))?);
        for _ in 1..config.queues {
            dev.add_queue().map_err(|e| ctx(e, "adding a queue"))?;
        }
        Ok(dev)
    }

    /// Attaches one more queue and returns its index.
    pub fn add_queue(&mut self) -> io::Result<usize> {
        let index = self.queues.len();
        let first = self
            .queues
            .first()
            .ok_or_else(|| io::Error::other("TUN device without queues"))?;
        let q = first.dev.try_clone()?;
        self.queues.push(TunQueue::new(q, index)?);
        Ok(index)
    }

    #[cfg(test)]
    /// The queues, index `k` for shard `k`.
    pub fn queues(&self) -> &[TunQueue] {
        &self.queues
    }

    /// Gives up the queues, one per shard.
    pub fn into_queues(self) -> Vec<TunQueue> {
        self.queues
    }
}

/// One queue of the TUN device: a non-blocking fd reading and writing whole IP packets
/// (no packet-information header). Register it with `tokio::io::unix::AsyncFd`.
pub struct TunQueue {
    dev: SyncDevice,
    index: usize,
}

impl std::fmt::Debug for TunQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunQueue")
            .field("index", &self.index)
            .field("fd", &self.dev.as_raw_fd())
            .finish()
    }
}

impl TunQueue {
    fn new(dev: SyncDevice, index: usize) -> io::Result<Self> {
        dev.set_nonblocking(true)?;
        Ok(Self { dev, index })
    }

    /// Reads packets into the free slots of `batch` (one `read` each) until the batch is
    /// full or the queue is empty. Returns how many arrived; `Err(WouldBlock)` when none.
    pub fn recv_batch(&self, batch: &mut PacketBatch) -> io::Result<usize> {
        let mut n = 0;
        while let Some((i, buf)) = batch.next_read_buf() {
            match self.dev.recv(buf) {
                Ok(len) => {
                    batch.commit_read(i, len, None);
                    n += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if n > 0 && e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return if n > 0 { Ok(n) } else { Err(e) },
            }
        }
        Ok(n)
    }

    /// Writes one IP packet into the kernel (it arrives as if received on the device).
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        self.dev.send(packet)
    }

    /// Writes packets `from..len()` of `batch`, one `write` each. Like `sendmmsg`: an error
    /// on the first packet is returned, an error later ends the call with the count so far;
    /// use [`send_all`](super::send_all) to skip refused packets.
    pub fn send_batch(&self, batch: &mut PacketBatch, from: usize) -> io::Result<usize> {
        let mut n = 0;
        for i in from..batch.len() {
            match self.dev.send(batch.packet(i)) {
                Ok(_) => n += 1,
                Err(e) if n == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(n)
    }
}

impl BatchSend for TunQueue {
    fn send_from(&self, batch: &mut PacketBatch, from: usize) -> io::Result<usize> {
        self.send_batch(batch, from)
    }
}

impl AsRawFd for TunQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.dev.as_raw_fd()
    }
}

impl AsFd for TunQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd is owned by `self.dev` and lives as long as `self`.
        unsafe { BorrowedFd::borrow_raw(self.dev.as_raw_fd()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::batch::send_all;
    use crate::io::link::{interface_index, interface_mtu};
    use crate::io::route::{Ipv4Route, RouteError, RouteGuard};
    use crate::io::testns::in_netns;
    use crate::io::udp::{UdpBatchSocket, UdpOptions};
    use std::net::SocketAddr;
    use std::process::Command;
    use std::time::{Duration, Instant};

    const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    const REMOTE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);

    fn ip(args: &[&str]) -> String {
        let out = Command::new("ip").args(args).output().expect("running ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn checksum(data: &[u8]) -> u16 {
        let mut sum: u32 = data
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// IPv4 + UDP (checksum 0) packet.
    fn udp_packet(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
        let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
            unreachable!()
        };
        let total = 28 + payload.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&s.ip().octets());
        p[16..20].copy_from_slice(&d.ip().octets());
        let c = checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p[20..22].copy_from_slice(&s.port().to_be_bytes());
        p[22..24].copy_from_slice(&d.port().to_be_bytes());
        p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        p[28..].copy_from_slice(payload);
        p
    }

    #[test]
    fn tun_queues_routes_and_traffic_both_ways() {
        in_netns("tun_queues_routes_and_traffic_both_ways", || {
            let name = "iktest0";
            let dev = TunDevice::create(&TunConfig {
                name: name.into(),
                mtu: 1400,
                queues: 2,
                address: Some((LOCAL, 32)),
            })
            .unwrap();
            assert_eq!(dev.queues().len(), 2);
            assert_eq!(interface_mtu(name).unwrap(), 1400);
            let link = ip(&["-d", "link", "show", name]);
            assert!(link.contains(",UP") || link.contains("<UP"), "{link}");
            assert!(link.contains("multi_queue"), "{link}");
            assert!(ip(&["-4", "addr", "show", name]).contains("198.51.100.1/32"));

            // Routes: add, duplicate, bad device, bad source, remove, guard drop.
            let route = Ipv4Route::new(Ipv4Addr::new(203, 0, 113, 0), 24, name).with_src(LOCAL);
            let mut guard = RouteGuard::new().unwrap();
            guard.add(route.clone()).unwrap();
            let shown = ip(&["route", "show", "203.0.113.0/24"]);
            assert!(
                shown.contains("dev iktest0") && shown.contains("src 198.51.100.1"),
                "{shown}"
            );
            let dup = guard.add(route.clone()).unwrap_err();
            assert_eq!(dup.to_string(), "route 203.0.113.0/24 already exists");
            let no_dev = guard
                .add(Ipv4Route::new(Ipv4Addr::new(192, 0, 2, 0), 24, "nosuch0"))
                .unwrap_err();
            assert!(matches!(no_dev, RouteError::NoDevice { .. }), "{no_dev:?}");
            assert_eq!(
                no_dev.to_string(),
                "route 192.0.2.0/24 dev nosuch0: no such device nosuch0"
            );
            let bad_src = guard
                .add(
                    Ipv4Route::new(Ipv4Addr::new(192, 0, 2, 0), 24, name)
                        .with_src(Ipv4Addr::new(192, 0, 2, 99)),
                )
                .unwrap_err();
            eprintln!("bad source reported as: {bad_src}");
            assert!(matches!(bad_src, RouteError::Kernel { .. }), "{bad_src}");
            guard.remove(&route).unwrap();
            assert_eq!(ip(&["route", "show", "203.0.113.0/24"]).trim(), "");
            guard.add(route.clone()).unwrap();
            guard
                .add(Ipv4Route::new(Ipv4Addr::new(192, 0, 2, 128), 25, name))
                .unwrap();
            assert_eq!(guard.installed().len(), 2);
            drop(guard);
            assert!(!ip(&["route", "show", "dev", name]).contains("192.0.2.128/25"));
            assert_eq!(ip(&["route", "show", "203.0.113.0/24"]).trim(), "");

            let mut guard = RouteGuard::new().unwrap();
            guard.add(route).unwrap();
            let queues = dev.into_queues();

            // TUN -> stack: packets written to queue 0 reach a UDP socket on 198.51.100.1.
            let sock =
                UdpBatchSocket::bind(SocketAddr::from((LOCAL, 5000)), &UdpOptions::default())
                    .unwrap();
            let peer = SocketAddr::from((REMOTE, 1234));
            let mut out = PacketBatch::with_defaults();
            for k in 0..8u8 {
                out.push(
                    &udp_packet(peer, sock.local_addr().unwrap(), &[k; 100]),
                    None,
                )
                .unwrap();
            }
            let mut cursor = 0;
            send_all(&queues[0], &mut out, &mut cursor, |i, e| {
                panic!("TUN write {i}: {e}")
            })
            .unwrap();
            let mut inb = PacketBatch::with_defaults();
            let deadline = Instant::now() + Duration::from_secs(2);
            while inb.len() < 8 && Instant::now() < deadline {
                if sock.recv_batch(&mut inb).is_err() {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            assert_eq!(inb.len(), 8, "datagrams from the TUN");
            for k in 0..8 {
                assert_eq!(inb.addr(k), Some(peer));
                assert_eq!(inb.packet(k), &[k as u8; 100]);
            }

            // Stack -> TUN: datagrams to 203.0.113.5 come out of one of the queues.
            out.clear();
            for k in 0..8u8 {
                out.push(&[k; 64], Some(peer)).unwrap();
            }
            let mut cursor = 0;
            send_all(&sock, &mut out, &mut cursor, |i, e| {
                panic!("UDP send {i}: {e}")
            })
            .unwrap();
            let mut got: Vec<u8> = Vec::new();
            let mut per_queue = [0usize; 2];
            let deadline = Instant::now() + Duration::from_secs(2);
            while got.len() < 8 && Instant::now() < deadline {
                for (q, queue) in queues.iter().enumerate() {
                    let mut b = PacketBatch::with_defaults();
                    if queue.recv_batch(&mut b).is_ok() {
                        for (p, _) in b.iter() {
                            // Only our datagrams: IPv4, UDP, to 203.0.113.5:1234.
                            if p.len() == 28 + 64 && p[9] == 17 && p[16..20] == REMOTE.octets() {
                                assert_eq!(u16::from_be_bytes([p[22], p[23]]), 1234);
                                got.push(p[28]);
                                per_queue[q] += 1;
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            assert_eq!(
                got,
                (0..8).collect::<Vec<u8>>(),
                "one flow, one queue, in order"
            );
            assert!(
                per_queue.contains(&8),
                "a flow stays on one queue: {per_queue:?}"
            );

            // Closing every queue removes the device and its routes.
            drop(queues);
            let gone = interface_index(name).unwrap_err();
            assert_eq!(gone.kind(), io::ErrorKind::NotFound, "{gone}");
            drop(guard); // routes already gone with the device: not an error
        });
    }

    #[test]
    fn zero_queues_refused() {
        let e = TunDevice::create(&TunConfig {
            name: "iktest1".into(),
            mtu: 1400,
            queues: 0,
            address: None,
        })
        .unwrap_err();
        assert!(e.to_string().contains("0 queues"), "{e}");
    }
}

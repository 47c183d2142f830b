//! The cleartext side: a multi-queue TUN device (`IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE`),
//! one queue per forwarding shard, created through tun-rs.
//!
//! The kernel spreads packets leaving through the device over the queues by flow hash, so
//! one flow (and so one SA's cleartext) stays on one queue. The device is not persistent:
//! it disappears, with its addresses and routes, when the last queue is closed (verified in
//! the tests below).
//!
//! With offload on (the default; `[tunnel-device] offload`), the device is opened with
//! `IFF_VNET_HDR` and `TUNSETOFFLOAD` (`TUN_F_CSUM | TSO4 | TSO6`, plus `USO4 | USO6` when the
//! kernel has them, Linux 6.2): every read and write starts with a virtio-net header, and the
//! kernel hands over TCP (and UDP) super-packets of up to 64 KB in one read instead of one
//! per MTU. What crosses the kernel boundary is what costs (DESIGN.md, "The hot path"), so
//! one read of 45 segments is the gain; the cutting happens here, by
//! [`ikehub::wire::vnet`]/[`ikehub::wire::gso`], into the shard's batch slots, and a
//! super-packet that does not fit the batch is finished on the next call.

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice, IoSliceMut};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use ikehub::wire::gro::{Run, Segment};
use ikehub::wire::gso::Gso;
use ikehub::wire::vnet::{self, OffloadError, Plan, VnetHeader};
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
    /// Ask for the virtio-net header and TSO/USO; falls back to plain packets when the
    /// kernel refuses (see [`TunDevice::offload`]).
    pub offload: bool,
}

/// A TUN device and its queues. Hand the queues to the shards with
/// [`into_queues`](Self::into_queues); the device lives as long as any queue does.
#[derive(Debug)]
pub struct TunDevice {
    queues: Vec<TunQueue>,
    offload: bool,
}

impl TunDevice {
    /// Creates the device (or attaches to an existing multi-queue device of that name) with
    /// `config.queues` queues, sets the MTU and address and brings it up. Needs CAP_NET_ADMIN.
    ///
    /// With `config.offload`, a kernel that refuses `IFF_VNET_HDR` or the TCP offloads gets
    /// a device without them (the virtio header is little-endian here, so big-endian hosts
    /// never ask); [`offload`](Self::offload) tells which one was made.
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
        let build = |offload: bool| {
            let mut builder = DeviceBuilder::new()
                .name(config.name.clone())
                .mtu(config.mtu)
                .multi_queue(true)
                .packet_information(false)
                .offload(offload)
                .enable(true);
            if let Some((addr, prefix)) = config.address {
                builder = builder.ipv4(addr, prefix, None);
            }
            builder.build_sync()
        };
        let want = config.offload && cfg!(target_endian = "little");
        let first = match build(want) {
            Ok(dev) => dev,
            // The failed attempt's fd is closed, so a device it created is gone again.
            Err(_) if want => build(false).map_err(|e| ctx(e, "creating"))?,
            Err(e) => return Err(ctx(e, "creating")),
        };
        let offload = first.tcp_gso();
        let mut dev = Self {
            queues: Vec::with_capacity(config.queues),
            offload,
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

    /// Whether the queues use the virtio-net header with TCP offloads (TSO).
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// Whether UDP segmentation offload (USO) was accepted too.
    pub fn udp_offload(&self) -> bool {
        self.queues.first().is_some_and(|q| q.dev.udp_gso())
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

/// Most packets written as one coalesced TCP packet (one `writev` of this many + 1 pieces).
const MAX_RUN: usize = 64;

/// Room for one read with offload: the largest IPv4 super-packet (64 KB) and its header.
const SUPER_PACKET_ROOM: usize = vnet::HEADER_LEN + 65536;

/// The longest run of TCP segments from packet `i` on that may be written as one; `None`
/// when packet `i` goes alone.
fn tcp_run(batch: &PacketBatch, i: usize) -> Option<Run> {
    let first_pkt = batch.packet(i);
    let mut run = Run::new(Segment::parse(first_pkt)?);
    for j in i + 1..batch.len() {
        if run.count() == MAX_RUN {
            break;
        }
        let p = batch.packet(j);
        match Segment::parse(p) {
            Some(s) if run.push(first_pkt, &s, p) => {}
            _ => break,
        }
    }
    (run.count() > 1).then_some(run)
}

/// The free slot [`PacketBatch::next_read_buf`] offered (the read is not committed yet).
fn read_area(batch: &mut PacketBatch) -> &mut [u8] {
    batch.next_read_buf().map(|(_, s)| s).unwrap_or_default()
}

/// Counters of the offload read path (per queue; plain `Cell`s: a queue has one reader).
#[derive(Debug, Default)]
pub struct OffloadStats {
    /// Super-packets read and cut.
    pub super_packets: Cell<u64>,
    /// Packets made from them.
    pub segments: Cell<u64>,
    /// Packets whose partial checksum was completed here.
    pub checksums_completed: Cell<u64>,
    /// Dropped: header or packet inconsistent (see [`OffloadError::Malformed`]).
    pub malformed: Cell<u64>,
    /// Dropped: a GSO type the data plane does not carry (IPv6).
    pub unsupported: Cell<u64>,
    /// Dropped: a packet or segment larger than a batch slot.
    pub too_big: Cell<u64>,
}

fn bump(c: &Cell<u64>, n: u64) {
    c.set(c.get().saturating_add(n));
}

/// The read side's state with offload: one contiguous buffer for a super-packet and how far
/// its segmentation got.
struct VnetRx {
    buf: Box<[u8]>,
    /// The super-packet in `buf[..len]` still being cut, and the next segment.
    pending: Option<(Gso, usize, usize)>,
}

/// One queue of the TUN device: a non-blocking fd reading and writing whole IP packets
/// (no packet-information header). Register it with `tokio::io::unix::AsyncFd`.
pub struct TunQueue {
    dev: SyncDevice,
    index: usize,
    /// `Some` when the device carries the virtio-net header.
    vnet: Option<RefCell<VnetRx>>,
    stats: OffloadStats,
}

impl std::fmt::Debug for TunQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunQueue")
            .field("index", &self.index)
            .field("fd", &self.dev.as_raw_fd())
            .field("offload", &self.vnet.is_some())
            .finish()
    }
}

impl TunQueue {
    fn new(dev: SyncDevice, index: usize) -> io::Result<Self> {
        dev.set_nonblocking(true)?;
        let vnet = dev.tcp_gso().then(|| {
            RefCell::new(VnetRx {
                buf: vec![0u8; SUPER_PACKET_ROOM].into_boxed_slice(),
                pending: None,
            })
        });
        Ok(Self {
            dev,
            index,
            vnet,
            stats: OffloadStats::default(),
        })
    }

    #[cfg(test)]
    /// Whether this queue reads and writes the virtio-net header.
    pub fn offload(&self) -> bool {
        self.vnet.is_some()
    }

    #[cfg(test)]
    /// Counters of the offload read path (not yet part of the shard's report).
    pub fn offload_stats(&self) -> &OffloadStats {
        &self.stats
    }

    /// Reads packets into the free slots of `batch` until the batch is full or the queue is
    /// empty. Returns how many arrived; `Err(WouldBlock)` when none.
    ///
    /// With offload, one read may bring a super-packet that becomes many packets; those that
    /// do not fit come first on the next call (the caller reads again while its batch comes
    /// back full, so none is left waiting for a readiness event).
    pub fn recv_batch(&self, batch: &mut PacketBatch) -> io::Result<usize> {
        let Some(vnet) = &self.vnet else {
            return self.recv_plain(batch);
        };
        let rx = &mut *vnet.borrow_mut();
        let mut n = self.cut_pending(rx, batch);
        while rx.pending.is_none() {
            let Some((i, slot)) = batch.next_read_buf() else {
                break;
            };
            let room = slot.len();
            let mut hdr = [0u8; vnet::HEADER_LEN];
            // A packet that fits the slot lands there (no copy); a larger one (a
            // super-packet) runs on into the buffer, after room for the slot's part.
            let over = rx.buf.get_mut(room..).unwrap_or_default();
            let mut iov = [
                IoSliceMut::new(&mut hdr),
                IoSliceMut::new(slot),
                IoSliceMut::new(over),
            ];
            let len = match self.dev.recv_vectored(&mut iov) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if n > 0 && e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return if n > 0 { Ok(n) } else { Err(e) },
            };
            let Some(h) = VnetHeader::parse(&hdr[..len.min(vnet::HEADER_LEN)]) else {
                bump(&self.stats.malformed, 1);
                continue;
            };
            let plen = len - vnet::HEADER_LEN;
            if plen >= room.max(rx.buf.len()) {
                // Filled every byte offered: possibly cut short by the kernel.
                bump(&self.stats.too_big, 1);
                continue;
            }
            if plen > room {
                // Join the slot's part and the rest in the buffer.
                rx.buf[..room].copy_from_slice(read_area(batch));
                self.plan_super_packet(rx, &h, plen, batch.room());
                n += self.cut_pending(rx, batch);
                continue;
            }
            let slot = &mut read_area(batch)[..plen];
            match vnet::prepare(&h, slot) {
                Ok(Plan::Single) => {
                    if h.flags & vnet::F_NEEDS_CSUM != 0 {
                        bump(&self.stats.checksums_completed, 1);
                    }
                    batch.commit_read(i, plen, None);
                    n += 1;
                }
                Ok(Plan::Segment(_)) => {
                    // A small super-packet (two short segments): cut it from the buffer.
                    match rx.buf.get_mut(..plen) {
                        Some(dst) => dst.copy_from_slice(slot),
                        None => {
                            bump(&self.stats.too_big, 1);
                            continue;
                        }
                    }
                    self.plan_super_packet(rx, &h, plen, batch.room());
                    n += self.cut_pending(rx, batch);
                }
                Err(e) => self.count(e),
            }
        }
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Reads without a virtio-net header: one `read` per slot.
    fn recv_plain(&self, batch: &mut PacketBatch) -> io::Result<usize> {
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

    fn count(&self, e: OffloadError) {
        match e {
            OffloadError::Malformed => bump(&self.stats.malformed, 1),
            OffloadError::Unsupported => bump(&self.stats.unsupported, 1),
        }
    }

    /// Checks the super-packet in `rx.buf[..len]` and sets it pending, or counts the drop.
    fn plan_super_packet(&self, rx: &mut VnetRx, h: &VnetHeader, len: usize, room: usize) {
        match vnet::prepare(h, &mut rx.buf[..len]) {
            Ok(Plan::Segment(gso)) if gso.max_segment_len() <= room => {
                bump(&self.stats.super_packets, 1);
                rx.pending = Some((gso, 0, len));
            }
            // A packet larger than a slot, or segments that are (gso_size above the MTU).
            Ok(_) => bump(&self.stats.too_big, 1),
            Err(e) => self.count(e),
        }
    }

    /// Writes the pending super-packet's next segments into free slots of `batch`.
    fn cut_pending(&self, rx: &mut VnetRx, batch: &mut PacketBatch) -> usize {
        let Some((gso, mut k, len)) = rx.pending else {
            return 0;
        };
        let mut n = 0;
        if gso.max_segment_len() > batch.room() {
            bump(&self.stats.too_big, 1);
            rx.pending = None;
            return 0;
        }
        while k < gso.count() {
            let Some(i) = batch.push_empty() else { break };
            let (slot, start, _) = batch.slot_buf_mut(i);
            // Cannot fail: the segment fits the room checked above. Should it, the slot is
            // left empty and the shard drops it as a runt.
            let seg = gso.write_segment(&rx.buf[..len], k, &mut slot[start..]);
            batch.set_bounds(i, start, seg.unwrap_or(0));
            k += 1;
            n += 1;
        }
        bump(&self.stats.segments, n as u64);
        rx.pending = (k < gso.count()).then_some((gso, k, len));
        n
    }

    /// Writes one IP packet into the kernel (it arrives as if received on the device).
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        if self.vnet.is_none() {
            return self.dev.send(packet);
        }
        let mut hdr = [0u8; vnet::HEADER_LEN];
        VnetHeader::PLAIN.emit(&mut hdr);
        let n = self
            .dev
            .send_vectored(&[IoSlice::new(&hdr), IoSlice::new(packet)])?;
        Ok(n.saturating_sub(vnet::HEADER_LEN))
    }

    /// Writes every packet of `batch` into the kernel and returns how many it refused. With
    /// offload, consecutive segments of one TCP flow go as one `GSO_TCPV4` write (GRO, see
    /// [`ikehub::wire::gro`]): the kernel's stack then handles one packet instead of dozens.
    /// Packet headers in `batch` may be rewritten.
    pub fn send_coalesced(&self, batch: &mut PacketBatch) -> u64 {
        let mut failed = 0u64;
        let mut i = 0;
        while i < batch.len() {
            let run = if self.vnet.is_some() {
                tcp_run(batch, i)
            } else {
                None
            };
            match run {
                Some(run) => {
                    failed += self.send_run(batch, i, &run);
                    i += run.count();
                }
                None => {
                    failed += u64::from(self.send(batch.packet(i)).is_err());
                    i += 1;
                }
            }
        }
        failed
    }

    /// Writes packets `i..i + run.count()` of `batch` as one super-packet; should the kernel
    /// refuse it, one by one as they were.
    fn send_run(&self, batch: &mut PacketBatch, i: usize, run: &Run) -> u64 {
        let hl = run.header_len();
        let mut saved = [0u8; 120]; // IPv4 (60) + TCP (60) headers at most
        saved[..hl].copy_from_slice(&batch.packet(i)[..hl]);
        let (slot, start, _) = batch.slot_buf_mut(i);
        let vh = run.finish(&mut slot[start..start + hl]);
        let mut hdr = [0u8; vnet::HEADER_LEN];
        vh.emit(&mut hdr);
        let mut iov = [IoSlice::new(&[]); MAX_RUN + 1];
        iov[0] = IoSlice::new(&hdr);
        iov[1] = IoSlice::new(batch.packet(i));
        for k in 1..run.count() {
            iov[k + 1] = IoSlice::new(&batch.packet(i + k)[hl..]);
        }
        if self.dev.send_vectored(&iov[..run.count() + 1]).is_ok() {
            return 0;
        }
        let (slot, start, _) = batch.slot_buf_mut(i);
        slot[start..start + hl].copy_from_slice(&saved[..hl]);
        (i..i + run.count())
            .map(|k| u64::from(self.send(batch.packet(k)).is_err()))
            .sum()
    }

    /// Writes packets `from..len()` of `batch`, one `write` each. Like `sendmmsg`: an error
    /// on the first packet is returned, an error later ends the call with the count so far;
    /// use [`send_all`](super::send_all) to skip refused packets.
    pub fn send_batch(&self, batch: &mut PacketBatch, from: usize) -> io::Result<usize> {
        let mut n = 0;
        for i in from..batch.len() {
            match self.send(batch.packet(i)) {
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
    use ikehub::wire::Ipv4Packet;
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
            queues_routes_and_traffic(false)
        });
    }

    /// The same with the virtio-net header: writes carry it, reads lose it, and the UDP
    /// checksums the kernel left partial (NEEDS_CSUM) come out complete.
    #[test]
    fn tun_queues_routes_and_traffic_both_ways_with_offload() {
        in_netns(
            "tun_queues_routes_and_traffic_both_ways_with_offload",
            || queues_routes_and_traffic(true),
        );
    }

    fn queues_routes_and_traffic(offload: bool) {
        {
            let name = "iktest0";
            let dev = TunDevice::create(&TunConfig {
                name: name.into(),
                mtu: 1400,
                queues: 2,
                address: Some((LOCAL, 32)),
                offload,
            })
            .unwrap();
            assert_eq!(dev.offload(), offload, "this kernel has TUN offloads");
            assert_eq!(dev.queues().len(), 2);
            assert!(dev.queues().iter().all(|q| q.offload() == offload));
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
                                assert!(udp_checksum_ok(p), "UDP checksum of {p:02x?}");
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
            // The socket left the UDP checksums to the device (NEEDS_CSUM): completed here.
            let completed: u64 = queues
                .iter()
                .map(|q| q.offload_stats().checksums_completed.get())
                .sum();
            if offload {
                assert!(completed >= 8, "{completed} checksums completed");
            } else {
                assert_eq!(completed, 0);
            }

            // Closing every queue removes the device and its routes. A child that another
            // test thread forks holds copies of our fds until its exec (close-on-exec), so the
            // last close may come a moment later: wait for it, bounded.
            drop(queues);
            let deadline = Instant::now() + Duration::from_secs(5);
            while interface_index(name).is_ok() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let gone = interface_index(name).unwrap_err();
            assert_eq!(gone.kind(), io::ErrorKind::NotFound, "{gone}");
            drop(guard); // routes already gone with the device: not an error
        }
    }

    /// UDP checksum over the pseudo-header, computed here independently of `wire`.
    fn udp_checksum_ok(p: &[u8]) -> bool {
        let udp = &p[20..];
        if udp[6..8] == [0, 0] {
            return true; // no checksum (RFC 768)
        }
        let mut pseudo = Vec::from(&p[12..20]);
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
        pseudo.extend_from_slice(udp);
        checksum(&pseudo) == 0
    }

    /// Five TCP segments of one flow to a closed port, written with `send_coalesced`: with
    /// offload the kernel takes them as one packet (one RST comes back, so the merged packet
    /// was valid, checksum included), without it as five (five RSTs).
    #[test]
    fn coalesced_tcp_write_is_one_packet_to_the_kernel() {
        in_netns("coalesced_tcp_write_is_one_packet_to_the_kernel", || {
            assert_eq!(
                rsts_for_five_segments(true),
                1,
                "offload: one merged packet"
            );
            assert_eq!(rsts_for_five_segments(false), 5, "no offload: five packets");
        });
    }

    fn rsts_for_five_segments(offload: bool) -> usize {
        let name = "iktest3";
        let dev = TunDevice::create(&TunConfig {
            name: name.into(),
            mtu: 1400,
            queues: 1,
            address: Some((LOCAL, 32)),
            offload,
        })
        .unwrap();
        let mut guard = RouteGuard::new().unwrap();
        guard
            .add(Ipv4Route::new(Ipv4Addr::new(203, 0, 113, 0), 24, name).with_src(LOCAL))
            .unwrap();
        let queues = dev.into_queues();
        let q = &queues[0];
        let mut out = PacketBatch::new(8, 2048, 0);
        for k in 0..5u32 {
            out.push(
                &tcp_segment(REMOTE, LOCAL, 1000 + k * 1000, k as u16, 1000),
                None,
            )
            .unwrap();
        }
        assert_eq!(q.send_coalesced(&mut out), 0, "the kernel took every write");
        // The RSTs (to 203.0.113.5, which routes back into the device); then a quiet spell
        // so that late ones are counted too.
        let mut rsts = 0;
        let mut quiet_since = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && (rsts == 0 || quiet_since.elapsed() < Duration::from_millis(300))
        {
            let mut b = PacketBatch::with_defaults();
            match q.recv_batch(&mut b) {
                Ok(_) => {
                    for (p, _) in b.iter() {
                        if p.len() >= 40 && p[9] == 6 && p[16..20] == REMOTE.octets() {
                            assert_eq!(p[33] & 0x04, 0x04, "a RST: {p:02x?}");
                            rsts += 1;
                            quiet_since = Instant::now();
                        }
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        drop(queues);
        drop(guard);
        rsts
    }

    /// IPv4/TCP (ACK, DF) from `src`:40000 to `dst`:9 with `len` payload bytes, checksums
    /// filled.
    fn tcp_segment(src: Ipv4Addr, dst: Ipv4Addr, seq: u32, id: u16, len: usize) -> Vec<u8> {
        let total = 40 + len;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&id.to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&src.octets());
        p[16..20].copy_from_slice(&dst.octets());
        let c = checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&9u16.to_be_bytes());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[28..32].copy_from_slice(&77u32.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = 0x10;
        p[34..36].copy_from_slice(&1000u16.to_be_bytes());
        for (i, b) in p[40..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let mut pseudo = Vec::from(&p[12..20]);
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&((total - 20) as u16).to_be_bytes());
        pseudo.extend_from_slice(&p[20..]);
        let c = checksum(&pseudo);
        p[36..38].copy_from_slice(&c.to_be_bytes());
        p
    }

    /// A UDP socket in the namespace sends one 10,000-byte `UDP_SEGMENT` (USO) write through
    /// the device; the queue that gets it hands over 10 datagrams of 1000 bytes with good
    /// checksums, a small batch at a time (the rest of the super-packet waits in the queue
    /// for the next call).
    #[test]
    fn uso_super_packet_is_cut_into_datagrams_across_calls() {
        in_netns(
            "uso_super_packet_is_cut_into_datagrams_across_calls",
            || {
                let name = "iktest2";
                let dev = TunDevice::create(&TunConfig {
                    name: name.into(),
                    mtu: 1400,
                    queues: 1,
                    address: Some((LOCAL, 32)),
                    offload: true,
                })
                .unwrap();
                let uso = dev.udp_offload();
                let mut guard = RouteGuard::new().unwrap();
                guard
                    .add(Ipv4Route::new(Ipv4Addr::new(203, 0, 113, 0), 24, name).with_src(LOCAL))
                    .unwrap();
                let queues = dev.into_queues();
                let q = &queues[0];

                let sock = std::net::UdpSocket::bind((LOCAL, 0)).unwrap();
                let seg: libc::c_int = 1000;
                // SAFETY: a valid socket fd and a c_int option value of the right size.
                let rc = unsafe {
                    libc::setsockopt(
                        sock.as_raw_fd(),
                        libc::SOL_UDP,
                        libc::UDP_SEGMENT,
                        (&seg as *const libc::c_int).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
                assert_eq!(rc, 0, "UDP_SEGMENT: {}", io::Error::last_os_error());
                let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
                sock.send_to(&data, (REMOTE, 1234)).unwrap();

                let mut got = Vec::new();
                let mut calls = Vec::new();
                let mut b = PacketBatch::new(4, 2048, 128);
                let deadline = Instant::now() + Duration::from_secs(5);
                while got.len() < data.len() && Instant::now() < deadline {
                    b.clear();
                    match q.recv_batch(&mut b) {
                        Ok(n) => {
                            let mut ours = 0;
                            for (p, _) in b.iter() {
                                if p.len() > 28 && p[9] == 17 && p[16..20] == REMOTE.octets() {
                                    assert_eq!(p.len(), 28 + 1000);
                                    assert!(Ipv4Packet::new_checked(p).unwrap().verify_checksum());
                                    assert!(udp_checksum_ok(p), "UDP checksum");
                                    got.extend_from_slice(&p[28..]);
                                    ours += 1;
                                }
                            }
                            calls.push((n, ours));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(2))
                        }
                        Err(e) => panic!("recv_batch: {e}"),
                    }
                }
                assert_eq!(got, data, "the datagrams carry the write in order");
                let s = q.offload_stats();
                eprintln!("USO {uso}: calls {calls:?}, stats {s:?}");
                if uso {
                    assert_eq!(s.super_packets.get(), 1, "one super-packet read");
                    assert_eq!(s.segments.get(), 10);
                    let ours: Vec<usize> = calls.iter().map(|c| c.1).filter(|&o| o > 0).collect();
                    // Other packets (IPv6 router solicitations) may share a call's 4 slots, so
                    // the split varies; 10 segments in 4 slots take at least 3 calls.
                    assert!(ours.len() >= 3 && ours.iter().all(|&o| o <= 4), "{calls:?}");
                }
                assert_eq!(
                    (s.malformed.get(), s.unsupported.get(), s.too_big.get()),
                    (0, 0, 0)
                );
                drop(queues);
                drop(guard);
            },
        );
    }

    #[test]
    fn zero_queues_refused() {
        let e = TunDevice::create(&TunConfig {
            name: "iktest1".into(),
            mtu: 1400,
            queues: 0,
            address: None,
            offload: true,
        })
        .unwrap_err();
        assert!(e.to_string().contains("0 queues"), "{e}");
    }
}

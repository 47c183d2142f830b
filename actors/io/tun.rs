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

/// Room for one read with offload: the largest super-packet and its header. An IPv4 one is
/// at most 64 KB; an IPv6 payload length may say 64 KB after the 40-byte fixed header.
const SUPER_PACKET_ROOM: usize = vnet::HEADER_LEN + ikehub::wire::ipv6::HEADER_LEN + 65536;

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
    /// Dropped: a GSO type the data plane does not carry (UFO), or an IPv6 super-packet with
    /// an extension header that segmentation cannot copy (Routing, Fragment, AH, ...).
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

    /// Counters of the offload read path (its drops are in the shard's counters).
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
    /// offload, consecutive segments of one TCP flow go as one `GSO_TCPV4` (`GSO_TCPV6`)
    /// write (GRO, see
    /// [`ikehub::wire::gro`]): the kernel's stack then handles one packet instead of dozens.
    /// Packet headers in `batch` may be rewritten. Empty packets are skipped (a receive batch
    /// written back in place holds its dropped packets as empty ones).
    pub fn send_coalesced(&self, batch: &mut PacketBatch) -> u64 {
        let mut failed = 0u64;
        let mut i = 0;
        while i < batch.len() {
            if batch.packet(i).is_empty() {
                i += 1;
                continue;
            }
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
        let mut saved = [0u8; 120]; // IPv4 (60) or IPv6 (40) + TCP (60) headers at most
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
mod tests;

#[cfg(test)]
mod tests_v6;

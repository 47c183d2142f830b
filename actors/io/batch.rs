//! A reusable arena of fixed-size packet buffers, shared by every receive and send path.
//!
//! One allocation at construction, none afterwards: the shard reads a batch from the TUN
//! queue, encapsulates each packet in place (the outer headers go into the headroom in front
//! of the packet, the ESP trailer and ICV into the tail room behind it), and hands the same
//! batch to `sendmmsg`. The `mmsghdr`/`iovec`/`sockaddr_storage` arrays that `recvmmsg` and
//! `sendmmsg` need live here too, so the syscall glue allocates nothing either.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use ikehub::wire::{Ipv4Packet, Ipv6Packet};

#[cfg(test)]
/// Packets per batch the shard uses unless told otherwise.
pub const DEFAULT_BATCH: usize = 64;
#[cfg(test)]
/// Bytes per slot (headroom included).
pub const DEFAULT_SLOT_SIZE: usize = 2048;
#[cfg(test)]
/// Room in front of each packet: outer IPv4 (20) + UDP (8) + AH (12 + 32 ICV) + ESP (8) + IV
/// (16) is 96 bytes, rounded up.
pub const DEFAULT_HEADROOM: usize = 128;

#[derive(Clone, Copy, Debug)]
struct Slot {
    /// Offset of the first packet byte inside the slot.
    start: usize,
    /// Packet length in bytes.
    len: usize,
    /// Source (after a receive) or destination (for a send) of the packet.
    addr: Option<SocketAddr>,
    /// The kernel had more bytes than the slot could hold (`MSG_TRUNC`).
    truncated: bool,
}

/// Scratch arrays for `recvmmsg`/`sendmmsg`. Their pointers are rewritten before every
/// syscall and only ever point into the owning [`PacketBatch`].
struct MmsgScratch {
    hdrs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
    names: Box<[libc::sockaddr_storage]>,
    /// One control message per `mmsghdr` (the `UDP_SEGMENT` size of a GSO send).
    ctrl: Box<[Cmsg]>,
    /// Packets carried by each `mmsghdr` of the last `sendmmsg` (more than one: GSO).
    packets: Box<[usize]>,
}

/// Room for one control message carrying an `int` or a `u16`, aligned for `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(super) struct Cmsg(pub(super) [u8; 32]);

/// `UDP_SEGMENT` (linux/udp.h): the segment size of a UDP GSO send, as a `u16` cmsg or a
/// socket option. The libc crate does not name it.
pub(super) const UDP_SEGMENT: libc::c_int = 103;
/// `UDP_GRO` (linux/udp.h): deliver coalesced datagrams with their segment size as an `int`
/// cmsg.
pub(super) const UDP_GRO: libc::c_int = 104;
/// Most segments one GSO send may carry (`UDP_MAX_SEGMENTS` of Linux 4.18 to 6.x; newer
/// kernels take 128).
pub(super) const MAX_GSO_SEGMENTS: usize = 64;
/// Most bytes of UDP payload one GSO send may carry: an IPv4 datagram's 65535 less the IPv4
/// and UDP headers.
pub(super) const MAX_GSO_BYTES: usize = 65535 - 20 - 8;

/// How many packets from `from` on form one GSO send (RFC 768 datagrams cut by the kernel):
/// packets to the same address, all of the first one's length except the last, which may be
/// shorter and ends the run, within [`MAX_GSO_SEGMENTS`] and [`MAX_GSO_BYTES`]. 1 means "send
/// it alone"; the grouping never reorders packets.
fn gso_run(slots: &[Slot], from: usize) -> usize {
    let first = slots[from];
    if first.addr.is_none() || first.len == 0 {
        return 1;
    }
    let mut n = 1;
    let mut bytes = first.len;
    for s in &slots[from + 1..] {
        if n == MAX_GSO_SEGMENTS
            || s.addr != first.addr
            || s.len == 0
            || s.len > first.len
            || bytes + s.len > MAX_GSO_BYTES
        {
            break;
        }
        n += 1;
        bytes += s.len;
        if s.len < first.len {
            break;
        }
    }
    n
}

/// K fixed-size packet buffers with per-packet offset, length and address.
///
/// Slots `0..len()` hold packets; receives append after them until the batch is full,
/// [`clear`](Self::clear) starts over without touching the memory.
pub struct PacketBatch {
    buf: Box<[u8]>,
    slot_size: usize,
    headroom: usize,
    slots: Box<[Slot]>,
    len: usize,
    scratch: MmsgScratch,
}

// SAFETY: the only non-Send fields are the raw pointers inside `scratch`, which point into
// this batch's own heap buffers, are rewritten before each syscall and never dereferenced
// by Rust code. Moving the batch to another thread moves those buffers with it.
unsafe impl Send for PacketBatch {}

impl PacketBatch {
    /// An arena of `count` slots of `slot_size` bytes, each keeping `headroom` bytes free in
    /// front of a received packet.
    ///
    /// # Panics
    /// If `count` is 0 or `headroom >= slot_size` (programming errors, not runtime input).
    pub fn new(count: usize, slot_size: usize, headroom: usize) -> Self {
        assert!(count > 0, "a packet batch needs at least one slot");
        assert!(
            headroom < slot_size,
            "headroom must leave room for a packet"
        );
        let empty = Slot {
            start: headroom,
            len: 0,
            addr: None,
            truncated: false,
        };
        // SAFETY: all-zero bytes are a valid value of these plain C structs.
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let zero_name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let zero_iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let zero_ctrl = Cmsg([0; 32]);
        Self {
            buf: vec![0u8; count * slot_size].into_boxed_slice(),
            slot_size,
            headroom,
            slots: vec![empty; count].into_boxed_slice(),
            len: 0,
            scratch: MmsgScratch {
                hdrs: vec![zero_hdr; count].into_boxed_slice(),
                iovs: vec![zero_iov; count].into_boxed_slice(),
                names: vec![zero_name; count].into_boxed_slice(),
                ctrl: vec![zero_ctrl; count].into_boxed_slice(),
                packets: vec![0; count].into_boxed_slice(),
            },
        }
    }

    #[cfg(test)]
    /// [`DEFAULT_BATCH`] slots of [`DEFAULT_SLOT_SIZE`] bytes with [`DEFAULT_HEADROOM`].
    pub fn with_defaults() -> Self {
        Self::new(DEFAULT_BATCH, DEFAULT_SLOT_SIZE, DEFAULT_HEADROOM)
    }

    /// Number of packets held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no packet is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when every slot holds a packet.
    pub fn is_full(&self) -> bool {
        self.len == self.slots.len()
    }

    /// Bytes kept free in front of each received packet.
    pub fn headroom(&self) -> usize {
        self.headroom
    }

    /// Largest packet a receive can place in a slot (`slot_size - headroom`).
    pub fn room(&self) -> usize {
        self.slot_size - self.headroom
    }

    /// Forgets every packet; memory is kept for the next round.
    pub fn clear(&mut self) {
        for slot in &mut self.slots[..self.len] {
            slot.start = self.headroom;
            slot.len = 0;
            slot.addr = None;
            slot.truncated = false;
        }
        self.len = 0;
    }

    /// Packet `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn packet(&self, i: usize) -> &[u8] {
        let s = self.slot(i);
        let base = i * self.slot_size;
        &self.buf[base + s.start..base + s.start + s.len]
    }

    /// Source (after a receive) or destination (before a UDP send) of packet `i`.
    pub fn addr(&self, i: usize) -> Option<SocketAddr> {
        self.slot(i).addr
    }

    /// Sets the address of packet `i` (the destination for [`UdpBatchSocket::send_batch`]).
    ///
    /// [`UdpBatchSocket::send_batch`]: super::UdpBatchSocket::send_batch
    pub fn set_addr(&mut self, i: usize, addr: Option<SocketAddr>) {
        self.slot_mut(i).addr = addr;
    }

    #[cfg(test)]
    /// Whether packet `i` was cut short because it did not fit the slot.
    pub fn is_truncated(&self, i: usize) -> bool {
        self.slot(i).truncated
    }

    #[cfg(test)]
    /// Offset of packet `i` inside its slot: how many bytes can still be prepended.
    pub fn front_room(&self, i: usize) -> usize {
        self.slot(i).start
    }

    #[cfg(test)]
    /// Bytes that can still be appended behind packet `i`.
    pub fn tail_room(&self, i: usize) -> usize {
        let s = self.slot(i);
        self.slot_size - s.start - s.len
    }

    /// The whole slot of packet `i` and the packet's `(start, len)` inside it, for code that
    /// rewrites a packet around itself (encapsulation writes headers before `start` and a
    /// trailer after `start + len`, then calls [`set_bounds`](Self::set_bounds)).
    pub fn slot_buf_mut(&mut self, i: usize) -> (&mut [u8], usize, usize) {
        let s = *self.slot(i);
        let base = i * self.slot_size;
        (&mut self.buf[base..base + self.slot_size], s.start, s.len)
    }

    /// The whole slots of packets `first..first + count`, one disjoint buffer each, so a batch
    /// of packets can be written at once (multi-buffer encryption).
    ///
    /// # Panics
    /// If the range is not within the claimed packets.
    pub fn slots_mut(&mut self, first: usize, count: usize) -> std::slice::ChunksExactMut<'_, u8> {
        assert!(first + count <= self.len, "slots beyond the batch");
        let ss = self.slot_size;
        self.buf[first * ss..(first + count) * ss].chunks_exact_mut(ss)
    }

    /// Free slots left.
    pub fn free_slots(&self) -> usize {
        self.slots.len() - self.len
    }

    /// Sets where packet `i` starts inside its slot and how long it is.
    ///
    /// # Panics
    /// If the range does not fit the slot.
    pub fn set_bounds(&mut self, i: usize, start: usize, len: usize) {
        assert!(
            start + len <= self.slot_size,
            "packet bounds exceed the slot"
        );
        let s = self.slot_mut(i);
        s.start = start;
        s.len = len;
    }

    #[cfg(test)]
    /// Grows packet `i` by `n` bytes at the front (into the headroom) and returns those bytes
    /// for the caller to fill; `None` when the headroom is too small.
    pub fn prepend(&mut self, i: usize, n: usize) -> Option<&mut [u8]> {
        let s = *self.slot(i);
        if n > s.start {
            return None;
        }
        let start = s.start - n;
        self.set_bounds(i, start, s.len + n);
        let base = i * self.slot_size;
        Some(&mut self.buf[base + start..base + start + n])
    }

    /// Grows packet `i` by `n` bytes at the end and returns them; `None` without tail room.
    pub fn append(&mut self, i: usize, n: usize) -> Option<&mut [u8]> {
        let s = *self.slot(i);
        if s.start + s.len + n > self.slot_size {
            return None;
        }
        self.set_bounds(i, s.start, s.len + n);
        let base = i * self.slot_size + s.start + s.len;
        Some(&mut self.buf[base..base + n])
    }

    #[cfg(test)]
    /// Drops `n` bytes from the front of packet `i` (e.g. the outer IP header after a raw
    /// receive); the freed bytes become headroom.
    pub fn advance(&mut self, i: usize, n: usize) {
        let s = *self.slot(i);
        let n = n.min(s.len);
        self.set_bounds(i, s.start + n, s.len - n);
    }

    #[cfg(test)]
    /// Shortens packet `i` to `len` bytes (no-op when already shorter).
    pub fn truncate(&mut self, i: usize, len: usize) {
        let s = self.slot_mut(i);
        s.len = s.len.min(len);
    }

    /// Copies `data` into the next free slot (after the headroom) with address `addr`.
    /// Returns the slot index, or `None` when the batch is full or `data` does not fit.
    pub fn push(&mut self, data: &[u8], addr: Option<SocketAddr>) -> Option<usize> {
        let i = self.push_empty()?;
        match self.append(i, data.len()) {
            Some(dst) => dst.copy_from_slice(data),
            None => {
                self.len -= 1;
                return None;
            }
        }
        self.set_addr(i, addr);
        Some(i)
    }

    /// Copies one received datagram (a segment of a coalesced GRO read) into the next free
    /// slot after the headroom, cut to the slot's room and marked truncated like a
    /// `recvmmsg` would. `false` when the batch is full.
    pub(super) fn push_received(&mut self, data: &[u8], addr: Option<SocketAddr>) -> bool {
        let Some((i, room)) = self.next_read_buf() else {
            return false;
        };
        let n = data.len().min(room.len());
        room[..n].copy_from_slice(&data[..n]);
        self.commit_read(i, data.len(), addr);
        true
    }

    /// Claims the next free slot as an empty packet starting after the headroom; fill it with
    /// [`append`](Self::append) or [`slot_buf_mut`](Self::slot_buf_mut) +
    /// [`set_bounds`](Self::set_bounds). `None` when full.
    pub fn push_empty(&mut self) -> Option<usize> {
        if self.is_full() {
            return None;
        }
        let i = self.len;
        self.slots[i] = Slot {
            start: self.headroom,
            len: 0,
            addr: None,
            truncated: false,
        };
        self.len += 1;
        Some(i)
    }

    /// Gives back the last slot (a packet claimed with [`push_empty`](Self::push_empty) that
    /// turned out not to be sent).
    pub fn pop(&mut self) {
        self.len = self.len.saturating_sub(1);
    }

    /// Keeps only the packets for which `keep` returns true, preserving their order (packets
    /// of one SA must never be reordered). Moves slot descriptors only when needed and copies
    /// packet bytes only for packets that move to an earlier slot.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8], Option<SocketAddr>) -> bool) {
        let mut w = 0;
        for r in 0..self.len {
            if keep(self.packet(r), self.addr(r)) {
                if w != r {
                    let s = self.slots[r];
                    let (src, dst) = (r * self.slot_size, w * self.slot_size);
                    self.buf
                        .copy_within(src + s.start..src + s.start + s.len, dst + s.start);
                    self.slots[w] = s;
                }
                w += 1;
            }
        }
        self.len = w;
    }

    #[cfg(test)]
    /// Iterates over `(packet, addr)` of the packets held.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Option<SocketAddr>)> + '_ {
        (0..self.len).map(|i| (self.packet(i), self.addr(i)))
    }

    fn slot(&self, i: usize) -> &Slot {
        assert!(
            i < self.len,
            "packet index {i} out of range (len {})",
            self.len
        );
        &self.slots[i]
    }

    fn slot_mut(&mut self, i: usize) -> &mut Slot {
        assert!(
            i < self.len,
            "packet index {i} out of range (len {})",
            self.len
        );
        &mut self.slots[i]
    }

    /// Buffer of the next free slot for a single-packet read (TUN): `(slot index, room)`.
    /// The read is committed with [`commit_read`](Self::commit_read).
    pub(super) fn next_read_buf(&mut self) -> Option<(usize, &mut [u8])> {
        if self.is_full() {
            return None;
        }
        let i = self.len;
        let base = i * self.slot_size;
        Some((
            i,
            &mut self.buf[base + self.headroom..base + self.slot_size],
        ))
    }

    /// Commits a single-packet read of `len` bytes into slot `i` returned by
    /// [`next_read_buf`](Self::next_read_buf).
    pub(super) fn commit_read(&mut self, i: usize, len: usize, addr: Option<SocketAddr>) {
        debug_assert_eq!(i, self.len);
        self.slots[i] = Slot {
            start: self.headroom,
            len: len.min(self.room()),
            addr,
            truncated: len > self.room(),
        };
        self.len += 1;
    }

    /// `recvmmsg` into the free slots; appends and returns how many datagrams arrived.
    /// `Err(WouldBlock)` when nothing was waiting.
    pub(super) fn recvmmsg(&mut self, fd: libc::c_int) -> io::Result<usize> {
        let free = self.slots.len() - self.len;
        if free == 0 {
            return Ok(0);
        }
        let room = self.room();
        for k in 0..free {
            let i = self.len + k;
            let base = i * self.slot_size + self.headroom;
            self.scratch.iovs[k] = libc::iovec {
                // SAFETY: `base + room` is within `buf` (slot i exists).
                iov_base: unsafe { self.buf.as_mut_ptr().add(base) }.cast(),
                iov_len: room,
            };
            let hdr = &mut self.scratch.hdrs[k];
            hdr.msg_len = 0;
            hdr.msg_hdr.msg_name =
                (&mut self.scratch.names[k] as *mut libc::sockaddr_storage).cast();
            hdr.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_iov = &mut self.scratch.iovs[k];
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = std::ptr::null_mut();
            hdr.msg_hdr.msg_controllen = 0;
            hdr.msg_hdr.msg_flags = 0;
        }
        // SAFETY: `hdrs[..free]` are initialised above and point into live buffers of self.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.scratch.hdrs.as_mut_ptr(),
                free as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for k in 0..n {
            let hdr = &self.scratch.hdrs[k];
            let addr = sockaddr_to_std(&self.scratch.names[k], hdr.msg_hdr.msg_namelen);
            let len = hdr.msg_len as usize;
            let truncated = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.slots[self.len + k] = Slot {
                start: self.headroom,
                len: len.min(room),
                addr,
                truncated,
            };
        }
        self.len += n;
        Ok(n)
    }

    /// `sendmmsg` of packets `from..len()`; returns how many packets the kernel took (see
    /// [`send_all`] for the partial-failure rules). The destination of each packet is its
    /// slot address, or with `Dest::Ipv4HeaderDst` the destination field of its IPv4 header.
    ///
    /// With `gso`, each run of packets [`gso_run`] finds goes out as one `mmsghdr` whose
    /// iovecs are the packets' slots and whose `UDP_SEGMENT` cmsg is the run's packet size: the
    /// kernel cuts it into the same datagrams, after one pass through the stack. The
    /// [`GsoSent`] says whether the first `mmsghdr` was such a GSO send (then an error may be
    /// GSO's) and how many GSO sends the kernel took.
    pub(super) fn sendmmsg(
        &mut self,
        fd: libc::c_int,
        from: usize,
        dest: Dest,
        gso: bool,
    ) -> (io::Result<usize>, GsoSent) {
        if from >= self.len {
            return (Ok(0), GsoSent::default());
        }
        let mut i = from;
        let mut m = 0;
        while i < self.len {
            let run = if gso && dest == Dest::SlotAddr {
                gso_run(&self.slots[..self.len], i)
            } else {
                1
            };
            for k in 0..run {
                let s = self.slots[i + k];
                let base = (i + k) * self.slot_size + s.start;
                self.scratch.iovs[i - from + k] = libc::iovec {
                    // SAFETY: the packet lies within slot i + k of `buf`.
                    iov_base: unsafe { self.buf.as_mut_ptr().add(base) }.cast(),
                    iov_len: s.len,
                };
            }
            let s = self.slots[i];
            let addr = match dest {
                Dest::SlotAddr => s.addr,
                Dest::Ipv4HeaderDst => {
                    let base = i * self.slot_size + s.start;
                    Ipv4Packet::new_checked(&self.buf[base..base + s.len])
                        .ok()
                        .map(|p| SocketAddr::V4(SocketAddrV4::new(p.dst_addr(), 0)))
                }
                Dest::Ipv6HeaderDst => {
                    let base = i * self.slot_size + s.start;
                    Ipv6Packet::new_checked(&self.buf[base..base + s.len])
                        .ok()
                        .map(|p| SocketAddr::V6(SocketAddrV6::new(p.dst_addr(), 0, 0, 0)))
                }
            };
            let namelen = match addr {
                Some(a) => std_to_sockaddr(a, &mut self.scratch.names[m]),
                None => 0,
            };
            let (control, controllen) = if run > 1 {
                let ctrl = &mut self.scratch.ctrl[m];
                let len = write_cmsg(
                    ctrl,
                    libc::SOL_UDP,
                    UDP_SEGMENT,
                    &(s.len as u16).to_ne_bytes(),
                );
                ((ctrl as *mut Cmsg).cast(), len)
            } else {
                (std::ptr::null_mut(), 0)
            };
            let hdr = &mut self.scratch.hdrs[m];
            hdr.msg_len = 0;
            hdr.msg_hdr.msg_name = if namelen == 0 {
                std::ptr::null_mut()
            } else {
                (&mut self.scratch.names[m] as *mut libc::sockaddr_storage).cast()
            };
            hdr.msg_hdr.msg_namelen = namelen;
            hdr.msg_hdr.msg_iov = &mut self.scratch.iovs[i - from];
            hdr.msg_hdr.msg_iovlen = run;
            hdr.msg_hdr.msg_control = control;
            hdr.msg_hdr.msg_controllen = controllen;
            hdr.msg_hdr.msg_flags = 0;
            self.scratch.packets[m] = run;
            m += 1;
            i += run;
        }
        let mut gso = GsoSent {
            first: self.scratch.packets[0] > 1,
            sends: 0,
        };
        // SAFETY: `hdrs[..m]` are initialised above and point into live buffers of self.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                self.scratch.hdrs.as_mut_ptr(),
                m as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            (Err(io::Error::last_os_error()), gso)
        } else {
            let done = &self.scratch.packets[..n as usize];
            gso.sends = done.iter().filter(|p| **p > 1).count();
            (Ok(done.iter().sum()), gso)
        }
    }
}

/// What the GSO grouping of one `sendmmsg` did.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct GsoSent {
    /// The first `mmsghdr` carried several packets.
    pub first: bool,
    /// `mmsghdr`s of several packets the kernel took.
    pub sends: usize,
}

/// Writes one control message (`level`, `kind`, `data`) into `ctrl`; returns its space, the
/// `msg_controllen` to pass.
pub(super) fn write_cmsg(
    ctrl: &mut Cmsg,
    level: libc::c_int,
    kind: libc::c_int,
    data: &[u8],
) -> usize {
    // SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic.
    let (space, len) = unsafe {
        (
            libc::CMSG_SPACE(data.len() as u32) as usize,
            libc::CMSG_LEN(data.len() as u32) as usize,
        )
    };
    assert!(
        space <= ctrl.0.len(),
        "control message larger than its buffer"
    );
    ctrl.0 = [0; 32];
    let hdr = libc::cmsghdr {
        cmsg_len: len as _,
        cmsg_level: level,
        cmsg_type: kind,
    };
    let at = size_of::<libc::cmsghdr>();
    // SAFETY: `ctrl` is 8-aligned and holds at least `space` bytes; cmsghdr is plain data.
    unsafe { std::ptr::write(ctrl.0.as_mut_ptr().cast::<libc::cmsghdr>(), hdr) };
    // CMSG_DATA is right after the (aligned) header on Linux.
    ctrl.0[at..at + data.len()].copy_from_slice(data);
    space
}

/// Where `sendmmsg` takes each packet's destination from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dest {
    /// The slot's address ([`PacketBatch::set_addr`]).
    SlotAddr,
    /// Bytes 16..20 of the packet (a complete IPv4 packet for an `IPPROTO_RAW` socket).
    Ipv4HeaderDst,
    /// Bytes 24..40 of the packet (a complete IPv6 packet for an `AF_INET6` `IPPROTO_RAW`
    /// socket, which routes by the socket address, not by the header).
    Ipv6HeaderDst,
}

/// A sink that takes packets `from..len()` of a batch and reports how many it took.
pub trait BatchSend {
    /// Sends packets `from..batch.len()` in as few syscalls as the fd allows and returns
    /// how many were taken. Like `sendmmsg`, an error on the first packet is returned as
    /// `Err`, an error on a later one ends the call early with `Ok(count before it)`.
    fn send_from(&self, batch: &mut PacketBatch, from: usize) -> io::Result<usize>;
}

/// Sends packets `*cursor..batch.len()` through `sink`, advancing `*cursor`.
///
/// A packet the kernel refuses for itself (EMSGSIZE, ENETUNREACH, EINVAL, ...) is reported
/// to `on_drop(index, &error)` and skipped, so one bad packet never stalls the batch.
/// Returns `Ok(())` when everything was handled, `Err(WouldBlock)` when the fd is full
/// (wait for writability and call again with the same cursor), or another error only for
/// fd-level failures (EBADF, ENOTSOCK, EFAULT).
pub fn send_all<S: BatchSend + ?Sized>(
    sink: &S,
    batch: &mut PacketBatch,
    cursor: &mut usize,
    mut on_drop: impl FnMut(usize, &io::Error),
) -> io::Result<()> {
    while *cursor < batch.len() {
        match sink.send_from(batch, *cursor) {
            Ok(0) => return Err(io::ErrorKind::WouldBlock.into()),
            Ok(n) => *cursor += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_fd_error(&e) => return Err(e),
            Err(e) => {
                on_drop(*cursor, &e);
                *cursor += 1;
            }
        }
    }
    Ok(())
}

fn is_fd_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADF | libc::ENOTSOCK | libc::EFAULT | libc::EBADFD)
    )
}

/// Converts a kernel socket address into a std one (no allocation).
pub(super) fn sockaddr_to_std(
    ss: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: family and length say this is a sockaddr_in.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: family and length say this is a sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                sin6.sin6_addr.s6_addr.into(),
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `addr` into `ss` and returns the length to pass to the kernel.
pub(super) fn std_to_sockaddr(
    addr: SocketAddr,
    ss: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin =
                unsafe { &mut *(ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            };
            sin.sin_zero = [0; 8];
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 =
                unsafe { &mut *(ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo().to_be();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl PacketBatch {
        /// Address of the arena, to check that nothing reallocated it.
        pub(crate) fn packet_ptr_for_test(&self) -> *const u8 {
            self.buf.as_ptr()
        }
    }

    #[test]
    fn push_prepend_append_advance() {
        let mut b = PacketBatch::new(4, 256, 32);
        let a: SocketAddr = "192.0.2.1:4500".parse().unwrap();
        let i = b.push(b"hello", Some(a)).unwrap();
        assert_eq!(b.packet(i), b"hello");
        assert_eq!(b.addr(i), Some(a));
        assert_eq!(b.front_room(i), 32);
        b.prepend(i, 4).unwrap().copy_from_slice(b"ESP:");
        b.append(i, 2).unwrap().copy_from_slice(b"!!");
        assert_eq!(b.packet(i), b"ESP:hello!!");
        assert!(b.prepend(i, 29).is_none());
        assert!(b.append(i, 256).is_none());
        b.advance(i, 4);
        b.truncate(i, 5);
        assert_eq!(b.packet(i), b"hello");
        assert_eq!(b.front_room(i), 32);
        assert_eq!(b.tail_room(i), 256 - 32 - 5);
    }

    #[test]
    fn reuse_without_allocation_and_retain_keeps_order() {
        let mut b = PacketBatch::new(8, 128, 16);
        let base = b.buf.as_ptr();
        for round in 0..100u8 {
            for k in 0..8u8 {
                assert!(b.push(&[round, k, k], None).is_some());
            }
            assert!(b.is_full());
            assert!(b.push(b"x", None).is_none());
            b.retain(|p, _| p[1] % 3 != 0);
            let kept: Vec<u8> = b.iter().map(|(p, _)| p[1]).collect();
            assert_eq!(kept, vec![1, 2, 4, 5, 7]);
            assert!(b.iter().all(|(p, _)| p[0] == round && p[1] == p[2]));
            b.clear();
            assert!(b.is_empty());
        }
        // The arena never moved: no reallocation happened across the rounds.
        assert_eq!(b.buf.as_ptr(), base);
        assert!(b.push(&[0u8; 113], None).is_none(), "larger than the room");
        assert!(b.is_empty(), "a failed push leaves no slot behind");
    }

    /// GSO runs: equal sizes to one address, a shorter last one closes the run, a longer one
    /// or another address starts a new one, and the segment and byte limits hold.
    #[test]
    fn gso_runs_group_equal_sizes_to_one_peer() {
        let a: SocketAddr = "192.0.2.2:4500".parse().unwrap();
        let b: SocketAddr = "192.0.2.3:4500".parse().unwrap();
        let runs = |packets: &[(usize, SocketAddr)]| {
            let mut batch = PacketBatch::new(256, 2048, 0);
            for &(len, addr) in packets {
                batch.push(&vec![1u8; len], Some(addr)).unwrap();
            }
            let slots = &batch.slots[..batch.len()];
            let mut out = Vec::new();
            let mut i = 0;
            while i < slots.len() {
                let n = gso_run(slots, i);
                out.push(n);
                i += n;
            }
            out
        };
        let p = |n: usize, len: usize, addr: SocketAddr| vec![(len, addr); n];
        assert_eq!(
            runs(&[p(5, 1400, a), p(1, 900, a), p(2, 1400, a)].concat()),
            [6, 2]
        );
        assert_eq!(
            runs(&[p(3, 1400, a), p(3, 1400, b), p(1, 1500, b)].concat()),
            [3, 3, 1]
        );
        assert_eq!(runs(&[p(2, 100, a), p(2, 200, a)].concat()), [2, 2]);
        // 46 x 1400 = 64400 fits a datagram, a 47th does not.
        assert_eq!(runs(&p(100, 1400, a)), [46, 46, 8]);
        assert_eq!(runs(&p(130, 100, a)), [64, 64, 2]);
        assert_eq!(runs(&[(0, a), (0, a)]), [1, 1]);
    }

    #[test]
    fn sockaddr_round_trip() {
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        for a in ["203.0.113.9:500", "[2001:db8::1]:4500"] {
            let a: SocketAddr = a.parse().unwrap();
            let len = std_to_sockaddr(a, &mut ss);
            assert_eq!(sockaddr_to_std(&ss, len), Some(a));
        }
    }
}

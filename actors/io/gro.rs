//! UDP GRO receive (`UDP_GRO`, Linux 5.0): the kernel hands over runs of datagrams of one flow
//! as one coalesced buffer plus the segment size, so a burst of ESP-in-UDP crosses the socket
//! layer once per run instead of once per packet. Here the coalesced buffers are read into a
//! private arena with one `recvmmsg` and cut back into the caller's [`PacketBatch`], one
//! datagram per slot, as `recvmmsg` without GRO would have delivered them.
//!
//! A run can hold more datagrams than the batch has free slots: the rest stays here and is
//! delivered first by the next read, so the caller's "read until the batch is not full" loop
//! never leaves datagrams behind.

use std::io;
use std::net::SocketAddr;

use super::batch::{Cmsg, PacketBatch, UDP_GRO, sockaddr_to_std};

/// Coalesced buffers read per `recvmmsg`: each can hold up to 64 datagrams, so four fill a
/// receive batch several times over while keeping the arena at 256 KiB.
pub(super) const GRO_MESSAGES: usize = 4;
/// Room for one coalesced buffer: the largest UDP payload (the kernel coalesces up to 64 KiB).
const GRO_ROOM: usize = 1 << 16;

#[derive(Clone, Copy, Debug, Default)]
struct Held {
    len: usize,
    /// Segment size: every datagram of the buffer is this long except the last.
    stride: usize,
    addr: Option<SocketAddr>,
}

/// The arena and the `recvmmsg` scratch of a GRO socket, and what is left of its last read.
pub(super) struct GroRx {
    buf: Box<[u8]>,
    hdrs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
    names: Box<[libc::sockaddr_storage]>,
    ctrl: Box<[Cmsg]>,
    held: [Held; GRO_MESSAGES],
    /// Buffers held from the last read, the one being cut and the bytes of it already cut.
    count: usize,
    next: usize,
    offset: usize,
    /// Coalesced buffers and datagrams read so far (tests check that GRO coalesced).
    #[cfg(test)]
    pub(super) read: (usize, usize),
}

// SAFETY: the raw pointers in `hdrs`/`iovs` point into this struct's own heap buffers, are
// rewritten before each syscall and never dereferenced by Rust code; moving the struct to
// another thread moves those buffers with it.
unsafe impl Send for GroRx {}

impl std::fmt::Debug for GroRx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroRx")
            .field("held", &&self.held[self.next.min(self.count)..self.count])
            .field("offset", &self.offset)
            .finish()
    }
}

impl GroRx {
    pub(super) fn new() -> Self {
        // SAFETY: all-zero bytes are a valid value of these plain C structs.
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let zero_name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let zero_iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        GroRx {
            buf: vec![0u8; GRO_MESSAGES * GRO_ROOM].into_boxed_slice(),
            hdrs: vec![zero_hdr; GRO_MESSAGES].into_boxed_slice(),
            iovs: vec![zero_iov; GRO_MESSAGES].into_boxed_slice(),
            names: vec![zero_name; GRO_MESSAGES].into_boxed_slice(),
            ctrl: vec![Cmsg([0; 32]); GRO_MESSAGES].into_boxed_slice(),
            held: [Held::default(); GRO_MESSAGES],
            count: 0,
            next: 0,
            offset: 0,
            #[cfg(test)]
            read: (0, 0),
        }
    }

    /// Reads into `batch`: first what is left of the last read, then new coalesced buffers
    /// until the batch is full or the socket is empty. Same contract as
    /// [`PacketBatch::recvmmsg`]: `Err(WouldBlock)` only when nothing was delivered.
    pub(super) fn recv(&mut self, fd: libc::c_int, batch: &mut PacketBatch) -> io::Result<usize> {
        let mut n = 0;
        loop {
            n += self.split_into(batch);
            if batch.is_full() {
                return Ok(n);
            }
            let got = match self.recvmmsg(fd) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return if n > 0 { Ok(n) } else { Err(e) },
            };
            if got < GRO_MESSAGES {
                // The queue was empty when the kernel returned: nothing more to wait for.
                return Ok(n + self.split_into(batch));
            }
        }
    }

    /// Cuts the held buffers into `batch`, one datagram per slot, until either runs out.
    fn split_into(&mut self, batch: &mut PacketBatch) -> usize {
        let mut n = 0;
        while self.next < self.count {
            let h = self.held[self.next];
            let base = self.next * GRO_ROOM;
            while self.offset < h.len {
                let seg = (h.len - self.offset).min(h.stride);
                let at = base + self.offset;
                if !batch.push_received(&self.buf[at..at + seg], h.addr) {
                    return n;
                }
                n += 1;
                self.offset += seg;
            }
            self.next += 1;
            self.offset = 0;
        }
        n
    }

    fn recvmmsg(&mut self, fd: libc::c_int) -> io::Result<usize> {
        for k in 0..GRO_MESSAGES {
            self.iovs[k] = libc::iovec {
                // SAFETY: buffer k lies within `buf`.
                iov_base: unsafe { self.buf.as_mut_ptr().add(k * GRO_ROOM) }.cast(),
                iov_len: GRO_ROOM,
            };
            let hdr = &mut self.hdrs[k];
            hdr.msg_len = 0;
            hdr.msg_hdr.msg_name = (&mut self.names[k] as *mut libc::sockaddr_storage).cast();
            hdr.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_iov = &mut self.iovs[k];
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = (&mut self.ctrl[k] as *mut Cmsg).cast();
            hdr.msg_hdr.msg_controllen = size_of::<Cmsg>();
            hdr.msg_hdr.msg_flags = 0;
        }
        // SAFETY: `hdrs` are initialised above and point into live buffers of self.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                GRO_MESSAGES as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = got as usize;
        for k in 0..got {
            let hdr = &self.hdrs[k];
            let len = (hdr.msg_len as usize).min(GRO_ROOM);
            let stride = gro_segment_size(&hdr.msg_hdr)
                .filter(|s| *s > 0)
                .unwrap_or(len);
            self.held[k] = Held {
                len,
                stride: stride.max(1),
                addr: sockaddr_to_std(&self.names[k], hdr.msg_hdr.msg_namelen),
            };
        }
        #[cfg(test)]
        {
            self.read.0 += got;
            self.read.1 += self.held[..got]
                .iter()
                .map(|h| h.len.div_ceil(h.stride))
                .sum::<usize>();
        }
        self.count = got;
        self.next = 0;
        self.offset = 0;
        Ok(got)
    }
}

/// The `UDP_GRO` segment size of a received message, if the kernel coalesced it.
fn gro_segment_size(msg: &libc::msghdr) -> Option<usize> {
    // SAFETY: `msg` is a msghdr the kernel just filled; CMSG_FIRSTHDR/CMSG_NXTHDR stay within
    // `msg_control[..msg_controllen]`, and a cmsg of type UDP_GRO carries an int.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                return usize::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A coalesced buffer of `count` datagrams of `stride` bytes, the last `last` bytes long,
    /// datagram k filled with byte k.
    fn hold(gro: &mut GroRx, slot: usize, stride: usize, count: usize, last: usize) -> Held {
        let mut len = 0;
        for k in 0..count {
            let seg = if k + 1 == count { last } else { stride };
            let at = slot * GRO_ROOM + len;
            gro.buf[at..at + seg].fill(k as u8);
            len += seg;
        }
        let h = Held {
            len,
            stride,
            addr: Some("192.0.2.2:4500".parse().unwrap()),
        };
        gro.held[slot] = h;
        h
    }

    /// Two coalesced buffers (46 x 1400 B ending in 1000 B, then 3 x 200 B) are cut into
    /// 1-datagram slots in order across three batches of 20, with nothing lost or repeated.
    #[test]
    fn coalesced_buffers_are_cut_by_segment_size_across_batches() {
        let mut gro = GroRx::new();
        hold(&mut gro, 0, 1400, 46, 1000);
        hold(&mut gro, 1, 200, 3, 200);
        gro.count = 2;
        let mut got: Vec<(usize, u8)> = Vec::new();
        let mut batch = PacketBatch::new(20, 2048, 64);
        for round in 0..3 {
            batch.clear();
            let n = gro.split_into(&mut batch);
            assert_eq!(n, batch.len());
            assert_eq!(batch.is_full(), round < 2, "round {round}");
            for (p, addr) in batch.iter() {
                assert!(p.iter().all(|b| *b == p[0]), "one datagram per slot");
                assert_eq!(addr, Some("192.0.2.2:4500".parse().unwrap()));
                got.push((p.len(), p[0]));
            }
        }
        let mut want: Vec<(usize, u8)> = (0..45).map(|k| (1400, k as u8)).collect();
        want.push((1000, 45));
        want.extend((0..3).map(|k| (200, k as u8)));
        assert_eq!(got, want);
        batch.clear();
        assert_eq!(gro.split_into(&mut batch), 0, "all delivered");
    }

    /// A buffer the kernel did not coalesce (stride = its length) is one datagram; a datagram
    /// larger than a slot is cut and marked truncated, as recvmmsg would.
    #[test]
    fn single_and_oversized_datagrams() {
        let mut gro = GroRx::new();
        hold(&mut gro, 0, 300, 1, 300);
        hold(&mut gro, 1, 3000, 1, 3000);
        gro.count = 2;
        let mut batch = PacketBatch::new(4, 2048, 64);
        assert_eq!(gro.split_into(&mut batch), 2);
        assert_eq!(batch.packet(0).len(), 300);
        assert!(!batch.is_truncated(0));
        assert_eq!(batch.packet(1).len(), 2048 - 64);
        assert!(batch.is_truncated(1));
    }
}

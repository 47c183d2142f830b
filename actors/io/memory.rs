//! An in-memory cleartext interface: one end of a `socketpair(AF_UNIX, SOCK_DGRAM)` standing in
//! for a TUN queue, so the demo (and tests) drive the real shards without root. Each datagram is
//! one IP packet, as on a TUN queue.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;

use super::batch::PacketBatch;

/// One end of an in-memory cleartext link.
pub struct MemoryPort {
    sock: UnixDatagram,
}

impl MemoryPort {
    /// Two connected, non-blocking ends: give one to a shard, keep the other as the "LAN".
    pub fn pair() -> io::Result<(MemoryPort, MemoryPort)> {
        let (a, b) = UnixDatagram::pair()?;
        for s in [&a, &b] {
            s.set_nonblocking(true)?;
            let size: libc::c_int = 4 << 20;
            // SAFETY: plain setsockopt with a pointer to a local c_int.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_SNDBUF,
                    (&size as *const libc::c_int).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        Ok((MemoryPort { sock: a }, MemoryPort { sock: b }))
    }

    /// Writes one packet; `WouldBlock` when the other end is not reading fast enough.
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        self.sock.send(packet)
    }

    /// Reads one packet.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.recv(buf)
    }

    /// Reads packets into the free slots of `batch` until it is full or nothing is waiting.
    pub fn recv_batch(&self, batch: &mut PacketBatch) -> io::Result<usize> {
        let mut n = 0;
        while let Some((i, buf)) = batch.next_read_buf() {
            match self.sock.recv(buf) {
                Ok(len) => {
                    batch.commit_read(i, len, None);
                    n += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return if n > 0 { Ok(n) } else { Err(e) },
            }
        }
        Ok(n)
    }
}

impl AsRawFd for MemoryPort {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_cross_in_order_and_batch_reads_stop_when_empty() {
        let (a, b) = MemoryPort::pair().unwrap();
        for i in 0..5u8 {
            a.send(&[0x45, i]).unwrap();
        }
        let mut batch = PacketBatch::new(8, 256, 16);
        assert_eq!(b.recv_batch(&mut batch).unwrap(), 5);
        for i in 0..5 {
            assert_eq!(batch.packet(i), &[0x45, i as u8]);
        }
        assert_eq!(
            b.recv_batch(&mut batch).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }
}

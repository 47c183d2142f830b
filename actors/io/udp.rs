//! Batched UDP sockets for IKE (500) and ESP-in-UDP (RFC 3948, 4500).
//!
//! With offloads on, a run of equal-size datagrams to one peer leaves as one `UDP_SEGMENT`
//! (GSO) send inside the `sendmmsg` batch and bursts arrive coalesced (`UDP_GRO`, see
//! [`super::gro`]): the kernel's per-packet cost is paid once per run. On the wire they are
//! ordinary datagrams. A kernel that refuses either option runs without it (logged once).
//!
//! Each shard owns one socket of a `SO_REUSEPORT` group on the same address and port; a
//! reuseport cBPF program ([`UdpBatchSocket::steer_by_spi`]) sends IKE to socket 0 and ESP
//! to the socket of the shard that owns the SPI.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::batch::{BatchSend, Dest, PacketBatch, UDP_GRO, UDP_SEGMENT};
use super::bpf;
use super::gro::GroRx;

/// Path-MTU discovery mode of a socket (`IP_MTU_DISCOVER`, ip(7)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmtuDisc {
    /// Never set DF; the kernel fragments (`IP_PMTUDISC_DONT`).
    Dont,
    /// Always set DF; datagrams larger than the known path MTU fail with EMSGSIZE
    /// (`IP_PMTUDISC_DO`). Only the tests need it (the shards always let the kernel fragment).
    #[cfg(test)]
    Do,
}

impl PmtuDisc {
    /// The option value for a socket of `family`'s (ip(7), ipv6(7)).
    fn raw(self, ipv6: bool) -> libc::c_int {
        match (self, ipv6) {
            (PmtuDisc::Dont, false) => libc::IP_PMTUDISC_DONT,
            (PmtuDisc::Dont, true) => libc::IPV6_PMTUDISC_DONT,
            #[cfg(test)]
            (PmtuDisc::Do, false) => libc::IP_PMTUDISC_DO,
            #[cfg(test)]
            (PmtuDisc::Do, true) => libc::IPV6_PMTUDISC_DO,
        }
    }
}

/// Options for [`UdpBatchSocket::bind`].
#[derive(Clone, Debug, Default)]
pub struct UdpOptions {
    /// Join a `SO_REUSEPORT` group (one socket per shard on the same address and port).
    pub reuse_port: bool,
    /// Bind to this device (`SO_BINDTODEVICE`, needs CAP_NET_RAW).
    pub device: Option<String>,
    /// `IP_MTU_DISCOVER` (IPv4) or `IPV6_MTU_DISCOVER` (IPv6).
    pub pmtu: Option<PmtuDisc>,
    /// `SO_RCVBUF` in bytes (the kernel doubles it).
    pub recv_buffer: Option<usize>,
    /// `SO_SNDBUF` in bytes (the kernel doubles it).
    pub send_buffer: Option<usize>,
    /// UDP GSO on send and GRO on receive (`[tunnel-device] offload`), where the kernel has
    /// them.
    pub offload: bool,
}

static GSO_REFUSED_LOGGED: AtomicBool = AtomicBool::new(false);
static OFFLOAD_MISSING_LOGGED: AtomicBool = AtomicBool::new(false);

/// A non-blocking UDP socket with `recvmmsg`/`sendmmsg` batch I/O; register it with
/// `tokio::io::unix::AsyncFd`.
#[derive(Debug)]
pub struct UdpBatchSocket {
    sock: Socket,
    /// Send runs of equal-size datagrams as one `UDP_SEGMENT` send; cleared for good when the
    /// device refuses GSO (EIO).
    gso: Cell<bool>,
    /// GSO sends, and GSO sends the kernel refused (then sent datagram by datagram), since
    /// [`take_gso_counts`](Self::take_gso_counts) last looked.
    gso_sends: Cell<u64>,
    gso_refused: Cell<u64>,
    /// `UDP_GRO` is on: reads go through the coalesced-buffer arena.
    gro: Option<RefCell<GroRx>>,
}

fn context(e: io::Error, what: std::fmt::Arguments<'_>) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl UdpBatchSocket {
    /// Creates a non-blocking UDP socket with `opts` and binds it to `addr`.
    pub fn bind(addr: SocketAddr, opts: &UdpOptions) -> io::Result<Self> {
        let domain = Domain::for_address(addr);
        let sock = Socket::new(
            domain,
            Type::DGRAM.nonblocking().cloexec(),
            Some(Protocol::UDP),
        )
        .map_err(|e| context(e, format_args!("creating UDP socket for {addr}")))?;
        if opts.reuse_port {
            sock.set_reuse_port(true)
                .map_err(|e| context(e, format_args!("SO_REUSEPORT on {addr}")))?;
        }
        if let Some(dev) = &opts.device {
            sock.bind_device(Some(dev.as_bytes()))
                .map_err(|e| context(e, format_args!("SO_BINDTODEVICE {dev} for {addr}")))?;
        }
        if let Some(n) = opts.recv_buffer {
            set_recv_buffer(&sock, n)?;
        }
        if let Some(n) = opts.send_buffer {
            set_send_buffer(&sock, n)?;
        }
        let mut this = Self {
            sock,
            gso: Cell::new(false),
            gso_sends: Cell::new(0),
            gso_refused: Cell::new(0),
            gro: None,
        };
        if opts.offload {
            this.enable_offloads();
        }
        if let Some(mode) = opts.pmtu {
            this.set_mtu_discover(mode)?;
        }
        this.sock
            .bind(&SockAddr::from(addr))
            .map_err(|e| context(e, format_args!("binding UDP {addr}")))?;
        Ok(this)
    }

    /// Binds `count` sockets of one `SO_REUSEPORT` group on `addr` (port 0 picks a free
    /// port for all of them). Socket `k` of the result is index `k` of the kernel's group,
    /// the index [`steer_by_spi`](Self::steer_by_spi) returns.
    pub fn bind_group(addr: SocketAddr, count: usize, opts: &UdpOptions) -> io::Result<Vec<Self>> {
        let opts = UdpOptions {
            reuse_port: true,
            ..opts.clone()
        };
        let mut socks: Vec<Self> = Vec::with_capacity(count);
        let mut addr = addr;
        for _ in 0..count {
            let s = Self::bind(addr, &opts)?;
            addr = s.local_addr()?;
            socks.push(s);
        }
        Ok(socks)
    }

    /// Turns on UDP GSO (if the kernel knows `UDP_SEGMENT`: Linux 4.18) and GRO (Linux 5.0);
    /// what the kernel refuses stays off, logged once per process.
    fn enable_offloads(&mut self) {
        let fd = self.as_raw_fd();
        let mut seg: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt into a live c_int with its size.
        let gso = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_UDP,
                UDP_SEGMENT,
                (&mut seg as *mut libc::c_int).cast(),
                &mut len,
            )
        } == 0;
        let gro = setsockopt_int(fd, libc::SOL_UDP, UDP_GRO, 1).is_ok();
        if (!gso || !gro) && !OFFLOAD_MISSING_LOGGED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the kernel refuses UDP {}: ESP-in-UDP runs without it",
                if gso {
                    "GRO"
                } else if gro {
                    "GSO"
                } else {
                    "GSO and GRO"
                }
            );
        }
        self.gso.set(gso);
        self.gro = gro.then(|| RefCell::new(GroRx::new()));
    }

    #[cfg(test)]
    /// Whether GSO sends and GRO receives are on.
    pub fn offloads(&self) -> (bool, bool) {
        (self.gso.get(), self.gro.is_some())
    }

    /// GSO sends (runs of datagrams sent as one) and refused GSO sends since the last call.
    pub fn take_gso_counts(&self) -> (u64, u64) {
        (self.gso_sends.replace(0), self.gso_refused.replace(0))
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("UDP socket has a non-IP local address"))
    }

    /// Sets `IP_MTU_DISCOVER` on an IPv4 socket, `IPV6_MTU_DISCOVER` on an IPv6 one (the
    /// IPv4 option on an IPv6 socket is accepted but governs only v4-mapped traffic).
    pub fn set_mtu_discover(&self, mode: PmtuDisc) -> io::Result<()> {
        let ipv6 = self.sock.domain().is_ok_and(|d| d == Domain::IPV6);
        let (level, name) = if ipv6 {
            (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER)
        } else {
            (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER)
        };
        setsockopt_int(self.as_raw_fd(), level, name, mode.raw(ipv6))
    }

    /// Installs the reuseport program that steers IKE (non-ESP marker) to socket 0 and ESP
    /// to socket `SPI % shards` of this socket's group; call once, after the whole group is
    /// bound (see [`bpf`] for the exact semantics).
    pub fn steer_by_spi(&self, shards: u32) -> io::Result<()> {
        bpf::attach_reuseport_cbpf(self, &bpf::reuseport_spi_program(shards))
            .map_err(|e| context(e, format_args!("SO_ATTACH_REUSEPORT_CBPF")))
    }

    #[cfg(test)]
    /// Sends one datagram (IKE and other control traffic).
    pub fn send_to(&self, buf: &[u8], dst: SocketAddr) -> io::Result<usize> {
        self.sock.send_to(buf, &SockAddr::from(dst))
    }

    /// `recvmmsg` into the free slots of `batch`: each packet's address is its source. With
    /// GRO, coalesced datagrams are cut back into one datagram per slot.
    pub fn recv_batch(&self, batch: &mut PacketBatch) -> io::Result<usize> {
        if let Some(gro) = &self.gro {
            return gro.borrow_mut().recv(self.as_raw_fd(), batch);
        }
        self.recv_plain(batch)
    }

    fn recv_plain(&self, batch: &mut PacketBatch) -> io::Result<usize> {
        loop {
            match batch.recvmmsg(self.as_raw_fd()) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    /// `sendmmsg` of packets `from..len()` of `batch`, each to its slot address. Returns how
    /// many the kernel took; use [`send_all`](super::send_all) for the retry/drop rules.
    pub fn send_batch(&self, batch: &mut PacketBatch, from: usize) -> io::Result<usize> {
        let fd = self.as_raw_fd();
        let (sent, gso) = batch.sendmmsg(fd, from, Dest::SlotAddr, self.gso.get());
        self.gso_sends.set(self.gso_sends.get() + gso.sends as u64);
        match (sent, gso.first) {
            (Err(e), true)
                if !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                // The kernel refused the GSO send itself: EIO when the device cannot checksum
                // the segments (GSO stays off for this socket), EINVAL when a segment is larger
                // than the path (kernel-fragmented datagrams). Send the same packets one by one.
                self.gso_refused.set(self.gso_refused.get() + 1);
                if e.raw_os_error() == Some(libc::EIO) {
                    self.gso.set(false);
                }
                if !GSO_REFUSED_LOGGED.swap(true, Ordering::Relaxed) {
                    tracing::warn!("UDP GSO send refused ({e}); sending datagram by datagram");
                }
                batch.sendmmsg(fd, from, Dest::SlotAddr, false).0
            }
            (r, _) => r,
        }
    }
}

impl BatchSend for UdpBatchSocket {
    fn send_from(&self, batch: &mut PacketBatch, from: usize) -> io::Result<usize> {
        self.send_batch(batch, from)
    }
}

impl AsRawFd for UdpBatchSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl AsFd for UdpBatchSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

pub(super) fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&val as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `SO_SNDBUF` of `n` bytes, past the `net.core.wmem_max` cap when we may (`SO_SNDBUFFORCE`,
/// root): replies to forged on-link sources wait in the neighbour queue until ARP gives up, and
/// must not fill a small buffer that real peers' datagrams need too.
pub fn set_send_buffer(sock: &impl std::os::fd::AsRawFd, n: usize) -> io::Result<()> {
    set_buffer(sock, [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF], n)
}

/// Sets a buffer size of `n` bytes with the first of `opts` (the `*FORCE` option, root only)
/// the kernel accepts; the error of the last when it accepts none.
fn set_buffer(
    sock: &impl std::os::fd::AsRawFd,
    opts: [libc::c_int; 2],
    n: usize,
) -> io::Result<()> {
    let v = libc::c_int::try_from(n).unwrap_or(libc::c_int::MAX);
    let mut result = Ok(());
    for opt in opts {
        result = setsockopt_int(sock.as_raw_fd(), libc::SOL_SOCKET, opt, v);
        if result.is_ok() {
            break;
        }
    }
    result
}

/// `SO_RCVBUF` of `n` bytes, past the `net.core.rmem_max` cap when we may (`SO_RCVBUFFORCE`,
/// root), else as much as the cap allows: a burst of datagrams (every spoke re-keying after the
/// hub restarted) must wait in the buffer, not be dropped by the kernel. Returns what was
/// granted, as the kernel reports it (twice the usable size: it counts its own overhead).
pub fn set_recv_buffer(sock: &impl std::os::fd::AsRawFd, n: usize) -> io::Result<usize> {
    set_buffer(sock, [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF], n)?;
    recv_buffer(sock)
}

/// The socket's `SO_RCVBUF` as the kernel reports it.
pub fn recv_buffer(sock: &impl std::os::fd::AsRawFd) -> io::Result<usize> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt on a valid socket fd into a local c_int with its size.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(v).unwrap_or(0))
}

/// Datagrams the kernel dropped at this socket so far, mostly for want of receive buffer: its
/// `sk_drops`, the `drops` column of /proc/net/udp, read with `SO_MEMINFO` (Linux 4.x+).
pub fn socket_drops(sock: &impl std::os::fd::AsRawFd) -> io::Result<u64> {
    // SK_MEMINFO_VARS: the kernel writes at most this many u32s and fewer on older kernels.
    let mut info = [0u32; 9];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: getsockopt on a valid socket fd into a local array with its size in `len`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let drops = libc::SK_MEMINFO_DROPS as usize;
    if (len as usize) < (drops + 1) * std::mem::size_of::<u32>() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SO_MEMINFO without the drop count (kernel older than 4.x)",
        ));
    }
    Ok(u64::from(info[drops]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::batch::send_all;
    use std::time::{Duration, Instant};

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    /// Receives into `batch` until `want` datagrams arrived or a second passed.
    fn recv_until(sock: &UdpBatchSocket, batch: &mut PacketBatch, want: usize) {
        let deadline = Instant::now() + Duration::from_secs(1);
        while batch.len() < want && Instant::now() < deadline {
            match sock.recv_batch(batch) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Err(e) => panic!("recvmmsg: {e}"),
            }
        }
    }

    #[test]
    fn mmsg_round_trip_on_loopback() {
        let rx = UdpBatchSocket::bind(loopback(), &UdpOptions::default()).unwrap();
        let tx = UdpBatchSocket::bind(
            loopback(),
            &UdpOptions {
                pmtu: Some(PmtuDisc::Do),
                ..Default::default()
            },
        )
        .unwrap();
        let dst = rx.local_addr().unwrap();
        let mut out = PacketBatch::new(16, 2048, 64);
        let mut inb = PacketBatch::new(16, 2048, 64);
        let base = inb.packet_ptr_for_test();

        for round in 0..3u8 {
            out.clear();
            inb.clear();
            for k in 0..16u8 {
                let len = 1 + (k as usize) * 100;
                let mut data = vec![k; len];
                data[0] = round;
                out.push(&data, Some(dst)).unwrap();
            }
            let mut cursor = 0;
            send_all(&tx, &mut out, &mut cursor, |i, e| {
                panic!("packet {i} dropped: {e}")
            })
            .unwrap();
            assert_eq!(cursor, 16);
            recv_until(&rx, &mut inb, 16);
            assert_eq!(inb.len(), 16);
            for k in 0..16 {
                assert_eq!(inb.packet(k), out.packet(k));
                assert_eq!(inb.addr(k), Some(tx.local_addr().unwrap()));
                assert!(!inb.is_truncated(k));
                assert_eq!(inb.front_room(k), 64, "headroom kept for prepending");
            }
            assert_eq!(
                inb.packet_ptr_for_test(),
                base,
                "arena reused, not reallocated"
            );
        }
        // Nothing waiting: WouldBlock, so AsyncFd::try_io clears readiness.
        inb.clear();
        assert_eq!(
            rx.recv_batch(&mut inb).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn oversized_datagram_is_marked_truncated() {
        let rx = UdpBatchSocket::bind(loopback(), &UdpOptions::default()).unwrap();
        let tx = UdpBatchSocket::bind(loopback(), &UdpOptions::default()).unwrap();
        tx.send_to(&[7u8; 300], rx.local_addr().unwrap()).unwrap();
        let mut inb = PacketBatch::new(2, 256, 56);
        recv_until(&rx, &mut inb, 1);
        assert_eq!(inb.len(), 1);
        assert!(inb.is_truncated(0));
        assert_eq!(inb.packet(0).len(), 200);
    }

    /// REUSEPORT group of 2 on 127.0.0.1: the cBPF program sees the UDP payload at offset 0,
    /// returns the socket index; IKE (marker) and runts go to socket 0, ESP to SPI % 2.
    #[test]
    fn reuseport_cbpf_steers_by_spi() {
        steers_by_spi_on(loopback());
    }

    /// The same on ::1 (the IPv6 outer side, issue 11): the kernel pulls the UDP header for
    /// IPv6 too, so the one program steers both families.
    #[test]
    fn reuseport_cbpf_steers_by_spi_over_ipv6() {
        crate::io::testns::in_netns("reuseport_cbpf_steers_by_spi_over_ipv6", || {
            steers_by_spi_on("[::1]:0".parse().unwrap())
        });
    }

    fn steers_by_spi_on(addr: SocketAddr) {
        let group = UdpBatchSocket::bind_group(addr, 2, &UdpOptions::default()).unwrap();
        let port = group[0].local_addr().unwrap();
        assert_eq!(group[1].local_addr().unwrap(), port);
        group[0].steer_by_spi(2).unwrap();

        let tx = UdpBatchSocket::bind(addr, &UdpOptions::default()).unwrap();
        let mut out = PacketBatch::new(32, 256, 0);
        let spis: [u32; 8] = [
            256,
            257,
            1111,
            2222,
            0xdead_beef,
            0x8000_0000,
            3,
            4_000_000_001,
        ];
        for spi in spis {
            let mut p = [0u8; 24];
            p[..4].copy_from_slice(&spi.to_be_bytes());
            p[4..8].copy_from_slice(&1u32.to_be_bytes());
            out.push(&p, Some(port)).unwrap();
        }
        // IKE on 4500: the non-ESP marker then an ISAKMP header.
        let mut ike = [0u8; 32];
        ike[4] = 0xaa;
        out.push(&ike, Some(port)).unwrap();
        // NAT-keepalive: one 0xff byte, too short for the load: program aborts, returns 0.
        out.push(&[0xff], Some(port)).unwrap();
        let mut cursor = 0;
        send_all(&tx, &mut out, &mut cursor, |i, e| panic!("packet {i}: {e}")).unwrap();

        let mut got = [PacketBatch::new(32, 256, 0), PacketBatch::new(32, 256, 0)];
        let deadline = Instant::now() + Duration::from_secs(1);
        while got[0].len() + got[1].len() < out.len() && Instant::now() < deadline {
            for (s, b) in group.iter().zip(got.iter_mut()) {
                let _ = s.recv_batch(b);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let first_word =
            |p: &[u8]| (p.len() >= 4).then(|| u32::from_be_bytes([p[0], p[1], p[2], p[3]]));
        let on: Vec<Vec<Option<u32>>> = got
            .iter()
            .map(|b| b.iter().map(|(p, _)| first_word(p)).collect())
            .collect();
        let mut want0: Vec<Option<u32>> = spis
            .iter()
            .filter(|s| *s % 2 == 0)
            .map(|s| Some(*s))
            .collect();
        want0.extend([Some(0), None]);
        let want1: Vec<Option<u32>> = spis
            .iter()
            .filter(|s| *s % 2 == 1)
            .map(|s| Some(*s))
            .collect();
        assert_eq!(on[0], want0, "socket 0: even SPIs, IKE, keepalive");
        assert_eq!(on[1], want1, "socket 1: odd SPIs");
    }

    /// The shard's loop shape: readiness from tokio, batches from `recvmmsg`.
    #[test]
    fn drives_with_tokio_asyncfd() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let rx = crate::io::register(
                UdpBatchSocket::bind(loopback(), &UdpOptions::default()).unwrap(),
            )
            .unwrap();
            let tx = crate::io::register(
                UdpBatchSocket::bind(loopback(), &UdpOptions::default()).unwrap(),
            )
            .unwrap();
            let dst = rx.get_ref().local_addr().unwrap();
            let mut out = PacketBatch::new(8, 512, 64);
            for k in 0..8u8 {
                out.push(&[k; 40], Some(dst)).unwrap();
            }
            let mut cursor = 0;
            loop {
                let mut w = tx.writable().await.unwrap();
                match w
                    .try_io(|s| send_all(s.get_ref(), &mut out, &mut cursor, |_, e| panic!("{e}")))
                {
                    Ok(r) => break r.unwrap(),
                    Err(_would_block) => continue,
                }
            }
            let mut inb = PacketBatch::new(8, 512, 64);
            let recv = async {
                while inb.len() < 8 {
                    let mut r = rx.readable().await.unwrap();
                    if let Ok(res) = r.try_io(|s| s.get_ref().recv_batch(&mut inb)) {
                        res.unwrap();
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(2), recv)
                .await
                .expect("datagrams within 2 s");
            assert!(inb.iter().enumerate().all(|(k, (p, _))| p == [k as u8; 40]));
        });
    }

    /// Root + namespace: SO_BINDTODEVICE, and IP_MTU_DISCOVER=DO turning an oversized
    /// datagram into EMSGSIZE (what the ESP-in-UDP path relies on to learn it must fragment
    /// or send ICMP fragmentation-needed), while DONT lets the kernel fragment it.
    #[test]
    fn bind_device_and_pmtu_modes_in_netns() {
        crate::io::testns::in_netns("bind_device_and_pmtu_modes_in_netns", || {
            crate::io::link::set_interface_mtu("lo", 1500).unwrap();
            let opts = UdpOptions {
                device: Some("lo".into()),
                pmtu: Some(PmtuDisc::Do),
                ..Default::default()
            };
            let group =
                UdpBatchSocket::bind_group("127.0.0.1:4500".parse().unwrap(), 2, &opts).unwrap();
            let tx = UdpBatchSocket::bind(loopback(), &opts).unwrap();
            let dst = group[0].local_addr().unwrap();
            let e = tx.send_to(&[0u8; 1500 - 28 + 1], dst).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE), "{e}");
            tx.send_to(&[0u8; 1500 - 28], dst).unwrap();
            tx.set_mtu_discover(PmtuDisc::Dont).unwrap();
            tx.send_to(&[0u8; 3000], dst).unwrap();
            let mut sizes = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(1);
            while sizes.len() < 2 && Instant::now() < deadline {
                for s in &group {
                    let mut b = PacketBatch::new(4, 4096, 0);
                    if s.recv_batch(&mut b).is_ok() {
                        sizes.extend(b.iter().map(|(p, _)| p.len()));
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            sizes.sort();
            assert_eq!(sizes, vec![1472, 3000], "fragmented datagram reassembled");
        });
    }

    /// The same for IPv6 (issue 11, the IPv6 outer side): `IPV6_MTU_DISCOVER`=DO refuses a
    /// datagram larger than the path (1500 - 40 - 8 bytes of payload fit), DONT lets the
    /// kernel fragment it. Before, an IPv6 socket got the IPv4 option, which governs only
    /// v4-mapped traffic, so DO had no effect.
    #[test]
    fn pmtu_modes_over_ipv6_in_netns() {
        crate::io::testns::in_netns("pmtu_modes_over_ipv6_in_netns", || {
            crate::io::link::set_interface_mtu("lo", 1500).unwrap();
            let do_ = UdpOptions {
                pmtu: Some(PmtuDisc::Do),
                ..Default::default()
            };
            let v6: SocketAddr = "[::1]:0".parse().unwrap();
            let rx = UdpBatchSocket::bind(v6, &UdpOptions::default()).unwrap();
            let tx = UdpBatchSocket::bind(v6, &do_).unwrap();
            let dst = rx.local_addr().unwrap();
            let e = tx.send_to(&[0u8; 1500 - 48 + 1], dst).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE), "{e}");
            tx.send_to(&[0u8; 1500 - 48], dst).unwrap();
            tx.set_mtu_discover(PmtuDisc::Dont).unwrap();
            tx.send_to(&[0u8; 3000], dst).unwrap();
            let mut b = PacketBatch::new(4, 4096, 0);
            recv_until(&rx, &mut b, 2);
            let sizes: Vec<usize> = b.iter().map(|(p, _)| p.len()).collect();
            assert_eq!(sizes, vec![1452, 3000], "fragmented datagram reassembled");
        });
    }

    /// Offloads on: runs of equal-size datagrams (one of them ending shorter), mixed sizes and
    /// two destinations go out through GSO `sendmmsg` and come back through GRO, every
    /// datagram intact, in order, with its source, both ways; the receiver really got
    /// coalesced buffers (fewer buffers than datagrams). Then each side with offloads off
    /// against the other with them on.
    #[test]
    fn gso_send_and_gro_receive_carry_every_datagram_both_ways() {
        let on = UdpOptions {
            offload: true,
            recv_buffer: Some(4 << 20),
            ..Default::default()
        };
        let off = UdpOptions {
            recv_buffer: Some(4 << 20),
            ..Default::default()
        };
        for (a_opts, b_opts) in [(&on, &on), (&on, &off), (&off, &on)] {
            let a = UdpBatchSocket::bind(loopback(), a_opts).unwrap();
            let b = UdpBatchSocket::bind(loopback(), b_opts).unwrap();
            let c = UdpBatchSocket::bind(loopback(), &off).unwrap();
            if a_opts.offload {
                assert_eq!(
                    a.offloads(),
                    (true, true),
                    "this kernel has UDP GSO and GRO"
                );
            }
            for (tx, rx) in [(&a, &b), (&b, &a)] {
                let dst = rx.local_addr().unwrap();
                let other = c.local_addr().unwrap();
                let mut out = PacketBatch::new(128, 2048, 64);
                let mut sizes: Vec<(usize, SocketAddr)> = Vec::new();
                sizes.extend(std::iter::repeat_n((1400, dst), 40));
                sizes.push((777, dst));
                sizes.extend(std::iter::repeat_n((1400, other), 3));
                sizes.extend((0..20).map(|k| (60 + k * 50, dst)));
                sizes.extend(std::iter::repeat_n((1200, dst), 50));
                for (k, &(len, to)) in sizes.iter().enumerate() {
                    let mut p = vec![(k % 251) as u8; len];
                    p[..2].copy_from_slice(&(k as u16).to_be_bytes());
                    out.push(&p, Some(to)).unwrap();
                }
                let mut cursor = 0;
                send_all(tx, &mut out, &mut cursor, |i, e| panic!("packet {i}: {e}")).unwrap();
                assert_eq!(cursor, out.len());
                // GSO runs: 40 x 1400 + 777, 3 x 1400 to the other peer, 50 x 1200.
                let gso = tx.take_gso_counts();
                assert_eq!(gso, (if tx.gso.get() { 3 } else { 0 }, 0));
                let want: Vec<&[u8]> = (0..out.len())
                    .filter(|&i| out.addr(i) == Some(dst))
                    .map(|i| out.packet(i))
                    .collect();
                let mut got: Vec<Vec<u8>> = Vec::new();
                let mut inb = PacketBatch::new(64, 2048, 128);
                let deadline = Instant::now() + Duration::from_secs(5);
                while got.len() < want.len() && Instant::now() < deadline {
                    inb.clear();
                    match rx.recv_batch(&mut inb) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(2))
                        }
                        Err(e) => panic!("receive: {e}"),
                    }
                    for i in 0..inb.len() {
                        assert_eq!(inb.addr(i), Some(tx.local_addr().unwrap()));
                        assert_eq!(inb.front_room(i), 128, "headroom kept");
                        assert!(!inb.is_truncated(i));
                        got.push(inb.packet(i).to_vec());
                    }
                }
                assert_eq!(got.len(), want.len(), "every datagram arrived");
                assert!(
                    got.iter().zip(&want).all(|(g, w)| g == w),
                    "intact and in order"
                );
                let mut third = PacketBatch::new(8, 2048, 0);
                recv_until(&c, &mut third, 3);
                assert_eq!(third.len(), 3, "the run to the other peer went there");
                if let (Some(gro), true) = (&rx.gro, tx.gso.get()) {
                    let (buffers, datagrams) = gro.borrow().read;
                    assert!(
                        buffers < datagrams,
                        "GSO + GRO coalesced: {buffers} buffers for {datagrams} datagrams"
                    );
                }
            }
        }
    }

    /// Root + namespace: a GSO run whose datagrams exceed the path MTU (lo at 1500, DF clear)
    /// is refused by the kernel (EINVAL); the same datagrams then go out one by one, the kernel
    /// fragments them, and they arrive whole. Counted as refused, GSO stays on.
    #[test]
    fn refused_gso_send_falls_back_to_single_datagrams_in_netns() {
        crate::io::testns::in_netns("refused_gso_send_falls_back", || {
            crate::io::link::set_interface_mtu("lo", 1500).unwrap();
            let opts = UdpOptions {
                offload: true,
                pmtu: Some(PmtuDisc::Dont),
                ..Default::default()
            };
            let rx = UdpBatchSocket::bind(loopback(), &opts).unwrap();
            let tx = UdpBatchSocket::bind(loopback(), &opts).unwrap();
            let dst = rx.local_addr().unwrap();
            let mut out = PacketBatch::new(4, 4096, 0);
            for k in 0..3u8 {
                out.push(&[k; 2000], Some(dst)).unwrap();
            }
            let mut cursor = 0;
            send_all(&tx, &mut out, &mut cursor, |i, e| panic!("packet {i}: {e}")).unwrap();
            assert_eq!(cursor, 3);
            assert_eq!(tx.take_gso_counts(), (0, 1), "one GSO send, refused");
            assert!(tx.gso.get(), "EINVAL does not turn GSO off");
            let mut inb = PacketBatch::new(8, 4096, 64);
            recv_until(&rx, &mut inb, 3);
            let got: Vec<(usize, u8)> = inb.iter().map(|(p, _)| (p.len(), p[0])).collect();
            assert_eq!(got, [(2000, 0), (2000, 1), (2000, 2)]);
        });
    }
}

//! The IKE sockets of one interface: UDP on the ike-port (500), and UDP on the nat-t-port
//! (4500), which the ESP shards own: IKE on it is marked by four zero bytes (the non-ESP marker,
//! RFC 3948 §2.2) and steered to shard 0, which hands it to the router; we send on a duplicate
//! of that socket. Sends are one syscall per IKE message (never on the ESP hot path).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix::prelude::*;
use tracing::{info, warn};

use crate::messages::IkeDatagram;

/// The IKE port's receive buffer. After a hub restart (or the WAN coming back) every spoke
/// sends main-mode message 1 at once, and each waits here until the router reads it. Measured on
/// loopback, a 300-byte datagram takes 1,280 bytes of buffer (its skb's truesize) against a
/// limit of twice the size set: 16 MiB holds about 26,000 of them (fewer behind a NIC driver
/// with larger buffers), the kernel default of 208 KiB about 160 (the drops of issue 10 at 700
/// spokes). Memory is taken only while datagrams wait.
pub const IKE_RECV_BUFFER: usize = 16 << 20;

#[derive(Clone, Debug)]
pub struct IkeSockets {
    pub ike: Arc<UdpSocket>,
    pub nat_t: Option<Arc<UdpSocket>>,
    pub ike_addr: SocketAddr,
    /// Datagrams read from the IKE port and dropped because the router's mailbox was full.
    pub router_busy: Arc<AtomicU64>,
}

impl IkeSockets {
    /// Binds the IKE port. `nat_t` is the shard-0 NAT-T socket to send on (duplicated here).
    pub fn bind(ike_addr: SocketAddr, nat_t: Option<&impl AsRawFd>) -> io::Result<Self> {
        let ike = UdpSocket::bind(ike_addr)?;
        ike.set_nonblocking(true)?;
        crate::io::udp::set_send_buffer(&ike, 4 << 20)?;
        // The kernel reports twice what it will hold (it counts its overhead): less than that
        // means net.core.rmem_max capped us (not root, or no CAP_NET_ADMIN).
        let granted = crate::io::udp::set_recv_buffer(&ike, IKE_RECV_BUFFER)?;
        if granted < 2 * IKE_RECV_BUFFER {
            warn!(
                "IKE socket {ike_addr}: receive buffer {} KiB granted of {} KiB asked \
                 (net.core.rmem_max caps it without CAP_NET_ADMIN): a burst of spokes may be \
                 dropped (`show counters`: ike_socket_drops)",
                granted / 2 / 1024,
                IKE_RECV_BUFFER / 1024
            );
        } else {
            info!(
                "IKE socket {ike_addr}: receive buffer {} KiB",
                granted / 2 / 1024
            );
        }
        let nat_t = match nat_t {
            Some(s) => {
                // SAFETY: dup(2) of a valid socket fd; the new fd is owned by the UdpSocket.
                let fd = unsafe { libc::dup(s.as_raw_fd()) };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: `fd` is a fresh descriptor of a UDP socket we own from here on.
                Some(Arc::new(unsafe { UdpSocket::from_raw_fd(fd) }))
            }
            None => None,
        };
        Ok(IkeSockets {
            ike: Arc::new(ike),
            nat_t,
            ike_addr,
            router_busy: Arc::default(),
        })
    }

    /// Datagrams the kernel dropped at the IKE port and at the NAT-T socket IKE shares with
    /// shard 0 (whose drops may also be ESP: the kernel does not tell them apart).
    pub fn drops(&self) -> u64 {
        let ike = crate::io::udp::socket_drops(&*self.ike).unwrap_or(0);
        let nat_t = self
            .nat_t
            .as_deref()
            .map_or(0, |s| crate::io::udp::socket_drops(s).unwrap_or(0));
        ike.saturating_add(nat_t)
    }

    /// Sends one IKE datagram (from the NAT-T port it already starts with the non-ESP marker:
    /// the session adds it).
    pub fn send(&self, to: SocketAddr, nat_t: bool, bytes: &[u8]) -> io::Result<()> {
        if nat_t {
            let Some(s) = &self.nat_t else {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "no NAT-T socket on this interface",
                ));
            };
            s.send_to(bytes, to).map(|_| ())
        } else {
            self.ike.send_to(bytes, to).map(|_| ())
        }
    }

    /// Reads the IKE port on the current arbiter and hands every datagram to `router`.
    pub fn spawn_reader(&self, router: Recipient<IkeDatagram>) -> io::Result<()> {
        let sock = tokio::net::UdpSocket::from_std(self.ike.try_clone()?)?;
        let local = self.ike_addr;
        let router_busy = self.router_busy.clone();
        actix::spawn(async move {
            let mut buf = vec![0u8; 65536];
            // A router that cannot keep up drops datagrams here (its mailbox is bounded)
            // instead of queueing a flood; counted, and summed up in the log at most every 10 s.
            let mut logged = 0u64;
            let mut last_log = std::time::Instant::now();
            loop {
                match sock.recv_from(&mut buf).await {
                    Ok((n, from)) => {
                        let msg = IkeDatagram {
                            local,
                            from,
                            nat_t: false,
                            bytes: buf[..n].to_vec(),
                        };
                        if router.try_send(msg).is_err() {
                            router_busy.fetch_add(1, Ordering::Relaxed);
                        }
                        let dropped = router_busy.load(Ordering::Relaxed);
                        if dropped > logged && last_log.elapsed().as_secs() >= 10 {
                            warn!(
                                "IKE socket {local}: {} datagrams dropped, the router is saturated",
                                dropped.saturating_sub(logged)
                            );
                            logged = dropped;
                            last_log = std::time::Instant::now();
                        }
                    }
                    Err(e) => {
                        warn!("IKE socket {local}: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        // SAFETY: geteuid(2) cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    /// The IKE port gets the burst-sized receive buffer (as root: past net.core.rmem_max), and
    /// datagrams the kernel drops there once it is full are counted.
    #[test]
    fn ike_port_has_a_burst_buffer_and_counts_kernel_drops() {
        if !is_root() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI runs as root: SO_RCVBUFFORCE must work there"
            );
            eprintln!("skipped: SO_RCVBUFFORCE needs root");
            return;
        }
        let s = IkeSockets::bind("127.0.0.1:0".parse().unwrap(), None::<&UdpSocket>).unwrap();
        let granted = crate::io::udp::recv_buffer(&*s.ike).unwrap();
        // The kernel reports twice what was set (its bookkeeping overhead).
        assert_eq!(granted, 2 * IKE_RECV_BUFFER);
        assert_eq!(s.drops(), 0);
        // Nobody reads: large datagrams fill the buffer within a few hundred, and the rest
        // are dropped by the kernel and counted.
        let to = s.ike.local_addr().unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let payload = vec![0u8; 60_000];
        let mut sent = 0;
        while s.drops() == 0 && sent < 5000 {
            tx.send_to(&payload, to).unwrap();
            sent += 1;
        }
        let drops = s.drops();
        assert!(drops > 0, "no drops counted after {sent} datagrams");
        // What was held before the first drop: the whole buffer, not the kernel default.
        assert!(
            sent as usize * payload.len() >= IKE_RECV_BUFFER,
            "dropped after only {sent} datagrams"
        );
    }

    /// A router that does not keep up: the stand-in takes one datagram at a time, slowly.
    struct SlowRouter;
    impl Actor for SlowRouter {
        type Context = Context<Self>;
        fn started(&mut self, ctx: &mut Context<Self>) {
            ctx.set_mailbox_capacity(1);
        }
    }
    impl Handler<IkeDatagram> for SlowRouter {
        type Result = ();
        fn handle(&mut self, _: IkeDatagram, _: &mut Context<Self>) {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Datagrams the reader drops because the router's mailbox is full are counted (`show
    /// counters`: dropped_router_busy), not only logged.
    #[test]
    fn datagrams_a_busy_router_cannot_take_are_counted() {
        let sys = System::new();
        sys.block_on(async {
            let s = IkeSockets::bind("127.0.0.1:0".parse().unwrap(), None::<&UdpSocket>).unwrap();
            let slow = SlowRouter::start_in_arbiter(&Arbiter::new().handle(), |_| SlowRouter);
            s.spawn_reader(slow.recipient()).unwrap();
            let to = s.ike.local_addr().unwrap();
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            for _ in 0..50 {
                tx.send_to(b"not even ISAKMP", to).unwrap();
            }
            let begin = std::time::Instant::now();
            while s.router_busy.load(Ordering::Relaxed) == 0
                && begin.elapsed() < std::time::Duration::from_secs(10)
            {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            assert!(s.router_busy.load(Ordering::Relaxed) > 0);
            System::current().stop();
        });
    }
}

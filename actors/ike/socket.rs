//! The IKE sockets of one interface: UDP on the ike-port (500), and UDP on the nat-t-port
//! (4500), which the ESP shards own: IKE on it is marked by four zero bytes (the non-ESP marker,
//! RFC 3948 §2.2) and steered to shard 0, which hands it to the router; we send on a duplicate
//! of that socket. Sends are one syscall per IKE message (never on the ESP hot path).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Arc;

use actix::prelude::*;
use tracing::warn;

use crate::messages::IkeDatagram;

#[derive(Clone, Debug)]
pub struct IkeSockets {
    pub ike: Arc<UdpSocket>,
    pub nat_t: Option<Arc<UdpSocket>>,
    pub ike_addr: SocketAddr,
}

impl IkeSockets {
    /// Binds the IKE port. `nat_t` is the shard-0 NAT-T socket to send on (duplicated here).
    pub fn bind(ike_addr: SocketAddr, nat_t: Option<&impl AsRawFd>) -> io::Result<Self> {
        let ike = UdpSocket::bind(ike_addr)?;
        ike.set_nonblocking(true)?;
        crate::io::udp::set_send_buffer(&ike, 4 << 20)?;
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
        })
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
        actix::spawn(async move {
            let mut buf = vec![0u8; 65536];
            // A router that cannot keep up drops datagrams here (its mailbox is bounded)
            // instead of queueing a flood; summed up in the log at most every 10 s.
            let mut dropped = 0u64;
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
                            dropped += 1;
                        }
                        if dropped > 0 && last_log.elapsed().as_secs() >= 10 {
                            warn!(
                                "IKE socket {local}: {dropped} datagrams dropped, the router is saturated"
                            );
                            dropped = 0;
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

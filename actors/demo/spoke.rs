//! A simulated spoke: one UDP socket on its own 127.x address, its outbound and inbound SA,
//! and one tokio task that sends tagged cleartext packets to the hub LAN host through the
//! tunnel (a small window of them in flight) and decapsulates the echoes.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ikehub::esp::{DropReason, EncapOutcome, EncapParams, Received, SecurityAssociation};
use rand::RngExt;
use rand::rngs::StdRng;
use tokio::sync::watch;

use super::HUB_LAN;
use super::stats::SpokeStats;
use crate::bench::packet::{tag_of, udp_datagram};

/// What the spokes are asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Send and receive.
    Traffic,
    /// Stop sending, keep receiving the echoes still in flight.
    Drain,
    /// End the task.
    Stop,
}

pub struct Spoke {
    pub index: usize,
    pub addr: Ipv4Addr,
    pub host: Ipv4Addr,
    pub socket: std::net::UdpSocket,
    pub outbound: SecurityAssociation,
    pub inbound: SecurityAssociation,
}

/// UDP port of the cleartext packets (both ends; the echo swaps them anyway).
pub const SPOKE_PORT: u16 = 9000;
pub const LAN_PORT: u16 = 7;
/// Headroom kept in front of a received datagram (decap may rebuild headers there).
const HEADROOM: usize = 64;
/// An echo not back after this long is taken as lost and its window slot reused.
const LOSS_TIMEOUT: Duration = Duration::from_millis(250);

pub async fn run(
    spoke: Spoke,
    hub: SocketAddrV4,
    window: u32,
    stats: Arc<[SpokeStats]>,
    mut phase: watch::Receiver<Phase>,
) {
    let Spoke {
        index,
        addr,
        host,
        socket,
        mut outbound,
        mut inbound,
    } = spoke;
    let st = &stats[index];
    let sock = match tokio::net::UdpSocket::from_std(socket) {
        Ok(s) => s,
        Err(_) => {
            SpokeStats::add(&st.send_errors, 1);
            return;
        }
    };
    let mut rng: StdRng = rand::make_rng();
    let mut inner = vec![0u8; 1500];
    let mut out = vec![0u8; 2048];
    let mut rx = vec![0u8; 2048 + HEADROOM];
    let mut next_tag: u64 = 0;
    let mut ip_id: u16 = index as u16;
    let mut outstanding: u32 = 0;
    let hub_addr = SocketAddr::V4(hub);
    let timer = tokio::time::sleep(LOSS_TIMEOUT);
    tokio::pin!(timer);
    let mut current = *phase.borrow();
    loop {
        if current == Phase::Stop {
            break;
        }
        while current == Phase::Traffic && outstanding < window {
            let len = rng.random_range(256..=1400usize);
            // The tag carries the spoke index and a sequence number, checked on the echo.
            let tag = ((index as u64) << 32) | (next_tag & 0xffff_ffff);
            next_tag += 1;
            let n = udp_datagram(&mut inner, host, HUB_LAN, (SPOKE_PORT, LAN_PORT), len, tag);
            ip_id = ip_id.wrapping_add(1);
            let params = EncapParams {
                path_mtu: 1500,
                ip_id,
                icmp_source: addr,
            };
            let now = Instant::now();
            let range = match outbound.encap(now, &inner[..n], &params, &mut rng, &mut out) {
                Ok(EncapOutcome::Send(o)) | Ok(EncapOutcome::Fragment(o)) => o.socket_payload(),
                _ => {
                    SpokeStats::add(&st.send_errors, 1);
                    break;
                }
            };
            match sock.send_to(&out[range], hub_addr).await {
                Ok(_) => {
                    SpokeStats::add(&st.sent, 1);
                    outstanding += 1;
                }
                Err(_) => {
                    SpokeStats::add(&st.send_errors, 1);
                    break;
                }
            }
            if outstanding == 1 {
                timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + LOSS_TIMEOUT);
            }
        }
        tokio::select! {
            changed = phase.changed() => {
                current = if changed.is_ok() { *phase.borrow() } else { Phase::Stop };
            }
            r = sock.recv_from(&mut rx[HEADROOM..]) => {
                let Ok((len, from)) = r else { continue };
                outstanding = outstanding.saturating_sub(1);
                timer.as_mut().reset(tokio::time::Instant::now() + LOSS_TIMEOUT);
                let SocketAddr::V4(from) = from else {
                    SpokeStats::add(&st.other_drops, 1);
                    continue;
                };
                if from != hub {
                    SpokeStats::add(&st.other_drops, 1);
                    continue;
                }
                let received = Received::Udp { src: *hub.ip(), dst: addr, offset: HEADROOM };
                match inbound.decap(Instant::now(), &mut rx[..HEADROOM + len], received) {
                    Ok(d) => {
                        let p = &rx[d.inner.clone()];
                        let ok = p.len() >= 28
                            && p[12..16] == HUB_LAN.octets()
                            && p[16..20] == host.octets()
                            && tag_of(p).is_some_and(|t| {
                                t >> 32 == index as u64 && (t & 0xffff_ffff) < next_tag
                            });
                        if ok {
                            SpokeStats::add(&st.down_packets, 1);
                            SpokeStats::add(&st.down_bytes, p.len() as u64);
                        } else {
                            SpokeStats::add(&st.other_drops, 1);
                        }
                    }
                    Err(
                        DropReason::IcvFailure
                        | DropReason::Replayed
                        | DropReason::BadPadding
                        | DropReason::BadPadLength,
                    ) => SpokeStats::add(&st.decap_errors, 1),
                    Err(_) => SpokeStats::add(&st.other_drops, 1),
                }
            }
            _ = &mut timer, if current == Phase::Traffic => {
                // Lost on the way (a full buffer somewhere) or a failed send: free the window.
                outstanding = 0;
                timer.as_mut().reset(tokio::time::Instant::now() + LOSS_TIMEOUT);
            }
        }
    }
}

//! A simulated spoke: one UDP socket for both IKE and ESP-in-UDP (IPv4: on its own 127.x
//! address; IPv6: on `::1`, its own port), an initiator `IkeSession` (main mode + quick mode,
//! group 14) against the hub's real IKE router, and, once its child SA is up, tagged cleartext
//! packets (IPv4 or IPv6, [`inner`]) to the hub LAN host through the tunnel (a small window of
//! them in flight) whose echoes it decapsulates and checks.
//!
//! Each spoke is one tokio task on the demo's small multi-thread runtime (a few threads for
//! all spokes); its IKE deadline is one pinned timer re-armed only when `poll_timeout` moves.
//! Handshakes are paced by a semaphore: a spoke holds a setup slot from its first main-mode
//! message until its child SA is up (or its session gives up).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ikehub::config::{NetworkSpec, ProtectedNetwork};
use ikehub::esp::{DropReason, EncapOutcome, EncapParams, Received, SecurityAssociation};
use ikehub::ike::{ChildRequest, ChildSaInfo, Event, IkeSession, PeerConfig};
use ikehub::wire::udp_encap::{UdpEncapPayload, classify};
use rand::RngExt;
use rand::rngs::StdRng;
use tokio::sync::{Semaphore, watch};

use super::inner;
use super::stats::{SetupStats, SpokeStats};
use crate::ike::spis::HostSpis;

/// What the spokes are asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Bring the tunnels up (IKE only, no traffic yet).
    Setup,
    /// Send and receive.
    Traffic,
    /// Stop sending, keep receiving the echoes still in flight.
    Drain,
    /// End the task.
    Stop,
}

pub struct Spoke {
    pub index: usize,
    pub addr: IpAddr,
    pub host: IpAddr,
    pub socket: std::net::UdpSocket,
    /// Its side of the policy (IPv6: with its own phase-1 identity).
    pub config: Arc<PeerConfig>,
}

/// What all spokes share.
pub struct Env {
    /// The spokes' inbound SPIs are the hub's outbound ones: unique across spokes.
    pub spis: Arc<HostSpis>,
    pub hub_ike: SocketAddr,
    pub hub_nat_t: SocketAddr,
    pub hub_lan: IpAddr,
    pub window: u32,
    pub stats: Arc<[SpokeStats]>,
    pub setup: Arc<SetupStats>,
    /// Setup slots: handshakes in flight at the same time.
    pub gate: Arc<Semaphore>,
    pub epoch: Instant,
}

/// UDP port of the cleartext packets (both ends; the echo swaps them anyway).
pub const SPOKE_PORT: u16 = 9000;
pub const LAN_PORT: u16 = 7;
/// Headroom kept in front of a received datagram (decap may rebuild headers there).
const HEADROOM: usize = 64;
/// An echo not back after this long is taken as lost and its window slot reused.
const LOSS_TIMEOUT: Duration = Duration::from_millis(250);
/// Far enough to mean "not armed".
const NEVER: Duration = Duration::from_secs(86400 * 365);

struct Tunnel {
    outbound: SecurityAssociation,
    inbound: SecurityAssociation,
}

fn build(info: ChildSaInfo, st: &SpokeStats) -> Result<Tunnel, String> {
    let now = Instant::now();
    let spi = |p: &ikehub::esp::SaParams| p.esp.as_ref().map_or(0, |k| u64::from(k.spi));
    SpokeStats::set(&st.out_spi, spi(&info.outbound));
    SpokeStats::set(&st.in_spi, spi(&info.inbound));
    let inbound = SecurityAssociation::new(info.inbound, now).map_err(|e| e.to_string())?;
    let outbound = SecurityAssociation::new(info.outbound, now).map_err(|e| e.to_string())?;
    Ok(Tunnel { outbound, inbound })
}

pub async fn run(spoke: Spoke, env: Arc<Env>, mut phase: watch::Receiver<Phase>) {
    let Spoke {
        index,
        addr,
        host,
        socket,
        config,
    } = spoke;
    let st = &env.stats[index];
    let setup = &env.setup;
    let port = socket.local_addr().map_or(0, |a| a.port());
    let name = || {
        format!(
            "{} ({})",
            super::policy_name(index),
            SocketAddr::new(addr, port)
        )
    };
    let sock = match tokio::net::UdpSocket::from_std(socket) {
        Ok(s) => s,
        Err(e) => {
            setup.note_failure(format!("{}: socket: {e}", name()));
            return;
        }
    };

    // ---- wait for a setup slot -------------------------------------------------------------
    let mut current = *phase.borrow();
    let mut permit = loop {
        if current == Phase::Stop {
            return;
        }
        tokio::select! {
            p = env.gate.clone().acquire_owned() => match p {
                Ok(p) => break Some(p),
                Err(_) => return,
            },
            changed = phase.changed() => {
                current = if changed.is_ok() { *phase.borrow() } else { Phase::Stop };
            }
        }
    };
    let started = Instant::now();
    SpokeStats::add(&setup.started, 1);
    let network = ProtectedNetwork {
        local: NetworkSpec::Host(host),
        remote: NetworkSpec::Host(env.hub_lan),
    };
    let mut session = IkeSession::new_initiator(
        config,
        SocketAddr::new(addr, port),
        env.hub_ike,
        started,
        Box::new(rand::make_rng::<StdRng>()),
        env.spis.clone(),
    );
    session.initiate_child(started, ChildRequest { network });

    let mut tunnel: Option<Tunnel> = None;
    let mut last_error: Option<String> = None;
    let mut last_tx: Vec<u8> = Vec::new();
    let mut rng: StdRng = rand::make_rng();
    let mut inner = vec![0u8; 1500];
    let mut out = vec![0u8; 2048];
    let mut rx = vec![0u8; 2048 + HEADROOM];
    let mut next_tag: u64 = 0;
    let mut ip_id: u16 = index as u16;
    let mut outstanding: u32 = 0;
    let hub_esp = env.hub_nat_t;
    let (icmp_source, icmp_source_v6) = match addr {
        IpAddr::V4(a) => (a, Ipv6Addr::UNSPECIFIED),
        IpAddr::V6(a) => (Ipv4Addr::UNSPECIFIED, a),
    };
    let loss_timer = tokio::time::sleep(LOSS_TIMEOUT);
    tokio::pin!(loss_timer);
    let ike_timer = tokio::time::sleep(NEVER);
    tokio::pin!(ike_timer);
    let mut ike_armed: Option<Instant> = None;
    loop {
        // The session's outputs, events first (docs/design.md: the SA pair before the message).
        while let Some(ev) = session.poll_event() {
            match ev {
                Event::ChildSaEstablished(info) | Event::ChildSaRekeyed { new: info, .. } => {
                    match build(info, st) {
                        Ok(t) => tunnel = Some(t),
                        Err(e) => last_error = Some(format!("negotiated SA cannot be built: {e}")),
                    }
                }
                Event::Failed { reason, notify } => {
                    last_error = Some(match notify {
                        Some(n) => format!("{n}: {reason}"),
                        None => reason,
                    });
                }
                _ => {}
            }
        }
        while let Some(t) = session.poll_transmit() {
            if permit.is_some() && t.bytes.len() > 1 {
                SpokeStats::add(&setup.transmits, 1);
                if t.bytes == last_tx {
                    SpokeStats::add(&setup.retransmits, 1);
                }
                last_tx.clone_from(&t.bytes);
            }
            if sock.send_to(&t.bytes, t.destination).await.is_err() {
                SpokeStats::add(&st.send_errors, 1);
            }
        }
        if permit.is_some() {
            if tunnel.is_some() {
                // Up: give the slot to the next spoke.
                permit = None;
                let took = started.elapsed().as_micros() as u64;
                SpokeStats::add(&setup.up, 1);
                SpokeStats::add(&st.ike_up, 1);
                SpokeStats::add(&setup.handshake_us_sum, took);
                setup
                    .handshake_us_max
                    .fetch_max(took, std::sync::atomic::Ordering::Relaxed);
                setup.last_up_us.fetch_max(
                    env.epoch.elapsed().as_micros() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                last_tx = Vec::new();
            } else if last_error.is_some() || session.is_closed() {
                setup.note_failure(format!(
                    "{}: {}",
                    name(),
                    last_error.as_deref().unwrap_or("IKE session closed")
                ));
                return;
            }
        }
        let deadline = session.poll_timeout();
        if deadline != ike_armed {
            ike_armed = deadline;
            let at = deadline.map_or_else(
                || tokio::time::Instant::now() + NEVER,
                tokio::time::Instant::from_std,
            );
            ike_timer.as_mut().reset(at);
        }
        if current == Phase::Stop {
            if permit.is_some() {
                setup.note_failure(format!("{}: not up when the setup time ran out", name()));
            }
            break;
        }
        while let (Phase::Traffic, Some(t)) = (current, tunnel.as_mut()) {
            if outstanding >= env.window {
                break;
            }
            let len = rng.random_range(256..=1400usize);
            // The tag carries the spoke index and a sequence number, checked on the echo.
            let tag = ((index as u64) << 32) | (next_tag & 0xffff_ffff);
            next_tag += 1;
            let n = inner::write(
                &mut inner,
                host,
                env.hub_lan,
                (SPOKE_PORT, LAN_PORT),
                len,
                tag,
            );
            ip_id = ip_id.wrapping_add(1);
            let params = EncapParams {
                path_mtu: 1500,
                ip_id,
                icmp_source,
                icmp_source_v6,
            };
            let now = Instant::now();
            let range = match t
                .outbound
                .encap(now, &inner[..n], &params, &mut rng, &mut out)
            {
                Ok(EncapOutcome::Send(o)) | Ok(EncapOutcome::Fragment(o)) => o.socket_payload(),
                _ => {
                    SpokeStats::add(&st.send_errors, 1);
                    break;
                }
            };
            match sock.send_to(&out[range], hub_esp).await {
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
                loss_timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + LOSS_TIMEOUT);
            }
        }
        tokio::select! {
            changed = phase.changed() => {
                current = if changed.is_ok() { *phase.borrow() } else { Phase::Stop };
            }
            _ = &mut ike_timer, if ike_armed.is_some() => {
                ike_armed = None;
                session.handle_timeout(Instant::now());
            }
            r = sock.recv_from(&mut rx[HEADROOM..]) => {
                let Ok((len, from)) = r else {
                    SpokeStats::add(&st.other_drops, 1);
                    continue;
                };
                let data = &rx[HEADROOM..HEADROOM + len];
                let now = Instant::now();
                if from == env.hub_ike {
                    session.handle_datagram(now, from, false, data);
                    continue;
                }
                if from != env.hub_nat_t {
                    SpokeStats::add(&st.other_drops, 1);
                    continue;
                }
                if matches!(classify(data), UdpEncapPayload::Ike(_)) {
                    // Non-ESP marker (RFC 3948 §2.2): IKE after the float.
                    session.handle_datagram(now, from, true, data);
                    continue;
                }
                let Some(t) = tunnel.as_mut() else {
                    SpokeStats::add(&st.other_drops, 1);
                    continue;
                };
                outstanding = outstanding.saturating_sub(1);
                loss_timer.as_mut().reset(tokio::time::Instant::now() + LOSS_TIMEOUT);
                let received = Received::Udp { src: from.ip(), dst: addr, offset: HEADROOM };
                match t.inbound.decap(now, &mut rx[..HEADROOM + len], received) {
                    Ok(d) => {
                        let p = &rx[d.inner.clone()];
                        let ok = inner::parse(p).is_some_and(|d| {
                            d.src == env.hub_lan
                                && d.dst == host
                                && d.ports == (LAN_PORT, SPOKE_PORT)
                                && d.tag >> 32 == index as u64
                                && (d.tag & 0xffff_ffff) < next_tag
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
            _ = &mut loss_timer, if current == Phase::Traffic && tunnel.is_some() => {
                // Lost on the way (a full buffer somewhere) or a failed send: free the window.
                outstanding = 0;
                loss_timer.as_mut().reset(tokio::time::Instant::now() + LOSS_TIMEOUT);
            }
        }
    }
}

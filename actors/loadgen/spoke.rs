//! One spoke of the swarm: its own source address (UDP sockets on the IKE port, and the NAT-T
//! port with `--nat-t`), its own phase-1 ID (that address, ID_IPV4_ADDR) and its own protected
//! host, an initiator `IkeSession` (main mode + quick mode, PSK) against the hub; once the child
//! SA pair is negotiated it holds the tunnel `--hold` seconds, still answering the hub (DPD,
//! deletes), then deletes it with delete notifications (RFC 2408 §3.15) and ends. With
//! `--reconnect` a held tunnel that is lost (the hub's delete, or RFC 3706 DPD: a hub that
//! restarted knows none of our cookies and drops our R-U-THERE) is negotiated again with a new
//! session from the same sockets, after a backoff with jitter and through the swarm's in-flight
//! slots, so a restarted hub sees neither a storm nor a spoke given up on.
//!
//! The session is the project's sans-IO core, driven the way the PeerActor drives it: after
//! every input `poll_event`, then `poll_transmit`, then `poll_timeout`. A datagram is read into
//! a stack buffer only once the socket is readable, so an idle spoke holding its tunnel costs
//! its session and two sockets, not receive buffers.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ikehub::config::{NetworkSpec, ProtectedNetwork};
use ikehub::ike::stats::{FailureClass, IKE_STATS, IkeStats};
use ikehub::ike::{ChildRequest, Event, IkeSession, PeerConfig, RandomSpis, Transmit};
use rand::rngs::StdRng;
use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::report::Stats;

/// Largest IKE datagram read (main mode with a group-16 KE payload is about 700 bytes).
const MAX_DATAGRAM: usize = 4096;
/// Far enough to mean "not armed".
const NEVER: Duration = Duration::from_secs(86400 * 365);

/// Why the swarm asks its spokes to stop early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The overall `--timeout` ran out.
    Timeout,
    /// SIGINT.
    Interrupted,
}

impl Stop {
    fn class(self) -> &'static str {
        match self {
            Stop::Timeout => "overall timeout",
            Stop::Interrupted => "interrupted",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Spoke {
    /// Source address, phase-1 ID, and the UDP sockets' address.
    pub addr: Ipv4Addr,
    /// The protected host (the local quick-mode ID, a /32).
    pub host: Ipv4Addr,
}

/// What all spokes share.
pub struct Env {
    pub config: Arc<PeerConfig>,
    /// The hub's IKE address (its NAT-T port is `config.nat.nat_t_port`).
    pub hub: SocketAddrV4,
    /// The hub's protected network (the remote quick-mode ID).
    pub remote: NetworkSpec,
    pub hold: Duration,
    pub stats: Arc<Stats>,
    /// When the swarm started (the setup rate is measured from there).
    pub epoch: Instant,
    /// Our SPIs are never used for traffic: any value outside 0-255 does.
    pub spis: Arc<RandomSpis>,
    /// `--reconnect`: a held tunnel that is lost is negotiated again.
    pub reconnect: bool,
    /// The in-flight slots (`--max-in-flight`), taken by new spokes and reconnections alike.
    pub gate: Arc<Semaphore>,
}

enum Phase {
    /// Main mode and quick mode under way, holding one of the swarm's in-flight slots (given
    /// back when the phase ends).
    Setup {
        _slot: Option<OwnedSemaphorePermit>,
    },
    Holding {
        until: Instant,
    },
}

/// A UDP socket on `addr` with SO_REUSEADDR, so that the spoke can share the port with a
/// responder in the same namespace that bound the wildcard address (charon does).
fn bind(addr: SocketAddrV4) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::V4(addr).into())?;
    UdpSocket::from_std(s.into())
}

/// `Failed` reasons grouped into the report's few keys (the metric classes of the daemon).
fn failure_class(reason: &str, notify: Option<ikehub::wire::isakmp::NotifyType>) -> String {
    let class = FailureClass::of(reason, notify).label();
    match notify {
        Some(n) if class == "other" => format!("notify {n}"),
        _ => class.to_string(),
    }
}

/// How one IKE session of a spoke ended.
enum Outcome {
    /// No tunnel: main mode or quick mode failed, or the swarm stopped first (class, text).
    Failed(String, String),
    /// The tunnel was up and the hub deleted it, or DPD found the hub dead.
    Lost,
    /// We deleted the tunnel (hold over, or the swarm stopped).
    Deleted,
    /// The hold ended (or the swarm stopped) while a reconnection was under way.
    EndedDown,
    /// The swarm is gone.
    Gone,
}

/// First wait before re-initiating after a loss, doubled per failed try up to the cap; each
/// wait is drawn uniformly from its upper half (jitter), so spokes that lost their tunnels
/// together (a hub restart) do not come back in step.
const RECONNECT_BASE: Duration = Duration::from_secs(1);
const RECONNECT_CAP: Duration = Duration::from_secs(30);

fn reconnect_delay(tries: u32) -> Duration {
    let ceiling = RECONNECT_BASE
        .saturating_mul(1u32 << tries.min(16))
        .min(RECONNECT_CAP);
    ceiling.mul_f64(rand::random_range(0.5..=1.0))
}

pub async fn run(
    spoke: Spoke,
    env: Arc<Env>,
    permit: OwnedSemaphorePermit,
    mut stop: watch::Receiver<Option<Stop>>,
) {
    let st = &env.stats;
    let ike_port = env.hub.port();
    let nat_t_port = env.config.nat.nat_t_port;
    let ike = match bind(SocketAddrV4::new(spoke.addr, ike_port)) {
        Ok(s) => s,
        Err(e) => {
            let why = format!("cannot bind {}:{ike_port}: {e}", spoke.addr);
            st.note_failure(&format!("socket: {}", e.kind()), &why);
            Stats::add(&st.done, 1);
            return;
        }
    };
    let nat_t = if env.config.nat.enabled {
        match bind(SocketAddrV4::new(spoke.addr, nat_t_port)) {
            Ok(s) => Some(s),
            Err(e) => {
                let why = format!("cannot bind {}:{nat_t_port}: {e}", spoke.addr);
                st.note_failure(&format!("socket: {}", e.kind()), &why);
                Stats::add(&st.done, 1);
                return;
            }
        }
    } else {
        None
    };
    let sockets = Sockets { ike, nat_t };

    Stats::add(&st.started, 1);
    // Set when the tunnel first comes up: the hold runs from there, across reconnections.
    let mut until: Option<Instant> = None;
    let mut slot = Some(permit);
    let mut tries = 0u32;
    loop {
        let outcome = session(spoke, &env, &sockets, slot.take(), &mut until, &mut stop).await;
        match outcome {
            Outcome::Failed(class, text) => {
                if until.is_none() || !env.reconnect {
                    st.note_failure(&class, &text);
                    break;
                }
                // A reconnection failed (the hub not back yet): try again, later.
                tries = tries.saturating_add(1);
            }
            Outcome::Lost if env.reconnect => {
                st.note_lost(
                    env.epoch.elapsed(),
                    IkeStats::get(&IKE_STATS.retransmissions),
                );
                tries = 0;
            }
            Outcome::Lost => {
                Stats::add(&st.closed_by_peer, 1);
                break;
            }
            Outcome::Deleted => {
                Stats::add(&st.deleted, 1);
                break;
            }
            Outcome::EndedDown => {
                Stats::add(&st.down_at_end, 1);
                break;
            }
            Outcome::Gone => break,
        }
        // Down, with --reconnect: wait, then take an in-flight slot like a new spoke would, so
        // that a hub that lost every tunnel at once sees at most --max-in-flight handshakes.
        let Some(hold_end) = until else { break };
        let retry_at = tokio::time::Instant::now() + reconnect_delay(tries);
        let permit = tokio::select! {
            p = async {
                tokio::time::sleep_until(retry_at).await;
                env.gate.clone().acquire_owned().await
            } => p.ok(),
            _ = tokio::time::sleep_until(hold_end.into()) => None,
            _ = stop.wait_for(Option::is_some) => None,
        };
        let Some(permit) = permit else {
            Stats::add(&st.down_at_end, 1);
            break;
        };
        Stats::add(&st.reconnect_attempts, 1);
        slot = Some(permit);
    }
    Stats::add(&st.done, 1);
}

struct Sockets {
    ike: UdpSocket,
    nat_t: Option<UdpSocket>,
}

/// One IKE session of the spoke, from main-mode message 1 to its end. `until` is the end of
/// the hold: unset on the first session (set when the tunnel comes up), set on a reconnection.
async fn session(
    spoke: Spoke,
    env: &Env,
    sockets: &Sockets,
    permit: Option<OwnedSemaphorePermit>,
    until: &mut Option<Instant>,
    stop: &mut watch::Receiver<Option<Stop>>,
) -> Outcome {
    let st = &env.stats;
    let (ike, nat_t) = (&sockets.ike, sockets.nat_t.as_ref());
    let reconnecting = until.is_some();
    let started = Instant::now();
    let mut session = IkeSession::new_initiator(
        env.config.clone(),
        SocketAddr::V4(SocketAddrV4::new(spoke.addr, env.hub.port())),
        SocketAddr::V4(env.hub),
        started,
        Box::new(rand::make_rng::<StdRng>()),
        env.spis.clone(),
    );
    let network = ProtectedNetwork {
        local: NetworkSpec::Host(spoke.host.into()),
        remote: env.remote,
    };
    session.initiate_child(started, ChildRequest { network });

    let mut phase = Phase::Setup { _slot: permit };
    let mut failure: Option<(String, String)> = None;
    let ike_timer = tokio::time::sleep(NEVER);
    tokio::pin!(ike_timer);
    let mut ike_armed: Option<Instant> = None;
    let hold_timer =
        tokio::time::sleep(until.map_or(NEVER, |u| u.saturating_duration_since(Instant::now())));
    tokio::pin!(hold_timer);
    loop {
        let now = Instant::now();
        while let Some(ev) = session.poll_event() {
            match ev {
                Event::ChildSaEstablished(_) if matches!(phase, Phase::Setup { .. }) => {
                    // The in-flight slot goes back with the old phase.
                    let hold_end = match *until {
                        Some(u) => {
                            st.note_reconnected(now - env.epoch);
                            u
                        }
                        None => {
                            st.note_up(now - started, now - env.epoch);
                            let u = now + env.hold;
                            *until = Some(u);
                            u
                        }
                    };
                    hold_timer.as_mut().reset(hold_end.into());
                    phase = Phase::Holding { until: hold_end };
                }
                Event::Failed { reason, notify } if failure.is_none() => {
                    let text = match notify {
                        Some(n) => format!("{n}: {reason}"),
                        None => reason.clone(),
                    };
                    failure = Some((failure_class(&reason, notify), text));
                }
                _ => {}
            }
        }
        let stopping = *stop.borrow();
        match &phase {
            Phase::Setup { .. } => {
                let hold_over = until.is_some_and(|u| now >= u);
                let ended = match (&failure, stopping) {
                    _ if reconnecting && (hold_over || stopping.is_some()) => {
                        Some(Outcome::EndedDown)
                    }
                    (Some((class, text)), _) => Some(Outcome::Failed(class.clone(), text.clone())),
                    _ if session.is_closed() => Some(Outcome::Failed(
                        "closed".into(),
                        "the IKE session closed".into(),
                    )),
                    (None, Some(s)) => Some(Outcome::Failed(
                        s.class().into(),
                        format!("not up after {:.1} s", started.elapsed().as_secs_f64()),
                    )),
                    (None, None) => None,
                };
                if let Some(outcome) = ended {
                    // What the session queued is a retry the swarm does not want: after an
                    // error notify in main mode it starts a new main mode at once for the child
                    // still pending (session.rs `run_pending`). A failed try stays failed (a
                    // reconnecting spoke starts a new session after its backoff).
                    while session.poll_transmit().is_some() {}
                    // Whatever is established (an ISAKMP SA) is deleted, not left to expire.
                    session.delete_all(Instant::now());
                    send_all(&mut session, ike, nat_t, st).await;
                    return outcome;
                }
                send_all(&mut session, ike, nat_t, st).await;
            }
            Phase::Holding { until } => {
                // Answers to the hub (DPD, a retransmitted quick mode 2) first.
                send_all(&mut session, ike, nat_t, st).await;
                if session.is_closed() {
                    return Outcome::Lost;
                }
                if now >= *until || stopping.is_some() {
                    session.delete_all(now);
                    send_all(&mut session, ike, nat_t, st).await;
                    return Outcome::Deleted;
                }
            }
        }
        let deadline = session.poll_timeout();
        if deadline != ike_armed {
            ike_armed = deadline;
            ike_timer
                .as_mut()
                .reset(deadline.unwrap_or_else(|| Instant::now() + NEVER).into());
        }
        let hold_armed = matches!(phase, Phase::Holding { .. }) || reconnecting;
        tokio::select! {
            r = stop.changed() => {
                if r.is_err() {
                    // The swarm is gone: nothing will read the report; stop quietly.
                    return Outcome::Gone;
                }
            }
            _ = &mut ike_timer, if ike_armed.is_some() => {
                ike_armed = None;
                session.handle_timeout(Instant::now());
            }
            _ = &mut hold_timer, if hold_armed => {}
            r = ike.readable() => {
                if r.is_ok() {
                    receive(&mut session, ike, false);
                }
            }
            r = readable(nat_t) => {
                if let (Ok(()), Some(s)) = (r, nat_t) {
                    receive(&mut session, s, true);
                }
            }
        }
    }
}

async fn readable(s: Option<&UdpSocket>) -> std::io::Result<()> {
    match s {
        Some(s) => s.readable().await,
        None => std::future::pending().await,
    }
}

/// Feeds every datagram waiting on `sock` to the session. Only the hub's datagrams count:
/// anything else arriving at the spoke's ports is dropped here.
fn receive(session: &mut IkeSession, sock: &UdpSocket, nat_t_port: bool) {
    let mut buf = [0u8; MAX_DATAGRAM];
    // Bounded: a socket buffer holds a few hundred datagrams at most; stop at 64 and let the
    // select loop come back (other inputs, the timers) before reading on.
    for _ in 0..64 {
        match sock.try_recv_from(&mut buf) {
            Ok((len, from)) => {
                if from.ip() == session.peer().ip() {
                    session.handle_datagram(Instant::now(), from, nat_t_port, &buf[..len]);
                }
            }
            Err(_) => break,
        }
    }
}

async fn send_all(
    session: &mut IkeSession,
    ike: &UdpSocket,
    nat_t: Option<&UdpSocket>,
    st: &Stats,
) {
    while let Some(Transmit {
        destination,
        source_port_nat_t,
        bytes,
    }) = session.poll_transmit()
    {
        let sock = match (source_port_nat_t, nat_t) {
            (true, Some(s)) => s,
            _ => ike,
        };
        match sock.send_to(&bytes, destination).await {
            Ok(_) => Stats::add(&st.sent, 1),
            Err(_) => Stats::add(&st.send_errors, 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_waits_double_per_failed_try_with_jitter_up_to_the_cap() {
        for (tries, ceiling) in [(0, 1), (1, 2), (2, 4), (4, 16), (5, 30), (40, 30)] {
            let ceiling = Duration::from_secs(ceiling);
            for _ in 0..200 {
                let d = reconnect_delay(tries);
                assert!(
                    d >= ceiling / 2 && d <= ceiling,
                    "try {tries}: {d:?} outside {:?}..={ceiling:?}",
                    ceiling / 2
                );
            }
        }
        // Jitter: 200 spokes lost together do not all wait the same.
        let waits: std::collections::BTreeSet<Duration> =
            (0..200).map(|_| reconnect_delay(0)).collect();
        assert!(waits.len() > 100, "{} distinct waits of 200", waits.len());
    }
}

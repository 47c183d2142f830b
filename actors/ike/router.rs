//! IkeRouter: routes IKE datagrams to the PeerActor of their peer, admits unknown initiators
//! only when an `ipsec-policy-isakmp` covers their address (before any state or DH work), turns
//! Acquires into initiations, starts permanent policies, and rebuilds a peer actor that stopped
//! (with backoff when it keeps failing).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use ikehub::config::{Initiate as InitiateMode, IsakmpPolicy, PeerSpec, Profiles};
use ikehub::ike::{IkeSession, PeerConfig, SpiAllocator};
use tracing::{debug, info, warn};

use super::peer::{
    ChildrenChanged, GetStatus, Initiate, Panic, PeerActor, PeerStatus, PeerStopped, Terminate,
};
use super::socket::IkeSockets;
use super::spis::HostSpis;
use super::{Acquire, IkeDatagram};
use crate::shard::{ConnectIke, EspShard, RemovePolicy, RemoveSa, SetPolicySa};
use ikehub::esp::Direction;
use ikehub::ike::SpiPair;

/// Responder exchanges without an ISAKMP SA yet, over all peers (DESIGN: half-open phase-1 state
/// is bounded). Each costs one peer actor and, after message 3, one DH computation.
const MAX_HALF_OPEN: usize = 2048;

/// Drops the router counts (`show counters` adds them to the shards').
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RouterCounters {
    pub ike_datagrams: u64,
    pub refused_unknown_peer: u64,
    pub refused_malformed_first_message: u64,
    pub refused_not_first_message: u64,
    pub refused_half_open_limit: u64,
    pub peers_started: u64,
    pub peers_restarted: u64,
    pub peers_died: u64,
    /// Child SA pairs refused because another policy or spoke owns the networks (claims.rs).
    pub refused_network_claims: u64,
}

struct Peer {
    addr: Addr<PeerActor>,
    policy: String,
    /// A responder that has no ISAKMP SA yet (counts against the half-open limit).
    half_open: bool,
    /// What the actor installed (it reports every change), removed by the router if the actor
    /// dies without doing it itself.
    children: Vec<SpiPair>,
    spd_key: Option<(Arc<str>, bool)>,
    /// Set by the actor when it stops cleanly (it then cleans up itself).
    clean_stop: Arc<std::sync::atomic::AtomicBool>,
}

pub struct IkeRouter {
    profiles: Arc<Profiles>,
    /// Per interface (by its local address).
    sockets: HashMap<IpAddr, IkeSockets>,
    shards: Vec<Addr<EspShard>>,
    spis: Arc<HostSpis>,
    peers: HashMap<IpAddr, Peer>,
    /// Consecutive failures per peer address, for the restart backoff.
    failures: HashMap<IpAddr, u32>,
    counters: RouterCounters,
    last_refusal_log: Option<Instant>,
    /// The last status of peers whose actor is gone (why a tunnel is down).
    history: HashMap<IpAddr, PeerStatus>,
    /// Remote networks held by peers (two spokes cannot claim the same one).
    claims: super::claims::Claims,
    /// Peers that are responders without an ISAKMP SA yet.
    half_open: usize,
}

/// All peers' status rows.
#[derive(Message)]
#[rtype(result = "Vec<PeerStatus>")]
pub struct ListPeers;

/// `ikehub initiate` / `terminate`.
#[derive(Message)]
#[rtype(result = "Result<String, String>")]
pub struct Command {
    pub policy: String,
    pub peer: Option<IpAddr>,
    pub up: bool,
}

#[derive(Message)]
#[rtype(result = "RouterCounters")]
pub struct GetCounters;

/// A reload: the new profiles, and the policies whose peers must delete their SAs (removed or
/// changed; a changed permanent policy then starts again with its new settings).
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateProfiles {
    pub profiles: Arc<Profiles>,
    pub stop: Vec<String>,
}

/// Graceful shutdown: every peer sends its deletes.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TerminateAll;

/// Starts the router on the current arbiter, reads every interface's IKE port into it, and
/// makes the shards hand it IKE from the NAT-T port (non-ESP marker) and their Acquires.
/// Shared by `ikehub run` and `ikehub demo`.
pub fn start_router(
    profiles: Arc<Profiles>,
    sockets: HashMap<IpAddr, IkeSockets>,
    shards: &[Addr<EspShard>],
    spis: Arc<HostSpis>,
) -> Result<Addr<IkeRouter>, String> {
    let readers: Vec<IkeSockets> = sockets.values().cloned().collect();
    let router = IkeRouter::new(profiles, sockets, shards.to_vec(), spis).start();
    for s in &readers {
        s.spawn_reader(router.clone().recipient())
            .map_err(|e| format!("IKE socket {}: {e}", s.ike_addr))?;
    }
    for s in shards {
        s.do_send(ConnectIke {
            ike: router.clone().recipient(),
            acquire: router.clone().recipient(),
        });
    }
    Ok(router)
}

impl IkeRouter {
    pub fn new(
        profiles: Arc<Profiles>,
        sockets: HashMap<IpAddr, IkeSockets>,
        shards: Vec<Addr<EspShard>>,
        spis: Arc<HostSpis>,
    ) -> Self {
        IkeRouter {
            // Reserved from load, whether or not the owners' tunnels ever come up.
            claims: super::claims::Claims::new(&profiles),
            profiles,
            sockets,
            shards,
            spis,
            peers: HashMap::new(),
            failures: HashMap::new(),
            counters: RouterCounters::default(),
            last_refusal_log: None,
            history: HashMap::new(),
            half_open: 0,
        }
    }

    /// The policy that admits `ip` on the interface with address `local`: a policy naming the
    /// address wins over a block, a block over `any`; among blocks the smallest.
    fn admitting_policy(&self, local: IpAddr, ip: IpAddr) -> Option<Arc<IsakmpPolicy>> {
        let iface = self
            .profiles
            .interfaces
            .values()
            .find(|i| i.address == local)?;
        let mut best: Option<(u64, &Arc<IsakmpPolicy>)> = None;
        for p in self.profiles.isakmp_policies.values() {
            if p.interface != iface.name {
                continue;
            }
            let rank = match (&p.peer, ip) {
                (PeerSpec::Address(a), _) if *a == ip => 0,
                (PeerSpec::Block(b), IpAddr::V4(v4)) if b.contains(v4) => {
                    1 + u64::from(u32::from(b.last()) - u32::from(b.first()))
                }
                (PeerSpec::Any, _) => u64::MAX,
                _ => continue,
            };
            if best.is_none_or(|(r, _)| rank < r) {
                best = Some((rank, p));
            }
        }
        best.map(|(_, p)| p.clone())
    }

    fn spawn_peer(
        &mut self,
        policy: &Arc<IsakmpPolicy>,
        local: IpAddr,
        peer_ip: IpAddr,
        // A responder answers where the first message came from; an initiator calls the
        // peer's IKE port.
        peer_port: Option<u16>,
        initiator: bool,
        ctx: &mut Context<Self>,
    ) -> Option<Addr<PeerActor>> {
        let iface = self.profiles.interfaces.get(&policy.interface)?;
        let sockets = self.sockets.get(&local)?.clone();
        let template = !matches!(policy.peer, PeerSpec::Address(_));
        let spd_key: Arc<str> = if template {
            Arc::from(format!("{}@{peer_ip}", policy.name))
        } else {
            Arc::from(policy.name.as_str())
        };
        let mut config = PeerConfig::from_policy(policy, iface);
        config.selector_guard = Some(self.claims.guard(spd_key.clone(), template));
        let config = Arc::new(config);
        let local_addr = SocketAddr::new(local, iface.ike_port);
        let peer_addr = SocketAddr::new(peer_ip, peer_port.unwrap_or(iface.ike_port));
        let now = Instant::now();
        let rng: Box<rand::rngs::StdRng> = Box::new(rand::make_rng());
        let spis: Arc<dyn SpiAllocator> = self.spis.clone();
        let session = if initiator {
            IkeSession::new_initiator(config, local_addr, peer_addr, now, rng, spis)
        } else {
            IkeSession::new_responder(config, local_addr, peer_addr, now, rng, spis)
        };
        let clean_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let actor = PeerActor::new(
            session,
            policy.name.clone(),
            spd_key,
            peer_addr,
            sockets,
            self.shards.clone(),
            ctx.address(),
            !template,
            policy.protected_networks.clone(),
            clean_stop.clone(),
            self.claims.clone(),
        )
        .start();
        self.counters.peers_started += 1;
        if !initiator {
            self.half_open += 1;
        }
        if let Some(old) = self.peers.remove(&peer_ip)
            && old.half_open
        {
            self.half_open -= 1;
        }
        self.peers.insert(
            peer_ip,
            Peer {
                addr: actor.clone(),
                policy: policy.name.clone(),
                children: Vec::new(),
                spd_key: None,
                clean_stop,
                half_open: !initiator,
            },
        );
        Some(actor)
    }

    fn log_refusal(&mut self, msg: String) {
        // At most one line per second: a flood must not become a log flood.
        let now = Instant::now();
        if self
            .last_refusal_log
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.last_refusal_log = Some(now);
            warn!("{msg}");
        }
    }

    /// Starts the initiators of permanent single-peer policies.
    pub fn start_permanent(&mut self, ctx: &mut Context<Self>) {
        let policies: Vec<Arc<IsakmpPolicy>> = self
            .profiles
            .isakmp_policies
            .values()
            .filter(|p| p.initiate == InitiateMode::Permanent)
            .cloned()
            .collect();
        for p in policies {
            let PeerSpec::Address(peer) = p.peer else {
                continue;
            };
            let Some(local) = self
                .profiles
                .interfaces
                .get(&p.interface)
                .map(|i| i.address)
            else {
                continue;
            };
            if !self.peers.contains_key(&peer) {
                info!(policy = %p.name, %peer, "permanent policy: initiating");
                if let Some(a) = self.spawn_peer(&p, local, peer, None, true, ctx) {
                    a.do_send(Initiate);
                }
            }
        }
    }
}

impl IkeRouter {
    /// Takes a peer out of the table, keeping the half-open count right.
    fn forget_peer(&mut self, ip: &IpAddr) -> Option<Peer> {
        let p = self.peers.remove(ip)?;
        if p.half_open {
            self.half_open -= 1;
        }
        Some(p)
    }

    /// Supervision: a peer actor that died without stopping cleanly has its SAs and policy
    /// removed here, its death recorded, and is rebuilt like one that stopped. (actix runs
    /// `stopped` even when a handler panics, so this is the net under that net; it is checked
    /// when the peer is next needed, never by scanning all peers.) Returns true if it reaped.
    fn reap_if_dead(&mut self, ip: IpAddr, ctx: &mut Context<Self>) -> bool {
        let dead = self.peers.get(&ip).is_some_and(|p| {
            !p.addr.connected() && !p.clean_stop.load(std::sync::atomic::Ordering::Acquire)
        });
        if !dead {
            return false;
        }
        {
            let Some(p) = self.forget_peer(&ip) else {
                return false;
            };
            warn!(
                policy = %p.policy,
                peer = %ip,
                "peer actor died; removing its {} child SA pair(s) and starting over",
                p.children.len()
            );
            let n = self.shards.len() as u32;
            for c in &p.children {
                self.shards[crate::io::spi_shard(c.inbound, n) as usize].do_send(RemoveSa {
                    direction: Direction::Inbound,
                    spi: c.inbound,
                });
                self.shards[crate::io::spi_shard(c.outbound, n) as usize].do_send(RemoveSa {
                    direction: Direction::Outbound,
                    spi: c.outbound,
                });
                self.spis.release(c.inbound);
            }
            if let Some((key, keep)) = &p.spd_key {
                self.claims.release(key);
                for s in &self.shards {
                    if *keep {
                        s.do_send(SetPolicySa {
                            policy: key.clone(),
                            outbound_spi: None,
                        });
                    } else {
                        s.do_send(RemovePolicy {
                            policy: key.clone(),
                        });
                    }
                }
            }
            self.counters.peers_died += 1;
            let status = PeerStatus {
                policy: p.policy.clone(),
                peer: ip.to_string(),
                state: "failed".into(),
                last_error: Some("the peer's actor died (internal error); restarted".into()),
                ..PeerStatus::default()
            };
            ctx.notify(PeerStopped {
                peer: ip,
                policy: p.policy,
                failed: true,
                status,
            });
        }
        true
    }
}

impl Actor for IkeRouter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.start_permanent(ctx);
    }
}

impl Handler<ChildrenChanged> for IkeRouter {
    type Result = ();
    fn handle(&mut self, msg: ChildrenChanged, _: &mut Context<Self>) {
        if let Some(p) = self.peers.get_mut(&msg.peer) {
            p.children = msg.children;
            p.spd_key = Some((msg.spd_key, msg.keep_policy));
        }
    }
}

/// A peer's phase 1 completed: it no longer counts as half open.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Phase1Up {
    pub peer: IpAddr,
}

impl Handler<Phase1Up> for IkeRouter {
    type Result = ();
    fn handle(&mut self, msg: Phase1Up, _: &mut Context<Self>) {
        if let Some(p) = self.peers.get_mut(&msg.peer)
            && p.half_open
        {
            p.half_open = false;
            self.half_open -= 1;
        }
    }
}

/// Test-only: make the peer actor of `peer` panic (`IKEHUB_TEST_FAULTS=1`).
#[derive(Message)]
#[rtype(result = "Result<String, String>")]
pub struct InjectFault {
    pub peer: IpAddr,
}

impl Handler<InjectFault> for IkeRouter {
    type Result = Result<String, String>;
    fn handle(&mut self, msg: InjectFault, _: &mut Context<Self>) -> Self::Result {
        if std::env::var("IKEHUB_TEST_FAULTS").as_deref() != Ok("1") {
            return Err("fault injection is disabled (set IKEHUB_TEST_FAULTS=1 for tests)".into());
        }
        let p = self
            .peers
            .get(&msg.peer)
            .ok_or_else(|| format!("no peer actor for {}", msg.peer))?;
        p.addr.do_send(Panic);
        Ok(format!("peer actor of {} told to panic", msg.peer))
    }
}

impl Handler<IkeDatagram> for IkeRouter {
    type Result = ();
    fn handle(&mut self, msg: IkeDatagram, ctx: &mut Context<Self>) {
        self.counters.ike_datagrams += 1;
        let ip = msg.from.ip();
        debug!(from = %msg.from, nat_t = msg.nat_t, len = msg.bytes.len(), "IKE datagram");
        self.reap_if_dead(ip, ctx);
        if let Some(p) = self.peers.get(&ip) {
            p.addr.do_send(msg);
            return;
        }
        let Some(policy) = self.admitting_policy(msg.local.ip(), ip) else {
            self.counters.refused_unknown_peer += 1;
            self.log_refusal(format!(
                "IKE from {} refused: no ipsec-policy-isakmp on {} admits this address",
                msg.from,
                msg.local.ip()
            ));
            return;
        };
        // A flood of first messages (from many addresses a template admits) must not turn into
        // unbounded state: past the limit, new responders wait until others finish or fail.
        if self.half_open >= MAX_HALF_OPEN {
            self.counters.refused_half_open_limit += 1;
            self.log_refusal(format!(
                "IKE from {} dropped: {MAX_HALF_OPEN} exchanges are already half open",
                msg.from
            ));
            return;
        }
        match ikehub::ike::peek_first_message(&msg.bytes) {
            Ok(info) if info.main_mode_start || info.aggressive => {}
            Ok(_) => {
                // A late message of an exchange that is over (e.g. retransmissions after a
                // failure): no state is created for it.
                self.counters.refused_not_first_message += 1;
                debug!(from = %msg.from, "IKE dropped: no exchange with this peer");
                return;
            }
            Err(e) => {
                self.counters.refused_malformed_first_message += 1;
                self.log_refusal(format!("IKE from {} dropped: {e}", msg.from));
                return;
            }
        }
        if let Some(actor) = self.spawn_peer(
            &policy,
            msg.local.ip(),
            ip,
            Some(msg.from.port()),
            false,
            ctx,
        ) {
            actor.do_send(msg);
        }
    }
}

impl Handler<Acquire> for IkeRouter {
    type Result = ();
    fn handle(&mut self, msg: Acquire, ctx: &mut Context<Self>) {
        let Some(policy) = self.profiles.isakmp_policies.get(&*msg.policy).cloned() else {
            return;
        };
        if policy.initiate == InitiateMode::Never {
            return;
        }
        let PeerSpec::Address(peer) = policy.peer else {
            // A template policy cannot initiate: it does not know which spoke to call.
            return;
        };
        self.reap_if_dead(peer, ctx);
        if let Some(p) = self.peers.get(&peer) {
            p.addr.do_send(Initiate);
            return;
        }
        let Some(local) = self
            .profiles
            .interfaces
            .get(&policy.interface)
            .map(|i| i.address)
        else {
            return;
        };
        info!(policy = %policy.name, %peer, "on-demand: traffic {} -> {} initiates", msg.src, msg.dst);
        if let Some(a) = self.spawn_peer(&policy, local, peer, None, true, ctx) {
            a.do_send(Initiate);
        }
    }
}

impl Handler<PeerStopped> for IkeRouter {
    type Result = ();
    fn handle(&mut self, msg: PeerStopped, ctx: &mut Context<Self>) {
        self.history.insert(msg.peer, msg.status.clone());
        if self
            .peers
            .get(&msg.peer)
            .is_some_and(|p| p.policy == msg.policy && !p.addr.connected())
        {
            self.forget_peer(&msg.peer);
        }
        let Some(policy) = self.profiles.isakmp_policies.get(&msg.policy).cloned() else {
            return;
        };
        if policy.initiate != InitiateMode::Permanent {
            return;
        }
        let n = self.failures.entry(msg.peer).or_default();
        *n = if msg.failed { n.saturating_add(1) } else { 0 };
        // Rebuilt within a second; 2 s, 4 s ... up to 60 s between attempts of a peer that
        // keeps failing.
        let wait =
            Duration::from_secs(1u64 << n.saturating_sub(1).min(6)).min(Duration::from_secs(60));
        self.counters.peers_restarted += 1;
        ctx.run_later(wait, |act, ctx| act.start_permanent(ctx));
    }
}

impl Handler<ListPeers> for IkeRouter {
    type Result = ResponseFuture<Vec<PeerStatus>>;
    fn handle(&mut self, _: ListPeers, _: &mut Context<Self>) -> Self::Result {
        let addrs: Vec<Addr<PeerActor>> = self.peers.values().map(|p| p.addr.clone()).collect();
        // Peers without a live actor: their last status, or for a configured single-peer
        // policy never tried yet, an idle row, so every configured peer is listed.
        let mut quiet: Vec<PeerStatus> = self
            .history
            .iter()
            .filter(|(ip, _)| !self.peers.contains_key(ip))
            .map(|(_, s)| s.clone())
            .collect();
        for p in self.profiles.isakmp_policies.values() {
            if let PeerSpec::Address(ip) = p.peer
                && !self.peers.contains_key(&ip)
                && !self.history.contains_key(&ip)
            {
                quiet.push(PeerStatus {
                    policy: p.name.clone(),
                    peer: ip.to_string(),
                    state: "idle".into(),
                    ..PeerStatus::default()
                });
            }
        }
        Box::pin(async move {
            let mut rows = quiet;
            for a in addrs {
                if let Ok(s) = a.send(GetStatus).await {
                    rows.push(s);
                }
            }
            rows.sort_by(|a, b| (&a.policy, &a.peer).cmp(&(&b.policy, &b.peer)));
            rows
        })
    }
}

impl Handler<Command> for IkeRouter {
    type Result = Result<String, String>;
    fn handle(&mut self, msg: Command, ctx: &mut Context<Self>) -> Self::Result {
        let Some(policy) = self.profiles.isakmp_policies.get(&msg.policy).cloned() else {
            return Err(format!("no ipsec-policy-isakmp named {}", msg.policy));
        };
        let peer = match (msg.peer, policy.peer) {
            (Some(p), _) => p,
            (None, PeerSpec::Address(a)) => a,
            (None, _) => {
                return Err(format!(
                    "{} is a template policy: name the spoke with --peer ADDR",
                    msg.policy
                ));
            }
        };
        self.reap_if_dead(peer, ctx);
        if msg.up {
            if let Some(p) = self.peers.get(&peer) {
                p.addr.do_send(Initiate);
                return Ok(format!("{}: initiating with {peer}", msg.policy));
            }
            let local = self
                .profiles
                .interfaces
                .get(&policy.interface)
                .map(|i| i.address)
                .ok_or("interface missing")?;
            let a = self
                .spawn_peer(&policy, local, peer, None, true, ctx)
                .ok_or("cannot start the peer")?;
            a.do_send(Initiate);
            Ok(format!("{}: initiating with {peer}", msg.policy))
        } else {
            match self.peers.get(&peer) {
                Some(p) => {
                    p.addr.do_send(Terminate);
                    Ok(format!("{}: deleting the SAs with {peer}", msg.policy))
                }
                None => Err(format!("{}: nothing is up with {peer}", msg.policy)),
            }
        }
    }
}

impl Handler<GetCounters> for IkeRouter {
    type Result = MessageResult<GetCounters>;
    fn handle(&mut self, _: GetCounters, _: &mut Context<Self>) -> Self::Result {
        let mut c = self.counters.clone();
        c.refused_network_claims = self.claims.refused();
        MessageResult(c)
    }
}

impl Handler<UpdateProfiles> for IkeRouter {
    type Result = ();
    fn handle(&mut self, msg: UpdateProfiles, ctx: &mut Context<Self>) {
        self.profiles = msg.profiles;
        // The new reservations win over spokes that hold a network a new policy owns.
        let displaced = self.claims.reserve(&self.profiles);
        for p in self.peers.values() {
            let holds_reserved = p
                .spd_key
                .as_ref()
                .is_some_and(|(k, _)| displaced.contains(k));
            if holds_reserved {
                warn!(policy = %p.policy, "a reload reserved networks this spoke held: deleting its SAs");
            }
            if msg.stop.contains(&p.policy) || holds_reserved {
                p.addr.do_send(Terminate);
            }
        }
        self.history.retain(|_, s| !msg.stop.contains(&s.policy));
        self.start_permanent(ctx);
    }
}

impl Handler<TerminateAll> for IkeRouter {
    type Result = ();
    fn handle(&mut self, _: TerminateAll, _: &mut Context<Self>) {
        for p in self.peers.values() {
            p.addr.do_send(Terminate);
        }
    }
}

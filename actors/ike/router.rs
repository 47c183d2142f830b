//! IkeRouter: routes IKE datagrams to the PeerActor of their session through the sans-IO
//! `ikehub::ike::demux::Demux` (by our ISAKMP cookies; a main-mode message 1 by address and
//! port), admits unknown initiators only when an `ipsec-policy-isakmp` covers their address
//! (before any state or DH work) and within the half-open bounds, turns Acquires into
//! initiations, starts permanent policies, and rebuilds a peer actor that stopped (with backoff
//! when it keeps failing).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use ikehub::config::{Initiate as InitiateMode, IsakmpPolicy, PeerSpec, Profiles};
use ikehub::ike::demux::{Demux, DropReason, HalfOpenLimits, PeerId, Role, Route};
use ikehub::ike::dh::DhKeyCache;
use ikehub::ike::stats::{IKE_STATS, IkeStats};
use ikehub::ike::{IkeSession, PeerConfig, SpiAllocator};
use tracing::{debug, info, warn};

use super::history::{History, Kind};
use super::peer::{
    ChildrenChanged, Evict, GetStatus, Initiate, Panic, PeerActor, PeerStatus, PeerStopped,
    PolicyPeers, Terminate,
};
use super::socket::IkeSockets;
use super::spis::HostSpis;
use crate::events::EventLog;
use crate::messages::{Acquire, ConnectIke, IkeDatagram};
use crate::shard::{self, EspShard, RemovePolicy, SaPair};

/// Datagrams waiting for the router, and for each peer actor: past these, datagrams are dropped
/// and counted rather than queued without bound.
pub const ROUTER_MAILBOX: usize = 4096;
pub const PEER_MAILBOX: usize = 64;

/// How often refusals and failures of unknown initiators are summed up in the log, and the
/// least gap between two of them logged in full.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);
const REFUSAL_LOG_GAP: Duration = Duration::from_secs(1);

/// Drops the router counts (`show counters` adds them to the shards').
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RouterCounters {
    pub ike_datagrams: u64,
    pub refused_unknown_peer: u64,
    pub refused_malformed: u64,
    pub refused_unknown_cookies: u64,
    pub refused_aggressive: u64,
    /// New exchanges refused while the daemon stops (`Demux::stop_admitting`).
    pub refused_stopping: u64,
    /// Half-open exchanges evicted (the oldest, to admit a new one past a bound).
    pub half_open_evicted: u64,
    /// Datagrams dropped because a peer actor's mailbox was full.
    pub dropped_peer_busy: u64,
    /// Datagrams read from an IKE port and dropped because the router's mailbox was full.
    pub dropped_router_busy: u64,
    /// Exchanges with initiators that never authenticated and failed or timed out.
    pub unauthenticated_failures: u64,
    pub peers_started: u64,
    pub peers_restarted: u64,
    pub peers_died: u64,
    /// Child SA pairs refused because another policy or spoke owns the networks (claims.rs).
    pub refused_network_claims: u64,
    /// Exchanges half-open right now (a gauge; the demux's admission bound applies).
    pub half_open: u64,
    /// From the sessions (src/ike/stats.rs): main-mode exchanges begun and completed.
    pub handshakes_started: u64,
    pub handshakes_completed: u64,
    /// Failed exchanges by class (`FailureClass`).
    pub handshakes_failed_timeout: u64,
    pub handshakes_failed_no_proposal_chosen: u64,
    pub handshakes_failed_authentication: u64,
    pub handshakes_failed_other: u64,
    pub retransmissions: u64,
    pub dpd_deaths: u64,
    pub rekeys: u64,
    /// Datagrams the kernel dropped at the IKE sockets (receive buffer full), summed over
    /// every interface's IKE port and the NAT-T socket that carries IKE (`IkeSockets::drops`).
    pub ike_socket_drops: u64,
    /// Peer actors and CPU time per IKE worker (`[system] ike-workers`).
    pub workers: Vec<super::workers::WorkerLoad>,
}

impl RouterCounters {
    /// The refusal counters, for the periodic summary.
    fn refusals(&self) -> [(u64, &'static str); 7] {
        [
            (self.refused_unknown_peer, "from addresses no policy admits"),
            (self.refused_malformed, "malformed"),
            (self.refused_unknown_cookies, "with unknown cookies"),
            (self.refused_aggressive, "aggressive mode (refused)"),
            (self.refused_stopping, "new exchanges while stopping"),
            (self.half_open_evicted, "half-open exchanges evicted"),
            (
                self.unauthenticated_failures,
                "exchanges with unauthenticated initiators failed",
            ),
        ]
    }
}

struct Peer {
    addr: Addr<PeerActor>,
    /// The policy's name (`PolicyShared::name`).
    policy: Arc<str>,
    /// The peer's IP address when the actor started (for `--peer ADDR` commands).
    ip: IpAddr,
    /// Its SPD and claims key (the policy name, or `policy@ip` for a template spoke).
    spd_key: Arc<str>,
    /// A template spoke (its history row is per spoke).
    template: bool,
    /// Completed phase 1 at least once (its failures concern an authenticated peer).
    authenticated: bool,
    /// Its authenticated phase-1 identity (the actor's copy).
    identity: Option<Arc<str>>,
    /// We started it (its failures concern a peer the operator configured).
    initiator: bool,
    /// What the actor installed (it reports every change), by the handles it installed them
    /// under: removed by the router if the actor dies without doing it itself.
    children: Box<[SaPair]>,
    /// The actor installed SAs (and so owns its SPD entries and claims).
    installed: bool,
    /// Set by the actor when it stops cleanly (it then cleans up itself).
    clean_stop: Arc<std::sync::atomic::AtomicBool>,
    /// The IKE worker it runs on.
    worker: usize,
}

/// What all peers of a policy share, one copy per policy instead of one per peer (docs/design.md
/// "Per-tunnel memory budget"); rebuilt after a reload.
struct PolicyShared {
    /// The session configuration (a copy per spoke was 800 bytes per tunnel).
    config: Arc<PeerConfig>,
    /// What its peer actors share.
    peers: Arc<PolicyPeers>,
}

pub struct IkeRouter {
    profiles: Arc<Profiles>,
    /// Per interface (by its local address); each peer actor holds its interface's.
    sockets: HashMap<IpAddr, Arc<IkeSockets>>,
    /// Every shard: one list, which every peer actor shares.
    shards: Arc<[Addr<EspShard>]>,
    spis: Arc<HostSpis>,
    /// Responder DH key pairs for the policies with `dh-key-reuse-seconds`, shared by all
    /// workers.
    dh_keys: Arc<DhKeyCache>,
    demux: Demux,
    peers: HashMap<PeerId, Peer>,
    /// The actor of each single-peer policy, when one runs.
    single: HashMap<String, PeerId>,
    /// SPD keys of template spokes in use (a second spoke from one address gets its own).
    spoke_keys: HashMap<Arc<str>, PeerId>,
    /// Template spokes by (policy, authenticated name), for names that are not addresses.
    named: HashMap<(String, String), PeerId>,
    /// Consecutive failures per permanent policy, for the restart backoff.
    failures: HashMap<String, u32>,
    /// What each policy's peers share (`PolicyShared`); rebuilt after a reload.
    configs: HashMap<String, PolicyShared>,
    /// Each policy's name, one `Arc` for its demux entries, peer actors and router rows.
    names: HashMap<String, Arc<str>>,
    counters: RouterCounters,
    /// Counters at the last summary line.
    logged: [u64; 6],
    last_failure: Option<String>,
    last_refusal_log: Option<Instant>,
    /// The last status of peers whose actor is gone (why a tunnel is down).
    history: History,
    /// Remote networks held by peers (two spokes cannot claim the same one).
    claims: super::claims::Claims,
    /// Tunnel events of every peer (`show events`).
    events: EventLog,
    /// The threads peer actors run on (workers.rs).
    workers: super::workers::IkeWorkers,
    /// The daemon stops (`TerminateAll`): nothing is initiated or restarted any more.
    stopping: bool,
    /// This router's address, shared by every peer actor and its selector guard (made once:
    /// each `Addr` clone allocates its own sender state).
    me: Option<Arc<Addr<IkeRouter>>>,
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

/// A peer actor's session now uses these cookies of ours (sent before the datagrams that carry
/// them leave, so the answers find their way back).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Cookies {
    pub id: PeerId,
    pub cookies: Vec<([u8; 8], Role)>,
}

/// A peer actor's session follows its peer to a new address (authenticated NAT-T rules).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Moved {
    pub id: PeerId,
    pub to: SocketAddr,
}

/// A peer was refused a network that `holder` (an SPD/claims key) holds.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClaimContested {
    pub holder: Arc<str>,
}

/// A peer's phase 1 completed: it no longer counts as half open.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Phase1Up {
    pub id: PeerId,
    /// The peer's authenticated phase-1 identity.
    pub peer_id: Arc<str>,
}

/// Starts the router on the current arbiter and its `system.ike-workers` worker threads, reads
/// every interface's IKE port into it, and makes the shards hand it IKE from the NAT-T port
/// (non-ESP marker) and their Acquires. Shared by `ikehub run` and `ikehub demo`.
pub fn start_router(
    profiles: Arc<Profiles>,
    sockets: HashMap<IpAddr, IkeSockets>,
    shards: &[Addr<EspShard>],
    spis: Arc<HostSpis>,
    events: EventLog,
) -> Result<Addr<IkeRouter>, String> {
    let readers: Vec<IkeSockets> = sockets.values().cloned().collect();
    let router = IkeRouter::new(profiles, sockets, shards.into(), spis, events).start();
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
        shards: Arc<[Addr<EspShard>]>,
        spis: Arc<HostSpis>,
        events: EventLog,
    ) -> Self {
        IkeRouter {
            workers: super::workers::IkeWorkers::start(profiles.system.ike_workers),
            demux: Demux::new(HalfOpenLimits {
                per_source: profiles.system.half_open_per_source,
                ..HalfOpenLimits::default()
            }),
            stopping: false,
            me: None,
            events,
            // Reserved from load, whether or not the owners' tunnels ever come up.
            claims: super::claims::Claims::new(&profiles),
            profiles,
            sockets: sockets.into_iter().map(|(a, s)| (a, Arc::new(s))).collect(),
            shards,
            spis,
            dh_keys: Arc::new(DhKeyCache::new()),
            peers: HashMap::new(),
            single: HashMap::new(),
            spoke_keys: HashMap::new(),
            named: HashMap::new(),
            failures: HashMap::new(),
            configs: HashMap::new(),
            names: HashMap::new(),
            counters: RouterCounters::default(),
            logged: [0; 6],
            last_failure: None,
            last_refusal_log: None,
            history: History::default(),
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
                (PeerSpec::Block(b), _) if b.contains(ip) => {
                    // The block's size; an IPv6 block may exceed u64 but still ranks before `any`.
                    u64::try_from(b.size()).map_or(u64::MAX - 1, |n| n.min(u64::MAX - 1))
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

    /// The policy's one name `Arc` (a copy per session was an allocation per tunnel).
    fn policy_name(&mut self, policy: &IsakmpPolicy) -> Arc<str> {
        self.names
            .entry(policy.name.clone())
            .or_insert_with(|| Arc::from(policy.name.as_str()))
            .clone()
    }

    /// The SPD key of a new spoke of `policy` at `ip`: `policy@ip`, or with the session's id
    /// when another spoke from that address (behind the same NAT) holds it.
    fn spoke_key(&self, policy: &str, ip: IpAddr, id: PeerId) -> Arc<str> {
        let key: Arc<str> = Arc::from(format!("{policy}@{ip}"));
        if self.spoke_keys.contains_key(&key) {
            Arc::from(format!("{policy}@{ip}{id}"))
        } else {
            key
        }
    }

    /// Starts a peer actor for session `id`.
    #[allow(clippy::too_many_arguments)]
    fn spawn_peer(
        &mut self,
        id: PeerId,
        policy: &Arc<IsakmpPolicy>,
        local: IpAddr,
        peer_ip: IpAddr,
        // A responder answers where the first message came from; an initiator calls the
        // peer's IKE port.
        peer_port: Option<u16>,
        initiator: bool,
        ctx: &mut Context<Self>,
    ) -> Option<&Addr<PeerActor>> {
        let name = self.policy_name(policy);
        let iface = self.profiles.interfaces.get(&policy.interface)?;
        let sockets = self.sockets.get(&local)?.clone();
        let template = !matches!(policy.peer, PeerSpec::Address(_));
        let spd_key: Arc<str> = if template {
            let key = self.spoke_key(&policy.name, peer_ip, id);
            self.spoke_keys.insert(key.clone(), id);
            key
        } else {
            // The policy's actor: an initiator we start, or the first responder. A further
            // responder (the peer starting over, or someone forging its address) takes over
            // only once it authenticates (Phase1Up).
            let live = self
                .single
                .get(&policy.name)
                .is_some_and(|old| self.peers.contains_key(old));
            if initiator || !live {
                self.single.insert(policy.name.clone(), id);
            }
            Arc::from(policy.name.as_str())
        };
        let me = self
            .me
            .get_or_insert_with(|| Arc::new(ctx.address()))
            .clone();
        let shared = self
            .configs
            .entry(policy.name.clone())
            .or_insert_with(|| PolicyShared {
                config: Arc::new(PeerConfig::from_policy(policy, iface)),
                peers: Arc::new(PolicyPeers {
                    name,
                    networks: policy.protected_networks.as_slice().into(),
                    sockets,
                    shards: self.shards.clone(),
                    router: (*me).clone(),
                    claims: self.claims.clone(),
                    events: self.events.clone(),
                }),
            });
        let (config, peers) = (shared.config.clone(), shared.peers.clone());
        let name = peers.name.clone();
        let guard = self.claims.guard(spd_key.clone(), template, me.clone());
        let local_addr = SocketAddr::new(local, iface.ike_port);
        let peer_addr = SocketAddr::new(peer_ip, peer_port.unwrap_or(iface.ike_port));
        let now = Instant::now();
        let rng = Box::new(super::rng::ThreadLocalRng);
        let spis: Arc<dyn SpiAllocator> = self.spis.clone();
        let mut session = if initiator {
            IkeSession::new_initiator(config, local_addr, peer_addr, now, rng, spis)
        } else {
            IkeSession::new_responder(config, local_addr, peer_addr, now, rng, spis)
        };
        session.set_selector_guard(guard);
        if policy.dh_key_reuse_seconds > 0 {
            session.set_dh_key_cache(self.dh_keys.clone());
        }
        // The initiator's cookie is routable before its message 1 leaves.
        self.demux.set_cookies(id, &session.our_cookies());
        let clean_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let actor = PeerActor::new(
            id,
            session,
            peers,
            spd_key.clone(),
            !template,
            clean_stop.clone(),
        );
        // On a worker thread: its session's exponentiations run there, beside other workers'.
        let (worker, arbiter) = self.workers.assign();
        let actor = PeerActor::start_in_arbiter(arbiter, move |_| actor);
        self.counters.peers_started += 1;
        self.peers.insert(
            id,
            Peer {
                // The one `Addr` the router keeps (each clone allocates its own sender state).
                addr: actor,
                policy: name,
                ip: peer_ip,
                spd_key,
                template,
                authenticated: false,
                identity: None,
                initiator,
                children: Box::default(),
                installed: false,
                clean_stop,
                worker,
            },
        );
        self.peers.get(&id).map(|p| &p.addr)
    }

    /// Starts an initiator for a single-peer policy, or pokes the one that runs.
    fn initiate_single(&mut self, policy: &Arc<IsakmpPolicy>, ctx: &mut Context<Self>) {
        let PeerSpec::Address(peer) = policy.peer else {
            return;
        };
        if let Some(id) = self.single.get(&policy.name).copied() {
            self.reap_if_dead(id, ctx);
            if let Some(p) = self.peers.get(&id) {
                p.addr.do_send(Initiate);
                return;
            }
        }
        let Some(iface) = self.profiles.interfaces.get(&policy.interface) else {
            return;
        };
        let (local, port) = (iface.address, iface.ike_port);
        let policy_key = self.policy_name(policy);
        let id = self
            .demux
            .insert_initiator(SocketAddr::new(peer, port), &policy_key);
        match self.spawn_peer(id, policy, local, peer, None, true, ctx) {
            Some(a) => a.do_send(Initiate),
            None => self.demux.remove(id),
        }
    }

    /// Starts the initiators of permanent single-peer policies.
    pub fn start_permanent(&mut self, ctx: &mut Context<Self>) {
        let policies: Vec<Arc<IsakmpPolicy>> = self
            .profiles
            .isakmp_policies
            .values()
            .filter(|p| p.initiate == InitiateMode::Permanent)
            .filter(|p| matches!(p.peer, PeerSpec::Address(_)))
            .cloned()
            .collect();
        for p in policies {
            if !self.single.contains_key(&p.name) {
                info!(policy = %p.name, peer = ?p.peer, "permanent policy: initiating");
                self.initiate_single(&p, ctx);
            }
        }
    }

    /// Takes a peer out of every table.
    fn forget_peer(&mut self, id: PeerId) -> Option<Peer> {
        self.demux.remove(id);
        let p = self.peers.remove(&id)?;
        self.workers.release(p.worker);
        if self.single.get(&*p.policy) == Some(&id) {
            self.single.remove(&*p.policy);
        }
        if self.spoke_keys.get(&p.spd_key) == Some(&id) {
            self.spoke_keys.remove(&p.spd_key);
        }
        if let Some(name) = &p.identity {
            let key = (p.policy.to_string(), name.to_string());
            if self.named.get(&key) == Some(&id) {
                self.named.remove(&key);
            }
        }
        Some(p)
    }

    /// Supervision: a peer actor that died without stopping cleanly has its SAs and policy
    /// removed here, its death recorded, and is rebuilt like one that stopped. (actix runs
    /// `stopped` even when a handler panics, so this is the net under that net; it is checked
    /// when the peer is next needed, never by scanning all peers.) Returns true if it reaped.
    fn reap_if_dead(&mut self, id: PeerId, ctx: &mut Context<Self>) -> bool {
        let dead = self.peers.get(&id).is_some_and(|p| {
            !p.addr.connected() && !p.clean_stop.load(std::sync::atomic::Ordering::Acquire)
        });
        if !dead {
            return false;
        }
        let main = self
            .peers
            .get(&id)
            .is_some_and(|p| self.single.get(&*p.policy) == Some(&id));
        let Some(p) = self.forget_peer(id) else {
            return false;
        };
        warn!(
            policy = %p.policy,
            peer = %p.ip,
            "peer actor died; removing its {} child SA pair(s) and starting over",
            p.children.len()
        );
        for c in &p.children {
            // Entries of a configured policy return to "no SA yet".
            shard::remove_pair(&self.shards, c, &p.spd_key);
            self.spis.release(c.spis.inbound);
        }
        if p.installed {
            self.claims.release(&p.spd_key);
            // A configured policy's entries stay ("no SA yet"); a spoke's go.
            if p.template {
                for s in self.shards.iter() {
                    s.do_send(RemovePolicy {
                        policy: p.spd_key.clone(),
                    });
                }
            }
        }
        self.counters.peers_died += 1;
        let status = PeerStatus {
            policy: p.policy.to_string(),
            peer: p.ip.to_string(),
            state: "failed".into(),
            last_error: Some("the peer's actor died (internal error); restarted".into()),
            ..PeerStatus::default()
        };
        self.record_history(&p, status);
        if main {
            self.restart_later(&p.policy, true, ctx);
        }
        true
    }

    fn record_history(&mut self, p: &Peer, status: PeerStatus) {
        let (key, kind) = match (p.template, p.authenticated) {
            (false, _) => (p.policy.to_string(), Kind::Configured),
            (true, true) => (p.spd_key.to_string(), Kind::Spoke),
            (true, false) => (p.spd_key.to_string(), Kind::Unknown),
        };
        self.history.record(key, kind, status);
    }

    /// One summary line per interval of what was refused or failed without authentication (a
    /// flood must not become a log flood, and an operator still learns of it).
    fn log_summary(&mut self) {
        let now: Vec<(u64, &str)> = self.counters.refusals().to_vec();
        let mut parts = Vec::new();
        for ((n, what), before) in now.iter().zip(self.logged.iter_mut()) {
            if *n > *before {
                parts.push(format!("{} {what}", n - *before));
            }
            *before = *n;
        }
        if !parts.is_empty() {
            let last = self
                .last_failure
                .take()
                .map(|l| format!("; last: {l}"))
                .unwrap_or_default();
            warn!(
                "IKE in the last {} s: {}{last} (`ikehub show counters` has the totals)",
                SUMMARY_INTERVAL.as_secs(),
                parts.join(", ")
            );
        }
    }

    /// Logs a refusal or an unauthenticated failure: in full when none was logged in the last
    /// second, else only counted (the caller did) and summed up in the next summary line.
    fn refuse(&mut self, from: &str, reason: &str) {
        let now = Instant::now();
        if self
            .last_refusal_log
            .is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_GAP)
        {
            self.last_refusal_log = Some(now);
            warn!("IKE from {from}: {reason}");
        } else {
            debug!("IKE from {from}: {reason}");
            self.last_failure = Some(format!("{from}: {reason}"));
        }
    }

    /// Hands a datagram to a peer actor, or counts it dropped when the actor is saturated.
    fn deliver(&mut self, id: PeerId, msg: IkeDatagram, ctx: &mut Context<Self>) {
        self.reap_if_dead(id, ctx);
        let Some(p) = self.peers.get(&id) else {
            self.counters.refused_unknown_cookies += 1;
            return;
        };
        if p.addr.try_send(msg).is_err() {
            self.counters.dropped_peer_busy += 1;
        }
    }

    /// The live actors of `policy` (at `ip` when given): for commands, not per datagram.
    fn actors_of(&self, policy: &str, ip: Option<IpAddr>) -> Vec<PeerId> {
        let mut ids: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| *p.policy == *policy && ip.is_none_or(|ip| p.ip == ip))
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }
}

impl Actor for IkeRouter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(ROUTER_MAILBOX);
        ctx.run_interval(SUMMARY_INTERVAL, |act, _| act.log_summary());
        self.start_permanent(ctx);
    }
}

impl Handler<ChildrenChanged> for IkeRouter {
    type Result = ();
    fn handle(&mut self, msg: ChildrenChanged, _: &mut Context<Self>) {
        if let Some(p) = self.peers.get_mut(&msg.id) {
            p.installed |= !msg.children.is_empty();
            p.children = msg.children.into_boxed_slice();
        }
    }
}

impl Handler<Cookies> for IkeRouter {
    type Result = ();
    fn handle(&mut self, msg: Cookies, _: &mut Context<Self>) {
        if self.peers.contains_key(&msg.id) {
            self.demux.set_cookies(msg.id, &msg.cookies);
        }
    }
}

impl Handler<Moved> for IkeRouter {
    type Result = ();
    fn handle(&mut self, msg: Moved, _: &mut Context<Self>) {
        if self.peers.contains_key(&msg.id) {
            self.demux.set_address(msg.id, msg.to);
        }
    }
}

impl Handler<ClaimContested> for IkeRouter {
    type Result = ();
    fn handle(&mut self, msg: ClaimContested, _: &mut Context<Self>) {
        // Only a template spoke's claims are contested this way; the holder checks that its
        // peer is alive and ends itself (releasing the network) only if it is not.
        if let Some(p) = self
            .spoke_keys
            .get(&msg.holder)
            .and_then(|id| self.peers.get(id))
        {
            p.addr.do_send(super::peer::CheckLiveness);
        }
    }
}

impl Handler<Phase1Up> for IkeRouter {
    type Result = ();
    fn handle(&mut self, msg: Phase1Up, _: &mut Context<Self>) {
        self.demux.established(msg.id);
        let Some(p) = self.peers.get_mut(&msg.id) else {
            return;
        };
        p.authenticated = true;
        p.identity = Some(msg.peer_id.clone());
        if p.template {
            self.replace_same_spoke(msg.id, &msg.peer_id);
            return;
        }
        // A single-peer policy has one peer: a session that authenticated replaces an older
        // one (the peer started over from another port, e.g. a NAT rebinding).
        let policy = p.policy.to_string();
        if let Some(old) = self.single.insert(policy, msg.id)
            && old != msg.id
            && let Some(o) = self.peers.get(&old)
        {
            info!(policy = %o.policy, "the peer authenticated a new session: the old one ends");
            o.addr.do_send(Terminate);
        }
    }
}

impl IkeRouter {
    /// A template spoke authenticated with a name of its own (FQDN, user-FQDN, key ID): an
    /// older session of the same policy under the same name is that spoke before it started
    /// over (a new NAT mapping, a restart), and ends, so the new one can have its networks.
    /// Address identities are not unique behind NATs (branch routers often share a private
    /// address), so they never replace another session.
    fn replace_same_spoke(&mut self, id: PeerId, peer_id: &str) {
        if peer_id.starts_with("address:") {
            return;
        }
        let Some(policy) = self.peers.get(&id).map(|p| p.policy.clone()) else {
            return;
        };
        if let Some(old) = self
            .named
            .insert((policy.to_string(), peer_id.to_string()), id)
            && old != id
            && let Some(p) = self.peers.get(&old)
        {
            info!(policy = %policy, %peer_id, "the spoke authenticated a new session: its old one ends");
            p.addr.do_send(Terminate);
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
            .values()
            .find(|p| p.ip == msg.peer)
            .ok_or_else(|| format!("no peer actor for {}", msg.peer))?;
        p.addr.do_send(Panic);
        Ok(format!("peer actor of {} told to panic", msg.peer))
    }
}

impl Handler<IkeDatagram> for IkeRouter {
    type Result = ();
    fn handle(&mut self, msg: IkeDatagram, ctx: &mut Context<Self>) {
        self.counters.ike_datagrams += 1;
        debug!(from = %msg.from, nat_t = msg.nat_t, len = msg.bytes.len(), "IKE datagram");
        let route = if msg.nat_t {
            self.demux.route_nat_t(msg.from, &msg.bytes)
        } else {
            self.demux.route(msg.from, &msg.bytes)
        };
        match route {
            Route::Session(id) => self.deliver(id, msg, ctx),
            Route::Drop(reason) => {
                match reason {
                    DropReason::Malformed => self.counters.refused_malformed += 1,
                    DropReason::UnknownCookies => self.counters.refused_unknown_cookies += 1,
                    DropReason::Aggressive => self.counters.refused_aggressive += 1,
                    DropReason::Stopping => self.counters.refused_stopping += 1,
                }
                self.refuse(&msg.from.to_string(), reason.describe());
            }
            Route::NewExchange => {
                let ip = msg.from.ip();
                let Some(policy) = self.admitting_policy(msg.local.ip(), ip) else {
                    self.counters.refused_unknown_peer += 1;
                    self.refuse(
                        &msg.from.to_string(),
                        &format!(
                            "refused: no ipsec-policy-isakmp on {} admits this address",
                            msg.local.ip()
                        ),
                    );
                    return;
                };
                let policy_key = self.policy_name(&policy);
                let admitted = self.demux.admit(msg.from, &policy_key);
                for old in admitted.evicted {
                    self.counters.half_open_evicted += 1;
                    if let Some(p) = self.forget_peer(old) {
                        p.addr.do_send(Evict);
                    }
                }
                let id = admitted.id;
                match self.spawn_peer(
                    id,
                    &policy,
                    msg.local.ip(),
                    ip,
                    Some(msg.from.port()),
                    false,
                    ctx,
                ) {
                    Some(actor) => {
                        let _ = actor.try_send(msg);
                    }
                    None => self.demux.remove(id),
                }
            }
        }
    }
}

impl Handler<Acquire> for IkeRouter {
    type Result = ();
    fn handle(&mut self, msg: Acquire, ctx: &mut Context<Self>) {
        let Some(policy) = self.profiles.isakmp_policies.get(&*msg.policy).cloned() else {
            return;
        };
        if policy.initiate == InitiateMode::Never || self.stopping {
            return;
        }
        // A template policy cannot initiate: it does not know which spoke to call.
        if !matches!(policy.peer, PeerSpec::Address(_)) {
            return;
        }
        if !self.single.contains_key(&policy.name) {
            info!(policy = %policy.name, peer = ?policy.peer, "on-demand: traffic {} -> {} initiates", msg.src, msg.dst);
        }
        self.initiate_single(&policy, ctx);
    }
}

impl Handler<PeerStopped> for IkeRouter {
    type Result = ();
    fn handle(&mut self, msg: PeerStopped, ctx: &mut Context<Self>) {
        // Only an actor still in the table: an evicted or reaped one was dealt with already.
        // (The actor sends this from `stopped`, on its worker thread: its mailbox may still be
        // open for a moment, so `connected()` says nothing here.)
        let Some(p) = self.peers.get(&msg.id) else {
            return;
        };
        let main = self.single.get(&*p.policy) == Some(&msg.id);
        let Some(p) = self.forget_peer(msg.id) else {
            return;
        };
        if !p.authenticated && !p.initiator && msg.failed {
            // Anyone can start and abandon an exchange: counted, logged at most once a second
            // in full and otherwise summed up.
            self.counters.unauthenticated_failures += 1;
            if let Some(e) = &msg.status.last_error {
                self.refuse(&msg.status.peer, &format!("policy {}: {e}", msg.policy));
            }
        }
        if main || p.template {
            self.record_history(&p, msg.status.clone());
        }
        if main {
            self.restart_later(&msg.policy, msg.failed, ctx);
        }
    }
}

impl IkeRouter {
    /// A permanent policy's actor ended: a new one is started within a second; 2 s, 4 s ...
    /// up to 60 s between attempts when it keeps failing.
    fn restart_later(&mut self, policy: &str, failed: bool, ctx: &mut Context<Self>) {
        let Some(policy) = self.profiles.isakmp_policies.get(policy).cloned() else {
            return;
        };
        if policy.initiate != InitiateMode::Permanent
            || !matches!(policy.peer, PeerSpec::Address(_))
            || self.stopping
        {
            return;
        }
        let n = self.failures.entry(policy.name.clone()).or_default();
        *n = if failed { n.saturating_add(1) } else { 0 };
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
        let live: std::collections::HashSet<&str> =
            self.peers.values().map(|p| &*p.spd_key).collect();
        // Peers without a live actor: their last status, or for a configured single-peer
        // policy never tried yet, an idle row, so every configured peer is listed.
        let mut quiet: Vec<PeerStatus> = self
            .history
            .rows()
            .filter(|(key, _)| !live.contains(key.as_str()))
            .map(|(_, s)| s.clone())
            .collect();
        for p in self.profiles.isakmp_policies.values() {
            if let PeerSpec::Address(ip) = p.peer
                && !self.single.contains_key(&p.name)
                && self.history.get(&p.name).is_none()
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
        let single = match policy.peer {
            PeerSpec::Address(a) => Some(a),
            _ => None,
        };
        let Some(peer) = msg.peer.or(single) else {
            return Err(format!(
                "{} is a template policy: name the spoke with --peer ADDR",
                msg.policy
            ));
        };
        let ids = self.actors_of(&policy.name, Some(peer));
        for id in &ids {
            self.reap_if_dead(*id, ctx);
        }
        let ids: Vec<PeerId> = ids
            .into_iter()
            .filter(|id| self.peers.contains_key(id))
            .collect();
        if msg.up {
            if ids.is_empty() && single == Some(peer) {
                self.initiate_single(&policy, ctx);
                return Ok(format!("{}: initiating with {peer}", msg.policy));
            }
            if ids.is_empty() {
                return Err(format!(
                    "{}: {peer} is a spoke of a template policy: it must call the hub first",
                    msg.policy
                ));
            }
            for id in &ids {
                if let Some(p) = self.peers.get(id) {
                    p.addr.do_send(Initiate);
                }
            }
            Ok(format!("{}: initiating with {peer}", msg.policy))
        } else {
            if ids.is_empty() {
                return Err(format!("{}: nothing is up with {peer}", msg.policy));
            }
            for id in &ids {
                if let Some(p) = self.peers.get(id) {
                    p.addr.do_send(Terminate);
                }
            }
            Ok(format!("{}: deleting the SAs with {peer}", msg.policy))
        }
    }
}

impl Handler<GetCounters> for IkeRouter {
    type Result = MessageResult<GetCounters>;
    fn handle(&mut self, _: GetCounters, _: &mut Context<Self>) -> Self::Result {
        let mut c = self.counters.clone();
        c.refused_network_claims = self.claims.refused();
        c.half_open = self.demux.half_open_count() as u64;
        let s = &IKE_STATS;
        c.handshakes_started = IkeStats::get(&s.handshakes_started);
        c.handshakes_completed = IkeStats::get(&s.handshakes_completed);
        let [timeout, no_proposal, authentication, other] = &s.handshakes_failed;
        c.handshakes_failed_timeout = IkeStats::get(timeout);
        c.handshakes_failed_no_proposal_chosen = IkeStats::get(no_proposal);
        c.handshakes_failed_authentication = IkeStats::get(authentication);
        c.handshakes_failed_other = IkeStats::get(other);
        c.retransmissions = IkeStats::get(&s.retransmissions);
        c.dpd_deaths = IkeStats::get(&s.dpd_deaths);
        c.rekeys = IkeStats::get(&s.rekeys);
        c.ike_socket_drops = self
            .sockets
            .values()
            .map(|s| s.drops())
            .fold(0, u64::saturating_add);
        c.workers = self.workers.load();
        c.dropped_router_busy = self
            .sockets
            .values()
            .map(|s| s.router_busy.load(std::sync::atomic::Ordering::Relaxed))
            .fold(0, u64::saturating_add);
        MessageResult(c)
    }
}

impl Handler<UpdateProfiles> for IkeRouter {
    type Result = ();
    fn handle(&mut self, msg: UpdateProfiles, ctx: &mut Context<Self>) {
        self.profiles = msg.profiles;
        self.configs.clear();
        self.names.clear();
        // The new reservations win over spokes that hold a network a new policy owns.
        let displaced = self.claims.reserve(&self.profiles);
        for p in self.peers.values() {
            let holds_reserved = displaced.contains(&p.spd_key);
            if holds_reserved {
                warn!(policy = %p.policy, "a reload reserved networks this spoke held: deleting its SAs");
            }
            if msg.stop.iter().any(|s| **s == *p.policy) || holds_reserved {
                p.addr.do_send(Terminate);
            }
        }
        self.history.forget_policies(&msg.stop);
        self.start_permanent(ctx);
    }
}

impl Handler<TerminateAll> for IkeRouter {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: TerminateAll, _: &mut Context<Self>) -> Self::Result {
        // Answered once every peer actor handled its Terminate (its deletes are on the wire):
        // they run on other threads, which the system stops soon after. No exchange starts
        // from here on: not from a peer (`stop_admitting`), nor ours (`stopping`).
        self.demux.stop_admitting();
        self.stopping = true;
        let asked: Vec<_> = self
            .peers
            .values()
            .map(|p| p.addr.send(Terminate))
            .collect();
        Box::pin(async move {
            for a in asked {
                let _ = a.await;
            }
        })
    }
}

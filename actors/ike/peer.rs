//! PeerActor: one per IKE peer, a thin driver around the sans-IO `IkeSession`. After every input
//! it drains events (installing and removing SAs in the shards, so an SA pair is in place
//! before the message that lets the peer use it leaves), then transmits, then re-arms its one
//! timer only when the deadline moved.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use ikehub::config::ProtectedNetwork;
use ikehub::esp::SecurityAssociation;
use ikehub::ike::demux::{PeerId, Role};
use ikehub::ike::stats::{FailureClass, IKE_STATS, IkeStats};
use ikehub::ike::{ChildRequest, ChildSaInfo, Event, IkeSession, SpiPair};
use serde::Serialize;
use tracing::{Span, info, warn};

use super::small_map::SmallMap;
use super::socket::IkeSockets;
use crate::events::{EventLog, Kind, TunnelEvent};
use crate::messages::IkeDatagram;
use crate::shard::{
    self, EspShard, GetSaUsage, RemovePolicy, SaKind, SaPair, SetPeerPort, SetPolicySa, SpdEntry,
};

/// What `show isakmp` and `show peers` print for a peer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PeerStatus {
    pub policy: String,
    pub peer: String,
    pub state: String,
    pub initiator_cookie: Option<String>,
    pub responder_cookie: Option<String>,
    pub transform: Option<String>,
    pub age_seconds: Option<u64>,
    pub lifetime_seconds: Option<u64>,
    pub child_sas: usize,
    pub last_error: Option<String>,
    /// The peer's authenticated phase-1 identity ("address:203.0.113.7",
    /// "fqdn:spoke1.example.net"...): spokes behind one NAT address differ here.
    pub identity: Option<String>,
}

/// Start an exchange now (`ikehub initiate`, an Acquire from a shard, a permanent policy).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Initiate;

/// Delete everything with notifications and stop (`ikehub terminate`, SIGTERM, reload).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Terminate;

#[derive(Message)]
#[rtype(result = "PeerStatus")]
pub struct GetStatus;

/// The child SA pairs a peer has installed in the shards: the router keeps the list so that
/// if the actor dies without cleaning up (a panic), no SA is left behind.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ChildrenChanged {
    pub id: PeerId,
    pub children: Vec<SaPair>,
}

/// Another authenticated peer was refused a network this peer's child SAs hold: check now that
/// this peer is still there (`IkeSession::check_liveness`). A spoke behind a NAT that restarted
/// and came back from another port is refused until its dead predecessor here is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CheckLiveness;

/// The router needs the room: stop now, quietly (a half-open exchange that never authenticated
/// has nothing to delete and no one to tell).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Evict;

/// Test-only fault injection (`IKEHUB_TEST_FAULTS=1`): the actor panics, as a bug would make
/// it, so the supervision path can be tested.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Panic;

/// Tells the router the actor is gone (it may rebuild it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerStopped {
    pub id: PeerId,
    pub policy: Arc<str>,
    pub failed: bool,
    /// The last state, kept by the router so `show peers` still says why a peer is down.
    pub status: PeerStatus,
}

struct Isakmp {
    icky: [u8; 8],
    rcky: [u8; 8],
    suite: Box<str>,
    since: Instant,
    lifetime: Option<Duration>,
}

/// What all peer actors of a policy share, one copy per policy that each of them holds through
/// one `Arc` (the router makes it; a reload makes new ones for the peers it starts).
pub struct PolicyPeers {
    /// The policy's name.
    pub name: Arc<str>,
    /// The policy's protected networks: what an initiation asks child SAs for.
    pub networks: Box<[ProtectedNetwork]>,
    /// The IKE sockets of the policy's interface.
    pub sockets: Arc<IkeSockets>,
    /// Every shard.
    pub shards: Arc<[Addr<EspShard>]>,
    pub router: Addr<super::router::IkeRouter>,
    pub claims: super::claims::Claims,
    /// Where tunnel events go (the log line and `show events`).
    pub events: EventLog,
}

/// One per established tunnel (10,000 on a hub), so what every peer of a policy has is in its
/// `PolicyPeers`, and what is rare is boxed (docs/design.md "Per-tunnel memory budget": the
/// actor lives inline in actix's context, inside a tokio task whose size goes by 128 bytes).
pub struct PeerActor {
    id: PeerId,
    session: IkeSession,
    /// What the router last heard of our cookies and the peer's address (the session's peer
    /// after every input: the address the tunnel events name).
    reported_cookies: Box<[([u8; 8], Role)]>,
    reported_peer: SocketAddr,
    /// SPD key: the policy name, or `policy@peer` for a spoke of a template policy.
    spd_key: Arc<str>,
    /// The policy's name, networks, sockets, the shards, router, claims and event log.
    policy: Arc<PolicyPeers>,
    /// Installed child SA pairs by inbound SPI (ours), with the selectors of their SPD entries.
    children: SmallMap<u32, Child>,
    /// Boxed: 56 bytes fewer inline take the tokio task of an actor below a 128-byte step.
    isakmp: Option<Box<Isakmp>>,
    last_error: Option<Box<str>>,
    /// The one timer: at the session's deadline or `next_usage_poll`, whichever comes first.
    timer: Option<(Instant, SpawnHandle)>,
    /// When the shards are next asked about this peer's SAs (`USAGE_POLL`).
    next_usage_poll: Instant,
    failed: bool,
    /// The policy entry in the SPD outlives this actor (a configured single-peer policy whose
    /// cleartext must keep triggering Acquires); template spokes' entries go with the actor.
    keep_policy: bool,
    /// A negotiated pair was refused during this input: delete the peer's SAs.
    refused: bool,
    /// This session installed SAs (and so owns its SPD entry and claims).
    installed_any: bool,
    /// Told to the router before this actor goes: it stopped cleanly and cleaned up.
    clean_stop: Arc<std::sync::atomic::AtomicBool>,
    /// The peer's authenticated phase-1 identity (the router's row holds the same copy).
    peer_id: Option<Arc<str>>,
}

/// A child SA pair as installed: its handles and the selectors its SPD entries carry.
struct Child {
    pair: SaPair,
    /// The SA pair's own copy (`SecurityAssociation::shared_selectors`), not another one.
    selectors: Arc<[ProtectedNetwork]>,
    /// Inbound packets the shard last reported, to tell the session about traffic.
    seen_packets: u64,
    /// A responder's successor whose selectors wait for `Event::ChildSaConfirmed`.
    unconfirmed: bool,
}

/// How often a peer asks the shards whether its SAs carried traffic (DPD probes only an idle
/// peer, RFC 3706 §5) or reached their kilobyte soft limit.
const USAGE_POLL: Duration = Duration::from_secs(10);

/// Traffic and soft-lifetime news from the shards about one child.
#[derive(Message)]
#[rtype(result = "()")]
struct Usage {
    inbound_spi: u32,
    usage: shard::SaUsage,
}

impl PeerActor {
    pub fn new(
        id: PeerId,
        session: IkeSession,
        policy: Arc<PolicyPeers>,
        spd_key: Arc<str>,
        keep_policy: bool,
        clean_stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        PeerActor {
            id,
            reported_cookies: session.our_cookies().into(),
            reported_peer: session.peer(),
            session,
            spd_key,
            policy,
            children: SmallMap::default(),
            isakmp: None,
            last_error: None,
            timer: None,
            next_usage_poll: Instant::now() + USAGE_POLL,
            failed: false,
            keep_policy,
            clean_stop,
            refused: false,
            installed_any: false,
            peer_id: None,
        }
    }

    /// The span of this peer's log lines, made for each input rather than kept: a kept span
    /// held a slot in the subscriber's registry with its formatted fields for every idle peer
    /// of a hub. At `error` level, so that it is on whenever any line is let through: an
    /// `info` span was off under `RUST_LOG=warn`, and the warnings lost which peer they were
    /// about.
    fn span(&self) -> Span {
        peer_span(&self.policy.name, self.session.peer())
    }

    /// A tunnel event of this peer, to be completed and [`PeerActor::record`]ed.
    fn event(&self, kind: Kind) -> TunnelEvent {
        TunnelEvent::new(
            kind,
            &self.policy.name,
            self.session.peer(),
            self.peer_id.as_deref(),
        )
    }

    /// The one place a tunnel event is logged (one line) and published. Called inside the
    /// peer's span ([`PeerActor::drive`], `stopped`).
    fn record(&self, ev: TunnelEvent) {
        ev.log();
        self.policy.events.publish(ev);
    }

    fn children_changed(&self) {
        self.policy.router.do_send(ChildrenChanged {
            id: self.id,
            children: self.children.values().map(|c| c.pair).collect(),
        });
    }

    /// Points the SPD entries of these selectors at an outbound SA, on every shard.
    fn point_entries(&self, selectors: &[ProtectedNetwork], outbound: shard::SaHandle) {
        for pn in selectors {
            for s in self.policy.shards.iter() {
                s.do_send(SetPolicySa {
                    entry: SpdEntry {
                        policy: self.spd_key.clone(),
                        selectors: *pn,
                    },
                    outbound,
                });
            }
        }
    }

    /// Installs a negotiated pair. Returns false when the pair was refused because another
    /// policy reserved it or another spoke holds it (`ikehub::claims`; the caller then deletes
    /// this peer's SAs).
    /// `replaces`: the pair a re-key replaces (the event is then `rekey`, not `up`).
    fn install(&mut self, info: ChildSaInfo, replaces: Option<SpiPair>) -> bool {
        // Quick mode already asked (SelectorGuard); asked again here because two spokes may
        // have negotiated at the same time, and this claim is the one that holds.
        for pn in &info.protected_networks {
            if let Err(refusal) = self
                .policy
                .claims
                .claim(&self.spd_key, !self.keep_policy, pn)
            {
                let reason = format!("refused: {refusal}");
                self.record(self.event(Kind::Refused).child(&info).reason(&reason));
                self.last_error = Some(reason.into());
                self.failed = true;
                // If the holder is dead (this very spoke before a restart, behind a NAT that
                // gave it another port), it must not keep the network until its lifetimes
                // run out: the router asks it to prove it is alive. This peer is refused
                // either way and tries again.
                if !refusal.reserved {
                    self.policy.router.do_send(super::router::ClaimContested {
                        holder: Arc::from(refusal.by.as_str()),
                    });
                }
                return false;
            }
        }
        let now = Instant::now();
        let spis = info.spis();
        let (inbound, outbound) = match (
            SecurityAssociation::new(info.inbound.clone(), now),
            SecurityAssociation::new(info.outbound.clone(), now),
        ) {
            (Ok(i), Ok(o)) => (i, o),
            (Err(e), _) | (_, Err(e)) => {
                let reason = format!("negotiated SA cannot be built: {e}");
                self.record(self.event(Kind::Failed).child(&info).reason(&reason));
                self.last_error = Some(reason.into());
                return true;
            }
        };
        self.installed_any = true;
        crate::keylog::record_pair(&info.inbound, &info.outbound);
        // The SAs by handles the daemon issues: the outbound SPI is the peer's choice and may
        // equal another tunnel's (docs/design.md: SA handles). The SAs are in place before the SPD
        // entries of this child's selectors point at them (a re-key: the entries move to the
        // new SA here, before the old one is removed).
        let pair = SaPair::issue(spis, self.policy.shards.len());
        let selectors = inbound.shared_selectors();
        shard::install_pair(
            &self.policy.shards,
            &pair,
            &self.spd_key,
            SaKind::Isakmp,
            inbound,
            outbound,
        );
        // A responder's successor takes the selectors only when the initiator confirms it
        // has the pair (`Event::ChildSaConfirmed`): the old pair carries them until then.
        let unconfirmed = replaces.is_some() && !info.confirmed;
        if !unconfirmed {
            self.point_entries(&info.protected_networks, pair.outbound);
        }
        self.children.insert(
            spis.inbound,
            Child {
                pair,
                selectors,
                seen_packets: 0,
                unconfirmed,
            },
        );
        self.children_changed();
        let ev = match replaces {
            Some(old) => self.event(Kind::Rekey).child(&info).old_spis(old),
            None => self.event(Kind::Up).child(&info),
        };
        self.record(ev);
        true
    }

    /// The initiator has the pair: its selectors move to it, unless a newer pair has them.
    fn confirm(&mut self, spis: SpiPair) {
        let Some(c) = self.children.get_mut(&spis.inbound) else {
            return;
        };
        if !std::mem::take(&mut c.unconfirmed) {
            return;
        }
        let outbound = c.pair.outbound;
        let mut selectors = c.selectors.to_vec();
        selectors.retain(|pn| {
            !self
                .children
                .values()
                .any(|o| o.pair.outbound > outbound && o.selectors.contains(pn))
        });
        self.point_entries(&selectors, outbound);
    }

    fn remove(&mut self, spis: SpiPair, why: &str) {
        let Some(gone) = self.children.remove(&spis.inbound) else {
            return;
        };
        // Selectors another live pair also serves (the newer pair of a re-key that is deleted
        // before the older one) stay covered: point them at the newest such pair first.
        for pn in gone.selectors.iter() {
            let newest = self
                .children
                .values()
                .filter(|c| c.selectors.contains(pn))
                .map(|c| c.pair.outbound)
                .max();
            if let Some(outbound) = newest {
                self.point_entries(std::slice::from_ref(pn), outbound);
            }
        }
        shard::remove_pair(&self.policy.shards, &gone.pair, &self.spd_key);
        self.children_changed();
        self.record(self.event(Kind::Down).spis(spis).reason(why));
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::ChildSaEstablished(info) => {
                if !self.install(info, None) {
                    self.refused = true;
                }
            }
            Event::ChildSaRekeyed { old, new } => {
                IkeStats::count(&IKE_STATS.rekeys);
                // The old pair stays until its own delete or expiry (its `down` event).
                if !self.install(new, Some(old)) {
                    self.refused = true;
                }
            }
            Event::ChildSaConfirmed(spis) => self.confirm(spis),
            Event::ChildSaExpired(spis) => self.remove(spis, "expired"),
            Event::ChildSaDeleted { spis, reason } => self.remove(spis, &reason),
            Event::IsakmpSaEstablished {
                initiator_cookie,
                responder_cookie,
                suite,
                lifetime,
                initiator,
                peer_id,
            } => {
                IkeStats::count(&IKE_STATS.handshakes_completed);
                let peer_id: Arc<str> = Arc::from(peer_id);
                self.peer_id = Some(peer_id.clone());
                let role = if initiator { "initiator" } else { "responder" };
                self.record(
                    self.event(Kind::IsakmpUp)
                        .cookies(&initiator_cookie, &responder_cookie)
                        .suite(&format!("{suite} ({role})")),
                );
                self.last_error = None;
                self.policy.router.do_send(super::router::Phase1Up {
                    id: self.id,
                    peer_id,
                });
                self.isakmp = Some(Box::new(Isakmp {
                    icky: initiator_cookie,
                    rcky: responder_cookie,
                    suite: suite.into(),
                    since: Instant::now(),
                    lifetime,
                }));
            }
            Event::IsakmpSaDeleted {
                initiator_cookie,
                responder_cookie,
                reason,
            } => {
                self.record(
                    self.event(Kind::IsakmpDown)
                        .cookies(&initiator_cookie, &responder_cookie)
                        .reason(&reason),
                );
                if self
                    .isakmp
                    .as_ref()
                    .is_some_and(|s| s.icky == initiator_cookie)
                {
                    self.isakmp = None;
                }
            }
            Event::PeerDead => {
                IkeStats::count(&IKE_STATS.dpd_deaths);
                let reason = "no answer to dead peer detection";
                self.record(self.event(Kind::PeerDead).reason(reason));
                self.last_error = Some(format!("peer dead: {reason}").into());
                self.failed = true;
            }
            Event::Failed { reason, notify } => {
                IKE_STATS.failed(FailureClass::of(&reason, notify));
                // Led by the notify's name when the reason does not already say it.
                let squash = |s: &str| s.to_ascii_lowercase().replace(['-', '_'], " ");
                let reason = match notify {
                    Some(n) if !squash(&reason).contains(&squash(&n.to_string())) => {
                        format!("{n}: {reason}")
                    }
                    _ => reason,
                };
                // An unknown initiator that never authenticated can fail as often as anyone
                // sends garbage: the session logs those at debug and the router counts them in
                // rate-limited summaries; only a peer we called or knew is an operator event.
                if self.session.accountable() {
                    self.record(self.event(Kind::Failed).reason(&reason));
                }
                self.last_error = Some(reason.into());
                self.failed = true;
            }
            Event::InitialContact => info!("peer reports initial contact: old SAs removed"),
            Event::NatDetected {
                local_behind_nat,
                peer_behind_nat,
            } => info!(
                "NAT detection: we are {}behind NAT, the peer is {}behind NAT",
                if local_behind_nat { "" } else { "not " },
                if peer_behind_nat { "" } else { "not " }
            ),
            Event::PeerPortChanged(addr) => {
                info!("peer now at {addr}: UDP-encapsulated SAs follow it");
                let n = self.policy.shards.len();
                for c in self.children.values() {
                    if let Some(s) = self.policy.shards.get(c.pair.outbound_shard(n)) {
                        s.do_send(SetPeerPort {
                            outbound: c.pair.outbound,
                            port: addr.port(),
                        });
                    }
                }
            }
        }
    }

    /// Events, then transmits, then the timer (docs/design.md, How data flows: PeerActor).
    fn drive(&mut self, ctx: &mut Context<Self>) {
        let _enter = self.span().entered();
        while let Some(ev) = self.session.poll_event() {
            self.on_event(ev);
        }
        if std::mem::take(&mut self.refused) {
            // The peer's SAs were not installed: tell it (deletes) and end the session.
            self.session.delete_all(Instant::now());
            while let Some(ev) = self.session.poll_event() {
                self.on_event(ev);
            }
        }
        self.report_routing();
        while let Some(t) = self.session.poll_transmit() {
            tracing::debug!(to = %t.destination, nat_t = t.source_port_nat_t, len = t.bytes.len(), "IKE send");
            if let Err(e) = self
                .policy
                .sockets
                .send(t.destination, t.source_port_nat_t, &t.bytes)
            {
                send_failed(t.destination, &e);
            }
        }
        if self.session.is_closed() {
            ctx.stop();
            return;
        }
        // One timer for the session's deadline and the next usage poll: a second one (an
        // interval) was a boxed tokio timer more per peer.
        let deadline = self
            .session
            .poll_timeout()
            .map_or(self.next_usage_poll, |d| d.min(self.next_usage_poll));
        if Some(deadline) != self.timer.as_ref().map(|(d, _)| *d) {
            if let Some((_, h)) = self.timer.take() {
                ctx.cancel_future(h);
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            let h = ctx.run_later(wait, |act, ctx| {
                act.timer = None;
                act.on_timer(ctx);
            });
            self.timer = Some((deadline, h));
        }
    }

    /// The timer fired: the usage poll when it is due, the session's timeout when it is due.
    fn on_timer(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        if now >= self.next_usage_poll {
            self.next_usage_poll = now + USAGE_POLL;
            self.poll_usage(ctx);
        }
        if self.session.poll_timeout().is_some_and(|d| d <= now) {
            self.session.handle_timeout(now);
        }
        self.drive(ctx);
    }

    /// Tells the router the cookies and address it routes this session by, when they changed;
    /// before any datagram that carries them leaves (the router reads its mailbox in order).
    fn report_routing(&mut self) {
        let cookies = self.session.our_cookies();
        if *cookies != *self.reported_cookies {
            self.reported_cookies = cookies.as_slice().into();
            self.policy.router.do_send(super::router::Cookies {
                id: self.id,
                cookies,
            });
        }
        let peer = self.session.peer();
        if peer != self.reported_peer {
            self.policy.router.do_send(super::router::Moved {
                id: self.id,
                to: peer,
            });
            self.reported_peer = peer;
        }
    }

    fn status(&self) -> PeerStatus {
        let now = Instant::now();
        PeerStatus {
            policy: self.policy.name.to_string(),
            peer: self.session.peer().to_string(),
            state: if self.isakmp.is_some() {
                if self.children.is_empty() {
                    "phase1-up".into()
                } else {
                    "up".into()
                }
            } else if self.last_error.is_some() {
                "failed".into()
            } else {
                "connecting".into()
            },
            initiator_cookie: self.isakmp.as_ref().map(|s| hex(&s.icky)),
            responder_cookie: self.isakmp.as_ref().map(|s| hex(&s.rcky)),
            transform: self.isakmp.as_ref().map(|s| s.suite.to_string()),
            age_seconds: self
                .isakmp
                .as_ref()
                .map(|s| now.duration_since(s.since).as_secs()),
            lifetime_seconds: self
                .isakmp
                .as_ref()
                .and_then(|s| s.lifetime.map(|l| l.as_secs())),
            child_sas: self.children.len(),
            last_error: self.last_error.as_deref().map(str::to_string),
            identity: self.peer_id.as_deref().map(str::to_string),
        }
    }
}

/// The span a peer's lines are written in ([`PeerActor::span`]).
fn peer_span(policy: &str, peer: SocketAddr) -> Span {
    tracing::error_span!("peer", policy = %policy, peer = %peer)
}

/// IKE sends that failed (all peers), and when that was last logged: a flood of forged
/// initiators can make every reply fail, which must not become a flood of log lines.
static SEND_FAILURES: std::sync::Mutex<(u64, Option<Instant>)> = std::sync::Mutex::new((0, None));

fn send_failed(to: SocketAddr, e: &std::io::Error) {
    let Ok(mut f) = SEND_FAILURES.lock() else {
        return;
    };
    f.0 += 1;
    let now = Instant::now();
    if f.1
        .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
    {
        warn!(
            "cannot send IKE to {to}: {e} ({} send(s) failed since the last such line)",
            f.0
        );
        *f = (0, Some(now));
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Actor for PeerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(super::router::PEER_MAILBOX);
        tracing::debug!(parent: &self.span(), "peer actor started");
        self.drive(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        let _enter = self.span().entered();
        if std::thread::panicking() {
            // A bug: actix still runs `stopped` while unwinding, so clean up as usual and let
            // the router rebuild the peer (with backoff when it keeps failing).
            tracing::error!(
                "peer actor died (internal error): removing its SAs; the router rebuilds it"
            );
            self.failed = true;
            self.last_error = Some("internal error: the peer's actor died and was rebuilt".into());
        }
        if self.installed_any {
            self.policy.claims.release(&self.spd_key);
        }
        self.clean_stop
            .store(true, std::sync::atomic::Ordering::Release);
        let mut status = self.status();
        status.state = if self.failed { "failed" } else { "down" }.into();
        tracing::debug!(last_error = ?self.last_error, "peer actor stopped");
        status.child_sas = 0;
        let pairs: Vec<SpiPair> = self.children.values().map(|c| c.pair.spis).collect();
        for p in pairs {
            self.remove(p, "peer actor stopped");
        }
        // A configured policy's entries are back to "no SA yet" (its cleartext keeps
        // triggering Acquires); a template spoke's entries go with it.
        if !self.keep_policy && self.installed_any {
            for s in self.policy.shards.iter() {
                s.do_send(RemovePolicy {
                    policy: self.spd_key.clone(),
                });
            }
        }
        self.policy.router.do_send(PeerStopped {
            id: self.id,
            policy: self.policy.name.clone(),
            failed: self.failed,
            status,
        });
    }
}

impl PeerActor {
    fn poll_usage(&mut self, ctx: &mut Context<Self>) {
        let n = self.policy.shards.len();
        for c in self.children.values() {
            let inbound_spi = c.pair.spis.inbound;
            let Some(shard) = self.policy.shards.get(c.pair.inbound_shard(n)) else {
                continue;
            };
            shard
                .send(GetSaUsage {
                    inbound: c.pair.inbound,
                })
                .into_actor(self)
                .map(move |r, _act, ctx: &mut Context<Self>| {
                    if let Ok(Some(usage)) = r {
                        ctx.notify(Usage { inbound_spi, usage });
                    }
                })
                .spawn(ctx);
        }
    }
}

/// Whether the inbound packet count a shard reported for a pair grew since its last report.
/// `seen` is the installed pair's count (kept in its `Child`, so it goes with the pair): a
/// report for a pair removed since it was asked for (the old pair of a re-key, removed while
/// the shard answered) has none, compares against zero and keeps nothing.
fn packets_grew(seen: Option<&mut u64>, packets: u64) -> bool {
    match seen {
        None => packets > 0,
        Some(last) if packets > *last => {
            *last = packets;
            true
        }
        Some(_) => false,
    }
}

impl Handler<Usage> for PeerActor {
    type Result = ();
    fn handle(&mut self, msg: Usage, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let seen = self
            .children
            .get_mut(&msg.inbound_spi)
            .map(|c| &mut c.seen_packets);
        if packets_grew(seen, msg.usage.packets) {
            self.session
                .note_inbound_traffic(now, Some(msg.inbound_spi));
        }
        if msg.usage.soft_expired {
            self.session.child_soft_expired(now, msg.inbound_spi);
        }
        self.drive(ctx);
    }
}

impl Handler<IkeDatagram> for PeerActor {
    type Result = ();
    fn handle(&mut self, msg: IkeDatagram, ctx: &mut Context<Self>) {
        self.session
            .handle_datagram(Instant::now(), msg.from, msg.nat_t, &msg.bytes);
        self.drive(ctx);
    }
}

impl Handler<Initiate> for PeerActor {
    type Result = ();
    fn handle(&mut self, _: Initiate, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let policy = self.policy.clone();
        for network in policy.networks.iter().copied() {
            self.session.initiate_child(now, ChildRequest { network });
        }
        self.drive(ctx);
    }
}

impl Handler<Terminate> for PeerActor {
    type Result = ();
    fn handle(&mut self, _: Terminate, ctx: &mut Context<Self>) {
        self.session.delete_all(Instant::now());
        self.failed = false;
        self.drive(ctx);
        ctx.stop();
    }
}

impl Handler<CheckLiveness> for PeerActor {
    type Result = ();
    fn handle(&mut self, _: CheckLiveness, ctx: &mut Context<Self>) {
        if self.session.check_liveness(Instant::now()) {
            info!(
                parent: &self.span(),
                "another spoke was refused a network of ours: checking that this peer is still \
                 there (R-U-THERE)"
            );
        }
        self.drive(ctx);
    }
}

impl Handler<Evict> for PeerActor {
    type Result = ();
    fn handle(&mut self, _: Evict, ctx: &mut Context<Self>) {
        tracing::debug!(parent: &self.span(), "half-open exchange evicted to admit a newer one");
        self.last_error = Some("half-open exchange evicted (too many unfinished exchanges)".into());
        ctx.stop();
    }
}

impl Handler<Panic> for PeerActor {
    type Result = ();
    #[allow(clippy::panic)]
    fn handle(&mut self, _: Panic, _: &mut Context<Self>) {
        panic!(
            "fault injected into the peer actor of {} (test hook)",
            self.session.peer()
        );
    }
}

impl Handler<GetStatus> for PeerActor {
    type Result = MessageResult<GetStatus>;
    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_of_a_removed_pair_leaves_no_count_behind() {
        let mut seen = 0;
        assert!(packets_grew(Some(&mut seen), 5));
        assert!(!packets_grew(Some(&mut seen), 5));
        assert!(packets_grew(Some(&mut seen), 7));
        assert_eq!(seen, 7);
        // The pair is removed (a re-key's old one); a report asked for before that arrives
        // after it: traffic as before, and no count to keep.
        assert!(packets_grew(None, 9));
        assert!(!packets_grew(None, 0));
    }

    /// The actor lives inline in actix's context, inside a tokio task, once per tunnel: each
    /// byte it grows by, a hub of 10,000 tunnels pays 10,000 times (docs/design.md
    /// "Per-tunnel memory budget"; the session itself is the core's, measured there).
    #[test]
    fn a_peer_actor_stays_small() {
        let actor = std::mem::size_of::<PeerActor>();
        let session = std::mem::size_of::<IkeSession>();
        eprintln!("PeerActor {actor} bytes, the session {session}");
        assert!(
            actor - session <= 200,
            "PeerActor is {actor} bytes, {} besides its session",
            actor - session
        );
        // (496 before the policy's shared part went into `PolicyPeers`, the span was made per
        // input and the ISAKMP SA's record boxed: with the session, 968 bytes, and the tokio
        // task 1,536 instead of 1,152.) A child record: its handles, the SA pair's selectors
        // (shared), its packet count.
        assert!(std::mem::size_of::<Child>() <= 56);
    }

    /// `io::Write` into a shared buffer, for a subscriber under test.
    #[derive(Clone, Default)]
    struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_peers_warnings_name_it_under_a_warn_filter() {
        // RUST_LOG=warn (the benches', the demo's): the peer's span was an info span, off
        // under that filter, and "exchange failed: ..." did not say which peer.
        let out = Capture::default();
        let w = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .with_ansi(false)
            .with_writer(move || w.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let peer: SocketAddr = "192.0.2.7:500".parse().unwrap();
            let _in_span = peer_span("Spokes", peer).entered();
            tracing::info!("not written");
            warn!("exchange failed: timeout");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("exchange failed: timeout"), "{text}");
        assert!(!text.contains("not written"), "{text}");
        assert!(
            text.contains("policy=Spokes") && text.contains("peer=192.0.2.7:500"),
            "the warning lost its peer: {text}"
        );
    }
}

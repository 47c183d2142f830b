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
use tracing::{Span, info, info_span, warn};

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
    pub policy: String,
    pub failed: bool,
    /// The last state, kept by the router so `show peers` still says why a peer is down.
    pub status: PeerStatus,
}

struct Isakmp {
    icky: [u8; 8],
    rcky: [u8; 8],
    suite: String,
    since: Instant,
    lifetime: Option<Duration>,
}

pub struct PeerActor {
    id: PeerId,
    session: IkeSession,
    /// What the router last heard of our cookies and the peer's address.
    reported_cookies: Vec<([u8; 8], Role)>,
    reported_peer: SocketAddr,
    /// SPD key: the policy name, or `policy@peer` for a spoke of a template policy.
    spd_key: Arc<str>,
    policy: String,
    peer: SocketAddr,
    sockets: IkeSockets,
    shards: Vec<Addr<EspShard>>,
    router: Addr<super::router::IkeRouter>,
    /// Installed child SA pairs by inbound SPI (ours), with the selectors of their SPD entries.
    children: SmallMap<u32, Child>,
    isakmp: Option<Isakmp>,
    last_error: Option<String>,
    timer: Option<(Instant, SpawnHandle)>,
    span: Span,
    failed: bool,
    /// The policy entry in the SPD outlives this actor (a configured single-peer policy whose
    /// cleartext must keep triggering Acquires); template spokes' entries go with the actor.
    keep_policy: bool,
    /// The policy's protected networks: what an initiation asks child SAs for.
    networks: Vec<ProtectedNetwork>,
    /// Inbound packets last seen per child (by inbound SPI), to tell the session about traffic.
    seen_packets: SmallMap<u32, u64>,
    /// Told to the router before this actor goes: it stopped cleanly and cleaned up.
    clean_stop: Arc<std::sync::atomic::AtomicBool>,
    claims: super::claims::Claims,
    /// A negotiated pair was refused during this input: delete the peer's SAs.
    refused: bool,
    /// This session installed SAs (and so owns its SPD entry and claims).
    installed_any: bool,
    /// The peer's authenticated phase-1 identity.
    peer_id: Option<String>,
    /// Where tunnel events go (the log line and `show events`).
    events: EventLog,
}

/// A child SA pair as installed: its handles and the selectors its SPD entries carry.
struct Child {
    pair: SaPair,
    selectors: Vec<ProtectedNetwork>,
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
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: PeerId,
        session: IkeSession,
        policy: String,
        spd_key: Arc<str>,
        peer: SocketAddr,
        sockets: IkeSockets,
        shards: Vec<Addr<EspShard>>,
        router: Addr<super::router::IkeRouter>,
        keep_policy: bool,
        networks: Vec<ProtectedNetwork>,
        clean_stop: Arc<std::sync::atomic::AtomicBool>,
        claims: super::claims::Claims,
        events: EventLog,
    ) -> Self {
        let span = info_span!("peer", policy = %policy, peer = %peer);
        PeerActor {
            id,
            reported_cookies: session.our_cookies(),
            reported_peer: session.peer(),
            session,
            spd_key,
            policy,
            peer,
            sockets,
            shards,
            router,
            children: SmallMap::default(),
            isakmp: None,
            last_error: None,
            timer: None,
            span,
            failed: false,
            keep_policy,
            networks,
            seen_packets: SmallMap::default(),
            clean_stop,
            claims,
            refused: false,
            installed_any: false,
            peer_id: None,
            events,
        }
    }

    /// A tunnel event of this peer, to be completed and [`PeerActor::record`]ed.
    fn event(&self, kind: Kind) -> TunnelEvent {
        TunnelEvent::new(kind, &self.policy, self.peer, self.peer_id.as_deref())
    }

    /// The one place a tunnel event is logged (one line, in the peer's span) and published.
    fn record(&self, ev: TunnelEvent) {
        let _in_span = self.span.enter();
        ev.log();
        self.events.publish(ev);
    }

    fn children_changed(&self) {
        self.router.do_send(ChildrenChanged {
            id: self.id,
            children: self.children.values().map(|c| c.pair).collect(),
        });
    }

    /// Points the SPD entries of these selectors at an outbound SA, on every shard.
    fn point_entries(&self, selectors: &[ProtectedNetwork], outbound: shard::SaHandle) {
        for pn in selectors {
            for s in &self.shards {
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
            if let Err(refusal) = self.claims.claim(&self.spd_key, !self.keep_policy, pn) {
                let reason = format!("refused: {refusal}");
                self.record(self.event(Kind::Refused).child(&info).reason(&reason));
                self.last_error = Some(reason);
                self.failed = true;
                // If the holder is dead (this very spoke before a restart, behind a NAT that
                // gave it another port), it must not keep the network until its lifetimes
                // run out: the router asks it to prove it is alive. This peer is refused
                // either way and tries again.
                if !refusal.reserved {
                    self.router.do_send(super::router::ClaimContested {
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
                self.last_error = Some(reason);
                return true;
            }
        };
        self.installed_any = true;
        crate::keylog::record_pair(&info.inbound, &info.outbound);
        // The SAs by handles the daemon issues: the outbound SPI is the peer's choice and may
        // equal another tunnel's (docs/design.md: SA handles). The SAs are in place before the SPD
        // entries of this child's selectors point at them (a re-key: the entries move to the
        // new SA here, before the old one is removed).
        let pair = SaPair::issue(spis, self.shards.len());
        shard::install_pair(
            &self.shards,
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
                selectors: info.protected_networks.clone(),
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
        let mut selectors = c.selectors.clone();
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
        self.seen_packets.remove(&spis.inbound);
        // Selectors another live pair also serves (the newer pair of a re-key that is deleted
        // before the older one) stay covered: point them at the newest such pair first.
        for pn in &gone.selectors {
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
        shard::remove_pair(&self.shards, &gone.pair, &self.spd_key);
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
                self.peer_id = Some(peer_id.clone());
                let role = if initiator { "initiator" } else { "responder" };
                self.record(
                    self.event(Kind::IsakmpUp)
                        .cookies(&initiator_cookie, &responder_cookie)
                        .suite(&format!("{suite} ({role})")),
                );
                self.last_error = None;
                self.router.do_send(super::router::Phase1Up {
                    id: self.id,
                    peer_id: peer_id.clone(),
                });
                self.isakmp = Some(Isakmp {
                    icky: initiator_cookie,
                    rcky: responder_cookie,
                    suite,
                    since: Instant::now(),
                    lifetime,
                });
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
                self.last_error = Some(format!("peer dead: {reason}"));
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
                self.last_error = Some(reason);
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
                self.peer = addr;
                let n = self.shards.len();
                for c in self.children.values() {
                    if let Some(s) = self.shards.get(c.pair.outbound_shard(n)) {
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
        let span = self.span.clone();
        let _enter = span.enter();
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
        let deadline = self.session.poll_timeout();
        if deadline != self.timer.as_ref().map(|(d, _)| *d) {
            if let Some((_, h)) = self.timer.take() {
                ctx.cancel_future(h);
            }
            if let Some(d) = deadline {
                let wait = d.saturating_duration_since(Instant::now());
                let h = ctx.run_later(wait, |act, ctx| {
                    act.timer = None;
                    act.session.handle_timeout(Instant::now());
                    act.drive(ctx);
                });
                self.timer = Some((d, h));
            }
        }
    }

    /// Tells the router the cookies and address it routes this session by, when they changed;
    /// before any datagram that carries them leaves (the router reads its mailbox in order).
    fn report_routing(&mut self) {
        let cookies = self.session.our_cookies();
        if cookies != self.reported_cookies {
            self.router.do_send(super::router::Cookies {
                id: self.id,
                cookies: cookies.clone(),
            });
            self.reported_cookies = cookies;
        }
        let peer = self.session.peer();
        if peer != self.reported_peer {
            self.router.do_send(super::router::Moved {
                id: self.id,
                to: peer,
            });
            self.reported_peer = peer;
            self.peer = peer;
        }
    }

    fn status(&self) -> PeerStatus {
        let now = Instant::now();
        PeerStatus {
            policy: self.policy.clone(),
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
            transform: self.isakmp.as_ref().map(|s| s.suite.clone()),
            age_seconds: self
                .isakmp
                .as_ref()
                .map(|s| now.duration_since(s.since).as_secs()),
            lifetime_seconds: self
                .isakmp
                .as_ref()
                .and_then(|s| s.lifetime.map(|l| l.as_secs())),
            child_sas: self.children.len(),
            last_error: self.last_error.clone(),
            identity: self.peer_id.clone(),
        }
    }
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
        tracing::debug!(parent: &self.span, "peer actor started");
        ctx.run_interval(USAGE_POLL, |act, ctx| act.poll_usage(ctx));
        self.drive(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if std::thread::panicking() {
            // A bug: actix still runs `stopped` while unwinding, so clean up as usual and let
            // the router rebuild the peer (with backoff when it keeps failing).
            tracing::error!(
                parent: &self.span,
                "peer actor died (internal error): removing its SAs; the router rebuilds it"
            );
            self.failed = true;
            self.last_error = Some("internal error: the peer's actor died and was rebuilt".into());
        }
        if self.installed_any {
            self.claims.release(&self.spd_key);
        }
        self.clean_stop
            .store(true, std::sync::atomic::Ordering::Release);
        let mut status = self.status();
        status.state = if self.failed { "failed" } else { "down" }.into();
        tracing::debug!(parent: &self.span, last_error = ?self.last_error, "peer actor stopped");
        status.child_sas = 0;
        let pairs: Vec<SpiPair> = self.children.values().map(|c| c.pair.spis).collect();
        for p in pairs {
            self.remove(p, "peer actor stopped");
        }
        // A configured policy's entries are back to "no SA yet" (its cleartext keeps
        // triggering Acquires); a template spoke's entries go with it.
        if !self.keep_policy && self.installed_any {
            for s in &self.shards {
                s.do_send(RemovePolicy {
                    policy: self.spd_key.clone(),
                });
            }
        }
        self.router.do_send(PeerStopped {
            id: self.id,
            policy: self.policy.clone(),
            failed: self.failed,
            status,
        });
    }
}

impl PeerActor {
    fn poll_usage(&mut self, ctx: &mut Context<Self>) {
        let n = self.shards.len();
        for c in self.children.values() {
            let inbound_spi = c.pair.spis.inbound;
            let Some(shard) = self.shards.get(c.pair.inbound_shard(n)) else {
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

/// Whether the inbound packet count a shard reported for pair `spi` grew since its last report.
/// Only installed pairs keep a count: a report for a pair removed since it was asked for (the
/// old pair of a re-key, removed while the shard answered) compares against zero and leaves no
/// entry behind; one stayed for the actor's life per such re-key.
fn packets_grew<C>(
    children: &SmallMap<u32, C>,
    seen: &mut SmallMap<u32, u64>,
    spi: u32,
    packets: u64,
) -> bool {
    if !children.contains_key(&spi) {
        return packets > 0;
    }
    let last = seen.get_or_default(spi);
    if packets > *last {
        *last = packets;
        return true;
    }
    false
}

impl Handler<Usage> for PeerActor {
    type Result = ();
    fn handle(&mut self, msg: Usage, ctx: &mut Context<Self>) {
        let now = Instant::now();
        if packets_grew(
            &self.children,
            &mut self.seen_packets,
            msg.inbound_spi,
            msg.usage.packets,
        ) {
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
        for network in self.networks.clone() {
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
                parent: &self.span,
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
        tracing::debug!(parent: &self.span, "half-open exchange evicted to admit a newer one");
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
            self.peer
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
        let mut children: SmallMap<u32, ()> = SmallMap::default();
        let mut seen = SmallMap::default();
        children.insert(0x1001, ());
        assert!(packets_grew(&children, &mut seen, 0x1001, 5));
        assert!(!packets_grew(&children, &mut seen, 0x1001, 5));
        assert!(packets_grew(&children, &mut seen, 0x1001, 7));
        // The pair is removed (a re-key's old one) as the remove path does; a report asked
        // for before that arrives after it: traffic as before, but no count kept.
        children.remove(&0x1001);
        seen.remove(&0x1001);
        assert!(packets_grew(&children, &mut seen, 0x1001, 9));
        assert!(!packets_grew(&children, &mut seen, 0x1001, 0));
        assert!(seen.is_empty(), "a count outlived its pair");
    }
}

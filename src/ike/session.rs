//! `IkeSession`: the sans-IO driver of everything IKE does with one peer (docs/design.md "The
//! sans-IO core"). The daemon's PeerActor feeds it datagrams, timeouts and requests, and drains
//! `poll_event` (first), `poll_transmit`, then `poll_timeout`.
//!
//! Datagrams: `Transmit::bytes` is the UDP payload exactly as it must be sent; when
//! `source_port_nat_t` is set it already starts with the non-ESP marker (RFC 3948 §2.2), or is
//! a one-byte NAT-keepalive. `handle_datagram` accepts payloads from the NAT-T port with or
//! without the marker.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::CryptoRng;
use tracing::debug;

use crate::config::{Initiate, ProtectedNetwork};
use crate::wire::isakmp::{ExchangeType, NotifyType, peek_header};

use super::config::{PeerConfig, SelectorGuard, SpiAllocator};
use super::dh::DhKeyCache;
use super::dpd::DpdState;
use super::error::IkeError;
use super::events::{Event, SpiPair};
use super::isakmp_sa::{IsakmpSa, hex};
use super::main_mode::{Ctx, MainMode, MmState, MmStep, NatDecision, plain_notify};
use super::message;
use super::nat_t;
use super::quick_mode::{QmStep, QuickMode};
use super::retransmit::{ExchangeTag, ReplyCache};
use super::sa_payload::SuiteSpis;
use super::state::{Encapsulation, Lifecycle, Origin, Path};
use super::stats::{IKE_STATS, IkeStats};

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub destination: SocketAddr,
    /// Send from the interface's NAT-T port (4500) instead of the IKE port.
    pub source_port_nat_t: bool,
    /// The UDP payload, non-ESP marker included when `source_port_nat_t`.
    pub bytes: Vec<u8>,
}

/// A child SA to negotiate (on-demand Acquire, permanent policy, or `ikehub initiate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildRequest {
    /// One of the policy's protected-network pairs (or a narrower one inside it).
    pub network: ProtectedNetwork,
}

/// What `peek_first_message` learns from a datagram without any cryptography.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirstMessageInfo {
    pub initiator_cookie: [u8; 8],
    pub exchange: ExchangeType,
    /// Main-mode message 1: responder cookie and message ID zero. Only these (and aggressive
    /// mode, which the session refuses) should create a responder session.
    pub main_mode_start: bool,
    pub aggressive: bool,
}

/// The cheap check the daemon runs on a datagram from an unknown peer before creating a
/// responder session: header only, no DH, no allocation.
pub fn peek_first_message(bytes: &[u8]) -> Result<FirstMessageInfo, IkeError> {
    let bytes = nat_t::strip_marker(bytes).unwrap_or(bytes);
    let h = peek_header(bytes).map_err(|e| IkeError::drop(format!("not ISAKMP: {e}")))?;
    if h.version() != crate::wire::isakmp::VERSION_1_0 {
        return Err(IkeError::drop(format!(
            "ISAKMP version {:#04x}",
            h.version()
        )));
    }
    let first = h.responder_cookie() == [0; 8] && h.message_id() == 0;
    Ok(FirstMessageInfo {
        initiator_cookie: h.initiator_cookie(),
        exchange: h.exchange_type(),
        main_mode_start: first && h.exchange_type() == ExchangeType::MAIN_MODE,
        aggressive: first && h.exchange_type() == ExchangeType::AGGRESSIVE,
    })
}

/// One installed child SA pair and its renewal state. Its keys are not kept: they went to the
/// daemon in the event that announced the pair (the shards hold them); the session keeps what
/// deletes and re-keys need.
pub(crate) struct Child {
    pub spis: SpiPair,
    /// Our SPIs by protocol (what our deletes name, RFC 2408 §3.15) ...
    pub inbound: SuiteSpis,
    /// ... and the peer's (what its deletes name).
    pub outbound: SuiteSpis,
    /// The pair's hard lifetime, as negotiated.
    pub lifetime: Option<Duration>,
    /// The selectors (what a re-key asks for again).
    pub network: ProtectedNetwork,
    pub soft: Option<Instant>,
    pub hard: Option<Instant>,
    /// A re-key exchange was started for it (by us).
    pub rekeying: bool,
    /// Its successor, once installed.
    pub replaced_by: Option<SpiPair>,
    /// The pair it replaced.
    pub rekey_of: Option<SpiPair>,
    /// Loser of a simultaneous re-key: never re-keyed, deleted by its creator.
    pub redundant: bool,
    /// We sent its quick-mode message 1.
    pub we_initiated: bool,
    /// Ni of the exchange that made it (simultaneous re-key tie-break).
    pub ni: Box<[u8]>,
    /// End of the grace period after its replacement: we send its delete then.
    pub delete_at: Option<Instant>,
    /// The daemon reported inbound traffic on it.
    pub traffic: bool,
}

/// What every exchange of the session works with: the policy, randomness, the SPI allocator
/// and our address. A field of its own, apart from the exchange tables, so that it can lend a
/// [`Ctx`] while a main or quick mode of the same session is borrowed mutably.
pub(crate) struct Env {
    /// The policy: shared by every spoke of a template (`set_selector_guard`).
    pub config: Arc<PeerConfig>,
    /// This session's own selector guard, which wins over the policy's.
    pub selector_guard: Option<Arc<dyn SelectorGuard>>,
    pub rng: Box<dyn CryptoRng + Send>,
    pub spis: Arc<dyn SpiAllocator>,
    /// Responder key pairs to reuse when the policy allows it (`dh-key-reuse-seconds`).
    pub dh_keys: Option<Arc<DhKeyCache>>,
    /// Our IKE address (interface address, IKE port).
    pub local: SocketAddr,
}

impl Env {
    /// The context of one input at `now`.
    pub fn ctx(&mut self, now: Instant) -> Ctx<'_> {
        Ctx {
            config: &self.config,
            selector_guard: self
                .selector_guard
                .as_deref()
                .or(self.config.selector_guard.as_deref()),
            rng: &mut *self.rng,
            spis: &*self.spis,
            dh_keys: self.dh_keys.as_deref(),
            now,
            local: self.local,
        }
    }
}

/// The IKEv1 state machine of one peer.
pub struct IkeSession {
    /// What every exchange works with (lent to them as a `Ctx`).
    pub(crate) env: Env,
    /// The peer's address, the NAT-T float and ESP's encapsulation (state.rs).
    pub(crate) path: Path,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) origin: Origin,
    pub(crate) main_modes: Vec<MainMode>,
    pub(crate) isakmp: Vec<IsakmpSa>,
    pub(crate) quick_modes: Vec<QuickMode>,
    pub(crate) children: Vec<Child>,
    /// Child SAs waiting for an ISAKMP SA: (selectors, pair it re-keys).
    pub(crate) pending: Vec<(ProtectedNetwork, Option<SpiPair>)>,
    pub(crate) replies: ReplyCache,
    pub(crate) dpd: Option<DpdState>,
    pub(crate) keepalive_at: Option<Instant>,
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
}

impl std::fmt::Debug for IkeSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IkeSession")
            .field("policy", &self.env.config.policy)
            .field("path", &self.path)
            .field("lifecycle", &self.lifecycle)
            .field("isakmp", &self.isakmp)
            .field("children", &self.children.len())
            .finish()
    }
}

impl IkeSession {
    fn new(
        config: Arc<PeerConfig>,
        local: SocketAddr,
        peer: SocketAddr,
        origin: Origin,
        rng: Box<dyn CryptoRng + Send>,
        spis: Arc<dyn SpiAllocator>,
    ) -> Self {
        Self {
            env: Env {
                config,
                selector_guard: None,
                rng,
                spis,
                dh_keys: None,
                local,
            },
            path: Path::new(peer),
            lifecycle: Lifecycle::Fresh,
            origin,
            main_modes: Vec::new(),
            isakmp: Vec::new(),
            quick_modes: Vec::new(),
            children: Vec::new(),
            pending: Vec::new(),
            replies: ReplyCache::default(),
            dpd: None,
            keepalive_at: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// A session that starts main mode now (message 1 is queued). `local` is our interface
    /// address with the IKE port, `peer` the peer's (port 500 normally).
    pub fn new_initiator(
        config: Arc<PeerConfig>,
        local: SocketAddr,
        peer: SocketAddr,
        now: Instant,
        rng: Box<dyn CryptoRng + Send>,
        spis: Arc<dyn SpiAllocator>,
    ) -> Self {
        let mut s = Self::new(config, local, peer, Origin::WeCalled, rng, spis);
        s.start_main_mode(now, false);
        s
    }

    /// A session for a peer whose main-mode message 1 just arrived (pass it to
    /// `handle_datagram` next; until then the session is not closed, only empty). Create it only
    /// after `peek_first_message` and the policy's address check: the first message costs no DH,
    /// message 3 does.
    pub fn new_responder(
        config: Arc<PeerConfig>,
        local: SocketAddr,
        peer: SocketAddr,
        _now: Instant,
        rng: Box<dyn CryptoRng + Send>,
        spis: Arc<dyn SpiAllocator>,
    ) -> Self {
        Self::new(config, local, peer, Origin::PeerCalled, rng, spis)
    }

    /// The guard quick mode asks before it accepts a pair the peer proposed (see
    /// [`SelectorGuard`]), for this session alone. A daemon gives each spoke of a template its
    /// own guard this way and shares one `Arc<PeerConfig>` among all of them: a copy of the
    /// policy per spoke (name, pre-shared key, transform lists) was 800 bytes per tunnel
    /// (docs/design.md "Per-tunnel memory budget"). Wins over `PeerConfig::selector_guard`.
    pub fn set_selector_guard(&mut self, guard: Arc<dyn SelectorGuard>) {
        self.env.selector_guard = Some(guard);
    }

    /// Shares the daemon's responder key pairs with this session. They are used only when the
    /// policy sets `PeerConfig::dh_key_reuse` (see `dh/reuse.rs` for the cost in forward
    /// secrecy); without this call every exchange makes its own pair.
    pub fn set_dh_key_cache(&mut self, cache: Arc<DhKeyCache>) {
        self.env.dh_keys = Some(cache);
    }

    // ---- outputs (`poll_timeout` and `handle_timeout`: timers.rs) ----------------------------

    /// The next datagram to send. Drain `poll_event` first (see `events`).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front();
        if t.is_none() {
            // The input is handled: give back what its exchanges no longer use.
            self.release_slack();
        }
        t
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front();
        if e.is_none() && self.events.capacity() > 0 {
            self.events = VecDeque::new();
        }
        e
    }

    /// Frees the spare capacity of the session's tables once an input is handled: an
    /// established tunnel holds thousands of sessions' worth of finished exchanges otherwise
    /// (a `MainMode` is 1.6 KB, an `Event` half a KB). docs/design.md "Per-tunnel memory
    /// budget".
    fn release_slack(&mut self) {
        fn fit<T>(v: &mut Vec<T>) {
            if v.capacity() > v.len() {
                v.shrink_to_fit();
            }
        }
        fit(&mut self.main_modes);
        fit(&mut self.isakmp);
        fit(&mut self.quick_modes);
        fit(&mut self.children);
        fit(&mut self.pending);
        if self.transmits.is_empty() && self.transmits.capacity() > 0 {
            self.transmits = VecDeque::new();
        }
    }

    /// Nothing is left (failed, deleted, dead): the daemon may drop the session.
    pub fn is_closed(&self) -> bool {
        match self.lifecycle {
            Lifecycle::Closed => true,
            Lifecycle::Fresh => false,
            Lifecycle::Running { .. } => {
                self.main_modes.is_empty()
                    && self.isakmp.is_empty()
                    && self.quick_modes.is_empty()
                    && self.children.is_empty()
                    && self.pending.is_empty()
            }
        }
    }

    /// The peer's current address (changes with the NAT-T float and NAT rebinding).
    pub fn peer(&self) -> SocketAddr {
        self.path.peer
    }

    /// The established child SA pairs.
    pub fn child_sas(&self) -> Vec<SpiPair> {
        self.children.iter().map(|c| c.spis).collect()
    }

    /// The established ISAKMP SAs: (initiator cookie, responder cookie, suite).
    pub fn isakmp_sas(&self) -> Vec<([u8; 8], [u8; 8], String)> {
        self.isakmp
            .iter()
            .map(|s| (s.cky_i, s.cky_r, s.suite.to_string()))
            .collect()
    }

    // ---- helpers ----------------------------------------------------------------------------

    /// Sends to the peer's authenticated address.
    pub(crate) fn send(&mut self, msg: Vec<u8>) {
        self.send_to(self.path.peer, self.path.floated(), msg);
    }

    /// Sends to `destination`, from the NAT-T port (with the non-ESP marker) when `nat_t`.
    pub(crate) fn send_to(&mut self, destination: SocketAddr, nat_t: bool, msg: Vec<u8>) {
        let bytes = if nat_t {
            let mut b = Vec::with_capacity(4 + msg.len());
            b.extend_from_slice(&nat_t::NON_ESP_MARKER);
            b.extend_from_slice(&msg);
            b
        } else {
            msg
        };
        self.transmits.push_back(Transmit {
            destination,
            source_port_nat_t: nat_t,
            bytes,
        });
    }

    /// Where the messages of main mode `i` go: a responder exchange answers where it came
    /// from; everything else goes to the peer's authenticated address.
    fn mm_destination(&self, i: usize) -> (SocketAddr, bool) {
        self.main_modes[i]
            .reply_to
            .unwrap_or((self.path.peer, self.path.floated()))
    }

    /// Something authenticated exists with this peer (an ISAKMP SA or a child SA): from then on
    /// its address and state change only through authenticated messages.
    pub(crate) fn established(&self) -> bool {
        !self.isakmp.is_empty() || !self.children.is_empty()
    }

    /// The cookies we chose for this session's exchanges and ISAKMP SAs, which the daemon routes
    /// by (`demux`).
    pub fn our_cookies(&self) -> Vec<([u8; 8], super::demux::Role)> {
        use super::demux::Role;
        let mm = self.main_modes.iter().map(|m| {
            if m.initiator {
                (m.cky_i, Role::Initiator)
            } else {
                (m.cky_r, Role::Responder)
            }
        });
        let sa = self.isakmp.iter().map(|s| {
            let (i, r) = s.cookies();
            if s.initiator {
                (i, Role::Initiator)
            } else {
                (r, Role::Responder)
            }
        });
        mm.chain(sa).collect()
    }

    /// An error notify in the clear, under a fresh random message ID (RFC 2408 §5).
    fn send_plain_notify(
        &mut self,
        (to, nat_t): (SocketAddr, bool),
        cky_i: [u8; 8],
        cky_r: [u8; 8],
        n: NotifyType,
    ) {
        let id = self.env.rng.next_u32();
        self.send_to(to, nat_t, plain_notify(cky_i, cky_r, n, id));
    }

    /// A failure of this session is an operator event: we called the peer, or it had an ISAKMP
    /// SA with us before. Otherwise it is an unknown initiator that never authenticated, whose
    /// failures anyone can cause: those are counted in rate-limited summaries, not logged one
    /// by one.
    pub fn accountable(&self) -> bool {
        self.contacted() || self.origin == Origin::WeCalled
    }

    /// Queues an event. The daemon logs each one once, in words with hex SPIs and cookies
    /// (actors/events.rs); here only its name goes to the debug log, never a `Debug` dump of
    /// key-bearing parameters.
    pub(crate) fn emit(&mut self, e: Event) {
        match &e {
            Event::Failed { reason, notify } if !self.accountable() => {
                debug!(policy = %self.env.config.policy, peer = %self.path.peer, notify = ?notify, "{reason}")
            }
            other => {
                debug!(policy = %self.env.config.policy, peer = %self.path.peer, "session event: {}", other.name())
            }
        }
        self.events.push_back(e);
    }

    pub(crate) fn fail(&mut self, e: &IkeError) {
        // Reasons may quote what a peer sent: bounded like the NO-PROPOSAL-CHOSEN list.
        self.emit(Event::Failed {
            reason: super::proposal::cap_reason(
                e.reason.clone(),
                2 * super::proposal::REASON_MAX_LEN,
            ),
            notify: e.notify,
        });
    }

    /// Our address as the peer sees the exchange: NAT-T port after floating.
    pub(crate) fn local_addr(&self, to_nat_t: bool) -> SocketAddr {
        let mut a = self.env.local;
        if to_nat_t {
            a.set_port(self.env.config.nat.nat_t_port);
        }
        a
    }

    pub(crate) fn start_main_mode(&mut self, now: Instant, rekey: bool) {
        self.note_input();
        let ic = !self.contacted();
        let mut ctx = self.env.ctx(now);
        let (mm, msg) = MainMode::initiate(&mut ctx, rekey, ic);
        self.main_modes.push(mm);
        IkeStats::count(&IKE_STATS.handshakes_started);
        self.send(msg);
    }

    /// Another authenticated peer wants a network this session's child SAs hold (a spoke
    /// behind the same NAT that restarted and came back from another port looks exactly like
    /// that): find out at once whether this peer is still there, with RFC 3706 R-U-THERE under
    /// the ISAKMP SA, rather than keep a dead peer's networks until its lifetimes run out. A
    /// live peer answers and keeps everything; one that does not answer within the DPD timeout
    /// is declared dead as by idle DPD (`Event::PeerDead`), which releases its SAs and networks.
    /// Only if the peer announced DPD (its vendor ID; we always announce it, as we always
    /// answer): a peer that never agreed to answer must not be declared dead for not answering.
    /// Without `dpd` in the policy the round is timed by `dpd::LIVENESS_CHECK` and idle
    /// probing stays off. Nothing the asking peer sent reaches this session. Returns whether a
    /// probe round started (false while one is under way).
    pub fn check_liveness(&mut self, now: Instant) -> bool {
        if self.closed() || !self.isakmp.last().is_some_and(|sa| sa.caps.dpd) {
            return false;
        }
        if self.dpd.is_none() {
            let seq = self.env.rng.next_u32();
            self.dpd = Some(DpdState::liveness_only(now, seq));
        }
        self.dpd.as_mut().is_some_and(|d| d.probe_now(now))
    }

    /// The newest usable ISAKMP SA.
    pub(crate) fn active_sa(&self) -> Option<usize> {
        self.isakmp.iter().rposition(IsakmpSa::active)
    }

    // ---- inputs -----------------------------------------------------------------------------

    /// Negotiates a child SA for `req` (no-op when one exists or is being negotiated for the
    /// same selectors). Starts main mode first when no ISAKMP SA is up.
    pub fn initiate_child(&mut self, now: Instant, req: ChildRequest) {
        if self.closed() {
            return;
        }
        self.note_input();
        let busy = self
            .children
            .iter()
            .any(|c| c.network == req.network && c.replaced_by.is_none() && !c.redundant)
            || self
                .quick_modes
                .iter()
                .any(|q| q.initiator && q.network == req.network)
            || self.pending.iter().any(|(n, _)| *n == req.network);
        if busy {
            return;
        }
        self.pending.push((req.network, None));
        self.run_pending(now);
    }

    /// The daemon saw inbound ESP/AH on `inbound_spi` (or on any SA of the peer when `None`):
    /// the peer is alive (DPD probes only an idle peer) and the pair is in use.
    pub fn note_inbound_traffic(&mut self, now: Instant, inbound_spi: Option<u32>) {
        if let Some(d) = &mut self.dpd {
            d.activity(now);
        }
        for c in &mut self.children {
            if inbound_spi.is_none_or(|s| s == c.spis.inbound) {
                c.traffic = true;
            }
        }
    }

    /// The daemon's SA reached its soft kilobyte limit: re-key it now.
    pub fn child_soft_expired(&mut self, now: Instant, inbound_spi: u32) {
        if let Some(c) = self
            .children
            .iter_mut()
            .find(|c| c.spis.inbound == inbound_spi)
        {
            c.soft = Some(now);
            c.traffic = true;
        }
        self.handle_timeout(now);
    }

    /// Starts what waits for an ISAKMP SA, or the main mode that brings one up.
    pub(crate) fn run_pending(&mut self, now: Instant) {
        if self.pending.is_empty() {
            return;
        }
        match self.active_sa() {
            Some(_) => {
                for (net, rekey_of) in std::mem::take(&mut self.pending) {
                    self.start_quick_mode(now, net, rekey_of);
                }
            }
            None => {
                if !self.main_modes.iter().any(|m| m.initiator) {
                    self.start_main_mode(now, false);
                }
            }
        }
    }

    pub(crate) fn start_quick_mode(
        &mut self,
        now: Instant,
        network: ProtectedNetwork,
        rekey_of: Option<SpiPair>,
    ) {
        let Some(i) = self.active_sa() else {
            self.pending.push((network, rekey_of));
            return;
        };
        let env = self.path.qm_env(None);
        let mut ctx = self.env.ctx(now);
        match QuickMode::initiate(&mut ctx, &env, &mut self.isakmp[i], network, rekey_of) {
            Ok((qm, msg)) => {
                self.quick_modes.push(qm);
                self.send(msg);
            }
            Err(e) => self.fail(&e),
        }
    }

    /// A datagram from the peer. `to_port_is_nat_t`: it arrived on our NAT-T port.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to_port_is_nat_t: bool,
        bytes: &[u8],
    ) {
        if self.closed() {
            return;
        }
        self.note_input();
        let bytes = if to_port_is_nat_t {
            match nat_t::strip_marker(bytes) {
                Some(b) => b,
                None => return,
            }
        } else {
            bytes
        };
        if let Some(reply) = self.replies.lookup(bytes) {
            debug!(peer = %from, "retransmitted request: answering with the stored reply");
            if let Some(r) = reply.map(<[u8]>::to_vec) {
                let (to, nat_t) = self.reply_destination(bytes);
                self.send_to(to, nat_t, r);
            }
            return;
        }
        let Ok(h) = peek_header(bytes) else {
            debug!(peer = %from, "dropped: not an ISAKMP datagram");
            return;
        };
        let to = self.local_addr(to_port_is_nat_t);
        match h.exchange_type() {
            ExchangeType::MAIN_MODE => self.on_main_mode(now, from, to, to_port_is_nat_t, bytes),
            ExchangeType::AGGRESSIVE => self.refuse_aggressive(now, from, to_port_is_nat_t, bytes),
            ExchangeType::QUICK_MODE => self.on_quick_mode(now, from, to_port_is_nat_t, bytes),
            ExchangeType::INFORMATIONAL => {
                self.on_informational(now, from, to_port_is_nat_t, bytes)
            }
            t => debug!(peer = %from, "dropped: exchange type {t} not supported"),
        }
        self.run_pending(now);
    }

    /// Where a stored reply to this request goes: the exchange's own address for a responder
    /// main mode, else the peer's authenticated address.
    fn reply_destination(&self, bytes: &[u8]) -> (SocketAddr, bool) {
        let Ok(h) = peek_header(bytes) else {
            return (self.path.peer, self.path.floated());
        };
        let (cky_i, cky_r) = (h.initiator_cookie(), h.responder_cookie());
        self.main_modes
            .iter()
            .position(|m| !m.initiator && m.cky_i == cky_i && (cky_r == [0; 8] || m.cky_r == cky_r))
            .map_or((self.path.peer, self.path.floated()), |i| {
                self.mm_destination(i)
            })
    }

    /// Aggressive mode is refused (the daemon's demux already drops it before any session; a
    /// session fed one directly answers once, without moving the peer's address).
    fn refuse_aggressive(&mut self, now: Instant, from: SocketAddr, nat_port: bool, bytes: &[u8]) {
        let Ok(h) = peek_header(bytes) else { return };
        if h.responder_cookie() != [0; 8] || self.established() {
            return;
        }
        let cky_r = self.env.ctx(now).cookie();
        self.send_plain_notify(
            (from, nat_port),
            h.initiator_cookie(),
            cky_r,
            NotifyType::INVALID_EXCHANGE_TYPE,
        );
        let e = IkeError::notify(
            NotifyType::INVALID_EXCHANGE_TYPE,
            format!(
                "aggressive mode refused (policy {}): with pre-shared keys it sends a hash of the \
                 key in the clear that can be cracked offline; configure the peer for main mode",
                self.env.config.policy
            ),
        );
        self.fail(&e);
    }

    fn on_main_mode(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: SocketAddr,
        nat_port: bool,
        bytes: &[u8],
    ) {
        let (h, body) = match message::decode(bytes) {
            Ok(x) => x,
            Err(e) => {
                debug!(peer = %from, "main mode: {}", e.reason);
                return;
            }
        };
        let idx = self.main_modes.iter().position(|m| {
            m.cky_i == h.initiator_cookie
                && (m.cky_r == h.responder_cookie || (m.initiator && m.state == MmState::SentSa))
        });
        let Some(i) = idx else {
            self.on_new_main_mode(now, from, nat_port, bytes, h, body);
            return;
        };
        let mut ctx = self.env.ctx(now);
        let result = self.main_modes[i].on_message(&mut ctx, h, body, to, from);
        match result {
            Ok(MmStep::Send(msg)) => {
                let mm = &self.main_modes[i];
                let initiator = mm.initiator;
                // A responder exchange inside an established session is not authenticated
                // yet: what its NAT-D says waits until it is (below, `Established`).
                if (initiator || !self.established())
                    && let Some(d) = mm.nat_decision(&self.env.config)
                {
                    self.apply_nat(now, d);
                }
                // The peer has our previous answer: only this one can still be asked for.
                self.replies.forget(ExchangeTag::phase1(h.initiator_cookie));
                if initiator {
                    // A duplicate of the answer we just took is dropped quietly.
                    self.replies.store(bytes, None);
                } else {
                    self.replies.store(bytes, Some(msg.clone()));
                }
                let (to, nat_t) = self.mm_destination(i);
                self.send_to(to, nat_t, msg);
            }
            Ok(MmStep::Established(sa, reply)) => {
                let (mut to, mut nat_t) = self.mm_destination(i);
                let mm = self.main_modes.remove(i);
                if !mm.initiator
                    && self.established()
                    && let Some(d) = mm.nat_decision(&self.env.config)
                {
                    self.apply_nat(now, d);
                }
                if !mm.initiator {
                    if nat_port && mm.caps.nat_t.is_some() {
                        // The initiator floated to 4500 (RFC 3947 §4), because it saw a NAT or
                        // forces encapsulation: message 5, now authenticated, says where it is.
                        (to, nat_t) = (from, true);
                        self.set_path(self.path.encapsulate(mm.caps.nat_t, false, None));
                    }
                    // The exchange is authenticated: the peer is where it ran (RFC 3947 §5).
                    self.adopt_address(to, nat_t);
                }
                // Phase 1 is over: a responder keeps message 6 for a retransmitted message 5
                // until the peer shows it has it (its first message under the new SA,
                // `peer_has_sa`); an initiator keeps nothing (a late copy of message 6 names no
                // exchange and is dropped).
                self.replies.forget(ExchangeTag::phase1(h.initiator_cookie));
                if let Some(r) = reply {
                    self.replies.store(bytes, Some(r.clone()));
                    self.send_to(to, nat_t, r);
                }
                self.isakmp_established(now, *sa, mm.got_initial_contact, mm.rekey);
            }
            Err(e) if !e.fatal => debug!(peer = %from, "main mode: dropped: {}", e.reason),
            Err(e) => {
                let (to, nat_t) = self.mm_destination(i);
                let mm = self.remove_failed_main_mode(i);
                if let Some(n) = e.notify {
                    self.send_plain_notify((to, nat_t), mm.cky_i, mm.cky_r, n);
                }
                self.fail_exchange(&e);
            }
        }
    }

    /// A main-mode message that names no exchange of ours: only a message 1 starts one. It is
    /// answered where it came from and changes nothing the session already has (docs/design.md: a
    /// message 1 never changes an established session); when the half-open bound is reached
    /// the oldest unfinished responder exchange makes room, so forged message 1s cannot lock
    /// the real peer out.
    fn on_new_main_mode(
        &mut self,
        now: Instant,
        from: SocketAddr,
        nat_port: bool,
        bytes: &[u8],
        h: crate::wire::isakmp::Header,
        body: Result<message::Parsed, Vec<u8>>,
    ) {
        if h.responder_cookie != [0; 8] || h.message_id != 0 {
            debug!(peer = %from, "main mode: unknown cookies, dropped");
            return;
        }
        if self
            .main_modes
            .iter()
            .any(|m| m.cky_i == h.initiator_cookie)
        {
            return;
        }
        let Ok(m1) = body else { return };
        let responders = self.main_modes.iter().filter(|m| !m.initiator).count();
        if responders >= self.env.config.max_half_open.max(1)
            && let Some(oldest) = self.main_modes.iter().position(|m| !m.initiator)
        {
            let old = self.main_modes.remove(oldest);
            debug!(
                peer = %from,
                evicted = %hex(&old.cky_i),
                "main mode: half-open bound reached, the oldest unfinished exchange makes room"
            );
        }
        if !self.established() {
            // Nothing authenticated yet: the session is wherever its exchanges come from.
            self.adopt_address(from, nat_port);
        }
        let mut ctx = self.env.ctx(now);
        let cky_r = ctx.cookie();
        match MainMode::respond(&mut ctx, &m1, cky_r) {
            Ok((mut mm, msg)) => {
                mm.set_initial_contact(!self.contacted());
                mm.reply_to = Some((from, nat_port));
                self.main_modes.push(mm);
                IkeStats::count(&IKE_STATS.handshakes_started);
                self.replies.store(bytes, Some(msg.clone()));
                self.send_to(from, nat_port, msg);
            }
            Err(e) => {
                if let Some(n) = e.notify {
                    self.send_plain_notify((from, nat_port), h.initiator_cookie, cky_r, n);
                }
                self.fail_exchange(&e);
            }
        }
    }

    /// The peer's address after an authenticated exchange (or before anything is
    /// authenticated). UDP-encapsulated child SAs follow a NATed peer to its new port.
    fn adopt_address(&mut self, to: SocketAddr, nat_t: bool) {
        let moved = to != self.path.peer;
        let mut path = Path {
            peer: to,
            ..self.path
        };
        if nat_t && !path.floated() {
            path = path.float();
        }
        self.set_path(path);
        if moved && self.path.floated() && !self.children.is_empty() {
            self.emit(Event::PeerPortChanged(to));
        }
    }

    /// Removes main mode `i`, which failed (refused, broken or unanswered). When it was ours,
    /// the child requests that waited for it fail with it, as the Failed event that follows
    /// says. Trying again is the owner's decision (the daemon's restart back-off, the next
    /// Acquire), never a new message 1 at once: against a peer that refuses, that would be one
    /// exchange per round trip for as long as it refuses.
    pub(crate) fn remove_failed_main_mode(&mut self, i: usize) -> MainMode {
        let mm = self.main_modes.remove(i);
        if mm.initiator
            && self.active_sa().is_none()
            && !self.main_modes.iter().any(|m| m.initiator)
        {
            self.pending.clear();
        }
        mm
    }

    /// A failed exchange. With an established peer, an exchange that never authenticated
    /// (anyone can start one with the peer's address) is only logged: it must not mark the
    /// peer failed.
    pub(crate) fn fail_exchange(&mut self, e: &IkeError) {
        if self.established() {
            debug!(policy = %self.env.config.policy, peer = %self.path.peer, "unauthenticated exchange failed: {}", e.reason);
        } else {
            self.fail(e);
        }
    }

    /// Applies what main mode decided about NAT traversal (`MainMode::nat_decision`).
    fn apply_nat(&mut self, now: Instant, d: NatDecision) {
        let outcome = d.outcome();
        self.emit(Event::NatDetected {
            local_behind_nat: outcome.local_behind_nat,
            peer_behind_nat: outcome.peer_behind_nat,
        });
        let NatDecision::Encapsulate {
            variant,
            float,
            keepalive,
            ..
        } = d
        else {
            if matches!(self.path.encap, Encapsulation::NatT { .. }) {
                self.set_path(self.path.encapsulate(None, false, Some(outcome)));
            }
            return;
        };
        let mut path = self.path.encapsulate(variant, true, Some(outcome));
        if float && !path.floated() {
            path = path.float();
            path.peer.set_port(self.env.config.nat.nat_t_port);
        }
        self.set_path(path);
        if keepalive {
            self.keepalive_at = Some(now + self.env.config.nat.keepalive_interval);
        }
    }

    fn isakmp_established(
        &mut self,
        now: Instant,
        sa: IsakmpSa,
        initial_contact: bool,
        rekey: bool,
    ) {
        let (cky_i, cky_r) = sa.cookies();
        self.emit(Event::IsakmpSaEstablished {
            initiator_cookie: cky_i,
            responder_cookie: cky_r,
            suite: sa.suite.to_string(),
            lifetime: sa.lifetime(),
            initiator: sa.initiator,
            peer_id: sa.peer_id.clone(),
        });
        if initial_contact && self.contacted() {
            self.initial_contact(now, None);
        } else if initial_contact {
            self.emit(Event::InitialContact);
        }
        // The older ISAKMP SAs go after the grace period (phase-1 re-key, either side).
        let grace = self.env.config.rekey.isakmp_grace;
        for old in self.isakmp.iter_mut().filter(|s| s.retire_at.is_none()) {
            old.retire_at = Some(now + grace);
        }
        let _ = rekey;
        if let (Some(d), true) = (&self.env.config.dpd, sa.caps.dpd) {
            if self.dpd.is_none() {
                let seq = self.env.rng.next_u32();
                self.dpd = Some(DpdState::new(d, now, seq));
            } else if let Some(dpd) = &mut self.dpd {
                dpd.activity(now);
            }
        }
        self.isakmp.push(sa);
        self.note_contact();
        if self.env.config.initiate == Initiate::Permanent
            && self.children.is_empty()
            && self.quick_modes.is_empty()
            && self.pending.is_empty()
            && self.isakmp.last().is_some_and(|s| s.initiator)
        {
            for n in self.env.config.protected_networks.clone() {
                self.pending.push((n, None));
            }
        }
        self.run_pending(now);
    }

    fn on_quick_mode(&mut self, now: Instant, from: SocketAddr, nat_port: bool, bytes: &[u8]) {
        let (h, body) = match message::decode(bytes) {
            Ok(x) => x,
            Err(e) => {
                debug!(peer = %from, "quick mode: {}", e.reason);
                return;
            }
        };
        let Err(cipher) = body else {
            debug!(peer = %from, "quick mode: unencrypted message dropped");
            return;
        };
        let Some(si) = self
            .isakmp
            .iter()
            .position(|s| s.matches(&h.initiator_cookie, &h.responder_cookie))
        else {
            debug!(peer = %from, "quick mode: no ISAKMP SA {}/{}", hex(&h.initiator_cookie), hex(&h.responder_cookie));
            return;
        };
        let m = match message::decrypt(h, &cipher, &self.isakmp[si].iv) {
            Ok(m) => m,
            Err(e) => {
                debug!(peer = %from, "quick mode: dropped: {}", e.reason);
                return;
            }
        };
        let refuse = self.quick_mode_refusal(&h.initiator_cookie, &h.responder_cookie);
        let env = self.path.qm_env(refuse);
        let mut ctx = self.env.ctx(now);
        let qi = self.quick_modes.iter().position(|q| {
            q.msg_id == h.message_id
                && q.cky_i == h.initiator_cookie
                && q.cky_r == h.responder_cookie
        });
        let result = match qi {
            Some(qi) => self.quick_modes[qi]
                .on_message(&mut ctx, &env, &mut self.isakmp[si], &m)
                .map(|s| (None, s)),
            None => {
                if self.isakmp[si].used_ids.contains(&h.message_id) {
                    debug!(peer = %from, "quick mode: stale message ID {:08x}", h.message_id);
                    return;
                }
                QuickMode::respond(&mut ctx, &env, &mut self.isakmp[si], &m)
                    .map(|(q, s)| (Some(q), s))
            }
        };
        match result {
            Ok((new_qm, step)) => {
                self.authenticated(now, from, nat_port);
                self.peer_has_sa(h.initiator_cookie);
                match step {
                    QmStep::Reply(child, msg) => {
                        let Some(qm) = new_qm else { return };
                        let ni = qm.ni.clone().into_boxed_slice();
                        self.add_child(now, *child, qm.network, None, false, ni);
                        self.quick_modes.push(qm);
                        self.replies.store(bytes, Some(msg.clone()));
                        self.send(msg);
                    }
                    QmStep::Done(child, msg) => {
                        let Some(qi) = qi else { return };
                        let qm = self.quick_modes.remove(qi);
                        let ni = qm.ni.into_boxed_slice();
                        self.add_child(now, *child, qm.network, qm.rekey_of, true, ni);
                        // Kept: the responder retransmits message 2 until message 3 arrives,
                        // and nothing tells us when it did (RFC 2408 §5); so for as long as
                        // it may retransmit, not for the session's life.
                        let until = now + crate::ike::retransmit::UNACKNOWLEDGED_REPLY_KEPT;
                        self.replies.store_until(bytes, msg.clone(), until);
                        self.send(msg);
                    }
                    QmStep::AwaitConnected(msg) => {
                        // The pair stays in the exchange until CONNECTED (informational.rs).
                        self.replies.store(bytes, Some(msg.clone()));
                        self.send(msg);
                    }
                    QmStep::Confirmed => {
                        if let Some(qi) = qi
                            && let Some(spis) = self.quick_modes.remove(qi).announced
                        {
                            self.emit(Event::ChildSaConfirmed(spis));
                        }
                        // Message 3 ends the exchange: the peer has message 2. A late copy of
                        // message 3 finds its message ID used and is dropped.
                        self.replies.forget(ExchangeTag::of(bytes));
                    }
                }
            }
            Err(e) if !e.fatal => debug!(peer = %from, "quick mode: dropped: {}", e.reason),
            Err(e) => {
                // The message was authenticated (HASH verified) before any fatal error.
                if let Some(n) = e.notify {
                    let (ci, cr) = self.isakmp[si].cookies();
                    self.send_info(
                        now,
                        si,
                        vec![crate::wire::isakmp::Payload::Notification(
                            crate::wire::isakmp::Notification::isakmp(n, ci, cr, Vec::new()),
                        )],
                    );
                }
                if let Some(qi) = qi {
                    let qm = self.quick_modes.remove(qi);
                    self.release_reserved(&qm);
                }
                self.fail(&e);
            }
        }
    }

    /// An authenticated message under ISAKMP SA `cky_i` arrived: the peer has the SA, so it
    /// can no longer retransmit main-mode message 5, and our stored message 6 goes.
    pub(crate) fn peer_has_sa(&mut self, cky_i: [u8; 8]) {
        self.replies.forget(ExchangeTag::phase1(cky_i));
    }

    /// An authenticated message came from `from`: follow a NAT rebinding (RFC 3947 §4).
    pub(crate) fn authenticated(&mut self, now: Instant, from: SocketAddr, nat_port: bool) {
        if let Some(d) = &mut self.dpd {
            d.activity(now);
        }
        if nat_port && self.path.floated() && from != self.path.peer {
            self.set_path(Path {
                peer: from,
                ..self.path
            });
            self.emit(Event::PeerPortChanged(from));
        }
    }
}

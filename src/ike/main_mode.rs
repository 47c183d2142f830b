//! Main mode with pre-shared keys (RFC 2409 §5, §5.4), initiator and responder side by side.
//!
//! ```text
//!  Initiator                              Responder
//!  1  HDR, SA, VID*                  -->
//!                                    <--  2  HDR, SA, VID*
//!  3  HDR, KE, Ni, NAT-D, NAT-D      -->
//!                                    <--  4  HDR, KE, Nr, NAT-D, NAT-D
//!  5  HDR*, IDii, HASH_I [, N(IC)]   -->     (from port 4500 when a NAT was detected)
//!                                    <--  6  HDR*, IDir, HASH_R [, N(IC)]
//! ```
//! The payload tables are `message::MM_SA`, `MM_KE`, `MM_ID`. Keys are derived as soon as
//! both nonces and KE values are known (responder: on message 3, initiator: on message 4).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rand::CryptoRng;
use tracing::debug;

use crate::config::HashAlgorithm;
use crate::wire::isakmp::{
    ExchangeType, Flags, Header, Notification, NotifyType, Payload, PayloadType,
};

use super::cipher::IvChain;
use super::config::{PeerConfig, SpiAllocator};
use super::dh::{DhGroup, DhKeyCache, DhKeyPair};
use super::error::{IkeError, IkeResult};
use super::identity::{check_phase1_id, describe_phase1_id, local_phase1_id};
use super::isakmp_sa::{IsakmpSa, hex};
use super::keys::{Phase1Inputs, Phase1Keys};
use super::message::{self, MM_ID, MM_KE, MM_SA, Parsed};
use super::nat_t::{self, NatOutcome, PeerCapabilities};
use super::prf::PrfOutput;
use super::proposal::{self, Phase1Suite};
use super::retransmit::Retransmit;
use super::sa_payload;

/// Our nonce length (RFC 2409 §5: 8 to 256 bytes; we use 32).
pub(crate) const NONCE_LEN: usize = 32;

/// The largest SA payload body (SAi_b) a responder keeps from message 1: about 450
/// transforms, several times strongSwan's widest default proposal list.
pub(crate) const MAX_SA_BODY: usize = 16 * 1024;

/// Where a main mode stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MmState {
    /// Initiator: message 1 sent, waiting for 2.
    SentSa,
    /// Initiator: message 3 sent, waiting for 4.
    SentKe,
    /// Initiator: message 5 sent, waiting for 6.
    SentId,
    /// Responder: message 2 sent, waiting for 3.
    RepliedSa,
    /// Responder: message 4 sent, waiting for 5.
    RepliedKe,
}

/// What a main mode decided about NAT traversal once NAT-D ran (`MainMode::nat_decision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NatDecision {
    /// No NAT between us: IKE and ESP stay as they are.
    Direct(NatOutcome),
    /// A NAT (or forced encapsulation): ESP goes in UDP in `variant` (RFC 3948).
    Encapsulate {
        outcome: NatOutcome,
        variant: Option<proposal::NatTVariant>,
        /// IKE moves to the peer's NAT-T port now (we initiated).
        float: bool,
        /// We are behind the NAT: send NAT-keepalives.
        keepalive: bool,
    },
}

impl NatDecision {
    pub fn outcome(&self) -> NatOutcome {
        match *self {
            Self::Direct(o) | Self::Encapsulate { outcome: o, .. } => o,
        }
    }
}

/// The inputs every exchange needs from the session.
pub(crate) struct Ctx<'a> {
    pub config: &'a PeerConfig,
    /// The session's selector guard, else the policy's (`IkeSession::set_selector_guard`).
    pub selector_guard: Option<&'a dyn super::config::SelectorGuard>,
    pub rng: &'a mut (dyn CryptoRng + Send),
    /// Allocates (and frees) the inbound SPIs of quick modes.
    pub spis: &'a dyn SpiAllocator,
    /// Responder key pairs shared by the sessions whose policy allows reuse
    /// (`IkeSession::set_dh_key_cache`); `None`: every exchange makes its own.
    pub dh_keys: Option<&'a DhKeyCache>,
    pub now: Instant,
    /// Our IKE address (interface address, IKE port).
    pub local: SocketAddr,
}

impl Ctx<'_> {
    pub fn random(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.rng.fill_bytes(&mut v);
        v
    }

    pub fn u32(&mut self) -> u32 {
        self.rng.next_u32()
    }

    pub fn cookie(&mut self) -> [u8; 8] {
        loop {
            let mut c = [0u8; 8];
            self.rng.fill_bytes(&mut c);
            if c != [0; 8] {
                return c;
            }
        }
    }

    pub fn our_suites(&self) -> Vec<Phase1Suite> {
        self.config
            .isakmp_transforms
            .iter()
            .map(|t| Phase1Suite::from_profile(t))
            .collect()
    }
}

pub(crate) struct MainMode {
    pub cky_i: [u8; 8],
    pub cky_r: [u8; 8],
    pub initiator: bool,
    pub state: MmState,
    /// SAi_b: the body of the initiator's SA payload, as sent/received (HASH_I/HASH_R input).
    pub(crate) sai_b: Vec<u8>,
    suite: Option<Phase1Suite>,
    dh: Option<Arc<DhKeyPair>>,
    g_xi: Vec<u8>,
    g_xr: Vec<u8>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    keys: Option<(Phase1Keys, IvChain)>,
    pub caps: PeerCapabilities,
    /// NAT-D outcome (message 3 for the responder, 4 for the initiator).
    pub nat: Option<NatOutcome>,
    pub retransmit: Option<Retransmit>,
    /// Responder: give up when the initiator goes silent.
    pub expires: Instant,
    /// Send INITIAL-CONTACT in message 5/6.
    initial_contact: bool,
    /// The peer sent INITIAL-CONTACT.
    pub got_initial_contact: bool,
    /// Replaces an established ISAKMP SA (phase-1 re-key).
    pub rekey: bool,
    /// Responder: where this exchange's messages come from and whether on the NAT-T port. Its
    /// replies go there; the session adopts it only once the exchange is authenticated.
    pub reply_to: Option<(SocketAddr, bool)>,
    /// Responder: we run a shorter lifetime than the initiator offered, so we tell it with
    /// RESPONDER-LIFETIME in message 6 (RFC 2407 §4.6.3.1).
    pub lifetime_shortened: bool,
    /// The peer's phase-1 ID once authenticated and accepted (`describe_phase1_id`).
    peer_id: String,
}

/// What one step of a main mode produced.
pub(crate) enum MmStep {
    /// Send (initiator: the next request, with retransmission; responder: the reply).
    Send(Vec<u8>),
    /// Phase 1 is done; `Some` is message 6 for the responder to send.
    Established(Box<IsakmpSa>, Option<Vec<u8>>),
}

fn header(cky_i: [u8; 8], cky_r: [u8; 8], flags: Flags) -> Header {
    Header::new(cky_i, cky_r, ExchangeType::MAIN_MODE, flags, 0)
}

fn nonce_ok(n: &[u8]) -> IkeResult<()> {
    if (8..=256).contains(&n.len()) {
        Ok(())
    } else {
        Err(IkeError::malformed(format!(
            "nonce of {} bytes (RFC 2409 §5: 8 to 256)",
            n.len()
        )))
    }
}

/// Our vendor IDs. DPD is always announced: the DPD vendor ID (RFC 3706 §5.1) says that we
/// support DPD, and we always answer R-U-THERE; whether we also probe is the policy's `dpd`.
/// The daemon's liveness check (`IkeSession::check_liveness`) then has both ends' word.
fn vids(cfg: &PeerConfig) -> Vec<Payload> {
    nat_t::vendor_ids(cfg.nat.enabled, true)
}

/// Messages 2 to 4 are unauthenticated: a malformed one is dropped, not fatal (it may be
/// forged).
fn check_unauthenticated(table: &[message::Rule], m: &Parsed, what: &str) -> IkeResult<()> {
    message::check(table, &m.payloads, what).map_err(|e| IkeError::drop(e.reason))
}

/// The KE and nonce payload bodies of message 3 or 4 (presence checked by `MM_KE`).
fn ke_and_nonce(m: &Parsed) -> IkeResult<(Vec<u8>, Vec<u8>)> {
    let ke = m
        .first(|p| match p {
            Payload::KeyExchange(k) => Some(k),
            _ => None,
        })
        .cloned()
        .unwrap_or_default();
    let n = m
        .first(|p| match p {
            Payload::Nonce(n) => Some(n),
            _ => None,
        })
        .cloned()
        .unwrap_or_default();
    nonce_ok(&n)?;
    Ok((ke, n))
}

impl MainMode {
    fn set_state(&mut self, to: MmState) {
        debug!(
            cky_i = %hex(&self.cky_i),
            from = ?self.state,
            to = ?to,
            "main mode"
        );
        self.state = to;
    }

    /// Initiator: message 1.
    pub fn initiate(ctx: &mut Ctx<'_>, rekey: bool, initial_contact: bool) -> (Self, Vec<u8>) {
        let cky_i = ctx.cookie();
        let sa = sa_payload::phase1_offer(&ctx.our_suites());
        let sa_payload = Payload::Sa(sa);
        let mut sai_b = Vec::new();
        sa_payload.encode_body(&mut sai_b);
        let mut payloads = vec![sa_payload];
        payloads.extend(vids(ctx.config));
        let msg = message::plain(header(cky_i, [0; 8], Flags::NONE), payloads);
        let mm = Self {
            cky_i,
            cky_r: [0; 8],
            initiator: true,
            state: MmState::SentSa,
            sai_b,
            suite: None,
            dh: None,
            g_xi: Vec::new(),
            g_xr: Vec::new(),
            ni: Vec::new(),
            nr: Vec::new(),
            keys: None,
            caps: PeerCapabilities::default(),
            nat: None,
            retransmit: Some(Retransmit::new(
                msg.clone(),
                ctx.now,
                &ctx.config.retransmit,
            )),
            expires: ctx.now + ctx.config.retransmit.total(),
            initial_contact,
            got_initial_contact: false,
            rekey,
            reply_to: None,
            lifetime_shortened: false,
            peer_id: String::new(),
        };
        debug!(cky_i = %hex(&cky_i), "main mode: initiating");
        (mm, msg)
    }

    /// Responder: message 1 in, message 2 out. `Err` carries the notify to answer with (the
    /// session sends it under `cky_r` from the error path).
    pub fn respond(ctx: &mut Ctx<'_>, m1: &Parsed, cky_r: [u8; 8]) -> IkeResult<(Self, Vec<u8>)> {
        message::check(MM_SA, &m1.payloads, "main mode message 1")?;
        let Some(Payload::Sa(offer)) = m1.payloads.iter().find(|p| matches!(p, Payload::Sa(_)))
        else {
            return Err(IkeError::malformed("main mode message 1 without SA"));
        };
        // SAi_b is kept for HASH_I/HASH_R until message 5 arrives, for a peer not yet
        // authenticated: hold no more than any real offer needs.
        let sa_len = m1.body_of(PayloadType::SA).map_or(0, <[u8]>::len);
        if sa_len > MAX_SA_BODY {
            return Err(IkeError::notify(
                NotifyType::NO_PROPOSAL_CHOSEN,
                format!(
                    "message 1 carries an SA payload of {sa_len} bytes (at most {MAX_SA_BODY})"
                ),
            ));
        }
        let offers = sa_payload::phase1_offers(offer)?;
        let list: Vec<_> = offers.iter().map(|(_, o)| o.clone()).collect();
        let choice = proposal::select_phase1(&ctx.config.policy, &ctx.our_suites(), &list)
            .map_err(|r| IkeError::notify(NotifyType::NO_PROPOSAL_CHOSEN, r))?;
        let at = offers[choice.offered_index].0;
        let reply_sa = sa_payload::phase1_reply(offer, at)
            .ok_or_else(|| IkeError::malformed("chosen transform vanished"))?;
        let sai_b = m1
            .body_of(PayloadType::SA)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let caps = PeerCapabilities::from_payloads(&m1.payloads);
        let mut payloads = vec![Payload::Sa(reply_sa)];
        payloads.extend(vids(ctx.config));
        let cky_i = m1.header.initiator_cookie;
        let msg = message::plain(header(cky_i, cky_r, Flags::NONE), payloads);
        debug!(cky_i = %hex(&cky_i), suite = %choice.suite, "main mode: responding");
        Ok((
            Self {
                cky_i,
                cky_r,
                initiator: false,
                state: MmState::RepliedSa,
                sai_b,
                suite: Some(choice.suite),
                dh: None,
                g_xi: Vec::new(),
                g_xr: Vec::new(),
                ni: Vec::new(),
                nr: Vec::new(),
                keys: None,
                caps,
                nat: None,
                retransmit: None,
                expires: ctx.now + ctx.config.retransmit.total(),
                initial_contact: false,
                got_initial_contact: false,
                rekey: false,
                reply_to: None,
                lifetime_shortened: choice.lifetime_shortened,
                peer_id: String::new(),
            },
            msg,
        ))
    }

    /// Send INITIAL-CONTACT in message 6 (responder, first contact of the session).
    pub fn set_initial_contact(&mut self, on: bool) {
        self.initial_contact = on;
    }

    /// After NAT-D (initiator: message 4 taken, message 5 goes next; responder: message 3
    /// taken, message 4 goes next): UDP encapsulation, the float and keepalives, decided here
    /// and applied by the session (RFC 3947 §3.2, §4). `None` at any other step, or when NAT-D
    /// did not run (no NAT-T on one side).
    pub fn nat_decision(&self, cfg: &PeerConfig) -> Option<NatDecision> {
        let due = match self.state {
            MmState::SentId => self.initiator,
            MmState::RepliedKe => !self.initiator,
            _ => false,
        };
        if !due {
            return None;
        }
        let mut outcome = self.nat?;
        // Forced encapsulation (strongSwan `forceencaps`): we act as if behind a NAT.
        outcome.local_behind_nat |= cfg.nat.force_encapsulation;
        if !outcome.any() {
            return Some(NatDecision::Direct(outcome));
        }
        Some(NatDecision::Encapsulate {
            outcome,
            variant: self.caps.nat_t,
            // The initiator moves IKE to the NAT-T port for message 5 (RFC 3947 §4); the
            // responder follows when message 5 arrives there.
            float: self.initiator,
            // The side behind the NAT keeps its mapping open (RFC 3948 §4).
            keepalive: outcome.local_behind_nat,
        })
    }

    fn nat_t_variant(&self, cfg: &PeerConfig) -> Option<proposal::NatTVariant> {
        if cfg.nat.enabled {
            self.caps.nat_t
        } else {
            None
        }
    }

    /// Our two NAT-D payloads for message 3 or 4 (RFC 3947 §3.2).
    fn nat_d(
        &self,
        ctx: &mut Ctx<'_>,
        v: proposal::NatTVariant,
        hash: HashAlgorithm,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Vec<Payload> {
        let salt = ctx.cookie();
        nat_t::nat_d_payloads(
            v,
            hash,
            &self.cky_i,
            &self.cky_r,
            peer,
            local,
            ctx.config.nat.force_encapsulation,
            salt,
        )
    }

    /// A message of this exchange (cookies matched). `plain` is `Err(ciphertext)` when the
    /// message is encrypted. `to`/`from`: the datagram's addresses (NAT-D).
    pub fn on_message(
        &mut self,
        ctx: &mut Ctx<'_>,
        header_in: Header,
        plain: Result<Parsed, Vec<u8>>,
        to: SocketAddr,
        from: SocketAddr,
    ) -> IkeResult<MmStep> {
        match (self.state, plain) {
            (MmState::SentSa, Ok(m)) => self.i_on_sa(ctx, m, from, to),
            (MmState::SentKe, Ok(m)) => self.i_on_ke(ctx, m, to, from),
            (MmState::SentId, Err(c)) => self.i_on_id(ctx, header_in, &c, from),
            (MmState::RepliedSa, Ok(m)) => self.r_on_ke(ctx, m, to, from),
            (MmState::RepliedKe, Err(c)) => self.r_on_id(ctx, header_in, &c, from),
            (s, _) => Err(IkeError::drop(format!(
                "unexpected main mode message in state {s:?}"
            ))),
        }
    }

    // ---- initiator ----------------------------------------------------------------------

    fn i_on_sa(
        &mut self,
        ctx: &mut Ctx<'_>,
        m2: Parsed,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> IkeResult<MmStep> {
        check_unauthenticated(MM_SA, &m2, "main mode message 2")?;
        let Some(Payload::Sa(sa)) = m2.payloads.iter().find(|p| matches!(p, Payload::Sa(_))) else {
            return Err(IkeError::malformed("message 2 without SA"));
        };
        let chosen = sa_payload::phase1_chosen(sa)?;
        let ours = ctx.our_suites();
        let Some(offered) = ours.iter().find(|o| proposal::phase1_matches(o, &chosen)) else {
            return Err(IkeError::notify(
                NotifyType::NO_PROPOSAL_CHOSEN,
                format!(
                    "responder chose {chosen}, which policy {} did not offer",
                    ctx.config.policy
                ),
            ));
        };
        // The responder may shorten the lifetime we offered, never lengthen it; its 0 or no
        // lifetime leaves ours (proposal.rs, `agreed_life`).
        let chosen = chosen.with_lifetimes_of(offered);
        self.cky_r = m2.header.responder_cookie;
        self.caps = PeerCapabilities::from_payloads(&m2.payloads);
        self.suite = Some(chosen);
        let group = DhGroup::from_id(chosen.group).ok_or_else(|| {
            IkeError::notify(
                NotifyType::NO_PROPOSAL_CHOSEN,
                format!("DH group {} unsupported", chosen.group),
            )
        })?;
        let dh = DhKeyPair::generate(group, &mut *ctx.rng);
        self.g_xi = dh.public().to_vec();
        self.dh = Some(Arc::new(dh));
        self.ni = ctx.random(NONCE_LEN);
        let mut payloads = vec![
            Payload::KeyExchange(self.g_xi.clone()),
            Payload::Nonce(self.ni.clone()),
        ];
        if let Some(v) = self.nat_t_variant(ctx.config) {
            payloads.extend(self.nat_d(ctx, v, chosen.hash, peer, local));
        }
        let msg = message::plain(header(self.cky_i, self.cky_r, Flags::NONE), payloads);
        Ok(self.request(ctx, msg, MmState::SentKe))
    }

    /// Initiator: send the next request, retransmitted until its answer arrives.
    fn request(&mut self, ctx: &Ctx<'_>, msg: Vec<u8>, next: MmState) -> MmStep {
        self.retransmit = Some(Retransmit::new(
            msg.clone(),
            ctx.now,
            &ctx.config.retransmit,
        ));
        self.set_state(next);
        MmStep::Send(msg)
    }

    fn derive(&mut self, ctx: &Ctx<'_>, peer_ke: &[u8]) -> IkeResult<()> {
        let suite = self.suite.ok_or_else(|| IkeError::fatal("no suite"))?;
        let dh = self
            .dh
            .as_ref()
            .ok_or_else(|| IkeError::fatal("no DH value"))?;
        let g_xy = dh.private().shared_secret(peer_ke).map_err(|e| {
            IkeError::notify(
                NotifyType::INVALID_KEY_INFORMATION,
                format!("peer's KE refused: {e}"),
            )
        })?;
        let keys = Phase1Keys::derive_psk(
            &ctx.config.preshared_key.0,
            &Phase1Inputs {
                hash: suite.hash,
                encr: suite.encryption,
                ni_b: &self.ni,
                nr_b: &self.nr,
                g_xy: g_xy.as_bytes(),
                cky_i: &self.cky_i,
                cky_r: &self.cky_r,
                g_xi: &self.g_xi,
                g_xr: &self.g_xr,
            },
        );
        let iv = IvChain::from_keys(&keys)
            .map_err(|e| IkeError::fatal(format!("phase-1 cipher: {e}")))?;
        self.keys = Some((keys, iv));
        Ok(())
    }

    fn i_on_ke(
        &mut self,
        ctx: &mut Ctx<'_>,
        m4: Parsed,
        to: SocketAddr,
        from: SocketAddr,
    ) -> IkeResult<MmStep> {
        check_unauthenticated(MM_KE, &m4, "main mode message 4")?;
        let (ke, nr) = ke_and_nonce(&m4)?;
        self.g_xr = ke.clone();
        self.nr = nr;
        self.derive(ctx, &ke)?;
        let suite = self.suite.ok_or_else(|| IkeError::fatal("no suite"))?;
        if self.nat_t_variant(ctx.config).is_some() {
            self.nat = nat_t::detect(suite.hash, &self.cky_i, &self.cky_r, &m4.payloads, to, from);
        }
        let msg = self.id_message(ctx)?;
        Ok(self.request(ctx, msg, MmState::SentId))
    }

    /// HASH_I (`by_initiator`) or HASH_R over an ID payload body (RFC 2409 §5).
    fn auth_hash(&self, by_initiator: bool, id_b: &[u8]) -> IkeResult<PrfOutput> {
        let (keys, _) = self
            .keys
            .as_ref()
            .ok_or_else(|| IkeError::fatal("no keys"))?;
        let (g_xi, g_xr, cky_i, cky_r) = (&self.g_xi, &self.g_xr, &self.cky_i, &self.cky_r);
        Ok(if by_initiator {
            keys.hash_i(g_xi, g_xr, cky_i, cky_r, &self.sai_b, id_b)
        } else {
            keys.hash_r(g_xi, g_xr, cky_i, cky_r, &self.sai_b, id_b)
        })
    }

    /// Message 5 (initiator) or 6 (responder): `HDR*, ID, HASH_I/HASH_R [, N(INITIAL-CONTACT)]`,
    /// encrypted under the phase-1 IV chain.
    fn id_message(&mut self, ctx: &Ctx<'_>) -> IkeResult<Vec<u8>> {
        // RFC 2407 §4.6.2: `local-id`, the interface address unless the policy names us.
        let id_payload =
            Payload::Identification(local_phase1_id(&ctx.config.local_id, ctx.local.ip()));
        let mut id_b = Vec::new();
        id_payload.encode_body(&mut id_b);
        let hash = self.auth_hash(self.initiator, &id_b)?;
        let mut payloads = vec![id_payload, Payload::Hash(hash.as_bytes().to_vec())];
        if self.initial_contact {
            payloads.push(Payload::Notification(Notification::isakmp(
                NotifyType::INITIAL_CONTACT,
                self.cky_i,
                self.cky_r,
                Vec::new(),
            )));
        }
        // RESPONDER-LIFETIME (RFC 2407 §4.6.3.1) rides in message 6, encrypted with it: sent
        // as an informational of its own it may overtake message 6 and not decrypt at a peer
        // that has not yet moved its phase-1 IV past message 6 (seen with strongSwan).
        if let (false, true, Some(suite)) = (self.initiator, self.lifetime_shortened, self.suite) {
            payloads.push(Payload::Notification(Notification::isakmp(
                NotifyType::RESPONDER_LIFETIME,
                self.cky_i,
                self.cky_r,
                sa_payload::phase1_lifetime_attributes(
                    suite.lifetime_seconds,
                    suite.lifetime_kilobytes,
                ),
            )));
        }
        let Some((_, iv)) = self.keys.as_mut() else {
            return Err(IkeError::fatal("no keys"));
        };
        Ok(message::encrypted(
            header(self.cky_i, self.cky_r, Flags::NONE),
            &payloads,
            iv,
        ))
    }

    /// Decrypts and authenticates message 5 or 6, then checks the peer's ID against
    /// `remote-id`; commits the IV only when both pass. `from`: where the message came from.
    fn open_id(
        &mut self,
        cfg: &PeerConfig,
        h: Header,
        c: &[u8],
        what: &str,
        from: SocketAddr,
    ) -> IkeResult<(Parsed, Vec<u8>)> {
        let (_, iv) = self
            .keys
            .as_ref()
            .ok_or_else(|| IkeError::fatal("no keys"))?;
        let auth_failed = |why: String| {
            IkeError::notify(
                NotifyType::AUTHENTICATION_FAILED,
                format!("{what} {why}: the pre-shared keys of the two ends differ"),
            )
        };
        let m = message::decrypt(h, c, iv).map_err(|e| {
            auth_failed(format!("did not decrypt to valid payloads ({})", e.reason))
        })?;
        message::check(MM_ID, &m.payloads, what).map_err(|e| auth_failed(e.reason))?;
        let id_b = m
            .body_of(PayloadType::IDENTIFICATION)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let got = m
            .first(|p| match p {
                Payload::Hash(x) => Some(x),
                _ => None,
            })
            .cloned()
            .unwrap_or_default();
        let expect = self.auth_hash(!self.initiator, &id_b)?;
        if !expect.ct_eq(&got) {
            return Err(auth_failed(format!(
                "carries a wrong {}",
                if self.initiator { "HASH_R" } else { "HASH_I" }
            )));
        }
        // The ID is authentic now (HASH covers it): whether it is one this policy accepts is
        // decided before anything else of the message is used. An address ID is compared with
        // the sender's address unless NAT-D found a NAT in front of the peer (RFC 3947 §3.2).
        let id = m
            .first(|p| match p {
                Payload::Identification(i) => Some(i),
                _ => None,
            })
            .ok_or_else(|| IkeError::notify(NotifyType::INVALID_ID_INFORMATION, "no ID"))?;
        let peer_behind_nat = self.nat.is_some_and(|n| n.peer_behind_nat);
        check_phase1_id(&cfg.policy, &cfg.remote_id, id, from.ip(), peer_behind_nat)
            .map_err(|why| IkeError::notify(NotifyType::INVALID_ID_INFORMATION, why))?;
        self.peer_id = describe_phase1_id(id);
        if let (Some(p), Some((_, iv))) = (m.pending, self.keys.as_mut()) {
            iv.commit(p);
        }
        self.got_initial_contact |= m.payloads.iter().any(|p| {
            matches!(p, Payload::Notification(n) if n.message_type == NotifyType::INITIAL_CONTACT)
        });
        Ok((m, id_b))
    }

    fn i_on_id(
        &mut self,
        ctx: &mut Ctx<'_>,
        h: Header,
        c: &[u8],
        from: SocketAddr,
    ) -> IkeResult<MmStep> {
        let (m6, _) = self.open_id(ctx.config, h, c, "main mode message 6", from)?;
        // The responder's RESPONDER-LIFETIME for this SA can only shorten ours.
        for p in &m6.payloads {
            if let Payload::Notification(n) = p
                && n.message_type == NotifyType::RESPONDER_LIFETIME
                && n.protocol_id == crate::wire::isakmp::ProtocolId::ISAKMP
                && let Some(suite) = self.suite.as_mut()
            {
                let (secs, kb) = sa_payload::parse_phase1_lifetime_attributes(&n.data);
                debug!("main mode: responder lifetime {secs:?} s / {kb:?} KB");
                *suite = Phase1Suite {
                    lifetime_seconds: secs,
                    lifetime_kilobytes: kb,
                    ..*suite
                }
                .with_lifetimes_of(suite);
            }
        }
        Ok(MmStep::Established(Box::new(self.finish(ctx)?), None))
    }

    // ---- responder ----------------------------------------------------------------------

    fn r_on_ke(
        &mut self,
        ctx: &mut Ctx<'_>,
        m3: Parsed,
        to: SocketAddr,
        from: SocketAddr,
    ) -> IkeResult<MmStep> {
        check_unauthenticated(MM_KE, &m3, "main mode message 3")?;
        let suite = self.suite.ok_or_else(|| IkeError::fatal("no suite"))?;
        let (ke, ni) = ke_and_nonce(&m3)?;
        let group = DhGroup::from_id(suite.group).ok_or_else(|| {
            IkeError::notify(NotifyType::NO_PROPOSAL_CHOSEN, "DH group unsupported")
        })?;
        // Check the peer's value before spending an exponentiation on ours.
        group.check_public(&ke).map_err(|e| {
            IkeError::notify(
                NotifyType::INVALID_KEY_INFORMATION,
                format!("peer's KE refused: {e}"),
            )
        })?;
        // A fresh pair per exchange, unless the policy allows reuse (dh/reuse.rs says what
        // that costs).
        let dh = match (ctx.config.dh_key_reuse, ctx.dh_keys) {
            (Some(window), Some(cache)) => {
                cache.responder_key(group, ctx.now, window, &mut *ctx.rng)
            }
            _ => Arc::new(DhKeyPair::generate(group, &mut *ctx.rng)),
        };
        self.g_xr = dh.public().to_vec();
        self.g_xi = ke.clone();
        self.dh = Some(dh);
        self.ni = ni;
        self.nr = ctx.random(NONCE_LEN);
        self.derive(ctx, &ke)?;
        let mut payloads = vec![
            Payload::KeyExchange(self.g_xr.clone()),
            Payload::Nonce(self.nr.clone()),
        ];
        let nat_d_in = m3
            .payloads
            .iter()
            .any(|p| matches!(p, Payload::NatD { .. }));
        if let (Some(v), true) = (self.nat_t_variant(ctx.config), nat_d_in) {
            self.nat = nat_t::detect(suite.hash, &self.cky_i, &self.cky_r, &m3.payloads, to, from);
            payloads.extend(self.nat_d(ctx, v, suite.hash, from, to));
        }
        let msg = message::plain(header(self.cky_i, self.cky_r, Flags::NONE), payloads);
        self.expires = ctx.now + ctx.config.retransmit.total();
        self.set_state(MmState::RepliedKe);
        Ok(MmStep::Send(msg))
    }

    fn r_on_id(
        &mut self,
        ctx: &mut Ctx<'_>,
        h: Header,
        c: &[u8],
        from: SocketAddr,
    ) -> IkeResult<MmStep> {
        self.open_id(ctx.config, h, c, "main mode message 5", from)?;
        let msg = self.id_message(ctx)?;
        Ok(MmStep::Established(Box::new(self.finish(ctx)?), Some(msg)))
    }

    fn finish(&mut self, ctx: &mut Ctx<'_>) -> IkeResult<IsakmpSa> {
        let suite = self.suite.ok_or_else(|| IkeError::fatal("no suite"))?;
        let (keys, iv) = self.keys.take().ok_or_else(|| IkeError::fatal("no keys"))?;
        self.dh = None;
        let now = ctx.now;
        let mut sa = IsakmpSa {
            cky_i: self.cky_i,
            cky_r: self.cky_r,
            initiator: self.initiator,
            suite,
            keys: keys.into_sa_keys(),
            iv,
            caps: self.caps,
            established: now,
            soft: None,
            hard: None,
            retire_at: None,
            rekeying: false,
            used_ids: Vec::new(),
            peer_id: std::mem::take(&mut self.peer_id),
        };
        sa.schedule(ctx.config.rekey, || ctx.rng.next_u32());
        Ok(sa)
    }
}

/// A plaintext informational carrying one error notify about an ISAKMP SA being negotiated
/// (RFC 2408 §5: sent in the clear before keys exist, or when the peer's keys differ).
pub(crate) fn plain_notify(cky_i: [u8; 8], cky_r: [u8; 8], t: NotifyType, msg_id: u32) -> Vec<u8> {
    message::plain(
        Header::new(
            cky_i,
            cky_r,
            ExchangeType::INFORMATIONAL,
            Flags::NONE,
            msg_id,
        ),
        vec![Payload::Notification(Notification::isakmp(
            t,
            cky_i,
            cky_r,
            Vec::new(),
        ))],
    )
}

//! Quick mode (RFC 2409 §5.5), initiator and responder side by side.
//!
//! ```text
//!  Initiator                                       Responder
//!  1  HDR*, HASH(1), SA, Ni [, KE] [, IDci, IDcr]  -->
//!                    <--  2  HDR*, HASH(2), SA, Nr [, KE] [, IDci, IDcr] [, N(RESPONDER-LIFETIME)]
//!  3  HDR*, HASH(3)                                -->
//! ```
//! Payload tables: `message::QM_SA` (1, 2) and `message::QM_3`. Keys (KEYMAT, §5.5) are derived
//! when message 2 is built (responder) or read (initiator); the session announces the SA pair
//! before the message that lets the peer use it leaves (see `events`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::debug;

use crate::config::{KeyBytes, ProtectedNetwork};
use crate::esp::{AhKeys, Direction, EspKeys, LifetimeLimits, SaEncapsulation, SaParams};
use crate::wire::isakmp::{
    ExchangeType, Flags, Header, Notification, NotifyType, Payload, ProtocolId,
};

use super::dh::{DhGroup, DhPrivate};
use super::error::{IkeError, IkeResult};
use super::events::{ChildSaInfo, SpiPair};
use super::identity::{describe, host, id_network, match_proposed, network_id};
use super::isakmp_sa::IsakmpSa;
use super::keys::IsakmpSaKeys;
use super::main_mode::{Ctx, NONCE_LEN};
use super::message::{self, Parsed, QM_3, QM_SA};
use super::proposal::{self, NatTVariant, Phase2Suite};
use super::retransmit::Retransmit;
use super::sa_payload::{self, SuiteSpis};

/// What quick mode needs besides the context.
pub(crate) struct QmEnv {
    /// The NAT-T dialect when UDP encapsulation is in use.
    pub nat: Option<NatTVariant>,
    /// The peer's current IKE address (its port is the ESP-in-UDP port after floating).
    pub peer: SocketAddr,
    /// Responder: why a new exchange must be refused (the session's bounds, children.rs),
    /// answered with NO-PROPOSAL-CHOSEN once message 1 is authenticated.
    pub refuse: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QmState {
    /// Initiator: message 1 sent, waiting for 2.
    SentOffer,
    /// Responder: message 2 sent (SA announced), waiting for 3.
    SentReply,
    /// Initiator: message 2 had the commit bit, message 3 is sent; the pair (in `committed`)
    /// is announced only when the responder's CONNECTED arrives (RFC 2408 §3.1).
    AwaitConnected,
}

pub(crate) struct QuickMode {
    pub msg_id: u32,
    /// The ISAKMP SA it runs under.
    pub cky_i: [u8; 8],
    pub cky_r: [u8; 8],
    pub initiator: bool,
    pub state: QmState,
    /// The selectors asked for (initiator) or agreed (responder).
    pub network: ProtectedNetwork,
    /// The child pair this exchange replaces.
    pub rekey_of: Option<SpiPair>,
    /// Initiator: our offers with the SPIs reserved for them.
    offers: Vec<(Phase2Suite, SuiteSpis, usize)>,
    pub ni: Vec<u8>,
    nr: Vec<u8>,
    dh: Option<DhPrivate>,
    /// Whether IDs were exchanged (the responder echoes them).
    ids_sent: bool,
    pub retransmit: Option<Retransmit>,
    /// Our reserved SPIs (released if the exchange fails).
    pub reserved: Vec<u32>,
    /// `AwaitConnected`: the negotiated pair, and when to stop waiting for CONNECTED.
    pub committed: Option<(Box<ChildSaInfo>, Instant)>,
    /// Responder: the pair announced with message 2, confirmed by message 3.
    pub announced: Option<SpiPair>,
}

/// What one step produced.
pub(crate) enum QmStep {
    /// Responder: the SA pair (announce it first) and message 2.
    Reply(Box<ChildSaInfo>, Vec<u8>),
    /// Initiator: the SA pair (announce it first) and message 3.
    Done(Box<ChildSaInfo>, Vec<u8>),
    /// Initiator: message 3 to send; the pair waits for CONNECTED (commit bit).
    AwaitConnected(Vec<u8>),
    /// Responder: message 3 verified.
    Confirmed,
}

fn qm_header(sa: &IsakmpSa, msg_id: u32) -> Header {
    Header::new(
        sa.cky_i,
        sa.cky_r,
        ExchangeType::QUICK_MODE,
        Flags::ENCRYPTION,
        msg_id,
    )
}

fn our_suites(ctx: &Ctx<'_>, nat: Option<NatTVariant>) -> Vec<(Phase2Suite, usize)> {
    ctx.config
        .ipsec_transforms
        .iter()
        .enumerate()
        // RFC 3948 carries ESP only: AH cannot cross a NAT.
        .filter(|(_, t)| nat.is_none() || t.ah.is_none())
        .map(|(i, t)| (Phase2Suite::from_profile(t, ctx.config.pfs_group, nat), i))
        .collect()
}

fn reserve(ctx: &mut Ctx<'_>, s: &Phase2Suite, reserved: &mut Vec<u32>) -> SuiteSpis {
    let mut take = |ctx: &mut Ctx<'_>| {
        let spi = ctx.spis.allocate(ctx.u32());
        reserved.push(spi);
        spi
    };
    SuiteSpis {
        esp: s.esp.map(|_| take(ctx)),
        ah: s.ah.map(|_| take(ctx)),
    }
}

/// Verifies the leading HASH of a decrypted quick-mode message and commits its IV.
fn verify(sa: &mut IsakmpSa, m: &Parsed, expect: &[u8], what: &str) -> IkeResult<()> {
    let got = message::leading_hash(m, what)?;
    let ok = super::nat_t::ct_eq(expect, &got);
    if !ok {
        return Err(IkeError::drop(format!(
            "{what}: HASH does not verify (forged or corrupted)"
        )));
    }
    if let Some(p) = m.pending {
        sa.iv.commit(p);
    }
    Ok(())
}

struct Keying<'a> {
    keys: &'a IsakmpSaKeys,
    g_qm_xy: Option<&'a [u8]>,
    ni: &'a [u8],
    nr: &'a [u8],
}

impl Keying<'_> {
    fn km(&self, proto: ProtocolId, spi: u32, len: usize) -> super::keys::Keymat {
        self.keys
            .keymat(self.g_qm_xy, proto.0, spi, self.ni, self.nr, len)
    }

    #[allow(clippy::too_many_arguments)]
    fn params(
        &self,
        ctx: &Ctx<'_>,
        env: &QmEnv,
        dir: Direction,
        suite: &Phase2Suite,
        spis: SuiteSpis,
        transform: usize,
        network: ProtectedNetwork,
    ) -> IkeResult<SaParams> {
        let esp = match (suite.esp, spis.esp) {
            (Some((e, a)), Some(spi)) => {
                // RFC 4106 §8.1: AES-GCM takes its 4-byte salt from KEYMAT right after the key.
                let km = self.km(ProtocolId::IPSEC_ESP, spi, e.keymat_len() + a.key_len());
                let (ek, ak) = km
                    .split(e.keymat_len(), a.key_len())
                    .ok_or_else(|| IkeError::fatal("KEYMAT too short"))?;
                Some(EspKeys {
                    spi,
                    encryption: e,
                    encryption_key: KeyBytes(ek.to_vec()),
                    authentication: a,
                    authentication_key: KeyBytes(ak.to_vec()),
                })
            }
            _ => None,
        };
        let ah = match (suite.ah, spis.ah) {
            (Some(a), Some(spi)) => {
                let km = self.km(ProtocolId::IPSEC_AH, spi, a.key_len());
                Some(AhKeys {
                    spi,
                    authentication: a,
                    authentication_key: KeyBytes(km.as_bytes().to_vec()),
                })
            }
            _ => None,
        };
        let t = ctx.config.ipsec_transforms.get(transform);
        Ok(SaParams {
            direction: dir,
            mode: suite.encap.mode(),
            esp,
            ah,
            local: ctx.local.ip(),
            peer: env.peer.ip(),
            encapsulation: if suite.encap.is_udp() {
                SaEncapsulation::Udp {
                    local_port: ctx.config.nat.nat_t_port,
                    peer_port: env.peer.port(),
                }
            } else {
                SaEncapsulation::Raw
            },
            replay_window: t
                .and_then(|t| t.replay_window)
                .unwrap_or(ctx.config.default_replay_window),
            lifetime: LifetimeLimits {
                seconds: suite.lifetime_seconds,
                kilobytes: suite.lifetime_kilobytes,
            },
            protected_networks: vec![network],
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn child(
        &self,
        ctx: &Ctx<'_>,
        env: &QmEnv,
        suite: &Phase2Suite,
        ours: SuiteSpis,
        theirs: SuiteSpis,
        transform: usize,
        network: ProtectedNetwork,
    ) -> IkeResult<ChildSaInfo> {
        Ok(ChildSaInfo {
            inbound: self.params(
                ctx,
                env,
                Direction::Inbound,
                suite,
                ours,
                transform,
                network,
            )?,
            outbound: self.params(
                ctx,
                env,
                Direction::Outbound,
                suite,
                theirs,
                transform,
                network,
            )?,
            policy: ctx.config.policy.clone(),
            protected_networks: vec![network],
            suite: suite.to_string(),
            lifetime: suite.lifetime_seconds.map(Duration::from_secs),
            confirmed: true,
        })
    }
}

fn pfs_secret(
    dh: &Option<DhPrivate>,
    ke: Option<&Vec<u8>>,
) -> IkeResult<Option<super::dh::SharedSecret>> {
    match (dh, ke) {
        (None, None) => Ok(None),
        (Some(dh), Some(ke)) => dh.shared_secret(ke).map(Some).map_err(|e| {
            IkeError::notify(
                NotifyType::INVALID_KEY_INFORMATION,
                format!("peer's PFS KE refused: {e}"),
            )
        }),
        (Some(_), None) => Err(IkeError::notify(
            NotifyType::NO_PROPOSAL_CHOSEN,
            "PFS was negotiated but the peer sent no KE",
        )),
        (None, Some(_)) => Err(IkeError::notify(
            NotifyType::NO_PROPOSAL_CHOSEN,
            "peer sent a KE without a PFS group",
        )),
    }
}

fn ke_of(m: &Parsed) -> Option<&Vec<u8>> {
    m.first(|p| match p {
        Payload::KeyExchange(k) => Some(k),
        _ => None,
    })
}

fn nonce_of(m: &Parsed) -> IkeResult<Vec<u8>> {
    let n = m
        .first(|p| match p {
            Payload::Nonce(n) => Some(n),
            _ => None,
        })
        .cloned()
        .unwrap_or_default();
    if (8..=256).contains(&n.len()) {
        Ok(n)
    } else {
        Err(IkeError::malformed(format!("nonce of {} bytes", n.len())))
    }
}

/// Why a refused proposal did not fit, when the reason is its family: " (IPv6; the policy
/// protects no IPv6 network)". Empty when the policy has networks of that family.
fn family_note(policy: &[ProtectedNetwork], proposed: &ProtectedNetwork) -> String {
    let f = proposed.family();
    if policy.iter().any(|p| p.family() == f) {
        String::new()
    } else {
        format!(" ({f}; the policy protects no {f} network)")
    }
}

fn ids_of(
    m: &Parsed,
) -> IkeResult<Option<(crate::config::NetworkSpec, crate::config::NetworkSpec)>> {
    let ids: Vec<_> = m
        .payloads
        .iter()
        .filter_map(|p| match p {
            Payload::Identification(i) => Some(i),
            _ => None,
        })
        .collect();
    match ids.as_slice() {
        [] => Ok(None),
        [ci, cr] => {
            let f = |i| {
                id_network(i).map_err(|e| IkeError::notify(NotifyType::INVALID_ID_INFORMATION, e))
            };
            let (ci, cr) = (f(ci)?, f(cr)?);
            // A selector pair carries one family (RFC 4301 §4.4.1: the addresses of a packet
            // are of one version): an IPv4 IDci with an IPv6 IDcr names no packet at all.
            if ci.family() != cr.family() {
                return Err(IkeError::notify(
                    NotifyType::INVALID_ID_INFORMATION,
                    format!(
                        "IDci {ci} is {}, IDcr {cr} is {}: a protected network carries one family",
                        ci.family(),
                        cr.family()
                    ),
                ));
            }
            Ok(Some((ci, cr)))
        }
        _ => Err(IkeError::notify(
            NotifyType::INVALID_ID_INFORMATION,
            "quick mode with a single ID payload",
        )),
    }
}

impl QuickMode {
    /// Initiator: message 1 for `network`.
    pub fn initiate(
        ctx: &mut Ctx<'_>,
        env: &QmEnv,
        sa: &mut IsakmpSa,
        network: ProtectedNetwork,
        rekey_of: Option<SpiPair>,
    ) -> IkeResult<(Self, Vec<u8>)> {
        let msg_id = sa.new_message_id(|| ctx.u32());
        let mut reserved = Vec::new();
        let mut offers = Vec::new();
        for (s, i) in our_suites(ctx, env.nat) {
            let spis = reserve(ctx, &s, &mut reserved);
            offers.push((s, spis, i));
        }
        if offers.is_empty() {
            return Err(IkeError::fatal(format!(
                "policy {} has no ipsec-transform usable through a NAT (AH cannot be UDP-encapsulated)",
                ctx.config.policy
            )));
        }
        let ni = ctx.random(NONCE_LEN);
        let dh = match ctx.config.pfs_group {
            Some(g) => Some(DhPrivate::generate(
                DhGroup::from_id(g)
                    .ok_or_else(|| IkeError::fatal(format!("PFS group {g} unsupported")))?,
                &mut *ctx.rng,
            )),
            None => None,
        };
        let sa_offer =
            sa_payload::phase2_offer(&offers.iter().map(|(s, p, _)| (*s, *p)).collect::<Vec<_>>());
        let mut rest = vec![Payload::Sa(sa_offer), Payload::Nonce(ni.clone())];
        if let Some(dh) = &dh {
            rest.push(Payload::KeyExchange(dh.public_value()));
        }
        rest.push(Payload::Identification(network_id(&network.local)));
        rest.push(Payload::Identification(network_id(&network.remote)));
        let keys = &sa.keys;
        let h = qm_header(sa, msg_id);
        let hash = |r: &[u8]| keys.qm_hash1(msg_id, r).as_bytes().to_vec();
        let msg = {
            let (iv, keys_hash) = (&mut sa.iv, hash);
            message::hashed(h, &rest, keys_hash, iv)
        };
        debug!(
            msg_id = format_args!("{msg_id:08x}"),
            "quick mode: initiating for {} <-> {}", network.local, network.remote
        );
        Ok((
            Self {
                msg_id,
                cky_i: sa.cky_i,
                cky_r: sa.cky_r,
                initiator: true,
                state: QmState::SentOffer,
                network,
                rekey_of,
                offers,
                ni,
                nr: Vec::new(),
                dh,
                ids_sent: true,
                retransmit: Some(Retransmit::new(
                    msg.clone(),
                    ctx.now,
                    &ctx.config.retransmit,
                )),
                reserved,
                committed: None,
                announced: None,
            },
            msg,
        ))
    }

    /// Responder: a decrypted message 1 (HASH not yet verified). `Err` with `fatal == false`
    /// is a silent drop; otherwise the notify is sent under the ISAKMP SA.
    pub fn respond(
        ctx: &mut Ctx<'_>,
        env: &QmEnv,
        sa: &mut IsakmpSa,
        m1: &Parsed,
    ) -> IkeResult<(Self, QmStep)> {
        let msg_id = m1.header.message_id;
        let expect = sa.keys.qm_hash1(msg_id, &m1.after_first);
        verify(sa, m1, expect.as_bytes(), "quick mode message 1")?;
        sa.note_message_id(msg_id);
        if let Some(r) = &env.refuse {
            return Err(IkeError::notify(NotifyType::NO_PROPOSAL_CHOSEN, r.clone()));
        }
        message::check(QM_SA, &m1.payloads, "quick mode message 1")?;
        let Some(Payload::Sa(offer)) = m1.payloads.iter().find(|p| matches!(p, Payload::Sa(_)))
        else {
            return Err(IkeError::malformed("quick mode message 1 without SA"));
        };
        let ni = nonce_of(m1)?;
        let offers = sa_payload::phase2_offers(offer)?;
        let ours = our_suites(ctx, env.nat);
        let ours_suites: Vec<Phase2Suite> = ours.iter().map(|(s, _)| *s).collect();
        let list: Vec<_> = offers.iter().map(|o| o.suite.clone()).collect();
        let choice = proposal::select_phase2(&ctx.config.policy, &ours_suites, &list)
            .map_err(|r| IkeError::notify(NotifyType::NO_PROPOSAL_CHOSEN, r))?;
        let chosen = &offers[choice.offered_index];
        let transform = ours[choice.ours_index].1;
        let suite = choice.suite;
        // Identities: IDci is the initiator's side (our remote), IDcr ours.
        let (ids, proposed) = match ids_of(m1)? {
            Some((ci, cr)) => (
                true,
                ProtectedNetwork {
                    local: cr,
                    remote: ci,
                },
            ),
            None => (
                false,
                ProtectedNetwork {
                    local: host(ctx.local.ip()),
                    remote: host(env.peer.ip()),
                },
            ),
        };
        let Some(network) = match_proposed(&ctx.config.protected_networks, proposed) else {
            return Err(IkeError::notify(
                NotifyType::INVALID_ID_INFORMATION,
                format!(
                    "peer proposed {} <-> {} (its side first){}, policy {} protects {}",
                    proposed.remote,
                    proposed.local,
                    family_note(&ctx.config.protected_networks, &proposed),
                    ctx.config.policy,
                    describe(&ctx.config.protected_networks)
                ),
            ));
        };
        // Inside our policy, but perhaps another policy's or spoke's (claims.rs): refused
        // before any key or SA exists.
        if let Some(guard) = ctx.selector_guard {
            guard.check(&network).map_err(|why| {
                IkeError::notify(
                    NotifyType::INVALID_ID_INFORMATION,
                    format!("refused: {why}"),
                )
            })?;
        }
        let dh = match suite.pfs_group {
            Some(g) => Some(DhPrivate::generate(
                DhGroup::from_id(g)
                    .ok_or_else(|| IkeError::notify(NotifyType::NO_PROPOSAL_CHOSEN, "PFS group"))?,
                &mut *ctx.rng,
            )),
            None => None,
        };
        let g_qm_xy = pfs_secret(&dh, ke_of(m1))?;
        let mut reserved = Vec::new();
        let our_spis = reserve(ctx, &suite, &mut reserved);
        let nr = ctx.random(NONCE_LEN);
        let mut child = Keying {
            keys: &sa.keys,
            g_qm_xy: g_qm_xy.as_ref().map(|s| s.as_bytes()),
            ni: &ni,
            nr: &nr,
        }
        .child(ctx, env, &suite, our_spis, chosen.spis, transform, network)?;
        // The initiator installs the pair when message 2 reaches it: until message 3 says it
        // did, our outbound SA must not take a re-keyed selector's traffic (events.rs).
        child.confirmed = false;
        let announced = child.spis();
        let mut rest = vec![
            Payload::Sa(sa_payload::phase2_reply(offer, chosen, our_spis)),
            Payload::Nonce(nr.clone()),
        ];
        if let Some(dh) = &dh {
            rest.push(Payload::KeyExchange(dh.public_value()));
        }
        if ids {
            rest.push(Payload::Identification(network_id(&network.remote)));
            rest.push(Payload::Identification(network_id(&network.local)));
        }
        if choice.lifetime_shortened {
            let (proto, spi) = match (chosen.spis.esp, chosen.spis.ah) {
                (Some(s), _) => (ProtocolId::IPSEC_ESP, s),
                (None, Some(s)) => (ProtocolId::IPSEC_AH, s),
                _ => (ProtocolId::IPSEC_ESP, 0),
            };
            rest.push(Payload::Notification(Notification {
                doi: crate::wire::isakmp::Doi::IPSEC,
                protocol_id: proto,
                spi: spi.to_be_bytes().to_vec(),
                message_type: NotifyType::RESPONDER_LIFETIME,
                data: sa_payload::lifetime_attributes(
                    suite.lifetime_seconds,
                    suite.lifetime_kilobytes,
                ),
            }));
        }
        let ni_b = ni.clone();
        let keys = &sa.keys;
        let h = qm_header(sa, msg_id);
        let msg = message::hashed(
            h,
            &rest,
            |r| keys.qm_hash2(msg_id, &ni_b, r).as_bytes().to_vec(),
            &mut sa.iv,
        );
        debug!(msg_id = format_args!("{msg_id:08x}"), suite = %suite, "quick mode: responding");
        let qm = Self {
            msg_id,
            cky_i: sa.cky_i,
            cky_r: sa.cky_r,
            initiator: false,
            state: QmState::SentReply,
            network,
            rekey_of: None,
            offers: Vec::new(),
            ni,
            nr,
            dh: None,
            ids_sent: ids,
            retransmit: Some(Retransmit::new(
                msg.clone(),
                ctx.now,
                &ctx.config.retransmit,
            )),
            reserved,
            committed: None,
            announced: Some(announced),
        };
        Ok((qm, QmStep::Reply(Box::new(child), msg)))
    }

    /// A decrypted message of this exchange (message 2 for the initiator, 3 for the responder).
    pub fn on_message(
        &mut self,
        ctx: &mut Ctx<'_>,
        env: &QmEnv,
        sa: &mut IsakmpSa,
        m: &Parsed,
    ) -> IkeResult<QmStep> {
        match self.state {
            QmState::SentOffer => self.i_on_reply(ctx, env, sa, m),
            QmState::AwaitConnected => Err(IkeError::drop(
                "quick mode: message after message 3 (waiting for CONNECTED)",
            )),
            QmState::SentReply => {
                let expect = sa.keys.qm_hash3(self.msg_id, &self.ni, &self.nr);
                verify(sa, m, expect.as_bytes(), "quick mode message 3")?;
                message::check(QM_3, &m.payloads, "quick mode message 3")?;
                sa.iv.forget(self.msg_id);
                Ok(QmStep::Confirmed)
            }
        }
    }

    fn i_on_reply(
        &mut self,
        ctx: &mut Ctx<'_>,
        env: &QmEnv,
        sa: &mut IsakmpSa,
        m2: &Parsed,
    ) -> IkeResult<QmStep> {
        let expect = sa.keys.qm_hash2(self.msg_id, &self.ni, &m2.after_first);
        verify(sa, m2, expect.as_bytes(), "quick mode message 2")?;
        message::check(QM_SA, &m2.payloads, "quick mode message 2")?;
        let Some(Payload::Sa(reply)) = m2.payloads.iter().find(|p| matches!(p, Payload::Sa(_)))
        else {
            return Err(IkeError::malformed("quick mode message 2 without SA"));
        };
        let nr = nonce_of(m2)?;
        let offers = sa_payload::phase2_offers(reply)?;
        let [chosen] = offers.as_slice() else {
            return Err(IkeError::notify(
                NotifyType::BAD_PROPOSAL_SYNTAX,
                "responder chose more than one proposal",
            ));
        };
        let suite = chosen.suite.clone().map_err(|d| {
            IkeError::notify(
                NotifyType::NO_PROPOSAL_CHOSEN,
                format!("responder chose {d}, which we did not offer"),
            )
        })?;
        let Some((ours, our_spis, transform)) = self
            .offers
            .iter()
            .find(|(o, _, _)| proposal::phase2_matches(o, &suite))
            .copied()
        else {
            return Err(IkeError::notify(
                NotifyType::NO_PROPOSAL_CHOSEN,
                format!(
                    "responder chose {suite}, which policy {} did not offer",
                    ctx.config.policy
                ),
            ));
        };
        match ids_of(m2)? {
            Some((ci, cr)) if ci != self.network.local || cr != self.network.remote => {
                return Err(IkeError::notify(
                    NotifyType::INVALID_ID_INFORMATION,
                    format!(
                        "responder answered identities {ci} <-> {cr}, we asked for {} <-> {}",
                        self.network.local, self.network.remote
                    ),
                ));
            }
            // RFC 2409 §5.5: the identities we sent are returned; without them the exchange
            // would stand for the two IKE endpoints (strongSwan then refuses too, as the
            // host-to-host selectors are not inside the ones it asked for).
            None if self.ids_sent => {
                return Err(IkeError::notify(
                    NotifyType::INVALID_ID_INFORMATION,
                    format!(
                        "responder's message 2 carries no IDci/IDcr, we asked for {} <-> {}",
                        self.network.local, self.network.remote
                    ),
                ));
            }
            _ => {}
        }
        // The responder may shorten what we offered, never lengthen it; its 0 or no lifetime
        // leaves ours (proposal.rs, `agreed_life`). RESPONDER-LIFETIME (RFC 2407 §4.6.3.1)
        // shortens it further.
        let mut suite = suite.with_lifetimes_of(&ours);
        for p in &m2.payloads {
            if let Payload::Notification(n) = p
                && n.message_type == NotifyType::RESPONDER_LIFETIME
            {
                let (s, k) = sa_payload::parse_lifetime_attributes(&n.data);
                suite = Phase2Suite {
                    lifetime_seconds: s,
                    lifetime_kilobytes: k,
                    ..suite
                }
                .with_lifetimes_of(&suite);
                debug!("quick mode: responder lifetime {s:?} s / {k:?} KB");
            }
        }
        let g_qm_xy = pfs_secret(&self.dh, ke_of(m2))?;
        self.dh = None;
        let child = Keying {
            keys: &sa.keys,
            g_qm_xy: g_qm_xy.as_ref().map(|s| s.as_bytes()),
            ni: &self.ni,
            nr: &nr,
        }
        .child(
            ctx,
            env,
            &suite,
            our_spis,
            chosen.spis,
            transform,
            self.network,
        )?;
        // Release what we reserved for the offers that were not chosen.
        for s in self.reserved.drain(..) {
            if Some(s) != our_spis.esp && Some(s) != our_spis.ah {
                ctx.spis.release(s);
            }
        }
        self.nr = nr;
        let h3 = sa.keys.qm_hash3(self.msg_id, &self.ni, &self.nr);
        let msg = message::encrypted(
            qm_header(sa, self.msg_id),
            &[Payload::Hash(h3.as_bytes().to_vec())],
            &mut sa.iv,
        );
        sa.iv.forget(self.msg_id);
        self.retransmit = None;
        // The commit bit (RFC 2408 §3.1, RFC 2409 §5.5): the responder asks us not to use the
        // pair until its CONNECTED informational (same Message ID) says it is installed. We
        // wait for it as long as an exchange may take, then give up and delete the pair; a
        // lost message 3 is resent from the reply cache when message 2 comes again. We never
        // set the bit ourselves (neither does strongSwan), and a commit bit from an initiator
        // is ignored: we install before message 2 leaves, so nothing is to wait for.
        if m2.header.flags.contains(Flags::COMMIT) {
            debug!(
                msg_id = format_args!("{:08x}", self.msg_id),
                "quick mode: commit bit set, waiting for CONNECTED"
            );
            let until = ctx.now + ctx.config.retransmit.total();
            self.committed = Some((Box::new(child), until));
            self.state = QmState::AwaitConnected;
            return Ok(QmStep::AwaitConnected(msg));
        }
        Ok(QmStep::Done(Box::new(child), msg))
    }
}

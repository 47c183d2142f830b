//! What the session tells the daemon (`IkeSession::poll_event`).
//!
//! Ordering guarantee: an input (`handle_datagram`, `handle_timeout`, ...) queues its events and
//! its transmits together, and a child SA pair is announced by [`Event::ChildSaEstablished`] /
//! [`Event::ChildSaRekeyed`] in the same input that queues quick-mode message 2 (responder) or
//! message 3 (initiator). The daemon must therefore drain `poll_event` (and apply InstallSa)
//! *before* `poll_transmit` after every input; then the SAs are in the shards before the peer can
//! send on them. (docs/design.md: the PeerActor drains events first.)
//!
//! The responder's pair is announced with [`ChildSaInfo::confirmed`] false: the initiator
//! installs its inbound SA only when message 2 reaches it, so the responder's new outbound SA
//! may carry a re-keyed selector's traffic only from [`Event::ChildSaConfirmed`] (message 3, the
//! proof that the initiator has the pair); until then the old pair carries it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::ProtectedNetwork;
use crate::esp::SaParams;
use crate::wire::isakmp::NotifyType;

/// The SPIs that identify one child SA pair in the shards: the outer SPI of each direction (AH's
/// in an AH+ESP bundle, else ESP's), as `SecurityAssociation::outer_spi` returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpiPair {
    /// Our SPI: packets from the peer carry it.
    pub inbound: u32,
    /// The peer's SPI: packets to the peer carry it.
    pub outbound: u32,
}

/// A negotiated child SA pair, ready to be installed.
#[derive(Clone, Debug)]
pub struct ChildSaInfo {
    /// Built with `SecurityAssociation::new(inbound, now)`.
    pub inbound: SaParams,
    pub outbound: SaParams,
    /// The policy's name.
    pub policy: String,
    /// The selectors as negotiated (IDci/IDcr; narrower than the policy's when the peer asked).
    pub protected_networks: Vec<ProtectedNetwork>,
    /// Operator-readable suite, e.g. `ESP-AES128-SHA1-nopfs tunnel`.
    pub suite: String,
    /// Hard lifetime in seconds of the pair (also in `inbound.lifetime`).
    pub lifetime: Option<Duration>,
    /// Whether the peer is known to have the pair: true for the quick-mode initiator (message 2
    /// came back), false for the responder until [`Event::ChildSaConfirmed`].
    pub confirmed: bool,
}

impl ChildSaInfo {
    pub fn spis(&self) -> SpiPair {
        SpiPair {
            inbound: outer_spi(&self.inbound),
            outbound: outer_spi(&self.outbound),
        }
    }
}

pub(crate) fn outer_spi(p: &SaParams) -> u32 {
    p.ah.as_ref()
        .map(|a| a.spi)
        .or(p.esp.as_ref().map(|e| e.spi))
        .unwrap_or(0)
}

/// Something the daemon must act on or log.
#[derive(Clone, Debug)]
pub enum Event {
    /// Phase 1 completed (first one, or a phase-1 re-key).
    IsakmpSaEstablished {
        initiator_cookie: [u8; 8],
        responder_cookie: [u8; 8],
        /// Operator-readable suite, e.g. `AES128-SHA1-modp2048`.
        suite: String,
        lifetime: Option<Duration>,
        /// We initiated it.
        initiator: bool,
        /// The peer's phase-1 identity, authenticated and accepted by `remote-id`, printable and
        /// bounded: "address:192.0.2.7", "fqdn:spoke1.example.net", "user-fqdn:vpn@example.net",
        /// "keyid:branch-7". Tells apart spokes behind one NAT address.
        peer_id: String,
    },
    /// An ISAKMP SA is gone (deleted by either side, expired, or replaced after a re-key).
    IsakmpSaDeleted {
        initiator_cookie: [u8; 8],
        responder_cookie: [u8; 8],
        reason: String,
    },
    /// Install this SA pair.
    ChildSaEstablished(ChildSaInfo),
    /// A re-key of `old` completed: install `new`; `old` stays installed until its own
    /// `ChildSaDeleted`/`ChildSaExpired` (after the grace period) so no packet in flight is lost.
    ChildSaRekeyed { old: SpiPair, new: ChildSaInfo },
    /// The initiator confirmed a pair we announced as responder (quick-mode message 3, or its
    /// retransmissions ran out with the pair kept): its outbound SA may now carry the traffic
    /// of its selectors that an older pair still carries.
    ChildSaConfirmed(SpiPair),
    /// The pair reached its hard lifetime: remove it.
    ChildSaExpired(SpiPair),
    /// The pair was deleted (by us or by the peer): remove it.
    ChildSaDeleted { spis: SpiPair, reason: String },
    /// DPD got no answer within the timeout: every SA of the session is gone (their
    /// `ChildSaDeleted` events come first); the session is closed.
    PeerDead,
    /// An exchange failed. When no SA is left the session is closed (`IkeSession::is_closed`).
    Failed {
        /// In operator terms, e.g. "no proposal chosen: peer offered 3DES-MD5-modp1024, policy
        /// ToBerne accepts AES128-SHA1-modp2048".
        reason: String,
        /// The notify sent or received, if any.
        notify: Option<NotifyType>,
    },
    /// The peer says it has no state from before (RFC 2407 §4.6.3.3): remove SAs with this peer
    /// that other sessions still hold. The session's own older SAs are already reported deleted.
    InitialContact,
    /// NAT-D outcome of phase 1 (RFC 3947 §3.2).
    NatDetected {
        local_behind_nat: bool,
        peer_behind_nat: bool,
    },
    /// The peer's address or port changed (NAT rebinding, or the float to the NAT-T port):
    /// UDP-encapsulated SAs must send there.
    PeerPortChanged(SocketAddr),
}

impl Event {
    /// The variant's name, for debug logs that must not dump the key-bearing parameters.
    pub fn name(&self) -> &'static str {
        match self {
            Event::IsakmpSaEstablished { .. } => "ISAKMP SA established",
            Event::IsakmpSaDeleted { .. } => "ISAKMP SA deleted",
            Event::ChildSaEstablished(_) => "child SA established",
            Event::ChildSaRekeyed { .. } => "child SA re-keyed",
            Event::ChildSaConfirmed(_) => "child SA confirmed",
            Event::ChildSaExpired(_) => "child SA expired",
            Event::ChildSaDeleted { .. } => "child SA deleted",
            Event::PeerDead => "peer dead",
            Event::Failed { .. } => "failed",
            Event::InitialContact => "initial contact",
            Event::NatDetected { .. } => "NAT detected",
            Event::PeerPortChanged(_) => "peer port changed",
        }
    }
}

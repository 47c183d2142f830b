//! The session's own state, as enums whose variants carry their data (the way quinn-proto's
//! `Connection` keeps its state): where the session is in its life, who started it, and how
//! the peer is reached (address, NAT-T float, ESP-in-UDP dialect). Each changes only through
//! one `set_*` method below, which logs the transition.

use std::net::SocketAddr;

use tracing::debug;

use super::nat_t::NatOutcome;
use super::proposal::NatTVariant;
use super::quick_mode::QmEnv;
use super::session::IkeSession;

/// Where the session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// A responder before its first datagram: empty, yet not over.
    Fresh,
    /// An input was handled or an exchange started: from now on an empty session is over.
    Running {
        /// An ISAKMP SA was established once: INITIAL-CONTACT only on first contact
        /// (RFC 2407 §4.6.3.3), and failures concern a peer that authenticated.
        contacted: bool,
    },
    /// Failed for good, deleted or terminated: inputs are ignored.
    Closed,
}

/// Who created the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// `new_initiator`: we called a peer the operator configured; its failures are logged as
    /// warnings.
    WeCalled,
    /// `new_responder`: an unknown initiator called us; anyone can make it fail, so its
    /// failures before authentication are only debug lines (the daemon summarises them).
    PeerCalled,
}

/// How IKE and ESP reach the peer (RFC 3947, RFC 3948).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encapsulation {
    /// IKE on the IKE port, ESP as is: no NAT-T float and no NAT found.
    None,
    /// NAT traversal is in play.
    NatT {
        /// IKE runs on the NAT-T port, each message after the non-ESP marker (RFC 3947 §4).
        floated: bool,
        /// ESP goes in UDP in this dialect (RFC 3948); `None` until a NAT is found (or the
        /// initiator floats on its own, e.g. forced encapsulation on its side).
        variant: Option<NatTVariant>,
        /// What NAT-D found (RFC 3947 §3.2), once it ran.
        outcome: Option<NatOutcome>,
    },
}

/// The peer's current IKE address and how we reach it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Path {
    /// Changes with the NAT-T float and NAT rebinding (authenticated messages only once
    /// something is established).
    pub peer: SocketAddr,
    pub encap: Encapsulation,
}

impl Path {
    pub fn new(peer: SocketAddr) -> Self {
        Self {
            peer,
            encap: Encapsulation::None,
        }
    }

    /// IKE messages go from and to the NAT-T port (with the non-ESP marker).
    pub fn floated(&self) -> bool {
        matches!(self.encap, Encapsulation::NatT { floated: true, .. })
    }

    /// The UDP encapsulation dialect of ESP, when ESP goes in UDP.
    pub fn variant(&self) -> Option<NatTVariant> {
        match self.encap {
            Encapsulation::NatT { variant, .. } => variant,
            Encapsulation::None => None,
        }
    }

    /// What a quick mode needs of it; `refuse`: why a new responder exchange is refused.
    pub fn qm_env(&self, refuse: Option<String>) -> QmEnv {
        QmEnv {
            nat: self.variant(),
            peer: self.peer,
            refuse,
        }
    }

    /// This path with IKE on the NAT-T port.
    pub fn float(self) -> Self {
        let encap = match self.encap {
            Encapsulation::None => Encapsulation::NatT {
                floated: true,
                variant: None,
                outcome: None,
            },
            Encapsulation::NatT {
                variant, outcome, ..
            } => Encapsulation::NatT {
                floated: true,
                variant,
                outcome,
            },
        };
        Self { encap, ..self }
    }

    /// This path with ESP in UDP in `variant` (kept when one was chosen already, unless
    /// `replace`) and NAT-D's `outcome` (kept when `None`).
    pub fn encapsulate(
        self,
        variant: Option<NatTVariant>,
        replace: bool,
        outcome: Option<NatOutcome>,
    ) -> Self {
        let (floated, old_variant, old_outcome) = match self.encap {
            Encapsulation::None => (false, None, None),
            Encapsulation::NatT {
                floated,
                variant,
                outcome,
            } => (floated, variant, outcome),
        };
        let variant = if replace {
            variant
        } else {
            old_variant.or(variant)
        };
        let encap = Encapsulation::NatT {
            floated,
            variant,
            outcome: outcome.or(old_outcome),
        };
        Self { encap, ..self }
    }
}

impl IkeSession {
    /// The one place the lifecycle changes.
    pub(crate) fn set_lifecycle(&mut self, to: Lifecycle) {
        if self.lifecycle != to {
            debug!(policy = %self.env.config.policy, peer = %self.path.peer, "session: {:?} -> {to:?}", self.lifecycle);
            self.lifecycle = to;
        }
    }

    /// An input was handled or an exchange started (a closed session stays closed).
    pub(crate) fn note_input(&mut self) {
        if self.lifecycle == Lifecycle::Fresh {
            self.set_lifecycle(Lifecycle::Running { contacted: false });
        }
    }

    /// An ISAKMP SA was established with this peer.
    pub(crate) fn note_contact(&mut self) {
        if matches!(self.lifecycle, Lifecycle::Fresh | Lifecycle::Running { .. }) {
            self.set_lifecycle(Lifecycle::Running { contacted: true });
        }
    }

    /// An ISAKMP SA existed with this peer before.
    pub(crate) fn contacted(&self) -> bool {
        matches!(self.lifecycle, Lifecycle::Running { contacted: true })
    }

    pub(crate) fn closed(&self) -> bool {
        self.lifecycle == Lifecycle::Closed
    }

    /// The one place the peer's address and its encapsulation change.
    pub(crate) fn set_path(&mut self, to: Path) {
        if self.path != to {
            debug!(policy = %self.env.config.policy, "path: {:?} -> {to:?}", self.path);
            self.path = to;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn path_float_and_encapsulation_keep_each_other() {
        let p = Path::new(addr("192.0.2.1:500"));
        assert!(!p.floated() && p.variant().is_none());
        assert_eq!(p.encap, Encapsulation::None);

        // A float alone (message 1 on the NAT-T port): IKE moves, ESP stays as is.
        let f = p.float();
        assert!(f.floated() && f.variant().is_none());

        // NAT found: ESP in UDP; the float stays, the outcome is kept.
        let nat = NatOutcome {
            local_behind_nat: false,
            peer_behind_nat: true,
        };
        let e = f.encapsulate(Some(NatTVariant::Rfc3947), true, Some(nat));
        assert!(e.floated());
        assert_eq!(e.variant(), Some(NatTVariant::Rfc3947));
        // Without `replace` a chosen dialect stays; with it, NAT-D's decision wins.
        let kept = e.encapsulate(Some(NatTVariant::Draft), false, None);
        assert_eq!(kept.variant(), Some(NatTVariant::Rfc3947));
        assert_eq!(kept.encap, e.encap);
        let replaced = e.encapsulate(Some(NatTVariant::Draft), true, None);
        assert_eq!(replaced.variant(), Some(NatTVariant::Draft));
        assert!(matches!(
            replaced.encap,
            Encapsulation::NatT {
                floated: true,
                outcome: Some(o),
                ..
            } if o == nat
        ));

        // The responder decides before the initiator floats: encapsulated, not floated.
        let r = p.encapsulate(Some(NatTVariant::Draft), true, Some(nat));
        assert!(!r.floated());
        assert_eq!(r.float().variant(), Some(NatTVariant::Draft));

        let env = replaced.qm_env(None);
        assert_eq!(env.peer, addr("192.0.2.1:500"));
        assert_eq!(env.nat, Some(NatTVariant::Draft));
    }
}

//! IKEv1 (RFC 2409 over ISAKMP, RFC 2408; IPsec DOI RFC 2407): the cryptography of the key
//! exchange and the sans-IO session state machine.
//!
//! ```text
//! demux.rs          which session a datagram belongs to (cookies), half-open admission
//! session.rs        IkeSession: inputs, outputs, dispatch (the PeerActor drives it)
//!   state.rs        its state as enums: lifecycle, origin, path (address, NAT-T, ESP in UDP)
//!   timers.rs       poll_timeout / handle_timeout: retransmission, expiry, re-key, DPD, keepalive
//!   teardown.rs     INITIAL-CONTACT, dead peer, delete_all / terminate
//!   main_mode.rs    phase 1, PSK, initiator and responder side by side (+ payload tables)
//!   quick_mode.rs   phase 2, initiator and responder, KEYMAT -> esp::SaParams
//!   informational.rs  delete, INITIAL-CONTACT, DPD, error notifies
//!   children.rs     child SA bookkeeping: re-key, grace period, simultaneous re-keys
//!   isakmp_sa.rs    an established ISAKMP SA (keys, IV chain, lifetime, message IDs)
//!   lifetimes.rs    soft (jittered) and hard deadlines of a lifetime, saturating
//!   proposal.rs     suites, selection in the policy's order, operator-readable reasons
//!   sa_payload.rs   suites <-> SA payloads;  identity.rs  IDs <-> protected networks
//!   nat_t.rs        vendor IDs, NAT-D, non-ESP marker;  dpd.rs  the RFC 3706 timer
//!   retransmit.rs   backoff schedule and the stored-reply cache;  message.rs  framing
//!   stats.rs        process-wide exchange counters for `show counters` and the metrics
//! dh.rs prf.rs keys.rs cipher.rs   DH groups, PRF, key schedule, IV chain (the crypto layer)
//! ```
//!
//! # Driving a session (the daemon's contract)
//!
//! * Create: [`IkeSession::new_initiator`] (sends main-mode message 1 at once) or, after
//!   [`peek_first_message`] and the policy's address check, [`IkeSession::new_responder`]
//!   followed by `handle_datagram` with that first message.
//! * Inputs: `handle_datagram(now, from, to_port_is_nat_t, bytes)`, `handle_timeout(now)`,
//!   `initiate_child(now, ChildRequest)`, `note_inbound_traffic(now, spi)`,
//!   `child_soft_expired(now, spi)` (kilobyte soft limit), `delete_all(now)`, `terminate(now)`.
//! * Outputs, drained after every input **in this order**: `poll_event` (install/remove SAs),
//!   then `poll_transmit`, then `poll_timeout`. A child SA pair is reported by
//!   `Event::ChildSaEstablished` / `ChildSaRekeyed` in the same input that queues quick-mode
//!   message 2 (responder) or 3 (initiator), so draining events first installs the SAs before
//!   the peer can use them.
//! * `Transmit::bytes` is the exact UDP payload: it already carries the non-ESP marker when
//!   `source_port_nat_t` is set (or is a one-byte NAT-keepalive). Received payloads from the
//!   NAT-T port may come with or without the marker.
//! * `is_closed()` once nothing is left (failure, deletes, dead peer); the daemon then drops
//!   the session and, for a permanent policy, creates a new initiator.

pub mod cipher;
pub mod dh;
pub mod keys;
pub mod prf;

pub(crate) mod children;
pub mod config;
pub mod demux;
pub mod dpd;
pub mod error;
pub mod events;
pub(crate) mod identity;
pub(crate) mod informational;
pub(crate) mod isakmp_sa;
pub(crate) mod lifetimes;
pub(crate) mod main_mode;
pub(crate) mod message;
pub mod nat_t;
pub mod proposal;
pub(crate) mod quick_mode;
pub(crate) mod retransmit;
pub mod session;
pub mod stats;
pub(crate) mod teardown;
pub(crate) mod timers;

pub use config::{
    PeerConfig, RandomSpis, RekeyConfig, RetransmitConfig, SelectorGuard, SpiAllocator,
};
pub use error::IkeError;
pub use events::{ChildSaInfo, Event, SpiPair};
pub use nat_t::NatOutcome;
pub use session::{ChildRequest, FirstMessageInfo, IkeSession, Transmit, peek_first_message};
#[doc(hidden)]
pub mod footprint;
#[doc(hidden)]
pub mod fuzz_support;
pub(crate) mod sa_payload;
pub(crate) mod state;

#[cfg(test)]
mod tests;

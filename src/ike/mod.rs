//! IKEv1 (RFC 2409 over ISAKMP, RFC 2408; IPsec DOI RFC 2407): the cryptography of the key
//! exchange and the sans-IO session state machine.

pub mod cipher;
pub mod dh;
pub mod keys;
pub mod prf;

pub(crate) mod children;
pub mod config;
pub mod dpd;
pub mod error;
pub mod events;
pub(crate) mod identity;
pub(crate) mod informational;
pub(crate) mod isakmp_sa;
pub(crate) mod main_mode;
pub(crate) mod message;
pub mod nat_t;
pub mod proposal;
pub(crate) mod quick_mode;
pub(crate) mod retransmit;
pub mod session;

pub use config::{PeerConfig, RandomSpis, RekeyConfig, RetransmitConfig, SpiAllocator};
pub use error::IkeError;
pub use events::{ChildSaInfo, Event, SpiPair};
pub use nat_t::NatOutcome;
pub use session::{ChildRequest, FirstMessageInfo, IkeSession, Transmit, peek_first_message};
pub(crate) mod sa_payload;

#[cfg(test)]
mod tests;

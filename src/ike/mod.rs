//! IKEv1 (RFC 2409 over ISAKMP, RFC 2408; IPsec DOI RFC 2407): the cryptography of the key
//! exchange and the sans-IO session state machine.

pub mod cipher;
pub mod dh;
pub mod keys;
pub mod prf;

pub mod config;
pub mod dpd;
pub mod error;
pub mod events;
pub(crate) mod identity;
pub(crate) mod isakmp_sa;
pub(crate) mod main_mode;
pub(crate) mod message;
pub(crate) mod quick_mode;
pub mod nat_t;
pub mod proposal;
pub(crate) mod retransmit;
pub(crate) mod sa_payload;

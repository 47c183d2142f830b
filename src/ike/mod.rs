//! IKEv1 (RFC 2409 over ISAKMP RFC 2408, IPsec DOI RFC 2407): the sans-IO session state machine.

pub mod config;
pub mod dpd;
pub mod proposal;
pub(crate) mod retransmit;

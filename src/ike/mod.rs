//! IKEv1 (RFC 2409 over ISAKMP, RFC 2408): the cryptography of the key exchange.

pub mod cipher;
pub mod dh;
pub mod keys;
pub mod prf;

//! ikehub protocol core: wire formats, crypto suites, ESP/AH security associations, the profile
//! model and the security policy database. Sans-IO: no sockets, threads, clock or OS RNG here;
//! time and randomness are passed in by the caller (see `docs/design.md`).

pub mod claims;
pub mod config;
pub mod crypto;
pub mod esp;
pub mod ike;
pub mod spd;
pub mod wire;

//! Sessions against sessions on virtual time (docs/design.md convention 8).

mod forge;
mod handshake;
mod harness;
mod hostile;
mod identities;
mod ipv6_selectors;
mod lifetimes;
mod memory;
mod reliability;
mod spoofing;
mod timelines;

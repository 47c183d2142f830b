//! Sessions against sessions on virtual time (DESIGN.md convention 8).

mod handshake;
mod harness;
mod identities;
mod reliability;
mod timelines;

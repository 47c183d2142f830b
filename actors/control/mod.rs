//! The control socket: `show`, `reload`, `initiate`, `terminate` between the CLI and a running
//! daemon.

pub mod client;
pub mod protocol;
pub mod server;
pub mod show;
pub mod stream;
pub mod table;

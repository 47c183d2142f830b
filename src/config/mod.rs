//! The TOML profile model (PROFILES.md): load a file or a directory, validate everything, resolve
//! names, and diff two snapshots.

pub mod model;
pub mod network;

pub use model::*;
pub use network::{NetworkSpec, ProtectedNetwork};

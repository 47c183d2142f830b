//! The TOML profile model (docs/profiles.md): load a file or a directory, validate everything,
//! resolve names, and diff two snapshots.
//!
//! ```text
//! load(path) ──▶ load.rs    files, TOML syntax, merge (a name defined twice is refused)
//!                raw.rs     spanned tables ─▶ raw structs; unknown keys, wrong types
//!                reader.rs  (the spanned-table reader raw.rs uses)
//!                validate.rs   values, words, defaults of system, interfaces, transforms
//!                policy.rs, manual.rs, keys.rs, isakmp.rs   policies: names, keys, SPIs
//!                conflicts.rs              SPIs twice, ambiguous protected networks, sockets
//!            ──▶ Loaded { profiles, warnings, files }  or  Vec<Diagnostic> (all problems)
//! ```

mod check;
pub mod conflicts;
pub mod defaults;
pub mod diagnostic;
pub mod diff;
pub mod identity;
mod isakmp;
mod keys;
pub mod load;
mod manual;
pub mod model;
pub mod network;
mod policy;
mod raw;
mod reader;
mod span;
pub mod summary;
mod validate;

pub use diagnostic::{Diagnostic, Loc, Severity};
pub use diff::{Change, NeedsRestart, PolicyChanges, ProfileDiff, diff};
pub use identity::{IdPattern, LocalId, RemoteId};
pub use load::{Loaded, load, load_sources, profile_files};
pub use model::*;
pub use network::{Family, NetworkSpec, ProtectedNetwork};
pub use summary::summary;

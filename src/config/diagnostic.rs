//! What the loader reports: one problem (or warning) at one place in one profile file, printed as
//! `FILE:LINE:COL: message` (docs/profiles.md, General rules; docs/cli.md, `ikehub check`).

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Whether a diagnostic refuses the profiles or only warns about a weak choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in the profiles. `line` and `col` are 1-based; `col` counts characters.
/// The message starts with the table it concerns (`ipsec-policy-manual.ToBerne: ...`) and names
/// the key and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub severity: Severity,
}

impl Diagnostic {
    pub fn error(loc: &Loc, message: impl Into<String>) -> Self {
        Self::new(loc, message.into(), Severity::Error)
    }

    pub fn warning(loc: &Loc, message: impl Into<String>) -> Self {
        Self::new(loc, message.into(), Severity::Warning)
    }

    fn new(loc: &Loc, message: String, severity: Severity) -> Self {
        Self {
            file: loc.file.to_path_buf(),
            line: loc.line,
            col: loc.col,
            message,
            severity,
        }
    }

    pub fn is_warning(&self) -> bool {
        self.severity == Severity::Warning
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.col)?;
        if self.is_warning() {
            f.write_str("warning: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

/// A place in a profile file (1-based line and character column).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Loc {
    pub file: Arc<Path>,
    pub line: usize,
    pub col: usize,
}

impl Loc {
    /// The start of a file: for problems with the file as a whole (unreadable, not TOML at all).
    pub fn file_start(file: &Path) -> Self {
        Self {
            file: Arc::from(file),
            line: 1,
            col: 1,
        }
    }

    /// The directory relative paths in this file are resolved against.
    pub fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// Collects diagnostics while the profiles are read and checked, so that every problem is
/// reported at once instead of only the first.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    all: RefCell<Vec<Diagnostic>>,
    /// (table path, key) of values already refused for their type, so that they are not
    /// reported a second time as missing.
    refused: RefCell<std::collections::BTreeSet<(String, String)>>,
}

impl Sink {
    pub fn refused(&self, path: &str, key: &str) {
        self.refused
            .borrow_mut()
            .insert((path.to_string(), key.to_string()));
    }

    pub fn was_refused(&self, path: &str, key: &str) -> bool {
        self.refused
            .borrow()
            .contains(&(path.to_string(), key.to_string()))
    }

    pub fn error(&self, loc: &Loc, message: impl Into<String>) {
        self.all.borrow_mut().push(Diagnostic::error(loc, message));
    }

    pub fn warning(&self, loc: &Loc, message: impl Into<String>) {
        self.all
            .borrow_mut()
            .push(Diagnostic::warning(loc, message));
    }

    pub fn has_errors(&self) -> bool {
        self.all.borrow().iter().any(|d| !d.is_warning())
    }

    /// Errors and warnings, each sorted by place (in the order the files were given) and
    /// deduplicated.
    pub fn finish(self, file_order: &[PathBuf]) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
        let mut all = self.all.into_inner();
        let rank = |d: &Diagnostic| {
            file_order
                .iter()
                .position(|f| *f == d.file)
                .unwrap_or(usize::MAX)
        };
        all.sort_by(|a, b| {
            (rank(a), a.line, a.col, &a.message).cmp(&(rank(b), b.line, b.col, &b.message))
        });
        all.dedup();
        all.into_iter().partition(|d| !d.is_warning())
    }
}

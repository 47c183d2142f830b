//! Reading profiles: one TOML file, or every `*.toml` file of a directory (sorted by name),
//! merged into one set of tables.
//!
//! The merge is done here over spanned `toml` documents, not with the `config` crate: `config`
//! deep-merges a table written in two files silently (we must refuse a name defined twice and
//! say where both are), coerces strings to numbers and booleans (`"yes"` would become `true`),
//! and keeps no line or column, which every problem must carry.

use std::path::{Path, PathBuf};

use toml::de::DeTable;

use super::diagnostic::{Diagnostic, Loc, Sink};
use super::model::Profiles;
use super::raw::{self, Named, RawFile};
use super::span::SourceFile;
use super::validate;

/// A validated profile set and where it came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub profiles: Profiles,
    /// Weak but accepted choices (DES, MD5, DH group 1, ...): `check` prints them, the daemon
    /// logs them.
    pub warnings: Vec<Diagnostic>,
    /// The files read, in merge order.
    pub files: Vec<PathBuf>,
}

/// Loads and validates the profiles at `path` (a file, or a directory of `*.toml` files).
/// On failure, returns every problem found, sorted by file and position.
pub fn load(path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let files = profile_files(path)?;
    let mut sources = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => sources.push((file, text)),
            Err(e) => errors.push(Diagnostic::error(
                &Loc::file_start(&file),
                format!("cannot read profile file: {e}"),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    load_sources(sources)
}

/// Loads and validates profiles given as (file name, text) pairs, merged in the given order.
/// The names are used in diagnostics and to resolve relative paths (`preshared-key-file`,
/// `control-socket`). This is the entry point for profiles that come from somewhere other
/// than the local file system.
pub fn load_sources(sources: Vec<(PathBuf, String)>) -> Result<Loaded, Vec<Diagnostic>> {
    let files: Vec<PathBuf> = sources.iter().map(|(p, _)| p.clone()).collect();
    let sink = Sink::default();
    let sources: Vec<SourceFile> = sources
        .into_iter()
        .map(|(p, t)| SourceFile::new(&p, t))
        .collect();

    // A syntax error makes the rest of that file unreliable, and names defined there would show
    // up as unresolved elsewhere: report the syntax errors of every file, and stop there.
    let mut docs = Vec::new();
    for src in &sources {
        let (doc, errs) = DeTable::parse_recoverable(&src.text);
        for e in &errs {
            let loc = src.loc(e.span().map_or(0, |s| s.start));
            sink.error(
                &loc,
                format!("TOML syntax error: {}", first_line(e.message())),
            );
        }
        docs.push(doc);
    }
    if sink.has_errors() {
        return Err(sink.finish(&files).0);
    }

    let raw_files: Vec<RawFile> = sources
        .iter()
        .zip(&docs)
        .map(|(src, doc)| raw::read_file(src, doc.get_ref(), &sink))
        .collect();
    let merged = merge(raw_files, &sink);
    let profiles = validate::validate(&merged, &sink);
    let (errors, warnings) = sink.finish(&files);
    match profiles {
        Some(profiles) if errors.is_empty() => Ok(Loaded {
            profiles,
            warnings,
            files,
        }),
        _ => Err(errors),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s).trim()
}

/// The files a `-c PATH` names: the file itself, or the `*.toml` files of a directory sorted
/// by name (hidden files, such as editor backups, are skipped).
pub fn profile_files(path: &Path) -> Result<Vec<PathBuf>, Vec<Diagnostic>> {
    let fail = |m: String| Err(vec![Diagnostic::error(&Loc::file_start(path), m)]);
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return fail(format!("cannot read profiles: {e}")),
    };
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) => return fail(format!("cannot list profile directory: {e}")),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "toml")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.'))
                && p.is_file()
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return fail("no *.toml profile files in this directory".into());
    }
    Ok(files)
}

/// All files' tables together; every name unique per kind.
#[derive(Debug, Default)]
pub(crate) struct Merged {
    pub system: Option<Named<raw::RawSystem>>,
    pub tunnel_device: Option<Named<raw::RawTunnelDevice>>,
    pub interfaces: Vec<Named<raw::RawInterface>>,
    pub ipsec_transforms: Vec<Named<raw::RawIpsecTransform>>,
    pub isakmp_transforms: Vec<Named<raw::RawIsakmpTransform>>,
    pub manual_policies: Vec<Named<raw::RawManualPolicy>>,
    pub isakmp_policies: Vec<Named<raw::RawIsakmpPolicy>>,
}

fn merge(files: Vec<RawFile>, sink: &Sink) -> Merged {
    let mut m = Merged::default();
    let mut system = Vec::new();
    let mut tunnel_device = Vec::new();
    for f in files {
        add(raw::SYSTEM, &mut system, f.system, sink, true);
        add(
            raw::TUNNEL_DEVICE,
            &mut tunnel_device,
            f.tunnel_device,
            sink,
            true,
        );
        add(raw::INTERFACE, &mut m.interfaces, f.interfaces, sink, false);
        add(
            raw::IPSEC_TRANSFORM,
            &mut m.ipsec_transforms,
            f.ipsec_transforms,
            sink,
            false,
        );
        add(
            raw::ISAKMP_TRANSFORM,
            &mut m.isakmp_transforms,
            f.isakmp_transforms,
            sink,
            false,
        );
        add(
            raw::MANUAL_POLICY,
            &mut m.manual_policies,
            f.manual_policies,
            sink,
            false,
        );
        add(
            raw::ISAKMP_POLICY,
            &mut m.isakmp_policies,
            f.isakmp_policies,
            sink,
            false,
        );
    }
    m.system = system.into_iter().next();
    m.tunnel_device = tunnel_device.into_iter().next();
    m
}

/// Appends `new` to `all`, refusing a name already defined (in this or an earlier file).
fn add<T>(kind: &str, all: &mut Vec<Named<T>>, new: Vec<Named<T>>, sink: &Sink, single: bool) {
    for n in new {
        if let Some(first) = all.iter().find(|o| o.name == n.name) {
            let what = if single {
                format!("[{kind}]")
            } else {
                format!("{kind}.{}", n.name)
            };
            sink.error(
                &n.loc,
                format!(
                    "{what} is defined twice: here and at {} (names must be unique per kind)",
                    first.loc
                ),
            );
        } else {
            all.push(n);
        }
    }
}

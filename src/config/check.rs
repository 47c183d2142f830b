//! Small helpers shared by the validators: every message is prefixed with the table it is about
//! (`ipsec-transform.AES128_SHA1: ...`) and names the key.

use std::fmt::Display;

use super::diagnostic::{Loc, Sink};
use super::raw::{At, Scalar, did_you_mean};

/// Checks of one named table.
pub(crate) struct Check<'a> {
    pub sink: &'a Sink,
    /// `kind.name`
    pub path: String,
    /// Where the table's name is written: the place of "missing key" problems.
    pub loc: Loc,
}

impl<'a> Check<'a> {
    pub fn new(sink: &'a Sink, path: String, loc: &Loc) -> Self {
        Self {
            sink,
            path,
            loc: loc.clone(),
        }
    }

    pub fn error(&self, loc: &Loc, message: impl Display) {
        self.sink.error(loc, format!("{}: {message}", self.path));
    }

    pub fn warning(&self, loc: &Loc, message: impl Display) {
        self.sink.warning(loc, format!("{}: {message}", self.path));
    }

    /// A key the table must have; reported at the table's name when missing.
    pub fn required<'v, T>(&self, v: &'v Option<At<T>>, key: &str) -> Option<&'v At<T>> {
        if v.is_none() && !self.sink.was_refused(&self.path, key) {
            self.error(&self.loc, format_args!("missing key `{key}`"));
        }
        v.as_ref()
    }

    /// One of a fixed list of words.
    pub fn word<T: Copy>(&self, key: &str, at: &At<String>, words: &[(&str, T)]) -> Option<T> {
        let found = words.iter().find(|(w, _)| *w == at.value).map(|(_, t)| *t);
        if found.is_none() {
            let list: Vec<&str> = words.iter().map(|(w, _)| *w).collect();
            self.error(
                &at.loc,
                format_args!(
                    "{key} `{}` is not one of: {}{}",
                    at.value,
                    list.join(" | "),
                    did_you_mean(&at.value, list.iter().copied())
                ),
            );
        }
        found
    }

    /// An integer in `lo..=hi`; `what` explains the range in the message.
    pub fn range(&self, key: &str, at: &At<i64>, lo: i64, hi: i64, what: &str) -> Option<i64> {
        if (lo..=hi).contains(&at.value) {
            Some(at.value)
        } else {
            self.error(
                &at.loc,
                format_args!("{key} {} is out of range: {what}", at.value),
            );
            None
        }
    }

    /// A group number written as `14` or `"14"`, from `allowed`; `none_ok` also accepts
    /// `"none"` (returned as `Some(None)`).
    pub fn group(
        &self,
        key: &str,
        at: &At<Scalar>,
        allowed: &[u16],
        none_ok: bool,
    ) -> Option<Option<u16>> {
        let n = match &at.value {
            Scalar::Str(s) if none_ok && s == "none" => return Some(None),
            Scalar::Str(s) => s.trim().parse::<i64>().ok(),
            Scalar::Int(n) => Some(*n),
        };
        match n {
            Some(n) if allowed.iter().any(|&g| i64::from(g) == n) => Some(Some(n as u16)),
            _ => {
                let mut list: Vec<String> = Vec::new();
                if none_ok {
                    list.push("none".into());
                }
                list.extend(allowed.iter().map(u16::to_string));
                let shown = match &at.value {
                    Scalar::Str(s) => format!("`{s}`"),
                    Scalar::Int(n) => n.to_string(),
                };
                self.error(
                    &at.loc,
                    format_args!(
                        "{key} {shown} is not a supported Diffie-Hellman group: {}",
                        list.join(" | ")
                    ),
                );
                None
            }
        }
    }
}

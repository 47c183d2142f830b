//! A reader over one spanned TOML table: takes the known keys one by one with their types, so
//! that every wrong type and every unknown key left over is reported with its place.

use std::collections::BTreeSet;

use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::diagnostic::{Loc, Sink};
use super::raw::{At, Named, RawProtectedNetwork, Scalar};
use super::span::SourceFile;

/// Table entries in the order they were written (the map itself is sorted by key).
pub(crate) fn sorted<'a, 'i>(
    t: &'a DeTable<'i>,
) -> Vec<(
    &'a Spanned<std::borrow::Cow<'i, str>>,
    &'a Spanned<DeValue<'i>>,
)> {
    let mut v: Vec<_> = t.iter().collect();
    v.sort_by_key(|(k, _)| k.span().start);
    v
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Shared context of one file.
#[derive(Clone, Copy)]
pub(crate) struct Cx<'a> {
    pub src: &'a SourceFile,
    pub sink: &'a Sink,
}

impl<'a> Cx<'a> {
    pub(crate) fn table_of<'t, 'i>(
        &self,
        path: &str,
        v: &'t Spanned<DeValue<'i>>,
    ) -> Option<&'t DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.sink.error(
                    &self.src.loc(v.span().start),
                    format!("{path} must be a table, not {}", type_name(other)),
                );
                None
            }
        }
    }

    pub(crate) fn fields<'t, 'i>(&self, path: &str, table: &'t DeTable<'i>) -> Fields<'t, 'i>
    where
        'a: 't,
    {
        Fields {
            src: self.src,
            sink: self.sink,
            path: path.to_string(),
            key_prefix: String::new(),
            table,
            known: BTreeSet::new(),
        }
    }

    /// `[kind.NAME]` tables: every entry of the `kind` table is one named profile.
    pub(crate) fn named<T>(
        &self,
        kind: &str,
        value: &Spanned<DeValue<'_>>,
        out: &mut Vec<Named<T>>,
        read: fn(&mut Fields<'_, '_>) -> T,
    ) {
        let Some(all) = self.table_of(kind, value) else {
            return;
        };
        if all.is_empty() {
            self.sink.error(
                &self.src.loc(value.span().start),
                format!("{kind} needs a name: write [{kind}.NAME]"),
            );
        }
        for (key, v) in sorted(all) {
            let name = key.get_ref().as_ref();
            let loc = self.src.loc(key.span().start);
            let path = format!("{kind}.{name}");
            if !valid_name(name) {
                self.sink.error(
                    &loc,
                    format!(
                        "{kind}: name `{name}` must be letters, digits, `_` and `-` (at most 64)"
                    ),
                );
            }
            if let Some(t) = self.table_of(&path, v) {
                let body = read(&mut self.fields(&path, t));
                out.push(Named {
                    name: name.to_string(),
                    loc,
                    body,
                });
            }
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The keys of one table, taken one by one; whatever is left at `finish` is an unknown key.
pub(crate) struct Fields<'t, 'i> {
    src: &'t SourceFile,
    sink: &'t Sink,
    path: String,
    /// `inbound.` inside `inbound = { ... }`: keys are named from the policy table down.
    key_prefix: String,
    table: &'t DeTable<'i>,
    known: BTreeSet<&'static str>,
}

impl<'t, 'i> Fields<'t, 'i> {
    fn loc(&self, offset: usize) -> Loc {
        self.src.loc(offset)
    }

    fn get(&mut self, key: &'static str) -> Option<&'t Spanned<DeValue<'i>>> {
        self.known.insert(key);
        self.table.get(key)
    }

    fn wrong_type(&self, key: &str, v: &Spanned<DeValue<'_>>, expected: &str) {
        self.sink
            .refused(&self.path, &format!("{}{key}", self.key_prefix));
        self.sink.error(
            &self.loc(v.span().start),
            format!(
                "{}: {}{key} must be {expected}, not {}",
                self.path,
                self.key_prefix,
                type_name(v.get_ref())
            ),
        );
    }

    pub(crate) fn string(&mut self, key: &'static str) -> Option<At<String>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(At {
                value: s.to_string(),
                loc: self.loc(v.span().start),
            }),
            _ => {
                self.wrong_type(key, v, "a string");
                None
            }
        }
    }

    pub(crate) fn int(&mut self, key: &'static str) -> Option<At<i64>> {
        let v = self.get(key)?;
        let loc = self.loc(v.span().start);
        match v.get_ref() {
            DeValue::Integer(i) => self
                .integer(key, i.as_str(), i.radix(), &loc)
                .map(|value| At { value, loc }),
            _ => {
                self.wrong_type(key, v, "an integer");
                None
            }
        }
    }

    /// A TOML integer as i64; one that does not fit is reported at `loc` and refused.
    fn integer(&mut self, key: &'static str, text: &str, radix: u32, loc: &Loc) -> Option<i64> {
        match i64::from_str_radix(text, radix) {
            Ok(n) => Some(n),
            Err(_) => {
                self.sink
                    .refused(&self.path, &format!("{}{key}", self.key_prefix));
                self.sink.error(
                    loc,
                    format!(
                        "{}: {}{key} {text} is out of range",
                        self.path, self.key_prefix
                    ),
                );
                None
            }
        }
    }

    pub(crate) fn bool(&mut self, key: &'static str) -> Option<At<bool>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(At {
                value: *b,
                loc: self.loc(v.span().start),
            }),
            _ => {
                self.wrong_type(key, v, "true or false");
                None
            }
        }
    }

    pub(crate) fn scalar(&mut self, key: &'static str) -> Option<At<Scalar>> {
        let v = self.get(key)?;
        let loc = self.loc(v.span().start);
        match v.get_ref() {
            DeValue::String(s) => Some(At {
                value: Scalar::Str(s.to_string()),
                loc,
            }),
            DeValue::Integer(i) => self.integer(key, i.as_str(), i.radix(), &loc).map(|n| At {
                value: Scalar::Int(n),
                loc,
            }),
            _ => {
                self.wrong_type(key, v, "a number or a string");
                None
            }
        }
    }

    /// An array of strings; a single string is taken as a list of one.
    pub(crate) fn string_list(&mut self, key: &'static str) -> Option<At<Vec<At<String>>>> {
        let v = self.get(key)?;
        let loc = self.loc(v.span().start);
        match v.get_ref() {
            DeValue::String(s) => Some(At {
                value: vec![At {
                    value: s.to_string(),
                    loc: loc.clone(),
                }],
                loc,
            }),
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::String(s) => out.push(At {
                            value: s.to_string(),
                            loc: self.loc(item.span().start),
                        }),
                        _ => self.wrong_type(key, item, "an array of names (strings)"),
                    }
                }
                Some(At { value: out, loc })
            }
            _ => {
                self.wrong_type(key, v, "an array of names");
                None
            }
        }
    }

    /// An inline (or dotted) sub-table such as `inbound = { ... }`.
    pub(crate) fn sub_table<T>(
        &mut self,
        key: &'static str,
        read: fn(&mut Fields<'_, '_>) -> T,
    ) -> Option<At<T>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Table(t) => {
                let mut f = Fields {
                    src: self.src,
                    sink: self.sink,
                    path: self.path.clone(),
                    key_prefix: format!("{}{key}.", self.key_prefix),
                    table: t,
                    known: BTreeSet::new(),
                };
                Some(At {
                    value: read(&mut f),
                    loc: self.loc(v.span().start),
                })
            }
            _ => {
                self.wrong_type(key, v, "a table");
                None
            }
        }
    }

    /// `protected-network = [ { local = ..., remote = ... }, ... ]` (one table alone is accepted
    /// as a list of one).
    pub(crate) fn protected_networks(
        &mut self,
        key: &'static str,
    ) -> Option<At<Vec<RawProtectedNetwork>>> {
        let v = self.get(key)?;
        let loc = self.loc(v.span().start);
        let one = |f: &Self, item: &Spanned<DeValue<'_>>, t: &DeTable<'_>| {
            let mut sub = Fields {
                src: f.src,
                sink: f.sink,
                path: f.path.clone(),
                key_prefix: format!("{}{key}.", f.key_prefix),
                table: t,
                known: BTreeSet::new(),
            };
            let r = RawProtectedNetwork {
                loc: f.loc(item.span().start),
                local: sub.string("local"),
                remote: sub.string("remote"),
            };
            sub.finish();
            r
        };
        match v.get_ref() {
            DeValue::Table(t) => Some(At {
                value: vec![one(self, v, t)],
                loc,
            }),
            DeValue::Array(items) => {
                let items: &DeArray<'_> = items;
                let mut out = Vec::new();
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::Table(t) => out.push(one(self, item, t)),
                        _ => self.wrong_type(key, item, "an array of { local, remote } tables"),
                    }
                }
                Some(At { value: out, loc })
            }
            _ => {
                self.wrong_type(key, v, "an array of { local, remote } tables");
                None
            }
        }
    }

    /// Reports every key that no reader asked for.
    pub(crate) fn finish(&self) {
        for (key, _) in sorted(self.table) {
            let k = key.get_ref().as_ref();
            if !self.known.contains(k) {
                self.sink.error(
                    &self.loc(key.span().start),
                    format!(
                        "{}: unknown key `{}{k}`{}; expected one of: {}",
                        self.path,
                        self.key_prefix,
                        did_you_mean(k, self.known.iter().copied()),
                        self.known.iter().copied().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
    }
}

/// ` (did you mean `x`?)` when a known word is within two edits of `word`.
pub(crate) fn did_you_mean<'a>(word: &str, known: impl Iterator<Item = &'a str>) -> String {
    known
        .map(|k| (edit_distance(word, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        let known = ["esp-encryption", "esp-authentication", "mode"];
        assert_eq!(
            did_you_mean("esp-encrpytion", known.iter().copied()),
            " (did you mean `esp-encryption`?)"
        );
        assert_eq!(did_you_mean("lifetime", known.iter().copied()), "");
    }
}

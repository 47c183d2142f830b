//! The profiles as written: one spanned TOML document per file read into plain structs that keep
//! the place of every key and value. Only the shape is checked here (known keys, value types);
//! meaning is checked in `validate`.
//!
//! This is a hand-written reader over `toml::de::DeTable` rather than serde structs with
//! `deny_unknown_fields`: serde stops at the first unknown key or wrong type of a table, and
//! `ikehub check` must report every problem at once, each with its line and column.

use std::collections::BTreeSet;

use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::diagnostic::{Loc, Sink};
use super::span::SourceFile;

/// A value and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct At<T> {
    pub value: T,
    pub loc: Loc,
}

/// A named table (`[interface.wan]`): `loc` is where the name is written.
#[derive(Clone, Debug)]
pub(crate) struct Named<T> {
    pub name: String,
    pub loc: Loc,
    pub body: T,
}

impl<T> Named<T> {
    /// `kind.name`, the prefix of every message about this table.
    pub fn path(&self, kind: &str) -> String {
        format!("{kind}.{}", self.name)
    }
}

/// A string or an integer, for keys such as `dh-group = 14` / `pfs-group = "none"`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scalar {
    Str(String),
    Int(i64),
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RawSystem {
    pub control_socket: Option<At<String>>,
    pub shards: Option<At<i64>>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RawInterface {
    pub address: Option<At<String>>,
    pub device: Option<At<String>>,
    pub ike_port: Option<At<i64>>,
    pub nat_t_port: Option<At<i64>>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RawTunnelDevice {
    pub name: Option<At<String>>,
    pub mtu: Option<At<i64>>,
    pub source_address: Option<At<String>>,
    pub routes: Option<At<bool>>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RawIpsecTransform {
    pub esp_encryption: Option<At<String>>,
    pub esp_authentication: Option<At<String>>,
    pub ah_authentication: Option<At<String>>,
    pub mode: Option<At<String>>,
    pub lifetime_seconds: Option<At<i64>>,
    pub lifetime_kilobytes: Option<At<i64>>,
    pub replay_window: Option<At<i64>>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RawIsakmpTransform {
    pub encryption: Option<At<String>>,
    pub hash: Option<At<String>>,
    pub dh_group: Option<At<Scalar>>,
    pub lifetime_seconds: Option<At<i64>>,
}

#[derive(Clone, Debug)]
pub(crate) struct RawProtectedNetwork {
    pub loc: Loc,
    pub local: Option<At<String>>,
    pub remote: Option<At<String>>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RawManualKeys {
    pub esp_spi: Option<At<i64>>,
    pub esp_encryption_key: Option<At<String>>,
    pub esp_authentication_key: Option<At<String>>,
    pub ah_spi: Option<At<i64>>,
    pub ah_authentication_key: Option<At<String>>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RawManualPolicy {
    pub interface: Option<At<String>>,
    pub peer: Option<At<String>>,
    pub transform: Option<At<String>>,
    pub encapsulation: Option<At<String>>,
    pub protected_network: Option<At<Vec<RawProtectedNetwork>>>,
    pub inbound: Option<At<RawManualKeys>>,
    pub outbound: Option<At<RawManualKeys>>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RawDpd {
    pub interval_seconds: Option<At<i64>>,
    pub timeout_seconds: Option<At<i64>>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RawIsakmpPolicy {
    pub interface: Option<At<String>>,
    pub peer: Option<At<String>>,
    pub preshared_key: Option<At<String>>,
    pub preshared_key_file: Option<At<String>>,
    pub isakmp_transform: Option<At<Vec<At<String>>>>,
    pub ipsec_transform: Option<At<Vec<At<String>>>>,
    pub pfs_group: Option<At<Scalar>>,
    pub initiate: Option<At<String>>,
    pub nat_traversal: Option<At<bool>>,
    pub dpd: Option<At<RawDpd>>,
    pub protected_network: Option<At<Vec<RawProtectedNetwork>>>,
}

/// Everything one file defines, in the order written.
#[derive(Clone, Debug, Default)]
pub(crate) struct RawFile {
    pub system: Vec<Named<RawSystem>>,
    pub tunnel_device: Vec<Named<RawTunnelDevice>>,
    pub interfaces: Vec<Named<RawInterface>>,
    pub ipsec_transforms: Vec<Named<RawIpsecTransform>>,
    pub isakmp_transforms: Vec<Named<RawIsakmpTransform>>,
    pub manual_policies: Vec<Named<RawManualPolicy>>,
    pub isakmp_policies: Vec<Named<RawIsakmpPolicy>>,
}

pub(crate) const SYSTEM: &str = "system";
pub(crate) const TUNNEL_DEVICE: &str = "tunnel-device";
pub(crate) const INTERFACE: &str = "interface";
pub(crate) const IPSEC_TRANSFORM: &str = "ipsec-transform";
pub(crate) const ISAKMP_TRANSFORM: &str = "isakmp-transform";
pub(crate) const MANUAL_POLICY: &str = "ipsec-policy-manual";
pub(crate) const ISAKMP_POLICY: &str = "ipsec-policy-isakmp";

const TOP_LEVEL: [&str; 7] = [
    SYSTEM,
    TUNNEL_DEVICE,
    INTERFACE,
    IPSEC_TRANSFORM,
    ISAKMP_TRANSFORM,
    MANUAL_POLICY,
    ISAKMP_POLICY,
];

/// Reads one parsed file. Shape problems go to `sink`; what could be read is returned.
pub(crate) fn read_file(src: &SourceFile, doc: &DeTable<'_>, sink: &Sink) -> RawFile {
    let mut out = RawFile::default();
    for (key, value) in sorted(doc) {
        let loc = src.loc(key.span().start);
        let name = key.get_ref().as_ref();
        let cx = Cx { src, sink };
        match name {
            SYSTEM => {
                if let Some(t) = cx.table_of(name, value) {
                    let body = read_system(&mut cx.fields(name, t));
                    out.system.push(Named {
                        name: name.into(),
                        loc,
                        body,
                    });
                }
            }
            TUNNEL_DEVICE => {
                if let Some(t) = cx.table_of(name, value) {
                    let body = read_tunnel_device(&mut cx.fields(name, t));
                    out.tunnel_device.push(Named {
                        name: name.into(),
                        loc,
                        body,
                    });
                }
            }
            INTERFACE => cx.named(name, value, &mut out.interfaces, read_interface),
            IPSEC_TRANSFORM => {
                cx.named(name, value, &mut out.ipsec_transforms, read_ipsec_transform)
            }
            ISAKMP_TRANSFORM => cx.named(
                name,
                value,
                &mut out.isakmp_transforms,
                read_isakmp_transform,
            ),
            MANUAL_POLICY => cx.named(name, value, &mut out.manual_policies, read_manual_policy),
            ISAKMP_POLICY => cx.named(name, value, &mut out.isakmp_policies, read_isakmp_policy),
            other => sink.error(
                &loc,
                format!(
                    "unknown table `{other}`{}; expected one of: {}",
                    did_you_mean(other, TOP_LEVEL.iter().copied()),
                    TOP_LEVEL.join(", ")
                ),
            ),
        }
    }
    out
}

fn read_system(f: &mut Fields<'_, '_>) -> RawSystem {
    let r = RawSystem {
        control_socket: f.string("control-socket"),
        shards: f.int("shards"),
    };
    f.finish();
    r
}

fn read_interface(f: &mut Fields<'_, '_>) -> RawInterface {
    let r = RawInterface {
        address: f.string("address"),
        device: f.string("device"),
        ike_port: f.int("ike-port"),
        nat_t_port: f.int("nat-t-port"),
    };
    f.finish();
    r
}

fn read_tunnel_device(f: &mut Fields<'_, '_>) -> RawTunnelDevice {
    let r = RawTunnelDevice {
        name: f.string("name"),
        mtu: f.int("mtu"),
        source_address: f.string("source-address"),
        routes: f.bool("routes"),
    };
    f.finish();
    r
}

fn read_ipsec_transform(f: &mut Fields<'_, '_>) -> RawIpsecTransform {
    let r = RawIpsecTransform {
        esp_encryption: f.string("esp-encryption"),
        esp_authentication: f.string("esp-authentication"),
        ah_authentication: f.string("ah-authentication"),
        mode: f.string("mode"),
        lifetime_seconds: f.int("lifetime-seconds"),
        lifetime_kilobytes: f.int("lifetime-kilobytes"),
        replay_window: f.int("replay-window"),
    };
    f.finish();
    r
}

fn read_isakmp_transform(f: &mut Fields<'_, '_>) -> RawIsakmpTransform {
    let r = RawIsakmpTransform {
        encryption: f.string("encryption"),
        hash: f.string("hash"),
        dh_group: f.scalar("dh-group"),
        lifetime_seconds: f.int("lifetime-seconds"),
    };
    f.finish();
    r
}

fn read_manual_keys(f: &mut Fields<'_, '_>) -> RawManualKeys {
    let r = RawManualKeys {
        esp_spi: f.int("esp-spi"),
        esp_encryption_key: f.string("esp-encryption-key"),
        esp_authentication_key: f.string("esp-authentication-key"),
        ah_spi: f.int("ah-spi"),
        ah_authentication_key: f.string("ah-authentication-key"),
    };
    f.finish();
    r
}

fn read_manual_policy(f: &mut Fields<'_, '_>) -> RawManualPolicy {
    let r = RawManualPolicy {
        interface: f.string("interface"),
        peer: f.string("peer"),
        transform: f.string("transform"),
        encapsulation: f.string("encapsulation"),
        protected_network: f.protected_networks("protected-network"),
        inbound: f.sub_table("inbound", read_manual_keys),
        outbound: f.sub_table("outbound", read_manual_keys),
    };
    f.finish();
    r
}

fn read_dpd(f: &mut Fields<'_, '_>) -> RawDpd {
    let r = RawDpd {
        interval_seconds: f.int("interval-seconds"),
        timeout_seconds: f.int("timeout-seconds"),
    };
    f.finish();
    r
}

fn read_isakmp_policy(f: &mut Fields<'_, '_>) -> RawIsakmpPolicy {
    let r = RawIsakmpPolicy {
        interface: f.string("interface"),
        peer: f.string("peer"),
        preshared_key: f.string("preshared-key"),
        preshared_key_file: f.string("preshared-key-file"),
        isakmp_transform: f.string_list("isakmp-transform"),
        ipsec_transform: f.string_list("ipsec-transform"),
        pfs_group: f.scalar("pfs-group"),
        initiate: f.string("initiate"),
        nat_traversal: f.bool("nat-traversal"),
        dpd: f.sub_table("dpd", read_dpd),
        protected_network: f.protected_networks("protected-network"),
    };
    f.finish();
    r
}

/// Table entries in the order they were written (the map itself is sorted by key).
fn sorted<'a, 'i>(
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
struct Cx<'a> {
    src: &'a SourceFile,
    sink: &'a Sink,
}

impl<'a> Cx<'a> {
    fn table_of<'t, 'i>(&self, path: &str, v: &'t Spanned<DeValue<'i>>) -> Option<&'t DeTable<'i>> {
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

    fn fields<'t, 'i>(&self, path: &str, table: &'t DeTable<'i>) -> Fields<'t, 'i>
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
    fn named<T>(
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

    fn string(&mut self, key: &'static str) -> Option<At<String>> {
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

    fn int(&mut self, key: &'static str) -> Option<At<i64>> {
        let v = self.get(key)?;
        let loc = self.loc(v.span().start);
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(value) => Some(At { value, loc }),
                Err(_) => {
                    self.sink
                        .refused(&self.path, &format!("{}{key}", self.key_prefix));
                    self.sink.error(
                        &loc,
                        format!(
                            "{}: {}{key} {i} is out of range",
                            self.path, self.key_prefix
                        ),
                    );
                    None
                }
            },
            _ => {
                self.wrong_type(key, v, "an integer");
                None
            }
        }
    }

    fn bool(&mut self, key: &'static str) -> Option<At<bool>> {
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

    fn scalar(&mut self, key: &'static str) -> Option<At<Scalar>> {
        let v = self.get(key)?;
        let loc = self.loc(v.span().start);
        match v.get_ref() {
            DeValue::String(s) => Some(At {
                value: Scalar::Str(s.to_string()),
                loc,
            }),
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(At {
                    value: Scalar::Int(n),
                    loc,
                }),
                Err(_) => {
                    self.sink
                        .refused(&self.path, &format!("{}{key}", self.key_prefix));
                    self.sink.error(
                        &loc,
                        format!(
                            "{}: {}{key} {i} is out of range",
                            self.path, self.key_prefix
                        ),
                    );
                    None
                }
            },
            _ => {
                self.wrong_type(key, v, "a number or a string");
                None
            }
        }
    }

    /// An array of strings; a single string is taken as a list of one.
    fn string_list(&mut self, key: &'static str) -> Option<At<Vec<At<String>>>> {
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
    fn sub_table<T>(
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
    fn protected_networks(&mut self, key: &'static str) -> Option<At<Vec<RawProtectedNetwork>>> {
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
    fn finish(&self) {
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

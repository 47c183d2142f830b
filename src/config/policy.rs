//! The two policy kinds: `ipsec-policy-manual` (keys and SPIs written in the profile) and
//! `ipsec-policy-isakmp` (keyed by IKEv1 with a pre-shared key).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use super::check::Check;
use super::conflicts::{SelectorUse, SpiUse, Uses};
use super::defaults as def;
use super::diagnostic::{Loc, Sink};
use super::model::*;
use super::network::{NetworkSpec, ProtectedNetwork};
use super::raw::{self, At, Named, RawManualKeys, RawProtectedNetwork, did_you_mean};
use super::validate::profile_path;
use crate::crypto::{AuthAlgorithm, EncrAlgorithm};

/// The validated tables policies refer to by name, and the names that were defined at all (a
/// defined but invalid table is already reported; a reference to it is not reported again).
pub(crate) struct Names<'a> {
    pub interfaces: &'a BTreeMap<String, Interface>,
    pub ipsec_transforms: &'a BTreeMap<String, Arc<IpsecTransform>>,
    pub isakmp_transforms: &'a BTreeMap<String, Arc<IsakmpTransform>>,
    pub interface_defined: BTreeSet<&'a str>,
    pub ipsec_transform_defined: BTreeSet<&'a str>,
    pub isakmp_transform_defined: BTreeSet<&'a str>,
}

const ENCAPSULATIONS: [(&str, Encapsulation); 2] =
    [("esp", Encapsulation::Esp), ("udp", Encapsulation::Udp)];

const INITIATE: [(&str, Initiate); 3] = [
    ("on-demand", Initiate::OnDemand),
    ("permanent", Initiate::Permanent),
    ("never", Initiate::Never),
];

/// Looks `at` up among the validated tables of one kind.
fn resolve<'m, T>(
    c: &Check<'_>,
    key: &str,
    kind: &str,
    at: &At<String>,
    valid: &'m BTreeMap<String, T>,
    defined: &BTreeSet<&str>,
) -> Option<&'m T> {
    if let Some(t) = valid.get(&at.value) {
        return Some(t);
    }
    if !defined.contains(at.value.as_str()) {
        let known = if defined.is_empty() {
            format!("no {kind} is defined")
        } else {
            format!(
                "defined: {}",
                defined.iter().copied().collect::<Vec<_>>().join(", ")
            )
        };
        c.error(
            &at.loc,
            format_args!(
                "{key} `{}` does not name a [{kind}.NAME] table{} ({known})",
                at.value,
                did_you_mean(&at.value, defined.iter().copied())
            ),
        );
    }
    None
}

fn interface<'m>(
    c: &Check<'_>,
    raw: &Option<At<String>>,
    names: &'m Names<'_>,
) -> Option<&'m Interface> {
    c.required(raw, "interface").and_then(|at| {
        resolve(
            c,
            "interface",
            raw::INTERFACE,
            at,
            names.interfaces,
            &names.interface_defined,
        )
    })
}

/// A peer or endpoint address: unicast, same family as the interface, not the interface itself.
fn peer_address(c: &Check<'_>, at: &At<String>, a: IpAddr, iface: Option<&Interface>) -> bool {
    if a.is_unspecified() || a.is_multicast() || a == IpAddr::from([255, 255, 255, 255]) {
        c.error(&at.loc, format_args!("peer {a} is not a unicast address"));
        return false;
    }
    if let Some(i) = iface {
        if i.address == a {
            c.error(
                &at.loc,
                format_args!("peer {a} is the address of interface {} itself", i.name),
            );
            return false;
        }
        if i.address.is_ipv4() != a.is_ipv4() {
            c.error(
                &at.loc,
                format_args!(
                    "peer {a} and interface {} ({}) are of different IP versions",
                    i.name, i.address
                ),
            );
            return false;
        }
    }
    true
}

fn protected_networks(
    c: &Check<'_>,
    raw: &Option<At<Vec<RawProtectedNetwork>>>,
) -> Option<Vec<(ProtectedNetwork, Loc)>> {
    let at = c.required(raw, "protected-network")?;
    if at.value.is_empty() {
        c.error(
            &at.loc,
            "protected-network is empty: list at least one { local = ..., remote = ... }",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for pn in &at.value {
        let side = |key: &str, v: &Option<At<String>>| -> Option<NetworkSpec> {
            let Some(v) = v else {
                if c.sink
                    .was_refused(&c.path, &format!("protected-network.{key}"))
                {
                    return None;
                }
                c.error(
                    &pn.loc,
                    format_args!(
                        "protected-network entry has no `{key}` (write {{ local = ..., remote = ... }})"
                    ),
                );
                return None;
            };
            match v.value.parse::<NetworkSpec>() {
                Ok(s) => Some(s),
                Err(e) => {
                    c.error(&v.loc, format_args!("protected-network.{key}: {e}"));
                    None
                }
            }
        };
        let (local, remote) = (side("local", &pn.local), side("remote", &pn.remote));
        match (local, remote) {
            (Some(local), Some(remote)) => {
                out.push((ProtectedNetwork { local, remote }, pn.loc.clone()))
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn hex_key(s: &str) -> Result<Vec<u8>, String> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if let Some((i, ch)) = digits
        .char_indices()
        .find(|(_, ch)| !ch.is_ascii_hexdigit())
    {
        return Err(format!(
            "is not hexadecimal (`{ch}` at character {})",
            i + 1 + (s.len() - digits.len())
        ));
    }
    if digits.is_empty() {
        return Err("is empty".into());
    }
    if digits.len() % 2 == 1 {
        return Err(format!(
            "has an odd number of hex digits ({}); write two digits per byte",
            digits.len()
        ));
    }
    Ok((0..digits.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
        .collect())
}

/// Whether the transform needs a key or SPI; `Unknown` when the transform did not resolve (the
/// value is then only checked for itself: hex, SPI range).
#[derive(Clone, Copy)]
enum Need<T> {
    Yes(T),
    No,
    Unknown,
}

impl<T> Need<T> {
    fn of(
        transform: Option<&IpsecTransform>,
        f: impl FnOnce(&IpsecTransform) -> Option<T>,
    ) -> Self {
        match transform {
            None => Self::Unknown,
            Some(t) => f(t).map_or(Self::No, Self::Yes),
        }
    }
}

/// Checks of one direction (`inbound` / `outbound`) of a manual policy against its transform.
struct Direction<'c, 'a> {
    c: &'c Check<'a>,
    dir: &'static str,
    table: &'c At<RawManualKeys>,
    transform: Option<&'c IpsecTransform>,
}

impl Direction<'_, '_> {
    fn transform_name(&self) -> &str {
        self.transform.map_or("?", |t| t.name.as_str())
    }

    fn missing(&self, key: &str, why: std::fmt::Arguments<'_>) {
        // A value refused for its type was reported already.
        if !self
            .c
            .sink
            .was_refused(&self.c.path, &format!("{}.{key}", self.dir))
        {
            self.c.error(
                &self.table.loc,
                format_args!("missing {}.{key}: {why}", self.dir),
            );
        }
    }

    /// A key the transform needs (`Yes(algorithm name, length)`) or must not have (`No`).
    fn key(
        &self,
        key: &str,
        raw: &Option<At<String>>,
        need: Need<(&str, usize)>,
        unused: &str,
    ) -> Option<Option<KeyBytes>> {
        let t = self.transform_name();
        let dir = self.dir;
        match (raw, need) {
            (None, Need::No) => Some(None),
            (None, Need::Unknown) => None,
            (Some(at), Need::No) => {
                self.c.error(
                    &at.loc,
                    format_args!("{dir}.{key} is set but transform {t} {unused}; remove it"),
                );
                None
            }
            (None, Need::Yes((alg, len))) => {
                self.missing(
                    key,
                    format_args!("transform {t} uses {alg}, which needs a {len}-byte key"),
                );
                None
            }
            (Some(at), need) => match (hex_key(at.value.trim()), need) {
                (Err(why), _) => {
                    self.c.error(&at.loc, format_args!("{dir}.{key} {why}"));
                    None
                }
                (Ok(bytes), Need::Yes((alg, len))) if bytes.len() != len => {
                    self.c.error(
                        &at.loc,
                        format_args!("{dir}.{key} is {} bytes, {alg} needs {len}", bytes.len()),
                    );
                    None
                }
                (Ok(bytes), _) => Some(Some(KeyBytes(bytes))),
            },
        }
    }

    fn spi(&self, key: &str, raw: &Option<At<i64>>, proto: Need<&str>) -> Option<Option<u32>> {
        let t = self.transform_name();
        let dir = self.dir;
        let at = match (raw, proto) {
            (None, Need::No) => return Some(None),
            (None, Need::Unknown) => return None,
            (Some(at), Need::No) => {
                let other = if key.starts_with("esp") { "ESP" } else { "AH" };
                self.c.error(
                    &at.loc,
                    format_args!("{dir}.{key} is set but transform {t} uses no {other}; remove it"),
                );
                return None;
            }
            (None, Need::Yes(proto)) => {
                self.missing(key, format_args!("transform {t} uses {proto}"));
                return None;
            }
            (Some(at), _) => at,
        };
        match at.value {
            0 => {
                self.c.error(
                    &at.loc,
                    format_args!(
                        "{dir}.{key} 0 is not a valid SPI (RFC 4303 §2.1 reserves 0 for local use)"
                    ),
                );
                None
            }
            1..=255 => {
                self.c.error(
                    &at.loc,
                    format_args!(
                        "{dir}.{key} {} is reserved: SPIs 1..=255 are reserved by IANA (RFC 4303 §2.1); use 256..=4294967295",
                        at.value
                    ),
                );
                None
            }
            v if v > i64::from(u32::MAX) || v < 0 => {
                self.c.error(
                    &at.loc,
                    format_args!("{dir}.{key} {v} is out of range: SPIs are 256..=4294967295"),
                );
                None
            }
            v => Some(Some(v as u32)),
        }
    }

    fn keys(&self) -> Option<ManualKeys> {
        let r = &self.table.value;
        let t = self.transform;
        let esp = Need::of(t, |t| t.esp);
        let enc = Need::of(t, |t| {
            t.esp
                .map(|e| e.encryption)
                .filter(|e| *e != EncrAlgorithm::Null)
                .map(|e| (e.name(), e.key_len()))
        });
        let auth = Need::of(t, |t| {
            t.esp
                .map(|e| e.authentication)
                .filter(|a| *a != AuthAlgorithm::None)
                .map(|a| (a.name(), a.key_len()))
        });
        let ah = Need::of(t, |t| t.ah.map(|a| (a.name(), a.key_len())));
        let esp_spi = self.spi(
            "esp-spi",
            &r.esp_spi,
            match esp {
                Need::Yes(_) => Need::Yes("ESP"),
                Need::No => Need::No,
                Need::Unknown => Need::Unknown,
            },
        );
        let esp_encryption_key = self.key(
            "esp-encryption-key",
            &r.esp_encryption_key,
            enc,
            "uses no ESP encryption",
        );
        let esp_authentication_key = self.key(
            "esp-authentication-key",
            &r.esp_authentication_key,
            auth,
            "uses no ESP authentication",
        );
        let ah_spi = self.spi(
            "ah-spi",
            &r.ah_spi,
            match ah {
                Need::Yes(_) => Need::Yes("AH"),
                Need::No => Need::No,
                Need::Unknown => Need::Unknown,
            },
        );
        let ah_authentication_key = self.key(
            "ah-authentication-key",
            &r.ah_authentication_key,
            ah,
            "uses no AH",
        );
        Some(ManualKeys {
            esp_spi: esp_spi?,
            esp_encryption_key: esp_encryption_key?,
            esp_authentication_key: esp_authentication_key?,
            ah_spi: ah_spi?,
            ah_authentication_key: ah_authentication_key?,
        })
    }

    fn record(&self, policy: &str, iface: &Interface, peer: IpAddr, uses: &mut Uses) {
        let r = &self.table.value;
        for (key, proto, raw) in [("esp-spi", "ESP", &r.esp_spi), ("ah-spi", "AH", &r.ah_spi)] {
            if let Some(at) = raw
                && let Ok(spi) = u32::try_from(at.value)
            {
                uses.spis.push(SpiUse {
                    policy: policy.to_string(),
                    key: format!("{}.{key}", self.dir),
                    interface: iface.name.clone(),
                    peer,
                    inbound: self.dir == "inbound",
                    proto,
                    spi,
                    loc: at.loc.clone(),
                });
            }
        }
    }
}

pub(crate) fn manual(
    n: &Named<raw::RawManualPolicy>,
    names: &Names<'_>,
    uses: &mut Uses,
    sink: &Sink,
) -> Option<ManualPolicy> {
    let path = n.path(raw::MANUAL_POLICY);
    let c = Check::new(sink, path.clone(), &n.loc);
    let b = &n.body;
    let iface = interface(&c, &b.interface, names);
    let peer = c
        .required(&b.peer, "peer")
        .and_then(|at| match at.value.trim().parse::<IpAddr>() {
            Ok(a) => peer_address(&c, at, a, iface).then_some(a),
            Err(_) => {
                c.error(
                    &at.loc,
                    format_args!(
                        "peer `{}` is not an IP address (a manual policy has exactly one peer)",
                        at.value
                    ),
                );
                None
            }
        });
    let transform = c.required(&b.transform, "transform").and_then(|at| {
        resolve(
            &c,
            "transform",
            raw::IPSEC_TRANSFORM,
            at,
            names.ipsec_transforms,
            &names.ipsec_transform_defined,
        )
    });
    let encapsulation = match &b.encapsulation {
        None => Some(Encapsulation::Esp),
        Some(at) => c.word("encapsulation", at, &ENCAPSULATIONS),
    };
    if let (Some(Encapsulation::Udp), Some(t), Some(at)) =
        (encapsulation, transform, &b.encapsulation)
        && t.ah.is_some()
    {
        c.error(
            &at.loc,
            format_args!(
                "encapsulation = \"udp\" cannot carry AH: RFC 3948 encapsulates ESP only, and transform {} uses AH; \
                 use encapsulation = \"esp\" or an ESP-only transform",
                t.name
            ),
        );
    }
    let networks = protected_networks(&c, &b.protected_network);
    if let (Some(t), Some(i), Some(p), Some(nets)) = (transform, iface, peer, &networks)
        && t.mode == Mode::Transport
        && let (IpAddr::V4(local), IpAddr::V4(remote)) = (i.address, p)
    {
        for (pn, loc) in nets {
            let only = |s: &NetworkSpec, a| s.first() == a && s.last() == a;
            if !only(&pn.local, local) || !only(&pn.remote, remote) {
                c.error(
                    loc,
                    format_args!(
                        "transform {} uses transport mode, which protects only the endpoints' own traffic: \
                         protected-network must be {{ local = \"{local}\", remote = \"{remote}\" }}, not {} <-> {}",
                        t.name, pn.local, pn.remote
                    ),
                );
            }
        }
    }
    let mut dirs = Vec::new();
    for (dir, raw) in [("inbound", &b.inbound), ("outbound", &b.outbound)] {
        let Some(table) = c.required(raw, dir) else {
            dirs.push(None);
            continue;
        };
        let d = Direction {
            c: &c,
            dir,
            table,
            transform: transform.map(|t| &**t),
        };
        if let (Some(i), Some(p)) = (iface, peer) {
            d.record(&path, i, p, uses);
        }
        dirs.push(d.keys());
    }
    if let Some(nets) = &networks {
        for (pn, loc) in nets {
            uses.selectors.push(SelectorUse {
                policy: path.clone(),
                network: *pn,
                loc: loc.clone(),
                template: None,
            });
        }
    }
    let outbound = dirs.pop().flatten();
    let inbound = dirs.pop().flatten();
    Some(ManualPolicy {
        name: n.name.clone(),
        interface: iface?.name.clone(),
        peer: peer?,
        transform: transform?.clone(),
        encapsulation: encapsulation?,
        protected_networks: networks?.into_iter().map(|(pn, _)| pn).collect(),
        inbound: inbound?,
        outbound: outbound?,
    })
}

fn peer_spec(c: &Check<'_>, at: &At<String>, iface: Option<&Interface>) -> Option<PeerSpec> {
    let v = at.value.trim();
    if v == "any" {
        return Some(PeerSpec::Any);
    }
    if let Ok(a) = v.parse::<IpAddr>() {
        return peer_address(c, at, a, iface).then_some(PeerSpec::Address(a));
    }
    match v.parse::<NetworkSpec>() {
        Ok(s) if s == NetworkSpec::ANY => Some(PeerSpec::Any),
        Ok(s) => Some(PeerSpec::Block(s)),
        Err(_) => {
            c.error(
                &at.loc,
                format_args!(
                    "peer `{}` is not an address, a CIDR block (a.b.c.d/len), a range or \"any\"",
                    at.value
                ),
            );
            None
        }
    }
}

fn preshared_key(c: &Check<'_>, b: &raw::RawIsakmpPolicy) -> Option<KeyBytes> {
    match (&b.preshared_key, &b.preshared_key_file) {
        (Some(_), Some(file)) => {
            c.error(
                &file.loc,
                "set exactly one of preshared-key and preshared-key-file, not both",
            );
            None
        }
        (None, None) => {
            if c.sink.was_refused(&c.path, "preshared-key")
                || c.sink.was_refused(&c.path, "preshared-key-file")
            {
                return None;
            }
            c.error(
                &c.loc,
                "missing key `preshared-key` (or `preshared-key-file`): exactly one of the two is needed",
            );
            None
        }
        (Some(at), None) => {
            if at.value.is_empty() {
                c.error(&at.loc, "preshared-key is empty");
                None
            } else {
                Some(KeyBytes(at.value.as_bytes().to_vec()))
            }
        }
        (None, Some(at)) => {
            let path = profile_path(at);
            match std::fs::read(&path) {
                Err(e) => {
                    c.error(
                        &at.loc,
                        format_args!("preshared-key-file {}: cannot read: {e}", path.display()),
                    );
                    None
                }
                Ok(mut bytes) => {
                    // The secret is the file's content without its final line break.
                    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        bytes.pop();
                    }
                    if bytes.is_empty() {
                        c.error(
                            &at.loc,
                            format_args!("preshared-key-file {} is empty", path.display()),
                        );
                        None
                    } else {
                        Some(KeyBytes(bytes))
                    }
                }
            }
        }
    }
}

fn transform_list<T>(
    c: &Check<'_>,
    key: &str,
    kind: &str,
    raw: &Option<At<Vec<At<String>>>>,
    valid: &BTreeMap<String, Arc<T>>,
    defined: &BTreeSet<&str>,
) -> Option<Vec<Arc<T>>> {
    let at = c.required(raw, key)?;
    if at.value.is_empty() {
        c.error(
            &at.loc,
            format_args!("{key} is empty: name at least one {kind}"),
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    let mut seen = BTreeSet::new();
    for name in &at.value {
        if !seen.insert(name.value.as_str()) {
            c.error(
                &name.loc,
                format_args!("{key} lists `{}` twice", name.value),
            );
            ok = false;
            continue;
        }
        match resolve(c, key, kind, name, valid, defined) {
            Some(t) => out.push(t.clone()),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

pub(crate) fn isakmp(
    n: &Named<raw::RawIsakmpPolicy>,
    names: &Names<'_>,
    uses: &mut Uses,
    sink: &Sink,
) -> Option<IsakmpPolicy> {
    let path = n.path(raw::ISAKMP_POLICY);
    let c = Check::new(sink, path.clone(), &n.loc);
    let b = &n.body;
    let iface = interface(&c, &b.interface, names);
    let peer = c
        .required(&b.peer, "peer")
        .and_then(|at| peer_spec(&c, at, iface));
    let preshared_key = preshared_key(&c, b);
    let isakmp_transforms = transform_list(
        &c,
        "isakmp-transform",
        raw::ISAKMP_TRANSFORM,
        &b.isakmp_transform,
        names.isakmp_transforms,
        &names.isakmp_transform_defined,
    );
    let ipsec_transforms = transform_list(
        &c,
        "ipsec-transform",
        raw::IPSEC_TRANSFORM,
        &b.ipsec_transform,
        names.ipsec_transforms,
        &names.ipsec_transform_defined,
    );
    let pfs_group = match &b.pfs_group {
        None => Some(None),
        Some(at) => c.group("pfs-group", at, &def::DH_GROUPS, true),
    };
    if let (Some(Some(1)), Some(at)) = (pfs_group, &b.pfs_group) {
        c.warning(
            &at.loc,
            "pfs-group 1 (768-bit MODP) is weak; use group 14 or higher",
        );
    }
    let initiate = match &b.initiate {
        None => Some(Initiate::OnDemand),
        Some(at) => c.word("initiate", at, &INITIATE),
    };
    if let (Some(Initiate::Permanent), Some(PeerSpec::Block(_) | PeerSpec::Any), Some(at)) =
        (initiate, peer, &b.initiate)
    {
        c.error(
            &at.loc,
            "initiate = \"permanent\" needs one peer address: this policy's peer is a template \
             (a block or \"any\"), whose spokes must initiate",
        );
    }
    let nat_traversal = b
        .nat_traversal
        .as_ref()
        .map_or(def::NAT_TRAVERSAL, |a| a.value);
    if nat_traversal
        && let Some(ts) = &ipsec_transforms
        && let Some(t) = ts.iter().find(|t| t.ah.is_some())
    {
        let loc = b.ipsec_transform.as_ref().map_or(&n.loc, |a| &a.loc);
        c.warning(
            loc,
            format_args!(
                "ipsec-transform {} uses AH, which cannot pass a NAT (RFC 3948 carries ESP only): \
                 with a NAT between the peers it will not be chosen",
                t.name
            ),
        );
    }
    let dpd = match &b.dpd {
        None => Some(None),
        Some(at) => {
            let d = &at.value;
            let secs = |key: &str, v: &Option<At<i64>>, default: u64| match v {
                None => Some(default),
                Some(v) => c
                    .range(
                        &format!("dpd.{key}"),
                        v,
                        1,
                        i64::from(u32::MAX),
                        "at least 1 second",
                    )
                    .map(|s| s as u64),
            };
            let interval = secs(
                "interval-seconds",
                &d.interval_seconds,
                def::DPD_INTERVAL_SECONDS,
            );
            let timeout = secs(
                "timeout-seconds",
                &d.timeout_seconds,
                def::DPD_TIMEOUT_SECONDS,
            );
            match (interval, timeout) {
                (Some(i), Some(t)) if t < i => {
                    let loc = d.timeout_seconds.as_ref().map_or(&at.loc, |a| &a.loc);
                    c.error(
                        loc,
                        format_args!(
                            "dpd.timeout-seconds {t} is shorter than dpd.interval-seconds {i}: \
                             the peer would be declared dead before it is asked"
                        ),
                    );
                    None
                }
                (Some(interval_seconds), Some(timeout_seconds)) => Some(Some(Dpd {
                    interval_seconds,
                    timeout_seconds,
                })),
                _ => None,
            }
        }
    };
    let networks = protected_networks(&c, &b.protected_network);
    if let (Some(nets), Some(peer)) = (&networks, peer) {
        let template = (!matches!(peer, PeerSpec::Address(_))).then_some(peer);
        for (pn, loc) in nets {
            uses.selectors.push(SelectorUse {
                policy: path.clone(),
                network: *pn,
                loc: loc.clone(),
                template,
            });
        }
    }
    Some(IsakmpPolicy {
        name: n.name.clone(),
        interface: iface?.name.clone(),
        peer: peer?,
        preshared_key: preshared_key?,
        isakmp_transforms: isakmp_transforms?,
        ipsec_transforms: ipsec_transforms?,
        pfs_group: pfs_group?,
        initiate: initiate?,
        nat_traversal,
        dpd: dpd?,
        protected_networks: networks?.into_iter().map(|(pn, _)| pn).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::hex_key;

    #[test]
    fn hex_keys_with_and_without_prefix() {
        assert_eq!(hex_key("0x0a0B").unwrap(), vec![0x0a, 0x0b]);
        assert_eq!(hex_key("0a0b").unwrap(), vec![0x0a, 0x0b]);
        assert!(hex_key("0x0g").unwrap_err().contains("`g` at character 4"));
        assert!(hex_key("abc").unwrap_err().contains("odd"));
        assert!(hex_key("0x").unwrap_err().contains("empty"));
    }
}

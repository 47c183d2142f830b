//! `ipsec-policy-isakmp`: keyed by IKEv1 with a pre-shared key; the peer is one address or a
//! template (a block of spokes or `any`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use super::check::Check;
use super::conflicts::{SelectorUse, Uses};
use super::defaults as def;
use super::diagnostic::Sink;
use super::identity::{LocalId, RemoteId};
use super::model::*;
use super::network::{Family, NetworkSpec};
use super::policy::{INITIATE, Names, interface, peer_address, protected_networks, resolve};
use super::raw::{self, At, Named};
use super::validate::profile_path;

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
        Ok(s) => match iface {
            // Spokes reach the interface address, so they are of its family.
            Some(i) if Family::of(i.address) != s.family() => {
                c.error(
                    &at.loc,
                    format_args!(
                        "peer {s} and interface {} ({}) are of different IP versions",
                        i.name, i.address
                    ),
                );
                None
            }
            _ => Some(PeerSpec::Block(s)),
        },
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
    // Phase-1 identities (docs/profiles.md); both default to the address.
    let local_id = b.local_id.as_ref().map_or(Some(LocalId::Address), |at| {
        at.value
            .parse()
            .map_err(|why| c.error(&at.loc, format_args!("local-id {why}")))
            .ok()
    });
    let remote_id = b.remote_id.as_ref().map_or(Some(RemoteId::Address), |at| {
        at.value
            .parse()
            .map_err(|why| c.error(&at.loc, format_args!("remote-id {why}")))
            .ok()
    });
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
        local_id: local_id?,
        remote_id: remote_id?,
    })
}

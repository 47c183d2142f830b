//! What both policy kinds share: name resolution, peer addresses, protected networks. The kinds
//! themselves are in `manual` (keys and SPIs written in the profile) and `isakmp` (keyed by
//! IKEv1 with a pre-shared key).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use super::check::Check;
use super::diagnostic::Loc;
use super::model::*;
use super::network::{NetworkSpec, ProtectedNetwork};
use super::raw::{self, At, RawProtectedNetwork, did_you_mean};

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

pub(crate) const ENCAPSULATIONS: [(&str, Encapsulation); 2] =
    [("esp", Encapsulation::Esp), ("udp", Encapsulation::Udp)];

pub(crate) const INITIATE: [(&str, Initiate); 3] = [
    ("on-demand", Initiate::OnDemand),
    ("permanent", Initiate::Permanent),
    ("never", Initiate::Never),
];

/// Looks `at` up among the validated tables of one kind.
pub(crate) fn resolve<'m, T>(
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

pub(crate) fn interface<'m>(
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
pub(crate) fn peer_address(
    c: &Check<'_>,
    at: &At<String>,
    a: IpAddr,
    iface: Option<&Interface>,
) -> bool {
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

pub(crate) fn protected_networks(
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
        // (spec, written as "any")
        let side = |key: &str, v: &Option<At<String>>| -> Option<(NetworkSpec, bool)> {
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
                Ok(s) => Some((s, v.value.trim() == "any")),
                Err(e) => {
                    c.error(&v.loc, format_args!("protected-network.{key}: {e}"));
                    None
                }
            }
        };
        let (local, remote) = (side("local", &pn.local), side("remote", &pn.remote));
        let (Some((local, local_any)), Some((remote, remote_any))) = (local, remote) else {
            ok = false;
            continue;
        };
        // "any" takes the family of the other side (docs/profiles.md): `::/0` opposite an
        // IPv6 network, `0.0.0.0/0` otherwise (also for any <-> any).
        let local = if local_any {
            NetworkSpec::any(remote.family())
        } else {
            local
        };
        let remote = if remote_any {
            NetworkSpec::any(local.family())
        } else {
            remote
        };
        // A packet's two addresses are of one version, so a pair of two families would match
        // nothing. Tunnel mode carries either family in either outer family; the pairs of one
        // policy may be of both.
        if local.family() != remote.family() {
            c.error(
                &pn.loc,
                format_args!(
                    "protected-network: local {local} is {}, remote {remote} is {}: a protected \
                     network carries one family",
                    local.family(),
                    remote.family()
                ),
            );
            ok = false;
            continue;
        }
        out.push((ProtectedNetwork { local, remote }, pn.loc.clone()));
    }
    ok.then_some(out)
}

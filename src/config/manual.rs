//! `ipsec-policy-manual`: one peer address, one transform, keys and SPIs written in the profile.

use std::net::IpAddr;

use super::check::Check;
use super::conflicts::{SelectorUse, Uses};
use super::diagnostic::Sink;
use super::keys::Direction;
use super::model::*;
use super::network::NetworkSpec;
use super::policy::{ENCAPSULATIONS, Names, interface, peer_address, protected_networks, resolve};
use super::raw::{self, Named};

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
    {
        // Either family: the endpoints' own packets are of the peer's family, so this also
        // refuses a network of the other family.
        let (local, remote) = (i.address, p);
        for (pn, loc) in nets {
            let only = |s: &NetworkSpec, a: IpAddr| s.first() == a && s.last() == a;
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

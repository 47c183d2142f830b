//! Identities: phase-1 ID_IPV4_ADDR of the endpoint, quick-mode IDci/IDcr from the protected
//! networks (RFC 2407 §4.6.2: host, subnet, range) and the responder's check of what the
//! initiator proposed.

use std::net::{IpAddr, Ipv6Addr};

use crate::config::network::ordinal;
use crate::config::{Family, LocalId, NetworkSpec, ProtectedNetwork, RemoteId};
use crate::wire::isakmp::{IdValue, Identification};

/// Phase-1 identity: the endpoint address, protocol and port zero (RFC 2407 §4.6.2 allows 0 or
/// UDP/500; 0 is what strongSwan sends).
pub(crate) fn endpoint_id(addr: IpAddr) -> Identification {
    match addr {
        IpAddr::V4(a) => Identification::new(IdValue::Ipv4Addr(a)),
        IpAddr::V6(a) => Identification::new(IdValue::Ipv6Addr(a)),
    }
}

/// Quick-mode identity of one side of a protected network, of the network's family
/// (RFC 2407 §4.6.2.1: ID_IPV4_ADDR / ID_IPV6_ADDR, ..._SUBNET, ..._RANGE).
pub(crate) fn network_id(n: &NetworkSpec) -> Identification {
    match *n {
        NetworkSpec::Host(a) => endpoint_id(a),
        NetworkSpec::Subnet { prefix, .. } => match n.first() {
            IpAddr::V4(a) => Identification::ipv4_subnet(a, prefix),
            IpAddr::V6(a) => Identification::new(IdValue::Ipv6Subnet {
                addr: a,
                mask: Ipv6Addr::from(Family::V6.mask(prefix)),
            }),
        },
        NetworkSpec::Range { .. } => match (n.first(), n.last()) {
            (IpAddr::V4(start), IpAddr::V4(end)) => {
                Identification::new(IdValue::Ipv4Range { start, end })
            }
            (IpAddr::V6(start), IpAddr::V6(end)) => {
                Identification::new(IdValue::Ipv6Range { start, end })
            }
            // first() and last() are of the spec's one family.
            (a, _) => endpoint_id(a),
        },
    }
}

/// The network a quick-mode identity names; `Err` says why it cannot be a selector of ours.
/// Subnets must have a contiguous mask and ranges must not be reversed, in both families.
pub(crate) fn id_network(id: &Identification) -> Result<NetworkSpec, String> {
    if id.protocol_id.0 != 0 || id.port != 0 {
        return Err(format!(
            "identity restricted to protocol {} port {} (only whole networks are supported)",
            id.protocol_id.0, id.port
        ));
    }
    let subnet = |v: &IdValue, addr: IpAddr| match v.prefix_len() {
        Some(prefix) => Ok(NetworkSpec::Subnet { addr, prefix }),
        None => Err(format!("subnet {addr} with a non-contiguous mask")),
    };
    let range = |start: IpAddr, end: IpAddr| {
        if ordinal(start) <= ordinal(end) {
            Ok(NetworkSpec::Range { start, end })
        } else {
            Err(format!("range {start}-{end} is reversed"))
        }
    };
    match id.value() {
        Ok(IdValue::Ipv4Addr(a)) => Ok(NetworkSpec::Host(a.into())),
        Ok(IdValue::Ipv6Addr(a)) => Ok(NetworkSpec::Host(a.into())),
        Ok(v @ IdValue::Ipv4Subnet { addr, .. }) => subnet(&v, addr.into()),
        Ok(v @ IdValue::Ipv6Subnet { addr, .. }) => subnet(&v, addr.into()),
        Ok(IdValue::Ipv4Range { start, end }) => range(start.into(), end.into()),
        Ok(IdValue::Ipv6Range { start, end }) => range(start.into(), end.into()),
        Ok(other) => Err(format!("identity of type {}", other.id_type())),
        Err(e) => Err(format!("malformed identity: {e}")),
    }
}

/// Host identity of an endpoint, used when quick mode carries no IDs (RFC 2409 §5.5: the
/// ISAKMP endpoints are then the identities), of either family.
pub(crate) fn host(addr: IpAddr) -> NetworkSpec {
    NetworkSpec::Host(addr.to_canonical())
}

/// Responder check: the initiator's IDci (its local side = our remote) and IDcr (our local
/// side) must lie inside one of our protected-network pairs. A narrower proposal is accepted
/// and becomes the SA's selector; a wider one is refused.
pub(crate) fn match_proposed(
    policy: &[ProtectedNetwork],
    proposed: ProtectedNetwork,
) -> Option<ProtectedNetwork> {
    policy
        .iter()
        .find(|p| p.remote.covers(&proposed.remote) && p.local.covers(&proposed.local))
        .map(|_| proposed)
}

pub(crate) fn describe(nets: &[ProtectedNetwork]) -> String {
    if nets.is_empty() {
        return "nothing".into();
    }
    nets.iter()
        .map(|p| format!("{} <-> {}", p.local, p.remote))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---- phase 1 (main mode messages 5 and 6) ----------------------------------------------------

/// The phase-1 identity we send (`local-id`): the interface address, or a name. Protocol and
/// port zero (RFC 2407 §4.6.2 allows 0 or UDP/500; 0 is what strongSwan sends).
pub(crate) fn local_phase1_id(id: &LocalId, addr: IpAddr) -> Identification {
    match id {
        LocalId::Address => endpoint_id(addr),
        LocalId::Fqdn(n) => Identification::new(IdValue::Fqdn(n.as_bytes())),
        LocalId::UserFqdn(n) => Identification::new(IdValue::UserFqdn(n.as_bytes())),
        LocalId::KeyId(n) => Identification::new(IdValue::KeyId(n.as_bytes())),
    }
}

/// Longest part of a peer's name we print: it is hostile input, and it ends up in log lines,
/// `show` output and events.
const SHOWN_ID_BYTES: usize = 64;

fn shown(b: &[u8]) -> String {
    let head = &b[..b.len().min(SHOWN_ID_BYTES)];
    let mut s = if head.iter().all(|c| c.is_ascii_graphic()) {
        String::from_utf8_lossy(head).into_owned()
    } else {
        let hex: String = head.iter().map(|x| format!("{x:02x}")).collect();
        format!("0x{hex}")
    };
    if b.len() > head.len() {
        s.push_str(&format!("...({} bytes)", b.len()));
    }
    s
}

/// A phase-1 identity as an operator reads it: "address:192.0.2.7", "fqdn:spoke1.example.net",
/// "user-fqdn:vpn@example.net", "keyid:branch-7"; bounded in length.
pub fn describe_phase1_id(id: &Identification) -> String {
    match id.value() {
        Ok(IdValue::Ipv4Addr(a)) => format!("address:{a}"),
        Ok(IdValue::Ipv6Addr(a)) => format!("address:{a}"),
        Ok(IdValue::Fqdn(n)) => format!("fqdn:{}", shown(n)),
        Ok(IdValue::UserFqdn(n)) => format!("user-fqdn:{}", shown(n)),
        Ok(IdValue::KeyId(n)) => format!("keyid:{}", shown(n)),
        Ok(other) => format!("{}:{}", other.id_type(), shown(&id.data)),
        Err(_) => format!("{}:{}", id.id_type, shown(&id.data)),
    }
}

/// Whether the peer's phase-1 ID (authenticated by HASH_I/HASH_R) is one `remote-id` accepts.
/// `peer`: the address its messages come from; `peer_behind_nat`: NAT-D found a NAT in front of
/// it (RFC 3947 §3.2), so an address ID then names its private address and cannot be compared.
/// `Err` is the reason for INVALID-ID-INFORMATION.
pub(crate) fn check_phase1_id(
    policy: &str,
    accepted: &RemoteId,
    id: &Identification,
    peer: IpAddr,
    peer_behind_nat: bool,
) -> Result<(), String> {
    let ok = match (accepted, id.value()) {
        (RemoteId::Any, _) => true,
        (RemoteId::Address, Ok(IdValue::Ipv4Addr(a))) => {
            peer_behind_nat || IpAddr::V4(a) == peer.to_canonical()
        }
        (RemoteId::Address, Ok(IdValue::Ipv6Addr(a))) => {
            peer_behind_nat || IpAddr::V6(a).to_canonical() == peer.to_canonical()
        }
        (RemoteId::Fqdn(p), Ok(IdValue::Fqdn(n))) => p.matches(n, true),
        (RemoteId::UserFqdn(p), Ok(IdValue::UserFqdn(n))) => p.matches(n, true),
        (RemoteId::KeyId(p), Ok(IdValue::KeyId(n))) => p.matches(n, false),
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let accepts = match accepted {
        RemoteId::Address if peer_behind_nat => "address (any, the peer is behind a NAT)".into(),
        RemoteId::Address => format!("address:{peer}"),
        other => other.to_string(),
    };
    Err(format!(
        "peer sent ID {}, policy {policy} accepts {accepts}",
        describe_phase1_id(id)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_round_trips() {
        for s in [
            "198.51.100.7",
            "198.51.100.0/24",
            "198.51.100.10-198.51.100.20",
            "2001:db8::7",
            "2001:db8:1::/48",
            "::/0",
            "2001:db8::/128",
            "2001:db8::10-2001:db8::20",
        ] {
            let n: NetworkSpec = s.parse().unwrap();
            assert_eq!(id_network(&network_id(&n)).unwrap(), n, "{s}");
        }
    }

    #[test]
    fn narrower_accepted_wider_refused() {
        let pol = [ProtectedNetwork {
            local: "198.51.100.0/24".parse().unwrap(),
            remote: "203.0.113.0/24".parse().unwrap(),
        }];
        let narrow = ProtectedNetwork {
            local: "198.51.100.0/24".parse().unwrap(),
            remote: "203.0.113.0/28".parse().unwrap(),
        };
        assert_eq!(match_proposed(&pol, narrow), Some(narrow));
        let wide = ProtectedNetwork {
            local: "198.51.100.0/24".parse().unwrap(),
            remote: "203.0.0.0/16".parse().unwrap(),
        };
        assert_eq!(match_proposed(&pol, wide), None);
    }

    #[test]
    fn ipv6_ids_have_ipv6_types() {
        let id = |s: &str| network_id(&s.parse().unwrap()).id_type;
        use crate::wire::isakmp::IdType;
        assert_eq!(id("2001:db8::7"), IdType::IPV6_ADDR);
        assert_eq!(id("2001:db8::/32"), IdType::IPV6_ADDR_SUBNET);
        assert_eq!(id("2001:db8::1-2001:db8::9"), IdType::IPV6_ADDR_RANGE);
        assert_eq!(id("198.51.100.0/24"), IdType::IPV4_ADDR_SUBNET);
        // The subnet's mask is the prefix, its address the first address of the block.
        let n = network_id(&"2001:db8:1::9/48".parse().unwrap());
        let mut want = [0u8; 32];
        want[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1]);
        want[16..22].fill(0xff);
        assert_eq!(n.data, want);
    }

    #[test]
    fn hostile_ipv6_ids_refused_with_reason() {
        let addr: Ipv6Addr = "2001:db8::".parse().unwrap();
        let holey = Identification::new(IdValue::Ipv6Subnet {
            addr,
            mask: "ffff:0:ffff::".parse().unwrap(),
        });
        let e = id_network(&holey).unwrap_err();
        assert!(e.contains("non-contiguous mask"), "{e}");
        let reversed = Identification::new(IdValue::Ipv6Range {
            start: "2001:db8::9".parse().unwrap(),
            end: "2001:db8::1".parse().unwrap(),
        });
        let e = id_network(&reversed).unwrap_err();
        assert!(e.contains("reversed"), "{e}");
    }

    #[test]
    fn host_of_either_family() {
        let v6: IpAddr = "2001:db8::2".parse().unwrap();
        assert_eq!(host(v6), NetworkSpec::Host(v6));
        let v4: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(host(v4), NetworkSpec::Host(v4));
        // A dual-stack socket's IPv4-mapped form is the IPv4 peer.
        let mapped: IpAddr = "::ffff:192.0.2.2".parse().unwrap();
        assert_eq!(host(mapped), NetworkSpec::Host(v4));
    }

    #[test]
    fn other_family_proposal_refused() {
        let pol = [ProtectedNetwork {
            local: "2001:db8:1::/48".parse().unwrap(),
            remote: "2001:db8:2::/48".parse().unwrap(),
        }];
        let narrow = ProtectedNetwork {
            local: "2001:db8:1::/64".parse().unwrap(),
            remote: "2001:db8:2::5".parse().unwrap(),
        };
        assert_eq!(match_proposed(&pol, narrow), Some(narrow));
        let v4 = ProtectedNetwork {
            local: "any".parse().unwrap(),
            remote: "any".parse().unwrap(),
        };
        assert_eq!(match_proposed(&pol, v4), None);
        let wide = ProtectedNetwork {
            local: "2001:db8:1::/48".parse().unwrap(),
            remote: "2001:db8::/32".parse().unwrap(),
        };
        assert_eq!(match_proposed(&pol, wide), None);
    }
}

//! Identities: phase-1 ID_IPV4_ADDR of the endpoint, quick-mode IDci/IDcr from the protected
//! networks (RFC 2407 §4.6.2: host, subnet, range) and the responder's check of what the
//! initiator proposed.

use std::net::IpAddr;

use crate::config::{NetworkSpec, ProtectedNetwork};
use crate::wire::isakmp::{IdValue, Identification};

/// Phase-1 identity: the endpoint address, protocol and port zero (RFC 2407 §4.6.2 allows 0 or
/// UDP/500; 0 is what strongSwan sends).
pub(crate) fn endpoint_id(addr: IpAddr) -> Identification {
    match addr {
        IpAddr::V4(a) => Identification::new(IdValue::Ipv4Addr(a)),
        IpAddr::V6(a) => Identification::new(IdValue::Ipv6Addr(a)),
    }
}

/// Quick-mode identity of one side of a protected network.
pub(crate) fn network_id(n: &NetworkSpec) -> Identification {
    match *n {
        NetworkSpec::Host(a) => Identification::new(IdValue::Ipv4Addr(a)),
        NetworkSpec::Subnet { prefix, .. } => Identification::ipv4_subnet(n.first(), prefix),
        NetworkSpec::Range { start, end } => Identification::new(IdValue::Ipv4Range { start, end }),
    }
}

/// The network a quick-mode identity names; `Err` says why it cannot be a selector of ours.
pub(crate) fn id_network(id: &Identification) -> Result<NetworkSpec, String> {
    if id.protocol_id.0 != 0 || id.port != 0 {
        return Err(format!(
            "identity restricted to protocol {} port {} (only whole networks are supported)",
            id.protocol_id.0, id.port
        ));
    }
    match id.value() {
        Ok(IdValue::Ipv4Addr(a)) => Ok(NetworkSpec::Host(a)),
        Ok(v @ IdValue::Ipv4Subnet { addr, .. }) => match v.prefix_len() {
            Some(prefix) => Ok(NetworkSpec::Subnet { addr, prefix }),
            None => Err(format!("subnet {addr} with a non-contiguous mask")),
        },
        Ok(IdValue::Ipv4Range { start, end }) if u32::from(start) <= u32::from(end) => {
            Ok(NetworkSpec::Range { start, end })
        }
        Ok(IdValue::Ipv4Range { start, end }) => Err(format!("range {start}-{end} is reversed")),
        Ok(other) => Err(format!("identity of type {}", other.id_type())),
        Err(e) => Err(format!("malformed identity: {e}")),
    }
}

/// Host identity of an endpoint, used when quick mode carries no IDs (RFC 2409 §5.5: the
/// ISAKMP endpoints are then the identities).
pub(crate) fn host(addr: IpAddr) -> Option<NetworkSpec> {
    match addr {
        IpAddr::V4(a) => Some(NetworkSpec::Host(a)),
        IpAddr::V6(_) => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_round_trips() {
        for s in [
            "198.51.100.7",
            "198.51.100.0/24",
            "198.51.100.10-198.51.100.20",
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
}

//! Who is where in the demo, for each address family (`ikehub demo` or `ikehub demo --ipv6`).
//!
//! * IPv4: the hub on 127.0.0.1; spoke `i` on its own loopback address 127.(1+w).y.z (all of
//!   127.0.0.0/8 is local), its protected host 198.(18+w).y.z in 198.18.0.0/15; hub LAN host
//!   198.51.100.1. The template's `peer` is the range of spoke addresses.
//! * IPv6: the loopback has one address, `::1/128`. An unprivileged process cannot add another,
//!   and binding a non-local one with `IPV6_FREEBIND` only works one way: a datagram from
//!   `[2001:db8:1::5]` reaches `[::1]` over lo, but the answer is routed by the main table (out
//!   of the default route), not back over lo. So the hub and every spoke use `::1`, and spoke
//!   `i` is told apart by its UDP port, as several spokes behind one NAT address are (PROFILES.md,
//!   "A template's spokes are told apart by address, port, ISAKMP cookies and authenticated
//!   identity"). The template's `peer` is `::1/128`, and what tells the spokes apart for an
//!   operator is the identity each one authenticates with: `keyid:demo-spoke-<i+1>`, admitted by
//!   `remote-id = "keyid:demo-spoke-*"`. Protected host 2001:db8:1::<i+1> (a /128 in
//!   2001:db8:1::/64), hub LAN host 2001:db8:ffff::1 (RFC 3849 documentation prefix).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ikehub::config::{Family, IdPattern, NetworkSpec, RemoteId};

/// IPv4: 254 usable values per octet (.0 and .255 skipped), two /16s in 198.18.0.0/15.
const MAX_SPOKES_V4: usize = 2 * 254 * 254;
/// IPv6: one ephemeral UDP port per spoke on `::1` (the Linux default range,
/// `net.ipv4.ip_local_port_range` = 32768-60999, holds 28,232; the hub and the rest of the
/// machine need some of them too).
const MAX_SPOKES_V6: usize = 20_000;

const HUB_LAN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
/// The /64 the spokes' hosts are in: 2001:db8:1::/64.
const SPOKE_PREFIX_V6: [u16; 4] = [0x2001, 0xdb8, 1, 0];

pub fn name(family: Family) -> &'static str {
    match family {
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    }
}

pub fn max_spokes(family: Family) -> usize {
    match family {
        Family::V4 => MAX_SPOKES_V4,
        Family::V6 => MAX_SPOKES_V6,
    }
}

/// The hub's WAN (interface) address.
pub fn hub_wan(family: Family) -> IpAddr {
    match family {
        Family::V4 => Ipv4Addr::LOCALHOST.into(),
        Family::V6 => Ipv6Addr::LOCALHOST.into(),
    }
}

/// The hub's LAN host, the far end of every tunnel.
pub fn hub_lan(family: Family) -> IpAddr {
    match family {
        Family::V4 => Ipv4Addr::new(198, 51, 100, 1).into(),
        Family::V6 => HUB_LAN_V6.into(),
    }
}

/// (w, y, z) of IPv4 spoke `i`: its WAN address is 127.(1+w).y.z, its host 198.(18+w).y.z.
fn octets(i: usize) -> (u8, u8, u8) {
    let z = (i % 254 + 1) as u8;
    let y = ((i / 254) % 254 + 1) as u8;
    let w = (i / (254 * 254)) as u8;
    (w, y, z)
}

/// Spoke `i`'s WAN address (IPv6: `::1` for all, the port tells them apart).
pub fn spoke_addr(family: Family, i: usize) -> IpAddr {
    match family {
        Family::V4 => {
            let (w, y, z) = octets(i);
            Ipv4Addr::new(127, 1 + w, y, z).into()
        }
        Family::V6 => Ipv6Addr::LOCALHOST.into(),
    }
}

/// Spoke `i`'s protected host.
pub fn spoke_host(family: Family, i: usize) -> IpAddr {
    match family {
        Family::V4 => {
            let (w, y, z) = octets(i);
            Ipv4Addr::new(198, 18 + w, y, z).into()
        }
        Family::V6 => {
            let [a, b, c, d] = SPOKE_PREFIX_V6;
            // i < MAX_SPOKES_V6, so i + 1 fits the last 32 bits.
            let n = (i as u32).saturating_add(1);
            Ipv6Addr::new(a, b, c, d, 0, 0, (n >> 16) as u16, n as u16).into()
        }
    }
}

/// The network every spoke's host is in: the template's remote protected network (each spoke
/// proposes its own host inside it, RFC 2409 §5.5 IDci).
pub fn spoke_hosts(family: Family) -> NetworkSpec {
    match family {
        Family::V4 => NetworkSpec::Subnet {
            addr: Ipv4Addr::new(198, 18, 0, 0).into(),
            prefix: 15,
        },
        Family::V6 => {
            let [a, b, c, d] = SPOKE_PREFIX_V6;
            NetworkSpec::Subnet {
                addr: Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0).into(),
                prefix: 64,
            }
        }
    }
}

/// The template policy's `peer`: the addresses `n` spokes call from.
pub fn spoke_block(family: Family, n: usize) -> NetworkSpec {
    match family {
        Family::V4 => NetworkSpec::Range {
            start: spoke_addr(family, 0),
            end: spoke_addr(family, n.saturating_sub(1)),
        },
        Family::V6 => NetworkSpec::Subnet {
            addr: Ipv6Addr::LOCALHOST.into(),
            prefix: 128,
        },
    }
}

/// The phase-1 identity spoke `i` sends in IPv6 mode (ID_KEY_ID, RFC 2407 §4.6.2.1), and the
/// pattern the hub admits.
pub fn spoke_key_id(i: usize) -> String {
    format!("demo-spoke-{}", i + 1)
}

/// `remote-id = "keyid:demo-spoke-*"`.
pub fn spoke_key_ids() -> RemoteId {
    RemoteId::KeyId(IdPattern {
        text: "demo-spoke-*".into(),
    })
}

/// The spoke whose protected host is `host`, if any of the first `spokes`.
pub fn spoke_of_host(host: IpAddr, spokes: usize) -> Option<usize> {
    let i = match host {
        IpAddr::V4(a) => {
            let [a, b, y, z] = a.octets();
            if a != 198
                || !(18..=19).contains(&b)
                || !(1..=254).contains(&y)
                || !(1..=254).contains(&z)
            {
                return None;
            }
            usize::from(b - 18) * 254 * 254 + usize::from(y - 1) * 254 + usize::from(z - 1)
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            if s[..4] != SPOKE_PREFIX_V6 || s[4] != 0 || s[5] != 0 {
                return None;
            }
            let n = (u32::from(s[6]) << 16) | u32::from(s[7]);
            usize::try_from(n).ok()?.checked_sub(1)?
        }
    };
    (i < spokes).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_map_back_to_their_spoke_in_both_families() {
        for family in [Family::V4, Family::V6] {
            let n = max_spokes(family);
            for i in [0, 1, 253, 254, 255, 254 * 254, n - 1]
                .into_iter()
                .filter(|&i| i < n)
            {
                let host = spoke_host(family, i);
                assert_eq!(spoke_of_host(host, n), Some(i), "{host}");
                assert!(spoke_hosts(family).contains(host), "{host}");
                // Beyond the spokes there are: no spoke.
                assert_eq!(spoke_of_host(host, i), None, "{host}");
            }
            assert_eq!(spoke_of_host(hub_lan(family), n), None);
            assert!(!spoke_hosts(family).contains(hub_lan(family)));
            assert!(spoke_block(family, n).contains(spoke_addr(family, n - 1)));
        }
        let RemoteId::KeyId(pattern) = spoke_key_ids() else {
            panic!("a key-ID pattern");
        };
        assert_eq!(spoke_key_ids().to_string(), "keyid:demo-spoke-*");
        for i in [0, 9, MAX_SPOKES_V6 - 1] {
            assert!(pattern.matches(spoke_key_id(i).as_bytes(), false));
        }
        // Not in the /64, or the ::0 host below spoke 1.
        for a in ["2001:db8:2::1", "2001:db8:1::", "2001:db8:1:0:1::1"] {
            assert_eq!(
                spoke_of_host(a.parse().unwrap(), MAX_SPOKES_V6),
                None,
                "{a}"
            );
        }
    }
}

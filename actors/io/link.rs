//! Interface queries and settings through rtnetlink (`RTM_GETLINK`, `RTM_SETLINK`,
//! `RTM_GETADDR`): index, MTU (the path-MTU ceiling), up, and which interface holds an address.
//!
//! Everything acts in the network namespace of the [`Netlink`] socket it goes through: the
//! plain functions open one in the calling thread's namespace; the `_on` variants take a
//! long-lived handle (a route guard's) so they stay in its namespace.

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{
    DecodeError, NetlinkDeserializable, NetlinkHeader, parse_string, parse_u32,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
#[cfg(test)]
use netlink_packet_route::link::LinkFlags;
use netlink_packet_route::link::{LinkAttribute, LinkMessage, LinkMessageBuffer};

use super::netlink::Netlink;

// include/uapi/linux/rtnetlink.h, if_link.h
const RTM_NEWLINK: u16 = 16;
const IFLA_MTU: u16 = 4;
const IFLA_IFNAME: u16 = 3;

/// What we read of an `RTM_NEWLINK` answer: index, name, MTU.
///
/// Read from the attributes directly rather than through the crate's full `LinkMessage`
/// parse: that parse decodes every attribute the kernel sends (`IFLA_AF_SPEC` with the IPv6
/// device configuration among them) and logs a warning for each one a newer kernel has grown,
/// which put two warnings in the operator's log for every route added or removed.
#[derive(Debug)]
struct LinkSummary {
    index: u32,
    name: Option<String>,
    mtu: Option<u32>,
}

impl NetlinkDeserializable for LinkSummary {
    type Error = DecodeError;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, DecodeError> {
        if header.message_type != RTM_NEWLINK {
            return Err(format!("message type {} is not RTM_NEWLINK", header.message_type).into());
        }
        let buf = LinkMessageBuffer::new_checked(payload)?;
        let mut link = LinkSummary {
            index: buf.link_index(),
            name: None,
            mtu: None,
        };
        for nla in buf.attributes() {
            let nla = nla?;
            match nla.kind() {
                IFLA_IFNAME => link.name = Some(parse_string(nla.value())?),
                IFLA_MTU => link.mtu = Some(parse_u32(nla.value())?),
                _ => {}
            }
        }
        Ok(link)
    }
}

/// Refuses names the kernel cannot hold (IFNAMSIZ = 16 with the NUL) before asking it.
fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.bytes().any(|b| b == 0 || b == b'/')
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?} (1..15 bytes, no '/' or NUL)"),
        ));
    }
    Ok(())
}

/// `RTM_GETLINK` for `name` (`IFLA_IFNAME`; the kernel looks it up by name when the index
/// is 0).
fn get_link_msg(name: &str) -> RouteNetlinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    RouteNetlinkMessage::GetLink(m)
}

/// The kernel's description of interface `name`. A missing interface is `NotFound`
/// ("... no such device").
fn link_on(nl: &mut Netlink, name: &str, what: &str) -> io::Result<LinkSummary> {
    check_name(name)?;
    nl.get(get_link_msg(name))
        .map_err(|e| e.into_io(&format!("{what} {name}")))
}

/// Interface index of `name` in the namespace of `nl`.
pub fn interface_index_on(nl: &mut Netlink, name: &str) -> io::Result<u32> {
    Ok(link_on(nl, name, "interface index of")?.index)
}

#[cfg(test)]
/// Interface index of `name` (`if_nametoindex`).
pub fn interface_index(name: &str) -> io::Result<u32> {
    interface_index_on(&mut Netlink::open()?, name)
}

#[cfg(test)]
/// Device MTU of interface `name` (`IFLA_MTU`): the ceiling for the path MTU of packets
/// leaving through it.
pub fn interface_mtu(name: &str) -> io::Result<u32> {
    let what = "MTU of";
    link_on(&mut Netlink::open()?, name, what)?
        .mtu
        .ok_or_else(|| io::Error::other(format!("{what} {name}: no IFLA_MTU in the answer")))
}

#[cfg(test)]
/// `RTM_SETLINK` for `index` with `attributes` and the flags under `change_mask` set to
/// `flags`.
fn set_link_msg(
    index: u32,
    flags: LinkFlags,
    change_mask: LinkFlags,
    attributes: Vec<LinkAttribute>,
) -> RouteNetlinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.header.flags = flags;
    m.header.change_mask = change_mask;
    m.attributes = attributes;
    RouteNetlinkMessage::SetLink(m)
}

#[cfg(test)]
fn set_link(
    name: &str,
    what: &str,
    msg: impl FnOnce(u32) -> RouteNetlinkMessage,
) -> io::Result<()> {
    let mut nl = Netlink::open()?;
    let index = interface_index_on(&mut nl, name)?;
    nl.request(msg(index), 0)
        .map_err(|e| e.into_io(&format!("{what} {name}")))
}

#[cfg(test)]
/// Sets the device MTU of interface `name` (needs CAP_NET_ADMIN).
pub fn set_interface_mtu(name: &str, mtu: u32) -> io::Result<()> {
    set_link(name, "setting MTU of", |index| {
        set_link_msg(
            index,
            LinkFlags::empty(),
            LinkFlags::empty(),
            vec![LinkAttribute::Mtu(mtu)],
        )
    })
}

#[cfg(test)]
/// Brings interface `name` up (`IFF_UP`, needs CAP_NET_ADMIN).
pub fn set_interface_up(name: &str) -> io::Result<()> {
    set_link(name, "bringing up", |index| {
        set_link_msg(index, LinkFlags::Up, LinkFlags::Up, Vec::new())
    })
}

/// Does `m` put `addr` on its interface? (`IFA_LOCAL` is the local address on
/// point-to-point links, where `IFA_ADDRESS` is the peer's; elsewhere both are the same.)
fn holds(m: &AddressMessage, addr: IpAddr) -> bool {
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(a) => Some(*a),
        _ => None,
    });
    let address = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(a) => Some(*a),
        _ => None,
    });
    local.or(address) == Some(addr)
}

/// The interface that holds local address `addr`: an `RTM_GETADDR` dump, then `RTM_GETLINK`
/// of the index found, whose one answer has both its name and its MTU.
fn link_with_address(addr: IpAddr) -> io::Result<LinkSummary> {
    let mut nl = Netlink::open()?;
    let mut index = None;
    nl.dump(
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        |m| {
            if let RouteNetlinkMessage::NewAddress(a) = m
                && holds(&a, addr)
            {
                index = Some(a.header.index);
                return false;
            }
            true
        },
    )
    .map_err(|e| e.into_io("listing addresses"))?;
    let index = index.ok_or_else(|| not_held(addr))?;
    let mut by_index = LinkMessage::default();
    by_index.header.index = index;
    nl.get::<LinkSummary>(RouteNetlinkMessage::GetLink(by_index))
        .map_err(|e| e.into_io(&format!("interface {index}")))
}

fn not_held(addr: IpAddr) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("no interface holds address {addr}"),
    )
}

/// Device MTU of the interface that holds local address `addr`, with its name (one
/// `RTM_GETLINK` answer: a rename in between cannot pair one device's name with another's
/// MTU).
pub fn mtu_of_address(addr: IpAddr) -> io::Result<(String, u32)> {
    let link = link_with_address(addr)?;
    let name = link.name.ok_or_else(|| not_held(addr))?;
    match link.mtu {
        Some(mtu) => Ok((name, mtu)),
        None => Err(io::Error::other(format!(
            "MTU of {name}: no IFLA_MTU in the answer"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    #[test]
    fn loopback_queries() {
        assert_eq!(interface_index("lo").unwrap(), 1);
        assert!(interface_mtu("lo").unwrap() >= 1280);
        let (name, mtu) = mtu_of_address("127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(name, "lo");
        assert_eq!(mtu, interface_mtu("lo").unwrap());
    }

    /// The IPv6 outer side (issue 11): the interface and path MTU of an IPv6 interface
    /// address are found like an IPv4 one's (the address dump covers both families).
    #[test]
    fn mtu_of_an_ipv6_address() {
        crate::io::testns::in_netns("mtu_of_an_ipv6_address", || {
            std::process::Command::new("ip")
                .args(["-6", "addr", "add", "2001:db8::5/128", "dev", "lo", "nodad"])
                .status()
                .expect("ip addr add");
            set_interface_mtu("lo", 9000).unwrap();
            let (name, mtu) = mtu_of_address("2001:db8::5".parse().unwrap()).unwrap();
            assert_eq!((name.as_str(), mtu), ("lo", 9000));
            let e = mtu_of_address("2001:db8::6".parse().unwrap()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        });
    }

    #[test]
    fn bad_names_are_reported() {
        let e = interface_mtu("no-such-if0").unwrap_err();
        assert_eq!(e.to_string(), "MTU of no-such-if0: no such device");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = interface_mtu("a-name-far-too-long").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(interface_mtu("a/b").is_err());
        let e = mtu_of_address("192.0.2.254".parse().unwrap()).unwrap_err();
        assert_eq!(e.to_string(), "no interface holds address 192.0.2.254");
    }

    #[test]
    fn link_messages() {
        // RTM_GETLINK by name: index 0 in the header, the name as IFLA_IFNAME (3) with its NUL.
        let RouteNetlinkMessage::GetLink(m) = get_link_msg("ikehub0") else {
            unreachable!()
        };
        let mut b = vec![0; m.buffer_len()];
        m.emit(&mut b);
        assert_eq!(&b[4..8], &0u32.to_ne_bytes());
        assert_eq!(&b[16..20], &[12, 0, 3, 0]);
        assert_eq!(&b[20..28], b"ikehub0\0");
        // RTM_SETLINK up: IFF_UP in both flags and change mask, nothing else touched.
        let RouteNetlinkMessage::SetLink(m) =
            set_link_msg(7, LinkFlags::Up, LinkFlags::Up, Vec::new())
        else {
            unreachable!()
        };
        let mut b = vec![0; m.buffer_len()];
        m.emit(&mut b);
        assert_eq!(b.len(), 16);
        assert_eq!(&b[4..8], &7u32.to_ne_bytes());
        assert_eq!(&b[8..12], &1u32.to_ne_bytes());
        assert_eq!(&b[12..16], &1u32.to_ne_bytes());
    }

    #[test]
    fn link_answers_read_index_name_and_mtu_only() {
        let mut m = LinkMessage::default();
        m.header.index = 42;
        m.attributes.push(LinkAttribute::IfName("ikehub0".into()));
        m.attributes.push(LinkAttribute::TxQueueLen(500));
        m.attributes.push(LinkAttribute::Mtu(1400));
        let mut b = vec![0; m.buffer_len()];
        m.emit(&mut b);
        let mut h = NetlinkHeader::default();
        h.message_type = RTM_NEWLINK;
        let l = LinkSummary::deserialize(&h, &b).unwrap();
        assert_eq!(
            (l.index, l.name.as_deref(), l.mtu),
            (42, Some("ikehub0"), Some(1400))
        );
        // Another message type, a short buffer, an attribute running past the end: errors.
        h.message_type = RTM_NEWLINK + 1;
        assert!(LinkSummary::deserialize(&h, &b).is_err());
        h.message_type = RTM_NEWLINK;
        assert!(LinkSummary::deserialize(&h, &b[..10]).is_err());
        let mut bad = b.clone();
        bad[16..18].copy_from_slice(&200u16.to_ne_bytes());
        assert!(LinkSummary::deserialize(&h, &bad).is_err());
    }

    #[test]
    fn point_to_point_addresses_match_the_local_side() {
        let mut m = AddressMessage::default();
        let local: IpAddr = "198.51.100.1".parse().unwrap();
        let peer: IpAddr = "198.51.100.2".parse().unwrap();
        m.attributes.push(AddressAttribute::Address(peer));
        m.attributes.push(AddressAttribute::Local(local));
        assert!(holds(&m, local));
        assert!(!holds(&m, peer));
        m.attributes.remove(1);
        assert!(holds(&m, peer));
    }
}

//! Routes `dst/len dev DEV [src ADDR] [metric M]` through rtnetlink (`RTM_NEWROUTE` /
//! `RTM_DELROUTE`, messages from netlink-packet-route), and a guard that removes every route
//! it installed.
//!
//! A route carries an [`IpAddr`]: IPv4 is what the policies use today, IPv6 routes go through
//! the same code. A [`RouteGuard`] stays bound to the network namespace it was opened in,
//! whichever thread later uses or drops it.

use std::fmt;
use std::io;
use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::link;
use super::netlink::{Netlink, NlError};

/// A route through a device: `dst/prefix_len dev dev [src src] [metric metric]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// Network address (host bits must be zero).
    pub dst: IpAddr,
    /// Prefix length, 0..=32 (IPv4) or 0..=128 (IPv6).
    pub prefix_len: u8,
    /// Output device (the TUN device).
    pub dev: String,
    /// Preferred source address (`RTA_PREFSRC`); a local address of the same family.
    pub src: Option<IpAddr>,
    /// Route metric (`RTA_PRIORITY`).
    pub metric: Option<u32>,
}

impl Route {
    /// `dst/prefix_len dev dev` without source or metric.
    pub fn new(dst: impl Into<IpAddr>, prefix_len: u8, dev: impl Into<String>) -> Self {
        Self {
            dst: dst.into(),
            prefix_len,
            dev: dev.into(),
            src: None,
            metric: None,
        }
    }

    /// The same route with a preferred source address.
    pub fn with_src(mut self, src: impl Into<IpAddr>) -> Self {
        self.src = Some(src.into());
        self
    }

    /// `dst/prefix_len`, the form `ip route` shows first.
    pub fn network(&self) -> String {
        format!("{}/{}", self.dst, self.prefix_len)
    }

    /// Refuses what the kernel would refuse with a less helpful EINVAL.
    fn check(&self) -> Result<(), RouteError> {
        let invalid = |reason| {
            Err(RouteError::Invalid {
                route: self.clone(),
                reason,
            })
        };
        let (bits, dst) = match self.dst {
            IpAddr::V4(a) => (32, u128::from(u32::from(a)) << 96),
            IpAddr::V6(a) => (128, u128::from(a)),
        };
        if u32::from(self.prefix_len) > bits {
            return invalid(if bits == 32 {
                "prefix length above 32"
            } else {
                "prefix length above 128"
            });
        }
        // The address left-aligned in 128 bits: the host bits are the low 128 - prefix_len.
        let host_mask = u128::MAX
            .checked_shr(u32::from(self.prefix_len))
            .unwrap_or(0);
        if dst & host_mask != 0 {
            return invalid("host bits set in the destination");
        }
        if self.src.is_some_and(|s| s.is_ipv4() != self.dst.is_ipv4()) {
            return invalid("source address of the other IP version");
        }
        Ok(())
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} dev {}", self.dst, self.prefix_len, self.dev)?;
        if let Some(src) = self.src {
            write!(f, " src {src}")?;
        }
        if let Some(m) = self.metric {
            write!(f, " metric {m}")?;
        }
        Ok(())
    }
}

/// Why a route could not be added or removed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// EEXIST on add.
    #[error("route {} already exists", .0.network())]
    Exists(Route),
    /// ESRCH on delete.
    #[error("route {0} does not exist")]
    NotFound(Route),
    /// The output device is unknown.
    #[error("route {route}: no such device {}", .route.dev)]
    NoDevice { route: Route },
    /// Refused before asking the kernel.
    #[error("route {route}: {reason}")]
    Invalid { route: Route, reason: &'static str },
    /// Any other kernel answer, with its extended-ack message when it gave one.
    #[error("{op} route {route}: {source}{}", .detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Kernel {
        op: &'static str,
        route: Route,
        source: io::Error,
        detail: Option<String>,
    },
    /// The netlink socket itself failed.
    #[error("rtnetlink: {0}")]
    Io(#[from] io::Error),
}

/// The `RTM_NEWROUTE` / `RTM_DELROUTE` body for `r` through interface `ifindex`: main table,
/// unicast. On add the route is `scope link` (no gateway: the device is the next hop) and
/// `proto static`; on delete scope NOWHERE and protocol 0 match any, as `ip route del` does.
fn route_message(r: &Route, ifindex: u32, add: bool) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = match r.dst {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    m.header.destination_prefix_length = r.prefix_len;
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    if add {
        m.header.protocol = RouteProtocol::Static;
        m.header.scope = RouteScope::Link;
        m.header.kind = RouteType::Unicast;
    } else {
        m.header.protocol = RouteProtocol::Unspec;
        m.header.scope = RouteScope::NoWhere;
        m.header.kind = RouteType::Unspec;
    }
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(r.dst)));
    m.attributes.push(RouteAttribute::Oif(ifindex));
    if let Some(src) = r.src {
        m.attributes
            .push(RouteAttribute::PrefSource(RouteAddress::from(src)));
    }
    if let Some(metric) = r.metric {
        m.attributes.push(RouteAttribute::Priority(metric));
    }
    m
}

/// Adds `route` (fails with [`RouteError::Exists`] if it is already there).
fn add_route(nl: &mut Netlink, route: &Route) -> Result<(), RouteError> {
    route.check()?;
    let ifindex = ifindex(nl, route)?;
    let msg = RouteNetlinkMessage::NewRoute(route_message(route, ifindex, true));
    nl.request(msg, NLM_F_CREATE | NLM_F_EXCL)
        .map_err(|e| kernel_error("adding", route, e))
}

/// Removes `route` (fails with [`RouteError::NotFound`] if it is not there).
fn del_route(nl: &mut Netlink, route: &Route) -> Result<(), RouteError> {
    route.check()?;
    let ifindex = ifindex(nl, route)?;
    let msg = RouteNetlinkMessage::DelRoute(route_message(route, ifindex, false));
    nl.request(msg, 0)
        .map_err(|e| kernel_error("removing", route, e))
}

/// The operator's reading of a refusal: which route, and why.
fn kernel_error(op: &'static str, route: &Route, e: NlError) -> RouteError {
    match e.errno {
        libc::EEXIST if op == "adding" => RouteError::Exists(route.clone()),
        libc::ESRCH | libc::ENOENT if op == "removing" => RouteError::NotFound(route.clone()),
        libc::ENODEV => RouteError::NoDevice {
            route: route.clone(),
        },
        errno => RouteError::Kernel {
            op,
            route: route.clone(),
            source: io::Error::from_raw_os_error(errno),
            detail: e.detail,
        },
    }
}

fn ifindex(nl: &mut Netlink, route: &Route) -> Result<u32, RouteError> {
    link::interface_index_on(nl, &route.dev).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => RouteError::NoDevice {
            route: route.clone(),
        },
        _ => RouteError::Io(e),
    })
}

/// Routes installed through this guard are removed again when it is dropped (daemon exit,
/// tunnel-device replacement, test failure).
pub struct RouteGuard {
    nl: Netlink,
    installed: Vec<Route>,
}

impl RouteGuard {
    /// A guard with its own netlink socket in the calling thread's network namespace.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            nl: Netlink::open()?,
            installed: Vec::new(),
        })
    }

    /// Adds `route` and remembers it for removal.
    pub fn add(&mut self, route: Route) -> Result<(), RouteError> {
        add_route(&mut self.nl, &route)?;
        self.installed.push(route);
        Ok(())
    }

    /// Removes a route this guard installed, now. A route already gone (its device was
    /// deleted, or someone ran `ip route del`) counts as removed.
    pub fn remove(&mut self, route: &Route) -> Result<(), RouteError> {
        let Some(pos) = self.installed.iter().position(|r| r == route) else {
            return Err(RouteError::NotFound(route.clone()));
        };
        let r = self.installed.remove(pos);
        match del_route(&mut self.nl, &r) {
            Ok(()) | Err(RouteError::NotFound(_)) | Err(RouteError::NoDevice { .. }) => Ok(()),
            Err(e) => {
                self.installed.insert(pos, r);
                Err(e)
            }
        }
    }

    #[cfg(test)]
    /// Routes currently installed through this guard, in installation order.
    pub fn installed(&self) -> &[Route] {
        &self.installed
    }

    /// Removes every installed route, newest first; returns the failures (routes already
    /// gone are not failures).
    pub fn remove_all(&mut self) -> Vec<RouteError> {
        let mut errors = Vec::new();
        while let Some(r) = self.installed.pop() {
            match del_route(&mut self.nl, &r) {
                Ok(()) | Err(RouteError::NotFound(_)) | Err(RouteError::NoDevice { .. }) => {}
                Err(e) => errors.push(e),
            }
        }
        errors
    }
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        for e in self.remove_all() {
            tracing::warn!(error = %e, "route left behind");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn error_messages() {
        let r = Route::new(Ipv4Addr::new(203, 0, 113, 0), 24, "ikehub0")
            .with_src(Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(r.to_string(), "203.0.113.0/24 dev ikehub0 src 198.51.100.1");
        assert_eq!(
            RouteError::Exists(r.clone()).to_string(),
            "route 203.0.113.0/24 already exists"
        );
        let bad = Route::new(Ipv4Addr::new(203, 0, 113, 1), 24, "ikehub0");
        assert_eq!(
            bad.check().unwrap_err().to_string(),
            "route 203.0.113.1/24 dev ikehub0: host bits set in the destination"
        );
        let k = RouteError::Kernel {
            op: "adding",
            route: r,
            source: io::Error::from_raw_os_error(libc::EINVAL),
            detail: Some("Invalid prefsrc address".into()),
        };
        assert!(k.to_string().ends_with("(Invalid prefsrc address)"), "{k}");
    }

    #[test]
    fn checks_per_family() {
        let v4 = |a: [u8; 4], len| Route::new(Ipv4Addr::from(a), len, "x").check();
        assert!(v4([0, 0, 0, 0], 0).is_ok());
        assert!(v4([192, 0, 2, 7], 32).is_ok());
        assert!(v4([192, 0, 2, 0], 33).is_err());
        assert!(v4([192, 0, 2, 128], 25).is_ok());
        assert!(v4([192, 0, 2, 128], 24).is_err());
        let v6 = |a: &str, len| Route::new(a.parse::<Ipv6Addr>().unwrap(), len, "x").check();
        assert!(v6("2001:db8::", 32).is_ok());
        assert!(v6("2001:db8::1", 128).is_ok());
        assert!(v6("::", 0).is_ok());
        assert!(v6("2001:db8::1", 64).is_err());
        assert!(v6("2001:db8::", 129).is_err());
        let mixed = Route::new(Ipv4Addr::new(192, 0, 2, 0), 24, "x")
            .with_src("2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            mixed.check().unwrap_err().to_string(),
            "route 192.0.2.0/24 dev x src 2001:db8::1: source address of the other IP version"
        );
    }

    #[test]
    fn kernel_refusals_name_the_route() {
        let r = Route::new(Ipv4Addr::new(192, 0, 2, 0), 24, "ikehub0");
        let e = |errno| NlError {
            errno,
            detail: None,
        };
        assert!(matches!(
            kernel_error("adding", &r, e(libc::EEXIST)),
            RouteError::Exists(_)
        ));
        assert!(matches!(
            kernel_error("removing", &r, e(libc::ESRCH)),
            RouteError::NotFound(_)
        ));
        assert_eq!(
            kernel_error("adding", &r, e(libc::ENODEV)).to_string(),
            "route 192.0.2.0/24 dev ikehub0: no such device ikehub0"
        );
        assert_eq!(
            kernel_error("removing", &r, e(libc::EPERM)).to_string(),
            "removing route 192.0.2.0/24 dev ikehub0: Operation not permitted (os error 1)"
        );
    }

    /// The bytes the kernel gets (include/uapi/linux/rtnetlink.h `struct rtmsg` + `RTA_*`).
    fn emitted(r: &Route, add: bool) -> Vec<u8> {
        let m = route_message(r, 9, add);
        let mut b = vec![0; m.buffer_len()];
        m.emit(&mut b);
        b
    }

    #[test]
    fn ipv4_route_messages() {
        let mut r = Route::new(Ipv4Addr::new(203, 0, 113, 0), 24, "ikehub0")
            .with_src(Ipv4Addr::new(198, 51, 100, 1));
        r.metric = Some(50);
        let b = emitted(&r, true);
        // rtmsg: AF_INET, /24, src_len 0, tos 0, main table, static, scope link, unicast.
        assert_eq!(&b[..8], &[2, 24, 0, 0, 254, 4, 253, 1]);
        assert_eq!(&b[8..12], &[0; 4]);
        // RTA_DST, RTA_OIF, RTA_PREFSRC, RTA_PRIORITY.
        assert_eq!(&b[12..20], &[8, 0, 1, 0, 203, 0, 113, 0]);
        assert_eq!(&b[20..24], &[8, 0, 4, 0]);
        assert_eq!(&b[24..28], &9u32.to_ne_bytes());
        assert_eq!(&b[28..36], &[8, 0, 7, 0, 198, 51, 100, 1]);
        assert_eq!(&b[36..40], &[8, 0, 6, 0]);
        assert_eq!(&b[40..44], &50u32.to_ne_bytes());
        assert_eq!(b.len(), 44);
        // Delete: any protocol, scope NOWHERE, type unspecified; no source or metric needed.
        let b = emitted(
            &Route::new(Ipv4Addr::new(203, 0, 113, 0), 24, "ikehub0"),
            false,
        );
        assert_eq!(&b[..8], &[2, 24, 0, 0, 254, 0, 255, 0]);
        assert_eq!(b.len(), 28);
    }

    #[test]
    fn ipv6_route_messages() {
        let r = Route::new("2001:db8:1::".parse::<Ipv6Addr>().unwrap(), 48, "ikehub0")
            .with_src("2001:db8::1".parse::<Ipv6Addr>().unwrap());
        let b = emitted(&r, true);
        assert_eq!(&b[..8], &[10, 48, 0, 0, 254, 4, 253, 1]);
        assert_eq!(&b[12..16], &[20, 0, 1, 0]);
        assert_eq!(
            &b[16..32],
            &"2001:db8:1::".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(&b[40..44], &[20, 0, 7, 0]);
        assert_eq!(b.len(), 60);
    }
}

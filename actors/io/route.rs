//! IPv4 routes `dst/len dev DEV [src ADDR]` through rtnetlink (RTM_NEWROUTE / RTM_DELROUTE),
//! spoken directly over an `AF_NETLINK` socket with libc, and a guard that removes every
//! route it installed.
//!
//! A [`Netlink`] handle (and so a [`RouteGuard`]) stays bound to the network namespace it was
//! opened in, whichever thread later uses or drops it.

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::link;

// include/uapi/linux/netlink.h (not all exported by libc on every target).
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NETLINK_EXT_ACK: libc::c_int = 11;
const NLMSGERR_ATTR_MSG: u16 = 1;
// include/uapi/linux/rtnetlink.h
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_PRIORITY: u16 = 6;
const RTA_PREFSRC: u16 = 7;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_LINK: u8 = 253;
const RT_SCOPE_NOWHERE: u8 = 255;
const RTN_UNICAST: u8 = 1;

/// An IPv4 route through a device: `dst/prefix_len dev dev [src src] [metric metric]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Route {
    /// Network address (host bits must be zero).
    pub dst: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix_len: u8,
    /// Output device (the TUN device).
    pub dev: String,
    /// Preferred source address (`RTA_PREFSRC`); must be a local address.
    pub src: Option<Ipv4Addr>,
    /// Route metric (`RTA_PRIORITY`).
    pub metric: Option<u32>,
}

impl Ipv4Route {
    /// `dst/prefix_len dev dev` without source or metric.
    pub fn new(dst: Ipv4Addr, prefix_len: u8, dev: impl Into<String>) -> Self {
        Self {
            dst,
            prefix_len,
            dev: dev.into(),
            src: None,
            metric: None,
        }
    }

    /// The same route with a preferred source address.
    pub fn with_src(mut self, src: Ipv4Addr) -> Self {
        self.src = Some(src);
        self
    }

    /// `dst/prefix_len`, the form `ip route` shows first.
    pub fn network(&self) -> String {
        format!("{}/{}", self.dst, self.prefix_len)
    }

    fn check(&self) -> Result<(), RouteError> {
        if self.prefix_len > 32 {
            return Err(RouteError::Invalid {
                route: self.clone(),
                reason: "prefix length above 32",
            });
        }
        let host_mask = u32::MAX.checked_shr(self.prefix_len as u32).unwrap_or(0);
        if u32::from(self.dst) & host_mask != 0 {
            return Err(RouteError::Invalid {
                route: self.clone(),
                reason: "host bits set in the destination",
            });
        }
        Ok(())
    }
}

impl fmt::Display for Ipv4Route {
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
    Exists(Ipv4Route),
    /// ESRCH on delete.
    #[error("route {0} does not exist")]
    NotFound(Ipv4Route),
    /// The output device is unknown.
    #[error("route {route}: no such device {}", .route.dev)]
    NoDevice { route: Ipv4Route },
    /// Refused before asking the kernel.
    #[error("route {route}: {reason}")]
    Invalid {
        route: Ipv4Route,
        reason: &'static str,
    },
    /// Any other kernel answer, with its extended-ack message when it gave one.
    #[error("{op} route {route}: {source}{}", .detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Kernel {
        op: &'static str,
        route: Ipv4Route,
        source: io::Error,
        detail: Option<String>,
    },
    /// The netlink socket itself failed.
    #[error("rtnetlink: {0}")]
    Io(#[from] io::Error),
}

/// A kernel refusal: errno plus the extended-ack text.
#[derive(Debug)]
struct NlError {
    errno: i32,
    detail: Option<String>,
}

/// A blocking `NETLINK_ROUTE` socket (control path only, never on the hot path).
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens a `NETLINK_ROUTE` socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: all-zero sockaddr_nl with the family set: the kernel assigns the port id.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: sa is a valid sockaddr_nl of the given size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // The kernel always answers a request with NLM_F_ACK; the timeout only bounds a
        // wait that would otherwise hang the control path on a lost answer.
        socket2::SockRef::from(&fd).set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
        // Extended acks carry a human-readable reason ("Invalid prefsrc address"); older
        // kernels without them still work.
        let _ = super::udp::setsockopt_int(fd.as_raw_fd(), libc::SOL_NETLINK, NETLINK_EXT_ACK, 1);
        Ok(Self {
            fd,
            seq: 0,
            buf: vec![0; 16384],
        })
    }

    /// Adds `route` (fails with [`RouteError::Exists`] if it is already there).
    pub fn add_route(&mut self, route: &Ipv4Route) -> Result<(), RouteError> {
        route.check()?;
        let ifindex = self.ifindex(route)?;
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        let msg = self.route_msg(
            RTM_NEWROUTE,
            flags,
            route,
            ifindex,
            RT_SCOPE_LINK,
            RTPROT_STATIC,
        );
        self.transact(&msg).map_err(|e| match e.errno {
            libc::EEXIST => RouteError::Exists(route.clone()),
            libc::ENODEV => RouteError::NoDevice {
                route: route.clone(),
            },
            errno => RouteError::Kernel {
                op: "adding",
                route: route.clone(),
                source: io::Error::from_raw_os_error(errno),
                detail: e.detail,
            },
        })
    }

    /// Removes `route` (fails with [`RouteError::NotFound`] if it is not there).
    pub fn del_route(&mut self, route: &Ipv4Route) -> Result<(), RouteError> {
        route.check()?;
        let ifindex = self.ifindex(route)?;
        // Scope NOWHERE and protocol 0 match any scope/protocol, as `ip route del` does.
        let msg = self.route_msg(
            RTM_DELROUTE,
            NLM_F_REQUEST | NLM_F_ACK,
            route,
            ifindex,
            RT_SCOPE_NOWHERE,
            0,
        );
        self.transact(&msg).map_err(|e| match e.errno {
            libc::ESRCH | libc::ENOENT => RouteError::NotFound(route.clone()),
            libc::ENODEV => RouteError::NoDevice {
                route: route.clone(),
            },
            errno => RouteError::Kernel {
                op: "removing",
                route: route.clone(),
                source: io::Error::from_raw_os_error(errno),
                detail: e.detail,
            },
        })
    }

    fn ifindex(&self, route: &Ipv4Route) -> Result<u32, RouteError> {
        // SIOCGIFINDEX on the netlink socket itself answers in its namespace.
        link::interface_index_on(&self.fd, &route.dev).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => RouteError::NoDevice {
                route: route.clone(),
            },
            _ => RouteError::Io(e),
        })
    }

    fn route_msg(
        &mut self,
        ty: u16,
        flags: u16,
        r: &Ipv4Route,
        ifindex: u32,
        scope: u8,
        protocol: u8,
    ) -> Vec<u8> {
        self.seq = self.seq.wrapping_add(1);
        let mut m = Vec::with_capacity(64);
        // nlmsghdr: len (patched below), type, flags, seq, pid (0 = kernel fills).
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&self.seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
        let rtype = if ty == RTM_NEWROUTE { RTN_UNICAST } else { 0 };
        m.extend_from_slice(&[
            libc::AF_INET as u8,
            r.prefix_len,
            0,
            0,
            RT_TABLE_MAIN,
            protocol,
            scope,
            rtype,
        ]);
        m.extend_from_slice(&0u32.to_ne_bytes());
        push_attr(&mut m, RTA_DST, &r.dst.octets());
        push_attr(&mut m, RTA_OIF, &ifindex.to_ne_bytes());
        if let Some(src) = r.src {
            push_attr(&mut m, RTA_PREFSRC, &src.octets());
        }
        if let Some(metric) = r.metric {
            push_attr(&mut m, RTA_PRIORITY, &metric.to_ne_bytes());
        }
        let len = m.len() as u32;
        m[..4].copy_from_slice(&len.to_ne_bytes());
        m
    }

    /// Sends one request and waits for its ACK / error.
    fn transact(&mut self, msg: &[u8]) -> Result<(), NlError> {
        let io_err = |e: io::Error| NlError {
            errno: e.raw_os_error().unwrap_or(libc::EIO),
            detail: Some(format!("netlink socket: {e}")),
        };
        // SAFETY: msg is a live buffer; the socket is unconnected, the kernel is the default peer.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(io_err(io::Error::last_os_error()));
        }
        loop {
            // SAFETY: buf is a live, writable buffer of the given length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(io_err(e));
            }
            let mut data = &self.buf[..n as usize];
            while data.len() >= NLMSG_HDRLEN {
                let len = u32::from_ne_bytes(data[0..4].try_into().unwrap_or_default()) as usize;
                let ty = u16::from_ne_bytes([data[4], data[5]]);
                let flags = u16::from_ne_bytes([data[6], data[7]]);
                let seq = u32::from_ne_bytes(data[8..12].try_into().unwrap_or_default());
                if len < NLMSG_HDRLEN || len > data.len() {
                    break;
                }
                if ty == NLMSG_ERROR && seq == self.seq {
                    return parse_ack(&data[NLMSG_HDRLEN..len], flags);
                }
                data = &data[align4(len).min(data.len())..];
            }
        }
    }
}

impl AsRawFd for Netlink {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn push_attr(m: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    m.extend_from_slice(&(len as u16).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(payload);
    m.resize(align4(m.len()), 0);
}

/// Parses the body of an NLMSG_ERROR: `int error; struct nlmsghdr msg; [payload]; [TLVs]`.
fn parse_ack(body: &[u8], flags: u16) -> Result<(), NlError> {
    let Some(errno) = body
        .get(..4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    else {
        return Err(NlError {
            errno: libc::EIO,
            detail: Some("short netlink ack".into()),
        });
    };
    if errno == 0 {
        return Ok(());
    }
    let mut detail = None;
    if flags & NLM_F_ACK_TLVS != 0 && body.len() >= 4 + NLMSG_HDRLEN {
        // The echoed request is only its header when capped, else the whole message.
        let echoed = if flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            u32::from_ne_bytes(body[4..8].try_into().unwrap_or_default()) as usize
        };
        let mut tlv = body.get(4 + align4(echoed)..).unwrap_or_default();
        while tlv.len() >= 4 {
            let len = u16::from_ne_bytes([tlv[0], tlv[1]]) as usize;
            let ty = u16::from_ne_bytes([tlv[2], tlv[3]]);
            if len < 4 || len > tlv.len() {
                break;
            }
            if ty == NLMSGERR_ATTR_MSG {
                let s = &tlv[4..len];
                let s = s.split(|b| *b == 0).next().unwrap_or_default();
                detail = Some(String::from_utf8_lossy(s).into_owned());
            }
            tlv = &tlv[align4(len).min(tlv.len())..];
        }
    }
    Err(NlError {
        errno: -errno,
        detail,
    })
}

/// Routes installed through this guard are removed again when it is dropped (daemon exit,
/// tunnel-device replacement, test failure).
pub struct RouteGuard {
    nl: Netlink,
    installed: Vec<Ipv4Route>,
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
    pub fn add(&mut self, route: Ipv4Route) -> Result<(), RouteError> {
        self.nl.add_route(&route)?;
        self.installed.push(route);
        Ok(())
    }

    /// Removes a route this guard installed, now. A route already gone (its device was
    /// deleted, or someone ran `ip route del`) counts as removed.
    pub fn remove(&mut self, route: &Ipv4Route) -> Result<(), RouteError> {
        let Some(pos) = self.installed.iter().position(|r| r == route) else {
            return Err(RouteError::NotFound(route.clone()));
        };
        let r = self.installed.remove(pos);
        match self.nl.del_route(&r) {
            Ok(()) | Err(RouteError::NotFound(_)) | Err(RouteError::NoDevice { .. }) => Ok(()),
            Err(e) => {
                self.installed.insert(pos, r);
                Err(e)
            }
        }
    }

    #[cfg(test)]
    /// Routes currently installed through this guard, in installation order.
    pub fn installed(&self) -> &[Ipv4Route] {
        &self.installed
    }

    /// Removes every installed route, newest first; returns the failures (routes already
    /// gone are not failures).
    pub fn remove_all(&mut self) -> Vec<RouteError> {
        let mut errors = Vec::new();
        while let Some(r) = self.installed.pop() {
            match self.nl.del_route(&r) {
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

    #[test]
    fn error_messages() {
        let r = Ipv4Route::new(Ipv4Addr::new(203, 0, 113, 0), 24, "ikehub0")
            .with_src(Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(r.to_string(), "203.0.113.0/24 dev ikehub0 src 198.51.100.1");
        assert_eq!(
            RouteError::Exists(r.clone()).to_string(),
            "route 203.0.113.0/24 already exists"
        );
        let bad = Ipv4Route::new(Ipv4Addr::new(203, 0, 113, 1), 24, "ikehub0");
        assert_eq!(
            bad.check().unwrap_err().to_string(),
            "route 203.0.113.1/24 dev ikehub0: host bits set in the destination"
        );
        assert!(
            Ipv4Route::new(Ipv4Addr::UNSPECIFIED, 0, "x")
                .check()
                .is_ok()
        );
        assert!(
            Ipv4Route::new(Ipv4Addr::new(192, 0, 2, 7), 32, "x")
                .check()
                .is_ok()
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
    fn ack_parsing() {
        assert!(parse_ack(&0i32.to_ne_bytes(), 0).is_ok());
        let mut body = (-libc::EEXIST).to_ne_bytes().to_vec();
        body.extend_from_slice(&[0u8; 16]);
        let e = parse_ack(&body, NLM_F_CAPPED).unwrap_err();
        assert_eq!(e.errno, libc::EEXIST);
        assert!(parse_ack(&[1, 2], 0).is_err());
    }
}

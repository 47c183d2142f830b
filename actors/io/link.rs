//! Interface queries and settings through `SIOC*IF*` ioctls: index, MTU (the path-MTU
//! ceiling), up, and which interface holds an address.
//!
//! The ioctls act in the network namespace of the socket they are issued on: the functions
//! here open a datagram socket in the calling thread's namespace; the `_on` variants take
//! any socket (a netlink socket works too) so a long-lived handle stays in its namespace.

use std::ffi::CStr;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Builds an `ifreq` for `name`, refusing names the kernel cannot hold (IFNAMSIZ = 16).
fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.bytes().any(|b| b == 0 || b == b'/')
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?} (1..15 bytes, no '/' or NUL)"),
        ));
    }
    // SAFETY: all-zero is a valid ifreq.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

fn ioctl(
    fd: RawFd,
    op: libc::Ioctl,
    req: &mut libc::ifreq,
    what: &str,
    name: &str,
) -> io::Result<()> {
    // SAFETY: `req` is a valid ifreq for these SIOC*IF* requests.
    if unsafe { libc::ioctl(fd, op, req as *mut libc::ifreq) } < 0 {
        let e = io::Error::last_os_error();
        // ENODEV becomes NotFound, so callers can tell a missing interface from the rest.
        return Err(if e.raw_os_error() == Some(libc::ENODEV) {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{what} {name}: no such device"),
            )
        } else {
            io::Error::new(e.kind(), format!("{what} {name}: {e}"))
        });
    }
    Ok(())
}

/// A datagram socket in the calling thread's network namespace, for ioctls.
pub(super) fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Interface index of `name` in the namespace of socket `sock`.
pub fn interface_index_on(sock: &impl AsRawFd, name: &str) -> io::Result<u32> {
    let mut req = ifreq(name)?;
    ioctl(
        sock.as_raw_fd(),
        libc::SIOCGIFINDEX,
        &mut req,
        "interface index of",
        name,
    )?;
    // SAFETY: SIOCGIFINDEX filled the ifindex member.
    Ok(unsafe { req.ifr_ifru.ifru_ifindex } as u32)
}

#[cfg(test)]
/// Interface index of `name` (`if_nametoindex`).
pub fn interface_index(name: &str) -> io::Result<u32> {
    interface_index_on(&ioctl_socket()?, name)
}

/// Device MTU of interface `name` (`SIOCGIFMTU`): the ceiling for the path MTU of packets
/// leaving through it.
pub fn interface_mtu(name: &str) -> io::Result<u32> {
    let mut req = ifreq(name)?;
    ioctl(
        ioctl_socket()?.as_raw_fd(),
        libc::SIOCGIFMTU,
        &mut req,
        "MTU of",
        name,
    )?;
    // SAFETY: SIOCGIFMTU filled the mtu member.
    Ok(unsafe { req.ifr_ifru.ifru_mtu } as u32)
}

#[cfg(test)]
/// Sets the device MTU of interface `name` (`SIOCSIFMTU`, needs CAP_NET_ADMIN).
pub fn set_interface_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_mtu = mtu as libc::c_int;
    ioctl(
        ioctl_socket()?.as_raw_fd(),
        libc::SIOCSIFMTU,
        &mut req,
        "setting MTU of",
        name,
    )
}

#[cfg(test)]
/// Brings interface `name` up (`IFF_UP`, needs CAP_NET_ADMIN).
pub fn set_interface_up(name: &str) -> io::Result<()> {
    let sock = ioctl_socket()?;
    let mut req = ifreq(name)?;
    ioctl(
        sock.as_raw_fd(),
        libc::SIOCGIFFLAGS,
        &mut req,
        "flags of",
        name,
    )?;
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    ioctl(
        sock.as_raw_fd(),
        libc::SIOCSIFFLAGS,
        &mut req,
        "bringing up",
        name,
    )
}

/// Name of the interface that holds local address `addr`.
pub fn interface_with_address(addr: IpAddr) -> io::Result<String> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = None;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and its family says which struct it is.
        let a = unsafe {
            match (*ifa.ifa_addr).sa_family as libc::c_int {
                libc::AF_INET => {
                    let sin = &*ifa.ifa_addr.cast::<libc::sockaddr_in>();
                    Some(IpAddr::from(
                        u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                    ))
                }
                libc::AF_INET6 => {
                    let sin6 = &*ifa.ifa_addr.cast::<libc::sockaddr_in6>();
                    Some(IpAddr::from(sin6.sin6_addr.s6_addr))
                }
                _ => None,
            }
        };
        if a == Some(addr) {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            found = Some(
                unsafe { CStr::from_ptr(ifa.ifa_name) }
                    .to_string_lossy()
                    .into_owned(),
            );
            break;
        }
    }
    // SAFETY: head came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    found.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface holds address {addr}"),
        )
    })
}

/// Device MTU of the interface that holds local address `addr`, with its name.
pub fn mtu_of_address(addr: IpAddr) -> io::Result<(String, u32)> {
    let name = interface_with_address(addr)?;
    let mtu = interface_mtu(&name)?;
    Ok((name, mtu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_queries() {
        assert_eq!(interface_index("lo").unwrap(), 1);
        assert!(interface_mtu("lo").unwrap() >= 1280);
        let (name, mtu) = mtu_of_address("127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(name, "lo");
        assert_eq!(mtu, interface_mtu("lo").unwrap());
    }

    #[test]
    fn bad_names_are_reported() {
        let e = interface_mtu("no-such-if0").unwrap_err();
        assert_eq!(e.to_string(), "MTU of no-such-if0: no such device");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(interface_mtu("a-name-far-too-long").is_err());
        assert!(interface_with_address("192.0.2.254".parse().unwrap()).is_err());
    }
}

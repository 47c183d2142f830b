//! Routes to the remote protected networks through the tunnel device, per policy, removed when
//! the policy goes and when the daemon exits.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ikehub::config::NetworkSpec;

use crate::io::{Route, RouteError, RouteGuard};

/// The routes of one remote network the kernel refused (the others of it are in place).
#[derive(Debug)]
pub struct RoutesRefused(pub Vec<RouteError>);

impl std::fmt::Display for RoutesRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

pub struct Routes {
    guard: Option<RouteGuard>,
    dev: String,
    /// Preferred sources per family (`tunnel-device.source-address`): a route gets the one of
    /// its own family, or none (the kernel refuses a source of the other family).
    src_v4: Option<Ipv4Addr>,
    src_v6: Option<Ipv6Addr>,
    by_policy: HashMap<String, Vec<Route>>,
}

impl Routes {
    /// Installs routes via `dev`, with the preferred source of each route's family.
    pub fn new(
        dev: &str,
        src_v4: Option<Ipv4Addr>,
        src_v6: Option<Ipv6Addr>,
    ) -> std::io::Result<Self> {
        Ok(Routes {
            guard: Some(RouteGuard::new()?),
            dev: dev.to_string(),
            src_v4,
            src_v6,
            by_policy: HashMap::new(),
        })
    }

    /// No routes (no tunnel device, `routes = false`, or the in-process demo).
    pub fn disabled() -> Self {
        Routes {
            guard: None,
            dev: String::new(),
            src_v4: None,
            src_v6: None,
            by_policy: HashMap::new(),
        }
    }

    /// One route per CIDR block of `remote`. A block the kernel refuses (an operator's route
    /// to it already exists, say) does not keep the other blocks out: each is tried, and the
    /// refusals come back together.
    pub fn add(&mut self, policy: &str, remote: &NetworkSpec) -> Result<(), RoutesRefused> {
        let src = self.source_for(remote.first());
        let Some(guard) = self.guard.as_mut() else {
            return Ok(());
        };
        let mut refused = Vec::new();
        for (addr, len) in ikehub::spd::cidrs(remote) {
            let mut route = Route::new(addr, len, self.dev.clone());
            if let Some(src) = src {
                route = route.with_src(src);
            }
            match guard.add(route.clone()) {
                Ok(()) => self
                    .by_policy
                    .entry(policy.to_string())
                    .or_default()
                    .push(route),
                Err(e) => refused.push(e),
            }
        }
        if refused.is_empty() {
            Ok(())
        } else {
            Err(RoutesRefused(refused))
        }
    }

    /// The preferred source for a route to `dst`: the configured one of the same family.
    fn source_for(&self, dst: IpAddr) -> Option<IpAddr> {
        match dst {
            IpAddr::V4(_) => self.src_v4.map(IpAddr::V4),
            IpAddr::V6(_) => self.src_v6.map(IpAddr::V6),
        }
    }

    pub fn remove_policy(&mut self, policy: &str) {
        let (Some(guard), Some(routes)) = (self.guard.as_mut(), self.by_policy.remove(policy))
        else {
            return;
        };
        for r in routes {
            if let Err(e) = guard.remove(&r) {
                tracing::warn!(policy, "removing route: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A route takes the preferred source of its own family, never the other one (the kernel
    /// refuses an IPv4 `src` on an IPv6 route).
    #[test]
    fn source_of_the_routes_family() {
        let mut r = Routes::disabled();
        let v4: Ipv4Addr = "198.51.100.1".parse().unwrap();
        let v6: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let to4: IpAddr = "203.0.113.0".parse().unwrap();
        let to6: IpAddr = "2001:db8:2::".parse().unwrap();
        r.src_v4 = Some(v4);
        assert_eq!(r.source_for(to4), Some(IpAddr::V4(v4)));
        assert_eq!(r.source_for(to6), None);
        r.src_v6 = Some(v6);
        assert_eq!(r.source_for(to6), Some(IpAddr::V6(v6)));
        r.src_v4 = None;
        assert_eq!(r.source_for(to4), None);
    }
}

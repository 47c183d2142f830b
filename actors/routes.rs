//! Routes to the remote protected networks through the tunnel device, per policy, removed when
//! the policy goes and when the daemon exits.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

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
    src: Option<IpAddr>,
    by_policy: HashMap<String, Vec<Route>>,
}

impl Routes {
    /// Installs routes via `dev` (preferred source `src`; the policies' networks are IPv4).
    pub fn new(dev: &str, src: Option<Ipv4Addr>) -> std::io::Result<Self> {
        Ok(Routes {
            guard: Some(RouteGuard::new()?),
            dev: dev.to_string(),
            src: src.map(IpAddr::V4),
            by_policy: HashMap::new(),
        })
    }

    /// No routes (no tunnel device, `routes = false`, or the in-process demo).
    pub fn disabled() -> Self {
        Routes {
            guard: None,
            dev: String::new(),
            src: None,
            by_policy: HashMap::new(),
        }
    }

    /// One route per CIDR block of `remote`. A block the kernel refuses (an operator's route
    /// to it already exists, say) does not keep the other blocks out: each is tried, and the
    /// refusals come back together.
    pub fn add(&mut self, policy: &str, remote: &NetworkSpec) -> Result<(), RoutesRefused> {
        let Some(guard) = self.guard.as_mut() else {
            return Ok(());
        };
        let mut refused = Vec::new();
        for (addr, len) in ikehub::spd::cidrs(remote) {
            let mut route = Route::new(Ipv4Addr::from(addr), len, self.dev.clone());
            if let Some(src) = self.src {
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

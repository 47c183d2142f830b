//! Routes to the remote protected networks through the tunnel device, per policy, removed when
//! the policy goes and when the daemon exits.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use ikehub::config::NetworkSpec;

use crate::io::{Route, RouteError, RouteGuard};

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

    pub fn add(&mut self, policy: &str, remote: &NetworkSpec) -> Result<(), RouteError> {
        let Some(guard) = self.guard.as_mut() else {
            return Ok(());
        };
        for (addr, len) in ikehub::spd::cidrs(remote) {
            let mut route = Route::new(Ipv4Addr::from(addr), len, self.dev.clone());
            if let Some(src) = self.src {
                route = route.with_src(src);
            }
            guard.add(route.clone())?;
            self.by_policy
                .entry(policy.to_string())
                .or_default()
                .push(route);
        }
        Ok(())
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

//! The shard's copy of the security policy database: named policies with their outbound SPI,
//! indexed by `ikehub::spd::Spd` for the per-packet lookup. A new policy is added to the index
//! and an outbound SPI change is applied in place; a removal or a change of networks rebuilds
//! the index (the SPD has no removal). Among equally specific policies the one indexed first
//! wins; validation refuses ambiguous overlaps, so that only breaks ties that cannot matter.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use ikehub::config::ProtectedNetwork;
use ikehub::spd::{Policy, PolicyId, Spd};

#[derive(Default)]
pub struct ShardPolicies {
    named: BTreeMap<Arc<str>, (Vec<ProtectedNetwork>, Option<u32>)>,
    ids: HashMap<Arc<str>, PolicyId>,
    spd: Spd<u32>,
}

impl ShardPolicies {
    pub fn install(&mut self, name: Arc<str>, networks: Vec<ProtectedNetwork>, spi: Option<u32>) {
        if let (Some((old, _)), Some(id)) = (self.named.get(&name), self.ids.get(&name))
            && *old == networks
        {
            self.spd.set_outbound(*id, spi);
            self.named.insert(name, (networks, spi));
            return;
        }
        if let Some(entry) = self.named.get_mut(&name) {
            // Same name, other networks (e.g. the negotiated selectors replace a configured
            // policy's): rebuild, as for a removal. Rare.
            *entry = (networks, spi);
            self.rebuild();
            return;
        }
        // A new policy (a spoke coming up): indexed on its own, so bringing up N tunnels costs
        // O(N), not O(N^2).
        let id = self.spd.insert(Policy {
            name: name.to_string(),
            networks: networks.clone(),
            outbound: spi,
        });
        self.ids.insert(name.clone(), id);
        self.named.insert(name, (networks, spi));
    }

    /// Changes only the outbound SA of a policy; false when the policy is not installed.
    pub fn set_outbound(&mut self, name: &str, spi: Option<u32>) -> bool {
        let (Some(entry), Some(id)) = (self.named.get_mut(name), self.ids.get(name)) else {
            return false;
        };
        entry.1 = spi;
        self.spd.set_outbound(*id, spi)
    }

    pub fn remove(&mut self, name: &str) {
        if self.named.remove(name).is_some() {
            self.rebuild();
        }
    }

    fn rebuild(&mut self) {
        self.spd = Spd::new();
        self.ids.clear();
        for (name, (networks, spi)) in &self.named {
            let id = self.spd.insert(Policy {
                name: name.to_string(),
                networks: networks.clone(),
                outbound: *spi,
            });
            self.ids.insert(name.clone(), id);
        }
    }

    /// `None`: no policy covers the packet; `Some(None)`: a policy does but has no SA yet.
    pub fn lookup(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Option<Option<u32>> {
        self.spd.lookup(src, dst).map(|(_, p)| p.outbound)
    }

    /// The name of the policy covering a packet (for an Acquire).
    pub fn name_of(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Option<&str> {
        self.spd.lookup(src, dst).map(|(_, p)| p.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ikehub::config::NetworkSpec;

    fn pn(l: &str, r: &str) -> Vec<ProtectedNetwork> {
        vec![ProtectedNetwork {
            local: l.parse::<NetworkSpec>().unwrap(),
            remote: r.parse::<NetworkSpec>().unwrap(),
        }]
    }

    #[test]
    fn install_set_remove_and_lookup() {
        let mut p = ShardPolicies::default();
        let lan = Ipv4Addr::new(198, 51, 100, 1);
        p.install("a".into(), pn("198.51.100.0/24", "203.0.113.0/25"), None);
        p.install(
            "b".into(),
            pn("198.51.100.0/24", "203.0.113.128/25"),
            Some(900),
        );
        assert_eq!(p.lookup(lan, Ipv4Addr::new(203, 0, 113, 5)), Some(None));
        assert_eq!(
            p.lookup(lan, Ipv4Addr::new(203, 0, 113, 200)),
            Some(Some(900))
        );
        assert_eq!(p.lookup(lan, Ipv4Addr::new(192, 0, 2, 1)), None);
        assert!(p.set_outbound("a", Some(700)));
        assert_eq!(
            p.lookup(lan, Ipv4Addr::new(203, 0, 113, 5)),
            Some(Some(700))
        );
        assert_eq!(p.name_of(lan, Ipv4Addr::new(203, 0, 113, 5)), Some("a"));
        // New networks under the same name replace the old ones.
        p.install(
            "a".into(),
            pn("198.51.100.0/24", "203.0.113.0/26"),
            Some(701),
        );
        assert_eq!(p.lookup(lan, Ipv4Addr::new(203, 0, 113, 100)), None);
        assert_eq!(
            p.lookup(lan, Ipv4Addr::new(203, 0, 113, 5)),
            Some(Some(701))
        );
        p.remove("b");
        assert_eq!(p.lookup(lan, Ipv4Addr::new(203, 0, 113, 200)), None);
        assert!(!p.set_outbound("b", Some(1)));
    }
}

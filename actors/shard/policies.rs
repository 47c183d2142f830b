//! The shard's copy of the security policy database: named policies with their outbound SPI,
//! indexed by `ikehub::spd::Spd` for the per-packet lookup. Policy changes are rare (profile
//! load, tunnel up/down); an outbound SPI change is applied in place, a change of networks
//! rebuilds the index.

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
        self.named.insert(name, (networks, spi));
        self.rebuild();
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

    /// The name of the policy covering a packet (for an Acquire; not on the hot path).
    pub fn name_of(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Option<Arc<str>> {
        let (id, _) = self.spd.lookup(src, dst)?;
        self.ids
            .iter()
            .find(|(_, v)| **v == id)
            .map(|(k, _)| k.clone())
    }
}

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
}

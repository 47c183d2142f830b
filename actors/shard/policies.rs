//! The shard's copy of the security policy database, one entry per (policy, selectors) pair,
//! indexed by `ikehub::spd::Spd` for the per-packet lookup, which yields the handle of the
//! outbound SA (RFC 4301 §4.4.1: the SPD entry selects the SA; no peer-chosen number does).
//!
//! An entry is *configured* when the profile names its selectors (a manual policy's pairs, or a
//! single-peer IKE policy's pairs, which wait for an SA and trigger Acquires), or belongs to a
//! child SA pair that negotiated its own selectors. Each child SA pair points the entry of its
//! negotiated selectors at its outbound SA, so a policy with several protected-network pairs
//! carries all of them at once; a re-key points the same entry at the new SA before the old
//! one goes. When an SA goes, a configured entry returns to "no SA yet", a child's entry goes.
//! Among equally specific entries the one indexed first wins; validation refuses ambiguous
//! overlaps between policies, so that only breaks ties that cannot matter.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ikehub::config::ProtectedNetwork;
use ikehub::spd::{OneOrMany, Policy, PolicyId, Spd};

use super::SaHandle;

/// The key of one SPD entry: the policy (its name, or `policy@peer` for a spoke of a template)
/// and the selectors of the entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpdEntry {
    pub policy: Arc<str>,
    pub selectors: ProtectedNetwork,
}

/// What the shard adds to an SPD entry. Its selectors and outbound SA are the `Spd` policy's
/// own (one pair each), not copied here: a copy was 96 bytes per tunnel and shard
/// (docs/design.md "Per-tunnel memory budget").
struct EntryState {
    id: PolicyId,
    configured: bool,
}

#[derive(Default)]
pub struct ShardPolicies {
    /// The entries of each policy (one for a spoke, a handful at most), for installs and
    /// removals.
    by_policy: HashMap<Arc<str>, OneOrMany<EntryState>>,
    spd: Spd<SaHandle>,
}

/// The selectors of the entry `id` (each entry holds exactly one pair).
fn selectors_of(spd: &Spd<SaHandle>, id: PolicyId) -> Option<&ProtectedNetwork> {
    spd.get(id)?.networks.first()
}

fn outbound_of(spd: &Spd<SaHandle>, id: PolicyId) -> Option<SaHandle> {
    spd.get(id)?.outbound
}

impl ShardPolicies {
    /// The configured entries of `policy` become exactly `networks`, each pointing at
    /// `outbound` (a manual policy's SA); with `None`, an entry a child SA already serves
    /// keeps that SA.
    pub fn install(
        &mut self,
        policy: Arc<str>,
        networks: &[ProtectedNetwork],
        outbound: Option<SaHandle>,
    ) {
        if let Some(entries) = self.by_policy.get_mut(&policy) {
            let spd = &mut self.spd;
            entries.retain(|e| {
                let keep =
                    !e.configured || selectors_of(spd, e.id).is_some_and(|s| networks.contains(s));
                if !keep {
                    spd.remove(e.id);
                }
                keep
            });
        }
        for pn in networks {
            match self.find(&policy, pn) {
                Some(e) => {
                    e.configured = true;
                    let id = e.id;
                    if outbound.is_some() {
                        self.spd.set_outbound(id, outbound);
                    }
                }
                None => self.insert(policy.clone(), *pn, outbound, true),
            }
        }
    }

    /// Points the entry for these selectors at a child's outbound SA, adding the entry if the
    /// profile does not configure it (negotiated narrower selectors, a template's spoke).
    pub fn set(&mut self, entry: &SpdEntry, outbound: SaHandle) {
        match self.find(&entry.policy, &entry.selectors) {
            Some(e) => {
                let id = e.id;
                self.spd.set_outbound(id, Some(outbound));
            }
            None => self.insert(entry.policy.clone(), entry.selectors, Some(outbound), false),
        }
    }

    /// The outbound SA `handle` is going: the policy's entries that point at it return to
    /// "no SA yet" when configured and are removed otherwise.
    pub fn detach(&mut self, policy: &str, handle: SaHandle) {
        let Some(entries) = self.by_policy.get_mut(policy) else {
            return;
        };
        let spd = &mut self.spd;
        entries.retain(|e| {
            if outbound_of(spd, e.id) != Some(handle) {
                return true;
            }
            if e.configured {
                spd.set_outbound(e.id, None);
                true
            } else {
                spd.remove(e.id);
                false
            }
        });
        if entries.is_empty() {
            self.by_policy.remove(policy);
        }
    }

    /// Removes every entry of a policy.
    pub fn remove(&mut self, policy: &str) {
        for e in self.by_policy.remove(policy).unwrap_or_default().iter() {
            self.spd.remove(e.id);
        }
    }

    fn find(&mut self, policy: &str, selectors: &ProtectedNetwork) -> Option<&mut EntryState> {
        let spd = &self.spd;
        self.by_policy
            .get_mut(policy)?
            .iter_mut()
            .find(|e| selectors_of(spd, e.id) == Some(selectors))
    }

    fn insert(
        &mut self,
        policy: Arc<str>,
        selectors: ProtectedNetwork,
        outbound: Option<SaHandle>,
        configured: bool,
    ) {
        // The name is the policy's `Arc`, not a string per entry.
        let id = self.spd.insert(Policy {
            name: policy.clone(),
            networks: OneOrMany::One(selectors),
            outbound,
        });
        self.by_policy
            .entry(policy)
            .or_default()
            .push(EntryState { id, configured });
    }

    /// `None`: no entry covers the packet; `Some(None)`: one does but has no SA yet.
    pub fn lookup(
        &self,
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
    ) -> Option<Option<SaHandle>> {
        self.spd.lookup(src, dst).map(|(_, p)| p.outbound)
    }

    /// The name of the policy covering a packet (for an Acquire).
    pub fn name_of(&self, src: impl Into<IpAddr>, dst: impl Into<IpAddr>) -> Option<&str> {
        self.spd.lookup(src, dst).map(|(_, p)| &*p.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ikehub::config::NetworkSpec;
    use std::net::Ipv4Addr;

    fn pn(l: &str, r: &str) -> ProtectedNetwork {
        ProtectedNetwork {
            local: l.parse::<NetworkSpec>().unwrap(),
            remote: r.parse::<NetworkSpec>().unwrap(),
        }
    }

    fn entry(policy: &str, l: &str, r: &str) -> SpdEntry {
        SpdEntry {
            policy: policy.into(),
            selectors: pn(l, r),
        }
    }

    const LAN: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

    fn dst(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(203, 0, 113, last)
    }

    #[test]
    fn configured_entries_wait_for_an_sa_and_return_to_waiting() {
        let mut p = ShardPolicies::default();
        let (h1, h2) = (SaHandle::issue(), SaHandle::issue());
        p.install("a".into(), &[pn("198.51.100.0/24", "203.0.113.0/25")], None);
        p.install(
            "b".into(),
            &[pn("198.51.100.0/24", "203.0.113.128/25")],
            Some(h2),
        );
        assert_eq!(p.lookup(LAN, dst(5)), Some(None));
        assert_eq!(p.lookup(LAN, dst(200)), Some(Some(h2)));
        assert_eq!(p.lookup(LAN, Ipv4Addr::new(192, 0, 2, 1)), None);
        p.set(&entry("a", "198.51.100.0/24", "203.0.113.0/25"), h1);
        assert_eq!(p.lookup(LAN, dst(5)), Some(Some(h1)));
        assert_eq!(p.name_of(LAN, dst(5)), Some("a"));
        // A reload re-installing the configured entries keeps the child's SA.
        p.install("a".into(), &[pn("198.51.100.0/24", "203.0.113.0/25")], None);
        assert_eq!(p.lookup(LAN, dst(5)), Some(Some(h1)));
        // The child goes: the configured entry waits again (cleartext triggers an Acquire).
        p.detach("a", h1);
        assert_eq!(p.lookup(LAN, dst(5)), Some(None));
        // Other configured networks replace the old ones.
        p.install("a".into(), &[pn("198.51.100.0/24", "203.0.113.0/26")], None);
        assert_eq!(p.lookup(LAN, dst(100)), None);
        assert_eq!(p.lookup(LAN, dst(5)), Some(None));
        p.remove("b");
        assert_eq!(p.lookup(LAN, dst(200)), None);
    }

    /// Two pairs of one policy: a policy with two protected-network pairs keeps both in the SPD,
    /// each on its own child's SA (the old code kept one entry per policy, the last child's).
    #[test]
    fn each_child_owns_the_entry_of_its_selectors() {
        let mut p = ShardPolicies::default();
        let pairs = [
            pn("198.51.100.0/24", "203.0.113.0/25"),
            pn("198.51.100.0/24", "203.0.113.128/25"),
        ];
        p.install("two".into(), &pairs, None);
        let (c1, c2) = (SaHandle::issue(), SaHandle::issue());
        p.set(&entry("two", "198.51.100.0/24", "203.0.113.0/25"), c1);
        p.set(&entry("two", "198.51.100.0/24", "203.0.113.128/25"), c2);
        assert_eq!(p.lookup(LAN, dst(5)), Some(Some(c1)));
        assert_eq!(p.lookup(LAN, dst(200)), Some(Some(c2)));

        // Re-key of the first pair: the entry moves to the new SA before the old one goes;
        // the old SA's removal then leaves it alone.
        let c1b = SaHandle::issue();
        p.set(&entry("two", "198.51.100.0/24", "203.0.113.0/25"), c1b);
        assert_eq!(p.lookup(LAN, dst(5)), Some(Some(c1b)));
        p.detach("two", c1);
        assert_eq!(p.lookup(LAN, dst(5)), Some(Some(c1b)));
        assert_eq!(p.lookup(LAN, dst(200)), Some(Some(c2)));

        // A child with narrower negotiated selectors gets its own entry, which goes with it.
        let narrow = SaHandle::issue();
        p.set(&entry("two", "198.51.100.0/24", "203.0.113.200"), narrow);
        assert_eq!(p.lookup(LAN, dst(200)), Some(Some(narrow)));
        assert_eq!(p.lookup(LAN, dst(201)), Some(Some(c2)));
        p.detach("two", narrow);
        assert_eq!(p.lookup(LAN, dst(200)), Some(Some(c2)));

        p.detach("two", c2);
        assert_eq!(p.lookup(LAN, dst(200)), Some(None));
        assert_eq!(p.lookup(LAN, dst(5)), Some(Some(c1b)));
    }

    #[test]
    fn a_spoke_entries_go_with_their_sas() {
        let mut p = ShardPolicies::default();
        let h = SaHandle::issue();
        p.set(
            &entry("T@192.0.2.7", "198.51.100.0/24", "203.0.113.0/28"),
            h,
        );
        assert_eq!(p.lookup(LAN, dst(3)), Some(Some(h)));
        p.detach("T@192.0.2.7", h);
        assert_eq!(p.lookup(LAN, dst(3)), None);
        p.set(
            &entry("T@192.0.2.7", "198.51.100.0/24", "203.0.113.0/28"),
            h,
        );
        p.remove("T@192.0.2.7");
        assert_eq!(p.lookup(LAN, dst(3)), None);
        assert!(p.by_policy.is_empty());
    }
}

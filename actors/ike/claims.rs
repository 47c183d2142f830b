//! Which peer holds which remote protected network. Two spokes of a template policy may each
//! propose any network inside the template's, so they can collide: the later one is refused
//! (its SAs are not installed and it is told to go away), because cleartext for that network
//! could only go to one of them. Checked once per child SA, in O(log n).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ikehub::config::NetworkSpec;

/// Remote networks by their first address: (last address, holder). Never overlapping.
type ClaimMap = BTreeMap<u32, (u32, Arc<str>)>;

#[derive(Clone, Default)]
pub struct Claims(Arc<Mutex<ClaimMap>>);

impl Claims {
    /// Claims `net` for `holder`. `Err(other holder)` when someone else holds an overlapping
    /// network; a holder may claim again what it holds (re-keys).
    pub fn claim(&self, holder: &Arc<str>, net: &NetworkSpec) -> Result<(), Arc<str>> {
        let (first, last) = (u32::from(net.first()), u32::from(net.last()));
        let Ok(mut map) = self.0.lock() else {
            return Ok(());
        };
        let before = map.range(..=first).next_back();
        let inside = map.range(first..=last);
        for (_, (_, h)) in before
            .filter(|(_, (l, _))| *l >= first)
            .into_iter()
            .chain(inside)
        {
            if h != holder {
                return Err(h.clone());
            }
        }
        map.retain(|f, (l, h)| !(h == holder && *f <= last && *l >= first));
        map.insert(first, (last, holder.clone()));
        Ok(())
    }

    /// Gives back everything `holder` claimed.
    pub fn release(&self, holder: &Arc<str>) {
        if let Ok(mut map) = self.0.lock() {
            map.retain(|_, (_, h)| h != holder);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_overlapping_claims_are_refused() {
        let c = Claims::default();
        let a: Arc<str> = Arc::from("Branches@192.0.2.10");
        let b: Arc<str> = Arc::from("Branches@192.0.2.11");
        let net = |s: &str| s.parse::<NetworkSpec>().unwrap();
        assert!(c.claim(&a, &net("203.0.113.0/25")).is_ok());
        assert!(c.claim(&a, &net("203.0.113.0/25")).is_ok(), "re-key");
        assert_eq!(c.claim(&b, &net("203.0.113.64/26")), Err(a.clone()));
        assert_eq!(c.claim(&b, &net("203.0.113.0/24")), Err(a.clone()));
        assert!(c.claim(&b, &net("203.0.113.128/25")).is_ok());
        c.release(&a);
        assert!(c.claim(&b, &net("203.0.113.0/26")).is_ok());
    }
}

//! The daemon's one protected-network claim table (`ikehub::claims`), shared by the router
//! (reservations at load and reload) and the peer actors (claims when a child SA is installed,
//! and the quick-mode check through `SelectorGuard`).

use std::sync::{Arc, Mutex, MutexGuard};

use actix::Addr;
use ikehub::claims::{ClaimTable, Claimant, Refusal};
use ikehub::config::{Profiles, ProtectedNetwork};
use ikehub::ike::SelectorGuard;

use super::router::{ClaimContested, IkeRouter};

#[derive(Clone, Debug, Default)]
pub struct Claims(Arc<Mutex<ClaimTable>>);

/// Who a peer actor claims for: a single-peer policy holds its own reservation (`spd_key` is
/// the policy name); a template spoke holds its pairs under `policy@address`.
fn claimant(spd_key: &str, template: bool) -> Claimant<'_> {
    if template {
        Claimant::Spoke(spd_key)
    } else {
        Claimant::Policy(spd_key)
    }
}

impl Claims {
    /// Reserves the networks of every manual and single-peer IKE policy of the loaded profiles.
    pub fn new(profiles: &Profiles) -> Self {
        Self(Arc::new(Mutex::new(ClaimTable::new(profiles))))
    }

    fn table(&self) -> MutexGuard<'_, ClaimTable> {
        // Fail closed: no code path panics half-way through a table update, so the data behind
        // a poisoned lock is still consistent and the refusals must keep working.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A reload: the new reservations; returns the spokes that held what is now reserved.
    pub fn reserve(&self, profiles: &Profiles) -> Vec<Arc<str>> {
        self.table().reserve(profiles)
    }

    pub fn claim(
        &self,
        spd_key: &str,
        template: bool,
        pair: &ProtectedNetwork,
    ) -> Result<(), Box<Refusal>> {
        self.table().claim(claimant(spd_key, template), pair)
    }

    /// Gives back everything `holder` claimed.
    pub fn release(&self, holder: &str) {
        self.table().release(holder);
    }

    /// Pairs refused so far.
    pub fn refused(&self) -> u64 {
        self.table().refused()
    }

    /// The quick-mode check for one peer. A pair refused because another spoke holds it is
    /// reported to `contested`: that holder may be this very spoke before a restart behind a
    /// NAT, and is asked to prove it is alive (the router's `ClaimContested`).
    pub fn guard(
        &self,
        spd_key: Arc<str>,
        template: bool,
        contested: Arc<Addr<IkeRouter>>,
    ) -> Arc<dyn SelectorGuard> {
        Arc::new(Guard {
            claims: self.clone(),
            spd_key,
            template,
            contested,
        })
    }
}

struct Guard {
    claims: Claims,
    spd_key: Arc<str>,
    template: bool,
    /// The router (`ClaimContested`), shared with every peer.
    contested: Arc<Addr<IkeRouter>>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("spd_key", &self.spd_key)
            .field("template", &self.template)
            .finish()
    }
}

impl SelectorGuard for Guard {
    fn check(&self, pair: &ProtectedNetwork) -> Result<(), String> {
        let mut t = self.claims.table();
        let who = claimant(&self.spd_key, self.template);
        // Counted like a refusal at install time, but nothing is held until the SAs are.
        t.check(who, pair).map_err(|r| {
            t.count_refusal();
            if !r.reserved {
                self.contested.do_send(ClaimContested {
                    holder: Arc::from(r.by.as_str()),
                });
            }
            r.to_string()
        })
    }
}

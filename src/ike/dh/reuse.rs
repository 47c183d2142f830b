//! Responder DH key pairs reused for a bounded time (`dh-key-reuse-seconds`, off by default).
//!
//! A main-mode responder spends one fixed-base exponentiation (g^x) per exchange on its own
//! public value. Reusing one key pair per group for a few seconds removes that work during a
//! re-key storm, as RFC 7296 §2.12 allows for IKEv2 (the reasoning holds for IKEv1: the
//! nonces Ni and Nr enter SKEYID, so every exchange still gets its own keys).
//!
//! What it costs: forward secrecy is bounded by the reuse window instead of one exchange. The
//! exponent x stays in memory until the last exchange that took it has derived its keys; an
//! attacker who reads it (memory disclosure, a core dump) in that time can compute g^xy, and
//! with the PSK SKEYID, of every main mode answered with that pair, instead of one. Small
//! subgroup probing of a reused x needs a peer value of small order: in the MODP groups, whose
//! primes are safe, those are 1 and p-1 only, which [`DhGroup::check_public`] refuses before
//! any exponentiation.
//!
//! Sans-IO like the rest of the core: the clock and the RNG are the caller's.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::CryptoRng;

use super::{DhGroup, DhPrivate};

/// A private exponent with its public value, computed once.
#[derive(Debug)]
pub struct DhKeyPair {
    private: DhPrivate,
    public: Vec<u8>,
}

impl DhKeyPair {
    /// A fresh pair: `group.exponent_bits()` random bits and g^x.
    pub fn generate<R: CryptoRng + ?Sized>(group: DhGroup, rng: &mut R) -> Self {
        let private = DhPrivate::generate(group, rng);
        let public = private.public_value();
        Self { private, public }
    }

    pub fn private(&self) -> &DhPrivate {
        &self.private
    }

    /// g^x, `group.len()` bytes (the KE payload's Key Exchange Data).
    pub fn public(&self) -> &[u8] {
        &self.public
    }
}

/// At most this many groups are cached (1, 2, 5, 14, 15, 16 today).
const SLOTS: usize = 8;

/// The responder key pairs of one daemon, one per DH group, each replaced once older than the
/// asking policy's window. Shared by every session that allows reuse (`IkeSession::
/// set_dh_key_cache`); a lock held for a lookup, or for one g^x when the pair is replaced.
#[derive(Debug, Default)]
pub struct DhKeyCache {
    slots: Mutex<Vec<(DhGroup, Instant, Arc<DhKeyPair>)>>,
}

impl DhKeyCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The pair for `group` if it was made at most `max_age` before `now`, else a new one
    /// (which replaces the old; exchanges that took the old keep it until they finish, and its
    /// exponent is wiped when the last of them drops it).
    pub fn responder_key(
        &self,
        group: DhGroup,
        now: Instant,
        max_age: Duration,
        rng: &mut (dyn CryptoRng + Send),
    ) -> Arc<DhKeyPair> {
        let mut slots = match self.slots.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(i) = slots.iter().position(|(g, _, _)| *g == group) {
            let (_, made, pair) = &slots[i];
            // A pair from the future (a clock that went back) is not trusted either.
            if *made <= now && now.duration_since(*made) <= max_age {
                return Arc::clone(pair);
            }
            slots.swap_remove(i);
        }
        let pair = Arc::new(DhKeyPair::generate(group, rng));
        if slots.len() >= SLOTS {
            slots.remove(0);
        }
        slots.push((group, now, Arc::clone(&pair)));
        pair
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn group(id: u16) -> DhGroup {
        DhGroup::from_id(id).unwrap()
    }

    #[test]
    fn a_pair_is_reused_within_the_window_and_replaced_after_it() {
        let cache = DhKeyCache::new();
        let mut rng = StdRng::seed_from_u64(7);
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let a = cache.responder_key(group(2), t0, w, &mut rng);
        let b = cache.responder_key(group(2), t0 + w, w, &mut rng);
        assert!(Arc::ptr_eq(&a, &b), "reused at the edge of the window");
        let c = cache.responder_key(group(2), t0 + w + Duration::from_millis(1), w, &mut rng);
        assert!(!Arc::ptr_eq(&a, &c), "replaced once older than the window");
        assert_ne!(a.public(), c.public());
        // A policy with a shorter window does not take a pair older than its own window.
        let d = cache.responder_key(
            group(2),
            t0 + w + Duration::from_secs(3),
            Duration::from_secs(2),
            &mut rng,
        );
        assert!(!Arc::ptr_eq(&c, &d));
    }

    #[test]
    fn each_group_has_its_own_pair_and_the_pairs_agree_with_a_fresh_exchange() {
        let cache = DhKeyCache::new();
        let mut rng = StdRng::seed_from_u64(8);
        let t0 = Instant::now();
        let w = Duration::from_secs(60);
        let g2 = cache.responder_key(group(2), t0, w, &mut rng);
        let g14 = cache.responder_key(group(14), t0, w, &mut rng);
        assert_eq!(g2.public().len(), 128);
        assert_eq!(g14.public().len(), 256);
        assert!(Arc::ptr_eq(
            &g2,
            &cache.responder_key(group(2), t0, w, &mut rng)
        ));
        // Two peers answered with one reused pair get different shared secrets, each equal to
        // what the peer computes.
        for _ in 0..2 {
            let peer = DhKeyPair::generate(group(14), &mut rng);
            let ours = g14.private().shared_secret(peer.public()).unwrap();
            let theirs = peer.private().shared_secret(g14.public()).unwrap();
            assert_eq!(ours.as_bytes(), theirs.as_bytes());
        }
    }

    #[test]
    fn a_clock_that_went_back_gets_a_new_pair() {
        let cache = DhKeyCache::new();
        let mut rng = StdRng::seed_from_u64(9);
        let t1 = Instant::now() + Duration::from_secs(100);
        let w = Duration::from_secs(60);
        let a = cache.responder_key(group(2), t1, w, &mut rng);
        let b = cache.responder_key(group(2), t1 - Duration::from_secs(1), w, &mut rng);
        assert!(!Arc::ptr_eq(&a, &b));
    }
}

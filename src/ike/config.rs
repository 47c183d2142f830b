//! What one IKE session needs to know about its policy: built once from the validated
//! `ipsec-policy-isakmp` profile and its interface, shared (`Arc`) by the session and the daemon.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{
    Dpd, Initiate, Interface, IpsecTransform, IsakmpPolicy, IsakmpTransform, KeyBytes, LocalId,
    ProtectedNetwork, RemoteId,
};

/// Retransmission of requests we are waiting an answer for (RFC 2408 §5 leaves the schedule to
/// the implementation). Transmission `k` (0-based) waits `initial * backoff^k` for its answer;
/// after `max_tries` transmissions the last wait ends in a `Failed` event.
/// With the defaults (1 s, x2, 5 tries) the message goes out at 0, 1, 3, 7, 15 s and the
/// exchange is given up at 31 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetransmitConfig {
    /// Wait after the first transmission.
    pub initial: Duration,
    /// Factor applied to the wait after each retransmission.
    pub backoff: u32,
    /// Upper bound of one wait.
    pub max_interval: Duration,
    /// Total transmissions (first one included).
    pub max_tries: u32,
}

impl Default for RetransmitConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            backoff: 2,
            max_interval: Duration::from_secs(60),
            max_tries: 5,
        }
    }
}

impl RetransmitConfig {
    /// The wait after transmission `k` (0-based).
    pub fn wait(&self, k: u32) -> Duration {
        let mut d = self.initial;
        for _ in 0..k {
            d = d.saturating_mul(self.backoff.max(1));
            if d >= self.max_interval {
                return self.max_interval;
            }
        }
        d.min(self.max_interval)
    }

    /// Time from the first transmission until the exchange is given up.
    pub fn total(&self) -> Duration {
        (0..self.max_tries.max(1)).map(|k| self.wait(k)).sum()
    }
}

/// When SAs are renewed (RFC 2409 §4.5 leaves this to the implementation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RekeyConfig {
    /// Soft lifetime as a percentage of the hard one: re-keying starts there.
    pub soft_percent: u8,
    /// Random jitter subtracted from the soft lifetime, as a percentage of the hard one, so that
    /// both ends do not start at the same moment (0 = deterministic).
    pub jitter_percent: u8,
    /// How long the replaced child SA pair is kept after its successor is installed (packets in
    /// flight, the peer switching over), before we send its delete.
    pub grace: Duration,
    /// How long the replaced ISAKMP SA is kept after its successor is established.
    pub isakmp_grace: Duration,
}

impl Default for RekeyConfig {
    fn default() -> Self {
        Self {
            soft_percent: 90,
            jitter_percent: 5,
            grace: Duration::from_secs(10),
            isakmp_grace: Duration::from_secs(10),
        }
    }
}

/// NAT traversal (RFC 3947).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatConfig {
    /// Offer/accept NAT-T (vendor IDs, NAT-D, floating, UDP encapsulation).
    pub enabled: bool,
    /// Pretend to be behind a NAT (strongSwan `forceencaps`): our own NAT-D hash is sent
    /// deliberately wrong, so both sides use UDP encapsulation.
    pub force_encapsulation: bool,
    /// RFC 3948 §4: NAT keepalives from the side behind a NAT.
    pub keepalive_interval: Duration,
    /// Our UDP ports: IKE (500) and NAT-T (4500).
    pub ike_port: u16,
    pub nat_t_port: u16,
}

impl Default for NatConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            force_encapsulation: false,
            keepalive_interval: Duration::from_secs(20),
            ike_port: 500,
            nat_t_port: 4500,
        }
    }
}

/// The policy as the IKE session sees it.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// Policy name (log lines, `Failed` reasons).
    pub policy: String,
    /// The pre-shared key (RFC 2409 §5.4).
    pub preshared_key: KeyBytes,
    /// Phase-1 suites, offered and accepted in this order of preference.
    pub isakmp_transforms: Vec<Arc<IsakmpTransform>>,
    /// Phase-2 suites, offered and accepted in this order of preference.
    pub ipsec_transforms: Vec<Arc<IpsecTransform>>,
    /// PFS group for quick mode; `None` = no PFS (a peer proposing PFS is then refused).
    pub pfs_group: Option<u16>,
    /// Whether we start exchanges on our own (permanent), on demand, or never.
    pub initiate: Initiate,
    /// NAT traversal.
    pub nat: NatConfig,
    /// Dead peer detection (RFC 3706); `None` = off (we still answer R-U-THERE).
    pub dpd: Option<Dpd>,
    /// The protected networks: quick-mode identities and the SAs' selectors.
    pub protected_networks: Vec<ProtectedNetwork>,
    /// Retransmission schedule.
    pub retransmit: RetransmitConfig,
    /// Renewal of SAs.
    pub rekey: RekeyConfig,
    /// Responder main modes one session holds at the same time (flood bound, DESIGN §6).
    pub max_half_open: usize,
    /// Replay window for IKE-keyed inbound SAs when the transform does not set one.
    pub default_replay_window: u32,
    /// Asked before quick mode accepts a pair the peer proposed (a template spoke may not take
    /// networks other policies own, `claims.rs`); `None` = the policy's networks are enough.
    /// A session's own guard (`IkeSession::set_selector_guard`) wins over this one.
    pub selector_guard: Option<Arc<dyn SelectorGuard>>,
    /// Phase-1 ID we send in main mode message 5/6 (`local-id`).
    pub local_id: LocalId,
    /// Phase-1 IDs the peer may send (`remote-id`), checked once HASH_I/HASH_R verified.
    pub remote_id: RemoteId,
    /// As responder, answer main modes with a DH key pair made at most this long ago
    /// (`dh-key-reuse-seconds`; `None` = a fresh pair per exchange, the default). Needs the
    /// session's cache (`IkeSession::set_dh_key_cache`).
    pub dh_key_reuse: Option<Duration>,
}

impl PeerConfig {
    /// From the validated profile and the interface it is bound to.
    pub fn from_policy(policy: &IsakmpPolicy, interface: &Interface) -> Self {
        Self {
            policy: policy.name.clone(),
            preshared_key: policy.preshared_key.clone(),
            isakmp_transforms: policy.isakmp_transforms.clone(),
            ipsec_transforms: policy.ipsec_transforms.clone(),
            pfs_group: policy.pfs_group,
            initiate: policy.initiate,
            nat: NatConfig {
                enabled: policy.nat_traversal,
                ike_port: interface.ike_port,
                nat_t_port: interface.nat_t_port,
                ..NatConfig::default()
            },
            dpd: policy.dpd,
            protected_networks: policy.protected_networks.clone(),
            retransmit: RetransmitConfig::default(),
            rekey: RekeyConfig::default(),
            max_half_open: 4,
            default_replay_window: crate::config::defaults::IKE_REPLAY_WINDOW,
            selector_guard: None,
            local_id: policy.local_id.clone(),
            remote_id: policy.remote_id.clone(),
            dh_key_reuse: (policy.dh_key_reuse_seconds > 0)
                .then(|| Duration::from_secs(u64::from(policy.dh_key_reuse_seconds))),
        }
    }
}

/// The daemon's word on a pair quick mode is about to agree to (responder side): it lies inside
/// the policy, but may belong to another policy or spoke. Checked before anything is
/// installed, so the refusal is an INVALID-ID-INFORMATION notify rather than SAs built and then
/// deleted. The daemon checks again when it installs (two spokes may race).
pub trait SelectorGuard: Send + Sync + std::fmt::Debug {
    /// `Err(reason)` names who owns the pair.
    fn check(&self, pair: &ProtectedNetwork) -> Result<(), String>;
}

/// Chooses the SPIs of our inbound child SAs. The daemon implements it over all peers so that
/// SPIs are unique on the host; they must lie outside 1-255 (RFC 4303 §2.1) and never be 0.
pub trait SpiAllocator: Send + Sync {
    /// A fresh SPI nobody uses. `hint` is a random value the allocator may take as it is.
    fn allocate(&self, hint: u32) -> u32;
    /// The SPI is no longer used (SA deleted, or the exchange that reserved it failed).
    fn release(&self, spi: u32);
}

/// The allocator for tests and single-peer use: takes the hint, moved out of the reserved range.
#[derive(Debug, Default)]
pub struct RandomSpis;

impl SpiAllocator for RandomSpis {
    fn allocate(&self, hint: u32) -> u32 {
        if hint < 256 { hint | 0x1000_0000 } else { hint }
    }
    fn release(&self, _spi: u32) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_gives_up_at_31_seconds() {
        let r = RetransmitConfig::default();
        let waits: Vec<u64> = (0..5).map(|k| r.wait(k).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16]);
        assert_eq!(r.total(), Duration::from_secs(31));
    }
}

#[cfg(test)]
mod from_policy_tests {
    use super::*;
    use crate::config::{NetworkSpec, PeerSpec};

    #[test]
    fn built_from_profile() {
        let iface = Interface {
            name: "wan".into(),
            address: "192.0.2.1".parse().unwrap(),
            device: None,
            ike_port: 500,
            nat_t_port: 4501,
        };
        let pol = IsakmpPolicy {
            name: "Branches".into(),
            interface: "wan".into(),
            peer: PeerSpec::Any,
            preshared_key: KeyBytes(b"k".to_vec()),
            isakmp_transforms: Vec::new(),
            ipsec_transforms: Vec::new(),
            pfs_group: Some(14),
            initiate: Initiate::Never,
            nat_traversal: false,
            dpd: Some(Dpd {
                interval_seconds: 30,
                timeout_seconds: 120,
            }),
            protected_networks: vec![ProtectedNetwork {
                local: NetworkSpec::ANY,
                remote: NetworkSpec::ANY,
            }],
            local_id: LocalId::Fqdn("hub.example.net".into()),
            remote_id: "fqdn:*.branches.example.net".parse().unwrap(),
            dh_key_reuse_seconds: 45,
        };
        let c = PeerConfig::from_policy(&pol, &iface);
        assert_eq!(c.dh_key_reuse, Some(Duration::from_secs(45)));
        assert_eq!(c.policy, "Branches");
        assert_eq!(c.pfs_group, Some(14));
        assert!(!c.nat.enabled);
        assert_eq!(c.nat.nat_t_port, 4501);
        assert_eq!(c.retransmit.max_tries, 5);
        assert_eq!(c.default_replay_window, 64);
        assert_eq!(c.local_id.to_string(), "fqdn:hub.example.net");
        assert_eq!(c.remote_id.to_string(), "fqdn:*.branches.example.net");
    }
}

//! The bodies of the fuzz targets in `fuzz/`: each target is a one-line shim over a `run` here,
//! and each `run` has a unit test that pushes a few hundred fixed and pseudo-random inputs
//! through it, so `cargo test` covers the harnesses without cargo-fuzz.
//!
//! ```text
//! responder.rs    ike_responder    initiator <-> responder through a hostile network, spoofed
//!                                  source addresses and ports, NAT-T port with/without marker
//! established.rs  ike_established  fuzzed but authentic quick mode / informational payloads
//!                                  under a real ISAKMP SA (correct IV chain and HASH)
//! esp.rs          esp_encap        arbitrary cleartext and SA parameters through encap, decap
//!                                  of the result must give the cleartext back;
//!                 esp_decap        arbitrary bytes into decap of several suites
//! decoders.rs     isakmp_decode, wire_headers   the parsers, with re-encode round trips
//! ipv6.rs         ipv6             IPv6 header, extension-header walk, AH zeroing, ICMPv6
//! ```
//!
//! Under `--cfg fuzzing` (cargo-fuzz) the sessions use the 64-bit DH group of
//! [`super::dh::DhGroup`] so that an input costs microseconds, not a main mode of
//! milliseconds; the unit tests (normal builds, where that group does not exist) use group 1.
//! Every other code path is the same in both.

use std::sync::Arc;

use crate::config::{
    Dpd, HashAlgorithm, Initiate, IpsecTransform, IsakmpTransform, KeyBytes, NetworkSpec,
    ProtectedNetwork,
};
use crate::crypto::{AuthAlgorithm, EncrAlgorithm};

use super::config::{NatConfig, PeerConfig, RekeyConfig, RetransmitConfig};

pub mod decoders;
pub mod esp;
pub mod established;
pub mod ipv6;
pub mod responder;

pub use responder::run;

/// The DH group (phase 1 and PFS) of the harness sessions: the cheap 64-bit group when fuzzing.
#[cfg(fuzzing)]
pub(crate) const GROUP: u16 = super::dh::FUZZ_GROUP_ID;
/// The DH group (phase 1 and PFS) of the harness sessions: group 1, the cheapest real one.
#[cfg(not(fuzzing))]
pub(crate) const GROUP: u16 = 1;

/// The policy of side A (`initiator`, 10.1/16 behind it) or side B (10.2/16).
/// The initiator (A, forcing UDP encapsulation when bit 0 of `seed` is set) and the responder
/// (B) of the session harnesses, on port 500, their RNGs seeded from `seed`.
pub(crate) fn pair(
    now: std::time::Instant,
    seed: u8,
    a_addr: std::net::SocketAddr,
    b_addr: std::net::SocketAddr,
) -> [super::IkeSession; 2] {
    use rand::SeedableRng;
    let rng = |n: u64| Box::new(rand::rngs::StdRng::seed_from_u64(n));
    let mut a_cfg = peer_config(true);
    a_cfg.nat.force_encapsulation = seed & 1 != 0;
    [
        super::IkeSession::new_initiator(
            Arc::new(a_cfg),
            a_addr,
            b_addr,
            now,
            rng(u64::from(seed)),
            Arc::new(super::RandomSpis),
        ),
        super::IkeSession::new_responder(
            Arc::new(peer_config(false)),
            b_addr,
            a_addr,
            now,
            rng(u64::from(seed) + 1),
            Arc::new(super::RandomSpis),
        ),
    ]
}

pub(crate) fn peer_config(initiator: bool) -> PeerConfig {
    let net = |s: &str| s.parse().unwrap_or(NetworkSpec::ANY);
    let (a, b) = (net("10.1.0.0/16"), net("10.2.0.0/16"));
    let n = if initiator {
        ProtectedNetwork {
            local: a,
            remote: b,
        }
    } else {
        ProtectedNetwork {
            local: b,
            remote: a,
        }
    };
    PeerConfig {
        policy: "fuzz".into(),
        preshared_key: KeyBytes(b"fuzz".to_vec()),
        isakmp_transforms: vec![Arc::new(IsakmpTransform {
            lifetime_seconds: 600,
            ..IsakmpTransform::new("p1", EncrAlgorithm::AesCbc128, HashAlgorithm::Sha1, GROUP)
        })],
        ipsec_transforms: vec![Arc::new(IpsecTransform {
            lifetime_seconds: 300,
            ..IpsecTransform::esp("p2", EncrAlgorithm::AesCbc128, AuthAlgorithm::HmacSha1)
        })],
        pfs_group: Some(GROUP),
        initiate: if initiator {
            Initiate::Permanent
        } else {
            Initiate::Never
        },
        nat: NatConfig::default(),
        dpd: Some(Dpd {
            interval_seconds: 10,
            timeout_seconds: 30,
        }),
        protected_networks: vec![n],
        retransmit: RetransmitConfig::default(),
        rekey: RekeyConfig::default(),
        max_half_open: 4,
        default_replay_window: 64,
        selector_guard: None,
        local_id: Default::default(),
        remote_id: Default::default(),
    }
}

/// The fuzz input as a stream of choices: zeros once it runs out, so every harness ends.
pub(crate) struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.bytes.split_at(n.min(self.bytes.len()));
        self.bytes = b;
        a
    }
}

/// Pseudo-random inputs for the unit tests: `n` buffers of up to `max_len` bytes, in which a
/// share of the bytes is zeroed so that the harnesses mostly take their benign choices and get
/// deep before something is mangled.
#[cfg(test)]
pub(crate) fn test_inputs(seed: u64, n: usize, max_len: u32, benign: u8) -> Vec<Vec<u8>> {
    use rand::{Rng, SeedableRng};
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let len = (r.next_u32() % max_len) as usize;
            let mut data = vec![0u8; len];
            r.fill_bytes(&mut data);
            for b in data.iter_mut().skip(1) {
                if r.next_u32() % 256 < u32::from(benign) {
                    *b = 0;
                }
            }
            data
        })
        .collect()
}

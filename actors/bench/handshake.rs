//! Complete IKEv1 handshakes (main mode + quick mode, PSK) between two in-memory `IkeSession`s
//! on one core: both ends' work, so a hub that only responds spends about half of it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ikehub::config::{
    HashAlgorithm, Initiate, IpsecTransform, IsakmpTransform, KeyBytes, NetworkSpec,
    ProtectedNetwork,
};
use ikehub::crypto::{AuthAlgorithm, EncrAlgorithm};
use ikehub::ike::config::NatConfig;
use ikehub::ike::{
    ChildRequest, Event, IkeSession, PeerConfig, RandomSpis, RekeyConfig, RetransmitConfig,
    SpiAllocator,
};

fn config(group: u16, initiator: bool) -> PeerConfig {
    let (l, r) = if initiator {
        ("198.51.100.0/24", "203.0.113.0/24")
    } else {
        ("203.0.113.0/24", "198.51.100.0/24")
    };
    PeerConfig {
        policy: "bench".into(),
        preshared_key: KeyBytes(b"bench pre-shared key".to_vec()),
        isakmp_transforms: vec![Arc::new(IsakmpTransform::new(
            "p1",
            EncrAlgorithm::AesCbc128,
            HashAlgorithm::Sha1,
            group,
        ))],
        ipsec_transforms: vec![Arc::new(IpsecTransform::esp(
            "p2",
            EncrAlgorithm::AesCbc128,
            AuthAlgorithm::HmacSha1,
        ))],
        pfs_group: None,
        initiate: if initiator {
            Initiate::Permanent
        } else {
            Initiate::Never
        },
        nat: NatConfig::default(),
        dpd: None,
        protected_networks: vec![ProtectedNetwork {
            local: l.parse().unwrap_or(NetworkSpec::ANY),
            remote: r.parse().unwrap_or(NetworkSpec::ANY),
        }],
        retransmit: RetransmitConfig::default(),
        rekey: RekeyConfig::default(),
        max_half_open: 4,
        default_replay_window: 64,
        selector_guard: None,
        local_id: Default::default(),
        remote_id: Default::default(),
        dh_key_reuse: None,
    }
}

/// One handshake; `Err` if it did not complete (a bug, not a measurement).
fn one(init: &Arc<PeerConfig>, resp: &Arc<PeerConfig>) -> Result<(), String> {
    let a: SocketAddr = ([192, 0, 2, 1], 500).into();
    let b: SocketAddr = ([192, 0, 2, 2], 500).into();
    let now = Instant::now();
    let spis: Arc<dyn SpiAllocator> = Arc::new(RandomSpis);
    let rng_a: Box<rand::rngs::StdRng> = Box::new(rand::make_rng());
    let rng_b: Box<rand::rngs::StdRng> = Box::new(rand::make_rng());
    let mut sides = [
        IkeSession::new_initiator(init.clone(), a, b, now, rng_a, spis.clone()),
        IkeSession::new_responder(resp.clone(), b, a, now, rng_b, spis),
    ];
    sides[0].initiate_child(
        now,
        ChildRequest {
            network: init.protected_networks[0],
        },
    );
    let mut up = [false, false];
    for _ in 0..32 {
        for i in 0..2 {
            while let Some(ev) = sides[i].poll_event() {
                match ev {
                    Event::ChildSaEstablished(_) => up[i] = true,
                    Event::Failed { reason, .. } => return Err(reason),
                    _ => {}
                }
            }
            let from = if i == 0 { a } else { b };
            let out: Vec<_> = std::iter::from_fn(|| sides[i].poll_transmit()).collect();
            for t in out {
                sides[1 - i].handle_datagram(now, from, t.source_port_nat_t, &t.bytes);
            }
        }
        if up == [true, true] {
            return Ok(());
        }
    }
    Err("the handshake did not complete".into())
}

/// Handshakes per second for DH `group` over about `budget`.
pub fn handshakes_per_sec(group: u16, budget: Duration) -> Result<f64, String> {
    let init = Arc::new(config(group, true));
    let resp = Arc::new(config(group, false));
    one(&init, &resp)?;
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < budget || n < 3 {
        one(&init, &resp)?;
        n += 1;
    }
    Ok(f64::from(n) / start.elapsed().as_secs_f64())
}

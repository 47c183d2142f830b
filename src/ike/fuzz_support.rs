//! A hostile network between a real initiator and a responder, driven by arbitrary bytes: the
//! body of the `ike_responder` fuzz target and of the crate's fuzz-style unit test. Each
//! datagram in flight consumes one op byte (deliver, drop, duplicate, flip a byte, truncate,
//! replace by input bytes, advance time); nothing may panic, whatever happens.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::config::{
    Dpd, HashAlgorithm, Initiate, IpsecTransform, IsakmpTransform, KeyBytes, ProtectedNetwork,
};
use crate::crypto::{AuthAlgorithm, EncrAlgorithm};

use super::config::{NatConfig, PeerConfig, RekeyConfig, RetransmitConfig};
use super::{ChildRequest, IkeSession, RandomSpis};

fn cfg(a: bool) -> PeerConfig {
    let n = ProtectedNetwork {
        local: if a { "10.1.0.0/16" } else { "10.2.0.0/16" }
            .parse()
            .unwrap_or(crate::config::NetworkSpec::ANY),
        remote: if a { "10.2.0.0/16" } else { "10.1.0.0/16" }
            .parse()
            .unwrap_or(crate::config::NetworkSpec::ANY),
    };
    PeerConfig {
        policy: "fuzz".into(),
        preshared_key: KeyBytes(b"fuzz".to_vec()),
        isakmp_transforms: vec![Arc::new(IsakmpTransform {
            lifetime_seconds: 600,
            ..IsakmpTransform::new("p1", EncrAlgorithm::AesCbc128, HashAlgorithm::Sha1, 1)
        })],
        ipsec_transforms: vec![Arc::new(IpsecTransform {
            lifetime_seconds: 300,
            ..IpsecTransform::esp("p2", EncrAlgorithm::AesCbc128, AuthAlgorithm::HmacSha1)
        })],
        pfs_group: Some(1),
        initiate: if a {
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

/// Runs one hostile exchange described by `data`, on virtual time from `t0` (the caller reads
/// the clock: the core never does).
pub fn run(t0: Instant, data: &[u8]) {
    let mut now = t0;
    let a_addr: SocketAddr = ([192, 0, 2, 1], 500).into();
    let b_addr: SocketAddr = ([192, 0, 2, 2], 500).into();
    let seed = data.first().copied().unwrap_or(0);
    let mut sides = [
        IkeSession::new_initiator(
            Arc::new(cfg(true)),
            a_addr,
            b_addr,
            now,
            Box::new(StdRng::seed_from_u64(u64::from(seed))),
            Arc::new(RandomSpis),
        ),
        IkeSession::new_responder(
            Arc::new(cfg(false)),
            b_addr,
            a_addr,
            now,
            Box::new(StdRng::seed_from_u64(u64::from(seed) + 1)),
            Arc::new(RandomSpis),
        ),
    ];
    let mut input = data.iter().copied().skip(1);
    let mut flight: Vec<(usize, bool, Vec<u8>)> = Vec::new();
    for _round in 0..64 {
        for (i, s) in sides.iter_mut().enumerate() {
            while s.poll_event().is_some() {}
            while let Some(t) = s.poll_transmit() {
                flight.push((1 - i, t.source_port_nat_t, t.bytes));
            }
        }
        if flight.is_empty() {
            let Some(op) = input.next() else { break };
            now += Duration::from_millis(u64::from(op) * 500);
            if op % 7 == 0 {
                sides[0].initiate_child(
                    now,
                    ChildRequest {
                        network: ProtectedNetwork {
                            local: crate::config::NetworkSpec::Host([10, 1, 0, op].into()),
                            remote: crate::config::NetworkSpec::Host([10, 2, 0, 1].into()),
                        },
                    },
                );
            }
            for s in &mut sides {
                if s.poll_timeout().is_some_and(|t| t <= now) {
                    s.handle_timeout(now);
                }
            }
            continue;
        }
        for (to, nat, mut bytes) in std::mem::take(&mut flight) {
            let from = if to == 0 { b_addr } else { a_addr };
            let op = input.next().unwrap_or(0);
            let arg = input.next().unwrap_or(0) as usize;
            let val = input.next().unwrap_or(0);
            match op % 8 {
                1 => continue,
                2 => sides[to].handle_datagram(now, from, nat, &bytes.clone()),
                3 if !bytes.is_empty() => {
                    let i = arg % bytes.len();
                    bytes[i] ^= val | 1;
                }
                4 => bytes.truncate(arg % (bytes.len() + 1)),
                5 => {
                    let n = arg % 96;
                    let mut raw: Vec<u8> = input.by_ref().take(n).collect();
                    if raw.len() >= 28 && bytes.len() >= 16 && val % 2 == 0 {
                        raw[..16].copy_from_slice(&bytes[..16]);
                    }
                    bytes = raw;
                }
                6 => now += Duration::from_millis(arg as u64 * 100),
                _ => {}
            }
            sides[to].handle_datagram(now, from, nat, &bytes);
            sides[to].note_inbound_traffic(now, None);
        }
        for s in &mut sides {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
    }
    for s in &mut sides {
        s.delete_all(now);
        while s.poll_transmit().is_some() {}
        while s.poll_event().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    #[test]
    fn thousands_of_hostile_datagrams_never_panic() {
        let mut r = rand::rngs::StdRng::seed_from_u64(0xfeed);
        for _ in 0..300 {
            let len = 16 + (r.next_u32() % 400) as usize;
            let mut data = vec![0u8; len];
            r.fill_bytes(&mut data);
            // Mostly benign ops so that the exchange gets deep before being mangled.
            for b in data.iter_mut().skip(1).step_by(3) {
                if *b % 4 != 0 {
                    *b = 0;
                }
            }
            super::run(std::time::Instant::now(), &data);
        }
    }
}

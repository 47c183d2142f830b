//! SA and policy lookup rates, measured on the tables the shards use: the SPI-keyed inbound
//! map and the SPD whose entries yield an outbound SA's handle (`crate::shard`), filled with
//! real SAs, so the figure includes the cache misses of a large table.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ikehub::config::{NetworkSpec, ProtectedNetwork};
use ikehub::esp::SecurityAssociation;
use ikehub::esp::suite::{BENCH_SUITES, Endpoint, tunnel_pair};

use super::measure::ops_per_sec;
use super::{HUB, LAN, LookupResult, SPOKE};
use crate::shard::{SaHandle, SaKind, SaTables, ShardPolicies};

/// Table sizes measured: a branch office, a large hub, a concentrator at its limit.
const ENTRIES: [usize; 3] = [10, 1_000, 100_000];

/// The remote network of tunnel `i`: one host each, all different.
fn remote(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i)
}

/// `n` tunnels, each an inbound SA (SPI `0x1000 + 7i`) and an outbound SA behind its
/// policy's SPD entry, installed as the shard installs them.
fn tables(n: usize) -> Result<(SaTables, ShardPolicies), String> {
    let mut rng: rand::rngs::StdRng = rand::make_rng();
    let mut sas = SaTables::default();
    let mut spd = ShardPolicies::default();
    let suite = &BENCH_SUITES[0];
    let now = Instant::now();
    for i in 0..n as u32 {
        let networks = vec![ProtectedNetwork {
            local: NetworkSpec::Subnet {
                addr: Ipv4Addr::new(198, 51, 100, 0).into(),
                prefix: 24,
            },
            remote: NetworkSpec::Host(remote(i).into()),
        }];
        let end = |local, peer| Endpoint {
            local: IpAddr::V4(local),
            peer: IpAddr::V4(peer),
            encapsulation: ikehub::esp::SaEncapsulation::Raw,
            protected_networks: networks.clone(),
        };
        let spi = 0x1000 + i * 7;
        let [(out, _), (_, inb)] = tunnel_pair(
            suite,
            &mut rng,
            &end(HUB, SPOKE),
            &end(SPOKE, HUB),
            spi,
            spi,
            64,
        );
        let policy: Arc<str> = Arc::from(format!("p{i}"));
        let (to, from) = (SaHandle::issue(), SaHandle::issue());
        for (handle, params) in [(to, out), (from, inb)] {
            let sa = SecurityAssociation::new(params, now).map_err(|e| e.to_string())?;
            sas.install(handle, policy.clone(), SaKind::Manual, sa)
                .map_err(|e| format!("{e:?}"))?;
        }
        spd.install(policy, &networks, Some(to));
    }
    Ok((sas, spd))
}

pub(super) fn bench_lookups(budget: Duration) -> Result<Vec<LookupResult>, String> {
    let mut out = Vec::new();
    for n in ENTRIES {
        let (mut sas, spd) = tables(n)?;
        let mut i: u32 = 0;
        let mut next = move || {
            i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (i >> 8) % n as u32
        };
        let spi_rate = ops_per_sec(budget, || {
            let spi = 0x1000 + next() * 7;
            black_box(sas.inbound_by_spi_mut(spi).is_some());
        });
        let spd_rate = ops_per_sec(budget, || {
            let sa = spd.lookup(LAN, remote(next())).flatten();
            black_box(sa.and_then(|h| sas.outbound(h)).is_some());
        });
        // A lookup that finds nothing would measure the wrong thing.
        if sas
            .inbound_by_spi_mut(0x1000 + 7 * (n as u32 - 1))
            .is_none()
            || spd
                .lookup(LAN, remote(n as u32 - 1))
                .flatten()
                .and_then(|h| sas.outbound(h))
                .is_none()
        {
            return Err(format!(
                "lookup bench: the {n}-entry tables miss their own SAs"
            ));
        }
        out.push(LookupResult {
            table: "inbound SA by SPI",
            entries: n,
            lookups_per_s: spi_rate,
        });
        out.push(LookupResult {
            table: "outbound SA by address",
            entries: n,
            lookups_per_s: spd_rate,
        });
    }
    Ok(out)
}

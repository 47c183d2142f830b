//! Criterion benches of the data-plane core: ESP/AH encapsulation and decapsulation per suite
//! and packet size (throughput in bytes of cleartext), and SA / policy lookup at 10, 1k and
//! 100k entries. `ikehub bench` gives the quick version of the same numbers.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ikehub::config::{NetworkSpec, ProtectedNetwork};
use ikehub::esp::suite::{BENCH_SUITES, Endpoint, tunnel_pair};
use ikehub::esp::{EncapOutcome, EncapParams, Received, SaEncapsulation, SecurityAssociation};
use ikehub::spd::{Policy, Spd, SpiTable};
use ikehub::wire::{IpProtocol, Ipv4Repr, UdpRepr};

const HUB: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SPOKE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const LAN: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

fn inner_packet(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    Ipv4Repr {
        dont_frag: true,
        ..Ipv4Repr::new(LAN, REMOTE, IpProtocol::UDP, len - 20)
    }
    .emit(&mut buf[..20])
    .expect("20-byte header fits");
    UdpRepr {
        src_port: 9,
        dst_port: 9,
    }
    .emit(&mut buf[20..28], len - 28)
    .expect("8-byte header fits");
    buf
}

fn endpoint(local: Ipv4Addr, peer: Ipv4Addr, l: Ipv4Addr, r: Ipv4Addr) -> Endpoint {
    Endpoint {
        local: IpAddr::V4(local),
        peer: IpAddr::V4(peer),
        encapsulation: SaEncapsulation::Raw,
        protected_networks: vec![ProtectedNetwork {
            local: NetworkSpec::Host(l.into()),
            remote: NetworkSpec::Host(r.into()),
        }],
    }
}

fn esp(c: &mut Criterion) {
    let hub = endpoint(HUB, SPOKE, LAN, REMOTE);
    let spoke = endpoint(SPOKE, HUB, REMOTE, LAN);
    for suite in &BENCH_SUITES {
        let mut g = c.benchmark_group(suite.name);
        for size in [64usize, 512, 1400] {
            let mut rng: rand::rngs::StdRng = rand::make_rng();
            let [(out_p, in_p), _] = tunnel_pair(suite, &mut rng, &hub, &spoke, 0x1000, 0x2000, 0);
            let now = Instant::now();
            let mut out = SecurityAssociation::new(out_p, now).expect("valid suite");
            let mut inb = SecurityAssociation::new(in_p, now).expect("valid suite");
            let inner = inner_packet(size);
            let params = EncapParams {
                path_mtu: 9000,
                ip_id: 1,
                icmp_source: HUB,
                icmp_source_v6: std::net::Ipv6Addr::UNSPECIFIED,
            };
            let mut buf = [0u8; 2048];
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function(BenchmarkId::new("encap", size), |b| {
                b.iter(|| black_box(out.encap(now, &inner, &params, &mut rng, &mut buf)))
            });
            let len = match out.encap(now, &inner, &params, &mut rng, &mut buf) {
                Ok(EncapOutcome::Send(o)) => o.len,
                other => panic!("unexpected encap result {other:?}"),
            };
            let template = buf;
            let mut work = [0u8; 2048];
            g.bench_function(BenchmarkId::new("decap", size), |b| {
                b.iter(|| {
                    work[..len].copy_from_slice(&template[..len]);
                    black_box(inb.decap(now, &mut work[..len], Received::Ip))
                })
            });
        }
        g.finish();
    }
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup");
    for n in [10usize, 1_000, 100_000] {
        let mut table = SpiTable::with_capacity(n);
        let mut spd: Spd<u32> = Spd::new();
        for i in 0..n as u32 {
            table.insert(0x1000 + i * 7, i);
            spd.insert(Policy {
                name: format!("p{i}").into(),
                networks: vec![ProtectedNetwork {
                    local: NetworkSpec::Subnet {
                        addr: Ipv4Addr::new(198, 51, 100, 0).into(),
                        prefix: 24,
                    },
                    remote: NetworkSpec::Host(
                        Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i).into(),
                    ),
                }]
                .into(),
                outbound: Some(i),
            });
        }
        let mut i: u32 = 0;
        g.bench_function(BenchmarkId::new("spi", n), |b| {
            b.iter(|| {
                i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                black_box(table.get(0x1000 + (i % n as u32) * 7))
            })
        });
        g.bench_function(BenchmarkId::new("spd", n), |b| {
            b.iter(|| {
                i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let dst = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i % n as u32);
                black_box(spd.lookup(LAN, dst))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, esp, lookup);
criterion_main!(benches);

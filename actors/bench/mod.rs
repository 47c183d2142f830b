//! `ikehub bench`: quick measurements of this machine with the real data-plane code: ESP/AH
//! encap and decap MB/s on one core per suite and packet size, and SA / policy lookup rates
//! at 10, 1k and 100k entries, and Diffie-Hellman operations per group. Criterion benches in `benches/` are the careful version.

mod handshake;
mod lookup;
mod measure;
mod openssl;
pub mod packet;
mod udp;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ikehub::config::{NetworkSpec, ProtectedNetwork};
use ikehub::crypto::stitch::Engine;
use ikehub::esp::suite::{BENCH_SUITES, Endpoint, Suite, tunnel_pair};
use ikehub::esp::{
    DecapJob, EncapJob, EncapOutcome, EncapParams, Received, SaEncapsulation, SecurityAssociation,
};
use ikehub::ike::dh::{DhGroup, DhPrivate};
use serde::Serialize;

use measure::{mb_per_sec, ops_per_sec, ops_per_sec_after};

const SIZES: [usize; 3] = [64, 512, 1400];
/// Packets per batch in the batch-encapsulation measurement.
const BATCH: usize = 32;
const HUB: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SPOKE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const LAN: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

#[derive(Serialize)]
struct EspResult {
    suite: &'static str,
    size: usize,
    encap_mb_s: f64,
    /// Encapsulating 32 packets of one SA at once (stitched AES-CBC + HMAC-SHA1 where the CPU
    /// has AES-NI and SHA-NI, interleaved AES-CBC otherwise), as the shards do.
    encap_batch_mb_s: f64,
    /// The same batch on the portable engine (the crates packet by packet): what stitching
    /// gains.
    encap_batch_portable_mb_s: f64,
    decap_mb_s: f64,
    /// Decapsulating 32 packets of one SA at once (stitched verify + decrypt for AES-CBC +
    /// HMAC-SHA1; the batch hash for ESP-NULL with HMAC-SHA1).
    decap_batch_mb_s: f64,
    encap_pps: f64,
    decap_pps: f64,
}

#[derive(Serialize)]
struct LookupResult {
    table: &'static str,
    entries: usize,
    lookups_per_s: f64,
}

#[derive(Serialize)]
struct DhResult {
    group: u16,
    bits: usize,
    /// g^x mod p (a key pair) per second, from the group's fixed-base table.
    keygen_per_s: f64,
    /// (g^y)^x mod p with the peer's value checked, per second (OpenSSL's constant-time
    /// exponentiation).
    shared_secret_per_s: f64,
    /// One modular exponentiation (the shared secret's), in milliseconds.
    modexp_ms: f64,
    /// The responder's DH work per tunnel (one key pair + one shared secret), in milliseconds.
    dh_ms_per_tunnel: f64,
    /// The same two operations by crypto-bigint's portable `pow_bounded_exp` (the path
    /// before issue 10), per second.
    keygen_portable_per_s: f64,
    shared_secret_portable_per_s: f64,
    /// Main mode + quick mode, both ends on this core.
    handshakes_per_s: f64,
}

#[derive(Serialize)]
struct Report {
    esp: Vec<EspResult>,
    /// `openssl speed -evp` at 1408 bytes in the same run (empty without `openssl`).
    openssl: Vec<openssl::Reference>,
    /// Issue 12's per-core goals against those references.
    goals: Vec<openssl::Goal>,
    lookup: Vec<LookupResult>,
    dh: Vec<DhResult>,
    /// `openssl speed ffdh2048` in the same run: shared secrets per second (None without
    /// `openssl`).
    openssl_ffdh2048_per_s: Option<f64>,
    /// ESP-in-UDP socket throughput on loopback, without and with GSO/GRO.
    udp: Vec<udp::UdpResult>,
}

fn endpoints() -> (Endpoint, Endpoint) {
    let pn = |l: Ipv4Addr, r: Ipv4Addr| {
        vec![ProtectedNetwork {
            local: NetworkSpec::Host(l.into()),
            remote: NetworkSpec::Host(r.into()),
        }]
    };
    (
        Endpoint {
            local: IpAddr::V4(HUB),
            peer: IpAddr::V4(SPOKE),
            encapsulation: SaEncapsulation::Raw,
            protected_networks: pn(LAN, REMOTE),
        },
        Endpoint {
            local: IpAddr::V4(SPOKE),
            peer: IpAddr::V4(HUB),
            encapsulation: SaEncapsulation::Raw,
            protected_networks: pn(REMOTE, LAN),
        },
    )
}

fn bench_suite(suite: &Suite, size: usize, budget: Duration) -> Result<EspResult, String> {
    let mut rng: rand::rngs::StdRng = rand::make_rng();
    let (hub, spoke) = endpoints();
    let [(out_p, in_p), _] = tunnel_pair(suite, &mut rng, &hub, &spoke, 0x1000, 0x2000, 0);
    let now = Instant::now();
    let mut out = SecurityAssociation::new(out_p, now).map_err(|e| e.to_string())?;
    let mut inb = SecurityAssociation::new(in_p, now).map_err(|e| e.to_string())?;
    let mut inner = [0u8; 2048];
    let len = packet::udp_datagram(&mut inner, LAN, REMOTE, (9, 9), size, 1);
    let params = EncapParams {
        path_mtu: 9000,
        ip_id: 1,
        icmp_source: HUB,
        icmp_source_v6: std::net::Ipv6Addr::UNSPECIFIED,
    };
    let mut buf = [0u8; 2048];
    let encap = ops_per_sec(budget, || {
        let r = out.encap(now, &inner[..len], &params, &mut rng, &mut buf);
        black_box(&r);
    });
    let wire_len = match out.encap(now, &inner[..len], &params, &mut rng, &mut buf) {
        Ok(EncapOutcome::Send(o)) => o.len,
        other => return Err(format!("{}: unexpected encap result {other:?}", suite.name)),
    };
    let template = buf;
    let mut outs = vec![[0u8; 2048]; BATCH];
    let mut batch_on = |engine: Engine| {
        ops_per_sec(budget, || {
            let mut jobs: Vec<EncapJob<'_>> = outs
                .iter_mut()
                .enumerate()
                .map(|(i, o)| EncapJob::new(&inner[..len], &mut o[..], i as u16))
                .collect();
            out.encap_batch_on(engine, now, &mut jobs, &params, &mut rng);
            black_box(&jobs);
        }) * BATCH as f64
    };
    let batch = batch_on(Engine::detect());
    let batch_portable = batch_on(Engine::Portable);
    let mut work = [0u8; 2048];
    // Replay checking is off, so the same packet can be decapsulated again and again; `restore`
    // puts back the ciphertext that decryption overwrote. That copy is no part of
    // decapsulation (the data plane decrypts in the buffer the packet was received into): it
    // is not timed.
    let restore = |works: &mut [[u8; 2048]]| {
        for w in works.iter_mut() {
            w[..wire_len].copy_from_slice(&template[..wire_len]);
        }
    };
    let decap = ops_per_sec_after(budget, std::slice::from_mut(&mut work), restore, |w| {
        let r = inb.decap(now, &mut w[0][..wire_len], Received::Ip);
        black_box(&r);
    });
    let mut works = vec![[0u8; 2048]; BATCH];
    let decap_batch = ops_per_sec_after(budget, &mut works[..], restore, |works| {
        let mut jobs: Vec<DecapJob<'_>> = works
            .iter_mut()
            .map(|w| DecapJob::new(&mut w[..wire_len], Received::Ip))
            .collect();
        inb.decap_batch(now, &mut jobs);
        black_box(&jobs);
    }) * BATCH as f64;
    work[..wire_len].copy_from_slice(&template[..wire_len]);
    inb.decap(now, &mut work[..wire_len], Received::Ip)
        .map_err(|e| format!("{}: decap of our own packet failed: {e}", suite.name))?;
    Ok(EspResult {
        suite: suite.name,
        size,
        encap_mb_s: mb_per_sec(encap, size),
        encap_batch_mb_s: mb_per_sec(batch, size),
        encap_batch_portable_mb_s: mb_per_sec(batch_portable, size),
        decap_mb_s: mb_per_sec(decap, size),
        decap_batch_mb_s: mb_per_sec(decap_batch, size),
        encap_pps: encap,
        decap_pps: decap,
    })
}

/// Modular exponentiations per DH group: a main mode costs each side two (its key pair and the
/// shared secret), which bounds the handshake rate of one core.
fn bench_dh(budget: Duration) -> Vec<DhResult> {
    let mut rng: rand::rngs::StdRng = rand::make_rng();
    let mut out = Vec::new();
    for id in [1u16, 2, 5, 14] {
        let Some(group) = DhGroup::from_id(id) else {
            continue;
        };
        let keygen = ops_per_sec(budget, || {
            let x = DhPrivate::generate(group, &mut rng);
            black_box(x.public_value());
        });
        let peer = DhPrivate::generate(group, &mut rng).public_value();
        let mine = DhPrivate::generate(group, &mut rng);
        let shared = ops_per_sec(budget, || {
            black_box(mine.shared_secret(&peer).is_ok());
        });
        let keygen_portable = ops_per_sec(budget, || {
            black_box(mine.public_value_portable());
        });
        let shared_portable = ops_per_sec(budget, || {
            black_box(mine.shared_secret_portable(&peer).is_ok());
        });
        let handshakes = match handshake::handshakes_per_sec(id, budget) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("ikehub bench: group {id} handshake failed: {e}");
                0.0
            }
        };
        out.push(DhResult {
            group: id,
            bits: group.bits(),
            keygen_per_s: keygen,
            shared_secret_per_s: shared,
            modexp_ms: 1000.0 / shared,
            dh_ms_per_tunnel: 1000.0 / keygen + 1000.0 / shared,
            keygen_portable_per_s: keygen_portable,
            shared_secret_portable_per_s: shared_portable,
            handshakes_per_s: handshakes,
        });
    }
    out
}

pub fn run(json: bool, seconds: f64) -> ExitCode {
    let budget = Duration::from_secs_f64(seconds.clamp(0.01, 60.0));
    let mut esp = Vec::new();
    for suite in &BENCH_SUITES {
        for size in SIZES {
            match bench_suite(suite, size, budget) {
                Ok(r) => {
                    if !json {
                        eprintln!(
                            "{:<20} {:>5} B  encap {:>8.1} MB/s  batch {:>8.1} MB/s  decap {:>8.1} MB/s",
                            r.suite, r.size, r.encap_mb_s, r.encap_batch_mb_s, r.decap_mb_s
                        );
                    }
                    esp.push(r);
                }
                Err(e) => {
                    eprintln!("ikehub bench: {e}");
                    return ExitCode::from(1);
                }
            }
        }
    }
    let lookup = match lookup::bench_lookups(budget) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ikehub bench: {e}");
            return ExitCode::from(1);
        }
    };
    let dh = bench_dh(budget);
    let udp = match udp::bench_udp(budget) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("ikehub bench: {e}");
            return ExitCode::from(1);
        }
    };
    let (openssl, goals) = openssl::compare(&esp, budget.as_secs_f64().ceil() as u64);
    let openssl_ffdh2048_per_s = openssl::ffdh_per_sec(2048, budget.as_secs_f64().ceil() as u64);
    let report = Report {
        esp,
        openssl,
        goals,
        lookup,
        dh,
        openssl_ffdh2048_per_s,
        udp,
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        println!("ESP/AH per core (MB/s of cleartext; packets/s)");
        println!(
            "{:<20} {:>5} {:>10} {:>12} {:>11} {:>10} {:>12} {:>11} {:>11}",
            "SUITE",
            "BYTES",
            "ENCAP",
            "ENCAP-BATCH",
            "(PORTABLE)",
            "DECAP",
            "DECAP-BATCH",
            "ENCAP-PPS",
            "DECAP-PPS"
        );
        for r in &report.esp {
            println!(
                "{:<20} {:>5} {:>10.1} {:>12.1} {:>11.1} {:>10.1} {:>12.1} {:>11.0} {:>11.0}",
                r.suite,
                r.size,
                r.encap_mb_s,
                r.encap_batch_mb_s,
                r.encap_batch_portable_mb_s,
                r.decap_mb_s,
                r.decap_batch_mb_s,
                r.encap_pps,
                r.decap_pps
            );
        }
        println!(
            "ENCAP-BATCH / DECAP-BATCH: 32 packets of one SA; stitched AES-CBC + HMAC-SHA1 when \
             the CPU has AES-NI and SHA-NI, multi-buffer (HMAC-SHA1 of 16 packets at once) \
             with AVX-512 too, several SHA-NI chains at once (ShaNiChains) where a start-up probe \
             finds them faster than one ({:?} here); AES-CBC + HMAC-SHA-256 on 4 SHA-NI \
             chains where the probe finds them faster too; ESP-NULL and AH with HMAC-SHA1 on \
             the batch hash (AH decap goes packet by packet)",
            Engine::detect()
        );
        if !report.goals.is_empty() {
            println!();
            println!("{:<24} {:>10}", "OPENSSL SPEED -EVP", "MB/S");
            for r in &report.openssl {
                println!("{:<24} {:>10.1}", r.cipher, r.mb_s);
            }
            println!();
            println!(
                "{:<52} {:>9} {:>9} {:>7} {:>7} {:>8}",
                "GOAL (issue 12, 1400 B vs 1408 B)", "OURS", "OPENSSL", "RATIO", "TARGET", ""
            );
            for g in &report.goals {
                let fmt = |v: Option<f64>, p: usize| v.map_or("-".into(), |v| format!("{v:.p$}"));
                println!(
                    "{:<52} {:>9} {:>9.1} {:>7} {:>7.2} {:>8}",
                    g.goal,
                    fmt(g.ours_mb_s, 1),
                    g.reference_mb_s,
                    fmt(g.ratio, 2),
                    g.target,
                    if g.met { "met" } else { "not met" }
                );
            }
        }
        println!();
        println!("{:<28} {:>8} {:>14}", "LOOKUP", "ENTRIES", "LOOKUPS/S");
        for l in &report.lookup {
            println!("{:<28} {:>8} {:>14.0}", l.table, l.entries, l.lookups_per_s);
        }
        println!();
        println!(
            "{:<8} {:>5} {:>10} {:>14} {:>10} {:>10} {:>13} {:>14} {:>15}",
            "DH",
            "BITS",
            "KEYGEN/S",
            "SHARED/S",
            "MODEXP-MS",
            "DH-MS/TUN",
            "HANDSHAKES/S",
            "(PORT. KEYGEN)",
            "(PORT. SHARED)"
        );
        for d in &report.dh {
            println!(
                "{:<8} {:>5} {:>10.0} {:>14.0} {:>10.3} {:>10.3} {:>13.0} {:>14.0} {:>15.0}",
                format!("group {}", d.group),
                d.bits,
                d.keygen_per_s,
                d.shared_secret_per_s,
                d.modexp_ms,
                d.dh_ms_per_tunnel,
                d.handshakes_per_s,
                d.keygen_portable_per_s,
                d.shared_secret_portable_per_s
            );
        }
        println!(
            "KEYGEN: g^x from the fixed-base table; SHARED: y^x by OpenSSL; DH-MS/TUN: one of \
             each (a responding hub's DH work per tunnel); PORT.: crypto-bigint's pow alone"
        );
        if let Some(ffdh) = report.openssl_ffdh2048_per_s {
            println!(
                "openssl speed ffdh2048: {ffdh:.0} shared secrets/s ({:.3} ms; its private \
                 exponents are 225 bits, RFC 7919 A.1; ours {})",
                1000.0 / ffdh,
                DhGroup::Modp2048.exponent_bits()
            );
        }
        println!();
        println!(
            "HANDSHAKES/S: main mode + quick mode, both ends on one core (a responding hub does \
             about half the work)"
        );
        println!();
        println!(
            "{:<34} {:>14} {:>10}",
            "UDP LOOPBACK 1400 B", "DATAGRAMS/S", "GBIT/S"
        );
        for u in &report.udp {
            let name = if u.offload {
                "GSO/GRO"
            } else {
                "sendmmsg/recvmmsg"
            };
            println!(
                "{:<34} {:>14.0} {:>10.2}",
                name, u.datagrams_per_s, u.gbit_per_s
            );
        }
    }
    ExitCode::SUCCESS
}

//! `ikehub demo [--ipv6]`: a hub and N spokes in one unprivileged process over loopback, every
//! tunnel keyed by IKE (main mode + quick mode, pre-shared key, group 14).
//!
//! * The hub is the real daemon code: `min(cores, 4)` [`EspShard`]s, WAN = a REUSEPORT UDP group
//!   on `127.0.0.1:<high port Q>` (`[::1]` with `--ipv6`; the NAT-T port) steered by SPI,
//!   cleartext = one [`MemoryPort`] per shard whose far end is the hub "LAN" (host 198.51.100.1
//!   or 2001:db8:ffff::1), driven by [`lan::echo`]; IKE = the real `IkeRouter` on
//!   `127.0.0.1:<high port P>` (or `[::1]`) with one template policy admitting the spokes, one
//!   `PeerActor` per spoke ([`hub`]).
//! * Spoke `i` is simulated: one UDP socket for IKE and ESP-in-UDP, on its own 127.x address or,
//!   over IPv6, on `::1` with its own port ([`addresses`] says why), and an initiator
//!   `IkeSession` that asks for its own host (in 198.18.0.0/15 or 2001:db8:1::/64,
//!   [`spoke::run`]); all spokes run as tasks on a small tokio runtime, at most [`SETUP_SLOTS`]
//!   handshakes at a time.
//! * Traffic: once every tunnel is up, each spoke keeps a small window of tagged packets to the
//!   hub LAN host in flight; the LAN side counts them and echoes them back through the hub to
//!   the spoke, which checks them. After `seconds` of traffic a summary goes to stdout; exit 0
//!   only if every tunnel came up by IKE and carried traffic both ways without ICV, replay or
//!   padding errors.

mod addresses;
mod hub;
mod inner;
mod lan;
mod spoke;
mod stats;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use ikehub::config::Family;
use tokio::sync::{Semaphore, watch};

use crate::ike::router::GetCounters;
use crate::ike::spis::HostSpis;
use crate::shard::{EspShard, Report};
use addresses::{hub_lan, hub_wan, spoke_addr, spoke_host};
use spoke::{Env, Phase, Spoke};
use stats::{LanStats, SetupStats, SpokeStats, Totals};

/// IKE handshakes in flight at the same time (a spoke holds a slot from main-mode message 1
/// until its child SA is up): enough to keep the hub busy, few enough that a slow hub does not
/// make thousands of spokes retransmit at once. Over IPv6 every spoke calls from `::1`, so all
/// of them count against the router's bound on half-open exchanges per source address
/// (`HalfOpenLimits::per_source`, 128, src/ike/demux.rs): 64 stays under it. (Measured with
/// 1,000 slots instead: each main mode beyond 128 evicted the oldest half-open one from `::1`,
/// 861 of 1,000 spokes lost their exchange after message 2 and 139 came up; over IPv4, one
/// address per spoke, all 1,000 came up.)
pub const SETUP_SLOTS: usize = 64;
/// How long the demo waits for the hub to install the tunnels the spokes have up before the
/// traffic starts (each poll asks every shard for its SA table).
const INSTALL_ALLOWANCE: Duration = Duration::from_secs(10);

fn policy_name(i: usize) -> String {
    format!("spoke-{}", i + 1)
}

/// How long the IKE setup of `n` spokes may take before the demo carries on without the rest:
/// a generous multiple of what a slow shared 2-core machine needs (~4 group-14 modexps per
/// tunnel in this one process), plus the session's own give-up time.
fn setup_allowance(n: usize) -> Duration {
    Duration::from_secs(45 + (n / 20) as u64)
}

pub fn run(spokes: usize, seconds: u64, ike_workers: usize, ipv6: bool) -> ExitCode {
    let family = if ipv6 { Family::V6 } else { Family::V4 };
    let max_spokes = addresses::max_spokes(family);
    if spokes == 0 || spokes > max_spokes {
        eprintln!(
            "ikehub demo: --spokes must be between 1 and {max_spokes}{}",
            if ipv6 {
                " with --ipv6 (one UDP port on ::1 per spoke)"
            } else {
                ""
            }
        );
        return ExitCode::from(2);
    }
    // The profile key's bound (`[system] ike-workers`).
    let max = ikehub::config::defaults::IKE_WORKERS_MAX;
    if !i64::try_from(ike_workers).is_ok_and(|w| w <= max) {
        eprintln!("ikehub demo: --ike-workers must be between 0 (one per core) and {max}");
        return ExitCode::from(2);
    }
    if seconds == 0 {
        eprintln!("ikehub demo: --seconds must be at least 1");
        return ExitCode::from(2);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ike_workers = if ike_workers == 0 { cores } else { ike_workers };
    let shards = std::env::var("IKEHUB_DEMO_SHARDS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(cores)
        .clamp(1, 4);
    let nofile = crate::rlimit::raise_nofile();
    // One socket per spoke, n WAN sockets, 2n MemoryPort ends, the IKE socket and its NAT-T
    // dup, epoll/eventfds of the threads.
    let needed = spokes as u64 + 3 * shards as u64 + 66;
    if needed > nofile {
        eprintln!(
            "ikehub demo: {spokes} spokes need about {needed} open files but the limit is \
             {nofile} (raise it with `ulimit -n`, or use at most {} spokes)",
            nofile.saturating_sub(3 * shards as u64 + 64)
        );
        return ExitCode::from(1);
    }

    // The hard overall deadline: setup allowance + traffic + margin.
    let deadline = setup_allowance(spokes) + Duration::from_secs(seconds + 60);
    std::thread::spawn(move || {
        std::thread::sleep(deadline);
        eprintln!(
            "ikehub demo: hard deadline of {} s reached; giving up",
            deadline.as_secs()
        );
        let _ = std::io::stderr().flush();
        std::process::exit(1);
    });

    let spoke_rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.clamp(1, 4))
        .thread_name("demo-spoke")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ikehub demo: cannot start the spokes' runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let sys = System::new();
    let handle = spoke_rt.handle().clone();
    let result = sys.block_on(async move {
        let r = demo(family, spokes, seconds, shards, ike_workers, handle).await;
        System::current().stop();
        r
    });
    spoke_rt.shutdown_background();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ikehub demo: {e}");
            ExitCode::from(1)
        }
    }
}

/// What the hub reports about one spoke's tunnel.
#[derive(Clone, Copy, Default)]
struct HubSide {
    inbound: bool,
    outbound: bool,
}

#[derive(Default)]
struct HubErrors {
    icv: u64,
    replay: u64,
    padding: u64,
    selector: u64,
    other: u64,
    unknown_spi: u64,
    no_policy: u64,
    send_errors: u64,
    encap_errors: u64,
    /// Packets the hub's inbound SAs accepted and its outbound SAs encapsulated.
    decapsulated: u64,
    encapsulated: u64,
    handed_over: u64,
    /// Packets for another shard dropped because that shard was behind (the hand-over bound).
    handoff_dropped: u64,
    /// Cleartext packets the shards read from their MemoryPorts.
    cleartext_in: u64,
    /// IKE datagrams on the NAT-T port the shards dropped (router busy or not connected).
    ike_dropped: u64,
    /// Datagrams the kernel dropped at the shards' WAN sockets (a shard read them too late).
    wan_socket_drops: u64,
}

/// The hub's SAs and counters, each IKE-keyed SA assigned to the spoke whose pair it belongs to
/// by its SPI (the spokes recorded theirs, [`SpokeStats::out_spi`]).
async fn hub_report(shards: &[Addr<EspShard>], spokes: &[SpokeStats]) -> (Vec<HubSide>, HubErrors) {
    let mut sides = vec![HubSide::default(); spokes.len()];
    let mut errs = HubErrors::default();
    let by_spi = |f: fn(&SpokeStats) -> &std::sync::atomic::AtomicU64| {
        spokes
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match SpokeStats::get(f(s)) {
                0 => None,
                spi => Some((spi, i)),
            })
            .collect::<HashMap<u64, usize>>()
    };
    // The hub's inbound SA is the spoke's outbound one, and the other way round.
    let (hub_in, hub_out) = (by_spi(|s| &s.out_spi), by_spi(|s| &s.in_spi));
    for s in shards {
        let Ok(r) = s.send(Report).await else {
            continue;
        };
        for sa in &r.sas {
            errs.icv += sa.icv_failures;
            errs.replay += sa.replay_drops;
            errs.padding += sa.padding_errors;
            errs.selector += sa.selector_mismatches;
            errs.other += sa.other_drops;
            // Only IKE-keyed SAs of the template count.
            let map = if sa.direction == "IN" {
                &hub_in
            } else {
                &hub_out
            };
            let i = sa
                .esp_spi
                .and_then(|spi| map.get(&u64::from(spi)).copied())
                .filter(|_| sa.kind == "ISAKMP" && sa.policy.starts_with(hub::POLICY));
            if sa.direction == "IN" {
                errs.decapsulated += sa.packets;
            } else {
                errs.encapsulated += sa.packets;
            }
            let Some(i) = i else { continue };
            if sa.direction == "IN" {
                sides[i].inbound = true;
            } else {
                sides[i].outbound = true;
            }
        }
        errs.cleartext_in += r.counters.cleartext_in;
        errs.handed_over += r.counters.handed_over;
        errs.handoff_dropped += r.counters.handoff_dropped;
        errs.unknown_spi += r.counters.unknown_spi;
        errs.no_policy += r.counters.no_policy + r.counters.no_sa;
        errs.send_errors += r.counters.send_errors;
        errs.encap_errors += r.counters.encap_errors;
        errs.ike_dropped += r.counters.ike_dropped;
        errs.wan_socket_drops += r.counters.wan_socket_drops;
    }
    (sides, errs)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

async fn demo(
    family: Family,
    n: usize,
    seconds: u64,
    shard_count: usize,
    ike_workers: usize,
    spoke_rt: tokio::runtime::Handle,
) -> Result<bool, String> {
    let begin = Instant::now();
    eprintln!(
        "ikehub demo ({}): hub with {shard_count} shard(s) and {ike_workers} IKE worker(s) on \
         {}, LAN {}; {n} spoke(s) keyed by IKE (main + quick mode, PSK, group 14)",
        addresses::name(family),
        hub_wan(family),
        hub_lan(family)
    );

    // ---- the hub --------------------------------------------------------------------------
    let stats: Arc<[SpokeStats]> = (0..n).map(|_| SpokeStats::default()).collect();
    let lan_stats = Arc::new(LanStats::default());
    let block = addresses::spoke_block(family, n);
    let hub = hub::start(
        family,
        shard_count,
        ike_workers,
        block,
        stats.clone(),
        lan_stats.clone(),
    )?;
    let admits = match family {
        Family::V4 => block.to_string(),
        Family::V6 => format!(
            "{block} with remote-id {} (the spokes differ by port and key ID)",
            addresses::spoke_key_ids()
        ),
    };
    eprintln!(
        "hub: IKE on UDP {}, NAT-T/ESP-in-UDP on UDP {}, template policy `{}` admits {admits}",
        hub.ike,
        hub.nat_t,
        hub::POLICY,
    );

    // ---- the spokes -----------------------------------------------------------------------
    let mut spokes: Vec<Spoke> = Vec::with_capacity(n);
    // Where each spoke calls from (for the list of failed spokes).
    let mut wans: Vec<SocketAddr> = Vec::with_capacity(n);
    let shared_config = hub::spoke_config(&hub);
    for i in 0..n {
        let addr = spoke_addr(family, i);
        let socket = std::net::UdpSocket::bind(SocketAddr::new(addr, 0))
            .and_then(|s| s.set_nonblocking(true).map(|_| s))
            .map_err(|e| format!("spoke {}: cannot bind UDP on {addr}: {e}", i + 1))?;
        wans.push(socket.local_addr().unwrap_or(SocketAddr::new(addr, 0)));
        spokes.push(Spoke {
            index: i,
            addr,
            host: spoke_host(family, i),
            socket,
            config: hub::spoke_config_for(&shared_config, family, i),
        });
    }
    let setup = Arc::new(SetupStats::default());
    let setup_start = Instant::now();
    let env = Arc::new(Env {
        spis: Arc::new(HostSpis::default()),
        hub_ike: hub.ike,
        hub_nat_t: hub.nat_t,
        hub_lan: hub_lan(family),
        window: (1024 / n).clamp(1, 8) as u32,
        stats: stats.clone(),
        setup: setup.clone(),
        gate: Arc::new(Semaphore::new(SETUP_SLOTS)),
        epoch: setup_start,
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    for s in spokes {
        spoke_rt.spawn(spoke::run(s, env.clone(), phase_rx.clone()));
    }
    drop(phase_rx);

    // ---- IKE setup ------------------------------------------------------------------------
    let allowance = setup_allowance(n);
    let mut last_print = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let up = SpokeStats::get(&setup.up) as usize;
        let failed = SpokeStats::get(&setup.failed) as usize;
        let done = up + failed >= n;
        let late = setup_start.elapsed() >= allowance;
        if done || late || last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            let t = setup_start.elapsed().as_secs_f64();
            eprintln!(
                "tunnels up {up}/{n} ({failed} failed, {} handshaking) after {t:.1} s, \
                 {:.0} tunnels/s",
                (SpokeStats::get(&setup.started) as usize).saturating_sub(up + failed),
                up as f64 / t.max(1e-9)
            );
        }
        if late && !done {
            eprintln!(
                "ikehub demo: setup allowance of {} s ran out; carrying on with the tunnels \
                 that are up",
                allowance.as_secs()
            );
        }
        if done || late {
            break;
        }
    }
    let ike_up = SpokeStats::get(&setup.up) as usize;
    // Setup time: until the last tunnel came up (the poll above adds up to 100 ms).
    let setup_time = match SpokeStats::get(&setup.last_up_us) {
        0 => setup_start.elapsed(),
        us => Duration::from_micros(us),
    };
    // A spoke's child SA is up when it sent quick mode's last message; the hub installs its
    // end when that message arrives (RFC 2409 §5.5), which on a loaded machine can be later
    // than the spoke's first packet. Wait until the hub has every tunnel the spokes have,
    // bounded, so the traffic check measures the data path, not this race.
    let install_wait = Instant::now();
    let mut up = 0;
    while install_wait.elapsed() < INSTALL_ALLOWANCE {
        let (sides, _) = hub_report(&hub.shards, &stats).await;
        up = sides.iter().filter(|s| s.inbound && s.outbound).count();
        if up >= ike_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{ike_up}/{n} tunnels up by IKE ({up} installed at the hub) in {:.3} s ({:.0} tunnels/s); \
         {seconds} s of traffic",
        setup_time.as_secs_f64(),
        ike_up as f64 / setup_time.as_secs_f64().max(1e-9)
    );

    // ---- traffic --------------------------------------------------------------------------
    let window = env.window;
    let traffic_start = Instant::now();
    let _ = phase_tx.send(Phase::Traffic);
    let mut prev = Totals::default();
    for t in 1..=seconds {
        tokio::time::sleep_until((traffic_start + Duration::from_secs(t)).into()).await;
        let cur = stats::totals(&stats);
        let both = stats
            .iter()
            .filter(|s| SpokeStats::get(&s.up_packets) > 0 && SpokeStats::get(&s.down_packets) > 0)
            .count();
        eprintln!(
            "[{t:>3}s] spoke->hub {:>8} pkt/s {:>8.2} MB/s | hub->spoke {:>8} pkt/s {:>8.2} MB/s \
             | tunnels with traffic both ways {both}/{n}",
            cur.up_packets - prev.up_packets,
            mb(cur.up_bytes - prev.up_bytes),
            cur.down_packets - prev.down_packets,
            mb(cur.down_bytes - prev.down_bytes),
        );
        prev = cur;
    }
    let traffic = traffic_start.elapsed();
    let _ = phase_tx.send(Phase::Drain);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = phase_tx.send(Phase::Stop);

    // ---- the summary ----------------------------------------------------------------------
    let (sides, hub_errs) = hub_report(&hub.shards, &stats).await;
    let router = hub.router.send(GetCounters).await.unwrap_or_default();
    let t = stats::totals(&stats);
    let up = sides.iter().filter(|s| s.inbound && s.outbound).count();
    let mut failed: Vec<String> = Vec::new();
    let mut both = 0;
    for (i, (side, st)) in sides.iter().zip(stats.iter()).enumerate() {
        let upp = SpokeStats::get(&st.up_packets);
        let down = SpokeStats::get(&st.down_packets);
        let mut why = Vec::new();
        if SpokeStats::get(&st.ike_up) == 0 {
            why.push("IKE did not bring it up");
        }
        if !(side.inbound && side.outbound) {
            why.push("not installed on the hub");
        }
        if upp == 0 {
            why.push("nothing spoke->hub");
        }
        if down == 0 {
            why.push("nothing hub->spoke");
        }
        if SpokeStats::get(&st.decap_errors) > 0 {
            why.push("ICV/replay/padding errors at the spoke");
        }
        if why.is_empty() {
            both += 1;
        } else {
            failed.push(format!(
                "  {} ({} {}): {}",
                policy_name(i),
                wans[i],
                spoke_host(family, i),
                why.join(", ")
            ));
        }
    }
    let fatal_hub = hub_errs.icv + hub_errs.replay + hub_errs.padding;
    let ok = up == n && ike_up == n && failed.is_empty() && fatal_hub == 0 && t.decap_errors == 0;
    let hs_up = SpokeStats::get(&setup.up);
    let hs_failed = SpokeStats::get(&setup.failed);
    let hs_avg_ms = SpokeStats::get(&setup.handshake_us_sum) as f64 / 1e3 / hs_up.max(1) as f64;
    let hs_max_ms = SpokeStats::get(&setup.handshake_us_max) as f64 / 1e3;
    let lan_unexpected = SpokeStats::get(&lan_stats.unexpected);
    let lan_send = SpokeStats::get(&lan_stats.send_errors);

    let secs = traffic.as_secs_f64().max(1e-9);
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<44} {v}\n"));
    line(
        "address family",
        match family {
            Family::V4 => format!(
                "IPv4: hub {}, spokes on 127.0.0.0/8 by address, hosts {}",
                hub_wan(family),
                addresses::spoke_hosts(family)
            ),
            Family::V6 => format!(
                "IPv6: hub [{}], spokes on [::1] by port and key ID, hosts {}",
                hub_wan(family),
                addresses::spoke_hosts(family)
            ),
        },
    );
    line("spokes", n.to_string());
    line("hub shards", shard_count.to_string());
    line("hub IKE workers", ike_workers.to_string());
    line("tunnels up by IKE (spoke side)", format!("{ike_up}/{n}"));
    line("tunnels up (installed at the hub)", format!("{up}/{n}"));
    line("tunnels with traffic both ways", format!("{both}/{n}"));
    line(
        "setup time (IKE, all tunnels)",
        format!(
            "{:.3} s ({:.0} tunnels/s, {SETUP_SLOTS} handshakes in flight at most)",
            setup_time.as_secs_f64(),
            ike_up as f64 / setup_time.as_secs_f64().max(1e-9)
        ),
    );
    line(
        "IKE handshakes completed / failed",
        format!("{hs_up} / {hs_failed}"),
    );
    line(
        "IKE handshake time avg / max",
        format!("{hs_avg_ms:.1} ms / {hs_max_ms:.1} ms"),
    );
    line(
        "IKE messages sent by spokes / retransmitted",
        format!(
            "{} / {}",
            SpokeStats::get(&setup.transmits),
            SpokeStats::get(&setup.retransmits)
        ),
    );
    line(
        "hub IKE datagrams / peer actors started",
        format!("{} / {}", router.ike_datagrams, router.peers_started),
    );
    line(
        "hub IKE refused unknown peer / unknown cookies / bad / evicted half-open",
        format!(
            "{} / {} / {} / {}",
            router.refused_unknown_peer,
            router.refused_unknown_cookies,
            router.refused_malformed,
            router.half_open_evicted
        ),
    );
    line(
        "hub IKE workers: peer actors / CPU s",
        router
            .workers
            .iter()
            .map(|w| format!("{} / {:.2}", w.peers, w.cpu_ms as f64 / 1e3))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let hub_cpu_ms: u64 = router.workers.iter().map(|w| w.cpu_ms).sum();
    line(
        "hub IKE worker CPU per tunnel",
        format!("{:.2} ms", hub_cpu_ms as f64 / ike_up.max(1) as f64),
    );
    line(
        "traffic time",
        format!("{secs:.1} s (window {window} packet(s) per spoke)"),
    );
    line(
        "spoke -> hub (sent by spokes)",
        format!("{} packets", t.sent),
    );
    line(
        "spoke -> hub (delivered to hub LAN)",
        format!(
            "{} packets, {} bytes ({:.2} MB/s)",
            t.up_packets,
            t.up_bytes,
            mb(t.up_bytes) / secs
        ),
    );
    line(
        "hub SAs decapsulated / echoes read / encap",
        format!(
            "{} / {} / {} packets",
            hub_errs.decapsulated, hub_errs.cleartext_in, hub_errs.encapsulated
        ),
    );
    line(
        "hub -> spoke (delivered to spokes)",
        format!(
            "{} packets, {} bytes ({:.2} MB/s)",
            t.down_packets,
            t.down_bytes,
            mb(t.down_bytes) / secs
        ),
    );
    line(
        "hub packets handed between shards",
        format!(
            "{} (dropped, the other shard behind: {})",
            hub_errs.handed_over, hub_errs.handoff_dropped
        ),
    );
    line(
        "hub WAN socket drops (kernel, shard late)",
        hub_errs.wan_socket_drops.to_string(),
    );
    line(
        "hub IKE datagrams dropped at the shards",
        hub_errs.ike_dropped.to_string(),
    );
    line(
        "hub SA errors ICV / replay / padding",
        format!(
            "{} / {} / {}",
            hub_errs.icv, hub_errs.replay, hub_errs.padding
        ),
    );
    line(
        "hub SA drops selector / other",
        format!("{} / {}", hub_errs.selector, hub_errs.other),
    );
    line(
        "hub unknown SPI / no policy / encap / send err",
        format!(
            "{} / {} / {} / {}",
            hub_errs.unknown_spi, hub_errs.no_policy, hub_errs.encap_errors, hub_errs.send_errors
        ),
    );
    line(
        "spoke decap errors ICV/replay/padding",
        t.decap_errors.to_string(),
    );
    line("spoke other drops", t.other_drops.to_string());
    line("spoke send errors", t.send_errors.to_string());
    // Every packet a spoke sent is either echoed back to it or dropped on the way: by a
    // counter above, or in a kernel buffer (the hub's WAN sockets, a spoke's socket).
    line(
        "spoke echoes missing (sent - echoed)",
        t.sent.saturating_sub(t.down_packets).to_string(),
    );
    line(
        "hub LAN unexpected / echo send errors",
        format!("{lan_unexpected} / {lan_send}"),
    );
    line(
        "total time",
        format!("{:.1} s", begin.elapsed().as_secs_f64()),
    );
    line("result", if ok { "OK".into() } else { "FAILED".into() });
    print!("{out}");
    if !failed.is_empty() {
        println!("failed spokes ({}):", failed.len());
        for f in failed.iter().take(50) {
            println!("{f}");
        }
        if failed.len() > 50 {
            println!("  ... and {} more", failed.len() - 50);
        }
    }
    if fatal_hub > 0 {
        println!("the hub counted ICV/replay/padding errors");
    }
    if let Ok(f) = setup.failures.lock()
        && !f.is_empty()
    {
        println!("IKE failures (first {}):", f.len());
        for r in f.iter() {
            println!("  {r}");
        }
    }
    let _ = std::io::stdout().flush();
    Ok(ok)
}

//! `ikehub demo`: a hub and N spokes in one unprivileged process over loopback, keyed manually
//! (the IKE issue switches it to IKE).
//!
//! * The hub is the real data plane: `min(cores, 4)` [`EspShard`]s, WAN = a REUSEPORT UDP group
//!   on `127.0.0.1:<high port>` steered by SPI, cleartext = one [`MemoryPort`] per shard whose
//!   far end is the hub "LAN" (host 198.51.100.1), driven by [`lan::echo`].
//! * Spoke `i` is simulated: one UDP socket on its own 127.x address, its own SA pair
//!   (AES-128-CBC/HMAC-SHA1, UDP encapsulation, replay window 64), protecting one host in
//!   198.18.0.0/15; all spokes run as tasks on a small tokio runtime ([`spoke::run`]).
//! * Traffic: each spoke keeps a small window of tagged packets to the hub LAN host in flight;
//!   the LAN side counts them and echoes them back through the hub to the spoke, which checks
//!   them. After `seconds` of traffic a summary goes to stdout; exit 0 only if every tunnel
//!   carried traffic both ways without ICV, replay or padding errors.

mod lan;
mod spoke;
mod stats;

use std::collections::HashSet;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use ikehub::config::{NetworkSpec, ProtectedNetwork};
use ikehub::esp::suite::{BENCH_SUITES, Endpoint, random_spi, tunnel_pair};
use ikehub::esp::{SaEncapsulation, SecurityAssociation};
use rand::rngs::StdRng;
use tokio::sync::watch;

use crate::io::{self, MemoryPort, PmtuDisc, UdpBatchSocket, UdpOptions};
use crate::shard::{
    Cleartext, EspShard, InstallPolicy, InstallSa, Report, SaKind, ShardIo, WanSockets,
};
use spoke::{Phase, Spoke};
use stats::{LanStats, SpokeStats, Totals};

/// The hub's LAN host, the far end of every tunnel.
pub const HUB_LAN: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const HUB_WAN: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// 254 usable values per octet (.0 and .255 skipped), two /16s in 198.18.0.0/15.
const MAX_SPOKES: usize = 2 * 254 * 254;
const REPLAY_WINDOW: u32 = 64;
/// Spokes whose SAs are installed between two acknowledgements from the shards.
const SETUP_CHUNK: usize = 64;

/// (w, y, z) of spoke `i`: its WAN address is 127.(1+w).y.z, its host 198.(18+w).y.z.
fn octets(i: usize) -> (u8, u8, u8) {
    let z = (i % 254 + 1) as u8;
    let y = ((i / 254) % 254 + 1) as u8;
    let w = (i / (254 * 254)) as u8;
    (w, y, z)
}

fn spoke_addr(i: usize) -> Ipv4Addr {
    let (w, y, z) = octets(i);
    Ipv4Addr::new(127, 1 + w, y, z)
}

fn spoke_host(i: usize) -> Ipv4Addr {
    let (w, y, z) = octets(i);
    Ipv4Addr::new(198, 18 + w, y, z)
}

/// The spoke whose protected host is `host`, if any.
pub fn spoke_of_host(host: [u8; 4], spokes: usize) -> Option<usize> {
    let [a, b, y, z] = host;
    if a != 198 || !(18..=19).contains(&b) || !(1..=254).contains(&y) || !(1..=254).contains(&z) {
        return None;
    }
    let i = usize::from(b - 18) * 254 * 254 + usize::from(y - 1) * 254 + usize::from(z - 1);
    (i < spokes).then_some(i)
}

fn policy_name(i: usize) -> String {
    format!("spoke-{}", i + 1)
}

/// Raises the soft open-file limit to the hard one; returns the resulting soft limit.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// Binds the hub's REUSEPORT group on the first free port from 40000 + pid % 10000 upward.
fn bind_hub(n: usize) -> Result<(u16, Vec<UdpBatchSocket>), String> {
    let start = 40000 + (std::process::id() % 10000) as u16;
    let opts = UdpOptions {
        reuse_port: true,
        device: None,
        pmtu: Some(PmtuDisc::Dont),
        recv_buffer: Some(4 << 20),
        send_buffer: Some(4 << 20),
    };
    let mut last = String::new();
    for port in (start..=u16::MAX).chain(40000..start).take(500) {
        let addr = SocketAddr::new(IpAddr::V4(HUB_WAN), port);
        // Probe without SO_REUSEPORT first, so we never join someone else's group.
        match std::net::UdpSocket::bind(addr) {
            Ok(probe) => drop(probe),
            Err(e) => {
                last = e.to_string();
                continue;
            }
        }
        match UdpBatchSocket::bind_group(addr, n, &opts) {
            Ok(group) => {
                if n > 1 {
                    group[0]
                        .steer_by_spi(n as u32)
                        .map_err(|e| format!("SPI steering on the hub's UDP group: {e}"))?;
                }
                return Ok((port, group));
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("no free UDP port for the hub on {HUB_WAN}: {last}"))
}

pub fn run(spokes: usize, seconds: u64) -> ExitCode {
    if spokes == 0 || spokes > MAX_SPOKES {
        eprintln!("ikehub demo: --spokes must be between 1 and {MAX_SPOKES}");
        return ExitCode::from(2);
    }
    if seconds == 0 {
        eprintln!("ikehub demo: --seconds must be at least 1");
        return ExitCode::from(2);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shards = std::env::var("IKEHUB_DEMO_SHARDS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(cores)
        .clamp(1, 4);
    let nofile = raise_nofile();
    // One socket per spoke, n WAN sockets, 2n MemoryPort ends, epoll/eventfds of the threads.
    let needed = spokes as u64 + 3 * shards as u64 + 64;
    if needed > nofile {
        eprintln!(
            "ikehub demo: {spokes} spokes need about {needed} open files but the limit is \
             {nofile} (raise it with `ulimit -n`, or use at most {} spokes)",
            nofile.saturating_sub(3 * shards as u64 + 64)
        );
        return ExitCode::from(1);
    }

    // The hard overall deadline: setup allowance + traffic + margin.
    let deadline = Duration::from_secs(seconds + 60 + (spokes / 50) as u64);
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
        let r = demo(spokes, seconds, shards, handle).await;
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
    /// Cleartext packets the shards read from their MemoryPorts.
    cleartext_in: u64,
}

async fn hub_report(shards: &[Addr<EspShard>], n: usize) -> (Vec<HubSide>, HubErrors) {
    let mut sides = vec![HubSide::default(); n];
    let mut errs = HubErrors::default();
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
            let i = sa
                .policy
                .strip_prefix("spoke-")
                .and_then(|x| x.parse::<usize>().ok())
                .filter(|&i| (1..=n).contains(&i));
            if sa.direction == "IN" {
                errs.decapsulated += sa.packets;
            } else {
                errs.encapsulated += sa.packets;
            }
            let Some(i) = i else { continue };
            if sa.direction == "IN" {
                sides[i - 1].inbound = true;
            } else {
                sides[i - 1].outbound = true;
            }
        }
        errs.cleartext_in += r.counters.cleartext_in;
        errs.handed_over += r.counters.handed_over;
        errs.unknown_spi += r.counters.unknown_spi;
        errs.no_policy += r.counters.no_policy + r.counters.no_sa;
        errs.send_errors += r.counters.send_errors;
        errs.encap_errors += r.counters.encap_errors;
    }
    (sides, errs)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

async fn demo(
    n: usize,
    seconds: u64,
    shard_count: usize,
    spoke_rt: tokio::runtime::Handle,
) -> Result<bool, String> {
    let begin = Instant::now();
    eprintln!(
        "ikehub demo: hub with {shard_count} shard(s) on {HUB_WAN}, LAN {HUB_LAN}; {n} spoke(s)"
    );

    // ---- the hub --------------------------------------------------------------------------
    let (hub_port, group) = bind_hub(shard_count)?;
    let hub = SocketAddrV4::new(HUB_WAN, hub_port);
    let stats: Arc<[SpokeStats]> = (0..n).map(|_| SpokeStats::default()).collect();
    let lan_stats = Arc::new(LanStats::default());
    let mut ios = Vec::with_capacity(shard_count);
    for udp in group {
        let (hub_end, lan_end) =
            MemoryPort::pair().map_err(|e| format!("cannot create a memory port: {e}"))?;
        actix::spawn(lan::echo(lan_end, stats.clone(), lan_stats.clone()));
        ios.push(ShardIo {
            cleartext: Some(Cleartext::Memory(hub_end)),
            wans: vec![WanSockets {
                local: HUB_WAN,
                nat_t_port: hub_port,
                path_mtu: 1500,
                udp: Some(udp),
                raw_esp: None,
                raw_ah: None,
                raw_tx: None,
            }],
        });
    }
    let shards = EspShard::start_all(ios);
    eprintln!("hub listening on UDP {hub}");

    // ---- the tunnels ----------------------------------------------------------------------
    let suite = &BENCH_SUITES[0]; // esp-aes128-sha1
    let mut rng: StdRng = rand::make_rng();
    let mut used_spis: HashSet<u32> = HashSet::with_capacity(2 * n);
    let mut fresh_spi = |rng: &mut StdRng| loop {
        let s = random_spi(rng);
        if used_spis.insert(s) {
            return s;
        }
    };
    let mut spokes_ready: Vec<Spoke> = Vec::with_capacity(n);
    let setup_start = Instant::now();
    let mut last_print = Instant::now();
    for i in 0..n {
        let addr = spoke_addr(i);
        let host = spoke_host(i);
        let socket = std::net::UdpSocket::bind(SocketAddrV4::new(addr, 0))
            .and_then(|s| s.set_nonblocking(true).map(|_| s))
            .map_err(|e| format!("spoke {}: cannot bind UDP on {addr}: {e}", i + 1))?;
        let spoke_port = socket
            .local_addr()
            .map_err(|e| format!("spoke {}: {e}", i + 1))?
            .port();
        let hub_ep = Endpoint {
            local: IpAddr::V4(HUB_WAN),
            peer: IpAddr::V4(addr),
            encapsulation: SaEncapsulation::Udp {
                local_port: hub_port,
                peer_port: spoke_port,
            },
            protected_networks: vec![ProtectedNetwork {
                local: NetworkSpec::Host(HUB_LAN),
                remote: NetworkSpec::Host(host),
            }],
        };
        let spoke_ep = Endpoint {
            local: IpAddr::V4(addr),
            peer: IpAddr::V4(HUB_WAN),
            encapsulation: SaEncapsulation::Udp {
                local_port: spoke_port,
                peer_port: hub_port,
            },
            protected_networks: vec![ProtectedNetwork {
                local: NetworkSpec::Host(host),
                remote: NetworkSpec::Host(HUB_LAN),
            }],
        };
        let spi_down = fresh_spi(&mut rng);
        let spi_up = fresh_spi(&mut rng);
        let [(hub_out, spoke_in), (spoke_out, hub_in)] = tunnel_pair(
            suite,
            &mut rng,
            &hub_ep,
            &spoke_ep,
            spi_down,
            spi_up,
            REPLAY_WINDOW,
        );
        let now = Instant::now();
        let sa =
            |p| SecurityAssociation::new(p, now).map_err(|e| format!("spoke {}: SA: {e}", i + 1));
        let (hub_out, hub_in) = (sa(hub_out)?, sa(hub_in)?);
        let (spoke_out, spoke_in) = (sa(spoke_out)?, sa(spoke_in)?);
        let name: Arc<str> = Arc::from(policy_name(i));
        let out_spi = hub_out.outer_spi();
        for s in [hub_in, hub_out] {
            let owner = io::spi_shard(s.outer_spi(), shard_count as u32) as usize;
            shards[owner].do_send(InstallSa {
                policy: name.clone(),
                kind: SaKind::Manual,
                sa: Box::new(s),
            });
        }
        let policy = InstallPolicy {
            policy: name.clone(),
            protected_networks: hub_ep.protected_networks.clone(),
            outbound_spi: Some(out_spi),
        };
        let last_of_chunk = (i + 1) % SETUP_CHUNK == 0 || i + 1 == n;
        for s in &shards {
            let msg = InstallPolicy {
                policy: policy.policy.clone(),
                protected_networks: policy.protected_networks.clone(),
                outbound_spi: policy.outbound_spi,
            };
            if last_of_chunk {
                // The reply means the shard processed everything sent to it before.
                s.send(msg)
                    .await
                    .map_err(|e| format!("a hub shard is gone: {e}"))?;
            } else {
                s.do_send(msg);
            }
        }
        spokes_ready.push(Spoke {
            index: i,
            addr,
            host,
            socket,
            outbound: spoke_out,
            inbound: spoke_in,
        });
        if last_of_chunk && (last_print.elapsed() >= Duration::from_millis(500) || i + 1 == n) {
            last_print = Instant::now();
            eprintln!("tunnels set up {}/{n}", i + 1);
        }
    }
    let setup = setup_start.elapsed();
    let (sides, _) = hub_report(&shards, n).await;
    let up = sides.iter().filter(|s| s.inbound && s.outbound).count();
    eprintln!(
        "{up}/{n} tunnels installed in {:.3} s ({:.0} tunnels/s); {seconds} s of traffic",
        setup.as_secs_f64(),
        n as f64 / setup.as_secs_f64().max(1e-9)
    );

    // ---- traffic --------------------------------------------------------------------------
    let window = (1024 / n).clamp(1, 8) as u32;
    let (phase_tx, phase_rx) = watch::channel(Phase::Traffic);
    let traffic_start = Instant::now();
    for s in spokes_ready {
        spoke_rt.spawn(spoke::run(s, hub, window, stats.clone(), phase_rx.clone()));
    }
    drop(phase_rx);
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
    let (sides, hub_errs) = hub_report(&shards, n).await;
    let t = stats::totals(&stats);
    let up = sides.iter().filter(|s| s.inbound && s.outbound).count();
    let mut failed: Vec<String> = Vec::new();
    let mut both = 0;
    for (i, (side, st)) in sides.iter().zip(stats.iter()).enumerate() {
        let upp = SpokeStats::get(&st.up_packets);
        let down = SpokeStats::get(&st.down_packets);
        let mut why = Vec::new();
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
                spoke_addr(i),
                spoke_host(i),
                why.join(", ")
            ));
        }
    }
    let fatal_hub = hub_errs.icv + hub_errs.replay + hub_errs.padding;
    let ok = up == n && failed.is_empty() && fatal_hub == 0 && t.decap_errors == 0;
    let lan_unexpected = SpokeStats::get(&lan_stats.unexpected);
    let lan_send = SpokeStats::get(&lan_stats.send_errors);

    let secs = traffic.as_secs_f64().max(1e-9);
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<44} {v}\n"));
    line("spokes", n.to_string());
    line("hub shards", shard_count.to_string());
    line("tunnels up (installed)", format!("{up}/{n}"));
    line("tunnels with traffic both ways", format!("{both}/{n}"));
    line(
        "setup time",
        format!(
            "{:.3} s ({:.0} tunnels/s)",
            setup.as_secs_f64(),
            n as f64 / setup.as_secs_f64().max(1e-9)
        ),
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
        hub_errs.handed_over.to_string(),
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
    let _ = std::io::stdout().flush();
    Ok(ok)
}

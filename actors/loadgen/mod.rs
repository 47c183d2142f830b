//! `ikehub loadgen`: a swarm of real IKEv1 initiators against a hub, for sizing and testing one
//! (issue 10, like strongSwan's load-tester plugin). Each spoke has its own source address, its
//! own phase-1 ID and its own protected /32, and runs main mode + quick mode (PSK) with the
//! project's sans-IO `IkeSession` ([`spoke`]); the swarm paces new exchanges (`--rate`), bounds
//! the handshakes in flight (`--max-in-flight`) and the whole run (`--timeout`), prints progress
//! on stderr once a second and a [`report::Report`] on stdout at the end.
//!
//! The spokes run as tasks on one multi-thread tokio runtime (`--threads`): the initiator's two
//! exponentiations per tunnel cost what the hub's do, so a one-thread swarm would measure itself.
//! No ESP data plane: the SAs are negotiated, never used.

mod pace;
mod report;
mod spoke;
mod suite;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use ikehub::config::{
    Dpd, Initiate, IpsecTransform, IsakmpTransform, KeyBytes, LocalId, NetworkSpec,
    ProtectedNetwork, RemoteId,
};
use ikehub::ike::config::NatConfig;
use ikehub::ike::stats::{IKE_STATS, IkeStats};
use ikehub::ike::{PeerConfig, RandomSpis, RekeyConfig, RetransmitConfig};
use tokio::sync::{Semaphore, watch};

use report::{Latency, Report, Stats};
use spoke::{Env, Spoke, Stop};
use suite::AddressPool;

/// `ikehub loadgen` options (docs/cli.md).
#[derive(Args, Debug, Clone)]
pub struct LoadgenArgs {
    /// The hub's IKE address, ADDR or ADDR:PORT (port 500 by default). The spokes bind the same
    /// port on their own addresses.
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub hub: String,
    /// The hub's NAT-T port (RFC 3947); the spokes bind it too with --nat-t.
    #[arg(long, value_name = "PORT", default_value_t = 4500)]
    pub hub_nat_t_port: u16,
    /// Number of spokes (one tunnel each).
    #[arg(long, value_name = "N")]
    pub spokes: u64,
    /// At most R new exchanges (main-mode message 1) per second.
    #[arg(long, value_name = "R", default_value_t = 100)]
    pub rate: u32,
    /// At most this many handshakes under way at once (message 1 sent, quick mode not done).
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub max_in_flight: usize,
    /// The spokes' source addresses (spoke i uses the i-th): a CIDR block (without its network
    /// and broadcast addresses) or a range FIRST-LAST. Every address must be local (on `lo`
    /// any 127.0.0.0/8 address is).
    #[arg(long, value_name = "CIDR|FIRST-LAST")]
    pub sources: String,
    /// The spokes' protected hosts (spoke i proposes the i-th as its /32); default: each spoke's
    /// own source address.
    #[arg(long, value_name = "CIDR|FIRST-LAST")]
    pub networks: Option<String>,
    /// The hub's protected network, the remote side of every spoke's quick mode.
    #[arg(long, value_name = "CIDR", default_value = "198.51.100.0/24")]
    pub remote: String,
    /// File holding the pre-shared key (trailing line ends are not part of the key).
    #[arg(long, value_name = "FILE")]
    pub psk_file: PathBuf,
    /// Phase-1 Diffie-Hellman group: 1, 2, 5, 14, 15 or 16.
    #[arg(long, value_name = "G", default_value_t = 14)]
    pub ike_group: u16,
    /// Phase-1 cipher and hash, ENC-HASH: des|3des|aes128|aes192|aes256 - md5|sha1|sha256.
    #[arg(long, value_name = "SUITE", default_value = "aes128-sha1")]
    pub ike: String,
    /// ESP suite, ENC-AUTH (aes128-sha1, 3des-md5, aes256-sha256...) or aes128gcm16 /
    /// aes256gcm16.
    #[arg(long, value_name = "SUITE", default_value = "aes128-sha1")]
    pub esp: String,
    /// Quick-mode PFS group; none by default.
    #[arg(long, value_name = "G")]
    pub pfs: Option<u16>,
    /// Offer NAT traversal (RFC 3947): float to the NAT-T port when the hub agrees.
    #[arg(long)]
    pub nat_t: bool,
    /// Seconds each tunnel is held after it came up, before it is deleted.
    #[arg(long, value_name = "S", default_value_t = 0.0)]
    pub hold: f64,
    /// Overall bound in seconds; default: spokes / rate + hold + 75 (two exchanges' give-up
    /// time). Spokes not up then count as failed; tunnels held are deleted.
    #[arg(long, value_name = "S")]
    pub timeout: Option<f64>,
    /// A held tunnel that is lost (the hub deleted it, or DPD found the hub dead) is negotiated
    /// again, after a backoff with jitter, through the same in-flight slots; a spoke is never
    /// given up on while its hold lasts. Turns on DPD (--dpd-interval).
    #[arg(long)]
    pub reconnect: bool,
    /// RFC 3706 DPD while holding: R-U-THERE after this many idle seconds (default 10 with
    /// --reconnect, off without).
    #[arg(long, value_name = "S")]
    pub dpd_interval: Option<u64>,
    /// DPD: the hub is dead when no answer came this many seconds after the first probe
    /// (default 3 x --dpd-interval).
    #[arg(long, value_name = "S")]
    pub dpd_timeout: Option<u64>,
    /// Threads driving the spokes; default: one per core.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// The report as one JSON document on stdout (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
}

/// Everything checked before a socket is opened.
struct Plan {
    config: Arc<PeerConfig>,
    hub: SocketAddrV4,
    sources: AddressPool,
    networks: Option<AddressPool>,
    remote: NetworkSpec,
    spokes: u64,
    period: Duration,
    max_in_flight: usize,
    hold: Duration,
    timeout: Duration,
    threads: usize,
}

/// Longest `--hold` and `--timeout`: a run's end is an `Instant`, and one far enough away
/// overflows it (a panic, not a refusal).
const MAX_SECONDS: Duration = Duration::from_secs(86400 * 365);

fn seconds(what: &str, s: f64) -> Result<Duration, String> {
    let d = Duration::try_from_secs_f64(s)
        .map_err(|_| format!("--{what} {s}: not a number of seconds"))?;
    if d > MAX_SECONDS {
        return Err(format!(
            "--{what} {s}: at most {} seconds (a year)",
            MAX_SECONDS.as_secs()
        ));
    }
    Ok(d)
}

fn plan(a: &LoadgenArgs) -> Result<Plan, String> {
    let hub: SocketAddrV4 = match a.hub.parse::<SocketAddrV4>() {
        Ok(h) => h,
        Err(_) => SocketAddrV4::new(
            a.hub
                .parse::<Ipv4Addr>()
                .map_err(|_| format!("--hub {}: not an IPv4 ADDR or ADDR:PORT", a.hub))?,
            500,
        ),
    };
    if a.spokes == 0 {
        return Err("--spokes must be at least 1".into());
    }
    if a.rate == 0 || a.max_in_flight == 0 {
        return Err("--rate and --max-in-flight must be at least 1".into());
    }
    let sources = AddressPool::parse(&a.sources).map_err(|e| format!("--sources: {e}"))?;
    if sources.len() < a.spokes {
        return Err(format!(
            "--sources {} holds {} addresses for {} spokes",
            a.sources,
            sources.len(),
            a.spokes
        ));
    }
    let networks = match &a.networks {
        Some(n) => {
            let p = AddressPool::parse(n).map_err(|e| format!("--networks: {e}"))?;
            if p.len() < a.spokes {
                return Err(format!(
                    "--networks {n} holds {} addresses for {} spokes",
                    p.len(),
                    a.spokes
                ));
            }
            Some(p)
        }
        None => None,
    };
    let remote: NetworkSpec = a
        .remote
        .parse()
        .map_err(|e| format!("--remote {}: {e}", a.remote))?;
    let (enc, hash) = suite::ike_suite(&a.ike).map_err(|e| format!("--ike {e}"))?;
    let group = suite::dh_group(a.ike_group).map_err(|e| format!("--ike-group: {e}"))?;
    let (esp_enc, esp_auth) = suite::esp_suite(&a.esp).map_err(|e| format!("--esp {e}"))?;
    let pfs_group = match a.pfs {
        Some(g) => Some(suite::dh_group(g).map_err(|e| format!("--pfs: {e}"))?),
        None => None,
    };
    let psk = suite::read_psk(&a.psk_file)?;
    let dpd = match (a.dpd_interval, a.reconnect) {
        (Some(0), _) => return Err("--dpd-interval must be at least 1".into()),
        (Some(i), _) => Some(i),
        (None, true) => Some(10),
        (None, false) => None,
    }
    .map(|interval_seconds| Dpd {
        interval_seconds,
        timeout_seconds: a.dpd_timeout.unwrap_or(interval_seconds.saturating_mul(3)),
    });
    if let Some(d) = &dpd
        && d.timeout_seconds < d.interval_seconds
    {
        return Err(format!(
            "--dpd-timeout {} is shorter than --dpd-interval {}",
            d.timeout_seconds, d.interval_seconds
        ));
    }
    if dpd.is_none() && a.dpd_timeout.is_some() {
        return Err("--dpd-timeout needs --dpd-interval or --reconnect".into());
    }
    let hold = seconds("hold", a.hold)?;
    let period = Duration::from_secs(1) / a.rate;
    let timeout = match a.timeout {
        Some(t) => seconds("timeout", t)?,
        None => {
            period.saturating_mul(u32::try_from(a.spokes).unwrap_or(u32::MAX))
                + hold
                + Duration::from_secs(75)
        }
    };
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64);
    let config = PeerConfig {
        policy: "loadgen".into(),
        preshared_key: KeyBytes(psk),
        isakmp_transforms: vec![Arc::new(IsakmpTransform::new(
            "loadgen-ike",
            enc,
            hash,
            group,
        ))],
        ipsec_transforms: vec![Arc::new(IpsecTransform::esp(
            "loadgen-esp",
            esp_enc,
            esp_auth,
        ))],
        pfs_group,
        initiate: Initiate::Never,
        nat: NatConfig {
            enabled: a.nat_t,
            ike_port: hub.port(),
            nat_t_port: a.hub_nat_t_port,
            ..NatConfig::default()
        },
        dpd,
        // Each spoke asks for its own /32 against the hub's network (spoke.rs).
        protected_networks: vec![ProtectedNetwork {
            local: NetworkSpec::ANY,
            remote,
        }],
        retransmit: RetransmitConfig::default(),
        rekey: RekeyConfig::default(),
        max_half_open: 4,
        default_replay_window: ikehub::config::defaults::IKE_REPLAY_WINDOW,
        selector_guard: None,
        local_id: LocalId::Address,
        // A responder behind NAT-T (strongSwan with kernel-libipsec fakes one) may send any
        // address as its ID; the pre-shared key authenticates it all the same.
        remote_id: RemoteId::Any,
        dh_key_reuse: None,
    };
    Ok(Plan {
        config: Arc::new(config),
        hub,
        sources,
        networks,
        remote,
        spokes: a.spokes,
        period,
        max_in_flight: a.max_in_flight,
        hold,
        timeout,
        threads,
    })
}

pub fn run(args: &LoadgenArgs) -> ExitCode {
    let plan = match plan(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ikehub loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let per_spoke = if args.nat_t { 2 } else { 1 };
    let needed = plan.spokes.saturating_mul(per_spoke) + 64;
    let nofile = crate::rlimit::raise_nofile();
    if needed > nofile {
        eprintln!(
            "ikehub loadgen: warning: {} spokes may hold {needed} open sockets at once but the \
             limit is {nofile} (`ulimit -n`); spokes that cannot open theirs fail as `socket`",
            plan.spokes
        );
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.threads)
        .thread_name("loadgen")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ikehub loadgen: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let report = rt.block_on(swarm(args, plan));
    rt.shutdown_timeout(Duration::from_secs(1));
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", report.text());
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// After a stop, how long the spokes get to send their deletes before the report is made.
const STOP_GRACE: Duration = Duration::from_secs(5);

async fn swarm(args: &LoadgenArgs, plan: Plan) -> Report {
    let stats = Arc::new(Stats::default());
    let epoch = Instant::now();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let retransmits_before = IkeStats::get(&IKE_STATS.retransmissions);
    eprintln!(
        "ikehub loadgen: {} spokes from {} against {}, at most {}/s and {} in flight, hold {:.1} s, \
         timeout {:.0} s",
        plan.spokes,
        args.sources,
        plan.hub,
        args.rate,
        plan.max_in_flight,
        plan.hold.as_secs_f64(),
        plan.timeout.as_secs_f64()
    );
    let env = Arc::new(Env {
        config: plan.config.clone(),
        hub: plan.hub,
        remote: plan.remote,
        hold: plan.hold,
        stats: stats.clone(),
        epoch,
        spis: Arc::new(RandomSpis),
        reconnect: args.reconnect,
        gate: Arc::new(Semaphore::new(plan.max_in_flight)),
    });
    let (stop_tx, stop_rx) = watch::channel::<Option<Stop>>(None);

    // The launcher: spokes start one period apart on average ([`pace`]: a late start is not
    // caught up with a burst), and only with an in-flight slot.
    let launcher = {
        let (env, mut stop) = (env.clone(), stop_rx.clone());
        let (sources, networks, period, n) =
            (plan.sources, plan.networks, plan.period, plan.spokes);
        tokio::spawn(async move {
            let mut pacer = pace::Pacer::new(period, Instant::now());
            let mut launched = 0u64;
            'spokes: for i in 0..n {
                let permit = tokio::select! {
                    p = env.gate.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = stop.wait_for(Option::is_some) => break,
                };
                while let Some(at) = pacer.poll(Instant::now()) {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at.into()) => {}
                        _ = stop.wait_for(Option::is_some) => break 'spokes,
                    }
                }
                let (Some(addr), Some(host)) = (
                    sources.get(i),
                    networks.map_or(sources.get(i), |p| p.get(i)),
                ) else {
                    break;
                };
                let spoke = Spoke { addr, host };
                tokio::spawn(spoke::run(spoke, env.clone(), permit, stop.clone()));
                launched += 1;
            }
            launched
        })
    };

    let deadline = tokio::time::Instant::from_std(epoch + plan.timeout);
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut launcher = launcher;
    let mut launched: Option<u64> = None;
    let mut stopped: Option<tokio::time::Instant> = None;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut ctrl_c_live = true;
    loop {
        let done = Stats::get(&stats.done);
        if launched.is_some_and(|l| done >= l) {
            break;
        }
        if stopped.is_some_and(|at| at.elapsed() >= STOP_GRACE) {
            eprintln!(
                "ikehub loadgen: some spokes did not finish within {STOP_GRACE:?} of the stop"
            );
            break;
        }
        tokio::select! {
            r = &mut launcher, if launched.is_none() => {
                launched = Some(r.unwrap_or(0));
            }
            _ = tokio::time::sleep_until(deadline), if stopped.is_none() => {
                eprintln!("ikehub loadgen: overall timeout of {:.0} s reached", plan.timeout.as_secs_f64());
                let _ = stop_tx.send(Some(Stop::Timeout));
                stopped = Some(tokio::time::Instant::now());
            }
            r = &mut ctrl_c, if stopped.is_none() && ctrl_c_live => {
                ctrl_c_live = false;
                if r.is_ok() {
                    eprintln!("ikehub loadgen: interrupted; deleting the tunnels held");
                    let _ = stop_tx.send(Some(Stop::Interrupted));
                    stopped = Some(tokio::time::Instant::now());
                }
            }
            _ = tick.tick() => progress(&stats, plan.spokes, epoch, retransmits_before),
            // Re-checks "done" (and the stop grace) ten times a second.
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    progress(&stats, plan.spokes, epoch, retransmits_before);

    let up = Stats::get(&stats.up);
    let started = Stats::get(&stats.started);
    let failed = Stats::get(&stats.failed);
    let setup = Duration::from_micros(Stats::get(&stats.last_up_us));
    let down_at_end = Stats::get(&stats.down_at_end);
    let setup_seconds = setup.as_secs_f64();
    Report {
        hub: plan.hub.to_string(),
        spokes: plan.spokes,
        ike_group: plan.config.isakmp_transforms[0].dh_group,
        esp: args.esp.clone(),
        nat_t: args.nat_t,
        started,
        up,
        failed,
        not_started: plan.spokes.saturating_sub(launched.unwrap_or(0)),
        deleted: Stats::get(&stats.deleted),
        closed_by_peer: Stats::get(&stats.closed_by_peer),
        setup_seconds,
        setup_rate: if setup_seconds > 0.0 {
            up as f64 / setup_seconds
        } else {
            0.0
        },
        latency_ms: Latency::of(stats.latencies()),
        failures: stats.failures(),
        ike_messages_sent: Stats::get(&stats.sent),
        retransmissions: IkeStats::get(&IKE_STATS.retransmissions) - retransmits_before,
        reconnect: args.reconnect,
        lost: Stats::get(&stats.lost),
        reconnect_attempts: Stats::get(&stats.reconnect_attempts),
        reconnected: Stats::get(&stats.reconnected),
        down_at_end,
        recovery_seconds: stats.recovery().map(|d| d.as_secs_f64()),
        all_back_seconds: stats.all_back().map(|d| d.as_secs_f64()),
        started_unix,
        recovery_retransmissions: match Stats::get(&stats.retransmissions_at_first_loss) {
            0 => 0,
            at => IkeStats::get(&IKE_STATS.retransmissions).saturating_sub(at - 1),
        },
        send_errors: Stats::get(&stats.send_errors),
        elapsed_seconds: epoch.elapsed().as_secs_f64(),
        ok: up == plan.spokes && down_at_end == 0,
    }
}

fn progress(stats: &Stats, n: u64, epoch: Instant, retransmits_before: u64) {
    let t = epoch.elapsed().as_secs_f64();
    let up = Stats::get(&stats.up);
    let failed = Stats::get(&stats.failed);
    let started = Stats::get(&stats.started);
    let lost = Stats::get(&stats.lost);
    let reconnect = if lost > 0 {
        format!(
            ", lost {lost}, down {}, reconnected {}",
            Stats::get(&stats.down),
            Stats::get(&stats.reconnected)
        )
    } else {
        String::new()
    };
    eprintln!(
        "[{t:>6.1}s] up {up}/{n}, handshaking {}, failed {failed}, deleted {}, {:.1} tunnels/s, \
         retransmissions {}{reconnect}",
        started.saturating_sub(up + failed),
        Stats::get(&stats.deleted),
        up as f64 / t.max(1e-9),
        IkeStats::get(&IKE_STATS.retransmissions) - retransmits_before
    );
}

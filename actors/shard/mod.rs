//! EspShard: one ESP forwarding actor per core, each on its own arbiter thread. It owns one
//! queue of the cleartext device, its share of the WAN sockets (steered to it by SPI), and the
//! SAs whose SPI hashes to it; packets that arrive on the wrong shard are handed over in batches.

mod forward;
pub mod messages;
mod policies;
mod ready;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use ikehub::esp::{Direction, SecurityAssociation};
use rand::rngs::StdRng;
use tokio::io::unix::AsyncFd;

use crate::control::protocol::SaStatus;
use crate::io::{self, MemoryPort, PacketBatch, RawReceiver, RawSender, TunQueue, UdpBatchSocket};
pub use messages::*;
use policies::ShardPolicies;
use ready::{Readable, Source};

/// The cleartext side of a shard.
pub enum Cleartext {
    Tun(TunQueue),
    Memory(MemoryPort),
}

/// The WAN sockets of one interface that belong to one shard (not yet registered with tokio:
/// that happens on the shard's own thread).
pub struct WanSockets {
    pub local: Ipv4Addr,
    pub nat_t_port: u16,
    /// Largest outer packet the path takes (the device MTU).
    pub path_mtu: usize,
    pub udp: Option<UdpBatchSocket>,
    pub raw_esp: Option<RawReceiver>,
    pub raw_ah: Option<RawReceiver>,
    pub raw_tx: Option<RawSender>,
}

pub struct ShardIo {
    /// `None` when the daemon runs without a tunnel device.
    pub cleartext: Option<Cleartext>,
    pub wans: Vec<WanSockets>,
}

pub(crate) struct Wan {
    local: Ipv4Addr,
    nat_t_port: u16,
    path_mtu: usize,
    udp: Option<Rc<AsyncFd<UdpBatchSocket>>>,
    raw_esp: Option<Rc<AsyncFd<RawReceiver>>>,
    raw_ah: Option<Rc<AsyncFd<RawReceiver>>>,
    raw_tx: Option<RawSender>,
}

pub(crate) enum ClearFd {
    Tun(Rc<AsyncFd<TunQueue>>),
    Memory(Rc<AsyncFd<MemoryPort>>),
}

/// An SA as this shard holds it.
pub(crate) struct Installed {
    policy: Arc<str>,
    kind: SaKind,
    sa: SecurityAssociation,
}

pub struct EspShard {
    index: u32,
    count: u32,
    io: Option<ShardIo>,
    clear: Option<ClearFd>,
    wans: Vec<Wan>,
    peers: Vec<Addr<EspShard>>,
    outbound: HashMap<u32, Installed>,
    inbound: HashMap<u32, Installed>,
    spd: ShardPolicies,
    rx: Option<PacketBatch>,
    tx_raw: PacketBatch,
    tx_udp: Vec<PacketBatch>,
    tx_clear: PacketBatch,
    handoff: Vec<(Vec<u8>, Vec<u8>)>,
    rng: StdRng,
    ip_id: u16,
    counters: ShardCounters,
    ike: Option<Recipient<crate::ike::IkeDatagram>>,
    acquire: Option<Recipient<crate::ike::Acquire>>,
    /// When each policy last sent an Acquire (at most one a second per policy).
    last_acquire: HashMap<Arc<str>, Instant>,
    /// Drop counters at the last summary log line.
    logged_drops: [u64; 10],
}

impl EspShard {
    pub fn new(index: u32, count: u32, io: ShardIo) -> Self {
        EspShard {
            index,
            count,
            io: Some(io),
            clear: None,
            wans: Vec::new(),
            peers: Vec::new(),
            outbound: HashMap::new(),
            inbound: HashMap::new(),
            spd: ShardPolicies::default(),
            rx: Some(PacketBatch::new(64, 2048, 128)),
            tx_raw: PacketBatch::new(96, 2048, 0),
            tx_udp: Vec::new(),
            tx_clear: PacketBatch::new(64, 2048, 0),
            handoff: (0..count).map(|_| (Vec::new(), Vec::new())).collect(),
            rng: rand::make_rng(),
            ip_id: (index as u16).wrapping_mul(0x2f1d),
            counters: ShardCounters::default(),
            ike: None,
            acquire: None,
            last_acquire: HashMap::new(),
            logged_drops: [0; 10],
        }
    }

    /// Starts `count` shards, each on its own arbiter (thread), and introduces them to each
    /// other.
    pub fn start_all(ios: Vec<ShardIo>) -> Vec<Addr<EspShard>> {
        let count = ios.len() as u32;
        let addrs: Vec<Addr<EspShard>> = ios
            .into_iter()
            .enumerate()
            .map(|(i, io)| {
                let arbiter = Arbiter::new();
                EspShard::start_in_arbiter(&arbiter.handle(), move |_| {
                    EspShard::new(i as u32, count, io)
                })
            })
            .collect();
        for a in &addrs {
            a.do_send(Peers(addrs.clone()));
        }
        addrs
    }

    fn owner(&self, spi: u32) -> u32 {
        io::spi_shard(spi, self.count)
    }

    fn status(&self, now: Instant, i: &Installed) -> SaStatus {
        let sa = &i.sa;
        let lim = sa.lifetime();
        let c = sa.counters();
        SaStatus {
            direction: match sa.direction() {
                Direction::Inbound => "IN",
                Direction::Outbound => "OUT",
            }
            .to_string(),
            kind: i.kind.label().to_string(),
            policy: i.policy.to_string(),
            mode: sa.mode().display_name().to_string(),
            replay: sa.anti_replay(),
            peer: sa.peer().to_string(),
            ah_spi: sa.ah_spi(),
            esp_spi: sa.esp_spi(),
            ah_auth: sa.ah_authentication().map(|a| a.display_name().to_string()),
            esp_auth: sa
                .esp_authentication()
                .filter(|a| *a != ikehub::crypto::AuthAlgorithm::None)
                .map(|a| a.display_name().to_string()),
            esp_enc: sa.esp_encryption().map(|a| a.display_name().to_string()),
            kbytes: sa.kilobytes(),
            kbytes_limit: lim.kilobytes,
            seconds: sa.age(now).as_secs(),
            seconds_limit: lim.seconds,
            packets: c.packets,
            bytes: c.bytes,
            replay_drops: c.replay_drops,
            icv_failures: c.icv_failures,
            padding_errors: c.padding_errors,
            selector_mismatches: c.selector_mismatches,
            other_drops: c.other_drops,
        }
    }

    fn register(&mut self, ctx: &mut Context<Self>) -> std::io::Result<()> {
        let Some(io) = self.io.take() else {
            return Ok(());
        };
        match io.cleartext {
            None => {}
            Some(Cleartext::Tun(q)) => {
                let fd = Rc::new(io::register(q)?);
                ctx.add_stream(Readable::new(fd.clone(), Source::Cleartext));
                self.clear = Some(ClearFd::Tun(fd));
            }
            Some(Cleartext::Memory(m)) => {
                let fd = Rc::new(io::register(m)?);
                ctx.add_stream(Readable::new(fd.clone(), Source::Cleartext));
                self.clear = Some(ClearFd::Memory(fd));
            }
        }
        for (w, sockets) in io.wans.into_iter().enumerate() {
            let mut wan = Wan {
                local: sockets.local,
                nat_t_port: sockets.nat_t_port,
                path_mtu: sockets.path_mtu,
                udp: None,
                raw_esp: None,
                raw_ah: None,
                raw_tx: sockets.raw_tx,
            };
            if let Some(s) = sockets.udp {
                let fd = Rc::new(io::register(s)?);
                ctx.add_stream(Readable::new(fd.clone(), Source::Udp(w)));
                wan.udp = Some(fd);
            }
            if let Some(s) = sockets.raw_esp {
                let fd = Rc::new(io::register(s)?);
                ctx.add_stream(Readable::new(fd.clone(), Source::RawEsp(w)));
                wan.raw_esp = Some(fd);
            }
            if let Some(s) = sockets.raw_ah {
                let fd = Rc::new(io::register(s)?);
                ctx.add_stream(Readable::new(fd.clone(), Source::RawAh(w)));
                wan.raw_ah = Some(fd);
            }
            self.wans.push(wan);
            self.tx_udp.push(PacketBatch::new(96, 2048, 0));
        }
        Ok(())
    }
}

/// Per-packet problems are counted always and logged at most once per interval per shard, as
/// a summary (a flood of bad packets must not become a flood of log lines).
const DROP_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

impl EspShard {
    fn log_drops(&mut self) {
        let c = &self.counters;
        let now = [
            c.unknown_spi,
            c.no_policy,
            c.not_ipv4,
            c.encap_errors,
            c.send_errors,
            c.icv_failures,
            c.replay_drops,
            c.padding_errors,
            c.selector_mismatches,
            c.malformed,
        ];
        let names = [
            "unknown SPI",
            "no policy",
            "not IPv4",
            "encapsulation errors",
            "send errors",
            "ICV failures",
            "replayed",
            "bad padding",
            "outside the SA's protected networks",
            "other malformed",
        ];
        let mut parts = Vec::new();
        for ((n, before), name) in now.iter().zip(self.logged_drops.iter()).zip(names) {
            if n > before {
                parts.push(format!("{} {name}", n - before));
            }
        }
        if !parts.is_empty() {
            tracing::warn!(
                shard = self.index,
                "packets dropped in the last {} s: {} (`ikehub show counters` and `show sa \
                 --json` have the totals)",
                DROP_LOG_INTERVAL.as_secs(),
                parts.join(", ")
            );
        }
        self.logged_drops = now;
    }
}

impl Actor for EspShard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Err(e) = self.register(ctx) {
            tracing::error!(
                shard = self.index,
                "cannot register the shard's sockets: {e}"
            );
            ctx.stop();
        }
        ctx.run_interval(DROP_LOG_INTERVAL, |act, _| act.log_drops());
    }
}

impl StreamHandler<Source> for EspShard {
    fn handle(&mut self, source: Source, _ctx: &mut Context<Self>) {
        let now = Instant::now();
        match source {
            Source::Cleartext => self.drain_cleartext(now),
            Source::Udp(w) => self.drain_udp(now, w),
            Source::RawEsp(w) => self.drain_raw(now, w, false),
            Source::RawAh(w) => self.drain_raw(now, w, true),
        }
        self.flush_handoffs();
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // A readiness stream only ends when its fd fails; keep the shard alive for the rest.
    }
}

impl Handler<ConnectIke> for EspShard {
    type Result = ();
    fn handle(&mut self, msg: ConnectIke, _: &mut Context<Self>) {
        self.ike = Some(msg.ike);
        self.acquire = Some(msg.acquire);
    }
}

impl Handler<Peers> for EspShard {
    type Result = ();
    fn handle(&mut self, msg: Peers, _: &mut Context<Self>) {
        self.peers = msg.0;
    }
}

impl Handler<InstallSa> for EspShard {
    type Result = ();
    fn handle(&mut self, msg: InstallSa, _: &mut Context<Self>) {
        let spi = msg.sa.outer_spi();
        let installed = Installed {
            policy: msg.policy,
            kind: msg.kind,
            sa: *msg.sa,
        };
        match installed.sa.direction() {
            Direction::Inbound => self.inbound.insert(spi, installed),
            Direction::Outbound => self.outbound.insert(spi, installed),
        };
    }
}

impl Handler<RemoveSa> for EspShard {
    type Result = Option<SaStatus>;
    fn handle(&mut self, msg: RemoveSa, _: &mut Context<Self>) -> Option<SaStatus> {
        let removed = match msg.direction {
            Direction::Inbound => self.inbound.remove(&msg.spi),
            Direction::Outbound => self.outbound.remove(&msg.spi),
        };
        removed.map(|i| self.status(Instant::now(), &i))
    }
}

impl Handler<InstallPolicy> for EspShard {
    type Result = ();
    fn handle(&mut self, msg: InstallPolicy, _: &mut Context<Self>) {
        self.spd
            .install(msg.policy, msg.protected_networks, msg.outbound_spi);
    }
}

impl Handler<SetPolicySa> for EspShard {
    type Result = ();
    fn handle(&mut self, msg: SetPolicySa, _: &mut Context<Self>) {
        self.spd.set_outbound(&msg.policy, msg.outbound_spi);
    }
}

impl Handler<RemovePolicy> for EspShard {
    type Result = ();
    fn handle(&mut self, msg: RemovePolicy, _: &mut Context<Self>) {
        self.spd.remove(&msg.policy);
    }
}

impl Handler<SetPeerPort> for EspShard {
    type Result = ();
    fn handle(&mut self, msg: SetPeerPort, _: &mut Context<Self>) {
        if let Some(i) = self.outbound.get_mut(&msg.outbound_spi) {
            i.sa.set_peer_port(msg.port);
        }
    }
}

impl Handler<GetSaUsage> for EspShard {
    type Result = Option<SaUsage>;
    fn handle(&mut self, msg: GetSaUsage, _: &mut Context<Self>) -> Option<SaUsage> {
        let i = self.inbound.get(&msg.inbound_spi)?;
        Some(SaUsage {
            packets: i.sa.counters().packets,
            // Only the volume limit: the session tracks the time limits itself.
            soft_expired: i
                .sa
                .lifetime()
                .kilobytes
                .is_some_and(|kb| i.sa.kilobytes() * 10 >= kb * 9),
        })
    }
}

impl Handler<Report> for EspShard {
    type Result = MessageResult<Report>;
    fn handle(&mut self, _: Report, _: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        let mut sas: Vec<SaStatus> = self
            .inbound
            .values()
            .chain(self.outbound.values())
            .map(|i| self.status(now, i))
            .collect();
        sas.sort_by(|a, b| (&a.policy, &a.direction).cmp(&(&b.policy, &b.direction)));
        MessageResult(ShardReport {
            sas,
            counters: self.counters.clone(),
        })
    }
}

impl Handler<Handoff> for EspShard {
    type Result = ();
    fn handle(&mut self, msg: Handoff, _: &mut Context<Self>) {
        self.receive_handoff(Instant::now(), msg);
        self.flush_handoffs();
    }
}

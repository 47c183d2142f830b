//! Heap bytes per established tunnel at the hub, measured, part by part.
//!
//! `cargo bench --bench tunnel_memory -- [TUNNELS] [GROUP]` (default 2000 tunnels, DH group 14)
//!
//! A counting global allocator wraps the system one. The bench brings up TUNNELS tunnels on
//! virtual time, each an initiator `IkeSession` (the spoke, dropped once its tunnel is up)
//! against a responder `IkeSession` (the hub's; all share the template policy's `PeerConfig`, as
//! the daemon's router shares it), main mode + quick mode, PSK, with DPD and NAT-T on as in
//! profiles/hub.toml. For each tunnel it builds what the hub's shard holds: the inbound and
//! outbound `esp::SecurityAssociation` from the session's `ChildSaInfo`, kept in hash tables
//! keyed like actors/shard/sas.rs, and the SPD entry as actors/shard/policies.rs adds it (an
//! `spd::Spd` policy plus its per-policy entry list) under the spoke's `policy@address` key.
//! Then it frees the structures one kind at a time and prints what each freed, per tunnel:
//! requested bytes, and the bytes glibc's malloc really spends (`malloc_usable_size` + its
//! 8-byte chunk header), which is what RSS sees. The daemon's own wrappers (the peer actor and
//! its mailbox, the router's maps, claims) live in the binary and are not counted here: see
//! docs/design.md "Per-tunnel memory budget" for them and for the RSS of a real hub.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use ikehub::config::{
    Dpd, HashAlgorithm, Initiate, IpsecTransform, IsakmpTransform, KeyBytes, ProtectedNetwork,
};
use ikehub::crypto::{AuthAlgorithm, EncrAlgorithm};
use ikehub::esp::SecurityAssociation;
use ikehub::ike::config::NatConfig;
use ikehub::ike::footprint::{Part, inline_sizes};
use ikehub::ike::{
    Event, IkeSession, PeerConfig, RandomSpis, RekeyConfig, RetransmitConfig, SpiAllocator,
};
use ikehub::spd::{OneOrMany, Policy, PolicyId, Spd, SpiHasher};

struct Counting;

/// The daemon's session RNG (actors/ike/rng.rs, which a bench cannot import from the binary):
/// a zero-sized handle to the thread's CSPRNG, so the hub's sessions here cost what the
/// daemon's do.
#[derive(Clone, Copy)]
struct ThreadLocalRng;

impl rand::TryRng for ThreadLocalRng {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        rand::rng().try_next_u32()
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        rand::rng().try_next_u64()
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        rand::rng().try_fill_bytes(dst)
    }
}

impl rand::TryCryptoRng for ThreadLocalRng {}

static REQUESTED: AtomicIsize = AtomicIsize::new(0);
static MALLOC: AtomicIsize = AtomicIsize::new(0);

/// What glibc spends on a block: its usable size plus the 8-byte chunk header.
fn spent(ptr: *mut u8) -> isize {
    // SAFETY: `ptr` is a live block from `System` (glibc malloc), as malloc_usable_size needs.
    (unsafe { libc::malloc_usable_size(ptr.cast()) } + 8) as isize
}

// SAFETY: every call forwards to `System` unchanged; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            REQUESTED.fetch_add(l.size() as isize, Relaxed);
            MALLOC.fetch_add(spent(p), Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        REQUESTED.fetch_sub(l.size() as isize, Relaxed);
        MALLOC.fetch_sub(spent(p), Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The chunk glibc's malloc (x86-64) carves for a request: header included, 16-byte aligned,
/// 32 bytes at least.
fn glibc_chunk(request: usize) -> usize {
    ((request + 8 + 15) & !15).max(32)
}

fn live() -> (isize, isize) {
    (REQUESTED.load(Relaxed), MALLOC.load(Relaxed))
}

const HUB: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn spoke_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 16, 0, 1)) + i as u32)
}

fn network(local: &str, remote: &str) -> ProtectedNetwork {
    ProtectedNetwork {
        local: local.parse().expect("a literal network"),
        remote: remote.parse().expect("a literal network"),
    }
}

fn config(policy: String, group: u16, hub: bool, net: ProtectedNetwork) -> PeerConfig {
    PeerConfig {
        policy,
        preshared_key: KeyBytes(b"correct horse battery staple, but longer and random".to_vec()),
        isakmp_transforms: vec![Arc::new(IsakmpTransform::new(
            "AES128_SHA1",
            EncrAlgorithm::AesCbc128,
            HashAlgorithm::Sha1,
            group,
        ))],
        ipsec_transforms: vec![Arc::new(IpsecTransform::esp(
            "AES128_SHA1",
            EncrAlgorithm::AesCbc128,
            AuthAlgorithm::HmacSha1,
        ))],
        pfs_group: None,
        initiate: if hub {
            Initiate::Never
        } else {
            Initiate::Permanent
        },
        nat: NatConfig::default(),
        dpd: Some(Dpd {
            interval_seconds: 30,
            timeout_seconds: 120,
        }),
        protected_networks: vec![net],
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

/// An SA as actors/shard/sas.rs `Installed` holds it.
#[allow(dead_code)]
struct Installed {
    policy: Arc<str>,
    kind: u8,
    handle: u64,
    sa: SecurityAssociation,
}

type Fast = BuildHasherDefault<SpiHasher>;

/// The shard's tables (actors/shard/sas.rs `SaTables`, actors/shard/policies.rs).
#[derive(Default)]
struct Shard {
    outbound: HashMap<u64, Box<Installed>, Fast>,
    inbound: HashMap<u32, Box<Installed>, Fast>,
    inbound_spi: HashMap<u64, u32, Fast>,
    spd: Spd<u64>,
    /// `EntryState`: the entry's id and whether the profile configures it.
    by_policy: HashMap<Arc<str>, OneOrMany<(PolicyId, bool)>>,
}

/// Brings up tunnel `i`: returns the hub's session and the child it negotiated.
fn tunnel(i: usize, hub_cfg: &Arc<PeerConfig>, t0: Instant) -> Result<(IkeSession, Event), String> {
    let group = hub_cfg.isakmp_transforms[0].dh_group;
    let hub_addr = SocketAddr::new(IpAddr::V4(HUB), 500);
    let spoke_addr = SocketAddr::new(IpAddr::V4(spoke_ip(i)), 500);
    let host = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + i as u32);
    let spoke_net = network(&format!("{host}/32"), "198.51.100.0/24");
    let spis: Arc<dyn SpiAllocator> = Arc::new(RandomSpis);
    let rng_a: Box<rand::rngs::StdRng> = Box::new(rand::make_rng());
    // The hub's sessions draw from the thread's RNG, as actors/ike/router.rs passes it.
    let rng_b = Box::new(ThreadLocalRng);
    let spoke_cfg = config("spoke".into(), group, false, spoke_net);
    let mut spoke = IkeSession::new_initiator(
        Arc::new(spoke_cfg),
        spoke_addr,
        hub_addr,
        t0,
        rng_a,
        spis.clone(),
    );
    let mut hub = IkeSession::new_responder(hub_cfg.clone(), hub_addr, spoke_addr, t0, rng_b, spis);
    let mut child = None;
    let mut now = t0;
    for _ in 0..16 {
        now += Duration::from_millis(1);
        while let Some(e) = hub.poll_event() {
            if matches!(e, Event::ChildSaEstablished(_)) {
                child = Some(e);
            }
        }
        while spoke.poll_event().is_some() {}
        let mut quiet = true;
        while let Some(t) = spoke.poll_transmit() {
            hub.handle_datagram(now, spoke_addr, t.source_port_nat_t, &t.bytes);
            quiet = false;
        }
        while let Some(t) = hub.poll_transmit() {
            spoke.handle_datagram(now, hub_addr, t.source_port_nat_t, &t.bytes);
            quiet = false;
        }
        if quiet && let Some(child) = child.take() {
            return Ok((hub, child));
        }
    }
    Err(format!("tunnel {i} did not come up"))
}

fn install(shard: &mut Shard, i: usize, child: Event, now: Instant) -> Result<(), String> {
    let Event::ChildSaEstablished(info) = child else {
        return Err("not a child".into());
    };
    let key: Arc<str> = Arc::from(format!("Branches@{}", spoke_ip(i)));
    let selectors = info.protected_networks[0];
    let (h_in, h_out) = (2 * i as u64, 2 * i as u64 + 1);
    let inbound = SecurityAssociation::new(info.inbound, now).map_err(|e| e.to_string())?;
    let mut outbound = SecurityAssociation::new(info.outbound, now).map_err(|e| e.to_string())?;
    // actors/shard `install_pair`: one copy of the pair's selectors.
    if !outbound.share_selectors(&inbound) {
        return Err("the pair's selectors differ".into());
    }
    let spi = inbound.outer_spi();
    shard.inbound_spi.insert(h_in, spi);
    for (map_in, h, sa) in [(true, h_in, inbound), (false, h_out, outbound)] {
        let rec = Box::new(Installed {
            policy: key.clone(),
            kind: 1,
            handle: h,
            sa,
        });
        if map_in {
            shard.inbound.insert(spi, rec);
        } else {
            shard.outbound.insert(h, rec);
        }
    }
    let id = shard.spd.insert(Policy {
        name: key.clone(),
        networks: OneOrMany::One(selectors),
        outbound: Some(h_out),
    });
    shard.by_policy.entry(key).or_default().push((id, false));
    Ok(())
}

fn per(bytes: (isize, isize), n: usize) -> (f64, f64) {
    (bytes.0 as f64 / n as f64, bytes.1 as f64 / n as f64)
}

fn row(what: &str, bytes: (isize, isize), n: usize) {
    let (r, m) = per(bytes, n);
    println!("{what:<40} {r:>9.0} {m:>9.0}");
}

fn delta(before: (isize, isize)) -> (isize, isize) {
    let now = live();
    (before.0 - now.0, before.1 - now.1)
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let group: u16 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(14);
    let t0 = Instant::now();
    let base = live();
    let mut hub = Vec::with_capacity(n);
    let mut shard = Shard::default();
    // One template policy: its configuration is shared by all its sessions, as the router
    // shares it (actors/ike/router.rs `configs`).
    let hub_cfg = Arc::new(config(
        "Branches".into(),
        group,
        true,
        network("198.51.100.0/24", "10.0.0.0/8"),
    ));
    for i in 0..n {
        let (s, child) = tunnel(i, &hub_cfg, t0)?;
        install(&mut shard, i, child, t0)?;
        hub.push(s);
    }
    let held = live();
    println!("{n} tunnels, DH group {group}: heap bytes per tunnel (requested / malloc)");
    row("total", (held.0 - base.0, held.1 - base.1), n);

    let before = live();
    drop(std::mem::take(&mut shard.spd));
    shard.by_policy = HashMap::new();
    row("SPD entry (one shard's copy)", delta(before), n);
    let before = live();
    shard.inbound_spi = HashMap::default();
    row("SA handle index", delta(before), n);
    let before = live();
    shard.inbound = HashMap::default();
    shard.outbound = HashMap::default();
    row("ESP SA pair + table slots", delta(before), n);

    // The sessions, part by part; the parts vectors are scaffolding (subtracted).
    let mut parts: Vec<Vec<Part>> = hub.drain(..).map(IkeSession::into_parts).collect();
    let names: Vec<&str> = parts
        .first()
        .map_or(vec![], |p| p.iter().map(|p| p.name).collect());
    let mut rows = Vec::new();
    let mut session = (0, 0);
    for name in names.iter().rev() {
        let before = live();
        let mut scaffold = (0, 0);
        for p in parts.iter_mut() {
            if let Some(part) = p.pop() {
                for block in part.scaffold.into_iter().filter(|b| *b > 0) {
                    scaffold.0 += block as isize;
                    scaffold.1 += glibc_chunk(block) as isize;
                }
            }
        }
        let d = delta(before);
        let d = (d.0 - scaffold.0, d.1 - scaffold.1);
        session.0 += d.0;
        session.1 += d.1;
        rows.push((format!("  session: {name}"), d));
    }
    for (label, d) in rows.into_iter().rev() {
        row(&label, d, n);
    }
    row("IkeSession heap (sum of parts)", session, n);
    drop(parts);
    // What is left is the sessions' own records (in the daemon: inside the peer actors).
    let before = live();
    drop(hub);
    row("IkeSession records (inline)", delta(before), n);
    let after = live();
    row(
        "unaccounted (left after all is freed)",
        (after.0 - base.0, after.1 - base.1),
        n,
    );
    println!("inline sizes (bytes):");
    for (name, size) in inline_sizes() {
        println!("  {name:<38} {size:>9}");
    }
    Ok(())
}

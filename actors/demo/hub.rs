//! The demo's hub: an in-memory profile (one interface on 127.0.0.1 or ::1 with a high IKE port
//! and a high NAT-T port, one template `ipsec-policy-isakmp` admitting the spokes: IPv4 by the
//! block of their addresses, IPv6 from `::1/128` by their key IDs, see [`addresses`]), the real
//! `EspShard`s over `MemoryPort`s, and the real `IkeRouter` wired to them exactly as `ikehub run`
//! wires it. Also the spokes' mirror of that policy.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use actix::prelude::*;
use ikehub::config::{
    Family, HashAlgorithm, Initiate, Interface, IpsecTransform, IsakmpPolicy, IsakmpTransform,
    KeyBytes, LocalId, NetworkSpec, PeerSpec, Profiles, ProtectedNetwork, RemoteId, System,
};
use ikehub::crypto::{AuthAlgorithm, EncrAlgorithm};
use ikehub::ike::PeerConfig;
use rand::RngExt;

use super::addresses::{self, hub_lan, hub_wan, spoke_hosts};
use super::lan;
use super::stats::{LanStats, SpokeStats};
use crate::ike::router::{IkeRouter, start_router};
use crate::ike::socket::IkeSockets;
use crate::ike::spis::HostSpis;
use crate::io::{MemoryPort, PmtuDisc, UdpBatchSocket, UdpOptions};
use crate::shard::{Cleartext, EspShard, ShardIo, WanSockets};

/// Name of the template policy; the hub's SPD keys are `spokes@<spoke address>` (a further
/// spoke from the same address: `spokes@<address>#<session>`).
pub const POLICY: &str = "spokes";
const INTERFACE: &str = "loopback";
pub const REPLAY_WINDOW: u32 = 64;

pub struct Hub {
    pub family: Family,
    pub shards: Vec<Addr<EspShard>>,
    pub router: Addr<IkeRouter>,
    /// Where spokes start main mode.
    pub ike: SocketAddr,
    /// The NAT-T port: IKE after the float (non-ESP marker) and all ESP-in-UDP.
    pub nat_t: SocketAddr,
    pub profiles: Arc<Profiles>,
}

fn ipsec_transform() -> Arc<IpsecTransform> {
    Arc::new(IpsecTransform {
        replay_window: Some(REPLAY_WINDOW),
        ..IpsecTransform::esp(
            "AES128_SHA1",
            EncrAlgorithm::AesCbc128,
            AuthAlgorithm::HmacSha1,
        )
    })
}

fn isakmp_transform() -> Arc<IsakmpTransform> {
    Arc::new(IsakmpTransform::new(
        "AES128_SHA1_G14",
        EncrAlgorithm::AesCbc128,
        HashAlgorithm::Sha1,
        14,
    ))
}

/// The hub's profiles, as if read from a file: `spokes` admits every address of `block`; over
/// IPv6, where every spoke calls from `::1`, only under a `keyid:demo-spoke-*` identity: what
/// an operator whose spokes share a NAT address sets, so that each spoke is one authenticated
/// name (a spoke that starts over replaces its own old session, never another spoke's).
fn hub_profiles(
    family: Family,
    ike_port: u16,
    nat_t_port: u16,
    shards: usize,
    ike_workers: usize,
    block: NetworkSpec,
    psk: &KeyBytes,
) -> Profiles {
    let it = ipsec_transform();
    let kt = isakmp_transform();
    let iface = Interface {
        name: INTERFACE.into(),
        address: hub_wan(family),
        device: None,
        ike_port,
        nat_t_port,
    };
    let policy = IsakmpPolicy {
        name: POLICY.into(),
        interface: INTERFACE.into(),
        peer: PeerSpec::Block(block),
        preshared_key: psk.clone(),
        isakmp_transforms: vec![kt.clone()],
        ipsec_transforms: vec![it.clone()],
        pfs_group: None,
        initiate: Initiate::Never,
        nat_traversal: true,
        dpd: None,
        protected_networks: vec![ProtectedNetwork {
            local: NetworkSpec::Host(hub_lan(family)),
            remote: spoke_hosts(family),
        }],
        local_id: Default::default(),
        remote_id: match family {
            Family::V4 => RemoteId::Address,
            Family::V6 => addresses::spoke_key_ids(),
        },
        dh_key_reuse_seconds: 0,
    };
    Profiles {
        system: System {
            // Never bound: the demo has no control socket.
            control_socket: std::env::temp_dir().join("ikehub-demo.sock"),
            shards,
            ike_workers,
            // Every IPv6 spoke comes from ::1; the demo keeps SETUP_SLOTS below the default.
            half_open_per_source: ikehub::config::defaults::HALF_OPEN_PER_SOURCE as usize,
            metrics: None,
        },
        interfaces: BTreeMap::from([(INTERFACE.into(), iface)]),
        tunnel_device: None,
        ipsec_transforms: BTreeMap::from([(it.name.clone(), it)]),
        isakmp_transforms: BTreeMap::from([(kt.name.clone(), kt)]),
        manual_policies: BTreeMap::new(),
        isakmp_policies: BTreeMap::from([(POLICY.into(), Arc::new(policy))]),
    }
}

/// The spokes' side of the policy (one config shared by all IPv4 spokes: each asks quick mode
/// for its own host inside it; see [`spoke_config_for`]). `force_encapsulation`: on loopback
/// NAT-D finds no NAT, and raw ESP needs root, so the spokes claim to be behind a NAT
/// (strongSwan's `forceencaps`); both ends then float to the hub's NAT-T port and ESP runs in
/// UDP (RFC 3948).
pub fn spoke_config(hub: &Hub) -> Arc<PeerConfig> {
    let hub_policy = &hub.profiles.isakmp_policies[POLICY];
    let policy = IsakmpPolicy {
        name: "hub".into(),
        interface: INTERFACE.into(),
        peer: PeerSpec::Address(hub.ike.ip()),
        initiate: Initiate::OnDemand,
        protected_networks: vec![ProtectedNetwork {
            local: spoke_hosts(hub.family),
            remote: NetworkSpec::Host(hub_lan(hub.family)),
        }],
        // The hub sends its address (ID_IPV4_ADDR / ID_IPV6_ADDR) and must be at it.
        remote_id: RemoteId::Address,
        ..IsakmpPolicy::clone(hub_policy)
    };
    let iface = Interface {
        name: INTERFACE.into(),
        address: match hub.family {
            Family::V4 => Ipv4Addr::UNSPECIFIED.into(),
            Family::V6 => Ipv6Addr::UNSPECIFIED.into(),
        },
        device: None,
        // Only the NAT-T port matters to an initiator: it is where it floats to (the hub's).
        ike_port: hub.ike.port(),
        nat_t_port: hub.nat_t.port(),
    };
    let mut config = PeerConfig::from_policy(&policy, &iface);
    config.nat.force_encapsulation = true;
    Arc::new(config)
}

/// Spoke `i`'s config: over IPv4 the shared one (the hub tells the spokes apart by address);
/// over IPv6 a copy that sends the spoke's own key ID (`keyid:demo-spoke-<i+1>`).
pub fn spoke_config_for(shared: &Arc<PeerConfig>, family: Family, i: usize) -> Arc<PeerConfig> {
    match family {
        Family::V4 => shared.clone(),
        Family::V6 => Arc::new(PeerConfig {
            local_id: LocalId::KeyId(addresses::spoke_key_id(i)),
            ..PeerConfig::clone(shared)
        }),
    }
}

/// Binds the hub's REUSEPORT NAT-T group on the first free port from 40000 + pid % 10000 upward,
/// and the IKE port on the next free one after it.
fn bind(family: Family, n: usize) -> Result<(u16, Vec<UdpBatchSocket>, IkeSockets), String> {
    let wan = hub_wan(family);
    let start = 40000 + (std::process::id() % 10000) as u16;
    let opts = UdpOptions {
        reuse_port: true,
        device: None,
        pmtu: Some(PmtuDisc::Dont),
        recv_buffer: Some(4 << 20),
        send_buffer: Some(4 << 20),
        offload: true,
    };
    let mut last = String::new();
    for port in (start..u16::MAX).chain(40000..start).take(500) {
        let addr = SocketAddr::new(wan, port);
        // Probe without SO_REUSEPORT first, so we never join someone else's group.
        match std::net::UdpSocket::bind(addr) {
            Ok(probe) => drop(probe),
            Err(e) => {
                last = e.to_string();
                continue;
            }
        }
        let group = match UdpBatchSocket::bind_group(addr, n, &opts) {
            Ok(g) => g,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        if n > 1 {
            group[0]
                .steer_by_spi(n as u32)
                .map_err(|e| format!("SPI steering on the hub's UDP group: {e}"))?;
        }
        for ike_port in (port + 1..u16::MAX).take(100) {
            let ike_addr = SocketAddr::new(wan, ike_port);
            match IkeSockets::bind(ike_addr, Some(&group[0])) {
                Ok(s) => return Ok((port, group, s)),
                Err(e) => last = e.to_string(),
            }
        }
    }
    Err(format!("no free UDP ports for the hub on {wan}: {last}"))
}

/// Starts the hub: shards (with the LAN echo on their memory ports) and the IKE router.
pub fn start(
    family: Family,
    shard_count: usize,
    ike_workers: usize,
    block: NetworkSpec,
    stats: Arc<[SpokeStats]>,
    lan_stats: Arc<LanStats>,
) -> Result<Hub, String> {
    let (nat_t_port, group, ike_sockets) = bind(family, shard_count)?;
    let wan = hub_wan(family);
    let mut ios = Vec::with_capacity(shard_count);
    for udp in group {
        let (hub_end, lan_end) =
            MemoryPort::pair().map_err(|e| format!("cannot create a memory port: {e}"))?;
        actix::spawn(lan::echo(
            lan_end,
            hub_lan(family),
            stats.clone(),
            lan_stats.clone(),
        ));
        ios.push(ShardIo {
            cleartext: Some(Cleartext::Memory(hub_end)),
            icmpv6_source: None,
            wans: vec![WanSockets {
                local: wan,
                nat_t_port,
                path_mtu: 1500,
                udp: Some(udp),
                raw_esp: None,
                raw_ah: None,
                raw_tx: None,
                raw_tx6: None,
            }],
        });
    }
    let shards = EspShard::start_all(ios);
    // A fresh random pre-shared key per run (never printed).
    let mut rng: rand::rngs::StdRng = rand::make_rng();
    let psk = KeyBytes((0..32).map(|_| rng.random::<u8>()).collect());
    let ike_port = ike_sockets.ike_addr.port();
    let profiles = Arc::new(hub_profiles(
        family,
        ike_port,
        nat_t_port,
        shard_count,
        ike_workers,
        block,
        &psk,
    ));
    let router = start_router(
        profiles.clone(),
        HashMap::from([(wan, ike_sockets)]),
        &shards,
        Arc::new(HostSpis::default()),
        // Nobody follows the demo's events: the ring keeps the last ones, bounded.
        crate::events::EventLog::default(),
    )?;
    Ok(Hub {
        family,
        shards,
        router,
        ike: SocketAddr::new(wan, ike_port),
        nat_t: SocketAddr::new(wan, nat_t_port),
        profiles,
    })
}

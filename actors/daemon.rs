//! `ikehub run`: load the profiles, build the tunnel device, the WAN sockets and the shards,
//! start the registry and the control socket, and run until SIGTERM/SIGINT.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use actix::prelude::*;
use ikehub::config::{Encapsulation, Profiles};
use tracing::{error, info, warn};

use crate::control;
use crate::events::EventLog;
use crate::ike::router::start_router;
use crate::ike::socket::IkeSockets;
use crate::ike::spis::HostSpis;
use crate::io::{
    self, IpsecProto, PmtuDisc, RawIpv6Sender, RawReceiver, RawReceiver6, RawSender, Share,
    TunConfig, TunDevice, UdpBatchSocket, UdpOptions, WanRawReceiver,
};
use crate::registry::{Registry, ReloadSignal, Shutdown};
use crate::routes::Routes;
use crate::shard::{Cleartext, EspShard, ShardIo, WanSockets};

/// What must live until the daemon exits (dropping it removes the socket file).
struct Running {
    _control: control::server::SocketGuard,
}

pub fn run(path: &Path, esp_key_log: Option<&Path>) -> ExitCode {
    let loaded = match ikehub::config::load(path) {
        Ok(l) => l,
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            eprintln!(
                "ikehub: {} problem(s) in the profiles; not started",
                problems.len()
            );
            return ExitCode::from(1);
        }
    };
    for w in &loaded.warnings {
        warn!("{w}");
    }
    // Before any SA exists, so that none is missing from the log.
    if let Some(Err(e)) = esp_key_log.map(crate::keylog::open) {
        error!("{e}");
        eprintln!("ikehub: {e}; not started");
        return ExitCode::from(1);
    }
    let profiles = Arc::new(loaded.profiles);
    let sys = System::new();
    let booted = sys.block_on(async {
        let r = boot(profiles.clone(), path);
        if let Ok((_, registry)) = &r {
            watch_signals(registry.clone());
        }
        r
    });
    let (running, _registry) = match booted {
        Ok(b) => b,
        Err(e) => {
            error!("{e}");
            eprintln!("ikehub: {e}");
            return ExitCode::from(1);
        }
    };
    info!(
        "ikehub running: {} manual and {} IKE policies, {} shards, {} IKE workers",
        profiles.manual_policies.len(),
        profiles.isakmp_policies.len(),
        profiles.system.shards,
        profiles.system.ike_workers
    );
    let result = sys.run();
    drop(running);
    info!("ikehub stopped");
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ikehub: {e}");
            ExitCode::from(1)
        }
    }
}

fn watch_signals(registry: Addr<Registry>) {
    use tokio::signal::unix::{SignalKind, signal};
    actix::spawn(async move {
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            error!("cannot install signal handlers");
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    info!("SIGHUP: reloading profiles");
                    registry.do_send(ReloadSignal);
                }
            }
        }
        info!("stopping: deleting SAs with IKE peers");
        // Deletes go out first; a peer that does not answer does not hold us up.
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(1500),
            registry.send(Shutdown),
        )
        .await;
        System::current().stop();
    });
}

/// The raw receiver of `proto` for one shard on an interface: IPv4 sees every packet of the
/// protocol with its header (the shard keeps those to `local`); IPv6 is bound to `local` and
/// sees the packet from the ESP/AH header on ([`io::raw6`]).
fn raw_receiver(
    proto: IpsecProto,
    local: IpAddr,
    share: Option<Share>,
    device: Option<&str>,
) -> std::io::Result<WanRawReceiver> {
    Ok(match local {
        IpAddr::V4(_) => WanRawReceiver::V4(RawReceiver::new(proto, share, device)?),
        IpAddr::V6(a) => WanRawReceiver::V6(RawReceiver6::new(proto, a, share, device)?),
    })
}

/// The first policy whose protected networks carry IPv6 (manual or IKE), if any.
fn ipv6_carried_by(profiles: &Profiles) -> Option<String> {
    use ikehub::config::Family;
    let v6 = |nets: &[ikehub::config::ProtectedNetwork]| {
        nets.iter()
            .any(|pn| pn.local.family() == Family::V6 || pn.remote.family() == Family::V6)
    };
    let manual = profiles
        .manual_policies
        .values()
        .find(|p| v6(&p.protected_networks))
        .map(|p| p.name.clone());
    manual.or_else(|| {
        profiles
            .isakmp_policies
            .values()
            .find(|p| v6(&p.protected_networks))
            .map(|p| p.name.clone())
    })
}

/// Makes sure the tunnel device carries IPv6 when a policy does: a host may disable IPv6 on
/// new devices (`net.ipv6.conf.default.disable_ipv6 = 1`), and then the kernel drops every
/// IPv6 packet the shards write into the device and refuses IPv6 routes through it. IPv6 also
/// needs an MTU of at least 1280 (RFC 8200 §5): below it the kernel turns IPv6 off on the
/// device.
fn enable_ipv6(dev: &str, mtu: u16, policy: &str) -> Result<(), String> {
    let min = ikehub::wire::ipv6::MIN_MTU;
    if (mtu as usize) < min {
        return Err(format!(
            "tunnel-device.mtu {mtu} is below the IPv6 minimum of {min} (RFC 8200 §5), and \
             policy {policy} carries IPv6"
        ));
    }
    let knob = format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
    match std::fs::read_to_string(&knob) {
        Ok(v) if v.trim() == "0" => Ok(()),
        Ok(_) => {
            std::fs::write(&knob, "0").map_err(|e| {
                format!("cannot enable IPv6 on {dev} ({knob}), which policy {policy} needs: {e}")
            })?;
            info!("IPv6 enabled on {dev} (it was disabled): policy {policy} carries IPv6");
            Ok(())
        }
        Err(e) => Err(format!(
            "policy {policy} carries IPv6, but {dev} has no IPv6 ({knob}: {e}): is IPv6 \
             compiled into the kernel and not disabled on the command line?"
        )),
    }
}

fn boot(profiles: Arc<Profiles>, path: &Path) -> Result<(Running, Addr<Registry>), String> {
    let n = profiles.system.shards.max(1);
    let manual = profiles.manual_policies.values();

    // The cleartext side.
    let mut icmpv6_source = None;
    let (queues, routes) = match &profiles.tunnel_device {
        Some(td) => {
            let tun = TunDevice::create(&TunConfig {
                name: td.name.clone(),
                mtu: td.mtu,
                queues: n,
                address: None,
                offload: td.offload,
            })
            .map_err(|e| format!("cannot create the tunnel device: {e}"))?;
            icmpv6_source = td.source_v6;
            let carried = ipv6_carried_by(&profiles);
            if let Some(policy) = &carried {
                enable_ipv6(&td.name, td.mtu, policy)?;
            }
            let routes = if td.routes {
                Routes::new(&td.name, td.source_v4, td.source_v6)
                    .map_err(|e| format!("netlink: {e}"))?
            } else {
                Routes::disabled()
            };
            let offload = match (td.offload, tun.offload(), tun.udp_offload()) {
                (false, _, _) => "off",
                (true, false, _) => "off (refused by the kernel)",
                (true, true, false) => "TSO (no USO in this kernel)",
                (true, true, true) => "TSO and USO",
            };
            info!(
                "tunnel device {} up with {n} queues, MTU {}, offload {offload}",
                td.name, td.mtu
            );
            (tun.into_queues(), routes)
        }
        None => {
            if profiles.manual_policies.is_empty() && profiles.isakmp_policies.is_empty() {
                (Vec::new(), Routes::disabled())
            } else {
                return Err(
                    "a [tunnel-device] table is needed to carry the policies' cleartext".into(),
                );
            }
        }
    };

    // The WAN sockets, per interface and shard.
    let mut ike_sockets: HashMap<IpAddr, IkeSockets> = HashMap::new();
    let mut per_shard: Vec<Vec<WanSockets>> = (0..n).map(|_| Vec::new()).collect();
    for iface in profiles.interfaces.values() {
        // IPv4 or IPv6: the interface's sockets are of its address's family (issue 11).
        let local = iface.address;
        let uses = |f: &dyn Fn(&ikehub::config::ManualPolicy) -> bool| {
            manual.clone().any(|p| p.interface == iface.name && f(p))
        };
        let ike_here: Vec<_> = profiles
            .isakmp_policies
            .values()
            .filter(|p| p.interface == iface.name)
            .collect();
        let ike_ah = ike_here
            .iter()
            .any(|p| p.ipsec_transforms.iter().any(|t| t.ah.is_some()));
        // IKE policies need the NAT-T port for IKE itself and for UDP-encapsulated ESP, and
        // raw ESP/AH for peers that are not behind a NAT.
        let needs_udp = uses(&|p| p.encapsulation == Encapsulation::Udp) || !ike_here.is_empty();
        let needs_raw = uses(&|p| p.encapsulation == Encapsulation::Esp) || !ike_here.is_empty();
        let needs_ah = uses(&|p| p.transform.ah.is_some()) || ike_ah;
        let device = iface.device.as_deref();
        let path_mtu = io::mtu_of_address(iface.address)
            .map(|(_, m)| m as usize)
            .unwrap_or(1500);
        let mut udp = if needs_udp {
            let group = UdpBatchSocket::bind_group(
                SocketAddr::new(iface.address, iface.nat_t_port),
                n,
                &UdpOptions {
                    reuse_port: true,
                    device: iface.device.clone(),
                    pmtu: Some(PmtuDisc::Dont),
                    recv_buffer: Some(4 << 20),
                    send_buffer: Some(4 << 20),
                    // UDP GSO/GRO; `[tunnel-device] offload = false` turns it off.
                    offload: profiles.tunnel_device.as_ref().is_none_or(|td| td.offload),
                },
            )
            .map_err(|e| {
                format!(
                    "interface.{}: cannot bind UDP {}:{}: {e}",
                    iface.name, iface.address, iface.nat_t_port
                )
            })?;
            if n > 1 {
                group[0]
                    .steer_by_spi(n as u32)
                    .map_err(|e| format!("interface.{}: SPI steering: {e}", iface.name))?;
            }
            if !ike_here.is_empty() {
                let sockets = IkeSockets::bind(
                    SocketAddr::new(iface.address, iface.ike_port),
                    Some(&group[0]),
                )
                .map_err(|e| {
                    format!(
                        "interface.{}: cannot bind IKE on {}:{}: {e}",
                        iface.name, iface.address, iface.ike_port
                    )
                })?;
                ike_sockets.insert(iface.address, sockets);
            }
            group.into_iter().map(Some).collect()
        } else {
            (0..n).map(|_| None).collect::<Vec<_>>()
        };
        for (k, wans) in per_shard.iter_mut().enumerate() {
            let share = Some(Share {
                shard: k as u32,
                shards: n as u32,
            });
            let raw_err = |e: std::io::Error| {
                format!(
                    "interface.{}: raw IP sockets (needs root or CAP_NET_RAW): {e}",
                    iface.name
                )
            };
            wans.push(WanSockets {
                local,
                nat_t_port: iface.nat_t_port,
                path_mtu,
                udp: udp[k].take(),
                raw_esp: if needs_raw {
                    Some(raw_receiver(IpsecProto::Esp, local, share, device).map_err(raw_err)?)
                } else {
                    None
                },
                raw_ah: if needs_raw && needs_ah {
                    Some(raw_receiver(IpsecProto::Ah, local, share, device).map_err(raw_err)?)
                } else {
                    None
                },
                raw_tx: if needs_raw && local.is_ipv4() {
                    Some(RawSender::new(device).map_err(raw_err)?)
                } else {
                    None
                },
                raw_tx6: if needs_raw && local.is_ipv6() {
                    Some(RawIpv6Sender::new(device).map_err(raw_err)?)
                } else {
                    None
                },
            });
        }
        info!(
            "interface {} ({local}): path MTU {path_mtu}, raw ESP {needs_raw}, AH {needs_ah}, \
             UDP {}",
            iface.name,
            if needs_udp {
                iface.nat_t_port.to_string()
            } else {
                "off".into()
            }
        );
    }

    let mut queues = queues.into_iter();
    let ios: Vec<ShardIo> = per_shard
        .into_iter()
        .map(|wans| ShardIo {
            cleartext: queues.next().map(Cleartext::Tun),
            icmpv6_source,
            wans,
        })
        .collect();
    let shards = EspShard::start_all(ios);
    let spis = Arc::new(HostSpis::default());
    for p in profiles.manual_policies.values() {
        for spi in [p.inbound.esp_spi, p.inbound.ah_spi].into_iter().flatten() {
            spis.reserve(spi);
        }
    }
    let events = EventLog::default();
    precompute_dh_tables(&profiles);
    let router = if profiles.isakmp_policies.is_empty() {
        None
    } else {
        Some(start_router(
            profiles.clone(),
            ike_sockets,
            &shards,
            spis.clone(),
            events.clone(),
        )?)
    };
    let registry =
        Registry::new(profiles.clone(), path.to_path_buf(), shards, routes, router).start();
    let control = control::server::serve(
        &profiles.system.control_socket,
        registry.clone().recipient(),
        events,
    )
    .map_err(|e| {
        format!(
            "control socket {}: {e}",
            profiles.system.control_socket.display()
        )
    })?;
    if let Some(addr) = profiles.system.metrics {
        crate::metrics::serve(addr, registry.clone().recipient())
            .map_err(|e| format!("metrics endpoint {addr}: {e}"))?;
    }
    Ok((Running { _control: control }, registry))
}

/// Builds the g^x tables of the DH groups the profiles name (phase 1 and PFS) before the first
/// peer needs one, so that no early handshake pays a few milliseconds for it. Groups a reload
/// adds are built by their first key pair.
fn precompute_dh_tables(profiles: &Profiles) {
    let phase1 = profiles.isakmp_transforms.values().map(|t| t.dh_group);
    let pfs = profiles
        .isakmp_policies
        .values()
        .filter_map(|p| p.pfs_group);
    for id in phase1.chain(pfs) {
        if let Some(group) = ikehub::ike::dh::DhGroup::from_id(id) {
            group.precompute();
        }
    }
}

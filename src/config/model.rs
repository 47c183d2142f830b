//! The validated profile snapshot: names resolved, keys decoded and length-checked. Everything
//! downstream (registry, shards, IKE) works from this, never from raw TOML.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::network::{NetworkSpec, ProtectedNetwork};
use crate::crypto::{AuthAlgorithm, EncrAlgorithm};

/// Key material from a profile; wiped on drop and never printed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct KeyBytes(pub Vec<u8>);

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyBytes(<{} bytes redacted>)", self.0.len())
    }
}

/// A validated set of profiles (one reload generation).
#[derive(Clone, Debug, PartialEq)]
pub struct Profiles {
    pub system: System,
    pub interfaces: BTreeMap<String, Interface>,
    pub tunnel_device: Option<TunnelDevice>,
    pub ipsec_transforms: BTreeMap<String, Arc<IpsecTransform>>,
    pub isakmp_transforms: BTreeMap<String, Arc<IsakmpTransform>>,
    pub manual_policies: BTreeMap<String, Arc<ManualPolicy>>,
    pub isakmp_policies: BTreeMap<String, Arc<IsakmpPolicy>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct System {
    pub control_socket: PathBuf,
    /// ESP forwarding shards per interface; already resolved (0 in the profile = CPU count).
    pub shards: usize,
    /// Threads the IKE peer actors (sessions, DH) are spread over; already resolved (0 in the
    /// profile = CPU count). A restart-only key.
    pub ike_workers: usize,
    /// Half-open exchanges per source address (`ike::demux::HalfOpenLimits::per_source`). A
    /// restart-only key.
    pub half_open_per_source: usize,
    /// The OpenMetrics endpoint (docs/metrics.md); `None` = off.
    pub metrics: Option<SocketAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub address: IpAddr,
    pub device: Option<String>,
    pub ike_port: u16,
    pub nat_t_port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelDevice {
    pub name: String,
    pub mtu: u16,
    /// `source-address`: the preferred source of the IPv4 routes and of the IPv6 routes (one
    /// address per family, either may be absent).
    pub source_v4: Option<Ipv4Addr>,
    pub source_v6: Option<Ipv6Addr>,
    pub routes: bool,
    /// `offload`: TUN offloads (virtio-net header, TSO/USO) and UDP GSO/GRO on ESP-in-UDP.
    pub offload: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Tunnel,
    Transport,
}

impl Mode {
    pub fn display_name(self) -> &'static str {
        match self {
            Mode::Tunnel => "Tunnel",
            Mode::Transport => "Transport",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpsecTransform {
    pub name: String,
    /// `None` when the transform uses no ESP at all (AH only: esp-encryption and
    /// esp-authentication both `none`).
    pub esp: Option<EspTransform>,
    /// `None` when `ah-authentication = "none"`.
    pub ah: Option<AuthAlgorithm>,
    pub mode: Mode,
    pub lifetime_seconds: u64,
    /// 0 = no volume limit.
    pub lifetime_kilobytes: u64,
    /// Anti-replay window in packets; 0 disables anti-replay. `None` when the profile does not set
    /// it: IKE-keyed SAs then use 64, manual SAs run without anti-replay (SmartWare shows `no`).
    pub replay_window: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EspTransform {
    pub encryption: EncrAlgorithm,
    pub authentication: AuthAlgorithm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    Md5,
    Sha1,
    Sha256,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsakmpTransform {
    pub name: String,
    /// ISAKMP encryption: never `Null`.
    pub encryption: EncrAlgorithm,
    pub hash: HashAlgorithm,
    pub dh_group: u16,
    pub lifetime_seconds: u64,
}

impl IsakmpTransform {
    /// A phase-1 transform with the profile default lifetime (for transforms built in code:
    /// the demo, benches, fuzzing).
    pub fn new(name: &str, encryption: EncrAlgorithm, hash: HashAlgorithm, dh_group: u16) -> Self {
        Self {
            name: name.into(),
            encryption,
            hash,
            dh_group,
            lifetime_seconds: super::defaults::ISAKMP_LIFETIME_SECONDS,
        }
    }
}

impl IpsecTransform {
    /// An ESP tunnel-mode transform with the profile defaults (lifetime, no volume limit,
    /// replay window left to the keying method).
    pub fn esp(name: &str, encryption: EncrAlgorithm, authentication: AuthAlgorithm) -> Self {
        Self {
            name: name.into(),
            esp: Some(EspTransform {
                encryption,
                authentication,
            }),
            ah: None,
            mode: Mode::Tunnel,
            lifetime_seconds: super::defaults::IPSEC_LIFETIME_SECONDS,
            lifetime_kilobytes: super::defaults::IPSEC_LIFETIME_KILOBYTES,
            replay_window: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encapsulation {
    /// IP protocol 50 (and 51 for AH).
    Esp,
    /// RFC 3948 ESP-in-UDP on the interface's nat-t-port.
    Udp,
}

/// Keys and SPIs of one direction of a manual policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManualKeys {
    pub esp_spi: Option<u32>,
    pub esp_encryption_key: Option<KeyBytes>,
    pub esp_authentication_key: Option<KeyBytes>,
    pub ah_spi: Option<u32>,
    pub ah_authentication_key: Option<KeyBytes>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ManualPolicy {
    pub name: String,
    pub interface: String,
    pub peer: IpAddr,
    pub transform: Arc<IpsecTransform>,
    pub encapsulation: Encapsulation,
    pub protected_networks: Vec<ProtectedNetwork>,
    pub inbound: ManualKeys,
    pub outbound: ManualKeys,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerSpec {
    /// One peer address.
    Address(IpAddr),
    /// A template: every spoke address in the block that authenticates.
    Block(NetworkSpec),
    Any,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Initiate {
    OnDemand,
    Permanent,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dpd {
    pub interval_seconds: u64,
    pub timeout_seconds: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct IsakmpPolicy {
    pub name: String,
    pub interface: String,
    pub peer: PeerSpec,
    pub preshared_key: KeyBytes,
    pub isakmp_transforms: Vec<Arc<IsakmpTransform>>,
    pub ipsec_transforms: Vec<Arc<IpsecTransform>>,
    /// `None` = no PFS.
    pub pfs_group: Option<u16>,
    pub initiate: Initiate,
    pub nat_traversal: bool,
    pub dpd: Option<Dpd>,
    pub protected_networks: Vec<ProtectedNetwork>,
    /// Phase-1 identity we send (`local-id`).
    pub local_id: super::identity::LocalId,
    /// Phase-1 identities the peer may claim (`remote-id`).
    pub remote_id: super::identity::RemoteId,
    /// As responder, reuse a DH key pair for up to this many seconds; 0 = never (the default).
    pub dh_key_reuse_seconds: u32,
}

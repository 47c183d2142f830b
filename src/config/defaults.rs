//! Values used when a profile leaves a key out. They follow Patton SmartWare where it has a
//! default, and are repeated in the commented example profiles under `profiles/`.

/// `system.control-socket`.
pub const CONTROL_SOCKET: &str = "/run/ikehub.sock";
/// `system.shards`: 0 = one ESP shard per CPU core (`std::thread::available_parallelism`).
pub const SHARDS: i64 = 0;
/// `system.ike-workers`: 0 = one IKE worker thread per CPU core.
pub const IKE_WORKERS: i64 = 0;
/// Most `system.ike-workers`: IKE work is bound by cores, and each worker is a thread with its
/// own runtime; more than this is a typo, not a machine.
pub const IKE_WORKERS_MAX: i64 = 256;
/// `system.half-open-per-source`: exchanges one source address may have half open (main mode
/// begun, not yet authenticated) before its oldest is evicted for a new one.
pub const HALF_OPEN_PER_SOURCE: i64 = 128;
/// Most `system.half-open-per-source`: the bound per policy (`ike::demux::HalfOpenLimits`).
pub const HALF_OPEN_PER_SOURCE_MAX: i64 = 1024;
/// `interface.*.ike-port` (RFC 2408 §2.5.1 / IANA `isakmp`).
pub const IKE_PORT: u16 = 500;
/// `interface.*.nat-t-port` (RFC 3947/3948).
pub const NAT_T_PORT: u16 = 4500;
/// `tunnel-device.name`.
pub const TUNNEL_NAME: &str = "ikehub0";
/// `tunnel-device.mtu`: 1500 less the worst ESP-in-UDP overhead of the supported suites
/// (outer IPv4 20 + UDP 8 + ESP 8 + IV 16 + padding up to 17 + ICV 16 = 85) rounded down, so
/// that tunnelled packets still fit a 1500-byte WAN path without fragmentation.
pub const TUNNEL_MTU: u16 = 1400;
/// `tunnel-device.mtu` bounds: the IPv4 minimum datagram every host must accept (RFC 791) and
/// a jumbo frame.
pub const TUNNEL_MTU_MIN: i64 = 576;
pub const TUNNEL_MTU_MAX: i64 = 9000;
/// `tunnel-device.routes`.
pub const TUNNEL_ROUTES: bool = true;
/// `tunnel-device.offload`: virtio-net header and TSO/USO on the TUN device (and UDP GSO/GRO
/// on ESP-in-UDP); on unless a kernel or a measurement says otherwise.
pub const TUNNEL_OFFLOAD: bool = true;
/// `ipsec-transform.*` encryption/authentication words when left out: `none`, so that an
/// AH-only transform need only say `ah-authentication`.
pub const ALGORITHM: &str = "none";
/// `ipsec-transform.*.mode`.
pub const MODE: &str = "tunnel";
/// `ipsec-transform.*.lifetime-seconds` (SmartWare: 3600 s).
pub const IPSEC_LIFETIME_SECONDS: u64 = 3600;
/// `ipsec-transform.*.lifetime-kilobytes`: 0 = no volume limit.
pub const IPSEC_LIFETIME_KILOBYTES: u64 = 0;
/// Anti-replay window when `replay-window` is left out and the SA is keyed by IKE; manual SAs
/// then run without anti-replay (see `IpsecTransform::replay_window`).
pub const IKE_REPLAY_WINDOW: u32 = 64;
/// Largest `replay-window` accepted, in packets.
pub const REPLAY_WINDOW_MAX: i64 = 4096;
/// `isakmp-transform.*.lifetime-seconds` (SmartWare: 28800 s = 8 h).
pub const ISAKMP_LIFETIME_SECONDS: u64 = 28800;
/// `ipsec-policy-manual.*.encapsulation`.
pub const ENCAPSULATION: &str = "esp";
/// `ipsec-policy-isakmp.*.pfs-group`.
pub const PFS_GROUP: &str = "none";
/// `ipsec-policy-isakmp.*.initiate`.
pub const INITIATE: &str = "on-demand";
/// `ipsec-policy-isakmp.*.nat-traversal`.
pub const NAT_TRAVERSAL: bool = true;
/// `dpd = { ... }` keys left out of the table (RFC 3706); without the table, no DPD.
pub const DPD_INTERVAL_SECONDS: u64 = 30;
pub const DPD_TIMEOUT_SECONDS: u64 = 120;
/// Upper bound of `dh-key-reuse-seconds`: a reused exponent exposes every main mode answered
/// with it, so the window stays short (src/ike/dh/reuse.rs).
pub const DH_KEY_REUSE_SECONDS_MAX: u32 = 300;
/// Diffie-Hellman groups accepted for `dh-group` and `pfs-group` (RFC 2409 §6, RFC 3526).
pub const DH_GROUPS: [u16; 6] = [1, 2, 5, 14, 15, 16];

//! From the merged raw tables to the validated `Profiles` snapshot: values in range, words from
//! their lists, defaults applied. Policies are checked in `policy`, conflicts between policies
//! (SPIs, overlapping protected networks, sockets) in `conflicts`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::check::Check;
use super::conflicts;
use super::defaults as def;
use super::diagnostic::{Loc, Sink};
use super::load::Merged;
use super::model::*;
use super::raw::{self, At, Named};
use super::{isakmp, manual, policy};
use crate::crypto::{AuthAlgorithm, EncrAlgorithm};

pub(crate) const ESP_ENCRYPTION: [(&str, EncrAlgorithm); 8] = [
    ("none", EncrAlgorithm::Null),
    ("des", EncrAlgorithm::Des),
    ("3des", EncrAlgorithm::TripleDes),
    ("aes-cbc-128", EncrAlgorithm::AesCbc128),
    ("aes-cbc-192", EncrAlgorithm::AesCbc192),
    ("aes-cbc-256", EncrAlgorithm::AesCbc256),
    ("aes-gcm-128", EncrAlgorithm::AesGcm128),
    ("aes-gcm-256", EncrAlgorithm::AesGcm256),
];

/// Phase 1 encrypts with a CBC cipher only (RFC 2409 Appendix A has no AES-GCM).
const ISAKMP_ENCRYPTION: [(&str, EncrAlgorithm); 5] = [
    ("des", EncrAlgorithm::Des),
    ("3des", EncrAlgorithm::TripleDes),
    ("aes-cbc-128", EncrAlgorithm::AesCbc128),
    ("aes-cbc-192", EncrAlgorithm::AesCbc192),
    ("aes-cbc-256", EncrAlgorithm::AesCbc256),
];

const AUTHENTICATION: [(&str, AuthAlgorithm); 4] = [
    ("none", AuthAlgorithm::None),
    ("hmac-md5", AuthAlgorithm::HmacMd5),
    ("hmac-sha1", AuthAlgorithm::HmacSha1),
    ("hmac-sha256", AuthAlgorithm::HmacSha256),
];

const MODES: [(&str, Mode); 2] = [("tunnel", Mode::Tunnel), ("transport", Mode::Transport)];

const HASHES: [(&str, HashAlgorithm); 3] = [
    ("md5", HashAlgorithm::Md5),
    ("sha1", HashAlgorithm::Sha1),
    ("sha256", HashAlgorithm::Sha256),
];

/// Checks everything; `None` (with the problems in `sink`) when something could not be built.
pub(crate) fn validate(m: &Merged, sink: &Sink) -> Option<Profiles> {
    let system = system(m.system.as_ref(), sink);
    let interfaces = collect(&m.interfaces, |n| interface(n, sink));
    let tunnel_device = m
        .tunnel_device
        .as_ref()
        .and_then(|t| tunnel_device(t, sink));
    let ipsec_transforms = collect(&m.ipsec_transforms, |n| {
        ipsec_transform(n, sink).map(Arc::new)
    });
    let isakmp_transforms = collect(&m.isakmp_transforms, |n| {
        isakmp_transform(n, sink).map(Arc::new)
    });

    let names = policy::Names {
        interfaces: &interfaces,
        ipsec_transforms: &ipsec_transforms,
        isakmp_transforms: &isakmp_transforms,
        interface_defined: m.interfaces.iter().map(|n| n.name.as_str()).collect(),
        ipsec_transform_defined: m.ipsec_transforms.iter().map(|n| n.name.as_str()).collect(),
        isakmp_transform_defined: m
            .isakmp_transforms
            .iter()
            .map(|n| n.name.as_str())
            .collect(),
    };
    let mut uses = conflicts::Uses::default();
    let manual_policies = collect(&m.manual_policies, |n| {
        manual::manual(n, &names, &mut uses, sink).map(Arc::new)
    });
    let isakmp_policies = collect(&m.isakmp_policies, |n| {
        isakmp::isakmp(n, &names, &mut uses, sink).map(Arc::new)
    });
    conflicts::check(&m.interfaces, &interfaces, &uses, sink);

    if sink.has_errors() {
        return None;
    }
    Some(Profiles {
        system: system?,
        interfaces,
        tunnel_device,
        ipsec_transforms,
        isakmp_transforms,
        manual_policies,
        isakmp_policies,
    })
}

fn collect<R, T>(
    raw: &[Named<R>],
    mut f: impl FnMut(&Named<R>) -> Option<T>,
) -> BTreeMap<String, T> {
    raw.iter()
        .filter_map(|n| f(n).map(|t| (n.name.clone(), t)))
        .collect()
}

/// A path from a profile: relative paths are taken from the directory of the file they are
/// written in, so that `-c` works from any working directory.
pub(crate) fn profile_path(at: &At<String>) -> PathBuf {
    let p = Path::new(&at.value);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        at.loc.dir().join(p)
    }
}

fn system(raw: Option<&Named<raw::RawSystem>>, sink: &Sink) -> Option<System> {
    let default = raw::RawSystem::default();
    let (body, loc) = match raw {
        Some(n) => (&n.body, n.loc.clone()),
        None => (&default, Loc::file_start(Path::new("-"))),
    };
    let c = Check::new(sink, raw::SYSTEM.to_string(), &loc);
    let control_socket = match &body.control_socket {
        None => PathBuf::from(def::CONTROL_SOCKET),
        Some(at) if at.value.trim().is_empty() => {
            c.error(&at.loc, "control-socket must not be empty");
            PathBuf::new()
        }
        Some(at) => profile_path(at),
    };
    let shards = per_core(
        &c,
        "shards",
        &body.shards,
        def::SHARDS,
        1024,
        "forwarding shards",
    )?;
    let ike_workers = per_core(
        &c,
        "ike-workers",
        &body.ike_workers,
        def::IKE_WORKERS,
        def::IKE_WORKERS_MAX,
        "IKE worker threads",
    )?;
    let half_open_per_source = match &body.half_open_per_source {
        None => def::HALF_OPEN_PER_SOURCE,
        Some(at) => c.range(
            "half-open-per-source",
            at,
            1,
            def::HALF_OPEN_PER_SOURCE_MAX,
            &format!(
                "1 to {} half-open exchanges per source address",
                def::HALF_OPEN_PER_SOURCE_MAX
            ),
        )?,
    };
    let metrics = metrics(&c, body);
    Some(System {
        control_socket,
        shards,
        ike_workers,
        half_open_per_source: usize::try_from(half_open_per_source).ok()?,
        metrics: metrics?,
    })
}

/// A thread count where 0 (the default) means one per CPU core: `shards`, `ike-workers`.
fn per_core(
    c: &Check<'_>,
    key: &str,
    at: &Option<raw::At<i64>>,
    default: i64,
    max: i64,
    what: &str,
) -> Option<usize> {
    let n = match at {
        None => default,
        Some(at) => c.range(
            key,
            at,
            0,
            max,
            &format!("0 (one per CPU core) to {max} {what}"),
        )?,
    };
    Some(match usize::try_from(n) {
        Ok(0) | Err(_) => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Ok(n) => n,
    })
}

/// `metrics` / `metrics-allow-remote` (docs/metrics.md). The endpoint has no authentication and
/// shows policy names and peer addresses, so only a loopback address (`127.0.0.0/8`, `::1`) is
/// taken by default; another address must be asked for twice.
fn metrics(c: &Check<'_>, body: &raw::RawSystem) -> Option<Option<SocketAddr>> {
    let allow_remote = body.metrics_allow_remote.as_ref().is_some_and(|a| a.value);
    let Some(at) = &body.metrics else {
        return Some(None);
    };
    let Ok(addr) = at.value.parse::<SocketAddr>() else {
        c.error(
            &at.loc,
            format_args!(
                "metrics `{}` is not an address and port such as \"127.0.0.1:9469\" or \
                 \"[::1]:9469\"",
                at.value
            ),
        );
        return None;
    };
    if addr.port() == 0 {
        c.error(
            &at.loc,
            "metrics needs a port a scraper can be told (not 0)",
        );
        return None;
    }
    if !addr.ip().to_canonical().is_loopback() && !allow_remote {
        c.error(
            &at.loc,
            format_args!(
                "metrics {addr} is not a loopback address: the endpoint has no authentication; \
                 set metrics-allow-remote = true to serve it there"
            ),
        );
        return None;
    }
    Some(Some(addr))
}

/// Linux network interface names: 1..=15 bytes (IFNAMSIZ - 1), no `/`, no white space.
fn check_device_name(c: &Check<'_>, key: &str, at: &At<String>) -> bool {
    let v = &at.value;
    let ok = !v.is_empty()
        && v.len() <= 15
        && v != "."
        && v != ".."
        && !v
            .chars()
            .any(|ch| ch == '/' || ch.is_whitespace() || ch.is_control());
    if !ok {
        c.error(
            &at.loc,
            format_args!(
                "{key} `{v}` is not a valid network device name (1 to 15 characters, no `/` or spaces)"
            ),
        );
    }
    ok
}

fn port(c: &Check<'_>, key: &str, at: &Option<At<i64>>, default: u16) -> Option<u16> {
    match at {
        None => Some(default),
        Some(at) => c
            .range(key, at, 1, 65535, "UDP ports are 1..=65535")
            .map(|p| p as u16),
    }
}

fn interface(n: &Named<raw::RawInterface>, sink: &Sink) -> Option<Interface> {
    let c = Check::new(sink, n.path(raw::INTERFACE), &n.loc);
    let b = &n.body;
    let address = c.required(&b.address, "address").and_then(|at| {
        match at.value.trim().parse::<IpAddr>() {
            Ok(a) if a.is_unspecified() || a.is_multicast() => {
                c.error(
                    &at.loc,
                    format_args!(
                        "address {a} must be a unicast address of this host (the local IKE and ESP endpoint)"
                    ),
                );
                None
            }
            Ok(a) => Some(a),
            Err(_) => {
                c.error(
                    &at.loc,
                    format_args!("address `{}` is not an IP address", at.value),
                );
                None
            }
        }
    });
    let device = b
        .device
        .as_ref()
        .and_then(|at| check_device_name(&c, "device", at).then(|| at.value.clone()));
    let ike_port = port(&c, "ike-port", &b.ike_port, def::IKE_PORT);
    let nat_t_port = port(&c, "nat-t-port", &b.nat_t_port, def::NAT_T_PORT);
    if let (Some(i), Some(t)) = (ike_port, nat_t_port)
        && i == t
    {
        let loc = b
            .nat_t_port
            .as_ref()
            .or(b.ike_port.as_ref())
            .map_or_else(|| n.loc.clone(), |a| a.loc.clone());
        c.error(
            &loc,
            format_args!("ike-port and nat-t-port are both {i}; they must differ (RFC 3947 switches to the NAT-T port)"),
        );
    }
    Some(Interface {
        name: n.name.clone(),
        address: address?,
        device,
        ike_port: ike_port?,
        nat_t_port: nat_t_port?,
    })
}

/// `source-address`: one address, or an array with at most one address per family (the
/// preferred source of the IPv4 routes and of the IPv6 routes). `None` after an error.
#[allow(clippy::type_complexity)]
fn source_addresses(
    c: &Check<'_>,
    raw: &Option<At<Vec<At<String>>>>,
) -> Option<(Option<Ipv4Addr>, Option<Ipv6Addr>)> {
    let Some(list) = raw else {
        return Some((None, None));
    };
    let (mut v4, mut v6) = (None::<Ipv4Addr>, None::<Ipv6Addr>);
    let mut ok = true;
    for at in &list.value {
        let twice = |first: &dyn std::fmt::Display, family: &str| {
            c.error(
                &at.loc,
                format_args!(
                    "source-address lists two {family} addresses ({first} and {}): give at most one per family",
                    at.value.trim()
                ),
            )
        };
        match at.value.trim().parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => match v4 {
                Some(first) => {
                    twice(&first, "IPv4");
                    ok = false;
                }
                None => v4 = Some(a),
            },
            Ok(IpAddr::V6(a)) => match v6 {
                Some(first) => {
                    twice(&first, "IPv6");
                    ok = false;
                }
                None => v6 = Some(a),
            },
            Err(_) => {
                c.error(
                    &at.loc,
                    format_args!("source-address `{}` is not an IP address", at.value),
                );
                ok = false;
            }
        }
    }
    ok.then_some((v4, v6))
}

fn tunnel_device(n: &Named<raw::RawTunnelDevice>, sink: &Sink) -> Option<TunnelDevice> {
    let c = Check::new(sink, raw::TUNNEL_DEVICE.to_string(), &n.loc);
    let b = &n.body;
    let name = match &b.name {
        None => Some(def::TUNNEL_NAME.to_string()),
        Some(at) => check_device_name(&c, "name", at).then(|| at.value.clone()),
    };
    let mtu = match &b.mtu {
        None => Some(def::TUNNEL_MTU),
        Some(at) => c
            .range(
                "mtu",
                at,
                def::TUNNEL_MTU_MIN,
                def::TUNNEL_MTU_MAX,
                "576..=9000 bytes",
            )
            .map(|m| m as u16),
    };
    let (source_v4, source_v6) = source_addresses(&c, &b.source_address)?;
    Some(TunnelDevice {
        name: name?,
        mtu: mtu?,
        source_v4,
        source_v6,
        routes: b.routes.as_ref().map_or(def::TUNNEL_ROUTES, |at| at.value),
        offload: b
            .offload
            .as_ref()
            .map_or(def::TUNNEL_OFFLOAD, |at| at.value),
    })
}

fn algorithm<T: Copy>(
    c: &Check<'_>,
    key: &str,
    at: &Option<At<String>>,
    words: &[(&str, T)],
) -> Option<T> {
    match at {
        None => words
            .iter()
            .find(|(w, _)| *w == def::ALGORITHM)
            .map(|(_, t)| *t),
        Some(at) => c.word(key, at, words),
    }
}

fn lifetime_seconds(c: &Check<'_>, at: &Option<At<i64>>, default: u64) -> Option<u64> {
    match at {
        None => Some(default),
        Some(at) => c
            .range(
                "lifetime-seconds",
                at,
                1,
                i64::from(u32::MAX),
                "a lifetime must be at least 1 second",
            )
            .map(|s| s as u64),
    }
}

fn ipsec_transform(n: &Named<raw::RawIpsecTransform>, sink: &Sink) -> Option<IpsecTransform> {
    let c = Check::new(sink, n.path(raw::IPSEC_TRANSFORM), &n.loc);
    let b = &n.body;
    let encryption = algorithm(&c, "esp-encryption", &b.esp_encryption, &ESP_ENCRYPTION);
    let authentication = algorithm(
        &c,
        "esp-authentication",
        &b.esp_authentication,
        &AUTHENTICATION,
    );
    let ah = algorithm(
        &c,
        "ah-authentication",
        &b.ah_authentication,
        &AUTHENTICATION,
    );
    let mode = match &b.mode {
        None => Some(Mode::Tunnel),
        Some(at) => c.word("mode", at, &MODES),
    };
    let lifetime_seconds = lifetime_seconds(&c, &b.lifetime_seconds, def::IPSEC_LIFETIME_SECONDS);
    let lifetime_kilobytes = match &b.lifetime_kilobytes {
        None => Some(def::IPSEC_LIFETIME_KILOBYTES),
        Some(at) => c
            .range(
                "lifetime-kilobytes",
                at,
                0,
                i64::MAX / 1024,
                "0 (no volume limit) or more kilobytes",
            )
            .map(|k| k as u64),
    };
    let replay_window = match &b.replay_window {
        None => Some(None),
        Some(at) => c
            .range(
                "replay-window",
                at,
                0,
                def::REPLAY_WINDOW_MAX,
                "0..=4096 packets (0 disables anti-replay)",
            )
            .map(|w| Some(w as u32)),
    };
    let (encryption, authentication, ah) = (encryption?, authentication?, ah?);
    if encryption.is_aead() {
        aead_transform(&c, &n.loc, b, encryption, authentication, ah)?;
    }

    if encryption == EncrAlgorithm::Null
        && authentication == AuthAlgorithm::None
        && ah == AuthAlgorithm::None
    {
        c.error(
            &n.loc,
            "protects nothing: esp-encryption, esp-authentication and ah-authentication are all `none` \
             (ESP with neither encryption nor authentication is refused, RFC 4303 §3.2)",
        );
        return None;
    }
    let at = |v: &Option<At<String>>| v.as_ref().map_or_else(|| n.loc.clone(), |a| a.loc.clone());
    if encryption != EncrAlgorithm::Null
        && !encryption.is_aead()
        && authentication == AuthAlgorithm::None
        && ah == AuthAlgorithm::None
    {
        c.warning(
            &at(&b.esp_encryption),
            "ESP encryption without esp-authentication or AH: packets can be altered undetected \
             (RFC 4303 §3.2); add esp-authentication",
        );
    }
    if encryption.is_weak() {
        c.warning(
            &at(&b.esp_encryption),
            "esp-encryption des is weak (56-bit key, broken by brute force); use aes-cbc-128 or better",
        );
    }
    for (key, alg, v) in [
        ("esp-authentication", authentication, &b.esp_authentication),
        ("ah-authentication", ah, &b.ah_authentication),
    ] {
        if alg.is_weak() {
            c.warning(
                &at(v),
                format_args!("{key} hmac-md5 is weak; use hmac-sha1 or hmac-sha256"),
            );
        }
    }
    // esp none + none with AH set: an AH-only transform, no ESP at all.
    let esp = (encryption != EncrAlgorithm::Null || authentication != AuthAlgorithm::None)
        .then_some(EspTransform {
            encryption,
            authentication,
        });
    Some(IpsecTransform {
        name: n.name.clone(),
        esp,
        ah: (ah != AuthAlgorithm::None).then_some(ah),
        mode: mode?,
        lifetime_seconds: lifetime_seconds?,
        lifetime_kilobytes: lifetime_kilobytes?,
        replay_window: replay_window?,
    })
}

/// RFC 4106 §1 / RFC 4303 §3.2.3: AES-GCM is a combined-mode algorithm, so the transform
/// names no separate ESP integrity; and it is ESP only (not AH, not phase 1).
fn aead_transform(
    c: &Check<'_>,
    table: &Loc,
    b: &raw::RawIpsecTransform,
    encryption: EncrAlgorithm,
    authentication: AuthAlgorithm,
    ah: AuthAlgorithm,
) -> Option<()> {
    let mut ok = true;
    if authentication != AuthAlgorithm::None {
        c.error(
            b.esp_authentication.as_ref().map_or(table, |a| &a.loc),
            format_args!(
                "esp-authentication must be `none` with esp-encryption {}: AES-GCM \
                 authenticates itself with its 16-byte ICV (RFC 4106)",
                encryption.name()
            ),
        );
        ok = false;
    }
    if ah != AuthAlgorithm::None {
        c.error(
            b.ah_authentication.as_ref().map_or(table, |a| &a.loc),
            format_args!(
                "ah-authentication must be `none` with esp-encryption {}: AES-GCM is ESP \
                 only and already authenticates the packet",
                encryption.name()
            ),
        );
        ok = false;
    }
    ok.then_some(())
}

fn isakmp_transform(n: &Named<raw::RawIsakmpTransform>, sink: &Sink) -> Option<IsakmpTransform> {
    let c = Check::new(sink, n.path(raw::ISAKMP_TRANSFORM), &n.loc);
    let b = &n.body;
    // ISAKMP messages are always encrypted after the key exchange: `none` is not offered.
    let encryption = c.required(&b.encryption, "encryption").and_then(|at| {
        if ESP_ENCRYPTION[6..].iter().any(|(w, _)| *w == at.value) {
            c.error(
                &at.loc,
                format_args!(
                    "encryption `{}` is for ESP only (ipsec-transform esp-encryption): IKEv1 \
                         phase 1 has no AES-GCM; use aes-cbc-128 or aes-cbc-256",
                    at.value
                ),
            );
            return None;
        }
        c.word("encryption", at, &ISAKMP_ENCRYPTION)
    });
    let hash = c
        .required(&b.hash, "hash")
        .and_then(|at| c.word("hash", at, &HASHES));
    let dh_group = c
        .required(&b.dh_group, "dh-group")
        .and_then(|at| c.group("dh-group", at, &def::DH_GROUPS, false))
        .flatten();
    let lifetime_seconds = lifetime_seconds(&c, &b.lifetime_seconds, def::ISAKMP_LIFETIME_SECONDS);
    if let (Some(e), Some(at)) = (encryption, &b.encryption)
        && e.is_weak()
    {
        c.warning(
            &at.loc,
            "encryption des is weak (56-bit key, broken by brute force); use aes-cbc-128 or better",
        );
    }
    if let (Some(HashAlgorithm::Md5), Some(at)) = (hash, &b.hash) {
        c.warning(&at.loc, "hash md5 is weak; use sha1 or sha256");
    }
    if let (Some(1), Some(at)) = (dh_group, &b.dh_group) {
        c.warning(
            &at.loc,
            "dh-group 1 (768-bit MODP) is weak; use group 14 or higher",
        );
    }
    Some(IsakmpTransform {
        name: n.name.clone(),
        encryption: encryption?,
        hash: hash?,
        dh_group: dh_group?,
        lifetime_seconds: lifetime_seconds?,
    })
}

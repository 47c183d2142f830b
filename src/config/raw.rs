//! The profiles as written: one spanned TOML document per file read into plain structs that keep
//! the place of every key and value. Only the shape is checked here (known keys, value types);
//! meaning is checked in `validate`.
//!
//! This is a hand-written reader over `toml::de::DeTable` rather than serde structs with
//! `deny_unknown_fields`: serde stops at the first unknown key or wrong type of a table, and
//! `ikehub check` must report every problem at once, each with its line and column.

use toml::de::DeTable;

use super::diagnostic::{Loc, Sink};
pub(crate) use super::reader::did_you_mean;
use super::reader::{Cx, Fields, sorted};
use super::span::SourceFile;

/// A value and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct At<T> {
    pub value: T,
    pub loc: Loc,
}

/// A named table (`[interface.wan]`): `loc` is where the name is written.
#[derive(Clone, Debug)]
pub(crate) struct Named<T> {
    pub name: String,
    pub loc: Loc,
    pub body: T,
}

impl<T> Named<T> {
    /// `kind.name`, the prefix of every message about this table.
    pub fn path(&self, kind: &str) -> String {
        format!("{kind}.{}", self.name)
    }
}

/// A string or an integer, for keys such as `dh-group = 14` / `pfs-group = "none"`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scalar {
    Str(String),
    Int(i64),
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RawSystem {
    pub control_socket: Option<At<String>>,
    pub shards: Option<At<i64>>,
    pub ike_workers: Option<At<i64>>,
    pub half_open_per_source: Option<At<i64>>,
    pub metrics: Option<At<String>>,
    pub metrics_allow_remote: Option<At<bool>>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RawInterface {
    pub address: Option<At<String>>,
    pub device: Option<At<String>>,
    pub ike_port: Option<At<i64>>,
    pub nat_t_port: Option<At<i64>>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RawTunnelDevice {
    pub name: Option<At<String>>,
    pub mtu: Option<At<i64>>,
    pub source_address: Option<At<Vec<At<String>>>>,
    pub routes: Option<At<bool>>,
    pub offload: Option<At<bool>>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RawIpsecTransform {
    pub esp_encryption: Option<At<String>>,
    pub esp_authentication: Option<At<String>>,
    pub ah_authentication: Option<At<String>>,
    pub mode: Option<At<String>>,
    pub lifetime_seconds: Option<At<i64>>,
    pub lifetime_kilobytes: Option<At<i64>>,
    pub replay_window: Option<At<i64>>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RawIsakmpTransform {
    pub encryption: Option<At<String>>,
    pub hash: Option<At<String>>,
    pub dh_group: Option<At<Scalar>>,
    pub lifetime_seconds: Option<At<i64>>,
}

#[derive(Clone, Debug)]
pub(crate) struct RawProtectedNetwork {
    pub loc: Loc,
    pub local: Option<At<String>>,
    pub remote: Option<At<String>>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RawManualKeys {
    pub esp_spi: Option<At<i64>>,
    pub esp_encryption_key: Option<At<String>>,
    pub esp_authentication_key: Option<At<String>>,
    pub ah_spi: Option<At<i64>>,
    pub ah_authentication_key: Option<At<String>>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RawManualPolicy {
    pub interface: Option<At<String>>,
    pub peer: Option<At<String>>,
    pub transform: Option<At<String>>,
    pub encapsulation: Option<At<String>>,
    pub protected_network: Option<At<Vec<RawProtectedNetwork>>>,
    pub inbound: Option<At<RawManualKeys>>,
    pub outbound: Option<At<RawManualKeys>>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RawDpd {
    pub interval_seconds: Option<At<i64>>,
    pub timeout_seconds: Option<At<i64>>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RawIsakmpPolicy {
    pub interface: Option<At<String>>,
    pub peer: Option<At<String>>,
    pub preshared_key: Option<At<String>>,
    pub preshared_key_file: Option<At<String>>,
    pub isakmp_transform: Option<At<Vec<At<String>>>>,
    pub ipsec_transform: Option<At<Vec<At<String>>>>,
    pub pfs_group: Option<At<Scalar>>,
    pub initiate: Option<At<String>>,
    pub nat_traversal: Option<At<bool>>,
    pub dpd: Option<At<RawDpd>>,
    pub protected_network: Option<At<Vec<RawProtectedNetwork>>>,
    pub local_id: Option<At<String>>,
    pub remote_id: Option<At<String>>,
    pub dh_key_reuse_seconds: Option<At<i64>>,
}

/// Everything one file defines, in the order written.
#[derive(Clone, Debug, Default)]
pub(crate) struct RawFile {
    pub system: Vec<Named<RawSystem>>,
    pub tunnel_device: Vec<Named<RawTunnelDevice>>,
    pub interfaces: Vec<Named<RawInterface>>,
    pub ipsec_transforms: Vec<Named<RawIpsecTransform>>,
    pub isakmp_transforms: Vec<Named<RawIsakmpTransform>>,
    pub manual_policies: Vec<Named<RawManualPolicy>>,
    pub isakmp_policies: Vec<Named<RawIsakmpPolicy>>,
}

pub(crate) const SYSTEM: &str = "system";
pub(crate) const TUNNEL_DEVICE: &str = "tunnel-device";
pub(crate) const INTERFACE: &str = "interface";
pub(crate) const IPSEC_TRANSFORM: &str = "ipsec-transform";
pub(crate) const ISAKMP_TRANSFORM: &str = "isakmp-transform";
pub(crate) const MANUAL_POLICY: &str = "ipsec-policy-manual";
pub(crate) const ISAKMP_POLICY: &str = "ipsec-policy-isakmp";

const TOP_LEVEL: [&str; 7] = [
    SYSTEM,
    TUNNEL_DEVICE,
    INTERFACE,
    IPSEC_TRANSFORM,
    ISAKMP_TRANSFORM,
    MANUAL_POLICY,
    ISAKMP_POLICY,
];

/// Reads one parsed file. Shape problems go to `sink`; what could be read is returned.
pub(crate) fn read_file(src: &SourceFile, doc: &DeTable<'_>, sink: &Sink) -> RawFile {
    let mut out = RawFile::default();
    for (key, value) in sorted(doc) {
        let loc = src.loc(key.span().start);
        let name = key.get_ref().as_ref();
        let cx = Cx { src, sink };
        match name {
            SYSTEM => {
                if let Some(t) = cx.table_of(name, value) {
                    let body = read_system(&mut cx.fields(name, t));
                    out.system.push(Named {
                        name: name.into(),
                        loc,
                        body,
                    });
                }
            }
            TUNNEL_DEVICE => {
                if let Some(t) = cx.table_of(name, value) {
                    let body = read_tunnel_device(&mut cx.fields(name, t));
                    out.tunnel_device.push(Named {
                        name: name.into(),
                        loc,
                        body,
                    });
                }
            }
            INTERFACE => cx.named(name, value, &mut out.interfaces, read_interface),
            IPSEC_TRANSFORM => {
                cx.named(name, value, &mut out.ipsec_transforms, read_ipsec_transform)
            }
            ISAKMP_TRANSFORM => cx.named(
                name,
                value,
                &mut out.isakmp_transforms,
                read_isakmp_transform,
            ),
            MANUAL_POLICY => cx.named(name, value, &mut out.manual_policies, read_manual_policy),
            ISAKMP_POLICY => cx.named(name, value, &mut out.isakmp_policies, read_isakmp_policy),
            other => {
                let what = if value.get_ref().is_table() {
                    "unknown table"
                } else {
                    "unknown top-level key (keys belong in a table such as [system])"
                };
                sink.error(
                    &loc,
                    format!(
                        "{what} `{other}`{}; the tables are: {}",
                        did_you_mean(other, TOP_LEVEL.iter().copied()),
                        TOP_LEVEL.join(", ")
                    ),
                )
            }
        }
    }
    out
}

fn read_system(f: &mut Fields<'_, '_>) -> RawSystem {
    let r = RawSystem {
        control_socket: f.string("control-socket"),
        shards: f.int("shards"),
        ike_workers: f.int("ike-workers"),
        half_open_per_source: f.int("half-open-per-source"),
        metrics: f.string("metrics"),
        metrics_allow_remote: f.bool("metrics-allow-remote"),
    };
    f.finish();
    r
}

fn read_interface(f: &mut Fields<'_, '_>) -> RawInterface {
    let r = RawInterface {
        address: f.string("address"),
        device: f.string("device"),
        ike_port: f.int("ike-port"),
        nat_t_port: f.int("nat-t-port"),
    };
    f.finish();
    r
}

fn read_tunnel_device(f: &mut Fields<'_, '_>) -> RawTunnelDevice {
    let r = RawTunnelDevice {
        name: f.string("name"),
        mtu: f.int("mtu"),
        source_address: f.string_list("source-address"),
        routes: f.bool("routes"),
        offload: f.bool("offload"),
    };
    f.finish();
    r
}

fn read_ipsec_transform(f: &mut Fields<'_, '_>) -> RawIpsecTransform {
    let r = RawIpsecTransform {
        esp_encryption: f.string("esp-encryption"),
        esp_authentication: f.string("esp-authentication"),
        ah_authentication: f.string("ah-authentication"),
        mode: f.string("mode"),
        lifetime_seconds: f.int("lifetime-seconds"),
        lifetime_kilobytes: f.int("lifetime-kilobytes"),
        replay_window: f.int("replay-window"),
    };
    f.finish();
    r
}

fn read_isakmp_transform(f: &mut Fields<'_, '_>) -> RawIsakmpTransform {
    let r = RawIsakmpTransform {
        encryption: f.string("encryption"),
        hash: f.string("hash"),
        dh_group: f.scalar("dh-group"),
        lifetime_seconds: f.int("lifetime-seconds"),
    };
    f.finish();
    r
}

fn read_manual_keys(f: &mut Fields<'_, '_>) -> RawManualKeys {
    let r = RawManualKeys {
        esp_spi: f.int("esp-spi"),
        esp_encryption_key: f.string("esp-encryption-key"),
        esp_authentication_key: f.string("esp-authentication-key"),
        ah_spi: f.int("ah-spi"),
        ah_authentication_key: f.string("ah-authentication-key"),
    };
    f.finish();
    r
}

fn read_manual_policy(f: &mut Fields<'_, '_>) -> RawManualPolicy {
    let r = RawManualPolicy {
        interface: f.string("interface"),
        peer: f.string("peer"),
        transform: f.string("transform"),
        encapsulation: f.string("encapsulation"),
        protected_network: f.protected_networks("protected-network"),
        inbound: f.sub_table("inbound", read_manual_keys),
        outbound: f.sub_table("outbound", read_manual_keys),
    };
    f.finish();
    r
}

fn read_dpd(f: &mut Fields<'_, '_>) -> RawDpd {
    let r = RawDpd {
        interval_seconds: f.int("interval-seconds"),
        timeout_seconds: f.int("timeout-seconds"),
    };
    f.finish();
    r
}

fn read_isakmp_policy(f: &mut Fields<'_, '_>) -> RawIsakmpPolicy {
    let r = RawIsakmpPolicy {
        interface: f.string("interface"),
        peer: f.string("peer"),
        preshared_key: f.string("preshared-key"),
        preshared_key_file: f.string("preshared-key-file"),
        isakmp_transform: f.string_list("isakmp-transform"),
        ipsec_transform: f.string_list("ipsec-transform"),
        pfs_group: f.scalar("pfs-group"),
        initiate: f.string("initiate"),
        nat_traversal: f.bool("nat-traversal"),
        dpd: f.sub_table("dpd", read_dpd),
        protected_network: f.protected_networks("protected-network"),
        local_id: f.string("local-id"),
        remote_id: f.string("remote-id"),
        dh_key_reuse_seconds: f.int("dh-key-reuse-seconds"),
    };
    f.finish();
    r
}

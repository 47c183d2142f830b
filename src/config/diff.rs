//! What a reload changes: policies added, removed, changed or untouched (by content, so a policy
//! whose transform or keys changed counts as changed), and the tables a running daemon cannot
//! change in place (`system`, `interface`, `tunnel-device`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::model::Profiles;

/// The classification of one kind of policy, names sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

impl PolicyChanges {
    fn between<T: PartialEq>(
        old: &BTreeMap<String, Arc<T>>,
        new: &BTreeMap<String, Arc<T>>,
    ) -> Self {
        let mut c = Self::default();
        for (name, n) in new {
            match old.get(name) {
                None => c.added.push(name.clone()),
                // Arc compares contents: a policy whose transform changed is changed too.
                Some(o) if **o == **n => c.unchanged.push(name.clone()),
                Some(_) => c.changed.push(name.clone()),
            }
        }
        c.removed = old
            .keys()
            .filter(|k| !new.contains_key(*k))
            .cloned()
            .collect();
        c
    }

    /// True when nothing was added, removed or changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// How a table that needs a restart differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
    Changed,
}

/// A difference the running daemon does not apply on reload: it keeps the old value (and says
/// so) until it is restarted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NeedsRestart {
    /// `system.KEY` (`control-socket`, `shards`, `ike-workers`, `metrics`).
    System(&'static str),
    Interface(String, Change),
    TunnelDevice(Change),
}

impl fmt::Display for NeedsRestart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = |c: &Change| match c {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
        };
        match self {
            Self::System(key) => write!(f, "system.{key} changed"),
            Self::Interface(name, c) => write!(f, "interface.{name} {}", word(c)),
            Self::TunnelDevice(c) => write!(f, "tunnel-device {}", word(c)),
        }
    }
}

/// The difference between two validated snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileDiff {
    pub manual: PolicyChanges,
    pub isakmp: PolicyChanges,
    /// Transforms whose definition changed or vanished, for the log (the policies using them
    /// are already `changed`).
    pub transforms_changed: Vec<String>,
    pub needs_restart: Vec<NeedsRestart>,
}

impl ProfileDiff {
    /// True when the new snapshot is the same as the old one in every respect that matters.
    pub fn is_empty(&self) -> bool {
        self.manual.is_empty()
            && self.isakmp.is_empty()
            && self.transforms_changed.is_empty()
            && self.needs_restart.is_empty()
    }
}

/// Classifies every policy of `old` and `new`, and lists what needs a restart.
pub fn diff(old: &Profiles, new: &Profiles) -> ProfileDiff {
    let mut needs_restart = Vec::new();
    if old.system.control_socket != new.system.control_socket {
        needs_restart.push(NeedsRestart::System("control-socket"));
    }
    if old.system.shards != new.system.shards {
        needs_restart.push(NeedsRestart::System("shards"));
    }
    if old.system.ike_workers != new.system.ike_workers {
        needs_restart.push(NeedsRestart::System("ike-workers"));
    }
    if old.system.half_open_per_source != new.system.half_open_per_source {
        needs_restart.push(NeedsRestart::System("half-open-per-source"));
    }
    if old.system.metrics != new.system.metrics {
        needs_restart.push(NeedsRestart::System("metrics"));
    }
    for (name, o) in &old.interfaces {
        match new.interfaces.get(name) {
            None => needs_restart.push(NeedsRestart::Interface(name.clone(), Change::Removed)),
            Some(n) if n != o => {
                needs_restart.push(NeedsRestart::Interface(name.clone(), Change::Changed))
            }
            Some(_) => {}
        }
    }
    for name in new.interfaces.keys() {
        if !old.interfaces.contains_key(name) {
            needs_restart.push(NeedsRestart::Interface(name.clone(), Change::Added));
        }
    }
    match (&old.tunnel_device, &new.tunnel_device) {
        (None, Some(_)) => needs_restart.push(NeedsRestart::TunnelDevice(Change::Added)),
        (Some(_), None) => needs_restart.push(NeedsRestart::TunnelDevice(Change::Removed)),
        (Some(o), Some(n)) if o != n => {
            needs_restart.push(NeedsRestart::TunnelDevice(Change::Changed))
        }
        _ => {}
    }
    let mut transforms_changed: Vec<String> = Vec::new();
    for (kind, changed) in [
        (
            "ipsec-transform",
            changed_keys(&old.ipsec_transforms, &new.ipsec_transforms),
        ),
        (
            "isakmp-transform",
            changed_keys(&old.isakmp_transforms, &new.isakmp_transforms),
        ),
    ] {
        transforms_changed.extend(changed.into_iter().map(|n| format!("{kind}.{n}")));
    }
    ProfileDiff {
        manual: PolicyChanges::between(&old.manual_policies, &new.manual_policies),
        isakmp: PolicyChanges::between(&old.isakmp_policies, &new.isakmp_policies),
        transforms_changed,
        needs_restart,
    }
}

/// Names present in `old` whose value differs in (or is missing from) `new`.
fn changed_keys<T: PartialEq>(
    old: &BTreeMap<String, Arc<T>>,
    new: &BTreeMap<String, Arc<T>>,
) -> Vec<String> {
    old.iter()
        .filter(|(k, o)| new.get(*k).is_none_or(|n| **n != ***o))
        .map(|(k, _)| k.clone())
        .collect()
}

impl fmt::Display for ProfileDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hub has thousands of policies: long lists are cut so the answer stays readable.
        const SHOWN: usize = 20;
        let list = |v: &[String]| {
            if v.is_empty() {
                "-".to_string()
            } else if v.len() > SHOWN {
                format!("{}, ... ({} in all)", v[..SHOWN / 2].join(", "), v.len())
            } else {
                v.join(", ")
            }
        };
        for (kind, c) in [("manual", &self.manual), ("isakmp", &self.isakmp)] {
            writeln!(
                f,
                "{kind} policies: added {}; removed {}; changed {}; unchanged {}",
                list(&c.added),
                list(&c.removed),
                list(&c.changed),
                list(&c.unchanged)
            )?;
        }
        for r in &self.needs_restart {
            writeln!(f, "needs restart (kept as before until then): {r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::load_sources;

    const BASE: &str = r#"
[system]
control-socket = "/tmp/a.sock"
shards = 2

[interface.wan]
address = "192.0.2.1"

[ipsec-transform.T]
esp-encryption = "aes-cbc-128"
esp-authentication = "hmac-sha1"

[ipsec-transform.U]
esp-encryption = "aes-cbc-256"
esp-authentication = "hmac-sha256"

[isakmp-transform.I]
encryption = "aes-cbc-128"
hash = "sha1"
dh-group = 14

[ipsec-policy-manual.A]
interface = "wan"
peer = "192.0.2.2"
transform = "T"
protected-network = [ { local = "198.51.100.0/24", remote = "203.0.113.0/24" } ]
inbound = { esp-spi = 1000, esp-encryption-key = "00112233445566778899aabbccddeeff", esp-authentication-key = "0102030405060708090a0b0c0d0e0f1011121314" }
outbound = { esp-spi = 2000, esp-encryption-key = "00112233445566778899aabbccddeeff", esp-authentication-key = "0102030405060708090a0b0c0d0e0f1011121314" }

[ipsec-policy-manual.B]
interface = "wan"
peer = "192.0.2.3"
transform = "T"
protected-network = [ { local = "198.51.100.0/24", remote = "203.0.114.0/24" } ]
inbound = { esp-spi = 1001, esp-encryption-key = "00112233445566778899aabbccddeeff", esp-authentication-key = "0102030405060708090a0b0c0d0e0f1011121314" }
outbound = { esp-spi = 2001, esp-encryption-key = "00112233445566778899aabbccddeeff", esp-authentication-key = "0102030405060708090a0b0c0d0e0f1011121314" }

[ipsec-policy-isakmp.S]
interface = "wan"
peer = "any"
preshared-key = "secret"
isakmp-transform = ["I"]
ipsec-transform = ["U"]
protected-network = [ { local = "198.51.100.0/24", remote = "10.0.0.0/8" } ]
"#;

    fn profiles(text: &str) -> Profiles {
        match load_sources(vec![(
            PathBuf::from("/nonexistent/p.toml"),
            text.to_string(),
        )]) {
            Ok(l) => l.profiles,
            Err(e) => panic!("{e:#?}"),
        }
    }

    #[test]
    fn identical_snapshots_do_not_differ() {
        let d = diff(&profiles(BASE), &profiles(BASE));
        assert!(d.is_empty(), "{d:#?}");
        assert_eq!(d.manual.unchanged, ["A", "B"]);
        assert_eq!(d.isakmp.unchanged, ["S"]);
    }

    #[test]
    fn added_removed_and_changed_keys() {
        let new = BASE
            // A: a different inbound key.
            .replacen(
                "inbound = { esp-spi = 1000, esp-encryption-key = \"0011",
                "inbound = { esp-spi = 1000, esp-encryption-key = \"ff11",
                1,
            )
            // B removed, C added.
            .replace("[ipsec-policy-manual.B]", "[ipsec-policy-manual.C]");
        let d = diff(&profiles(BASE), &profiles(&new));
        assert_eq!(d.manual.changed, ["A"]);
        assert_eq!(d.manual.added, ["C"]);
        assert_eq!(d.manual.removed, ["B"]);
        assert!(d.manual.unchanged.is_empty());
        assert_eq!(d.isakmp.unchanged, ["S"]);
        assert!(d.needs_restart.is_empty());
        assert!(d.to_string().contains("added C; removed B; changed A"));
    }

    #[test]
    fn a_changed_transform_changes_its_policies() {
        let new = BASE.replace(
            "esp-encryption = \"aes-cbc-256\"",
            "esp-encryption = \"aes-cbc-192\"",
        );
        let d = diff(&profiles(BASE), &profiles(&new));
        assert_eq!(d.isakmp.changed, ["S"]);
        assert_eq!(d.manual.unchanged, ["A", "B"]);
        assert_eq!(d.transforms_changed, ["ipsec-transform.U"]);

        let new = BASE.replace("dh-group = 14", "dh-group = 15");
        let d = diff(&profiles(BASE), &profiles(&new));
        assert_eq!(d.isakmp.changed, ["S"]);
        assert_eq!(d.transforms_changed, ["isakmp-transform.I"]);
    }

    #[test]
    fn system_interface_and_tunnel_device_need_restart() {
        let new = BASE
            .replace("shards = 2", "shards = 3")
            .replace(
                "address = \"192.0.2.1\"",
                "address = \"192.0.2.1\"\nike-port = 5000",
            )
            .replace("[system]", "[tunnel-device]\nmtu = 1300\n\n[system]");
        let d = diff(&profiles(BASE), &profiles(&new));
        assert_eq!(
            d.needs_restart,
            [
                NeedsRestart::System("shards"),
                NeedsRestart::Interface("wan".into(), Change::Changed),
                NeedsRestart::TunnelDevice(Change::Added),
            ]
        );
        assert!(d.manual.is_empty() && d.isakmp.is_empty());
        assert!(!d.is_empty());
        assert_eq!(d.needs_restart[1].to_string(), "interface.wan changed");
        // The metrics listener is bound once at start.
        let new = BASE.replace("shards = 2", "shards = 2\nmetrics = \"127.0.0.1:9469\"");
        let d = diff(&profiles(BASE), &profiles(&new));
        assert_eq!(d.needs_restart, [NeedsRestart::System("metrics")]);
        // The IKE workers are threads started once.
        let new = BASE.replace("shards = 2", "shards = 2\nike-workers = 3");
        let d = diff(&profiles(BASE), &profiles(&new));
        assert_eq!(d.needs_restart, [NeedsRestart::System("ike-workers")]);
        assert_eq!(d.needs_restart[0].to_string(), "system.ike-workers changed");
        // The router's half-open bounds are set when it starts.
        let new = BASE.replace("shards = 2", "shards = 2\nhalf-open-per-source = 512");
        let d = diff(&profiles(BASE), &profiles(&new));
        assert_eq!(
            d.needs_restart,
            [NeedsRestart::System("half-open-per-source")]
        );
    }
}

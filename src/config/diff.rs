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
        c.removed = old.keys().filter(|k| !new.contains_key(*k)).cloned().collect();
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
    /// `system.KEY` (`control-socket`, `shards`).
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
        let list = |v: &[String]| {
            if v.is_empty() {
                "-".to_string()
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

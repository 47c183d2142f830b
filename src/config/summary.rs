//! The one-screen summary `ikehub check` prints for a valid profile set.

use std::fmt::Write;

use super::load::Loaded;
use super::model::*;
use super::network::ProtectedNetwork;

fn networks(pns: &[ProtectedNetwork]) -> String {
    pns.iter()
        .map(|p| format!("{} <-> {}", p.local, p.remote))
        .collect::<Vec<_>>()
        .join(", ")
}

fn peer(p: &PeerSpec) -> String {
    match p {
        PeerSpec::Address(a) => a.to_string(),
        PeerSpec::Block(b) => format!("{b} (template)"),
        PeerSpec::Any => "any (template)".to_string(),
    }
}

/// Counts, then one line per policy: name, kind, peer, transform(s), protected networks,
/// encapsulation. Then the warnings, if any.
pub fn summary(loaded: &Loaded) -> String {
    let p = &loaded.profiles;
    let mut s = String::new();
    let files: Vec<String> = loaded
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    let _ = writeln!(s, "profiles valid: {}", files.join(", "));
    let _ = writeln!(
        s,
        "system: control socket {}, {} ESP shard(s) per interface, {} IKE worker(s)",
        p.system.control_socket.display(),
        p.system.shards,
        p.system.ike_workers
    );
    let ifaces: Vec<String> = p
        .interfaces
        .values()
        .map(|i| {
            format!(
                "{} {}{} (IKE {}, NAT-T {})",
                i.name,
                i.address,
                i.device
                    .as_ref()
                    .map(|d| format!(" on {d}"))
                    .unwrap_or_default(),
                i.ike_port,
                i.nat_t_port
            )
        })
        .collect();
    let _ = writeln!(s, "interfaces: {}: {}", ifaces.len(), ifaces.join("; "));
    match &p.tunnel_device {
        Some(t) => {
            let _ = writeln!(
                s,
                "tunnel device: {} mtu {}{}, routes {}, offload {}",
                t.name,
                t.mtu,
                match (t.source_v4, t.source_v6) {
                    (Some(a), Some(b)) => format!(" source {a}, {b}"),
                    (Some(a), None) => format!(" source {a}"),
                    (None, Some(b)) => format!(" source {b}"),
                    (None, None) => String::new(),
                },
                if t.routes {
                    "installed"
                } else {
                    "not installed"
                },
                if t.offload { "on" } else { "off" }
            );
        }
        None => {
            let _ = writeln!(s, "tunnel device: none configured (defaults apply)");
        }
    }
    let _ = writeln!(
        s,
        "transforms: {} ipsec, {} isakmp",
        p.ipsec_transforms.len(),
        p.isakmp_transforms.len()
    );
    let _ = writeln!(
        s,
        "policies: {} manual, {} isakmp",
        p.manual_policies.len(),
        p.isakmp_policies.len()
    );
    let mut rows: Vec<[String; 6]> = Vec::new();
    for m in p.manual_policies.values() {
        rows.push([
            m.name.clone(),
            "manual".into(),
            m.peer.to_string(),
            m.transform.name.clone(),
            networks(&m.protected_networks),
            match m.encapsulation {
                Encapsulation::Esp => "esp".into(),
                Encapsulation::Udp => "udp".into(),
            },
        ]);
    }
    for i in p.isakmp_policies.values() {
        let names = |v: Vec<&str>| v.join("/");
        rows.push([
            i.name.clone(),
            "isakmp".into(),
            peer(&i.peer),
            format!(
                "{} + {}",
                names(
                    i.isakmp_transforms
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect()
                ),
                names(i.ipsec_transforms.iter().map(|t| t.name.as_str()).collect())
            ),
            networks(&i.protected_networks),
            if i.nat_traversal {
                "esp, udp behind NAT"
            } else {
                "esp"
            }
            .into(),
        ]);
    }
    // One screen: a hub with thousands of spokes lists the first policies and counts the rest.
    const MAX_ROWS: usize = 40;
    let hidden = rows.len().saturating_sub(MAX_ROWS);
    rows.truncate(MAX_ROWS);
    if !rows.is_empty() {
        let header =
            ["POLICY", "KIND", "PEER", "TRANSFORM", "PROTECTED", "ENCAP"].map(String::from);
        let mut widths = [0usize; 6];
        for r in std::iter::once(&header).chain(&rows) {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        for r in std::iter::once(&header).chain(&rows) {
            let mut line = String::from(" ");
            for (i, (w, c)) in widths.iter().zip(r).enumerate() {
                if i + 1 == r.len() {
                    let _ = write!(line, " {c}");
                } else {
                    let _ = write!(line, " {c:<w$}");
                }
            }
            let _ = writeln!(s, "{}", line.trim_end());
        }
        if hidden > 0 {
            let _ = writeln!(s, "  ... and {hidden} more policies");
        }
    }
    if !loaded.warnings.is_empty() {
        let _ = writeln!(s, "warnings: {}", loaded.warnings.len());
        for w in &loaded.warnings {
            let _ = writeln!(s, "  {w}");
        }
    }
    s
}

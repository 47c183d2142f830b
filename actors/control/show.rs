//! Rendering of `show sa` in the SmartWare status-table layout (docs/cli.md).

use super::protocol::SaStatus;
use super::table::Table;

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_string(), T::to_string)
}

fn limit(used: u64, limit: Option<u64>) -> String {
    match limit {
        Some(l) => format!("{used}/{l}"),
        None => format!("{used}/unlimited"),
    }
}

pub fn sa_table(rows: &[SaStatus]) -> String {
    let mut t = Table::new(&[
        "DIR", "TYPE", "POLICY", "MODE", "REPLAY", "PEER", "AH-SPI", "ESP-SPI", "AH-AUTH",
        "ESP-AUTH", "ESP-ENC", "KBYTES", "SECONDS",
    ]);
    for r in rows {
        t.row(vec![
            r.direction.clone(),
            r.kind.clone(),
            r.policy.clone(),
            r.mode.clone(),
            if r.replay { "yes" } else { "no" }.to_string(),
            r.peer.clone(),
            opt(&r.ah_spi),
            opt(&r.esp_spi),
            opt(&r.ah_auth),
            opt(&r.esp_auth),
            opt(&r.esp_enc),
            limit(r.kbytes, r.kbytes_limit),
            limit(r.seconds, r.seconds_limit),
        ]);
    }
    t.render()
}

/// Text form of a free-form body: a string is printed as is, anything else as pretty JSON.
pub fn text_body(body: &serde_json::Value) -> String {
    match body {
        serde_json::Value::String(s) if s.ends_with('\n') => s.clone(),
        serde_json::Value::String(s) => format!("{s}\n"),
        other => format!(
            "{}\n",
            serde_json::to_string_pretty(other).unwrap_or_default()
        ),
    }
}

/// `show counters`: one row per shard, one column per counter.
pub fn counters_table(body: &serde_json::Value) -> String {
    let all = body.as_array().cloned().unwrap_or_default();
    let ike: String = all
        .iter()
        .filter_map(|r| r.get("ike").and_then(|c| c.as_object()))
        .flat_map(|c| c.iter())
        .map(|(name, v)| match v.as_array() {
            // Per IKE worker: `workers[K].peers`, `workers[K].cpu_ms`.
            Some(list) => list
                .iter()
                .enumerate()
                .flat_map(|(k, item)| {
                    item.as_object()
                        .into_iter()
                        .flatten()
                        .map(move |(field, v)| {
                            let key = format!("{name}[{k}].{field}");
                            format!("{key:<32} {:>12}\n", v.as_u64().unwrap_or(0))
                        })
                })
                .collect(),
            None => format!("{name:<32} {:>12}\n", v.as_u64().unwrap_or(0)),
        })
        .collect();
    let ike = if ike.is_empty() {
        ike
    } else {
        format!("\nIKE\n{ike}")
    };
    let rows: Vec<serde_json::Value> = all
        .into_iter()
        .filter(|r| r.get("shard").is_some())
        .collect();
    let Some(first) = rows
        .first()
        .and_then(|r| r.get("counters"))
        .and_then(|c| c.as_object())
    else {
        return "no shards\n".to_string();
    };
    let names: Vec<String> = first.keys().cloned().collect();
    let mut out = String::new();
    for name in &names {
        out.push_str(&format!("{name:<18}"));
        for r in &rows {
            let v = r["counters"][name.as_str()].as_u64().unwrap_or(0);
            out.push_str(&format!(" {v:>12}"));
        }
        out.push('\n');
    }
    let mut header = format!("{:<18}", "COUNTER");
    for r in &rows {
        header.push_str(&format!(" {:>12}", format!("SHARD-{}", r["shard"])));
    }
    format!("{header}\n{out}{ike}")
}

/// A JSON field as table text: strings bare, numbers as numbers, null/absent as `-`.
fn field(row: &serde_json::Value, key: &str) -> String {
    match row.get(key) {
        None | Some(serde_json::Value::Null) => "-".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

fn rows(body: &serde_json::Value) -> Vec<serde_json::Value> {
    body.as_array().cloned().unwrap_or_default()
}

/// `show isakmp`: one row per phase-1 SA (docs/cli.md: peer, cookies, state, transform,
/// age/lifetime).
pub fn isakmp_table(body: &serde_json::Value) -> String {
    let rows = rows(body);
    if rows.is_empty() {
        return "no ISAKMP SAs\n".to_string();
    }
    let mut t = Table::new(&[
        "POLICY",
        "PEER",
        "STATE",
        "COOKIES (I/R)",
        "TRANSFORM",
        "SECONDS",
        "CHILD-SAS",
    ]);
    for r in &rows {
        let lifetime = match r.get("lifetime_seconds").and_then(|v| v.as_u64()) {
            Some(l) => l.to_string(),
            None => "unlimited".to_string(),
        };
        t.row(vec![
            field(r, "policy"),
            field(r, "peer"),
            field(r, "state"),
            format!(
                "{}/{}",
                field(r, "initiator_cookie"),
                field(r, "responder_cookie")
            ),
            field(r, "transform"),
            format!("{}/{lifetime}", field(r, "age_seconds")),
            field(r, "child_sas"),
        ]);
    }
    t.render()
}

/// `show peers`: one line per peer with the reason a tunnel is down.
pub fn peers_table(body: &serde_json::Value) -> String {
    let rows = rows(body);
    if rows.is_empty() {
        return "no peers configured\n".to_string();
    }
    let mut t = Table::new(&[
        "POLICY",
        "TYPE",
        "PEER",
        "IDENTITY",
        "STATE",
        "CHILD-SAS",
        "LAST-ERROR",
    ]);
    for r in &rows {
        t.row(vec![
            field(r, "policy"),
            field(r, "type"),
            field(r, "peer"),
            field(r, "identity"),
            field(r, "state"),
            field(r, "child_sas"),
            field(r, "last_error"),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_smartware_layout() {
        let row = |dir: &str, spi| SaStatus {
            direction: dir.into(),
            kind: "MANUAL".into(),
            policy: "ToBerne".into(),
            mode: "Tunnel".into(),
            replay: false,
            peer: "192.0.2.2".into(),
            ah_spi: None,
            esp_spi: Some(spi),
            ah_auth: None,
            esp_auth: Some("HMAC-SHA1".into()),
            esp_enc: Some("AES-CBC 128".into()),
            kbytes: 3622,
            kbytes_limit: None,
            seconds: 19047,
            seconds_limit: None,
            packets: 0,
            bytes: 0,
            replay_drops: 0,
            icv_failures: 0,
            padding_errors: 0,
            selector_mismatches: 0,
            other_drops: 0,
        };
        let out = sa_table(&[row("IN", 1111), row("OUT", 2222)]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "DIR TYPE   POLICY  MODE   REPLAY PEER      AH-SPI ESP-SPI AH-AUTH ESP-AUTH  ESP-ENC     KBYTES         SECONDS"
        );
        assert_eq!(
            lines[1],
            "IN  MANUAL ToBerne Tunnel no     192.0.2.2 -      1111    -       HMAC-SHA1 AES-CBC 128 3622/unlimited 19047/unlimited"
        );
        assert!(lines[2].starts_with("OUT MANUAL ToBerne Tunnel no     192.0.2.2 -      2222"));
    }

    /// docs/cli.md, `show sa`: AES-GCM shows as `ESP-ENC AES-GCM 128` with `ESP-AUTH -`.
    #[test]
    fn aes_gcm_row() {
        let row = SaStatus {
            direction: "IN".into(),
            kind: "ISAKMP".into(),
            policy: "Gcm".into(),
            mode: "Tunnel".into(),
            replay: true,
            peer: "192.0.2.2".into(),
            ah_spi: None,
            esp_spi: Some(4242),
            ah_auth: None,
            esp_auth: None,
            esp_enc: Some("AES-GCM 128".into()),
            kbytes: 1,
            kbytes_limit: Some(4608000),
            seconds: 2,
            seconds_limit: Some(3600),
            packets: 0,
            bytes: 0,
            replay_drops: 0,
            icv_failures: 0,
            padding_errors: 0,
            selector_mismatches: 0,
            other_drops: 0,
        };
        let out = sa_table(&[row]);
        let line = out.lines().nth(1).unwrap();
        assert!(
            line.contains("4242    -       -        AES-GCM 128 1/4608000"),
            "{line}"
        );
    }

    #[test]
    fn peer_and_isakmp_tables() {
        let peers = serde_json::json!([{
            "policy": "ToBerne", "type": "ISAKMP", "peer": "192.0.2.2:4500", "state": "failed",
            "child_sas": 0, "last_error": "no proposal chosen: peer offered 3DES-MD5-modp1024"
        }, {
            "policy": "ToBerne", "type": "ISAKMP", "peer": "192.0.2.2:500", "state": "up",
            "identity": "fqdn:spoke1.example.net", "child_sas": 1, "last_error": null
        }]);
        let out = peers_table(&peers);
        assert!(out.starts_with(
            "POLICY  TYPE   PEER           IDENTITY                STATE  CHILD-SAS LAST-ERROR\n"
        ));
        assert!(out.contains(
            "ToBerne ISAKMP 192.0.2.2:4500 -                       failed 0         no proposal chosen"
        ));
        assert!(out.contains("ToBerne ISAKMP 192.0.2.2:500  fqdn:spoke1.example.net up     1"));
        let isakmp = serde_json::json!([{
            "policy": "ToBerne", "peer": "192.0.2.2:4500", "state": "up",
            "initiator_cookie": "b995464c0685713f", "responder_cookie": "bd20fc2fc391e632",
            "transform": "AES128-SHA1-modp1024", "age_seconds": 12, "lifetime_seconds": 28800,
            "child_sas": 1, "last_error": null
        }]);
        let out = isakmp_table(&isakmp);
        assert!(out.contains("b995464c0685713f/bd20fc2fc391e632 AES128-SHA1-modp1024 12/28800"));
        assert_eq!(isakmp_table(&serde_json::json!([])), "no ISAKMP SAs\n");
    }
}

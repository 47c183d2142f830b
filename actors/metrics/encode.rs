//! What a scrape shows: the answers of `show sa`, `show peers`, `show isakmp` and
//! `show counters` (the same requests the control socket serves) turned into OpenMetrics text
//! by prometheus-client. Metric names and labels: docs/metrics.md.
//!
//! Labels are bounded by the profiles and the tunnels that are up: policy, peer, direction,
//! and reasons from fixed lists. Nothing per packet, no SPI (a re-key would make a new series
//! every hour per tunnel).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;

use crate::control::protocol::SaStatus;

/// The control answers a scrape is made of (absent parts: an actor did not answer).
#[derive(Debug, Default)]
pub struct Snapshot {
    /// `show sa --json`.
    pub sas: Vec<SaStatus>,
    /// `show peers --json`.
    pub peers: Vec<Value>,
    /// `show isakmp --json`.
    pub isakmp: Vec<Value>,
    /// `show counters --json`.
    pub counters: Vec<Value>,
}

type Labels = Vec<(&'static str, String)>;

/// The two text formats a scraper may ask for (its `Accept` header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 (`application/openmetrics-text`): what Prometheus asks for first.
    OpenMetrics,
    /// The Prometheus text format 0.0.4: what `curl`, `promtool check metrics` and older
    /// collectors read.
    Prometheus,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Prometheus => prometheus_text::CONTENT_TYPE,
        }
    }
}

/// Shard counters that count packets handled rather than dropped (docs/cli.md `show counters`).
const NOT_DROPS: &[&str] = &["cleartext_in", "handed_over", "ike_datagrams", "keepalives"];

/// Router counters by their metric (docs/cli.md `show counters`, actors/ike/router.rs).
const IKE_REFUSALS: &[(&str, &str)] = &[
    ("refused_unknown_peer", "unknown_peer"),
    ("refused_malformed", "malformed"),
    ("refused_unknown_cookies", "unknown_cookies"),
    ("refused_aggressive", "aggressive_mode"),
    ("refused_stopping", "stopping"),
    ("refused_network_claims", "network_claimed"),
    ("dropped_peer_busy", "peer_busy"),
    ("dropped_router_busy", "router_busy"),
];
const IKE_FAILURES: &[(&str, &str)] = &[
    ("handshakes_failed_timeout", "timeout"),
    ("handshakes_failed_no_proposal_chosen", "no_proposal_chosen"),
    ("handshakes_failed_authentication", "authentication"),
    ("handshakes_failed_other", "other"),
];

fn u64_of(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn str_of(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

/// Counters already summed elsewhere: a fresh registry per scrape carries their current totals.
fn counter(total: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(total);
    c
}

fn gauge(value: u64) -> Gauge {
    let g = Gauge::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    g
}

fn counter_family(values: BTreeMap<Labels, u64>) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    for (labels, v) in values {
        f.get_or_create(&labels).inc_by(v);
    }
    f
}

fn gauge_family(values: BTreeMap<Labels, u64>) -> Family<Labels, Gauge> {
    let f = Family::<Labels, Gauge>::default();
    for (labels, v) in values {
        f.get_or_create(&labels)
            .set(i64::try_from(v).unwrap_or(i64::MAX));
    }
    f
}

impl Snapshot {
    /// The exposition in `format` (OpenMetrics ends with `# EOF`).
    pub fn render(&self, format: Format) -> String {
        let mut reg = Registry::with_prefix("ikehub");
        self.tunnels(&mut reg);
        self.sa_traffic(&mut reg);
        self.data_plane(&mut reg);
        self.ike(&mut reg);
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would leave a partial text.
        let encoded = match format {
            Format::OpenMetrics => text::encode(&mut out, &reg),
            Format::Prometheus => prometheus_text::encode(&mut out, &reg),
        };
        if encoded.is_err() {
            out.clear();
        }
        out
    }

    /// Tunnels up/down per policy, ISAKMP and IPsec SAs.
    fn tunnels(&self, reg: &mut Registry) {
        let mut tunnels: BTreeMap<Labels, u64> = BTreeMap::new();
        for p in &self.peers {
            let policy = str_of(p, "policy");
            // A tunnel is up while it has child SAs to carry traffic (manual: installed).
            let up = u64_of(p, "child_sas") > 0;
            for state in ["up", "down"] {
                *tunnels
                    .entry(vec![("policy", policy.clone()), ("state", state.into())])
                    .or_default() += u64::from(up == (state == "up"));
            }
        }
        reg.register(
            "tunnels",
            "Tunnels (manual policies, IKE peers) by policy, up while they have child SAs",
            gauge_family(tunnels),
        );
        let mut isakmp: BTreeMap<Labels, u64> = BTreeMap::new();
        for s in &self.isakmp {
            *isakmp
                .entry(vec![("policy", str_of(s, "policy"))])
                .or_default() += 1;
        }
        reg.register(
            "isakmp_sas",
            "ISAKMP (phase 1) SAs by policy",
            gauge_family(isakmp),
        );
        let mut ipsec: BTreeMap<Labels, u64> = BTreeMap::new();
        for sa in &self.sas {
            *ipsec
                .entry(vec![
                    ("policy", sa.policy.clone()),
                    ("direction", direction(&sa.direction)),
                ])
                .or_default() += 1;
        }
        reg.register(
            "ipsec_sas",
            "IPsec SAs installed in the data plane by policy and direction",
            gauge_family(ipsec),
        );
    }

    /// Per-SA packets, bytes and drops, summed per (policy, peer, direction): the SAs of one
    /// tunnel across a re-key add up; a deleted SA takes its share with it (a counter reset
    /// to Prometheus' `rate`).
    fn sa_traffic(&self, reg: &mut Registry) {
        let mut packets: BTreeMap<Labels, u64> = BTreeMap::new();
        let mut bytes: BTreeMap<Labels, u64> = BTreeMap::new();
        let mut drops: BTreeMap<Labels, u64> = BTreeMap::new();
        for sa in &self.sas {
            let key: Labels = vec![
                ("policy", sa.policy.clone()),
                ("peer", sa.peer.clone()),
                ("direction", direction(&sa.direction)),
            ];
            let add = |m: &mut BTreeMap<Labels, u64>, k: Labels, v: u64| {
                let e = m.entry(k).or_default();
                *e = e.saturating_add(v);
            };
            add(&mut packets, key.clone(), sa.packets);
            add(&mut bytes, key.clone(), sa.bytes);
            for (reason, v) in [
                ("replay", sa.replay_drops),
                ("icv_failure", sa.icv_failures),
                ("padding", sa.padding_errors),
                ("selector_mismatch", sa.selector_mismatches),
                ("other", sa.other_drops),
            ] {
                let mut k = key.clone();
                k.push(("reason", reason.into()));
                add(&mut drops, k, v);
            }
        }
        reg.register(
            "sa_packets",
            "Packets carried by the SAs of a policy and peer (in: accepted, out: sent)",
            counter_family(packets),
        );
        reg.register(
            "sa_bytes",
            "Inner bytes carried by the SAs of a policy and peer",
            counter_family(bytes),
        );
        reg.register(
            "sa_drops",
            "Packets an SA dropped, by reason",
            counter_family(drops),
        );
    }

    /// Data-plane drops before any SA, by reason, summed over the shards.
    fn data_plane(&self, reg: &mut Registry) {
        let mut drops: BTreeMap<Labels, u64> = BTreeMap::new();
        let mut handled: BTreeMap<Labels, u64> = BTreeMap::new();
        for shard in &self.counters {
            let Some(c) = shard.get("counters").and_then(Value::as_object) else {
                continue;
            };
            for (name, v) in c {
                let map = if NOT_DROPS.contains(&name.as_str()) {
                    &mut handled
                } else {
                    &mut drops
                };
                let e = map.entry(vec![("reason", name.clone())]).or_default();
                *e = e.saturating_add(v.as_u64().unwrap_or(0));
            }
        }
        // `handled` keys are packet kinds, not reasons.
        let handled: BTreeMap<Labels, u64> = handled
            .into_iter()
            .map(|(mut k, v)| {
                for l in &mut k {
                    l.0 = "kind";
                }
                (k, v)
            })
            .collect();
        reg.register(
            "dataplane_drops",
            "Packets the data plane dropped before they reached an SA, by reason",
            counter_family(drops),
        );
        reg.register(
            "dataplane_packets",
            "Packets the data plane handled, by kind (cleartext in, handed to another shard, \
             IKE on the NAT-T port, NAT keepalives)",
            counter_family(handled),
        );
    }

    /// The IKE router's counters and the sessions' exchange counters; reload results.
    fn ike(&self, reg: &mut Registry) {
        let ike = self.counters.iter().find_map(|e| e.get("ike"));
        let reloads = self.counters.iter().find_map(|e| e.get("reloads"));
        if let Some(reloads) = reloads {
            let f = Family::<Labels, Counter>::default();
            for result in ["ok", "refused"] {
                f.get_or_create(&vec![("result", result.into())])
                    .inc_by(u64_of(reloads, result));
            }
            reg.register("reloads", "Profile reloads by result", f);
        }
        // Without IKE policies there is no router: leave the IKE metrics out.
        let Some(c) = ike else { return };
        let plain: [(&str, &str, &str); 10] = [
            ("ike_datagrams", "ike_datagrams", "IKE datagrams received"),
            (
                "handshakes_started",
                "ike_handshakes_started",
                "Main-mode exchanges begun (initiator or responder)",
            ),
            (
                "handshakes_completed",
                "ike_handshakes_completed",
                "ISAKMP SAs established (phase 1 complete)",
            ),
            (
                "retransmissions",
                "ike_retransmissions",
                "IKE requests sent again for want of an answer",
            ),
            ("dpd_deaths", "ike_dpd_deaths", "Peers declared dead by DPD"),
            ("rekeys", "ike_rekeys", "Child SA pairs re-keyed"),
            (
                "half_open_evicted",
                "ike_half_open_evicted",
                "Half-open exchanges evicted to admit new ones",
            ),
            (
                "unauthenticated_failures",
                "ike_unauthenticated_failures",
                "Exchanges with initiators that never authenticated and failed",
            ),
            (
                "peers_died",
                "ike_peer_actor_failures",
                "Peer actors that died",
            ),
            (
                "ike_socket_drops",
                "ike_socket_drops",
                "Datagrams the kernel dropped at the IKE sockets (receive buffer full)",
            ),
        ];
        for (key, name, help) in plain {
            reg.register(name, help, counter(u64_of(c, key)));
        }
        let failed = Family::<Labels, Counter>::default();
        for (key, reason) in IKE_FAILURES {
            failed
                .get_or_create(&vec![("reason", (*reason).into())])
                .inc_by(u64_of(c, key));
        }
        reg.register(
            "ike_handshakes_failed",
            "Failed IKE exchanges by reason",
            failed,
        );
        let refused = Family::<Labels, Counter>::default();
        for (key, reason) in IKE_REFUSALS {
            refused
                .get_or_create(&vec![("reason", (*reason).into())])
                .inc_by(u64_of(c, key));
        }
        reg.register(
            "ike_refused",
            "IKE datagrams or child SAs refused by the router, by reason",
            refused,
        );
        reg.register(
            "ike_half_open",
            "IKE exchanges half-open now",
            gauge(u64_of(c, "half_open")),
        );
        self.ike_workers(c, reg);
    }

    /// Peer actors and CPU time per IKE worker (`[system] ike-workers`): the worker index is
    /// bounded by the profile.
    fn ike_workers(&self, c: &Value, reg: &mut Registry) {
        let workers = c.get("workers").and_then(Value::as_array);
        let mut peers: BTreeMap<Labels, u64> = BTreeMap::new();
        let cpu = Family::<Labels, Counter<f64, AtomicU64>>::default();
        for (k, w) in workers.into_iter().flatten().enumerate() {
            let labels = vec![("worker", k.to_string())];
            cpu.get_or_create(&labels)
                .inc_by(u64_of(w, "cpu_ms") as f64 / 1e3);
            peers.insert(labels, u64_of(w, "peers"));
        }
        reg.register(
            "ike_worker_peers",
            "Peer actors on each IKE worker thread now",
            gauge_family(peers),
        );
        reg.register(
            "ike_worker_cpu_seconds",
            "CPU time each IKE worker thread used",
            cpu,
        );
    }
}

/// `IN`/`OUT` as label values.
fn direction(d: &str) -> String {
    match d {
        "IN" => "in".into(),
        "OUT" => "out".into(),
        other => other.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(dir: &str, spi: u32, packets: u64) -> SaStatus {
        SaStatus {
            direction: dir.into(),
            kind: "ISAKMP".into(),
            policy: "ToBerne".into(),
            mode: "Tunnel".into(),
            replay: true,
            peer: "192.0.2.2".into(),
            ah_spi: None,
            esp_spi: Some(spi),
            ah_auth: None,
            esp_auth: Some("HMAC-SHA1".into()),
            esp_enc: Some("AES-CBC 128".into()),
            kbytes: 0,
            kbytes_limit: None,
            seconds: 0,
            seconds_limit: None,
            packets,
            bytes: packets * 100,
            replay_drops: 1,
            icv_failures: 0,
            padding_errors: 0,
            selector_mismatches: 0,
            other_drops: 0,
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            // Two inbound SAs of one tunnel across a re-key add up.
            sas: vec![sa("IN", 1, 5), sa("IN", 2, 7), sa("OUT", 3, 11)],
            peers: vec![
                serde_json::json!({"policy": "ToBerne", "peer": "192.0.2.2", "child_sas": 2}),
                serde_json::json!({"policy": "Spokes", "peer": "203.0.113.7", "child_sas": 0}),
            ],
            isakmp: vec![serde_json::json!({"policy": "ToBerne", "peer": "192.0.2.2:500"})],
            counters: vec![
                serde_json::json!({"shard": 0, "counters": {"cleartext_in": 4, "no_sa": 2}}),
                serde_json::json!({"shard": 1, "counters": {"cleartext_in": 1, "no_sa": 3}}),
                serde_json::json!({"ike": {"ike_datagrams": 9, "handshakes_failed_timeout": 2,
                                           "refused_unknown_peer": 4, "half_open": 1,
                                           "ike_socket_drops": 6,
                                           "workers": [{"peers": 3, "cpu_ms": 1500},
                                                       {"peers": 4, "cpu_ms": 250}]}}),
                serde_json::json!({"reloads": {"ok": 3, "refused": 1}}),
            ],
        }
    }

    #[test]
    fn renders_every_family_from_the_show_answers() {
        let text = snapshot().render(Format::OpenMetrics);
        for line in [
            "ikehub_tunnels{policy=\"ToBerne\",state=\"up\"} 1",
            "ikehub_tunnels{policy=\"ToBerne\",state=\"down\"} 0",
            "ikehub_tunnels{policy=\"Spokes\",state=\"down\"} 1",
            "ikehub_isakmp_sas{policy=\"ToBerne\"} 1",
            "ikehub_ipsec_sas{policy=\"ToBerne\",direction=\"in\"} 2",
            "ikehub_sa_packets_total{policy=\"ToBerne\",peer=\"192.0.2.2\",direction=\"in\"} 12",
            "ikehub_sa_packets_total{policy=\"ToBerne\",peer=\"192.0.2.2\",direction=\"out\"} 11",
            "ikehub_sa_bytes_total{policy=\"ToBerne\",peer=\"192.0.2.2\",direction=\"in\"} 1200",
            "ikehub_sa_drops_total{policy=\"ToBerne\",peer=\"192.0.2.2\",direction=\"in\",reason=\"replay\"} 2",
            "ikehub_dataplane_drops_total{reason=\"no_sa\"} 5",
            "ikehub_dataplane_packets_total{kind=\"cleartext_in\"} 5",
            "ikehub_ike_datagrams_total 9",
            "ikehub_ike_handshakes_failed_total{reason=\"timeout\"} 2",
            "ikehub_ike_handshakes_failed_total{reason=\"other\"} 0",
            "ikehub_ike_refused_total{reason=\"unknown_peer\"} 4",
            "ikehub_ike_half_open 1",
            "ikehub_ike_socket_drops_total 6",
            "ikehub_ike_worker_peers{worker=\"0\"} 3",
            "ikehub_ike_worker_peers{worker=\"1\"} 4",
            "ikehub_ike_worker_cpu_seconds_total{worker=\"0\"} 1.5",
            "ikehub_ike_worker_cpu_seconds_total{worker=\"1\"} 0.25",
            "ikehub_reloads_total{result=\"ok\"} 3",
            "ikehub_reloads_total{result=\"refused\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    /// The Prometheus 0.0.4 text names the family as its samples (what promtool checks).
    #[test]
    fn prometheus_text_format() {
        let text = snapshot().render(Format::Prometheus);
        assert!(
            text.contains("# TYPE ikehub_sa_packets_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE ikehub_tunnels gauge\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn a_daemon_without_ike_has_no_ike_families() {
        let mut s = snapshot();
        s.counters.retain(|c| c.get("ike").is_none());
        let text = s.render(Format::OpenMetrics);
        assert!(!text.contains("ikehub_ike_"), "{text}");
        assert!(text.contains("ikehub_reloads_total"), "{text}");
    }

    /// A policy name is the operator's, but the encoder must keep any text inside the quotes.
    #[test]
    fn label_values_are_escaped() {
        let mut s = Snapshot::default();
        s.peers
            .push(serde_json::json!({"policy": "a\"b\\c\nd", "child_sas": 1}));
        let text = s.render(Format::OpenMetrics);
        assert!(
            text.contains("ikehub_tunnels{policy=\"a\\\"b\\\\c\\nd\",state=\"up\"} 1"),
            "{text}"
        );
    }
}

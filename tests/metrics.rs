//! The metrics endpoint of a running daemon (docs/metrics.md): two `ikehub run` daemons with the
//! manual ToBerne pair in two namespaces, side A with `metrics = "127.0.0.1:9469"` on the
//! namespace's own loopback. The scrape is valid (`promtool check metrics`), names the tunnel,
//! and its packet counters move by at least the pings sent; the endpoint answers 404 to other
//! paths, refuses an oversized request and outlives idle connections past its limit.
//!
//! The scrapes run inside namespace A with python3 (the endpoint is loopback only). Needs root,
//! ip, ping, python3 and promtool (Debian package `prometheus`): outside CI the test skips when
//! one is missing; under `CI=true` it fails.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::netns::{A_HOST, B_HOST, wait_for_route};
use common::sa::parse_rows;
use common::tunnel::{AES128_SHA1, Encapsulation, ManualPair, POLICY, Side};
use common::{Daemon, Netns, TwoSites, daemon::show_sa_json, ping};

const TOOLS: &[&str] = &["ip", "ping", "python3", "promtool"];
const ENDPOINT: &str = "127.0.0.1:9469";
const PINGS: u32 = 10;
const TIMEOUT: Duration = Duration::from_secs(20);
/// The endpoint's connection limit (actors/metrics/mod.rs).
const MAX_CONNECTIONS: usize = 8;

/// A tiny HTTP client run inside the namespace: argv = host, port, mode, arg. Prints the
/// status line's code, a newline, then the body. Modes: `get PATH ACCEPT`, `raw BYTES` (send
/// that many bytes of junk), `flood N` (hold N idle connections, then scrape with retries once
/// they are closed; prints what the connection over the limit got, then the scrape's code).
const CLIENT: &str = r#"
import socket, sys, time
host, port, mode, arg = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
def request(data):
    s = socket.create_connection((host, port), timeout=10)
    out = b""
    try:
        s.sendall(data)
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except (ConnectionError, socket.timeout):
        pass
    s.close()
    return out
def show(resp):
    head, _, body = resp.partition(b"\r\n\r\n")
    code = head.split(b" ")[1].decode() if head else "none"
    sys.stdout.write(code + "\n" + body.decode())
if mode == "get":
    path, accept = arg
    show(request(("GET %s HTTP/1.1\r\nHost: x\r\nAccept: %s\r\n\r\n" % (path, accept)).encode()))
elif mode == "raw":
    show(request(b"G" * int(arg[0])))
elif mode == "flood":
    idle = [socket.create_connection((host, port)) for _ in range(int(arg[0]))]
    time.sleep(0.5)
    over = request(b"GET /metrics HTTP/1.1\r\n\r\n")
    sys.stdout.write("over-limit:" + (over.split(b" ")[1].decode() if over else "closed") + "\n")
    for s in idle:
        s.close()
    deadline = time.time() + 10
    while True:
        r = request(b"GET /metrics HTTP/1.1\r\n\r\n")
        if r or time.time() > deadline:
            break
        time.sleep(0.1)
    show(r)
"#;

/// (HTTP status code, body) of one client run.
fn client(ns: &Netns, args: &[&str]) -> (String, String) {
    let (host, port) = ENDPOINT.split_once(':').unwrap();
    let out = ns
        .command("python3")
        .args(["-c", CLIENT, host, port])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 in {}: {e}", ns.name()));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "client {args:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    match text.split_once('\n') {
        Some((code, body)) => (code.to_string(), body.to_string()),
        None => (text, String::new()),
    }
}

fn scrape(ns: &Netns, accept: &str) -> String {
    let (code, body) = client(ns, &["get", "/metrics", accept]);
    assert_eq!(code, "200", "GET /metrics: {body}");
    body
}

/// `promtool check metrics` reads the exposition on stdin: exit 0 means no parse error and no
/// lint problem.
fn promtool_check(text: &str) {
    let mut child = Command::new(common::find_tool("promtool").unwrap())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}\n{}{}\n--- the text:\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the sample whose name and labels start with `prefix` (`name{a="b"`), summed
/// when several match.
fn sample(text: &str, prefix: &str) -> Option<u64> {
    let values: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

fn packets(text: &str, direction: &str) -> u64 {
    let prefix = format!("ikehub_sa_packets_total{{policy=\"{POLICY}\",");
    text.lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(&format!("direction=\"{direction}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn wait_until_up(ns: &Netns, d: &Daemon, side: Side, other: Side) {
    wait_for_route(
        ns,
        ManualPair::host(side),
        ManualPair::host(other),
        "ikehub0",
        TIMEOUT,
    );
    let up = common::poll_until(TIMEOUT, || {
        let r = parse_rows(&show_sa_json(d));
        let has = |dir: &str| r.iter().any(|x| x.policy == POLICY && x.direction == dir);
        (has("IN") && has("OUT")).then_some(())
    });
    assert!(up.is_some(), "{side:?}: SAs of {POLICY} not listed");
}

#[test]
fn scrape_is_valid_and_counts_the_pings() {
    if !common::require_env_or_skip(TOOLS) {
        return;
    }
    let pair = ManualPair::new(AES128_SHA1, Encapsulation::Esp);
    let sites = TwoSites::new("metrics");
    let da = Daemon::start(&sites.a, "A", |dir| {
        pair.profile(Side::A, dir).replacen(
            "[system]\n",
            &format!("[system]\nmetrics = \"{ENDPOINT}\"\n"),
            1,
        )
    });
    let db = Daemon::start(&sites.b, "B", |dir| pair.profile(Side::B, dir));
    wait_until_up(&sites.a, &da, Side::A, Side::B);
    wait_until_up(&sites.b, &db, Side::B, Side::A);

    // Valid in both formats; the tunnel and its SAs are there.
    let before = scrape(&sites.a, "*/*");
    promtool_check(&before);
    let om = scrape(&sites.a, "application/openmetrics-text;version=1.0.0");
    assert!(om.ends_with("# EOF\n"), "OpenMetrics without # EOF:\n{om}");
    let up = format!("ikehub_tunnels{{policy=\"{POLICY}\",state=\"up\"}}");
    assert_eq!(sample(&before, &up), Some(1), "{before}");
    let sas = format!("ikehub_ipsec_sas{{policy=\"{POLICY}\"");
    assert_eq!(sample(&before, &sas), Some(2), "{before}");
    assert!(
        sample(&before, "ikehub_dataplane_drops_total{reason=\"no_sa\"}").is_some(),
        "{before}"
    );
    assert_eq!(
        sample(&before, "ikehub_reloads_total{result=\"ok\"}"),
        Some(0)
    );

    // The packet counters move with traffic: each ping is one packet out and one in.
    let (out0, in0) = (packets(&before, "out"), packets(&before, "in"));
    let loss = ping(&sites.a, A_HOST, B_HOST, PINGS);
    assert_eq!(loss, 0.0, "ping {A_HOST} -> {B_HOST} through the tunnel");
    let want = u64::from(PINGS);
    let after = common::poll_until(TIMEOUT, || {
        let t = scrape(&sites.a, "*/*");
        (packets(&t, "out") >= out0 + want && packets(&t, "in") >= in0 + want).then_some(t)
    });
    let Some(after) = after else {
        panic!(
            "packet counters did not move by {want} (before: out {out0} in {in0}):\n{}",
            scrape(&sites.a, "*/*")
        );
    };
    promtool_check(&after);
    let bytes = format!("ikehub_sa_bytes_total{{policy=\"{POLICY}\"");
    assert!(
        sample(&after, &bytes).unwrap_or(0) >= 2 * want * 84,
        "{after}"
    );

    // Anything but GET /metrics is not found; an oversized request is refused.
    let (code, _) = client(&sites.a, &["get", "/", "*/*"]);
    assert_eq!(code, "404");
    let (code, _) = client(&sites.a, &["get", "/metrics/../x", "*/*"]);
    assert_eq!(code, "404");
    let (code, _) = client(&sites.a, &["raw", "5000"]);
    assert_eq!(code, "431");
    // Idle connections up to the limit: one more is closed, and once they go the endpoint
    // serves again.
    let (over, body) = client(&sites.a, &["flood", &MAX_CONNECTIONS.to_string()]);
    assert_eq!(over, "over-limit:closed", "{body}");
    assert!(body.starts_with("200\n"), "after the flood: {body}");
    assert!(body.contains("ikehub_sa_packets_total"), "{body}");

    // Reload results: the same profile applies; a broken one is refused and counted.
    let reload = |d: &Daemon| d.cli(&["reload"]).output().expect("ikehub reload runs");
    assert!(reload(&da).status.success());
    let path = da.config_path().to_path_buf();
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{good}\n[system]\nshards = -1\n")).unwrap();
    assert!(
        !reload(&da).status.success(),
        "a broken profile was applied"
    );
    let text = scrape(&sites.a, "*/*");
    assert_eq!(
        sample(&text, "ikehub_reloads_total{result=\"ok\"}"),
        Some(1),
        "{text}"
    );
    assert_eq!(
        sample(&text, "ikehub_reloads_total{result=\"refused\"}"),
        Some(1),
        "{text}"
    );
    drop((da, db));
}

/// Two daemons keyed by IKE: the IKE families appear and count the exchange that brought the
/// tunnel up.
#[test]
fn ike_handshakes_are_counted() {
    use common::ike::{IkeProfile, Initiate, UP_TIMEOUT, wait_child_sas, wait_phase1_up};
    if !common::require_env_or_skip(TOOLS) {
        return;
    }
    const PSK: &str = "ikehub metrics pre-shared key 6d1c";
    let policy = common::ike::POLICY;
    let a = IkeProfile::site_a(PSK).initiate(Initiate::Permanent);
    let b = a.mirrored().initiate(Initiate::Never);
    let sites = TwoSites::new("metrics-ike");
    let db = Daemon::start(&sites.b, "B", |dir| b.toml(dir));
    let da = Daemon::start(&sites.a, "A", |dir| {
        a.toml(dir).replacen(
            "[system]\n",
            &format!("[system]\nmetrics = \"{ENDPOINT}\"\n"),
            1,
        )
    });
    wait_phase1_up(&da, policy, UP_TIMEOUT);
    wait_child_sas(&da, policy, UP_TIMEOUT);
    let text = scrape(&sites.a, "*/*");
    promtool_check(&text);
    let n = |prefix: &str| sample(&text, prefix).unwrap_or(0);
    assert!(n("ikehub_ike_handshakes_started_total ") >= 1, "{text}");
    assert!(n("ikehub_ike_handshakes_completed_total ") >= 1, "{text}");
    assert!(n("ikehub_ike_datagrams_total ") >= 3, "{text}");
    assert_eq!(
        n(&format!("ikehub_isakmp_sas{{policy=\"{policy}\"}}")),
        1,
        "{text}"
    );
    assert_eq!(
        n(&format!(
            "ikehub_tunnels{{policy=\"{policy}\",state=\"up\"}}"
        )),
        1,
        "{text}"
    );
    assert!(
        text.contains("ikehub_ike_handshakes_failed_total{reason=\"timeout\"}"),
        "{text}"
    );
    drop((da, db));
}

/// Every metric the example dashboard queries is one docs/metrics.md documents (a renamed
/// metric must take the dashboard along).
#[test]
fn dashboard_names_are_documented() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard = std::fs::read_to_string(root.join("packaging/grafana-ikehub.json")).unwrap();
    let docs = std::fs::read_to_string(root.join("docs/metrics.md")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    assert!(json["panels"].as_array().is_some_and(|p| !p.is_empty()));
    let names = |text: &str| -> std::collections::BTreeSet<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("ikehub_"))
            .map(str::to_string)
            .collect()
    };
    let documented = names(&docs);
    let used = names(&dashboard);
    assert!(used.len() >= 10, "{used:?}");
    let missing: Vec<_> = used.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "dashboard metrics not in docs/metrics.md: {missing:?}"
    );
}

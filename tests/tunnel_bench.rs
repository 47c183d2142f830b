//! `benches/tunnel.sh`, the tunnel benchmark of issue 12, in its smoke form: `--seconds 1
//! --quick --json` (plain veth and one ikehub ESP-in-UDP tunnel). These tests check that the
//! script builds its namespaces, carries traffic in every case, reports it in its JSON and
//! removes everything it created, also when a tunnel fails and on Ctrl-C. They never check a
//! speed: the figures are for the benchmark to print, and this machine is shared.
//!
//! Needs root and ip, iperf3, ping, python3 (and strongSwan for its case); outside CI the tests
//! skip (with a message) when those are missing, under `CI=true` they fail.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use common::{TempDir, ikehub_bin, poll_until, stop_child, wait_timeout};

const TOOLS: &[&str] = &["ip", "iperf3", "ping", "python3", "timeout"];
/// Bound on a whole `--seconds 1 --quick` run (two cases, two 1 s measurements each, tunnel
/// set-up and tear-down) on a slow shared machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);
/// The smoke run. UDP at a modest rate: the test checks that traffic flows, and a debug build
/// of the daemon (the default without `IKEHUB_BIN`) relays some tens of Mbit/s; a 2 Gbit/s
/// flood would queue seconds of packets in it and stall the run.
const QUICK: &[&str] = &["--seconds", "1", "--quick", "--udp-rate", "50M", "--json"];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/tunnel.sh")
}

/// The script's namespaces are `ikh-<its pid>-<n>-<tag>`.
fn namespaces_of(pid: u32) -> Vec<String> {
    let prefix = format!("ikh-{pid}-");
    let out = Command::new("ip")
        .args(["netns", "list"])
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// A running `benches/tunnel.sh`. Drop kills it if it is still running and removes any
/// namespace it left behind (after a SIGKILL it cannot clean up itself), so a failing
/// assertion leaves nothing behind either.
struct BenchRun {
    child: Option<Child>,
    pid: u32,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

impl BenchRun {
    fn start(ikehub: &Path, args: &[&str]) -> BenchRun {
        let mut child = Command::new("bash")
            .arg(script())
            .args(args)
            .env("IKEHUB_BIN", ikehub)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
        let drain = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = r.read_to_string(&mut s);
                s
            })
        };
        let stdout = child.stdout.take().map(|o| drain(Box::new(o)));
        let stderr = child.stderr.take().map(|e| drain(Box::new(e)));
        BenchRun {
            pid: child.id(),
            child: Some(child),
            stdout,
            stderr,
        }
    }

    /// Waits up to [`RUN_TIMEOUT`]; returns the exit status (None on timeout), stdout, stderr.
    fn finish(&mut self) -> (Option<ExitStatus>, String, String) {
        let status = self
            .child
            .as_mut()
            .and_then(|c| wait_timeout(c, RUN_TIMEOUT));
        let out = self.stdout.take().and_then(|h| h.join().ok());
        let err = self.stderr.take().and_then(|h| h.join().ok());
        (status, out.unwrap_or_default(), err.unwrap_or_default())
    }
}

impl Drop for BenchRun {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, libc::SIGKILL, Duration::from_secs(5));
        }
        for ns in namespaces_of(self.pid) {
            for pid in Command::new("ip")
                .args(["netns", "pids", &ns])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                // SAFETY: kill(2) on a process inside a namespace the script under test made.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
    }
}

/// The script removed every namespace it made (its own clean-up, not [`BenchRun`]'s drop).
fn assert_cleaned_up(pid: u32) {
    let left = namespaces_of(pid);
    assert!(
        left.is_empty(),
        "tunnel.sh left namespaces behind: {left:?}"
    );
}

fn parse_json(stdout: &str, stderr: &str) -> Value {
    serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("tunnel.sh --json printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

fn cases(json: &Value) -> &Vec<Value> {
    json["cases"]
        .as_array()
        .unwrap_or_else(|| panic!("no cases array: {json:#}"))
}

#[test]
fn quick_run_carries_traffic_in_every_case_and_cleans_up() {
    if !common::require_env_or_skip(TOOLS) {
        return;
    }
    let mut run = BenchRun::start(&ikehub_bin(), QUICK);
    let (status, stdout, stderr) = run.finish();
    assert!(
        status.is_some_and(|s| s.success()),
        "tunnel.sh exited {status:?}:\n{stdout}\n{stderr}"
    );
    let json = parse_json(&stdout, &stderr);
    let cases = cases(&json);
    // veth and the ikehub tunnel, TCP 1 stream and UDP each.
    assert_eq!(cases.len(), 4, "{json:#}");
    for kind in ["veth", "ikehub"] {
        for traffic in ["tcp-1", "udp"] {
            let case = cases
                .iter()
                .find(|c| c["kind"] == kind && c["traffic"] == traffic)
                .unwrap_or_else(|| panic!("no {kind} {traffic} case: {json:#}"));
            assert_eq!(case["status"], "ok", "{case:#}");
            let gbps = case["gbps"].as_f64().unwrap_or(0.0);
            let bytes = case["bytes"].as_u64().unwrap_or(0);
            assert!(gbps > 0.0 && bytes > 0, "no traffic: {case:#}");
            assert!(case["machine_busy_s"].as_f64().is_some(), "{case:#}");
        }
    }
    // The relay's CPU is read from the ikehub processes of both ends, and the ikehub row is
    // compared with the veth row of its traffic.
    let ikehub_tcp = cases
        .iter()
        .find(|c| c["kind"] == "ikehub" && c["traffic"] == "tcp-1")
        .expect("checked above");
    assert!(
        ikehub_tcp["relay_cpu_s"].as_f64().is_some(),
        "{ikehub_tcp:#}"
    );
    assert!(
        ikehub_tcp["x_veth"].as_f64().is_some_and(|x| x > 0.0),
        "{ikehub_tcp:#}"
    );
    assert_eq!(json["goals"].as_array().map(Vec::len), Some(3), "{json:#}");
    // The senders ran with the congestion control new namespaces inherit, and the report
    // names it.
    let system = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .expect("read the system's TCP congestion control");
    assert_eq!(
        json["tcp_congestion_control"],
        format!("{} (the system default)", system.trim()),
        "{json:#}"
    );
    assert_cleaned_up(run.pid);
}

/// A daemon that never comes up: the run goes on, reports the case as failed, exits 1 and
/// still removes every namespace and process. Run twice (`--repeat 2`): the veth row is the
/// median of its two runs and the failed row says in how many runs it failed.
#[test]
fn failed_tunnel_is_reported_and_cleaned_up() {
    if !common::require_env_or_skip(TOOLS) {
        return;
    }
    // A stand-in binary that accepts every profile but whose daemon exits at once.
    let dir = TempDir::new("bench-fake");
    let fake = dir.join("ikehub");
    std::fs::write(&fake, "#!/bin/sh\n[ \"$1\" = check ] && exit 0\nexit 3\n").expect("write");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let mut run = BenchRun::start(
        &fake,
        // reno is built into every kernel: the senders run it and the report says so.
        &[
            "--seconds",
            "1",
            "--quick",
            "--repeat",
            "2",
            "--congestion",
            "reno",
            "--json",
        ],
    );
    let (status, stdout, stderr) = run.finish();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "tunnel.sh should exit 1 when a case fails:\n{stdout}\n{stderr}"
    );
    let json = parse_json(&stdout, &stderr);
    let cases = cases(&json);
    let veth = cases
        .iter()
        .find(|c| c["kind"] == "veth" && c["traffic"] == "tcp-1")
        .unwrap_or_else(|| panic!("no veth tcp-1 row: {json:#}"));
    assert_eq!(
        veth["status"], "ok",
        "the veth case should still run: {veth:#}"
    );
    assert_eq!(
        json["tcp_congestion_control"], "reno (--congestion)",
        "{json:#}"
    );
    let runs: Vec<f64> = veth["gbps_runs"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    assert_eq!(runs.len(), 2, "two runs of the veth case: {veth:#}");
    let median = veth["gbps"].as_f64().unwrap_or(-1.0);
    assert!(
        (median - (runs[0] + runs[1]) / 2.0).abs() < 1e-6,
        "the median of two runs is their mean: {veth:#}"
    );
    let ikehub = cases
        .iter()
        .find(|c| c["kind"] == "ikehub")
        .unwrap_or_else(|| panic!("no ikehub row: {json:#}"));
    assert_eq!(ikehub["status"], "failed", "{ikehub:#}");
    assert!(
        ikehub["note"]
            .as_str()
            .is_some_and(|n| n.contains("2 of 2 runs")),
        "{ikehub:#}"
    );
    assert_cleaned_up(run.pid);
}

/// Ctrl-C (SIGINT) in the middle of a measurement: the script stops within its bounds, exits
/// 130 and removes its namespaces and processes.
#[test]
fn interrupted_run_cleans_up() {
    if !common::require_env_or_skip(TOOLS) {
        return;
    }
    let mut run = BenchRun::start(
        &ikehub_bin(),
        &["--seconds", "60", "--quick", "--udp-rate", "50M", "--json"],
    );
    // Wait until the first measurement runs (its namespaces exist and an iperf3 is inside).
    let measuring = poll_until(Duration::from_secs(60), || {
        namespaces_of(run.pid).iter().find_map(|ns| {
            let pids = Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .ok()?;
            (!pids.stdout.is_empty()).then_some(())
        })
    });
    assert!(measuring.is_some(), "tunnel.sh never started measuring");
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(run.pid as i32, libc::SIGINT) };
    let (status, stdout, stderr) = run.finish();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(130),
        "tunnel.sh should stop with 130 on SIGINT:\n{stdout}\n{stderr}"
    );
    assert_cleaned_up(run.pid);
}

/// The strongSwan <-> strongSwan case (charon with kernel-libipsec in each namespace) comes up
/// and carries traffic, with the CPU of both charons read.
#[test]
fn strongswan_case_carries_traffic() {
    if !common::strongswan::require_strongswan_or_skip(TOOLS) {
        return;
    }
    let mut run = BenchRun::start(
        &ikehub_bin(),
        &[
            "--seconds",
            "1",
            "--cases",
            "strongswan",
            "--udp-rate",
            "50M",
            "--json",
        ],
    );
    let (status, stdout, stderr) = run.finish();
    assert!(
        status.is_some_and(|s| s.success()),
        "tunnel.sh exited {status:?}:\n{stdout}\n{stderr}"
    );
    let json = parse_json(&stdout, &stderr);
    let cases = cases(&json);
    assert_eq!(cases.len(), 3, "TCP 1 and 4 streams and UDP: {json:#}");
    for case in cases {
        assert_eq!(case["kind"], "strongswan", "{case:#}");
        assert_eq!(case["status"], "ok", "{case:#}");
        assert!(
            case["gbps"].as_f64().unwrap_or(0.0) > 0.0 && case["bytes"].as_u64().unwrap_or(0) > 0,
            "no traffic: {case:#}"
        );
        assert!(case["relay_cpu_s"].as_f64().is_some(), "{case:#}");
    }
    assert_cleaned_up(run.pid);
}

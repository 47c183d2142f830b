//! A bounded iperf3 run between two namespaces.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use super::{Netns, stop_child, wait_timeout};

/// An `iperf3 -s` in a namespace, killed on drop.
pub struct IperfServer {
    child: Option<Child>,
}

impl IperfServer {
    /// Starts a one-shot server bound to `bind` and returns once it is listening.
    pub fn start(ns: &Netns, bind: &str) -> IperfServer {
        let mut child = ns
            .command("iperf3")
            .args(["-s", "-1", "--forceflush", "-B", bind])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start iperf3 server: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let server = IperfServer { child: Some(child) };
        loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains("Server listening") => return server,
                Ok(_) => {}
                Err(_) => panic!("iperf3 server on {bind} in {} did not start", ns.name()),
            }
        }
    }
}

impl Drop for IperfServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, libc::SIGKILL, Duration::from_secs(5));
        }
    }
}

/// Result of a client run.
#[derive(Debug, Clone, PartialEq)]
pub struct IperfResult {
    pub bytes_received: u64,
    pub bits_per_second: f64,
}

/// Runs `iperf3 -c server -B bind -t seconds -J` in `ns` (TCP), bounded by a hard deadline of
/// `seconds + 20` s. Returns `Err` with iperf3's output if it failed or timed out.
pub fn iperf3_client(
    ns: &Netns,
    bind: &str,
    server: &str,
    seconds: u32,
) -> Result<IperfResult, String> {
    run_client(ns, bind, server, &["-t", &seconds.to_string()], seconds)
}

/// Like [`iperf3_client`], but sends `bytes` (`-n`) at 20 Mbit/s at most (`-b`) instead of
/// running for a time: a run whose every packet a capture keeps (a burst at full speed
/// overruns tcpdump's buffer) and tshark can check. Bounded by a deadline of 30 s.
pub fn iperf3_client_bytes(
    ns: &Netns,
    bind: &str,
    server: &str,
    bytes: u64,
) -> Result<IperfResult, String> {
    run_client(
        ns,
        bind,
        server,
        &["-n", &bytes.to_string(), "-b", "20M"],
        10,
    )
}

fn run_client(
    ns: &Netns,
    bind: &str,
    server: &str,
    amount: &[&str],
    seconds: u32,
) -> Result<IperfResult, String> {
    let mut child = ns
        .command("iperf3")
        .args(["-c", server, "-B", bind, "-J"])
        .args(amount)
        .args(["--connect-timeout", "5000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start iperf3 client: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let status = wait_timeout(&mut child, Duration::from_secs(u64::from(seconds) + 20));
    let _ = stop_child(&mut child, libc::SIGKILL, Duration::from_secs(1));
    let out = reader.join().unwrap_or_default();
    let Some(status) = status else {
        return Err(format!("iperf3 client timed out; output:\n{out}"));
    };
    let json: Value =
        serde_json::from_str(&out).map_err(|e| format!("iperf3 -J output ({e}):\n{out}"))?;
    if !status.success() || json.get("error").is_some() {
        return Err(format!("iperf3 client failed ({status}):\n{out}"));
    }
    let sum = &json["end"]["sum_received"];
    Ok(IperfResult {
        bytes_received: sum["bytes"].as_u64().unwrap_or(0),
        bits_per_second: sum["bits_per_second"].as_f64().unwrap_or(0.0),
    })
}

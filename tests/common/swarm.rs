//! An `ikehub loadgen` swarm against an `ikehub run` hub in one namespace (tests/loadgen.rs,
//! tests/hub_restart.rs, tests/reload_live.rs): the hub on 127.0.0.1 with one template policy,
//! the spokes on their own 127.1.x.y addresses, which `lo` answers for without any address
//! setup (the whole 127.0.0.0/8 is local).

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::ike::peer_rows;
use super::strongswan::output_with_timeout;
use super::{Daemon, Netns, TempDir, ikehub_bin};

pub const PSK: &str = "ikehub loadgen pre-shared key 5c1e";
pub const HUB_NET: &str = "198.51.100.0/24";
/// Bound on the swarm's exit after its stop (it gives its spokes 5 s to send their deletes).
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The swarm of the 100-spoke tests (tests/loadgen.rs, hub_restart.rs, reload_live.rs):
/// spokes 127.1.0.1-127.1.0.100 against the hub on 127.0.0.1, group 2 (cheap on a shared
/// machine), 50 new exchanges a second with at most 20 in flight, held 600 s, longer than any
/// of the tests waits: each stops the swarm itself.
pub const SWARM_100: [&str; 16] = [
    "--hub",
    "127.0.0.1",
    "--spokes",
    "100",
    "--sources",
    "127.1.0.1-127.1.0.100",
    "--ike-group",
    "2",
    "--rate",
    "50",
    "--max-in-flight",
    "20",
    "--hold",
    "600",
    "--timeout",
    "600",
];

/// A hub responding to every spoke of `block` with one template policy (responder only, both
/// DH groups the tests use, NAT-T on, no routes: nothing is forwarded).
pub fn hub_profile(dir: &Path, block: &str) -> String {
    format!(
        "[system]\ncontrol-socket = \"{sock}\"\nshards = 1\n\n\
         [interface.wan]\naddress = \"127.0.0.1\"\n\n\
         [tunnel-device]\nname = \"ikehub0\"\nmtu = 1400\nroutes = false\n\n\
         [ipsec-transform.AES128_SHA1]\nesp-encryption = \"aes-cbc-128\"\n\
         esp-authentication = \"hmac-sha1\"\n\n\
         [isakmp-transform.G2]\nencryption = \"aes-cbc-128\"\nhash = \"sha1\"\ndh-group = 2\n\n\
         [isakmp-transform.G14]\nencryption = \"aes-cbc-128\"\nhash = \"sha1\"\ndh-group = 14\n\n\
         [ipsec-policy-isakmp.Spokes]\ninterface = \"wan\"\npeer = \"{block}\"\n\
         preshared-key = \"{PSK}\"\nisakmp-transform = [\"G2\", \"G14\"]\n\
         ipsec-transform = [\"AES128_SHA1\"]\ninitiate = \"never\"\nnat-traversal = true\n\
         protected-network = [ {{ local = \"{HUB_NET}\", remote = \"{block}\" }} ]\n",
        sock = dir.join("ikehub.sock").display(),
    )
}

/// Starts `ikehub loadgen ARGS --json` in `ns` with the test's PSK; the
/// namespace guard kills it if the test fails first.
pub fn spawn_loadgen(ns: &Netns, psk_dir: &TempDir, args: &[&str]) -> Child {
    let psk = psk_dir.join("psk");
    std::fs::write(&psk, format!("{PSK}\n")).expect("write the PSK file");
    ns.command(ikehub_bin())
        .args(["loadgen", "--remote", HUB_NET, "--json"])
        .arg("--psk-file")
        .arg(&psk)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ikehub loadgen")
}

/// Waits for the swarm's exit and parses its report; panics with its output otherwise.
pub fn report(child: Child) -> (Option<i32>, Value) {
    report_within(child, EXIT_TIMEOUT)
}

/// Interrupts the swarm (SIGINT: it deletes the tunnels it holds, then reports) and waits for
/// its report like [`report`].
pub fn interrupt(child: Child) -> (Option<i32>, Value) {
    // SAFETY: kill(2) on our own child, not yet reaped (`report` reaps it).
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    report(child)
}

pub fn report_within(child: Child, timeout: Duration) -> (Option<i32>, Value) {
    let out = output_with_timeout(child, timeout).expect("ikehub loadgen did not exit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let v: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("loadgen --json is not JSON ({e}):\n{stdout}\n{stderr}"));
    eprintln!("loadgen progress:\n{stderr}");
    (out.status.code(), v)
}

pub fn count(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("report has no count `{key}`: {v:#}"))
}

/// Spokes whose tunnel the hub shows up (a peer row with a child SA pair).
pub fn hub_tunnels(hub: &Daemon) -> usize {
    peer_rows(hub)
        .iter()
        .filter(|r| r.child_sas.unwrap_or(0) > 0)
        .count()
}

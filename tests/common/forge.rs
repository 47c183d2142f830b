//! Forged IKE on the wire: main-mode message 1s that ikehub's own initiator builds (a real
//! offer; no secret is needed to send one), sent by a raw-socket (IP_HDRINCL) sender in a
//! namespace with any source address and port. Every sender is bounded in count and time.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Instant;

use super::Netns;
use super::ike::IkeProfile;

/// Main-mode message 1 that `profile`'s policy would send to its peer.
pub fn main_mode_1(profile: &IkeProfile, dir: &Path) -> Vec<u8> {
    let path = dir.join("forger.toml");
    std::fs::write(&path, profile.toml(dir)).expect("write the forger's profile");
    let loaded = ikehub::config::load(&path).unwrap_or_else(|e| panic!("profile: {e:?}"));
    let policy = &loaded.profiles.isakmp_policies[&profile.policy];
    let iface = &loaded.profiles.interfaces[&policy.interface];
    let config = Arc::new(ikehub::ike::PeerConfig::from_policy(policy, iface));
    let local: SocketAddr = format!("{}:500", profile.local_wan).parse().unwrap();
    let peer: SocketAddr = format!("{}:500", profile.peer).parse().unwrap();
    let mut s = ikehub::ike::IkeSession::new_initiator(
        config,
        local,
        peer,
        Instant::now(),
        Box::new(rand::make_rng::<rand::rngs::StdRng>()),
        Arc::new(ikehub::ike::RandomSpis),
    );
    s.poll_transmit().expect("message 1").bytes
}

/// The sender's common part: `send(src_bytes, sport)` puts `msg` with a fresh random initiator
/// cookie in a forged IPv4/UDP datagram to `dst` port 500.
fn prelude(dst: &str, msg: &[u8]) -> String {
    format!(
        "import socket, struct, os, time\n\
         msg = bytes.fromhex('{hex}')\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)\n\
         dst = socket.inet_aton('{dst}')\n\
         def send(src, sport):\n\
         \x20   body = os.urandom(8) + msg[8:]\n\
         \x20   udp = struct.pack('>HHHH', sport, 500, 8 + len(body), 0) + body\n\
         \x20   ip = struct.pack('>BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src, dst)\n\
         \x20   s.sendto(ip + udp, ('{dst}', 0))\n",
        hex = super::hex(msg),
    )
}

fn spawn_python(ns: &Netns, script: &str) -> Child {
    ns.command("python3")
        .args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs")
}

/// Sends `msg` to `dst` following `plan`: (source address, source port, count, seconds between
/// datagrams); a source port of 40000 or more counts up per datagram.
pub fn spawn_forger(ns: &Netns, dst: &str, msg: &[u8], plan: &[(&str, u16, u32, f64)]) -> Child {
    let plan: Vec<String> = plan
        .iter()
        .map(|(src, port, n, every)| format!("('{src}', {port}, {n}, {every})"))
        .collect();
    let script = format!(
        "{prelude}\
         for src, sport, n, every in [{plan}]:\n\
         \x20   for i in range(n):\n\
         \x20       send(socket.inet_aton(src), sport + (i if sport >= 40000 else 0))\n\
         \x20       time.sleep(every)\n\
         print(sum(p[2] for p in [{plan}]))\n",
        prelude = prelude(dst, msg),
        plan = plan.join(", "),
    );
    spawn_python(ns, &script)
}

/// Sends `rate` datagrams a second for `seconds` to `dst`, from `sources` forged addresses
/// `prefix.(first + k)` and ports spread over 1024-61023.
pub fn spawn_flood(
    ns: &Netns,
    dst: &str,
    msg: &[u8],
    (rate, seconds): (u32, u32),
    (prefix, first, sources): ([u8; 3], u8, u32),
) -> Child {
    let script = format!(
        "{prelude}\
         rate, seconds, sources = {rate}, {seconds}, {sources}\n\
         t0 = time.monotonic(); sent = 0\n\
         while time.monotonic() - t0 < seconds:\n\
         \x20   due = int((time.monotonic() - t0) * rate)\n\
         \x20   while sent < due:\n\
         \x20       send(bytes([{a}, {b}, {c}, {first} + sent % sources]), 1024 + (sent * 7919) % 60000)\n\
         \x20       sent += 1\n\
         \x20   time.sleep(0.002)\n\
         print(sent)\n",
        prelude = prelude(dst, msg),
        a = prefix[0],
        b = prefix[1],
        c = prefix[2],
    );
    spawn_python(ns, &script)
}

/// Waits for a sender; returns how many datagrams it sent.
pub fn finish(child: Child) -> u64 {
    let out = child.wait_with_output().expect("forger finishes");
    assert!(
        out.status.success(),
        "forger failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

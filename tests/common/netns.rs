//! Network namespace guards and the two-site topology of the manual tunnel tests.
//!
//! ```text
//!   netns A                                   netns B
//!   lo: 198.51.100.1/32                       lo: 203.0.113.1/32
//!   wan0: 192.0.2.1/24  <──── veth ────>      wan0: 192.0.2.2/24
//! ```
//!
//! The kernel here has no ESP, netem or dummy interfaces: protected hosts are addresses on `lo`.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::{output_ok, run_ok, unique_name};

/// A network namespace; on drop every process still inside it is killed and it is deleted
/// (which also destroys its end of any veth pair).
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `ikh-<pid>-<n>-<tag>` with `lo` up.
    pub fn new(tag: &str) -> Netns {
        let name = unique_name(tag);
        run_ok("ip", ["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME program`, ready for arguments.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `program args` inside the namespace; panics with the output if it fails.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let out = output_ok(self.command(program).args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ip -n NAME args...`; panics on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = run_ok("ip", ["-n", &self.name].iter().chain(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Puts `addr` (e.g. "198.51.100.1/32") on `lo`.
    pub fn add_lo_address(&self, addr: &str) {
        self.ip(&["addr", "add", addr, "dev", "lo"]);
    }

    /// Process ids currently running in the namespace.
    pub fn pids(&self) -> Vec<i32> {
        Command::new("ip")
            .args(["netns", "pids", &self.name])
            .stdin(Stdio::null())
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Guards of daemons and captures normally ended their processes already; this is the
        // safety net for anything they missed, so the namespace can really go away.
        for _ in 0..50 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // SAFETY: kill(2); these pids live in the namespace this test created.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "warning: ip netns del {} failed: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("warning: ip netns del {}: {e}", self.name),
        }
    }
}

/// A veth pair named `dev` on both ends, created directly inside the two namespaces (no name
/// clash in the root namespace), with an address on each end and both ends up.
pub fn veth_pair(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str, dev: &str) {
    run_ok(
        "ip",
        [
            "link",
            "add",
            dev,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            dev,
            "netns",
            b.name(),
        ],
    );
    for (ns, addr) in [(a, a_addr), (b, b_addr)] {
        ns.ip(&["addr", "add", addr, "dev", dev]);
        ns.ip(&["link", "set", dev, "up"]);
    }
}

/// Addresses of the two-site topology (RFC 5737 ranges only).
pub const A_WAN: &str = "192.0.2.1";
pub const B_WAN: &str = "192.0.2.2";
pub const A_HOST: &str = "198.51.100.1";
pub const B_HOST: &str = "203.0.113.1";
pub const A_NET: &str = "198.51.100.0/24";
pub const B_NET: &str = "203.0.113.0/24";
/// The veth device name, the same in both namespaces.
pub const WAN_DEV: &str = "wan0";

/// Namespaces A and B joined by a veth (192.0.2.1/24 ↔ 192.0.2.2/24), with the protected host
/// addresses 198.51.100.1/32 on A's `lo` and 203.0.113.1/32 on B's `lo`.
pub struct TwoSites {
    pub a: Netns,
    pub b: Netns,
}

impl TwoSites {
    pub fn new(tag: &str) -> TwoSites {
        let a = Netns::new(&format!("{tag}-a"));
        let b = Netns::new(&format!("{tag}-b"));
        veth_pair(
            &a,
            &format!("{A_WAN}/24"),
            &b,
            &format!("{B_WAN}/24"),
            WAN_DEV,
        );
        a.add_lo_address(&format!("{A_HOST}/32"));
        b.add_lo_address(&format!("{B_HOST}/32"));
        for ns in [&a, &b] {
            cut_gso_before_the_wire(ns, WAN_DEV);
        }
        TwoSites { a, b }
    }

    /// Sets the MTU of the WAN link on both ends.
    pub fn set_wan_mtu(&self, mtu: u16) {
        for ns in [&self.a, &self.b] {
            ns.ip(&["link", "set", WAN_DEV, "mtu", &mtu.to_string()]);
        }
    }
}

/// Makes `dev` put on the wire what a NIC would: one datagram per UDP GSO segment. A veth
/// passes a `UDP_SEGMENT` send to the peer namespace in one piece (the receiving kernel
/// segments it on delivery), so a capture on it would see one datagram holding several ESP
/// packets. With `gso_max_segs 1` the kernel segments every GSO packet in software before the
/// device (net/core/dev.c `gso_features_check`), so captures see each segment.
pub fn cut_gso_before_the_wire(ns: &Netns, dev: &str) {
    ns.run("ip", &["link", "set", "dev", dev, "gso_max_segs", "1"]);
}

/// Pings `dst` from `src` inside `ns`, exactly `count` echo requests 50 ms apart, and returns
/// the loss in percent (100.0 when ping could not send at all, e.g. no route). Bounded: the
/// last request waits at most 1 s for its reply. No `-w`: with a deadline ping sends until it
/// has `count` replies, so a reply that came late on a loaded machine made it send one request
/// more and broke the tests that count the SAs' packets.
pub fn ping(ns: &Netns, src: &str, dst: &str, count: u32) -> f64 {
    let out = ns
        .command("ping")
        .args(["-n", "-q", "-i", "0.05", "-W", "1"])
        .args(["-c", &count.to_string()])
        .args(["-I", src, dst])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ping in {}: {e}", ns.name()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let loss = parse_ping_loss(&stdout);
    if loss.is_none() {
        eprintln!(
            "ping {src} -> {dst} in {}: no statistics ({}):\n{stdout}{}",
            ns.name(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    loss.unwrap_or(100.0)
}

/// "20 packets transmitted, 20 received, 0% packet loss, time 951ms" -> 0.0
pub fn parse_ping_loss(stdout: &str) -> Option<f64> {
    let line = stdout.lines().find(|l| l.contains("packet loss"))?;
    let field = line.split(',').find(|f| f.contains("packet loss"))?;
    field.trim().split('%').next()?.trim().parse().ok()
}

/// Waits until `ns` routes `dst` (from `src`) through `dev`, e.g. the daemon's TUN device once
/// it has installed its routes. Panics with the routing table after `timeout`.
pub fn wait_for_route(ns: &Netns, src: &str, dst: &str, dev: &str, timeout: Duration) {
    let needle = format!("dev {dev} ");
    let found = super::poll_until(timeout, || {
        let out = Command::new("ip")
            .args(["-n", ns.name(), "route", "get", dst, "from", src])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        (out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&needle))
            .then_some(())
    });
    if found.is_none() {
        let routes = Command::new("ip")
            .args(["-n", ns.name(), "route", "show", "table", "all"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let links = Command::new("ip")
            .args(["-n", ns.name(), "-br", "addr"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        panic!(
            "no route {src} -> {dst} via {dev} in {} after {timeout:?}\nlinks:\n{links}\nroutes:\n{routes}",
            ns.name()
        );
    }
}

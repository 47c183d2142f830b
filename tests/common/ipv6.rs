//! IPv6 inner traffic over the IPv4 two-site topology (issue 11): the protected hosts get an
//! IPv6 address each on `lo` (documentation prefix 2001:db8::/32, RFC 3849), the outer
//! addresses stay the RFC 5737 ones of [`TwoSites`].
//!
//! ```text
//!   netns A                                   netns B
//!   lo: 198.51.100.1/32, 2001:db8:a::1/128    lo: 203.0.113.1/32, 2001:db8:b::1/128
//!       2001:db8:c::1/128 (outside A_NET6)
//!   wan0: 192.0.2.1/24  <──── veth ────>      wan0: 192.0.2.2/24
//! ```

use std::path::Path;

use super::netns::{A_HOST, A_NET, B_HOST, B_NET};
use super::tunnel::{ManualPair, Side};
use super::{Netns, TwoSites};

pub const A_HOST6: &str = "2001:db8:a::1";
pub const B_HOST6: &str = "2001:db8:b::1";
pub const A_NET6: &str = "2001:db8:a::/48";
pub const B_NET6: &str = "2001:db8:b::/48";
/// An address on A's `lo` that is in no network B accepts from A: a packet from it that A
/// puts into the tunnel must fail B's selector check (RFC 4301 §5.2).
pub const A_STRAY6: &str = "2001:db8:c::1";
/// A local network of A that covers both A_NET6 and A_STRAY6 (A's side of the asymmetric
/// manual profile of the selector case).
pub const A_WIDE6: &str = "2001:db8::/32";

/// [`TwoSites`] with the IPv6 protected hosts (and A's stray address) on `lo`. `nodad`: the
/// addresses are usable at once (no duplicate address detection wait).
pub fn two_sites6(tag: &str) -> TwoSites {
    let sites = TwoSites::new(tag);
    for (ns, addrs) in [(&sites.a, &[A_HOST6, A_STRAY6][..]), (&sites.b, &[B_HOST6])] {
        for a in addrs {
            ns.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{a}/128"),
                "dev",
                "lo",
                "nodad",
            ]);
        }
    }
    sites
}

/// Pings `dst` from `src` (IPv6) inside `ns`: exactly `count` echo requests 50 ms apart (no
/// `-w`, which would keep sending until `count` replies came) with `size` bytes of data, and
/// `-M do` (never fragmented by the sender, so a packet that does not fit gets a Packet Too
/// Big instead). Returns the loss in percent and ping's output. Bounded: `count` x 50 ms plus
/// one second for the last reply.
pub fn ping6_exact(ns: &Netns, src: &str, dst: &str, count: u32, size: u32) -> (f64, String) {
    let out = ns
        .command("ping")
        .args(["-6", "-n", "-i", "0.05", "-W", "1", "-M", "do"])
        .args(["-s", &size.to_string()])
        .args(["-c", &count.to_string()])
        .args(["-I", src, dst])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ping -6 in {}: {e}", ns.name()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (super::netns::parse_ping_loss(&text).unwrap_or(100.0), text)
}

/// Pings `dst` from `src` (IPv4) inside `ns` like [`ping6_exact`], but with `-M dont`: DF
/// clear, so a tunnel whose outer packet would not fit the path must fragment rather than
/// refuse it (RFC 791, RFC 4459). Returns the loss in percent and ping's output.
pub fn ping4_no_df(ns: &Netns, src: &str, dst: &str, count: u32, size: u32) -> (f64, String) {
    let out = ns
        .command("ping")
        .args(["-4", "-n", "-i", "0.05", "-W", "1", "-M", "dont"])
        .args(["-s", &size.to_string()])
        .args(["-c", &count.to_string()])
        .args(["-I", src, dst])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ping -4 in {}: {e}", ns.name()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (super::netns::parse_ping_loss(&text).unwrap_or(100.0), text)
}

/// First port of the range [`nat_source_ports`] maps A's IKE ports to.
pub const NAT_PORTS: u16 = 40000;

/// Makes A's namespace a port-translating NAT of its own IKE traffic: UDP from ports 500 and
/// 4500 leaving `wan0` gets a source port from 40000-49999 (same address, nftables `snat`,
/// IPv4 or IPv6 by `wan6`). NAT-D (RFC 3947 §3.2) then finds A behind a NAT, so IKEv1 moves
/// to port 4500 and both daemons carry their SAs' ESP in UDP (RFC 3948): the only way an
/// IKE-keyed pair encapsulates (ikehub has no "force encapsulation" knob), and a NAT over
/// IPv6 is as legitimate a cause as one over IPv4 (the NAT-D hashes cover the IPv6 address
/// and port). The rule goes with the namespace.
pub fn nat_source_ports(ns: &Netns, wan6: bool) {
    let (family, addr) = if wan6 {
        ("ip6", format!("[{A_WAN6}]"))
    } else {
        ("ip", super::netns::A_WAN.to_string())
    };
    let rules = format!(
        "table {family} ikehub_test_nat_ports {{\n\
         \x20 chain post {{\n\
         \x20   type nat hook postrouting priority srcnat; policy accept;\n\
         \x20   oifname \"{dev}\" udp sport {{ 500, 4500 }} snat to {addr}:{lo}-{hi}\n\
         \x20 }}\n\
         }}\n",
        dev = super::netns::WAN_DEV,
        lo = NAT_PORTS,
        hi = NAT_PORTS + 9999,
    );
    super::nat::nft_load(ns, &rules);
}

/// The tunnel device's `source-address` of one side: its IPv4 and its IPv6 host (the IPv6
/// one is the source of the ICMPv6 Packet Too Big the daemon writes into the device).
pub fn source_addresses(side: Side) -> String {
    match side {
        Side::A => format!("[\"{A_HOST}\", \"{A_HOST6}\"]"),
        Side::B => format!("[\"{B_HOST}\", \"{B_HOST6}\"]"),
    }
}

/// The manual profile of `pair` for one side, rewritten for IPv6: the protected networks
/// are `networks` (local, remote) of that side, the tunnel device gets both source
/// addresses and `offload`.
pub fn manual_profile6(
    pair: &ManualPair,
    side: Side,
    dir: &Path,
    networks: &[(&str, &str)],
    offload: bool,
) -> String {
    let text = pair.profile(side, dir);
    let (local, remote, host) = match side {
        Side::A => (A_NET, B_NET, A_HOST),
        Side::B => (B_NET, A_NET, B_HOST),
    };
    let old_nets =
        format!("protected-network = [ {{ local = \"{local}\", remote = \"{remote}\" }} ]");
    let nets = networks
        .iter()
        .map(|(l, r)| format!("{{ local = \"{l}\", remote = \"{r}\" }}"))
        .collect::<Vec<_>>()
        .join(", ");
    let old_src = format!("source-address = \"{host}\"\n");
    assert!(
        text.contains(&old_nets) && text.contains(&old_src),
        "tests/common/tunnel.rs changed its profile layout:\n{text}"
    );
    text.replace(&old_nets, &format!("protected-network = [ {nets} ]"))
        .replace(
            &old_src,
            &format!(
                "source-address = {}\noffload = {offload}\n",
                source_addresses(side)
            ),
        )
}

/// The ESP keys strongSwan logs for a CHILD_SA at `chd` level 4 (keymat_v1.c
/// `derive_child_keys`: "encryption initiator key => 16 bytes @ ..." and hex-dump lines):
/// (encryption, integrity) for the initiator's and the responder's direction. `None` when the
/// log does not have all four.
pub fn swan_logged_child_keys(log: &str) -> Option<[(Vec<u8>, Vec<u8>); 2]> {
    let key = |name: &str| -> Option<Vec<u8>> {
        let mut lines = log
            .lines()
            .skip_while(|l| !l.contains(&format!("{name} key => ")));
        let head = lines.next()?;
        let len: usize = head
            .split("=> ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        let mut bytes = Vec::with_capacity(len);
        for line in lines {
            // "12:44:01 12[CHD]   16: A6 FA F9 0F      ...." : the hex after the offset.
            let (_, dump) = line.split_once("[CHD]")?;
            let (_, hex) = dump.split_once(": ")?;
            // At most 16 bytes a line; the ASCII column after them is not hex.
            let want = (len - bytes.len()).min(16);
            for t in hex.split_whitespace().take(want) {
                bytes.push(u8::from_str_radix(t, 16).ok()?);
            }
            if bytes.len() == len {
                return Some(bytes);
            }
        }
        None
    };
    Some([
        (key("encryption initiator")?, key("integrity initiator")?),
        (key("encryption responder")?, key("integrity responder")?),
    ])
}

/// The IPv6 WAN addresses of the outer-IPv6 cases (issue 11 point 1): on `wan0` beside the
/// IPv4 ones, in the documentation prefix.
pub const A_WAN6: &str = "2001:db8:ffff::1";
pub const B_WAN6: &str = "2001:db8:ffff::2";

/// [`two_sites6`] with an IPv6 address on each side's `wan0` ([`A_WAN6`], [`B_WAN6`], a /64
/// on the link, `nodad`): the daemons' interfaces take these, so every outer packet is IPv6.
pub fn two_sites_wan6(tag: &str) -> TwoSites {
    let sites = two_sites6(tag);
    for (ns, a) in [(&sites.a, A_WAN6), (&sites.b, B_WAN6)] {
        ns.run("sysctl", &["-qw", "net.ipv6.conf.wan0.disable_ipv6=0"]);
        ns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{a}/64"),
            "dev",
            super::netns::WAN_DEV,
            "nodad",
        ]);
    }
    sites
}

/// A profile of the IPv4-WAN harness moved onto the IPv6 WAN: the interface address and the
/// peer become [`A_WAN6`] / [`B_WAN6`] (each quoted address of the IPv4 WAN is replaced).
pub fn on_wan6(text: &str) -> String {
    use super::netns::{A_WAN, B_WAN};
    let (a, b) = (format!("\"{A_WAN}\""), format!("\"{B_WAN}\""));
    assert!(
        text.contains(&a) && text.contains(&b),
        "the profile names no IPv4 WAN address:\n{text}"
    );
    text.replace(&a, &format!("\"{A_WAN6}\""))
        .replace(&b, &format!("\"{B_WAN6}\""))
}

/// `entries` (ESP SAs between the IPv4 WAN addresses) with the IPv6 WAN addresses.
pub fn entries_on_wan6(
    entries: Vec<super::wireshark::EspSaEntry>,
) -> Vec<super::wireshark::EspSaEntry> {
    use super::netns::A_WAN;
    let v6 = |a: &str| if a == A_WAN { A_WAN6 } else { B_WAN6 }.to_string();
    entries
        .into_iter()
        .map(|e| super::wireshark::EspSaEntry {
            src: v6(&e.src),
            dst: v6(&e.dst),
            ..e
        })
        .collect()
}

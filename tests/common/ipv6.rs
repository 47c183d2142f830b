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

//! Spokes kept apart in the data plane (docs/design.md: SA handles and network reservations),
//! daemons in network namespaces.
//!
//! * A hub with two manual policies to two peers that both chose outbound SPI 5000 (with
//!   different keys): each peer's traffic reaches only that peer. The hub reaches its two peers
//!   over two veths, holding its one interface address on both:
//!
//! ```text
//!   P1: wan0 192.0.2.2/24, lo 203.0.113.1      <── veth ──> hub wan0 192.0.2.1/24
//!   P2: wan0 192.0.2.3/24, lo 203.0.113.129    <── veth ──> hub wan1 192.0.2.1/32
//!                                                            (route 192.0.2.3 dev wan1)
//!   hub lo 198.51.100.1
//! ```
//!
//! * One IKE policy with two protected-network pairs between two ikehub daemons: both pairs
//!   carry traffic at once, across the re-key of their child SAs, and after it.
//!
//! Needs root, ip and ping. Outside CI the tests skip (with a message) when those are missing;
//! under `CI=true` they fail.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::ike::{self, IkeProfile, Initiate, POLICY, TUN, UP_TIMEOUT, ike_rows, sa_rows, views};
use common::netns::{A_HOST, A_NET, A_WAN, B_WAN, veth_pair, wait_for_route};
use common::sa::{SaRow, row};
use common::tunnel::{AES128_SHA1, Encapsulation, SaKeys, Transform};
use common::{Daemon, Netns, TwoSites, ping, poll_until};

const TOOLS: &[&str] = &["ip", "ping"];
/// Echo requests per direction.
const PINGS: u32 = 20;

// ---- two manual policies, one outbound SPI ---------------------------------------------------

const HUB_WAN: &str = A_WAN;
const HUB_HOST: &str = A_HOST;
const HUB_NET: &str = A_NET;
const SHARED_SPI: u32 = 5000;

/// One of the hub's peers.
struct Spoke {
    policy: &'static str,
    wan: &'static str,
    host: &'static str,
    net: &'static str,
    /// Hub -> spoke (the SPI is [`SHARED_SPI`] for both spokes).
    hub_to_spoke: SaKeys,
    /// Spoke -> hub.
    spoke_to_hub: SaKeys,
}

fn keys(t: &Transform, spi: u32, seed: u8) -> SaKeys {
    let key = |len: usize, salt: u8| -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed ^ salt))
            .collect()
    };
    SaKeys {
        esp_spi: Some(spi),
        esp_encryption_key: key(t.esp_encryption.key_len(), 0x5a),
        esp_authentication_key: key(t.esp_authentication.key_len(), 0xa5),
        ah_spi: None,
        ah_authentication_key: Vec::new(),
    }
}

fn spokes() -> [Spoke; 2] {
    let t = &AES128_SHA1;
    [
        Spoke {
            policy: "ToP1",
            wan: B_WAN,
            host: "203.0.113.1",
            net: "203.0.113.0/25",
            hub_to_spoke: keys(t, SHARED_SPI, 0x10),
            spoke_to_hub: keys(t, 1111, 0x20),
        },
        Spoke {
            policy: "ToP2",
            wan: "192.0.2.3",
            host: "203.0.113.129",
            net: "203.0.113.128/25",
            hub_to_spoke: keys(t, SHARED_SPI, 0x30),
            spoke_to_hub: keys(t, 1112, 0x40),
        },
    ]
}

#[allow(clippy::too_many_arguments)]
fn manual_policy(
    name: &str,
    peer: &str,
    local: &str,
    remote: &str,
    inbound: &SaKeys,
    outbound: &SaKeys,
) -> String {
    let t = &AES128_SHA1;
    format!(
        "[ipsec-policy-manual.{name}]\ninterface = \"wan\"\npeer = \"{peer}\"\n\
         transform = \"{tname}\"\nencapsulation = \"{encap}\"\n\
         protected-network = [ {{ local = \"{local}\", remote = \"{remote}\" }} ]\n\
         inbound = {inbound}\noutbound = {outbound}\n\n",
        tname = t.name,
        encap = Encapsulation::Esp.profile_name(),
        inbound = inbound.toml_inline(t),
        outbound = outbound.toml_inline(t),
    )
}

fn manual_header(dir: &Path, wan: &str, host: &str) -> String {
    format!(
        "[system]\ncontrol-socket = \"{sock}\"\nshards = 2\n\n\
         [interface.wan]\naddress = \"{wan}\"\n\n\
         [tunnel-device]\nname = \"{TUN}\"\nmtu = 1400\nsource-address = \"{host}\"\n\
         routes = true\n\n{transform}\n",
        sock = dir.join("ikehub.sock").display(),
        transform = AES128_SHA1.toml(),
    )
}

fn hub_profile(dir: &Path, spokes: &[Spoke]) -> String {
    let mut s = manual_header(dir, HUB_WAN, HUB_HOST);
    for p in spokes {
        s.push_str(&manual_policy(
            p.policy,
            p.wan,
            HUB_NET,
            p.net,
            &p.spoke_to_hub,
            &p.hub_to_spoke,
        ));
    }
    s
}

fn spoke_profile(dir: &Path, p: &Spoke) -> String {
    let mut s = manual_header(dir, p.wan, p.host);
    s.push_str(&manual_policy(
        "ToHub",
        HUB_WAN,
        p.net,
        HUB_NET,
        &p.hub_to_spoke,
        &p.spoke_to_hub,
    ));
    s
}

fn rows(d: &Daemon) -> Vec<SaRow> {
    common::sa::parse_rows(&common::daemon::show_sa_json(d))
}

/// SA handles: two manual policies to two peers with the same outbound SPI each carry only
/// their own traffic. On the old code (outbound SAs keyed by SPI) the second install replaced
/// the first: both policies then sent with P2's keys to P2, and P1 got nothing.
#[test]
fn same_outbound_spi_to_two_peers_each_gets_only_its_own_traffic() {
    if !common::require_env_or_skip(TOOLS) {
        return;
    }
    let hub = Netns::new("iso-hub");
    let p1 = Netns::new("iso-p1");
    let p2 = Netns::new("iso-p2");
    let spokes = spokes();
    veth_pair(
        &hub,
        &format!("{HUB_WAN}/24"),
        &p1,
        &format!("{}/24", spokes[0].wan),
        "wan0",
    );
    // The second veth: the hub's address again (a /32, so the /24 stays on wan0), and a host
    // route to P2 through it.
    common::run_ok(
        "ip",
        [
            "link",
            "add",
            "wan1",
            "netns",
            hub.name(),
            "type",
            "veth",
            "peer",
            "name",
            "wan0",
            "netns",
            p2.name(),
        ],
    );
    hub.ip(&["addr", "add", &format!("{HUB_WAN}/32"), "dev", "wan1"]);
    hub.ip(&["link", "set", "wan1", "up"]);
    p2.ip(&[
        "addr",
        "add",
        &format!("{}/24", spokes[1].wan),
        "dev",
        "wan0",
    ]);
    p2.ip(&["link", "set", "wan0", "up"]);
    hub.ip(&[
        "route",
        "add",
        &format!("{}/32", spokes[1].wan),
        "dev",
        "wan1",
    ]);
    hub.add_lo_address(&format!("{HUB_HOST}/32"));
    p1.add_lo_address(&format!("{}/32", spokes[0].host));
    p2.add_lo_address(&format!("{}/32", spokes[1].host));

    let dh = Daemon::start(&hub, "hub", |dir| hub_profile(dir, &spokes));
    let d1 = Daemon::start(&p1, "P1", |dir| spoke_profile(dir, &spokes[0]));
    let d2 = Daemon::start(&p2, "P2", |dir| spoke_profile(dir, &spokes[1]));
    let timeout = Duration::from_secs(20);
    for (ns, d, p) in [(&p1, &d1, &spokes[0]), (&p2, &d2, &spokes[1])] {
        wait_for_route(&hub, HUB_HOST, p.host, TUN, timeout);
        wait_for_route(ns, p.host, HUB_HOST, TUN, timeout);
        let listed = poll_until(timeout, || {
            let r = rows(d);
            (r.iter().filter(|x| x.policy == "ToHub").count() == 2).then_some(())
        });
        assert!(
            listed.is_some(),
            "{}: SAs not listed: {:#?}",
            d.label(),
            rows(d)
        );
    }
    // Both of the hub's outbound SAs are installed, with the same SPI.
    let listed = poll_until(timeout, || {
        let r = rows(&dh);
        let outs: Vec<&SaRow> = r.iter().filter(|x| x.direction == "OUT").collect();
        (outs.len() == 2 && outs.iter().all(|x| x.esp_spi == Some(SHARED_SPI))).then_some(())
    });
    assert!(
        listed.is_some(),
        "the hub does not list two OUT SAs with SPI {SHARED_SPI}: {:#?}",
        rows(&dh)
    );

    for (ns, p) in [(&p1, &spokes[0]), (&p2, &spokes[1])] {
        let out = ping(&hub, HUB_HOST, p.host, PINGS);
        let back = ping(ns, p.host, HUB_HOST, PINGS);
        assert!(
            out == 0.0 && back == 0.0,
            "{}: hub -> {} lost {out}%, back {back}%\nhub SAs: {:#?}\nP1 SAs: {:#?}\nP2 SAs: {:#?}",
            p.policy,
            p.host,
            rows(&dh),
            rows(&d1),
            rows(&d2)
        );
    }

    // Every packet the hub sent on a policy's SA arrived at that policy's peer, and no SA
    // anywhere saw a packet it could not authenticate or that was meant for another network.
    let min = u64::from(2 * PINGS);
    let settled = poll_until(Duration::from_secs(10), || {
        let (h, r1, r2) = (rows(&dh), rows(&d1), rows(&d2));
        let pairs = [
            (
                row(&h, "ToP1", "OUT").packets,
                row(&r1, "ToHub", "IN").packets,
            ),
            (
                row(&h, "ToP2", "OUT").packets,
                row(&r2, "ToHub", "IN").packets,
            ),
            (
                row(&r1, "ToHub", "OUT").packets,
                row(&h, "ToP1", "IN").packets,
            ),
            (
                row(&r2, "ToHub", "OUT").packets,
                row(&h, "ToP2", "IN").packets,
            ),
        ];
        pairs
            .iter()
            .all(|(sent, got)| sent == got && *got >= min)
            .then_some((h, r1, r2))
    });
    let (h, r1, r2) = settled.unwrap_or_else(|| {
        panic!(
            "SA counters do not match (each policy's packets must reach its own peer):\n\
             hub: {:#?}\nP1: {:#?}\nP2: {:#?}",
            rows(&dh),
            rows(&d1),
            rows(&d2)
        )
    });
    for (who, r) in [("hub", &h), ("P1", &r1), ("P2", &r2)] {
        for x in r.iter() {
            assert_eq!(
                (x.icv_failures, x.selector_mismatches, x.other_drops),
                (0, 0, 0),
                "{who}: a packet reached an SA it was not meant for: {x:#?}"
            );
        }
    }
    println!(
        "same outbound SPI {SHARED_SPI}: hub -> P1 {} packets, hub -> P2 {} packets, none astray",
        row(&h, "ToP1", "OUT").packets,
        row(&h, "ToP2", "OUT").packets
    );
}

// ---- one IKE policy, two protected-network pairs ---------------------------------------------

const PSK: &str = "ikehub two pairs pre-shared key 9c1d";
/// The two remote networks of site A's policy, and a host in each (on B's `lo`).
const PAIRS: [(&str, &str); 2] = [
    ("203.0.113.0/25", "203.0.113.1"),
    ("203.0.113.128/25", "203.0.113.129"),
];
/// Short child lifetime, so the children re-key during the test.
const CHILD_LIFETIME: u32 = 24;

fn two_pair_profile() -> IkeProfile {
    let mut a = IkeProfile::site_a(PSK).initiate(Initiate::Permanent);
    a.esp = vec![ike::p2_aes128_sha1().lifetime(CHILD_LIFETIME)];
    a.protected = PAIRS
        .iter()
        .map(|(net, _)| (A_NET.to_string(), net.to_string()))
        .collect();
    a
}

/// Pings every pair both ways; returns the losses (A -> B host, B host -> A) per pair.
fn ping_pairs(sites: &TwoSites) -> Vec<(f64, f64)> {
    PAIRS
        .iter()
        .map(|(_, host)| {
            (
                ping(&sites.a, A_HOST, host, PINGS),
                ping(&sites.b, host, A_HOST, PINGS),
            )
        })
        .collect()
}

/// The ESP SPIs of A's OUT SAs of the policy.
fn out_spis(d: &Daemon) -> Vec<u32> {
    let rows = sa_rows(d);
    let mut v: Vec<u32> = ike_rows(&rows, POLICY, "OUT")
        .iter()
        .filter_map(|r| r.esp_spi)
        .collect();
    v.sort_unstable();
    v
}

/// Two pairs of one policy: one IKE policy with two protected-network pairs carries both at once
/// (the old code kept only the last negotiated pair in the SPD: the other pair's cleartext found no
/// policy), keeps carrying both while every child SA is re-keyed and the old ones removed, and
/// still afterwards.
#[test]
fn one_policy_two_network_pairs_carry_both_also_after_rekey() {
    if !common::require_env_or_skip(TOOLS) {
        return;
    }
    let sites = TwoSites::new("iso-2pairs");
    sites.b.add_lo_address(&format!("{}/32", PAIRS[1].1));
    let a = two_pair_profile();
    let b = a.mirrored().initiate(Initiate::Never);
    let db = Daemon::start(&sites.b, "B", |dir| b.toml(dir));
    let da = Daemon::start(&sites.a, "A", |dir| a.toml(dir));

    // Both children up on both sides, and routes for both pairs.
    for d in [&da, &db] {
        let up = poll_until(UP_TIMEOUT, || (out_spis(d).len() >= 2).then_some(()));
        assert!(
            up.is_some(),
            "{}: two child SAs not up\n{}",
            d.label(),
            views(d)
        );
    }
    for (_, host) in PAIRS {
        wait_for_route(&sites.a, A_HOST, host, TUN, UP_TIMEOUT);
        wait_for_route(&sites.b, host, A_HOST, TUN, UP_TIMEOUT);
    }
    let losses = ping_pairs(&sites);
    assert!(
        losses.iter().all(|(x, y)| *x == 0.0 && *y == 0.0),
        "both pairs must carry traffic at once; losses per pair (A->B, B->A): {losses:?}\n\
         A:\n{}\nB:\n{}",
        views(&da),
        views(&db)
    );

    // Pings run on both pairs while every child SA listed at the start is re-keyed and
    // removed (bounded: the pings last 1.5 child lifetimes, the re-key comes at ~80% of one).
    // Each re-key points the pair's SPD entry at the new SA before the old one goes, so at
    // most a stray echo may be lost to the peers' own switch-over, never a pair's traffic.
    let first = out_spis(&da);
    let count = CHILD_LIFETIME * 3 / 2 * 5;
    let started = Instant::now();
    let (runs, rekeyed) = std::thread::scope(|s| {
        let pingers: Vec<_> = PAIRS
            .iter()
            .map(|(_, host)| s.spawn(|| ike::ping_run(&sites.a, A_HOST, host, count, 0.2)))
            .collect();
        let mut rekeyed = None;
        while pingers.iter().any(|p| !p.is_finished()) {
            let now = out_spis(&da);
            if rekeyed.is_none() && now.len() >= 2 && now.iter().all(|s| !first.contains(s)) {
                rekeyed = Some((started.elapsed(), now));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let runs: Vec<ike::PingRun> = pingers
            .into_iter()
            .map(|p| p.join().expect("ping thread"))
            .collect();
        (runs, rekeyed)
    });
    let (after, now) = rekeyed.unwrap_or_else(|| {
        panic!(
            "A's child SAs {first:?} were not all replaced during {count} pings 0.2 s apart
             A:
{}
B:
{}",
            views(&da),
            views(&db)
        )
    });
    for (run, (net, _)) in runs.iter().zip(PAIRS) {
        println!(
            "pair {net}: {} of {} pings lost across the re-key (missing {:?})",
            run.lost(),
            run.transmitted,
            run.missing()
        );
        assert!(
            run.transmitted + 5 >= count && run.lost() <= 2,
            "pair {net}: {} of {} pings lost across the re-key (missing {:?})
A:
{}
B:
{}",
            run.lost(),
            run.transmitted,
            run.missing(),
            views(&da),
            views(&db)
        );
    }
    println!("children re-keyed within {after:?}: OUT SPIs {first:?} -> {now:?}");
    let losses = ping_pairs(&sites);
    assert!(
        losses.iter().all(|(x, y)| *x == 0.0 && *y == 0.0),
        "after the re-key both pairs must still carry traffic; losses per pair: {losses:?}\n\
         A:\n{}\nB:\n{}",
        views(&da),
        views(&db)
    );
    for d in [&da, &db] {
        for r in sa_rows(d) {
            assert_eq!(
                (r.icv_failures, r.selector_mismatches),
                (0, 0),
                "{}: {r:#?}",
                d.label()
            );
        }
        assert!(
            !ike::log_shows_panic(&d.log()),
            "{} logged a panic",
            d.label()
        );
    }
}

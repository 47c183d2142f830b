//! Several spokes behind one NAT address (docs/design.md: IKE demultiplexing by cookie, msg1 by
//! address and port): two strongSwan spokes behind one nftables `masquerade` connect at the same
//! time to ONE template policy of the hub, each gets its own peer, SAs and policy entries, both
//! carry traffic both ways at once, and one restarting (its charon killed and started again: it
//! comes back with INITIAL-CONTACT, RFC 2407 §4.6.3.3) does not disturb the other.
//!
//! * [`two_strongswan_spokes_behind_one_nat_then_one_restarts`]: the restarted spoke comes back
//!   from the same public ports (the router kept its mappings).
//! * [`restarted_spoke_comes_back_from_another_nat_port`]: it comes back from other ports (as
//!   after the router's mappings expired): a new session, whose INITIAL-CONTACT must not touch
//!   any other session, refused while its dead predecessor holds its network, until the hub's
//!   liveness check (R-U-THERE) has found the predecessor dead.
//! * [`a_spoke_claiming_a_live_spokes_network_is_refused_and_disturbs_nothing`]: the same
//!   check against a live holder (another spoke behind the NAT claims its network): refused,
//!   the holder answers and keeps everything.
//!
//! Topology: [`common::nat`]. The hub (192.0.2.1, protects 198.51.100.0/24) runs ikehub with one
//! `ipsec-policy-isakmp` whose `peer = "192.0.2.0/24"` (holds the router's public address
//! 192.0.2.2) and `initiate = "never"`, allowing remote networks inside 203.0.113.64/26. Spoke i
//! (LAN 203.0.113.(10+i), behind the router) runs charon initiating to the hub for its own
//! network 203.0.113.(64+16(i-1))/28, with the same PSK, sending its private LAN address as its
//! ID (strongSwan's default). strongSwan here always uses UDP encapsulation (kernel-libipsec,
//! see `common::strongswan`), so both spokes' IKE floats to 4500 and their ESP is ESP-in-UDP:
//! at the hub, both come from 192.0.2.2 and differ only by source port.
//!
//! Needs root, ip, ping, nft and strongSwan. Outside CI the test skips (with a message) when
//! those are missing; under `CI=true` it fails.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::hub::{finish_ping, peer_ip, spawn_ping};
use common::ike::{
    IkeProfile, Initiate, PingRun, log_shows_panic, mentions, peer_rows, sa_rows, views,
};
use common::nat::{
    HUB_HOST, HUB_WAN, NAT_PUBLIC, NatSites, SPOKE_NETS, spoke_host, spoke_lan, spoke_net,
};
use common::sa::SaRow;
use common::strongswan::{Charon, ChildSa, SwanConfig, require_strongswan_or_skip};
use common::{Daemon, poll_until};

const PSK: &str = "ikehub nat spokes pre-shared key 5c1e07";
/// The hub's template policy.
const HUB_POLICY: &str = "Branches";
/// The hub's protected network.
const HUB_NET: &str = "198.51.100.0/24";
/// strongSwan's CHILD_SA name (the harness default).
const CHILD: &str = "net";
/// Bound on one spoke's `swanctl --initiate` (main mode + quick mode).
const INITIATE_SECS: u32 = 30;
/// Bound on the hub showing what both spokes negotiated.
const UP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a restarted spoke coming back up: a dead predecessor holding its network is found
/// dead within the liveness check's 20 s (the rest is slack for a loaded machine; without the
/// check it would hold the network for its lifetimes, an hour).
const RECOVER_TIMEOUT: Duration = Duration::from_secs(90);
/// Echo requests per direction and spoke while both carry traffic.
const PINGS: u32 = 20;
/// Interval of the continuous ping across the restart.
const CONT_INTERVAL: f64 = 0.1;

/// The hub: one template admitting 192.0.2.0/24, spokes' networks inside 203.0.113.64/26.
fn hub_profile() -> IkeProfile {
    IkeProfile {
        policy: HUB_POLICY.into(),
        local_wan: HUB_WAN.into(),
        peer: "192.0.2.0/24".into(),
        local_host: HUB_HOST.into(),
        ..IkeProfile::site_a(PSK)
    }
    .protected(HUB_NET, SPOKE_NETS)
    .initiate(Initiate::Never)
}

/// Spoke `i`'s charon: the hub's proposals, its LAN address as IKE address and ID, its own
/// network to the hub's. Gives up on an unanswered exchange after ~10 s rather than ~165 s.
fn spoke_swan(hub: &IkeProfile, i: usize) -> SwanConfig {
    let mut c = hub
        .swan_peer()
        .ts(&spoke_net(i), HUB_NET)
        .retransmit(3, 2.0, 1.5);
    c.local_addr = spoke_lan(i);
    c.remote_addr = HUB_WAN.into();
    c
}

/// Whether `show sa`'s policy column names a spoke of the template: `Branches@192.0.2.2`, or
/// `Branches@192.0.2.2#N` for a further spoke from the same address.
fn is_template_spoke(policy: &str) -> bool {
    policy
        .strip_prefix(HUB_POLICY)
        .and_then(|rest| rest.strip_prefix('@'))
        .is_some_and(|rest| peer_ip(rest.split('#').next().unwrap_or("")) == NAT_PUBLIC)
}

/// The ISAKMP rows of the hub's template in `direction`.
fn ike_sas<'a>(rows: &'a [SaRow], direction: &str) -> Vec<&'a SaRow> {
    rows.iter()
        .filter(|r| {
            r.sa_type == "ISAKMP" && r.direction == direction && is_template_spoke(&r.policy)
        })
        .collect()
}

/// The `show peers` entries of the template that are up, by "address:port".
fn peers_up(hub: &Daemon) -> BTreeSet<String> {
    peer_rows(hub)
        .into_iter()
        .filter(|r| r.policy == HUB_POLICY && r.state == "up")
        .map(|r| r.peer)
        .collect()
}

/// The hub's IN and OUT SA of spoke `child` (matched by SPI: the hub's IN SA is the spoke's
/// outbound one), if both are listed.
fn hub_pair_of(rows: &[SaRow], child: &ChildSa) -> Option<(SaRow, SaRow)> {
    let i = ike_sas(rows, "IN")
        .into_iter()
        .find(|r| r.esp_spi == Some(child.spi_out))?;
    let o = ike_sas(rows, "OUT")
        .into_iter()
        .find(|r| r.esp_spi == Some(child.spi_in))?;
    Some((i.clone(), o.clone()))
}

/// Waits until the hub lists exactly one SA pair per spoke, each matching the spoke's
/// installed CHILD_SA, and two peers up; returns each spoke's pair (IN, OUT) in order.
fn wait_both_up(hub: &Daemon, spokes: &[&Charon]) -> Vec<(SaRow, SaRow)> {
    let found = poll_until(UP_TIMEOUT, || all_up(hub, spokes));
    found.unwrap_or_else(|| {
        let swan: String = spokes
            .iter()
            .map(|s| format!("--- charon {} ---\n{}", s.label(), s.list_sas()))
            .collect();
        panic!(
            "the hub does not show one SA pair per spoke and {} peers up after {UP_TIMEOUT:?}\n{}{swan}",
            spokes.len(),
            views(hub)
        )
    })
}

/// One SA pair per spoke at the hub, each matching the spoke's installed CHILD_SA, and as
/// many peers up as spokes: each spoke's pair (IN, OUT) in order.
fn all_up(hub: &Daemon, spokes: &[&Charon]) -> Option<Vec<(SaRow, SaRow)>> {
    let children: Vec<ChildSa> = spokes
        .iter()
        .map(|s| s.installed_child(CHILD))
        .collect::<Option<_>>()?;
    let rows = sa_rows(hub);
    if ike_sas(&rows, "IN").len() != spokes.len() || ike_sas(&rows, "OUT").len() != spokes.len() {
        return None;
    }
    let pairs: Vec<(SaRow, SaRow)> = children
        .iter()
        .map(|c| hub_pair_of(&rows, c))
        .collect::<Option<_>>()?;
    (peers_up(hub).len() == spokes.len()).then_some(pairs)
}

/// Echo requests without a reply, not counting the last one sent (ping was interrupted: its
/// reply may still have been on the way).
fn settled_losses(run: &PingRun) -> usize {
    run.missing()
        .into_iter()
        .filter(|&seq| seq < run.transmitted)
        .count()
}

/// Stops a [`spawn_ping`] child with SIGINT (ping then prints its summary) and parses it.
fn stop_ping(child: std::process::Child) -> PingRun {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on our own child, not yet reaped (`ip netns exec` execs ping, so
        // this pid is ping's).
        unsafe { libc::kill(pid, libc::SIGINT) };
    }
    finish_ping(child)
}

fn initiate(sites: &NatSites, hub: &Daemon, swan: &Charon) {
    if let Err(e) = swan.initiate(CHILD, INITIATE_SECS) {
        panic!(
            "charon {} could not bring its tunnel up: {e}\n{}\nNAT:\n{}",
            swan.label(),
            views(hub),
            sites.nat_state()
        );
    }
}

/// Pings spoke `i`'s host -> the hub's host and back, `PINGS` each, for every spoke in
/// `which`, all at once; returns (spoke, out, back).
fn ping_all(sites: &NatSites, which: &[usize]) -> Vec<(usize, PingRun, PingRun)> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = which
            .iter()
            .map(|&i| {
                scope.spawn(move || {
                    let host = spoke_host(i);
                    let out = spawn_ping(sites.spoke(i), &host, HUB_HOST, PINGS, 0.05);
                    let back = spawn_ping(&sites.hub, HUB_HOST, &host, PINGS, 0.05);
                    (i, finish_ping(out), finish_ping(back))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("ping thread"))
            .collect()
    })
}

fn assert_no_loss(runs: &[(usize, PingRun, PingRun)], hub: &Daemon) {
    for (i, out, back) in runs {
        assert!(
            out.transmitted == PINGS
                && out.lost() == 0
                && back.transmitted == PINGS
                && back.lost() == 0,
            "spoke {i}: spoke->hub {}/{} replied, hub->spoke {}/{} replied\n{}\n{}\n{}",
            out.received,
            out.transmitted,
            back.received,
            back.transmitted,
            out.output,
            back.output,
            views(hub)
        );
    }
}

fn assert_alive(hub: &mut Daemon) {
    assert!(hub.is_running(), "hub died:\n{}", hub.log());
    assert!(
        !log_shows_panic(&hub.log()),
        "hub logged a panic:\n{}",
        hub.log()
    );
}

#[test]
fn two_strongswan_spokes_behind_one_nat_then_one_restarts() {
    two_spokes_then_one_restarts(Restart::SamePorts);
}

#[test]
fn restarted_spoke_comes_back_from_another_nat_port() {
    two_spokes_then_one_restarts(Restart::OtherPorts);
}

/// How spoke 2 comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Restart {
    /// From its usual ports 500/4500: the router still has the mappings, so the hub sees the
    /// restarted spoke at the same public ports as before.
    SamePorts,
    /// From other local ports (1500/14500): the router maps them to other public ports, as after
    /// the router's mapping expired or it restarted. At the hub this is a new source port with
    /// the old spoke's session still established (it was killed: no delete).
    OtherPorts,
}

fn two_spokes_then_one_restarts(how: Restart) {
    if !require_strongswan_or_skip(&["ip", "ping", "nft"]) {
        return;
    }
    let t0 = Instant::now();
    let sites = NatSites::new("nat", 2);
    let profile = hub_profile();
    let mut hub = Daemon::start(&sites.hub, "hub", |dir| profile.toml(dir));
    let s1 = Charon::start(sites.spoke(1), "spoke1", &spoke_swan(&profile, 1));
    let mut s2 = Charon::start(sites.spoke(2), "spoke2", &spoke_swan(&profile, 2));

    // Both at the same time.
    std::thread::scope(|scope| {
        let a = scope.spawn(|| initiate(&sites, &hub, &s1));
        let b = scope.spawn(|| initiate(&sites, &hub, &s2));
        a.join().expect("spoke 1 initiates");
        b.join().expect("spoke 2 initiates");
    });
    let pairs = wait_both_up(&hub, &[&s1, &s2]);
    eprintln!("both spokes up {:?} after the start", t0.elapsed());

    // Two peers, both at the router's public address, told apart by port; each spoke's SAs
    // are its own SPD entry (its own policy key), towards the router's address.
    let up = peers_up(&hub);
    let ips: BTreeSet<&str> = up.iter().map(|p| peer_ip(p)).collect();
    assert_eq!(
        ips,
        BTreeSet::from([NAT_PUBLIC]),
        "show peers: {up:?}\n{}",
        views(&hub)
    );
    for (i, (sa_in, sa_out)) in pairs.iter().enumerate() {
        assert_eq!(
            (sa_in.policy.as_str(), peer_ip(&sa_in.peer)),
            (sa_out.policy.as_str(), NAT_PUBLIC),
            "spoke {}: IN and OUT SA of different entries or peers\n{}",
            i + 1,
            views(&hub)
        );
    }
    assert_ne!(
        pairs[0].0.policy,
        pairs[1].0.policy,
        "both spokes' SAs share one SPD entry\n{}",
        views(&hub)
    );

    // Both carry traffic both ways at once.
    let runs = ping_all(&sites, &[1, 2]);
    assert_no_loss(&runs, &hub);
    eprintln!("both spokes carried {PINGS} pings each way at once");

    // Spoke 2 restarts (charon killed: no delete, it comes back with INITIAL-CONTACT) while
    // spoke 1 carries traffic both ways continuously.
    let old2 = s2
        .installed_child(CHILD)
        .expect("spoke 2's CHILD_SA before the restart");
    // Bounded by `-w`; stopped with SIGINT once spoke 2 is back.
    let cont_count = 1200;
    let cont_out = spawn_ping(
        sites.spoke(1),
        &spoke_host(1),
        HUB_HOST,
        cont_count,
        CONT_INTERVAL,
    );
    let cont_back = spawn_ping(
        &sites.hub,
        HUB_HOST,
        &spoke_host(1),
        cont_count,
        CONT_INTERVAL,
    );
    let restart = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    s2.kill();
    drop(s2);
    let mut again = spoke_swan(&profile, 2);
    if how == Restart::OtherPorts {
        again = again
            .extra_charon("port = 1500")
            .extra_charon("port_nat_t = 14500");
    }
    let s2 = Charon::start(sites.spoke(2), "spoke2-again", &again);
    // Like a spoke configured to keep trying: initiate whenever it has no CHILD_SA (a refused
    // one is deleted by the hub), until the hub shows both spokes up.
    let mut attempts = 0;
    let back = poll_until(RECOVER_TIMEOUT, || {
        if s2.installed_child(CHILD).is_none() {
            attempts += 1;
            let _ = s2.initiate(CHILD, INITIATE_SECS);
            std::thread::sleep(Duration::from_secs(1));
        }
        all_up(&hub, &[&s1, &s2])
    });
    let back_up = restart.elapsed();
    let Some(pairs_after) = back else {
        panic!(
            "spoke 2 not back up {back_up:?} after its restart ({attempts} initiates)\n{}\n{}",
            views(&hub),
            s2.list_sas()
        );
    };
    eprintln!("spoke 2 back up {back_up:?} after its restart began ({attempts} initiates)");
    let new2 = s2.installed_child(CHILD).expect("spoke 2's new CHILD_SA");
    assert_ne!(
        (old2.spi_in, old2.spi_out),
        (new2.spi_in, new2.spi_out),
        "spoke 2 did not negotiate new SAs"
    );
    assert_eq!(
        (pairs_after[0].0.esp_spi, pairs_after[0].1.esp_spi),
        (pairs[0].0.esp_spi, pairs[0].1.esp_spi),
        "spoke 1's SAs changed across spoke 2's restart\n{}",
        views(&hub)
    );
    let runs = ping_all(&sites, &[2]);
    assert_no_loss(&runs, &hub);

    let out = stop_ping(cont_out);
    let back = stop_ping(cont_back);
    eprintln!(
        "spoke 1 during spoke 2's restart: spoke->hub {}/{} replied (missing {:?}), \
         hub->spoke {}/{} replied (missing {:?})",
        out.received,
        out.transmitted,
        out.missing(),
        back.received,
        back.transmitted,
        back.missing()
    );
    // At least one echo request per interval of the restart (minus slack for a slow machine).
    let min_sent = (back_up.as_secs_f64() / CONT_INTERVAL / 2.0) as u32;
    assert!(
        out.transmitted >= min_sent && settled_losses(&out) <= 1,
        "spoke 1 lost traffic while spoke 2 restarted: spoke->hub missing {:?}\n{}\n{}",
        out.missing(),
        out.output,
        views(&hub)
    );
    assert!(
        back.transmitted >= min_sent && settled_losses(&back) <= 1,
        "spoke 1 lost traffic while spoke 2 restarted: hub->spoke missing {:?}\n{}\n{}",
        back.missing(),
        back.output,
        views(&hub)
    );

    assert_alive(&mut hub);
    eprintln!("whole test: {:?}", t0.elapsed());
}

/// The other side of the restart fix: a spoke behind the same NAT (it holds the template's PSK)
/// that proposes a network another, live, spoke holds, again and again, with INITIAL-CONTACT
/// each time, is refused, and the hub's liveness check of the holder (R-U-THERE) finds it
/// alive: the holder keeps its SAs and carries traffic, longer than a dead holder would last.
/// The holder is idle meanwhile (traffic from it would count as a sign of life by itself), so
/// it is its answers to R-U-THERE that keep it.
#[test]
fn a_spoke_claiming_a_live_spokes_network_is_refused_and_disturbs_nothing() {
    if !require_strongswan_or_skip(&["ip", "ping", "nft"]) {
        return;
    }
    let sites = NatSites::new("natc", 2);
    let profile = hub_profile();
    let mut hub = Daemon::start(&sites.hub, "hub", |dir| profile.toml(dir));
    let s1 = Charon::start(sites.spoke(1), "spoke1", &spoke_swan(&profile, 1));
    initiate(&sites, &hub, &s1);
    let before = wait_both_up(&hub, &[&s1]);
    // Spoke 2 proposes spoke 1's network as its own.
    let thief_cfg = spoke_swan(&profile, 2).ts(&spoke_net(1), HUB_NET);
    let thief = Charon::start(sites.spoke(2), "thief", &thief_cfg);

    // Longer than the liveness check takes to declare a silent holder dead (20 s).
    let started = Instant::now();
    let mut attempts = 0;
    while started.elapsed() < Duration::from_secs(35) {
        attempts += 1;
        let _ = thief.initiate(CHILD, INITIATE_SECS);
        std::thread::sleep(Duration::from_secs(3));
    }
    eprintln!(
        "spoke 2 claimed spoke 1's network {attempts} times in {:?}",
        started.elapsed()
    );

    let log = hub.log();
    assert!(
        mentions(&log, "already protected by"),
        "the hub did not refuse spoke 2's claim:\n{log}"
    );
    assert!(
        mentions(&log, "checking that this peer is still there"),
        "the hub never checked the holder's liveness:\n{log}"
    );
    // Spoke 1 still holds the same SAs, alone, and kept its traffic.
    let after = wait_both_up(&hub, &[&s1]);
    assert_eq!(
        (after[0].0.esp_spi, after[0].1.esp_spi),
        (before[0].0.esp_spi, before[0].1.esp_spi),
        "spoke 1's SAs changed while spoke 2 claimed its network\n{}",
        views(&hub)
    );
    assert!(
        thief.installed_child(CHILD).is_none() || sa_rows(&hub).len() == 2,
        "spoke 2 got spoke 1's network:\n{}",
        views(&hub)
    );
    // Spoke 1 was asked, and answered (strongSwan logs the informational exchanges).
    let swan_log = s1.log();
    assert!(
        mentions(&swan_log, "N(DPD)") || mentions(&swan_log, "N(DPD_ACK)"),
        "spoke 1 never saw an R-U-THERE:\n{swan_log}"
    );
    assert_no_loss(&ping_all(&sites, &[1]), &hub);
    assert_alive(&mut hub);
}

//! Reload by diff (acceptance: "continuous traffic through an unchanged policy loses
//! no packet while another policy is changed, one added and one removed; an invalid profile is
//! refused and the old one keeps running; the daemon's pid never changes").
//!
//! A (192.0.2.1) and B (192.0.2.2) share four policies over time:
//!
//! | policy   | keying                 | A side        | B side        | reload            |
//! |----------|------------------------|---------------|---------------|-------------------|
//! | `Steady` | manual, raw ESP        | 198.51.100.1  | 203.0.113.1   | unchanged         |
//! | `Change` | IKE (A permanent)      | 198.51.100.2  | 203.0.113.2   | PSK + ESP changed |
//! | `Remove` | manual, raw ESP        | 198.51.100.3  | 203.0.113.3   | removed           |
//! | `Added`  | manual, raw ESP        | 198.51.100.4  | 203.0.113.4   | added             |
//!
//! `Change` keeps the transform *name* `P2` and changes its content (AES-128/SHA1 ->
//! AES-256/SHA-256), so only a diff by content sees it; its PSK changes too. B is reloaded first,
//! then A, while a ping runs through `Steady` every 20 ms.
//!
//! Needs root, ip, ping. Outside CI the test skips (with a message) when those are missing;
//! under `CI=true` it fails.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::hub::{
    Classification, finish_ping, manual_policy, manual_transform, parse_classification, routes_to,
    spawn_ping,
};
use common::ike::{
    CLI_TIMEOUT, EspTransform, IkeProfile, Initiate, TUN, UP_TIMEOUT, child_pair, daemon_pid,
    log_shows_panic, sa_rows, views, wait_child_sas,
};
use common::netns::{A_WAN, B_WAN, wait_for_route};
use common::sa::SaRow;
use common::strongswan::output_with_timeout;
use common::tunnel::{Auth, Encr};
use common::{Daemon, Netns, TwoSites, ping, poll_until};

const PSK_OLD: &str = "ikehub reload pre-shared key before 0a1b";
const PSK_NEW: &str = "ikehub reload pre-shared key after 9f8e";
const MAN_T: &str = "ManT";

/// (name, A host, B host, A's inbound SPI, A's outbound SPI) of the manual policies.
const STEADY: (&str, &str, &str, u32, u32) = ("Steady", "198.51.100.1", "203.0.113.1", 4001, 4002);
const REMOVE: (&str, &str, &str, u32, u32) = ("Remove", "198.51.100.3", "203.0.113.3", 4011, 4012);
const ADDED: (&str, &str, &str, u32, u32) = ("Added", "198.51.100.4", "203.0.113.4", 4021, 4022);
/// The IKE policy.
const CHANGE: &str = "Change";
const CHANGE_A: &str = "198.51.100.2";
const CHANGE_B: &str = "203.0.113.2";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    A,
    B,
}

/// The profile generation: before the reload or after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Generation {
    Before,
    After,
}

/// `Change` seen from A (B's is the mirror, responder only).
fn change_policy(side: Side, generation: Generation) -> IkeProfile {
    let a = match generation {
        Generation::Before => IkeProfile::site_a(PSK_OLD),
        Generation::After => IkeProfile::site_a(PSK_NEW).esp(&[EspTransform::new(
            "P2",
            Encr::Aes256,
            Auth::HmacSha256,
        )]),
    };
    let mut a = a
        .protected(CHANGE_A, CHANGE_B)
        .initiate(Initiate::Permanent);
    a.policy = CHANGE.into();
    match side {
        Side::A => a,
        Side::B => a.mirrored().initiate(Initiate::Never),
    }
}

fn manual(side: Side, (name, a_host, b_host, a_in, a_out): (&str, &str, &str, u32, u32)) -> String {
    match side {
        Side::A => manual_policy(name, MAN_T, "esp", B_WAN, a_host, b_host, a_in, a_out),
        Side::B => manual_policy(name, MAN_T, "esp", A_WAN, b_host, a_host, a_out, a_in),
    }
}

/// The whole profile of one side: the IKE header and `Change`, then the manual policies.
fn profile(side: Side, generation: Generation, dir: &std::path::Path) -> String {
    let mut s = change_policy(side, generation).toml(dir);
    s.push_str(&manual_transform(MAN_T));
    s.push_str(&manual(side, STEADY));
    match generation {
        Generation::Before => s.push_str(&manual(side, REMOVE)),
        Generation::After => s.push_str(&manual(side, ADDED)),
    }
    s
}

/// `ikehub reload -c FILE` after rewriting FILE: (exit success, stdout + stderr).
fn reload_raw(d: &Daemon, text: &str) -> (bool, String) {
    std::fs::write(d.config_path(), text)
        .unwrap_or_else(|e| panic!("rewriting {}: {e}", d.config_path().display()));
    let mut cmd = d.cli(&["reload"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("ikehub reload runs");
    let out = output_with_timeout(child, CLI_TIMEOUT).expect("ikehub reload finishes");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `ikehub reload --control SOCKET` (the profile file is not read by the CLI, only by the
/// daemon): (exit success, stdout + stderr).
fn reload_via_socket(ns: &Netns, d: &Daemon) -> (bool, String) {
    let sock = d.dir().join("ikehub.sock");
    let child = ns
        .command(common::ikehub_bin())
        .arg("reload")
        .arg("--control")
        .arg(&sock)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ikehub reload runs");
    let out = output_with_timeout(child, CLI_TIMEOUT).expect("ikehub reload finishes");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Reloads a valid profile; returns the classification (panics unless exit 0 and both kinds
/// are classified).
#[track_caller]
fn reload_ok(d: &Daemon, text: &str) -> (String, Classification, Classification) {
    let (ok, out) = reload_raw(d, text);
    assert!(ok, "daemon {}: reload refused:\n{out}", d.label());
    let c = parse_classification(&out);
    let (Some(manual), Some(isakmp)) = (c.get("manual"), c.get("isakmp")) else {
        panic!(
            "daemon {}: reload did not print the classification of both kinds:\n{out}",
            d.label()
        );
    };
    (out.clone(), manual.clone(), isakmp.clone())
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[track_caller]
fn assert_classified(label: &str, out: &str, manual: &Classification, isakmp: &Classification) {
    let want_manual = Classification {
        added: names(&["Added"]),
        removed: names(&["Remove"]),
        changed: vec![],
        unchanged: names(&["Steady"]),
    };
    let want_isakmp = Classification {
        added: vec![],
        removed: vec![],
        changed: names(&[CHANGE]),
        unchanged: vec![],
    };
    assert_eq!(
        manual, &want_manual,
        "{label}: manual classification:\n{out}"
    );
    assert_eq!(
        isakmp, &want_isakmp,
        "{label}: isakmp classification:\n{out}"
    );
}

/// The rows of `policy`.
fn rows_of<'a>(rows: &'a [SaRow], policy: &str) -> Vec<&'a SaRow> {
    rows.iter().filter(|r| r.policy == policy).collect()
}

/// The routes of `ns` whose destination is exactly `host` (or `host/32`).
fn routes_to_host(ns: &Netns, host: &str) -> Vec<String> {
    routes_to(ns, host)
        .into_iter()
        .filter(|l| {
            l.split_whitespace()
                .find(|w| !matches!(*w, "local" | "broadcast" | "unicast" | "multicast"))
                .is_some_and(|d| d == host || d == format!("{host}/32"))
        })
        .collect()
}

/// Whether `text` has `FILE:LINE:COL` for `file`; returns the (line, col) pairs found.
fn file_line_cols(text: &str, file: &str) -> Vec<(usize, usize)> {
    let needle = format!("{file}:");
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&needle) {
        rest = &rest[i + needle.len()..];
        let mut parts = rest.splitn(3, ':');
        let line = parts.next().and_then(|l| l.parse().ok());
        let col = parts
            .next()
            .and_then(|c| c.trim_end().split(|ch: char| !ch.is_ascii_digit()).next())
            .and_then(|c| c.parse().ok());
        if let (Some(l), Some(c)) = (line, col) {
            found.push((l, c));
        }
    }
    found
}

#[track_caller]
fn assert_no_loss(label: &str, what: &str, loss: f64, d: &Daemon) {
    assert_eq!(loss, 0.0, "{label}: {what} lost packets\n{}", views(d));
}

#[test]
fn reload_classification_and_positions_parse() {
    let text = "manual policies: added Added; removed Remove; changed -; unchanged Steady, X\n\
                isakmp policies: added -; removed -; changed Change; unchanged -\n";
    let c = parse_classification(text);
    assert_eq!(c["manual"].added, ["Added"]);
    assert_eq!(c["manual"].removed, ["Remove"]);
    assert!(c["manual"].changed.is_empty());
    assert_eq!(c["manual"].unchanged, ["Steady", "X"]);
    assert_eq!(c["isakmp"].changed, ["Change"]);
    assert!(c["isakmp"].unchanged.is_empty());
    assert_eq!(
        file_line_cols("/tmp/x/ikehub.toml:42:7: unknown key", "/tmp/x/ikehub.toml"),
        [(42, 7)]
    );
    assert_eq!(common::hub::peer_ip("192.0.2.11:500"), "192.0.2.11");
    assert_eq!(common::hub::peer_ip("192.0.2.11"), "192.0.2.11");
}

#[test]
fn reload_changes_one_policy_while_another_loses_nothing() {
    if !common::require_env_or_skip(&["ip", "ping"]) {
        return;
    }
    let sites = TwoSites::new("reload");
    for (a, b) in [
        (CHANGE_A, CHANGE_B),
        (REMOVE.1, REMOVE.2),
        (ADDED.1, ADDED.2),
    ] {
        sites.a.add_lo_address(&format!("{a}/32"));
        sites.b.add_lo_address(&format!("{b}/32"));
    }
    let db = Daemon::start(&sites.b, "B", |dir| {
        profile(Side::B, Generation::Before, dir)
    });
    let mut da = Daemon::start(&sites.a, "A", |dir| {
        profile(Side::A, Generation::Before, dir)
    });
    let pid_a = daemon_pid(&sites.a, &da).expect("A's pid");
    let pid_b = daemon_pid(&sites.b, &db).expect("B's pid");

    let (old_in, old_out) = wait_child_sas(&da, CHANGE, UP_TIMEOUT);
    wait_child_sas(&db, CHANGE, UP_TIMEOUT);
    wait_for_route(&sites.a, CHANGE_A, CHANGE_B, TUN, UP_TIMEOUT);
    for (what, src, dst) in [
        ("Steady", STEADY.1, STEADY.2),
        ("Change", CHANGE_A, CHANGE_B),
        ("Remove", REMOVE.1, REMOVE.2),
    ] {
        assert_no_loss("before the reload", what, ping(&sites.a, src, dst, 5), &da);
    }
    let steady_before: Vec<SaRow> = rows_of(&sa_rows(&da), "Steady")
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(steady_before.len(), 2, "Steady: {steady_before:#?}");
    assert!(
        !rows_of(&sa_rows(&da), "Remove").is_empty(),
        "Remove not installed"
    );

    // 500 echo requests 20 ms apart (10 s) through Steady, while both sides reload.
    const STEADY_PINGS: u32 = 500;
    let pinger = spawn_ping(&sites.a, STEADY.1, STEADY.2, STEADY_PINGS, 0.02);
    std::thread::sleep(Duration::from_secs(1));

    let t = Instant::now();
    let (out_b, man_b, ike_b) = reload_ok(&db, &profile(Side::B, Generation::After, db.dir()));
    eprintln!("B reload ({:?}):\n{out_b}", t.elapsed());
    assert_classified("B", &out_b, &man_b, &ike_b);
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let (out_a, man_a, ike_a) = reload_ok(&da, &profile(Side::A, Generation::After, da.dir()));
    eprintln!("A reload ({:?}):\n{out_a}", t.elapsed());
    assert_classified("A", &out_a, &man_a, &ike_a);

    // Change: renegotiated (new SPIs on both sides, the new ESP suite).
    let renegotiated = Instant::now();
    let new_pair = poll_until(UP_TIMEOUT, || {
        let (i, o) = child_pair(&sa_rows(&da), CHANGE)?;
        let (bi, bo) = child_pair(&sa_rows(&db), CHANGE)?;
        (i.esp_spi != old_in.esp_spi
            && o.esp_spi != old_out.esp_spi
            && i.esp_spi == bo.esp_spi
            && o.esp_spi == bi.esp_spi)
            .then_some((i, o))
    })
    .unwrap_or_else(|| {
        panic!(
            "Change was not renegotiated after the reload:\nA:\n{}\nB:\n{}",
            views(&da),
            views(&db)
        )
    });
    eprintln!(
        "Change renegotiated {:?} after A's reload: SPIs {:?}/{:?} -> {:?}/{:?}",
        renegotiated.elapsed(),
        old_in.esp_spi,
        old_out.esp_spi,
        new_pair.0.esp_spi,
        new_pair.1.esp_spi
    );
    for r in [&new_pair.0, &new_pair.1] {
        let enc = r.esp_enc.as_deref().unwrap_or("");
        let auth = r.esp_auth.as_deref().unwrap_or("");
        assert!(
            enc.contains("256") && auth.contains("256"),
            "Change's new SA does not use the changed transform (AES-256, HMAC-SHA256): {r:#?}"
        );
    }
    let rows = sa_rows(&da);
    let stale: Vec<&SaRow> = rows
        .iter()
        .filter(|r| r.esp_spi == old_in.esp_spi || r.esp_spi == old_out.esp_spi)
        .collect();
    assert!(stale.is_empty(), "Change's old SAs left behind: {stale:#?}");

    // Steady: no packet lost, same SAs (same SPIs, counters not reset).
    let run = finish_ping(pinger);
    assert!(
        run.transmitted >= STEADY_PINGS - 5 && run.lost() == 0,
        "Steady lost packets during the reload: {} of {} (missing {:?})\n{}\nA:\n{}",
        run.lost(),
        run.transmitted,
        run.missing(),
        run.output.lines().last().unwrap_or(""),
        views(&da)
    );
    let rows = sa_rows(&da);
    let steady_after: Vec<&SaRow> = rows_of(&rows, "Steady");
    assert_eq!(steady_after.len(), 2, "Steady: {steady_after:#?}");
    for before in &steady_before {
        let after = steady_after
            .iter()
            .find(|r| r.direction == before.direction)
            .expect("Steady row in each direction");
        assert_eq!(after.esp_spi, before.esp_spi, "Steady's SA was replaced");
        assert!(
            after.packets >= before.packets + u64::from(run.received),
            "Steady's {} counters were reset (SA reinstalled?): before {} packets, after {}, \
             {} pings answered",
            before.direction,
            before.packets,
            after.packets,
            run.received
        );
    }

    // Remove: SAs and route gone on A (and its SAs on B).
    assert!(
        rows_of(&rows, "Remove").is_empty(),
        "Remove's SAs are still installed:\n{}",
        views(&da)
    );
    assert!(
        rows_of(&sa_rows(&db), "Remove").is_empty(),
        "Remove's SAs are still installed in B:\n{}",
        views(&db)
    );
    let left = routes_to_host(&sites.a, REMOVE.2);
    assert!(left.is_empty(), "A still routes Remove's network: {left:?}");

    // Added and Change carry traffic.
    wait_for_route(&sites.a, ADDED.1, ADDED.2, TUN, Duration::from_secs(10));
    assert_eq!(rows_of(&rows, "Added").len(), 2, "Added:\n{}", views(&da));
    assert_no_loss(
        "after the reload",
        "Added",
        ping(&sites.a, ADDED.1, ADDED.2, 10),
        &da,
    );
    assert_no_loss(
        "after the reload",
        "Change",
        ping(&sites.a, CHANGE_A, CHANGE_B, 10),
        &da,
    );

    // An invalid profile is refused with FILE:LINE:COL; everything keeps running, traffic
    // through Steady included.
    let pinger = spawn_ping(&sites.a, STEADY.1, STEADY.2, 150, 0.02);
    let good = profile(Side::A, Generation::After, da.dir());
    let file = da.config_path().to_string_lossy().into_owned();

    // (1) TOML syntax: a line that is not `key = value`.
    let syntax = format!("{good}\nthis line is not toml\n");
    let bad_line = syntax.lines().count();
    let (ok, out) = reload_raw(&da, &syntax);
    eprintln!("reload of a profile with a syntax error said:\n{out}");
    assert!(!ok, "a profile with a syntax error was accepted:\n{out}");
    let pos = file_line_cols(&out, &file);
    assert!(
        pos.iter().any(|(l, _)| *l == bad_line),
        "the refusal does not point at {file}:{bad_line}:COL: {pos:?}\n{out}"
    );

    // The same file given to the daemon itself (the CLI above may refuse it before asking the
    // daemon): over the control socket, and by SIGHUP.
    let (ok, out) = reload_via_socket(&sites.a, &da);
    eprintln!("reload --control SOCKET of the same profile said:\n{out}");
    assert!(
        !ok,
        "the daemon accepted a profile with a syntax error:\n{out}"
    );
    let pos = file_line_cols(&out, &file);
    assert!(
        pos.iter().any(|(l, _)| *l == bad_line),
        "the daemon's refusal does not point at {file}:{bad_line}:COL: {pos:?}\n{out}"
    );
    let log_before = da.log().len();
    // SAFETY: kill(2) on the daemon this test started (found by its own config path).
    unsafe { libc::kill(pid_a, libc::SIGHUP) };
    let needle = format!("{file}:{bad_line}:");
    let logged = poll_until(Duration::from_secs(10), || {
        let log = da.log();
        let new = log.get(log_before..).unwrap_or("").to_string();
        new.contains(&needle).then_some(new)
    })
    .unwrap_or_else(|| {
        panic!(
            "after SIGHUP with a syntax error the log does not show {needle}COL:\n{}",
            da.log()
        )
    });
    eprintln!(
        "SIGHUP with the same profile logged:\n{}",
        logged.trim_end()
    );

    // (2) Semantic: Added refers to a transform that does not exist.
    let semantic = good.replace(
        &format!("[ipsec-policy-manual.Added]\ninterface = \"wan\"\npeer = \"{B_WAN}\"\ntransform = \"{MAN_T}\""),
        &format!("[ipsec-policy-manual.Added]\ninterface = \"wan\"\npeer = \"{B_WAN}\"\ntransform = \"NoSuchTransform\""),
    );
    assert_ne!(
        semantic, good,
        "the generator's text changed; adjust the edit"
    );
    let key_line = semantic
        .lines()
        .position(|l| l.contains("NoSuchTransform"))
        .expect("edited line")
        + 1;
    let (ok, out) = reload_raw(&da, &semantic);
    eprintln!("reload of a profile naming a missing transform said:\n{out}");
    assert!(
        !ok,
        "a profile naming a missing transform was accepted:\n{out}"
    );
    let pos = file_line_cols(&out, &file);
    assert!(
        pos.iter().any(|(l, _)| *l == key_line),
        "the refusal does not point at {file}:{key_line}:COL (the transform key): {pos:?}\n{out}"
    );
    assert!(
        out.contains("NoSuchTransform"),
        "the refusal does not name the missing transform:\n{out}"
    );
    // Put the good profile back in the file (not reloaded: nothing to change).
    std::fs::write(da.config_path(), &good).expect("restoring the profile");

    let run = finish_ping(pinger);
    assert!(
        run.transmitted > 0 && run.lost() == 0,
        "Steady lost packets during the refused reloads: missing {:?}\n{}",
        run.missing(),
        views(&da)
    );
    let rows = sa_rows(&da);
    let (i, o) = child_pair(&rows, CHANGE).expect("Change still up");
    assert_eq!(
        (i.esp_spi, o.esp_spi),
        (new_pair.0.esp_spi, new_pair.1.esp_spi),
        "a refused reload renegotiated Change"
    );
    for (what, src, dst) in [
        ("Steady", STEADY.1, STEADY.2),
        ("Change", CHANGE_A, CHANGE_B),
        ("Added", ADDED.1, ADDED.2),
    ] {
        assert_no_loss(
            "after the refused reloads",
            what,
            ping(&sites.a, src, dst, 5),
            &da,
        );
    }

    // One process all along.
    assert!(da.is_running(), "A exited:\n{}", da.log());
    assert_eq!(daemon_pid(&sites.a, &da), Some(pid_a), "A's pid changed");
    assert_eq!(daemon_pid(&sites.b, &db), Some(pid_b), "B's pid changed");
    assert!(!log_shows_panic(&da.log()), "A panicked:\n{}", da.log());
    assert!(!log_shows_panic(&db.log()), "B panicked:\n{}", db.log());
}

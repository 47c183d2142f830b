//! Tunnel events an operator follows (docs/cli.md, `show events`): two daemons keyed by IKE in
//! namespaces (the tests/ike_daemons.rs pair: A initiates at start, B responds); B's events
//! are followed with `ikehub show events --follow` while the tunnel comes up and is terminated.
//!
//! Proves: one JSON line per event with kind, policy, peer address:port, identity, SPIs in hex
//! (`0x%08x`) equal to `show sa`'s decimal SPIs and cookies equal to `show isakmp`'s; `down`
//! events name the SPIs that came up, with a reason; `show events` without --follow lists the
//! same events from the ring; and the daemon's log has one line per event in words, without
//! the raw `Debug` dump of the session's events it used to print beside them.
//! A re-key (A's ESP lifetime 12 s) names the pair it replaces, in the event and as fields of
//! its log line.
//!
//! Needs root and ip; outside CI it skips when they are missing, under `CI=true` it fails.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use common::ike::{self, IkeProfile, Initiate, POLICY, UP_TIMEOUT, wait_child_sas, wait_phase1_up};
use common::netns::A_WAN;
use common::{Daemon, TwoSites, stop_child};
use serde_json::Value;

const PSK: &str = "ikehub events pre-shared key 6d1c2a90";

/// A `show events --follow` process whose lines arrive on a channel; killed when dropped.
struct Follower {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<Value>,
}

impl Follower {
    /// Starts the follower and waits until it says (on stderr) that it is subscribed.
    fn start(d: &Daemon) -> Follower {
        let mut child = d
            .cli(&["show", "events", "--follow"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start ikehub show events --follow");
        let (tx, lines) = channel();
        let out = child.stdout.take().expect("piped stdout");
        let tx_out = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx_out.send(l).is_err() {
                    break;
                }
            }
        });
        let err = child.stderr.take().expect("piped stderr");
        let (ready_tx, ready) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("follower: {l}");
                if l.starts_with("following the events") {
                    let _ = ready_tx.send(());
                }
            }
        });
        let mut f = Follower {
            child,
            lines,
            seen: Vec::new(),
        };
        if ready.recv_timeout(Duration::from_secs(20)).is_err() {
            let status = f.child.try_wait();
            panic!("show events --follow did not subscribe within 20 s ({status:?})");
        }
        f
    }

    /// Waits (bounded) for an event that `pred` accepts; every line read is kept in `seen`.
    fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let v: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => panic!(
                    "no {what} event within {timeout:?}; events seen:\n{}",
                    self.dump()
                ),
            }
        }
    }

    fn dump(&self) -> String {
        self.seen
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        stop_child(&mut self.child, libc::SIGTERM, Duration::from_secs(5));
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn is(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |v| str_of(v, "kind") == kind && str_of(v, "policy") == POLICY
}

#[test]
fn events_stream_tells_a_tunnel_up_and_down() {
    if !common::require_env_or_skip(&["ip"]) {
        return;
    }
    let sites = TwoSites::new("events");
    let profile_a = IkeProfile::site_a(PSK).initiate(Initiate::Permanent);
    let profile_b = profile_a.mirrored().initiate(Initiate::Never);
    let db = Daemon::start(&sites.b, "B", |dir| profile_b.toml(dir));
    let mut follow = Follower::start(&db);
    let da = Daemon::start(&sites.a, "A", |dir| profile_a.toml(dir));
    let (b_in, b_out) = wait_child_sas(&db, POLICY, UP_TIMEOUT);
    wait_child_sas(&da, POLICY, UP_TIMEOUT);
    let p1 = wait_phase1_up(&db, POLICY, UP_TIMEOUT);

    let peer = format!("{A_WAN}:500");
    let hex = |spi: Option<u32>| format!("0x{:08x}", spi.expect("an ESP SPI"));
    let (spi_in, spi_out) = (hex(b_in.esp_spi), hex(b_out.esp_spi));

    let isakmp_up = follow.wait_for("isakmp-up", UP_TIMEOUT, is("isakmp-up"));
    let (icky, rcky) = p1.cookies();
    assert_eq!(str_of(&isakmp_up, "peer"), peer, "{isakmp_up}");
    assert_eq!(str_of(&isakmp_up, "initiator_cookie"), icky, "{isakmp_up}");
    assert_eq!(str_of(&isakmp_up, "responder_cookie"), rcky, "{isakmp_up}");
    assert!(
        str_of(&isakmp_up, "identity").starts_with("address:"),
        "the authenticated identity: {isakmp_up}"
    );

    // The pair `show sa` lists (decimal) is the one the `up` event named (hex).
    let up = follow.wait_for("up", UP_TIMEOUT, |v| {
        is("up")(v) && str_of(v, "spi_in") == spi_in
    });
    assert_eq!(str_of(&up, "spi_out"), spi_out, "{up}");
    assert_eq!(str_of(&up, "peer"), peer, "{up}");
    assert!(str_of(&up, "suite").starts_with("ESP-"), "{up}");
    assert!(
        up.get("networks")
            .and_then(Value::as_array)
            .is_some_and(|n| !n.is_empty()),
        "{up}"
    );
    assert!(
        up["seq"].as_u64() > isakmp_up["seq"].as_u64(),
        "events in order: {}",
        follow.dump()
    );
    assert!(str_of(&up, "time").ends_with('Z'), "{up}");

    ike::cli(&db, &["terminate", POLICY])
        .unwrap_or_else(|e| panic!("terminate: {e}\n{}", db.log()));
    let down = follow.wait_for("down", UP_TIMEOUT, |v| {
        is("down")(v) && str_of(v, "spi_in") == spi_in
    });
    assert_eq!(str_of(&down, "spi_out"), spi_out, "{down}");
    assert!(!str_of(&down, "reason").is_empty(), "a reason: {down}");
    let isakmp_down = follow.wait_for("isakmp-down", UP_TIMEOUT, |v| {
        is("isakmp-down")(v) && str_of(v, "initiator_cookie") == icky
    });
    assert!(!str_of(&isakmp_down, "reason").is_empty(), "{isakmp_down}");

    // Without --follow: the ring has the same events, oldest first.
    let ring: Vec<Value> = ike::cli(&db, &["show", "events"])
        .unwrap_or_else(|e| panic!("show events: {e}"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for ev in [&isakmp_up, &up, &down] {
        assert!(
            ring.contains(ev),
            "{ev} missing from show events:\n{ring:#?}"
        );
    }
    let last: Vec<Value> = ike::cli(&db, &["show", "events", "--last", "1"])
        .unwrap_or_else(|e| panic!("show events --last 1: {e}"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(last.len(), 1, "{last:#?}");

    // The log: one line per event, in words with the hex SPIs; no raw Debug dump beside it.
    let log = db.log();
    let up_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("child SA up") && l.contains(&spi_in))
        .collect();
    assert_eq!(up_lines.len(), 1, "one log line for the up event:\n{log}");
    for dump in [
        "ChildSaEstablished",
        "IsakmpSaEstablished",
        "redacted",
        "KeyBytes",
    ] {
        assert!(
            !log.contains(dump),
            "the log still dumps session events ({dump}):\n{log}"
        );
    }
    println!("B's events:\n{}", follow.dump());
    for l in log.lines().filter(|l| l.contains("event=")) {
        println!("B's log: {l}");
    }
    // The stream ends when the daemon stops (a follower never holds the daemon up).
    let stopped = db.stop();
    assert!(
        stopped.is_some_and(|s| s.success()),
        "B stopped cleanly: {stopped:?}"
    );
    let ended = common::poll_until(Duration::from_secs(10), || {
        follow.child.try_wait().ok().flatten()
    });
    assert!(
        ended.is_some(),
        "show events --follow still runs after the daemon stopped"
    );
    drop(follow);
    drop(da);
}

/// A re-key names the pair it replaces: A (the initiator, ESP lifetime 12 s, so it re-keys
/// at its soft lifetime about 10 s in) is followed; its `rekey` event carries the new SPIs and,
/// as `old_spi_in` / `old_spi_out`, the SPIs of the `up` event that came before; A's log line
/// for it carries the same four as structured fields.
#[test]
fn rekey_event_names_the_old_spis() {
    if !common::require_env_or_skip(&["ip"]) {
        return;
    }
    let sites = TwoSites::new("ev-rekey");
    let profile_a = IkeProfile::site_a(PSK)
        .initiate(Initiate::Permanent)
        .esp(&[ike::p2_aes128_sha1().lifetime(12)]);
    let profile_b = profile_a.mirrored().initiate(Initiate::Never);
    let db = Daemon::start(&sites.b, "B", |dir| profile_b.toml(dir));
    let da = Daemon::start(&sites.a, "A", |dir| profile_a.toml(dir));
    let mut follow = Follower::start(&da);
    wait_child_sas(&da, POLICY, UP_TIMEOUT);

    let rekey = follow.wait_for("rekey", Duration::from_secs(60), is("rekey"));
    let (old_in, old_out) = (str_of(&rekey, "old_spi_in"), str_of(&rekey, "old_spi_out"));
    let (new_in, new_out) = (str_of(&rekey, "spi_in"), str_of(&rekey, "spi_out"));
    assert!(
        old_in.starts_with("0x") && old_in.len() == 10 && old_out.len() == 10,
        "old SPIs in hex: {rekey}"
    );
    assert!(new_in != old_in && new_out != old_out, "{rekey}");
    // The old pair is the one an earlier `up` (or re-key) brought, kept in the ring.
    let ring: Vec<Value> = ike::cli(&da, &["show", "events"])
        .unwrap_or_else(|e| panic!("show events: {e}"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let before = ring
        .iter()
        .find(|v| {
            (is("up")(v) || is("rekey")(v))
                && str_of(v, "spi_in") == old_in
                && v["seq"].as_u64() < rekey["seq"].as_u64()
        })
        .unwrap_or_else(|| panic!("no earlier event with SPI {old_in}:\n{ring:#?}"));
    assert_eq!(str_of(before, "spi_out"), old_out, "{before}\n{rekey}");

    // The log line: words with both pairs, and the four SPIs as fields.
    let log = da.log();
    let line = log
        .lines()
        .find(|l| l.contains("child SA re-keyed") && l.contains(new_in))
        .unwrap_or_else(|| panic!("no log line for the re-key to {new_in}:\n{log}"));
    for field in [
        format!("spi_in={new_in}"),
        format!("spi_out={new_out}"),
        format!("old_spi_in={old_in}"),
        format!("old_spi_out={old_out}"),
    ] {
        let quoted = field.replacen('=', "=\"", 1) + "\"";
        assert!(
            line.contains(&field) || line.contains(&quoted),
            "{field} missing from the log line: {line}"
        );
    }
    drop(follow);
    drop(da);
    drop(db);
}

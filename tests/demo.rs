//! `ikehub demo`, the embedded default, must work for an ordinary user: a hub and 20 spokes in
//! one unprivileged process over loopback, exit 0 and a summary on stdout.
//!
//! As root the binary is copied to a world-readable temp dir and run through `setpriv` as
//! `nobody`; as any other user it runs directly. No skipping: this runs everywhere.

mod common;

use std::time::Duration;

use common::unpriv::{output_with_timeout, unprivileged_command, world_executable_copy};

/// Start-up + 5 s of traffic + summary, with plenty of room for a slow shared machine.
const DEMO_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn demo_20_spokes_unprivileged_exits_0_with_summary() {
    let (_dir, bin) = world_executable_copy(&common::ikehub_bin());
    let mut cmd = unprivileged_command(&bin);
    cmd.args(["demo", "--spokes", "20", "--seconds", "5"]);
    let out = output_with_timeout(&mut cmd, DEMO_TIMEOUT)
        .unwrap_or_else(|| panic!("ikehub demo did not finish within {DEMO_TIMEOUT:?}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ctx = format!("{}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    assert!(out.status.success(), "ikehub demo failed: {ctx}");
    // The summary table: tunnels up, setup rate, packets/bytes each way, errors (docs/cli.md,
    // `ikehub demo`).
    let lower = stdout.to_lowercase();
    assert!(
        lower.contains("tunnel"),
        "no summary (no word 'tunnel') on stdout: {ctx}"
    );
    assert!(
        stdout.contains("20"),
        "summary does not mention the 20 spokes: {ctx}"
    );
}

/// Scale: a thousand spokes, every one keyed by IKE (group 14), as an ordinary user. The
/// summary must say all 1000 tunnels came up by IKE and carried traffic both ways. (10,000 is a
/// benchmark, run by hand: `ikehub demo --spokes 10000`.)
#[test]
fn demo_1000_spokes_unprivileged_all_up_by_ike() {
    let (_dir, bin) = world_executable_copy(&common::ikehub_bin());
    let mut cmd = unprivileged_command(&bin);
    cmd.args(["demo", "--spokes", "1000", "--seconds", "3"]);
    let out = output_with_timeout(&mut cmd, Duration::from_secs(240))
        .unwrap_or_else(|| panic!("ikehub demo --spokes 1000 did not finish in time"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ctx = format!(
        "{}
stdout:
{stdout}
stderr:
{stderr}",
        out.status
    );
    assert!(out.status.success(), "ikehub demo failed: {ctx}");
    for line in [
        "tunnels up by IKE",
        "tunnels up (installed at the hub)",
        "tunnels with traffic both ways",
    ] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("no `{line}` row: {ctx}"));
        assert!(
            row.trim_end().ends_with("1000/1000"),
            "{row}
{ctx}"
        );
    }
    // Issue 12 leftover: at most ~1,000 packets are in flight (one per spoke and its echo),
    // far below the shards' hand-over budget, so none may be dropped there, however late a
    // loaded machine runs a shard. With the old bound of 4 batches a 1000-spoke run dropped
    // hundreds (715 in one run on a quiet machine).
    let row = stdout
        .lines()
        .find(|l| l.starts_with("hub packets handed between shards"))
        .unwrap_or_else(|| panic!("no hand-over row: {ctx}"));
    assert!(
        row.trim_end()
            .ends_with("(dropped, the other shard behind: 0)"),
        "{row}
{ctx}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("spoke echoes missing")),
        "the summary counts missing echoes: {ctx}"
    );
}

/// The unprivileged path itself: a copied binary runs as `nobody` (uid 65534) when we are root.
#[test]
fn harness_runs_copied_binary_unprivileged() {
    let id = common::find_tool("id").expect("id (coreutils)");
    let (_dir, bin) = world_executable_copy(&id);
    let mut cmd = unprivileged_command(&bin);
    cmd.arg("-u");
    let out = output_with_timeout(&mut cmd, Duration::from_secs(30)).expect("id -u finished");
    assert!(out.status.success(), "{out:?}");
    let uid: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("uid");
    assert_ne!(uid, 0, "still root");
    if common::is_root() {
        assert_eq!(uid, 65534, "expected nobody");
    }
}

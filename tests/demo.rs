//! `ikehub demo`, the embedded default, must work for an ordinary user: a hub and 20 spokes in
//! one unprivileged process over loopback, exit 0 and a summary on stdout; with `--ipv6` the
//! same over `[::1]` with IPv6 inside.
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

/// The value of the summary row `name` (the table pads names to 44 columns).
fn row<'a>(stdout: &'a str, name: &str, ctx: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(name).filter(|v| v.starts_with(' ')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no `{name}` row: {ctx}"))
}

/// The first number in a row's value (`64525 packets, ...` -> 64525).
fn first_number(value: &str) -> u64 {
    value
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| !w.is_empty())
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no number in `{value}`"))
}

/// `ikehub demo --ipv6` as `nobody`: the hub and 50 spokes all on `::1` (one UDP port each,
/// each authenticating as keyid:demo-spoke-<i>), IPv6 hosts in 2001:db8::/32 inside. The
/// summary must say IPv6, every tunnel up by IKE, installed at the hub and carrying traffic
/// both ways, every packet the spokes sent echoed back, and no error anywhere.
#[test]
fn demo_ipv6_50_spokes_on_one_address_all_up_both_ways() {
    let (_dir, bin) = world_executable_copy(&common::ikehub_bin());
    let mut cmd = unprivileged_command(&bin);
    cmd.args(["demo", "--ipv6", "--spokes", "50", "--seconds", "3"]);
    let out = output_with_timeout(&mut cmd, DEMO_TIMEOUT)
        .unwrap_or_else(|| panic!("ikehub demo --ipv6 did not finish within {DEMO_TIMEOUT:?}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ctx = format!("{}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    assert!(out.status.success(), "ikehub demo --ipv6 failed: {ctx}");
    let family = row(&stdout, "address family", &ctx);
    assert!(
        family.starts_with("IPv6: hub [::1]") && family.contains("2001:db8:1::/64"),
        "{family}\n{ctx}"
    );
    assert_eq!(row(&stdout, "spokes", &ctx), "50", "{ctx}");
    for name in [
        "tunnels up by IKE (spoke side)",
        "tunnels up (installed at the hub)",
        "tunnels with traffic both ways",
    ] {
        assert_eq!(row(&stdout, name, &ctx), "50/50", "{name}: {ctx}");
    }
    assert_eq!(
        row(&stdout, "IKE handshakes completed / failed", &ctx),
        "50 / 0",
        "{ctx}"
    );
    // One peer actor per spoke although all 50 call from ::1: the router tells them apart by
    // port and cookies, the template admits each by its key ID.
    assert_eq!(
        row(&stdout, "hub IKE datagrams / peer actors started", &ctx)
            .rsplit(" / ")
            .next(),
        Some("50"),
        "{ctx}"
    );
    let sent = first_number(row(&stdout, "spoke -> hub (sent by spokes)", &ctx));
    let up = first_number(row(&stdout, "spoke -> hub (delivered to hub LAN)", &ctx));
    let down = first_number(row(&stdout, "hub -> spoke (delivered to spokes)", &ctx));
    assert!(sent >= 50 && up >= 50 && down >= 50, "{ctx}");
    assert!(up <= sent && down <= up, "{ctx}");
    for (name, zero) in [
        (
            "hub IKE refused unknown peer / unknown cookies / bad / evicted half-open",
            "0 / 0 / 0 / 0",
        ),
        ("hub SA errors ICV / replay / padding", "0 / 0 / 0"),
        ("hub SA drops selector / other", "0 / 0"),
        (
            "hub unknown SPI / no policy / encap / send err",
            "0 / 0 / 0 / 0",
        ),
        ("spoke decap errors ICV/replay/padding", "0"),
        ("spoke send errors", "0"),
        // The hub LAN parsed every decapsulated packet as IPv6/UDP from a spoke host with a
        // correct checksum; a spoke counts an echo that is not, as an "other drop".
        ("hub LAN unexpected / echo send errors", "0 / 0"),
        ("spoke other drops", "0"),
        ("result", "OK"),
    ] {
        assert_eq!(row(&stdout, name, &ctx), zero, "{name}: {ctx}");
    }
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

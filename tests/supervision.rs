//! Supervision (a peer actor is rebuilt when it dies): a peer actor that dies (the test-only fault
//! hook makes it panic, as a bug would) is rebuilt by the router within seconds with fresh SAs, its
//! old SAs removed, while another tunnel of the same daemon carries traffic without losing a
//! packet.
//!
//! A (192.0.2.1) and B (192.0.2.2) have two tunnels: `ToBerne`, keyed by IKE (A initiates,
//! permanent) between 198.51.100.1 and 203.0.113.1, and `Second`, manually keyed, between
//! 198.51.100.2 and 203.0.113.2.
//!
//! Needs root, ip, ping. Outside CI the test skips (with a message) when those are missing.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::ike::{IkeProfile, Initiate, POLICY, UP_TIMEOUT, child_pair, sa_rows, views};
use common::{Daemon, TwoSites, ping, poll_until};

const PSK: &str = "ikehub supervision pre-shared key 5c1e";
const A_HOST2: &str = "198.51.100.2";
const B_HOST2: &str = "203.0.113.2";

/// The manual `Second` policy of one side (appended to the IKE profile).
fn second(local: &str, remote: &str, peer: &str, spi_in: u32, spi_out: u32) -> String {
    let key_in = "00112233445566778899aabbccddeeff";
    let key_out = "ffeeddccbbaa99887766554433221100";
    let auth_in = "0102030405060708090a0b0c0d0e0f1011121314";
    let auth_out = "1413121110090807060504030201000f0e0d0c0b";
    let (ki, ko, ai, ao) = if spi_in < spi_out {
        (key_in, key_out, auth_in, auth_out)
    } else {
        (key_out, key_in, auth_out, auth_in)
    };
    format!(
        "\n[ipsec-transform.SecondT]\nesp-encryption = \"aes-cbc-128\"\n\
         esp-authentication = \"hmac-sha1\"\n\n\
         [ipsec-policy-manual.Second]\ninterface = \"wan\"\npeer = \"{peer}\"\n\
         transform = \"SecondT\"\nencapsulation = \"udp\"\n\
         protected-network = [ {{ local = \"{local}\", remote = \"{remote}\" }} ]\n\
         inbound = {{ esp-spi = {spi_in}, esp-encryption-key = \"{ki}\", \
         esp-authentication-key = \"{ai}\" }}\n\
         outbound = {{ esp-spi = {spi_out}, esp-encryption-key = \"{ko}\", \
         esp-authentication-key = \"{ao}\" }}\n"
    )
}

#[test]
fn panicking_peer_actor_is_rebuilt_while_another_tunnel_loses_nothing() {
    if !common::require_env_or_skip(&["ip", "ping"]) {
        return;
    }
    let sites = TwoSites::new("superv");
    sites.a.add_lo_address(A_HOST2);
    sites.b.add_lo_address(B_HOST2);
    let a = IkeProfile::site_a(PSK)
        .initiate(Initiate::Permanent)
        .protected("198.51.100.1", "203.0.113.1");
    let b = a.mirrored().initiate(Initiate::Never);
    let db = Daemon::start(&sites.b, "B", |dir| {
        b.toml(dir) + &second(B_HOST2, A_HOST2, "192.0.2.1", 3002, 3001)
    });
    let mut da = Daemon::start_with_env(&sites.a, "A", &[("IKEHUB_TEST_FAULTS", "1")], |dir| {
        a.toml(dir) + &second(A_HOST2, B_HOST2, "192.0.2.2", 3001, 3002)
    });
    let before = poll_until(UP_TIMEOUT, || child_pair(&sa_rows(&da), POLICY))
        .unwrap_or_else(|| panic!("the IKE tunnel did not come up:\n{}", views(&da)));
    assert_eq!(
        ping(&sites.a, A_HOST2, B_HOST2, 5),
        0.0,
        "manual tunnel down"
    );
    assert_eq!(
        ping(&sites.a, "198.51.100.1", "203.0.113.1", 5),
        0.0,
        "IKE tunnel down"
    );

    // Continuous traffic through the manual tunnel while the IKE peer's actor dies.
    let pinger = sites
        .a
        .command("ping")
        .args(["-n", "-q", "-i", "0.05", "-c", "120", "-W", "1", "-w", "20"])
        .args(["-I", A_HOST2, B_HOST2])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ping starts");
    std::thread::sleep(Duration::from_millis(500));
    let out = da
        .cli(&["inject-fault", "192.0.2.2"])
        .output()
        .expect("ikehub inject-fault runs");
    assert!(
        out.status.success(),
        "fault hook refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Back within seconds, with fresh SAs (new SPIs), the old ones gone.
    let after = poll_until(Duration::from_secs(15), || {
        let p = child_pair(&sa_rows(&da), POLICY)?;
        (p.0.esp_spi != before.0.esp_spi && p.1.esp_spi != before.1.esp_spi).then_some(p)
    })
    .unwrap_or_else(|| panic!("no fresh SAs after the fault:\n{}", views(&da)));
    let rows = sa_rows(&da);
    let leaked: Vec<_> = rows
        .iter()
        .filter(|r| r.esp_spi == before.0.esp_spi || r.esp_spi == before.1.esp_spi)
        .collect();
    assert!(leaked.is_empty(), "old SAs left behind: {leaked:#?}");
    assert!(
        da.is_running(),
        "the daemon died with its peer actor:\n{}",
        da.log()
    );
    assert!(
        da.log().contains("peer actor died"),
        "the supervision did not log what happened:\n{}",
        da.log()
    );

    let out = pinger.wait_with_output().expect("ping finishes");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        common::netns::parse_ping_loss(&text),
        Some(0.0),
        "the other tunnel lost packets while a peer actor was rebuilt:\n{text}"
    );
    assert_eq!(
        ping(&sites.a, "198.51.100.1", "203.0.113.1", 5),
        0.0,
        "IKE tunnel not back after the fault: {after:?}\n{}",
        views(&da)
    );
    drop(db);
}

//! profiles/hub-200-branches.toml, the hub for 200 branches behind one template policy that
//! docs/profiles.md promises a new user can write: `ikehub check` accepts it without a warning
//! and its summary shows what the comments in the file say.

use std::process::Command;

#[test]
fn hub_for_200_branches_checks_clean_and_says_what_it_is() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/profiles/hub-200-branches.toml"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ikehub"))
        .args(["check", "-c", file])
        .output()
        .expect("run ikehub check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    for line in [
        "interfaces: 1: wan 192.0.2.1 on eth0 (IKE 500, NAT-T 4500)",
        "tunnel device: ikehub0 mtu 1400 source 198.51.100.1, routes installed",
        "transforms: 2 ipsec, 2 isakmp",
        "policies: 0 manual, 1 isakmp",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}");
    }
    // The one template: any spoke address, phase 1 then phase 2 offers in order, the hub LAN
    // against the /16 that holds the 200 branch /24s, UDP encapsulation behind NAT.
    let row = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("Branches "))
        .unwrap_or_else(|| panic!("no Branches row in:\n{stdout}"));
    let words: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        words[..5],
        [
            "Branches",
            "isakmp",
            "any",
            "(template)",
            "AES256_SHA256_G14/AES128_SHA1_G14"
        ],
        "{row}"
    );
    assert!(
        row.contains("GCM128/AES128_SHA1 198.51.100.0/24 <-> 10.0.0.0/16"),
        "{row}"
    );
}

//! The Debian package (issue 13, packaging): `packaging/build-deb.sh` builds it with
//! `cargo deb --no-build` from the release binary (built first only when missing), and the
//! package is inspected with `dpkg-deb -c` (file list) and `dpkg-deb -I` (control fields):
//! the binary, the hardened systemd unit, the man pages, the example profiles, the bash, zsh and
//! fish completions, and the shared-library Depends.
//!
//! Needs cargo-deb (`cargo install cargo-deb --locked`; .ci/run installs it) and dpkg-deb /
//! dpkg-shlibdeps (dpkg-dev). Outside CI it skips when they are missing; under `CI=true` it
//! fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TempDir;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn have_cargo_deb() -> bool {
    Command::new(env!("CARGO"))
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The one .deb `build-deb.sh` wrote into `dir`.
fn built_deb(dir: &Path) -> PathBuf {
    let debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    match debs.as_slice() {
        [one] => one.clone(),
        other => panic!("expected one .deb in {}, found {other:?}", dir.display()),
    }
}

#[test]
fn deb_package_holds_binary_unit_man_pages_examples_and_completions() {
    for tool in ["dpkg-deb", "dpkg-shlibdeps"] {
        if !common::require_tool_or_skip(tool) {
            return;
        }
    }
    if !have_cargo_deb() && !common::skip("cargo-deb is missing (cargo install cargo-deb --locked)")
    {
        return;
    }
    let out = TempDir::new("deb");
    // `cargo` of this test run first in PATH: the script calls `cargo metadata` and `cargo deb`.
    let cargo_dir = Path::new(env!("CARGO")).parent().map(Path::to_path_buf);
    let path = std::env::join_paths(cargo_dir.into_iter().chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    run(Command::new("bash")
        .arg(root().join("packaging/build-deb.sh"))
        .arg(out.path())
        .env("PATH", path)
        .current_dir(root()));
    let deb = built_deb(out.path());

    // File list: `dpkg-deb -c` prints `perms owner size date time ./path`.
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let files: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.'))
        .collect();
    let has = |want: &str| {
        files
            .iter()
            .any(|f| *f == want || f.strip_suffix(".gz") == Some(want))
    };
    let mut expected: Vec<String> = [
        "/usr/bin/ikehub",
        "/lib/systemd/system/ikehub.service",
        "/usr/share/man/man8/ikehub.8",
        "/usr/share/man/man8/ikehub-run.8",
        "/usr/share/man/man8/ikehub-show-events.8",
        "/usr/share/man/man5/ikehub.toml.5",
        "/usr/share/bash-completion/completions/ikehub",
        "/usr/share/zsh/vendor-completions/_ikehub",
        "/usr/share/fish/vendor_completions.d/ikehub.fish",
        "/usr/share/doc/ikehub/docs/profiles.md",
    ]
    .map(String::from)
    .to_vec();
    // Every example profile of the repository.
    for e in std::fs::read_dir(root().join("profiles"))
        .expect("profiles/")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".toml") {
            expected.push(format!("/usr/share/doc/ikehub/examples/{name}"));
        }
    }
    assert!(expected.len() > 12, "profiles/ has examples");
    let missing: Vec<&String> = expected.iter().filter(|w| !has(w)).collect();
    assert!(
        missing.is_empty(),
        "missing from the package: {missing:?}\n{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with("./usr/bin/ikehub")),
        "the binary is executable:\n{listing}"
    );

    // Control fields.
    let info = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.trim_start().strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(field("Package:"), "ikehub", "{info}");
    assert!(
        field("Depends:").contains("libc6"),
        "shared-library Depends: {info}"
    );
    assert!(!field("Description:").is_empty(), "{info}");

    // What was packaged works: the unit is the hardened one, the completions are scripts, the
    // binary runs.
    let tree = TempDir::new("deb-tree");
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(tree.path()));
    let unit = std::fs::read_to_string(tree.join("lib/systemd/system/ikehub.service"))
        .expect("packaged unit");
    for line in [
        "ExecStart=/usr/bin/ikehub run -c /etc/ikehub",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE",
        "RuntimeDirectory=ikehub",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "unit lacks `{line}`:\n{unit}"
        );
    }
    // systemd itself reads the unit without a complaint (an unknown or misspelt key is only a
    // warning to systemctl, so any output fails here). The unit's binary path points into the
    // extracted tree; --man=no: the pages are not installed on the test machine.
    if common::require_tool_or_skip("systemd-analyze") {
        let copy = tree.join("ikh-verify.service");
        let bin = tree.join("usr/bin/ikehub");
        std::fs::write(
            &copy,
            unit.replace("/usr/bin/ikehub", &bin.to_string_lossy()),
        )
        .expect("unit copy");
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&copy)
            .output()
            .expect("systemd-analyze verify");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "systemd-analyze verify ({}):\n{said}",
            out.status
        );
    }
    // ProtectSystem=strict leaves only ReadWritePaths and the runtime directory writable: the
    // default control socket must be in one of them.
    let default_socket = std::path::Path::new(ikehub::config::defaults::CONTROL_SOCKET);
    let writable: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("ReadWritePaths="))
        .flat_map(str::split_whitespace)
        .chain(["/run/ikehub"])
        .collect();
    assert!(
        writable
            .iter()
            .any(|w| default_socket.parent() == Some(std::path::Path::new(w))),
        "system.control-socket's default {} is in no writable path of the unit {writable:?}",
        default_socket.display()
    );
    for (file, marker) in [
        ("usr/share/bash-completion/completions/ikehub", "complete"),
        (
            "usr/share/zsh/vendor-completions/_ikehub",
            "#compdef ikehub",
        ),
        (
            "usr/share/fish/vendor_completions.d/ikehub.fish",
            "complete -c ikehub",
        ),
    ] {
        let text = std::fs::read_to_string(tree.join(file)).unwrap_or_default();
        assert!(
            text.contains(marker) && text.contains("events"),
            "{file} is not ikehub's completion script:\n{text}"
        );
    }
    let version = run(Command::new(tree.join("usr/bin/ikehub")).arg("--version"));
    assert!(version.starts_with("ikehub "), "{version}");
    println!("{}: {} files\n{info}", deb.display(), files.len());
}

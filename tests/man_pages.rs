//! `ikehub man --out DIR` writes ikehub(8), one ikehub-COMMAND(8) per command and
//! ikehub.toml(5): every command `--help` lists is in ikehub(8) and has its page, and every key
//! docs/profiles.md documents is in ikehub.toml(5).

use std::path::PathBuf;
use std::process::Command;

/// A scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("ikehub-man-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A word as the roff writer escapes it (`-` is `\-`).
fn roff(word: &str) -> String {
    word.replace('-', "\\-")
}

/// `--json`, `--log-format` ... as clap_mangen writes them (`\fB\-\-log\-format\fR`).
fn long_options(page: &str) -> Vec<String> {
    page.split("\\fB\\-\\-")
        .skip(1)
        .map(|rest| {
            let name: String = rest
                .replace("\\-", "-")
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect();
            format!("--{name}")
        })
        .filter(|o| o.len() > 2)
        .collect()
}

#[test]
fn man_pages_cover_every_command_and_every_documented_key() {
    let dir = TempDir::new();
    let out = Command::new(env!("CARGO_BIN_EXE_ikehub"))
        .args(["man", "--out"])
        .arg(&dir.0)
        .output()
        .expect("run ikehub man");
    assert!(out.status.success(), "{out:?}");

    let main = read(dir.0.join("ikehub.8"));
    assert!(
        main.starts_with(".ie") || main.contains(".TH ikehub 8"),
        "{main}"
    );
    for cmd in [
        "run",
        "check",
        "show",
        "reload",
        "initiate",
        "terminate",
        "demo",
        "bench",
    ] {
        assert!(
            main.contains(&format!("ikehub\\-{cmd}(8)")),
            "ikehub(8) does not list {cmd}:\n{main}"
        );
        let page = read(dir.0.join(format!("ikehub-{cmd}.8")));
        assert!(page.contains(".SH NAME"), "{page}");
    }
    for show in ["sa", "isakmp", "counters", "peers"] {
        read(dir.0.join(format!("ikehub-show-{show}.8")));
    }
    // Hidden test and packaging hooks get no page.
    assert!(!dir.0.join("ikehub-inject-fault.8").exists());
    assert!(!dir.0.join("ikehub-man.8").exists());

    // docs/cli.md names every command that has a page and every long option the pages list.
    let cli = read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md"));
    let mut options = 0;
    for entry in std::fs::read_dir(&dir.0).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Some(cmd) = name.strip_suffix(".8") else {
            continue;
        };
        let words = cmd.replace('-', " ");
        assert!(
            cli.contains(&format!("`{words}")),
            "docs/cli.md does not describe `{words}`"
        );
        let page = read(dir.0.join(&name));
        for opt in long_options(&page) {
            assert!(
                ['`', ' ', '[']
                    .iter()
                    .any(|c| cli.contains(&format!("{c}{opt}"))),
                "docs/cli.md does not describe {opt} of `{words}`"
            );
            options += 1;
        }
    }
    assert!(options > 20, "only {options} options found in the pages");

    let toml = read(dir.0.join("ikehub.toml.5"));
    assert!(toml.starts_with(".TH IKEHUB.TOML 5"), "{toml}");
    let md = read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/profiles.md"));
    let mut keys = 0;
    for line in md.lines() {
        if let Some(h) = line.strip_prefix("## [") {
            let table = h.trim_end_matches(']');
            assert!(
                toml.contains(&format!(".SH \"[{}]\"", roff(table))),
                "ikehub.toml(5) has no section [{table}]"
            );
        } else if let Some(row) = line.strip_prefix("| `") {
            let key = row.split('`').next().unwrap_or_default();
            assert!(
                toml.contains(&format!(".TP\n\\fB{}\\fR (", roff(key))),
                "ikehub.toml(5) does not document {key}"
            );
            keys += 1;
        }
    }
    assert!(keys > 40, "only {keys} keys found in docs/profiles.md");
}

//! Shared helpers for the integration tests (`mod common;` in each test file).
//!
//! Everything a test creates (network namespaces, daemons, captures, iperf3 servers, temp
//! directories) is owned by a guard whose `Drop` removes it, so a failing assertion cleans up as
//! well as a passing test. Names carry the test process id and a counter, so tests running in
//! parallel threads (and parallel test binaries) never collide.
//!
//! Environment rules: under CI (`CI=true`) a missing tool or a non-root user is a hard failure;
//! elsewhere such tests print what is missing and return early.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code, unused_imports)]

pub mod daemon;
pub mod forge;
pub mod hub;
pub mod ike;
pub mod ikescan;
pub mod iperf;
pub mod ipv6;
pub mod nat;
pub mod netns;
pub mod refpkt;
pub mod sa;
pub mod strongswan;
pub mod swarm;
pub mod tunnel;
pub mod unpriv;
pub mod wireshark;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use daemon::Daemon;
pub use netns::{Netns, TwoSites, ping};
pub use wireshark::Capture;

/// True when running under CI (`CI` set to anything but empty, `0` or `false`).
pub fn in_ci() -> bool {
    match std::env::var("CI") {
        Ok(v) => !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false")),
        Err(_) => false,
    }
}

/// Outside CI: print why the test is skipped and return false. Under CI: panic.
pub fn skip(reason: &str) -> bool {
    if in_ci() {
        panic!("CI=true and this test cannot run: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    false
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `if !require_root_or_skip() { return; }`
pub fn require_root_or_skip() -> bool {
    is_root() || skip("needs root (network namespaces, TUN devices, raw sockets)")
}

/// Looks `name` up in `PATH` (plus the sbin directories, which a non-login root shell may lack).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `if !require_tool_or_skip("tshark") { return; }`
pub fn require_tool_or_skip(name: &str) -> bool {
    find_tool(name).is_some()
        || skip(&format!(
            "`{name}` not found in PATH (install it: `sudo bash .ci/run` installs the suite's tools)"
        ))
}

/// Root plus every tool in `tools`; prints/panics like the single checks.
pub fn require_env_or_skip(tools: &[&str]) -> bool {
    if !require_root_or_skip() {
        return false;
    }
    tools.iter().all(|t| require_tool_or_skip(t))
}

/// The daemon binary under test: `$IKEHUB_BIN` if set (CI points it at the release build, for
/// realistic iperf3 numbers), else the binary cargo built for this test run.
pub fn ikehub_bin() -> PathBuf {
    match std::env::var_os("IKEHUB_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_ikehub")),
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique across the threads of this process and across concurrently running test
/// processes: `ikh-<pid>-<n>-<tag>`. `.ci/run` removes namespaces whose pid is gone.
pub fn unique_name(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("ikh-{}-{}-{}", std::process::id(), n, tag)
}

/// A temporary directory removed on drop (kept when `IKEHUB_KEEP_TEST_DIRS` is set, for
/// debugging). World-readable (0755) so an unprivileged user can run a binary copied into it.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(unique_name(tag));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("IKEHUB_KEEP_TEST_DIRS").is_some() {
            eprintln!("keeping {}", self.path.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Runs a command to completion; panics with its output if it fails.
pub fn run_ok<I, S>(program: &str, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args);
    output_ok(&mut cmd)
}

/// Runs a prepared command to completion (stdin closed); panics with its output if it fails.
pub fn output_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Waits for a child up to `timeout`; kills it (SIGKILL) if it is still running then.
/// Returns `None` on timeout.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Sends `signal` to a child, waits up to `grace`, then SIGKILLs it. Reaps it in all cases.
pub fn stop_child(child: &mut Child, signal: i32, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: plain kill(2) on our own, not yet reaped, child.
        unsafe { libc::kill(pid, signal) };
    }
    wait_timeout(child, grace)
}

/// Polls `f` every 50 ms until it returns `Some`, or `timeout` passes.
pub fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

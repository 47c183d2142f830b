//! A guard around one `ikehub run` daemon inside a network namespace.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{Netns, TempDir, ikehub_bin, poll_until, stop_child};

/// How long a daemon may take to answer on its control socket after start (slow shared CI).
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a daemon may take to stop after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// `ikehub run -c CONFIG ARGS...` in namespace `netns`, stdout and stderr into `log`, with `env`
/// (and `RUST_LOG=info` unless the test's environment sets it).
fn launch(
    bin: &Path,
    netns: &str,
    config: &Path,
    args: &[String],
    log: File,
    env: &[(&str, &str)],
) -> Child {
    let log2 = log.try_clone().expect("dup log file");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns])
        .arg(bin)
        .arg("run")
        .arg("-c")
        .arg(config)
        .args(args);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    cmd.envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()))
}

pub struct Daemon {
    label: String,
    bin: PathBuf,
    netns: String,
    child: Option<Child>,
    config: PathBuf,
    /// More `ikehub run` options (kept for a restart).
    args: Vec<String>,
    log: PathBuf,
    // Last field: dropped after the child is gone.
    dir: TempDir,
}

impl Daemon {
    /// Writes the profile returned by `profile(dir)` to `dir/ikehub.toml` (the closure gets the
    /// daemon's private temp dir, for `system.control-socket`), starts `ikehub run -c FILE` in
    /// `ns` with stdout and stderr going to `dir/daemon.log`, and waits until
    /// `ikehub show sa -c FILE --json` answers. Panics (printing the log) if the daemon exits or
    /// does not answer within [`READY_TIMEOUT`].
    pub fn start(ns: &Netns, label: &str, profile: impl FnOnce(&Path) -> String) -> Daemon {
        let d = Daemon::spawn(ns, label, profile);
        d.wait_ready()
    }

    /// Like [`Daemon::start`] without waiting for the control socket.
    pub fn spawn(ns: &Netns, label: &str, profile: impl FnOnce(&Path) -> String) -> Daemon {
        Daemon::spawn_with(&ikehub_bin(), ns, label, profile)
    }

    /// [`Daemon::start`] with extra environment variables for the daemon (e.g. the test-only
    /// `IKEHUB_TEST_FAULTS=1`).
    pub fn start_with_env(
        ns: &Netns,
        label: &str,
        env: &[(&str, &str)],
        profile: impl FnOnce(&Path) -> String,
    ) -> Daemon {
        Daemon::spawn_env(&ikehub_bin(), ns, label, env, &[], profile).wait_ready()
    }

    /// [`Daemon::start`] with more `ikehub run` options (e.g. `--esp-key-log FILE`).
    pub fn start_with_args(
        ns: &Netns,
        label: &str,
        args: &[String],
        profile: impl FnOnce(&Path) -> String,
    ) -> Daemon {
        Daemon::spawn_env(&ikehub_bin(), ns, label, &[], args, profile).wait_ready()
    }

    /// [`Daemon::spawn`] with another binary (the harness's self-test uses a stand-in script).
    pub fn spawn_with(
        bin: &Path,
        ns: &Netns,
        label: &str,
        profile: impl FnOnce(&Path) -> String,
    ) -> Daemon {
        Daemon::spawn_env(bin, ns, label, &[], &[], profile)
    }

    fn spawn_env(
        bin: &Path,
        ns: &Netns,
        label: &str,
        env: &[(&str, &str)],
        args: &[String],
        profile: impl FnOnce(&Path) -> String,
    ) -> Daemon {
        let dir = TempDir::new(&format!("daemon-{label}"));
        let config = dir.join("ikehub.toml");
        std::fs::write(&config, profile(dir.path()))
            .unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
        let log = dir.join("daemon.log");
        let log_file =
            File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let child = launch(bin, ns.name(), &config, args, log_file, env);
        Daemon {
            label: label.to_string(),
            bin: bin.to_path_buf(),
            netns: ns.name().to_string(),
            child: Some(child),
            config,
            args: args.to_vec(),
            log,
            dir,
        }
    }

    /// Waits until the control socket answers; panics with the log if it does not.
    pub fn wait_ready(mut self) -> Daemon {
        let ready = poll_until(READY_TIMEOUT, || {
            if !self.is_running() {
                return Some(false);
            }
            self.try_show_sa_json().ok().map(|_| true)
        });
        match ready {
            Some(true) => self,
            Some(false) => panic!(
                "daemon {} exited during start-up ({:?}); its profile and log follow",
                self.label,
                self.child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten()),
            ),
            None => panic!(
                "daemon {} did not answer `show sa` within {READY_TIMEOUT:?}; its profile and log follow",
                self.label,
            ),
        }
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Everything the daemon wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("<no log: {e}>"))
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// An `ikehub` command with `-c CONFIG` appended after `args`, run inside the namespace.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns])
            .arg(&self.bin)
            .args(args)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null());
        cmd
    }

    /// `ikehub show sa -c CONFIG --json`, parsed.
    pub fn try_show_sa_json(&self) -> Result<Value, String> {
        let out = self
            .cli(&["show", "sa", "--json"])
            .output()
            .map_err(|e| format!("cannot run ikehub show sa: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ikehub show sa failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "show sa --json is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// A restart of the daemon: sends `signal` (SIGKILL is a crash, SIGTERM a clean stop that
    /// sends deletes), waits for the exit ([`STOP_GRACE`], then SIGKILL), starts `ikehub run`
    /// again with the same profile and control socket (its output appended to the same log)
    /// and waits until it answers. Panics like [`Daemon::start`]. Returns the old exit status.
    pub fn restart(self, signal: i32) -> (Option<ExitStatus>, Daemon) {
        let mut d = self;
        let status = d.child.take().and_then(|mut c| {
            let s = stop_child(&mut c, signal, STOP_GRACE);
            if s.is_none() {
                let _ = stop_child(&mut c, libc::SIGKILL, STOP_GRACE);
            }
            s
        });
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&d.log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", d.log.display()));
        d.child = Some(launch(&d.bin, &d.netns, &d.config, &d.args, log, &[]));
        (status, d.wait_ready())
    }

    /// Stops the daemon with SIGTERM (graceful), SIGKILL after [`STOP_GRACE`]; returns its exit
    /// status (`None` if it had to be killed). The temp dir is removed.
    pub fn stop(mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        stop_child(&mut child, libc::SIGTERM, STOP_GRACE)
    }
}

/// `ikehub show sa --json` of a running daemon; panics with the daemon log on failure.
pub fn show_sa_json(d: &Daemon) -> Value {
    d.try_show_sa_json()
        .unwrap_or_else(|e| panic!("daemon {}: {e}\nlog:\n{}", d.label, d.log()))
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = stop_child(&mut child, libc::SIGTERM, STOP_GRACE);
            if status.is_none() {
                eprintln!(
                    "daemon {} ignored SIGTERM for {STOP_GRACE:?}, killed",
                    self.label
                );
            }
        }
        if std::thread::panicking() {
            let profile = std::fs::read_to_string(&self.config).unwrap_or_default();
            eprintln!(
                "----- profile of daemon {label} ({config}) -----\n{profile}\n\
                 ----- log of daemon {label} (netns {netns}) -----\n{log}\n----- end of log -----",
                label = self.label,
                config = self.config.display(),
                netns = self.netns,
                log = self.log()
            );
        }
    }
}

/// The sum over the shards of field `name` of `show counters --json` (0 when absent).
pub fn shard_counter(d: &Daemon, name: &str) -> u64 {
    let out = d
        .cli(&["show", "counters", "--json"])
        .output()
        .unwrap_or_else(|e| panic!("show counters: {e}"));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v.as_array()
        .map(|shards| {
            shards
                .iter()
                .map(|s| s["counters"][name].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

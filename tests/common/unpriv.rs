//! Running a program as an unprivileged user.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::{TempDir, find_tool, is_root, wait_timeout};

/// A copy of `bin` in a fresh 0755 temp dir, mode 0755, so that `nobody` can execute it even
/// when the original sits under a private directory such as /root. Keep the `TempDir` alive.
///
/// `cp` writes the copy, not this process: a child that another test thread forks while the
/// copy is open for writing here inherits that descriptor until it execs, and executing the
/// copy then fails with ETXTBSY ("Text file busy", seen in CI with two demo tests at once).
pub fn world_executable_copy(bin: &Path) -> (TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("unpriv");
    let name = bin.file_name().expect("binary file name");
    let copy = dir.path().join(name);
    let status = Command::new("cp")
        .arg("--")
        .arg(bin)
        .arg(&copy)
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run cp: {e}"));
    assert!(
        status.success(),
        "cp {} {}: {status}",
        bin.display(),
        copy.display()
    );
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod 0755");
    (dir, copy)
}

/// A command that runs `program` as an unprivileged user: as root through
/// `setpriv --reuid=nobody --regid=nogroup --clear-groups`, otherwise (already unprivileged)
/// directly. Working directory `/`, stdin closed.
pub fn unprivileged_command(program: &Path) -> Command {
    let mut cmd = if is_root() {
        let setpriv = find_tool("setpriv").expect("setpriv (util-linux) is needed as root");
        let mut c = Command::new(setpriv);
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.current_dir("/")
        .stdin(Stdio::null())
        .env("HOME", "/nonexistent");
    cmd
}

/// Runs `cmd` capturing stdout and stderr, killing it after `timeout` (returns `None` then).
pub fn output_with_timeout(cmd: &mut Command, timeout: Duration) -> Option<Output> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status = wait_timeout(&mut child, timeout);
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        Some(status) => Some(Output {
            status,
            stdout: stdout.into(),
            stderr: stderr.into(),
        }),
        None => {
            eprintln!("{cmd:?} timed out after {timeout:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
            None
        }
    }
}

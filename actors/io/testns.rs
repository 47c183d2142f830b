//! Test support: root checks and throw-away network namespaces.

use std::io;

/// True when running as root. Otherwise prints why `test` is skipped and returns false,
/// except under `CI=true`, where a missing privilege is a failure.
pub(crate) fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    // Same rule as the integration tests: CI set to anything but empty, 0 or false.
    if std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false" | "FALSE")) {
        panic!("{test}: needs root, and CI=true forbids skipping");
    }
    // Written to the stderr handle directly: libtest captures `eprintln!` of passing tests,
    // and a skip must be visible.
    use std::io::Write;
    let _ = writeln!(
        io::stderr().lock(),
        "skipping {test}: needs root (under CI=true this is a failure)"
    );
    false
}

/// Runs `f` on a fresh thread inside a new network namespace with `lo` up, and returns its
/// result (None when skipped for lack of root). Namespaces are per thread: the namespace,
/// and every device, route and socket created in it, disappears when the thread ends,
/// whether `f` returns or panics; a panic is re-raised here.
pub(crate) fn in_netns<T: Send + 'static>(
    test: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    if !root_or_skip(test) {
        return None;
    }
    let handle = std::thread::Builder::new()
        .name(format!("netns-{test}"))
        .spawn(move || {
            // SAFETY: unshare affects only this thread, which exits when `f` is done.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                panic!("unshare(CLONE_NEWNET): {}", io::Error::last_os_error());
            }
            super::link::set_interface_up("lo").expect("bringing lo up in the new namespace");
            f()
        })
        .expect("spawning the namespace thread");
    match handle.join() {
        Ok(v) => Some(v),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

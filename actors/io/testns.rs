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

/// Reads batches with `recv` until `want` packets arrived (at most 2 s), then 100 ms more for
/// packets that should not come, mapping each (packet, source) with `take`. For the socket
/// tests that check which packets a filtered socket gets.
pub(crate) fn recv_until<T>(
    mut recv: impl FnMut(&mut super::batch::PacketBatch) -> io::Result<usize>,
    want: usize,
    mut take: impl FnMut(&[u8], Option<std::net::SocketAddr>) -> T,
) -> Vec<T> {
    use std::time::{Duration, Instant};
    let mut b = super::batch::PacketBatch::with_defaults();
    let mut got = Vec::new();
    let mut deadline = Instant::now() + Duration::from_secs(2);
    let mut settled = false;
    loop {
        b.clear();
        match recv(&mut b) {
            Ok(_) => got.extend(b.iter().map(|(p, a)| take(p, a))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => panic!("recvmmsg: {e}"),
        }
        if got.len() >= want && !settled {
            settled = true;
            deadline = Instant::now() + Duration::from_millis(100);
        }
        if Instant::now() > deadline {
            return got;
        }
    }
}

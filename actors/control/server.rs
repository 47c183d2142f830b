//! The daemon side of the control socket: accepts connections, reads one request line, asks the
//! registry, writes one response line.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use actix::prelude::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

use super::protocol::{Request, Response};
use crate::events::EventLog;

/// A response at least this long was built from a status list of many tunnels (a `show sa` or
/// `show peers` row is a few hundred bytes of JSON).
const GIVE_BACK_AFTER_BYTES: usize = 256 << 10;

/// Returns the free heap to the kernel after a large answer. Its rows, strings and JSON, built
/// here and on the shards' threads, were freed, but glibc keeps freed memory in its arenas:
/// measured at 10,000 tunnels (`benches/hub_memory.sh --poll 10`), ten `show peers` and
/// `show sa` grew the hub's RSS from 74 to 99 MB for good, 2.5 KiB per tunnel, so a monitoring
/// script polling them made a big hub 40% bigger. `malloc_trim(0)` releases the free pages of
/// every arena; it walks the free chunks, so it runs only after a large answer, on the control
/// path, never per packet.
fn give_back_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim(3) only releases memory that is free; it takes the allocator's own
    // locks and has no precondition.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A control request handed to the registry.
#[derive(Message)]
#[rtype(result = "Response")]
pub struct Control(pub Request);

/// Removes the socket file when the daemon stops.
pub struct SocketGuard(PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Binds the control socket (mode 0600) and serves it on the current actix arbiter.
pub fn serve(
    path: &Path,
    handler: Recipient<Control>,
    events: EventLog,
) -> io::Result<SocketGuard> {
    if path.exists() {
        // A live daemon answering on it means a second instance would steal its socket.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "control socket {} is in use by a running daemon",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    actix::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            let events = events.clone();
            actix::spawn(async move {
                let (rd, mut wr) = stream.into_split();
                let mut line = String::new();
                let mut rd = BufReader::new(rd);
                if rd.read_line(&mut line).await.is_err() {
                    return;
                }
                let response = match serde_json::from_str::<Request>(&line) {
                    Ok(Request::ShowEvents { follow: true, .. }) => {
                        return super::stream::follow(&events, rd, wr).await;
                    }
                    Ok(Request::ShowEvents { last, .. }) => super::stream::snapshot(&events, last),
                    Ok(req) => {
                        handler
                            .send(Control(req))
                            .await
                            .unwrap_or_else(|e| Response::Error {
                                message: format!("daemon is shutting down: {e}"),
                            })
                    }
                    Err(e) => Response::Error {
                        message: format!("malformed control request: {e}"),
                    },
                };
                let mut out = serde_json::to_string(&response).unwrap_or_default();
                drop(response);
                out.push('\n');
                let _ = wr.write_all(out.as_bytes()).await;
                let large = out.len() >= GIVE_BACK_AFTER_BYTES;
                drop(out);
                if large {
                    give_back_free_heap();
                }
            });
        }
    });
    Ok(SocketGuard(path.to_path_buf()))
}

#[cfg(all(test, target_env = "gnu"))]
mod tests {
    use super::*;

    /// Resident pages of this process, from /proc/self/statm, in bytes.
    fn rss_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        // SAFETY: sysconf(3) with a valid name has no other effect.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        pages * u64::try_from(page).unwrap_or(4096)
    }

    #[test]
    fn freed_heap_between_live_blocks_goes_back_to_the_kernel() {
        // 64 MiB in 1 KiB blocks, as a 10,000-row answer is many small strings; one block in
        // 64 stays live, so the freed memory sits between live blocks, where glibc's free
        // keeps it (only the top of the heap shrinks by itself).
        const BLOCKS: usize = 64 << 10;
        let mut blocks: Vec<Vec<u8>> = (0..BLOCKS).map(|i| vec![i as u8; 1024]).collect();
        let mut kept = Vec::with_capacity(BLOCKS / 64);
        for (i, b) in blocks.drain(..).enumerate() {
            if i % 64 == 0 {
                kept.push(b);
            }
        }
        drop(blocks);
        let before = rss_bytes();
        give_back_free_heap();
        let after = rss_bytes();
        assert!(
            before.saturating_sub(after) >= 16 << 20,
            "RSS {before} -> {after} bytes: the ~63 MiB freed between live blocks stayed"
        );
        assert_eq!(kept.len(), BLOCKS / 64);
    }
}

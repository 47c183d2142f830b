//! `show events` on the control socket: the ring as one response, or with `follow` a response
//! line and then one JSON line per event (docs/cli.md).
//!
//! A follower never slows the daemon: events reach it through a bounded broadcast
//! (actors/events.rs); one that falls [`crate::events::BACKLOG`] events behind, or whose socket
//! does not take a line within [`WRITE_TIMEOUT`], is dropped with a note line
//! `{"note": "..."}` (when the socket still takes it) and a warning in the log.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::warn;

use super::protocol::Response;
use crate::events::{EventLog, MAX_SUBSCRIBERS, Next, RING};

/// How long one line may wait for a follower's socket.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The response to `show events` without `follow`: the last `last` events, oldest first.
pub fn snapshot(events: &EventLog, last: Option<usize>) -> Response {
    let list = events.recent(last.unwrap_or(RING));
    let list: Vec<&crate::events::TunnelEvent> = list.iter().map(|e| &**e).collect();
    match serde_json::to_value(&list) {
        Ok(body) => Response::Ok { body },
        Err(e) => Response::Error {
            message: format!("cannot encode the events: {e}"),
        },
    }
}

async fn write_line<W: AsyncWrite + Unpin>(
    wr: &mut W,
    value: &impl serde::Serialize,
) -> Result<(), String> {
    let mut line = serde_json::to_string(value).map_err(|e| e.to_string())?;
    line.push('\n');
    match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(line.as_bytes())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "socket did not take a line within {WRITE_TIMEOUT:?}"
        )),
    }
}

/// Streams events to one follower until it closes the connection, falls behind, or the daemon
/// stops. `rd` is only watched for the follower going away.
pub async fn follow<R, W>(events: &EventLog, mut rd: R, mut wr: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Some(mut sub) = events.subscribe() else {
        let refusal = Response::Error {
            message: format!(
                "{MAX_SUBSCRIBERS} event streams are open already: close one and try again"
            ),
        };
        let _ = write_line(&mut wr, &refusal).await;
        return;
    };
    let ok = Response::Ok {
        body: serde_json::json!({ "following": true }),
    };
    if write_line(&mut wr, &ok).await.is_err() {
        return;
    }
    let mut ignored = [0u8; 256];
    loop {
        tokio::select! {
            // EOF or an error: the follower is gone. Anything it sends is read and ignored.
            r = rd.read(&mut ignored) => {
                if matches!(r, Ok(0) | Err(_)) {
                    return;
                }
            }
            next = sub.next() => match next {
                Next::Event(ev) => {
                    if let Err(e) = write_line(&mut wr, &*ev).await {
                        warn!("event stream subscriber dropped: {e}");
                        return;
                    }
                }
                Next::Lagged(missed) => {
                    warn!("event stream subscriber dropped: {missed} events behind");
                    let note = serde_json::json!({
                        "note": format!(
                            "dropped: this stream fell {missed} events behind (the daemon \
                             never waits for a reader); `show events` lists the last {RING}"
                        )
                    });
                    let _ = write_line(&mut wr, &note).await;
                    return;
                }
                Next::Closed => return,
            }
        }
    }
}

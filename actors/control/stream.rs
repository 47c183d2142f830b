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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt, BufReader};

    use super::*;
    use crate::events::{Kind, TunnelEvent};

    /// A follower that does not keep up: the daemon publishes without waiting, and the stream
    /// ends with the note line instead of the events it can no longer deliver in order.
    #[test]
    fn lagging_follower_gets_a_note_and_is_dropped() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let events = EventLog::with_bounds(64, 2, 4);
            let (client, server) = tokio::io::duplex(4096);
            let (srd, swr) = tokio::io::split(server);
            let log = events.clone();
            let task = tokio::spawn(async move { follow(&log, srd, swr).await });
            let mut client = BufReader::new(client);
            let mut line = String::new();
            client.read_line(&mut line).await.unwrap();
            assert!(line.contains(r#""following":true"#), "{line}");
            // Ten events before the follower runs again: it can hold two.
            for _ in 0..10 {
                events.publish(TunnelEvent::new(Kind::Up, "P", "192.0.2.2:500", None));
            }
            let mut rest = Vec::new();
            loop {
                line.clear();
                if client.read_line(&mut line).await.unwrap() == 0 {
                    break;
                }
                rest.push(line.clone());
            }
            task.await.unwrap();
            assert_eq!(rest.len(), 1, "{rest:?}");
            assert!(
                rest[0].starts_with(r#"{"note":"dropped: this stream fell 8 events behind"#),
                "{rest:?}"
            );
            // Its place is free again.
            assert!(events.subscribe().is_some());
        });
    }
}

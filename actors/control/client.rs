//! The CLI side of the control socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::protocol::{Request, Response};

/// Sends one request and returns the body of an `Ok` response, or an operator-readable error.
pub fn call(
    socket: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<serde_json::Value, String> {
    let (_, body) = exchange(socket, request, timeout)?;
    Ok(body)
}

/// `show events --follow`: after the daemon's `Ok`, hands every further line (one JSON event)
/// to `line` until the daemon closes the stream. A `{"note": ...}` line (the daemon dropped a
/// stream that fell behind) ends it with that note as the error.
pub fn follow(
    socket: &Path,
    request: &Request,
    timeout: Duration,
    mut line: impl FnMut(&str),
) -> Result<(), String> {
    let (mut reader, _) = exchange(socket, request, timeout)?;
    // On stderr, so stdout stays JSON lines: from here on no event is missed.
    eprintln!(
        "following the events of the daemon on {} (interrupt to stop)",
        socket.display()
    );
    // Events may be hours apart: no read timeout from here on.
    reader
        .get_ref()
        .set_read_timeout(None)
        .map_err(|e| e.to_string())?;
    let mut buf = String::new();
    loop {
        buf.clear();
        match reader.read_line(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("event stream from {}: {e}", socket.display())),
        }
        let text = buf.trim_end();
        if let Ok(serde_json::Value::Object(o)) = serde_json::from_str(text)
            && let Some(note) = o.get("note").and_then(|n| n.as_str())
        {
            return Err(format!("the daemon ended the event stream: {note}"));
        }
        line(text);
    }
}

/// Sends `request`, reads the response line; returns the reader (positioned after it) and the
/// body of an `Ok`.
fn exchange(
    socket: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<(BufReader<UnixStream>, serde_json::Value), String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        format!(
            "no ikehub daemon answers on {}: {e} (is `ikehub run` running with this config?)",
            socket.display()
        )
    })?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let mut line = serde_json::to_string(request).map_err(|e| e.to_string())?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| format!("cannot talk to the daemon on {}: {e}", socket.display()))?;
    let mut reply = String::new();
    let mut reader = BufReader::new(stream);
    reader
        .read_line(&mut reply)
        .map_err(|e| format!("the daemon on {} did not answer: {e}", socket.display()))?;
    if reply.is_empty() {
        return Err(format!(
            "the daemon on {} closed the connection",
            socket.display()
        ));
    }
    match serde_json::from_str::<Response>(&reply) {
        Ok(Response::Ok { body }) => Ok((reader, body)),
        Ok(Response::Error { message }) => Err(message),
        Err(e) => Err(format!("unreadable answer from the daemon: {e}")),
    }
}

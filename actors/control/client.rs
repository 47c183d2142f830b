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
    BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(|e| format!("the daemon on {} did not answer: {e}", socket.display()))?;
    if reply.is_empty() {
        return Err(format!(
            "the daemon on {} closed the connection",
            socket.display()
        ));
    }
    match serde_json::from_str::<Response>(&reply) {
        Ok(Response::Ok { body }) => Ok(body),
        Ok(Response::Error { message }) => Err(message),
        Err(e) => Err(format!("unreadable answer from the daemon: {e}")),
    }
}

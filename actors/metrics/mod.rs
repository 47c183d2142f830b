//! The OpenMetrics endpoint (`[system] metrics`, docs/metrics.md): `GET /metrics` answers the
//! exposition built from the same control requests `ikehub show` makes; anything else is 404.
//!
//! A scraper is not trusted more than any other client of a TCP port: a request is read into
//! a fixed buffer (larger requests are refused), each connection has a deadline, at most
//! `MAX_CONNECTIONS` are served at once and more are closed at accept. One request per
//! connection (`Connection: close`), so nothing is kept between requests. A scrape asks the
//! actors over their mailboxes: nothing is added to the data path.

mod encode;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::control::protocol::{Request, Response};
use crate::control::server::Control;
pub use encode::{Format, Snapshot};

/// Connections served at once; one more is accepted and closed at once.
const MAX_CONNECTIONS: usize = 8;
/// The request head a scraper sends is a few hundred bytes; this is the most read.
const MAX_REQUEST: usize = 4096;
/// Input read and dropped after the answer, before closing.
const MAX_DRAIN: usize = 64 * 1024;
/// Reading the request, collecting and writing the answer, all together.
const DEADLINE: Duration = Duration::from_secs(10);

/// Binds `addr` (errors are reported at start, like the control socket) and serves it on the
/// running actix system until it stops.
pub fn serve(addr: SocketAddr, control: Recipient<Control>) -> io::Result<SocketAddr> {
    let std = std::net::TcpListener::bind(addr)?;
    std.set_nonblocking(true)?;
    let listener = TcpListener::from_std(std)?;
    let bound = listener.local_addr()?;
    info!("metrics endpoint on http://{bound}/metrics");
    actix::spawn(accept_loop(listener, control));
    Ok(bound)
}

async fn accept_loop(listener: TcpListener, control: Recipient<Control>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and the like: wait rather than spin.
                warn!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!("metrics: {from}: too many connections, closed");
            continue;
        };
        let control = control.clone();
        actix::spawn(async move {
            if tokio::time::timeout(DEADLINE, connection(stream, &control))
                .await
                .is_err()
            {
                debug!("metrics: {from}: deadline passed, closed");
            }
            drop(permit);
        });
    }
}

/// What the request line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Metrics(Format),
    NotFound,
    /// No complete head within `MAX_REQUEST` bytes.
    TooLarge,
}

/// `GET /metrics` (a query string is ignored: Prometheus sends none, others may) with a
/// complete head; everything else is not found. OpenMetrics when the `Accept` header names it
/// (Prometheus does), else the Prometheus text format.
fn parse(head: &[u8]) -> Target {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return Target::NotFound;
    };
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    if method == b"GET" && path == b"/metrics" {
        Target::Metrics(format(head))
    } else {
        Target::NotFound
    }
}

fn format(head: &[u8]) -> Format {
    let accepts_openmetrics = head.split(|&b| b == b'\n').skip(1).any(|line| {
        let line = String::from_utf8_lossy(line).to_ascii_lowercase();
        line.starts_with("accept:") && line.contains("application/openmetrics-text")
    });
    if accepts_openmetrics {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    }
}

/// The end of the request head (RFC 9112 §2.1: CRLF CRLF; a bare LF LF is tolerated).
fn head_complete(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
}

async fn read_head(stream: &mut TcpStream, buf: &mut [u8; MAX_REQUEST]) -> io::Result<Target> {
    let mut n = 0;
    loop {
        if n == buf.len() {
            return Ok(Target::TooLarge);
        }
        let got = stream.read(&mut buf[n..]).await?;
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        n += got;
        if head_complete(&buf[..n]) {
            return Ok(parse(&buf[..n]));
        }
    }
}

async fn connection(mut stream: TcpStream, control: &Recipient<Control>) {
    let mut buf = [0u8; MAX_REQUEST];
    let target = match read_head(&mut stream, &mut buf).await {
        Ok(t) => t,
        Err(_) => return,
    };
    let (status, content_type, body) = match target {
        Target::Metrics(format) => (
            "200 OK",
            format.content_type(),
            scrape(control).await.render(format),
        ),
        Target::NotFound => ("404 Not Found", "text/plain", "not found\n".to_string()),
        Target::TooLarge => (
            "431 Request Header Fields Too Large",
            "text/plain",
            "request too large\n".to_string(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    if stream.write_all(head.as_bytes()).await.is_err()
        || stream.write_all(body.as_bytes()).await.is_err()
        || stream.shutdown().await.is_err()
    {
        return;
    }
    // Closing with unread input would reset the connection and could discard the answer at
    // the client (a refused oversized request): read the rest, bounded, before closing.
    let mut left = MAX_DRAIN;
    while left > 0 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Asks the registry what `ikehub show sa/peers/isakmp/counters --json` would print.
async fn scrape(control: &Recipient<Control>) -> Snapshot {
    let ask = |req| async move {
        match control.send(Control(req)).await {
            Ok(Response::Ok { body }) => body,
            _ => serde_json::Value::Null,
        }
    };
    let list = |v: serde_json::Value| match v {
        serde_json::Value::Array(a) => a,
        _ => Vec::new(),
    };
    let sas = serde_json::from_value(ask(Request::ShowSa).await).unwrap_or_default();
    Snapshot {
        sas,
        peers: list(ask(Request::ShowPeers).await),
        isakmp: list(ask(Request::ShowIsakmp).await),
        counters: list(ask(Request::ShowCounters).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_is_served() {
        let prom = Target::Metrics(Format::Prometheus);
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), prom);
        assert_eq!(parse(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), prom);
        // What Prometheus 2.x sends.
        assert_eq!(
            parse(
                b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,\
                  text/plain;version=0.0.4;q=0.5\r\n\r\n"
            ),
            Target::Metrics(Format::OpenMetrics)
        );
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Target::NotFound);
        assert_eq!(parse(b"GET /metricsx HTTP/1.1\r\n\r\n"), Target::NotFound);
        assert_eq!(parse(b"POST /metrics HTTP/1.1\r\n\r\n"), Target::NotFound);
        assert_eq!(parse(b"\r\n\r\n"), Target::NotFound);
        assert!(head_complete(b"GET /metrics HTTP/1.1\r\n\r\n"));
        assert!(!head_complete(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"));
    }
}

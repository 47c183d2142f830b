//! Tunnel events an operator follows (docs/cli.md, `show events`): one record per ISAKMP SA up /
//! down, child SA pair up / re-keyed / down, refusal and failure, written once to the log (in
//! words, with structured fields) and kept in a bounded ring that the control socket serves as
//! JSON lines, as a snapshot or as a live stream.
//!
//! Bounds: the ring keeps the last [`RING`] events; at most [`MAX_SUBSCRIBERS`] streams at once,
//! each at most [`BACKLOG`] events behind. Publishing never waits for a subscriber: one that
//! falls further behind is dropped with a note (`tokio::sync::broadcast` overwrites, and the
//! lagging receiver learns how many it missed).
//!
//! What goes in an event is chosen field by field from the session's news, never the key-bearing
//! `SaParams` or a `Debug` dump: policy, peer address:port, the authenticated identity, SPIs as
//! `0x%08x` and cookies as 16 hex digits (as strongSwan and tshark print them), suite, reason.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use ikehub::ike::{ChildSaInfo, SpiPair};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tracing::{info, warn};

/// Events kept for `show events` without `--follow`.
pub const RING: usize = 1024;
/// Live streams at once; one more is refused with an error.
pub const MAX_SUBSCRIBERS: usize = 16;
/// How far a stream may fall behind before it is dropped.
pub const BACKLOG: usize = 256;

/// What happened. The JSON names are kebab-case (`isakmp-up`, `peer-dead`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Phase 1 completed (the first one or a phase-1 re-key).
    IsakmpUp,
    /// An ISAKMP SA is gone.
    IsakmpDown,
    /// A child SA pair was installed: the tunnel carries traffic.
    Up,
    /// A child SA pair replaced an older one (the old pair stays until its own `down`).
    Rekey,
    /// A child SA pair was removed.
    Down,
    /// A negotiated pair was refused: its networks belong to another policy or spoke.
    Refused,
    /// An exchange failed (no proposal chosen, authentication, timeout...).
    Failed,
    /// Dead peer detection got no answer: every SA with the peer is gone.
    PeerDead,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::IsakmpUp => "isakmp-up",
            Kind::IsakmpDown => "isakmp-down",
            Kind::Up => "up",
            Kind::Rekey => "rekey",
            Kind::Down => "down",
            Kind::Refused => "refused",
            Kind::Failed => "failed",
            Kind::PeerDead => "peer-dead",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event, as `show events` prints it (one JSON object per line; absent fields are left out).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelEvent {
    /// Increases by one per event in this daemon: a gap in a stream means events were missed.
    pub seq: u64,
    /// UTC, RFC 3339 with milliseconds.
    pub time: String,
    pub kind: Kind,
    pub policy: String,
    /// The peer's address:port.
    pub peer: String,
    /// The peer's authenticated phase-1 identity ("fqdn:spoke1.example.net").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Our SPI (the peer's packets carry it), `0x%08x`; `show sa` prints it in decimal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spi_in: Option<String>,
    /// The peer's SPI (our packets carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spi_out: Option<String>,
    /// `rekey`: the pair this one replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_spi_in: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_spi_out: Option<String>,
    /// ISAKMP cookies, 16 hex digits (tshark's `isakmp.ispi` / `isakmp.rspi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator_cookie: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responder_cookie: Option<String>,
    /// Operator-readable suite, e.g. `ESP-AES128-SHA1-nopfs tunnel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// The child SA's selectors, `local<->remote`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `0x%08x`, as strongSwan's `ipsec statusall` and tshark's `esp.spi` show an SPI.
pub fn spi_hex(spi: u32) -> String {
    format!("0x{spi:08x}")
}

/// A cookie as 16 hex digits (tshark, strongSwan's `ike_sa` logs).
pub fn cookie_hex(c: &[u8; 8]) -> String {
    c.iter().map(|b| format!("{b:02x}")).collect()
}

impl TunnelEvent {
    pub fn new(kind: Kind, policy: &str, peer: impl ToString, identity: Option<&str>) -> Self {
        TunnelEvent {
            seq: 0,
            time: String::new(),
            kind,
            policy: policy.to_string(),
            peer: peer.to_string(),
            identity: identity.map(str::to_string),
            spi_in: None,
            spi_out: None,
            old_spi_in: None,
            old_spi_out: None,
            initiator_cookie: None,
            responder_cookie: None,
            suite: None,
            networks: Vec::new(),
            reason: None,
        }
    }

    pub fn spis(mut self, spis: SpiPair) -> Self {
        self.spi_in = Some(spi_hex(spis.inbound));
        self.spi_out = Some(spi_hex(spis.outbound));
        self
    }

    pub fn old_spis(mut self, spis: SpiPair) -> Self {
        self.old_spi_in = Some(spi_hex(spis.inbound));
        self.old_spi_out = Some(spi_hex(spis.outbound));
        self
    }

    /// SPIs, suite and selectors of a negotiated pair; its keys are not read.
    pub fn child(self, info: &ChildSaInfo) -> Self {
        let mut ev = self.spis(info.spis());
        ev.suite = Some(info.suite.clone());
        ev.networks = info
            .protected_networks
            .iter()
            .map(|pn| format!("{}<->{}", pn.local, pn.remote))
            .collect();
        ev
    }

    pub fn cookies(mut self, initiator: &[u8; 8], responder: &[u8; 8]) -> Self {
        self.initiator_cookie = Some(cookie_hex(initiator));
        self.responder_cookie = Some(cookie_hex(responder));
        self
    }

    pub fn suite(mut self, suite: &str) -> Self {
        self.suite = Some(suite.to_string());
        self
    }

    pub fn reason(mut self, reason: &str) -> Self {
        self.reason = Some(reason.to_string());
        self
    }

    /// The log line's words (policy and peer come from the peer actor's span).
    pub fn describe(&self) -> String {
        let o = |v: &Option<String>| v.as_deref().unwrap_or("-").to_string();
        let reason = o(&self.reason);
        match self.kind {
            Kind::IsakmpUp => format!(
                "ISAKMP SA up: {}, peer ID {}, cookies {}/{}",
                o(&self.suite),
                o(&self.identity),
                o(&self.initiator_cookie),
                o(&self.responder_cookie)
            ),
            Kind::IsakmpDown => format!(
                "ISAKMP SA down ({reason}): cookies {}/{}",
                o(&self.initiator_cookie),
                o(&self.responder_cookie)
            ),
            Kind::Up => format!(
                "child SA up: {}, SPIs {} in / {} out, {}",
                o(&self.suite),
                o(&self.spi_in),
                o(&self.spi_out),
                self.networks.join(", ")
            ),
            Kind::Rekey => format!(
                "child SA re-keyed: {}, SPIs {} in / {} out replace {} in / {} out",
                o(&self.suite),
                o(&self.spi_in),
                o(&self.spi_out),
                o(&self.old_spi_in),
                o(&self.old_spi_out)
            ),
            Kind::Down => format!(
                "child SA down ({reason}): SPIs {} in / {} out",
                o(&self.spi_in),
                o(&self.spi_out)
            ),
            Kind::Refused => format!(
                "child SA refused: {reason}, SPIs {} in / {} out",
                o(&self.spi_in),
                o(&self.spi_out)
            ),
            Kind::Failed => format!("exchange failed: {reason}"),
            Kind::PeerDead => format!("peer dead: {reason}"),
        }
    }

    /// Writes the one log line of this event: words plus the fields a log pipeline keys on.
    /// Refusals and failures are warnings; the rest is info.
    pub fn log(&self) {
        let kind = self.kind.as_str();
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        let (identity, msg) = (o(&self.identity), self.describe());
        match self.kind {
            Kind::IsakmpUp | Kind::IsakmpDown => info!(
                event = kind,
                identity,
                initiator_cookie = o(&self.initiator_cookie),
                responder_cookie = o(&self.responder_cookie),
                "{msg}"
            ),
            // A re-key has the replaced pair beside the new one, so that a log pipeline can
            // follow a tunnel from pair to pair without parsing the words (`None`: no field).
            Kind::Up | Kind::Rekey | Kind::Down => info!(
                event = kind,
                identity,
                spi_in = o(&self.spi_in),
                spi_out = o(&self.spi_out),
                old_spi_in = self.old_spi_in.as_deref(),
                old_spi_out = self.old_spi_out.as_deref(),
                "{msg}"
            ),
            Kind::Refused => warn!(
                event = kind,
                identity,
                spi_in = o(&self.spi_in),
                spi_out = o(&self.spi_out),
                "{msg}"
            ),
            Kind::Failed | Kind::PeerDead => warn!(event = kind, identity, "{msg}"),
        }
    }
}

/// The daemon's event ring and its live subscribers. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    ring: Mutex<Ring>,
    capacity: usize,
    tx: broadcast::Sender<Arc<TunnelEvent>>,
    subscribers: AtomicUsize,
    max_subscribers: usize,
}

struct Ring {
    next_seq: u64,
    events: VecDeque<Arc<TunnelEvent>>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog::with_bounds(RING, BACKLOG, MAX_SUBSCRIBERS)
    }
}

impl EventLog {
    pub fn with_bounds(ring: usize, backlog: usize, max_subscribers: usize) -> Self {
        let (tx, _) = broadcast::channel(backlog.max(1));
        EventLog {
            inner: Arc::new(Inner {
                ring: Mutex::new(Ring {
                    next_seq: 1,
                    events: VecDeque::with_capacity(ring.min(RING)),
                }),
                capacity: ring.max(1),
                tx,
                subscribers: AtomicUsize::new(0),
                max_subscribers,
            }),
        }
    }

    /// Numbers and stamps the event, keeps it in the ring and hands it to every stream. Never
    /// waits on a subscriber. (The caller logs it: [`TunnelEvent::log`].)
    pub fn publish(&self, mut ev: TunnelEvent) -> Arc<TunnelEvent> {
        ev.time = rfc3339(SystemTime::now());
        // A poisoned lock only means another publisher panicked mid-push: the ring is still a
        // valid deque.
        let mut ring = self.inner.ring.lock().unwrap_or_else(|p| p.into_inner());
        ev.seq = ring.next_seq;
        ring.next_seq = ring.next_seq.saturating_add(1);
        let ev = Arc::new(ev);
        if ring.events.len() >= self.inner.capacity {
            ring.events.pop_front();
        }
        ring.events.push_back(ev.clone());
        // Under the lock, so streams see events in `seq` order. Err = nobody listens.
        let _ = self.inner.tx.send(ev.clone());
        ev
    }

    /// The last `n` events, oldest first.
    pub fn recent(&self, n: usize) -> Vec<Arc<TunnelEvent>> {
        let ring = self.inner.ring.lock().unwrap_or_else(|p| p.into_inner());
        let skip = ring.events.len().saturating_sub(n);
        ring.events.iter().skip(skip).cloned().collect()
    }

    /// A live stream of the events published from now on; `None` when [`MAX_SUBSCRIBERS`]
    /// streams are already open.
    pub fn subscribe(&self) -> Option<Subscription> {
        let inner = &self.inner;
        let mut n = inner.subscribers.load(Ordering::Relaxed);
        loop {
            if n >= inner.max_subscribers {
                return None;
            }
            match inner.subscribers.compare_exchange_weak(
                n,
                n + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => n = now,
            }
        }
        Some(Subscription {
            rx: inner.tx.subscribe(),
            log: self.clone(),
        })
    }
}

/// What a stream gets next.
#[derive(Debug)]
pub enum Next {
    Event(Arc<TunnelEvent>),
    /// The subscriber fell more than [`BACKLOG`] events behind and missed this many: drop it.
    Lagged(u64),
    /// The daemon is going away.
    Closed,
}

pub struct Subscription {
    rx: broadcast::Receiver<Arc<TunnelEvent>>,
    log: EventLog,
}

impl Subscription {
    pub async fn next(&mut self) -> Next {
        match self.rx.recv().await {
            Ok(ev) => Next::Event(ev),
            Err(broadcast::error::RecvError::Lagged(n)) => Next::Lagged(n),
            Err(broadcast::error::RecvError::Closed) => Next::Closed,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.log.inner.subscribers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (RFC 3339, UTC), without a date crate.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests;

//! What `ikehub loadgen` counts while the swarm runs (relaxed atomics, a lock once per tunnel,
//! never per datagram) and the report it prints at the end: text for people, `--json` for
//! scripts (docs/cli.md lists the fields).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

/// Kept per failure reason: how many, and the first full text seen (the key is the class).
const EXAMPLE_MAX_LEN: usize = 300;

#[derive(Debug, Default)]
pub struct Stats {
    /// Spokes whose main-mode message 1 was sent.
    pub started: AtomicU64,
    /// Quick mode completed (the child SA pair is negotiated).
    pub up: AtomicU64,
    /// Spokes that ended without a tunnel.
    pub failed: AtomicU64,
    /// Tunnels we deleted (delete notifications sent) after `--hold` or at the end.
    pub deleted: AtomicU64,
    /// Tunnels the responder deleted (or declared us dead) before we did.
    pub closed_by_peer: AtomicU64,
    /// Spokes whose task ended (up and deleted, or failed).
    pub done: AtomicU64,
    /// IKE datagrams sent (first transmissions and retransmissions).
    pub sent: AtomicU64,
    /// Datagrams that could not be sent.
    pub send_errors: AtomicU64,
    /// Microseconds from the first message 1 to the epoch of the last tunnel up.
    pub last_up_us: AtomicU64,
    /// `--reconnect`: tunnels lost while held (the hub deleted them or DPD declared it dead).
    pub lost: AtomicU64,
    /// `--reconnect`: new main modes started after a loss (first tries and retries).
    pub reconnect_attempts: AtomicU64,
    /// `--reconnect`: lost tunnels negotiated again.
    pub reconnected: AtomicU64,
    /// `--reconnect`: spokes whose tunnel is lost and not back yet (a gauge).
    pub down: AtomicU64,
    /// `--reconnect`: spokes still without their tunnel when the run ended.
    pub down_at_end: AtomicU64,
    /// Microseconds from the start to the first loss, plus one (0: no loss yet).
    pub first_lost_us: AtomicU64,
    /// Microseconds from the start to the last re-establishment that left no spoke down.
    pub all_back_us: AtomicU64,
    /// The process's IKE retransmission count when the first tunnel was lost, plus one.
    pub retransmissions_at_first_loss: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
    failures: Mutex<BTreeMap<String, Failure>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub count: u64,
    /// The first full reason of this class, as the IKE session (or the socket) gave it.
    pub example: String,
}

impl Stats {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }

    /// A tunnel came up `latency` after its message 1, `at` after the swarm started.
    pub fn note_up(&self, latency: Duration, at: Duration) {
        Self::add(&self.up, 1);
        self.last_up_us.fetch_max(micros(at), Relaxed);
        if let Ok(mut l) = self.latencies_us.lock() {
            l.push(micros(latency));
        }
    }

    /// `--reconnect`: a held tunnel is gone, `at` after the start; `retransmissions` is the
    /// process's count so far (to tell the recovery's retransmissions from the setup's).
    pub fn note_lost(&self, at: Duration, retransmissions: u64) {
        Self::add(&self.lost, 1);
        Self::add(&self.down, 1);
        let _ =
            self.first_lost_us
                .compare_exchange(0, micros(at).saturating_add(1), Relaxed, Relaxed);
        let _ = self.retransmissions_at_first_loss.compare_exchange(
            0,
            retransmissions.saturating_add(1),
            Relaxed,
            Relaxed,
        );
    }

    /// `--reconnect`: a lost tunnel is up again, `at` after the start.
    pub fn note_reconnected(&self, at: Duration) {
        Self::add(&self.reconnected, 1);
        if self.down.fetch_sub(1, Relaxed) == 1 {
            self.all_back_us.fetch_max(micros(at), Relaxed);
        }
    }

    /// `--reconnect`: from the first loss to the moment the last lost tunnel was back, when
    /// every lost tunnel came back; `None` when none was lost or some are still down.
    pub fn recovery(&self) -> Option<Duration> {
        let back = self.all_back()?;
        // all_back() is Some only after a loss: first_lost_us holds the first loss + 1 µs.
        let first = Duration::from_micros(Self::get(&self.first_lost_us).saturating_sub(1));
        Some(back.saturating_sub(first))
    }

    /// `--reconnect`: when the last lost tunnel was back, after the swarm's start; `None` as
    /// for [`Self::recovery`].
    pub fn all_back(&self) -> Option<Duration> {
        let first = Self::get(&self.first_lost_us);
        if first == 0 || Self::get(&self.down) > 0 || Self::get(&self.down_at_end) > 0 {
            return None;
        }
        Some(Duration::from_micros(
            Self::get(&self.all_back_us).max(first - 1),
        ))
    }

    /// A spoke ended without a tunnel: `class` is the report's key (a few fixed words),
    /// `reason` the full text.
    pub fn note_failure(&self, class: &str, reason: &str) {
        Self::add(&self.failed, 1);
        if let Ok(mut f) = self.failures.lock() {
            let e = f.entry(class.to_string()).or_default();
            e.count += 1;
            if e.example.is_empty() {
                e.example = reason.chars().take(EXAMPLE_MAX_LEN).collect();
            }
        }
    }

    pub fn latencies(&self) -> Vec<u64> {
        self.latencies_us
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    pub fn failures(&self) -> BTreeMap<String, Failure> {
        self.failures.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Latency percentiles in milliseconds (nearest rank: the smallest value with at least p% of
/// the samples at or below it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(mut us: Vec<u64>) -> Option<Self> {
        if us.is_empty() {
            return None;
        }
        us.sort_unstable();
        let rank = |p: usize| {
            // ceil(p * n / 100), 1-based; n >= 1 so the index is in range.
            let k = (p * us.len()).div_ceil(100).max(1);
            us[k - 1] as f64 / 1e3
        };
        Some(Self {
            p50: rank(50),
            p90: rank(90),
            p99: rank(99),
            max: us[us.len() - 1] as f64 / 1e3,
        })
    }
}

/// The final report (also the `--json` document).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub hub: String,
    pub spokes: u64,
    pub ike_group: u16,
    pub esp: String,
    pub nat_t: bool,
    pub started: u64,
    pub up: u64,
    pub failed: u64,
    /// Spokes never started (the overall timeout or an interrupt came first).
    pub not_started: u64,
    pub deleted: u64,
    pub closed_by_peer: u64,
    /// From the first message 1 to the last tunnel up.
    pub setup_seconds: f64,
    /// `up / setup_seconds`.
    pub setup_rate: f64,
    /// First message 1 to quick mode done, per tunnel; absent when none came up.
    pub latency_ms: Option<Latency>,
    pub failures: BTreeMap<String, Failure>,
    pub ike_messages_sent: u64,
    pub retransmissions: u64,
    /// `--reconnect` was given (the fields below count only then).
    pub reconnect: bool,
    /// Tunnels lost while held (deleted by the hub or its death detected by DPD).
    pub lost: u64,
    /// New main modes started after a loss.
    pub reconnect_attempts: u64,
    /// Lost tunnels negotiated again.
    pub reconnected: u64,
    /// Spokes without their tunnel when the run ended (lost and not back).
    pub down_at_end: u64,
    /// From the first tunnel lost to the last one back; absent when none was lost or some
    /// never came back.
    pub recovery_seconds: Option<f64>,
    /// When the last lost tunnel was back, in seconds after `started_unix` (absent as
    /// `recovery_seconds` is): a script that restarted the hub at a known time subtracts it.
    pub all_back_seconds: Option<f64>,
    /// The swarm's start, in seconds since the Unix epoch (the wall clock).
    pub started_unix: f64,
    /// Retransmissions from the first loss to the end of the run.
    pub recovery_retransmissions: u64,
    pub send_errors: u64,
    pub elapsed_seconds: f64,
    /// Every spoke's tunnel came up.
    pub ok: bool,
}

impl Report {
    pub fn text(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("{k:<34} {v}\n"));
        line("hub", self.hub.clone());
        line(
            "spokes",
            format!(
                "{} (IKE group {}, ESP {}{})",
                self.spokes,
                self.ike_group,
                self.esp,
                if self.nat_t { ", NAT-T" } else { "" }
            ),
        );
        line(
            "tunnels up",
            format!(
                "{}/{} ({} failed, {} not started)",
                self.up, self.spokes, self.failed, self.not_started
            ),
        );
        line(
            "setup",
            format!(
                "{:.3} s, {:.1} tunnels/s",
                self.setup_seconds, self.setup_rate
            ),
        );
        line(
            "latency p50 / p90 / p99 / max",
            match &self.latency_ms {
                Some(l) => format!(
                    "{:.1} / {:.1} / {:.1} / {:.1} ms",
                    l.p50, l.p90, l.p99, l.max
                ),
                None => "-".into(),
            },
        );
        line(
            "IKE messages sent / retransmitted",
            format!("{} / {}", self.ike_messages_sent, self.retransmissions),
        );
        line("send errors", self.send_errors.to_string());
        if self.reconnect {
            line(
                "lost / reconnected / down at end",
                format!(
                    "{} / {} / {} ({} attempts)",
                    self.lost, self.reconnected, self.down_at_end, self.reconnect_attempts
                ),
            );
            line(
                "recovery",
                match self.recovery_seconds {
                    Some(s) => format!(
                        "{s:.3} s, {} retransmissions since the first loss",
                        self.recovery_retransmissions
                    ),
                    None => format!(
                        "-, {} retransmissions since the first loss",
                        self.recovery_retransmissions
                    ),
                },
            );
        }
        line(
            "deleted by us / by the hub",
            format!("{} / {}", self.deleted, self.closed_by_peer),
        );
        line("elapsed", format!("{:.1} s", self.elapsed_seconds));
        line("result", if self.ok { "OK" } else { "FAILED" }.into());
        if !self.failures.is_empty() {
            out.push_str("failures by reason:\n");
            for (class, f) in &self.failures {
                out.push_str(&format!("  {:>6}  {class}: {}\n", f.count, f.example));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let l = Latency::of((1..=100).map(|ms| ms * 1000).collect()).unwrap();
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50.0, 90.0, 99.0, 100.0));
        let one = Latency::of(vec![2500]).unwrap();
        assert_eq!((one.p50, one.p99, one.max), (2.5, 2.5, 2.5));
        // Unsorted input, ten samples: p90 is the 9th smallest, p99 the largest.
        let l = Latency::of(
            vec![10, 1, 9, 2, 8, 3, 7, 4, 6, 5]
                .into_iter()
                .map(|x| x * 1000)
                .collect(),
        )
        .unwrap();
        assert_eq!((l.p50, l.p90, l.p99), (5.0, 9.0, 10.0));
        assert!(Latency::of(Vec::new()).is_none());
    }

    #[test]
    fn failures_are_grouped_with_their_first_reason() {
        let s = Stats::default();
        s.note_failure("timeout", "no answer to main mode message 1");
        s.note_failure("timeout", "no answer to quick mode message 1");
        s.note_failure("authentication", "AUTHENTICATION-FAILED: bad hash");
        let f = s.failures();
        assert_eq!(Stats::get(&s.failed), 3);
        assert_eq!(f["timeout"].count, 2);
        assert_eq!(f["timeout"].example, "no answer to main mode message 1");
        assert_eq!(f["authentication"].count, 1);
        s.note_up(Duration::from_millis(3), Duration::from_secs(2));
        s.note_up(Duration::from_millis(5), Duration::from_secs(1));
        assert_eq!(Stats::get(&s.up), 2);
        assert_eq!(Stats::get(&s.last_up_us), 2_000_000);
        assert_eq!(s.latencies(), vec![3000, 5000]);
    }

    #[test]
    fn recovery_runs_from_the_first_loss_to_the_last_tunnel_back() {
        let s = Stats::default();
        assert_eq!(s.recovery(), None, "nothing lost");
        s.note_lost(Duration::from_secs(10), 7);
        s.note_lost(Duration::from_secs(11), 9);
        s.note_reconnected(Duration::from_secs(14));
        assert_eq!(s.recovery(), None, "one still down");
        s.note_reconnected(Duration::from_secs(13));
        assert_eq!(s.recovery(), Some(Duration::from_secs(3)));
        assert_eq!(s.all_back(), Some(Duration::from_secs(13)));
        assert_eq!(Stats::get(&s.retransmissions_at_first_loss), 8);
        s.note_lost(Duration::from_secs(20), 12);
        assert_eq!(s.recovery(), None, "a second wave, not back yet");
        s.note_reconnected(Duration::from_secs(25));
        assert_eq!(s.recovery(), Some(Duration::from_secs(15)));
        assert_eq!(s.all_back(), Some(Duration::from_secs(25)));
        Stats::add(&s.down_at_end, 1);
        assert_eq!(s.recovery(), None);
        assert_eq!(s.all_back(), None);
    }
}

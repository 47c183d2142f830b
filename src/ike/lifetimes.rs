//! When an SA's lifetime runs out: the soft deadline (re-key, with random jitter so that both
//! ends do not re-key at the same moment) and the hard one (removal). Lifetimes may come from
//! the peer (RFC 2407 §4.5, RESPONDER-LIFETIME §4.6.3.1): nothing here can overflow. Used
//! where SAs are made (isakmp_sa.rs, children.rs); the session's clock (timers.rs) only
//! reads the deadlines.

use std::time::{Duration, Instant};

/// Soft deadline of a lifetime: `soft_percent` of it, minus up to `jitter_percent` at random.
/// `None` when it lies beyond what `Instant` can hold (never, for practical purposes). The
/// lifetime may come from the peer: nothing here can overflow.
pub(crate) fn soft_deadline(
    now: Instant,
    life: Duration,
    soft_percent: u8,
    jitter_percent: u8,
    r: u32,
) -> Option<Instant> {
    let base = percent(life, soft_percent);
    let jmax = percent(life, jitter_percent);
    let jitter = if jmax.is_zero() {
        Duration::ZERO
    } else {
        jmax.mul_f64(f64::from(r) / f64::from(u32::MAX))
    };
    now.checked_add(base.saturating_sub(jitter))
}

/// `p` percent of `d`, exact for whole seconds, without overflow for any `d`.
fn percent(d: Duration, p: u8) -> Duration {
    let p = u32::from(p);
    d.checked_mul(p)
        .map(|x| x / 100)
        .unwrap_or_else(|| (d / 100).saturating_mul(p))
}

/// The hard deadline of a lifetime; `None` when it lies beyond what `Instant` can hold.
pub(crate) fn hard_deadline(now: Instant, life: Duration) -> Option<Instant> {
    now.checked_add(life)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_saturate_for_any_lifetime() {
        let now = Instant::now();
        for secs in [0, 1, 100, 86_400, u64::from(u32::MAX), u64::MAX] {
            let life = Duration::from_secs(secs);
            for r in [0, u32::MAX / 2, u32::MAX] {
                let soft = soft_deadline(now, life, 90, 10, r);
                let hard = hard_deadline(now, life);
                if let (Some(s), Some(h)) = (soft, hard) {
                    assert!(now <= s && s <= h, "{secs} s, r {r}");
                }
            }
        }
        assert_eq!(
            percent(Duration::from_secs(100), 90),
            Duration::from_secs(90)
        );
        assert_eq!(
            percent(Duration::MAX, 100),
            (Duration::MAX / 100).saturating_mul(100)
        );
        assert_eq!(
            soft_deadline(now, Duration::from_secs(1000), 90, 0, 7),
            Some(now + Duration::from_secs(900))
        );
        assert_eq!(hard_deadline(now, Duration::MAX), None);
    }
}

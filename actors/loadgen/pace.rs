//! The swarm's pacing of new exchanges (`--rate R`): one launch per `1/R` on average, with the
//! clock passed in so the schedule is tested without sleeping.
//!
//! Why a lag allowance: tokio's timer has a resolution of one millisecond, so a sleep until a
//! point 0.2 ms away ends up to a millisecond late. A launcher that forgot every bit of lateness
//! (`next = max(next, now)`) launched at most one spoke per timer tick, whatever `--rate` said:
//! about 1,000 per second. Here lateness of up to [`MAX_LAG`] is kept on the schedule, so the
//! spokes due during a tick start together when it fires and the average rate is R. Lateness
//! beyond that (the launcher waited for an in-flight slot, or the runtime was busy) is dropped:
//! a late start is not caught up with a burst of more than [`MAX_LAG`]'s worth of spokes.

use std::time::{Duration, Instant};

/// The most lateness kept on the schedule: two timer ticks.
pub const MAX_LAG: Duration = Duration::from_millis(2);

/// When the next spoke may start.
#[derive(Debug)]
pub struct Pacer {
    period: Duration,
    next: Instant,
}

impl Pacer {
    /// A schedule of one launch per `period`, the first at `now`.
    pub fn new(period: Duration, now: Instant) -> Self {
        Self { period, next: now }
    }

    /// Asked at `now` for the next launch: `None` when a spoke may start now (the slot is
    /// taken), or the instant to sleep until before asking again.
    pub fn poll(&mut self, now: Instant) -> Option<Instant> {
        let floor = now.checked_sub(MAX_LAG).unwrap_or(now);
        self.next = self.next.max(floor);
        if self.next > now {
            return Some(self.next);
        }
        self.next += self.period;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a launcher for `span` on a clock whose sleeps end on the next whole `tick` (tokio's
    /// timer wheel), with the launcher stalled during `stall` (waiting for an in-flight slot);
    /// returns the launch times as offsets from the start.
    fn simulate(
        rate: u32,
        span: Duration,
        tick: Duration,
        stall: Option<(Duration, Duration)>,
    ) -> Vec<Duration> {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(Duration::from_secs(1) / rate, t0);
        let mut now = Duration::ZERO;
        let mut launches = Vec::new();
        while now < span {
            if let Some((from, until)) = stall
                && now >= from
                && now < until
            {
                now = until;
                continue;
            }
            match pacer.poll(t0 + now) {
                None => launches.push(now),
                Some(at) => {
                    let wait = at - t0;
                    // The sleep ends on the first tick at or after `wait`.
                    let ticks = wait.as_nanos().div_ceil(tick.as_nanos());
                    now = tick * u32::try_from(ticks).expect("ticks");
                }
            }
        }
        launches
    }

    #[test]
    fn the_rate_holds_above_one_launch_per_timer_tick() {
        for rate in [100, 1_000, 5_000, 20_000] {
            let got = simulate(rate, Duration::from_secs(1), Duration::from_millis(1), None);
            let want = rate as usize;
            assert!(
                got.len().abs_diff(want) <= want / 100 + 1,
                "rate {rate}: {} launches in one second",
                got.len()
            );
        }
    }

    #[test]
    fn launches_never_run_ahead_of_the_schedule() {
        let period = Duration::from_secs(1) / 5_000;
        let got = simulate(
            5_000,
            Duration::from_millis(200),
            Duration::from_millis(1),
            None,
        );
        for (i, at) in got.iter().enumerate() {
            assert!(
                *at >= period * i as u32,
                "launch {i} at {at:?}, due {:?}",
                period * i as u32
            );
        }
    }

    #[test]
    fn a_stall_is_not_caught_up_with_a_burst() {
        // 100 ms without a slot at 5,000/s: 500 launches missed, and at most the lag allowance
        // (2 ms = 10 launches) plus one come at once when the stall ends.
        let stall = (Duration::from_millis(100), Duration::from_millis(200));
        let got = simulate(
            5_000,
            Duration::from_millis(300),
            Duration::from_millis(1),
            Some(stall),
        );
        let at_release = got.iter().filter(|t| **t == stall.1).count();
        assert!(
            at_release <= 11,
            "{at_release} launches at once after the stall"
        );
        let after = got.iter().filter(|t| **t >= stall.1).count();
        assert!(
            (495..=515).contains(&after),
            "{after} launches in the 100 ms after the stall"
        );
        assert!(got.iter().all(|t| *t < stall.0 || *t >= stall.1));
    }
}

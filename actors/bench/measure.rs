//! A small time-boxed measuring loop for `ikehub bench`: runs an operation in rounds until the
//! time budget is spent and reports operations per second. Criterion in `benches/` gives the
//! statistically careful numbers; this gives an operator a quick reading of the machine.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Operations per second of `op`, measured over about `budget` after a short warm-up.
pub fn ops_per_sec(budget: Duration, mut op: impl FnMut()) -> f64 {
    let warmup = Instant::now();
    while warmup.elapsed() < budget / 10 {
        op();
    }
    let start = Instant::now();
    let mut n: u64 = 0;
    let mut round: u64 = 16;
    loop {
        for _ in 0..round {
            op();
        }
        n += round;
        let t = start.elapsed();
        if t >= budget {
            return n as f64 / t.as_secs_f64();
        }
        round = (round * 2).min(1 << 16);
    }
}

/// Operations per second of `op` alone on `state`, each run after `prep` restored what `op`
/// consumed of it, for about `budget` of `op`'s own time: only `op` is timed (two clock reads
/// per operation, about 40 ns, against the microseconds of a packet batch).
pub fn ops_per_sec_after<S: ?Sized>(
    budget: Duration,
    state: &mut S,
    prep: impl Fn(&mut S),
    mut op: impl FnMut(&mut S),
) -> f64 {
    let warmup = Instant::now();
    while warmup.elapsed() < budget / 10 {
        prep(state);
        op(state);
    }
    let mut spent = Duration::ZERO;
    let mut n: u64 = 0;
    while spent < budget {
        prep(state);
        let t = Instant::now();
        op(state);
        spent += t.elapsed();
        n += 1;
    }
    n as f64 / spent.as_secs_f64()
}

/// Megabytes (10^6 bytes) per second for `bytes` moved per operation.
pub fn mb_per_sec(ops: f64, bytes: usize) -> f64 {
    black_box(ops * bytes as f64 / 1e6)
}

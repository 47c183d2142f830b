//! The DH exponentiation options per MODP group in thread CPU time (issue 10, goal 1):
//! `cargo bench --bench dh_cpu`. Criterion's `dh_options` group in `ike_crypto.rs` measures
//! the same calls in wall-clock time; on a machine shared with other builds that time counts
//! the moments this thread waits for a core, CPU time does not. Prints the 10th percentile and
//! the median in microseconds of: g^x from the fixed-base table (what `public_value` does), by
//! crypto-bigint's `pow_bounded_exp` and by OpenSSL; y^x by OpenSSL (what `shared_secret`
//! does) and by crypto-bigint; a responder's DH work per tunnel (one of each, medians); and
//! the one-time cost of the group's g^x table (CPU ms to build it, KiB it holds).

use std::hint::black_box;

use ikehub::ike::dh::{DhGroup, DhPrivate};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// This thread's CPU time in nanoseconds.
fn cpu_ns() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

/// (10th percentile, median) of `n` timed calls, in microseconds.
fn percentiles(n: usize, mut op: impl FnMut()) -> (f64, f64) {
    op();
    let mut us: Vec<f64> = (0..n)
        .map(|_| {
            let t = cpu_ns();
            op();
            (cpu_ns() - t) / 1e3
        })
        .collect();
    us.sort_by(f64::total_cmp);
    (us[n / 10], us[n / 2])
}

fn main() {
    let mut rng = StdRng::seed_from_u64(9);
    println!(
        "{:<9} {:>19} {:>19} {:>19} {:>19} {:>19} {:>10} {:>9} {:>10}",
        "µs p10/p50",
        "g^x fixed-base",
        "g^x crypto-bigint",
        "g^x openssl",
        "y^x openssl",
        "y^x crypto-bigint",
        "DH/tunnel",
        "table ms",
        "table KiB"
    );
    for group in DhGroup::ALL {
        // The first call builds the table (nothing before this touched the group's table).
        let t = cpu_ns();
        group.precompute();
        let table_ms = (cpu_ns() - t) / 1e6;
        // exponent_bits / 4 rows of 16 group elements (src/ike/dh/fixed_base.rs).
        let table_kib = group.exponent_bits() as usize / 4 * 16 * group.len() / 1024;
        let me = DhPrivate::generate(group, &mut rng);
        let peer = DhPrivate::generate(group, &mut rng).public_value();
        let n = if group.bits() > 2048 { 60 } else { 300 };
        let rows = [
            percentiles(n, || drop(black_box(me.public_value()))),
            percentiles(n, || drop(black_box(me.public_value_portable()))),
            percentiles(n, || drop(black_box(me.public_value_openssl()))),
            percentiles(n, || drop(black_box(me.shared_secret(&peer)))),
            percentiles(n, || drop(black_box(me.shared_secret_portable(&peer)))),
        ];
        print!("{:<10}", group.name());
        for (p10, p50) in rows {
            print!(" {p10:>9.1}/{p50:>9.1}");
        }
        println!(
            " {:>10.1} {table_ms:>9.1} {table_kib:>10}",
            rows[0].1 + rows[3].1
        );
    }
}

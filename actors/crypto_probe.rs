//! What this CPU's SHA-NI unit rewards, measured once at start: whether hashing several SHA-1
//! chains at once goes clearly faster than one (`sha1rnds4` latency-bound, as on AMD Zen 3) or
//! not (one chain already keeps the unit busy, as on the Intel cores the stitched kernel was
//! written for), and the same for SHA-256 (`sha256rnds2`). No CPUID bit tells, so it is timed;
//! the core reads no clock, so the timing is here and the answers go to
//! [`ikehub::crypto::sha1_ni::set_chains_pay`], which decides the ESP batch engine
//! (`Engine::detect`), and [`ikehub::crypto::sha256_ni::set_chains_pay`], which decides
//! whether AES-CBC + HMAC-SHA-256 batches hash on several chains (`Engine::sha256_chains`).
//! They change only speed, never bytes: every engine gives the same ones (tested).

use ikehub::crypto::{sha1_ni, sha256_ni};

/// Blocks per chain of one timed run.
const BLOCKS: usize = 16;
/// Timed runs of each kind; the fastest of each is kept (the least disturbed one).
const RUNS: usize = 8;
/// Several chains must hash at least 13/10 of one chain's bytes per unit of time: on a CPU
/// where the two are close the stitched engine, which overlaps AES with SHA-1, stays.
const MARGIN: (u64, u64) = (13, 10);
static DATA: [u8; 64 * BLOCKS] = [0x5a; 64 * BLOCKS];

/// Probes (about twenty microseconds) and tells the core. Called before any SA exists by the
/// commands that carry ESP: `run`, `demo`, `bench`.
pub fn tune() {
    sha1_ni::set_chains_pay(probe().is_some_and(|(one, many)| pays(one, many)));
    sha256_ni::set_chains_pay(probe_sha256().is_some_and(|(one, many)| pays(one, many)));
}

/// Whether `many` ticks for [`sha1_ni::CHAINS`] chains beat `one` tick count for one chain
/// (over the same blocks per chain) by the margin.
fn pays(one: u64, many: u64) -> bool {
    MARGIN.1 * sha1_ni::CHAINS as u64 * one >= MARGIN.0 * many
}

/// [`probe`] for SHA-256: fewest ticks of one chain over [`BLOCKS`] blocks, and of
/// [`sha256_ni::CHAINS`] chains (the same count as SHA-1's, which [`pays`] assumes) over as
/// many blocks each; `None` without SHA-NI.
pub fn probe_sha256() -> Option<(u64, u64)> {
    const _: () = assert!(sha256_ni::CHAINS == sha1_ni::CHAINS);
    #[cfg(target_arch = "x86_64")]
    if sha256_ni::available() {
        let mut s1 = [[1u32; 8]; 1];
        let mut sk = [[1u32; 8]; sha256_ni::CHAINS];
        // SAFETY (both closures): `available` checked sha, ssse3 and sse4.1, which
        // `compress_chains` needs.
        let ticks = fewest_ticks(
            || unsafe { sha256_ni::compress_chains(&mut s1, &[&DATA[..]]) },
            || unsafe { sha256_ni::compress_chains(&mut sk, &[&DATA[..]; sha256_ni::CHAINS]) },
        );
        std::hint::black_box((s1, sk));
        return Some(ticks);
    }
    None
}

/// Fewest time-stamp-counter ticks of one chain over [`BLOCKS`] blocks, and of
/// [`sha1_ni::CHAINS`] chains over as many blocks each; `None` without SHA-NI.
pub fn probe() -> Option<(u64, u64)> {
    #[cfg(target_arch = "x86_64")]
    if sha1_ni::available() {
        let mut s1 = [[1u32; 5]; 1];
        let mut sk = [[1u32; 5]; sha1_ni::CHAINS];
        // SAFETY (both closures): `available` checked sha, ssse3 and sse4.1, which
        // `compress_chains` needs.
        let ticks = fewest_ticks(
            || unsafe { sha1_ni::compress_chains(&mut s1, &[&DATA[..]]) },
            || unsafe { sha1_ni::compress_chains(&mut sk, &[&DATA[..]; sha1_ni::CHAINS]) },
        );
        std::hint::black_box((s1, sk));
        return Some(ticks);
    }
    None
}

/// The fewest time-stamp-counter ticks of `one` and of `many` over [`RUNS`] alternating runs
/// (the least disturbed of each), fenced so that neither leaks into the other's count.
#[cfg(target_arch = "x86_64")]
fn fewest_ticks(mut one: impl FnMut(), mut many: impl FnMut()) -> (u64, u64) {
    use core::arch::x86_64::{_mm_lfence, _rdtsc};
    let (mut t_one, mut t_many) = (u64::MAX, u64::MAX);
    for _ in 0..RUNS {
        // SAFETY: lfence and rdtsc are in every x86-64 CPU (SSE2).
        let (t0, t1, t2) = unsafe {
            _mm_lfence();
            let t0 = _rdtsc();
            _mm_lfence();
            one();
            _mm_lfence();
            let t1 = _rdtsc();
            _mm_lfence();
            many();
            _mm_lfence();
            (t0, t1, _rdtsc())
        };
        t_one = t_one.min(t1.wrapping_sub(t0));
        t_many = t_many.min(t2.wrapping_sub(t1));
    }
    (t_one, t_many)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_decides() {
        let k = sha1_ni::CHAINS as u64;
        // k chains in the time of one: k times the bytes.
        assert!(pays(1000, 1000));
        // Exactly 1.3x the bytes per tick, and a hair under.
        assert!(pays(1300, 1000 * k));
        assert!(!pays(1299, 1000 * k));
        // Several chains no faster than one after the other.
        assert!(!pays(1000, 1000 * k));
    }

    #[test]
    fn the_probe_times_both_ways_where_sha_ni_runs() {
        match probe() {
            Some((one, many)) => {
                assert!(sha1_ni::available());
                assert!(one > 0 && many > 0, "no ticks counted: {one} / {many}");
                eprintln!(
                    "probe: 1 chain {one} ticks, {} chains {many} ticks per {BLOCKS} blocks \
                     each: {:.2}x",
                    sha1_ni::CHAINS,
                    (sha1_ni::CHAINS as f64 * one as f64) / many as f64,
                );
            }
            None => {
                assert!(!sha1_ni::available());
                tune();
                assert!(
                    !sha1_ni::chains_pay(),
                    "no SHA-NI, yet the chains were chosen"
                );
            }
        }
        match probe_sha256() {
            Some((one, many)) => {
                assert!(sha256_ni::available());
                assert!(one > 0 && many > 0, "no ticks counted: {one} / {many}");
                eprintln!(
                    "probe: SHA-256 1 chain {one} ticks, {} chains {many} ticks per {BLOCKS} \
                     blocks each: {:.2}x",
                    sha256_ni::CHAINS,
                    (sha256_ni::CHAINS as f64 * one as f64) / many as f64,
                );
            }
            None => {
                assert!(!sha256_ni::available());
                tune();
                assert!(
                    !sha256_ni::chains_pay(),
                    "no SHA-NI, yet the SHA-256 chains were chosen"
                );
            }
        }
    }
}

//! Fuzzed but authentic quick-mode and informational messages under a real ISAKMP SA (correct
//! IV chain, HASH over the fuzzed payloads). Body: `ikehub::ike::fuzz_support::established`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ikehub::ike::fuzz_support::established::run(std::time::Instant::now(), data);
});

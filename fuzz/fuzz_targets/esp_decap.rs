//! Arbitrary bytes into inbound decapsulation of SAs of several suites over IPv4 and IPv6, raw
//! and UDP-framed, with valid ICVs on request. Body: `ikehub::ike::fuzz_support::esp::decap`.
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;

fn start() -> Instant {
    static T: OnceLock<Instant> = OnceLock::new();
    *T.get_or_init(Instant::now)
}

fuzz_target!(|data: &[u8]| {
    ikehub::ike::fuzz_support::esp::decap(start(), data);
});

//! Arbitrary cleartext (IPv4 or IPv6) and SA parameters (IPv4 or IPv6 outside) through ESP/AH
//! encapsulation; decapsulation by the peer's SA must give the cleartext back. Body: `ikehub::ike::fuzz_support::esp::encap`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ikehub::ike::fuzz_support::esp::encap(std::time::Instant::now(), data);
});

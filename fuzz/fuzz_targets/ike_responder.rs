//! A real initiator and a responder session with a hostile network between them: every datagram
//! may be dropped, duplicated, bit-flipped, truncated, replaced by input bytes or spoofed from
//! other addresses and ports, and time jumps. No input may make either session panic
//! (docs/design.md: garbage never panics). Body: `ikehub::ike::fuzz_support::responder`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ikehub::ike::fuzz_support::responder::run(std::time::Instant::now(), data);
});

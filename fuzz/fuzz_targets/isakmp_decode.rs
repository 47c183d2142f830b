//! Arbitrary bytes into the ISAKMP decoders; whatever decodes must re-encode into bytes that
//! decode to the same value. Body: `ikehub::ike::fuzz_support::decoders::isakmp`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ikehub::ike::fuzz_support::decoders::isakmp(data);
});

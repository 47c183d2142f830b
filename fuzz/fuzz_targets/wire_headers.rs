//! Arbitrary bytes into every header parser, the fragmenter, the ICMP builder and the TUN
//! offload path (virtio-net header + GSO segmentation); whatever
//! parses must re-emit and re-parse to the same repr.
//! Body: `ikehub::ike::fuzz_support::decoders::headers`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ikehub::ike::fuzz_support::decoders::headers(data);
});

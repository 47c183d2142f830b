//! Arbitrary bytes as an IPv6 packet: fixed header, extension-header walk, AH ICV zeroing,
//! ICMPv6 Packet Too Big. Body: `ikehub::ike::fuzz_support::ipv6::run`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ikehub::ike::fuzz_support::ipv6::run(data);
});

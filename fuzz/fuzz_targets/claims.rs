//! The protected-network claim table (`ikehub::claims`): any sequence of reservations, claims
//! and releases keeps its promise (no granted pair overlaps a reserved pair or another spoke's
//! pair), and nothing panics otherwise.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ikehub::claims::fuzz_ops(data);
});

//! The IKE demultiplexer under arbitrary datagrams, admissions, cookie reports, moves and
//! removals (small half-open bounds, so evictions happen): its tables must always agree.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ikehub::ike::demux::fuzz_ops(data);
});

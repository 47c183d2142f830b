//! SHA-1 compression throughput of each engine (issue 12 point 3): the `sha1` crate's
//! single chain (SHA-NI where the CPU has it) against the sixteen-lane AVX-512 multi-buffer
//! compression of `ikehub::crypto::sha1_mb`, in bytes of message per second.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ikehub::crypto::sha1_mb::{self, LANES};

fn sha1(c: &mut Criterion) {
    let mut g = c.benchmark_group("sha1-compress");
    let data = [[0x5au8; 64]; LANES];
    g.throughput(Throughput::Bytes((64 * LANES) as u64));
    g.bench_function("sha1-crate-one-chain", |b| {
        let mut s = [0u32; 5];
        b.iter(|| sha1::block_api::compress(black_box(&mut s), black_box(&data[..])))
    });
    #[cfg(target_arch = "x86_64")]
    if sha1_mb::available() {
        g.bench_function("avx512-16-lanes", |b| {
            let mut s = [[0u32; LANES]; 5];
            let blocks: [&[u8; 64]; LANES] = core::array::from_fn(|l| &data[l]);
            // SAFETY: `available` checked avx512f and avx512bw.
            b.iter(|| unsafe { sha1_mb::compress16(black_box(&mut s), black_box(&blocks)) })
        });
    }
    g.finish();
}

criterion_group!(benches, sha1);
criterion_main!(benches);

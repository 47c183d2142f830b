//! Criterion benches of the IKEv1 cryptography: one Diffie-Hellman key generation (g^x) and
//! one shared-secret computation (y^x) per MODP group, the PRF, the phase-1 key schedule and
//! KEYMAT. `ikehub bench` times the same `DhPrivate::generate` + `public_value` /
//! `shared_secret` calls in a plain loop.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ikehub::config::HashAlgorithm;
use ikehub::crypto::EncrAlgorithm;
use ikehub::ike::dh::{DhGroup, DhPrivate};
use ikehub::ike::keys::{Phase1Inputs, Phase1Keys};
use ikehub::ike::prf;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn dh(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(7);
    let mut g = c.benchmark_group("dh");
    g.sample_size(20);
    for group in [
        DhGroup::Modp768,
        DhGroup::Modp1024,
        DhGroup::Modp1536,
        DhGroup::Modp2048,
        DhGroup::Modp3072,
        DhGroup::Modp4096,
    ] {
        let peer = DhPrivate::generate(group, &mut rng).public_value();
        g.bench_function(BenchmarkId::new("keygen", group.name()), |b| {
            b.iter(|| DhPrivate::generate(group, &mut rng).public_value())
        });
        let me = DhPrivate::generate(group, &mut rng);
        g.bench_function(BenchmarkId::new("shared_secret", group.name()), |b| {
            b.iter(|| me.shared_secret(black_box(&peer)).map(|z| z.as_bytes()[0]))
        });
    }
    g.finish();
}

fn dh_options(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(8);
    let mut g = c.benchmark_group("dh_options");
    g.sample_size(20);
    for group in DhGroup::ALL {
        let me = DhPrivate::generate(group, &mut rng);
        let peer = DhPrivate::generate(group, &mut rng).public_value();
        let name = group.name();
        // The first call builds the group's table: keep it out of the samples.
        black_box(me.public_value());
        g.bench_function(BenchmarkId::new("gx_fixed_base", name), |b| {
            b.iter(|| black_box(&me).public_value())
        });
        g.bench_function(BenchmarkId::new("gx_crypto_bigint", name), |b| {
            b.iter(|| black_box(&me).public_value_portable())
        });
        g.bench_function(BenchmarkId::new("gx_openssl", name), |b| {
            b.iter(|| black_box(&me).public_value_openssl())
        });
        g.bench_function(BenchmarkId::new("yx_openssl", name), |b| {
            b.iter(|| me.shared_secret(black_box(&peer)).map(|z| z.as_bytes()[0]))
        });
        g.bench_function(BenchmarkId::new("yx_crypto_bigint", name), |b| {
            b.iter(|| {
                me.shared_secret_portable(black_box(&peer))
                    .map(|z| z.as_bytes()[0])
            })
        });
    }
    g.finish();
}

fn schedule(c: &mut Criterion) {
    let mut g = c.benchmark_group("ike_prf");
    for h in [
        HashAlgorithm::Md5,
        HashAlgorithm::Sha1,
        HashAlgorithm::Sha256,
    ] {
        let data = [0x5au8; 300];
        g.bench_function(BenchmarkId::new("prf_300B", format!("{h:?}")), |b| {
            b.iter(|| prf::prf(h, black_box(b"a pre-shared key"), &[&data]))
        });
    }
    let g_xy = [1u8; 256];
    let (g_xi, g_xr) = ([2u8; 256], [3u8; 256]);
    let inp = Phase1Inputs {
        hash: HashAlgorithm::Sha1,
        encr: EncrAlgorithm::AesCbc256,
        ni_b: &[4; 32],
        nr_b: &[5; 32],
        g_xy: &g_xy,
        cky_i: &[6; 8],
        cky_r: &[7; 8],
        g_xi: &g_xi,
        g_xr: &g_xr,
    };
    g.bench_function("phase1_schedule_sha1_aes256_modp2048", |b| {
        b.iter(|| Phase1Keys::derive_psk(black_box(b"psk"), &inp))
    });
    let keys = Phase1Keys::derive_psk(b"psk", &inp);
    // AES-256 + HMAC-SHA-256 keys: 64 bytes, four SHA-1 blocks; with PFS (modp2048).
    g.bench_function("keymat_64B_sha1", |b| {
        b.iter(|| keys.keymat(None, 3, 0x1234_5678, &[4; 32], &[5; 32], 64))
    });
    g.bench_function("keymat_64B_sha1_pfs2048", |b| {
        b.iter(|| keys.keymat(Some(&g_xy), 3, 0x1234_5678, &[4; 32], &[5; 32], 64))
    });
    g.finish();
}

criterion_group!(benches, dh, dh_options, schedule);
criterion_main!(benches);

//! SHA-1 and AES-CBC + HMAC-SHA1 batch throughput of each engine (issue 12 point 3): the
//! `sha1` crate's single chain (SHA-NI where the CPU has it) against the sixteen-lane AVX-512
//! compression of `ikehub::crypto::sha1_mb`, and `stitch::seal` / `stitch::open` of ESP
//! batches on the stitched and the multi-buffer engine, per batch size.
//!
//! The machine this runs on is shared, so the engines take turns: each round measures every
//! candidate once, and the best round of each is printed (load from others only slows a
//! round down). `cargo bench --bench sha1 [-- ROUNDS]`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ikehub::crypto::aes_ni::{AesKeys, Decrypt, Encrypt};
use ikehub::crypto::sha1_mb::{self, LANES};
use ikehub::crypto::stitch::{self, Engine, HmacSha1Pads};

const ROUND: Duration = Duration::from_millis(100);
/// ESP header + IV + 1408 bytes of ciphertext (`openssl speed`'s size) + 12-byte ICV.
const ESP_LEN: usize = 8 + 16 + 1408 + 12;

/// Bytes per second of `f`, which handles `bytes` per call, over one round.
fn rate(bytes: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < ROUND {
        for _ in 0..16 {
            f();
        }
        calls += 16;
    }
    (calls as f64 * bytes as f64) / start.elapsed().as_secs_f64()
}

struct Best<'a> {
    name: String,
    bytes: usize,
    run: Box<dyn FnMut() + 'a>,
    best: f64,
}

fn contest(rounds: usize, mut cands: Vec<Best<'_>>) {
    for _ in 0..rounds {
        for c in cands.iter_mut() {
            c.best = c.best.max(rate(c.bytes, &mut c.run));
        }
    }
    for c in &cands {
        println!("{:<44} {:>8.2} GB/s", c.name, c.best / 1e9);
    }
    println!();
}

fn main() {
    let rounds = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10usize);
    let data = [[0x5au8; 64]; LANES];
    let mut one = [0u32; 5];
    let mut lanes = [[0u32; LANES]; 5];
    let blocks: [&[u8]; LANES] = core::array::from_fn(|l| &data[l][..]);
    let mut cands = vec![Best {
        name: "sha1 compress, one chain (sha1 crate)".into(),
        bytes: 64 * LANES,
        run: Box::new(|| sha1::block_api::compress(black_box(&mut one), black_box(&data[..]))),
        best: 0.0,
    }];
    #[cfg(target_arch = "x86_64")]
    if sha1_mb::available() {
        cands.push(Best {
            name: "sha1 compress, 16 lanes (AVX-512)".into(),
            bytes: 64 * LANES,
            // SAFETY: `available` checked avx512f and avx512bw.
            run: Box::new(|| unsafe { sha1_mb::compress16(black_box(&mut lanes), &blocks) }),
            best: 0.0,
        });
    }
    contest(rounds, cands);

    // The two halves of the multi-buffer engine, 32 packets of one SA.
    let key = [7u8; 16];
    let new = |way| {
        ikehub::crypto::EspCipher::new(ikehub::crypto::EncrAlgorithm::AesCbc128, &key, way)
            .expect("AES-128")
    };
    let (esp, esp_in) = (
        new(ikehub::crypto::Way::Encrypt),
        new(ikehub::crypto::Way::Decrypt),
    );
    let pads = HmacSha1Pads::new(&[9u8; 20]);
    let a = vec![vec![0x22u8; ESP_LEN]; 32];
    let b = a.clone();
    let mut c = a.clone();
    let mut d = a.clone();
    let mut macs = [[0u8; 20]; 32];
    let body = ESP_LEN - 8 - 12;
    contest(
        rounds,
        vec![
            Best {
                name: "HMAC-SHA1 32 x 1432 B, one chain each".into(),
                bytes: 32 * body,
                run: Box::new(|| {
                    for (m, p) in macs.iter_mut().zip(&a) {
                        *m = pads.mac(black_box(&p[..ESP_LEN - 12]));
                    }
                }),
                best: 0.0,
            },
            Best {
                name: "HMAC-SHA1 32 x 1432 B, hmac_batch".into(),
                bytes: 32 * body,
                run: Box::new(|| {
                    let mut m = [[0u8; 20]; 32];
                    sha1_mb::hmac_batch(&pads, black_box(&b), 12, &mut m);
                    black_box(&m);
                }),
                best: 0.0,
            },
            Best {
                name: "AES-128-CBC encrypt 32 x 1408 B, interleaved".into(),
                bytes: 32 * body,
                run: Box::new(|| {
                    let mut refs: Vec<&mut [u8]> =
                        c.iter_mut().map(|p| &mut p[8..ESP_LEN - 12]).collect();
                    esp.encrypt_cbc_batch(&mut refs).expect("whole blocks");
                }),
                best: 0.0,
            },
            Best {
                name: "AES-128-CBC decrypt 32 x 1408 B, one by one".into(),
                bytes: 32 * body,
                run: Box::new(|| {
                    for p in d.iter_mut() {
                        let (iv, data) = p[8..ESP_LEN - 12].split_at_mut(16);
                        esp_in.decrypt_cbc(iv, data).expect("whole blocks");
                    }
                }),
                best: 0.0,
            },
        ],
    );

    let (Some(enc), Some(dec)) = (AesKeys::<Encrypt>::new(&key), AesKeys::<Decrypt>::new(&key))
    else {
        println!("no AES-NI: no stitched engine to measure");
        return;
    };
    let engines: Vec<Engine> = Engine::supported()
        .into_iter()
        .filter(|e| *e != Engine::Portable)
        .collect();
    for n in [1usize, 2, 4, 8, 12, 16, 32] {
        let bufs: Vec<std::cell::RefCell<Vec<Vec<u8>>>> = (0..2 * engines.len())
            .map(|_| std::cell::RefCell::new(vec![vec![0x11u8; ESP_LEN]; n]))
            .collect();
        let mut cands = Vec::new();
        for (i, &engine) in engines.iter().enumerate() {
            let (enc, dec, pads) = (&enc, &dec, &pads);
            let seal_bufs = &bufs[2 * i];
            cands.push(Best {
                name: format!("seal {n:>2} x {ESP_LEN} B, {engine:?}"),
                bytes: n * ESP_LEN,
                run: Box::new(move || {
                    let mut b = seal_bufs.borrow_mut();
                    let mut refs: Vec<&mut [u8]> = b.iter_mut().map(|b| &mut b[..]).collect();
                    assert!(stitch::seal(enc, pads, 12, engine, &mut refs));
                }),
                best: 0.0,
            });
            // Sealed once; each run restores the sealed copy (a memcpy, the same for every
            // engine) so every packet verifies and is decrypted.
            let open_bufs = &bufs[2 * i + 1];
            let sealed = {
                let mut b = open_bufs.borrow_mut();
                let mut refs: Vec<&mut [u8]> = b.iter_mut().map(|b| &mut b[..]).collect();
                assert!(stitch::seal(enc, pads, 12, engine, &mut refs));
                b.clone()
            };
            cands.push(Best {
                name: format!("open {n:>2} x {ESP_LEN} B, {engine:?}"),
                bytes: n * ESP_LEN,
                run: Box::new(move || {
                    let mut b = open_bufs.borrow_mut();
                    for (b, s) in b.iter_mut().zip(&sealed) {
                        b.copy_from_slice(s);
                    }
                    let mut refs: Vec<&mut [u8]> = b.iter_mut().map(|b| &mut b[..]).collect();
                    let mut ok = [false; 64];
                    assert!(stitch::open(dec, pads, 12, engine, &mut refs, &mut ok[..n]));
                    assert!(ok[..n].iter().all(|x| *x));
                }),
                best: 0.0,
            });
        }
        contest(rounds, cands);
    }
}

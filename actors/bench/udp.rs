//! ESP-in-UDP socket throughput on loopback with the daemon's own batch I/O: 1400-byte
//! datagrams (a full-size ESP packet) from one socket to another, batches of 64, once with
//! `sendmmsg`/`recvmmsg` alone and once with UDP GSO/GRO. No crypto: this is the kernel's
//! per-packet cost that GSO/GRO amortise (see README, "ESP-in-UDP is the faster
//! encapsulation").

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::io::{PacketBatch, UdpBatchSocket, UdpOptions, send_all};

/// Datagram size measured: a 1500-byte path less the outer IPv4 and UDP headers and some.
const SIZE: usize = 1400;
/// Packets per send batch, as a shard's receive batch.
const BATCH: usize = 64;

#[derive(Serialize)]
pub(super) struct UdpResult {
    pub offload: bool,
    pub datagrams_per_s: f64,
    pub gbit_per_s: f64,
}

fn socket(offload: bool) -> io::Result<UdpBatchSocket> {
    UdpBatchSocket::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        &UdpOptions {
            offload,
            recv_buffer: Some(8 << 20),
            send_buffer: Some(8 << 20),
            ..Default::default()
        },
    )
}

fn one(offload: bool, budget: Duration) -> io::Result<UdpResult> {
    let rx = socket(offload)?;
    let tx = socket(offload)?;
    let dst = rx.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut out = PacketBatch::new(BATCH, 2048, 0);
            for _ in 0..BATCH {
                out.push(&[0x5a; SIZE], Some(dst));
            }
            while !stop.load(Ordering::Relaxed) {
                let mut cursor = 0;
                while cursor < out.len() && !stop.load(Ordering::Relaxed) {
                    if send_all(&tx, &mut out, &mut cursor, |_, _| {}).is_err() {
                        wait(&tx, libc::POLLOUT);
                    }
                }
            }
        })
    };
    let mut inb = PacketBatch::new(BATCH, 2048, 128);
    let mut got: u64 = 0;
    let start = Instant::now();
    while start.elapsed() < budget {
        inb.clear();
        match rx.recv_batch(&mut inb) {
            Ok(n) => got += n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait(&rx, libc::POLLIN),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                let _ = sender.join();
                return Err(e);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = sender.join();
    let pps = got as f64 / secs;
    Ok(UdpResult {
        offload,
        datagrams_per_s: pps,
        gbit_per_s: pps * (SIZE * 8) as f64 / 1e9,
    })
}

/// Sleeps until the socket is ready for `events` (or 10 ms passed), as the shard's reactor
/// does, rather than spinning: both ends share the machine's cores.
fn wait(sock: &UdpBatchSocket, events: libc::c_short) {
    let mut p = libc::pollfd {
        fd: sock.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: poll on one valid pollfd.
    unsafe { libc::poll(&mut p, 1, 10) };
}

/// Both variants, plain first.
pub(super) fn bench_udp(budget: Duration) -> Result<Vec<UdpResult>, String> {
    [false, true]
        .into_iter()
        .map(|offload| one(offload, budget).map_err(|e| format!("UDP loopback bench: {e}")))
        .collect()
}

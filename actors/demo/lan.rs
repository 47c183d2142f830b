//! The hub's LAN in the demo: the far end of each shard's MemoryPort. Every packet the hub
//! decapsulated is counted for its spoke and echoed back (addresses and ports swapped), so
//! the hub encapsulates it back to that spoke.

use std::sync::Arc;

use super::stats::{LanStats, SpokeStats};
use super::{HUB_LAN, spoke_of_host};
use crate::io::{self, MemoryPort};

pub async fn echo(port: MemoryPort, spokes: Arc<[SpokeStats]>, lan: Arc<LanStats>) {
    let fd = match io::register(port) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("ikehub demo: cannot register a cleartext port: {e}");
            return;
        }
    };
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok(mut guard) = fd.readable().await else {
            return;
        };
        loop {
            let n = match guard.try_io(|p| p.get_ref().recv(&mut buf)) {
                Ok(Ok(n)) => n,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(Err(_)) => return,
                Err(_would_block) => break,
            };
            let p = &mut buf[..n];
            let src = if n >= 28 && p[0] == 0x45 && p[9] == 17 && p[16..20] == HUB_LAN.octets() {
                spoke_of_host([p[12], p[13], p[14], p[15]], spokes.len())
            } else {
                None
            };
            let Some(i) = src else {
                SpokeStats::add(&lan.unexpected, 1);
                continue;
            };
            SpokeStats::add(&spokes[i].up_packets, 1);
            SpokeStats::add(&spokes[i].up_bytes, n as u64);
            // Swap addresses and ports: neither changes the IPv4 or UDP checksum.
            for k in 0..4 {
                p.swap(12 + k, 16 + k);
            }
            p.swap(20, 22);
            p.swap(21, 23);
            if send(&fd, p).await.is_err() {
                SpokeStats::add(&lan.send_errors, 1);
            }
        }
    }
}

/// Writes one packet, waiting while the port's buffer is full.
async fn send(fd: &tokio::io::unix::AsyncFd<MemoryPort>, p: &[u8]) -> std::io::Result<()> {
    match fd.get_ref().send(p) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => return Err(e),
        Err(_) => {}
    }
    loop {
        let mut g = fd.writable().await?;
        match g.try_io(|f| f.get_ref().send(p)) {
            Ok(r) => return r.map(|_| ()),
            Err(_would_block) => continue,
        }
    }
}

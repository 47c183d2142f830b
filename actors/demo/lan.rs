//! The hub's LAN in the demo: the far end of each shard's MemoryPort. Every packet the hub
//! decapsulated is counted for its spoke and echoed back (addresses and ports swapped), so
//! the hub encapsulates it back to that spoke. IPv4 or IPv6 alike: [`inner::parse`] checks the
//! headers (and over IPv6 the UDP checksum the pseudo-header covers) of what the hub delivered.

use std::net::IpAddr;
use std::sync::Arc;

use super::addresses::spoke_of_host;
use super::inner;
use super::stats::{LanStats, SpokeStats};
use crate::io::{self, MemoryPort};

/// Echoes what comes out of the hub on `port` to the hub LAN host `hub_lan`.
pub async fn echo(
    port: MemoryPort,
    hub_lan: IpAddr,
    spokes: Arc<[SpokeStats]>,
    lan: Arc<LanStats>,
) {
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
            let src = inner::parse(p)
                .filter(|d| d.dst == hub_lan)
                .and_then(|d| spoke_of_host(d.src, spokes.len()));
            let Some(i) = src else {
                SpokeStats::add(&lan.unexpected, 1);
                continue;
            };
            SpokeStats::add(&spokes[i].up_packets, 1);
            SpokeStats::add(&spokes[i].up_bytes, n as u64);
            inner::swap(p);
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

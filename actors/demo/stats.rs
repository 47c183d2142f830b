//! Counters the demo's spokes and hub-LAN side share, one set per spoke, all atomics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub struct SpokeStats {
    /// Packets the spoke encapsulated and sent.
    pub sent: AtomicU64,
    /// Cleartext packets of this spoke that came out of the hub on its LAN side.
    pub up_packets: AtomicU64,
    pub up_bytes: AtomicU64,
    /// Echoes this spoke decapsulated (inner bytes).
    pub down_packets: AtomicU64,
    pub down_bytes: AtomicU64,
    /// ICV, replay and padding failures on the spoke's inbound SA (fatal for the demo).
    pub decap_errors: AtomicU64,
    /// Other inbound drops (malformed, wrong sender, unexpected inner packet, ...).
    pub other_drops: AtomicU64,
    /// Datagrams the spoke could not send or encapsulate.
    pub send_errors: AtomicU64,
}

impl SpokeStats {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }
}

/// Counters of the hub-LAN side (the demo end of the MemoryPorts).
#[derive(Default)]
pub struct LanStats {
    /// Packets that did not come from a known spoke host to the hub LAN host.
    pub unexpected: AtomicU64,
    /// Echoes that could not be written back into a MemoryPort.
    pub send_errors: AtomicU64,
}

/// Sums of the per-spoke counters.
#[derive(Clone, Copy, Default, Debug)]
pub struct Totals {
    pub sent: u64,
    pub up_packets: u64,
    pub up_bytes: u64,
    pub down_packets: u64,
    pub down_bytes: u64,
    pub decap_errors: u64,
    pub other_drops: u64,
    pub send_errors: u64,
}

pub fn totals(spokes: &[SpokeStats]) -> Totals {
    let mut t = Totals::default();
    for s in spokes {
        t.sent += SpokeStats::get(&s.sent);
        t.up_packets += SpokeStats::get(&s.up_packets);
        t.up_bytes += SpokeStats::get(&s.up_bytes);
        t.down_packets += SpokeStats::get(&s.down_packets);
        t.down_bytes += SpokeStats::get(&s.down_bytes);
        t.decap_errors += SpokeStats::get(&s.decap_errors);
        t.other_drops += SpokeStats::get(&s.other_drops);
        t.send_errors += SpokeStats::get(&s.send_errors);
    }
    t
}

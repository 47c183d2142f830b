//! Counters the demo's spokes and hub-LAN side share, one set per spoke, all atomics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub struct SpokeStats {
    /// 1 once the spoke's child SA is up (negotiated by IKE and built at the spoke).
    pub ike_up: AtomicU64,
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
    /// ESP SPIs of the spoke's current pair (0 until it is up; 0 is reserved, RFC 4303 §2.1):
    /// its outbound SA's is the hub's inbound SA's, its inbound's the hub's outbound's. They
    /// find the spoke's SAs in the hub's report: the hub chose its inbound SPI and the spokes
    /// theirs from one allocator, so neither repeats, while the hub's policy names (`spokes@::1`,
    /// `spokes@::1#7`, ...) say nothing about which spoke behind one address is which.
    pub out_spi: AtomicU64,
    pub in_spi: AtomicU64,
}

impl SpokeStats {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }
    pub fn set(c: &AtomicU64, v: u64) {
        c.store(v, Relaxed);
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

/// How the spokes' IKE handshakes went (all atomics, shared by the spoke tasks).
#[derive(Default)]
pub struct SetupStats {
    /// Handshakes started (a setup slot was free).
    pub started: AtomicU64,
    /// Child SA up (main mode + quick mode done) and installed at the spoke.
    pub up: AtomicU64,
    /// Sessions that gave up (or whose SA could not be built).
    pub failed: AtomicU64,
    /// IKE messages the spokes sent during setup, and how many of them repeated the previous
    /// one (retransmissions after a lost or slow answer).
    pub transmits: AtomicU64,
    pub retransmits: AtomicU64,
    /// Handshake durations (slot granted -> child SA up), microseconds.
    pub handshake_us_sum: AtomicU64,
    pub handshake_us_max: AtomicU64,
    /// Microseconds after the setup started at which the last tunnel came up.
    pub last_up_us: AtomicU64,
    /// The first few failure reasons, `spoke-N (addr): reason`.
    pub failures: std::sync::Mutex<Vec<String>>,
}

impl SetupStats {
    pub fn note_failure(&self, what: String) {
        SpokeStats::add(&self.failed, 1);
        if let Ok(mut f) = self.failures.lock()
            && f.len() < 50
        {
            f.push(what);
        }
    }
}

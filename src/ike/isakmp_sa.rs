//! An established ISAKMP SA (phase 1 done): its keys, IV chain, what the peer supports, its
//! lifetime, and the message IDs in use.

use std::time::{Duration, Instant};

use super::cipher::IvChain;
use super::config::RekeyConfig;
use super::keys::IsakmpSaKeys;
use super::lifetimes::{hard_deadline, soft_deadline};
use super::nat_t::PeerCapabilities;
use super::proposal::Phase1Suite;

pub(crate) struct IsakmpSa {
    pub cky_i: [u8; 8],
    pub cky_r: [u8; 8],
    /// We sent main-mode message 1.
    pub initiator: bool,
    pub suite: Phase1Suite,
    /// SKEYID_d and SKEYID_a (the rest of the phase-1 schedule went with main mode).
    pub keys: IsakmpSaKeys,
    pub iv: IvChain,
    pub caps: PeerCapabilities,
    pub established: Instant,
    /// Re-key (initiator only) at this time.
    pub soft: Option<Instant>,
    /// Deleted at this time.
    pub hard: Option<Instant>,
    /// A successor is established: this one is deleted then (grace period).
    pub retire_at: Option<Instant>,
    /// A re-key main mode is running for it.
    pub rekeying: bool,
    /// Message IDs used in this SA (RFC 2408 §3.1: unique per exchange).
    pub used_ids: Vec<u32>,
    /// The peer's authenticated phase-1 ID, e.g. "fqdn:spoke1.example.net".
    pub peer_id: String,
}

impl std::fmt::Debug for IsakmpSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IsakmpSa")
            .field("cky_i", &hex(&self.cky_i))
            .field("cky_r", &hex(&self.cky_r))
            .field("suite", &self.suite.to_string())
            .finish()
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl IsakmpSa {
    pub fn cookies(&self) -> ([u8; 8], [u8; 8]) {
        (self.cky_i, self.cky_r)
    }

    pub fn matches(&self, cky_i: &[u8; 8], cky_r: &[u8; 8]) -> bool {
        &self.cky_i == cky_i && &self.cky_r == cky_r
    }

    pub fn lifetime(&self) -> Option<Duration> {
        self.suite.lifetime_seconds.map(Duration::from_secs)
    }

    /// RESPONDER-LIFETIME from the responder of an SA we initiated (RFC 2407 §4.6.3.1): run
    /// the shorter lifetime, counted from establishment; a longer (or 0) one changes nothing.
    pub fn shorten_lifetime(
        &mut self,
        secs: Option<u64>,
        kb: Option<u64>,
        rekey: RekeyConfig,
        r: u32,
    ) {
        let ours = self.suite;
        let agreed = Phase1Suite {
            lifetime_seconds: secs,
            lifetime_kilobytes: kb,
            ..ours
        }
        .with_lifetimes_of(&ours);
        if agreed == ours {
            return;
        }
        self.suite = agreed;
        self.schedule(rekey, || r);
    }

    /// Sets the re-key (soft) and removal (hard) deadlines from the lifetime, counted from
    /// establishment; only the initiator of the SA re-keys it, so both ends never race.
    /// `draw` gives the jitter's random number (drawn only when there is a lifetime). Without a
    /// lifetime nothing changes.
    pub fn schedule(&mut self, rekey: RekeyConfig, draw: impl FnOnce() -> u32) {
        let Some(life) = self.lifetime() else { return };
        let soft = soft_deadline(
            self.established,
            life,
            rekey.soft_percent,
            rekey.jitter_percent,
            draw(),
        );
        self.hard = hard_deadline(self.established, life);
        if self.initiator {
            self.soft = soft;
        }
    }

    /// Usable for new exchanges.
    pub fn active(&self) -> bool {
        self.retire_at.is_none()
    }

    /// A fresh message ID: random, non-zero, unused in this SA.
    pub fn new_message_id(&mut self, mut draw: impl FnMut() -> u32) -> u32 {
        loop {
            let id = draw();
            if id != 0 && !self.used_ids.contains(&id) {
                if self.used_ids.len() >= 256 {
                    self.used_ids.remove(0);
                }
                self.used_ids.push(id);
                return id;
            }
        }
    }

    /// Remembers a message ID the peer chose.
    pub fn note_message_id(&mut self, id: u32) {
        if !self.used_ids.contains(&id) {
            if self.used_ids.len() >= 256 {
                self.used_ids.remove(0);
            }
            self.used_ids.push(id);
        }
    }
}

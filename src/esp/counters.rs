//! Per-SA counters (docs/cli.md `show sa --json`: packets, bytes, replay drops, ICV failures,
//! padding errors, selector mismatches). An SA belongs to one shard, so these are plain
//! integers, not atomics.

use super::DropReason;

/// Counters of one SA. Bytes count the cleartext (inner) packets carried, which is what the
/// kilobyte lifetime limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaCounters {
    /// Packets encapsulated (outbound) or accepted (inbound).
    pub packets: u64,
    /// Inner bytes of those packets.
    pub bytes: u64,
    /// Replayed or too old sequence numbers.
    pub replay_drops: u64,
    /// ESP or AH ICV did not verify.
    pub icv_failures: u64,
    /// Bad padding bytes or pad length.
    pub padding_errors: u64,
    /// Inner packet outside the protected networks.
    pub selector_mismatches: u64,
    /// Every other drop: truncated or malformed input, wrong SPI, fragments, dummy packets,
    /// expired SA, ...
    pub other_drops: u64,
}

impl SaCounters {
    pub(crate) fn record_ok(&mut self, inner_len: usize) {
        self.packets += 1;
        self.bytes += inner_len as u64;
    }

    pub(crate) fn record_drop(&mut self, reason: DropReason) {
        match reason {
            DropReason::Replayed => self.replay_drops += 1,
            DropReason::IcvFailure => self.icv_failures += 1,
            DropReason::BadPadding | DropReason::BadPadLength => self.padding_errors += 1,
            DropReason::SelectorMismatch => self.selector_mismatches += 1,
            _ => self.other_drops += 1,
        }
    }

    /// All drops together.
    pub fn drops(&self) -> u64 {
        self.replay_drops
            + self.icv_failures
            + self.padding_errors
            + self.selector_mismatches
            + self.other_drops
    }
}

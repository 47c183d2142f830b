//! Anti-replay sliding window (RFC 4303 §3.4.3, Appendix A2 without ESN).
//!
//! The window is a ring of 64-bit words allocated once when the SA is built (RFC 6479 layout):
//! the bit of sequence number `s` lives at `s mod (64 * words)`, and moving the right edge
//! clears whole words instead of shifting the bitmap, so neither `check` nor `commit`
//! allocates or costs more than O(words skipped).
//!
//! `check` runs before the ICV is verified (it is cheap and changes nothing); `commit` only
//! after the ICV checked out, so a forged packet can never move the window.

/// Largest supported window, in packets.
pub const MAX_WINDOW: u32 = 65536;

/// Why a sequence number is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// Left of the window.
    TooOld,
    /// Already seen.
    Duplicate,
    /// Sequence number 0 is never sent (RFC 4303 §2.2: the first packet has 1).
    Zero,
}

/// The window's words: inline up to two, which is what the default 64-packet window takes
/// (with its spare word); a heap block per inbound SA cost 32 bytes per tunnel
/// (docs/design.md "Per-tunnel memory budget").
#[derive(Clone, Debug)]
enum Bitmap {
    Inline([u64; 2]),
    Heap(Box<[u64]>),
}

impl std::ops::Deref for Bitmap {
    type Target = [u64];

    fn deref(&self) -> &[u64] {
        match self {
            Self::Inline(w) => w,
            Self::Heap(w) => w,
        }
    }
}

impl std::ops::DerefMut for Bitmap {
    fn deref_mut(&mut self) -> &mut [u64] {
        match self {
            Self::Inline(w) => w,
            Self::Heap(w) => w,
        }
    }
}

/// The receive window of one SA. Size 0 disables anti-replay.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    size: u32,
    /// Highest sequence number committed (0 = none yet).
    top: u32,
    bitmap: Bitmap,
}

impl ReplayWindow {
    /// A window of `size` packets (0 = off); sizes above [`MAX_WINDOW`] are clamped.
    pub fn new(size: u32) -> Self {
        let size = size.min(MAX_WINDOW);
        // One spare word, so that clearing the word the new top lands in never erases bits
        // that are still inside the window.
        // A power of two: the bit of `seq` is `seq` masked. No words at all when off (an
        // outbound SA's window): `0.next_power_of_two()` is 1, and every outbound SA paid a
        // heap block for a word it never used.
        let words = if size == 0 {
            0
        } else {
            ((size as usize).div_ceil(64) + 1).next_power_of_two()
        };
        let bitmap = match words {
            0 => Bitmap::Heap(Box::default()),
            2 => Bitmap::Inline([0; 2]),
            n => Bitmap::Heap(vec![0u64; n].into_boxed_slice()),
        };
        Self {
            size,
            top: 0,
            bitmap,
        }
    }

    /// Window size in packets (0 = anti-replay off).
    pub fn size(&self) -> u32 {
        self.size
    }

    pub fn enabled(&self) -> bool {
        self.size != 0
    }

    /// Highest sequence number accepted so far.
    pub fn top(&self) -> u32 {
        self.top
    }

    fn bits(&self) -> u32 {
        (self.bitmap.len() * 64) as u32
    }

    fn locate(&self, seq: u32) -> (usize, u64) {
        let bit = seq & (self.bits() - 1);
        ((bit / 64) as usize, 1u64 << (bit % 64))
    }

    /// Would `seq` be accepted? Changes nothing.
    pub fn check(&self, seq: u32) -> Result<(), ReplayError> {
        if !self.enabled() {
            return Ok(());
        }
        if seq == 0 {
            return Err(ReplayError::Zero);
        }
        if seq > self.top {
            return Ok(());
        }
        if self.top - seq >= self.size {
            return Err(ReplayError::TooOld);
        }
        let (w, m) = self.locate(seq);
        if self.bitmap[w] & m != 0 {
            Err(ReplayError::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Records `seq` as received; call only after the packet's ICV verified and `check`
    /// passed.
    pub fn commit(&mut self, seq: u32) {
        if !self.enabled() || seq == 0 {
            return;
        }
        if seq > self.top {
            let words = self.bitmap.len() as u32;
            let cur = self.top / 64;
            let new = seq / 64;
            let skip = (new - cur).min(words);
            for i in 1..=skip {
                let w = ((cur + i) % words) as usize;
                self.bitmap[w] = 0;
            }
            self.top = seq;
        }
        let (w, m) = self.locate(seq);
        self.bitmap[w] |= m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_accepts_everything() {
        let mut w = ReplayWindow::new(0);
        for s in [5, 5, 1, 0, u32::MAX] {
            assert!(w.check(s).is_ok());
            w.commit(s);
        }
    }

    #[test]
    fn in_order_duplicates_and_old() {
        let mut w = ReplayWindow::new(64);
        assert_eq!(w.check(0), Err(ReplayError::Zero));
        for s in 1..=200 {
            assert!(w.check(s).is_ok());
            w.commit(s);
            assert_eq!(w.check(s), Err(ReplayError::Duplicate));
        }
        assert_eq!(w.check(137), Err(ReplayError::Duplicate));
        assert_eq!(w.check(136), Err(ReplayError::TooOld));
        assert!(w.check(201).is_ok());
    }

    #[test]
    fn out_of_order_within_window() {
        let mut w = ReplayWindow::new(32);
        w.commit(100);
        for s in (69..100).rev() {
            assert!(w.check(s).is_ok(), "{s}");
            w.commit(s);
        }
        assert_eq!(w.check(68), Err(ReplayError::TooOld));
        assert_eq!(w.check(80), Err(ReplayError::Duplicate));
        // A large jump clears the whole bitmap.
        w.commit(100_000);
        assert!(w.check(99_990).is_ok());
        assert_eq!(w.check(100), Err(ReplayError::TooOld));
    }

    /// Windows up to 64 packets keep their two words inline, larger ones on the heap, and
    /// both behave as the reference model below says.
    #[test]
    fn small_windows_are_inline() {
        for (size, inline) in [(1u32, true), (64, true), (65, false), (1000, false)] {
            let w = ReplayWindow::new(size);
            assert_eq!(matches!(w.bitmap, Bitmap::Inline(_)), inline, "{size}");
        }
        // Off (every outbound SA): no words (the old code allocated one).
        assert!(ReplayWindow::new(0).bitmap.is_empty());
    }

    #[test]
    fn large_windows_match_a_reference_model() {
        for size in [1u32, 63, 64, 65, 1000, 4096] {
            let mut w = ReplayWindow::new(size);
            let mut seen = std::collections::BTreeSet::new();
            let mut top = 0u32;
            // Deterministic pseudo-random walk with reordering and repeats.
            let mut x: u32 = 12345;
            for _ in 0..20_000 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let jitter = (x >> 8) % (size * 2 + 3);
                let seq = (top + 3).saturating_sub(jitter).max(1);
                let model_ok = if seq > top {
                    true
                } else {
                    top - seq < size && !seen.contains(&seq)
                };
                assert_eq!(
                    w.check(seq).is_ok(),
                    model_ok,
                    "size {size} seq {seq} top {top}"
                );
                if model_ok {
                    w.commit(seq);
                    seen.insert(seq);
                    top = top.max(seq);
                }
            }
        }
    }
}

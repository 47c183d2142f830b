//! SPIs of our inbound SAs, unique on this host across manual policies and every IKE peer, and
//! outside 1-255 (RFC 4303 §2.1). Taken only when an SA is negotiated, never per packet.

use std::collections::HashSet;
use std::sync::Mutex;

use ikehub::ike::SpiAllocator;

#[derive(Debug, Default)]
pub struct HostSpis {
    used: Mutex<HashSet<u32>>,
}

impl HostSpis {
    /// Marks SPIs as taken (manual policies' inbound SPIs).
    pub fn reserve(&self, spi: u32) {
        if let Ok(mut u) = self.used.lock() {
            u.insert(spi);
        }
    }
}

impl SpiAllocator for HostSpis {
    fn allocate(&self, hint: u32) -> u32 {
        let Ok(mut used) = self.used.lock() else {
            return hint | 0x1000_0000;
        };
        let mut spi = hint;
        loop {
            if spi >= 256 && used.insert(spi) {
                return spi;
            }
            // A multiplicative step walks all of u32 without revealing a counter.
            spi = spi.wrapping_mul(0x9e37_79b1).wrapping_add(0x7f4a_7c15);
        }
    }

    fn release(&self, spi: u32) {
        if let Ok(mut u) = self.used.lock() {
            u.remove(&spi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_reserved_range_nor_a_taken_spi() {
        let s = HostSpis::default();
        s.reserve(1111);
        assert_ne!(s.allocate(1111), 1111);
        for hint in 0..300 {
            let spi = s.allocate(hint);
            assert!(spi >= 256);
        }
        let a = s.allocate(5000);
        assert_eq!(a, 5000);
        assert_ne!(s.allocate(5000), 5000);
        s.release(5000);
        assert_eq!(s.allocate(5000), 5000);
    }
}

//! The RNG the daemon gives each IKE session. The core (`src/`) never reads the OS RNG: the
//! daemon injects one, and this is it.

/// The calling thread's CSPRNG (`rand::rng()`: ChaCha12, seeded and reseeded from the OS),
/// reached through a zero-sized handle, so a session's `Box` of it allocates nothing. A
/// `StdRng` of its own cost every session 320 bytes (docs/design.md "Per-tunnel memory
/// budget") and bought nothing: both are CSPRNGs seeded from the OS. A session only runs on
/// its peer actor's worker thread, so it always draws from that thread's generator.
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadLocalRng;

impl rand::TryRng for ThreadLocalRng {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        rand::rng().try_next_u32()
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        rand::rng().try_next_u64()
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        rand::rng().try_fill_bytes(dst)
    }
}

impl rand::TryCryptoRng for ThreadLocalRng {}

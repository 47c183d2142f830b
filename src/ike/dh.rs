//! MODP Diffie-Hellman for IKEv1: groups 1 and 2 (RFC 2409 §6.1, §6.2), 5, 14, 15 and 16
//! (RFC 3526 §2-§5), all with generator 2.
//!
//! A key pair costs one fixed-base exponentiation g^x from a per-group precomputed table
//! (`dh/fixed_base.rs`, on crypto-bigint's Montgomery arithmetic); a shared secret costs one
//! variable-base exponentiation y^x by OpenSSL's `BN_mod_exp_mont_consttime` (`dh/ossl.rs`).
//! Both are constant-time in the exponent's value (their time depends only on the public bit
//! bound). crypto-bigint's `pow_bounded_exp` stays as the portable reference both are
//! cross-checked against, and as the fallback if OpenSSL fails; num-bigint's `modpow` is not
//! constant-time and appears only in the tests.
//!
//! Private exponents are shorter than the modulus, as RFC 3526 §1 and §8 allow: at least
//! RFC 7919 §5.2's minimum for a safe-prime group of the same size (225 bits for 2048, 275 for
//! 3072, 325 for 4096: twice the group's strength, with margin), rounded up to 64 bits, and
//! never under 256 bits. All six primes are safe primes (p = 2q + 1), so short exponents do not
//! expose a small-subgroup shortcut (van Oorschot-Wiener). See [`DhGroup::exponent_bits`].

use std::sync::OnceLock;

use crypto_bigint::modular::{FixedMontyForm, FixedMontyParams};
use crypto_bigint::{Odd, U512, U768, U1024, U1536, U2048, U3072, U4096, Uint};
use rand::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use fixed_base::FixedBase;
pub use reuse::{DhKeyCache, DhKeyPair};

/// A MODP group ikehub implements (the Transform attribute "Group Description", RFC 2409
/// Appendix A, and the IANA IKE group registry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DhGroup {
    /// Group 1, 768-bit MODP (RFC 2409 §6.1). Weak; accepted only if a profile names it.
    Modp768,
    /// Group 2, 1024-bit MODP (RFC 2409 §6.2).
    Modp1024,
    /// Group 5, 1536-bit MODP (RFC 3526 §2).
    Modp1536,
    /// Group 14, 2048-bit MODP (RFC 3526 §3).
    Modp2048,
    /// Group 15, 3072-bit MODP (RFC 3526 §4).
    Modp3072,
    /// Group 16, 4096-bit MODP (RFC 3526 §5).
    Modp4096,
    /// A 64-bit safe prime for the fuzz harnesses only: it makes a whole main mode cost
    /// microseconds instead of milliseconds, so the fuzzer spends its time in the state machine
    /// rather than in modular exponentiation, while every code path stays the same (KE
    /// lengths, range checks, SKEYID). It exists only when compiled with `--cfg fuzzing` (which
    /// cargo-fuzz sets): a normal build has no such variant, and no profile can name it (the
    /// profile checker has its own list of groups).
    #[cfg(fuzzing)]
    Fuzz64,
}

/// The group number of [`DhGroup::Fuzz64`], from the private-use range (RFC 2409 Appendix A:
/// 32768-65535).
#[cfg(fuzzing)]
pub const FUZZ_GROUP_ID: u16 = 0xfff0;

/// p = 2^64 - 8489, a safe prime (q = (p-1)/2 is prime) with p = 7 mod 8, so that 2 generates
/// the subgroup of order q as in the MODP groups.
#[cfg(fuzzing)]
const P_FUZZ64: &str = "FFFFFFFFFFFFDED7";

/// A Diffie-Hellman failure; the session turns it into a notify (INVALID-KEY-INFORMATION).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DhError {
    #[error("DH public value is {got} bytes, group {group} needs exactly {expected}")]
    Length {
        group: u16,
        expected: usize,
        got: usize,
    },
    #[error("DH public value out of range (must be 1 < y < p-1) for group {group}")]
    OutOfRange { group: u16 },
}

const P768: &str = "\
    FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879\
    8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A3620\
    FFFFFFFFFFFFFFFF";

const P1024: &str = "\
    FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879\
    8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B\
    0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF";

const P1536: &str = "\
    FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879\
    8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B\
    0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA4836\
    1C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804\
    F1746C08CA237327FFFFFFFFFFFFFFFF";

const P2048: &str = "\
    FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879\
    8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B\
    0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA4836\
    1C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804\
    F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6\
    955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF";

const P3072: &str = "\
    FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879\
    8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B\
    0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA4836\
    1C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804\
    F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6\
    955817183995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64\
    ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7ABF5AE8CDB0933D71E8C94E04A25619DCEE3D226\
    1AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2\
    08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF";

const P4096: &str = "\
    FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879\
    8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B\
    0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA4836\
    1C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804\
    F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6\
    955817183995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64\
    ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7ABF5AE8CDB0933D71E8C94E04A25619DCEE3D226\
    1AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2\
    08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D788719A10BDBA5B2699C32718\
    6AF4E23C1A946834B6150BDA2583E9CA2AD44CE8DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D\
    99B2964FA090C3A2233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA993B4EA98\
    8D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF";

/// The generator of every MODP group here (RFC 2409 §6, RFC 3526).
pub const GENERATOR: u8 = 2;

fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

impl DhGroup {
    pub const ALL: [Self; 6] = [
        Self::Modp768,
        Self::Modp1024,
        Self::Modp1536,
        Self::Modp2048,
        Self::Modp3072,
        Self::Modp4096,
    ];

    /// The IANA group number carried in the Group Description attribute.
    pub fn from_id(id: u16) -> Option<Self> {
        #[cfg(fuzzing)]
        if id == FUZZ_GROUP_ID {
            return Some(Self::Fuzz64);
        }
        Self::ALL.into_iter().find(|g| g.id() == id)
    }

    pub fn id(self) -> u16 {
        match self {
            Self::Modp768 => 1,
            Self::Modp1024 => 2,
            Self::Modp1536 => 5,
            Self::Modp2048 => 14,
            Self::Modp3072 => 15,
            Self::Modp4096 => 16,
            #[cfg(fuzzing)]
            Self::Fuzz64 => FUZZ_GROUP_ID,
        }
    }

    /// Size of the prime in bits.
    pub fn bits(self) -> usize {
        match self {
            Self::Modp768 => 768,
            Self::Modp1024 => 1024,
            Self::Modp1536 => 1536,
            Self::Modp2048 => 2048,
            Self::Modp3072 => 3072,
            Self::Modp4096 => 4096,
            #[cfg(fuzzing)]
            Self::Fuzz64 => 64,
        }
    }

    /// Length in bytes of a public value or shared secret in a KE payload: always this exact
    /// length, left-padded with zeros (RFC 2409 §5).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(self) -> usize {
        self.bits() / 8
    }

    /// Bits of randomness in a private exponent: RFC 7919 §5.2's minimum short exponent for a
    /// safe-prime group of this size (225 bits for 2048, 275 for 3072, 325 for 4096), rounded
    /// up to a multiple of 64, at least 256. That is above twice each group's strength (RFC
    /// 7919 A.1-A.3: 103, 125 and 150 bits; NIST SP 800-56A Rev. 3 §5.6.1.1.4 asks for twice
    /// 112, 128 and 152 for these MODP groups), so the exponent is never the weaker link; 1536
    /// bits and below (groups 1, 2, 5: 70-120 bits of strength, RFC 3526 §8) get 256 too.
    ///
    /// This is what both exponentiations cost, not the modulus alone: each bit of exponent is
    /// a squaring of y^x and a quarter of a multiplication of g^x. A longer exponent buys no
    /// security and hands anyone who can start a main mode more of the hub's CPU per message
    /// (CVE-2022-40735, the reason OpenSSL 3 went back to these minimums for named groups).
    pub fn exponent_bits(self) -> u32 {
        match self {
            Self::Modp768 | Self::Modp1024 | Self::Modp1536 | Self::Modp2048 => 256,
            Self::Modp3072 => 320,
            Self::Modp4096 => 384,
            #[cfg(fuzzing)]
            Self::Fuzz64 => 64,
        }
    }

    /// The profile / log spelling (`modp1024`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Modp768 => "modp768",
            Self::Modp1024 => "modp1024",
            Self::Modp1536 => "modp1536",
            Self::Modp2048 => "modp2048",
            Self::Modp3072 => "modp3072",
            Self::Modp4096 => "modp4096",
            #[cfg(fuzzing)]
            Self::Fuzz64 => "fuzz64",
        }
    }

    fn prime_hex(self) -> &'static str {
        match self {
            Self::Modp768 => P768,
            Self::Modp1024 => P1024,
            Self::Modp1536 => P1536,
            Self::Modp2048 => P2048,
            Self::Modp3072 => P3072,
            Self::Modp4096 => P4096,
            #[cfg(fuzzing)]
            Self::Fuzz64 => P_FUZZ64,
        }
    }

    /// The prime p, big-endian, `len()` bytes.
    pub fn prime(self) -> Vec<u8> {
        self.prime_hex()
            .as_bytes()
            .chunks(2)
            .map(|h| hex_value(h[0]) << 4 | hex_value(h[1]))
            .collect()
    }

    /// `base^exp mod p` by crypto-bigint's windowed Montgomery `pow_bounded_exp`,
    /// constant-time in `exp` (`exp_bits` is public), big-endian `len()` bytes. `base` must be
    /// `len()` bytes and already reduced (checked by the callers). The reference the two fast
    /// paths are cross-checked against, and the fallback of [`Self::modexp`].
    fn modexp_portable(self, base: &[u8], exp: &U512, exp_bits: u32) -> Zeroizing<Vec<u8>> {
        macro_rules! params {
            ($u:ty) => {{
                static PARAMS: OnceLock<FixedMontyParams<{ <$u>::LIMBS }>> = OnceLock::new();
                PARAMS.get_or_init(|| monty_params(self.prime_hex()))
            }};
        }
        match self {
            Self::Modp768 => pow(params!(U768), base, exp, exp_bits),
            Self::Modp1024 => pow(params!(U1024), base, exp, exp_bits),
            Self::Modp1536 => pow(params!(U1536), base, exp, exp_bits),
            Self::Modp2048 => pow(params!(U2048), base, exp, exp_bits),
            Self::Modp3072 => pow(params!(U3072), base, exp, exp_bits),
            Self::Modp4096 => pow(params!(U4096), base, exp, exp_bits),
            #[cfg(fuzzing)]
            Self::Fuzz64 => pow(params!(crypto_bigint::U64), base, exp, exp_bits),
        }
    }

    /// `base^exp mod p` for a variable base (the peer's public value): OpenSSL's
    /// constant-time exponentiation (about twice as fast as [`Self::modexp_portable`], see
    /// [`ossl`]), or the portable one if OpenSSL fails (it can only fail to allocate).
    fn modexp(self, base: &[u8], exp: &U512, exp_bits: u32) -> Zeroizing<Vec<u8>> {
        ossl::modexp(self, base, exp, exp_bits)
            .unwrap_or_else(|| self.modexp_portable(base, exp, exp_bits))
    }

    /// Builds the group's g^x table now (once per process: about 3 ms of CPU and 256 KiB for group
    /// 14, see `dh/fixed_base.rs`) so that the first key pair does not pay for it; the daemon may
    /// call this at start for the groups its profiles name. Later calls cost nothing.
    pub fn precompute(self) {
        // A 0-bit exponent builds the table and multiplies nothing.
        drop(self.generator_pow(&U512::ZERO, 0));
    }

    /// `g^exp mod p` for the generator g = 2 from the group's precomputed table (built on first
    /// use), constant-time in `exp`; see [`fixed_base`].
    fn generator_pow(self, exp: &U512, exp_bits: u32) -> Zeroizing<Vec<u8>> {
        macro_rules! table {
            ($u:ty) => {{
                static TABLE: OnceLock<FixedBase<{ <$u>::LIMBS }>> = OnceLock::new();
                let table = TABLE.get_or_init(|| {
                    FixedBase::new(
                        monty_params(self.prime_hex()),
                        GENERATOR,
                        self.exponent_bits(),
                    )
                });
                encode(table.pow(exp, exp_bits))
            }};
        }
        match self {
            Self::Modp768 => table!(U768),
            Self::Modp1024 => table!(U1024),
            Self::Modp1536 => table!(U1536),
            Self::Modp2048 => table!(U2048),
            Self::Modp3072 => table!(U3072),
            Self::Modp4096 => table!(U4096),
            #[cfg(fuzzing)]
            Self::Fuzz64 => table!(crypto_bigint::U64),
        }
    }

    /// Checks a peer's public value: exactly `len()` bytes and 1 < y < p-1 (RFC 2409 §5 on
    /// lengths; the range rules out 0, 1 and p-1, whose powers are fixed, and values >= p).
    /// The value is public, so variable-time comparison is fine.
    pub fn check_public(self, y: &[u8]) -> Result<(), DhError> {
        let group = self.id();
        if y.len() != self.len() {
            return Err(DhError::Length {
                group,
                expected: self.len(),
                got: y.len(),
            });
        }
        // Big-endian byte strings of equal length compare like the integers.
        let mut p_minus_1 = self.prime();
        // p is odd, so subtracting 1 does not borrow.
        let last = p_minus_1.len() - 1;
        p_minus_1[last] -= 1;
        let one = {
            let mut v = vec![0u8; self.len()];
            v[last] = 1;
            v
        };
        if y <= one.as_slice() || y >= p_minus_1.as_slice() {
            return Err(DhError::OutOfRange { group });
        }
        Ok(())
    }
}

impl std::fmt::Display for DhGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Montgomery parameters of a MODP prime. The modulus is public: variable-time setup is fine.
fn monty_params<const L: usize>(prime_hex: &str) -> FixedMontyParams<L> {
    let p = Uint::<L>::from_be_hex(prime_hex);
    FixedMontyParams::new_vartime(Odd::new(p).expect("MODP primes are odd"))
}

fn pow<const L: usize>(
    params: &FixedMontyParams<L>,
    base: &[u8],
    exp: &U512,
    exp_bits: u32,
) -> Zeroizing<Vec<u8>> {
    let mut b = Uint::<L>::from_be_slice(base);
    let mut m = FixedMontyForm::new(&b, params);
    let r = m.pow_bounded_exp(exp, exp_bits);
    b.zeroize();
    m.zeroize();
    encode(r)
}

/// The big-endian bytes of a Montgomery-form result, full length; every temporary wiped.
fn encode<const L: usize>(mut r: FixedMontyForm<L>) -> Zeroizing<Vec<u8>> {
    let mut v = r.retrieve();
    let mut enc = v.to_be_bytes();
    let out = Zeroizing::new(enc.as_ref().to_vec());
    r.zeroize();
    v.zeroize();
    enc.as_mut().zeroize();
    out
}

/// A private exponent x, wiped on drop. One per KE payload: never reuse it across exchanges.
#[derive(ZeroizeOnDrop)]
pub struct DhPrivate {
    #[zeroize(skip)]
    group: DhGroup,
    x: U512,
}

impl std::fmt::Debug for DhPrivate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DhPrivate({}, <redacted>)", self.group)
    }
}

impl DhPrivate {
    /// Draws `group.exponent_bits()` random bits from the injected RNG (an exponent below 2,
    /// which has probability 2^-255, is drawn again).
    pub fn generate<R: CryptoRng + ?Sized>(group: DhGroup, rng: &mut R) -> Self {
        let bytes = group.exponent_bits() as usize / 8;
        let mut buf = Zeroizing::new([0u8; 64]);
        loop {
            rng.fill_bytes(&mut buf[64 - bytes..]);
            let x = U512::from_be_slice(&buf[..]);
            // `Uint` comparison is constant-time; only the outcome of a negligible event (a
            // redraw) could show.
            if x > U512::ONE {
                return Self { group, x };
            }
        }
    }

    /// A fixed exponent, for known-answer tests and benches only (big-endian, at most
    /// `exponent_bits()` bits). Not for production: exponents must come from a CSPRNG.
    #[doc(hidden)]
    pub fn from_exponent_be(group: DhGroup, x: &[u8]) -> Self {
        let mut buf = Zeroizing::new([0u8; 64]);
        let take = x.len().min(64);
        buf[64 - take..].copy_from_slice(&x[x.len() - take..]);
        Self {
            group,
            x: U512::from_be_slice(&buf[..]),
        }
    }

    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// g^x mod p, `group.len()` bytes (the KE payload's Key Exchange Data).
    pub fn public_value(&self) -> Vec<u8> {
        let y = self
            .group
            .generator_pow(&self.x, self.group.exponent_bits());
        y.to_vec()
    }

    /// (g^y)^x mod p for the peer's public value, after [`DhGroup::check_public`].
    pub fn shared_secret(&self, peer: &[u8]) -> Result<SharedSecret, DhError> {
        self.group.check_public(peer)?;
        let z = self.group.modexp(peer, &self.x, self.group.exponent_bits());
        Ok(SharedSecret(z))
    }
}

/// The other exponentiation paths, for the benches that compare them (`benches/ike_crypto.rs`
/// group `dh_options`, `ikehub bench`): same results, different cost.
impl DhPrivate {
    /// g^x by crypto-bigint's windowed `pow_bounded_exp` (no table).
    #[doc(hidden)]
    pub fn public_value_portable(&self) -> Vec<u8> {
        let g = self.generator_bytes();
        let bits = self.group.exponent_bits();
        self.group.modexp_portable(&g, &self.x, bits).to_vec()
    }

    /// g^x by OpenSSL's constant-time exponentiation (no table).
    #[doc(hidden)]
    pub fn public_value_openssl(&self) -> Option<Vec<u8>> {
        let g = self.generator_bytes();
        let bits = self.group.exponent_bits();
        ossl::modexp(self.group, &g, &self.x, bits).map(|y| y.to_vec())
    }

    /// y^x by crypto-bigint's `pow_bounded_exp`, after the same check as `shared_secret`.
    #[doc(hidden)]
    pub fn shared_secret_portable(&self, peer: &[u8]) -> Result<SharedSecret, DhError> {
        self.group.check_public(peer)?;
        let bits = self.group.exponent_bits();
        Ok(SharedSecret(
            self.group.modexp_portable(peer, &self.x, bits),
        ))
    }

    fn generator_bytes(&self) -> Vec<u8> {
        let mut g = vec![0u8; self.group.len()];
        let last = g.len() - 1;
        g[last] = GENERATOR;
        g
    }
}

/// g^xy, `group.len()` bytes including leading zeros (RFC 2409 §5: the shared secret enters
/// SKEYID at its full group length), wiped on drop.
pub struct SharedSecret(Zeroizing<Vec<u8>>);

impl SharedSecret {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for SharedSecret {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedSecret(<{} bytes redacted>)", self.0.len())
    }
}

mod fixed_base;
mod ossl;
pub mod reuse;
#[cfg(test)]
mod tests;

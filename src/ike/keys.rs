//! The IKEv1 key schedule for pre-shared keys (RFC 2409 §5, §5.4, §5.5, §5.7, Appendix B).
//!
//! Every secret is its own zeroizing newtype so SKEYID_d cannot be passed where SKEYID_e is
//! meant (docs/design.md convention 5, "secrets of different roles are different types"). Every
//! function names the exact bytes it hashes; "_b" means a payload's body without its 4-byte generic
//! header (RFC 2409 §3.2), and cookies, message IDs and SPIs are in network byte order as on the
//! wire.

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::prf::{self, KeyedPrf, PrfOutput};
use crate::config::HashAlgorithm;
use crate::crypto::EncrAlgorithm;

macro_rules! secret {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(PrfOutput);

        impl $name {
            /// The raw secret (for keying a PRF or a test); do not log it.
            pub fn as_bytes(&self) -> &[u8] {
                self.0.as_bytes()
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "(<{} bytes redacted>)"), self.0.len())
            }
        }
    };
}

secret!(
    /// SKEYID: for pre-shared keys `prf(pre-shared-key, Ni_b | Nr_b)` (RFC 2409 §5).
    Skeyid
);
secret!(
    /// SKEYID_d: keys KEYMAT for the child SAs (RFC 2409 §5.5).
    SkeyidD
);
secret!(
    /// SKEYID_a: keys the phase-2 and informational HASH payloads.
    SkeyidA
);
secret!(
    /// SKEYID_e: source of the ISAKMP SA's encryption key (Appendix B).
    SkeyidE
);

/// SKEYID for pre-shared-key authentication: `prf(psk, Ni_b | Nr_b)` where Ni_b and Nr_b are
/// the nonce payload bodies (the nonce bytes alone).
pub fn skeyid_psk(hash: HashAlgorithm, psk: &[u8], ni_b: &[u8], nr_b: &[u8]) -> Skeyid {
    Skeyid(prf::prf(hash, psk, &[ni_b, nr_b]))
}

/// `SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0)`.
pub fn skeyid_d(
    hash: HashAlgorithm,
    skeyid: &Skeyid,
    g_xy: &[u8],
    cky_i: &[u8; 8],
    cky_r: &[u8; 8],
) -> SkeyidD {
    SkeyidD(prf::prf(
        hash,
        skeyid.as_bytes(),
        &[g_xy, cky_i, cky_r, &[0]],
    ))
}

/// `SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1)`.
pub fn skeyid_a(
    hash: HashAlgorithm,
    skeyid: &Skeyid,
    skeyid_d: &SkeyidD,
    g_xy: &[u8],
    cky_i: &[u8; 8],
    cky_r: &[u8; 8],
) -> SkeyidA {
    let parts: [&[u8]; 5] = [skeyid_d.as_bytes(), g_xy, cky_i, cky_r, &[1]];
    SkeyidA(prf::prf(hash, skeyid.as_bytes(), &parts))
}

/// `SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2)`.
pub fn skeyid_e(
    hash: HashAlgorithm,
    skeyid: &Skeyid,
    skeyid_a: &SkeyidA,
    g_xy: &[u8],
    cky_i: &[u8; 8],
    cky_r: &[u8; 8],
) -> SkeyidE {
    let parts: [&[u8]; 5] = [skeyid_a.as_bytes(), g_xy, cky_i, cky_r, &[2]];
    SkeyidE(prf::prf(hash, skeyid.as_bytes(), &parts))
}

/// The ISAKMP SA's encryption key (RFC 2409 Appendix B): the first `key_len` bytes of
/// SKEYID_e when it is long enough, else of `K1 | K2 | ...` with `K1 = prf(SKEYID_e, 0)` (one
/// zero octet) and `Kn = prf(SKEYID_e, K(n-1))`.
pub fn encryption_key(hash: HashAlgorithm, skeyid_e: &SkeyidE, key_len: usize) -> EncKey {
    let e = skeyid_e.as_bytes();
    if e.len() >= key_len {
        return EncKey(Zeroizing::new(e[..key_len].to_vec()));
    }
    EncKey(expand(&KeyedPrf::new(hash, e), &[&[0]], &[], key_len))
}

/// The `K1 | K2 | ...` expansion both Appendix B and KEYMAT (§5.5) use, cut to `len` bytes:
/// `K1 = prf(first)`, `Kn = prf(K(n-1) | then)`.
fn expand(kprf: &KeyedPrf, first: &[&[u8]], then: &[&[u8]], len: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(len + prf::MAX_PRF_LEN));
    let mut k = kprf.prf(first);
    out.extend_from_slice(k.as_bytes());
    while out.len() < len {
        let parts: Vec<&[u8]> = std::iter::once(k.as_bytes())
            .chain(then.iter().copied())
            .collect();
        k = kprf.prf(&parts);
        out.extend_from_slice(k.as_bytes());
    }
    out.truncate(len);
    out
}

/// The phase-1 encryption key, exactly the cipher's key length; wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct EncKey(Zeroizing<Vec<u8>>);

impl EncKey {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for EncKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EncKey(<{} bytes redacted>)", self.0.len())
    }
}

/// The first phase-1 IV (Appendix B): `hash(g^xi | g^xr)` truncated to the cipher's block
/// size, with the negotiated hash (not the PRF) over the two KE payload bodies.
pub fn phase1_iv(hash: HashAlgorithm, encr: EncrAlgorithm, g_xi: &[u8], g_xr: &[u8]) -> Vec<u8> {
    let h = prf::hash(hash, &[g_xi, g_xr]);
    h.as_bytes()[..encr.block_len().min(h.len())].to_vec()
}

/// What an established ISAKMP SA keeps of its key schedule: SKEYID_d for KEYMAT and SKEYID_a
/// for the phase-2 and informational HASHes. SKEYID, SKEYID_e, the encryption key (already in
/// the IV chain's cipher) and IV0 serve phase 1 only and go with [`Phase1Keys`] when main mode
/// ends: fewer secrets held, and about 180 bytes less per tunnel (docs/design.md "Per-tunnel
/// memory budget").
#[derive(Debug)]
pub struct IsakmpSaKeys {
    pub hash: HashAlgorithm,
    pub skeyid_d: SkeyidD,
    pub skeyid_a: SkeyidA,
}

/// Everything phase 1 derives, for one ISAKMP SA. It dereferences to the part the SA keeps
/// ([`IsakmpSaKeys`]: `skeyid_d`, `skeyid_a`, the phase-2 HASHes and KEYMAT).
#[derive(Debug)]
pub struct Phase1Keys {
    pub encr: EncrAlgorithm,
    pub skeyid: Skeyid,
    pub sa: IsakmpSaKeys,
    pub skeyid_e: SkeyidE,
    /// `encr.key_len()` bytes (Appendix B expansion when SKEYID_e is shorter).
    pub enc_key: EncKey,
    /// `hash(g^xi | g^xr)` truncated to `encr.block_len()`: the IV of main-mode message 5.
    pub iv0: Vec<u8>,
}

/// The inputs of the phase-1 key schedule, named as in RFC 2409 §5.
#[derive(Clone, Copy, Debug)]
pub struct Phase1Inputs<'a> {
    /// Negotiated hash (PRF = HMAC of it).
    pub hash: HashAlgorithm,
    /// Negotiated phase-1 cipher (never `Null`).
    pub encr: EncrAlgorithm,
    /// Initiator's and responder's nonce payload bodies.
    pub ni_b: &'a [u8],
    pub nr_b: &'a [u8],
    /// g^xy, the full group-length shared secret ([`super::dh::SharedSecret::as_bytes`]).
    pub g_xy: &'a [u8],
    /// Initiator's and responder's cookies from the ISAKMP header.
    pub cky_i: &'a [u8; 8],
    pub cky_r: &'a [u8; 8],
    /// KE payload bodies: initiator's g^xi and responder's g^xr, group length.
    pub g_xi: &'a [u8],
    pub g_xr: &'a [u8],
}

impl Phase1Keys {
    /// The whole schedule for pre-shared-key authentication.
    pub fn derive_psk(psk: &[u8], inp: &Phase1Inputs<'_>) -> Self {
        let skeyid = skeyid_psk(inp.hash, psk, inp.ni_b, inp.nr_b);
        Self::from_skeyid(skeyid, inp)
    }

    /// The schedule from SKEYID on (SKEYID depends on the authentication method).
    pub fn from_skeyid(skeyid: Skeyid, inp: &Phase1Inputs<'_>) -> Self {
        let h = inp.hash;
        let d = skeyid_d(h, &skeyid, inp.g_xy, inp.cky_i, inp.cky_r);
        let a = skeyid_a(h, &skeyid, &d, inp.g_xy, inp.cky_i, inp.cky_r);
        let e = skeyid_e(h, &skeyid, &a, inp.g_xy, inp.cky_i, inp.cky_r);
        let enc_key = encryption_key(h, &e, inp.encr.key_len());
        let iv0 = phase1_iv(h, inp.encr, inp.g_xi, inp.g_xr);
        Self {
            encr: inp.encr,
            skeyid,
            sa: IsakmpSaKeys {
                hash: h,
                skeyid_d: d,
                skeyid_a: a,
            },
            skeyid_e: e,
            enc_key,
            iv0,
        }
    }

    /// The part the established SA keeps; the rest is wiped here.
    pub fn into_sa_keys(self) -> IsakmpSaKeys {
        self.sa
    }

    /// `HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b)` (RFC 2409 §5).
    /// `sai_b` is the body of the SA payload the initiator sent in message 1 (DOI, situation,
    /// proposals: everything after the SA payload's generic header); `idii_b` the body of the
    /// initiator's ID payload (ID type, protocol, port, data).
    pub fn hash_i(
        &self,
        g_xi: &[u8],
        g_xr: &[u8],
        cky_i: &[u8; 8],
        cky_r: &[u8; 8],
        sai_b: &[u8],
        idii_b: &[u8],
    ) -> PrfOutput {
        self.auth_hash(g_xi, g_xr, cky_i, cky_r, sai_b, idii_b)
    }

    /// `HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b)`: the same SAi_b
    /// as HASH_I (the initiator's offer, not the responder's choice).
    pub fn hash_r(
        &self,
        g_xi: &[u8],
        g_xr: &[u8],
        cky_i: &[u8; 8],
        cky_r: &[u8; 8],
        sai_b: &[u8],
        idir_b: &[u8],
    ) -> PrfOutput {
        self.auth_hash(g_xr, g_xi, cky_r, cky_i, sai_b, idir_b)
    }

    /// HASH_I and HASH_R are one formula seen from either end: the signer's KE value and
    /// cookie come first, then the other end's, then SAi_b and the signer's ID body.
    fn auth_hash(
        &self,
        g_x_own: &[u8],
        g_x_other: &[u8],
        cky_own: &[u8; 8],
        cky_other: &[u8; 8],
        sai_b: &[u8],
        id_b: &[u8],
    ) -> PrfOutput {
        prf::prf(
            self.hash,
            self.skeyid.as_bytes(),
            &[g_x_own, g_x_other, cky_own, cky_other, sai_b, id_b],
        )
    }
}

impl std::ops::Deref for Phase1Keys {
    type Target = IsakmpSaKeys;

    fn deref(&self) -> &IsakmpSaKeys {
        &self.sa
    }
}

impl IsakmpSaKeys {
    /// `prf(SKEYID_a, parts)`: every phase-2 and informational HASH (RFC 2409 §5.5, §5.7).
    fn prf_a(&self, parts: &[&[u8]]) -> PrfOutput {
        prf::prf(self.hash, self.skeyid_a.as_bytes(), parts)
    }

    /// Quick mode `HASH(1) = prf(SKEYID_a, M-ID | rest)` (RFC 2409 §5.5), where `rest` is
    /// every payload after the HASH payload, generic headers included (SA, Ni [, KE]
    /// [, IDci, IDcr], ...), exactly as sent.
    pub fn qm_hash1(&self, m_id: u32, rest: &[u8]) -> PrfOutput {
        self.prf_a(&[&m_id.to_be_bytes(), rest])
    }

    /// Quick mode `HASH(2) = prf(SKEYID_a, M-ID | Ni_b | rest)`: Ni_b is the body of the
    /// initiator's nonce from message 1, `rest` the payloads after HASH in message 2.
    pub fn qm_hash2(&self, m_id: u32, ni_b: &[u8], rest: &[u8]) -> PrfOutput {
        self.prf_a(&[&m_id.to_be_bytes(), ni_b, rest])
    }

    /// Quick mode `HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b)` ("0" is one zero octet).
    pub fn qm_hash3(&self, m_id: u32, ni_b: &[u8], nr_b: &[u8]) -> PrfOutput {
        self.prf_a(&[&[0], &m_id.to_be_bytes(), ni_b, nr_b])
    }

    /// Informational `HASH(1) = prf(SKEYID_a, M-ID | N/D)` (RFC 2409 §5.7): `rest` is the
    /// notify or delete payload(s) after the HASH payload, generic headers included.
    pub fn info_hash(&self, m_id: u32, rest: &[u8]) -> PrfOutput {
        self.qm_hash1(m_id, rest)
    }

    /// KEYMAT for one direction of one child SA (RFC 2409 §5.5), `len` bytes:
    /// `K1 = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b)`,
    /// `Kn = prf(SKEYID_d, K(n-1) | [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b)`.
    /// `protocol` is the proposal's protocol ID (2 AH, 3 ESP); `spi` is the SPI the
    /// *receiving* end chose (our SPI for the inbound SA, the peer's for the outbound);
    /// `ni_b`/`nr_b` are the quick-mode nonces; `g_qm_xy` the PFS shared secret if any.
    pub fn keymat(
        &self,
        g_qm_xy: Option<&[u8]>,
        protocol: u8,
        spi: u32,
        ni_b: &[u8],
        nr_b: &[u8],
        len: usize,
    ) -> Keymat {
        keymat(
            self.hash,
            &self.skeyid_d,
            g_qm_xy,
            protocol,
            spi,
            ni_b,
            nr_b,
            len,
        )
    }
}

/// Free form of [`IsakmpSaKeys::keymat`].
#[allow(clippy::too_many_arguments)]
pub fn keymat(
    hash: HashAlgorithm,
    skeyid_d: &SkeyidD,
    g_qm_xy: Option<&[u8]>,
    protocol: u8,
    spi: u32,
    ni_b: &[u8],
    nr_b: &[u8],
    len: usize,
) -> Keymat {
    let kprf = KeyedPrf::new(hash, skeyid_d.as_bytes());
    let spi = spi.to_be_bytes();
    let pfs = g_qm_xy.unwrap_or(&[]);
    let proto = [protocol];
    let seed: [&[u8]; 5] = [pfs, &proto, &spi, ni_b, nr_b];
    Keymat(expand(&kprf, &seed, &seed, len))
}

/// KEYMAT of one child SA direction: the encryption key first, then the authentication key
/// (the order strongSwan, racoon and Cisco use; RFC 2409 leaves it to the DOI). Wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Keymat(Zeroizing<Vec<u8>>);

impl Keymat {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// `(encryption key, authentication key)` with the given lengths; `None` if KEYMAT is
    /// shorter than their sum.
    pub fn split(&self, encr_len: usize, auth_len: usize) -> Option<(&[u8], &[u8])> {
        let enc = self.0.get(..encr_len)?;
        let auth = self.0.get(encr_len..encr_len + auth_len)?;
        Some((enc, auth))
    }
}

impl std::fmt::Debug for Keymat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keymat(<{} bytes redacted>)", self.0.len())
    }
}

#[cfg(test)]
mod tests;

//! SA parameters, construction (with the checks RFC 4301/4303 require) and state.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{KeyBytes, Mode, ProtectedNetwork};
use crate::crypto::{
    AuthAlgorithm, CryptoError, EncrAlgorithm, EspAead, EspCipher, Integrity, Way,
};

use super::counters::SaCounters;
use super::replay::{MAX_WINDOW, ReplayWindow};

/// Which way the SA carries traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Decapsulates packets from the peer.
    Inbound,
    /// Encapsulates packets to the peer.
    Outbound,
}

/// How the outer packets travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SaEncapsulation {
    /// IP protocol 50 (ESP) or 51 (AH).
    Raw,
    /// RFC 3948 ESP-in-UDP between these ports (4500 on both sides unless NAT changed them).
    Udp {
        /// Our UDP port (the interface's nat-t-port).
        local_port: u16,
        /// The peer's UDP port (as seen, after NAT).
        peer_port: u16,
    },
}

/// The ESP half of an SA: SPI, algorithms, keys (wiped when the params are dropped).
#[derive(Clone, Debug)]
pub struct EspKeys {
    /// SPI of this direction (the receiver's choice).
    pub spi: u32,
    /// ESP encryption (may be `Null` when authentication is set).
    pub encryption: EncrAlgorithm,
    /// Exactly `encryption.keymat_len()` bytes (for AES-GCM the key, then the 4-byte salt).
    pub encryption_key: KeyBytes,
    /// ESP integrity (may be `None` when encryption is set; must be `None` with AES-GCM).
    pub authentication: AuthAlgorithm,
    /// Exactly `authentication.key_len()` bytes.
    pub authentication_key: KeyBytes,
}

/// The AH half of an SA.
#[derive(Clone, Debug)]
pub struct AhKeys {
    /// SPI of this direction.
    pub spi: u32,
    /// AH integrity (never `None`).
    pub authentication: AuthAlgorithm,
    /// Exactly `authentication.key_len()` bytes.
    pub authentication_key: KeyBytes,
}

/// Hard lifetime limits; `None` = unlimited (manual SAs never expire).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LifetimeLimits {
    /// Hard limit on age in seconds.
    pub seconds: Option<u64>,
    /// Hard limit on inner kilobytes carried.
    pub kilobytes: Option<u64>,
}

impl LifetimeLimits {
    /// No limits (manual SAs).
    pub const UNLIMITED: Self = Self {
        seconds: None,
        kilobytes: None,
    };

    /// From profile values where 0 means "no limit".
    pub fn from_profile(seconds: u64, kilobytes: u64) -> Self {
        Self {
            seconds: (seconds != 0).then_some(seconds),
            kilobytes: (kilobytes != 0).then_some(kilobytes),
        }
    }
}

/// Where an SA stands against its lifetime. The soft limit is 90% of the hard one (the IKE
/// layer re-keys at soft expiry; RFC 2401 §4.4.2.1 leaves the margin to the implementation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LifetimeState {
    /// Below 90% of every limit.
    Alive,
    /// Past 90% of a limit: time to re-key.
    SoftExpired,
    /// A limit reached: the SA refuses to carry traffic.
    HardExpired,
}

/// Everything needed to build an SA (manual keys from a profile, or keying material derived by
/// quick mode).
#[derive(Clone, Debug)]
pub struct SaParams {
    /// Inbound or outbound.
    pub direction: Direction,
    /// Tunnel or transport mode.
    pub mode: Mode,
    /// The ESP transform and keys, if the transform uses ESP.
    pub esp: Option<EspKeys>,
    /// The AH transform and key, if the transform uses AH (bundle when both are set).
    pub ah: Option<AhKeys>,
    /// Our outer address (the interface address).
    pub local: IpAddr,
    /// The peer's outer address.
    pub peer: IpAddr,
    /// Raw IP or RFC 3948 UDP.
    pub encapsulation: SaEncapsulation,
    /// Anti-replay window in packets, 0 = off. Only an inbound SA keeps a window; an outbound
    /// one just reports the setting (`show sa` REPLAY).
    pub replay_window: u32,
    /// Hard lifetime limits (soft = 90%).
    pub lifetime: LifetimeLimits,
    /// Traffic selectors: `local` is our side, `remote` the peer's. Inbound inner packets must
    /// come from a remote network and go to the local network of the same pair (RFC 4301
    /// §5.2). An empty list accepts any inner addresses.
    pub protected_networks: Vec<ProtectedNetwork>,
}

/// Why an SA could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SaError {
    #[error("the SA has neither ESP nor AH")]
    NoTransform,
    /// RFC 4303 §3.2: ESP with NULL encryption and no integrity must not be used.
    #[error("ESP with neither encryption nor authentication is not allowed")]
    EspNullNull,
    /// RFC 4106 §1 / RFC 4303 §3.2.3: a combined-mode algorithm authenticates itself.
    #[error("AES-GCM ESP takes no separate authentication algorithm")]
    AeadWithAuthentication,
    #[error("AH needs an authentication algorithm")]
    AhWithoutAuthentication,
    #[error("{what} key is {got} bytes, the algorithm needs {expected}")]
    KeyLength {
        /// Which key.
        what: &'static str,
        /// Length the algorithm needs.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// SPIs 1-255 are reserved by IANA and 0 is never sent (RFC 4303 §2.1).
    #[error("SPI {0} is reserved")]
    ReservedSpi(u32),
    #[error("replay window {0} is larger than {MAX_WINDOW}")]
    ReplayWindowTooLarge(u32),
    /// The two outer addresses must be of one family (an IPv4 packet cannot go to an IPv6
    /// peer).
    #[error("local and peer addresses are of different IP families")]
    MixedFamilies,
    /// RFC 3948 defines UDP encapsulation for ESP only; AH cannot cross a NAT.
    #[error("AH cannot be UDP-encapsulated (RFC 3948 covers ESP only)")]
    AhOverUdp,
}

#[derive(Debug)]
pub(crate) struct EspState {
    pub spi: u32,
    /// The CBC cipher (ESP-NULL when `aead` is set).
    pub cipher: EspCipher,
    /// The separate integrity algorithm (`None` when `aead` is set).
    pub integ: Integrity,
    /// AES-GCM (RFC 4106), which encrypts and authenticates in one pass. Boxed: inline it
    /// would take 560 bytes of every CBC SA too.
    pub aead: Option<Box<EspAead>>,
    pub seq: u32,
    pub replay: ReplayWindow,
}

impl EspState {
    /// Explicit IV bytes after the ESP header.
    pub fn iv_len(&self) -> usize {
        self.aead
            .as_ref()
            .map_or(self.cipher.iv_len(), |a| a.algorithm().iv_len())
    }

    /// What payload + padding + trailer must be a multiple of.
    pub fn block_len(&self) -> usize {
        self.aead
            .as_ref()
            .map_or(self.cipher.block_len(), |a| a.algorithm().block_len())
    }

    /// ICV bytes at the end of the packet (the AEAD's, or the integrity algorithm's).
    pub fn icv_len(&self) -> usize {
        self.aead
            .as_ref()
            .map_or(self.integ.icv_len(), |a| a.algorithm().icv_len())
    }

    /// The encryption algorithm (`show sa` ESP-ENC).
    pub fn encryption(&self) -> EncrAlgorithm {
        self.aead
            .as_ref()
            .map_or(self.cipher.algorithm(), |a| a.algorithm())
    }
}

#[derive(Debug)]
pub(crate) struct AhState {
    /// Length of the ICV field: the ICV and, over IPv6, padding to 8 bytes (RFC 4302 §2.6).
    pub icv_field: usize,
    pub spi: u32,
    pub integ: Integrity,
    pub seq: u32,
    pub replay: ReplayWindow,
}

/// One direction of an IPsec SA (or SA bundle when the transform names AH and ESP: RFC 4301
/// §4.5, ESP applied first, AH outside).
#[derive(Debug)]
pub struct SecurityAssociation {
    pub(crate) direction: Direction,
    pub(crate) mode: Mode,
    pub(crate) local: IpAddr,
    pub(crate) peer: IpAddr,
    pub(crate) encapsulation: SaEncapsulation,
    pub(crate) esp: Option<EspState>,
    /// Boxed: AH is rare, and inline its integrity state took 230 bytes of every ESP SA.
    pub(crate) ah: Option<Box<AhState>>,
    pub(crate) lifetime: LifetimeLimits,
    pub(crate) created: Instant,
    pub(crate) counters: SaCounters,
    /// Shared with the other SA of the pair ([`SecurityAssociation::share_selectors`]).
    pub(crate) protected: Arc<[ProtectedNetwork]>,
    pub(crate) anti_replay: bool,
}

fn key_err(what: &'static str) -> impl Fn(CryptoError) -> SaError {
    move |e| match e {
        CryptoError::KeyLength { expected, got } => SaError::KeyLength {
            what,
            expected,
            got,
        },
        _ => SaError::KeyLength {
            what,
            expected: 0,
            got: 0,
        },
    }
}

fn exact(what: &'static str, expected: usize, key: &KeyBytes) -> Result<(), SaError> {
    if key.0.len() != expected {
        return Err(SaError::KeyLength {
            what,
            expected,
            got: key.0.len(),
        });
    }
    Ok(())
}

fn check_spi(spi: u32) -> Result<(), SaError> {
    if spi < 256 {
        return Err(SaError::ReservedSpi(spi));
    }
    Ok(())
}

impl SecurityAssociation {
    /// Builds an SA, checking the combination (no ESP-NULL-NULL, no AH over UDP), SPIs and
    /// exact key lengths. `now` is the creation time lifetimes count from. Keys are expanded
    /// here once (AES/DES key schedules, HMAC pads); the per-packet path does no key setup.
    pub fn new(params: SaParams, now: Instant) -> Result<Self, SaError> {
        let (local, peer) = (params.local, params.peer);
        if local.is_ipv4() != peer.is_ipv4() {
            return Err(SaError::MixedFamilies);
        }
        if params.esp.is_none() && params.ah.is_none() {
            return Err(SaError::NoTransform);
        }
        if params.replay_window > MAX_WINDOW {
            return Err(SaError::ReplayWindowTooLarge(params.replay_window));
        }
        let window = match params.direction {
            Direction::Inbound => params.replay_window,
            Direction::Outbound => 0,
        };
        let esp = match &params.esp {
            None => None,
            Some(k) => {
                if k.encryption == EncrAlgorithm::Null && k.authentication == AuthAlgorithm::None {
                    return Err(SaError::EspNullNull);
                }
                if k.encryption.is_aead() && k.authentication != AuthAlgorithm::None {
                    return Err(SaError::AeadWithAuthentication);
                }
                check_spi(k.spi)?;
                exact(
                    "ESP encryption",
                    k.encryption.keymat_len(),
                    &k.encryption_key,
                )?;
                // An SA is simplex (RFC 4301 §4.1): its cipher keeps the AES state of its own
                // direction only.
                let way = match params.direction {
                    Direction::Outbound => Way::Encrypt,
                    Direction::Inbound => Way::Decrypt,
                };
                let (cipher, aead) = if k.encryption.is_aead() {
                    let aead = EspAead::new(k.encryption, &k.encryption_key.0)
                        .map_err(key_err("ESP encryption"))?;
                    (
                        EspCipher::new(EncrAlgorithm::Null, &[], way),
                        Some(Box::new(aead)),
                    )
                } else {
                    (EspCipher::new(k.encryption, &k.encryption_key.0, way), None)
                };
                exact(
                    "ESP authentication",
                    k.authentication.key_len(),
                    &k.authentication_key,
                )?;
                Some(EspState {
                    spi: k.spi,
                    cipher: cipher.map_err(key_err("ESP encryption"))?,
                    aead,
                    integ: Integrity::new(k.authentication, &k.authentication_key.0)
                        .map_err(key_err("ESP authentication"))?,
                    seq: 0,
                    replay: ReplayWindow::new(window),
                })
            }
        };
        let ah = match &params.ah {
            None => None,
            Some(k) => {
                if k.authentication == AuthAlgorithm::None {
                    return Err(SaError::AhWithoutAuthentication);
                }
                if matches!(params.encapsulation, SaEncapsulation::Udp { .. }) {
                    return Err(SaError::AhOverUdp);
                }
                check_spi(k.spi)?;
                exact(
                    "AH authentication",
                    k.authentication.key_len(),
                    &k.authentication_key,
                )?;
                // RFC 4302 §2.6: over IPv6 the AH header is a multiple of 8 bytes, so the ICV
                // field of a 16-byte ICV (12 + 16 = 28) carries 4 bytes of padding.
                let icv_len = k.authentication.icv_len();
                let align = if local.is_ipv6() { 8 } else { 4 };
                let icv_field = (crate::wire::ah::FIXED_LEN + icv_len).next_multiple_of(align)
                    - crate::wire::ah::FIXED_LEN;
                Some(Box::new(AhState {
                    icv_field,
                    spi: k.spi,
                    integ: Integrity::new(k.authentication, &k.authentication_key.0)
                        .map_err(key_err("AH authentication"))?,
                    seq: 0,
                    replay: ReplayWindow::new(window),
                }))
            }
        };
        Ok(Self {
            direction: params.direction,
            mode: params.mode,
            local,
            peer,
            encapsulation: params.encapsulation,
            esp,
            ah,
            lifetime: params.lifetime,
            created: now,
            counters: SaCounters::default(),
            protected: params.protected_networks.into(),
            anti_replay: params.replay_window > 0,
        })
    }

    /// Inbound or outbound.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Tunnel or transport.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Our outer address (IPv4 or IPv6; the peer's is of the same family).
    pub fn local(&self) -> IpAddr {
        self.local
    }

    /// The peer's outer address.
    pub fn peer(&self) -> IpAddr {
        self.peer
    }

    /// Whether the outer header is IPv6 (RFC 8200) rather than IPv4.
    pub fn outer_is_ipv6(&self) -> bool {
        self.local.is_ipv6()
    }

    /// Length of the outer IP header this SA writes in tunnel mode.
    pub(crate) fn outer_header_len(&self) -> usize {
        if self.outer_is_ipv6() {
            crate::wire::ipv6::HEADER_LEN
        } else {
            crate::wire::ipv4::HEADER_LEN
        }
    }

    /// Raw or UDP encapsulation.
    pub fn encapsulation(&self) -> SaEncapsulation {
        self.encapsulation
    }

    /// Follows a NATed peer to its new UDP port (RFC 3947 §4: the NAT may rebind). Only
    /// UDP-encapsulated SAs have a port; returns false for the others.
    pub fn set_peer_port(&mut self, port: u16) -> bool {
        match &mut self.encapsulation {
            SaEncapsulation::Udp { peer_port, .. } => {
                *peer_port = port;
                true
            }
            SaEncapsulation::Raw => false,
        }
    }

    /// ESP SPI, if the SA has ESP.
    pub fn esp_spi(&self) -> Option<u32> {
        self.esp.as_ref().map(|e| e.spi)
    }

    /// AH SPI, if the SA has AH.
    pub fn ah_spi(&self) -> Option<u32> {
        self.ah.as_ref().map(|a| a.spi)
    }

    /// The SPI packets of this SA arrive with on the outside: AH's in a bundle, else ESP's.
    /// Inbound SAs are looked up by this one.
    pub fn outer_spi(&self) -> u32 {
        self.ah
            .as_ref()
            .map(|a| a.spi)
            .or(self.esp.as_ref().map(|e| e.spi))
            .unwrap_or(0)
    }

    /// ESP encryption algorithm (`show sa` ESP-ENC).
    pub fn esp_encryption(&self) -> Option<EncrAlgorithm> {
        self.esp.as_ref().map(EspState::encryption)
    }

    /// ESP integrity algorithm (`show sa` ESP-AUTH).
    pub fn esp_authentication(&self) -> Option<AuthAlgorithm> {
        self.esp.as_ref().map(|e| e.integ.algorithm())
    }

    /// AH integrity algorithm (`show sa` AH-AUTH).
    pub fn ah_authentication(&self) -> Option<AuthAlgorithm> {
        self.ah.as_ref().map(|a| a.integ.algorithm())
    }

    /// Whether the SA pair runs with anti-replay (`show sa` REPLAY column): the receiving side
    /// checks the window, the sending side promises never to cycle the counter.
    pub fn anti_replay(&self) -> bool {
        self.anti_replay
    }

    /// Anti-replay window size of an inbound SA (0 = not checked; 0 for outbound SAs).
    pub fn replay_window(&self) -> u32 {
        self.esp
            .as_ref()
            .map(|e| e.replay.size())
            .or(self.ah.as_ref().map(|a| a.replay.size()))
            .unwrap_or(0)
    }

    /// The last sequence number sent (outbound) or the highest accepted (inbound).
    pub fn sequence_number(&self) -> u32 {
        match self.direction {
            Direction::Outbound => self
                .esp
                .as_ref()
                .map_or(0, |e| e.seq)
                .max(self.ah.as_ref().map_or(0, |a| a.seq)),
            Direction::Inbound => self
                .esp
                .as_ref()
                .map_or(0, |e| e.replay.top())
                .max(self.ah.as_ref().map_or(0, |a| a.replay.top())),
        }
    }

    /// The traffic selectors.
    pub fn protected_networks(&self) -> &[ProtectedNetwork] {
        &self.protected
    }

    /// Takes `other`'s selectors (the other SA of its pair) when they are the same as this
    /// SA's, so that the pair holds one copy: 80 bytes per tunnel (docs/design.md "Per-tunnel
    /// memory budget"). Returns whether it did.
    pub fn share_selectors(&mut self, other: &SecurityAssociation) -> bool {
        if self.protected != other.protected {
            return false;
        }
        self.protected = Arc::clone(&other.protected);
        true
    }

    /// The pair's one copy of the selectors, for a holder that must remember them as long as
    /// the SA lives (the peer actor's child record) without a copy of its own.
    pub fn shared_selectors(&self) -> Arc<[ProtectedNetwork]> {
        Arc::clone(&self.protected)
    }

    /// Whether this SA and `other` hold one copy of their selectors.
    pub fn shares_selectors_with(&self, other: &SecurityAssociation) -> bool {
        Arc::ptr_eq(&self.protected, &other.protected)
    }

    /// Packet, byte and drop counters.
    pub fn counters(&self) -> &SaCounters {
        &self.counters
    }

    /// The configured hard limits.
    pub fn lifetime(&self) -> LifetimeLimits {
        self.lifetime
    }

    /// When the SA was built.
    pub fn created(&self) -> Instant {
        self.created
    }

    /// Time since creation (`show sa` SECONDS column).
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.created)
    }

    /// Kilobytes carried so far (`show sa` KBYTES column).
    pub fn kilobytes(&self) -> u64 {
        self.counters.bytes / 1024
    }

    /// Soft/hard expiry against the seconds and kilobyte limits; manual SAs (no limits) are
    /// always `Alive`.
    pub fn lifetime_state(&self, now: Instant) -> LifetimeState {
        let age = self.age(now).as_secs();
        let kb = self.kilobytes();
        let mut state = LifetimeState::Alive;
        for (used, limit) in [(age, self.lifetime.seconds), (kb, self.lifetime.kilobytes)] {
            if let Some(l) = limit {
                if used >= l {
                    return LifetimeState::HardExpired;
                }
                if used.saturating_mul(10) >= l.saturating_mul(9) {
                    state = LifetimeState::SoftExpired;
                }
            }
        }
        state
    }

    /// RFC 4301 §5.2: is this inner (src, dst) allowed by one protected-network pair, seen
    /// from the direction of the SA? Inbound: src remote, dst local; outbound: the reverse.
    pub fn selectors_allow(&self, src: impl Into<IpAddr>, dst: impl Into<IpAddr>) -> bool {
        let (src, dst) = (src.into(), dst.into());
        if self.protected.is_empty() {
            return true;
        }
        self.protected.iter().any(|p| match self.direction {
            Direction::Inbound => p.remote.contains(src) && p.local.contains(dst),
            Direction::Outbound => p.local.contains(src) && p.remote.contains(dst),
        })
    }

    /// Per-packet overhead of this SA's outer headers for an inner packet of `inner_len`
    /// bytes whose IP header is `inner_hdr_len` (transport mode keeps that header).
    pub(crate) fn layout(&self, inner_len: usize, inner_hdr_len: usize) -> Layout {
        let (ip_hdr, payload) = match self.mode {
            Mode::Tunnel => (self.outer_header_len(), inner_len),
            Mode::Transport => (inner_hdr_len, inner_len - inner_hdr_len),
        };
        let udp = match self.encapsulation {
            SaEncapsulation::Udp { .. } => crate::wire::udp::HEADER_LEN,
            SaEncapsulation::Raw => 0,
        };
        let ah = self
            .ah
            .as_ref()
            .map_or(0, |a| crate::wire::ah::FIXED_LEN + a.icv_field);
        let (iv, pad, icv, esp_len) = match &self.esp {
            Some(e) => {
                // RFC 4303 §2.4: pad so that payload + pad + 2 fills whole cipher blocks and
                // ends on a 4-byte boundary (RFC 4106 §3.2: AES-GCM needs only the latter).
                let align = e.block_len().max(4);
                let body = payload + 2;
                let pad = (align - body % align) % align;
                let iv = e.iv_len();
                let icv = e.icv_len();
                (iv, pad, icv, 8 + iv + body + pad + icv)
            }
            None => (0, 0, 0, payload),
        };
        Layout {
            ip_hdr,
            udp,
            ah,
            iv,
            payload,
            pad,
            icv,
            total: ip_hdr + udp + ah + esp_len,
        }
    }
}

/// Sizes of the parts of one outbound packet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub ip_hdr: usize,
    pub udp: usize,
    pub ah: usize,
    pub iv: usize,
    pub payload: usize,
    pub pad: usize,
    pub icv: usize,
    pub total: usize,
}

impl Layout {
    pub fn ah_off(&self) -> usize {
        self.ip_hdr + self.udp
    }

    /// Start of the ESP header (or of the payload for AH-only).
    pub fn esp_off(&self) -> usize {
        self.ah_off() + self.ah
    }
}

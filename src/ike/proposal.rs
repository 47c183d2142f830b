//! Proposal selection (RFC 2408 §4.2, RFC 2409 §5) and operator-readable descriptions of suites.
//!
//! The responder takes the first suite of *its policy's* preference list that the peer offered
//! (not the peer's first acceptable one), so the operator's order decides. Lifetimes: an offer
//! up to ours is taken as offered; a longer one is accepted and shortened to ours, and in quick
//! mode the peer is told with RESPONDER-LIFETIME (RFC 2407 §4.6.3.3).

use std::fmt;

use crate::config::{HashAlgorithm, IpsecTransform, IsakmpTransform, Mode};
use crate::crypto::{AuthAlgorithm, EncrAlgorithm};

/// A phase-1 suite, as offered by a peer (decoded from one transform payload) or built from an
/// `isakmp-transform`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phase1Suite {
    pub encryption: EncrAlgorithm,
    pub hash: HashAlgorithm,
    pub group: u16,
    /// Authentication method: 1 = pre-shared key, the only one we do.
    pub auth_method: u16,
    pub lifetime_seconds: Option<u64>,
    pub lifetime_kilobytes: Option<u64>,
}

impl Phase1Suite {
    /// PSK authentication (RFC 2409 Appendix A).
    pub const AUTH_PSK: u16 = 1;

    pub fn from_profile(t: &IsakmpTransform) -> Self {
        Self {
            encryption: t.encryption,
            hash: t.hash,
            group: t.dh_group,
            auth_method: Self::AUTH_PSK,
            lifetime_seconds: (t.lifetime_seconds != 0).then_some(t.lifetime_seconds),
            lifetime_kilobytes: None,
        }
    }

    fn same_algorithms(&self, o: &Phase1Suite) -> bool {
        self.encryption == o.encryption
            && self.hash == o.hash
            && self.group == o.group
            && self.auth_method == o.auth_method
    }
}

fn encr_short(e: EncrAlgorithm) -> &'static str {
    match e {
        EncrAlgorithm::Null => "NULL",
        EncrAlgorithm::Des => "DES",
        EncrAlgorithm::TripleDes => "3DES",
        EncrAlgorithm::AesCbc128 => "AES128",
        EncrAlgorithm::AesCbc192 => "AES192",
        EncrAlgorithm::AesCbc256 => "AES256",
        // strongSwan's proposal keywords.
        EncrAlgorithm::AesGcm128 => "AES128GCM16",
        EncrAlgorithm::AesGcm256 => "AES256GCM16",
    }
}

fn hash_short(h: HashAlgorithm) -> &'static str {
    match h {
        HashAlgorithm::Md5 => "MD5",
        HashAlgorithm::Sha1 => "SHA1",
        HashAlgorithm::Sha256 => "SHA256",
    }
}

fn auth_short(a: AuthAlgorithm) -> &'static str {
    match a {
        AuthAlgorithm::None => "NONE",
        AuthAlgorithm::HmacMd5 => "MD5",
        AuthAlgorithm::HmacSha1 => "SHA1",
        AuthAlgorithm::HmacSha256 => "SHA256",
    }
}

/// strongSwan's spelling of MODP groups, which operators know from `ipsec statusall`.
pub fn group_name(g: u16) -> String {
    match g {
        1 => "modp768".into(),
        2 => "modp1024".into(),
        5 => "modp1536".into(),
        14 => "modp2048".into(),
        15 => "modp3072".into(),
        16 => "modp4096".into(),
        n => format!("group{n}"),
    }
}

impl fmt::Display for Phase1Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}-{}",
            encr_short(self.encryption),
            hash_short(self.hash),
            group_name(self.group)
        )?;
        if self.auth_method != Self::AUTH_PSK {
            write!(f, " (auth method {}, not PSK)", self.auth_method)?;
        }
        Ok(())
    }
}

/// ESP/AH encapsulation mode as negotiated (RFC 2407 §4.5, RFC 3947 §5, draft-02 values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncapMode {
    Tunnel,
    Transport,
    UdpTunnel,
    UdpTransport,
    /// draft-ietf-ipsec-nat-t-ike-0x: 61443 / 61444.
    UdpTunnelDraft,
    UdpTransportDraft,
}

impl EncapMode {
    pub fn value(self) -> u16 {
        match self {
            Self::Tunnel => 1,
            Self::Transport => 2,
            Self::UdpTunnel => 3,
            Self::UdpTransport => 4,
            Self::UdpTunnelDraft => 61443,
            Self::UdpTransportDraft => 61444,
        }
    }

    pub fn from_value(v: u16) -> Option<Self> {
        Some(match v {
            1 => Self::Tunnel,
            2 => Self::Transport,
            3 => Self::UdpTunnel,
            4 => Self::UdpTransport,
            61443 => Self::UdpTunnelDraft,
            61444 => Self::UdpTransportDraft,
            _ => return None,
        })
    }

    pub fn mode(self) -> Mode {
        match self {
            Self::Tunnel | Self::UdpTunnel | Self::UdpTunnelDraft => Mode::Tunnel,
            _ => Mode::Transport,
        }
    }

    pub fn is_udp(self) -> bool {
        !matches!(self, Self::Tunnel | Self::Transport)
    }

    /// The mode to propose for `mode` given the NAT-T outcome of phase 1.
    pub fn for_mode(mode: Mode, nat: Option<NatTVariant>) -> Self {
        match (mode, nat) {
            (Mode::Tunnel, None) => Self::Tunnel,
            (Mode::Transport, None) => Self::Transport,
            (Mode::Tunnel, Some(NatTVariant::Rfc3947)) => Self::UdpTunnel,
            (Mode::Transport, Some(NatTVariant::Rfc3947)) => Self::UdpTransport,
            (Mode::Tunnel, Some(NatTVariant::Draft)) => Self::UdpTunnelDraft,
            (Mode::Transport, Some(NatTVariant::Draft)) => Self::UdpTransportDraft,
        }
    }
}

/// Which NAT-T dialect both ends speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatTVariant {
    Rfc3947,
    Draft,
}

/// A phase-2 suite: an ESP and/or AH proposal with the attributes all its transforms share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phase2Suite {
    /// ESP encryption and authentication (`None` for AH only).
    pub esp: Option<(EncrAlgorithm, AuthAlgorithm)>,
    /// AH authentication (`None` for ESP only).
    pub ah: Option<AuthAlgorithm>,
    pub encap: EncapMode,
    pub pfs_group: Option<u16>,
    pub lifetime_seconds: Option<u64>,
    pub lifetime_kilobytes: Option<u64>,
}

impl Phase2Suite {
    pub fn from_profile(
        t: &IpsecTransform,
        pfs_group: Option<u16>,
        nat: Option<NatTVariant>,
    ) -> Self {
        Self {
            esp: t.esp.map(|e| (e.encryption, e.authentication)),
            ah: t.ah,
            encap: EncapMode::for_mode(t.mode, nat),
            pfs_group,
            lifetime_seconds: (t.lifetime_seconds != 0).then_some(t.lifetime_seconds),
            lifetime_kilobytes: (t.lifetime_kilobytes != 0).then_some(t.lifetime_kilobytes),
        }
    }

    fn same_algorithms(&self, o: &Phase2Suite) -> bool {
        self.esp == o.esp
            && self.ah == o.ah
            && self.encap.mode() == o.encap.mode()
            && self.pfs_group == o.pfs_group
    }
}

impl fmt::Display for Phase2Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(a) = self.ah {
            parts.push(format!("AH-{}", auth_short(a)));
        }
        if let Some((e, a)) = self.esp {
            if a == AuthAlgorithm::None {
                parts.push(format!("ESP-{}", encr_short(e)));
            } else {
                parts.push(format!("ESP-{}-{}", encr_short(e), auth_short(a)));
            }
        }
        write!(f, "{}", parts.join("+"))?;
        match self.pfs_group {
            Some(g) => write!(f, "-{}", group_name(g))?,
            None => write!(f, "-nopfs")?,
        }
        write!(
            f,
            " {}",
            match self.encap.mode() {
                Mode::Tunnel => "tunnel",
                Mode::Transport => "transport",
            }
        )
    }
}

/// A peer's offer decoded: the suite, or the description of something we cannot run
/// (e.g. `Blowfish-CBC-SHA1-modp1024`), kept for the reason text.
pub type Offer<T> = Result<T, String>;

/// How many offers a NO-PROPOSAL-CHOSEN reason names before "and K more".
pub const REASON_MAX_ITEMS: usize = 8;
/// The longest reason text (bytes) built from what a peer offered: one 64 KB message can
/// carry thousands of transforms, and the reason is logged and kept in events.
pub const REASON_MAX_LEN: usize = 1024;

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
pub fn cap_reason(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max.saturating_sub(3);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

/// The longest description of one offer in a reason (decoded attribute names are short; this
/// bounds what a peer can make one item say).
const REASON_MAX_ITEM_LEN: usize = 96;

/// The first [`REASON_MAX_ITEMS`] items, then how many more there were.
fn list<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let mut out = String::new();
    let mut n = 0usize;
    for t in items {
        if n < REASON_MAX_ITEMS {
            if n > 0 {
                out.push_str(", ");
            }
            out.push_str(&cap_reason(t.to_string(), REASON_MAX_ITEM_LEN));
        }
        n += 1;
    }
    match n {
        0 => "nothing".into(),
        n if n > REASON_MAX_ITEMS => format!("{out} and {} more", n - REASON_MAX_ITEMS),
        _ => out,
    }
}

fn describe<T: fmt::Display>(o: &Offer<T>) -> String {
    match o {
        Ok(t) => t.to_string(),
        Err(d) => d.clone(),
    }
}

/// Whether a suite the responder chose is one we offered (initiator side).
pub fn phase1_matches(offered: &Phase1Suite, chosen: &Phase1Suite) -> bool {
    offered.same_algorithms(chosen)
}

/// Whether a suite the responder chose is one we offered (initiator side).
pub fn phase2_matches(offered: &Phase2Suite, chosen: &Phase2Suite) -> bool {
    offered.same_algorithms(chosen)
}

/// The phase-1 transform a responder chose: index into the peer's offer, the suite we run
/// (lifetime shortened to ours), and whether the peer must be told (RESPONDER-LIFETIME).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phase1Choice {
    pub offered_index: usize,
    pub suite: Phase1Suite,
    pub lifetime_shortened: bool,
}

/// The largest lifetime in seconds we take from a peer (about 136 years: the 32 bits
/// strongSwan and most peers use).
pub const MAX_LIFETIME_SECONDS: u64 = u32::MAX as u64;
/// The largest lifetime in kilobytes we take from a peer (1 EiB): far below where the data
/// plane's byte counting (`kilobytes * 1024`, soft limit `* 10`) could overflow.
pub const MAX_LIFETIME_KILOBYTES: u64 = 1 << 40;

/// The lifetime both ends run (see the module documentation): the peer's value, where it
/// sets one (not 0), capped at `cap` and never longer than `ours`.
pub fn agreed_life(peer: Option<u64>, ours: Option<u64>, cap: u64) -> Option<u64> {
    let peer = peer.filter(|v| *v != 0).map(|v| v.min(cap));
    match (peer, ours) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

fn agreed_seconds(peer: Option<u64>, ours: Option<u64>) -> Option<u64> {
    agreed_life(peer, ours, MAX_LIFETIME_SECONDS)
}

fn agreed_kilobytes(peer: Option<u64>, ours: Option<u64>) -> Option<u64> {
    agreed_life(peer, ours, MAX_LIFETIME_KILOBYTES)
}

/// Our suite's lifetimes applied to a suite a peer offered or chose (see [`agreed_life`]).
impl Phase1Suite {
    pub fn with_lifetimes_of(self, ours: &Phase1Suite) -> Self {
        Self {
            lifetime_seconds: agreed_seconds(self.lifetime_seconds, ours.lifetime_seconds),
            lifetime_kilobytes: agreed_kilobytes(self.lifetime_kilobytes, ours.lifetime_kilobytes),
            ..self
        }
    }
}

impl Phase2Suite {
    pub fn with_lifetimes_of(self, ours: &Phase2Suite) -> Self {
        Self {
            lifetime_seconds: agreed_seconds(self.lifetime_seconds, ours.lifetime_seconds),
            lifetime_kilobytes: agreed_kilobytes(self.lifetime_kilobytes, ours.lifetime_kilobytes),
            ..self
        }
    }
}

/// Responder choice of a phase-1 transform. `Err` is the operator-readable reason for
/// NO-PROPOSAL-CHOSEN.
pub fn select_phase1(
    policy: &str,
    ours: &[Phase1Suite],
    offered: &[Offer<Phase1Suite>],
) -> Result<Phase1Choice, String> {
    for our in ours {
        if let Some(i) = offered
            .iter()
            .position(|o| o.as_ref().is_ok_and(|o| o.same_algorithms(our)))
        {
            let Ok(o) = offered[i] else { continue };
            let suite = o.with_lifetimes_of(our);
            return Ok(Phase1Choice {
                offered_index: i,
                lifetime_shortened: shortened(o.lifetime_seconds, suite.lifetime_seconds)
                    || shortened(o.lifetime_kilobytes, suite.lifetime_kilobytes),
                suite,
            });
        }
    }
    Err(no_proposal_chosen(policy, offered, ours))
}

/// Whether the lifetime we run is shorter than what the peer offered (`None`/0: no limit).
fn shortened(offered: Option<u64>, agreed: Option<u64>) -> bool {
    match (offered.filter(|v| *v != 0), agreed) {
        (None, Some(_)) => true,
        (Some(o), Some(a)) => a < o,
        (_, None) => false,
    }
}

/// The NO-PROPOSAL-CHOSEN reason: what the peer offered (the first few) and what we accept,
/// capped at [`REASON_MAX_LEN`].
fn no_proposal_chosen<T: fmt::Display, U: fmt::Display>(
    policy: &str,
    offered: &[Offer<T>],
    ours: &[U],
) -> String {
    cap_reason(
        format!(
            "no proposal chosen: peer offered {}, policy {policy} accepts {}",
            list(offered.iter().map(describe)),
            list(ours)
        ),
        REASON_MAX_LEN,
    )
}

/// The phase-2 proposal a responder chose: index into the peer's proposals, the suite with
/// lifetimes shortened to ours, and whether the peer must be told (RESPONDER-LIFETIME).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phase2Choice {
    pub offered_index: usize,
    pub suite: Phase2Suite,
    pub lifetime_shortened: bool,
    /// Index into our list (to find replay window etc.).
    pub ours_index: usize,
}

/// Responder choice of a phase-2 proposal (first of ours the peer offered).
pub fn select_phase2(
    policy: &str,
    ours: &[Phase2Suite],
    offered: &[Offer<Phase2Suite>],
) -> Result<Phase2Choice, String> {
    for (oi, our) in ours.iter().enumerate() {
        if let Some(i) = offered
            .iter()
            .position(|o| o.as_ref().is_ok_and(|o| o.same_algorithms(our)))
        {
            let Ok(o) = offered[i] else { continue };
            let suite = o.with_lifetimes_of(our);
            return Ok(Phase2Choice {
                offered_index: i,
                lifetime_shortened: shortened(o.lifetime_seconds, suite.lifetime_seconds)
                    || shortened(o.lifetime_kilobytes, suite.lifetime_kilobytes),
                suite,
                ours_index: oi,
            });
        }
    }
    Err(no_proposal_chosen(policy, offered, ours))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p1(e: EncrAlgorithm, h: HashAlgorithm, g: u16, life: u64) -> Phase1Suite {
        Phase1Suite {
            encryption: e,
            hash: h,
            group: g,
            auth_method: 1,
            lifetime_seconds: Some(life),
            lifetime_kilobytes: None,
        }
    }

    #[test]
    fn responder_prefers_its_own_order() {
        let ours = [
            p1(EncrAlgorithm::AesCbc256, HashAlgorithm::Sha256, 14, 28800),
            p1(EncrAlgorithm::AesCbc128, HashAlgorithm::Sha1, 2, 28800),
        ];
        let offered = [
            Ok(p1(EncrAlgorithm::AesCbc128, HashAlgorithm::Sha1, 2, 3600)),
            Ok(p1(
                EncrAlgorithm::AesCbc256,
                HashAlgorithm::Sha256,
                14,
                86400,
            )),
        ];
        let c = select_phase1("P", &ours, &offered).unwrap();
        assert_eq!(c.offered_index, 1);
        assert_eq!(
            c.suite.lifetime_seconds,
            Some(28800),
            "longer offer shortened"
        );
    }

    #[test]
    fn mismatch_reason_names_both_sides() {
        let ours = [p1(EncrAlgorithm::AesCbc128, HashAlgorithm::Sha1, 14, 28800)];
        let offered = [Ok(p1(
            EncrAlgorithm::TripleDes,
            HashAlgorithm::Md5,
            2,
            28800,
        ))];
        let e = select_phase1("ToBerne", &ours, &offered).unwrap_err();
        assert_eq!(
            e,
            "no proposal chosen: peer offered 3DES-MD5-modp1024, policy ToBerne accepts \
             AES128-SHA1-modp2048"
        );
    }

    #[test]
    fn phase2_lifetime_shortened_is_reported() {
        let ours = [Phase2Suite {
            esp: Some((EncrAlgorithm::AesCbc128, AuthAlgorithm::HmacSha1)),
            ah: None,
            encap: EncapMode::Tunnel,
            pfs_group: None,
            lifetime_seconds: Some(3600),
            lifetime_kilobytes: None,
        }];
        let mut offered = ours;
        offered[0].lifetime_seconds = Some(7200);
        offered[0].encap = EncapMode::UdpTunnel;
        let c = select_phase2("P", &ours, &[Ok(offered[0])]).unwrap();
        assert!(c.lifetime_shortened);
        assert_eq!(c.suite.lifetime_seconds, Some(3600));
        assert_eq!(c.suite.encap, EncapMode::UdpTunnel);
        assert_eq!(ours[0].to_string(), "ESP-AES128-SHA1-nopfs tunnel");
    }

    fn p2(secs: Option<u64>, kb: Option<u64>) -> Phase2Suite {
        Phase2Suite {
            esp: Some((EncrAlgorithm::AesCbc128, AuthAlgorithm::HmacSha1)),
            ah: None,
            encap: EncapMode::Tunnel,
            pfs_group: None,
            lifetime_seconds: secs,
            lifetime_kilobytes: kb,
        }
    }

    /// Peer lifetimes: a 0 offer is "no limit of the peer" (ours applies and the peer is told),
    /// a huge one is capped, never taken as it comes.
    #[test]
    fn phase2_zero_and_huge_offers() {
        let ours = [p2(Some(3600), Some(4_608_000))];
        let c = select_phase2("P", &ours, &[Ok(p2(Some(0), Some(0)))]).unwrap();
        assert_eq!(c.suite.lifetime_seconds, Some(3600));
        assert_eq!(c.suite.lifetime_kilobytes, Some(4_608_000));
        assert!(c.lifetime_shortened);
        let unlimited = [p2(None, None)];
        let c = select_phase2("P", &unlimited, &[Ok(p2(Some(u64::MAX), Some(u64::MAX)))]).unwrap();
        assert_eq!(c.suite.lifetime_seconds, Some(MAX_LIFETIME_SECONDS));
        assert_eq!(c.suite.lifetime_kilobytes, Some(MAX_LIFETIME_KILOBYTES));
        assert!(c.lifetime_shortened, "the peer learns the cap");
        let c = select_phase2("P", &ours, &[Ok(p2(Some(60), None))]).unwrap();
        assert_eq!(
            c.suite.lifetime_seconds,
            Some(60),
            "a shorter offer is taken"
        );
        assert_eq!(c.suite.lifetime_kilobytes, Some(4_608_000));
        let mut zero = p1(EncrAlgorithm::AesCbc128, HashAlgorithm::Sha1, 2, 0);
        let ours1 = [p1(EncrAlgorithm::AesCbc128, HashAlgorithm::Sha1, 2, 28800)];
        let c = select_phase1("P", &ours1, &[Ok(zero)]).unwrap();
        assert_eq!(c.suite.lifetime_seconds, Some(28800));
        assert!(c.lifetime_shortened);
        zero.lifetime_seconds = Some(3600);
        let c = select_phase1("P", &ours1, &[Ok(zero)]).unwrap();
        assert_eq!(c.suite.lifetime_seconds, Some(3600));
        assert!(!c.lifetime_shortened);
    }

    /// Hostile offers: one message with thousands of transforms gives a short reason that
    /// names the first few and counts the rest (the old reason listed every one: ~400 KB).
    #[test]
    fn no_proposal_chosen_reason_is_capped() {
        let ours = [p1(
            EncrAlgorithm::AesCbc256,
            HashAlgorithm::Sha256,
            14,
            28800,
        )];
        let offered: Vec<Offer<Phase1Suite>> = (0..5000)
            .map(|i| {
                if i % 2 == 0 {
                    Ok(p1(EncrAlgorithm::Des, HashAlgorithm::Md5, 1, 60))
                } else {
                    Err(format!(
                        "Blowfish-{i}-{} (unsupported cipher)",
                        "x".repeat(200)
                    ))
                }
            })
            .collect();
        let r = select_phase1("P", &ours, &offered).unwrap_err();
        assert!(r.len() <= REASON_MAX_LEN, "{} bytes", r.len());
        assert!(r.starts_with("no proposal chosen: peer offered DES-MD5-modp768, "));
        let short = select_phase1("P", &ours, &offered[..20]).unwrap_err();
        assert!(
            short.contains(" and 12 more, policy P accepts AES256-SHA256-modp2048"),
            "{short}"
        );
        let p2s: Vec<Offer<Phase2Suite>> = (0..5000).map(|_| Ok(p2(None, None))).collect();
        let none: [Phase2Suite; 0] = [];
        let r = select_phase2("P", &none, &p2s).unwrap_err();
        assert!(
            r.len() <= REASON_MAX_LEN && r.contains(" and 4992 more"),
            "{r}"
        );
        assert_eq!(cap_reason("é".repeat(10), 7), "éé...");
    }
}

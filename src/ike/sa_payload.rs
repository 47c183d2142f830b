//! Suites <-> SA payloads: what we offer, what a peer offered, what the responder answers
//! (RFC 2409 Appendix A for phase 1, RFC 2407 §4.4-§4.5 for phase 2, RFC 3947 §5 for the
//! UDP encapsulation modes).

use crate::config::HashAlgorithm;
use crate::crypto::{AuthAlgorithm, EncrAlgorithm};
use crate::wire::isakmp::{
    AhTransformId, Attribute, AuthAlgorithm as WireAuth, AuthMethod, Codec, Doi, EncapsulationMode,
    EncryptionAlgorithm, EspTransformId, HashAlgorithm as WireHash, IsakmpTransformId, LifeType,
    Phase1Attr, Phase2Attr, Proposal, ProtocolId, Reader, SaPayload, Transform, situation,
};

use super::error::IkeError;
use super::proposal::{EncapMode, Offer, Phase1Suite, Phase2Suite};

fn sa(proposals: Vec<Proposal>) -> SaPayload {
    SaPayload {
        doi: Doi::IPSEC,
        situation: situation::IDENTITY_ONLY,
        proposals,
    }
}

fn lifetimes(attrs: &mut Vec<Attribute>, t: u16, d: u16, secs: Option<u64>, kb: Option<u64>) {
    if let Some(s) = secs {
        attrs.push(Attribute::tv(t, LifeType::SECONDS.0));
        attrs.push(Attribute::number(d, s));
    }
    if let Some(k) = kb {
        attrs.push(Attribute::tv(t, LifeType::KILOBYTES.0));
        attrs.push(Attribute::number(d, k));
    }
}

fn aes_bits(e: EncrAlgorithm) -> Option<u16> {
    match e {
        EncrAlgorithm::AesCbc128 => Some(128),
        EncrAlgorithm::AesCbc192 => Some(192),
        EncrAlgorithm::AesCbc256 => Some(256),
        EncrAlgorithm::AesGcm128 => Some(128),
        EncrAlgorithm::AesGcm256 => Some(256),
        _ => None,
    }
}

/// RFC 4106 §8.1: ESP_AES_GCM_16 must carry the Key Length attribute (128, 192 or 256; the
/// profile words offer 128 and 256), and takes no Authentication Algorithm attribute.
fn aes_gcm_of(bits: Option<u64>) -> Option<EncrAlgorithm> {
    match bits? {
        128 => Some(EncrAlgorithm::AesGcm128),
        256 => Some(EncrAlgorithm::AesGcm256),
        _ => None,
    }
}

fn aes_of(bits: Option<u64>) -> Option<EncrAlgorithm> {
    // RFC 3602 §5 requires the key length; a missing one is taken as 128 like strongSwan.
    match bits.unwrap_or(128) {
        128 => Some(EncrAlgorithm::AesCbc128),
        192 => Some(EncrAlgorithm::AesCbc192),
        256 => Some(EncrAlgorithm::AesCbc256),
        _ => None,
    }
}

fn p1_encr(e: EncrAlgorithm) -> EncryptionAlgorithm {
    match e {
        EncrAlgorithm::Des => EncryptionAlgorithm::DES_CBC,
        EncrAlgorithm::TripleDes => EncryptionAlgorithm::TRIPLE_DES_CBC,
        _ => EncryptionAlgorithm::AES_CBC,
    }
}

fn p1_hash(h: HashAlgorithm) -> WireHash {
    match h {
        HashAlgorithm::Md5 => WireHash::MD5,
        HashAlgorithm::Sha1 => WireHash::SHA,
        HashAlgorithm::Sha256 => WireHash::SHA2_256,
    }
}

fn p2_auth(a: AuthAlgorithm) -> Option<WireAuth> {
    match a {
        AuthAlgorithm::None => None,
        AuthAlgorithm::HmacMd5 => Some(WireAuth::HMAC_MD5),
        AuthAlgorithm::HmacSha1 => Some(WireAuth::HMAC_SHA),
        AuthAlgorithm::HmacSha256 => Some(WireAuth::HMAC_SHA2_256),
    }
}

fn p2_auth_of(v: u16) -> Option<AuthAlgorithm> {
    match WireAuth(v) {
        WireAuth::HMAC_MD5 => Some(AuthAlgorithm::HmacMd5),
        WireAuth::HMAC_SHA => Some(AuthAlgorithm::HmacSha1),
        WireAuth::HMAC_SHA2_256 => Some(AuthAlgorithm::HmacSha256),
        _ => None,
    }
}

fn name<T: std::fmt::Display>(t: T) -> String {
    t.to_string()
}

// ---- phase 1 ---------------------------------------------------------------------------

/// One phase-1 transform (RFC 2409 Appendix A attributes).
pub(crate) fn phase1_transform(number: u8, s: &Phase1Suite) -> Transform {
    let mut attrs = vec![Attribute::tv(
        Phase1Attr::ENCRYPTION_ALGORITHM,
        p1_encr(s.encryption).0,
    )];
    if let Some(bits) = aes_bits(s.encryption) {
        attrs.push(Attribute::tv(Phase1Attr::KEY_LENGTH, bits));
    }
    attrs.push(Attribute::tv(Phase1Attr::HASH_ALGORITHM, p1_hash(s.hash).0));
    attrs.push(Attribute::tv(
        Phase1Attr::AUTHENTICATION_METHOD,
        s.auth_method,
    ));
    attrs.push(Attribute::tv(Phase1Attr::GROUP_DESCRIPTION, s.group));
    lifetimes(
        &mut attrs,
        Phase1Attr::LIFE_TYPE.0,
        Phase1Attr::LIFE_DURATION.0,
        s.lifetime_seconds,
        s.lifetime_kilobytes,
    );
    Transform {
        number,
        transform_id: IsakmpTransformId::KEY_IKE.0,
        attributes: attrs,
    }
}

/// Message 1's SA: one ISAKMP proposal with our transforms in preference order.
pub(crate) fn phase1_offer(ours: &[Phase1Suite]) -> SaPayload {
    let transforms = ours
        .iter()
        .enumerate()
        .map(|(i, s)| phase1_transform((i + 1) as u8, s))
        .collect();
    sa(vec![Proposal {
        number: 1,
        protocol_id: ProtocolId::ISAKMP,
        spi: Vec::new(),
        transforms,
    }])
}

/// Reads one phase-1 transform; `Err` describes what we cannot run.
pub(crate) fn decode_phase1_transform(t: &Transform) -> Offer<Phase1Suite> {
    let mut encr = None;
    let mut key_len = None;
    let mut hash = None;
    let mut auth = None;
    let mut group = None;
    let mut life_type = None;
    let mut secs = None;
    let mut kb = None;
    let mut problem: Option<String> = None;
    for a in &t.attributes {
        let v = a.as_u64();
        match Phase1Attr(a.attr_type) {
            Phase1Attr::ENCRYPTION_ALGORITHM => encr = v,
            Phase1Attr::KEY_LENGTH => key_len = v,
            Phase1Attr::HASH_ALGORITHM => hash = v,
            Phase1Attr::AUTHENTICATION_METHOD => auth = v,
            Phase1Attr::GROUP_DESCRIPTION => group = v,
            Phase1Attr::LIFE_TYPE => life_type = v,
            Phase1Attr::LIFE_DURATION => match life_type.map(|t| LifeType(t as u16)) {
                Some(LifeType::SECONDS) => secs = v,
                Some(LifeType::KILOBYTES) => kb = v,
                _ => problem = Some("life duration without a known life type".into()),
            },
            other => problem = Some(format!("attribute {}", name(other))),
        }
    }
    let enc_word = |e: Option<u64>| {
        e.map(|e| name(EncryptionAlgorithm(e as u16)))
            .unwrap_or_else(|| "no-encryption".into())
    };
    let hash_word = |h: Option<u64>| {
        h.map(|h| name(WireHash(h as u16)))
            .unwrap_or_else(|| "no-hash".into())
    };
    let group_word = |g: Option<u64>| {
        g.map(|g| super::proposal::group_name(g as u16))
            .unwrap_or_else(|| "no-group".into())
    };
    let describe = |why: &str| {
        format!(
            "{}-{}-{} ({why})",
            enc_word(encr),
            hash_word(hash),
            group_word(group)
        )
    };
    if t.transform_id != IsakmpTransformId::KEY_IKE.0 {
        return Err(describe(&format!("transform ID {}", t.transform_id)));
    }
    if let Some(p) = problem {
        return Err(describe(&format!("unsupported {p}")));
    }
    let encryption = match encr.map(|e| EncryptionAlgorithm(e as u16)) {
        Some(EncryptionAlgorithm::DES_CBC) => EncrAlgorithm::Des,
        Some(EncryptionAlgorithm::TRIPLE_DES_CBC) => EncrAlgorithm::TripleDes,
        Some(EncryptionAlgorithm::AES_CBC) => match aes_of(key_len) {
            Some(e) => e,
            None => return Err(describe("unsupported AES key length")),
        },
        _ => return Err(describe("unsupported cipher")),
    };
    let hash_alg = match hash.map(|h| WireHash(h as u16)) {
        Some(WireHash::MD5) => HashAlgorithm::Md5,
        Some(WireHash::SHA) => HashAlgorithm::Sha1,
        Some(WireHash::SHA2_256) => HashAlgorithm::Sha256,
        _ => return Err(describe("unsupported hash")),
    };
    let Some(group) = group.and_then(|g| u16::try_from(g).ok()) else {
        return Err(describe("no group"));
    };
    let Some(auth) = auth.and_then(|a| u16::try_from(a).ok()) else {
        return Err(describe("no authentication method"));
    };
    if auth != AuthMethod::PRE_SHARED_KEY.0 {
        return Err(describe(&format!(
            "authentication by {}, only pre-shared keys are supported",
            name(AuthMethod(auth))
        )));
    }
    Ok(Phase1Suite {
        encryption,
        hash: hash_alg,
        group,
        auth_method: auth,
        lifetime_seconds: secs,
        lifetime_kilobytes: kb,
    })
}

/// A phase-1 offer with its (proposal, transform) position in the SA payload.
pub(crate) type Phase1Offer = ((usize, usize), Offer<Phase1Suite>);

/// At most this many phase-1 transforms of one SA payload are examined; the rest count as
/// not offered. An unauthenticated 64 KB message 1 can hold thousands; real peers offer a few
/// dozen (strongSwan's widest default proposal list, about a hundred).
pub(crate) const MAX_PHASE1_OFFERS: usize = 256;
/// At most this many phase-2 alternatives are built from one SA payload: proposals with the
/// same number multiply (every AH transform with every ESP transform, up to 255 x 255 =
/// 65,025 from one message), so the expansion stops here and the rest count as not offered.
pub(crate) const MAX_PHASE2_OFFERS: usize = 256;

/// Every transform of every ISAKMP proposal of a message-1 SA, with its position (the first
/// [`MAX_PHASE1_OFFERS`]).
pub(crate) fn phase1_offers(sa: &SaPayload) -> Result<Vec<Phase1Offer>, IkeError> {
    if sa.doi != Doi::IPSEC {
        return Err(IkeError::notify(
            crate::wire::isakmp::NotifyType::DOI_NOT_SUPPORTED,
            format!("SA with DOI {} (only IPsec DOI 1)", sa.doi),
        ));
    }
    let mut out = Vec::new();
    let all = sa.proposals.iter().enumerate().flat_map(|(pi, p)| {
        p.transforms
            .iter()
            .enumerate()
            .map(move |(ti, t)| (pi, p, ti, t))
    });
    for (pi, p, ti, t) in all.take(MAX_PHASE1_OFFERS) {
        let offer = if p.protocol_id == ProtocolId::ISAKMP {
            decode_phase1_transform(t)
        } else {
            Err(format!("proposal for {} in phase 1", p.protocol_id))
        };
        out.push(((pi, ti), offer));
    }
    Ok(out)
}

/// Message 2's SA: the chosen transform alone, as the initiator sent it (RFC 2408 §4.2).
pub(crate) fn phase1_reply(offer: &SaPayload, at: (usize, usize)) -> Option<SaPayload> {
    let p = offer.proposals.get(at.0)?;
    let t = p.transforms.get(at.1)?;
    Some(SaPayload {
        doi: offer.doi,
        situation: offer.situation,
        proposals: vec![Proposal {
            number: p.number,
            protocol_id: p.protocol_id,
            spi: p.spi.clone(),
            transforms: vec![t.clone()],
        }],
    })
}

/// The responder's choice in message 2: exactly one proposal with one transform.
pub(crate) fn phase1_chosen(sa: &SaPayload) -> Result<Phase1Suite, IkeError> {
    let bad = |why: &str| {
        IkeError::notify(
            crate::wire::isakmp::NotifyType::BAD_PROPOSAL_SYNTAX,
            format!("responder's SA answer {why}"),
        )
    };
    let [p] = sa.proposals.as_slice() else {
        return Err(bad("does not hold exactly one proposal"));
    };
    let [t] = p.transforms.as_slice() else {
        return Err(bad("does not hold exactly one transform"));
    };
    decode_phase1_transform(t).map_err(|d| {
        IkeError::notify(
            crate::wire::isakmp::NotifyType::NO_PROPOSAL_CHOSEN,
            format!("responder chose {d}, which we did not offer"),
        )
    })
}

// ---- phase 2 ---------------------------------------------------------------------------

fn phase2_attrs(
    s: &Phase2Suite,
    auth: Option<AuthAlgorithm>,
    encr: Option<EncrAlgorithm>,
) -> Vec<Attribute> {
    let mut attrs = Vec::new();
    lifetimes(
        &mut attrs,
        Phase2Attr::SA_LIFE_TYPE.0,
        Phase2Attr::SA_LIFE_DURATION.0,
        s.lifetime_seconds,
        s.lifetime_kilobytes,
    );
    if let Some(g) = s.pfs_group {
        attrs.push(Attribute::tv(Phase2Attr::GROUP_DESCRIPTION, g));
    }
    attrs.push(Attribute::tv(
        Phase2Attr::ENCAPSULATION_MODE,
        s.encap.value(),
    ));
    if let Some(a) = auth.and_then(p2_auth) {
        attrs.push(Attribute::tv(Phase2Attr::AUTHENTICATION_ALGORITHM, a.0));
    }
    if let Some(bits) = encr.and_then(aes_bits) {
        attrs.push(Attribute::tv(Phase2Attr::KEY_LENGTH, bits));
    }
    attrs
}

fn esp_id(e: EncrAlgorithm) -> EspTransformId {
    match e {
        EncrAlgorithm::Null => EspTransformId::NULL,
        EncrAlgorithm::Des => EspTransformId::DES,
        EncrAlgorithm::TripleDes => EspTransformId::TRIPLE_DES,
        EncrAlgorithm::AesGcm128 | EncrAlgorithm::AesGcm256 => EspTransformId::AES_GCM_16,
        _ => EspTransformId::AES,
    }
}

fn ah_id(a: AuthAlgorithm) -> AhTransformId {
    match a {
        AuthAlgorithm::HmacMd5 => AhTransformId::MD5,
        AuthAlgorithm::HmacSha256 => AhTransformId::SHA2_256,
        _ => AhTransformId::SHA,
    }
}

/// Our SPIs for one offered suite.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SuiteSpis {
    pub esp: Option<u32>,
    pub ah: Option<u32>,
}

/// The proposals (AH and/or ESP with the same number) of one suite.
pub(crate) fn phase2_proposals(number: u8, s: &Phase2Suite, spis: SuiteSpis) -> Vec<Proposal> {
    let mut out = Vec::new();
    if let (Some(a), Some(spi)) = (s.ah, spis.ah) {
        out.push(Proposal {
            number,
            protocol_id: ProtocolId::IPSEC_AH,
            spi: spi.to_be_bytes().to_vec(),
            transforms: vec![Transform {
                number: 1,
                transform_id: ah_id(a).0,
                attributes: phase2_attrs(s, Some(a), None),
            }],
        });
    }
    if let (Some((e, a)), Some(spi)) = (s.esp, spis.esp) {
        out.push(Proposal {
            number,
            protocol_id: ProtocolId::IPSEC_ESP,
            spi: spi.to_be_bytes().to_vec(),
            transforms: vec![Transform {
                number: 1,
                transform_id: esp_id(e).0,
                attributes: phase2_attrs(s, Some(a), Some(e)),
            }],
        });
    }
    out
}

/// Quick-mode message 1's SA: one proposal number per suite, in preference order.
pub(crate) fn phase2_offer(ours: &[(Phase2Suite, SuiteSpis)]) -> SaPayload {
    sa(ours
        .iter()
        .enumerate()
        .flat_map(|(i, (s, spis))| phase2_proposals((i + 1) as u8, s, *spis))
        .collect())
}

/// The attributes every phase-2 transform may carry.
#[derive(Default)]
struct P2Attrs {
    secs: Option<u64>,
    kb: Option<u64>,
    group: Option<u16>,
    encap: Option<u16>,
    auth: Option<u16>,
    key_len: Option<u64>,
    problem: Option<String>,
}

fn p2_attrs(t: &Transform) -> P2Attrs {
    let mut r = P2Attrs::default();
    let mut life_type = None;
    for a in &t.attributes {
        let v = a.as_u64();
        match Phase2Attr(a.attr_type) {
            Phase2Attr::SA_LIFE_TYPE => life_type = v,
            Phase2Attr::SA_LIFE_DURATION => match life_type.map(|t| LifeType(t as u16)) {
                Some(LifeType::SECONDS) => r.secs = v,
                Some(LifeType::KILOBYTES) => r.kb = v,
                _ => r.problem = Some("life duration without a known life type".into()),
            },
            Phase2Attr::GROUP_DESCRIPTION => r.group = v.and_then(|v| u16::try_from(v).ok()),
            Phase2Attr::ENCAPSULATION_MODE => r.encap = v.and_then(|v| u16::try_from(v).ok()),
            Phase2Attr::AUTHENTICATION_ALGORITHM => r.auth = v.and_then(|v| u16::try_from(v).ok()),
            Phase2Attr::KEY_LENGTH => r.key_len = v,
            other => r.problem = Some(format!("unsupported attribute {}", name(other))),
        }
    }
    r
}

/// One offered phase-2 alternative: the suite and where it came from.
#[derive(Clone, Debug)]
pub(crate) struct Phase2Offer {
    pub suite: Offer<Phase2Suite>,
    /// (proposal index, transform index) of the AH and ESP parts within the SA payload.
    pub ah_at: Option<(usize, usize)>,
    pub esp_at: Option<(usize, usize)>,
    /// The proposer's SPIs.
    pub spis: SuiteSpis,
}

fn decode_suite(
    sa: &SaPayload,
    ah_at: Option<(usize, usize)>,
    esp_at: Option<(usize, usize)>,
) -> Offer<Phase2Suite> {
    let get = |at: (usize, usize)| &sa.proposals[at.0].transforms[at.1];
    let mut desc = Vec::new();
    let mut esp = None;
    let mut ah = None;
    let mut common: Option<P2Attrs> = None;
    let mut problem = None;
    if let Some(at) = ah_at {
        let t = get(at);
        let a = p2_attrs(t);
        let alg = match AhTransformId(t.transform_id) {
            AhTransformId::MD5 => Some(AuthAlgorithm::HmacMd5),
            AhTransformId::SHA => Some(AuthAlgorithm::HmacSha1),
            AhTransformId::SHA2_256 => Some(AuthAlgorithm::HmacSha256),
            _ => None,
        };
        desc.push(format!("AH-{}", name(AhTransformId(t.transform_id))));
        match alg {
            Some(alg) if a.auth.and_then(p2_auth_of) == Some(alg) || a.auth.is_none() => {
                ah = Some(alg)
            }
            _ => problem = Some("unsupported AH transform".to_string()),
        }
        if a.problem.is_some() {
            problem = a.problem.clone();
        }
        common = Some(a);
    }
    if let Some(at) = esp_at {
        let t = get(at);
        let a = p2_attrs(t);
        let enc = match EspTransformId(t.transform_id) {
            EspTransformId::NULL => Some(EncrAlgorithm::Null),
            EspTransformId::DES => Some(EncrAlgorithm::Des),
            EspTransformId::TRIPLE_DES => Some(EncrAlgorithm::TripleDes),
            EspTransformId::AES => aes_of(a.key_len),
            EspTransformId::AES_GCM_16 => aes_gcm_of(a.key_len),
            _ => None,
        };
        let auth = match a.auth {
            None => Some(AuthAlgorithm::None),
            Some(v) => p2_auth_of(v),
        };
        desc.push(format!(
            "{}{}",
            name(EspTransformId(t.transform_id)),
            a.auth
                .map(|v| format!("-{}", name(WireAuth(v))))
                .unwrap_or_default()
        ));
        match (enc, auth) {
            // RFC 4106 §8.1: a combined-mode transform with an authentication algorithm is
            // not a valid proposal.
            (Some(e), Some(au)) if e.is_aead() && au != AuthAlgorithm::None => {
                problem = Some("AES-GCM with an authentication algorithm".to_string())
            }
            (Some(e), Some(au)) => esp = Some((e, au)),
            _ => problem = Some("unsupported ESP transform".to_string()),
        }
        if a.problem.is_some() {
            problem = a.problem.clone();
        }
        if let Some(c) = &common
            && (c.encap != a.encap || c.group != a.group)
        {
            problem = Some("AH and ESP transforms disagree on mode or group".into());
        }
        common = Some(a);
    }
    let desc = desc.join("+");
    let Some(c) = common else {
        return Err(format!("{desc} (no AH or ESP)"));
    };
    if let Some(p) = problem {
        return Err(format!("{desc} ({p})"));
    }
    let encap = match c.encap {
        None => EncapMode::Tunnel,
        Some(v) => match EncapMode::from_value(v) {
            Some(m) => m,
            None => {
                return Err(format!(
                    "{desc} (encapsulation mode {})",
                    name(EncapsulationMode(v))
                ));
            }
        },
    };
    Ok(Phase2Suite {
        esp,
        ah,
        encap,
        pfs_group: c.group,
        lifetime_seconds: c.secs,
        lifetime_kilobytes: c.kb,
    })
}

/// The alternatives of a quick-mode SA: proposals with the same number are one offer (AH and
/// ESP together); several transforms in a proposal are alternatives of their own. The first
/// [`MAX_PHASE2_OFFERS`] alternatives are built, the rest are not offered.
pub(crate) fn phase2_offers(sa: &SaPayload) -> Result<Vec<Phase2Offer>, IkeError> {
    if sa.doi != Doi::IPSEC {
        return Err(IkeError::notify(
            crate::wire::isakmp::NotifyType::DOI_NOT_SUPPORTED,
            format!("SA with DOI {} (only IPsec DOI 1)", sa.doi),
        ));
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < sa.proposals.len() {
        let number = sa.proposals[i].number;
        let mut j = i;
        while j < sa.proposals.len() && sa.proposals[j].number == number {
            j += 1;
        }
        let mut ah = None;
        let mut esp = None;
        let mut other = None;
        for (pi, p) in sa.proposals.iter().enumerate().take(j).skip(i) {
            match p.protocol_id {
                ProtocolId::IPSEC_AH if ah.is_none() => ah = Some(pi),
                ProtocolId::IPSEC_ESP if esp.is_none() => esp = Some(pi),
                pid => other = Some(pid),
            }
        }
        let spi = |pi: Option<usize>| pi.and_then(|pi| sa.proposals[pi].spi_u32());
        let spis = SuiteSpis {
            esp: spi(esp),
            ah: spi(ah),
        };
        let range = |pi: Option<usize>| -> Vec<Option<(usize, usize)>> {
            match pi {
                None => vec![None],
                Some(pi) => (0..sa.proposals[pi].transforms.len())
                    .map(|ti| Some((pi, ti)))
                    .collect(),
            }
        };
        for ah_at in range(ah) {
            for esp_at in range(esp) {
                if out.len() >= MAX_PHASE2_OFFERS {
                    return Ok(out);
                }
                let mut suite = decode_suite(sa, ah_at, esp_at);
                if let Some(pid) = other {
                    suite = Err(format!("proposal {number} with protocol {pid}"));
                } else if (ah.is_some() && spis.ah.is_none())
                    || (esp.is_some() && spis.esp.is_none())
                {
                    suite = Err(format!("proposal {number} without a 4-byte SPI"));
                }
                out.push(Phase2Offer {
                    suite,
                    ah_at,
                    esp_at,
                    spis,
                });
            }
        }
        i = j;
    }
    Ok(out)
}

/// The responder's answer: the chosen proposal(s) with our SPI(s), the transforms as offered.
pub(crate) fn phase2_reply(offer: &SaPayload, chosen: &Phase2Offer, ours: SuiteSpis) -> SaPayload {
    let mut proposals = Vec::new();
    for (at, spi) in [(chosen.ah_at, ours.ah), (chosen.esp_at, ours.esp)] {
        if let (Some((pi, ti)), Some(spi)) = (at, spi) {
            let p = &offer.proposals[pi];
            proposals.push(Proposal {
                number: p.number,
                protocol_id: p.protocol_id,
                spi: spi.to_be_bytes().to_vec(),
                transforms: vec![p.transforms[ti].clone()],
            });
        }
    }
    SaPayload {
        doi: offer.doi,
        situation: offer.situation,
        proposals,
    }
}

/// RESPONDER-LIFETIME notify data (RFC 2407 §4.6.3.1) for a phase-2 SA: SA Life Type /
/// SA Life Duration attributes (§4.5).
pub(crate) fn lifetime_attributes(secs: Option<u64>, kb: Option<u64>) -> Vec<u8> {
    encode_lifetimes(
        Phase2Attr::SA_LIFE_TYPE.0,
        Phase2Attr::SA_LIFE_DURATION.0,
        secs,
        kb,
    )
}

/// RESPONDER-LIFETIME notify data for an ISAKMP SA: the phase-1 Life Type / Life Duration
/// attributes (RFC 2409 Appendix A).
pub(crate) fn phase1_lifetime_attributes(secs: Option<u64>, kb: Option<u64>) -> Vec<u8> {
    encode_lifetimes(
        Phase1Attr::LIFE_TYPE.0,
        Phase1Attr::LIFE_DURATION.0,
        secs,
        kb,
    )
}

fn encode_lifetimes(t: u16, d: u16, secs: Option<u64>, kb: Option<u64>) -> Vec<u8> {
    let mut attrs = Vec::new();
    lifetimes(&mut attrs, t, d, secs, kb);
    let mut out = Vec::new();
    for a in &attrs {
        a.encode(&mut out);
    }
    out
}

/// Reads phase-2 RESPONDER-LIFETIME data: (seconds, kilobytes).
pub(crate) fn parse_lifetime_attributes(data: &[u8]) -> (Option<u64>, Option<u64>) {
    parse_lifetimes(
        data,
        Phase2Attr::SA_LIFE_TYPE.0,
        Phase2Attr::SA_LIFE_DURATION.0,
    )
}

/// Reads phase-1 RESPONDER-LIFETIME data: (seconds, kilobytes).
pub(crate) fn parse_phase1_lifetime_attributes(data: &[u8]) -> (Option<u64>, Option<u64>) {
    parse_lifetimes(data, Phase1Attr::LIFE_TYPE.0, Phase1Attr::LIFE_DURATION.0)
}

fn parse_lifetimes(data: &[u8], t: u16, d: u16) -> (Option<u64>, Option<u64>) {
    let mut r = Reader::new(data);
    let mut life_type = None;
    let (mut secs, mut kb) = (None, None);
    while r.any_left() {
        let Ok(a) = Attribute::read(&mut r) else {
            break;
        };
        if a.attr_type == t {
            life_type = a.as_u16();
        } else if a.attr_type == d {
            match life_type.map(LifeType) {
                Some(LifeType::SECONDS) => secs = a.as_u64(),
                Some(LifeType::KILOBYTES) => kb = a.as_u64(),
                _ => {}
            }
        }
    }
    (secs, kb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase1_round_trip() {
        let s = Phase1Suite {
            encryption: EncrAlgorithm::AesCbc256,
            hash: HashAlgorithm::Sha256,
            group: 14,
            auth_method: 1,
            lifetime_seconds: Some(100_000),
            lifetime_kilobytes: None,
        };
        let sa = phase1_offer(&[s]);
        let offers = phase1_offers(&sa).unwrap();
        assert_eq!(offers[0].1, Ok(s));
        let reply = phase1_reply(&sa, offers[0].0).unwrap();
        assert_eq!(phase1_chosen(&reply).unwrap(), s);
    }

    #[test]
    fn phase2_bundle_round_trip() {
        let s = Phase2Suite {
            esp: Some((EncrAlgorithm::AesCbc192, AuthAlgorithm::HmacSha256)),
            ah: Some(AuthAlgorithm::HmacMd5),
            encap: EncapMode::UdpTunnelDraft,
            pfs_group: Some(5),
            lifetime_seconds: Some(3600),
            lifetime_kilobytes: Some(100_000),
        };
        let spis = SuiteSpis {
            esp: Some(0x1000),
            ah: Some(0x2000),
        };
        let sa = phase2_offer(&[(s, spis)]);
        let offers = phase2_offers(&sa).unwrap();
        assert_eq!(offers.len(), 1);
        assert_eq!(offers[0].suite, Ok(s));
        assert_eq!(offers[0].spis, spis);
        let data = lifetime_attributes(Some(60), Some(7));
        assert_eq!(parse_lifetime_attributes(&data), (Some(60), Some(7)));
    }

    /// RFC 4106 §8.1 as strongSwan's `aes128gcm16` / `aes256gcm16` send it: transform ID 20
    /// (ESP_AES_GCM_16), Key Length 128/256, no Authentication Algorithm attribute.
    #[test]
    fn phase2_aes_gcm_round_trip_and_wire_form() {
        for (e, bits) in [
            (EncrAlgorithm::AesGcm128, 128u64),
            (EncrAlgorithm::AesGcm256, 256),
        ] {
            let s = Phase2Suite {
                esp: Some((e, AuthAlgorithm::None)),
                ah: None,
                encap: EncapMode::Tunnel,
                pfs_group: None,
                lifetime_seconds: Some(3600),
                lifetime_kilobytes: None,
            };
            let spis = SuiteSpis {
                esp: Some(0xc001_d00d),
                ah: None,
            };
            let sa = phase2_offer(&[(s, spis)]);
            let t = &sa.proposals[0].transforms[0];
            assert_eq!(t.transform_id, 20);
            let attr = |ty: Phase2Attr| {
                t.attributes
                    .iter()
                    .find(|a| a.attr_type == ty.0)
                    .and_then(|a| a.as_u64())
            };
            assert_eq!(attr(Phase2Attr::KEY_LENGTH), Some(bits));
            assert_eq!(attr(Phase2Attr::AUTHENTICATION_ALGORITHM), None);
            let offers = phase2_offers(&sa).unwrap();
            assert_eq!(offers[0].suite, Ok(s));
        }
    }

    /// A hostile or broken ESP_AES_GCM_16 offer: no key length, an unsupported one, or an
    /// authentication algorithm beside it; each is refused with a reason, none is taken.
    #[test]
    fn phase2_aes_gcm_bad_offers_are_refused() {
        let mode = Attribute::tv(Phase2Attr::ENCAPSULATION_MODE, 1);
        for (attrs, why) in [
            (vec![mode.clone()], "unsupported ESP transform"),
            (
                vec![mode.clone(), Attribute::tv(Phase2Attr::KEY_LENGTH, 64)],
                "unsupported ESP transform",
            ),
            (
                vec![
                    mode.clone(),
                    Attribute::tv(Phase2Attr::KEY_LENGTH, 128),
                    Attribute::tv(Phase2Attr::AUTHENTICATION_ALGORITHM, 2),
                ],
                "AES-GCM with an authentication algorithm",
            ),
        ] {
            let sa = SaPayload {
                doi: Doi::IPSEC,
                situation: situation::IDENTITY_ONLY,
                proposals: vec![Proposal {
                    number: 1,
                    protocol_id: ProtocolId::IPSEC_ESP,
                    spi: 0x1234_5678u32.to_be_bytes().to_vec(),
                    transforms: transforms(1, EspTransformId::AES_GCM_16.0, attrs),
                }],
            };
            let offers = phase2_offers(&sa).unwrap();
            let err = offers[0].suite.clone().unwrap_err();
            assert!(err.contains("ESP_AES_GCM_16") && err.contains(why), "{err}");
        }
    }

    fn transforms(n: usize, id: u8, attrs: Vec<Attribute>) -> Vec<Transform> {
        (0..n)
            .map(|i| Transform {
                number: (i % 255) as u8 + 1,
                transform_id: id,
                attributes: attrs.clone(),
            })
            .collect()
    }

    /// Bounded offers: one AH proposal and one ESP proposal with 255 transforms each used to
    /// expand into 65,025 alternatives; at most MAX_PHASE2_OFFERS are built now.
    #[test]
    fn ah_times_esp_expansion_is_bounded() {
        let mode = vec![Attribute::tv(Phase2Attr::ENCAPSULATION_MODE, 1)];
        let prop = |protocol_id, id| Proposal {
            number: 1,
            protocol_id,
            spi: 0x1234_5678u32.to_be_bytes().to_vec(),
            transforms: transforms(255, id, mode.clone()),
        };
        let sa = SaPayload {
            doi: Doi::IPSEC,
            situation: situation::IDENTITY_ONLY,
            proposals: vec![
                prop(ProtocolId::IPSEC_AH, AhTransformId::SHA.0),
                prop(ProtocolId::IPSEC_ESP, EspTransformId::AES.0),
            ],
        };
        let offers = phase2_offers(&sa).unwrap();
        assert_eq!(offers.len(), MAX_PHASE2_OFFERS);
        assert!(offers[0].suite.is_ok(), "{:?}", offers[0].suite);
        let p1 = SaPayload {
            doi: Doi::IPSEC,
            situation: situation::IDENTITY_ONLY,
            proposals: vec![Proposal {
                number: 1,
                protocol_id: ProtocolId::ISAKMP,
                spi: Vec::new(),
                transforms: transforms(2000, IsakmpTransformId::KEY_IKE.0, Vec::new()),
            }],
        };
        assert_eq!(phase1_offers(&p1).unwrap().len(), MAX_PHASE1_OFFERS);
    }
}

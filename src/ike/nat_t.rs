//! NAT traversal in IKE (RFC 3947): vendor IDs, NAT-D hashes and the comparison that tells who
//! is behind a NAT, and the non-ESP marker of port 4500 (RFC 3948 §2.2).

use std::net::{IpAddr, SocketAddr};

use crate::config::HashAlgorithm;
use crate::wire::isakmp::{KnownVendorId, Payload, vendor};

use super::prf;
use super::proposal::NatTVariant;

pub use crate::wire::udp_encap::{NAT_KEEPALIVE, NON_ESP_MARKER};
use crate::wire::udp_encap::{UdpEncapPayload, classify};

/// The NAT-T vendor IDs we send when nat-traversal is on: RFC 3947 and the drafts older peers
/// look for.
pub(crate) fn vendor_ids(nat_t: bool, dpd: bool) -> Vec<Payload> {
    let mut v = Vec::new();
    if nat_t {
        v.push(Payload::VendorId(vendor::NAT_T_RFC3947.to_vec()));
        v.push(Payload::VendorId(vendor::NAT_T_DRAFT_03.to_vec()));
        v.push(Payload::VendorId(vendor::NAT_T_DRAFT_02_N.to_vec()));
        v.push(Payload::VendorId(vendor::NAT_T_DRAFT_02.to_vec()));
    }
    if dpd {
        v.push(Payload::VendorId(vendor::DPD.to_vec()));
    }
    v
}

/// What a peer's vendor IDs say it can do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PeerCapabilities {
    pub nat_t: Option<NatTVariant>,
    pub dpd: bool,
}

impl PeerCapabilities {
    pub fn from_payloads(payloads: &[Payload]) -> Self {
        let mut c = Self::default();
        for p in payloads {
            if let Payload::VendorId(v) = p {
                match KnownVendorId::recognise(v) {
                    Some(KnownVendorId::Dpd) => c.dpd = true,
                    Some(KnownVendorId::NatTRfc3947) => c.nat_t = Some(NatTVariant::Rfc3947),
                    Some(k) if k.is_nat_t_draft() && c.nat_t.is_none() => {
                        c.nat_t = Some(NatTVariant::Draft)
                    }
                    _ => {}
                }
            }
        }
        c
    }
}

/// NAT-D = HASH(CKY-I | CKY-R | IP | Port) with the negotiated hash (RFC 3947 §3.2).
pub(crate) fn nat_d(
    hash: HashAlgorithm,
    cky_i: &[u8; 8],
    cky_r: &[u8; 8],
    addr: SocketAddr,
) -> Vec<u8> {
    let ip = match addr.ip() {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    prf::hash(hash, &[cky_i, cky_r, &ip, &addr.port().to_be_bytes()])
        .as_bytes()
        .to_vec()
}

/// The two NAT-D payloads of messages 3/4: first the peer as we address it, then ourselves
/// (deliberately wrong with `force`: strongSwan's `forceencaps`, so both sides encapsulate).
#[allow(clippy::too_many_arguments)]
pub(crate) fn nat_d_payloads(
    variant: NatTVariant,
    hash: HashAlgorithm,
    cky_i: &[u8; 8],
    cky_r: &[u8; 8],
    peer: SocketAddr,
    local: SocketAddr,
    force: bool,
    rng_bytes: [u8; 8],
) -> Vec<Payload> {
    let draft = variant == NatTVariant::Draft;
    let mut ours = nat_d(hash, cky_i, cky_r, local);
    if force {
        // Any value that cannot match: the hash of our address with random cookies.
        ours = nat_d(hash, &rng_bytes, cky_r, local);
    }
    vec![
        Payload::NatD {
            draft,
            hash: nat_d(hash, cky_i, cky_r, peer),
        },
        Payload::NatD { draft, hash: ours },
    ]
}

/// NAT detection outcome (RFC 3947 §3.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatOutcome {
    pub local_behind_nat: bool,
    pub peer_behind_nat: bool,
}

impl NatOutcome {
    pub fn any(&self) -> bool {
        self.local_behind_nat || self.peer_behind_nat
    }
}

/// Compares the received NAT-D payloads with the addresses of the datagram that carried them:
/// `to` is where it arrived (our address as the peer addressed it), `from` where it came from.
/// `None` when the message carried no NAT-D.
pub(crate) fn detect(
    hash: HashAlgorithm,
    cky_i: &[u8; 8],
    cky_r: &[u8; 8],
    received: &[Payload],
    to: SocketAddr,
    from: SocketAddr,
) -> Option<NatOutcome> {
    let hashes: Vec<&[u8]> = received
        .iter()
        .filter_map(|p| match p {
            Payload::NatD { hash, .. } => Some(hash.as_slice()),
            _ => None,
        })
        .collect();
    let (first, rest) = hashes.split_first()?;
    let me = nat_d(hash, cky_i, cky_r, to);
    let peer = nat_d(hash, cky_i, cky_r, from);
    Some(NatOutcome {
        local_behind_nat: !ct(first, &me),
        peer_behind_nat: !rest.iter().any(|h| ct(h, &peer)),
    })
}

/// Constant-time comparison of two hashes (lengths are public).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    ct(a, b)
}

fn ct(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Strips the non-ESP marker of a datagram received on the NAT-T port. `None` for a
/// NAT-keepalive or an ESP packet (which the daemon should not have handed over).
pub(crate) fn strip_marker(bytes: &[u8]) -> Option<&[u8]> {
    match classify(bytes) {
        UdpEncapPayload::Keepalive => None,
        UdpEncapPayload::Ike(rest) => Some(rest),
        // Accept a datagram whose marker the daemon already removed: an ISAKMP header never
        // starts with a zero initiator cookie, so the two cannot be confused.
        UdpEncapPayload::Esp(_) | UdpEncapPayload::Runt => Some(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_nat_when_addresses_match() {
        let a: SocketAddr = "192.0.2.1:500".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:500".parse().unwrap();
        let (ci, cr) = ([1; 8], [2; 8]);
        let sent = nat_d_payloads(
            NatTVariant::Rfc3947,
            HashAlgorithm::Sha1,
            &ci,
            &cr,
            b,
            a,
            false,
            [0; 8],
        );
        let out = detect(HashAlgorithm::Sha1, &ci, &cr, &sent, b, a).unwrap();
        assert!(!out.any());
        let natted: SocketAddr = "203.0.113.5:40000".parse().unwrap();
        let out = detect(HashAlgorithm::Sha1, &ci, &cr, &sent, b, natted).unwrap();
        assert_eq!(
            out,
            NatOutcome {
                local_behind_nat: false,
                peer_behind_nat: true
            }
        );
        let forced = nat_d_payloads(
            NatTVariant::Rfc3947,
            HashAlgorithm::Sha1,
            &ci,
            &cr,
            b,
            a,
            true,
            [9; 8],
        );
        assert!(
            detect(HashAlgorithm::Sha1, &ci, &cr, &forced, b, a)
                .unwrap()
                .peer_behind_nat
        );
    }
}

#[cfg(test)]
mod caps_tests {
    use super::*;

    #[test]
    fn rfc_preferred_over_drafts_and_draft_alone_is_draft() {
        let both = vendor_ids(true, true);
        let c = PeerCapabilities::from_payloads(&both);
        assert_eq!(c.nat_t, Some(NatTVariant::Rfc3947));
        assert!(c.dpd);
        let draft = [Payload::VendorId(vendor::NAT_T_DRAFT_02_N.to_vec())];
        let c = PeerCapabilities::from_payloads(&draft);
        assert_eq!(c.nat_t, Some(NatTVariant::Draft));
        // Draft peers get the 61443 encapsulation mode.
        assert_eq!(
            super::super::proposal::EncapMode::for_mode(crate::config::Mode::Tunnel, c.nat_t)
                .value(),
            61443
        );
    }
}

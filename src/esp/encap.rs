//! Outbound processing (RFC 4303 §3.3, RFC 4302 §3.3): cleartext IPv4 or IPv6 packet in,
//! complete outer IPv4 or IPv6 packet out, written into a caller buffer without allocating.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use rand::CryptoRng;

use crate::config::Mode;
use crate::crypto::aead;
use crate::crypto::stitch::Engine;
use crate::wire::{
    self, AhRepr, EspRepr, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, UdpPacket,
    UdpRepr, build_frag_needed, icmpv6, ipv4, ipv6, ipv6_ext,
};

use super::EncapError;
use super::sa::{Direction, Layout, LifetimeState, SaEncapsulation, SecurityAssociation};

/// Outer TTL of the packets we originate (RFC 4301 §5.1.2.1 leaves it to the encapsulator).
const OUTER_TTL: u8 = 64;
/// How many packets of a batch share one RNG call and one interleaved encryption pass.
const BATCH: usize = 32;
/// Largest IV (AES).
const MAX_IV: usize = 16;

/// Per-call parameters of [`SecurityAssociation::encap`] (and of
/// [`SecurityAssociation::encap_batch`], where each job carries its own `ip_id`).
#[derive(Clone, Copy, Debug)]
pub struct EncapParams {
    /// MTU of the path to the peer (outer packet size limit).
    pub path_mtu: usize,
    /// IPv4 identification of the outer header (IPv4 tunnel mode; transport mode keeps the
    /// inner one; an IPv6 outer header has none).
    pub ip_id: u16,
    /// Source address of an ICMP "fragmentation needed" we may have to send back into the
    /// cleartext side for an IPv4 packet: the gateway address on that side (e.g.
    /// `tunnel-device.source-address`).
    pub icmp_source: Ipv4Addr,
    /// Source address of an ICMPv6 Packet Too Big for an IPv6 packet (RFC 4443 §3.2): the
    /// gateway's IPv6 address on the cleartext side. It must be a unicast address the sender
    /// accepts an error from.
    pub icmp_source_v6: Ipv6Addr,
}

/// Where the parts of an outer packet are in the output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OuterPacket {
    /// The complete outer packet, IP header included, is `out[..len]` (for an IPv4 outer,
    /// send as is on a raw `IP_HDRINCL` socket).
    pub len: usize,
    /// Length of the outer IP header (20 for IPv4, 40 for IPv6; in transport mode the
    /// inner header's length). The ESP/AH packet, or the UDP header, starts here.
    pub ip_header_len: usize,
    /// For RFC 3948 encapsulation: the UDP payload (the ESP packet) starts here; send
    /// `out[udp_payload_offset..len]` on the UDP 4500 socket.
    pub udp_payload_offset: Option<usize>,
    /// The outer header is IPv6 (RFC 8200), the SA's addresses being IPv6.
    pub ipv6: bool,
}

impl OuterPacket {
    /// What to hand the socket: the UDP payload for a UDP socket; for raw ESP/AH the whole
    /// packet over IPv4 (`IP_HDRINCL`), the part after the IPv6 header over IPv6 (a raw
    /// `AF_INET6` socket always writes the IPv6 header itself).
    pub fn socket_payload(&self) -> std::ops::Range<usize> {
        match self.udp_payload_offset {
            Some(at) => at..self.len,
            None if self.ipv6 => self.ip_payload(),
            None => 0..self.len,
        }
    }

    /// The bytes after the outer IP header: the ESP or AH packet (raw), or the UDP datagram.
    pub fn ip_payload(&self) -> std::ops::Range<usize> {
        self.ip_header_len..self.len
    }
}

/// What the caller must do with the output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncapOutcome {
    /// Send the packet.
    Send(OuterPacket),
    /// The packet exceeds the path MTU and the inner packet allowed fragmentation (an IPv4
    /// packet without DF, or an IPv6 packet of at most 1280 bytes on a path that cannot carry
    /// that much inside: RFC 8200 §5): over IPv4 cut `out[..len]` with
    /// [`wire::Ipv4Fragmenter`] for the path MTU before sending on a raw socket (a UDP socket
    /// with PMTU discovery off lets the kernel do it). An IPv6 outer packet is never cut
    /// here: the sending socket's kernel fragments it at the source (RFC 8200 §4.5), which
    /// needs PMTU discovery off on that socket (`IPV6_MTU_DISCOVER` = `IPV6_PMTUDISC_DONT`).
    Fragment(OuterPacket),
    /// The inner packet had DF set and does not fit after encapsulation: `out[..len]` holds an
    /// ICMP "fragmentation needed" (RFC 1191) announcing `mtu`, the largest inner packet that
    /// fits; write it back into the cleartext side. Nothing was sent and no sequence number
    /// was used.
    IcmpFragNeeded {
        /// Length of the ICMP packet in `out`.
        len: usize,
        /// The next-hop MTU announced.
        mtu: u16,
    },
    /// The inner packet is IPv6 and does not fit after encapsulation: `out[..len]` holds an
    /// IPv6 packet with an ICMPv6 Packet Too Big (RFC 4443 §3.2, from
    /// [`EncapParams::icmp_source_v6`]) announcing `mtu`, the largest inner packet that fits
    /// (never below 1280); write it back into the cleartext side. Nothing was sent and no
    /// sequence number was used.
    IcmpPacketTooBig {
        /// Length of the ICMPv6 packet in `out`.
        len: usize,
        /// The MTU announced.
        mtu: u32,
    },
}

/// One packet of [`SecurityAssociation::encap_batch`].
#[derive(Debug)]
pub struct EncapJob<'a> {
    /// The cleartext IPv4 or IPv6 packet.
    pub inner: &'a [u8],
    /// Where the outer packet (or ICMP) is written.
    pub out: &'a mut [u8],
    /// Outer IPv4 identification (unused with an IPv6 outer).
    pub ip_id: u16,
    /// Filled by `encap_batch`.
    pub result: Result<EncapOutcome, EncapError>,
}

impl<'a> EncapJob<'a> {
    /// A job whose result is not yet known.
    pub fn new(inner: &'a [u8], out: &'a mut [u8], ip_id: u16) -> Self {
        Self {
            inner,
            out,
            ip_id,
            result: Err(EncapError::BufferTooSmall),
        }
    }
}

/// A packet whose headers and plaintext are written, waiting for IV, encryption and ICVs.
#[derive(Clone, Copy)]
struct Prepared {
    layout: Layout,
    inner_len: usize,
    outcome: EncapOutcome,
}

enum Step {
    Done(EncapOutcome),
    Continue(Prepared),
}

impl SecurityAssociation {
    /// Encapsulates one cleartext IPv4 or IPv6 packet into `out`. See [`EncapOutcome`] for the
    /// results; `rng` supplies the random IV (RFC 4303 §3.3.2: unpredictable per packet).
    pub fn encap<R: CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        inner: &[u8],
        params: &EncapParams,
        rng: &mut R,
        out: &mut [u8],
    ) -> Result<EncapOutcome, EncapError> {
        self.check_outbound(now)?;
        let p = match self.prepare(inner, params, params.ip_id, out)? {
            Step::Done(o) => return Ok(o),
            Step::Continue(p) => p,
        };
        if self.esp.as_ref().is_some_and(|e| e.aead.is_some()) {
            self.seal_gcm(&p, out);
        } else if let Some(esp) = &self.esp
            && p.layout.iv > 0
        {
            let l = &p.layout;
            let start = l.esp_off() + wire::esp::HEADER_LEN;
            let end = start + l.iv + l.payload + l.pad + 2;
            let (iv, data) = out[start..end].split_at_mut(l.iv);
            rng.fill_bytes(iv);
            esp.cipher
                .encrypt_cbc(iv, data)
                .map_err(|_| EncapError::BufferTooSmall)?;
        }
        self.finish(&p, out, false);
        Ok(p.outcome)
    }

    /// Encapsulates a batch of packets for the same SA. IVs for up to 32 packets are drawn
    /// with one RNG call; AES-CBC with HMAC-SHA1 or HMAC-SHA-256 runs over the whole batch on
    /// the engine's batch path (see [`crate::crypto::stitch`]), other AES suites interleave the
    /// packets' CBC chains (see [`crate::crypto::EspCipher::encrypt_cbc_batch`]), and the
    /// HMAC-SHA1 ICVs of ESP-NULL and AH come from the batch hash; each job gets its own
    /// `result`, in order, and sequence numbers follow the job order. `params.ip_id` is unused:
    /// each job carries its own.
    pub fn encap_batch<R: CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        jobs: &mut [EncapJob<'_>],
        params: &EncapParams,
        rng: &mut R,
    ) {
        self.encap_batch_on(Engine::detect(), now, jobs, params, rng);
    }

    /// [`Self::encap_batch`] with a chosen crypto engine (tests and `ikehub bench` compare the
    /// stitched one with the portable one; both give the same bytes for the same IVs).
    pub fn encap_batch_on<R: CryptoRng + ?Sized>(
        &mut self,
        engine: Engine,
        now: Instant,
        jobs: &mut [EncapJob<'_>],
        params: &EncapParams,
        rng: &mut R,
    ) {
        if let Err(e) = self.check_outbound(now) {
            for j in jobs.iter_mut() {
                j.result = Err(e);
            }
            return;
        }
        for chunk in jobs.chunks_mut(BATCH) {
            let mut prepared: [Option<Prepared>; BATCH] = [None; BATCH];
            let mut n_enc = 0;
            for (i, j) in chunk.iter_mut().enumerate() {
                match self.prepare(j.inner, params, j.ip_id, j.out) {
                    Ok(Step::Done(o)) => j.result = Ok(o),
                    Ok(Step::Continue(p)) => {
                        if p.layout.iv > 0 {
                            n_enc += 1;
                        }
                        prepared[i] = Some(p);
                    }
                    Err(e) => j.result = Err(e),
                }
            }
            let mut icv_done = false;
            if self.esp.as_ref().is_some_and(|e| e.aead.is_some()) {
                for (j, p) in chunk.iter_mut().zip(prepared.iter()) {
                    if let Some(p) = p {
                        self.seal_gcm(p, j.out);
                    }
                }
            } else if let Some(esp) = &self.esp
                && n_enc > 0
            {
                let iv_len = esp.cipher.iv_len();
                let mut ivs = [0u8; BATCH * MAX_IV];
                rng.fill_bytes(&mut ivs[..n_enc * iv_len]);
                let mut k = 0;
                for (j, p) in chunk.iter_mut().zip(prepared.iter()) {
                    if let Some(p) = p {
                        let start = p.layout.esp_off() + wire::esp::HEADER_LEN;
                        j.out[start..start + iv_len]
                            .copy_from_slice(&ivs[k * iv_len..(k + 1) * iv_len]);
                        k += 1;
                    }
                }
                // Encrypt-then-MAC in one stitched pass over the ESP packets (SPI to ICV); an
                // AH bundle authenticates the finished ESP packet afterwards, in `finish`.
                let mut bufs: [&mut [u8]; BATCH] = Default::default();
                let mut k = 0;
                for (j, p) in chunk.iter_mut().zip(prepared.iter()) {
                    if let Some(p) = p {
                        bufs[k] = &mut j.out[p.layout.esp_off()..p.layout.total];
                        k += 1;
                    }
                }
                icv_done = esp.integ.icv_len() > 0
                    && esp
                        .cipher
                        .seal_hmac_batch(&esp.integ, engine, &mut bufs[..k]);
                if !icv_done {
                    for b in bufs[..k].iter_mut() {
                        let l = b.len() - esp.integ.icv_len();
                        *b = &mut std::mem::take(b)[wire::esp::HEADER_LEN..l];
                    }
                    // Sizes were laid out by `prepare`, so this cannot fail.
                    let _ = esp.cipher.encrypt_cbc_batch(&mut bufs[..k]);
                }
            }
            // ESP-NULL (RFC 2410): nothing to encrypt, the ICVs are all the work.
            if !icv_done
                && self
                    .esp
                    .as_ref()
                    .is_some_and(|e| e.aead.is_none() && e.cipher.iv_len() == 0)
            {
                icv_done = self.esp_icvs_batch(engine, chunk, &prepared);
            }
            // RFC 4301 §4.5: the AH ICV covers the finished ESP packet, so ESP's come first.
            for (j, p) in chunk.iter_mut().zip(prepared.iter()) {
                if let Some(p) = p
                    && !icv_done
                {
                    self.esp_icv(p, j.out);
                }
            }
            let ah_done = self.ah_icvs_batch(engine, chunk, &prepared);
            for (j, p) in chunk.iter_mut().zip(prepared.iter()) {
                if let Some(p) = p {
                    if !ah_done {
                        self.ah_icv(p, j.out);
                    }
                    self.close(p, j.out);
                    j.result = Ok(p.outcome);
                }
            }
        }
    }

    /// The ESP ICVs of a batch at once (ESP-NULL with HMAC-SHA1 on a batch engine). False,
    /// having written nothing, where the integrity transform or the engine has no batch
    /// hash: then each packet gets its own in `esp_icv`.
    fn esp_icvs_batch(
        &self,
        engine: Engine,
        chunk: &mut [EncapJob<'_>],
        prepared: &[Option<Prepared>; BATCH],
    ) -> bool {
        let Some(esp) = &self.esp else { return false };
        let icv_len = esp.integ.icv_len();
        if icv_len == 0 {
            return false;
        }
        let mut msgs: [&mut [u8]; BATCH] = Default::default();
        let mut k = 0;
        for (j, p) in chunk.iter_mut().zip(prepared.iter()) {
            if let Some(p) = p {
                msgs[k] = &mut j.out[p.layout.esp_off()..p.layout.total];
                k += 1;
            }
        }
        let mut macs = [[0u8; 20]; BATCH];
        if !esp
            .integ
            .sha1_macs_batch(engine, &msgs[..k], icv_len, &mut macs[..k])
        {
            return false;
        }
        for (m, mac) in msgs[..k].iter_mut().zip(&macs) {
            let at = m.len() - icv_len;
            m[at..].copy_from_slice(&mac[..icv_len]);
        }
        true
    }

    /// The AH ICVs of a batch at once (HMAC-SHA1 on a batch engine): each packet's IP header
    /// gets its mutable fields zeroed in place for the hash (RFC 4302 §3.3.3.1) and then its
    /// own bytes back, so every message is the packet itself, its ICV field still zero. False,
    /// having changed nothing, where the transform or the engine has no batch hash, or a
    /// packet has anything between its IP and AH headers: then `ah_icv` goes packet by packet.
    fn ah_icvs_batch(
        &self,
        engine: Engine,
        chunk: &mut [EncapJob<'_>],
        prepared: &[Option<Prepared>; BATCH],
    ) -> bool {
        let Some(a) = &self.ah else { return false };
        let icv_len = a.integ.icv_len();
        if a.integ.sha1_pads().is_none()
            || prepared
                .iter()
                .flatten()
                .any(|p| p.layout.ah_off() != p.layout.ip_hdr)
        {
            return false;
        }
        let v6 = self.outer_is_ipv6();
        let mut saved = [[0u8; ipv4::MAX_HEADER_LEN]; BATCH];
        let mut hls = [0usize; BATCH];
        let mut msgs: [&mut [u8]; BATCH] = Default::default();
        let mut k = 0;
        for (j, p) in chunk.iter_mut().zip(prepared.iter()) {
            if let Some(p) = p {
                let l = &p.layout;
                let hl = l.ip_hdr;
                let m = &mut j.out[..l.total];
                saved[k][..hl].copy_from_slice(&m[..hl]);
                hls[k] = hl;
                if v6 {
                    // Our own fixed IPv6 header (transport mode refuses extension headers).
                    let _ = ipv6_ext::zero_mutable_fields(&mut m[..hl]);
                } else {
                    ipv4::zero_mutable_fields(&mut m[..hl]);
                }
                msgs[k] = m;
                k += 1;
            }
        }
        let mut macs = [[0u8; 20]; BATCH];
        let done = a
            .integ
            .sha1_macs_batch(engine, &msgs[..k], 0, &mut macs[..k]);
        for (((m, mac), hdr), &hl) in msgs[..k].iter_mut().zip(&macs).zip(&saved).zip(&hls) {
            m[..hl].copy_from_slice(&hdr[..hl]);
            if done {
                let at = hl + wire::ah::FIXED_LEN;
                m[at..at + icv_len].copy_from_slice(&mac[..icv_len]);
            }
        }
        done
    }

    fn check_outbound(&self, now: Instant) -> Result<(), EncapError> {
        if self.direction != Direction::Outbound {
            return Err(EncapError::WrongDirection);
        }
        if self.lifetime_state(now) == LifetimeState::HardExpired {
            return Err(EncapError::Expired);
        }
        Ok(())
    }

    /// The largest inner packet (with an IP header of `hdr_len`) whose encapsulation fits
    /// `mtu`, never below the IPv4 minimum of 68.
    pub fn max_inner_len(&self, mtu: usize, hdr_len: usize) -> usize {
        self.fit_inner_len(mtu, hdr_len).max(ipv4::MIN_MTU)
    }

    /// The largest inner packet whose encapsulation fits `mtu`, or 0 when none does.
    fn fit_inner_len(&self, mtu: usize, hdr_len: usize) -> usize {
        let (mut lo, mut hi) = (hdr_len, mtu.max(hdr_len));
        if self.layout(lo, hdr_len).total > mtu {
            return 0;
        }
        // Largest L in [lo, hi] with total(L) <= mtu; total is monotonic in L.
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if self.layout(mid, hdr_len).total <= mtu {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }

    /// Validates the inner packet, decides send / fragment / ICMP, writes every header and the
    /// padded plaintext, and consumes the sequence numbers.
    fn prepare(
        &mut self,
        inner: &[u8],
        params: &EncapParams,
        ip_id: u16,
        out: &mut [u8],
    ) -> Result<Step, EncapError> {
        let c = Cleartext::parse(inner)?;
        let inner = c.packet;
        let hdr_len = c.header_len;
        if self.mode == Mode::Transport {
            if c.fragment {
                return Err(EncapError::TransportFragment);
            }
            if c.src != self.local || c.dst != self.peer {
                return Err(EncapError::TransportAddressMismatch);
            }
            if c.protocol == IpProtocol::NO_NEXT_HEADER {
                return Err(EncapError::TransportNoNextHeader);
            }
            if c.ipv6 && ipv6_ext::is_extension_header(c.protocol) {
                return Err(EncapError::TransportExtensionHeaders);
            }
        }
        let l = self.layout(inner.len(), hdr_len);
        let path_mtu = params.path_mtu;
        let mut fragment = false;
        if l.total > path_mtu {
            let fits = self.fit_inner_len(path_mtu, hdr_len);
            if c.ipv6 {
                // RFC 8200 §5: IPv6 packets are never fragmented on the way, so the sender
                // learns the size that fits (RFC 4443 §3.2), but never below the 1280 every
                // IPv6 link carries: a tunnel that cannot take 1280 inside fragments its outer
                // packet instead (RFC 4459 §3, RFC 8200 §5).
                let mtu = fits.max(ipv6::MIN_MTU).min(usize::from(u16::MAX));
                if inner.len() > mtu {
                    let len =
                        icmpv6::build_packet_too_big(params.icmp_source_v6, inner, mtu as u32, out)
                            .map_err(|e| match e {
                                wire::Error::BufferTooSmall => EncapError::BufferTooSmall,
                                e => EncapError::InnerMalformed(e),
                            })?
                            .ok_or(EncapError::TooBigNoIcmp)?;
                    return Ok(Step::Done(EncapOutcome::IcmpPacketTooBig {
                        len,
                        mtu: mtu as u32,
                    }));
                }
            } else if c.dont_frag {
                // RFC 4301 §8.2 / RFC 1191: tell the sender the size that fits.
                let mtu = fits.max(ipv4::MIN_MTU).min(usize::from(u16::MAX));
                let len = build_frag_needed(params.icmp_source, inner, mtu as u16, out)
                    .map_err(|_| EncapError::BufferTooSmall)?;
                return Ok(Step::Done(EncapOutcome::IcmpFragNeeded {
                    len,
                    mtu: mtu as u16,
                }));
            }
            fragment = true;
        }
        if l.total > usize::from(u16::MAX) {
            return Err(EncapError::TooLarge);
        }
        if out.len() < l.total {
            return Err(EncapError::BufferTooSmall);
        }
        // RFC 4303 §3.3.3: the counter must not cycle without ESN.
        let esp_seq = match &self.esp {
            Some(e) => Some(e.seq.checked_add(1).ok_or(EncapError::SequenceOverflow)?),
            None => None,
        };
        let ah_seq = match &self.ah {
            Some(a) => Some(a.seq.checked_add(1).ok_or(EncapError::SequenceOverflow)?),
            None => None,
        };

        let outer_proto = match (self.encapsulation, self.ah.is_some()) {
            (SaEncapsulation::Udp { .. }, _) => IpProtocol::UDP,
            (SaEncapsulation::Raw, true) => IpProtocol::AH,
            (SaEncapsulation::Raw, false) => IpProtocol::ESP,
        };
        // RFC 4303 §2.6 / RFC 4301 §5.1.2: tunnel mode names the inner IP version (4 or 41),
        // transport mode the upper layer.
        let protected_next = match (self.mode, c.ipv6) {
            (Mode::Tunnel, false) => IpProtocol::IPV4,
            (Mode::Tunnel, true) => IpProtocol::IPV6,
            (Mode::Transport, _) => c.protocol,
        };

        // Outer IP header.
        match (self.mode, self.local, self.peer) {
            (Mode::Tunnel, IpAddr::V4(local), IpAddr::V4(peer)) => {
                Ipv4Repr {
                    src_addr: local,
                    dst_addr: peer,
                    protocol: outer_proto,
                    payload_len: l.total - ipv4::HEADER_LEN,
                    ttl: OUTER_TTL,
                    // RFC 4301 §5.1.2.1: DSCP copied from the inner header; DF copied too so
                    // PMTU discovery of the inner flow keeps working (an IPv6 inner is never
                    // fragmented on the way, so its outer packet is DF unless we must
                    // fragment it).
                    tos: c.tos,
                    ident: ip_id,
                    dont_frag: c.dont_frag && !fragment,
                    more_frags: false,
                    frag_offset: 0,
                }
                .emit(out)
                .map_err(|_| EncapError::BufferTooSmall)?;
            }
            (Mode::Tunnel, IpAddr::V6(local), IpAddr::V6(peer)) => {
                // RFC 4301 §5.1.2.1 (IPv6 column): traffic class copied, flow label 0 (the
                // inner one means nothing between the gateways), hop limit ours.
                Ipv6Repr {
                    hop_limit: OUTER_TTL,
                    traffic_class: c.tos,
                    ..Ipv6Repr::new(local, peer, outer_proto, l.total - ipv6::HEADER_LEN)
                }
                .emit(out)
                .map_err(|_| EncapError::BufferTooSmall)?;
            }
            (Mode::Tunnel, _, _) => return Err(EncapError::TransportAddressMismatch),
            (Mode::Transport, ..) => {
                out[..hdr_len].copy_from_slice(&inner[..hdr_len]);
                if c.ipv6 {
                    let mut p = Ipv6Packet::new_unchecked(&mut out[..hdr_len]);
                    p.set_next_header(outer_proto);
                    p.set_payload_len((l.total - ipv6::HEADER_LEN) as u16);
                } else {
                    let mut p = Ipv4Packet::new_unchecked(&mut out[..hdr_len]);
                    p.set_protocol(outer_proto);
                    p.set_total_len(l.total as u16);
                }
            }
        }
        let mut udp_payload_offset = None;
        if let SaEncapsulation::Udp {
            local_port,
            peer_port,
        } = self.encapsulation
        {
            UdpRepr {
                src_port: local_port,
                dst_port: peer_port,
            }
            .emit(&mut out[l.ip_hdr..], l.total - l.ip_hdr - l.udp)
            .map_err(|_| EncapError::BufferTooSmall)?;
            udp_payload_offset = Some(l.ip_hdr + l.udp);
        }
        let payload_src = match self.mode {
            Mode::Tunnel => inner,
            Mode::Transport => &inner[hdr_len..],
        };
        if let (Some(a), Some(seq)) = (&mut self.ah, ah_seq) {
            AhRepr {
                next_header: if self.esp.is_some() {
                    IpProtocol::ESP
                } else {
                    protected_next
                },
                spi: a.spi,
                sequence_number: seq,
                icv_len: a.icv_field,
            }
            .emit(&mut out[l.ah_off()..])
            .map_err(|_| EncapError::BufferTooSmall)?;
            a.seq = seq;
        }
        let esp_off = l.esp_off();
        match (&mut self.esp, esp_seq) {
            (Some(e), Some(seq)) => {
                EspRepr {
                    spi: e.spi,
                    sequence_number: seq,
                }
                .emit(&mut out[esp_off..])
                .map_err(|_| EncapError::BufferTooSmall)?;
                let mut at = esp_off + wire::esp::HEADER_LEN + l.iv;
                out[at..at + l.payload].copy_from_slice(payload_src);
                at += l.payload;
                // RFC 4303 §2.4: padding bytes 1, 2, 3, ... then pad length and next header.
                for (i, b) in out[at..at + l.pad].iter_mut().enumerate() {
                    *b = (i + 1) as u8;
                }
                at += l.pad;
                out[at] = l.pad as u8;
                out[at + 1] = protected_next.0;
                e.seq = seq;
            }
            _ => out[esp_off..esp_off + l.payload].copy_from_slice(payload_src),
        }
        let packet = OuterPacket {
            len: l.total,
            ip_header_len: l.ip_hdr,
            udp_payload_offset,
            ipv6: self.outer_is_ipv6(),
        };
        Ok(Step::Continue(Prepared {
            layout: l,
            inner_len: inner.len(),
            outcome: if fragment {
                EncapOutcome::Fragment(packet)
            } else {
                EncapOutcome::Send(packet)
            },
        }))
    }

    /// AES-GCM ESP (RFC 4106): writes the explicit IV, encrypts payload, padding and trailer
    /// in place and writes the ICV behind them. `prepare` already wrote the header and
    /// consumed the sequence number.
    fn seal_gcm(&self, p: &Prepared, out: &mut [u8]) {
        let Some(aead) = self.esp.as_ref().and_then(|e| e.aead.as_ref()) else {
            return;
        };
        let l = &p.layout;
        let hdr = l.esp_off();
        let iv_at = hdr + wire::esp::HEADER_LEN;
        let data_at = iv_at + aead::IV_LEN;
        let icv_at = data_at + l.payload + l.pad + wire::esp::TRAILER_LEN;
        // RFC 4106 §5: AAD = SPI || 32-bit sequence number, as the header carries them.
        let mut aad = [0u8; aead::AAD_LEN];
        aad.copy_from_slice(&out[hdr..hdr + aead::AAD_LEN]);
        // RFC 4106 §3.1 / §8.1: the IV only has to be unique under the key; the 64-bit
        // sequence counter (high half 0 without ESN) never repeats, as `prepare` refuses to
        // wrap it. Being public it reveals nothing RFC 4303 §2.2 does not already show.
        let seq = u32::from_be_bytes([aad[4], aad[5], aad[6], aad[7]]);
        let iv = u64::from(seq).to_be_bytes();
        out[iv_at..data_at].copy_from_slice(&iv);
        let (data, rest) = out[data_at..].split_at_mut(icv_at - data_at);
        let mut icv = [0u8; aead::ICV_LEN];
        // Sizes were laid out by `prepare`, so this cannot fail.
        let _ = aead.seal_in_place(&iv, &aad, data, &mut icv);
        rest[..aead::ICV_LEN].copy_from_slice(&icv);
    }

    /// After encryption: the ESP ICV (unless the stitched pass wrote it: `esp_icv_done`; AES-GCM
    /// wrote its own in `seal_gcm`), then the AH ICV over the finished ESP packet (RFC 4301
    /// §4.5 order), then the outer header checksum; counts the packet.
    fn finish(&mut self, p: &Prepared, out: &mut [u8], esp_icv_done: bool) {
        if !esp_icv_done {
            self.esp_icv(p, out);
        }
        self.ah_icv(p, out);
        self.close(p, out);
    }

    /// The ESP ICV over the ESP header to the trailer (RFC 4303 §3.3.4), if the SA has one.
    fn esp_icv(&self, p: &Prepared, out: &mut [u8]) {
        let l = &p.layout;
        let esp_off = l.esp_off();
        if let Some(e) = &self.esp
            && e.integ.icv_len() > 0
        {
            let icv_at = l.total - l.icv;
            let (authed, icv) = out[esp_off..l.total].split_at_mut(icv_at - esp_off);
            let _ = e.integ.compute(&[authed], icv);
        }
    }

    /// The AH ICV, if the SA has AH.
    fn ah_icv(&self, p: &Prepared, out: &mut [u8]) {
        let l = &p.layout;
        if let Some(a) = &self.ah {
            // RFC 4302 §3.3.3: ICV over the IP header with mutable fields zeroed (IPv4
            // §3.3.3.1.1, IPv6 §3.3.3.1.2), the AH header with a zero ICV field (emit left it
            // and its padding zero) and everything after it.
            let mut hdr = [0u8; ipv4::MAX_HEADER_LEN];
            let hl = l.ip_hdr;
            hdr[..hl].copy_from_slice(&out[..hl]);
            if self.outer_is_ipv6() {
                // Our own header: the fixed IPv6 header with next header AH (transport mode
                // refuses extension headers), so this cannot fail.
                let _ = ipv6_ext::zero_mutable_fields(&mut hdr[..hl]);
            } else {
                ipv4::zero_mutable_fields(&mut hdr[..hl]);
            }
            let ah_off = l.ah_off();
            let icv_len = a.integ.icv_len();
            let mut icv = [0u8; 32];
            let _ = a
                .integ
                .compute(&[&hdr[..hl], &out[ah_off..l.total]], &mut icv[..icv_len]);
            let at = ah_off + wire::ah::FIXED_LEN;
            out[at..at + icv_len].copy_from_slice(&icv[..icv_len]);
        }
    }

    /// Last: the outer header checksum (IPv4) or the UDP checksum (IPv6), which cover the
    /// finished packet; counts it.
    fn close(&mut self, p: &Prepared, out: &mut [u8]) {
        let l = &p.layout;
        if !self.outer_is_ipv6() {
            Ipv4Packet::new_unchecked(&mut out[..l.ip_hdr]).fill_checksum();
        } else if l.udp > 0 {
            // RFC 8200 §8.1: over IPv6 the UDP checksum is mandatory, over the pseudo-header
            // and the finished datagram (so only now, after encryption and ICVs).
            UdpPacket::new_unchecked(&mut out[l.ip_hdr..l.total])
                .fill_checksum(self.local, self.peer);
        }
        self.counters.record_ok(p.inner_len);
    }
}

/// What `prepare` needs to know of a cleartext packet of either IP version.
struct Cleartext<'a> {
    /// The packet, trimmed to the length its header gives.
    packet: &'a [u8],
    ipv6: bool,
    /// The IP header transport mode keeps (the IPv4 header with options, or the fixed IPv6
    /// header: transport mode refuses IPv6 extension headers).
    header_len: usize,
    src: IpAddr,
    dst: IpAddr,
    /// IPv4 protocol or IPv6 next header.
    protocol: IpProtocol,
    /// IPv4 TOS or IPv6 traffic class (DSCP and ECN).
    tos: u8,
    /// The sender forbids fragmentation: IPv4 DF, always for IPv6 (RFC 8200 §5).
    dont_frag: bool,
    /// An IPv4 fragment, or an IPv6 packet whose first next header is a fragment header.
    fragment: bool,
}

impl<'a> Cleartext<'a> {
    fn parse(packet: &'a [u8]) -> Result<Self, EncapError> {
        match packet.first().map(|b| b >> 4) {
            Some(4) => {
                let ip = Ipv4Packet::new_checked(packet).map_err(EncapError::InnerMalformed)?;
                Ok(Self {
                    packet: &packet[..usize::from(ip.total_len())],
                    ipv6: false,
                    header_len: ip.header_len(),
                    src: ip.src_addr().into(),
                    dst: ip.dst_addr().into(),
                    protocol: ip.protocol(),
                    tos: ip.tos(),
                    dont_frag: ip.dont_frag(),
                    fragment: ip.is_fragment(),
                })
            }
            Some(6) => {
                let ip = Ipv6Packet::new_checked(packet).map_err(EncapError::InnerMalformed)?;
                Ok(Self {
                    packet: &packet[..ipv6::HEADER_LEN + usize::from(ip.payload_len())],
                    ipv6: true,
                    header_len: ipv6::HEADER_LEN,
                    src: ip.src_addr().into(),
                    dst: ip.dst_addr().into(),
                    protocol: ip.next_header(),
                    tos: ip.traffic_class(),
                    dont_frag: true,
                    fragment: ip.next_header() == IpProtocol::IPV6_FRAG,
                })
            }
            _ => Err(EncapError::InnerNotIp),
        }
    }
}

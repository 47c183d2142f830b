//! Outbound processing (RFC 4303 §3.3, RFC 4302 §3.3): cleartext IPv4 packet in, complete
//! outer IPv4 packet out, written into a caller buffer without allocating.

use std::net::Ipv4Addr;
use std::time::Instant;

use rand::CryptoRng;

use crate::config::Mode;
use crate::crypto::aead;
use crate::crypto::stitch::Engine;
use crate::wire::{
    self, AhRepr, EspRepr, IpProtocol, Ipv4Packet, Ipv4Repr, UdpRepr, build_frag_needed, ipv4,
};

use super::EncapError;
use super::sa::{Direction, Layout, LifetimeState, SaEncapsulation, SecurityAssociation};

/// Outer TTL of the packets we originate (RFC 4301 §5.1.2.1 leaves it to the encapsulator).
const OUTER_TTL: u8 = 64;
/// How many packets of a batch share one RNG call and one interleaved encryption pass.
const BATCH: usize = 32;
/// Largest IV (AES).
const MAX_IV: usize = 16;

/// Per-call parameters of [`SecurityAssociation::encap`].
#[derive(Clone, Copy, Debug)]
pub struct EncapParams {
    /// MTU of the path to the peer (outer packet size limit).
    pub path_mtu: usize,
    /// IPv4 identification of the outer header (tunnel mode; transport mode keeps the inner
    /// one).
    pub ip_id: u16,
    /// Source address of an ICMP "fragmentation needed" we may have to send back into the
    /// cleartext side: the gateway address on that side (e.g. `tunnel-device.source-address`).
    pub icmp_source: Ipv4Addr,
}

/// Where the parts of an outer packet are in the output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OuterPacket {
    /// The complete outer IPv4 packet is `out[..len]` (send as is on a raw `IP_HDRINCL`
    /// socket).
    pub len: usize,
    /// Length of the outer IPv4 header.
    pub ip_header_len: usize,
    /// For RFC 3948 encapsulation: the UDP payload (the ESP packet) starts here; send
    /// `out[udp_payload_offset..len]` on the UDP 4500 socket.
    pub udp_payload_offset: Option<usize>,
}

impl OuterPacket {
    /// The UDP payload range for a UDP socket, or the whole packet for a raw socket.
    pub fn socket_payload(&self) -> std::ops::Range<usize> {
        self.udp_payload_offset.unwrap_or(0)..self.len
    }
}

/// What the caller must do with the output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncapOutcome {
    /// Send the packet.
    Send(OuterPacket),
    /// The packet exceeds the path MTU and the inner packet allowed fragmentation: cut
    /// `out[..len]` with [`wire::Ipv4Fragmenter`] for the path MTU before sending on a raw
    /// socket (a UDP socket with PMTU discovery off lets the kernel do it).
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
}

/// One packet of [`SecurityAssociation::encap_batch`].
#[derive(Debug)]
pub struct EncapJob<'a> {
    /// The cleartext IPv4 packet.
    pub inner: &'a [u8],
    /// Where the outer packet (or ICMP) is written.
    pub out: &'a mut [u8],
    /// Outer IPv4 identification.
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
    /// Encapsulates one cleartext IPv4 packet into `out`. See [`EncapOutcome`] for the three
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
        let p = match self.prepare(
            inner,
            params.path_mtu,
            params.icmp_source,
            params.ip_id,
            out,
        )? {
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
    /// with one RNG call; AES-CBC with HMAC-SHA1 runs stitched over the batch (see
    /// [`crate::crypto::stitch`]), other AES suites interleave the packets' CBC chains (see
    /// [`crate::crypto::EspCipher::encrypt_cbc_batch`]); each job gets its own `result`, in
    /// order, and sequence numbers follow the job order.
    pub fn encap_batch<R: CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        jobs: &mut [EncapJob<'_>],
        path_mtu: usize,
        icmp_source: Ipv4Addr,
        rng: &mut R,
    ) {
        self.encap_batch_on(Engine::detect(), now, jobs, path_mtu, icmp_source, rng);
    }

    /// [`Self::encap_batch`] with a chosen crypto engine (tests and `ikehub bench` compare the
    /// stitched one with the portable one; both give the same bytes for the same IVs).
    pub fn encap_batch_on<R: CryptoRng + ?Sized>(
        &mut self,
        engine: Engine,
        now: Instant,
        jobs: &mut [EncapJob<'_>],
        path_mtu: usize,
        icmp_source: Ipv4Addr,
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
                match self.prepare(j.inner, path_mtu, icmp_source, j.ip_id, j.out) {
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
                        .seal_sha1_batch(&esp.integ, engine, &mut bufs[..k]);
                if !icv_done {
                    for b in bufs[..k].iter_mut() {
                        let l = b.len() - esp.integ.icv_len();
                        *b = &mut std::mem::take(b)[wire::esp::HEADER_LEN..l];
                    }
                    // Sizes were laid out by `prepare`, so this cannot fail.
                    let _ = esp.cipher.encrypt_cbc_batch(&mut bufs[..k]);
                }
            }
            for (j, p) in chunk.iter_mut().zip(prepared.iter()) {
                if let Some(p) = p {
                    self.finish(p, j.out, icv_done);
                    j.result = Ok(p.outcome);
                }
            }
        }
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
        let (mut lo, mut hi) = (hdr_len, mtu.max(hdr_len));
        if self.layout(lo, hdr_len).total > mtu {
            return ipv4::MIN_MTU;
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
        lo.max(ipv4::MIN_MTU)
    }

    /// Validates the inner packet, decides send / fragment / ICMP, writes every header and the
    /// padded plaintext, and consumes the sequence numbers.
    fn prepare(
        &mut self,
        inner: &[u8],
        path_mtu: usize,
        icmp_source: Ipv4Addr,
        ip_id: u16,
        out: &mut [u8],
    ) -> Result<Step, EncapError> {
        if inner.first().map(|b| b >> 4) != Some(4) {
            return Err(EncapError::InnerNotIpv4);
        }
        let ip = Ipv4Packet::new_checked(inner).map_err(EncapError::InnerMalformed)?;
        let inner = &inner[..usize::from(ip.total_len())];
        let hdr_len = ip.header_len();
        if self.mode == Mode::Transport {
            if ip.is_fragment() {
                return Err(EncapError::TransportFragment);
            }
            if ip.src_addr() != self.local || ip.dst_addr() != self.peer {
                return Err(EncapError::TransportAddressMismatch);
            }
            if ip.protocol() == IpProtocol::NO_NEXT_HEADER {
                return Err(EncapError::TransportNoNextHeader);
            }
        }
        let l = self.layout(inner.len(), hdr_len);
        let mut fragment = false;
        if l.total > path_mtu {
            if ip.dont_frag() {
                // RFC 4301 §8.2 / RFC 1191: tell the sender the size that fits.
                let mtu = self
                    .max_inner_len(path_mtu, hdr_len)
                    .min(usize::from(u16::MAX));
                let len = build_frag_needed(icmp_source, inner, mtu as u16, out)
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
        let protected_next = match self.mode {
            Mode::Tunnel => IpProtocol::IPV4,
            Mode::Transport => ip.protocol(),
        };

        // Outer IP header.
        match self.mode {
            Mode::Tunnel => {
                Ipv4Repr {
                    src_addr: self.local,
                    dst_addr: self.peer,
                    protocol: outer_proto,
                    payload_len: l.total - ipv4::HEADER_LEN,
                    ttl: OUTER_TTL,
                    // RFC 4301 §5.1.2.1: DSCP copied from the inner header; DF copied too so
                    // PMTU discovery of the inner flow keeps working.
                    tos: ip.tos(),
                    ident: ip_id,
                    dont_frag: ip.dont_frag(),
                    more_frags: false,
                    frag_offset: 0,
                }
                .emit(out)
                .map_err(|_| EncapError::BufferTooSmall)?;
            }
            Mode::Transport => {
                out[..hdr_len].copy_from_slice(&inner[..hdr_len]);
                let mut p = Ipv4Packet::new_unchecked(&mut out[..hdr_len]);
                p.set_protocol(outer_proto);
                p.set_total_len(l.total as u16);
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
                icv_len: a.integ.icv_len(),
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
        let l = &p.layout;
        let esp_off = l.esp_off();
        if let Some(e) = &self.esp
            && e.integ.icv_len() > 0
            && !esp_icv_done
        {
            let icv_at = l.total - l.icv;
            let (authed, icv) = out[esp_off..l.total].split_at_mut(icv_at - esp_off);
            let _ = e.integ.compute(&[authed], icv);
        }
        if let Some(a) = &self.ah {
            // RFC 4302 §3.3.3: ICV over the IP header with mutable fields zeroed, the AH
            // header with a zero ICV field (emit left it zero) and everything after it.
            let mut hdr = [0u8; ipv4::MAX_HEADER_LEN];
            let hl = l.ip_hdr;
            hdr[..hl].copy_from_slice(&out[..hl]);
            ipv4::zero_mutable_fields(&mut hdr[..hl]);
            let ah_off = l.ah_off();
            let icv_len = a.integ.icv_len();
            let mut icv = [0u8; 32];
            let _ = a
                .integ
                .compute(&[&hdr[..hl], &out[ah_off..l.total]], &mut icv[..icv_len]);
            let at = ah_off + wire::ah::FIXED_LEN;
            out[at..at + icv_len].copy_from_slice(&icv[..icv_len]);
        }
        Ipv4Packet::new_unchecked(&mut out[..l.ip_hdr]).fill_checksum();
        self.counters.record_ok(p.inner_len);
    }
}

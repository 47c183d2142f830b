//! Inbound processing (RFC 4303 §3.4, RFC 4302 §3.4): verify, check replay, decrypt, check
//! padding and selectors, and hand back where the cleartext packet is.
//!
//! Order matters: the anti-replay check (read-only) and every ICV verification come before
//! any state changes; the replay windows are committed only once all ICVs checked out, and
//! decryption happens only after that (RFC 4303 §3.4.3-3.4.4). Every failure is a
//! [`DropReason`] counted on the SA; nothing a peer sends can panic this code.

use std::net::IpAddr;
use std::ops::Range;
use std::time::Instant;

use subtle::ConstantTimeEq;

use crate::config::Mode;
use crate::crypto::stitch::Engine;
use crate::crypto::{EspAead, aead};
use crate::wire::{
    self, AhPacket, EspPacket, IpProtocol, Ipv4Packet, Ipv6Packet, Ipv6Repr, UdpPacket, ipv4, ipv6,
    ipv6_ext,
};

use super::DropReason;
use super::replay::ReplayError;
use super::sa::{Direction, LifetimeState, SecurityAssociation};

/// What the buffer given to [`SecurityAssociation::decap`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// A complete outer IPv4 packet as a raw socket delivers it (protocol 50, 51, or 17 for
    /// UDP-encapsulated ESP), or a complete IPv6 packet (ESP, AH or UDP after any extension
    /// headers, RFC 8200 §4; a fragment is [`DropReason::Fragment`]). AH needs this form:
    /// its ICV covers the outer header.
    Ip,
    /// The payload of a UDP datagram (RFC 3948, non-ESP marker already checked) starting at
    /// `offset` in the buffer; `src`/`dst` are the datagram's outer addresses (IPv4 or IPv6,
    /// as the SA's). The bytes before `offset` are free headroom: transport mode needs 20
    /// (IPv4) or 40 (IPv6) of them to rebuild the IP header in front of the payload.
    Udp {
        /// Outer source (the peer, possibly NATed).
        src: IpAddr,
        /// Outer destination (our address).
        dst: IpAddr,
        /// Where the UDP payload starts in the buffer.
        offset: usize,
    },
    /// A raw ESP packet without its IP header, starting at `offset`, as a raw `AF_INET6`
    /// socket delivers it (the kernel strips the IPv6 header and has reassembled fragments);
    /// `src`/`dst` are the outer IPv6 addresses from the socket. Headroom as for `Udp`.
    Esp {
        /// Outer source (the peer).
        src: IpAddr,
        /// Outer destination (our address).
        dst: IpAddr,
        /// Where the ESP header starts in the buffer.
        offset: usize,
    },
}

/// A successfully decapsulated packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decapsulated {
    /// The cleartext IPv4 or IPv6 packet is `buffer[inner]`, ready to be written to the TUN.
    pub inner: Range<usize>,
    /// Sequence number of the outermost header (AH in a bundle, else ESP).
    pub sequence_number: u32,
}

/// The longest IP header (with IPv6 extension headers) in front of an AH header we verify: the
/// zeroed copy AH's ICV covers lives on the stack. Longer chains are refused as unsupported.
const MAX_AH_COVERED_HEADER: usize = 512;

/// How many packets of a batch go through one stitched verify-and-decrypt pass.
const BATCH: usize = 32;

/// One packet of [`SecurityAssociation::decap_batch`].
#[derive(Debug)]
pub struct DecapJob<'a> {
    /// The received buffer, decapsulated in place.
    pub packet: &'a mut [u8],
    /// What the buffer holds.
    pub received: Received,
    /// Filled by `decap_batch`.
    pub result: Result<Decapsulated, DropReason>,
}

impl<'a> DecapJob<'a> {
    /// A job whose result is not yet known.
    pub fn new(packet: &'a mut [u8], received: Received) -> Self {
        Self {
            packet,
            received,
            result: Err(DropReason::Truncated),
        }
    }
}

/// Where a batched packet's ESP parts are, once its headers checked out.
#[derive(Clone, Copy)]
struct EspFrame {
    /// The ESP packet is `packet[start..end]`, the ciphertext `packet[body.0..body.1]`.
    start: usize,
    end: usize,
    body: (usize, usize),
    seq: u32,
    outer: (usize, IpAddr, IpAddr),
}

/// Verifies the ICVs (the last `icv_len` bytes) of several ESP packets at once on the engine's
/// batch hash, each in constant time: `ok[i]` says whether packet `i` matched. False, having
/// set nothing, where the transform or the engine has no batch hash.
fn verify_icvs_batch(
    integ: &crate::crypto::integrity::Integrity,
    engine: Engine,
    packets: &[&mut [u8]],
    ok: &mut [bool],
) -> bool {
    let icv_len = integ.icv_len();
    let mut macs = [[0u8; 20]; BATCH];
    let n = packets.len().min(BATCH);
    if icv_len == 0 || !integ.sha1_macs_batch(engine, &packets[..n], icv_len, &mut macs[..n]) {
        return false;
    }
    for ((p, mac), ok) in packets.iter().zip(&macs).zip(ok.iter_mut()) {
        let icv = &p[p.len().saturating_sub(icv_len)..];
        *ok = icv.len() == icv_len && bool::from(mac[..icv_len].ct_eq(icv));
    }
    true
}

impl SecurityAssociation {
    /// Decapsulates several received packets of this SA in place, with the same result and
    /// counters as [`Self::decap`] on each in order. For ESP with AES-CBC and HMAC-SHA1 or
    /// HMAC-SHA-256 the batch's ICVs are verified and its verified packets decrypted on the
    /// engine's batch path ([`crate::crypto::stitch::open`]), for ESP-NULL with HMAC-SHA1 the
    /// ICVs on the batch hash; every header and the (read-only) replay check come
    /// first, the replay window moves only for verified packets, in order, and a sequence
    /// number that occurs twice in one batch is taken once.
    pub fn decap_batch(&mut self, now: Instant, jobs: &mut [DecapJob<'_>]) {
        self.decap_batch_on(Engine::detect(), now, jobs);
    }

    /// [`Self::decap_batch`] with a chosen crypto engine (tests and `ikehub bench`).
    pub fn decap_batch_on(&mut self, engine: Engine, now: Instant, jobs: &mut [DecapJob<'_>]) {
        let batchable = self.direction == Direction::Inbound
            && self.lifetime_state(now) != LifetimeState::HardExpired
            && self.ah.is_none()
            && self.esp.as_ref().is_some_and(|e| e.integ.batches());
        if !batchable {
            for j in jobs.iter_mut() {
                j.result = self.decap(now, j.packet, j.received);
            }
            return;
        }
        for chunk in jobs.chunks_mut(BATCH) {
            // 1-2a. Framing, ESP header and read-only replay checks.
            let mut frames: [Option<EspFrame>; BATCH] = [None; BATCH];
            for (f, j) in frames.iter_mut().zip(chunk.iter_mut()) {
                match self.esp_frame(j.packet, j.received) {
                    Ok(frame) => *f = Some(frame),
                    Err(e) => {
                        self.counters.record_drop(e);
                        j.result = Err(e);
                    }
                }
            }
            // 2b. Every ICV, and decryption of the packets whose ICV matched.
            let mut ok = [false; BATCH];
            let mut at = [0usize; BATCH];
            let mut k = 0;
            let opened = {
                let mut bufs: [&mut [u8]; BATCH] = Default::default();
                for (i, (f, j)) in frames.iter().zip(chunk.iter_mut()).enumerate() {
                    if let Some(f) = f {
                        bufs[k] = &mut j.packet[f.start..f.end];
                        at[k] = i;
                        k += 1;
                    }
                }
                self.esp.as_ref().is_some_and(|esp| {
                    esp.cipher
                        .open_hmac_batch(&esp.integ, engine, &mut bufs[..k], &mut ok[..k])
                        // ESP-NULL (RFC 2410): nothing to decrypt, the ICVs are all the work.
                        || (esp.aead.is_none()
                            && esp.cipher.iv_len() == 0
                            && verify_icvs_batch(&esp.integ, engine, &bufs[..k], &mut ok[..k]))
                })
            };
            // 3-5. In order: commit the replay window, strip, deliver.
            for (n, &i) in at[..k].iter().enumerate() {
                let j = &mut chunk[i];
                if !opened {
                    // Nothing was changed: the packet-by-packet path does it all.
                    j.result = self.decap(now, j.packet, j.received);
                    continue;
                }
                let Some(f) = frames[i] else { continue };
                let r = self.esp_verified(j.packet, f, ok[n]);
                match &r {
                    Ok(d) => self.counters.record_ok(d.inner.len()),
                    Err(e) => self.counters.record_drop(*e),
                }
                j.result = r;
            }
        }
    }

    /// Steps 1 and 2 of [`Self::decap`] for ESP alone, short of the ICV.
    fn esp_frame(&self, packet: &[u8], received: Received) -> Result<EspFrame, DropReason> {
        let (ip_hdr_len, start, end, src, dst, proto) = self.outer_frame(packet, received)?;
        if proto != IpProtocol::ESP {
            return Err(DropReason::WrongProtocol);
        }
        let (seq, _, body) = self.esp_check(packet, start, end)?;
        Ok(EspFrame {
            start,
            end,
            body: (body.start, body.end),
            seq,
            outer: (ip_hdr_len, src, dst),
        })
    }

    /// Steps 3 to 5 of [`Self::decap`] for a batched ESP packet the stitched pass verified
    /// (`icv_ok`) and decrypted.
    fn esp_verified(
        &mut self,
        packet: &mut [u8],
        f: EspFrame,
        icv_ok: bool,
    ) -> Result<Decapsulated, DropReason> {
        if !icv_ok {
            return Err(DropReason::IcvFailure);
        }
        // The window may have moved for an earlier packet of this batch (the same number
        // sent twice): check again before committing.
        if let Some(esp) = &self.esp {
            esp.replay.check(f.seq).map_err(replay_drop)?;
        }
        self.commit_replay(None, Some(f.seq));
        let inner = self.deliver(packet, f.body.0..f.body.1, IpProtocol::ESP, f.outer, false)?;
        Ok(Decapsulated {
            inner,
            sequence_number: f.seq,
        })
    }

    /// Decapsulates a received packet in place. On success the SA's replay window and
    /// counters are updated; on failure the drop is counted and nothing else changes.
    pub fn decap(
        &mut self,
        now: Instant,
        packet: &mut [u8],
        received: Received,
    ) -> Result<Decapsulated, DropReason> {
        let r = self.decap_inner(now, packet, received);
        match &r {
            Ok(d) => self.counters.record_ok(d.inner.len()),
            Err(e) => self.counters.record_drop(*e),
        }
        r
    }

    fn decap_inner(
        &mut self,
        now: Instant,
        packet: &mut [u8],
        received: Received,
    ) -> Result<Decapsulated, DropReason> {
        if self.direction != Direction::Inbound {
            return Err(DropReason::Unsupported);
        }
        if self.lifetime_state(now) == LifetimeState::HardExpired {
            return Err(DropReason::Expired);
        }

        // 1. The outer framing: where the IPsec part is, the outer header if any.
        let (ip_hdr_len, mut start, end, outer_src, outer_dst, proto) =
            self.outer_frame(packet, received)?;

        // 2. Verify everything before changing anything.
        let mut ah_seq = None;
        let mut next = proto;
        if let Some(ah) = &self.ah {
            if proto != IpProtocol::AH || ip_hdr_len == 0 {
                return Err(DropReason::WrongProtocol);
            }
            let p = AhPacket::new_checked(&packet[start..end])?;
            if p.spi() != ah.spi {
                return Err(DropReason::SpiMismatch);
            }
            let (icv_len, icv_field) = (ah.integ.icv_len(), ah.icv_field);
            if p.header_len() != wire::ah::FIXED_LEN + icv_field {
                return Err(DropReason::Malformed);
            }
            let seq = p.sequence_number();
            ah.replay.check(seq).map_err(replay_drop)?;
            // RFC 4302 §3.4.3: ICV over the header with mutable fields zeroed (IPv4
            // §3.3.3.1.1; IPv6 §3.3.3.1.2, extension headers before AH included), AH with a
            // zero ICV field (padding too), and the rest.
            let mut hdr = [0u8; MAX_AH_COVERED_HEADER];
            let Some(hdr) = hdr.get_mut(..ip_hdr_len) else {
                return Err(DropReason::Unsupported);
            };
            hdr.copy_from_slice(&packet[..ip_hdr_len]);
            if self.outer_is_ipv6() {
                ipv6_ext::zero_mutable_fields(hdr)?;
            } else {
                ipv4::zero_mutable_fields(hdr);
            }
            let zeros = [0u8; 32];
            let icv_at = start + wire::ah::FIXED_LEN;
            let ok = ah.integ.verify(
                &[
                    hdr,
                    &packet[start..icv_at],
                    &zeros[..icv_field],
                    &packet[icv_at + icv_field..end],
                ],
                &packet[icv_at..icv_at + icv_len],
            );
            if !ok {
                return Err(DropReason::IcvFailure);
            }
            next = p.next_header();
            start = icv_at + icv_field;
            ah_seq = Some(seq);
        } else if proto == IpProtocol::AH {
            return Err(DropReason::WrongProtocol);
        }

        let mut esp_seq = None;
        let mut payload = start..end;
        if let Some(esp) = &self.esp {
            if next != IpProtocol::ESP {
                return Err(DropReason::WrongProtocol);
            }
            let (seq, icv_at, body) = self.esp_check(packet, start, end)?;
            let verified = match &esp.aead {
                Some(aead) => open_gcm(aead, &mut packet[start..end]),
                None => esp
                    .integ
                    .verify(&[&packet[start..icv_at]], &packet[icv_at..end]),
            };
            if !verified {
                return Err(DropReason::IcvFailure);
            }
            esp_seq = Some(seq);
            payload = body;
        }

        // 3. Authenticated: commit the replay windows (RFC 4303 §3.4.3). Without any
        // integrity (encryption-only ESP, RFC 4303 §3.2 allows it) there is nothing that
        // authenticates the sequence number, so commit only once the packet fully decoded.
        let authenticated = self.ah.is_some() || self.esp.as_ref().is_some_and(|e| e.icv_len() > 0);
        if authenticated {
            self.commit_replay(ah_seq, esp_seq);
        }

        // 4-5. Decrypt, strip the trailer, locate the inner packet, check the selectors.
        let inner = self.deliver(
            packet,
            payload,
            next,
            (ip_hdr_len, outer_src, outer_dst),
            true,
        )?;
        if !authenticated {
            self.commit_replay(ah_seq, esp_seq);
        }
        Ok(Decapsulated {
            inner,
            sequence_number: ah_seq.or(esp_seq).unwrap_or(0),
        })
    }
}

impl SecurityAssociation {
    /// The ESP header and lengths of `packet[start..end]` (RFC 4303 §2, §3.4.2-3.4.3) and the
    /// read-only anti-replay check: the sequence number, where the ICV starts and the
    /// ciphertext (after the IV). Changes nothing.
    fn esp_check(
        &self,
        packet: &[u8],
        start: usize,
        end: usize,
    ) -> Result<(u32, usize, Range<usize>), DropReason> {
        let Some(esp) = &self.esp else {
            return Err(DropReason::WrongProtocol);
        };
        let p = EspPacket::new_checked(&packet[start..end])?;
        if p.spi() != esp.spi {
            return Err(DropReason::SpiMismatch);
        }
        let (iv_len, icv_len, bs) = (esp.iv_len(), esp.icv_len(), esp.block_len());
        let fixed = wire::esp::HEADER_LEN + iv_len + icv_len;
        if end - start < fixed + wire::esp::TRAILER_LEN {
            return Err(DropReason::Truncated);
        }
        let ct_len = end - start - fixed;
        if !ct_len.is_multiple_of(bs) {
            return Err(DropReason::BadLength);
        }
        let seq = p.sequence_number();
        esp.replay.check(seq).map_err(replay_drop)?;
        let icv_at = end - icv_len;
        Ok((seq, icv_at, start + wire::esp::HEADER_LEN + iv_len..icv_at))
    }

    /// Steps 4 and 5 of [`Self::decap`] once every ICV verified: decrypt (unless `decrypt` is
    /// false because the batch path did), check and strip the ESP trailer, rebuild or locate
    /// the inner packet and check it against the selectors. `outer` is the outer header
    /// length (0 for a UDP payload) and addresses.
    fn deliver(
        &self,
        packet: &mut [u8],
        mut payload: Range<usize>,
        mut next: IpProtocol,
        outer: (usize, IpAddr, IpAddr),
        decrypt: bool,
    ) -> Result<Range<usize>, DropReason> {
        let (ip_hdr_len, outer_src, outer_dst) = outer;
        // 4. Decrypt (unless the batch path did, or AES-GCM did while verifying) and strip the
        // ESP trailer.
        if let Some(esp) = &self.esp {
            if decrypt && esp.aead.is_none() {
                let iv_at = payload.start - esp.cipher.iv_len();
                let (iv, ct) = packet[iv_at..payload.end].split_at_mut(esp.cipher.iv_len());
                esp.cipher
                    .decrypt_cbc(iv, ct)
                    .map_err(|_| DropReason::BadLength)?;
            }
            let ct_end = payload.end;
            let pad_len = usize::from(packet[ct_end - 2]);
            next = IpProtocol(packet[ct_end - 1]);
            if pad_len + wire::esp::TRAILER_LEN > payload.len() {
                return Err(DropReason::BadPadLength);
            }
            let pad_start = ct_end - wire::esp::TRAILER_LEN - pad_len;
            // RFC 4303 §2.4: the receiver should check the padding is 1, 2, 3, ...
            let pad_ok = packet[pad_start..ct_end - 2]
                .iter()
                .enumerate()
                .all(|(i, b)| usize::from(*b) == i + 1);
            if !pad_ok {
                return Err(DropReason::BadPadding);
            }
            payload.end = pad_start;
        }
        if next == IpProtocol::NO_NEXT_HEADER {
            return Err(DropReason::Dummy);
        }

        // 5. Rebuild / locate the inner packet and check it against the selectors.
        let (inner, src, dst) = match self.mode {
            Mode::Tunnel => {
                // TFC padding (RFC 4303 §2.7) may follow the inner packet: trim to the
                // length its own header gives, which must fit what the trailer left.
                let at = payload.start;
                match next {
                    IpProtocol::IPV4 => {
                        let ip = Ipv4Packet::new_checked(&packet[payload])
                            .map_err(|_| DropReason::InnerMalformed)?;
                        let end = at + usize::from(ip.total_len());
                        (at..end, ip.src_addr().into(), ip.dst_addr().into())
                    }
                    IpProtocol::IPV6 => {
                        let ip = Ipv6Packet::new_checked(&packet[payload])
                            .map_err(|_| DropReason::InnerMalformed)?;
                        let end = at + ip.packet().len();
                        (at..end, ip.src_addr().into(), ip.dst_addr().into())
                    }
                    _ => return Err(DropReason::UnknownNextHeader),
                }
            }
            Mode::Transport => {
                let inner =
                    rebuild_transport(packet, payload, next, ip_hdr_len, outer_src, outer_dst)?;
                (inner, outer_src, outer_dst)
            }
        };
        if !self.selectors_allow(src, dst) {
            return Err(DropReason::SelectorMismatch);
        }
        Ok(inner)
    }

    /// [`outer_frame`], and the outer family must be the SA's: an IPv6 packet never reaches
    /// the IPv4 header rules (AH's mutable fields, the transport header) or the reverse.
    #[allow(clippy::type_complexity)]
    fn outer_frame(
        &self,
        packet: &[u8],
        received: Received,
    ) -> Result<(usize, usize, usize, IpAddr, IpAddr, IpProtocol), DropReason> {
        let f = outer_frame(packet, received)?;
        if f.3.is_ipv6() != self.outer_is_ipv6() {
            return Err(DropReason::WrongProtocol);
        }
        Ok(f)
    }

    fn commit_replay(&mut self, ah_seq: Option<u32>, esp_seq: Option<u32>) {
        if let (Some(a), Some(s)) = (&mut self.ah, ah_seq) {
            a.replay.commit(s);
        }
        if let (Some(e), Some(s)) = (&mut self.esp, esp_seq) {
            e.replay.commit(s);
        }
    }
}

/// RFC 4106 §3-§5 on one ESP packet (`esp` = header .. ICV, lengths already checked):
/// verifies the ICV over SPI || sequence number and the ciphertext, then decrypts in place.
/// Nothing of the SA changes here, so the caller commits the replay window only on success.
fn open_gcm(aead: &EspAead, esp: &mut [u8]) -> bool {
    let fixed = aead::AAD_LEN + aead::IV_LEN;
    if esp.len() < fixed + aead::ICV_LEN {
        return false;
    }
    let (head, rest) = esp.split_at_mut(fixed);
    let split = rest.len() - aead::ICV_LEN;
    let (data, icv) = rest.split_at_mut(split);
    let (aad, iv) = head.split_at(aead::AAD_LEN);
    match (
        <&[u8; aead::IV_LEN]>::try_from(iv),
        <&[u8; aead::ICV_LEN]>::try_from(&*icv),
    ) {
        (Ok(iv), Ok(icv)) => aead.open_in_place(iv, aad, data, icv).is_ok(),
        _ => false,
    }
}

/// Transport mode (RFC 4303 §3.4.4 last step): puts the IP header back in front of the
/// payload `packet[payload]`, with `next` as its protocol: the received outer header moved
/// (`ip_hdr_len` > 0) or one rebuilt from the outer addresses (a UDP or raw IPv6 payload,
/// whose headroom must hold it). The transport-mode header is the hosts' own, so its
/// addresses are the outer ones (RFC 4301 §4.1).
fn rebuild_transport(
    packet: &mut [u8],
    payload: Range<usize>,
    next: IpProtocol,
    ip_hdr_len: usize,
    src: IpAddr,
    dst: IpAddr,
) -> Result<Range<usize>, DropReason> {
    let body = payload.len();
    let v6 = src.is_ipv6();
    let hl = match (ip_hdr_len, v6) {
        (0, false) => ipv4::HEADER_LEN,
        (0, true) => ipv6::HEADER_LEN,
        (n, _) => n,
    };
    if payload.start < hl {
        return Err(DropReason::Unsupported);
    }
    if v6 && hl != ipv6::HEADER_LEN {
        // Extension headers before ESP/AH: their next-header chain would need rewriting.
        return Err(DropReason::Unsupported);
    }
    let at = payload.start - hl;
    if ip_hdr_len > 0 {
        packet.copy_within(0..hl, at);
    }
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = u16::try_from(hl + body).map_err(|_| DropReason::Malformed)?;
            if ip_hdr_len == 0 {
                wire::Ipv4Repr::new(s, d, next, body).emit(&mut packet[at..])?;
            }
            let mut ip = Ipv4Packet::new_unchecked(&mut packet[at..at + hl]);
            ip.set_protocol(next);
            ip.set_total_len(total);
            ip.fill_checksum();
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let len = u16::try_from(body).map_err(|_| DropReason::Malformed)?;
            if ip_hdr_len == 0 {
                Ipv6Repr::new(s, d, next, body).emit(&mut packet[at..])?;
            }
            let mut ip = Ipv6Packet::new_unchecked(&mut packet[at..at + hl]);
            ip.set_next_header(next);
            ip.set_payload_len(len);
        }
        _ => return Err(DropReason::Malformed),
    }
    Ok(at..at + hl + body)
}

/// The outer framing (step 1 of [`SecurityAssociation::decap`]): the outer header length (0
/// for a UDP or raw-IPv6 payload), where the IPsec part starts and ends, the outer addresses
/// and the protocol of the IPsec part.
#[allow(clippy::type_complexity)]
fn outer_frame(
    packet: &[u8],
    received: Received,
) -> Result<(usize, usize, usize, IpAddr, IpAddr, IpProtocol), DropReason> {
    Ok(match received {
        Received::Ip => {
            // The outer header of either family: where its payload starts and ends, the
            // addresses and the protocol after it.
            let (hl, end, src, dst, protocol) = if packet.first().map(|b| b >> 4) == Some(6) {
                let ip = Ipv6Packet::new_checked(packet)?;
                // RFC 8200 §4: through the extension headers (bounded walk) to ESP, AH or UDP.
                let up = ipv6_ext::upper_layer(&ip)?;
                if up.fragment.is_some() {
                    // RFC 8200 §4.5: reassemble first (RFC 4303 §3.4.1).
                    return Err(DropReason::Fragment);
                }
                let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
                (up.offset, ip.packet().len(), src, dst, up.protocol)
            } else {
                let ip = Ipv4Packet::new_checked(packet)?;
                if ip.is_fragment() {
                    return Err(DropReason::Fragment);
                }
                let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
                let end = usize::from(ip.total_len());
                (ip.header_len(), end, src, dst, ip.protocol())
            };
            match protocol {
                IpProtocol::UDP => {
                    let udp = UdpPacket::new_checked(&packet[hl..end])?;
                    let uend = hl + usize::from(udp.len());
                    (
                        hl,
                        hl + wire::udp::HEADER_LEN,
                        uend,
                        src,
                        dst,
                        IpProtocol::ESP,
                    )
                }
                p => (hl, hl, end, src, dst, p),
            }
        }
        Received::Udp { src, dst, offset } | Received::Esp { src, dst, offset } => {
            if offset > packet.len() {
                return Err(DropReason::Truncated);
            }
            if src.is_ipv4() != dst.is_ipv4() {
                return Err(DropReason::Malformed);
            }
            (0, offset, packet.len(), src, dst, IpProtocol::ESP)
        }
    })
}

fn replay_drop(_: ReplayError) -> DropReason {
    DropReason::Replayed
}

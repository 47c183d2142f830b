//! The shard's hot path: drain a readable descriptor in batches, encapsulate or decapsulate in
//! place, and send the results in batches. No allocation, lock, log line or actor message per
//! packet; drops are counted (on the SA when one is known, else on the shard).

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use ikehub::esp::{DropReason, EncapJob, EncapOutcome, EncapParams, SaEncapsulation};
use ikehub::wire::{Ipv4Fragmenter, Ipv4Packet, Ipv6Fragmenter, Ipv6Packet};

use super::{ClearFd, EspShard, HandoffMeta, MAX_RX, SLOT_SIZE, SaHandle};
use crate::io::{self, PacketBatch};

/// Packets of one SA encrypted together: AES-CBC is serial within a packet, so the batch path
/// interleaves the blocks of several packets; 32 keeps every AES unit busy with room to spare
/// and bounds the per-SA job array on the stack.
const ENCAP_BATCH: usize = 32;
/// The largest cleartext packets that `sa` encapsulates within `path_mtu`, exactly, per inner
/// family: an IPv4 packet without options, an IPv6 packet (its 40-byte header, which matters
/// in transport mode only). 0 when the path is too small to tell (then every packet takes
/// the one-by-one path, which handles ICMP, ICMPv6 and fragmentation). The bound must be
/// exact, not a worst case over all suites: with a tunnel MTU of 1400 on a 1500-byte path, a
/// full-size packet of AES-CBC/HMAC-SHA1 over UDP is 1472 bytes on the wire, and a
/// worst-case margin (113 bytes: AH + ESP + the largest IV and ICV) sent every full-size
/// packet one by one, past the batched (stitched) encryption.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct BatchLimit {
    pub v4: usize,
    pub v6: usize,
}

pub(super) fn batch_limit(sa: &ikehub::esp::SecurityAssociation, path_mtu: usize) -> BatchLimit {
    // `max_inner_len` never answers below the IPv4 minimum, fitting or not.
    let exact = |hdr_len| {
        let limit = sa.max_inner_len(path_mtu, hdr_len);
        if limit <= ikehub::wire::ipv4::MIN_MTU {
            0
        } else {
            limit
        }
    };
    BatchLimit {
        v4: exact(ikehub::wire::ipv4::HEADER_LEN),
        v6: exact(ikehub::wire::ipv6::HEADER_LEN),
    }
}

/// The addresses the SPD looks a cleartext packet up by, IPv4 or IPv6 by its version nibble
/// (RFC 791 §3.1, RFC 8200 §3), read through the checked views: `None` for anything else, or a
/// header or length that does not hold (counted as `not_ip`). The selectors are the fixed
/// header's addresses; extension headers are the ESP layer's business.
pub(super) fn cleartext_addresses(pkt: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match pkt.first().map(|b| b >> 4) {
        Some(4) => Ipv4Packet::new_checked(pkt)
            .ok()
            .map(|ip| (ip.src_addr().into(), ip.dst_addr().into())),
        Some(6) => Ipv6Packet::new_checked(pkt)
            .ok()
            .map(|ip| (ip.src_addr().into(), ip.dst_addr().into())),
        _ => None,
    }
}

/// The source of an ICMPv6 Packet Too Big answering cleartext packet `pkt`: the tunnel
/// device's IPv6 `source-address` when one is set (the gateway's own address on the cleartext
/// side, RFC 4443 §2.2). Without one, the destination of the packet that did not fit: the
/// error then seems to come from the far end of the tunnel, an address the sender routes
/// back to and accepts an error from (a link-local or unspecified source would be dropped by
/// a router between the sender and the tunnel device). Not a peer's choice either way: the
/// packet is the sender's own, answered to it only.
fn icmpv6_source(configured: Option<Ipv6Addr>, pkt: &[u8]) -> Ipv6Addr {
    configured
        .or_else(|| Ipv6Packet::new_checked(pkt).ok().map(|ip| ip.dst_addr()))
        .unwrap_or(Ipv6Addr::UNSPECIFIED)
}

/// Source of an ICMP "fragmentation needed" for IPv4 packet `pkt`: the WAN address over an
/// IPv4 interface (as always); over an IPv6 interface, which has no IPv4 address, the
/// destination of the packet that did not fit (a unicast address the sender accepts an error
/// from, as for [`icmpv6_source`]).
fn icmp_source(wan: IpAddr, pkt: &[u8]) -> Ipv4Addr {
    match wan {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => Ipv4Packet::new_checked(pkt)
            .ok()
            .map_or(Ipv4Addr::UNSPECIFIED, |ip| ip.dst_addr()),
    }
}

/// Writes the non-empty packets of `batch` to the cleartext device; returns how many it
/// refused.
fn send_clear(clear: &Option<ClearFd>, batch: &mut PacketBatch) -> u64 {
    match clear {
        Some(ClearFd::Tun(fd)) => fd.get_ref().send_coalesced(batch),
        Some(ClearFd::Memory(fd)) => (0..batch.len())
            .map(|i| batch.packet(i))
            .filter(|p| !p.is_empty() && fd.get_ref().send(p).is_err())
            .count() as u64,
        None => (0..batch.len())
            .filter(|&i| !batch.packet(i).is_empty())
            .count() as u64,
    }
}

/// Whether `pkt` fits the path as [`batch_limit`] computed it: in transport mode the inner
/// header stays and its length moves the padding, so a packet with IPv4 options goes the
/// one-by-one path (an IPv6 header is always 40 bytes: its extension headers are payload to
/// the limit).
fn fits_batch(pkt: &[u8], limit: BatchLimit) -> bool {
    match pkt.first() {
        Some(0x45) => pkt.len() <= limit.v4,
        Some(b) if b >> 4 == 6 => pkt.len() <= limit.v6,
        _ => false,
    }
}

impl EspShard {
    // ---- cleartext -> WAN -------------------------------------------------------------

    pub(super) fn drain_cleartext(&mut self, now: Instant) {
        let Some(mut rx) = self.take_rx() else { return };
        loop {
            rx.clear();
            let got = match &self.clear {
                Some(ClearFd::Tun(fd)) => fd.get_ref().recv_batch(&mut rx),
                Some(ClearFd::Memory(fd)) => fd.get_ref().recv_batch(&mut rx),
                None => break,
            };
            match got {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
            self.encap_received(now, &rx);
            self.flush_wan();
            if !rx.is_full() {
                break;
            }
        }
        self.rx = Some(rx);
    }

    /// Encapsulates a batch of cleartext packets: each SA's packets of the batch are
    /// encrypted together (interleaved AES-CBC across packets), in their arrival order.
    /// Packets that may not fit the path go one by one through [`encap_one`](Self::encap_one),
    /// which handles ICMP fragmentation-needed and outer fragmentation; the gathering of an
    /// SA's packets stops at such a packet so the SA's order is kept.
    fn encap_received(&mut self, now: Instant, rx: &PacketBatch) {
        let n = rx.len().min(MAX_RX);
        let mut sas: [Option<SaHandle>; MAX_RX] = [None; MAX_RX];
        let mut slow = [false; MAX_RX];
        // The bound of the SA last seen (a batch is mostly one SA's packets).
        let mut last: Option<(SaHandle, BatchLimit)> = None;
        for (i, sa) in sas.iter_mut().enumerate().take(n) {
            let pkt = rx.packet(i);
            if let Some((h, w)) = self.classify(pkt) {
                *sa = Some(h);
                let limit = match last {
                    Some((lh, limit)) if lh == h => limit,
                    _ => {
                        let limit = self.outbound_limit(h, w);
                        last = Some((h, limit));
                        limit
                    }
                };
                slow[i] = !fits_batch(pkt, limit);
            }
        }
        let mut done = [false; MAX_RX];
        for i in 0..n {
            let Some(sa) = sas[i] else { continue };
            if done[i] {
                continue;
            }
            if slow[i] {
                done[i] = true;
                self.encap_one(now, sa, rx.packet(i));
                continue;
            }
            let mut group: [&[u8]; ENCAP_BATCH] = [&[]; ENCAP_BATCH];
            let mut k = 0;
            for j in i..n {
                if done[j] || sas[j] != Some(sa) {
                    continue;
                }
                if slow[j] || k == ENCAP_BATCH {
                    break;
                }
                group[k] = rx.packet(j);
                k += 1;
                done[j] = true;
            }
            self.encap_group(now, sa, &group[..k]);
        }
    }

    /// Looks up the SPD entry of a cleartext packet. Returns its outbound SA's handle and the
    /// WAN index when this shard encapsulates it; counts and drops it, or queues it for the
    /// shard that holds the SA.
    fn classify(&mut self, pkt: &[u8]) -> Option<(SaHandle, usize)> {
        self.counters.cleartext_in += 1;
        let Some((src, dst)) = cleartext_addresses(pkt) else {
            self.counters.not_ip += 1;
            return None;
        };
        let Some(sa) = self.spd.lookup(src, dst) else {
            self.counters.no_policy += 1;
            return None;
        };
        let Some(sa) = sa else {
            // The policy has no SA yet (an IKE policy before its tunnel is up): drop the
            // packet and ask for one (RFC 4301 §5.1: the SPD entry triggers keying).
            self.counters.no_sa += 1;
            self.acquire(src, dst);
            return None;
        };
        let owner = self.outbound_owner(sa);
        if owner != self.index {
            self.hand_over(owner, HandoffMeta::Cleartext { sa }, pkt);
            return None;
        }
        let Some(inst) = self.sas.outbound(sa) else {
            self.counters.no_sa += 1;
            return None;
        };
        let local = inst.sa.local();
        match self.wans.iter().position(|w| w.local == local) {
            Some(w) => Some((sa, w)),
            None => {
                self.counters.encap_errors += 1;
                None
            }
        }
    }

    /// The largest cleartext packet of outbound SA `sa` (on WAN `w`) that takes the batched
    /// path; 0 when none does.
    fn outbound_limit(&self, sa: SaHandle, w: usize) -> BatchLimit {
        match (self.sas.outbound(sa), self.wans.get(w)) {
            (Some(inst), Some(wan)) => batch_limit(&inst.sa, wan.path_mtu),
            _ => BatchLimit::default(),
        }
    }

    /// Encapsulates packets handed over by another shard for SAs this shard holds: each
    /// run of one SA's packets that fit the path goes through the batched encryption, the
    /// others one by one, in their order.
    pub(super) fn encap_handed_over(&mut self, now: Instant, sa: SaHandle, packets: &[&[u8]]) {
        let limit = self
            .sas
            .outbound(sa)
            .and_then(|inst| {
                let local = inst.sa.local();
                self.wans.iter().position(|w| w.local == local)
            })
            .map_or(BatchLimit::default(), |w| self.outbound_limit(sa, w));
        let mut rest = packets;
        while let Some((first, _)) = rest.split_first() {
            if !fits_batch(first, limit) {
                self.encap_one(now, sa, first);
                rest = &rest[1..];
                continue;
            }
            let k = rest
                .iter()
                .take(ENCAP_BATCH)
                .position(|p| !fits_batch(p, limit))
                .unwrap_or(rest.len().min(ENCAP_BATCH));
            let (group, tail) = rest.split_at(k);
            self.encap_group(now, sa, group);
            rest = tail;
        }
    }

    fn encap_group(&mut self, now: Instant, sa: SaHandle, group: &[&[u8]]) {
        let k = group.len().min(ENCAP_BATCH);
        let Some(inst) = self.sas.outbound(sa) else {
            self.counters.no_sa += k as u64;
            return;
        };
        let local = inst.sa.local();
        let Some(w) = self.wans.iter().position(|w| w.local == local) else {
            self.counters.encap_errors += k as u64;
            return;
        };
        let udp_peer = match inst.sa.encapsulation() {
            SaEncapsulation::Udp { peer_port, .. } => {
                Some(SocketAddr::new(inst.sa.peer(), peer_port))
            }
            SaEncapsulation::Raw => None,
        };
        let needs_flush = match udp_peer {
            Some(_) => self.tx_udp[w].free_slots() < k,
            None => self.tx_raw[w].free_slots() < k,
        };
        if needs_flush {
            self.flush_wan();
        }
        // Only packets that fit come here: no ICMP is made from these parameters.
        let params = EncapParams {
            path_mtu: self.wans[w].path_mtu,
            ip_id: 0,
            icmp_source: icmp_source(self.wans[w].local, &[]),
            icmp_source_v6: self.icmpv6_source.unwrap_or(Ipv6Addr::UNSPECIFIED),
        };
        let Some(inst) = self.sas.outbound_mut(sa) else {
            self.counters.no_sa += k as u64;
            return;
        };
        let tx = match udp_peer {
            Some(_) => &mut self.tx_udp[w],
            None => &mut self.tx_raw[w],
        };
        let first = tx.len();
        for _ in 0..k {
            tx.push_empty();
        }
        let start = tx.headroom();
        let mut results: [Option<EncapOutcome>; ENCAP_BATCH] = [None; ENCAP_BATCH];
        {
            let mut jobs: [EncapJob<'_>; ENCAP_BATCH] =
                std::array::from_fn(|_| EncapJob::new(&[], &mut [], 0));
            for ((job, &pkt), slot) in jobs.iter_mut().zip(group).zip(tx.slots_mut(first, k)) {
                self.ip_id = self.ip_id.wrapping_add(1);
                *job = EncapJob::new(pkt, &mut slot[start..], self.ip_id);
            }
            inst.sa
                .encap_batch(now, &mut jobs[..k], &params, &mut self.rng);
            for (r, job) in results.iter_mut().zip(&jobs[..k]) {
                *r = job.result.ok();
            }
        }
        let mut failed = false;
        for (t, result) in results.iter().take(k).enumerate() {
            let slot = first + t;
            match result {
                Some(EncapOutcome::Send(o)) | Some(EncapOutcome::Fragment(o))
                    if udp_peer.is_some() =>
                {
                    // Over UDP the kernel fragments (IP_PMTUDISC_DONT) if it must.
                    let r = o.socket_payload();
                    tx.set_bounds(slot, start + r.start, r.len());
                    tx.set_addr(slot, udp_peer);
                }
                Some(EncapOutcome::Send(o)) => tx.set_bounds(slot, start, o.len),
                _ => {
                    // Only packets that fit the path come here, so anything else is an error
                    // (expired SA, sequence space exhausted, malformed cleartext).
                    self.counters.encap_errors += 1;
                    tx.set_bounds(slot, start, 0);
                    failed = true;
                }
            }
        }
        if failed {
            tx.retain(|p, _| !p.is_empty());
        }
    }

    pub(super) fn encap_one(&mut self, now: Instant, sa: SaHandle, pkt: &[u8]) {
        let Some(inst) = self.sas.outbound_mut(sa) else {
            self.counters.no_sa += 1;
            return;
        };
        let local = inst.sa.local();
        let Some(w) = self.wans.iter().position(|w| w.local == local) else {
            self.counters.encap_errors += 1;
            return;
        };
        let v6 = inst.sa.peer().is_ipv6();
        let (udp_peer, tx) = match inst.sa.encapsulation() {
            SaEncapsulation::Udp { peer_port, .. } => (
                Some(SocketAddr::new(inst.sa.peer(), peer_port)),
                &mut self.tx_udp[w],
            ),
            SaEncapsulation::Raw => (None, &mut self.tx_raw[w]),
        };
        if tx.is_full() {
            // Flush what is queued before taking more (keeps per-SA order).
            self.flush_wan();
            return self.encap_one(now, sa, pkt);
        }
        self.ip_id = self.ip_id.wrapping_add(1);
        let params = EncapParams {
            path_mtu: self.wans[w].path_mtu,
            ip_id: self.ip_id,
            icmp_source: icmp_source(self.wans[w].local, pkt),
            icmp_source_v6: icmpv6_source(self.icmpv6_source, pkt),
        };
        let Some(slot) = tx.push_empty() else {
            self.counters.send_errors += 1;
            return;
        };
        let (buf, start, _) = tx.slot_buf_mut(slot);
        let out = &mut buf[start..];
        match inst.sa.encap(now, pkt, &params, &mut self.rng, out) {
            Ok(EncapOutcome::Send(o)) => {
                // Raw: the whole packet, IPv4 or IPv6, for an `IPPROTO_RAW` socket.
                let r = if udp_peer.is_some() {
                    o.socket_payload()
                } else {
                    0..o.len
                };
                tx.set_bounds(slot, start + r.start, r.len());
                tx.set_addr(slot, udp_peer);
            }
            Ok(EncapOutcome::Fragment(o)) => {
                if udp_peer.is_some() {
                    // The UDP socket runs with IP_PMTUDISC_DONT: the kernel fragments it.
                    let r = o.socket_payload();
                    tx.set_bounds(slot, start + r.start, r.len());
                    tx.set_addr(slot, udp_peer);
                } else {
                    // Raw sockets (IP_HDRINCL, IPV6_HDRINCL) do not fragment for us.
                    self.fragment_last(w, slot, start, o.len, params.path_mtu, v6);
                }
            }
            Ok(
                outcome @ (EncapOutcome::IcmpFragNeeded { len, .. }
                | EncapOutcome::IcmpPacketTooBig { len, .. }),
            ) => {
                if matches!(outcome, EncapOutcome::IcmpPacketTooBig { .. }) {
                    self.counters.icmpv6_too_big += 1;
                } else {
                    self.counters.icmp_frag_needed += 1;
                }
                let (buf, start, _) = tx.slot_buf_mut(slot);
                let icmp = &buf[start..start + len];
                let sent = match &self.clear {
                    Some(ClearFd::Tun(fd)) => fd.get_ref().send(icmp).is_ok(),
                    Some(ClearFd::Memory(fd)) => fd.get_ref().send(icmp).is_ok(),
                    None => false,
                };
                if !sent {
                    self.counters.send_errors += 1;
                }
                tx.pop();
            }
            Err(_) => {
                self.counters.encap_errors += 1;
                tx.pop();
            }
        }
    }

    /// Replaces the last raw packet (too large for the path, and one the sender may not be
    /// refused: IPv4 inside without DF, or IPv6 inside of at most 1280 bytes) by its
    /// fragments. Over IPv4 as RFC 791 §3.2 does it. Over IPv6 the tunnel endpoint is the outer
    /// packet's source and fragments it (RFC 8200 §5: "the tunnel entry-point [...] may
    /// fragment"; §4.5), with a random Identification per packet (RFC 7739 §5.1). Cutting an
    /// IPv4 inner packet instead (RFC 4459 §3) would spare the peer a reassembly, but an IPv6
    /// inner packet may not be cut on the way, so both families take the one outer path, the
    /// same on either outer family; the peer's kernel reassembles before its raw socket sees
    /// the ESP (or AH) packet.
    fn fragment_last(
        &mut self,
        w: usize,
        slot: usize,
        start: usize,
        len: usize,
        mtu: usize,
        v6: bool,
    ) {
        let mut whole = [0u8; SLOT_SIZE];
        let tx = &mut self.tx_raw[w];
        let (buf, _, _) = tx.slot_buf_mut(slot);
        let copied = buf.get(start..start + len).and_then(|b| {
            whole.get_mut(..len)?.copy_from_slice(b);
            Some(len)
        });
        tx.pop();
        let Some(len) = copied else {
            self.counters.encap_errors += 1;
            return;
        };
        let frags = if v6 {
            let ident = rand::Rng::next_u32(&mut self.rng);
            Ipv6Fragmenter::new(&whole[..len], mtu, ident).map(Frags::V6)
        } else {
            Ipv4Fragmenter::new(&whole[..len], mtu).map(Frags::V4)
        };
        let Ok(mut frags) = frags else {
            self.counters.encap_errors += 1;
            return;
        };
        loop {
            if self.tx_raw[w].is_full() {
                self.flush_wan();
            }
            let tx = &mut self.tx_raw[w];
            let Some(i) = tx.push_empty() else {
                return;
            };
            let (buf, start, _) = tx.slot_buf_mut(i);
            match frags.next_into(&mut buf[start..]) {
                Ok(Some(n)) => tx.set_bounds(i, start, n),
                Ok(None) => {
                    tx.pop();
                    return;
                }
                Err(_) => {
                    tx.pop();
                    self.counters.encap_errors += 1;
                    return;
                }
            }
        }
    }

    pub(super) fn flush_wan(&mut self) {
        let mut dropped = 0u64;
        // Each interface's raw packets through its own sender: it is bound to the interface's
        // `device`, so another interface's sender would put them on the wrong link.
        for (w, tx) in self.tx_raw.iter_mut().enumerate() {
            if tx.is_empty() {
                continue;
            }
            let mut cursor = 0;
            let mut count = |_: usize, _: &std::io::Error| dropped += 1;
            let sent = match (&self.wans[w].raw_tx, &self.wans[w].raw_tx6) {
                (Some(s), _) => io::send_all(s, tx, &mut cursor, &mut count),
                (None, Some(s)) => io::send_all(s, tx, &mut cursor, &mut count),
                (None, None) => Err(std::io::ErrorKind::NotConnected.into()),
            };
            if sent.is_err() {
                dropped += (tx.len() - cursor) as u64;
            }
            tx.clear();
        }
        for (w, tx) in self.tx_udp.iter_mut().enumerate() {
            if tx.is_empty() {
                continue;
            }
            if let Some(sock) = &self.wans[w].udp {
                let mut cursor = 0;
                if io::send_all(sock.get_ref(), tx, &mut cursor, |_, _| dropped += 1).is_err() {
                    dropped += (tx.len() - cursor) as u64;
                }
                let (sends, refused) = sock.get_ref().take_gso_counts();
                self.counters.udp_gso_sends += sends;
                self.counters.udp_gso_refused += refused;
            } else {
                dropped += tx.len() as u64;
            }
            tx.clear();
        }
        self.counters.send_errors += dropped;
    }

    // ---- WAN -> cleartext -------------------------------------------------------------

    /// The shard's running totals of SA drops (the SA counted it already), so the periodic
    /// log summary never walks the SA table.
    pub(super) fn count_drop(&mut self, reason: DropReason) {
        let c = &mut self.counters;
        match reason {
            DropReason::IcvFailure => c.icv_failures += 1,
            DropReason::Replayed => c.replay_drops += 1,
            DropReason::BadPadding | DropReason::BadPadLength => c.padding_errors += 1,
            DropReason::SelectorMismatch => c.selector_mismatches += 1,
            _ => c.malformed += 1,
        }
    }

    /// Queues a decapsulated packet for the cleartext device, flushing when the batch is full.
    pub(super) fn queue_cleartext(&mut self, pkt: &[u8]) {
        if self.tx_clear.push(pkt, None).is_none() {
            self.flush_clear();
            if self.tx_clear.push(pkt, None).is_none() {
                self.counters.send_errors += 1;
            }
        }
    }

    pub(super) fn flush_clear(&mut self) {
        if self.tx_clear.is_empty() {
            return;
        }
        self.counters.send_errors += send_clear(&self.clear, &mut self.tx_clear);
        self.tx_clear.clear();
    }

    /// Writes the packets of `batch` to the cleartext device (coalesced where the device
    /// takes it), skipping empty ones (the dropped packets of a receive batch written back
    /// in place).
    pub(super) fn send_clear(&mut self, batch: &mut PacketBatch) {
        self.counters.send_errors += send_clear(&self.clear, batch);
    }

    // ---- between shards -----------------------------------------------------------------

    /// Asks the IKE router for an SA for the policy covering `src -> dst`, at most once a
    /// second per policy.
    fn acquire(&mut self, src: IpAddr, dst: IpAddr) {
        let Some(recipient) = &self.acquire else {
            return;
        };
        let Some(policy) = self.spd.name_of(src, dst) else {
            return;
        };
        let now = Instant::now();
        if let Some(t) = self.last_acquire.get(policy)
            && now.duration_since(*t) < std::time::Duration::from_secs(1)
        {
            return;
        }
        let policy: Arc<str> = Arc::from(policy);
        self.last_acquire.insert(policy.clone(), now);
        recipient.do_send(crate::messages::Acquire { policy, src, dst });
    }

    pub(super) fn nat_t_port(&self, local: IpAddr) -> u16 {
        self.wans
            .iter()
            .find(|w| w.local == local)
            .map_or(4500, |w| w.nat_t_port)
    }

    fn take_rx(&mut self) -> Option<PacketBatch> {
        self.rx.take()
    }
}

/// The fragmenter of one outer family.
enum Frags<'a> {
    V4(Ipv4Fragmenter<'a>),
    V6(Ipv6Fragmenter<'a>),
}

impl Frags<'_> {
    fn next_into(&mut self, out: &mut [u8]) -> ikehub::wire::Result<Option<usize>> {
        match self {
            Frags::V4(f) => f.next_into(out),
            Frags::V6(f) => f.next_into(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use ikehub::config::{KeyBytes, Mode};
    use ikehub::crypto::{AuthAlgorithm, EncrAlgorithm};
    use ikehub::esp::{AhKeys, EspKeys, LifetimeLimits, SaParams, SecurityAssociation};
    use ikehub::wire::{IpProtocol, Ipv4Repr};

    use super::*;

    const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    fn params(encryption: EncrAlgorithm, authentication: AuthAlgorithm) -> SaParams {
        SaParams {
            direction: ikehub::esp::Direction::Outbound,
            mode: Mode::Tunnel,
            esp: Some(EspKeys {
                spi: 0x1000,
                encryption,
                encryption_key: KeyBytes(vec![7; encryption.keymat_len()]),
                authentication,
                authentication_key: KeyBytes(vec![9; authentication.key_len()]),
            }),
            ah: None,
            local: IpAddr::V4(LOCAL),
            peer: IpAddr::V4(PEER),
            encapsulation: SaEncapsulation::Raw,
            replay_window: 64,
            lifetime: LifetimeLimits::UNLIMITED,
            protected_networks: vec![],
        }
    }

    fn outbound(
        encryption: EncrAlgorithm,
        authentication: AuthAlgorithm,
        ah: bool,
        encapsulation: SaEncapsulation,
    ) -> SecurityAssociation {
        let params = SaParams {
            ah: ah.then(|| AhKeys {
                spi: 0x1001,
                authentication: AuthAlgorithm::HmacSha1,
                authentication_key: KeyBytes(vec![5; 20]),
            }),
            encapsulation,
            ..params(encryption, authentication)
        };
        SecurityAssociation::new(params, Instant::now()).unwrap()
    }

    /// The raw AES-CBC-128/HMAC-SHA1 outbound SA of the shard test.
    fn outbound_sa() -> SecurityAssociation {
        outbound(
            EncrAlgorithm::AesCbc128,
            AuthAlgorithm::HmacSha1,
            false,
            SaEncapsulation::Raw,
        )
    }

    /// A cleartext IPv4 packet of `len` bytes with DF set (so one that does not fit yields
    /// an ICMP fragmentation-needed, never a fragment).
    fn cleartext(len: usize) -> Vec<u8> {
        let mut p = vec![0xa5; len];
        Ipv4Repr::new(
            Ipv4Addr::new(198, 51, 100, 1),
            Ipv4Addr::new(203, 0, 113, 1),
            IpProtocol::UDP,
            len - 20,
        )
        .emit(&mut p)
        .unwrap();
        p[6] |= 0x40;
        p
    }

    const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 0xfe);
    const FAR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 1);

    /// A cleartext IPv6 UDP packet of `len` bytes from 2001:db8:a::1 to [`FAR6`].
    fn cleartext6(len: usize) -> Vec<u8> {
        let mut p = vec![0xa5; len];
        ikehub::wire::Ipv6Repr::new(
            Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 1),
            FAR6,
            IpProtocol::UDP,
            len - 40,
        )
        .emit(&mut p)
        .unwrap();
        p
    }

    /// Issue 11: the cleartext path dispatches on the version nibble and reads IPv6 through
    /// the checked view; anything else, or a header or length that does not hold, is `None`
    /// (counted as `not_ip`). The old code read every packet as IPv4, so an IPv6 packet was
    /// "not IPv4" and never reached the SPD.
    /// A shard with one interface at `local` and send queues for it, as `EspShard::started`
    /// sets them up for an interface with a raw sender (no sockets: the tests read the queues).
    fn one_wan_shard(local: IpAddr, path_mtu: usize) -> EspShard {
        use super::super::{ShardIo, Wan};

        let mut shard = EspShard::new(
            0,
            1,
            ShardIo {
                cleartext: None,
                icmpv6_source: None,
                wans: vec![],
            },
        );
        shard.wans.push(Wan {
            local,
            nat_t_port: 4500,
            path_mtu,
            udp: None,
            raw_esp: None,
            raw_ah: None,
            raw_tx: None,
            raw_tx6: None,
        });
        shard.tx_udp.push(PacketBatch::new(8, 2048, 0));
        shard.tx_raw.push(PacketBatch::new(8, SLOT_SIZE, 0));
        shard
    }

    #[test]
    fn cleartext_addresses_take_ipv4_and_ipv6_by_version() {
        use ikehub::wire::Ipv6Repr;
        let v4 = cleartext(60);
        assert_eq!(
            cleartext_addresses(&v4),
            Some((
                IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
                IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1))
            ))
        );
        let (src, dst): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8:a::1".parse().unwrap(),
            "2001:db8:b::1".parse().unwrap(),
        );
        let mut v6 = vec![0u8; 40 + 16];
        Ipv6Repr::new(src, dst, IpProtocol::UDP, 16)
            .emit(&mut v6)
            .unwrap();
        assert_eq!(
            cleartext_addresses(&v6),
            Some((IpAddr::V6(src), IpAddr::V6(dst)))
        );
        // Every truncation of either is refused, never a panic.
        for p in [&v4, &v6] {
            for len in 0..p.len() {
                assert_eq!(cleartext_addresses(&p[..len]), None, "{len} bytes");
            }
        }
        // A payload length past the buffer, and versions that are neither 4 nor 6.
        let mut long = v6.clone();
        long[4..6].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(cleartext_addresses(&long), None);
        for version in [0u8, 5, 7, 15] {
            let mut other = v6.clone();
            other[0] = (version << 4) | (other[0] & 0x0f);
            assert_eq!(cleartext_addresses(&other), None, "version {version}");
        }
    }

    /// Issue 12 (relay CPU): with a 1400-byte tunnel MTU on a 1500-byte path, full-size
    /// packets of the common suites fit, so they take the batched (stitched) encryption; the
    /// old fixed margin of 113 bytes sent every one of them through `encap_one`. The bound is
    /// exact for every suite: the limit fits the path, one byte more does not. Issue 11: the
    /// same for IPv6 packets (which took the one-by-one path before), whose packet one byte
    /// too large gets an ICMPv6 Packet Too Big announcing exactly the limit, or, where the
    /// path cannot carry the IPv6 minimum inside, outer fragments (RFC 8200 §5).
    #[test]
    fn batch_limit_is_the_exact_largest_packet_that_fits() {
        let udp = SaEncapsulation::Udp {
            local_port: 4500,
            peer_port: 4500,
        };
        let raw = SaEncapsulation::Raw;
        use AuthAlgorithm::{HmacSha1, HmacSha256};
        use EncrAlgorithm::{AesCbc128, AesCbc256, AesGcm128};
        let cases = [
            (AesCbc128, HmacSha1, false, udp),
            (AesCbc128, HmacSha1, false, raw),
            (AesGcm128, AuthAlgorithm::None, false, udp),
            (AesGcm128, AuthAlgorithm::None, false, raw),
            (AesCbc256, HmacSha256, true, raw),
        ];
        for (enc, auth, ah, encap) in cases {
            for path_mtu in [1500, 1400, 576] {
                let mut sa = outbound(enc, auth, ah, encap);
                let limits = batch_limit(&sa, path_mtu);
                // Tunnel mode: the inner header is payload, so both families fit alike.
                assert_eq!(limits.v4, limits.v6, "{enc:?} {path_mtu}");
                let limit = limits.v4;
                assert!(
                    limit > 100 && limit < path_mtu,
                    "{enc:?} {path_mtu}: {limit}"
                );
                if path_mtu == 1500 {
                    for p in [cleartext(1400), cleartext6(1400)] {
                        assert!(
                            fits_batch(&p, limits),
                            "{enc:?}/{auth:?} ah={ah} {encap:?}: limit {limit}"
                        );
                    }
                }
                if path_mtu == 1400 {
                    assert!(!fits_batch(&cleartext(1400), limits));
                    assert!(!fits_batch(&cleartext6(1400), limits));
                }
                let mut rng = rand::make_rng::<rand::rngs::StdRng>();
                let params = |ip_id| EncapParams {
                    path_mtu,
                    ip_id,
                    icmp_source: LOCAL,
                    icmp_source_v6: GATEWAY6,
                };
                let mut out = [0u8; 2048];
                let fits = sa.encap(
                    Instant::now(),
                    &cleartext(limit),
                    &params(1),
                    &mut rng,
                    &mut out,
                );
                assert!(
                    matches!(fits, Ok(EncapOutcome::Send(o)) if o.len <= path_mtu),
                    "{enc:?} {path_mtu}: {limit} bytes: {fits:?}"
                );
                let over = sa.encap(
                    Instant::now(),
                    &cleartext(limit + 1),
                    &params(2),
                    &mut rng,
                    &mut out,
                );
                assert!(
                    matches!(over, Ok(EncapOutcome::IcmpFragNeeded { .. })),
                    "{enc:?} {path_mtu}: {} bytes: {over:?}",
                    limit + 1
                );
                let fits = sa.encap(
                    Instant::now(),
                    &cleartext6(limit),
                    &params(3),
                    &mut rng,
                    &mut out,
                );
                assert!(
                    matches!(fits, Ok(EncapOutcome::Send(o)) if o.len <= path_mtu),
                    "IPv6 {enc:?} {path_mtu}: {limit} bytes: {fits:?}"
                );
                let over = sa.encap(
                    Instant::now(),
                    &cleartext6(limit + 1),
                    &params(4),
                    &mut rng,
                    &mut out,
                );
                if limit >= ikehub::wire::ipv6::MIN_MTU {
                    assert!(
                        matches!(over, Ok(EncapOutcome::IcmpPacketTooBig { mtu, .. }) if mtu as usize == limit),
                        "IPv6 {enc:?} {path_mtu}: {} bytes: {over:?}",
                        limit + 1
                    );
                } else {
                    assert!(
                        matches!(over, Ok(EncapOutcome::Fragment(_))),
                        "IPv6 {enc:?} {path_mtu}: {} bytes: {over:?}",
                        limit + 1
                    );
                }
            }
        }
        // Options in the inner header: never batched (transport mode pads by them).
        let mut opts = cleartext(200);
        opts[0] = 0x46;
        assert!(!fits_batch(&opts, BatchLimit { v4: 1000, v6: 1000 }));
        // Neither IPv4 nor IPv6: never batched.
        let mut other = cleartext6(200);
        other[0] = 0x50;
        assert!(!fits_batch(&other, BatchLimit { v4: 1000, v6: 1000 }));
    }

    /// Issue 11, the cleartext path end to end in one shard: an IPv6 packet of a policy's
    /// networks is encrypted (batched) and decrypts back to itself; one outside every policy
    /// is `no_policy`, one of a policy without an SA is `no_sa`; neither IPv4 nor IPv6, and a
    /// truncated IPv6 header, are `not_ip`; an IPv6 packet too big for the path is answered
    /// with an ICMPv6 Packet Too Big written into the cleartext side, from the configured
    /// IPv6 source to the sender, counted as `icmpv6_too_big`. The old code counted every
    /// IPv6 packet as not IPv4 and never looked it up.
    #[test]
    fn ipv6_cleartext_is_classified_encrypted_and_answered_when_too_big() {
        use std::rc::Rc;

        use ikehub::config::{NetworkSpec, ProtectedNetwork};
        use ikehub::esp::{Direction, Received};

        use super::super::SaKind;
        use crate::io::{self, MemoryPort};

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let _reactor = rt.enter();
        let (port, lan) = MemoryPort::pair().unwrap();
        let mut shard = one_wan_shard(LOCAL.into(), 1400);
        shard.clear = Some(ClearFd::Memory(Rc::new(io::register(port).unwrap())));
        shard.icmpv6_source = Some(GATEWAY6);
        let pn = |l: &str, r: &str| ProtectedNetwork {
            local: l.parse::<NetworkSpec>().unwrap(),
            remote: r.parse::<NetworkSpec>().unwrap(),
        };
        let h = SaHandle::issue();
        shard
            .sas
            .install(h, "P".into(), SaKind::Manual, outbound_sa())
            .unwrap();
        shard.spd.install(
            "P".into(),
            &[pn("2001:db8:a::/48", "2001:db8:b::/48")],
            Some(h),
        );
        shard.spd.install(
            "Q".into(),
            &[pn("2001:db8:a::/48", "2001:db8:d::/48")],
            None,
        );

        let to = |dst: Ipv6Addr, len: usize| {
            let mut p = cleartext6(len);
            p[24..40].copy_from_slice(&dst.octets());
            p
        };
        let fits = cleartext6(200);
        let too_big = cleartext6(1388);
        let nowhere = to(Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 1), 100);
        let waiting = to(Ipv6Addr::new(0x2001, 0xdb8, 0xd, 0, 0, 0, 0, 1), 100);
        let mut version5 = cleartext6(100);
        version5[0] = 0x50;
        let truncated = cleartext6(100)[..39].to_vec();
        let mut rx = PacketBatch::new(MAX_RX, 2048, 128);
        for p in [&fits, &nowhere, &waiting, &version5, &truncated, &too_big] {
            rx.push(p, None).unwrap();
        }
        shard.encap_received(Instant::now(), &rx);

        let c = &shard.counters;
        assert_eq!(
            (
                c.cleartext_in,
                c.no_policy,
                c.no_sa,
                c.not_ip,
                c.icmpv6_too_big
            ),
            (6, 1, 1, 2, 1),
            "{c:?}"
        );
        assert_eq!((c.encap_errors, c.icmp_frag_needed), (0, 0), "{c:?}");
        // The one that fits left as raw ESP and decrypts back to itself.
        assert_eq!(shard.tx_raw[0].len(), 1);
        let mut wire = shard.tx_raw[0].packet(0).to_vec();
        let mut inbound = SecurityAssociation::new(
            SaParams {
                direction: Direction::Inbound,
                local: IpAddr::V4(PEER),
                peer: IpAddr::V4(LOCAL),
                ..params(EncrAlgorithm::AesCbc128, AuthAlgorithm::HmacSha1)
            },
            Instant::now(),
        )
        .unwrap();
        let d = inbound
            .decap(Instant::now(), &mut wire, Received::Ip)
            .unwrap();
        assert_eq!(&wire[d.inner], &fits[..]);
        // The Packet Too Big went back into the cleartext side (RFC 4443 §3.2).
        let mut got = [0u8; 2048];
        let n = lan
            .recv(&mut got)
            .expect("a Packet Too Big on the LAN side");
        let ptb = Ipv6Packet::new_checked(&got[..n]).unwrap();
        assert_eq!(ptb.next_header(), IpProtocol::ICMPV6);
        assert_eq!(ptb.src_addr(), GATEWAY6);
        assert_eq!(
            &ptb.dst_addr().octets()[..],
            &too_big[8..24],
            "to the sender"
        );
        let icmp = ptb.payload();
        assert_eq!(icmp[0], 2, "type Packet Too Big");
        let mtu = u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]) as usize;
        assert_eq!(mtu, batch_limit(&outbound_sa(), 1400).v6);
        assert!(lan.recv(&mut got).is_err(), "nothing else on the LAN side");
    }

    /// Issue 11 (outer fragmentation over IPv6): on an IPv6 WAN of 1280 bytes, raw ESP that
    /// does not fit is cut by the shard as the outer packet's source (RFC 8200 §4.5) when the
    /// sender may not be refused: an IPv4 packet without DF, and an IPv6 packet of 1280 bytes
    /// (no Packet Too Big may announce less, RFC 8200 §5). Every fragment fits, and the
    /// reassembled packets decrypt to the originals. The old shard dropped both and counted
    /// them as `encap_errors`.
    #[test]
    fn raw_esp_over_ipv6_is_fragmented_by_the_source() {
        use std::collections::BTreeMap;

        use ikehub::config::{NetworkSpec, ProtectedNetwork};
        use ikehub::esp::{Direction, Received};
        use ikehub::wire::Ipv6FragmentRepr;

        use super::super::SaKind;

        const MTU: usize = 1280;
        let local6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1));
        let peer6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2));
        let mut shard = one_wan_shard(local6, MTU);
        let sa = SecurityAssociation::new(
            SaParams {
                local: local6,
                peer: peer6,
                ..params(EncrAlgorithm::AesCbc128, AuthAlgorithm::HmacSha1)
            },
            Instant::now(),
        )
        .unwrap();
        let h = SaHandle::issue();
        shard
            .sas
            .install(h, "P".into(), SaKind::Manual, sa)
            .unwrap();
        let pn = |l: &str, r: &str| ProtectedNetwork {
            local: l.parse::<NetworkSpec>().unwrap(),
            remote: r.parse::<NetworkSpec>().unwrap(),
        };
        shard.spd.install(
            "P".into(),
            &[
                pn("198.51.100.0/24", "203.0.113.0/24"),
                pn("2001:db8:a::/48", "2001:db8:b::/48"),
            ],
            Some(h),
        );
        let mut v4 = cleartext(1400);
        v4[6] &= !0x40;
        Ipv4Packet::new_unchecked(&mut v4[..]).fill_checksum();
        let v6 = cleartext6(ikehub::wire::ipv6::MIN_MTU);
        let mut rx = PacketBatch::new(MAX_RX, 2048, 128);
        for p in [&v4, &v6] {
            rx.push(p, None).unwrap();
        }
        shard.encap_received(Instant::now(), &rx);
        let c = &shard.counters;
        assert_eq!(
            (c.encap_errors, c.icmp_frag_needed, c.icmpv6_too_big),
            (0, 0, 0),
            "{c:?}"
        );

        // Reassemble by Identification (RFC 8200 §4.5), checking each fragment on the way.
        let mut by_ident: BTreeMap<u32, (Vec<u8>, Vec<u8>)> = BTreeMap::new();
        for i in 0..shard.tx_raw[0].len() {
            let f = shard.tx_raw[0].packet(i);
            assert!(f.len() <= MTU, "a fragment of {} bytes", f.len());
            let p = Ipv6Packet::new_checked(f).unwrap();
            assert_eq!(p.next_header(), IpProtocol::IPV6_FRAG);
            let fh = Ipv6FragmentRepr::parse(p.payload()).unwrap();
            let (header, data) = by_ident.entry(fh.ident).or_default();
            assert_eq!(usize::from(fh.frag_offset), data.len(), "in order");
            if header.is_empty() {
                header.extend_from_slice(&f[..40]);
                header[6] = fh.next_header.0;
            }
            data.extend_from_slice(&p.payload()[8..]);
        }
        assert_eq!(by_ident.len(), 2, "one Identification per packet");
        let mut inbound = SecurityAssociation::new(
            SaParams {
                direction: Direction::Inbound,
                local: peer6,
                peer: local6,
                ..params(EncrAlgorithm::AesCbc128, AuthAlgorithm::HmacSha1)
            },
            Instant::now(),
        )
        .unwrap();
        let mut inner = Vec::new();
        for (header, data) in by_ident.into_values() {
            let mut wire = header;
            wire[4..6].copy_from_slice(&(data.len() as u16).to_be_bytes());
            wire.extend_from_slice(&data);
            let d = inbound
                .decap(Instant::now(), &mut wire, Received::Ip)
                .unwrap();
            inner.push(wire[d.inner].to_vec());
        }
        inner.sort_by_key(|p| p[0] >> 4);
        assert_eq!(inner, [v4, v6]);
    }

    /// The source of a Packet Too Big: the configured IPv6 source-address, else the
    /// destination of the packet that did not fit.
    #[test]
    fn packet_too_big_source_is_the_configured_address_or_the_far_end() {
        let p = cleartext6(1400);
        assert_eq!(icmpv6_source(Some(GATEWAY6), &p), GATEWAY6);
        assert_eq!(icmpv6_source(None, &p), FAR6);
        assert_eq!(icmpv6_source(None, &p[..20]), Ipv6Addr::UNSPECIFIED);
    }
}

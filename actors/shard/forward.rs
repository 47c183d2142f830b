//! The shard's hot path: drain a readable descriptor in batches, encapsulate or decapsulate in
//! place, and send the results in batches. No allocation, lock, log line or actor message per
//! packet; drops are counted (on the SA when one is known, else on the shard).

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use ikehub::esp::{DropReason, EncapJob, EncapOutcome, EncapParams, SaEncapsulation};
use ikehub::wire::{Ipv4Fragmenter, Ipv4Packet};

use super::{ClearFd, EspShard, HandoffMeta, MAX_RX, SaHandle};
use crate::io::{self, PacketBatch};

/// Packets of one SA encrypted together: AES-CBC is serial within a packet, so the batch path
/// interleaves the blocks of several packets; 32 keeps every AES unit busy with room to spare
/// and bounds the per-SA job array on the stack.
const ENCAP_BATCH: usize = 32;
/// An upper bound of what encapsulation adds (outer IPv4 + UDP + AH + ESP header, IV,
/// padding, ICVs): a cleartext packet within `path MTU - MAX_OVERHEAD` always fits.
const MAX_OVERHEAD: usize = 20 + 8 + 28 + 8 + 16 + 17 + 16;

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
        for (i, sa) in sas.iter_mut().enumerate().take(n) {
            let pkt = rx.packet(i);
            if let Some((h, w)) = self.classify(pkt) {
                *sa = Some(h);
                slow[i] = pkt.len() + MAX_OVERHEAD > self.wans[w].path_mtu;
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
            let mut group = [0usize; ENCAP_BATCH];
            let mut k = 0;
            for j in i..n {
                if done[j] || sas[j] != Some(sa) {
                    continue;
                }
                if slow[j] || k == ENCAP_BATCH {
                    break;
                }
                group[k] = j;
                k += 1;
                done[j] = true;
            }
            self.encap_group(now, sa, rx, &group[..k]);
        }
    }

    /// Looks up the SPD entry of a cleartext packet. Returns its outbound SA's handle and the
    /// WAN index when this shard encapsulates it; counts and drops it, or queues it for the
    /// shard that holds the SA.
    fn classify(&mut self, pkt: &[u8]) -> Option<(SaHandle, usize)> {
        self.counters.cleartext_in += 1;
        let Ok(ip) = Ipv4Packet::new_checked(pkt) else {
            self.counters.not_ipv4 += 1;
            return None;
        };
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
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

    fn encap_group(&mut self, now: Instant, sa: SaHandle, rx: &PacketBatch, group: &[usize]) {
        let k = group.len();
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
                Some(SocketAddr::V4(SocketAddrV4::new(inst.sa.peer(), peer_port)))
            }
            SaEncapsulation::Raw => None,
        };
        let needs_flush = match udp_peer {
            Some(_) => self.tx_udp[w].free_slots() < k,
            None => self.tx_raw.free_slots() < k,
        };
        if needs_flush {
            self.flush_wan();
        }
        let path_mtu = self.wans[w].path_mtu;
        let Some(inst) = self.sas.outbound_mut(sa) else {
            self.counters.no_sa += k as u64;
            return;
        };
        let tx = match udp_peer {
            Some(_) => &mut self.tx_udp[w],
            None => &mut self.tx_raw,
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
            for ((job, &i), slot) in jobs.iter_mut().zip(group).zip(tx.slots_mut(first, k)) {
                self.ip_id = self.ip_id.wrapping_add(1);
                *job = EncapJob::new(rx.packet(i), &mut slot[start..], self.ip_id);
            }
            inst.sa
                .encap_batch(now, &mut jobs[..k], path_mtu, local, &mut self.rng);
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
        let (udp_peer, tx) = match inst.sa.encapsulation() {
            SaEncapsulation::Udp { peer_port, .. } => (
                Some(SocketAddr::V4(SocketAddrV4::new(inst.sa.peer(), peer_port))),
                &mut self.tx_udp[w],
            ),
            SaEncapsulation::Raw => (None, &mut self.tx_raw),
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
            icmp_source: local,
        };
        let Some(slot) = tx.push_empty() else {
            self.counters.send_errors += 1;
            return;
        };
        let (buf, start, _) = tx.slot_buf_mut(slot);
        let out = &mut buf[start..];
        match inst.sa.encap(now, pkt, &params, &mut self.rng, out) {
            Ok(EncapOutcome::Send(o)) => {
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
                    self.fragment_last(slot, start, o.len, params.path_mtu);
                }
            }
            Ok(EncapOutcome::IcmpFragNeeded { len, .. }) => {
                self.counters.icmp_frag_needed += 1;
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

    /// Replaces the last raw packet (too large for the path, DF clear) by its fragments: raw
    /// IP_HDRINCL sockets do not fragment for us.
    fn fragment_last(&mut self, slot: usize, start: usize, len: usize, mtu: usize) {
        let (buf, _, _) = self.tx_raw.slot_buf_mut(slot);
        let mut whole = [0u8; 2048];
        whole[..len].copy_from_slice(&buf[start..start + len]);
        self.tx_raw.pop();
        let Ok(mut frags) = Ipv4Fragmenter::new(&whole[..len], mtu) else {
            self.counters.encap_errors += 1;
            return;
        };
        loop {
            if self.tx_raw.is_full() {
                self.flush_wan();
            }
            let Some(i) = self.tx_raw.push_empty() else {
                return;
            };
            let (buf, start, _) = self.tx_raw.slot_buf_mut(i);
            match frags.next_into(&mut buf[start..]) {
                Ok(Some(n)) => self.tx_raw.set_bounds(i, start, n),
                Ok(None) => {
                    self.tx_raw.pop();
                    return;
                }
                Err(_) => {
                    self.tx_raw.pop();
                    self.counters.encap_errors += 1;
                    return;
                }
            }
        }
    }

    pub(super) fn flush_wan(&mut self) {
        let mut dropped = 0u64;
        if !self.tx_raw.is_empty() {
            if let Some(tx) = self.wans.iter().find_map(|w| w.raw_tx.as_ref()) {
                let mut cursor = 0;
                if io::send_all(tx, &mut self.tx_raw, &mut cursor, |_, _| dropped += 1).is_err() {
                    dropped += (self.tx_raw.len() - cursor) as u64;
                }
            } else {
                dropped += self.tx_raw.len() as u64;
            }
            self.tx_raw.clear();
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
        let mut failed = 0;
        match &self.clear {
            Some(ClearFd::Tun(fd)) => failed = fd.get_ref().send_coalesced(&mut self.tx_clear),
            Some(ClearFd::Memory(fd)) => {
                for i in 0..self.tx_clear.len() {
                    if fd.get_ref().send(self.tx_clear.packet(i)).is_err() {
                        failed += 1;
                    }
                }
            }
            None => failed = self.tx_clear.len() as u64,
        }
        self.counters.send_errors += failed;
        self.tx_clear.clear();
    }

    // ---- between shards -----------------------------------------------------------------

    /// Asks the IKE router for an SA for the policy covering `src -> dst`, at most once a
    /// second per policy.
    fn acquire(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
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

    pub(super) fn nat_t_port(&self, local: Ipv4Addr) -> u16 {
        self.wans
            .iter()
            .find(|w| w.local == local)
            .map_or(4500, |w| w.nat_t_port)
    }

    fn take_rx(&mut self) -> Option<PacketBatch> {
        self.rx.take()
    }
}

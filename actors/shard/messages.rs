//! Messages into an EspShard. SAs and policies change only through these, naming SAs by the
//! handles the daemon issued; packets cross shards only in batches ([`Handoff`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix::prelude::*;
use ikehub::config::ProtectedNetwork;
use ikehub::esp::SecurityAssociation;

use super::{HandoffBatch, SaHandle, SpdEntry};
use crate::control::protocol::SaStatus;
use crate::io::OffloadStats;

/// How an SA was keyed (the TYPE column of `show sa`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaKind {
    Manual,
    Isakmp,
}

impl SaKind {
    pub fn label(self) -> &'static str {
        match self {
            SaKind::Manual => "MANUAL",
            SaKind::Isakmp => "ISAKMP",
        }
    }
}

/// Installs an SA under a handle the daemon issued ([`SaHandle::issue`](super::SaHandle::issue)), on the shard that
/// owns it: an outbound SA on its handle's shard ([`SaPair::outbound_shard`](super::SaPair::outbound_shard)), an inbound one
/// on its SPI's ([`SaPair::inbound_shard`](super::SaPair::inbound_shard)). The same handle again replaces its SA; an inbound
/// SPI another handle holds is refused (and logged).
#[derive(Message)]
#[rtype(result = "()")]
pub struct InstallSa {
    pub handle: SaHandle,
    pub policy: Arc<str>,
    pub kind: SaKind,
    pub sa: Box<SecurityAssociation>,
}

/// Removes the SA of a handle; its final counters are returned.
#[derive(Message)]
#[rtype(result = "Option<SaStatus>")]
pub struct RemoveSa {
    pub handle: SaHandle,
}

/// The configured entries of a policy (its profile's protected networks), sent to every shard:
/// each points at `outbound` (a manual policy's SA), or waits for a child SA (`None`: an IKE
/// policy, whose cleartext then triggers an Acquire). Replaces the policy's configured entries.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InstallPolicy {
    pub policy: Arc<str>,
    pub protected_networks: Vec<ProtectedNetwork>,
    pub outbound: Option<SaHandle>,
}

/// Points the SPD entry of a child's selectors at its outbound SA (adding the entry if the
/// profile does not configure it). Sent to every shard when a child SA pair is installed or
/// replaces another (re-key), before the SA it replaces is removed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetPolicySa {
    pub entry: SpdEntry,
    pub outbound: SaHandle,
}

/// The outbound SA `outbound` is about to be removed: the policy's entries pointing at it
/// return to "no SA yet" when configured, and go otherwise. Sent to every shard.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DetachSa {
    pub policy: Arc<str>,
    pub outbound: SaHandle,
}

/// Removes every SPD entry of a policy. Sent to every shard.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemovePolicy {
    pub policy: Arc<str>,
}

/// Usage of an inbound SA, for dead peer detection (traffic means the peer is alive) and the
/// kilobyte soft lifetime (the IKE session re-keys). `None` when the SA is not here.
#[derive(Message)]
#[rtype(result = "Option<SaUsage>")]
pub struct GetSaUsage {
    pub inbound: SaHandle,
}

#[derive(Clone, Copy, Debug)]
pub struct SaUsage {
    pub packets: u64,
    /// 90% of the kilobyte limit is used (the soft limit, as for seconds in the session).
    pub soft_expired: bool,
}

/// A NATed peer moved to another UDP port: its UDP-encapsulated outbound SA sends there now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetPeerPort {
    pub outbound: SaHandle,
    pub port: u16,
}

/// The SA table rows of this shard.
#[derive(Message)]
#[rtype(result = "ShardReport")]
pub struct Report;

/// Per-shard counters of packets that never reached an SA.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ShardCounters {
    pub cleartext_in: u64,
    pub no_policy: u64,
    pub no_sa: u64,
    pub unknown_spi: u64,
    /// Cleartext from the tunnel device that is neither a well-formed IPv4 nor a well-formed
    /// IPv6 packet (version nibble, header or length wrong). Called `not_ipv4` before IPv6
    /// (issue 11); a report under the old name still reads.
    #[serde(alias = "not_ipv4")]
    pub not_ip: u64,
    pub icmp_frag_needed: u64,
    /// ICMPv6 Packet Too Big written back into the tunnel device (RFC 4443 §3.2): an IPv6
    /// packet that no longer fits the path once encapsulated (IPv6 routers never fragment,
    /// RFC 8200 §5).
    #[serde(default)]
    pub icmpv6_too_big: u64,
    pub encap_errors: u64,
    pub send_errors: u64,
    pub handed_over: u64,
    pub ike_datagrams: u64,
    /// IKE datagrams on the NAT-T port dropped because the router's mailbox was full.
    pub ike_dropped: u64,
    pub keepalives: u64,
    /// Runs of ESP-in-UDP datagrams that left as one UDP GSO send.
    #[serde(default)]
    pub udp_gso_sends: u64,
    /// GSO sends the kernel refused (the datagrams then went out one by one).
    #[serde(default)]
    pub udp_gso_refused: u64,
    /// Packets for another shard dropped because that shard had
    /// [`MAX_HANDOFF_BYTES_IN_FLIGHT`](super::MAX_HANDOFF_BYTES_IN_FLIGHT) bytes from this one
    /// not yet processed (it is behind: queueing more would only grow memory and latency), or
    /// because the shards did not know each other yet (right after start).
    #[serde(default)]
    pub handoff_dropped: u64,
    /// Datagrams the kernel dropped at this shard's WAN sockets (NAT-T UDP, raw ESP, raw AH)
    /// because their receive buffer was full: the shard did not read them in time. Read from
    /// the sockets (`SO_MEMINFO`) when a report is made.
    #[serde(default)]
    pub wan_socket_drops: u64,
    /// Reads from the TUN queue dropped by the offload path (the Linux virtio-net header
    /// ABI): header or packet inconsistent; a GSO type the data plane does not carry
    /// (IPv6); a packet or segment larger than a batch slot. Copied from the queue's
    /// [`OffloadStats`](crate::io::OffloadStats).
    #[serde(default)]
    pub tun_offload_malformed: u64,
    #[serde(default)]
    pub tun_offload_unsupported: u64,
    #[serde(default)]
    pub tun_offload_too_big: u64,
    /// Drops by an SA (also counted on the SA), summed here for the shard's log summary.
    pub icv_failures: u64,
    pub replay_drops: u64,
    pub padding_errors: u64,
    pub selector_mismatches: u64,
    pub malformed: u64,
}

impl ShardCounters {
    /// Takes the drop counters of the TUN queue's offload read path (running totals kept by
    /// the queue, so this overwrites).
    pub fn copy_tun_offload_drops(&mut self, stats: &OffloadStats) {
        self.tun_offload_malformed = stats.malformed.get();
        self.tun_offload_unsupported = stats.unsupported.get();
        self.tun_offload_too_big = stats.too_big.get();
    }
}

#[derive(Debug, Default)]
pub struct ShardReport {
    pub sas: Vec<SaStatus>,
    pub counters: ShardCounters,
}

/// A batch of packets that arrived on the wrong shard, for the owner of their SA, with the
/// sender's count of bytes in flight to that owner (released when the message is dropped,
/// after the owner processed it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Handoff(pub HandoffBatch, pub InFlight);

/// One hand-over batch's bytes counted in flight: added by the sender before it sends
/// ([`InFlight::take`]), given back when the message is dropped, i.e. once the receiver has
/// processed it (or the receiver is gone).
#[derive(Debug)]
pub struct InFlight {
    count: Arc<AtomicUsize>,
    bytes: usize,
}

impl InFlight {
    /// Counts `bytes` more in flight on `count`, unless that would pass `bound`: then `None`.
    pub fn take(count: &Arc<AtomicUsize>, bytes: usize, bound: usize) -> Option<InFlight> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                n.checked_add(bytes).filter(|&m| m <= bound)
            })
            .ok()
            .map(|_| InFlight {
                count: count.clone(),
                bytes,
            })
    }

    /// A token counted on nothing the sender watches (tests that feed a shard directly).
    #[cfg(test)]
    pub fn untracked() -> InFlight {
        InFlight {
            count: Arc::new(AtomicUsize::new(0)),
            bytes: 0,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.count.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// The addresses of all shards, sent to each shard once they are all started.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Peers(pub Vec<Addr<super::EspShard>>);

#[cfg(test)]
mod tests {
    use super::*;

    /// Each offload drop counter of the TUN queue lands in its own shard counter, under the
    /// name `show counters` prints (the table takes the JSON field names).
    #[test]
    fn tun_offload_drops_reach_the_shard_counters() {
        let stats = OffloadStats::default();
        stats.malformed.set(3);
        stats.unsupported.set(5);
        stats.too_big.set(7);
        stats.segments.set(11);
        let mut c = ShardCounters::default();
        c.copy_tun_offload_drops(&stats);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["tun_offload_malformed"], 3);
        assert_eq!(json["tun_offload_unsupported"], 5);
        assert_eq!(json["tun_offload_too_big"], 7);
        let other: u64 = json
            .as_object()
            .unwrap()
            .iter()
            .filter(|(name, _)| !name.starts_with("tun_offload_"))
            .map(|(_, v)| v.as_u64().unwrap())
            .sum();
        assert_eq!(other, 0, "nothing else changed");
        // A report from a daemon without these fields still reads.
        let old: ShardCounters = serde_json::from_str(r#"{"cleartext_in":1,"no_policy":0,"no_sa":0,"unknown_spi":0,"not_ipv4":2,"icmp_frag_needed":0,"encap_errors":0,"send_errors":0,"handed_over":0,"ike_datagrams":0,"ike_dropped":0,"keepalives":0,"icv_failures":0,"replay_drops":0,"padding_errors":0,"selector_mismatches":0,"malformed":0}"#).unwrap();
        assert_eq!((old.cleartext_in, old.tun_offload_too_big), (1, 0));
        // `not_ipv4` became `not_ip` with IPv6 (issue 11): the old name still reads.
        assert_eq!((old.not_ip, old.icmpv6_too_big), (2, 0));
    }
}

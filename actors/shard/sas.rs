//! The SAs of one shard, and the handles the daemon names them by.
//!
//! RFC 4301 §4.4.2: an outbound SA is reached through the SPD entry that selected it, an
//! inbound SA by its SPI (and destination). The outbound SPI is chosen by the peer, so two
//! peers may legally pick the same one, and a spoke may pick another tunnel's on purpose: it
//! is a label written into packets, never a key here. Every SA is installed, found by the
//! SPD and removed through a [`SaHandle`] the daemon issued. Inbound SAs are also indexed by
//! their SPI, which this host allocated (HostSpis, and config validation for manual SPIs); an
//! install that would take an SPI another handle holds is refused, never a silent replace.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ikehub::esp::{Direction, SecurityAssociation};
use ikehub::ike::SpiPair;
use ikehub::spd::SpiHasher;

use super::SaKind;

/// The daemon's name for one installed SA. Issued by [`SaHandle::issue`] from one counter for
/// the whole process, kept in the bits above [`SHARD_BITS`]: 2^48 handles never wrap, so a
/// handle is never reused. The low bits name the shard its SA lives on when it is outbound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SaHandle(u64);

static NEXT_HANDLE: AtomicU64 = AtomicU64::new(1);

/// Bits of a handle below its counter: the outbound shard (there are at most 256 shards, one
/// per TUN queue).
const SHARD_BITS: u32 = 16;
const SHARD_MASK: u64 = (1 << SHARD_BITS) - 1;

impl SaHandle {
    /// A fresh handle; as an outbound SA's, it spreads over the shards with the counter.
    pub fn issue() -> SaHandle {
        let n = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed);
        SaHandle::of(n, n)
    }

    /// A fresh handle whose outbound SA lives on `shard`.
    fn issue_on(shard: u32) -> SaHandle {
        SaHandle::of(
            NEXT_HANDLE.fetch_add(1, Ordering::Relaxed),
            u64::from(shard),
        )
    }

    /// Counter value `n` above the shard bits `shard`.
    fn of(n: u64, shard: u64) -> SaHandle {
        SaHandle(n << SHARD_BITS | shard & SHARD_MASK)
    }

    /// The shard that holds this handle's SA when it is outbound; inbound SAs live where the
    /// kernel steers their SPI instead ([`crate::io::spi_shard`]).
    pub fn outbound_shard(self, shards: u32) -> u32 {
        ((self.0 & SHARD_MASK) % u64::from(shards.max(1))) as u32
    }
}

impl std::fmt::Display for SaHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0 >> SHARD_BITS)
    }
}

/// The two SAs of one child SA pair (or of a manual policy), as installed: the SPIs are kept
/// for logs, `show` and the session, the handles for every message to the shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaPair {
    pub spis: SpiPair,
    pub inbound: SaHandle,
    pub outbound: SaHandle,
}

impl SaPair {
    /// Fresh handles for a pair about to be installed on `shards` shards. The outbound SA
    /// goes on the shard of the inbound one: the TUN device queues a flow's packets for
    /// reading on the queue its reverse direction was last written to (tun.c automq, a
    /// symmetric flow hash), and the inbound SA's shard writes that direction; so the
    /// cleartext of a two-way flow (TCP and its ACKs) is read by the shard that encrypts it,
    /// not handed over to another thread packet batch by packet batch.
    pub fn issue(spis: SpiPair, shards: usize) -> SaPair {
        let shards = u32::try_from(shards).unwrap_or(u32::MAX);
        SaPair {
            spis,
            inbound: SaHandle::issue(),
            outbound: SaHandle::issue_on(crate::io::spi_shard(spis.inbound, shards)),
        }
    }

    /// Index of the shard holding the inbound SA: the one its SPI is steered to.
    pub fn inbound_shard(&self, shards: usize) -> usize {
        crate::io::spi_shard(self.spis.inbound, shards as u32) as usize
    }

    /// Index of the shard holding the outbound SA.
    pub fn outbound_shard(&self, shards: usize) -> usize {
        self.outbound.outbound_shard(shards as u32) as usize
    }
}

/// An SA as this shard holds it.
pub(crate) struct Installed {
    pub policy: Arc<str>,
    pub kind: SaKind,
    pub handle: SaHandle,
    pub sa: SecurityAssociation,
}

/// Why an install was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Another installed SA already receives on this SPI.
    InboundSpiHeld { spi: u32, holder: SaHandle },
    /// The handle names an SA of the other direction.
    HandleInUse,
}

type Fast = BuildHasherDefault<SpiHasher>;

/// The tables hold each SA boxed: a hash table keeps 1.1 to 2 slots per entry, and a slot of an
/// inline `Installed` (2 KB before the key schedules were boxed) made the empty ones cost as
/// much as the SAs (docs/design.md "Per-tunnel memory budget"). One pointer more per packet.
#[derive(Default)]
pub(crate) struct SaTables {
    /// Keyed by handle: the SPD lookup yields it (keys are ours, so the fast hasher is safe).
    outbound: HashMap<SaHandle, Box<Installed>, Fast>,
    /// Keyed by our SPI: received packets carry it.
    inbound: HashMap<u32, Box<Installed>, Fast>,
    inbound_spi: HashMap<SaHandle, u32, Fast>,
}

impl SaTables {
    /// Installs an SA under its handle; the same handle again replaces its SA (same direction).
    pub fn install(
        &mut self,
        handle: SaHandle,
        policy: Arc<str>,
        kind: SaKind,
        sa: SecurityAssociation,
    ) -> Result<(), Refused> {
        let installed = Box::new(Installed {
            policy,
            kind,
            handle,
            sa,
        });
        match installed.sa.direction() {
            Direction::Outbound => {
                if self.inbound_spi.contains_key(&handle) {
                    return Err(Refused::HandleInUse);
                }
                self.outbound.insert(handle, installed);
            }
            Direction::Inbound => {
                if self.outbound.contains_key(&handle) {
                    return Err(Refused::HandleInUse);
                }
                let spi = installed.sa.outer_spi();
                if let Some(held) = self.inbound.get(&spi)
                    && held.handle != handle
                {
                    return Err(Refused::InboundSpiHeld {
                        spi,
                        holder: held.handle,
                    });
                }
                // The same handle re-installed under another SPI: its old SPI is free again.
                if let Some(old) = self.inbound_spi.insert(handle, spi)
                    && old != spi
                {
                    self.inbound.remove(&old);
                }
                self.inbound.insert(spi, installed);
            }
        }
        Ok(())
    }

    /// Removes the SA of a handle, whichever its direction.
    pub fn remove(&mut self, handle: SaHandle) -> Option<Installed> {
        if let Some(i) = self.outbound.remove(&handle) {
            return Some(*i);
        }
        let spi = self.inbound_spi.remove(&handle)?;
        self.inbound.remove(&spi).map(|i| *i)
    }

    pub fn outbound(&self, handle: SaHandle) -> Option<&Installed> {
        self.outbound.get(&handle).map(|i| &**i)
    }

    pub fn outbound_mut(&mut self, handle: SaHandle) -> Option<&mut Installed> {
        self.outbound.get_mut(&handle).map(|i| &mut **i)
    }

    pub fn inbound_by_spi_mut(&mut self, spi: u32) -> Option<&mut Installed> {
        self.inbound.get_mut(&spi).map(|i| &mut **i)
    }

    pub fn inbound(&self, handle: SaHandle) -> Option<&Installed> {
        self.inbound
            .get(self.inbound_spi.get(&handle)?)
            .map(|i| &**i)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Installed> {
        self.inbound
            .values()
            .chain(self.outbound.values())
            .map(|i| &**i)
    }
}

/// The kilobyte soft limit (90% of the hard one, as the session does for seconds) is reached.
/// The limit may come from the peer (quick-mode lifetime): compared in 128 bits, where
/// `limit * 9` of any u64 cannot overflow.
pub(crate) fn kilobytes_soft_expired(used: u64, limit: u64) -> bool {
    u128::from(used) * 10 >= u128::from(limit) * 9
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Instant;

    use ikehub::config::{KeyBytes, Mode, ProtectedNetwork};
    use ikehub::crypto::{AuthAlgorithm, EncrAlgorithm};
    use ikehub::esp::{EspKeys, LifetimeLimits, SaEncapsulation, SaParams};

    use super::super::policies::{ShardPolicies, SpdEntry};
    use super::*;

    fn sa(direction: Direction, spi: u32, peer: [u8; 4], key_seed: u8) -> SecurityAssociation {
        let params = SaParams {
            direction,
            mode: Mode::Tunnel,
            esp: Some(EspKeys {
                spi,
                encryption: EncrAlgorithm::AesCbc128,
                encryption_key: KeyBytes(vec![key_seed; 16]),
                authentication: AuthAlgorithm::HmacSha1,
                authentication_key: KeyBytes(vec![key_seed; 20]),
            }),
            ah: None,
            local: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            peer: IpAddr::V4(Ipv4Addr::from(peer)),
            encapsulation: SaEncapsulation::Raw,
            replay_window: 64,
            lifetime: LifetimeLimits::UNLIMITED,
            protected_networks: vec![],
        };
        SecurityAssociation::new(params, Instant::now()).unwrap()
    }

    fn pn(l: &str, r: &str) -> ProtectedNetwork {
        ProtectedNetwork {
            local: l.parse().unwrap(),
            remote: r.parse().unwrap(),
        }
    }

    /// The same outbound SPI to two peers: two manual policies to different peers whose
    /// outbound SPIs are both 5000. Keyed by SPI (the old code), the second install replaced the
    /// first SA, and the first policy's cleartext went out with the second peer's keys to the
    /// second peer.
    #[test]
    fn same_outbound_spi_under_two_handles() {
        let mut t = SaTables::default();
        let mut spd = ShardPolicies::default();
        let (to_a, to_b) = (SaHandle::issue(), SaHandle::issue());
        let peer_a = [192, 0, 2, 2];
        let peer_b = [192, 0, 2, 3];
        let out_a = sa(Direction::Outbound, 5000, peer_a, 0xa);
        let out_b = sa(Direction::Outbound, 5000, peer_b, 0xb);
        t.install(to_a, "A".into(), SaKind::Manual, out_a).unwrap();
        t.install(to_b, "B".into(), SaKind::Manual, out_b).unwrap();
        let net_a = pn("198.51.100.0/24", "203.0.113.0/25");
        let net_b = pn("198.51.100.0/24", "203.0.113.128/25");
        spd.install("A".into(), &[net_a], Some(to_a));
        spd.install("B".into(), &[net_b], Some(to_b));

        let lan = Ipv4Addr::new(198, 51, 100, 1);
        let reach = |t: &SaTables, spd: &ShardPolicies, last: u8| {
            let h = spd.lookup(lan, Ipv4Addr::new(203, 0, 113, last))??;
            t.outbound(h).map(|i| (i.policy.to_string(), i.sa.peer()))
        };
        assert_eq!(reach(&t, &spd, 5), Some(("A".into(), IpAddr::from(peer_a))));
        assert_eq!(
            reach(&t, &spd, 200),
            Some(("B".into(), IpAddr::from(peer_b)))
        );
        assert_eq!(t.iter().count(), 2);

        // Removing B by its handle leaves A's SA, with the same SPI, in place.
        let removed = t.remove(to_b).unwrap();
        assert_eq!(removed.sa.peer(), Ipv4Addr::from(peer_b));
        spd.remove("B");
        assert_eq!(reach(&t, &spd, 5), Some(("A".into(), IpAddr::from(peer_a))));
        assert_eq!(reach(&t, &spd, 200), None);
        assert!(t.remove(to_b).is_none());
        assert_eq!(t.iter().count(), 1);
    }

    /// A spoke's child whose outbound SPI equals another tunnel's: the other tunnel's entry
    /// keeps reaching its own SA (old code: the spoke's install took the SPI's slot).
    #[test]
    fn a_chosen_spi_does_not_capture_another_tunnel() {
        let mut t = SaTables::default();
        let mut spd = ShardPolicies::default();
        let victim = SaHandle::issue();
        t.install(
            victim,
            "Victim".into(),
            SaKind::Isakmp,
            sa(Direction::Outbound, 0xc0ffee, [192, 0, 2, 2], 1),
        )
        .unwrap();
        spd.set(
            &SpdEntry {
                policy: "Victim".into(),
                selectors: pn("198.51.100.0/24", "203.0.113.0/25"),
            },
            victim,
        );
        let spoke = SaHandle::issue();
        t.install(
            spoke,
            "T@192.0.2.66".into(),
            SaKind::Isakmp,
            sa(Direction::Outbound, 0xc0ffee, [192, 0, 2, 66], 2),
        )
        .unwrap();
        let h = spd
            .lookup(
                Ipv4Addr::new(198, 51, 100, 1),
                Ipv4Addr::new(203, 0, 113, 9),
            )
            .flatten()
            .unwrap();
        assert_eq!(h, victim);
        assert_eq!(
            t.outbound(h).unwrap().sa.peer(),
            Ipv4Addr::new(192, 0, 2, 2)
        );
        assert_eq!(
            t.outbound(spoke).unwrap().sa.peer(),
            Ipv4Addr::new(192, 0, 2, 66)
        );
    }

    #[test]
    fn an_inbound_spi_held_by_another_handle_is_refused() {
        let mut t = SaTables::default();
        let (first, second) = (SaHandle::issue(), SaHandle::issue());
        t.install(
            first,
            "A".into(),
            SaKind::Manual,
            sa(Direction::Inbound, 1111, [192, 0, 2, 2], 1),
        )
        .unwrap();
        assert_eq!(
            t.install(
                second,
                "B".into(),
                SaKind::Manual,
                sa(Direction::Inbound, 1111, [192, 0, 2, 3], 2),
            ),
            Err(Refused::InboundSpiHeld {
                spi: 1111,
                holder: first
            })
        );
        let held = t.inbound_by_spi_mut(1111).unwrap();
        assert_eq!((&*held.policy, held.handle), ("A", first));
        // The holder may replace its own SA (same handle), and frees the SPI on removal.
        t.install(
            first,
            "A".into(),
            SaKind::Manual,
            sa(Direction::Inbound, 1111, [192, 0, 2, 4], 3),
        )
        .unwrap();
        assert_eq!(
            t.inbound(first).unwrap().sa.peer(),
            Ipv4Addr::new(192, 0, 2, 4)
        );
        // A handle names one SA: not an inbound and an outbound one at once.
        assert_eq!(
            t.install(
                first,
                "A".into(),
                SaKind::Manual,
                sa(Direction::Outbound, 2222, [192, 0, 2, 4], 3),
            ),
            Err(Refused::HandleInUse)
        );
        assert!(t.remove(first).is_some());
        assert!(t.inbound_by_spi_mut(1111).is_none());
        t.install(
            second,
            "B".into(),
            SaKind::Manual,
            sa(Direction::Inbound, 1111, [192, 0, 2, 3], 2),
        )
        .unwrap();
        assert_eq!(t.inbound(second).unwrap().handle, second);
    }

    /// `kilobytes() * 10 >= kb * 9` overflowed (a debug-build panic) for a peer-sent limit
    /// above u64::MAX / 9.
    #[test]
    fn kilobyte_soft_limit_never_overflows() {
        assert!(!kilobytes_soft_expired(0, u64::MAX));
        assert!(!kilobytes_soft_expired(u64::MAX / 2, u64::MAX));
        assert!(kilobytes_soft_expired(u64::MAX, u64::MAX));
        // 90% of a limit near u64::MAX is found exactly.
        let limit = u64::MAX / 10 * 10;
        assert!(kilobytes_soft_expired(u64::MAX / 10 * 9, limit));
        assert!(!kilobytes_soft_expired(u64::MAX / 10 * 9 - 1, limit));
        assert!(!kilobytes_soft_expired(899, 1000));
        assert!(kilobytes_soft_expired(900, 1000));
        assert!(kilobytes_soft_expired(5, 0));
    }

    #[test]
    fn handles_are_never_reused_and_spread_over_shards() {
        let a = SaHandle::issue();
        let b = SaHandle::issue();
        assert!(b > a);
        let on: Vec<u32> = (0..8)
            .map(|_| SaHandle::issue().outbound_shard(4))
            .collect();
        for s in 0..4 {
            assert!(on.contains(&s));
        }
        assert_eq!(a.outbound_shard(0), 0);
    }

    /// Issue 12 (relay CPU): a pair's outbound SA lives on the shard of its inbound SA, so the
    /// shard that writes a flow's reverse direction to the TUN queue (and so reads the flow
    /// from it) also encrypts it; before, the outbound shard followed the handle counter and
    /// half of the pairs handed every cleartext batch over to another shard.
    #[test]
    fn a_pairs_outbound_sa_lives_on_its_inbound_shard() {
        for shards in 1..=8usize {
            for spi in [256u32, 257, 0x1111, 0x2222, 0xc0ff_ee01, u32::MAX] {
                for _ in 0..3 {
                    let pair = SaPair::issue(
                        SpiPair {
                            inbound: spi,
                            outbound: 7,
                        },
                        shards,
                    );
                    assert_eq!(pair.outbound_shard(shards), pair.inbound_shard(shards));
                    assert_ne!(pair.inbound, pair.outbound);
                    assert!(pair.outbound > pair.inbound, "never reused");
                }
            }
        }
    }
}

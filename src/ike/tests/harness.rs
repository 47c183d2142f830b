//! Two `IkeSession`s against each other on virtual time: a base `Instant` plus offsets, seeded
//! RNGs, and a network that may lose, duplicate, delay or NAT-translate datagrams.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::config::{
    EspTransform, HashAlgorithm, Initiate, IpsecTransform, IsakmpTransform, KeyBytes, Mode,
    ProtectedNetwork,
};
use crate::crypto::{AuthAlgorithm, EncrAlgorithm};
use crate::ike::config::{NatConfig, PeerConfig, RekeyConfig, RetransmitConfig, SpiAllocator};
use crate::ike::{ChildSaInfo, Event, IkeSession, SpiPair, Transmit};

pub const A_IP: [u8; 4] = [192, 0, 2, 1];
pub const B_IP: [u8; 4] = [192, 0, 2, 2];
pub const NAT_IP: [u8; 4] = [203, 0, 113, 9];

pub fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::from(ip), port)
}

pub fn net(local: &str, remote: &str) -> ProtectedNetwork {
    ProtectedNetwork {
        local: local.parse().unwrap(),
        remote: remote.parse().unwrap(),
    }
}

pub fn p1(encryption: EncrAlgorithm, hash: HashAlgorithm, dh_group: u16) -> Arc<IsakmpTransform> {
    Arc::new(IsakmpTransform {
        name: format!("{encryption:?}-{hash:?}-{dh_group}"),
        encryption,
        hash,
        dh_group,
        lifetime_seconds: 28800,
    })
}

pub fn p2(
    esp: Option<(EncrAlgorithm, AuthAlgorithm)>,
    ah: Option<AuthAlgorithm>,
) -> Arc<IpsecTransform> {
    Arc::new(IpsecTransform {
        name: format!("{esp:?}-{ah:?}"),
        esp: esp.map(|(encryption, authentication)| EspTransform {
            encryption,
            authentication,
        }),
        ah,
        mode: Mode::Tunnel,
        lifetime_seconds: 3600,
        lifetime_kilobytes: 0,
        replay_window: None,
    })
}

/// Side A's policy (B's mirrors the networks).
pub fn config(name: &str, a_side: bool) -> PeerConfig {
    let n = if a_side {
        net("10.1.0.0/16", "10.2.0.0/16")
    } else {
        net("10.2.0.0/16", "10.1.0.0/16")
    };
    PeerConfig {
        policy: name.into(),
        preshared_key: KeyBytes(b"a long random secret".to_vec()),
        isakmp_transforms: vec![p1(EncrAlgorithm::AesCbc128, HashAlgorithm::Sha1, 2)],
        ipsec_transforms: vec![p2(
            Some((EncrAlgorithm::AesCbc128, AuthAlgorithm::HmacSha1)),
            None,
        )],
        pfs_group: None,
        initiate: if a_side {
            Initiate::Permanent
        } else {
            Initiate::Never
        },
        nat: NatConfig::default(),
        dpd: None,
        protected_networks: vec![n],
        retransmit: RetransmitConfig::default(),
        rekey: RekeyConfig::default(),
        max_half_open: 4,
        default_replay_window: 64,
        selector_guard: None,
        local_id: Default::default(),
        remote_id: Default::default(),
        dh_key_reuse: None,
    }
}

/// SPIs counted up from a side-specific base: deterministic and distinguishable in failures.
#[derive(Debug)]
pub struct CountingSpis {
    next: Mutex<u32>,
    pub live: Mutex<Vec<u32>>,
}

impl CountingSpis {
    pub fn new(base: u32) -> Arc<Self> {
        Arc::new(Self {
            next: Mutex::new(base),
            live: Mutex::new(Vec::new()),
        })
    }
}

impl SpiAllocator for CountingSpis {
    fn allocate(&self, _hint: u32) -> u32 {
        let mut n = self.next.lock().unwrap();
        *n += 1;
        self.live.lock().unwrap().push(*n);
        *n
    }
    fn release(&self, spi: u32) {
        self.live.lock().unwrap().retain(|s| *s != spi);
    }
}

/// What the network does with the `n`-th datagram (0-based, both directions counted): the
/// delays of its copies (empty = lost).
pub type Filter = Box<dyn FnMut(usize, usize, &Transmit) -> Vec<Duration>>;

/// A peer (or the path) rewriting a datagram in flight: (sending side, UDP payload).
pub type Tamper = Box<dyn FnMut(usize, &mut Vec<u8>)>;

pub struct Packet {
    at: Instant,
    seq: u64,
    to: usize,
    from: SocketAddr,
    nat_port: bool,
    bytes: Vec<u8>,
}

pub struct Side {
    pub s: IkeSession,
    pub ip: [u8; 4],
    pub events: Vec<(Duration, Event)>,
    pub spis: Arc<CountingSpis>,
}

pub struct Pair {
    pub t0: Instant,
    pub now: Instant,
    pub sides: [Side; 2],
    pub queue: Vec<Packet>,
    pub latency: Duration,
    pub filter: Filter,
    pub tamper: Tamper,
    pub sent: usize,
    /// Side A is behind a NAT that maps its ports to NAT_IP:(port + 10000).
    pub nat_a: bool,
    /// B sees A's datagrams come from this address (same ports) and reaches A there: A's
    /// address ID then names another address than the one it sends from, without a NAT that
    /// NAT-D could see when NAT-T is off.
    pub a_seen_as: Option<[u8; 4]>,
    /// Datagrams that left each side: (time, destination, nat-t flag, length).
    pub log: Vec<(Duration, usize, SocketAddr, bool, usize)>,
    seq: u64,
}

fn rng(seed: u64) -> Box<StdRng> {
    Box::new(StdRng::seed_from_u64(seed))
}

impl Pair {
    /// A initiates (new_initiator), B responds.
    pub fn new(a: PeerConfig, b: PeerConfig, seed: u64) -> Self {
        Self::new_at(a, b, seed, Instant::now())
    }

    /// [`Pair::new`] with virtual time starting at `t0`.
    pub fn new_at(a: PeerConfig, b: PeerConfig, seed: u64, t0: Instant) -> Self {
        let a_spis = CountingSpis::new(0x1000_0000);
        let b_spis = CountingSpis::new(0x2000_0000);
        let sa = IkeSession::new_initiator(
            Arc::new(a),
            addr(A_IP, 500),
            addr(B_IP, 500),
            t0,
            rng(seed),
            a_spis.clone(),
        );
        let sb = IkeSession::new_responder(
            Arc::new(b),
            addr(B_IP, 500),
            addr(A_IP, 500),
            t0,
            rng(seed ^ 0x5555),
            b_spis.clone(),
        );
        Self {
            t0,
            now: t0,
            sides: [
                Side {
                    s: sa,
                    ip: A_IP,
                    events: Vec::new(),
                    spis: a_spis,
                },
                Side {
                    s: sb,
                    ip: B_IP,
                    events: Vec::new(),
                    spis: b_spis,
                },
            ],
            queue: Vec::new(),
            latency: Duration::from_millis(10),
            filter: Box::new(|_, _, _| vec![Duration::ZERO]),
            tamper: Box::new(|_, _| {}),
            sent: 0,
            nat_a: false,
            a_seen_as: None,
            log: Vec::new(),
            seq: 0,
        }
    }

    pub fn at(&self, secs: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(secs)
    }

    /// Delivers a datagram to `side` now, as if from the other side's IKE port.
    pub fn deliver(&mut self, side: usize, bytes: &[u8]) {
        let from = addr(self.sides[1 - side].ip, 500);
        let now = self.now;
        self.sides[side].s.handle_datagram(now, from, false, bytes);
        self.drain();
    }

    fn drain(&mut self) {
        for i in 0..2 {
            while let Some(e) = self.sides[i].s.poll_event() {
                self.sides[i].events.push((self.now - self.t0, e));
            }
            while let Some(t) = self.sides[i].s.poll_transmit() {
                self.route(i, t);
            }
        }
    }

    fn route(&mut self, from_side: usize, t: Transmit) {
        let n = self.sent;
        self.sent += 1;
        self.log.push((
            self.now - self.t0,
            from_side,
            t.destination,
            t.source_port_nat_t,
            t.bytes.len(),
        ));
        let delays = (self.filter)(n, from_side, &t);
        let mut bytes = t.bytes.clone();
        (self.tamper)(from_side, &mut bytes);
        let port = if t.source_port_nat_t { 4500 } else { 500 };
        let mut from = addr(self.sides[from_side].ip, port);
        if from_side == 0 && self.nat_a {
            from = addr(NAT_IP, port + 10000);
        }
        if let (0, Some(ip)) = (from_side, self.a_seen_as) {
            from = addr(ip, port);
        }
        // Where does it go? B addresses A through the NAT.
        let (to, to_port) = if IpAddr::from(NAT_IP) == t.destination.ip() {
            (0, t.destination.port() - 10000)
        } else if t.destination.ip() == IpAddr::from(A_IP)
            || self.a_seen_as.map(IpAddr::from) == Some(t.destination.ip())
        {
            (0, t.destination.port())
        } else {
            (1, t.destination.port())
        };
        for d in delays {
            self.seq += 1;
            self.queue.push(Packet {
                at: self.now + self.latency + d,
                seq: self.seq,
                to,
                from,
                nat_port: to_port == 4500,
                bytes: bytes.clone(),
            });
        }
    }

    /// Runs until `end` (seconds after t0).
    pub fn run_until(&mut self, end: f64) {
        let end = self.at(end);
        loop {
            self.drain();
            let mut next = self.queue.iter().map(|p| p.at).min();
            for s in &self.sides {
                if let Some(t) = s.s.poll_timeout() {
                    next = Some(next.map_or(t, |n: Instant| n.min(t)));
                }
            }
            let Some(next) = next.filter(|n| *n <= end) else {
                self.now = end.max(self.now);
                break;
            };
            self.now = next.max(self.now);
            let now = self.now;
            let mut due: Vec<Packet> = Vec::new();
            let mut rest = Vec::new();
            for p in self.queue.drain(..) {
                if p.at <= now {
                    due.push(p)
                } else {
                    rest.push(p)
                }
            }
            self.queue = rest;
            due.sort_by_key(|p| (p.at, p.seq));
            for p in due {
                self.sides[p.to]
                    .s
                    .handle_datagram(now, p.from, p.nat_port, &p.bytes);
                self.drain();
            }
            for i in 0..2 {
                if self.sides[i].s.poll_timeout().is_some_and(|t| t <= now) {
                    self.sides[i].s.handle_timeout(now);
                }
            }
        }
    }

    pub fn events(&self, side: usize) -> Vec<&Event> {
        self.sides[side].events.iter().map(|(_, e)| e).collect()
    }

    /// Installed child SAs per side, replaying the events like the daemon would.
    pub fn installed(&self, side: usize) -> Vec<ChildSaInfo> {
        let mut v: Vec<ChildSaInfo> = Vec::new();
        for (_, e) in &self.sides[side].events {
            match e {
                Event::ChildSaEstablished(c) => v.push(c.clone()),
                Event::ChildSaRekeyed { new, .. } => v.push(new.clone()),
                Event::ChildSaDeleted { spis, .. } | Event::ChildSaExpired(spis) => {
                    v.retain(|c| c.spis() != *spis)
                }
                Event::PeerDead => v.clear(),
                _ => {}
            }
        }
        v
    }

    pub fn failures(&self, side: usize) -> Vec<(String, Option<crate::wire::isakmp::NotifyType>)> {
        self.sides[side]
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Failed { reason, notify } => Some((reason.clone(), *notify)),
                _ => None,
            })
            .collect()
    }
}

/// My outbound must be your inbound: same SPI, algorithms and keys, and vice versa.
pub fn assert_crosswise(a: &ChildSaInfo, b: &ChildSaInfo) {
    fn same(x: &crate::esp::SaParams, y: &crate::esp::SaParams) {
        match (&x.esp, &y.esp) {
            (Some(p), Some(q)) => {
                assert_eq!(p.spi, q.spi);
                assert_eq!(p.encryption, q.encryption);
                assert_eq!(p.authentication, q.authentication);
                assert_eq!(p.encryption_key, q.encryption_key);
                assert_eq!(p.authentication_key, q.authentication_key);
                assert_eq!(p.encryption_key.0.len(), p.encryption.keymat_len());
                assert_eq!(p.authentication_key.0.len(), p.authentication.key_len());
            }
            (None, None) => {}
            _ => panic!("ESP on one side only"),
        }
        match (&x.ah, &y.ah) {
            (Some(p), Some(q)) => {
                assert_eq!(p.spi, q.spi);
                assert_eq!(p.authentication, q.authentication);
                assert_eq!(p.authentication_key, q.authentication_key);
            }
            (None, None) => {}
            _ => panic!("AH on one side only"),
        }
        assert_eq!(x.mode, y.mode);
        assert_eq!(x.lifetime, y.lifetime);
        // Outer addresses differ across a NAT; tests without NAT check them separately.
    }
    same(&a.outbound, &b.inbound);
    same(&b.outbound, &a.inbound);
    assert_ne!(
        a.inbound.esp.as_ref().map(|e| e.encryption_key.clone()),
        a.outbound
            .esp
            .as_ref()
            .map(|e| e.encryption_key.clone())
            .filter(|k| !k.0.is_empty())
            .or(Some(KeyBytes(vec![1])))
    );
    let _ = SpiPair {
        inbound: 0,
        outbound: 0,
    };
}

//! Which session an IKE datagram belongs to, and which unknown initiators get a session at all
//! (docs/design.md "Invariants that keep spokes apart"). Sans-IO: the daemon's router asks, then
//! starts or stops the sessions it is told to.
//!
//! # Routing
//!
//! A datagram is routed by the ISAKMP cookie **we** chose: the responder cookie of an exchange
//! we answer, the initiator cookie of one we started (RFC 2408 §2.5.3: the cookies identify the
//! ISAKMP SA). Only a main-mode message 1 (responder cookie and message ID zero) is routed by
//! address **and port**: to the session that already runs from there (a retransmission, or the
//! peer starting over: the session itself checks it and never moves an established peer for an
//! unauthenticated message), else it is a new exchange, admitted by the caller against its
//! policies and then by [`Demux::admit`]. So several spokes behind one NAT address (one port
//! each) are several sessions, and a datagram forged with an established peer's address but
//! another port, or unknown cookies, never reaches that peer's session.
//!
//! # Half-open exchanges
//!
//! A session created for an unknown initiator is half open until its phase 1 completes
//! ([`Demux::established`]). Half-open sessions are bounded per source address, per policy and
//! in total; when a bound is reached the **oldest** half-open session in that bound is evicted
//! rather than the new one refused: a blind spoofer's exchanges never complete, so they are the
//! old ones, and spoofing from some addresses (or against one policy) cannot starve the rest.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::wire::isakmp::{ExchangeType, peek_header};

use super::nat_t;

/// A session, as the daemon names it: issued by [`Demux::admit`] or [`Demux::insert_initiator`],
/// never derived from anything a peer sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Bounds on half-open responder sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HalfOpenLimits {
    /// Over all policies and sources.
    pub total: usize,
    /// Per `ipsec-policy-isakmp`.
    pub per_policy: usize,
    /// Per source IP address (all ports: a NAT address carries several spokes).
    pub per_source: usize,
}

impl Default for HalfOpenLimits {
    fn default() -> Self {
        HalfOpenLimits {
            total: 2048,
            per_policy: 1024,
            per_source: crate::config::defaults::HALF_OPEN_PER_SOURCE as usize,
        }
    }
}

/// Where a datagram goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// To this session.
    Session(PeerId),
    /// A main-mode message 1 from an address and port without a session: a new exchange, if a
    /// policy admits the address (then [`Demux::admit`]).
    NewExchange,
    /// Dropped, for this reason (counted by the caller).
    Drop(DropReason),
}

/// Why the demultiplexer dropped a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Not an ISAKMP version 1.0 header.
    Malformed,
    /// Cookies of no session of ours, and not a main-mode message 1.
    UnknownCookies,
    /// Aggressive mode (RFC 2409 §5.4) is refused: with pre-shared keys it gives away an
    /// offline-crackable hash of the key.
    Aggressive,
    /// A new exchange while the daemon stops ([`Demux::stop_admitting`]).
    Stopping,
}

impl DropReason {
    /// For the log.
    pub fn describe(self) -> &'static str {
        match self {
            DropReason::Malformed => "not an ISAKMP 1.0 datagram",
            DropReason::UnknownCookies => "no exchange with these cookies",
            DropReason::Aggressive => {
                "aggressive mode refused: with pre-shared keys it sends a hash of the key in the \
                 clear that can be cracked offline; configure the peer for main mode"
            }
            DropReason::Stopping => "stopping: no new exchange until restarted",
        }
    }
}

/// A new half-open session, and the ones evicted to make room for it.
#[derive(Debug, PartialEq, Eq)]
pub struct Admitted {
    pub id: PeerId,
    /// Stop these sessions (silently: they never authenticated).
    pub evicted: Vec<PeerId>,
}

/// Which of the two cookies of an exchange is ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We initiated: ours is the initiator cookie.
    Initiator,
    /// We responded: ours is the responder cookie.
    Responder,
}

struct Entry {
    policy: Arc<str>,
    /// Where its first exchange came from, and where the peer is now (after the NAT-T float or
    /// an authenticated rebinding).
    first: SocketAddr,
    current: SocketAddr,
    /// The cookies we chose for its exchanges and ISAKMP SAs.
    cookies: Vec<([u8; 8], Role)>,
    /// Admission order while half open.
    half_open: Option<u64>,
}

/// The routing tables of one daemon.
pub struct Demux {
    limits: HalfOpenLimits,
    next_id: u64,
    next_seq: u64,
    peers: HashMap<PeerId, Entry>,
    by_cookie: HashMap<[u8; 8], (PeerId, Role)>,
    by_addr: HashMap<SocketAddr, PeerId>,
    /// Half-open sessions in admission order: all, per policy, per source address.
    half_open: BTreeMap<u64, PeerId>,
    half_open_policy: HashMap<Arc<str>, BTreeMap<u64, PeerId>>,
    half_open_source: HashMap<IpAddr, BTreeMap<u64, PeerId>>,
    /// Set when the daemon stops: see [`Demux::stop_admitting`].
    stopping: bool,
}

impl Default for Demux {
    fn default() -> Self {
        Self::new(HalfOpenLimits::default())
    }
}

impl Demux {
    pub fn new(limits: HalfOpenLimits) -> Self {
        Demux {
            limits,
            next_id: 1,
            next_seq: 0,
            peers: HashMap::new(),
            by_cookie: HashMap::new(),
            by_addr: HashMap::new(),
            half_open: BTreeMap::new(),
            half_open_policy: HashMap::new(),
            half_open_source: HashMap::new(),
            stopping: false,
        }
    }

    /// The daemon is stopping: from now on a main-mode message 1 with a fresh exchange is
    /// dropped, also from an address that has a session. A spoke that re-initiates as soon as
    /// our delete reaches it would otherwise be answered by the process that is going away,
    /// and retransmit message 3 to the restarted daemon, which knows none of those cookies,
    /// until its exchange times out (a 10,000-spoke hub restart took 34 s instead of 4 s). Its
    /// unanswered message 1 is retransmitted to the restarted daemon instead. Datagrams of
    /// sessions that exist (the answers to our deletes) still reach them.
    pub fn stop_admitting(&mut self) {
        self.stopping = true;
    }

    /// The session a datagram from `from` goes to (see the module documentation). `bytes` is
    /// the UDP payload with any non-ESP marker already removed. No allocation.
    pub fn route(&self, from: SocketAddr, bytes: &[u8]) -> Route {
        let Ok(h) = peek_header(bytes) else {
            return Route::Drop(DropReason::Malformed);
        };
        if h.version() != crate::wire::isakmp::VERSION_1_0 {
            return Route::Drop(DropReason::Malformed);
        }
        let (cky_i, cky_r) = (h.initiator_cookie(), h.responder_cookie());
        if let Some((id, Role::Responder)) = self.by_cookie.get(&cky_r) {
            return Route::Session(*id);
        }
        if let Some((id, Role::Initiator)) = self.by_cookie.get(&cky_i) {
            // An exchange we initiated (the responder's cookie is its own, or still zero in a
            // clear error notify).
            return Route::Session(*id);
        }
        if cky_r != [0; 8] || h.message_id() != 0 {
            return Route::Drop(DropReason::UnknownCookies);
        }
        if self.stopping && h.exchange_type() == ExchangeType::MAIN_MODE {
            return Route::Drop(DropReason::Stopping);
        }
        match h.exchange_type() {
            ExchangeType::MAIN_MODE => match self.by_addr.get(&from) {
                Some(id) => Route::Session(*id),
                None => Route::NewExchange,
            },
            ExchangeType::AGGRESSIVE => Route::Drop(DropReason::Aggressive),
            _ => Route::Drop(DropReason::UnknownCookies),
        }
    }

    /// [`route`](Self::route) for a payload that may start with the non-ESP marker.
    pub fn route_nat_t(&self, from: SocketAddr, bytes: &[u8]) -> Route {
        match nat_t::strip_marker(bytes) {
            Some(b) => self.route(from, b),
            None => Route::Drop(DropReason::Malformed),
        }
    }

    fn issue_id(&mut self) -> PeerId {
        let id = PeerId(self.next_id);
        self.next_id += 1;
        id
    }

    /// A responder session for a new exchange from `from` under `policy`: its id, and the
    /// half-open sessions to evict first (oldest from the same source, then of the same policy,
    /// then overall, as far as each bound needs).
    pub fn admit(&mut self, from: SocketAddr, policy: &Arc<str>) -> Admitted {
        let mut evicted = Vec::new();
        let oldest = |m: Option<&BTreeMap<u64, PeerId>>, limit: usize| {
            m.filter(|m| m.len() >= limit.max(1))
                .and_then(|m| m.values().next().copied())
        };
        while let Some(old) = oldest(
            self.half_open_source.get(&from.ip()),
            self.limits.per_source,
        ) {
            self.remove(old);
            evicted.push(old);
        }
        while let Some(old) = oldest(self.half_open_policy.get(policy), self.limits.per_policy) {
            self.remove(old);
            evicted.push(old);
        }
        while let Some(old) = oldest(Some(&self.half_open), self.limits.total) {
            self.remove(old);
            evicted.push(old);
        }
        let id = self.issue_id();
        let seq = self.next_seq;
        self.next_seq += 1;
        self.half_open.insert(seq, id);
        self.half_open_policy
            .entry(policy.clone())
            .or_default()
            .insert(seq, id);
        self.half_open_source
            .entry(from.ip())
            .or_default()
            .insert(seq, id);
        self.insert(id, policy.clone(), from, Some(seq));
        Admitted { id, evicted }
    }

    /// A session we initiate to `peer` (not half open: we chose to spend the state). Its
    /// initiator cookie is registered with [`set_cookies`](Self::set_cookies).
    pub fn insert_initiator(&mut self, peer: SocketAddr, policy: &Arc<str>) -> PeerId {
        let id = self.issue_id();
        self.insert(id, policy.clone(), peer, None);
        id
    }

    fn insert(&mut self, id: PeerId, policy: Arc<str>, addr: SocketAddr, half_open: Option<u64>) {
        // An address belongs to one session: a newer one takes it over (the older one stays
        // reachable by its cookies).
        self.by_addr.insert(addr, id);
        self.peers.insert(
            id,
            Entry {
                policy,
                first: addr,
                current: addr,
                cookies: Vec::new(),
                half_open,
            },
        );
    }

    fn leave_half_open(&mut self, id: PeerId) {
        let Some(e) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(seq) = e.half_open.take() else {
            return;
        };
        self.half_open.remove(&seq);
        if let Some(m) = self.half_open_policy.get_mut(&e.policy) {
            m.remove(&seq);
            if m.is_empty() {
                self.half_open_policy.remove(&e.policy);
            }
        }
        let ip = e.first.ip();
        if let Some(m) = self.half_open_source.get_mut(&ip) {
            m.remove(&seq);
            if m.is_empty() {
                self.half_open_source.remove(&ip);
            }
        }
    }

    /// Phase 1 of the session completed (authenticated): it no longer counts as half open.
    pub fn established(&mut self, id: PeerId) {
        self.leave_half_open(id);
    }

    /// Whether the session is half open.
    pub fn is_half_open(&self, id: PeerId) -> bool {
        self.peers.get(&id).is_some_and(|e| e.half_open.is_some())
    }

    /// The cookies a session now uses (its exchanges and ISAKMP SAs). A cookie already held by
    /// another session stays with it (cookies are 64 random bits: only a bug or a forged
    /// report collides).
    pub fn set_cookies(&mut self, id: PeerId, cookies: &[([u8; 8], Role)]) {
        let Some(e) = self.peers.get_mut(&id) else {
            return;
        };
        if e.cookies == cookies {
            return;
        }
        unindex_cookies(&mut self.by_cookie, id, &e.cookies);
        e.cookies.clear();
        for &(c, role) in cookies {
            if c == [0; 8] {
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(v) = self.by_cookie.entry(c) {
                v.insert((id, role));
                e.cookies.push((c, role));
            }
        }
    }

    /// The session's peer is now at `addr` (NAT-T float or an authenticated rebinding). Its
    /// first address still routes a new message 1 to it (a peer that restarts from its IKE port).
    pub fn set_address(&mut self, id: PeerId, addr: SocketAddr) {
        let Some(e) = self.peers.get_mut(&id) else {
            return;
        };
        if e.current != e.first && self.by_addr.get(&e.current) == Some(&id) {
            self.by_addr.remove(&e.current);
        }
        e.current = addr;
        self.by_addr.insert(addr, id);
    }

    /// Forgets a session (stopped, failed or evicted).
    pub fn remove(&mut self, id: PeerId) {
        self.leave_half_open(id);
        let Some(e) = self.peers.remove(&id) else {
            return;
        };
        unindex_cookies(&mut self.by_cookie, id, &e.cookies);
        for a in [e.first, e.current] {
            if self.by_addr.get(&a) == Some(&id) {
                self.by_addr.remove(&a);
            }
        }
    }

    /// The session at this address and port, if any.
    pub fn at(&self, addr: SocketAddr) -> Option<PeerId> {
        self.by_addr.get(&addr).copied()
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// True without sessions.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Half-open sessions now.
    pub fn half_open_count(&self) -> usize {
        self.half_open.len()
    }

    /// Checks the tables against each other (tests and fuzzing): every index names a live
    /// session that holds the key, and the half-open orders agree.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        for (c, (id, role)) in &self.by_cookie {
            let e = self.peers.get(id).ok_or("cookie of a removed session")?;
            if !e.cookies.contains(&(*c, *role)) {
                return Err(format!("cookie index names {id}, which does not hold it"));
            }
        }
        for (a, id) in &self.by_addr {
            let e = self.peers.get(id).ok_or("address of a removed session")?;
            if e.first != *a && e.current != *a {
                return Err(format!("address index {a} names {id} at {}", e.current));
            }
        }
        let n_policy: usize = self.half_open_policy.values().map(BTreeMap::len).sum();
        let n_source: usize = self.half_open_source.values().map(BTreeMap::len).sum();
        let n_entries = self
            .peers
            .values()
            .filter(|e| e.half_open.is_some())
            .count();
        if [n_policy, n_source, n_entries] != [self.half_open.len(); 3] {
            return Err(format!(
                "half-open counts differ: {} total, {n_policy} by policy, {n_source} by source, \
                 {n_entries} sessions",
                self.half_open.len()
            ));
        }
        if self.half_open.len() > self.limits.total {
            return Err("more half-open sessions than the bound".into());
        }
        if self
            .half_open_source
            .values()
            .any(|m| m.len() > self.limits.per_source)
            || self
                .half_open_policy
                .values()
                .any(|m| m.len() > self.limits.per_policy)
        {
            return Err("a per-source or per-policy bound exceeded".into());
        }
        Ok(())
    }
}

/// The body of the `ike_router` fuzz target (and of a unit test): arbitrary datagrams from a
/// handful of addresses and ports, admissions, cookie reports, phase-1 completions, moves and
/// removals in any order, with small bounds so evictions happen. After every step the tables
/// must agree ([`Demux::check_invariants`]) and every route must name a live session; a
/// message 1 from an address and port with a session must go to that session.
#[doc(hidden)]
pub fn fuzz_ops(data: &[u8]) {
    let mut d = Demux::new(HalfOpenLimits {
        total: 6,
        per_policy: 4,
        per_source: 3,
    });
    let policies: [Arc<str>; 2] = [Arc::from("A"), Arc::from("B")];
    let addr = |b: u8| {
        SocketAddr::from((
            [192, 0, 2, b % 4],
            [500, 4500, 1024][usize::from(b / 4 % 3)],
        ))
    };
    let cookie = |b: u8| [b % 8; 8];
    let mut ids: Vec<PeerId> = Vec::new();
    for op in data.chunks(4) {
        let [kind, x, y, z] = [
            op[0],
            *op.get(1).unwrap_or(&0),
            *op.get(2).unwrap_or(&0),
            *op.get(3).unwrap_or(&0),
        ];
        let pick = |ids: &[PeerId]| (!ids.is_empty()).then(|| ids[usize::from(x) % ids.len()]);
        match kind % 6 {
            0 => {
                let ex = [
                    ExchangeType::MAIN_MODE,
                    ExchangeType::AGGRESSIVE,
                    ExchangeType::QUICK_MODE,
                    ExchangeType::INFORMATIONAL,
                ][usize::from(z % 4)];
                let mut bytes = Vec::with_capacity(28);
                bytes.extend_from_slice(&cookie(y));
                bytes.extend_from_slice(&if z & 0x10 == 0 {
                    [0; 8]
                } else {
                    cookie(y >> 3)
                });
                bytes.extend_from_slice(&[0, 0x10, ex.0, 0]);
                bytes.extend_from_slice(&u32::from(z >> 6).to_be_bytes());
                bytes.extend_from_slice(&28u32.to_be_bytes());
                let from = addr(x);
                match d.route(from, &bytes) {
                    Route::Session(id) => {
                        assert!(d.peers.contains_key(&id), "routed to a removed session");
                        if bytes[8..16] == [0; 8] && !d.by_cookie.contains_key(&cookie(y)) {
                            assert_eq!(d.at(from), Some(id), "message 1 not by address");
                        }
                    }
                    Route::NewExchange => {
                        assert_eq!(d.at(from), None);
                        let a = d.admit(from, &policies[usize::from(z & 1)]);
                        ids.retain(|i| !a.evicted.contains(i));
                        ids.push(a.id);
                    }
                    Route::Drop(_) => {}
                }
            }
            1 => {
                if let Some(id) = pick(&ids) {
                    let role = |b: u8| {
                        if b & 1 == 0 {
                            Role::Initiator
                        } else {
                            Role::Responder
                        }
                    };
                    d.set_cookies(
                        id,
                        &[(cookie(y), role(z)), (cookie(z), role(y))][..usize::from(z % 3).min(2)],
                    );
                }
            }
            2 => {
                if let Some(id) = pick(&ids) {
                    d.established(id);
                }
            }
            3 => {
                if let Some(id) = pick(&ids) {
                    d.set_address(id, addr(y));
                }
            }
            4 => {
                if let Some(id) = pick(&ids) {
                    d.remove(id);
                    ids.retain(|i| *i != id);
                }
            }
            _ => {
                let id = d.insert_initiator(addr(y), &policies[usize::from(z & 1)]);
                ids.push(id);
            }
        }
        if let Err(e) = d.check_invariants() {
            panic!("demux tables disagree: {e}");
        }
    }
}

/// Takes `id`'s cookies out of the index (those it really holds).
fn unindex_cookies(
    by_cookie: &mut HashMap<[u8; 8], (PeerId, Role)>,
    id: PeerId,
    cookies: &[([u8; 8], Role)],
) {
    for (c, _) in cookies {
        if by_cookie.get(c).is_some_and(|(holder, _)| *holder == id) {
            by_cookie.remove(c);
        }
    }
}

#[cfg(test)]
mod tests;

//! `ike_responder`: a real initiator and a responder with a hostile network between them,
//! driven by arbitrary bytes. Each datagram in flight consumes an op byte (deliver, drop,
//! duplicate, flip a byte, truncate, replace by input bytes, advance time) and a `via` byte
//! that picks where it seems to come from: the real peer, another port of the peer's address,
//! other addresses, arriving on the IKE or the NAT-T port, with or without the non-ESP marker
//! (RFC 3948 §2.2). The session's address handling (NAT-D, the float to 4500, rebinding,
//! spoofed message 1s) is fuzzed with the rest; nothing may panic, whatever happens.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::config::{NetworkSpec, ProtectedNetwork};

use super::super::nat_t::NON_ESP_MARKER;
use super::super::{ChildRequest, Event};
use super::Input;

const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Addresses a spoofer may use besides the real peer's (one of them the receiver's own).
const OTHERS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(198, 51, 100, 7),
    Ipv4Addr::new(203, 0, 113, 9),
    B,
];

/// Where a datagram seems to come from and how it arrives, as the `via` byte picks it. `via`
/// 0 is the honest path: the sender's address, port 4500 when sent from the NAT-T port.
///
/// | bits | choice |
/// |------|--------|
/// | 0-1  | source address: the sender's (0, 1), another (2: one of `OTHERS`), the receiver's |
/// | 2-3  | source port: as sent (0), 500, 4500, a high port |
/// | 4    | arrives on the other of the IKE / NAT-T ports |
/// | 5    | non-ESP marker added (when absent) or removed (when present) |
fn route(
    via: u8,
    sender: Ipv4Addr,
    receiver: Ipv4Addr,
    nat: bool,
    bytes: &mut Vec<u8>,
) -> (SocketAddr, bool) {
    let ip = match via & 3 {
        0 | 1 => sender,
        2 => OTHERS[usize::from(via >> 6) % OTHERS.len()],
        _ => receiver,
    };
    let port = match via >> 2 & 3 {
        0 if nat => 4500,
        0 => 500,
        1 => 500,
        2 => 4500,
        _ => 1024 + u16::from(via),
    };
    let to_nat_t = nat ^ (via & 0x10 != 0);
    if via & 0x20 != 0 {
        if bytes.starts_with(&NON_ESP_MARKER) {
            bytes.drain(..NON_ESP_MARKER.len());
        } else {
            bytes.splice(0..0, NON_ESP_MARKER);
        }
    }
    (SocketAddr::new(IpAddr::V4(ip), port), to_nat_t)
}

/// How far an exchange got: what the responder reported (the unit tests check that the
/// harness reaches the deep states, not only that nothing panics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reached {
    pub isakmp_sa: bool,
    pub child_sa: bool,
    /// The responder answered on the NAT-T port (IKE floated).
    pub nat_t: bool,
}

/// Runs one hostile exchange described by `data`, on virtual time from `t0` (the caller reads
/// the clock: the core never does). The first byte seeds both sides' RNGs; its bit 0 makes
/// the initiator force UDP encapsulation (so IKE floats to 4500 without a NAT).
pub fn run(t0: Instant, data: &[u8]) -> Reached {
    let mut reached = Reached::default();
    let mut now = t0;
    let a_addr: SocketAddr = (A, 500).into();
    let b_addr: SocketAddr = (B, 500).into();
    let mut input = Input::new(data);
    let seed = input.byte();
    let mut sides = super::pair(now, seed, a_addr, b_addr);
    let mut flight: Vec<(usize, bool, Vec<u8>)> = Vec::new();
    for _round in 0..64 {
        for (i, s) in sides.iter_mut().enumerate() {
            while let Some(e) = s.poll_event() {
                if i == 1 {
                    match e {
                        Event::IsakmpSaEstablished { .. } => reached.isakmp_sa = true,
                        Event::ChildSaEstablished(_) => reached.child_sa = true,
                        _ => {}
                    }
                }
            }
            while let Some(t) = s.poll_transmit() {
                reached.nat_t |= i == 1 && t.source_port_nat_t;
                flight.push((1 - i, t.source_port_nat_t, t.bytes));
            }
        }
        if flight.is_empty() {
            if input.is_empty() {
                break;
            }
            let op = input.byte();
            now += Duration::from_millis(u64::from(op) * 500);
            if op.is_multiple_of(7) {
                sides[0].initiate_child(
                    now,
                    ChildRequest {
                        network: ProtectedNetwork {
                            local: NetworkSpec::Host([10, 1, 0, op].into()),
                            remote: NetworkSpec::Host([10, 2, 0, 1].into()),
                        },
                    },
                );
            }
            for s in &mut sides {
                if s.poll_timeout().is_some_and(|t| t <= now) {
                    s.handle_timeout(now);
                }
            }
            continue;
        }
        for (to, nat, mut bytes) in std::mem::take(&mut flight) {
            let (sender, receiver) = if to == 0 { (B, A) } else { (A, B) };
            let op = input.byte();
            let arg = usize::from(input.byte());
            let val = input.byte();
            let via = input.byte();
            let (from, to_nat_t) = route(via, sender, receiver, nat, &mut bytes);
            match op % 8 {
                1 => continue,
                2 => sides[to].handle_datagram(now, from, to_nat_t, &bytes.clone()),
                3 if !bytes.is_empty() => {
                    let i = arg % bytes.len();
                    bytes[i] ^= val | 1;
                }
                4 => bytes.truncate(arg % (bytes.len() + 1)),
                5 => {
                    let mut raw = input.take(arg % 96).to_vec();
                    // Keep the cookies (and marker) so that garbage reaches the exchange.
                    if raw.len() >= 28 && bytes.len() >= 20 && val.is_multiple_of(2) {
                        let keep = if bytes.starts_with(&NON_ESP_MARKER) {
                            20
                        } else {
                            16
                        };
                        raw[..keep].copy_from_slice(&bytes[..keep]);
                    }
                    bytes = raw;
                }
                6 => now += Duration::from_millis(arg as u64 * 100),
                _ => {}
            }
            sides[to].handle_datagram(now, from, to_nat_t, &bytes);
            sides[to].note_inbound_traffic(now, None);
        }
        for s in &mut sides {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
    }
    for s in &mut sides {
        s.delete_all(now);
        while s.poll_transmit().is_some() {}
        while s.poll_event().is_some() {}
    }
    reached
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::test_inputs;

    /// The fuzz target's function on 300 pseudo-random inputs (mostly honest choices, so the
    /// exchanges get deep before they are mangled or spoofed): nothing panics, and the inputs
    /// do reach established ISAKMP and child SAs and the NAT-T float.
    #[test]
    fn hundreds_of_hostile_and_spoofed_exchanges_never_panic() {
        let (mut isakmp, mut child, mut nat_t) = (0, 0, 0);
        for data in test_inputs(0xfeed, 300, 500, 200) {
            let r = super::run(Instant::now(), &data);
            isakmp += usize::from(r.isakmp_sa);
            child += usize::from(r.child_sa);
            nat_t += usize::from(r.nat_t);
        }
        assert!(
            isakmp >= 30 && child >= 10 && nat_t >= 10,
            "{isakmp} {child} {nat_t}"
        );
    }

    /// Honest choices only: the exchange completes, on port 500 or, with the seed's
    /// force-encapsulation bit, floated to 4500.
    #[test]
    fn honest_choices_complete_the_exchange() {
        let full = super::Reached {
            isakmp_sa: true,
            child_sa: true,
            nat_t: false,
        };
        assert_eq!(super::run(Instant::now(), &[0u8; 40]), full);
        let mut floated = [0u8; 40];
        floated[0] = 1;
        let r = super::run(Instant::now(), &floated);
        assert_eq!(
            r,
            super::Reached {
                nat_t: true,
                ..full
            }
        );
    }
}

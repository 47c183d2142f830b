//! Named algorithm suites and matched SA pairs with fresh random keys: what the demo keys its
//! manual tunnels with, and what `ikehub bench` and the criterion benches measure.

use std::net::IpAddr;

use rand::{CryptoRng, RngExt};

use crate::config::{KeyBytes, Mode, ProtectedNetwork};
use crate::crypto::{AuthAlgorithm, EncrAlgorithm};

use super::sa::{AhKeys, Direction, EspKeys, LifetimeLimits, SaEncapsulation, SaParams};

/// An ESP and/or AH algorithm combination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suite {
    pub name: &'static str,
    pub esp: Option<(EncrAlgorithm, AuthAlgorithm)>,
    pub ah: Option<AuthAlgorithm>,
}

/// The suites `ikehub bench` reports, most common first.
pub const BENCH_SUITES: [Suite; 7] = [
    Suite {
        name: "esp-aes128-sha1",
        esp: Some((EncrAlgorithm::AesCbc128, AuthAlgorithm::HmacSha1)),
        ah: None,
    },
    Suite {
        name: "esp-aes256-sha256",
        esp: Some((EncrAlgorithm::AesCbc256, AuthAlgorithm::HmacSha256)),
        ah: None,
    },
    Suite {
        name: "esp-3des-md5",
        esp: Some((EncrAlgorithm::TripleDes, AuthAlgorithm::HmacMd5)),
        ah: None,
    },
    Suite {
        name: "esp-null-sha1",
        esp: Some((EncrAlgorithm::Null, AuthAlgorithm::HmacSha1)),
        ah: None,
    },
    Suite {
        name: "ah-sha1",
        esp: None,
        ah: Some(AuthAlgorithm::HmacSha1),
    },
    Suite {
        name: "ah-sha1+esp-aes128",
        esp: Some((EncrAlgorithm::AesCbc128, AuthAlgorithm::None)),
        ah: Some(AuthAlgorithm::HmacSha1),
    },
    Suite {
        name: "esp-aes128gcm",
        esp: Some((EncrAlgorithm::AesGcm128, AuthAlgorithm::None)),
        ah: None,
    },
];

fn random_key<R: CryptoRng + ?Sized>(rng: &mut R, len: usize) -> KeyBytes {
    let mut k = vec![0u8; len];
    rng.fill_bytes(&mut k);
    KeyBytes(k)
}

/// One end's view of a tunnel: where it is, where the peer is, what it protects.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub local: IpAddr,
    pub peer: IpAddr,
    pub encapsulation: SaEncapsulation,
    pub protected_networks: Vec<ProtectedNetwork>,
}

/// The parameters of a matched tunnel between `a` and `b` with fresh random keys: returns
/// (a's outbound, b's inbound) for SPI `spi_ab` and (b's outbound, a's inbound) for `spi_ba`.
/// For an AH+ESP bundle the AH SPI is the ESP SPI + 1.
pub fn tunnel_pair<R: CryptoRng + ?Sized>(
    suite: &Suite,
    rng: &mut R,
    a: &Endpoint,
    b: &Endpoint,
    spi_ab: u32,
    spi_ba: u32,
    replay_window: u32,
) -> [(SaParams, SaParams); 2] {
    let mut direction = |from: &Endpoint, to: &Endpoint, spi: u32| {
        let esp = suite.esp.map(|(e, i)| EspKeys {
            spi,
            encryption: e,
            encryption_key: random_key(rng, e.keymat_len()),
            authentication: i,
            authentication_key: random_key(rng, i.key_len()),
        });
        let ah = suite.ah.map(|i| AhKeys {
            spi: if suite.esp.is_some() { spi + 1 } else { spi },
            authentication: i,
            authentication_key: random_key(rng, i.key_len()),
        });
        let params = |dir, ep: &Endpoint| SaParams {
            direction: dir,
            mode: Mode::Tunnel,
            esp: esp.clone(),
            ah: ah.clone(),
            local: ep.local,
            peer: ep.peer,
            encapsulation: ep.encapsulation,
            replay_window: if dir == Direction::Inbound {
                replay_window
            } else {
                0
            },
            lifetime: LifetimeLimits::UNLIMITED,
            protected_networks: ep.protected_networks.clone(),
        };
        (
            params(Direction::Outbound, from),
            params(Direction::Inbound, to),
        )
    };
    let ab = direction(a, b, spi_ab);
    let ba = direction(b, a, spi_ba);
    [ab, ba]
}

/// A random SPI outside the reserved range 1..=255 (RFC 4303 §2.1).
pub fn random_spi<R: CryptoRng + ?Sized>(rng: &mut R) -> u32 {
    rng.random_range(256..=u32::MAX - 1)
}

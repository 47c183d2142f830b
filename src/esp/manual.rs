//! SA parameters of a manually keyed policy (`ipsec-policy-manual`): SPIs and keys straight
//! from the profile, no lifetime (manual SAs never expire), and anti-replay off unless the
//! transform sets a window (SmartWare shows `REPLAY no` for manual SAs: a manually keyed
//! sender restarts its sequence numbers at 1 on every reboot, which a window would drop).

use crate::config::{Encapsulation, Interface, KeyBytes, ManualKeys, ManualPolicy};

use super::sa::{AhKeys, Direction, EspKeys, LifetimeLimits, SaEncapsulation, SaParams};

fn key(k: &Option<KeyBytes>) -> KeyBytes {
    k.clone().unwrap_or_else(|| KeyBytes(Vec::new()))
}

/// The SA of one direction of a manual policy on `interface`.
pub fn sa_params(policy: &ManualPolicy, interface: &Interface, direction: Direction) -> SaParams {
    let t = &policy.transform;
    let keys: &ManualKeys = match direction {
        Direction::Inbound => &policy.inbound,
        Direction::Outbound => &policy.outbound,
    };
    let esp = t.esp.map(|e| EspKeys {
        spi: keys.esp_spi.unwrap_or(0),
        encryption: e.encryption,
        encryption_key: key(&keys.esp_encryption_key),
        authentication: e.authentication,
        authentication_key: key(&keys.esp_authentication_key),
    });
    let ah = t.ah.map(|a| AhKeys {
        spi: keys.ah_spi.unwrap_or(0),
        authentication: a,
        authentication_key: key(&keys.ah_authentication_key),
    });
    let encapsulation = match policy.encapsulation {
        Encapsulation::Esp => SaEncapsulation::Raw,
        Encapsulation::Udp => SaEncapsulation::Udp {
            local_port: interface.nat_t_port,
            peer_port: interface.nat_t_port,
        },
    };
    SaParams {
        direction,
        mode: t.mode,
        esp,
        ah,
        local: interface.address,
        peer: policy.peer,
        encapsulation,
        replay_window: t.replay_window.unwrap_or(0),
        lifetime: LifetimeLimits::UNLIMITED,
        protected_networks: policy.protected_networks.clone(),
    }
}

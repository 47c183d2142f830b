//! Arbitrary bytes into every header parser, the fragmenter and the ICMP builder: errors are
//! fine, panics are not; whatever parses must re-emit and re-parse to the same repr.
#![no_main]

use std::net::Ipv4Addr;

use ikehub::wire::{
    AhPacket, AhRepr, EspPacket, EspRepr, Icmpv4Packet, Icmpv4Repr, Ipv4Fragmenter, Ipv4Packet,
    Ipv4Repr, UdpPacket, UdpRepr, build_frag_needed,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Ipv4Packet::new_checked(data) {
        let _ = (p.payload(), p.options(), p.verify_checksum());
        if let Ok(r) = Ipv4Repr::parse(&p, false) {
            let mut out = vec![0u8; r.buffer_len()];
            r.emit(&mut out).unwrap();
            let mut full = out.clone();
            full.resize(r.buffer_len() + r.payload_len, 0);
            let again = Ipv4Repr::parse(&Ipv4Packet::new_checked(&full[..]).unwrap(), true).unwrap();
            assert_eq!(again, r);
        }
        let mtu = 68 + usize::from(data.first().copied().unwrap_or(0)) * 4;
        if let Ok(mut f) = Ipv4Fragmenter::new(data, mtu) {
            let mut out = vec![0u8; mtu];
            let mut n = 0;
            while let Ok(Some(len)) = f.next_into(&mut out) {
                assert!(len <= mtu);
                n += 1;
                assert!(n <= 70_000);
            }
        }
        let mut icmp = [0u8; 600];
        let _ = build_frag_needed(Ipv4Addr::LOCALHOST, data, 1400, &mut icmp);
    }
    if let Ok(p) = UdpPacket::new_checked(data) {
        let r = UdpRepr::parse(&p).unwrap();
        let mut out = [0u8; 8];
        r.emit(&mut out, p.payload().len()).unwrap();
        assert_eq!(out[..6], data[..6]);
    }
    if let Ok(p) = EspPacket::new_checked(data) {
        let r = EspRepr::parse(&p).unwrap();
        let mut out = [0u8; 8];
        r.emit(&mut out).unwrap();
        assert_eq!(out, data[..8]);
    }
    if let Ok(p) = AhPacket::new_checked(data) {
        let r = AhRepr::parse(&p).unwrap();
        let _ = (p.icv(), p.payload());
        let mut out = vec![0u8; r.buffer_len()];
        if r.emit(&mut out).is_ok() {
            assert_eq!(out[..2], data[..2]);
            assert_eq!(out[4..12], data[4..12]);
        }
    }
    if let Ok(p) = Icmpv4Packet::new_checked(data) {
        let r = Icmpv4Repr::parse(&p).unwrap();
        let mut out = vec![0u8; data.len()];
        r.emit(&mut out, p.data()).unwrap();
        assert!(Icmpv4Packet::new_checked(&out[..]).unwrap().verify_checksum());
    }
});

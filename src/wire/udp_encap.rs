//! RFC 3948 framing on the NAT-T port: one UDP port carries IKE (behind the four zero bytes of
//! the non-ESP marker, §2.2), ESP (a non-zero SPI first, §2.1) and NAT-keepalives (a single
//! 0xFF byte, §2.3). Every component that reads or writes that port demultiplexes here.

/// Precedes every IKE message on the NAT-T port: zero where ESP has its SPI.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// A NAT-keepalive is this single byte.
pub const NAT_KEEPALIVE: u8 = 0xff;

/// What a datagram on the NAT-T port carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpEncapPayload<'a> {
    /// An IKE message (the marker removed).
    Ike(&'a [u8]),
    /// An ESP packet, SPI first.
    Esp(&'a [u8]),
    Keepalive,
    /// Too short to be anything (shorter than an ESP header).
    Runt,
}

/// Demultiplexes a datagram received on the NAT-T port.
pub fn classify(datagram: &[u8]) -> UdpEncapPayload<'_> {
    if datagram == [NAT_KEEPALIVE] {
        return UdpEncapPayload::Keepalive;
    }
    if let Some(ike) = datagram.strip_prefix(&NON_ESP_MARKER[..]) {
        return UdpEncapPayload::Ike(ike);
    }
    // SPI and sequence number (RFC 4303 §2).
    if datagram.len() >= 8 {
        UdpEncapPayload::Esp(datagram)
    } else {
        UdpEncapPayload::Runt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_ike_esp_keepalive_and_runts_apart() {
        let ike = [0, 0, 0, 0, 0x83, 0xd3, 0x74, 0xc3];
        assert_eq!(classify(&ike), UdpEncapPayload::Ike(&ike[4..]));
        let esp = [0, 0, 0x10, 0x01, 0, 0, 0, 1];
        assert_eq!(classify(&esp), UdpEncapPayload::Esp(&esp));
        assert_eq!(classify(&[0xff]), UdpEncapPayload::Keepalive);
        assert_eq!(classify(&[0xff, 0]), UdpEncapPayload::Runt);
        assert_eq!(classify(&[]), UdpEncapPayload::Runt);
        assert_eq!(classify(&[0, 0, 0, 0]), UdpEncapPayload::Ike(&[]));
    }
}

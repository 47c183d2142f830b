//! UDP header (RFC 768), as used for RFC 3948 UDP encapsulation of ESP.

use std::net::IpAddr;

use super::checksum;
use super::ip::IpProtocol;
use super::{Error, Result, be16, put16};

/// Length of a UDP header.
pub const HEADER_LEN: usize = 8;

/// A zero-copy view of a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps after checking that the header and the length field fit the buffer.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(self.len());
        if len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if b.len() < len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    /// The length field: header plus payload.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }

    /// The payload up to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// True when the checksum verifies against the pseudo-header of `src` and `dst`, or is 0
    /// (not computed) over IPv4, which allows that (RFC 768, RFC 3948 §3.1.1); over IPv6 a
    /// zero checksum is refused (RFC 8200 §8.1).
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        if self.checksum() == 0 {
            return src.is_ipv4();
        }
        let d = &self.buffer.as_ref()[..usize::from(self.len())];
        checksum::combine(&[pseudo_header(src, dst, d.len()), checksum::sum(d)]) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), 0, v);
    }

    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), 2, v);
    }

    pub fn set_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), 4, v);
    }

    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), 6, v);
    }

    /// Computes the checksum over the pseudo-header of `src` and `dst` (either family, RFC 768
    /// and RFC 8200 §8.1), header and payload; the length field must be set.
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        let len = usize::from(self.len());
        let d = &self.buffer.as_ref()[..len];
        let c = checksum::combine(&[pseudo_header(src, dst, len), checksum::sum(d)]);
        // A computed 0 is sent as all ones (RFC 768; over IPv6 a zero means none, refused).
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
}

fn pseudo_header(src: IpAddr, dst: IpAddr, len: usize) -> u32 {
    checksum::pseudo_header(src, dst, IpProtocol::UDP, len as u32)
}

/// A parsed UDP header; the payload length is given at emit time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
}

impl UdpRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &UdpPacket<T>) -> Result<Self> {
        p.check_len()?;
        Ok(Self {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header for `payload_len` payload bytes with checksum 0: RFC 3948 §2.1 lets
    /// the sender of UDP-encapsulated ESP over IPv4 leave it zero (ESP has its own integrity).
    pub fn emit(&self, buf: &mut [u8], payload_len: usize) -> Result<()> {
        if buf.len() < HEADER_LEN {
            return Err(Error::BufferTooSmall);
        }
        let len = u16::try_from(HEADER_LEN + payload_len).map_err(|_| Error::Malformed)?;
        let mut p = UdpPacket::new_unchecked(&mut buf[..HEADER_LEN]);
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len(len);
        p.set_checksum(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        let b = [
            0x11, 0x94, 0x11, 0x94, 0x00, 0x0c, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef,
        ];
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.src_port(), 4500);
        assert_eq!(p.dst_port(), 4500);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        let r = UdpRepr::parse(&p).unwrap();
        let mut out = [0u8; 8];
        r.emit(&mut out, 4).unwrap();
        assert_eq!(out, b[..8]);
    }

    #[test]
    fn checksum_roundtrip() {
        let mut b = [0u8; 13];
        UdpRepr {
            src_port: 500,
            dst_port: 500,
        }
        .emit(&mut b, 5)
        .unwrap();
        b[8..].copy_from_slice(b"hello");
        let v4: [IpAddr; 2] = ["192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap()];
        let v6: [IpAddr; 2] = [
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        ];
        for [s, d] in [v4, v6] {
            let mut p = UdpPacket::new_unchecked(&mut b[..]);
            p.set_src_port(500);
            p.fill_checksum(s, d);
            assert_ne!(p.checksum(), 0);
            assert!(p.verify_checksum(s, d));
            assert!(!p.verify_checksum(d, d), "the addresses are covered");
            p.set_src_port(501);
            assert!(!p.verify_checksum(s, d));
            // No checksum: allowed over IPv4 only (RFC 8200 §8.1).
            p.set_checksum(0);
            assert_eq!(p.verify_checksum(s, d), s.is_ipv4());
        }
    }
}

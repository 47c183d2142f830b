//! Authentication Header (RFC 4302 §2).

use super::ip::IpProtocol;
use super::{Error, Result, be32, put32};

/// Fixed part of the AH header: next header, payload length, reserved, SPI, sequence number.
pub const FIXED_LEN: usize = 12;

/// A zero-copy view of an AH packet (header, ICV, then the protected payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AhPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> AhPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the fixed part and the whole header (per the payload length field) fit.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < FIXED_LEN {
            return Err(Error::Truncated);
        }
        if self.header_len() < FIXED_LEN {
            return Err(Error::Malformed);
        }
        if b.len() < self.header_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[0])
    }

    /// The raw payload length field: header length in 32-bit words minus 2 (RFC 4302 §2.2).
    pub fn payload_len_field(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    /// Header length in bytes, ICV included.
    pub fn header_len(&self) -> usize {
        (usize::from(self.payload_len_field()) + 2) * 4
    }

    pub fn reserved(&self) -> u16 {
        u16::from_be_bytes([self.buffer.as_ref()[2], self.buffer.as_ref()[3]])
    }

    pub fn spi(&self) -> u32 {
        be32(self.buffer.as_ref(), 4)
    }

    pub fn sequence_number(&self) -> u32 {
        be32(self.buffer.as_ref(), 8)
    }

    /// The ICV field (with any padding to a 32-bit boundary).
    pub fn icv(&self) -> &[u8] {
        &self.buffer.as_ref()[FIXED_LEN..self.header_len()]
    }

    /// The protected payload after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> AhPacket<T> {
    pub fn set_next_header(&mut self, p: IpProtocol) {
        self.buffer.as_mut()[0] = p.0;
    }

    pub fn set_payload_len_field(&mut self, v: u8) {
        self.buffer.as_mut()[1] = v;
    }

    pub fn set_reserved(&mut self, v: u16) {
        self.buffer.as_mut()[2..4].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_spi(&mut self, v: u32) {
        put32(self.buffer.as_mut(), 4, v);
    }

    pub fn set_sequence_number(&mut self, v: u32) {
        put32(self.buffer.as_mut(), 8, v);
    }

    pub fn icv_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[FIXED_LEN..hl]
    }
}

/// A parsed AH header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AhRepr {
    pub next_header: IpProtocol,
    pub spi: u32,
    pub sequence_number: u32,
    /// Length of the ICV field in bytes (12 for the -96 algorithms, 16 for SHA-256-128); must
    /// keep the header a multiple of 4 bytes for IPv4 (RFC 4302 §3.3.3.2.1).
    pub icv_len: usize,
}

impl AhRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &AhPacket<T>) -> Result<Self> {
        p.check_len()?;
        Ok(Self {
            next_header: p.next_header(),
            spi: p.spi(),
            sequence_number: p.sequence_number(),
            icv_len: p.header_len() - FIXED_LEN,
        })
    }

    pub const fn buffer_len(&self) -> usize {
        FIXED_LEN + self.icv_len
    }

    /// Writes the header with a zeroed ICV field (the ICV is computed over it zeroed).
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let len = self.buffer_len();
        if !len.is_multiple_of(4) || len / 4 < 3 || len / 4 - 2 > 255 {
            return Err(Error::Malformed);
        }
        if buf.len() < len {
            return Err(Error::BufferTooSmall);
        }
        let mut p = AhPacket::new_unchecked(&mut buf[..len]);
        p.set_next_header(self.next_header);
        p.set_payload_len_field((len / 4 - 2) as u8);
        p.set_reserved(0);
        p.set_spi(self.spi);
        p.set_sequence_number(self.sequence_number);
        p.icv_mut().fill(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        // next header 50 (ESP), payload length 4 (= 6 words: 12 + 12-byte ICV), SPI 0x1000,
        // sequence number 7.
        let mut b = [0u8; 26];
        b[..12].copy_from_slice(&[50, 4, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 7]);
        b[12..24].copy_from_slice(&[0xaa; 12]);
        b[24..].copy_from_slice(&[1, 2]);
        let p = AhPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.icv(), &[0xaa; 12]);
        assert_eq!(p.payload(), &[1, 2]);
        let r = AhRepr::parse(&p).unwrap();
        assert_eq!(
            r,
            AhRepr {
                next_header: IpProtocol::ESP,
                spi: 0x1000,
                sequence_number: 7,
                icv_len: 12
            }
        );
        let mut out = [0xffu8; 24];
        r.emit(&mut out).unwrap();
        assert_eq!(out[..12], b[..12]);
        assert_eq!(out[12..], [0; 12]);
    }

    #[test]
    fn payload_len_below_minimum() {
        let b = [50, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 7];
        assert_eq!(AhPacket::new_checked(&b[..]), Err(Error::Malformed));
    }
}

//! ESP header (RFC 4303 §2): SPI and sequence number; the rest of the packet (IV, ciphertext,
//! trailer, ICV) depends on the SA and is handled in `crate::esp`.

use super::{Error, Result, be32, put32};

/// Length of the ESP header (SPI + sequence number).
pub const HEADER_LEN: usize = 8;
/// Length of the ESP trailer fields after the padding: pad length and next header.
pub const TRAILER_LEN: usize = 2;

/// A zero-copy view of an ESP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EspPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn spi(&self) -> u32 {
        be32(self.buffer.as_ref(), 0)
    }

    pub fn sequence_number(&self) -> u32 {
        be32(self.buffer.as_ref(), 4)
    }

    /// Everything after the header: IV, ciphertext, trailer and ICV.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EspPacket<T> {
    pub fn set_spi(&mut self, v: u32) {
        put32(self.buffer.as_mut(), 0, v);
    }

    pub fn set_sequence_number(&mut self, v: u32) {
        put32(self.buffer.as_mut(), 4, v);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// A parsed ESP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EspRepr {
    pub spi: u32,
    pub sequence_number: u32,
}

impl EspRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &EspPacket<T>) -> Result<Self> {
        p.check_len()?;
        Ok(Self {
            spi: p.spi(),
            sequence_number: p.sequence_number(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        if buf.len() < HEADER_LEN {
            return Err(Error::BufferTooSmall);
        }
        let mut p = EspPacket::new_unchecked(buf);
        p.set_spi(self.spi);
        p.set_sequence_number(self.sequence_number);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        // The first bytes of RFC 3602 case #7: SPI 0x8765, sequence number 2.
        let b = [0x00, 0x00, 0x87, 0x65, 0x00, 0x00, 0x00, 0x02, 0xf4, 0xe7];
        let p = EspPacket::new_checked(&b[..]).unwrap();
        let r = EspRepr::parse(&p).unwrap();
        assert_eq!(r.spi, 0x8765);
        assert_eq!(r.sequence_number, 2);
        assert_eq!(p.payload(), &[0xf4, 0xe7]);
        let mut out = [0u8; 8];
        r.emit(&mut out).unwrap();
        assert_eq!(out, b[..8]);
    }
}

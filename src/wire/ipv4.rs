//! IPv4 header (RFC 791), options included.

use std::net::Ipv4Addr;

use super::checksum;
use super::ip::IpProtocol;
use super::{Error, Result, be16, put16};

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;
/// Largest IPv4 header (IHL = 15).
pub const MAX_HEADER_LEN: usize = 60;
/// The minimum MTU every IPv4 link must carry (RFC 791).
pub const MIN_MTU: usize = 68;

mod field {
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_MASK: u16 = 0x1fff;

/// A zero-copy view of an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps without checks; accessors may panic on short buffers. Use `new_checked`.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the version is 4, the header length is at least 20, and that the header and
    /// the total length fit the buffer (which may be longer: link padding).
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[0] >> 4 != 4 {
            return Err(Error::Malformed);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(Error::Malformed);
        }
        let total = usize::from(self.total_len());
        if total < hl {
            return Err(Error::Malformed);
        }
        if b.len() < hl || b.len() < total {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The DSCP/ECN byte (former TOS).
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    pub fn dont_frag(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLAGS_FRAG) & FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLAGS_FRAG) & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (be16(self.buffer.as_ref(), field::FLAGS_FRAG) & FRAG_MASK) << 3
    }

    /// True for any fragment (first, middle or last) of a fragmented datagram.
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::PROTOCOL])
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }

    /// The whole header, options included.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The option bytes (empty for a 20-byte header).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// True when the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.header())) == 0xffff
    }

    /// The payload up to the total length (link padding excluded).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn b(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Sets version 4 and the header length in bytes (a multiple of 4, 20..=60).
    pub fn set_version_and_header_len(&mut self, len: usize) {
        self.b()[field::VER_IHL] = 0x40 | ((len / 4) as u8 & 0x0f);
    }

    pub fn set_tos(&mut self, v: u8) {
        self.b()[field::TOS] = v;
    }

    pub fn set_total_len(&mut self, v: u16) {
        put16(self.b(), field::LENGTH, v);
    }

    pub fn set_ident(&mut self, v: u16) {
        put16(self.b(), field::IDENT, v);
    }

    /// Sets DF, MF and the fragment offset (in bytes, a multiple of 8) at once.
    pub fn set_flags_and_frag_offset(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut v = (offset >> 3) & FRAG_MASK;
        if dont_frag {
            v |= FLAG_DF;
        }
        if more_frags {
            v |= FLAG_MF;
        }
        put16(self.b(), field::FLAGS_FRAG, v);
    }

    pub fn set_ttl(&mut self, v: u8) {
        self.b()[field::TTL] = v;
    }

    pub fn set_protocol(&mut self, p: IpProtocol) {
        self.b()[field::PROTOCOL] = p.0;
    }

    pub fn set_checksum(&mut self, v: u16) {
        put16(self.b(), field::CHECKSUM, v);
    }

    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.b()[field::SRC..field::SRC + 4].copy_from_slice(&a.octets());
    }

    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.b()[field::DST..field::DST + 4].copy_from_slice(&a.octets());
    }

    /// Recomputes the header checksum over the current header (options included).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = checksum::checksum(&self.buffer.as_ref()[..hl]);
        self.set_checksum(c);
    }

    /// The payload, mutable, up to the total length.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, tl) = (self.header_len(), usize::from(self.total_len()));
        &mut self.b()[hl..tl]
    }
}

/// A parsed IPv4 header. Options are not represented: `parse` skips them and `emit` writes a
/// 20-byte header; code that must keep options (transport mode) works on the packet view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: IpProtocol,
    /// Payload length in bytes (total length minus the header).
    pub payload_len: usize,
    pub ttl: u8,
    /// DSCP and ECN.
    pub tos: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// Fragment offset in bytes (multiple of 8).
    pub frag_offset: u16,
}

impl Ipv4Repr {
    /// A header we originate: TTL 64, no DSCP, ID 0, not fragmented, DF clear. Set the other
    /// fields with struct-update syntax where they differ.
    pub fn new(
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
        protocol: IpProtocol,
        payload_len: usize,
    ) -> Self {
        Self {
            src_addr,
            dst_addr,
            protocol,
            payload_len,
            ttl: 64,
            tos: 0,
            ident: 0,
            dont_frag: false,
            more_frags: false,
            frag_offset: 0,
        }
    }

    /// Parses a checked packet; `verify_checksum` rejects a header whose checksum is wrong.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>, verify_checksum: bool) -> Result<Self> {
        p.check_len()?;
        if verify_checksum && !p.verify_checksum() {
            return Err(Error::Checksum);
        }
        Ok(Self {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: usize::from(p.total_len()) - p.header_len(),
            ttl: p.ttl(),
            tos: p.tos(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            more_frags: p.more_frags(),
            frag_offset: p.frag_offset(),
        })
    }

    /// Length of the emitted header (no options).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 20-byte header, checksum filled, into the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        if buf.len() < HEADER_LEN {
            return Err(Error::BufferTooSmall);
        }
        let total = HEADER_LEN + self.payload_len;
        let total = u16::try_from(total).map_err(|_| Error::Malformed)?;
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..HEADER_LEN]);
        p.set_version_and_header_len(HEADER_LEN);
        p.set_tos(self.tos);
        p.set_total_len(total);
        p.set_ident(self.ident);
        p.set_flags_and_frag_offset(self.dont_frag, self.more_frags, self.frag_offset);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        p.fill_checksum();
        Ok(())
    }
}

/// Zeroes in a copy of an IPv4 header every field AH does not protect (RFC 4302 §3.3.3.1.1.1:
/// TOS, flags, fragment offset, TTL, checksum) and the data of every mutable option (Appendix
/// A: only EOL, NOP, security, extended security, commercial security, router alert and SDBM
/// are immutable; any other option is zeroed whole, type and length included).
pub fn zero_mutable_fields(header: &mut [u8]) {
    if header.len() < HEADER_LEN {
        return;
    }
    header[field::TOS] = 0;
    header[field::FLAGS_FRAG] = 0;
    header[field::FLAGS_FRAG + 1] = 0;
    header[field::TTL] = 0;
    header[field::CHECKSUM] = 0;
    header[field::CHECKSUM + 1] = 0;
    let mut i = HEADER_LEN;
    while i < header.len() {
        let kind = header[i];
        match kind {
            0 => break,
            1 => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let len = header.get(i + 1).map_or(0, |l| usize::from(*l));
        let len = if len < 2 || i + len > header.len() {
            header.len() - i
        } else {
            len
        };
        let immutable = matches!(kind, 130 | 133 | 134 | 148 | 149);
        if !immutable {
            header[i..i + len].fill(0);
        }
        i += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ICMP echo request 192.168.123.3 -> 192.168.123.200 (the inner packet of RFC 3602
    /// case #7): header checksum 0xf988.
    const HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x54, 0x09, 0x04, 0x00, 0x00, 0x40, 0x01, 0xf9, 0x88, 0xc0, 0xa8, 0x7b,
        0x03, 0xc0, 0xa8, 0x7b, 0xc8,
    ];

    #[test]
    fn parses_bytes() {
        let mut buf = [0u8; 0x54];
        buf[..20].copy_from_slice(&HDR);
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        let r = Ipv4Repr::parse(&p, true).unwrap();
        assert_eq!(r.src_addr, Ipv4Addr::new(192, 168, 123, 3));
        assert_eq!(r.dst_addr, Ipv4Addr::new(192, 168, 123, 200));
        assert_eq!(r.protocol, IpProtocol::ICMP);
        assert_eq!(r.payload_len, 0x54 - 20);
        assert_eq!(r.ttl, 64);
        assert_eq!(r.ident, 0x0904);
        assert!(!r.dont_frag && !r.more_frags && r.frag_offset == 0);
        let mut out = [0u8; 20];
        r.emit(&mut out).unwrap();
        assert_eq!(out, HDR);
    }

    #[test]
    fn flags_and_offset() {
        let mut h = HDR;
        h[6] = 0x60; // DF | MF? DF=0x40 MF=0x20
        h[7] = 0x03; // offset 3*8
        let mut buf = [0u8; 0x54];
        buf[..20].copy_from_slice(&h);
        let p = Ipv4Packet::new_unchecked(&buf[..]);
        assert!(p.dont_frag() && p.more_frags());
        assert_eq!(p.frag_offset(), 24);
        assert!(p.is_fragment());
        assert!(!p.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&p, true), Err(Error::Checksum));
    }

    #[test]
    fn rejects_bad_version_and_ihl() {
        let mut buf = [0u8; 0x54];
        buf[..20].copy_from_slice(&HDR);
        buf[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&buf[..]).unwrap_err(),
            Error::Malformed
        );
        buf[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&buf[..]).unwrap_err(),
            Error::Malformed
        );
        buf[0] = 0x4f; // 60-byte header but total length says 0x54: fine
        assert!(Ipv4Packet::new_checked(&buf[..]).is_ok());
        buf[2] = 0;
        buf[3] = 30; // total shorter than header
        assert_eq!(
            Ipv4Packet::new_checked(&buf[..]).unwrap_err(),
            Error::Malformed
        );
    }

    #[test]
    fn mutable_fields_and_options() {
        let mut h = [0u8; 32];
        h[..20].copy_from_slice(&HDR);
        h[0] = 0x48;
        h[1] = 0xb8;
        h[20..24].copy_from_slice(&[148, 4, 0, 0]); // router alert: immutable
        h[24..31].copy_from_slice(&[7, 7, 4, 1, 2, 3, 4]); // record route: mutable
        h[31] = 0;
        zero_mutable_fields(&mut h);
        assert_eq!(h[1], 0);
        assert_eq!(h[8], 0);
        assert_eq!(&h[10..12], &[0, 0]);
        assert_eq!(&h[20..24], &[148, 4, 0, 0]);
        assert_eq!(&h[24..31], &[0; 7]);
        assert_eq!(h[9], 1, "protocol is immutable");
    }
}

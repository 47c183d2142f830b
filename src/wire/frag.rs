//! IPv4 fragmentation (RFC 791 §3.2, "An Example Fragmentation Procedure").
//!
//! The daemon sends outer ESP/AH packets on a raw socket with `IP_HDRINCL`, where the kernel
//! will not fragment for us; a packet without DF that exceeds the path MTU is cut here into
//! caller buffers.

use super::ipv4::{self, Ipv4Packet};
use super::{Error, Result};

/// Produces the fragments of one IPv4 packet, one caller buffer at a time, without allocating.
///
/// ```
/// # use ikehub::wire::Ipv4Fragmenter;
/// # fn send(_: &[u8]) {}
/// # let packet = { let mut p = vec![0u8; 3000];
/// #   ikehub::wire::Ipv4Repr { src_addr: [192,0,2,1].into(), dst_addr: [192,0,2,2].into(),
/// #   protocol: ikehub::wire::IpProtocol::ESP, payload_len: 2980, ttl: 64, tos: 0, ident: 7,
/// #   dont_frag: false, more_frags: false, frag_offset: 0 }.emit(&mut p).unwrap(); p };
/// let mut frags = Ipv4Fragmenter::new(&packet, 1500).unwrap();
/// let mut buf = [0u8; 1500];
/// while let Some(len) = frags.next_into(&mut buf).unwrap() {
///     send(&buf[..len]);
/// }
/// ```
#[derive(Debug)]
pub struct Ipv4Fragmenter<'a> {
    header: &'a [u8],
    payload: &'a [u8],
    mtu: usize,
    /// Offset of the next fragment within the payload of the original.
    offset: usize,
    /// Fragment offset of the original (non-zero when re-fragmenting a fragment).
    base_offset: usize,
    original_mf: bool,
    /// Header length of non-first fragments (only options with the copy flag are kept).
    later_header_len: usize,
}

impl<'a> Ipv4Fragmenter<'a> {
    /// Prepares to fragment `packet` for `mtu`. Fails when the packet is malformed, has DF set
    /// while exceeding the MTU, or when the MTU cannot carry a header plus 8 bytes of data.
    pub fn new(packet: &'a [u8], mtu: usize) -> Result<Self> {
        let p = Ipv4Packet::new_checked(packet)?;
        let hl = p.header_len();
        let total = usize::from(p.total_len());
        if total > mtu && p.dont_frag() {
            return Err(Error::Malformed);
        }
        let later_header_len = ipv4::HEADER_LEN + copied_options_len(p.options());
        if mtu < hl.max(later_header_len) + 8 {
            return Err(Error::Malformed);
        }
        Ok(Self {
            header: &packet[..hl],
            payload: &packet[hl..total],
            mtu,
            offset: 0,
            base_offset: usize::from(p.frag_offset()),
            original_mf: p.more_frags(),
            later_header_len,
        })
    }

    /// Number of fragments this packet will be cut into.
    pub fn count(&self) -> usize {
        let first = (self.mtu - self.header.len()) & !7;
        if self.payload.len() <= self.mtu - self.header.len() {
            return 1;
        }
        let rest = self.payload.len() - first;
        let per = (self.mtu - self.later_header_len) & !7;
        1 + rest.div_ceil(per)
    }

    /// Writes the next fragment into `out` and returns its length, or `None` when done.
    pub fn next_into(&mut self, out: &mut [u8]) -> Result<Option<usize>> {
        if self.offset >= self.payload.len() && !(self.offset == 0 && self.payload.is_empty()) {
            return Ok(None);
        }
        if self.offset == 0 && self.payload.is_empty() {
            // A header-only packet: one "fragment", the packet itself.
            self.offset = 1;
            if out.len() < self.header.len() {
                return Err(Error::BufferTooSmall);
            }
            out[..self.header.len()].copy_from_slice(self.header);
            return Ok(Some(self.header.len()));
        }
        let first = self.offset == 0;
        if first && self.header.len() + self.payload.len() <= self.mtu {
            // Fits already: the packet itself, flags untouched.
            let len = self.header.len() + self.payload.len();
            if out.len() < len {
                return Err(Error::BufferTooSmall);
            }
            out[..self.header.len()].copy_from_slice(self.header);
            out[self.header.len()..len].copy_from_slice(self.payload);
            self.offset = self.payload.len();
            return Ok(Some(len));
        }
        let hl = if first {
            self.header.len()
        } else {
            self.later_header_len
        };
        let room = self.mtu - hl;
        let remaining = self.payload.len() - self.offset;
        let (chunk, last) = if remaining <= room {
            (remaining, true)
        } else {
            (room & !7, false)
        };
        let len = hl + chunk;
        if out.len() < len {
            return Err(Error::BufferTooSmall);
        }
        if first {
            out[..hl].copy_from_slice(self.header);
        } else {
            out[..ipv4::HEADER_LEN].copy_from_slice(&self.header[..ipv4::HEADER_LEN]);
            write_copied_options(
                &self.header[ipv4::HEADER_LEN..],
                &mut out[ipv4::HEADER_LEN..hl],
            );
        }
        out[hl..len].copy_from_slice(&self.payload[self.offset..self.offset + chunk]);
        let frag_offset = self.base_offset + self.offset;
        let more = !last || self.original_mf;
        let mut p = Ipv4Packet::new_unchecked(&mut out[..len]);
        p.set_version_and_header_len(hl);
        p.set_total_len(len as u16);
        p.set_flags_and_frag_offset(false, more, frag_offset as u16);
        p.fill_checksum();
        self.offset += chunk;
        Ok(Some(len))
    }
}

/// Iterates the options, yielding (start, len) of each; stops at EOL or a malformed length.
fn options(opts: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < opts.len() {
            let kind = opts[i];
            if kind == 0 {
                return None;
            }
            if kind == 1 {
                i += 1;
                continue;
            }
            let len = usize::from(*opts.get(i + 1)?);
            if len < 2 || i + len > opts.len() {
                return None;
            }
            let start = i;
            i += len;
            return Some((start, len));
        }
        None
    })
}

/// Length of the options with the "copied" flag (RFC 791: copied into all fragments), padded
/// to a multiple of 4.
fn copied_options_len(opts: &[u8]) -> usize {
    let n: usize = options(opts)
        .filter(|&(s, _)| opts[s] & 0x80 != 0)
        .map(|(_, l)| l)
        .sum();
    n.div_ceil(4) * 4
}

fn write_copied_options(opts: &[u8], out: &mut [u8]) {
    let mut w = 0;
    for (s, l) in options(opts) {
        if opts[s] & 0x80 != 0 && w + l <= out.len() {
            out[w..w + l].copy_from_slice(&opts[s..s + l]);
            w += l;
        }
    }
    out[w..].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{IpProtocol, Ipv4Repr};
    use std::net::Ipv4Addr;

    fn packet(payload_len: usize, df: bool) -> Vec<u8> {
        let mut p = vec![0u8; 20 + payload_len];
        Ipv4Repr {
            src_addr: Ipv4Addr::new(192, 0, 2, 1),
            dst_addr: Ipv4Addr::new(192, 0, 2, 2),
            protocol: IpProtocol::ESP,
            payload_len,
            ttl: 64,
            tos: 0,
            ident: 0xbeef,
            dont_frag: df,
            more_frags: false,
            frag_offset: 0,
        }
        .emit(&mut p)
        .unwrap();
        for (i, b) in p[20..].iter_mut().enumerate() {
            *b = i as u8;
        }
        p
    }

    #[test]
    fn splits_and_reassembles() {
        let orig = packet(3000, false);
        let mut f = Ipv4Fragmenter::new(&orig, 1500).unwrap();
        assert_eq!(f.count(), 3);
        let mut re = vec![0u8; 3000];
        let mut buf = [0u8; 1500];
        let mut n = 0;
        let mut seen_last = false;
        while let Some(len) = f.next_into(&mut buf).unwrap() {
            n += 1;
            assert!(len <= 1500);
            let p = Ipv4Packet::new_checked(&buf[..len]).unwrap();
            assert!(p.verify_checksum());
            assert_eq!(p.ident(), 0xbeef);
            let off = usize::from(p.frag_offset());
            re[off..off + p.payload().len()].copy_from_slice(p.payload());
            if !p.more_frags() {
                seen_last = true;
            } else {
                assert_eq!(p.payload().len() % 8, 0);
            }
        }
        assert_eq!(n, 3);
        assert!(seen_last);
        assert_eq!(re, orig[20..]);
    }

    #[test]
    fn small_packet_is_one_fragment() {
        let orig = packet(100, true);
        let mut f = Ipv4Fragmenter::new(&orig, 1500).unwrap();
        assert_eq!(f.count(), 1);
        let mut buf = [0u8; 1500];
        let len = f.next_into(&mut buf).unwrap().unwrap();
        assert_eq!(&buf[..len], &orig[..]);
        assert_eq!(f.next_into(&mut buf).unwrap(), None);
    }

    #[test]
    fn refuses_df_and_tiny_mtu() {
        assert!(Ipv4Fragmenter::new(&packet(3000, true), 1500).is_err());
        assert!(Ipv4Fragmenter::new(&packet(3000, false), 27).is_err());
        let big = packet(3000, false);
        let mut f = Ipv4Fragmenter::new(&big, 1500).unwrap();
        let mut small = [0u8; 100];
        assert_eq!(f.next_into(&mut small), Err(Error::BufferTooSmall));
    }
}

//! IPv6 fragmentation by the source (RFC 8200 §4.5), for the daemon's own outer packets.
//!
//! IPv6 routers never fragment (RFC 8200 §5), so a tunnel endpoint whose outer packet does not
//! fit the path either tells the inner sender (ICMPv6 Packet Too Big, IPv4 "fragmentation
//! needed") or, where the inner packet may not be refused, fragments the outer packet itself as
//! the source of it. Raw ESP/AH over IPv6 leaves the shard on an `IPV6_HDRINCL` socket, where
//! the kernel does not fragment for us: this cuts the packet into caller buffers.
//!
//! Only the fixed header is the unfragmentable part: the daemon's outer packets carry no
//! extension header (the IPv6 header is followed by ESP, AH or UDP), and a packet that does is
//! refused rather than guessed at.

use super::ip::IpProtocol;
use super::ipv6::{self, Ipv6Packet};
use super::ipv6_ext::{FRAGMENT_HEADER_LEN, Ipv6FragmentRepr, is_extension_header};
use super::{Error, Result};

/// Produces the fragments of one IPv6 packet, one caller buffer at a time, without allocating.
///
/// ```
/// # use ikehub::wire::{Ipv6Fragmenter, Ipv6Repr, IpProtocol};
/// # fn send(_: &[u8]) {}
/// # let packet = { let mut p = vec![0u8; 3000];
/// #   Ipv6Repr::new("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap(),
/// #   IpProtocol::ESP, 2960).emit(&mut p).unwrap(); p };
/// let mut frags = Ipv6Fragmenter::new(&packet, 1500, 0x5eed_1d01).unwrap();
/// let mut buf = [0u8; 1500];
/// while let Some(len) = frags.next_into(&mut buf).unwrap() {
///     send(&buf[..len]);
/// }
/// ```
#[derive(Debug)]
pub struct Ipv6Fragmenter<'a> {
    header: &'a [u8],
    /// The fragmentable part: everything after the fixed header.
    payload: &'a [u8],
    next_header: IpProtocol,
    mtu: usize,
    ident: u32,
    /// Offset of the next fragment within the fragmentable part.
    offset: usize,
    done: bool,
}

impl<'a> Ipv6Fragmenter<'a> {
    /// Prepares to fragment `packet` for `mtu`, every fragment carrying `ident` (RFC 7739 §5:
    /// the caller draws it at random, so it neither repeats soon nor can be predicted). Fails
    /// when the packet is malformed or carries an extension header, or when `mtu` is below
    /// the 1280 bytes every IPv6 link carries (RFC 8200 §5): a first fragment of at least
    /// 1232 bytes always holds the ESP, AH or UDP header whole, as §4.5 requires.
    pub fn new(packet: &'a [u8], mtu: usize, ident: u32) -> Result<Self> {
        let p = Ipv6Packet::new_checked(packet)?;
        let next_header = p.next_header();
        if is_extension_header(next_header) || mtu < ipv6::MIN_MTU {
            return Err(Error::Malformed);
        }
        let total = ipv6::HEADER_LEN + usize::from(p.payload_len());
        Ok(Self {
            header: &packet[..ipv6::HEADER_LEN],
            payload: &packet[ipv6::HEADER_LEN..total],
            next_header,
            mtu,
            ident,
            offset: 0,
            done: false,
        })
    }

    /// Whether the packet fits as it is (then it is its only "fragment", unchanged: no atomic
    /// fragment, RFC 8021).
    fn fits(&self) -> bool {
        self.header.len() + self.payload.len() <= self.mtu
    }

    /// Data bytes per fragment: what the MTU leaves after both headers, a multiple of 8
    /// (§4.5: every fragment but the last).
    fn per_fragment(&self) -> usize {
        (self.mtu - ipv6::HEADER_LEN - FRAGMENT_HEADER_LEN) & !7
    }

    /// Number of packets this one is cut into.
    pub fn count(&self) -> usize {
        if self.fits() {
            1
        } else {
            self.payload.len().div_ceil(self.per_fragment())
        }
    }

    /// Writes the next fragment into `out` and returns its length, or `None` when done.
    pub fn next_into(&mut self, out: &mut [u8]) -> Result<Option<usize>> {
        if self.done {
            return Ok(None);
        }
        let hl = self.header.len();
        if self.fits() {
            let len = hl + self.payload.len();
            if out.len() < len {
                return Err(Error::BufferTooSmall);
            }
            out[..hl].copy_from_slice(self.header);
            out[hl..len].copy_from_slice(self.payload);
            self.done = true;
            return Ok(Some(len));
        }
        let remaining = self.payload.len() - self.offset;
        let last = remaining <= self.per_fragment();
        let chunk = if last { remaining } else { self.per_fragment() };
        let data = hl + FRAGMENT_HEADER_LEN;
        let len = data + chunk;
        if out.len() < len {
            return Err(Error::BufferTooSmall);
        }
        out[..hl].copy_from_slice(self.header);
        {
            let mut p = Ipv6Packet::new_unchecked(&mut out[..hl]);
            p.set_next_header(IpProtocol::IPV6_FRAG);
            // `len` <= mtu, and the original's payload length was a u16.
            p.set_payload_len((FRAGMENT_HEADER_LEN + chunk) as u16);
        }
        Ipv6FragmentRepr {
            next_header: self.next_header,
            // A multiple of 8 below the original's u16 payload length.
            frag_offset: self.offset as u16,
            more_frags: !last,
            ident: self.ident,
        }
        .emit(&mut out[hl..data])?;
        out[data..len].copy_from_slice(&self.payload[self.offset..self.offset + chunk]);
        self.offset += chunk;
        self.done = last;
        Ok(Some(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Ipv6Repr;
    use crate::wire::ipv6_ext::upper_layer;

    fn packet(payload_len: usize) -> Vec<u8> {
        let mut p = vec![0u8; ipv6::HEADER_LEN + payload_len];
        Ipv6Repr {
            hop_limit: 64,
            traffic_class: 0x28,
            ..Ipv6Repr::new(
                "2001:db8:ffff::1".parse().unwrap(),
                "2001:db8:ffff::2".parse().unwrap(),
                IpProtocol::ESP,
                payload_len,
            )
        }
        .emit(&mut p)
        .unwrap();
        for (i, b) in p[ipv6::HEADER_LEN..].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        p
    }

    /// Cuts `orig` for `mtu`, checks every fragment on its own (size, header fields, offsets,
    /// M flags, one identification) and returns the reassembled packet (RFC 8200 §4.5,
    /// "Reassembly": the unfragmentable part of the first fragment, its next header from the
    /// fragment header, the payload length recomputed).
    fn cut_and_reassemble(orig: &[u8], mtu: usize, ident: u32) -> (Vec<u8>, usize) {
        let mut f = Ipv6Fragmenter::new(orig, mtu, ident).unwrap();
        let expected = f.count();
        let mut frags = Vec::new();
        let mut buf = vec![0u8; mtu];
        while let Some(len) = f.next_into(&mut buf).unwrap() {
            assert!(len <= mtu, "fragment of {len} bytes for an MTU of {mtu}");
            frags.push(buf[..len].to_vec());
        }
        assert_eq!(f.next_into(&mut buf).unwrap(), None, "done stays done");
        assert_eq!(frags.len(), expected, "count()");
        if frags.len() == 1 {
            assert_eq!(frags[0], orig, "a packet that fits is sent unchanged");
            return (frags.remove(0), 1);
        }
        let o = Ipv6Packet::new_checked(orig).unwrap();
        let mut data = Vec::new();
        let mut next = None;
        for (i, fr) in frags.iter().enumerate() {
            let p = Ipv6Packet::new_checked(&fr[..]).unwrap();
            assert_eq!(p.packet().len(), fr.len(), "payload length of fragment {i}");
            assert_eq!(
                (p.src_addr(), p.dst_addr(), p.hop_limit(), p.traffic_class()),
                (o.src_addr(), o.dst_addr(), o.hop_limit(), o.traffic_class())
            );
            assert_eq!(p.next_header(), IpProtocol::IPV6_FRAG);
            let fh = Ipv6FragmentRepr::parse(p.payload()).unwrap();
            assert_eq!(fh.ident, ident, "fragment {i}");
            assert_eq!(usize::from(fh.frag_offset), data.len(), "offset of {i}");
            let last = i == frags.len() - 1;
            assert_eq!(fh.more_frags, !last, "M flag of {i}");
            let body = &p.payload()[FRAGMENT_HEADER_LEN..];
            if !last {
                assert_eq!(body.len() % 8, 0, "fragment {i} is not a multiple of 8");
            }
            // The walk of the receiving side sees a fragment, never a malformed chain.
            let upper = upper_layer(&p).unwrap();
            assert_eq!(upper.fragment.map(|f| f.ident), Some(ident));
            *next.get_or_insert(fh.next_header) = fh.next_header;
            data.extend_from_slice(body);
        }
        let mut re = frags[0][..ipv6::HEADER_LEN].to_vec();
        re.extend_from_slice(&data);
        let mut p = Ipv6Packet::new_unchecked(&mut re[..]);
        p.set_next_header(next.unwrap());
        p.set_payload_len(data.len() as u16);
        (re, frags.len())
    }

    #[test]
    fn splits_within_the_mtu_and_reassembles() {
        for (payload, mtu, n) in [
            (3000, 1500, 3),
            (3000, 1280, 3),
            (1500, 1280, 2),
            // One byte over the MTU.
            (1461, 1500, 2),
            // Exactly the per-fragment room twice.
            (2 * 1448, 1500, 2),
            (65535, 1500, 46),
            (65535, 9000, 8),
        ] {
            let orig = packet(payload);
            let (re, frags) = cut_and_reassemble(&orig, mtu, 0x8bad_f00d);
            assert_eq!(frags, n, "{payload} bytes for {mtu}");
            assert_eq!(re, orig, "{payload} bytes for {mtu}");
        }
    }

    #[test]
    fn a_packet_that_fits_is_not_fragmented() {
        for payload in [0, 8, 1460] {
            let orig = packet(payload);
            let (re, frags) = cut_and_reassemble(&orig, 1500, 1);
            assert_eq!((frags, re), (1, orig));
        }
    }

    #[test]
    fn refuses_extension_headers_a_small_mtu_and_a_short_buffer() {
        let mut hbh = packet(3000);
        Ipv6Packet::new_unchecked(&mut hbh[..]).set_next_header(IpProtocol(0));
        assert_eq!(
            Ipv6Fragmenter::new(&hbh, 1500, 1).err(),
            Some(Error::Malformed)
        );
        let mut frag = packet(3000);
        Ipv6Packet::new_unchecked(&mut frag[..]).set_next_header(IpProtocol::IPV6_FRAG);
        assert_eq!(
            Ipv6Fragmenter::new(&frag, 1500, 1).err(),
            Some(Error::Malformed)
        );
        let orig = packet(3000);
        assert_eq!(
            Ipv6Fragmenter::new(&orig, 1279, 1).err(),
            Some(Error::Malformed)
        );
        // A payload length beyond the buffer: truncated, not a panic.
        assert!(Ipv6Fragmenter::new(&orig[..2000], 1500, 1).is_err());
        let mut f = Ipv6Fragmenter::new(&orig, 1500, 1).unwrap();
        let mut small = [0u8; 100];
        assert_eq!(f.next_into(&mut small), Err(Error::BufferTooSmall));
    }
}

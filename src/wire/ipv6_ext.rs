//! IPv6 extension headers (RFC 8200 §4): the walk from the fixed header to the upper layer, the
//! fragment header, and the copy of the header chain that AH's ICV covers (RFC 4302 §3.3.3.1.2).
//!
//! Everything here reads peer bytes: the walk is bounded by [`MAX_EXT_HEADERS`] headers and by
//! the packet's payload length, and any chain that does not fit is an [`Error`], never a panic.

use super::ip::IpProtocol;
use super::ipv6::{self, Ipv6Packet};
use super::{Error, Result, be16, be32, put16, put32};

// The extension headers' numbers live here, not in `ip.rs`, because only this walk treats
// them as anything but an upper layer (IANA keywords IPv6-Route, IPv6-Frag, IPv6-Opts).
impl IpProtocol {
    /// IPv6 routing header (RFC 8200 §4.4).
    pub const IPV6_ROUTE: Self = Self(43);
    /// IPv6 fragment header (RFC 8200 §4.5).
    pub const IPV6_FRAG: Self = Self(44);
    /// IPv6 destination options (RFC 8200 §4.6).
    pub const IPV6_OPTS: Self = Self(60);
}

/// At most this many extension headers before the upper layer. RFC 8200 §4.1 recommends one of
/// each (destination options twice), six in all, with AH and ESP among them; a longer chain
/// only costs whoever walks it, so it is dropped.
pub const MAX_EXT_HEADERS: usize = 8;
/// Length of the fragment header (RFC 8200 §4.5).
pub const FRAGMENT_HEADER_LEN: usize = 8;
/// Option type of the jumbo payload option (RFC 2675 §2). No link this daemon uses carries a
/// jumbogram, so a packet with this option is malformed here.
pub const OPT_JUMBO_PAYLOAD: u8 = 0xc2;
/// Bit of an option type that says its data may change en route (RFC 8200 §4.2); AH covers
/// such data as zeros (RFC 4302 §3.3.3.1.2.1).
pub const OPT_CHANGES_EN_ROUTE: u8 = 0x20;

/// Whether `p` is one of the extension headers this walk goes through. AH (51) and ESP (50) end
/// the walk: for this daemon they are the upper layer, as is "no next header" (59) and every
/// number not listed here.
pub fn is_extension_header(p: IpProtocol) -> bool {
    matches!(
        p,
        IpProtocol::HOP_BY_HOP
            | IpProtocol::IPV6_ROUTE
            | IpProtocol::IPV6_FRAG
            | IpProtocol::IPV6_OPTS
    )
}

/// The generic layout of hop-by-hop, routing and destination options headers: next header,
/// length in 8-octet units not counting the first 8, then data (RFC 8200 §4.3, §4.4, §4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ExtHeader<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps after checking that the whole header, per its length field, is in the buffer.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let h = Self::new_unchecked(buffer);
        let b = h.buffer.as_ref();
        if b.len() < 2 || b.len() < h.header_len() {
            return Err(Error::Truncated);
        }
        Ok(h)
    }

    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[0])
    }

    /// The raw "Hdr Ext Len" field.
    pub fn header_len_field(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    /// Length of the whole header in bytes (8 to 2048).
    pub fn header_len(&self) -> usize {
        (usize::from(self.header_len_field()) + 1) * 8
    }

    /// The bytes after next header and length: options, or the routing type-specific fields.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[2..self.header_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ExtHeader<T> {
    pub fn set_next_header(&mut self, p: IpProtocol) {
        self.buffer.as_mut()[0] = p.0;
    }

    pub fn set_header_len_field(&mut self, v: u8) {
        self.buffer.as_mut()[1] = v;
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        let len = self.header_len();
        &mut self.buffer.as_mut()[2..len]
    }
}

/// A parsed fragment header (RFC 8200 §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6FragmentRepr {
    /// The header of the fragmentable part (in the first fragment, the rest of the chain).
    pub next_header: IpProtocol,
    /// Offset of this fragment's data in the fragmentable part, in bytes (multiple of 8).
    pub frag_offset: u16,
    pub more_frags: bool,
    pub ident: u32,
}

impl Ipv6FragmentRepr {
    /// Parses the 8-byte header at the start of `b`.
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() < FRAGMENT_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let off = be16(b, 2);
        Ok(Self {
            next_header: IpProtocol(b[0]),
            frag_offset: off & !0x7,
            more_frags: off & 1 != 0,
            ident: be32(b, 4),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        FRAGMENT_HEADER_LEN
    }

    /// Writes the header; reserved fields are zero. An offset that is not a multiple of 8 is
    /// refused.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        if !self.frag_offset.is_multiple_of(8) {
            return Err(Error::Malformed);
        }
        if buf.len() < FRAGMENT_HEADER_LEN {
            return Err(Error::BufferTooSmall);
        }
        buf[0] = self.next_header.0;
        buf[1] = 0;
        put16(buf, 2, self.frag_offset | u16::from(self.more_frags));
        put32(buf, 4, self.ident);
        Ok(())
    }

    /// True for any fragment but an atomic one (offset 0, no more fragments; RFC 6946).
    pub fn is_fragmented(&self) -> bool {
        self.more_frags || self.frag_offset != 0
    }
}

/// Where a packet's upper layer starts, as the walk found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpperLayer {
    /// The upper-layer protocol (AH, ESP, TCP, UDP, ICMPv6, no next header, ...). For a
    /// fragment with a non-zero offset, the fragment header's next header: its data is not the
    /// start of that header.
    pub protocol: IpProtocol,
    /// Offset of the upper-layer header from the start of the packet (fixed header included).
    pub offset: usize,
    /// Offset of the byte that holds `protocol` (6 in the fixed header, or the first byte of
    /// the last extension header): the byte to rewrite when a header is removed or inserted.
    pub next_header_at: usize,
    /// The fragment header, if the chain has one.
    pub fragment: Option<Ipv6FragmentRepr>,
    /// Segments left of the routing header, 0 without one. Non-zero means this node is not the
    /// packet's final destination (RFC 8200 §4.4).
    pub segments_left: u8,
}

impl UpperLayer {
    /// True for a fragment with a non-zero offset: `offset` is the start of fragment data, not
    /// of a `protocol` header (no ports to read; RFC 8200 §4.5).
    pub fn is_later_fragment(&self) -> bool {
        self.fragment.is_some_and(|f| f.frag_offset != 0)
    }
}

/// One extension header the walk went through: its type, offset and length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Seen {
    kind: u8,
    at: usize,
    len: usize,
}

/// A walked chain: the upper layer and the headers on the way.
struct Chain {
    upper: UpperLayer,
    headers: [Seen; MAX_EXT_HEADERS],
    count: usize,
}

/// Walks an IPv6 packet's extension headers to its upper layer (RFC 8200 §4).
///
/// Refused (`Malformed`): more than [`MAX_EXT_HEADERS`] extension headers, hop-by-hop anywhere
/// but right after the fixed header (RFC 8200 §4.1), a second routing or fragment header (RFC
/// 8200 §4.1 has each once; the walk reports one of each), options whose lengths overrun their
/// header, and the jumbo payload option. A header that runs past the payload length is
/// `Truncated`. A first fragment (offset 0) is walked on, since it must carry the whole chain
/// (RFC 8200 §4.5); a later one ends the walk at its fragment header. The option types' action
/// bits and the routing type are the caller's to act on.
pub fn upper_layer<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<UpperLayer> {
    packet.check_len()?;
    Ok(walk(packet.packet(), packet.next_header(), None)?.upper)
}

/// The walk over `b` (a packet without link padding) from the fixed header's next header.
/// With `stop_at`, the walk must end at exactly that protocol at exactly the end of `b` (the
/// chain before an AH header).
fn walk(b: &[u8], first: IpProtocol, stop_at: Option<IpProtocol>) -> Result<Chain> {
    let mut chain = Chain {
        upper: UpperLayer {
            protocol: first,
            offset: ipv6::HEADER_LEN,
            next_header_at: 6,
            fragment: None,
            segments_left: 0,
        },
        headers: [Seen::default(); MAX_EXT_HEADERS],
        count: 0,
    };
    let mut seen_routing = false;
    let mut at = ipv6::HEADER_LEN;
    let mut next = first;
    while is_extension_header(next) && stop_at != Some(next) {
        if chain.count == MAX_EXT_HEADERS {
            return Err(Error::Malformed);
        }
        let rest = b.get(at..).ok_or(Error::Truncated)?;
        let len = match next {
            IpProtocol::HOP_BY_HOP => {
                if chain.count != 0 {
                    return Err(Error::Malformed);
                }
                check_options(rest)?
            }
            IpProtocol::IPV6_OPTS => check_options(rest)?,
            IpProtocol::IPV6_ROUTE => {
                if seen_routing {
                    return Err(Error::Malformed);
                }
                seen_routing = true;
                let h = ExtHeader::new_checked(rest)?;
                // Routing type, then segments left (RFC 8200 §4.4).
                chain.upper.segments_left = h.data()[1];
                h.header_len()
            }
            _ => {
                if chain.upper.fragment.is_some() {
                    return Err(Error::Malformed);
                }
                chain.upper.fragment = Some(Ipv6FragmentRepr::parse(rest)?);
                FRAGMENT_HEADER_LEN
            }
        };
        chain.headers[chain.count] = Seen {
            kind: next.0,
            at,
            len,
        };
        chain.count += 1;
        chain.upper.next_header_at = at;
        next = IpProtocol(rest[0]);
        at += len;
        if chain.upper.is_later_fragment() {
            // A later fragment: its data continues some header we cannot see.
            break;
        }
    }
    chain.upper.protocol = next;
    chain.upper.offset = at;
    if let Some(stop) = stop_at
        && (next != stop || at != b.len())
    {
        return Err(Error::Malformed);
    }
    Ok(chain)
}

/// Checks the option TLVs of a hop-by-hop or destination options header at the start of `b`
/// (RFC 8200 §4.2) and returns the header's length.
fn check_options(b: &[u8]) -> Result<usize> {
    let h = ExtHeader::new_checked(b)?;
    for opt in Options::new(h.data()) {
        let (kind, _) = opt?;
        if kind == OPT_JUMBO_PAYLOAD {
            return Err(Error::Malformed);
        }
    }
    Ok(h.header_len())
}

/// The option at `at` in the data of a hop-by-hop or destination options header: its type and
/// the range of its data; `None` at the end. Pad1 is the one option without a length byte
/// (RFC 8200 §4.2); an option that overruns the data is `Malformed`. The next option starts at
/// the range's end.
fn option_at(data: &[u8], at: usize) -> Option<Result<(u8, core::ops::Range<usize>)>> {
    let kind = *data.get(at)?;
    if kind == 0 {
        return Some(Ok((kind, at + 1..at + 1)));
    }
    let start = at + 2;
    Some(
        data.get(at + 1)
            .map(|l| start + usize::from(*l))
            .filter(|end| *end <= data.len())
            .map(|end| (kind, start..end))
            .ok_or(Error::Malformed),
    )
}

/// The options of a header's data, in order; stops after the first error.
struct Options<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Options<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, at: 0 }
    }
}

impl Iterator for Options<'_> {
    type Item = Result<(u8, core::ops::Range<usize>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let opt = option_at(self.data, self.at)?;
        self.at = match &opt {
            Ok((_, r)) => r.end,
            Err(_) => self.data.len(),
        };
        Some(opt)
    }
}

/// Zeroes in `header`, a copy of an IPv6 packet from its first byte up to (not including) its
/// AH header, every field AH does not protect (RFC 4302 §3.3.3.1.2, Appendix A.2): traffic
/// class, flow label and hop limit of the fixed header, and the data of every hop-by-hop or
/// destination option whose type says it may change en route (type and length stay covered).
/// The chain in `header` must end with next header AH exactly at its end (`Malformed` if not).
///
/// A routing header is covered as it will look at the final destination. With segments left
/// 0 that is the header as it is, and the destination address is already the final one; with
/// segments left > 0 the addresses would have to be reordered (Appendix A.2), which this
/// daemon, never the sender or an intermediate hop of such a packet, does not do: `Malformed`.
/// A fragment header is `Malformed` too: AH is computed before fragmentation and verified
/// after reassembly (RFC 4302 §3.3.4, §3.4.1).
pub fn zero_mutable_fields(header: &mut [u8]) -> Result<()> {
    if header.len() < ipv6::HEADER_LEN {
        return Err(Error::Truncated);
    }
    if header[0] >> 4 != 6 {
        return Err(Error::Malformed);
    }
    let chain = walk(header, IpProtocol(header[6]), Some(IpProtocol::AH))?;
    if chain.upper.segments_left != 0 || chain.upper.fragment.is_some() {
        return Err(Error::Malformed);
    }
    // Version stays; traffic class and flow label share bytes 0..4 with it.
    header[0] &= 0xf0;
    header[1..4].fill(0);
    header[7] = 0; // hop limit
    for seen in &chain.headers[..chain.count] {
        let kind = IpProtocol(seen.kind);
        if kind != IpProtocol::HOP_BY_HOP && kind != IpProtocol::IPV6_OPTS {
            continue;
        }
        let data = &mut header[seen.at + 2..seen.at + seen.len];
        let mut at = 0;
        while let Some(opt) = option_at(data, at) {
            let (kind, range) = opt?;
            at = range.end;
            if kind & OPT_CHANGES_EN_ROUTE != 0 {
                data[range].fill(0);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

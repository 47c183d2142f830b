//! A blocking `NETLINK_ROUTE` socket (netlink-sys) speaking netlink-packet-route messages:
//! one request, then its acknowledgement, its single answer or its dump. Control path only,
//! never the hot path.
//!
//! A [`Netlink`] handle stays bound to the network namespace it was opened in, whichever
//! thread later uses or drops it (routes and link queries of a daemon in a namespace).
//!
//! What the crates leave to us: matching answers to the request by sequence number, and the
//! extended-ack text of a refusal (`NLMSGERR_ATTR_MSG`, "Invalid prefsrc address"), which
//! netlink-packet-core hands over as raw bytes behind the echoed request.

use std::io;
use std::time::Duration;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable,
    NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, protocols::NETLINK_ROUTE};

/// `struct nlmsghdr` (include/uapi/linux/netlink.h).
const NLMSG_HDRLEN: usize = 16;
/// `enum nlmsgerr_attrs`: the human-readable reason of an extended ack.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Large enough for one datagram of a dump: the kernel fills at most 32 KiB per read.
const RECV_BUF: usize = 64 * 1024;

/// A kernel refusal: the errno and, when the kernel gave one, the extended-ack text.
#[derive(Debug)]
pub struct NlError {
    pub errno: i32,
    pub detail: Option<String>,
}

impl NlError {
    fn io(e: io::Error) -> Self {
        NlError {
            errno: e.raw_os_error().unwrap_or(libc::EIO),
            detail: Some(format!("netlink socket: {e}")),
        }
    }

    fn malformed(what: &str) -> Self {
        NlError {
            errno: libc::EIO,
            detail: Some(format!("malformed netlink answer: {what}")),
        }
    }

    /// The errno as an `io::Error` (the extended-ack text appended when there is one).
    pub fn into_io(self, what: &str) -> io::Error {
        let e = io::Error::from_raw_os_error(self.errno);
        let kind = if self.errno == libc::ENODEV {
            io::ErrorKind::NotFound
        } else {
            e.kind()
        };
        match self.detail {
            Some(d) => io::Error::new(kind, format!("{what}: {e} ({d})")),
            None if self.errno == libc::ENODEV => {
                io::Error::new(kind, format!("{what}: no such device"))
            }
            None => io::Error::new(kind, format!("{what}: {e}")),
        }
    }
}

/// A `NETLINK_ROUTE` socket in the namespace it was opened in.
pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens a `NETLINK_ROUTE` socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        // The kernel always answers; the timeout only bounds a wait that would otherwise hang
        // the control path on a lost answer.
        socket2::SockRef::from(&sock).set_read_timeout(Some(Duration::from_secs(5)))?;
        // Extended acks carry a human-readable reason; older kernels without them still work.
        let _ = sock.set_ext_ack(true);
        Ok(Self {
            sock,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// Sends `msg` with `NLM_F_ACK` (plus `flags`) and waits for its acknowledgement.
    pub fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<(), NlError> {
        self.send(msg, NLM_F_REQUEST | NLM_F_ACK | flags)?;
        // Only the ack ends the exchange; nothing else is expected before it.
        self.answers(|_: RouteNetlinkMessage| true)
    }

    /// Sends a `GET` for one object (`RTM_GETLINK` by name or index) and returns the answer,
    /// read as a `T` (a [`RouteNetlinkMessage`], or a narrower reading of it).
    pub fn get<T: NetlinkDeserializable>(
        &mut self,
        msg: RouteNetlinkMessage,
    ) -> Result<T, NlError> {
        self.send(msg, NLM_F_REQUEST)?;
        let mut answer = None;
        self.answers(|m| {
            answer = Some(m);
            false
        })?;
        answer.ok_or_else(|| NlError::malformed("no answer to a get request"))
    }

    /// Sends a dump request and calls `each` for every object until `NLMSG_DONE` (or until
    /// `each` returns `false`; the rest of the dump is still read, so the socket stays in step).
    pub fn dump<T: NetlinkDeserializable>(
        &mut self,
        msg: RouteNetlinkMessage,
        mut each: impl FnMut(T) -> bool,
    ) -> Result<(), NlError> {
        self.send(msg, NLM_F_REQUEST | NLM_F_DUMP)?;
        let mut wanted = true;
        self.answers(|m| {
            if wanted {
                wanted = each(m);
            }
            true
        })
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<(), NlError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.sock.send(&bytes, 0).map_err(NlError::io)?;
        Ok(())
    }

    /// Reads the answers to the last request: objects go to `each` while it returns `true`
    /// (a dump); an `NLMSG_ERROR` (ack or refusal) or `NLMSG_DONE` ends the exchange, and so
    /// does the first object when `each` returns `false` (a single answer).
    fn answers<T: NetlinkDeserializable>(
        &mut self,
        mut each: impl FnMut(T) -> bool,
    ) -> Result<(), NlError> {
        loop {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, 0) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(NlError::io(e)),
            }
            for (seq, msg) in messages(&self.buf) {
                // Answers to an earlier request (one that timed out) are skipped.
                if seq != self.seq {
                    continue;
                }
                let msg = NetlinkMessage::<T>::deserialize(msg)
                    .map_err(|e| NlError::malformed(&e.to_string()))?;
                let more = match msg.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(()),
                            Some(code) => Err(NlError {
                                errno: code.get().saturating_neg(),
                                detail: ext_ack_message(&e.header, msg.header.flags),
                            }),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::InnerMessage(m) => each(m),
                    _ => true,
                };
                if !more {
                    return Ok(());
                }
            }
        }
    }
}

/// The netlink messages of one datagram, each with its sequence number. A length that cannot
/// be one (shorter than the header, or past the end of the datagram) ends the walk: the kernel
/// never sends one, and the bytes behind it cannot be found.
fn messages(datagram: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    let mut data = datagram;
    std::iter::from_fn(move || {
        let header = data.get(..NLMSG_HDRLEN)?;
        let len = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len < NLMSG_HDRLEN || len > data.len() {
            return None;
        }
        let seq = u32::from_ne_bytes([header[8], header[9], header[10], header[11]]);
        let msg = &data[..len];
        data = &data[align4(len).min(data.len())..];
        Some((seq, msg))
    })
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// The `NLMSGERR_ATTR_MSG` text of an `NLMSG_ERROR` whose body after the errno is `body`: the
/// echoed request (only its header when `NLM_F_CAPPED`), then, with `NLM_F_ACK_TLVS`, the
/// attributes (include/uapi/linux/netlink.h, `struct nlmsgerr`).
fn ext_ack_message(body: &[u8], flags: u16) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 || body.len() < NLMSG_HDRLEN {
        return None;
    }
    let echoed = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        u32::from_ne_bytes([body[0], body[1], body[2], body[3]]) as usize
    };
    let mut tlv = body.get(align4(echoed)..)?;
    while tlv.len() >= 4 {
        let len = u16::from_ne_bytes([tlv[0], tlv[1]]) as usize;
        let ty = u16::from_ne_bytes([tlv[2], tlv[3]]) & 0x3fff;
        if len < 4 || len > tlv.len() {
            break;
        }
        if ty == NLMSGERR_ATTR_MSG {
            let s = tlv[4..len].split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(s).into_owned());
        }
        tlv = &tlv[align4(len).min(tlv.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echoed header (capped) followed by an `NLMSGERR_ATTR_MSG` and another attribute.
    fn capped_body(text: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; NLMSG_HDRLEN];
        b[..4].copy_from_slice(&64u32.to_ne_bytes()); // the request's length, not echoed
        let attr_len = 4 + text.len() + 1;
        b.extend_from_slice(&(attr_len as u16).to_ne_bytes());
        b.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        b.extend_from_slice(text);
        b.push(0);
        b.resize(align4(b.len()), 0);
        b.extend_from_slice(&8u16.to_ne_bytes());
        b.extend_from_slice(&2u16.to_ne_bytes()); // NLMSGERR_ATTR_OFFS
        b.extend_from_slice(&24u32.to_ne_bytes());
        b
    }

    #[test]
    fn extended_ack_text() {
        let body = capped_body(b"Invalid prefsrc address");
        let flags = NLM_F_CAPPED | NLM_F_ACK_TLVS;
        assert_eq!(
            ext_ack_message(&body, flags).as_deref(),
            Some("Invalid prefsrc address")
        );
        // Without NLM_F_ACK_TLVS the bytes behind the header are not attributes.
        assert_eq!(ext_ack_message(&body, NLM_F_CAPPED), None);
        // Not capped: the whole request (its length from the echoed header) comes first.
        let mut full = vec![0u8; 20];
        full[..4].copy_from_slice(&20u32.to_ne_bytes());
        full.extend_from_slice(&capped_body(b"x")[NLMSG_HDRLEN..]);
        assert_eq!(ext_ack_message(&full, NLM_F_ACK_TLVS).as_deref(), Some("x"));
        // Hostile lengths end the walk instead of reading past the buffer.
        let mut bad = vec![0u8; NLMSG_HDRLEN];
        bad.extend_from_slice(&200u16.to_ne_bytes());
        bad.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        assert_eq!(ext_ack_message(&bad, flags), None);
        let mut huge = vec![0u8; NLMSG_HDRLEN];
        huge[..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(ext_ack_message(&huge, NLM_F_ACK_TLVS), None);
        assert_eq!(ext_ack_message(&[1, 2], flags), None);
    }

    /// A datagram is walked message by message; hostile or short lengths end the walk
    /// instead of reading past the datagram or looping.
    #[test]
    fn datagram_walk_stops_at_bad_lengths() {
        let header = |len: u32, seq: u32| {
            let mut h = vec![0u8; NLMSG_HDRLEN];
            h[..4].copy_from_slice(&len.to_ne_bytes());
            h[8..12].copy_from_slice(&seq.to_ne_bytes());
            h
        };
        // Two messages, the first of 18 bytes padded to 20.
        let mut d = header(18, 7);
        d.extend_from_slice(&[1, 2, 0, 0]);
        d.extend(header(16, 8));
        let got: Vec<(u32, usize)> = messages(&d).map(|(s, m)| (s, m.len())).collect();
        assert_eq!(got, [(7, 18), (8, 16)]);
        // The last message unpadded at the end of the datagram.
        let d = header(18, 9).into_iter().chain([1, 2]).collect::<Vec<_>>();
        assert_eq!(messages(&d).count(), 1);
        for bad in [0, 15, 17, u32::MAX] {
            let d = header(bad, 1);
            assert_eq!(messages(&d).count(), 0, "length {bad}");
        }
        let mut d = header(16, 1);
        d.extend(header(4, 2));
        assert_eq!(messages(&d).count(), 1, "a bad length after a good message");
        assert_eq!(messages(&[0u8; 15]).count(), 0, "shorter than a header");
        assert_eq!(messages(&[]).count(), 0);
    }

    #[test]
    fn refusals_become_io_errors() {
        let e = NlError {
            errno: libc::ENODEV,
            detail: None,
        }
        .into_io("MTU of x0");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(e.to_string(), "MTU of x0: no such device");
        let e = NlError {
            errno: libc::EINVAL,
            detail: Some("bad".into()),
        }
        .into_io("setting MTU of lo");
        assert!(e.to_string().ends_with("(bad)"), "{e}");
    }

    #[test]
    fn acks_and_dumps_from_the_kernel() {
        // Loopback exists in every namespace: a get by name answers, a dump ends.
        let mut nl = Netlink::open().unwrap();
        let mut link = netlink_packet_route::link::LinkMessage::default();
        link.attributes
            .push(netlink_packet_route::link::LinkAttribute::IfName(
                "lo".into(),
            ));
        let answer: RouteNetlinkMessage = nl.get(RouteNetlinkMessage::GetLink(link)).unwrap();
        assert!(matches!(answer, RouteNetlinkMessage::NewLink(ref l) if l.header.index == 1));
        let mut n = 0;
        nl.dump::<RouteNetlinkMessage>(RouteNetlinkMessage::GetLink(Default::default()), |_| {
            n += 1;
            true
        })
        .unwrap();
        assert!(n >= 1);
        // The socket is still in step after the dump.
        let mut link = netlink_packet_route::link::LinkMessage::default();
        link.attributes
            .push(netlink_packet_route::link::LinkAttribute::IfName(
                "nosuch0".into(),
            ));
        let e = nl
            .get::<RouteNetlinkMessage>(RouteNetlinkMessage::GetLink(link))
            .unwrap_err();
        assert_eq!(e.errno, libc::ENODEV, "{e:?}");
    }
}

//! Classic BPF programs that spread ESP among the forwarding shards by SPI.
//!
//! Two attach points, two different views of the packet (both verified on Linux 6.x by the
//! tests in `udp.rs` and `raw.rs`):
//!
//! * `SO_ATTACH_REUSEPORT_CBPF` on a UDP socket of a `SO_REUSEPORT` group: the kernel pulls
//!   the UDP header before running the program (`run_bpf_filter` in
//!   `net/core/sock_reuseport.c`), so absolute offset 0 is the **first byte of the UDP
//!   payload**. The return value is an index into the group's socket array (sockets in the
//!   order they joined the group, i.e. bound); a value `>= group size` makes the kernel fall
//!   back to its usual flow hash. If a load runs past the end of the datagram the program
//!   aborts and returns 0, so datagrams shorter than 4 bytes (the 1-byte NAT-keepalive of
//!   RFC 3948 §2.2) go to socket 0, as IKE does.
//! * `SO_ATTACH_FILTER` on a raw `AF_INET` socket: offset 0 is the **IPv4 header** (the raw
//!   socket sees the reassembled datagram, header included). The return value is how many
//!   bytes to keep: 0 drops the packet for this socket only, other raw sockets of the same
//!   protocol still get their copy. A load past the end drops the packet.
//! * `SO_ATTACH_FILTER` on a raw `AF_INET6` socket (`raw6.rs`): offset 0 is the **ESP or AH
//!   header** (an IPv6 raw socket never sees the IPv6 header); the reuseport program above
//!   works unchanged for an IPv6 UDP group (the UDP header is pulled for IPv6 too).

use std::io;
use std::os::fd::AsRawFd;

/// `SO_ATTACH_REUSEPORT_CBPF` (asm-generic/socket.h; libc only exports it for some arches).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// Shard that owns `spi` among `shards` shards: the same rule the BPF programs apply.
pub fn spi_shard(spi: u32, shards: u32) -> u32 {
    if shards <= 1 { 0 } else { spi % shards }
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// Reuseport selector for a NAT-T (UDP 4500) group of `shards` sockets:
/// payload word 0 == 0 (non-ESP marker, IKE) → socket 0; else socket `SPI % shards`.
///
/// ```text
/// ld  [0]            ; A = first payload word (SPI or marker), big-endian
/// jeq #0, ike, esp
/// esp: mod #N        ; A = SPI % N
///      ret a
/// ike: ret #0
/// ```
pub fn reuseport_spi_program(shards: u32) -> Vec<libc::sock_filter> {
    let n = shards.max(1);
    vec![
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 2, 0),
        stmt(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, n),
        stmt(libc::BPF_RET | libc::BPF_A, 0),
        stmt(libc::BPF_RET | libc::BPF_K, 0),
    ]
}

/// The IPsec protocol a raw socket carries, and where its SPI sits after the IP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpsecProto {
    /// ESP, IP protocol 50 (RFC 4303 §2): the SPI is the first word of the ESP header.
    Esp,
    /// AH, IP protocol 51 (RFC 4302 §2): next header, payload length, reserved, then the
    /// SPI at offset 4.
    Ah,
}

impl IpsecProto {
    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            IpsecProto::Esp => 50,
            IpsecProto::Ah => 51,
        }
    }

    /// Offset of the SPI from the end of the IP header.
    pub fn spi_offset(self) -> u32 {
        match self {
            IpsecProto::Esp => 0,
            IpsecProto::Ah => 4,
        }
    }
}

/// Socket filter for raw IPv4 socket `shard` of `shards`: accept only packets whose SPI
/// satisfies `SPI % shards == shard`. Packets too short to hold an SPI go to shard 0, which
/// counts them as malformed (a filter that could not read them would drop them uncounted).
///
/// ```text
///        ldxb 4*([0]&0xf)   ; X = IPv4 header length (BPF_MSH)
///        ld   len           ; A = packet length
///        sub  x             ; A = bytes after the IP header
///        jge  #off+4, spi, short
/// spi:   ld   [x+off]       ; A = SPI (off = 0 for ESP, 4 for AH)
///        mod  #N
///        jeq  #shard, accept, drop
/// short: ret  #(shard == 0 ? 0xffffffff : 0)
/// accept: ret #0xffffffff   ; whole packet
/// drop:   ret #0
/// ```
pub fn raw_spi_filter(proto: IpsecProto, shard: u32, shards: u32) -> Vec<libc::sock_filter> {
    let mut prog = vec![
        stmt(libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH, 0),
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_LEN, 0),
        stmt(libc::BPF_ALU | libc::BPF_SUB | libc::BPF_X, 0),
        jump(
            libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
            proto.spi_offset() + 4,
            0,
            3,
        ),
        stmt(
            libc::BPF_LD | libc::BPF_W | libc::BPF_IND,
            proto.spi_offset(),
        ),
    ];
    prog.extend(spi_to_shard(shard, shards));
    prog
}

/// Socket filter for raw IPv6 socket `shard` of `shards`: accept only packets whose SPI
/// satisfies `SPI % shards == shard`. Packets too short to hold an SPI go to shard 0, which
/// counts them as malformed (as [`raw_spi_filter`] does for IPv4).
///
/// ```text
///        ld   len           ; A = bytes from the ESP/AH header on
///        jge  #off+4, spi, short
/// spi:   ld   [off]         ; A = SPI (off = 0 for ESP, 4 for AH)
///        mod  #N
///        jeq  #shard, accept, drop
/// short: ret  #(shard == 0 ? 0xffffffff : 0)
/// accept: ret #0xffffffff
/// drop:   ret #0
/// ```
pub fn raw6_spi_filter(proto: IpsecProto, shard: u32, shards: u32) -> Vec<libc::sock_filter> {
    let mut prog = vec![
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_LEN, 0),
        jump(
            libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
            proto.spi_offset() + 4,
            0,
            3,
        ),
        stmt(
            libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
            proto.spi_offset(),
        ),
    ];
    prog.extend(spi_to_shard(shard, shards));
    prog
}

/// The common end of the raw SPI filters, with the SPI in A (a packet too short for one jumps
/// to `short`, three instructions on): `mod #N; jeq #shard, accept, drop; short: ret #(shard
/// == 0 ? all : 0); accept: ret all; drop: ret 0`.
fn spi_to_shard(shard: u32, shards: u32) -> [libc::sock_filter; 5] {
    let short = if shard == 0 { u32::MAX } else { 0 };
    [
        stmt(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, shards.max(1)),
        jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, shard, 1, 2),
        stmt(libc::BPF_RET | libc::BPF_K, short),
        stmt(libc::BPF_RET | libc::BPF_K, u32::MAX),
        stmt(libc::BPF_RET | libc::BPF_K, 0),
    ]
}

fn attach(fd: libc::c_int, opt: libc::c_int, prog: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: fprog points at `prog`, which outlives the call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&fprog as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Attaches a reuseport selector to the group `sock` belongs to (attach after all sockets
/// are bound; it replaces any earlier program of the group).
pub fn attach_reuseport_cbpf(sock: &impl AsRawFd, prog: &[libc::sock_filter]) -> io::Result<()> {
    attach(sock.as_raw_fd(), SO_ATTACH_REUSEPORT_CBPF, prog)
}

/// Attaches a socket filter (`SO_ATTACH_FILTER`) to `sock`.
pub fn attach_filter(sock: &impl AsRawFd, prog: &[libc::sock_filter]) -> io::Result<()> {
    attach(sock.as_raw_fd(), libc::SO_ATTACH_FILTER, prog)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spi_shard_rule() {
        assert_eq!(spi_shard(1111, 1), 0);
        assert_eq!(spi_shard(1111, 2), 1);
        assert_eq!(spi_shard(2222, 4), 2);
        assert_eq!(spi_shard(7, 0), 0);
    }

    #[test]
    fn programs_have_expected_shape() {
        let p = reuseport_spi_program(3);
        assert_eq!(p.len(), 5);
        assert_eq!(p[2].k, 3);
        let f = raw_spi_filter(IpsecProto::Ah, 1, 4);
        assert_eq!(f[3].k, 8, "length check covers the AH SPI");
        assert_eq!(f[4].k, 4, "AH SPI offset");
        assert_eq!(f[5].k, 4, "modulus");
        assert_eq!(f[6].k, 1, "shard");
        assert_eq!(f[7].k, 0, "short packets only on shard 0");
        assert_eq!(raw_spi_filter(IpsecProto::Esp, 0, 4)[7].k, u32::MAX);
    }
}

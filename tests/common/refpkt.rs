//! Reference IPsec packets built straight from RFC 4303 / RFC 4302 / RFC 3948 with the RustCrypto
//! primitives (not with ikehub's ESP code), and a minimal pcap writer. Used to prove that the
//! Wireshark decryption set-up of the harness works on its own, independently of the daemon.

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use hmac::{Hmac, Mac};

use super::tunnel::{Auth, Encr};

/// Internet checksum (RFC 1071).
pub fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 header (20 bytes, DF clear, TTL 64) with checksum, followed by `payload`.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, id: u16, payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut p = vec![0x45, 0, (total >> 8) as u8, total as u8];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0, 0, 64, proto, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let c = inet_checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// An ICMP echo request with identifier, sequence number and a 32-byte payload.
pub fn icmp_echo_request(ident: u16, seq: u16) -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0];
    m.extend_from_slice(&ident.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend((0..32u8).map(|i| 0x20 + i));
    let c = inet_checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// Parses "198.51.100.1" into octets.
pub fn addr(s: &str) -> [u8; 4] {
    let ip: std::net::Ipv4Addr = s.parse().expect("IPv4 address");
    ip.octets()
}

/// CBC encryption in place (length must be a multiple of the block size).
pub fn cbc_encrypt(encr: Encr, key: &[u8], iv: &[u8], data: &mut [u8]) {
    fn run<C: BlockCipherEncrypt + KeyInit>(key: &[u8], iv: &[u8], data: &mut [u8]) {
        let cipher = C::new_from_slice(key).expect("key length");
        let bs = iv.len();
        let mut prev = iv.to_vec();
        for block in data.chunks_mut(bs) {
            block.iter_mut().zip(&prev).for_each(|(b, p)| *b ^= p);
            cipher.encrypt_block(block.try_into().expect("block size"));
            prev.copy_from_slice(block);
        }
    }
    assert_eq!(data.len() % encr.block_len(), 0);
    match encr {
        Encr::None => {}
        Encr::Des => run::<des::Des>(key, iv, data),
        Encr::TripleDes => run::<des::TdesEde3>(key, iv, data),
        Encr::Aes128 => run::<aes::Aes128>(key, iv, data),
        Encr::Aes192 => run::<aes::Aes192>(key, iv, data),
        Encr::Aes256 => run::<aes::Aes256>(key, iv, data),
        Encr::AesGcm128 | Encr::AesGcm256 => panic!("reference packets are CBC only"),
    }
}

/// The truncated ICV of `data`.
pub fn icv(auth: Auth, key: &[u8], data: &[u8]) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], data: &[u8], len: usize) -> Vec<u8> {
        let mut m = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
        m.update(data);
        m.finalize().into_bytes()[..len].to_vec()
    }
    match auth {
        Auth::None => Vec::new(),
        Auth::HmacMd5 => run::<Hmac<md5::Md5>>(key, data, 12),
        Auth::HmacSha1 => run::<Hmac<sha1::Sha1>>(key, data, 12),
        Auth::HmacSha256 => run::<Hmac<sha2::Sha256>>(key, data, 16),
    }
}

/// One ESP SA's parameters for building packets.
pub struct EspParams<'a> {
    pub spi: u32,
    pub seq: u32,
    pub encr: Encr,
    pub encr_key: &'a [u8],
    pub auth: Auth,
    pub auth_key: &'a [u8],
    /// Must be `encr.block_len()` long (empty for `Encr::None`).
    pub iv: &'a [u8],
}

/// The ESP part (header, IV, encrypted payload + padding + trailer, ICV) of a packet carrying
/// `inner` with next header `next_header` (4 = IPv4 in tunnel mode). RFC 4303 §2.
pub fn esp_payload(p: &EspParams, next_header: u8, inner: &[u8]) -> Vec<u8> {
    let bs = p.encr.block_len();
    let pad_len = (bs - (inner.len() + 2) % bs) % bs;
    let mut plain = inner.to_vec();
    plain.extend((1..=pad_len as u8).collect::<Vec<u8>>());
    plain.push(pad_len as u8);
    plain.push(next_header);
    let iv = if p.encr == Encr::None { &[][..] } else { p.iv };
    assert_eq!(iv.len(), if p.encr == Encr::None { 0 } else { bs });
    cbc_encrypt(p.encr, p.encr_key, iv, &mut plain);
    let mut esp = p.spi.to_be_bytes().to_vec();
    esp.extend_from_slice(&p.seq.to_be_bytes());
    esp.extend_from_slice(iv);
    esp.extend_from_slice(&plain);
    let tag = icv(p.auth, p.auth_key, &esp);
    esp.extend_from_slice(&tag);
    esp
}

/// UDP header (checksum 0, allowed for ESP-in-UDP over IPv4, RFC 3948 §2.1) + payload.
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// One AH SA's parameters for building packets.
pub struct AhParams<'a> {
    pub spi: u32,
    pub seq: u32,
    pub auth: Auth,
    pub auth_key: &'a [u8],
}

/// A full outer IPv4 + AH packet (RFC 4302) with a correct ICV over the immutable fields.
pub fn ah_packet(
    src: [u8; 4],
    dst: [u8; 4],
    p: &AhParams,
    next_header: u8,
    payload: &[u8],
) -> Vec<u8> {
    let icv_len = p.auth.icv_len();
    // AH length field: header length in 32-bit words minus 2 (RFC 4302 §2.2).
    let ah_len = 12 + icv_len;
    let mut ah = vec![next_header, (ah_len / 4 - 2) as u8, 0, 0];
    ah.extend_from_slice(&p.spi.to_be_bytes());
    ah.extend_from_slice(&p.seq.to_be_bytes());
    ah.extend(std::iter::repeat_n(0u8, icv_len));
    ah.extend_from_slice(payload);
    let mut pkt = ipv4(src, dst, 51, 1, &ah);
    // ICV over the packet with mutable fields (TOS, flags/offset, TTL, checksum) zeroed.
    let mut zeroed = pkt.clone();
    zeroed[1] = 0;
    zeroed[6..8].fill(0);
    zeroed[8] = 0;
    zeroed[10..12].fill(0);
    let tag = icv(p.auth, p.auth_key, &zeroed);
    pkt[20 + 12..20 + 12 + icv_len].copy_from_slice(&tag);
    pkt
}

/// A pcap file (microsecond timestamps) of raw IPv4 packets (LINKTYPE_RAW = 101).
pub fn pcap_raw_ip(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&0i32.to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&101u32.to_le_bytes());
    for (i, p) in packets.iter().enumerate() {
        f.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        f.extend_from_slice(&(i as u32 * 1000).to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(p);
    }
    f
}

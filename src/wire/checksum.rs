//! The Internet checksum (RFC 1071), used by the IPv4 header, ICMP and (optionally) UDP.

/// Ones'-complement sum of `data` folded to 16 bits, not yet complemented.
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    fold(acc)
}

/// Folds carries back into the low 16 bits.
pub fn fold(mut acc: u32) -> u32 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// The checksum field value for `data` (complemented sum).
pub fn checksum(data: &[u8]) -> u16 {
    !(fold(sum(data)) as u16)
}

/// Combines partial sums of several pieces (each from [`sum`]) into the checksum field value.
pub fn combine(parts: &[u32]) -> u16 {
    let mut acc = 0u32;
    for p in parts {
        acc = fold(acc + p);
    }
    !(acc as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 numerical example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&d), 0xddf2);
        assert_eq!(checksum(&d), !0xddf2);
        assert_eq!(sum(&[0xff]), 0xff00);
    }
}

//! Minimal IP packet helpers the library needs on its hot path: header parsing, the
//! identity used to match a sent packet to its queued original, and checksum repair.
//!
//! Temporary: lindivert_core::packet (parser, checksums) replaces the parsing and checksum
//! parts once it lands; the identity logic stays here.

use std::hash::{Hash, Hasher};

/// What the library needs to know about an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PktInfo {
    /// IPv6?
    pub v6: bool,
    /// Total IP length from the header (IPv4 `Length`, IPv6 `Length + 40`).
    pub ip_len: usize,
    /// Final transport protocol.
    pub proto: u8,
    /// Offset of the transport header.
    pub l4_off: usize,
    /// Source address (IPv4 in the first 4 bytes).
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Source port (TCP/UDP), ICMP id, else 0.
    pub sport: u16,
    /// Destination port (TCP/UDP), else 0.
    pub dport: u16,
    /// A fragment (IPv4 MF/offset, IPv6 Fragment header).
    pub fragment: bool,
    /// Not the first fragment: no transport header.
    pub later_fragment: bool,
}

/// Parse the IP and transport header fields. `None` if not a valid IPv4/IPv6 header or the
/// buffer is shorter than the IP length.
pub fn parse(b: &[u8]) -> Option<PktInfo> {
    let ver = b.first()? >> 4;
    let mut p = PktInfo {
        v6: ver == 6,
        ip_len: 0,
        proto: 0,
        l4_off: 0,
        src: [0; 16],
        dst: [0; 16],
        sport: 0,
        dport: 0,
        fragment: false,
        later_fragment: false,
    };
    match ver {
        4 => {
            if b.len() < 20 {
                return None;
            }
            let ihl = (b[0] & 0xf) as usize * 4;
            let len = u16::from_be_bytes([b[2], b[3]]) as usize;
            if ihl < 20 || len < ihl || len > b.len() {
                return None;
            }
            p.ip_len = len;
            p.proto = b[9];
            p.l4_off = ihl;
            p.src[..4].copy_from_slice(&b[12..16]);
            p.dst[..4].copy_from_slice(&b[16..20]);
            let frag = u16::from_be_bytes([b[6], b[7]]);
            p.fragment = frag & 0x3fff != 0;
            p.later_fragment = frag & 0x1fff != 0;
        }
        6 => {
            if b.len() < 40 {
                return None;
            }
            let len = u16::from_be_bytes([b[4], b[5]]) as usize + 40;
            if len > b.len() {
                return None;
            }
            p.ip_len = len;
            p.src.copy_from_slice(&b[8..24]);
            p.dst.copy_from_slice(&b[24..40]);
            let mut nh = b[6];
            let mut off = 40usize;
            loop {
                match nh {
                    0 | 43 | 60 | 135 => {
                        let h = b.get(off..off + 2)?;
                        nh = h[0];
                        off += (h[1] as usize + 1) * 8;
                    }
                    51 => {
                        let h = b.get(off..off + 2)?;
                        nh = h[0];
                        off += (h[1] as usize + 2) * 4;
                    }
                    44 => {
                        let h = b.get(off..off + 8)?;
                        p.fragment = true;
                        p.later_fragment = u16::from_be_bytes([h[2], h[3]]) & 0xfff8 != 0;
                        nh = h[0];
                        off += 8;
                    }
                    _ => break,
                }
                if off > len {
                    return None;
                }
            }
            p.proto = nh;
            p.l4_off = off;
        }
        _ => return None,
    }
    if !p.later_fragment {
        let t = &b[p.l4_off..p.ip_len];
        match p.proto {
            6 | 17 if t.len() >= 4 => {
                p.sport = u16::from_be_bytes([t[0], t[1]]);
                p.dport = u16::from_be_bytes([t[2], t[3]]);
            }
            1 | 58 if t.len() >= 8 => {
                p.sport = u16::from_be_bytes([t[4], t[5]]);
            }
            _ => {}
        }
    }
    Some(p)
}

/// The identity of a packet's flow: version, addresses, protocol, ports. A sent packet is
/// matched to a queued packet with the same flow identity (the exact bytes first).
pub fn flow_key(p: &PktInfo) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (p.v6, p.src, p.dst, p.proto, p.sport, p.dport).hash(&mut h);
    h.finish()
}

/// A fast 64-bit hash of the exact bytes (two independent multiply-rotate lanes over
/// 8-byte words, then a final avalanche). Not cryptographic: it only tells whether the
/// application changed a packet it received, so that unchanged packets get a plain ACCEPT.
pub fn bytes_hash(b: &[u8]) -> u64 {
    const K1: u64 = 0x9E37_79B9_7F4A_7C15;
    const K2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    let mut h1 = K2 ^ b.len() as u64;
    let mut h2 = K1.rotate_left(17) ^ b.len() as u64;
    let mut chunks = b.chunks_exact(16);
    for c in &mut chunks {
        let w1 = u64::from_le_bytes(c[0..8].try_into().unwrap());
        let w2 = u64::from_le_bytes(c[8..16].try_into().unwrap());
        h1 = (h1 ^ w1).wrapping_mul(K1).rotate_left(29);
        h2 = (h2 ^ w2).wrapping_mul(K2).rotate_left(31);
    }
    let mut tail = [0u8; 16];
    let r = chunks.remainder();
    tail[..r.len()].copy_from_slice(r);
    h1 = (h1 ^ u64::from_le_bytes(tail[0..8].try_into().unwrap()))
        .wrapping_mul(K1)
        .rotate_left(29);
    h2 = (h2 ^ u64::from_le_bytes(tail[8..16].try_into().unwrap()))
        .wrapping_mul(K2)
        .rotate_left(31);
    let mut h = h1 ^ h2.rotate_left(32);
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}

fn sum16(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = chunks.remainder() {
        acc += (*last as u64) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Recompute the checksums the caller asks for (IPv4 header, TCP, UDP) from scratch.
/// Fragments get no transport checksum. Returns false if the packet does not parse.
pub fn fix_checksums(b: &mut [u8], ip: bool, tcp: bool, udp: bool) -> bool {
    let Some(p) = parse(b) else { return false };
    if !p.v6 && ip {
        let ihl = p.l4_off;
        b[10] = 0;
        b[11] = 0;
        let c = fold(sum16(&b[..ihl], 0));
        b[10..12].copy_from_slice(&c.to_be_bytes());
    }
    if p.fragment {
        return true;
    }
    let (want, off) = match p.proto {
        6 => (tcp, 16),
        17 => (udp, 6),
        _ => (false, 0),
    };
    if !want || p.l4_off + off + 2 > p.ip_len {
        return true;
    }
    let l4_len = p.ip_len - p.l4_off;
    let mut acc = 0u64;
    if p.v6 {
        acc = sum16(&p.src, acc);
        acc = sum16(&p.dst, acc);
        acc += (l4_len as u64 >> 16) + (l4_len as u64 & 0xffff);
    } else {
        acc = sum16(&p.src[..4], acc);
        acc = sum16(&p.dst[..4], acc);
        acc += l4_len as u64;
    }
    acc += p.proto as u64;
    let ck = p.l4_off + off;
    b[ck] = 0;
    b[ck + 1] = 0;
    let mut c = fold(sum16(&b[p.l4_off..p.ip_len], acc));
    if p.proto == 17 && c == 0 {
        c = 0xffff;
    }
    b[ck..ck + 2].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    // A UDP/IPv4 packet 10.0.0.1:1234 -> 10.0.0.2:5678 "hi" with correct checksums.
    fn udp4() -> Vec<u8> {
        let mut b = vec![
            0x45, 0, 0, 30, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x04,
            0xd2, 0x16, 0x2e, 0, 10, 0, 0, b'h', b'i',
        ];
        assert!(fix_checksums(&mut b, true, true, true));
        b
    }

    #[test]
    fn parse_udp4_and_checksums_verify() {
        let b = udp4();
        let p = parse(&b).unwrap();
        assert_eq!((p.proto, p.sport, p.dport, p.ip_len), (17, 1234, 5678, 30));
        // header checksum verifies to 0
        assert_eq!(fold(sum16(&b[..20], 0)), 0);
        // recomputing gives the same bytes
        let mut c = b.clone();
        fix_checksums(&mut c, true, true, true);
        assert_eq!(b, c);
        // identity ignores payload
        let mut d = b.clone();
        d[28] = b'X';
        assert_eq!(flow_key(&parse(&d).unwrap()), flow_key(&p));
        assert_ne!(bytes_hash(&d), bytes_hash(&b));
        // every single-bit change anywhere changes the hash
        let big: Vec<u8> = (0..3000u32).map(|i| (i * 31) as u8).collect();
        let h0 = bytes_hash(&big);
        for i in (0..big.len()).step_by(7) {
            let mut c = big.clone();
            c[i] ^= 1 << (i % 8);
            assert_ne!(bytes_hash(&c), h0, "byte {i}");
        }
        assert_ne!(bytes_hash(&big[..2999]), h0);
    }

    #[test]
    fn garbage_does_not_parse() {
        assert!(parse(&[]).is_none());
        assert!(parse(&[0x45; 10]).is_none());
        let mut b = udp4();
        b[3] = 200; // length beyond buffer
        assert!(parse(&b).is_none());
    }
}

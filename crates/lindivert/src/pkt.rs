//! The packet identity the handle uses to match a sent packet to its queued original, and
//! the checksum repair before a verdict or an injection (both on top of
//! `lindivert_core::packet`).
//!
//! Contract: everything here is pure (no system calls) and never panics on any input.
//! [`flow_key`] and [`bytes_hash`] are in-process hashes: equal inputs give equal values,
//! different inputs almost always different ones, but the values are not stable across
//! versions and not meant to be stored or sent. [`repair_checksums`] only writes checksum
//! fields.
//!
//! ```
//! use lindivert::pkt::{bytes_hash, flow_key, repair_checksums};
//! use lindivert::core::packet::{parse, verify_checksums};
//! use lindivert::Address;
//!
//! // IPv4 + UDP 10.0.0.1:12345 -> 10.0.0.2:53, checksums zero.
//! let mut pkt = [
//!     0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
//!     0x30, 0x39, 0, 53, 0, 8, 0, 0,
//! ];
//! let key = flow_key(&parse(&pkt).unwrap());
//! let hash = bytes_hash(&pkt);
//!
//! // The address's checksum bits are clear: the IPv4 and UDP checksums are filled in.
//! repair_checksums(&mut pkt, &Address::network(true));
//! assert!(verify_checksums(&pkt).unwrap().all_valid());
//! assert_eq!(flow_key(&parse(&pkt).unwrap()), key); // same flow
//! assert_ne!(bytes_hash(&pkt), hash); // other bytes
//! ```

use lindivert_core::packet::{calc_checksums, ChecksumFlags, ParsedPacket};
use lindivert_core::Address;

/// The identity of a packet's flow: version, addresses, protocol, ports (ICMP: the
/// identifier word). A sent packet is matched to a queued packet with the same flow
/// identity (the exact bytes first). Headers only (a few multiply-xor rounds over the
/// address words, never the payload): cheap enough for every packet.
pub fn flow_key(p: &ParsedPacket<'_>) -> u64 {
    let ports = p.ports().or_else(|| {
        let body = p
            .icmp()
            .map(|i| i.body())
            .or(p.icmpv6().map(|i| i.body()))?;
        Some(((body >> 16) as u16, 0))
    });
    let b = p.bytes;
    let addrs: &[u8] = match p.version {
        4 if b.len() >= 20 => &b[12..20],
        6 if b.len() >= 40 => &b[8..40],
        _ => &[],
    };
    let (sp, dp, has) = match ports {
        Some((s, d)) => (s as u64, d as u64, 1u64),
        None => (0, 0, 0),
    };
    let mut h = mix(
        0x243F_6A88_85A3_08D3,
        (p.version as u64) | (p.protocol as u64) << 8 | has << 16 | sp << 24 | dp << 40,
    );
    let mut chunks = addrs.chunks_exact(8);
    for c in &mut chunks {
        h = mix(h, u64::from_le_bytes(c.try_into().unwrap()));
    }
    let r = chunks.remainder();
    if !r.is_empty() {
        let mut t = [0u8; 8];
        t[..r.len()].copy_from_slice(r);
        h = mix(h, u64::from_le_bytes(t));
    }
    h ^ (h >> 29)
}

#[inline]
fn mix(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(27)
}

/// Fill the checksums whose bit in `addr` is 0 (IPv4 header, TCP, UDP; never ICMP/ICMPv6),
/// as WinDivert's driver does before injecting. Packets that cannot take a transport
/// checksum (fragments, truncated) keep what they have.
pub fn repair_checksums(packet: &mut [u8], addr: &Address) {
    if addr.ip_checksum && addr.tcp_checksum && addr.udp_checksum {
        return;
    }
    let mut flags = ChecksumFlags::NO_ICMP_CHECKSUM | ChecksumFlags::NO_ICMPV6_CHECKSUM;
    if addr.ip_checksum {
        flags |= ChecksumFlags::NO_IP_CHECKSUM;
    }
    if addr.tcp_checksum {
        flags |= ChecksumFlags::NO_TCP_CHECKSUM;
    }
    if addr.udp_checksum {
        flags |= ChecksumFlags::NO_UDP_CHECKSUM;
    }
    let _ = calc_checksums(packet, flags);
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

#[cfg(test)]
mod tests {
    use super::*;
    use lindivert_core::packet::{parse, verify_checksums};

    // A UDP/IPv4 packet 10.0.0.1:1234 -> 10.0.0.2:5678 "hi" with correct checksums.
    fn udp4() -> Vec<u8> {
        let mut b = vec![
            0x45, 0, 0, 30, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x04,
            0xd2, 0x16, 0x2e, 0, 10, 0, 0, b'h', b'i',
        ];
        let mut a = Address::network(true);
        a.ip_checksum = false;
        a.udp_checksum = false;
        repair_checksums(&mut b, &a);
        b
    }

    #[test]
    fn identity_hash_and_repair() {
        let b = udp4();
        assert!(verify_checksums(&b).unwrap().all_valid());
        let p = parse(&b).unwrap();
        // identity ignores payload
        let mut d = b.clone();
        d[28] = b'X';
        assert_eq!(flow_key(&parse(&d).unwrap()), flow_key(&p));
        assert_ne!(bytes_hash(&d), bytes_hash(&b));
        // checksum bits set: nothing is touched
        let mut e = d.clone();
        let mut a = Address::network(true);
        a.ip_checksum = true;
        a.udp_checksum = true;
        repair_checksums(&mut e, &a);
        assert_eq!(e, d);
        a.udp_checksum = false;
        repair_checksums(&mut e, &a);
        assert!(verify_checksums(&e).unwrap().all_valid());
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
}

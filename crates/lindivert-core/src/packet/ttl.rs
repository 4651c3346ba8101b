//! `WinDivertHelperDecrementTTL`.

use super::checksum::checksum_update_u16;
use super::field::{set_u16, set_u8, u16_at, u8_at};

/// Decrements the IPv4 TTL or IPv6 hop limit of the packet at the start of `packet`, exactly
/// like `WinDivertHelperDecrementTTL`, and updates the IPv4 header checksum incrementally
/// (RFC 1624, equation 3; this equals WinDivert's update for every checksum value).
///
/// Returns false and leaves the packet unchanged if the value is 0 or 1, if the buffer is
/// shorter than 20 bytes (IPv6: 40), or if the version nibble is neither 4 nor 6. Nothing
/// else is validated (as in WinDivert, the IPv4 IHL and length are not checked).
///
/// ```
/// let mut pkt = [0x45u8, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0x66, 0xd7, 10, 0, 0, 1, 10, 0, 0, 2];
/// assert!(lindivert_core::packet::decrement_ttl(&mut pkt));
/// assert_eq!(pkt[8], 63);
/// assert_eq!(lindivert_core::packet::verify_ipv4_checksum(&pkt), Some(true));
/// ```
pub fn decrement_ttl(packet: &mut [u8]) -> bool {
    if packet.len() < 20 {
        return false;
    }
    match u8_at(packet, 0) >> 4 {
        4 => {
            let ttl = u8_at(packet, 8);
            if ttl <= 1 {
                return false;
            }
            let old = u16_at(packet, 8);
            set_u8(packet, 8, ttl - 1);
            let new = u16_at(packet, 8);
            let c = checksum_update_u16(u16_at(packet, 10), old, new);
            set_u16(packet, 10, c);
            true
        }
        6 => {
            let hl = u8_at(packet, 7);
            if packet.len() < 40 || hl <= 1 {
                return false;
            }
            set_u8(packet, 7, hl - 1);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WinDivert's update: +1 on the checksum read as a little-endian word, with 0xFFFE and
    /// 0xFFFF wrapping to 0 and 1.
    fn windivert_update(c: u16) -> u16 {
        let raw = u16::from_le_bytes(c.to_be_bytes());
        let raw = if raw >= 0xFFFE { raw - 0xFFFE } else { raw + 1 };
        u16::from_be_bytes(raw.to_le_bytes())
    }

    #[test]
    fn equals_windivert_update_for_every_checksum() {
        for ttl in [2u8, 3, 64, 128, 255] {
            for proto in [0u8, 6, 17, 255] {
                for c in 0..=0xFFFFu16 {
                    let mut p = [0u8; 20];
                    p[0] = 0x45;
                    p[8] = ttl;
                    p[9] = proto;
                    p[10..12].copy_from_slice(&c.to_be_bytes());
                    assert!(decrement_ttl(&mut p));
                    assert_eq!(p[8], ttl - 1);
                    assert_eq!(
                        u16::from_be_bytes([p[10], p[11]]),
                        windivert_update(c),
                        "{c:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn ipv4_keeps_checksum_valid() {
        // ipv4_udp_dns_req as captured: TTL 0x49, checksum 0x3b18.
        let mut p = crate::packet::tests::hex(
            "450000392090000049113b180a00000108080404e0450035002522a7170801000001000000000000076578616d706c6503636f6d0000010001",
        );
        for ttl in (1..0x49u8).rev() {
            assert!(decrement_ttl(&mut p));
            assert_eq!(p[8], ttl);
            assert_eq!(crate::packet::verify_ipv4_checksum(&p), Some(true));
        }
        let before = p.clone();
        assert!(!decrement_ttl(&mut p));
        assert_eq!(p, before);
        p[8] = 0;
        assert!(!decrement_ttl(&mut p));
        assert_eq!(p[8], 0);
    }

    #[test]
    fn ipv6_and_invalid() {
        let mut p = [0u8; 40];
        p[0] = 0x60;
        p[7] = 2;
        assert!(decrement_ttl(&mut p));
        assert_eq!(p[7], 1);
        assert!(!decrement_ttl(&mut p));
        assert_eq!(p[7], 1);
        // IPv6 needs 40 bytes.
        let mut q = [0u8; 39];
        q[0] = 0x60;
        q[7] = 9;
        assert!(!decrement_ttl(&mut q));
        assert_eq!(q[7], 9);
        // Not IP / too short.
        let mut r = [0x55u8; 40];
        assert!(!decrement_ttl(&mut r));
        assert_eq!(r, [0x55u8; 40]);
        let mut s = [0x45u8, 0, 0, 0, 0, 0, 0, 0, 9];
        assert!(!decrement_ttl(&mut s));
        assert!(!decrement_ttl(&mut []));
        // IPv4 with a bogus IHL still works, as in WinDivert.
        let mut t = [0u8; 20];
        t[0] = 0x40;
        t[8] = 5;
        assert!(decrement_ttl(&mut t));
        assert_eq!(t[8], 4);
    }
}

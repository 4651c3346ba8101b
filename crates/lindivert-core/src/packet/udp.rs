//! The UDP header view (`WINDIVERT_UDPHDR`, RFC 768).

use super::field::{set_u16, sub, sub_mut, u16_at, view_basics};
use std::fmt;

/// A zero-copy view of a UDP header at the start of `T` (at least 8 bytes; the buffer may
/// also hold the payload).
///
/// ```
/// use lindivert_core::packet::UdpHeader;
/// let mut buf = [0u8; 8];
/// let mut u = UdpHeader::new(&mut buf[..]).unwrap();
/// u.set_src_port(5353);
/// u.set_dst_port(53);
/// u.set_length(8);
/// assert_eq!(buf, [0x14, 0xe9, 0, 53, 0, 8, 0, 0]);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpHeader<T> {
    buf: T,
}

view_basics!(UdpHeader, LEN = 8, "Length of the header.");

impl<T: AsRef<[u8]>> UdpHeader<T> {
    /// The source port (`udp.SrcPort`).
    #[inline]
    pub fn src_port(&self) -> u16 {
        u16_at(self.buf.as_ref(), 0)
    }

    /// The destination port (`udp.DstPort`).
    #[inline]
    pub fn dst_port(&self) -> u16 {
        u16_at(self.buf.as_ref(), 2)
    }

    /// The length field (`udp.Length`: header and payload, as stored).
    #[inline]
    pub fn length(&self) -> u16 {
        u16_at(self.buf.as_ref(), 4)
    }

    /// The checksum as stored (`udp.Checksum`; 0 over IPv4 means "none").
    #[inline]
    pub fn checksum(&self) -> u16 {
        u16_at(self.buf.as_ref(), 6)
    }

    /// The bytes after the 8-byte header, up to the end of the buffer (the UDP length field is
    /// not consulted, as in WinDivert).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let b = self.buf.as_ref();
        sub(b, Self::LEN, b.len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpHeader<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 0, v);
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 2, v);
    }

    /// Sets the length field.
    #[inline]
    pub fn set_length(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 4, v);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 6, v);
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let b = self.buf.as_mut();
        let len = b.len();
        sub_mut(b, Self::LEN, len)
    }
}

impl<T: AsRef<[u8]>> fmt::Debug for UdpHeader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpHeader")
            .field("src_port", &self.src_port())
            .field("dst_port", &self.dst_port())
            .field("length", &self.length())
            .field("checksum", &format_args!("{:#06x}", self.checksum()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::tests::hex;

    #[test]
    fn deconstruct() {
        // The UDP part of ipv4_udp_dns_req.
        let b = hex("e0450035002522a7170801000001000000000000076578616d706c6503636f6d0000010001");
        let u = UdpHeader::new(&b[..]).unwrap();
        assert_eq!(u.src_port(), 0xe045);
        assert_eq!(u.dst_port(), 53);
        assert_eq!(u.length(), 37);
        assert_eq!(u.checksum(), 0x22a7);
        assert_eq!(u.payload().len(), 29);
        assert!(format!("{u:?}").contains("dst_port: 53"));
        assert!(UdpHeader::new(&b[..7]).is_none());
    }

    #[test]
    fn construct() {
        let mut b = [0u8; 11];
        let mut u = UdpHeader::new(&mut b[..]).unwrap();
        u.set_src_port(0x1234);
        u.set_dst_port(0x5678);
        u.set_length(11);
        u.set_checksum(0xffff);
        u.payload_mut().copy_from_slice(b"abc");
        assert_eq!(
            b,
            [0x12, 0x34, 0x56, 0x78, 0, 11, 0xff, 0xff, b'a', b'b', b'c']
        );
    }
}

//! The IPv4 header view (`WINDIVERT_IPHDR`, RFC 791).

use super::checksum;
use super::field::{
    array_at, set_bit, set_bytes, set_u16, set_u8, sub, sub_mut, u16_at, u8_at, view_basics,
};
use std::fmt;
use std::net::Ipv4Addr;

/// A zero-copy view of an IPv4 header at the start of `T`.
///
/// The buffer holds at least the 20-byte fixed header (checked by [`Ipv4Header::new`]); it
/// may also hold options and everything after them. Getters read the header in network
/// byte order and return host values; with `T: AsMut<[u8]>` the setters write them back.
/// Nothing is validated beyond the minimum length: the field values are reported as they
/// are, so a view also works for building a header in a zeroed buffer.
///
/// ```
/// use lindivert_core::packet::Ipv4Header;
/// let mut buf = [0u8; 20];
/// let mut ip = Ipv4Header::new(&mut buf[..]).unwrap();
/// ip.set_version(4);
/// ip.set_ihl(5);
/// ip.set_total_len(20);
/// ip.set_ttl(64);
/// ip.set_protocol(17);
/// ip.set_src_addr([10, 0, 0, 1].into());
/// ip.set_dst_addr([10, 0, 0, 2].into());
/// ip.fill_checksum();
/// assert!(ip.verify_checksum());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Header<T> {
    buf: T,
}

view_basics!(
    Ipv4Header,
    MIN_LEN = 20,
    "Length of the fixed header (no options)."
);

impl<T: AsRef<[u8]>> Ipv4Header<T> {
    /// The header bytes: `header_len()` bytes, clipped to the buffer.
    #[inline]
    pub fn header_bytes(&self) -> &[u8] {
        let b = self.buf.as_ref();
        sub(b, 0, self.header_len().min(b.len()))
    }

    /// The version nibble (4 for a valid header).
    #[inline]
    pub fn version(&self) -> u8 {
        u8_at(self.buf.as_ref(), 0) >> 4
    }

    /// The IHL nibble: header length in 32-bit words (`ip.HdrLength`; valid: 5..=15).
    #[inline]
    pub fn ihl(&self) -> u8 {
        u8_at(self.buf.as_ref(), 0) & 0x0F
    }

    /// The header length in bytes (`ihl() * 4`, options included).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.ihl()) * 4
    }

    /// The type-of-service byte (`ip.TOS`: DSCP and ECN).
    #[inline]
    pub fn tos(&self) -> u8 {
        u8_at(self.buf.as_ref(), 1)
    }

    /// The DSCP (upper 6 bits of the TOS byte).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.tos() >> 2
    }

    /// The ECN code point (lower 2 bits of the TOS byte).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.tos() & 0x03
    }

    /// The total length of the packet in bytes (`ip.Length`), header included.
    #[inline]
    pub fn total_len(&self) -> u16 {
        u16_at(self.buf.as_ref(), 2)
    }

    /// The identification field (`ip.Id`).
    #[inline]
    pub fn ident(&self) -> u16 {
        u16_at(self.buf.as_ref(), 4)
    }

    /// The reserved ("evil") flag bit.
    #[inline]
    pub fn reserved_flag(&self) -> bool {
        u8_at(self.buf.as_ref(), 6) & 0x80 != 0
    }

    /// The Don't-Fragment flag (`ip.DF`).
    #[inline]
    pub fn dont_frag(&self) -> bool {
        u8_at(self.buf.as_ref(), 6) & 0x40 != 0
    }

    /// The More-Fragments flag (`ip.MF`).
    #[inline]
    pub fn more_frags(&self) -> bool {
        u8_at(self.buf.as_ref(), 6) & 0x20 != 0
    }

    /// The fragment offset in 8-byte units (`ip.FragOff`, 0..=0x1FFF).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        u16_at(self.buf.as_ref(), 6) & 0x1FFF
    }

    /// Whether this is a fragment: MF set or a non-zero fragment offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        u16_at(self.buf.as_ref(), 6) & 0x3FFF != 0
    }

    /// The time-to-live (`ip.TTL`).
    #[inline]
    pub fn ttl(&self) -> u8 {
        u8_at(self.buf.as_ref(), 8)
    }

    /// The protocol number of the next header (`ip.Protocol`).
    #[inline]
    pub fn protocol(&self) -> u8 {
        u8_at(self.buf.as_ref(), 9)
    }

    /// The header checksum as stored (`ip.Checksum`).
    #[inline]
    pub fn checksum(&self) -> u16 {
        u16_at(self.buf.as_ref(), 10)
    }

    /// The source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array_at::<4>(self.buf.as_ref(), 12))
    }

    /// The destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array_at::<4>(self.buf.as_ref(), 16))
    }

    /// The options (bytes 20 to `header_len()`); empty if there are none or the IHL is
    /// invalid or larger than the buffer.
    #[inline]
    pub fn options(&self) -> &[u8] {
        sub(self.buf.as_ref(), Self::MIN_LEN, self.header_len())
    }

    /// The checksum the header should carry: the internet checksum of the header bytes with
    /// the checksum field taken as zero. `None` if the IHL is below 5 or the header is longer
    /// than the buffer.
    pub fn compute_checksum(&self) -> Option<u16> {
        let hl = self.header_len();
        let h = self
            .buf
            .as_ref()
            .get(..hl)
            .filter(|_| hl >= Self::MIN_LEN)?;
        let mut s = checksum::Sum::new();
        s.add(sub(h, 0, 10));
        s.add(sub(h, 12, hl));
        Some(!s.fold())
    }

    /// Whether the header checksum is correct (false if the IHL is invalid or the header is
    /// longer than the buffer).
    pub fn verify_checksum(&self) -> bool {
        let hl = self.header_len();
        match self.buf.as_ref().get(..hl) {
            Some(h) if hl >= Self::MIN_LEN => checksum::ones_complement_sum(h) == 0xFFFF,
            _ => false,
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Header<T> {
    /// Sets the version nibble.
    #[inline]
    pub fn set_version(&mut self, v: u8) {
        let b = self.buf.as_mut();
        let x = u8_at(b, 0);
        set_u8(b, 0, (x & 0x0F) | (v << 4));
    }

    /// Sets the IHL nibble (header length in 32-bit words; only the low 4 bits are used).
    #[inline]
    pub fn set_ihl(&mut self, words: u8) {
        let b = self.buf.as_mut();
        let x = u8_at(b, 0);
        set_u8(b, 0, (x & 0xF0) | (words & 0x0F));
    }

    /// Sets the TOS byte.
    #[inline]
    pub fn set_tos(&mut self, v: u8) {
        set_u8(self.buf.as_mut(), 1, v);
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 2, v);
    }

    /// Sets the identification field.
    #[inline]
    pub fn set_ident(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 4, v);
    }

    /// Sets or clears the reserved flag bit.
    #[inline]
    pub fn set_reserved_flag(&mut self, on: bool) {
        set_bit(self.buf.as_mut(), 6, 0x80, on);
    }

    /// Sets or clears Don't-Fragment.
    #[inline]
    pub fn set_dont_frag(&mut self, on: bool) {
        set_bit(self.buf.as_mut(), 6, 0x40, on);
    }

    /// Sets or clears More-Fragments.
    #[inline]
    pub fn set_more_frags(&mut self, on: bool) {
        set_bit(self.buf.as_mut(), 6, 0x20, on);
    }

    /// Sets the fragment offset in 8-byte units (only the low 13 bits are used); the flags
    /// are kept.
    #[inline]
    pub fn set_frag_offset(&mut self, v: u16) {
        let b = self.buf.as_mut();
        let x = u16_at(b, 6);
        set_u16(b, 6, (x & 0xE000) | (v & 0x1FFF));
    }

    /// Sets the TTL (the checksum is not updated; see [`super::decrement_ttl`]).
    #[inline]
    pub fn set_ttl(&mut self, v: u8) {
        set_u8(self.buf.as_mut(), 8, v);
    }

    /// Sets the protocol number.
    #[inline]
    pub fn set_protocol(&mut self, v: u8) {
        set_u8(self.buf.as_mut(), 9, v);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 10, v);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        set_bytes(self.buf.as_mut(), 12, &a.octets());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        set_bytes(self.buf.as_mut(), 16, &a.octets());
    }

    /// The options, mutable (empty if there are none or the IHL is invalid).
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        sub_mut(self.buf.as_mut(), Self::MIN_LEN, hl)
    }

    /// Recomputes and stores the header checksum. Returns false (nothing written) if the IHL
    /// is below 5 or the header is longer than the buffer.
    pub fn fill_checksum(&mut self) -> bool {
        match self.compute_checksum() {
            Some(c) => {
                self.set_checksum(c);
                true
            }
            None => false,
        }
    }
}

impl<T: AsRef<[u8]>> fmt::Debug for Ipv4Header<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ipv4Header")
            .field("version", &self.version())
            .field("ihl", &self.ihl())
            .field("tos", &self.tos())
            .field("total_len", &self.total_len())
            .field("ident", &self.ident())
            .field("df", &self.dont_frag())
            .field("mf", &self.more_frags())
            .field("frag_offset", &self.frag_offset())
            .field("ttl", &self.ttl())
            .field("protocol", &self.protocol())
            .field("checksum", &format_args!("{:#06x}", self.checksum()))
            .field("src", &self.src_addr())
            .field("dst", &self.dst_addr())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ipv4_udp_dns_req as captured (valid header checksum 0x3b18).
    const DNS: &str = "450000392090000049113b180a00000108080404e0450035002522a7170801000001000000000000076578616d706c6503636f6d0000010001";

    fn hex(s: &str) -> Vec<u8> {
        super::super::tests::hex(s)
    }

    #[test]
    fn deconstruct() {
        let b = hex(DNS);
        let ip = Ipv4Header::new(&b[..]).unwrap();
        assert_eq!(ip.version(), 4);
        assert_eq!(ip.ihl(), 5);
        assert_eq!(ip.header_len(), 20);
        assert_eq!(ip.tos(), 0);
        assert_eq!(ip.total_len(), 57);
        assert_eq!(ip.ident(), 0x2090);
        assert!(!ip.dont_frag() && !ip.more_frags() && !ip.reserved_flag());
        assert_eq!(ip.frag_offset(), 0);
        assert!(!ip.is_fragment());
        assert_eq!(ip.ttl(), 0x49);
        assert_eq!(ip.protocol(), 17);
        assert_eq!(ip.checksum(), 0x3b18);
        assert_eq!(ip.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(8, 8, 4, 4));
        assert!(ip.options().is_empty());
        assert_eq!(ip.header_bytes().len(), 20);
        assert_eq!(ip.compute_checksum(), Some(0x3b18));
        assert!(ip.verify_checksum());
        assert!(format!("{ip:?}").contains("8.8.4.4"));
    }

    #[test]
    fn flags_and_fragments() {
        // ipv4_fragment_1: offset 1, MF clear; ipv4_fragemnt_0: MF set, offset 0, DF clear.
        let b = hex("4500004c12340001400100000a00000108080808");
        let ip = Ipv4Header::new(&b[..]).unwrap();
        assert!(!ip.more_frags() && ip.frag_offset() == 1 && ip.is_fragment());
        let b = hex("4500001c12342000400100000a00000108080808");
        let ip = Ipv4Header::new(&b[..]).unwrap();
        assert!(ip.more_frags() && ip.frag_offset() == 0 && ip.is_fragment());
        let b = hex("4500005412344000400100000a00000108080808");
        let ip = Ipv4Header::new(&b[..]).unwrap();
        assert!(ip.dont_frag() && !ip.more_frags() && !ip.is_fragment());
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 24];
        let mut ip = Ipv4Header::new(&mut buf[..]).unwrap();
        ip.set_version(4);
        ip.set_ihl(6);
        ip.set_tos(0xB8);
        ip.set_total_len(24);
        ip.set_ident(0xBEEF);
        ip.set_dont_frag(true);
        ip.set_more_frags(true);
        ip.set_reserved_flag(true);
        ip.set_frag_offset(0x1FFF);
        ip.set_more_frags(false);
        ip.set_reserved_flag(false);
        ip.set_ttl(3);
        ip.set_protocol(6);
        ip.set_src_addr(Ipv4Addr::new(192, 168, 1, 2));
        ip.set_dst_addr(Ipv4Addr::new(1, 2, 3, 4));
        ip.options_mut().copy_from_slice(&[1, 1, 1, 0]);
        assert!(ip.fill_checksum());
        assert!(ip.verify_checksum());
        assert_eq!(ip.dscp(), 46);
        assert_eq!(ip.ecn(), 0);
        assert_eq!(ip.frag_offset(), 0x1FFF);
        assert!(ip.dont_frag() && !ip.more_frags() && !ip.reserved_flag());
        assert_eq!(ip.options(), &[1, 1, 1, 0]);
        let c = ip.checksum().to_be_bytes();
        assert_eq!(
            buf[..20],
            [
                0x46, 0xb8, 0x00, 0x18, 0xbe, 0xef, 0x5f, 0xff, 0x03, 0x06, c[0], c[1], 192, 168,
                1, 2, 1, 2, 3, 4
            ]
        );
        // Setting the version keeps the IHL and vice versa.
        let mut ip = Ipv4Header::new(&mut buf[..]).unwrap();
        ip.set_version(6);
        assert_eq!((ip.version(), ip.ihl()), (6, 6));
        ip.set_ihl(0x1F);
        assert_eq!((ip.version(), ip.ihl()), (6, 15));
    }

    #[test]
    fn short_and_invalid() {
        assert!(Ipv4Header::new(&[0x45u8; 19][..]).is_none());
        let mut b = hex(DNS);
        b[0] = 0x44; // IHL 4
        let ip = Ipv4Header::new(&b[..]).unwrap();
        assert_eq!(ip.compute_checksum(), None);
        assert!(!ip.verify_checksum());
        assert!(ip.options().is_empty());
        b[0] = 0x4F; // IHL 15 = 60 bytes > 57
        let mut ip = Ipv4Header::new(&mut b[..]).unwrap();
        assert!(ip.options().is_empty());
        assert!(!ip.fill_checksum());
        assert_eq!(ip.header_bytes().len(), 57);
    }
}

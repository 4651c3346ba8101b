//! The IPv6 header view (`WINDIVERT_IPV6HDR`, RFC 8200) and IPv6 extension headers.

use super::field::{
    array_at, set_bytes, set_u16, set_u32, set_u8, sub, tail, u16_at, u32_at, u8_at, view_basics,
};
use std::fmt;
use std::net::Ipv6Addr;

/// IPv6 extension header protocol numbers walked by the parser.
pub mod ext {
    /// Hop-by-hop options (length `(n + 1) * 8`).
    pub const HOP_BY_HOP: u8 = 0;
    /// Routing header (length `(n + 1) * 8`).
    pub const ROUTING: u8 = 43;
    /// Fragment header (8 bytes).
    pub const FRAGMENT: u8 = 44;
    /// Authentication header (length `(n + 2) * 4`).
    pub const AUTH: u8 = 51;
    /// Destination options (length `(n + 1) * 8`).
    pub const DEST_OPTS: u8 = 60;
    /// Mobility header (length `(n + 1) * 8`).
    pub const MOBILITY: u8 = 135;
}

/// Whether `protocol` is one of the extension headers WinDivert skips (0, 43, 44, 51, 60, 135).
#[inline]
pub fn is_extension_header(protocol: u8) -> bool {
    matches!(
        protocol,
        ext::HOP_BY_HOP | ext::ROUTING | ext::FRAGMENT | ext::AUTH | ext::DEST_OPTS | ext::MOBILITY
    )
}

/// The length in bytes of an extension header of type `protocol` whose length byte is
/// `len_field`; `None` if `protocol` is not an extension header.
#[inline]
pub fn extension_header_len(protocol: u8, len_field: u8) -> Option<usize> {
    match protocol {
        ext::FRAGMENT => Some(8),
        ext::AUTH => Some((usize::from(len_field) + 2) * 4),
        ext::HOP_BY_HOP | ext::ROUTING | ext::DEST_OPTS | ext::MOBILITY => {
            Some((usize::from(len_field) + 1) * 8)
        }
        _ => None,
    }
}

/// A zero-copy view of an IPv6 header at the start of `T` (at least 40 bytes).
///
/// ```
/// use lindivert_core::packet::Ipv6Header;
/// let mut buf = [0u8; 40];
/// let mut ip = Ipv6Header::new(&mut buf[..]).unwrap();
/// ip.set_version(6);
/// ip.set_traffic_class(0xB8);
/// ip.set_flow_label(0xABCDE);
/// ip.set_hop_limit(64);
/// assert_eq!(&buf[..4], &[0x6B, 0x8A, 0xBC, 0xDE]);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Header<T> {
    buf: T,
}

view_basics!(Ipv6Header, LEN = 40, "Length of the fixed header.");

impl<T: AsRef<[u8]>> Ipv6Header<T> {
    /// The 40 header bytes.
    #[inline]
    pub fn header_bytes(&self) -> &[u8] {
        sub(self.buf.as_ref(), 0, Self::LEN)
    }

    /// The version nibble (6 for a valid header).
    #[inline]
    pub fn version(&self) -> u8 {
        u8_at(self.buf.as_ref(), 0) >> 4
    }

    /// The traffic class (`ipv6.TrafficClass`).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        ((u16_at(self.buf.as_ref(), 0) >> 4) & 0xFF) as u8
    }

    /// The 20-bit flow label, as the wire carries it (RFC 8200).
    ///
    /// Note: WinDivert 2.2.2's `ipv6.FlowLabel` filter field reads this incorrectly for
    /// non-zero labels (FILTER.md §8); this getter returns the real value.
    #[inline]
    pub fn flow_label(&self) -> u32 {
        u32_at(self.buf.as_ref(), 0) & 0x000F_FFFF
    }

    /// The payload length (`ipv6.Length`): bytes after the 40-byte header.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        u16_at(self.buf.as_ref(), 4)
    }

    /// The first next-header (`ipv6.NextHdr`): a transport protocol or an extension header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        u8_at(self.buf.as_ref(), 6)
    }

    /// The hop limit (`ipv6.HopLimit`).
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        u8_at(self.buf.as_ref(), 7)
    }

    /// The source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(array_at::<16>(self.buf.as_ref(), 8))
    }

    /// The destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(array_at::<16>(self.buf.as_ref(), 24))
    }

    /// Walks the extension headers after this header, with the parser's rules, within
    /// `40 + payload_len()` bytes (clipped to the buffer).
    pub fn extension_headers(&self) -> ExtensionHeaders<'_> {
        let b = self.buf.as_ref();
        let end = (Self::LEN + usize::from(self.payload_len())).min(b.len());
        ExtensionHeaders::new(sub(b, 0, end), Self::LEN, self.next_header())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Header<T> {
    /// Sets the version nibble.
    #[inline]
    pub fn set_version(&mut self, v: u8) {
        let b = self.buf.as_mut();
        let x = u8_at(b, 0);
        set_u8(b, 0, (x & 0x0F) | (v << 4));
    }

    /// Sets the traffic class.
    #[inline]
    pub fn set_traffic_class(&mut self, v: u8) {
        let b = self.buf.as_mut();
        let x = u16_at(b, 0);
        set_u16(b, 0, (x & 0xF00F) | (u16::from(v) << 4));
    }

    /// Sets the flow label (only the low 20 bits are used).
    #[inline]
    pub fn set_flow_label(&mut self, v: u32) {
        let b = self.buf.as_mut();
        let x = u32_at(b, 0);
        set_u32(b, 0, (x & 0xFFF0_0000) | (v & 0x000F_FFFF));
    }

    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 4, v);
    }

    /// Sets the first next-header.
    #[inline]
    pub fn set_next_header(&mut self, v: u8) {
        set_u8(self.buf.as_mut(), 6, v);
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, v: u8) {
        set_u8(self.buf.as_mut(), 7, v);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        set_bytes(self.buf.as_mut(), 8, &a.octets());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        set_bytes(self.buf.as_mut(), 24, &a.octets());
    }
}

impl<T: AsRef<[u8]>> fmt::Debug for Ipv6Header<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ipv6Header")
            .field("version", &self.version())
            .field("traffic_class", &self.traffic_class())
            .field("flow_label", &format_args!("{:#07x}", self.flow_label()))
            .field("payload_len", &self.payload_len())
            .field("next_header", &self.next_header())
            .field("hop_limit", &self.hop_limit())
            .field("src", &self.src_addr())
            .field("dst", &self.dst_addr())
            .finish()
    }
}

/// A zero-copy view of a generic IPv6 extension header (`next header`, `length` and data):
/// hop-by-hop, routing, destination options, mobility or AH.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6ExtHeader<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv6ExtHeader<T> {
    /// A view over `buf`, or `None` if it is shorter than 2 bytes.
    #[inline]
    pub fn new(buf: T) -> Option<Self> {
        (buf.as_ref().len() >= 2).then_some(Ipv6ExtHeader { buf })
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buf
    }

    /// The protocol of the header that follows.
    #[inline]
    pub fn next_header(&self) -> u8 {
        u8_at(self.buf.as_ref(), 0)
    }

    /// The raw length byte (its unit depends on the header type).
    #[inline]
    pub fn len_field(&self) -> u8 {
        u8_at(self.buf.as_ref(), 1)
    }

    /// The header length in bytes if this header is of type `protocol` (AH: `(n + 2) * 4`,
    /// fragment: 8, others: `(n + 1) * 8`); `None` if `protocol` is not an extension header.
    #[inline]
    pub fn header_len(&self, protocol: u8) -> Option<usize> {
        extension_header_len(protocol, self.len_field())
    }

    /// The bytes after the first two (options, routing data, ...), up to
    /// `header_len(protocol)` and clipped to the buffer.
    pub fn data(&self, protocol: u8) -> &[u8] {
        let b = self.buf.as_ref();
        let end = self.header_len(protocol).unwrap_or(2).min(b.len());
        sub(b, 2, end)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6ExtHeader<T> {
    /// Sets the next-header byte.
    #[inline]
    pub fn set_next_header(&mut self, v: u8) {
        set_u8(self.buf.as_mut(), 0, v);
    }

    /// Sets the raw length byte.
    #[inline]
    pub fn set_len_field(&mut self, v: u8) {
        set_u8(self.buf.as_mut(), 1, v);
    }
}

impl<T: AsRef<[u8]>> fmt::Debug for Ipv6ExtHeader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ipv6ExtHeader")
            .field("next_header", &self.next_header())
            .field("len_field", &self.len_field())
            .finish()
    }
}

/// A zero-copy view of the 8-byte IPv6 fragment header.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6FragmentHeader<T> {
    buf: T,
}

view_basics!(
    Ipv6FragmentHeader,
    LEN = 8,
    "Length of the fragment header."
);

impl<T: AsRef<[u8]>> Ipv6FragmentHeader<T> {
    /// The protocol of the header that follows.
    #[inline]
    pub fn next_header(&self) -> u8 {
        u8_at(self.buf.as_ref(), 0)
    }

    /// The fragment offset in 8-byte units (13 bits).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        u16_at(self.buf.as_ref(), 2) >> 3
    }

    /// The More-Fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        u8_at(self.buf.as_ref(), 3) & 0x01 != 0
    }

    /// The identification.
    #[inline]
    pub fn ident(&self) -> u32 {
        u32_at(self.buf.as_ref(), 4)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6FragmentHeader<T> {
    /// Sets the next-header byte.
    #[inline]
    pub fn set_next_header(&mut self, v: u8) {
        set_u8(self.buf.as_mut(), 0, v);
    }

    /// Sets the fragment offset in 8-byte units (only the low 13 bits are used).
    #[inline]
    pub fn set_frag_offset(&mut self, v: u16) {
        let b = self.buf.as_mut();
        let x = u16_at(b, 2);
        set_u16(b, 2, (x & 0x0007) | (v << 3));
    }

    /// Sets or clears More-Fragments.
    #[inline]
    pub fn set_more_frags(&mut self, on: bool) {
        super::field::set_bit(self.buf.as_mut(), 3, 0x01, on);
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, v: u32) {
        set_u32(self.buf.as_mut(), 4, v);
    }
}

impl<T: AsRef<[u8]>> fmt::Debug for Ipv6FragmentHeader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ipv6FragmentHeader")
            .field("next_header", &self.next_header())
            .field("frag_offset", &self.frag_offset())
            .field("more_frags", &self.more_frags())
            .field("ident", &format_args!("{:#010x}", self.ident()))
            .finish()
    }
}

/// One extension header found by [`ExtensionHeaders`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionHeader<'a> {
    /// This header's type (the protocol number that announced it: 0, 43, 44, 51, 60 or 135).
    pub protocol: u8,
    /// Its offset from the start of the IP packet.
    pub offset: usize,
    /// Its bytes (exactly its length).
    pub bytes: &'a [u8],
}

impl<'a> ExtensionHeader<'a> {
    /// The protocol of the header that follows.
    #[inline]
    pub fn next_header(&self) -> u8 {
        u8_at(self.bytes, 0)
    }

    /// The header length in bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        self.bytes.len()
    }

    /// The generic view.
    #[inline]
    pub fn view(&self) -> Option<Ipv6ExtHeader<&'a [u8]>> {
        Ipv6ExtHeader::new(self.bytes)
    }

    /// The fragment header view, if this is a fragment header.
    #[inline]
    pub fn fragment(&self) -> Option<Ipv6FragmentHeader<&'a [u8]>> {
        if self.protocol == ext::FRAGMENT {
            Ipv6FragmentHeader::new(self.bytes)
        } else {
            None
        }
    }
}

/// Iterator over the IPv6 extension headers of a packet, following WinDivert's rules
/// (FILTER.md §5.4): it stops at the first protocol that is not an extension header, when
/// fewer than 2 bytes remain or a header does not fit, at a second fragment header, and
/// after a fragment header whose offset is not 0.
///
/// After iteration, [`ExtensionHeaders::next_header`] is the final protocol and
/// [`ExtensionHeaders::offset`] where it starts.
#[derive(Debug, Clone)]
pub struct ExtensionHeaders<'a> {
    packet: &'a [u8],
    offset: usize,
    next: u8,
    fragment_seen: bool,
    done: bool,
}

impl<'a> ExtensionHeaders<'a> {
    /// Walks `packet` (an IP packet clipped to its IP length) from `offset`, where a header of
    /// type `next` starts.
    #[inline]
    pub fn new(packet: &'a [u8], offset: usize, next: u8) -> Self {
        ExtensionHeaders {
            packet,
            offset,
            next,
            fragment_seen: false,
            done: false,
        }
    }

    /// The protocol of the header at [`ExtensionHeaders::offset`] (after a complete walk: the
    /// final protocol, WinDivert's `protocol`).
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.next
    }

    /// The offset of the first header not yet walked.
    #[inline]
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl<'a> Iterator for ExtensionHeaders<'a> {
    type Item = ExtensionHeader<'a>;

    #[inline]
    fn next(&mut self) -> Option<ExtensionHeader<'a>> {
        if self.done {
            return None;
        }
        let rest = tail(self.packet, self.offset);
        let len = match (rest.len() >= 2)
            .then(|| extension_header_len(self.next, u8_at(rest, 1)))
            .flatten()
        {
            Some(len)
                if len <= rest.len() && !(self.next == ext::FRAGMENT && self.fragment_seen) =>
            {
                len
            }
            _ => {
                self.done = true;
                return None;
            }
        };
        let hdr = ExtensionHeader {
            protocol: self.next,
            offset: self.offset,
            bytes: sub(rest, 0, len),
        };
        if self.next == ext::FRAGMENT {
            self.fragment_seen = true;
            // A non-first fragment: what follows is not a header.
            if u16_at(rest, 2) & 0xFFF8 != 0 {
                self.done = true;
            }
        }
        self.next = u8_at(rest, 0);
        self.offset += len;
        Some(hdr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::tests::hex;

    const TCP_SYN: &str = "6000000000280640123456780001000000000000aabbccdd00000000000000000000000000000001c37e0017e1d7c8aa00000000a002aaaac35e00000204ffc40402080affff91860000000001030307";

    #[test]
    fn deconstruct() {
        let b = hex(TCP_SYN);
        let ip = Ipv6Header::new(&b[..]).unwrap();
        assert_eq!(ip.version(), 6);
        assert_eq!(ip.traffic_class(), 0);
        assert_eq!(ip.flow_label(), 0);
        assert_eq!(ip.payload_len(), 40);
        assert_eq!(ip.next_header(), 6);
        assert_eq!(ip.hop_limit(), 64);
        assert_eq!(
            ip.src_addr(),
            "1234:5678:1::aabb:ccdd".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(ip.dst_addr(), Ipv6Addr::LOCALHOST);
        assert_eq!(ip.header_bytes().len(), 40);
        assert_eq!(ip.extension_headers().count(), 0);
        assert!(format!("{ip:?}").contains("::1"));
    }

    #[test]
    fn traffic_class_and_flow_label() {
        let mut b = [0u8; 40];
        b[..4].copy_from_slice(&[0x6A, 0xBC, 0xDE, 0xF1]);
        let mut ip = Ipv6Header::new(&mut b[..]).unwrap();
        assert_eq!(ip.version(), 6);
        assert_eq!(ip.traffic_class(), 0xAB);
        assert_eq!(ip.flow_label(), 0xCDEF1);
        ip.set_traffic_class(0x12);
        assert_eq!(ip.as_bytes()[..4], [0x61, 0x2C, 0xDE, 0xF1]);
        ip.set_flow_label(0xFFF12345);
        assert_eq!(ip.as_bytes()[..4], [0x61, 0x21, 0x23, 0x45]);
        assert_eq!(
            (ip.version(), ip.traffic_class(), ip.flow_label()),
            (6, 0x12, 0x12345)
        );
        ip.set_version(4);
        assert_eq!(
            (ip.version(), ip.traffic_class(), ip.flow_label()),
            (4, 0x12, 0x12345)
        );
    }

    #[test]
    fn construct() {
        let mut b = [0u8; 48];
        let mut ip = Ipv6Header::new(&mut b[..]).unwrap();
        ip.set_version(6);
        ip.set_payload_len(8);
        ip.set_next_header(ext::FRAGMENT);
        ip.set_hop_limit(255);
        ip.set_src_addr("fe80::1".parse().unwrap());
        ip.set_dst_addr("ff02::2".parse().unwrap());
        let mut f = Ipv6FragmentHeader::new(&mut b[40..]).unwrap();
        f.set_next_header(17);
        f.set_frag_offset(0x1FFF);
        f.set_more_frags(true);
        f.set_ident(0xDEADBEEF);
        assert_eq!(&b[40..], &[17, 0, 0xFF, 0xF9, 0xDE, 0xAD, 0xBE, 0xEF]);
        let f = Ipv6FragmentHeader::new(&b[40..]).unwrap();
        assert_eq!(
            (f.next_header(), f.frag_offset(), f.more_frags(), f.ident()),
            (17, 0x1FFF, true, 0xDEADBEEF)
        );
        assert!(format!("{f:?}").contains("0xdeadbeef"));
        let ip = Ipv6Header::new(&b[..]).unwrap();
        assert_eq!(ip.dst_addr(), "ff02::2".parse::<Ipv6Addr>().unwrap());
        let hs: Vec<_> = ip.extension_headers().collect();
        assert_eq!(hs.len(), 1);
        assert_eq!(hs[0].protocol, ext::FRAGMENT);
        assert_eq!(hs[0].offset, 40);
        assert!(hs[0].fragment().unwrap().more_frags());
        assert!(Ipv6FragmentHeader::new(&b[..7]).is_none());
        assert!(Ipv6Header::new(&b[..39]).is_none());
    }

    #[test]
    fn ext_header_lengths() {
        assert_eq!(extension_header_len(0, 0), Some(8));
        assert_eq!(extension_header_len(43, 2), Some(24));
        assert_eq!(extension_header_len(44, 9), Some(8));
        assert_eq!(extension_header_len(51, 4), Some(24));
        assert_eq!(extension_header_len(60, 255), Some(2048));
        assert_eq!(extension_header_len(135, 1), Some(16));
        assert_eq!(extension_header_len(6, 1), None);
        for p in 0..=255u8 {
            assert_eq!(is_extension_header(p), extension_header_len(p, 0).is_some());
        }
        let h = [17u8, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 99];
        let mut v = Ipv6ExtHeader::new(h).unwrap();
        assert_eq!(v.next_header(), 17);
        assert_eq!(v.header_len(ext::DEST_OPTS), Some(16));
        assert_eq!(v.data(ext::DEST_OPTS).len(), 14);
        assert_eq!(v.header_len(ext::AUTH), Some(12));
        assert_eq!(v.data(ext::AUTH).len(), 10);
        v.set_next_header(6);
        v.set_len_field(0);
        assert_eq!((v.next_header(), v.len_field()), (6, 0));
        assert!(format!("{v:?}").contains("next_header: 6"));
        assert!(Ipv6ExtHeader::new(&[0u8][..]).is_none());
    }

    /// Builds 40 bytes of IPv6 header with `next` and then `chain` as the payload.
    fn v6(next: u8, chain: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 40];
        b[0] = 0x60;
        b[4..6].copy_from_slice(&(chain.len() as u16).to_be_bytes());
        b[6] = next;
        b.extend_from_slice(chain);
        b
    }

    fn walk(b: &[u8]) -> (Vec<(u8, usize, usize)>, u8, usize) {
        let ip = Ipv6Header::new(b).unwrap();
        let mut it = ip.extension_headers();
        let v = it
            .by_ref()
            .map(|h| (h.protocol, h.offset, h.header_len()))
            .collect();
        (v, it.next_header(), it.offset())
    }

    #[test]
    fn chains() {
        // Hop-by-hop (8) -> routing (24) -> AH (12) -> dst opts (8) -> mobility (8) -> UDP.
        let mut c = vec![43, 0, 0, 0, 0, 0, 0, 0];
        c.extend([51, 2].iter().chain([0u8; 22].iter()));
        c.extend([60, 1].iter().chain([0u8; 10].iter()));
        c.extend([135, 0].iter().chain([0u8; 6].iter()));
        c.extend([17, 0].iter().chain([0u8; 6].iter()));
        c.extend([0u8; 8]);
        let b = v6(0, &c);
        let (v, next, off) = walk(&b);
        assert_eq!(
            v,
            vec![
                (0, 40, 8),
                (43, 48, 24),
                (51, 72, 12),
                (60, 84, 8),
                (135, 92, 8)
            ]
        );
        assert_eq!((next, off), (17, 100));

        // A header that does not fit stops the walk at itself.
        let b = v6(60, &[17, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(walk(&b), (vec![], 60, 40));
        // Fewer than 2 bytes left.
        let b = v6(0, &[17]);
        assert_eq!(walk(&b), (vec![], 0, 40));
        // Unknown protocol stops at once.
        let b = v6(59, &[0; 16]);
        assert_eq!(walk(&b), (vec![], 59, 40));

        // Fragment with offset 0 is walked through; a second fragment header stops.
        let b = v6(44, &[44, 0, 0, 1, 0, 0, 0, 1, 6, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(walk(&b), (vec![(44, 40, 8)], 44, 48));
        // Fragment with non-zero offset stops after itself.
        let b = v6(44, &[0, 0, 0, 8, 0, 0, 0, 1, 6, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(walk(&b), (vec![(44, 40, 8)], 0, 48));
        // Fragment needs all 8 bytes.
        let b = v6(44, &[6, 0, 0, 0, 0, 0, 0]);
        assert_eq!(walk(&b), (vec![], 44, 40));
        // The walk is bounded by the IPv6 payload length, not the buffer.
        let mut b = v6(0, &[6, 0, 0, 0, 0, 0, 0, 0]);
        b[5] = 7;
        assert_eq!(walk(&b), (vec![], 0, 40));
    }
}

//! The packet parser (`WinDivertHelperParsePacket` and the driver's `windivert_parse_headers`)
//! and the accessors of [`ParsedPacket`].

use super::checksum::{calc_checksums, ChecksumError, ChecksumFlags, ChecksumsDone};
use super::field::{sub, sub_mut, tail, u16_at, u8_at};
use super::icmp::{IcmpHeader, Icmpv6Header};
use super::ipv4::Ipv4Header;
use super::ipv6::{ext, ExtensionHeaders, Ipv6Header};
use super::tcp::TcpHeader;
use super::udp::UdpHeader;
use super::{ParsedPacket, Transport, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use std::net::IpAddr;

/// Everything the parser finds, as offsets (no borrow), shared by the parser, the checksum
/// code and [`PacketMut`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) version: u8,
    /// IPv4: IHL * 4; IPv6: 40.
    pub(crate) ip_header_len: usize,
    pub(crate) first_next_header: u8,
    pub(crate) protocol: u8,
    pub(crate) fragment: bool,
    pub(crate) more_fragments: bool,
    /// In 8-byte units.
    pub(crate) frag_offset: u16,
    pub(crate) transport: Transport,
    pub(crate) transport_offset: usize,
    pub(crate) header_len: usize,
    /// The packet's length in the buffer: min(IP length, buffer length).
    pub(crate) len: usize,
    /// The IP length the header claims.
    pub(crate) total_len: usize,
}

impl Layout {
    #[inline]
    pub(crate) fn is_truncated(&self) -> bool {
        self.total_len > self.len
    }

    #[inline]
    fn parsed_from<'a>(&self, bytes: &'a [u8]) -> ParsedPacket<'a> {
        ParsedPacket {
            bytes: sub(bytes, 0, self.len),
            version: self.version,
            first_next_header: self.first_next_header,
            protocol: self.protocol,
            fragment: self.fragment,
            transport: self.transport,
            transport_offset: self.transport_offset,
            header_len: self.header_len,
            payload_len: self.len.saturating_sub(self.header_len),
            next: tail(bytes, self.len),
        }
    }
}

/// `WinDivertHelperParsePacketEx`: parses the first packet of `bytes`, allowing truncation.
#[inline]
pub(crate) fn layout(bytes: &[u8]) -> Option<Layout> {
    if bytes.len() < Ipv4Header::<&[u8]>::MIN_LEN {
        return None;
    }
    let b0 = u8_at(bytes, 0);
    let version = b0 >> 4;
    let (ip_header_len, first_next_header, total_len, len);
    let (protocol, mut offset);
    let (mut fragment, mut more_fragments, mut frag_offset) = (false, false, 0u16);
    match version {
        4 => {
            ip_header_len = usize::from(b0 & 0x0F) * 4;
            total_len = usize::from(u16_at(bytes, 2));
            if ip_header_len < 20 || total_len < ip_header_len || bytes.len() < ip_header_len {
                return None;
            }
            let ff = u16_at(bytes, 6);
            frag_offset = ff & 0x1FFF;
            more_fragments = ff & 0x2000 != 0;
            fragment = more_fragments || frag_offset != 0;
            first_next_header = u8_at(bytes, 9);
            protocol = first_next_header;
            len = total_len.min(bytes.len());
            offset = ip_header_len;
        }
        6 => {
            ip_header_len = Ipv6Header::<&[u8]>::LEN;
            if bytes.len() < ip_header_len {
                return None;
            }
            first_next_header = u8_at(bytes, 6);
            total_len = usize::from(u16_at(bytes, 4)) + ip_header_len;
            len = total_len.min(bytes.len());
            let mut walk =
                ExtensionHeaders::new(sub(bytes, 0, len), ip_header_len, first_next_header);
            for h in walk.by_ref() {
                if h.protocol == ext::FRAGMENT {
                    fragment = true;
                    frag_offset = u16_at(h.bytes, 2) >> 3;
                    more_fragments = u8_at(h.bytes, 3) & 0x01 != 0;
                }
            }
            protocol = walk.next_header();
            offset = walk.offset();
        }
        _ => return None,
    }
    let avail = len.saturating_sub(offset);
    let (transport, thl) = if frag_offset != 0 {
        (Transport::None, 0)
    } else {
        match protocol {
            PROTO_TCP if avail >= TcpHeader::<&[u8]>::MIN_LEN => {
                let doff = usize::from(u8_at(bytes, offset + 12) >> 4);
                if doff >= 5 {
                    let hdr_len = (doff * 4).min(avail);
                    (Transport::Tcp { hdr_len }, hdr_len)
                } else {
                    (Transport::None, 0)
                }
            }
            PROTO_UDP if avail >= 8 => (Transport::Udp, 8),
            PROTO_ICMP if version == 4 && avail >= 8 => (Transport::Icmp, 8),
            PROTO_ICMPV6 if version == 6 && avail >= 8 => (Transport::Icmpv6, 8),
            _ => (Transport::None, 0),
        }
    };
    offset = offset.min(len);
    Some(Layout {
        version,
        ip_header_len,
        first_next_header,
        protocol,
        fragment,
        more_fragments,
        frag_offset,
        transport,
        transport_offset: offset,
        header_len: offset + thl,
        len,
        total_len,
    })
}

/// Parses the first IP packet in `bytes` exactly like `WinDivertHelperParsePacket`.
///
/// Returns `None` if `bytes` is shorter than 20 bytes, the version is not 4 or 6, an IPv4
/// IHL is below 5 or its header is longer than the IPv4 `Length` or the buffer, an IPv6
/// buffer is shorter than 40 bytes, or the packet is **truncated** (the buffer is shorter
/// than its IP length: IPv4 `Length`, IPv6 `Length + 40`).
///
/// [`ParsedPacket::bytes`] is exactly the IP length and [`ParsedPacket::next`] the rest of
/// the buffer, so batches are walked with `next` (or [`packets`]). The rules (FILTER.md §5.4):
///
/// * IPv4: a fragment has MF set or a non-zero offset; the transport header is parsed only
///   when the offset is 0.
/// * IPv6: extension headers 0, 43, 44, 51, 60 and 135 are skipped (see
///   [`ExtensionHeaders`]); a fragment header marks a fragment and, with a non-zero offset,
///   ends the walk without a transport header. `protocol` is the final next-header.
/// * TCP needs 20 bytes and a data offset of at least 5 (its header length is clipped to
///   the data); UDP, ICMP (IPv4 only) and ICMPv6 (IPv6 only) need 8 bytes.
///
/// This does not allocate and takes a few nanoseconds.
///
/// ```
/// use lindivert_core::packet::{parse, Transport};
/// let pkt = [
///     0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // IPv4
///     0x30, 0x39, 0, 53, 0, 8, 0, 0, // UDP
/// ];
/// let p = parse(&pkt).unwrap();
/// assert_eq!((p.protocol, p.transport, p.header_len, p.payload_len), (17, Transport::Udp, 28, 0));
/// assert_eq!(p.udp().unwrap().dst_port(), 53);
/// assert!(parse(&pkt[..27]).is_none()); // truncated
/// ```
#[inline]
pub fn parse(bytes: &[u8]) -> Option<ParsedPacket<'_>> {
    let l = layout(bytes)?;
    if l.is_truncated() {
        return None;
    }
    Some(l.parsed_from(bytes))
}

/// Like [`parse`], but also accepts a truncated packet (`WinDivertHelperParsePacketEx`, used
/// by `WinDivertHelperEvalFilter` and `WinDivertHelperCalcChecksums`): then
/// [`ParsedPacket::bytes`] is the whole buffer (shorter than the IP length),
/// [`ParsedPacket::is_truncated`] is true and `next` is empty.
#[inline]
pub fn parse_lenient(bytes: &[u8]) -> Option<ParsedPacket<'_>> {
    layout(bytes).map(|l| l.parsed_from(bytes))
}

/// The driver's acceptance rule for captured packets (`windivert_parse_headers`): like
/// [`parse`], but the buffer must be exactly the IP length (IPv4 `Length` or IPv6
/// `Length + 40` equal to `bytes.len()`). The driver lets any other packet pass unmatched.
/// Equivalent to `parse(bytes).filter(|p| p.length_matches(bytes.len()))`.
#[inline]
pub fn parse_exact(bytes: &[u8]) -> Option<ParsedPacket<'_>> {
    parse(bytes).filter(|p| p.next.is_empty())
}

/// Iterates over the packets of a batch buffer (as returned by a batched receive), parsing
/// each with [`parse`]; it stops at the end or at the first unparsable or truncated packet
/// (see [`Packets::remainder`]).
#[inline]
pub fn packets(bytes: &[u8]) -> Packets<'_> {
    Packets { rest: bytes }
}

/// Iterator returned by [`packets`].
#[derive(Debug, Clone)]
pub struct Packets<'a> {
    rest: &'a [u8],
}

impl<'a> Packets<'a> {
    /// The bytes not yet returned as packets (after the iteration stopped: the unparsable
    /// rest, empty if the whole buffer was consumed).
    #[inline]
    pub fn remainder(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Packets<'a> {
    type Item = ParsedPacket<'a>;

    #[inline]
    fn next(&mut self) -> Option<ParsedPacket<'a>> {
        let p = parse(self.rest)?;
        self.rest = p.next;
        Some(p)
    }
}

impl Transport {
    /// The transport header length in bytes (0 for [`Transport::None`]).
    #[inline]
    pub fn header_len(&self) -> usize {
        match *self {
            Transport::None => 0,
            Transport::Tcp { hdr_len } => hdr_len,
            Transport::Udp | Transport::Icmp | Transport::Icmpv6 => 8,
        }
    }
}

impl<'a> ParsedPacket<'a> {
    /// IPv4?
    #[inline]
    pub fn is_ipv4(&self) -> bool {
        self.version == 4
    }

    /// IPv6?
    #[inline]
    pub fn is_ipv6(&self) -> bool {
        self.version == 6
    }

    /// The IP header length: IPv4 IHL * 4 (options included), IPv6 40 (extension headers
    /// excluded).
    #[inline]
    pub fn ip_header_len(&self) -> usize {
        if self.is_ipv4() {
            usize::from(u8_at(self.bytes, 0) & 0x0F) * 4
        } else {
            40
        }
    }

    /// The IP length the header claims (IPv4 `Length`, IPv6 `Length + 40`).
    #[inline]
    pub fn ip_total_len(&self) -> usize {
        if self.is_ipv4() {
            usize::from(u16_at(self.bytes, 2))
        } else {
            usize::from(u16_at(self.bytes, 4)) + 40
        }
    }

    /// Whether the packet is cut short (only possible from [`parse_lenient`]).
    #[inline]
    pub fn is_truncated(&self) -> bool {
        self.ip_total_len() > self.bytes.len()
    }

    /// The driver's strict capture check: whether the IP length equals `buffer_len`, the
    /// length of the buffer the packet was captured in. WinDivert's driver never matches
    /// (and lets pass) a packet whose IPv4 `Length` or IPv6 `Length + 40` differs from the
    /// captured length; [`parse`] itself accepts trailing bytes (batches).
    #[inline]
    pub fn length_matches(&self, buffer_len: usize) -> bool {
        self.ip_total_len() == buffer_len
    }

    /// IPv4: MF. IPv6: the fragment header's M flag (false without a fragment header).
    pub fn more_fragments(&self) -> bool {
        match self.ipv4() {
            Some(ip) => ip.more_frags(),
            None => self
                .extension_headers()
                .find_map(|h| h.fragment())
                .is_some_and(|f| f.more_frags()),
        }
    }

    /// The fragment offset in 8-byte units (IPv6: from the fragment header, 0 without one).
    /// The transport header is only parsed when this is 0.
    pub fn frag_offset(&self) -> u16 {
        match self.ipv4() {
            Some(ip) => ip.frag_offset(),
            None => self
                .extension_headers()
                .find_map(|h| h.fragment())
                .map_or(0, |f| f.frag_offset()),
        }
    }

    /// The IPv4 header view (over the whole packet), if IPv4.
    #[inline]
    pub fn ipv4(&self) -> Option<Ipv4Header<&'a [u8]>> {
        if self.is_ipv4() {
            Ipv4Header::new(self.bytes)
        } else {
            None
        }
    }

    /// The IPv6 header view (over the whole packet), if IPv6.
    #[inline]
    pub fn ipv6(&self) -> Option<Ipv6Header<&'a [u8]>> {
        if self.is_ipv6() {
            Ipv6Header::new(self.bytes)
        } else {
            None
        }
    }

    /// The IPv6 extension headers the parser walked (empty for IPv4).
    #[inline]
    pub fn extension_headers(&self) -> ExtensionHeaders<'a> {
        if self.is_ipv6() {
            ExtensionHeaders::new(self.bytes, 40, self.first_next_header)
        } else {
            ExtensionHeaders::new(&[], 0, self.first_next_header)
        }
    }

    /// The transport segment: from the transport header to the end of the packet.
    #[inline]
    pub fn transport_bytes(&self) -> &'a [u8] {
        tail(self.bytes, self.transport_offset)
    }

    /// All the headers: `bytes[..header_len]`.
    #[inline]
    pub fn headers(&self) -> &'a [u8] {
        sub(self.bytes, 0, self.header_len)
    }

    /// The payload: `bytes[header_len..]` (`payload_len` bytes).
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        tail(self.bytes, self.header_len)
    }

    /// The TCP header view (over the segment: header, options and payload), if parsed.
    #[inline]
    pub fn tcp(&self) -> Option<TcpHeader<&'a [u8]>> {
        match self.transport {
            Transport::Tcp { .. } => TcpHeader::new(self.transport_bytes()),
            _ => None,
        }
    }

    /// The UDP header view (over the segment), if parsed.
    #[inline]
    pub fn udp(&self) -> Option<UdpHeader<&'a [u8]>> {
        match self.transport {
            Transport::Udp => UdpHeader::new(self.transport_bytes()),
            _ => None,
        }
    }

    /// The ICMP header view (over the segment), if parsed (IPv4 only).
    #[inline]
    pub fn icmp(&self) -> Option<IcmpHeader<&'a [u8]>> {
        match self.transport {
            Transport::Icmp => IcmpHeader::new(self.transport_bytes()),
            _ => None,
        }
    }

    /// The ICMPv6 header view (over the segment), if parsed (IPv6 only).
    #[inline]
    pub fn icmpv6(&self) -> Option<Icmpv6Header<&'a [u8]>> {
        match self.transport {
            Transport::Icmpv6 => Icmpv6Header::new(self.transport_bytes()),
            _ => None,
        }
    }

    /// The source address.
    #[inline]
    pub fn src_addr(&self) -> IpAddr {
        match self.ipv4() {
            Some(ip) => IpAddr::V4(ip.src_addr()),
            None => IpAddr::V6(Ipv6Header::new(self.bytes).map_or(0.into(), |h| h.src_addr())),
        }
    }

    /// The destination address.
    #[inline]
    pub fn dst_addr(&self) -> IpAddr {
        match self.ipv4() {
            Some(ip) => IpAddr::V4(ip.dst_addr()),
            None => IpAddr::V6(Ipv6Header::new(self.bytes).map_or(0.into(), |h| h.dst_addr())),
        }
    }

    /// `(source port, destination port)` of a parsed TCP or UDP header.
    #[inline]
    pub fn ports(&self) -> Option<(u16, u16)> {
        match self.transport {
            Transport::Tcp { .. } | Transport::Udp => {
                let t = self.transport_bytes();
                Some((u16_at(t, 0), u16_at(t, 2)))
            }
            _ => None,
        }
    }

    /// WinDivert's packet hash of this packet (see [`super::hash_packet`]); unlike
    /// `hash_packet`, also defined for a truncated packet from [`parse_lenient`], as in the
    /// filter evaluator.
    #[inline]
    pub fn hash(&self, seed: u64) -> u64 {
        super::hash::hash_parsed(self, seed)
    }
}

/// A parsed packet with mutable access to its headers (from [`parse_mut`]).
///
/// The layout is computed once at parse time: after changing a length field (IHL, data
/// offset, IP length), parse again.
#[derive(Debug)]
pub struct PacketMut<'a> {
    bytes: &'a mut [u8],
    next: &'a mut [u8],
    layout: Layout,
}

/// Like [`parse`], with mutable header views: to rewrite a packet in place, then fix its
/// checksums.
///
/// ```
/// use lindivert_core::packet::{parse, parse_mut, verify_checksums, ChecksumFlags};
/// let mut pkt = [
///     0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
///     0x30, 0x39, 0, 53, 0, 8, 0, 0,
/// ];
/// let mut p = parse_mut(&mut pkt).unwrap();
/// p.udp_mut().unwrap().set_dst_port(5353);
/// p.calc_checksums(ChecksumFlags::NONE).unwrap();
/// assert_eq!(parse(&pkt).unwrap().udp().unwrap().dst_port(), 5353);
/// assert!(verify_checksums(&pkt).unwrap().all_valid());
/// ```
pub fn parse_mut(bytes: &mut [u8]) -> Option<PacketMut<'_>> {
    let layout = layout(bytes)?;
    if layout.is_truncated() {
        return None;
    }
    let (bytes, next) = bytes.split_at_mut_checked(layout.len)?;
    Some(PacketMut {
        bytes,
        next,
        layout,
    })
}

impl<'a> PacketMut<'a> {
    /// The read-only parse result.
    #[inline]
    pub fn parsed(&self) -> ParsedPacket<'_> {
        let mut p = self.layout.parsed_from(self.bytes);
        p.next = self.next;
        p
    }

    /// The packet bytes (exactly the IP length).
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        self.bytes
    }

    /// The packet bytes, mutable.
    #[inline]
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.bytes
    }

    /// The IPv4 header view, if IPv4.
    #[inline]
    pub fn ipv4_mut(&mut self) -> Option<Ipv4Header<&mut [u8]>> {
        if self.layout.version == 4 {
            Ipv4Header::new(&mut *self.bytes)
        } else {
            None
        }
    }

    /// The IPv6 header view, if IPv6.
    #[inline]
    pub fn ipv6_mut(&mut self) -> Option<Ipv6Header<&mut [u8]>> {
        if self.layout.version == 6 {
            Ipv6Header::new(&mut *self.bytes)
        } else {
            None
        }
    }

    #[inline]
    fn segment_mut(&mut self) -> &mut [u8] {
        let len = self.bytes.len();
        sub_mut(self.bytes, self.layout.transport_offset, len)
    }

    /// The TCP header view (over the segment), if parsed.
    #[inline]
    pub fn tcp_mut(&mut self) -> Option<TcpHeader<&mut [u8]>> {
        match self.layout.transport {
            Transport::Tcp { .. } => TcpHeader::new(self.segment_mut()),
            _ => None,
        }
    }

    /// The UDP header view (over the segment), if parsed.
    #[inline]
    pub fn udp_mut(&mut self) -> Option<UdpHeader<&mut [u8]>> {
        match self.layout.transport {
            Transport::Udp => UdpHeader::new(self.segment_mut()),
            _ => None,
        }
    }

    /// The ICMP header view (over the segment), if parsed.
    #[inline]
    pub fn icmp_mut(&mut self) -> Option<IcmpHeader<&mut [u8]>> {
        match self.layout.transport {
            Transport::Icmp => IcmpHeader::new(self.segment_mut()),
            _ => None,
        }
    }

    /// The ICMPv6 header view (over the segment), if parsed.
    #[inline]
    pub fn icmpv6_mut(&mut self) -> Option<Icmpv6Header<&mut [u8]>> {
        match self.layout.transport {
            Transport::Icmpv6 => Icmpv6Header::new(self.segment_mut()),
            _ => None,
        }
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = self.bytes.len();
        sub_mut(self.bytes, self.layout.header_len, len)
    }

    /// [`calc_checksums`] on this packet.
    #[inline]
    pub fn calc_checksums(&mut self, flags: ChecksumFlags) -> Result<ChecksumsDone, ChecksumError> {
        calc_checksums(self.bytes, flags)
    }

    /// [`super::decrement_ttl`] on this packet.
    #[inline]
    pub fn decrement_ttl(&mut self) -> bool {
        super::decrement_ttl(self.bytes)
    }

    /// The rest of the buffer after this packet (the next packet of a batch).
    #[inline]
    pub fn into_next(self) -> &'a mut [u8] {
        self.next
    }

    /// The packet bytes and the rest of the buffer.
    #[inline]
    pub fn into_parts(self) -> (&'a mut [u8], &'a mut [u8]) {
        (self.bytes, self.next)
    }
}

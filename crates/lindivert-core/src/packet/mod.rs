//! Packets: zero-copy header views, the WinDivert packet parser, checksums, TTL decrement,
//! the packet hash and IPv4/IPv6 address text helpers.
//!
//! Every function here accepts arbitrary bytes: malformed input gives `None`/`false`/an
//! error, never a panic.

/// What [`parse`] found in one IP packet. Offsets are byte offsets into [`ParsedPacket::bytes`].
///
/// This is the contract between the packet parser and the filter evaluator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedPacket<'a> {
    /// This packet's bytes, exactly its IP length (IPv4 `Length`, IPv6 `Length + 40`).
    pub bytes: &'a [u8],
    /// 4 or 6.
    pub version: u8,
    /// IPv6 only: the first next-header of the fixed header (IPv4: the `Protocol` byte).
    pub first_next_header: u8,
    /// The final transport protocol number (after IPv6 extension headers), even when no
    /// transport header could be parsed.
    pub protocol: u8,
    /// IPv4: MF set or fragment offset != 0. IPv6: a Fragment extension header is present.
    pub fragment: bool,
    /// The parsed transport header, if any.
    pub transport: Transport,
    /// Offset of the transport header (== IP header + extension headers length).
    pub transport_offset: usize,
    /// IP header + extension headers + transport header length (the payload offset).
    pub header_len: usize,
    /// Bytes after the headers.
    pub payload_len: usize,
    /// What follows this packet in the buffer (the next packet of a batch), empty if nothing.
    pub next: &'a [u8],
}

/// The transport header [`parse`] recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// None (unknown protocol, non-first fragment, or too short).
    None,
    /// TCP, with its header length in bytes (clipped to the available data).
    Tcp {
        /// Header length in bytes, options included.
        hdr_len: usize,
    },
    /// UDP (8-byte header).
    Udp,
    /// ICMP over IPv4 (8-byte header).
    Icmp,
    /// ICMPv6 over IPv6 (8-byte header).
    Icmpv6,
}

//! Packets: zero-copy header views, the WinDivert packet parser, checksums, TTL decrement,
//! the packet hash and IPv4/IPv6 address text helpers.
//!
//! Every function here accepts arbitrary bytes: malformed input gives `None`/`false`/an
//! error, never a panic.
//!
//! * Header views ([`Ipv4Header`], [`Ipv6Header`], [`Ipv6FragmentHeader`],
//!   [`Ipv6ExtHeader`], [`TcpHeader`], [`UdpHeader`], [`IcmpHeader`], [`Icmpv6Header`]) wrap
//!   any `T: AsRef<[u8]>` (getters) or `T: AsMut<[u8]>` (setters), smoltcp style; values
//!   are host-order integers and `std::net` addresses.
//! * [`parse`] is `WinDivertHelperParsePacket`; [`parse_lenient`] accepts truncated
//!   packets (`WinDivertHelperParsePacketEx`, as the filter evaluator and checksum helper
//!   use it); [`parse_exact`] adds the driver's "IP length == captured length" rule;
//!   [`packets`] walks a batch; [`parse_mut`] gives mutable views.
//! * [`calc_checksums`] is `WinDivertHelperCalcChecksums`; [`verify_checksums`] checks the
//!   same regions; [`internet_checksum`] and [`checksum_update`] are the building blocks.
//! * [`decrement_ttl`] is `WinDivertHelperDecrementTTL`, [`hash_packet`] is
//!   `WinDivertHelperHashPacket` (bit-exact; the filter's `random8/16/32` come from it).

pub mod addr;
pub mod checksum;
mod field;
mod hash;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
mod parse;
pub mod tcp;
mod ttl;
pub mod udp;

#[cfg(test)]
mod tests;

pub use checksum::{
    calc_checksums, checksum_update, checksum_update_u16, internet_checksum, ones_complement_sum,
    verify_checksums, verify_ipv4_checksum, verify_transport_checksum, ChecksumError,
    ChecksumFlags, ChecksumStatus, ChecksumsDone,
};
pub use hash::hash_packet;
pub use icmp::{IcmpHeader, Icmpv6Header};
pub use ipv4::Ipv4Header;
pub use ipv6::{ExtensionHeader, ExtensionHeaders, Ipv6ExtHeader, Ipv6FragmentHeader, Ipv6Header};
pub use parse::{packets, parse, parse_exact, parse_lenient, parse_mut, PacketMut, Packets};
pub use tcp::{TcpHeader, TcpOption, TcpOptions};
pub use ttl::decrement_ttl;
pub use udp::UdpHeader;

/// IP protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IP protocol number of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;

/// What [`parse`] found in one IP packet. Offsets are byte offsets into [`ParsedPacket::bytes`].
///
/// This is the contract between the packet parser and the filter evaluator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedPacket<'a> {
    /// This packet's bytes, exactly its IP length (IPv4 `Length`, IPv6 `Length + 40`).
    /// (From [`parse_lenient`] on a truncated packet: the whole, shorter, buffer.)
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

//! Internet checksums (RFC 1071/1624) and `WinDivertHelperCalcChecksums`.
//!
//! The summing kernel reads 8 bytes at a time in native byte order and accumulates the two
//! 32-bit halves into 64-bit accumulators (the one's-complement sum is independent of byte
//! order and of the word size used, RFC 1071 §2); the result is folded to 16 bits once at
//! the end. This runs at several bytes per cycle, which matters for 64 KB GSO packets.

use super::field::{sub, sub_mut, tail, u16_at};
use super::parse::{layout, Layout};
use super::{Transport, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use std::fmt;
use std::ops::{BitOr, BitOrAssign};

/// A running one's-complement sum, kept in native byte order until [`Sum::fold`].
///
/// Every slice added must start on a 16-bit boundary of the checksummed stream, i.e. all
/// slices but the last must have an even length.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sum(u64);

impl Sum {
    #[inline]
    pub(crate) fn new() -> Sum {
        Sum(0)
    }

    /// Adds `data`.
    #[inline]
    pub(crate) fn add(&mut self, data: &[u8]) {
        self.0 = reduce(self.0) + accumulate(data);
    }

    /// Adds one big-endian 16-bit word.
    #[inline]
    pub(crate) fn add_u16(&mut self, v: u16) {
        self.0 = reduce(self.0) + u64::from(u16::from_ne_bytes(v.to_be_bytes()));
    }

    /// The folded 16-bit one's-complement sum, as a host value (not complemented).
    #[inline]
    pub(crate) fn fold(self) -> u16 {
        let mut s = reduce(self.0);
        while s > 0xFFFF {
            s = (s & 0xFFFF) + (s >> 16);
        }
        // The sum was computed over native-order words; one's-complement sums commute with
        // byte swapping, so converting the result gives the big-endian sum.
        u16::from_be_bytes((s as u16).to_ne_bytes())
    }
}

/// Folds a 64-bit accumulator to at most 33 bits, preserving its value modulo 0xFFFF.
#[inline(always)]
fn reduce(x: u64) -> u64 {
    (x & 0xFFFF_FFFF) + (x >> 32)
}

#[inline(always)]
fn ne64(w: &[u8]) -> u64 {
    u64::from_ne_bytes(w.try_into().unwrap_or([0; 8]))
}

/// The (unfolded) native-order sum of `data`, at most 35 bits.
#[inline]
fn accumulate(data: &[u8]) -> u64 {
    let mut total = 0u64;
    // Blocks of 1 GiB keep the 64-bit accumulators far from overflow for any input.
    for block in data.chunks(1 << 30) {
        let (mut a, mut b, mut c, mut d) = (0u64, 0u64, 0u64, 0u64);
        let mut quads = block.chunks_exact(16);
        for q in &mut quads {
            let x = ne64(sub(q, 0, 8));
            let y = ne64(sub(q, 8, 16));
            a += x & 0xFFFF_FFFF;
            b += x >> 32;
            c += y & 0xFFFF_FFFF;
            d += y >> 32;
        }
        let rest = quads.remainder();
        let mut words = rest.chunks_exact(8);
        for w in &mut words {
            let x = ne64(w);
            a += x & 0xFFFF_FFFF;
            b += x >> 32;
        }
        let last = words.remainder();
        if !last.is_empty() {
            let mut pad = [0u8; 8];
            if let Some(p) = pad.get_mut(..last.len()) {
                p.copy_from_slice(last);
            }
            let x = u64::from_ne_bytes(pad);
            c += x & 0xFFFF_FFFF;
            d += x >> 32;
        }
        total = reduce(total) + reduce(reduce(a) + reduce(b)) + reduce(reduce(c) + reduce(d));
    }
    reduce(reduce(total))
}

/// The 16-bit one's-complement sum of `data` (RFC 1071), not complemented. An odd final
/// byte is padded with a zero byte. A region whose checksum is correct sums to `0xFFFF`.
#[inline]
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut s = Sum::new();
    s.add(data);
    s.fold()
}

/// The internet checksum of `data`: the complement of [`ones_complement_sum`].
///
/// ```
/// // RFC 1071 §3 example.
/// let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
/// assert_eq!(lindivert_core::packet::internet_checksum(&data), !0xddf2);
/// ```
#[inline]
pub fn internet_checksum(data: &[u8]) -> u16 {
    !ones_complement_sum(data)
}

/// Incremental checksum update (RFC 1624, equation 3): the new checksum after the 16-bit
/// words `old` were replaced by `new` (both even-length byte strings of equal length, e.g.
/// an address or a port). `HC' = ~(~HC + ~m + m')`.
///
/// ```
/// use lindivert_core::packet::{checksum_update, internet_checksum};
/// let mut data = [0x45, 0x00, 0x12, 0x34, 0xab, 0xcd];
/// let before = internet_checksum(&data);
/// data[2..4].copy_from_slice(&[0x56, 0x78]);
/// assert_eq!(checksum_update(before, &[0x12, 0x34], &[0x56, 0x78]), internet_checksum(&data));
/// ```
pub fn checksum_update(checksum: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut s = Sum::new();
    s.add_u16(!checksum);
    s.add_u16(!ones_complement_sum(old));
    s.add(new);
    !s.fold()
}

/// [`checksum_update`] for one 16-bit word given as host values.
#[inline]
pub fn checksum_update_u16(checksum: u16, old: u16, new: u16) -> u16 {
    let mut s = Sum::new();
    s.add_u16(!checksum);
    s.add_u16(!old);
    s.add_u16(new);
    !s.fold()
}

/// Per-protocol opt-outs for [`calc_checksums`] (`WINDIVERT_HELPER_NO_*_CHECKSUM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChecksumFlags(u64);

impl ChecksumFlags {
    /// Compute every checksum.
    pub const NONE: ChecksumFlags = ChecksumFlags(0);
    /// Do not compute the IPv4 header checksum (`WINDIVERT_HELPER_NO_IP_CHECKSUM`).
    pub const NO_IP_CHECKSUM: ChecksumFlags = ChecksumFlags(1);
    /// Do not compute the ICMP checksum (`WINDIVERT_HELPER_NO_ICMP_CHECKSUM`).
    pub const NO_ICMP_CHECKSUM: ChecksumFlags = ChecksumFlags(2);
    /// Do not compute the ICMPv6 checksum (`WINDIVERT_HELPER_NO_ICMPV6_CHECKSUM`).
    pub const NO_ICMPV6_CHECKSUM: ChecksumFlags = ChecksumFlags(4);
    /// Do not compute the TCP checksum (`WINDIVERT_HELPER_NO_TCP_CHECKSUM`).
    pub const NO_TCP_CHECKSUM: ChecksumFlags = ChecksumFlags(8);
    /// Do not compute the UDP checksum (`WINDIVERT_HELPER_NO_UDP_CHECKSUM`).
    pub const NO_UDP_CHECKSUM: ChecksumFlags = ChecksumFlags(16);

    /// Flags from raw bits. Unknown bits are kept and ignored, as WinDivert does.
    pub const fn from_bits_retain(bits: u64) -> ChecksumFlags {
        ChecksumFlags(bits)
    }
    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }
    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: ChecksumFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Union.
    pub const fn union(self, other: ChecksumFlags) -> ChecksumFlags {
        ChecksumFlags(self.0 | other.0)
    }
}

impl BitOr for ChecksumFlags {
    type Output = ChecksumFlags;
    fn bitor(self, rhs: ChecksumFlags) -> ChecksumFlags {
        self.union(rhs)
    }
}

impl BitOrAssign for ChecksumFlags {
    fn bitor_assign(&mut self, rhs: ChecksumFlags) {
        *self = self.union(rhs);
    }
}

/// Which checksums [`calc_checksums`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChecksumsDone {
    /// The IPv4 header checksum.
    pub ip: bool,
    /// The ICMP checksum.
    pub icmp: bool,
    /// The ICMPv6 checksum.
    pub icmpv6: bool,
    /// The TCP checksum.
    pub tcp: bool,
    /// The UDP checksum.
    pub udp: bool,
}

impl ChecksumsDone {
    /// Sets the address's `ip_checksum`/`tcp_checksum`/`udp_checksum` bits for the checksums
    /// that were computed, as `WinDivertHelperCalcChecksums` does with its `pAddr` argument
    /// (bits are only ever set, never cleared).
    pub fn apply_to(self, addr: &mut crate::Address) {
        addr.ip_checksum |= self.ip;
        addr.tcp_checksum |= self.tcp;
        addr.udp_checksum |= self.udp;
    }
}

/// Why [`calc_checksums`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumError {
    /// No valid IPv4/IPv6 header (see [`super::parse_lenient`]).
    Unparsable,
    /// The buffer is shorter than the IP length, so the transport checksum cannot be
    /// computed.
    Truncated,
    /// The packet is a (first) fragment, so the transport checksum cannot be computed.
    Fragment,
}

impl fmt::Display for ChecksumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChecksumError::Unparsable => "not a valid IPv4/IPv6 packet",
            ChecksumError::Truncated => "packet is truncated; transport checksum not computed",
            ChecksumError::Fragment => "packet is a fragment; transport checksum not computed",
        })
    }
}

impl std::error::Error for ChecksumError {}

/// The pseudo-header sum for `protocol` and a transport segment of `len` bytes.
#[inline]
fn pseudo_header(packet: &[u8], l: &Layout, protocol: u8, len: usize) -> Sum {
    let mut s = Sum::new();
    if l.version == 4 {
        s.add(sub(packet, 12, 20));
        s.add_u16(u16::from(protocol));
        s.add_u16(len as u16);
    } else {
        s.add(sub(packet, 8, 40));
        s.add_u16((len >> 16) as u16);
        s.add_u16(len as u16);
        s.add_u16(u16::from(protocol));
    }
    s
}

/// Offset of the checksum field inside the transport header.
#[inline]
fn transport_checksum_field(t: Transport) -> Option<(usize, u8)> {
    match t {
        Transport::Tcp { .. } => Some((16, PROTO_TCP)),
        Transport::Udp => Some((6, PROTO_UDP)),
        Transport::Icmp => Some((2, PROTO_ICMP)),
        Transport::Icmpv6 => Some((2, PROTO_ICMPV6)),
        Transport::None => None,
    }
}

/// The checksum the transport header should carry (the field taken as zero).
fn transport_checksum(packet: &[u8], l: &Layout) -> Option<u16> {
    let (field, proto) = transport_checksum_field(l.transport)?;
    let seg = sub(packet, l.transport_offset, l.len);
    let mut s = match l.transport {
        Transport::Icmp => Sum::new(),
        _ => pseudo_header(packet, l, proto, seg.len()),
    };
    s.add(sub(seg, 0, field));
    s.add(tail(seg, field + 2));
    let c = !s.fold();
    Some(if c == 0 && l.transport == Transport::Udp {
        0xFFFF
    } else {
        c
    })
}

/// Recomputes the checksums of the first packet in `packet`, exactly like
/// `WinDivertHelperCalcChecksums`: the IPv4 header checksum, then the one transport checksum
/// (ICMP; ICMPv6, TCP and UDP with their pseudo-header), each unless disabled by `flags`. A
/// UDP checksum that computes to 0 is stored as `0xFFFF`.
///
/// The packet is parsed with [`super::parse_lenient`] rules: bytes after the IP length are
/// left alone, and a truncated packet is accepted for the IPv4 header checksum. It fails with
/// [`ChecksumError::Unparsable`] if there is no valid IP header, and with
/// [`ChecksumError::Truncated`] or [`ChecksumError::Fragment`] if a transport header was
/// parsed, its checksum is not disabled, and the packet is truncated or a (first) fragment
/// (MF set), because the checksum then covers data that is not there. Like WinDivert, the
/// IPv4 header checksum has already been written when that error is returned. Packets without
/// a parsed transport header (other protocols, non-first fragments) succeed.
///
/// The transport checksum covers the whole segment, from the transport header to the end of
/// the IP packet. (With a TCP data offset pointing beyond the packet WinDivert would read past
/// the end of the buffer; the segment is used instead.)
///
/// ```
/// use lindivert_core::packet::{calc_checksums, verify_checksums, ChecksumError, ChecksumFlags};
/// use lindivert_core::Address;
///
/// // IPv4 + UDP 10.0.0.1:12345 -> 10.0.0.2:53, 4 payload bytes, both checksums zero.
/// let mut pkt = [
///     0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
///     0x30, 0x39, 0, 53, 0, 12, 0, 0,
///     b'a', b'b', b'c', b'd',
/// ];
/// assert!(!verify_checksums(&pkt).unwrap().all_valid());
///
/// let done = calc_checksums(&mut pkt, ChecksumFlags::NONE).unwrap();
/// assert!(done.ip && done.udp && !done.tcp);
/// assert!(verify_checksums(&pkt).unwrap().all_valid());
///
/// // Record what was computed in the packet's address, as WinDivert does.
/// let mut addr = Address::network(true);
/// done.apply_to(&mut addr);
/// assert!(addr.ip_checksum && addr.udp_checksum);
///
/// // Flags skip checksums; a truncated packet has no computable transport checksum.
/// let done = calc_checksums(&mut pkt, ChecksumFlags::NO_UDP_CHECKSUM).unwrap();
/// assert!(done.ip && !done.udp);
/// assert_eq!(calc_checksums(&mut pkt[..30], ChecksumFlags::NONE), Err(ChecksumError::Truncated));
/// ```
pub fn calc_checksums(
    packet: &mut [u8],
    flags: ChecksumFlags,
) -> Result<ChecksumsDone, ChecksumError> {
    let l = layout(packet).ok_or(ChecksumError::Unparsable)?;
    let mut done = ChecksumsDone::default();
    if l.version == 4 && !flags.contains(ChecksumFlags::NO_IP_CHECKSUM) {
        let hl = l.ip_header_len;
        let mut s = Sum::new();
        s.add(sub(packet, 0, 10));
        s.add(sub(packet, 12, hl));
        super::field::set_u16(packet, 10, !s.fold());
        done.ip = true;
    }
    let (skip, flag) = match l.transport {
        Transport::None => return Ok(done),
        Transport::Icmp => (ChecksumFlags::NO_ICMP_CHECKSUM, &mut done.icmp),
        Transport::Icmpv6 => (ChecksumFlags::NO_ICMPV6_CHECKSUM, &mut done.icmpv6),
        Transport::Tcp { .. } => (ChecksumFlags::NO_TCP_CHECKSUM, &mut done.tcp),
        Transport::Udp => (ChecksumFlags::NO_UDP_CHECKSUM, &mut done.udp),
    };
    if flags.contains(skip) {
        return Ok(done);
    }
    if l.is_truncated() {
        return Err(ChecksumError::Truncated);
    }
    if l.more_fragments || l.frag_offset != 0 {
        return Err(ChecksumError::Fragment);
    }
    *flag = true;
    if let (Some(c), Some((field, _))) = (
        transport_checksum(packet, &l),
        transport_checksum_field(l.transport),
    ) {
        let seg = sub_mut(packet, l.transport_offset, l.len);
        super::field::set_u16(seg, field, c);
    }
    Ok(done)
}

/// Which checksums of a packet are correct, from [`verify_checksums`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChecksumStatus {
    /// IPv4: whether the header checksum is correct. `None` for IPv6 (no header checksum).
    pub ip: Option<bool>,
    /// Whether the transport (TCP, UDP, ICMP, ICMPv6) checksum is correct. `None` when it
    /// cannot be checked: no transport header was parsed, or the packet is truncated or a
    /// fragment. A UDP checksum of 0 over IPv4 means "no checksum" (RFC 768) and counts as
    /// correct; over IPv6 it is incorrect (RFC 8200 §8.1).
    pub transport: Option<bool>,
}

impl ChecksumStatus {
    /// Whether nothing that could be checked is wrong.
    pub fn all_valid(&self) -> bool {
        self.ip != Some(false) && self.transport != Some(false)
    }
}

/// Checks the checksums of the first packet in `packet` over the same regions that
/// [`calc_checksums`] writes. `None` if there is no valid IP header (lenient rules).
pub fn verify_checksums(packet: &[u8]) -> Option<ChecksumStatus> {
    let l = layout(packet)?;
    Some(ChecksumStatus {
        ip: (l.version == 4)
            .then(|| ones_complement_sum(sub(packet, 0, l.ip_header_len)) == 0xFFFF),
        transport: verify_transport(packet, &l),
    })
}

/// Whether the IPv4 header checksum of `packet` is correct; `None` if it is not a parsable
/// IPv4 packet.
pub fn verify_ipv4_checksum(packet: &[u8]) -> Option<bool> {
    verify_checksums(packet)?.ip
}

/// Whether the transport checksum of `packet` is correct; `None` if it cannot be checked
/// (see [`ChecksumStatus::transport`]).
pub fn verify_transport_checksum(packet: &[u8]) -> Option<bool> {
    verify_checksums(packet)?.transport
}

fn verify_transport(packet: &[u8], l: &Layout) -> Option<bool> {
    let (field, proto) = transport_checksum_field(l.transport)?;
    if l.is_truncated() || l.more_fragments || l.frag_offset != 0 {
        return None;
    }
    let seg = sub(packet, l.transport_offset, l.len);
    if l.transport == Transport::Udp && u16_at(seg, field) == 0 {
        // "No checksum": allowed over IPv4 only.
        return Some(l.version == 4);
    }
    let mut s = match l.transport {
        Transport::Icmp => Sum::new(),
        _ => pseudo_header(packet, l, proto, seg.len()),
    };
    s.add(seg);
    Some(s.fold() == 0xFFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward reference: big-endian 16-bit words into a u32 with end-around carry.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for w in data.chunks(2) {
            let v = u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0));
            s += v;
            s = (s & 0xFFFF) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(ones_complement_sum(&data), 0xddf2);
        assert_eq!(internet_checksum(&data), 0x220d);
    }

    #[test]
    fn matches_reference_for_all_lengths_and_alignments() {
        let data: Vec<u8> = (0..2000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for start in 0..9 {
            for len in 0..300 {
                let d = &data[start..start + len];
                assert_eq!(ones_complement_sum(d), reference_sum(d), "{start} {len}");
            }
        }
        assert_eq!(ones_complement_sum(&data), reference_sum(&data));
        let ff = vec![0xFFu8; 65_575];
        assert_eq!(ones_complement_sum(&ff), reference_sum(&ff));
        assert_eq!(ones_complement_sum(&[]), 0);
    }

    #[test]
    fn split_sums_agree() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for cut in (0..1000).step_by(2) {
            let mut s = Sum::new();
            s.add(&data[..cut]);
            s.add(&data[cut..]);
            assert_eq!(s.fold(), reference_sum(&data));
        }
        let mut s = Sum::new();
        s.add_u16(0x1234);
        s.add_u16(0xF00F);
        assert_eq!(s.fold(), reference_sum(&[0x12, 0x34, 0xF0, 0x0F]));
    }

    #[test]
    fn incremental_update_agrees_with_recompute() {
        let mut data: Vec<u8> = (0..64u32).map(|i| (i * 37 + 11) as u8).collect();
        for i in 0..2000u32 {
            let before = internet_checksum(&data);
            let pos = (i as usize * 6) % 60;
            let old = [data[pos], data[pos + 1], data[pos + 2], data[pos + 3]];
            let new = (i.wrapping_mul(0x9E37_79B9)).to_be_bytes();
            data[pos..pos + 4].copy_from_slice(&new);
            let upd = checksum_update(before, &old, &new);
            // The same value up to the representation of zero (0x0000 vs 0xFFFF).
            let full = internet_checksum(&data);
            assert!(
                upd == full || (upd | full) == 0xFFFF && (upd & full) == 0,
                "{i}"
            );
            let w = checksum_update_u16(
                before,
                u16::from_be_bytes([old[0], old[1]]),
                u16::from_be_bytes([new[0], new[1]]),
            );
            let w = checksum_update(w, &old[2..], &new[2..]);
            assert!(w == full || (w | full) == 0xFFFF && (w & full) == 0);
        }
    }

    #[test]
    fn flags() {
        let f = ChecksumFlags::NO_IP_CHECKSUM | ChecksumFlags::NO_UDP_CHECKSUM;
        assert_eq!(f.bits(), 17);
        assert!(f.contains(ChecksumFlags::NO_UDP_CHECKSUM));
        assert!(!f.contains(ChecksumFlags::NO_TCP_CHECKSUM));
        let mut g = ChecksumFlags::NONE;
        g |= ChecksumFlags::NO_ICMP_CHECKSUM;
        g |= ChecksumFlags::NO_ICMPV6_CHECKSUM;
        g |= ChecksumFlags::NO_TCP_CHECKSUM;
        assert_eq!(g, ChecksumFlags::from_bits_retain(14));
        let mut a = crate::Address::network(true);
        ChecksumsDone {
            ip: true,
            udp: true,
            ..Default::default()
        }
        .apply_to(&mut a);
        assert!(a.ip_checksum && a.udp_checksum && !a.tcp_checksum);
        assert!(!ChecksumError::Truncated.to_string().is_empty());
    }
}

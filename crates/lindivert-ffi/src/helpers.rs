//! The safe bodies of the `WinDivertHelper*` functions (and their libebpfdivert twins).

use std::ffi::CStr;

use lindivert_core::address::RawAddress;
use lindivert_core::filter::{format, object, ErrorKind, Filter, FilterError};
use lindivert_core::packet::checksum::{calc_checksums as core_calc, ChecksumFlags};
use lindivert_core::packet::{self, Transport};
use lindivert_core::{Address, Layer};

use crate::error::{Fail, ERROR_INSUFFICIENT_BUFFER, R};

/// Filter text from C: must be UTF-8 (anything else is a bad token at the first bad byte).
pub fn filter_text(c: &CStr) -> Result<&str, FilterError> {
    c.to_str().map_err(|e| {
        FilterError::new(
            ErrorKind::BadToken,
            e.valid_up_to(),
            "the filter is not valid UTF-8",
        )
    })
}

/// The error position as WinDivert reports it: a character offset.
pub fn char_pos(text: &CStr, e: &FilterError) -> u32 {
    let bytes = text.to_bytes();
    let upto = &bytes[..e.pos.min(bytes.len())];
    String::from_utf8_lossy(upto).chars().count() as u32
}

/// Compile for a layer number.
pub fn compile(text: &CStr, layer: u32) -> Result<Filter, FilterError> {
    let Some(layer) = Layer::from_u32(layer) else {
        return Err(FilterError::new(
            ErrorKind::BadTokenForLayer,
            0,
            format!("unknown layer {layer}"),
        ));
    };
    Filter::compile(filter_text(text)?, layer)
}

/// `WinDivertHelperCompileFilter`: the object string of a filter.
pub fn compile_object(text: &CStr, layer: u32) -> Result<String, FilterError> {
    compile(text, layer).map(|f| object::encode(f.object()))
}

/// Copy `s` and a NUL into `buf`. Too small: as much as fits plus NUL, then
/// `ERROR_INSUFFICIENT_BUFFER`.
pub fn copy_out(s: &str, buf: &mut [u8]) -> R<()> {
    let b = s.as_bytes();
    if b.len() < buf.len() {
        buf[..b.len()].copy_from_slice(b);
        buf[b.len()] = 0;
        return Ok(());
    }
    if let Some((last, head)) = buf.split_last_mut() {
        head.copy_from_slice(&b[..head.len()]);
        *last = 0;
    }
    Err(Fail::code(ERROR_INSUFFICIENT_BUFFER))
}

/// `WinDivertHelperFormatFilter`.
pub fn format_filter(text: &CStr, layer: u32) -> R<String> {
    let f = compile(text, layer).map_err(|_| Fail::param())?;
    Ok(format::format(f.object(), f.layer()))
}

/// `WinDivertHelperEvalFilter`: compile for `addr.Layer`, evaluate.
pub fn eval_filter(text: &CStr, packet: &[u8], addr: &RawAddress) -> R<bool> {
    let a = Address::try_from(addr).map_err(|_| Fail::param())?;
    let f = compile(text, a.layer as u32).map_err(|_| Fail::param())?;
    f.matches_packet(packet, &a).map_err(|_| Fail::param())
}

/// `WinDivertHelperCalcChecksums`: returns the checksum bits to set in the address.
pub fn calc_checksums(packet: &mut [u8], flags: u64) -> R<(bool, bool, bool)> {
    let done = core_calc(packet, ChecksumFlags::from_bits_retain(flags & 0x1F))
        .map_err(|_| Fail::param())?;
    Ok((done.ip, done.tcp, done.udp))
}

/// Set the checksum-valid bits (never clear them).
pub fn apply_checksum_bits(addr: &mut RawAddress, (ip, tcp, udp): (bool, bool, bool)) {
    for (on, bit) in [(ip, 21), (tcp, 22), (udp, 23)] {
        if on {
            addr.bits |= 1 << bit;
        }
    }
}

/// Where the headers of a parsed packet are (byte offsets into the buffer).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    /// IPv4 header.
    pub ipv4: Option<usize>,
    /// IPv6 header.
    pub ipv6: Option<usize>,
    /// The final protocol.
    pub protocol: u8,
    /// ICMP header.
    pub icmp: Option<usize>,
    /// ICMPv6 header.
    pub icmpv6: Option<usize>,
    /// TCP header.
    pub tcp: Option<usize>,
    /// UDP header.
    pub udp: Option<usize>,
    /// Payload (offset, length); None when empty.
    pub data: Option<(usize, usize)>,
    /// The rest of the buffer after this packet (offset, length); None when empty.
    pub next: Option<(usize, usize)>,
}

/// `WinDivertHelperParsePacket`.
pub fn parse_packet(bytes: &[u8]) -> Option<Parsed> {
    let p = packet::parse(bytes)?;
    let t = p.transport_offset;
    let mut r = Parsed {
        protocol: p.protocol,
        ..Parsed::default()
    };
    if p.version == 4 {
        r.ipv4 = Some(0);
    } else {
        r.ipv6 = Some(0);
    }
    match p.transport {
        Transport::None => {}
        Transport::Tcp { .. } => r.tcp = Some(t),
        Transport::Udp => r.udp = Some(t),
        Transport::Icmp => r.icmp = Some(t),
        Transport::Icmpv6 => r.icmpv6 = Some(t),
    }
    if p.payload_len > 0 {
        r.data = Some((p.header_len, p.payload_len));
    }
    if !p.next.is_empty() {
        r.next = Some((p.bytes.len(), p.next.len()));
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UDP: [u8; 36] = [
        0x45, 0, 0, 36, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1, // IPv4
        0xb0, 0x5a, 0x30, 0x39, 0, 16, 0, 0, // UDP
        b'h', b'e', b'l', b'l', b'o', b'-', b'l', b'o',
    ];

    #[test]
    fn parse_offsets() {
        let mut two = UDP.to_vec();
        two.extend_from_slice(&UDP);
        let p = parse_packet(&two).unwrap();
        assert_eq!(p.ipv4, Some(0));
        assert_eq!(p.udp, Some(20));
        assert_eq!(p.protocol, 17);
        assert_eq!(p.data, Some((28, 8)));
        assert_eq!(p.next, Some((36, 36)));
        assert!(parse_packet(&UDP[..30]).is_none());
    }

    #[test]
    fn copy_out_truncates() {
        let mut b = [0xAAu8; 4];
        assert_eq!(copy_out("abcdef", &mut b), Err(Fail::buffer()));
        assert_eq!(&b, b"abc\0");
        let mut b = [0xAAu8; 7];
        copy_out("abcdef", &mut b).unwrap();
        assert_eq!(&b, b"abcdef\0");
        assert!(copy_out("", &mut []).is_err());
    }

    #[test]
    fn compile_positions() {
        let e = compile(c"tcp and (", 0).unwrap_err();
        assert_eq!(char_pos(c"tcp and (", &e), 9);
        assert!(compile(c"true", 9).is_err());
        assert!(compile_object(c"tcp.DstPort == 80", 0)
            .unwrap()
            .starts_with("@WinDiv_"));
    }

    #[test]
    fn checksums_and_bits() {
        let mut p = UDP;
        let bits = calc_checksums(&mut p, 0).unwrap();
        assert_eq!(bits, (true, false, true));
        let mut a = RawAddress::ZERO;
        apply_checksum_bits(&mut a, bits);
        assert!(a.ip_checksum() && a.udp_checksum() && !a.tcp_checksum());
        assert!(calc_checksums(&mut [0u8; 10], 0).is_err());
    }
}

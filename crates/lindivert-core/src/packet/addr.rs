//! IPv4/IPv6 address text helpers (`WinDivertHelperParseIPv4Address`,
//! `WinDivertHelperParseIPv6Address`, `WinDivertHelperFormatIPv4Address`,
//! `WinDivertHelperFormatIPv6Address`) and the IPv6 byte-order helpers.
//!
//! Representations:
//! * an IPv4 address is a host-order `u32`: `10.0.0.1` is `0x0A00_0001`;
//! * an IPv6 address is a `u128` whose most significant 16 bits are the first group:
//!   `2001:db8::1` is `0x2001_0db8_0000_…_0001`;
//! * WinDivert's own form is a host-order `UINT32[4]` with `[0]` least significant
//!   ([`ipv6_to_words`], [`ipv6_from_words`]);
//! * on the wire an address is 16 network-order bytes ([`ipv6_to_bytes`],
//!   [`ipv6_from_bytes`], [`ntoh_ipv6_address`], [`hton_ipv6_address`]).
//!
//! All functions accept arbitrary input and never panic.

/// Parses a strict dotted quad: exactly four decimal parts, each ≤ 255, separated by `.`,
/// nothing before or after. Returns the host-order value (`"10.0.0.1"` → `0x0A00_0001`).
///
/// As in WinDivert, a part may have leading zeros (`"010.0.0.1"` is `10.0.0.1`, never
/// octal); signs, spaces, empty parts and trailing characters are rejected.
pub fn parse_ipv4(s: &str) -> Option<u32> {
    let mut addr: u32 = 0;
    let mut parts = 0usize;
    for part in s.split('.') {
        parts += 1;
        if parts > 4 {
            return None;
        }
        addr = (addr << 8) | u32::from(parse_octet(part)?);
    }
    (parts == 4).then_some(addr)
}

/// One decimal part of a dotted quad (≥ 1 digit, value ≤ 255, leading zeros allowed).
fn parse_octet(part: &str) -> Option<u8> {
    if part.is_empty() {
        return None;
    }
    let mut v: u32 = 0;
    for b in part.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(b - b'0');
        if v > 255 {
            return None;
        }
    }
    u8::try_from(v).ok()
}

/// Parses an IPv6 address in the text forms WinDivert's `WinDivertHelperParseIPv6Address`
/// accepts: eight groups of 1 to 4 hex digits (either case) separated by `:`, with at most
/// one `::` standing for one or more zero groups, and an optional dotted-quad tail that is
/// only accepted when the whole address is IPv4-compatible (`::a.b.c.d`) or IPv4-mapped
/// (`::ffff:a.b.c.d`, also written e.g. `::0:ffff:a.b.c.d`) and the text uses `::`.
///
/// Returns the 128-bit address, first group most significant (`"::1"` → `1`).
///
/// Deliberately stricter than WinDivert 2.2 on malformed text it happens to accept
/// (trailing garbage after eight groups, `::` standing for zero groups, a bare
/// `a.b.c.d`).
pub fn parse_ipv6(s: &str) -> Option<u128> {
    // Split around the (single) "::".
    let (left, right, compressed) = match s.find("::") {
        Some(p) => {
            let (l, r) = (&s[..p], &s[p + 2..]);
            if r.contains("::") {
                return None;
            }
            (l, r, true)
        }
        None => (s, "", false),
    };
    let mut groups: [u16; 8] = [0; 8];
    let mut lg: Vec<u16> = Vec::with_capacity(8);
    let mut rg: Vec<u16> = Vec::with_capacity(8);
    let mut ipv4_tail: Option<u32> = None;

    // The part that may end with an IPv4 tail is the last one written.
    let (head, tail_part) = if compressed {
        (left, right)
    } else {
        ("", left)
    };
    if compressed {
        parse_groups(head, &mut lg, false)?;
    }
    if let Some(v4) = parse_groups(tail_part, if compressed { &mut rg } else { &mut lg }, true)? {
        ipv4_tail = Some(v4);
    }
    let tail_words = if ipv4_tail.is_some() { 2 } else { 0 };
    let explicit = lg.len() + rg.len() + tail_words;
    if compressed {
        if explicit > 7 {
            return None;
        }
    } else if explicit != 8 {
        return None;
    }
    if ipv4_tail.is_some() && !compressed {
        return None;
    }
    for (i, g) in lg.iter().enumerate() {
        groups[i] = *g;
    }
    let rstart = 8 - tail_words - rg.len();
    for (i, g) in rg.iter().enumerate() {
        groups[rstart + i] = *g;
    }
    let mut value: u128 = 0;
    for g in groups {
        value = (value << 16) | u128::from(g);
    }
    if let Some(v4) = ipv4_tail {
        // Only ::a.b.c.d and ::ffff:a.b.c.d.
        let high = value >> 32;
        if high != 0 && high != 0xFFFF {
            return None;
        }
        value |= u128::from(v4);
    }
    Some(value)
}

/// Parses `:`-separated hex groups into `out`. An empty string is zero groups. When
/// `allow_v4`, the last element may be a dotted quad, returned as `Some(addr)`.
/// Returns `None` on a syntax error.
fn parse_groups(s: &str, out: &mut Vec<u16>, allow_v4: bool) -> Option<Option<u32>> {
    if s.is_empty() {
        return Some(None);
    }
    let pieces: Vec<&str> = s.split(':').collect();
    if pieces.len() > 8 {
        return None;
    }
    let last = pieces.len() - 1;
    for (i, piece) in pieces.iter().enumerate() {
        if i == last && allow_v4 && piece.contains('.') {
            return Some(Some(parse_ipv4(piece)?));
        }
        if piece.is_empty() || piece.len() > 4 || !piece.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        out.push(u16::from_str_radix(piece, 16).ok()?);
    }
    Some(None)
}

/// Formats a host-order IPv4 address as `a.b.c.d`.
pub fn format_ipv4(addr: u32) -> String {
    let [a, b, c, d] = addr.to_be_bytes();
    format!("{a}.{b}.{c}.{d}")
}

/// Formats an IPv6 address (first group most significant) like
/// `WinDivertHelperFormatIPv6Address`: lower-case hex without leading zeros, the longest
/// run of two or more zero groups (the first one on a tie) written `::` as RFC 5952
/// recommends, and IPv4-mapped addresses (`::ffff:a.b.c.d`) printed as plain `a.b.c.d`.
///
/// Unlike WinDivert 2.2, a single zero group is printed `0`, not `::` (RFC 5952 §4.2.2);
/// both forms parse back to the same address.
pub fn format_ipv6(addr: u128) -> String {
    if addr >> 32 == 0xFFFF {
        return format_ipv4(addr as u32);
    }
    let groups: [u16; 8] = core::array::from_fn(|i| (addr >> (112 - 16 * i)) as u16);
    // Longest run of zero groups (first on ties), length >= 2.
    let (mut best_start, mut best_len) = (usize::MAX, 1usize);
    let mut i = 0;
    while i < 8 {
        if groups[i] == 0 {
            let start = i;
            while i < 8 && groups[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                best_start = start;
                best_len = i - start;
            }
        } else {
            i += 1;
        }
    }
    let mut out = String::with_capacity(39);
    let mut i = 0;
    while i < 8 {
        if i == best_start {
            out.push_str("::");
            i += best_len;
            continue;
        }
        if !out.is_empty() && !out.ends_with(':') {
            out.push(':');
        }
        out.push_str(&format!("{:x}", groups[i]));
        i += 1;
    }
    out
}

/// Converts WinDivert's host-order `UINT32[4]` form (`[0]` least significant, `[3]` most
/// significant) to the 128-bit address.
pub const fn ipv6_from_words(words: [u32; 4]) -> u128 {
    (words[0] as u128)
        | ((words[1] as u128) << 32)
        | ((words[2] as u128) << 64)
        | ((words[3] as u128) << 96)
}

/// Converts a 128-bit address to WinDivert's host-order `UINT32[4]` form (`[0]` least
/// significant).
pub const fn ipv6_to_words(addr: u128) -> [u32; 4] {
    [
        addr as u32,
        (addr >> 32) as u32,
        (addr >> 64) as u32,
        (addr >> 96) as u32,
    ]
}

/// The 16 network-order (wire) bytes of an address.
pub const fn ipv6_to_bytes(addr: u128) -> [u8; 16] {
    addr.to_be_bytes()
}

/// The address from its 16 network-order (wire) bytes.
pub const fn ipv6_from_bytes(bytes: [u8; 16]) -> u128 {
    u128::from_be_bytes(bytes)
}

/// `WinDivertHelperNtohIPv6Address`: reverses the 16 bytes, turning an address as stored in
/// a header (four `UINT32`s in network order, as read from memory) into WinDivert's host-order
/// `UINT32[4]` with `[0]` least significant.
///
/// The words are taken as they sit in memory on a little-endian host (the only kind WinDivert
/// supports); the result is independent of the byte order this code runs on.
pub const fn ntoh_ipv6_address(words: [u32; 4]) -> [u32; 4] {
    // Memory bytes in order (little-endian host), reversed.
    let mut bytes = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        let b = words[i].to_le_bytes();
        bytes[4 * i] = b[0];
        bytes[4 * i + 1] = b[1];
        bytes[4 * i + 2] = b[2];
        bytes[4 * i + 3] = b[3];
        i += 1;
    }
    let mut out = [0u32; 4];
    let mut j = 0;
    while j < 4 {
        // Reversed byte k is bytes[15 - k]; out[j] holds reversed bytes 4j..4j+3 (LE).
        out[j] = u32::from_le_bytes([
            bytes[15 - 4 * j],
            bytes[14 - 4 * j],
            bytes[13 - 4 * j],
            bytes[12 - 4 * j],
        ]);
        j += 1;
    }
    out
}

/// `WinDivertHelperHtonIPv6Address`: the inverse of [`ntoh_ipv6_address`] (the same
/// 16-byte reversal).
pub const fn hton_ipv6_address(words: [u32; 4]) -> [u32; 4] {
    ntoh_ipv6_address(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ipv4_parse() {
        assert_eq!(parse_ipv4("10.0.0.1"), Some(0x0A00_0001));
        assert_eq!(parse_ipv4("255.255.255.255"), Some(u32::MAX));
        assert_eq!(parse_ipv4("0.0.0.0"), Some(0));
        assert_eq!(parse_ipv4("142.251.43.14"), Some(0x8EFB_2B0E));
        assert_eq!(parse_ipv4("010.0.0.1"), Some(0x0A00_0001));
        assert_eq!(parse_ipv4("0000000000010.0.0.1"), Some(0x0A00_0001));
        for bad in [
            "",
            "1",
            "1.2.3",
            "1.2.3.4.",
            "1.2.3.4.5",
            "256.0.0.0",
            "1.2.3.256",
            "1..2.3",
            ".1.2.3",
            "1.2.3.4 ",
            " 1.2.3.4",
            "+1.2.3.4",
            "1.2.3.-4",
            "0x1.2.3.4",
            "1.2.3.4a",
            "99999999999999999999999999999999999999999999.0.0.0",
            "1.2.3.4\0",
        ] {
            assert_eq!(parse_ipv4(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ipv6_parse() {
        assert_eq!(parse_ipv6("::"), Some(0));
        assert_eq!(parse_ipv6("::1"), Some(1));
        assert_eq!(parse_ipv6("1::"), Some(1u128 << 112));
        assert_eq!(
            parse_ipv6("2001:db8::1"),
            Some(0x2001_0db8_0000_0000_0000_0000_0000_0001)
        );
        assert_eq!(
            parse_ipv6("2001:DB8:0:0:0:0:0:1"),
            Some(0x2001_0db8_0000_0000_0000_0000_0000_0001)
        );
        assert_eq!(
            parse_ipv6("1:2:3:4:5:6:7:8"),
            Some(0x0001_0002_0003_0004_0005_0006_0007_0008)
        );
        assert_eq!(
            parse_ipv6("1:2:3::6:7:8"),
            Some(0x0001_0002_0003_0000_0000_0006_0007_0008)
        );
        assert_eq!(parse_ipv6("::ffff:8.8.4.4"), Some(0xFFFF_0808_0404));
        assert_eq!(parse_ipv6("::0:ffff:8.8.4.4"), Some(0xFFFF_0808_0404));
        assert_eq!(parse_ipv6("0::FFFF:8.8.4.4"), Some(0xFFFF_0808_0404));
        assert_eq!(parse_ipv6("::1.2.3.4"), Some(0x0102_0304));
        assert_eq!(parse_ipv6("::0.0.0.0"), Some(0));
        for bad in [
            "",
            ":",
            ":::",
            "1",
            "1:2",
            "1:2:3:4:5:6:7",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7:8::",
            "1:2:3:4:5:6:7::8",
            "::1::",
            "1::2::3",
            "12345::",
            "g::",
            ":1::",
            "::1:",
            "1:2:3:4:5:6:7:",
            ":1:2:3:4:5:6:7:8",
            "1.2.3.4",
            "::1:1.2.3.4",
            "1::1.2.3.4",
            "::fffe:1.2.3.4",
            "ffff:1.2.3.4",
            "0:0:0:0:0:ffff:1.2.3.4",
            "::ffff:1.2.3",
            "::ffff:1.2.3.4:5",
            "::1.2.3.4.5",
            "::ffff:256.0.0.0",
            " ::1",
            "::1 ",
            "::1\0",
            "::+1",
            "::-1",
            "::0x1",
            "::é",
        ] {
            assert_eq!(parse_ipv6(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn format() {
        assert_eq!(format_ipv4(0x0A00_0001), "10.0.0.1");
        assert_eq!(format_ipv4(u32::MAX), "255.255.255.255");
        assert_eq!(format_ipv6(0), "::");
        assert_eq!(format_ipv6(1), "::1");
        assert_eq!(format_ipv6(1u128 << 112), "1::");
        assert_eq!(
            format_ipv6(0x2001_0db8_0000_0000_0000_0000_0000_0001),
            "2001:db8::1"
        );
        assert_eq!(
            format_ipv6(0x2001_0db8_0000_0001_0000_0000_0000_0001),
            "2001:db8:0:1::1"
        );
        // First of two equal runs.
        assert_eq!(
            format_ipv6(0x0001_0000_0000_0002_0003_0000_0000_0004),
            "1::2:3:0:0:4"
        );
        // A single zero group is not compressed.
        assert_eq!(
            format_ipv6(0x0001_0000_0002_0003_0004_0005_0006_0007),
            "1:0:2:3:4:5:6:7"
        );
        assert_eq!(
            format_ipv6(0xABCD_0000_0000_0000_0000_0000_0000_EF01),
            "abcd::ef01"
        );
        assert_eq!(format_ipv6(0xFFFF_8EFB_2B0E), "142.251.43.14");
        assert_eq!(format_ipv6(0xFFFF_0000_0000), "0.0.0.0");
        assert_eq!(format_ipv6(0x0102_0304), "::102:304");
        assert_eq!(
            format_ipv6(u128::MAX),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
    }

    #[test]
    fn words_and_byte_order() {
        let a = parse_ipv6("2001:db8::1").unwrap();
        let w = ipv6_to_words(a);
        assert_eq!(w, [1, 0, 0, 0x2001_0db8]);
        assert_eq!(ipv6_from_words(w), a);
        let wire = ipv6_to_bytes(a);
        assert_eq!(&wire[..4], &[0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(ipv6_from_bytes(wire), a);
        // Header words as they sit in memory on a little-endian host.
        let mem: [u32; 4] = core::array::from_fn(|i| {
            u32::from_le_bytes([
                wire[4 * i],
                wire[4 * i + 1],
                wire[4 * i + 2],
                wire[4 * i + 3],
            ])
        });
        assert_eq!(ntoh_ipv6_address(mem), w);
        assert_eq!(hton_ipv6_address(w), mem);
    }

    proptest! {
        #[test]
        fn ipv4_round_trip(a in any::<u32>()) {
            prop_assert_eq!(parse_ipv4(&format_ipv4(a)), Some(a));
        }

        #[test]
        fn ipv6_round_trip(a in any::<u128>(), zeros in any::<u8>()) {
            // Zero some groups so that compression is exercised.
            let mut a = a;
            for g in 0..8 {
                if zeros & (1 << g) != 0 {
                    a &= !(0xFFFFu128 << (16 * g));
                }
            }
            let text = format_ipv6(a);
            if a >> 32 == 0xFFFF {
                prop_assert_eq!(parse_ipv4(&text).map(|v| 0xFFFF_0000_0000u128 | u128::from(v)), Some(a));
                prop_assert_eq!(parse_ipv6(&format!("::ffff:{text}")), Some(a));
            } else {
                prop_assert_eq!(parse_ipv6(&text), Some(a));
                prop_assert_eq!(text.clone(), text.to_lowercase());
            }
        }

        #[test]
        fn ipv6_full_form(a in any::<u128>()) {
            let groups: Vec<String> = (0..8).map(|i| format!("{:X}", (a >> (112 - 16 * i)) as u16)).collect();
            prop_assert_eq!(parse_ipv6(&groups.join(":")), Some(a));
        }

        #[test]
        fn words_round_trip(a in any::<u128>()) {
            prop_assert_eq!(ipv6_from_words(ipv6_to_words(a)), a);
            let w = ipv6_to_words(a);
            prop_assert_eq!(hton_ipv6_address(ntoh_ipv6_address(w)), w);
        }

        #[test]
        fn never_panics(s in "[0-9a-fA-F:.x ]{0,48}", t in ".{0,48}") {
            let _ = parse_ipv4(&s);
            let _ = parse_ipv6(&s);
            let _ = parse_ipv4(&t);
            let _ = parse_ipv6(&t);
        }
    }
}

//! TEMPORARY stand-ins for `crate::packet::parse` and `crate::packet::hash_packet`, which a
//! colleague is writing. Delete this file (and its `mod` line) when they land.

use crate::packet::{ParsedPacket, Transport};

/// WinDivert's packet parser (FILTER.md §5.4), enough for the filter tests.
pub(crate) fn parse(bytes: &[u8]) -> Option<ParsedPacket<'_>> {
    let b0 = *bytes.first()?;
    if bytes.len() < 20 {
        return None;
    }
    let be16 = |o: usize| -> Option<usize> {
        Some(usize::from(u16::from_be_bytes([
            *bytes.get(o)?,
            *bytes.get(o + 1)?,
        ])))
    };
    let (version, first_nh, mut protocol, packet_len, mut off, mut fragment, mut frag_off);
    match b0 >> 4 {
        4 => {
            let ihl = usize::from(b0 & 0x0F) * 4;
            if ihl < 20 {
                return None;
            }
            let total = be16(2)?;
            if total < ihl || bytes.len() < ihl {
                return None;
            }
            version = 4;
            protocol = bytes[9];
            first_nh = protocol;
            frag_off = be16(6)? & 0x1FFF;
            let mf = bytes[6] & 0x20 != 0;
            fragment = mf || frag_off != 0;
            packet_len = total.min(bytes.len());
            off = ihl;
        }
        6 => {
            if bytes.len() < 40 {
                return None;
            }
            version = 6;
            protocol = bytes[6];
            first_nh = protocol;
            packet_len = (be16(4)? + 40).min(bytes.len());
            off = 40;
            fragment = false;
            frag_off = 0;
            while frag_off == 0 && packet_len.saturating_sub(off) >= 2 {
                let avail = packet_len - off;
                let hl = match protocol {
                    44 => {
                        if fragment || avail < 8 {
                            break;
                        }
                        frag_off = be16(off + 2)? >> 3;
                        fragment = true;
                        8
                    }
                    51 => (usize::from(bytes[off + 1]) + 2) * 4,
                    0 | 43 | 60 | 135 => (usize::from(bytes[off + 1]) + 1) * 8,
                    _ => break,
                };
                if avail < hl {
                    break;
                }
                protocol = bytes[off];
                off += hl;
            }
        }
        _ => return None,
    }
    let transport_offset = off;
    let avail = packet_len.saturating_sub(off);
    let mut transport = Transport::None;
    if frag_off == 0 {
        match protocol {
            6 if avail >= 20 && bytes[off + 12] >> 4 >= 5 => {
                let hl = (usize::from(bytes[off + 12] >> 4) * 4).min(avail);
                transport = Transport::Tcp { hdr_len: hl };
                off += hl;
            }
            17 if avail >= 8 => {
                transport = Transport::Udp;
                off += 8;
            }
            1 if version == 4 && avail >= 8 => {
                transport = Transport::Icmp;
                off += 8;
            }
            58 if version == 6 && avail >= 8 => {
                transport = Transport::Icmpv6;
                off += 8;
            }
            _ => {}
        }
    }
    Some(ParsedPacket {
        bytes: bytes.get(..packet_len)?,
        version,
        first_next_header: first_nh,
        protocol,
        fragment,
        transport,
        transport_offset,
        header_len: off,
        payload_len: packet_len - off,
        next: bytes.get(packet_len..).unwrap_or(&[]),
    })
}

/// A stand-in for WinDivert's packet hash (not the real function).
pub(crate) fn hash_packet(bytes: &[u8], seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in bytes.iter().take(60) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

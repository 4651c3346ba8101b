//! `WinDivertHelperHashPacket`: WinDivert's packet hash, also the source of the filter
//! fields `random8`, `random16` and `random32`.
//!
//! The construction is a single xxHash64 stripe (Yann Collet's xxHash, 64-bit variant): four
//! lanes, each one `round` of `acc + input * P2, rotl 31, * P1`, then the usual lane merge,
//! a length of 32 and the final avalanche. Unlike xxHash64, the lane *accumulators* are
//! seeded with packet data and the *inputs* with more packet data or the seed; every 64-bit
//! word is first XORed with a fixed constant (the first SHA-256 round constants, two per
//! word). Words are read little-endian, as on the x86 hosts WinDivert runs on.
//!
//! Layout of the 8 words (`w ^ K[i]`):
//!
//! | word | IPv4 | IPv6 |
//! |---|---|---|
//! | acc 0 | seed | seed |
//! | acc 1..3 | header bytes 0..8, 8..16, 16..20 | header bytes 0..8, 8..16, 16..24 |
//! | inputs | transport words, then the seed | header bytes 24..32, 32..40, then transport words, then the seed |
//!
//! The transport words are TCP bytes 0..8, 8..16 and 16..20 or the 8 bytes of a UDP, ICMP or
//! ICMPv6 header. When the inputs are full (IPv6 + TCP), TCP bytes 16..20 are XORed into the
//! high half of accumulator 1 instead. The payload is not hashed.

use super::field::array_at;
use super::{parse, ParsedPacket, Transport};

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;

/// The first 16 SHA-256 round constants, two to a word: whitening for the 4 accumulators and
/// the 4 inputs.
const K_ACC: [u64; 4] = [
    0x428A_2F98_7137_4491,
    0xB5C0_FBCF_E9B5_DBA5,
    0x3956_C25B_59F1_11F1,
    0x923F_82A4_AB1C_5ED5,
];
const K_IN: [u64; 4] = [
    0xD807_AA98_1283_5B01,
    0x2431_85BE_550C_7DC3,
    0x72BE_5D74_80DE_B1FE,
    0x9BDC_06A7_C19B_F174,
];

#[inline(always)]
fn round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

/// WinDivert's 64-bit packet hash (`WinDivertHelperHashPacket`), bit for bit.
///
/// It covers the IPv4 header's first 20 bytes (options excluded; TTL and checksum included)
/// or the 40-byte IPv6 header, the first 20 bytes of a parsed TCP header or the 8 bytes of a
/// UDP/ICMP/ICMPv6 header, and `seed`. Returns 0 if the packet does not [`parse`] (e.g. it is
/// truncated). Only the first packet of a batch buffer is hashed.
///
/// The filter fields use `H = hash(seed = addr.Timestamp) | 0xFF00_0000_0000_0000`:
/// `random8` = bits 48..56, `random16` = bits 32..48, `random32` = bits 0..32 (for
/// `random8` the OR makes no difference).
pub fn hash_packet(packet: &[u8], seed: u64) -> u64 {
    parse(packet).map_or(0, |p| hash_parsed(&p, seed))
}

pub(crate) fn hash_parsed(p: &ParsedPacket<'_>, seed: u64) -> u64 {
    let b = p.bytes;
    let le64 = |off: usize| u64::from_le_bytes(array_at::<8>(b, off));
    let le32 = |off: usize| u64::from(u32::from_le_bytes(array_at::<4>(b, off)));

    let mut acc = [seed, le64(0), le64(8), 0];
    let mut inputs = [seed; 4];
    let mut n = 0;
    let mut push = |w: u64| match inputs.get_mut(n) {
        Some(slot) => {
            *slot = w;
            n += 1;
            true
        }
        None => false,
    };
    match p.version {
        4 => acc[3] = le32(16),
        _ => {
            acc[3] = le64(16);
            push(le64(24));
            push(le64(32));
        }
    }
    let t = p.transport_offset;
    match p.transport {
        Transport::Tcp { .. } => {
            push(le64(t));
            push(le64(t + 8));
            let last = le32(t + 16);
            if !push(last) {
                acc[1] ^= last << 32;
            }
        }
        Transport::Udp | Transport::Icmp | Transport::Icmpv6 => {
            push(le64(t));
        }
        Transport::None => {}
    }

    let mut lanes = [0u64; 4];
    for (((lane, a), ka), (x, kx)) in lanes
        .iter_mut()
        .zip(acc)
        .zip(K_ACC)
        .zip(inputs.into_iter().zip(K_IN))
    {
        *lane = round(x ^ kx, a ^ ka);
    }
    let [l1, l2, l3, l4] = lanes;
    let mut h = l1
        .rotate_left(1)
        .wrapping_add(l2.rotate_left(7))
        .wrapping_add(l3.rotate_left(12))
        .wrapping_add(l4.rotate_left(18));
    for l in lanes {
        h = (h ^ round(0, l)).wrapping_mul(P1).wrapping_add(P4);
    }
    h = h.wrapping_add(32);
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

//! The TCP header view (`WINDIVERT_TCPHDR`, RFC 9293) and its options.

use super::field::{set_u16, set_u32, set_u8, sub, sub_mut, u16_at, u32_at, u8_at, view_basics};
use std::fmt;

/// TCP flag bits of byte 13 (see [`TcpHeader::flags`]).
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE (ECN echo).
    pub const ECE: u8 = 0x40;
    /// CWR (congestion window reduced).
    pub const CWR: u8 = 0x80;
}

/// A zero-copy view of a TCP header at the start of `T` (at least 20 bytes; the buffer may
/// also hold the options and the payload).
///
/// ```
/// use lindivert_core::packet::{tcp, TcpHeader};
/// let mut buf = [0u8; 20];
/// let mut t = TcpHeader::new(&mut buf[..]).unwrap();
/// t.set_src_port(443);
/// t.set_dst_port(50000);
/// t.set_data_offset(5);
/// t.set_flags(tcp::flags::SYN | tcp::flags::ACK);
/// assert!(t.syn() && t.ack() && !t.fin());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpHeader<T> {
    buf: T,
}

view_basics!(
    TcpHeader,
    MIN_LEN = 20,
    "Length of the header without options."
);

macro_rules! flag_getters {
    ($($(#[$m:meta])* $get:ident, $set:ident, $bit:expr;)*) => {
        impl<T: AsRef<[u8]>> TcpHeader<T> {
            $( $(#[$m])* #[inline] pub fn $get(&self) -> bool { self.flags() & $bit != 0 } )*
        }
        impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpHeader<T> {
            $(
                #[doc = concat!("Sets or clears the `", stringify!($get), "` flag.")]
                #[inline]
                pub fn $set(&mut self, on: bool) {
                    let f = self.flags();
                    self.set_flags(if on { f | $bit } else { f & !$bit });
                }
            )*
        }
    };
}

flag_getters! {
    /// FIN (`tcp.Fin`).
    fin, set_fin, flags::FIN;
    /// SYN (`tcp.Syn`).
    syn, set_syn, flags::SYN;
    /// RST (`tcp.Rst`).
    rst, set_rst, flags::RST;
    /// PSH (`tcp.Psh`).
    psh, set_psh, flags::PSH;
    /// ACK (`tcp.Ack`).
    ack, set_ack, flags::ACK;
    /// URG (`tcp.Urg`).
    urg, set_urg, flags::URG;
    /// ECE.
    ece, set_ece, flags::ECE;
    /// CWR.
    cwr, set_cwr, flags::CWR;
}

impl<T: AsRef<[u8]>> TcpHeader<T> {
    /// The source port (`tcp.SrcPort`).
    #[inline]
    pub fn src_port(&self) -> u16 {
        u16_at(self.buf.as_ref(), 0)
    }

    /// The destination port (`tcp.DstPort`).
    #[inline]
    pub fn dst_port(&self) -> u16 {
        u16_at(self.buf.as_ref(), 2)
    }

    /// The sequence number (`tcp.SeqNum`).
    #[inline]
    pub fn seq_number(&self) -> u32 {
        u32_at(self.buf.as_ref(), 4)
    }

    /// The acknowledgement number (`tcp.AckNum`).
    #[inline]
    pub fn ack_number(&self) -> u32 {
        u32_at(self.buf.as_ref(), 8)
    }

    /// The data offset: header length in 32-bit words (`tcp.HdrLength`; valid: 5..=15).
    #[inline]
    pub fn data_offset(&self) -> u8 {
        u8_at(self.buf.as_ref(), 12) >> 4
    }

    /// The header length in bytes (`data_offset() * 4`), not clipped to the buffer.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.data_offset()) * 4
    }

    /// The 4 reserved bits after the data offset (bit 0 is the historic NS/AE bit).
    #[inline]
    pub fn reserved(&self) -> u8 {
        u8_at(self.buf.as_ref(), 12) & 0x0F
    }

    /// The flag byte (byte 13: CWR ECE URG ACK PSH RST SYN FIN, see [`flags`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        u8_at(self.buf.as_ref(), 13)
    }

    /// The receive window (`tcp.Window`).
    #[inline]
    pub fn window(&self) -> u16 {
        u16_at(self.buf.as_ref(), 14)
    }

    /// The checksum as stored (`tcp.Checksum`).
    #[inline]
    pub fn checksum(&self) -> u16 {
        u16_at(self.buf.as_ref(), 16)
    }

    /// The urgent pointer (`tcp.UrgPtr`).
    #[inline]
    pub fn urgent_ptr(&self) -> u16 {
        u16_at(self.buf.as_ref(), 18)
    }

    /// The option bytes (20 to `header_len()`, clipped to the buffer; empty if the data
    /// offset is below 5).
    #[inline]
    pub fn options(&self) -> &[u8] {
        let b = self.buf.as_ref();
        sub(b, Self::MIN_LEN, self.header_len().min(b.len()))
    }

    /// Iterates over the options.
    #[inline]
    pub fn options_iter(&self) -> TcpOptions<'_> {
        TcpOptions::new(self.options())
    }

    /// The bytes after the header (`header_len()` clipped to the buffer).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let b = self.buf.as_ref();
        sub(
            b,
            self.header_len().max(Self::MIN_LEN).min(b.len()),
            b.len(),
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpHeader<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 0, v);
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 2, v);
    }

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, v: u32) {
        set_u32(self.buf.as_mut(), 4, v);
    }

    /// Sets the acknowledgement number.
    #[inline]
    pub fn set_ack_number(&mut self, v: u32) {
        set_u32(self.buf.as_mut(), 8, v);
    }

    /// Sets the data offset in 32-bit words (only the low 4 bits are used).
    #[inline]
    pub fn set_data_offset(&mut self, words: u8) {
        let b = self.buf.as_mut();
        let x = u8_at(b, 12);
        set_u8(b, 12, (x & 0x0F) | (words << 4));
    }

    /// Sets the 4 reserved bits.
    #[inline]
    pub fn set_reserved(&mut self, v: u8) {
        let b = self.buf.as_mut();
        let x = u8_at(b, 12);
        set_u8(b, 12, (x & 0xF0) | (v & 0x0F));
    }

    /// Sets the whole flag byte.
    #[inline]
    pub fn set_flags(&mut self, v: u8) {
        set_u8(self.buf.as_mut(), 13, v);
    }

    /// Sets the window.
    #[inline]
    pub fn set_window(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 14, v);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 16, v);
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent_ptr(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 18, v);
    }

    /// The option bytes, mutable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        let b = self.buf.as_mut();
        let end = hl.min(b.len());
        sub_mut(b, Self::MIN_LEN, end)
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len().max(Self::MIN_LEN);
        let b = self.buf.as_mut();
        let len = b.len();
        sub_mut(b, hl.min(len), len)
    }
}

impl<T: AsRef<[u8]>> fmt::Debug for TcpHeader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpHeader")
            .field("src_port", &self.src_port())
            .field("dst_port", &self.dst_port())
            .field("seq", &self.seq_number())
            .field("ack", &self.ack_number())
            .field("data_offset", &self.data_offset())
            .field("flags", &format_args!("{:#04x}", self.flags()))
            .field("window", &self.window())
            .field("checksum", &format_args!("{:#06x}", self.checksum()))
            .field("urgent_ptr", &self.urgent_ptr())
            .finish()
    }
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// End of option list (kind 0); the iterator stops after it.
    EndOfList,
    /// No-operation padding (kind 1).
    NoOp,
    /// Maximum segment size (kind 2).
    MaxSegmentSize(u16),
    /// Window scale shift (kind 3).
    WindowScale(u8),
    /// SACK permitted (kind 4).
    SackPermitted,
    /// SACK blocks (kind 5): the raw data, pairs of 32-bit left/right edges; see
    /// [`TcpOption::sack_blocks`].
    Sack(&'a [u8]),
    /// Timestamps (kind 8).
    Timestamps {
        /// The sender's timestamp value.
        tsval: u32,
        /// The echoed timestamp.
        tsecr: u32,
    },
    /// Any other option, or a known kind with an unexpected length.
    Unknown {
        /// The option kind.
        kind: u8,
        /// The option data (after kind and length).
        data: &'a [u8],
    },
    /// The rest of the option bytes when an option's length byte is missing, below 2 or
    /// beyond the end of the options; the iterator stops after it.
    Malformed(&'a [u8]),
}

impl<'a> TcpOption<'a> {
    /// The SACK blocks `(left, right)` of a [`TcpOption::Sack`] option (empty otherwise).
    pub fn sack_blocks(&self) -> impl Iterator<Item = (u32, u32)> + 'a {
        let data: &'a [u8] = match *self {
            TcpOption::Sack(d) => d,
            _ => &[],
        };
        data.chunks_exact(8).map(|c| (u32_at(c, 0), u32_at(c, 4)))
    }
}

/// Iterator over TCP options (see [`TcpHeader::options_iter`]).
#[derive(Debug, Clone)]
pub struct TcpOptions<'a> {
    rest: &'a [u8],
}

impl<'a> TcpOptions<'a> {
    /// Iterates over the option bytes `options`.
    #[inline]
    pub fn new(options: &'a [u8]) -> Self {
        TcpOptions { rest: options }
    }
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = TcpOption<'a>;

    fn next(&mut self) -> Option<TcpOption<'a>> {
        let r = self.rest;
        let (&kind, after) = r.split_first()?;
        match kind {
            0 => {
                self.rest = &[];
                return Some(TcpOption::EndOfList);
            }
            1 => {
                self.rest = after;
                return Some(TcpOption::NoOp);
            }
            _ => {}
        }
        let len = usize::from(u8_at(r, 1));
        let Some(data) = (len >= 2 && len <= r.len()).then(|| sub(r, 2, len)) else {
            self.rest = &[];
            return Some(TcpOption::Malformed(r));
        };
        self.rest = sub(r, len, r.len());
        Some(match (kind, data.len()) {
            (2, 2) => TcpOption::MaxSegmentSize(u16_at(data, 0)),
            (3, 1) => TcpOption::WindowScale(u8_at(data, 0)),
            (4, 0) => TcpOption::SackPermitted,
            (5, n) if n % 8 == 0 => TcpOption::Sack(data),
            (8, 8) => TcpOption::Timestamps {
                tsval: u32_at(data, 0),
                tsecr: u32_at(data, 4),
            },
            _ => TcpOption::Unknown { kind, data },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::tests::hex;

    // The TCP part of ipv6_tcp_syn.
    const SYN: &str =
        "c37e0017e1d7c8aa00000000a002aaaac35e00000204ffc40402080affff91860000000001030307";

    #[test]
    fn deconstruct() {
        let b = hex(SYN);
        let t = TcpHeader::new(&b[..]).unwrap();
        assert_eq!(t.src_port(), 0xc37e);
        assert_eq!(t.dst_port(), 23);
        assert_eq!(t.seq_number(), 0xe1d7c8aa);
        assert_eq!(t.ack_number(), 0);
        assert_eq!(t.data_offset(), 10);
        assert_eq!(t.header_len(), 40);
        assert_eq!(t.reserved(), 0);
        assert_eq!(t.flags(), flags::SYN);
        assert!(t.syn() && !t.ack() && !t.fin() && !t.rst() && !t.psh() && !t.urg());
        assert!(!t.ece() && !t.cwr());
        assert_eq!(t.window(), 0xaaaa);
        assert_eq!(t.checksum(), 0xc35e);
        assert_eq!(t.urgent_ptr(), 0);
        assert_eq!(t.options().len(), 20);
        assert!(t.payload().is_empty());
        let opts: Vec<_> = t.options_iter().collect();
        assert_eq!(
            opts,
            vec![
                TcpOption::MaxSegmentSize(0xffc4),
                TcpOption::SackPermitted,
                TcpOption::Timestamps {
                    tsval: 0xffff9186,
                    tsecr: 0
                },
                TcpOption::NoOp,
                TcpOption::WindowScale(7),
            ]
        );
        assert!(format!("{t:?}").contains("dst_port: 23"));
    }

    #[test]
    fn construct() {
        let mut b = [0u8; 28];
        let mut t = TcpHeader::new(&mut b[..]).unwrap();
        t.set_src_port(1);
        t.set_dst_port(2);
        t.set_seq_number(3);
        t.set_ack_number(4);
        t.set_data_offset(6);
        t.set_reserved(0x1F);
        t.set_flags(0);
        t.set_fin(true);
        t.set_syn(true);
        t.set_rst(true);
        t.set_psh(true);
        t.set_ack(true);
        t.set_urg(true);
        t.set_ece(true);
        t.set_cwr(true);
        t.set_rst(false);
        t.set_window(0x1234);
        t.set_checksum(0xabcd);
        t.set_urgent_ptr(9);
        t.options_mut().copy_from_slice(&[1, 1, 0, 0]);
        t.payload_mut().copy_from_slice(b"data");
        assert_eq!(
            b,
            [
                0, 1, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0x6F, 0xFB, 0x12, 0x34, 0xab, 0xcd, 0, 9, 1, 1,
                0, 0, b'd', b'a', b't', b'a'
            ]
        );
        let t = TcpHeader::new(&b[..]).unwrap();
        assert_eq!(t.payload(), b"data");
        assert_eq!(
            t.options_iter().collect::<Vec<_>>(),
            vec![TcpOption::NoOp, TcpOption::NoOp, TcpOption::EndOfList]
        );
    }

    #[test]
    fn odd_options() {
        let sack = [5u8, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4];
        let o: Vec<_> = TcpOptions::new(&sack).collect();
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].sack_blocks().collect::<Vec<_>>(), vec![(1, 2), (3, 4)]);
        assert_eq!(TcpOption::NoOp.sack_blocks().count(), 0);
        // Wrong length for a known kind, unknown kind, then a truncated option.
        let raw = [2u8, 3, 9, 30, 4, 1, 2, 3, 8, 10, 0];
        let o: Vec<_> = TcpOptions::new(&raw).collect();
        assert_eq!(
            o,
            vec![
                TcpOption::Unknown {
                    kind: 2,
                    data: &[9]
                },
                TcpOption::Unknown {
                    kind: 30,
                    data: &[1, 2]
                },
                TcpOption::Malformed(&[3, 8, 10, 0]),
            ]
        );
        // Length below 2 and a missing length byte.
        assert_eq!(
            TcpOptions::new(&[7, 1, 0]).collect::<Vec<_>>(),
            vec![TcpOption::Malformed(&[7, 1, 0])]
        );
        assert_eq!(
            TcpOptions::new(&[1, 7]).collect::<Vec<_>>(),
            vec![TcpOption::NoOp, TcpOption::Malformed(&[7])]
        );
        assert_eq!(TcpOptions::new(&[]).count(), 0);
    }

    #[test]
    fn clipped_and_invalid_offsets() {
        let mut b = hex(SYN);
        b[12] = 0xF0; // 60-byte header in a 40-byte buffer
        let t = TcpHeader::new(&b[..]).unwrap();
        assert_eq!(t.options().len(), 20);
        assert!(t.payload().is_empty());
        b[12] = 0x40; // data offset 4
        let t = TcpHeader::new(&b[..]).unwrap();
        assert!(t.options().is_empty());
        assert_eq!(t.payload().len(), 20);
        assert!(TcpHeader::new(&b[..19]).is_none());
    }
}

//! A minimal pcapng writer (Section Header, one Interface Description with raw-IP link type
//! and nanosecond timestamps, Enhanced Packet Blocks with the direction flag), readable by
//! Wireshark and tshark.

use std::io::{self, Write};

const LINKTYPE_RAW: u16 = 101;

/// Writes packets to a pcapng stream.
pub struct PcapngWriter<W: Write> {
    out: W,
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

impl<W: Write> PcapngWriter<W> {
    /// Start a capture file: writes the section header and the interface description.
    pub fn new(mut out: W, application: &str) -> io::Result<Self> {
        // Section Header Block.
        let mut opts = Vec::new();
        push_option(&mut opts, 4, application.as_bytes()); // shb_userappl
        push_option(&mut opts, 0, &[]); // opt_endofopt
        let len = 28 + opts.len() as u32;
        let mut b = Vec::with_capacity(len as usize);
        b.extend_from_slice(&0x0A0D_0D0Au32.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes()); // byte-order magic
        b.extend_from_slice(&1u16.to_le_bytes()); // major
        b.extend_from_slice(&0u16.to_le_bytes()); // minor
        b.extend_from_slice(&(-1i64).to_le_bytes()); // section length unknown
        b.extend_from_slice(&opts);
        b.extend_from_slice(&len.to_le_bytes());
        out.write_all(&b)?;

        // Interface Description Block: raw IP, snaplen 0 (unlimited), if_tsresol = 9 (ns).
        let mut opts = Vec::new();
        push_option(&mut opts, 2, b"lindivert"); // if_name
        push_option(&mut opts, 9, &[9]); // if_tsresol: 10^-9
        push_option(&mut opts, 0, &[]);
        let len = 20 + opts.len() as u32;
        let mut b = Vec::with_capacity(len as usize);
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&opts);
        b.extend_from_slice(&len.to_le_bytes());
        out.write_all(&b)?;
        Ok(PcapngWriter { out })
    }

    /// Append one IP packet captured at `timestamp_ns` (since the Unix epoch).
    /// `outbound` sets the EPB direction flag (inbound = 1, outbound = 2).
    pub fn write_packet(
        &mut self,
        timestamp_ns: u64,
        packet: &[u8],
        outbound: bool,
    ) -> io::Result<()> {
        let mut opts = Vec::new();
        let flags: u32 = if outbound { 2 } else { 1 };
        push_option(&mut opts, 2, &flags.to_le_bytes()); // epb_flags
        push_option(&mut opts, 0, &[]);
        let data_len = packet.len() + pad4(packet.len());
        let len = (32 + data_len + opts.len()) as u32;
        let mut b = Vec::with_capacity(len as usize);
        b.extend_from_slice(&6u32.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes()); // interface 0
        b.extend_from_slice(&((timestamp_ns >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(timestamp_ns as u32).to_le_bytes());
        b.extend_from_slice(&(packet.len() as u32).to_le_bytes()); // captured
        b.extend_from_slice(&(packet.len() as u32).to_le_bytes()); // original
        b.extend_from_slice(packet);
        b.resize(b.len() + pad4(packet.len()), 0);
        b.extend_from_slice(&opts);
        b.extend_from_slice(&len.to_le_bytes());
        self.out.write_all(&b)
    }

    /// Flush the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn push_option(v: &mut Vec<u8>, code: u16, value: &[u8]) {
    v.extend_from_slice(&code.to_le_bytes());
    v.extend_from_slice(&(value.len() as u16).to_le_bytes());
    v.extend_from_slice(value);
    v.resize(v.len() + pad4(value.len()), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    #[test]
    fn blocks_are_well_formed() {
        let mut buf = Vec::new();
        {
            let mut w = PcapngWriter::new(&mut buf, "test").unwrap();
            w.write_packet(1_700_000_000_123_456_789, &[0x45, 0, 0, 21, 1], true)
                .unwrap();
            w.write_packet(5, &[0x60; 40], false).unwrap();
        }
        // Walk the blocks: each starts and ends with the same total length, a multiple of 4.
        let mut off = 0;
        let mut types = Vec::new();
        while off < buf.len() {
            let ty = u32_at(&buf, off);
            let len = u32_at(&buf, off + 4) as usize;
            assert_eq!(len % 4, 0);
            assert_eq!(u32_at(&buf, off + len - 4) as usize, len);
            types.push(ty);
            if ty == 6 {
                let cap = u32_at(&buf, off + 20) as usize;
                assert!(cap == 5 || cap == 40);
                if cap == 5 {
                    let ts =
                        ((u32_at(&buf, off + 12) as u64) << 32) | u32_at(&buf, off + 16) as u64;
                    assert_eq!(ts, 1_700_000_000_123_456_789);
                    assert_eq!(&buf[off + 28..off + 33], &[0x45, 0, 0, 21, 1]);
                }
            }
            off += len;
        }
        assert_eq!(off, buf.len());
        assert_eq!(types, vec![0x0A0D0D0A, 1, 6, 6]);
    }
}

//! Netlink message and attribute building and parsing (nlmsghdr, nfgenmsg, nested
//! attributes, big-endian helpers, 4-byte alignment). Pure code, no system calls.

/// `NLMSG_ERROR`.
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`.
pub const NLMSG_DONE: u16 = 3;
/// `NLM_F_REQUEST`.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_MULTI`.
pub const NLM_F_MULTI: u16 = 0x2;
/// `NLM_F_ACK`.
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP` (ROOT|MATCH).
pub const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_CREATE`.
pub const NLM_F_CREATE: u16 = 0x400;
/// `NLM_F_EXCL`.
pub const NLM_F_EXCL: u16 = 0x200;
/// `NLM_F_APPEND`.
pub const NLM_F_APPEND: u16 = 0x800;
/// `NLA_F_NESTED`.
pub const NLA_F_NESTED: u16 = 0x8000;
/// `NLA_F_NET_BYTEORDER`.
pub const NLA_F_NET_BYTEORDER: u16 = 0x4000;
/// `NLA_TYPE_MASK`.
pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

/// Size of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Size of `struct nfgenmsg`.
pub const NFGENMSG_LEN: usize = 4;

/// Round up to the netlink alignment of 4 bytes.
pub const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Builds one or more netlink messages into one buffer.
#[derive(Debug, Default, Clone)]
pub struct MsgBuilder {
    buf: Vec<u8>,
    msg_start: Option<usize>,
    nests: Vec<usize>,
}

impl MsgBuilder {
    /// An empty builder.
    pub fn new() -> MsgBuilder {
        MsgBuilder::default()
    }

    /// An empty builder with room for `cap` bytes.
    pub fn with_capacity(cap: usize) -> MsgBuilder {
        MsgBuilder {
            buf: Vec::with_capacity(cap),
            ..Default::default()
        }
    }

    /// Start a message: nlmsghdr with `ty`, `flags`, `seq` (pid 0).
    pub fn begin(&mut self, ty: u16, flags: u16, seq: u32) -> &mut Self {
        assert!(self.msg_start.is_none(), "message already open");
        let start = self.buf.len();
        self.msg_start = Some(start);
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self
    }

    /// Append a `struct nfgenmsg` (family, version 0, big-endian resource id).
    pub fn nfgen(&mut self, family: u8, res_id: u16) -> &mut Self {
        self.buf.push(family);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        self
    }

    /// Finish the open message (writes its length).
    pub fn end(&mut self) -> &mut Self {
        assert!(self.nests.is_empty(), "unclosed nested attribute");
        let start = self.msg_start.take().expect("no open message");
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn pad(&mut self) {
        let n = align4(self.buf.len()) - self.buf.len();
        self.buf.extend(std::iter::repeat_n(0u8, n));
    }

    /// An attribute with raw data.
    pub fn put(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    /// An attribute whose data are a NUL-terminated string.
    pub fn put_str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.put(ty, &v)
    }

    /// A `u8` attribute.
    pub fn put_u8(&mut self, ty: u16, v: u8) -> &mut Self {
        self.put(ty, &[v])
    }

    /// A big-endian `u16` attribute.
    pub fn put_be16(&mut self, ty: u16, v: u16) -> &mut Self {
        self.put(ty, &v.to_be_bytes())
    }

    /// A big-endian `u32` attribute.
    pub fn put_be32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.put(ty, &v.to_be_bytes())
    }

    /// A big-endian `u64` attribute.
    pub fn put_be64(&mut self, ty: u16, v: u64) -> &mut Self {
        self.put(ty, &v.to_be_bytes())
    }

    /// A host-order `u32` attribute.
    pub fn put_u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.put(ty, &v.to_ne_bytes())
    }

    /// Open a nested attribute (`NLA_F_NESTED` is set); close it with [`MsgBuilder::nest_end`].
    pub fn nest_begin(&mut self, ty: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        self
    }

    /// Close the innermost nested attribute.
    pub fn nest_end(&mut self) -> &mut Self {
        let start = self.nests.pop().expect("no open nest");
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    /// The bytes built so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was built.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Forget everything (keeps the allocation).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.msg_start = None;
        self.nests.clear();
    }
}

/// One received netlink message.
#[derive(Debug, Clone, Copy)]
pub struct NlMsg<'a> {
    /// `nlmsg_type`.
    pub ty: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// `nlmsg_pid`.
    pub pid: u32,
    /// Everything after the nlmsghdr.
    pub payload: &'a [u8],
}

impl<'a> NlMsg<'a> {
    /// For `NLMSG_ERROR`: the (positive) errno, 0 for an ACK, and the echoed request's seq.
    pub fn error(&self) -> Option<(i32, u32)> {
        if self.ty != NLMSG_ERROR || self.payload.len() < 4 {
            return None;
        }
        let err = i32::from_ne_bytes(self.payload[0..4].try_into().ok()?);
        let seq = if self.payload.len() >= 4 + 12 {
            u32::from_ne_bytes(self.payload[12..16].try_into().ok()?)
        } else {
            self.seq
        };
        Some((-err, seq))
    }

    /// The attributes after an nfgenmsg header.
    pub fn nf_attrs(&self) -> Attrs<'a> {
        Attrs::new(self.payload.get(NFGENMSG_LEN..).unwrap_or(&[]))
    }

    /// The nfgenmsg resource id (big-endian on the wire).
    pub fn nf_res_id(&self) -> u16 {
        match self.payload.get(2..4) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]),
            None => 0,
        }
    }
}

/// Iterates over the messages of a datagram. Stops at the first malformed header.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = NlMsg<'_>> {
    let mut off = 0usize;
    std::iter::from_fn(move || {
        if off + NLMSG_HDRLEN > buf.len() {
            return None;
        }
        let h = &buf[off..];
        let len = u32::from_ne_bytes(h[0..4].try_into().unwrap()) as usize;
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            off = buf.len();
            return None;
        }
        let m = NlMsg {
            ty: u16::from_ne_bytes(h[4..6].try_into().unwrap()),
            flags: u16::from_ne_bytes(h[6..8].try_into().unwrap()),
            seq: u32::from_ne_bytes(h[8..12].try_into().unwrap()),
            pid: u32::from_ne_bytes(h[12..16].try_into().unwrap()),
            payload: &h[NLMSG_HDRLEN..len],
        };
        off += align4(len);
        Some(m)
    })
}

/// Iterator over attributes: yields `(type without flags, data)`.
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    buf: &'a [u8],
}

impl<'a> Attrs<'a> {
    /// Attributes in `buf`.
    pub fn new(buf: &'a [u8]) -> Attrs<'a> {
        Attrs { buf }
    }

    /// The first attribute of type `ty`.
    pub fn get(&self, ty: u16) -> Option<&'a [u8]> {
        self.clone()
            .find_map(|(t, d)| if t == ty { Some(d) } else { None })
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([self.buf[0], self.buf[1]]) as usize;
        let ty = u16::from_ne_bytes([self.buf[2], self.buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > self.buf.len() {
            self.buf = &[];
            return None;
        }
        let data = &self.buf[4..len];
        self.buf = &self.buf[align4(len).min(self.buf.len())..];
        Some((ty, data))
    }
}

/// Big-endian u16 from the start of `d`.
pub fn be16(d: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(d.get(0..2)?.try_into().ok()?))
}

/// Big-endian u32 from the start of `d`.
pub fn be32(d: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(d.get(0..4)?.try_into().ok()?))
}

/// Big-endian u64 from the start of `d`.
pub fn be64(d: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(d.get(0..8)?.try_into().ok()?))
}

/// A NUL-terminated string attribute.
pub fn cstr(d: &[u8]) -> &str {
    let end = d.iter().position(|&b| b == 0).unwrap_or(d.len());
    std::str::from_utf8(&d[..end]).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_parse_round_trip() {
        let mut b = MsgBuilder::new();
        b.begin(0x0a03, NLM_F_REQUEST | NLM_F_ACK, 7).nfgen(1, 0);
        b.put_str(1, "tbl").put_be32(2, 0x0fff_cfc7);
        b.nest_begin(4).put_be32(1, 3).put_u8(9, 5).nest_end();
        b.end();
        b.begin(0x10, NLM_F_REQUEST, 8).nfgen(0, 10).end();
        let bytes = b.as_bytes().to_vec();
        assert_eq!(bytes.len() % 4, 0);
        let msgs: Vec<_> = messages(&bytes).collect();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].ty, 0x0a03);
        assert_eq!(msgs[0].seq, 7);
        assert_eq!(msgs[1].nf_res_id(), 10);
        let attrs = msgs[0].nf_attrs();
        assert_eq!(cstr(attrs.get(1).unwrap()), "tbl");
        assert_eq!(be32(attrs.get(2).unwrap()), Some(0x0fff_cfc7));
        let nest = Attrs::new(attrs.get(4).unwrap());
        assert_eq!(be32(nest.get(1).unwrap()), Some(3));
        assert_eq!(nest.get(9).unwrap(), &[5]);
        // raw nested flag present on the wire
        let raw_ty = u16::from_ne_bytes([bytes[16 + 4 + 8 + 8 + 2], bytes[16 + 4 + 8 + 8 + 3]]);
        assert_eq!(raw_ty, 4 | NLA_F_NESTED);
    }

    #[test]
    fn parser_survives_garbage() {
        let junk = [0xffu8; 40];
        assert_eq!(messages(&junk).count(), 0);
        assert_eq!(Attrs::new(&junk).count(), 0);
        assert_eq!(Attrs::new(&[8, 0, 1, 0]).count(), 0);
    }
}

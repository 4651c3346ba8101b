//! nfnetlink_queue: bind a queue, configure it, receive packets in batches and send verdicts
//! (many per `sendmsg`).

use crate::sys::attr::{be32, messages, MsgBuilder, NlMsg, NLM_F_ACK, NLM_F_REQUEST};
use crate::sys::netlink::{NetlinkSocket, NETLINK_NETFILTER};
use crate::sys::nfnl::{msg_type, request, NlError, SUBSYS_QUEUE};
use std::io;

const NFQNL_MSG_PACKET: u8 = 0;
const NFQNL_MSG_VERDICT: u8 = 1;
const NFQNL_MSG_CONFIG: u8 = 2;
const NFQNL_MSG_VERDICT_BATCH: u8 = 3;

const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_MARK: u16 = 3;
const NFQA_TIMESTAMP: u16 = 4;
const NFQA_IFINDEX_INDEV: u16 = 5;
const NFQA_IFINDEX_OUTDEV: u16 = 6;
const NFQA_PAYLOAD: u16 = 10;
const NFQA_SKB_INFO: u16 = 14;

const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;

const CMD_BIND: u8 = 1;
const CMD_UNBIND: u8 = 2;
const COPY_PACKET: u8 = 2;

/// `NFQA_CFG_F_FAIL_OPEN`.
pub const CFG_F_FAIL_OPEN: u32 = 1;
/// `NFQA_CFG_F_GSO`.
pub const CFG_F_GSO: u32 = 4;

/// `NFQA_SKB_CSUMNOTREADY`: the L4 checksum is partial (offload).
pub const SKB_CSUMNOTREADY: u32 = 1;
/// `NFQA_SKB_GSO`: a GSO super-packet.
pub const SKB_GSO: u32 = 2;
/// `NFQA_SKB_CSUM_NOTVERIFIED`.
pub const SKB_CSUM_NOTVERIFIED: u32 = 4;

/// `NF_DROP`.
pub const NF_DROP: u32 = 0;
/// `NF_ACCEPT`.
pub const NF_ACCEPT: u32 = 1;

/// Largest netlink datagram a queued packet can produce (64 KB payload + attributes).
pub const RECV_BUF_LEN: usize = 65536 + 4096;

/// Queue configuration.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// `NFQA_CFG_QUEUE_MAXLEN`.
    pub maxlen: u32,
    /// `NFQA_CFG_F_GSO`.
    pub gso: bool,
    /// `NFQA_CFG_F_FAIL_OPEN`.
    pub fail_open: bool,
    /// Receive buffer size (`SO_RCVBUFFORCE`).
    pub rcvbuf: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            maxlen: 4096,
            gso: true,
            fail_open: false,
            rcvbuf: 32 << 20,
        }
    }
}

/// A bound queue.
#[derive(Debug)]
pub struct Queue {
    sock: NetlinkSocket,
    num: u16,
}

fn config_msg(num: u16, seq: u32, ack: bool, f: impl FnOnce(&mut MsgBuilder)) -> MsgBuilder {
    let mut b = MsgBuilder::with_capacity(64);
    b.begin(
        msg_type(SUBSYS_QUEUE, NFQNL_MSG_CONFIG),
        NLM_F_REQUEST | if ack { NLM_F_ACK } else { 0 },
        seq,
    )
    .nfgen(0, num);
    f(&mut b);
    b.end();
    b
}

fn cmd(b: &mut MsgBuilder, c: u8) {
    b.put(NFQA_CFG_CMD, &[c, 0, 0, 0]);
}

impl Queue {
    /// Open a socket and bind the first free queue number among `candidates`, then configure
    /// it. `EBUSY`/`EPERM` on a number (bound by another socket) moves on to the next one.
    pub fn bind_any(
        candidates: impl IntoIterator<Item = u16>,
        cfg: &QueueConfig,
    ) -> Result<Queue, NlError> {
        let io_err = |what: &str, e: io::Error| NlError {
            errno: e.raw_os_error().unwrap_or(libc::EIO),
            what: what.to_string(),
        };
        let sock =
            NetlinkSocket::open(NETLINK_NETFILTER).map_err(|e| io_err("open nfqueue socket", e))?;
        let _ = sock.set_rcvbuf(cfg.rcvbuf);
        let _ = sock.set_sndbuf(4 << 20);
        let _ = sock.set_no_enobufs(true);
        let mut last = NlError {
            errno: libc::EBUSY,
            what: "binding an nfqueue number".into(),
        };
        for (seq, num) in (1u32..).step_by(4).zip(candidates) {
            let b = config_msg(num, seq, true, |b| cmd(b, CMD_BIND));
            match request(&sock, b.as_bytes(), seq, &format!("binding nfqueue {num}")) {
                Ok(()) => {
                    let q = Queue { sock, num };
                    q.configure(cfg, seq + 1)?;
                    return Ok(q);
                }
                Err(e) if e.errno == libc::EBUSY || e.errno == libc::EPERM => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Bind exactly queue `num` (see [`Queue::bind_any`]).
    pub fn bind_exact(num: u16, cfg: &QueueConfig) -> Result<Queue, NlError> {
        Queue::bind_any(std::iter::once(num), cfg)
    }

    fn configure(&self, cfg: &QueueConfig, seq: u32) -> Result<(), NlError> {
        let b = config_msg(self.num, seq, true, |b| {
            let mut p = [0u8; 5];
            p[0..4].copy_from_slice(&0xffffu32.to_be_bytes());
            p[4] = COPY_PACKET;
            b.put(NFQA_CFG_PARAMS, &p);
            b.put_be32(NFQA_CFG_QUEUE_MAXLEN, cfg.maxlen);
        });
        request(
            &self.sock,
            b.as_bytes(),
            seq,
            "configuring nfqueue copy mode",
        )?;
        let mut flags = 0;
        if cfg.gso {
            flags |= CFG_F_GSO;
        }
        if cfg.fail_open {
            flags |= CFG_F_FAIL_OPEN;
        }
        let b = config_msg(self.num, seq + 1, true, |b| {
            b.put_be32(NFQA_CFG_MASK, CFG_F_GSO | CFG_F_FAIL_OPEN);
            b.put_be32(NFQA_CFG_FLAGS, flags);
        });
        request(
            &self.sock,
            b.as_bytes(),
            seq + 1,
            "configuring nfqueue flags",
        )
    }

    /// The queue number.
    pub fn num(&self) -> u16 {
        self.num
    }

    /// The socket.
    pub fn socket(&self) -> &NetlinkSocket {
        &self.sock
    }

    /// Change the maximum queue length (no ack is awaited: an error arrives as a message).
    pub fn set_maxlen(&self, maxlen: u32) -> io::Result<()> {
        let b = config_msg(self.num, 0, false, |b| {
            b.put_be32(NFQA_CFG_QUEUE_MAXLEN, maxlen);
        });
        self.sock.send(b.as_bytes()).map(|_| ())
    }

    /// Unbind (no ack awaited). Packets still queued are dropped by the kernel.
    pub fn unbind(&self) -> io::Result<()> {
        let b = config_msg(self.num, 0, false, |b| cmd(b, CMD_UNBIND));
        self.sock.send(b.as_bytes()).map(|_| ())
    }
}

/// A packet message from the queue.
#[derive(Debug, Clone, Copy)]
pub struct QueuedPacket<'a> {
    /// The packet id (for the verdict).
    pub id: u32,
    /// The link protocol (0x0800 / 0x86dd).
    pub hw_protocol: u16,
    /// The netfilter hook number.
    pub hook: u8,
    /// skb->mark.
    pub mark: u32,
    /// Input interface index (0 if none).
    pub indev: u32,
    /// Output interface index (0 if none).
    pub outdev: u32,
    /// `NFQA_SKB_INFO` bits.
    pub skb_info: u32,
    /// Kernel timestamp (realtime, ns), when present.
    pub timestamp: Option<i64>,
    /// The IP packet.
    pub payload: &'a [u8],
}

/// What one received message was.
#[derive(Debug)]
pub enum QueueMsg<'a> {
    /// A packet.
    Packet(QueuedPacket<'a>),
    /// An error reply (positive errno) to one of our requests (e.g. a bad verdict).
    Error(i32),
    /// Something else (ack, unknown).
    Other,
}

/// Parse one message.
pub fn parse<'a>(m: &NlMsg<'a>) -> QueueMsg<'a> {
    if let Some((errno, _)) = m.error() {
        return if errno != 0 {
            QueueMsg::Error(errno)
        } else {
            QueueMsg::Other
        };
    }
    if m.ty != msg_type(SUBSYS_QUEUE, NFQNL_MSG_PACKET) {
        return QueueMsg::Other;
    }
    let mut p = QueuedPacket {
        id: 0,
        hw_protocol: 0,
        hook: 0,
        mark: 0,
        indev: 0,
        outdev: 0,
        skb_info: 0,
        timestamp: None,
        payload: &[],
    };
    let mut have_hdr = false;
    for (ty, d) in m.nf_attrs() {
        match ty {
            NFQA_PACKET_HDR if d.len() >= 7 => {
                p.id = be32(d).unwrap_or(0);
                p.hw_protocol = u16::from_be_bytes([d[4], d[5]]);
                p.hook = d[6];
                have_hdr = true;
            }
            NFQA_MARK => p.mark = be32(d).unwrap_or(0),
            NFQA_IFINDEX_INDEV => p.indev = be32(d).unwrap_or(0),
            NFQA_IFINDEX_OUTDEV => p.outdev = be32(d).unwrap_or(0),
            NFQA_SKB_INFO => p.skb_info = be32(d).unwrap_or(0),
            NFQA_TIMESTAMP if d.len() >= 16 => {
                let sec = u64::from_be_bytes(d[0..8].try_into().unwrap());
                let usec = u64::from_be_bytes(d[8..16].try_into().unwrap());
                p.timestamp = Some(sec as i64 * 1_000_000_000 + usec as i64 * 1000);
            }
            NFQA_PAYLOAD => p.payload = d,
            _ => {}
        }
    }
    if !have_hdr {
        return QueueMsg::Other;
    }
    QueueMsg::Packet(p)
}

/// Iterate the queue messages of one datagram.
pub fn parse_datagram(buf: &[u8]) -> impl Iterator<Item = NlMsg<'_>> {
    messages(buf)
}

/// Accumulates verdict messages to send in one `sendmsg`. Plain ACCEPTs added with
/// [`Verdicts::accept`] can go out as one `NFQNL_MSG_VERDICT_BATCH` (see
/// [`Verdicts::flush_batched`]).
#[derive(Debug, Default)]
pub struct Verdicts {
    buf: MsgBuilder,
    count: usize,
    accepts: Vec<u32>,
    accept_num: u16,
}

/// Whether packet id `a` comes before `b` (wrap-around aware, as the kernel compares).
pub fn id_before(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) > 0
}

impl Verdicts {
    /// Empty.
    pub fn new() -> Verdicts {
        Verdicts {
            buf: MsgBuilder::with_capacity(64 * 1024),
            count: 0,
            accepts: Vec::with_capacity(256),
            accept_num: 0,
        }
    }

    /// Add a verdict for packet `id` of queue `num`, optionally with a mark and a replacement
    /// payload (at most 65531 bytes).
    pub fn add(
        &mut self,
        num: u16,
        id: u32,
        verdict: u32,
        mark: Option<u32>,
        payload: Option<&[u8]>,
    ) {
        self.push(NFQNL_MSG_VERDICT, num, id, verdict, mark, payload);
        self.count += 1;
    }

    fn push(
        &mut self,
        ty: u8,
        num: u16,
        id: u32,
        verdict: u32,
        mark: Option<u32>,
        payload: Option<&[u8]>,
    ) {
        self.buf
            .begin(msg_type(SUBSYS_QUEUE, ty), NLM_F_REQUEST, 0)
            .nfgen(0, num);
        let mut h = [0u8; 8];
        h[0..4].copy_from_slice(&verdict.to_be_bytes());
        h[4..8].copy_from_slice(&id.to_be_bytes());
        self.buf.put(NFQA_VERDICT_HDR, &h);
        if let Some(m) = mark {
            self.buf.put_be32(NFQA_MARK, m);
        }
        if let Some(p) = payload {
            self.buf.put(NFQA_PAYLOAD, p);
        }
        self.buf.end();
    }

    /// A plain ACCEPT (no mark, no payload) for packet `id` of queue `num` (one queue per
    /// `Verdicts`): may be folded into a batch verdict by [`Verdicts::flush_batched`].
    pub fn accept(&mut self, num: u16, id: u32) {
        self.accept_num = num;
        self.accepts.push(id);
    }

    /// Number of verdicts waiting.
    pub fn len(&self) -> usize {
        self.count + self.accepts.len()
    }

    /// Bytes of verdict messages waiting (payloads included).
    pub fn bytes(&self) -> usize {
        self.buf.as_bytes().len()
    }

    /// Whether none wait.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Send all waiting verdicts in one `sendmsg` and clear (plain ACCEPTs one message
    /// each). Use [`Verdicts::flush_batched`] to fold them.
    pub fn flush(&mut self, sock: &NetlinkSocket) -> io::Result<()> {
        self.flush_with(sock, None, false)
    }

    /// Send all waiting verdicts in one `sendmsg` and clear. Individual
    /// verdicts go first; then the plain ACCEPTs of ids before `floor` (the oldest packet of
    /// the queue that stays queued; `None` = none stays) as ONE `NFQNL_MSG_VERDICT_BATCH`
    /// (the kernel accepts every queued packet up to the highest such id, which are exactly
    /// these once the individual verdicts are applied); plain ACCEPTs at or after `floor`
    /// one message each.
    pub fn flush_batched(&mut self, sock: &NetlinkSocket, floor: Option<u32>) -> io::Result<()> {
        self.flush_with(sock, floor, true)
    }

    fn flush_with(
        &mut self,
        sock: &NetlinkSocket,
        floor: Option<u32>,
        batch: bool,
    ) -> io::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let num = self.accept_num;
        let accepts = std::mem::take(&mut self.accepts);
        let mut max: Option<u32> = None;
        let mut batched = 0;
        for &id in &accepts {
            if batch && floor.is_none_or(|f| id_before(id, f)) {
                batched += 1;
                max = Some(match max {
                    Some(m) if id_before(id, m) => m,
                    _ => id,
                });
            } else {
                self.push(NFQNL_MSG_VERDICT, num, id, NF_ACCEPT, None, None);
            }
        }
        if let Some(m) = max {
            if batched == 1 {
                self.push(NFQNL_MSG_VERDICT, num, m, NF_ACCEPT, None, None);
            } else {
                self.push(NFQNL_MSG_VERDICT_BATCH, num, m, NF_ACCEPT, None, None);
            }
        }
        let r = sock.send(self.buf.as_bytes());
        self.buf.clear();
        self.count = 0;
        self.accepts = accepts;
        self.accepts.clear();
        r.map(|_| ())
    }
}

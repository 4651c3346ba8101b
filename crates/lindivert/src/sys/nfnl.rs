//! nfnetlink: subsystem ids, batches (`NFNL_MSG_BATCH_BEGIN/END`) with per-message ack
//! collection, and errno mapping.

use super::attr::{messages, MsgBuilder, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_REQUEST};
use super::netlink::NetlinkSocket;
use std::fmt;
use std::io;
use std::time::Duration;

/// `NFNL_SUBSYS_QUEUE`.
pub const SUBSYS_QUEUE: u8 = 3;
/// `NFNL_SUBSYS_NFTABLES`.
pub const SUBSYS_NFTABLES: u8 = 10;
/// `NFNL_MSG_BATCH_BEGIN`.
pub const MSG_BATCH_BEGIN: u16 = 16;
/// `NFNL_MSG_BATCH_END`.
pub const MSG_BATCH_END: u16 = 17;

/// The nlmsg type of message `msg` of subsystem `subsys`.
pub const fn msg_type(subsys: u8, msg: u8) -> u16 {
    ((subsys as u16) << 8) | msg as u16
}

/// A failed netlink request: which message (by its label) failed with which errno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NlError {
    /// The positive errno.
    pub errno: i32,
    /// A label of the failing request (e.g. `"NEWRULE queue"`).
    pub what: String,
}

impl NlError {
    /// The errno as an `io::Error`.
    pub fn io(&self) -> io::Error {
        io::Error::from_raw_os_error(self.errno)
    }
}

impl fmt::Display for NlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.what, self.io())
    }
}

impl std::error::Error for NlError {}

/// A batch of nfnetlink requests that all ask for an ack, sent in one datagram.
#[derive(Debug)]
pub struct Batch {
    buf: MsgBuilder,
    subsys: u8,
    next_seq: u32,
    labels: Vec<(u32, String)>,
    open: bool,
}

impl Batch {
    /// A batch for `subsys`; sequence numbers start at `first_seq`.
    pub fn new(subsys: u8, first_seq: u32) -> Batch {
        let mut buf = MsgBuilder::with_capacity(4096);
        buf.begin(MSG_BATCH_BEGIN, NLM_F_REQUEST, first_seq)
            .nfgen(0, subsys as u16)
            .end();
        Batch {
            buf,
            subsys,
            next_seq: first_seq.wrapping_add(1),
            labels: Vec::new(),
            open: false,
        }
    }

    /// Start message `msg` of the batch's subsystem, flags `NLM_F_REQUEST|NLM_F_ACK|extra`,
    /// nfgenmsg family `family`. Add attributes to the returned builder, then call
    /// [`Batch::end_msg`].
    pub fn msg(&mut self, msg: u8, extra_flags: u16, family: u8, label: &str) -> &mut MsgBuilder {
        assert!(!self.open);
        self.open = true;
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.labels.push((seq, label.to_string()));
        self.buf
            .begin(
                msg_type(self.subsys, msg),
                NLM_F_REQUEST | NLM_F_ACK | extra_flags,
                seq,
            )
            .nfgen(family, 0);
        &mut self.buf
    }

    /// Finish the message started with [`Batch::msg`].
    pub fn end_msg(&mut self) {
        assert!(self.open);
        self.open = false;
        self.buf.end();
    }

    /// Whether no message was added.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The next free sequence number after this batch.
    pub fn next_seq(&self) -> u32 {
        self.next_seq.wrapping_add(1)
    }

    /// Close the batch, send it and wait for one ack per message. Returns the first error.
    pub fn commit(mut self, sock: &NetlinkSocket) -> Result<(), NlError> {
        let end_seq = self.next_seq;
        self.buf
            .begin(MSG_BATCH_END, NLM_F_REQUEST, end_seq)
            .nfgen(0, self.subsys as u16)
            .end();
        sock.send(self.buf.as_bytes()).map_err(|e| NlError {
            errno: e.raw_os_error().unwrap_or(libc::EIO),
            what: "sending the nftables batch".into(),
        })?;
        let seqs: Vec<u32> = self.labels.iter().map(|(s, _)| *s).collect();
        let label = |seq: u32| {
            self.labels
                .iter()
                .find(|(s, _)| *s == seq)
                .map(|(_, l)| l.clone())
                .unwrap_or_else(|| format!("batch message seq {seq}"))
        };
        collect_acks(sock, &seqs, &label)
    }
}

/// Wait for the acks of `seqs` on `sock` (other messages are skipped). Returns the first
/// error reported, after all acks arrived or the first error (a failing batch is aborted by
/// the kernel, which then still acks the rest).
pub fn collect_acks(
    sock: &NetlinkSocket,
    seqs: &[u32],
    label: &dyn Fn(u32) -> String,
) -> Result<(), NlError> {
    let mut pending: Vec<u32> = seqs.to_vec();
    let mut first_err: Option<NlError> = None;
    let mut buf = vec![0u8; 64 * 1024];
    while !pending.is_empty() {
        match sock.wait_readable(Some(Duration::from_secs(5))) {
            Ok(true) => {}
            Ok(false) => {
                return Err(first_err.unwrap_or(NlError {
                    errno: libc::ETIMEDOUT,
                    what: format!("waiting for netlink acks of {}", label(pending[0])),
                }))
            }
            Err(e) => {
                return Err(NlError {
                    errno: e.raw_os_error().unwrap_or(libc::EIO),
                    what: "polling the netlink socket".into(),
                })
            }
        }
        let n = match sock.recv(&mut buf, true) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                return Err(NlError {
                    errno: e.raw_os_error().unwrap_or(libc::EIO),
                    what: "receiving netlink acks".into(),
                })
            }
        };
        for m in messages(&buf[..n]) {
            if m.ty == NLMSG_ERROR {
                if let Some((errno, seq)) = m.error() {
                    if let Some(i) = pending.iter().position(|&s| s == seq) {
                        pending.swap_remove(i);
                        if errno != 0 && first_err.is_none() {
                            first_err = Some(NlError {
                                errno,
                                what: label(seq),
                            });
                        }
                    }
                }
            } else if m.ty == NLMSG_DONE {
                continue;
            }
        }
        if first_err.is_some() {
            // The kernel aborts the whole batch on the first error; later acks may or may
            // not arrive. Drain briefly and report.
            while let Ok(true) = sock.wait_readable(Some(Duration::from_millis(1))) {
                if sock.recv(&mut buf, true).is_err() {
                    break;
                }
            }
            break;
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Send one request (already built with `NLM_F_ACK` and sequence `seq`) and wait for its ack.
pub fn request(sock: &NetlinkSocket, msg: &[u8], seq: u32, what: &str) -> Result<(), NlError> {
    sock.send(msg).map_err(|e| NlError {
        errno: e.raw_os_error().unwrap_or(libc::EIO),
        what: what.to_string(),
    })?;
    collect_acks(sock, &[seq], &|_| what.to_string())
}

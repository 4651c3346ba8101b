//! The divert handle: WinDivert's `WinDivertOpen/Recv/Send/Shutdown/Close/SetParam/GetParam`
//! for the NETWORK and NETWORK_FORWARD layers.
//!
//! Mechanism (see ARCHITECTURE.md §2): an nftables owner table with base chains on the hooks
//! the filter needs, at a chain priority derived from the WinDivert priority, queues packets
//! to an nfnetlink_queue bound by this handle. A received packet stays in the kernel queue
//! until [`Handle::send`] gives the verdict ACCEPT with the (possibly modified) bytes.
//!
//! In-kernel prefilter: every chain carries, in front of the NFQUEUE target, the native
//! `meta l4proto`/port matches every matching packet satisfies and the compat xtables `bpf`
//! match with the eBPF program `lindivert_core::filter::ebpf::prefilter_program` generates for
//! that hook, so packets that cannot match never leave the kernel (if the `bpf` match is
//! unavailable, the native matches alone). User space re-checks every packet exactly.
//!
//! Matching a sent packet to its queued original: every received packet gets a timestamp
//! that is unique per queue (monotonic nanoseconds, bumped if needed, whose low 6 bits name
//! the queue), so the address an application passes back to `send` (also through the C
//! ABI, which keeps the timestamp) finds the original directly. If the timestamp names no
//! queued packet, or the sent packet belongs to another flow (version, addresses, protocol,
//! ports), the flow identity decides: the queued packet of that flow whose original bytes are
//! equal, else the oldest of that flow. Unchanged bytes (compared with the original, which
//! stays in the receive buffer it arrived in until its verdict; a hash only once that buffer
//! had to be reused) give a plain ACCEPT (offload state kept), changed bytes an ACCEPT with
//! the new payload (checksums repaired where the address's checksum bits are 0). A send that matches no queued packet (new, duplicated, or with
//! rewritten addresses/ports) is injected as a new packet through a raw socket carrying the
//! handle's injection mark, which chains of this and higher priorities skip (at
//! NETWORK_FORWARD too: the new packet is routed like a locally generated one). A send with
//! `impostor` set decrements the TTL/hop limit first and fails with
//! [`Error::HopLimitExceeded`] if it would reach 0.
//!
//! Queues (WinDivert semantics): matching packets wait in the handle's receive queue, at
//! most QUEUE_LENGTH packets and QUEUE_SIZE bytes (each packet counted with
//! [`PACKET_OVERHEAD`] bytes of bookkeeping, like WinDivert's internal packet size); when
//! full, the *oldest* waiting packet is dropped (verdict DROP) and counted in
//! [`Stats::dropped`]. A diverted packet that is not sent within QUEUE_TIME of its capture
//! is dropped and counted in [`Stats::expired`] (a later send injects it as a new packet).
//!
//! Receive path: one `recvmmsg` reads up to 64 queue messages into pooled receive buffers;
//! the messages are parsed in place and each payload is copied once, straight into the
//! caller's buffer. Verdicts are gathered and sent in one `sendmsg` per round: those of a
//! `send`/`send_batch` are held back while the application still has received-but-not-yet-
//! delivered packets to work through (at most 64 verdicts, or 200 µs: an application that
//! takes longer per packet gets each verdict out at once), and
//! consecutive plain ACCEPTs go out as one `NFQNL_MSG_VERDICT_BATCH`.
//!
//! Zero copy: [`Handle::recv_with`] shows the waiting packets to a callback in place, in
//! the receive buffers they arrived in, and applies the [`Verdict`] it returns (no copy out,
//! no copy back, no comparison with the original). Busy-poll ([`OpenOptions::busy_poll`],
//! off by default): a receive that waits alone on an empty queue polls the socket for a
//! while before it sleeps, so a packet arriving meanwhile costs no wake-up.
//!
//! Queues: [`OpenOptions::queues`] spreads packets over several nfnetlink queues, by flow
//! (a symmetric hash: each connection in one queue, in order) or by CPU
//! ([`OpenOptions::spread`]); each has its own socket, buffers and lock, so one thread per
//! queue ([`Handle::queue`], [`Handle::split`]) shares nothing on the hot path.
//!
//! Every handle has a worker thread. While the application is busy in `recv`/`send` (it
//! called one within the last few milliseconds, or waits in `recv`) the worker stays asleep
//! (napping a few milliseconds at a time, or, while the application waits in `recv` on
//! every queue and nothing arrives, until a `recv` returns: an idle handle wakes it about
//! twice a second, not 200 times) and the calling thread reads the queue socket itself
//! (no hand-off on the fast path); when the application is idle, the worker reads the
//! socket: it accepts non-matching packets at
//! once (those a coarse prefilter let through), buffers matching ones (and accepts SNIFF
//! copies / drops for DROP handles), enforces the queue limits and QUEUE_TIME. So traffic
//! that does not match never waits for the application.
//!
//! FRAGMENTS: at NF_INET_LOCAL_IN, IPv4 is always reassembled by the stack before the hook
//! (`ip_local_deliver`), and IPv6 when `nf_defrag_ipv6` is active in the namespace (it is
//! loaded with conntrack); otherwise IPv6 fragments are seen one by one. lindivert accepts
//! the flag and reports what the hook sees; outbound and forwarded packets are always seen
//! as the stack sends them (see docs/DIFFERENCES.md).

use crate::error::Error;
use crate::filter::PacketFilter;
use crate::nfqueue::{self, Queue, QueueConfig, QueueMsg, QueuedPacket, Verdicts};
pub use crate::nftables::Spread;
use crate::nftables::{self, Action, ChainSpec, Hook, Match, OwnerTable};
use crate::pkt;
use crate::sys::attr::messages;
use crate::sys::bpf::{prog_load, ProgType, LICENSE};
use crate::sys::netns::NetNs;
use crate::sys::poll::wait_any_readable;
use crate::sys::poll::{Epoll, EventFlag};
use crate::sys::raw::RawIpSocket;
use crate::sys::time::monotonic_ns;
use lindivert_core::address::NetworkData;
use lindivert_core::packet::decrement_ttl;
use lindivert_core::types::{Param, Shutdown, BATCH_MAX};
use lindivert_core::{Address, Flags, Layer, LayerData};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

static HANDLE_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Bytes of bookkeeping counted per queued packet against QUEUE_SIZE (the address plus the
/// queue entry), as WinDivert counts its internal packet size rather than the raw bytes.
pub const PACKET_OVERHEAD: usize = 128;

/// The application counts as busy for this long after a `recv`/`send` call; meanwhile the
/// worker leaves the queue socket to it.
const BUSY_NS: i64 = 5_000_000;

/// While packets it read wait for the application, the worker reads the queue socket again
/// only after this pause.
const WORKER_NAP: Duration = Duration::from_millis(1);

/// While the application waits in `recv` on every queue (so it reads the sockets itself)
/// and no queue was active since the worker last looked (no wait ended, no `recv` began,
/// no `send`: their `last_activity`), the worker sleeps until a `recv` returns to the
/// application, or this long at most (a safety net: `recv_sink` wakes it). While packets
/// flow, the worker naps `BUSY_NS` as before and nobody has to wake it.
const WORKER_PARK: Duration = Duration::from_secs(1);

/// Receive buffers per queue (one `recvmmsg` reads at most this many messages).
const SLOTS: usize = crate::sys::netlink::MAX_VLEN;

/// A read offers the kernel at least this many receive buffers, and at most twice as many
/// as the previous read filled: one packet at a time (round trips) costs no scaffolding for
/// 64 buffers, a flood reaches all of them within a few reads.
const LEND_MIN: usize = 8;

/// `QState::refs` of a receive buffer lent to a thread blocked in `recvmmsg` (no lock held).
const LENT: u32 = u32::MAX;

/// A `recv` that is the only one waiting on its queue blocks in `recvmmsg` on the queue
/// socket itself (no epoll round) for at most this long at a time (`SO_RCVTIMEO`, in steps
/// of `DIRECT_STEP`); a shorter remaining timeout waits on the epoll set instead.
const DIRECT_MAX: Duration = Duration::from_millis(100);
const DIRECT_STEP: Duration = Duration::from_millis(10);

/// Send held-back verdicts once this many wait (or this many bytes).
const FLUSH_COUNT: usize = 64;
const FLUSH_BYTES: usize = 256 * 1024;

/// ... or once the oldest has waited this long (ns): an application that takes its time
/// per packet (a slow `recv_with` callback, or work between `recv` and `send`) gets its
/// verdicts out at this pace instead of after the whole burst it works through.
const HOLD_MAX_NS: i64 = 200_000;

/// Most queues a handle can have (the low bits of a timestamp name the queue).
pub const MAX_QUEUES: usize = 64;
const TS_QUEUE_MASK: i64 = 63;

/// The kernel queue's length limit grows and shrinks in steps of this many packets.
const MAXLEN_STEP: usize = 256;

/// The kernel queue's maximum length for `queue_length` packets waiting for `recv` while the
/// application holds `held` received packets it has not sent yet (their originals wait in
/// the kernel queue too): room for both, rounded up to the next `MAXLEN_STEP` with at least
/// one packet to spare. A packet beyond it is dropped by the kernel (and counted), so under
/// overload no more than about QUEUE_LENGTH packets wait, as with WinDivert.
fn kernel_maxlen(queue_length: u64, held: usize) -> u32 {
    // verdicts not sent yet (up to FLUSH_COUNT) keep their packets in the kernel a little
    // longer than `held` counts them
    let n = queue_length as usize + ((held + FLUSH_COUNT) / MAXLEN_STEP + 1) * MAXLEN_STEP;
    n.min(u32::MAX as usize) as u32
}

/// Per-handle counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets delivered by `recv` (or dropped by a DROP handle).
    pub received: u64,
    /// Packets sent (verdicts with the sent bytes plus injections).
    pub sent: u64,
    /// Of `sent`, packets injected as new packets (no queued original).
    pub injected: u64,
    /// Packets dropped because the queue was full (QUEUE_LENGTH or QUEUE_SIZE: the oldest
    /// waiting packet is dropped; or the kernel queue overflowed).
    pub dropped: u64,
    /// Packets dropped because they were not sent within QUEUE_TIME.
    pub expired: u64,
}

/// A builder for [`Handle`] (`WinDivertOpen` with Linux extras).
#[derive(Debug, Clone)]
pub struct OpenOptions {
    filter: String,
    layer: Layer,
    priority: i16,
    flags: Flags,
    netns: Option<PathBuf>,
    gso: bool,
    ebpf: bool,
    queues: u16,
    busy_poll: Duration,
    spread: Spread,
}

/// The longest [`OpenOptions::busy_poll`].
pub const BUSY_POLL_MAX: Duration = Duration::from_millis(10);

impl OpenOptions {
    /// Options for `filter` at the NETWORK layer, priority 0, no flags.
    pub fn new(filter: &str) -> OpenOptions {
        OpenOptions {
            filter: filter.to_string(),
            layer: Layer::Network,
            priority: 0,
            flags: Flags::NONE,
            netns: None,
            gso: true,
            ebpf: true,
            queues: 1,
            busy_poll: Duration::ZERO,
            spread: Spread::Flow,
        }
    }

    /// Busy-poll: a receive that finds its queue empty polls the queue socket for up to
    /// `d` (at most [`BUSY_POLL_MAX`]) before it sleeps. A packet that arrives meanwhile is
    /// taken without a wake-up, which cuts the added round-trip latency by about half on the
    /// machines measured (see the README's benchmarks), at the price of up to `d` of CPU
    /// time per empty receive. Default zero: receives sleep at once, as WinDivert's do.
    pub fn busy_poll(mut self, d: Duration) -> Self {
        self.busy_poll = d;
        self
    }

    /// Spread the packets over `n` nfnetlink queues (1..=64, default 1) as
    /// [`OpenOptions::spread`] says (by flow unless told otherwise), each with its own
    /// socket and lock: serve each with its own thread through [`Handle::queue`] /
    /// [`Handle::split`] (or let every thread call [`Handle::recv`], which takes whichever
    /// queue has packets).
    pub fn queues(mut self, n: u16) -> Self {
        self.queues = n;
        self
    }

    /// How packets are spread over [`OpenOptions::queues`]: [`Spread::Flow`] (default: all
    /// packets of a connection, both directions, in one queue, so each flow stays in
    /// order) or [`Spread::Cpu`] (by the CPU that queued the packet: no hashing, but one
    /// flow can be spread over queues and re-injected out of order when its sender moves
    /// between CPUs).
    pub fn spread(mut self, spread: Spread) -> Self {
        self.spread = spread;
        self
    }

    /// The layer (NETWORK or NETWORK_FORWARD).
    pub fn layer(mut self, layer: Layer) -> Self {
        self.layer = layer;
        self
    }

    /// The priority, -30000..=30000; higher sees packets first.
    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }

    /// The WinDivert flags.
    pub fn flags(mut self, flags: Flags) -> Self {
        self.flags = flags;
        self
    }

    /// Work in the network namespace at `path` (`/var/run/netns/NAME`, `/proc/PID/ns/net`).
    pub fn netns_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.netns = Some(path.into());
        self
    }

    /// Work in the network namespace of process `pid`.
    pub fn netns_pid(mut self, pid: u32) -> Self {
        self.netns = Some(PathBuf::from(format!("/proc/{pid}/ns/net")));
        self
    }

    /// Whether the queue may deliver GSO super-packets (up to 64 KB, partial checksums;
    /// 4-5x faster for bulk TCP). Default true; turn off for handles that rewrite most
    /// packets.
    pub fn gso(mut self, on: bool) -> Self {
        self.gso = on;
        self
    }

    /// Whether to attach the eBPF prefilter in the kernel (default true; when false, or when
    /// the kernel lacks the compat `bpf` match, only the native protocol/port matches run
    /// in the kernel and user space checks everything else).
    pub fn ebpf_prefilter(mut self, on: bool) -> Self {
        self.ebpf = on;
        self
    }

    /// Open the handle.
    pub fn open(self) -> Result<Handle, Error> {
        Handle::open_with(self)
    }
}

/// Where the bytes of a queued packet are.
#[derive(Debug)]
enum Data {
    /// In receive buffer `slot` at `off` (the buffer is kept until the verdict).
    Slot { slot: u16, off: u32 },
    /// A copy (the receive buffer had to be reused while the packet waited for `recv`).
    Owned(Vec<u8>),
    /// Delivered, and its buffer reused: only a hash of the original bytes is left.
    Hash(u64),
    /// Nothing (done).
    Gone,
}

#[derive(Debug)]
struct Entry {
    /// The unique timestamp (the key a send finds it by).
    ts: i64,
    /// The nfqueue packet id; `None` for SNIFF copies (accepted already).
    id: Option<u32>,
    flow: u64,
    len: u32,
    data: Data,
    addr: Address,
    delivered: bool,
    done: bool,
}

/// The state of one queue.
#[derive(Debug)]
struct QState {
    /// Receive buffers and how many entries reference each.
    bufs: Vec<Vec<u8>>,
    refs: Vec<u32>,
    lens: Vec<usize>,
    /// How many free receive buffers the next read offers (`LEND_MIN..=SLOTS`).
    lend: usize,
    /// The buffers lent to a blocking read (kept for its allocation).
    lent: Vec<Vec<u8>>,
    /// Packets received by the application and not sent yet (originals in the kernel).
    held: usize,
    /// The kernel queue's current maximum length.
    maxlen: u32,
    /// Packets held in the kernel (and SNIFF copies), in arrival (id, timestamp) order.
    /// Entries before `rx_start` are delivered or done.
    entries: VecDeque<Entry>,
    rx_start: usize,
    /// Packets waiting for `recv` and their bytes (with the overhead).
    rx_len: usize,
    rx_bytes: usize,
    pool: Vec<Vec<u8>>,
    verdicts: Verdicts,
    last_ts: i64,
    ready: bool,
    closing: bool,
    netlink_errors: u64,
    /// The socket's current `SO_RCVTIMEO` (zero: not set yet).
    rcvtimeo: Duration,
    /// When the verdicts waiting in `verdicts` were first seen waiting (CLOCK_MONOTONIC ns;
    /// 0: none, or not looked at since the last flush).
    hold_since: i64,
    /// When [`QState::held_too_long`] last looked (the time until its next look is
    /// guessed from the time since this one).
    last_look: i64,
}

impl QState {
    fn new(maxlen: u32) -> QState {
        QState {
            bufs: (0..SLOTS)
                .map(|_| vec![0u8; nfqueue::RECV_BUF_LEN])
                .collect(),
            refs: vec![0; SLOTS],
            lens: vec![0; SLOTS],
            lend: LEND_MIN,
            lent: Vec::with_capacity(SLOTS),
            held: 0,
            maxlen,
            entries: VecDeque::with_capacity(1024),
            rx_start: 0,
            rx_len: 0,
            rx_bytes: 0,
            pool: Vec::new(),
            verdicts: Verdicts::new(),
            last_ts: 0,
            ready: false,
            closing: false,
            netlink_errors: 0,
            rcvtimeo: Duration::ZERO,
            hold_since: 0,
            last_look: 0,
        }
    }

    /// The original bytes of entry `i`, if still held.
    fn bytes(&self, i: usize) -> Option<&[u8]> {
        let e = &self.entries[i];
        match &e.data {
            Data::Slot { slot, off } => {
                let o = *off as usize;
                Some(&self.bufs[*slot as usize][o..o + e.len as usize])
            }
            Data::Owned(v) => Some(v),
            _ => None,
        }
    }

    /// Whether `bytes` equal the original of entry `i`; `hash` computes the hash of
    /// `bytes` (lazily) when only a hash is left.
    fn same_bytes(&self, i: usize, bytes: &[u8], hash: &mut Option<u64>) -> bool {
        let e = &self.entries[i];
        if e.len as usize != bytes.len() {
            return false;
        }
        match &e.data {
            Data::Hash(h) => *h == *hash.get_or_insert_with(|| pkt::bytes_hash(bytes)),
            _ => self.bytes(i) == Some(bytes),
        }
    }

    fn release(&mut self, i: usize) {
        match std::mem::replace(&mut self.entries[i].data, Data::Gone) {
            Data::Slot { slot, .. } => self.refs[slot as usize] -= 1,
            Data::Owned(v) if self.pool.len() < 1024 => self.pool.push(v),
            _ => {}
        }
    }

    /// Entry `i` is finished (verdict given, dropped, expired, or a delivered SNIFF copy).
    fn finish(&mut self, i: usize) {
        let e = &mut self.entries[i];
        if e.done {
            return;
        }
        e.done = true;
        if !e.delivered {
            self.rx_len -= 1;
            self.rx_bytes -= e.len as usize + PACKET_OVERHEAD;
        } else if e.id.is_some() {
            self.held -= 1;
        }
        self.release(i);
    }

    /// The receive buffers the next read offers: the first `lend` free ones (their slots, and
    /// how many), after evicting copies if none is free.
    fn lendable(&mut self) -> ([u16; SLOTS], usize) {
        if self.refs.iter().all(|&r| r > 0) {
            self.evict();
        }
        let mut idx = [0u16; SLOTS];
        let mut n = 0;
        for (slot, _) in self.refs.iter().enumerate().filter(|(_, &r)| r == 0) {
            if n == self.lend {
                break;
            }
            idx[n] = slot as u16;
            n += 1;
        }
        (idx, n)
    }

    /// A read filled `n` receive buffers: the next one offers twice as many (`LEND_MIN..=SLOTS`).
    fn read_filled(&mut self, n: usize) {
        self.lend = (2 * n).clamp(LEND_MIN, SLOTS);
    }

    /// Fit the kernel queue's length limit to QUEUE_LENGTH (`queue_length`) and the packets
    /// held now: larger at once, smaller only once two steps are free (no message per
    /// packet at a step's edge). One configuration message, no ack awaited.
    fn fit_maxlen(&mut self, queue: &Queue, queue_length: u64) -> io::Result<()> {
        let want = kernel_maxlen(queue_length, self.held);
        if want > self.maxlen || want as usize + 2 * MAXLEN_STEP <= self.maxlen as usize {
            self.set_maxlen(queue, want)?;
        }
        Ok(())
    }

    /// Set the kernel queue's length limit to `maxlen` and remember it.
    fn set_maxlen(&mut self, queue: &Queue, maxlen: u32) -> io::Result<()> {
        queue.set_maxlen(maxlen)?;
        self.maxlen = maxlen;
        Ok(())
    }

    fn pop_done(&mut self) {
        while self.entries.front().is_some_and(|e| e.done) {
            self.entries.pop_front();
            self.rx_start = self.rx_start.saturating_sub(1);
        }
    }

    /// Every receive buffer is referenced: keep copies of the packets still waiting for
    /// `recv` and hashes of the delivered originals, so that all buffers are free again.
    fn evict(&mut self) {
        for i in 0..self.entries.len() {
            if self.entries[i].done || !matches!(self.entries[i].data, Data::Slot { .. }) {
                continue;
            }
            let new = if self.entries[i].delivered {
                Data::Hash(pkt::bytes_hash(self.bytes(i).unwrap_or(&[])))
            } else {
                let mut v = self.pool.pop().unwrap_or_default();
                v.clear();
                v.extend_from_slice(self.bytes(i).unwrap_or(&[]));
                Data::Owned(v)
            };
            self.entries[i].data = new;
        }
        self.refs
            .iter_mut()
            .filter(|r| **r != LENT)
            .for_each(|r| *r = 0);
    }

    /// The oldest packet that stays in the kernel queue (for batch verdicts).
    fn floor(&self, sniff: bool) -> Option<u32> {
        if sniff {
            return None;
        }
        self.entries.iter().find(|e| !e.done).and_then(|e| e.id)
    }

    /// Send the waiting verdicts (one `sendmsg`).
    fn flush(&mut self, sock: &crate::sys::netlink::NetlinkSocket, sniff: bool) -> io::Result<()> {
        if self.verdicts.is_empty() {
            return Ok(());
        }
        self.pop_done();
        self.flush_in_place(sock, sniff)
    }

    /// [`QState::flush`] without dropping finished entries from the front (the entry
    /// indices of a running `visit` stay valid).
    fn flush_in_place(
        &mut self,
        sock: &crate::sys::netlink::NetlinkSocket,
        sniff: bool,
    ) -> io::Result<()> {
        self.hold_since = 0;
        let floor = self.floor(sniff);
        self.verdicts.flush_batched(sock, floor)
    }

    /// Send held-back verdicts if the application has nothing buffered left to work
    /// through, or enough wait, or they have waited too long by `now()` (called only if
    /// the answer depends on it: a clock read, or a time read already).
    fn flush_due(&mut self, now: impl FnOnce() -> i64) -> bool {
        !self.verdicts.is_empty()
            && (self.rx_len == 0 || self.flush_full() || self.held_too_long(now()))
    }

    /// Whether the waiting verdicts should go out at `now` rather than wait for the next
    /// look: they have waited [`HOLD_MAX_NS`] by then (counted from when they were first
    /// seen waiting), taking the time since the previous look as the time until the next
    /// (an application that takes 1 ms per packet gets each verdict out at once, one that
    /// takes 1 µs every 200 µs).
    fn held_too_long(&mut self, now: i64) -> bool {
        let until_next = now - self.last_look;
        self.last_look = now;
        !self.verdicts.is_empty() && self.too_old_by(now, now + until_next)
    }

    /// Whether the waiting verdicts (first seen waiting at `seen`, unless seen before) will
    /// be older than [`HOLD_MAX_NS`] at `next`.
    fn too_old_by(&mut self, seen: i64, next: i64) -> bool {
        if self.hold_since == 0 {
            self.hold_since = seen;
        }
        next - self.hold_since >= HOLD_MAX_NS
    }

    /// Enough held-back verdicts to send them anyway.
    fn flush_full(&self) -> bool {
        self.verdicts.len() >= FLUSH_COUNT || self.verdicts.bytes() >= FLUSH_BYTES
    }
}

/// One nfnetlink queue of a handle.
#[derive(Debug)]
struct QueueCtx {
    queue: Queue,
    state: Mutex<QState>,
    /// This queue's socket and ready flag.
    epoll: Epoll,
    ready: EventFlag,
    /// Whether `ready` is kept up to date: only once something waits on an epoll set
    /// (an application polling the handle's descriptor, or a `recv` that cannot block on
    /// the socket directly); until then the flag costs no system calls.
    signal: AtomicBool,
    /// Set by `shutdown(Recv)`: `ready` stays set from then on, so that a poller wakes up
    /// and its `recv` returns what is left, then [`Error::NoData`] (like a socket's EOF).
    eof: AtomicBool,
    last_activity: AtomicI64,
    waiters: AtomicU32,
}

impl QueueCtx {
    fn lock(&self) -> MutexGuard<'_, QState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn try_lock(&self) -> Option<MutexGuard<'_, QState>> {
        match self.state.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    fn update_ready(&self, st: &mut QState) {
        if !self.signal.load(Ordering::Relaxed) {
            return;
        }
        let want = st.rx_len > 0 || self.eof.load(Ordering::SeqCst);
        if want != st.ready {
            st.ready = want;
            if want {
                self.ready.set();
            } else {
                self.ready.clear();
                // `set_eof` (without the lock) may have set the flag just before this
                // clear: it stored `eof` first, so the flag is raised again here
                if self.eof.load(Ordering::SeqCst) {
                    st.ready = true;
                    self.ready.set();
                }
            }
        }
    }

    /// `shutdown(Recv)`: raise the ready flag for good (without the queue's lock: the
    /// caller may be a `recv_with` callback that holds it).
    fn set_eof(&self) {
        self.eof.store(true, Ordering::SeqCst);
        self.ready.set();
    }

    /// Keep the ready flag up to date from now on (must not be called with the lock held).
    fn enable_signal(&self) {
        if !self.signal.swap(true, Ordering::AcqRel) {
            let mut st = self.lock();
            self.update_ready(&mut st);
        }
    }

    fn busy(&self, now: i64) -> i64 {
        if self.waiters.load(Ordering::Relaxed) > 0 {
            return BUSY_NS;
        }
        BUSY_NS - (now - self.last_activity.load(Ordering::Relaxed))
    }
}

#[derive(Debug)]
struct Inner {
    layer: Layer,
    flags: Flags,
    priority: i16,
    mark: u32,
    filter: PacketFilter,
    always: bool,
    queues: Vec<QueueCtx>,
    table: Mutex<Option<OwnerTable>>,
    raw4: Option<RawIpSocket>,
    raw6: Option<RawIpSocket>,
    /// Every queue's socket and ready flag (the handle's pollable descriptor).
    epoll: Epoll,
    queue_length: AtomicU64,
    queue_time: AtomicU64,
    /// Busy-poll the queue socket this long before blocking (0: never).
    busy_poll_ns: AtomicU64,
    queue_size: AtomicU64,
    shutdown_recv: AtomicBool,
    shutdown_send: AtomicBool,
    closed: AtomicBool,
    received: AtomicU64,
    sent: AtomicU64,
    injected: AtomicU64,
    dropped: AtomicU64,
    expired: AtomicU64,
    proc_queue: Mutex<Option<File>>,
    table_name: String,
    ebpf: bool,
    rr: AtomicUsize,
    /// The worker sleeps while the application waits in `recv` on every queue; a `recv`
    /// that returns wakes it (see [`Inner::recv_sink`]).
    worker_parked: AtomicBool,
    worker_thread: std::sync::OnceLock<std::thread::Thread>,
}

/// An open divert handle. Dropping it closes it gracefully.
#[derive(Debug)]
pub struct Handle {
    inner: Arc<Inner>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

/// One queue of a handle opened with [`OpenOptions::queues`]: receive from this queue only
/// (a thread per queue shares no lock with the others). Sending works for packets of any
/// queue of the handle.
#[derive(Debug, Clone, Copy)]
pub struct QueueRef<'a> {
    handle: &'a Handle,
    index: usize,
}

/// Bind `n` consecutive queue numbers, the first from `candidates`.
fn bind_queues(
    candidates: impl Iterator<Item = u16>,
    n: u16,
    cfg: &QueueConfig,
) -> Result<Vec<Queue>, Error> {
    let mut last = None;
    for first in candidates {
        if first.checked_add(n - 1).is_none() {
            continue;
        }
        let mut qs = Vec::with_capacity(n as usize);
        let mut ok = true;
        for k in 0..n {
            match Queue::bind_exact(first + k, cfg) {
                Ok(q) => qs.push(q),
                Err(e) if e.errno == libc::EBUSY || e.errno == libc::EPERM => {
                    last = Some(e);
                    ok = false;
                    break;
                }
                Err(e) => return Err(Error::from_netlink(e)),
            }
        }
        if ok {
            return Ok(qs);
        }
        // the sockets close (and unbind) as `qs` drops
    }
    Err(Error::from_netlink(last.unwrap_or(
        crate::sys::nfnl::NlError {
            errno: libc::EBUSY,
            what: "binding an nfqueue number".into(),
        },
    )))
}

fn has_capability(bit: u32) -> Option<bool> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("CapEff:"))?;
    let v = u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()?;
    Some(v & (1u64 << bit) != 0)
}

impl Handle {
    /// `WinDivertOpen`: divert packets matching `filter` at `layer` with `priority`/`flags`.
    pub fn open(filter: &str, layer: Layer, priority: i16, flags: Flags) -> Result<Handle, Error> {
        OpenOptions::new(filter)
            .layer(layer)
            .priority(priority)
            .flags(flags)
            .open()
    }

    fn open_with(o: OpenOptions) -> Result<Handle, Error> {
        if !o.layer.is_network() {
            return Err(Error::InvalidParameter(format!(
                "layer {:?} is not supported by this handle type (NETWORK and NETWORK_FORWARD only)",
                o.layer
            )));
        }
        o.flags
            .validate_for(o.layer)
            .map_err(|e| Error::InvalidParameter(e.to_string()))?;
        if !(-30000..=30000).contains(&o.priority) {
            return Err(Error::InvalidParameter(format!(
                "priority {} outside -30000..=30000",
                o.priority
            )));
        }
        let filter =
            PacketFilter::compile(&o.filter, o.layer).map_err(|e| Error::InvalidFilter {
                message: e.to_string(),
                position: e.pos,
            })?;
        check_busy_poll(o.busy_poll)?;
        if !(1..=MAX_QUEUES as u16).contains(&o.queues) {
            return Err(Error::InvalidParameter(format!(
                "queue count {} outside 1..={MAX_QUEUES}",
                o.queues
            )));
        }
        if has_capability(12) == Some(false) {
            return Err(Error::PermissionDenied {
                capability: "CAP_NET_ADMIN",
                operation: "opening a divert handle (nftables rules and nfqueue)".into(),
            });
        }
        let ns = match &o.netns {
            Some(p) => Some(NetNs::open(p).map_err(|e| {
                Error::InvalidParameter(format!("network namespace {}: {e}", p.display()))
            })?),
            None => None,
        };
        let n = HANDLE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let table_name = format!("lindivert_{pid}_{n}");
        let mark = nftables::injection_mark(o.priority);
        let qcfg = QueueConfig {
            maxlen: kernel_maxlen(Param::QueueLength.default_value(), 0),
            gso: o.gso,
            fail_open: false,
            rcvbuf: 32 << 20,
        };
        let start = (pid
            .wrapping_mul(2_654_435_761)
            .wrapping_add(n.wrapping_mul(7919))) as u16;
        let nq = o.queues;
        let candidates = (0..1024u16).map(move |i| start.wrapping_add(i.wrapping_mul(nq)));
        let layer = o.layer;
        let filter2 = filter.clone();
        let use_ebpf = o.ebpf;
        // REFLECT: the handle's registry entry lives in its own owner table, so it vanishes
        // with the handle (close, exit, kill -9).
        let reg_info = crate::registry::HandleInfo::now(
            o.layer,
            o.priority,
            o.flags,
            lindivert_core::filter::object::encode(filter.exact().object()),
        );
        let build = move || -> Result<_, Error> {
            let queues = bind_queues(candidates, nq, &qcfg)?;
            let first = queues[0].num();
            let hooks: Vec<Hook> = match layer {
                Layer::NetworkForward => vec![Hook::Forward],
                _ => {
                    let mut v = Vec::new();
                    if filter2.may_match_direction(true) {
                        v.push(Hook::Output);
                    }
                    if filter2.may_match_direction(false) {
                        v.push(Hook::Input);
                    }
                    v
                }
            };
            let native = filter2.native_prefilter();
            // The eBPF prefilter: one program per hook (the direction is known there). The
            // rule takes its own reference; our descriptors close once the table exists.
            let programs: Vec<Option<OwnedFd>> = hooks
                .iter()
                .map(|&hook| {
                    if !use_ebpf || filter2.is_always() || filter2.is_never() {
                        return None;
                    }
                    let prog = filter2.prefilter_program(hook);
                    prog_load(ProgType::SOCKET_FILTER, &prog, LICENSE, &mut []).ok()
                })
                .collect();
            let chains = |with_bpf: bool| -> Vec<ChainSpec> {
                hooks
                    .iter()
                    .zip(&programs)
                    .map(|(&hook, prog)| {
                        let mut prefilter = native.clone();
                        if let (true, Some(fd)) = (with_bpf, prog) {
                            let m = Match::BpfFd(fd.as_raw_fd());
                            if prefilter.is_empty() {
                                prefilter.push(vec![m]);
                            } else {
                                prefilter.iter_mut().for_each(|alt| alt.push(m.clone()));
                            }
                        }
                        ChainSpec {
                            hook,
                            priority: nftables::chain_priority(o.priority),
                            skip_mark: Some(mark),
                            skip_loopback_in: hook == Hook::Input,
                            prefilter,
                            action: if nq == 1 {
                                Action::Queue {
                                    num: first,
                                    bypass: false,
                                }
                            } else {
                                Action::QueueRange {
                                    num: first,
                                    total: nq,
                                    bypass: false,
                                    spread: o.spread,
                                }
                            },
                        }
                    })
                    .collect()
            };
            let with_bpf = programs.iter().any(Option::is_some);
            let register = |b: &mut crate::sys::nfnl::Batch, t: &str| {
                crate::registry::add_to_batch(b, nftables::NFPROTO_INET, t, &reg_info)
            };
            let table = match OwnerTable::create_with(&table_name, &chains(with_bpf), &register) {
                Ok(t) => (t, with_bpf),
                // the compat bpf match may be missing (CONFIG_NETFILTER_XT_MATCH_BPF): fall
                // back to the native matches; user space checks every packet exactly
                Err(_) if with_bpf => (
                    OwnerTable::create_with(&table_name, &chains(false), &register)
                        .map_err(Error::from_netlink)?,
                    false,
                ),
                Err(e) => return Err(Error::from_netlink(e)),
            };
            drop(programs);
            let raw4 = RawIpSocket::open(false, mark).ok();
            let raw6 = RawIpSocket::open(true, mark).ok();
            let proc_queue = File::open("/proc/thread-self/net/netfilter/nfnetlink_queue").ok();
            Ok((queues, table, raw4, raw6, proc_queue, table_name))
        };
        let (queues, (table, ebpf), raw4, raw6, proc_queue, table_name) = match &ns {
            Some(ns) => ns.run(build).map_err(Error::Io)??,
            None => build()?,
        };
        let epoll = Epoll::new()?;
        let mut ctxs = Vec::with_capacity(queues.len());
        for (i, queue) in queues.into_iter().enumerate() {
            let qe = Epoll::new()?;
            let ready = EventFlag::new()?;
            qe.add(queue.socket().as_fd(), 0)?;
            qe.add(ready.as_fd(), 1)?;
            epoll.add(queue.socket().as_fd(), 2 * i as u64)?;
            epoll.add(ready.as_fd(), 2 * i as u64 + 1)?;
            ctxs.push(QueueCtx {
                queue,
                state: Mutex::new(QState::new(qcfg.maxlen)),
                epoll: qe,
                ready,
                signal: AtomicBool::new(false),
                eof: AtomicBool::new(false),
                last_activity: AtomicI64::new(0),
                waiters: AtomicU32::new(0),
            });
        }
        let always = filter.is_always();
        let inner = Arc::new(Inner {
            layer: o.layer,
            flags: o.flags,
            priority: o.priority,
            mark,
            filter,
            always,
            queues: ctxs,
            table: Mutex::new(Some(table)),
            raw4,
            raw6,
            epoll,
            queue_length: AtomicU64::new(Param::QueueLength.default_value()),
            queue_time: AtomicU64::new(Param::QueueTime.default_value()),
            busy_poll_ns: AtomicU64::new(o.busy_poll.as_nanos() as u64),
            queue_size: AtomicU64::new(Param::QueueSize.default_value()),
            shutdown_recv: AtomicBool::new(false),
            shutdown_send: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            proc_queue: Mutex::new(proc_queue),
            table_name,
            ebpf,
            rr: AtomicUsize::new(0),
            worker_parked: AtomicBool::new(false),
            worker_thread: std::sync::OnceLock::new(),
        });
        let w = Arc::clone(&inner);
        let worker = Some(
            std::thread::Builder::new()
                .name("lindivert-pump".into())
                .spawn(move || w.pump_worker())?,
        );
        Ok(Handle {
            inner,
            worker: Mutex::new(worker),
        })
    }

    /// `WinDivertRecv`: wait for one packet; copy it into `buf`.
    pub fn recv(&self, buf: &mut [u8]) -> Result<(usize, Address), Error> {
        self.recv_timeout(buf, None)
    }

    /// Like [`Handle::recv`] with a timeout (`None` = forever; `Some(ZERO)` = poll).
    pub fn recv_timeout(
        &self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<(usize, Address), Error> {
        let mut addrs = Vec::with_capacity(1);
        let n = self.inner.recv_into(None, buf, &mut addrs, 1, timeout)?;
        Ok((n, addrs[0]))
    }

    /// `WinDivertRecvEx` batch: up to `max` (≤ 255) packets back to back in `buf`, their
    /// addresses appended to `addrs`. Waits for the first packet only. Returns the bytes used.
    pub fn recv_batch(
        &self,
        buf: &mut [u8],
        addrs: &mut Vec<Address>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize, Error> {
        check_batch(max)?;
        self.inner.recv_into(None, buf, addrs, max, timeout)
    }

    /// Zero-copy receive: wait (up to `timeout`; `None` = forever) for the first packet,
    /// then show up to `max` (≤ 255) waiting packets to `f` one by one, in place in the
    /// receive buffers, and apply the [`Verdict`] it returns for each. Returns how many
    /// packets `f` saw. The verdicts go to the kernel in one message once no received
    /// packet is left waiting for `f`, or 64 verdicts are pending, or before waiting for one
    /// more callback would hold the oldest back more than 200 µs: a loop that takes one
    /// packet per call sends one message per read of the queue, not one per packet, and a
    /// callback that takes 1 ms gets each verdict out as it returns. If the application
    /// stops calling while packets still wait, the handle's worker sends the given verdicts
    /// a few milliseconds later.
    ///
    /// This is `recv` + `send` without copying the packet out and back or comparing it with
    /// its original: for 64 KB GSO packets that is most of the user-space cost. `f` may
    /// change the bytes (not the length) and the address (its checksum bits say what
    /// [`Verdict::Modified`] recomputes; `impostor` is not applied). On a SNIFF handle the
    /// original has passed already: [`Verdict::Modified`] injects the changed copy as a new
    /// packet, the other verdicts do nothing. `f` runs with the queue locked: `recv` and
    /// `send` on the same handle from inside it fail with [`Error::InvalidParameter`].
    /// Counts in [`Stats`] as `received`, and Accept/Modified as `sent`.
    pub fn recv_with<F>(
        &self,
        max: usize,
        timeout: Option<Duration>,
        mut f: F,
    ) -> Result<usize, Error>
    where
        F: FnMut(&mut [u8], &mut Address) -> Verdict,
    {
        self.inner.recv_visit(None, &mut f, max, timeout)
    }

    /// `WinDivertSend`: re-inject `packet` (or inject a new one). Returns the bytes sent.
    pub fn send(&self, packet: &[u8], addr: &Address) -> Result<usize, Error> {
        self.inner.send_packets(packet, std::slice::from_ref(addr))
    }

    /// `WinDivertSendEx` batch: `packets` back to back, one address each (≤ 255).
    pub fn send_batch(&self, packets: &[u8], addrs: &[Address]) -> Result<usize, Error> {
        check_batch(addrs.len())?;
        self.inner.send_packets(packets, addrs)
    }

    /// How many nfnetlink queues this handle reads ([`OpenOptions::queues`]).
    pub fn queue_count(&self) -> usize {
        self.inner.queues.len()
    }

    /// Queue `index` (0-based) of this handle, to receive from it alone.
    pub fn queue(&self, index: usize) -> Option<QueueRef<'_>> {
        (index < self.inner.queues.len()).then_some(QueueRef {
            handle: self,
            index,
        })
    }

    /// Every queue of this handle: give each to its own thread.
    pub fn split(&self) -> Vec<QueueRef<'_>> {
        (0..self.inner.queues.len())
            .map(|index| QueueRef {
                handle: self,
                index,
            })
            .collect()
    }

    /// `WinDivertShutdown`.
    pub fn shutdown(&self, how: Shutdown) -> Result<(), Error> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if matches!(how, Shutdown::Recv | Shutdown::Both) {
            self.inner.shutdown_recv.store(true, Ordering::Release);
            // Stop queueing new packets (without unregistering hooks, which would drop what
            // is queued).
            if let Some(t) = self.inner.table.lock().unwrap().as_mut() {
                t.bypass().map_err(Error::from_netlink)?;
            }
            // pollers of the descriptor wake up and find the end
            self.inner.queues.iter().for_each(QueueCtx::set_eof);
        }
        if matches!(how, Shutdown::Send | Shutdown::Both) {
            self.inner.shutdown_send.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// `WinDivertClose`: delete the rules, accept what is still queued, unbind.
    pub fn close(self) -> Result<(), Error> {
        self.close_inner()
    }

    fn close_inner(&self) -> Result<(), Error> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Some(w) = self.worker.lock().unwrap().take() {
            w.thread().unpark();
            let _ = w.join();
        }
        self.inner.close()
    }

    /// `WinDivertSetParam`.
    pub fn set_param(&self, param: Param, value: u64) -> Result<(), Error> {
        param
            .check(value)
            .map_err(|e| Error::InvalidParameter(e.to_string()))?;
        match param {
            Param::QueueLength => {
                if in_callback() {
                    // this thread may hold a queue's lock: the receive that runs the
                    // callback fits the kernel limit right after it (other queues at their
                    // next receive or worker round)
                    self.inner.queue_length.store(value, Ordering::Relaxed);
                    return Ok(());
                }
                for q in &self.inner.queues {
                    let mut st = q.lock();
                    let want = kernel_maxlen(value, st.held);
                    st.set_maxlen(&q.queue, want)?;
                }
                self.inner.queue_length.store(value, Ordering::Relaxed);
            }
            Param::QueueTime => self.inner.queue_time.store(value, Ordering::Relaxed),
            Param::QueueSize => self.inner.queue_size.store(value, Ordering::Relaxed),
            Param::VersionMajor | Param::VersionMinor => unreachable!("read-only"),
        }
        Ok(())
    }

    /// Change [`OpenOptions::busy_poll`] (at most [`BUSY_POLL_MAX`]; zero: off). Takes
    /// effect at the next receive that finds its queue empty.
    pub fn set_busy_poll(&self, d: Duration) -> Result<(), Error> {
        check_busy_poll(d)?;
        self.inner
            .busy_poll_ns
            .store(d.as_nanos() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// The current busy-poll time ([`OpenOptions::busy_poll`]).
    pub fn busy_poll(&self) -> Duration {
        Duration::from_nanos(self.inner.busy_poll_ns.load(Ordering::Relaxed))
    }

    /// `WinDivertGetParam`.
    pub fn get_param(&self, param: Param) -> u64 {
        match param {
            Param::QueueLength => self.inner.queue_length.load(Ordering::Relaxed),
            Param::QueueTime => self.inner.queue_time.load(Ordering::Relaxed),
            Param::QueueSize => self.inner.queue_size.load(Ordering::Relaxed),
            p => p.default_value(),
        }
    }

    /// Per-handle counters.
    pub fn stats(&self) -> Stats {
        let i = &self.inner;
        Stats {
            received: i.received.load(Ordering::Relaxed),
            sent: i.sent.load(Ordering::Relaxed),
            injected: i.injected.load(Ordering::Relaxed),
            dropped: i.kernel_queue_dropped() + i.dropped.load(Ordering::Relaxed),
            expired: i.expired.load(Ordering::Relaxed),
        }
    }

    /// The layer.
    pub fn layer(&self) -> Layer {
        self.inner.layer
    }

    /// The flags.
    pub fn flags(&self) -> Flags {
        self.inner.flags
    }

    /// The priority.
    pub fn priority(&self) -> i16 {
        self.inner.priority
    }

    /// The nfqueue number this handle bound (the first, with several queues).
    pub fn queue_num(&self) -> u16 {
        self.inner.queues[0].queue.num()
    }

    /// The name of this handle's nftables owner table (family inet).
    pub fn table_name(&self) -> &str {
        &self.inner.table_name
    }

    /// The mark this handle's injected packets carry.
    pub fn injection_mark(&self) -> u32 {
        self.inner.mark
    }

    /// Whether the eBPF prefilter runs in the kernel (false for constant filters, which
    /// need none, and where the kernel lacks the compat `bpf` match).
    pub fn ebpf_prefilter(&self) -> bool {
        self.inner.ebpf
    }
}

/// While alive, the queue(s) it names count as having a receiver waiting on them, as if a
/// thread sat in `recv` (for [`crate::async_io`]'s tasks that await the descriptor): the
/// worker leaves those queues to the application and, once every queue has one and nothing
/// happens, sleeps instead of napping. Dropping it ends the wait the way a returning `recv`
/// does (activity noted, the worker woken).
#[cfg(feature = "tokio")]
pub(crate) struct WaitMark {
    inner: Arc<Inner>,
    queue: Option<usize>,
}

#[cfg(feature = "tokio")]
impl Handle {
    pub(crate) fn wait_mark(&self, queue: Option<usize>) -> WaitMark {
        self.inner
            .waiting_queues(queue)
            .for_each(|q| _ = q.waiters.fetch_add(1, Ordering::SeqCst));
        WaitMark {
            inner: self.inner.clone(),
            queue,
        }
    }
}

#[cfg(feature = "tokio")]
impl QueueRef<'_> {
    pub(crate) fn wait_mark(&self) -> WaitMark {
        self.handle.wait_mark(Some(self.index))
    }
}

#[cfg(feature = "tokio")]
impl Drop for WaitMark {
    fn drop(&mut self) {
        let now = monotonic_ns();
        let inner = &*self.inner;
        inner
            .waiting_queues(self.queue)
            .for_each(|q| inner.left_wait(q, now));
        inner.wake_parked_worker();
    }
}

impl AsRawFd for Handle {
    /// A descriptor that is readable when `recv` may have a packet (an epoll set of the queue
    /// sockets and internal "buffered" flags), and for good after `shutdown(Recv)` (so that
    /// a poller finds the end, [`Error::NoData`]). Poll it, then call `recv_timeout` with a
    /// zero timeout; `lindivert::async_io` does this for tokio (feature `tokio`).
    fn as_raw_fd(&self) -> RawFd {
        self.inner.queues.iter().for_each(QueueCtx::enable_signal);
        self.inner.epoll.as_raw_fd()
    }
}

impl AsFd for Handle {
    /// The same descriptor as [`AsRawFd::as_raw_fd`], borrowed.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.queues.iter().for_each(QueueCtx::enable_signal);
        self.inner.epoll.as_fd()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.close_inner();
    }
}

impl QueueRef<'_> {
    /// The index of this queue in its handle.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Its nfqueue number.
    pub fn queue_num(&self) -> u16 {
        self.handle.inner.queues[self.index].queue.num()
    }

    /// [`Handle::recv`] from this queue.
    pub fn recv(&self, buf: &mut [u8]) -> Result<(usize, Address), Error> {
        self.recv_timeout(buf, None)
    }

    /// [`Handle::recv_timeout`] from this queue.
    pub fn recv_timeout(
        &self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<(usize, Address), Error> {
        let mut addrs = Vec::with_capacity(1);
        let n = self
            .handle
            .inner
            .recv_into(Some(self.index), buf, &mut addrs, 1, timeout)?;
        Ok((n, addrs[0]))
    }

    /// [`Handle::recv_batch`] from this queue.
    pub fn recv_batch(
        &self,
        buf: &mut [u8],
        addrs: &mut Vec<Address>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize, Error> {
        check_batch(max)?;
        self.handle
            .inner
            .recv_into(Some(self.index), buf, addrs, max, timeout)
    }

    /// [`Handle::recv_with`] from this queue.
    pub fn recv_with<F>(
        &self,
        max: usize,
        timeout: Option<Duration>,
        mut f: F,
    ) -> Result<usize, Error>
    where
        F: FnMut(&mut [u8], &mut Address) -> Verdict,
    {
        self.handle
            .inner
            .recv_visit(Some(self.index), &mut f, max, timeout)
    }

    /// [`Handle::send`] (any packet of the handle).
    pub fn send(&self, packet: &[u8], addr: &Address) -> Result<usize, Error> {
        self.handle.send(packet, addr)
    }

    /// [`Handle::send_batch`] (any packets of the handle).
    pub fn send_batch(&self, packets: &[u8], addrs: &[Address]) -> Result<usize, Error> {
        self.handle.send_batch(packets, addrs)
    }
}

impl AsRawFd for QueueRef<'_> {
    /// Readable when `recv` on this queue may have a packet.
    fn as_raw_fd(&self) -> RawFd {
        let q = &self.handle.inner.queues[self.index];
        q.enable_signal();
        q.epoll.as_raw_fd()
    }
}

fn check_busy_poll(d: Duration) -> Result<(), Error> {
    if d > BUSY_POLL_MAX {
        return Err(Error::InvalidParameter(format!(
            "busy_poll {d:?} exceeds {BUSY_POLL_MAX:?}"
        )));
    }
    Ok(())
}

fn check_batch(n: usize) -> Result<(), Error> {
    if n == 0 || n > BATCH_MAX {
        return Err(Error::InvalidParameter(format!(
            "batch size {n} outside 1..=255"
        )));
    }
    Ok(())
}

thread_local! {
    static THREAD_SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    static IN_CALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// What becomes of a packet a [`Handle::recv_with`] callback has looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Re-inject it unchanged (a plain ACCEPT: the kernel keeps the original, offload state
    /// included; no bytes are copied back). Changes the callback made are discarded.
    Accept,
    /// Re-inject it with the bytes as the callback left them (same length), after filling
    /// the checksums whose bit in the (possibly changed) address is 0, as `send` does.
    Modified,
    /// Drop it.
    Drop,
    /// Leave it queued as a received packet: a later [`Handle::send`] with its address
    /// (keep a copy of bytes and address) re-injects it; else QUEUE_TIME expires it.
    Keep,
}

/// Where received packets go: copied out (`recv`), or shown in place (`recv_with`).
enum Sink<'s> {
    Copy {
        buf: &'s mut [u8],
        addrs: &'s mut Vec<Address>,
    },
    Visit(&'s mut dyn FnMut(&mut [u8], &mut Address) -> Verdict),
}

/// Set while a `recv_with` callback runs on this thread (it holds a queue lock: `recv` and
/// `send` from inside it would deadlock, so they fail instead).
fn in_callback() -> bool {
    IN_CALLBACK.with(|c| c.get())
}

/// Marks this thread as inside a `recv_with` callback until dropped (also on a panic).
struct CallbackGuard;

impl CallbackGuard {
    fn enter() -> CallbackGuard {
        IN_CALLBACK.with(|c| c.set(true));
        CallbackGuard
    }
}

impl Drop for CallbackGuard {
    fn drop(&mut self) {
        IN_CALLBACK.with(|c| c.set(false));
    }
}

fn callback_error(what: &str) -> Error {
    Error::InvalidParameter(format!(
        "{what} called from inside a recv_with callback (return Verdict::Keep and {what} after it returns)"
    ))
}

/// Where a send finds its queued original.
struct Found {
    q: usize,
    idx: usize,
    equal: bool,
}

impl Inner {
    fn sniff(&self) -> bool {
        self.flags.contains(Flags::SNIFF)
    }

    fn kernel_queue_dropped(&self) -> u64 {
        // /proc/net/netfilter/nfnetlink_queue: queue_num portid total copy_mode copy_range
        // queue_dropped user_dropped id_seq 1
        let mut g = self.proc_queue.lock().unwrap();
        let Some(f) = g.as_mut() else { return 0 };
        let mut s = String::new();
        if f.rewind().is_err() || f.read_to_string(&mut s).is_err() {
            return 0;
        }
        let mut total = 0;
        for line in s.lines() {
            let v: Vec<&str> = line.split_whitespace().collect();
            if v.len() >= 7 {
                if let Ok(num) = v[0].parse::<u16>() {
                    if self.queues.iter().any(|q| q.queue.num() == num) {
                        let q: u64 = v[5].parse().unwrap_or(0);
                        let u: u64 = v[6].parse().unwrap_or(0);
                        total += q + u;
                    }
                }
            }
        }
        total
    }

    /// Drop queued packets past QUEUE_TIME.
    fn expire(&self, q: &QueueCtx, st: &mut QState, now: i64) {
        let qt = self.queue_time.load(Ordering::Relaxed) as i64 * 1_000_000;
        let mut i = 0;
        while i < st.entries.len() {
            let e = &st.entries[i];
            if e.ts + qt > now {
                break;
            }
            if !e.done {
                if let Some(id) = e.id {
                    st.verdicts
                        .add(q.queue.num(), id, nfqueue::NF_DROP, None, None);
                }
                self.expired.fetch_add(1, Ordering::Relaxed);
                st.finish(i);
            }
            i += 1;
        }
        st.pop_done();
    }

    /// The next QUEUE_TIME deadline of queue state `st`.
    fn next_deadline(&self, st: &QState) -> Option<i64> {
        let qt = self.queue_time.load(Ordering::Relaxed) as i64 * 1_000_000;
        st.entries.iter().find(|e| !e.done).map(|e| e.ts + qt)
    }

    /// Read what queue `qi`'s socket has (without blocking): one `recvmmsg` into the free
    /// receive buffers, parse in place, classify. Verdicts wait in `st.verdicts`. Returns
    /// the number of datagrams read.
    fn pump(&self, qi: usize, q: &QueueCtx, st: &mut QState) -> Result<usize, Error> {
        let (idx, nfree) = st.lendable();
        let QState {
            bufs, refs, lens, ..
        } = &mut *st;
        let it = bufs
            .iter_mut()
            .zip(refs.iter())
            .filter(|(_, &r)| r == 0)
            .map(|(b, _)| &mut b[..])
            .take(nfree);
        let n = match q.queue.socket().recv_many_iov(it, lens) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(Error::Io(e)),
        };
        st.read_filled(n);
        let lens = std::mem::take(&mut st.lens);
        self.absorb(qi, q, st, &idx[..n], &lens[..n], monotonic_ns());
        st.lens = lens;
        Ok(n)
    }

    /// Block in `recvmmsg` on queue `qi`'s socket (up to `wait`) without holding its lock:
    /// the free receive buffers are lent out meanwhile. Sends the waiting verdicts first.
    /// Returns the lock again, with what arrived classified; `now` becomes the time the
    /// wait ended.
    fn pump_direct<'a>(
        &'a self,
        qi: usize,
        q: &'a QueueCtx,
        mut st: MutexGuard<'a, QState>,
        wait: Duration,
        now: &mut i64,
    ) -> Result<MutexGuard<'a, QState>, Error> {
        st.flush(q.queue.socket(), self.sniff())?;
        let (idx, n) = st.lendable();
        let mut lent = std::mem::take(&mut st.lent);
        lent.clear();
        for &slot in &idx[..n] {
            st.refs[slot as usize] = LENT;
            lent.push(std::mem::take(&mut st.bufs[slot as usize]));
        }
        if n == 0 {
            st.lent = lent;
            return Ok(st);
        }
        // busy-poll first (no lock held: other threads go on), then sleep in the kernel for
        // the rest of `wait` (a multiple of DIRECT_STEP ≥ BUSY_POLL_MAX: the same value each
        // time, so SO_RCVTIMEO is rarely set again)
        let spin = Duration::from_nanos(self.busy_poll_ns.load(Ordering::Relaxed));
        let block = wait.saturating_sub(spin);
        if !block.is_zero() && st.rcvtimeo != block {
            q.queue.socket().set_rcvtimeo(block)?;
            st.rcvtimeo = block;
        }
        q.waiters.fetch_add(1, Ordering::Relaxed);
        drop(st);
        let mut lens = [0usize; SLOTS];
        let mut r = Ok(0);
        if !spin.is_zero() {
            let until = monotonic_ns() + spin.as_nanos() as i64;
            loop {
                r = match q
                    .queue
                    .socket()
                    .recv_many_iov(lent.iter_mut().map(|b| &mut b[..]), &mut lens)
                {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                    r => r,
                };
                if !matches!(r, Ok(0)) || monotonic_ns() >= until {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        if matches!(r, Ok(0)) && !block.is_zero() {
            r = q
                .queue
                .socket()
                .recv_many_iov_wait(lent.iter_mut().map(|b| &mut b[..]), &mut lens);
        }
        let t = monotonic_ns();
        *now = t;
        self.left_wait(q, t);
        let mut st = q.lock();
        for (b, &slot) in lent.drain(..).zip(&idx[..n]) {
            st.bufs[slot as usize] = b;
            st.refs[slot as usize] = 0;
        }
        st.lent = lent;
        let got = r.map_err(Error::Io)?;
        st.read_filled(got);
        self.absorb(qi, q, &mut st, &idx[..got], &lens[..got], t);
        Ok(st)
    }

    /// Parse and classify the datagrams just read into receive buffers `idx` (`lens` long).
    fn absorb(
        &self,
        qi: usize,
        q: &QueueCtx,
        st: &mut QState,
        idx: &[u16],
        lens: &[usize],
        now: i64,
    ) {
        for (&slot, &len) in idx.iter().zip(lens) {
            let buf = std::mem::take(&mut st.bufs[slot as usize]);
            let base = buf.as_ptr() as usize;
            for m in messages(&buf[..len]) {
                match nfqueue::parse(&m) {
                    QueueMsg::Packet(p) => {
                        let off = (p.payload.as_ptr() as usize).wrapping_sub(base) as u32;
                        self.on_packet(qi, q, st, &p, slot, off, now)
                    }
                    QueueMsg::Error(_) => st.netlink_errors += 1,
                    QueueMsg::Other => {}
                }
            }
            st.bufs[slot as usize] = buf;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_packet(
        &self,
        qi: usize,
        q: &QueueCtx,
        st: &mut QState,
        p: &QueuedPacket<'_>,
        slot: u16,
        off: u32,
        now: i64,
    ) {
        let qn = q.queue.num();
        // after shutdown(Recv) the rules are bypassed: whatever still arrives was queued
        // before and is delivered as usual
        if st.closing {
            return st.verdicts.accept(qn, p.id);
        }
        let Some(info) = lindivert_core::packet::parse(p.payload) else {
            // malformed: never matches, passes (as WinDivert)
            return st.verdicts.accept(qn, p.id);
        };
        let forward = self.layer == Layer::NetworkForward;
        let outbound = !forward && p.hook == Hook::Output.number() as u8;
        let if_idx = if forward || outbound {
            p.outdev
        } else {
            p.indev
        };
        let csum_ok = p.skb_info & nfqueue::SKB_CSUMNOTREADY == 0;
        let mut addr = Address::network(outbound);
        addr.layer = self.layer;
        addr.sniffed = self.sniff();
        addr.loopback = !forward && (p.outdev == 1 || p.indev == 1);
        addr.ipv6 = info.version == 6;
        addr.ip_checksum = true;
        addr.tcp_checksum = csum_ok;
        addr.udp_checksum = csum_ok;
        addr.data = LayerData::Network(NetworkData {
            if_idx,
            sub_if_idx: 0,
        });
        // unique per queue; the low bits name the queue
        let ts = ((now & !TS_QUEUE_MASK) | qi as i64).max(st.last_ts + TS_QUEUE_MASK + 1);
        st.last_ts = ts;
        addr.timestamp = ts;
        if !self.always && !self.filter.exact().matches(&info, &addr) {
            return st.verdicts.accept(qn, p.id);
        }
        let len = info.bytes.len();
        if self.flags.contains(Flags::DROP) {
            self.received.fetch_add(1, Ordering::Relaxed);
            st.verdicts.add(qn, p.id, nfqueue::NF_DROP, None, None);
            return;
        }
        let (id, flow) = if self.sniff() {
            st.verdicts.accept(qn, p.id);
            (None, 0)
        } else {
            (Some(p.id), pkt::flow_key(&info))
        };
        st.refs[slot as usize] += 1;
        st.entries.push_back(Entry {
            ts,
            id,
            flow,
            len: len as u32,
            data: Data::Slot { slot, off },
            addr,
            delivered: false,
            done: false,
        });
        st.rx_len += 1;
        st.rx_bytes += len + PACKET_OVERHEAD;
        self.enforce_limits(q, st);
    }

    /// QUEUE_LENGTH / QUEUE_SIZE: drop the oldest waiting packets until both hold.
    fn enforce_limits(&self, q: &QueueCtx, st: &mut QState) {
        let max_len = self.queue_length.load(Ordering::Relaxed) as usize;
        let max_size = self.queue_size.load(Ordering::Relaxed) as usize;
        while st.rx_len > max_len || (st.rx_len > 1 && st.rx_bytes > max_size) {
            let mut i = st.rx_start;
            while i < st.entries.len() && (st.entries[i].done || st.entries[i].delivered) {
                i += 1;
            }
            if i >= st.entries.len() {
                break;
            }
            st.rx_start = i;
            if let Some(id) = st.entries[i].id {
                st.verdicts
                    .add(q.queue.num(), id, nfqueue::NF_DROP, None, None);
            }
            self.dropped.fetch_add(1, Ordering::Relaxed);
            st.finish(i);
        }
    }

    /// Copy waiting packets of `st` into `buf` (up to `max`). `Ok(None)`: none waits.
    fn deliver(
        &self,
        st: &mut QState,
        buf: &mut [u8],
        addrs: &mut Vec<Address>,
        max: usize,
    ) -> Result<(usize, usize), Error> {
        let mut used = 0;
        let mut count = 0;
        let mut i = st.rx_start;
        while count < max && i < st.entries.len() {
            if st.entries[i].done {
                i += 1;
                continue;
            }
            let len = st.entries[i].len as usize;
            if used + len > buf.len() {
                if count == 0 {
                    st.rx_start = i;
                    return Err(Error::InsufficientBuffer { needed: len });
                }
                break;
            }
            let dst = &mut buf[used..used + len];
            dst.copy_from_slice(st.bytes(i).expect("a waiting packet has its bytes"));
            let e = &mut st.entries[i];
            addrs.push(e.addr);
            e.delivered = true;
            st.held += e.id.is_some() as usize;
            st.rx_len -= 1;
            st.rx_bytes -= len + PACKET_OVERHEAD;
            if e.id.is_none() {
                // a SNIFF copy: nothing more to wait for
                st.finish(i);
            } else if matches!(e.data, Data::Owned(_)) {
                let h = pkt::bytes_hash(dst);
                st.release(i);
                st.entries[i].data = Data::Hash(h);
            }
            used += len;
            count += 1;
            i += 1;
        }
        st.rx_start = i;
        Ok((used, count))
    }

    /// One attempt at queue `qi` (locked) at time `now` (CLOCK_MONOTONIC ns, read by the
    /// caller just before): expire, read the socket if nothing waits, deliver. `Ok(None)`:
    /// nothing to deliver.
    fn try_queue(
        &self,
        qi: usize,
        st: &mut QState,
        sink: &mut Sink<'_>,
        max: usize,
        read: bool,
        now: i64,
    ) -> Result<Option<usize>, Error> {
        let q = &self.queues[qi];
        let sniff = self.sniff();
        if !st.entries.is_empty() {
            self.expire(q, st, now);
        }
        // `read`: the socket was just read (pump_direct), verdicts sent
        let mut pumped = read;
        if st.rx_len == 0 && !read {
            // verdicts first: the kernel may be waiting for them
            st.flush(q.queue.socket(), sniff)?;
            self.pump(qi, q, st)?;
            pumped = true;
        }
        // the time of the last clock read (a visit reads it while its callbacks run)
        let mut t_end = now;
        let r = match sink {
            Sink::Copy { buf, addrs } => self.deliver(st, buf, addrs, max),
            Sink::Visit(f) => self.visit(qi, st, &mut **f, max, &mut t_end),
        };
        // Copy: after a read (what it accepted or dropped at once goes out), not when the
        // last buffered packet is delivered: its own send follows (as a rule at once) and
        // takes the held-back verdicts along (else the next recv, or the worker once the
        // application is idle, sends them). Visit: the verdicts are given; they go out once
        // nothing buffered is left (or enough wait), not after the first packet of a read
        // (one sendmsg per read instead of two when the application takes one at a time).
        let due = match sink {
            Sink::Copy { .. } => pumped || st.flush_full() || st.held_too_long(now),
            Sink::Visit(_) => st.flush_due(|| t_end),
        };
        if due || r.is_err() {
            st.flush(q.queue.socket(), sniff)?;
        }
        self.fit_maxlen(q, st);
        q.update_ready(st);
        let (used, count) = r?;
        if count > 0 {
            self.received.fetch_add(count as u64, Ordering::Relaxed);
            return Ok(Some(used));
        }
        Ok(None)
    }

    /// Show waiting packets of queue `qi` to `f` in place (up to `max`) and apply its
    /// verdicts. Returns (packets, packets) like `deliver` returns (bytes, packets).
    /// `t_end` (the call's clock on entry) becomes the time of the last clock read: while
    /// verdicts are held, the clock is read after 1, 2, 4, then every 8 packets (after
    /// every packet once callbacks take a few µs), and the verdicts go out before waiting
    /// for one more callback would make them older than [`HOLD_MAX_NS`].
    fn visit(
        &self,
        qi: usize,
        st: &mut QState,
        f: &mut dyn FnMut(&mut [u8], &mut Address) -> Verdict,
        max: usize,
        t_end: &mut i64,
    ) -> Result<(usize, usize), Error> {
        let q = &self.queues[qi];
        let qn = q.queue.num();
        let mut count = 0;
        let mut sent = 0u64;
        // packets since the last clock read, and how many to let pass before the next
        let (mut since, mut every) = (0usize, 1usize);
        let mut i = st.rx_start;
        let mut failed = None;
        while count < max && i < st.entries.len() {
            if st.entries[i].done || st.entries[i].delivered {
                i += 1;
                continue;
            }
            let QState {
                bufs,
                entries,
                held,
                verdicts,
                rx_len,
                rx_bytes,
                ..
            } = &mut *st;
            let e = &mut entries[i];
            let len = e.len as usize;
            let bytes: &mut [u8] = match &mut e.data {
                Data::Slot { slot, off } => {
                    let o = *off as usize;
                    &mut bufs[*slot as usize][o..o + len]
                }
                Data::Owned(v) => &mut v[..],
                // a waiting packet always has its bytes
                Data::Hash(_) | Data::Gone => {
                    i += 1;
                    continue;
                }
            };
            let mut addr = e.addr;
            let v = {
                let _guard = CallbackGuard::enter();
                f(bytes, &mut addr)
            };
            e.delivered = true;
            *held += e.id.is_some() as usize;
            *rx_len -= 1;
            *rx_bytes -= len + PACKET_OVERHEAD;
            count += 1;
            let keep = match (v, e.id) {
                (Verdict::Accept, Some(id)) => {
                    verdicts.accept(qn, id);
                    sent += 1;
                    false
                }
                (Verdict::Modified, Some(id)) => {
                    pkt::repair_checksums(bytes, &addr);
                    verdicts.add(qn, id, nfqueue::NF_ACCEPT, None, Some(bytes));
                    sent += 1;
                    false
                }
                (Verdict::Drop, Some(id)) => {
                    verdicts.add(qn, id, nfqueue::NF_DROP, None, None);
                    false
                }
                (Verdict::Keep, Some(_)) => {
                    e.addr = addr;
                    true
                }
                (Verdict::Modified, None) => {
                    // a SNIFF copy (its original has passed): the changed copy is a new
                    // packet (a failed injection counts as not sent)
                    pkt::repair_checksums(bytes, &addr);
                    let _ = self.inject(bytes);
                    false
                }
                // other SNIFF copies: the original has passed already
                (_, None) => false,
            };
            if !keep {
                // delivered already: finish only releases the bytes
                st.finish(i);
            }
            i += 1;
            if st.verdicts.is_empty() || count >= max || i >= st.entries.len() {
                // nothing held, or the caller decides next (with `t_end`)
                continue;
            }
            since += 1;
            if since < every {
                continue;
            }
            let t = monotonic_ns();
            let prev = std::mem::replace(t_end, t);
            let per = (t - prev) / since as i64;
            since = 0;
            every = if per >= HOLD_MAX_NS / 64 {
                1
            } else {
                (every * 2).min(8)
            };
            // verdicts first seen now were given since the previous read; one more
            // callback would make the oldest too old: send them now
            if st.too_old_by(prev, t + per) {
                if let Err(e) = st.flush_in_place(q.queue.socket(), self.sniff()) {
                    failed = Some(e);
                    break;
                }
            }
        }
        st.rx_start = i;
        if sent > 0 {
            self.sent.fetch_add(sent, Ordering::Relaxed);
        }
        match failed {
            None => Ok((count, count)),
            Some(e) => {
                // the callback saw them
                self.received.fetch_add(count as u64, Ordering::Relaxed);
                Err(Error::Io(e))
            }
        }
    }

    fn recv_into(
        &self,
        queue: Option<usize>,
        buf: &mut [u8],
        addrs: &mut Vec<Address>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize, Error> {
        self.recv_sink(queue, &mut Sink::Copy { buf, addrs }, max, timeout)
    }

    /// `recv_with`: see [`Handle::recv_with`].
    fn recv_visit(
        &self,
        queue: Option<usize>,
        f: &mut dyn FnMut(&mut [u8], &mut Address) -> Verdict,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize, Error> {
        check_batch(max)?;
        if self.flags.contains(Flags::RECV_ONLY) && !self.sniff() {
            return Err(Error::InvalidParameter(
                "recv_with on a RECV_ONLY handle (it cannot re-inject): use recv".into(),
            ));
        }
        if self.shutdown_send.load(Ordering::Acquire) && !self.sniff() {
            return Err(Error::NoData);
        }
        self.recv_sink(queue, &mut Sink::Visit(f), max, timeout)
    }

    /// A receive (see [`Inner::recv_sink_inner`]); on the way back to the application,
    /// wake the worker if it sleeps because every queue had a waiter: it takes over once
    /// the application is idle. (Not at the receive's own re-waits: the worker sleeps on
    /// while the application stays in `recv`.)
    fn recv_sink(
        &self,
        queue: Option<usize>,
        sink: &mut Sink<'_>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize, Error> {
        let r = self.recv_sink_inner(queue, sink, max, timeout);
        self.wake_parked_worker();
        r
    }

    fn recv_sink_inner(
        &self,
        queue: Option<usize>,
        sink: &mut Sink<'_>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize, Error> {
        if in_callback() {
            return Err(callback_error("recv"));
        }
        if self.flags.contains(Flags::SEND_ONLY) || self.flags.contains(Flags::DROP) {
            return Err(Error::InvalidParameter(
                "recv on a SEND_ONLY or DROP handle".into(),
            ));
        }
        // one clock for the whole call: CLOCK_MONOTONIC ns, refreshed after every wait
        let mut now = monotonic_ns();
        let deadline =
            timeout.map(|t| now.saturating_add(t.as_nanos().min(i64::MAX as u128) as i64));
        let nq = self.queues.len();
        let queue = queue.or((nq == 1).then_some(0));
        match queue {
            Some(qi) => self.queues[qi].last_activity.store(now, Ordering::Relaxed),
            None => self
                .queues
                .iter()
                .for_each(|q| q.last_activity.store(now, Ordering::Relaxed)),
        }
        let start = THREAD_SLOT.with(|c| {
            if c.get() == usize::MAX {
                c.set(self.rr.fetch_add(1, Ordering::Relaxed));
            }
            c.get()
        });
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            let mut direct = false;
            match queue {
                Some(qi) => {
                    let q = &self.queues[qi];
                    let mut st = q.lock();
                    if let Some(wait) = self.direct_wait(q, &st, deadline, now) {
                        st = self.pump_direct(qi, q, st, wait, &mut now)?;
                        direct = true;
                    }
                    if let Some(n) = self.try_queue(qi, &mut st, sink, max, direct, now)? {
                        return Ok(n);
                    }
                }
                None => {
                    for k in 0..nq {
                        let qi = (start + k) % nq;
                        let Some(mut st) = self.queues[qi].try_lock() else {
                            continue;
                        };
                        if let Some(n) = self.try_queue(qi, &mut st, sink, max, false, now)? {
                            return Ok(n);
                        }
                    }
                }
            }
            if self.shutdown_recv.load(Ordering::Acquire) {
                // rules are gone; whatever was queued has been read
                let more = match queue {
                    Some(qi) => self.queues[qi]
                        .queue
                        .socket()
                        .wait_readable(Some(Duration::ZERO))
                        .unwrap_or(false),
                    None => self.queues.iter().any(|q| {
                        q.queue
                            .socket()
                            .wait_readable(Some(Duration::ZERO))
                            .unwrap_or(false)
                    }),
                };
                if !more {
                    return Err(Error::NoData);
                }
                continue;
            }
            // wait outside the lock (on the queue socket and the "buffered" flag a pump
            // worker sets), waking up for QUEUE_TIME expiry at least every 100 ms
            let mut wait = Duration::from_millis(100);
            if let Some(d) = deadline {
                if now >= d {
                    return Err(Error::Timeout);
                }
                wait = wait.min(Duration::from_nanos((d - now) as u64));
            }
            if direct {
                // waited on the socket already
                continue;
            }
            let waiting: &[QueueCtx] = match queue {
                Some(qi) => std::slice::from_ref(&self.queues[qi]),
                None => &self.queues,
            };
            // alone on a single queue: the socket is all there is to wait for (no ready
            // flag needed); else the epoll set, which sees what other threads buffered
            let solo = queue.is_some() && waiting[0].waiters.load(Ordering::Relaxed) == 0;
            if !solo {
                waiting.iter().for_each(QueueCtx::enable_signal);
            }
            waiting
                .iter()
                .for_each(|q| _ = q.waiters.fetch_add(1, Ordering::Relaxed));
            let r = match queue {
                Some(qi) if solo => self.queues[qi].queue.socket().wait_readable(Some(wait)),
                Some(qi) => self.queues[qi].epoll.wait(Some(wait)),
                None => self.epoll.wait(Some(wait)),
            };
            now = monotonic_ns();
            waiting.iter().for_each(|q| self.left_wait(q, now));
            r?;
        }
    }

    /// How long a `recv` on `q` may block in `recvmmsg` on the socket itself: when nothing
    /// is buffered, no other thread waits on the queue, and at least `DIRECT_STEP` of the
    /// timeout is left. (Another thread that buffers packets meanwhile wakes nobody: the
    /// blocked one sees them at the latest after `DIRECT_MAX`.)
    fn direct_wait(
        &self,
        q: &QueueCtx,
        st: &QState,
        deadline: Option<i64>,
        now: i64,
    ) -> Option<Duration> {
        if st.rx_len != 0
            || st.closing
            || q.waiters.load(Ordering::Relaxed) != 0
            || self.shutdown_recv.load(Ordering::Acquire)
        {
            return None;
        }
        let left = match deadline {
            None => DIRECT_MAX,
            Some(d) if d > now => Duration::from_nanos((d - now) as u64).min(DIRECT_MAX),
            Some(_) => return None,
        };
        let steps = left.as_nanos() / DIRECT_STEP.as_nanos();
        (steps > 0).then(|| DIRECT_STEP * steps as u32)
    }

    /// The queued packet a send refers to: by its unique timestamp (when the flow matches
    /// too), else the flow's packet with equal original bytes, else the flow's oldest.
    /// Returns with the lock of its queue held in `cur`.
    fn find_queued<'a>(
        &'a self,
        cur: &mut Option<(usize, MutexGuard<'a, QState>)>,
        bytes: &[u8],
        addr: &Address,
        flow: &mut Option<u64>,
        hash: &mut Option<u64>,
    ) -> Result<Option<Found>, Error> {
        let nq = self.queues.len();
        let hint = (addr.timestamp & TS_QUEUE_MASK) as usize;
        if hint < nq {
            let st = self.lock_queue(cur, hint);
            if let Ok(idx) = st.entries.binary_search_by_key(&addr.timestamp, |e| e.ts) {
                let e = &st.entries[idx];
                if !e.done && e.id.is_some() {
                    if st.same_bytes(idx, bytes, hash) {
                        return Ok(Some(Found {
                            q: hint,
                            idx,
                            equal: true,
                        }));
                    }
                    if e.flow == flow_of(bytes, flow)? {
                        return Ok(Some(Found {
                            q: hint,
                            idx,
                            equal: false,
                        }));
                    }
                }
            }
        }
        let f = flow_of(bytes, flow)?;
        for k in 0..nq {
            let qi = (hint.min(nq - 1) + k) % nq;
            let st = self.lock_queue(cur, qi);
            let mut oldest = None;
            for (i, e) in st.entries.iter().enumerate() {
                if e.done || e.id.is_none() || e.flow != f {
                    continue;
                }
                if st.same_bytes(i, bytes, hash) {
                    return Ok(Some(Found {
                        q: qi,
                        idx: i,
                        equal: true,
                    }));
                }
                oldest.get_or_insert(i);
            }
            if let Some(idx) = oldest {
                return Ok(Some(Found {
                    q: qi,
                    idx,
                    equal: false,
                }));
            }
        }
        Ok(None)
    }

    /// Lock queue `qi` into `cur` (sending the verdicts due of the queue held before).
    fn lock_queue<'a, 'b>(
        &'a self,
        cur: &'b mut Option<(usize, MutexGuard<'a, QState>)>,
        qi: usize,
    ) -> &'b mut QState {
        if cur.as_ref().is_some_and(|(c, _)| *c != qi) {
            self.release_queue(cur);
        }
        if cur.is_none() {
            *cur = Some((qi, self.queues[qi].lock()));
        }
        &mut cur.as_mut().unwrap().1
    }

    fn release_queue(&self, cur: &mut Option<(usize, MutexGuard<'_, QState>)>) {
        if let Some((qi, mut st)) = cur.take() {
            let q = &self.queues[qi];
            if st.flush_due(monotonic_ns) {
                let _ = st.flush(q.queue.socket(), self.sniff());
            }
            self.fit_maxlen(q, &mut st);
            q.update_ready(&mut st);
        }
    }

    /// [`QState::fit_maxlen`] with this handle's QUEUE_LENGTH. A failed send leaves the old
    /// limit in place (tried again at the next call; a broken socket shows in the next
    /// verdict flush).
    fn fit_maxlen(&self, q: &QueueCtx, st: &mut QState) {
        let _ = st.fit_maxlen(&q.queue, self.queue_length.load(Ordering::Relaxed));
    }

    fn send_packets(&self, packets: &[u8], addrs: &[Address]) -> Result<usize, Error> {
        if in_callback() {
            return Err(callback_error("send"));
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if self.flags.contains(Flags::RECV_ONLY) {
            return Err(Error::InvalidParameter("send on a RECV_ONLY handle".into()));
        }
        if self.shutdown_send.load(Ordering::Acquire) {
            return Err(Error::NoData);
        }
        let mut cur: Option<(usize, MutexGuard<'_, QState>)> = None;
        let r = self.send_locked(&mut cur, packets, addrs);
        let flush = match cur.take() {
            Some((qi, mut st)) => {
                let q = &self.queues[qi];
                let r = if st.flush_due(monotonic_ns) {
                    st.flush(q.queue.socket(), self.sniff())
                } else {
                    Ok(())
                };
                q.update_ready(&mut st);
                r
            }
            None => Ok(()),
        };
        let n = r?;
        flush?;
        n
    }

    fn send_locked<'a>(
        &'a self,
        cur: &mut Option<(usize, MutexGuard<'a, QState>)>,
        packets: &[u8],
        addrs: &[Address],
    ) -> Result<Result<usize, Error>, Error> {
        let now = monotonic_ns();
        let mut off = 0;
        let mut last_err: Option<Error> = None;
        for addr in addrs {
            let rest = &packets[off..];
            if rest.len() < 20 {
                return Err(Error::InsufficientBuffer { needed: 20 });
            }
            let declared = match rest[0] >> 4 {
                4 => u16::from_be_bytes([rest[2], rest[3]]) as usize,
                6 if rest.len() >= 40 => u16::from_be_bytes([rest[4], rest[5]]) as usize + 40,
                6 => return Err(Error::InsufficientBuffer { needed: 40 }),
                v => {
                    return Err(Error::InvalidParameter(format!(
                        "not an IP packet (version {v})"
                    )))
                }
            };
            if declared > rest.len() || declared < 20 {
                return Err(Error::InsufficientBuffer { needed: declared });
            }
            let bytes = &rest[..declared];
            off += declared;
            let mut ttl_copy = None;
            if addr.impostor {
                let mut v = bytes.to_vec();
                if !decrement_ttl(&mut v) {
                    last_err = Some(Error::HopLimitExceeded);
                    continue;
                }
                ttl_copy = Some(v);
            }
            let fixed = || {
                let mut v = ttl_copy.clone().unwrap_or_else(|| bytes.to_vec());
                pkt::repair_checksums(&mut v, addr);
                v
            };
            let mut flow = None;
            let mut hash = None;
            match self.find_queued(cur, bytes, addr, &mut flow, &mut hash)? {
                Some(f) => {
                    let q = &self.queues[f.q];
                    let qn = q.queue.num();
                    let st = self.lock_queue(cur, f.q);
                    // first use of a packet: its queue is active
                    q.last_activity.store(now, Ordering::Relaxed);
                    let id = st.entries[f.idx].id.expect("queued packets have ids");
                    if f.equal && ttl_copy.is_none() {
                        st.verdicts.accept(qn, id);
                    } else {
                        let v = fixed();
                        st.verdicts.add(qn, id, nfqueue::NF_ACCEPT, None, Some(&v));
                    }
                    st.finish(f.idx);
                    self.sent.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    if let Err(e) = self.inject(&fixed()) {
                        last_err = Some(e);
                    }
                }
            }
        }
        Ok(match last_err {
            Some(e) => Err(e),
            None => Ok(off),
        })
    }

    /// Inject `bytes` as a new packet through the raw socket of its IP version (with the
    /// injection mark); counts it as sent and injected.
    fn inject(&self, bytes: &[u8]) -> Result<(), Error> {
        let sock = if bytes.first().is_some_and(|b| b >> 4 == 6) {
            &self.raw6
        } else {
            &self.raw4
        };
        let Some(sock) = sock else {
            return Err(Error::PermissionDenied {
                capability: "CAP_NET_RAW",
                operation: "injecting a new packet (raw socket)".into(),
            });
        };
        sock.send_packet(bytes).map_err(Error::Io)?;
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.injected.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A thread stops waiting on queue `q` at `now` (for a packet, a timeout step or the
    /// end of its `recv`; the worker is woken on the way back to the application, see
    /// [`Inner::wake_parked_worker`]): the wait counts as activity.
    fn left_wait(&self, q: &QueueCtx, now: i64) {
        q.last_activity.store(now, Ordering::Relaxed);
        q.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// Wake the worker if it sleeps because every queue had a waiter (called after the
    /// caller's last `left_wait`: SeqCst against the worker's flag store and waiter check,
    /// so a worker that parked before that decrement has its flag seen here).
    fn wake_parked_worker(&self) {
        if self.worker_parked.load(Ordering::SeqCst) {
            if let Some(t) = self.worker_thread.get() {
                t.unpark();
            }
        }
    }

    /// Every queue's `last_activity` folded into one number: it moves whenever a wait
    /// ends, a `recv` starts or a `send` uses a queue.
    fn activity_stamp(&self) -> i64 {
        self.queues.iter().fold(0i64, |a, q| {
            a.wrapping_add(q.last_activity.load(Ordering::Relaxed))
        })
    }

    /// Queue `queue`, or all of them.
    #[cfg(feature = "tokio")]
    fn waiting_queues(&self, queue: Option<usize>) -> impl Iterator<Item = &QueueCtx> {
        let range = match queue {
            Some(i) => i..i + 1,
            None => 0..self.queues.len(),
        };
        self.queues[range].iter()
    }

    /// Whether a thread waits in `recv` on every queue.
    fn all_waiting(&self) -> bool {
        self.queues
            .iter()
            .all(|q| q.waiters.load(Ordering::SeqCst) > 0)
    }

    /// The worker: while the application is idle on a queue, read that queue's socket
    /// (verdicts for non-matching packets, SNIFF copies and DROP handles right away), send
    /// held-back verdicts, enforce QUEUE_TIME.
    fn pump_worker(&self) {
        self.worker_thread.get_or_init(std::thread::current);
        let mut seen_activity = None;
        let drop_handle = self.flags.contains(Flags::DROP);
        let sniff = self.sniff();
        while !self.closed.load(Ordering::Acquire) {
            let now = monotonic_ns();
            let mut idle: Vec<usize> = Vec::with_capacity(self.queues.len());
            let mut min_busy = i64::MAX;
            for (i, q) in self.queues.iter().enumerate() {
                let b = if drop_handle { 0 } else { q.busy(now) };
                if b > 0 {
                    min_busy = min_busy.min(b);
                } else {
                    idle.push(i);
                }
            }
            if idle.is_empty() {
                let stamp = self.activity_stamp();
                let quiet = seen_activity.replace(stamp) == Some(stamp);
                if quiet && self.all_waiting() {
                    // the application waits on every socket and nothing came since the
                    // last look: sleep until a `recv` returns (`recv_sink`). The flag
                    // first, then the check: a `recv` that returns after the check sees
                    // the flag and wakes this thread.
                    self.worker_parked.store(true, Ordering::SeqCst);
                    if self.all_waiting() && !self.closed.load(Ordering::Acquire) {
                        std::thread::park_timeout(WORKER_PARK);
                    }
                    self.worker_parked.store(false, Ordering::SeqCst);
                } else {
                    std::thread::sleep(Duration::from_nanos(min_busy.max(100_000) as u64));
                }
                continue;
            }
            let mut wait = Duration::from_millis(50);
            if min_busy != i64::MAX {
                wait = wait.min(Duration::from_nanos(min_busy.max(100_000) as u64));
            }
            let mut buffered = false;
            let mut locked = Vec::new();
            for &i in &idle {
                let q = &self.queues[i];
                let Some(mut st) = q.try_lock() else {
                    // in use (by an application thread that may be off the CPU with the
                    // lock held): do not spin on its readable socket
                    locked.push(i);
                    continue;
                };
                let now = monotonic_ns();
                self.expire(q, &mut st, now);
                let got = self.pump(i, q, &mut st).unwrap_or(0);
                let _ = st.flush(q.queue.socket(), sniff);
                self.fit_maxlen(q, &mut st);
                q.update_ready(&mut st);
                buffered |= got > 0 && st.rx_len > 0;
                if let Some(d) = self.next_deadline(&st) {
                    wait = wait.min(Duration::from_nanos((d - now).max(0) as u64));
                }
            }
            if buffered || !locked.is_empty() {
                // packets wait for an application that is merely slow (or off the CPU):
                // read on in batches, not a wake-up per packet
                std::thread::sleep(WORKER_NAP.min(wait));
                continue;
            }
            let fds: Vec<_> = idle
                .iter()
                .map(|&i| self.queues[i].queue.socket().as_fd())
                .collect();
            let _ = wait_any_readable(&fds, Some(wait));
        }
    }

    fn close(&self) -> Result<(), Error> {
        // 1. no new packets: an accept rule at the head of every chain. (Deleting the chains
        // now would make the kernel drop every queued packet of the namespace.)
        let bypass = match self.table.lock().unwrap().as_mut() {
            Some(t) => t.bypass().map_err(Error::from_netlink),
            None => Ok(()),
        };
        // 2. accept everything still queued (not SNIFF copies: those were accepted already)
        for (qi, q) in self.queues.iter().enumerate() {
            let mut st = q.lock();
            st.closing = true;
            let qn = q.queue.num();
            for i in 0..st.entries.len() {
                if !st.entries[i].done {
                    if let Some(id) = st.entries[i].id {
                        st.verdicts.accept(qn, id);
                    }
                    st.finish(i);
                }
            }
            st.pop_done();
            st.entries.clear();
            st.rx_start = 0;
            let _ = st.flush(q.queue.socket(), self.sniff());
            let mut idle = 0;
            while idle < 2 {
                let r = self.pump(qi, q, &mut st);
                let _ = st.flush(q.queue.socket(), self.sniff());
                match r {
                    Ok(0) => {
                        idle += 1;
                        let _ = q
                            .queue
                            .socket()
                            .wait_readable(Some(Duration::from_millis(2)));
                    }
                    Ok(_) => idle = 0,
                    Err(_) => break,
                }
            }
            st.ready = true;
            st.rx_len = 0;
            q.update_ready(&mut st);
        }
        // 3. delete the table, unbind; the sockets close when the handle's memory goes
        let del = match self.table.lock().unwrap().as_mut() {
            Some(t) => t.delete().map_err(Error::from_netlink),
            None => Ok(()),
        };
        for q in &self.queues {
            let _ = q.queue.unbind();
        }
        *self.table.lock().unwrap() = None;
        bypass.and(del)
    }
}

/// The flow identity of `bytes` (computed once).
fn flow_of(bytes: &[u8], flow: &mut Option<u64>) -> Result<u64, Error> {
    if let Some(f) = *flow {
        return Ok(f);
    }
    let Some(info) = lindivert_core::packet::parse(bytes) else {
        return Err(Error::InvalidParameter("malformed IP packet".into()));
    };
    let f = pkt::flow_key(&info);
    *flow = Some(f);
    Ok(f)
}

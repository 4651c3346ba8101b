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
//! Matching a sent packet to its queued original: the library keeps, per flow identity
//! (version, addresses, protocol, ports), a FIFO of queued packet ids with a hash of their
//! original bytes. A send takes the queued packet of its flow whose original bytes are equal,
//! else the oldest of its flow; unchanged bytes give a plain ACCEPT (offload state kept),
//! changed bytes an ACCEPT with the new payload (checksums repaired where the address's
//! checksum bits are 0). A send that matches no queued packet (new, duplicated, or with
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
//! Every handle has a worker thread. While the application is busy in `recv`/`send` (it
//! called one within the last few milliseconds) the worker stays asleep and the calling
//! thread reads the queue socket itself (no hand-off on the fast path); when the
//! application is idle, the worker reads the socket: it accepts non-matching packets at
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
use crate::nftables::{self, Action, ChainSpec, Hook, Match, OwnerTable};
use crate::pkt;
use crate::sys::attr::messages;
use crate::sys::bpf::{prog_load, ProgType, LICENSE};
use crate::sys::netns::NetNs;
use crate::sys::poll::{Epoll, EventFlag};
use crate::sys::raw::RawIpSocket;
use crate::sys::time::monotonic_ns;
use lindivert_core::address::NetworkData;
use lindivert_core::packet::decrement_ttl;
use lindivert_core::types::{Param, Shutdown, BATCH_MAX};
use lindivert_core::{Address, Flags, Layer, LayerData};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

static HANDLE_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Bytes of bookkeeping counted per queued packet against QUEUE_SIZE (the address plus the
/// queue entry), as WinDivert counts its internal packet size rather than the raw bytes.
pub const PACKET_OVERHEAD: usize = 128;

/// The application counts as busy for this long after a `recv`/`send` call; meanwhile the
/// worker leaves the queue socket to it.
const BUSY_NS: i64 = 5_000_000;

/// The kernel queue's maximum length for a receive queue of `queue_length` packets: room
/// for the packets the application has received but not sent yet as well.
fn kernel_maxlen(queue_length: u64) -> u32 {
    (queue_length * 2).max(8192) as u32
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
}

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
        }
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

#[derive(Debug)]
struct RxPkt {
    id: Option<u32>,
    data: Vec<u8>,
    addr: Address,
}

#[derive(Debug)]
struct Pending {
    flow: u64,
    hash: u64,
    len: usize,
}

#[derive(Debug)]
struct State {
    rx: VecDeque<RxPkt>,
    rx_bytes: usize,
    pending: HashMap<u32, Pending>,
    by_flow: HashMap<u64, VecDeque<u32>>,
    expiry: VecDeque<(i64, u32)>,
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    verdicts: Verdicts,
    closing: bool,
    netlink_errors: u64,
}

#[derive(Debug)]
struct Inner {
    layer: Layer,
    flags: Flags,
    priority: i16,
    mark: u32,
    filter: PacketFilter,
    queue: Queue,
    table: Mutex<Option<OwnerTable>>,
    raw4: Option<RawIpSocket>,
    raw6: Option<RawIpSocket>,
    epoll: Epoll,
    ready: EventFlag,
    state: Mutex<State>,
    queue_length: AtomicU64,
    queue_time: AtomicU64,
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
    last_activity: AtomicI64,
}

/// An open divert handle. Dropping it closes it gracefully.
#[derive(Debug)]
pub struct Handle {
    inner: Arc<Inner>,
    worker: Mutex<Option<JoinHandle<()>>>,
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
            maxlen: kernel_maxlen(Param::QueueLength.default_value()),
            gso: o.gso,
            fail_open: false,
            rcvbuf: 32 << 20,
        };
        let start = (pid
            .wrapping_mul(2_654_435_761)
            .wrapping_add(n.wrapping_mul(7919))) as u16;
        let candidates = (0..1024u16).map(move |i| start.wrapping_add(i));
        let layer = o.layer;
        let filter2 = filter.clone();
        let use_ebpf = o.ebpf;
        let build = move || -> Result<_, Error> {
            let queue = Queue::bind_any(candidates, &qcfg).map_err(Error::from_netlink)?;
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
                            action: Action::Queue {
                                num: queue.num(),
                                bypass: false,
                            },
                        }
                    })
                    .collect()
            };
            let with_bpf = programs.iter().any(Option::is_some);
            let table = match OwnerTable::create(&table_name, &chains(with_bpf)) {
                Ok(t) => (t, with_bpf),
                // the compat bpf match may be missing (CONFIG_NETFILTER_XT_MATCH_BPF): fall
                // back to the native matches; user space checks every packet exactly
                Err(_) if with_bpf => (
                    OwnerTable::create(&table_name, &chains(false)).map_err(Error::from_netlink)?,
                    false,
                ),
                Err(e) => return Err(Error::from_netlink(e)),
            };
            drop(programs);
            let raw4 = RawIpSocket::open(false, mark).ok();
            let raw6 = RawIpSocket::open(true, mark).ok();
            let proc_queue = File::open("/proc/thread-self/net/netfilter/nfnetlink_queue").ok();
            Ok((queue, table, raw4, raw6, proc_queue, table_name))
        };
        let (queue, (table, ebpf), raw4, raw6, proc_queue, table_name) = match &ns {
            Some(ns) => ns.run(build).map_err(Error::Io)??,
            None => build()?,
        };
        let epoll = Epoll::new()?;
        let ready = EventFlag::new()?;
        epoll.add(queue.socket().as_fd(), 0)?;
        epoll.add(ready.as_fd(), 1)?;
        let st = State {
            rx: VecDeque::new(),
            rx_bytes: 0,
            pending: HashMap::new(),
            by_flow: HashMap::new(),
            expiry: VecDeque::new(),
            bufs: (0..64).map(|_| vec![0u8; nfqueue::RECV_BUF_LEN]).collect(),
            lens: vec![0; 64],
            verdicts: Verdicts::new(),
            closing: false,
            netlink_errors: 0,
        };
        let inner = Arc::new(Inner {
            layer: o.layer,
            flags: o.flags,
            priority: o.priority,
            mark,
            filter,
            queue,
            table: Mutex::new(Some(table)),
            raw4,
            raw6,
            epoll,
            ready,
            state: Mutex::new(st),
            queue_length: AtomicU64::new(Param::QueueLength.default_value()),
            queue_time: AtomicU64::new(Param::QueueTime.default_value()),
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
            last_activity: AtomicI64::new(0),
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
        let n = self.inner.recv_into(buf, &mut addrs, 1, timeout)?;
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
        if max == 0 || max > BATCH_MAX {
            return Err(Error::InvalidParameter(format!(
                "batch size {max} outside 1..=255"
            )));
        }
        self.inner.recv_into(buf, addrs, max, timeout)
    }

    /// `WinDivertSend`: re-inject `packet` (or inject a new one). Returns the bytes sent.
    pub fn send(&self, packet: &[u8], addr: &Address) -> Result<usize, Error> {
        self.inner.send_packets(packet, std::slice::from_ref(addr))
    }

    /// `WinDivertSendEx` batch: `packets` back to back, one address each (≤ 255).
    pub fn send_batch(&self, packets: &[u8], addrs: &[Address]) -> Result<usize, Error> {
        if addrs.is_empty() || addrs.len() > BATCH_MAX {
            return Err(Error::InvalidParameter(format!(
                "batch size {} outside 1..=255",
                addrs.len()
            )));
        }
        self.inner.send_packets(packets, addrs)
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
                self.inner.queue.set_maxlen(kernel_maxlen(value))?;
                self.inner.queue_length.store(value, Ordering::Relaxed);
            }
            Param::QueueTime => self.inner.queue_time.store(value, Ordering::Relaxed),
            Param::QueueSize => self.inner.queue_size.store(value, Ordering::Relaxed),
            Param::VersionMajor | Param::VersionMinor => unreachable!("read-only"),
        }
        Ok(())
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

    /// The nfqueue number this handle bound.
    pub fn queue_num(&self) -> u16 {
        self.inner.queue.num()
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

impl AsRawFd for Handle {
    /// A descriptor that is readable when `recv` may have a packet (an epoll set of the queue
    /// socket and an internal "buffered" flag). Poll it, then call `recv_timeout` with a zero
    /// timeout.
    fn as_raw_fd(&self) -> RawFd {
        self.inner.epoll.as_raw_fd()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.close_inner();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
        for line in s.lines() {
            let v: Vec<&str> = line.split_whitespace().collect();
            if v.len() >= 7 && v[0].parse::<u16>().ok() == Some(self.queue.num()) {
                let q: u64 = v[5].parse().unwrap_or(0);
                let u: u64 = v[6].parse().unwrap_or(0);
                return q + u;
            }
        }
        0
    }

    fn update_ready(&self, st: &State) {
        if st.rx.is_empty() {
            self.ready.clear();
        } else {
            self.ready.set();
        }
    }

    /// Drop queued packets past QUEUE_TIME.
    fn expire(&self, st: &mut State, now: i64) {
        while let Some(&(deadline, id)) = st.expiry.front() {
            if deadline > now {
                break;
            }
            st.expiry.pop_front();
            if let Some(p) = st.pending.remove(&id) {
                remove_from_flow(&mut st.by_flow, p.flow, id);
                st.verdicts
                    .add(self.queue.num(), id, nfqueue::NF_DROP, None, None);
                self.expired.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Read what the queue socket has (without blocking), classify, queue verdicts, flush.
    /// Returns the number of datagrams read.
    fn pump(&self, st: &mut State) -> Result<usize, Error> {
        let mut bufs = std::mem::take(&mut st.bufs);
        let mut lens = std::mem::take(&mut st.lens);
        let r = self.queue.socket().recv_many(&mut bufs, &mut lens);
        let n = match r {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => {
                st.bufs = bufs;
                st.lens = lens;
                return Err(Error::Io(e));
            }
        };
        let now = monotonic_ns();
        for i in 0..n {
            for m in messages(&bufs[i][..lens[i]]) {
                match nfqueue::parse(&m) {
                    QueueMsg::Packet(p) => self.on_packet(st, &p, now),
                    QueueMsg::Error(_) => st.netlink_errors += 1,
                    QueueMsg::Other => {}
                }
            }
        }
        st.bufs = bufs;
        st.lens = lens;
        st.verdicts.flush(self.queue.socket())?;
        Ok(n)
    }

    fn on_packet(&self, st: &mut State, p: &QueuedPacket<'_>, now: i64) {
        let qn = self.queue.num();
        let accept = |st: &mut State| st.verdicts.add(qn, p.id, nfqueue::NF_ACCEPT, None, None);
        // after shutdown(Recv) the rules are bypassed: whatever still arrives was queued
        // before and is delivered as usual
        if st.closing {
            return accept(st);
        }
        let Some(info) = lindivert_core::packet::parse(p.payload) else {
            // malformed: never matches, passes (as WinDivert)
            return accept(st);
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
        addr.timestamp = now;
        addr.sniffed = self.flags.contains(Flags::SNIFF);
        addr.loopback = !forward && (p.outdev == 1 || p.indev == 1);
        addr.ipv6 = info.version == 6;
        addr.ip_checksum = true;
        addr.tcp_checksum = csum_ok;
        addr.udp_checksum = csum_ok;
        addr.data = LayerData::Network(NetworkData {
            if_idx,
            sub_if_idx: 0,
        });
        if !self.filter.exact().matches(&info, &addr) {
            return accept(st);
        }
        let data = info.bytes;
        if self.flags.contains(Flags::DROP) {
            self.received.fetch_add(1, Ordering::Relaxed);
            st.verdicts.add(qn, p.id, nfqueue::NF_DROP, None, None);
            return;
        }
        let id = if self.flags.contains(Flags::SNIFF) {
            accept(st);
            None
        } else {
            let flow = pkt::flow_key(&info);
            st.pending.insert(
                p.id,
                Pending {
                    flow,
                    hash: pkt::bytes_hash(data),
                    len: data.len(),
                },
            );
            st.by_flow.entry(flow).or_default().push_back(p.id);
            let qt = self.queue_time.load(Ordering::Relaxed) as i64 * 1_000_000;
            st.expiry.push_back((now + qt, p.id));
            Some(p.id)
        };
        st.rx_bytes += data.len() + PACKET_OVERHEAD;
        st.rx.push_back(RxPkt {
            id,
            data: data.to_vec(),
            addr,
        });
        self.enforce_limits(st);
    }

    /// QUEUE_LENGTH / QUEUE_SIZE: drop the oldest waiting packets until both hold.
    fn enforce_limits(&self, st: &mut State) {
        let max_len = self.queue_length.load(Ordering::Relaxed) as usize;
        let max_size = self.queue_size.load(Ordering::Relaxed) as usize;
        while st.rx.len() > max_len || (st.rx.len() > 1 && st.rx_bytes > max_size) {
            let Some(old) = st.rx.pop_front() else { break };
            st.rx_bytes -= old.data.len() + PACKET_OVERHEAD;
            match old.id {
                Some(id) => {
                    // (an id no longer pending expired meanwhile: counted there)
                    if let Some(pd) = st.pending.remove(&id) {
                        remove_from_flow(&mut st.by_flow, pd.flow, id);
                        st.verdicts
                            .add(self.queue.num(), id, nfqueue::NF_DROP, None, None);
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn recv_into(
        &self,
        buf: &mut [u8],
        addrs: &mut Vec<Address>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize, Error> {
        if self.flags.contains(Flags::SEND_ONLY) || self.flags.contains(Flags::DROP) {
            return Err(Error::InvalidParameter(
                "recv on a SEND_ONLY or DROP handle".into(),
            ));
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        self.last_activity.store(monotonic_ns(), Ordering::Relaxed);
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            {
                let mut st = self.lock();
                self.expire(&mut st, monotonic_ns());
                if st.rx.is_empty() {
                    self.pump(&mut st)?;
                }
                let mut used = 0;
                let mut count = 0;
                while count < max {
                    let Some(front) = st.rx.front() else { break };
                    if let Some(id) = front.id {
                        if !st.pending.contains_key(&id) {
                            // expired or dropped meanwhile
                            let old = st.rx.pop_front().unwrap();
                            st.rx_bytes -= old.data.len() + PACKET_OVERHEAD;
                            continue;
                        }
                    }
                    let len = front.data.len();
                    if used + len > buf.len() {
                        if count == 0 {
                            self.update_ready(&st);
                            st.verdicts.flush(self.queue.socket())?;
                            return Err(Error::InsufficientBuffer { needed: len });
                        }
                        break;
                    }
                    let p = st.rx.pop_front().unwrap();
                    st.rx_bytes -= len + PACKET_OVERHEAD;
                    buf[used..used + len].copy_from_slice(&p.data);
                    used += len;
                    addrs.push(p.addr);
                    count += 1;
                }
                st.verdicts.flush(self.queue.socket())?;
                self.update_ready(&st);
                if count > 0 {
                    self.received.fetch_add(count as u64, Ordering::Relaxed);
                    return Ok(used);
                }
                if self.shutdown_recv.load(Ordering::Acquire) {
                    // rules are gone; whatever was queued has been read
                    let more = self
                        .queue
                        .socket()
                        .wait_readable(Some(Duration::ZERO))
                        .unwrap_or(false);
                    if !more {
                        return Err(Error::NoData);
                    }
                    continue;
                }
            }
            // wait outside the lock (on the queue socket and the "buffered" flag a pump
            // worker sets), waking up for QUEUE_TIME expiry at least every 100 ms
            let mut wait = Duration::from_millis(100);
            if let Some(d) = deadline {
                let now = Instant::now();
                if now >= d {
                    return Err(Error::Timeout);
                }
                wait = wait.min(d - now);
            }
            self.epoll.wait(Some(wait))?;
        }
    }

    fn send_packets(&self, packets: &[u8], addrs: &[Address]) -> Result<usize, Error> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if self.flags.contains(Flags::RECV_ONLY) {
            return Err(Error::InvalidParameter("send on a RECV_ONLY handle".into()));
        }
        if self.shutdown_send.load(Ordering::Acquire) {
            return Err(Error::NoData);
        }
        let qn = self.queue.num();
        self.last_activity.store(monotonic_ns(), Ordering::Relaxed);
        let mut st = self.lock();
        self.expire(&mut st, monotonic_ns());
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
            let Some(info) = lindivert_core::packet::parse(bytes) else {
                return Err(Error::InvalidParameter("malformed IP packet".into()));
            };
            let flow = pkt::flow_key(&info);
            let hash = pkt::bytes_hash(bytes);
            let mut ttl_copy = None;
            if addr.impostor {
                let mut v = bytes.to_vec();
                if !decrement_ttl(&mut v) {
                    last_err = Some(Error::HopLimitExceeded);
                    continue;
                }
                ttl_copy = Some(v);
            }
            let fix = !addr.ip_checksum || !addr.tcp_checksum || !addr.udp_checksum;
            let fixed = || {
                let mut v = ttl_copy.clone().unwrap_or_else(|| bytes.to_vec());
                if fix {
                    pkt::repair_checksums(&mut v, addr);
                }
                v
            };
            match take_queued(&mut st, flow, hash) {
                Some((id, p)) => {
                    if p.hash == hash && p.len == bytes.len() && ttl_copy.is_none() {
                        st.verdicts.add(qn, id, nfqueue::NF_ACCEPT, None, None);
                    } else {
                        let v = fixed();
                        st.verdicts.add(qn, id, nfqueue::NF_ACCEPT, None, Some(&v));
                    }
                    self.sent.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    let v = fixed();
                    let sock = if info.version == 6 {
                        &self.raw6
                    } else {
                        &self.raw4
                    };
                    match sock.as_ref().map(|s| s.send_packet(&v)) {
                        Some(Ok(_)) => {
                            self.sent.fetch_add(1, Ordering::Relaxed);
                            self.injected.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Err(e)) => last_err = Some(Error::Io(e)),
                        None => {
                            last_err = Some(Error::PermissionDenied {
                                capability: "CAP_NET_RAW",
                                operation: "injecting a new packet (raw socket)".into(),
                            })
                        }
                    }
                }
            }
        }
        st.verdicts.flush(self.queue.socket())?;
        match last_err {
            Some(e) => Err(e),
            None => Ok(off),
        }
    }

    /// The worker: while the application is idle, read the queue socket (verdicts for
    /// non-matching packets, SNIFF copies and DROP handles right away), enforce QUEUE_TIME.
    fn pump_worker(&self) {
        let drop_handle = self.flags.contains(Flags::DROP);
        while !self.closed.load(Ordering::Acquire) {
            let now = monotonic_ns();
            let busy_for = BUSY_NS - (now - self.last_activity.load(Ordering::Relaxed));
            if !drop_handle && busy_for > 0 {
                std::thread::sleep(Duration::from_nanos(busy_for as u64));
                continue;
            }
            let next_expiry = self.lock().expiry.front().map(|&(d, _)| d);
            let mut wait = Duration::from_millis(50);
            if let Some(d) = next_expiry {
                wait = wait.min(Duration::from_nanos((d - now).max(0) as u64));
            }
            let readable = self
                .queue
                .socket()
                .wait_readable(Some(wait))
                .unwrap_or(false);
            if self.closed.load(Ordering::Acquire) {
                break;
            }
            let now = monotonic_ns();
            let mut st = self.lock();
            let due = st.expiry.front().is_some_and(|&(d, _)| d <= now);
            if !readable && !due {
                continue;
            }
            self.expire(&mut st, now);
            let _ = self.pump(&mut st);
            let _ = st.verdicts.flush(self.queue.socket());
            self.update_ready(&st);
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
        let mut st = self.lock();
        st.closing = true;
        let qn = self.queue.num();
        let ids: Vec<u32> = st.pending.keys().copied().collect();
        for id in ids {
            st.verdicts.add(qn, id, nfqueue::NF_ACCEPT, None, None);
        }
        st.pending.clear();
        st.by_flow.clear();
        st.expiry.clear();
        st.rx.clear();
        st.rx_bytes = 0;
        let _ = st.verdicts.flush(self.queue.socket());
        let mut idle = 0;
        while idle < 2 {
            match self.pump(&mut st) {
                Ok(0) => {
                    idle += 1;
                    let _ = self
                        .queue
                        .socket()
                        .wait_readable(Some(Duration::from_millis(2)));
                }
                Ok(_) => idle = 0,
                Err(_) => break,
            }
        }
        self.ready.clear();
        drop(st);
        // 3. delete the table, unbind; the sockets close when the handle's memory goes
        let del = match self.table.lock().unwrap().as_mut() {
            Some(t) => t.delete().map_err(Error::from_netlink),
            None => Ok(()),
        };
        let _ = self.queue.unbind();
        *self.table.lock().unwrap() = None;
        bypass.and(del)
    }
}

fn remove_from_flow(by_flow: &mut HashMap<u64, VecDeque<u32>>, flow: u64, id: u32) {
    if let Some(q) = by_flow.get_mut(&flow) {
        if let Some(i) = q.iter().position(|&x| x == id) {
            q.remove(i);
        }
        if q.is_empty() {
            by_flow.remove(&flow);
        }
    }
}

/// The queued packet a send refers to: same flow, equal original bytes first, else the
/// oldest of the flow.
fn take_queued(st: &mut State, flow: u64, hash: u64) -> Option<(u32, Pending)> {
    let q = st.by_flow.get_mut(&flow)?;
    let idx = q
        .iter()
        .position(|id| st.pending.get(id).map(|p| p.hash) == Some(hash))
        .unwrap_or(0);
    let id = q.remove(idx)?;
    if q.is_empty() {
        st.by_flow.remove(&flow);
    }
    let p = st.pending.remove(&id)?;
    Some((id, p))
}

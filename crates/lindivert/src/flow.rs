//! The FLOW layer: ESTABLISHED and DELETED events of TCP connections and UDP flows, with the
//! process that owns them, from cgroup-v2 eBPF hooks.
//!
//! Mechanism ([`lindivert_core::filter::ebpf_flow`] generates the programs): process ids are
//! captured in process context (`connect`, `sendmsg`, `post_bind`, `listen`) and kept per
//! socket cookie; TCP connections are reported by `sock_ops` (`ACTIVE_ESTABLISHED_CB` =
//! outbound, `PASSIVE_ESTABLISHED_CB` = inbound with the listener's process and cookie as
//! parent; `STATE_CB` to `TCP_CLOSE` = DELETED); UDP flows are (socket, remote address,
//! remote port) triples created by their first packet in `cgroup_skb` egress (outbound) or
//! ingress (inbound), refreshed by every packet, and DELETED when no packet passed for the
//! inactivity timeout ([`DEFAULT_UDP_TIMEOUT`], checked by user space while the handle
//! waits) or at once when the socket is released. The filter runs in the kernel (with the
//! direction and protocol known per program), and again in user space.
//!
//! Why not conntrack: conntrack would have to be switched on in the namespace (changing its
//! behaviour and costing every packet), has no socket cookie, sees a loopback connection as
//! one entry instead of two endpoints, and would still need these hooks for the process ids.
//!
//! Differences from WinDivert (for `docs/DIFFERENCES.md`): a connection accepted on a
//! listener that was listening before the handle was opened has process id 0 and parent 0;
//! an outbound connection whose socket connected before the handle opened cannot be seen
//! anyway; a UDP socket that was bound or connected before the handle was opened and only
//! receives has process id 0 (or, on kernels without `bpf_get_netns_cookie` for
//! `cgroup_skb`, is not seen); DELETED comes only for flows established while the handle was
//! open; IPv6 UDP packets with extension headers before the UDP header are not seen.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lindivert_core::filter::ebpf_flow::{
    self, FlowConfig, FlowHook, FlowMaps, FlowRecord, PORTS_VALUE_SIZE, SOCKS_VALUE_SIZE,
    TCPFLOWS_VALUE_SIZE, UDP_KEY_SIZE, UDP_VALUE_SIZE,
};
use lindivert_core::filter::Filter;
use lindivert_core::{Address, Event, Flags, Layer, Shutdown};

use crate::error::Error;
use crate::registry::{HandleInfo, Registration};
use crate::sys::bpf::{self, LoadOptions, Map, MapType, ProgType};
use crate::sys::cgroup::{self, Cgroup};
use crate::sys::netns::NetNs;
use crate::sys::poll::{Epoll, EventFlag, Readiness, Timer};
use crate::sys::ringbuf::RingBuf;

/// The default UDP inactivity timeout (WFP's idle timeout for UDP flows is 60 s).
pub const DEFAULT_UDP_TIMEOUT: Duration = Duration::from_secs(60);
const RINGBUF_SIZE: u32 = 4 << 20;
const LRU_HASH: MapType = MapType(9);

/// Options for [`FlowHandle::open_with`].
#[derive(Debug, Clone)]
pub struct FlowOptions {
    filter: String,
    priority: i16,
    flags: Flags,
    netns: Option<PathBuf>,
    udp_timeout: Duration,
}

impl FlowOptions {
    /// Options for `filter`, priority 0, flags `SNIFF | RECV_ONLY`.
    pub fn new(filter: &str) -> FlowOptions {
        FlowOptions {
            filter: filter.to_string(),
            priority: 0,
            flags: Flags::SNIFF | Flags::RECV_ONLY,
            netns: None,
            udp_timeout: DEFAULT_UDP_TIMEOUT,
        }
    }

    /// The priority (accepted for compatibility).
    pub fn priority(mut self, p: i16) -> Self {
        self.priority = p;
        self
    }

    /// The flags (must include `SNIFF | RECV_ONLY`).
    pub fn flags(mut self, f: Flags) -> Self {
        self.flags = f;
        self
    }

    /// Watch the namespace at `path` instead of the calling thread's.
    pub fn netns_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.netns = Some(path.into());
        self
    }

    /// The UDP inactivity timeout (at least 100 ms).
    pub fn udp_timeout(mut self, t: Duration) -> Self {
        self.udp_timeout = t.max(Duration::from_millis(100));
        self
    }

    /// Open the handle.
    pub fn open(self) -> Result<FlowHandle, Error> {
        FlowHandle::open_with(self)
    }
}

struct Attached {
    hook: FlowHook,
    // The link goes first, then the program.
    _link: OwnedFd,
    _prog: OwnedFd,
}

struct UdpFlow {
    established: Address,
}

struct RecvState {
    ring: RingBuf,
    pending: VecDeque<Address>,
    udp: HashMap<[u8; UDP_KEY_SIZE as usize], UdpFlow>,
    next_scan: Instant,
    /// What `ready` ("events are queued, or the handle is shut down") and `timer` (the next
    /// UDP scan) say.
    readiness: Readiness,
}

/// A FLOW-layer handle (WinDivert `WINDIVERT_LAYER_FLOW`).
///
/// Reports ESTABLISHED and DELETED events (never blocks anything: FLOW requires
/// `SNIFF | RECV_ONLY`) as [`Address`]es whose [`flow_data`](Address::flow_data) names the
/// flow's endpoints, protocol and process. Needs `CAP_NET_ADMIN` and `CAP_BPF` (or
/// `CAP_SYS_ADMIN`).
///
/// ```no_run
/// use lindivert::core::Event;
/// use lindivert::flow::{FlowHandle, FlowOptions};
/// use lindivert::Flags;
/// use std::time::Duration;
///
/// # fn main() -> Result<(), lindivert::Error> {
/// let h = FlowHandle::open("tcp and remotePort == 443", 0, Flags::SNIFF | Flags::RECV_ONLY)?;
/// let addr = h.recv()?;
/// let f = addr.flow_data().expect("a FLOW address");
/// let what = if addr.event == Event::FlowEstablished { "new" } else { "gone" };
/// println!("{what}: pid {} [{}]:{} -> [{}]:{}", f.process_id,
///          f.local_addr, f.local_port, f.remote_addr, f.remote_port);
/// h.close()?;
///
/// // UDP flows in another namespace, ended after 5 s without packets.
/// let h = FlowOptions::new("udp")
///     .udp_timeout(Duration::from_secs(5))
///     .netns_path("/var/run/netns/test")
///     .open()?;
/// match h.recv_timeout(Some(Duration::from_secs(1))) {
///     Ok(addr) => println!("{:?} {:?}", addr.event, addr.flow_data()),
///     Err(lindivert::Error::Timeout) => println!("no UDP flow within 1 s"),
///     Err(e) => return Err(e),
/// }
/// # Ok(())
/// # }
/// ```
pub struct FlowHandle {
    filter: Filter,
    flags: Flags,
    priority: i16,
    netns_cookie: u64,
    config: FlowConfig,
    udp_timeout: Duration,
    attached: Mutex<Vec<Attached>>,
    recv: Mutex<RecvState>,
    /// The pollable descriptor: the ring buffer, `ready` and `timer`.
    epoll: Epoll,
    ready: EventFlag,
    timer: Timer,
    recv_shut: AtomicBool,
    udpflows: Map,
    _maps: Vec<Map>,
    _ringbuf: Map,
    _registration: Registration,
}

impl std::fmt::Debug for FlowHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowHandle")
            .field("flags", &self.flags)
            .field("priority", &self.priority)
            .field("netns_cookie", &self.netns_cookie)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn load(
    obj: &lindivert_core::filter::Object,
    hook: FlowHook,
    cfg: &FlowConfig,
) -> Result<OwnedFd, Error> {
    let insns = ebpf_flow::hook_program(obj, hook, cfg)
        .map_err(|e| Error::InvalidParameter(format!("{hook:?} program: {e}")))?;
    bpf::prog_load_with(
        ProgType(hook.prog_type()),
        &insns,
        &LoadOptions {
            name: hook.name(),
            expected_attach_type: hook.attach_type(),
            ..LoadOptions::default()
        },
    )
    .map_err(|e| Error::from_bpf(&format!("loading the FLOW {hook:?} program"), e))
}

impl FlowHandle {
    /// `WinDivertOpen(filter, WINDIVERT_LAYER_FLOW, priority, flags)` for the calling
    /// thread's network namespace.
    pub fn open(filter: &str, priority: i16, flags: Flags) -> Result<FlowHandle, Error> {
        FlowOptions::new(filter)
            .priority(priority)
            .flags(flags)
            .open()
    }

    /// Open with options.
    pub fn open_with(o: FlowOptions) -> Result<FlowHandle, Error> {
        o.flags
            .validate_for(Layer::Flow)
            .map_err(|e| Error::InvalidParameter(e.to_string()))?;
        if !(-30000..=30000).contains(&o.priority) {
            return Err(Error::InvalidParameter(format!(
                "priority {} outside -30000..=30000",
                o.priority
            )));
        }
        let filter = Filter::compile(&o.filter, Layer::Flow).map_err(|e| Error::InvalidFilter {
            message: e.to_string(),
            position: e.pos,
        })?;
        let ns = match &o.netns {
            Some(p) => Some(NetNs::open(p).map_err(|e| {
                Error::InvalidParameter(format!("network namespace {}: {e}", p.display()))
            })?),
            None => None,
        };
        let netns_cookie = match &ns {
            Some(ns) => ns.run(cgroup::current_netns_cookie)??,
            None => cgroup::current_netns_cookie()?,
        };
        let ringbuf = Map::ringbuf(RINGBUF_SIZE, "ld_flow_events")
            .map_err(|e| Error::from_bpf("creating the event ring buffer", e))?;
        let ring = RingBuf::new(ringbuf.as_fd(), RINGBUF_SIZE as usize)?;
        let socks = Map::create(LRU_HASH, 8, SOCKS_VALUE_SIZE, 65536, 0, "ld_flow_socks")
            .map_err(|e| Error::from_bpf("creating the socks map", e))?;
        let ports = Map::hash(4, PORTS_VALUE_SIZE, 65536, "ld_flow_ports")
            .map_err(|e| Error::from_bpf("creating the ports map", e))?;
        let tcpflows = Map::create(LRU_HASH, 8, TCPFLOWS_VALUE_SIZE, 65536, 0, "ld_flow_tcp")
            .map_err(|e| Error::from_bpf("creating the tcpflows map", e))?;
        let udpflows = Map::create(
            LRU_HASH,
            UDP_KEY_SIZE,
            UDP_VALUE_SIZE,
            65536,
            0,
            "ld_flow_udp",
        )
        .map_err(|e| Error::from_bpf("creating the udpflows map", e))?;
        let (established, deleted, tcp, udp) = FlowConfig::analyze(filter.object());
        let mut cfg = FlowConfig {
            netns_cookie,
            established,
            deleted,
            tcp,
            udp,
            skb_netns_helper: true,
            udp_timeout_ns: o.udp_timeout.as_nanos() as u64,
            maps: FlowMaps {
                ringbuf: ringbuf.as_fd().as_raw_fd(),
                socks: socks.as_fd().as_raw_fd(),
                ports: ports.as_fd().as_raw_fd(),
                tcpflows: tcpflows.as_fd().as_raw_fd(),
                udpflows: udpflows.as_fd().as_raw_fd(),
            },
        };
        let root = Cgroup::root().map_err(|e| Error::MissingKernelFeature {
            feature: "a cgroup2 file system (CONFIG_CGROUP_BPF)",
            source: e,
        })?;
        // Load everything first, then attach (pid recorders before the event programs).
        let mut progs = Vec::new();
        for hook in FlowHook::ALL {
            if !hook.needed(&cfg) {
                continue;
            }
            let prog = match load(filter.object(), hook, &cfg) {
                Err(_)
                    if matches!(hook, FlowHook::Egress | FlowHook::Ingress)
                        && cfg.skb_netns_helper =>
                {
                    // No bpf_get_netns_cookie for cgroup_skb on this kernel.
                    cfg.skb_netns_helper = false;
                    load(filter.object(), hook, &cfg)?
                }
                r => r?,
            };
            progs.push((hook, prog));
        }
        let mut attached = Vec::new();
        for (hook, prog) in progs {
            let link =
                cgroup::link_create(prog.as_fd(), root.fd(), hook.attach_type()).map_err(|e| {
                    match e.raw_os_error() {
                        Some(libc::EPERM) | Some(libc::EACCES) => Error::PermissionDenied {
                            capability: "CAP_NET_ADMIN and CAP_BPF",
                            operation: format!("attaching the FLOW {hook:?} program"),
                        },
                        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(524) => {
                            Error::MissingKernelFeature {
                                feature:
                                    "BPF links for cgroup hooks (Linux >= 5.7, CONFIG_CGROUP_BPF)",
                                source: e,
                            }
                        }
                        _ => Error::Io(e),
                    }
                })?;
            attached.push(Attached {
                hook,
                _link: link,
                _prog: prog,
            });
        }
        let epoll = Epoll::new()?;
        epoll.add(ringbuf.as_fd(), 0)?;
        let ready = EventFlag::new()?;
        epoll.add(ready.as_fd(), 1)?;
        let timer = Timer::new()?;
        epoll.add(timer.as_fd(), 2)?;
        let registration = Registration::create(
            ns.as_ref(),
            &HandleInfo::now(
                Layer::Flow,
                o.priority,
                o.flags,
                lindivert_core::filter::object::encode(filter.object()),
            ),
        )?;
        Ok(FlowHandle {
            filter,
            flags: o.flags,
            priority: o.priority,
            netns_cookie,
            config: cfg,
            udp_timeout: o.udp_timeout,
            attached: Mutex::new(attached),
            recv: Mutex::new(RecvState {
                ring,
                pending: VecDeque::new(),
                udp: HashMap::new(),
                next_scan: Instant::now(),
                readiness: Readiness::default(),
            }),
            epoll,
            ready,
            timer,
            recv_shut: AtomicBool::new(false),
            udpflows,
            _maps: vec![socks, ports, tcpflows],
            _ringbuf: ringbuf,
            _registration: registration,
        })
    }

    fn deleted_of(&self, est: &Address) -> Option<Address> {
        let mut a = *est;
        a.event = Event::FlowDeleted;
        a.timestamp = crate::sys::time::monotonic_ns();
        self.filter.matches_event(&a).then_some(a)
    }

    fn expire(&self, st: &mut RecvState, key: &[u8; UDP_KEY_SIZE as usize]) {
        if let Some(f) = st.udp.remove(key) {
            let _ = self.udpflows.delete(key);
            if let Some(d) = self.deleted_of(&f.established) {
                st.pending.push_back(d);
            }
        }
    }

    fn take_records(&self, st: &mut RecvState) {
        let mut recs = Vec::new();
        st.ring.consume(|r| {
            if let Some(x) = ebpf_flow::record_to_flow(r) {
                recs.push(x);
            }
        });
        for r in recs {
            match r {
                FlowRecord::Event(a) | FlowRecord::Track(a) => {
                    let is_event = matches!(r, FlowRecord::Event(_));
                    let f = *a.flow_data().expect("flow data");
                    if a.event == Event::FlowEstablished && f.protocol == 17 {
                        let key = ebpf_flow::udp_key(&f);
                        // The kernel restarted a flow that had timed out: end the old one.
                        if let Some(old) = st.udp.remove(&key) {
                            if let Some(d) = self.deleted_of(&old.established) {
                                st.pending.push_back(d);
                            }
                        }
                        if self.config.deleted {
                            st.udp.insert(key, UdpFlow { established: a });
                        }
                    }
                    if is_event && self.filter.matches_event(&a) {
                        st.pending.push_back(a);
                    }
                }
                FlowRecord::UdpReleased(cookie) => {
                    let keys: Vec<_> = st
                        .udp
                        .iter()
                        .filter(|(_, f)| {
                            f.established.flow_data().map(|d| d.endpoint_id) == Some(cookie)
                        })
                        .map(|(k, _)| *k)
                        .collect();
                    for k in keys {
                        self.expire(st, &k);
                    }
                }
            }
        }
    }

    fn scan_udp(&self, st: &mut RecvState) {
        let now = crate::sys::time::monotonic_ns();
        let timeout = self.udp_timeout.as_nanos() as i64;
        let keys: Vec<_> = st.udp.keys().copied().collect();
        for k in keys {
            let mut v = [0u8; UDP_VALUE_SIZE as usize];
            let last = match self.udpflows.lookup(&k, &mut v) {
                Ok(true) => u64::from_ne_bytes(v[0..8].try_into().unwrap()) as i64,
                _ => i64::MIN,
            };
            if last == i64::MIN || now - last >= timeout {
                self.expire(st, &k);
            }
        }
        st.next_scan = Instant::now() + (self.udp_timeout / 4).min(Duration::from_millis(250));
    }

    /// One non-blocking attempt: a queued event, or new records and expired UDP flows.
    fn try_recv(&self, st: &mut RecvState) -> Option<Result<Address, Error>> {
        if let Some(a) = st.pending.pop_front() {
            return Some(Ok(a));
        }
        let shut = self.recv_shut.load(Ordering::Acquire);
        self.take_records(st);
        if !shut && !st.udp.is_empty() && Instant::now() >= st.next_scan {
            self.scan_udp(st);
        }
        if let Some(a) = st.pending.pop_front() {
            return Some(Ok(a));
        }
        shut.then_some(Err(Error::NoData))
    }

    /// Make the pollable descriptor tell the truth: `ready` is set while events are queued
    /// (or after `shutdown(Recv)`), `timer` expires at the next UDP inactivity scan.
    fn sync_fd(&self, st: &mut RecvState) {
        let shut = self.recv_shut.load(Ordering::Acquire);
        let want = shut || !st.pending.is_empty();
        st.readiness.mirror(&self.ready, want);
        let deadline = (!shut && !st.udp.is_empty()).then_some(st.next_scan);
        st.readiness.arm(&self.timer, deadline);
    }

    /// Receive the next event, waiting as long as needed.
    pub fn recv(&self) -> Result<Address, Error> {
        self.recv_timeout(None)
    }

    /// Receive the next event, waiting at most `timeout` ([`Error::Timeout`]); after
    /// `shutdown(Recv)`, what is queued and then [`Error::NoData`].
    pub fn recv_timeout(&self, timeout: Option<Duration>) -> Result<Address, Error> {
        // the timer in the epoll set wakes the wait for the UDP scan
        crate::wait::recv_until(&self.recv, &self.epoll, timeout, |st| {
            let got = self.try_recv(st);
            self.sync_fd(st);
            got
        })
    }

    /// `WinDivertShutdown`: `Recv` detaches the programs (queued events can still be read,
    /// then [`Error::NoData`]); `Send` has no effect.
    pub fn shutdown(&self, how: Shutdown) -> Result<(), Error> {
        if matches!(how, Shutdown::Recv | Shutdown::Both) {
            self.attached
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            self.recv_shut.store(true, Ordering::Release);
            let mut st = self.recv.lock().unwrap_or_else(|p| p.into_inner());
            self.sync_fd(&mut st);
        }
        Ok(())
    }

    /// Close: detach and free everything.
    pub fn close(self) -> Result<(), Error> {
        drop(self);
        Ok(())
    }

    /// The compiled filter.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// The flags.
    pub fn flags(&self) -> Flags {
        self.flags
    }

    /// The priority.
    pub fn priority(&self) -> i16 {
        self.priority
    }

    /// The namespace cookie whose flows this handle sees.
    pub fn netns_cookie(&self) -> u64 {
        self.netns_cookie
    }

    /// The generated configuration (what the filter can match, which helpers are used).
    pub fn config(&self) -> &FlowConfig {
        &self.config
    }

    /// The attached hooks.
    pub fn hooks(&self) -> Vec<FlowHook> {
        self.attached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|a| a.hook)
            .collect()
    }
}

/// A descriptor that polls readable (level-triggered) when a receive may find an event: an
/// epoll set of the ring buffer, a flag for events already read from it and queued, and a
/// timer for the UDP inactivity scan. Owned by the handle (`WinDivertGetFd`).
impl AsRawFd for FlowHandle {
    fn as_raw_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }
}

/// The descriptor of [`AsRawFd`] (borrowed).
impl AsFd for FlowHandle {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

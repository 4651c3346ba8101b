//! The SOCKET layer: socket events (BIND, CONNECT, LISTEN, ACCEPT, CLOSE) from cgroup-v2
//! eBPF hooks, filtered and (without SNIFF) refused in the kernel.
//!
//! Opening a [`SocketHandle`] compiles the filter, generates one program per needed hook
//! ([`lindivert_core::filter::ebpf_sock`]), loads them and attaches them at the cgroup-v2
//! root with BPF links, so every socket of the machine passes through them; each program
//! first checks the socket's network namespace cookie against the handle's namespace.
//! Matching events arrive through a BPF ring buffer. The links, programs and maps belong to
//! the handle's descriptors: closing the handle (or the process dying) removes them.
//!
//! Blocking (no SNIFF): BIND, CONNECT (TCP and UDP `connect()`, unconnected UDP `sendmsg()`)
//! fail with `EPERM`. `listen()` itself cannot be refused without BPF-LSM: it succeeds, but
//! no connection to a matching listener ever completes (a `cgroup_skb/ingress` program
//! drops every packet to it; clients time out). A matching ACCEPT is refused by dropping the
//! client's SYN. CLOSE is never blocked and always reported with `sniffed` set.
//!
//! Differences from WinDivert (for `docs/DIFFERENCES.md`): sockets created before the
//! handle was opened are seen for BIND/CONNECT/CLOSE but not for LISTEN/ACCEPT if they were
//! already listening; CONNECT reports the local address/port the socket had *before*
//! connecting (the kernel assigns an ephemeral port after the hook); implicit binds
//! (`connect()`/`sendto()` on an unbound socket) produce no BIND event; a blocked ACCEPT
//! has `endpointId` 0 (the connection never exists); `loopback` means the peer (or for
//! BIND/LISTEN the local) address is 127.0.0.0/8 or `::1`.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use lindivert_core::filter::ebpf_sock::{
    self, record, EventSet, Hook, SockConfig, SockMaps, ENDPOINT_VALUE_SIZE, LISTENER_VALUE_SIZE,
    PORT_VALUE_SIZE, SEEN_KEY_SIZE,
};
use lindivert_core::filter::Filter;
use lindivert_core::{Address, Flags, Layer, Shutdown};

use crate::error::Error;
use crate::sys::bpf::{self, LoadOptions, Map, MapType, ProgType};
use crate::sys::cgroup::{self, Cgroup};
use crate::sys::netns::NetNs;
use crate::sys::poll::{Epoll, EventFlag, Readiness};
use crate::sys::ringbuf::RingBuf;

/// Ring buffer size (bytes).
const RINGBUF_SIZE: u32 = 1 << 20;
const LRU_HASH: MapType = MapType(9);

/// Options for [`SocketHandle::open_with`].
#[derive(Debug, Clone)]
pub struct SocketOptions {
    filter: String,
    priority: i16,
    flags: Flags,
    netns: Option<PathBuf>,
}

impl SocketOptions {
    /// Options for `filter` with priority 0 and flags `RECV_ONLY`.
    pub fn new(filter: &str) -> SocketOptions {
        SocketOptions {
            filter: filter.to_string(),
            priority: 0,
            flags: Flags::RECV_ONLY,
            netns: None,
        }
    }

    /// The priority (accepted for compatibility: every SOCKET handle sees every event).
    pub fn priority(mut self, p: i16) -> Self {
        self.priority = p;
        self
    }

    /// The flags (SOCKET requires `RECV_ONLY`; `SNIFF` = observe only).
    pub fn flags(mut self, f: Flags) -> Self {
        self.flags = f;
        self
    }

    /// Watch the network namespace at `path` (`/var/run/netns/NAME`, `/proc/PID/ns/net`)
    /// instead of the calling thread's.
    pub fn netns_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.netns = Some(path.into());
        self
    }

    /// Open the handle.
    pub fn open(self) -> Result<SocketHandle, Error> {
        SocketHandle::open_with(self)
    }
}

struct Attached {
    hook: Hook,
    // Field order: the link goes first, then the program.
    link: OwnedFd,
    prog: OwnedFd,
}

struct RecvState {
    ring: RingBuf,
    pending: VecDeque<Address>,
    /// What `ready` says ("events are queued, or the handle is shut down").
    readiness: Readiness,
}

/// A SOCKET-layer handle (WinDivert `WINDIVERT_LAYER_SOCKET`).
///
/// Events come from [`SocketHandle::recv`] as [`Address`]es whose
/// [`flow_data`](Address::flow_data) (a [`SocketData`](lindivert_core::SocketData)) names the
/// socket, its endpoints and process.
/// Without `SNIFF` a matching BIND/CONNECT/LISTEN/ACCEPT is refused (see the
/// [module documentation](self)). Needs `CAP_NET_ADMIN` and `CAP_BPF` (or `CAP_SYS_ADMIN`).
///
/// ```no_run
/// use lindivert::socket::{SocketHandle, SocketOptions};
/// use lindivert::Flags;
/// use std::time::Duration;
///
/// # fn main() -> Result<(), lindivert::Error> {
/// // Watch (SNIFF: do not refuse) every TCP connect() in the calling thread's namespace.
/// let h = SocketHandle::open("event == CONNECT and tcp", 0, Flags::SNIFF | Flags::RECV_ONLY)?;
/// let addr = h.recv()?;
/// let s = addr.flow_data().expect("a SOCKET address");
/// println!("{:?}: pid {} -> [{}]:{}", addr.event, s.process_id, s.remote_addr, s.remote_port);
/// h.close()?;
///
/// // Refuse bind() to port 8080 inside another namespace, for a while.
/// let h = SocketOptions::new("event == BIND and localPort == 8080")
///     .flags(Flags::RECV_ONLY)
///     .netns_path("/var/run/netns/test")
///     .open()?;
/// while let Ok(addr) = h.recv_timeout(Some(Duration::from_secs(10))) {
///     println!("refused {:?}", addr.flow_data());
/// }
/// # Ok(())
/// # }
/// ```
pub struct SocketHandle {
    filter: Filter,
    flags: Flags,
    priority: i16,
    netns_cookie: u64,
    events: EventSet,
    attached: Mutex<Vec<Attached>>,
    recv: Mutex<RecvState>,
    /// The pollable descriptor: the ring buffer and `ready`.
    epoll: Epoll,
    ready: EventFlag,
    recv_shut: AtomicBool,
    // Keep the maps alive for the programs (they also hold references).
    _maps: Vec<Map>,
    ringbuf: Map,
    // REFLECT registry entry (crate::registry); dropped last.
    _registration: crate::registry::Registration,
}

impl std::fmt::Debug for SocketHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketHandle")
            .field("flags", &self.flags)
            .field("priority", &self.priority)
            .field("netns_cookie", &self.netns_cookie)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl SocketHandle {
    /// `WinDivertOpen(filter, WINDIVERT_LAYER_SOCKET, priority, flags)` for the calling
    /// thread's network namespace.
    pub fn open(filter: &str, priority: i16, flags: Flags) -> Result<SocketHandle, Error> {
        SocketOptions::new(filter)
            .priority(priority)
            .flags(flags)
            .open()
    }

    /// Open with options.
    pub fn open_with(o: SocketOptions) -> Result<SocketHandle, Error> {
        o.flags
            .validate_for(Layer::Socket)
            .map_err(|e| Error::InvalidParameter(e.to_string()))?;
        if !(-30000..=30000).contains(&o.priority) {
            return Err(Error::InvalidParameter(format!(
                "priority {} outside -30000..=30000",
                o.priority
            )));
        }
        let filter =
            Filter::compile(&o.filter, Layer::Socket).map_err(|e| Error::InvalidFilter {
                message: e.to_string(),
                position: e.pos,
            })?;
        let netns_cookie = match &o.netns {
            Some(p) => {
                let ns = NetNs::open(p).map_err(|e| {
                    Error::InvalidParameter(format!("network namespace {}: {e}", p.display()))
                })?;
                ns.run(cgroup::current_netns_cookie)??
            }
            None => cgroup::current_netns_cookie()?,
        };
        let sniff = o.flags.contains(Flags::SNIFF);
        let drop_only = o.flags.contains(Flags::DROP);
        let events = EventSet::of(filter.object());

        let ringbuf = Map::ringbuf(RINGBUF_SIZE, "ld_sock_events")
            .map_err(|e| Error::from_bpf("creating the event ring buffer", e))?;
        let ring = RingBuf::new(ringbuf.as_fd(), RINGBUF_SIZE as usize)?;
        let seen = Map::create(LRU_HASH, SEEN_KEY_SIZE, 8, 16384, 0, "ld_sock_seen")
            .map_err(|e| Error::from_bpf("creating the seen map", e))?;
        let listeners = Map::hash(8, LISTENER_VALUE_SIZE, 65536, "ld_sock_lsn")
            .map_err(|e| Error::from_bpf("creating the listeners map", e))?;
        let ports = Map::hash(4, PORT_VALUE_SIZE, 65536, "ld_sock_ports")
            .map_err(|e| Error::from_bpf("creating the ports map", e))?;
        let endpoints = Map::create(LRU_HASH, 8, ENDPOINT_VALUE_SIZE, 65536, 0, "ld_sock_endp")
            .map_err(|e| Error::from_bpf("creating the endpoints map", e))?;
        use std::os::fd::AsRawFd;
        let cfg = SockConfig {
            netns_cookie,
            block: !sniff,
            report: !drop_only,
            events,
            maps: SockMaps {
                ringbuf: ringbuf.as_fd().as_raw_fd(),
                seen: seen.as_fd().as_raw_fd(),
                listeners: listeners.as_fd().as_raw_fd(),
                ports: ports.as_fd().as_raw_fd(),
                endpoints: endpoints.as_fd().as_raw_fd(),
            },
        };
        let root = Cgroup::root().map_err(|e| Error::MissingKernelFeature {
            feature: "a cgroup2 file system (CONFIG_CGROUP_BPF)",
            source: e,
        })?;
        let mut attached = Vec::new();
        for hook in Hook::ALL {
            if !hook.needed(&cfg) {
                continue;
            }
            let insns = ebpf_sock::hook_program(filter.object(), hook, &cfg)
                .map_err(|e| Error::InvalidParameter(format!("{hook:?} program: {e}")))?;
            let prog = bpf::prog_load_with(
                ProgType(hook.prog_type()),
                &insns,
                &LoadOptions {
                    name: hook.name(),
                    expected_attach_type: hook.attach_type(),
                    ..LoadOptions::default()
                },
            )
            .map_err(|e| Error::from_bpf(&format!("loading the {hook:?} program"), e))?;
            let link =
                cgroup::link_create(prog.as_fd(), root.fd(), hook.attach_type()).map_err(|e| {
                    match e.raw_os_error() {
                        Some(libc::EPERM) | Some(libc::EACCES) => Error::PermissionDenied {
                            capability: "CAP_NET_ADMIN and CAP_BPF",
                            operation: format!("attaching the {hook:?} program to the cgroup root"),
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
            attached.push(Attached { hook, link, prog });
        }
        let epoll = Epoll::new()?;
        epoll.add(ringbuf.as_fd(), 0)?;
        let ready = EventFlag::new()?;
        epoll.add(ready.as_fd(), 1)?;
        // --- REFLECT registry (crate::registry) ---
        let reg_ns = match &o.netns {
            Some(p) => Some(NetNs::open(p)?),
            None => None,
        };
        let registration = crate::registry::Registration::create(
            reg_ns.as_ref(),
            &crate::registry::HandleInfo::now(
                Layer::Socket,
                o.priority,
                o.flags,
                lindivert_core::filter::object::encode(filter.object()),
            ),
        )?;
        // --- end REFLECT registry ---
        Ok(SocketHandle {
            filter,
            flags: o.flags,
            priority: o.priority,
            netns_cookie,
            events,
            attached: Mutex::new(attached),
            recv: Mutex::new(RecvState {
                ring,
                pending: VecDeque::new(),
                readiness: Readiness::default(),
            }),
            epoll,
            ready,
            recv_shut: AtomicBool::new(false),
            _maps: vec![seen, listeners, ports, endpoints],
            ringbuf,
            _registration: registration,
        })
    }

    /// One non-blocking attempt: a queued event, or what the ring buffer holds.
    fn try_recv(&self, st: &mut RecvState) -> Option<Result<Address, Error>> {
        if let Some(a) = st.pending.pop_front() {
            return Some(Ok(a));
        }
        let sniff = self.flags.contains(Flags::SNIFF);
        let RecvState { ring, pending, .. } = st;
        ring.consume(|rec| {
            if let Some(a) = ebpf_sock::record_to_address(rec, sniff) {
                pending.push_back(a);
            }
        });
        if let Some(a) = st.pending.pop_front() {
            return Some(Ok(a));
        }
        self.recv_shut
            .load(Ordering::Acquire)
            .then_some(Err(Error::NoData))
    }

    /// Keep `ready` set while events are queued (they are no longer in the ring buffer)
    /// and after `shutdown(Recv)`.
    fn sync_ready(&self, st: &mut RecvState) {
        let want = self.recv_shut.load(Ordering::Acquire) || !st.pending.is_empty();
        st.readiness.mirror(&self.ready, want);
    }

    /// Receive the next event, waiting as long as needed.
    pub fn recv(&self) -> Result<Address, Error> {
        self.recv_timeout(None)
    }

    /// Receive the next event, waiting at most `timeout` (`None` = forever):
    /// [`Error::Timeout`] when nothing came, [`Error::NoData`] after
    /// `shutdown(Recv)` once everything queued was read.
    pub fn recv_timeout(&self, timeout: Option<Duration>) -> Result<Address, Error> {
        crate::wait::recv_until(&self.recv, &self.epoll, timeout, |st| {
            let got = self.try_recv(st);
            self.sync_ready(st);
            got
        })
    }

    /// `WinDivertShutdown`: `Recv` detaches the programs (nothing is blocked or reported
    /// any more; queued events can still be read); `Send` has no effect (a SOCKET handle
    /// cannot send).
    pub fn shutdown(&self, how: Shutdown) -> Result<(), Error> {
        if matches!(how, Shutdown::Recv | Shutdown::Both) {
            self.recv_shut.store(true, Ordering::Release);
            self.attached
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            let mut st = self.recv.lock().unwrap_or_else(|p| p.into_inner());
            self.sync_ready(&mut st);
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

    /// The network namespace cookie whose events this handle sees.
    pub fn netns_cookie(&self) -> u64 {
        self.netns_cookie
    }

    /// The events the filter can match.
    pub fn events(&self) -> EventSet {
        self.events
    }

    /// The attached hooks with the kernel ids of their programs and links (for
    /// diagnostics and tests).
    pub fn attachments(&self) -> Vec<(Hook, u32, u32)> {
        self.attached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|a| {
                (
                    a.hook,
                    cgroup::object_id(a.prog.as_fd(), "prog_id").unwrap_or(0),
                    cgroup::object_id(a.link.as_fd(), "link_id").unwrap_or(0),
                )
            })
            .collect()
    }

    /// The ring buffer map (its descriptor is readable when events are waiting in it; see
    /// [`AsRawFd`] for one that also covers events already read from it).
    pub fn ringbuf_map(&self) -> &Map {
        &self.ringbuf
    }

    /// The size of an event record (bytes).
    pub const RECORD_SIZE: usize = record::SIZE;
}

/// A descriptor that polls readable (level-triggered) when a receive may find an event: an
/// epoll set of the ring buffer and a flag for events already read from it and queued.
/// Owned by the handle (`WinDivertGetFd`).
impl AsRawFd for SocketHandle {
    fn as_raw_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }
}

/// The descriptor of [`AsRawFd`] (borrowed).
impl AsFd for SocketHandle {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

//! The REFLECT layer: open/close events of the lindivert handles of a network namespace.
//!
//! The handles are found in the [`registry`] (nftables owner tables). A
//! [`ReflectHandle`] subscribes to the `NFNLGRP_NFTABLES` multicast group, then lists the
//! registry and queues an OPEN event for every handle already open; afterwards it turns
//! NEWRULE notifications of registry chains into OPEN and DELTABLE notifications into
//! CLOSE (with the data cached at OPEN). The kernel does not announce the removal of an
//! owner table whose socket died (`kill -9`), so the handle also re-lists the tables every
//! [`RESYNC_INTERVAL`] while it waits, and reports a vanished table as CLOSE: a killed
//! process's handles are reported closed within that interval (plus scheduling).
//!
//! REFLECT handles do not register themselves and are never reported, as in WinDivert.
//! Events are filtered in user space with the handle's filter (REFLECT events are rare).

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lindivert_core::address::{LayerData, ReflectData};
use lindivert_core::filter::Filter;
use lindivert_core::{Address, Event, Flags, Layer, Shutdown};

use crate::error::Error;
use crate::registry::{self, Assembly, HandleInfo, Registered, CHAIN};
use crate::sys::attr::{be64, cstr, messages};
use crate::sys::netlink::{setsockopt_int, NetlinkSocket, NETLINK_NETFILTER};
use crate::sys::netns::NetNs;
use crate::sys::nfnl::{NlError, SUBSYS_NFTABLES};
use crate::sys::poll::{Epoll, EventFlag, Readiness, Timer};

/// How often a waiting REFLECT handle re-lists the tables to notice owner tables the
/// kernel removed silently.
pub const RESYNC_INTERVAL: Duration = Duration::from_millis(200);
/// `NFNLGRP_NFTABLES`.
const NFNLGRP_NFTABLES: i32 = 7;

/// Options for [`ReflectHandle::open_with`].
#[derive(Debug, Clone)]
pub struct ReflectOptions {
    filter: String,
    priority: i16,
    flags: Flags,
    netns: Option<PathBuf>,
}

impl ReflectOptions {
    /// Options for `filter`, priority 0, flags `SNIFF | RECV_ONLY`.
    pub fn new(filter: &str) -> ReflectOptions {
        ReflectOptions {
            filter: filter.to_string(),
            priority: 0,
            flags: Flags::SNIFF | Flags::RECV_ONLY,
            netns: None,
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

    /// Open the handle.
    pub fn open(self) -> Result<ReflectHandle, Error> {
        ReflectHandle::open_with(self)
    }
}

#[derive(Debug, Clone)]
struct Known {
    handle: u64,
    info: HandleInfo,
}

type Key = (u8, String);

struct State {
    notify: NetlinkSocket,
    dump: NetlinkSocket,
    seq: u32,
    known: HashMap<Key, Known>,
    /// Table handles from NEWTABLE notifications (for tables not yet complete).
    handles: HashMap<Key, u64>,
    assembling: HashMap<Key, Assembly>,
    /// Tables (by kernel handle) found to carry no registry data.
    foreign: HashSet<u64>,
    queue: VecDeque<(Vec<u8>, Address)>,
    next_resync: Instant,
    buf: Vec<u8>,
    /// What `ready` ("events are queued") and `timer` (the next re-list) say.
    readiness: Readiness,
}

/// A REFLECT-layer handle (WinDivert `WINDIVERT_LAYER_REFLECT`).
///
/// Reports an OPEN event for every lindivert handle already open in the namespace, then
/// OPEN and CLOSE as handles come and go, each with the handle's filter object string (see
/// the [module documentation](self)). REFLECT requires `SNIFF | RECV_ONLY`; opening it needs
/// `CAP_NET_ADMIN`.
///
/// ```no_run
/// use lindivert::core::filter::{format::format, object::decode};
/// use lindivert::reflect::{ReflectHandle, ReflectOptions};
/// use lindivert::Flags;
///
/// # fn main() -> Result<(), lindivert::Error> {
/// let h = ReflectHandle::open("true", 0, Flags::SNIFF | Flags::RECV_ONLY)?;
/// let (object, addr) = h.recv()?;
/// let r = addr.reflect_data().expect("a REFLECT address");
/// // The object string ends with a NUL; decode it to print the handle's filter.
/// let text = std::str::from_utf8(&object).unwrap().trim_end_matches('\0');
/// let filter = match decode(text, r.layer) {
///     Ok(obj) => format(&obj, r.layer),
///     Err(_) => text.to_string(),
/// };
/// println!("{:?}: pid {} {} priority {}: {filter}",
///          addr.event, r.process_id, r.layer, r.priority);
/// h.close()?;
///
/// // Only the NETWORK handles of another namespace.
/// let h = ReflectOptions::new("layer == NETWORK")
///     .netns_path("/var/run/netns/test")
///     .open()?;
/// let (_, addr) = h.recv()?;
/// println!("{:?}", addr.reflect_data());
/// # Ok(())
/// # }
/// ```
pub struct ReflectHandle {
    filter: Filter,
    flags: Flags,
    priority: i16,
    state: Mutex<State>,
    recv_shut: AtomicBool,
    /// The pollable descriptor: the notification socket, `ready` and `timer`.
    epoll: Epoll,
    ready: EventFlag,
    timer: Timer,
}

impl std::fmt::Debug for ReflectHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReflectHandle")
            .field("flags", &self.flags)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

fn nl(e: NlError) -> Error {
    Error::from_netlink(e)
}

/// The REFLECT address of an event about `info`.
pub fn reflect_address(event: Event, info: &HandleInfo) -> Address {
    Address {
        timestamp: crate::sys::time::monotonic_ns(),
        layer: Layer::Reflect,
        event,
        sniffed: true,
        outbound: false,
        loopback: false,
        impostor: false,
        ipv6: false,
        ip_checksum: false,
        tcp_checksum: false,
        udp_checksum: false,
        data: LayerData::Reflect(ReflectData {
            timestamp: info.timestamp,
            process_id: info.process_id,
            layer: info.layer,
            flags: info.flags,
            priority: info.priority,
        }),
    }
}

impl ReflectHandle {
    /// `WinDivertOpen(filter, WINDIVERT_LAYER_REFLECT, priority, flags)` for the calling
    /// thread's network namespace.
    pub fn open(filter: &str, priority: i16, flags: Flags) -> Result<ReflectHandle, Error> {
        ReflectOptions::new(filter)
            .priority(priority)
            .flags(flags)
            .open()
    }

    /// Open with options. The OPEN events of the handles already open are queued before
    /// this returns.
    pub fn open_with(o: ReflectOptions) -> Result<ReflectHandle, Error> {
        o.flags
            .validate_for(Layer::Reflect)
            .map_err(|e| Error::InvalidParameter(e.to_string()))?;
        if !(-30000..=30000).contains(&o.priority) {
            return Err(Error::InvalidParameter(format!(
                "priority {} outside -30000..=30000",
                o.priority
            )));
        }
        let filter =
            Filter::compile(&o.filter, Layer::Reflect).map_err(|e| Error::InvalidFilter {
                message: e.to_string(),
                position: e.pos,
            })?;
        let ns = match &o.netns {
            Some(p) => Some(NetNs::open(p).map_err(|e| {
                Error::InvalidParameter(format!("network namespace {}: {e}", p.display()))
            })?),
            None => None,
        };
        let (notify, dump) = crate::sys::netns::run_in(ns.as_ref(), || {
            let notify = NetlinkSocket::open(NETLINK_NETFILTER)?;
            notify.set_rcvbuf(8 << 20)?;
            setsockopt_int(
                std::os::fd::AsFd::as_fd(&notify),
                libc::SOL_NETLINK,
                libc::NETLINK_ADD_MEMBERSHIP,
                NFNLGRP_NFTABLES,
            )?;
            let dump = NetlinkSocket::open(NETLINK_NETFILTER)?;
            dump.set_rcvbuf(4 << 20)?;
            Ok::<_, std::io::Error>((notify, dump))
        })??;
        let epoll = Epoll::new()?;
        epoll.add(notify.as_fd(), 0)?;
        let ready = EventFlag::new()?;
        epoll.add(ready.as_fd(), 1)?;
        let timer = Timer::new()?;
        epoll.add(timer.as_fd(), 2)?;
        let h = ReflectHandle {
            filter,
            flags: o.flags,
            priority: o.priority,
            state: Mutex::new(State {
                notify,
                dump,
                seq: 1,
                known: HashMap::new(),
                handles: HashMap::new(),
                assembling: HashMap::new(),
                foreign: HashSet::new(),
                queue: VecDeque::new(),
                next_resync: Instant::now() + RESYNC_INTERVAL,
                buf: vec![0u8; 256 * 1024],
                readiness: Readiness::default(),
            }),
            recv_shut: AtomicBool::new(false),
            epoll,
            ready,
            timer,
        };
        {
            let mut st = h.state.lock().unwrap_or_else(|p| p.into_inner());
            h.full_resync(&mut st)?;
            h.sync_fd(&mut st);
        }
        Ok(h)
    }

    fn push(&self, st: &mut State, event: Event, info: &HandleInfo) {
        if info.layer == Layer::Reflect {
            return;
        }
        let addr = reflect_address(event, info);
        if !self.filter.matches_event(&addr) {
            return;
        }
        let mut data = info.object.as_bytes().to_vec();
        data.push(0);
        st.queue.push_back((data, addr));
    }

    fn open_known(&self, st: &mut State, key: Key, handle: u64, info: HandleInfo) {
        if let Some(old) = st.known.get(&key) {
            if old.handle == handle || handle == 0 || old.handle == 0 {
                return;
            }
            let old = st.known.remove(&key).unwrap();
            self.push(st, Event::ReflectClose, &old.info);
        }
        self.push(st, Event::ReflectOpen, &info);
        st.known.insert(key, Known { handle, info });
    }

    fn close_known(&self, st: &mut State, key: &Key) {
        if let Some(k) = st.known.remove(key) {
            self.push(st, Event::ReflectClose, &k.info);
        }
    }

    /// Re-list everything (at open, and after lost notifications).
    fn full_resync(&self, st: &mut State) -> Result<(), Error> {
        let seq = st.seq;
        st.seq = st.seq.wrapping_add(2);
        let list: Vec<Registered> = registry::list_on(&st.dump, seq).map_err(nl)?;
        let present: HashSet<Key> = list.iter().map(|r| (r.family, r.table.clone())).collect();
        let gone: Vec<Key> = st
            .known
            .keys()
            .filter(|k| !present.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            self.close_known(st, &k);
        }
        for r in list {
            st.assembling.remove(&(r.family, r.table.clone()));
            self.open_known(st, (r.family, r.table), r.table_handle, r.info);
        }
        st.next_resync = Instant::now() + RESYNC_INTERVAL;
        Ok(())
    }

    /// Compare the tables with what is known: vanished ones are CLOSE, unknown ones are
    /// checked for registry data once.
    fn quick_resync(&self, st: &mut State) -> Result<(), Error> {
        let seq = st.seq;
        st.seq = st.seq.wrapping_add(1);
        let tables = registry::dump_tables(&st.dump, seq).map_err(nl)?;
        let by_key: HashMap<Key, u64> = tables
            .iter()
            .map(|t| ((t.family, t.name.clone()), t.handle))
            .collect();
        let gone: Vec<Key> = st
            .known
            .iter()
            .filter(|(k, v)| match by_key.get(*k) {
                None => true,
                Some(&h) => v.handle != 0 && h != v.handle,
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            self.close_known(st, k);
        }
        // Adopt handles learnt late; drop partial assemblies of vanished tables.
        for (k, v) in st.known.iter_mut() {
            if v.handle == 0 {
                v.handle = by_key.get(k).copied().unwrap_or(0);
            }
        }
        st.assembling.retain(|k, _| by_key.contains_key(k));
        st.handles.retain(|k, _| by_key.contains_key(k));
        let live: HashSet<u64> = tables.iter().map(|t| t.handle).collect();
        st.foreign.retain(|h| live.contains(h));
        for t in tables {
            let key = (t.family, t.name.clone());
            if st.known.contains_key(&key)
                || st.foreign.contains(&t.handle)
                || st.assembling.contains_key(&key)
            {
                continue;
            }
            let seq = st.seq;
            st.seq = st.seq.wrapping_add(1);
            let chunks =
                registry::dump_chunks(&st.dump, seq, Some((t.family, &t.name))).unwrap_or_default();
            match chunks.get(&key).and_then(Assembly::finish) {
                Some(info) => self.open_known(st, key, t.handle, info),
                None => {
                    st.foreign.insert(t.handle);
                }
            }
        }
        st.next_resync = Instant::now() + RESYNC_INTERVAL;
        Ok(())
    }

    /// Read every queued notification without blocking.
    fn drain_notifications(&self, st: &mut State) -> Result<(), Error> {
        loop {
            let mut buf = std::mem::take(&mut st.buf);
            let r = st.notify.recv(&mut buf, true);
            let n = match r {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    st.buf = buf;
                    return Ok(());
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    st.buf = buf;
                    self.full_resync(st)?;
                    continue;
                }
                Err(e) => {
                    st.buf = buf;
                    return Err(Error::Io(e));
                }
            };
            for m in messages(&buf[..n]) {
                if m.ty >> 8 != SUBSYS_NFTABLES as u16 {
                    continue;
                }
                let fam = m.payload.first().copied().unwrap_or(0);
                let a = m.nf_attrs();
                match (m.ty & 0xff) as u8 {
                    registry::NFT_MSG_NEWTABLE => {
                        let key = (fam, a.get(1).map(cstr).unwrap_or("").to_string());
                        let h = a.get(4).and_then(be64).unwrap_or(0);
                        if let Some(k) = st.known.get(&key) {
                            if k.handle != 0 && k.handle != h {
                                self.close_known(st, &key);
                            }
                        }
                        st.handles.insert(key, h);
                    }
                    registry::NFT_MSG_DELTABLE => {
                        let key = (fam, a.get(1).map(cstr).unwrap_or("").to_string());
                        st.assembling.remove(&key);
                        st.handles.remove(&key);
                        self.close_known(st, &key);
                    }
                    registry::NFT_MSG_NEWRULE => {
                        if a.get(2).map(cstr) != Some(CHAIN) {
                            continue;
                        }
                        let (Some(t), Some(ud)) = (a.get(1), a.get(7)) else {
                            continue;
                        };
                        let key = (fam, cstr(t).to_string());
                        if st.known.contains_key(&key) {
                            continue;
                        }
                        let asm = st.assembling.entry(key.clone()).or_default();
                        asm.add(ud);
                        if let Some(info) = asm.finish() {
                            st.assembling.remove(&key);
                            let h = st.handles.get(&key).copied().unwrap_or(0);
                            self.open_known(st, key, h, info);
                        }
                    }
                    _ => {}
                }
            }
            st.buf = buf;
        }
    }

    /// Receive the next event, waiting as long as needed: the filter object string (with its
    /// NUL) and the address.
    pub fn recv(&self) -> Result<(Vec<u8>, Address), Error> {
        self.recv_timeout(None)
    }

    /// Receive the next event, waiting at most `timeout` ([`Error::Timeout`]); after
    /// `shutdown(Recv)`, what is queued and then [`Error::NoData`].
    pub fn recv_timeout(&self, timeout: Option<Duration>) -> Result<(Vec<u8>, Address), Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let r = self.recv_locked(&mut st, deadline);
        self.sync_fd(&mut st);
        r
    }

    /// Make the pollable descriptor tell the truth: `ready` is set while events are queued
    /// (and after `shutdown(Recv)`), `timer` expires at the next re-list.
    fn sync_fd(&self, st: &mut State) {
        let shut = self.recv_shut.load(Ordering::Acquire);
        let want = shut || !st.queue.is_empty();
        st.readiness.mirror(&self.ready, want);
        st.readiness
            .arm(&self.timer, (!shut).then_some(st.next_resync));
    }

    fn recv_locked(
        &self,
        st: &mut State,
        deadline: Option<Instant>,
    ) -> Result<(Vec<u8>, Address), Error> {
        loop {
            if let Some(ev) = st.queue.pop_front() {
                return Ok(ev);
            }
            if self.recv_shut.load(Ordering::Acquire) {
                return Err(Error::NoData);
            }
            self.drain_notifications(st)?;
            if st.queue.is_empty() && Instant::now() >= st.next_resync {
                self.quick_resync(st)?;
            }
            if !st.queue.is_empty() {
                continue;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(Error::Timeout);
            }
            let mut wait = st.next_resync.saturating_duration_since(now);
            if let Some(d) = deadline {
                wait = wait.min(d - now);
            }
            st.notify
                .wait_readable(Some(wait.max(Duration::from_millis(1))))?;
        }
    }

    /// `WinDivertShutdown`: `Recv` stops new events; the OPEN events of the handles that
    /// were open when this handle was opened (queued at open) can still be read, then
    /// [`Error::NoData`]. `Send` has no effect.
    pub fn shutdown(&self, how: Shutdown) -> Result<(), Error> {
        if matches!(how, Shutdown::Recv | Shutdown::Both) {
            self.recv_shut.store(true, Ordering::Release);
            // Not through `sync_fd`: a blocked receive holds the state. Once shut down the
            // flag stays set, so `sync_fd` never clears it.
            self.ready.set();
        }
        Ok(())
    }

    /// Close the handle.
    pub fn close(self) -> Result<(), Error> {
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
}

/// A descriptor that polls readable (level-triggered) when a receive may find an event: an
/// epoll set of the notification socket, a flag for queued events and a timer for the next
/// re-list ([`RESYNC_INTERVAL`]). Owned by the handle (`WinDivertGetFd`).
impl AsRawFd for ReflectHandle {
    fn as_raw_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }
}

/// The descriptor of [`AsRawFd`] (borrowed).
impl AsFd for ReflectHandle {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

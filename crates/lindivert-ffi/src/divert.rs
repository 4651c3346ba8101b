//! Open handles: the registry that turns C `HANDLE` values into live objects (so a stale or
//! garbage handle is an error, not undefined behaviour) and the layer-independent
//! operations on them.
//!
//! A `HANDLE` is an opaque number (`0x1000 + 8·n`, never NULL nor `INVALID_HANDLE_VALUE`);
//! numbers are never reused within a process. Closing removes the entry from the registry
//! first, so new calls fail with `ERROR_INVALID_HANDLE`; calls already running in other
//! threads are woken (the handle is shut down) and the close waits for them to leave before
//! it closes the underlying handle.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lindivert::flow::FlowHandle;
use lindivert::reflect::ReflectHandle;
use lindivert::socket::SocketHandle;
use lindivert::{Error, Handle, OpenOptions};
use lindivert_core::address::{LayerData, NetworkData, RawAddress};
use lindivert_core::filter::{format, Filter};
use lindivert_core::types::{BATCH_MAX, MTU_MAX};
use lindivert_core::{Address, Flags, Layer, Param, Shutdown};

use crate::error::{Fail, ERROR_BAD_COMMAND, ERROR_INVALID_PARAMETER, R};

/// `LINDIVERT_PARAM_BUSY_POLL` (lindivert.h): busy-poll time in microseconds, NETWORK and
/// NETWORK_FORWARD handles only ([`lindivert::OpenOptions::busy_poll`]).
pub const PARAM_BUSY_POLL: u32 = 64;

/// The object behind a handle.
enum Obj {
    Network(Handle),
    Socket(Box<SocketHandle>),
    Reflect(Box<ReflectHandle>),
    Flow(Box<FlowHandle>),
}

/// A live handle.
pub struct Entry {
    /// The layer it was opened at.
    pub layer: Layer,
    /// Its open flags.
    pub flags: Flags,
    obj: Obj,
    closing: AtomicBool,
    /// QUEUE_LENGTH/TIME/SIZE for layers whose handle type keeps no parameters.
    params: [AtomicU64; 3],
}

static REGISTRY: Mutex<BTreeMap<usize, Arc<Entry>>> = Mutex::new(BTreeMap::new());
static NEXT: AtomicUsize = AtomicUsize::new(0);

fn registry() -> std::sync::MutexGuard<'static, BTreeMap<usize, Arc<Entry>>> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

fn insert(e: Entry) -> usize {
    let id = 0x1000 + 8 * NEXT.fetch_add(1, Ordering::Relaxed);
    registry().insert(id, Arc::new(e));
    id
}

/// The live entry for a handle value.
pub fn lookup(h: usize) -> R<Arc<Entry>> {
    registry().get(&h).cloned().ok_or(Fail::handle())
}

/// How many handles are open (for tests).
pub fn open_count() -> usize {
    registry().len()
}

/// What [`open`] needs.
pub struct OpenArgs<'a> {
    /// Filter text or object.
    pub filter: &'a str,
    /// The layer number.
    pub layer: u32,
    /// The priority.
    pub priority: i32,
    /// The flags.
    pub flags: u64,
    /// Interfaces to restrict a NETWORK/NETWORK_FORWARD handle to (libebpfdivert option).
    pub ifnames: &'a [String],
}

/// `WinDivertOpen`: validate like WinDivert (layer, flags, priority, filter), then open the
/// handle type for the layer.
pub fn open(a: &OpenArgs<'_>) -> R<usize> {
    let layer = Layer::from_u32(a.layer).ok_or(Fail::param())?;
    let flags = Flags::from_bits_retain(a.flags);
    flags.validate_for(layer).map_err(|_| Fail::param())?;
    let priority = i16::try_from(a.priority)
        .ok()
        .filter(|p| (-30000..=30000).contains(p))
        .ok_or(Fail::param())?;
    let filter = Filter::compile(a.filter, layer).map_err(|_| Fail::param())?;
    let obj = match layer {
        Layer::Network | Layer::NetworkForward => {
            let text = if a.ifnames.is_empty() {
                a.filter.to_string()
            } else {
                restrict_to_interfaces(&filter, a.ifnames)?
            };
            Obj::Network(
                OpenOptions::new(&text)
                    .layer(layer)
                    .priority(priority)
                    .flags(flags)
                    .open()?,
            )
        }
        _ if !a.ifnames.is_empty() => return Err(Fail::param()),
        Layer::Socket => Obj::Socket(Box::new(SocketHandle::open(a.filter, priority, flags)?)),
        Layer::Reflect => Obj::Reflect(Box::new(ReflectHandle::open(a.filter, priority, flags)?)),
        Layer::Flow => Obj::Flow(Box::new(FlowHandle::open(a.filter, priority, flags)?)),
    };
    Ok(insert(Entry {
        layer,
        flags,
        obj,
        closing: AtomicBool::new(false),
        params: [
            AtomicU64::new(Param::QueueLength.default_value()),
            AtomicU64::new(Param::QueueTime.default_value()),
            AtomicU64::new(Param::QueueSize.default_value()),
        ],
    }))
}

/// `(filter) and (ifIdx == a or ifIdx == b ...)`.
fn restrict_to_interfaces(filter: &Filter, names: &[String]) -> R<String> {
    let mut idx = Vec::new();
    for n in names {
        match crate::sys::if_index(n) {
            0 => {
                return Err(Fail {
                    code: ERROR_INVALID_PARAMETER,
                    errno: libc::ENODEV,
                })
            }
            i => idx.push(format!("ifIdx == {i}")),
        }
    }
    let text = format::format(filter.object(), filter.layer());
    Ok(format!("({text}) and ({})", idx.join(" or ")))
}

/// `WinDivertClose`.
pub fn close(h: usize) -> R<()> {
    let mut entry = registry().remove(&h).ok_or(Fail::handle())?;
    let mut woken = false;
    loop {
        match Arc::try_unwrap(entry) {
            Ok(e) => {
                return match e.obj {
                    Obj::Network(n) => n.close().map_err(Fail::from),
                    Obj::Socket(s) => s.close().map_err(Fail::from),
                    Obj::Reflect(r) => r.close().map_err(Fail::from),
                    Obj::Flow(f) => f.close().map_err(Fail::from),
                }
            }
            Err(shared) => {
                if !woken {
                    // Wake calls still running in other threads: they return within
                    // ~100 ms once the handle is shut down.
                    shared.closing.store(true, Ordering::Release);
                    let _ = shared.shutdown_inner(Shutdown::Both);
                    woken = true;
                }
                std::thread::sleep(Duration::from_millis(1));
                entry = shared;
            }
        }
    }
}

/// A receive's outcome.
pub struct Received {
    /// Bytes written to the buffer.
    pub len: usize,
    /// One address per packet or event.
    pub addrs: Vec<RawAddress>,
    /// The (single) packet did not fit and was truncated (and consumed).
    pub truncated: bool,
}

impl Entry {
    fn map_err(&self, e: Error) -> Fail {
        if self.closing.load(Ordering::Acquire) && matches!(e, Error::NoData | Error::Closed) {
            return Fail::code(ERROR_BAD_COMMAND);
        }
        Fail::from(e)
    }

    /// `WinDivertRecv`/`RecvEx`: up to `max` packets or events; waits for the first up to
    /// `timeout` (`None` = forever).
    pub fn recv(&self, buf: &mut [u8], max: usize, timeout: Option<Duration>) -> R<Received> {
        if max == 0 || max > BATCH_MAX {
            return Err(Fail::param());
        }
        if self.flags.contains(Flags::SEND_ONLY) {
            return Err(Fail::param());
        }
        match &self.obj {
            Obj::Network(h) => recv_network(h, buf, max, timeout).map_err(|e| self.map_err(e)),
            Obj::Socket(s) => self.recv_events(max, timeout, |t| s.recv_timeout(t)),
            Obj::Flow(f) => self.recv_events(max, timeout, |t| f.recv_timeout(t)),
            Obj::Reflect(r) => {
                // The data is the reported handle's filter object (with its NUL).
                let (data, a) = r.recv_timeout(timeout).map_err(|e| self.map_err(e))?;
                let k = data.len().min(buf.len());
                buf[..k].copy_from_slice(&data[..k]);
                let mut out = Received {
                    len: k,
                    addrs: vec![RawAddress::from(&a)],
                    truncated: data.len() > buf.len(),
                };
                while !out.truncated && out.addrs.len() < max {
                    match r.recv_timeout(Some(Duration::ZERO)) {
                        Ok((d, a)) if out.len + d.len() <= buf.len() => {
                            buf[out.len..out.len + d.len()].copy_from_slice(&d);
                            out.len += d.len();
                            out.addrs.push(RawAddress::from(&a));
                        }
                        Ok((d, a)) => {
                            // The handle cannot put an event back: one that does not fit
                            // ends the batch, truncated, rather than being lost.
                            let room = buf.len() - out.len;
                            buf[out.len..].copy_from_slice(&d[..room]);
                            out.len += room;
                            out.addrs.push(RawAddress::from(&a));
                            break;
                        }
                        Err(_) => break,
                    }
                }
                Ok(out)
            }
        }
    }

    /// A receive at a layer whose events carry no data (SOCKET, FLOW).
    fn recv_events(
        &self,
        max: usize,
        timeout: Option<Duration>,
        recv: impl Fn(Option<Duration>) -> Result<Address, Error>,
    ) -> R<Received> {
        let mut addrs = vec![RawAddress::from(
            recv(timeout).map_err(|e| self.map_err(e))?,
        )];
        while addrs.len() < max {
            match recv(Some(Duration::ZERO)) {
                Ok(a) => addrs.push(RawAddress::from(a)),
                Err(_) => break,
            }
        }
        Ok(Received {
            len: 0,
            addrs,
            truncated: false,
        })
    }

    /// `WinDivertSend`/`SendEx`: `packets` back to back, one address each.
    pub fn send(&self, packets: &[u8], addrs: &[RawAddress]) -> R<usize> {
        if addrs.is_empty() || addrs.len() > BATCH_MAX {
            return Err(Fail::param());
        }
        let Obj::Network(h) = &self.obj else {
            return Err(Fail::param());
        };
        if self.flags.contains(Flags::RECV_ONLY) {
            return Err(Fail::param());
        }
        let addrs: Vec<Address> = addrs.iter().map(|r| send_address(r, self.layer)).collect();
        let r = if addrs.len() == 1 {
            h.send(packets, &addrs[0])
        } else {
            h.send_batch(packets, &addrs)
        };
        r.map_err(|e| self.map_err(e))
    }

    fn shutdown_inner(&self, how: Shutdown) -> Result<(), Error> {
        match &self.obj {
            Obj::Network(h) => h.shutdown(how),
            Obj::Socket(s) => s.shutdown(how),
            Obj::Reflect(r) => r.shutdown(how),
            Obj::Flow(f) => f.shutdown(how),
        }
    }

    /// `WinDivertShutdown`.
    pub fn shutdown(&self, how: u32) -> R<()> {
        let how = Shutdown::from_u32(how).ok_or(Fail::param())?;
        self.shutdown_inner(how).map_err(|e| self.map_err(e))
    }

    /// `WinDivertSetParam`.
    pub fn set_param(&self, param: u32, value: u64) -> R<()> {
        if param == PARAM_BUSY_POLL {
            let Obj::Network(h) = &self.obj else {
                return Err(Fail::param());
            };
            let d = Duration::from_micros(value);
            return h.set_busy_poll(d).map_err(|e| self.map_err(e));
        }
        let p = Param::from_u32(param).ok_or(Fail::param())?;
        p.check(value).map_err(|_| Fail::param())?;
        match &self.obj {
            Obj::Network(h) => h.set_param(p, value).map_err(|e| self.map_err(e)),
            _ => {
                self.params[param as usize].store(value, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// `WinDivertGetParam`.
    pub fn get_param(&self, param: u32) -> R<u64> {
        if param == PARAM_BUSY_POLL {
            let Obj::Network(h) = &self.obj else {
                return Err(Fail::param());
            };
            return Ok(h.busy_poll().as_micros() as u64);
        }
        let p = Param::from_u32(param).ok_or(Fail::param())?;
        Ok(match &self.obj {
            Obj::Network(h) => h.get_param(p),
            _ if p.is_writable() => self.params[param as usize].load(Ordering::Relaxed),
            _ => p.default_value(),
        })
    }

    /// A descriptor that is readable when a receive may find something.
    pub fn event_fd(&self) -> R<i32> {
        match &self.obj {
            Obj::Network(h) => Ok(h.as_raw_fd()),
            Obj::Socket(s) => Ok(s.as_raw_fd()),
            Obj::Reflect(r) => Ok(r.as_raw_fd()),
            Obj::Flow(f) => Ok(f.as_raw_fd()),
        }
    }

    /// libebpfdivert's counters: diverted, dropped, sniffed, parsing_errors, ringbuf_full,
    /// queue_full, too_big.
    pub fn stats(&self) -> [u64; 7] {
        match &self.obj {
            Obj::Network(h) => {
                let s = h.stats();
                let sniff = self.flags.contains(Flags::SNIFF);
                [
                    if sniff { 0 } else { s.received },
                    s.dropped + s.expired,
                    if sniff { s.received } else { 0 },
                    0,
                    0,
                    s.dropped,
                    0,
                ]
            }
            Obj::Socket(_) | Obj::Reflect(_) | Obj::Flow(_) => [0; 7],
        }
    }
}

fn recv_network(
    h: &Handle,
    buf: &mut [u8],
    max: usize,
    timeout: Option<Duration>,
) -> Result<Received, Error> {
    let mut addrs = Vec::with_capacity(max);
    let r = if max == 1 {
        h.recv_timeout(buf, timeout).map(|(n, a)| {
            addrs.push(a);
            n
        })
    } else {
        h.recv_batch(buf, &mut addrs, max, timeout)
    };
    match r {
        Ok(len) => Ok(Received {
            len,
            addrs: addrs.iter().map(RawAddress::from).collect(),
            truncated: false,
        }),
        Err(Error::InsufficientBuffer { needed }) => {
            // WinDivert truncates the first packet and consumes it.
            let mut big = vec![0u8; needed.max(MTU_MAX)];
            let (n, a) = h.recv_timeout(&mut big, timeout)?;
            let k = n.min(buf.len());
            buf[..k].copy_from_slice(&big[..k]);
            Ok(Received {
                len: k,
                addrs: vec![RawAddress::from(&a)],
                truncated: n > buf.len(),
            })
        }
        Err(e) => Err(e),
    }
}

/// The address a send uses: WinDivert reads only Outbound, Impostor, the checksum bits and
/// the interface indexes (Layer and Event are ignored).
fn send_address(raw: &RawAddress, layer: Layer) -> Address {
    let u = raw.union_bytes();
    let word = |o: usize| u32::from_ne_bytes([u[o], u[o + 1], u[o + 2], u[o + 3]]);
    let mut a = Address::network(raw.outbound());
    a.layer = layer;
    a.timestamp = raw.timestamp;
    a.loopback = raw.loopback();
    a.impostor = raw.impostor();
    a.ipv6 = raw.ipv6();
    a.ip_checksum = raw.ip_checksum();
    a.tcp_checksum = raw.tcp_checksum();
    a.udp_checksum = raw.udp_checksum();
    a.data = LayerData::Network(NetworkData {
        if_idx: word(0),
        sub_if_idx: word(4),
    });
    a
}

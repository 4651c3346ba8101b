//! The registry of open lindivert handles, per network namespace, that survives crashes.
//!
//! Every handle (any layer but REFLECT) is registered as an nftables *owner table*
//! (`NFT_TABLE_F_OWNER`): the kernel deletes the table the moment the owning netlink socket
//! closes — on close, exit and `kill -9` alike — so the registry can never list a dead handle.
//! NETWORK handles add the registry data to the owner table they already have
//! ([`add_to_batch`]); the other layers create a table of their own ([`Registration`]) with
//! no base chain, so it costs nothing on the packet path.
//!
//! # Where the data lives
//!
//! `NFTA_TABLE_USERDATA` and `NFTA_RULE_USERDATA` are each limited to 256 bytes
//! (`NFT_USERDATA_MAXLEN`; 257 gives `ERANGE`, measured), but a filter object string can be
//! ~10 KB. The data is therefore split into chunks of at most [`CHUNK_PAYLOAD`] bytes, each
//! carried as the userdata of one expression-less rule of a regular (hook-less, never
//! evaluated) chain named [`CHAIN`] inside the owner table. Chunk 0 holds the fixed header
//! (process id, layer, priority, flags, open timestamp, object length) and the start of the
//! object string; an object of 10255 bytes takes 42 rules. Every chunk starts with
//! `"LDR1"`, its index and the chunk count, so a reader can reassemble and validate it.
//!
//! # Lifetime notifications
//!
//! Creating the table and its rules is one batch, announced on the `NFNLGRP_NFTABLES`
//! multicast group as NEWTABLE, NEWCHAIN, NEWRULE… A graceful close deletes the table
//! explicitly (a DELTABLE notification). The kernel's own removal of an owner table when the
//! socket dies is **not** announced (measured on 6.18: no message at all), so a watcher must
//! also re-list the tables now and then; see [`crate::reflect`].

use crate::error::Error;
use crate::nftables::{NFPROTO_INET, NFT_TABLE_F_OWNER};
use crate::sys::attr::{
    be64, cstr, messages, Attrs, MsgBuilder, NLMSG_DONE, NLMSG_ERROR, NLM_F_APPEND, NLM_F_CREATE,
    NLM_F_DUMP, NLM_F_REQUEST,
};
use crate::sys::netlink::{NetlinkSocket, NETLINK_NETFILTER};
use crate::sys::netns::NetNs;
use crate::sys::nfnl::{msg_type, Batch, NlError, SUBSYS_NFTABLES};
use lindivert_core::{Flags, Layer};
use std::collections::BTreeMap;
use std::time::Duration;

/// The name of the registry chain inside an owner table.
pub const CHAIN: &str = "lindivert_reflect";
/// Prefix of the tables [`Registration`] creates.
pub const TABLE_PREFIX: &str = "lindivert_r";
/// `NFT_USERDATA_MAXLEN`.
pub const USERDATA_MAX: usize = 256;
const CHUNK_HDR: usize = 8;
/// Payload bytes per rule.
pub const CHUNK_PAYLOAD: usize = USERDATA_MAX - CHUNK_HDR;
const MAGIC: &[u8; 4] = b"LDR1";
const FIXED: usize = 32;
/// The largest object string that fits (`u16` chunk count).
pub const MAX_OBJECT: usize = 1 << 20;

pub(crate) const NFT_MSG_NEWTABLE: u8 = 0;
pub(crate) const NFT_MSG_GETTABLE: u8 = 1;
pub(crate) const NFT_MSG_DELTABLE: u8 = 2;
pub(crate) const NFT_MSG_NEWCHAIN: u8 = 3;
pub(crate) const NFT_MSG_NEWRULE: u8 = 6;
pub(crate) const NFT_MSG_GETRULE: u8 = 7;

/// What a handle registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandleInfo {
    /// The process that opened the handle.
    pub process_id: u32,
    /// The handle's layer.
    pub layer: Layer,
    /// Its priority.
    pub priority: i16,
    /// Its flags.
    pub flags: Flags,
    /// When it was opened (`CLOCK_MONOTONIC` nanoseconds, like lindivert timestamps).
    pub timestamp: i64,
    /// The filter object string (`@WinDiv_…`, without the NUL).
    pub object: String,
}

impl HandleInfo {
    /// Info for a handle opened now by this process.
    pub fn now(layer: Layer, priority: i16, flags: Flags, object: String) -> HandleInfo {
        HandleInfo {
            process_id: std::process::id(),
            layer,
            priority,
            flags,
            timestamp: crate::sys::time::monotonic_ns(),
            object,
        }
    }

    /// The userdata chunks, one per rule.
    pub fn chunks(&self) -> Vec<Vec<u8>> {
        let obj = self.object.as_bytes();
        let mut fixed = Vec::with_capacity(FIXED);
        fixed.extend_from_slice(&self.process_id.to_le_bytes());
        fixed.push(self.layer as u8);
        fixed.push(0);
        fixed.extend_from_slice(&self.priority.to_le_bytes());
        fixed.extend_from_slice(&self.flags.bits().to_le_bytes());
        fixed.extend_from_slice(&self.timestamp.to_le_bytes());
        fixed.extend_from_slice(&(obj.len() as u32).to_le_bytes());
        fixed.extend_from_slice(&[0u8; 4]);
        debug_assert_eq!(fixed.len(), FIXED);
        let mut data = fixed;
        data.extend_from_slice(obj);
        let parts: Vec<&[u8]> = data.chunks(CHUNK_PAYLOAD).collect();
        let n = parts.len() as u16;
        parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut c = Vec::with_capacity(CHUNK_HDR + p.len());
                c.extend_from_slice(MAGIC);
                c.extend_from_slice(&(i as u16).to_le_bytes());
                c.extend_from_slice(&n.to_le_bytes());
                c.extend_from_slice(p);
                c
            })
            .collect()
    }

    /// Reassemble from chunks in any order; `None` when incomplete or malformed.
    pub fn from_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Option<HandleInfo> {
        let mut asm = Assembly::default();
        for c in chunks {
            asm.add(c);
        }
        asm.finish()
    }
}

/// Collects chunks until a [`HandleInfo`] is complete.
#[derive(Debug, Default, Clone)]
pub struct Assembly {
    parts: BTreeMap<u16, Vec<u8>>,
    count: Option<u16>,
}

impl Assembly {
    /// Add one rule's userdata (ignored if it is not a registry chunk).
    pub fn add(&mut self, c: &[u8]) {
        if c.len() < CHUNK_HDR || &c[0..4] != MAGIC {
            return;
        }
        let idx = u16::from_le_bytes([c[4], c[5]]);
        let n = u16::from_le_bytes([c[6], c[7]]);
        if idx >= n {
            return;
        }
        self.count = Some(n);
        self.parts.insert(idx, c[CHUNK_HDR..].to_vec());
    }

    /// Whether every chunk arrived.
    pub fn complete(&self) -> bool {
        self.count
            .is_some_and(|n| self.parts.len() == n as usize && self.parts.keys().all(|&k| k < n))
    }

    /// The info, once complete.
    pub fn finish(&self) -> Option<HandleInfo> {
        if !self.complete() {
            return None;
        }
        let data: Vec<u8> = self.parts.values().flatten().copied().collect();
        if data.len() < FIXED {
            return None;
        }
        let u32at = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
        let u64at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().unwrap());
        let len = u32at(24) as usize;
        if data.len() != FIXED + len {
            return None;
        }
        Some(HandleInfo {
            process_id: u32at(0),
            layer: Layer::from_u32(data[4] as u32)?,
            priority: i16::from_le_bytes([data[6], data[7]]),
            flags: Flags::from_bits_retain(u64at(8)),
            timestamp: u64at(16) as i64,
            object: String::from_utf8(data[FIXED..].to_vec()).ok()?,
        })
    }
}

/// Add the registry chain and its rules for `info` to `batch`, inside the existing (or
/// created earlier in the same batch) table `table` of `family`. NETWORK handles call this
/// while building their owner table (see [`crate::nftables::OwnerTable::create_with`]).
pub fn add_to_batch(batch: &mut Batch, family: u8, table: &str, info: &HandleInfo) {
    let b = batch.msg(NFT_MSG_NEWCHAIN, NLM_F_CREATE, family, "NEWCHAIN registry");
    b.put_str(1, table).put_str(3, CHAIN); // NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME
    batch.end_msg();
    for c in info.chunks() {
        let b = batch.msg(
            NFT_MSG_NEWRULE,
            NLM_F_CREATE | NLM_F_APPEND,
            family,
            "NEWRULE registry",
        );
        b.put_str(1, table).put_str(2, CHAIN).put(7, &c); // TABLE, CHAIN, USERDATA
        batch.end_msg();
    }
}

/// A handle's registration: an owner table of its own. Dropping it deletes the table
/// (announced to REFLECT watchers); if the process dies, the kernel deletes it.
#[derive(Debug)]
pub struct Registration {
    sock: NetlinkSocket,
    table: String,
    seq: u32,
}

fn io_nl(what: &str, e: std::io::Error) -> NlError {
    NlError {
        errno: e.raw_os_error().unwrap_or(libc::EIO),
        what: what.to_string(),
    }
}

impl Registration {
    /// Register `info` in the namespace `netns` (the calling thread's when `None`).
    pub fn create(netns: Option<&NetNs>, info: &HandleInfo) -> Result<Registration, Error> {
        if info.object.len() > MAX_OBJECT {
            return Err(Error::InvalidParameter("filter object too long".into()));
        }
        let build = || -> Result<Registration, NlError> {
            let sock =
                NetlinkSocket::open(NETLINK_NETFILTER).map_err(|e| io_nl("open netlink", e))?;
            let table = format!("{TABLE_PREFIX}{}", sock.portid());
            let mut batch = Batch::new(SUBSYS_NFTABLES, 1);
            let b = batch.msg(NFT_MSG_NEWTABLE, NLM_F_CREATE, NFPROTO_INET, "NEWTABLE");
            b.put_str(1, &table).put_be32(2, NFT_TABLE_F_OWNER);
            batch.end_msg();
            add_to_batch(&mut batch, NFPROTO_INET, &table, info);
            let seq = batch.next_seq();
            batch.commit(&sock)?;
            Ok(Registration { sock, table, seq })
        };
        crate::sys::netns::run_in(netns, build)?.map_err(Error::from_netlink)
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Delete the table now (what drop does).
    pub fn close(self) -> Result<(), Error> {
        let mut s = self;
        s.delete().map_err(Error::from_netlink)
    }

    fn delete(&mut self) -> Result<(), NlError> {
        if self.table.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new(SUBSYS_NFTABLES, self.seq);
        let b = batch.msg(NFT_MSG_DELTABLE, 0, NFPROTO_INET, "DELTABLE");
        b.put_str(1, &self.table);
        batch.end_msg();
        self.seq = batch.next_seq();
        let r = batch.commit(&self.sock);
        self.table.clear();
        r
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // The explicit delete is announced (the kernel's implicit one on close is not).
        let _ = self.delete();
    }
}

/// A registered handle as listed: its info and which table carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The table's family.
    pub family: u8,
    /// The table's name.
    pub table: String,
    /// The table's kernel handle (unique per namespace over time).
    pub table_handle: u64,
    /// The owner's netlink port id.
    pub owner: Option<u32>,
    /// What was registered.
    pub info: HandleInfo,
}

/// A table seen in a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableSeen {
    pub family: u8,
    pub name: String,
    pub handle: u64,
    pub owner: Option<u32>,
}

/// Run a dump request on `sock` and call `f` for each message (type, family, attributes).
pub(crate) fn dump(
    sock: &NetlinkSocket,
    msg: u8,
    family: u8,
    seq: u32,
    attrs: &dyn Fn(&mut MsgBuilder),
    f: &mut dyn FnMut(u16, u8, Attrs<'_>),
) -> Result<(), NlError> {
    let mut b = MsgBuilder::new();
    b.begin(
        msg_type(SUBSYS_NFTABLES, msg),
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
    )
    .nfgen(family, 0);
    attrs(&mut b);
    b.end();
    sock.send(b.as_bytes())
        .map_err(|e| io_nl("nftables dump", e))?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        if !sock
            .wait_readable(Some(Duration::from_secs(5)))
            .map_err(|e| io_nl("poll", e))?
        {
            return Err(NlError {
                errno: libc::ETIMEDOUT,
                what: "nftables dump".into(),
            });
        }
        let n = sock
            .recv(&mut buf, false)
            .map_err(|e| io_nl("nftables dump", e))?;
        for m in messages(&buf[..n]) {
            if m.seq != seq {
                continue;
            }
            if m.ty == NLMSG_DONE {
                return Ok(());
            }
            if m.ty == NLMSG_ERROR {
                match m.error() {
                    Some((0, _)) => continue,
                    Some((errno, _)) => {
                        return Err(NlError {
                            errno,
                            what: "nftables dump".into(),
                        })
                    }
                    None => continue,
                }
            }
            f(m.ty, m.payload.first().copied().unwrap_or(0), m.nf_attrs());
        }
    }
}

/// Every table of the namespace of `sock`.
pub(crate) fn dump_tables(sock: &NetlinkSocket, seq: u32) -> Result<Vec<TableSeen>, NlError> {
    let mut out = Vec::new();
    dump(sock, NFT_MSG_GETTABLE, 0, seq, &|_| {}, &mut |_, fam, a| {
        out.push(TableSeen {
            family: fam,
            name: a.get(1).map(cstr).unwrap_or("").to_string(),
            handle: a.get(4).and_then(be64).unwrap_or(0),
            owner: a.get(7).and_then(crate::sys::attr::be32),
        })
    })?;
    Ok(out)
}

/// The registry chunks of every table (`(family, table) → assembly`), or of one table.
pub(crate) fn dump_chunks(
    sock: &NetlinkSocket,
    seq: u32,
    only: Option<(u8, &str)>,
) -> Result<BTreeMap<(u8, String), Assembly>, NlError> {
    let mut out: BTreeMap<(u8, String), Assembly> = BTreeMap::new();
    let family = only.map_or(0, |o| o.0);
    let table = only.map(|o| o.1.to_string());
    dump(
        sock,
        NFT_MSG_GETRULE,
        family,
        seq,
        &|b| {
            if let Some(t) = &table {
                b.put_str(1, t).put_str(2, CHAIN);
            }
        },
        &mut |_, fam, a| {
            if a.get(2).map(cstr) != Some(CHAIN) {
                return;
            }
            let (Some(t), Some(ud)) = (a.get(1), a.get(7)) else {
                return;
            };
            out.entry((fam, cstr(t).to_string())).or_default().add(ud);
        },
    )?;
    Ok(out)
}

/// Every handle registered in the namespace of `sock`.
pub(crate) fn list_on(sock: &NetlinkSocket, seq: u32) -> Result<Vec<Registered>, NlError> {
    let tables = dump_tables(sock, seq)?;
    let chunks = dump_chunks(sock, seq.wrapping_add(1), None)?;
    let mut out = Vec::new();
    for t in tables {
        if let Some(info) = chunks
            .get(&(t.family, t.name.clone()))
            .and_then(Assembly::finish)
        {
            out.push(Registered {
                family: t.family,
                table: t.name,
                table_handle: t.handle,
                owner: t.owner,
                info,
            });
        }
    }
    Ok(out)
}

/// Every handle registered in `netns` (the calling thread's when `None`).
///
/// A snapshot (two nftables dumps: tables, then registry rules; needs `CAP_NET_ADMIN`).
/// Tables whose registry data is incomplete or invalid (e.g. created between the two dumps)
/// are left out.
///
/// ```no_run
/// use lindivert::registry;
/// use lindivert::sys::netns::NetNs;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// for r in registry::list(None)? {
///     let i = &r.info;
///     println!("{}: pid {} {} priority {} flags {} {}", r.table, i.process_id, i.layer,
///              i.priority, i.flags, i.object);
/// }
/// let ns = NetNs::named("test")?;
/// println!("{} handles in netns test", registry::list(Some(&ns))?.len());
/// # Ok(())
/// # }
/// ```
pub fn list(netns: Option<&NetNs>) -> Result<Vec<Registered>, Error> {
    crate::sys::netns::run_in(netns, || {
        let sock = NetlinkSocket::open(NETLINK_NETFILTER).map_err(|e| io_nl("open netlink", e))?;
        sock.set_rcvbuf(4 << 20).ok();
        list_on(&sock, 1)
    })?
    .map_err(Error::from_netlink)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip() {
        for len in [0usize, 1, 215, 216, 217, 10255, 12288] {
            let info = HandleInfo {
                process_id: 4242,
                layer: Layer::Socket,
                priority: -1234,
                flags: Flags::SNIFF.union(Flags::RECV_ONLY),
                timestamp: 123_456_789_012,
                object: "x".repeat(len),
            };
            let chunks = info.chunks();
            assert!(chunks.iter().all(|c| c.len() <= USERDATA_MAX));
            if len == 10255 {
                assert_eq!(chunks.len(), 42);
            }
            let rev: Vec<&[u8]> = chunks.iter().rev().map(|c| c.as_slice()).collect();
            assert_eq!(HandleInfo::from_chunks(rev), Some(info.clone()));
            let missing: Vec<&[u8]> = chunks.iter().skip(1).map(|c| c.as_slice()).collect();
            if chunks.len() > 1 {
                assert_eq!(HandleInfo::from_chunks(missing), None);
            }
        }
        assert_eq!(HandleInfo::from_chunks([&b"junk"[..]]), None);
    }
}

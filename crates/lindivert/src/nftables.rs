//! Per-handle nftables owner tables, programmed over `NETLINK_NETFILTER`.
//!
//! A handle owns one table (`NFT_TABLE_F_OWNER`, family `inet`) created by its own netlink
//! socket: the kernel deletes the table, its chains and rules the moment that socket closes
//! (close, exit, `kill -9`), so rules never outlive a handle. Each base chain holds:
//! 1. *skip injected*: packets whose mark lies in `[MARK_BASE, MARK_BASE | own tag]`
//!    (injected by this handle or one of lower or equal priority, whose chains come after
//!    ours anyway) are accepted, i.e. passed on to the next base chain (the next priority);
//!    a packet injected by a higher-priority handle is seen again only by lower priorities,
//!    as in WinDivert (`tag ≤ own ⇒ ignore`);
//! 2. NETWORK inbound only: `iif lo` is accepted (loopback traffic is reported once, as
//!    outbound, like WinDivert);
//! 3. an optional coarse prefilter (native `meta l4proto`/port matches, or the compat `bpf`
//!    match with an eBPF socket-filter program fd) followed by the action: the compat
//!    `NFQUEUE` target (rev 3) or a drop verdict.

use crate::sys::attr::{
    cstr, messages, Attrs, MsgBuilder, NLMSG_DONE, NLMSG_ERROR, NLM_F_APPEND, NLM_F_CREATE,
    NLM_F_DUMP, NLM_F_REQUEST,
};
use crate::sys::netlink::{NetlinkSocket, NETLINK_NETFILTER};
use crate::sys::nfnl::{msg_type, Batch, NlError, SUBSYS_NFTABLES};
use std::os::fd::RawFd;
use std::time::Duration;

const NFT_MSG_NEWTABLE: u8 = 0;
const NFT_MSG_GETTABLE: u8 = 1;
const NFT_MSG_DELTABLE: u8 = 2;
const NFT_MSG_NEWCHAIN: u8 = 3;
const NFT_MSG_NEWRULE: u8 = 6;

/// `NFPROTO_INET`.
pub const NFPROTO_INET: u8 = 1;
/// `NFT_TABLE_F_OWNER`.
pub const NFT_TABLE_F_OWNER: u32 = 0x2;

/// The mark bits that identify packets injected by lindivert; the low 16 bits carry the
/// injecting handle's tag (WinDivert priority + 30000).
pub const MARK_BASE: u32 = 0x1D1F_0000;

/// The injection mark of a handle with WinDivert priority `priority`.
pub fn injection_mark(priority: i16) -> u32 {
    MARK_BASE | (priority as i32 + 30000) as u32
}

/// The nftables chain priority of a WinDivert priority: higher WinDivert priority sees
/// packets first, i.e. gets a lower (earlier) nftables priority.
pub fn chain_priority(priority: i16) -> i32 {
    -(priority as i32)
}

/// A netfilter hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `NF_INET_LOCAL_IN` (1).
    Input,
    /// `NF_INET_FORWARD` (2).
    Forward,
    /// `NF_INET_LOCAL_OUT` (3).
    Output,
}

impl Hook {
    /// The hook number.
    pub fn number(self) -> u32 {
        match self {
            Hook::Input => 1,
            Hook::Forward => 2,
            Hook::Output => 3,
        }
    }

    fn chain_name(self) -> &'static str {
        match self {
            Hook::Input => "in",
            Hook::Forward => "fwd",
            Hook::Output => "out",
        }
    }
}

/// A native prefilter test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `meta l4proto == p`.
    L4Proto(u8),
    /// Transport header 16-bit field at `offset` (0 = source port, 2 = destination port)
    /// equals `port`. Must follow an `L4Proto` of TCP or UDP.
    Port {
        /// 0 or 2.
        offset: u32,
        /// The port.
        port: u16,
    },
    /// The compat `bpf` match (rev 1) with an eBPF socket-filter program fd (mode FD_ELF = 2);
    /// the rule takes its own reference, the fd can be closed afterwards.
    BpfFd(RawFd),
}

/// What a rule does with matching packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The compat `NFQUEUE` target, rev 3.
    Queue {
        /// The queue number.
        num: u16,
        /// `NFQ_FLAG_BYPASS`: accept when no reader is bound.
        bypass: bool,
    },
    /// An nftables drop verdict.
    Drop,
    /// Queue to one of `total` queues from `num` on, chosen as `spread` says.
    QueueRange {
        /// The first queue number.
        num: u16,
        /// How many queues.
        total: u16,
        /// `NFQ_FLAG_BYPASS`: accept when no reader is bound.
        bypass: bool,
        /// How the queue is chosen.
        spread: Spread,
    },
}

/// How an [`Action::QueueRange`] chooses the queue of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Spread {
    /// By flow: nftables' symmetric hash (`symhash`: addresses and, for TCP/UDP/SCTP, ports;
    /// both directions alike) modulo the number of queues, so every packet of a connection
    /// goes to the same queue and stays in order. The base chain jumps to the regular chain
    /// [`FAN_CHAIN`], the root of a binary tree of chains over the hash values (one hash per
    /// level: one for 2 queues, ⌈log2 n⌉ for n).
    #[default]
    Flow,
    /// By the CPU that handles the packet (the compat `NFQUEUE` target's
    /// `NFQ_FLAG_CPU_FANOUT`): no hashing and cache-local, but the packets of one flow whose
    /// sender moves between CPUs land in different queues and can be re-injected out of
    /// order.
    Cpu,
}

/// The regular chain that spreads packets over queues by flow ([`Spread::Flow`]).
pub const FAN_CHAIN: &str = "fan";

/// One base chain of the owner table.
#[derive(Debug, Clone)]
pub struct ChainSpec {
    /// The hook.
    pub hook: Hook,
    /// The nftables priority.
    pub priority: i32,
    /// The handle's injection mark: packets with a mark in `[MARK_BASE, mark]` (re-injected
    /// by this or a higher priority) are left alone.
    pub skip_mark: Option<u32>,
    /// Leave packets arriving on `lo` alone (NETWORK inbound: loopback is seen at output).
    pub skip_loopback_in: bool,
    /// Prefilter alternatives: the action applies if any alternative matches; each is a
    /// conjunction. Empty = every packet.
    pub prefilter: Vec<Vec<Match>>,
    /// The action.
    pub action: Action,
}

// ---- expression encoding ----

fn expr_begin<'a>(b: &'a mut MsgBuilder, name: &str) -> &'a mut MsgBuilder {
    b.nest_begin(1); // NFTA_LIST_ELEM
    b.put_str(1, name); // NFTA_EXPR_NAME
    b.nest_begin(2) // NFTA_EXPR_DATA
}

fn expr_end(b: &mut MsgBuilder) {
    b.nest_end();
    b.nest_end();
}

const REG1: u32 = 1;

fn meta_load(b: &mut MsgBuilder, key: u32) {
    expr_begin(b, "meta");
    b.put_be32(1, REG1); // NFTA_META_DREG
    b.put_be32(2, key); // NFTA_META_KEY
    expr_end(b);
}

/// cmp ops: 0 eq, 1 neq, 2 lt, 3 lte, 4 gt, 5 gte.
fn cmp(b: &mut MsgBuilder, op: u32, data: &[u8]) {
    expr_begin(b, "cmp");
    b.put_be32(1, REG1); // NFTA_CMP_SREG
    b.put_be32(2, op); // NFTA_CMP_OP
    b.nest_begin(3).put(1, data).nest_end(); // NFTA_CMP_DATA { NFTA_DATA_VALUE }
    expr_end(b);
}

/// `range` with op NEQ: REG1 is outside `from..=to` (compared as bytes).
fn range_neq(b: &mut MsgBuilder, from: &[u8], to: &[u8]) {
    expr_begin(b, "range");
    b.put_be32(1, REG1); // NFTA_RANGE_SREG
    b.put_be32(2, 1); // NFTA_RANGE_OP = NFT_RANGE_NEQ
    b.nest_begin(3).put(1, from).nest_end(); // NFTA_RANGE_FROM_DATA { NFTA_DATA_VALUE }
    b.nest_begin(4).put(1, to).nest_end(); // NFTA_RANGE_TO_DATA { NFTA_DATA_VALUE }
    expr_end(b);
}

fn payload_load(b: &mut MsgBuilder, base: u32, offset: u32, len: u32) {
    expr_begin(b, "payload");
    b.put_be32(1, REG1); // DREG
    b.put_be32(2, base); // BASE (2 = transport header)
    b.put_be32(3, offset);
    b.put_be32(4, len);
    expr_end(b);
}

fn byteorder_hton32(b: &mut MsgBuilder) {
    expr_begin(b, "byteorder");
    b.put_be32(1, REG1); // SREG
    b.put_be32(2, REG1); // DREG
    b.put_be32(3, 1); // OP = HTON
    b.put_be32(4, 4); // LEN
    b.put_be32(5, 4); // SIZE
    expr_end(b);
}

fn verdict(b: &mut MsgBuilder, code: i32) {
    immediate_verdict(b, code, None)
}

/// `jump chain`.
fn jump(b: &mut MsgBuilder, chain: &str) {
    immediate_verdict(b, NFT_JUMP, Some(chain))
}

/// A verdict (with the chain it names, for jump/goto) into the verdict register.
fn immediate_verdict(b: &mut MsgBuilder, code: i32, chain: Option<&str>) {
    expr_begin(b, "immediate");
    b.put_be32(1, 0); // NFTA_IMMEDIATE_DREG = NFT_REG_VERDICT
    b.nest_begin(2); // NFTA_IMMEDIATE_DATA
    b.nest_begin(2); // NFTA_DATA_VERDICT
    b.put_be32(1, code as u32); // NFTA_VERDICT_CODE
    if let Some(c) = chain {
        b.put_str(2, c); // NFTA_VERDICT_CHAIN
    }
    b.nest_end();
    b.nest_end();
    expr_end(b);
}

fn counter(b: &mut MsgBuilder) {
    expr_begin(b, "counter");
    expr_end(b);
}

fn nfqueue_target(b: &mut MsgBuilder, num: u16, bypass: bool) {
    nfqueue_target_range(b, num, 1, bypass, false)
}

/// `symhash mod modulus` into REG1 (a host-order u32, 0..modulus).
fn symhash(b: &mut MsgBuilder, modulus: u32) {
    expr_begin(b, "hash");
    b.put_be32(2, REG1); // NFTA_HASH_DREG
    b.put_be32(4, modulus); // NFTA_HASH_MODULUS
    b.put_be32(7, 1); // NFTA_HASH_TYPE = NFT_HASH_SYM
    expr_end(b);
}

fn nfqueue_target_range(b: &mut MsgBuilder, num: u16, total: u16, bypass: bool, fanout: bool) {
    expr_begin(b, "target");
    b.put_str(1, "NFQUEUE"); // NFTA_TARGET_NAME
    b.put_be32(2, 3); // NFTA_TARGET_REV
                      // struct xt_NFQ_info_v3 { u16 queuenum; u16 queues_total; u16 flags; } (host order)
    let mut info = [0u8; 8];
    info[0..2].copy_from_slice(&num.to_ne_bytes());
    info[2..4].copy_from_slice(&total.max(1).to_ne_bytes());
    // NFQ_FLAG_BYPASS = 1, NFQ_FLAG_CPU_FANOUT = 2
    let flags = u16::from(bypass) | if fanout && total > 1 { 2 } else { 0 };
    info[4..6].copy_from_slice(&flags.to_ne_bytes());
    b.put(3, &info); // NFTA_TARGET_INFO
    expr_end(b);
}

fn bpf_match_fd(b: &mut MsgBuilder, fd: RawFd) {
    expr_begin(b, "match");
    b.put_str(1, "bpf"); // NFTA_MATCH_NAME
    b.put_be32(2, 1); // NFTA_MATCH_REV
                      // struct xt_bpf_info_v1: u16 mode, u16 n, s32 fd, 512-byte union, 8-byte kernel pointer.
    let mut info = vec![0u8; 528];
    info[0..2].copy_from_slice(&2u16.to_ne_bytes()); // XT_BPF_MODE_FD_ELF
    info[4..8].copy_from_slice(&fd.to_ne_bytes());
    b.put(3, &info); // NFTA_MATCH_INFO
    expr_end(b);
}

const NF_DROP: i32 = 0;
const NF_ACCEPT: i32 = 1;
const NFT_JUMP: i32 = -3;
const META_MARK: u32 = 3;
const META_IIF: u32 = 4;
const META_L4PROTO: u32 = 16;

fn encode_match(b: &mut MsgBuilder, m: &Match) {
    match m {
        Match::L4Proto(p) => {
            meta_load(b, META_L4PROTO);
            cmp(b, 0, &[*p]);
        }
        Match::Port { offset, port } => {
            payload_load(b, 2, *offset, 2);
            cmp(b, 0, &port.to_be_bytes());
        }
        Match::BpfFd(fd) => bpf_match_fd(b, *fd),
    }
}

/// Writes the expressions of one rule.
type RuleBody<'a> = Box<dyn Fn(&mut MsgBuilder) + 'a>;

/// The chain `chain` that sends each packet to queue `num + symhash mod total`, for hash
/// values in `lo..hi`: a binary tree of regular chains (children first: a jump must name an
/// existing chain), so a packet is hashed once per level, ⌈log2 total⌉ times in all.
#[allow(clippy::too_many_arguments)]
fn fan_tree(
    batch: &mut Batch,
    table: &str,
    chain: &str,
    lo: u16,
    hi: u16,
    num: u16,
    total: u16,
    bypass: bool,
) {
    let mid = lo + (hi - lo) / 2;
    let child = |a: u16, b: u16| (b - a > 1).then(|| format!("fan{a}_{b}"));
    let (left, right) = (child(lo, mid), child(mid, hi));
    for (c, a, b) in [(&left, lo, mid), (&right, mid, hi)] {
        if let Some(c) = c {
            fan_tree(batch, table, c, a, b, num, total, bypass);
        }
    }
    let b = batch.msg(NFT_MSG_NEWCHAIN, NLM_F_CREATE, NFPROTO_INET, "NEWCHAIN fan");
    b.put_str(1, table).put_str(3, chain);
    batch.end_msg();
    // hash < mid: the left half; else the right half
    for (first, next, a) in [(true, &left, lo), (false, &right, mid)] {
        let b = batch.msg(
            NFT_MSG_NEWRULE,
            NLM_F_CREATE | NLM_F_APPEND,
            NFPROTO_INET,
            "NEWRULE fan (hash, queue)",
        );
        b.put_str(1, table).put_str(2, chain);
        b.nest_begin(4);
        if first {
            symhash(b, u32::from(total));
            // compare as big-endian bytes (cmp `lt` compares memory)
            byteorder_hton32(b);
            cmp(b, 2, &u32::from(mid).to_be_bytes());
        }
        match next {
            Some(c) => jump(b, c),
            None => nfqueue_target(b, num + a, bypass),
        }
        b.nest_end();
        batch.end_msg();
    }
}

/// An owner table and the socket that owns it.
#[derive(Debug)]
pub struct OwnerTable {
    sock: NetlinkSocket,
    name: String,
    seq: u32,
    deleted: bool,
    bypassed: bool,
    chains: Vec<&'static str>,
}

impl OwnerTable {
    /// Create table `name` (family inet, owner flag) with `chains`, in one batch on a new
    /// netlink socket (created in the calling thread's network namespace).
    pub fn create(name: &str, chains: &[ChainSpec]) -> Result<OwnerTable, NlError> {
        OwnerTable::create_with(name, chains, &|_, _| {})
    }

    /// [`OwnerTable::create`], with `extra(batch, table_name)` adding more messages to the
    /// same batch after the table and its chains (e.g. [`crate::registry::add_to_batch`]).
    pub fn create_with(
        name: &str,
        chains: &[ChainSpec],
        extra: &dyn Fn(&mut Batch, &str),
    ) -> Result<OwnerTable, NlError> {
        let sock = NetlinkSocket::open(NETLINK_NETFILTER).map_err(|e| NlError {
            errno: e.raw_os_error().unwrap_or(libc::EIO),
            what: "opening a NETLINK_NETFILTER socket".into(),
        })?;
        let seq = 1;
        let mut batch = Batch::new(SUBSYS_NFTABLES, seq);
        let b = batch.msg(NFT_MSG_NEWTABLE, NLM_F_CREATE, NFPROTO_INET, "NEWTABLE");
        b.put_str(1, name).put_be32(2, NFT_TABLE_F_OWNER);
        batch.end_msg();
        // Spread::Flow: the regular chain the base chains jump to, before them (a jump
        // must name an existing chain); one per table, so one set of queues per table
        let fans: Vec<(u16, u16, bool)> = chains
            .iter()
            .filter_map(|c| match c.action {
                Action::QueueRange {
                    num,
                    total,
                    bypass,
                    spread: Spread::Flow,
                } if total > 1 => Some((num, total, bypass)),
                _ => None,
            })
            .collect();
        if let Some(&(num, total, bypass)) = fans.first() {
            if fans.iter().any(|f| *f != (num, total, bypass)) {
                return Err(NlError {
                    errno: libc::EINVAL,
                    what: "one flow-spread queue range per table".into(),
                });
            }
            fan_tree(&mut batch, name, FAN_CHAIN, 0, total, num, total, bypass);
        }
        for c in chains {
            let chain = c.hook.chain_name();
            let b = batch.msg(NFT_MSG_NEWCHAIN, NLM_F_CREATE, NFPROTO_INET, "NEWCHAIN");
            b.put_str(1, name).put_str(3, chain);
            b.nest_begin(4)
                .put_be32(1, c.hook.number())
                .put_be32(2, c.priority as u32)
                .nest_end();
            b.put_be32(5, NF_ACCEPT as u32).put_str(7, "filter");
            batch.end_msg();

            let mut rules: Vec<(&str, RuleBody<'_>)> = Vec::new();
            let (skip_mark, skip_loopback_in) = (c.skip_mark, c.skip_loopback_in);
            let alternatives: Vec<&[Match]> = if c.prefilter.is_empty() {
                vec![&[]]
            } else {
                c.prefilter.iter().map(|v| v.as_slice()).collect()
            };
            for alt in alternatives {
                let action = c.action;
                rules.push((
                    match action {
                        Action::Queue { .. } | Action::QueueRange { .. } => {
                            "NEWRULE queue (xt NFQUEUE target)"
                        }
                        Action::Drop => "NEWRULE drop",
                    },
                    Box::new(move |b: &mut MsgBuilder| {
                        // the native prefilter tests first: a packet that cannot match
                        // leaves the chain at its first failed test (usually one compare);
                        // then the cheap exclusions, and the eBPF program last
                        let (native, bpf): (Vec<&Match>, Vec<&Match>) =
                            alt.iter().partition(|m| !matches!(m, Match::BpfFd(_)));
                        for m in native {
                            encode_match(b, m);
                        }
                        if let Some(mark) = skip_mark {
                            // not re-injected by this or a higher priority: mark outside
                            // MARK_BASE..=mark (big-endian, as `range` compares bytes)
                            meta_load(b, META_MARK);
                            byteorder_hton32(b);
                            range_neq(b, &MARK_BASE.to_be_bytes(), &mark.to_be_bytes());
                        }
                        if skip_loopback_in {
                            // not arriving on `lo` (loopback is seen once, at output)
                            meta_load(b, META_IIF);
                            cmp(b, 1, &1u32.to_ne_bytes());
                        }
                        for m in bpf {
                            encode_match(b, m);
                        }
                        counter(b);
                        match action {
                            Action::Queue { num, bypass } => nfqueue_target(b, num, bypass),
                            Action::QueueRange {
                                total,
                                spread: Spread::Flow,
                                ..
                            } if total > 1 => jump(b, FAN_CHAIN),
                            Action::QueueRange {
                                num,
                                total,
                                bypass,
                                spread,
                            } => nfqueue_target_range(b, num, total, bypass, spread == Spread::Cpu),
                            Action::Drop => verdict(b, NF_DROP),
                        }
                    }),
                ));
            }
            for (label, body) in rules {
                let b = batch.msg(
                    NFT_MSG_NEWRULE,
                    NLM_F_CREATE | NLM_F_APPEND,
                    NFPROTO_INET,
                    label,
                );
                b.put_str(1, name).put_str(2, chain);
                b.nest_begin(4);
                body(b);
                b.nest_end();
                batch.end_msg();
            }
        }
        extra(&mut batch, name);
        let next = batch.next_seq();
        batch.commit(&sock)?;
        Ok(OwnerTable {
            sock,
            name: name.to_string(),
            seq: next,
            deleted: false,
            bypassed: false,
            chains: chains.iter().map(|c| c.hook.chain_name()).collect(),
        })
    }

    /// The table name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The owning socket's port id.
    pub fn owner_portid(&self) -> u32 {
        self.sock.portid()
    }

    /// Whether [`OwnerTable::delete`] succeeded.
    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// Stop queueing without unregistering any hook: insert an `accept` rule at the head of
    /// every chain. Idempotent.
    ///
    /// Deleting a base chain unregisters its netfilter hook, and the kernel then drops every
    /// packet waiting in *any* nfqueue of the namespace (`nf_queue_nf_hook_drop`), so a
    /// graceful close bypasses first, drains its queue, and deletes last.
    pub fn bypass(&mut self) -> Result<(), NlError> {
        if self.deleted || self.bypassed || self.chains.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new(SUBSYS_NFTABLES, self.seq);
        for chain in &self.chains {
            let b = batch.msg(
                NFT_MSG_NEWRULE,
                NLM_F_CREATE,
                NFPROTO_INET,
                "NEWRULE bypass",
            );
            b.put_str(1, &self.name).put_str(2, chain);
            b.nest_begin(4);
            verdict(b, NF_ACCEPT);
            b.nest_end();
            batch.end_msg();
        }
        self.seq = batch.next_seq();
        batch.commit(&self.sock)?;
        self.bypassed = true;
        Ok(())
    }

    /// Delete the table now (the rules stop matching at once). Idempotent.
    pub fn delete(&mut self) -> Result<(), NlError> {
        if self.deleted {
            return Ok(());
        }
        let mut batch = Batch::new(SUBSYS_NFTABLES, self.seq);
        let b = batch.msg(NFT_MSG_DELTABLE, 0, NFPROTO_INET, "DELTABLE");
        b.put_str(1, &self.name);
        batch.end_msg();
        self.seq = batch.next_seq();
        batch.commit(&self.sock)?;
        self.deleted = true;
        Ok(())
    }
}

/// A table as listed by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// nfgenmsg family.
    pub family: u8,
    /// Name.
    pub name: String,
    /// `NFTA_TABLE_FLAGS`.
    pub flags: u32,
    /// `NFTA_TABLE_OWNER` (port id), if owned.
    pub owner: Option<u32>,
}

/// List every nftables table of the calling thread's network namespace (all families).
pub fn list_tables() -> Result<Vec<TableInfo>, NlError> {
    let io_err = |what: &str, e: std::io::Error| NlError {
        errno: e.raw_os_error().unwrap_or(libc::EIO),
        what: what.to_string(),
    };
    let sock = NetlinkSocket::open(NETLINK_NETFILTER).map_err(|e| io_err("open", e))?;
    let mut b = MsgBuilder::new();
    b.begin(
        msg_type(SUBSYS_NFTABLES, NFT_MSG_GETTABLE),
        NLM_F_REQUEST | NLM_F_DUMP,
        1,
    )
    .nfgen(0, 0)
    .end();
    sock.send(b.as_bytes()).map_err(|e| io_err("GETTABLE", e))?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if !sock
            .wait_readable(Some(Duration::from_secs(5)))
            .map_err(|e| io_err("poll", e))?
        {
            return Err(NlError {
                errno: libc::ETIMEDOUT,
                what: "GETTABLE dump".into(),
            });
        }
        let n = sock.recv(&mut buf, false).map_err(|e| io_err("recv", e))?;
        for m in messages(&buf[..n]) {
            if m.ty == NLMSG_DONE {
                return Ok(out);
            }
            if m.ty == NLMSG_ERROR {
                if let Some((errno, _)) = m.error() {
                    if errno != 0 {
                        return Err(NlError {
                            errno,
                            what: "GETTABLE dump".into(),
                        });
                    }
                }
                continue;
            }
            let attrs: Attrs<'_> = m.nf_attrs();
            out.push(TableInfo {
                family: m.payload.first().copied().unwrap_or(0),
                name: attrs.get(1).map(cstr).unwrap_or("").to_string(),
                flags: attrs.get(2).and_then(crate::sys::attr::be32).unwrap_or(0),
                owner: attrs.get(7).and_then(crate::sys::attr::be32),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_and_mark_mapping() {
        assert!(chain_priority(100) < chain_priority(0));
        assert_eq!(chain_priority(-30000), 30000);
        assert_eq!(injection_mark(-30000), MARK_BASE);
        assert_eq!(injection_mark(30000), MARK_BASE | 60000);
        assert!(injection_mark(5) > injection_mark(4));
    }
}

//! The eBPF back end for the SOCKET layer: the cgroup hook programs that evaluate a filter on
//! socket events in the kernel, report matching events through a ring buffer and refuse the
//! operations a blocking handle matches.
//!
//! Pure code generation: the caller creates the maps, passes their descriptors in
//! [`SockMaps`], loads each [`Hook`]'s program with its program type and expected attach
//! type, and attaches it at the cgroup-v2 root.
//!
//! # Events and hooks
//!
//! | event | hook | fields | blocking (handle without SNIFF) |
//! |---|---|---|---|
//! | BIND | `cgroup/post_bind4`, `post_bind6` | local = the bound address and port (after the port is allocated) | the program returns 0: `bind()` fails with `EPERM` and the port is released |
//! | CONNECT | `cgroup/connect4`, `connect6` (TCP and UDP `connect()`), `cgroup/sendmsg4`, `sendmsg6` (unconnected UDP sends; reported once per socket and destination) | remote = the destination; local = what the socket is bound to *before* the connect (often 0: the kernel picks the port later) | `connect()`/`sendmsg()` fail with `EPERM` |
//! | LISTEN | `sockops` `TCP_LISTEN_CB` | local; remote = 0; protocol TCP | `listen()` itself succeeds (sock_ops cannot refuse it); the listener is put in the *listeners* map and the `cgroup_skb/ingress` program drops every packet addressed to it, so no connection ever completes (clients time out) |
//! | ACCEPT | SNIFF: `sockops` `PASSIVE_ESTABLISHED_CB` (endpoint = the new socket's cookie). Blocking: `cgroup_skb/ingress` on each SYN to a listener of this namespace (endpoint = 0, the connection does not exist yet) | parent = the listener's cookie, process = the listener's process | the SYN is dropped |
//! | CLOSE | `cgroup/sock_release` | remote from the socket; local from the *endpoints* map (filled by the other hooks; 0 when never seen) | never (always reported with Sniffed = 1) |
//!
//! Every program first compares `bpf_get_netns_cookie` with the handle's namespace cookie
//! and lets everything from other namespaces pass untouched. The ingress program instead
//! only acts on listeners found in the listeners map, which only the namespace-checked
//! `sockops` program fills.
//!
//! # Field values
//!
//! Every field valid at the SOCKET layer is exact in the kernel: the program builds the
//! event [`record`] on its stack (the same bytes it sends to user space) and evaluates the
//! filter's tests on it, so user space and kernel always agree (see [`record_to_address`]).
//! `timestamp` is `bpf_ktime_get_ns` (`CLOCK_MONOTONIC`, the clock of lindivert timestamps);
//! `processId` is the thread-group id of the current task; `endpointId` the socket cookie;
//! `ip` is true when the local address (or, if it is zero, the remote address) is
//! IPv4-mapped, as the user-space evaluator defines it (DIFFERENCES F4); `loopback` is true
//! when the remote address (or, if it is zero, the local address) is `127.0.0.0/8`
//! (IPv4-mapped) or `::1`. Fields that do not exist at the SOCKET layer make a test false,
//! as in the evaluator.

use super::ebpf::{code, remove_unreachable, Asm, AsmError, Insn, Label, Reg};
use super::fields::Field;
use super::ir::{Jump, Object, Op, Test, Value};
use crate::address::{Address, FlowData, LayerData};
use crate::types::{Event, Layer};
use std::net::Ipv6Addr;

/// Byte offsets of the event record that every program fills on its stack, evaluates the
/// filter on, and sends to user space (all integers in host byte order).
pub mod record {
    /// `u64` `bpf_ktime_get_ns()`.
    pub const TIMESTAMP: i16 = 0;
    /// `u64` socket cookie (`endpointId`).
    pub const ENDPOINT: i16 = 8;
    /// `u64` listener cookie for ACCEPT (`parentEndpointId`).
    pub const PARENT: i16 = 16;
    /// `u32` process id (thread-group id).
    pub const PID: i16 = 24;
    /// `u8` WinDivert event number.
    pub const EVENT: i16 = 28;
    /// `u8` IP protocol.
    pub const PROTOCOL: i16 = 29;
    /// `u8` outbound flag.
    pub const OUTBOUND: i16 = 30;
    /// `u8` loopback flag.
    pub const LOOPBACK: i16 = 31;
    /// `u32[4]` local address, word 0 least significant (IPv4 is IPv4-mapped).
    pub const LOCAL: i16 = 32;
    /// `u32[4]` remote address.
    pub const REMOTE: i16 = 48;
    /// `u16` local port.
    pub const LOCAL_PORT: i16 = 64;
    /// `u16` remote port.
    pub const REMOTE_PORT: i16 = 66;
    /// `u8` the filter's `ip` value.
    pub const IP: i16 = 68;
    /// `u8` the filter's `ipv6` value.
    pub const IPV6: i16 = 69;
    /// `u8` the filter's `icmp` value.
    pub const ICMP: i16 = 70;
    /// `u8` the filter's `icmpv6` value.
    pub const ICMPV6: i16 = 71;
    /// The record size.
    pub const SIZE: usize = 72;
}

/// Value flag in the listeners map: every packet to this listener is dropped (LISTEN was
/// blocked).
pub const LISTENER_BLOCK_ALL: u32 = 1;

/// Key size of the "seen" map (de-duplication of CONNECT by `sendmsg` and of blocked
/// ACCEPTs): cookie `u64`, remote address `u32[4]`, remote port `u16`, event `u8`, padding.
pub const SEEN_KEY_SIZE: u32 = 32;
/// Value size of the listeners map (key: the listener's cookie, `u64`): pid `u32`, flags
/// `u32`.
pub const LISTENER_VALUE_SIZE: u32 = 8;
/// Value size of the ports map (key: local port `u32`): listener cookie `u64`, pid `u32`,
/// padding.
pub const PORT_VALUE_SIZE: u32 = 16;
/// Value size of the endpoints map (key: socket cookie `u64`): local address `u32[4]`,
/// local port `u16`, padding.
pub const ENDPOINT_VALUE_SIZE: u32 = 24;

/// The maps the programs use, by file descriptor (`-1` = not created; a program that needs
/// a missing map cannot be generated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockMaps {
    /// `BPF_MAP_TYPE_RINGBUF`: event records of [`record::SIZE`] bytes.
    pub ringbuf: i32,
    /// LRU hash, key [`SEEN_KEY_SIZE`], value `u64`.
    pub seen: i32,
    /// Hash, key `u64`, value [`LISTENER_VALUE_SIZE`].
    pub listeners: i32,
    /// Hash, key `u32`, value [`PORT_VALUE_SIZE`].
    pub ports: i32,
    /// LRU hash, key `u64`, value [`ENDPOINT_VALUE_SIZE`].
    pub endpoints: i32,
}

impl SockMaps {
    /// No maps.
    pub const NONE: SockMaps = SockMaps {
        ringbuf: -1,
        seen: -1,
        listeners: -1,
        ports: -1,
        endpoints: -1,
    };
}

/// Which events the handle's filter can match (see [`can_match`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventSet {
    /// BIND.
    pub bind: bool,
    /// CONNECT.
    pub connect: bool,
    /// LISTEN.
    pub listen: bool,
    /// ACCEPT.
    pub accept: bool,
    /// CLOSE.
    pub close: bool,
}

impl EventSet {
    /// The events `obj` can match.
    pub fn of(obj: &Object) -> EventSet {
        EventSet {
            bind: can_match(obj, Event::SocketBind),
            connect: can_match(obj, Event::SocketConnect),
            listen: can_match(obj, Event::SocketListen),
            accept: can_match(obj, Event::SocketAccept),
            close: can_match(obj, Event::SocketClose),
        }
    }

    /// Whether no event can match.
    pub fn is_empty(&self) -> bool {
        !(self.bind || self.connect || self.listen || self.accept || self.close)
    }
}

/// What a handle's programs are generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockConfig {
    /// The network namespace cookie whose events are handled.
    pub netns_cookie: u64,
    /// Refuse matching BIND/CONNECT/LISTEN/ACCEPT (a handle without SNIFF).
    pub block: bool,
    /// Send matching events to the ring buffer (false for a DROP handle).
    pub report: bool,
    /// The events the filter can match.
    pub events: EventSet,
    /// The maps.
    pub maps: SockMaps,
}

/// A hook the SOCKET layer attaches a program to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// `BPF_CGROUP_INET4_POST_BIND`.
    PostBind4,
    /// `BPF_CGROUP_INET6_POST_BIND`.
    PostBind6,
    /// `BPF_CGROUP_INET4_CONNECT`.
    Connect4,
    /// `BPF_CGROUP_INET6_CONNECT`.
    Connect6,
    /// `BPF_CGROUP_UDP4_SENDMSG`.
    Sendmsg4,
    /// `BPF_CGROUP_UDP6_SENDMSG`.
    Sendmsg6,
    /// `BPF_CGROUP_SOCK_OPS`.
    SockOps,
    /// `BPF_CGROUP_INET_SOCK_RELEASE`.
    Release,
    /// `BPF_CGROUP_INET_INGRESS`.
    Ingress,
}

/// `enum bpf_prog_type` values used here.
pub mod prog_type {
    /// `BPF_PROG_TYPE_CGROUP_SKB`.
    pub const CGROUP_SKB: u32 = 8;
    /// `BPF_PROG_TYPE_CGROUP_SOCK`.
    pub const CGROUP_SOCK: u32 = 9;
    /// `BPF_PROG_TYPE_SOCK_OPS`.
    pub const SOCK_OPS: u32 = 13;
    /// `BPF_PROG_TYPE_CGROUP_SOCK_ADDR`.
    pub const CGROUP_SOCK_ADDR: u32 = 18;
}

/// `enum bpf_attach_type` values used here.
pub mod attach_type {
    /// `BPF_CGROUP_INET_INGRESS`.
    pub const INET_INGRESS: u32 = 0;
    /// `BPF_CGROUP_INET_SOCK_CREATE`.
    pub const INET_SOCK_CREATE: u32 = 2;
    /// `BPF_CGROUP_SOCK_OPS`.
    pub const SOCK_OPS: u32 = 3;
    /// `BPF_CGROUP_INET4_BIND`.
    pub const INET4_BIND: u32 = 8;
    /// `BPF_CGROUP_INET6_BIND`.
    pub const INET6_BIND: u32 = 9;
    /// `BPF_CGROUP_INET4_CONNECT`.
    pub const INET4_CONNECT: u32 = 10;
    /// `BPF_CGROUP_INET6_CONNECT`.
    pub const INET6_CONNECT: u32 = 11;
    /// `BPF_CGROUP_INET4_POST_BIND`.
    pub const INET4_POST_BIND: u32 = 12;
    /// `BPF_CGROUP_INET6_POST_BIND`.
    pub const INET6_POST_BIND: u32 = 13;
    /// `BPF_CGROUP_UDP4_SENDMSG`.
    pub const UDP4_SENDMSG: u32 = 14;
    /// `BPF_CGROUP_UDP6_SENDMSG`.
    pub const UDP6_SENDMSG: u32 = 15;
    /// `BPF_CGROUP_INET_SOCK_RELEASE`.
    pub const INET_SOCK_RELEASE: u32 = 34;
}

impl Hook {
    /// Every hook.
    pub const ALL: [Hook; 9] = [
        Hook::PostBind4,
        Hook::PostBind6,
        Hook::Connect4,
        Hook::Connect6,
        Hook::Sendmsg4,
        Hook::Sendmsg6,
        Hook::SockOps,
        Hook::Release,
        Hook::Ingress,
    ];

    /// The program type (`enum bpf_prog_type`).
    pub const fn prog_type(self) -> u32 {
        match self {
            Hook::PostBind4 | Hook::PostBind6 | Hook::Release => prog_type::CGROUP_SOCK,
            Hook::Connect4 | Hook::Connect6 | Hook::Sendmsg4 | Hook::Sendmsg6 => {
                prog_type::CGROUP_SOCK_ADDR
            }
            Hook::SockOps => prog_type::SOCK_OPS,
            Hook::Ingress => prog_type::CGROUP_SKB,
        }
    }

    /// The attach type (`enum bpf_attach_type`), also the expected attach type at load.
    pub const fn attach_type(self) -> u32 {
        match self {
            Hook::PostBind4 => attach_type::INET4_POST_BIND,
            Hook::PostBind6 => attach_type::INET6_POST_BIND,
            Hook::Connect4 => attach_type::INET4_CONNECT,
            Hook::Connect6 => attach_type::INET6_CONNECT,
            Hook::Sendmsg4 => attach_type::UDP4_SENDMSG,
            Hook::Sendmsg6 => attach_type::UDP6_SENDMSG,
            Hook::SockOps => attach_type::SOCK_OPS,
            Hook::Release => attach_type::INET_SOCK_RELEASE,
            Hook::Ingress => attach_type::INET_INGRESS,
        }
    }

    /// A short program name.
    pub const fn name(self) -> &'static str {
        match self {
            Hook::PostBind4 => "ld_sock_bind4",
            Hook::PostBind6 => "ld_sock_bind6",
            Hook::Connect4 => "ld_sock_conn4",
            Hook::Connect6 => "ld_sock_conn6",
            Hook::Sendmsg4 => "ld_sock_send4",
            Hook::Sendmsg6 => "ld_sock_send6",
            Hook::SockOps => "ld_sock_ops",
            Hook::Release => "ld_sock_close",
            Hook::Ingress => "ld_sock_ingr",
        }
    }

    /// Whether a handle with `cfg` needs this hook.
    pub fn needed(self, cfg: &SockConfig) -> bool {
        let e = &cfg.events;
        match self {
            // post_bind also records local endpoints for CLOSE.
            Hook::PostBind4 | Hook::PostBind6 => e.bind || e.close,
            Hook::Connect4 | Hook::Connect6 | Hook::Sendmsg4 | Hook::Sendmsg6 => e.connect,
            Hook::SockOps => e.listen || e.accept || e.close,
            // release also removes listeners from the maps.
            Hook::Release => e.close || (cfg.block && (e.listen || e.accept)),
            Hook::Ingress => cfg.block && (e.listen || e.accept),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Constants of the kernel interface
// ---------------------------------------------------------------------------------------

pub(crate) mod helper {
    pub(crate) const MAP_LOOKUP_ELEM: i32 = 1;
    pub(crate) const MAP_UPDATE_ELEM: i32 = 2;
    pub(crate) const MAP_DELETE_ELEM: i32 = 3;
    pub(crate) const KTIME_GET_NS: i32 = 5;
    pub(crate) const GET_CURRENT_PID_TGID: i32 = 14;
    pub(crate) const SKB_LOAD_BYTES: i32 = 26;
    pub(crate) const GET_SOCKET_COOKIE: i32 = 46;
    pub(crate) const GET_NETNS_COOKIE: i32 = 122;
    pub(crate) const RINGBUF_OUTPUT: i32 = 130;
}

/// `struct bpf_sock_addr` offsets.
pub(crate) mod sock_addr {
    pub(crate) const USER_IP4: i16 = 4;
    pub(crate) const USER_IP6: i16 = 8;
    pub(crate) const USER_PORT: i16 = 24;
    pub(crate) const PROTOCOL: i16 = 36;
    pub(crate) const SK: i16 = 64;
}

/// `struct bpf_sock` offsets.
pub(crate) mod bpf_sock {
    pub(crate) const FAMILY: i16 = 4;
    pub(crate) const PROTOCOL: i16 = 12;
    pub(crate) const SRC_IP4: i16 = 24;
    pub(crate) const SRC_IP6: i16 = 28;
    pub(crate) const SRC_PORT: i16 = 44;
    pub(crate) const DST_PORT: i16 = 48;
    pub(crate) const DST_IP4: i16 = 52;
    pub(crate) const DST_IP6: i16 = 56;
}

/// `struct bpf_sock_ops` offsets and ops.
pub(crate) mod sock_ops {
    pub(crate) const OP: i16 = 0;
    pub(crate) const FAMILY: i16 = 20;
    pub(crate) const REMOTE_IP4: i16 = 24;
    pub(crate) const LOCAL_IP4: i16 = 28;
    pub(crate) const REMOTE_IP6: i16 = 32;
    pub(crate) const LOCAL_IP6: i16 = 48;
    pub(crate) const REMOTE_PORT: i16 = 64;
    pub(crate) const LOCAL_PORT: i16 = 68;
    pub(crate) const ACTIVE_ESTABLISHED_CB: i32 = 4;
    pub(crate) const PASSIVE_ESTABLISHED_CB: i32 = 5;
    pub(crate) const TCP_LISTEN_CB: i32 = 11;
}

pub(crate) const AF_INET: i32 = 2;
pub(crate) const AF_INET6: i32 = 10;
const BPF_PSEUDO_MAP_FD: u8 = 1;

// Stack layout (offsets from r10).
pub(crate) const REC: i16 = -72;
pub(crate) const KEY: i16 = -112;
pub(crate) const VAL: i16 = -152;
pub(crate) const PKT: i16 = -200;
pub(crate) const TCPH: i16 = -216;
const ZEROED: [(i16, usize); 3] = [(REC, 72), (KEY, 40), (VAL, 40)];

/// `BPF_ALU | BPF_END | BPF_TO_BE`: convert the low `bits` of `dst` between network and
/// host order (zero-extending).
pub(crate) fn to_be(dst: Reg, bits: i32) -> Insn {
    Insn::new(code::ALU | 0xd0 | 0x08, dst as u8, 0, 0, bits)
}

pub(crate) fn ld_map_fd(a: &mut Asm, dst: Reg, fd: i32) {
    let [mut lo, hi] = Insn::ld_imm64(dst, fd as u32 as u64);
    lo.src = BPF_PSEUDO_MAP_FD;
    a.emit(lo);
    a.emit(hi);
}

/// Why a program could not be generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockGenError {
    /// The object is malformed (a jump backwards or out of range, no tests).
    BadObject,
    /// A map the program needs has no descriptor.
    MissingMap(&'static str),
    /// The assembler failed.
    Asm(AsmError),
}

impl core::fmt::Display for SockGenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SockGenError::BadObject => f.write_str("malformed filter object"),
            SockGenError::MissingMap(m) => write!(f, "the {m} map is missing"),
            SockGenError::Asm(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SockGenError {}

impl From<AsmError> for SockGenError {
    fn from(e: AsmError) -> Self {
        SockGenError::Asm(e)
    }
}

// ---------------------------------------------------------------------------------------
// Test plans
// ---------------------------------------------------------------------------------------

/// One 32-bit word of a field value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Word {
    Const(u32),
    /// Load `size` (code::B/H/W) from the record at this offset.
    Rec(u8, i16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    Known(bool),
    Run([Word; 4]),
}

fn rec_u64(off: i16) -> [Word; 4] {
    let (lo, hi) = if cfg!(target_endian = "big") {
        (off + 4, off)
    } else {
        (off, off + 4)
    };
    [
        Word::Rec(code::W, lo),
        Word::Rec(code::W, hi),
        Word::Const(0),
        Word::Const(0),
    ]
}

fn rec_scalar(size: u8, off: i16) -> [Word; 4] {
    [
        Word::Rec(size, off),
        Word::Const(0),
        Word::Const(0),
        Word::Const(0),
    ]
}

fn rec_addr(off: i16) -> [Word; 4] {
    [
        Word::Rec(code::W, off),
        Word::Rec(code::W, off + 4),
        Word::Rec(code::W, off + 8),
        Word::Rec(code::W, off + 12),
    ]
}

fn konst(v: u128) -> [Word; 4] {
    [
        Word::Const(v as u32),
        Word::Const((v >> 32) as u32),
        Word::Const((v >> 64) as u32),
        Word::Const((v >> 96) as u32),
    ]
}

fn op_holds(op: Op, ord: core::cmp::Ordering) -> bool {
    use core::cmp::Ordering::*;
    match op {
        Op::Eq => ord == Equal,
        Op::Neq => ord != Equal,
        Op::Lt => ord == Less,
        Op::Le => ord != Greater,
        Op::Gt => ord == Greater,
        Op::Ge => ord != Less,
    }
}

/// The outbound flag of an event (WinDivert: 0 only for ACCEPT).
pub const fn event_outbound(ev: Event) -> bool {
    !matches!(ev, Event::SocketAccept)
}

/// What is known at a place where a filter is evaluated (shared with the FLOW back end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlanCtx {
    /// The handle's layer (decides which fields exist).
    pub layer: Layer,
    /// The event, if known.
    pub event: Option<Event>,
    /// The direction, when it is not implied by the event.
    pub outbound: Option<bool>,
    /// The IP protocol, when known.
    pub protocol: Option<u8>,
}

impl PlanCtx {
    pub(crate) const fn socket(event: Option<Event>) -> PlanCtx {
        PlanCtx {
            layer: Layer::Socket,
            event,
            outbound: None,
            protocol: None,
        }
    }
}

pub(crate) fn plan_in(t: &Test, ctx: &PlanCtx) -> Option<Plan> {
    use record as r;
    use Field as F;
    let ev = ctx.event;
    if !t.field.valid_for(ctx.layer) {
        return Some(Plan::Known(false));
    }
    let outbound = match ctx.outbound {
        Some(o) => Some(o),
        None => ev.map(event_outbound),
    };
    if let Some(p) = ctx.protocol {
        let known = match t.field {
            F::Tcp => Some((p == 6) as u128),
            F::Udp => Some((p == 17) as u128),
            F::Protocol => Some(p as u128),
            _ => None,
        };
        if let Some(v) = known {
            return Some(Plan::Known(op_holds(
                t.op,
                Value::pos(v).cmp_signed(&t.value),
            )));
        }
    }
    let words = match t.field {
        F::Zero => konst(0),
        F::Event => konst(ev? as u8 as u128),
        F::Outbound => konst(outbound? as u128),
        F::Inbound => konst(!outbound? as u128),
        F::Timestamp => rec_u64(r::TIMESTAMP),
        F::Loopback => rec_scalar(code::B, r::LOOPBACK),
        F::EndpointId => rec_u64(r::ENDPOINT),
        F::ParentEndpointId => rec_u64(r::PARENT),
        F::ProcessId => rec_scalar(code::W, r::PID),
        F::Ip => rec_scalar(code::B, r::IP),
        F::Ipv6 => rec_scalar(code::B, r::IPV6),
        F::Icmp => rec_scalar(code::B, r::ICMP),
        F::Icmpv6 => rec_scalar(code::B, r::ICMPV6),
        F::Tcp | F::Udp => return Some(Plan::Run(rec_scalar(0xff, r::PROTOCOL))),
        F::Protocol => rec_scalar(code::B, r::PROTOCOL),
        F::LocalAddr => rec_addr(r::LOCAL),
        F::RemoteAddr => rec_addr(r::REMOTE),
        F::LocalPort => rec_scalar(code::H, r::LOCAL_PORT),
        F::RemotePort => rec_scalar(code::H, r::REMOTE_PORT),
        _ => return Some(Plan::Known(false)),
    };
    if words.iter().all(|w| matches!(w, Word::Const(_))) {
        let v = words.iter().rev().fold(0u128, |acc, w| match w {
            Word::Const(c) => (acc << 32) | *c as u128,
            Word::Rec(..) => acc << 32,
        });
        return Some(Plan::Known(op_holds(
            t.op,
            Value::pos(v).cmp_signed(&t.value),
        )));
    }
    Some(Plan::Run(words))
}

pub(crate) fn object_is_valid(obj: &Object) -> bool {
    let n = obj.tests.len();
    n > 0
        && n <= super::ir::MAX_TESTS
        && obj.tests.iter().enumerate().all(|(i, t)| {
            [t.success, t.failure].iter().all(|j| match *j {
                Jump::Accept | Jump::Reject => true,
                Jump::Test(k) => (k as usize) > i && (k as usize) < n,
            })
        })
}

/// Whether the filter can match `event` (tests on other fields count as either outcome).
/// A malformed object can match everything.
pub fn can_match(obj: &Object, event: Event) -> bool {
    can_match_in(obj, &PlanCtx::socket(Some(event)))
}

/// [`can_match`] with a [`PlanCtx`] (tests on unknown fields count as either outcome).
pub(crate) fn can_match_in(obj: &Object, ctx: &PlanCtx) -> bool {
    if !object_is_valid(obj) {
        return true;
    }
    let n = obj.tests.len();
    let mut reach = vec![false; n];
    reach[0] = true;
    for i in 0..n {
        if !reach[i] {
            continue;
        }
        let t = &obj.tests[i];
        let next: &[Jump] = match plan_in(t, ctx) {
            Some(Plan::Known(true)) => &[t.success][..],
            Some(Plan::Known(false)) => &[t.failure][..],
            _ => &[t.success, t.failure][..],
        };
        for j in next {
            match *j {
                Jump::Accept => return true,
                Jump::Reject => {}
                Jump::Test(k) => reach[k as usize] = true,
            }
        }
    }
    false
}

// ---------------------------------------------------------------------------------------
// Filter code
// ---------------------------------------------------------------------------------------

/// Emit the filter for `event` on the record at `REC`: jumps to `yes` or `no`. Clobbers
/// r0–r1.
fn emit_filter(a: &mut Asm, obj: &Object, event: Event, yes: Label, no: Label) {
    emit_filter_in(a, obj, &PlanCtx::socket(Some(event)), yes, no)
}

/// [`emit_filter`] with a [`PlanCtx`].
pub(crate) fn emit_filter_in(a: &mut Asm, obj: &Object, ctx: &PlanCtx, yes: Label, no: Label) {
    let labels: Vec<Label> = obj.tests.iter().map(|_| a.label()).collect();
    let target = |j: Jump| match j {
        Jump::Accept => yes,
        Jump::Reject => no,
        Jump::Test(k) => labels[k as usize],
    };
    for (i, t) in obj.tests.iter().enumerate() {
        a.bind(labels[i]);
        let (succ, fail) = (target(t.success), target(t.failure));
        match plan_in(t, ctx) {
            Some(Plan::Known(b)) => a.ja(if b { succ } else { fail }),
            Some(Plan::Run(words)) => {
                if t.field == Field::Tcp || t.field == Field::Udp {
                    // The field is `protocol == 6/17`.
                    let p = if t.field == Field::Tcp { 6 } else { 17 };
                    let one = a.label();
                    a.emit(Insn::ldx_mem(
                        code::B,
                        Reg::R0,
                        Reg::R10,
                        REC + record::PROTOCOL,
                    ));
                    a.jmp_imm(code::JEQ, Reg::R0, p, one);
                    a.emit(Insn::mov64_imm(Reg::R0, 0));
                    let cmp = a.label();
                    a.ja(cmp);
                    a.bind(one);
                    a.emit(Insn::mov64_imm(Reg::R0, 1));
                    a.bind(cmp);
                    emit_compare(
                        a,
                        &[Word::Rec(0xff, 0), words[1], words[2], words[3]],
                        t,
                        succ,
                        fail,
                    );
                } else {
                    emit_compare(a, &words, t, succ, fail);
                }
            }
            None => a.ja(no),
        }
    }
}

/// Compare a value of four words (least significant first) with the test's constant.
/// `Word::Rec(0xff, _)` means "already in r0".
fn emit_compare(a: &mut Asm, words: &[Word; 4], t: &Test, succ: Label, fail: Label) {
    use core::cmp::Ordering;
    let op = t.op;
    let c = &t.value;
    let target = |ord: Ordering| if op_holds(op, ord) { succ } else { fail };
    if c.neg && c.mag != 0 {
        a.ja(target(Ordering::Greater));
        return;
    }
    let cw = c.words();
    for k in (0..4).rev() {
        match words[k] {
            Word::Const(x) => {
                if x != cw[k] {
                    a.ja(target(x.cmp(&cw[k])));
                    return;
                }
            }
            Word::Rec(size, off) => {
                if size != 0xff {
                    a.emit(Insn::ldx_mem(size, Reg::R0, Reg::R10, REC + off));
                }
                let imm = cw[k] as i32;
                let (lt, gt) = (target(Ordering::Less), target(Ordering::Greater));
                if lt == gt {
                    a.jmp32_imm(code::JNE, Reg::R0, imm, lt);
                } else {
                    a.jmp32_imm(code::JGT, Reg::R0, imm, gt);
                    a.jmp32_imm(code::JLT, Reg::R0, imm, lt);
                }
            }
        }
    }
    a.ja(target(Ordering::Equal));
}

// ---------------------------------------------------------------------------------------
// Record filling
// ---------------------------------------------------------------------------------------

pub(crate) fn zero_stack(a: &mut Asm) {
    for (base, len) in ZEROED {
        for k in 0..(len / 8) as i16 {
            a.emit(Insn::st_mem(code::DW, Reg::R10, base + 8 * k, 0));
        }
    }
}

/// `if netns_cookie(ctx) != cookie goto pass`; r6 = ctx.
pub(crate) fn emit_netns_check(a: &mut Asm, cookie: u64, pass: Label) {
    a.emit(Insn::mov64_reg(Reg::R6, Reg::R1));
    a.emit(Insn::call(helper::GET_NETNS_COOKIE));
    for i in Insn::ld_imm64(Reg::R1, cookie) {
        a.emit(i);
    }
    a.jmp_reg(code::JNE, Reg::R0, Reg::R1, pass);
}

fn emit_common(a: &mut Asm, event: Event, with_cookie: bool, with_pid: bool) {
    use Reg::*;
    a.emit(Insn::call(helper::KTIME_GET_NS));
    a.emit(Insn::stx_mem(code::DW, R10, R0, REC + record::TIMESTAMP));
    if with_cookie {
        a.emit(Insn::mov64_reg(R1, R6));
        a.emit(Insn::call(helper::GET_SOCKET_COOKIE));
        a.emit(Insn::stx_mem(code::DW, R10, R0, REC + record::ENDPOINT));
    }
    if with_pid {
        a.emit(Insn::call(helper::GET_CURRENT_PID_TGID));
        a.emit(Insn::alu64_imm(code::RSH, R0, 32));
        a.emit(Insn::stx_mem(code::W, R10, R0, REC + record::PID));
    }
    a.emit(Insn::st_mem(
        code::B,
        R10,
        REC + record::EVENT,
        event as u8 as i32,
    ));
    a.emit(Insn::st_mem(
        code::B,
        R10,
        REC + record::OUTBOUND,
        event_outbound(event) as i32,
    ));
}

/// Record address at `dst` from a network-order IPv4 address at `src + off`.
pub(crate) fn emit_addr4(a: &mut Asm, src: Reg, off: i16, dst: i16) {
    a.emit(Insn::ldx_mem(code::W, Reg::R0, src, off));
    a.emit(to_be(Reg::R0, 32));
    a.emit(Insn::stx_mem(code::W, Reg::R10, Reg::R0, REC + dst));
    a.emit(Insn::st_mem(code::W, Reg::R10, REC + dst + 4, 0xffff));
    a.emit(Insn::st_mem(code::W, Reg::R10, REC + dst + 8, 0));
    a.emit(Insn::st_mem(code::W, Reg::R10, REC + dst + 12, 0));
}

/// Record address at `dst` from a network-order IPv6 address at `src + off`.
pub(crate) fn emit_addr6(a: &mut Asm, src: Reg, off: i16, dst: i16) {
    for i in 0..4i16 {
        a.emit(Insn::ldx_mem(code::W, Reg::R0, src, off + 4 * i));
        a.emit(to_be(Reg::R0, 32));
        a.emit(Insn::stx_mem(
            code::W,
            Reg::R10,
            Reg::R0,
            REC + dst + 4 * (3 - i),
        ));
    }
}

/// Record port at `dst` from a network-order 16-bit port loaded with `size` at `src+off`.
pub(crate) fn emit_port_be16(a: &mut Asm, src: Reg, size: u8, off: i16, dst: i16) {
    a.emit(Insn::ldx_mem(size, Reg::R0, src, off));
    a.emit(to_be(Reg::R0, 16));
    a.emit(Insn::stx_mem(code::H, Reg::R10, Reg::R0, REC + dst));
}

/// Record port at `dst` from a host-order `u32` at `src + off`.
pub(crate) fn emit_port_host(a: &mut Asm, src: Reg, off: i16, dst: i16) {
    a.emit(Insn::ldx_mem(code::W, Reg::R0, src, off));
    a.emit(Insn::stx_mem(code::H, Reg::R10, Reg::R0, REC + dst));
}

/// Compute the `ip`, `ipv6`, `icmp`, `icmpv6` and `loopback` bytes from the record.
pub(crate) fn emit_derived(a: &mut Asm) {
    use code::*;
    use Reg::*;
    let or_words = |a: &mut Asm, base: i16| {
        a.emit(Insn::ldx_mem(W, R1, R10, REC + base));
        for k in 1..4i16 {
            a.emit(Insn::ldx_mem(W, R2, R10, REC + base + 4 * k));
            a.emit(Insn::alu64_reg(OR, R1, R2));
        }
    };
    // ip: local (or remote when local is zero) is IPv4-mapped.
    or_words(a, record::LOCAL);
    a.emit(Insn::mov64_reg(R4, R10));
    a.emit(Insn::alu64_imm(ADD, R4, (REC + record::LOCAL) as i32));
    let l1 = a.label();
    a.jmp_imm(JNE, R1, 0, l1);
    a.emit(Insn::alu64_imm(ADD, R4, 16));
    a.bind(l1);
    a.emit(Insn::mov64_imm(R5, 0));
    let done = a.label();
    a.emit(Insn::ldx_mem(W, R1, R4, 12));
    a.jmp_imm(JNE, R1, 0, done);
    a.emit(Insn::ldx_mem(W, R1, R4, 8));
    a.jmp_imm(JNE, R1, 0, done);
    a.emit(Insn::ldx_mem(W, R1, R4, 4));
    a.jmp_imm(JNE, R1, 0xffff, done);
    a.emit(Insn::mov64_imm(R5, 1));
    a.bind(done);
    a.emit(Insn::stx_mem(B, R10, R5, REC + record::IP));
    a.emit(Insn::alu64_imm(XOR, R5, 1));
    a.emit(Insn::stx_mem(B, R10, R5, REC + record::IPV6));
    // icmp = ip && protocol == 1; icmpv6 = !ip && protocol == 58.
    a.emit(Insn::ldx_mem(B, R1, R10, REC + record::PROTOCOL));
    let not_icmp = a.label();
    let not_icmp6 = a.label();
    let icmp_done = a.label();
    a.jmp_imm(JNE, R1, 1, not_icmp);
    a.emit(Insn::ldx_mem(B, R2, R10, REC + record::IP));
    a.emit(Insn::stx_mem(B, R10, R2, REC + record::ICMP));
    a.ja(icmp_done);
    a.bind(not_icmp);
    a.jmp_imm(JNE, R1, 58, not_icmp6);
    a.emit(Insn::stx_mem(B, R10, R5, REC + record::ICMPV6));
    a.bind(not_icmp6);
    a.bind(icmp_done);
    // loopback: remote (or local when remote is zero) is 127/8 or ::1.
    or_words(a, record::REMOTE);
    a.emit(Insn::mov64_reg(R4, R10));
    a.emit(Insn::alu64_imm(ADD, R4, (REC + record::REMOTE) as i32));
    let l2 = a.label();
    a.jmp_imm(JNE, R1, 0, l2);
    a.emit(Insn::alu64_imm(ADD, R4, -16));
    a.bind(l2);
    a.emit(Insn::mov64_imm(R5, 0));
    let ldone = a.label();
    let v4 = a.label();
    a.emit(Insn::ldx_mem(W, R1, R4, 12));
    a.jmp_imm(JNE, R1, 0, ldone);
    a.emit(Insn::ldx_mem(W, R1, R4, 8));
    a.jmp_imm(JNE, R1, 0, ldone);
    a.emit(Insn::ldx_mem(W, R1, R4, 4));
    a.jmp_imm(JEQ, R1, 0xffff, v4);
    a.jmp_imm(JNE, R1, 0, ldone);
    a.emit(Insn::ldx_mem(W, R1, R4, 0));
    a.jmp_imm(JNE, R1, 1, ldone);
    a.emit(Insn::mov64_imm(R5, 1));
    a.ja(ldone);
    a.bind(v4);
    a.emit(Insn::ldx_mem(W, R1, R4, 0));
    a.emit(Insn::alu64_imm(RSH, R1, 24));
    a.jmp_imm(JNE, R1, 127, ldone);
    a.emit(Insn::mov64_imm(R5, 1));
    a.bind(ldone);
    a.emit(Insn::stx_mem(B, R10, R5, REC + record::LOOPBACK));
}

/// `bpf_ringbuf_output(ringbuf, &rec, SIZE, 0)`.
pub(crate) fn emit_output(a: &mut Asm, maps: &SockMaps) {
    use Reg::*;
    ld_map_fd(a, R1, maps.ringbuf);
    a.emit(Insn::mov64_reg(R2, R10));
    a.emit(Insn::alu64_imm(code::ADD, R2, REC as i32));
    a.emit(Insn::mov64_imm(R3, record::SIZE as i32));
    a.emit(Insn::mov64_imm(R4, 0));
    a.emit(Insn::call(helper::RINGBUF_OUTPUT));
}

/// Report the event unless (cookie, remote, port, event) was reported before.
fn emit_output_once(a: &mut Asm, maps: &SockMaps, cookie_off: i16) {
    use code::*;
    use Reg::*;
    let skip = a.label();
    // key: cookie, remote[4], rport, event.
    a.emit(Insn::ldx_mem(DW, R1, R10, REC + cookie_off));
    a.emit(Insn::stx_mem(DW, R10, R1, KEY));
    a.emit(Insn::ldx_mem(DW, R1, R10, REC + record::REMOTE));
    a.emit(Insn::stx_mem(DW, R10, R1, KEY + 8));
    a.emit(Insn::ldx_mem(DW, R1, R10, REC + record::REMOTE + 8));
    a.emit(Insn::stx_mem(DW, R10, R1, KEY + 16));
    a.emit(Insn::ldx_mem(H, R1, R10, REC + record::REMOTE_PORT));
    a.emit(Insn::stx_mem(H, R10, R1, KEY + 24));
    a.emit(Insn::ldx_mem(B, R1, R10, REC + record::EVENT));
    a.emit(Insn::stx_mem(B, R10, R1, KEY + 26));
    map_lookup(a, maps.seen, KEY);
    a.jmp_imm(JNE, R0, 0, skip);
    a.emit(Insn::st_mem(DW, R10, VAL, 1));
    map_update(a, maps.seen, KEY, VAL);
    emit_output(a, maps);
    a.bind(skip);
}

/// endpoints[cookie] = {local, lport}.
fn emit_record_endpoint(a: &mut Asm, maps: &SockMaps) {
    use code::*;
    use Reg::*;
    a.emit(Insn::ldx_mem(DW, R1, R10, REC + record::ENDPOINT));
    a.emit(Insn::stx_mem(DW, R10, R1, KEY));
    a.emit(Insn::ldx_mem(DW, R1, R10, REC + record::LOCAL));
    a.emit(Insn::stx_mem(DW, R10, R1, VAL));
    a.emit(Insn::ldx_mem(DW, R1, R10, REC + record::LOCAL + 8));
    a.emit(Insn::stx_mem(DW, R10, R1, VAL + 8));
    a.emit(Insn::ldx_mem(H, R1, R10, REC + record::LOCAL_PORT));
    a.emit(Insn::stx_mem(H, R10, R1, VAL + 16));
    map_update(a, maps.endpoints, KEY, VAL);
}

/// listeners[cookie] = {pid, flags}.
fn emit_listener_update(a: &mut Asm, maps: &SockMaps, flags: u32) {
    use code::*;
    use Reg::*;
    a.emit(Insn::ldx_mem(DW, R1, R10, REC + record::ENDPOINT));
    a.emit(Insn::stx_mem(DW, R10, R1, KEY));
    a.emit(Insn::ldx_mem(W, R1, R10, REC + record::PID));
    a.emit(Insn::stx_mem(W, R10, R1, VAL));
    a.emit(Insn::st_mem(W, R10, VAL + 4, flags as i32));
    map_update(a, maps.listeners, KEY, VAL);
}

pub(crate) fn need(fd: i32, name: &'static str) -> Result<(), SockGenError> {
    if fd < 0 {
        Err(SockGenError::MissingMap(name))
    } else {
        Ok(())
    }
}

/// `map_update(map, r10+key, r10+val, 0)`.
pub(crate) fn map_update(a: &mut Asm, fd: i32, key: i16, val: i16) {
    use Reg::*;
    ld_map_fd(a, R1, fd);
    a.emit(Insn::mov64_reg(R2, R10));
    a.emit(Insn::alu64_imm(code::ADD, R2, key as i32));
    a.emit(Insn::mov64_reg(R3, R10));
    a.emit(Insn::alu64_imm(code::ADD, R3, val as i32));
    a.emit(Insn::mov64_imm(R4, 0));
    a.emit(Insn::call(helper::MAP_UPDATE_ELEM));
}

/// `r0 = map_lookup(map, r10+key)`.
pub(crate) fn map_lookup(a: &mut Asm, fd: i32, key: i16) {
    use Reg::*;
    ld_map_fd(a, R1, fd);
    a.emit(Insn::mov64_reg(R2, R10));
    a.emit(Insn::alu64_imm(code::ADD, R2, key as i32));
    a.emit(Insn::call(helper::MAP_LOOKUP_ELEM));
}

/// `map_delete(map, r10+key)`.
pub(crate) fn map_delete(a: &mut Asm, fd: i32, key: i16) {
    use Reg::*;
    ld_map_fd(a, R1, fd);
    a.emit(Insn::mov64_reg(R2, R10));
    a.emit(Insn::alu64_imm(code::ADD, R2, key as i32));
    a.emit(Insn::call(helper::MAP_DELETE_ELEM));
}

pub(crate) fn finish(a: Asm) -> Result<Vec<Insn>, SockGenError> {
    let p = a.finish()?;
    remove_unreachable(p).ok_or(SockGenError::BadObject)
}

pub(crate) fn ret(a: &mut Asm, v: i32) {
    a.emit(Insn::mov64_imm(Reg::R0, v));
    a.emit(Insn::exit());
}

// ---------------------------------------------------------------------------------------
// Programs
// ---------------------------------------------------------------------------------------

/// Generate the program of `hook` for the filter `obj` and the handle `cfg`.
pub fn hook_program(obj: &Object, hook: Hook, cfg: &SockConfig) -> Result<Vec<Insn>, SockGenError> {
    if !object_is_valid(obj) {
        return Err(SockGenError::BadObject);
    }
    let m = &cfg.maps;
    if cfg.report {
        need(m.ringbuf, "ring buffer")?;
    }
    match hook {
        Hook::PostBind4 | Hook::PostBind6 => post_bind(obj, hook == Hook::PostBind6, cfg),
        Hook::Connect4 | Hook::Connect6 | Hook::Sendmsg4 | Hook::Sendmsg6 => {
            let v6 = matches!(hook, Hook::Connect6 | Hook::Sendmsg6);
            let sendmsg = matches!(hook, Hook::Sendmsg4 | Hook::Sendmsg6);
            if sendmsg && cfg.report {
                need(m.seen, "seen")?;
            }
            connect(obj, v6, sendmsg, cfg)
        }
        Hook::SockOps => {
            if cfg.events.close {
                need(m.endpoints, "endpoints")?;
            }
            need(m.ports, "ports")?;
            if cfg.block {
                need(m.listeners, "listeners")?;
            }
            sockops(obj, cfg)
        }
        Hook::Release => {
            if cfg.events.close {
                need(m.endpoints, "endpoints")?;
            }
            release(obj, cfg)
        }
        Hook::Ingress => {
            need(m.listeners, "listeners")?;
            if cfg.report {
                need(m.seen, "seen")?;
            }
            ingress(obj, cfg)
        }
    }
}

/// Emit the decision: filter → report (once if `once`) → return `block ? 0 : 1`.
fn emit_decide(
    a: &mut Asm,
    obj: &Object,
    event: Event,
    cfg: &SockConfig,
    once: Option<i16>,
    pass: Label,
) {
    let yes = a.label();
    emit_filter(a, obj, event, yes, pass);
    a.bind(yes);
    if cfg.report {
        match once {
            Some(off) => emit_output_once(a, &cfg.maps, off),
            None => emit_output(a, &cfg.maps),
        }
    }
    let blocks = cfg.block && event != Event::SocketClose;
    ret(a, if blocks { 0 } else { 1 });
}

fn post_bind(obj: &Object, v6: bool, cfg: &SockConfig) -> Result<Vec<Insn>, SockGenError> {
    use Reg::*;
    let mut a = Asm::new();
    let pass = a.label();
    emit_netns_check(&mut a, cfg.netns_cookie, pass);
    zero_stack(&mut a);
    emit_common(&mut a, Event::SocketBind, true, true);
    a.emit(Insn::ldx_mem(code::W, R0, R6, bpf_sock::PROTOCOL));
    a.emit(Insn::stx_mem(code::B, R10, R0, REC + record::PROTOCOL));
    if v6 {
        emit_addr6(&mut a, R6, bpf_sock::SRC_IP6, record::LOCAL);
    } else {
        emit_addr4(&mut a, R6, bpf_sock::SRC_IP4, record::LOCAL);
    }
    emit_port_host(&mut a, R6, bpf_sock::SRC_PORT, record::LOCAL_PORT);
    emit_derived(&mut a);
    // A refused bind leaves the socket unbound: only a successful one is remembered for
    // CLOSE.
    let record = a.label();
    if cfg.events.bind {
        let yes = a.label();
        emit_filter(&mut a, obj, Event::SocketBind, yes, record);
        a.bind(yes);
        if cfg.report {
            emit_output(&mut a, &cfg.maps);
        }
        if cfg.block {
            ret(&mut a, 0);
        }
    }
    a.bind(record);
    if cfg.events.close {
        emit_record_endpoint(&mut a, &cfg.maps);
    }
    a.bind(pass);
    ret(&mut a, 1);
    finish(a)
}

fn connect(
    obj: &Object,
    v6: bool,
    sendmsg: bool,
    cfg: &SockConfig,
) -> Result<Vec<Insn>, SockGenError> {
    use Reg::*;
    let mut a = Asm::new();
    let pass = a.label();
    emit_netns_check(&mut a, cfg.netns_cookie, pass);
    zero_stack(&mut a);
    emit_common(&mut a, Event::SocketConnect, true, true);
    a.emit(Insn::ldx_mem(code::W, R0, R6, sock_addr::PROTOCOL));
    a.emit(Insn::stx_mem(code::B, R10, R0, REC + record::PROTOCOL));
    if v6 {
        emit_addr6(&mut a, R6, sock_addr::USER_IP6, record::REMOTE);
    } else {
        emit_addr4(&mut a, R6, sock_addr::USER_IP4, record::REMOTE);
    }
    emit_port_be16(
        &mut a,
        R6,
        code::W,
        sock_addr::USER_PORT,
        record::REMOTE_PORT,
    );
    // The socket's current local address and port.
    a.emit(Insn::ldx_mem(code::DW, R7, R6, sock_addr::SK));
    if v6 {
        emit_addr6(&mut a, R7, bpf_sock::SRC_IP6, record::LOCAL);
    } else {
        emit_addr4(&mut a, R7, bpf_sock::SRC_IP4, record::LOCAL);
    }
    emit_port_host(&mut a, R7, bpf_sock::SRC_PORT, record::LOCAL_PORT);
    emit_derived(&mut a);
    emit_decide(
        &mut a,
        obj,
        Event::SocketConnect,
        cfg,
        sendmsg.then_some(record::ENDPOINT),
        pass,
    );
    a.bind(pass);
    ret(&mut a, 1);
    finish(a)
}

pub(crate) fn sockops_fill(a: &mut Asm, remote: bool) {
    use code::*;
    use Reg::*;
    a.emit(Insn::st_mem(B, R10, REC + record::PROTOCOL, 6));
    let v6 = a.label();
    let done = a.label();
    a.emit(Insn::ldx_mem(W, R0, R6, sock_ops::FAMILY));
    a.jmp_imm(JEQ, R0, AF_INET6, v6);
    emit_addr4(a, R6, sock_ops::LOCAL_IP4, record::LOCAL);
    if remote {
        emit_addr4(a, R6, sock_ops::REMOTE_IP4, record::REMOTE);
    }
    a.ja(done);
    a.bind(v6);
    emit_addr6(a, R6, sock_ops::LOCAL_IP6, record::LOCAL);
    if remote {
        emit_addr6(a, R6, sock_ops::REMOTE_IP6, record::REMOTE);
    }
    a.bind(done);
    emit_port_host(a, R6, sock_ops::LOCAL_PORT, record::LOCAL_PORT);
    if remote {
        // The network-order port sits in the upper half on little-endian machines: a
        // 32-bit swap gives the host-order port on either byte order.
        a.emit(Insn::ldx_mem(W, R0, R6, sock_ops::REMOTE_PORT));
        a.emit(to_be(R0, 32));
        a.emit(Insn::stx_mem(H, R10, R0, REC + record::REMOTE_PORT));
    }
}

fn sockops(obj: &Object, cfg: &SockConfig) -> Result<Vec<Insn>, SockGenError> {
    use code::*;
    use Reg::*;
    let e = cfg.events;
    let m = &cfg.maps;
    let mut a = Asm::new();
    let pass = a.label();
    let listen = a.label();
    let passive = a.label();
    let active = a.label();
    emit_netns_check(&mut a, cfg.netns_cookie, pass);
    a.emit(Insn::ldx_mem(W, R7, R6, sock_ops::OP));
    a.jmp_imm(JEQ, R7, sock_ops::TCP_LISTEN_CB, listen);
    a.jmp_imm(JEQ, R7, sock_ops::PASSIVE_ESTABLISHED_CB, passive);
    if e.close {
        a.jmp_imm(JEQ, R7, sock_ops::ACTIVE_ESTABLISHED_CB, active);
    }
    a.ja(pass);

    // LISTEN.
    a.bind(listen);
    zero_stack(&mut a);
    emit_common(&mut a, Event::SocketListen, true, true);
    sockops_fill(&mut a, false);
    emit_derived(&mut a);
    if e.close {
        emit_record_endpoint(&mut a, m);
    }
    // ports[lport] = {cookie, pid}
    a.emit(Insn::ldx_mem(H, R1, R10, REC + record::LOCAL_PORT));
    a.emit(Insn::stx_mem(W, R10, R1, KEY));
    a.emit(Insn::ldx_mem(DW, R1, R10, REC + record::ENDPOINT));
    a.emit(Insn::stx_mem(DW, R10, R1, VAL));
    a.emit(Insn::ldx_mem(W, R1, R10, REC + record::PID));
    a.emit(Insn::stx_mem(W, R10, R1, VAL + 8));
    map_update(&mut a, m.ports, KEY, VAL);
    let listen_nomatch = a.label();
    if e.listen {
        let yes = a.label();
        emit_filter(&mut a, obj, Event::SocketListen, yes, listen_nomatch);
        a.bind(yes);
        if cfg.report {
            emit_output(&mut a, m);
        }
        if cfg.block {
            emit_listener_update(&mut a, m, LISTENER_BLOCK_ALL);
        }
        a.ja(pass);
    }
    a.bind(listen_nomatch);
    if cfg.block && e.accept {
        emit_listener_update(&mut a, m, 0);
    }
    a.ja(pass);

    // ACCEPT (established passive connection).
    a.bind(passive);
    zero_stack(&mut a);
    emit_common(&mut a, Event::SocketAccept, true, false);
    sockops_fill(&mut a, true);
    emit_derived(&mut a);
    if e.close {
        emit_record_endpoint(&mut a, m);
    }
    if e.accept && !cfg.block {
        // parent and pid from ports[lport].
        let no_parent = a.label();
        a.emit(Insn::ldx_mem(H, R1, R10, REC + record::LOCAL_PORT));
        a.emit(Insn::stx_mem(W, R10, R1, KEY));
        map_lookup(&mut a, m.ports, KEY);
        a.jmp_imm(JEQ, R0, 0, no_parent);
        a.emit(Insn::ldx_mem(DW, R1, R0, 0));
        a.emit(Insn::stx_mem(DW, R10, R1, REC + record::PARENT));
        a.emit(Insn::ldx_mem(W, R1, R0, 8));
        a.emit(Insn::stx_mem(W, R10, R1, REC + record::PID));
        a.bind(no_parent);
        let yes = a.label();
        emit_filter(&mut a, obj, Event::SocketAccept, yes, pass);
        a.bind(yes);
        if cfg.report {
            emit_output(&mut a, m);
        }
    }
    a.ja(pass);

    // Active connection established: only the local endpoint for CLOSE.
    if e.close {
        a.bind(active);
        zero_stack(&mut a);
        a.emit(Insn::mov64_reg(R1, R6));
        a.emit(Insn::call(helper::GET_SOCKET_COOKIE));
        a.emit(Insn::stx_mem(DW, R10, R0, REC + record::ENDPOINT));
        sockops_fill(&mut a, false);
        emit_record_endpoint(&mut a, m);
        a.ja(pass);
    }

    a.bind(pass);
    ret(&mut a, 1);
    finish(a)
}

fn release(obj: &Object, cfg: &SockConfig) -> Result<Vec<Insn>, SockGenError> {
    use code::*;
    use Reg::*;
    let e = cfg.events;
    let m = &cfg.maps;
    let mut a = Asm::new();
    let pass = a.label();
    emit_netns_check(&mut a, cfg.netns_cookie, pass);
    zero_stack(&mut a);
    emit_common(&mut a, Event::SocketClose, true, true);
    a.emit(Insn::ldx_mem(W, R0, R6, bpf_sock::PROTOCOL));
    a.emit(Insn::stx_mem(B, R10, R0, REC + record::PROTOCOL));
    // Forget a listener.
    if m.listeners >= 0 {
        a.emit(Insn::ldx_mem(DW, R1, R10, REC + record::ENDPOINT));
        a.emit(Insn::stx_mem(DW, R10, R1, KEY));
        map_delete(&mut a, m.listeners, KEY);
    }
    if !e.close {
        a.ja(pass);
        a.bind(pass);
        ret(&mut a, 1);
        return finish(a);
    }
    let v6 = a.label();
    let have_remote = a.label();
    a.emit(Insn::ldx_mem(W, R0, R6, bpf_sock::FAMILY));
    a.jmp_imm(JEQ, R0, AF_INET6, v6);
    a.jmp_imm(JNE, R0, AF_INET, pass);
    emit_addr4(&mut a, R6, bpf_sock::DST_IP4, record::REMOTE);
    // IPv4 sockets: a zero local address is still IPv4 (mapped) until the map says more.
    a.emit(Insn::st_mem(W, R10, REC + record::LOCAL + 4, 0xffff));
    a.emit(Insn::ldx_mem(W, R0, R10, REC + record::REMOTE));
    let remote_nonzero = a.label();
    a.jmp_imm(JNE, R0, 0, remote_nonzero);
    // 0.0.0.0 remote: zero, not ::ffff:0.0.0.0.
    a.emit(Insn::st_mem(W, R10, REC + record::REMOTE + 4, 0));
    a.bind(remote_nonzero);
    a.ja(have_remote);
    a.bind(v6);
    emit_addr6(&mut a, R6, bpf_sock::DST_IP6, record::REMOTE);
    a.bind(have_remote);
    emit_port_be16(&mut a, R6, H, bpf_sock::DST_PORT, record::REMOTE_PORT);
    // Local endpoint from the endpoints map.
    a.emit(Insn::ldx_mem(DW, R1, R10, REC + record::ENDPOINT));
    a.emit(Insn::stx_mem(DW, R10, R1, KEY));
    map_lookup(&mut a, m.endpoints, KEY);
    let unknown = a.label();
    let known = a.label();
    a.jmp_imm(JEQ, R0, 0, unknown);
    for k in 0..2i16 {
        a.emit(Insn::ldx_mem(DW, R1, R0, 8 * k));
        a.emit(Insn::stx_mem(DW, R10, R1, REC + record::LOCAL + 8 * k));
    }
    a.emit(Insn::ldx_mem(H, R1, R0, 16));
    a.emit(Insn::stx_mem(H, R10, R1, REC + record::LOCAL_PORT));
    map_delete(&mut a, m.endpoints, KEY);
    a.ja(known);
    // Never seen bound and not connected: nothing to report.
    a.bind(unknown);
    a.emit(Insn::ldx_mem(H, R0, R10, REC + record::REMOTE_PORT));
    a.jmp_imm(JEQ, R0, 0, pass);
    a.bind(known);
    emit_derived(&mut a);
    emit_decide(&mut a, obj, Event::SocketClose, cfg, None, pass);
    a.bind(pass);
    ret(&mut a, 1);
    finish(a)
}

fn ingress(obj: &Object, cfg: &SockConfig) -> Result<Vec<Insn>, SockGenError> {
    use code::*;
    use Reg::*;
    let m = &cfg.maps;
    let mut a = Asm::new();
    let pass = a.label();
    let drop = a.label();
    a.emit(Insn::mov64_reg(R6, R1));
    a.emit(Insn::call(helper::GET_SOCKET_COOKIE));
    a.jmp_imm(JEQ, R0, 0, pass);
    a.emit(Insn::mov64_reg(R7, R0));
    a.emit(Insn::stx_mem(DW, R10, R0, KEY));
    map_lookup(&mut a, m.listeners, KEY);
    a.jmp_imm(JEQ, R0, 0, pass);
    a.emit(Insn::ldx_mem(W, R8, R0, 0));
    a.emit(Insn::ldx_mem(W, R1, R0, 4));
    a.jmp_imm(JSET, R1, LISTENER_BLOCK_ALL as i32, drop);
    if !cfg.events.accept {
        a.ja(pass);
        a.bind(pass);
        ret(&mut a, 1);
        a.bind(drop);
        ret(&mut a, 0);
        return finish(a);
    }
    zero_stack(&mut a);
    // Packet headers: 40 bytes from the network header, then 14 of TCP.
    for k in 0..6i16 {
        a.emit(Insn::st_mem(DW, R10, PKT + 8 * k, 0));
    }
    a.emit(Insn::st_mem(DW, R10, TCPH, 0));
    a.emit(Insn::st_mem(DW, R10, TCPH + 8, 0));
    let load = |a: &mut Asm, off: Option<i32>, dst: i16, len: i32| {
        a.emit(Insn::mov64_reg(R1, R6));
        match off {
            Some(o) => a.emit(Insn::mov64_imm(R2, o)),
            None => a.emit(Insn::mov64_reg(R2, R9)),
        }
        a.emit(Insn::mov64_reg(R3, R10));
        a.emit(Insn::alu64_imm(ADD, R3, dst as i32));
        a.emit(Insn::mov64_imm(R4, len));
        a.emit(Insn::call(helper::SKB_LOAD_BYTES));
    };
    load(&mut a, Some(0), PKT, 20);
    a.jmp_imm(JNE, R0, 0, pass);
    a.emit(Insn::ldx_mem(B, R1, R10, PKT));
    a.emit(Insn::alu64_imm(RSH, R1, 4));
    let v6 = a.label();
    let have_l4 = a.label();
    a.jmp_imm(JEQ, R1, 6, v6);
    a.jmp_imm(JNE, R1, 4, pass);
    // IPv4: r9 = IHL * 4.
    a.emit(Insn::ldx_mem(B, R1, R10, PKT + 9));
    a.jmp_imm(JNE, R1, 6, pass);
    a.emit(Insn::ldx_mem(B, R9, R10, PKT));
    a.emit(Insn::alu64_imm(AND, R9, 0x0f));
    a.emit(Insn::alu64_imm(LSH, R9, 2));
    a.jmp_imm(JLT, R9, 20, pass);
    emit_addr4(&mut a, R10, PKT + 12, record::REMOTE);
    emit_addr4(&mut a, R10, PKT + 16, record::LOCAL);
    a.ja(have_l4);
    a.bind(v6);
    load(&mut a, Some(0), PKT, 40);
    a.jmp_imm(JNE, R0, 0, pass);
    a.emit(Insn::ldx_mem(B, R1, R10, PKT + 6));
    a.jmp_imm(JNE, R1, 6, pass);
    a.emit(Insn::mov64_imm(R9, 40));
    emit_addr6(&mut a, R10, PKT + 8, record::REMOTE);
    emit_addr6(&mut a, R10, PKT + 24, record::LOCAL);
    a.bind(have_l4);
    load(&mut a, None, TCPH, 14);
    a.jmp_imm(JNE, R0, 0, pass);
    // SYN without ACK only.
    a.emit(Insn::ldx_mem(B, R1, R10, TCPH + 13));
    a.emit(Insn::alu64_imm(AND, R1, 0x12));
    a.jmp_imm(JNE, R1, 0x02, pass);
    emit_port_be16(&mut a, R10, H, TCPH, record::REMOTE_PORT);
    emit_port_be16(&mut a, R10, H, TCPH + 2, record::LOCAL_PORT);
    emit_common(&mut a, Event::SocketAccept, false, false);
    a.emit(Insn::stx_mem(DW, R10, R7, REC + record::PARENT));
    a.emit(Insn::stx_mem(W, R10, R8, REC + record::PID));
    a.emit(Insn::st_mem(B, R10, REC + record::PROTOCOL, 6));
    emit_derived(&mut a);
    let yes = a.label();
    emit_filter(&mut a, obj, Event::SocketAccept, yes, pass);
    a.bind(yes);
    if cfg.report {
        emit_output_once(&mut a, m, record::PARENT);
    }
    a.ja(drop);
    a.bind(pass);
    ret(&mut a, 1);
    a.bind(drop);
    ret(&mut a, 0);
    finish(a)
}

// ---------------------------------------------------------------------------------------
// Records in user space
// ---------------------------------------------------------------------------------------

pub(crate) fn rd_u16(b: &[u8], off: i16) -> u16 {
    let o = off as usize;
    u16::from_ne_bytes([b[o], b[o + 1]])
}

pub(crate) fn rd_u32(b: &[u8], off: i16) -> u32 {
    let o = off as usize;
    u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

pub(crate) fn rd_u64(b: &[u8], off: i16) -> u64 {
    let o = off as usize;
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[o..o + 8]);
    u64::from_ne_bytes(x)
}

pub(crate) fn rd_addr(b: &[u8], off: i16) -> Ipv6Addr {
    let v = (0..4)
        .rev()
        .fold(0u128, |acc, k| (acc << 32) | rd_u32(b, off + 4 * k) as u128);
    Ipv6Addr::from(v)
}

/// Decode a record the programs sent. `sniff_handle`: the handle has the SNIFF flag (then
/// every event is `sniffed`; CLOSE always is). `None` if the record is too short or its
/// event is not a SOCKET event.
pub fn record_to_address(b: &[u8], sniff_handle: bool) -> Option<Address> {
    if b.len() < record::SIZE {
        return None;
    }
    let event = Event::from_u8(b[record::EVENT as usize])?;
    if !matches!(
        event,
        Event::SocketBind
            | Event::SocketConnect
            | Event::SocketListen
            | Event::SocketAccept
            | Event::SocketClose
    ) {
        return None;
    }
    Some(record_address(
        b,
        Layer::Socket,
        event,
        sniff_handle || event == Event::SocketClose,
    ))
}

/// The address of a record of at least [`record::SIZE`] bytes (the SOCKET and FLOW
/// programs write the same layout): its timestamp, direction, loopback and IP-version bits
/// and the endpoint data, at `layer` as `event`.
pub(crate) fn record_address(b: &[u8], layer: Layer, event: Event, sniffed: bool) -> Address {
    let data = FlowData {
        endpoint_id: rd_u64(b, record::ENDPOINT),
        parent_endpoint_id: rd_u64(b, record::PARENT),
        process_id: rd_u32(b, record::PID),
        local_addr: rd_addr(b, record::LOCAL),
        remote_addr: rd_addr(b, record::REMOTE),
        local_port: rd_u16(b, record::LOCAL_PORT),
        remote_port: rd_u16(b, record::REMOTE_PORT),
        protocol: b[record::PROTOCOL as usize],
    };
    Address {
        timestamp: rd_u64(b, record::TIMESTAMP) as i64,
        layer,
        event,
        sniffed,
        outbound: b[record::OUTBOUND as usize] != 0,
        loopback: b[record::LOOPBACK as usize] != 0,
        impostor: false,
        ipv6: b[record::IPV6 as usize] != 0,
        ip_checksum: false,
        tcp_checksum: false,
        udp_checksum: false,
        data: if layer == Layer::Flow {
            LayerData::Flow(data)
        } else {
            LayerData::Socket(data)
        },
    }
}

/// The record the programs would build for `addr` (for tests: the inverse of
/// [`record_to_address`], with the derived `ip`/`ipv6`/`icmp`/`icmpv6` bytes computed as the
/// kernel computes them and `loopback` copied from the address).
pub fn address_to_record(addr: &Address) -> [u8; record::SIZE] {
    let mut b = [0u8; record::SIZE];
    let f = addr.flow_data().copied().unwrap_or_default();
    let put = |b: &mut [u8], off: i16, bytes: &[u8]| {
        let o = off as usize;
        b[o..o + bytes.len()].copy_from_slice(bytes);
    };
    put(
        &mut b,
        record::TIMESTAMP,
        &(addr.timestamp as u64).to_ne_bytes(),
    );
    put(&mut b, record::ENDPOINT, &f.endpoint_id.to_ne_bytes());
    put(&mut b, record::PARENT, &f.parent_endpoint_id.to_ne_bytes());
    put(&mut b, record::PID, &f.process_id.to_ne_bytes());
    b[record::EVENT as usize] = addr.event as u8;
    b[record::PROTOCOL as usize] = f.protocol;
    b[record::OUTBOUND as usize] = addr.outbound as u8;
    b[record::LOOPBACK as usize] = addr.loopback as u8;
    for (off, a) in [
        (record::LOCAL, f.local_addr),
        (record::REMOTE, f.remote_addr),
    ] {
        let v = u128::from(a);
        for k in 0..4i16 {
            put(&mut b, off + 4 * k, &((v >> (32 * k)) as u32).to_ne_bytes());
        }
    }
    put(&mut b, record::LOCAL_PORT, &f.local_port.to_ne_bytes());
    put(&mut b, record::REMOTE_PORT, &f.remote_port.to_ne_bytes());
    let mapped = |v: u128| v >> 32 == 0xffff;
    let l = u128::from(f.local_addr);
    let ip = if l != 0 {
        mapped(l)
    } else {
        mapped(u128::from(f.remote_addr))
    };
    b[record::IP as usize] = ip as u8;
    b[record::IPV6 as usize] = !ip as u8;
    b[record::ICMP as usize] = (ip && f.protocol == 1) as u8;
    b[record::ICMPV6 as usize] = (!ip && f.protocol == 58) as u8;
    b
}

/// The filter part of a program alone, for testing without the kernel: it expects the
/// record at `r10 - 72` and returns 1 (match) or 0.
pub fn filter_only_program(obj: &Object, event: Event) -> Result<Vec<Insn>, SockGenError> {
    if !object_is_valid(obj) {
        return Err(SockGenError::BadObject);
    }
    let mut a = Asm::new();
    let yes = a.label();
    let no = a.label();
    emit_filter(&mut a, obj, event, yes, no);
    a.bind(yes);
    ret(&mut a, 1);
    a.bind(no);
    ret(&mut a, 0);
    finish(a)
}

/// Run a program from [`filter_only_program`] on a record (a small interpreter for the
/// instructions the filter code uses: 64-bit moves, 32-bit jumps, stack loads, exit).
pub fn run_filter_only(prog: &[Insn], rec: &[u8; record::SIZE]) -> Option<u64> {
    let mut stack = [0u8; 512];
    stack[512 - record::SIZE..].copy_from_slice(rec);
    let mut regs = [0u64; 11];
    let mut pc = 0usize;
    for _ in 0..100_000 {
        let i = *prog.get(pc)?;
        let class = i.code & 0x07;
        let op = i.code & 0xf0;
        pc += 1;
        match class {
            code::ALU64 if op == code::MOV && i.code & code::X == 0 => {
                regs[i.dst as usize] = i.imm as i64 as u64
            }
            code::LDX if i.src == Reg::R10 as u8 => {
                let size = match i.code & 0x18 {
                    code::B => 1,
                    code::H => 2,
                    code::W => 4,
                    _ => 8,
                };
                let at = usize::try_from(512 + i.off as i64).ok()?;
                let bytes = stack.get(at..at + size)?;
                regs[i.dst as usize] = bytes
                    .iter()
                    .rev()
                    .fold(0u64, |acc, b| (acc << 8) | *b as u64);
                if cfg!(target_endian = "big") {
                    regs[i.dst as usize] = bytes.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64);
                }
            }
            code::JMP | code::JMP32 => {
                if op == code::EXIT {
                    return Some(regs[0]);
                }
                let taken = if op == code::JA {
                    true
                } else {
                    let (a, b) = if class == code::JMP32 {
                        (regs[i.dst as usize] as u32 as u64, i.imm as u32 as u64)
                    } else {
                        (regs[i.dst as usize], i.imm as i64 as u64)
                    };
                    match op {
                        code::JEQ => a == b,
                        code::JNE => a != b,
                        code::JGT => a > b,
                        code::JLT => a < b,
                        code::JGE => a >= b,
                        code::JLE => a <= b,
                        _ => return None,
                    }
                };
                if taken {
                    pc = usize::try_from(pc as i64 + i.off as i64).ok()?;
                }
            }
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::SocketData;
    use crate::filter::Filter;

    fn addr(event: Event, f: SocketData, ts: i64, loopback: bool) -> Address {
        let rec_ip = {
            let l = u128::from(f.local_addr);
            let v = if l != 0 { l } else { u128::from(f.remote_addr) };
            v >> 32 == 0xffff
        };
        Address {
            timestamp: ts,
            layer: Layer::Socket,
            event,
            sniffed: false,
            outbound: event_outbound(event),
            loopback,
            impostor: false,
            ipv6: !rec_ip,
            ip_checksum: false,
            tcp_checksum: false,
            udp_checksum: false,
            data: LayerData::Socket(f),
        }
    }

    fn v4(a: [u8; 4]) -> Ipv6Addr {
        std::net::Ipv4Addr::from(a).to_ipv6_mapped()
    }

    fn samples() -> Vec<Address> {
        let mut out = Vec::new();
        let addrs = [
            Ipv6Addr::UNSPECIFIED,
            v4([127, 0, 0, 1]),
            v4([10, 1, 2, 3]),
            v4([0, 0, 0, 0]),
            "::1".parse().unwrap(),
            "2001:db8::5".parse().unwrap(),
            "fe80::1:2:3:4".parse().unwrap(),
        ];
        let events = [
            Event::SocketBind,
            Event::SocketConnect,
            Event::SocketListen,
            Event::SocketAccept,
            Event::SocketClose,
        ];
        let mut n = 0u64;
        for ev in events {
            for (i, la) in addrs.iter().enumerate() {
                for (j, ra) in addrs.iter().enumerate() {
                    for proto in [6u8, 17, 1, 58] {
                        n += 1;
                        let f = SocketData {
                            endpoint_id: n.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                            parent_endpoint_id: if n.is_multiple_of(3) { 0 } else { n * 7 },
                            process_id: (n % 5) as u32 * 1000 + 1,
                            local_addr: *la,
                            remote_addr: *ra,
                            local_port: [0, 80, 8080, 65535][(i + j) % 4],
                            remote_port: [0, 443, 1, 53][(i * 3 + j) % 4],
                            protocol: proto,
                        };
                        out.push(addr(ev, f, (n * 1_000_003) as i64, n.is_multiple_of(2)));
                    }
                }
            }
        }
        out
    }

    const FILTERS: &[&str] = &[
        "true",
        "false",
        "event == BIND",
        "event == CONNECT and remotePort == 443",
        "outbound",
        "inbound and tcp",
        "localPort == 8080 or remotePort == 53",
        "localPort > 80 and localPort <= 65535",
        "ip",
        "ipv6",
        "icmp or icmpv6",
        "udp and not loopback",
        "loopback",
        "localAddr == 127.0.0.1",
        "remoteAddr == ::1",
        "remoteAddr >= 10.0.0.0 and remoteAddr <= 10.255.255.255",
        "localAddr == 2001:db8::5",
        "localAddr > ::ffff:0.0.0.0",
        "processId == 1001 or processId > 3000",
        "endpointId == 0x9e3779b97f4a7c15",
        "endpointId > 0x8000000000000000",
        "parentEndpointId != 0",
        "parentEndpointId < 100",
        "timestamp > 5000000",
        "timestamp < 10000000000",
        "timestamp > -1",
        "protocol == 17",
        "protocol < 10",
        "(tcp? localPort == 80: remotePort == 53)",
        "event == LISTEN or event == ACCEPT",
        "event != CLOSE and localAddr != ::",
        "zero == 0",
    ];

    #[test]
    fn filter_code_agrees_with_the_evaluator() {
        let samples = samples();
        for text in FILTERS {
            let f =
                Filter::compile(text, Layer::Socket).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            for ev in [
                Event::SocketBind,
                Event::SocketConnect,
                Event::SocketListen,
                Event::SocketAccept,
                Event::SocketClose,
            ] {
                let prog = filter_only_program(f.object(), ev).unwrap();
                for a in samples.iter().filter(|a| a.event == ev) {
                    let rec = address_to_record(a);
                    let got = run_filter_only(&prog, &rec).expect("runs") == 1;
                    assert_eq!(got, f.matches_event(a), "{text} on {a:?}");
                    let back = record_to_address(&rec, false).unwrap();
                    assert_eq!(back.flow_data(), a.flow_data());
                    assert_eq!(back.ipv6, a.ipv6);
                    assert_eq!(back.loopback, a.loopback);
                }
            }
        }
    }

    #[test]
    fn can_match_folds_event_and_direction() {
        let f = Filter::compile("event == BIND or (inbound and tcp)", Layer::Socket).unwrap();
        let s = EventSet::of(f.object());
        assert!(s.bind && s.accept && !s.connect && !s.listen && !s.close);
        let f = Filter::compile("false", Layer::Socket).unwrap();
        assert!(EventSet::of(f.object()).is_empty());
        let f = Filter::compile("localPort == 5", Layer::Socket).unwrap();
        let s = EventSet::of(f.object());
        assert!(s.bind && s.connect && s.listen && s.accept && s.close);
    }

    #[test]
    fn programs_generate_for_every_hook() {
        let f = Filter::compile("localPort == 80 or remotePort == 443", Layer::Socket).unwrap();
        let maps = SockMaps {
            ringbuf: 3,
            seen: 4,
            listeners: 5,
            ports: 6,
            endpoints: 7,
        };
        for block in [false, true] {
            let cfg = SockConfig {
                netns_cookie: 0x1234_5678_9abc,
                block,
                report: true,
                events: EventSet::of(f.object()),
                maps,
            };
            for h in Hook::ALL {
                let p = hook_program(f.object(), h, &cfg).unwrap();
                assert!(p.len() > 4, "{h:?}");
                assert_eq!(p.last().unwrap().code, code::JMP | code::EXIT);
            }
        }
        let cfg = SockConfig {
            netns_cookie: 1,
            block: true,
            report: true,
            events: EventSet::of(f.object()),
            maps: SockMaps::NONE,
        };
        assert_eq!(
            hook_program(f.object(), Hook::Connect4, &cfg),
            Err(SockGenError::MissingMap("ring buffer"))
        );
    }
}

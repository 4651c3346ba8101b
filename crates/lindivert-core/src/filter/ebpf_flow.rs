//! The eBPF back end for the FLOW layer: cgroup hook programs that detect TCP connections and
//! UDP flows, attribute them to processes, filter them in the kernel and report them through
//! a ring buffer. It shares the SOCKET layer's record layout and filter code
//! ([`super::ebpf_sock`]).
//!
//! # Mechanism
//!
//! | what | hook | notes |
//! |---|---|---|
//! | process ids | `cgroup/connect4/6`, `sendmsg4/6`, `post_bind4/6` (process context) | `socks[cookie] = pid` |
//! | listeners | `sockops` `TCP_LISTEN_CB` (in `listen()`) | `ports[lport] = {cookie, pid}` |
//! | TCP ESTABLISHED | `sockops` `ACTIVE_ESTABLISHED_CB` (outbound, pid from `socks`), `PASSIVE_ESTABLISHED_CB` (inbound, pid and parent = the listener's, from `ports`) | when DELETED can match, the socket gets `BPF_SOCK_OPS_STATE_CB_FLAG` and a `tcpflows` entry |
//! | TCP DELETED | `sockops` `STATE_CB` with the new state `TCP_CLOSE` | only for connections established while the handle was open |
//! | UDP ESTABLISHED | `cgroup_skb/egress` (outbound) and `ingress` (inbound): the first packet of a (socket, remote address, remote port) | `udpflows[key] = {last seen, pid, direction}`; every packet refreshes *last seen* |
//! | UDP DELETED | user space: no packet for the inactivity timeout, or the socket was released (`cgroup/sock_release` sends a record) | |
//!
//! Every program except the `cgroup_skb` ones compares `bpf_get_netns_cookie` with the
//! handle's namespace first. The `cgroup_skb` programs use the helper when the kernel offers
//! it to them ([`FlowConfig::skb_netns_helper`]); otherwise they only act on sockets that a
//! namespace-checked hook put in `socks`.
//!
//! Records are [`super::ebpf_sock::record`]s; the event byte is 1 (ESTABLISHED, matched the
//! filter), 2 (DELETED, matched), [`TRACK_ESTABLISHED`] (a UDP flow that did not match but
//! whose DELETED might) or [`UDP_RELEASED`] (a UDP socket was released; only the endpoint id
//! is set).

use super::ebpf::{code, Asm, Insn, Label, Reg};
use super::ebpf_sock::{
    bpf_sock, can_match_in, emit_addr4, emit_addr6, emit_derived, emit_filter_in, emit_netns_check,
    emit_output, finish, helper, map_delete, map_lookup, map_update, need, object_is_valid, rd_u64,
    record, record_address, ret, sock_ops, sockops_fill, to_be, zero_stack, PlanCtx, SockGenError,
    SockMaps, KEY, PKT, REC, TCPH, VAL,
};
use super::ir::Object;
use crate::address::{Address, FlowData};
use crate::types::{Event, Layer};

/// Event byte of a UDP flow reported only so that user space can time it out.
pub const TRACK_ESTABLISHED: u8 = 0x81;
/// Event byte of a released UDP socket.
pub const UDP_RELEASED: u8 = 0x83;

/// Value size of `socks` (key: cookie `u64`): pid `u32`, padding.
pub const SOCKS_VALUE_SIZE: u32 = 8;
/// Value size of `ports` (key: local port `u32`): listener cookie `u64`, pid `u32`, padding.
pub const PORTS_VALUE_SIZE: u32 = 16;
/// Value size of `tcpflows` (key: cookie `u64`): pid `u32`, outbound `u8`, padding, parent
/// cookie `u64`.
pub const TCPFLOWS_VALUE_SIZE: u32 = 16;
/// Key size of `udpflows`: cookie `u64`, remote address `u32[4]`, remote port `u16`, padding.
pub const UDP_KEY_SIZE: u32 = 32;
/// Value size of `udpflows`: last seen `u64` (`bpf_ktime_get_ns`), pid `u32`, outbound `u8`,
/// padding.
pub const UDP_VALUE_SIZE: u32 = 16;

/// The maps, by descriptor (`-1` = absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowMaps {
    /// Ring buffer of records.
    pub ringbuf: i32,
    /// LRU hash cookie → pid.
    pub socks: i32,
    /// Hash local port → listener.
    pub ports: i32,
    /// LRU hash cookie → TCP flow.
    pub tcpflows: i32,
    /// LRU hash ([`UDP_KEY_SIZE`]) → UDP flow.
    pub udpflows: i32,
}

/// What a FLOW handle's programs are generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowConfig {
    /// The namespace cookie.
    pub netns_cookie: u64,
    /// The filter can match ESTABLISHED.
    pub established: bool,
    /// The filter can match DELETED.
    pub deleted: bool,
    /// The filter can match TCP.
    pub tcp: bool,
    /// The filter can match UDP.
    pub udp: bool,
    /// `bpf_get_netns_cookie` may be called from `cgroup_skb` programs.
    pub skb_netns_helper: bool,
    /// UDP inactivity timeout in nanoseconds (a packet after a longer silence starts a new
    /// flow in the kernel).
    pub udp_timeout_ns: u64,
    /// The maps.
    pub maps: FlowMaps,
}

impl FlowConfig {
    /// What `obj` (a FLOW filter) can match.
    pub fn analyze(obj: &Object) -> (bool, bool, bool, bool) {
        let ctx = |event, protocol| PlanCtx {
            layer: Layer::Flow,
            event,
            outbound: None,
            protocol,
        };
        (
            can_match_in(obj, &ctx(Some(Event::FlowEstablished), None)),
            can_match_in(obj, &ctx(Some(Event::FlowDeleted), None)),
            can_match_in(obj, &ctx(None, Some(6))),
            can_match_in(obj, &ctx(None, Some(17))),
        )
    }
}

/// A hook of the FLOW layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowHook {
    /// `BPF_CGROUP_INET4_CONNECT` (pid).
    Connect4,
    /// `BPF_CGROUP_INET6_CONNECT` (pid).
    Connect6,
    /// `BPF_CGROUP_UDP4_SENDMSG` (pid).
    Sendmsg4,
    /// `BPF_CGROUP_UDP6_SENDMSG` (pid).
    Sendmsg6,
    /// `BPF_CGROUP_INET4_POST_BIND` (pid).
    PostBind4,
    /// `BPF_CGROUP_INET6_POST_BIND` (pid).
    PostBind6,
    /// `BPF_CGROUP_SOCK_OPS` (TCP).
    SockOps,
    /// `BPF_CGROUP_INET_SOCK_RELEASE` (cleanup, UDP close).
    Release,
    /// `BPF_CGROUP_INET_EGRESS` (UDP).
    Egress,
    /// `BPF_CGROUP_INET_INGRESS` (UDP).
    Ingress,
}

impl FlowHook {
    /// Every hook.
    pub const ALL: [FlowHook; 10] = [
        FlowHook::Connect4,
        FlowHook::Connect6,
        FlowHook::Sendmsg4,
        FlowHook::Sendmsg6,
        FlowHook::PostBind4,
        FlowHook::PostBind6,
        FlowHook::SockOps,
        FlowHook::Release,
        FlowHook::Egress,
        FlowHook::Ingress,
    ];

    /// `enum bpf_prog_type`.
    pub const fn prog_type(self) -> u32 {
        use super::ebpf_sock::prog_type as p;
        match self {
            FlowHook::Connect4 | FlowHook::Connect6 | FlowHook::Sendmsg4 | FlowHook::Sendmsg6 => {
                p::CGROUP_SOCK_ADDR
            }
            FlowHook::PostBind4 | FlowHook::PostBind6 | FlowHook::Release => p::CGROUP_SOCK,
            FlowHook::SockOps => p::SOCK_OPS,
            FlowHook::Egress | FlowHook::Ingress => p::CGROUP_SKB,
        }
    }

    /// `enum bpf_attach_type` (also the expected attach type).
    pub const fn attach_type(self) -> u32 {
        use super::ebpf_sock::attach_type as t;
        match self {
            FlowHook::Connect4 => t::INET4_CONNECT,
            FlowHook::Connect6 => t::INET6_CONNECT,
            FlowHook::Sendmsg4 => t::UDP4_SENDMSG,
            FlowHook::Sendmsg6 => t::UDP6_SENDMSG,
            FlowHook::PostBind4 => t::INET4_POST_BIND,
            FlowHook::PostBind6 => t::INET6_POST_BIND,
            FlowHook::SockOps => t::SOCK_OPS,
            FlowHook::Release => t::INET_SOCK_RELEASE,
            FlowHook::Egress => 1, // BPF_CGROUP_INET_EGRESS
            FlowHook::Ingress => t::INET_INGRESS,
        }
    }

    /// A short program name.
    pub const fn name(self) -> &'static str {
        match self {
            FlowHook::Connect4 => "ld_flow_conn4",
            FlowHook::Connect6 => "ld_flow_conn6",
            FlowHook::Sendmsg4 => "ld_flow_send4",
            FlowHook::Sendmsg6 => "ld_flow_send6",
            FlowHook::PostBind4 => "ld_flow_bind4",
            FlowHook::PostBind6 => "ld_flow_bind6",
            FlowHook::SockOps => "ld_flow_ops",
            FlowHook::Release => "ld_flow_rel",
            FlowHook::Egress => "ld_flow_egress",
            FlowHook::Ingress => "ld_flow_ingress",
        }
    }

    /// Whether a handle with `cfg` needs this hook.
    pub fn needed(self, cfg: &FlowConfig) -> bool {
        let any = (cfg.established || cfg.deleted) && (cfg.tcp || cfg.udp);
        match self {
            FlowHook::Connect4 | FlowHook::Connect6 | FlowHook::PostBind4 | FlowHook::PostBind6 => {
                any
            }
            FlowHook::Sendmsg4 | FlowHook::Sendmsg6 | FlowHook::Egress | FlowHook::Ingress => {
                any && cfg.udp
            }
            FlowHook::SockOps => any && cfg.tcp,
            FlowHook::Release => any,
        }
    }
}

const OPS_ARGS1: i16 = 8;
const OPS_CB_FLAGS: i16 = 84;
const STATE_CB: i32 = 10;
const TCP_LISTEN_CB: i32 = 11;
const ACTIVE_CB: i32 = 4;
const PASSIVE_CB: i32 = 5;
const TCP_CLOSE: i32 = 7;
const STATE_CB_FLAG: i32 = 4;
const SOCK_OPS_CB_FLAGS_SET: i32 = 59;

fn sock_maps(m: &FlowMaps) -> SockMaps {
    SockMaps {
        ringbuf: m.ringbuf,
        ..SockMaps::NONE
    }
}

fn flow_ctx(event: Event, outbound: bool, protocol: u8) -> PlanCtx {
    PlanCtx {
        layer: Layer::Flow,
        event: Some(event),
        outbound: Some(outbound),
        protocol: Some(protocol),
    }
}

/// Filter the record for `event`/`outbound`, then write the event byte and report. If it
/// does not match and `track` is set, report it as [`TRACK_ESTABLISHED`]. Jumps to `done`.
#[allow(clippy::too_many_arguments)]
fn emit_report(
    a: &mut Asm,
    obj: &Object,
    cfg: &FlowConfig,
    event: Event,
    outbound: bool,
    protocol: u8,
    track: bool,
    done: Label,
) {
    let yes = a.label();
    let no = a.label();
    emit_filter_in(a, obj, &flow_ctx(event, outbound, protocol), yes, no);
    a.bind(yes);
    emit_event(a, &cfg.maps, event as u8, outbound);
    a.ja(done);
    a.bind(no);
    if track {
        emit_event(a, &cfg.maps, TRACK_ESTABLISHED, outbound);
    }
    a.ja(done);
}

/// Write the event byte `event` and the direction into the record, then report it.
fn emit_event(a: &mut Asm, maps: &FlowMaps, event: u8, outbound: bool) {
    a.emit(Insn::st_mem(
        code::B,
        Reg::R10,
        REC + record::EVENT,
        event as i32,
    ));
    a.emit(Insn::st_mem(
        code::B,
        Reg::R10,
        REC + record::OUTBOUND,
        outbound as i32,
    ));
    emit_output(a, &sock_maps(maps));
}

/// Generate the program of `hook` for the FLOW filter `obj`.
pub fn hook_program(
    obj: &Object,
    hook: FlowHook,
    cfg: &FlowConfig,
) -> Result<Vec<Insn>, SockGenError> {
    if !object_is_valid(obj) {
        return Err(SockGenError::BadObject);
    }
    let m = &cfg.maps;
    need(m.ringbuf, "ring buffer")?;
    need(m.socks, "socks")?;
    match hook {
        FlowHook::Connect4
        | FlowHook::Connect6
        | FlowHook::Sendmsg4
        | FlowHook::Sendmsg6
        | FlowHook::PostBind4
        | FlowHook::PostBind6 => {
            pid_recorder(cfg, matches!(hook, FlowHook::Sendmsg4 | FlowHook::Sendmsg6))
        }
        FlowHook::SockOps => {
            need(m.ports, "ports")?;
            need(m.tcpflows, "tcpflows")?;
            sockops(obj, cfg)
        }
        FlowHook::Release => release(cfg),
        FlowHook::Egress | FlowHook::Ingress => {
            need(m.udpflows, "udpflows")?;
            skb(obj, cfg, hook == FlowHook::Egress)
        }
    }
}

/// `socks[cookie] = pid` (sendmsg: only when absent, it runs for every datagram).
fn pid_recorder(cfg: &FlowConfig, only_new: bool) -> Result<Vec<Insn>, SockGenError> {
    use Reg::*;
    let mut a = Asm::new();
    let pass = a.label();
    emit_netns_check(&mut a, cfg.netns_cookie, pass);
    a.emit(Insn::mov64_reg(R1, R6));
    a.emit(Insn::call(helper::GET_SOCKET_COOKIE));
    a.emit(Insn::stx_mem(code::DW, R10, R0, KEY));
    if only_new {
        map_lookup(&mut a, cfg.maps.socks, KEY);
        a.jmp_imm(code::JNE, R0, 0, pass);
    }
    a.emit(Insn::call(helper::GET_CURRENT_PID_TGID));
    a.emit(Insn::alu64_imm(code::RSH, R0, 32));
    a.emit(Insn::stx_mem(code::DW, R10, R0, VAL));
    map_update(&mut a, cfg.maps.socks, KEY, VAL);
    a.bind(pass);
    ret(&mut a, 1);
    finish(a)
}

fn sockops(obj: &Object, cfg: &FlowConfig) -> Result<Vec<Insn>, SockGenError> {
    use code::*;
    use Reg::*;
    let m = &cfg.maps;
    let mut a = Asm::new();
    let pass = a.label();
    let listen = a.label();
    let active = a.label();
    let passive = a.label();
    let state = a.label();
    emit_netns_check(&mut a, cfg.netns_cookie, pass);
    a.emit(Insn::ldx_mem(W, R7, R6, sock_ops::OP));
    a.jmp_imm(JEQ, R7, TCP_LISTEN_CB, listen);
    a.jmp_imm(JEQ, R7, ACTIVE_CB, active);
    a.jmp_imm(JEQ, R7, PASSIVE_CB, passive);
    if cfg.deleted {
        a.jmp_imm(JEQ, R7, STATE_CB, state);
    }
    a.ja(pass);

    // listen(): ports[lport] = {cookie, pid}.
    a.bind(listen);
    a.emit(Insn::mov64_reg(R1, R6));
    a.emit(Insn::call(helper::GET_SOCKET_COOKIE));
    a.emit(Insn::stx_mem(DW, R10, R0, VAL));
    a.emit(Insn::call(helper::GET_CURRENT_PID_TGID));
    a.emit(Insn::alu64_imm(RSH, R0, 32));
    a.emit(Insn::stx_mem(DW, R10, R0, VAL + 8));
    a.emit(Insn::ldx_mem(W, R0, R6, sock_ops::LOCAL_PORT));
    a.emit(Insn::stx_mem(DW, R10, R0, KEY));
    map_update(&mut a, m.ports, KEY, VAL);
    a.ja(pass);

    for outbound in [true, false] {
        a.bind(if outbound { active } else { passive });
        zero_stack(&mut a);
        a.emit(Insn::call(helper::KTIME_GET_NS));
        a.emit(Insn::stx_mem(DW, R10, R0, REC + record::TIMESTAMP));
        a.emit(Insn::mov64_reg(R1, R6));
        a.emit(Insn::call(helper::GET_SOCKET_COOKIE));
        a.emit(Insn::stx_mem(DW, R10, R0, REC + record::ENDPOINT));
        a.emit(Insn::stx_mem(DW, R10, R0, KEY));
        sockops_fill(&mut a, true);
        let have = a.label();
        if outbound {
            map_lookup(&mut a, m.socks, KEY);
            a.jmp_imm(JEQ, R0, 0, have);
            a.emit(Insn::ldx_mem(W, R1, R0, 0));
            a.emit(Insn::stx_mem(W, R10, R1, REC + record::PID));
        } else {
            a.emit(Insn::ldx_mem(W, R0, R6, sock_ops::LOCAL_PORT));
            a.emit(Insn::stx_mem(DW, R10, R0, VAL));
            map_lookup(&mut a, m.ports, VAL);
            a.jmp_imm(JEQ, R0, 0, have);
            a.emit(Insn::ldx_mem(DW, R1, R0, 0));
            a.emit(Insn::stx_mem(DW, R10, R1, REC + record::PARENT));
            a.emit(Insn::ldx_mem(W, R1, R0, 8));
            a.emit(Insn::stx_mem(W, R10, R1, REC + record::PID));
        }
        a.bind(have);
        emit_derived(&mut a);
        if cfg.deleted {
            // Ask for state callbacks and remember the flow for DELETED.
            a.emit(Insn::ldx_mem(W, R2, R6, OPS_CB_FLAGS));
            a.emit(Insn::alu64_imm(OR, R2, STATE_CB_FLAG));
            a.emit(Insn::mov64_reg(R1, R6));
            a.emit(Insn::call(SOCK_OPS_CB_FLAGS_SET));
            a.emit(Insn::ldx_mem(W, R1, R10, REC + record::PID));
            a.emit(Insn::stx_mem(W, R10, R1, VAL));
            a.emit(Insn::st_mem(W, R10, VAL + 4, outbound as i32));
            a.emit(Insn::ldx_mem(DW, R1, R10, REC + record::PARENT));
            a.emit(Insn::stx_mem(DW, R10, R1, VAL + 8));
            map_update(&mut a, m.tcpflows, KEY, VAL);
        }
        if cfg.established {
            emit_report(
                &mut a,
                obj,
                cfg,
                Event::FlowEstablished,
                outbound,
                6,
                false,
                pass,
            );
        }
        a.ja(pass);
    }

    if cfg.deleted {
        a.bind(state);
        a.emit(Insn::ldx_mem(W, R0, R6, OPS_ARGS1));
        a.jmp_imm(JNE, R0, TCP_CLOSE, pass);
        zero_stack(&mut a);
        a.emit(Insn::mov64_reg(R1, R6));
        a.emit(Insn::call(helper::GET_SOCKET_COOKIE));
        a.emit(Insn::stx_mem(DW, R10, R0, REC + record::ENDPOINT));
        a.emit(Insn::stx_mem(DW, R10, R0, KEY));
        map_lookup(&mut a, m.tcpflows, KEY);
        a.jmp_imm(JEQ, R0, 0, pass);
        a.emit(Insn::ldx_mem(W, R1, R0, 0));
        a.emit(Insn::stx_mem(W, R10, R1, REC + record::PID));
        a.emit(Insn::ldx_mem(W, R8, R0, 4));
        a.emit(Insn::ldx_mem(DW, R1, R0, 8));
        a.emit(Insn::stx_mem(DW, R10, R1, REC + record::PARENT));
        map_delete(&mut a, m.tcpflows, KEY);
        a.emit(Insn::call(helper::KTIME_GET_NS));
        a.emit(Insn::stx_mem(DW, R10, R0, REC + record::TIMESTAMP));
        sockops_fill(&mut a, true);
        emit_derived(&mut a);
        let inb = a.label();
        a.jmp_imm(JEQ, R8, 0, inb);
        emit_report(&mut a, obj, cfg, Event::FlowDeleted, true, 6, false, pass);
        a.bind(inb);
        emit_report(&mut a, obj, cfg, Event::FlowDeleted, false, 6, false, pass);
    }

    a.bind(pass);
    ret(&mut a, 1);
    finish(a)
}

fn release(cfg: &FlowConfig) -> Result<Vec<Insn>, SockGenError> {
    use code::*;
    use Reg::*;
    let m = &cfg.maps;
    let mut a = Asm::new();
    let pass = a.label();
    emit_netns_check(&mut a, cfg.netns_cookie, pass);
    zero_stack(&mut a);
    a.emit(Insn::mov64_reg(R1, R6));
    a.emit(Insn::call(helper::GET_SOCKET_COOKIE));
    a.emit(Insn::stx_mem(DW, R10, R0, KEY));
    a.emit(Insn::stx_mem(DW, R10, R0, REC + record::ENDPOINT));
    map_delete(&mut a, m.socks, KEY);
    if cfg.udp && cfg.maps.udpflows >= 0 {
        a.emit(Insn::ldx_mem(W, R0, R6, bpf_sock::PROTOCOL));
        a.jmp_imm(JNE, R0, 17, pass);
        a.emit(Insn::st_mem(
            B,
            R10,
            REC + record::EVENT,
            UDP_RELEASED as i32,
        ));
        a.emit(Insn::st_mem(B, R10, REC + record::PROTOCOL, 17));
        emit_output(&mut a, &sock_maps(m));
    }
    a.bind(pass);
    ret(&mut a, 1);
    finish(a)
}

fn skb(obj: &Object, cfg: &FlowConfig, egress: bool) -> Result<Vec<Insn>, SockGenError> {
    use code::*;
    use Reg::*;
    let m = &cfg.maps;
    let mut a = Asm::new();
    let pass = a.label();
    a.emit(Insn::mov64_reg(R6, R1));
    a.emit(Insn::call(helper::GET_SOCKET_COOKIE));
    a.jmp_imm(JEQ, R0, 0, pass);
    a.emit(Insn::mov64_reg(R7, R0));
    if cfg.skb_netns_helper {
        a.emit(Insn::mov64_reg(R1, R6));
        a.emit(Insn::call(helper::GET_NETNS_COOKIE));
        for i in Insn::ld_imm64(R1, cfg.netns_cookie) {
            a.emit(i);
        }
        a.jmp_reg(JNE, R0, R1, pass);
    }
    zero_stack(&mut a);
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
    let (local_src, remote_src) = if egress { (0, 1) } else { (1, 0) };
    load(&mut a, Some(0), PKT, 20);
    a.jmp_imm(JNE, R0, 0, pass);
    a.emit(Insn::ldx_mem(B, R1, R10, PKT));
    a.emit(Insn::alu64_imm(RSH, R1, 4));
    let v6 = a.label();
    let have_l4 = a.label();
    a.jmp_imm(JEQ, R1, 6, v6);
    a.jmp_imm(JNE, R1, 4, pass);
    a.emit(Insn::ldx_mem(B, R1, R10, PKT + 9));
    a.jmp_imm(JNE, R1, 17, pass);
    // Not a later fragment.
    a.emit(Insn::ldx_mem(H, R1, R10, PKT + 6));
    a.emit(to_be(R1, 16));
    a.emit(Insn::alu64_imm(AND, R1, 0x1fff));
    a.jmp_imm(JNE, R1, 0, pass);
    a.emit(Insn::ldx_mem(B, R9, R10, PKT));
    a.emit(Insn::alu64_imm(AND, R9, 0x0f));
    a.emit(Insn::alu64_imm(LSH, R9, 2));
    a.jmp_imm(JLT, R9, 20, pass);
    let addr4 = [PKT + 12, PKT + 16];
    emit_addr4(&mut a, R10, addr4[local_src], record::LOCAL);
    emit_addr4(&mut a, R10, addr4[remote_src], record::REMOTE);
    a.ja(have_l4);
    a.bind(v6);
    load(&mut a, Some(0), PKT, 40);
    a.jmp_imm(JNE, R0, 0, pass);
    a.emit(Insn::ldx_mem(B, R1, R10, PKT + 6));
    a.jmp_imm(JNE, R1, 17, pass);
    a.emit(Insn::mov64_imm(R9, 40));
    let addr6 = [PKT + 8, PKT + 24];
    emit_addr6(&mut a, R10, addr6[local_src], record::LOCAL);
    emit_addr6(&mut a, R10, addr6[remote_src], record::REMOTE);
    a.bind(have_l4);
    load(&mut a, None, TCPH, 8);
    a.jmp_imm(JNE, R0, 0, pass);
    let ports = [TCPH, TCPH + 2];
    for (dst, src) in [
        (record::LOCAL_PORT, ports[local_src]),
        (record::REMOTE_PORT, ports[remote_src]),
    ] {
        a.emit(Insn::ldx_mem(H, R0, R10, src));
        a.emit(to_be(R0, 16));
        a.emit(Insn::stx_mem(H, R10, R0, REC + dst));
    }
    a.emit(Insn::st_mem(B, R10, REC + record::PROTOCOL, 17));
    a.emit(Insn::stx_mem(DW, R10, R7, REC + record::ENDPOINT));
    // Key: cookie, remote, remote port.
    a.emit(Insn::stx_mem(DW, R10, R7, KEY));
    for k in 0..2i16 {
        a.emit(Insn::ldx_mem(DW, R1, R10, REC + record::REMOTE + 8 * k));
        a.emit(Insn::stx_mem(DW, R10, R1, KEY + 8 + 8 * k));
    }
    a.emit(Insn::ldx_mem(H, R1, R10, REC + record::REMOTE_PORT));
    a.emit(Insn::stx_mem(H, R10, R1, KEY + 24));
    // The process: socks[cookie]; without the netns helper, unknown sockets are not ours.
    a.emit(Insn::stx_mem(DW, R10, R7, PKT));
    map_lookup(&mut a, m.socks, PKT);
    let no_pid = a.label();
    if cfg.skb_netns_helper {
        a.jmp_imm(JEQ, R0, 0, no_pid);
    } else {
        a.jmp_imm(JEQ, R0, 0, pass);
    }
    a.emit(Insn::ldx_mem(W, R1, R0, 0));
    a.emit(Insn::stx_mem(W, R10, R1, REC + record::PID));
    a.bind(no_pid);
    a.emit(Insn::call(helper::KTIME_GET_NS));
    a.emit(Insn::mov64_reg(R8, R0));
    a.emit(Insn::stx_mem(DW, R10, R0, REC + record::TIMESTAMP));
    // Known and still active: refresh.
    map_lookup(&mut a, m.udpflows, KEY);
    let new = a.label();
    a.jmp_imm(JEQ, R0, 0, new);
    a.emit(Insn::ldx_mem(DW, R1, R0, 0));
    a.emit(Insn::stx_mem(DW, R0, R8, 0));
    a.emit(Insn::mov64_reg(R2, R8));
    a.emit(Insn::alu64_reg(SUB, R2, R1));
    for i in Insn::ld_imm64(R3, cfg.udp_timeout_ns) {
        a.emit(i);
    }
    a.jmp_reg(JLE, R2, R3, pass);
    a.bind(new);
    a.emit(Insn::stx_mem(DW, R10, R8, VAL));
    a.emit(Insn::ldx_mem(W, R1, R10, REC + record::PID));
    a.emit(Insn::stx_mem(W, R10, R1, VAL + 8));
    a.emit(Insn::st_mem(W, R10, VAL + 12, egress as i32));
    map_update(&mut a, m.udpflows, KEY, VAL);
    emit_derived(&mut a);
    if cfg.established {
        emit_report(
            &mut a,
            obj,
            cfg,
            Event::FlowEstablished,
            egress,
            17,
            cfg.deleted,
            pass,
        );
    } else {
        emit_event(&mut a, m, TRACK_ESTABLISHED, egress);
    }
    a.bind(pass);
    ret(&mut a, 1);
    finish(a)
}

/// A decoded FLOW record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowRecord {
    /// An event that matched the filter in the kernel.
    Event(Address),
    /// A UDP flow to time out later (its ESTABLISHED did not match).
    Track(Address),
    /// A UDP socket was released.
    UdpReleased(u64),
}

/// The UDP flow key of an address (as in the `udpflows` map).
pub fn udp_key(f: &FlowData) -> [u8; UDP_KEY_SIZE as usize] {
    let mut k = [0u8; UDP_KEY_SIZE as usize];
    k[0..8].copy_from_slice(&f.endpoint_id.to_ne_bytes());
    let v = u128::from(f.remote_addr);
    for i in 0..4 {
        k[8 + 4 * i..12 + 4 * i].copy_from_slice(&((v >> (32 * i)) as u32).to_ne_bytes());
    }
    k[24..26].copy_from_slice(&f.remote_port.to_ne_bytes());
    k
}

/// Decode a record.
pub fn record_to_flow(b: &[u8]) -> Option<FlowRecord> {
    if b.len() < record::SIZE {
        return None;
    }
    let ev = b[record::EVENT as usize];
    if ev == UDP_RELEASED {
        return Some(FlowRecord::UdpReleased(rd_u64(b, record::ENDPOINT)));
    }
    let event = match ev {
        1 | TRACK_ESTABLISHED => Event::FlowEstablished,
        2 => Event::FlowDeleted,
        _ => return None,
    };
    let addr = record_address(b, Layer::Flow, event, true);
    Some(if ev == TRACK_ESTABLISHED {
        FlowRecord::Track(addr)
    } else {
        FlowRecord::Event(addr)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Filter;

    fn cfg(obj: &Object) -> FlowConfig {
        let (established, deleted, tcp, udp) = FlowConfig::analyze(obj);
        FlowConfig {
            netns_cookie: 1,
            established,
            deleted,
            tcp,
            udp,
            skb_netns_helper: false,
            udp_timeout_ns: 1_000_000_000,
            maps: FlowMaps {
                ringbuf: 3,
                socks: 4,
                ports: 5,
                tcpflows: 6,
                udpflows: 7,
            },
        }
    }

    #[test]
    fn analysis_and_generation() {
        let f = Filter::compile("tcp and event == ESTABLISHED", Layer::Flow).unwrap();
        let c = cfg(f.object());
        assert!(c.established && !c.deleted && c.tcp && !c.udp);
        assert!(!FlowHook::Egress.needed(&c));
        assert!(FlowHook::SockOps.needed(&c));
        let f = Filter::compile("true", Layer::Flow).unwrap();
        let c = cfg(f.object());
        assert!(c.established && c.deleted && c.tcp && c.udp);
        for h in FlowHook::ALL {
            assert!(h.needed(&c));
            let p = hook_program(f.object(), h, &c).unwrap();
            assert!(!p.is_empty());
        }
        let f = Filter::compile("outbound and remotePort == 53 and udp", Layer::Flow).unwrap();
        let c = cfg(f.object());
        assert!(!c.tcp && c.udp);
        for h in FlowHook::ALL {
            if h.needed(&c) {
                hook_program(f.object(), h, &c).unwrap();
            }
        }
    }
}

//! The filter evaluator: a compact program precomputed from the (optimised) object, run over
//! a parsed packet and its [`Address`], or over an event's address alone.
//!
//! Semantics (FILTER.md §4–§5):
//! * Rule 1: a test on a field whose header is absent is false for every operator;
//! * Rule 2: an out-of-bounds array access is false;
//! * Rule 3: values and constants compare as signed 129-bit integers;
//! * Rule 4: IPv4 addresses are IPv4-mapped (`::ffff:a.b.c.d`);
//! * `localAddr`/`remoteAddr`/`localPort`/`remotePort` at NETWORK follow the direction, with
//!   WinDivert's ICMP quirk: the "port" of an ICMP/ICMPv6 packet is its Type on the local
//!   side when outbound and on the remote side when inbound, 0 on the other side;
//! * `length` is the packet's length, `timestamp` and `priority` are signed;
//! * the packet hash behind `random8/16/32` is computed at most once per evaluation, and only
//!   when such a field is tested.
//!
//! Deliberate differences from WinDivert 2.2.2:
//! * `ip` and `ipv6` at FLOW and SOCKET say whether the event is IPv4 or IPv6 (WinDivert:
//!   always 0, its issue #338). An event is IPv4 when its local address is IPv4-mapped, or,
//!   for an unspecified (`::`) local address, when its remote address is. The same decides
//!   `icmp` and `icmpv6` there.
//! * `ipv6.FlowLabel` is the real 20-bit flow label (WinDivert byte-swaps it).
//! * A field whose data the address does not carry (for example `ifIdx` with a FLOW
//!   address, or `processId` with NETWORK data) makes its test false, like a missing header.

use core::fmt;

use super::compile::{optimize_with, Optimized, TestSink};
use super::fields::Field;
use super::ir::{Jump, Object, Op, Test, Value};
use crate::address::Address;
use crate::packet::{ParsedPacket, Transport};
use crate::types::Layer;

/// Why [`crate::filter::Filter::matches_packet`] could not evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalError {
    /// The address is for another layer than the filter.
    LayerMismatch {
        /// The filter's layer.
        filter: Layer,
        /// The address's layer.
        address: Layer,
    },
    /// The bytes are not an IPv4/IPv6 packet WinDivert's parser accepts.
    BadPacket,
    /// `addr.ipv6` disagrees with the packet's IP version.
    VersionMismatch {
        /// The packet's IP version.
        packet: u8,
        /// The address's `ipv6` flag.
        address_ipv6: bool,
    },
    /// A packet was given for a FLOW or SOCKET address (WinDivert requires none).
    UnexpectedPacket,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::LayerMismatch { filter, address } => write!(
                f,
                "the filter is for the {filter} layer but the address is for {address}"
            ),
            EvalError::BadPacket => f.write_str("the bytes are not a valid IPv4/IPv6 packet"),
            EvalError::VersionMismatch {
                packet,
                address_ipv6,
            } => write!(
                f,
                "the packet is IPv{packet} but the address says ipv6 = {address_ipv6}"
            ),
            EvalError::UnexpectedPacket => f.write_str("FLOW and SOCKET events carry no packet"),
        }
    }
}

impl std::error::Error for EvalError {}

/// Where a value comes from, resolved for the filter's layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    Never,
    Zero,
    Event,
    Timestamp,
    Outbound,
    Inbound,
    Loopback,
    Impostor,
    IfIdx,
    SubIfIdx,
    Length,
    Fragment,
    Random8,
    Random16,
    Random32,
    Protocol,
    HasIp,
    HasIpv6,
    HasIcmp,
    HasIcmpv6,
    HasTcp,
    HasUdp,
    IpHdrLength,
    IpTos,
    IpLength,
    IpId,
    IpDf,
    IpMf,
    IpFragOff,
    IpTtl,
    IpProtocol,
    IpChecksum,
    IpSrcAddr,
    IpDstAddr,
    Ipv6TrafficClass,
    Ipv6FlowLabel,
    Ipv6Length,
    Ipv6NextHdr,
    Ipv6HopLimit,
    Ipv6SrcAddr,
    Ipv6DstAddr,
    IcmpType,
    IcmpCode,
    IcmpChecksum,
    IcmpBody,
    Icmpv6Type,
    Icmpv6Code,
    Icmpv6Checksum,
    Icmpv6Body,
    TcpSrcPort,
    TcpDstPort,
    TcpSeqNum,
    TcpAckNum,
    TcpHdrLength,
    TcpUrg,
    TcpAck,
    TcpPsh,
    TcpRst,
    TcpSyn,
    TcpFin,
    TcpWindow,
    TcpChecksum,
    TcpUrgPtr,
    TcpPayloadLength,
    UdpSrcPort,
    UdpDstPort,
    UdpLength,
    UdpChecksum,
    UdpPayloadLength,
    NetLocalAddr,
    NetRemoteAddr,
    NetLocalPort,
    NetRemotePort,
    Packet8,
    Packet16,
    Packet32,
    TcpPayload8,
    TcpPayload16,
    TcpPayload32,
    UdpPayload8,
    UdpPayload16,
    UdpPayload32,
    FlowIp,
    FlowIpv6,
    FlowIcmp,
    FlowIcmpv6,
    FlowTcp,
    FlowUdp,
    FlowProtocol,
    FlowLocalAddr,
    FlowRemoteAddr,
    FlowLocalPort,
    FlowRemotePort,
    FlowProcessId,
    EndpointId,
    ParentEndpointId,
    ReflectProcessId,
    ReflectLayer,
    ReflectPriority,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Region {
    Packet,
    Tcp,
    Udp,
}

impl Load {
    fn resolve(field: Field, layer: Layer) -> Load {
        use Field as F;
        let net = layer.is_network();
        let fs = matches!(layer, Layer::Flow | Layer::Socket);
        if !field.valid_for(layer) {
            return Load::Never;
        }
        match field {
            F::Zero => Load::Zero,
            F::Event => Load::Event,
            F::Timestamp => Load::Timestamp,
            F::Outbound => Load::Outbound,
            F::Inbound => Load::Inbound,
            F::Loopback => Load::Loopback,
            F::Impostor => Load::Impostor,
            F::IfIdx => Load::IfIdx,
            F::SubIfIdx => Load::SubIfIdx,
            F::Length => Load::Length,
            F::Fragment => Load::Fragment,
            F::Random8 => Load::Random8,
            F::Random16 => Load::Random16,
            F::Random32 => Load::Random32,
            F::Ip if net => Load::HasIp,
            F::Ipv6 if net => Load::HasIpv6,
            F::Icmp if net => Load::HasIcmp,
            F::Icmpv6 if net => Load::HasIcmpv6,
            F::Tcp if net => Load::HasTcp,
            F::Udp if net => Load::HasUdp,
            F::Ip if fs => Load::FlowIp,
            F::Ipv6 if fs => Load::FlowIpv6,
            F::Icmp if fs => Load::FlowIcmp,
            F::Icmpv6 if fs => Load::FlowIcmpv6,
            F::Tcp if fs => Load::FlowTcp,
            F::Udp if fs => Load::FlowUdp,
            F::Protocol if net => Load::Protocol,
            F::Protocol if fs => Load::FlowProtocol,
            F::LocalAddr if net => Load::NetLocalAddr,
            F::RemoteAddr if net => Load::NetRemoteAddr,
            F::LocalPort if net => Load::NetLocalPort,
            F::RemotePort if net => Load::NetRemotePort,
            F::LocalAddr if fs => Load::FlowLocalAddr,
            F::RemoteAddr if fs => Load::FlowRemoteAddr,
            F::LocalPort if fs => Load::FlowLocalPort,
            F::RemotePort if fs => Load::FlowRemotePort,
            F::ProcessId if fs => Load::FlowProcessId,
            F::ProcessId => Load::ReflectProcessId,
            F::EndpointId => Load::EndpointId,
            F::ParentEndpointId => Load::ParentEndpointId,
            F::Layer => Load::ReflectLayer,
            F::Priority => Load::ReflectPriority,
            F::IpHdrLength => Load::IpHdrLength,
            F::IpTos => Load::IpTos,
            F::IpLength => Load::IpLength,
            F::IpId => Load::IpId,
            F::IpDf => Load::IpDf,
            F::IpMf => Load::IpMf,
            F::IpFragOff => Load::IpFragOff,
            F::IpTtl => Load::IpTtl,
            F::IpProtocol => Load::IpProtocol,
            F::IpChecksum => Load::IpChecksum,
            F::IpSrcAddr => Load::IpSrcAddr,
            F::IpDstAddr => Load::IpDstAddr,
            F::Ipv6TrafficClass => Load::Ipv6TrafficClass,
            F::Ipv6FlowLabel => Load::Ipv6FlowLabel,
            F::Ipv6Length => Load::Ipv6Length,
            F::Ipv6NextHdr => Load::Ipv6NextHdr,
            F::Ipv6HopLimit => Load::Ipv6HopLimit,
            F::Ipv6SrcAddr => Load::Ipv6SrcAddr,
            F::Ipv6DstAddr => Load::Ipv6DstAddr,
            F::IcmpType => Load::IcmpType,
            F::IcmpCode => Load::IcmpCode,
            F::IcmpChecksum => Load::IcmpChecksum,
            F::IcmpBody => Load::IcmpBody,
            F::Icmpv6Type => Load::Icmpv6Type,
            F::Icmpv6Code => Load::Icmpv6Code,
            F::Icmpv6Checksum => Load::Icmpv6Checksum,
            F::Icmpv6Body => Load::Icmpv6Body,
            F::TcpSrcPort => Load::TcpSrcPort,
            F::TcpDstPort => Load::TcpDstPort,
            F::TcpSeqNum => Load::TcpSeqNum,
            F::TcpAckNum => Load::TcpAckNum,
            F::TcpHdrLength => Load::TcpHdrLength,
            F::TcpUrg => Load::TcpUrg,
            F::TcpAck => Load::TcpAck,
            F::TcpPsh => Load::TcpPsh,
            F::TcpRst => Load::TcpRst,
            F::TcpSyn => Load::TcpSyn,
            F::TcpFin => Load::TcpFin,
            F::TcpWindow => Load::TcpWindow,
            F::TcpChecksum => Load::TcpChecksum,
            F::TcpUrgPtr => Load::TcpUrgPtr,
            F::TcpPayloadLength => Load::TcpPayloadLength,
            F::UdpSrcPort => Load::UdpSrcPort,
            F::UdpDstPort => Load::UdpDstPort,
            F::UdpLength => Load::UdpLength,
            F::UdpChecksum => Load::UdpChecksum,
            F::UdpPayloadLength => Load::UdpPayloadLength,
            F::Packet => Load::Packet8,
            F::Packet16 => Load::Packet16,
            F::Packet32 => Load::Packet32,
            F::TcpPayload => Load::TcpPayload8,
            F::TcpPayload16 => Load::TcpPayload16,
            F::TcpPayload32 => Load::TcpPayload32,
            F::UdpPayload => Load::UdpPayload8,
            F::UdpPayload16 => Load::UdpPayload16,
            F::UdpPayload32 => Load::UdpPayload32,
            _ => Load::Never,
        }
    }

    /// Loads whose value may not fit an `i64`: the 128-bit addresses and the 64-bit
    /// endpoint ids, compared as unsigned 128-bit values.
    fn is_wide(self) -> bool {
        matches!(
            self,
            Load::IpSrcAddr
                | Load::IpDstAddr
                | Load::Ipv6SrcAddr
                | Load::Ipv6DstAddr
                | Load::NetLocalAddr
                | Load::NetRemoteAddr
                | Load::FlowLocalAddr
                | Load::FlowRemoteAddr
                | Load::EndpointId
                | Load::ParentEndpointId
        )
    }
}

const ACCEPT: u16 = 0xFFFE;
const REJECT: u16 = 0xFFFF;

/// One test, precomputed: the value `v` passes when `lo <= v <= lo + span` (unsigned
/// arithmetic), XOR `neg`. Every operator, and the constants outside the field's domain
/// (which make a test "true whenever the field exists" or "always false"), reduce to this.
#[derive(Debug, Clone, Copy)]
struct Insn {
    load: Load,
    /// The value is an address or endpoint id: use [`Program::wide`].
    wide: bool,
    neg: bool,
    succ: u16,
    fail: u16,
    /// Array byte index.
    index: i32,
    lo: i64,
    span: u64,
}

/// A filter program ready to evaluate.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    insns: Box<[Insn]>,
    /// `(lo, span)` of the wide tests, by instruction index (empty when there are none; other
    /// instructions' entries are unused).
    wide: Box<[(u128, u128)]>,
}

/// Builds a [`Program`] one test at a time.
struct ProgramBuilder {
    n: usize,
    layer: Layer,
    insns: Vec<Insn>,
    wide: Vec<(u128, u128)>,
}

impl ProgramBuilder {
    /// A builder for a program of `n` tests.
    fn new(n: usize, layer: Layer) -> ProgramBuilder {
        ProgramBuilder {
            n,
            layer,
            insns: Vec::with_capacity(n),
            wide: Vec::new(),
        }
    }

    /// Add the next test. A jump that does not go forward within the `n` tests is REJECT.
    fn push(&mut self, t: &Test) {
        let i = self.insns.len();
        let n = self.n;
        let target = |j: Jump| match j {
            Jump::Accept => ACCEPT,
            Jump::Reject => REJECT,
            Jump::Test(k) if usize::from(k) > i && usize::from(k) < n => k,
            Jump::Test(_) => REJECT,
        };
        let load = Load::resolve(t.field, self.layer);
        let is_wide = load.is_wide();
        let (lo, span, neg) = if is_wide {
            let (lo, span, neg) = wide_test(t.op, t.value);
            if self.wide.capacity() == 0 {
                // One allocation, of its final size (see `finish`).
                self.wide.reserve_exact(n.max(i + 1));
            }
            self.wide.resize(i, (0, 0));
            self.wide.push((lo, span));
            (0, 0, neg)
        } else {
            narrow_test(t.op, t.value)
        };
        self.insns.push(Insn {
            load,
            wide: is_wide,
            neg,
            succ: target(t.success),
            fail: target(t.failure),
            index: t.index,
            lo,
            span,
        });
    }

    fn finish(self) -> Program {
        debug_assert_eq!(self.insns.len(), self.n);
        let mut wide = self.wide;
        if !wide.is_empty() {
            // Padded to the program length, so that the slice keeps its allocation.
            wide.resize(wide.capacity().max(self.insns.len()), (0, 0));
        }
        Program {
            insns: self.insns.into_boxed_slice(),
            wide: wide.into_boxed_slice(),
        }
    }
}

impl TestSink for ProgramBuilder {
    fn count(&mut self, n: usize) {
        self.n = n;
        self.insns.reserve_exact(n);
    }
    fn emit(&mut self, t: Test) {
        self.push(&t);
    }
}

/// The interval form of `x op k` for `x` in `[dmin, dmax]` (all as `i128`, with `k` already
/// clamped into `i128`): `(lo, hi, neg)`, where `None` is the empty set.
fn interval(op: Op, k: i128, dmin: i128, dmax: i128) -> (Option<(i128, i128)>, bool) {
    let eq = (dmin <= k && k <= dmax).then_some((k, k));
    match op {
        Op::Eq => (eq, false),
        Op::Neq => (eq, true),
        Op::Lt => ((k > dmin).then(|| (dmin, (k - 1).min(dmax))), false),
        Op::Le => ((k >= dmin).then(|| (dmin, k.min(dmax))), false),
        Op::Gt => ((k < dmax).then(|| ((k + 1).max(dmin), dmax)), false),
        Op::Ge => ((k <= dmax).then(|| (k.max(dmin), dmax)), false),
    }
}

fn clamp_i128(v: Value) -> i128 {
    if v.neg {
        if v.mag > i128::MAX as u128 {
            i128::MIN
        } else {
            -(v.mag as i128)
        }
    } else {
        v.mag.min(i128::MAX as u128) as i128
    }
}

/// `(lo, span, neg)` for a narrow (`i64`) field.
fn narrow_test(op: Op, k: Value) -> (i64, u64, bool) {
    let (set, neg) = interval(
        op,
        clamp_i128(k),
        i128::from(i64::MIN),
        i128::from(i64::MAX),
    );
    match set {
        Some((lo, hi)) => (lo as i64, (hi - lo) as u64, neg),
        None => (0, u64::MAX, !neg),
    }
}

/// `(lo, span, neg)` for a wide (unsigned 128-bit) field.
fn wide_test(op: Op, k: Value) -> (u128, u128, bool) {
    const MAX: u128 = u128::MAX;
    let mut neg = false;
    let set: Option<(u128, u128)> = if k.neg && k.mag != 0 {
        // Every value is greater than a negative constant.
        match op {
            Op::Eq | Op::Lt | Op::Le => None,
            Op::Neq => {
                neg = true;
                None
            }
            Op::Gt | Op::Ge => Some((0, MAX)),
        }
    } else {
        let m = k.mag;
        match op {
            Op::Eq => Some((m, m)),
            Op::Neq => {
                neg = true;
                Some((m, m))
            }
            Op::Lt => m.checked_sub(1).map(|h| (0, h)),
            Op::Le => Some((0, m)),
            Op::Gt => m.checked_add(1).map(|l| (l, MAX)),
            Op::Ge => Some((m, MAX)),
        }
    };
    match set {
        Some((lo, hi)) => (lo, hi - lo, neg),
        None => (0, MAX, !neg),
    }
}

impl Program {
    /// Build the program of `obj` (ideally optimised) for `layer`. A jump that does not go
    /// forward is treated as REJECT, so evaluation always terminates.
    pub(crate) fn new(obj: &Object, layer: Layer) -> Program {
        let mut b = ProgramBuilder::new(obj.tests.len(), layer);
        for t in &obj.tests {
            b.push(t);
        }
        b.finish()
    }

    /// The program of `obj` optimised ([`crate::filter::compile::optimize`]), without
    /// building the optimised object.
    pub(crate) fn optimized(obj: &Object, layer: Layer) -> Program {
        let mut b = ProgramBuilder::new(0, layer);
        match optimize_with(&obj.tests, &mut b) {
            Optimized::Tests => b.finish(),
            Optimized::Constant(c) => Program::new(&Object::constant(c), layer),
            Optimized::Unchanged => Program::new(obj, layer),
        }
    }

    /// Run the program.
    #[inline]
    pub(crate) fn run(&self, pkt: Option<&ParsedPacket<'_>>, addr: &Address) -> bool {
        let mut ctx = Ctx {
            pkt,
            addr,
            hash: None,
        };
        let mut pc = 0usize;
        loop {
            let Some(insn) = self.insns.get(pc) else {
                return false;
            };
            let ok = if !insn.wide {
                match ctx.load_num(insn) {
                    Some(v) => (v.wrapping_sub(insn.lo) as u64 <= insn.span) != insn.neg,
                    None => false,
                }
            } else {
                match (ctx.load_wide(insn.load), self.wide.get(pc)) {
                    (Some(v), Some(&(lo, span))) => (v.wrapping_sub(lo) <= span) != insn.neg,
                    _ => false,
                }
            };
            let next = if ok { insn.succ } else { insn.fail };
            match next {
                ACCEPT => return true,
                REJECT => return false,
                n => pc = usize::from(n),
            }
        }
    }
}

struct Ctx<'p, 'a> {
    pkt: Option<&'p ParsedPacket<'p>>,
    addr: &'a Address,
    hash: Option<u64>,
}

#[inline]
fn byte(b: &[u8], o: usize) -> Option<u8> {
    b.get(o).copied()
}

#[inline]
fn be16(b: &[u8], o: usize) -> Option<u16> {
    let s: [u8; 2] = b.get(o..)?.get(..2)?.try_into().ok()?;
    Some(u16::from_be_bytes(s))
}

#[inline]
fn be32(b: &[u8], o: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(o..)?.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(s))
}

/// `byte`, `be16` and `be32` at `off` past a header that starts at `o` in `b`, widened.
#[inline]
fn byte_at((b, o): (&[u8], usize), off: usize) -> Option<i64> {
    byte(b, o + off).map(i64::from)
}

#[inline]
fn be16_at((b, o): (&[u8], usize), off: usize) -> Option<i64> {
    be16(b, o + off).map(i64::from)
}

#[inline]
fn be32_at((b, o): (&[u8], usize), off: usize) -> Option<i64> {
    be32(b, o + off).map(i64::from)
}

#[inline]
fn be128(b: &[u8], o: usize) -> Option<u128> {
    let s: [u8; 16] = b.get(o..)?.get(..16)?.try_into().ok()?;
    Some(u128::from_be_bytes(s))
}

const V4_MAPPED: u128 = 0xFFFF_0000_0000;

fn is_v4_mapped(a: u128) -> bool {
    a >> 32 == 0xFFFF
}

impl Ctx<'_, '_> {
    #[inline]
    fn ip(&self) -> Option<&[u8]> {
        let p = self.pkt?;
        (p.version == 4).then_some(p.bytes)
    }

    #[inline]
    fn ipv6(&self) -> Option<&[u8]> {
        let p = self.pkt?;
        (p.version == 6).then_some(p.bytes)
    }

    /// The TCP header's offset, if there is one.
    #[inline]
    fn tcp(&self) -> Option<(&[u8], usize)> {
        let p = self.pkt?;
        match p.transport {
            Transport::Tcp { .. } => Some((p.bytes, p.transport_offset)),
            _ => None,
        }
    }

    #[inline]
    fn udp(&self) -> Option<(&[u8], usize)> {
        let p = self.pkt?;
        match p.transport {
            Transport::Udp => Some((p.bytes, p.transport_offset)),
            _ => None,
        }
    }

    #[inline]
    fn icmp(&self, v6: bool) -> Option<(&[u8], usize)> {
        let p = self.pkt?;
        match (p.transport, v6) {
            (Transport::Icmp, false) | (Transport::Icmpv6, true) => {
                Some((p.bytes, p.transport_offset))
            }
            _ => None,
        }
    }

    /// The ports of a TCP or UDP packet, or the ICMP type as "port" (WinDivert's quirk).
    /// Returns (source side, destination side) where ICMP gives (type, type).
    fn ports(&self) -> Option<(u16, u16, bool)> {
        let p = self.pkt?;
        let o = p.transport_offset;
        match p.transport {
            Transport::Tcp { .. } | Transport::Udp => {
                Some((be16(p.bytes, o)?, be16(p.bytes, o + 2)?, false))
            }
            Transport::Icmp | Transport::Icmpv6 => {
                let t = u16::from(byte(p.bytes, o)?);
                Some((t, t, true))
            }
            Transport::None => None,
        }
    }

    fn hash(&mut self) -> Option<u64> {
        if let Some(h) = self.hash {
            return Some(h);
        }
        let p = self.pkt?;
        let h =
            crate::packet::hash_packet(p.bytes, self.addr.timestamp as u64) | 0xFF00_0000_0000_0000;
        self.hash = Some(h);
        Some(h)
    }

    fn flow_is_v4(&self) -> Option<bool> {
        let f = self.addr.flow_data()?;
        let local = u128::from(f.local_addr);
        Some(if local == 0 {
            is_v4_mapped(u128::from(f.remote_addr))
        } else {
            is_v4_mapped(local)
        })
    }

    #[inline]
    fn tcp_flag(&self, mask: u8) -> Option<i64> {
        let (b, o) = self.tcp()?;
        Some(i64::from(byte(b, o + 13)? & mask != 0))
    }

    #[inline]
    fn load_num(&mut self, insn: &Insn) -> Option<i64> {
        let a = self.addr;
        let v: i64 = match insn.load {
            Load::Never => return None,
            Load::Zero => 0,
            Load::Event => i64::from(a.event as u8),
            Load::Timestamp => a.timestamp,
            Load::Outbound => i64::from(a.outbound),
            Load::Inbound => i64::from(!a.outbound),
            Load::Loopback => i64::from(a.loopback),
            Load::Impostor => i64::from(a.impostor),
            Load::IfIdx => i64::from(a.network_data()?.if_idx),
            Load::SubIfIdx => i64::from(a.network_data()?.sub_if_idx),
            Load::Length => self.pkt?.bytes.len() as i64,
            Load::Fragment => i64::from(self.pkt?.fragment),
            Load::Random8 => ((self.hash()? >> 48) & 0xFF) as i64,
            Load::Random16 => ((self.hash()? >> 32) & 0xFFFF) as i64,
            Load::Random32 => (self.hash()? & 0xFFFF_FFFF) as i64,
            Load::Protocol => i64::from(self.pkt?.protocol),
            Load::HasIp => i64::from(self.pkt?.version == 4),
            Load::HasIpv6 => i64::from(self.pkt?.version == 6),
            Load::HasIcmp => i64::from(self.pkt?.transport == Transport::Icmp),
            Load::HasIcmpv6 => i64::from(self.pkt?.transport == Transport::Icmpv6),
            Load::HasTcp => i64::from(matches!(self.pkt?.transport, Transport::Tcp { .. })),
            Load::HasUdp => i64::from(self.pkt?.transport == Transport::Udp),
            Load::IpHdrLength => i64::from(byte(self.ip()?, 0)? & 0x0F),
            Load::IpTos => i64::from(byte(self.ip()?, 1)?),
            Load::IpLength => i64::from(be16(self.ip()?, 2)?),
            Load::IpId => i64::from(be16(self.ip()?, 4)?),
            Load::IpDf => i64::from((byte(self.ip()?, 6)? >> 6) & 1),
            Load::IpMf => i64::from((byte(self.ip()?, 6)? >> 5) & 1),
            Load::IpFragOff => i64::from(be16(self.ip()?, 6)? & 0x1FFF),
            Load::IpTtl => i64::from(byte(self.ip()?, 8)?),
            Load::IpProtocol => i64::from(byte(self.ip()?, 9)?),
            Load::IpChecksum => i64::from(be16(self.ip()?, 10)?),
            Load::Ipv6TrafficClass => i64::from((be16(self.ipv6()?, 0)? >> 4) & 0xFF),
            Load::Ipv6FlowLabel => i64::from(be32(self.ipv6()?, 0)? & 0xF_FFFF),
            Load::Ipv6Length => i64::from(be16(self.ipv6()?, 4)?),
            Load::Ipv6NextHdr => i64::from(byte(self.ipv6()?, 6)?),
            Load::Ipv6HopLimit => i64::from(byte(self.ipv6()?, 7)?),
            Load::IcmpType => byte_at(self.icmp(false)?, 0)?,
            Load::IcmpCode => byte_at(self.icmp(false)?, 1)?,
            Load::IcmpChecksum => be16_at(self.icmp(false)?, 2)?,
            Load::IcmpBody => be32_at(self.icmp(false)?, 4)?,
            Load::Icmpv6Type => byte_at(self.icmp(true)?, 0)?,
            Load::Icmpv6Code => byte_at(self.icmp(true)?, 1)?,
            Load::Icmpv6Checksum => be16_at(self.icmp(true)?, 2)?,
            Load::Icmpv6Body => be32_at(self.icmp(true)?, 4)?,
            Load::TcpSrcPort => be16_at(self.tcp()?, 0)?,
            Load::TcpDstPort => be16_at(self.tcp()?, 2)?,
            Load::TcpSeqNum => be32_at(self.tcp()?, 4)?,
            Load::TcpAckNum => be32_at(self.tcp()?, 8)?,
            Load::TcpHdrLength => byte_at(self.tcp()?, 12)? >> 4,
            Load::TcpUrg => self.tcp_flag(0x20)?,
            Load::TcpAck => self.tcp_flag(0x10)?,
            Load::TcpPsh => self.tcp_flag(0x08)?,
            Load::TcpRst => self.tcp_flag(0x04)?,
            Load::TcpSyn => self.tcp_flag(0x02)?,
            Load::TcpFin => self.tcp_flag(0x01)?,
            Load::TcpWindow => be16_at(self.tcp()?, 14)?,
            Load::TcpChecksum => be16_at(self.tcp()?, 16)?,
            Load::TcpUrgPtr => be16_at(self.tcp()?, 18)?,
            Load::TcpPayloadLength => {
                self.tcp()?;
                self.pkt?.payload_len as i64
            }
            Load::UdpSrcPort => be16_at(self.udp()?, 0)?,
            Load::UdpDstPort => be16_at(self.udp()?, 2)?,
            Load::UdpLength => be16_at(self.udp()?, 4)?,
            Load::UdpChecksum => be16_at(self.udp()?, 6)?,
            Load::UdpPayloadLength => {
                self.udp()?;
                self.pkt?.payload_len as i64
            }
            Load::NetLocalPort | Load::NetRemotePort => {
                self.pkt?;
                let local = insn.load == Load::NetLocalPort;
                match self.ports() {
                    None => 0,
                    Some((src, dst, icmp)) => {
                        // Outbound: local = source. ICMP: the type on the sending side.
                        let src_side = local == a.outbound;
                        i64::from(match (icmp, src_side) {
                            (false, true) => src,
                            (false, false) => dst,
                            (true, true) => src,
                            (true, false) => 0,
                        })
                    }
                }
            }
            Load::Packet8 => i64::from(self.array(Region::Packet, 1, insn.index)?),
            Load::Packet16 => i64::from(self.array(Region::Packet, 2, insn.index)?),
            Load::Packet32 => i64::from(self.array(Region::Packet, 4, insn.index)?),
            Load::TcpPayload8 => i64::from(self.array(Region::Tcp, 1, insn.index)?),
            Load::TcpPayload16 => i64::from(self.array(Region::Tcp, 2, insn.index)?),
            Load::TcpPayload32 => i64::from(self.array(Region::Tcp, 4, insn.index)?),
            Load::UdpPayload8 => i64::from(self.array(Region::Udp, 1, insn.index)?),
            Load::UdpPayload16 => i64::from(self.array(Region::Udp, 2, insn.index)?),
            Load::UdpPayload32 => i64::from(self.array(Region::Udp, 4, insn.index)?),
            Load::FlowIp => i64::from(self.flow_is_v4()?),
            Load::FlowIpv6 => i64::from(!self.flow_is_v4()?),
            Load::FlowIcmp => {
                let v4 = self.flow_is_v4()?;
                i64::from(v4 && a.flow_data()?.protocol == 1)
            }
            Load::FlowIcmpv6 => {
                let v4 = self.flow_is_v4()?;
                i64::from(!v4 && a.flow_data()?.protocol == 58)
            }
            Load::FlowTcp => i64::from(a.flow_data()?.protocol == 6),
            Load::FlowUdp => i64::from(a.flow_data()?.protocol == 17),
            Load::FlowProtocol => i64::from(a.flow_data()?.protocol),
            Load::FlowLocalPort => i64::from(a.flow_data()?.local_port),
            Load::FlowRemotePort => i64::from(a.flow_data()?.remote_port),
            Load::FlowProcessId => i64::from(a.flow_data()?.process_id),
            Load::ReflectProcessId => i64::from(a.reflect_data()?.process_id),
            Load::ReflectLayer => i64::from(a.reflect_data()?.layer as u8),
            Load::ReflectPriority => i64::from(a.reflect_data()?.priority),
            // Wide values are handled by `load_wide`.
            Load::EndpointId
            | Load::ParentEndpointId
            | Load::IpSrcAddr
            | Load::IpDstAddr
            | Load::Ipv6SrcAddr
            | Load::Ipv6DstAddr
            | Load::NetLocalAddr
            | Load::NetRemoteAddr
            | Load::FlowLocalAddr
            | Load::FlowRemoteAddr => return None,
        };
        Some(v)
    }

    fn array(&self, region: Region, size: u8, index: i32) -> Option<u32> {
        let p = self.pkt?;
        let (min, max) = match region {
            Region::Packet => (0, p.bytes.len()),
            Region::Tcp if matches!(p.transport, Transport::Tcp { .. }) => {
                (p.header_len, p.header_len.checked_add(p.payload_len)?)
            }
            Region::Udp if p.transport == Transport::Udp => {
                (p.header_len, p.header_len.checked_add(p.payload_len)?)
            }
            _ => return None,
        };
        let size = usize::from(size);
        let off = if index < 0 {
            max.checked_sub(index.unsigned_abs() as usize)?
        } else {
            min.checked_add(index as usize)?
        };
        if off < min || off > max.checked_sub(size)? {
            return None;
        }
        match size {
            1 => byte(p.bytes, off).map(u32::from),
            2 => be16(p.bytes, off).map(u32::from),
            _ => be32(p.bytes, off),
        }
    }

    #[inline]
    fn load_wide(&self, load: Load) -> Option<u128> {
        let a = self.addr;
        match load {
            Load::IpSrcAddr => Some(V4_MAPPED | u128::from(be32(self.ip()?, 12)?)),
            Load::IpDstAddr => Some(V4_MAPPED | u128::from(be32(self.ip()?, 16)?)),
            Load::Ipv6SrcAddr => be128(self.ipv6()?, 8),
            Load::Ipv6DstAddr => be128(self.ipv6()?, 24),
            Load::NetLocalAddr | Load::NetRemoteAddr => {
                let p = self.pkt?;
                // Outbound: local = source.
                let src_side = (load == Load::NetLocalAddr) == a.outbound;
                match p.version {
                    4 => {
                        let o = if src_side { 12 } else { 16 };
                        Some(V4_MAPPED | u128::from(be32(p.bytes, o)?))
                    }
                    6 => be128(p.bytes, if src_side { 8 } else { 24 }),
                    _ => Some(0),
                }
            }
            Load::FlowLocalAddr => Some(u128::from(a.flow_data()?.local_addr)),
            Load::FlowRemoteAddr => Some(u128::from(a.flow_data()?.remote_addr)),
            Load::EndpointId => Some(u128::from(a.flow_data()?.endpoint_id)),
            Load::ParentEndpointId => Some(u128::from(a.flow_data()?.parent_endpoint_id)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{FlowData, LayerData, ReflectData};
    use crate::filter::compile::compile_text;
    use crate::types::{Event, Flags};
    use std::net::Ipv6Addr;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    // The vectors' packets.
    const ICMP4: &str = "4500005412344000400100000a0000010808080808003cd20d5600018ba6605400000000f9080a0000000000101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637";
    const UDP6_EXT: &str = "60000000002d006400000000000000000000000000000001000000000000000000000000000000013c000000000000003c0000000000000011000000000000001234aaaa0015eff448656c6c6f20576f726c642101";
    const TCP6_SYN: &str = "6000000000280640123456780001000000000000aabbccdd00000000000000000000000000000001c37e0017e1d7c8aa00000000a002aaaac35e00000204ffc40402080affff91860000000001030307";

    fn eval_net(filter: &str, bytes: &[u8], outbound: bool) -> bool {
        let obj = compile_text(filter, Layer::Network).unwrap();
        let prog = Program::new(&obj, Layer::Network);
        let pkt = crate::packet::parse(bytes).unwrap();
        let mut addr = Address::network(outbound);
        addr.ipv6 = pkt.version == 6;
        prog.run(Some(&pkt), &addr)
    }

    #[test]
    fn header_absent_is_false_for_every_operator() {
        let p = hex(ICMP4);
        for op in ["==", "!=", "<", "<=", ">", ">="] {
            assert!(!eval_net(&format!("tcp.DstPort {op} 80"), &p, true), "{op}");
            assert!(
                !eval_net(&format!("ipv6.SrcAddr {op} ::1"), &p, true),
                "{op}"
            );
        }
        assert!(!eval_net("not tcp.Syn", &p, true));
        assert!(eval_net("not tcp", &p, true));
        assert!(eval_net("(tcp.DstPort == 80? false: true)", &p, true));
    }

    #[test]
    fn icmp_type_as_port() {
        let p = hex(ICMP4);
        assert!(eval_net("localPort == 8 and remotePort == 0", &p, true));
        assert!(eval_net("localPort == 0 and remotePort == 8", &p, false));
        assert!(eval_net(
            "localAddr == 10.0.0.1 and remoteAddr == 8.8.8.8",
            &p,
            true
        ));
        assert!(eval_net(
            "localAddr == 8.8.8.8 and remoteAddr == 10.0.0.1",
            &p,
            false
        ));
    }

    #[test]
    fn ipv6_fields() {
        let p = hex(TCP6_SYN);
        assert!(eval_net(
            "localAddr == 1234:5678:1::aabb:ccdd && remoteAddr == ::1 && localPort == 50046",
            &p,
            true
        ));
        assert!(eval_net(
            "remotePort == 50046 and localAddr == ::1",
            &p,
            false
        ));
        let mut p = p;
        p[1] = 0x01;
        p[2] = 0x23;
        p[3] = 0x45;
        assert!(eval_net("ipv6.FlowLabel == 0x12345", &p, true));
        assert!(eval_net("ipv6.TrafficClass == 0", &p, true));
        p[0] = 0x6A;
        p[1] = 0xB1;
        assert!(eval_net(
            "ipv6.TrafficClass == 0xAB and ipv6.FlowLabel == 0x12345",
            &p,
            true
        ));
    }

    #[test]
    fn arrays_and_payloads() {
        let p = hex(UDP6_EXT);
        assert!(eval_net("udp.Payload16[-1] == 0x2101", &p, true));
        assert!(eval_net("udp.Payload[0] == 0x48", &p, true));
        assert!(eval_net("udp.Payload32[0b] == 0x48656c6c", &p, true));
        assert!(!eval_net("udp.Payload[13] >= 0", &p, true));
        assert!(eval_net("udp.Payload[12] >= 0", &p, true));
        assert!(eval_net("udp.Payload[-13] == 0x48", &p, true));
        assert!(!eval_net("udp.Payload[-14] >= 0", &p, true));
        assert!(!eval_net("tcp.Payload[0] >= 0", &p, true));
        assert!(!eval_net("packet[1000] >= 0", &p, true));
        assert!(eval_net(
            "packet[84] >= 0 and (packet[85] >= 0? false: true)",
            &p,
            true
        ));
        assert!(eval_net("packet32[-1] == 0x6c642101", &p, true));
        assert!(eval_net("length == 85 and protocol == 17", &p, true));
    }

    #[test]
    fn random_is_deterministic_and_lazy() {
        let p = hex(ICMP4);
        let a = eval_net("random8 < 128", &p, true);
        assert_eq!(a, eval_net("random8 < 128", &p, true));
        assert!(eval_net(
            "random8 >= 0 and random16 <= 65535 and random32 >= 0",
            &p,
            true
        ));
    }

    fn flow_addr(local: &str, remote: &str, proto: u8, event: Event, layer: Layer) -> Address {
        let fd = FlowData {
            endpoint_id: 0x1_0000_0001,
            parent_endpoint_id: 7,
            process_id: 4242,
            local_addr: local.parse::<Ipv6Addr>().unwrap(),
            remote_addr: remote.parse::<Ipv6Addr>().unwrap(),
            local_port: 5555,
            remote_port: 443,
            protocol: proto,
        };
        Address {
            timestamp: -5,
            layer,
            event,
            sniffed: true,
            outbound: true,
            loopback: false,
            impostor: false,
            ipv6: local.contains('.'),
            ip_checksum: false,
            tcp_checksum: false,
            udp_checksum: false,
            data: if layer == Layer::Flow {
                LayerData::Flow(fd)
            } else {
                LayerData::Socket(fd)
            },
        }
    }

    fn eval_ev(filter: &str, addr: &Address) -> bool {
        let obj = compile_text(filter, addr.layer).unwrap();
        Program::new(&obj, addr.layer).run(None, addr)
    }

    #[test]
    fn flow_and_socket_fields() {
        let v4 = flow_addr(
            "::ffff:10.0.0.1",
            "::ffff:1.1.1.1",
            6,
            Event::FlowEstablished,
            Layer::Flow,
        );
        assert!(eval_ev(
            "ip and not ipv6 and tcp and not udp and not icmp",
            &v4
        ));
        assert!(eval_ev(
            "localAddr == 10.0.0.1 and remoteAddr == 1.1.1.1",
            &v4
        ));
        assert!(eval_ev(
            "localPort == 5555 and remotePort == 443 and protocol == TCP",
            &v4
        ));
        assert!(eval_ev(
            "processId == 4242 and endpointId == 0x100000001",
            &v4
        ));
        assert!(eval_ev(
            "parentEndpointId == 7 and event == ESTABLISHED",
            &v4
        ));
        assert!(eval_ev(
            "timestamp == -5 and timestamp < 0 and outbound",
            &v4
        ));
        let v6 = flow_addr(
            "2001:db8::1",
            "::1",
            58,
            Event::SocketConnect,
            Layer::Socket,
        );
        assert!(eval_ev("ipv6 and not ip and icmpv6 and not icmp", &v6));
        assert!(eval_ev("event == CONNECT and remoteAddr == ::1", &v6));
        let unbound = flow_addr("::", "::ffff:1.2.3.4", 17, Event::SocketBind, Layer::Socket);
        assert!(eval_ev("ip and udp", &unbound));
    }

    #[test]
    fn reflect_fields() {
        let addr = Address {
            timestamp: 99,
            layer: Layer::Reflect,
            event: Event::ReflectOpen,
            sniffed: true,
            outbound: false,
            loopback: false,
            impostor: false,
            ipv6: false,
            ip_checksum: false,
            tcp_checksum: false,
            udp_checksum: false,
            data: LayerData::Reflect(ReflectData {
                timestamp: 1,
                process_id: 77,
                layer: Layer::Socket,
                flags: Flags::RECV_ONLY,
                priority: -300,
            }),
        };
        assert!(eval_ev(
            "layer == SOCKET and priority == -300 and priority < 0",
            &addr
        ));
        assert!(eval_ev(
            "processId == 77 and event == OPEN and timestamp == 99",
            &addr
        ));
        assert!(!eval_ev("priority > -300", &addr));
    }

    #[test]
    fn missing_layer_data_is_false() {
        let mut addr = Address::network(true);
        addr.layer = Layer::Flow;
        assert!(!eval_ev("processId != 1", &addr));
        assert!(!eval_ev("tcp", &addr));
        assert!(!eval_ev("not tcp", &addr));
    }

    #[test]
    fn bad_jumps_terminate() {
        let mut obj = compile_text("tcp and udp", Layer::Network).unwrap();
        obj.tests[1].success = Jump::Test(0);
        let prog = Program::new(&obj, Layer::Network);
        let p = hex(UDP6_EXT);
        let pkt = crate::packet::parse(&p).unwrap();
        assert!(!prog.run(Some(&pkt), &Address::network(true)));
    }
}

/// Property tests: random filters on random packets, checked against a reference evaluation
/// of the unsimplified expression; the optimiser and the filter flags are checked on the
/// way. Also: nothing panics on arbitrary text or bytes.
#[cfg(test)]
mod props {
    use super::*;
    use crate::filter::compile::{compile_text, optimize};
    use crate::filter::{object, Filter, FilterFlags};
    use proptest::prelude::*;

    /// A random filter expression, printed as text.
    #[derive(Debug, Clone)]
    enum G {
        True,
        False,
        Test {
            nots: u8,
            field: Field,
            /// Array index: (negative, number, byte form).
            index: (bool, u32, bool),
            /// `None`: implicit `!= 0`.
            cmp: Option<(Op, bool, u128, u8)>,
        },
        And(Box<G>, Box<G>),
        Or(Box<G>, Box<G>),
        Cond(Box<G>, Box<G>, Box<G>),
    }

    fn op_text(op: Op) -> &'static str {
        match op {
            Op::Eq => "==",
            Op::Neq => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    fn value_text(mag: u128, style: u8) -> String {
        match style % 4 {
            0 => format!("{mag}"),
            1 => format!("{mag:#x}"),
            2 if mag <= 0xFFFF_FFFF => {
                let b = (mag as u32).to_be_bytes();
                format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])
            }
            3 if mag > 0 => {
                let g: Vec<String> = (0..8)
                    .map(|i| format!("{:x}", (mag >> (112 - 16 * i)) as u16))
                    .collect();
                g.join(":")
            }
            _ => format!("{mag}"),
        }
    }

    /// The signed byte offset the parser computes for an index form.
    fn byte_index(field: Field, (neg, n, bytes): (bool, u32, bool)) -> i32 {
        let off = if bytes { n } else { n * field.word_size() };
        if neg {
            -(off as i32)
        } else {
            off as i32
        }
    }

    impl G {
        fn text(&self) -> String {
            match self {
                G::True => "true".into(),
                G::False => "false".into(),
                G::Test {
                    nots,
                    field,
                    index,
                    cmp,
                } => {
                    let mut s = "not ".repeat(usize::from(*nots));
                    s.push_str(field.name());
                    if field.is_array() {
                        let (neg, n, b) = *index;
                        s.push_str(&format!(
                            "[{}{}{}]",
                            if neg { "-" } else { "" },
                            n,
                            if b { "b" } else { "" }
                        ));
                    }
                    if let Some((op, neg, mag, style)) = cmp {
                        let v = value_text(*mag, *style);
                        let v = if *neg && !v.contains('.') && !v.contains(':') {
                            format!("-{v}")
                        } else {
                            v
                        };
                        s.push_str(&format!(" {} {v}", op_text(*op)));
                    }
                    s
                }
                G::And(a, b) => format!("({} and {})", a.text(), b.text()),
                G::Or(a, b) => format!("({} || {})", a.text(), b.text()),
                // A space before `:`: a 39-character IPv6 literal with a glued `:` would be
                // a 40-character word (too long, as in WinDivert).
                G::Cond(c, t, e) => format!("({}? {} : {})", c.text(), t.text(), e.text()),
            }
        }

        /// The reference result: Boolean logic over single tests, each evaluated without
        /// any simplification.
        fn eval(&self, pkt: &ParsedPacket<'_>, addr: &Address) -> bool {
            match self {
                G::True => true,
                G::False => false,
                G::And(a, b) => a.eval(pkt, addr) && b.eval(pkt, addr),
                G::Or(a, b) => a.eval(pkt, addr) || b.eval(pkt, addr),
                G::Cond(c, t, e) => {
                    if c.eval(pkt, addr) {
                        t.eval(pkt, addr)
                    } else {
                        e.eval(pkt, addr)
                    }
                }
                G::Test {
                    nots,
                    field,
                    index,
                    cmp,
                } => {
                    let not = nots % 2 == 1;
                    let (op, value) = match cmp {
                        None => (if not { Op::Eq } else { Op::Neq }, Value::pos(0)),
                        Some((op, neg, mag, style)) => {
                            let v = value_text(*mag, *style);
                            let neg = *neg && !v.contains('.') && !v.contains(':');
                            let mag = if v.contains('.') {
                                mag | 0xFFFF_0000_0000
                            } else {
                                *mag
                            };
                            let op = if not { op.negate() } else { *op };
                            (
                                op,
                                Value {
                                    neg: neg && mag != 0,
                                    mag,
                                },
                            )
                        }
                    };
                    let index = if field.is_array() {
                        byte_index(*field, *index)
                    } else {
                        0
                    };
                    let obj = Object {
                        tests: vec![crate::filter::Test {
                            field: *field,
                            op,
                            value,
                            index,
                            success: Jump::Accept,
                            failure: Jump::Reject,
                        }],
                    };
                    Program::new(&obj, Layer::Network).run(Some(pkt), addr)
                }
            }
        }
    }

    fn network_fields() -> Vec<Field> {
        Field::ALL
            .iter()
            .copied()
            .filter(|f| f.valid_for(Layer::Network))
            .collect()
    }

    fn arb_index() -> impl Strategy<Value = (bool, u32, bool)> {
        prop_oneof![
            (Just(false), 0u32..120, any::<bool>()),
            (Just(true), 4u32..120, any::<bool>()),
            (Just(false), 16000u32..16383, Just(false)),
        ]
    }

    fn arb_mag() -> impl Strategy<Value = u128> {
        prop_oneof![
            4 => 0u128..300,
            2 => prop::sample::select(vec![
                0u128, 1, 2, 5, 6, 8, 17, 20, 58, 64, 80, 255, 256, 443, 0x1FFF, 0xFFFF,
                0x1_0000, 0xF_FFFF, 0xFFFF_FFFF, 0x1_0000_0000, 65575, u64::MAX as u128,
                0xFFFF_0A00_0001, 0xFFFF_FFFF_FFFF, 1u128 << 64, u128::MAX,
            ]),
            1 => any::<u32>().prop_map(u128::from),
            1 => any::<u128>(),
        ]
    }

    fn arb_test() -> impl Strategy<Value = G> {
        let fields = network_fields();
        (
            0u8..4,
            prop::sample::select(fields),
            arb_index(),
            prop::option::weighted(
                0.8,
                (
                    prop::sample::select(vec![Op::Eq, Op::Neq, Op::Lt, Op::Le, Op::Gt, Op::Ge]),
                    prop::bool::weighted(0.15),
                    arb_mag(),
                    0u8..4,
                ),
            ),
        )
            .prop_map(|(nots, field, index, cmp)| G::Test {
                nots,
                field,
                index,
                cmp,
            })
    }

    fn arb_g() -> impl Strategy<Value = G> {
        let leaf = prop_oneof![
            8 => arb_test(),
            1 => Just(G::True),
            1 => Just(G::False),
        ];
        leaf.prop_recursive(5, 40, 3, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| G::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| G::Or(Box::new(a), Box::new(b))),
                (inner.clone(), inner.clone(), inner).prop_map(|(c, t, e)| G::Cond(
                    Box::new(c),
                    Box::new(t),
                    Box::new(e)
                )),
            ]
        })
    }

    /// A random packet that usually parses: random bytes with the IP version, lengths and
    /// protocol patched in.
    fn arb_packet() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<bool>(),
            prop::sample::select(vec![6u8, 17, 1, 58, 0, 44, 60, 43, 51, 99]),
            prop::collection::vec(any::<u8>(), 20..160),
            0u8..4,
        )
            .prop_map(|(v6, proto, mut b, ihl_extra)| {
                if v6 && b.len() >= 40 {
                    b[0] = 0x60 | (b[0] & 0x0F);
                    let pl = (b.len() - 40) as u16;
                    b[4..6].copy_from_slice(&pl.to_be_bytes());
                    b[6] = proto;
                } else {
                    b[0] = 0x45 + ihl_extra.min(((b.len() - 20) / 4) as u8);
                    let tl = b.len() as u16;
                    b[2..4].copy_from_slice(&tl.to_be_bytes());
                    b[9] = if proto == 58 { 1 } else { proto };
                    if b[6] & 0x80 != 0 {
                        // Mostly unfragmented.
                        b[6] &= 0x40;
                        b[7] = 0;
                    }
                }
                b
            })
    }

    fn arb_addr() -> impl Strategy<Value = Address> {
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<i64>(),
            any::<u32>(),
        )
            .prop_map(|(outbound, loopback, impostor, timestamp, if_idx)| {
                let mut a = Address::network(outbound);
                a.loopback = loopback;
                a.impostor = impostor;
                a.timestamp = timestamp;
                a.data = crate::address::LayerData::Network(crate::address::NetworkData {
                    if_idx,
                    sub_if_idx: if_idx ^ 1,
                });
                a
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)
        ))]

        #[test]
        fn random_filters_agree_with_reference(
            g in arb_g(),
            packets in prop::collection::vec((arb_packet(), arb_addr()), 1..6),
        ) {
            let text = g.text();
            let f = match Filter::compile(&text, Layer::Network) {
                Ok(f) => f,
                Err(e) => {
                    // Only the limits may refuse a generated filter.
                    prop_assert!(
                        matches!(e.kind, crate::filter::ErrorKind::TooLong | crate::filter::ErrorKind::TooDeep),
                        "{text}: {e}"
                    );
                    return Ok(());
                }
            };
            // The compiled object passes the driver's checks and survives the object text.
            prop_assert!(crate::filter::compile::validate_object(f.object(), Layer::Network).is_ok(), "{text}");
            let text_obj = object::encode(f.object());
            let decoded = object::decode(&text_obj, Layer::Network);
            prop_assert_eq!(decoded.as_ref(), Ok(f.object()), "{}", text);
            let plain = Program::new(f.object(), Layer::Network);
            // The decompiled text compiles back to an equivalent filter.
            let formatted = crate::filter::format::format(f.object(), Layer::Network);
            let back = Filter::compile(&formatted, Layer::Network);
            prop_assert!(back.is_ok(), "{} → {}: {:?}", text, formatted, back.err());
            let back = back.map_err(|_| TestCaseError::fail("unreachable"))?;
            let opt = optimize(f.object());
            prop_assert!(opt.tests.len() <= f.object().tests.len());
            for (bytes, mut addr) in packets {
                let Some(pkt) = crate::packet::parse(&bytes) else { continue };
                addr.ipv6 = pkt.version == 6;
                let want = g.eval(&pkt, &addr);
                let got = f.matches(&pkt, &addr);
                prop_assert_eq!(got, want, "{}", text);
                prop_assert_eq!(plain.run(Some(&pkt), &addr), want, "unoptimised: {}", text);
                prop_assert_eq!(back.matches(&pkt, &addr), want, "{} → {}", text, formatted);
                prop_assert_eq!(f.matches_packet(&bytes, &addr), Ok(want));
                if got {
                    let fl = f.flags();
                    let dir = if addr.outbound { FilterFlags::OUTBOUND } else { FilterFlags::INBOUND };
                    let fam = if pkt.version == 4 { FilterFlags::IP } else { FilterFlags::IPV6 };
                    prop_assert!(fl.contains(dir | fam), "flags {} miss a match: {}", fl, text);
                }
            }
        }

        #[test]
        fn text_never_panics(s in "\\PC{0,80}", layer in 0u32..5) {
            let layer = Layer::from_u32(layer).unwrap_or(Layer::Network);
            let _ = Filter::compile(&s, layer);
        }

        #[test]
        fn token_soup_never_panics(
            s in "[a-zA-Z0-9.:_ ()\\[\\]!=<>&|?b@-]{0,120}",
            layer in 0u32..5,
        ) {
            let layer = Layer::from_u32(layer).unwrap_or(Layer::Network);
            let _ = Filter::compile(&s, layer);
            let _ = compile_text(&s, layer);
        }

        #[test]
        fn words_never_panic(
            words in prop::collection::vec(prop::sample::select(vec![
                "tcp", "udp", "ip", "ipv6", "and", "or", "not", "!", "(", ")", "?", ":", "==",
                "!=", "<", ">=", "-", "[", "]", "b", "5b", "0x", "packet", "packet32",
                "tcp.Payload16", "80", "::1", "1.2.3.4", "TCP", "CONNECT", "event", "true",
                "false", "&&", "||", "timestamp", "65575", "65576", "zero",
            ]), 0..40),
            layer in 0u32..5,
        ) {
            let layer = Layer::from_u32(layer).unwrap_or(Layer::Network);
            let _ = Filter::compile(&words.join(" "), layer);
        }

        #[test]
        fn bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), g in arb_g()) {
            if let Ok(f) = Filter::compile(&g.text(), Layer::Network) {
                let addr = Address::network(true);
                let _ = f.matches_packet(&bytes, &addr);
                if let Some(pkt) = crate::packet::parse(&bytes) {
                    let _ = f.matches(&pkt, &addr);
                }
                let _ = f.matches_event(&addr);
            }
        }
    }
}

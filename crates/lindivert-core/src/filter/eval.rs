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

use super::fields::Field;
use super::ir::{Jump, Object, Op, Value};
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
            EvalError::UnexpectedPacket => {
                f.write_str("FLOW and SOCKET events carry no packet")
            }
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
    TcpFlag(u8),
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
    Array(Region, u8),
    FlowIp,
    FlowIpv6,
    FlowIcmp,
    FlowIcmpv6,
    FlowProtoIs(u8),
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
            F::Tcp if fs => Load::FlowProtoIs(6),
            F::Udp if fs => Load::FlowProtoIs(17),
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
            F::TcpUrg => Load::TcpFlag(0x20),
            F::TcpAck => Load::TcpFlag(0x10),
            F::TcpPsh => Load::TcpFlag(0x08),
            F::TcpRst => Load::TcpFlag(0x04),
            F::TcpSyn => Load::TcpFlag(0x02),
            F::TcpFin => Load::TcpFlag(0x01),
            F::TcpWindow => Load::TcpWindow,
            F::TcpChecksum => Load::TcpChecksum,
            F::TcpUrgPtr => Load::TcpUrgPtr,
            F::TcpPayloadLength => Load::TcpPayloadLength,
            F::UdpSrcPort => Load::UdpSrcPort,
            F::UdpDstPort => Load::UdpDstPort,
            F::UdpLength => Load::UdpLength,
            F::UdpChecksum => Load::UdpChecksum,
            F::UdpPayloadLength => Load::UdpPayloadLength,
            F::Packet => Load::Array(Region::Packet, 1),
            F::Packet16 => Load::Array(Region::Packet, 2),
            F::Packet32 => Load::Array(Region::Packet, 4),
            F::TcpPayload => Load::Array(Region::Tcp, 1),
            F::TcpPayload16 => Load::Array(Region::Tcp, 2),
            F::TcpPayload32 => Load::Array(Region::Tcp, 4),
            F::UdpPayload => Load::Array(Region::Udp, 1),
            F::UdpPayload16 => Load::Array(Region::Udp, 2),
            F::UdpPayload32 => Load::Array(Region::Udp, 4),
            _ => Load::Never,
        }
    }

    /// Loads whose value is a 128-bit address (compared unsigned against the constant).
    fn is_addr(self) -> bool {
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
        )
    }
}

const ACCEPT: u16 = 0xFFFE;
const REJECT: u16 = 0xFFFF;

#[derive(Debug, Clone, Copy)]
struct Insn {
    load: Load,
    op: Op,
    /// Array byte index.
    index: i32,
    /// The constant clamped to `i128` (exact for every non-address field, whose values lie
    /// well inside the `i128` range).
    k: i128,
    /// Address constant: `None` when negative (every address is greater).
    ka: Option<u128>,
    succ: u16,
    fail: u16,
}

/// A filter program ready to evaluate.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    insns: Box<[Insn]>,
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

impl Program {
    /// Build the program of `obj` (ideally optimised) for `layer`. A jump that does not go
    /// forward is treated as REJECT, so evaluation always terminates.
    pub(crate) fn new(obj: &Object, layer: Layer) -> Program {
        let n = obj.tests.len();
        let insns = obj
            .tests
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let target = |j: Jump| match j {
                    Jump::Accept => ACCEPT,
                    Jump::Reject => REJECT,
                    Jump::Test(k) if usize::from(k) > i && usize::from(k) < n => k,
                    Jump::Test(_) => REJECT,
                };
                Insn {
                    load: Load::resolve(t.field, layer),
                    op: t.op,
                    index: t.index,
                    k: clamp_i128(t.value),
                    ka: if t.value.neg && t.value.mag != 0 {
                        None
                    } else {
                        Some(t.value.mag)
                    },
                    succ: target(t.success),
                    fail: target(t.failure),
                }
            })
            .collect();
        Program { insns }
    }

    /// Run the program.
    #[inline]
    pub(crate) fn run(&self, pkt: Option<&ParsedPacket<'_>>, addr: &Address) -> bool {
        let ctx = Ctx {
            pkt,
            addr,
            hash: None,
        };
        self.run_ctx(ctx)
    }

    #[inline]
    fn run_ctx(&self, mut ctx: Ctx<'_, '_>) -> bool {
        let mut pc = 0usize;
        loop {
            let Some(insn) = self.insns.get(pc) else {
                return false;
            };
            let ok = if insn.load.is_addr() {
                match ctx.load_addr(insn.load) {
                    Some(v) => cmp_addr(v, insn),
                    None => false,
                }
            } else {
                match ctx.load_num(insn) {
                    Some(v) => cmp_num(v, insn.op, insn.k),
                    None => false,
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

#[inline]
fn cmp_num(v: i128, op: Op, k: i128) -> bool {
    match op {
        Op::Eq => v == k,
        Op::Neq => v != k,
        Op::Lt => v < k,
        Op::Le => v <= k,
        Op::Gt => v > k,
        Op::Ge => v >= k,
    }
}

#[inline]
fn cmp_addr(v: u128, insn: &Insn) -> bool {
    use core::cmp::Ordering;
    let ord = match insn.ka {
        Some(k) => v.cmp(&k),
        None => Ordering::Greater,
    };
    match insn.op {
        Op::Eq => ord == Ordering::Equal,
        Op::Neq => ord != Ordering::Equal,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
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
        let h = super::shim::hash_packet(p.bytes, self.addr.timestamp as u64)
            | 0xFF00_0000_0000_0000;
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
    fn load_num(&mut self, insn: &Insn) -> Option<i128> {
        let a = self.addr;
        let v: i128 = match insn.load {
            Load::Never => return None,
            Load::Zero => 0,
            Load::Event => i128::from(a.event as u8),
            Load::Timestamp => i128::from(a.timestamp),
            Load::Outbound => i128::from(a.outbound),
            Load::Inbound => i128::from(!a.outbound),
            Load::Loopback => i128::from(a.loopback),
            Load::Impostor => i128::from(a.impostor),
            Load::IfIdx => i128::from(a.network_data()?.if_idx),
            Load::SubIfIdx => i128::from(a.network_data()?.sub_if_idx),
            Load::Length => self.pkt?.bytes.len() as i128,
            Load::Fragment => i128::from(self.pkt?.fragment),
            Load::Random8 => i128::from((self.hash()? >> 48) & 0xFF),
            Load::Random16 => i128::from((self.hash()? >> 32) & 0xFFFF),
            Load::Random32 => i128::from(self.hash()? & 0xFFFF_FFFF),
            Load::Protocol => i128::from(self.pkt?.protocol),
            Load::HasIp => i128::from(self.pkt?.version == 4),
            Load::HasIpv6 => i128::from(self.pkt?.version == 6),
            Load::HasIcmp => i128::from(self.pkt?.transport == Transport::Icmp),
            Load::HasIcmpv6 => i128::from(self.pkt?.transport == Transport::Icmpv6),
            Load::HasTcp => i128::from(matches!(self.pkt?.transport, Transport::Tcp { .. })),
            Load::HasUdp => i128::from(self.pkt?.transport == Transport::Udp),
            Load::IpHdrLength => i128::from(byte(self.ip()?, 0)? & 0x0F),
            Load::IpTos => i128::from(byte(self.ip()?, 1)?),
            Load::IpLength => i128::from(be16(self.ip()?, 2)?),
            Load::IpId => i128::from(be16(self.ip()?, 4)?),
            Load::IpDf => i128::from((byte(self.ip()?, 6)? >> 6) & 1),
            Load::IpMf => i128::from((byte(self.ip()?, 6)? >> 5) & 1),
            Load::IpFragOff => i128::from(be16(self.ip()?, 6)? & 0x1FFF),
            Load::IpTtl => i128::from(byte(self.ip()?, 8)?),
            Load::IpProtocol => i128::from(byte(self.ip()?, 9)?),
            Load::IpChecksum => i128::from(be16(self.ip()?, 10)?),
            Load::Ipv6TrafficClass => i128::from((be16(self.ipv6()?, 0)? >> 4) & 0xFF),
            Load::Ipv6FlowLabel => i128::from(be32(self.ipv6()?, 0)? & 0xF_FFFF),
            Load::Ipv6Length => i128::from(be16(self.ipv6()?, 4)?),
            Load::Ipv6NextHdr => i128::from(byte(self.ipv6()?, 6)?),
            Load::Ipv6HopLimit => i128::from(byte(self.ipv6()?, 7)?),
            Load::IcmpType => {
                let (b, o) = self.icmp(false)?;
                i128::from(byte(b, o)?)
            }
            Load::IcmpCode => {
                let (b, o) = self.icmp(false)?;
                i128::from(byte(b, o + 1)?)
            }
            Load::IcmpChecksum => {
                let (b, o) = self.icmp(false)?;
                i128::from(be16(b, o + 2)?)
            }
            Load::IcmpBody => {
                let (b, o) = self.icmp(false)?;
                i128::from(be32(b, o + 4)?)
            }
            Load::Icmpv6Type => {
                let (b, o) = self.icmp(true)?;
                i128::from(byte(b, o)?)
            }
            Load::Icmpv6Code => {
                let (b, o) = self.icmp(true)?;
                i128::from(byte(b, o + 1)?)
            }
            Load::Icmpv6Checksum => {
                let (b, o) = self.icmp(true)?;
                i128::from(be16(b, o + 2)?)
            }
            Load::Icmpv6Body => {
                let (b, o) = self.icmp(true)?;
                i128::from(be32(b, o + 4)?)
            }
            Load::TcpSrcPort => {
                let (b, o) = self.tcp()?;
                i128::from(be16(b, o)?)
            }
            Load::TcpDstPort => {
                let (b, o) = self.tcp()?;
                i128::from(be16(b, o + 2)?)
            }
            Load::TcpSeqNum => {
                let (b, o) = self.tcp()?;
                i128::from(be32(b, o + 4)?)
            }
            Load::TcpAckNum => {
                let (b, o) = self.tcp()?;
                i128::from(be32(b, o + 8)?)
            }
            Load::TcpHdrLength => {
                let (b, o) = self.tcp()?;
                i128::from(byte(b, o + 12)? >> 4)
            }
            Load::TcpFlag(m) => {
                let (b, o) = self.tcp()?;
                i128::from(byte(b, o + 13)? & m != 0)
            }
            Load::TcpWindow => {
                let (b, o) = self.tcp()?;
                i128::from(be16(b, o + 14)?)
            }
            Load::TcpChecksum => {
                let (b, o) = self.tcp()?;
                i128::from(be16(b, o + 16)?)
            }
            Load::TcpUrgPtr => {
                let (b, o) = self.tcp()?;
                i128::from(be16(b, o + 18)?)
            }
            Load::TcpPayloadLength => {
                self.tcp()?;
                self.pkt?.payload_len as i128
            }
            Load::UdpSrcPort => {
                let (b, o) = self.udp()?;
                i128::from(be16(b, o)?)
            }
            Load::UdpDstPort => {
                let (b, o) = self.udp()?;
                i128::from(be16(b, o + 2)?)
            }
            Load::UdpLength => {
                let (b, o) = self.udp()?;
                i128::from(be16(b, o + 4)?)
            }
            Load::UdpChecksum => {
                let (b, o) = self.udp()?;
                i128::from(be16(b, o + 6)?)
            }
            Load::UdpPayloadLength => {
                self.udp()?;
                self.pkt?.payload_len as i128
            }
            Load::NetLocalPort | Load::NetRemotePort => {
                self.pkt?;
                let local = insn.load == Load::NetLocalPort;
                match self.ports() {
                    None => 0,
                    Some((src, dst, icmp)) => {
                        // Outbound: local = source. ICMP: the type on the sending side.
                        let src_side = local == a.outbound;
                        i128::from(match (icmp, src_side) {
                            (false, true) => src,
                            (false, false) => dst,
                            (true, true) => src,
                            (true, false) => 0,
                        })
                    }
                }
            }
            Load::Array(region, size) => i128::from(self.array(region, size, insn.index)?),
            Load::FlowIp => i128::from(self.flow_is_v4()?),
            Load::FlowIpv6 => i128::from(!self.flow_is_v4()?),
            Load::FlowIcmp => {
                let v4 = self.flow_is_v4()?;
                i128::from(v4 && a.flow_data()?.protocol == 1)
            }
            Load::FlowIcmpv6 => {
                let v4 = self.flow_is_v4()?;
                i128::from(!v4 && a.flow_data()?.protocol == 58)
            }
            Load::FlowProtoIs(p) => i128::from(a.flow_data()?.protocol == p),
            Load::FlowProtocol => i128::from(a.flow_data()?.protocol),
            Load::FlowLocalPort => i128::from(a.flow_data()?.local_port),
            Load::FlowRemotePort => i128::from(a.flow_data()?.remote_port),
            Load::FlowProcessId => i128::from(a.flow_data()?.process_id),
            Load::EndpointId => i128::from(a.flow_data()?.endpoint_id),
            Load::ParentEndpointId => i128::from(a.flow_data()?.parent_endpoint_id),
            Load::ReflectProcessId => i128::from(a.reflect_data()?.process_id),
            Load::ReflectLayer => i128::from(a.reflect_data()?.layer as u8),
            Load::ReflectPriority => i128::from(a.reflect_data()?.priority),
            // Addresses are handled by `load_addr`.
            Load::IpSrcAddr
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
    fn load_addr(&self, load: Load) -> Option<u128> {
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
        let pkt = crate::filter::shim::parse(bytes).unwrap();
        let mut addr = Address::network(outbound);
        addr.ipv6 = pkt.version == 6;
        prog.run(Some(&pkt), &addr)
    }

    #[test]
    fn header_absent_is_false_for_every_operator() {
        let p = hex(ICMP4);
        for op in ["==", "!=", "<", "<=", ">", ">="] {
            assert!(!eval_net(&format!("tcp.DstPort {op} 80"), &p, true), "{op}");
            assert!(!eval_net(&format!("ipv6.SrcAddr {op} ::1"), &p, true), "{op}");
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
        assert!(eval_net("localAddr == 10.0.0.1 and remoteAddr == 8.8.8.8", &p, true));
        assert!(eval_net("localAddr == 8.8.8.8 and remoteAddr == 10.0.0.1", &p, false));
    }

    #[test]
    fn ipv6_fields() {
        let p = hex(TCP6_SYN);
        assert!(eval_net(
            "localAddr == 1234:5678:1::aabb:ccdd && remoteAddr == ::1 && localPort == 50046",
            &p,
            true
        ));
        assert!(eval_net("remotePort == 50046 and localAddr == ::1", &p, false));
        let mut p = p;
        p[1] = 0x01;
        p[2] = 0x23;
        p[3] = 0x45;
        assert!(eval_net("ipv6.FlowLabel == 0x12345", &p, true));
        assert!(eval_net("ipv6.TrafficClass == 0", &p, true));
        p[0] = 0x6A;
        p[1] = 0xB1;
        assert!(eval_net("ipv6.TrafficClass == 0xAB and ipv6.FlowLabel == 0x12345", &p, true));
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
        assert!(eval_net("packet[84] >= 0 and (packet[85] >= 0? false: true)", &p, true));
        assert!(eval_net("packet32[-1] == 0x6c642101", &p, true));
        assert!(eval_net("length == 85 and protocol == 17", &p, true));
    }

    #[test]
    fn random_is_deterministic_and_lazy() {
        let p = hex(ICMP4);
        let a = eval_net("random8 < 128", &p, true);
        assert_eq!(a, eval_net("random8 < 128", &p, true));
        assert!(eval_net("random8 >= 0 and random16 <= 65535 and random32 >= 0", &p, true));
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
        let v4 = flow_addr("::ffff:10.0.0.1", "::ffff:1.1.1.1", 6, Event::FlowEstablished, Layer::Flow);
        assert!(eval_ev("ip and not ipv6 and tcp and not udp and not icmp", &v4));
        assert!(eval_ev("localAddr == 10.0.0.1 and remoteAddr == 1.1.1.1", &v4));
        assert!(eval_ev("localPort == 5555 and remotePort == 443 and protocol == TCP", &v4));
        assert!(eval_ev("processId == 4242 and endpointId == 0x100000001", &v4));
        assert!(eval_ev("parentEndpointId == 7 and event == ESTABLISHED", &v4));
        assert!(eval_ev("timestamp == -5 and timestamp < 0 and outbound", &v4));
        let v6 = flow_addr("2001:db8::1", "::1", 58, Event::SocketConnect, Layer::Socket);
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
        assert!(eval_ev("layer == SOCKET and priority == -300 and priority < 0", &addr));
        assert!(eval_ev("processId == 77 and event == OPEN and timestamp == 99", &addr));
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
        let pkt = crate::filter::shim::parse(&p).unwrap();
        assert!(!prog.run(Some(&pkt), &Address::network(true)));
    }
}

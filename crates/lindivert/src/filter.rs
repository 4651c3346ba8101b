//! A handle's compiled filter: the exact check (`lindivert_core::filter::Filter`, the
//! complete WinDivert language) and what the rule builder derives from its object for the
//! in-kernel prefilter:
//! * the hooks it needs (the core's filter flags);
//! * native `meta l4proto` / transport port matches that every matching packet satisfies
//!   (cheap, and they work where the compat `bpf` match is missing);
//! * the per-hook eBPF socket-filter program (`lindivert_core::filter::ebpf`), exact for
//!   everything the kernel can see.
//!
//! The native hints come from a forward reachability walk over the object's decision DAG
//! with some facts fixed (the transport protocol, a port value): a fact decides the tests it
//! determines, every other test may go either way, and a hint holds when ACCEPT is
//! unreachable without it.

use crate::nftables::{Hook, Match};
use lindivert_core::filter::compile::compare;
use lindivert_core::filter::ebpf::{prefilter_program, Direction, Insn, PrefilterContext};
use lindivert_core::filter::fields::Header;
use lindivert_core::filter::Value;
use lindivert_core::filter::{Field, Filter, FilterError, FilterFlags, Jump, Object, Op, Test};
use lindivert_core::{Address, Layer};

/// A compiled filter for one layer.
#[derive(Debug, Clone)]
pub struct PacketFilter {
    exact: Filter,
}

/// Transport protocols the native prefilter distinguishes (`None` = any other).
const PROTOCOLS: [u8; 4] = [6, 17, 1, 58];

impl PacketFilter {
    /// Compile `text` (filter text or `@WinDiv_…` object text) for `layer`.
    pub fn compile(text: &str, layer: Layer) -> Result<PacketFilter, FilterError> {
        Ok(PacketFilter {
            exact: Filter::compile(text, layer)?,
        })
    }

    /// The core filter.
    pub fn exact(&self) -> &Filter {
        &self.exact
    }

    /// The layer it was compiled for.
    pub fn layer(&self) -> Layer {
        self.exact.layer()
    }

    /// Whether the packet (`bytes`, exactly its IP length) with this address matches.
    pub fn matches(&self, bytes: &[u8], addr: &Address) -> bool {
        match lindivert_core::packet::parse(bytes) {
            Some(p) => self.exact.matches(&p, addr),
            None => false,
        }
    }

    /// Whether some packet in this direction could match (to choose hooks).
    pub fn may_match_direction(&self, outbound: bool) -> bool {
        self.exact.flags().contains(if outbound {
            FilterFlags::OUTBOUND
        } else {
            FilterFlags::INBOUND
        })
    }

    /// Whether the filter can never match.
    pub fn is_never(&self) -> bool {
        self.exact.constant() == Some(false) || self.exact.flags().is_empty()
    }

    /// Whether the filter matches every packet (no prefilter needed).
    pub fn is_always(&self) -> bool {
        self.exact.constant() == Some(true)
    }

    /// The transport protocols a matching packet can have, or `None` if any.
    pub fn l4_protocols(&self) -> Option<Vec<u8>> {
        let obj = self.exact.object();
        if accept_reachable(obj, |t| protocol_fact(t, None)) {
            return None;
        }
        Some(
            PROTOCOLS
                .into_iter()
                .filter(|&p| accept_reachable(obj, |t| protocol_fact(t, Some(p))))
                .collect(),
        )
    }

    /// A port every matching packet has: `(protocol, offset in the transport header
    /// (0 = source, 2 = destination), port)`.
    pub fn required_port(&self) -> Option<(u8, u32, u16)> {
        let protos = self.l4_protocols()?;
        let [p] = protos[..] else { return None };
        let obj = self.exact.object();
        let candidates = obj.tests.iter().filter_map(|t| {
            let (proto, off) = port_field(t.field)?;
            let v = u16::try_from(t.value.mag).ok().filter(|_| !t.value.neg)?;
            (proto == p && t.op == Op::Eq).then_some((t.field, off, v))
        });
        for (field, off, port) in candidates {
            let other = Value::pos(u128::from(port) + 1);
            let unreachable = !accept_reachable(obj, |t| {
                if t.field == field {
                    // "the port is not `port`": decided for == and != against `port`
                    match t.op {
                        Op::Eq | Op::Neq if t.value == Value::pos(u128::from(port)) => {
                            Some(compare(other, t.op, t.value))
                        }
                        _ => None,
                    }
                } else {
                    protocol_fact(t, Some(p))
                }
            });
            if unreachable {
                return Some((p, off, port));
            }
        }
        None
    }

    /// The native prefilter alternatives (see [`crate::nftables::ChainSpec::prefilter`]).
    pub fn native_prefilter(&self) -> Vec<Vec<Match>> {
        if self.is_never() {
            return vec![vec![Match::L4Proto(255)]]; // reserved protocol: never queued
        }
        if let Some((proto, offset, port)) = self.required_port() {
            return vec![vec![Match::L4Proto(proto), Match::Port { offset, port }]];
        }
        match self.l4_protocols() {
            Some(ps) if ps.is_empty() => vec![vec![Match::L4Proto(255)]],
            Some(ps) => ps.into_iter().map(|p| vec![Match::L4Proto(p)]).collect(),
            None => Vec::new(),
        }
    }

    /// The eBPF prefilter for the chain on `hook` (an `inet` chain: IP version unknown).
    pub fn prefilter_program(&self, hook: Hook) -> Vec<Insn> {
        let (direction, loopback) = match hook {
            Hook::Output => (Direction::Outbound, None),
            // inbound loopback is skipped before the prefilter runs
            Hook::Input => (Direction::Inbound, Some(false)),
            Hook::Forward => (Direction::Forward, Some(false)),
        };
        let ctx = PrefilterContext {
            layer: self.layer(),
            direction,
            ip_version: None,
            loopback,
        };
        prefilter_program(self.exact.object(), ctx)
    }
}

fn port_field(f: Field) -> Option<(u8, u32)> {
    match f {
        Field::TcpSrcPort => Some((6, 0)),
        Field::TcpDstPort => Some((6, 2)),
        Field::UdpSrcPort => Some((17, 0)),
        Field::UdpDstPort => Some((17, 2)),
        _ => None,
    }
}

/// What "the final transport protocol is `p`" (`None`: none of [`PROTOCOLS`]) decides
/// about test `t`.
fn protocol_fact(t: &Test, p: Option<u8>) -> Option<bool> {
    let absent = |t: &Test| Some(compare(Value::pos(0), t.op, t.value));
    let header = |proto: u8| p != Some(proto);
    match t.field {
        Field::Tcp if header(6) => absent(t),
        Field::Udp if header(17) => absent(t),
        Field::Icmp if header(1) => absent(t),
        Field::Icmpv6 if header(58) => absent(t),
        Field::IpProtocol => match p {
            // ip.Protocol is the final protocol of an IPv4 packet; the test is false on IPv6
            Some(p) if !compare(Value::pos(u128::from(p)), t.op, t.value) => Some(false),
            _ => None,
        },
        f => match f.needs() {
            // a test on an absent header is false whatever its operator
            Some(Header::Tcp) if header(6) => Some(false),
            Some(Header::Udp) if header(17) => Some(false),
            Some(Header::Icmp) if header(1) => Some(false),
            Some(Header::Icmpv6) if header(58) => Some(false),
            _ => None,
        },
    }
}

/// Whether ACCEPT is reachable from the entry when `known` decides some tests and every
/// other test may go either way (a forward walk: jumps only go forward).
fn accept_reachable(obj: &Object, known: impl Fn(&Test) -> Option<bool>) -> bool {
    let n = obj.tests.len();
    let mut reach = vec![false; n];
    match reach.first_mut() {
        Some(r) => *r = true,
        None => return true,
    }
    for i in 0..n {
        if !reach[i] {
            continue;
        }
        let t = &obj.tests[i];
        let (a, b) = match known(t) {
            Some(true) => (Some(t.success), None),
            Some(false) => (Some(t.failure), None),
            None => (Some(t.success), Some(t.failure)),
        };
        for j in [a, b].into_iter().flatten() {
            match j {
                Jump::Accept => return true,
                Jump::Reject => {}
                Jump::Test(k) if usize::from(k) > i && usize::from(k) < n => {
                    reach[usize::from(k)] = true
                }
                // malformed (backward or out of range): assume the worst
                Jump::Test(_) => return true,
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> PacketFilter {
        PacketFilter::compile(s, Layer::Network).unwrap()
    }

    #[test]
    fn hints_from_the_object() {
        let a = f("outbound and udp.DstPort == 5000");
        assert!(a.may_match_direction(true) && !a.may_match_direction(false));
        assert_eq!(a.l4_protocols(), Some(vec![17]));
        assert_eq!(a.required_port(), Some((17, 2, 5000)));
        assert_eq!(f("tcp.SrcPort == 80 or udp").required_port(), None);
        assert_eq!(
            f("ip and (tcp.SrcPort == 80 and outbound)").required_port(),
            Some((6, 0, 80))
        );
        assert_eq!(
            f("tcp.DstPort == 80 or tcp.DstPort == 81").required_port(),
            None
        );
        assert_eq!(f("true").l4_protocols(), None);
        assert!(f("true").is_always());
        let g = f("(tcp || udp) && (udp.DstPort == 53 ? false : true)");
        assert_eq!(g.l4_protocols(), Some(vec![6, 17]));
        assert_eq!(g.required_port(), None);
        assert_eq!(f("tcp.Syn").l4_protocols(), Some(vec![6]));
        assert_eq!(f("ip.Protocol == 17").l4_protocols(), None);
        assert_eq!(
            f("icmp or icmpv6.Type == 128").l4_protocols(),
            Some(vec![1, 58])
        );
        assert_eq!(f("not tcp").l4_protocols(), None);
        assert!(f("false").is_never());
        assert_eq!(
            f("false").native_prefilter(),
            vec![vec![Match::L4Proto(255)]]
        );
        assert_eq!(
            f("udp.DstPort == 5555 and udp.Payload[0] == 0x41").native_prefilter(),
            vec![vec![
                Match::L4Proto(17),
                Match::Port {
                    offset: 2,
                    port: 5555
                }
            ]]
        );
        let o = f("outbound and tcp.Syn");
        assert!(o.may_match_direction(true) && !o.may_match_direction(false));
    }

    #[test]
    fn errors_have_positions() {
        let e = PacketFilter::compile("udp and bogus.Field == 1", Layer::Network).unwrap_err();
        assert_eq!(e.pos, 8);
    }
}

//! The user-space exact filter check and the hints the rule builder takes from a filter.
//!
//! The exact check is `lindivert_core::filter::Filter` (the complete WinDivert language).
//! For the in-kernel coarse prefilter (`meta l4proto`) a small three-valued evaluator over a
//! subset of the language (`true`, `false`, `outbound`, `inbound`, `loopback`, `ip`, `ipv6`,
//! `tcp`, `udp`, `icmp`, `icmpv6`, `tcp/udp.SrcPort/DstPort`, `ip.Protocol`, `localPort`,
//! `remotePort`, `protocol`, with `and/or/not` and parentheses) derives which protocols can
//! match; filters outside the subset get no prefilter (every packet of the needed hooks is
//! queued and checked exactly in user space). The eBPF back end replaces this hint.

use crate::pkt::PktInfo;
use lindivert_core::{Address, Layer};

/// A compile error: message and byte position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterSyntaxError {
    /// What is wrong.
    pub message: String,
    /// Byte offset in the filter text.
    pub position: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Outbound,
    Inbound,
    Loopback,
    Ip,
    Ipv6,
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    TcpSrcPort,
    TcpDstPort,
    UdpSrcPort,
    UdpDstPort,
    Protocol,
    LocalPort,
    RemotePort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Const(bool),
    Test(Field, Op, u64),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Num(u64),
    Op(Op),
    And,
    Or,
    Not,
    LParen,
    RParen,
}

fn lex(s: &str) -> Result<Vec<(Tok, usize)>, FilterSyntaxError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let err = |m: &str, p: usize| FilterSyntaxError {
        message: m.to_string(),
        position: p,
    };
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let two = b.get(i..i + 2);
        let tok = match (c, two) {
            (_, Some(b"&&")) => {
                i += 2;
                Tok::And
            }
            (_, Some(b"||")) => {
                i += 2;
                Tok::Or
            }
            (_, Some(b"==")) => {
                i += 2;
                Tok::Op(Op::Eq)
            }
            (_, Some(b"!=")) => {
                i += 2;
                Tok::Op(Op::Ne)
            }
            (_, Some(b"<=")) => {
                i += 2;
                Tok::Op(Op::Le)
            }
            (_, Some(b">=")) => {
                i += 2;
                Tok::Op(Op::Ge)
            }
            (b'=', _) => {
                i += 1;
                Tok::Op(Op::Eq)
            }
            (b'<', _) => {
                i += 1;
                Tok::Op(Op::Lt)
            }
            (b'>', _) => {
                i += 1;
                Tok::Op(Op::Gt)
            }
            (b'!', _) => {
                i += 1;
                Tok::Not
            }
            (b'(', _) => {
                i += 1;
                Tok::LParen
            }
            (b')', _) => {
                i += 1;
                Tok::RParen
            }
            (c, _) if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.')
                {
                    i += 1;
                }
                let w = &s[start..i];
                if w.as_bytes()[0].is_ascii_digit() {
                    let v = if let Some(h) = w.strip_prefix("0x").or(w.strip_prefix("0X")) {
                        u64::from_str_radix(h, 16)
                    } else {
                        w.parse()
                    };
                    Tok::Num(v.map_err(|_| err("Filter expression contains a bad token", start))?)
                } else {
                    match w.to_ascii_lowercase().as_str() {
                        "and" => Tok::And,
                        "or" => Tok::Or,
                        "not" => Tok::Not,
                        _ => Tok::Ident(w.to_string()),
                    }
                }
            }
            _ => return Err(err("Filter expression contains a bad token", start)),
        };
        out.push((tok, start));
    }
    Ok(out)
}

struct Parser<'a> {
    toks: &'a [(Tok, usize)],
    pos: usize,
    end: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }
    fn here(&self) -> usize {
        self.toks.get(self.pos).map(|t| t.1).unwrap_or(self.end)
    }
    fn err(&self, m: &str) -> FilterSyntaxError {
        FilterSyntaxError {
            message: m.to_string(),
            position: self.here(),
        }
    }
    fn or(&mut self) -> Result<Expr, FilterSyntaxError> {
        let mut l = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            let r = self.and()?;
            l = Expr::Or(Box::new(l), Box::new(r));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<Expr, FilterSyntaxError> {
        let mut l = self.unary()?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            let r = self.unary()?;
            l = Expr::And(Box::new(l), Box::new(r));
        }
        Ok(l)
    }
    fn unary(&mut self) -> Result<Expr, FilterSyntaxError> {
        match self.peek() {
            Some(Tok::Not) => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Some(Tok::LParen) => {
                self.pos += 1;
                let e = self.or()?;
                if self.peek() != Some(&Tok::RParen) {
                    return Err(self.err("Filter expression parse error"));
                }
                self.pos += 1;
                Ok(e)
            }
            Some(Tok::Ident(w)) => {
                let w = w.to_ascii_lowercase();
                let at = self.here();
                self.pos += 1;
                let field = match w.as_str() {
                    "true" => return Ok(Expr::Const(true)),
                    "false" => return Ok(Expr::Const(false)),
                    "outbound" => Field::Outbound,
                    "inbound" => Field::Inbound,
                    "loopback" => Field::Loopback,
                    "ip" => Field::Ip,
                    "ipv6" => Field::Ipv6,
                    "tcp" => Field::Tcp,
                    "udp" => Field::Udp,
                    "icmp" => Field::Icmp,
                    "icmpv6" => Field::Icmpv6,
                    "tcp.srcport" => Field::TcpSrcPort,
                    "tcp.dstport" => Field::TcpDstPort,
                    "udp.srcport" => Field::UdpSrcPort,
                    "udp.dstport" => Field::UdpDstPort,
                    "ip.protocol" | "protocol" => Field::Protocol,
                    "localport" => Field::LocalPort,
                    "remoteport" => Field::RemotePort,
                    _ => {
                        return Err(FilterSyntaxError {
                            message: "Filter expression contains a bad token (not supported by the interim filter subset)".into(),
                            position: at,
                        })
                    }
                };
                if let Some(Tok::Op(op)) = self.peek().cloned() {
                    self.pos += 1;
                    match self.peek() {
                        Some(Tok::Num(v)) => {
                            let v = *v;
                            self.pos += 1;
                            Ok(Expr::Test(field, op, v))
                        }
                        _ => Err(self.err("Filter expression parse error")),
                    }
                } else {
                    Ok(Expr::Test(field, Op::Ne, 0))
                }
            }
            _ => Err(self.err("Filter expression parse error")),
        }
    }
}

/// What the evaluator looks at.
#[derive(Debug, Clone, Copy, Default)]
struct View {
    outbound: Option<bool>,
    loopback: Option<bool>,
    v6: Option<bool>,
    proto: Option<u8>,
    sport: Option<u16>,
    dport: Option<u16>,
}

fn field_value(f: Field, v: &View) -> Option<u64> {
    let b = |x: Option<bool>| x.map(|x| x as u64);
    let proto_is = |p: u8| v.proto.map(|x| (x == p) as u64);
    let port = |p: u8, x: Option<u16>| match v.proto {
        Some(q) if q == p => x.map(|x| x as u64),
        Some(_) => Some(0),
        None => None,
    };
    match f {
        Field::Outbound => b(v.outbound),
        Field::Inbound => b(v.outbound.map(|o| !o)),
        Field::Loopback => b(v.loopback),
        Field::Ip => b(v.v6.map(|x| !x)),
        Field::Ipv6 => b(v.v6),
        Field::Tcp => proto_is(6),
        Field::Udp => proto_is(17),
        Field::Icmp => match (v.proto, v.v6) {
            (Some(p), Some(six)) => Some((p == 1 && !six) as u64),
            _ => None,
        },
        Field::Icmpv6 => match (v.proto, v.v6) {
            (Some(p), Some(six)) => Some((p == 58 && six) as u64),
            _ => None,
        },
        Field::TcpSrcPort => port(6, v.sport),
        Field::TcpDstPort => port(6, v.dport),
        Field::UdpSrcPort => port(17, v.sport),
        Field::UdpDstPort => port(17, v.dport),
        Field::Protocol => v.proto.map(|p| p as u64),
        Field::LocalPort | Field::RemotePort => {
            let local = match v.outbound? {
                true => v.sport,
                false => v.dport,
            };
            let remote = match v.outbound? {
                true => v.dport,
                false => v.sport,
            };
            match v.proto {
                Some(6) | Some(17) => {
                    if f == Field::LocalPort {
                        local.map(|x| x as u64)
                    } else {
                        remote.map(|x| x as u64)
                    }
                }
                Some(_) => Some(0),
                None => None,
            }
        }
    }
}

/// Three-valued evaluation: `None` = unknown.
fn eval(e: &Expr, v: &View) -> Option<bool> {
    match e {
        Expr::Const(c) => Some(*c),
        Expr::Test(f, op, k) => {
            let x = field_value(*f, v)?;
            Some(match op {
                Op::Eq => x == *k,
                Op::Ne => x != *k,
                Op::Lt => x < *k,
                Op::Le => x <= *k,
                Op::Gt => x > *k,
                Op::Ge => x >= *k,
            })
        }
        Expr::Not(a) => eval(a, v).map(|x| !x),
        Expr::And(a, b) => match (eval(a, v), eval(b, v)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Expr::Or(a, b) => match (eval(a, v), eval(b, v)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
    }
}

/// A compiled filter for one layer: the exact core filter plus the prefilter hint.
#[derive(Debug, Clone)]
pub struct PacketFilter {
    exact: lindivert_core::filter::Filter,
    hint: Option<Hint>,
}

impl PacketFilter {
    /// Compile `text` for `layer` with the core's compiler.
    pub fn compile(text: &str, layer: Layer) -> Result<PacketFilter, FilterSyntaxError> {
        let exact = lindivert_core::filter::Filter::compile(text, layer).map_err(|e| {
            FilterSyntaxError {
                message: if e.detail.is_empty() {
                    e.kind.message().to_string()
                } else {
                    format!("{}: {}", e.kind.message(), e.detail)
                },
                position: e.pos,
            }
        })?;
        Ok(PacketFilter {
            exact,
            hint: Hint::compile(text, layer).ok(),
        })
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
        use lindivert_core::filter::FilterFlags;
        let f = self.exact.flags();
        let flag = if outbound {
            FilterFlags::OUTBOUND
        } else {
            FilterFlags::INBOUND
        };
        f.contains(flag)
            && self
                .hint
                .as_ref()
                .is_none_or(|h| h.may_match_direction(outbound))
    }

    /// Whether the filter can never match.
    pub fn is_never(&self) -> bool {
        self.exact.constant() == Some(false)
    }

    /// The transport protocols some matching packet can have, or `None` if unknown / any.
    pub fn l4_protocols(&self) -> Option<Vec<u8>> {
        self.hint.as_ref()?.l4_protocols()
    }

    /// A port every matching packet must have: `(protocol, offset in the transport header
    /// (0 = source, 2 = destination), port)`, from a top-level `and` of the filter.
    pub fn required_port(&self) -> Option<(u8, u32, u16)> {
        self.hint.as_ref()?.required_port()
    }
}

/// The subset evaluator used for prefilter hints.
#[derive(Debug, Clone)]
pub struct Hint {
    expr: Expr,
    layer: Layer,
}

impl Hint {
    /// Parse `text` if it lies in the subset.
    pub fn compile(text: &str, layer: Layer) -> Result<Hint, FilterSyntaxError> {
        if text.len() > 16 * 1024 {
            return Err(FilterSyntaxError {
                message: "Filter expression too long".into(),
                position: 0,
            });
        }
        let toks = lex(text)?;
        let mut p = Parser {
            toks: &toks,
            pos: 0,
            end: text.len(),
        };
        let expr = p.or()?;
        if p.pos != toks.len() {
            return Err(p.err("Filter expression parse error"));
        }
        if layer == Layer::NetworkForward {
            let mut uses_dir = false;
            walk(&expr, &mut |f| {
                uses_dir |= matches!(
                    f,
                    Field::Outbound
                        | Field::Inbound
                        | Field::Loopback
                        | Field::LocalPort
                        | Field::RemotePort
                )
            });
            if uses_dir {
                return Err(FilterSyntaxError {
                    message: "Filter expression contains a bad token for layer".into(),
                    position: 0,
                });
            }
        }
        Ok(Hint { expr, layer })
    }

    /// The layer it was parsed for.
    pub fn layer(&self) -> Layer {
        self.layer
    }

    /// Whether the packet with this address matches (subset semantics).
    pub fn matches(&self, p: &PktInfo, addr: &Address) -> bool {
        let v = View {
            outbound: Some(addr.outbound),
            loopback: Some(addr.loopback),
            v6: Some(p.v6),
            proto: Some(p.proto),
            sport: Some(p.sport),
            dport: Some(p.dport),
        };
        eval(&self.expr, &v).unwrap_or(false)
    }

    /// Whether some packet in this direction could match (to choose hooks).
    pub fn may_match_direction(&self, outbound: bool) -> bool {
        let v = View {
            outbound: Some(outbound),
            ..View::default()
        };
        eval(&self.expr, &v) != Some(false)
    }

    /// Whether the filter can never match.
    pub fn is_never(&self) -> bool {
        eval(&self.expr, &View::default()) == Some(false)
            || (!self.may_match_direction(true) && !self.may_match_direction(false))
    }

    /// The transport protocols some matching packet can have, or `None` if any protocol
    /// can match (for the in-kernel `meta l4proto` prefilter).
    pub fn l4_protocols(&self) -> Option<Vec<u8>> {
        // 253 stands for "some other protocol"
        let mut out = Vec::new();
        for p in [6u8, 17, 1, 58, 253] {
            let v = View {
                proto: Some(p),
                ..View::default()
            };
            if eval(&self.expr, &v) != Some(false) {
                if p == 253 {
                    return None;
                }
                out.push(p);
            }
        }
        Some(out)
    }

    /// A port every matching packet must have (see [`PacketFilter::required_port`]).
    pub fn required_port(&self) -> Option<(u8, u32, u16)> {
        fn conjuncts<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
            match e {
                Expr::And(a, b) => {
                    conjuncts(a, out);
                    conjuncts(b, out);
                }
                other => out.push(other),
            }
        }
        let mut cs = Vec::new();
        conjuncts(&self.expr, &mut cs);
        cs.iter().find_map(|c| match c {
            Expr::Test(f, Op::Eq, v) if *v != 0 && *v <= 0xffff => {
                let port = *v as u16;
                match f {
                    Field::TcpSrcPort => Some((6, 0, port)),
                    Field::TcpDstPort => Some((6, 2, port)),
                    Field::UdpSrcPort => Some((17, 0, port)),
                    Field::UdpDstPort => Some((17, 2, port)),
                    _ => None,
                }
            }
            _ => None,
        })
    }
}

fn walk(e: &Expr, f: &mut dyn FnMut(Field)) {
    match e {
        Expr::Const(_) => {}
        Expr::Test(x, _, _) => f(*x),
        Expr::Not(a) => walk(a, f),
        Expr::And(a, b) | Expr::Or(a, b) => {
            walk(a, f);
            walk(b, f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(proto: u8, sport: u16, dport: u16) -> PktInfo {
        PktInfo {
            v6: false,
            ip_len: 40,
            proto,
            l4_off: 20,
            src: [0; 16],
            dst: [0; 16],
            sport,
            dport,
            fragment: false,
            later_fragment: false,
        }
    }

    #[test]
    fn subset_evaluates() {
        let f = Hint::compile("outbound and udp.DstPort == 5000", Layer::Network).unwrap();
        let out = Address::network(true);
        let inb = Address::network(false);
        assert!(f.matches(&info(17, 1, 5000), &out));
        assert!(!f.matches(&info(17, 1, 5000), &inb));
        assert!(!f.matches(&info(6, 1, 5000), &out));
        assert!(f.may_match_direction(true));
        assert!(!f.may_match_direction(false));
        assert_eq!(f.l4_protocols(), Some(vec![17]));
        assert_eq!(f.required_port(), Some((17, 2, 5000)));
        let h = Hint::compile("tcp.SrcPort == 80 or udp", Layer::Network).unwrap();
        assert_eq!(h.required_port(), None);
        let h = Hint::compile("ip and (tcp.SrcPort == 80 and outbound)", Layer::Network).unwrap();
        assert_eq!(h.required_port(), Some((6, 0, 80)));
        let t = Hint::compile("true", Layer::Network).unwrap();
        assert_eq!(t.l4_protocols(), None);
        let g = Hint::compile("(tcp || udp) && !(udp.DstPort = 53)", Layer::Network).unwrap();
        assert!(g.matches(&info(6, 1, 53), &out));
        assert!(!g.matches(&info(17, 1, 53), &out));
        assert_eq!(g.l4_protocols(), Some(vec![6, 17]));
        assert!(Hint::compile("false", Layer::Network).unwrap().is_never());
        let exact = PacketFilter::compile("outbound and tcp.Syn", Layer::Network).unwrap();
        assert!(exact.may_match_direction(true) && !exact.may_match_direction(false));
        assert_eq!(exact.l4_protocols(), None);
        assert!(PacketFilter::compile("false", Layer::Network)
            .unwrap()
            .is_never());
    }

    #[test]
    fn errors_have_positions() {
        let e = Hint::compile("udp and bogus.Field == 1", Layer::Network).unwrap_err();
        assert_eq!(e.position, 8);
        let e = Hint::compile("udp and (tcp", Layer::Network).unwrap_err();
        assert_eq!(e.position, 12);
        let e = Hint::compile("udp $", Layer::Network).unwrap_err();
        assert_eq!(e.position, 4);
        let e = PacketFilter::compile("udp and bogus.Field == 1", Layer::Network).unwrap_err();
        assert_eq!(e.position, 8);
    }
}

//! The eBPF packet prefilter in the kernel (privileged: run as root).
//!
//! Every filter of WinDivert's test vectors (`/work/shared/vectors/...json`, or the file named
//! by `LINDIVERT_VECTORS`) and of the in-tree list below is compiled, turned into a socket
//! filter by `prefilter_program` for several hook contexts, loaded with `BPF_PROG_LOAD` and
//! run on the ten vector packets (plus a few parser edge cases) with `BPF_PROG_TEST_RUN`.
//!
//! Checked for every (filter, packet, context):
//! * the verifier accepts the program;
//! * soundness: for every address consistent with the context (direction, loopback,
//!   impostor, timestamp, interface indexes), if the exact evaluator
//!   (`Filter::matches_packet`) accepts, the prefilter returns non-zero; and the vector's
//!   `expected` result, where the vector's address fits the context;
//! * precision: when the filter only uses fields the context fixes, the prefilter result
//!   equals the exact result;
//! * the user-space interpreter `run_socket_filter` returns what the kernel returned.
//!
//! `BPF_PROG_TEST_RUN` semantics (measured on kernel 6.18): for a SOCKET_FILTER program the
//! kernel builds an skb from the data and calls `eth_type_trans`, which consumes the first
//! 14 bytes, so the program sees `skb->data` at byte 14 and `skb->len` = size − 14, exactly as
//! under the xtables `bpf` match where `skb->data` is the IP header. The tests therefore
//! prefix a fake Ethernet header (EtherType 0x0800 / 0x86dd). A SCHED_CLS program would see
//! the Ethernet header itself (the kernel pushes it back for tc programs).

use std::collections::HashMap;
use std::os::fd::AsFd;

use lindivert::core::filter::ebpf::{
    prefilter_program, run_socket_filter, Direction, Insn, PrefilterContext,
};
use lindivert::core::filter::{Field, Filter, Object};
use lindivert::core::{Address, Layer, LayerData};
use lindivert::sys::bpf::{prog_load, prog_test_run, BpfError, Map, ProgType, BPF_ANY, LICENSE};

/// The ten packets of WinDivert's test suite (as captured: IPv4 checksum filled in).
const VECTOR_PACKETS: [(&str, &str); 10] = [
    ("ipv4_icmp_echo_req", "450000541234400040010e650a0000010808080808003cd20d5600018ba6605400000000f9080a0000000000101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637"),
    ("ipv4_tcp_http_req", "45000209482d40004006a67e0a0a0a0a5db8d877a31a00505338ccc25637b3558018007302a400000101080a002c851b1b7f3a71474554202f20485454502f312e310d0a486f73743a207777772e6578616d706c652e636f6d0d0a436f6e6e656374696f6e3a206b6565702d616c6976650d0a43616368652d436f6e74726f6c3a206d61782d6167653d300d0a4163636570743a20746578742f68746d6c2c6170706c69636174696f6e2f7868746d6c2b786d6c2c6170706c69636174696f6e2f786d6c3b713d302e392c696d6167652f776562702c2a2f2a3b713d302e380d0a557365722d4167656e743a20585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858580d0a4163636570742d456e636f64696e673a20677a69702c6465666c6174652c736463680d0a4163636570742d4c616e67756167653a20656e2d55532c656e3b713d302e380d0a49662d4e6f6e652d4d617463683a2022333333333333333333220d0a49662d4d6f6469666965642d53696e63653a204672692c2030332041756720323031342031333a33333a333320474d540d0a0d0a"),
    ("ipv4_udp_dns_req", "450000392090000049113b180a00000108080404e0450035002522a7170801000001000000000000076578616d706c6503636f6d0000010001"),
    ("ipv6_tcp_syn", "6000000000280640123456780001000000000000aabbccdd00000000000000000000000000000001c37e0017e1d7c8aa00000000a002aaaac35e00000204ffc40402080affff91860000000001030307"),
    ("ipv6_icmpv6_echo_rep", "6000000000403a1f000000000000000000000000000000010000000000000000000000000000000181006ed610720003a4d5695400000000ab7500000000000000112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0011223344556677"),
    ("ipv6_exthdrs_udp", "60000000002d006400000000000000000000000000000001000000000000000000000000000000013c000000000000003c0000000000000011000000000000001234aaaa0015eff448656c6c6f20576f726c642101"),
    ("ipv4_fragemnt_0", "4500001c1234200040012e9d0a0000010808080808003cd20d560001"),
    ("ipv4_fragment_1", "4500004c1234000140014e6c0a000001080808088ba6605400000000f9080a0000000000101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637"),
    ("ipv6_fragment_0", "6000000000202c1f00000000000000000000000000000001000000000000000000000000000000013a000001c7f6ce5381006ed610720003a4d5695400000000ab75000000000000"),
    ("ipv6_fragment_1", "6000000000302c1f00000000000000000000000000000001000000000000000000000000000000013a000018c7f6ce5300112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0011223344556677"),
];

/// Extra packets for the header walk. `true` = the prefilter parses them exactly.
const EXTRA_PACKETS: [(&str, &str, bool); 7] = [
    // IPv4 with 4 bytes of options (IHL 6), UDP 1234 -> 53, payload deadbeef.
    (
        "ipv4_options_udp",
        "460000240001000040110000c0a80102c0a801030101010004d20035000c0000deadbeef",
        true,
    ),
    // IPv6, AH (24 bytes), TCP 80 -> 50000 SYN/ACK, payload "hi".
    (
        "ipv6_ah_tcp",
        "60000000002e334020010db800000000000000000000000120010db8000000000000000000000002\
         0604000000000000000000000000000000000000000000000050c35000000001000000005012ffff\
         000000006869",
        true,
    ),
    // IPv6, routing header, fragment header with offset 0 and M=1, UDP 7 -> 9.
    (
        "ipv6_rh_frag0_udp",
        "60000000001a2b400000000000000000000000000000000100000000000000000000000000000002\
         2c00000000000000110000010000abcd00070009000a00000000",
        true,
    ),
    // IPv6 with nine destination-options headers: more than the prefilter walks.
    (
        "ipv6_nine_ext",
        "6000000000523c400000000000000000000000000000000100000000000000000000000000000002\
         3c000000000000003c000000000000003c000000000000003c000000000000003c00000000000000\
         3c000000000000003c000000000000003c00000000000000110000000000000000070009000a0000\
         0000",
        false,
    ),
    // IPv4 TCP whose data offset (15 words) exceeds the data: header clipped.
    (
        "ipv4_tcp_clipped",
        "4500002c00010000400600000a0000010a000002001600500000000100000000f010ffff0000000001020304",
        true,
    ),
    // IPv4 whose total length (30) is shorter than the buffer (32): left to user space.
    (
        "ipv4_short_total",
        "4500001e0001000040110000c0a80102c0a8010304d20035000c0000deadbeef",
        false,
    ),
    // IPv6 carrying protocol 1 (ICMP, not ICMPv6): no transport header.
    (
        "ipv6_proto1",
        "600000000008014000000000000000000000000000000001000000000000000000000000000000020800f7ff00000000",
        true,
    ),
];

/// In-tree filters: every packet field, arrays at both ends, addresses, unknown fields.
const FILTERS: &[&str] = &[
    "tcp.DstPort == 80",
    "tcp.DstPort == 80 or tcp.SrcPort == 80",
    "udp.SrcPort == 4660 and udp.DstPort == 43690",
    "udp.DstPort == 53 and udp.SrcPort != 53",
    "udp.DstPort == 9 and udp.Length == 12",
    "localPort == 50046 and remotePort == 23",
    "localPort == 53 or remotePort == 53",
    "localPort == 8 or remotePort == 8",
    "localPort == 129 or remotePort == 129",
    "localPort == 0 and remotePort == 0",
    "localAddr == ::1",
    "localAddr == 10.0.0.1 and remoteAddr == 8.8.8.8",
    "remoteAddr == 10.0.0.1",
    "remoteAddr >= 8.8.0.0 and remoteAddr <= 8.8.255.255",
    "localAddr < 1234:5678:1::aabb:ccde and localAddr > 1234:5678:1::aabb:ccdc",
    "protocol == 17",
    "protocol == 6 and not ipv6",
    "protocol == 1",
    "ip.DstAddr >= 8.8.0.0 and ip.DstAddr <= 8.8.255.255",
    "ip.SrcAddr == 0xFFFF0A000001",
    "ip.SrcAddr == 10.0.0.1 or ip.SrcAddr == 10.10.10.10",
    "ip.DstAddr > -1",
    "ip.DstAddr < 0.0.0.0",
    "ipv6.SrcAddr > 1234:5678::",
    "ipv6.SrcAddr < 1234:5678:1::aabb:ccdd",
    "ipv6.SrcAddr <= 1234:5678:1::aabb:ccdd",
    "ipv6.SrcAddr >= 1234:5678:1::aabb:ccdd",
    "ipv6.SrcAddr == ::ffff:10.0.0.1",
    "ipv6.DstAddr == ::1",
    "ipv6.DstAddr != 2001:db8::2",
    "ipv6.FlowLabel == 0",
    "ipv6.FlowLabel == 0x12345",
    "ipv6.TrafficClass == 0 and ipv6.HopLimit >= 31",
    "ipv6.NextHdr == 0 or ipv6.NextHdr == 44",
    "ipv6.Length > 40",
    "icmp.Type == 8 and icmp.Code == 0",
    "icmp.Checksum == 0x3cd2 and icmp.Body == 0x0D560001",
    "icmpv6.Type == 129 and icmpv6.Code == 0",
    "icmpv6.Checksum != 0 and icmpv6.Body == 0x10720003",
    "icmp or icmpv6",
    "not icmp and not icmpv6",
    "tcp.Syn and not tcp.Ack",
    "tcp.Ack and tcp.Psh and not tcp.Fin and not tcp.Rst and not tcp.Urg",
    "tcp.HdrLength == 10 or tcp.HdrLength == 8",
    "tcp.HdrLength == 15",
    "tcp.Window > 1000 and tcp.UrgPtr == 0",
    "tcp.SeqNum > 3789015209 and tcp.AckNum == 0",
    "tcp.Checksum != 0",
    "tcp.PayloadLength > 400",
    "tcp.PayloadLength == 0",
    "udp.PayloadLength == 29 or udp.PayloadLength == 13",
    "udp.Checksum != 0 and udp.Length > 8",
    "tcp.Payload[0] == 0x47",
    "tcp.Payload32[0] == 0x47455420",
    "tcp.Payload16[-1] == 0x0d0a",
    "tcp.Payload[-1b] == 0x0a and tcp.Payload[1b] == 0x45",
    "tcp.Payload[1000] >= 0",
    "tcp.Payload16[0] == 0x6869",
    "udp.Payload[-1b] == 0x01",
    "udp.Payload32[-4b] > 0",
    "udp.Payload16[-1] == 0x2101",
    "udp.Payload32[0] == 0xdeadbeef",
    "udp.Payload[12b] == 0x21",
    "udp.Payload[13b] == 0x21",
    "packet[0] == 0x45",
    "packet32[-4] != 0",
    "packet16[-1] == 0x3637",
    "packet[1000] >= 0",
    "packet[-1000] == 0",
    "packet32[20b] == 0x08003cd2",
    "length > 100",
    "length == 57 or length == 28",
    "ip.TTL < 65 and ip.Protocol == 1",
    "ip.Checksum == 0x0e65",
    "ip.Id == 0x1234 and ip.TOS == 0",
    "ip.DF and not ip.MF",
    "ip.FragOff == 1",
    "ip.HdrLength == 5",
    "ip.HdrLength == 6",
    "ip.Length == 57",
    "fragment",
    "fragment and protocol == 58",
    "not fragment and udp",
    "(random8 < 128? tcp: udp)",
    "random16 > 100 and icmp",
    "random32 == 7",
    "(ifIdx == 5? false: icmp)",
    "subIfIdx == 888 or tcp",
    "impostor or udp",
    "not impostor and icmp",
    "timestamp > 0 or tcp",
    "(timestamp > 0? tcp.DstPort == 80: udp.DstPort == 53)",
    "loopback or ip",
    "(loopback? false: ipv6)",
    "not loopback and tcp",
    "inbound and udp",
    "outbound and (tcp or udp)",
    "(outbound? localPort == 50046: remotePort == 50046)",
    "(inbound? false: true)",
    "event == PACKET and tcp",
    "zero == 0 and udp",
    "true",
    "false",
    "(tcp? tcp.DstPort == 80: true) and (udp? udp.DstPort == 53: true)",
];

const FORWARD_FILTERS: &[&str] = &[
    "tcp.DstPort == 80",
    "ip.DstAddr == 8.8.8.8 and icmp",
    "udp and ipv6.SrcAddr == ::1",
    "(random8 < 10? udp: tcp)",
    "ifIdx == 3 or icmp",
    "packet[0] == 0x60 and length == 80",
];

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u32>().ok());
    assert_eq!(
        euid,
        Some(0),
        "the eBPF prefilter tests load BPF programs and need root (CAP_BPF, CAP_NET_ADMIN); \
         run `cargo test` as root"
    );
}

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    digits
        .chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
        .collect()
}

struct Packet {
    name: String,
    bytes: Vec<u8>,
    /// The prefilter parses it like user space (precision applies).
    exact: bool,
}

fn packets() -> Vec<Packet> {
    let mut v: Vec<Packet> = VECTOR_PACKETS
        .iter()
        .map(|(n, h)| Packet {
            name: n.to_string(),
            bytes: hex(h),
            exact: true,
        })
        .collect();
    for (n, h, exact) in EXTRA_PACKETS {
        v.push(Packet {
            name: n.to_string(),
            bytes: hex(h),
            exact,
        });
    }
    v
}

/// What the test-run skb looks like: a fake Ethernet header, then the IP packet.
fn frame(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    let ethertype: u16 = if ip.first().map(|b| b >> 4) == Some(6) {
        0x86dd
    } else {
        0x0800
    };
    f[12..14].copy_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

// ---- a minimal JSON reader for the vector file ----

#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    Num,
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, k: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(n, _)| n == k).map(|(_, v)| v),
            _ => None,
        }
    }
    fn str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
    fn bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }
    fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => &[],
        }
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn lit(&mut self, l: &str) -> Option<()> {
        self.s[self.i..]
            .starts_with(l.as_bytes())
            .then(|| self.i += l.len())
    }
    fn value(&mut self) -> Option<Json> {
        self.ws();
        match *self.s.get(self.i)? {
            b'n' => self.lit("null").map(|_| Json::Null),
            b't' => self.lit("true").map(|_| Json::Bool(true)),
            b'f' => self.lit("false").map(|_| Json::Bool(false)),
            b'"' => self.string().map(Json::Str),
            b'[' => {
                self.i += 1;
                let mut v = Vec::new();
                loop {
                    self.ws();
                    if self.s.get(self.i) == Some(&b']') {
                        self.i += 1;
                        return Some(Json::Arr(v));
                    }
                    v.push(self.value()?);
                    self.ws();
                    if self.s.get(self.i) == Some(&b',') {
                        self.i += 1;
                    }
                }
            }
            b'{' => {
                self.i += 1;
                let mut v = Vec::new();
                loop {
                    self.ws();
                    if self.s.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Some(Json::Obj(v));
                    }
                    let k = self.string()?;
                    self.ws();
                    self.lit(":")?;
                    v.push((k, self.value()?));
                    self.ws();
                    if self.s.get(self.i) == Some(&b',') {
                        self.i += 1;
                    }
                }
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len() && b"+-.eE0123456789".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                std::str::from_utf8(&self.s[start..self.i])
                    .ok()?
                    .parse()
                    .ok()
                    .map(|_: f64| Json::Num)
            }
        }
    }
    fn string(&mut self) -> Option<String> {
        self.lit("\"")?;
        let mut out = Vec::new();
        loop {
            let c = *self.s.get(self.i)?;
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = *self.s.get(self.i)?;
                    self.i += 1;
                    let ch = match e {
                        b'n' => '\n',
                        b't' => '\t',
                        b'r' => '\r',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'u' => {
                            let h = std::str::from_utf8(self.s.get(self.i..self.i + 4)?).ok()?;
                            self.i += 4;
                            char::from_u32(u32::from_str_radix(h, 16).ok()?).unwrap_or('?')
                        }
                        other => other as char,
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(c),
            }
        }
    }
}

/// One vector: filter text, packet (name or bytes), expected result.
struct Vector {
    filter: String,
    packet: Vec<u8>,
    expected: bool,
}

fn load_vectors(pkts: &[Packet]) -> Option<Vec<Vector>> {
    let path = std::env::var("LINDIVERT_VECTORS").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/vectors/windivert_filter_vectors.json"
        )
        .to_string()
    });
    let text = std::fs::read_to_string(&path).ok()?;
    let json = JsonParser {
        s: text.as_bytes(),
        i: 0,
    }
    .value()?;
    let by_name: HashMap<&str, &Vec<u8>> =
        pkts.iter().map(|p| (p.name.as_str(), &p.bytes)).collect();
    let mut out = Vec::new();
    let derived = json.get("derived_vectors").and_then(|d| d.get("vectors"));
    let all = json
        .get("tests")
        .map(Json::arr)
        .unwrap_or(&[])
        .iter()
        .chain(derived.map(Json::arr).unwrap_or(&[]));
    for t in all {
        if t.get("layer").and_then(Json::str) != Some("NETWORK") {
            continue;
        }
        let (Some(filter), Some(expected)) = (
            t.get("filter").and_then(Json::str),
            t.get("expected").and_then(Json::bool),
        ) else {
            continue;
        };
        let packet = match (
            t.get("packet").and_then(Json::str),
            t.get("packet_hex").and_then(Json::str),
        ) {
            (Some(n), _) => match by_name.get(n) {
                Some(b) => (*b).clone(),
                None => continue,
            },
            (None, Some(h)) => hex(h),
            _ => continue,
        };
        out.push(Vector {
            filter: filter.to_string(),
            packet,
            expected,
        });
    }
    Some(out)
}

// ---- contexts and addresses ----

fn contexts(version: u8) -> Vec<PrefilterContext> {
    let mut out = Vec::new();
    for (dir, lo) in [
        (Direction::Outbound, Some(false)),
        (Direction::Inbound, Some(false)),
        (Direction::Outbound, Some(true)),
        (Direction::Unknown, None),
    ] {
        out.push(PrefilterContext {
            layer: Layer::Network,
            direction: dir,
            ip_version: None,
            loopback: lo,
        });
    }
    out.push(PrefilterContext {
        layer: Layer::Network,
        direction: Direction::Inbound,
        ip_version: Some(version),
        loopback: None,
    });
    out
}

fn forward_context(version: Option<u8>) -> PrefilterContext {
    PrefilterContext {
        layer: Layer::NetworkForward,
        direction: Direction::Forward,
        ip_version: version,
        loopback: None,
    }
}

/// Every address (of a small set) consistent with `ctx`.
fn addresses(ctx: &PrefilterContext, ipv6: bool) -> Vec<Address> {
    let dirs: &[bool] = match ctx.direction {
        Direction::Outbound => &[true],
        Direction::Inbound => &[false],
        _ => &[true, false],
    };
    let loops: Vec<bool> = ctx.loopback.map_or(vec![false, true], |l| vec![l]);
    let mut out = Vec::new();
    for &outbound in dirs {
        for &loopback in &loops {
            for impostor in [false, true] {
                for timestamp in [0i64, 1 << 40, -5, 0x1234_5678] {
                    for (if_idx, sub) in [(0u32, 0u32), (93923, 888), (5, 1)] {
                        let mut a = Address::network(outbound);
                        a.layer = ctx.layer;
                        a.loopback = loopback;
                        a.impostor = impostor;
                        a.timestamp = timestamp;
                        a.ipv6 = ipv6;
                        if let LayerData::Network(n) = &mut a.data {
                            n.if_idx = if_idx;
                            n.sub_if_idx = sub;
                        }
                        out.push(a);
                    }
                }
            }
        }
    }
    out
}

/// Whether every test of `obj` is on a field the context fixes (precision applies).
fn deterministic(obj: &Object, ctx: &PrefilterContext) -> bool {
    obj.tests.iter().all(|t| match t.field {
        Field::IfIdx
        | Field::SubIfIdx
        | Field::Impostor
        | Field::Timestamp
        | Field::Random8
        | Field::Random16
        | Field::Random32 => false,
        Field::Loopback => ctx.loopback.is_some(),
        Field::Inbound
        | Field::Outbound
        | Field::LocalAddr
        | Field::RemoteAddr
        | Field::LocalPort
        | Field::RemotePort => {
            ctx.layer == Layer::Network
                && matches!(ctx.direction, Direction::Outbound | Direction::Inbound)
        }
        _ => true,
    })
}

// ---- the harness ----

#[derive(Default)]
struct Stats {
    runs: usize,
    programs: usize,
    max_insns: usize,
    exact_checks: usize,
    precise: usize,
    may_over_exact: usize,
    compile_errors: usize,
    failures: Vec<String>,
}

struct Harness {
    cache: HashMap<Vec<Insn>, std::os::fd::OwnedFd>,
    log: Vec<u8>,
    stats: Stats,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            cache: HashMap::new(),
            log: vec![0u8; 1 << 22],
            stats: Stats::default(),
        }
    }

    /// Load (once) and run; returns the kernel's answer.
    fn run(&mut self, prog: &[Insn], ip: &[u8], what: &str) -> Option<bool> {
        if !self.cache.contains_key(prog) {
            match prog_load(ProgType::SOCKET_FILTER, prog, LICENSE, &mut self.log) {
                Ok(fd) => {
                    self.stats.programs += 1;
                    self.stats.max_insns = self.stats.max_insns.max(prog.len());
                    self.cache.insert(prog.to_vec(), fd);
                }
                Err(e) => {
                    let msg = e.to_string();
                    let tail: String = msg
                        .lines()
                        .rev()
                        .take(12)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>()
                        .join("\n");
                    self.stats
                        .failures
                        .push(format!("{what}: load failed: {tail}"));
                    return None;
                }
            }
        }
        let fd = self.cache.get(prog)?;
        let (ret, _) = prog_test_run(fd.as_fd(), &frame(ip), 1).expect("BPF_PROG_TEST_RUN");
        self.stats.runs += 1;
        let got = ret != 0;
        match run_socket_filter(prog, ip) {
            Ok(v) if (v != 0) == got => {}
            other => self.stats.failures.push(format!(
                "{what}: interpreter says {other:?}, kernel says {ret}"
            )),
        }
        Some(got)
    }

    fn check(&mut self, f: &Filter, text: &str, pkt: &Packet, ctx: PrefilterContext) {
        let prog = prefilter_program(f.object(), ctx);
        let what = format!("filter {text:?} on {} with {ctx:?}", pkt.name);
        let Some(got) = self.run(&prog, &pkt.bytes, &what) else {
            return;
        };
        let ipv6 = pkt.bytes.first().map(|b| b >> 4) == Some(6);
        if ctx.ip_version.is_some_and(|v| (v == 6) != ipv6) {
            return;
        }
        let mut any = false;
        let mut all = true;
        for addr in addresses(&ctx, ipv6) {
            let Ok(exact) = f.matches_packet(&pkt.bytes, &addr) else {
                continue;
            };
            self.stats.exact_checks += 1;
            any |= exact;
            all &= exact;
            if exact && !got {
                self.stats.failures.push(format!(
                    "UNSOUND: {what}: exact match for {addr:?}, prefilter says no"
                ));
                return;
            }
        }
        if pkt.exact && deterministic(f.object(), &ctx) {
            if any != all {
                self.stats.failures.push(format!(
                    "{what}: filter is not deterministic in this context?"
                ));
            } else if got != any {
                self.stats
                    .failures
                    .push(format!("IMPRECISE: {what}: exact {any}, prefilter {got}"));
            } else {
                self.stats.precise += 1;
            }
        } else if got && !any {
            self.stats.may_over_exact += 1;
        }
    }
}

#[test]
fn prefilter_agrees_with_the_evaluator_in_the_kernel() {
    require_root();
    let pkts = packets();
    let mut h = Harness::new();
    let vectors = load_vectors(&pkts);
    match &vectors {
        Some(v) => eprintln!("{} vectors from the vector file", v.len()),
        None => eprintln!("vector file not found: only in-tree filters"),
    }
    // The vectors: their own packet, and their expected result where the vector's address
    // (outbound, not loopback) fits the context.
    for v in vectors.iter().flatten() {
        let f = match Filter::compile(&v.filter, Layer::Network) {
            Ok(f) => f,
            Err(_) => {
                h.stats.compile_errors += 1;
                continue;
            }
        };
        let pkt = Packet {
            name: "vector packet".into(),
            bytes: v.packet.clone(),
            exact: true,
        };
        let version = v.packet.first().map_or(4, |b| b >> 4);
        for ctx in contexts(version) {
            h.check(&f, &v.filter, &pkt, ctx);
            let fits = ctx.direction != Direction::Inbound && ctx.loopback != Some(true);
            if fits && v.expected {
                let prog = prefilter_program(f.object(), ctx);
                if h.run(&prog, &v.packet, &v.filter) == Some(false) {
                    h.stats.failures.push(format!(
                        "UNSOUND vs vector: {:?} expected true, prefilter false ({ctx:?})",
                        v.filter
                    ));
                }
            }
        }
    }
    // Every filter (vectors' and in-tree) on every packet.
    let mut texts: Vec<String> = FILTERS.iter().map(|s| s.to_string()).collect();
    for v in vectors.iter().flatten() {
        if !texts.contains(&v.filter) {
            texts.push(v.filter.clone());
        }
    }
    for text in &texts {
        let Ok(f) = Filter::compile(text, Layer::Network) else {
            h.stats.compile_errors += 1;
            continue;
        };
        for pkt in &pkts {
            let version = pkt.bytes[0] >> 4;
            for ctx in contexts(version) {
                h.check(&f, text, pkt, ctx);
            }
        }
    }
    for text in FORWARD_FILTERS {
        let f = Filter::compile(text, Layer::NetworkForward).expect("forward filter compiles");
        for pkt in &pkts {
            let version = pkt.bytes[0] >> 4;
            for ctx in [forward_context(None), forward_context(Some(version))] {
                h.check(&f, text, pkt, ctx);
            }
        }
    }
    let s = &h.stats;
    eprintln!(
        "{} filters, {} programs loaded (largest {} insns), {} test runs, {} exact \
         evaluations, {} precise agreements, {} over-approximations, {} compile errors",
        texts.len(),
        s.programs,
        s.max_insns,
        s.runs,
        s.exact_checks,
        s.precise,
        s.may_over_exact,
        s.compile_errors
    );
    if !s.failures.is_empty() {
        for f in s.failures.iter().take(40) {
            eprintln!("{f}");
        }
        panic!("{} failures", s.failures.len());
    }
}

#[test]
fn large_filters_stay_within_verifier_limits() {
    require_root();
    // 64 ports or'ed: a long chain of tests.
    let many: Vec<String> = (0..64)
        .map(|p| format!("tcp.DstPort == {}", 1000 + p))
        .collect();
    // Unknown tests in sequence: the node sets grow.
    let unknown: Vec<String> = (0..24)
        .map(|i| {
            format!(
                "(random8 < {}? udp.DstPort == {}: tcp.SrcPort == {})",
                i * 10,
                i,
                i
            )
        })
        .collect();
    let mixed: Vec<String> = (0..40)
        .map(|i| format!("(ifIdx == {i}? packet[{i}] == {i}: ipv6.SrcAddr != ::{i})"))
        .collect();
    // Unknown choices between packet tests, and'ed: the node sets multiply until the
    // generator's budget turns the rest into "may match".
    let explode: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "(timestamp > {i}? packet[{i}] == {i}: packet[{}] != {i})",
                i + 1
            )
        })
        .collect();
    let ctx = PrefilterContext::new(Layer::Network, Direction::Outbound);
    let mut log = vec![0u8; 1 << 22];
    for text in [
        many.join(" or "),
        unknown.join(" and "),
        mixed.join(" or "),
        explode.join(" and "),
    ] {
        let f = Filter::compile(&text, Layer::Network).expect("compiles");
        let prog = prefilter_program(f.object(), ctx);
        let fd = match prog_load(ProgType::SOCKET_FILTER, &prog, LICENSE, &mut log) {
            Ok(fd) => fd,
            Err(e) => panic!(
                "{} tests, {} insns: {e}",
                f.object().tests.len(),
                prog.len()
            ),
        };
        for (_, h) in VECTOR_PACKETS {
            let ip = hex(h);
            let (ret, _) = prog_test_run(fd.as_fd(), &frame(&ip), 1).unwrap();
            assert_eq!(ret as u64, run_socket_filter(&prog, &ip).unwrap());
        }
        let ip = hex(VECTOR_PACKETS[3].1);
        let (_, ns) = prog_test_run(fd.as_fd(), &frame(&ip), 10_000).unwrap();
        eprintln!(
            "{} tests -> {} insns: loaded, {ns} ns per run",
            f.object().tests.len(),
            prog.len()
        );
    }
}

#[test]
fn bpf_wrapper_basics() {
    require_root();
    // A verifier rejection carries the log.
    let bad = [Insn::exit()];
    let mut log = vec![0u8; 4096];
    match prog_load(ProgType::SOCKET_FILTER, &bad, LICENSE, &mut log) {
        Err(BpfError::Verifier { log, source }) => {
            assert_eq!(source.raw_os_error(), Some(libc::EACCES));
            assert!(log.contains("R0"), "log: {log}");
        }
        other => panic!("expected a verifier error, got {other:?}"),
    }
    // Descriptors are close-on-exec.
    let ok = lindivert::core::filter::ebpf::constant_program(1);
    let fd = prog_load(ProgType::SOCKET_FILTER, &ok, LICENSE, &mut log).unwrap();
    let flags = std::fs::read_to_string(format!(
        "/proc/self/fdinfo/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ))
    .unwrap();
    let flags = flags
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .map(|s| u32::from_str_radix(s.trim(), 8).unwrap())
        .unwrap();
    assert_ne!(
        flags & libc::O_CLOEXEC as u32,
        0,
        "fd must be close-on-exec"
    );
    assert_eq!(
        prog_test_run(fd.as_fd(), &frame(&[0x45; 20]), 3).unwrap().0,
        1
    );

    // Maps: array, hash, ring buffer.
    let arr = Map::array(8, 4, "ld_test_arr").unwrap();
    arr.update(&2u32.to_ne_bytes(), &7u64.to_ne_bytes(), BPF_ANY)
        .unwrap();
    let mut v = [0u8; 8];
    assert!(arr.lookup(&2u32.to_ne_bytes(), &mut v).unwrap());
    assert_eq!(u64::from_ne_bytes(v), 7);
    assert!(arr.update(&2u32.to_ne_bytes(), &[0u8; 4], BPF_ANY).is_err());
    let hash = Map::hash(4, 4, 16, "ld_test_hash").unwrap();
    assert!(!hash.lookup(&[1, 2, 3, 4], &mut [0u8; 4]).unwrap());
    hash.update(&[1, 2, 3, 4], &[5, 6, 7, 8], BPF_ANY).unwrap();
    let mut hv = [0u8; 4];
    assert!(hash.lookup(&[1, 2, 3, 4], &mut hv).unwrap());
    assert_eq!(hv, [5, 6, 7, 8]);
    assert!(hash.delete(&[1, 2, 3, 4]).unwrap());
    assert!(!hash.delete(&[1, 2, 3, 4]).unwrap());
    let rb = Map::ringbuf(1 << 16, "ld_test_rb").unwrap();
    assert!(rb.lookup(&[], &mut []).is_err());
}

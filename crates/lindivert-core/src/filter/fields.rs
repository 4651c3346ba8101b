//! The filter fields: WinDivert's field ids, names, layer validity, value ranges and the
//! header each one needs.

use crate::types::Layer;

macro_rules! fields {
    ($( $variant:ident = $id:literal, $name:literal; )*) => {
        /// A filter field, numbered as WinDivert's `WINDIVERT_FILTER_FIELD_*`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        #[allow(missing_docs)]
        pub enum Field { $( $variant = $id, )* }

        impl Field {
            /// Every field, in id order.
            pub const ALL: [Field; 86] = [ $( Field::$variant, )* ];

            /// The field's name in the filter language (`tcp.DstPort`, `packet16`, ...).
            pub const fn name(self) -> &'static str {
                match self { $( Field::$variant => $name, )* }
            }
        }
    };
}

fields! {
    Zero = 0, "zero";
    Inbound = 1, "inbound";
    Outbound = 2, "outbound";
    IfIdx = 3, "ifIdx";
    SubIfIdx = 4, "subIfIdx";
    Ip = 5, "ip";
    Ipv6 = 6, "ipv6";
    Icmp = 7, "icmp";
    Tcp = 8, "tcp";
    Udp = 9, "udp";
    Icmpv6 = 10, "icmpv6";
    IpHdrLength = 11, "ip.HdrLength";
    IpTos = 12, "ip.TOS";
    IpLength = 13, "ip.Length";
    IpId = 14, "ip.Id";
    IpDf = 15, "ip.DF";
    IpMf = 16, "ip.MF";
    IpFragOff = 17, "ip.FragOff";
    IpTtl = 18, "ip.TTL";
    IpProtocol = 19, "ip.Protocol";
    IpChecksum = 20, "ip.Checksum";
    IpSrcAddr = 21, "ip.SrcAddr";
    IpDstAddr = 22, "ip.DstAddr";
    Ipv6TrafficClass = 23, "ipv6.TrafficClass";
    Ipv6FlowLabel = 24, "ipv6.FlowLabel";
    Ipv6Length = 25, "ipv6.Length";
    Ipv6NextHdr = 26, "ipv6.NextHdr";
    Ipv6HopLimit = 27, "ipv6.HopLimit";
    Ipv6SrcAddr = 28, "ipv6.SrcAddr";
    Ipv6DstAddr = 29, "ipv6.DstAddr";
    IcmpType = 30, "icmp.Type";
    IcmpCode = 31, "icmp.Code";
    IcmpChecksum = 32, "icmp.Checksum";
    IcmpBody = 33, "icmp.Body";
    Icmpv6Type = 34, "icmpv6.Type";
    Icmpv6Code = 35, "icmpv6.Code";
    Icmpv6Checksum = 36, "icmpv6.Checksum";
    Icmpv6Body = 37, "icmpv6.Body";
    TcpSrcPort = 38, "tcp.SrcPort";
    TcpDstPort = 39, "tcp.DstPort";
    TcpSeqNum = 40, "tcp.SeqNum";
    TcpAckNum = 41, "tcp.AckNum";
    TcpHdrLength = 42, "tcp.HdrLength";
    TcpUrg = 43, "tcp.Urg";
    TcpAck = 44, "tcp.Ack";
    TcpPsh = 45, "tcp.Psh";
    TcpRst = 46, "tcp.Rst";
    TcpSyn = 47, "tcp.Syn";
    TcpFin = 48, "tcp.Fin";
    TcpWindow = 49, "tcp.Window";
    TcpChecksum = 50, "tcp.Checksum";
    TcpUrgPtr = 51, "tcp.UrgPtr";
    TcpPayloadLength = 52, "tcp.PayloadLength";
    UdpSrcPort = 53, "udp.SrcPort";
    UdpDstPort = 54, "udp.DstPort";
    UdpLength = 55, "udp.Length";
    UdpChecksum = 56, "udp.Checksum";
    UdpPayloadLength = 57, "udp.PayloadLength";
    Loopback = 58, "loopback";
    Impostor = 59, "impostor";
    ProcessId = 60, "processId";
    LocalAddr = 61, "localAddr";
    RemoteAddr = 62, "remoteAddr";
    LocalPort = 63, "localPort";
    RemotePort = 64, "remotePort";
    Protocol = 65, "protocol";
    EndpointId = 66, "endpointId";
    ParentEndpointId = 67, "parentEndpointId";
    Layer = 68, "layer";
    Priority = 69, "priority";
    Event = 70, "event";
    Packet = 71, "packet";
    Packet16 = 72, "packet16";
    Packet32 = 73, "packet32";
    TcpPayload = 74, "tcp.Payload";
    TcpPayload16 = 75, "tcp.Payload16";
    TcpPayload32 = 76, "tcp.Payload32";
    UdpPayload = 77, "udp.Payload";
    UdpPayload16 = 78, "udp.Payload16";
    UdpPayload32 = 79, "udp.Payload32";
    Length = 80, "length";
    Timestamp = 81, "timestamp";
    Random8 = 82, "random8";
    Random16 = 83, "random16";
    Random32 = 84, "random32";
    Fragment = 85, "fragment";
}

/// The header a field needs (Rule 1 of the evaluation: a test on a field whose header is
/// absent is false for every operator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Header {
    /// An IPv4 header.
    Ip,
    /// An IPv6 header.
    Ipv6,
    /// An ICMP header (over IPv4).
    Icmp,
    /// An ICMPv6 header (over IPv6).
    Icmpv6,
    /// A TCP header.
    Tcp,
    /// A UDP header.
    Udp,
}

impl Header {
    /// The Boolean field that tests this header's presence.
    pub const fn presence_field(self) -> Field {
        match self {
            Header::Ip => Field::Ip,
            Header::Ipv6 => Field::Ipv6,
            Header::Icmp => Field::Icmp,
            Header::Icmpv6 => Field::Icmpv6,
            Header::Tcp => Field::Tcp,
            Header::Udp => Field::Udp,
        }
    }
}

const N: u8 = 1 << Layer::Network as u8;
const F: u8 = 1 << Layer::NetworkForward as u8;
const FL: u8 = 1 << Layer::Flow as u8;
const S: u8 = 1 << Layer::Socket as u8;
const R: u8 = 1 << Layer::Reflect as u8;

impl Field {
    /// The field with WinDivert id `id`.
    pub const fn from_id(id: u32) -> Option<Field> {
        if id < 86 {
            Some(Field::ALL[id as usize])
        } else {
            None
        }
    }

    /// WinDivert's numeric id.
    pub const fn id(self) -> u8 {
        self as u8
    }

    /// Look a field up by its exact (case-sensitive) name.
    #[inline]
    pub fn from_name(name: &str) -> Option<Field> {
        match lookup_symbol(name) {
            Some(Symbol::Field(f)) => Some(f),
            _ => None,
        }
    }

    const fn layer_mask(self) -> u8 {
        use Field::*;
        match self {
            Zero | Timestamp | Event => N | F | FL | S | R,
            Inbound | Outbound | Loopback => N | FL | S,
            IfIdx | SubIfIdx | Impostor | Fragment | Random8 | Random16 | Random32 | Length => {
                N | F
            }
            EndpointId | ParentEndpointId => FL | S,
            ProcessId => FL | S | R,
            Layer | Priority => R,
            Ip | Ipv6 | Icmp | Icmpv6 | Tcp | Udp => N | F | FL | S,
            Protocol | LocalAddr | RemoteAddr | LocalPort | RemotePort => N | FL | S,
            _ => N | F,
        }
    }

    /// Whether the field may be used at `layer` (WinDivert's validity table).
    pub const fn valid_for(self, layer: crate::types::Layer) -> bool {
        self.layer_mask() & (1 << layer as u8) != 0
    }

    /// Whether this is an array (byte-access) field, written `field[index]`.
    pub const fn is_array(self) -> bool {
        matches!(
            self,
            Field::Packet
                | Field::Packet16
                | Field::Packet32
                | Field::TcpPayload
                | Field::TcpPayload16
                | Field::TcpPayload32
                | Field::UdpPayload
                | Field::UdpPayload16
                | Field::UdpPayload32
        )
    }

    /// For array fields, the word size in bytes (1, 2 or 4); 0 otherwise.
    pub const fn word_size(self) -> u32 {
        match self {
            Field::Packet | Field::TcpPayload | Field::UdpPayload => 1,
            Field::Packet16 | Field::TcpPayload16 | Field::UdpPayload16 => 2,
            Field::Packet32 | Field::TcpPayload32 | Field::UdpPayload32 => 4,
            _ => 0,
        }
    }

    /// The header the field needs at the NETWORK layers, if any.
    pub const fn needs(self) -> Option<Header> {
        let id = self as u8;
        match self {
            Field::TcpPayload | Field::TcpPayload16 | Field::TcpPayload32 => Some(Header::Tcp),
            Field::UdpPayload | Field::UdpPayload16 | Field::UdpPayload32 => Some(Header::Udp),
            _ => match id {
                11..=22 => Some(Header::Ip),
                23..=29 => Some(Header::Ipv6),
                30..=33 => Some(Header::Icmp),
                34..=37 => Some(Header::Icmpv6),
                38..=52 => Some(Header::Tcp),
                53..=57 => Some(Header::Udp),
                _ => None,
            },
        }
    }

    /// Whether the field's value can exceed 32 bits (WinDivert's "big" fields: addresses,
    /// endpoint ids and the timestamp).
    pub const fn is_big(self) -> bool {
        matches!(
            self,
            Field::IpSrcAddr
                | Field::IpDstAddr
                | Field::Ipv6SrcAddr
                | Field::Ipv6DstAddr
                | Field::LocalAddr
                | Field::RemoteAddr
                | Field::EndpointId
                | Field::ParentEndpointId
                | Field::Timestamp
        )
    }

    /// Whether the field is Boolean (0 or 1).
    pub const fn is_bool(self) -> bool {
        matches!(
            self,
            Field::Inbound
                | Field::Outbound
                | Field::Ip
                | Field::Ipv6
                | Field::Icmp
                | Field::Icmpv6
                | Field::Tcp
                | Field::Udp
                | Field::IpDf
                | Field::IpMf
                | Field::TcpUrg
                | Field::TcpAck
                | Field::TcpPsh
                | Field::TcpRst
                | Field::TcpSyn
                | Field::TcpFin
                | Field::Loopback
                | Field::Impostor
                | Field::Fragment
        )
    }

    /// The exact range of values the field can take, as signed 128-bit bounds `(lo, hi)`
    /// (`hi` may be `u128::MAX` for the 128-bit address fields, represented by
    /// [`Range::hi_u128`]).
    pub const fn range(self) -> Range {
        use Field::*;
        const U8: Range = Range::new(0, 0xFF);
        const U16: Range = Range::new(0, 0xFFFF);
        const U32: Range = Range::new(0, 0xFFFF_FFFF);
        const BOOL: Range = Range::new(0, 1);
        match self {
            Zero => Range::new(0, 0),
            Timestamp => Range::new(i64::MIN as i128, i64::MAX as i128),
            Event => Range::new(0, 9),
            Layer => Range::new(0, 4),
            Priority => Range::new(-30000, 30000),
            Length => Range::new(20, 65575),
            IpHdrLength | TcpHdrLength => Range::new(0, 15),
            IpFragOff => Range::new(0, 0x1FFF),
            Ipv6FlowLabel => Range::new(0, 0xF_FFFF),
            IpSrcAddr | IpDstAddr => Range::new(0xFFFF_0000_0000, 0xFFFF_FFFF_FFFF),
            Ipv6SrcAddr | Ipv6DstAddr | LocalAddr | RemoteAddr => Range::FULL_U128,
            EndpointId | ParentEndpointId => Range::new(0, u64::MAX as i128),
            IpTos | IpTtl | IpProtocol | Ipv6TrafficClass | Ipv6NextHdr | Ipv6HopLimit
            | IcmpType | IcmpCode | Icmpv6Type | Icmpv6Code | Protocol | Packet | TcpPayload
            | UdpPayload | Random8 => U8,
            IpLength | IpId | IpChecksum | Ipv6Length | IcmpChecksum | Icmpv6Checksum
            | TcpSrcPort | TcpDstPort | TcpWindow | TcpChecksum | TcpUrgPtr | TcpPayloadLength
            | UdpSrcPort | UdpDstPort | UdpLength | UdpChecksum | UdpPayloadLength | LocalPort
            | RemotePort | Packet16 | TcpPayload16 | UdpPayload16 | Random16 => U16,
            _ if self.is_bool() => BOOL,
            _ => U32,
        }
    }
}

/// A field's value range. Values are compared as signed 129-bit integers
/// (sign + 128-bit magnitude), so the range of the 128-bit address fields is
/// `0 ..= 2^128 - 1`, flagged by `full_u128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Lowest value.
    pub lo: i128,
    /// Highest value (ignored when `full_u128`).
    pub hi: i128,
    /// The range is `0 ..= u128::MAX`.
    pub full_u128: bool,
}

impl Range {
    const FULL_U128: Range = Range {
        lo: 0,
        hi: i128::MAX,
        full_u128: true,
    };
    const fn new(lo: i128, hi: i128) -> Range {
        Range {
            lo,
            hi,
            full_u128: false,
        }
    }
    /// The upper bound as an unsigned magnitude.
    pub const fn hi_u128(&self) -> u128 {
        if self.full_u128 {
            u128::MAX
        } else {
            self.hi as u128
        }
    }
}

/// The macro names (symbolic values), in a fixed order: [`Symbol::Macro`] indexes this.
pub const MACROS: [&str; 20] = [
    "TRUE",
    "FALSE",
    "TCP",
    "UDP",
    "ICMP",
    "ICMPV6",
    "PACKET",
    "ESTABLISHED",
    "DELETED",
    "BIND",
    "CONNECT",
    "LISTEN",
    "ACCEPT",
    "CLOSE",
    "OPEN",
    "NETWORK",
    "NETWORK_FORWARD",
    "FLOW",
    "SOCKET",
    "REFLECT",
];

/// The keywords of the filter language, in a fixed order: [`Symbol::Keyword`] indexes this.
pub const KEYWORDS: [&str; 5] = ["and", "or", "not", "true", "false"];

/// A word of the symbol table (a keyword, a field name or a macro name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symbol {
    /// `KEYWORDS[i]`.
    Keyword(u8),
    /// A field.
    Field(Field),
    /// `MACROS[i]`.
    Macro(u8),
}

const N_SYMBOLS: usize = KEYWORDS.len() + Field::ALL.len() + MACROS.len();

/// The name of symbol number `i` (keywords, then fields in id order, then macros).
const fn symbol_name(i: usize) -> &'static str {
    if i < KEYWORDS.len() {
        KEYWORDS[i]
    } else if i < KEYWORDS.len() + Field::ALL.len() {
        Field::ALL[i - KEYWORDS.len()].name()
    } else {
        MACROS[i - KEYWORDS.len() - Field::ALL.len()]
    }
}

const fn symbol_at(i: usize) -> Symbol {
    if i < KEYWORDS.len() {
        Symbol::Keyword(i as u8)
    } else if i < KEYWORDS.len() + Field::ALL.len() {
        Symbol::Field(Field::ALL[i - KEYWORDS.len()])
    } else {
        Symbol::Macro((i - KEYWORDS.len() - Field::ALL.len()) as u8)
    }
}

const SYMBOL_HASH_BITS: u32 = 10;

/// One FNV-1a step of the symbol hash.
#[inline(always)]
pub(crate) const fn symbol_hash_step(h: u32, byte: u8) -> u32 {
    (h ^ byte as u32).wrapping_mul(0x0100_0193)
}

/// FNV-1a over the bytes, from `seed`; the top [`SYMBOL_HASH_BITS`] bits index the table.
#[inline]
const fn symbol_hash(s: &[u8], seed: u32) -> u32 {
    let mut h = seed;
    let mut i = 0;
    while i < s.len() {
        h = symbol_hash_step(h, s[i]);
        i += 1;
    }
    h
}

const fn symbol_slot(h: u32) -> usize {
    (h >> (32 - SYMBOL_HASH_BITS)) as usize
}

/// A collision-free (perfect) hash table of the symbol names: `slots[hash]` is the symbol
/// number plus one, or 0.
struct SymbolTable {
    seed: u32,
    slots: [u8; 1 << SYMBOL_HASH_BITS],
}

/// Find, at compile time, the first seed for which no two symbol names share a slot.
const fn build_symbol_table() -> SymbolTable {
    let mut seed = 1u32;
    loop {
        let mut slots = [0u8; 1 << SYMBOL_HASH_BITS];
        let mut i = 0;
        let mut ok = true;
        while i < N_SYMBOLS {
            let h = symbol_slot(symbol_hash(symbol_name(i).as_bytes(), seed));
            if slots[h] != 0 {
                ok = false;
                break;
            }
            slots[h] = (i + 1) as u8;
            i += 1;
        }
        if ok {
            return SymbolTable { seed, slots };
        }
        assert!(seed < 100_000, "no perfect hash seed for the symbol table");
        seed += 1;
    }
}

static SYMBOLS: SymbolTable = build_symbol_table();

/// The shortest and longest symbol names.
const SYMBOL_LEN: (usize, usize) = {
    let (mut lo, mut hi) = (usize::MAX, 0);
    let mut i = 0;
    while i < N_SYMBOLS {
        let n = symbol_name(i).len();
        if n < lo {
            lo = n;
        }
        if n > hi {
            hi = n;
        }
        i += 1;
    }
    (lo, hi)
};

/// Look up a word in the symbol table (exact, case-sensitive): one hash and one compare.
#[inline]
pub fn lookup_symbol(word: &str) -> Option<Symbol> {
    lookup_symbol_hashed(word, symbol_hash(word.as_bytes(), SYMBOLS.seed))
}

/// The starting value of the symbol hash: fold each byte of a word in with
/// [`symbol_hash_step`], then look it up with [`lookup_symbol_hashed`].
#[inline(always)]
pub(crate) fn symbol_hash_seed() -> u32 {
    SYMBOLS.seed
}

/// [`lookup_symbol`] with the word's hash already computed.
#[inline]
pub(crate) fn lookup_symbol_hashed(word: &str, hash: u32) -> Option<Symbol> {
    let b = word.as_bytes();
    if b.len() < SYMBOL_LEN.0 || b.len() > SYMBOL_LEN.1 {
        return None;
    }
    let i = usize::from(SYMBOLS.slots[symbol_slot(hash)]).checked_sub(1)?;
    let (name, sym) = SYMBOL_ENTRIES[i];
    (name.as_bytes() == b).then_some(sym)
}

/// Each symbol's name and meaning, by symbol number.
static SYMBOL_ENTRIES: [(&str, Symbol); N_SYMBOLS] = {
    let mut t = [("", Symbol::Keyword(0)); N_SYMBOLS];
    let mut i = 0;
    while i < N_SYMBOLS {
        t[i] = (symbol_name(i), symbol_at(i));
        i += 1;
    }
    t
};

/// The value of `MACROS[index]` at `layer`: `None` when the macro is not valid there.
pub fn macro_value_at(index: u8, layer: Layer) -> Option<u32> {
    let (value, valid) = match index {
        0 => (1, true),                    // TRUE
        1 => (0, true),                    // FALSE
        2 => (6, true),                    // TCP
        3 => (17, true),                   // UDP
        4 => (1, true),                    // ICMP
        5 => (58, true),                   // ICMPV6
        6 => (0, layer.is_network()),      // PACKET
        7 => (1, layer == Layer::Flow),    // ESTABLISHED
        8 => (2, layer == Layer::Flow),    // DELETED
        9 => (3, layer == Layer::Socket),  // BIND
        10 => (4, layer == Layer::Socket), // CONNECT
        11 => (5, layer == Layer::Socket), // LISTEN
        12 => (6, layer == Layer::Socket), // ACCEPT
        13 => match layer {
            // CLOSE
            Layer::Socket => (7, true),
            Layer::Reflect => (9, true),
            _ => (0, false),
        },
        14 => (8, layer == Layer::Reflect), // OPEN
        15 => (0, true),                    // NETWORK
        16 => (1, true),                    // NETWORK_FORWARD
        17 => (2, true),                    // FLOW
        18 => (3, true),                    // SOCKET
        19 => (4, true),                    // REFLECT
        _ => (0, false),
    };
    valid.then_some(value)
}

/// A symbolic value (`TCP`, `ESTABLISHED`, `NETWORK`, ...) and the layers where it expands.
pub fn macro_value(name: &str, layer: Layer) -> Option<Option<u32>> {
    // Outer None: not a macro. Inner None: a macro that is not valid at this layer.
    match lookup_symbol(name) {
        Some(Symbol::Macro(i)) => Some(macro_value_at(i, layer)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_round_trip() {
        for (i, f) in Field::ALL.iter().enumerate() {
            assert_eq!(f.id() as usize, i);
            assert_eq!(Field::from_name(f.name()), Some(*f));
            assert_eq!(Field::from_id(i as u32), Some(*f));
        }
        assert_eq!(Field::from_id(86), None);
        assert_eq!(Field::from_name("TCP.DstPort"), None);
    }

    #[test]
    fn symbol_table() {
        for (i, k) in KEYWORDS.iter().enumerate() {
            assert_eq!(lookup_symbol(k), Some(Symbol::Keyword(i as u8)));
        }
        for (i, m) in MACROS.iter().enumerate() {
            assert_eq!(lookup_symbol(m), Some(Symbol::Macro(i as u8)));
        }
        for w in [
            "",
            "a",
            "And",
            "tcp.",
            "tcp.DstPor",
            "tcp.DstPortt",
            "TCP.DstPort",
            "x",
        ] {
            assert_eq!(lookup_symbol(w), None, "{w}");
        }
        let all: Vec<&str> = (0..N_SYMBOLS).map(symbol_name).collect();
        assert_eq!(all.iter().map(|n| n.len()).min(), Some(SYMBOL_LEN.0));
        assert_eq!(all.iter().map(|n| n.len()).max(), Some(SYMBOL_LEN.1));
        assert_eq!(macro_value("CLOSE", Layer::Reflect), Some(Some(9)));
        assert_eq!(macro_value("CLOSE", Layer::Flow), Some(None));
        assert_eq!(macro_value("PACKET", Layer::NetworkForward), Some(Some(0)));
        assert_eq!(macro_value("tcp", Layer::Network), None);
    }

    #[test]
    fn validity_table() {
        assert!(Field::ProcessId.valid_for(Layer::Flow));
        assert!(!Field::ProcessId.valid_for(Layer::Network));
        assert!(!Field::Outbound.valid_for(Layer::NetworkForward));
        assert!(Field::Timestamp.valid_for(Layer::Reflect));
        assert!(Field::TcpDstPort.valid_for(Layer::NetworkForward));
        assert!(!Field::TcpDstPort.valid_for(Layer::Flow));
        assert!(Field::Tcp.valid_for(Layer::Socket));
        assert!(!Field::Tcp.valid_for(Layer::Reflect));
        assert_eq!(Field::TcpPayload16.needs(), Some(Header::Tcp));
        assert_eq!(Field::Packet.needs(), None);
        assert_eq!(Field::IpDstAddr.needs(), Some(Header::Ip));
        assert_eq!(Field::Ip.needs(), None);
    }
}

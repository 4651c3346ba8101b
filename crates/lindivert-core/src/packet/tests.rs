//! Cross-module tests: the WinDivert test-suite packets, checksums, the hash oracle, IPv6
//! extension-header chains and property tests.

use super::*;
use proptest::prelude::*;

/// Decodes a hex string (test helper).
pub(crate) fn hex(s: &str) -> Vec<u8> {
    assert_eq!(s.len() % 2, 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

struct Vector {
    name: &'static str,
    /// As in WinDivert's test_data.c (IPv4 header checksum 0).
    hex: &'static str,
    /// As captured after injection (IPv4 header checksum filled in by the driver).
    captured: &'static str,
    version: u8,
    protocol: u8,
    fragment: bool,
    transport: Transport,
    header_len: usize,
    payload_len: usize,
}

/// The 10 packets of WinDivert's test suite (`test/test_data.c`), with the parse results
/// recorded in `windivert_filter_vectors.json`.
const VECTORS: &[Vector] = &[
    Vector {
        name: "ipv4_icmp_echo_req",
        hex: "4500005412344000400100000a0000010808080808003cd20d5600018ba6605400000000f9080a0000000000101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637",
        captured: "450000541234400040010e650a0000010808080808003cd20d5600018ba6605400000000f9080a0000000000101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637",
        version: 4,
        protocol: 1,
        fragment: false,
        transport: Transport::Icmp,
        header_len: 28,
        payload_len: 56,
    },
    Vector {
        name: "ipv4_tcp_http_req",
        hex: "45000209482d4000400600000a0a0a0a5db8d877a31a00505338ccc25637b3558018007302a400000101080a002c851b1b7f3a71474554202f20485454502f312e310d0a486f73743a207777772e6578616d706c652e636f6d0d0a436f6e6e656374696f6e3a206b6565702d616c6976650d0a43616368652d436f6e74726f6c3a206d61782d6167653d300d0a4163636570743a20746578742f68746d6c2c6170706c69636174696f6e2f7868746d6c2b786d6c2c6170706c69636174696f6e2f786d6c3b713d302e392c696d6167652f776562702c2a2f2a3b713d302e380d0a557365722d4167656e743a20585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858580d0a4163636570742d456e636f64696e673a20677a69702c6465666c6174652c736463680d0a4163636570742d4c616e67756167653a20656e2d55532c656e3b713d302e380d0a49662d4e6f6e652d4d617463683a2022333333333333333333220d0a49662d4d6f6469666965642d53696e63653a204672692c2030332041756720323031342031333a33333a333320474d540d0a0d0a",
        captured: "45000209482d40004006a67e0a0a0a0a5db8d877a31a00505338ccc25637b3558018007302a400000101080a002c851b1b7f3a71474554202f20485454502f312e310d0a486f73743a207777772e6578616d706c652e636f6d0d0a436f6e6e656374696f6e3a206b6565702d616c6976650d0a43616368652d436f6e74726f6c3a206d61782d6167653d300d0a4163636570743a20746578742f68746d6c2c6170706c69636174696f6e2f7868746d6c2b786d6c2c6170706c69636174696f6e2f786d6c3b713d302e392c696d6167652f776562702c2a2f2a3b713d302e380d0a557365722d4167656e743a20585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858585858580d0a4163636570742d456e636f64696e673a20677a69702c6465666c6174652c736463680d0a4163636570742d4c616e67756167653a20656e2d55532c656e3b713d302e380d0a49662d4e6f6e652d4d617463683a2022333333333333333333220d0a49662d4d6f6469666965642d53696e63653a204672692c2030332041756720323031342031333a33333a333320474d540d0a0d0a",
        version: 4,
        protocol: 6,
        fragment: false,
        transport: Transport::Tcp { hdr_len: 32 },
        header_len: 52,
        payload_len: 469,
    },
    Vector {
        name: "ipv4_udp_dns_req",
        hex: "4500003920900000491100000a00000108080404e0450035002522a7170801000001000000000000076578616d706c6503636f6d0000010001",
        captured: "450000392090000049113b180a00000108080404e0450035002522a7170801000001000000000000076578616d706c6503636f6d0000010001",
        version: 4,
        protocol: 17,
        fragment: false,
        transport: Transport::Udp,
        header_len: 28,
        payload_len: 29,
    },
    Vector {
        name: "ipv6_tcp_syn",
        hex: "6000000000280640123456780001000000000000aabbccdd00000000000000000000000000000001c37e0017e1d7c8aa00000000a002aaaac35e00000204ffc40402080affff91860000000001030307",
        captured: "6000000000280640123456780001000000000000aabbccdd00000000000000000000000000000001c37e0017e1d7c8aa00000000a002aaaac35e00000204ffc40402080affff91860000000001030307",
        version: 6,
        protocol: 6,
        fragment: false,
        transport: Transport::Tcp { hdr_len: 40 },
        header_len: 80,
        payload_len: 0,
    },
    Vector {
        name: "ipv6_icmpv6_echo_rep",
        hex: "6000000000403a1f000000000000000000000000000000010000000000000000000000000000000181006ed610720003a4d5695400000000ab7500000000000000112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0011223344556677",
        captured: "6000000000403a1f000000000000000000000000000000010000000000000000000000000000000181006ed610720003a4d5695400000000ab7500000000000000112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0011223344556677",
        version: 6,
        protocol: 58,
        fragment: false,
        transport: Transport::Icmpv6,
        header_len: 48,
        payload_len: 56,
    },
    Vector {
        name: "ipv6_exthdrs_udp",
        hex: "60000000002d006400000000000000000000000000000001000000000000000000000000000000013c000000000000003c0000000000000011000000000000001234aaaa0015eff448656c6c6f20576f726c642101",
        captured: "60000000002d006400000000000000000000000000000001000000000000000000000000000000013c000000000000003c0000000000000011000000000000001234aaaa0015eff448656c6c6f20576f726c642101",
        version: 6,
        protocol: 17,
        fragment: false,
        transport: Transport::Udp,
        header_len: 72,
        payload_len: 13,
    },
    Vector {
        name: "ipv4_fragemnt_0",
        hex: "4500001c12342000400100000a0000010808080808003cd20d560001",
        captured: "4500001c1234200040012e9d0a0000010808080808003cd20d560001",
        version: 4,
        protocol: 1,
        fragment: true,
        transport: Transport::Icmp,
        header_len: 28,
        payload_len: 0,
    },
    Vector {
        name: "ipv4_fragment_1",
        hex: "4500004c12340001400100000a000001080808088ba6605400000000f9080a0000000000101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637",
        captured: "4500004c1234000140014e6c0a000001080808088ba6605400000000f9080a0000000000101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637",
        version: 4,
        protocol: 1,
        fragment: true,
        transport: Transport::None,
        header_len: 20,
        payload_len: 56,
    },
    Vector {
        name: "ipv6_fragment_0",
        hex: "6000000000202c1f00000000000000000000000000000001000000000000000000000000000000013a000001c7f6ce5381006ed610720003a4d5695400000000ab75000000000000",
        captured: "6000000000202c1f00000000000000000000000000000001000000000000000000000000000000013a000001c7f6ce5381006ed610720003a4d5695400000000ab75000000000000",
        version: 6,
        protocol: 58,
        fragment: true,
        transport: Transport::Icmpv6,
        header_len: 56,
        payload_len: 16,
    },
    Vector {
        name: "ipv6_fragment_1",
        hex: "6000000000302c1f00000000000000000000000000000001000000000000000000000000000000013a000018c7f6ce5300112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0011223344556677",
        captured: "6000000000302c1f00000000000000000000000000000001000000000000000000000000000000013a000018c7f6ce5300112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0011223344556677",
        version: 6,
        protocol: 58,
        fragment: true,
        transport: Transport::None,
        header_len: 48,
        payload_len: 40,
    },
];

fn vector(name: &str) -> &'static Vector {
    VECTORS.iter().find(|v| v.name == name).unwrap()
}

#[test]
fn vectors_parse() {
    for v in VECTORS {
        for h in [v.hex, v.captured] {
            let b = hex(h);
            let p = parse(&b).unwrap_or_else(|| panic!("{}", v.name));
            assert_eq!(p.version, v.version, "{}", v.name);
            assert_eq!(p.protocol, v.protocol, "{}", v.name);
            assert_eq!(p.fragment, v.fragment, "{}", v.name);
            assert_eq!(p.transport, v.transport, "{}", v.name);
            assert_eq!(p.header_len, v.header_len, "{}", v.name);
            assert_eq!(p.payload_len, v.payload_len, "{}", v.name);
            assert_eq!(p.bytes, &b[..], "{}", v.name);
            assert!(p.next.is_empty());
            assert!(p.length_matches(b.len()));
            assert!(!p.is_truncated());
            assert_eq!(parse_exact(&b), Some(p));
            assert_eq!(parse_lenient(&b), Some(p));
            assert_eq!(p.transport_offset + p.transport.header_len(), p.header_len);
            assert_eq!(p.payload().len(), p.payload_len);
            assert_eq!(p.headers().len(), p.header_len);
            assert_eq!(p.ipv4().is_some(), v.version == 4);
            assert_eq!(p.ipv6().is_some(), v.version == 6);
            assert_eq!(
                p.tcp().is_some(),
                matches!(v.transport, Transport::Tcp { .. })
            );
            assert_eq!(p.udp().is_some(), v.transport == Transport::Udp);
            assert_eq!(p.icmp().is_some(), v.transport == Transport::Icmp);
            assert_eq!(p.icmpv6().is_some(), v.transport == Transport::Icmpv6);
            assert_eq!(p.ip_total_len(), b.len());
        }
    }
}

#[test]
fn vectors_details() {
    let b = hex(vector("ipv4_tcp_http_req").captured);
    let p = parse(&b).unwrap();
    let t = p.tcp().unwrap();
    assert_eq!((t.src_port(), t.dst_port()), (0xa31a, 80));
    assert_eq!(p.ports(), Some((0xa31a, 80)));
    assert!(t.ack() && t.psh() && !t.syn());
    assert!(p.payload().starts_with(b"GET / HTTP/1.1\r\n"));
    assert_eq!(
        p.src_addr(),
        "10.10.10.10".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(
        p.dst_addr(),
        "93.184.216.119".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(t.options_iter().count(), 3); // NOP NOP timestamps
    assert_eq!(p.ip_header_len(), 20);
    assert!(!p.more_fragments());

    let b = hex(vector("ipv4_fragemnt_0").captured);
    let p = parse(&b).unwrap();
    assert!(p.more_fragments() && p.frag_offset() == 0);
    assert_eq!(p.icmp().unwrap().msg_type(), 8);
    let b = hex(vector("ipv4_fragment_1").captured);
    let p = parse(&b).unwrap();
    assert!(!p.more_fragments() && p.frag_offset() == 1);
    assert_eq!(p.transport_offset, 20);

    let b = hex(vector("ipv6_fragment_0").captured);
    let p = parse(&b).unwrap();
    assert_eq!(p.first_next_header, 44);
    assert!(p.more_fragments() && p.frag_offset() == 0);
    let hs: Vec<_> = p.extension_headers().collect();
    assert_eq!(hs.len(), 1);
    assert_eq!(hs[0].fragment().unwrap().ident(), 0xc7f6ce53);
    assert_eq!(p.icmpv6().unwrap().msg_type(), 129);
    let b = hex(vector("ipv6_fragment_1").captured);
    let p = parse(&b).unwrap();
    assert!(!p.more_fragments() && p.frag_offset() == 3);
    assert_eq!((p.transport_offset, p.header_len), (48, 48));
    assert_eq!(p.ports(), None);

    // Hop-by-hop -> destination options -> destination options -> UDP.
    let b = hex(vector("ipv6_exthdrs_udp").captured);
    let p = parse(&b).unwrap();
    assert_eq!(p.first_next_header, 0);
    let hs: Vec<_> = p
        .extension_headers()
        .map(|h| (h.protocol, h.offset, h.header_len(), h.next_header()))
        .collect();
    assert_eq!(hs, vec![(0, 40, 8, 60), (60, 48, 8, 60), (60, 56, 8, 17)]);
    assert_eq!(p.udp().unwrap().dst_port(), 0xaaaa);
    assert_eq!(p.payload(), b"Hello World!\x01");
    assert_eq!(p.ipv6().unwrap().hop_limit(), 100);
    assert_eq!(p.ipv6().unwrap().extension_headers().count(), 3);
    assert!(!p.more_fragments() && p.frag_offset() == 0);
    assert!(p.ipv4().is_none() && p.extension_headers().count() == 3);
    let b4 = hex(vector("ipv4_udp_dns_req").captured);
    let p4 = parse(&b4).unwrap();
    assert_eq!(p4.extension_headers().count(), 0);
}

#[test]
fn batches() {
    let mut all = Vec::new();
    for v in VECTORS {
        all.extend(hex(v.captured));
    }
    let got: Vec<_> = packets(&all).map(|p| (p.protocol, p.bytes.len())).collect();
    let want: Vec<_> = VECTORS
        .iter()
        .map(|v| (v.protocol, v.hex.len() / 2))
        .collect();
    assert_eq!(got, want);
    let mut it = packets(&all);
    it.by_ref().for_each(drop);
    assert!(it.remainder().is_empty());
    // A packet followed by garbage: parse gives the rest in `next`, parse_exact refuses.
    let mut b = hex(vector("ipv4_udp_dns_req").captured);
    b.extend([0x45, 0, 0, 99, 1]);
    let p = parse(&b).unwrap();
    assert_eq!(p.next, &[0x45, 0, 0, 99, 1]);
    assert!(!p.length_matches(b.len()));
    assert!(parse_exact(&b).is_none());
    let mut it = packets(&b);
    assert!(it.next().is_some());
    assert!(it.next().is_none());
    assert_eq!(it.remainder(), &[0x45, 0, 0, 99, 1]);
}

/// An IPv4 packet: IHL from `opts`, total length from the parts.
fn v4(proto: u8, opts: &[u8], ff: u16, l4: &[u8]) -> Vec<u8> {
    let hl = 20 + opts.len();
    let mut b = vec![0u8; hl];
    b[0] = 0x40 | (hl / 4) as u8;
    b[2..4].copy_from_slice(&((hl + l4.len()) as u16).to_be_bytes());
    b[6..8].copy_from_slice(&ff.to_be_bytes());
    b[8] = 64;
    b[9] = proto;
    b[12..20].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    b[20..].copy_from_slice(opts);
    b.extend_from_slice(l4);
    b
}

/// An IPv6 packet with next header `nh` and payload `rest`.
fn v6(nh: u8, rest: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 40];
    b[0] = 0x60;
    b[4..6].copy_from_slice(&(rest.len() as u16).to_be_bytes());
    b[6] = nh;
    b[7] = 64;
    b[23] = 1;
    b[39] = 2;
    b.extend_from_slice(rest);
    b
}

fn tcp_hdr(doff: u8, extra: usize) -> Vec<u8> {
    let mut t = vec![0u8; 20 + extra];
    t[0..4].copy_from_slice(&[0x30, 0x39, 0x01, 0xbb]);
    t[12] = doff << 4;
    t[13] = tcp::flags::SYN;
    t
}

#[test]
fn parse_rejects() {
    let good = v4(17, &[], 0, &[0; 8]);
    assert!(parse(&good).is_some());
    assert!(parse(&[]).is_none());
    assert!(parse(&good[..19]).is_none());
    for version in [0u8, 1, 5, 7, 15] {
        let mut b = good.clone();
        b[0] = (version << 4) | 5;
        assert!(parse(&b).is_none(), "version {version}");
    }
    for ihl in 0..5u8 {
        let mut b = good.clone();
        b[0] = 0x40 | ihl;
        assert!(parse_lenient(&b).is_none());
    }
    // Total length below the header length.
    let mut b = good.clone();
    b[3] = 19;
    assert!(parse_lenient(&b).is_none());
    // Header longer than the buffer.
    let mut b = good.clone();
    b[0] = 0x4F;
    b[3] = 60;
    assert!(parse_lenient(&b).is_none());
    // Truncated: strict parse fails, lenient accepts.
    let b = &good[..27];
    assert!(parse(b).is_none() && parse_exact(b).is_none());
    let p = parse_lenient(b).unwrap();
    assert!(p.is_truncated() && p.next.is_empty() && p.bytes.len() == 27);
    assert_eq!(p.transport, Transport::None); // 7 bytes: no UDP header
                                              // IPv6 needs 40 bytes even with a 0 payload length.
    let b6 = v6(59, &[]);
    assert!(parse(&b6).is_some());
    assert!(parse(&b6[..39]).is_none());
    let mut b6t = v6(17, &[0; 8]);
    b6t.pop();
    assert!(parse(&b6t).is_none());
    assert!(parse_lenient(&b6t).unwrap().is_truncated());
}

#[test]
fn parse_transport_rules() {
    // TCP with data offset < 5: no transport, protocol still 6.
    let p4 = v4(6, &[], 0, &tcp_hdr(4, 0));
    let p = parse(&p4).unwrap();
    assert_eq!(
        (p.protocol, p.transport, p.header_len, p.payload_len),
        (6, Transport::None, 20, 20)
    );
    // TCP shorter than 20 bytes.
    let p4 = v4(6, &[], 0, &tcp_hdr(5, 0)[..19]);
    assert_eq!(parse(&p4).unwrap().transport, Transport::None);
    // TCP header length clipped to the available data.
    let p4 = v4(6, &[], 0, &tcp_hdr(15, 4));
    let p = parse(&p4).unwrap();
    assert_eq!(p.transport, Transport::Tcp { hdr_len: 24 });
    assert_eq!((p.header_len, p.payload_len), (44, 0));
    assert_eq!(p.tcp().unwrap().options().len(), 4);
    // TCP with options and payload, IPv4 options.
    let mut seg = tcp_hdr(6, 4 + 3);
    seg[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]);
    let p4 = v4(6, &[1, 1, 1, 0], 0, &seg);
    let p = parse(&p4).unwrap();
    assert_eq!(p.ip_header_len(), 24);
    assert_eq!(p.ipv4().unwrap().options(), &[1, 1, 1, 0]);
    assert_eq!(p.transport, Transport::Tcp { hdr_len: 24 });
    assert_eq!(
        (p.transport_offset, p.header_len, p.payload_len),
        (24, 48, 3)
    );
    assert_eq!(
        p.tcp().unwrap().options_iter().next(),
        Some(TcpOption::MaxSegmentSize(1460))
    );
    // UDP needs 8 bytes.
    assert_eq!(
        parse(&v4(17, &[], 0, &[0; 7])).unwrap().transport,
        Transport::None
    );
    // ICMP only over IPv4, ICMPv6 only over IPv6.
    assert_eq!(
        parse(&v4(1, &[], 0, &[0; 8])).unwrap().transport,
        Transport::Icmp
    );
    assert_eq!(
        parse(&v4(58, &[], 0, &[0; 8])).unwrap().transport,
        Transport::None
    );
    assert_eq!(
        parse(&v6(58, &[0; 8])).unwrap().transport,
        Transport::Icmpv6
    );
    assert_eq!(parse(&v6(1, &[0; 8])).unwrap().transport, Transport::None);
    assert_eq!(
        parse(&v4(1, &[], 0, &[0; 7])).unwrap().transport,
        Transport::None
    );
    // IPv4 fragments: MF with offset 0 keeps the transport header, offset != 0 drops it.
    let b = v4(17, &[], 0x2000, &[0; 8]);
    let p = parse(&b).unwrap();
    assert!(p.fragment && p.transport == Transport::Udp);
    let b = v4(17, &[], 0x0001, &[0; 8]);
    let p = parse(&b).unwrap();
    assert!(p.fragment && p.transport == Transport::None && p.protocol == 17);
    // DF alone is not a fragment.
    assert!(!parse(&v4(17, &[], 0x4000, &[0; 8])).unwrap().fragment);
    // Another protocol.
    let b = v4(47, &[], 0, &[0; 12]);
    let p = parse(&b).unwrap();
    assert_eq!(
        (p.protocol, p.transport, p.header_len, p.payload_len),
        (47, Transport::None, 20, 12)
    );
}

#[test]
fn parse_ipv6_extension_chains() {
    // Hop-by-hop(16) -> routing(8) -> AH(len 1: 12) -> dst opts(8) -> TCP.
    let mut c = Vec::new();
    c.extend([43, 1]);
    c.extend([0; 14]);
    c.extend([51, 0, 0, 0, 0, 0, 0, 0]);
    c.extend([60, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    c.extend([6, 0, 0, 0, 0, 0, 0, 0]);
    c.extend(tcp_hdr(5, 2));
    let b = v6(0, &c);
    let p = parse(&b).unwrap();
    assert_eq!(p.protocol, 6);
    assert_eq!(p.first_next_header, 0);
    assert!(!p.fragment);
    assert_eq!(p.transport_offset, 40 + 16 + 8 + 12 + 8);
    assert_eq!(p.transport, Transport::Tcp { hdr_len: 20 });
    assert_eq!(p.payload_len, 2);
    let kinds: Vec<_> = p
        .extension_headers()
        .map(|h| (h.protocol, h.header_len()))
        .collect();
    assert_eq!(kinds, vec![(0, 16), (43, 8), (51, 12), (60, 8)]);
    // Mobility header then no-next-header.
    let b = v6(135, &[59, 0, 0, 0, 0, 0, 0, 0, 0xEE]);
    let p = parse(&b).unwrap();
    assert_eq!((p.protocol, p.transport_offset, p.payload_len), (59, 48, 1));
    // Data runs out inside an extension header: protocol is that header's type.
    let b = v6(60, &[17, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let p = parse(&b).unwrap();
    assert_eq!(
        (p.protocol, p.transport, p.transport_offset),
        (60, Transport::None, 40)
    );
    assert_eq!((p.header_len, p.payload_len), (40, 12));
    // Atomic fragment (offset 0, M clear): a fragment, but the transport header is parsed.
    let mut c = vec![17, 0, 0, 0, 0, 0, 0, 9];
    c.extend([0x12, 0x34, 0, 53, 0, 8, 0, 0]);
    let b = v6(44, &c);
    let p = parse(&b).unwrap();
    assert!(p.fragment && !p.more_fragments() && p.frag_offset() == 0);
    assert_eq!((p.protocol, p.transport), (17, Transport::Udp));
    // Non-first fragment: the walk stops, protocol = the fragment's next header, even if
    // that is another extension header.
    let b = v6(44, &[0, 0, 0x01, 0x00, 0, 0, 0, 9, 6, 0, 0, 0, 0, 0, 0, 0]);
    let p = parse(&b).unwrap();
    assert_eq!(
        (p.protocol, p.transport, p.transport_offset),
        (0, Transport::None, 48)
    );
    assert_eq!(p.frag_offset(), 32);
    // A second fragment header is not walked.
    let b = v6(
        44,
        &[
            44, 0, 0, 1, 0, 0, 0, 9, 17, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
    let p = parse(&b).unwrap();
    assert_eq!(
        (p.protocol, p.transport, p.transport_offset),
        (44, Transport::None, 48)
    );
    assert!(p.fragment && p.more_fragments());
    // A fragment header with fewer than 8 bytes left is not walked.
    let b = v6(44, &[17, 0, 0, 0, 0, 0, 0]);
    let p = parse(&b).unwrap();
    assert!(!p.fragment && p.protocol == 44);
}

#[test]
fn checksums_of_vectors() {
    for v in VECTORS {
        let captured = hex(v.captured);
        let st = verify_checksums(&captured).unwrap();
        assert!(st.all_valid(), "{}", v.name);
        assert_eq!(st.ip.is_some(), v.version == 4);
        let transport_checkable =
            v.transport != Transport::None && !(v.fragment && v.name.ends_with('0'));
        assert_eq!(
            st.transport,
            transport_checkable.then_some(true),
            "{}",
            v.name
        );

        // From the test_data.c bytes (IPv4 checksum 0): the driver's result.
        let mut b = hex(v.hex);
        if v.version == 4 {
            assert_eq!(verify_ipv4_checksum(&b), Some(false), "{}", v.name);
        }
        let r = calc_checksums(&mut b, ChecksumFlags::NONE);
        assert_eq!(b, captured, "{}", v.name);
        if v.fragment && v.transport != Transport::None {
            assert_eq!(r, Err(ChecksumError::Fragment), "{}", v.name);
            continue;
        }
        let done = r.unwrap();
        assert_eq!(done.ip, v.version == 4);
        assert_eq!(done.tcp, matches!(v.transport, Transport::Tcp { .. }));
        assert_eq!(done.udp, v.transport == Transport::Udp);
        assert_eq!(done.icmp, v.transport == Transport::Icmp);
        assert_eq!(done.icmpv6, v.transport == Transport::Icmpv6);

        // Clear the transport checksum and recompute it.
        let p = parse(&captured).unwrap();
        let field = match v.transport {
            Transport::Tcp { .. } => 16,
            Transport::Udp => 6,
            Transport::Icmp | Transport::Icmpv6 => 2,
            Transport::None => continue,
        };
        let at = p.transport_offset + field;
        let mut b = captured.clone();
        b[at] = 0x5a;
        b[at + 1] = 0xa5;
        assert_eq!(verify_transport_checksum(&b), Some(false), "{}", v.name);
        calc_checksums(&mut b, ChecksumFlags::NONE).unwrap();
        assert_eq!(b, captured, "{}", v.name);
        // The skip flag leaves it alone.
        let skip = match v.transport {
            Transport::Tcp { .. } => ChecksumFlags::NO_TCP_CHECKSUM,
            Transport::Udp => ChecksumFlags::NO_UDP_CHECKSUM,
            Transport::Icmp => ChecksumFlags::NO_ICMP_CHECKSUM,
            _ => ChecksumFlags::NO_ICMPV6_CHECKSUM,
        };
        b[at] = 0x5a;
        let d = calc_checksums(&mut b, skip | ChecksumFlags::NO_IP_CHECKSUM).unwrap();
        assert_eq!(d, ChecksumsDone::default());
        assert_eq!(b[at], 0x5a);
    }
}

#[test]
fn checksum_special_cases() {
    // The IPv4 header checksum is left alone with NO_IP_CHECKSUM.
    let mut b = hex(vector("ipv4_udp_dns_req").hex);
    let d = calc_checksums(&mut b, ChecksumFlags::NO_IP_CHECKSUM).unwrap();
    assert!(!d.ip && d.udp);
    assert_eq!(&b[10..12], &[0, 0]);

    // A UDP checksum that computes to 0 is sent as 0xFFFF (IPv4 and IPv6).
    for ipv6 in [false, true] {
        let mut seg = vec![0x12, 0x34, 0x00, 0x35, 0, 10, 0, 0, 0, 0];
        let build = |seg: &[u8]| {
            if ipv6 {
                v6(17, seg)
            } else {
                v4(17, &[], 0, seg)
            }
        };
        let mut b = build(&seg);
        calc_checksums(&mut b, ChecksumFlags::NONE).unwrap();
        let off = if ipv6 { 40 } else { 20 };
        let c = u16::from_be_bytes([b[off + 6], b[off + 7]]);
        // Adding the checksum as a payload word makes the sum 0xFFFF, the result 0.
        seg[8..10].copy_from_slice(&c.to_be_bytes());
        let mut b = build(&seg);
        calc_checksums(&mut b, ChecksumFlags::NONE).unwrap();
        assert_eq!(&b[off + 6..off + 8], &[0xFF, 0xFF]);
        assert_eq!(verify_transport_checksum(&b), Some(true));
        // A zero UDP checksum: "none" over IPv4, invalid over IPv6.
        b[off + 6] = 0;
        b[off + 7] = 0;
        assert_eq!(verify_transport_checksum(&b), Some(!ipv6));
    }

    // Truncated: the IP checksum is written, the transport checksum fails.
    let full = hex(vector("ipv4_udp_dns_req").hex);
    let mut b = full[..40].to_vec();
    assert_eq!(
        calc_checksums(&mut b, ChecksumFlags::NONE),
        Err(ChecksumError::Truncated)
    );
    assert_eq!(&b[10..12], &[0x3b, 0x18]);
    assert_eq!(
        calc_checksums(&mut b, ChecksumFlags::NO_UDP_CHECKSUM),
        Ok(ChecksumsDone {
            ip: true,
            ..Default::default()
        })
    );
    assert_eq!(
        verify_checksums(&b),
        Some(ChecksumStatus {
            ip: Some(true),
            transport: None
        })
    );
    // Truncated without a transport header succeeds.
    let mut g = v4(47, &[], 0, &[0; 12]);
    g.truncate(25);
    assert!(calc_checksums(&mut g, ChecksumFlags::NONE).unwrap().ip);
    // Non-IP.
    assert_eq!(
        calc_checksums(&mut [0u8; 40], ChecksumFlags::NONE),
        Err(ChecksumError::Unparsable)
    );
    assert_eq!(verify_checksums(&[0u8; 40]), None);
    assert_eq!(verify_ipv4_checksum(&v6(59, &[])), None);
    // Bytes after the packet are not touched.
    let mut b = v4(17, &[], 0, &[1, 2, 3, 4, 0, 8, 0, 0]);
    b.extend([0xAA; 5]);
    calc_checksums(&mut b, ChecksumFlags::NONE).unwrap();
    assert_eq!(&b[28..], &[0xAA; 5]);
    assert!(verify_checksums(&b).unwrap().all_valid());
    // IPv4 header options are covered.
    let mut b = v4(6, &[7, 4, 0, 0], 0, &tcp_hdr(5, 0));
    calc_checksums(&mut b, ChecksumFlags::NONE).unwrap();
    assert!(verify_checksums(&b).unwrap().all_valid());
    b[22] = 1;
    assert_eq!(verify_checksums(&b).unwrap().ip, Some(false));
    // A clipped TCP header: the checksum covers the segment that is there.
    let mut b = v4(6, &[], 0, &tcp_hdr(15, 4));
    let d = calc_checksums(&mut b, ChecksumFlags::NONE).unwrap();
    assert!(d.tcp);
    assert_eq!(verify_transport_checksum(&b), Some(true));
}

#[test]
fn packet_mut() {
    let mut b = hex(vector("ipv4_tcp_http_req").captured);
    b.extend([1, 2, 3]);
    let mut p = parse_mut(&mut b).unwrap();
    assert_eq!(p.bytes().len(), 521);
    assert_eq!(p.parsed().next, &[1, 2, 3]);
    p.ipv4_mut().unwrap().set_dst_addr([1, 1, 1, 1].into());
    p.tcp_mut().unwrap().set_dst_port(8080);
    p.payload_mut()[..3].copy_from_slice(b"PUT");
    assert!(p.ipv6_mut().is_none() && p.udp_mut().is_none());
    assert!(p.icmp_mut().is_none() && p.icmpv6_mut().is_none());
    assert!(p.decrement_ttl());
    p.calc_checksums(ChecksumFlags::NONE).unwrap();
    p.bytes_mut()[0] = 0x45;
    let next = p.into_next();
    next[0] = 9;
    let q = parse(&b).unwrap();
    assert_eq!(q.tcp().unwrap().dst_port(), 8080);
    assert_eq!(q.ipv4().unwrap().ttl(), 63);
    assert!(q.payload().starts_with(b"PUT / HTTP"));
    assert!(verify_checksums(&b).unwrap().all_valid());
    assert_eq!(q.next, &[9, 2, 3]);

    let mut b = hex(vector("ipv6_exthdrs_udp").captured);
    let mut p = parse_mut(&mut b).unwrap();
    p.ipv6_mut().unwrap().set_hop_limit(7);
    p.udp_mut().unwrap().set_src_port(1);
    let (pkt, rest) = p.into_parts();
    assert!(rest.is_empty());
    assert_eq!(pkt[7], 7);
    let mut b = hex(vector("ipv6_icmpv6_echo_rep").captured);
    let mut p = parse_mut(&mut b).unwrap();
    p.icmpv6_mut().unwrap().set_msg_type(128);
    let mut b = hex(vector("ipv4_icmp_echo_req").captured);
    let mut p = parse_mut(&mut b).unwrap();
    p.icmp_mut().unwrap().set_msg_type(0);
    assert!(parse_mut(&mut b[..30]).is_none());
}

/// (packet, seed, hash) triples from WinDivert's own `WinDivertHelperHashPacket` (via
/// `ebpfdivert_helper_hash_packet` in libebpfdivert.so).
const HASH_ORACLE: &[(&str, u64, u64)] = &[
    // v4_icmp
    ("450000541234400040010e650a0000010808080808003cd20d5600018ba6605400000000f9080a0000000000101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637", 0x0, 0x2ec9637909436313),
    // v4_icmp
    ("450000541234400040010e650a0000010808080808003cd20d5600018ba6605400000000f9080a0000000000101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637", 0x1, 0x06661548135611f8),
    // v4_udp_dns
    ("450000392090000049113b180a00000108080404e0450035002522a7170801000001000000000000076578616d706c6503636f6d0000010001", 0x1, 0x53b3a077bb89929f),
    // v4_udp_dns
    ("450000392090000049113b180a00000108080404e0450035002522a7170801000001000000000000076578616d706c6503636f6d0000010001", 0xfffffffffffffc18, 0x4d0531376ae2b0ab),
    // v6_tcp_syn
    ("6000000000280640123456780001000000000000aabbccdd00000000000000000000000000000001c37e0017e1d7c8aa00000000a002aaaac35e00000204ffc40402080affff91860000000001030307", 0xffffffffffffffff, 0x3036a4ce313d14a5),
    // v6_tcp_syn
    ("6000000000280640123456780001000000000000aabbccdd00000000000000000000000000000001c37e0017e1d7c8aa00000000a002aaaac35e00000204ffc40402080affff91860000000001030307", 0x123456789abcdef0, 0xd7ffa4a55c5fd617),
    // v6_icmpv6
    ("6000000000403a1f000000000000000000000000000000010000000000000000000000000000000181006ed610720003a4d5695400000000ab7500000000000000112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0011223344556677", 0xfffffffffffffffe, 0x26169ddcd5592f43),
    // v6_icmpv6
    ("6000000000403a1f000000000000000000000000000000010000000000000000000000000000000181006ed610720003a4d5695400000000ab7500000000000000112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0011223344556677", 0xffffffffffffffff, 0x77094a5e2fd0a2e9),
    // v6_ext_udp
    ("60000000002d006400000000000000000000000000000001000000000000000000000000000000013c000000000000003c0000000000000011000000000000001234aaaa0015eff448656c6c6f20576f726c642101", 0xfffffffffffffc18, 0xc8ec72f66a2e1104),
    // v6_ext_udp
    ("60000000002d006400000000000000000000000000000001000000000000000000000000000000013c000000000000003c0000000000000011000000000000001234aaaa0015eff448656c6c6f20576f726c642101", 0x8000000000000000, 0x2a6f7760e2122604),
    // v4_frag0_icmp
    ("4500001c1234200040012e9d0a0000010808080808003cd20d560001", 0x8000000000000000, 0x29f6d12387ce13de),
    // v4_frag0_icmp
    ("4500001c1234200040012e9d0a0000010808080808003cd20d560001", 0x0, 0xa2968a8d999a9bdf),
    // v4_frag1
    ("4500004c1234000140014e6c0a000001080808088ba6605400000000f9080a0000000000101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637", 0x1d882cb9b208000, 0x8e98656b6488f272),
    // v4_frag1
    ("4500004c1234000140014e6c0a000001080808088ba6605400000000f9080a0000000000101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637", 0xfffffffffffffffe, 0x6421e73759b8f959),
    // v6_frag0_icmpv6
    ("6000000000202c1f00000000000000000000000000000001000000000000000000000000000000013a000001c7f6ce5381006ed610720003a4d5695400000000ab75000000000000", 0x123456789abcdef0, 0x07c9520cebac7f5d),
    // v6_frag0_icmpv6
    ("6000000000202c1f00000000000000000000000000000001000000000000000000000000000000013a000001c7f6ce5381006ed610720003a4d5695400000000ab75000000000000", 0x1d882cb9b208000, 0x8baf43e2b2fb98e7),
    // v6_frag1
    ("6000000000302c1f00000000000000000000000000000001000000000000000000000000000000013a000018c7f6ce5300112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0011223344556677", 0x0, 0x740463c2ebae9ab4),
    // v6_frag1
    ("6000000000302c1f00000000000000000000000000000001000000000000000000000000000000013a000018c7f6ce5300112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0011223344556677", 0x1, 0x34fbc9c7fcc54778),
    // v4_tcp
    ("4500002d1234400040060000c0a8010a5db8d822c82201bb01020304a0b0c0d05018ffff0000000068656c6c6f", 0x1, 0x4fba6b992cd9e6f5),
    // v4_tcp
    ("4500002d1234400040060000c0a8010a5db8d822c82201bb01020304a0b0c0d05018ffff0000000068656c6c6f", 0xfffffffffffffc18, 0x46b24e9e14becc7d),
    // v4_opts_tcp_opts
    ("460000341234400040060000c0a8010a5db8d82294040000c82201bb01020304a0b0c0d07018ffff00000000020405b401010402", 0xffffffffffffffff, 0x620ec1c2b4fc02de),
    // v4_opts_tcp_opts
    ("460000341234400040060000c0a8010a5db8d82294040000c82201bb01020304a0b0c0d07018ffff00000000020405b401010402", 0x123456789abcdef0, 0x3aebfe04b654749c),
    // v4_gre
    ("4500002012344000402f0000c0a8010a5db8d822000008006162636465666768", 0xfffffffffffffffe, 0x9cbfe27f4475974e),
    // v4_gre
    ("4500002012344000402f0000c0a8010a5db8d822000008006162636465666768", 0xffffffffffffffff, 0x5b8335e0b6d44cc6),
    // v4_proto58
    ("4500002012344000403a0000c0a8010a5db8d822080000001234000170696e67", 0xfffffffffffffc18, 0x04dc35b25cec69e9),
    // v4_proto58
    ("4500002012344000403a0000c0a8010a5db8d822080000001234000170696e67", 0x8000000000000000, 0x474b15a779556c67),
    // v4_tcp_bad_doff
    ("450000281234400040060000c0a8010a5db8d822c82201bb01020304a0b0c0d04018ffff00000000", 0x8000000000000000, 0x69a3551b658be5fd),
    // v4_tcp_bad_doff
    ("450000281234400040060000c0a8010a5db8d822c82201bb01020304a0b0c0d04018ffff00000000", 0x0, 0xbea9e4b5bc7e53ec),
    // v4_udp_trailing
    ("450000201234400040110000c0a8010a5db8d82214e90035000c00006162636445000014", 0x1d882cb9b208000, 0x1f6b5b6de07b853d),
    // v4_udp_trailing
    ("450000201234400040110000c0a8010a5db8d82214e90035000c00006162636445000014", 0xfffffffffffffffe, 0x9fc65a4aa251d21e),
    // v6_tcp_data
    ("6abcdef10017064020010db8000000000000000000000001fe800000000000000211223344556677c82201bb01020304a0b0c0d05018ffff0000000078797a", 0x123456789abcdef0, 0xe1578ac20c6b5407),
    // v6_tcp_data
    ("6abcdef10017064020010db8000000000000000000000001fe800000000000000211223344556677c82201bb01020304a0b0c0d05018ffff0000000078797a", 0x1d882cb9b208000, 0xb17bc4f686984ce3),
    // v6_udp
    ("6abcdef1000c114020010db8000000000000000000000001fe80000000000000021122334455667714e90035000c000061626364", 0x0, 0x24b09c851bf8f845),
    // v6_udp
    ("6abcdef1000c114020010db8000000000000000000000001fe80000000000000021122334455667714e90035000c000061626364", 0x1, 0x7e0bd19190aa88ce),
    // v6_nonext
    ("6abcdef100083b4020010db8000000000000000000000001fe8000000000000002112233445566773132333435363738", 0x1, 0x5451dcc383e36c68),
    // v6_nonext
    ("6abcdef100083b4020010db8000000000000000000000001fe8000000000000002112233445566773132333435363738", 0xfffffffffffffc18, 0x890ff04ab3d54042),
    // v6_proto1
    ("6abcdef1000c014020010db8000000000000000000000001fe800000000000000211223344556677080000001234000170696e67", 0xffffffffffffffff, 0x766865fbe3b46336),
    // v6_proto1
    ("6abcdef1000c014020010db8000000000000000000000001fe800000000000000211223344556677080000001234000170696e67", 0x123456789abcdef0, 0x533f8c799c9d6028),
    // v6_ah_tcp
    ("6abcdef10020334020010db8000000000000000000000001fe800000000000000211223344556677060100000000000000000000c82201bb01020304a0b0c0d05018ffff00000000", 0xfffffffffffffffe, 0x76ec0003cb67ee56),
    // v6_ah_tcp
    ("6abcdef10020334020010db8000000000000000000000001fe800000000000000211223344556677060100000000000000000000c82201bb01020304a0b0c0d05018ffff00000000", 0xffffffffffffffff, 0xecdd28c8a4f2ca6e),
    // truncated
    ("450000392090000049113b180a00000108080404e0450035002522a7170801000001000000000000076578616d706c6503636f6d00000100", 0x7, 0x0000000000000000),
    // not_ip
    ("55555555555555555555555555555555555555555555555555555555555555555555555555555555", 0x7, 0x0000000000000000),
];

#[test]
fn hash_matches_windivert() {
    assert!(HASH_ORACLE.len() >= 40);
    for &(h, seed, want) in HASH_ORACLE {
        let b = hex(h);
        assert_eq!(hash_packet(&b, seed), want, "{h} seed {seed:#x}");
        if want != 0 {
            assert_eq!(parse(&b).unwrap().hash(seed), want);
        }
    }
}

#[test]
fn hash_properties() {
    let b = hex(vector("ipv4_udp_dns_req").captured);
    // Payload bytes are not hashed; header bytes and the seed are.
    let mut c = b.clone();
    *c.last_mut().unwrap() ^= 1;
    assert_eq!(hash_packet(&b, 5), hash_packet(&c, 5));
    c[8] ^= 1;
    assert_ne!(hash_packet(&b, 5), hash_packet(&c, 5));
    assert_ne!(hash_packet(&b, 5), hash_packet(&b, 6));
    // A truncated packet hashes to 0, but its lenient parse has a hash (the evaluator's).
    assert_eq!(hash_packet(&b[..56], 5), 0);
    assert_ne!(parse_lenient(&b[..56]).unwrap().hash(5), 0);
    assert_eq!(parse_lenient(&b[..56]).unwrap().hash(5), hash_packet(&b, 5));
}

/// The properties every parse result must have, plus no panics anywhere.
fn check_everything(input: &[u8]) {
    for p in [parse(input), parse_lenient(input), parse_exact(input)]
        .into_iter()
        .flatten()
    {
        assert!(p.bytes.len() + p.next.len() == input.len());
        assert!(p.transport_offset <= p.header_len);
        assert_eq!(p.header_len + p.payload_len, p.bytes.len());
        assert_eq!(p.transport_offset + p.transport.header_len(), p.header_len);
        assert!(p.version == 4 || p.version == 6);
        let _ = (
            p.more_fragments(),
            p.frag_offset(),
            p.src_addr(),
            p.dst_addr(),
            p.ports(),
        );
        let _ = (p.hash(1), p.payload(), p.headers(), p.is_truncated());
        p.extension_headers().for_each(|h| {
            let _ = (h.view(), h.fragment());
        });
        if let Some(t) = p.tcp() {
            t.options_iter().for_each(|o| {
                let _ = o.sack_blocks().count();
            });
            assert_eq!(
                t.header_len().min(p.transport_bytes().len()),
                p.transport.header_len()
            );
        }
        let _ = (
            p.udp(),
            p.icmp(),
            p.icmpv6(),
            p.ipv4().map(|h| h.verify_checksum()),
        );
        let _ = p.ipv6().map(|h| h.extension_headers().count());
        if !p.is_truncated() {
            assert_eq!(hash_packet(input, 77), p.hash(77));
        }
    }
    assert_eq!(
        parse(input).is_none(),
        hash_packet(input, 3) == 0 && parse(input).is_none()
    );
    let _ = verify_checksums(input);

    let mut b = input.to_vec();
    match calc_checksums(&mut b, ChecksumFlags::NONE) {
        Ok(done) => {
            let st = verify_checksums(&b).unwrap();
            if done.ip {
                assert_eq!(st.ip, Some(true));
            }
            if done.tcp || done.udp || done.icmp || done.icmpv6 {
                assert_eq!(st.transport, Some(true));
            }
            assert!(st.all_valid());
            // Recomputing is idempotent.
            let again = b.clone();
            calc_checksums(&mut b, ChecksumFlags::NONE).unwrap();
            assert_eq!(b, again);
        }
        Err(e) => assert_eq!(
            e == ChecksumError::Unparsable,
            parse_lenient(input).is_none()
        ),
    }
    let mut b = input.to_vec();
    let before = b.clone();
    if decrement_ttl(&mut b) {
        if before.first().map(|x| x >> 4) == Some(4) {
            assert_eq!(b[8], before[8] - 1);
            // The incremental update keeps a valid header checksum valid.
            if verify_ipv4_checksum(&before) == Some(true) {
                assert_eq!(verify_ipv4_checksum(&b), Some(true));
            }
        }
    } else {
        assert_eq!(b, before);
    }
}

fn mutated_vector() -> impl Strategy<Value = Vec<u8>> {
    (
        0..VECTORS.len(),
        any::<bool>(),
        prop::collection::vec((0usize..600, any::<u8>()), 0..6),
        0usize..600,
        prop::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(i, cap, muts, cut, extra)| {
            let v = &VECTORS[i];
            let mut b = hex(if cap { v.captured } else { v.hex });
            for (at, x) in muts {
                if !b.is_empty() {
                    let n = b.len();
                    b[at % n] = x;
                }
            }
            if cut % 3 == 0 {
                b.truncate(cut % (b.len() + 1));
            } else if cut % 3 == 1 {
                b.extend(extra);
            }
            b
        })
}

/// Plausible packets: IPv4/IPv6, random extension headers and transport headers.
fn structured_packet() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        prop::collection::vec(
            (
                prop::sample::select(vec![0u8, 43, 44, 51, 60, 135]),
                0u8..3,
                any::<u16>(),
            ),
            0..4,
        ),
        prop::sample::select(vec![1u8, 6, 17, 58, 47, 59]),
        prop::collection::vec(any::<u8>(), 0..80),
        0u8..16,
        any::<u16>(),
    )
        .prop_map(|(ipv6, exts, proto, mut l4, doff, ff)| {
            if proto == 6 && l4.len() > 12 {
                l4[12] = (doff << 4) | (l4[12] & 0x0F);
            }
            if ipv6 {
                let mut rest = Vec::new();
                let mut types: Vec<u8> = exts.iter().map(|e| e.0).collect();
                types.push(proto);
                for (i, &(t, n, fo)) in exts.iter().enumerate() {
                    let len = extension_header_len_for(t, n);
                    let mut h = vec![0u8; len];
                    h[0] = types[i + 1];
                    h[1] = n;
                    if t == 44 {
                        h[1] = 0;
                        h[2..4].copy_from_slice(&(fo & 0xFFF9).to_be_bytes());
                    }
                    rest.extend(h);
                }
                rest.extend(l4);
                v6(types[0], &rest)
            } else {
                v4(proto, &[], ff & 0xBFFF, &l4)
            }
        })
}

fn extension_header_len_for(t: u8, n: u8) -> usize {
    ipv6::extension_header_len(t, n).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..120)) {
        check_everything(&b);
    }

    #[test]
    fn ip_looking_bytes_never_panic(
        v in prop::sample::select(vec![0x45u8, 0x46, 0x4F, 0x60, 0x6F, 0x44]),
        len in any::<u16>(),
        proto in prop::sample::select(vec![0u8, 1, 6, 17, 43, 44, 51, 58, 60, 135]),
        rest in prop::collection::vec(any::<u8>(), 0..140),
    ) {
        let mut b = vec![v, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        b.extend(rest);
        if v >> 4 == 4 {
            b[2..4].copy_from_slice(&(len % 200).to_be_bytes());
            b[9] = proto;
        } else if b.len() >= 8 {
            b[4..6].copy_from_slice(&(len % 160).to_be_bytes());
            b[6] = proto;
        }
        check_everything(&b);
    }

    #[test]
    fn mutated_vectors_never_panic(b in mutated_vector()) {
        check_everything(&b);
    }

    #[test]
    fn structured_packets(b in structured_packet()) {
        check_everything(&b);
        let p = parse_exact(&b).unwrap();
        // calc then verify agrees on complete packets, whatever they contain.
        let mut c = b.clone();
        if let Ok(done) = calc_checksums(&mut c, ChecksumFlags::NONE) {
            let st = verify_checksums(&c).unwrap();
            prop_assert_eq!(st.ip, done.ip.then_some(true));
            let any_t = done.tcp || done.udp || done.icmp || done.icmpv6;
            prop_assert_eq!(any_t, p.transport != Transport::None);
            prop_assert_eq!(st.transport.is_some(), any_t);
        } else {
            prop_assert!(p.fragment);
        }
    }
}

//! Property tests of the filter pipeline: random filters over the fields valid at a random
//! layer, evaluated on random packets and addresses, must give the same result compiled
//! directly, rebuilt from their object text, and recompiled from their decompiled text; and
//! the compiler must never panic, whatever it is given.

use std::net::Ipv6Addr;

use lindivert_core::filter::{format, object, Field, Filter};
use lindivert_core::packet::parse_lenient;
use lindivert_core::{Address, Event, Flags, FlowData, Layer, LayerData, NetworkData, ReflectData};
use proptest::prelude::*;
use proptest::test_runner::Config;

// ---------------------------------------------------------------------------------------
// Filters

fn layer() -> impl Strategy<Value = Layer> {
    prop::sample::select(Layer::ALL.to_vec())
}

/// Macros that expand at `layer` (FILTER.md §6), plus ones that do not (parse errors).
fn macros(layer: Layer) -> Vec<&'static str> {
    let mut m = vec![
        "TRUE",
        "FALSE",
        "TCP",
        "UDP",
        "ICMP",
        "ICMPV6",
        "NETWORK",
        "NETWORK_FORWARD",
        "FLOW",
        "SOCKET",
        "REFLECT",
    ];
    m.extend(match layer {
        Layer::Network | Layer::NetworkForward => &["PACKET"][..],
        Layer::Flow => &["ESTABLISHED", "DELETED"][..],
        Layer::Socket => &["BIND", "CONNECT", "LISTEN", "ACCEPT", "CLOSE"][..],
        Layer::Reflect => &["OPEN", "CLOSE"][..],
    });
    m
}

/// A constant: small and boundary numbers, values just outside 8/16/32/64-bit ranges,
/// 128-bit values, negatives, hex, IPv4/IPv6 literals and macros.
fn value(layer: Layer) -> impl Strategy<Value = String> {
    let m = macros(layer);
    prop_oneof![
        4 => (0u32..300).prop_map(|v| v.to_string()),
        2 => prop::sample::select(vec![
            0u128, 1, 2, 15, 16, 255, 256, 0x1FFF, 0x2000, 65535, 65536, 0xFFFFF, 0x100000,
            0xFFFF_FFFF, 0x1_0000_0000, u64::MAX as u128, 1 << 64, 0xFFFF_0000_0000,
            0xFFFF_FFFF_FFFF, u128::MAX,
        ])
        .prop_map(|v| v.to_string()),
        2 => any::<u32>().prop_map(|v| format!("0x{v:x}")),
        1 => any::<u64>().prop_map(|v| v.to_string()),
        1 => any::<u128>().prop_map(|v| format!("0x{v:X}")),
        2 => (0u64..70000).prop_map(|v| format!("-{v}")),
        1 => any::<i64>().prop_map(|v| v.to_string()),
        2 => any::<[u8; 4]>().prop_map(|b| format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])),
        1 => prop::sample::select(vec![
            "::", "::1", "::ffff:10.0.0.1", "2001:db8::1", "fe80::1", "::ffff:8.8.8.8", "ff02::1:2",
            "::0.0.0.1",
        ])
        .prop_map(str::to_string),
        1 => any::<u128>().prop_map(|v| Ipv6Addr::from(v).to_string()),
        1 => prop::sample::select(m).prop_map(str::to_string),
    ]
}

fn array_index() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop_oneof![8 => 0u32..80, 1 => 0u32..70000],
        any::<bool>(),
    )
        .prop_map(|(neg, i, bytes)| {
            format!(
                "{}{}{}",
                if neg { "-" } else { "" },
                i,
                if bytes { "b" } else { "" }
            )
        })
}

fn test_text(layer: Layer) -> impl Strategy<Value = String> {
    let fields: Vec<Field> = Field::ALL
        .iter()
        .copied()
        .filter(|f| f.valid_for(layer))
        .collect();
    let ops = vec!["==", "=", "!=", "<", "<=", ">", ">="];
    (
        prop::sample::select(fields),
        array_index(),
        0usize..4,
        prop::option::weighted(0.85, (prop::sample::select(ops), value(layer))),
        prop_oneof![8 => Just(None), 1 => Just(Some("true")), 1 => Just(Some("false"))],
    )
        .prop_map(|(field, idx, nots, cmp, constant)| {
            if let Some(c) = constant {
                return c.to_string();
            }
            let mut s = String::new();
            for i in 0..nots {
                s.push_str(if i % 2 == 0 { "not " } else { "!" });
            }
            s.push_str(field.name());
            if field.is_array() {
                s.push('[');
                s.push_str(&idx);
                s.push(']');
            }
            if let Some((op, v)) = cmp {
                s.push_str(&format!(" {op} {v}"));
            }
            s
        })
}

fn filter_text(layer: Layer) -> impl Strategy<Value = String> {
    test_text(layer).prop_recursive(5, 40, 3, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(vec!["and", "or", "&&", "||"]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            inner.clone().prop_map(|a| format!("({a})")),
            (inner.clone(), inner.clone(), inner).prop_map(|(c, t, e)| format!("({c}? {t}: {e})")),
        ]
    })
}

// ---------------------------------------------------------------------------------------
// Packets

/// The packets of `tests/data/vectors.jsonl` (built by hand, see its README).
const SEEDS: &[&str] = &[
    "45100038beef400040063be50a0000015db8d822c000005001020304a0b0c0d05018721006620000474554202f20485454502f312e310d0a",
    "4600002c010200000111e404c0a80102080808080101010014e9003500146b3cdeadbeef0102030405060708",
    "45000024000140008001e2d00a0102030a03020108005435123400016162636465666768",
    "6ab123450018064020010db800000000000000000000000120010db8000000000000000000000002c35001bbffffffff000000006002ffff77a60000020405b4",
    "60000000001400fffe800000000000000000000000000001ff020000000000000000000000010002110001040000000002220223000cfa0301020304",
    "60000000000c3a1f000000000000000000000000000000010000000000000000000000000000000181009fd60007000970696e67",
    "45000024424220b9401103c40a0000050a000006000102030405060708090a0b0c0d0e0f",
    "6000000000182c4020010db800000000000000000000000520010db800000000000000000000000611000001deadbeef03e807d00064ffff0000000000000000",
];

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// A valid TCP/UDP/ICMP/ICMPv6/other packet over IPv4 or IPv6 with random header fields.
fn random_packet() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        prop::sample::select(vec![6u8, 17, 1, 58, 47]),
        prop::collection::vec(any::<u8>(), 64),
        0usize..40,
        0u8..4,
        any::<bool>(),
    )
        .prop_map(|(v6, proto, r, payload_len, frag, ext)| {
            let mut transport = match proto {
                6 => {
                    let opt_words = usize::from(r[0] % 4);
                    let mut t = r[1..21 + 4 * opt_words].to_vec();
                    t[12] = ((5 + opt_words as u8) << 4) | (t[12] & 0x0F);
                    t
                }
                17 => r[1..9].to_vec(),
                1 | 58 => r[1..9].to_vec(),
                _ => r[1..5].to_vec(),
            };
            transport.extend(r[30..].iter().cycle().take(payload_len));
            let mut p = Vec::new();
            if v6 {
                let mut body = Vec::new();
                let mut nh = proto;
                if ext {
                    // A Hop-by-Hop header, or a Fragment header (offset 0 or not).
                    if frag == 0 {
                        body.extend([proto, 0, 1, 4, 0, 0, 0, 0]);
                        nh = 0;
                    } else {
                        let off: u16 = if frag == 1 { 1 } else { 0 };
                        body.extend([proto, 0]);
                        body.extend(((off << 3) | u16::from(frag & 1)).to_be_bytes());
                        body.extend([r[40], r[41], r[42], r[43]]);
                        nh = 44;
                    }
                }
                body.extend(&transport);
                p.extend([0x60 | (r[44] >> 4), r[45], r[46], r[47]]);
                p.extend((body.len() as u16).to_be_bytes());
                p.extend([nh, r[48]]);
                p.extend(&r[0..32]);
                p.extend(body);
            } else {
                let total = 20 + transport.len();
                p.extend([0x45, r[44]]);
                p.extend((total as u16).to_be_bytes());
                p.extend([r[45], r[46]]);
                let fl: u16 = match frag {
                    0 => 0x4000,
                    1 => 0x2000,
                    2 => 0x0010,
                    _ => 0,
                };
                p.extend(fl.to_be_bytes());
                p.extend([r[47], proto, r[48], r[49]]);
                p.extend(&r[50..58]);
                p.extend(transport);
            }
            p
        })
}

fn mutated_seed() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(SEEDS.to_vec()),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    )
        .prop_map(|(hex, muts)| {
            let mut p = unhex(hex);
            let len = p.len();
            for (i, b) in muts {
                let i = i.index(len);
                // Keep the version nibble so that the packet still parses.
                if i == 0 {
                    p[0] = (p[0] & 0xF0) | (b & 0x0F);
                } else {
                    p[i] = b;
                }
            }
            p
        })
}

fn packet() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![mutated_seed(), random_packet()]
}

// ---------------------------------------------------------------------------------------
// Addresses

fn v6_or_mapped() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        any::<u128>().prop_map(Ipv6Addr::from),
        any::<u32>().prop_map(|v| Ipv6Addr::from(0xFFFF_0000_0000u128 | u128::from(v))),
        Just(Ipv6Addr::UNSPECIFIED),
    ]
}

fn address(layer: Layer, ipv6: bool) -> impl Strategy<Value = Address> {
    let events: Vec<Event> = (0..=Event::MAX)
        .filter_map(Event::from_u8)
        .filter(|e| e.valid_for(layer))
        .collect();
    (
        prop_oneof![any::<i64>(), -5i64..5],
        prop::sample::select(events),
        any::<[bool; 3]>(),
        (any::<u32>(), 0u32..4),
        (any::<u64>(), any::<u64>(), any::<u32>()),
        (v6_or_mapped(), v6_or_mapped()),
        (
            any::<u16>(),
            any::<u16>(),
            prop::sample::select(vec![1u8, 6, 17, 58, 0, 47]),
        ),
        (prop::sample::select(Layer::ALL.to_vec()), any::<i16>()),
    )
        .prop_map(
            move |(
                ts,
                event,
                [outbound, loopback, impostor],
                (if_idx, sub),
                ids,
                addrs,
                ports,
                refl,
            )| {
                let mut a = Address::network(outbound);
                a.layer = layer;
                a.event = event;
                a.timestamp = ts;
                a.loopback = loopback;
                a.impostor = impostor;
                a.ipv6 = ipv6;
                let flow = FlowData {
                    endpoint_id: ids.0,
                    parent_endpoint_id: ids.1,
                    process_id: ids.2,
                    local_addr: addrs.0,
                    remote_addr: addrs.1,
                    local_port: ports.0,
                    remote_port: ports.1,
                    protocol: ports.2,
                };
                a.data = match layer {
                    Layer::Network | Layer::NetworkForward => LayerData::Network(NetworkData {
                        if_idx: if_idx % 8,
                        sub_if_idx: sub,
                    }),
                    Layer::Flow => LayerData::Flow(flow),
                    Layer::Socket => LayerData::Socket(flow),
                    Layer::Reflect => LayerData::Reflect(ReflectData {
                        timestamp: ts,
                        process_id: ids.2,
                        layer: refl.0,
                        flags: Flags::NONE,
                        priority: refl.1 % 30001,
                    }),
                };
                if matches!(layer, Layer::Flow | Layer::Socket) {
                    a.ipv6 = flow.local_addr.to_ipv4_mapped().is_none();
                }
                a
            },
        )
}

/// A layer, a filter for it, some packet bytes (empty for the event layers) and an address.
fn case() -> impl Strategy<Value = (Layer, String, Vec<u8>, Address)> {
    layer().prop_flat_map(|layer| {
        let pkt = if layer.is_network() {
            packet().boxed()
        } else {
            Just(Vec::new()).boxed()
        };
        (Just(layer), filter_text(layer), pkt).prop_flat_map(|(layer, f, p)| {
            let ipv6 = p.first().map(|b| b >> 4) == Some(6);
            (Just(layer), Just(f), Just(p), address(layer, ipv6))
        })
    })
}

fn eval(f: &Filter, bytes: &[u8], addr: &Address) -> Option<bool> {
    if addr.layer.is_network() {
        let pkt = parse_lenient(bytes)?;
        Some(f.matches(&pkt, addr))
    } else {
        Some(f.matches_event(addr))
    }
}

proptest! {
    #![proptest_config(Config { cases: 5000, ..Config::default() })]

    /// eval(filter) == eval(compile(format(filter))) == eval(decode(encode(filter))).
    #[test]
    fn three_ways_agree((layer, text, bytes, addr) in case()) {
        let Ok(f) = Filter::compile(&text, layer) else {
            // Out-of-range indexes, macros invalid for the layer... are compile errors.
            return Ok(());
        };
        let Some(want) = eval(&f, &bytes, &addr) else { return Ok(()) };
        if addr.layer.is_network() {
            prop_assert_eq!(f.matches_packet(&bytes, &addr).ok(), Some(want));
        }
        let obj_text = object::encode(f.object());
        let g = Filter::compile(&obj_text, layer)
            .map_err(|e| TestCaseError::fail(format!("{obj_text}: {e}")))?;
        prop_assert_eq!(g.object(), f.object());
        prop_assert_eq!(eval(&g, &bytes, &addr), Some(want), "object {}", obj_text);
        let formatted = format::format(f.object(), layer);
        let h = Filter::compile(&formatted, layer)
            .map_err(|e| TestCaseError::fail(format!("`{formatted}`: {e}")))?;
        prop_assert_eq!(eval(&h, &bytes, &addr), Some(want), "formatted `{}`", formatted);
        // Formatting is stable: the formatted text formats to an equivalent filter again.
        let again = format::format(h.object(), layer);
        let k = Filter::compile(&again, layer)
            .map_err(|e| TestCaseError::fail(format!("`{again}`: {e}")))?;
        prop_assert_eq!(eval(&k, &bytes, &addr), Some(want), "reformatted `{}`", again);
    }

    /// The compiler never panics on arbitrary text.
    #[test]
    fn compile_never_panics_on_text(s in ".{0,200}", layer in layer()) {
        let _ = Filter::compile(&s, layer);
    }

    /// ... nor on arbitrary bytes, on filter-like token soup, or on damaged object text.
    #[test]
    fn compile_never_panics_on_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        soup in prop::collection::vec(prop::sample::select(vec![
            "tcp", "(", ")", "?", ":", "::", "[", "]", "-", "b", "not", "!", "and", "or", "&&",
            "||", "==", "=", "!=", "<", "<=", ">", ">=", "packet32", "tcp.Payload16", "0x",
            "65575", "4294967296", "1.2.3.4", "::ffff:1.2.3.4", "TCP", "CLOSE", "true", "@",
            "udp.DstPort", "timestamp", "priority", "layer", "event", " ",
        ]), 0..60),
        obj_damage in (any::<prop::sample::Index>(), any::<u8>()),
        layer in layer(),
    ) {
        let _ = Filter::compile(&String::from_utf8_lossy(&bytes), layer);
        let _ = Filter::compile(&soup.join(" "), layer);
        let _ = Filter::compile(&soup.concat(), layer);
        let mut obj = b"@WinDiv_WY_1+WW27FMAOk1VV=WWLXX_2WWW2mAX".to_vec();
        let i = obj_damage.0.index(obj.len());
        obj[i] = obj_damage.1;
        let _ = Filter::compile(&String::from_utf8_lossy(&obj), layer);
        let _ = object::decode(&String::from_utf8_lossy(&bytes), layer);
    }
}

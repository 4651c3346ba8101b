//! Filter-evaluation timing for `bench/filter.sh`.
//!
//! Usage: `filter_bench PACKETS CASES ITERATIONS`; prints one line per case:
//! `<ns per compiled evaluation>\t<ns per text evaluation (compile + evaluate)>\t<result>`.
//! The compiled figure includes parsing the packet, as a divert loop does per packet.

use lindivert_core::filter::Filter;
use lindivert_core::packet;
use lindivert_core::{Address, Layer};
use std::hint::black_box;
use std::time::Instant;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: filter_bench PACKETS CASES ITERATIONS");
        std::process::exit(2);
    }
    let iters: u64 = args[3].parse().expect("ITERATIONS must be a number");
    let packets: Vec<(String, Vec<u8>)> = std::fs::read_to_string(&args[1])
        .expect("read PACKETS")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once('\t'))
        .map(|(n, h)| (n.to_string(), hex(h.trim())))
        .collect();
    let cases = std::fs::read_to_string(&args[2]).expect("read CASES");
    for line in cases.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((name, text)) = line.split_once('\t') else {
            continue;
        };
        let bytes = &packets
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("unknown packet {name}"))
            .1;
        let mut addr = Address::network(true);
        addr.ipv6 = bytes.first().map(|b| b >> 4) == Some(6);
        let filter = Filter::compile(text, Layer::Network).expect("filter compiles");
        let result = filter.matches_packet(bytes, &addr).expect("packet parses");

        let compiled = {
            for _ in 0..iters / 10 {
                let p = packet::parse(black_box(bytes)).expect("parse");
                black_box(filter.matches(&p, black_box(&addr)));
            }
            let t0 = Instant::now();
            for _ in 0..iters {
                let p = packet::parse(black_box(bytes)).expect("parse");
                black_box(filter.matches(&p, black_box(&addr)));
            }
            t0.elapsed().as_nanos() as f64 / iters as f64
        };
        let text_iters = (iters / 20).max(1);
        let textual = {
            let t0 = Instant::now();
            for _ in 0..text_iters {
                let f = Filter::compile(black_box(text), Layer::Network).expect("compile");
                black_box(f.matches_packet(black_box(bytes), &addr).expect("eval"));
            }
            t0.elapsed().as_nanos() as f64 / text_iters as f64
        };
        println!("{compiled:.1}\t{textual:.1}\t{}", u8::from(result));
    }
}

//! Arbitrary bytes → the packet parser, checksums (on a copy), hash and TTL decrement.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lindivert_core::packet::{
    calc_checksums, decrement_ttl, hash_packet, packets, parse, parse_exact, parse_lenient,
    verify_checksums, ChecksumFlags,
};

fuzz_target!(|data: &[u8]| {
    let _ = parse(data);
    let _ = parse_exact(data);
    if let Some(p) = parse_lenient(data) {
        let _ = p.ports();
        let _ = p.payload();
        let _ = p.hash(0);
    }
    for p in packets(data).take(64) {
        let _ = p;
    }
    let _ = hash_packet(data, 0x1234_5678_9abc_def0);
    let _ = verify_checksums(data);
    let mut copy = data.to_vec();
    if calc_checksums(&mut copy, ChecksumFlags::default()).is_ok() && parse_exact(&copy).is_some() {
        // Checksums just computed are valid.
        if let Some(s) = verify_checksums(&copy) {
            assert!(s.all_valid(), "{s:?}");
        }
    }
    let mut copy = data.to_vec();
    let _ = decrement_ttl(&mut copy);
});

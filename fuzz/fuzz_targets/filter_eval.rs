//! Input = filter text, a NUL byte, packet bytes (and a layer/flags byte up front):
//! compile, evaluate, and check the object/format round trips evaluate the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lindivert_core::filter::{format, object, Filter};
use lindivert_core::packet::parse_lenient;
use lindivert_core::{Address, Layer};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let (ftext, pkt) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let layer = if ctl & 1 == 0 {
        Layer::Network
    } else {
        Layer::NetworkForward
    };
    let Ok(f) = Filter::compile(&String::from_utf8_lossy(ftext), layer) else {
        return;
    };
    let Some(p) = parse_lenient(pkt) else {
        return;
    };
    let mut addr = Address::network(ctl & 2 != 0);
    addr.layer = layer;
    addr.loopback = ctl & 4 != 0;
    addr.impostor = ctl & 8 != 0;
    addr.ipv6 = p.version == 6;
    addr.timestamp = i64::from(ctl) << 40;
    let r = f.matches(&p, &addr);
    assert_eq!(f.matches_packet(pkt, &addr), Ok(r));
    let g = Filter::compile(&object::encode(f.object()), layer).expect("object text");
    assert_eq!(g.matches(&p, &addr), r, "object text");
    let h = Filter::compile(&format::format(f.object(), layer), layer).expect("format");
    assert_eq!(h.matches(&p, &addr), r, "formatted");
});

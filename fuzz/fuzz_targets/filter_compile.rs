//! Arbitrary bytes → `Filter::compile` at every layer, and `object::decode`. Whatever
//! compiles must survive the object text and format round trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lindivert_core::filter::{format, object, Filter};
use lindivert_core::Layer;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for layer in Layer::ALL {
        let _ = object::decode(&text, layer);
        let Ok(f) = Filter::compile(&text, layer) else {
            continue;
        };
        let obj_text = object::encode(f.object());
        let g = Filter::compile(&obj_text, layer).expect("object text of a compiled filter");
        assert_eq!(g.object(), f.object(), "object text round trip");
        let formatted = format::format(f.object(), layer);
        Filter::compile(&formatted, layer).expect("formatted text compiles");
    }
});

//! Any bytes through the gateway's markup filter, whole and in two pieces: no panic, and
//! filtering the output again changes nothing — nothing the filter let through, or made
//! by removing something, is what it would remove. (Text that merely reads like an
//! attribute, `src="//x` outside any tag, is text: the filter's own parser is the judge.)
#![no_main]
#![forbid(unsafe_code)]
use libfuzzer_sys::fuzz_target;
use veil_node::gateway::{filter_markup, MarkupFilter};

fuzz_target!(|data: &[u8]| {
    if let Ok(once) = filter_markup(data) {
        let twice = filter_markup(&once).expect("filtered output filters");
        assert_eq!(twice, once, "filtering twice changed the output");
    }
    let split = data.len() / 2;
    let mut f = MarkupFilter::new();
    if let Ok(mut out) = f.write(&data[..split]) {
        if let Ok(more) = f.write(&data[split..]) {
            out.extend(more);
            if let Ok(last) = f.end() {
                out.extend(last);
                if let Ok(again) = filter_markup(&out) {
                    assert_eq!(again, out, "filtering the chunked output changed it");
                }
            }
        }
    }
});

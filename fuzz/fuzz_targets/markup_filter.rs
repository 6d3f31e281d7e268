//! Any bytes through the gateway's markup filter, whole and in two pieces: no panic,
//! filtering the output again changes nothing, and no outside `src`/`href` spelled plainly in either output. (The outputs may differ:
//! a `<style>` element is cut where its first loading construct completes, which depends
//! on where a chunk ends.)
#![no_main]
#![forbid(unsafe_code)]
use libfuzzer_sys::fuzz_target;
use veil_node::gateway::{filter_markup, MarkupFilter};

fuzz_target!(|data: &[u8]| {
    let whole = filter_markup(data);
    let split = data.len() / 2;
    let mut f = MarkupFilter::new();
    let pieces = f.write(&data[..split]).and_then(|mut out| {
        out.extend(f.write(&data[split..])?);
        out.extend(f.end()?);
        Ok(out)
    });
    if let Ok(once) = &whole {
        // Nothing the filter let through, or made by removing something, is what it
        // would remove.
        let twice = filter_markup(once).expect("filtered output filters");
        assert_eq!(&twice, once, "filtering twice changed the output");
    }
    for out in [whole, pieces].into_iter().flatten() {
        let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
        for attr in ["src=\"http:", "href=\"http:", "src=\"//", "href=\"//"] {
            assert!(!text.contains(attr), "{attr} survived");
        }
    }
});

//! Any text must parse to a URI or an error; a parsed URI prints to text that parses back
//! to the same URI. Covers content-hash and signed (SSK, USK, KSK) URIs, as pasted into
//! `veil get` or the gateway's address bar.
#![no_main]
#![forbid(unsafe_code)]
use libfuzzer_sys::fuzz_target;
use veil_proto::uri::AnyUri;
use veil_proto::Uri;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(uri) = text.parse::<Uri>() {
            assert_eq!(uri.to_string().parse::<Uri>().unwrap(), uri);
        }
        if let Ok(uri) = text.parse::<AnyUri>() {
            assert_eq!(uri.to_string().parse::<AnyUri>().unwrap(), uri);
        }
    }
});

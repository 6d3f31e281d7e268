//! Any text as a node's config file gives a config or a one-line error, never a panic.
#![no_main]
#![forbid(unsafe_code)]
use libfuzzer_sys::fuzz_target;
use veil_node::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = Config::from_toml(text, std::path::Path::new("veil.toml")) {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }
});

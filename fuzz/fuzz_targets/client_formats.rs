//! What a publisher controls once decrypted: top blocks, index blocks, directory
//! manifests and signed-name redirects. Any bytes give a value or an error; a value
//! encodes to bytes that decode to the same value.
#![no_main]
#![forbid(unsafe_code)]
use libfuzzer_sys::fuzz_target;
use veil_client::format::{IndexBlock, Manifest, TopBlock};
use veil_client::signed::{parse_redirect, redirect_payload};

fuzz_target!(|data: &[u8]| {
    if let Ok(top) = TopBlock::from_payload(data) {
        assert_eq!(TopBlock::from_payload(&top.to_payload()).unwrap(), top);
    }
    if let Ok(index) = IndexBlock::from_payload(data) {
        assert_eq!(IndexBlock::from_payload(&index.to_payload()).unwrap(), index);
    }
    if let Ok(manifest) = Manifest::from_bytes(data) {
        assert_eq!(Manifest::from_bytes(&manifest.to_bytes()).unwrap(), manifest);
    }
    if let Ok(target) = parse_redirect(data) {
        assert_eq!(parse_redirect(&redirect_payload(target)).unwrap(), target);
    }
});

//! A block from a peer: any bytes, checked against any routing key (as a content-hash
//! block, and as a signed block whose key it claims), and decrypted with any data key,
//! must give a result or an error, never a panic; a block that verifies is the size it
//! must be.
#![no_main]
#![forbid(unsafe_code)]
use libfuzzer_sys::fuzz_target;
use veil_proto::{block, ssk, verify, Block, DataKey, RoutingKey, BLOCK_LEN};

fuzz_target!(|data: &[u8]| {
    if data.len() < 64 {
        return;
    }
    let key = RoutingKey(data[..32].try_into().unwrap());
    let data_key = DataKey(data[32..64].try_into().unwrap());
    let body = &data[64..];
    // Short inputs are stretched to a whole block, so the checks past the length run.
    let mut full = body.to_vec();
    if !full.is_empty() && full.len() < BLOCK_LEN {
        full = full.iter().copied().cycle().take(BLOCK_LEN).collect();
    }
    for bytes in [body, &full[..]] {
        if verify::verify(bytes, &key).is_ok() {
            assert_eq!(bytes.len(), BLOCK_LEN);
        }
        let _ = block::decrypt(bytes, &data_key);
        let _ = ssk::verify_ssk(bytes, &key);
        if let Some(claimed) = ssk::claimed_routing_key(bytes) {
            let _ = ssk::verify_ssk(bytes, &claimed);
        }
        if let Ok(b) = Block::new(bytes::Bytes::copy_from_slice(bytes)) {
            let _ = b.verify(&key);
            let _ = b.decrypt(&data_key);
        }
    }
});

//! Any bytes a peer sends must decode to a message or an error, never a panic, and a
//! message that decodes must encode to bytes that decode to the same message.
#![no_main]
#![forbid(unsafe_code)]
use libfuzzer_sys::fuzz_target;
use veil_proto::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Message::decode(data) {
        assert_eq!(Message::decode(&msg.encode()).unwrap(), msg);
    }
});

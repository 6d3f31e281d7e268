//! `veil-client`: encode, publish and fetch Veil documents.
//!
//! The client encrypts everything itself: a node only ever receives CHK blocks, whose
//! keys travel in the URI and never reach it.
//!
//! # Layout
//! - [`source`]: the [`BlockSource`] / [`BlockSink`] traits the rest is generic over,
//!   and [`MemoryStore`] for tests.
//! - [`mod@format`]: the top block, index block and manifest formats (frozen by test vectors).
//! - [`mod@encode`]: a byte stream to blocks and a URI, streaming and convergent.
//! - [`decode`]: a URI to a verified, in-order byte stream, fetched in parallel.
//! - [`segment`]: the Reed–Solomon code of a segment (check blocks, restoring lost data).
//! - [`dir`]: directories: publish, resolve paths, restore.
//! - [`signed`]: signed names (SSK, USK, KSK): keystore, publishing, resolving.
//! - [`keyword`]: finding documents by words: keyword entries in slots, signed indexes.
//! - [`keepalive`]: check every block of a document, rebuild and insert again what faded.
//! - `api` (feature `api`, on with the default `cli`): the client of `veild`'s HTTP
//!   API, and how to find the node.
//! - [`paths`]: the default data directory.
//! - [`save`]: a fetched document onto the reader's disk, with `veil get`'s guarantees.
#![forbid(unsafe_code, unused_must_use)]
#![warn(missing_docs)]

#[cfg(feature = "api")]
pub mod api;
pub mod decode;
pub mod dir;
pub mod encode;
pub mod format;
pub mod keepalive;
pub mod keyword;
pub mod paths;
pub mod save;
pub mod segment;
pub mod signed;
pub mod source;

#[cfg(feature = "api")]
pub use api::{ApiClient, ApiError, LocateError};
pub use decode::{
    body_stream, body_stream_healing, fetch_top, write_body, write_body_healing, DecodeError, Heal,
    Position,
};
pub use dir::{put_dir, resolve, restore, Resolved};
pub use encode::{encode, EncodeError, EncodeOptions, Encoded, DEFAULT_INSERT_WINDOW};
pub use keepalive::{keepalive, KeepaliveError, KeepaliveReport};
pub use source::{BlockRole, BlockSink, BlockSource, FetchError, InsertError, MemoryStore};

/// An error and its causes on one line, each cause once: an error that names its source
/// in its own message is not followed by it again. What `veil` and `veild` print for a
/// failure.
pub fn error_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cause = c.source();
    }
    msg
}

#[cfg(test)]
mod roundtrip_tests;

#[cfg(test)]
mod error_line_tests {
    use super::error_line;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read the token ({0})")]
    struct Named(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("starting the node")]
    struct Outer(#[source] Named);

    #[test]
    fn causes_appear_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = Outer(Named(io));
        assert_eq!(
            error_line(&e),
            "starting the node: cannot read the token (no such file)"
        );
    }
}

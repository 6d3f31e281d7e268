//! `veil-proto`: Veil's pure protocol. No I/O, no tokio, no clock: everything here is a
//! function of its inputs, so the daemon and the simulator run the same code and a test
//! can replay any run.
//!
//! # Layout
//! - [`keys`]: routing keys, data keys and node keys, and their text form.
//! - [`block`]: CHK blocks: convergent encryption, decryption.
//! - [`ssk`]: signed blocks (SSK, USK, KSK): key pairs, signing, checking.
//! - [`mod@verify`]: whether a block, CHK or signed, is what its routing key names.
//! - [`uri`]: `veil:CHK@...` URIs.
//! - [`ring`]: locations on the ring and the distance between them.
//! - [`message`]: the wire messages nodes exchange, with hostile-input decoding.
//! - [`topology`]: seeded network shapes (small world) for testnets and tests.
//! - [`router`]: the sans-IO routing core that the daemon and the simulator share.
//! - [`swap`]: the location-swapping rule and its commitments (darknet).
#![forbid(unsafe_code, unused_must_use)]
#![warn(missing_docs)]

pub mod aead;
pub mod block;
pub mod keys;
pub mod message;
pub mod ring;
pub mod router;
pub mod ssk;
pub mod swap;
pub mod topology;
pub mod uri;
pub mod verify;

pub use block::{Block, BlockError, ChkKeys, BLOCK_LEN, MAX_PAYLOAD};
pub use keys::{DataKey, KeyParseError, NodeKey, RoutingKey};
pub use message::{Hello, Htl, Message, MessageError, PeerAddress, PeerAddressError, RequestId};
pub use ring::{Distance, Location};
pub use router::{
    BlockStore, HtlPolicy, LinkDecision, OpennetConfig, PeerId, PeerMeta, PeerOrigin, Placement,
    Router, RouterConfig,
};
pub use uri::{Uri, UriError};

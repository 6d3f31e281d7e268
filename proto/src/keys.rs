//! Key newtypes: the routing key a block is stored and routed under, the data key that
//! decrypts it, and a node's static public key.
//!
//! All three are 32 bytes. Their text form is unpadded URL-safe base64 (43 characters),
//! which is what URIs, peer addresses and the HTTP API use.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Length of every key in bytes.
pub const KEY_LEN: usize = 32;

/// Length of a key's base64url text form.
pub const KEY_TEXT_LEN: usize = 43;

/// Why a key's text form was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyParseError {
    /// The text is not unpadded URL-safe base64.
    #[error("not URL-safe base64: {0}")]
    BadBase64(String),
    /// The text decodes to the wrong number of bytes.
    #[error("a key is {KEY_LEN} bytes ({KEY_TEXT_LEN} base64 characters), this one is {0} bytes")]
    WrongLength(usize),
}

/// Decodes a 32-byte key from unpadded URL-safe base64.
pub(crate) fn decode_key(text: &str) -> Result<[u8; KEY_LEN], KeyParseError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|e| KeyParseError::BadBase64(e.to_string()))?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| KeyParseError::WrongLength(bytes.len()))
}

macro_rules! key_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub [u8; KEY_LEN]);

        impl $name {
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
                &self.0
            }

            /// The unpadded URL-safe base64 text form.
            pub fn to_text(&self) -> String {
                URL_SAFE_NO_PAD.encode(self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_text())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Short on purpose: enough to tell keys apart in a test failure.
                write!(f, concat!(stringify!($name), "({}..)"), &self.to_text()[..8])
            }
        }

        impl FromStr for $name {
            type Err = KeyParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                decode_key(s).map($name)
            }
        }
    };
}

key_type!(
    /// The routing key R of a CHK block: SHA-256 over a domain tag and the block's
    /// ciphertext. Nodes store, route and verify blocks by it; it reveals nothing of the
    /// content.
    RoutingKey
);

key_type!(
    /// The data key K of a CHK block: SHA-256 over a domain tag and the plaintext payload.
    /// Only a URI carries it; it decrypts the block.
    DataKey
);

key_type!(
    /// A node's identity: its static X25519 public key, as the Noise handshake proves it.
    NodeKey
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let k = RoutingKey([7; 32]);
        let t = k.to_string();
        assert_eq!(t.len(), KEY_TEXT_LEN);
        assert_eq!(t.parse::<RoutingKey>().unwrap(), k);
    }

    #[test]
    fn rejects_bad_text() {
        assert!(matches!(
            "!!".parse::<DataKey>(),
            Err(KeyParseError::BadBase64(_))
        ));
        assert_eq!(
            "AAAA".parse::<DataKey>(),
            Err(KeyParseError::WrongLength(3))
        );
    }
}

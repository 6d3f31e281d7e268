//! CHK blocks: convergent encryption of up to 32 KiB into one fixed-size block.
//!
//! Layout (frozen by the test vectors below):
//!
//! ```text
//! frame      = u32 big-endian payload length || payload || zero padding   (FRAME_LEN bytes)
//! data key   K = SHA-256("veil/chk/data-key/v1" || payload)
//! block      = ChaCha20-Poly1305(K, nonce = 0^12, aad = "veil/chk/v1", frame) || tag
//! routing key R = SHA-256("veil/chk/routing-key/v1" || block)
//! ```
//!
//! Every block is [`BLOCK_LEN`] bytes whatever it holds, so size reveals nothing. The key is
//! unique to the content, so the fixed nonce is never reused with a different plaintext.
//! Encoding writes into a caller's buffer and encrypts in place; verifying reads a
//! borrowed slice: no copies beyond the one into the output.

use crate::keys::{DataKey, RoutingKey};
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;

/// The most payload one block carries.
pub const MAX_PAYLOAD: usize = 32 * 1024;
/// Length of the length prefix inside the frame.
const LEN_PREFIX: usize = 4;
/// Length of the padded plaintext frame.
pub const FRAME_LEN: usize = LEN_PREFIX + MAX_PAYLOAD;
/// Length of the Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Length of every encoded block.
pub const BLOCK_LEN: usize = FRAME_LEN + TAG_LEN;

const DATA_KEY_TAG: &[u8] = b"veil/chk/data-key/v1";
const ROUTING_KEY_TAG: &[u8] = b"veil/chk/routing-key/v1";
const AAD: &[u8] = b"veil/chk/v1";

/// What can go wrong with a block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// The payload is larger than one block holds.
    #[error("payload of {0} bytes exceeds the {MAX_PAYLOAD}-byte block limit")]
    PayloadTooLarge(usize),
    /// The block (or output buffer) is not exactly [`BLOCK_LEN`] bytes.
    #[error("a block is {BLOCK_LEN} bytes, got {0}")]
    WrongLength(usize),
    /// The block does not hash to the routing key it was named by: it was altered or
    /// belongs to another key.
    #[error("block does not match its routing key")]
    RoutingKeyMismatch,
    /// Decryption failed: wrong data key, or a tampered block.
    #[error("block does not decrypt under this data key")]
    Decrypt,
    /// The block decrypted but its frame is malformed (a length over the limit).
    #[error("block frame is malformed")]
    BadFrame,
    /// A signed (SSK) block whose signature does not hold: forged or altered.
    #[error("signed block has a bad signature")]
    BadSignature,
}

/// The two keys of a CHK block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChkKeys {
    /// Names and verifies the block.
    pub routing: RoutingKey,
    /// Decrypts the block.
    pub data: DataKey,
}

/// The data key of a payload.
pub fn data_key(payload: &[u8]) -> DataKey {
    let mut h = Sha256::new();
    h.update(DATA_KEY_TAG);
    h.update(payload);
    DataKey(h.finalize().into())
}

/// The routing key of an encoded block.
pub fn routing_key(block: &[u8]) -> RoutingKey {
    let mut h = Sha256::new();
    h.update(ROUTING_KEY_TAG);
    h.update(block);
    RoutingKey(h.finalize().into())
}

/// Encodes `payload` into `out`, which must be exactly [`BLOCK_LEN`] bytes.
pub fn encode_into(payload: &[u8], out: &mut [u8]) -> Result<ChkKeys, BlockError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(BlockError::PayloadTooLarge(payload.len()));
    }
    if out.len() != BLOCK_LEN {
        return Err(BlockError::WrongLength(out.len()));
    }
    let data = data_key(payload);
    let (frame, tag_out) = out.split_at_mut(FRAME_LEN);
    frame[..LEN_PREFIX].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    frame[LEN_PREFIX..LEN_PREFIX + payload.len()].copy_from_slice(payload);
    frame[LEN_PREFIX + payload.len()..].fill(0);
    tag_out.copy_from_slice(&crate::aead::seal(&data.0, [0; 12], AAD, frame));
    Ok(ChkKeys {
        routing: routing_key(out),
        data,
    })
}

/// Encodes `payload` into a new [`Block`].
pub fn encode(payload: &[u8]) -> Result<(Block, ChkKeys), BlockError> {
    let mut out = vec![0u8; BLOCK_LEN];
    let keys = encode_into(payload, &mut out)?;
    Ok((Block(Bytes::from(out)), keys))
}

/// Decrypts `block` with `key` and returns the payload.
pub fn decrypt(block: &[u8], key: &DataKey) -> Result<Vec<u8>, BlockError> {
    if block.len() != BLOCK_LEN {
        return Err(BlockError::WrongLength(block.len()));
    }
    let (frame, tag) = block.split_at(FRAME_LEN);
    let mut buf = crate::aead::open(&key.0, [0; 12], AAD, frame, tag).ok_or(BlockError::Decrypt)?;
    let len = u32::from_be_bytes(buf[..LEN_PREFIX].try_into().expect("4 bytes")) as usize;
    if len > MAX_PAYLOAD {
        return Err(BlockError::BadFrame);
    }
    buf.copy_within(LEN_PREFIX..LEN_PREFIX + len, 0);
    buf.truncate(len);
    Ok(buf)
}

/// An encoded block: exactly [`BLOCK_LEN`] bytes of ciphertext, cheap to clone.
///
/// Holding a `Block` says only that its length is right; whether it matches a routing key
/// is [`Block::verify`]'s question.
#[derive(Clone, PartialEq, Eq)]
pub struct Block(Bytes);

impl Block {
    /// Wraps bytes that must be exactly [`BLOCK_LEN`] long.
    pub fn new(bytes: Bytes) -> Result<Block, BlockError> {
        if bytes.len() != BLOCK_LEN {
            return Err(BlockError::WrongLength(bytes.len()));
        }
        Ok(Block(bytes))
    }

    /// The ciphertext.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The ciphertext as shared bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// The routing key this block's bytes hash to.
    pub fn routing_key(&self) -> RoutingKey {
        routing_key(&self.0)
    }

    /// Decrypts the block with `key`.
    pub fn decrypt(&self, key: &DataKey) -> Result<Vec<u8>, BlockError> {
        decrypt(&self.0, key)
    }
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Block({:?})", self.routing_key())
    }
}

impl From<Block> for Bytes {
    fn from(b: Block) -> Bytes {
        b.0
    }
}

impl Serialize for Block {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Block {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Block, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Block;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{BLOCK_LEN} bytes of block")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Block, E> {
                if v.len() != BLOCK_LEN {
                    return Err(E::invalid_length(v.len(), &self));
                }
                Ok(Block(Bytes::copy_from_slice(v)))
            }
        }
        d.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The views of a block are its bytes, and its Debug names its key; a value of the
    /// wrong shape is refused with a message that says what a block is.
    #[test]
    fn views_debug_and_refusals() {
        let (b, keys) = encode(b"views").unwrap();
        assert_eq!(b.bytes().as_ref(), b.as_bytes());
        assert_eq!(b.bytes().len(), BLOCK_LEN);
        assert_eq!(Bytes::from(b.clone()).as_ref(), b.as_bytes());
        assert_eq!(format!("{b:?}"), format!("Block({:?})", keys.routing));
        use serde::de::value::{BytesDeserializer, Error, U32Deserializer};
        let e = Block::deserialize(U32Deserializer::<Error>::new(5)).unwrap_err();
        assert!(e.to_string().contains("32788 bytes of block"), "{e}");
        let short = [0u8; 10];
        let e = Block::deserialize(BytesDeserializer::<Error>::new(&short)).unwrap_err();
        assert!(e.to_string().contains("32788 bytes of block"), "{e}");
        let whole = b.as_bytes().to_vec();
        let back = Block::deserialize(BytesDeserializer::<Error>::new(&whole)).unwrap();
        assert_eq!(back, b);
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Frozen format: if any of these change, every stored block and URI breaks. The
    /// expected values were computed independently with Python's `hashlib` and
    /// `cryptography` (ChaCha20Poly1305), not by this code.
    #[test]
    fn vectors() {
        let (block, keys) = encode(b"hello veil").unwrap();
        assert_eq!(
            keys.data.to_string(),
            "DCRzRIIT9arISeAxB4AwHLAjn-0uAYoQO5o5cgC3VL4"
        );
        assert_eq!(
            keys.routing.to_string(),
            "MQDHfB0chLtC0lSyBSeuRyEHTebiXuUW4Kh361XtY74"
        );
        assert_eq!(
            hex(&block.as_bytes()[..16]),
            "32b54d3db9b044ec8c4a3c16e710ebe3"
        );
        let (_, empty) = encode(b"").unwrap();
        assert_eq!(
            empty.routing.to_string(),
            "77WBXEFE20FMb11cbyFboHGnIeL4yFAtS8vIojFpdRk"
        );
    }

    #[test]
    fn round_trip_edges() {
        for len in [0, 1, MAX_PAYLOAD - 1, MAX_PAYLOAD] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let (block, keys) = encode(&payload).unwrap();
            assert_eq!(block.as_bytes().len(), BLOCK_LEN);
            block.verify(&keys.routing).unwrap();
            assert_eq!(block.decrypt(&keys.data).unwrap(), payload);
        }
    }

    #[test]
    fn too_large() {
        assert_eq!(
            encode(&vec![0; MAX_PAYLOAD + 1]).unwrap_err(),
            BlockError::PayloadTooLarge(MAX_PAYLOAD + 1)
        );
        let mut small = vec![0; 10];
        assert_eq!(
            encode_into(b"x", &mut small).unwrap_err(),
            BlockError::WrongLength(10)
        );
    }

    #[test]
    fn convergent() {
        assert_eq!(encode(b"same").unwrap().1, encode(b"same").unwrap().1);
        assert_ne!(encode(b"same").unwrap().1, encode(b"other").unwrap().1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn any_payload_round_trips(payload in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let (block, keys) = encode(&payload).unwrap();
            prop_assert!(block.verify(&keys.routing).is_ok());
            prop_assert_eq!(block.decrypt(&keys.data).unwrap(), payload);
        }
    }
}

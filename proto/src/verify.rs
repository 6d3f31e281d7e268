//! Whether a block is what its routing key names, whatever kind of key it is: the check
//! every node makes before it stores, caches or forwards a block.
//!
//! A CHK block ([`crate::block`]) is named by the hash of its bytes; a signed SSK block
//! ([`crate::ssk`]) by its own public key and name, and its signature must hold. This
//! module knows both kinds, so neither kind's module needs the other.

use crate::block::{self, Block, BlockError, BLOCK_LEN};
use crate::keys::RoutingKey;

/// Checks that `block` is a well-formed block named by `key`: a CHK block hashing to it,
/// or a signed SSK block whose own public key and name give it and whose signature holds
/// ([`crate::ssk::verify_ssk`]).
pub fn verify(block: &[u8], key: &RoutingKey) -> Result<(), BlockError> {
    if block.len() != BLOCK_LEN {
        return Err(BlockError::WrongLength(block.len()));
    }
    if block::routing_key(block) == *key {
        return Ok(());
    }
    crate::ssk::verify_ssk(block, key)
}

impl Block {
    /// Checks the block against `key` (see [`verify`]).
    pub fn verify(&self, key: &RoutingKey) -> Result<(), BlockError> {
        verify(self.as_bytes(), key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{decrypt, encode};
    use crate::keys::DataKey;

    #[test]
    fn tampered_and_wrong_keys() {
        let (block, keys) = encode(b"secret").unwrap();
        let mut bad = block.as_bytes().to_vec();
        bad[100] ^= 1;
        assert_eq!(
            verify(&bad, &keys.routing),
            Err(BlockError::RoutingKeyMismatch)
        );
        assert_eq!(decrypt(&bad, &keys.data), Err(BlockError::Decrypt));
        assert_eq!(block.decrypt(&DataKey([1; 32])), Err(BlockError::Decrypt));
        assert_eq!(
            block.verify(&RoutingKey([1; 32])),
            Err(BlockError::RoutingKeyMismatch)
        );
        assert_eq!(
            verify(&bad[..5], &keys.routing),
            Err(BlockError::WrongLength(5))
        );
    }
}

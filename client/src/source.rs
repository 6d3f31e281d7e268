//! Where blocks come from and go to: the [`BlockSource`] and [`BlockSink`] traits, their
//! errors, and [`MemoryStore`], an in-memory implementation for tests.
//!
//! The encoder and decoder are generic over these traits, so the same code publishes
//! through a node's HTTP API (`api::ApiClient`, feature `api`), straight into an in-process node
//! (the gateway inside `veild`), or into memory in a unit test.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use veil_proto::{Block, RoutingKey};

/// Why a block could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No node that was asked has the block.
    #[error("block not found")]
    NotFound,
    /// The node refused our credentials.
    #[error("the node refused the API token")]
    Unauthorized,
    /// Nothing answers at the node's address.
    #[error("the node is not running ({0})")]
    NodeNotRunning(String),
    /// The request ran out of time.
    #[error("timed out")]
    Timeout,
    /// The node is overloaded or has no peers to ask.
    #[error("the node could not complete it: {0}")]
    Unavailable(String),
    /// The bytes that came back are not a block named by the requested key.
    #[error("the block does not match its key")]
    BadBlock,
    /// Anything else (transport error, unexpected answer).
    #[error("{0}")]
    Other(String),
}

/// Why a block could not be inserted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InsertError {
    /// The node refused our credentials.
    #[error("the node refused the API token")]
    Unauthorized,
    /// Nothing answers at the node's address.
    #[error("the node is not running ({0})")]
    NodeNotRunning(String),
    /// The request ran out of time.
    #[error("timed out")]
    Timeout,
    /// The node is overloaded or cannot store the block now.
    #[error("the node could not complete it: {0}")]
    Unavailable(String),
    /// The node says the block is malformed or does not match its key.
    #[error("the node rejected the block: {0}")]
    Rejected(String),
    /// Another block is already published under this signed key; the first stays.
    #[error("another document is already published under this name (the first stays)")]
    Collision,
    /// Anything else (transport error, unexpected answer).
    #[error("{0}")]
    Other(String),
}

/// Fetches blocks by routing key.
///
/// Implementations should verify the block against `key` (a node does), but callers in
/// this crate verify again: a source is never trusted.
pub trait BlockSource: Clone + Send + Sync + 'static {
    /// Fetches the block named `key`.
    fn fetch(&self, key: RoutingKey) -> impl Future<Output = Result<Block, FetchError>> + Send;
}

/// What a block is to its document, so a node can give it the protection it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BlockRole {
    /// A data or check block: one of many, with Reed–Solomon redundancy beside it.
    #[default]
    Data,
    /// A top or index block: every reader of the document needs it, so nodes store it
    /// on more replicas (the node's `index_replicas`).
    Index,
}

impl BlockRole {
    /// The API's name for it (`?role=`).
    pub fn as_str(self) -> &'static str {
        match self {
            BlockRole::Data => "data",
            BlockRole::Index => "index",
        }
    }
}

/// Stores blocks.
pub trait BlockSink: Clone + Send + Sync + 'static {
    /// Inserts `block`, whose routing key is `key` (the caller computed it while encoding).
    fn insert(
        &self,
        key: RoutingKey,
        block: Block,
    ) -> impl Future<Output = Result<(), InsertError>> + Send;

    /// Inserts `block` as a block of `role`. Sinks that can protect some blocks more
    /// (a node) override it; the default ignores the role.
    fn insert_as(
        &self,
        key: RoutingKey,
        block: Block,
        role: BlockRole,
    ) -> impl Future<Output = Result<(), InsertError>> + Send {
        let _ = role;
        self.insert(key, block)
    }
}

/// A sink that can tell whether it already holds a block, so a publisher can skip it.
pub trait HoldsBlocks: Send + Sync {
    /// Whether the block named `key` is held (false when that cannot be told).
    fn holds(&self, key: &RoutingKey) -> impl Future<Output = bool> + Send;
}

/// An in-memory block store: a [`BlockSource`] and [`BlockSink`] for tests and tools.
///
/// Clones share the same blocks. It also counts inserts, so a test can see what a node
/// would have received.
#[derive(Clone, Default, Debug)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default, Debug)]
struct Inner {
    blocks: HashMap<RoutingKey, Block>,
    inserts: u64,
    /// The role of the last insert of each key.
    roles: HashMap<RoutingKey, BlockRole>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated, so a poisoned
        // lock is still safe to use.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of distinct blocks held.
    pub fn len(&self) -> usize {
        self.lock().blocks.len()
    }

    /// Whether the store holds no block.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of insert calls so far (duplicates included).
    pub fn insert_count(&self) -> u64 {
        self.lock().inserts
    }

    /// A copy of every block held.
    pub fn blocks(&self) -> Vec<Block> {
        self.lock().blocks.values().cloned().collect()
    }

    /// Removes a block, so a test can simulate its loss. Returns whether it was there.
    pub fn remove(&self, key: &RoutingKey) -> bool {
        self.lock().blocks.remove(key).is_some()
    }

    /// Whether the block named `key` is held.
    pub fn contains(&self, key: &RoutingKey) -> bool {
        self.lock().blocks.contains_key(key)
    }

    /// The role the block named `key` was last inserted as.
    pub fn role(&self, key: &RoutingKey) -> Option<BlockRole> {
        self.lock().roles.get(key).copied()
    }
}

impl BlockSource for MemoryStore {
    async fn fetch(&self, key: RoutingKey) -> Result<Block, FetchError> {
        self.lock()
            .blocks
            .get(&key)
            .cloned()
            .ok_or(FetchError::NotFound)
    }
}

impl HoldsBlocks for MemoryStore {
    async fn holds(&self, key: &RoutingKey) -> bool {
        self.contains(key)
    }
}

impl BlockSink for MemoryStore {
    async fn insert(&self, key: RoutingKey, block: Block) -> Result<(), InsertError> {
        self.insert_as(key, block, BlockRole::Data).await
    }

    async fn insert_as(
        &self,
        key: RoutingKey,
        block: Block,
        role: BlockRole,
    ) -> Result<(), InsertError> {
        // Refuse what a node would refuse, so tests catch an encoder that names blocks
        // wrongly.
        block
            .verify(&key)
            .map_err(|e| InsertError::Rejected(e.to_string()))?;
        let mut inner = self.lock();
        if inner.blocks.get(&key).is_some_and(|held| *held != block) {
            // As a node does: a signed key keeps its first block.
            return Err(InsertError::Collision);
        }
        inner.inserts += 1;
        inner.blocks.insert(key, block);
        inner.roles.insert(key, role);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_round_trip() {
        let store = MemoryStore::new();
        let (block, keys) = veil_proto::block::encode(b"x").unwrap();
        assert_eq!(
            store.fetch(keys.routing).await.unwrap_err(),
            FetchError::NotFound
        );
        store.insert(keys.routing, block.clone()).await.unwrap();
        assert_eq!(store.fetch(keys.routing).await.unwrap(), block);
        assert_eq!(store.len(), 1);
        assert!(matches!(
            store.insert(RoutingKey([0; 32]), block).await,
            Err(InsertError::Rejected(_))
        ));
        assert!(store.remove(&keys.routing));
        assert!(store.is_empty());
    }
}

//! Signed names: the keystore, publishing a document or a site edition under a signed
//! key (SSK, USK) or keywords (KSK), and resolving such a URI to the CHK document it
//! names.
//!
//! A signed block carries a *redirect*: a format version byte and the CHK keys of the
//! document's top block (65 bytes; see docs/formats.md). The document itself is an
//! ordinary CHK document, so everything that makes those durable and deduplicated holds
//! for it, and a signed name costs one more block.
//!
//! Editions of a site (USK) are SSK documents named `<site>-<edition>`. The newest is
//! found by probing: from a hint (the edition this keystore last published, else 0), a
//! window of [`PROBE_WINDOW`] consecutive editions at once, doubling the step while a
//! window holds one, then halving back over the gap; a window rather than one edition
//! steps over a few editions that faded. At most [`MAX_PROBES`] probes in all.

use crate::format::ChildRef;
use crate::source::{BlockRole, BlockSink, BlockSource, FetchError, HoldsBlocks, InsertError};
use futures::future::join_all;
use std::path::{Path, PathBuf};
use veil_proto::ssk::{KeyPair, SskKeys};
use veil_proto::uri::{usk_name, SignedUri};
use veil_proto::{ChkKeys, DataKey, RoutingKey};

/// The version byte of a redirect payload.
pub const REDIRECT_VERSION: u8 = 1;
/// Editions probed at once when looking for the newest.
pub const PROBE_WINDOW: u64 = 4;
/// Most editions probed to find the newest.
pub const MAX_PROBES: usize = 64;
/// Name of the keystore folder in the data directory.
pub const KEYSTORE_DIR: &str = "keys";

/// Why a signed name could not be made, published or resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignedError {
    /// The keystore or one of its files could not be used.
    #[error("{0}")]
    Keystore(String),
    /// The signed block could not be fetched.
    #[error("the signed block could not be fetched: {0}")]
    Fetch(FetchError),
    /// The block is not what the URI names (forged, or for another name).
    #[error("the signed block does not verify for this URI: {0}")]
    Bad(String),
    /// Publishing failed.
    #[error(transparent)]
    Insert(#[from] InsertError),
    /// No edition of the site could be found.
    #[error("no edition of site {0:?} was found")]
    NoEdition(String),
}

/// The payload of a signed block that points at the CHK document `target`.
pub fn redirect_payload(target: ChkKeys) -> Vec<u8> {
    let mut p = Vec::with_capacity(65);
    p.push(REDIRECT_VERSION);
    p.extend_from_slice(&target.routing.0);
    p.extend_from_slice(&target.data.0);
    p
}

/// The CHK document a redirect payload points at.
pub fn parse_redirect(payload: &[u8]) -> Result<ChkKeys, SignedError> {
    if payload.len() != 65 || payload[0] != REDIRECT_VERSION {
        return Err(SignedError::Bad(format!(
            "not a version-{REDIRECT_VERSION} redirect ({} bytes)",
            payload.len()
        )));
    }
    let mut r = [0u8; 32];
    let mut d = [0u8; 32];
    r.copy_from_slice(&payload[1..33]);
    d.copy_from_slice(&payload[33..65]);
    Ok(ChkKeys {
        routing: RoutingKey(r),
        data: DataKey(d),
    })
}

/// Publishes the redirect `name` → `target` under `pair`; returns its routing key. A
/// different redirect already under that name fails with [`InsertError::Collision`].
pub async fn publish_signed<K: BlockSink>(
    sink: &K,
    pair: &KeyPair,
    name: &str,
    target: ChkKeys,
) -> Result<RoutingKey, InsertError> {
    let mut nonce = [0u8; 12];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut nonce);
    let (block, key) = pair
        .sign(name, &redirect_payload(target), nonce)
        .map_err(|e| InsertError::Other(e.to_string()))?;
    // Signed blocks are what readers find first: protect them as index blocks.
    sink.insert_as(key, block, BlockRole::Index).await?;
    Ok(key)
}

/// The CHK document the signed document `name` of `keys` points at.
pub async fn resolve_name<S: BlockSource>(
    source: &S,
    keys: SskKeys,
    name: &str,
) -> Result<ChkKeys, SignedError> {
    let block = source
        .fetch(keys.routing_key(name))
        .await
        .map_err(SignedError::Fetch)?;
    let payload = keys
        .open(name, &block)
        .map_err(|e| SignedError::Bad(e.to_string()))?;
    parse_redirect(&payload)
}

/// Where a signed URI leads: the CHK document, and for a USK the edition found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The document's top block keys.
    pub target: ChkKeys,
    /// The USK edition (the one asked for, or the newest found for -1).
    pub edition: Option<u64>,
}

/// Resolves a signed URI (for USK -1, looking up the newest edition from `hint`).
pub async fn resolve_signed<S: BlockSource>(
    source: &S,
    uri: &SignedUri,
    hint: u64,
) -> Result<Resolution, SignedError> {
    match uri {
        SignedUri::Usk {
            keys,
            site,
            edition: -1,
            ..
        } => {
            let newest = newest_edition(source, *keys, site, hint)
                .await?
                .ok_or_else(|| SignedError::NoEdition(site.clone()))?;
            let target = resolve_name(source, *keys, &usk_name(site, newest)).await?;
            Ok(Resolution {
                target,
                edition: Some(newest),
            })
        }
        _ => {
            let (keys, name) = uri
                .target()
                .ok_or_else(|| SignedError::Bad("no such edition".into()))?;
            let target = resolve_name(source, keys, &name).await?;
            let edition = match uri {
                SignedUri::Usk { edition, .. } => u64::try_from(*edition).ok(),
                _ => None,
            };
            Ok(Resolution { target, edition })
        }
    }
}

/// Which of `editions` exist (fetched and verified), probed in parallel.
async fn probe<S: BlockSource>(
    source: &S,
    keys: SskKeys,
    site: &str,
    editions: std::ops::Range<u64>,
) -> Vec<u64> {
    let jobs: Vec<_> = editions
        .clone()
        .map(|e| {
            let name = usk_name(site, e);
            let source = source.clone();
            async move { resolve_name(&source, keys, &name).await.is_ok() }
        })
        .collect();
    let found = join_all(jobs).await;
    editions
        .zip(found)
        .filter(|(_, ok)| *ok)
        .map(|(e, _)| e)
        .collect()
}

/// The newest edition of `site` that can be found, starting from `hint`; `None` when
/// not even one edition is there.
pub async fn newest_edition<S: BlockSource>(
    source: &S,
    keys: SskKeys,
    site: &str,
    hint: u64,
) -> Result<Option<u64>, SignedError> {
    let probes = std::sync::atomic::AtomicUsize::new(0);
    let count = || probes.load(std::sync::atomic::Ordering::Relaxed);
    let window = |start: u64| {
        probes.fetch_add(PROBE_WINDOW as usize, std::sync::atomic::Ordering::Relaxed);
        start..start.saturating_add(PROBE_WINDOW)
    };
    // A known edition to stand on: the hint's window, else the start.
    let mut last = match probe(source, keys, site, window(hint)).await.last() {
        Some(&e) => e,
        None if hint > 0 => match probe(source, keys, site, window(0)).await.last() {
            Some(&e) => e,
            None => return Ok(None),
        },
        None => return Ok(None),
    };
    // Gallop: windows right after the newest seen, then further on, doubling the step
    // while a window holds an edition.
    let mut step = 1u64;
    let mut hi = loop {
        if count() >= MAX_PROBES {
            return Ok(Some(last));
        }
        let start = last.saturating_add(step);
        match probe(source, keys, site, window(start)).await.last() {
            Some(&e) => {
                last = e;
                step = step.saturating_mul(2);
            }
            None => break start,
        }
    };
    // Bisect the editions between the newest seen and the empty window at `hi`.
    while hi > last.saturating_add(1) && count() < MAX_PROBES {
        let mid = last + (hi - last) / 2;
        let span = window(mid);
        let span = span.start..span.end.min(hi);
        match probe(source, keys, site, span).await.last() {
            Some(&e) => last = e,
            None => hi = mid,
        }
    }
    Ok(Some(last))
}

/// The client's keystore: `<data dir>/keys/<name>`, one key pair per file, readable by
/// the owner only. Keys never leave this machine: the client signs, nodes get blocks.
#[derive(Debug, Clone)]
pub struct Keystore {
    dir: PathBuf,
}

fn check_name(name: &str) -> Result<(), SignedError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(SignedError::Keystore(format!(
            "bad key name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

fn b64(b: &[u8; 32]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn unb64(s: &str) -> Option<[u8; 32]> {
    use base64::Engine as _;
    let v = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim())
        .ok()?;
    v.try_into().ok()
}

impl Keystore {
    /// The keystore of the data directory `data_dir`.
    pub fn new(data_dir: &Path) -> Keystore {
        Keystore {
            dir: data_dir.join(KEYSTORE_DIR),
        }
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> Result<PathBuf, SignedError> {
        check_name(name)?;
        Ok(self.dir.join(name))
    }

    /// Makes a new key pair called `name`; refuses to overwrite one.
    pub fn create(&self, name: &str) -> Result<KeyPair, SignedError> {
        let path = self.path(name)?;
        if path.exists() {
            return Err(SignedError::Keystore(format!(
                "a key called {name:?} already exists ({})",
                path.display()
            )));
        }
        let pair = KeyPair::generate(&mut rand::thread_rng());
        let text = format!(
            "veil-key 1\nseed {}\ncrypto {}\n",
            b64(&pair.secret_seed()),
            b64(&pair.crypto_key)
        );
        let io = |e: std::io::Error| SignedError::Keystore(format!("{}: {e}", path.display()));
        create_private_dir(&self.dir).map_err(io)?;
        write_private(&path, text.as_bytes()).map_err(io)?;
        Ok(pair)
    }

    /// Loads the key pair called `name`, refusing a file others can read.
    pub fn load(&self, name: &str) -> Result<KeyPair, SignedError> {
        let path = self.path(name)?;
        let shown = path.display();
        let meta = std::fs::metadata(&path).map_err(|e| {
            SignedError::Keystore(if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "no key called {name:?} in {} (make one with: veil keygen {name})",
                    self.dir.display()
                )
            } else {
                format!("cannot read {shown}: {e}")
            })
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(SignedError::Keystore(format!(
                    "{shown} is readable by others (mode {mode:o}): run chmod 600 on it if it is yours"
                )));
            }
        }
        #[cfg(not(unix))]
        let _ = meta;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| SignedError::Keystore(format!("cannot read {shown}: {e}")))?;
        let mut lines = text.lines();
        let bad = || SignedError::Keystore(format!("{shown} is not a Veil key file"));
        if lines.next() != Some("veil-key 1") {
            return Err(bad());
        }
        let mut field = |tag: &str| {
            lines
                .next()
                .and_then(|l| l.strip_prefix(tag))
                .and_then(unb64)
                .ok_or_else(bad)
        };
        let seed = field("seed ")?;
        let crypto = field("crypto ")?;
        Ok(KeyPair::from_secret(seed, crypto))
    }

    fn site_file(&self, name: &str, site: &str) -> Result<PathBuf, SignedError> {
        check_name(name)?;
        let mut hex = String::new();
        for b in site.as_bytes() {
            hex.push_str(&format!("{b:02x}"));
        }
        Ok(self.dir.join(format!("{name}.site-{hex}")))
    }

    /// The edition of `site` this keystore last published under key `name`.
    pub fn last_edition(&self, name: &str, site: &str) -> Option<u64> {
        let path = self.site_file(name, site).ok()?;
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    /// Records that edition `edition` of `site` was published under key `name`.
    pub fn set_last_edition(
        &self,
        name: &str,
        site: &str,
        edition: u64,
    ) -> Result<(), SignedError> {
        let path = self.site_file(name, site)?;
        write_private(&path, format!("{edition}\n").as_bytes())
            .map_err(|e| SignedError::Keystore(format!("{}: {e}", path.display())))
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` with owner-only permissions, atomically (a temporary file
/// renamed over it), so a crash leaves the old file or the new one.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// A sink that skips blocks the node already holds, so publishing a site again uploads
/// only what changed (content-hash blocks of unchanged files are the same blocks).
#[derive(Clone)]
pub struct SkipKnown<K> {
    inner: K,
    skipped: std::sync::Arc<std::sync::atomic::AtomicU64>,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<K> SkipKnown<K> {
    /// Wraps `inner`.
    pub fn new(inner: K) -> SkipKnown<K> {
        SkipKnown {
            inner,
            skipped: Default::default(),
            sent: Default::default(),
        }
    }

    /// (Blocks skipped as already held, blocks sent.)
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.skipped.load(Relaxed), self.sent.load(Relaxed))
    }
}

impl<K: BlockSink + HoldsBlocks> BlockSink for SkipKnown<K> {
    async fn insert(&self, key: RoutingKey, block: veil_proto::Block) -> Result<(), InsertError> {
        self.insert_as(key, block, BlockRole::Data).await
    }

    async fn insert_as(
        &self,
        key: RoutingKey,
        block: veil_proto::Block,
        role: BlockRole,
    ) -> Result<(), InsertError> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.inner.holds(&key).await {
            self.skipped.fetch_add(1, Relaxed);
            return Ok(());
        }
        self.sent.fetch_add(1, Relaxed);
        self.inner.insert_as(key, block, role).await
    }
}

impl From<ChildRef> for Resolution {
    fn from(c: ChildRef) -> Resolution {
        Resolution {
            target: c.into(),
            edition: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemoryStore;

    fn chk(n: u8) -> ChkKeys {
        ChkKeys {
            routing: RoutingKey([n; 32]),
            data: DataKey([n + 1; 32]),
        }
    }

    #[tokio::test]
    async fn a_signed_name_resolves_and_keeps_its_first_target() {
        let store = MemoryStore::new();
        let pair = KeyPair::generate(&mut rand::thread_rng());
        publish_signed(&store, &pair, "doc", chk(1)).await.unwrap();
        assert_eq!(
            resolve_name(&store, pair.keys(), "doc").await.unwrap(),
            chk(1)
        );
        // Publishing the same name again with another target is a collision.
        assert!(matches!(
            publish_signed(&store, &pair, "doc", chk(2)).await,
            Err(InsertError::Collision)
        ));
        assert_eq!(
            resolve_name(&store, pair.keys(), "doc").await.unwrap(),
            chk(1)
        );
        // Someone else's keys do not find it.
        let other = KeyPair::generate(&mut rand::thread_rng());
        assert!(resolve_name(&store, other.keys(), "doc").await.is_err());
        // KSK: the words are the keys.
        let ksk = KeyPair::from_words("free speech");
        publish_signed(&store, &ksk, "", chk(3)).await.unwrap();
        let uri: SignedUri = "veil:KSK@free%20speech".parse().unwrap();
        let r = resolve_signed(&store, &uri, 0).await.unwrap();
        assert_eq!(r.target, chk(3));
    }

    #[tokio::test]
    async fn the_newest_edition_is_found_in_few_probes() {
        for (newest, holes) in [
            (0u64, vec![]),
            (5, vec![]),
            (37, vec![20, 21]),
            (200, vec![3]),
        ] {
            let store = MemoryStore::new();
            let pair = KeyPair::generate(&mut rand::thread_rng());
            for e in 0..=newest {
                if !holes.contains(&e) {
                    publish_signed(&store, &pair, &usk_name("site", e), chk(e as u8))
                        .await
                        .unwrap();
                }
            }
            let found = newest_edition(&store, pair.keys(), "site", 0)
                .await
                .unwrap();
            assert_eq!(found, Some(newest), "newest {newest}, holes {holes:?}");
            // From a hint near the end, too.
            let hinted = newest_edition(&store, pair.keys(), "site", newest.saturating_sub(1))
                .await
                .unwrap();
            assert_eq!(hinted, Some(newest));
        }
        let store = MemoryStore::new();
        let pair = KeyPair::generate(&mut rand::thread_rng());
        assert_eq!(
            newest_edition(&store, pair.keys(), "none", 3)
                .await
                .unwrap(),
            None
        );
    }

    /// Counts the fetches made through it.
    #[derive(Clone)]
    struct Counting<S>(S, std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl<S: BlockSource> BlockSource for Counting<S> {
        async fn fetch(&self, key: RoutingKey) -> Result<veil_proto::Block, FetchError> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.0.fetch(key).await
        }
    }

    impl<S> Counting<S> {
        fn new(inner: S) -> Counting<S> {
            Counting(inner, Default::default())
        }

        fn fetches(&self) -> usize {
            self.1.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    /// A site whose editions `0..=newest` all exist, signed when asked for: editions up
    /// to 2^15 are known by their routing keys.
    #[derive(Clone)]
    struct Editions {
        pair: KeyPair,
        newest: u64,
        keys: std::sync::Arc<std::collections::HashMap<RoutingKey, u64>>,
    }

    impl Editions {
        fn new(newest: u64) -> Editions {
            let pair = KeyPair::from_secret([5; 32], [6; 32]);
            let keys = (0..1u64 << 15)
                .map(|e| (pair.keys().routing_key(&usk_name("site", e)), e))
                .collect();
            Editions {
                pair,
                newest,
                keys: std::sync::Arc::new(keys),
            }
        }
    }

    impl BlockSource for Editions {
        async fn fetch(&self, key: RoutingKey) -> Result<veil_proto::Block, FetchError> {
            match self.keys.get(&key) {
                Some(&e) if e <= self.newest => Ok(self
                    .pair
                    .sign(
                        &usk_name("site", e),
                        &redirect_payload(chk(e as u8)),
                        [0; 12],
                    )
                    .unwrap()
                    .0),
                _ => Err(FetchError::NotFound),
            }
        }
    }

    /// A USK URI resolves to the edition it names, or for -1 to the newest found, and
    /// says which edition that was.
    #[tokio::test]
    async fn a_usk_uri_resolves_to_its_edition_or_the_newest() {
        let store = MemoryStore::new();
        let pair = KeyPair::generate(&mut rand::thread_rng());
        for e in 0..=6u64 {
            publish_signed(&store, &pair, &usk_name("blog", e), chk(e as u8 + 10))
                .await
                .unwrap();
        }
        let uri = |edition: i64| SignedUri::Usk {
            keys: pair.keys(),
            site: "blog".into(),
            edition,
            path: Vec::new(),
        };
        let r = resolve_signed(&store, &uri(3), 0).await.unwrap();
        assert_eq!(
            r,
            Resolution {
                target: chk(13),
                edition: Some(3)
            }
        );
        let r = resolve_signed(&store, &uri(-1), 0).await.unwrap();
        assert_eq!(
            r,
            Resolution {
                target: chk(16),
                edition: Some(6)
            }
        );
        assert!(matches!(
            resolve_signed(&store, &uri(9), 0).await,
            Err(SignedError::Fetch(_))
        ));
        let empty = MemoryStore::new();
        assert!(matches!(
            resolve_signed(&empty, &uri(-1), 0).await,
            Err(SignedError::NoEdition(site)) if site == "blog"
        ));
    }

    /// A hint past the newest edition (a keystore that remembers more than the network
    /// kept) still finds the newest, from the start; with no hint, an empty site costs
    /// one window of probes.
    #[tokio::test]
    async fn a_hint_past_the_newest_edition_still_finds_it() {
        let site = Counting::new(Editions::new(5));
        let keys = site.0.pair.keys();
        assert_eq!(
            newest_edition(&site, keys, "site", 50).await.unwrap(),
            Some(5)
        );
        let none = Counting::new(Editions::new(5));
        let other = KeyPair::from_secret([1; 32], [1; 32]).keys();
        assert_eq!(newest_edition(&none, other, "site", 0).await.unwrap(), None);
        assert_eq!(none.fetches(), PROBE_WINDOW as usize);
        let none = Counting::new(Editions::new(5));
        assert_eq!(newest_edition(&none, other, "site", 9).await.unwrap(), None);
        assert_eq!(none.fetches(), 2 * PROBE_WINDOW as usize);
    }

    /// The search for the newest edition keeps within `MAX_PROBES` fetches: it finds the
    /// newest while that is enough and the best it reached when not, and what each search
    /// costs is pinned (a search that went on probing what it already knows would cost
    /// more, though it found the same).
    #[tokio::test]
    async fn the_newest_edition_search_keeps_within_its_probes() {
        // (newest, hint) -> (found, fetches)
        for (newest, hint, found, fetches) in [
            (0u64, 0u64, 0u64, 8usize),
            (3, 0, 3, 8),
            (4, 0, 4, 13),
            (200, 0, 200, 58),
            (1000, 990, 1000, 19),
            (8191, 0, 7210, MAX_PROBES),
            (30_000, 0, 16_428, MAX_PROBES),
        ] {
            let site = Counting::new(Editions::new(newest));
            let keys = site.0.pair.keys();
            let got = newest_edition(&site, keys, "site", hint).await.unwrap();
            assert_eq!(
                (got, site.fetches()),
                (Some(found), fetches),
                "newest {newest}, hint {hint}"
            );
        }
    }

    /// Publishing again sends only the blocks the node does not hold, with the role asked
    /// for, and counts both.
    #[tokio::test]
    async fn a_republish_sends_only_what_the_node_lacks() {
        let node = MemoryStore::new();
        let sink = SkipKnown::new(node.clone());
        let (a, ka) = veil_proto::block::encode(b"first").unwrap();
        let (b, kb) = veil_proto::block::encode(b"second").unwrap();
        sink.insert(ka.routing, a.clone()).await.unwrap();
        sink.insert_as(kb.routing, b.clone(), BlockRole::Index)
            .await
            .unwrap();
        assert_eq!(sink.counts(), (0, 2));
        assert_eq!(node.role(&ka.routing), Some(BlockRole::Data));
        assert_eq!(node.role(&kb.routing), Some(BlockRole::Index));
        let inserts = node.insert_count();
        sink.insert(ka.routing, a).await.unwrap();
        sink.insert_as(kb.routing, b, BlockRole::Index)
            .await
            .unwrap();
        assert_eq!(sink.counts(), (2, 2));
        assert_eq!(node.insert_count(), inserts, "nothing sent again");
    }

    #[test]
    fn the_keystore_keeps_keys_private_and_refuses_loose_files() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::new(dir.path());
        let pair = ks.create("mine").unwrap();
        assert_eq!(ks.load("mine").unwrap().keys(), pair.keys());
        assert!(ks.create("mine").is_err(), "never overwritten");
        assert!(ks
            .load("nope")
            .unwrap_err()
            .to_string()
            .contains("veil keygen nope"));
        for bad in ["", "../x", ".hidden", "a/b", &"x".repeat(65)] {
            assert!(ks.create(bad).is_err(), "{bad:?}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let path = ks.dir().join("mine");
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = ks.load("mine").unwrap_err().to_string();
            assert!(err.contains("readable by others"), "{err}");
        }
        std::fs::write(ks.dir().join("junk"), "hello").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(
                ks.dir().join("junk"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
        }
        assert!(ks
            .load("junk")
            .unwrap_err()
            .to_string()
            .contains("not a Veil key file"));
        assert_eq!(ks.last_edition("mine", "blog"), None);
        ks.set_last_edition("mine", "blog", 4).unwrap();
        assert_eq!(ks.last_edition("mine", "blog"), Some(4));
    }

    #[test]
    fn redirects_are_checked() {
        assert_eq!(parse_redirect(&redirect_payload(chk(7))).unwrap(), chk(7));
        assert!(parse_redirect(&[1; 64]).is_err());
        let mut p = redirect_payload(chk(7));
        p[0] = 2;
        assert!(parse_redirect(&p).is_err());
    }
}

//! Finding documents by words, with no index server and no flood.
//!
//! A *keyword entry* names one document (its URI, name, size, MIME type and an optional
//! description). For each keyword a publisher gives, the entry goes into a signed block
//! whose key pair and crypto key derive from the normalised keyword alone
//! ([`keyword_pair`]): whoever knows the word can find and read the entries, nodes can
//! verify them like any signed block, and no node learns the word.
//!
//! Many publishers share one keyword through numbered *slots* (`slot-0`, `slot-1`, …,
//! each an SSK document of the keyword's key pair). A search reads the slots in windows
//! of [`SLOT_WINDOW`] fetched in parallel and stops after [`SLOT_WINDOW`] empty slots in
//! a row; a publisher takes the first slot it finds empty, so a second publisher adds an
//! entry rather than overwriting one (a slot taken meanwhile is refused by the network as
//! a collision, and the next is tried).
//!
//! Abuse: anyone who knows a keyword can add entries, so what one search costs is
//! bounded ([`MAX_SLOTS`] slots at most, [`MAX_RESULTS`] entries kept per word) and
//! entries whose signature or format is bad are skipped. A keyword flooded with junk is
//! still readable through a publisher's signed [`Index`] (`veil search --index`), whose
//! entries only that publisher can add.
//!
//! Normalisation ([`normalise`]): Unicode NFKC, then full case folding, then NFKC again
//! (folding can undo composition), with surrounding white space trimmed. "Straße",
//! "STRASSE" and "strasse" are one keyword; so are "ﬁle" and "file".

use crate::signed::SignedError;
use crate::source::{BlockRole, BlockSink, BlockSource, FetchError, InsertError};
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use veil_proto::ssk::{KeyPair, SskKeys};
use veil_proto::uri::AnyUri;

/// The longest keyword, in bytes after normalisation.
pub const MAX_KEYWORD_LEN: usize = 256;
/// Slots read at once.
pub const SLOT_WINDOW: u64 = 8;
/// Slots a search or a publisher reads at most, per keyword.
pub const MAX_SLOTS: u64 = 256;
/// Entries a search keeps per keyword.
pub const MAX_RESULTS: usize = 100;
/// The longest URI an entry may carry.
pub const MAX_URI_LEN: usize = 2048;
/// The longest name an entry may carry.
pub const MAX_NAME_LEN: usize = 255;
/// The longest description an entry may carry.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// The version byte that starts an entry's payload.
pub const ENTRY_VERSION: u8 = 1;
/// The largest signed index document read.
pub const MAX_INDEX_BYTES: u64 = 16 << 20;

const SIGNING_TAG: &[u8] = b"veil/keyword/signing-key/v1";
const CRYPTO_TAG: &[u8] = b"veil/keyword/crypto-key/v1";

/// Why a keyword search or publication failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeywordError {
    /// The keyword is empty (or only white space).
    #[error("empty keyword")]
    Empty,
    /// The keyword is longer than [`MAX_KEYWORD_LEN`] bytes.
    #[error("keyword of {0} bytes: at most {MAX_KEYWORD_LEN} are allowed")]
    TooLong(usize),
    /// An entry breaks the format (what a search skips; what a publisher is refused).
    #[error("bad keyword entry: {0}")]
    BadEntry(String),
    /// Every slot of the keyword up to [`MAX_SLOTS`] is taken.
    #[error("no free slot among the first {MAX_SLOTS} of keyword {0:?}")]
    Full(String),
    /// The node could not be asked (not running, wrong token, …).
    #[error(transparent)]
    Fetch(FetchError),
    /// Publishing an entry failed.
    #[error(transparent)]
    Insert(#[from] InsertError),
    /// A signed index could not be read or published.
    #[error(transparent)]
    Signed(#[from] SignedError),
}

/// `word` normalised (NFKC, case-folded, NFKC, trimmed), refused when empty or longer
/// than [`MAX_KEYWORD_LEN`] bytes.
pub fn normalise(word: &str) -> Result<String, KeywordError> {
    // Bound the work before normalising: NFKC expands a character at most 18-fold.
    if word.len() > MAX_KEYWORD_LEN * 4 {
        return Err(KeywordError::TooLong(word.len()));
    }
    let nfkc = icu_normalizer::ComposingNormalizerBorrowed::new_nfkc();
    let composed = nfkc.normalize(word);
    let folded = icu_casemap::CaseMapper::new().fold_string(&composed);
    let norm = nfkc.normalize(&folded).trim().to_string();
    if norm.is_empty() {
        return Err(KeywordError::Empty);
    }
    if norm.len() > MAX_KEYWORD_LEN {
        return Err(KeywordError::TooLong(norm.len()));
    }
    Ok(norm)
}

/// Every one of `words` normalised; refused when there are none or one is bad.
pub fn normalise_all(words: &[String]) -> Result<Vec<String>, KeywordError> {
    if words.is_empty() {
        return Err(KeywordError::Empty);
    }
    words.iter().map(|w| normalise(w)).collect()
}

/// The key pair of the normalised keyword `norm`: everyone who knows the word derives it.
/// Distinct from a KSK of the same words (other derivation tags), so `veil put --ksk`
/// and keyword entries never collide.
pub fn keyword_pair(norm: &str) -> KeyPair {
    let h = |tag: &[u8]| -> [u8; 32] {
        let mut d = Sha256::new();
        d.update(tag);
        d.update(norm.as_bytes());
        d.finalize().into()
    };
    KeyPair::from_secret(h(SIGNING_TAG), h(CRYPTO_TAG))
}

/// The SSK document name of slot `n`.
pub fn slot_name(n: u64) -> String {
    format!("slot-{n}")
}

/// One document found by a word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The document's URI (any Veil URI).
    pub uri: String,
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its MIME type.
    pub mime: String,
    /// What the publisher says about it (may be empty).
    pub description: String,
}

fn no_controls(what: &str, s: &str) -> Result<(), KeywordError> {
    if s.chars().any(char::is_control) {
        return Err(KeywordError::BadEntry(format!(
            "the {what} holds control characters"
        )));
    }
    Ok(())
}

impl Entry {
    /// Checks the bounds and that the URI is a Veil URI.
    pub fn check(&self) -> Result<(), KeywordError> {
        let long = |what: &str, len: usize, max: usize| {
            if len > max {
                Err(KeywordError::BadEntry(format!(
                    "the {what} is {len} bytes, at most {max} are allowed"
                )))
            } else {
                Ok(())
            }
        };
        long("URI", self.uri.len(), MAX_URI_LEN)?;
        long("name", self.name.len(), MAX_NAME_LEN)?;
        long("MIME type", self.mime.len(), crate::format::MAX_MIME_LEN)?;
        long("description", self.description.len(), MAX_DESCRIPTION_LEN)?;
        for (what, s) in [
            ("URI", &self.uri),
            ("name", &self.name),
            ("MIME type", &self.mime),
            ("description", &self.description),
        ] {
            no_controls(what, s)?;
        }
        self.uri
            .parse::<AnyUri>()
            .map_err(|e| KeywordError::BadEntry(format!("the URI does not parse: {e}")))?;
        Ok(())
    }

    /// The payload of a keyword block: [`ENTRY_VERSION`], then the entry as postcard.
    pub fn to_payload(&self) -> Result<Vec<u8>, KeywordError> {
        self.check()?;
        let mut out = vec![ENTRY_VERSION];
        out.extend(postcard::to_allocvec(self).map_err(|e| KeywordError::BadEntry(e.to_string()))?);
        Ok(out)
    }

    /// The entry a keyword block's payload carries, checked.
    pub fn from_payload(payload: &[u8]) -> Result<Entry, KeywordError> {
        let Some((&ENTRY_VERSION, rest)) = payload.split_first() else {
            return Err(KeywordError::BadEntry(
                "not a version-1 keyword entry".into(),
            ));
        };
        let (entry, tail): (Entry, _) = postcard::take_from_bytes(rest)
            .map_err(|e| KeywordError::BadEntry(format!("does not decode: {e}")))?;
        if !tail.is_empty() {
            return Err(KeywordError::BadEntry(format!(
                "{} bytes after the entry",
                tail.len()
            )));
        }
        entry.check()?;
        Ok(entry)
    }
}

/// What one slot holds.
#[derive(Debug)]
enum Slot {
    Empty,
    Taken(Option<Entry>),
}

/// Reads slot `n` of `keys`. A block that is missing is an empty slot; one that does not
/// verify or decode is a taken slot without an entry; a node that cannot be asked at all
/// is an error.
async fn read_slot<S: BlockSource>(
    source: &S,
    keys: SskKeys,
    n: u64,
) -> Result<Slot, KeywordError> {
    let name = slot_name(n);
    match source.fetch(keys.routing_key(&name)).await {
        Ok(block) => Ok(Slot::Taken(
            keys.open(&name, &block)
                .ok()
                .and_then(|p| Entry::from_payload(&p).ok()),
        )),
        Err(FetchError::NotFound | FetchError::Timeout | FetchError::Unavailable(_)) => {
            Ok(Slot::Empty)
        }
        // Something answered with the wrong bytes: the slot is someone's, not ours to use.
        Err(FetchError::BadBlock) => Ok(Slot::Taken(None)),
        Err(e) => Err(KeywordError::Fetch(e)),
    }
}

/// Reads the slots of `keys` in windows until a run of [`SLOT_WINDOW`] empty slots,
/// [`MAX_SLOTS`], or `stop` says enough; calls `each` with every slot in order.
async fn scan<S: BlockSource>(
    source: &S,
    keys: SskKeys,
    mut each: impl FnMut(u64, &Slot) -> bool,
) -> Result<(), KeywordError> {
    let mut empty_run = 0;
    let mut start = 0;
    while start < MAX_SLOTS {
        let window = start..(start + SLOT_WINDOW).min(MAX_SLOTS);
        let slots = join_all(window.clone().map(|n| read_slot(source, keys, n))).await;
        for (n, slot) in window.zip(slots) {
            let slot = slot?;
            if each(n, &slot) {
                return Ok(());
            }
            empty_run = match slot {
                Slot::Empty => empty_run + 1,
                Slot::Taken(_) => 0,
            };
            if empty_run >= SLOT_WINDOW {
                return Ok(());
            }
        }
        start += SLOT_WINDOW;
    }
    Ok(())
}

/// The entries under one keyword (distinct URIs, in slot order, at most
/// [`MAX_RESULTS`]).
pub async fn search_keyword<S: BlockSource>(
    source: &S,
    word: &str,
) -> Result<Vec<Entry>, KeywordError> {
    let keys = keyword_pair(&normalise(word)?).keys();
    let mut found: Vec<Entry> = Vec::new();
    scan(source, keys, |_, slot| {
        if let Slot::Taken(Some(e)) = slot {
            if !found.iter().any(|f| f.uri == e.uri) {
                found.push(e.clone());
            }
        }
        found.len() >= MAX_RESULTS
    })
    .await?;
    Ok(found)
}

/// The entries found under every one of `words` (AND), in the order the first word
/// lists them.
pub async fn search<S: BlockSource>(
    source: &S,
    words: &[String],
) -> Result<Vec<Entry>, KeywordError> {
    let mut norms = normalise_all(words)?;
    norms.dedup();
    let lists = join_all(norms.iter().map(|w| search_keyword(source, w))).await;
    let lists = lists.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(intersect(lists))
}

fn intersect(mut lists: Vec<Vec<Entry>>) -> Vec<Entry> {
    let first = lists.remove(0);
    first
        .into_iter()
        .filter(|e| lists.iter().all(|l| l.iter().any(|o| o.uri == e.uri)))
        .collect()
}

/// Where [`publish_entry`] left an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Inserted into this slot.
    New(u64),
    /// The keyword already lists the URI, in this slot.
    Already(u64),
}

/// Publishes `entry` under `word`, in the first free slot (or finds it there already).
pub async fn publish_entry<S: BlockSource + BlockSink>(
    node: &S,
    word: &str,
    entry: &Entry,
) -> Result<Published, KeywordError> {
    let norm = normalise(word)?;
    let payload = entry.to_payload()?;
    let pair = keyword_pair(&norm);
    let keys = pair.keys();
    let mut free = Vec::new();
    let mut already = None;
    scan(node, keys, |n, slot| match slot {
        Slot::Taken(Some(e)) if e.uri == entry.uri => {
            already = Some(n);
            true
        }
        Slot::Taken(_) => false,
        Slot::Empty => {
            free.push(n);
            false
        }
    })
    .await?;
    if let Some(n) = already {
        return Ok(Published::Already(n));
    }
    // The scan stops after a run of empty slots, so free slots past it were not read:
    // they are free too.
    let next = free.last().map_or(0, |n| n + 1);
    free.extend(next..MAX_SLOTS);
    for n in free {
        let mut nonce = [0u8; 12];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut nonce);
        let (block, key) = pair
            .sign(&slot_name(n), &payload, nonce)
            .map_err(|e| KeywordError::BadEntry(e.to_string()))?;
        match node.insert_as(key, block, BlockRole::Index).await {
            Ok(()) => return Ok(Published::New(n)),
            // Taken meanwhile (or a stale copy the scan missed): the next one.
            Err(InsertError::Collision) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(KeywordError::Full(norm))
}

/// One publisher's signed index: entries and the words they are found by, published as
/// a JSON document under a USK site of the publisher's key (`veil index add`), so only
/// that publisher can add to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Format version: 1.
    pub veil_index: u32,
    /// The entries.
    pub entries: Vec<IndexEntry>,
}

/// An entry of an [`Index`] with its (normalised) words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The entry.
    #[serde(flatten)]
    pub entry: Entry,
    /// The normalised words it is found by.
    pub words: Vec<String>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Index {
        Index {
            veil_index: 1,
            entries: Vec::new(),
        }
    }

    /// Reads an index document; entries that break the format are dropped.
    pub fn from_json(bytes: &[u8]) -> Result<Index, KeywordError> {
        #[derive(Deserialize)]
        struct Raw {
            veil_index: u32,
            entries: Vec<serde_json::Value>,
        }
        let raw: Raw = serde_json::from_slice(bytes)
            .map_err(|e| KeywordError::BadEntry(format!("not a Veil index: {e}")))?;
        if raw.veil_index != 1 {
            return Err(KeywordError::BadEntry(format!(
                "index version {} (this client reads version 1)",
                raw.veil_index
            )));
        }
        let entries = raw
            .entries
            .into_iter()
            .filter_map(|v| serde_json::from_value::<IndexEntry>(v).ok())
            .filter(|e| e.entry.check().is_ok())
            .collect();
        Ok(Index {
            veil_index: 1,
            entries,
        })
    }

    /// The index as a JSON document.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("an index serialises")
    }

    /// Adds `entry` under `words` (normalised here); an entry with the same URI is
    /// updated and keeps its other words.
    pub fn add(&mut self, entry: Entry, words: &[String]) -> Result<(), KeywordError> {
        entry.check()?;
        let mut norms = normalise_all(words)?;
        match self.entries.iter_mut().find(|e| e.entry.uri == entry.uri) {
            Some(e) => {
                e.entry = entry;
                e.words.append(&mut norms);
                e.words.sort();
                e.words.dedup();
            }
            None => {
                norms.sort();
                norms.dedup();
                self.entries.push(IndexEntry {
                    entry,
                    words: norms,
                });
            }
        }
        Ok(())
    }

    /// The entries listed under every one of `words`.
    pub fn search(&self, words: &[String]) -> Result<Vec<Entry>, KeywordError> {
        let norms = normalise_all(words)?;
        Ok(self
            .entries
            .iter()
            .filter(|e| norms.iter().all(|w| e.words.contains(w)))
            .map(|e| e.entry.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests;

//! Saving a fetched document to the reader's disk with the guarantees `veil get` gives:
//! nothing larger than the reader allows, no file replaced unless asked, and nothing
//! half-written left behind (a document is written beside its place under a temporary
//! name and renamed there only when whole; a failure, or the future dropped mid-way,
//! removes the temporary file).
//!
//! An integrator saving documents through the library gets the same safety as the CLI:
//! call [`save_file`] rather than writing [`crate::decode::write_body`]'s output to a
//! path by hand.

use crate::decode::{write_body_healing, DecodeError, Heal, DEFAULT_WINDOW};
use crate::format::TopBlock;
use crate::source::BlockSource;
use std::path::{Path, PathBuf};

/// How a save treats the reader's disk.
#[derive(Clone, Copy, Debug)]
pub struct SaveOptions {
    /// Replace a file that exists already (otherwise the save refuses, before writing).
    pub overwrite: bool,
    /// The most bytes a document may claim; a larger one is refused before anything is
    /// written, so a lying publisher cannot fill the disk.
    pub max_bytes: u64,
}

/// Refuses a document that claims more than `max_bytes`.
pub fn check_size(top: &TopBlock, max_bytes: u64) -> Result<(), DecodeError> {
    if top.meta.size > max_bytes {
        return Err(DecodeError::TooLarge {
            size: top.meta.size,
            limit: max_bytes,
        });
    }
    Ok(())
}

/// A publisher's file name made safe to create here: no directories, not hidden (leading
/// dots become `_`), else `veil-document`.
pub fn safe_name(name: Option<&str>) -> String {
    match name {
        Some(n) if crate::format::check_path(n).is_ok() && !n.contains('/') => {
            let shown = n.trim_start_matches('.');
            if shown.is_empty() {
                "veil-document".into()
            } else if shown.len() < n.len() {
                format!("_{shown}")
            } else {
                n.to_string()
            }
        }
        _ => "veil-document".into(),
    }
}

/// Where a document saved to `path` goes: `path` itself, or, when `path` is a directory
/// (or names one to be made, ending in `/`), the document's own name made safe inside it.
pub fn target_path(path: &Path, top: &TopBlock) -> Result<PathBuf, DecodeError> {
    if path.as_os_str().to_string_lossy().ends_with('/') && !path.exists() {
        std::fs::create_dir_all(path).map_err(|source| DecodeError::Create {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(if path.is_dir() {
        path.join(safe_name(top.meta.name.as_deref()))
    } else {
        path.to_path_buf()
    })
}

/// A temporary file that is removed unless it was renamed into place.
struct Partial {
    path: PathBuf,
    done: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Saves the document `top` to `path` (see [`target_path`]) and returns the file
/// written. Refused before anything is written if the document claims more than
/// `options.max_bytes`, or if the file exists and `options.overwrite` is off. `progress`
/// hears the bytes written so far; blocks that had to be rebuilt are collected in `heal`.
pub async fn save_file<S: BlockSource>(
    source: S,
    top: TopBlock,
    path: &Path,
    options: &SaveOptions,
    progress: impl FnMut(u64),
    heal: Heal,
) -> Result<PathBuf, DecodeError> {
    check_size(&top, options.max_bytes)?;
    let path = target_path(path, &top)?;
    if path.exists() && !options.overwrite {
        return Err(DecodeError::Exists(path));
    }
    let mut partial = Partial {
        path: crate::dir::partial_name(&path),
        done: false,
    };
    // Created at once (not on a blocking thread), so the guard covers it from the first
    // poll on.
    let file = std::fs::File::create(&partial.path).map_err(|source| DecodeError::Create {
        path: partial.path.clone(),
        source,
    })?;
    let mut file = tokio::fs::File::from_std(file);
    write_body_healing(source, top, DEFAULT_WINDOW, &mut file, progress, heal).await?;
    drop(file);
    std::fs::rename(&partial.path, &path).map_err(|source| DecodeError::Create {
        path: path.clone(),
        source,
    })?;
    partial.done = true;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::fetch_top;
    use crate::encode::{encode, EncodeOptions};
    use crate::source::{FetchError, MemoryStore};
    use futures::FutureExt;
    use veil_proto::{Block, RoutingKey};

    async fn publish(store: &MemoryStore, data: &[u8]) -> TopBlock {
        publish_keyed(store, data).await.0
    }

    /// The document's top block, and its routing key.
    async fn publish_keyed(store: &MemoryStore, data: &[u8]) -> (TopBlock, RoutingKey) {
        let opts = EncodeOptions {
            name: Some("report.txt".into()),
            ..EncodeOptions::default()
        };
        let uri = encode(store, data, &opts, |_| {}).await.unwrap().uri;
        (fetch_top(store, uri.keys).await.unwrap(), uri.keys.routing)
    }

    fn opts(overwrite: bool, max_bytes: u64) -> SaveOptions {
        SaveOptions {
            overwrite,
            max_bytes,
        }
    }

    /// What a directory holds, names only.
    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn saves_whole_documents_under_their_own_name_in_a_directory() {
        let store = MemoryStore::new();
        let data = vec![7u8; 100_000];
        let top = publish(&store, &data).await;
        let dir = tempfile::tempdir().unwrap();
        let written = save_file(
            store.clone(),
            top,
            dir.path(),
            &opts(false, u64::MAX),
            |_| {},
            Heal::new(),
        )
        .await
        .unwrap();
        assert_eq!(written, dir.path().join("report.txt"));
        assert_eq!(std::fs::read(&written).unwrap(), data);
        assert_eq!(listing(dir.path()), ["report.txt"]);
        // A directory to be, named with a trailing slash, is made.
        let top = publish(&store, &data).await;
        let new = format!("{}/new/", dir.path().display());
        let written = save_file(
            store,
            top,
            Path::new(&new),
            &opts(false, u64::MAX),
            |_| {},
            Heal::new(),
        )
        .await
        .unwrap();
        assert_eq!(written, dir.path().join("new").join("report.txt"));
    }

    #[tokio::test]
    async fn an_existing_file_stays_unless_overwrite_is_asked() {
        let store = MemoryStore::new();
        let top = publish(&store, b"new text").await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.txt");
        std::fs::write(&path, b"the reader's own").unwrap();
        let e = save_file(
            store.clone(),
            top.clone(),
            &path,
            &opts(false, u64::MAX),
            |_| {},
            Heal::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, DecodeError::Exists(ref p) if *p == path), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"the reader's own");
        save_file(
            store,
            top,
            &path,
            &opts(true, u64::MAX),
            |_| {},
            Heal::new(),
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new text");
        assert_eq!(listing(dir.path()), ["mine.txt"]);
    }

    #[tokio::test]
    async fn a_document_over_the_limit_is_refused_before_anything_is_written() {
        let store = MemoryStore::new();
        let top = publish(&store, &[1u8; 5000]).await;
        let dir = tempfile::tempdir().unwrap();
        let e = save_file(
            store,
            top,
            &dir.path().join("big"),
            &opts(false, 4999),
            |_| {},
            Heal::new(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                e,
                DecodeError::TooLarge {
                    size: 5000,
                    limit: 4999
                }
            ),
            "{e}"
        );
        assert!(listing(dir.path()).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_fetch_leaves_nothing_behind() {
        let store = MemoryStore::new();
        let (top, top_key) = publish_keyed(&store, &vec![3u8; 3 * 32 * 1024]).await;
        // Every block but the top gone: nothing can be rebuilt.
        for b in store.blocks() {
            if b.routing_key() != top_key {
                store.remove(&b.routing_key());
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc");
        assert!(save_file(
            store,
            top,
            &path,
            &opts(false, u64::MAX),
            |_| {},
            Heal::new()
        )
        .await
        .is_err());
        assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
    }

    /// A source whose blocks never come.
    #[derive(Clone)]
    struct Stalled;

    impl BlockSource for Stalled {
        fn fetch(
            &self,
            _key: RoutingKey,
        ) -> impl std::future::Future<Output = Result<Block, FetchError>> + Send {
            std::future::pending()
        }
    }

    #[tokio::test]
    async fn a_save_dropped_mid_way_leaves_nothing_behind() {
        let store = MemoryStore::new();
        let top = publish(&store, &vec![5u8; 2 * 32 * 1024]).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc");
        // Polled once: the temporary file exists and the fetch waits; then dropped, as
        // when the user interrupts.
        let options = opts(false, u64::MAX);
        let save = save_file(Stalled, top, &path, &options, |_| {}, Heal::new());
        assert!(save.now_or_never().is_none());
        assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
    }
}

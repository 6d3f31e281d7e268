//! Directories: publishing a tree of files as documents plus a [`Manifest`], resolving a
//! URI's path inside a manifest, and restoring a tree.
//!
//! A manifest is hostile input: its paths are checked ([`crate::format::check_path`])
//! before anything is written, and a restore only ever creates files and directories
//! below the output directory.

use crate::decode::{fetch_top, read_to_vec, write_body, DecodeError, DEFAULT_WINDOW};
use crate::encode::{encode, EncodeError, EncodeOptions, Encoded};
use crate::format::{
    check_path, DocKind, Manifest, ManifestEntry, TopBlock, FORMAT_VERSION, MANIFEST_MIME,
    MAX_MANIFEST_SIZE,
};
use crate::source::{BlockSink, BlockSource};
use std::path::{Path, PathBuf};
use veil_proto::{ChkKeys, Uri};

/// Why a directory could not be published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PutDirError {
    /// Walking or reading the tree failed.
    #[error("{path}: {error}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What.
        error: std::io::Error,
    },
    /// A file name is not UTF-8 or not a safe relative path.
    #[error("{0}: unsupported file name")]
    BadName(PathBuf),
    /// Encoding a file or the manifest failed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// The temporary name a file is written under before it is renamed into place: hidden,
/// beside it, and marked as Veil's.
pub fn partial_name(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.veil-partial-{}", std::process::id()))
}

/// Lists the regular files under `root` as sorted `/`-separated relative paths.
/// Symbolic links and special files are skipped: publishing follows no link out of the
/// tree.
pub fn list_files(root: &Path) -> Result<Vec<(String, PathBuf)>, PutDirError> {
    Ok(walk(root)?.0)
}

/// The relative paths under `root` that publishing skips (symbolic links, sockets,
/// devices), sorted, so a tool can say so.
pub fn skipped_files(root: &Path) -> Result<Vec<String>, PutDirError> {
    Ok(walk(root)?.1)
}

type Walked = (Vec<(String, PathBuf)>, Vec<String>);

fn walk(root: &Path) -> Result<Walked, PutDirError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| PutDirError::Io { path, error }
    };
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mut stack = vec![(String::new(), root.to_path_buf())];
    while let Some((rel, dir)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(io(&path))?;
            let name = entry
                .file_name()
                .into_string()
                .map_err(|_| PutDirError::BadName(path.clone()))?;
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            check_path(&rel).map_err(|_| PutDirError::BadName(path.clone()))?;
            if kind.is_dir() {
                stack.push((rel, path));
            } else if kind.is_file() {
                out.push((rel, path));
            } else {
                skipped.push(rel);
            }
        }
    }
    out.sort();
    skipped.sort();
    Ok((out, skipped))
}

/// Publishes every regular file under `root` and a manifest listing them; returns the
/// manifest's URI, named after the directory. `progress` gets (files done, files total).
pub async fn put_dir<K: BlockSink>(
    sink: &K,
    root: &Path,
    opts: &EncodeOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<Encoded, PutDirError> {
    let files = list_files(root)?;
    let mut entries = Vec::with_capacity(files.len());
    for (i, (rel, path)) in files.iter().enumerate() {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|error| PutDirError::Io {
                path: path.clone(),
                error,
            })?;
        let name = rel.rsplit('/').next().unwrap_or(rel).to_string();
        let file_opts = EncodeOptions {
            name: Some(name),
            mime: None,
            kind: DocKind::File,
            ..opts.clone()
        };
        let done = encode(sink, tokio::io::BufReader::new(file), &file_opts, |_| {}).await?;
        entries.push(ManifestEntry {
            path: rel.clone(),
            keys: done.uri.keys.into(),
            size: done.size,
            mime: done.mime,
        });
        progress(i + 1, files.len());
    }
    let manifest = Manifest {
        version: FORMAT_VERSION,
        entries,
    };
    let dir_name = opts.name.clone().or_else(|| {
        root.canonicalize()
            .ok()
            .and_then(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
    });
    let man_opts = EncodeOptions {
        name: dir_name,
        mime: Some(MANIFEST_MIME.to_string()),
        kind: DocKind::Manifest,
        ..opts.clone()
    };
    Ok(encode(sink, &manifest.to_bytes()[..], &man_opts, |_| {}).await?)
}

/// Fetches and validates the manifest whose top block is `top`.
pub async fn fetch_manifest<S: BlockSource>(
    source: &S,
    top: TopBlock,
) -> Result<Manifest, DecodeError> {
    let bytes = read_to_vec(source.clone(), top, MAX_MANIFEST_SIZE).await?;
    Manifest::from_bytes(&bytes).map_err(DecodeError::BadManifest)
}

/// What a URI names.
#[derive(Debug)]
pub enum Resolved {
    /// A file: its top block (and its keys).
    File(ChkKeys, TopBlock),
    /// A directory: its entries, paths relative to the URI's path.
    Directory(Vec<ManifestEntry>),
}

/// Resolves `uri`: fetches its top block and, through manifests, follows its path.
pub async fn resolve<S: BlockSource>(source: &S, uri: &Uri) -> Result<Resolved, DecodeError> {
    let top = fetch_top(source, uri.keys).await?;
    if top.meta.kind != DocKind::Manifest {
        if !uri.path.is_empty() {
            return Err(DecodeError::NotADirectory);
        }
        return Ok(Resolved::File(uri.keys, top));
    }
    let manifest = fetch_manifest(source, top).await?;
    let path = uri.path.join("/");
    if let Some(entry) = manifest.get(&path) {
        let keys: ChkKeys = entry.keys.into();
        let top = fetch_top(source, keys).await?;
        if top.meta.size != entry.size {
            return Err(DecodeError::Corrupt {
                at: crate::decode::Position::Top,
                reason: format!(
                    "{path:?} is {} bytes, the manifest says {}",
                    top.meta.size, entry.size
                ),
            });
        }
        return Ok(Resolved::File(keys, top));
    }
    let entries = manifest.subdir(&path);
    if entries.is_empty() && !path.is_empty() {
        return Err(DecodeError::NoSuchPath(path));
    }
    Ok(Resolved::Directory(entries))
}

/// Writes every entry below `out_dir`, creating directories as needed. `progress` gets
/// (files done, files total).
pub async fn restore<S: BlockSource>(
    source: &S,
    entries: &[ManifestEntry],
    out_dir: &Path,
    progress: impl FnMut(usize, usize),
) -> Result<(), DecodeError> {
    restore_with(
        source,
        entries,
        out_dir,
        &RestoreOptions::default(),
        progress,
    )
    .await
}

/// How [`restore_with`] treats the reader's disk.
#[derive(Debug, Clone, Copy)]
pub struct RestoreOptions {
    /// Replace files that exist already (otherwise the restore refuses, before writing).
    pub overwrite: bool,
    /// The most bytes the whole tree may claim; a larger manifest is refused before
    /// anything is written, so a lying publisher cannot fill the disk.
    pub max_bytes: u64,
}

impl Default for RestoreOptions {
    fn default() -> RestoreOptions {
        RestoreOptions {
            overwrite: true,
            max_bytes: u64::MAX,
        }
    }
}

/// As [`restore`], with `options`. Each file is written to a temporary name beside its
/// place and renamed there only once complete, so a failed fetch leaves no half file and
/// destroys nothing.
pub async fn restore_with<S: BlockSource>(
    source: &S,
    entries: &[ManifestEntry],
    out_dir: &Path,
    options: &RestoreOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<(), DecodeError> {
    // Check every path before writing anything, so a hostile manifest leaves no trace.
    let mut total = 0u64;
    for e in entries {
        check_path(&e.path).map_err(DecodeError::BadManifest)?;
        total = total.saturating_add(e.size);
        let mut target = out_dir.to_path_buf();
        target.extend(e.path.split('/'));
        if !options.overwrite && target.exists() {
            return Err(DecodeError::Exists(target));
        }
    }
    if total > options.max_bytes {
        return Err(DecodeError::TooLarge {
            size: total,
            limit: options.max_bytes,
        });
    }
    tokio::fs::create_dir_all(out_dir).await?;
    for (i, e) in entries.iter().enumerate() {
        let mut target = out_dir.to_path_buf();
        target.extend(e.path.split('/'));
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let top = fetch_top(source, e.keys.into()).await?;
        if top.meta.size != e.size {
            return Err(DecodeError::Corrupt {
                at: crate::decode::Position::Top,
                reason: format!(
                    "{:?} is {} bytes, the manifest says {}",
                    e.path, top.meta.size, e.size
                ),
            });
        }
        let partial = partial_name(&target);
        let mut file = tokio::fs::File::create(&partial).await?;
        let written = write_body(source.clone(), top, DEFAULT_WINDOW, &mut file, |_| {}).await;
        drop(file);
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
        tokio::fs::rename(&partial, &target).await?;
        progress(i + 1, entries.len());
    }
    Ok(())
}

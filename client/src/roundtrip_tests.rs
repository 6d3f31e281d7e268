//! Library-level round trips through [`MemoryStore`]: sizes at the edges, multi-level
//! trees, convergence, missing and corrupt blocks, directories.
//!
//! They run on tokio's paused clock: a fetch that misses a block pauses before asking
//! again (decode's retry pause), and the paused clock skips those pauses instead of
//! sleeping through them, so losing blocks costs these tests no wall-clock time.

use crate::decode::{fetch_top, write_body, DecodeError, Position, DEFAULT_WINDOW};
use crate::dir::{put_dir, resolve, restore, Resolved};
use crate::encode::{encode, EncodeOptions};
use crate::format::{Body, ChildRef, DocKind, Manifest, ManifestEntry, TreeParams, FORMAT_VERSION};
use crate::source::{BlockRole, BlockSink, FetchError, MemoryStore};
use veil_proto::{Uri, MAX_PAYLOAD};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    // Not periodic in 32 KiB, so a block in the wrong place changes the output.
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as u8 ^ seed)
        .collect()
}

async fn put(store: &MemoryStore, data: &[u8], opts: &EncodeOptions) -> Uri {
    encode(store, data, opts, |_| {}).await.unwrap().uri
}

async fn get(store: &MemoryStore, uri: &Uri) -> Result<Vec<u8>, DecodeError> {
    let top = fetch_top(store, uri.keys).await?;
    let mut out = Vec::new();
    write_body(store.clone(), top, DEFAULT_WINDOW, &mut out, |_| {}).await?;
    Ok(out)
}

/// Options for a small tree; two copies of each index block.
fn tree(fanout: u16, segment: u16, checks: u16) -> EncodeOptions {
    EncodeOptions {
        tree: TreeParams {
            fanout,
            segment,
            checks,
            copies: 2,
        },
        ..EncodeOptions::named("doc.bin")
    }
}

#[tokio::test(start_paused = true)]
async fn edge_sizes_round_trip() {
    for len in [
        0,
        1,
        1000,
        MAX_PAYLOAD - 1,
        MAX_PAYLOAD,
        MAX_PAYLOAD + 1,
        5 * MAX_PAYLOAD,
    ] {
        let store = MemoryStore::new();
        let data = pattern(len, 1);
        let uri = put(&store, &data, &EncodeOptions::named("a.txt")).await;
        assert_eq!(uri.name.as_deref(), Some("a.txt"));
        assert_eq!(get(&store, &uri).await.unwrap(), data, "len {len}");
        let top = fetch_top(&store, uri.keys).await.unwrap();
        assert_eq!(top.meta.size, len as u64);
        assert_eq!(top.meta.mime, "text/plain");
        // Small documents live in the top block alone; 32 KiB and more need a tree.
        let inline = matches!(top.body, Body::Inline(_));
        assert_eq!(inline, len < MAX_PAYLOAD - 100, "len {len}");
        // Data blocks, plus (past one) half as many check blocks and three copies of one
        // index block, plus the top block.
        let n = len.div_ceil(MAX_PAYLOAD);
        let expected_blocks = match (inline, n) {
            (true, _) => 1,
            (false, 1) => 2,
            (false, n) => n + n.div_ceil(2) + 3 + 1,
        };
        assert_eq!(store.len(), expected_blocks, "len {len}");
    }
}

#[tokio::test(start_paused = true)]
async fn multi_level_trees_round_trip() {
    // (fanout, segment, checks, data blocks, depth): covers 1, segment, segment*fanout, ...
    // with partial nodes at every level, and with and without check blocks.
    for (f, seg, c, blocks, depth) in [
        (3u16, 2u16, 1u16, 30usize, 4u8),
        (2, 2, 0, 8, 3),
        (2, 2, 2, 9, 4),
        (3, 3, 2, 27, 3),
        (4, 5, 3, 20, 2),
        (4, 5, 3, 21, 3),
    ] {
        let store = MemoryStore::new();
        let data = pattern(blocks * MAX_PAYLOAD - 7, 2);
        let uri = put(&store, &data, &tree(f, seg, c)).await;
        let top = fetch_top(&store, uri.keys).await.unwrap();
        match top.body {
            Body::Tree { depth: d, .. } => assert_eq!(d, depth, "{f} {seg} {c} {blocks}"),
            Body::Inline(_) => panic!("inline"),
        }
        assert_eq!(
            get(&store, &uri).await.unwrap(),
            data,
            "{f} {seg} {c} {blocks}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn default_format_needs_two_levels_past_one_segment() {
    let store = MemoryStore::new();
    let data = pattern(340 * MAX_PAYLOAD + 1, 3);
    let uri = put(&store, &data, &EncodeOptions::default()).await;
    let top = fetch_top(&store, uri.keys).await.unwrap();
    assert!(matches!(
        top.body,
        Body::Tree {
            depth: 2,
            params: TreeParams {
                fanout: 170,
                segment: 340,
                checks: 170,
                copies: 3,
            },
            ..
        }
    ));
    // 341 data blocks: a full segment (170 checks) and one of 1 (1 check), 2 level-1
    // index blocks and 1 level-2, three copies each, 1 top.
    assert_eq!(store.len(), 341 + 171 + 3 * (2 + 1) + 1);
    assert_eq!(get(&store, &uri).await.unwrap(), data);
}

/// The keys of data block `i` of `data` (keys are convergent).
fn data_key_of(data: &[u8], i: usize) -> veil_proto::RoutingKey {
    let end = data.len().min((i + 1) * MAX_PAYLOAD);
    veil_proto::block::encode(&data[i * MAX_PAYLOAD..end])
        .unwrap()
        .1
        .routing
}

#[tokio::test(start_paused = true)]
async fn lost_data_blocks_are_rebuilt_from_check_blocks() {
    // Segments of 6 data + 3 checks; the last segment has 2 data + 1 check.
    let store = MemoryStore::new();
    let data = pattern(20 * MAX_PAYLOAD - 100, 6);
    let uri = put(&store, &data, &tree(4, 6, 3)).await;
    // Lose three data blocks of each full segment and one of the last: as many as the
    // segment has check blocks.
    for i in [0, 2, 5, 6, 7, 8, 13, 14, 17, 19] {
        assert!(store.remove(&data_key_of(&data, i)), "block {i}");
    }
    assert_eq!(get(&store, &uri).await.unwrap(), data);

    // One more lost in a segment is too many, and the error says which block and why.
    assert!(store.remove(&data_key_of(&data, 15)));
    let err = get(&store, &uri).await.unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Unrecoverable {
                found: 5,
                needed: 6,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "data block 14 of 20 could not be fetched: block not found; its segment cannot be \
         rebuilt: 5 of the 6 blocks needed were found"
    );
}

#[tokio::test(start_paused = true)]
async fn default_redundancy_survives_losing_a_third() {
    let store = MemoryStore::new();
    // One partial segment: 100 data blocks, 50 check blocks.
    let data = pattern(100 * MAX_PAYLOAD - 5, 8);
    let uri = put(&store, &data, &EncodeOptions::default()).await;
    for i in (0..100).step_by(3) {
        store.remove(&data_key_of(&data, i));
    }
    assert_eq!(get(&store, &uri).await.unwrap(), data);
}

#[tokio::test(start_paused = true)]
async fn convergent_and_name_sensitive() {
    let data = pattern(100_000, 4);
    let a = put(&MemoryStore::new(), &data, &EncodeOptions::named("x.html")).await;
    let b = put(&MemoryStore::new(), &data, &EncodeOptions::named("x.html")).await;
    assert_eq!(a, b);
    let c = put(&MemoryStore::new(), &data, &EncodeOptions::named("y.html")).await;
    assert_ne!(a.keys, c.keys);
}

#[tokio::test(start_paused = true)]
async fn blocks_never_contain_the_plaintext() {
    let store = MemoryStore::new();
    let text = b"The quick brown fox jumps over the lazy dog. ".repeat(2000);
    let uri = put(&store, &text, &EncodeOptions::named("fox.txt")).await;
    let needle = b"quick brown fox";
    for block in store.blocks() {
        let bytes = block.as_bytes();
        assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        assert!(!bytes.windows(7).any(|w| w == b"fox.txt"));
    }
    assert_eq!(get(&store, &uri).await.unwrap(), text);
}

#[tokio::test(start_paused = true)]
async fn missing_blocks_are_named_by_position() {
    let store = MemoryStore::new();
    let data = pattern(20 * MAX_PAYLOAD, 5);
    let uri = put(&store, &data, &tree(4, 4, 0)).await;
    // Find the 18th data block by re-encoding its payload: keys are convergent.
    let payload = &data[17 * MAX_PAYLOAD..18 * MAX_PAYLOAD];
    let (_, keys) = veil_proto::block::encode(payload).unwrap();
    assert!(store.remove(&keys.routing));
    let err = get(&store, &uri).await.unwrap_err();
    assert!(
        matches!(
            &err,
            DecodeError::Fetch {
                at: Position::Data {
                    index: 17,
                    total: 20
                },
                error: FetchError::NotFound
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "data block 18 of 20 could not be fetched: block not found"
    );
    let store = MemoryStore::new();
    let uri = put(&store, &data, &tree(4, 4, 0)).await;
    assert!(store.remove(&uri.keys.routing));
    let err = get(&store, &uri).await.unwrap_err();
    assert!(matches!(err, DecodeError::DocumentNotFound), "{err}");
    assert!(err.to_string().starts_with("document not found"), "{err}");
    // A URI whose data key is wrong blames the URI.
    let mut wrong = put(&store, &data, &tree(4, 4, 0)).await;
    wrong.keys.data = veil_proto::DataKey([7; 32]);
    let err = get(&store, &wrong).await.unwrap_err();
    assert!(matches!(err, DecodeError::WrongKey), "{err}");
    assert!(err.to_string().contains("the URI is wrong"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_lying_tree_is_refused() {
    // An index block listing the wrong number of children for the size it claims.
    let store = MemoryStore::new();
    let (blk, keys) = veil_proto::block::encode(&[7u8; MAX_PAYLOAD]).unwrap();
    store.insert(keys.routing, blk).await.unwrap();
    let index = crate::format::IndexBlock {
        version: FORMAT_VERSION,
        level: 1,
        copy: 0,
        children: vec![keys.into(); 3],
        checks: vec![],
    };
    let (blk, ikeys) = veil_proto::block::encode(&index.to_payload()).unwrap();
    store.insert(ikeys.routing, blk).await.unwrap();
    let top = crate::format::TopBlock {
        version: FORMAT_VERSION,
        meta: crate::format::Metadata {
            size: 2 * MAX_PAYLOAD as u64,
            mime: "x/y".into(),
            name: None,
            compression: crate::format::Compression::None,
            kind: DocKind::File,
        },
        body: Body::Tree {
            params: TreeParams {
                fanout: 4,
                segment: 4,
                checks: 0,
                copies: 1,
            },
            depth: 1,
            root: vec![ikeys.into()],
        },
    };
    let (blk, tkeys) = veil_proto::block::encode(&top.to_payload()).unwrap();
    store.insert(tkeys.routing, blk).await.unwrap();
    let err = get(&store, &Uri::new(tkeys)).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("lists 3 children and 0 checks, 2 and 0 expected"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn directory_round_trip() {
    let src = tempfile::tempdir().unwrap();
    let files = [
        ("index.html", pattern(10, 1)),
        ("a/b/c/deep.bin", pattern(3 * MAX_PAYLOAD + 5, 2)),
        ("a/empty", Vec::new()),
        ("z.txt", b"zzz".to_vec()),
    ];
    for (p, data) in &files {
        let path = src.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    let store = MemoryStore::new();
    let done = put_dir(&store, src.path(), &EncodeOptions::named("site"), |_, _| {})
        .await
        .unwrap();
    assert_eq!(done.uri.name.as_deref(), Some("site"));
    let again = put_dir(&store, src.path(), &EncodeOptions::named("site"), |_, _| {})
        .await
        .unwrap();
    assert_eq!(done.uri, again.uri);

    let mut one = done.uri.clone();
    one.path = vec!["a".into(), "b".into(), "c".into(), "deep.bin".into()];
    match resolve(&store, &one).await.unwrap() {
        Resolved::File(_, top) => {
            assert_eq!(top.meta.name.as_deref(), Some("deep.bin"));
            let mut out = Vec::new();
            write_body(store.clone(), top, 4, &mut out, |_| {})
                .await
                .unwrap();
            assert_eq!(out, files[1].1);
        }
        Resolved::Directory(_) => panic!("a file"),
    }
    one.path = vec!["nope".into()];
    assert!(matches!(
        resolve(&store, &one).await,
        Err(DecodeError::NoSuchPath(_))
    ));

    let Resolved::Directory(entries) = resolve(&store, &done.uri).await.unwrap() else {
        panic!("a directory")
    };
    assert_eq!(entries.len(), 4);
    assert_eq!(
        entries
            .iter()
            .find(|e| e.path == "index.html")
            .unwrap()
            .mime,
        "text/html"
    );
    let out = tempfile::tempdir().unwrap();
    restore(&store, &entries, &out.path().join("copy"), |_, _| {})
        .await
        .unwrap();
    for (p, data) in &files {
        assert_eq!(
            &std::fs::read(out.path().join("copy").join(p)).unwrap(),
            data,
            "{p}"
        );
    }

    // A sub-directory of the manifest resolves to its own entries.
    let mut sub = done.uri.clone();
    sub.path = vec!["a".into()];
    let Resolved::Directory(entries) = resolve(&store, &sub).await.unwrap() else {
        panic!("a directory")
    };
    let paths: Vec<_> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["b/c/deep.bin", "empty"]);
}

#[tokio::test(start_paused = true)]
async fn hostile_manifest_paths_are_refused() {
    let store = MemoryStore::new();
    let file = encode(&store, &b"evil"[..], &EncodeOptions::default(), |_| {})
        .await
        .unwrap();
    for bad in [
        "../escape",
        "/etc/passwd",
        "a/../../b",
        "a//b",
        "./x",
        "a\\..\\b",
        "C:x",
    ] {
        let manifest = Manifest {
            version: FORMAT_VERSION,
            entries: vec![ManifestEntry {
                path: bad.into(),
                keys: ChildRef::from(file.uri.keys),
                size: 4,
                mime: "text/plain".into(),
            }],
        };
        let opts = EncodeOptions {
            kind: DocKind::Manifest,
            ..EncodeOptions::default()
        };
        let uri = encode(&store, &manifest.to_bytes()[..], &opts, |_| {})
            .await
            .unwrap()
            .uri;
        let err = resolve(&store, &uri).await.unwrap_err();
        assert!(matches!(err, DecodeError::BadManifest(_)), "{bad}: {err}");
        // restore() checks on its own too, for callers that built entries themselves.
        let out = tempfile::tempdir().unwrap();
        let entries = manifest.entries.clone();
        let err = restore(&store, &entries, &out.path().join("o"), |_, _| {})
            .await
            .unwrap_err();
        assert!(matches!(err, DecodeError::BadManifest(_)), "{bad}");
        assert!(!out.path().join("o").exists());
    }
}

/// The URI of a known document, end to end: freezes the block format (veil-proto's
/// vectors), the top block format and the inline rule together.
#[tokio::test(start_paused = true)]
async fn uri_vector() {
    let store = MemoryStore::new();
    let uri = put(&store, b"hello veil", &EncodeOptions::named("hello.txt")).await;
    // The data key was checked independently: SHA-256 over the tag and the hand-built
    // top block payload (01 0a 0a "text/plain" 01 09 "hello.txt" 00 00 00 0a "hello veil").
    assert_eq!(
        uri.to_string(),
        "veil:CHK@WTzleyCtM09JikxLPYjnk_RwxemS1VliktwPay5tmPE,\
         cSS07rYYkH51xzxWF1JjGMPI9Lx5GGXEOK5QU6b04O4/hello.txt"
    );
}

/// Fetches and decodes the index block `keys` names.
async fn index_at(store: &MemoryStore, keys: ChildRef) -> crate::format::IndexBlock {
    let block = crate::source::BlockSource::fetch(store, keys.routing)
        .await
        .unwrap();
    crate::format::IndexBlock::from_payload(&block.decrypt(&keys.data).unwrap()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn index_blocks_survive_while_one_copy_does() {
    let store = MemoryStore::new();
    // Segments of 4: 10 level-1 index blocks under a level-2 root, 3 copies each.
    let data = pattern(40 * MAX_PAYLOAD, 12);
    let opts = EncodeOptions {
        tree: TreeParams {
            fanout: 16,
            segment: 4,
            checks: 2,
            copies: 3,
        },
        ..EncodeOptions::default()
    };
    let uri = put(&store, &data, &opts).await;
    let top = fetch_top(&store, uri.keys).await.unwrap();
    let Body::Tree { root, depth: 2, .. } = top.body else {
        panic!("{top:?}")
    };
    // Lose the first two copies of the root and of every level-1 index block.
    let root_index = index_at(&store, root[2]).await;
    assert_eq!(root_index.children.len(), 10 * 3);
    for copies in std::iter::once(&root[..]).chain(root_index.children.chunks(3)) {
        assert!(store.remove(&copies[0].routing) && store.remove(&copies[1].routing));
    }
    assert_eq!(get(&store, &uri).await.unwrap(), data);
    // Losing every copy of one loses its part of the document, and says which.
    assert!(store.remove(&root_index.children[3 * 3 + 2].routing));
    let err = get(&store, &uri).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the level-1 index block over data blocks 13..16 of 40 could not be fetched: \
         block not found"
    );
}

/// A fetch that rebuilds blocks offers them for healing: the lost data blocks (from
/// check blocks) and the lost index copies (from a sibling copy), byte for byte, and
/// inserting them again restores the store.
#[tokio::test(start_paused = true)]
async fn a_fetch_that_rebuilds_heals_what_it_rebuilt() {
    use crate::decode::{write_body_healing, Heal};
    let store = MemoryStore::new();
    let data = pattern(20 * MAX_PAYLOAD - 100, 7);
    let opts = EncodeOptions {
        tree: TreeParams {
            fanout: 4,
            segment: 6,
            checks: 3,
            copies: 3,
        },
        ..EncodeOptions::default()
    };
    let uri = put(&store, &data, &opts).await;
    let top = fetch_top(&store, uri.keys).await.unwrap();
    let Body::Tree { ref root, .. } = top.body else {
        panic!("{top:?}")
    };
    // Lose the first two copies of the root index block and four data blocks.
    let mut lost = vec![root[0].routing, root[1].routing];
    for i in [0, 7, 8, 19] {
        lost.push(data_key_of(&data, i));
    }
    for k in &lost {
        assert!(store.remove(k));
    }
    let heal = Heal::new();
    let mut out = Vec::new();
    write_body_healing(
        store.clone(),
        top.clone(),
        4,
        &mut out,
        |_| {},
        heal.clone(),
    )
    .await
    .unwrap();
    assert_eq!(out, data);
    assert_eq!(heal.len(), lost.len());
    assert_eq!(heal.reinsert(&store).await.unwrap(), lost.len());
    for k in &lost {
        assert!(store.contains(k), "healed");
    }
    assert_eq!(store.role(&root[0].routing), Some(BlockRole::Index));
    assert_eq!(store.role(&data_key_of(&data, 7)), Some(BlockRole::Data));
    // A fetch that rebuilt nothing offers nothing.
    let heal = Heal::new();
    write_body_healing(store.clone(), top, 4, &mut Vec::new(), |_| {}, heal.clone())
        .await
        .unwrap();
    assert!(heal.is_empty());
}

/// A manifest is read into memory, so one that claims more than 64 MiB is refused
/// before a block of it is fetched; one of exactly 64 MiB is fetched.
#[tokio::test(start_paused = true)]
async fn a_manifest_over_64_mib_is_refused_before_fetching() {
    use crate::dir::fetch_manifest;
    use crate::format::{Metadata, TopBlock, MANIFEST_MIME, MAX_MANIFEST_SIZE};
    assert_eq!(MAX_MANIFEST_SIZE, 64 << 20);
    let store = MemoryStore::new();
    let manifest_of = |size: u64| {
        let params = TreeParams::default();
        TopBlock {
            version: FORMAT_VERSION,
            meta: Metadata {
                size,
                mime: MANIFEST_MIME.into(),
                name: None,
                compression: crate::format::Compression::None,
                kind: DocKind::Manifest,
            },
            body: Body::Tree {
                params,
                depth: params.depth_for(crate::format::data_blocks(size)),
                root: vec![
                    ChildRef {
                        routing: veil_proto::RoutingKey([1; 32]),
                        data: veil_proto::DataKey([2; 32]),
                    };
                    params.copies as usize
                ],
            },
        }
    };
    let err = fetch_manifest(&store, manifest_of(MAX_MANIFEST_SIZE + 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DecodeError::Corrupt { reason, .. } if reason.contains("exceeds")),
        "{err}"
    );
    let err = fetch_manifest(&store, manifest_of(MAX_MANIFEST_SIZE))
        .await
        .unwrap_err();
    assert!(matches!(err, DecodeError::Fetch { .. }), "{err}");
}

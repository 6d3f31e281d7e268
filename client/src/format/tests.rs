//! Frozen encodings. The expected bytes follow postcard's specification (varint lengths,
//! enum variant indices, one byte per `u8`) and were checked by hand field by field; if
//! any of them changes, every published URI breaks.

use super::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn child(r: u8, d: u8) -> ChildRef {
    ChildRef {
        routing: RoutingKey([r; 32]),
        data: DataKey([d; 32]),
    }
}

fn meta(size: u64, mime: &str, name: Option<&str>) -> Metadata {
    Metadata {
        size,
        mime: mime.into(),
        name: name.map(str::to_string),
        compression: Compression::None,
        kind: DocKind::File,
    }
}

#[test]
fn index_vector() {
    let idx = IndexBlock {
        version: 1,
        level: 1,
        copy: 2,
        children: vec![child(0xAA, 0x01), child(0xBB, 0x02)],
        checks: vec![child(0xDD, 0x04)],
    };
    // version | level 1 | copy 2 | 2 children | 1 check
    let expected = format!(
        "01010202{}{}{}{}01{}{}",
        "aa".repeat(32),
        "01".repeat(32),
        "bb".repeat(32),
        "02".repeat(32),
        "dd".repeat(32),
        "04".repeat(32)
    );
    assert_eq!(hex(&idx.to_payload()), expected);
    assert_eq!(IndexBlock::from_payload(&idx.to_payload()).unwrap(), idx);
}

#[test]
fn top_vectors() {
    let top = TopBlock {
        version: 1,
        meta: meta(40000, "text/html", Some("a.html")),
        body: Body::Tree {
            params: TreeParams {
                fanout: 170,
                segment: 340,
                checks: 170,
                copies: 2,
            },
            depth: 1,
            root: vec![child(0xCC, 0x03), child(0xEE, 0x05)],
        },
    };
    // version | size 40000 | "text/html" | Some("a.html") | none | file |
    // Tree: fanout 170, segment 340, checks 170, copies 2, depth 1, 2 roots
    let expected = format!(
        "01c0b802{}{}0000{}{}{}{}{}",
        "09746578742f68746d6c",
        "0106612e68746d6c",
        "01aa01d402aa01020102",
        "cc".repeat(32),
        "03".repeat(32),
        "ee".repeat(32),
        "05".repeat(32)
    );
    assert_eq!(hex(&top.to_payload()), expected);
    assert_eq!(TopBlock::from_payload(&top.to_payload()).unwrap(), top);

    let inline = TopBlock {
        version: 1,
        meta: meta(2, "text/plain", None),
        body: Body::Inline(b"hi".to_vec()),
    };
    assert_eq!(
        hex(&inline.to_payload()),
        "01020a746578742f706c61696e00000000026869"
    );
}

#[test]
fn manifest_vector() {
    let man = Manifest {
        version: 1,
        entries: vec![ManifestEntry {
            path: "d/x.txt".into(),
            keys: child(0x11, 0x22),
            size: 300,
            mime: "text/plain".into(),
        }],
    };
    let expected = format!(
        "010107642f782e747874{}{}ac020a746578742f706c61696e",
        "11".repeat(32),
        "22".repeat(32)
    );
    assert_eq!(hex(&man.to_bytes()), expected);
    assert_eq!(Manifest::from_bytes(&man.to_bytes()).unwrap(), man);
}

#[test]
fn largest_structures_fit_one_payload() {
    let idx = IndexBlock {
        version: 1,
        level: u8::MAX,
        copy: u8::MAX,
        children: vec![child(0xFF, 0xFF); MAX_ENTRIES],
        checks: Vec::new(),
    };
    assert!(idx.to_payload().len() <= MAX_PAYLOAD);
    let p = TreeParams::default();
    let seg = IndexBlock {
        version: 1,
        level: 1,
        copy: u8::MAX,
        children: vec![child(0xFF, 0xFF); p.segment as usize],
        checks: vec![child(0xFF, 0xFF); p.checks as usize],
    };
    assert!(seg.to_payload().len() <= MAX_PAYLOAD);
    let top = TopBlock {
        version: 1,
        meta: Metadata {
            kind: DocKind::Manifest,
            ..meta(
                u64::MAX,
                &"m".repeat(MAX_MIME_LEN),
                Some(&"n".repeat(MAX_NAME_LEN)),
            )
        },
        body: Body::Tree {
            params: TreeParams {
                fanout: u16::MAX,
                segment: u16::MAX,
                checks: u16::MAX,
                copies: 8,
            },
            depth: u8::MAX,
            root: vec![child(0xFF, 0xFF); 8],
        },
    };
    assert!(top.to_payload().len() <= MAX_PAYLOAD);
}

#[test]
fn shape() {
    assert_eq!(data_blocks(0), 0);
    assert_eq!(data_blocks(1), 1);
    assert_eq!(data_blocks(MAX_PAYLOAD as u64), 1);
    assert_eq!(data_blocks(MAX_PAYLOAD as u64 + 1), 2);
    let p = TreeParams::default();
    assert!(p.is_valid());
    assert_eq!(p.depth_for(1), 0);
    assert_eq!(p.depth_for(2), 1);
    assert_eq!(p.depth_for(340), 1);
    assert_eq!(p.depth_for(341), 2);
    assert_eq!(p.depth_for(3200), 2);
    assert_eq!(p.depth_for(340 * 170), 2);
    assert_eq!(p.depth_for(340 * 170 + 1), 3);
    assert_eq!(p.cover(1), 340);
    assert_eq!(p.cover(3), 340 * 170 * 170);
    assert_eq!(p.checks_for(340), 170);
    assert_eq!(p.checks_for(1), 1);
    assert_eq!(p.checks_for(3), 2);
    for bad in [
        (1, 2, 0, 1),
        (512, 2, 0, 1),
        (511, 1, 0, 1),
        (511, 400, 112, 1),
        (171, 340, 170, 3),
        (4, 4, 2, 0),
    ] {
        let (fanout, segment, checks, copies) = bad;
        let p = TreeParams {
            fanout,
            segment,
            checks,
            copies,
        };
        assert!(!p.is_valid(), "{bad:?}");
    }
}

#[test]
fn invalid_top_blocks_are_refused() {
    let mut top = TopBlock {
        version: 1,
        meta: meta(3, "text/plain", None),
        body: Body::Inline(b"hi".to_vec()),
    };
    assert!(TopBlock::from_payload(&top.to_payload()).is_err());
    top.meta.size = 100 * MAX_PAYLOAD as u64;
    top.body = Body::Tree {
        params: TreeParams {
            fanout: 4,
            segment: 4,
            checks: 2,
            copies: 1,
        },
        depth: 3,
        root: vec![child(1, 2)],
    };
    assert!(TopBlock::from_payload(&top.to_payload()).is_err());
    top.body = Body::Tree {
        params: TreeParams {
            fanout: 4,
            segment: 4,
            checks: 2,
            copies: 1,
        },
        depth: 4,
        root: vec![child(1, 2)],
    };
    TopBlock::from_payload(&top.to_payload()).unwrap();
    // The root needs exactly `copies` copies.
    top.body = Body::Tree {
        params: TreeParams {
            fanout: 4,
            segment: 4,
            checks: 2,
            copies: 2,
        },
        depth: 4,
        root: vec![child(1, 2)],
    };
    assert!(TopBlock::from_payload(&top.to_payload()).is_err());
    top.body = Body::Tree {
        params: TreeParams {
            fanout: 1,
            segment: 4,
            checks: 2,
            copies: 1,
        },
        depth: 100,
        root: vec![child(1, 2)],
    };
    assert!(TopBlock::from_payload(&top.to_payload()).is_err());
    let mut p = top.to_payload();
    p[0] = 2;
    assert_eq!(TopBlock::from_payload(&p), Err(FormatError::Version(2)));
    assert!(TopBlock::from_payload(&[]).is_err());
    let mut p = IndexBlock {
        version: 1,
        level: 1,
        copy: 0,
        children: vec![],
        checks: vec![],
    }
    .to_payload();
    p.push(0);
    assert!(IndexBlock::from_payload(&p).is_err());
}

#[test]
fn paths() {
    for ok in ["a", "a/b.txt", "dir/sub/file with space", "ünï"] {
        check_path(ok).unwrap();
    }
    for bad in [
        "", "/a", "..", "a/..", "a/./b", "a//b", "a/", "a\\b", "c:evil", "a\nb",
    ] {
        assert!(check_path(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn manifest_conflicts_and_order() {
    let e = |p: &str| ManifestEntry {
        path: p.into(),
        keys: child(1, 1),
        size: 0,
        mime: "x/y".into(),
    };
    let m = |paths: &[&str]| Manifest {
        version: 1,
        entries: paths.iter().map(|p| e(p)).collect(),
    };
    Manifest::from_bytes(&m(&["a", "b/c", "b/d"]).to_bytes()).unwrap();
    assert!(Manifest::from_bytes(&m(&["b", "a"]).to_bytes()).is_err());
    assert!(Manifest::from_bytes(&m(&["a", "a"]).to_bytes()).is_err());
    assert!(Manifest::from_bytes(&m(&["a", "a-b", "a/c"]).to_bytes()).is_err());
    let ok = m(&["a/x", "a/y/z", "b"]);
    assert_eq!(ok.get("a/y/z").unwrap().path, "a/y/z");
    assert!(ok.get("a").is_none());
    let sub: Vec<_> = ok.subdir("a").into_iter().map(|e| e.path).collect();
    assert_eq!(sub, ["x", "y/z"]);
}

/// The limits on text a publisher controls hold at exactly their bounds: a MIME type of
/// 255 bytes, a name of 1,024 and a path of 4,096 are read, one byte more is refused.
#[test]
fn text_limits_hold_at_exactly_their_bounds() {
    let top = |mime: usize, name: usize| TopBlock {
        version: 1,
        meta: meta(2, &"m".repeat(mime), Some(&"n".repeat(name))),
        body: Body::Inline(b"hi".to_vec()),
    };
    TopBlock::from_payload(&top(MAX_MIME_LEN, MAX_NAME_LEN).to_payload()).unwrap();
    for (mime, name, why) in [
        (MAX_MIME_LEN + 1, MAX_NAME_LEN, "MIME type too long"),
        (MAX_MIME_LEN, MAX_NAME_LEN + 1, "name too long"),
    ] {
        assert_eq!(
            TopBlock::from_payload(&top(mime, name).to_payload()),
            Err(FormatError::Invalid(why.into()))
        );
    }
    assert_eq!(MAX_PATH_LEN, 4096);
    let longest = format!("{}/{}", "d".repeat(2047), "f".repeat(2048));
    check_path(&longest).unwrap();
    assert!(check_path(&format!("{longest}x")).is_err());
    let manifest = |mime: usize| Manifest {
        version: 1,
        entries: vec![ManifestEntry {
            path: longest.clone(),
            keys: child(1, 1),
            size: 0,
            mime: "m".repeat(mime),
        }],
    };
    Manifest::from_bytes(&manifest(MAX_MIME_LEN).to_bytes()).unwrap();
    assert_eq!(
        Manifest::from_bytes(&manifest(MAX_MIME_LEN + 1).to_bytes()),
        Err(FormatError::Invalid("MIME type too long".into()))
    );
}

/// Parameters that never reach a decoder's depth (a fanout of 1 covers no more at each
/// level) stop at depth 255 rather than overflow.
#[test]
fn depth_stops_at_255_for_parameters_that_never_cover() {
    let p = TreeParams {
        fanout: 1,
        segment: 4,
        checks: 0,
        copies: 1,
    };
    assert_eq!(p.depth_for(5), u8::MAX);
    assert_eq!(p.depth_for(u64::MAX), u8::MAX);
    assert_eq!(p.depth_for(4), 1);
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = TopBlock::from_payload(&bytes);
            let _ = IndexBlock::from_payload(&bytes);
            let _ = Manifest::from_bytes(&bytes);
            let mut versioned = bytes.clone();
            versioned.insert(0, FORMAT_VERSION);
            let _ = TopBlock::from_payload(&versioned);
            let _ = IndexBlock::from_payload(&versioned);
            let _ = Manifest::from_bytes(&versioned);
        }

        #[test]
        fn paths_never_panic(path in ".{0,40}") {
            let _ = check_path(&path);
        }
    }
}

use super::*;
use crate::MemoryStore;
use proptest::prelude::*;
use veil_proto::ssk::MAX_SSK_PAYLOAD;

fn entry(n: u8, name: &str) -> Entry {
    let (_, keys) = veil_proto::block::encode(&[n]).unwrap();
    Entry {
        uri: veil_proto::Uri {
            keys,
            name: Some(name.into()),
            path: Vec::new(),
        }
        .to_string(),
        name: name.into(),
        size: u64::from(n) * 1000,
        mime: "text/plain".into(),
        description: format!("document {n}"),
    }
}

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}

#[test]
fn normalisation_folds_case_and_compatibility_forms() {
    assert_eq!(normalise("  Straße ").unwrap(), "strasse");
    assert_eq!(normalise("STRASSE").unwrap(), "strasse");
    assert_eq!(normalise("\u{FB01}le").unwrap(), "file");
    // Composed and decomposed é are one keyword.
    assert_eq!(
        normalise("Caf\u{E9}").unwrap(),
        normalise("cafe\u{301}").unwrap()
    );
    assert_eq!(normalise("ΣΊΣΥΦΟΣ").unwrap(), normalise("σίσυφος").unwrap());
}

#[test]
fn bad_keywords_are_refused() {
    assert!(matches!(normalise(""), Err(KeywordError::Empty)));
    assert!(matches!(normalise(" \t "), Err(KeywordError::Empty)));
    assert!(normalise(&"a".repeat(256)).is_ok());
    assert!(matches!(
        normalise(&"a".repeat(257)),
        Err(KeywordError::TooLong(257))
    ));
    assert!(matches!(
        normalise(&"a".repeat(100_000)),
        Err(KeywordError::TooLong(100_000))
    ));
}

#[test]
fn keyword_keys_differ_from_ksk_keys_of_the_same_words() {
    assert_ne!(
        keyword_pair("veil").keys(),
        KeyPair::from_words("veil").keys()
    );
    assert_ne!(keyword_pair("veil").keys(), keyword_pair("veils").keys());
    assert_eq!(keyword_pair("veil").keys(), keyword_pair("veil").keys());
}

/// Freezes the derivation and the payload format: a change here is a new format version.
#[test]
fn vectors() {
    let keys = keyword_pair("freedom").keys();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(
        hex(&keys.routing_key(&slot_name(0)).0),
        "fa207cd640f0fa819ba0c301b6aa936adade5ba7d847daacbc96120251f3efef"
    );
    let e = Entry {
        uri: "veil:KSK@a".into(),
        name: "a".into(),
        size: 300,
        mime: "text/plain".into(),
        description: String::new(),
    };
    assert_eq!(
        hex(&e.to_payload().unwrap()),
        "010a7665696c3a4b534b40610161ac020a746578742f706c61696e00"
    );
}

#[test]
fn entries_round_trip_and_bad_ones_are_refused() {
    let e = entry(1, "a.txt");
    assert_eq!(Entry::from_payload(&e.to_payload().unwrap()).unwrap(), e);
    let mut p = e.to_payload().unwrap();
    p[0] = 2;
    assert!(Entry::from_payload(&p).is_err());
    let mut p = e.to_payload().unwrap();
    p.push(0);
    assert!(Entry::from_payload(&p).is_err(), "trailing bytes");
    assert!(Entry::from_payload(&[]).is_err());
    for bad in [
        Entry {
            uri: "http://example.invalid/".into(),
            ..e.clone()
        },
        Entry {
            name: "x".repeat(MAX_NAME_LEN + 1),
            ..e.clone()
        },
        Entry {
            description: "x".repeat(MAX_DESCRIPTION_LEN + 1),
            ..e.clone()
        },
        Entry {
            name: "a\nb".into(),
            ..e.clone()
        },
    ] {
        assert!(bad.to_payload().is_err(), "{bad:?}");
    }
    // The largest entry fits one signed block.
    let big = Entry {
        uri: format!("veil:KSK@{}", "a".repeat(MAX_URI_LEN - 9)),
        name: "n".repeat(MAX_NAME_LEN),
        size: u64::MAX,
        mime: format!("a/{}", "b".repeat(crate::format::MAX_MIME_LEN - 2)),
        description: "d".repeat(MAX_DESCRIPTION_LEN),
    };
    assert!(big.to_payload().unwrap().len() <= MAX_SSK_PAYLOAD);
}

proptest! {
    #[test]
    fn any_payload_decodes_or_is_refused(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Entry::from_payload(&bytes);
    }

    #[test]
    fn any_keyword_normalises_or_is_refused(word in ".{0,80}") {
        if let Ok(n) = normalise(&word) {
            prop_assert!(!n.is_empty() && n.len() <= MAX_KEYWORD_LEN);
            prop_assert_eq!(normalise(&n).unwrap(), n.clone(), "normalising twice changes nothing");
        }
    }
}

#[tokio::test]
async fn publishers_add_entries_and_a_search_finds_them_all() {
    let node = MemoryStore::new();
    for i in 0..20u8 {
        let slot = publish_entry(&node, "Music", &entry(i, "song"))
            .await
            .unwrap();
        assert_eq!(slot, Published::New(u64::from(i)));
    }
    // Publishing again finds it.
    assert_eq!(
        publish_entry(&node, "music", &entry(3, "song"))
            .await
            .unwrap(),
        Published::Already(3)
    );
    let found = search_keyword(&node, "MUSIC").await.unwrap();
    assert_eq!(found.len(), 20);
    assert_eq!(found[7], entry(7, "song"));
    assert!(search_keyword(&node, "musics").await.unwrap().is_empty());
}

#[tokio::test]
async fn search_is_and_across_words() {
    let node = MemoryStore::new();
    for (i, ws) in [
        (1, &["red", "blue"][..]),
        (2, &["red"]),
        (3, &["blue", "green"]),
        (4, &["red", "blue", "green"]),
    ] {
        for w in ws {
            publish_entry(&node, w, &entry(i, "x")).await.unwrap();
        }
    }
    let uris = |es: Vec<Entry>| {
        let mut v: Vec<u64> = es.iter().map(|e| e.size / 1000).collect();
        v.sort();
        v
    };
    assert_eq!(
        uris(search(&node, &words(&["red"])).await.unwrap()),
        [1, 2, 4]
    );
    assert_eq!(
        uris(search(&node, &words(&["Red", "blue"])).await.unwrap()),
        [1, 4]
    );
    assert_eq!(
        uris(
            search(&node, &words(&["red", "blue", "green"]))
                .await
                .unwrap()
        ),
        [4]
    );
    assert_eq!(
        uris(search(&node, &words(&["red", "red"])).await.unwrap()),
        [1, 2, 4]
    );
    assert!(search(&node, &words(&["red", "purple"]))
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(search(&node, &[]).await, Err(KeywordError::Empty)));
    assert!(matches!(
        search(&node, &words(&["red", ""])).await,
        Err(KeywordError::Empty)
    ));
}

#[tokio::test]
async fn a_search_reads_past_gaps_shorter_than_a_window_and_stops_after_one() {
    let node = MemoryStore::new();
    let pair = keyword_pair("gap");
    let put = |n: u64, e: Entry| {
        let (block, key) = pair
            .sign(&slot_name(n), &e.to_payload().unwrap(), [0; 12])
            .unwrap();
        let node = node.clone();
        async move { node.insert(key, block).await.unwrap() }
    };
    put(0, entry(0, "a")).await;
    // Seven empty slots, then one taken: still found.
    put(8, entry(8, "b")).await;
    // Eight empty slots after it: the one beyond is not read.
    put(17, entry(17, "c")).await;
    let found: Vec<u64> = search_keyword(&node, "gap")
        .await
        .unwrap()
        .iter()
        .map(|e| e.size / 1000)
        .collect();
    assert_eq!(found, [0, 8]);
    // A publisher fills the first hole.
    assert_eq!(
        publish_entry(&node, "gap", &entry(40, "d")).await.unwrap(),
        Published::New(1)
    );
}

#[tokio::test]
async fn junk_in_a_slot_is_skipped_and_not_overwritten() {
    let node = MemoryStore::new();
    let pair = keyword_pair("junk");
    // A well-signed block whose payload is not an entry.
    let (block, key) = pair.sign(&slot_name(0), b"\x01garbage", [0; 12]).unwrap();
    node.insert(key, block.clone()).await.unwrap();
    // A block signed by someone else's key, claimed for slot 1, cannot even be stored:
    // nodes verify. An entry under another keyword's key is simply elsewhere.
    publish_entry(&node, "junk", &entry(5, "real"))
        .await
        .unwrap();
    let found = search_keyword(&node, "junk").await.unwrap();
    assert_eq!(found, [entry(5, "real")]);
    assert_eq!(
        node.fetch(key).await.unwrap(),
        block,
        "the junk slot was not overwritten"
    );
}

#[tokio::test]
async fn a_search_keeps_at_most_max_results_and_reads_at_most_max_slots() {
    #[derive(Clone)]
    struct Counting(MemoryStore, std::sync::Arc<std::sync::atomic::AtomicU64>);
    impl BlockSource for Counting {
        async fn fetch(
            &self,
            key: veil_proto::RoutingKey,
        ) -> Result<veil_proto::Block, FetchError> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.0.fetch(key).await
        }
    }
    let node = MemoryStore::new();
    let pair = keyword_pair("spam");
    let junk = pair.sign(&slot_name(0), b"junk", [0; 12]).unwrap();
    for n in 0..MAX_SLOTS + 20 {
        let (block, key) = pair.sign(&slot_name(n), b"junk", [0; 12]).unwrap();
        node.insert(key, block).await.unwrap();
    }
    drop(junk);
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let src = Counting(node.clone(), count.clone());
    assert!(search_keyword(&src, "spam").await.unwrap().is_empty());
    assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), MAX_SLOTS);
    assert!(matches!(
        publish_entry(&node, "spam", &entry(1, "x")).await,
        Err(KeywordError::Full(_))
    ));

    let node = MemoryStore::new();
    for i in 0..(MAX_RESULTS + 10) {
        let e = Entry {
            size: i as u64,
            ..entry((i % 250) as u8, &format!("n{i}"))
        };
        let e = Entry {
            uri: format!("veil:KSK@doc{i}"),
            ..e
        };
        publish_entry(&node, "many", &e).await.unwrap();
    }
    assert_eq!(
        search_keyword(&node, "many").await.unwrap().len(),
        MAX_RESULTS
    );
}

#[tokio::test]
async fn a_node_that_is_not_running_is_an_error_not_an_empty_result() {
    #[derive(Clone)]
    struct Down;
    impl BlockSource for Down {
        async fn fetch(&self, _: veil_proto::RoutingKey) -> Result<veil_proto::Block, FetchError> {
            Err(FetchError::NodeNotRunning("connection refused".into()))
        }
    }
    assert!(matches!(
        search(&Down, &words(&["x"])).await,
        Err(KeywordError::Fetch(FetchError::NodeNotRunning(_)))
    ));
}

#[test]
fn an_index_adds_merges_and_searches() {
    let mut index = Index::new();
    index.add(entry(1, "a"), &words(&["Red", "blue"])).unwrap();
    index.add(entry(2, "b"), &words(&["red"])).unwrap();
    index
        .add(
            Entry {
                name: "a2".into(),
                ..entry(1, "a")
            },
            &words(&["green"]),
        )
        .unwrap();
    assert_eq!(index.entries.len(), 2);
    assert_eq!(index.entries[0].words, ["blue", "green", "red"]);
    assert_eq!(index.entries[0].entry.name, "a2");
    let back = Index::from_json(&index.to_json()).unwrap();
    assert_eq!(back, index);
    let names = |v: Vec<Entry>| v.into_iter().map(|e| e.name).collect::<Vec<_>>();
    assert_eq!(names(back.search(&words(&["RED"])).unwrap()), ["a2", "b"]);
    assert_eq!(
        names(back.search(&words(&["red", "green"])).unwrap()),
        ["a2"]
    );
    assert!(back.search(&words(&["red", "pink"])).unwrap().is_empty());
    assert!(index.add(entry(3, "c"), &[]).is_err());
    assert!(index.add(entry(3, "c"), &words(&[""])).is_err());
}

#[test]
fn an_index_drops_bad_entries_and_refuses_what_is_not_one() {
    let text = r#"{"veil_index":1,"entries":[
        {"uri":"veil:KSK@a","name":"a","size":1,"mime":"text/plain","description":"","words":["x"]},
        {"uri":"not a uri","name":"b","size":1,"mime":"text/plain","description":"","words":["x"]},
        {"name":"c"},
        7
    ]}"#;
    let index = Index::from_json(text.as_bytes()).unwrap();
    assert_eq!(index.entries.len(), 1);
    assert!(Index::from_json(b"{\"veil_index\":2,\"entries\":[]}").is_err());
    assert!(Index::from_json(b"<html>").is_err());
}

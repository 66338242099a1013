//! Behaviour specific to the SQLite backend: files, reopening, the background compactor.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use store::{Datastore, EventKind, KeyValue, ListOptions};
use store_sqlite::SqliteStore;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn kv(key: &str, value: &str, create_revision: i64, mod_revision: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: value.as_bytes().to_vec(),
        create_revision,
        mod_revision,
    }
}

#[tokio::test]
async fn files_are_private_to_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(&path).unwrap();
    store.create("/a", b"secret".to_vec()).await.unwrap();
    store.get("/a").await.unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let file = dir.path().join(format!("state.db{suffix}"));
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    drop(store);

    // A database left world-readable by something else is tightened on open.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(
        store.get("/a").await.unwrap().1.map(|kv| kv.value),
        Some(b"secret".to_vec())
    );
}

#[tokio::test]
async fn open_fails_in_a_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteStore::open(&dir.path().join("missing/state.db")).unwrap_err();
    assert!(
        matches!(err, store_sqlite::Error::PrepareFile { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn reopen_keeps_data_and_continues_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(&path).unwrap();
    let r1 = store.create("/a", b"1".to_vec()).await.unwrap();
    let r2 = store.create("/b", b"1".to_vec()).await.unwrap();
    let r3 = store.update("/a", b"2".to_vec(), r1).await.unwrap();
    let (r4, _) = store.delete("/b", None).await.unwrap();
    store.compact(r4).await.unwrap();
    drop(store);

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.current_revision().await.unwrap(),
        r4,
        "the compacted tombstone's revision is not reused"
    );
    assert_eq!(store.compacted_revision().await.unwrap(), r4);
    let page = store.list("/", ListOptions::default()).await.unwrap();
    assert_eq!(
        (page.revision, page.items),
        (r4, vec![kv("/a", "2", r1, r3)])
    );
    let r5 = store.create("/b", b"2".to_vec()).await.unwrap();
    assert_eq!(r5, r4 + 1);
    assert!(r5 > r2);
    match store.update("/a", b"x".to_vec(), r1).await {
        Err(store::Error::Conflict { current }) => assert_eq!(*current, kv("/a", "2", r1, r3)),
        other => panic!("expected Conflict, got {other:?}"),
    }
    let mut watch = store.watch("/", r4).await.unwrap();
    let event = watch.next().await.unwrap().unwrap();
    assert_eq!(
        (event.kind, event.kv),
        (EventKind::Create, kv("/b", "2", r5, r5))
    );
}

/// Waits up to five seconds for the compacted revision to reach `expected`.
async fn wait_compacted(store: &SqliteStore, expected: i64) {
    for _ in 0..500 {
        if store.compacted_revision().await.unwrap() == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.compacted_revision().await.unwrap(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compactor_keeps_the_newest_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let mut rev = store.create("/a", b"0".to_vec()).await.unwrap();
    for i in 1..20 {
        rev = store
            .update("/a", i.to_string().into_bytes(), rev)
            .await
            .unwrap();
    }
    let compactor = store.spawn_compactor(Duration::from_millis(50), 5);
    wait_compacted(&store, rev - 5).await;
    let at = |revision| ListOptions {
        revision: Some(revision),
        ..ListOptions::default()
    };
    assert!(matches!(
        store.list("/", at(rev - 6)).await,
        Err(store::Error::Compacted { .. })
    ));
    assert_eq!(
        store.list("/", at(rev - 5)).await.unwrap().items,
        vec![kv("/a", "14", 1, rev - 5)]
    );
    for _ in 0..10 {
        rev = store.update("/a", b"more".to_vec(), rev).await.unwrap();
    }
    wait_compacted(&store, rev - 5).await;
    compactor.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compactor_stops_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let compactor = store.spawn_compactor(Duration::from_millis(10), 1000);
    drop(store);
    tokio::time::timeout(Duration::from_secs(5), compactor)
        .await
        .expect("compactor stopped")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_of_ten_thousand_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (t..10_000).step_by(8) {
                store
                    .create(&format!("/registry/pods/ns/pod-{i:05}"), vec![b'x'; 200])
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let started = std::time::Instant::now();
    let page = store
        .list("/registry/pods/", ListOptions::default())
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(page.items.len(), 10_000);
    assert_eq!(page.items[0].key, "/registry/pods/ns/pod-00000");
    assert_eq!(page.items[9_999].key, "/registry/pods/ns/pod-09999");
    let page = store
        .list(
            "/registry/pods/",
            ListOptions {
                limit: Some(500),
                ..ListOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((page.items.len(), page.remaining), (500, 9_500));
    eprintln!("listing 10,000 keys took {elapsed:?}");
}

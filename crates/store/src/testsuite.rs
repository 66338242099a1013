//! The conformance suite every [`Datastore`] backend runs from its own tests, in the manner of
//! containerd's snapshotter testsuite.
//!
//! Each case is a `pub async fn case_*(store)` that gets a fresh, empty store and panics on the
//! first deviation. [`conformance_tests!`](crate::conformance_tests) expands into one
//! `#[tokio::test]` per case, so a backend's test file needs one line:
//!
//! ```no_run
//! store::conformance_tests!(async { store::MemoryStore::new() });
//! ```
//!
//! The calling crate needs `tokio` (with `macros` and `rt-multi-thread`) as a dev-dependency.
//! A backend that needs something kept alive next to it (a temporary directory) wraps both in
//! [`WithGuard`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use crate::{
    Datastore, Error, Event, EventKind, KeyValue, ListOptions, ListPage, Result, Revision,
    WatchStream,
};

/// How long a case may wait for one watch event before it counts as lost.
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Expands into one `#[tokio::test]` per conformance case, each running against the store made
/// by `$make`, an expression yielding a future of a fresh, empty [`Datastore`].
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@cases $make;
            empty_store => case_empty_store,
            create_get => case_create_get,
            create_existing => case_create_existing,
            update => case_update,
            missing_key => case_missing_key,
            delete => case_delete,
            revisions_increase => case_revisions_increase,
            list_prefix => case_list_prefix,
            list_paging_snapshot => case_list_paging_snapshot,
            list_skip_count => case_list_skip_count,
            list_at_revision => case_list_at_revision,
            watch_history_then_live => case_watch_history_then_live,
            watch_prefix => case_watch_prefix,
            watch_from_middle => case_watch_from_middle,
            compaction => case_compaction,
            recreate => case_recreate,
            concurrent_create_same_key => case_concurrent_create_same_key,
            concurrent_compare_and_swap => case_concurrent_compare_and_swap,
            concurrent_watchers => case_concurrent_watchers,
        );
    };
    (@cases $make:expr; $($name:ident => $case:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let store = ($make).await;
                $crate::testsuite::$case(store).await;
            }
        )*
    };
}

/// A store together with something that must live as long as it (a temporary directory);
/// the store is dropped first.
pub struct WithGuard<S, G> {
    store: S,
    _guard: G,
}

impl<S: Datastore, G: Send + Sync + 'static> WithGuard<S, G> {
    /// Keeps `guard` alive as long as `store`.
    pub fn new(store: S, guard: G) -> Self {
        WithGuard {
            store,
            _guard: guard,
        }
    }
}

#[async_trait]
impl<S: Datastore, G: Send + Sync + 'static> Datastore for WithGuard<S, G> {
    async fn get(&self, key: &str) -> Result<(Revision, Option<KeyValue>)> {
        self.store.get(key).await
    }
    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListPage> {
        self.store.list(prefix, options).await
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        self.store.create(key, value).await
    }
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        self.store.update(key, value, expected).await
    }
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        self.store.delete(key, expected).await
    }
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        self.store.watch(prefix, after).await
    }
    async fn current_revision(&self) -> Result<Revision> {
        self.store.current_revision().await
    }
    async fn compact(&self, revision: Revision) -> Result<()> {
        self.store.compact(revision).await
    }
    async fn compacted_revision(&self) -> Result<Revision> {
        self.store.compacted_revision().await
    }
}

fn kv(key: &str, value: &str, create_revision: Revision, mod_revision: Revision) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: value.as_bytes().to_vec(),
        create_revision,
        mod_revision,
    }
}

fn created(key: &str, value: &str, revision: Revision) -> Event {
    Event {
        kind: EventKind::Create,
        kv: kv(key, value, revision, revision),
        prev: None,
    }
}

fn updated(new: KeyValue, prev: KeyValue) -> Event {
    Event {
        kind: EventKind::Update,
        kv: new,
        prev: Some(prev),
    }
}

fn deleted(last: KeyValue, revision: Revision) -> Event {
    let kv = KeyValue {
        mod_revision: revision,
        ..last.clone()
    };
    Event {
        kind: EventKind::Delete,
        kv,
        prev: Some(last),
    }
}

fn keys(page: &ListPage) -> Vec<&str> {
    page.items.iter().map(|kv| kv.key.as_str()).collect()
}

async fn list_all(store: &impl Datastore, prefix: &str) -> ListPage {
    store
        .list(prefix, ListOptions::default())
        .await
        .expect("list")
}

/// Reads exactly `n` events, failing if one takes longer than [`EVENT_TIMEOUT`].
async fn next_events(stream: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
            Ok(Some(Ok(event))) => events.push(event),
            Ok(Some(Err(e))) => panic!("watch failed after {} events: {e}", events.len()),
            Ok(None) => panic!("watch ended after {} of {n} events", events.len()),
            Err(_) => panic!("watch stalled after {} of {n} events", events.len()),
        }
    }
    events
}

/// Checks that nothing more arrives within a short while.
async fn assert_quiet(stream: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
        panic!("unexpected watch item: {item:?}");
    }
}

/// A new store is at revision 0 with nothing in it.
pub async fn case_empty_store(store: impl Datastore) {
    assert_eq!(store.current_revision().await.unwrap(), 0);
    assert_eq!(store.compacted_revision().await.unwrap(), 0);
    assert_eq!(store.get("/a").await.unwrap(), (0, None));
    let page = list_all(&store, "").await;
    assert_eq!((page.revision, page.items.len(), page.remaining), (0, 0, 0));
}

/// A created key reads back with its revision as create and mod revision.
pub async fn case_create_get(store: impl Datastore) {
    let rev = store
        .create("/registry/pods/default/a", b"one".to_vec())
        .await
        .unwrap();
    assert!(rev > 0, "first revision {rev} must be positive");
    assert_eq!(store.current_revision().await.unwrap(), rev);
    assert_eq!(
        store.get("/registry/pods/default/a").await.unwrap(),
        (rev, Some(kv("/registry/pods/default/a", "one", rev, rev)))
    );
    assert_eq!(
        store.get("/registry/pods/default/b").await.unwrap(),
        (rev, None)
    );
}

/// Creating an existing key fails with AlreadyExists and changes nothing.
pub async fn case_create_existing(store: impl Datastore) {
    let rev = store.create("/k", b"one".to_vec()).await.unwrap();
    match store.create("/k", b"two".to_vec()).await {
        Err(Error::AlreadyExists { key }) => assert_eq!(key, "/k"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        store.current_revision().await.unwrap(),
        rev,
        "a failed create must not use a revision"
    );
    assert_eq!(
        store.get("/k").await.unwrap(),
        (rev, Some(kv("/k", "one", rev, rev)))
    );
}

/// Update succeeds with the current revision and conflicts, carrying the current value, with
/// any other.
pub async fn case_update(store: impl Datastore) {
    let r1 = store.create("/k", b"one".to_vec()).await.unwrap();
    let r2 = store.update("/k", b"two".to_vec(), r1).await.unwrap();
    assert!(r2 > r1);
    assert_eq!(
        store.get("/k").await.unwrap(),
        (r2, Some(kv("/k", "two", r1, r2)))
    );
    match store.update("/k", b"three".to_vec(), r1).await {
        Err(Error::Conflict { current }) => assert_eq!(*current, kv("/k", "two", r1, r2)),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.current_revision().await.unwrap(), r2);
    assert_eq!(
        store.get("/k").await.unwrap(),
        (r2, Some(kv("/k", "two", r1, r2)))
    );
}

/// Update and delete of an absent key fail with NotFound.
pub async fn case_missing_key(store: impl Datastore) {
    let rev = store.create("/other", b"x".to_vec()).await.unwrap();
    for result in [
        store.update("/k", b"v".to_vec(), rev).await.map(|_| ()),
        store.delete("/k", None).await.map(|_| ()),
        store.delete("/k", Some(rev)).await.map(|_| ()),
    ] {
        match result {
            Err(Error::NotFound { key }) => assert_eq!(key, "/k"),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
    assert_eq!(store.current_revision().await.unwrap(), rev);
}

/// Delete with a wrong revision conflicts; with the right one, or none, it deletes and returns
/// the last value.
pub async fn case_delete(store: impl Datastore) {
    let ra = store.create("/a", b"va".to_vec()).await.unwrap();
    let rb = store.create("/b", b"vb".to_vec()).await.unwrap();
    match store.delete("/a", Some(rb)).await {
        Err(Error::Conflict { current }) => assert_eq!(*current, kv("/a", "va", ra, ra)),
        other => panic!("expected Conflict, got {other:?}"),
    }
    let (rd, last) = store.delete("/a", Some(ra)).await.unwrap();
    assert!(rd > rb);
    assert_eq!(last, kv("/a", "va", ra, ra));
    assert_eq!(store.get("/a").await.unwrap(), (rd, None));
    let (rd2, last) = store.delete("/b", None).await.unwrap();
    assert!(rd2 > rd);
    assert_eq!(last, kv("/b", "vb", rb, rb));
    assert_eq!(list_all(&store, "/").await.items, vec![]);
    assert_eq!(store.current_revision().await.unwrap(), rd2);
}

/// Every write gets a revision above all earlier ones, across keys.
pub async fn case_revisions_increase(store: impl Datastore) {
    let mut last = 0;
    let mut check = |rev: Revision| {
        assert!(rev > last, "revision {rev} after {last}");
        last = rev;
        rev
    };
    let a = check(store.create("/a", b"1".to_vec()).await.unwrap());
    let b = check(store.create("/b", b"1".to_vec()).await.unwrap());
    let a = check(store.update("/a", b"2".to_vec(), a).await.unwrap());
    check(store.create("/c", b"1".to_vec()).await.unwrap());
    check(store.delete("/b", Some(b)).await.unwrap().0);
    check(store.update("/a", b"3".to_vec(), a).await.unwrap());
    check(store.create("/b", b"2".to_vec()).await.unwrap());
    assert_eq!(store.current_revision().await.unwrap(), last);
}

/// List returns the keys under a plain string prefix, in key order, without deleted keys.
pub async fn case_list_prefix(store: impl Datastore) {
    for key in [
        "/registry/pods/default/c",
        "/registry/pods/default2/x",
        "/registry/pods/default/a",
        "/registry/pods/defaul",
        "/registry/services/default/a",
        "/registry/pods/default/b",
        "/registry/pods/default/gone",
        "/registry/pods/default/a/nested",
    ] {
        store.create(key, key.as_bytes().to_vec()).await.unwrap();
    }
    let (rev, _) = store
        .delete("/registry/pods/default/gone", None)
        .await
        .unwrap();
    let page = list_all(&store, "/registry/pods/default/").await;
    assert_eq!(page.revision, rev);
    assert_eq!(page.remaining, 0);
    assert_eq!(
        keys(&page),
        [
            "/registry/pods/default/a",
            "/registry/pods/default/a/nested",
            "/registry/pods/default/b",
            "/registry/pods/default/c"
        ]
    );
    for item in &page.items {
        assert_eq!(item.value, item.key.as_bytes());
    }
    let page = list_all(&store, "/registry/pods/").await;
    assert_eq!(
        keys(&page),
        [
            "/registry/pods/defaul",
            "/registry/pods/default/a",
            "/registry/pods/default/a/nested",
            "/registry/pods/default/b",
            "/registry/pods/default/c",
            "/registry/pods/default2/x",
        ]
    );
    assert_eq!(list_all(&store, "").await.items.len(), 7);
    assert_eq!(
        keys(&list_all(&store, "/registry/services/").await),
        ["/registry/services/default/a"]
    );
    assert_eq!(list_all(&store, "/registry/none/").await.items, vec![]);
}

/// With `skip_count`, `remaining` only says whether more keys follow.
pub async fn case_list_skip_count(store: impl Datastore) {
    for i in 0..5 {
        store
            .create(&format!("/s/k{i}"), b"v".to_vec())
            .await
            .unwrap();
    }
    let page_of = |after: Option<&str>| ListOptions {
        limit: Some(2),
        after_key: after.map(str::to_string),
        skip_count: true,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list("/s/", page_of(after.as_deref())).await.unwrap();
        seen.extend(keys(&page).into_iter().map(str::to_string));
        let more = seen.len() < 5;
        assert_eq!(page.remaining, usize::from(more), "after {after:?}");
        if !more {
            break;
        }
        after = page.items.last().map(|kv| kv.key.clone());
    }
    assert_eq!(seen, ["/s/k0", "/s/k1", "/s/k2", "/s/k3", "/s/k4"]);
    // A full last page: nothing follows it.
    let page = store
        .list(
            "/s/",
            ListOptions {
                limit: Some(5),
                skip_count: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((page.items.len(), page.remaining), (5, 0));
}

/// Paging with limit, after_key and the first page's revision reads one snapshot, even when
/// writes happen between the pages.
pub async fn case_list_paging_snapshot(store: impl Datastore) {
    let mut revs = Vec::new();
    for i in 0..10 {
        revs.push(
            store
                .create(&format!("/p/k{i}"), format!("v{i}").into_bytes())
                .await
                .unwrap(),
        );
    }
    store.create("/q/other", b"x".to_vec()).await.unwrap();
    let page_of = |after: Option<String>, revision: Option<Revision>| ListOptions {
        limit: Some(3),
        after_key: after,
        revision,
        ..Default::default()
    };
    let first = store.list("/p/", page_of(None, None)).await.unwrap();
    let snapshot = first.revision;
    assert_eq!(keys(&first), ["/p/k0", "/p/k1", "/p/k2"]);
    assert_eq!(first.remaining, 7);

    // Writes between pages: change a key ahead, delete one, and add one in the middle.
    store
        .update("/p/k4", b"changed".to_vec(), revs[4])
        .await
        .unwrap();
    store.delete("/p/k7", None).await.unwrap();
    store.create("/p/k3a", b"new".to_vec()).await.unwrap();

    let mut all = first.items.clone();
    let mut after = first.items.last().map(|kv| kv.key.clone());
    let mut remaining = first.remaining;
    while remaining > 0 {
        let page = store
            .list("/p/", page_of(after.clone(), Some(snapshot)))
            .await
            .unwrap();
        assert_eq!(page.revision, snapshot);
        assert_eq!(
            page.remaining,
            remaining - page.items.len(),
            "remaining after {after:?}"
        );
        remaining = page.remaining;
        after = page.items.last().map(|kv| kv.key.clone());
        all.extend(page.items);
    }
    let expected: Vec<KeyValue> = (0..10)
        .map(|i| kv(&format!("/p/k{i}"), &format!("v{i}"), revs[i], revs[i]))
        .collect();
    assert_eq!(all, expected);

    let now = list_all(&store, "/p/").await;
    assert_eq!(
        keys(&now),
        [
            "/p/k0", "/p/k1", "/p/k2", "/p/k3", "/p/k3a", "/p/k4", "/p/k5", "/p/k6", "/p/k8",
            "/p/k9"
        ]
    );
    assert_eq!(now.items[5].value, b"changed");
}

/// A list at a past revision shows the values of then; a future revision is refused.
pub async fn case_list_at_revision(store: impl Datastore) {
    let ra = store.create("/a", b"1".to_vec()).await.unwrap();
    let rb = store.create("/b", b"1".to_vec()).await.unwrap();
    let ra2 = store.update("/a", b"2".to_vec(), ra).await.unwrap();
    let (rd, _) = store.delete("/b", None).await.unwrap();
    let at = |revision| ListOptions {
        revision: Some(revision),
        ..ListOptions::default()
    };
    assert_eq!(
        store.list("/", at(ra)).await.unwrap().items,
        vec![kv("/a", "1", ra, ra)]
    );
    assert_eq!(
        store.list("/", at(rb)).await.unwrap().items,
        vec![kv("/a", "1", ra, ra), kv("/b", "1", rb, rb)]
    );
    assert_eq!(
        store.list("/", at(ra2)).await.unwrap().items,
        vec![kv("/a", "2", ra, ra2), kv("/b", "1", rb, rb)]
    );
    let page = store.list("/", at(rd)).await.unwrap();
    assert_eq!(
        (page.revision, page.items),
        (rd, vec![kv("/a", "2", ra, ra2)])
    );
    match store.list("/", at(rd + 1)).await {
        Err(Error::FutureRevision { requested, current }) => {
            assert_eq!((requested, current), (rd + 1, rd))
        }
        other => panic!("expected FutureRevision, got {other:?}"),
    }
}

/// A watch from a past revision replays history, then delivers live writes, in order, with
/// kinds and previous values.
pub async fn case_watch_history_then_live(store: impl Datastore) {
    let r1 = store.create("/w/a", b"1".to_vec()).await.unwrap();
    let r2 = store.update("/w/a", b"2".to_vec(), r1).await.unwrap();
    let r3 = store.create("/w/b", b"1".to_vec()).await.unwrap();
    let (r4, _) = store.delete("/w/a", Some(r2)).await.unwrap();
    let mut watch = store.watch("/w/", 0).await.unwrap();
    let history = next_events(&mut watch, 4).await;
    assert_eq!(
        history,
        vec![
            created("/w/a", "1", r1),
            updated(kv("/w/a", "2", r1, r2), kv("/w/a", "1", r1, r1)),
            created("/w/b", "1", r3),
            deleted(kv("/w/a", "2", r1, r2), r4),
        ]
    );
    let r5 = store.update("/w/b", b"2".to_vec(), r3).await.unwrap();
    let r6 = store.create("/w/a", b"3".to_vec()).await.unwrap();
    let (r7, _) = store.delete("/w/b", None).await.unwrap();
    let live = next_events(&mut watch, 3).await;
    assert_eq!(
        live,
        vec![
            updated(kv("/w/b", "2", r3, r5), kv("/w/b", "1", r3, r3)),
            created("/w/a", "3", r6),
            deleted(kv("/w/b", "2", r3, r5), r7),
        ]
    );
    assert_quiet(&mut watch).await;
}

/// A watch sees only keys under its prefix (a plain string prefix).
pub async fn case_watch_prefix(store: impl Datastore) {
    let mut watch = store.watch("/p/", 0).await.unwrap();
    store.create("/q/x", b"x".to_vec()).await.unwrap();
    let r = store.create("/p/a", b"a".to_vec()).await.unwrap();
    store.create("/p2/y", b"y".to_vec()).await.unwrap();
    store.create("/", b"root".to_vec()).await.unwrap();
    let r2 = store.create("/p/b", b"b".to_vec()).await.unwrap();
    assert_eq!(
        next_events(&mut watch, 2).await,
        vec![created("/p/a", "a", r), created("/p/b", "b", r2)]
    );
    assert_quiet(&mut watch).await;
    let mut all = store.watch("", 0).await.unwrap();
    assert_eq!(next_events(&mut all, 5).await.len(), 5);
    assert_quiet(&mut all).await;
}

/// A watch after revision N starts with the first write above N, and a watch ahead of the
/// current revision waits for it.
pub async fn case_watch_from_middle(store: impl Datastore) {
    let r1 = store.create("/a", b"1".to_vec()).await.unwrap();
    let r2 = store.update("/a", b"2".to_vec(), r1).await.unwrap();
    let r3 = store.update("/a", b"3".to_vec(), r2).await.unwrap();
    let mut watch = store.watch("/", r2).await.unwrap();
    assert_eq!(
        next_events(&mut watch, 1).await,
        vec![updated(kv("/a", "3", r1, r3), kv("/a", "2", r1, r2))]
    );
    assert_quiet(&mut watch).await;
    let mut ahead = store.watch("/", r3 + 1).await.unwrap();
    let r4 = store.create("/b", b"1".to_vec()).await.unwrap();
    let r5 = store.create("/c", b"1".to_vec()).await.unwrap();
    assert_eq!(
        r4,
        r3 + 1,
        "revisions without other writers are consecutive"
    );
    assert_eq!(
        next_events(&mut ahead, 1).await,
        vec![created("/c", "1", r5)]
    );
    assert_quiet(&mut ahead).await;
}

/// Compaction keeps current values and the state at the compacted revision, and refuses older
/// reads and watches with Compacted.
pub async fn case_compaction(store: impl Datastore) {
    let r1 = store.create("/a", b"1".to_vec()).await.unwrap();
    let r2 = store.update("/a", b"2".to_vec(), r1).await.unwrap();
    let r3 = store.create("/b", b"1".to_vec()).await.unwrap();
    let (r4, _) = store.delete("/b", None).await.unwrap();
    let r5 = store.create("/c", b"1".to_vec()).await.unwrap();
    let r6 = store.update("/a", b"3".to_vec(), r2).await.unwrap();
    store.compact(r5).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), r5);
    assert_eq!(store.current_revision().await.unwrap(), r6);

    assert_eq!(
        list_all(&store, "/").await.items,
        vec![kv("/a", "3", r1, r6), kv("/c", "1", r5, r5)]
    );
    let at = |revision| ListOptions {
        revision: Some(revision),
        ..ListOptions::default()
    };
    assert_eq!(
        store.list("/", at(r5)).await.unwrap().items,
        vec![kv("/a", "2", r1, r2), kv("/c", "1", r5, r5)]
    );
    for result in [
        store.list("/", at(r4)).await.map(|_| ()),
        store.watch("/", r4).await.map(|_| ()),
    ] {
        match result {
            Err(Error::Compacted {
                requested,
                compacted,
            }) => assert_eq!((requested, compacted), (r4, r5)),
            other => panic!("expected Compacted, got {:?}", other.err()),
        }
    }
    let mut watch = store.watch("/", r5).await.unwrap();
    assert_eq!(
        next_events(&mut watch, 1).await,
        vec![updated(kv("/a", "3", r1, r6), kv("/a", "2", r1, r2))]
    );
    assert_quiet(&mut watch).await;

    // Compacting again lower is a no-op; ahead of the store is refused.
    store.compact(r3).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), r5);
    match store.compact(r6 + 1).await {
        Err(Error::FutureRevision { requested, current }) => {
            assert_eq!((requested, current), (r6 + 1, r6))
        }
        other => panic!("expected FutureRevision, got {other:?}"),
    }
    // A key deleted before the compaction can be created again; writes continue above.
    let r7 = store.create("/b", b"2".to_vec()).await.unwrap();
    assert!(r7 > r6);
    assert_eq!(
        store.get("/b").await.unwrap(),
        (r7, Some(kv("/b", "2", r7, r7)))
    );
    // Compacting up to the current revision keeps every current value.
    store.compact(r7).await.unwrap();
    assert_eq!(
        list_all(&store, "/").await.items,
        vec![
            kv("/a", "3", r1, r6),
            kv("/b", "2", r7, r7),
            kv("/c", "1", r5, r5)
        ]
    );
    assert_eq!(store.current_revision().await.unwrap(), r7);
    let r8 = store.update("/c", b"2".to_vec(), r5).await.unwrap();
    assert_eq!(
        next_events(&mut watch, 2).await,
        vec![
            created("/b", "2", r7),
            updated(kv("/c", "2", r5, r8), kv("/c", "1", r5, r5)),
        ]
    );
}

/// A deleted key can be created again, with a new create revision, reported as a Create.
pub async fn case_recreate(store: impl Datastore) {
    let r1 = store.create("/k", b"1".to_vec()).await.unwrap();
    let (r2, _) = store.delete("/k", None).await.unwrap();
    let r3 = store.create("/k", b"2".to_vec()).await.unwrap();
    assert!(r3 > r2);
    assert_eq!(
        store.get("/k").await.unwrap(),
        (r3, Some(kv("/k", "2", r3, r3)))
    );
    let mut watch = store.watch("/k", 0).await.unwrap();
    assert_eq!(
        next_events(&mut watch, 3).await,
        vec![
            created("/k", "1", r1),
            deleted(kv("/k", "1", r1, r1), r2),
            created("/k", "2", r3)
        ]
    );
    match store.update("/k", b"x".to_vec(), r1).await {
        Err(Error::Conflict { current }) => assert_eq!(*current, kv("/k", "2", r3, r3)),
        other => panic!("expected Conflict, got {other:?}"),
    }
}

/// Of many concurrent creates of one key exactly one succeeds, and the others fail cleanly
/// without failing anything else.
pub async fn case_concurrent_create_same_key(store: impl Datastore) {
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for i in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let same = store.create("/same", format!("{i}").into_bytes()).await;
            let own = store.create(&format!("/own/{i:02}"), b"x".to_vec()).await;
            (same, own)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (same, own) = task.await.expect("task panicked");
        own.expect("creating a distinct key must succeed");
        match same {
            Ok(rev) => winners.push(rev),
            Err(Error::AlreadyExists { key }) => assert_eq!(key, "/same"),
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create wins");
    let (_, kv) = store.get("/same").await.unwrap();
    assert_eq!(kv.map(|kv| kv.mod_revision), Some(winners[0]));
    assert_eq!(list_all(&*store, "/own/").await.items.len(), 32);
    assert_eq!(store.current_revision().await.unwrap(), 33);
}

/// Concurrent read-modify-write loops with update-if-revision lose no increment.
pub async fn case_concurrent_compare_and_swap(store: impl Datastore) {
    let store = Arc::new(store);
    store.create("/counter", b"0".to_vec()).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..25 {
                let (_, current) = store.get("/counter").await.unwrap();
                let mut current = current.expect("counter exists");
                loop {
                    let n: u64 = String::from_utf8_lossy(&current.value)
                        .parse()
                        .expect("counter is a number");
                    match store
                        .update(
                            "/counter",
                            (n + 1).to_string().into_bytes(),
                            current.mod_revision,
                        )
                        .await
                    {
                        Ok(_) => break,
                        Err(Error::Conflict { current: now }) => {
                            conflicts += 1;
                            current = *now;
                        }
                        Err(e) => panic!("unexpected error {e}"),
                    }
                }
            }
            conflicts
        }));
    }
    for task in tasks {
        task.await.expect("task panicked");
    }
    let (rev, kv) = store.get("/counter").await.unwrap();
    assert_eq!(kv.map(|kv| kv.value), Some(b"200".to_vec()));
    assert_eq!(
        rev, 201,
        "one revision per successful write, none for conflicts"
    );
}

/// 100 concurrent watchers each see every one of 10,000 writes made by several writer tasks,
/// in order, with no gap and no duplicate.
pub async fn case_concurrent_watchers(store: impl Datastore) {
    const WATCHERS: usize = 100;
    const WRITERS: usize = 16;
    const EVENTS: usize = 10_000;
    let store = Arc::new(store);
    let start = store.current_revision().await.unwrap();
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let mut watch = store.watch("/load/", start).await.unwrap();
        watchers.push(tokio::spawn(async move {
            let mut revisions = Vec::with_capacity(EVENTS);
            for event in next_events(&mut watch, EVENTS).await {
                if let Some(&last) = revisions.last() {
                    assert!(
                        event.revision() > last,
                        "revision {} after {last}",
                        event.revision()
                    );
                }
                revisions.push(event.revision());
            }
            revisions
        }));
    }
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            for i in (w..EVENTS).step_by(WRITERS) {
                // Every third write creates a key and the next two update it, like a controller's
                // create-then-status-update traffic; the three land on different writer tasks.
                let key = format!("/load/{}", i / 3);
                let rev = if i % 3 == 0 {
                    store.create(&key, b"c".to_vec()).await
                } else {
                    match store.get(&key).await.unwrap().1 {
                        Some(kv) => store.update(&key, b"u".to_vec(), kv.mod_revision).await,
                        None => store.create(&key, b"c".to_vec()).await,
                    }
                };
                // Concurrent writers race on a key; a lost race is retried as a fresh write
                // to a key of its own so that the total stays exact.
                let rev = match rev {
                    Ok(rev) => rev,
                    Err(Error::AlreadyExists { .. } | Error::Conflict { .. }) => store
                        .create(&format!("/load/retry/{i}"), b"r".to_vec())
                        .await
                        .unwrap(),
                    Err(e) => panic!("write failed: {e}"),
                };
                revisions.push(rev);
            }
            revisions
        }));
    }
    let mut written = BTreeSet::new();
    for writer in writers {
        written.extend(writer.await.expect("writer panicked"));
    }
    assert_eq!(written.len(), EVENTS);
    for watcher in watchers {
        let seen = watcher.await.expect("watcher panicked");
        let seen: BTreeSet<Revision> = seen.into_iter().collect();
        assert_eq!(seen.len(), EVENTS);
        assert!(
            seen == written,
            "a watcher saw other revisions than were written"
        );
    }
}

//! The datastore behind the API server, shaped after kine's `Backend`.
//!
//! Layout: [`Datastore`] is the trait every backend implements (the four transaction shapes
//! kube-apiserver needs: create-if-absent, update-if-revision, delete-if-revision and compact,
//! plus get, paged list and watch from a revision). [`MemoryStore`] is the in-memory backend for
//! unit tests; the embedded SQLite backend lives in `store-sqlite`, and every backend runs the
//! conformance suite in [`testsuite`] (feature `testsuite`). [`feed`] is the watch fan-out that
//! backends share: a broadcast of committed events plus catch-up from the backend's own log.
//! Start with [`Datastore`].
//!
//! Revisions are one cluster-wide counter, strictly increasing and never reused: every write gets
//! the next one, and an object's `resourceVersion` is the revision of its last write.

mod error;
pub mod feed;
mod memory;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

pub use error::{Error, Result};
pub use memory::MemoryStore;

use async_trait::async_trait;
use futures::stream::BoxStream;

/// A store revision: the cluster-wide write counter (`resourceVersion` on the wire).
pub type Revision = i64;

/// One stored key at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, shaped like Kubernetes' (`/registry/pods/default/date-tail`).
    pub key: String,
    /// The stored bytes (JSON for API objects).
    pub value: Vec<u8>,
    /// The revision that created this key (since its last deletion).
    pub create_revision: Revision,
    /// The revision of the last write to this key.
    pub mod_revision: Revision,
}

/// What a watch reports about one write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key did not exist before this write.
    Create,
    /// The key existed and was overwritten.
    Update,
    /// The key was deleted; the event's `kv` holds its last value.
    Delete,
}

/// One write seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Create, update or delete.
    pub kind: EventKind,
    /// The key's new value; for a delete, its last value with `mod_revision` set to the
    /// revision of the delete.
    pub kv: KeyValue,
    /// The value before this write, for updates and deletes.
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision of the write this event reports.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// Options for [`Datastore::list`].
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// At most this many items; `None` (or `Some(0)`, as in Kubernetes) means all.
    pub limit: Option<usize>,
    /// Start strictly after this key (the previous page's last key).
    pub after_key: Option<String>,
    /// Read the keys as they were at this revision; `None` means now. A revision below the
    /// compacted one fails with [`Error::Compacted`], one above the current revision with
    /// [`Error::FutureRevision`]; the compacted revision itself can still be read.
    pub revision: Option<Revision>,
    /// Leave the keys after a full page uncounted: [`ListPage::remaining`] is then 1 when more
    /// follow and 0 when the list is complete, which spares a scan of the rest to a caller that
    /// reads every page anyway.
    pub skip_count: bool,
}

/// One page of a list.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    /// The revision the list was read at (pass it back to read the next page consistently).
    pub revision: Revision,
    /// The items, in key order.
    pub items: Vec<KeyValue>,
    /// How many more keys match after this page (0 when the list is complete; with
    /// [`ListOptions::skip_count`], at most 1).
    pub remaining: usize,
}

/// A stream of watch events in revision order.
pub type WatchStream = BoxStream<'static, Result<Event>>;

/// A key-value store with revisions, shaped after kine's `Backend` so that etcd fits it too.
#[async_trait]
pub trait Datastore: Send + Sync + 'static {
    /// The key's current value, or `None`; with the store's current revision.
    async fn get(&self, key: &str) -> Result<(Revision, Option<KeyValue>)>;

    /// The keys starting with `prefix`, in key order, paged by `options`.
    ///
    /// The prefix is a plain string prefix compared bytewise (`/a/b` matches `/a/bc`), so callers
    /// end directory-like prefixes with `/`. Key order is bytewise too, as in etcd.
    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListPage>;

    /// Creates `key` if it does not exist ([`Error::AlreadyExists`] otherwise); returns the new revision.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision>;

    /// Replaces `key` if its `mod_revision` is `expected` ([`Error::Conflict`] with the current
    /// value otherwise, [`Error::NotFound`] if it is absent); returns the new revision.
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision>;

    /// Deletes `key`, if its `mod_revision` is `expected` when given ([`Error::Conflict`] with
    /// the current value otherwise, [`Error::NotFound`] if it is absent); returns the revision of
    /// the delete and the value as it was before the delete (its `mod_revision` is the last
    /// write's, not the delete's).
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)>;

    /// Every write to keys starting with `prefix` with a revision greater than `after`, in order,
    /// first from history and then live, without gaps. Fails with [`Error::Compacted`] when
    /// `after` is below the compacted revision (after the compacted revision itself is fine:
    /// compaction only forgets writes at or below it). `after` may be ahead of the current
    /// revision; the stream then waits for those writes.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// The revision of the last write.
    async fn current_revision(&self) -> Result<Revision>;

    /// Forgets superseded values at or below `revision`; current values are always kept.
    /// A list at a revision below the compacted one, or a watch after a revision below it,
    /// then fails with [`Error::Compacted`]. Compacting at or below the compacted revision does
    /// nothing; above the current revision fails with [`Error::FutureRevision`].
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The highest revision compacted so far (0 if none).
    async fn compacted_revision(&self) -> Result<Revision>;
}

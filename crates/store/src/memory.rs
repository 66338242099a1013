//! The in-memory backend: the same revision log as the SQLite backend, kept in maps.
//!
//! Like kine's single table, every write appends one row (revision, key, created/deleted flags,
//! create and previous revision, value and previous value). Reads at a past revision pick each
//! key's last row at or below it, watches replay rows from the log, and compaction drops the rows
//! that no read at or above the compacted revision can see. So past-revision lists, watch
//! history and compaction behave exactly as on SQLite, which makes this a faithful stand-in in
//! other crates' unit tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::feed::{self, EventFeed, History};
use crate::{
    Datastore, Error, Event, EventKind, KeyValue, ListOptions, ListPage, Result, Revision,
    WatchStream,
};

/// How many batches a slow watcher may fall behind before it catches up from the log.
const FEED_CAPACITY: usize = 1024;

/// The in-memory backend: a revision log in maps behind one mutex. Cheap to clone (clones share
/// the data); nothing survives the last clone.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    log: Mutex<Log>,
    feed: EventFeed,
}

/// One write, like a row of kine's table.
#[derive(Clone, Debug)]
struct Row {
    key: String,
    /// The key did not exist before this write.
    created: bool,
    /// This write deleted the key; `value` is the last value.
    deleted: bool,
    create_revision: Revision,
    prev_revision: Revision,
    value: Vec<u8>,
    old_value: Option<Vec<u8>>,
}

#[derive(Default)]
struct Log {
    /// Every row not yet compacted away, by revision.
    rows: BTreeMap<Revision, Row>,
    /// Each key's row revisions in ascending order, like the (name, id) index.
    by_key: BTreeMap<String, Vec<Revision>>,
    /// The last revision handed out; never goes back, even when compaction drops its row.
    current: Revision,
    compacted: Revision,
}

impl MemoryStore {
    /// An empty store at revision 0.
    pub fn new() -> Self {
        MemoryStore {
            inner: Arc::new(Inner {
                log: Mutex::new(Log::default()),
                feed: EventFeed::new(FEED_CAPACITY),
            }),
        }
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        lock(&self.inner.log)
    }

    /// Appends `row` at the next revision and publishes its event while still holding the lock,
    /// so that the feed carries events in revision order.
    fn append(&self, log: &mut Log, row: Row) -> Revision {
        log.current += 1;
        let revision = log.current;
        let event = row_event(revision, &row);
        log.by_key
            .entry(row.key.clone())
            .or_default()
            .push(revision);
        log.rows.insert(revision, row);
        self.inner.feed.publish(Arc::from([event]));
        revision
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let log = self.log();
        f.debug_struct("MemoryStore")
            .field("current", &log.current)
            .field("compacted", &log.compacted)
            .field("rows", &log.rows.len())
            .finish()
    }
}

/// Locks the log; a panic while holding it cannot leave the maps half-written in a way that
/// matters for tests, so a poisoned lock is used as is.
fn lock(log: &Mutex<Log>) -> MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Log {
    /// The key's row at or below `revision`, with that row's revision.
    fn row_at(&self, key: &str, revision: Revision) -> Option<(Revision, &Row)> {
        let revisions = self.by_key.get(key)?;
        let n = revisions.partition_point(|r| *r <= revision);
        let rev = *revisions.get(n.checked_sub(1)?)?;
        self.rows.get(&rev).map(|row| (rev, row))
    }

    /// The key's live value at or below `revision`.
    fn live_at(&self, key: &str, revision: Revision) -> Option<KeyValue> {
        let (rev, row) = self.row_at(key, revision)?;
        (!row.deleted).then(|| row_kv(rev, row))
    }

    fn check_read_revision(&self, revision: Revision) -> Result<()> {
        if revision < self.compacted {
            return Err(Error::Compacted {
                requested: revision,
                compacted: self.compacted,
            });
        }
        if revision > self.current {
            return Err(Error::FutureRevision {
                requested: revision,
                current: self.current,
            });
        }
        Ok(())
    }
}

fn row_kv(revision: Revision, row: &Row) -> KeyValue {
    KeyValue {
        key: row.key.clone(),
        value: row.value.clone(),
        create_revision: row.create_revision,
        mod_revision: revision,
    }
}

fn row_event(revision: Revision, row: &Row) -> Event {
    let kind = if row.deleted {
        EventKind::Delete
    } else if row.created {
        EventKind::Create
    } else {
        EventKind::Update
    };
    let prev = match (&kind, &row.old_value) {
        (EventKind::Create, _) | (_, None) => None,
        (_, Some(old)) => Some(KeyValue {
            key: row.key.clone(),
            value: old.clone(),
            create_revision: row.create_revision,
            mod_revision: row.prev_revision,
        }),
    };
    Event {
        kind,
        kv: row_kv(revision, row),
        prev,
    }
}

#[async_trait]
impl Datastore for MemoryStore {
    async fn get(&self, key: &str) -> Result<(Revision, Option<KeyValue>)> {
        let log = self.log();
        Ok((log.current, log.live_at(key, log.current)))
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListPage> {
        let log = self.log();
        let revision = options.revision.unwrap_or(log.current);
        log.check_read_revision(revision)?;
        let limit = options.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let start = match &options.after_key {
            Some(after) if after.as_str() >= prefix => std::ops::Bound::Excluded(after.as_str()),
            _ => std::ops::Bound::Included(prefix),
        };
        let mut page = ListPage {
            revision,
            items: Vec::new(),
            remaining: 0,
        };
        let keys = log
            .by_key
            .range::<str, _>((start, std::ops::Bound::Unbounded))
            .map(|(key, _)| key)
            .take_while(|key| key.starts_with(prefix));
        for key in keys {
            if let Some(kv) = log.live_at(key, revision) {
                if page.items.len() < limit {
                    page.items.push(kv);
                } else {
                    page.remaining += 1;
                    if options.skip_count {
                        break;
                    }
                }
            }
        }
        Ok(page)
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        let mut log = self.log();
        let last = log
            .row_at(key, log.current)
            .map(|(rev, row)| (rev, row.deleted));
        let prev_revision = match last {
            Some((_, false)) => {
                return Err(Error::AlreadyExists {
                    key: key.to_owned(),
                });
            }
            Some((rev, true)) => rev,
            None => 0,
        };
        let revision = log.current + 1;
        let row = Row {
            key: key.to_owned(),
            created: true,
            deleted: false,
            create_revision: revision,
            prev_revision,
            value,
            old_value: None,
        };
        Ok(self.append(&mut log, row))
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        let mut log = self.log();
        let current = log
            .live_at(key, log.current)
            .ok_or_else(|| Error::NotFound {
                key: key.to_owned(),
            })?;
        if current.mod_revision != expected {
            return Err(Error::Conflict {
                current: Box::new(current),
            });
        }
        let row = Row {
            key: key.to_owned(),
            created: false,
            deleted: false,
            create_revision: current.create_revision,
            prev_revision: current.mod_revision,
            value,
            old_value: Some(current.value),
        };
        Ok(self.append(&mut log, row))
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        let mut log = self.log();
        let current = log
            .live_at(key, log.current)
            .ok_or_else(|| Error::NotFound {
                key: key.to_owned(),
            })?;
        if expected.is_some_and(|e| e != current.mod_revision) {
            return Err(Error::Conflict {
                current: Box::new(current),
            });
        }
        let row = Row {
            key: key.to_owned(),
            created: false,
            deleted: true,
            create_revision: current.create_revision,
            prev_revision: current.mod_revision,
            value: current.value.clone(),
            old_value: Some(current.value.clone()),
        };
        Ok((self.append(&mut log, row), current))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        feed::watch(
            &self.inner.feed,
            MemoryHistory(self.inner.clone()),
            prefix,
            after,
        )
        .await
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.log().current)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut log = self.log();
        if revision > log.current {
            return Err(Error::FutureRevision {
                requested: revision,
                current: log.current,
            });
        }
        if revision <= log.compacted {
            return Ok(());
        }
        let Log { rows, by_key, .. } = &mut *log;
        by_key.retain(|_, revisions| {
            // Keep the rows above `revision`, and the last row at or below it unless it is a
            // tombstone: that row is what a read at `revision` sees.
            let n = revisions.partition_point(|r| *r <= revision);
            let keep_last = n > 0 && rows.get(&revisions[n - 1]).is_some_and(|row| !row.deleted);
            let drop_upto = if keep_last { n - 1 } else { n };
            for rev in revisions.drain(..drop_upto) {
                rows.remove(&rev);
            }
            !revisions.is_empty()
        });
        log.compacted = revision;
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.log().compacted)
    }
}

/// Watch catch-up straight from the in-memory log.
struct MemoryHistory(Arc<Inner>);

#[async_trait]
impl History for MemoryHistory {
    async fn events_after(
        &self,
        prefix: &str,
        after: Revision,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let log = lock(&self.0.log);
        if after < log.compacted {
            return Err(Error::Compacted {
                requested: after,
                compacted: log.compacted,
            });
        }
        Ok(log
            .rows
            .range(after.saturating_add(1)..)
            .filter(|(_, row)| row.key.starts_with(prefix))
            .take(limit)
            .map(|(rev, row)| row_event(*rev, row))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::conformance_tests!(async { MemoryStore::new() });

    #[tokio::test]
    async fn compaction_drops_superseded_rows_and_tombstones() {
        let store = MemoryStore::new();
        let r1 = store.create("/a", b"1".to_vec()).await.unwrap();
        let r2 = store.update("/a", b"2".to_vec(), r1).await.unwrap();
        store.create("/b", b"1".to_vec()).await.unwrap();
        let (r4, _) = store.delete("/b", None).await.unwrap();
        let r5 = store.update("/a", b"3".to_vec(), r2).await.unwrap();
        store.compact(r4).await.unwrap();
        let log = store.log();
        // Left: /a at r2 (what a read at r4 sees) and r5 (above the compaction).
        assert_eq!(log.rows.keys().copied().collect::<Vec<_>>(), vec![r2, r5]);
        assert_eq!(
            log.by_key.keys().map(String::as_str).collect::<Vec<_>>(),
            vec!["/a"]
        );
    }
}

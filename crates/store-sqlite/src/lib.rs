//! The embedded [`Datastore`]: a kine-style revision log in one SQLite file.
//!
//! Layout: [`SqliteStore`] (this file) is the handle and implements [`Datastore`]; `schema`
//! holds the table layout, file permissions and connection settings; `writer` is the single
//! writer thread with group commit and compaction; `read` is the pool of read connections and the
//! queries; [`Error`] is what fails inside. Start with [`SqliteStore::open`].
//!
//! Storage is one append-only table whose `id` is the revision (see `schema`): a create, update
//! or delete appends a row, a read at revision R takes each key's last row at or below R, and a
//! watch replays rows above its start. The database runs in WAL mode with `synchronous=FULL`,
//! and a write is acknowledged only after its transaction committed: an acknowledged write
//! survives `kill -9` and power loss. Watches are fed by a broadcast of committed batches with
//! catch-up from the table (`store::feed`), so no event is lost even when a watcher lags.
//! Compaction deletes superseded rows and tombstones at or below a revision and records that
//! revision in the same transaction; [`SqliteStore::spawn_compactor`] runs it periodically.

mod error;
mod read;
mod schema;
mod writer;

pub use error::{Error, Result};

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use store::feed::{self, EventFeed};
use store::{Datastore, KeyValue, ListOptions, ListPage, Revision, WatchStream};
use tokio::sync::oneshot;

use crate::read::{Readers, SqliteHistory};
use crate::writer::{Reply, Request, Write, WriteOp, Writer};

/// How many committed batches a slow watcher may fall behind before it catches up from the
/// table instead.
const FEED_CAPACITY: usize = 1024;

/// The SQLite backend. Cheap to clone; the database closes when the last clone is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// Taken only in `Drop`, to stop the writer thread.
    requests: Option<mpsc::Sender<Request>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    readers: Arc<Readers>,
    feed: Arc<EventFeed>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer's loop after the batch in hand; joining makes
        // sure the database is closed when the last handle is gone, so a reopen starts clean.
        drop(self.requests.take());
        if let Some(thread) = self.writer_thread.take()
            && thread.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "the sqlite writer thread panicked");
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database at `path`, creating it (mode 0600) if it does not exist. Reopening a
    /// file keeps every object and continues its revisions.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        Self::open_with_feed(path, FEED_CAPACITY)
    }

    /// [`SqliteStore::open`] with a feed holding `feed_capacity` batches.
    fn open_with_feed(path: &Path, feed_capacity: usize) -> Result<SqliteStore> {
        schema::prepare_file(path)?;
        let conn = schema::open_writer(path)?;
        // The WAL and shared-memory files exist now; make sure an older SQLite or a previous
        // run did not leave them readable by others.
        schema::tighten_modes(path)?;
        let feed = Arc::new(EventFeed::new(feed_capacity));
        let writer = Writer::new(conn, feed.clone())?;
        let (requests, receiver) = mpsc::channel();
        let writer_thread = std::thread::Builder::new()
            .name("sqlite-writer".to_owned())
            .spawn(move || {
                let commits = writer.run(receiver);
                tracing::debug!(commits, "sqlite writer stopped");
            })
            .map_err(Error::SpawnWriter)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                requests: Some(requests),
                writer_thread: Some(writer_thread),
                readers: Arc::new(Readers::new(path.to_path_buf())),
                feed,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Starts a task that, every `interval`, compacts everything older than the newest `keep`
    /// revisions (kine keeps 1000). The task stops when the store is dropped, or when the
    /// returned handle is aborted. Must be called inside a tokio runtime.
    pub fn spawn_compactor(&self, interval: Duration, keep: i64) -> tokio::task::JoinHandle<()> {
        let store: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate; compacting right at startup is what kine does too.
            loop {
                ticks.tick().await;
                let Some(inner) = store.upgrade() else { return };
                let store = SqliteStore { inner };
                if let Err(e) = store.compact_keeping(keep).await {
                    tracing::warn!(error = %e, "periodic compaction failed");
                }
            }
        })
    }

    /// Compacts everything older than the newest `keep` revisions, if that moves the
    /// compacted revision forward.
    async fn compact_keeping(&self, keep: i64) -> store::Result<()> {
        let (current, compacted) = self.inner.readers.run(read::revisions).await?;
        let target = current.saturating_sub(keep.max(0));
        if target > compacted {
            self.compact(target).await?;
        }
        Ok(())
    }

    fn send(&self, request: Request) -> store::Result<()> {
        let requests = self.inner.requests.as_ref().ok_or(Error::WriterGone)?;
        requests.send(request).map_err(|_| Error::WriterGone)?;
        Ok(())
    }

    async fn write_revision(&self, op: WriteOp) -> store::Result<Revision> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Write(Write {
            op,
            reply: Reply::Revision(reply),
        }))?;
        answer.await.map_err(|_| Error::WriterGone)?
    }
}

#[async_trait]
impl Datastore for SqliteStore {
    async fn get(&self, key: &str) -> store::Result<(Revision, Option<KeyValue>)> {
        let key = key.to_owned();
        self.inner
            .readers
            .run(move |conn| read::get(conn, &key))
            .await
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> store::Result<ListPage> {
        let prefix = prefix.to_owned();
        self.inner
            .readers
            .run(move |conn| read::list(conn, &prefix, &options))
            .await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> store::Result<Revision> {
        self.write_revision(WriteOp::Create {
            key: key.to_owned(),
            value,
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> store::Result<Revision> {
        self.write_revision(WriteOp::Update {
            key: key.to_owned(),
            value,
            expected,
        })
        .await
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> store::Result<(Revision, KeyValue)> {
        let (reply, answer) = oneshot::channel();
        let op = WriteOp::Delete {
            key: key.to_owned(),
            expected,
        };
        self.send(Request::Write(Write {
            op,
            reply: Reply::Deleted(reply),
        }))?;
        answer.await.map_err(|_| Error::WriterGone)?
    }

    async fn watch(&self, prefix: &str, after: Revision) -> store::Result<WatchStream> {
        feed::watch(
            &self.inner.feed,
            SqliteHistory(self.inner.readers.clone()),
            prefix,
            after,
        )
        .await
    }

    async fn current_revision(&self) -> store::Result<Revision> {
        Ok(self.inner.readers.run(read::revisions).await?.0)
    }

    async fn compact(&self, revision: Revision) -> store::Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Compact { revision, reply })?;
        answer.await.map_err(|_| Error::WriterGone)?
    }

    async fn compacted_revision(&self) -> store::Result<Revision> {
        Ok(self.inner.readers.run(read::revisions).await?.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    /// A watcher that falls behind the broadcast catches up from the table, losing nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lagging_watcher_catches_up_from_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_with_feed(&dir.path().join("state.db"), 2).unwrap();
        let mut watch = store.watch("/", 0).await.unwrap();
        let first = store.create("/k/first", Vec::new()).await.unwrap();
        let event = watch.next().await.unwrap().unwrap();
        assert_eq!(event.revision(), first);
        // Nobody reads the watch while these are written one batch each, so the feed drops
        // all but the last two batches for it.
        let mut written = vec![];
        for i in 0..50 {
            written.push(
                store
                    .create(&format!("/k/{i:02}"), Vec::new())
                    .await
                    .unwrap(),
            );
        }
        let mut seen = vec![];
        while seen.len() < written.len() {
            seen.push(watch.next().await.unwrap().unwrap().revision());
        }
        assert_eq!(seen, written);
        let last = store.create("/k/last", Vec::new()).await.unwrap();
        assert_eq!(watch.next().await.unwrap().unwrap().revision(), last);
    }
}

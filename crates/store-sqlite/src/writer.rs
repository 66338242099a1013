//! The writer thread: the only connection that writes, committing queued requests in groups.
//!
//! SQLite serialises writers anyway, and rusqlite's `Connection` is not `Sync`, so one thread
//! owns the write connection and takes requests from a channel. Group commit: the thread takes
//! every request already queued (up to [`MAX_BATCH`]) into one transaction, so concurrent
//! clients share one fsync instead of paying one each. Every request still gets its own
//! revision and its own answer: the checks (exists, revision matches) run inside the
//! transaction, one request after the other, and a request that fails a check simply writes
//! nothing. Answers are sent, and events published, only after `COMMIT` returned, which with
//! `synchronous=FULL` means the batch is on disk.

use std::sync::Arc;
use std::sync::mpsc;

use rusqlite::{Connection, Transaction, TransactionBehavior, params};
use store::feed::EventFeed;
use store::{Event, EventKind, KeyValue, Revision};
use tokio::sync::oneshot;

use crate::error::Error;
use crate::read::{events_after_in, latest_row};
use crate::schema::{COMPACTED_REVISION, CURRENT_REVISION};

/// The most requests committed in one transaction; bounds the latency a batch adds.
const MAX_BATCH: usize = 512;

/// A request to the writer thread.
pub(crate) enum Request {
    /// A create, update or delete, answered once committed.
    Write(Write),
    /// A compaction, run in its own transaction.
    Compact {
        revision: Revision,
        reply: oneshot::Sender<store::Result<()>>,
    },
}

/// One write and where its answer goes.
pub(crate) struct Write {
    pub(crate) op: WriteOp,
    pub(crate) reply: Reply,
}

/// The three write shapes of the datastore.
pub(crate) enum WriteOp {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

/// Where an answer goes: creates and updates want the revision, deletes also the last value.
pub(crate) enum Reply {
    Revision(oneshot::Sender<store::Result<Revision>>),
    Deleted(oneshot::Sender<store::Result<(Revision, KeyValue)>>),
}

/// A write that passed its checks, inside a transaction not yet committed.
struct Applied {
    event: Event,
}

/// Why a batch wrote nothing, or may have written something.
enum BatchError {
    /// A statement failed before `COMMIT`; the transaction was rolled back.
    BeforeCommit(Error),
    /// `COMMIT` itself failed; whether the batch is on disk is unknown.
    Commit(Error),
}

/// The writer's state: its connection, the feed it publishes to, and the last revision
/// published there.
pub(crate) struct Writer {
    conn: Connection,
    feed: Arc<EventFeed>,
    published: Revision,
    /// Write transactions committed so far.
    commits: u64,
}

impl Writer {
    /// A writer over `conn`, which must be the only connection writing the database.
    pub(crate) fn new(conn: Connection, feed: Arc<EventFeed>) -> Result<Self, Error> {
        let published = conn
            .query_row(CURRENT_REVISION, [], |row| row.get(0))
            .map_err(Error::sql("read current revision"))?;
        Ok(Writer {
            conn,
            feed,
            published,
            commits: 0,
        })
    }

    /// Serves requests until every sender is gone; returns how many write transactions it
    /// committed.
    pub(crate) fn run(mut self, requests: mpsc::Receiver<Request>) -> u64 {
        while let Ok(first) = requests.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match requests.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            let mut writes = Vec::with_capacity(batch.len());
            let mut compactions = Vec::new();
            for request in batch {
                match request {
                    Request::Write(write) => writes.push(write),
                    Request::Compact { revision, reply } => compactions.push((revision, reply)),
                }
            }
            if !writes.is_empty() {
                self.commit_writes(writes);
            }
            for (revision, reply) in compactions {
                let _ = reply.send(self.compact(revision));
            }
        }
        self.commits
    }

    fn commit_writes(&mut self, writes: Vec<Write>) {
        match self.try_batch(&writes) {
            Ok(outcomes) => self.finish(writes, outcomes),
            Err(BatchError::BeforeCommit(e)) if writes.len() > 1 => {
                // One request may be at fault (a value over SQLite's size limit, say): retry
                // each on its own so that it alone fails.
                tracing::warn!(error = %error_chain(&e), requests = writes.len(), "batch failed, retrying one by one");
                for write in writes {
                    self.commit_writes(vec![write]);
                }
            }
            Err(BatchError::BeforeCommit(e)) => fail(writes, e),
            Err(BatchError::Commit(e)) => {
                tracing::error!(error = %error_chain(&e), "commit failed");
                fail(writes, e);
                // The batch may be on disk anyway; watchers must not miss it if it is.
                self.publish_unseen();
            }
        }
    }

    /// Applies every write in one transaction; each gets its own outcome.
    fn try_batch(&mut self, writes: &[Write]) -> Result<Vec<store::Result<Applied>>, BatchError> {
        let before = |op| move |source| BatchError::BeforeCommit(Error::Sql { op, source });
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(before("begin"))?;
        let mut last: Revision = tx
            .prepare_cached(CURRENT_REVISION)
            .and_then(|mut s| s.query_row([], |row| row.get(0)))
            .map_err(before("read current revision"))?;
        let mut outcomes = Vec::with_capacity(writes.len());
        for write in writes {
            let outcome = apply(&tx, &write.op, last + 1).map_err(before("write"))?;
            if let Ok(applied) = &outcome {
                last = applied.event.revision();
            }
            outcomes.push(outcome);
        }
        tx.commit().map_err(|source| {
            BatchError::Commit(Error::Sql {
                op: "commit",
                source,
            })
        })?;
        self.commits += 1;
        Ok(outcomes)
    }

    /// Publishes the committed events, then answers each request.
    fn finish(&mut self, writes: Vec<Write>, outcomes: Vec<store::Result<Applied>>) {
        let events: Vec<Event> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok())
            .map(|a| a.event.clone())
            .collect();
        if let Some(last) = events.last() {
            self.published = last.revision();
            self.feed.publish(events.into());
        }
        for (write, outcome) in writes.into_iter().zip(outcomes) {
            match write.reply {
                Reply::Revision(reply) => {
                    let _ = reply.send(outcome.map(|a| a.event.revision()));
                }
                Reply::Deleted(reply) => {
                    let _ = reply.send(outcome.and_then(|a| {
                        let revision = a.event.revision();
                        a.event.prev.map(|prev| (revision, prev)).ok_or_else(|| {
                            store::Error::Internal(
                                "a delete event always carries the deleted value".into(),
                            )
                        })
                    }));
                }
            }
        }
    }

    /// Publishes rows above the last published revision, after a commit of unknown outcome.
    fn publish_unseen(&mut self) {
        let unseen = events_after_in(&self.conn, "", self.published, usize::MAX);
        match unseen {
            Ok(events) if !events.is_empty() => {
                if let Some(last) = events.last() {
                    self.published = last.revision();
                }
                self.feed.publish(events.into());
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot read back after a failed commit"),
        }
    }

    /// Deletes the rows no read at or above `revision` can see, and records `revision` as
    /// compacted, in one transaction.
    fn compact(&mut self, revision: Revision) -> store::Result<()> {
        let sql = |op| move |source| Error::Sql { op, source };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("begin compaction"))?;
        let current: Revision = tx
            .query_row(CURRENT_REVISION, [], |row| row.get(0))
            .map_err(sql("read current revision"))?;
        let compacted: Revision = tx
            .query_row(COMPACTED_REVISION, [], |row| row.get(0))
            .map_err(sql("read compacted revision"))?;
        if revision > current {
            return Err(store::Error::FutureRevision {
                requested: revision,
                current,
            });
        }
        if revision <= compacted {
            return Ok(());
        }
        // A row at or below the revision goes if a later row of its key at or below the
        // revision supersedes it, and tombstones go too: a read at the revision sees the key's
        // last row at or below it, and a tombstone there reads as absent either way.
        let deleted = tx
            .execute(
                "DELETE FROM log WHERE id <= ?1 AND (deleted = 1 OR id < \
                 (SELECT MAX(newer.id) FROM log AS newer WHERE newer.name = log.name AND newer.id <= ?1))",
                [revision],
            )
            .map_err(sql("compact"))?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('compact_revision', ?1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [revision],
        )
        .map_err(sql("record compaction"))?;
        tx.commit().map_err(sql("commit compaction"))?;
        tracing::debug!(revision, deleted, "compacted");
        // Let the log shrink; readers still inside old snapshots just make this do less.
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            tracing::warn!(error = %e, "checkpoint after compaction failed");
        }
        Ok(())
    }
}

/// Checks one write against the current rows and, if it passes, inserts its row at `revision`.
/// The outer error is a failed statement; the inner one the datastore's answer to the caller.
fn apply(
    tx: &Transaction<'_>,
    op: &WriteOp,
    revision: Revision,
) -> rusqlite::Result<store::Result<Applied>> {
    let key = match op {
        WriteOp::Create { key, .. } | WriteOp::Update { key, .. } | WriteOp::Delete { key, .. } => {
            key
        }
    };
    let latest = latest_row(tx, key)?;
    // A re-created key points back at its tombstone, so (name, prev_revision) stays unique.
    let last_revision = latest.as_ref().map_or(0, |row| row.revision);
    let live = latest.and_then(|row| row.live(key));
    let event = match (op, live) {
        (WriteOp::Create { .. }, Some(_)) => {
            return Ok(Err(store::Error::AlreadyExists { key: key.clone() }));
        }
        (WriteOp::Create { value, .. }, None) => Event {
            kind: EventKind::Create,
            kv: KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: revision,
                mod_revision: revision,
            },
            prev: None,
        },
        (WriteOp::Update { .. } | WriteOp::Delete { .. }, None) => {
            return Ok(Err(store::Error::NotFound { key: key.clone() }));
        }
        (WriteOp::Update { expected, .. }, Some(current))
        | (
            WriteOp::Delete {
                expected: Some(expected),
                ..
            },
            Some(current),
        ) if current.mod_revision != *expected => {
            return Ok(Err(store::Error::Conflict {
                current: Box::new(current),
            }));
        }
        (WriteOp::Update { value, .. }, Some(current)) => Event {
            kind: EventKind::Update,
            kv: KeyValue {
                value: value.clone(),
                mod_revision: revision,
                ..current.clone()
            },
            prev: Some(current),
        },
        (WriteOp::Delete { .. }, Some(current)) => Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                mod_revision: revision,
                ..current.clone()
            },
            prev: Some(current),
        },
    };
    tx.prepare_cached(
        "INSERT INTO log (id, name, created, deleted, create_revision, prev_revision, value, old_value) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        revision,
        key,
        event.kind == EventKind::Create,
        event.kind == EventKind::Delete,
        event.kv.create_revision,
        last_revision,
        event.kv.value,
        event.prev.as_ref().map(|p| &p.value),
    ])?;
    Ok(Ok(Applied { event }))
}

/// Answers every write of a failed batch with the failure. Errors are not `Clone`, so the
/// first caller gets the original with its source and the others a copy of its text.
fn fail(writes: Vec<Write>, e: Error) {
    let cause = error_chain(&e);
    let mut first = Some(e);
    for write in writes {
        let e = store::Error::from(first.take().unwrap_or_else(|| Error::BatchFailed {
            cause: cause.clone(),
        }));
        match write.reply {
            Reply::Revision(reply) => {
                let _ = reply.send(Err(e));
            }
            Reply::Deleted(reply) => {
                let _ = reply.send(Err(e));
            }
        }
    }
}

/// An error and its sources, joined with ": ", for logs.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;

    fn write(op: WriteOp) -> (Request, oneshot::Receiver<store::Result<Revision>>) {
        let (reply, answer) = oneshot::channel();
        (
            Request::Write(Write {
                op,
                reply: Reply::Revision(reply),
            }),
            answer,
        )
    }

    /// Requests queued together commit in one transaction, yet each gets its own revision or
    /// its own failure.
    #[test]
    fn queued_requests_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        schema::prepare_file(&path).unwrap();
        let writer = Writer::new(
            schema::open_writer(&path).unwrap(),
            Arc::new(EventFeed::new(16)),
        )
        .unwrap();
        let (requests, receiver) = mpsc::channel();
        let mut answers = Vec::new();
        for i in 0..50 {
            let key = if i == 10 {
                "/k/3".to_owned()
            } else {
                format!("/k/{i}")
            };
            let (request, answer) = write(WriteOp::Create {
                key,
                value: b"v".to_vec(),
            });
            requests.send(request).unwrap();
            answers.push(answer);
        }
        let (request, stale) = write(WriteOp::Update {
            key: "/k/0".into(),
            value: b"w".to_vec(),
            expected: 99,
        });
        requests.send(request).unwrap();
        let (request, updated) = write(WriteOp::Update {
            key: "/k/1".into(),
            value: b"w".to_vec(),
            expected: 2,
        });
        requests.send(request).unwrap();
        drop(requests);

        assert_eq!(
            writer.run(receiver),
            1,
            "one transaction for the whole queue"
        );
        let mut revisions = Vec::new();
        for (i, mut answer) in answers.into_iter().enumerate() {
            match answer.try_recv().unwrap() {
                Ok(rev) => revisions.push(rev),
                Err(store::Error::AlreadyExists { key }) => {
                    assert_eq!((i, key.as_str()), (10, "/k/3"))
                }
                Err(e) => panic!("request {i}: {e}"),
            }
        }
        assert_eq!(revisions, (1..=49).collect::<Vec<_>>());
        match stale.blocking_recv().unwrap() {
            Err(store::Error::Conflict { current }) => assert_eq!(current.mod_revision, 1),
            other => panic!("expected Conflict, got {other:?}"),
        }
        assert_eq!(updated.blocking_recv().unwrap().unwrap(), 50);
    }

    /// A statement that fails inside a batch (here a value over the length limit) fails only
    /// its own request: the batch is retried one request at a time.
    #[test]
    fn a_failing_statement_fails_only_its_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        schema::prepare_file(&path).unwrap();
        let conn = schema::open_writer(&path).unwrap();
        conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, 1000)
            .unwrap();
        let feed = Arc::new(EventFeed::new(16));
        let mut events = feed.subscribe();
        let writer = Writer::new(conn, feed).unwrap();
        let (requests, receiver) = mpsc::channel();
        let mut answers = Vec::new();
        for i in 0..5 {
            let value = if i == 2 {
                vec![b'x'; 2000]
            } else {
                b"v".to_vec()
            };
            let (request, answer) = write(WriteOp::Create {
                key: format!("/k/{i}"),
                value,
            });
            requests.send(request).unwrap();
            answers.push(answer);
        }
        drop(requests);

        assert_eq!(
            writer.run(receiver),
            4,
            "the failed batch commits nothing, then one per request"
        );
        let results: Vec<_> = answers
            .into_iter()
            .map(|mut a| a.try_recv().unwrap())
            .collect();
        assert!(
            matches!(results[2], Err(store::Error::Internal(_))),
            "{:?}",
            results[2]
        );
        let ok: Vec<Revision> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        assert_eq!(ok, vec![1, 2, 3, 4]);
        let published: Vec<Revision> = std::iter::from_fn(|| events.try_recv().ok())
            .flat_map(|batch| batch.iter().map(Event::revision).collect::<Vec<_>>())
            .collect();
        assert_eq!(published, vec![1, 2, 3, 4]);
    }
}

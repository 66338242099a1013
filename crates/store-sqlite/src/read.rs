//! Reads: a small pool of read connections used from blocking tasks, and the queries.
//!
//! Each read runs in its own read transaction, so the revision it reports and the rows it
//! returns come from one snapshot. In WAL mode readers never wait for the writer, so lists and
//! watch catch-ups do not queue behind commits.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use store::feed::History;
use store::{Event, KeyValue, ListOptions, ListPage, Revision};
use tokio::sync::Semaphore;

use crate::error::{Error, Result};
use crate::schema::{self, COMPACTED_REVISION, CURRENT_REVISION, EVENT_COLUMNS, prefix_end};

/// At most this many reads run at once; more would only contend for two cores.
const MAX_READERS: usize = 4;

/// Read connections, opened on first use and reused.
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl Readers {
    pub(crate) fn new(path: PathBuf) -> Self {
        Readers {
            path,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(MAX_READERS),
        }
    }

    /// Runs `read` on a read connection in a blocking task.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, read: F) -> store::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> store::Result<T> + Send + 'static,
    {
        // The semaphore is never closed, so acquiring can only fail if that invariant breaks.
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::WriterGone)?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let idle = this.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut conn = match idle {
                Some(conn) => conn,
                None => schema::open_reader(&this.path)?,
            };
            let result = read(&mut conn);
            this.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
            result
        })
        .await
        .map_err(Error::ReadTask)?
    }
}

fn current_revision(tx: &Transaction<'_>) -> Result<Revision> {
    tx.query_row(CURRENT_REVISION, [], |row| row.get(0))
        .map_err(Error::sql("read current revision"))
}

fn compacted_revision(tx: &Transaction<'_>) -> Result<Revision> {
    tx.query_row(COMPACTED_REVISION, [], |row| row.get(0))
        .map_err(Error::sql("read compacted revision"))
}

fn begin(conn: &mut Connection) -> Result<Transaction<'_>> {
    conn.transaction().map_err(Error::sql("begin read"))
}

/// The key's last row, as (revision, deleted, create revision, value).
pub(crate) fn latest_row(
    conn: &Connection,
    key: &str,
) -> rusqlite::Result<Option<(Revision, bool, Revision, Vec<u8>)>> {
    conn.prepare_cached("SELECT id, deleted, create_revision, value FROM log WHERE name = ?1 ORDER BY id DESC LIMIT 1")?
        .query_row([key], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
        .optional()
}

/// The key's current value, with the current revision.
pub(crate) fn get(conn: &mut Connection, key: &str) -> store::Result<(Revision, Option<KeyValue>)> {
    let tx = begin(conn)?;
    let current = current_revision(&tx)?;
    let kv = latest_row(&tx, key).map_err(Error::sql("get"))?.and_then(
        |(rev, deleted, create_revision, value)| {
            (!deleted).then(|| KeyValue {
                key: key.to_owned(),
                value,
                create_revision,
                mod_revision: rev,
            })
        },
    );
    Ok((current, kv))
}

/// Both revisions, from one snapshot.
pub(crate) fn revisions(conn: &mut Connection) -> store::Result<(Revision, Revision)> {
    let tx = begin(conn)?;
    Ok((current_revision(&tx)?, compacted_revision(&tx)?))
}

/// The key range of a list: keys starting with `prefix`, after `after_key` when given.
struct Range {
    lower: String,
    lower_inclusive: bool,
    upper: Option<String>,
}

impl Range {
    fn new(prefix: &str, after_key: Option<&str>) -> Self {
        let (lower, lower_inclusive) = match after_key {
            Some(after) if after >= prefix => (after.to_owned(), false),
            _ => (prefix.to_owned(), true),
        };
        Range {
            lower,
            lower_inclusive,
            upper: prefix_end(prefix),
        }
    }

    /// The `WHERE` condition on `name`, with `?1` as the lower and `?2` as the upper bound.
    fn condition(&self) -> String {
        let lower = if self.lower_inclusive {
            "name >= ?1"
        } else {
            "name > ?1"
        };
        match self.upper {
            Some(_) => format!("{lower} AND name < ?2"),
            // Keep ?2 bound either way, so one parameter list fits both shapes.
            None => format!("{lower} AND ?2 IS NULL"),
        }
    }
}

/// One page of keys under `prefix`, at the options' revision.
pub(crate) fn list(
    conn: &mut Connection,
    prefix: &str,
    options: &ListOptions,
) -> store::Result<ListPage> {
    let tx = begin(conn)?;
    let current = current_revision(&tx)?;
    let compacted = compacted_revision(&tx)?;
    let revision = options.revision.unwrap_or(current);
    if revision < compacted {
        return Err(store::Error::Compacted {
            requested: revision,
            compacted,
        });
    }
    if revision > current {
        return Err(store::Error::FutureRevision {
            requested: revision,
            current,
        });
    }
    let limit = options
        .limit
        .filter(|l| *l > 0)
        .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
    let range = Range::new(prefix, options.after_key.as_deref());
    // Each key's last row at or below the revision, found on the (name, id) index, then kept
    // only if it is not a tombstone.
    let sql = format!(
        "SELECT l.name, l.create_revision, l.id, l.value FROM log AS l \
         JOIN (SELECT MAX(id) AS id FROM log WHERE {} AND id <= ?3 GROUP BY name) AS m ON l.id = m.id \
         WHERE l.deleted = 0 ORDER BY l.name LIMIT ?4",
        range.condition()
    );
    let items = tx
        .prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_map(params![range.lower, range.upper, revision, limit], |row| {
                Ok(KeyValue {
                    key: row.get(0)?,
                    create_revision: row.get(1)?,
                    mod_revision: row.get(2)?,
                    value: row.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(Error::sql("list"))?;
    let remaining = match items.last() {
        Some(last) if limit >= 0 && items.len() as i64 == limit => {
            let rest = Range::new(prefix, Some(&last.key));
            let sql = format!(
                "SELECT COUNT(*) FROM log AS l \
                 JOIN (SELECT MAX(id) AS id FROM log WHERE {} AND id <= ?3 GROUP BY name) AS m ON l.id = m.id \
                 WHERE l.deleted = 0",
                rest.condition()
            );
            let count: i64 = tx
                .prepare_cached(&sql)
                .and_then(|mut stmt| {
                    stmt.query_row(params![rest.lower, rest.upper, revision], |row| row.get(0))
                })
                .map_err(Error::sql("count remaining"))?;
            usize::try_from(count).unwrap_or(0)
        }
        _ => 0,
    };
    Ok(ListPage {
        revision,
        items,
        remaining,
    })
}

/// Up to `limit` events for keys under `prefix` above revision `after`, in revision order.
pub(crate) fn events_after(
    conn: &mut Connection,
    prefix: &str,
    after: Revision,
    limit: usize,
) -> store::Result<Vec<Event>> {
    let tx = begin(conn)?;
    let compacted = compacted_revision(&tx)?;
    if after < compacted {
        return Err(store::Error::Compacted {
            requested: after,
            compacted,
        });
    }
    Ok(events_after_in(&tx, prefix, after, limit).map_err(Error::sql("read history"))?)
}

/// [`events_after`] without the compaction check, inside a transaction the caller holds.
pub(crate) fn events_after_in(
    conn: &Connection,
    prefix: &str,
    after: Revision,
    limit: usize,
) -> rusqlite::Result<Vec<Event>> {
    let range = Range::new(prefix, None);
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM log WHERE id > ?3 AND {} ORDER BY id LIMIT ?4",
        range.condition()
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(&sql)?;
    let events = stmt.query_map(
        params![range.lower, range.upper, after, limit],
        schema::row_event,
    )?;
    events.collect()
}

/// Watch catch-up from the log table.
pub(crate) struct SqliteHistory(pub(crate) Arc<Readers>);

#[async_trait]
impl History for SqliteHistory {
    async fn events_after(
        &self,
        prefix: &str,
        after: Revision,
        limit: usize,
    ) -> store::Result<Vec<Event>> {
        let prefix = prefix.to_owned();
        self.0
            .run(move |conn| events_after(conn, &prefix, after, limit))
            .await
    }
}

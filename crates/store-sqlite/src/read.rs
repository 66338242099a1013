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
    // Cached: every read starts with it, and preparing costs more than running it.
    tx.prepare_cached(CURRENT_REVISION)
        .and_then(|mut s| s.query_row([], |row| row.get(0)))
        .map_err(Error::sql("read current revision"))
}

fn compacted_revision(tx: &Transaction<'_>) -> Result<Revision> {
    tx.prepare_cached(COMPACTED_REVISION)
        .and_then(|mut s| s.query_row([], |row| row.get(0)))
        .map_err(Error::sql("read compacted revision"))
}

fn begin(conn: &mut Connection) -> Result<Transaction<'_>> {
    conn.transaction().map_err(Error::sql("begin read"))
}

/// A key's last row.
pub(crate) struct LatestRow {
    /// The row's revision.
    pub(crate) revision: Revision,
    /// The row is a tombstone.
    pub(crate) deleted: bool,
    pub(crate) create_revision: Revision,
    pub(crate) value: Vec<u8>,
}

impl LatestRow {
    /// The key's value, unless the row is a tombstone.
    pub(crate) fn live(self, key: &str) -> Option<KeyValue> {
        (!self.deleted).then(|| KeyValue {
            key: key.to_owned(),
            value: self.value,
            create_revision: self.create_revision,
            mod_revision: self.revision,
        })
    }
}

/// The key's last row, tombstone or not.
pub(crate) fn latest_row(conn: &Connection, key: &str) -> rusqlite::Result<Option<LatestRow>> {
    conn.prepare_cached(
        "SELECT id, deleted, create_revision, value FROM log WHERE name = ?1 ORDER BY id DESC LIMIT 1",
    )?
    .query_row([key], |row| {
        Ok(LatestRow {
            revision: row.get(0)?,
            deleted: row.get(1)?,
            create_revision: row.get(2)?,
            value: row.get(3)?,
        })
    })
    .optional()
}

/// The key's current value, with the current revision.
pub(crate) fn get(conn: &mut Connection, key: &str) -> store::Result<(Revision, Option<KeyValue>)> {
    let tx = begin(conn)?;
    let current = current_revision(&tx)?;
    let kv = latest_row(&tx, key)
        .map_err(Error::sql("get"))?
        .and_then(|row| row.live(key));
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

/// The condition selecting, within `range`, the rows a read at revision `?3` sees.
///
/// A key's row is the one a read at the revision sees when no later row of that key is at or
/// below the revision. Walking rows in name order and checking that on the (name, id) index
/// needs no sort, so a page stops reading at its limit and values are read only for the rows
/// returned (a join on `MAX(id) GROUP BY name` would sort every value by name first).
fn visible(range: &Range) -> String {
    format!(
        "{} AND id <= ?3 AND deleted = 0 AND NOT EXISTS (SELECT 1 FROM log AS newer \
         WHERE newer.name = log.name AND newer.id > log.id AND newer.id <= ?3)",
        range.condition()
    )
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
    let limit = options.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
    let range = Range::new(prefix, options.after_key.as_deref());
    let sql = format!(
        "SELECT name, create_revision, id, value FROM log WHERE {} ORDER BY name LIMIT ?4",
        visible(&range)
    );
    let sql_limit = i64::try_from(limit).unwrap_or(-1);
    let items = tx
        .prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_map(
                params![range.lower, range.upper, revision, sql_limit],
                |row| {
                    Ok(KeyValue {
                        key: row.get(0)?,
                        create_revision: row.get(1)?,
                        mod_revision: row.get(2)?,
                        value: row.get(3)?,
                    })
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(Error::sql("list"))?;
    let remaining = match items.last() {
        Some(last) if items.len() == limit => {
            let rest = Range::new(prefix, Some(&last.key));
            let count = if options.skip_count {
                "SELECT EXISTS (SELECT 1 FROM log WHERE {})"
            } else {
                "SELECT COUNT(*) FROM log WHERE {}"
            };
            let count: i64 = tx
                .prepare_cached(&count.replace("{}", &visible(&rest)))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A list must walk an index in key order: a sort would read every value of the prefix
    /// even for a small page.
    #[test]
    fn list_query_needs_no_sort() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        schema::prepare_file(&path).unwrap();
        let conn = schema::open_writer(&path).unwrap();
        for (prefix, after) in [
            ("/registry/pods/", None),
            ("/registry/pods/", Some("/registry/pods/a")),
            ("", None),
        ] {
            let range = Range::new(prefix, after);
            let sql = format!(
                "EXPLAIN QUERY PLAN SELECT name, create_revision, id, value FROM log WHERE {} ORDER BY name LIMIT ?4",
                visible(&range)
            );
            let plan: Vec<String> = conn
                .prepare(&sql)
                .unwrap()
                .query_map(params![range.lower, range.upper, 10, 500], |row| row.get(3))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert!(
                plan.iter().all(|step| !step.contains("TEMP B-TREE")),
                "{plan:?}"
            );
            assert!(
                plan[0].starts_with("SEARCH log USING INDEX")
                    || plan[0].starts_with("SCAN log USING INDEX"),
                "{plan:?}"
            );
        }
    }
}

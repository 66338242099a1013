//! The on-disk layout and connection settings, and decoding of log rows.
//!
//! One table, `log`, holds every write, as kine's does: its `id` is the revision. `AUTOINCREMENT`
//! (rather than a plain rowid) makes SQLite remember the highest id ever used in
//! `sqlite_sequence`, so a revision is never handed out twice, even after compaction deleted the
//! newest row. `meta` holds the compacted revision, written in the same transaction as the
//! deletions it describes.
//!
//! The index on (name, id) also carries `deleted`, so a list can find each key's last row at a
//! revision, and whether it is a tombstone, from the index alone.

use std::fs::{self, OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Row};
use store::{Event, EventKind, KeyValue, Revision};

use crate::error::{Error, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL,
    old_value BLOB
);
CREATE INDEX IF NOT EXISTS log_name_id ON log (name, id, deleted);
CREATE UNIQUE INDEX IF NOT EXISTS log_name_prev_revision ON log (name, prev_revision);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// The columns [`row_event`] decodes, in its order.
pub(crate) const EVENT_COLUMNS: &str =
    "id, name, created, deleted, create_revision, prev_revision, value, old_value";

/// The current revision: the highest id ever inserted, even if compaction deleted its row.
pub(crate) const CURRENT_REVISION: &str =
    "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'log'), 0)";

/// The compacted revision.
pub(crate) const COMPACTED_REVISION: &str =
    "SELECT COALESCE((SELECT value FROM meta WHERE key = 'compact_revision'), 0)";

/// How much of the database a reader maps into memory.
const READER_MMAP_BYTES: u64 = 1 << 30;

/// How long a statement waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Only the owner may read the database: it holds every Secret in the cluster.
const FILE_MODE: u32 = 0o600;

/// Creates the database file with mode 0600 if it is missing and tightens the mode of the
/// database and of any `-wal`/`-shm` files left from an earlier run.
///
/// SQLite creates `-wal` and `-shm` files with the database file's permission bits, so making
/// the database file 0600 before SQLite first opens it covers the files SQLite creates later.
/// That is preferred over setting the process umask, which would race with every other thread
/// of the server creating files.
pub(crate) fn prepare_file(path: &Path) -> Result<()> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::PrepareFile { path, source }
    };
    let existed = path.exists();
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map_err(err(path))?;
    if !existed {
        // Make the new directory entry itself durable before anything is acknowledged.
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err(dir))?;
    }
    tighten_modes(path)
}

/// Sets mode 0600 on the database and its `-wal`/`-shm` files, where they exist.
pub(crate) fn tighten_modes(path: &Path) -> Result<()> {
    for file in [
        path.to_path_buf(),
        sidecar(path, "-wal"),
        sidecar(path, "-shm"),
    ] {
        match fs::set_permissions(&file, Permissions::from_mode(FILE_MODE)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::PrepareFile { path: file, source }),
        }
    }
    Ok(())
}

/// `path` with `suffix` appended to its file name, as SQLite names its `-wal` and `-shm` files.
pub(crate) fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Opens the writer connection: WAL, `synchronous=FULL`, and the schema.
///
/// In WAL mode `synchronous=FULL` fsyncs the log on every commit, so an acknowledged write
/// survives power loss, not just a kill of the process (`NORMAL`, kine's default, may lose the
/// last commits on power loss).
pub(crate) fn open_writer(path: &Path) -> Result<Connection> {
    let open_err = |step| {
        let path = path.to_path_buf();
        move |source| Error::Open { path, step, source }
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(open_err("open"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(open_err("busy timeout"))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(open_err("journal mode"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::NoWal {
            path: path.to_path_buf(),
            mode,
        });
    }
    conn.execute_batch("PRAGMA synchronous = FULL;")
        .map_err(open_err("synchronous"))?;
    conn.execute_batch(SCHEMA).map_err(open_err("schema"))?;
    Ok(conn)
}

/// Opens a read connection. It can never write, so a bug cannot bypass the writer thread.
pub(crate) fn open_reader(path: &Path) -> Result<Connection> {
    let open_err = |step| {
        let path = path.to_path_buf();
        move |source| Error::Open { path, step, source }
    };
    // Read-write flags even so: a WAL reader must be able to update the shared-memory index.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(open_err("open reader"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(open_err("busy timeout"))?;
    // Readers map the file: a big list then reads its rows where the kernel keeps them instead
    // of copying every page in (half the time of a 10,000-pod list). The price: an I/O error
    // under a read kills the process with SIGBUS instead of failing the read; no acknowledged
    // write is lost by it, as the writer does not map the file.
    conn.execute_batch(&format!(
        "PRAGMA query_only = ON; PRAGMA cache_size = -8192; PRAGMA mmap_size = {READER_MMAP_BYTES};"
    ))
    .map_err(open_err("reader settings"))?;
    Ok(conn)
}

/// Decodes a row selected with [`EVENT_COLUMNS`] into the event of that write.
pub(crate) fn row_event(row: &Row<'_>) -> rusqlite::Result<Event> {
    let revision: Revision = row.get(0)?;
    let key: String = row.get(1)?;
    let created: bool = row.get(2)?;
    let deleted: bool = row.get(3)?;
    let create_revision: Revision = row.get(4)?;
    let prev_revision: Revision = row.get(5)?;
    let value: Vec<u8> = row.get(6)?;
    let old_value: Option<Vec<u8>> = row.get(7)?;
    let kind = if deleted {
        EventKind::Delete
    } else if created {
        EventKind::Create
    } else {
        EventKind::Update
    };
    let prev = match (&kind, old_value) {
        (EventKind::Create, _) | (_, None) => None,
        (_, Some(old)) => Some(KeyValue {
            key: key.clone(),
            value: old,
            create_revision,
            mod_revision: prev_revision,
        }),
    };
    Ok(Event {
        kind,
        kv: KeyValue {
            key,
            value,
            create_revision,
            mod_revision: revision,
        },
        prev,
    })
}

/// The smallest string above every string starting with `prefix`, or `None` when there is none
/// (an empty prefix, or one made only of `char::MAX`).
///
/// SQLite compares TEXT bytewise, and UTF-8 byte order is code point order, so bumping the last
/// code point gives the exclusive upper bound of the prefix range.
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 + 1 {
            0xD800 => Some('\u{E000}'), // skip the surrogate range, which no string holds
            n => char::from_u32(n),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bumps_the_last_code_point() {
        assert_eq!(
            prefix_end("/registry/pods/"),
            Some("/registry/pods0".to_owned())
        );
        assert_eq!(prefix_end("a\u{D7FF}"), Some("a\u{E000}".to_owned()));
        assert_eq!(prefix_end("ab\u{10FFFF}"), Some("ac".to_owned()));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
        assert_eq!(prefix_end(""), None);
    }

    #[test]
    fn sidecar_appends_to_the_file_name() {
        assert_eq!(
            sidecar(Path::new("/d/state.db"), "-wal"),
            PathBuf::from("/d/state.db-wal")
        );
    }
}

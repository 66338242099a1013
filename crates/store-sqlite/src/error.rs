//! What can go wrong inside the SQLite backend, and how it maps onto the datastore's kinds.

use std::path::PathBuf;

use rusqlite::ErrorCode;

/// A failure of the SQLite backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database file could not be created or given its permissions.
    #[error("cannot prepare database file {path}")]
    PrepareFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// SQLite refused to open the database or set it up.
    #[error("cannot open database {path} ({step})")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        step: &'static str,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The database does not support write-ahead logging (a network filesystem, for example).
    #[error("database {path} cannot use write-ahead logging (journal mode is {mode})")]
    NoWal {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite kept.
        mode: String,
    },
    /// The writer thread could not be started.
    #[error("cannot start the writer thread")]
    SpawnWriter(#[source] std::io::Error),
    /// A statement failed.
    #[error("sqlite {op} failed")]
    Sql {
        /// What the statement was for.
        op: &'static str,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The transaction holding this write failed to commit; it may or may not be on disk.
    #[error("the commit holding this write failed: {cause}")]
    BatchFailed {
        /// The failure, as text (the first write of the batch has it as a source).
        cause: String,
    },
    /// The writer thread has stopped (the store is closing, or the thread panicked).
    #[error("the writer thread has stopped")]
    WriterGone,
    /// A blocking read task panicked or was cancelled.
    #[error("read task failed")]
    ReadTask(#[source] tokio::task::JoinError),
}

/// A result of the SQLite backend.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps a statement failure with what it was for.
    pub(crate) fn sql(op: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
        move |source| Error::Sql { op, source }
    }

    /// Whether retrying later may succeed: a busy or locked database, a full disk or an I/O error.
    fn is_transient(&self) -> bool {
        match self {
            Error::Sql { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(
                    ErrorCode::DatabaseBusy
                        | ErrorCode::DatabaseLocked
                        | ErrorCode::DiskFull
                        | ErrorCode::SystemIoFailure
                        | ErrorCode::CannotOpen
                        | ErrorCode::OutOfMemory
                )
            ),
            Error::WriterGone | Error::BatchFailed { .. } => true,
            _ => false,
        }
    }
}

impl From<Error> for store::Error {
    fn from(e: Error) -> store::Error {
        if e.is_transient() {
            store::Error::Unavailable(Box::new(e))
        } else {
            store::Error::Internal(Box::new(e))
        }
    }
}

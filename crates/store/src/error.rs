//! Error kinds that cross the datastore boundary; backends keep their own causes as sources.

use crate::{KeyValue, Revision};

/// A boxed backend error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong in a datastore call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key does not exist.
    #[error("key {key} not found")]
    NotFound {
        /// The key asked for.
        key: String,
    },
    /// The key exists already (create).
    #[error("key {key} already exists")]
    AlreadyExists {
        /// The key asked for.
        key: String,
    },
    /// The key's revision is not the one expected (update, delete).
    #[error("key {} was modified at revision {}", current.key, current.mod_revision)]
    Conflict {
        /// The current value.
        current: Box<KeyValue>,
    },
    /// The revision asked for has been compacted away.
    #[error("revision {requested} has been compacted (compacted at {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The store's compacted revision.
        compacted: Revision,
    },
    /// The revision asked for has not been written yet (a list or compaction ahead of the store).
    #[error("revision {requested} is a future revision (current is {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// The backend cannot be reached.
    #[error("datastore unavailable")]
    Unavailable(#[source] BoxError),
    /// The backend failed in a way the caller cannot fix.
    #[error("datastore failure")]
    Internal(#[source] BoxError),
}

/// A datastore result.
pub type Result<T> = std::result::Result<T, Error>;

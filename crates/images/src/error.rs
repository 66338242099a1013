//! The crate's error type. Pull failures carry a message worded as containerd's, because the
//! node agent shows it verbatim in `ErrImagePull`; the other variants carry the path or digest
//! they concern and keep their cause behind `#[source]`.

use std::io;
use std::path::PathBuf;

/// An image store error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The reference does not parse as Docker's grammar.
    #[error("invalid reference format{}", detail_suffix(.detail))]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// Docker's extra wording (`repository name (library/Alpine) must be lowercase`), if any.
        detail: Option<String>,
    },
    /// No image by that reference or id is on the node.
    #[error("image {reference:?} not found")]
    NotFound {
        /// The reference or id asked for.
        reference: String,
    },
    /// A pull failed; the message is the whole sentence kubelet shows.
    #[error("{message}")]
    Pull {
        /// `failed to pull and unpack image "...": ...`
        message: String,
    },
    /// The registry configuration is unusable.
    #[error("invalid registry mirror {mirror:?}: {reason}")]
    Config {
        /// The mirror as given (`HOST=URL`).
        mirror: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A blob's content does not hash to its digest.
    #[error("unexpected commit digest {actual}, expected {expected}: failed precondition")]
    DigestMismatch {
        /// The digest the descriptor promised.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A layer archive holds an entry that may not be unpacked.
    #[error("refusing layer entry {entry:?}: {reason}")]
    UnsafeEntry {
        /// The entry's path in the archive.
        entry: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A layer could not be unpacked.
    #[error("failed to extract layer {diff_id}")]
    Extract {
        /// The layer's diff id.
        diff_id: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// An image archive, manifest or config is malformed.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was being read (`image manifest sha256:...`, `archive index.json`, ...).
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A file system operation failed.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done (`create directory`, `write blob`, ...).
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A JSON document could not be read or written.
    #[error("{action} {}", path.display())]
    Json {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail
        .as_ref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

impl Error {
    /// Whether the image or reference was not found.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl std::fmt::Display) -> Error {
        Error::Invalid {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

/// An error and its causes, joined as Go's wrapped errors print.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// An image store result.
pub type Result<T> = std::result::Result<T, Error>;

impl From<Error> for runtime::Error {
    fn from(err: Error) -> Self {
        match err {
            Error::NotFound { reference } => runtime::Error::NotFound {
                what: "image",
                id: reference,
            },
            Error::Pull { message } => runtime::Error::ImagePull { message },
            other => runtime::Error::Internal {
                context: chain(&other),
                source: Box::new(other),
            },
        }
    }
}

//! The crate's error, and how it crosses into [`runtime::Error`].

use std::path::PathBuf;

/// What went wrong inside the runc runtime, with the context needed to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done (`read`, `write`, `create directory`, ...).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A metadata file did not parse or serialise.
    #[error("json in {path}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A system call failed.
    #[error("{op}")]
    Sys {
        /// What was being done, with its arguments.
        op: String,
        /// The cause.
        #[source]
        source: nix::Error,
    },
    /// An external command (`runc`, `ip`) failed; `message` holds what it said.
    #[error("{command}: {message}")]
    Command {
        /// The command line, shortened.
        command: String,
        /// Its error output or exit status.
        message: String,
    },
    /// The OCI spec could not be built.
    #[error("build oci spec")]
    Spec {
        /// The cause.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// The container config cannot be turned into a container (CreateContainerError).
    #[error("{0}")]
    InvalidConfig(String),
    /// The pod network has no address left.
    #[error("no free address in the pod network {0}")]
    AddressesExhausted(String),
    /// The Pod network overlaps a route the node already has.
    #[error("the pod network {cidr} overlaps the route to {route} on {device}")]
    NetworkOverlap {
        /// The Pod network.
        cidr: String,
        /// The route's destination.
        route: String,
        /// The route's device.
        device: String,
    },
    /// A sandbox or container id that is not known.
    #[error("{what} {id} not found")]
    NotFound {
        /// "sandbox" or "container".
        what: &'static str,
        /// The id.
        id: String,
    },
    /// The container's process could not be started (runc's message).
    #[error("{0}")]
    Start(String),
    /// The root filesystem provider failed; its error crosses unchanged.
    #[error("root filesystem")]
    Rootfs(#[source] runtime::Error),
}

/// A result of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// An error and its sources, one line: `outer: inner: ...`.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl Error {
    /// An `Io` error for `path`.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }

    /// A `Sys` error for a system call described by `op`.
    pub(crate) fn sys(op: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
        let op = op.into();
        move |source| Error::Sys { op, source }
    }
}

impl From<Error> for runtime::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound { what, id } => runtime::Error::NotFound { what, id },
            Error::InvalidConfig(message) => runtime::Error::CreateContainer { message },
            Error::Start(message) => runtime::Error::StartContainer { message },
            Error::Rootfs(e) => e,
            other => runtime::Error::Internal {
                context: "runc runtime".to_string(),
                source: Box::new(other),
            },
        }
    }
}

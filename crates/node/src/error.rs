//! The agent's error type: one enum, each variant naming what was being done.

/// What can go wrong in the agent. Most failures inside a pod worker become Events and
/// status instead; these are the ones that reach the caller or a log line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("{context}")]
    Api {
        /// What was being done (`register node n1`).
        context: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A call to the container runtime or image service failed.
    #[error("{context}")]
    Runtime {
        /// What was being done.
        context: String,
        /// The runtime's error.
        #[source]
        source: runtime::Error,
    },
    /// A file or directory of the node's state could not be made or removed.
    #[error("{context} {path}")]
    Io {
        /// What was being done (`create emptyDir`).
        context: &'static str,
        /// The path involved.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An object could not be turned into or out of JSON.
    #[error("{context}")]
    Json {
        /// What was being encoded or decoded.
        context: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// An API error with context.
    pub fn api(context: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let context = context.into();
        move |source| Error::Api { context, source }
    }

    /// A runtime error with context.
    pub fn runtime(context: impl Into<String>) -> impl FnOnce(runtime::Error) -> Error {
        let context = context.into();
        move |source| Error::Runtime { context, source }
    }

    /// An IO error with context and path.
    pub fn io(
        context: &'static str,
        path: impl Into<std::path::PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            context,
            path,
            source,
        }
    }

    /// Whether this is the API server's 404.
    pub fn is_api_not_found(&self) -> bool {
        matches!(self, Error::Api { source: kube::Error::Api(s), .. } if s.code == 404)
    }
}

/// The agent's result.
pub type Result<T> = std::result::Result<T, Error>;

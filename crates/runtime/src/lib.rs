//! The seam between the node agent and whatever runs containers, shaped after the CRI.
//!
//! Layout: [`ContainerRuntime`] runs pod sandboxes (the shared network, IPC and UTS namespaces
//! of a Pod) and containers in them; [`ImageService`] pulls and lists images. Both are
//! idempotent where the CRI is (stopping or removing what is gone is not an error) and carry
//! labels that round-trip, so an agent that restarts can rebuild its view from
//! [`ContainerRuntime::list_sandboxes`] and [`ContainerRuntime::list_containers`]. The runc
//! implementation lives in `runtime-oci`. Start with [`ContainerRuntime`].

use async_trait::async_trait;
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite};

/// A runtime error. The kinds cross the boundary; causes stay behind `#[source]`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sandbox, container or image does not exist.
    #[error("{what} {id} not found")]
    NotFound {
        /// "sandbox", "container" or "image".
        what: &'static str,
        /// Its id or reference.
        id: String,
    },
    /// The image could not be pulled (kubelet reports ErrImagePull with this message).
    #[error("{message}")]
    ImagePull {
        /// The message kubelet shows (`failed to pull and unpack image "...": ...`).
        message: String,
    },
    /// The container could not be created from its config (CreateContainerError).
    #[error("{message}")]
    CreateContainer {
        /// What went wrong.
        message: String,
    },
    /// The container could not be started (RunContainerError / StartError).
    #[error("{message}")]
    StartContainer {
        /// What went wrong, e.g. `exec: "nope": executable file not found in $PATH`.
        message: String,
    },
    /// Anything else.
    #[error("{context}")]
    Internal {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Whether this is a NotFound.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

/// A runtime result.
pub type Result<T> = std::result::Result<T, Error>;

/// Labels the node agent puts on sandboxes and containers to find them again.
pub mod labels {
    /// The Pod's UID.
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    /// The Pod's name.
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    /// The Pod's namespace.
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    /// The container's name in the Pod spec.
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    /// How many times this container has been restarted before this instance.
    pub const CONTAINER_ATTEMPT: &str = "io.kubernetes.container.attempt";
}

/// What a Pod's sandbox needs.
#[derive(Clone, Debug, Default)]
pub struct SandboxConfig {
    /// The Pod's UID.
    pub pod_uid: String,
    /// The Pod's name.
    pub pod_name: String,
    /// The Pod's namespace.
    pub namespace: String,
    /// The hostname inside the sandbox (the Pod's name, or spec.hostname).
    pub hostname: String,
    /// Share the node's network namespace (`hostNetwork: true`).
    pub host_network: bool,
    /// The content of `/etc/hosts` for every container (kubelet's format).
    pub etc_hosts: String,
    /// The content of `/etc/resolv.conf`.
    pub resolv_conf: String,
    /// Where the containers' log files go (`.../pods/<ns>_<name>_<uid>/`).
    pub log_directory: PathBuf,
    /// The cgroup parent for the Pod (e.g. `/kubepods/besteffort/pod<uid>`).
    pub cgroup_parent: String,
    /// Labels that round-trip (see [`labels`]).
    pub labels: BTreeMap<String, String>,
}

/// A sandbox as the runtime sees it.
#[derive(Clone, Debug)]
pub struct SandboxStatus {
    /// The runtime's id.
    pub id: String,
    /// The UID of the Pod it was made for ([`SandboxConfig::pod_uid`]).
    pub pod_uid: String,
    /// Ready while its namespaces exist.
    pub ready: bool,
    /// The Pod's IP, unless host network.
    pub ip: Option<IpAddr>,
    /// When it was made.
    pub created_at: SystemTime,
    /// The labels it was made with.
    pub labels: BTreeMap<String, String>,
}

/// How a mount propagates (Kubernetes' mountPropagation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Propagation {
    /// rprivate
    #[default]
    Private,
    /// rslave (HostToContainer)
    HostToContainer,
    /// rshared (Bidirectional)
    Bidirectional,
}

/// A bind mount into a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The path on the node.
    pub host_path: PathBuf,
    /// The path in the container.
    pub container_path: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// Read-only all the way down: the mounts beneath it too (`recursiveReadOnly`).
    pub recursive_read_only: bool,
    /// Mount propagation.
    pub propagation: Propagation,
}

/// A container's security settings.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// uid to run as (default: the image's user).
    pub run_as_user: Option<u32>,
    /// gid to run as.
    pub run_as_group: Option<u32>,
    /// Supplemental groups (fsGroup and supplementalGroups).
    pub supplemental_groups: Vec<u32>,
    /// Refuse to run as uid 0.
    pub run_as_non_root: bool,
    /// All capabilities, all devices.
    pub privileged: bool,
    /// Capabilities added (`NET_ADMIN`, without the `CAP_` prefix).
    pub add_capabilities: Vec<String>,
    /// Capabilities dropped (`ALL` drops every one).
    pub drop_capabilities: Vec<String>,
    /// The root filesystem is read-only.
    pub read_only_root_filesystem: bool,
    /// `allowPrivilegeEscalation: false` sets no_new_privs.
    pub no_new_privileges: bool,
}

/// Resource limits, already converted from Kubernetes quantities.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    /// cgroup cpu.shares (from the CPU request).
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per period (from the CPU limit).
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds.
    pub cpu_period: Option<u64>,
    /// Memory limit in bytes.
    pub memory_limit: Option<i64>,
}

/// What a container needs.
#[derive(Clone, Debug, Default)]
pub struct ContainerConfig {
    /// The container's name in the Pod.
    pub name: String,
    /// The restart count this instance has (0 for the first).
    pub attempt: u32,
    /// The image id (digest) to run, as [`ImageService::pull`] returned it.
    pub image: String,
    /// Overrides the image's entrypoint when non-empty (Kubernetes' `command`).
    pub command: Vec<String>,
    /// Overrides the image's cmd when non-empty or when `command` is set (Kubernetes' `args`).
    pub args: Vec<String>,
    /// Environment, after the image's (these win).
    pub env: Vec<(String, String)>,
    /// Working directory (default: the image's).
    pub working_dir: Option<String>,
    /// Volume mounts and the node-provided files (/etc/hosts, termination log, ...).
    pub mounts: Vec<Mount>,
    /// Keep stdin open.
    pub stdin: bool,
    /// Close stdin after the first attach ends.
    pub stdin_once: bool,
    /// Allocate a terminal.
    pub tty: bool,
    /// Security settings.
    pub security: Security,
    /// Resource limits.
    pub resources: Resources,
    /// The log file, relative to the sandbox's log directory (`<name>/<attempt>.log`).
    pub log_path: PathBuf,
    /// Labels that round-trip (see [`labels`]).
    pub labels: BTreeMap<String, String>,
}

/// The state of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Its process runs.
    Running,
    /// Its process ended.
    Exited,
    /// The runtime cannot tell.
    Unknown,
}

/// A container as the runtime sees it.
#[derive(Clone, Debug)]
pub struct ContainerStatus {
    /// The runtime's id.
    pub id: String,
    /// Its sandbox's id.
    pub sandbox_id: String,
    /// Its state.
    pub state: ContainerState,
    /// The image reference it was made from.
    pub image: String,
    /// The image id (`docker.io/library/alpine@sha256:...`).
    pub image_id: String,
    /// When it was made.
    pub created_at: SystemTime,
    /// When its process started.
    pub started_at: Option<SystemTime>,
    /// When its process ended.
    pub finished_at: Option<SystemTime>,
    /// The exit code, once exited.
    pub exit_code: Option<i32>,
    /// `OOMKilled`, `Error`, `Completed`, ... once exited.
    pub reason: Option<String>,
    /// The termination message or runtime message.
    pub message: Option<String>,
    /// The absolute path of its log file.
    pub log_path: PathBuf,
    /// The labels it was made with.
    pub labels: BTreeMap<String, String>,
}

/// A command to run in a container (exec) or a connection to its main process (attach).
#[derive(Clone, Debug, Default)]
pub struct StreamRequest {
    /// The command (empty for attach).
    pub command: Vec<String>,
    /// Connect stdin.
    pub stdin: bool,
    /// Connect stdout.
    pub stdout: bool,
    /// Connect stderr (ignored with a tty: it is merged into stdout).
    pub stderr: bool,
    /// Allocate a terminal.
    pub tty: bool,
}

/// The streams of a running exec or attach. Dropping `stdin` closes the process's stdin.
pub struct StreamSession {
    /// Write end of the process's stdin.
    pub stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// Read end of the process's stdout (or the terminal).
    pub stdout: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// Read end of the process's stderr.
    pub stderr: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// Terminal size changes (columns, rows).
    pub resize: Option<tokio::sync::mpsc::Sender<(u16, u16)>>,
    /// Resolves to the exit code when the process ends (attach: when the stream ends).
    pub exit: BoxFuture<'static, Result<i32>>,
}

/// Runs Pod sandboxes and containers.
#[async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Makes a sandbox (namespaces, network, the Pod's files) and returns its id.
    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<String>;
    /// Stops every container of the sandbox and tears its network down. Missing is Ok.
    async fn stop_sandbox(&self, id: &str) -> Result<()>;
    /// Removes a stopped sandbox. Missing is Ok.
    async fn remove_sandbox(&self, id: &str) -> Result<()>;
    /// Every sandbox the runtime knows.
    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>>;
    /// The sandboxes made for one Pod and their containers: what a Pod's worker looks at on
    /// each pass. Runtimes with many Pods should answer it without reading every other Pod's
    /// state; this default filters the full lists.
    async fn list_pod(&self, pod_uid: &str) -> Result<(Vec<SandboxStatus>, Vec<ContainerStatus>)> {
        let sandboxes: Vec<SandboxStatus> = self
            .list_sandboxes()
            .await?
            .into_iter()
            .filter(|s| s.pod_uid == pod_uid)
            .collect();
        let containers = self
            .list_containers()
            .await?
            .into_iter()
            .filter(|c| sandboxes.iter().any(|s| s.id == c.sandbox_id))
            .collect();
        Ok((sandboxes, containers))
    }
    /// Makes a container in a sandbox and returns its id.
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox: &SandboxConfig,
    ) -> Result<String>;
    /// Starts a created container.
    async fn start_container(&self, id: &str) -> Result<()>;
    /// SIGTERM, then SIGKILL after `grace` (zero: at once). Already exited or missing is Ok.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()>;
    /// Removes an exited container (its log stays). Missing is Ok.
    async fn remove_container(&self, id: &str) -> Result<()>;
    /// One container's status.
    async fn container_status(&self, id: &str) -> Result<ContainerStatus>;
    /// Every container the runtime knows.
    async fn list_containers(&self) -> Result<Vec<ContainerStatus>>;
    /// Runs a command in a running container.
    async fn exec(&self, id: &str, request: &StreamRequest) -> Result<StreamSession>;
    /// Connects to a running container's main process.
    async fn attach(&self, id: &str, request: &StreamRequest) -> Result<StreamSession>;
}

/// Credentials for a registry.
#[derive(Clone, Debug)]
pub struct RegistryAuth {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

/// An image present on the node.
#[derive(Clone, Debug)]
pub struct Image {
    /// The image id: the digest of its config (`sha256:...`).
    pub id: String,
    /// The references that name it (`docker.io/library/alpine:latest`).
    pub tags: Vec<String>,
    /// `docker.io/library/alpine@sha256:<manifest digest>` (containerStatuses[].imageID).
    pub repo_digest: String,
    /// Its size on disk in bytes.
    pub size: u64,
}

/// Pulls and keeps images.
#[async_trait]
pub trait ImageService: Send + Sync + 'static {
    /// The image a reference names, if present (normalised as Docker does: `alpine` is
    /// `docker.io/library/alpine:latest`).
    async fn image_status(&self, reference: &str) -> Result<Option<Image>>;
    /// Pulls an image (or finds it already complete) and returns it.
    async fn pull(&self, reference: &str, auth: Option<&RegistryAuth>) -> Result<Image>;
    /// Every image.
    async fn list_images(&self) -> Result<Vec<Image>>;
    /// Removes an image by reference or id. Missing is Ok.
    async fn remove_image(&self, reference: &str) -> Result<()>;
}

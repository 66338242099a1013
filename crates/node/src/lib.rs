//! The node agent: our kubelet, a client of the API server like any other.
//!
//! Layout: [`Agent`] wires the parts and is where to start. [`node`] registers the Node, renews
//! its Lease and posts its status. [`manager`] watches the Pods bound to this node and runs one
//! [`worker`] per Pod UID; each worker plans with [`plan`] (pure: desired spec against the
//! runtime's actual state), acts through the `runtime` traits, sets up [`volumes`], resolves
//! [`env`], and writes the status [`status`] computes (pure) and the [`events`] kubelet would.
//! [`backoff`] holds crash-loop and image-pull delays; [`format`] Kubernetes times and Go
//! durations; [`fake`] an in-memory runtime and image service for tests. [`server`] is the
//! streaming server (logs, exec, attach, port-forward) the agent starts.

pub mod atomic_writer;
pub mod backoff;
pub mod env;
pub mod error;
pub mod events;
pub mod fake;
pub mod format;
pub mod manager;
pub mod node;
pub mod payload;
pub mod plan;
pub mod server;
pub mod status;
pub mod subpath;
pub mod volumes;
pub mod worker;

pub use error::{Error, Result};

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The streaming server to run beside the agent: a bound listener and its context.
pub struct Streaming {
    /// Where it listens; its port goes into the Node's `daemonEndpoints`.
    pub listener: tokio::net::TcpListener,
    /// What it serves from.
    pub context: Arc<server::Context>,
}

/// What the agent needs.
pub struct NodeConfig {
    /// The Node's name.
    pub name: String,
    /// Node state: `<root>/pods/<uid>/volumes/kubernetes.io~empty-dir/<vol>`, as kubelet's.
    pub root: PathBuf,
    /// Container logs: `<log_root>/<ns>_<name>_<uid>/<container>/<attempt>.log`.
    pub log_root: PathBuf,
    /// The API client.
    pub client: kube::Client,
    /// Runs the containers.
    pub runtime: Arc<dyn runtime::ContainerRuntime>,
    /// Pulls and keeps images.
    pub images: Arc<dyn runtime::ImageService>,
    /// The streaming server's port (Node `status.daemonEndpoints.kubeletEndpoint.Port`) when
    /// [`NodeConfig::streaming`] is not given.
    pub server_port: u16,
    /// How often a pod worker re-syncs without a reason (kubelet's syncFrequency).
    pub resync: Duration,
    /// `runc://<version>` for the Node's nodeInfo.
    pub runtime_version: String,
    /// The streaming server to start, if any.
    pub streaming: Option<Streaming>,
    /// Where Pods reach the API server (the `kubernetes` Service's address and port), given to
    /// every container as `KUBERNETES_SERVICE_HOST` and the rest of kubelet's service variables.
    pub api_service: Option<(String, u16)>,
}

impl NodeConfig {
    /// A config with kubelet's defaults: resync 10 s, port 10250, the version of the `runc`
    /// on PATH, no streaming server.
    pub fn new(
        name: impl Into<String>,
        root: impl Into<PathBuf>,
        log_root: impl Into<PathBuf>,
        client: kube::Client,
        runtime: Arc<dyn runtime::ContainerRuntime>,
        images: Arc<dyn runtime::ImageService>,
    ) -> NodeConfig {
        NodeConfig {
            name: name.into(),
            root: root.into(),
            log_root: log_root.into(),
            client,
            runtime,
            images,
            server_port: 10250,
            resync: Duration::from_secs(10),
            runtime_version: node::probe_runc_version("runc"),
            streaming: None,
            api_service: None,
        }
    }
}

/// The node agent.
pub struct Agent {
    config: NodeConfig,
    ready_tx: watch::Sender<bool>,
    ready_rx: watch::Receiver<bool>,
}

impl Agent {
    /// An agent for `config`; nothing runs until [`Agent::run`].
    pub fn new(config: NodeConfig) -> Agent {
        let (ready_tx, ready_rx) = watch::channel(false);
        Agent {
            config,
            ready_tx,
            ready_rx,
        }
    }

    /// Turns true once the Node has been registered with a Ready status.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready_rx.clone()
    }

    /// Runs the agent until `shutdown` is cancelled. Containers keep running after it
    /// returns: the next agent on the same root adopts them.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let NodeConfig {
            name,
            root,
            log_root,
            client,
            runtime,
            images,
            server_port,
            resync,
            runtime_version,
            streaming,
            api_service,
        } = self.config;
        std::fs::create_dir_all(root.join("pods"))
            .map_err(Error::io("create node state dir", &root))?;
        std::fs::create_dir_all(&log_root).map_err(Error::io("create log dir", &log_root))?;
        let stop = shutdown.child_token();
        let mut tasks = tokio::task::JoinSet::new();
        let port = match streaming {
            Some(s) => {
                let port = s
                    .listener
                    .local_addr()
                    .map(|a| a.port())
                    .unwrap_or(server_port);
                let stop = stop.clone();
                tasks.spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        res = server::serve(s.listener, s.context) => if let Err(e) = res {
                            tracing::error!("the node's streaming server failed: {e}");
                        }
                    }
                });
                port
            }
            None => server_port,
        };
        let info = node::NodeInfo::probe(&name, &root, &runtime_version, port);
        let allocatable_cpu = info.cpus.to_string();
        let allocatable_memory = format!("{}Ki", info.allocatable_memory_kib());
        tasks.spawn(node::heartbeat(
            client.clone(),
            info.clone(),
            images.clone(),
            self.ready_tx,
            stop.clone(),
        ));
        let (recorder, recorder_task) = events::Recorder::new(client.clone(), "kubelet", &name);
        let shared = Arc::new(worker::Shared {
            client,
            runtime,
            images,
            root,
            log_root,
            node_name: name,
            host_ip: info.ip.clone(),
            allocatable_cpu,
            allocatable_memory,
            service_env: api_service
                .map(|(ip, port)| env::kubernetes_service_env(&ip, port))
                .unwrap_or_default(),
            recorder,
            image_backoff: Mutex::new(backoff::Backoff::default()),
            resync,
        });
        tasks.spawn(manager::run(shared.clone(), stop.clone()));
        drop(shared);
        while tasks.join_next().await.is_some() {}
        // Every recorder clone is gone with the workers; the writer drains and ends.
        let _ = tokio::time::timeout(Duration::from_secs(2), recorder_task).await;
        Ok(())
    }
}

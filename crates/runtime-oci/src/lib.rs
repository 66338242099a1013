//! The runc implementation of [`runtime::ContainerRuntime`].
//!
//! Layout: [`OciRuntime`] (in `oci.rs`) is the driver the node agent holds: it makes Pod
//! sandboxes (`pause.rs`: a process of the shim's program holds the namespaces;
//! `network.rs`: a veth on the runtime's own bridge, file-based addresses), writes an OCI bundle per container (`spec.rs`, with
//! containerd's defaults), and starts each container through a shim (`shim.rs`: a small
//! program of its own, `crates/shim`, built into this crate) that holds its stdio, writes the
//! CRI log and records the exit, so containers outlive the agent. `exec.rs` runs commands in containers (`pty.rs` gives
//! them a terminal) and attaches to the shims. Everything is kept as JSON under one root
//! (`meta.rs`), so a new [`OciRuntime`] on the same root sees what the last one made. Root
//! filesystems come from a [`RootfsProvider`], which the image store implements. Start with
//! [`OciRuntime`].

mod error;
mod exec;
mod layers;
mod meta;
mod netlink;
mod network;
mod oci;
mod pause;
mod pty;
mod shim;
mod spec;

pub use error::{Error, Result};
pub use network::PodNetwork;
pub use oci::OciRuntime;

/// The label naming a container's terminationMessagePath (the key kubelet uses for its
/// annotation). When the node sets it and passes a [`runtime::Mount`] with that container
/// path, an exited container's [`runtime::ContainerStatus::message`] carries what the program
/// wrote to the mount's file on the node (its last 4096 bytes, as kubelet keeps).
pub const TERMINATION_MESSAGE_PATH_LABEL: &str = "io.kubernetes.container.terminationMessagePath";

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// The parts of an image's config that shape its containers' processes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// The image's Entrypoint.
    pub entrypoint: Vec<String>,
    /// The image's Cmd.
    pub cmd: Vec<String>,
    /// The image's Env, `NAME=value`.
    pub env: Vec<String>,
    /// The image's WorkingDir.
    pub working_dir: Option<String>,
    /// The image's User (`uid`, `uid:gid`, `name`, `name:group`).
    pub user: Option<String>,
}

/// Where root filesystems come from: the image store implements this.
pub trait RootfsProvider: Send + Sync {
    /// The config of an image, by the id [`runtime::ContainerConfig::image`] carries.
    fn image_config(&self, image_id: &str) -> runtime::Result<ImageConfig>;
    /// The image's unpacked layer directories, lowest first. The runtime mounts them
    /// read-only as overlayfs lower layers, under a writable layer of its own per container.
    fn layers(&self, image_id: &str) -> runtime::Result<Vec<PathBuf>>;
}

/// How [`OciRuntime`] runs.
#[derive(Clone)]
pub struct OciConfig {
    /// Everything the runtime keeps lives under here.
    pub root: PathBuf,
    /// The OCI runtime binary (runc's command line); default `runc` on PATH.
    pub runc: PathBuf,
    /// Root filesystems.
    pub rootfs: Arc<dyn RootfsProvider>,
    /// The Pod network.
    pub network: PodNetwork,
    /// A log file rotates when it would grow past this (kubelet's default 10 MiB).
    pub log_max_bytes: u64,
    /// Log files kept per container, the live one included (kubelet's default 5).
    pub log_max_files: usize,
}

impl OciConfig {
    /// A config with the defaults: runc from PATH, a Pod network of the root's own ([`PodNetwork::for_root`]), 10 MiB x 5 log files.
    pub fn new(root: impl Into<PathBuf>, rootfs: Arc<dyn RootfsProvider>) -> OciConfig {
        let root = root.into();
        OciConfig {
            network: PodNetwork::for_root(&root),
            root,
            runc: PathBuf::from("runc"),
            rootfs,
            log_max_bytes: 10 * 1024 * 1024,
            log_max_files: 5,
        }
    }
}

impl std::fmt::Debug for OciConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciConfig")
            .field("root", &self.root)
            .field("runc", &self.runc)
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

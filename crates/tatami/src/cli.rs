//! The command line: arguments only, no behaviour.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// A Kubernetes-compatible cluster in one binary.
#[derive(Parser, Debug)]
#[command(name = "tatami", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the cluster in the foreground (API server, controllers, node agent).
    Up(UpArgs),
    /// Stop a running `tatami up` on the data dir.
    Down(DataDirArgs),
    /// Stop the cluster and delete its data dir.
    Reset(DataDirArgs),
    /// Print the path of the kubeconfig.
    Kubeconfig(DataDirArgs),
    /// A shell, or one command, on a node (like `minikube ssh`).
    Ssh(SshArgs),
    /// Manage the node's images.
    Image(ImageArgs),
    /// Every volume of the Pods on the node: where it lives, its size, who mounts it.
    Volumes(VolumesArgs),
}

/// Arguments of `tatami volumes`.
#[derive(Args, Debug)]
pub struct VolumesArgs {
    /// The data directory.
    #[command(flatten)]
    pub data: DataDirArgs,
    /// `table` (the default) or `json`.
    #[arg(short, long)]
    pub output: Option<String>,
}

/// Arguments of `tatami image`.
#[derive(Args, Debug)]
pub struct ImageArgs {
    /// The data directory.
    #[command(flatten)]
    pub data: DataDirArgs,
    /// Registries, as for `tatami up`.
    #[command(flatten)]
    pub registries: RegistryArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// The image subcommands.
#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Import an OCI archive or a `docker save` tar.
    Import {
        /// The archive.
        file: PathBuf,
    },
    /// Make an image of one layer from a directory or tar (like `docker import`).
    ImportRootfs {
        /// The directory or tar.
        source: PathBuf,
        /// The image's name, NAME[:TAG].
        #[arg(long)]
        name: String,
    },
    /// List the images.
    Ls,
    /// Pull an image.
    Pull {
        /// The reference (`alpine` is `docker.io/library/alpine:latest`).
        reference: String,
    },
    /// Remove an image.
    Rm {
        /// The reference or id.
        reference: String,
    },
}

/// Where images come from.
#[derive(Args, Debug, Clone, Default)]
pub struct RegistryArgs {
    /// Pull images of HOST from URL instead (repeatable).
    #[arg(long, value_name = "HOST=URL")]
    pub registry_mirror: Vec<String>,
    /// Allow plain HTTP for HOST (repeatable).
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
}

/// Arguments of `tatami ssh`.
#[derive(Args, Debug)]
pub struct SshArgs {
    /// The data directory.
    #[command(flatten)]
    pub data: DataDirArgs,
    /// The node (default: the only one).
    pub node: Option<String>,
    /// The command to run instead of a shell.
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// Where the cluster keeps its state.
#[derive(Args, Debug, Clone)]
pub struct DataDirArgs {
    /// The data directory (default /var/lib/tatami for root, else $XDG_DATA_HOME/tatami).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Arguments of `tatami up`.
#[derive(Args, Debug)]
pub struct UpArgs {
    /// The data directory.
    #[command(flatten)]
    pub data: DataDirArgs,
    /// The API server's port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    pub port: u16,
    /// The node's name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The datastore: sqlite://PATH (default DIR/state.db).
    #[arg(long, value_name = "URL")]
    pub datastore: Option<String>,
    /// Where images come from.
    #[command(flatten)]
    pub registries: RegistryArgs,
}

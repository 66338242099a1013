//! The data directory and the files in it.

use anyhow::Context;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The data directory of a cluster.
pub struct DataDir(pub PathBuf);

impl DataDir {
    /// The directory given, or the default: `/var/lib/tatami` for root, else `$XDG_DATA_HOME/tatami`.
    pub fn resolve(given: Option<&Path>) -> anyhow::Result<DataDir> {
        if let Some(p) = given {
            return Ok(DataDir(p.to_path_buf()));
        }
        if nix::unistd::geteuid().is_root() {
            return Ok(DataDir(PathBuf::from("/var/lib/tatami")));
        }
        let base = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            Some(x) => PathBuf::from(x),
            None => PathBuf::from(
                std::env::var_os("HOME").context("neither XDG_DATA_HOME nor HOME is set")?,
            )
            .join(".local/share"),
        };
        Ok(DataDir(base.join("tatami")))
    }

    /// Creates the directory (mode 0700) if needed.
    pub fn create(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.0)
            .with_context(|| format!("cannot create data dir {}", self.0.display()))?;
        std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set the mode of {}", self.0.display()))
    }

    /// The kubeconfig `up` writes.
    pub fn kubeconfig(&self) -> PathBuf {
        self.0.join("kubeconfig")
    }

    /// The file holding the pid of the running `up`.
    pub fn pid_file(&self) -> PathBuf {
        self.0.join("tatami.pid")
    }

    /// The certificates.
    pub fn pki(&self) -> PathBuf {
        self.0.join("pki")
    }

    /// The node agent's state (pod directories and volumes).
    pub fn node(&self) -> PathBuf {
        self.0.join("node")
    }

    /// Container logs.
    pub fn logs(&self) -> PathBuf {
        self.0.join("logs")
    }

    /// The container runtime's state (bundles, shims, runc's root).
    pub fn runtime(&self) -> PathBuf {
        self.0.join("runtime")
    }

    /// The name of the node `up` runs.
    pub fn node_name(&self) -> PathBuf {
        self.0.join("node-name")
    }

    /// The node's images.
    pub fn images(&self) -> PathBuf {
        self.0.join("images")
    }

    /// The default SQLite store.
    pub fn state_db(&self) -> PathBuf {
        self.0.join("state.db")
    }
}

//! What the runtime keeps on disk about sandboxes and containers, so a new process on the
//! same root sees what the last one made.
//!
//! Layout under the root:
//! - `sandboxes/<id>/sandbox.json` (with the pid of the process holding the namespaces),
//!   `hosts`, `resolv.conf`, `hostname`, `shm/` (a tmpfs shared by the Pod's containers)
//! - `containers/<id>/container.json`, `config.json` (the OCI bundle), `rootfs/` (where runc
//!   mounts the overlay, inside the container's mount namespace), `upper/`, `work/`, `runc.log`, `shim.log`, `start.json` and `exit.json` (written by the shim)
//! - `ipam/<address>` one file per address in use, holding the sandbox id
//! - `runc/` runc's own state (`runc --root`)

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A sandbox as written to `sandbox.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SandboxMeta {
    pub id: String,
    pub pod_uid: String,
    pub pod_name: String,
    pub namespace: String,
    pub hostname: String,
    pub host_network: bool,
    pub log_directory: PathBuf,
    pub cgroup_parent: String,
    pub labels: BTreeMap<String, String>,
    /// Nanoseconds since the epoch.
    pub created_at: u128,
    pub ip: Option<IpAddr>,
    /// The host end of the Pod's veth pair.
    pub veth: Option<String>,
    /// The process holding the namespaces; none before they are made.
    #[serde(default)]
    pub holder: Option<crate::pause::Holder>,
    /// False once stopped.
    pub ready: bool,
}

/// A container as written to `container.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ContainerMeta {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub attempt: u32,
    pub image: String,
    pub created_at: u128,
    /// Absolute.
    pub log_path: PathBuf,
    pub labels: BTreeMap<String, String>,
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
    /// The cgroup path given to runc, relative to each hierarchy's root.
    pub cgroups_path: String,
    /// The node's file mounted at the container's terminationMessagePath, if the node named
    /// one (see [`crate::TERMINATION_MESSAGE_PATH_LABEL`]). Absent in files from before it.
    #[serde(default)]
    pub termination_message: Option<PathBuf>,
}

/// Written by the shim once the container's process runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StartRecord {
    /// The container's init process, in the node's pid namespace.
    pub pid: i32,
    pub started_at: u128,
    /// Field 22 of `/proc/<pid>/stat`, to tell a reused pid from ours.
    pub pid_start_time: u64,
    /// The shim's own pid.
    pub shim_pid: i32,
}

/// Written by the shim (or the agent, if the shim is gone) when the process has ended.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ExitRecord {
    pub exit_code: i32,
    pub finished_at: u128,
    /// `OOMKilled`, `StartError`, or none (then `Completed` or `Error` by the code).
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// Nanoseconds since the epoch now.
pub(crate) fn now_nanos() -> u128 {
    to_nanos(SystemTime::now())
}

/// A time as nanoseconds since the epoch.
pub(crate) fn to_nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Nanoseconds since the epoch as a time.
pub(crate) fn from_nanos(n: u128) -> SystemTime {
    let secs = (n / 1_000_000_000) as u64;
    let nanos = (n % 1_000_000_000) as u32;
    UNIX_EPOCH + Duration::new(secs, nanos)
}

/// Reads a JSON file that may not exist yet.
pub(crate) fn read_json_opt<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::Json {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path)(e)),
    }
}

/// Writes a JSON file atomically (temp file, then rename), so a reader never sees half of it
/// and a crash leaves the old version or the new one.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &bytes)
}

/// Writes a file atomically.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(Error::io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::io("rename", path))
}

/// Creates a directory and its parents.
pub(crate) fn mkdir_all(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(Error::io("create directory", path))
}

/// The names of the entries of a directory, or none if it does not exist.
pub(crate) fn list_dir(path: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read directory", path)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(Error::io("read directory", path))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// A new random id: 64 hex digits, as container ids are on Kubernetes nodes.
pub(crate) fn new_id() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Field 22 (start time in clock ticks) of `/proc/<pid>/stat`, if the process exists.
pub(crate) fn pid_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields after the last ')'
    // are plain. Field 3 is the first after it, so field 22 is the 20th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let state = rest.split_whitespace().next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process recorded with this start time still runs.
pub(crate) fn process_alive(pid: i32, start_time: u64) -> bool {
    pid > 0 && pid_start_time(pid) == Some(start_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos_round_trip() {
        let t = SystemTime::now();
        assert_eq!(from_nanos(to_nanos(t)), t);
    }

    #[test]
    fn own_process_is_alive() {
        let pid = std::process::id() as i32;
        let start = pid_start_time(pid).expect("own stat is readable");
        assert!(process_alive(pid, start));
        assert!(!process_alive(pid, start + 1));
    }

    #[test]
    fn ids_are_64_hex() {
        let id = new_id();
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }
}

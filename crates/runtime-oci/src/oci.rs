//! [`OciRuntime`]: sandboxes, bundles and containers driven through runc and the shim.

use crate::OciConfig;
use crate::error::{Error, Result, error_chain};
use crate::layers;
use crate::meta::{self, ContainerMeta, ExitRecord, SandboxMeta, StartRecord};
use crate::network;
use crate::pause::Holder;
use crate::shim;
use crate::spec::{self, Rootfs, SandboxPaths, SpecInput};
use async_trait::async_trait;
use nix::mount::MsFlags;
use runtime::{
    ContainerConfig, ContainerRuntime, ContainerState, ContainerStatus, Propagation, SandboxConfig,
    SandboxStatus, StreamRequest, StreamSession,
};
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

/// The runc runtime. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct OciRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: OciConfig,
    /// Which sandboxes each Pod has and which containers each sandbox has; `None` until first
    /// used, then built from the files and kept in step by every create and remove.
    index: std::sync::Mutex<Option<Index>>,
    /// The installed shim program.
    shim: PathBuf,
    /// Bridge creation and teardown (writers) against Pods being attached and detached
    /// (readers, many at once).
    net_lock: std::sync::RwLock<()>,
}

impl std::fmt::Debug for OciRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciRuntime")
            .field("config", &self.inner.cfg)
            .finish()
    }
}

impl OciRuntime {
    /// A runtime keeping everything under `config.root` (made if missing). What an earlier
    /// runtime on the same root made is found again: sandboxes, containers and their shims.
    pub fn new(mut config: OciConfig) -> Result<OciRuntime> {
        config.runc = shim::resolve_program(&config.runc);
        let inner = Inner {
            index: std::sync::Mutex::new(None),
            shim: shim::install(&config.root)?,
            cfg: config,
            net_lock: std::sync::RwLock::new(()),
        };
        for dir in [
            inner.sandboxes(),
            inner.containers(),
            inner.ipam(),
            inner.runc_root(),
        ] {
            meta::mkdir_all(&dir)?;
        }
        Ok(OciRuntime {
            inner: Arc::new(inner),
        })
    }

    /// The root everything lives under.
    pub fn root(&self) -> &Path {
        &self.inner.cfg.root
    }

    /// The Pod network's gateway: the node's address on the bridge, where Pods reach it.
    pub fn pod_gateway(&self) -> std::net::Ipv4Addr {
        self.inner.cfg.network.gateway
    }

    /// Makes the Pod network's bridge, with the gateway address, if it is not there.
    pub fn ensure_pod_network(&self) -> runtime::Result<()> {
        Ok(self.inner.ensure_bridge()?)
    }

    /// For `tatami down`: kills every container, removes every sandbox and container (log
    /// files stay), unmounts everything the runtime mounted, and removes the bridge. Goes on
    /// past failures and returns the first.
    pub async fn shutdown_all(&self) -> runtime::Result<()> {
        self.blocking(|inner| inner.shutdown_all()).await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> runtime::Result<T> {
        let inner = self.inner.clone();
        match tokio::task::spawn_blocking(move || f(&inner)).await {
            Ok(r) => r.map_err(runtime::Error::from),
            Err(e) => Err(runtime::Error::Internal {
                context: "runtime task".into(),
                source: Box::new(e),
            }),
        }
    }
}

/// Sandbox ids by Pod UID and container ids by sandbox id.
#[derive(Default)]
struct Index {
    sandboxes: HashMap<String, BTreeSet<String>>,
    containers: HashMap<String, BTreeSet<String>>,
}

impl Index {
    fn add_sandbox(&mut self, pod_uid: &str, id: &str) {
        self.sandboxes
            .entry(pod_uid.to_string())
            .or_default()
            .insert(id.to_string());
    }

    fn add_container(&mut self, sandbox_id: &str, id: &str) {
        self.containers
            .entry(sandbox_id.to_string())
            .or_default()
            .insert(id.to_string());
    }

    fn sandboxes_of(&self, pod_uid: &str) -> Vec<String> {
        self.sandboxes
            .get(pod_uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn containers_of(&self, sandbox_id: &str) -> Vec<String> {
        self.containers
            .get(sandbox_id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets a sandbox or container.
    fn remove(&mut self, id: &str) {
        for map in [&mut self.sandboxes, &mut self.containers] {
            map.remove(id);
            map.retain(|_, ids| {
                ids.remove(id);
                !ids.is_empty()
            });
        }
    }
}

/// Whether a runc error says the container is gone or already stopped.
fn runc_gone(e: &Error) -> bool {
    match e {
        Error::Command { message, .. } => {
            message.contains("does not exist")
                || message.contains("not running")
                || message.contains("container not found")
                || message.contains("process already finished")
        }
        _ => false,
    }
}

impl Inner {
    /// Makes the bridge if it is missing, alone: no Pod is attached to a half-made bridge.
    fn ensure_bridge(&self) -> Result<()> {
        if network::bridge_exists(&self.cfg.network) {
            return Ok(());
        }
        let _guard = self.net_lock.write().unwrap_or_else(|p| p.into_inner());
        network::ensure_bridge(&self.cfg.network)
    }

    fn sandboxes(&self) -> PathBuf {
        self.cfg.root.join("sandboxes")
    }
    fn containers(&self) -> PathBuf {
        self.cfg.root.join("containers")
    }
    fn ipam(&self) -> PathBuf {
        self.cfg.root.join("ipam")
    }
    fn runc_root(&self) -> PathBuf {
        self.cfg.root.join("runc")
    }
    fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.sandboxes().join(id)
    }
    fn container_dir(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }

    fn runc(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new(&self.cfg.runc);
        cmd.arg("--root").arg(self.runc_root()).args(args);
        network::run(&mut cmd, None)
    }

    /// Ids are ours, so a path made from one never leaves its directory.
    fn check_id(id: &str) -> bool {
        !id.is_empty()
            && id.len() <= 128
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    /// Runs `f` on the index, built from the files first if this is its first use.
    fn with_index<T>(&self, f: impl FnOnce(&mut Index) -> T) -> Result<T> {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        if index.is_none() {
            let mut built = Index::default();
            for id in meta::list_dir(&self.sandboxes())? {
                if let Ok(Some(m)) = self.load_sandbox(&id) {
                    built.add_sandbox(&m.pod_uid, &id);
                }
            }
            for id in meta::list_dir(&self.containers())? {
                if let Ok(Some(m)) = self.load_container(&id) {
                    built.add_container(&m.sandbox_id, &id);
                }
            }
            *index = Some(built);
        }
        Ok(f(index.as_mut().expect("just built")))
    }

    fn load_sandbox(&self, id: &str) -> Result<Option<SandboxMeta>> {
        if !Self::check_id(id) {
            return Ok(None);
        }
        meta::read_json_opt(&self.sandbox_dir(id).join("sandbox.json"))
    }

    fn load_container(&self, id: &str) -> Result<Option<ContainerMeta>> {
        if !Self::check_id(id) {
            return Ok(None);
        }
        meta::read_json_opt(&self.container_dir(id).join("container.json"))
    }

    // ---- sandboxes ----

    fn run_sandbox(&self, cfg: &SandboxConfig) -> Result<String> {
        let id = meta::new_id();
        let dir = self.sandbox_dir(&id);
        meta::mkdir_all(&dir)?;
        match self.setup_sandbox(&id, &dir, cfg) {
            Ok(()) => Ok(id),
            Err(e) => {
                if let Err(cleanup) = self.remove_sandbox(&id) {
                    tracing::warn!(sandbox = %id, error = %error_chain(&cleanup), "cleaning up a failed sandbox");
                }
                Err(e)
            }
        }
    }

    fn setup_sandbox(&self, id: &str, dir: &Path, cfg: &SandboxConfig) -> Result<()> {
        let hostname = if cfg.host_network {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".to_string())
        } else if !cfg.hostname.is_empty() {
            cfg.hostname.clone()
        } else {
            cfg.pod_name.clone()
        };
        let mut m = SandboxMeta {
            id: id.to_string(),
            pod_uid: cfg.pod_uid.clone(),
            pod_name: cfg.pod_name.clone(),
            namespace: cfg.namespace.clone(),
            hostname: hostname.clone(),
            host_network: cfg.host_network,
            log_directory: cfg.log_directory.clone(),
            cgroup_parent: cfg.cgroup_parent.clone(),
            labels: cfg.labels.clone(),
            created_at: meta::now_nanos(),
            ip: None,
            veth: None,
            holder: None,
            ready: false,
        };
        // Written first, so a failure half-way leaves something `remove_sandbox` can undo.
        meta::write_json(&dir.join("sandbox.json"), &m)?;
        self.with_index(|ix| ix.add_sandbox(&m.pod_uid, id))?;
        let hosts = if cfg.etc_hosts.is_empty() {
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_string()
        } else {
            cfg.etc_hosts.clone()
        };
        meta::write_atomic(&dir.join("hosts"), hosts.as_bytes())?;
        meta::write_atomic(&dir.join("resolv.conf"), cfg.resolv_conf.as_bytes())?;
        meta::write_atomic(&dir.join("hostname"), format!("{hostname}\n").as_bytes())?;
        // One /dev/shm per Pod, as containerd gives (the containers share IPC too).
        let shm = dir.join("shm");
        meta::mkdir_all(&shm)?;
        nix::mount::mount(
            Some("shm"),
            &shm,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=1777,size=65536k"),
        )
        .map_err(Error::sys(format!("mount tmpfs on {}", shm.display())))?;
        // Each thing to undo is in the file before the next step: a failure is undone from it.
        if !cfg.host_network {
            let ip = network::allocate_ip(&self.ipam(), &self.cfg.network, id)?;
            m.ip = Some(IpAddr::V4(ip));
            m.veth = Some(network::veth_name(id));
            meta::write_json(&dir.join("sandbox.json"), &m)?;
        }
        let holder = Holder::start(&self.shim, cfg.host_network, &hostname)?;
        m.holder = Some(holder.clone());
        meta::write_json(&dir.join("sandbox.json"), &m)?;
        if let (Some(IpAddr::V4(ip)), Some(veth)) = (m.ip, &m.veth) {
            self.ensure_bridge()?;
            let _guard = self.net_lock.read().unwrap_or_else(|p| p.into_inner());
            network::attach_pod(&holder.ns("net"), veth, ip, &self.cfg.network)?;
        }
        m.ready = true;
        meta::write_json(&dir.join("sandbox.json"), &m)
    }

    fn containers_of(&self, sandbox_id: &str) -> Result<Vec<ContainerMeta>> {
        let ids = self.with_index(|ix| ix.containers_of(sandbox_id))?;
        let mut out = Vec::new();
        for id in ids {
            if let Ok(Some(c)) = self.load_container(&id)
                && c.sandbox_id == sandbox_id
            {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// A Pod's sandboxes and their containers, reading only their own files.
    fn list_pod(&self, pod_uid: &str) -> Result<(Vec<SandboxStatus>, Vec<ContainerStatus>)> {
        let ids = self.with_index(|ix| ix.sandboxes_of(pod_uid))?;
        let (mut sandboxes, mut containers) = (Vec::new(), Vec::new());
        for id in ids {
            let Some(m) = self.load_sandbox(&id)? else {
                continue;
            };
            sandboxes.push(self.sandbox_status(&m));
            for c in self.containers_of(&id)? {
                containers.push(self.status_of(&c)?);
            }
        }
        Ok((sandboxes, containers))
    }

    fn stop_sandbox(&self, id: &str) -> Result<()> {
        let Some(mut m) = self.load_sandbox(id)? else {
            return Ok(());
        };
        let mut first: Option<Error> = None;
        for c in self.containers_of(id)? {
            if let Err(e) = self.stop_container(&c.id, Duration::ZERO) {
                first.get_or_insert(e);
            }
        }
        if let Some(veth) = &m.veth {
            let _guard = self.net_lock.read().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = network::detach_pod(veth) {
                first.get_or_insert(e);
            }
        }
        if let Some(IpAddr::V4(ip)) = m.ip
            && let Err(e) = network::release_ip(&self.ipam(), ip, id)
        {
            first.get_or_insert(e);
        }
        let dir = self.sandbox_dir(id);
        if let Some(holder) = &m.holder
            && let Err(e) = holder.stop()
        {
            first.get_or_insert(e);
        }
        if m.ready {
            m.ready = false;
            meta::write_json(&dir.join("sandbox.json"), &m)?;
        }
        first.map_or(Ok(()), Err)
    }

    fn remove_sandbox(&self, id: &str) -> Result<()> {
        let Some(m) = self.load_sandbox(id)? else {
            return Ok(());
        };
        self.stop_sandbox(id)?;
        for c in self.containers_of(id)? {
            self.remove_container(&c.id)?;
        }
        let dir = self.sandbox_dir(id);
        network::unmount_quiet(&dir.join("shm"))?;
        remove_cgroup_dirs(&m.cgroup_parent);
        if is_mount_point(&dir.join("shm")) {
            return Err(Error::InvalidConfig(format!(
                "{} is still mounted",
                dir.join("shm").display()
            )));
        }
        std::fs::remove_dir_all(&dir).map_err(Error::io("remove", &dir))?;
        self.with_index(|ix| ix.remove(id))
    }

    fn sandbox_status(&self, m: &SandboxMeta) -> SandboxStatus {
        SandboxStatus {
            id: m.id.clone(),
            pod_uid: m.pod_uid.clone(),
            ready: m.ready && m.holder.as_ref().is_some_and(Holder::alive),
            ip: m.ip,
            created_at: meta::from_nanos(m.created_at),
            labels: m.labels.clone(),
        }
    }

    fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>> {
        let mut out = Vec::new();
        for id in meta::list_dir(&self.sandboxes())? {
            match self.load_sandbox(&id) {
                Ok(Some(m)) => out.push(self.sandbox_status(&m)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(sandbox = %id, error = %error_chain(&e), "unreadable sandbox")
                }
            }
        }
        Ok(out)
    }

    // ---- containers ----

    fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox: &SandboxConfig,
    ) -> Result<String> {
        let sb = self
            .load_sandbox(sandbox_id)?
            .ok_or_else(|| Error::NotFound {
                what: "sandbox",
                id: sandbox_id.to_string(),
            })?;
        let Some(holder) = sb.holder.clone().filter(|h| sb.ready && h.alive()) else {
            return Err(Error::InvalidConfig(format!(
                "sandbox {sandbox_id} is not ready"
            )));
        };
        if config
            .mounts
            .iter()
            .any(|m| m.propagation != Propagation::Private)
        {
            let table = std::fs::read_to_string("/proc/self/mountinfo")
                .map_err(Error::io("read", Path::new("/proc/self/mountinfo")))?;
            spec::check_propagation(&config.mounts, &table)?;
        }
        let image = self
            .cfg
            .rootfs
            .image_config(&config.image)
            .map_err(Error::Rootfs)?;
        let layers = self
            .cfg
            .rootfs
            .layers(&config.image)
            .map_err(Error::Rootfs)?;
        if layers.is_empty() {
            return Err(Error::InvalidConfig(format!(
                "image {} has no layers",
                config.image
            )));
        }
        let id = meta::new_id();
        let dir = self.container_dir(&id);
        match self.setup_container(&id, &dir, &sb, &holder, config, sandbox, &image, &layers) {
            Ok(()) => Ok(id),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn setup_container(
        &self,
        id: &str,
        dir: &Path,
        sb: &SandboxMeta,
        holder: &Holder,
        config: &ContainerConfig,
        sandbox: &SandboxConfig,
        image: &crate::ImageConfig,
        layers: &[PathBuf],
    ) -> Result<()> {
        let rootfs = dir.join("rootfs");
        let upper = dir.join("upper");
        let work = dir.join("work");
        for d in [&rootfs, &upper, &work] {
            meta::mkdir_all(d)?;
        }
        let etc_file = |name: &str| layers::read_image_file(layers, Path::new(name));
        let user = spec::resolve_user(
            &config.security,
            image.user.as_deref(),
            &etc_file("etc/passwd").unwrap_or_default(),
            &etc_file("etc/group").unwrap_or_default(),
        )?;
        let parent = if sb.cgroup_parent.is_empty() {
            "/tatami"
        } else {
            sb.cgroup_parent.as_str()
        };
        let cgroups_path = format!("/{}/{id}", parent.trim_matches('/'));
        let paths = SandboxPaths {
            dir: self.sandbox_dir(&sb.id),
            netns: (!sb.host_network).then(|| holder.ns("net")),
            ipcns: holder.ns("ipc"),
            utsns: (!sb.host_network).then(|| holder.ns("uts")),
            hostname: sb.hostname.clone(),
        };
        let input = SpecInput {
            config,
            image,
            rootfs: &Rootfs {
                dir: &rootfs,
                layers,
                upper: &upper,
                work: &work,
            },
            sandbox: &paths,
            cgroups_path: &cgroups_path,
            user,
        };
        let spec = spec::build_spec(&input, spec::bounding_set())?;
        spec.save(dir.join("config.json"))
            .map_err(|source| Error::Spec { source })?;

        let log_dir = if sb.log_directory.as_os_str().is_empty() {
            &sandbox.log_directory
        } else {
            &sb.log_directory
        };
        let log_path = if config.log_path.is_absolute() {
            config.log_path.clone()
        } else if config.log_path.as_os_str().is_empty() {
            log_dir
                .join(&config.name)
                .join(format!("{}.log", config.attempt))
        } else {
            log_dir.join(&config.log_path)
        };
        if let Some(parent) = log_path.parent() {
            meta::mkdir_all(parent)?;
        }
        let m = ContainerMeta {
            id: id.to_string(),
            sandbox_id: sb.id.clone(),
            name: config.name.clone(),
            attempt: config.attempt,
            image: config.image.clone(),
            created_at: meta::now_nanos(),
            log_path,
            labels: config.labels.clone(),
            stdin: config.stdin,
            stdin_once: config.stdin_once,
            tty: config.tty,
            cgroups_path,
            termination_message: termination_message_file(config),
        };
        meta::write_json(&dir.join("container.json"), &m)?;
        self.with_index(|ix| ix.add_container(&m.sandbox_id, &m.id))
    }

    fn records(&self, id: &str) -> Result<(Option<StartRecord>, Option<ExitRecord>)> {
        let dir = self.container_dir(id);
        let mut exit: Option<ExitRecord> = meta::read_json_opt(&dir.join("exit.json"))?;
        // The shim records a failed start; runc's own words are in its log.
        if let Some(e) = exit.as_mut()
            && e.reason.as_deref() == Some("StartError")
            && e.message.is_none()
        {
            e.message = shim::runc_error(&dir.join("runc.log"));
        }
        Ok((meta::read_json_opt(&dir.join("start.json"))?, exit))
    }

    /// Waits until the shim has recorded the exit, or the process is gone without a shim to
    /// record it (then the agent records it). Returns whether it exited in time.
    fn wait_exit(&self, id: &str, start: &StartRecord, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let exit_path = self.container_dir(id).join("exit.json");
        let mut gone_since: Option<Instant> = None;
        loop {
            if exit_path.exists() {
                return Ok(true);
            }
            if !meta::process_alive(start.pid, start.pid_start_time) {
                let since = *gone_since.get_or_insert_with(Instant::now);
                let shim_alive = meta::pid_start_time(start.shim_pid).is_some();
                // The shim writes the record right after the reap; give it a moment.
                if !shim_alive || since.elapsed() > Duration::from_secs(3) {
                    let record = ExitRecord {
                        exit_code: 137,
                        finished_at: meta::now_nanos(),
                        reason: Some("Error".into()),
                        message: Some("the container's monitor was gone when it ended".into()),
                    };
                    if !exit_path.exists() {
                        meta::write_json(&exit_path, &record)?;
                    }
                    return Ok(true);
                }
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        if self.load_container(id)?.is_none() {
            return Ok(());
        }
        let (start, exit) = self.records(id)?;
        let (Some(start), None) = (start, exit) else {
            return Ok(());
        };
        if !grace.is_zero() {
            match self.runc(&["kill", id, "TERM"]) {
                Ok(_) => {}
                Err(e) if runc_gone(&e) => {}
                Err(e) => return Err(e),
            }
            if self.wait_exit(id, &start, grace)? {
                return Ok(());
            }
        }
        match self.runc(&["kill", id, "KILL"]) {
            Ok(_) => {}
            Err(e) if runc_gone(&e) => {}
            Err(e) => return Err(e),
        }
        if self.wait_exit(id, &start, Duration::from_secs(10))? {
            Ok(())
        } else {
            Err(Error::Command {
                command: format!("runc kill {id} KILL"),
                message: "the container did not exit".into(),
            })
        }
    }

    fn remove_container(&self, id: &str) -> Result<()> {
        if self.load_container(id)?.is_none() {
            // A directory without metadata is the leftover of a failed create.
            let dir = self.container_dir(id);
            if Self::check_id(id) && dir.exists() {
                remove_container_dir(&dir)?;
            }
            return Ok(());
        }
        self.stop_container(id, Duration::ZERO)?;
        if self.runc_root().join(id).exists() {
            match self.runc(&["delete", "--force", id]) {
                Ok(_) => {}
                Err(e) if runc_gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
        remove_container_dir(&self.container_dir(id))?;
        self.with_index(|ix| ix.remove(id))
    }

    fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let m = self.load_container(id)?.ok_or_else(|| Error::NotFound {
            what: "container",
            id: id.to_string(),
        })?;
        self.status_of(&m)
    }

    fn status_of(&self, m: &ContainerMeta) -> Result<ContainerStatus> {
        let (start, exit) = self.records(&m.id)?;
        let mut status = ContainerStatus {
            id: m.id.clone(),
            sandbox_id: m.sandbox_id.clone(),
            state: ContainerState::Created,
            image: m.image.clone(),
            image_id: m.image.clone(),
            created_at: meta::from_nanos(m.created_at),
            started_at: start.as_ref().map(|s| meta::from_nanos(s.started_at)),
            finished_at: None,
            exit_code: None,
            reason: None,
            message: None,
            log_path: m.log_path.clone(),
            labels: m.labels.clone(),
        };
        let exit = match (exit, &start) {
            (Some(e), _) => Some(e),
            (None, Some(s)) if !meta::process_alive(s.pid, s.pid_start_time) => {
                // Gone, but not recorded yet: the shim is about to, or was killed.
                let exit_path = self.container_dir(&m.id).join("exit.json");
                if meta::pid_start_time(s.shim_pid).is_some() {
                    std::thread::sleep(Duration::from_millis(50));
                }
                meta::read_json_opt::<ExitRecord>(&exit_path)?.or(Some(ExitRecord {
                    exit_code: 255,
                    finished_at: meta::now_nanos(),
                    reason: Some("Error".into()),
                    message: Some("the container's monitor was gone when it ended".into()),
                }))
            }
            (None, Some(_)) => {
                status.state = ContainerState::Running;
                None
            }
            (None, None) => None,
        };
        if let Some(e) = exit {
            status.state = ContainerState::Exited;
            status.finished_at = Some(meta::from_nanos(e.finished_at));
            status.exit_code = Some(e.exit_code);
            status.reason = Some(e.reason.unwrap_or_else(|| {
                if e.exit_code == 0 {
                    "Completed".into()
                } else {
                    "Error".into()
                }
            }));
            status.message = e.message;
            // As kubelet does: what the program wrote is appended to the runtime's words.
            if let Some(text) = m
                .termination_message
                .as_deref()
                .and_then(read_termination_message)
            {
                status.message = Some(match status.message.take() {
                    Some(runtime_message) if !runtime_message.is_empty() => {
                        format!("{runtime_message}: {text}")
                    }
                    _ => text,
                });
            }
        }
        Ok(status)
    }

    fn list_containers(&self) -> Result<Vec<ContainerStatus>> {
        let mut out = Vec::new();
        for id in meta::list_dir(&self.containers())? {
            match self.load_container(&id) {
                Ok(Some(m)) => out.push(self.status_of(&m)?),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(container = %id, error = %error_chain(&e), "unreadable container")
                }
            }
        }
        Ok(out)
    }

    fn shutdown_all(&self) -> Result<()> {
        let mut first: Option<Error> = None;
        for id in meta::list_dir(&self.sandboxes())? {
            if let Err(e) = self.remove_sandbox(&id) {
                tracing::warn!(sandbox = %id, error = %error_chain(&e), "removing a sandbox on shutdown");
                first.get_or_insert(e);
            }
        }
        for id in meta::list_dir(&self.containers())? {
            if let Err(e) = self.remove_container(&id) {
                first.get_or_insert(e);
            }
        }
        // Anything runc still knows under our root (a container whose metadata was lost).
        if let Ok(out) = self.runc(&["list", "--quiet"]) {
            for id in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let _ = self.runc(&["delete", "--force", id]);
            }
        }
        let _guard = self.net_lock.write().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = network::remove_bridge(&self.cfg.network) {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }
}

/// The node's file behind the container's terminationMessagePath: the mount whose container
/// path the label names.
fn termination_message_file(config: &ContainerConfig) -> Option<PathBuf> {
    let path = config.labels.get(crate::TERMINATION_MESSAGE_PATH_LABEL)?;
    config
        .mounts
        .iter()
        .find(|m| m.container_path == *path)
        .map(|m| m.host_path.clone())
}

/// Kubelet's limit for a termination message (MaxContainerTerminationMessageLength).
const TERMINATION_MESSAGE_MAX: u64 = 4096;

/// The last 4096 bytes of the termination message file (kubelet keeps the tail too), or None
/// when it is missing or empty.
fn read_termination_message(path: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TERMINATION_MESSAGE_MAX)))
        .ok()?;
    let mut bytes = Vec::new();
    file.take(TERMINATION_MESSAGE_MAX)
        .read_to_end(&mut bytes)
        .ok()?;
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
}

/// Removes a container's directory. Earlier versions mounted the overlay on the node, at
/// `rootfs`: such a mount is detached first, and nothing is deleted through one still there.
fn remove_container_dir(dir: &Path) -> Result<()> {
    let rootfs = dir.join("rootfs");
    network::unmount_quiet(&rootfs)?;
    if is_mount_point(&rootfs) {
        return Err(Error::InvalidConfig(format!(
            "{} is still mounted",
            rootfs.display()
        )));
    }
    std::fs::remove_dir_all(dir).map_err(Error::io("remove", dir))
}

/// Whether something is mounted at `path` (its device differs from its parent's). Not the
/// kind of filesystem: the data directory may itself be on a tmpfs or an overlay.
fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::symlink_metadata(path),
        path.parent().map(std::fs::symlink_metadata),
    ) {
        (Ok(me), Some(Ok(parent))) => me.dev() != parent.dev(),
        _ => false,
    }
}

/// Removes a Pod's cgroup directory in every hierarchy (only empty ones can go; runc removed
/// the containers' own). Best effort.
fn remove_cgroup_dirs(parent: &str) {
    let rel = parent.trim_matches('/');
    if rel.is_empty() || rel.split('/').any(|c| c == "..") {
        return;
    }
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut roots: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    for root in roots {
        let _ = std::fs::remove_dir(root.join(rel));
    }
}

#[async_trait]
impl ContainerRuntime for OciRuntime {
    async fn run_sandbox(&self, config: &SandboxConfig) -> runtime::Result<String> {
        let config = config.clone();
        self.blocking(move |i| i.run_sandbox(&config)).await
    }

    async fn stop_sandbox(&self, id: &str) -> runtime::Result<()> {
        let id = id.to_string();
        self.blocking(move |i| i.stop_sandbox(&id)).await
    }

    async fn remove_sandbox(&self, id: &str) -> runtime::Result<()> {
        let id = id.to_string();
        self.blocking(move |i| i.remove_sandbox(&id)).await
    }

    async fn list_sandboxes(&self) -> runtime::Result<Vec<SandboxStatus>> {
        self.blocking(|i| i.list_sandboxes()).await
    }

    async fn list_pod(
        &self,
        pod_uid: &str,
    ) -> runtime::Result<(Vec<SandboxStatus>, Vec<ContainerStatus>)> {
        let uid = pod_uid.to_string();
        self.blocking(move |i| i.list_pod(&uid)).await
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox: &SandboxConfig,
    ) -> runtime::Result<String> {
        let (sandbox_id, config, sandbox) =
            (sandbox_id.to_string(), config.clone(), sandbox.clone());
        self.blocking(move |i| i.create_container(&sandbox_id, &config, &sandbox))
            .await
    }

    async fn start_container(&self, id: &str) -> runtime::Result<()> {
        let id_owned = id.to_string();
        let (m, cdir, args) = self
            .blocking(move |i| {
                let m = i
                    .load_container(&id_owned)?
                    .ok_or_else(|| Error::NotFound {
                        what: "container",
                        id: id_owned.clone(),
                    })?;
                let dir = i.container_dir(&id_owned);
                if dir.join("start.json").exists() || dir.join("exit.json").exists() {
                    return Err(Error::Start(format!(
                        "container {id_owned} was already started"
                    )));
                }
                let args = shim::args(
                    &dir,
                    &i.cfg.runc,
                    &i.runc_root(),
                    &m,
                    i.cfg.log_max_bytes,
                    i.cfg.log_max_files,
                );
                Ok((m, dir, args))
            })
            .await?;
        let shim_log = cdir.join("shim.log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&shim_log)
            .map_err(|e| runtime::Error::from(Error::io("open", &shim_log)(e)))?;
        let mut child = tokio::process::Command::new(&self.inner.shim)
            .args(&args)
            .current_dir("/")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| runtime::Error::from(Error::io("run shim", &self.inner.shim)(e)))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let mut reader = tokio::io::BufReader::new(out);
            let _ = reader.read_line(&mut line).await;
        }
        // The first shim process exits right after its fork.
        let _ = child.wait().await;
        let line = line.trim();
        if line.starts_with("started ") {
            return Ok(());
        }
        let message = match line.strip_prefix("error ") {
            Some(m) => shim::runc_error(&cdir.join("runc.log")).unwrap_or_else(|| m.to_string()),
            None => {
                let log = std::fs::read_to_string(&shim_log).unwrap_or_default();
                format!(
                    "the shim of container {} exited without starting it: {}",
                    m.id,
                    log.trim()
                )
            }
        };
        // What a failed `runc run` left behind.
        let id = m.id.clone();
        let _ = self
            .blocking(move |i| i.runc(&["delete", "--force", &id]).map(drop))
            .await;
        Err(runtime::Error::StartContainer { message })
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> runtime::Result<()> {
        let id = id.to_string();
        self.blocking(move |i| i.stop_container(&id, grace)).await
    }

    async fn remove_container(&self, id: &str) -> runtime::Result<()> {
        let id = id.to_string();
        self.blocking(move |i| i.remove_container(&id)).await
    }

    async fn container_status(&self, id: &str) -> runtime::Result<ContainerStatus> {
        let id = id.to_string();
        self.blocking(move |i| i.container_status(&id)).await
    }

    async fn list_containers(&self) -> runtime::Result<Vec<ContainerStatus>> {
        self.blocking(|i| i.list_containers()).await
    }

    async fn exec(&self, id: &str, request: &StreamRequest) -> runtime::Result<StreamSession> {
        crate::exec::exec(self, id, request).await
    }

    async fn attach(&self, id: &str, request: &StreamRequest) -> runtime::Result<StreamSession> {
        crate::exec::attach(self, id, request).await
    }
}

impl OciRuntime {
    /// The container's directory, if it is known and running.
    pub(crate) async fn running_dir(&self, id: &str) -> runtime::Result<(PathBuf, bool)> {
        let id = id.to_string();
        self.blocking(move |i| {
            let m = i.load_container(&id)?.ok_or_else(|| Error::NotFound {
                what: "container",
                id: id.clone(),
            })?;
            let st = i.status_of(&m)?;
            if st.state != ContainerState::Running {
                return Err(Error::Start(format!("container {id} is not running")));
            }
            Ok((i.container_dir(&id), m.tty))
        })
        .await
    }

    pub(crate) fn runc_command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.inner.cfg.runc);
        cmd.arg("--root").arg(self.inner.runc_root());
        cmd
    }
}

//! An in-memory container runtime and image service for tests of the agent and of anything
//! else that drives the `runtime` traits.
//!
//! [`FakeRuntime`] keeps sandboxes and containers in a map, records every call, and lets a
//! test script what containers do: run until stopped (the default), exit at once with a code,
//! or fail to start. [`FakeImages`] holds a set of images and can be told to fail pulls.

use async_trait::async_trait;
use runtime::{
    ContainerConfig, ContainerRuntime, ContainerState, ContainerStatus, Error, Image, ImageService,
    RegistryAuth, Result, SandboxConfig, SandboxStatus, StreamRequest, StreamSession,
};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// What a fake container does once started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Runs until stopped (stop gives exit code 143 as SIGTERM would).
    Run,
    /// Exits at once with this code.
    Exit(i32),
    /// Fails to start with this message.
    FailStart(String),
}

/// One recorded call on the fake runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// `run_sandbox` for a pod UID.
    RunSandbox(String),
    /// `stop_sandbox`.
    StopSandbox(String),
    /// `remove_sandbox`.
    RemoveSandbox(String),
    /// `create_container` with the container's name and attempt.
    CreateContainer(String, u32),
    /// `start_container`.
    StartContainer(String),
    /// `stop_container` with its grace period.
    StopContainer(String, Duration),
    /// `remove_container`.
    RemoveContainer(String),
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    sandboxes: BTreeMap<String, SandboxStatus>,
    containers: BTreeMap<String, ContainerStatus>,
    configs: HashMap<String, ContainerConfig>,
    behaviours: HashMap<String, Behaviour>,
    calls: Vec<Call>,
}

/// An in-memory [`ContainerRuntime`].
#[derive(Default)]
pub struct FakeRuntime {
    inner: Mutex<Inner>,
}

impl FakeRuntime {
    /// An empty runtime.
    pub fn new() -> FakeRuntime {
        FakeRuntime::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock has failed already; keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets what containers named `name` do when started from now on.
    pub fn set_behaviour(&self, name: &str, behaviour: Behaviour) {
        self.lock().behaviours.insert(name.to_string(), behaviour);
    }

    /// Makes a running container exit with `code` (as if its process ended).
    pub fn exit(&self, id: &str, code: i32) {
        let mut inner = self.lock();
        if let Some(c) = inner.containers.get_mut(id)
            && c.state == ContainerState::Running
        {
            finish(c, code);
        }
    }

    /// Every call made so far.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The config a container was created with.
    pub fn config(&self, id: &str) -> Option<ContainerConfig> {
        self.lock().configs.get(id).cloned()
    }

    /// The containers named `name`, oldest first.
    pub fn containers_named(&self, name: &str) -> Vec<ContainerStatus> {
        let inner = self.lock();
        let mut v: Vec<_> = inner
            .containers
            .values()
            .filter(|c| {
                c.labels
                    .get(runtime::labels::CONTAINER_NAME)
                    .map(String::as_str)
                    == Some(name)
            })
            .cloned()
            .collect();
        v.sort_by_key(|c| c.created_at);
        v
    }

    /// Every container, as `list_containers` would return them.
    pub fn list_containers_now(&self) -> Vec<ContainerStatus> {
        self.lock().containers.values().cloned().collect()
    }

    /// Adds a sandbox as if an earlier agent had made it (for adoption tests).
    pub fn insert_sandbox(&self, status: SandboxStatus) {
        self.lock().sandboxes.insert(status.id.clone(), status);
    }

    /// Adds a container as if an earlier agent had made it (for adoption tests).
    pub fn insert_container(&self, status: ContainerStatus) {
        self.lock().containers.insert(status.id.clone(), status);
    }
}

fn finish(c: &mut ContainerStatus, code: i32) {
    c.state = ContainerState::Exited;
    c.exit_code = Some(code);
    c.finished_at = Some(SystemTime::now());
    c.reason = Some(if code == 0 { "Completed" } else { "Error" }.to_string());
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<String> {
        let mut inner = self.lock();
        inner.next_id += 1;
        let n = inner.next_id;
        let id = format!("sb{n:04}");
        inner.calls.push(Call::RunSandbox(config.pod_uid.clone()));
        let ip = if config.host_network {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            IpAddr::V4(Ipv4Addr::new(
                10,
                88,
                0,
                u8::try_from(n % 250 + 2).unwrap_or(2),
            ))
        };
        inner.sandboxes.insert(
            id.clone(),
            SandboxStatus {
                id: id.clone(),
                pod_uid: config.pod_uid.clone(),
                ready: true,
                ip: Some(ip),
                created_at: SystemTime::now(),
                labels: config.labels.clone(),
            },
        );
        Ok(id)
    }

    async fn stop_sandbox(&self, id: &str) -> Result<()> {
        let mut inner = self.lock();
        inner.calls.push(Call::StopSandbox(id.to_string()));
        for c in inner.containers.values_mut() {
            if c.sandbox_id == id && c.state == ContainerState::Running {
                finish(c, 137);
            }
        }
        if let Some(s) = inner.sandboxes.get_mut(id) {
            s.ready = false;
        }
        Ok(())
    }

    async fn remove_sandbox(&self, id: &str) -> Result<()> {
        let mut inner = self.lock();
        inner.calls.push(Call::RemoveSandbox(id.to_string()));
        inner.sandboxes.remove(id);
        inner.containers.retain(|_, c| c.sandbox_id != id);
        Ok(())
    }

    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>> {
        Ok(self.lock().sandboxes.values().cloned().collect())
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox: &SandboxConfig,
    ) -> Result<String> {
        let mut inner = self.lock();
        if !inner.sandboxes.contains_key(sandbox_id) {
            return Err(Error::NotFound {
                what: "sandbox",
                id: sandbox_id.to_string(),
            });
        }
        inner.next_id += 1;
        let id = format!("{:064x}", inner.next_id);
        inner
            .calls
            .push(Call::CreateContainer(config.name.clone(), config.attempt));
        inner.configs.insert(id.clone(), config.clone());
        inner.containers.insert(
            id.clone(),
            ContainerStatus {
                id: id.clone(),
                sandbox_id: sandbox_id.to_string(),
                state: ContainerState::Created,
                image: config.image.clone(),
                image_id: config.image.clone(),
                created_at: SystemTime::now(),
                started_at: None,
                finished_at: None,
                exit_code: None,
                reason: None,
                message: None,
                log_path: sandbox.log_directory.join(&config.log_path),
                labels: config.labels.clone(),
            },
        );
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let mut inner = self.lock();
        inner.calls.push(Call::StartContainer(id.to_string()));
        let name = inner
            .containers
            .get(id)
            .and_then(|c| c.labels.get(runtime::labels::CONTAINER_NAME).cloned())
            .ok_or_else(|| Error::NotFound {
                what: "container",
                id: id.to_string(),
            })?;
        let behaviour = inner
            .behaviours
            .get(&name)
            .cloned()
            .unwrap_or(Behaviour::Run);
        let Some(c) = inner.containers.get_mut(id) else {
            return Err(Error::NotFound {
                what: "container",
                id: id.to_string(),
            });
        };
        c.started_at = Some(SystemTime::now());
        c.state = ContainerState::Running;
        match behaviour {
            Behaviour::Run => Ok(()),
            Behaviour::Exit(code) => {
                finish(c, code);
                Ok(())
            }
            Behaviour::FailStart(message) => {
                finish(c, 128);
                c.reason = Some("StartError".to_string());
                c.message = Some(message.clone());
                Err(Error::StartContainer { message })
            }
        }
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let mut inner = self.lock();
        inner.calls.push(Call::StopContainer(id.to_string(), grace));
        if let Some(c) = inner.containers.get_mut(id)
            && c.state == ContainerState::Running
        {
            finish(c, if grace.is_zero() { 137 } else { 143 });
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut inner = self.lock();
        inner.calls.push(Call::RemoveContainer(id.to_string()));
        inner.containers.remove(id);
        Ok(())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        self.lock()
            .containers
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                what: "container",
                id: id.to_string(),
            })
    }

    async fn list_containers(&self) -> Result<Vec<ContainerStatus>> {
        Ok(self.lock().containers.values().cloned().collect())
    }

    async fn exec(&self, id: &str, _request: &StreamRequest) -> Result<StreamSession> {
        Err(Error::NotFound {
            what: "container",
            id: id.to_string(),
        })
    }

    async fn attach(&self, id: &str, _request: &StreamRequest) -> Result<StreamSession> {
        Err(Error::NotFound {
            what: "container",
            id: id.to_string(),
        })
    }
}

/// Docker's normalisation of a short reference: `alpine` is `docker.io/library/alpine:latest`.
pub fn normalise(reference: &str) -> String {
    let (name, tag) = match reference.rsplit_once('@') {
        Some((n, d)) => (n.to_string(), format!("@{d}")),
        None => {
            let slash = reference.rfind('/').map_or(0, |i| i + 1);
            match reference[slash..].rfind(':') {
                Some(i) => (
                    reference[..slash + i].to_string(),
                    reference[slash + i..].to_string(),
                ),
                None => (reference.to_string(), ":latest".to_string()),
            }
        }
    };
    let first = name.split('/').next().unwrap_or_default();
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_registry {
        name
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    format!("{full}{tag}")
}

#[derive(Default)]
struct ImagesInner {
    images: BTreeMap<String, Image>,
    failures: HashMap<String, String>,
    pulls: Vec<String>,
    known: HashMap<String, u64>,
}

/// An in-memory [`ImageService`]: pulls of known references succeed, others fail as a
/// registry's "not found" would, unless a failure message was set.
#[derive(Default)]
pub struct FakeImages {
    inner: Mutex<ImagesInner>,
}

impl FakeImages {
    /// A service where every reference can be pulled.
    pub fn new() -> FakeImages {
        FakeImages::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ImagesInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes pulls of `reference` fail with `message`.
    pub fn fail_pulls(&self, reference: &str, message: &str) {
        self.lock()
            .failures
            .insert(normalise(reference), message.to_string());
    }

    /// Makes `reference` present, as if imported.
    pub fn insert(&self, reference: &str, size: u64) {
        let image = make_image(reference, size);
        self.lock().images.insert(normalise(reference), image);
    }

    /// References pulled so far, normalised.
    pub fn pulls(&self) -> Vec<String> {
        self.lock().pulls.clone()
    }
}

fn make_image(reference: &str, size: u64) -> Image {
    let full = normalise(reference);
    let repo = full
        .rsplit_once(':')
        .filter(|(r, _)| !r.ends_with('/'))
        .map_or(full.clone(), |(r, _)| r.to_string());
    let digest = format!("{:064x}", full.len() as u64 * 7919 + size);
    Image {
        id: format!("sha256:{digest}"),
        tags: vec![full.clone()],
        repo_digest: format!("{repo}@sha256:{digest}"),
        size,
    }
}

#[async_trait]
impl ImageService for FakeImages {
    async fn image_status(&self, reference: &str) -> Result<Option<Image>> {
        Ok(self.lock().images.get(&normalise(reference)).cloned())
    }

    async fn pull(&self, reference: &str, _auth: Option<&RegistryAuth>) -> Result<Image> {
        let full = normalise(reference);
        let mut inner = self.lock();
        inner.pulls.push(full.clone());
        if let Some(message) = inner.failures.get(&full) {
            return Err(Error::ImagePull {
                message: message.clone(),
            });
        }
        let size = inner.known.get(&full).copied().unwrap_or(3_623_807);
        let image = make_image(reference, size);
        inner.images.insert(full, image.clone());
        Ok(image)
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        Ok(self.lock().images.values().cloned().collect())
    }

    async fn remove_image(&self, reference: &str) -> Result<()> {
        self.lock().images.remove(&normalise(reference));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn docker_normalisation() {
        assert_eq!(normalise("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(normalise("alpine:3.20"), "docker.io/library/alpine:3.20");
        assert_eq!(normalise("me/app"), "docker.io/me/app:latest");
        assert_eq!(
            normalise("127.0.0.1:5000/busybox"),
            "127.0.0.1:5000/busybox:latest"
        );
        assert_eq!(normalise("localhost/x:1"), "localhost/x:1");
    }
}

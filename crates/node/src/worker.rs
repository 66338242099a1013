//! One pod worker per Pod UID (STYLE 2.2; kubelet `pod_workers.go`): a task that owns
//! everything the agent does for that Pod. Its mailbox is a `watch` channel, so updates
//! merge and the latest spec wins; it also wakes on a notify (the runtime's relist saw a
//! change), on its own timers (back-off expiry) and on the resync period.
//!
//! Each wake-up is level-triggered: read the runtime's state for the UID, plan with
//! [`crate::plan::compute_pod_actions`], act, then compute the status and write it only when
//! it differs from what the API holds. A Pod marked for deletion is terminated (SIGTERM,
//! grace, SIGKILL), its sandbox and volumes removed, and only then is the API object deleted;
//! the worker then ends and its UID is never started again.

use crate::backoff::{self, Backoff};
use crate::env::{self, EnvContext};
use crate::events::{EventType, Recorder};
use crate::format;
use crate::payload::{self, Sources};
use crate::plan::{self, ActualPod, PodActions, Start};
use crate::status::{self, ImageRef, StatusInput, Waiting};
use crate::volumes;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodStatus, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use runtime::{ContainerConfig, ContainerState, Resources, SandboxConfig, Security, labels};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// What the agent shares with every worker.
pub struct Shared {
    /// The API client.
    pub client: kube::Client,
    /// The container runtime.
    pub runtime: Arc<dyn runtime::ContainerRuntime>,
    /// The image service.
    pub images: Arc<dyn runtime::ImageService>,
    /// Node state root (`<root>/pods/<uid>/...`).
    pub root: PathBuf,
    /// Container logs root (`<log_root>/<ns>_<name>_<uid>/...`).
    pub log_root: PathBuf,
    /// This node's name.
    pub node_name: String,
    /// This node's IP.
    pub host_ip: String,
    /// Allocatable CPU and memory (defaults for unset limits in the downward API).
    pub allocatable_cpu: String,
    /// Allocatable memory.
    pub allocatable_memory: String,
    /// The `kubernetes` Service's variables every container gets.
    pub service_env: Vec<(String, String)>,
    /// Events as `kubelet`.
    pub recorder: Recorder,
    /// Image pull back-off by `<uid>_<image>`, shared as kubelet's image manager's is.
    pub image_backoff: Mutex<Backoff>,
    /// How often a worker re-syncs without a reason.
    pub resync: Duration,
}

/// What the API says about the Pod.
#[derive(Clone, Debug)]
pub enum Desired {
    /// The Pod exists (it may be marked for deletion).
    Live(Arc<Pod>),
    /// The Pod's object is gone (force-deleted, or deleted while we were not watching).
    Gone(Arc<Pod>),
}

/// Handles a worker's owner keeps.
pub struct WorkerHandle {
    /// The mailbox.
    pub tx: watch::Sender<Desired>,
    /// Pokes the worker to re-sync now.
    pub wake: Arc<Notify>,
    /// The task.
    pub task: tokio::task::JoinHandle<()>,
}

/// kubelet's minimum grace period for a graceful stop.
const MIN_GRACE: Duration = Duration::from_secs(2);

/// The worker of one Pod UID.
pub struct PodWorker {
    shared: Arc<Shared>,
    uid: String,
    rx: watch::Receiver<Desired>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
    waiting: HashMap<String, Waiting>,
    images: HashMap<String, ImageRef>,
    last_pull_error: HashMap<String, String>,
    crash: Backoff,
    /// Failed volume set-ups by volume name: each is tried again only when its back-off ends.
    mounts: Backoff,
    /// The volumes whose last set-up failed and that were never set up: they hold the containers.
    unmounted: BTreeSet<String>,
    written: Option<PodStatus>,
    /// Service account tokens already fetched, with when to fetch them again.
    tokens: HashMap<payload::TokenRequest, (String, Instant)>,
    /// Why the node evicted the Pod, once it has.
    evicted: Option<String>,
    /// When this worker first saw the Pod (kubelet's `kubernetes.io/config.seen`).
    seen: String,
}

/// Starts a worker for `pod` and returns its handle.
pub fn spawn(shared: Arc<Shared>, pod: Desired, shutdown: CancellationToken) -> WorkerHandle {
    let uid = match &pod {
        Desired::Live(p) | Desired::Gone(p) => p.metadata.uid.clone().unwrap_or_default(),
    };
    let (tx, rx) = watch::channel(pod);
    let wake = Arc::new(Notify::new());
    let worker = PodWorker {
        shared,
        uid,
        rx,
        wake: wake.clone(),
        shutdown,
        waiting: HashMap::new(),
        images: HashMap::new(),
        last_pull_error: HashMap::new(),
        crash: Backoff::default(),
        mounts: Backoff::new(backoff::VOLUME_INITIAL, backoff::VOLUME_MAX),
        unmounted: BTreeSet::new(),
        written: None,
        tokens: HashMap::new(),
        evicted: None,
        seen: jiff::Timestamp::now().to_string(),
    };
    let task = tokio::spawn(worker.run());
    WorkerHandle { tx, wake, task }
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

/// The image to run, or why the container waits and when to look again.
type ImageCheck = Result<runtime::Image, (Waiting, Duration)>;

/// The container a planned start names.
fn container_of(pod: &Pod, start: &Start) -> Option<Container> {
    let spec = pod.spec.as_ref()?;
    let list = if start.init {
        spec.init_containers.as_deref().unwrap_or_default()
    } else {
        &spec.containers
    };
    list.get(start.index).cloned()
}

fn field_path(init: bool, name: &str) -> String {
    if init {
        format!("spec.initContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    }
}

/// The pull policy, defaulted as the API does when it is missing.
fn pull_policy(c: &Container) -> String {
    if let Some(p) = c.image_pull_policy.as_deref().filter(|p| !p.is_empty()) {
        return p.to_string();
    }
    let image = c.image.as_deref().unwrap_or("");
    let last = image.rsplit('/').next().unwrap_or("");
    if image.contains('@') {
        "IfNotPresent".into()
    } else if !last.contains(':') || last.ends_with(":latest") {
        "Always".into()
    } else {
        "IfNotPresent".into()
    }
}

/// kubelet's managed /etc/hosts.
pub fn hosts_file(pod: &Pod, ip: Option<&str>) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let spec = pod.spec.clone().unwrap_or_default();
    let hostname = hostname_of(pod);
    if let Some(ip) = ip {
        match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                s.push_str(&format!(
                    "{ip}\t{hostname}.{sub}.{ns}.svc.cluster.local\t{hostname}\n"
                ));
            }
            None => s.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    let aliases = spec.host_aliases.unwrap_or_default();
    if !aliases.is_empty() {
        s.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            s.push_str(&format!(
                "{}\t{}\n",
                a.ip,
                a.hostnames.unwrap_or_default().join("\t")
            ));
        }
    }
    s
}

fn hostname_of(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    let name = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    // A hostname is at most 63 characters; kubelet truncates (and drops a trailing - or .).
    let mut h: String = name.chars().take(63).collect();
    while h.ends_with(['-', '.']) {
        h.pop();
    }
    h
}

fn qos_dir(pod: &Pod) -> &'static str {
    match pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) {
        Some("Guaranteed") => "",
        Some("Burstable") => "burstable/",
        _ => "besteffort/",
    }
}

fn milli(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> Option<i128> {
    api::strategy::quantity::Quantity::parse(&q?.0).map(|q| q.0 / 1_000_000)
}

/// The runtime's resources from the container's requests and limits (kubelet's
/// `MilliCPUToShares`, `MilliCPUToQuota`).
pub fn resources(c: &Container) -> Resources {
    let r = c.resources.clone().unwrap_or_default();
    let limits = r.limits.unwrap_or_default();
    let requests = r.requests.unwrap_or_default();
    let cpu_request = milli(requests.get("cpu")).or_else(|| milli(limits.get("cpu")));
    let cpu_limit = milli(limits.get("cpu"));
    let memory = api::strategy::quantity::Quantity::parse(
        &limits
            .get("memory")
            .map(|q| q.0.clone())
            .unwrap_or_default(),
    )
    .map(|q| i64::try_from(q.0 / 1_000_000_000).unwrap_or(i64::MAX));
    Resources {
        cpu_shares: Some(
            cpu_request.map_or(2, |m| u64::try_from((m * 1024 / 1000).max(2)).unwrap_or(2)),
        ),
        cpu_quota: cpu_limit.map(|m| i64::try_from((m * 100).max(1000)).unwrap_or(i64::MAX)),
        cpu_period: cpu_limit.map(|_| 100_000),
        memory_limit: memory,
    }
}

/// The runtime's security settings from the container's and Pod's securityContext.
pub fn security(pod: &Pod, c: &Container) -> Security {
    let psc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let to_u32 = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
    let mut groups: Vec<u32> = psc
        .supplemental_groups
        .iter()
        .flatten()
        .filter_map(|g| u32::try_from(*g).ok())
        .collect();
    if let Some(fs) = to_u32(psc.fs_group) {
        groups.push(fs);
    }
    let caps = sc.capabilities.clone().unwrap_or_default();
    Security {
        run_as_user: to_u32(sc.run_as_user.or(psc.run_as_user)),
        run_as_group: to_u32(sc.run_as_group.or(psc.run_as_group)),
        supplemental_groups: groups,
        run_as_non_root: sc.run_as_non_root.or(psc.run_as_non_root).unwrap_or(false),
        privileged: sc.privileged.unwrap_or(false),
        add_capabilities: caps.add.unwrap_or_default(),
        drop_capabilities: caps.drop.unwrap_or_default(),
        read_only_root_filesystem: sc.read_only_root_filesystem.unwrap_or(false),
        no_new_privileges: sc.allow_privilege_escalation == Some(false),
    }
}

/// What happened to one container start.
enum Outcome {
    /// It runs (or ran and exited at once).
    Started,
    /// It waits; try again after this long.
    Waiting(Duration),
}

impl PodWorker {
    fn pod_labels(pod: &Pod) -> BTreeMap<String, String> {
        [
            (
                labels::POD_UID.to_string(),
                pod.metadata.uid.clone().unwrap_or_default(),
            ),
            (
                labels::POD_NAME.to_string(),
                pod.metadata.name.clone().unwrap_or_default(),
            ),
            (
                labels::POD_NAMESPACE.to_string(),
                pod.metadata.namespace.clone().unwrap_or_default(),
            ),
        ]
        .into()
    }

    fn log_dir(&self, pod: &Pod) -> PathBuf {
        self.shared.log_root.join(format!(
            "{}_{}_{}",
            pod.metadata.namespace.as_deref().unwrap_or(""),
            pod.metadata.name.as_deref().unwrap_or(""),
            self.uid
        ))
    }

    fn sandbox_config(&self, pod: &Pod, ip: Option<&str>) -> SandboxConfig {
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let etc_hosts = if host_network {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            hosts_file(pod, ip)
        };
        SandboxConfig {
            pod_uid: self.uid.clone(),
            pod_name: pod.metadata.name.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            hostname: hostname_of(pod),
            host_network,
            etc_hosts,
            resolv_conf: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            log_directory: self.log_dir(pod),
            cgroup_parent: format!("/kubepods/{}pod{}", qos_dir(pod), self.uid),
            labels: Self::pod_labels(pod),
        }
    }

    async fn run(mut self) {
        loop {
            let desired = self.rx.borrow_and_update().clone();
            let next = match desired {
                Desired::Live(pod) if pod.metadata.deletion_timestamp.is_none() => {
                    self.sync(&pod).await
                }
                Desired::Live(pod) => {
                    let grace = pod
                        .metadata
                        .deletion_grace_period_seconds
                        .or_else(|| {
                            pod.spec
                                .as_ref()
                                .and_then(|s| s.termination_grace_period_seconds)
                        })
                        .unwrap_or(30);
                    if self.terminate(&pod, grace).await {
                        self.delete_object(&pod).await;
                        return;
                    }
                    Duration::from_secs(1)
                }
                Desired::Gone(pod) => {
                    let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
                    if self.terminate(&pod, grace).await {
                        return;
                    }
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                changed = self.rx.changed() => if changed.is_err() {
                    // The owner dropped the mailbox: the agent is stopping.
                    return;
                },
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(next) => {}
            }
        }
    }

    async fn actual(&self) -> Option<ActualPod> {
        match self.shared.runtime.list_pod(&self.uid).await {
            Ok((s, c)) => Some(ActualPod::of(&self.uid, &s, &c)),
            Err(e) => {
                tracing::warn!(uid = %self.uid, "cannot list the runtime's state: {e}");
                None
            }
        }
    }

    /// One level-triggered pass for a live Pod; returns when to look again.
    async fn sync(&mut self, pod: &Pod) -> Duration {
        tracing::debug!(uid = %self.uid, "sync");
        let mut next = self.shared.resync;
        let recorder = self.shared.recorder.clone();
        let (held, retry) = self.mount_volumes(pod).await;
        if let Some(retry) = retry {
            next = next.min(retry);
        }
        // No container starts before every volume is set up; one that was set up before and
        // failed to update keeps serving the running containers.
        if held {
            if let Some(actual) = self.actual().await {
                self.write_status(pod, &actual).await;
            }
            return next;
        }
        let Some(mut actual) = self.actual().await else {
            return Duration::from_secs(1);
        };
        if self.evicted.is_none()
            && !pod_terminal(pod)
            && let Some(message) = volumes::empty_dir_over_limit(&self.shared.root, pod)
        {
            // kubelet's eviction manager: the Pod fails, its containers go with grace 0 and
            // its volumes after them.
            recorder.record(pod, None, EventType::Warning, "Evicted", message.clone());
            self.evicted = Some(message);
            self.kill_all(pod, &actual, Duration::ZERO, true).await;
            if let Some(a) = self.actual().await {
                actual = a;
            }
            self.write_status(pod, &actual).await;
            if let Err(e) = volumes::teardown_volumes(&self.shared.root, &self.uid) {
                tracing::warn!(uid = %self.uid, "cannot remove volumes: {e}");
            }
            return next;
        }
        let actions = if pod_terminal(pod) {
            PodActions {
                done: true,
                ..Default::default()
            }
        } else {
            plan::compute_pod_actions(pod, &actual)
        };
        if actions.create_sandbox && !actual.sandboxes.is_empty() {
            recorder.record(
                pod,
                None,
                EventType::Normal,
                "SandboxChanged",
                "Pod sandbox changed, it will be killed and re-created.".to_string(),
            );
        }
        if actions.kill_pod {
            self.kill_all(pod, &actual, Duration::ZERO, false).await;
        }
        let mut checked_image = None;
        if actions.create_sandbox {
            let config = self.sandbox_config(pod, None);
            let shared = self.shared.clone();
            let began = Instant::now();
            // The first container's image is checked while the sandbox is made: each waits on
            // another process (the registry, `ip`) and neither needs the other. A restart keeps
            // its back-off check first, so only a fresh start is checked early.
            let first = actions
                .start
                .first()
                .filter(|s| s.restart_after.is_none() && s.created.is_none())
                .and_then(|s| Some((s.name.clone(), s.init, container_of(pod, s)?)));
            let (made, image) = tokio::join!(
                async move { shared.runtime.run_sandbox(&config).await },
                async {
                    match first {
                        Some((name, init, c)) => {
                            let fp = Some(field_path(init, &name));
                            Some((name, self.ensure_image(pod, &c, fp).await))
                        }
                        None => None,
                    }
                }
            );
            checked_image = image;
            tracing::debug!(uid = %self.uid, took = ?began.elapsed(), "sandbox made");
            if let Err(e) = made {
                recorder.record(
                    pod,
                    None,
                    EventType::Warning,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {e}"),
                );
                return Duration::from_secs(5);
            }
            match self.actual().await {
                Some(a) => actual = a,
                None => return Duration::from_secs(1),
            }
        }
        if let Some(sandbox) = actual.ready_sandbox().cloned() {
            let ip = sandbox.ip.map(|ip| ip.to_string());
            let config = self.sandbox_config(pod, ip.as_deref());
            for start in &actions.start {
                let image = checked_image
                    .take_if(|(name, _)| *name == start.name)
                    .map(|(_, image)| image);
                let outcome = self
                    .start(pod, &sandbox.id, &config, ip.as_deref(), start, image)
                    .await;
                if let Outcome::Waiting(after) = outcome {
                    next = next.min(after);
                    // Init containers run strictly in order.
                    if start.init {
                        break;
                    }
                }
            }
        }
        if !actions.start.is_empty()
            && let Some(a) = self.actual().await
        {
            actual = a;
        }
        self.collect_garbage(&actual).await;
        let written = self.write_status(pod, &actual).await;
        let terminal = written
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        if terminal && actual.any_running() {
            // A finished Pod keeps its object but not its sandbox or volumes (kubelet
            // syncTerminatedPod).
            self.kill_all(pod, &actual, Duration::ZERO, true).await;
            if let Err(e) = volumes::teardown_volumes(&self.shared.root, &self.uid) {
                tracing::warn!(uid = %self.uid, "cannot remove volumes: {e}");
            }
        }
        next
    }

    /// Sets up the Pod's volumes that are due (each failed one waits out its back-off) and
    /// records kubelet's FailedMount for each failure. Returns whether the containers are held
    /// (a volume was never set up, or its sources could not be read) and when to try again.
    async fn mount_volumes(&mut self, pod: &Pod) -> (bool, Option<Duration>) {
        let recorder = self.shared.recorder.clone();
        let sources = self.volume_sources(pod).await;
        let now = SystemTime::now();
        let due = |name: &str| self.mounts.in_backoff_since_update(name, now).is_none();
        let names: Vec<String> = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .map(|v| v.name.clone())
            .filter(|n| due(n))
            .collect();
        let (failures, sources_failed) = match sources {
            Ok(sources) => {
                let ctx = self.env_context(None);
                let failures = volumes::setup(&self.shared.root, pod, &sources, &ctx, &due);
                (failures, false)
            }
            Err(e) => (vec![e], true),
        };
        for e in &failures {
            recorder.record(
                pod,
                None,
                EventType::Warning,
                "FailedMount",
                format!(
                    "MountVolume.SetUp failed for volume {:?} : {}",
                    e.volume, e.message
                ),
            );
        }
        let mut waits = Vec::new();
        if sources_failed {
            waits.push(Duration::from_secs(2));
        } else {
            // Each volume backs off on its own (kubelet's volume manager): 500 ms doubling
            // to 2m2s, forgotten once it is set up.
            for name in names {
                match failures.iter().find(|e| e.volume == name) {
                    Some(e) => {
                        waits.push(self.mounts.next(&name, now, now));
                        if e.mounted {
                            self.unmounted.remove(&name);
                        } else {
                            self.unmounted.insert(name);
                        }
                    }
                    None => {
                        self.mounts.reset(&name);
                        self.unmounted.remove(&name);
                    }
                }
            }
            waits.extend(
                self.unmounted
                    .iter()
                    .filter_map(|n| self.mounts.in_backoff_since_update(n, now)),
            );
        }
        (
            sources_failed || !self.unmounted.is_empty(),
            waits.into_iter().min(),
        )
    }

    /// Starts one container per the plan, or notes why it waits. `image` is the outcome of its
    /// image check when that was done already.
    async fn start(
        &mut self,
        pod: &Pod,
        sandbox_id: &str,
        sandbox: &SandboxConfig,
        pod_ip: Option<&str>,
        start: &Start,
        image: Option<ImageCheck>,
    ) -> Outcome {
        let Some(container) = container_of(pod, start) else {
            return Outcome::Waiting(self.shared.resync);
        };
        let name = container.name.clone();
        let fp = Some(field_path(start.init, &name));
        let recorder = self.shared.recorder.clone();
        let now = SystemTime::now();
        if let Some(finished) = start.restart_after {
            let key = format!("{}/{name}", self.uid);
            if let Some((remaining, delay)) = self.crash.in_backoff_since(&key, finished, now) {
                let pk = pod_key(pod);
                let message = format!(
                    "back-off {} restarting failed container={name} pod={pk}",
                    format::go_duration(delay)
                );
                self.waiting.insert(
                    name.clone(),
                    Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: Some(message),
                    },
                );
                recorder.record(
                    pod,
                    fp,
                    EventType::Warning,
                    "BackOff",
                    format!("Back-off restarting failed container {name} in pod {pk}"),
                );
                return Outcome::Waiting(remaining);
            }
            self.crash.next(&key, finished, now);
        }

        let began = Instant::now();
        let image = match image {
            Some(checked) => checked,
            None => self.ensure_image(pod, &container, fp.clone()).await,
        };
        let image = match image {
            Ok(image) => image,
            Err((waiting, retry)) => {
                self.waiting.insert(name.clone(), waiting);
                return Outcome::Waiting(retry);
            }
        };
        tracing::debug!(uid = %self.uid, container = %name, took = ?began.elapsed(), "image ready");

        let id = if let Some(id) = &start.created {
            id.clone()
        } else {
            let config = match self
                .container_config(pod, &container, start, &image, pod_ip)
                .await
            {
                Ok(c) => c,
                Err(message) => {
                    recorder.record(
                        pod,
                        fp,
                        EventType::Warning,
                        "Failed",
                        format!("Error: {message}"),
                    );
                    self.waiting.insert(
                        name.clone(),
                        Waiting {
                            reason: "CreateContainerConfigError".into(),
                            message: Some(message),
                        },
                    );
                    return Outcome::Waiting(Duration::from_secs(10));
                }
            };
            match self
                .shared
                .runtime
                .create_container(sandbox_id, &config, sandbox)
                .await
            {
                Ok(id) => id,
                Err(e) => {
                    recorder.record(pod, fp, EventType::Warning, "Failed", format!("Error: {e}"));
                    self.waiting.insert(
                        name.clone(),
                        Waiting {
                            reason: "CreateContainerError".into(),
                            message: Some(e.to_string()),
                        },
                    );
                    return Outcome::Waiting(Duration::from_secs(10));
                }
            }
        };
        tracing::debug!(uid = %self.uid, container = %name, took = ?began.elapsed(), "image checked and container created");
        if start.created.is_none() {
            recorder.record(
                pod,
                fp.clone(),
                EventType::Normal,
                "Created",
                format!("Created container: {name}"),
            );
        }
        self.waiting.remove(&name);
        let began = Instant::now();
        let started = self.shared.runtime.start_container(&id).await;
        tracing::debug!(uid = %self.uid, container = %name, took = ?began.elapsed(), "container started");
        if let Err(e) = started {
            // The runtime records the instance as exited (StartError); the next pass restarts
            // it with back-off like any failed container.
            recorder.record(pod, fp, EventType::Warning, "Failed", format!("Error: {e}"));
            return Outcome::Waiting(Duration::from_secs(1));
        }
        recorder.record(
            pod,
            fp,
            EventType::Normal,
            "Started",
            format!("Started container {name}"),
        );
        Outcome::Started
    }

    /// What the downward API reads besides the Pod, without ConfigMaps or Secrets.
    fn env_context(&self, pod_ip: Option<&str>) -> EnvContext {
        EnvContext {
            host_ip: self.shared.host_ip.clone(),
            pod_ip: pod_ip.unwrap_or("").to_string(),
            allocatable_cpu: self.shared.allocatable_cpu.clone(),
            allocatable_memory: self.shared.allocatable_memory.clone(),
            service_env: self.shared.service_env.clone(),
            node_annotations: [
                ("kubernetes.io/config.seen".to_string(), self.seen.clone()),
                ("kubernetes.io/config.source".to_string(), "api".to_string()),
            ]
            .into(),
            ..Default::default()
        }
    }

    /// The ConfigMaps, Secrets and service account tokens the Pod's volumes read.
    async fn volume_sources(&mut self, pod: &Pod) -> Result<Sources, volumes::SetupError> {
        let failed = |message| volumes::SetupError {
            volume: String::new(),
            message,
            mounted: false,
        };
        let (cms, secrets) = payload::references(pod);
        let mut sources = self.read_sources(pod, cms, secrets).await.map_err(failed)?;
        for request in payload::token_requests(pod) {
            let token = self.token(pod, &request).await.map_err(failed)?;
            sources.tokens.insert(request, token);
        }
        Ok(sources)
    }

    /// A token for the Pod's ServiceAccount, bound to the Pod: the one fetched before until
    /// 80% of its life has passed (kubelet's refresh), then a new one.
    async fn token(
        &mut self,
        pod: &Pod,
        request: &payload::TokenRequest,
    ) -> Result<String, String> {
        if let Some((token, refresh_at)) = self.tokens.get(request)
            && Instant::now() < *refresh_at
        {
            return Ok(token.clone());
        }
        let (audience, expiration) = request;
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let sa = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let audiences: Vec<&str> = [audience.as_str()]
            .into_iter()
            .filter(|a| !a.is_empty())
            .collect();
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": audiences, "expirationSeconds": expiration,
                     "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                        "name": pod.metadata.name, "uid": pod.metadata.uid}},
        });
        let api: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(self.shared.client.clone(), &ns);
        let reply: serde_json::Value = api
            .create_subresource("token", &sa, &Default::default(), &body)
            .await
            .map_err(|e| format!("failed to fetch token: {e}"))?;
        let token = reply["status"]["token"]
            .as_str()
            .ok_or("failed to fetch token: the reply holds none")?
            .to_string();
        let life = Duration::from_secs(u64::try_from(*expiration).unwrap_or(3600));
        let refresh_at = Instant::now() + life.mul_f64(0.8).min(Duration::from_secs(24 * 3600));
        self.tokens
            .insert(request.clone(), (token.clone(), refresh_at));
        Ok(token)
    }

    /// ConfigMaps and Secrets of the Pod's namespace by name (`None`: not found).
    async fn read_sources(
        &self,
        pod: &Pod,
        config_maps: Vec<String>,
        secrets: Vec<String>,
    ) -> Result<Sources, String> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let mut read = Sources::default();
        let cm_api: Api<ConfigMap> = Api::namespaced(self.shared.client.clone(), &ns);
        for name in config_maps {
            let got = cm_api
                .get_opt(&name)
                .await
                .map_err(|e| format!("cannot read configmap {name:?}: {e}"))?;
            read.config_maps.insert(name, got);
        }
        let secret_api: Api<Secret> = Api::namespaced(self.shared.client.clone(), &ns);
        for name in secrets {
            let got = secret_api
                .get_opt(&name)
                .await
                .map_err(|e| format!("cannot read secret {name:?}: {e}"))?;
            read.secrets.insert(name, got);
        }
        Ok(read)
    }

    async fn container_config(
        &self,
        pod: &Pod,
        container: &Container,
        start: &Start,
        image: &runtime::Image,
        pod_ip: Option<&str>,
    ) -> Result<ContainerConfig, String> {
        let (cms, secrets) = env::references(container);
        let read = self.read_sources(pod, cms, secrets).await?;
        let ctx = EnvContext {
            config_maps: read.config_maps,
            secrets: read.secrets,
            ..self.env_context(pod_ip)
        };
        let env = env::resolve(pod, container, &ctx)?;
        let (command, args) = env::expand_command(container, &env);
        let mounts = volumes::make_mounts(&self.shared.root, pod, container, start.attempt, &env)?;
        let mut labels = Self::pod_labels(pod);
        labels.insert(labels::CONTAINER_NAME.to_string(), container.name.clone());
        labels.insert(
            labels::CONTAINER_ATTEMPT.to_string(),
            start.attempt.to_string(),
        );
        Ok(ContainerConfig {
            name: container.name.clone(),
            attempt: start.attempt,
            image: image.id.clone(),
            command,
            args,
            env,
            working_dir: container.working_dir.clone().filter(|w| !w.is_empty()),
            mounts,
            stdin: container.stdin.unwrap_or(false),
            stdin_once: container.stdin_once.unwrap_or(false),
            tty: container.tty.unwrap_or(false),
            security: security(pod, container),
            resources: resources(container),
            log_path: PathBuf::from(&container.name).join(format!("{}.log", start.attempt)),
            labels,
        })
    }

    /// The image for a container per its pull policy, with kubelet's events; on failure the
    /// waiting state to show and when to try again.
    async fn ensure_image(
        &mut self,
        pod: &Pod,
        container: &Container,
        fp: Option<String>,
    ) -> ImageCheck {
        let recorder = self.shared.recorder.clone();
        let image = container.image.clone().unwrap_or_default();
        let policy = pull_policy(container);
        let present = match self.shared.images.image_status(&image).await {
            Ok(p) => p,
            Err(e) => {
                let message = format!("Failed to inspect image {image:?}: {e}");
                recorder.record(
                    pod,
                    fp,
                    EventType::Warning,
                    "InspectFailed",
                    message.clone(),
                );
                return Err((
                    Waiting {
                        reason: "ImageInspectError".into(),
                        message: Some(message),
                    },
                    Duration::from_secs(10),
                ));
            }
        };
        let record = |this: &mut Self, img: &runtime::Image| {
            this.images.insert(
                image.clone(),
                ImageRef {
                    image: img.tags.first().cloned().unwrap_or_else(|| image.clone()),
                    image_id: img.repo_digest.clone(),
                },
            );
        };
        let pull = match policy.as_str() {
            "Never" => false,
            "IfNotPresent" => present.is_none(),
            _ => true,
        };
        if !pull {
            if let Some(img) = present {
                recorder.record(
                    pod,
                    fp,
                    EventType::Normal,
                    "Pulled",
                    format!("Container image {image:?} already present on machine"),
                );
                record(self, &img);
                return Ok(img);
            }
            let message =
                format!("Container image {image:?} is not present with pull policy of Never");
            recorder.record(
                pod,
                fp.clone(),
                EventType::Warning,
                "ErrImageNeverPull",
                message.clone(),
            );
            recorder.record(
                pod,
                fp,
                EventType::Warning,
                "Failed",
                "Error: ErrImageNeverPull",
            );
            return Err((
                Waiting {
                    reason: "ErrImageNeverPull".into(),
                    message: Some(message),
                },
                Duration::from_secs(10),
            ));
        }
        let key = format!("{}_{image}", self.uid);
        let now = SystemTime::now();
        let in_backoff = self
            .shared
            .image_backoff
            .lock()
            .map(|b| b.in_backoff_since_update(&key, now))
            .unwrap_or(None);
        if let Some(remaining) = in_backoff {
            recorder.record(
                pod,
                fp.clone(),
                EventType::Normal,
                "BackOff",
                format!("Back-off pulling image {image:?}"),
            );
            recorder.record(
                pod,
                fp,
                EventType::Warning,
                "Failed",
                "Error: ImagePullBackOff",
            );
            let last = self
                .last_pull_error
                .get(&image)
                .cloned()
                .unwrap_or_default();
            let message = format!("Back-off pulling image {image:?}: ErrImagePull: {last}");
            return Err((
                Waiting {
                    reason: "ImagePullBackOff".into(),
                    message: Some(message),
                },
                remaining,
            ));
        }
        recorder.record(
            pod,
            fp.clone(),
            EventType::Normal,
            "Pulling",
            format!("Pulling image {image:?}"),
        );
        let started = Instant::now();
        match self.shared.images.pull(&image, None).await {
            Ok(img) => {
                let took = format::go_duration_ms(started.elapsed());
                recorder.record(
                    pod,
                    fp,
                    EventType::Normal,
                    "Pulled",
                    format!(
                        "Successfully pulled image {image:?} in {took} ({took} including waiting). Image size: {} bytes.",
                        img.size
                    ),
                );
                if let Ok(mut b) = self.shared.image_backoff.lock() {
                    b.reset(&key);
                }
                self.last_pull_error.remove(&image);
                record(self, &img);
                Ok(img)
            }
            Err(e) => {
                let message = e.to_string();
                recorder.record(
                    pod,
                    fp.clone(),
                    EventType::Warning,
                    "Failed",
                    format!("Failed to pull image {image:?}: {message}"),
                );
                recorder.record(pod, fp, EventType::Warning, "Failed", "Error: ErrImagePull");
                if let Ok(mut b) = self.shared.image_backoff.lock() {
                    b.next(&key, now, now);
                }
                self.last_pull_error.insert(image.clone(), message.clone());
                // Look again a little before the back-off ends, so ImagePullBackOff shows.
                Err((
                    Waiting {
                        reason: "ErrImagePull".into(),
                        message: Some(message),
                    },
                    Duration::from_secs(5),
                ))
            }
        }
    }

    /// Removes exited instances older than the previous one of each container (kubelet keeps
    /// the last dead instance for `logs --previous` and lastState).
    async fn collect_garbage(&self, actual: &ActualPod) {
        let mut names: Vec<&str> = actual.containers.iter().map(plan::name_of).collect();
        names.sort();
        names.dedup();
        for name in names {
            for old in actual.instances(name).into_iter().skip(2) {
                if old.state == ContainerState::Exited
                    && let Err(e) = self.shared.runtime.remove_container(&old.id).await
                {
                    tracing::debug!(id = %old.id, "cannot remove old container: {e}");
                }
            }
        }
    }

    /// Fills the termination messages of exited instances from their files (or logs).
    fn with_messages(&self, pod: &Pod, mut actual: ActualPod) -> ActualPod {
        let spec = pod.spec.clone().unwrap_or_default();
        let all: Vec<Container> = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .cloned()
            .collect();
        for c in actual.containers.iter_mut() {
            if c.state != ContainerState::Exited
                || c.message.as_deref().is_some_and(|m| !m.is_empty())
            {
                continue;
            }
            let name = plan::name_of(c).to_string();
            let attempt = plan::attempt_of(c);
            let mut message =
                volumes::read_termination_message(&self.shared.root, &self.uid, &name, attempt);
            let fallback = all
                .iter()
                .find(|s| s.name == name)
                .and_then(|s| s.termination_message_policy.as_deref())
                == Some("FallbackToLogsOnError");
            if message.is_none() && fallback && c.exit_code.unwrap_or(0) != 0 {
                message = volumes::log_tail_message(&c.log_path);
            }
            c.message = message;
        }
        actual
    }

    /// Learns the images of instances this worker did not start (an earlier agent did), so
    /// an adopted Pod's status keeps its image and imageID.
    async fn learn_images(&mut self, pod: &Pod, actual: &ActualPod) {
        let spec = pod.spec.clone().unwrap_or_default();
        let all = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten());
        for c in all {
            let Some(image) = c.image.clone() else {
                continue;
            };
            if self.images.contains_key(&image) || actual.latest(&c.name).is_none() {
                continue;
            }
            if let Ok(Some(img)) = self.shared.images.image_status(&image).await {
                self.images.insert(
                    image.clone(),
                    ImageRef {
                        image: img.tags.first().cloned().unwrap_or_else(|| image.clone()),
                        image_id: img.repo_digest.clone(),
                    },
                );
            }
        }
    }

    /// Computes the status and writes it when it differs from the API's; returns it.
    async fn write_status(&mut self, pod: &Pod, actual: &ActualPod) -> Option<PodStatus> {
        self.learn_images(pod, actual).await;
        let actual = self.with_messages(pod, actual.clone());
        let input = StatusInput {
            pod,
            actual: &actual,
            waiting: &self.waiting,
            images: &self.images,
            host_ip: &self.shared.host_ip,
            now: SystemTime::now(),
            evicted: self.evicted.as_deref(),
        };
        let new = status::pod_status(&input);
        let old = pod.status.clone().unwrap_or_default();
        let unchanged = !status::differs(&new, &old)
            || self
                .written
                .as_ref()
                .is_some_and(|w| !status::differs(&new, w));
        if unchanged {
            return Some(new);
        }
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        let patch = json!({"metadata": {"uid": self.uid}, "status": new});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                self.written = Some(new.clone());
                Some(new)
            }
            Err(e) => {
                tracing::warn!(pod = %name, "cannot write status: {e}");
                None
            }
        }
    }

    /// Stops every container (Killing events for running ones), the sandboxes, and removes
    /// them (`keep_containers`: leave exited containers for logs and status).
    async fn kill_all(
        &self,
        pod: &Pod,
        actual: &ActualPod,
        grace: Duration,
        keep_containers: bool,
    ) {
        let recorder = &self.shared.recorder;
        let spec = pod.spec.clone().unwrap_or_default();
        let is_init = |n: &str| spec.init_containers.iter().flatten().any(|c| c.name == n);
        let stops = actual
            .containers
            .iter()
            .filter(|c| c.state == ContainerState::Running || c.state == ContainerState::Created)
            .map(|c| {
                let name = plan::name_of(c).to_string();
                if c.state == ContainerState::Running {
                    recorder.record(
                        pod,
                        Some(field_path(is_init(&name), &name)),
                        EventType::Normal,
                        "Killing",
                        format!("Stopping container {name}"),
                    );
                }
                let runtime = self.shared.runtime.clone();
                let id = c.id.clone();
                async move {
                    if let Err(e) = runtime.stop_container(&id, grace).await {
                        tracing::warn!(%id, "cannot stop container: {e}");
                    }
                }
            });
        futures::future::join_all(stops).await;
        for s in &actual.sandboxes {
            if let Err(e) = self.shared.runtime.stop_sandbox(&s.id).await {
                tracing::warn!(id = %s.id, "cannot stop sandbox: {e}");
            }
        }
        if keep_containers {
            return;
        }
        for c in &actual.containers {
            if let Err(e) = self.shared.runtime.remove_container(&c.id).await {
                tracing::warn!(id = %c.id, "cannot remove container: {e}");
            }
        }
        for s in &actual.sandboxes {
            if let Err(e) = self.shared.runtime.remove_sandbox(&s.id).await {
                tracing::warn!(id = %s.id, "cannot remove sandbox: {e}");
            }
        }
    }

    /// Stops and removes everything of the Pod, then its volumes and logs; true when done.
    async fn terminate(&mut self, pod: &Pod, grace_seconds: i64) -> bool {
        let Some(actual) = self.actual().await else {
            return false;
        };
        let grace = match u64::try_from(grace_seconds).unwrap_or(0) {
            0 => Duration::ZERO,
            g => Duration::from_secs(g).max(MIN_GRACE),
        };
        self.kill_all(pod, &actual, grace, false).await;
        let Some(left) = self.actual().await else {
            return false;
        };
        if !left.containers.is_empty() || !left.sandboxes.is_empty() {
            return false;
        }
        if let Err(e) = volumes::teardown(&self.shared.root, &self.uid) {
            tracing::warn!(uid = %self.uid, "cannot remove the pod's directory: {e}");
            return false;
        }
        let _ = std::fs::remove_dir_all(self.log_dir(pod));
        if let Ok(mut b) = self.shared.image_backoff.lock() {
            b.forget_prefix(&format!("{}_", self.uid));
        }
        true
    }

    /// Deletes the API object now that nothing of it runs (grace 0, only this UID).
    async fn delete_object(&self, pod: &Pod) {
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!(pod = %name, "cannot delete pod: {e}"),
        }
    }
}

fn pod_terminal(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn hosts_file_is_kubelets() {
        let p = pod(
            json!({"metadata": {"name": "date-tail", "namespace": "default"},
            "spec": {"containers": [], "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a", "b"]}]}}),
        );
        let h = hosts_file(&p, Some("10.88.0.5"));
        assert!(h.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(h.contains("10.88.0.5\tdate-tail\n"));
        assert!(h.ends_with("\n# Entries added by HostAliases.\n10.0.0.1\ta\tb\n"));
    }

    #[test]
    fn pull_policy_defaults_by_tag() {
        let c = |image: &str| Container {
            name: "c".into(),
            image: Some(image.into()),
            ..Default::default()
        };
        assert_eq!(pull_policy(&c("alpine")), "Always");
        assert_eq!(pull_policy(&c("alpine:latest")), "Always");
        assert_eq!(pull_policy(&c("alpine:3.20")), "IfNotPresent");
        assert_eq!(pull_policy(&c("127.0.0.1:5000/busybox")), "Always");
        assert_eq!(pull_policy(&c("a@sha256:00")), "IfNotPresent");
    }

    #[test]
    fn resources_convert_like_kubelet() {
        let c: Container = serde_json::from_value(json!({"name": "c",
            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m"}}})).unwrap();
        let r = resources(&c);
        assert_eq!(r.cpu_shares, Some(256));
        assert_eq!(r.cpu_quota, Some(50_000));
        assert_eq!(r.cpu_period, Some(100_000));
        assert_eq!(r.memory_limit, Some(64 * 1024 * 1024));
        let none = resources(&Container::default());
        assert_eq!(none.cpu_shares, Some(2));
        assert_eq!(none.cpu_quota, None);
    }
}

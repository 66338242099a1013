//! The Node object: registration, the heartbeat Lease in `kube-node-lease`, and the status
//! (capacity, addresses, node info, conditions) kubelet posts (`kubelet_node_status.go`,
//! `nodelease`).
//!
//! [`NodeInfo::probe`] reads the machine once; [`node_status`] is pure; [`heartbeat`] renews
//! the Lease every 10 s and writes the status when it changed (or every 5 min, as kubelet's
//! `nodeStatusReportFrequency`).

use crate::error::{Error, Result};
use crate::format;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeStatus};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// kubelet's default maximum number of Pods.
pub const MAX_PODS: u32 = 110;
/// kubelet's version as reported.
pub const KUBELET_VERSION: &str = "v1.32.0";
/// How often the lease is renewed and the status computed.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// How often the status is written even when nothing changed.
pub const REPORT_EVERY: Duration = Duration::from_secs(300);

/// What the node is made of, read once at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The Node's name.
    pub name: String,
    /// The machine's hostname.
    pub hostname: String,
    /// The node's IP.
    pub ip: String,
    /// CPUs.
    pub cpus: u64,
    /// Memory in KiB.
    pub memory_kib: u64,
    /// The filesystem of the node's state, in KiB.
    pub storage_kib: u64,
    /// `uname -r`.
    pub kernel: String,
    /// PRETTY_NAME from /etc/os-release.
    pub os_image: String,
    /// `runc://1.1.12`.
    pub runtime_version: String,
    /// `amd64`, `arm64`.
    pub architecture: String,
    /// /etc/machine-id.
    pub machine_id: String,
    /// The DMI product UUID when readable, else the machine id.
    pub system_uuid: String,
    /// /proc/sys/kernel/random/boot_id.
    pub boot_id: String,
    /// The streaming server's port.
    pub port: u16,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Go's name for the machine architecture.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The version `runc --version` prints (`runc version 1.1.12`), as `runc://1.1.12`.
pub fn probe_runc_version(runc: &str) -> String {
    let out = std::process::Command::new(runc).arg("--version").output();
    let version = out
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.strip_prefix("runc version "))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    format!("runc://{version}")
}

impl NodeInfo {
    /// Reads the machine: CPUs, memory, the filesystem under `root`, kernel, OS, ids.
    pub fn probe(name: &str, root: &std::path::Path, runtime_version: &str, port: u16) -> NodeInfo {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        let storage_kib = nix::sys::statvfs::statvfs(root)
            .or_else(|_| nix::sys::statvfs::statvfs("/"))
            .map(|s| s.blocks() * s.fragment_size() / 1024)
            .unwrap_or(0);
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let os_image = os_release
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "Linux".to_string());
        let machine_id = read_trim("/etc/machine-id");
        let uuid = read_trim("/sys/class/dmi/id/product_uuid");
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| name.to_string());
        NodeInfo {
            name: name.to_string(),
            hostname,
            ip: "127.0.0.1".to_string(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            memory_kib,
            storage_kib,
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            os_image,
            runtime_version: runtime_version.to_string(),
            architecture: go_arch().to_string(),
            system_uuid: if uuid.is_empty() {
                machine_id.clone()
            } else {
                uuid
            },
            machine_id,
            boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
            port,
        }
    }

    /// Allocatable memory in KiB: capacity less kubelet's default hard eviction threshold
    /// (`memory.available<100Mi`).
    pub fn allocatable_memory_kib(&self) -> u64 {
        self.memory_kib.saturating_sub(100 * 1024)
    }
}

/// The labels and annotations kubelet puts on its Node.
pub fn node_object(info: &NodeInfo) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": info.name,
            "labels": {
                "beta.kubernetes.io/arch": info.architecture,
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": info.architecture,
                "kubernetes.io/hostname": info.name,
                "kubernetes.io/os": "linux",
            },
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {},
    })
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    old: &NodeStatus,
    now: SystemTime,
) -> Value {
    let status = if ok { "True" } else { "False" };
    let since = old
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .map_or_else(|| format::rfc3339(now), |t| t.0.to_string());
    json!({
        "type": type_, "status": status, "reason": reason, "message": message,
        "lastHeartbeatTime": format::rfc3339(now), "lastTransitionTime": since,
    })
}

/// The status to post, keeping transition times from `old`.
pub fn node_status(
    info: &NodeInfo,
    images: &[runtime::Image],
    old: &NodeStatus,
    now: SystemTime,
) -> Value {
    let capacity = json!({
        "cpu": info.cpus.to_string(),
        "ephemeral-storage": format!("{}Ki", info.storage_kib),
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": format!("{}Ki", info.memory_kib),
        "pods": MAX_PODS.to_string(),
    });
    // kubelet reserves nothing by default but the eviction thresholds: 100Mi of memory and
    // 10% of the node filesystem.
    let allocatable = json!({
        "cpu": info.cpus.to_string(),
        "ephemeral-storage": (info.storage_kib * 1024 / 10 * 9).to_string(),
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": format!("{}Ki", info.allocatable_memory_kib()),
        "pods": MAX_PODS.to_string(),
    });
    let images: Vec<Value> = images
        .iter()
        .map(|i| {
            let mut names: Vec<&str> = vec![];
            if !i.repo_digest.is_empty() {
                names.push(&i.repo_digest);
            }
            names.extend(i.tags.iter().map(String::as_str));
            json!({"names": names, "sizeBytes": i.size})
        })
        .collect();
    json!({
        "capacity": capacity,
        "allocatable": allocatable,
        "conditions": [
            condition("MemoryPressure", false, "KubeletHasSufficientMemory", "kubelet has sufficient memory available", old, now),
            condition("DiskPressure", false, "KubeletHasNoDiskPressure", "kubelet has no disk pressure", old, now),
            condition("PIDPressure", false, "KubeletHasSufficientPID", "kubelet has sufficient PID available", old, now),
            condition("Ready", true, "KubeletReady", "kubelet is posting ready status", old, now),
        ],
        "addresses": [
            {"type": "InternalIP", "address": info.ip},
            {"type": "Hostname", "address": info.hostname},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": info.port}},
        "nodeInfo": {
            "machineID": info.machine_id,
            "systemUUID": info.system_uuid,
            "bootID": info.boot_id,
            "kernelVersion": info.kernel,
            "osImage": info.os_image,
            "containerRuntimeVersion": info.runtime_version,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": info.architecture,
        },
        "images": images,
    })
}

/// The status without heartbeat times, to tell a real change from a heartbeat.
fn without_heartbeats(mut status: Value) -> Value {
    if let Some(cs) = status["conditions"].as_array_mut() {
        for c in cs {
            if let Some(o) = c.as_object_mut() {
                o.remove("lastHeartbeatTime");
            }
        }
    }
    status
}

/// Creates the Node, or takes over an existing one (labels and annotations merged in).
pub async fn register(client: &kube::Client, info: &NodeInfo) -> Result<Node> {
    let api: Api<Node> = Api::all(client.clone());
    let object = node_object(info);
    let node: Node = serde_json::from_value(object.clone()).map_err(|source| Error::Json {
        context: "build node object".into(),
        source,
    })?;
    match api.create(&PostParams::default(), &node).await {
        Ok(n) => Ok(n),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let patch = json!({"metadata": {"labels": object["metadata"]["labels"], "annotations": object["metadata"]["annotations"]}});
            api.patch(&info.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(Error::api(format!("update node {}", info.name)))
        }
        Err(e) => Err(Error::api(format!("register node {}", info.name))(e)),
    }
}

/// Writes the Node's status; returns what was written.
pub async fn post_status(
    client: &kube::Client,
    info: &NodeInfo,
    images: &[runtime::Image],
) -> Result<Value> {
    let api: Api<Node> = Api::all(client.clone());
    let current = api
        .get_status(&info.name)
        .await
        .map_err(Error::api(format!("read node {}", info.name)))?;
    let old = current.status.unwrap_or_default();
    let status = node_status(info, images, &old, SystemTime::now());
    api.patch_status(
        &info.name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": status})),
    )
    .await
    .map_err(Error::api(format!("update node {} status", info.name)))?;
    Ok(status)
}

/// Renews (or creates) the Node's Lease.
pub async fn renew_lease(client: &kube::Client, node: &Node) -> Result<()> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = format::micro_time(SystemTime::now());
    let renew =
        json!({"spec": {"renewTime": now, "holderIdentity": name, "leaseDurationSeconds": 40}});
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&renew))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease", "ownerReferences": [{
                    "apiVersion": "v1", "kind": "Node", "name": name,
                    "uid": node.metadata.uid.clone().unwrap_or_default(),
                }]},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now},
            });
            let lease: Lease = serde_json::from_value(lease).map_err(|source| Error::Json {
                context: "build lease".into(),
                source,
            })?;
            api.create(&PostParams::default(), &lease)
                .await
                .map(|_| ())
                .map_err(Error::api(format!("create lease {name}")))
        }
        Err(e) => Err(Error::api(format!("renew lease {name}"))(e)),
    }
}

/// Registers the Node, then keeps its Lease and status fresh until `shutdown`. `ready`
/// turns true once a Ready status has been written.
pub async fn heartbeat(
    client: kube::Client,
    info: NodeInfo,
    images: std::sync::Arc<dyn runtime::ImageService>,
    ready: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    let node = loop {
        match register(&client, &info).await {
            Ok(n) => break n,
            Err(e) => {
                tracing::warn!("{e}: {}", source_text(&e));
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    };
    let mut last_written: Option<(Value, Instant)> = None;
    loop {
        if let Err(e) = renew_lease(&client, &node).await {
            tracing::warn!("{e}: {}", source_text(&e));
        }
        let image_list = images.list_images().await.unwrap_or_default();
        let fresh = node_status(
            &info,
            &image_list,
            &NodeStatus::default(),
            SystemTime::now(),
        );
        let due = match &last_written {
            None => true,
            Some((old, at)) => {
                without_heartbeats(old.clone()) != without_heartbeats(fresh.clone())
                    || at.elapsed() >= REPORT_EVERY
            }
        };
        if due {
            match post_status(&client, &info, &image_list).await {
                Ok(written) => {
                    last_written = Some((written, Instant::now()));
                    ready.send_replace(true);
                }
                Err(e) => tracing::warn!("{e}: {}", source_text(&e)),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(HEARTBEAT) => {}
        }
    }
}

/// The chain of causes of an error, for a log line.
pub fn source_text(e: &dyn std::error::Error) -> String {
    let mut parts = vec![];
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> NodeInfo {
        NodeInfo {
            name: "n1".into(),
            hostname: "host".into(),
            ip: "127.0.0.1".into(),
            cpus: 4,
            memory_kib: 8 * 1024 * 1024,
            storage_kib: 100 * 1024 * 1024,
            kernel: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            runtime_version: "runc://1.1.12".into(),
            architecture: "amd64".into(),
            machine_id: "m".into(),
            system_uuid: "m".into(),
            boot_id: "b".into(),
            port: 10250,
        }
    }

    #[test]
    fn status_is_kubelets() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let s = node_status(&info(), &[], &NodeStatus::default(), now);
        assert_eq!(s["capacity"]["pods"], "110");
        assert_eq!(s["capacity"]["memory"], "8388608Ki");
        assert_eq!(s["allocatable"]["memory"], "8286208Ki");
        assert_eq!(s["conditions"][3]["type"], "Ready");
        assert_eq!(
            s["conditions"][3]["message"],
            "kubelet is posting ready status"
        );
        assert_eq!(s["conditions"][3]["reason"], "KubeletReady");
        assert_eq!(s["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
        assert_eq!(s["nodeInfo"]["kubeletVersion"], "v1.32.0");
        assert_eq!(s["addresses"][0]["address"], "127.0.0.1");
        // The typed form accepts it.
        let typed: NodeStatus = serde_json::from_value(s.clone()).unwrap();
        // Transition times are kept across heartbeats; only heartbeat times move.
        let later = now + Duration::from_secs(10);
        let s2 = node_status(&info(), &[], &typed, later);
        assert_eq!(
            s2["conditions"][3]["lastTransitionTime"],
            s["conditions"][3]["lastTransitionTime"]
        );
        assert_ne!(
            s2["conditions"][3]["lastHeartbeatTime"],
            s["conditions"][3]["lastHeartbeatTime"]
        );
        assert_eq!(without_heartbeats(s2), without_heartbeats(s));
    }

    #[test]
    fn probe_reads_the_machine() {
        let i = NodeInfo::probe("n1", std::path::Path::new("/"), "runc://x", 1);
        assert!(i.cpus >= 1);
        assert!(i.memory_kib > 0);
        assert!(!i.kernel.is_empty());
    }
}

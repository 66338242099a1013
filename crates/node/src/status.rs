//! A Pod's status as kubelet writes it (`kubelet_pods.go` generateAPIPodStatus, getPhase,
//! convertToAPIContainerStatuses; `status/generate.go` for the conditions), computed purely
//! from the spec, the old status, the runtime's containers and what the worker noted about
//! containers that are waiting (image pull errors, back-off).

use crate::format;
use crate::plan::{ActualPod, attempt_of};
use k8s_openapi::api::core::v1::{
    Container, ContainerState as KState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus as KStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
    VolumeMountStatus,
};
use runtime::{ContainerState, ContainerStatus};
use std::collections::HashMap;
use std::time::SystemTime;

/// Why a container waits, as the worker learned it (`ErrImagePull`, `CrashLoopBackOff`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// The reason (`ImagePullBackOff`).
    pub reason: String,
    /// kubelet's message.
    pub message: Option<String>,
}

/// The image a container runs, as the image service reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageRef {
    /// The normalised reference (`docker.io/library/alpine:latest`).
    pub image: String,
    /// The repo digest (`docker.io/library/alpine@sha256:...`).
    pub image_id: String,
}

/// Everything the status depends on.
pub struct StatusInput<'a> {
    /// The Pod as last seen.
    pub pod: &'a Pod,
    /// The runtime's view.
    pub actual: &'a ActualPod,
    /// Waiting reasons by container name.
    pub waiting: &'a HashMap<String, Waiting>,
    /// Images by the spec's image reference.
    pub images: &'a HashMap<String, ImageRef>,
    /// The node's IP.
    pub host_ip: &'a str,
    /// Now (for new transition times and startTime).
    pub now: SystemTime,
    /// The node evicted the Pod, with this message.
    pub evicted: Option<&'a str>,
}

fn policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// The container's state as shown: (state, lastState, counts as stopped, exit code shown).
fn shown_state(
    latest: Option<&ContainerStatus>,
    previous: Option<&ContainerStatus>,
    waiting: Option<&Waiting>,
    default_reason: &str,
) -> (KState, KState) {
    let waiting_state = |w: Option<&Waiting>| KState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(w.map_or(default_reason.to_string(), |w| w.reason.clone())),
            message: w.and_then(|w| w.message.clone()),
        }),
        ..Default::default()
    };
    let last = previous.map(terminated).unwrap_or_default();
    match latest {
        None => (waiting_state(waiting), KState::default()),
        Some(l) => match l.state {
            ContainerState::Running => (
                KState {
                    running: Some(ContainerStateRunning {
                        started_at: l.started_at.map(format::time),
                    }),
                    ..Default::default()
                },
                last,
            ),
            ContainerState::Exited => match waiting {
                Some(w) => (waiting_state(Some(w)), terminated(l)),
                None => (terminated(l), last),
            },
            ContainerState::Created | ContainerState::Unknown => (
                waiting_state(waiting.or(Some(&Waiting {
                    reason: "ContainerCreating".into(),
                    message: None,
                }))),
                last,
            ),
        },
    }
}

/// The `terminated` state of an exited instance.
fn terminated(c: &ContainerStatus) -> KState {
    let code = c.exit_code.unwrap_or(0);
    let reason = c
        .reason
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| if code == 0 { "Completed" } else { "Error" }.to_string());
    KState {
        terminated: Some(ContainerStateTerminated {
            container_id: Some(format!("runc://{}", c.id)),
            exit_code: code,
            finished_at: c.finished_at.map(format::time),
            message: c.message.clone().filter(|m| !m.is_empty()),
            reason: Some(reason),
            signal: None,
            started_at: c.started_at.map(format::time),
        }),
        ..Default::default()
    }
}

fn container_status(input: &StatusInput<'_>, spec: &Container, default_reason: &str) -> KStatus {
    let instances = input.actual.instances(&spec.name);
    let latest = instances.first().copied();
    let previous = instances.get(1).copied();
    let waiting = input.waiting.get(&spec.name);
    let (state, last_state) = shown_state(latest, previous, waiting, default_reason);
    let running = state.running.is_some();
    let spec_image = spec.image.clone().unwrap_or_default();
    let known = input.images.get(&spec_image);
    let volume_mounts = latest.map(|_| {
        spec.volume_mounts
            .iter()
            .flatten()
            .map(|m| VolumeMountStatus {
                mount_path: m.mount_path.clone(),
                name: m.name.clone(),
                read_only: m.read_only.filter(|r| *r),
                recursive_read_only: m.read_only.filter(|r| *r).map(|_| {
                    let enabled = crate::volumes::recursive_read_only(m);
                    if enabled { "Enabled" } else { "Disabled" }.to_string()
                }),
            })
            .collect::<Vec<_>>()
    });
    KStatus {
        container_id: latest.map(|c| format!("runc://{}", c.id)),
        image: match (latest, known) {
            (Some(_), Some(k)) => k.image.clone(),
            _ => spec_image,
        },
        image_id: match (latest, known) {
            (Some(_), Some(k)) => k.image_id.clone(),
            _ => String::new(),
        },
        last_state: Some(last_state),
        name: spec.name.clone(),
        // No readiness probes run here, so a running container is ready.
        ready: running,
        restart_count: latest.map_or(0, |c| i32::try_from(attempt_of(c)).unwrap_or(i32::MAX)),
        started: Some(running),
        state: Some(state),
        volume_mounts: volume_mounts.filter(|v| !v.is_empty()),
        ..Default::default()
    }
}

/// kubelet's getPhase over the shown container states.
fn phase(pod: &Pod, init: &[KStatus], apps: &[KStatus]) -> &'static str {
    let never = policy(pod) == "Never";
    let exit_of = |s: &KStatus| {
        s.state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .map(|t| t.exit_code)
    };
    let mut init_pending = false;
    for s in init {
        match exit_of(s) {
            Some(0) => {}
            Some(_) if never => return "Failed",
            _ => init_pending = true,
        }
    }
    if init_pending {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in apps {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.waiting.is_some() {
            // A container waiting to restart has run before: it counts as stopped.
            match s.last_state.as_ref().and_then(|l| l.terminated.as_ref()) {
                Some(_) => stopped += 1,
                None => waiting += 1,
            }
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        if policy(pod) == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if never {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

fn condition(
    old: &[PodCondition],
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: SystemTime,
) -> PodCondition {
    let status = if ok { "True" } else { "False" }.to_string();
    let since = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| format::time(now));
    PodCondition {
        last_probe_time: None,
        last_transition_time: Some(since),
        message,
        reason: reason.map(str::to_string),
        status,
        type_: type_.to_string(),
    }
}

/// The status to write for the Pod.
pub fn pod_status(input: &StatusInput<'_>) -> PodStatus {
    let pod = input.pod;
    let old = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let inits: &[Container] = spec.init_containers.as_deref().unwrap_or(&[]);
    let default_reason = if inits.is_empty() {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let init_statuses: Vec<KStatus> = inits
        .iter()
        .map(|c| container_status(input, c, default_reason))
        .collect();
    let app_statuses: Vec<KStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(input, c, default_reason))
        .collect();

    let old_phase = old.phase.as_deref().unwrap_or("Pending");
    let phase = if old_phase == "Succeeded" || old_phase == "Failed" {
        // A terminal phase never changes back.
        if old_phase == "Succeeded" {
            "Succeeded"
        } else {
            "Failed"
        }
    } else if input.evicted.is_some() {
        "Failed"
    } else {
        phase(pod, &init_statuses, &app_statuses)
    };

    let old_conditions = old.conditions.clone().unwrap_or_default();
    let now = input.now;
    let sandbox_ready = input.actual.ready_sandbox().is_some();
    let incomplete: Vec<&str> = init_statuses
        .iter()
        .filter(|s| {
            s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_none_or(|t| t.exit_code != 0)
        })
        .map(|s| s.name.as_str())
        .collect();
    let unready: Vec<&str> = app_statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let mut conditions = vec![condition(
        &old_conditions,
        "PodReadyToStartContainers",
        sandbox_ready,
        None,
        None,
        now,
    )];
    conditions.push(if incomplete.is_empty() {
        condition(&old_conditions, "Initialized", true, None, None, now)
    } else {
        condition(
            &old_conditions,
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                incomplete.join(" ")
            )),
            now,
        )
    });
    let readiness = |type_: &str| {
        if phase == "Succeeded" {
            condition(
                &old_conditions,
                type_,
                false,
                Some("PodCompleted"),
                None,
                now,
            )
        } else if unready.is_empty() {
            condition(&old_conditions, type_, true, None, None, now)
        } else {
            condition(
                &old_conditions,
                type_,
                false,
                Some("ContainersNotReady"),
                Some(format!(
                    "containers with unready status: [{}]",
                    unready.join(" ")
                )),
                now,
            )
        }
    };
    conditions.push(readiness("Ready"));
    conditions.push(readiness("ContainersReady"));
    conditions.push(
        old_conditions
            .iter()
            .find(|c| c.type_ == "PodScheduled")
            .cloned()
            .unwrap_or_else(|| condition(&[], "PodScheduled", true, None, None, now)),
    );
    if let Some(message) = input.evicted {
        conditions.push(condition(
            &old_conditions,
            "DisruptionTarget",
            true,
            Some("TerminationByKubelet"),
            Some(message.to_string()),
            now,
        ));
    }
    // Conditions others own (readiness gates, DisruptionTarget) stay as they were.
    for c in &old_conditions {
        if !conditions.iter().any(|n| n.type_ == c.type_) {
            conditions.push(c.clone());
        }
    }

    let host_network = input
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    // As kubelet: a host-network Pod's IP is the node's, once set never changed.
    let pod_ip = if host_network {
        old.pod_ip
            .clone()
            .or_else(|| Some(input.host_ip.to_string()))
    } else {
        input
            .actual
            .ready_sandbox()
            .and_then(|s| s.ip)
            .map(|ip| ip.to_string())
            .or_else(|| old.pod_ip.clone())
    };
    PodStatus {
        conditions: Some(conditions),
        container_statuses: Some(app_statuses),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        host_ip: Some(input.host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: input.host_ip.to_string(),
        }]),
        pod_ip: pod_ip.clone(),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip }]),
        phase: Some(phase.to_string()),
        reason: input
            .evicted
            .map(|_| "Evicted".to_string())
            .or(old.reason.clone()),
        message: input.evicted.map(str::to_string).or(old.message.clone()),
        qos_class: old.qos_class.clone(),
        start_time: old.start_time.clone().or_else(|| Some(format::time(now))),
        ..old
    }
}

/// Whether two statuses differ in anything the API would store (compared as JSON, so an
/// absent list and an empty one are told apart exactly as the server tells them).
pub fn differs(a: &PodStatus, b: &PodStatus) -> bool {
    serde_json::to_value(a).ok() != serde_json::to_value(b).ok()
}

#[cfg(test)]
mod tests;

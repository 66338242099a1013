//! The pure heart of a pod worker: what the runtime holds for one Pod ([`ActualPod`]) and
//! what to do about it ([`compute_pod_actions`], after kubelet's `computePodActions`).
//!
//! The worker gathers the actual state from `list_sandboxes`/`list_containers` (by the
//! labels it put there, so a restarted agent finds what an earlier one made), calls the
//! planner, and executes the result. Everything here is plain data and tested by tables.

use k8s_openapi::api::core::v1::{Container, Pod};
use runtime::{ContainerState, ContainerStatus, SandboxStatus, labels};

/// What the runtime holds for one Pod UID.
#[derive(Clone, Debug, Default)]
pub struct ActualPod {
    /// Its sandboxes, newest first.
    pub sandboxes: Vec<SandboxStatus>,
    /// Its containers, any sandbox.
    pub containers: Vec<ContainerStatus>,
}

/// The attempt label of a container (0 when missing).
pub fn attempt_of(c: &ContainerStatus) -> u32 {
    c.labels
        .get(labels::CONTAINER_ATTEMPT)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

/// The container-name label of a container.
pub fn name_of(c: &ContainerStatus) -> &str {
    c.labels
        .get(labels::CONTAINER_NAME)
        .map(String::as_str)
        .unwrap_or("")
}

impl ActualPod {
    /// The state of `uid` among everything the runtime lists.
    pub fn of(uid: &str, sandboxes: &[SandboxStatus], containers: &[ContainerStatus]) -> ActualPod {
        let mine = |l: &std::collections::BTreeMap<String, String>| {
            l.get(labels::POD_UID).map(String::as_str) == Some(uid)
        };
        let mut sandboxes: Vec<SandboxStatus> = sandboxes
            .iter()
            .filter(|s| mine(&s.labels))
            .cloned()
            .collect();
        sandboxes.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        let containers = containers
            .iter()
            .filter(|c| mine(&c.labels))
            .cloned()
            .collect();
        ActualPod {
            sandboxes,
            containers,
        }
    }

    /// The newest sandbox, when it is ready.
    pub fn ready_sandbox(&self) -> Option<&SandboxStatus> {
        self.sandboxes.first().filter(|s| s.ready)
    }

    /// The instances of container `name`, newest (highest attempt) first.
    pub fn instances(&self, name: &str) -> Vec<&ContainerStatus> {
        let mut v: Vec<&ContainerStatus> = self
            .containers
            .iter()
            .filter(|c| name_of(c) == name)
            .collect();
        v.sort_by(|a, b| {
            attempt_of(b)
                .cmp(&attempt_of(a))
                .then(b.created_at.cmp(&a.created_at))
        });
        v
    }

    /// The newest instance of container `name`.
    pub fn latest(&self, name: &str) -> Option<&ContainerStatus> {
        self.instances(name).into_iter().next()
    }

    /// Whether anything of this Pod runs.
    pub fn any_running(&self) -> bool {
        self.containers
            .iter()
            .any(|c| c.state == ContainerState::Running)
            || self.sandboxes.iter().any(|s| s.ready)
    }
}

/// One container to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Start {
    /// An init container (index into `spec.initContainers`) or an app container.
    pub init: bool,
    /// Its index in the spec list.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// The attempt the new instance gets (its restart count).
    pub attempt: u32,
    /// When the previous instance finished, for a restart (the crash back-off runs from it).
    pub restart_after: Option<std::time::SystemTime>,
    /// A created-but-never-started instance to start instead of making a new one.
    pub created: Option<String>,
}

/// What to do for a Pod, in order: kill the old sandbox and its containers, make a sandbox,
/// then start containers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodActions {
    /// Stop and remove every sandbox and container of the Pod (its sandbox died).
    pub kill_pod: bool,
    /// Make a new sandbox.
    pub create_sandbox: bool,
    /// Containers to start, in order. At most one init container; init containers come
    /// before any app container.
    pub start: Vec<Start>,
    /// The Pod has finished: nothing runs and nothing will restart.
    pub done: bool,
    /// An init container failed under `restartPolicy: Never`: the Pod fails.
    pub init_failed: bool,
}

/// Whether a container that exited with `code` restarts under `policy`.
pub fn should_restart(policy: &str, code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => code != 0,
        _ => true,
    }
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn init_containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[])
}

fn app_containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[])
}

/// What to do so the runtime matches the Pod's spec (a live Pod: not being deleted).
pub fn compute_pod_actions(pod: &Pod, actual: &ActualPod) -> PodActions {
    let policy = restart_policy(pod);
    let mut actions = PodActions::default();
    let next_attempt = |name: &str| actual.latest(name).map_or(0, |c| attempt_of(c) + 1);

    if actual.ready_sandbox().is_none() {
        // The sandbox is missing or died. A finished Never pod stays finished (kubelet does
        // not recreate the sandbox of a pod whose containers already ran).
        let ran_before = !actual.containers.is_empty();
        if ran_before && policy == "Never" {
            actions.done = true;
            return actions;
        }
        actions.kill_pod = !actual.sandboxes.is_empty() || !actual.containers.is_empty();
        actions.create_sandbox = true;
        // A new sandbox runs the init containers again, from the first.
        if let Some(first) = init_containers(pod).first() {
            actions.start.push(Start {
                init: true,
                index: 0,
                name: first.name.clone(),
                attempt: next_attempt(&first.name),
                restart_after: None,
                created: None,
            });
        } else {
            for (index, c) in app_containers(pod).iter().enumerate() {
                actions.start.push(Start {
                    init: false,
                    index,
                    name: c.name.clone(),
                    attempt: next_attempt(&c.name),
                    restart_after: None,
                    created: None,
                });
            }
        }
        return actions;
    }

    // Init containers: one at a time, in order, each to success before the next.
    for (index, c) in init_containers(pod).iter().enumerate() {
        let start = |restart_after, created| Start {
            init: true,
            index,
            name: c.name.clone(),
            attempt: next_attempt(&c.name),
            restart_after,
            created,
        };
        match actual.latest(&c.name) {
            None => {
                actions.start.push(start(None, None));
                return actions;
            }
            Some(s) => match s.state {
                ContainerState::Exited if s.exit_code == Some(0) => continue,
                ContainerState::Exited => {
                    if policy == "Never" {
                        actions.init_failed = true;
                        actions.done = true;
                    } else {
                        actions.start.push(start(s.finished_at, None));
                    }
                    return actions;
                }
                ContainerState::Created => {
                    actions.start.push(Start {
                        attempt: attempt_of(s),
                        ..start(None, Some(s.id.clone()))
                    });
                    return actions;
                }
                ContainerState::Running | ContainerState::Unknown => return actions,
            },
        }
    }

    let mut finished = 0;
    for (index, c) in app_containers(pod).iter().enumerate() {
        let start = |restart_after, created| Start {
            init: false,
            index,
            name: c.name.clone(),
            attempt: next_attempt(&c.name),
            restart_after,
            created,
        };
        match actual.latest(&c.name) {
            None => actions.start.push(start(None, None)),
            Some(s) => match s.state {
                ContainerState::Running | ContainerState::Unknown => {}
                ContainerState::Created => actions.start.push(Start {
                    attempt: attempt_of(s),
                    ..start(None, Some(s.id.clone()))
                }),
                ContainerState::Exited => {
                    let code = s.exit_code.unwrap_or(-1);
                    if should_restart(policy, code) {
                        actions.start.push(start(s.finished_at, None));
                    } else {
                        finished += 1;
                    }
                }
            },
        }
    }
    actions.done = finished == app_containers(pod).len() && finished > 0;
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime};

    fn pod(policy: &str, inits: &[&str], apps: &[&str]) -> Pod {
        let c = |n: &&str| json!({"name": n, "image": "busybox"});
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u"},
            "spec": {
                "restartPolicy": policy,
                "initContainers": inits.iter().map(c).collect::<Vec<_>>(),
                "containers": apps.iter().map(c).collect::<Vec<_>>(),
            }
        }))
        .unwrap()
    }

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + s)
    }

    fn labels(name: &str, attempt: u32) -> BTreeMap<String, String> {
        [
            (labels::POD_UID.to_string(), "u".to_string()),
            (labels::CONTAINER_NAME.to_string(), name.to_string()),
            (labels::CONTAINER_ATTEMPT.to_string(), attempt.to_string()),
        ]
        .into()
    }

    fn sandbox(ready: bool) -> SandboxStatus {
        SandboxStatus {
            id: "sb".into(),
            pod_uid: "u".into(),
            ready,
            ip: None,
            created_at: t(0),
            labels: [(labels::POD_UID.to_string(), "u".to_string())].into(),
        }
    }

    /// A container: `state` is `R` running, `C` created, or an exit code.
    fn ctr(name: &str, attempt: u32, state: &str) -> ContainerStatus {
        let (st, code) = match state {
            "R" => (ContainerState::Running, None),
            "C" => (ContainerState::Created, None),
            code => (ContainerState::Exited, Some(code.parse().unwrap())),
        };
        ContainerStatus {
            id: format!("{name}-{attempt}"),
            sandbox_id: "sb".into(),
            state: st,
            image: "busybox".into(),
            image_id: "busybox".into(),
            created_at: t(u64::from(attempt)),
            started_at: Some(t(u64::from(attempt))),
            finished_at: code.map(|_| t(u64::from(attempt) + 1)),
            exit_code: code,
            reason: None,
            message: None,
            log_path: Default::default(),
            labels: labels(name, attempt),
        }
    }

    fn actual(sb: Option<bool>, containers: Vec<ContainerStatus>) -> ActualPod {
        ActualPod {
            sandboxes: sb.map(sandbox).into_iter().collect(),
            containers,
        }
    }

    /// (name, attempt, restart?) of the starts.
    fn starts(a: &PodActions) -> Vec<(String, u32, bool)> {
        a.start
            .iter()
            .map(|s| (s.name.clone(), s.attempt, s.restart_after.is_some()))
            .collect()
    }

    #[test]
    fn table() {
        struct Case {
            what: &'static str,
            pod: Pod,
            actual: ActualPod,
            kill: bool,
            sandbox: bool,
            start: Vec<(&'static str, u32, bool)>,
            done: bool,
            init_failed: bool,
        }
        let cases = vec![
            Case {
                what: "new pod: sandbox and every app container",
                pod: pod("Always", &[], &["a", "b"]),
                actual: actual(None, vec![]),
                kill: false,
                sandbox: true,
                start: vec![("a", 0, false), ("b", 0, false)],
                done: false,
                init_failed: false,
            },
            Case {
                what: "new pod with init containers: only the first init container",
                pod: pod("Always", &["i1", "i2"], &["a"]),
                actual: actual(None, vec![]),
                kill: false,
                sandbox: true,
                start: vec![("i1", 0, false)],
                done: false,
                init_failed: false,
            },
            Case {
                what: "first init container running: wait",
                pod: pod("Always", &["i1", "i2"], &["a"]),
                actual: actual(Some(true), vec![ctr("i1", 0, "R")]),
                kill: false,
                sandbox: false,
                start: vec![],
                done: false,
                init_failed: false,
            },
            Case {
                what: "first init container done: the second",
                pod: pod("Always", &["i1", "i2"], &["a"]),
                actual: actual(Some(true), vec![ctr("i1", 0, "0")]),
                kill: false,
                sandbox: false,
                start: vec![("i2", 0, false)],
                done: false,
                init_failed: false,
            },
            Case {
                what: "all init containers done: the app containers",
                pod: pod("Always", &["i1", "i2"], &["a"]),
                actual: actual(Some(true), vec![ctr("i1", 0, "0"), ctr("i2", 0, "0")]),
                kill: false,
                sandbox: false,
                start: vec![("a", 0, false)],
                done: false,
                init_failed: false,
            },
            Case {
                what: "init container failed, Always: restart it with back-off",
                pod: pod("Always", &["i1"], &["a"]),
                actual: actual(Some(true), vec![ctr("i1", 0, "1")]),
                kill: false,
                sandbox: false,
                start: vec![("i1", 1, true)],
                done: false,
                init_failed: false,
            },
            Case {
                what: "init container failed, Never: the pod fails",
                pod: pod("Never", &["i1"], &["a"]),
                actual: actual(Some(true), vec![ctr("i1", 0, "1")]),
                kill: false,
                sandbox: false,
                start: vec![],
                done: true,
                init_failed: true,
            },
            Case {
                what: "app container running: nothing",
                pod: pod("Always", &[], &["a"]),
                actual: actual(Some(true), vec![ctr("a", 0, "R")]),
                kill: false,
                sandbox: false,
                start: vec![],
                done: false,
                init_failed: false,
            },
            Case {
                what: "Always: a completed container restarts",
                pod: pod("Always", &[], &["a"]),
                actual: actual(Some(true), vec![ctr("a", 0, "0")]),
                kill: false,
                sandbox: false,
                start: vec![("a", 1, true)],
                done: false,
                init_failed: false,
            },
            Case {
                what: "OnFailure: a failed container restarts at the next attempt",
                pod: pod("OnFailure", &[], &["a"]),
                actual: actual(Some(true), vec![ctr("a", 0, "1"), ctr("a", 1, "2")]),
                kill: false,
                sandbox: false,
                start: vec![("a", 2, true)],
                done: false,
                init_failed: false,
            },
            Case {
                what: "OnFailure: a completed container stays; the pod is done",
                pod: pod("OnFailure", &[], &["a"]),
                actual: actual(Some(true), vec![ctr("a", 0, "0")]),
                kill: false,
                sandbox: false,
                start: vec![],
                done: true,
                init_failed: false,
            },
            Case {
                what: "Never: one done, one running",
                pod: pod("Never", &[], &["a", "b"]),
                actual: actual(Some(true), vec![ctr("a", 0, "1"), ctr("b", 0, "R")]),
                kill: false,
                sandbox: false,
                start: vec![],
                done: false,
                init_failed: false,
            },
            Case {
                what: "created but not started: start that instance",
                pod: pod("Always", &[], &["a"]),
                actual: actual(Some(true), vec![ctr("a", 0, "1"), ctr("a", 1, "C")]),
                kill: false,
                sandbox: false,
                start: vec![("a", 1, false)],
                done: false,
                init_failed: false,
            },
            Case {
                what: "sandbox died: kill the pod, new sandbox, init containers again",
                pod: pod("Always", &["i1"], &["a"]),
                actual: actual(Some(false), vec![ctr("i1", 0, "0"), ctr("a", 3, "137")]),
                kill: true,
                sandbox: true,
                start: vec![("i1", 1, false)],
                done: false,
                init_failed: false,
            },
            Case {
                what: "sandbox gone after a Never pod ran: nothing more",
                pod: pod("Never", &[], &["a"]),
                actual: actual(Some(false), vec![ctr("a", 0, "0")]),
                kill: false,
                sandbox: false,
                start: vec![],
                done: true,
                init_failed: false,
            },
        ];
        for c in cases {
            let got = compute_pod_actions(&c.pod, &c.actual);
            assert_eq!(got.kill_pod, c.kill, "{}: kill", c.what);
            assert_eq!(got.create_sandbox, c.sandbox, "{}: sandbox", c.what);
            let want: Vec<(String, u32, bool)> = c
                .start
                .iter()
                .map(|(n, a, r)| (n.to_string(), *a, *r))
                .collect();
            assert_eq!(starts(&got), want, "{}: starts", c.what);
            assert_eq!(got.done, c.done, "{}: done", c.what);
            assert_eq!(got.init_failed, c.init_failed, "{}: init failed", c.what);
        }
    }

    #[test]
    fn created_instance_is_reused() {
        let a = compute_pod_actions(
            &pod("Always", &[], &["a"]),
            &actual(Some(true), vec![ctr("a", 0, "C")]),
        );
        assert_eq!(a.start[0].created.as_deref(), Some("a-0"));
        assert_eq!(a.start[0].attempt, 0);
    }
}

use super::*;
use crate::plan::ActualPod;
use runtime::{SandboxStatus, labels};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

fn t(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
}

fn pod(policy: &str, inits: &[&str], apps: &[&str]) -> Pod {
    let c = |n: &&str| json!({"name": n, "image": "alpine", "volumeMounts": [{"name": "v", "mountPath": "/v", "readOnly": true}]});
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "default", "uid": "u"},
        "spec": {"restartPolicy": policy, "nodeName": "n1",
            "initContainers": inits.iter().map(c).collect::<Vec<_>>(),
            "containers": apps.iter().map(c).collect::<Vec<_>>()},
        "status": {"phase": "Pending", "qosClass": "BestEffort", "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2023-11-14T22:13:20Z"}]}
    }))
    .unwrap()
}

fn sandbox() -> SandboxStatus {
    SandboxStatus {
        id: "sb".into(),
        pod_uid: "u".into(),
        ready: true,
        ip: Some(IpAddr::V4(Ipv4Addr::new(10, 88, 0, 7))),
        created_at: t(0),
        labels: [(labels::POD_UID.to_string(), "u".to_string())].into(),
    }
}

fn ctr(name: &str, attempt: u32, state: ContainerState, code: Option<i32>) -> ContainerStatus {
    let labels: BTreeMap<String, String> = [
        (labels::POD_UID.to_string(), "u".to_string()),
        (labels::CONTAINER_NAME.to_string(), name.to_string()),
        (labels::CONTAINER_ATTEMPT.to_string(), attempt.to_string()),
    ]
    .into();
    ContainerStatus {
        id: format!("{name}{attempt}"),
        sandbox_id: "sb".into(),
        state,
        image: "x".into(),
        image_id: "x".into(),
        created_at: t(u64::from(attempt) * 10),
        started_at: Some(t(u64::from(attempt) * 10 + 1)),
        finished_at: code.map(|_| t(u64::from(attempt) * 10 + 5)),
        exit_code: code,
        reason: None,
        message: None,
        log_path: Default::default(),
        labels,
    }
}

fn images() -> HashMap<String, ImageRef> {
    [(
        "alpine".to_string(),
        ImageRef {
            image: "docker.io/library/alpine:latest".into(),
            image_id: "docker.io/library/alpine@sha256:abc".into(),
        },
    )]
    .into()
}

fn compute(pod: &Pod, actual: &ActualPod, waiting: &HashMap<String, Waiting>) -> Value {
    let images = images();
    let input = StatusInput {
        pod,
        actual,
        waiting,
        images: &images,
        host_ip: "127.0.0.1",
        now: t(100),
        evicted: None,
    };
    serde_json::to_value(pod_status(&input)).unwrap()
}

fn conditions(s: &Value) -> Vec<(String, String, String)> {
    s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn pending_before_the_sandbox() {
    let p = pod("Always", &[], &["date"]);
    let s = compute(&p, &ActualPod::default(), &HashMap::new());
    assert_eq!(s["phase"], "Pending");
    assert_eq!(
        s["containerStatuses"][0],
        json!({"name": "date", "image": "alpine", "imageID": "", "lastState": {}, "ready": false,
               "restartCount": 0, "started": false, "state": {"waiting": {"reason": "ContainerCreating"}}})
    );
    let cs = conditions(&s);
    let types: Vec<&str> = cs.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        types,
        [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled"
        ]
    );
    assert_eq!(cs[0].1, "False");
    assert_eq!(
        s["conditions"][2]["message"],
        "containers with unready status: [date]"
    );
    assert_eq!(
        s["conditions"][4]["lastTransitionTime"], "2023-11-14T22:13:20Z",
        "PodScheduled is kept"
    );
    assert_eq!(s["qosClass"], "BestEffort");
    assert_eq!(s["hostIP"], "127.0.0.1");
    assert_eq!(s["hostIPs"], json!([{"ip": "127.0.0.1"}]));
    assert!(s.get("podIP").is_none());
    assert_eq!(s["startTime"], "2023-11-14T22:15:00Z");
}

#[test]
fn running() {
    let p = pod("Always", &[], &["date"]);
    let actual = ActualPod {
        sandboxes: vec![sandbox()],
        containers: vec![ctr("date", 0, ContainerState::Running, None)],
    };
    let s = compute(&p, &actual, &HashMap::new());
    assert_eq!(s["phase"], "Running");
    assert_eq!(s["podIP"], "10.88.0.7");
    assert_eq!(s["podIPs"], json!([{"ip": "10.88.0.7"}]));
    let c = &s["containerStatuses"][0];
    assert_eq!(c["containerID"], "runc://date0");
    assert_eq!(c["image"], "docker.io/library/alpine:latest");
    assert_eq!(c["imageID"], "docker.io/library/alpine@sha256:abc");
    assert_eq!(c["ready"], true);
    assert_eq!(c["started"], true);
    assert_eq!(
        c["state"],
        json!({"running": {"startedAt": "2023-11-14T22:13:21Z"}})
    );
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "v", "mountPath": "/v", "readOnly": true, "recursiveReadOnly": "Disabled"}])
    );
    assert!(conditions(&s).iter().all(|c| c.1 == "True"));
}

#[test]
fn crash_loop_shows_last_state() {
    let p = pod("Always", &[], &["date"]);
    let actual = ActualPod {
        sandboxes: vec![sandbox()],
        containers: vec![
            ctr("date", 0, ContainerState::Exited, Some(1)),
            ctr("date", 1, ContainerState::Exited, Some(2)),
        ],
    };
    let waiting: HashMap<String, Waiting> = [(
        "date".to_string(),
        Waiting {
            reason: "CrashLoopBackOff".into(),
            message: Some("back-off 10s restarting failed container=date pod=p_default(u)".into()),
        },
    )]
    .into();
    let s = compute(&p, &actual, &waiting);
    assert_eq!(s["phase"], "Running", "a crash-looping pod is Running");
    let c = &s["containerStatuses"][0];
    assert_eq!(c["restartCount"], 1);
    assert_eq!(c["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 2);
    assert_eq!(c["lastState"]["terminated"]["reason"], "Error");
    assert_eq!(c["lastState"]["terminated"]["containerID"], "runc://date1");
    // Without a waiting note (restarting right away) the latest exit shows as terminated, with
    // the one before as lastState.
    let s = compute(&p, &actual, &HashMap::new());
    let c = &s["containerStatuses"][0];
    assert_eq!(c["state"]["terminated"]["exitCode"], 2);
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 1);
}

#[test]
fn phases_by_policy() {
    let done = |policy: &str, codes: &[i32]| {
        let names: Vec<String> = (0..codes.len()).map(|i| format!("c{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let p = pod(policy, &[], &refs);
        let containers = codes
            .iter()
            .enumerate()
            .map(|(i, code)| ctr(&format!("c{i}"), 0, ContainerState::Exited, Some(*code)))
            .collect();
        let actual = ActualPod {
            sandboxes: vec![sandbox()],
            containers,
        };
        compute(&p, &actual, &HashMap::new())["phase"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(done("Never", &[0, 0]), "Succeeded");
    assert_eq!(done("Never", &[0, 1]), "Failed");
    assert_eq!(done("OnFailure", &[0]), "Succeeded");
    assert_eq!(done("OnFailure", &[1]), "Running");
    assert_eq!(done("Always", &[0]), "Running");
    let p = pod("Never", &[], &["c0"]);
    let actual = ActualPod {
        sandboxes: vec![sandbox()],
        containers: vec![ctr("c0", 0, ContainerState::Exited, Some(0))],
    };
    let s = compute(&p, &actual, &HashMap::new());
    assert_eq!(
        s["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    assert_eq!(
        conditions(&s)[2],
        ("Ready".into(), "False".into(), "PodCompleted".into())
    );
}

#[test]
fn init_containers() {
    let p = pod("Always", &["i1", "i2"], &["app"]);
    let actual = ActualPod {
        sandboxes: vec![sandbox()],
        containers: vec![
            ctr("i1", 0, ContainerState::Exited, Some(0)),
            ctr("i2", 0, ContainerState::Running, None),
        ],
    };
    let s = compute(&p, &actual, &HashMap::new());
    assert_eq!(s["phase"], "Pending");
    assert_eq!(
        s["initContainerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    assert_eq!(
        s["initContainerStatuses"][1]["state"]["running"]["startedAt"],
        "2023-11-14T22:13:21Z"
    );
    assert_eq!(
        s["containerStatuses"][0]["state"]["waiting"]["reason"],
        "PodInitializing"
    );
    assert_eq!(
        conditions(&s)[1],
        (
            "Initialized".into(),
            "False".into(),
            "ContainersNotInitialized".into()
        )
    );
    assert_eq!(
        s["conditions"][1]["message"],
        "containers with incomplete status: [i2]"
    );

    let never = pod("Never", &["i1"], &["app"]);
    let actual = ActualPod {
        sandboxes: vec![sandbox()],
        containers: vec![ctr("i1", 0, ContainerState::Exited, Some(1))],
    };
    let s = compute(&never, &actual, &HashMap::new());
    assert_eq!(s["phase"], "Failed");
    assert_eq!(
        s["initContainerStatuses"][0]["state"]["terminated"]["reason"],
        "Error"
    );
}

#[test]
fn transition_times_are_kept_and_terminal_phases_stay() {
    let mut p = pod("Always", &[], &["date"]);
    let actual = ActualPod {
        sandboxes: vec![sandbox()],
        containers: vec![ctr("date", 0, ContainerState::Running, None)],
    };
    let first: PodStatus = serde_json::from_value(compute(&p, &actual, &HashMap::new())).unwrap();
    p.status = Some(first.clone());
    let images = images();
    let later = StatusInput {
        pod: &p,
        actual: &actual,
        waiting: &HashMap::new(),
        images: &images,
        host_ip: "127.0.0.1",
        now: t(500),
        evicted: None,
    };
    let second = pod_status(&later);
    assert!(
        !differs(&first, &second),
        "nothing changed, so nothing is written"
    );
    let mut done = p.clone();
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let s = compute(&done, &actual, &HashMap::new());
    assert_eq!(s["phase"], "Succeeded");
}

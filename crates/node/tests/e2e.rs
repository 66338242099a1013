//! The agent against an in-process API server (memory store, TLS, port 0) with the fake
//! runtime: a Pod is scheduled, goes Pending -> Running with kubelet's status and events,
//! crash-loops with back-off, and on deletion disappears only after its containers are gone.

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use node::fake::{Behaviour, Call, FakeImages, FakeRuntime};
use node::{Agent, NodeConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

struct Cluster {
    client: kube::Client,
    runtime: Arc<FakeRuntime>,
    images: Arc<FakeImages>,
    stop: CancellationToken,
    root: tempfile::TempDir,
    agent_stop: CancellationToken,
    agent: tokio::task::JoinHandle<node::Result<()>>,
}

/// Starts an agent on `root` with the given runtime; returns its stop token and task once the
/// Node is Ready.
async fn start_agent(
    client: &kube::Client,
    runtime: Arc<FakeRuntime>,
    images: Arc<FakeImages>,
    root: &std::path::Path,
) -> (CancellationToken, tokio::task::JoinHandle<node::Result<()>>) {
    let mut config = NodeConfig::new(
        "node-1",
        root.join("node"),
        root.join("logs"),
        client.clone(),
        runtime,
        images,
    );
    config.resync = Duration::from_secs(2);
    config.runtime_version = "runc://1.1.12".into();
    let agent = Agent::new(config);
    let mut ready = agent.ready();
    let stop = CancellationToken::new();
    let task = tokio::spawn(agent.run(stop.clone()));
    tokio::time::timeout(Duration::from_secs(20), ready.wait_for(|r| *r))
        .await
        .expect("node ready in time")
        .unwrap();
    (stop, task)
}

impl Cluster {
    /// Stops the agent (containers stay) and starts a new one on the same root and runtime.
    async fn restart_agent(&mut self) {
        self.stop_agent().await;
        let (stop, task) = start_agent(
            &self.client,
            self.runtime.clone(),
            self.images.clone(),
            self.root.path(),
        )
        .await;
        self.agent_stop = stop;
        self.agent = task;
    }

    async fn stop_agent(&mut self) {
        self.agent_stop.cancel();
        (&mut self.agent).await.unwrap().unwrap();
    }

    async fn stop(mut self) {
        self.stop_agent().await;
        self.stop.cancel();
    }
}

async fn start() -> Cluster {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pki = apiserver::pki::Pki::generate().expect("pki");
    let state = apiserver::State::new(Arc::new(store::MemoryStore::new()));
    apiserver::controllers::bootstrap(&state)
        .await
        .expect("bootstrap");
    state.set_ready();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let tls = apiserver::tls_config(&pki).unwrap();
    let s = stop.clone();
    tokio::spawn(apiserver::serve(listener, state, tls, async move {
        s.cancelled().await
    }));

    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: https://{addr}\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: t\n  context:\n    cluster: t\n    user: admin\ncurrent-context: t\n",
        b64(&pki.ca_cert),
        b64(&pki.admin_cert),
        b64(&pki.admin_key)
    );
    let kc = kube::config::Kubeconfig::from_yaml(&kubeconfig).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    let client = kube::Client::try_from(config).unwrap();

    let runtime = Arc::new(FakeRuntime::new());
    let images = Arc::new(FakeImages::new());
    let root = tempfile::tempdir().unwrap();
    tokio::spawn(controllers::run_scheduler(client.clone(), stop.clone()));
    let (agent_stop, agent) =
        start_agent(&client, runtime.clone(), images.clone(), root.path()).await;
    Cluster {
        client,
        runtime,
        images,
        stop,
        root,
        agent_stop,
        agent,
    }
}

async fn wait_for<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pod(name: &str, spec: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

async fn events_of(client: &kube::Client, uid: &str) -> Vec<(String, String, String)> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let mut v: Vec<Event> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.uid.as_deref() == Some(uid))
        .collect();
    v.sort_by_key(|e| e.metadata.name.clone());
    v.into_iter()
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
                e.source.and_then(|s| s.component).unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_lifecycle() {
    let c = start().await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    let n = nodes.get("node-1").await.unwrap();
    let st = n.status.unwrap();
    let ready = st
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
    assert_eq!(
        ready.message.as_deref(),
        Some("kubelet is posting ready status")
    );
    assert_eq!(
        st.node_info.unwrap().container_runtime_version,
        "runc://1.1.12"
    );
    assert_eq!(st.capacity.unwrap()["pods"].0, "110");

    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let spec = serde_json::json!({
        "terminationGracePeriodSeconds": 5,
        "volumes": [{"name": "cache", "emptyDir": {}}],
        "containers": [{"name": "date", "image": "alpine",
            "command": ["sh", "-c", "echo $(GREETING)"],
            "env": [{"name": "GREETING", "value": "hi"}, {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}],
    });
    let created = pods
        .create(&PostParams::default(), &pod("date-tail", spec))
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();

    let running = wait_for("Running", 20, async || {
        let p = pods.get("date-tail").await.ok()?;
        let s = p.status.clone()?;
        (s.phase.as_deref() == Some("Running")
            && s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True"))
        .then_some(p)
    })
    .await;
    let s = running.status.unwrap();
    assert_eq!(running.spec.unwrap().node_name.as_deref(), Some("node-1"));
    let types: Vec<String> = s.conditions.unwrap().into_iter().map(|c| c.type_).collect();
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
    let cs = &s.container_statuses.unwrap()[0];
    assert!(cs.container_id.as_deref().unwrap().starts_with("runc://"));
    assert_eq!(cs.image, "docker.io/library/alpine:latest");
    assert!(cs.image_id.starts_with("docker.io/library/alpine@sha256:"));
    assert_eq!(cs.restart_count, 0);
    assert!(cs.state.as_ref().unwrap().running.is_some());
    assert_eq!(s.host_ip.as_deref(), Some("127.0.0.1"));
    assert!(s.pod_ip.is_some());
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    assert!(s.start_time.is_some());

    let id = cs
        .container_id
        .as_deref()
        .unwrap()
        .trim_start_matches("runc://")
        .to_string();
    let config = c.runtime.config(&id).unwrap();
    assert_eq!(config.command, ["sh", "-c", "echo hi"]);
    assert!(
        config
            .env
            .contains(&("POD".to_string(), "date-tail".to_string()))
    );
    let empty_dir = node::volumes::empty_dir_path(&c.root.path().join("node"), &uid, "cache");
    assert!(empty_dir.is_dir());
    assert!(
        config
            .mounts
            .iter()
            .any(|m| m.host_path == empty_dir && m.container_path == "/cache")
    );
    assert_eq!(c.images.pulls(), ["docker.io/library/alpine:latest"]);

    let events = wait_for("events", 10, async || {
        let e = events_of(&c.client, &uid).await;
        (e.len() >= 5).then_some(e)
    })
    .await;
    let reasons: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        reasons,
        ["Scheduled", "Pulling", "Pulled", "Created", "Started"],
        "{events:?}"
    );
    assert_eq!(
        events[0].1,
        "Successfully assigned default/date-tail to node-1"
    );
    assert_eq!(events[0].2, "default-scheduler");
    assert_eq!(events[1].1, "Pulling image \"alpine\"");
    assert!(
        events[2]
            .1
            .starts_with("Successfully pulled image \"alpine\" in "),
        "{}",
        events[2].1
    );
    assert!(
        events[2].1.ends_with("Image size: 3623807 bytes."),
        "{}",
        events[2].1
    );
    assert_eq!(events[3].1, "Created container: date");
    assert_eq!(events[4].1, "Started container date");
    assert_eq!(events[4].2, "kubelet");

    // A crash: restarted at once (restartCount 1), the emptyDir kept.
    std::fs::write(empty_dir.join("data"), "kept").unwrap();
    c.runtime.set_behaviour("date", Behaviour::Exit(1));
    c.runtime.exit(&id, 1);
    wait_for("restart", 10, async || {
        let p = pods.get("date-tail").await.ok()?;
        let cs = p.status?.container_statuses?.into_iter().next()?;
        (cs.restart_count == 1).then_some(())
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(empty_dir.join("data")).unwrap(),
        "kept"
    );
    // The second exit backs off.
    let backoff = wait_for("CrashLoopBackOff", 10, async || {
        let p = pods.get("date-tail").await.ok()?;
        let cs = p.status?.container_statuses?.into_iter().next()?;
        let w = cs.state?.waiting?;
        (w.reason.as_deref() == Some("CrashLoopBackOff")).then_some((w.message?, cs.last_state?))
    })
    .await;
    assert_eq!(
        backoff.0,
        format!("back-off 10s restarting failed container=date pod=date-tail_default({uid})")
    );
    assert_eq!(backoff.1.terminated.unwrap().exit_code, 1);

    // Deletion: the object stays until its containers are gone, then goes.
    pods.delete("date-tail", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("pod gone", 20, async || {
        match pods.get_opt("date-tail").await {
            Ok(None) => Some(()),
            _ => None,
        }
    })
    .await;
    assert!(c.runtime.list_containers_now().is_empty());
    assert!(!empty_dir.exists());
    assert!(
        c.runtime
            .calls()
            .iter()
            .any(|call| matches!(call, Call::RemoveSandbox(_)))
    );

    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pull_failure_and_init_containers() {
    let c = start().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    c.images.fail_pulls(
        "nope:1",
        "failed to pull and unpack image \"docker.io/library/nope:1\": not found",
    );
    let p = pods
        .create(
            &PostParams::default(),
            &pod(
                "bad",
                serde_json::json!({"containers": [{"name": "c", "image": "nope:1"}]}),
            ),
        )
        .await
        .unwrap();
    let uid = p.metadata.uid.unwrap();
    wait_for("ErrImagePull", 15, async || {
        let p = pods.get("bad").await.ok()?;
        let w = p
            .status?
            .container_statuses?
            .into_iter()
            .next()?
            .state?
            .waiting?;
        (w.reason.as_deref() == Some("ErrImagePull")).then_some(())
    })
    .await;
    wait_for("ImagePullBackOff", 15, async || {
        let p = pods.get("bad").await.ok()?;
        let w = p
            .status?
            .container_statuses?
            .into_iter()
            .next()?
            .state?
            .waiting?;
        (w.reason.as_deref() == Some("ImagePullBackOff")).then_some(())
    })
    .await;
    let events = events_of(&c.client, &uid).await;
    assert!(events.iter().any(|e| {
        e.0 == "Failed"
            && e.1
                .starts_with("Failed to pull image \"nope:1\": failed to pull")
    }));
    assert!(
        events
            .iter()
            .any(|e| e.0 == "Failed" && e.1 == "Error: ErrImagePull")
    );
    assert!(
        events
            .iter()
            .any(|e| e.0 == "BackOff" && e.1 == "Back-off pulling image \"nope:1\"")
    );

    // Init containers run one at a time, in order, before the app container.
    let spec = serde_json::json!({
        "initContainers": [{"name": "i1", "image": "busybox:1"}, {"name": "i2", "image": "busybox:1"}],
        "containers": [{"name": "app", "image": "busybox:1"}],
    });
    c.runtime.set_behaviour("i1", Behaviour::Exit(0));
    c.runtime.set_behaviour("i2", Behaviour::Exit(0));
    pods.create(&PostParams::default(), &pod("init", spec))
        .await
        .unwrap();
    let s = wait_for("init pod Running", 20, async || {
        let s = pods.get("init").await.ok()?.status?;
        (s.phase.as_deref() == Some("Running")).then_some(s)
    })
    .await;
    let inits = s.init_container_statuses.unwrap();
    assert!(inits.iter().all(|i| {
        i.state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .reason
            .as_deref()
            == Some("Completed")
    }));
    let order: Vec<String> = c
        .runtime
        .calls()
        .into_iter()
        .filter_map(|call| match call {
            Call::CreateContainer(name, _) if name != "c" => Some(name),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["i1", "i2", "app"]);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_adopts_running_containers() {
    let mut c = start().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let spec = serde_json::json!({"volumes": [{"name": "v", "emptyDir": {}}],
        "containers": [{"name": "app", "image": "busybox:1", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}]});
    let p = pods
        .create(&PostParams::default(), &pod("keep", spec))
        .await
        .unwrap();
    let uid = p.metadata.uid.unwrap();
    let before = wait_for("Running", 20, async || {
        let p = pods.get("keep").await.ok()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(p)
    })
    .await;
    let data = node::volumes::empty_dir_path(&c.root.path().join("node"), &uid, "v").join("f");
    std::fs::write(&data, "x").unwrap();
    let creates = |c: &Cluster| {
        c.runtime
            .calls()
            .iter()
            .filter(|call| matches!(call, Call::CreateContainer(..) | Call::RunSandbox(_)))
            .count()
    };
    let made = creates(&c);
    c.restart_agent().await;
    // Give the new agent a few syncs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(creates(&c), made, "nothing was made again");
    let after = pods.get("keep").await.unwrap();
    assert_eq!(
        after.status, before.status,
        "the adopted pod's status is unchanged"
    );
    assert_eq!(std::fs::read_to_string(&data).unwrap(), "x");

    // A pod deleted while no agent ran is cleaned up by the next one.
    c.stop_agent().await;
    pods.delete(
        "keep",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (stop, task) = start_agent(
        &c.client,
        c.runtime.clone(),
        c.images.clone(),
        c.root.path(),
    )
    .await;
    c.agent_stop = stop;
    c.agent = task;
    wait_for("orphans removed", 10, async || {
        c.runtime.list_containers_now().is_empty().then_some(())
    })
    .await;
    wait_for("volumes removed", 10, async || {
        (!data.exists()).then_some(())
    })
    .await;
    c.stop().await;
}

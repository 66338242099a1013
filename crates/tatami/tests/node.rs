//! The node agent with real containers (runc): init containers, restarts that keep an
//! emptyDir, image pull failures, Pod-to-Pod networking, and a `kill -9` of `tatami up` that
//! leaves containers running for the next `up` to adopt. Needs root and runc (CI has both).

mod common;

use common::{Cluster, eventually};

fn jsonpath(c: &Cluster, pod: &str, path: &str) -> String {
    c.kubectl(&["get", "pod", pod, "-o", &format!("jsonpath={path}")])
        .stdout
}

#[test]
fn an_init_container_fills_an_empty_dir_before_the_app_reads_it() {
    let Some(c) = Cluster::with_containers("node tests") else {
        return;
    };
    c.apply(
        "init",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: init
spec:
  terminationGracePeriodSeconds: 0
  initContainers:
  - name: fill
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo filled-by-init > /work/data.txt"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: app
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "cat /work/data.txt; sleep 3600"]
    volumeMounts: [{name: work, mountPath: /work}]
  volumes:
  - name: work
    emptyDir: {}
"#,
    );
    assert!(
        eventually(60, || jsonpath(&c, "init", "{.status.phase}") == "Running"),
        "{}",
        c.kubectl(&["describe", "pod", "init"]).stdout
    );
    assert_eq!(
        jsonpath(
            &c,
            "init",
            "{.status.initContainerStatuses[0].state.terminated.reason}"
        ),
        "Completed"
    );
    assert!(
        eventually(20, || c.kubectl(&["logs", "init", "-c", "app"]).stdout
            == "filled-by-init\n"),
        "{}",
        c.kubectl(&["logs", "init", "-c", "app"]).stderr
    );
    // The node agent reaches the API server inside the process; its status writes still
    // carry kubelet's field manager, taken from its user agent.
    assert_eq!(
        jsonpath(
            &c,
            "init",
            "{.metadata.managedFields[?(@.subresource==\"status\")].manager}"
        ),
        "kubelet"
    );
}

#[test]
fn a_crash_keeps_the_empty_dir_and_restarts_the_container() {
    let Some(c) = Cluster::with_containers("node tests") else {
        return;
    };
    c.apply(
        "crash",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: crash
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "if [ -f /data/first ]; then echo second-run >> /data/first; sleep 3600; else echo first-run > /data/first; exit 1; fi"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - name: data
    emptyDir: {}
"#,
    );
    let restarted = eventually(60, || {
        jsonpath(&c, "crash", "{.status.containerStatuses[0].restartCount}") == "1"
            && jsonpath(&c, "crash", "{.status.containerStatuses[0].ready}") == "true"
    });
    assert!(
        restarted,
        "{}",
        c.kubectl(&["describe", "pod", "crash"]).stdout
    );
    assert_eq!(
        jsonpath(
            &c,
            "crash",
            "{.status.containerStatuses[0].lastState.terminated.exitCode}"
        ),
        "1"
    );
    assert_eq!(
        jsonpath(
            &c,
            "crash",
            "{.status.containerStatuses[0].lastState.terminated.reason}"
        ),
        "Error"
    );
    let pods = c.kubectl(&["get", "pod", "crash"]);
    let row: Vec<&str> = pods
        .ok()
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        row[..4],
        ["crash", "1/1", "Running", "1"],
        "{}",
        pods.stdout
    );
}

#[test]
fn a_pod_whose_sandbox_died_gets_a_new_one() {
    let Some(c) = Cluster::with_containers("node tests") else {
        return;
    };
    c.apply(
        "sandbox",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: sandbox
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#,
    );
    assert!(eventually(60, || jsonpath(
        &c,
        "sandbox",
        "{.status.phase}"
    ) == "Running"));
    let holder = c.sandbox_holder("sandbox");
    let killed = std::process::Command::new("kill")
        .args(["-9", &holder.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // As kubelet: the Pod's containers are killed and started again in a new sandbox.
    let restarted = eventually(60, || {
        jsonpath(&c, "sandbox", "{.status.containerStatuses[0].restartCount}") == "1"
            && jsonpath(&c, "sandbox", "{.status.containerStatuses[0].ready}") == "true"
    });
    assert!(
        restarted,
        "{}",
        c.kubectl(&["describe", "pod", "sandbox"]).stdout
    );
    assert_ne!(c.sandbox_holder("sandbox"), holder);
    let events = c.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=sandbox,reason=SandboxChanged",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert_eq!(
        events.ok(),
        "Pod sandbox changed, it will be killed and re-created."
    );
}

#[test]
fn a_host_network_pod_has_the_nodes_name_and_address() {
    let Some(c) = Cluster::with_containers("node tests") else {
        return;
    };
    c.apply(
        "hostnet",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hostnet
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "hostname; exec sleep 3600"]
"#,
    );
    assert!(
        eventually(60, || jsonpath(&c, "hostnet", "{.status.phase}")
            == "Running"),
        "{}",
        c.kubectl(&["describe", "pod", "hostnet"]).stdout
    );
    let node = nix::unistd::gethostname().unwrap();
    assert!(eventually(10, || c
        .kubectl(&["logs", "hostnet"])
        .stdout
        .trim()
        == node.to_string_lossy()));
    // As kubelet: the Pod's IP is the node's.
    let host_ip = jsonpath(&c, "hostnet", "{.status.hostIP}");
    assert!(!host_ip.is_empty());
    assert_eq!(jsonpath(&c, "hostnet", "{.status.podIP}"), host_ip);
}

#[test]
fn an_image_that_cannot_be_pulled_shows_err_image_pull_then_back_off() {
    let Some(c) = Cluster::with_containers("node tests") else {
        return;
    };
    c.apply(
        "nope",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: nope
spec:
  containers:
  - name: app
    image: 127.0.0.1:9/nope:1
"#,
    );
    let mut seen = Vec::new();
    let both = eventually(90, || {
        let status = c.kubectl(&["get", "pod", "nope", "--no-headers"]).stdout;
        for reason in ["ErrImagePull", "ImagePullBackOff"] {
            if status.contains(reason) && !seen.contains(&reason) {
                seen.push(reason);
            }
        }
        seen.len() == 2
    });
    assert!(
        both,
        "saw {seen:?}: {}",
        c.kubectl(&["describe", "pod", "nope"]).stdout
    );
    let events = c
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=nope",
        ])
        .stdout;
    assert!(
        events.contains("Failed to pull image \"127.0.0.1:9/nope:1\""),
        "{events}"
    );
    assert!(
        events.contains("Back-off pulling image \"127.0.0.1:9/nope:1\""),
        "{events}"
    );
}

#[test]
fn two_pods_reach_each_other_by_ip() {
    let Some(c) = Cluster::with_containers("node tests") else {
        return;
    };
    c.apply(
        "server",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: server
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: httpd
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && echo hello-from-server > /www/index.html && httpd -f -p 8080 -h /www"]
"#,
    );
    assert!(eventually(60, || jsonpath(&c, "server", "{.status.phase}")
        == "Running"));
    let ip = jsonpath(&c, "server", "{.status.podIP}");
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "podIP {ip:?}");
    c.apply(
        "client",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  restartPolicy: Never
  containers:
  - name: wget
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "wget -q -O - http://{ip}:8080/"]
"#
        ),
    );
    assert!(
        eventually(60, || jsonpath(&c, "client", "{.status.phase}")
            == "Succeeded"),
        "{}",
        c.kubectl(&["describe", "pod", "client"]).stdout
    );
    assert_eq!(c.kubectl(&["logs", "client"]).ok(), "hello-from-server\n");
}

#[test]
fn kill_9_of_up_leaves_containers_running_for_the_next_up() {
    let Some(mut c) = Cluster::with_containers("node tests") else {
        return;
    };
    c.apply(
        "steady",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: steady
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo kept > /data/mark; while true; do date; sleep 1; done"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - name: data
    emptyDir: {}
"#,
    );
    assert!(eventually(60, || jsonpath(
        &c,
        "steady",
        "{.status.containerStatuses[0].ready}"
    ) == "true"));
    let id = jsonpath(&c, "steady", "{.status.containerStatuses[0].containerID}");
    let before = c.kubectl(&["logs", "steady"]).stdout.lines().count();
    c.stop("KILL");
    std::thread::sleep(std::time::Duration::from_secs(2));
    c.up();
    assert!(eventually(30, || jsonpath(
        &c,
        "steady",
        "{.status.containerStatuses[0].ready}"
    ) == "true"));
    assert_eq!(
        jsonpath(&c, "steady", "{.status.containerStatuses[0].containerID}"),
        id,
        "the container was replaced"
    );
    assert_eq!(
        jsonpath(&c, "steady", "{.status.containerStatuses[0].restartCount}"),
        "0"
    );
    let logs = c.kubectl(&["logs", "steady"]).stdout;
    assert!(
        logs.lines().count() >= before + 2,
        "logs stopped while up was down:\n{logs}"
    );
    assert_eq!(
        c.kubectl(&["exec", "steady", "--", "cat", "/data/mark"])
            .ok(),
        "kept\n"
    );
}

#[test]
fn down_leaves_no_container_mount_or_network_behind() {
    let Some(c) = Cluster::with_containers("node tests") else {
        return;
    };
    c.apply(
        "gone",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: gone
spec:
  containers:
  - name: app
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - name: data
    emptyDir: {medium: ""}
"#,
    );
    assert!(eventually(60, || jsonpath(&c, "gone", "{.status.phase}") == "Running"));
    let out = std::process::Command::new(common::tatami_bin())
        .args(["down", "--data-dir"])
        .arg(c.data())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = c.data().to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&data), "mounts left under {data}");
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(
        !ps.lines().any(|l| l.contains(&data)),
        "processes left:\n{ps}"
    );
    let runc = std::process::Command::new("runc")
        .arg("--root")
        .arg(c.data().join("runtime/runc"))
        .arg("list")
        .arg("-q")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&runc.stdout).trim(), "");
}

//! Logs, exec, cp, attach and port-forward with the real kubectl, through the API server's
//! proxy to the node's streaming server. Needs root and runc (CI has both).

mod common;

use common::{Cluster, eventually};

fn run_pod(c: &Cluster, name: &str, yaml: &str) {
    let f = c.file(&format!("{name}.yaml"), yaml);
    c.kubectl(&["apply", "-f", f.to_str().unwrap()]).ok();
    let ready = eventually(60, || {
        c.kubectl(&[
            "get",
            "pod",
            name,
            "-o",
            "jsonpath={.status.containerStatuses[*].ready}",
        ])
        .stdout
        .contains("true")
    });
    assert!(ready, "{}", c.kubectl(&["describe", "pod", name]).stdout);
}

// stdout and stderr are read by the shim concurrently, so the order of their lines in the log is
// only certain when they are written apart: the stderr line comes a second later.
const COUNTER: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: counter
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: count
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "for i in 1 2 3 4 5; do echo line-$i; done; sleep 1; echo to-stderr >&2; sleep 3600"]
  - name: other
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#;

#[test]
fn logs_with_each_option() {
    let Some(c) = Cluster::with_containers("logs_with_each_option") else {
        return;
    };
    run_pod(&c, "counter", COUNTER);
    assert!(eventually(10, || c
        .kubectl(&["logs", "counter", "-c", "count"])
        .stdout
        .contains("to-stderr")));
    let all = c.kubectl(&["logs", "counter", "-c", "count"]);
    assert_eq!(
        all.ok(),
        "line-1\nline-2\nline-3\nline-4\nline-5\nto-stderr\n"
    );
    assert_eq!(
        c.kubectl(&["logs", "counter", "-c", "count", "--tail=2"])
            .ok(),
        "line-5\nto-stderr\n"
    );
    assert_eq!(
        c.kubectl(&["logs", "counter", "-c", "count", "--limit-bytes=9"])
            .ok(),
        "line-1\nli"
    );
    let stamped = c.kubectl(&["logs", "counter", "-c", "count", "--timestamps", "--tail=1"]);
    let (stamp, text) = stamped.ok().trim_end().split_once(' ').unwrap();
    assert_eq!(text, "to-stderr");
    assert!(
        stamp.ends_with('Z') && stamp.contains('T') && stamp.contains('.'),
        "{stamp}"
    );
    assert_eq!(
        c.kubectl(&["logs", "counter", "-c", "count", "--since=1h", "--tail=1"])
            .ok(),
        "to-stderr\n"
    );
    assert_eq!(
        c.kubectl(&[
            "logs",
            "counter",
            "-c",
            "count",
            "--since-time=2099-01-01T00:00:00Z"
        ])
        .ok(),
        ""
    );

    let none = c.kubectl(&["logs", "counter"]);
    assert_eq!(
        none.ok(),
        "line-1\nline-2\nline-3\nline-4\nline-5\nto-stderr\n"
    );
    assert!(
        none.stderr
            .contains("Defaulted container \"count\" out of: count, other"),
        "{}",
        none.stderr
    );
    let bad = c.kubectl(&["logs", "counter", "-c", "nope"]);
    assert!(
        bad.err()
            .contains("container nope is not valid for pod counter"),
        "{}",
        bad.stderr
    );
    let previous = c.kubectl(&["logs", "counter", "-c", "count", "--previous"]);
    assert!(
        previous
            .err()
            .contains("previous terminated container \"count\" in pod \"counter\" not found"),
        "{}",
        previous.stderr
    );
    let raw = c.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/counter/log",
    ]);
    assert!(
        raw.err().contains(
            "a container name must be specified for pod counter, choose one of: [count other]"
        ),
        "{}",
        raw.stderr
    );
}

#[test]
fn logs_previous_after_a_restart() {
    let Some(c) = Cluster::with_containers("logs_previous_after_a_restart") else {
        return;
    };
    let f = c.file(
        "again.yaml",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: again
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "if [ -f /data/ran ]; then echo second; sleep 3600; else touch /data/ran; echo first; exit 2; fi"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, emptyDir: {}}]
"#,
    );
    c.kubectl(&["apply", "-f", f.to_str().unwrap()]).ok();
    assert!(eventually(60, || c.kubectl(&["logs", "again"]).stdout == "second\n"));
    assert_eq!(c.kubectl(&["logs", "again", "--previous"]).ok(), "first\n");
}

#[test]
fn exec_exit_codes_and_cp_both_ways() {
    let Some(c) = Cluster::with_containers("exec_exit_codes_and_cp_both_ways") else {
        return;
    };
    run_pod(&c, "counter", COUNTER);
    let out = c.kubectl(&[
        "exec",
        "counter",
        "-c",
        "count",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(out.code, 7);
    assert_eq!(out.stdout, "out\n");
    assert!(
        out.stderr.contains("err\n") && out.stderr.contains("command terminated with exit code 7"),
        "{}",
        out.stderr
    );
    let missing = c.kubectl(&["exec", "counter", "-c", "count", "--", "nope"]);
    assert_ne!(missing.code, 0);
    assert!(
        missing
            .stderr
            .contains("executable file not found in $PATH"),
        "{}",
        missing.stderr
    );
    let stdin = c.kubectl_stdin(
        &[
            "exec",
            "-i",
            "counter",
            "-c",
            "count",
            "--",
            "sh",
            "-c",
            "cat; echo done",
        ],
        "piped\n",
    );
    assert_eq!(stdin.ok(), "piped\ndone\n");

    let local = c.file("to-pod.txt", "sent to the pod\n");
    c.kubectl(&[
        "cp",
        local.to_str().unwrap(),
        "counter:/tmp/in.txt",
        "-c",
        "count",
    ])
    .ok();
    assert_eq!(
        c.kubectl(&["exec", "counter", "-c", "count", "--", "cat", "/tmp/in.txt"])
            .ok(),
        "sent to the pod\n"
    );
    c.kubectl(&[
        "exec",
        "counter",
        "-c",
        "count",
        "--",
        "sh",
        "-c",
        "echo from the pod > /tmp/out.txt",
    ])
    .ok();
    let back = c.dir.path().join("from-pod.txt");
    c.kubectl(&[
        "cp",
        "counter:/tmp/out.txt",
        back.to_str().unwrap(),
        "-c",
        "count",
    ])
    .ok();
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "from the pod\n");
}

#[test]
fn attach_reads_the_main_process() {
    let Some(c) = Cluster::with_containers("attach_reads_the_main_process") else {
        return;
    };
    run_pod(
        &c,
        "talker",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: talker
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: alpine
    imagePullPolicy: IfNotPresent
    stdin: true
    command: ["sh", "-c", "while read line; do echo got-$line; done"]
"#,
    );
    // attach keeps going while the container runs (its stdin stays open), so read until the
    // answer arrives, then end it.
    use std::io::{BufRead, Write};
    let mut attach = c
        .kubectl_cmd(&["attach", "-i", "talker", "-c", "app"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = attach.stdin.take().unwrap();
    let stdout = attach.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    stdin.write_all(b"hello\n").unwrap();
    stdin.flush().unwrap();
    let answer = rx.recv_timeout(std::time::Duration::from_secs(20));
    let _ = attach.kill();
    let _ = attach.wait();
    assert_eq!(answer.as_deref(), Ok("got-hello"));
}

#[test]
fn port_forward_reaches_a_pod_port() {
    let Some(c) = Cluster::with_containers("port_forward_reaches_a_pod_port") else {
        return;
    };
    run_pod(
        &c,
        "web",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: httpd
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && echo forwarded > /www/index.html && httpd -f -p 8080 -h /www"]
"#,
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut forward = c
        .kubectl_cmd(&["port-forward", "pod/web", &format!("{port}:8080")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut body = String::new();
    let got = eventually(20, || {
        let out = std::process::Command::new("curl")
            .args(["-s", &format!("http://127.0.0.1:{port}/")])
            .output()
            .unwrap();
        body = String::from_utf8_lossy(&out.stdout).into_owned();
        body == "forwarded\n"
    });
    let _ = forward.kill();
    let out = forward.wait_with_output().unwrap();
    assert!(
        got,
        "body {body:?}; port-forward said {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("Forwarding from 127.0.0.1:{port} -> 8080"))
    );
}

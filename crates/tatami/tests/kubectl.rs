//! The tutorial's kubectl commands and the rest of kubectl's everyday verbs, with the real
//! kubectl against a real `tatami up`.

mod common;

use common::{Cluster, eventually, manifest};

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn apply_get_replace_delete_the_tutorial_pod() {
    let c = Cluster::start();
    let pod = manifest("date-tail-emptydir.yaml");
    let out = c.kubectl(&["apply", "-f", path(&pod)]);
    assert_eq!(out.ok(), "pod/date-tail created\n");
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    // The server adds the kube-api-access volume and its mounts to the Pod's lists, so
    // kubectl's three-way patch of a Pod always holds `$setElementOrder` directives and a second
    // apply says "configured", as it does against any cluster.
    assert_eq!(
        c.kubectl(&["apply", "-f", path(&pod)]).ok(),
        "pod/date-tail configured\n"
    );
    let braces_text = std::fs::read_to_string(&pod)
        .unwrap()
        .replace("emptyDir:\n", "emptyDir: {}\n");
    let braces = c.file("braces.yaml", &braces_text);
    assert_eq!(
        c.kubectl(&["apply", "-f", path(&braces)]).ok(),
        "pod/date-tail configured\n"
    );
    // Without the token volume and with `emptyDir: {}` (the tutorial writes `emptyDir:`, null,
    // which the server stores as its default `{}`), nothing differs the second time.
    let quiet = braces_text
        .replace("name: date-tail", "name: quiet")
        .replacen(
            "spec:\n",
            "spec:\n  automountServiceAccountToken: false\n",
            1,
        );
    let quiet = c.file("quiet.yaml", &quiet);
    assert_eq!(
        c.kubectl(&["apply", "-f", path(&quiet)]).ok(),
        "pod/quiet created\n"
    );
    assert_eq!(
        c.kubectl(&["apply", "-f", path(&quiet)]).ok(),
        "pod/quiet unchanged\n"
    );
    c.kubectl(&["delete", "pod", "quiet", "--wait=false"]).ok();

    let edited = std::fs::read_to_string(&braces).unwrap().replace(
        "terminationGracePeriodSeconds: 0",
        "terminationGracePeriodSeconds: 0\n  activeDeadlineSeconds: 600",
    );
    let edited = c.file("edited.yaml", &edited);
    assert_eq!(
        c.kubectl(&["apply", "-f", path(&edited)]).ok(),
        "pod/date-tail configured\n"
    );

    // The node tries to run the Pod, but test clusters pull from a closed mirror, so it stays
    // Pending, waiting on its image.
    let table = c.kubectl(&["get", "pods"]);
    let rows: Vec<Vec<&str>> = table
        .ok()
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{rows:?}"
    );
    assert_eq!(
        (rows[1][0], rows[1][1], rows[1][3]),
        ("date-tail", "0/2", "0"),
        "{rows:?}"
    );
    let waiting = [
        "Pending",
        "ContainerCreating",
        "ErrImagePull",
        "ImagePullBackOff",
    ];
    assert!(waiting.contains(&rows[1][2]), "{rows:?}");
    let wide = c.kubectl(&["get", "pods", "-o", "wide"]);
    let header: Vec<&str> = wide
        .ok()
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ],
        "{}",
        wide.stdout
    );

    let yaml = c.kubectl(&["get", "pod", "date-tail", "-o", "yaml"]);
    let yaml = yaml.ok();
    for default in [
        "restartPolicy: Always",
        "dnsPolicy: ClusterFirst",
        "schedulerName: default-scheduler",
        "serviceAccountName: default",
        "enableServiceLinks: true",
        "preemptionPolicy: PreemptLowerPriority",
        "priority: 0",
        "terminationMessagePath: /dev/termination-log",
        "terminationMessagePolicy: File",
        "imagePullPolicy: Always",
        "emptyDir: {}",
        "key: node.kubernetes.io/not-ready",
        "tolerationSeconds: 300",
        "qosClass: BestEffort",
        "phase: Pending",
        "terminationGracePeriodSeconds: 0",
        "activeDeadlineSeconds: 600",
    ] {
        assert!(yaml.contains(default), "missing {default:?} in\n{yaml}");
    }
    assert!(yaml.contains("uid: "), "{yaml}");
    assert!(yaml.contains("creationTimestamp: \""), "{yaml}");
    let managers = c.kubectl(&[
        "get",
        "pod",
        "date-tail",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    // The apply's manager, and the node's for the status it writes.
    let mut managers: Vec<&str> = managers.ok().split_whitespace().collect();
    managers.sort();
    managers.dedup();
    assert!(
        managers == ["kubectl-client-side-apply"]
            || managers == ["kubectl-client-side-apply", "kubelet"],
        "{managers:?}"
    );

    let describe = c.kubectl(&["describe", "pod", "date-tail"]);
    let describe = describe.ok();
    assert!(
        describe.contains("Name:             date-tail"),
        "{describe}"
    );
    assert!(describe.contains("log-volume:"), "{describe}");
    assert!(
        describe.contains("EmptyDir (a temporary directory that shares a pod's lifetime)"),
        "{describe}"
    );

    let out = c.kubectl(&["replace", "--force", "-f", path(&pod)]);
    assert_eq!(
        out.ok(),
        "pod \"date-tail\" deleted\npod/date-tail replaced\n"
    );
    assert_eq!(
        c.kubectl(&["delete", "-f", path(&pod)]).ok(),
        "pod \"date-tail\" deleted\n"
    );
    let gone = c.kubectl(&["get", "pod", "date-tail"]);
    assert_eq!(
        gone.err(),
        "Error from server (NotFound): pods \"date-tail\" not found\n"
    );
}

#[test]
fn generators_edit_patch_and_wait() {
    let c = Cluster::start();
    assert_eq!(
        c.kubectl(&["create", "configmap", "cfg", "--from-literal=a=b"])
            .ok(),
        "configmap/cfg created\n"
    );
    assert_eq!(
        c.kubectl(&["get", "configmap", "cfg", "-o", "jsonpath={.data.a}"])
            .ok(),
        "b"
    );
    assert_eq!(
        c.kubectl(&[
            "create",
            "secret",
            "generic",
            "pw",
            "--from-literal=pw=s3cr3t"
        ])
        .ok(),
        "secret/pw created\n"
    );
    assert_eq!(
        c.kubectl(&["get", "secret", "pw", "-o", "jsonpath={.data.pw} {.type}"])
            .ok(),
        "czNjcjN0 Opaque"
    );
    assert_eq!(
        c.kubectl(&["create", "namespace", "team"]).ok(),
        "namespace/team created\n"
    );
    assert!(eventually(10, || c
        .kubectl(&["get", "sa", "default", "-n", "team"])
        .code
        == 0));

    // kubectl edit through an editor script that adds a label.
    let editor = c.file("editor.sh", "#!/bin/sh\nsed -i 's/^  name: cfg$/  name: cfg\\n  labels:\\n    edited: \"yes\"/' \"$1\"\n");
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&editor)
        .status()
        .unwrap();
    let out = c
        .kubectl_cmd(&["edit", "configmap", "cfg"])
        .env("EDITOR", &editor)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "configmap/cfg edited\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        c.kubectl(&[
            "get",
            "cm",
            "cfg",
            "-o",
            "jsonpath={.metadata.labels.edited}"
        ])
        .ok(),
        "yes"
    );

    assert_eq!(
        c.kubectl(&["patch", "cm", "cfg", "-p", r#"{"data":{"s":"1"}}"#])
            .ok(),
        "configmap/cfg patched\n"
    );
    assert_eq!(
        c.kubectl(&[
            "patch",
            "cm",
            "cfg",
            "--type=merge",
            "-p",
            r#"{"data":{"m":"2"}}"#
        ])
        .ok(),
        "configmap/cfg patched\n"
    );
    assert_eq!(
        c.kubectl(&[
            "patch",
            "cm",
            "cfg",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/data/a"}]"#
        ])
        .ok(),
        "configmap/cfg patched\n"
    );
    assert_eq!(
        c.kubectl(&["get", "cm", "cfg", "-o", "jsonpath={.data}"])
            .ok(),
        r#"{"m":"2","s":"1"}"#
    );
    assert_eq!(
        c.kubectl(&["patch", "cm", "cfg", "-p", r#"{"data":{"s":"1"}}"#])
            .ok(),
        "configmap/cfg patched (no change)\n"
    );

    let waiter = c
        .kubectl_cmd(&["wait", "--for=delete", "configmap/cfg", "--timeout=30s"])
        .output_async();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        c.kubectl(&["delete", "cm", "cfg"]).ok(),
        "configmap \"cfg\" deleted\n"
    );
    let waited = waiter.wait_with_output().unwrap();
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
}

trait OutputAsync {
    fn output_async(self) -> std::process::Child;
}

impl OutputAsync for std::process::Command {
    fn output_async(mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    }
}

#[test]
fn server_side_apply_and_conflicts() {
    let c = Cluster::start();
    let pod = manifest("date-tail-emptydir.yaml");
    assert_eq!(
        c.kubectl(&["apply", "-f", path(&pod)]).ok(),
        "pod/date-tail created\n"
    );
    let changed =
        std::fs::read_to_string(&pod)
            .unwrap()
            .replacen("image: alpine", "image: alpine:3", 1);
    let changed = c.file("changed.yaml", &changed);
    let conflict = c.kubectl(&["apply", "--server-side", "-f", path(&changed)]);
    let err = conflict.err();
    assert!(
        err.contains(r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: .spec.containers[name="date"].image"#),
        "{err}"
    );
    let forced = c.kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        path(&changed),
    ]);
    assert_eq!(forced.ok(), "pod/date-tail serverside-applied\n");
    assert_eq!(
        c.kubectl(&[
            "get",
            "pod",
            "date-tail",
            "-o",
            "jsonpath={.spec.containers[0].image}"
        ])
        .ok(),
        "alpine:3"
    );

    let cm = c.file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  k: v\n",
    );
    assert_eq!(
        c.kubectl(&["apply", "--server-side", "-f", path(&cm)]).ok(),
        "configmap/ssa serverside-applied\n"
    );
    assert_eq!(
        c.kubectl(&["apply", "--server-side", "-f", path(&cm)]).ok(),
        "configmap/ssa serverside-applied\n"
    );
    let other = c.file(
        "cm2.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  k: other\n",
    );
    let err = c.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=second",
        "-f",
        path(&other),
    ]);
    assert!(
        err.err()
            .contains(r#"Apply failed with 1 conflict: conflict with "kubectl": .data.k"#),
        "{}",
        err.stderr
    );

    // An apply through `status` is the manager's own entry there; it leaves the spec alone
    // and creates nothing.
    let deploy = c.file(
        "deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: c\n        image: alpine\n",
    );
    c.kubectl(&["apply", "--server-side", "-f", path(&deploy)])
        .ok();
    let status = c.file(
        "status.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nstatus:\n  observedGeneration: 1\n",
    );
    let apply_status = |file| {
        c.kubectl(&[
            "apply",
            "--server-side",
            "--subresource=status",
            "-f",
            path(file),
        ])
    };
    apply_status(&status).ok();
    let fields = c.kubectl(&[
        "get",
        "deployment",
        "web",
        "-o",
        r#"jsonpath={.spec.template.spec.containers[0].image} {.status.observedGeneration} {range .metadata.managedFields[*]}{.manager}/{.operation}/{.subresource} {end}"#,
    ]);
    assert_eq!(fields.ok(), "alpine 1 kubectl/Apply/ kubectl/Apply/status ");
    let missing = c.file(
        "missing.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: missing\nstatus:\n  observedGeneration: 1\n",
    );
    let err = apply_status(&missing);
    assert!(
        err.err()
            .contains(r#"deployments.apps "missing" not found"#),
        "{}",
        err.stderr
    );
}

#[test]
fn discovery_explain_get_all_and_events() {
    let c = Cluster::start();
    let resources = c.kubectl(&["api-resources"]);
    let resources = resources.ok();
    for line in [
        "pods                     po           v1",
        "namespaces               ns           v1                       false        Namespace",
    ] {
        assert!(resources.contains(line), "{line:?} missing in\n{resources}");
    }
    assert!(resources.contains("storageclasses"), "{resources}");
    assert!(resources.contains("leases"), "{resources}");
    let explain = c.kubectl(&["explain", "pod.spec.volumes"]);
    let explain = explain.ok();
    assert!(explain.contains("KIND:       Pod"), "{explain}");
    assert!(explain.contains("FIELD: volumes <[]Volume>"), "{explain}");
    assert!(
        explain.contains("emptyDir\t<EmptyDirVolumeSource>"),
        "{explain}"
    );

    // Every cluster has the `kubernetes` Service, where Pods reach the API server.
    let all = c.kubectl(&["get", "all"]);
    let all = all.ok();
    let endpoints = c.kubectl(&[
        "get",
        "endpoints",
        "kubernetes",
        "-o",
        "jsonpath={.subsets[0].addresses[0].ip}",
    ]);
    let endpoints = endpoints.ok();
    let rows: Vec<Vec<&str>> = all
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{all}");
    assert_eq!(
        rows[0],
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ],
        "{all}"
    );
    assert_eq!(
        rows[1][..5],
        [
            "service/kubernetes",
            "ClusterIP",
            endpoints,
            "<none>",
            "443/TCP"
        ],
        "{all}"
    );
    let empty = c.kubectl(&["get", "all", "-n", "kube-public"]);
    assert_eq!(empty.ok(), "");
    assert_eq!(
        empty.stderr,
        "No resources found in kube-public namespace.\n"
    );

    let event = c.file(
        "ev.yaml",
        "apiVersion: v1\nkind: Event\nmetadata:\n  name: e1\ninvolvedObject:\n  kind: Pod\n  name: date-tail\n  namespace: default\nreason: Scheduled\nmessage: hello\ntype: Normal\nsource:\n  component: default-scheduler\n",
    );
    c.kubectl(&["apply", "-f", path(&event)]).ok();
    let events = c.kubectl(&["get", "events"]);
    let events = events.ok();
    assert!(
        events.starts_with("LAST SEEN   TYPE     REASON      OBJECT          MESSAGE"),
        "{events}"
    );
    assert!(
        events.contains("Normal   Scheduled   pod/date-tail   hello"),
        "{events}"
    );
    let selected = c.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=date-tail",
        "-o",
        "name",
    ]);
    assert_eq!(selected.ok(), "event/e1\n");
    let none = c.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=other",
        "-o",
        "name",
    ]);
    assert_eq!(none.ok(), "");
}

#[test]
fn watch_sees_an_update() {
    let c = Cluster::start();
    c.kubectl(&["create", "configmap", "w", "--from-literal=a=1"])
        .ok();
    let mut watcher = c
        .kubectl_cmd(&["get", "configmaps", "-w", "--output-watch-events"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    c.kubectl(&["label", "configmap", "w", "seen=yes"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let _ = watcher.kill();
    let out = watcher.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(words.len() >= 4, "{text}");
    assert_eq!(words[0], ["EVENT", "NAME", "DATA", "AGE"], "{text}");
    // Every namespace holds the cluster's CA, as on Kubernetes.
    assert_eq!(words[1][..3], ["ADDED", "kube-root-ca.crt", "1"], "{text}");
    assert_eq!(words[2][..3], ["ADDED", "w", "1"], "{text}");
    assert_eq!(words[3][..3], ["MODIFIED", "w", "1"], "{text}");
}

#[test]
fn validation_errors_are_kubernetes_texts() {
    let c = Cluster::start();
    let base = std::fs::read_to_string(manifest("date-tail-emptydir.yaml")).unwrap();
    let dup = base.replace(
        "  volumes:\n  - name: log-volume\n    emptyDir:\n",
        "  volumes:\n  - name: log-volume\n    emptyDir:\n  - name: log-volume\n    emptyDir: {}\n",
    );
    let f = c.file("dup.yaml", &dup);
    let out = c.kubectl(&["apply", "-f", path(&f)]);
    assert_eq!(
        out.err(),
        "The Pod \"date-tail\" is invalid: spec.volumes[1].name: Duplicate value: \"log-volume\"\n"
    );

    let missing = base.replacen(
        "      mountPath: /var/log/date-tail",
        "      mountPath: /var/log/date-tail\n      subPath: /etc",
        1,
    );
    let f = c.file("subpath.yaml", &missing);
    let out = c.kubectl(&["apply", "-f", path(&f)]);
    assert_eq!(
        out.err(),
        "The Pod \"date-tail\" is invalid: spec.containers[0].volumeMounts.subPath: Invalid value: \"/etc\": must be a relative path\n"
    );

    let two = base.replace(
        "name: log-volume\n    emptyDir:",
        "name: Log_Volume\n    emptyDir:",
    );
    let f = c.file("two.yaml", &two);
    let out = c.kubectl(&["apply", "-f", path(&f)]);
    let err = out.err();
    assert!(err.starts_with("The Pod \"date-tail\" is invalid: \n* spec.volumes[0].name: Invalid value: \"Log_Volume\": a lowercase RFC 1123 label"), "{err}");
    assert!(
        err.contains("* spec.containers[0].volumeMounts[0].name: Not found: \"log-volume\""),
        "{err}"
    );

    let typo = base.replacen(
        "    image: alpine",
        "    image: alpine\n    imagePullPolcy: Always",
        1,
    );
    let f = c.file("typo.yaml", &typo);
    let out = c.kubectl(&["apply", "-f", path(&f)]);
    assert!(
        out.err().contains("Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.containers[0].imagePullPolcy\""),
        "{}",
        out.stderr
    );
    // Nothing was stored by the refused requests.
    assert_eq!(c.kubectl(&["get", "pods", "-o", "name"]).ok(), "");

    // Pod spec fields are immutable.
    c.kubectl(&["apply", "-f", path(&manifest("date-tail-emptydir.yaml"))])
        .ok();
    let out = c.kubectl(&[
        "patch",
        "pod",
        "date-tail",
        "-p",
        r#"{"spec":{"restartPolicy":"Never"}}"#,
    ]);
    assert!(
        out.err()
            .contains("spec: Forbidden: pod updates may not change fields other than"),
        "{}",
        out.stderr
    );
}

//! The atomic-writer volumes (configMap, secret, downwardAPI, projected) in real containers,
//! seen as a user sees them through `kubectl exec`: the `..data` layout, file contents and
//! modes, tmpfs for secrets and projected volumes, read-only mounts, updates reaching a running
//! Pod, kubelet's FailedMount text for a missing ConfigMap, and no mount left after the Pod is
//! gone. Needs root and runc (CI has both).

mod common;

use common::{Cluster, eventually};
use std::time::Duration;

/// `sh -c script` in the Pod's container; (stdout, stderr).
fn sh(c: &Cluster, pod: &str, script: &str) -> (String, String) {
    let run = c.kubectl(&["exec", pod, "--", "sh", "-c", script]);
    (run.stdout, run.stderr)
}

fn running(c: &Cluster, pod: &str) -> bool {
    eventually(60, || {
        c.kubectl(&["get", "pod", pod, "-o", "jsonpath={.status.phase}"])
            .stdout
            == "Running"
    })
}

/// Mounts under the cluster's data dir, from the host's mount table.
fn mounts_under(c: &Cluster) -> Vec<String> {
    let data = c.data().canonicalize().unwrap();
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter(|l| {
            l.split(' ').nth(1).is_some_and(|p| {
                p.starts_with(data.to_str().unwrap())
                    && (p.contains("/volumes/") || p.contains("/volume-subpaths/"))
            })
        })
        .map(str::to_string)
        .collect()
}

const OBJECTS: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
data:
  greeting: hello
  nested: inside
binaryData:
  bin: 3sr+utD+/w==
---
apiVersion: v1
kind: Secret
metadata:
  name: sec
stringData:
  password: hunter2
"#;

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: vols
  labels:
    app: demo
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    volumeMounts:
    - {name: cfg, mountPath: /etc/cfg}
    - {name: picked, mountPath: /etc/picked}
    - {name: sec, mountPath: /etc/sec}
    - {name: pod, mountPath: /etc/pod}
    - {name: all, mountPath: /all}
    - {name: cfg, mountPath: /etc/greeting, subPath: greeting}
  volumes:
  - name: cfg
    configMap: {name: cfg}
  - name: picked
    configMap:
      name: cfg
      defaultMode: 0400
      items:
      - {key: nested, path: dir/sub/nested.txt}
      - {key: greeting, path: greeting, mode: 0600}
  - name: sec
    secret: {secretName: sec, defaultMode: 0440}
  - name: pod
    downwardAPI:
      items:
      - {path: name, fieldRef: {fieldPath: metadata.name}}
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: annotations, fieldRef: {fieldPath: metadata.annotations}}
  - name: all
    projected:
      sources:
      - downwardAPI:
          items: [{path: podname, fieldRef: {fieldPath: metadata.name}}]
      - secret:
          name: sec
          items: [{key: password, path: secret-data}]
      - configMap:
          name: cfg
          items: [{key: greeting, path: configmap-data}]
"#;

#[test]
fn atomic_writer_volumes_look_and_change_as_on_kubernetes() {
    let Some(c) = Cluster::with_containers("volume tests") else {
        return;
    };
    c.apply("objects", OBJECTS);
    c.apply("pod", POD);
    assert!(
        running(&c, "vols"),
        "{}",
        c.kubectl(&["describe", "pod", "vols"]).stdout
    );

    // configMap: every key a link through ..data to a timestamped directory.
    let (out, _) = sh(
        &c,
        "vols",
        "cat /etc/cfg/greeting; echo; readlink /etc/cfg/greeting; readlink /etc/cfg/..data; ls /etc/cfg",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "hello");
    assert_eq!(lines[1], "..data/greeting");
    assert!(
        lines[2].starts_with("..20") && lines[2].contains('.'),
        "{out}"
    );
    assert_eq!(&lines[3..], ["bin", "greeting", "nested"]);
    let (out, _) = sh(&c, "vols", "hexdump -C /etc/cfg/bin | head -1");
    assert!(out.contains("de ca fe ba d0 fe ff"), "{out}");
    let (out, _) = sh(
        &c,
        "vols",
        "stat -c %a /etc/cfg; stat -L -c %a /etc/cfg/greeting /etc/picked/dir/sub/nested.txt /etc/picked/greeting",
    );
    assert_eq!(out, "777\n644\n400\n600\n");
    let (_, err) = sh(&c, "vols", "touch /etc/cfg/new");
    assert!(err.contains("Read-only file system"), "{err}");

    // secret: decoded, its mode, on a tmpfs of its own, read-only.
    let (out, _) = sh(
        &c,
        "vols",
        "cat /etc/sec/password; echo; stat -c %a /etc/sec; stat -L -c %a /etc/sec/password; grep ' /etc/sec ' /proc/mounts",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..3], ["hunter2", "1777", "440"], "{out}");
    assert!(lines[3].starts_with("tmpfs /etc/sec tmpfs ro"), "{out}");
    let (out, _) = sh(&c, "vols", "grep ' /etc/cfg ' /proc/mounts");
    assert!(
        !out.starts_with("tmpfs"),
        "a configMap lives on disk: {out}"
    );

    // downwardAPI and projected.
    let (out, _) = sh(&c, "vols", "cat /etc/pod/name; echo; cat /etc/pod/labels");
    assert_eq!(out, "vols\napp=\"demo\"");
    // With the annotations kubelet adds to its own copy, as many tutorials show.
    let (out, _) = sh(&c, "vols", "cat /etc/pod/annotations");
    let keys: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        [
            "kubectl.kubernetes.io/last-applied-configuration",
            "kubernetes.io/config.seen",
            "kubernetes.io/config.source"
        ],
        "{out}"
    );
    assert!(
        out.ends_with("kubernetes.io/config.source=\"api\""),
        "{out}"
    );
    let (out, _) = sh(
        &c,
        "vols",
        "cat /all/podname /all/secret-data /all/configmap-data; echo; grep ' /all ' /proc/mounts",
    );
    assert!(
        out.starts_with("volshunter2hello\ntmpfs /all tmpfs ro"),
        "{out}"
    );

    // A ConfigMap change reaches the running Pod all at once; a label change within seconds.
    c.kubectl(&[
        "patch",
        "configmap",
        "cfg",
        "-p",
        r#"{"data":{"greeting":"bonjour","nested":null}}"#,
    ])
    .ok();
    assert!(
        eventually(40, || sh(&c, "vols", "cat /etc/cfg/greeting; ls /etc/cfg")
            .0
            == "bonjourbin\ngreeting\n"),
        "{:?}",
        sh(&c, "vols", "ls -la /etc/cfg/")
    );
    // A subPath binds the file it found once: it keeps the old bytes while the container runs.
    assert_eq!(sh(&c, "vols", "cat /etc/greeting").0, "hello");
    c.kubectl(&["label", "pod", "vols", "tier=web"]).ok();
    assert!(
        eventually(10, || sh(&c, "vols", "cat /etc/pod/labels").0
            == "app=\"demo\"\ntier=\"web\""),
        "{:?} {}",
        sh(&c, "vols", "cat /etc/pod/labels"),
        c.log()
    );

    // The secret, the projected volume, the kube-api-access token volume and the subPath bind.
    assert_eq!(mounts_under(&c).len(), 4, "{:?}", mounts_under(&c));
    // Grace 0: the object goes at once, the node tears down right after.
    c.kubectl(&["delete", "pod", "vols"]).ok();
    assert!(
        eventually(20, || mounts_under(&c).is_empty()),
        "{:?}",
        mounts_under(&c)
    );
}

#[test]
fn a_missing_config_map_holds_the_pod_with_kubelets_failed_mount() {
    let Some(c) = Cluster::with_containers("volume tests") else {
        return;
    };
    c.apply(
        "pod",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: waits
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    volumeMounts: [{name: cfg, mountPath: /etc/cfg}]
  volumes:
  - name: cfg
    configMap: {name: nope}
"#,
    );
    let expected = r#"MountVolume.SetUp failed for volume "cfg" : configmap "nope" not found"#;
    assert!(
        eventually(30, || c
            .kubectl(&[
                "get",
                "events",
                "--field-selector",
                "reason=FailedMount",
                "-o",
                "jsonpath={.items[*].message}"
            ])
            .stdout
            .contains(expected)),
        "{}",
        c.kubectl(&["get", "events"]).stdout
    );
    let get = c.kubectl(&["get", "pod", "waits", "--no-headers"]);
    assert!(get.stdout.contains("ContainerCreating"), "{}", get.stdout);
    // As kubelet, which makes no sandbox before the volumes are set up: none is ready.
    let ready_to_start = c.kubectl(&[
        "get",
        "pod",
        "waits",
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="PodReadyToStartContainers")].status}"#,
    ]);
    assert_eq!(ready_to_start.ok(), "False");

    // A cloud disk: accepted by the API as by Kubernetes 1.32, refused plainly by the node.
    c.apply(
        "cloud",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: cloud
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    volumeMounts: [{name: disk, mountPath: /disk}]
  volumes:
  - name: disk
    gcePersistentDisk: {pdName: my-disk, fsType: ext4}
"#,
    );
    let expected_cloud = r#"MountVolume.SetUp failed for volume "disk" : volume kind gcePersistentDisk is not served on this node: it needs a cloud disk and the CSI driver pd.csi.storage.gke.io, and this node has neither"#;
    let cloud_events = || {
        c.kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=cloud",
            "-o",
            "jsonpath={range .items[*]}{.count} {.message}{\"\\n\"}{end}",
        ])
        .stdout
    };
    assert!(
        eventually(30, || cloud_events().contains(expected_cloud)),
        "{}",
        c.kubectl(&["get", "events"]).stdout
    );
    let first_failure = std::time::Instant::now();

    // Once it exists, the next sync mounts it and the Pod runs.
    c.kubectl(&["create", "configmap", "nope", "--from-literal=k=v"])
        .ok();
    assert!(
        running(&c, "waits"),
        "{}",
        c.kubectl(&["describe", "pod", "waits"]).stdout
    );
    assert_eq!(sh(&c, "waits", "cat /etc/cfg/k").0, "v");

    // The cloud disk is retried with kubelet's back-off, 500 ms doubling: by 20 s at most the
    // tries at 0, 0.5, 1.5, 3.5, 7.5 and 15.5 s (a fixed 2 s retry would have made 11).
    std::thread::sleep(Duration::from_secs(20).saturating_sub(first_failure.elapsed()));
    let listed = cloud_events();
    let tries: u32 = listed
        .lines()
        .find(|l| l.ends_with(expected_cloud))
        .and_then(|l| l.split(' ').next()?.parse().ok())
        .unwrap_or_default();
    assert!((3..=7).contains(&tries), "{listed}");
}

#[test]
fn a_kill_9_of_up_keeps_every_volume_and_leaks_none() {
    let Some(mut c) = Cluster::with_containers("volume tests") else {
        return;
    };
    c.apply("objects", OBJECTS);
    let with_scratch = POD
        .replace(
            "    - {name: all, mountPath: /all}\n",
            "    - {name: all, mountPath: /all}\n    - {name: scratch, mountPath: /scratch}\n",
        )
        .replace(
            "  volumes:\n",
            "  volumes:\n  - name: scratch\n    emptyDir: {}\n",
        );
    c.apply("pod", &with_scratch);
    assert!(
        running(&c, "vols"),
        "{}",
        c.kubectl(&["describe", "pod", "vols"]).stdout
    );
    sh(&c, "vols", "echo kept > /scratch/mark");
    let check = "cat /scratch/mark /etc/cfg/greeting; echo; cat /etc/sec/password; echo; cat /etc/pod/name; echo; cat /all/configmap-data";
    let before = sh(&c, "vols", check).0;
    assert_eq!(before, "kept\nhello\nhunter2\nvols\nhello");
    let mounts = mounts_under(&c);
    assert_eq!(mounts.len(), 4, "{mounts:?}");

    // `tatami volumes` shows where each volume lives, its medium and size, and its mounts.
    let volumes = |args: &[&str]| {
        let out = std::process::Command::new(common::tatami_bin())
            .arg("volumes")
            .arg("--data-dir")
            .arg(c.data())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let table = volumes(&[]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "POD", "VOLUME", "KIND", "MEDIUM", "SIZE", "NODE", "PATH", "MOUNTS"
        ]
    );
    let scratch_row = table
        .lines()
        .find(|l| l.contains(" scratch "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        scratch_row.starts_with("default/vols")
            && scratch_row.contains("emptyDir")
            && scratch_row.ends_with("app:/scratch(rw)"),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(&volumes(&["-o", "json"])).unwrap();
    let find = |name: &str| {
        json["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["pod"] == "default/vols" && v["volume"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{json}"))
    };
    let scratch = find("scratch");
    assert_eq!(
        (scratch["medium"].as_str(), scratch["used_bytes"].as_u64()),
        (Some("disk"), Some(5))
    );
    assert!(
        scratch["path"]
            .as_str()
            .unwrap()
            .ends_with("/volumes/kubernetes.io~empty-dir/scratch")
    );
    let sec = find("sec");
    assert_eq!(
        (sec["kind"].as_str(), sec["medium"].as_str()),
        (Some("secret"), Some("memory"))
    );
    assert_eq!(sec["mounts"][0]["read_only"], true);

    c.stop("KILL");
    c.up();
    // The next syncs find everything in place: the same files, no second tmpfs.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(sh(&c, "vols", check).0, before);
    assert_eq!(mounts_under(&c), mounts);

    c.kubectl(&["delete", "pod", "vols"]).ok();
    assert!(
        eventually(20, || mounts_under(&c).is_empty()
            && !c.data().join("node/pods").read_dir().unwrap().any(|_| true)),
        "{:?}",
        mounts_under(&c)
    );
}

#[test]
fn a_memory_empty_dir_is_a_tmpfs_of_its_size_limit_or_the_pods_and_an_unknown_medium_fails() {
    let Some(c) = Cluster::with_containers("volume tests") else {
        return;
    };
    c.apply(
        "pods",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: mem
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    resources: {limits: {memory: 64Mi}}
    volumeMounts: [{name: fast, mountPath: /fast}, {name: disk, mountPath: /disk}, {name: bounded, mountPath: /bounded}]
  volumes:
  - name: fast
    emptyDir: {medium: Memory, sizeLimit: 1Mi}
  - name: disk
    emptyDir: {}
  - name: bounded
    emptyDir: {medium: Memory}
---
apiVersion: v1
kind: Pod
metadata:
  name: odd
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    volumeMounts: [{name: v, mountPath: /v}]
  volumes:
  - name: v
    emptyDir: {medium: Foo}
"#,
    );
    assert!(
        running(&c, "mem"),
        "{}",
        c.kubectl(&["describe", "pod", "mem"]).stdout
    );
    let (out, _) = sh(
        &c,
        "mem",
        "stat -c %a /fast /disk; grep -E ' /(fast|disk) ' /proc/mounts",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..2], ["1777", "777"], "{out}");
    assert!(
        lines[2].starts_with("tmpfs /fast tmpfs rw") && lines[2].contains("size=1024k"),
        "{out}"
    );
    assert!(!out.contains("tmpfs /disk"), "{out}");
    // Without a sizeLimit a tmpfs is as big as the Pod's memory limit: an emptyDir, and the
    // service account token's projected volume too.
    let (out, _) = sh(
        &c,
        "mem",
        "grep -E ' /(bounded|var/run/secrets/kubernetes.io/serviceaccount) ' /proc/mounts",
    );
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.lines()
            .all(|l| l.starts_with("tmpfs ") && l.contains("size=65536k")),
        "{out}"
    );
    let (_, err) = sh(&c, "mem", "dd if=/dev/zero of=/fast/big bs=1k count=2048");
    assert!(err.contains("No space left on device"), "{err}");

    let expected = r#"MountVolume.SetUp failed for volume "v" : unknown storage medium "Foo""#;
    assert!(
        eventually(30, || c
            .kubectl(&[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=odd",
                "-o",
                "jsonpath={.items[*].message}"
            ])
            .stdout
            .contains(expected)),
        "{}",
        c.kubectl(&["get", "events"]).stdout
    );
}

/// A kubeconfig that authenticates with `token` only.
fn token_kubeconfig(c: &Cluster, token: &str) -> std::path::PathBuf {
    let admin = std::fs::read_to_string(c.kubeconfig()).unwrap();
    let field = |key: &str| {
        admin
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
            .unwrap()
            .to_string()
    };
    let ca = format!(
        "certificate-authority-data: {}",
        field("certificate-authority-data")
    );
    kubeconfig_with(c, &field("server"), &ca, token)
}

/// The network namespace of the Pod named `pod`: its sandbox's.
fn pod_netns(c: &Cluster, pod: &str) -> std::path::PathBuf {
    format!("/proc/{}/ns/net", c.sandbox_holder(pod)).into()
}

/// A kubeconfig for `server`, trusting the CA that `ca` names (a kubeconfig line), with
/// `token` as the only credential.
fn kubeconfig_with(c: &Cluster, server: &str, ca: &str, token: &str) -> std::path::PathBuf {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    {ca}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
    );
    // A file of its own each, so no kubeconfig is overwritten while a test still uses it.
    static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    c.file(&format!("token-kubeconfig-{n}"), &text)
}

#[test]
fn every_pod_gets_a_service_account_token_the_api_server_accepts() {
    let Some(c) = Cluster::with_containers("volume tests") else {
        return;
    };
    c.apply(
        "pods",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: withtoken
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: without
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#,
    );
    let volumes = |pod: &str| {
        c.kubectl(&[
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.spec.volumes[*].name} {.spec.containers[0].volumeMounts[*].mountPath}",
        ])
        .stdout
    };
    let with = volumes("withtoken");
    assert!(
        with.starts_with("kube-api-access-")
            && with.ends_with(" /var/run/secrets/kubernetes.io/serviceaccount"),
        "{with}"
    );
    assert_eq!(volumes("without"), " ");
    assert!(
        running(&c, "withtoken"),
        "{}",
        c.kubectl(&["describe", "pod", "withtoken"]).stdout
    );

    let dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    let (out, _) = sh(
        &c,
        "withtoken",
        &format!("ls {dir}; cat {dir}/namespace; echo; stat -L -c %a {dir}/token"),
    );
    assert_eq!(out, "ca.crt\nnamespace\ntoken\ndefault\n644\n");
    let ca = sh(&c, "withtoken", &format!("cat {dir}/ca.crt")).0;
    let published = c
        .kubectl(&[
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ])
        .stdout;
    assert!(
        ca.starts_with("-----BEGIN CERTIFICATE-----") && ca == published,
        "{ca}"
    );

    // The Pod's token is a bearer token the API server accepts, while the Pod lives.
    let token = sh(&c, "withtoken", &format!("cat {dir}/token")).0;
    let config = token_kubeconfig(&c, &token);
    let as_pod = |args: &[&str]| {
        let mut all = vec!["--kubeconfig", config.to_str().unwrap()];
        all.extend_from_slice(args);
        c.kubectl(&all)
    };
    assert!(
        as_pod(&["get", "pods", "-o", "name"])
            .ok()
            .contains("pod/withtoken")
    );

    // A client inside the Pod finds the API server as on Kubernetes: the `kubernetes`
    // Service's variables, its address reached over the Pod network, the Pod's token.
    let service = c
        .kubectl(&[
            "get",
            "service",
            "kubernetes",
            "-o",
            "jsonpath={.spec.clusterIP}:{.spec.ports[0].port}",
        ])
        .stdout;
    let (env, _) = sh(
        &c,
        "withtoken",
        "echo $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT $KUBERNETES_PORT",
    );
    assert_eq!(env, format!("{service} tcp://{service}\n"));
    // From the Pod's network namespace, a client with the Pod's token and ca.crt (kubectl's
    // in-cluster configuration) lists the Pods. (The image's busybox wget cannot be that
    // client: its TLS offers no signature algorithm a current server accepts.)
    let ca_file = c.file("pod-ca.crt", &ca);
    let in_cluster = kubeconfig_with(
        &c,
        &format!("https://{service}"),
        &format!("certificate-authority: {}", ca_file.display()),
        &token,
    );
    let netns = pod_netns(&c, "withtoken");
    let listed = std::process::Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["kubectl", "--kubeconfig", in_cluster.to_str().unwrap()])
        .args(["get", "pods", "-o", "name"])
        .envs(
            c.kubectl_cmd(&[])
                .get_envs()
                .filter_map(|(k, v)| Some((k, v?))),
        )
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("pod/withtoken"),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let forged = token_kubeconfig(&c, &format!("{token}x"));
    let refused = c.kubectl(&["--kubeconfig", forged.to_str().unwrap(), "get", "pods"]);
    assert!(
        refused.stderr.contains("Unauthorized"),
        "{}",
        refused.stderr
    );
    c.kubectl(&["delete", "pod", "withtoken"]).ok();
    let after = as_pod(&["get", "pods"]);
    assert!(
        after.stderr.contains("Unauthorized"),
        "a token outlived its Pod: {}",
        after.stdout
    );

    // TokenRequest through kubectl, and its limits.
    let made = c.kubectl(&["create", "token", "default", "--duration=1h"]);
    let made_config = token_kubeconfig(&c, made.ok().trim());
    c.kubectl(&["--kubeconfig", made_config.to_str().unwrap(), "get", "pods"])
        .ok();
    let short = c.kubectl(&["create", "token", "default", "--duration=1m"]);
    assert!(
        short.stderr.contains("spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"),
        "{}",
        short.stderr
    );
    let missing = c.kubectl(&["create", "token", "nobody"]);
    assert!(
        missing
            .stderr
            .contains(r#"serviceaccounts "nobody" not found"#),
        "{}",
        missing.stderr
    );
}

#[test]
fn sub_paths_stay_inside_their_volume() {
    let Some(c) = Cluster::with_containers("volume tests") else {
        return;
    };
    c.apply(
        "pod",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: subs
spec:
  terminationGracePeriodSeconds: 0
  initContainers:
  - name: links
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /v/real && echo inside > /v/real/f && ln -s real /v/inside && ln -s / /v/to-root && ln -s ../ /v/up && ln -s /bin/sh /v/shell"]
    volumeMounts: [{name: v, mountPath: /v}]
  containers:
  - name: fine
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    env: [{name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
    volumeMounts:
    - {name: v, mountPath: /in, subPath: inside}
    - {name: v, mountPath: /mine, subPathExpr: "per-pod/$(POD)"}
  - name: root
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    volumeMounts: [{name: v, mountPath: /host, subPath: to-root}]
  - name: up
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    volumeMounts: [{name: v, mountPath: /host, subPath: up}]
  - name: shell
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    volumeMounts: [{name: v, mountPath: /sh, subPath: shell}]
  volumes:
  - name: v
    emptyDir: {}
"#,
    );
    let status = |container: &str, field: &str| {
        c.kubectl(&[
            "get",
            "pod",
            "subs",
            "-o",
            &format!("jsonpath={{.status.containerStatuses[?(@.name==\"{container}\")].{field}}}"),
        ])
        .stdout
    };
    assert!(
        eventually(60, || status("fine", "ready") == "true"),
        "{}",
        c.kubectl(&["describe", "pod", "subs"]).stdout
    );
    let run = c.kubectl(&[
        "exec",
        "subs",
        "-c",
        "fine",
        "--",
        "sh",
        "-c",
        "cat /in/f; ls /mine; echo x > /mine/w",
    ]);
    assert_eq!(run.ok(), "inside\n");
    for container in ["root", "up", "shell"] {
        assert!(
            eventually(30, || status(container, "state.waiting.reason")
                == "CreateContainerConfigError"),
            "{container}: {}",
            c.kubectl(&["describe", "pod", "subs"]).stdout
        );
        assert_eq!(
            status(container, "state.waiting.message"),
            format!("failed to prepare subPath for volumeMount \"v\" of container \"{container}\"")
        );
    }
    // The subPathExpr directory was made inside the volume.
    let data = c.data().join("node/pods");
    let made: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|p| {
            let dir = p
                .unwrap()
                .path()
                .join("volumes/kubernetes.io~empty-dir/v/per-pod/subs");
            dir.join("w").exists().then_some(dir)
        })
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
}

#[test]
fn read_only_host_paths_are_read_only_and_recursively_so_when_asked() {
    let Some(c) = Cluster::with_containers("volume tests") else {
        return;
    };
    // A host directory with a mount beneath it, as a node's /var/lib often has.
    let host = c.data().join("host-ro");
    let sub = host.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _unmount = Unmount(sub.clone());
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: ro
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    volumeMounts:
    - {{name: h, mountPath: /ro, readOnly: true}}
    - {{name: h, mountPath: /rro, readOnly: true, recursiveReadOnly: Enabled}}
  volumes:
  - name: h
    hostPath: {{path: {}, type: Directory}}
"#,
        host.display()
    );
    c.apply("ro", &manifest);
    assert!(
        running(&c, "ro"),
        "{}",
        c.kubectl(&["describe", "pod", "ro"]).stdout
    );
    let (_, err) = sh(&c, "ro", "touch /ro/f");
    assert!(err.contains("Read-only file system"), "{err}");
    // readOnly alone leaves the mounts beneath writable, as on Kubernetes...
    let (_, err) = sh(&c, "ro", "touch /ro/sub/plain && echo written");
    assert!(err.is_empty(), "{err}");
    // ...recursiveReadOnly does not.
    let (_, err) = sh(&c, "ro", "touch /rro/sub/deep");
    assert!(err.contains("Read-only file system"), "{err}");
    let reported = c
        .kubectl(&[
            "get",
            "pod",
            "ro",
            "-o",
            "jsonpath={.status.containerStatuses[0].volumeMounts[*].recursiveReadOnly}",
        ])
        .stdout;
    assert!(reported.starts_with("Disabled Enabled"), "{reported}");
}

#[test]
fn fs_group_owns_the_volumes_as_kubelet_sets_them() {
    let Some(c) = Cluster::with_containers("volume tests") else {
        return;
    };
    c.kubectl(&["create", "configmap", "cfg", "--from-literal=k=v"])
        .ok();
    c.apply(
        "pod",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: grouped
spec:
  terminationGracePeriodSeconds: 0
  securityContext: {runAsUser: 1000, fsGroup: 1234}
  containers:
  - name: app
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    volumeMounts: [{name: scratch, mountPath: /scratch}, {name: cfg, mountPath: /cfg}]
  volumes:
  - name: scratch
    emptyDir: {}
  - name: cfg
    configMap: {name: cfg, defaultMode: 0400}
"#,
    );
    assert!(
        running(&c, "grouped"),
        "{}",
        c.kubectl(&["describe", "pod", "grouped"]).stdout
    );
    let (out, err) = sh(
        &c,
        "grouped",
        "stat -c '%a %g' /scratch; stat -L -c '%a %g' /cfg/k; cat /cfg/k; echo; touch /scratch/new; stat -c %g /scratch/new",
    );
    // The emptyDir gains setgid and the group; the 0400 key becomes 0440 and readable by the
    // group; a new file inherits the group.
    assert_eq!(out, "2777 1234\n440 1234\nv\n1234\n", "{err}");
    // The token belongs to the Pod's one user (kubelet's FsUser): 0600, then the group's read
    // bit; the other files of the volume stay root's.
    let (out, err) = sh(
        &c,
        "grouped",
        "cd /var/run/secrets/kubernetes.io/serviceaccount && stat -L -c '%n %a %u %g' token ca.crt && head -c 3 token",
    );
    assert_eq!(out, "token 640 1000 1234\nca.crt 644 0 1234\neyJ", "{err}");
}

#[test]
fn mount_propagation_carries_mounts_the_way_it_names() {
    let Some(c) = Cluster::with_containers("volume tests") else {
        return;
    };
    c.apply(
        "prop",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: prop
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: watcher
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    volumeMounts:
    - {name: v, mountPath: /private}
    - {name: v, mountPath: /slave, mountPropagation: HostToContainer}
  - name: maker
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    securityContext: {privileged: true}
    volumeMounts: [{name: v, mountPath: /shared, mountPropagation: Bidirectional}]
  volumes:
  - name: v
    emptyDir: {}
"#,
    );
    assert!(
        eventually(60, || c
            .kubectl(&[
                "get",
                "pod",
                "prop",
                "-o",
                "jsonpath={.status.containerStatuses[*].ready}"
            ])
            .stdout
            == "true true"),
        "{}",
        c.kubectl(&["describe", "pod", "prop"]).stdout
    );
    let in_container = |container: &str, script: &str| {
        c.kubectl(&["exec", "prop", "-c", container, "--", "sh", "-c", script])
    };
    // A mount the privileged container makes comes out to the node (Bidirectional) and back in
    // to the HostToContainer mount of the other container, but not to its private one.
    let made = in_container(
        "maker",
        "mkdir -p /shared/m && mount -t tmpfs tmpfs /shared/m && echo hi > /shared/m/f",
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    let uid = c
        .kubectl(&["get", "pod", "prop", "-o", "jsonpath={.metadata.uid}"])
        .stdout;
    let on_node = c
        .data()
        .join("node/pods")
        .join(&uid)
        .join("volumes/kubernetes.io~empty-dir/v/m/f");
    assert!(
        eventually(5, || std::fs::read_to_string(&on_node)
            .is_ok_and(|t| t == "hi\n")),
        "the mount did not reach the node"
    );
    assert!(eventually(5, || in_container(
        "watcher",
        "cat /slave/m/f 2>&1"
    )
    .stdout
        == "hi\n"));
    assert_eq!(
        in_container("watcher", "cat /private/m/f 2>/dev/null || echo none").stdout,
        "none\n"
    );
    assert_eq!(
        in_container("maker", "umount /shared/m && echo gone").stdout,
        "gone\n"
    );

    // A Bidirectional hostPath on a private mount of the node could not propagate: the
    // container is refused with containerd's words.
    let private = tempfile::tempdir().unwrap();
    let private_dir = private.path().canonicalize().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new("mount")
            .args(args)
            .status()
            .unwrap()
            .success()
    };
    assert!(run(&[
        "-t",
        "tmpfs",
        "tmpfs",
        private_dir.to_str().unwrap()
    ]));
    assert!(run(&["--make-private", private_dir.to_str().unwrap()]));
    let host_path = private_dir.join("data");
    c.apply(
        "unshared",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: unshared
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: maker
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    securityContext: {{privileged: true}}
    volumeMounts: [{{name: h, mountPath: /h, mountPropagation: Bidirectional}}]
  volumes:
  - name: h
    hostPath: {{path: {}, type: DirectoryOrCreate}}
"#,
            host_path.display()
        ),
    );
    let expected = format!(
        "path {:?} is mounted on {:?} but it is not a shared mount",
        host_path.display().to_string(),
        private_dir.display().to_string()
    );
    let reason = || {
        c.kubectl(&[
            "get",
            "pod",
            "unshared",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason}: {.status.containerStatuses[0].state.waiting.message}",
        ])
        .stdout
    };
    let refused = eventually(30, || {
        reason() == format!("CreateContainerError: {expected}")
    });
    c.kubectl(&["delete", "pod", "unshared", "--wait"]);
    assert!(
        std::process::Command::new("umount")
            .arg(&private_dir)
            .status()
            .unwrap()
            .success()
    );
    assert!(refused, "{}", reason());
}

#[test]
fn an_empty_dir_on_disk_past_its_size_limit_gets_the_pod_evicted() {
    let Some(c) = Cluster::with_containers("volume tests") else {
        return;
    };
    c.apply(
        "pod",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: alpine
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "dd if=/dev/zero of=/cache/big bs=1k count=2048; sleep 3600"]
    volumeMounts: [{name: cache, mountPath: /cache}]
  volumes:
  - name: cache
    emptyDir: {sizeLimit: 1Mi}
"#,
    );
    let get = |path: &str| {
        c.kubectl(&["get", "pod", "hog", "-o", &format!("jsonpath={path}")])
            .stdout
    };
    // The node looks at every re-sync (10 s).
    assert!(
        eventually(40, || get("{.status.phase}") == "Failed"),
        "{}",
        c.kubectl(&["describe", "pod", "hog"]).stdout
    );
    assert_eq!(get("{.status.reason}"), "Evicted");
    assert_eq!(
        get("{.status.message}"),
        "Usage of EmptyDir volume \"cache\" exceeds the limit \"1Mi\". "
    );
    assert_eq!(
        get("{.status.conditions[?(@.type==\"DisruptionTarget\")].reason}"),
        "TerminationByKubelet"
    );
    let events = c
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "reason=Evicted",
            "-o",
            "jsonpath={.items[*].message}",
        ])
        .stdout;
    assert!(events.contains("exceeds the limit"), "{events}");
    let table = c.kubectl(&["get", "pod", "hog", "--no-headers"]).stdout;
    assert!(
        table.contains("Evicted") || table.contains("Error"),
        "{table}"
    );
}

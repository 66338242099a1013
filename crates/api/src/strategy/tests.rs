//! Table-driven tests of the strategy entry points, including the examples of the volume
//! specification's validation section verbatim.

use super::*;
use crate::field::aggregate;
use crate::registry::find;

fn res(plural: &str) -> &'static Resource {
    let group = match plural {
        "deployments" | "replicasets" | "statefulsets" | "daemonsets" => "apps",
        "jobs" | "cronjobs" => "batch",
        _ => "",
    };
    find(group, "v1", plural).expect("test resources are served")
}

/// Runs a pod through the create path the API server uses and returns the rendered errors.
fn create(plural: &str, mut obj: Value) -> (Value, Vec<String>) {
    let r = res(plural);
    // The API server's order: prepare (which defaults first), then default again, then validate.
    prepare_for_create(r, &mut obj);
    default_object(r, &mut obj);
    let errs = validate_create(r, &obj)
        .iter()
        .map(ToString::to_string)
        .collect();
    (obj, errs)
}

fn tutorial_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "date-tail", "namespace": "default"},
        "spec": {
            "containers": [
                {"name": "date", "image": "alpine", "command": ["sh", "-c"], "args": ["date"],
                 "volumeMounts": [{"name": "log-volume", "mountPath": "/var/log/date-tail"}]},
                {"name": "tail", "image": "alpine", "command": ["sh", "-c"], "args": ["tail"],
                 "volumeMounts": [{"name": "log-volume", "mountPath": "/var/log/date-tail"}]},
            ],
            "volumes": [{"name": "log-volume", "emptyDir": null}],
            "terminationGracePeriodSeconds": 0,
        },
    })
}

fn pod_with(f: impl FnOnce(&mut Value)) -> Value {
    let mut p = tutorial_pod();
    f(&mut p);
    p
}

#[test]
fn tutorial_pod_looks_like_a_real_cluster() {
    let (pod, errs) = create("pods", tutorial_pod());
    assert_eq!(errs, Vec::<String>::new());
    let container = |name: &str, args: &str| {
        json!({
            "name": name, "image": "alpine", "command": ["sh", "-c"], "args": [args],
            "imagePullPolicy": "Always", "resources": {},
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
            "volumeMounts": [{"name": "log-volume", "mountPath": "/var/log/date-tail"}],
        })
    };
    let want = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "date-tail", "namespace": "default"},
        "spec": {
            "containers": [container("date", "date"), container("tail", "tail")],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "serviceAccount": "default",
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 0,
            "tolerations": [
                {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
                {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300},
            ],
            "volumes": [{"name": "log-volume", "emptyDir": {}}],
        },
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    });
    assert_eq!(pod, want);
}

#[test]
fn pod_validation_examples() {
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "duplicate volume name",
            pod_with(|p| {
                p["spec"]["volumes"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "log-volume", "emptyDir": {}}))
            }),
            vec![r#"spec.volumes[1].name: Duplicate value: "log-volume""#],
        ),
        (
            "volume name not a label, so mounts do not find it",
            pod_with(|p| p["spec"]["volumes"][0]["name"] = json!("My_Vol")),
            vec![
                "spec.volumes[0].name: Invalid value: \"My_Vol\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                r#"spec.containers[0].volumeMounts[0].name: Not found: "log-volume""#,
                r#"spec.containers[1].volumeMounts[0].name: Not found: "log-volume""#,
            ],
        ),
        (
            "two sources",
            pod_with(|p| {
                p["spec"]["volumes"][0] =
                    json!({"name": "log-volume", "emptyDir": {}, "hostPath": {"path": "/tmp"}})
            }),
            vec![
                "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type",
                r#"spec.containers[0].volumeMounts[0].name: Not found: "log-volume""#,
                r#"spec.containers[1].volumeMounts[0].name: Not found: "log-volume""#,
            ],
        ),
        (
            "downwardAPI second source is misspelled upstream",
            pod_with(|p| {
                p["spec"]["volumes"][0] =
                    json!({"name": "log-volume", "emptyDir": {}, "downwardAPI": {"items": []}})
            }),
            vec![
                "spec.volumes[0].downwarAPI: Forbidden: may not specify more than 1 volume type",
                r#"spec.containers[0].volumeMounts[0].name: Not found: "log-volume""#,
                r#"spec.containers[1].volumeMounts[0].name: Not found: "log-volume""#,
            ],
        ),
        (
            "hostPath type and backsteps",
            pod_with(|p| {
                p["spec"]["volumes"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "h", "hostPath": {"path": "/a/../b", "type": "Dir"}}));
                p["spec"]["volumes"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "i", "hostPath": {"path": "/x", "type": "Dir"}}));
            }),
            vec![
                r#"spec.volumes[1].hostPath.path: Invalid value: "/a/../b": must not contain '..'"#,
                r#"spec.volumes[1].hostPath.type: Unsupported value: "Dir": supported values: "", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket""#,
                r#"spec.volumes[2].hostPath.type: Unsupported value: "Dir": supported values: "", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket""#,
            ],
        ),
        (
            "secret defaultMode given in decimal",
            pod_with(|p| {
                p["spec"]["volumes"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "s", "secret": {"secretName": "x", "defaultMode": 644}}))
            }),
            vec![
                "spec.volumes[1].secret.defaultMode: Invalid value: 644: must be a number between 0 and 0777 (octal), both inclusive",
            ],
        ),
        (
            "secret and configMap names required, item paths",
            pod_with(|p| {
                let v = p["spec"]["volumes"].as_array_mut().unwrap();
                v.push(json!({"name": "s", "secret": {"items": [{"key": "k", "path": "/x"}]}}));
                v.push(
                    json!({"name": "c", "configMap": {"items": [{"key": "", "path": "..data"}]}}),
                );
            }),
            vec![
                "spec.volumes[1].secret.secretName: Required value",
                r#"spec.volumes[1].secret.items[0].path: Invalid value: "/x": must be a relative path"#,
                "spec.volumes[2].configMap.name: Required value",
                "spec.volumes[2].configMap.items[0].key: Required value",
                r#"spec.volumes[2].configMap.items[0].path: Invalid value: "..data": must not start with '..'"#,
            ],
        ),
        (
            "downwardAPI items carry no index",
            pod_with(|p| {
                p["spec"]["volumes"].as_array_mut().unwrap().push(
                    json!({"name": "d", "downwardAPI": {"items": [
                        {"path": "/p", "fieldRef": {"fieldPath": "spec.nodeName"}},
                        {"path": "q"},
                        {"path": "r", "fieldRef": {"fieldPath": "foo"}},
                    ]}}),
                );
            }),
            vec![
                r#"spec.volumes[1].downwardAPI.path: Invalid value: "/p": must be a relative path"#,
                r#"spec.volumes[1].downwardAPI.fieldRef.fieldPath: Unsupported value: "spec.nodeName": supported values: "metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid""#,
                "spec.volumes[1].downwardAPI: Required value: one of fieldRef and resourceFieldRef is required",
                r#"spec.volumes[1].downwardAPI.fieldRef.fieldPath: Invalid value: "foo": error converting fieldPath: field label not supported: foo"#,
            ],
        ),
        (
            "projected token too short and duplicate paths",
            pod_with(|p| {
                p["spec"]["volumes"].as_array_mut().unwrap().push(
                    json!({"name": "p", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "t", "expirationSeconds": 300}},
                        {"secret": {"name": "s1", "items": [{"key": "a", "path": "x"}]}},
                        {"configMap": {"name": "c1", "items": [{"key": "a", "path": "x"}]}},
                    ]}}),
                );
            }),
            vec![
                "spec.volumes[1].projected.sources[0].serviceAccountToken.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes",
                r#"spec.volumes[1].projected: Invalid value: "c1": conflicting duplicate paths"#,
            ],
        ),
        (
            "pvc, nfs and csi sources",
            pod_with(|p| {
                let v = p["spec"]["volumes"].as_array_mut().unwrap();
                v.push(json!({"name": "a", "persistentVolumeClaim": {"claimName": ""}}));
                v.push(json!({"name": "b", "nfs": {"server": "", "path": "exports"}}));
                v.push(json!({"name": "c", "csi": {"driver": ""}}));
            }),
            vec![
                "spec.volumes[1].persistentVolumeClaim.claimName: Required value",
                "spec.volumes[2].nfs.server: Required value",
                r#"spec.volumes[2].nfs.path: Invalid value: "exports": must be an absolute path"#,
                "spec.volumes[3].csi.driver: Required value",
            ],
        ),
        (
            "mount errors: unknown volume, duplicate path, subPath quirks",
            pod_with(|p| {
                p["spec"]["containers"][0]["volumeMounts"] = json!([
                    {"name": "data", "mountPath": "/data"},
                    {"name": "log-volume", "mountPath": "/data", "subPath": "/etc"},
                    {"name": "log-volume", "mountPath": "/b", "subPath": "../x"},
                    {"name": "log-volume", "mountPath": "/c", "subPath": "a", "subPathExpr": "$(POD)"},
                    {"name": "log-volume", "mountPath": "/d", "mountPropagation": "Shared"},
                    {"name": "log-volume", "mountPath": "/e", "recursiveReadOnly": "Enabled"},
                ]);
            }),
            vec![
                r#"spec.containers[0].volumeMounts[0].name: Not found: "data""#,
                r#"spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/data": must be unique"#,
                r#"spec.containers[0].volumeMounts.subPath: Invalid value: "/etc": must be a relative path"#,
                r#"spec.containers[0].volumeMounts.subPath: Invalid value: "../x": must not contain '..'"#,
                r#"spec.containers[0].volumeMounts[3].subPathExpr: Invalid value: "$(POD)": subPathExpr and subPath are mutually exclusive"#,
                r#"spec.containers[0].volumeMounts.mountPropagation: Unsupported value: "Shared": supported values: "Bidirectional", "HostToContainer", "None""#,
                "spec.containers[0].volumeMounts.recursiveReadOnly: Forbidden: may only be specified when readOnly is true",
            ],
        ),
        (
            "Bidirectional needs a privileged container",
            pod_with(|p| {
                p["spec"]["containers"][0]["volumeMounts"][0]["mountPropagation"] =
                    json!("Bidirectional")
            }),
            vec![
                "spec.containers[0].volumeMounts.mountPropagation: Forbidden: Bidirectional mount propagation is available only to privileged containers",
            ],
        ),
        (
            "containers: required, name and image",
            pod_with(|p| {
                p["spec"]["containers"] = json!([
                    {"name": "", "image": "a"},
                    {"name": "Web", "image": ""},
                    {"name": "a", "image": "x", "ports": [{"containerPort": 0}, {"containerPort": 80, "protocol": "ICMP", "name": "80"}]},
                    {"name": "a", "image": "x", "env": [{"name": "A=B"}, {"name": "X", "valueFrom": {}}]},
                ]);
            }),
            vec![
                "spec.containers[0].name: Required value",
                "spec.containers[1].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                "spec.containers[1].image: Required value",
                "spec.containers[2].ports[0].containerPort: Required value",
                r#"spec.containers[2].ports[1].name: Invalid value: "80": must contain at least one letter (a-z)"#,
                r#"spec.containers[2].ports[1].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP""#,
                r#"spec.containers[3].env[0].name: Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters other than '='"#,
                "spec.containers[3].env[1].valueFrom: Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
                r#"spec.containers[3].name: Duplicate value: "a""#,
            ],
        ),
        (
            "no containers",
            pod_with(|p| p["spec"]["containers"] = json!([])),
            vec!["spec.containers: Required value"],
        ),
        (
            "pod-level policies",
            pod_with(|p| {
                p["spec"]["restartPolicy"] = json!("Sometimes");
                p["spec"]["dnsPolicy"] = json!("Google");
            }),
            vec![
                r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure""#,
                r#"spec.dnsPolicy: Unsupported value: "Google": supported values: "ClusterFirst", "ClusterFirstWithHostNet", "Default", "None""#,
            ],
        ),
        (
            "no name",
            pod_with(|p| p["metadata"] = json!({"namespace": "default"})),
            vec!["metadata.name: Required value: name or generateName is required"],
        ),
        (
            "requests above limits",
            pod_with(|p| {
                p["spec"]["containers"][0]["resources"] =
                    json!({"limits": {"cpu": "1"}, "requests": {"cpu": "2"}})
            }),
            vec![
                r#"spec.containers[0].resources.requests[cpu]: Invalid value: "2": must be less than or equal to cpu limit of 1"#,
            ],
        ),
    ];
    for (name, pod, want) in cases {
        let (_, errs) = create("pods", pod);
        assert_eq!(errs, want, "{name}");
    }
}

#[test]
fn one_error_and_several_aggregate_like_the_api() {
    let (pod, _) = create(
        "pods",
        pod_with(|p| p["spec"]["containers"][0]["image"] = json!("")),
    );
    let errs = validate_create(res("pods"), &pod);
    assert_eq!(aggregate(&errs), "spec.containers[0].image: Required value");
}

#[test]
fn pod_update_rules() {
    let r = res("pods");
    let (old, errs) = create("pods", tutorial_pod());
    assert!(errs.is_empty());
    let update = |f: &dyn Fn(&mut Value)| -> Vec<String> {
        let mut new = old.clone();
        f(&mut new);
        prepare_for_update(r, &mut new, &old);
        default_object(r, &mut new);
        validate_update(r, &new, &old)
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(
        update(&|p| p["spec"]["containers"][0]["image"] = json!("busybox")),
        Vec::<String>::new()
    );
    assert_eq!(
        update(&|p| p["metadata"]["labels"] = json!({"app": "x"})),
        Vec::<String>::new()
    );
    assert_eq!(
        update(&|p| p["spec"]["terminationGracePeriodSeconds"] = json!(5)).len(),
        1
    );
    assert_eq!(
        update(&|p| p["metadata"]["name"] = json!("other")),
        [r#"metadata.name: Invalid value: "other": field is immutable"#]
    );
    let errs = update(&|p| p["spec"]["volumes"][0]["name"] = json!("v2"));
    assert!(errs.iter().any(|e| e.starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,")), "{errs:?}");
}

#[test]
fn config_map_and_secret_rules() {
    let cm = json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a b": "x", "ok": "y"}, "binaryData": {"ok": "eQ=="}});
    let (_, errs) = create("configmaps", cm);
    assert_eq!(
        errs,
        [
            "data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            r#"data[ok]: Invalid value: "ok": duplicate of key present in binaryData"#,
            r#"binaryData[ok]: Invalid value: "ok": duplicate of key present in data"#,
        ]
    );

    let (secret, errs) = create(
        "secrets",
        json!({"metadata": {"name": "s", "namespace": "d"}, "type": "", "stringData": {"user": "admin"}}),
    );
    assert!(errs.is_empty());
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["data"], json!({"user": "YWRtaW4="}));
    assert_eq!(secret.get("stringData"), None);

    let (_, errs) = create(
        "secrets",
        json!({"metadata": {"name": "t", "namespace": "d"}, "type": "kubernetes.io/tls", "data": {}}),
    );
    assert_eq!(
        errs,
        [
            "data[tls.crt]: Required value",
            "data[tls.key]: Required value"
        ]
    );

    let r = res("secrets");
    let old = json!({"metadata": {"name": "s", "namespace": "d"}, "type": "Opaque", "immutable": true, "data": {"a": "eA=="}});
    let new = json!({"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/basic-auth", "immutable": true, "data": {"username": "eA=="}});
    let errs: Vec<String> = validate_update(r, &new, &old)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        [
            r#"type: Invalid value: "kubernetes.io/basic-auth": field is immutable"#,
            "data: Forbidden: field is immutable when `immutable` is set",
        ]
    );
    let cmr = res("configmaps");
    let old =
        json!({"metadata": {"name": "c", "namespace": "d"}, "immutable": true, "data": {"a": "1"}});
    let new = json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "1"}});
    let errs: Vec<String> = validate_update(cmr, &new, &old)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        ["immutable: Forbidden: field is immutable when `immutable` is set"]
    );
}

#[test]
fn namespace_create() {
    let (ns, errs) = create(
        "namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}),
    );
    assert!(errs.is_empty());
    assert_eq!(
        ns,
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "demo", "labels": {"kubernetes.io/metadata.name": "demo"}},
               "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
    );
    let (_, errs) = create("namespaces", json!({"metadata": {"name": "a.b"}}));
    assert_eq!(
        errs,
        [r#"metadata.name: Invalid value: "a.b": must not contain dots"#]
    );
}

#[test]
fn storage_objects() {
    let (pv, errs) = create(
        "persistentvolumes",
        json!({"metadata": {"name": "pv"}, "spec": {"capacity": {"storage": "0"}, "accessModes": ["X"]}}),
    );
    assert_eq!(
        errs,
        [
            r#"spec.accessModes: Unsupported value: "X": supported values: "ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod""#,
            r#"spec.capacity[storage]: Invalid value: "0": must be greater than zero"#,
            "spec: Required value: must specify a volume type",
        ]
    );
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(pv["status"], json!({"phase": "Pending"}));

    let (pvc, errs) = create(
        "persistentvolumeclaims",
        json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {}}),
    );
    assert_eq!(
        errs,
        [
            "spec.accessModes: Required value: at least 1 access mode is required",
            "spec.resources[storage]: Required value"
        ]
    );
    assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
    assert_eq!(pvc["status"], json!({"phase": "Pending"}));

    let r = res("persistentvolumeclaims");
    let old = json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}, "status": {"phase": "Bound"}});
    let mut new = old.clone();
    new["spec"]["resources"]["requests"]["storage"] = json!("1Gi");
    let errs: Vec<String> = validate_update(r, &new, &old)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        ["spec.resources.requests.storage: Forbidden: field can not be less than previous value"]
    );
    new["spec"]["accessModes"] = json!(["ReadWriteMany"]);
    let errs: Vec<String> = validate_update(r, &new, &old)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(errs[0].starts_with("spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n"), "{errs:?}");
}

#[test]
fn workloads_get_generation_and_defaults() {
    let r = res("deployments");
    let dep = json!({"metadata": {"name": "web", "namespace": "d"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}});
    let (created, errs) = create("deployments", dep);
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(created["spec"]["replicas"], 1);
    assert_eq!(
        created["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    );
    assert_eq!(
        created["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert_eq!(
        created["spec"]["template"]["spec"].get("enableServiceLinks"),
        None
    );

    let mut scaled = created.clone();
    scaled["spec"]["replicas"] = json!(3);
    prepare_for_update(r, &mut scaled, &created);
    assert_eq!(scaled["metadata"]["generation"], 2);
    let mut relabeled = created.clone();
    relabeled["metadata"]["labels"] = json!({"a": "b"});
    // A client that leaves out defaulted fields does not change the spec either.
    relabeled["spec"]
        .as_object_mut()
        .unwrap()
        .remove("revisionHistoryLimit");
    prepare_for_update(r, &mut relabeled, &created);
    assert_eq!(relabeled["metadata"]["generation"], 1);

    let (_, errs) = create(
        "deployments",
        json!({"metadata": {"name": "w", "namespace": "d"}, "spec": {"template": {"spec": {"containers": []}}}}),
    );
    assert_eq!(errs, ["spec.template.spec.containers: Required value"]);
}

#[test]
fn status_updates_keep_the_rest() {
    let r = res("deployments");
    let old = json!({"metadata": {"name": "w", "labels": {"a": "1"}}, "spec": {"replicas": 1}, "status": {}});
    let mut new = json!({"metadata": {"name": "w", "labels": {"a": "2"}, "resourceVersion": "7"}, "spec": {"replicas": 5}, "status": {"replicas": 1}});
    prepare_for_status_update(r, &mut new, &old);
    assert_eq!(
        new,
        json!({"metadata": {"name": "w", "labels": {"a": "1"}, "resourceVersion": "7"}, "spec": {"replicas": 1}, "status": {"replicas": 1}})
    );
}

#[test]
fn unknown_fields_are_reported_with_their_paths() {
    let mut pod = tutorial_pod();
    pod["spec"]["containers"][0]["imagePullPolcy"] = json!("Always");
    pod["spec"]["volumes"][0]["hostpath"] = json!({"path": "/x"});
    pod["metadata"]["labelz"] = json!({});
    pod["metadata"]["labels"] = json!({"any": "thing"});
    assert_eq!(
        unknown_fields(res("pods"), &pod),
        [
            "metadata.labelz",
            "spec.containers[0].imagePullPolcy",
            "spec.volumes[0].hostpath"
        ]
    );
    assert_eq!(
        unknown_fields(res("pods"), &tutorial_pod()),
        Vec::<String>::new()
    );
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}, "extra": 1});
    assert_eq!(unknown_fields(res("configmaps"), &cm), ["extra"]);
}

#[test]
fn services_default_like_a_cluster() {
    let (svc, errs) = create(
        "services",
        json!({"metadata": {"name": "web", "namespace": "d"}, "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}}),
    );
    assert!(errs.is_empty());
    assert_eq!(
        svc["spec"],
        json!({"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}], "selector": {"app": "web"}, "sessionAffinity": "None",
               "type": "ClusterIP", "internalTrafficPolicy": "Cluster", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]})
    );
    assert_eq!(svc["status"], json!({"loadBalancer": {}}));
    let (_, errs) = create(
        "services",
        json!({"metadata": {"name": "1web", "namespace": "d"}, "spec": {}}),
    );
    assert_eq!(
        errs,
        [
            "metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
        ]
    );
}

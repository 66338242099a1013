use super::*;
use crate::registry::{RESOURCES, find};

const NOW: &str = "2026-01-10T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

/// An RFC 3339 time `secs` seconds before [`NOW`].
fn ago(secs: i64) -> String {
    let t = now()
        .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(secs))
        .unwrap();
    t.to_string()
}

fn row(group: &str, plural: &str, obj: Value) -> Vec<Value> {
    let r = RESOURCES
        .iter()
        .find(|r| r.group == group && r.plural == plural)
        .unwrap();
    cells(r, &obj, now())
}

fn names(r: &Resource) -> Vec<(String, i64)> {
    column_definitions(r)
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["priority"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn human_duration_matches_apimachinery() {
    let cases: &[(i64, &str)] = &[
        (-2, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (59, "59s"),
        (119, "119s"),
        (120, "2m"),
        (125, "2m5s"),
        (599, "9m59s"),
        (600, "10m"),
        (3 * 3600 - 1, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 60 * 5, "3h5m"),
        (8 * 3600, "8h"),
        (47 * 3600 + 59 * 60, "47h"),
        (48 * 3600, "2d"),
        (50 * 3600, "2d2h"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (731 * 86400, "2y1d"),
        (8 * 365 * 86400, "8y"),
    ];
    for (secs, want) in cases {
        assert_eq!(human_seconds(*secs), *want, "{secs}");
    }
    assert_eq!(human_duration(Duration::from_secs(125)), "2m5s");
    assert_eq!(since(None, now()), "<unknown>");
}

#[test]
fn every_resource_has_columns_and_matching_cells() {
    for r in RESOURCES {
        let cols = column_definitions(r);
        let cols = cols.as_array().unwrap();
        assert!(cols.len() >= 2, "{}", r.plural);
        for c in cols {
            assert!(
                c["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{} {}",
                r.plural,
                c["name"]
            );
        }
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": ago(30)}});
        assert_eq!(cells(r, &obj, now()).len(), cols.len(), "{}", r.plural);
    }
}

#[test]
fn pod_columns_are_upstreams() {
    let pods = find("", "v1", "pods").unwrap();
    let want = [
        ("Name", 0),
        ("Ready", 0),
        ("Status", 0),
        ("Restarts", 0),
        ("Age", 0),
        ("IP", 1),
        ("Node", 1),
        ("Nominated Node", 1),
        ("Readiness Gates", 1),
    ];
    let got = names(pods);
    assert_eq!(
        got,
        want.iter()
            .map(|(n, p)| (n.to_string(), *p))
            .collect::<Vec<_>>()
    );
    let cols = column_definitions(pods);
    assert_eq!(cols[0]["format"], "name");
    assert_eq!(cols[0]["type"], "string");
    assert_eq!(cols[3]["type"], "string");
    assert_eq!(
        cols[5]["description"],
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."
    );
    assert!(
        cols[0]["description"]
            .as_str()
            .unwrap()
            .starts_with("Name must be unique within a namespace.")
    );
}

fn running_pod() -> Value {
    json!({
        "metadata": {"name": "demo", "creationTimestamp": ago(125)},
        "spec": {"nodeName": "node-1", "containers": [{"name": "main"}, {"name": "side"}]},
        "status": {
            "phase": "Running",
            "podIP": "10.244.0.7",
            "podIPs": [{"ip": "10.244.0.7"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": "main", "ready": true, "restartCount": 0, "state": {"running": {}}},
                {"name": "side", "ready": true, "restartCount": 0, "state": {"running": {}}}
            ]
        }
    })
}

#[test]
fn running_pod_row() {
    assert_eq!(
        row("", "pods", running_pod()),
        vec![
            json!("demo"),
            json!("2/2"),
            json!("Running"),
            json!("0"),
            json!("2m5s"),
            json!("10.244.0.7"),
            json!("node-1"),
            json!("<none>"),
            json!("<none>")
        ]
    );
}

#[test]
fn pending_pod_row_has_nones() {
    let pod = json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a"}]},
        "status": {"phase": "Pending"}
    });
    assert_eq!(
        row("", "pods", pod),
        vec![
            json!("p"),
            json!("0/1"),
            json!("Pending"),
            json!("0"),
            json!("<unknown>"),
            json!("<none>"),
            json!("<none>"),
            json!("<none>"),
            json!("<none>")
        ]
    );
}

/// The STATUS cell for a pod with these init and app container statuses.
fn status_of(init: Value, containers: Value, extra: Value) -> (String, String, String) {
    let mut pod = json!({
        "metadata": {"name": "p", "creationTimestamp": ago(60)},
        "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}, {"name": "b"}]},
        "status": {"phase": "Pending", "initContainerStatuses": init, "containerStatuses": containers}
    });
    if let (Some(p), Some(e)) = (pod.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            match (p.get_mut(k), v) {
                (Some(Value::Object(dst)), Value::Object(src)) => dst.extend(src.clone()),
                _ => {
                    p.insert(k.clone(), v.clone());
                }
            }
        }
    }
    let c = row("", "pods", pod);
    (
        c[1].as_str().unwrap().into(),
        c[2].as_str().unwrap().into(),
        c[3].as_str().unwrap().into(),
    )
}

#[test]
fn pod_status_algorithm() {
    let done = json!({"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
    let waiting = |r: &str| json!({"state": {"waiting": {"reason": r}}});
    let s = |v: (String, String, String)| v.1;
    // Init containers.
    assert_eq!(
        s(status_of(
            json!([done, {"name": "i2", "state": {"running": {}}}]),
            json!([]),
            json!({})
        )),
        "Init:1/2"
    );
    assert_eq!(
        s(status_of(
            json!([{"name": "i1", "state": {"waiting": {"reason": "PodInitializing"}}}]),
            json!([]),
            json!({})
        )),
        "Init:0/2"
    );
    assert_eq!(
        s(status_of(
            json!([{"name": "i1", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]),
            json!([]),
            json!({})
        )),
        "Init:Error"
    );
    assert_eq!(
        s(status_of(
            json!([{"name": "i1", "state": {"terminated": {"exitCode": 3}}}]),
            json!([]),
            json!({})
        )),
        "Init:ExitCode:3"
    );
    // An init container that exited 0 is done, whatever else it reports.
    assert_eq!(
        s(status_of(
            json!([{"name": "i1", "state": {"terminated": {"exitCode": 0, "signal": 9}}}]),
            json!([]),
            json!({})
        )),
        "Pending"
    );
    assert_eq!(
        s(status_of(
            json!([{"name": "i1", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]),
            json!([]),
            json!({})
        )),
        "Init:Signal:9"
    );
    assert_eq!(
        s(status_of(
            json!([{"name": "i1", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]),
            json!([]),
            json!({})
        )),
        "Init:CrashLoopBackOff"
    );
    // All init containers done, app containers starting.
    let both_done = json!([done, {"name": "i2", "state": {"terminated": {"exitCode": 0}}}]);
    assert_eq!(
        s(status_of(
            both_done.clone(),
            json!([waiting("PodInitializing"), waiting("PodInitializing")]),
            json!({})
        )),
        "PodInitializing"
    );
    assert_eq!(
        s(status_of(
            json!([]),
            json!([waiting("ContainerCreating"), waiting("ContainerCreating")]),
            json!({})
        )),
        "ContainerCreating"
    );
    // The first container (walked last) wins.
    assert_eq!(
        s(status_of(
            json!([]),
            json!([waiting("ErrImagePull"), waiting("ContainerCreating")]),
            json!({})
        )),
        "ErrImagePull"
    );
    assert_eq!(
        s(status_of(
            json!([]),
            json!([{"state": {"terminated": {"exitCode": 2}}}, {"state": {"terminated": {"exitCode": 0, "signal": 15}}}]),
            json!({})
        )),
        "ExitCode:2"
    );
    assert_eq!(
        s(status_of(
            json!([]),
            json!([{"state": {"running": {}}, "ready": true}, {"state": {"terminated": {"exitCode": 0, "signal": 15}}}]),
            json!({})
        )),
        "Signal:15"
    );
    assert_eq!(
        s(status_of(
            json!([]),
            json!([{"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]),
            json!({})
        )),
        "OOMKilled"
    );
    // Completed with one container still running.
    let completed_and_running = json!([{"state": {"running": {}}, "ready": true}, {"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]);
    assert_eq!(
        s(status_of(
            json!([]),
            completed_and_running.clone(),
            json!({})
        )),
        "NotReady"
    );
    assert_eq!(
        s(status_of(
            json!([]),
            completed_and_running,
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        )),
        "Running"
    );
    // Deletion.
    let deleting =
        json!({"metadata": {"deletionTimestamp": ago(1)}, "status": {"phase": "Running"}});
    assert_eq!(
        s(status_of(
            json!([]),
            json!([{"state": {"running": {}}, "ready": true}]),
            deleting
        )),
        "Terminating"
    );
    let succeeded =
        json!({"metadata": {"deletionTimestamp": ago(1)}, "status": {"phase": "Succeeded"}});
    assert_eq!(
        s(status_of(
            json!([]),
            json!([{"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]),
            succeeded
        )),
        "Completed"
    );
    let lost = json!({"metadata": {"deletionTimestamp": ago(1)}, "status": {"reason": "NodeLost"}});
    assert_eq!(s(status_of(json!([]), json!([]), lost)), "Unknown");
    let evicted = json!({"status": {"phase": "Failed", "reason": "Evicted"}});
    assert_eq!(s(status_of(json!([]), json!([]), evicted)), "Evicted");
    let gated = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}});
    assert_eq!(s(status_of(json!([]), json!([]), gated)), "SchedulingGated");
}

#[test]
fn pod_restarts_show_the_last_restart() {
    let (ready, status, restarts) = status_of(
        json!([]),
        json!([
            {"state": {"running": {}}, "ready": true, "restartCount": 2,
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(300)}}},
            {"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "restartCount": 5,
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(40)}}}
        ]),
        json!({}),
    );
    assert_eq!(
        (ready.as_str(), status.as_str(), restarts.as_str()),
        ("1/2", "CrashLoopBackOff", "7 (40s ago)")
    );
    let (_, _, restarts) = status_of(
        json!([]),
        json!([{"state": {"running": {}}, "restartCount": 1}]),
        json!({}),
    );
    assert_eq!(restarts, "1");
}

#[test]
fn sidecars_count_as_containers() {
    let pod = json!({
        "metadata": {"name": "p"},
        "spec": {
            "initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
            "containers": [{"name": "a"}]
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true, "restartCount": 1,
                "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(200)}}}],
            "containerStatuses": [{"name": "a", "ready": true, "state": {"running": {}}}]
        }
    });
    let c = row("", "pods", pod);
    assert_eq!(
        &c[1..4],
        &[json!("2/2"), json!("Running"), json!("1 (3m20s ago)")]
    );
}

#[test]
fn readiness_gates_count_true_conditions() {
    let mut pod = running_pod();
    pod["spec"]["readinessGates"] = json!([{"conditionType": "a"}, {"conditionType": "b"}]);
    pod["status"]["conditions"] =
        json!([{"type": "a", "status": "True"}, {"type": "b", "status": "False"}]);
    pod["status"]["nominatedNodeName"] = json!("node-2");
    let c = row("", "pods", pod);
    assert_eq!(&c[7..], &[json!("node-2"), json!("1/2")]);
}

#[test]
fn simple_core_rows() {
    let meta = |name: &str| json!({"name": name, "creationTimestamp": ago(3 * 86400)});
    assert_eq!(
        row(
            "",
            "namespaces",
            json!({"metadata": meta("default"), "status": {"phase": "Active"}})
        ),
        vec![json!("default"), json!("Active"), json!("3d")]
    );
    assert_eq!(
        row(
            "",
            "configmaps",
            json!({"metadata": meta("cfg"), "data": {"a": "b", "c": "d"}, "binaryData": {"e": "AA=="}})
        ),
        vec![json!("cfg"), json!(3), json!("3d")]
    );
    assert_eq!(
        row(
            "",
            "secrets",
            json!({"metadata": meta("s"), "type": "Opaque", "data": {"k": "dg=="}})
        ),
        vec![json!("s"), json!("Opaque"), json!(1), json!("3d")]
    );
    assert_eq!(
        row("", "serviceaccounts", json!({"metadata": meta("default")})),
        vec![json!("default"), json!(0), json!("3d")]
    );
    assert_eq!(
        row(
            "coordination.k8s.io",
            "leases",
            json!({"metadata": meta("l"), "spec": {"holderIdentity": "node-1"}})
        ),
        vec![json!("l"), json!("node-1"), json!("3d")]
    );
    let sa = find("", "v1", "serviceaccounts").unwrap();
    assert_eq!(
        names(sa),
        vec![("Name".into(), 0), ("Secrets".into(), 0), ("Age".into(), 0)]
    );
}

#[test]
fn unknown_kinds_fall_back_to_name_and_age() {
    let r = Resource {
        group: "example.com",
        version: "v1",
        plural: "widgets",
        singular: "widget",
        kind: "Widget",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        store_name: "widgets",
    };
    assert_eq!(names(&r), vec![("Name".into(), 0), ("Age".into(), 0)]);
    let obj = json!({"metadata": {"name": "w", "creationTimestamp": ago(7200)}});
    assert_eq!(cells(&r, &obj, now()), vec![json!("w"), json!("120m")]);
}

#[test]
fn core_event_rows() {
    let events = find("", "v1", "events").unwrap();
    assert_eq!(
        names(events),
        [
            ("Last Seen", 0),
            ("Type", 0),
            ("Reason", 0),
            ("Object", 0),
            ("Subobject", 1),
            ("Source", 1),
            ("Message", 0),
            ("First Seen", 1),
            ("Count", 1),
            ("Name", 1)
        ]
        .iter()
        .map(|(n, p)| (n.to_string(), *p))
        .collect::<Vec<_>>()
    );
    let ev = json!({
        "metadata": {"name": "demo.17a", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "demo", "fieldPath": "spec.containers{main}"},
        "reason": "Pulled", "type": "Normal", "message": "  Pulled image  \n",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": ago(600), "lastTimestamp": ago(30), "count": 4
    });
    assert_eq!(
        row("", "events", ev),
        vec![
            json!("30s"),
            json!("Normal"),
            json!("Pulled"),
            json!("pod/demo"),
            json!("spec.containers{main}"),
            json!("kubelet, node-1"),
            json!("Pulled image"),
            json!("10m"),
            json!(4),
            json!("demo.17a")
        ]
    );
    // New-style event: eventTime only, reporting controller, no count.
    let ev = json!({
        "metadata": {"name": "e"},
        "involvedObject": {"kind": "Node"},
        "reason": "Starting", "type": "Normal", "message": "m",
        "eventTime": "2026-01-10T11:59:00.123456Z", "reportingComponent": "tatami", "reportingInstance": "node-1"
    });
    assert_eq!(
        row("", "events", ev),
        vec![
            json!("59s"),
            json!("Normal"),
            json!("Starting"),
            json!("node"),
            json!(""),
            json!("tatami, node-1"),
            json!("m"),
            json!("59s"),
            json!(1),
            json!("e")
        ]
    );
}

#[test]
fn events_k8s_io_rows_use_the_core_columns() {
    let ev = json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "e"},
        "regarding": {"kind": "Pod", "name": "web"},
        "reason": "BackOff", "type": "Warning", "note": "Back-off restarting",
        "eventTime": ago(900), "reportingController": "kubelet",
        "series": {"count": 6, "lastObservedTime": ago(20)}
    });
    assert_eq!(
        row("events.k8s.io", "events", ev),
        vec![
            json!("20s"),
            json!("Warning"),
            json!("BackOff"),
            json!("pod/web"),
            json!(""),
            json!("kubelet"),
            json!("Back-off restarting"),
            json!("15m"),
            json!(6),
            json!("e")
        ]
    );
}

#[test]
fn node_rows() {
    let node = json!({
        "metadata": {"name": "node-1", "creationTimestamp": ago(3600),
            "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/": "x", "kubernetes.io/role": "worker"}},
        "spec": {"unschedulable": true},
        "status": {
            "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "Hostname", "address": "node-1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12", "kernelVersion": "6.1.0",
                         "containerRuntimeVersion": "runc://1.2.0"}
        }
    });
    assert_eq!(
        row("", "nodes", node),
        vec![
            json!("node-1"),
            json!("Ready,SchedulingDisabled"),
            json!("control-plane,worker"),
            json!("60m"),
            json!("v1.32.0"),
            json!("10.0.0.5"),
            json!("<none>"),
            json!("Debian GNU/Linux 12"),
            json!("6.1.0"),
            json!("runc://1.2.0")
        ]
    );
    let bare = json!({"metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
    let c = row("", "nodes", bare);
    assert_eq!(&c[1..3], &[json!("NotReady"), json!("<none>")]);
    assert_eq!(
        &c[7..],
        &[json!("<unknown>"), json!("<unknown>"), json!("<unknown>")]
    );
    assert_eq!(
        row("", "nodes", json!({"metadata": {"name": "n"}}))[1],
        json!("Unknown")
    );
}

#[test]
fn volume_rows() {
    let pv = json!({
        "metadata": {"name": "pv1", "creationTimestamp": ago(90)},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "standard",
                 "claimRef": {"namespace": "default", "name": "data"}, "volumeMode": "Filesystem"},
        "status": {"phase": "Bound"}
    });
    assert_eq!(
        row("", "persistentvolumes", pv),
        vec![
            json!("pv1"),
            json!("1Gi"),
            json!("RWO,RWX"),
            json!("Retain"),
            json!("Bound"),
            json!("default/data"),
            json!("standard"),
            json!("<unset>"),
            json!(""),
            json!("90s"),
            json!("Filesystem")
        ]
    );
    let pvc = json!({
        "metadata": {"name": "data", "creationTimestamp": ago(90),
                     "annotations": {"volume.beta.kubernetes.io/storage-class": "beta"}},
        "spec": {"volumeName": "pv1", "storageClassName": "standard", "resources": {"requests": {"storage": "500Mi"}}},
        "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}
    });
    assert_eq!(
        row("", "persistentvolumeclaims", pvc),
        vec![
            json!("data"),
            json!("Bound"),
            json!("pv1"),
            json!("1Gi"),
            json!("RWO"),
            json!("beta"),
            json!("<unset>"),
            json!("90s"),
            json!("<unset>")
        ]
    );
    let pending = json!({"metadata": {"name": "p", "deletionTimestamp": ago(1)}, "spec": {}, "status": {"phase": "Pending"}});
    let c = row("", "persistentvolumeclaims", pending);
    assert_eq!(
        &c[1..6],
        &[
            json!("Terminating"),
            json!(""),
            json!(""),
            json!(""),
            json!("")
        ]
    );
    let sc = json!({
        "metadata": {"name": "standard", "creationTimestamp": ago(30),
                     "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "tatami.io/hostpath", "volumeBindingMode": "WaitForFirstConsumer"
    });
    assert_eq!(
        row("storage.k8s.io", "storageclasses", sc),
        vec![
            json!("standard (default)"),
            json!("tatami.io/hostpath"),
            json!("Delete"),
            json!("WaitForFirstConsumer"),
            json!(false),
            json!("30s")
        ]
    );
}

#[test]
fn service_and_endpoints_rows() {
    let svc = json!({
        "metadata": {"name": "web", "creationTimestamp": ago(30)},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                 "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}],
                 "selector": {"tier": "front", "app": "web"}}
    });
    assert_eq!(
        row("", "services", svc),
        vec![
            json!("web"),
            json!("NodePort"),
            json!("10.96.0.10"),
            json!("<none>"),
            json!("80:30080/TCP,53/UDP"),
            json!("30s"),
            json!("app=web,tier=front")
        ]
    );
    let lb = json!({
        "metadata": {"name": "lb"},
        "spec": {"type": "LoadBalancer", "clusterIP": "None", "externalIPs": ["1.2.3.4"]},
        "status": {"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example"}]}}
    });
    let c = row("", "services", lb);
    assert_eq!(
        &c[2..5],
        &[
            json!("None"),
            json!("5.6.7.8,lb.example,1.2.3.4"),
            json!("<none>")
        ]
    );
    assert_eq!(c[6], json!("<none>"));
    let pending = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer"}});
    assert_eq!(row("", "services", pending)[3], json!("<pending>"));
    let ext = json!({"metadata": {"name": "x"}, "spec": {"type": "ExternalName", "externalName": "db.example"}});
    assert_eq!(row("", "services", ext)[3], json!("db.example"));

    let ep = json!({
        "metadata": {"name": "web", "creationTimestamp": ago(30)},
        "subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]},
            {"addresses": [{"ip": "fd00::1"}]}
        ]
    });
    assert_eq!(
        row("", "endpoints", ep),
        vec![
            json!("web"),
            json!("10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 2 more..."),
            json!("30s")
        ]
    );
    let ep6 = json!({"metadata": {"name": "a"}, "subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]});
    assert_eq!(row("", "endpoints", ep6)[1], json!("[fd00::1]:80"));
    assert_eq!(
        row("", "endpoints", json!({"metadata": {"name": "a"}}))[1],
        json!("<none>")
    );
}

fn template() -> Value {
    json!({"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}]}})
}

#[test]
fn deployment_and_replica_set_rows() {
    let deploy = find("apps", "v1", "deployments").unwrap();
    assert_eq!(
        names(deploy),
        [
            ("Name", 0),
            ("Ready", 0),
            ("Up-to-date", 0),
            ("Available", 0),
            ("Age", 0),
            ("Containers", 1),
            ("Images", 1),
            ("Selector", 1)
        ]
        .iter()
        .map(|(n, p)| (n.to_string(), *p))
        .collect::<Vec<_>>()
    );
    let d = json!({
        "metadata": {"name": "web", "creationTimestamp": ago(30)},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    });
    assert_eq!(
        row("apps", "deployments", d),
        vec![
            json!("web"),
            json!("2/3"),
            json!(3),
            json!(2),
            json!("30s"),
            json!("web,log"),
            json!("nginx:1.27,busybox"),
            json!("app=web")
        ]
    );
    let fresh = json!({"metadata": {"name": "d"}, "spec": {}});
    let c = row("apps", "deployments", fresh);
    assert_eq!(&c[1..4], &[json!("0/1"), json!(0), json!(0)]);
    assert_eq!(c[7], json!(""));
    let rs = json!({
        "metadata": {"name": "web-5d4f", "creationTimestamp": ago(30)},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d4f"}}, "template": template()},
        "status": {"replicas": 2, "readyReplicas": 1}
    });
    assert_eq!(
        row("apps", "replicasets", rs),
        vec![
            json!("web-5d4f"),
            json!(2),
            json!(2),
            json!(1),
            json!("30s"),
            json!("web,log"),
            json!("nginx:1.27,busybox"),
            json!("app=web,pod-template-hash=5d4f")
        ]
    );
    let cols = column_definitions(find("apps", "v1", "replicasets").unwrap());
    assert_eq!(cols[1]["type"], "integer");
}

#[test]
fn stateful_and_daemon_set_rows() {
    let sts = json!({"metadata": {"name": "db", "creationTimestamp": ago(30)}, "spec": {"replicas": 3, "template": template()},
                     "status": {"readyReplicas": 3}});
    assert_eq!(
        row("apps", "statefulsets", sts),
        vec![
            json!("db"),
            json!("3/3"),
            json!("30s"),
            json!("web,log"),
            json!("nginx:1.27,busybox")
        ]
    );
    let mut t = template();
    t["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "linux"});
    let ds = json!({
        "metadata": {"name": "agent", "creationTimestamp": ago(30)},
        "spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["b", "a"]}]}, "template": t},
        "status": {"desiredNumberScheduled": 1, "currentNumberScheduled": 1, "numberReady": 1, "updatedNumberScheduled": 1, "numberAvailable": 1}
    });
    assert_eq!(
        row("apps", "daemonsets", ds),
        vec![
            json!("agent"),
            json!(1),
            json!(1),
            json!(1),
            json!(1),
            json!(1),
            json!("kubernetes.io/os=linux"),
            json!("30s"),
            json!("web,log"),
            json!("nginx:1.27,busybox"),
            json!("app in (a,b)")
        ]
    );
}

#[test]
fn job_and_cron_job_rows() {
    let job = json!({
        "metadata": {"name": "pi", "creationTimestamp": ago(300)},
        "spec": {"completions": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}}, "template": template()},
        "status": {"succeeded": 1, "startTime": ago(290), "completionTime": ago(250),
                   "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}
    });
    assert_eq!(
        row("batch", "jobs", job),
        vec![
            json!("pi"),
            json!("Complete"),
            json!("1/1"),
            json!("40s"),
            json!("5m"),
            json!("web,log"),
            json!("nginx:1.27,busybox"),
            json!("batch.kubernetes.io/controller-uid=u")
        ]
    );
    let running = json!({"metadata": {"name": "j"}, "spec": {"parallelism": 3}, "status": {"startTime": ago(125)}});
    let c = row("batch", "jobs", running);
    assert_eq!(
        &c[1..4],
        &[json!("Running"), json!("0/1 of 3"), json!("2m5s")]
    );
    assert_eq!(c[7], json!("<none>"));
    let failed = json!({"metadata": {"name": "j"}, "spec": {}, "status": {"conditions": [{"type": "Failed", "status": "True"}]}});
    assert_eq!(
        &row("batch", "jobs", failed)[1..4],
        &[json!("Failed"), json!("0/1"), json!("")]
    );
    let suspended = json!({"metadata": {"name": "j"}, "status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
    assert_eq!(row("batch", "jobs", suspended)[1], json!("Suspended"));

    let cj = json!({
        "metadata": {"name": "hello", "creationTimestamp": ago(3600)},
        "spec": {"schedule": "*/5 * * * *", "suspend": false,
                 "jobTemplate": {"spec": {"template": template()}}},
        "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": ago(65)}
    });
    assert_eq!(
        row("batch", "cronjobs", cj),
        vec![
            json!("hello"),
            json!("*/5 * * * *"),
            json!("<none>"),
            json!("False"),
            json!(1),
            json!("65s"),
            json!("60m"),
            json!("web,log"),
            json!("nginx:1.27,busybox"),
            json!("<none>")
        ]
    );
    let bare =
        json!({"metadata": {"name": "c"}, "spec": {"schedule": "@daily", "timeZone": "Etc/UTC"}});
    assert_eq!(
        &row("batch", "cronjobs", bare)[2..6],
        &[
            json!("Etc/UTC"),
            json!("<unset>"),
            json!(0),
            json!("<none>")
        ]
    );
}

#[test]
fn replication_controller_rows() {
    let rc = json!({
        "metadata": {"name": "rc", "creationTimestamp": ago(30)},
        "spec": {"replicas": 2, "selector": {"app": "web"}, "template": template()},
        "status": {"replicas": 2, "readyReplicas": 2}
    });
    assert_eq!(
        row("", "replicationcontrollers", rc),
        vec![
            json!("rc"),
            json!(2),
            json!(2),
            json!(2),
            json!("30s"),
            json!("web,log"),
            json!("nginx:1.27,busybox"),
            json!("app=web")
        ]
    );
}

#[test]
fn capacities_print_in_canonical_form() {
    let cap = |s: Value| {
        row(
            "",
            "persistentvolumes",
            json!({"metadata": {"name": "v"}, "spec": {"capacity": {"storage": s}}}),
        )[1]
        .clone()
    };
    let cases = [
        (json!("1Gi"), "1Gi"),
        (json!("1024Mi"), "1Gi"),
        (json!("1.5Gi"), "1536Mi"),
        (json!("0.5Gi"), "512Mi"),
        (json!("1000M"), "1G"),
        (json!("1500M"), "1500M"),
        (json!("100"), "100"),
        (json!(2048), "2048"),
        (json!("512"), "512"),
        (json!("1e3"), "1e3"),
        (json!("0"), "0"),
        (json!("0.5"), "500m"),
        (json!("junk"), "junk"),
    ];
    for (input, want) in cases {
        assert_eq!(cap(input.clone()), json!(want), "{input}");
    }
    let missing = row("", "persistentvolumes", json!({"metadata": {"name": "v"}}));
    assert_eq!(missing[1], json!("0"));
}

use super::*;
use crate::registry::find;
use serde_json::json;

fn pods() -> &'static Resource {
    find("", "v1", "pods").unwrap()
}

fn deployments() -> &'static Resource {
    find("apps", "v1", "deployments").unwrap()
}

/// (what, original, patch, expected) for Pods.
fn pod_cases() -> Vec<(&'static str, Value, Value, Value)> {
    vec![
        (
            "maps merge recursively and null deletes",
            json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}}),
            json!({"metadata": {"labels": {"a": null, "c": "3"}}}),
            json!({"metadata": {"name": "p", "labels": {"b": "2", "c": "3"}}}),
        ),
        (
            "null for an absent key is ignored, nulls in new values dropped",
            json!({"metadata": {"name": "p"}}),
            json!({"metadata": {"labels": {"x": null, "y": "1"}, "annotations": null}}),
            json!({"metadata": {"name": "p", "labels": {"y": "1"}}}),
        ),
        (
            "containers merge by name, new ones appended",
            json!({"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]}}),
            json!({"spec": {"containers": [{"name": "b", "image": "y:2"}, {"name": "c", "image": "z"}]}}),
            json!({"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:2"}, {"name": "c", "image": "z"}]}}),
        ),
        (
            "nested merge key lists: ports by containerPort, env by name",
            json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP"}], "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}}),
            json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}], "env": [{"name": "B", "value": null, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}}),
            json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}, {"containerPort": 443}], "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}}),
        ),
        (
            "a list without merge strategy is replaced",
            json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}], "containers": [{"name": "a", "args": ["1", "2"]}]}}),
            json!({"spec": {"tolerations": [{"key": "c"}], "containers": [{"name": "a", "args": ["3"]}]}}),
            json!({"spec": {"tolerations": [{"key": "c"}], "containers": [{"name": "a", "args": ["3"]}]}}),
        ),
        (
            "finalizers are unioned",
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"finalizers": ["c", "a"]}}),
            json!({"metadata": {"finalizers": ["c", "a", "b"]}}),
        ),
        (
            "$deleteFromPrimitiveList removes values",
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
            json!({"metadata": {"finalizers": ["a", "c"]}}),
        ),
        (
            "$patch: delete in a list item removes it",
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
            json!({"spec": {"containers": [{"name": "b"}]}}),
        ),
        (
            "$patch: replace in a list replaces it",
            json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b"}]}}),
            json!({"spec": {"containers": [{"name": "c"}, {"$patch": "replace"}]}}),
            json!({"spec": {"containers": [{"name": "c"}]}}),
        ),
        (
            "$patch: replace in a map replaces the map",
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
            json!({"metadata": {"labels": {"c": "3", "$patch": "replace"}}}),
            json!({"metadata": {"labels": {"c": "3"}}}),
        ),
        (
            "$patch: delete in a map empties it",
            json!({"metadata": {"labels": {"a": "1"}, "name": "p"}}),
            json!({"metadata": {"labels": {"$patch": "delete"}}}),
            json!({"metadata": {"labels": {}, "name": "p"}}),
        ),
        (
            "$retainKeys drops the keys it does not list (volume source switch)",
            json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}),
            json!({"spec": {"volumes": [{"$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/d"}, "name": "v"}]}}),
            json!({"spec": {"volumes": [{"name": "v", "hostPath": {"path": "/d"}}]}}),
        ),
        (
            "$setElementOrder reorders merged items",
            json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}}),
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}], "containers": [{"name": "a", "image": "3"}]}}),
            json!({"spec": {"containers": [{"name": "b", "image": "2"}, {"name": "a", "image": "3"}]}}),
        ),
        (
            "$setElementOrder: a server-only item goes before the first named item that follows it live",
            json!({"spec": {"containers": [{"name": "a"}, {"name": "s"}, {"name": "b"}]}}),
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}, {"name": "c"}], "containers": [{"name": "c"}]}}),
            json!({"spec": {"containers": [{"name": "s"}, {"name": "b"}, {"name": "a"}, {"name": "c"}]}}),
        ),
        (
            "$setElementOrder for a primitive list",
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"$setElementOrder/finalizers": ["b", "c", "a"], "finalizers": ["c"]}}),
            json!({"metadata": {"finalizers": ["b", "c", "a"]}}),
        ),
        (
            "ownerReferences merge by uid",
            json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "x", "kind": "ReplicaSet"}]}}),
            json!({"metadata": {"ownerReferences": [{"uid": "1", "controller": true}, {"uid": "2", "name": "y"}]}}),
            json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "x", "kind": "ReplicaSet", "controller": true}, {"uid": "2", "name": "y"}]}}),
        ),
        (
            "status conditions merge by type",
            json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}}),
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]}}),
        ),
        (
            "a value of another type replaces the original",
            json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}]}]}, "metadata": {"labels": {"a": "1"}}}),
            json!({"metadata": {"labels": "oops"}}),
            json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}]}]}, "metadata": {"labels": "oops"}}),
        ),
        (
            "directives inside new values are dropped",
            json!({"spec": {}}),
            json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "$patch": "delete"}, {"name": "Y"}]}]}}),
            json!({"spec": {"containers": [{"name": "a", "env": [{"name": "Y"}]}]}}),
        ),
    ]
}

#[test]
fn pod_patches() {
    for (what, original, patch, expected) in pod_cases() {
        let got =
            strategic_merge(&original, &patch, pods()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(got, expected, "{what}");
    }
}

#[test]
fn what_kubectl_apply_sends_for_an_edited_pod() {
    let live = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "date-tail", "namespace": "default", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "old\n"}},
        "spec": {
            "containers": [
                {"name": "date", "image": "alpine:latest", "imagePullPolicy": "Always", "command": ["sh", "-c", "date"]},
                {"name": "tail", "image": "busybox", "imagePullPolicy": "Always"}
            ],
            "restartPolicy": "Always"
        }
    });
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "new\n"}},
        "spec": {"$setElementOrder/containers": [{"name": "date"}, {"name": "tail"}], "containers": [{"image": "alpine:3", "name": "date"}]}
    });
    let got = strategic_merge(&live, &patch, pods()).unwrap();
    let mut expected = live.clone();
    expected["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
        json!("new\n");
    expected["spec"]["containers"][0]["image"] = json!("alpine:3");
    assert_eq!(got, expected);

    // Removing a container: kubectl sends a delete directive and the new order.
    let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "tail"}], "containers": [{"$patch": "delete", "name": "date"}]}});
    let got = strategic_merge(&live, &patch, pods()).unwrap();
    assert_eq!(
        got["spec"]["containers"],
        json!([{"name": "tail", "image": "busybox", "imagePullPolicy": "Always"}])
    );
}

#[test]
fn deployment_strategy_retain_keys() {
    let live = json!({"spec": {"replicas": 1, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}}});
    let patch =
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}, "replicas": 3}});
    let got = strategic_merge(&live, &patch, deployments()).unwrap();
    assert_eq!(
        got,
        json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate"}}})
    );
    // Containers in the pod template merge by name too.
    let live = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}, {"name": "log", "image": "b"}]}}}});
    let got = strategic_merge(&live, &patch, deployments()).unwrap();
    assert_eq!(
        got["spec"]["template"]["spec"]["containers"],
        json!([{"name": "web", "image": "nginx:2"}, {"name": "log", "image": "b"}])
    );
}

#[test]
fn errors_as_kubernetes_words_them() {
    let cases: Vec<(Value, Value, &str, u16)> = vec![
        (json!({}), json!([1]), "invalid JSON document", 400),
        (
            json!({"spec": {"containers": [{"name": "a"}]}}),
            json!({"spec": {"containers": [{"image": "x"}]}}),
            "map: map[image:x] does not contain declared merge key: name",
            500,
        ),
        (
            json!({"metadata": {"labels": {"a": "1"}}}),
            json!({"metadata": {"labels": {"$patch": "merge"}}}),
            "unknown patch type: merge in map: map[$patch:merge]",
            500,
        ),
        (
            json!({"spec": {"containers": [{"name": "a"}]}}),
            json!({"spec": {"containers": [{"$patch": "merge"}]}}),
            "merging lists cannot yet be specified in the patch",
            500,
        ),
        (
            json!({"spec": {"containers": [{"name": "a"}]}}),
            json!({"spec": {"containers": [{"$patch": "bogus", "name": "a"}]}}),
            "unknown patch type: bogus in map: map[$patch:bogus name:a]",
            500,
        ),
        (
            json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}),
            json!({"spec": {"volumes": [{"$retainKeys": ["name"], "name": "v", "hostPath": {"path": "/"}}]}}),
            "invalid patch format of retainKeys",
            400,
        ),
        (
            json!({"spec": {"volumes": [{"name": "v"}]}}),
            json!({"spec": {"volumes": [{"$retainKeys": "name", "name": "v"}]}}),
            "invalid patch format of retainKeys",
            400,
        ),
        (
            json!({"metadata": {"finalizers": ["a"]}}),
            json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}}),
            "invalid patch format of primitive list",
            400,
        ),
        (
            json!({"spec": {"containers": [{"name": "a"}]}}),
            json!({"spec": {"$setElementOrder": [{"name": "a"}]}}),
            "invalid patch format of setElementOrder list",
            400,
        ),
        (
            json!({"spec": {"containers": [{"name": "a"}]}}),
            json!({"spec": {"$setElementOrder/containers": "a"}}),
            "expected a []interface {}, but received a string",
            500,
        ),
        (
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            json!({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "b"}]}}),
            "The order in patch list:\n[map[name:b]]\n doesn't match $setElementOrder list:\n[map[name:a]]\n",
            500,
        ),
        (
            json!({"metadata": {"finalizers": ["a"]}}),
            json!({"metadata": {"finalizers": [["b"]]}}),
            "list element types are not identical: [a [b]]",
            500,
        ),
        (
            json!({"metadata": {"finalizers": [["a"]]}}),
            json!({"metadata": {"finalizers": [["b"]]}}),
            "lists of lists are not supported",
            422,
        ),
    ];
    for (original, patch, message, code) in cases {
        let err = strategic_merge(&original, &patch, pods()).unwrap_err();
        assert_eq!(err.to_string(), message);
        assert_eq!(err.code(), code, "{message}");
    }
}

//! The API's semantics end to end, as kube-apiserver defines them: namespaces and their
//! deletion, delete options and finalizers, the pod subresources and graceful deletion,
//! optimistic concurrency, paging and selectors, watch resumption, dry runs, field validation
//! and generated names. Each test runs a real `tatami up` and drives it with the real kubectl
//! or with kube-rs (raw requests where the reply's exact shape matters).

mod common;

use common::{Cluster, eventually};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// What a raw request got back.
struct Reply {
    code: u16,
    headers: http::HeaderMap,
    body: Value,
}

impl Reply {
    fn warnings(&self) -> Vec<&str> {
        self.headers
            .get_all("warning")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }
}

/// Sends one request with a JSON body and returns the reply whatever its code.
async fn send(client: &kube::Client, method: &str, path: &str, body: Option<&Value>) -> Reply {
    let bytes = body
        .map(|b| serde_json::to_vec(b).expect("json"))
        .unwrap_or_default();
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(kube::client::Body::from(bytes))
        .expect("request");
    let resp = client.send(req).await.expect("send");
    let code = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect_bytes().await.expect("reply body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Reply {
        code,
        headers,
        body,
    }
}

/// The Status of a refused kube-rs call.
#[track_caller]
fn refused<T: std::fmt::Debug>(result: kube::Result<T>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}}))
        .expect("config map")
}

fn labelled(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
        .expect("config map")
}

/// A Pod that no scheduler but the test's own (through `binding`) places on a node.
fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"schedulerName": "by-the-test", "containers": [{"name": "c", "image": "alpine"}]},
    }))
    .expect("pod")
}

fn rv(meta: &kube::api::ObjectMeta) -> String {
    meta.resource_version.clone().expect("resourceVersion")
}

/// Binds a Pod to `node` through the `binding` subresource, as a scheduler does.
async fn bind(client: &kube::Client, ns: &str, name: &str, node: &str) -> Reply {
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    send(
        client,
        "POST",
        &format!("/api/v1/namespaces/{ns}/pods/{name}/binding"),
        Some(&binding),
    )
    .await
}

/// The names `kubectl get <what> -o name` prints, one per line.
fn names(c: &Cluster, args: &[&str]) -> String {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "name"]);
    c.kubectl(&all).ok().to_string()
}

// ---------------------------------------------------------------------------------------------
// 1. Namespaces

#[test]
fn system_namespaces_are_active_and_each_has_a_default_service_account() {
    let c = Cluster::start();
    let phases = c.kubectl(&[
        "get",
        "namespaces",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.spec.finalizers}{"\n"}{end}"#,
    ]);
    assert_eq!(
        phases.ok(),
        "default Active [\"kubernetes\"]\n\
         kube-node-lease Active [\"kubernetes\"]\n\
         kube-public Active [\"kubernetes\"]\n\
         kube-system Active [\"kubernetes\"]\n"
    );
    let accounts = c.kubectl(&[
        "get",
        "serviceaccounts",
        "-A",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{"\n"}{end}"#,
    ]);
    assert_eq!(
        accounts.ok(),
        "default/default\nkube-node-lease/default\nkube-public/default\nkube-system/default\n"
    );
    // NamespaceLifecycle keeps three of them forever.
    for ns in ["default", "kube-system", "kube-public"] {
        let out = c.kubectl(&["delete", "namespace", ns]);
        assert_eq!(
            out.err(),
            format!(
                "Error from server (Forbidden): namespaces \"{ns}\" is forbidden: this namespace may not be deleted\n"
            )
        );
    }
    assert_eq!(
        names(&c, &["namespaces"]),
        "namespace/default\nnamespace/kube-node-lease\nnamespace/kube-public\nnamespace/kube-system\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_namespace_deletes_its_contents_then_the_namespace() {
    let c = Cluster::start();
    assert_eq!(
        c.kubectl(&["create", "namespace", "team"]).ok(),
        "namespace/team created\n"
    );
    assert!(eventually(10, || c
        .kubectl(&["get", "serviceaccount", "default", "-n", "team"])
        .code
        == 0));
    // A finalizer on one ConfigMap holds the namespace in Terminating until it is removed.
    let held = c.file(
        "held.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: team\n  finalizers: [example.com/hold]\n",
    );
    c.kubectl(&["apply", "-f", held.to_str().unwrap()]).ok();
    c.kubectl(&["create", "configmap", "plain", "-n", "team"])
        .ok();
    c.kubectl(&[
        "create",
        "secret",
        "generic",
        "pw",
        "-n",
        "team",
        "--from-literal=pw=x",
    ])
    .ok();
    let pod = c.file("pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: team\nspec:\n  schedulerName: by-the-test\n  containers:\n  - name: c\n    image: alpine\n");
    c.kubectl(&["apply", "-f", pod.to_str().unwrap()]).ok();

    assert_eq!(
        c.kubectl(&["delete", "namespace", "team", "--wait=false"])
            .ok(),
        "namespace \"team\" deleted\n"
    );
    let marked = c.kubectl(&[
        "get",
        "namespace",
        "team",
        "-o",
        "jsonpath={.status.phase} {.spec.finalizers} {.metadata.deletionGracePeriodSeconds}",
    ]);
    // Namespace storage marks it with a deletionTimestamp only, no grace period.
    assert_eq!(marked.ok(), "Terminating [\"kubernetes\"] ");
    let table = c.kubectl(&["get", "namespace", "team", "--no-headers"]);
    assert_eq!(
        table.ok().split_whitespace().take(2).collect::<Vec<_>>(),
        ["team", "Terminating"]
    );
    // While content remains, another delete is refused as kube-apiserver refuses it.
    let again = c.kubectl(&["delete", "namespace", "team", "--wait=false"]);
    assert_eq!(
        again.err(),
        "Error from server (Conflict): Operation cannot be fulfilled on namespaces \"team\": The system is ensuring all \
         content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system.\n"
    );

    // The namespace controller deletes what is inside; the held ConfigMap waits for its finalizer.
    let inside = || {
        names(
            &c,
            &["configmaps,secrets,pods,serviceaccounts", "-n", "team"],
        )
    };
    assert!(
        eventually(15, || inside() == "configmap/held\n"),
        "left: {}",
        inside()
    );
    let stamp = c.kubectl(&[
        "get",
        "configmap",
        "held",
        "-n",
        "team",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert!(stamp.ok().ends_with('Z'), "{}", stamp.stdout);

    // No new content while it terminates (NamespaceLifecycle admission).
    let late = c.file(
        "late.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: late\n  namespace: team\n",
    );
    assert!(late.ends_with("late.yaml"));
    let out = c.kubectl(&["apply", "-f", "late.yaml"]);
    assert_eq!(
        out.err(),
        "Error from server (Forbidden): error when creating \"late.yaml\": configmaps \"late\" is forbidden: \
         unable to create new content in namespace team because it is being terminated\n"
    );
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, "team");
    let status = refused(
        api.create(&PostParams::default(), &config_map("late"))
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        status.message,
        "configmaps \"late\" is forbidden: unable to create new content in namespace team because it is being terminated"
    );

    let waiter = c
        .kubectl_cmd(&["wait", "--for=delete", "namespace/team", "--timeout=30s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl wait");
    let patched = c.kubectl(&[
        "patch",
        "configmap",
        "held",
        "-n",
        "team",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    assert_eq!(patched.ok(), "configmap/held patched\n");
    let waited = waiter.wait_with_output().expect("kubectl wait");
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&waited.stdout),
        "namespace/team condition met\n"
    );
    assert_eq!(
        c.kubectl(&["get", "namespace", "team"]).err(),
        "Error from server (NotFound): namespaces \"team\" not found\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn creating_in_a_missing_namespace_is_not_found() {
    let c = Cluster::start();
    let out = c.kubectl(&["create", "configmap", "x", "-n", "nope"]);
    assert_eq!(
        out.err(),
        "error: failed to create configmap: namespaces \"nope\" not found\n"
    );
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, "nope");
    let reply = send(
        &c.client().await,
        "POST",
        "/api/v1/namespaces/nope/configmaps",
        Some(&json!({"metadata": {"name": "x"}})),
    )
    .await;
    assert_eq!(reply.code, 404);
    assert_eq!(
        reply.body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "namespaces \"nope\" not found", "reason": "NotFound",
               "details": {"name": "nope", "kind": "namespaces"}, "code": 404})
    );
    // Listing in it is no error: there is simply nothing there.
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        0
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Delete semantics

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test(flavor = "multi_thread")]
async fn an_immediate_delete_answers_with_the_uid_and_pods_answer_with_the_object() {
    let c = Cluster::start();
    let client = c.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = cms
        .create(&PostParams::default(), &config_map("a"))
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    let reply = send(&client, "DELETE", &format!("{CMS}/a"), None).await;
    assert_eq!(reply.code, 200);
    assert_eq!(
        reply.body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
               "details": {"name": "a", "kind": "configmaps", "uid": uid}})
    );
    assert_eq!(
        refused(cms.get("a").await).message,
        "configmaps \"a\" not found"
    );

    // Pods (like namespaces and service accounts) answer with the deleted object instead.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p = pods
        .create(&PostParams::default(), &pod("gone"))
        .await
        .unwrap();
    let reply = send(
        &client,
        "DELETE",
        "/api/v1/namespaces/default/pods/gone",
        None,
    )
    .await;
    assert_eq!(reply.code, 200);
    assert_eq!(
        (
            reply.body["kind"].as_str(),
            reply.body["metadata"]["uid"].as_str()
        ),
        (Some("Pod"), p.metadata.uid.as_deref())
    );
    assert!(pods.get_opt("gone").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_finalizer_holds_a_deleted_object_until_an_update_removes_it() {
    let c = Cluster::start();
    let client = c.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut held = config_map("held");
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();

    let reply = send(&client, "DELETE", &format!("{CMS}/held"), None).await;
    assert_eq!(reply.code, 200, "{}", reply.body);
    let meta = &reply.body["metadata"];
    assert_eq!(reply.body["kind"], "ConfigMap");
    let stamp = meta["deletionTimestamp"]
        .as_str()
        .expect("deletionTimestamp")
        .to_string();
    assert_eq!(meta["deletionGracePeriodSeconds"], 0);
    assert_eq!(meta["finalizers"], json!(["example.com/hold"]));

    // It stays, and a second delete changes nothing.
    let live = cms.get("held").await.unwrap();
    assert_eq!(
        live.metadata
            .deletion_timestamp
            .as_ref()
            .map(|t| t.0.to_string()),
        Some(stamp.clone())
    );
    let again = send(&client, "DELETE", &format!("{CMS}/held"), None).await;
    assert_eq!(
        (
            again.code,
            again.body["metadata"]["deletionTimestamp"].as_str()
        ),
        (200, Some(stamp.as_str()))
    );
    assert_eq!(
        again.body["metadata"]["resourceVersion"],
        json!(rv(&live.metadata))
    );

    // Other updates go through while it waits.
    let mut changed = live.clone();
    changed.data = Some([("k".to_string(), "changed".to_string())].into());
    let changed = cms
        .replace("held", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_eq!(cms.get("held").await.unwrap().data, changed.data);

    // Removing the last finalizer completes the deletion.
    let mut done = changed.clone();
    done.metadata.finalizers = None;
    cms.replace("held", &PostParams::default(), &done)
        .await
        .unwrap();
    assert_eq!(refused(cms.get("held").await).code, 404);
}

#[tokio::test(flavor = "multi_thread")]

async fn no_finalizer_can_be_added_to_an_object_being_deleted() {
    let c = Cluster::start();
    let client = c.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut held = config_map("held");
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    assert_eq!(
        send(&client, "DELETE", &format!("{CMS}/held"), None)
            .await
            .code,
        200
    );
    let mut more = cms.get("held").await.unwrap();
    more.metadata.finalizers = Some(vec![
        "example.com/hold".into(),
        "example.com/z".into(),
        "example.com/b".into(),
    ]);
    let status = refused(cms.replace("held", &PostParams::default(), &more).await);
    assert_eq!(status.code, 422);
    assert_eq!(
        status.message,
        "ConfigMap \"held\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object \
         is being deleted, found new finalizers []string{\"example.com/b\", \"example.com/z\"}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_preconditions_must_match() {
    let c = Cluster::start();
    let client = c.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let p = cms
        .create(&PostParams::default(), &config_map("p"))
        .await
        .unwrap();
    let (uid, version) = (p.metadata.uid.clone().unwrap(), rv(&p.metadata));

    let reply = send(
        &client,
        "DELETE",
        &format!("{CMS}/p"),
        Some(&json!({"preconditions": {"uid": "wrong"}})),
    )
    .await;
    assert_eq!(
        reply.body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": format!("Operation cannot be fulfilled on ConfigMap \"p\": the UID in the precondition (wrong) does not match the UID in record ({uid}). The object might have been deleted and then recreated"),
               "reason": "Conflict", "details": {"name": "p", "kind": "ConfigMap"}, "code": 409})
    );
    let reply = send(
        &client,
        "DELETE",
        &format!("{CMS}/p"),
        Some(&json!({"preconditions": {"resourceVersion": "1"}})),
    )
    .await;
    assert_eq!(reply.code, 409);
    assert_eq!(
        reply.body["message"],
        format!(
            "Operation cannot be fulfilled on ConfigMap \"p\": the ResourceVersion in the precondition (1) does not match the ResourceVersion in record ({version}). The object might have been modified"
        )
    );
    assert!(cms.get_opt("p").await.unwrap().is_some());

    let right = json!({"preconditions": {"uid": uid, "resourceVersion": version}});
    let reply = send(&client, "DELETE", &format!("{CMS}/p"), Some(&right)).await;
    assert_eq!(
        (reply.code, &reply.body["status"]),
        (200, &json!("Success"))
    );
    assert!(cms.get_opt("p").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_propagation_policy_deletes_and_an_unknown_one_is_invalid() {
    let c = Cluster::start();
    let client = c.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for (name, params) in [
        ("o", DeleteParams::orphan()),
        ("b", DeleteParams::background()),
        ("f", DeleteParams::foreground()),
    ] {
        cms.create(&PostParams::default(), &config_map(name))
            .await
            .unwrap();
        cms.delete(name, &params)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut gone = false;
        for _ in 0..50 {
            if cms.get_opt(name).await.unwrap().is_none() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(gone, "{name} was not deleted");
    }
    cms.create(&PostParams::default(), &config_map("x"))
        .await
        .unwrap();
    let reply = send(
        &client,
        "DELETE",
        &format!("{CMS}/x"),
        Some(&json!({"propagationPolicy": "Bogus"})),
    )
    .await;
    assert_eq!(reply.code, 422, "{}", reply.body);
    assert_eq!(reply.body["reason"], "Invalid");
    assert_eq!(
        reply.body["message"],
        "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"Bogus\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
    );
    assert!(cms.get_opt("x").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_collection_by_label_deletes_only_the_matches() {
    let c = Cluster::start();
    let client = c.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for (name, app) in [
        ("x1", "x"),
        ("x2", "x"),
        ("y1", "y"),
        ("z1", "z"),
        ("z2", "z"),
    ] {
        cms.create(&PostParams::default(), &labelled(name, json!({"app": app})))
            .await
            .unwrap();
    }
    let deleted = cms
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("app=x"),
        )
        .await
        .unwrap();
    let list = deleted.left().expect("the deleted objects");
    let gone: Vec<String> = list
        .items
        .iter()
        .filter_map(|cm| cm.metadata.name.clone())
        .collect();
    assert_eq!(gone, ["x1", "x2"]);
    let reply = send(
        &client,
        "DELETE",
        &format!("{CMS}?labelSelector=app%3Dnone"),
        None,
    )
    .await;
    assert_eq!(
        (reply.code, &reply.body["kind"], &reply.body["items"]),
        (200, &json!("ConfigMapList"), &json!([]))
    );

    let out = c.kubectl(&["delete", "configmap", "-l", "app=z"]);
    assert_eq!(
        out.ok(),
        "configmap \"z1\" deleted\nconfigmap \"z2\" deleted\n"
    );
    assert_eq!(names(&c, &["configmaps", "-l", "app"]), "configmap/y1\n");
}

// ---------------------------------------------------------------------------------------------
// 3. Pods: binding, status, graceful deletion

#[tokio::test(flavor = "multi_thread")]
async fn binding_assigns_a_pod_to_a_node_once() {
    let c = Cluster::start();
    let client = c.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("p"))
        .await
        .unwrap();

    let reply = bind(&client, "default", "p", "node-1").await;
    assert_eq!(reply.code, 201);
    assert_eq!(
        reply.body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
    );
    let bound = pods.get("p").await.unwrap();
    assert_eq!(
        bound.spec.as_ref().unwrap().node_name.as_deref(),
        Some("node-1")
    );
    let conditions = bound
        .status
        .as_ref()
        .unwrap()
        .conditions
        .clone()
        .unwrap_or_default();
    let scheduled: Vec<(&str, &str)> = conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(scheduled, [("PodScheduled", "True")]);

    let again = bind(&client, "default", "p", "node-2").await;
    assert_eq!(
        again.body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "Operation cannot be fulfilled on pods/binding \"p\": pod p is already assigned to node \"node-1\"",
               "reason": "Conflict", "details": {"name": "p", "kind": "pods/binding"}, "code": 409})
    );
    assert_eq!(
        pods.get("p")
            .await
            .unwrap()
            .spec
            .unwrap()
            .node_name
            .as_deref(),
        Some("node-1")
    );
    let missing = bind(&client, "default", "nope", "node-1").await;
    assert_eq!(
        (missing.code, &missing.body["message"]),
        (404, &json!("pods \"nope\" not found"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_subresource_changes_only_status_and_the_main_resource_never_does() {
    let c = Cluster::start();
    let pods: Api<Pod> = Api::namespaced(c.client().await, "default");
    pods.create(&PostParams::default(), &pod("s"))
        .await
        .unwrap();

    let mut through_status = pods.get("s").await.unwrap();
    through_status.status.as_mut().unwrap().phase = Some("Running".into());
    through_status
        .spec
        .as_mut()
        .unwrap()
        .active_deadline_seconds = Some(5);
    let saved = pods
        .replace_status("s", &PostParams::default(), &through_status)
        .await
        .unwrap();
    assert_eq!(
        saved.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    assert_eq!(saved.spec.as_ref().unwrap().active_deadline_seconds, None);

    let mut through_main = pods.get("s").await.unwrap();
    through_main.status.as_mut().unwrap().phase = Some("Failed".into());
    through_main.metadata.labels = Some([("tier".to_string(), "web".to_string())].into());
    let saved = pods
        .replace("s", &PostParams::default(), &through_main)
        .await
        .unwrap();
    assert_eq!(
        saved.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    assert_eq!(saved.metadata.labels.as_ref().unwrap()["tier"], "web");
    let live = pods.get("s").await.unwrap();
    assert_eq!(
        (
            live.status.unwrap().phase.as_deref(),
            live.spec.unwrap().active_deadline_seconds
        ),
        (Some("Running"), None)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_pod_is_deleted_gracefully_unless_forced() {
    let c = Cluster::start();
    let client = c.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in ["g", "f"] {
        pods.create(&PostParams::default(), &pod(name))
            .await
            .unwrap();
        assert_eq!(bind(&client, "default", name, "node-1").await.code, 201);
    }

    assert_eq!(
        c.kubectl(&["delete", "pod", "g", "--wait=false"]).ok(),
        "pod \"g\" deleted\n"
    );
    let marked = pods.get("g").await.unwrap();
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(30));
    let stamp = marked
        .metadata
        .deletion_timestamp
        .clone()
        .expect("deletionTimestamp")
        .0;
    let created = marked.metadata.creation_timestamp.clone().unwrap().0;
    let ahead = stamp.duration_since(created);
    assert!(
        ahead.as_secs() >= 29 && ahead.as_secs() <= 31 + 5,
        "deletionTimestamp {stamp} for a pod created at {created}"
    );
    let row = c.kubectl(&["get", "pod", "g", "--no-headers"]);
    assert_eq!(
        row.ok().split_whitespace().take(4).collect::<Vec<_>>(),
        ["g", "0/1", "Terminating", "0"]
    );
    // A second delete without a shorter grace period leaves it as it is.
    let again = pods.delete("g", &DeleteParams::default()).await.unwrap();
    let again = again.left().expect("the pod, still terminating");
    assert_eq!(
        (
            again.metadata.deletion_timestamp.clone().map(|t| t.0),
            rv(&again.metadata)
        ),
        (Some(stamp), rv(&marked.metadata))
    );
    // gracePeriodSeconds=0 removes it now.
    let now = send(
        &client,
        "DELETE",
        "/api/v1/namespaces/default/pods/g?gracePeriodSeconds=0",
        None,
    )
    .await;
    assert_eq!((now.code, &now.body["kind"]), (200, &json!("Pod")));
    assert!(pods.get_opt("g").await.unwrap().is_none());

    let forced = c.kubectl(&["delete", "pod", "f", "--grace-period=0", "--force"]);
    assert_eq!(forced.ok(), "pod \"f\" force deleted\n");
    assert_eq!(
        forced.stderr,
        "Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.\n"
    );
    assert_eq!(
        c.kubectl(&["get", "pod", "f"]).err(),
        "Error from server (NotFound): pods \"f\" not found\n"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Optimistic concurrency

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_resource_version_is_a_conflict() {
    let c = Cluster::start();
    let cms: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    let first = cms
        .create(&PostParams::default(), &config_map("x"))
        .await
        .unwrap();
    let mut newer = first.clone();
    newer.data = Some([("k".to_string(), "2".to_string())].into());
    let newer = cms
        .replace("x", &PostParams::default(), &newer)
        .await
        .unwrap();
    assert_ne!(rv(&newer.metadata), rv(&first.metadata));

    let message = "Operation cannot be fulfilled on configmaps \"x\": the object has been modified; please apply your changes to the latest version and try again";
    let mut stale = first.clone();
    stale.data = Some([("k".to_string(), "stale".to_string())].into());
    let status = refused(cms.replace("x", &PostParams::default(), &stale).await);
    assert_eq!(
        (status.code, status.reason.as_str(), status.message.as_str()),
        (409, "Conflict", message)
    );
    let patch =
        json!({"metadata": {"resourceVersion": rv(&first.metadata)}, "data": {"k": "stale"}});
    let status = refused(
        cms.patch("x", &PatchParams::default(), &Patch::Merge(&patch))
            .await,
    );
    assert_eq!((status.code, status.message.as_str()), (409, message));
    assert_eq!(cms.get("x").await.unwrap().data.unwrap()["k"], "2");

    // Without a resourceVersion a PUT is unconditional (kubectl replace sends none).
    let mut blind = stale.clone();
    blind.metadata.resource_version = None;
    let saved = cms
        .replace("x", &PostParams::default(), &blind)
        .await
        .unwrap();
    assert_eq!(saved.data.unwrap()["k"], "stale");
}

// ---------------------------------------------------------------------------------------------
// 5. Lists: paging and selectors

#[tokio::test(flavor = "multi_thread")]
async fn paging_returns_every_object_once_from_one_snapshot() {
    let c = Cluster::start();
    c.kubectl(&["create", "namespace", "paging"]).ok();
    let cms: Api<ConfigMap> = Api::namespaced(c.client().await, "paging");
    for i in 0..25 {
        cms.create(&PostParams::default(), &config_map(&format!("cm-{i:02}")))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(10);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = cms.list(&params).await.unwrap();
        if pages.is_empty() {
            // Created after the first page: not part of this list's snapshot.
            cms.create(&PostParams::default(), &config_map("cm-late"))
                .await
                .unwrap();
        }
        pages.push((
            page.items.len(),
            page.metadata.remaining_item_count,
            page.metadata.resource_version.clone().unwrap(),
        ));
        seen.extend(page.items.iter().filter_map(|cm| cm.metadata.name.clone()));
        token = page.metadata.continue_.clone().filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    // The 25 and the namespace's kube-root-ca.crt.
    let mut expected: Vec<String> = (0..25).map(|i| format!("cm-{i:02}")).collect();
    expected.push("kube-root-ca.crt".into());
    assert_eq!(seen, expected);
    let shape: Vec<(usize, Option<i64>)> = pages.iter().map(|(n, r, _)| (*n, *r)).collect();
    assert_eq!(shape, [(10, Some(16)), (10, Some(6)), (6, None)]);
    assert!(
        pages.iter().all(|(_, _, v)| *v == pages[0].2),
        "pages read at different revisions: {pages:?}"
    );
    assert_eq!(
        cms.list(&ListParams::default()).await.unwrap().items.len(),
        27
    );
    let bad = refused(
        cms.list(
            &ListParams::default()
                .limit(10)
                .continue_token("not-a-token"),
        )
        .await,
    );
    assert_eq!(bad.code, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_longer_than_a_store_page_comes_whole_and_in_order() {
    let c = Cluster::start();
    c.kubectl(&["create", "namespace", "big"]).ok();
    let cms: Api<ConfigMap> = Api::namespaced(c.client().await, "big");
    // More than two of the server's store pages (500 keys each); every 300th is labelled, so
    // some pages hold no match for the selector.
    let total = 1_100;
    futures::stream::iter(0..total)
        .map(|i| {
            let cms = cms.clone();
            async move {
                let labels = if i % 300 == 0 {
                    json!({"every": "300th"})
                } else {
                    json!({})
                };
                cms.create(
                    &PostParams::default(),
                    &labelled(&format!("cm-{i:04}"), labels),
                )
                .await
                .unwrap()
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let all = cms.list(&ListParams::default()).await.unwrap();
    let names: Vec<String> = all
        .items
        .iter()
        .filter_map(|cm| cm.metadata.name.clone())
        .collect();
    // Every namespace also holds the cluster's CA, as on Kubernetes.
    let mut expected: Vec<String> = (0..total).map(|i| format!("cm-{i:04}")).collect();
    expected.push("kube-root-ca.crt".into());
    assert_eq!(names, expected);
    assert!(all.metadata.continue_.is_none() && all.metadata.remaining_item_count.is_none());
    let revision: i64 = all.metadata.resource_version.unwrap().parse().unwrap();
    let newest = all
        .items
        .iter()
        .map(|cm| {
            cm.metadata
                .resource_version
                .as_deref()
                .unwrap()
                .parse::<i64>()
                .unwrap()
        })
        .max()
        .unwrap();
    assert!(
        revision >= newest,
        "list revision {revision} below an item's {newest}"
    );

    let picked = cms
        .list(&ListParams::default().labels("every=300th"))
        .await
        .unwrap();
    let names: Vec<String> = picked
        .items
        .iter()
        .filter_map(|cm| cm.metadata.name.clone())
        .collect();
    assert_eq!(names, ["cm-0000", "cm-0300", "cm-0600", "cm-0900"]);
    // kubectl reads in chunks of 500 with limit and continue, or all at once, as a Table.
    for chunk in ["--chunk-size=500", "--chunk-size=0"] {
        let run = c.kubectl(&["get", "configmaps", "-n", "big", "--no-headers", chunk]);
        let out = run.ok();
        let rows = out.lines().filter(|l| l.starts_with("cm-")).count();
        assert_eq!(rows, total, "{chunk}");
    }
}

#[test]
fn label_selectors_and_all_namespaces() {
    let c = Cluster::start();
    c.kubectl(&["create", "namespace", "other"]).ok();
    for (name, label) in [
        ("a", Some("app=a")),
        ("b", Some("app=b")),
        ("c", Some("app=c")),
        ("n", None),
    ] {
        c.kubectl(&["create", "configmap", name]).ok();
        if let Some(l) = label {
            c.kubectl(&["label", "configmap", name, l]).ok();
        }
    }
    c.kubectl(&["create", "configmap", "elsewhere", "-n", "other"])
        .ok();
    c.kubectl(&["label", "configmap", "elsewhere", "-n", "other", "app=a"])
        .ok();

    let cases = [
        ("app=a", "configmap/a\n"),
        // kube-root-ca.crt, in every namespace, has no labels.
        (
            "app!=a",
            "configmap/b\nconfigmap/c\nconfigmap/kube-root-ca.crt\nconfigmap/n\n",
        ),
        ("app in (a,b)", "configmap/a\nconfigmap/b\n"),
        (
            "app notin (a,b)",
            "configmap/c\nconfigmap/kube-root-ca.crt\nconfigmap/n\n",
        ),
        ("app", "configmap/a\nconfigmap/b\nconfigmap/c\n"),
        ("!app", "configmap/kube-root-ca.crt\nconfigmap/n\n"),
    ];
    for (selector, want) in cases {
        assert_eq!(
            names(&c, &["configmaps", "-l", selector]),
            want,
            "-l {selector}"
        );
    }
    let everywhere = c.kubectl(&[
        "get",
        "configmaps",
        "-A",
        "-l",
        "app=a",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{"\n"}{end}"#,
    ]);
    assert_eq!(everywhere.ok(), "default/a\nother/elsewhere\n");
    let table = c.kubectl(&["get", "configmaps", "-A", "-l", "app=a"]);
    let rows: Vec<Vec<&str>> = table
        .ok()
        .lines()
        .map(|l| l.split_whitespace().take(3).collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["NAMESPACE", "NAME", "DATA"],
            vec!["default", "a", "0"],
            vec!["other", "elsewhere", "0"]
        ]
    );
    let bad = c.kubectl(&["get", "configmaps", "-l", "app=("]);
    assert_eq!(
        bad.err(),
        "Error from server (BadRequest): Unable to find \"/v1, Resource=configmaps\" that match label selector \"app=(\", \
         field selector \"\": unable to parse requirement: found '(', expected: identifier\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_field_selectors() {
    let c = Cluster::start();
    let client = c.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in ["p1", "p2", "p3"] {
        pods.create(&PostParams::default(), &pod(name))
            .await
            .unwrap();
    }
    assert_eq!(bind(&client, "default", "p1", "node-1").await.code, 201);
    let status = json!({"status": {"phase": "Running"}});
    pods.patch_status("p3", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();

    let cases = [
        ("spec.nodeName=", "pod/p2\npod/p3\n"),
        ("spec.nodeName=node-1", "pod/p1\n"),
        ("metadata.name=p2", "pod/p2\n"),
        ("metadata.name!=p2", "pod/p1\npod/p3\n"),
        ("status.phase=Pending", "pod/p1\npod/p2\n"),
        ("status.phase!=Pending", "pod/p3\n"),
        ("spec.nodeName=,status.phase=Pending", "pod/p2\n"),
        ("metadata.namespace=default,metadata.name=p1", "pod/p1\n"),
    ];
    for (selector, want) in cases {
        assert_eq!(
            names(&c, &["pods", "--field-selector", selector]),
            want,
            "--field-selector {selector}"
        );
    }
    let out = c.kubectl(&["get", "pods", "--field-selector", "spec.foo=x"]);
    assert_eq!(
        out.err(),
        "Error from server (BadRequest): Unable to find \"/v1, Resource=pods\" that match label selector \"\", field selector \"spec.foo=x\": field label not supported: spec.foo\n"
    );
    let status = refused(pods.list(&ListParams::default().fields("spec.foo=x")).await);
    assert_eq!(
        (status.code, status.reason.as_str(), status.message.as_str()),
        (400, "BadRequest", "field label not supported: spec.foo")
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Watch

/// The (type, name) of each event until the stream ends or `max` events arrived.
async fn watch_names(
    api: &Api<ConfigMap>,
    params: &WatchParams,
    from: &str,
    max: usize,
) -> Vec<(String, String)> {
    let mut stream = api.watch(params, from).await.expect("watch").boxed();
    let mut out = Vec::new();
    while out.len() < max {
        match stream.next().await {
            None => break,
            Some(Ok(WatchEvent::Added(cm))) => {
                out.push(("ADDED".into(), cm.metadata.name.unwrap()))
            }
            Some(Ok(WatchEvent::Modified(cm))) => {
                out.push(("MODIFIED".into(), cm.metadata.name.unwrap()))
            }
            Some(Ok(WatchEvent::Deleted(cm))) => {
                out.push(("DELETED".into(), cm.metadata.name.unwrap()))
            }
            Some(Ok(WatchEvent::Bookmark(_))) => {}
            Some(Ok(WatchEvent::Error(status))) => out.push(("ERROR".into(), status.message)),
            Some(Err(e)) => panic!("watch failed: {e}"),
        }
    }
    out
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_resumes_after_its_resource_version_and_ends_at_its_timeout() {
    let c = Cluster::start();
    let cms: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    cms.create(&PostParams::default(), &config_map("a"))
        .await
        .unwrap();
    let b = cms
        .create(&PostParams::default(), &config_map("b"))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &config_map("c"))
        .await
        .unwrap();
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    cms.delete("b", &DeleteParams::default()).await.unwrap();

    let started = Instant::now();
    let events = watch_names(
        &cms,
        &WatchParams::default().timeout(2),
        &rv(&b.metadata),
        100,
    )
    .await;
    assert_eq!(
        events,
        pairs(&[("ADDED", "c"), ("MODIFIED", "a"), ("DELETED", "b")])
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "ended early: {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let current = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let events = watch_names(&cms, &WatchParams::default().timeout(1), &current, 100).await;
    assert_eq!(events, []);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "timeoutSeconds=1 took {took:?}"
    );

    // From "0": the current objects first, as synthetic ADDED events.
    let events = watch_names(&cms, &WatchParams::default().timeout(1), "0", 100).await;
    assert_eq!(
        events,
        pairs(&[
            ("ADDED", "a"),
            ("ADDED", "c"),
            ("ADDED", "kube-root-ca.crt")
        ])
    );
}

#[tokio::test(flavor = "multi_thread")]

async fn a_watch_with_bookmarks_gets_one_before_it_times_out() {
    let c = Cluster::start();
    let cms: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    let from = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let made = cms
        .create(&PostParams::default(), &config_map("x"))
        .await
        .unwrap();
    let made: i64 = rv(&made.metadata).parse().unwrap();
    let params = WatchParams::default().timeout(5);
    assert!(params.bookmarks, "kube-rs asks for bookmarks by default");
    let mut stream = cms.watch(&params, &from).await.unwrap().boxed();
    let mut marks = Vec::new();
    while let Some(event) = stream.next().await {
        if let WatchEvent::Bookmark(b) = event.unwrap() {
            marks.push(b.metadata.resource_version.parse::<i64>().unwrap());
        }
    }
    assert!(!marks.is_empty(), "no bookmark before the watch timed out");
    assert!(marks.iter().all(|m| *m >= made), "{marks:?} < {made}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_from_a_compacted_revision_gets_410_expired() {
    let mut c = Cluster::start();
    let cms: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    let start = rv(&cms
        .create(&PostParams::default(), &config_map("start"))
        .await
        .unwrap()
        .metadata);
    // `up` compacts all but the newest 1000 revisions when it starts; write more than that.
    let writes = futures::stream::iter(0..1010)
        .map(|i| {
            let cms = cms.clone();
            async move {
                cms.create(&PostParams::default(), &config_map(&format!("w-{i}")))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    assert!(writes.iter().all(Result::is_ok));
    c.stop("TERM");
    c.up();
    let cms: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    let current: i64 = cms
        .list(&ListParams::default().limit(1))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap()
        .parse()
        .unwrap();
    let compacted = current - 1000;
    let mut stream = cms
        .watch(&WatchParams::default().timeout(5), &start)
        .await
        .expect("watch")
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(status))) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
            // `up` compacts to 1000 revisions behind the newest when it starts; the node's own
            // writes (lease, status) may land between that and our read of `current`.
            let rest = status
                .message
                .strip_prefix(&format!("too old resource version: {start} ("))
                .unwrap_or_else(|| panic!("{}", status.message));
            let at: i64 = rest
                .trim_end_matches(')')
                .parse()
                .unwrap_or_else(|_| panic!("{}", status.message));
            assert!(
                at > start.parse::<i64>().unwrap() && at <= compacted,
                "{} (current {current})",
                status.message
            );
        }
        other => panic!("expected an ERROR event, got {other:?}"),
    }
    assert!(
        stream.next().await.is_none(),
        "the stream goes on after the ERROR event"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Dry runs and field validation

#[tokio::test(flavor = "multi_thread")]
async fn dry_runs_change_nothing() {
    let c = Cluster::start();
    assert_eq!(
        c.kubectl(&[
            "create",
            "configmap",
            "x",
            "--from-literal=a=b",
            "--dry-run=server"
        ])
        .ok(),
        "configmap/x created (server dry run)\n"
    );
    assert_eq!(
        c.kubectl(&["get", "configmap", "x"]).err(),
        "Error from server (NotFound): configmaps \"x\" not found\n"
    );

    c.kubectl(&["create", "configmap", "y", "--from-literal=a=b"])
        .ok();
    let before = c
        .kubectl(&[
            "get",
            "configmap",
            "y",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .ok()
        .to_string();
    let taken = c.kubectl(&[
        "create",
        "configmap",
        "y",
        "--from-literal=a=b",
        "--dry-run=server",
    ]);
    assert_eq!(
        taken.err(),
        "error: failed to create configmap: configmaps \"y\" already exists\n"
    );
    assert_eq!(
        c.kubectl(&["label", "configmap", "y", "tier=web", "--dry-run=server"])
            .ok(),
        "configmap/y labeled (server dry run)\n"
    );
    assert_eq!(
        c.kubectl(&["delete", "configmap", "y", "--dry-run=server"])
            .ok(),
        "configmap \"y\" deleted (server dry run)\n"
    );
    let after = c.kubectl(&[
        "get",
        "configmap",
        "y",
        "-o",
        "jsonpath={.metadata.resourceVersion} {.metadata.labels}",
    ]);
    assert_eq!(after.ok(), format!("{before} "));

    let client = c.client().await;
    let mut cm = serde_json::to_value(
        Api::<ConfigMap>::namespaced(client.clone(), "default")
            .get("y")
            .await
            .unwrap(),
    )
    .unwrap();
    cm["data"]["a"] = json!("changed");
    let reply = send(&client, "PUT", &format!("{CMS}/y?dryRun=All"), Some(&cm)).await;
    assert_eq!(
        (reply.code, &reply.body["data"]["a"]),
        (200, &json!("changed"))
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let dry = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    let patched = cms
        .patch("y", &dry, &Patch::Merge(json!({"data": {"a": "patched"}})))
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["a"], "patched");
    let deleted = cms
        .delete(
            "y",
            &DeleteParams {
                dry_run: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        deleted.is_right(),
        "a ConfigMap delete answers with a Status"
    );
    let live = c.kubectl(&[
        "get",
        "configmap",
        "y",
        "-o",
        "jsonpath={.metadata.resourceVersion} {.data.a}",
    ]);
    assert_eq!(live.ok(), format!("{before} b"));
}

/// kube-openapi's handler3: a document asked for by the hash `/openapi/v3` lists is immutable
/// and expires a year later, so kubectl's HTTP cache keeps it and asks no more; an old hash is
/// redirected to the current one, and a matching ETag is answered 304.
#[tokio::test(flavor = "multi_thread")]
async fn openapi_documents_are_cached_by_hash() {
    let c = Cluster::start();
    let client = c.client().await;
    let index = send(&client, "GET", "/openapi/v3", None).await;
    let url = index.body["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .expect("api/v1 in the index")
        .to_string();
    let doc = send(&client, "GET", &url, None).await;
    assert_eq!(doc.code, 200);
    let header = |r: &Reply, name: &str| {
        r.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(
        header(&doc, "cache-control").as_deref(),
        Some("public, immutable")
    );
    let expires = header(&doc, "expires").expect("an Expires header");
    let expires = jiff::fmt::rfc2822::parse(&expires)
        .expect("an HTTP date")
        .timestamp();
    let ahead = expires.duration_since(jiff::Timestamp::now());
    assert!(
        ahead > jiff::SignedDuration::from_hours(364 * 24),
        "expires in {ahead:?}"
    );
    let etag = header(&doc, "etag").expect("an ETag");
    let hash = url.split("hash=").nth(1).expect("a hash");
    assert_eq!(etag, format!("\"{hash}\""));

    let plain = send(&client, "GET", "/openapi/v3/api/v1", None).await;
    assert_eq!(
        (plain.code, header(&plain, "cache-control")),
        (200, None),
        "without a hash the document may change"
    );
    let old = send(&client, "GET", "/openapi/v3/api/v1?hash=0123", None).await;
    assert_eq!(
        (old.code, header(&old, "location").as_deref()),
        (301, Some(url.as_str()))
    );
    let req = http::Request::builder()
        .uri(&url)
        .header("if-none-match", &etag)
        .body(kube::client::Body::empty())
        .expect("request");
    let unchanged = client.send(req).await.expect("send");
    assert_eq!(unchanged.status().as_u16(), 304);

    // kubectl's second apply finds the document in its cache and does not ask again: its
    // response still carries the first one's Date (kubectl -v=8 prints each response's headers).
    let apply = |name: &str| {
        let manifest = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
        let path = c.file(&format!("{name}.yaml"), &manifest);
        let out = c.kubectl(&["apply", "-f", path.to_str().unwrap(), "-v=8"]);
        out.ok();
        let (_, reply) = out
            .stderr
            .split_once("/openapi/v3/api/v1?hash=")
            .unwrap_or_else(|| panic!("no request for the document: {}", out.stderr));
        reply
            .lines()
            .find_map(|l| l.split_once("Date: ").map(|(_, d)| d.to_string()))
            .unwrap_or_else(|| panic!("no Date in the reply: {reply}"))
    };
    let first = apply("one");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(apply("two"), first, "the document was asked for again");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_fields_warn_by_default_and_ignore_stays_quiet() {
    let c = Cluster::start();
    let manifest = c.file("w.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: w\n  bogus: 1\ndata:\n  a: b\nextra: x\n");
    let path = manifest.to_str().unwrap();
    let warned = c.kubectl(&["apply", "--validate=warn", "-f", path]);
    assert_eq!(warned.ok(), "configmap/w created\n");
    assert_eq!(
        warned.stderr,
        "Warning: unknown field \"extra\"\nWarning: unknown field \"metadata.bogus\"\n"
    );
    c.kubectl(&["delete", "configmap", "w"]).ok();
    let quiet = c.kubectl(&["apply", "--validate=ignore", "-f", path]);
    assert_eq!(
        (quiet.ok(), quiet.stderr.as_str()),
        ("configmap/w created\n", "")
    );

    let client = c.client().await;
    let body =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "raw"}, "extra": 1});
    let default = send(&client, "POST", CMS, Some(&body)).await;
    assert_eq!(default.code, 201);
    assert_eq!(
        default.warnings(),
        ["299 - \"unknown field \\\"extra\\\"\""]
    );
    let body =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "raw2"}, "extra": 1});
    let ignored = send(
        &client,
        "POST",
        &format!("{CMS}?fieldValidation=Ignore"),
        Some(&body),
    )
    .await;
    assert_eq!((ignored.code, ignored.warnings().len()), (201, 0));
}

#[tokio::test(flavor = "multi_thread")]

async fn an_unknown_field_validation_or_dry_run_value_is_invalid() {
    let c = Cluster::start();
    let client = c.client().await;
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "v"}});
    let reply = send(
        &client,
        "POST",
        &format!("{CMS}?fieldValidation=Bogus"),
        Some(&body),
    )
    .await;
    assert_eq!(
        (reply.code, &reply.body["reason"]),
        (422, &json!("Invalid"))
    );
    assert_eq!(
        reply.body["message"],
        "CreateOptions.meta.k8s.io \"\" is invalid: fieldValidation: Unsupported value: \"Bogus\": supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""
    );
    let reply = send(&client, "POST", &format!("{CMS}?dryRun=Bogus"), Some(&body)).await;
    assert_eq!(reply.code, 422);
    assert_eq!(
        reply.body["message"],
        "CreateOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: []string{\"Bogus\"}: supported values: \"All\""
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Generators, generated names, label and annotate, object identity

/// Kubernetes' alphabet for generated name suffixes (no vowels, no look-alike digits).
const NAME_ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";

#[tokio::test(flavor = "multi_thread")]
async fn generated_names_take_five_characters_from_kubernetes_alphabet() {
    let c = Cluster::start();
    let generated = c.file(
        "gen.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: gen-\n",
    );
    let out = c.kubectl(&["create", "-f", generated.to_str().unwrap()]);
    let line = out.ok();
    let name = line
        .strip_prefix("configmap/")
        .and_then(|l| l.strip_suffix(" created\n"))
        .expect(line);
    let suffix = name.strip_prefix("gen-").expect(name);
    assert_eq!(suffix.len(), 5, "{name}");
    assert!(
        suffix.chars().all(|ch| NAME_ALPHABET.contains(ch)),
        "{name}"
    );

    let cms: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    let mut made = Vec::new();
    for _ in 0..20 {
        let mut cm = config_map("");
        cm.metadata.name = None;
        cm.metadata.generate_name = Some("web-".into());
        let created = cms.create(&PostParams::default(), &cm).await.unwrap();
        assert_eq!(created.metadata.generate_name.as_deref(), Some("web-"));
        made.push(created.metadata.name.unwrap());
    }
    for name in &made {
        let suffix = name.strip_prefix("web-").expect(name);
        assert!(
            suffix.len() == 5 && suffix.chars().all(|ch| NAME_ALPHABET.contains(ch)),
            "{name}"
        );
    }
    made.sort();
    made.dedup();
    assert_eq!(made.len(), 20, "generated names repeat");
    // Neither a name nor generateName: the name is required.
    let status = refused(
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {}})).unwrap(),
        )
        .await,
    );
    assert_eq!(
        (status.code, status.message.as_str()),
        (
            422,
            "ConfigMap \"\" is invalid: metadata.name: Required value: name or generateName is required"
        )
    );
}

#[test]
fn service_accounts_labels_and_annotations_through_kubectl() {
    let c = Cluster::start();
    assert_eq!(
        c.kubectl(&["create", "serviceaccount", "robot"]).ok(),
        "serviceaccount/robot created\n"
    );
    assert_eq!(
        names(&c, &["serviceaccounts"]),
        "serviceaccount/default\nserviceaccount/robot\n"
    );
    c.kubectl(&["create", "configmap", "y", "--from-literal=a=b"])
        .ok();
    assert_eq!(
        c.kubectl(&["label", "configmap", "y", "tier=web"]).ok(),
        "configmap/y labeled\n"
    );
    assert_eq!(
        c.kubectl(&["label", "configmap", "y", "tier=web"]).ok(),
        "configmap/y not labeled\n"
    );
    assert_eq!(
        c.kubectl(&["label", "configmap", "y", "tier=db"]).err(),
        "error: 'tier' already has a value (web), and --overwrite is false\n"
    );
    assert_eq!(
        c.kubectl(&["label", "configmap", "y", "tier=db", "--overwrite"])
            .ok(),
        "configmap/y labeled\n"
    );
    assert_eq!(
        c.kubectl(&["get", "configmap", "y", "-o", "jsonpath={.metadata.labels}"])
            .ok(),
        r#"{"tier":"db"}"#
    );
    assert_eq!(
        c.kubectl(&["label", "configmap", "y", "tier-"]).ok(),
        "configmap/y unlabeled\n"
    );
    assert_eq!(
        c.kubectl(&["annotate", "configmap", "y", "note=hello world"])
            .ok(),
        "configmap/y annotated\n"
    );
    assert_eq!(
        c.kubectl(&[
            "get",
            "configmap",
            "y",
            "-o",
            "jsonpath={.metadata.annotations.note}"
        ])
        .ok(),
        "hello world"
    );
    let managers = || {
        let out = c.kubectl(&[
            "get",
            "configmap",
            "y",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ]);
        out.ok().to_string()
    };
    // kubectl-label gave up its only field with `tier-`. Entries are sorted by time in seconds,
    // then by manager, as Kubernetes sorts them, so two writes in one second sort by name.
    let mut left: Vec<String> = managers().split(' ').map(str::to_string).collect();
    left.sort();
    assert_eq!(left, ["kubectl-annotate", "kubectl-create"]);
    assert_eq!(
        c.kubectl(&["annotate", "configmap", "y", "note-"]).ok(),
        "configmap/y annotated\n"
    );
    assert_eq!(
        c.kubectl(&[
            "get",
            "configmap",
            "y",
            "-o",
            "jsonpath={.metadata.labels}{.metadata.annotations}"
        ])
        .ok(),
        ""
    );
    // A manager that no longer owns any field leaves managedFields.
    assert_eq!(managers(), "kubectl-create");
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_and_list_items_carry_their_identity() {
    let c = Cluster::start();
    c.kubectl(&["create", "configmap", "x", "--from-literal=a=b"])
        .ok();
    c.kubectl(&["create", "configmap", "z"]).ok();
    let yaml = c.kubectl(&["get", "configmap", "x", "-o", "yaml"]);
    let yaml = yaml.ok();
    let version = c
        .kubectl(&[
            "get",
            "configmap",
            "x",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .ok()
        .to_string();
    let uid = c
        .kubectl(&["get", "configmap", "x", "-o", "jsonpath={.metadata.uid}"])
        .ok()
        .to_string();
    assert!(version.parse::<i64>().is_ok_and(|v| v > 0), "{version}");
    for line in [
        "apiVersion: v1\n",
        "kind: ConfigMap\n",
        "  name: x\n",
        "  namespace: default\n",
        "data:\n  a: b\n",
    ] {
        assert!(yaml.contains(line), "{line:?} missing in\n{yaml}");
    }
    assert!(
        yaml.contains(&format!("  resourceVersion: \"{version}\"\n")),
        "{yaml}"
    );
    assert!(yaml.contains(&format!("  uid: {uid}\n")), "{yaml}");
    assert_eq!(uid.len(), 36, "{uid}");
    let created = yaml
        .lines()
        .find_map(|l| l.strip_prefix("  creationTimestamp: "))
        .expect(yaml);
    assert!(
        created.len() == 22 && created.starts_with("\"20") && created.ends_with("Z\""),
        "{created}"
    );

    let list: Value =
        serde_json::from_str(c.kubectl(&["get", "configmaps", "-o", "json"]).ok()).unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "two and kube-root-ca.crt");
    for item in items {
        assert_eq!(
            (&item["apiVersion"], &item["kind"]),
            (&json!("v1"), &json!("ConfigMap")),
            "{item}"
        );
    }
    // The raw list too, not only kubectl's rendering of it.
    let raw = send(&c.client().await, "GET", CMS, None).await;
    assert_eq!(
        (&raw.body["kind"], &raw.body["apiVersion"]),
        (&json!("ConfigMapList"), &json!("v1"))
    );
    assert!(
        raw.body["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|v| v.parse::<i64>().is_ok())
    );
    for item in raw.body["items"].as_array().unwrap() {
        assert_eq!(
            (&item["apiVersion"], &item["kind"]),
            (&json!("v1"), &json!("ConfigMap")),
            "{item}"
        );
    }
}

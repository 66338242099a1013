use super::*;
use crate::registry::find;

const T1: &str = "2025-01-01T00:00:00Z";
const T2: &str = "2025-01-01T00:01:00Z";
const KUBECTL: Writer = Writer::of("kubectl");

fn pods() -> &'static Resource {
    find("", "v1", "pods").unwrap()
}

fn pod(image: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "date-tail", "namespace": "default", "labels": {"app": "demo"}},
        "spec": {"containers": [{"name": "date", "image": image, "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}
    })
}

/// A pod created by client-side apply.
fn created() -> Value {
    let mut new = pod("alpine:3");
    new["metadata"]["uid"] = json!("u1");
    record_update(
        None,
        &mut new,
        Writer::of("kubectl-client-side-apply"),
        pods(),
        T1,
    );
    new
}

/// `live` after `manager` set its `tier` label to `value` by an update.
fn with_tier(live: &Value, value: &str, manager: &'static str) -> Value {
    let mut labelled = live.clone();
    labelled["metadata"]["labels"]["tier"] = json!(value);
    record_update(Some(live), &mut labelled, Writer::of(manager), pods(), T2);
    labelled
}

#[test]
fn create_records_update_ownership_like_kubernetes() {
    let new = created();
    assert_eq!(
        new["metadata"]["managedFields"],
        json!([{
            "manager": "kubectl-client-side-apply",
            "operation": "Update",
            "apiVersion": "v1",
            "time": T1,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"date\"}": {
                    ".": {},
                    "f:image": {},
                    "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:protocol": {}}}
                }}}
            }
        }])
    );
}

#[test]
fn apply_conflicts_with_an_updater() {
    let live = created();
    let err = apply(Some(&live), &pod("alpine:4"), KUBECTL, false, pods(), T2).unwrap_err();
    assert_eq!(
        err,
        ApplyError::Conflicts(vec![Conflict {
            manager: "\"kubectl-client-side-apply\" using v1".into(),
            field: ".spec.containers[name=\"date\"].image".into()
        }])
    );
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using v1: .spec.containers[name=\"date\"].image"
    );
}

#[test]
fn several_conflicts_are_grouped_by_manager() {
    let mut live = created();
    let mut applied = pod("alpine:4");
    applied["metadata"]["labels"]["app"] = json!("other");
    live["metadata"]["uid"] = json!("u1");
    let err = apply(Some(&live), &applied, KUBECTL, false, pods(), T2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using v1:\n- .metadata.labels.app\n- .spec.containers[name=\"date\"].image"
    );
}

#[test]
fn forcing_takes_the_fields() {
    let live = created();
    let out = apply(Some(&live), &pod("alpine:4"), KUBECTL, true, pods(), T2).unwrap();
    assert_eq!(out["spec"]["containers"][0]["image"], "alpine:4");
    let entries = out["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["manager"], "kubectl");
    assert_eq!(entries[0]["operation"], "Apply");
    assert_eq!(entries[0]["time"], T2);
    let container = &entries[0]["fieldsV1"]["f:spec"]["f:containers"]["k:{\"name\":\"date\"}"];
    assert_eq!(container["f:image"], json!({}));
    // An applier owns values, not the maps holding them.
    assert_eq!(
        entries[0]["fieldsV1"]["f:metadata"],
        json!({"f:labels": {"f:app": {}}})
    );
    let old = &entries[1]["fieldsV1"]["f:spec"]["f:containers"]["k:{\"name\":\"date\"}"];
    assert_eq!(entries[1]["manager"], "kubectl-client-side-apply");
    assert!(old.get("f:image").is_none());
    assert_eq!(old["f:name"], json!({}));
}

#[test]
fn the_same_value_is_shared_without_conflict() {
    let live = created();
    let out = apply(Some(&live), &pod("alpine:3"), KUBECTL, false, pods(), T2).unwrap();
    let entries = out["metadata"]["managedFields"].as_array().unwrap();
    let image = |i: usize| {
        entries[i]["fieldsV1"]["f:spec"]["f:containers"]["k:{\"name\":\"date\"}"]
            .get("f:image")
            .cloned()
    };
    assert_eq!((image(0), image(1)), (Some(json!({})), Some(json!({}))));
}

#[test]
fn apply_creates_and_then_prunes_what_it_stops_applying() {
    let mut first = pod("alpine:3");
    first["metadata"]["labels"]["tier"] = json!("web");
    let created = apply(None, &first, KUBECTL, false, pods(), T1).unwrap();
    assert_eq!(
        created["metadata"]["labels"],
        json!({"app": "demo", "tier": "web"})
    );
    assert_eq!(
        created["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"],
        json!({"f:labels": {"f:app": {}, "f:tier": {}}})
    );

    // Dropping the label from the configuration removes it.
    let out = apply(Some(&created), &pod("alpine:3"), KUBECTL, false, pods(), T2).unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"app": "demo"}));

    // Unless another manager also owns it.
    let labelled = with_tier(&created, "api", "kubectl-label");
    let out = apply(
        Some(&labelled),
        &pod("alpine:3"),
        KUBECTL,
        false,
        pods(),
        T2,
    )
    .unwrap();
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "demo", "tier": "api"})
    );
    let managers: Vec<&str> = out["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert_eq!(managers, ["kubectl", "kubectl-label"]);
}

#[test]
fn apply_merges_keyed_lists_and_keeps_other_fields() {
    let mut live = created();
    live["spec"]["restartPolicy"] = json!("Always");
    let applied = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "date-tail"},
        "spec": {"containers": [{"name": "tail", "image": "busybox"}]}
    });
    let out = apply(
        Some(&live),
        &applied,
        Writer::of("other"),
        false,
        pods(),
        T2,
    )
    .unwrap();
    let names: Vec<&str> = out["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["date", "tail"]);
    assert_eq!(out["spec"]["restartPolicy"], "Always");
    assert_eq!(out["metadata"]["uid"], "u1");
}

#[test]
fn updates_move_ownership_and_drop_removed_fields() {
    let live = created();
    let mut edited = live.clone();
    edited["spec"]["containers"][0]["image"] = json!("alpine:5");
    edited["metadata"]["labels"] = json!({});
    record_update(
        Some(&live),
        &mut edited,
        Writer::of("kubectl-edit"),
        pods(),
        T2,
    );
    let entries = edited["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let csa = &entries[0];
    assert_eq!(csa["manager"], "kubectl-client-side-apply");
    assert!(csa["fieldsV1"]["f:metadata"].get("f:labels").is_none());
    assert!(
        csa["fieldsV1"]["f:spec"]["f:containers"]["k:{\"name\":\"date\"}"]
            .get("f:image")
            .is_none()
    );
    assert_eq!(
        entries[1]["fieldsV1"],
        json!({"f:metadata": {"f:labels": {}}, "f:spec": {"f:containers": {"k:{\"name\":\"date\"}": {"f:image": {}}}}})
    );
    assert_eq!(entries[1]["time"], T2);
}

#[test]
fn a_status_write_is_recorded_apart_with_its_subresource() {
    let live = created();
    let mut running = live.clone();
    running["status"] = json!({"phase": "Running"});
    record_update(
        Some(&live),
        &mut running,
        Writer {
            manager: "kubelet",
            subresource: Some("status"),
        },
        pods(),
        T2,
    );
    let labelled = with_tier(&running, "web", "kubelet");
    let entries = labelled["metadata"]["managedFields"].as_array().unwrap();
    let kubelet: Vec<&Value> = entries
        .iter()
        .filter(|e| e["manager"] == "kubelet")
        .collect();
    assert_eq!(kubelet.len(), 2, "{entries:?}");
    assert_eq!(kubelet[0]["subresource"], "status");
    assert_eq!(kubelet[0]["fieldsV1"], json!({"f:status": {"f:phase": {}}}));
    assert_eq!(kubelet[1].get("subresource"), None);
    assert_eq!(
        kubelet[1]["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:tier": {}}}})
    );
}

#[test]
fn an_apply_through_status_leaves_the_same_managers_main_apply_alone() {
    let created = apply(None, &pod("alpine:3"), Writer::of("ctl"), false, pods(), T1).unwrap();
    let status = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "date-tail", "namespace": "default"},
        "status": {"phase": "Running"}
    });
    let out = apply(
        Some(&created),
        &status,
        Writer {
            manager: "ctl",
            subresource: Some("status"),
        },
        false,
        pods(),
        T2,
    )
    .unwrap();
    assert_eq!(out["spec"], created["spec"]);
    assert_eq!(out["metadata"]["labels"], json!({"app": "demo"}));
    assert_eq!(out["status"]["phase"], "Running");
    let entries = out["metadata"]["managedFields"].as_array().unwrap();
    let subresources: Vec<&Value> = entries.iter().map(|e| &e["subresource"]).collect();
    assert_eq!(
        subresources,
        [&Value::Null, &json!("status")],
        "{entries:?}"
    );
}

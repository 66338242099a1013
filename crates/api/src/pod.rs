//! The Pod rules: defaulting, the admission defaults a real cluster adds on create, what create,
//! update and status updates may change, and validation with Kubernetes' messages.
//!
//! Layout: [`defaults`] fills the API defaults, [`validation`] checks a spec the way
//! `ValidatePodSpec` does, [`update`] holds the update rules and their diff. The functions here
//! are what [`crate::strategy`] calls for the `pods` resource.

pub mod defaults;
pub mod update;
pub mod validation;

use crate::field::FieldError;
use crate::strategy::quantity::Quantity;
use serde_json::{Map, Value, json};

pub use defaults::{default_pod, default_pod_spec};

/// Tolerations the DefaultTolerationSeconds admission plugin adds (upstream's default of 300s).
const DEFAULT_TOLERATION_TAINTS: &[&str] = &[
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];

/// The priority of the two built-in classes; any other class needs a lookup the caller does.
fn builtin_priority(class: &str) -> Option<i64> {
    match class {
        "" => Some(0),
        "system-cluster-critical" => Some(2_000_000_000),
        "system-node-critical" => Some(2_000_001_000),
        _ => None,
    }
}

/// The QoS class of a pod (`ComputePodQOS`): BestEffort, Burstable or Guaranteed.
pub fn qos_class(pod: &Value) -> &'static str {
    let spec = &pod["spec"];
    let mut requests: Vec<(String, Quantity)> = Vec::new();
    let mut limits: Vec<(String, Quantity)> = Vec::new();
    let mut guaranteed = true;
    let add = |acc: &mut Vec<(String, Quantity)>, name: &str, q: Quantity| match acc
        .iter_mut()
        .find(|(n, _)| n == name)
    {
        Some((_, sum)) => sum.0 += q.0,
        None => acc.push((name.to_string(), q)),
    };
    // Ephemeral containers cannot set resources, so they never count.
    let containers = ["containers", "initContainers"]
        .into_iter()
        .flat_map(|l| spec[l].as_array().into_iter().flatten());
    for c in containers {
        let res = &c["resources"];
        for (name, q) in res["requests"].as_object().into_iter().flatten() {
            if name != "cpu" && name != "memory" {
                continue;
            }
            if let Some(q) = Quantity::from_value(q).filter(|q| *q > Quantity::ZERO) {
                add(&mut requests, name, q);
            }
        }
        let mut found = Vec::new();
        for (name, q) in res["limits"].as_object().into_iter().flatten() {
            if name != "cpu" && name != "memory" {
                continue;
            }
            if let Some(q) = Quantity::from_value(q).filter(|q| *q > Quantity::ZERO) {
                found.push(name.as_str());
                add(&mut limits, name, q);
            }
        }
        if !(found.contains(&"cpu") && found.contains(&"memory")) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed {
        guaranteed = requests
            .iter()
            .all(|(n, r)| limits.iter().any(|(ln, l)| ln == n && l == r));
    }
    if guaranteed && requests.len() == limits.len() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The mutating admission a real cluster runs on pod create, for the parts that need no store:
/// ServiceAccount (the `default` account name), DefaultTolerationSeconds and Priority for the
/// built-in classes.
pub fn admit_create(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    defaults::set_default_str(spec, "serviceAccountName", "default");
    defaults::mirror_service_account(spec);
    add_default_tolerations(spec);
    let class = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(p) = builtin_priority(&class) {
        defaults::set_default(spec, "priority", json!(p));
        defaults::set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    }
}

fn add_default_tolerations(spec: &mut Map<String, Value>) {
    let list = defaults::set_default(spec, "tolerations", json!([]));
    let Some(list) = list.as_array_mut() else {
        return;
    };
    for taint in DEFAULT_TOLERATION_TAINTS {
        let tolerated = list.iter().any(|t| {
            let key = t["key"].as_str().unwrap_or("");
            let effect = t["effect"].as_str().unwrap_or("");
            (key == *taint || key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        });
        if !tolerated {
            list.push(json!({"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    if list.is_empty() {
        spec.remove("tolerations");
    }
}

/// Adds the service account token volume the ServiceAccount admission plugin adds
/// (`kube-api-access-<suffix>`) and mounts it read-only in every container, unless the pod
/// opts out with `automountServiceAccountToken: false`, or already mounts the token path.
/// `suffix` is the caller's five random characters (Kubernetes uses `[bcdfghjklmnpqrstvwxz2456789]`).
pub fn add_service_account_volume(pod: &mut Value, suffix: &str) {
    const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        == Some(false)
    {
        return;
    }
    let already = ["initContainers", "containers"].iter().any(|l| {
        spec.get(*l)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| {
                c["volumeMounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|m| m["mountPath"] == MOUNT_PATH)
            })
    });
    if already {
        return;
    }
    let name = format!("kube-api-access-{suffix}");
    let volume = json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    });
    if let Some(vols) = defaults::set_default(spec, "volumes", json!([])).as_array_mut() {
        vols.push(volume);
    }
    for l in ["initContainers", "containers"] {
        for c in spec
            .get_mut(l)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(c) = c.as_object_mut()
                && let Some(mounts) =
                    defaults::set_default(c, "volumeMounts", json!([])).as_array_mut()
            {
                mounts.push(json!({"name": name, "mountPath": MOUNT_PATH, "readOnly": true}));
            }
        }
    }
}

/// PrepareForCreate: admission defaults, then status reset to Pending with the QoS class (and
/// the SchedulingGated condition for gated pods).
pub fn prepare_for_create(pod: &mut Value) {
    admit_create(pod);
    let qos = qos_class(pod);
    let mut status = json!({"phase": "Pending", "qosClass": qos});
    let gated = pod["spec"]["schedulingGates"]
        .as_array()
        .is_some_and(|g| !g.is_empty());
    if gated {
        status["conditions"] = json!([{
            "type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
            "message": "Scheduling is blocked due to non-empty scheduling gates", "lastProbeTime": null,
            "lastTransitionTime": null,
        }]);
    }
    if let Some(obj) = pod.as_object_mut() {
        obj.insert("status".into(), status);
    }
}

/// PrepareForUpdate of the main resource: the status cannot be changed here.
pub fn prepare_for_update(new: &mut Value, old: &Value) {
    if let Some(obj) = new.as_object_mut() {
        obj.insert(
            "status".into(),
            old.get("status").cloned().unwrap_or_else(|| json!({})),
        );
    }
}

/// PrepareForUpdate of `pods/status`: spec and owner references stay, the QoS class is kept
/// when the writer dropped it.
pub fn prepare_for_status_update(new: &mut Value, old: &Value) {
    let Some(obj) = new.as_object_mut() else {
        return;
    };
    obj.insert(
        "spec".into(),
        old.get("spec").cloned().unwrap_or(Value::Null),
    );
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        match old["metadata"].get("ownerReferences") {
            Some(refs) => meta.insert("ownerReferences".into(), refs.clone()),
            None => meta.remove("ownerReferences"),
        };
    }
    let status = defaults::set_default(obj, "status", json!({}));
    if let Some(s) = status.as_object_mut() {
        let empty = s
            .get("qosClass")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty();
        if empty && let Some(q) = old["status"].get("qosClass") {
            s.insert("qosClass".into(), q.clone());
        }
    }
}

/// Validation of a new pod: metadata, then the spec.
pub fn validate_create(pod: &Value) -> Vec<FieldError> {
    validation::validate_pod(pod, true)
}

/// Validation of a pod update: metadata rules, the new spec, then what may change.
pub fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs =
        crate::strategy::meta::validate_object_meta_update(&new["metadata"], &old["metadata"]);
    errs.extend(validation::validate_pod(new, false));
    errs.extend(update::validate_spec_update(&new["spec"], &old["spec"]));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_with(resources: &[Value]) -> Value {
        let containers: Vec<Value> = resources
            .iter()
            .enumerate()
            .map(|(i, r)| json!({"name": format!("c{i}"), "resources": r}))
            .collect();
        json!({"spec": {"containers": containers}})
    }

    #[test]
    fn qos_classes() {
        let cases = [
            (vec![json!({})], "BestEffort"),
            (vec![json!({"requests": {"cpu": "100m"}})], "Burstable"),
            (
                vec![
                    json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}),
                ],
                "Guaranteed",
            ),
            (
                vec![
                    json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1Gi"}}),
                ],
                "Guaranteed",
            ),
            (
                vec![
                    json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}}),
                ],
                "Burstable",
            ),
            (
                vec![
                    json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}),
                    json!({}),
                ],
                "Burstable",
            ),
            (
                vec![json!({"requests": {"ephemeral-storage": "1Gi"}})],
                "BestEffort",
            ),
        ];
        for (res, want) in cases {
            assert_eq!(qos_class(&pod_with(&res)), want, "{res:?}");
        }
    }

    #[test]
    fn guaranteed_through_defaulted_requests() {
        let mut pod = pod_with(&[json!({"limits": {"cpu": "1", "memory": "1Gi"}})]);
        default_pod(&mut pod);
        prepare_for_create(&mut pod);
        assert_eq!(
            pod["status"],
            json!({"phase": "Pending", "qosClass": "Guaranteed"})
        );
    }

    #[test]
    fn default_tolerations_respect_existing_ones() {
        let mut pod = json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}]}});
        admit_create(&mut pod);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10},
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
        let mut pod = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        admit_create(&mut pod);
        assert_eq!(pod["spec"]["tolerations"], json!([{"operator": "Exists"}]));
    }

    #[test]
    fn service_account_volume_is_mounted_everywhere() {
        let mut pod =
            json!({"spec": {"containers": [{"name": "a"}], "initContainers": [{"name": "i"}]}});
        add_service_account_volume(&mut pod, "x7k2p");
        assert_eq!(pod["spec"]["volumes"][0]["name"], "kube-api-access-x7k2p");
        let mount = json!([{"name": "kube-api-access-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]);
        assert_eq!(pod["spec"]["containers"][0]["volumeMounts"], mount);
        assert_eq!(pod["spec"]["initContainers"][0]["volumeMounts"], mount);
        let mut pod =
            json!({"spec": {"automountServiceAccountToken": false, "containers": [{"name": "a"}]}});
        add_service_account_volume(&mut pod, "x7k2p");
        assert_eq!(pod["spec"].get("volumes"), None);
    }

    #[test]
    fn status_update_keeps_spec_and_qos() {
        let old = json!({"metadata": {"name": "p", "ownerReferences": [{"uid": "1"}]}, "spec": {"nodeName": "n"}, "status": {"phase": "Pending", "qosClass": "BestEffort"}});
        let mut new = json!({"metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"nodeName": "other"}, "status": {"phase": "Running"}});
        prepare_for_status_update(&mut new, &old);
        assert_eq!(
            new,
            json!({"metadata": {"name": "p", "labels": {"a": "b"}, "ownerReferences": [{"uid": "1"}]}, "spec": {"nodeName": "n"}, "status": {"phase": "Running", "qosClass": "BestEffort"}})
        );
    }
}

//! Service, Endpoints and the workload kinds (apps, batch, ReplicationController): their
//! defaults and the validation of their pod templates.

use super::path::Path;
use crate::field::FieldError;
use crate::pod::defaults::{set_default, set_default_str};
use crate::pod::validation::{decode, validate_pod_spec};
use crate::strategy::meta::validate_labels;
use serde_json::{Map, Value, json};

fn spec_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    obj.as_object_mut()?
        .entry("spec")
        .or_insert_with(|| json!({}))
        .as_object_mut()
}

/// SetDefaults_Service: ClusterIP, no session affinity, TCP ports aimed at themselves, and the
/// Cluster traffic policies.
pub fn default_service(obj: &mut Value) {
    let Some(s) = spec_mut(obj) else { return };
    set_default_str(s, "sessionAffinity", "None");
    if s.get("sessionAffinity").and_then(Value::as_str) == Some("None") {
        s.remove("sessionAffinityConfig");
    } else if s["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"].is_null() {
        s.insert(
            "sessionAffinityConfig".into(),
            json!({"clientIP": {"timeoutSeconds": 10800}}),
        );
    }
    set_default_str(s, "type", "ClusterIP");
    let ty = s["type"].as_str().unwrap_or("").to_string();
    for p in s
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let Some(p) = p.as_object_mut() else { continue };
        set_default_str(p, "protocol", "TCP");
        let target = p.get("targetPort");
        if target.is_none_or(|t| t.is_null() || *t == json!(0) || *t == json!("")) {
            let port = p.get("port").cloned().unwrap_or(json!(0));
            p.insert("targetPort".into(), port);
        }
    }
    let external = ty == "NodePort"
        || ty == "LoadBalancer"
        || s.get("externalIPs")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
    if external {
        set_default_str(s, "externalTrafficPolicy", "Cluster");
    }
    if ["NodePort", "LoadBalancer", "ClusterIP"].contains(&ty.as_str()) {
        set_default(s, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set_default(s, "allocateLoadBalancerNodePorts", json!(true));
    }
}

/// What the Service REST layer fills on create besides the cluster IP itself: a single-stack
/// IPv4 family for every type that gets (or declines) a cluster IP.
pub fn prepare_service_create(obj: &mut Value) {
    let Some(s) = spec_mut(obj) else { return };
    if s.get("type").and_then(Value::as_str) == Some("ExternalName") {
        return;
    }
    set_default(s, "ipFamilyPolicy", json!("SingleStack"));
    set_default(s, "ipFamilies", json!(["IPv4"]));
}

/// SetDefaults_Endpoints: ports are TCP unless stated.
pub fn default_endpoints(obj: &mut Value) {
    let subsets = obj.get_mut("subsets").and_then(Value::as_array_mut);
    for ss in subsets.into_iter().flatten() {
        for p in ss
            .get_mut("ports")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(p) = p.as_object_mut() {
                set_default_str(p, "protocol", "TCP");
            }
        }
    }
}

fn default_template(template: Option<&mut Value>) {
    if let Some(spec) = template.and_then(|t| t.get_mut("spec")) {
        crate::pod::default_pod_spec(spec);
    }
}

/// The apps/batch defaults of each workload kind, including its pod template's.
pub fn default_workload(kind: &str, obj: &mut Value) {
    let Some(s) = spec_mut(obj) else { return };
    match kind {
        "Deployment" => {
            set_default(s, "replicas", json!(1));
            let strategy = set_default(s, "strategy", json!({}));
            if let Some(st) = strategy.as_object_mut() {
                set_default_str(st, "type", "RollingUpdate");
                if st["type"] == "RollingUpdate" {
                    let ru = set_default(st, "rollingUpdate", json!({}));
                    if let Some(ru) = ru.as_object_mut() {
                        set_default(ru, "maxUnavailable", json!("25%"));
                        set_default(ru, "maxSurge", json!("25%"));
                    }
                }
            }
            set_default(s, "revisionHistoryLimit", json!(10));
            set_default(s, "progressDeadlineSeconds", json!(600));
        }
        "ReplicaSet" | "ReplicationController" => {
            set_default(s, "replicas", json!(1));
            if kind == "ReplicationController"
                && s.get("selector")
                    .is_none_or(|v| v.as_object().is_none_or(Map::is_empty))
                && let Some(labels) = s
                    .get("template")
                    .and_then(|t| t["metadata"].get("labels"))
                    .cloned()
            {
                s.insert("selector".into(), labels);
            }
        }
        "StatefulSet" => {
            set_default(s, "replicas", json!(1));
            set_default_str(s, "podManagementPolicy", "OrderedReady");
            let strategy = set_default(s, "updateStrategy", json!({}));
            if let Some(st) = strategy.as_object_mut() {
                set_default_str(st, "type", "RollingUpdate");
                if st["type"] == "RollingUpdate" {
                    let ru = set_default(st, "rollingUpdate", json!({}));
                    if let Some(ru) = ru.as_object_mut() {
                        set_default(ru, "partition", json!(0));
                    }
                }
            }
            set_default(s, "revisionHistoryLimit", json!(10));
            let policy = set_default(s, "persistentVolumeClaimRetentionPolicy", json!({}));
            if let Some(p) = policy.as_object_mut() {
                set_default_str(p, "whenDeleted", "Retain");
                set_default_str(p, "whenScaled", "Retain");
            }
        }
        "DaemonSet" => {
            let strategy = set_default(s, "updateStrategy", json!({}));
            if let Some(st) = strategy.as_object_mut() {
                set_default_str(st, "type", "RollingUpdate");
                if st["type"] == "RollingUpdate" {
                    let ru = set_default(st, "rollingUpdate", json!({}));
                    if let Some(ru) = ru.as_object_mut() {
                        set_default(ru, "maxUnavailable", json!(1));
                        set_default(ru, "maxSurge", json!(0));
                    }
                }
            }
            set_default(s, "revisionHistoryLimit", json!(10));
        }
        "Job" => default_job_spec(s),
        "CronJob" => {
            set_default_str(s, "concurrencyPolicy", "Allow");
            set_default(s, "suspend", json!(false));
            set_default(s, "successfulJobsHistoryLimit", json!(3));
            set_default(s, "failedJobsHistoryLimit", json!(1));
            let job_template = s
                .get_mut("jobTemplate")
                .and_then(|t| t.get_mut("spec"))
                .and_then(Value::as_object_mut);
            if let Some(js) = job_template {
                default_job_spec(js);
            }
            return;
        }
        _ => {}
    }
    default_template(s.get_mut("template"));
}

fn default_job_spec(s: &mut Map<String, Value>) {
    let completions = s.get("completions").filter(|v| !v.is_null()).cloned();
    let parallelism_unset = s.get("parallelism").is_none_or(Value::is_null);
    if completions.is_none() && parallelism_unset {
        s.insert("completions".into(), json!(1));
        s.insert("parallelism".into(), json!(1));
    }
    set_default(s, "parallelism", json!(1));
    set_default(s, "backoffLimit", json!(6));
    set_default_str(s, "completionMode", "NonIndexed");
    set_default(s, "suspend", json!(false));
    let pod_failure_policy = s.get("podFailurePolicy").is_some_and(|v| !v.is_null());
    set_default_str(
        s,
        "podReplacementPolicy",
        if pod_failure_policy {
            "Failed"
        } else {
            "TerminatingOrFailed"
        },
    );
    if let Some(spec) = s.get_mut("template").and_then(|t| t.get_mut("spec")) {
        crate::pod::default_pod_spec(spec);
    }
}

/// The pod template of a workload (`spec.template`) must hold a valid pod spec.
pub fn validate_template(obj: &Value) -> Vec<FieldError> {
    validate_template_at(
        &obj["spec"]["template"],
        &Path::new("spec").child("template"),
    )
}

fn validate_template_at(template: &Value, path: &Path) -> Vec<FieldError> {
    if template.is_null() {
        return vec![FieldError::required(path, "")];
    }
    let mut errs = validate_labels(
        template["metadata"].get("labels"),
        &path.child("metadata").child("labels"),
    );
    match decode::<k8s_openapi::api::core::v1::PodSpec>(
        template.get("spec").unwrap_or(&json!({})),
        "PodSpec",
    ) {
        Ok(spec) => errs.extend(validate_pod_spec(&spec, "", &path.child("spec"))),
        Err(e) => errs.push(e),
    }
    errs
}

/// CronJob: names leave room for the job suffix, and the job template's pods are valid.
pub fn validate_cron_job(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    if name.len() > 52 {
        errs.push(FieldError::invalid(
            "metadata.name",
            json!(name),
            "must be no more than 52 characters",
        ));
    }
    if obj["spec"]["schedule"].as_str().unwrap_or("").is_empty() {
        errs.push(FieldError::required("spec.schedule", ""));
    }
    let p = Path::new("spec")
        .child("jobTemplate")
        .child("spec")
        .child("template");
    errs.extend(validate_template_at(
        &obj["spec"]["jobTemplate"]["spec"]["template"],
        &p,
    ));
    errs
}

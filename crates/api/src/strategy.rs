//! Per-kind rules the API server applies around every write: defaulting, what create resets,
//! what update and status updates may change, validation and strict decoding.
//!
//! Layout: the entry points below dispatch on the resource's kind. [`meta`] validates object
//! metadata, [`names`] holds apimachinery's string checks, [`config`] ConfigMap and Secret,
//! [`storage`] PersistentVolume and claims, [`workloads`] the apps and batch kinds and Service,
//! [`unknown`] strict decoding against the OpenAPI schema. The Pod rules are in [`crate::pod`].
//!
//! The order a write goes through mirrors kube-apiserver's: decode, [`default_object`], then
//! [`prepare_for_create`] (or [`prepare_for_update`] / [`prepare_for_status_update`]), then
//! [`validate_create`] (or [`validate_update`]). The caller sets identity fields (uid,
//! creationTimestamp, resourceVersion, the name from generateName, the namespace from the URL)
//! before validating.

pub mod config;
pub mod meta;
pub mod names;
pub mod path;
pub mod quantity;
pub mod storage;
pub mod unknown;
pub mod workloads;

use crate::field::FieldError;
use crate::pod;
use crate::registry::Resource;
use serde_json::{Value, json};

/// Kinds whose spec changes bump `metadata.generation`, starting at 1 on create.
const GENERATION_KINDS: &[&str] = &[
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "ReplicationController",
];

fn has_status(r: &Resource) -> bool {
    r.subresources.contains(&"status")
}

fn meta_mut(obj: &mut Value) -> Option<&mut serde_json::Map<String, Value>> {
    let o = obj.as_object_mut()?;
    o.entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
}

/// Fills Kubernetes' defaults (create, update and patch results alike, and objects read back).
pub fn default_object(r: &Resource, obj: &mut Value) {
    match r.kind {
        "Pod" => pod::default_pod(obj),
        "Namespace" => {
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            // SetDefaults_Namespace: the immutable name label, so selectors can pick namespaces.
            if !name.is_empty()
                && let Some(m) = meta_mut(obj)
                && let Some(labels) = m
                    .entry("labels")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
            {
                labels.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            if let Some(o) = obj.as_object_mut()
                && let Some(status) = o
                    .entry("status")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
            {
                pod::defaults::set_default_str(status, "phase", "Active");
            }
        }
        "Secret" => config::default_secret(obj),
        "PersistentVolume" => storage::default_pv(obj),
        "PersistentVolumeClaim" => storage::default_pvc(obj),
        "Service" => workloads::default_service(obj),
        "Endpoints" => workloads::default_endpoints(obj),
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "CronJob"
        | "ReplicationController" => workloads::default_workload(r.kind, obj),
        _ => {}
    }
}

/// On create: resets what a client may not set and fills what the server owns.
///
/// Defaults the object first (defaulting is idempotent), because what create derives, such as
/// a pod's QoS class, depends on the defaulted spec.
pub fn prepare_for_create(r: &Resource, obj: &mut Value) {
    default_object(r, obj);
    if let Some(m) = meta_mut(obj) {
        // BeforeCreate: a new object is never being deleted.
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        if GENERATION_KINDS.contains(&r.kind) {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
    }
    let Some(o) = obj.as_object_mut() else { return };
    match r.kind {
        "Pod" => pod::prepare_for_create(obj),
        "Namespace" => {
            o.insert("status".into(), json!({"phase": "Active"}));
            let spec = o.entry("spec").or_insert_with(|| json!({}));
            if let Some(s) = spec.as_object_mut() {
                let list = s.entry("finalizers").or_insert_with(|| json!([]));
                if let Some(l) = list.as_array_mut()
                    && !l.iter().any(|f| f == "kubernetes")
                {
                    l.push(json!("kubernetes"));
                }
            }
        }
        "PersistentVolume" | "PersistentVolumeClaim" => {
            o.insert("status".into(), json!({"phase": "Pending"}));
        }
        "Service" => {
            o.insert("status".into(), json!({"loadBalancer": {}}));
            workloads::prepare_service_create(obj);
        }
        "Node" => {}
        _ if has_status(r) => {
            o.insert("status".into(), json!({}));
        }
        _ => {}
    }
}

/// On update of the main resource: system metadata from the old object, old status kept for
/// kinds with a status subresource, generation bumped when the spec changed.
///
/// Defaults `new` first so that defaults alone never count as a spec change.
pub fn prepare_for_update(r: &Resource, new: &mut Value, old: &Value) {
    default_object(r, new);
    let old_meta = &old["metadata"];
    if let Some(m) = meta_mut(new) {
        // BeforeUpdate: clients cannot write these; the store's copy wins.
        for key in ["generation", "creationTimestamp"] {
            match old_meta.get(key) {
                Some(v) => m.insert(key.into(), v.clone()),
                None => m.remove(key),
            };
        }
        if m.get("uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
            && let Some(uid) = old_meta.get("uid")
        {
            m.insert("uid".into(), uid.clone());
        }
        for key in ["deletionTimestamp", "deletionGracePeriodSeconds"] {
            if let Some(v) = old_meta.get(key).filter(|v| !v.is_null()) {
                m.insert(key.into(), v.clone());
            }
        }
    }
    match r.kind {
        "Pod" => pod::prepare_for_update(new, old),
        "Namespace" => {
            if let Some(o) = new.as_object_mut() {
                o.insert(
                    "status".into(),
                    old.get("status").cloned().unwrap_or_else(|| json!({})),
                );
                let finalizers = old["spec"].get("finalizers").cloned();
                let spec = o.entry("spec").or_insert_with(|| json!({}));
                if let Some(s) = spec.as_object_mut() {
                    match finalizers {
                        Some(f) => s.insert("finalizers".into(), f),
                        None => s.remove("finalizers"),
                    };
                }
            }
        }
        _ if has_status(r) => {
            if let Some(o) = new.as_object_mut() {
                match old.get("status") {
                    Some(s) => o.insert("status".into(), s.clone()),
                    None => o.remove("status"),
                };
            }
        }
        _ => {}
    }
    if GENERATION_KINDS.contains(&r.kind) && new.get("spec") != old.get("spec") {
        let g = old_meta["generation"].as_i64().unwrap_or(0) + 1;
        if let Some(m) = meta_mut(new) {
            m.insert("generation".into(), json!(g));
        }
    }
}

/// On update of the status subresource: the old object with the new status (and the new
/// labels and annotations, which Kubernetes lets status writers change for most kinds).
pub fn prepare_for_status_update(r: &Resource, new: &mut Value, old: &Value) {
    default_object(r, new);
    if r.kind == "Pod" {
        pod::prepare_for_status_update(new, old);
        prepare_system_meta(new, old);
        return;
    }
    let mut merged = old.clone();
    if let Some(o) = merged.as_object_mut() {
        match new.get("status") {
            Some(s) => o.insert("status".into(), s.clone()),
            None => o.remove("status"),
        };
        // The apps kinds keep their labels on status writes; the rest take the writer's. The
        // field ownership of the write (an apply's) goes with it.
        let keys: &[&str] = if GENERATION_KINDS.contains(&r.kind) {
            &["annotations", "resourceVersion", "managedFields"]
        } else {
            &["labels", "annotations", "resourceVersion", "managedFields"]
        };
        if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            for key in keys {
                match new["metadata"].get(*key) {
                    Some(v) => m.insert((*key).into(), v.clone()),
                    None => m.remove(*key),
                };
            }
        }
    }
    *new = merged;
}

fn prepare_system_meta(new: &mut Value, old: &Value) {
    let old_meta = &old["metadata"];
    if let Some(m) = meta_mut(new) {
        for key in [
            "generation",
            "creationTimestamp",
            "uid",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            match old_meta.get(key) {
                Some(v) => m.insert(key.into(), v.clone()),
                None => m.remove(key),
            };
        }
    }
}

/// The name rule of each kind (`ValidateXxxName`).
fn name_fn(r: &Resource) -> meta::NameFn {
    match r.kind {
        "Namespace" => names::name_is_dns_label,
        "Service" => names::name_is_dns1035_label,
        _ => names::name_is_dns_subdomain,
    }
}

/// Validation of a new object, including metadata.
pub fn validate_create(r: &Resource, obj: &Value) -> Vec<FieldError> {
    if r.kind == "Pod" {
        return pod::validate_create(obj);
    }
    let metadata = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut errs = meta::validate_object_meta(&metadata, r.namespaced, name_fn(r));
    errs.extend(validate_kind(r, obj));
    errs
}

fn validate_kind(r: &Resource, obj: &Value) -> Vec<FieldError> {
    match r.kind {
        "ConfigMap" => config::validate_config_map(obj),
        "Secret" => config::validate_secret(obj),
        "Namespace" => config::validate_namespace_spec(obj),
        "PersistentVolume" => storage::validate_pv(obj),
        "PersistentVolumeClaim" => storage::validate_pvc(obj),
        "CronJob" => workloads::validate_cron_job(obj),
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => workloads::validate_template(obj),
        _ => Vec::new(),
    }
}

/// Validation of an update: metadata immutability, then the kind's update rules.
pub fn validate_update(r: &Resource, new: &Value, old: &Value) -> Vec<FieldError> {
    if r.kind == "Pod" {
        return pod::validate_update(new, old);
    }
    let mut errs = meta::validate_object_meta_update(&new["metadata"], &old["metadata"]);
    match r.kind {
        "ConfigMap" => errs.extend(config::validate_config_map_update(new, old)),
        "Secret" => errs.extend(config::validate_secret_update(new, old)),
        "PersistentVolume" => errs.extend(storage::validate_pv_update(new, old)),
        "PersistentVolumeClaim" => errs.extend(storage::validate_pvc_update(new, old)),
        _ => {}
    }
    errs.extend(validate_kind(r, new));
    errs
}

/// Strict decoding: the paths of fields the kind does not have, as Kubernetes prints them
/// (`spec.containers[0].imagePullPolcy`). Duplicate keys cannot be seen on a parsed value.
pub fn unknown_fields(r: &Resource, obj: &Value) -> Vec<String> {
    unknown::unknown_fields(r, obj)
}

#[cfg(test)]
mod tests;

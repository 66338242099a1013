//! PersistentVolume and PersistentVolumeClaim rules (the cheap parts of upstream's).

use super::path::Path;
use super::quantity::Quantity;
use crate::field::FieldError;
use crate::pod::defaults::{set_default, set_default_str};
use crate::pod::update::diff;
use serde_json::{Map, Value, json};

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
const RECLAIM_POLICIES: &[&str] = &["Delete", "Recycle", "Retain"];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];
/// The PV spec fields that are not part of its volume source.
const PV_NON_SOURCE: &[&str] = &[
    "accessModes",
    "capacity",
    "claimRef",
    "persistentVolumeReclaimPolicy",
    "storageClassName",
    "mountOptions",
    "volumeMode",
    "nodeAffinity",
    "volumeAttributesClassName",
];
const PV_SOURCES: &[&str] = &[
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "hostPath",
    "glusterfs",
    "nfs",
    "rbd",
    "quobyte",
    "iscsi",
    "cinder",
    "cephfs",
    "fc",
    "flocker",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

fn spec_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    obj.as_object_mut()?
        .entry("spec")
        .or_insert_with(|| json!({}))
        .as_object_mut()
}

fn status_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    obj.as_object_mut()?
        .entry("status")
        .or_insert_with(|| json!({}))
        .as_object_mut()
}

/// SetDefaults_PersistentVolume: Retain, Filesystem, Pending, hostPath type "".
pub fn default_pv(obj: &mut Value) {
    if let Some(s) = spec_mut(obj) {
        set_default_str(s, "persistentVolumeReclaimPolicy", "Retain");
        set_default(s, "volumeMode", json!("Filesystem"));
        if let Some(hp) = s.get_mut("hostPath").and_then(Value::as_object_mut) {
            set_default(hp, "type", json!(""));
        }
    }
    if let Some(st) = status_mut(obj) {
        set_default_str(st, "phase", "Pending");
    }
}

/// SetDefaults_PersistentVolumeClaim: Filesystem, Pending.
pub fn default_pvc(obj: &mut Value) {
    if let Some(s) = spec_mut(obj) {
        set_default(s, "volumeMode", json!("Filesystem"));
    }
    if let Some(st) = status_mut(obj) {
        set_default_str(st, "phase", "Pending");
    }
}

fn access_modes(spec: &Value, path: &Path, required_detail: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let modes: Vec<&str> = spec["accessModes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let p = path.child("accessModes");
    if modes.is_empty() {
        errs.push(FieldError::required(&p, required_detail));
    }
    let (mut rwop, mut other) = (false, false);
    for m in &modes {
        if !ACCESS_MODES.contains(m) {
            errs.push(FieldError::not_supported(&p, json!(m), ACCESS_MODES));
        } else if *m == "ReadWriteOncePod" {
            rwop = true;
        } else {
            other = true;
        }
    }
    if rwop && other {
        errs.push(FieldError::forbidden(
            &p,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
    errs
}

fn positive_quantity(q: &Value, path: &Path) -> Vec<FieldError> {
    let shown = q.as_str().map_or_else(|| q.to_string(), str::to_string);
    match Quantity::from_value(q) {
        Some(v) if v > Quantity::ZERO => Vec::new(),
        Some(_) => vec![FieldError::invalid(
            path,
            json!(shown),
            "must be greater than zero",
        )],
        None => vec![FieldError::invalid(
            path,
            json!(shown),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        )],
    }
}

fn class_and_mode(spec: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(class) = spec["storageClassName"].as_str().filter(|c| !c.is_empty()) {
        for m in super::names::is_dns1123_subdomain(class) {
            errs.push(FieldError::invalid(
                path.child("storageClassName"),
                json!(class),
                m,
            ));
        }
    }
    if let Some(mode) = spec["volumeMode"].as_str()
        && !VOLUME_MODES.contains(&mode)
    {
        errs.push(FieldError::not_supported(
            path.child("volumeMode"),
            json!(mode),
            VOLUME_MODES,
        ));
    }
    errs
}

/// ValidatePersistentVolume's spec part.
pub fn validate_pv(obj: &Value) -> Vec<FieldError> {
    let spec = &obj["spec"];
    let path = Path::new("spec");
    let mut errs = access_modes(spec, &path, "");
    let cap = spec["capacity"].as_object();
    let cap_path = path.child("capacity");
    if cap.is_none_or(Map::is_empty) {
        errs.push(FieldError::required(&cap_path, ""));
    }
    if cap.is_none_or(|c| !c.contains_key("storage") || c.len() > 1) {
        errs.push(FieldError::not_supported(
            &cap_path,
            Value::Null,
            &["storage"],
        ));
    }
    for (name, q) in cap.into_iter().flatten() {
        errs.extend(positive_quantity(q, &cap_path.key(name)));
    }
    if let Some(p) = spec["persistentVolumeReclaimPolicy"].as_str()
        && !p.is_empty()
        && !RECLAIM_POLICIES.contains(&p)
    {
        errs.push(FieldError::not_supported(
            path.child("persistentVolumeReclaimPolicy"),
            json!(p),
            RECLAIM_POLICIES,
        ));
    }
    errs.extend(class_and_mode(spec, &path));
    let sources: Vec<&str> = PV_SOURCES
        .iter()
        .copied()
        .filter(|s| spec.get(*s).is_some_and(|v| !v.is_null()))
        .collect();
    for extra in sources.iter().skip(1) {
        errs.push(FieldError::forbidden(
            path.child(extra),
            "may not specify more than 1 volume type",
        ));
    }
    match sources.first() {
        None => errs.push(FieldError::required(&path, "must specify a volume type")),
        Some(&"hostPath") => {
            let hp = &spec["hostPath"];
            let hp_path = path.child("hostPath");
            let p = hp["path"].as_str().unwrap_or("");
            if p.is_empty() {
                errs.push(FieldError::required(hp_path.child("path"), ""));
            } else if p.split('/').any(|s| s == "..") {
                errs.push(FieldError::invalid(
                    hp_path.child("path"),
                    json!(p),
                    "must not contain '..'",
                ));
            }
            if spec["persistentVolumeReclaimPolicy"] == "Recycle"
                && p.trim_end_matches('/').is_empty()
                && !p.is_empty()
            {
                errs.push(FieldError::forbidden(
                    path.child("persistentVolumeReclaimPolicy"),
                    "may not be 'recycle' for a hostPath mount of '/'",
                ));
            }
        }
        Some(&"local") => {
            let p = spec["local"]["path"].as_str().unwrap_or("");
            if p.is_empty() {
                errs.push(FieldError::required(path.child("local").child("path"), ""));
            }
        }
        Some(&"nfs") => {
            let nfs = &spec["nfs"];
            let nfs_path = path.child("nfs");
            if nfs["server"].as_str().unwrap_or("").is_empty() {
                errs.push(FieldError::required(nfs_path.child("server"), ""));
            }
            let p = nfs["path"].as_str().unwrap_or("");
            if p.is_empty() {
                errs.push(FieldError::required(nfs_path.child("path"), ""));
            }
            if !p.starts_with('/') {
                errs.push(FieldError::invalid(
                    nfs_path.child("path"),
                    json!(p),
                    "must be an absolute path",
                ));
            }
        }
        Some(_) => {}
    }
    errs
}

fn pv_source(spec: &Value) -> Value {
    let mut out = Map::new();
    for (k, v) in spec.as_object().into_iter().flatten() {
        if !PV_NON_SOURCE.contains(&k.as_str()) && !v.is_null() {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// ValidatePersistentVolumeUpdate: the new PV is valid and its volume source did not change.
pub fn validate_pv_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_pv(new);
    let (ns, os) = (pv_source(&new["spec"]), pv_source(&old["spec"]));
    if ns != os {
        errs.push(FieldError::forbidden(
            "spec.persistentvolumesource",
            format!(
                "spec.persistentvolumesource is immutable after creation\n{}",
                diff(&os, &ns, "core.PersistentVolumeSource")
            ),
        ));
    }
    if new["spec"].get("volumeMode") != old["spec"].get("volumeMode") {
        errs.push(FieldError::invalid(
            "volumeMode",
            new["spec"]["volumeMode"].clone(),
            "field is immutable",
        ));
    }
    errs
}

/// ValidatePersistentVolumeClaim's spec part.
pub fn validate_pvc(obj: &Value) -> Vec<FieldError> {
    let spec = &obj["spec"];
    let path = Path::new("spec");
    let mut errs = access_modes(spec, &path, "at least 1 access mode is required");
    let storage_path = path.child("resources").key("storage");
    match spec["resources"]["requests"].get("storage") {
        None => errs.push(FieldError::required(&storage_path, "")),
        Some(q) => errs.extend(positive_quantity(q, &storage_path)),
    }
    errs.extend(class_and_mode(spec, &path));
    errs
}

/// ValidatePersistentVolumeClaimUpdate: only the requested size (of bound claims) and a first
/// volumeName may change, and the size may not shrink.
pub fn validate_pvc_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_pvc(new);
    let mut ns = new["spec"].clone();
    let mut os = old["spec"].clone();
    if os["volumeName"].as_str().unwrap_or("").is_empty()
        && let Some(o) = os.as_object_mut()
    {
        match ns.get("volumeName") {
            Some(v) => o.insert("volumeName".into(), v.clone()),
            None => o.remove("volumeName"),
        };
    }
    let bound = new["status"]["phase"] == "Bound" || old["status"]["phase"] == "Bound";
    if bound
        && let Some(req) = ns
            .pointer_mut("/resources/requests")
            .and_then(Value::as_object_mut)
    {
        match old["spec"]["resources"]["requests"].get("storage") {
            Some(v) => req.insert("storage".into(), v.clone()),
            None => req.remove("storage"),
        };
    }
    if ns != os {
        errs.push(FieldError::forbidden(
            "spec",
            format!(
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}",
                diff(&os, &ns, "core.PersistentVolumeClaimSpec")
            ),
        ));
    }
    let size = |v: &Value| {
        Quantity::from_value(&v["spec"]["resources"]["requests"]["storage"])
            .unwrap_or(Quantity::ZERO)
    };
    if size(new) < size(old) {
        errs.push(FieldError::forbidden(
            "spec.resources.requests.storage",
            "field can not be less than previous value",
        ));
    }
    errs
}

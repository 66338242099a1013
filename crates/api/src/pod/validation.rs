//! Pod validation as `pkg/apis/core/validation` does it, in upstream's order and with its texts
//! (volumes, then containers, init containers, ephemeral containers, then pod-level fields).

use crate::field::{ErrorType, FieldError};
use crate::strategy::meta::{self, validate_labels};
use crate::strategy::names;
use crate::strategy::path::Path;
use crate::strategy::quantity::Quantity;
use k8s_openapi::api::core::v1 as core;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

const FILE_MODE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];
const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];
const HOST_PATH_TYPES: &[&str] = &[
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];
const MEMORY_DIVISORS: &[&str] = &[
    "1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei",
];

/// The volumes that passed validation, by name: mounts may only reference these.
type ValidVolumes<'a> = BTreeMap<&'a str, &'a core::Volume>;

fn s(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

fn invalid(path: &Path, value: Value, msg: impl Into<String>) -> FieldError {
    FieldError::invalid(path, value, msg)
}

fn dns_label(value: &str, path: &Path) -> Vec<FieldError> {
    names::is_dns1123_label(value)
        .into_iter()
        .map(|m| invalid(path, json!(value), m))
        .collect()
}

fn check_mode(mode: Option<i32>, path: &Path, errs: &mut Vec<FieldError>) {
    if let Some(m) = mode
        && !(0..=0o777).contains(&m)
    {
        errs.push(invalid(path, json!(m), FILE_MODE_MSG));
    }
}

/// validatePathNoBacksteps.
fn no_backsteps(target: &str, path: &Path) -> Vec<FieldError> {
    if target.split('/').any(|p| p == "..") {
        vec![invalid(path, json!(target), "must not contain '..'")]
    } else {
        Vec::new()
    }
}

/// ValidateLocalDescendingPath.
fn local_descending_path(target: &str, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if target.starts_with('/') {
        errs.push(invalid(path, json!(target), "must be a relative path"));
    }
    errs.extend(no_backsteps(target, path));
    errs
}

/// ValidateLocalNonReservedPath: also refuses names that start with `..` (the atomic writer's own).
fn local_non_reserved_path(target: &str, path: &Path) -> Vec<FieldError> {
    let mut errs = local_descending_path(target, path);
    if target.starts_with("..") && !target.starts_with("../") {
        errs.push(invalid(path, json!(target), "must not start with '..'"));
    }
    errs
}

fn key_to_path(kp: &core::KeyToPath, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if kp.key.is_empty() {
        errs.push(FieldError::required(path.child("key"), ""));
    }
    if kp.path.is_empty() {
        errs.push(FieldError::required(path.child("path"), ""));
    }
    errs.extend(local_non_reserved_path(&kp.path, &path.child("path")));
    check_mode(kp.mode, &path.child("mode"), &mut errs);
    errs
}

/// SplitMaybeSubscriptedPath: `metadata.labels['app']` -> (`metadata.labels`, `app`).
fn split_subscript(fp: &str) -> Option<(&str, &str)> {
    let rest = fp.strip_suffix("']")?;
    let (path, sub) = rest.split_once("['")?;
    Some((path, sub))
}

/// ConvertDownwardAPIFieldLabel for v1 pods.
fn convert_field_label(version: &str, label: &str) -> Result<String, String> {
    if version != "v1" {
        return Err(format!("unsupported pod version: {version}"));
    }
    if let Some((path, _)) = split_subscript(label) {
        return match path {
            "metadata.annotations" | "metadata.labels" => Ok(label.to_string()),
            _ => Err(format!("field label does not support subscript: {label}")),
        };
    }
    match label {
        "metadata.annotations"
        | "metadata.labels"
        | "metadata.name"
        | "metadata.namespace"
        | "metadata.uid"
        | "spec.nodeName"
        | "spec.restartPolicy"
        | "spec.serviceAccountName"
        | "spec.schedulerName"
        | "status.phase"
        | "status.hostIP"
        | "status.hostIPs"
        | "status.podIP"
        | "status.podIPs" => Ok(label.to_string()),
        "spec.host" => Ok("spec.nodeName".to_string()),
        _ => Err(format!("field label not supported: {label}")),
    }
}

fn object_field_selector(
    fs: &core::ObjectFieldSelector,
    allowed: &[&str],
    path: &Path,
) -> Vec<FieldError> {
    let version = s(&fs.api_version);
    if version.is_empty() {
        return vec![FieldError::required(path.child("apiVersion"), "")];
    }
    if fs.field_path.is_empty() {
        return vec![FieldError::required(path.child("fieldPath"), "")];
    }
    let internal = match convert_field_label(version, &fs.field_path) {
        Ok(p) => p,
        Err(e) => {
            return vec![invalid(
                &path.child("fieldPath"),
                json!(fs.field_path),
                format!("error converting fieldPath: {e}"),
            )];
        }
    };
    let mut errs = Vec::new();
    if let Some((p, sub)) = split_subscript(&internal) {
        let key = if p == "metadata.annotations" {
            sub.to_lowercase()
        } else {
            sub.to_string()
        };
        if p == "metadata.annotations" || p == "metadata.labels" {
            for m in names::is_qualified_name(&key) {
                errs.push(invalid(path, json!(key), m));
            }
        } else {
            errs.push(invalid(path, json!(p), "does not support subscript"));
        }
    } else if !allowed.contains(&internal.as_str()) {
        errs.push(FieldError::not_supported(
            path.child("fieldPath"),
            json!(internal),
            allowed,
        ));
    }
    errs
}

fn resource_field_selector(
    fs: &core::ResourceFieldSelector,
    path: &Path,
    volume: bool,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let resource = fs.resource.as_str();
    if volume && s(&fs.container_name).is_empty() {
        errs.push(FieldError::required(path.child("containerName"), ""));
    } else if resource.is_empty() {
        errs.push(FieldError::required(path.child("resource"), ""));
    } else if !RESOURCE_FIELD_PATHS.contains(&resource)
        && !resource.starts_with("requests.hugepages-")
        && !resource.starts_with("limits.hugepages-")
    {
        errs.push(FieldError::not_supported(
            path.child("resource"),
            json!(resource),
            RESOURCE_FIELD_PATHS,
        ));
    }
    let Some(divisor) = fs.divisor.as_ref().map(|q| q.0.as_str()) else {
        return errs;
    };
    if Quantity::parse(divisor) == Some(Quantity::ZERO) {
        return errs;
    }
    let msg = match resource {
        "limits.cpu" | "requests.cpu" if !["1m", "1"].contains(&divisor) => {
            Some("only divisor's values 1m and 1 are supported with the cpu resource".to_string())
        }
        "limits.memory" | "requests.memory" if !MEMORY_DIVISORS.contains(&divisor) => {
            Some(format!(
                "only divisor's values {} are supported with the memory resource",
                MEMORY_DIVISORS.join(", ")
            ))
        }
        "limits.ephemeral-storage" | "requests.ephemeral-storage"
            if !MEMORY_DIVISORS.contains(&divisor) =>
        {
            Some(format!(
                "only divisor's values {} are supported with the local ephemeral storage resource",
                MEMORY_DIVISORS.join(", ")
            ))
        }
        _ => None,
    };
    if let Some(m) = msg {
        errs.push(invalid(&path.child("divisor"), json!(resource), m));
    }
    errs
}

/// validateDownwardAPIVolumeFile; note `path` is the source's, not the item's (upstream quirk).
fn downward_api_file(file: &core::DownwardAPIVolumeFile, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if file.path.is_empty() {
        errs.push(FieldError::required(path.child("path"), ""));
    }
    errs.extend(local_non_reserved_path(&file.path, &path.child("path")));
    if let Some(fr) = &file.field_ref {
        errs.extend(object_field_selector(
            fr,
            VOLUME_FIELD_PATHS,
            &path.child("fieldRef"),
        ));
        if file.resource_field_ref.is_some() {
            errs.push(invalid(
                path,
                json!("resource"),
                "fieldRef and resourceFieldRef can not be specified simultaneously",
            ));
        }
    } else if let Some(rf) = &file.resource_field_ref {
        errs.extend(resource_field_selector(
            rf,
            &path.child("resourceFieldRef"),
            true,
        ));
    } else {
        errs.push(FieldError::required(
            path,
            "one of fieldRef and resourceFieldRef is required",
        ));
    }
    check_mode(file.mode, &path.child("mode"), &mut errs);
    errs
}

fn projected(p: &core::ProjectedVolumeSource, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    check_mode(p.default_mode, &path.child("defaultMode"), &mut errs);
    let mut all_paths: BTreeSet<String> = BTreeSet::new();
    for (i, src) in p.sources.iter().flatten().enumerate() {
        let src_path = path.child("sources").index(i);
        let mut n = 0;
        let mut key_items = |name: &str,
                             items: &Option<Vec<core::KeyToPath>>,
                             proj: Path,
                             errs: &mut Vec<FieldError>| {
            if name.is_empty() {
                errs.push(FieldError::required(proj.child("name"), ""));
            }
            for (j, kp) in items.iter().flatten().enumerate() {
                errs.extend(key_to_path(kp, &proj.child("items").index(j)));
                if !kp.path.is_empty() && !all_paths.insert(kp.path.clone()) {
                    errs.push(invalid(path, json!(name), "conflicting duplicate paths"));
                }
            }
        };
        if let Some(sec) = &src.secret {
            n += 1;
            key_items(
                s(&Some(sec.name.clone())),
                &sec.items,
                src_path.child("secret"),
                &mut errs,
            );
        }
        if let Some(cm) = &src.config_map {
            n += 1;
            key_items(
                s(&Some(cm.name.clone())),
                &cm.items,
                src_path.child("configMap"),
                &mut errs,
            );
        }
        if let Some(d) = &src.downward_api {
            n += 1;
            let proj = src_path.child("downwardAPI");
            for file in d.items.iter().flatten() {
                errs.extend(downward_api_file(file, &proj));
                if !file.path.is_empty() && !all_paths.insert(file.path.clone()) {
                    errs.push(invalid(
                        path,
                        json!(file.path),
                        "conflicting duplicate paths",
                    ));
                }
            }
        }
        if let Some(t) = &src.service_account_token {
            n += 1;
            let proj = src_path.child("serviceAccountToken");
            let secs = t.expiration_seconds.unwrap_or(0);
            if secs < 600 {
                errs.push(invalid(
                    &proj.child("expirationSeconds"),
                    json!(secs),
                    "may not specify a duration less than 10 minutes",
                ));
            }
            if secs > 1 << 32 {
                errs.push(invalid(
                    &proj.child("expirationSeconds"),
                    json!(secs),
                    "may not specify a duration larger than 2^32 seconds",
                ));
            }
            if t.path.is_empty() {
                errs.push(FieldError::required(path.child("path"), ""));
            }
        }
        if src.cluster_trust_bundle.is_some() {
            n += 1;
        }
        if n > 1 {
            errs.push(FieldError::forbidden(
                &src_path,
                "may not specify more than 1 volume type per source",
            ));
        }
    }
    errs
}

/// validateVolumeSource: exactly one source, and that source's own rules.
fn volume_source(v: &core::Volume, path: &Path, pod_name: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut n = 0;
    // Upstream's check order; the second source present is the one reported.
    let sources: [(&str, bool); 30] = [
        ("emptyDir", v.empty_dir.is_some()),
        ("hostPath", v.host_path.is_some()),
        ("gitRepo", v.git_repo.is_some()),
        ("gcePersistentDisk", v.gce_persistent_disk.is_some()),
        ("awsElasticBlockStore", v.aws_elastic_block_store.is_some()),
        ("secret", v.secret.is_some()),
        ("nfs", v.nfs.is_some()),
        ("iscsi", v.iscsi.is_some()),
        ("glusterfs", v.glusterfs.is_some()),
        ("flocker", v.flocker.is_some()),
        ("persistentVolumeClaim", v.persistent_volume_claim.is_some()),
        ("rbd", v.rbd.is_some()),
        ("cinder", v.cinder.is_some()),
        ("cephfs", v.cephfs.is_some()),
        ("quobyte", v.quobyte.is_some()),
        // Upstream misspells this one in its message.
        ("downwarAPI", v.downward_api.is_some()),
        ("fc", v.fc.is_some()),
        ("flexVolume", v.flex_volume.is_some()),
        ("configMap", v.config_map.is_some()),
        ("azureFile", v.azure_file.is_some()),
        ("vsphereVolume", v.vsphere_volume.is_some()),
        ("photonPersistentDisk", v.photon_persistent_disk.is_some()),
        ("portworxVolume", v.portworx_volume.is_some()),
        ("azureDisk", v.azure_disk.is_some()),
        ("storageos", v.storageos.is_some()),
        ("projected", v.projected.is_some()),
        ("scaleIO", v.scale_io.is_some()),
        ("csi", v.csi.is_some()),
        ("ephemeral", v.ephemeral.is_some()),
        ("image", v.image.is_some()),
    ];
    let mut chosen = "";
    for (name, present) in sources {
        if !present {
            continue;
        }
        if n > 0 {
            errs.push(FieldError::forbidden(
                path.child(name),
                "may not specify more than 1 volume type",
            ));
        } else {
            n += 1;
            chosen = name;
        }
    }
    match chosen {
        "" => errs.push(FieldError::required(path, "must specify a volume type")),
        "emptyDir" => {
            let limit = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref());
            if limit
                .and_then(|q| Quantity::parse(&q.0))
                .is_some_and(|q| q < Quantity::ZERO)
            {
                errs.push(FieldError::forbidden(
                    path.child("emptyDir").child("sizeLimit"),
                    "SizeLimit field must be a valid resource quantity",
                ));
            }
        }
        "hostPath" => {
            if let Some(hp) = &v.host_path {
                let p = path.child("hostPath");
                if hp.path.is_empty() {
                    errs.push(FieldError::required(p.child("path"), ""));
                } else {
                    errs.extend(no_backsteps(&hp.path, &p.child("path")));
                    if let Some(t) = &hp.type_
                        && !HOST_PATH_TYPES.contains(&t.as_str())
                    {
                        errs.push(FieldError::not_supported(
                            p.child("type"),
                            json!(t),
                            HOST_PATH_TYPES,
                        ));
                    }
                }
            }
        }
        "gitRepo" => {
            if let Some(g) = &v.git_repo {
                let p = path.child("gitRepo");
                if g.repository.is_empty() {
                    errs.push(FieldError::required(p.child("repository"), ""));
                }
                errs.extend(local_descending_path(
                    s(&g.directory),
                    &p.child("directory"),
                ));
            }
        }
        "secret" => {
            if let Some(sec) = &v.secret {
                let p = path.child("secret");
                if s(&sec.secret_name).is_empty() {
                    errs.push(FieldError::required(p.child("secretName"), ""));
                }
                check_mode(sec.default_mode, &p.child("defaultMode"), &mut errs);
                for (j, kp) in sec.items.iter().flatten().enumerate() {
                    errs.extend(key_to_path(kp, &p.child("items").index(j)));
                }
            }
        }
        "configMap" => {
            if let Some(cm) = &v.config_map {
                let p = path.child("configMap");
                if cm.name.is_empty() {
                    errs.push(FieldError::required(p.child("name"), ""));
                }
                check_mode(cm.default_mode, &p.child("defaultMode"), &mut errs);
                for (j, kp) in cm.items.iter().flatten().enumerate() {
                    errs.extend(key_to_path(kp, &p.child("items").index(j)));
                }
            }
        }
        "downwarAPI" => {
            if let Some(d) = &v.downward_api {
                let p = path.child("downwardAPI");
                check_mode(d.default_mode, &p.child("defaultMode"), &mut errs);
                for file in d.items.iter().flatten() {
                    errs.extend(downward_api_file(file, &p));
                }
            }
        }
        "projected" => {
            if let Some(pr) = &v.projected {
                errs.extend(projected(pr, &path.child("projected")));
            }
        }
        "persistentVolumeClaim"
            if v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.claim_name.is_empty()) =>
        {
            errs.push(FieldError::required(
                path.child("persistentVolumeClaim").child("claimName"),
                "",
            ));
        }
        "nfs" => {
            if let Some(nfs) = &v.nfs {
                let p = path.child("nfs");
                if nfs.server.is_empty() {
                    errs.push(FieldError::required(p.child("server"), ""));
                }
                if nfs.path.is_empty() {
                    errs.push(FieldError::required(p.child("path"), ""));
                }
                if !nfs.path.starts_with('/') {
                    errs.push(invalid(
                        &p.child("path"),
                        json!(nfs.path),
                        "must be an absolute path",
                    ));
                }
            }
        }
        "csi" => {
            if let Some(csi) = &v.csi {
                let p = path.child("csi").child("driver");
                if csi.driver.is_empty() {
                    errs.push(FieldError::required(&p, ""));
                } else {
                    if csi.driver.len() > 63 {
                        errs.push(FieldError::too_long(&p, 63));
                    }
                    for m in names::is_dns1123_subdomain(&csi.driver.to_lowercase()) {
                        errs.push(invalid(&p, json!(csi.driver), m));
                    }
                }
            }
        }
        "ephemeral" => {
            if let Some(e) = &v.ephemeral {
                if e.volume_claim_template.is_none() {
                    errs.push(FieldError::required(
                        path.child("ephemeral").child("volumeClaimTemplate"),
                        "",
                    ));
                }
                if !pod_name.is_empty() && !v.name.is_empty() {
                    let pvc = format!("{pod_name}-{}", v.name);
                    for m in names::is_dns1123_subdomain(&pvc) {
                        errs.push(invalid(
                            &path.child("name"),
                            json!(v.name),
                            format!("PVC name {pvc:?}: {m}"),
                        ));
                    }
                }
            }
        }
        "image" if v.image.as_ref().is_some_and(|i| s(&i.reference).is_empty()) => {
            errs.push(FieldError::required(
                path.child("image").child("reference"),
                "",
            ));
        }
        _ => {}
    }
    errs
}

/// ValidateVolumes: returns the valid volumes (mounts can only use those) and the errors.
fn volumes<'a>(
    vols: &'a [core::Volume],
    pod_name: &str,
    path: &Path,
) -> (ValidVolumes<'a>, Vec<FieldError>) {
    let mut errs = Vec::new();
    let mut valid: ValidVolumes<'a> = BTreeMap::new();
    let created_pvcs: BTreeSet<String> = if pod_name.is_empty() {
        BTreeSet::new()
    } else {
        vols.iter()
            .filter(|v| v.ephemeral.is_some())
            .map(|v| format!("{pod_name}-{}", v.name))
            .collect()
    };
    for (i, v) in vols.iter().enumerate() {
        let idx = path.index(i);
        let name_path = idx.child("name");
        let mut el = volume_source(v, &idx, pod_name);
        if v.name.is_empty() {
            el.push(FieldError::required(&name_path, ""));
        } else {
            el.extend(dns_label(&v.name, &name_path));
        }
        if valid.contains_key(v.name.as_str()) {
            el.push(FieldError::duplicate(&name_path, json!(v.name)));
        }
        if el.is_empty() {
            valid.insert(v.name.as_str(), v);
        } else {
            errs.extend(el);
        }
        if let Some(c) = &v.persistent_volume_claim
            && created_pvcs.contains(&c.claim_name)
        {
            errs.push(invalid(
                &idx.child("persistentVolumeClaim").child("claimName"),
                json!(c.claim_name),
                "must not reference a PVC that gets created for an ephemeral volume",
            ));
        }
    }
    (valid, errs)
}

fn volume_mounts(c: &core::Container, vols: &ValidVolumes<'_>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut mount_points: BTreeSet<&str> = BTreeSet::new();
    let devices: Vec<&core::VolumeDevice> = c.volume_devices.iter().flatten().collect();
    let privileged = c
        .security_context
        .as_ref()
        .and_then(|s| s.privileged)
        .unwrap_or(false);
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let idx = path.index(i);
        if m.name.is_empty() {
            errs.push(FieldError::required(idx.child("name"), ""));
        }
        if !vols.contains_key(m.name.as_str()) {
            errs.push(FieldError::not_found(idx.child("name"), json!(m.name)));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(idx.child("mountPath"), ""));
        }
        if !mount_points.insert(m.mount_path.as_str()) {
            errs.push(invalid(
                &idx.child("mountPath"),
                json!(m.mount_path),
                "must be unique",
            ));
        }
        if devices.iter().any(|d| d.name == m.name) {
            errs.push(invalid(
                &idx.child("name"),
                json!(m.name),
                "must not already exist in volumeDevices",
            ));
        }
        if devices.iter().any(|d| d.device_path == m.mount_path) {
            errs.push(invalid(
                &idx.child("mountPath"),
                json!(m.mount_path),
                "must not already exist as a path in volumeDevices",
            ));
        }
        let sub_path = s(&m.sub_path);
        let sub_path_expr = s(&m.sub_path_expr);
        if vols.get(m.name.as_str()).is_some_and(|v| v.image.is_some()) {
            if !sub_path.is_empty() {
                errs.push(invalid(
                    &idx.child("subPath"),
                    json!(sub_path),
                    "not allowed in image volume sources",
                ));
            }
            if !sub_path_expr.is_empty() {
                errs.push(invalid(
                    &idx.child("subPathExpr"),
                    json!(sub_path_expr),
                    "not allowed in image volume sources",
                ));
            }
        }
        // Upstream reports subPath problems on the list's path, without the index.
        if !sub_path.is_empty() {
            errs.extend(local_descending_path(sub_path, &path.child("subPath")));
        }
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                errs.push(invalid(
                    &idx.child("subPathExpr"),
                    json!(sub_path_expr),
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            errs.extend(local_descending_path(
                sub_path_expr,
                &path.child("subPathExpr"),
            ));
        }
        if let Some(prop) = &m.mount_propagation {
            let p = path.child("mountPropagation");
            const SUPPORTED: &[&str] = &["Bidirectional", "HostToContainer", "None"];
            if !SUPPORTED.contains(&prop.as_str()) {
                errs.push(FieldError::not_supported(&p, json!(prop), SUPPORTED));
            }
            if prop == "Bidirectional" && !privileged {
                errs.push(FieldError::forbidden(
                    &p,
                    "Bidirectional mount propagation is available only to privileged containers",
                ));
            }
        }
        if let Some(rro) = &m.recursive_read_only {
            let p = path.child("recursiveReadOnly");
            match rro.as_str() {
                "Disabled" => {}
                "Enabled" | "IfPossible" => {
                    if !m.read_only.unwrap_or(false) {
                        errs.push(FieldError::forbidden(
                            &p,
                            "may only be specified when readOnly is true",
                        ));
                    }
                    if m.mount_propagation
                        .as_deref()
                        .is_some_and(|mp| mp != "None")
                    {
                        errs.push(FieldError::forbidden(
                            &p,
                            "may only be specified when mountPropagation is None or not specified",
                        ));
                    }
                }
                other => errs.push(FieldError::not_supported(
                    &p,
                    json!(other),
                    &["Disabled", "Enabled", "IfPossible"],
                )),
            }
        }
    }
    errs
}

fn key_selector(name: &str, key: &str, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if name.is_empty() {
        errs.push(FieldError::required(path.child("name"), ""));
    } else {
        for m in names::is_dns1123_subdomain(name) {
            errs.push(invalid(&path.child("name"), json!(name), m));
        }
    }
    if key.is_empty() {
        errs.push(FieldError::required(path.child("key"), ""));
    } else {
        for m in names::is_config_map_key(key) {
            errs.push(invalid(&path.child("key"), json!(key), m));
        }
    }
    errs
}

fn env(vars: &[core::EnvVar], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, e) in vars.iter().enumerate() {
        let idx = path.index(i);
        if e.name.is_empty() {
            errs.push(FieldError::required(idx.child("name"), ""));
        }
        for m in names::is_relaxed_env_var_name(&e.name) {
            errs.push(invalid(&idx.child("name"), json!(e.name), m));
        }
        let Some(vf) = &e.value_from else { continue };
        let vf_path = idx.child("valueFrom");
        let mut n = 0;
        if let Some(fr) = &vf.field_ref {
            n += 1;
            errs.extend(object_field_selector(
                fr,
                ENV_FIELD_PATHS,
                &vf_path.child("fieldRef"),
            ));
        }
        if let Some(rf) = &vf.resource_field_ref {
            n += 1;
            errs.extend(resource_field_selector(
                rf,
                &vf_path.child("resourceFieldRef"),
                false,
            ));
        }
        if let Some(r) = &vf.config_map_key_ref {
            n += 1;
            errs.extend(key_selector(
                &r.name,
                &r.key,
                &vf_path.child("configMapKeyRef"),
            ));
        }
        if let Some(r) = &vf.secret_key_ref {
            n += 1;
            errs.extend(key_selector(
                &r.name,
                &r.key,
                &vf_path.child("secretKeyRef"),
            ));
        }
        if n == 0 {
            errs.push(invalid(&vf_path, json!(""), "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"));
        } else if !s(&e.value).is_empty() {
            errs.push(invalid(
                &vf_path,
                json!(""),
                "may not be specified when `value` is not empty",
            ));
        } else if n > 1 {
            errs.push(invalid(
                &vf_path,
                json!(""),
                "may not have more than one field specified at a time",
            ));
        }
    }
    errs
}

fn ports(ports: &[core::ContainerPort], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let idx = path.index(i);
        let name = s(&p.name);
        if !name.is_empty() {
            let msgs = names::is_valid_port_name(name);
            if !msgs.is_empty() {
                for m in msgs {
                    errs.push(invalid(&idx.child("name"), json!(name), m));
                }
            } else if !seen.insert(name) {
                errs.push(FieldError::duplicate(idx.child("name"), json!(name)));
            }
        }
        if p.container_port == 0 {
            errs.push(FieldError::required(idx.child("containerPort"), ""));
        } else {
            for m in names::is_valid_port_num(i64::from(p.container_port)) {
                errs.push(invalid(
                    &idx.child("containerPort"),
                    json!(p.container_port),
                    m,
                ));
            }
        }
        if let Some(hp) = p.host_port.filter(|h| *h != 0) {
            for m in names::is_valid_port_num(i64::from(hp)) {
                errs.push(invalid(&idx.child("hostPort"), json!(hp), m));
            }
        }
        let proto = s(&p.protocol);
        if proto.is_empty() {
            errs.push(FieldError::required(idx.child("protocol"), ""));
        } else if !["SCTP", "TCP", "UDP"].contains(&proto) {
            errs.push(FieldError::not_supported(
                idx.child("protocol"),
                json!(proto),
                &["SCTP", "TCP", "UDP"],
            ));
        }
    }
    errs
}

fn one_of(value: &str, path: &Path, supported: &[&str]) -> Vec<FieldError> {
    if value.is_empty() {
        vec![FieldError::required(path, "")]
    } else if !supported.contains(&value) {
        vec![FieldError::not_supported(path, json!(value), supported)]
    } else {
        Vec::new()
    }
}

/// ValidateContainerResources: known names, valid quantities, requests not above limits.
fn resources(r: Option<&core::ResourceRequirements>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(r) = r else { return errs };
    let limits = r.limits.clone().unwrap_or_default();
    let requests = r.requests.clone().unwrap_or_default();
    for (part, list) in [("limits", &limits), ("requests", &requests)] {
        for (name, q) in list {
            let p = path.child(part).key(name);
            match Quantity::parse(&q.0) {
                Some(v) if v < Quantity::ZERO => {
                    errs.push(invalid(&p, json!(q.0), "must be greater than or equal to 0"));
                }
                Some(_) => {}
                None => errs.push(invalid(&p, json!(q.0), "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")),
            }
        }
    }
    for (name, req) in &requests {
        let Some(lim) = limits.get(name) else {
            continue;
        };
        let (Some(rq), Some(lq)) = (Quantity::parse(&req.0), Quantity::parse(&lim.0)) else {
            continue;
        };
        if rq > lq {
            errs.push(invalid(
                &path.child("requests").key(name),
                json!(req.0),
                format!("must be less than or equal to {name} limit of {}", lim.0),
            ));
        }
    }
    errs
}

/// validateContainerCommon plus the checks each container list adds.
fn container_common(c: &core::Container, vols: &ValidVolumes<'_>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name_path = path.child("name");
    if c.name.is_empty() {
        errs.push(FieldError::required(&name_path, ""));
    } else {
        errs.extend(dns_label(&c.name, &name_path));
    }
    if s(&c.image).is_empty() {
        errs.push(FieldError::required(path.child("image"), ""));
    }
    errs.extend(one_of(
        s(&c.termination_message_policy),
        &path.child("terminationMessagePolicy"),
        &["File", "FallbackToLogsOnError"],
    ));
    errs.extend(ports(
        c.ports.as_deref().unwrap_or(&[]),
        &path.child("ports"),
    ));
    errs.extend(env(c.env.as_deref().unwrap_or(&[]), &path.child("env")));
    for (i, ef) in c.env_from.iter().flatten().enumerate() {
        let idx = path.child("envFrom").index(i);
        let prefix = s(&ef.prefix);
        if !prefix.is_empty() {
            for m in names::is_relaxed_env_var_name(prefix) {
                errs.push(invalid(&idx.child("prefix"), json!(prefix), m));
            }
        }
        match (&ef.config_map_ref, &ef.secret_ref) {
            (None, None) => errs.push(invalid(
                &idx,
                json!(""),
                "must specify one of: `configMapRef` or `secretRef`",
            )),
            (Some(_), Some(_)) => errs.push(invalid(
                &idx,
                json!(""),
                "may not have more than one field specified at a time",
            )),
            (Some(r), None) if r.name.is_empty() => errs.push(FieldError::required(
                idx.child("configMapRef").child("name"),
                "",
            )),
            (None, Some(r)) if r.name.is_empty() => errs.push(FieldError::required(
                idx.child("secretRef").child("name"),
                "",
            )),
            _ => {}
        }
    }
    errs.extend(volume_mounts(c, vols, &path.child("volumeMounts")));
    errs.extend(one_of(
        s(&c.image_pull_policy),
        &path.child("imagePullPolicy"),
        &["Always", "IfNotPresent", "Never"],
    ));
    errs.extend(resources(c.resources.as_ref(), &path.child("resources")));
    errs
}

fn probe(p: Option<&core::Probe>, path: &Path, allowed: bool) -> Vec<FieldError> {
    let Some(p) = p else { return Vec::new() };
    if !allowed {
        return vec![FieldError::forbidden(
            path,
            "may not be set for init containers without restartPolicy=Always",
        )];
    }
    let mut errs = Vec::new();
    let handlers = [
        p.exec.is_some(),
        p.http_get.is_some(),
        p.tcp_socket.is_some(),
        p.grpc.is_some(),
    ];
    match handlers.iter().filter(|h| **h).count() {
        0 => errs.push(FieldError::required(path, "must specify a handler type")),
        1 => {}
        _ => errs.push(FieldError::forbidden(
            path,
            "may not specify more than 1 handler type",
        )),
    }
    for (name, v) in [
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("periodSeconds", p.period_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ] {
        if let Some(v) = v.filter(|v| *v < 0) {
            errs.push(invalid(
                &path.child(name),
                json!(v),
                "must be greater than or equal to 0",
            ));
        }
    }
    errs
}

fn containers(list: &[core::Container], vols: &ValidVolumes<'_>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if list.is_empty() {
        errs.push(FieldError::required(path, ""));
    }
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for (i, c) in list.iter().enumerate() {
        let idx = path.index(i);
        errs.extend(container_common(c, vols, &idx));
        if !seen.insert(c.name.as_str()) {
            errs.push(FieldError::duplicate(idx.child("name"), json!(c.name)));
        }
        errs.extend(probe(
            c.liveness_probe.as_ref(),
            &idx.child("livenessProbe"),
            true,
        ));
        errs.extend(probe(
            c.readiness_probe.as_ref(),
            &idx.child("readinessProbe"),
            true,
        ));
        errs.extend(probe(
            c.startup_probe.as_ref(),
            &idx.child("startupProbe"),
            true,
        ));
        if c.restart_policy.is_some() {
            errs.push(FieldError::forbidden(
                idx.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    errs.extend(host_port_conflicts(list, path));
    errs
}

fn init_containers(
    list: &[core::Container],
    regular: &[core::Container],
    vols: &ValidVolumes<'_>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen: BTreeSet<&str> = regular.iter().map(|c| c.name.as_str()).collect();
    for (i, c) in list.iter().enumerate() {
        let idx = path.index(i);
        errs.extend(container_common(c, vols, &idx));
        if !seen.insert(c.name.as_str()) {
            errs.push(FieldError::duplicate(idx.child("name"), json!(c.name)));
        }
        let sidecar = match c.restart_policy.as_deref() {
            None => false,
            Some("Always") => true,
            Some(other) => {
                errs.push(FieldError::not_supported(
                    idx.child("restartPolicy"),
                    json!(other),
                    &["Always"],
                ));
                false
            }
        };
        if !sidecar && c.lifecycle.is_some() {
            errs.push(FieldError::forbidden(
                idx.child("lifecycle"),
                "may not be set for init containers without restartPolicy=Always",
            ));
        }
        errs.extend(probe(
            c.liveness_probe.as_ref(),
            &idx.child("livenessProbe"),
            sidecar,
        ));
        errs.extend(probe(
            c.readiness_probe.as_ref(),
            &idx.child("readinessProbe"),
            sidecar,
        ));
        errs.extend(probe(
            c.startup_probe.as_ref(),
            &idx.child("startupProbe"),
            sidecar,
        ));
    }
    errs.extend(host_port_conflicts(list, path));
    errs
}

/// checkHostPortConflicts: one host port per protocol and IP across the list.
fn host_port_conflicts(list: &[core::Container], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for c in list {
        for p in c.ports.iter().flatten() {
            let Some(hp) = p.host_port.filter(|h| *h != 0) else {
                continue;
            };
            let key = format!("{}/{}/{hp}", s(&p.protocol), s(&p.host_ip));
            if !seen.insert(key.clone()) {
                errs.push(FieldError::duplicate(path.as_str(), json!(key)));
            }
        }
    }
    errs
}

fn tolerations(list: &[core::Toleration], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let idx = path.index(i);
        let key = s(&t.key);
        let op = s(&t.operator);
        let effect = s(&t.effect);
        if !key.is_empty() {
            for m in names::is_qualified_name(key) {
                errs.push(invalid(&idx.child("key"), json!(key), m));
            }
        }
        if key.is_empty() && op != "Exists" {
            errs.push(invalid(
                &idx.child("operator"),
                json!(op),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(invalid(
                &idx.child("effect"),
                json!(effect),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "" | "Equal" => {
                let msgs = names::is_valid_label_value(s(&t.value));
                if !msgs.is_empty() {
                    errs.push(invalid(
                        &idx.child("operator"),
                        json!(s(&t.value)),
                        msgs.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !s(&t.value).is_empty() {
                    errs.push(FieldError::new(
                        ErrorType::Invalid,
                        idx.child("operator"),
                        serde_json::to_value(t).unwrap_or(Value::Null),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                idx.child("operator"),
                json!(other),
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() {
            const EFFECTS: &[&str] = &["NoExecute", "NoSchedule", "PreferNoSchedule"];
            if !EFFECTS.contains(&effect) {
                errs.push(FieldError::not_supported(
                    idx.child("effect"),
                    json!(effect),
                    EFFECTS,
                ));
            }
        }
    }
    errs
}

/// ValidatePodSpec for a spec at `path` (`spec`, or `spec.template.spec` in workloads).
pub fn validate_pod_spec(spec: &core::PodSpec, pod_name: &str, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if spec.termination_grace_period_seconds.is_none() {
        errs.push(FieldError::required(
            path.child("terminationGracePeriodSeconds"),
            "must be set",
        ));
    }
    let (vols, verrs) = volumes(
        spec.volumes.as_deref().unwrap_or(&[]),
        pod_name,
        &path.child("volumes"),
    );
    errs.extend(verrs);
    errs.extend(containers(
        &spec.containers,
        &vols,
        &path.child("containers"),
    ));
    let init = spec.init_containers.as_deref().unwrap_or(&[]);
    errs.extend(init_containers(
        init,
        &spec.containers,
        &vols,
        &path.child("initContainers"),
    ));
    errs.extend(one_of(
        s(&spec.restart_policy),
        &path.child("restartPolicy"),
        &["Always", "OnFailure", "Never"],
    ));
    errs.extend(one_of(
        s(&spec.dns_policy),
        &path.child("dnsPolicy"),
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    ));
    if s(&spec.dns_policy) == "None" && spec.dns_config.is_none() {
        errs.push(FieldError::required(
            path.child("dnsConfig"),
            "must provide `dnsConfig` when `dnsPolicy` is None",
        ));
    }
    let node_selector = spec
        .node_selector
        .as_ref()
        .map(|m| serde_json::to_value(m).unwrap_or(Value::Null));
    errs.extend(validate_labels(
        node_selector.as_ref(),
        &path.child("nodeSelector"),
    ));
    for (i, s) in spec.image_pull_secrets.iter().flatten().enumerate() {
        if s.name.is_empty() {
            errs.push(FieldError::required(
                path.child("imagePullSecrets").index(i).child("name"),
                "",
            ));
        }
    }
    let sa = s(&spec.service_account_name);
    if !sa.is_empty() {
        for m in names::is_dns1123_subdomain(sa) {
            errs.push(invalid(&path.child("serviceAccountName"), json!(sa), m));
        }
    }
    let node = s(&spec.node_name);
    if !node.is_empty() {
        for m in names::is_dns1123_subdomain(node) {
            errs.push(invalid(&path.child("nodeName"), json!(node), m));
        }
    }
    if let Some(ads) = spec.active_deadline_seconds
        && !(1..=i64::from(i32::MAX)).contains(&ads)
    {
        errs.push(invalid(
            &path.child("activeDeadlineSeconds"),
            json!(ads),
            names::inclusive_range_error(1, i64::from(i32::MAX)),
        ));
    }
    for (field, v) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if !s(v).is_empty() {
            errs.extend(dns_label(s(v), &path.child(field)));
        }
    }
    errs.extend(tolerations(
        spec.tolerations.as_deref().unwrap_or(&[]),
        &path.child("tolerations"),
    ));
    let pcn = s(&spec.priority_class_name);
    if !pcn.is_empty() {
        for m in names::is_dns1123_subdomain(pcn) {
            errs.push(invalid(&path.child("priorityClassName"), json!(pcn), m));
        }
    }
    if let Some(pp) = &spec.preemption_policy
        && !["Never", "PreemptLowerPriority"].contains(&pp.as_str())
    {
        errs.push(FieldError::not_supported(
            path.child("preemptionPolicy"),
            json!(pp),
            &["Never", "PreemptLowerPriority"],
        ));
    }
    errs
}

/// The typed pod, or the decode error as Kubernetes would refuse the body.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    v: &Value,
    kind: &str,
) -> Result<T, FieldError> {
    serde_json::from_value(v.clone()).map_err(|e| {
        FieldError::invalid(
            "",
            Value::Null,
            format!("cannot be handled as a {kind}: {e}"),
        )
    })
}

/// validatePodMetadataAndSpec, plus what only a create checks (`create`).
pub fn validate_pod(pod: &Value, create: bool) -> Vec<FieldError> {
    let metadata = pod.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut errs = meta::validate_object_meta(&metadata, true, names::name_is_dns_subdomain);
    let spec: core::PodSpec = match decode(pod.get("spec").unwrap_or(&json!({})), "Pod") {
        Ok(s) => s,
        Err(e) => {
            errs.push(e);
            return errs;
        }
    };
    let name = metadata["name"].as_str().unwrap_or("");
    let spec_path = Path::new("spec");
    errs.extend(validate_pod_spec(&spec, name, &spec_path));
    if create {
        if spec
            .ephemeral_containers
            .as_ref()
            .is_some_and(|e| !e.is_empty())
        {
            errs.push(FieldError::forbidden(
                spec_path.child("ephemeralContainers"),
                "cannot be set on create",
            ));
        }
        if !s(&spec.node_name).is_empty()
            && spec
                .scheduling_gates
                .as_ref()
                .is_some_and(|g| !g.is_empty())
        {
            errs.push(FieldError::forbidden(
                spec_path.child("nodeName"),
                "cannot be set until all schedulingGates have been cleared",
            ));
        }
    }
    errs
}

//! Pod defaulting (`pkg/apis/core/v1/defaults.go` and the generated defaulters), applied to the
//! JSON object so that fields we do not know survive untouched.

use serde_json::{Map, Value, json};

/// Sets `obj[key] = value` when the key is absent or null; returns the (possibly new) entry.
pub(crate) fn set_default<'a>(
    obj: &'a mut Map<String, Value>,
    key: &str,
    value: Value,
) -> &'a mut Value {
    let slot = obj.entry(key.to_string()).or_insert(Value::Null);
    if slot.is_null() {
        *slot = value;
    }
    slot
}

/// Like [`set_default`], but an empty string also counts as unset (Go's zero value).
pub(crate) fn set_default_str(obj: &mut Map<String, Value>, key: &str, value: &str) {
    let slot = obj.entry(key.to_string()).or_insert(Value::Null);
    if slot.is_null() || slot.as_str() == Some("") {
        *slot = json!(value);
    }
}

fn objects_mut(v: Option<&mut Value>) -> impl Iterator<Item = &mut Map<String, Value>> {
    v.and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// The tag of an image reference, as `parsers.ParseImageName` sees it: `latest` when no tag or
/// digest is given, `None` for a digest-only reference.
fn image_tag(image: &str) -> Option<String> {
    if image.contains('@') {
        // A digest pins the image, so there is no tag and the pull policy is IfNotPresent.
        let before = image.split('@').next().unwrap_or("");
        let last = before.rsplit('/').next().unwrap_or("");
        return last.split_once(':').map(|(_, t)| t.to_string());
    }
    let last = image.rsplit('/').next().unwrap_or("");
    Some(
        last.split_once(':')
            .map_or_else(|| "latest".to_string(), |(_, t)| t.to_string()),
    )
}

/// The default imagePullPolicy for an image: `Always` for `:latest` or no tag, else `IfNotPresent`.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image_tag(image).as_deref() == Some("latest") {
        "Always"
    } else {
        "IfNotPresent"
    }
}

fn default_field_ref(fr: Option<&mut Value>) {
    if let Some(fr) = fr.and_then(Value::as_object_mut) {
        set_default_str(fr, "apiVersion", "v1");
    }
}

fn default_probe(probe: Option<&mut Value>) {
    let Some(p) = probe.and_then(Value::as_object_mut) else {
        return;
    };
    for (k, v) in [
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ] {
        let slot = p.entry(k.to_string()).or_insert(Value::Null);
        if slot.is_null() || slot.as_i64() == Some(0) {
            *slot = json!(v);
        }
    }
    default_http_get(p.get_mut("httpGet"));
}

fn default_http_get(h: Option<&mut Value>) {
    if let Some(h) = h.and_then(Value::as_object_mut) {
        set_default_str(h, "path", "/");
        set_default_str(h, "scheme", "HTTP");
    }
}

/// SetDefaults_Container plus the nested defaulters for ports, env, probes and hooks.
fn default_container(c: &mut Map<String, Value>, host_network: bool) {
    let image = c
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    set_default_str(c, "imagePullPolicy", default_pull_policy(&image));
    set_default_str(c, "terminationMessagePath", "/dev/termination-log");
    set_default_str(c, "terminationMessagePolicy", "File");
    // `resources` is a struct, not a pointer, in Go, so it is always serialised.
    set_default(c, "resources", json!({}));
    for p in objects_mut(c.get_mut("ports")) {
        set_default_str(p, "protocol", "TCP");
        if host_network
            && p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0
            && let Some(cp) = p.get("containerPort").cloned()
        {
            p.insert("hostPort".into(), cp);
        }
    }
    for e in objects_mut(c.get_mut("env")) {
        if let Some(vf) = e.get_mut("valueFrom").and_then(Value::as_object_mut) {
            default_field_ref(vf.get_mut("fieldRef"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        default_probe(c.get_mut(probe));
    }
    if let Some(lc) = c.get_mut("lifecycle").and_then(Value::as_object_mut) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lc.get_mut(hook).and_then(Value::as_object_mut) {
                default_http_get(h.get_mut("httpGet"));
            }
        }
    }
}

/// The volume sources a volume may name; one with none of them becomes an emptyDir.
pub(crate) const VOLUME_SOURCES: &[&str] = &[
    "emptyDir",
    "hostPath",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "cinder",
    "cephfs",
    "quobyte",
    "downwardAPI",
    "fc",
    "flexVolume",
    "configMap",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "storageos",
    "projected",
    "scaleIO",
    "csi",
    "ephemeral",
    "image",
];

fn default_volume(v: &mut Map<String, Value>) {
    // YAML `emptyDir:` arrives as null, which Go decodes as a nil pointer: no source at all.
    if !VOLUME_SOURCES
        .iter()
        .any(|s| v.get(*s).is_some_and(|x| !x.is_null()))
    {
        v.insert("emptyDir".into(), json!({}));
    }
    if let Some(hp) = v.get_mut("hostPath").and_then(Value::as_object_mut) {
        set_default(hp, "type", json!(""));
    }
    for src in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = v.get_mut(src).and_then(Value::as_object_mut) {
            set_default(s, "defaultMode", json!(420));
        }
    }
    if let Some(d) = v.get_mut("downwardAPI").and_then(Value::as_object_mut) {
        for item in objects_mut(d.get_mut("items")) {
            default_field_ref(item.get_mut("fieldRef"));
        }
    }
    if let Some(p) = v.get_mut("projected").and_then(Value::as_object_mut) {
        for src in objects_mut(p.get_mut("sources")) {
            if let Some(d) = src.get_mut("downwardAPI").and_then(Value::as_object_mut) {
                for item in objects_mut(d.get_mut("items")) {
                    default_field_ref(item.get_mut("fieldRef"));
                }
            }
            if let Some(t) = src
                .get_mut("serviceAccountToken")
                .and_then(Value::as_object_mut)
            {
                set_default(t, "expirationSeconds", json!(3600));
            }
        }
    }
    if let Some(ep) = v.get_mut("ephemeral").and_then(Value::as_object_mut)
        && let Some(spec) = ep
            .get_mut("volumeClaimTemplate")
            .and_then(|t| t.get_mut("spec"))
            .and_then(Value::as_object_mut)
    {
        set_default(spec, "volumeMode", json!("Filesystem"));
    }
}

/// SetDefaults_PodSpec and the nested defaulters: what every pod template gets.
pub fn default_pod_spec(spec: &mut Value) {
    let Some(s) = spec.as_object_mut() else {
        return;
    };
    set_default_str(s, "dnsPolicy", "ClusterFirst");
    set_default_str(s, "restartPolicy", "Always");
    set_default(s, "securityContext", json!({}));
    set_default(s, "terminationGracePeriodSeconds", json!(30));
    set_default_str(s, "schedulerName", "default-scheduler");
    // v1 conversion: the deprecated serviceAccount field is an alias of serviceAccountName.
    mirror_service_account(s);
    let host_network = s
        .get("hostNetwork")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    for v in objects_mut(s.get_mut("volumes")) {
        default_volume(v);
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in objects_mut(s.get_mut(list)) {
            default_container(c, host_network && list != "ephemeralContainers");
        }
    }
}

/// Keeps `serviceAccount` and `serviceAccountName` equal, as the v1 conversion does (the new
/// field wins when both are set).
pub(crate) fn mirror_service_account(s: &mut Map<String, Value>) {
    let name = s
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let old = s
        .get("serviceAccount")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if name.is_empty() && !old.is_empty() {
        s.insert("serviceAccountName".into(), json!(old));
    } else if !name.is_empty() {
        s.insert("serviceAccount".into(), json!(name));
    }
}

/// SetDefaults_Pod: requests default to limits, service links on.
fn default_pod_only(spec: &mut Map<String, Value>) {
    for list in ["containers", "initContainers"] {
        for c in objects_mut(spec.get_mut(list)) {
            let Some(res) = c.get_mut("resources").and_then(Value::as_object_mut) else {
                continue;
            };
            let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() else {
                continue;
            };
            let req = set_default(res, "requests", json!({}));
            if let Some(req) = req.as_object_mut() {
                for (k, v) in limits {
                    req.entry(k).or_insert(v);
                }
            }
        }
    }
    set_default(spec, "enableServiceLinks", json!(true));
}

/// Defaults a whole Pod object.
pub fn default_pod(pod: &mut Value) {
    let Some(obj) = pod.as_object_mut() else {
        return;
    };
    let spec = set_default(obj, "spec", json!({}));
    if let Some(s) = spec.as_object_mut() {
        default_pod_only(s);
    }
    default_pod_spec(spec);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_follows_the_tag() {
        let cases = [
            ("alpine", "Always"),
            ("alpine:latest", "Always"),
            ("alpine:3.20", "IfNotPresent"),
            ("localhost:5000/alpine", "Always"),
            ("localhost:5000/alpine:1", "IfNotPresent"),
            ("alpine@sha256:abcd", "IfNotPresent"),
            ("alpine:latest@sha256:abcd", "Always"),
        ];
        for (image, want) in cases {
            assert_eq!(default_pull_policy(image), want, "{image}");
        }
    }

    #[test]
    fn volumes_get_their_defaults() {
        let mut spec = json!({"volumes": [
            {"name": "a", "emptyDir": null},
            {"name": "b", "hostPath": {"path": "/x"}},
            {"name": "c", "secret": {"secretName": "s"}},
            {"name": "d", "downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}},
            {"name": "e", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}},
            {"name": "f", "configMap": {"name": "c", "defaultMode": 256}},
        ], "containers": []});
        default_pod_spec(&mut spec);
        assert_eq!(
            spec["volumes"],
            json!([
                {"name": "a", "emptyDir": {}},
                {"name": "b", "hostPath": {"path": "/x", "type": ""}},
                {"name": "c", "secret": {"secretName": "s", "defaultMode": 420}},
                {"name": "d", "downwardAPI": {"defaultMode": 420, "items": [{"path": "n", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}]}},
                {"name": "e", "projected": {"defaultMode": 420, "sources": [{"serviceAccountToken": {"path": "t", "expirationSeconds": 3600}}]}},
                {"name": "f", "configMap": {"name": "c", "defaultMode": 256}},
            ])
        );
    }

    #[test]
    fn requests_default_to_limits_on_pods_only() {
        let c = json!({"name": "c", "image": "i:1", "resources": {"limits": {"cpu": "1"}, "requests": {"memory": "1Gi"}}});
        let mut pod = json!({"spec": {"containers": [c.clone()]}});
        default_pod(&mut pod);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "1"}, "requests": {"memory": "1Gi", "cpu": "1"}})
        );
        let mut spec = json!({"containers": [c]});
        default_pod_spec(&mut spec);
        assert_eq!(
            spec["containers"][0]["resources"]["requests"],
            json!({"memory": "1Gi"})
        );
        assert_eq!(spec.get("enableServiceLinks"), None);
    }
}

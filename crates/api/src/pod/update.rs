//! What a pod update may change (`ValidatePodUpdate`), and the diff Kubernetes appends when it
//! refuses one.

use crate::field::FieldError;
use crate::pod::validation::decode;
use crate::strategy::path::Path;
use k8s_openapi::api::core::v1 as core;
use serde_json::{Map, Value, json};

/// The text of upstream's refusal, before the diff.
pub const FORBIDDEN_UPDATE: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Removes what Go cannot tell apart from absence: nulls, and empty lists (nil and empty slices
/// are equal to apimachinery's semantic comparison).
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                let n = normalize(x);
                let empty_list = n.as_array().is_some_and(Vec::is_empty);
                if !n.is_null() && !empty_list {
                    out.insert(k.clone(), n);
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

fn list_len(spec: &Value, key: &str) -> usize {
    spec.get(key).and_then(Value::as_array).map_or(0, Vec::len)
}

fn container_updates(new: &Value, old: &Value, key: &str) -> (Vec<FieldError>, bool) {
    let path = Path::new("spec").child(key);
    if list_len(new, key) != list_len(old, key) {
        return (
            vec![FieldError::forbidden(
                &path,
                "pod updates may not add or remove containers",
            )],
            true,
        );
    }
    let mut errs = Vec::new();
    for (i, c) in new
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let image = c["image"].as_str().unwrap_or("");
        if image.is_empty() {
            errs.push(FieldError::required(path.index(i).child("image"), ""));
        }
        if image.trim() != image {
            errs.push(FieldError::invalid(
                path.index(i).child("image"),
                json!(image),
                "must not have leading or trailing whitespace",
            ));
        }
    }
    (errs, false)
}

/// validateOnlyAddedTolerations: each old toleration must still be there (its seconds may change).
fn only_added_tolerations(new: &[core::Toleration], old: &[core::Toleration]) -> Vec<FieldError> {
    let path = Path::new("spec").child("tolerations");
    for o in old {
        let found = new.iter().any(|n| {
            let mut o = o.clone();
            o.toleration_seconds = n.toleration_seconds;
            o == *n
        });
        if !found {
            return vec![FieldError::forbidden(
                &path,
                "existing toleration can not be modified except its tolerationSeconds",
            )];
        }
    }
    Vec::new()
}

/// The update rules for the pod spec; `new` and `old` are the (defaulted) specs.
pub fn validate_spec_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let spec_path = Path::new("spec");
    let mut errs = Vec::new();
    for key in ["containers", "initContainers"] {
        let (e, stop) = container_updates(new, old, key);
        errs.extend(e);
        if stop {
            return errs;
        }
    }
    let ads_path = spec_path.child("activeDeadlineSeconds");
    match (
        new.get("activeDeadlineSeconds").and_then(Value::as_i64),
        old.get("activeDeadlineSeconds").and_then(Value::as_i64),
    ) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(FieldError::invalid(
                &ads_path,
                json!(n),
                crate::strategy::names::inclusive_range_error(0, i64::from(i32::MAX)),
            ));
            return errs;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(FieldError::invalid(
                &ads_path,
                json!(n),
                "must be less than or equal to previous value",
            ));
            return errs;
        }
        (None, Some(_)) => {
            errs.push(FieldError::invalid(
                &ads_path,
                Value::Null,
                "must not update from a positive integer to nil value",
            ));
        }
        _ => {}
    }
    let tol = |v: &Value| -> Vec<core::Toleration> {
        decode(v.get("tolerations").unwrap_or(&json!([])), "Pod").unwrap_or_default()
    };
    errs.extend(only_added_tolerations(&tol(new), &tol(old)));
    let new_gates = new
        .get("schedulingGates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let old_gates = old
        .get("schedulingGates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if new_gates.iter().any(|g| !old_gates.contains(g)) {
        errs.push(FieldError::forbidden(
            spec_path.child("schedulingGates"),
            "only deletion is allowed, but found new scheduling gate '{}'".replace(
                "{}",
                new_gates
                    .iter()
                    .find(|g| !old_gates.contains(g))
                    .and_then(|g| g["name"].as_str())
                    .unwrap_or(""),
            ),
        ));
    }

    let old_n = normalize(old);
    let mut munged = normalize(new);
    if munged == old_n {
        return errs;
    }
    if let Some(m) = munged.as_object_mut() {
        for key in ["containers", "initContainers"] {
            if let (Some(list), Some(olds)) = (
                m.get_mut(key).and_then(Value::as_array_mut),
                old_n.get(key).and_then(Value::as_array),
            ) {
                for (c, o) in list.iter_mut().zip(olds) {
                    if let Some(c) = c.as_object_mut() {
                        match o.get("image") {
                            Some(img) => c.insert("image".into(), img.clone()),
                            None => c.remove("image"),
                        };
                    }
                }
            }
        }
        for key in ["activeDeadlineSeconds", "tolerations", "schedulingGates"] {
            match old_n.get(key) {
                Some(v) => m.insert(key.into(), v.clone()),
                None => m.remove(key),
            };
        }
        let old_grace = old_n
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        let new_grace = m
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
            m.insert("terminationGracePeriodSeconds".into(), json!(old_grace));
        }
    }
    if munged != old_n {
        let diff = diff(&old_n, &munged, "core.PodSpec");
        errs.push(FieldError::forbidden(
            &spec_path,
            format!("{FORBIDDEN_UPDATE}\n{diff}"),
        ));
    }
    errs
}

/// Go's exported field name for a JSON key (`volumeMounts` -> `VolumeMounts`).
fn go_name(key: &str) -> String {
    let mut c = key.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn render(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) | Value::Object(_) => {
            let s = v.to_string();
            if s.len() > 120 {
                format!("{}...", &s[..s.floor_char_boundary(117)])
            } else {
                s
            }
        }
        other => other.to_string(),
    }
}

/// A diff in the shape of go-cmp's report: unchanged lines start with two spaces, removed ones
/// with `- `, added ones with `+ `, runs of equal fields collapse into `... // N identical fields`.
pub fn diff(old: &Value, new: &Value, type_name: &str) -> String {
    let mut out = vec![format!("  {type_name}{{")];
    diff_fields(old, new, 1, &mut out);
    out.push("  }".to_string());
    out.join("\n")
}

fn diff_fields(old: &Value, new: &Value, depth: usize, out: &mut Vec<String>) {
    let empty = Map::new();
    let o = old.as_object().unwrap_or(&empty);
    let n = new.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = o.keys().collect();
    for k in n.keys() {
        if !o.contains_key(k) {
            keys.push(k);
        }
    }
    let mut identical = 0;
    let tabs = "\t".repeat(depth);
    for k in keys {
        let (ov, nv) = (o.get(k), n.get(k));
        if ov == nv {
            identical += 1;
            continue;
        }
        if identical > 0 {
            out.push(format!("  {tabs}... // {identical} identical fields"));
            identical = 0;
        }
        diff_value(&format!("{}: ", go_name(k)), ov, nv, depth, out);
    }
    if identical > 0 {
        out.push(format!("  {tabs}... // {identical} identical fields"));
    }
}

fn diff_value(
    label: &str,
    ov: Option<&Value>,
    nv: Option<&Value>,
    depth: usize,
    out: &mut Vec<String>,
) {
    let tabs = "\t".repeat(depth);
    match (ov, nv) {
        (Some(o @ Value::Object(_)), Some(n @ Value::Object(_))) => {
            out.push(format!("  {tabs}{label}{{"));
            diff_fields(o, n, depth + 1, out);
            out.push(format!("  {tabs}}},"));
        }
        (Some(Value::Array(o)), Some(Value::Array(n))) if o.len() == n.len() => {
            out.push(format!("  {tabs}{label}{{"));
            let inner = "\t".repeat(depth + 1);
            let mut identical = 0;
            for (a, b) in o.iter().zip(n) {
                if a == b {
                    identical += 1;
                    continue;
                }
                if identical > 0 {
                    out.push(format!("  {inner}... // {identical} identical elements"));
                    identical = 0;
                }
                diff_value("", Some(a), Some(b), depth + 1, out);
            }
            if identical > 0 {
                out.push(format!("  {inner}... // {identical} identical elements"));
            }
            out.push(format!("  {tabs}}},"));
        }
        _ => {
            if let Some(o) = ov {
                out.push(format!("- {tabs}{label}{},", render(o)));
            }
            if let Some(n) = nv {
                out.push(format!("+ {tabs}{label}{},", render(n)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Value {
        json!({
            "containers": [{"name": "date", "image": "alpine", "volumeMounts": [{"name": "log-volume", "mountPath": "/var/log"}]}],
            "volumes": [{"name": "log-volume", "emptyDir": {}}],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "tolerations": [{"key": "a", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
        })
    }

    #[test]
    fn allowed_changes_pass() {
        let old = spec();
        let mut new = spec();
        new["containers"][0]["image"] = json!("alpine:3.20");
        new["activeDeadlineSeconds"] = json!(60);
        new["tolerations"][0]["tolerationSeconds"] = json!(10);
        new["tolerations"]
            .as_array_mut()
            .unwrap()
            .push(json!({"key": "b", "operator": "Exists"}));
        assert_eq!(validate_spec_update(&new, &old), vec![]);
    }

    #[test]
    fn volume_change_is_forbidden_with_a_diff() {
        let old = spec();
        let mut new = spec();
        new["volumes"][0]["emptyDir"] = Value::Null;
        new["volumes"][0]["hostPath"] = json!({"path": "/tmp", "type": ""});
        let errs = validate_spec_update(&new, &old);
        assert_eq!(errs.len(), 1);
        let want = format!(
            "spec: Forbidden: {FORBIDDEN_UPDATE}\n  core.PodSpec{{\n  \t... // 4 identical fields\n  \tVolumes: {{\n  \t\t{{\n- \t\t\tEmptyDir: {{}},\n  \t\t\t... // 1 identical fields\n+ \t\t\tHostPath: {{\"path\":\"/tmp\",\"type\":\"\"}},\n  \t\t}},\n  \t}},\n  }}"
        );
        assert_eq!(errs[0].to_string(), want);
    }

    #[test]
    fn removing_a_container_stops_early() {
        let old = spec();
        let mut new = spec();
        new["containers"] = json!([]);
        let errs: Vec<String> = validate_spec_update(&new, &old)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errs,
            ["spec.containers: Forbidden: pod updates may not add or remove containers"]
        );
    }

    #[test]
    fn tolerations_may_only_grow() {
        let old = spec();
        let mut new = spec();
        new["tolerations"] = json!([]);
        let errs: Vec<String> = validate_spec_update(&new, &old)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errs,
            [
                "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"
            ]
        );
    }

    #[test]
    fn deadline_rules() {
        let mut old = spec();
        old["activeDeadlineSeconds"] = json!(30);
        let mut new = old.clone();
        new["activeDeadlineSeconds"] = json!(60);
        let errs: Vec<String> = validate_spec_update(&new, &old)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errs,
            [
                "spec.activeDeadlineSeconds: Invalid value: 60: must be less than or equal to previous value"
            ]
        );
    }
}

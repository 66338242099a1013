//! ConfigMap, Secret and Namespace rules.

use super::names;
use super::path::Path;
use crate::field::FieldError;
use base64::Engine;
use serde_json::{Value, json};

/// Upstream's limit on the data of one ConfigMap or Secret (1 MiB).
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;

const IMMUTABLE_MSG: &str = "field is immutable when `immutable` is set";

fn sorted_keys(v: Option<&Value>) -> Vec<(&str, &Value)> {
    let mut keys: Vec<(&str, &Value)> = v
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    keys
}

/// Secret defaulting: `stringData` merges into `data` (the v1 conversion does this, and the
/// plain text wins), and an unset or empty `type` becomes `Opaque`.
pub fn default_secret(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    if let Some(Value::Object(string_data)) = o.remove("stringData") {
        let data = o.entry("data").or_insert_with(|| json!({}));
        if data.is_null() {
            *data = json!({});
        }
        if let Some(d) = data.as_object_mut() {
            for (k, v) in string_data {
                let text = v.as_str().unwrap_or("");
                d.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(text)),
                );
            }
        }
    }
    let t = o.entry("type").or_insert(Value::Null);
    if t.is_null() || t.as_str() == Some("") {
        *t = json!("Opaque");
    }
}

/// ValidateConfigMap: keys, no key in both data and binaryData, total size.
pub fn validate_config_map(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let data = obj.get("data");
    let binary = obj.get("binaryData");
    let mut total = 0usize;
    for (key, value) in sorted_keys(data) {
        let p = Path::new("data").key(key);
        for m in names::is_config_map_key(key) {
            errs.push(FieldError::invalid(&p, json!(key), m));
        }
        if binary.and_then(|b| b.get(key)).is_some() {
            errs.push(FieldError::invalid(
                &p,
                json!(key),
                "duplicate of key present in binaryData",
            ));
        }
        total += value.as_str().map_or(0, str::len);
    }
    for (key, value) in sorted_keys(binary) {
        let p = Path::new("binaryData").key(key);
        for m in names::is_config_map_key(key) {
            errs.push(FieldError::invalid(&p, json!(key), m));
        }
        if data.and_then(|d| d.get(key)).is_some() {
            errs.push(FieldError::invalid(
                &p,
                json!(key),
                "duplicate of key present in data",
            ));
        }
        total += decoded_len(value);
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("", MAX_SECRET_SIZE));
    }
    errs
}

fn decoded_len(v: &Value) -> usize {
    let s = v.as_str().unwrap_or("");
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_or(s.len(), |b| b.len())
}

fn immutable_rules(new: &Value, old: &Value, data_fields: &[&str]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return errs;
    }
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden("immutable", IMMUTABLE_MSG));
    }
    let empty = json!({});
    for f in data_fields {
        let norm = |v: &Value| {
            v.get(*f)
                .filter(|x| !x.is_null())
                .cloned()
                .unwrap_or_else(|| empty.clone())
        };
        if norm(new) != norm(old) {
            errs.push(FieldError::forbidden(*f, IMMUTABLE_MSG));
        }
    }
    errs
}

/// ValidateConfigMapUpdate: an immutable ConfigMap keeps its data and its immutability.
pub fn validate_config_map_update(new: &Value, old: &Value) -> Vec<FieldError> {
    immutable_rules(new, old, &["data", "binaryData"])
}

/// ValidateSecret: keys, size, and the keys each built-in type requires.
pub fn validate_secret(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let data_path = Path::new("data");
    let data = obj.get("data");
    let mut total = 0usize;
    for (key, value) in sorted_keys(data) {
        for m in names::is_config_map_key(key) {
            errs.push(FieldError::invalid(data_path.key(key), json!(key), m));
        }
        total += decoded_len(value);
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long(&data_path, MAX_SECRET_SIZE));
    }
    let has = |k: &str| data.and_then(|d| d.get(k)).is_some();
    let required = |k: &str| FieldError::required(data_path.key(k), "");
    match obj.get("type").and_then(Value::as_str).unwrap_or("") {
        "kubernetes.io/service-account-token" => {
            let name = obj["metadata"]["annotations"]["kubernetes.io/service-account.name"]
                .as_str()
                .unwrap_or("");
            if name.is_empty() {
                errs.push(FieldError::required(
                    Path::new("metadata")
                        .child("annotations")
                        .key("kubernetes.io/service-account.name"),
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" => errs.extend(json_key(data, ".dockercfg", &data_path)),
        "kubernetes.io/dockerconfigjson" => {
            errs.extend(json_key(data, ".dockerconfigjson", &data_path))
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(required("username"));
            errs.push(required("password"));
        }
        "kubernetes.io/ssh-auth"
            if data
                .and_then(|d| d.get("ssh-privatekey"))
                .is_none_or(|v| decoded_len(v) == 0) =>
        {
            errs.push(required("ssh-privatekey"));
        }
        "kubernetes.io/tls" => {
            if !has("tls.crt") {
                errs.push(required("tls.crt"));
            }
            if !has("tls.key") {
                errs.push(required("tls.key"));
            }
        }
        _ => {}
    }
    errs
}

fn json_key(data: Option<&Value>, key: &str, data_path: &Path) -> Vec<FieldError> {
    let Some(v) = data.and_then(|d| d.get(key)) else {
        return vec![FieldError::required(data_path.key(key), "")];
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or(""))
        .unwrap_or_default();
    match serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes) {
        Ok(_) => Vec::new(),
        Err(e) => vec![FieldError::invalid(
            data_path.key(key),
            json!("<secret contents redacted>"),
            e.to_string(),
        )],
    }
}

/// ValidateSecretUpdate: the type never changes; an immutable Secret keeps its data.
pub fn validate_secret_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let nt = new.get("type").cloned().unwrap_or(json!(""));
    let ot = old.get("type").cloned().unwrap_or(json!(""));
    if nt != ot {
        errs.push(FieldError::invalid("type", nt, "field is immutable"));
    }
    errs.extend(immutable_rules(new, old, &["data"]));
    errs
}

/// ValidateNamespace's spec part: every finalizer a qualified or standard name.
pub fn validate_namespace_spec(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let path = Path::new("spec").child("finalizers");
    for f in obj["spec"]["finalizers"].as_array().into_iter().flatten() {
        let f = f.as_str().unwrap_or("");
        for m in names::is_qualified_name(f) {
            errs.push(FieldError::invalid(&path, json!(f), m));
        }
        if !f.contains('/') && !["kubernetes", "orphan", "foregroundDeletion"].contains(&f) {
            errs.push(FieldError::invalid(
                &path,
                json!(f),
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errs
}

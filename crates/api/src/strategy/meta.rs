//! ObjectMeta validation (apimachinery `pkg/api/validation/objectmeta.go` plus core's finalizer
//! rule), for create and for update.

use super::names;
use super::path::Path;
use crate::field::FieldError;
use serde_json::{Value, json};

/// A name check: `(name, is_generate_name_prefix) -> messages`.
pub type NameFn = fn(&str, bool) -> Vec<String>;

/// Upstream's limit on the total size of all annotation keys and values.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// The finalizers Kubernetes knows without a domain prefix.
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

fn str_of<'a>(meta: &'a Value, key: &str) -> &'a str {
    meta.get(key).and_then(Value::as_str).unwrap_or("")
}

fn sorted_map(v: Option<&Value>) -> Vec<(&str, &str)> {
    let mut out: Vec<(&str, &str)> = match v.and_then(Value::as_object) {
        Some(m) => m
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
            .collect(),
        None => Vec::new(),
    };
    // Go iterates maps in random order; sorting keeps our output stable.
    out.sort();
    out
}

/// ValidateLabels: every key a qualified name, every value a label value.
pub fn validate_labels(labels: Option<&Value>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in sorted_map(labels) {
        for msg in names::is_qualified_name(k) {
            errs.push(FieldError::invalid(path.as_str(), json!(k), msg));
        }
        for msg in names::is_valid_label_value(v) {
            errs.push(FieldError::invalid(path.as_str(), json!(v), msg));
        }
    }
    errs
}

/// ValidateAnnotations: keys are qualified names (case-insensitive), total size limited.
pub fn validate_annotations(annotations: Option<&Value>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut size = 0usize;
    for (k, v) in sorted_map(annotations) {
        for msg in names::is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path.as_str(), json!(k), msg));
        }
        size += k.len() + v.len();
    }
    if size > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(
            path.as_str(),
            TOTAL_ANNOTATION_SIZE_LIMIT,
        ));
    }
    errs
}

fn validate_owner_references(refs: Option<&Value>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for r in refs.and_then(Value::as_array).into_iter().flatten() {
        let api_version = str_of(r, "apiVersion");
        let version = api_version.rsplit('/').next().unwrap_or("");
        if version.is_empty() {
            errs.push(FieldError::invalid(
                path.child("apiVersion").as_str(),
                json!(api_version),
                "version must not be empty",
            ));
        }
        for key in ["kind", "name", "uid"] {
            let v = str_of(r, key);
            if v.is_empty() {
                errs.push(FieldError::invalid(
                    path.child(key).as_str(),
                    json!(v),
                    "must not be empty",
                ));
            }
        }
    }
    errs
}

fn validate_finalizers(finalizers: Option<&Value>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let list: Vec<&str> = finalizers
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for f in &list {
        for msg in names::is_qualified_name(f) {
            errs.push(FieldError::invalid(path.as_str(), json!(f), msg));
        }
    }
    if list.contains(&"orphan") && list.contains(&"foregroundDeletion") {
        errs.push(FieldError::invalid(
            path.as_str(),
            json!(list),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    for (i, f) in list.iter().enumerate() {
        if !f.contains('/') && !STANDARD_FINALIZERS.contains(f) {
            errs.push(FieldError::invalid(
                path.index(i).as_str(),
                json!(f),
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errs
}

/// ValidateObjectMeta for a new object: name or generateName, namespace, labels, annotations,
/// owner references and finalizers.
pub fn validate_object_meta(
    meta: &Value,
    requires_namespace: bool,
    name_fn: NameFn,
) -> Vec<FieldError> {
    let path = Path::new("metadata");
    let mut errs = Vec::new();
    let generate_name = str_of(meta, "generateName");
    if !generate_name.is_empty() {
        for msg in name_fn(generate_name, true) {
            errs.push(FieldError::invalid(
                path.child("generateName").as_str(),
                json!(generate_name),
                msg,
            ));
        }
    }
    let name = str_of(meta, "name");
    if name.is_empty() {
        errs.push(FieldError::required(
            path.child("name").as_str(),
            "name or generateName is required",
        ));
    } else {
        for msg in name_fn(name, false) {
            errs.push(FieldError::invalid(
                path.child("name").as_str(),
                json!(name),
                msg,
            ));
        }
    }
    let namespace = str_of(meta, "namespace");
    if requires_namespace {
        if namespace.is_empty() {
            errs.push(FieldError::required(path.child("namespace").as_str(), ""));
        } else {
            for msg in names::name_is_dns_label(namespace, false) {
                errs.push(FieldError::invalid(
                    path.child("namespace").as_str(),
                    json!(namespace),
                    msg,
                ));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            path.child("namespace").as_str(),
            "not allowed on this type",
        ));
    }
    if let Some(g) = meta.get("generation").and_then(Value::as_i64)
        && g < 0
    {
        errs.push(FieldError::invalid(
            path.child("generation").as_str(),
            json!(g),
            "must be greater than or equal to 0",
        ));
    }
    errs.extend(validate_labels(meta.get("labels"), &path.child("labels")));
    errs.extend(validate_annotations(
        meta.get("annotations"),
        &path.child("annotations"),
    ));
    errs.extend(validate_owner_references(
        meta.get("ownerReferences"),
        &path.child("ownerReferences"),
    ));
    errs.extend(validate_finalizers(
        meta.get("finalizers"),
        &path.child("finalizers"),
    ));
    errs
}

/// ValidateObjectMetaUpdate: identity fields are immutable, labels and annotations stay valid.
///
/// The resourceVersion precondition is left to the API server, which fills it in for
/// unconditional updates before comparing.
pub fn validate_object_meta_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let path = Path::new("metadata");
    let mut errs = Vec::new();
    if old.get("deletionTimestamp").is_some_and(|v| !v.is_null()) {
        let old_f: Vec<&Value> = old
            .get("finalizers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        let mut added: Vec<&str> = new
            .get("finalizers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|f| !old_f.contains(f))
            .filter_map(Value::as_str)
            .collect();
        if !added.is_empty() {
            // Kubernetes reports the set once, sorted, printed with Go's %#v.
            added.sort_unstable();
            added.dedup();
            errs.push(FieldError::forbidden(
                path.child("finalizers").as_str(),
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                    go_string_slice(&added)
                ),
            ));
        }
    }
    let new_gen = new.get("generation").and_then(Value::as_i64).unwrap_or(0);
    let old_gen = old.get("generation").and_then(Value::as_i64).unwrap_or(0);
    if new_gen < old_gen {
        errs.push(FieldError::invalid(
            path.child("generation").as_str(),
            json!(new_gen),
            "must not be decremented",
        ));
    }
    for key in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        let n = new.get(key).unwrap_or(&Value::Null);
        let o = old.get(key).unwrap_or(&Value::Null);
        let empty = |v: &Value| v.is_null() || v.as_str() == Some("");
        if n != o && !(empty(n) && empty(o)) {
            let shown = if n.is_null() && matches!(key, "name" | "namespace" | "uid") {
                json!("")
            } else {
                n.clone()
            };
            errs.push(FieldError::invalid(
                path.child(key).as_str(),
                shown,
                "field is immutable",
            ));
        }
    }
    errs.extend(validate_labels(new.get("labels"), &path.child("labels")));
    errs.extend(validate_annotations(
        new.get("annotations"),
        &path.child("annotations"),
    ));
    errs.extend(validate_owner_references(
        new.get("ownerReferences"),
        &path.child("ownerReferences"),
    ));
    errs
}

/// Renders strings as Go's `%v` of a `[]string`: `[a b]`.
/// A string slice as Go's `%#v` prints it: `[]string{"a", "b"}`.
fn go_string_slice(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn name_or_generate_name_is_required() {
        let errs = validate_object_meta(
            &json!({"namespace": "default"}),
            true,
            names::name_is_dns_subdomain,
        );
        assert_eq!(
            render(&errs),
            ["metadata.name: Required value: name or generateName is required"]
        );
    }

    #[test]
    fn namespace_rules() {
        let errs = validate_object_meta(&json!({"name": "a"}), true, names::name_is_dns_subdomain);
        assert_eq!(render(&errs), ["metadata.namespace: Required value"]);
        let errs = validate_object_meta(
            &json!({"name": "a", "namespace": "x"}),
            false,
            names::name_is_dns_label,
        );
        assert_eq!(
            render(&errs),
            ["metadata.namespace: Forbidden: not allowed on this type"]
        );
    }

    #[test]
    fn labels_and_annotations() {
        let meta = json!({"name": "a", "namespace": "d", "labels": {"a b": "ok", "app": "-bad"}, "annotations": {"Example.com/X": "y"}});
        let errs = validate_object_meta(&meta, true, names::name_is_dns_subdomain);
        assert_eq!(
            render(&errs),
            [
                "metadata.labels: Invalid value: \"a b\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                "metadata.labels: Invalid value: \"-bad\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ]
        );
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        let errs =
            validate_annotations(Some(&json!({"a": big})), &Path::new("metadata.annotations"));
        assert_eq!(
            render(&errs),
            ["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
    }

    #[test]
    fn identity_fields_are_immutable() {
        let old = json!({"name": "a", "namespace": "d", "uid": "1"});
        let new = json!({"name": "b", "namespace": "d", "uid": "2"});
        assert_eq!(
            render(&validate_object_meta_update(&new, &old)),
            [
                "metadata.name: Invalid value: \"b\": field is immutable",
                "metadata.uid: Invalid value: \"2\": field is immutable"
            ]
        );
    }

    #[test]
    fn unknown_bare_finalizer() {
        let meta = json!({"name": "a", "finalizers": ["kubernetes", "mine"]});
        assert_eq!(
            render(&validate_object_meta(
                &meta,
                false,
                names::name_is_dns_label
            )),
            [
                "metadata.finalizers[1]: Invalid value: \"mine\": name is neither a standard finalizer name nor is it fully qualified"
            ]
        );
    }
}

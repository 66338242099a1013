//! Parsing what a request asks for: which resource (from the path), its options (from the
//! query) and its object (from the body, as JSON, YAML or protobuf).

use crate::error::{ApiError, ApiResult};
use api::field::{ErrorType, FieldError};
use api::registry::{self, Resource};
use axum::http::HeaderMap;
use percent_encoding::percent_decode_str;
use serde_json::Value;

/// Request bodies above this size are refused with 413, as kube-apiserver does (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// What a resource path names.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resource.
    pub resource: &'static Resource,
    /// The namespace from the path (`None` for cluster-scoped resources and all-namespace lists).
    pub namespace: Option<String>,
    /// The object's name, for item paths.
    pub name: Option<String>,
    /// The subresource (`status`, `binding`, `log`, ...).
    pub subresource: Option<String>,
}

/// Parses `/api/v1/...` or `/apis/<group>/<version>/...` into a [`Target`].
/// `None` when the path names nothing we serve.
pub fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let rest: Vec<String> = rest
        .iter()
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let find = |plural: &str| registry::find(group, version, plural);
    // `namespaces/<ns>/<plural>...` is a namespaced path unless <plural> is a namespace subresource.
    if rest.len() >= 3
        && rest[0] == "namespaces"
        && let Some(r) = find(&rest[2]).filter(|r| r.namespaced)
    {
        return item(r, Some(rest[1].clone()), &rest[3..]);
    }
    let (first, tail) = rest.split_first()?;
    let r = find(first)?;
    item(r, None, tail)
}

fn item(resource: &'static Resource, namespace: Option<String>, tail: &[String]) -> Option<Target> {
    let (name, subresource) = match tail {
        [] => (None, None),
        [name] => (Some(name.clone()), None),
        [name, sub] if resource.subresources.contains(&sub.as_str()) => {
            (Some(name.clone()), Some(sub.clone()))
        }
        _ => return None,
    };
    if name.as_deref() == Some("") {
        return None;
    }
    Some(Target {
        resource,
        namespace,
        name,
        subresource,
    })
}

/// The query string's parameters, in order (repeated keys kept: exec's `command`).
#[derive(Debug, Default, Clone)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    /// Parses `a=b&c=d` with percent-decoding and `+` as space.
    pub fn parse(raw: Option<&str>) -> Query {
        let decode = |s: &str| {
            percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (decode(k), decode(v)),
                None => (decode(p), String::new()),
            })
            .collect();
        Query(pairs)
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A boolean flag (`true` or `1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true") | Some("1"))
    }

    /// A non-empty value of `key`.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// An integer parameter; a malformed one is a 400.
    pub fn int(&self, key: &str) -> ApiResult<Option<i64>> {
        match self.non_empty(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid value for {key}: {v:?}: must be an integer"
                ))
            }),
        }
    }

    /// `dryRun=All`; any other value is an `Unsupported value` error on `dryRun`.
    pub fn dry_run(&self) -> Result<bool, FieldError> {
        let values = self.all("dryRun");
        if values.iter().any(|v| v != "All") {
            let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
            // Kubernetes prints the whole list with Go's %#v.
            let detail = format!(
                "[]string{{{}}}: supported values: \"All\"",
                quoted.join(", ")
            );
            return Err(FieldError::new(
                ErrorType::NotSupported,
                "dryRun",
                Value::Null,
                detail,
            ));
        }
        Ok(!values.is_empty())
    }

    /// The `fieldValidation` directive (default Warn, as kube-apiserver's).
    pub fn field_validation(&self) -> Result<FieldValidation, FieldError> {
        match self.get("fieldValidation").unwrap_or("") {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Strict" => Ok(FieldValidation::Strict),
            "Ignore" => Ok(FieldValidation::Ignore),
            other => Err(FieldError::not_supported(
                "fieldValidation",
                Value::String(other.to_string()),
                &["", "Ignore", "Strict", "Warn"],
            )),
        }
    }
}

/// How unknown fields in a request body are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Refuse the request (400).
    Strict,
    /// Accept it and warn in a `Warning` header.
    Warn,
    /// Accept it silently.
    Ignore,
}

/// The media type of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    /// `application/json`
    Json,
    /// `application/yaml`
    Yaml,
    /// `application/vnd.kubernetes.protobuf`
    Protobuf,
    /// `application/json-patch+json`
    JsonPatch,
    /// `application/merge-patch+json`
    MergePatch,
    /// `application/strategic-merge-patch+json`
    StrategicMergePatch,
    /// `application/apply-patch+yaml`
    ApplyPatch,
}

/// The body's media type from its `Content-Type` (JSON when absent).
pub fn body_type(headers: &HeaderMap) -> ApiResult<BodyType> {
    let raw = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let mime = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Ok(match mime.as_str() {
        "" | "application/json" | "*/*" => BodyType::Json,
        "application/yaml" | "application/x-yaml" | "text/yaml" => BodyType::Yaml,
        "application/vnd.kubernetes.protobuf" => BodyType::Protobuf,
        "application/json-patch+json" => BodyType::JsonPatch,
        "application/merge-patch+json" => BodyType::MergePatch,
        "application/strategic-merge-patch+json" => BodyType::StrategicMergePatch,
        "application/apply-patch+yaml" => BodyType::ApplyPatch,
        _ => return Err(ApiError::unsupported_media_type(raw)),
    })
}

/// Decodes a body of `kind` into a JSON value. JSON's own nesting limit (128) and the YAML
/// parser's budget (depth, nodes, alias expansion) refuse hostile inputs before they cost memory.
pub fn decode_body(bytes: &[u8], kind: BodyType) -> ApiResult<Value> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    match kind {
        BodyType::Protobuf => api::protobuf::decode(bytes)
            .map_err(|e| ApiError::unsupported_media_type(&format!("protobuf: {e}"))),
        BodyType::Yaml | BodyType::ApplyPatch => {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| ApiError::bad_request("the request body is not valid UTF-8"))?;
            serde_saphyr::from_str::<Value>(text).map_err(|e| {
                ApiError::bad_request(format!(
                    "error decoding YAML: {}",
                    first_line(&e.to_string())
                ))
            })
        }
        _ => serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(json_error(&e))),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn json_error(e: &serde_json::Error) -> String {
    format!("json: cannot unmarshal the request body: {e}")
}

/// Whether the client asked for a server-side Table (`as=Table;g=meta.k8s.io`).
pub fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let t = parse_path("/api/v1/namespaces/default/pods/date-tail").unwrap();
        assert_eq!(
            (t.resource.plural, t.namespace.as_deref(), t.name.as_deref()),
            ("pods", Some("default"), Some("date-tail"))
        );
        let t = parse_path("/api/v1/namespaces/default/pods/x/log").unwrap();
        assert_eq!(t.subresource.as_deref(), Some("log"));
        let t = parse_path("/api/v1/namespaces/kube-system").unwrap();
        assert_eq!(
            (t.resource.plural, t.name.as_deref()),
            ("namespaces", Some("kube-system"))
        );
        let t = parse_path("/api/v1/namespaces/x/status").unwrap();
        assert_eq!(
            (t.resource.plural, t.subresource.as_deref()),
            ("namespaces", Some("status"))
        );
        let t = parse_path("/api/v1/pods").unwrap();
        assert_eq!(
            (t.resource.plural, t.namespace, t.name),
            ("pods", None, None)
        );
        let t = parse_path("/apis/apps/v1/namespaces/a/deployments").unwrap();
        assert_eq!(t.resource.kind, "Deployment");
        assert!(parse_path("/api/v1/nothing").is_none());
        assert!(parse_path("/api/v1/namespaces/a/pods/x/nosuchsub").is_none());
    }

    #[test]
    fn query() {
        let q = Query::parse(Some(
            "command=ls&command=%2Fdir&watch=1&labelSelector=a%3Db",
        ));
        assert_eq!(q.all("command"), vec!["ls", "/dir"]);
        assert!(q.flag("watch"));
        assert_eq!(q.get("labelSelector"), Some("a=b"));
    }
}

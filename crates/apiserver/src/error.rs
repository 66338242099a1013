//! Errors leave the server as `metav1.Status`, built here and only here, with Kubernetes' reason,
//! code and message.

use api::field::{FieldError, aggregate};
use api::registry::Resource;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error reply: a `Status` object with its HTTP code.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status code (also `.code` in the body).
    pub code: StatusCode,
    /// Kubernetes' reason (`NotFound`, `Invalid`, ...).
    pub reason: &'static str,
    /// The human message kubectl prints.
    pub message: String,
    /// `Status.details`, when the error names an object.
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    }

    /// 403 Forbidden with Kubernetes' message shape.
    pub fn forbidden(r: &Resource, name: &str, why: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("{} \"{name}\" is forbidden: {why}", r.qualified_plural()),
        )
        .with_details(details(r, name))
    }

    /// 404 for an object: `pods "nope" not found`.
    pub fn not_found(r: &Resource, name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} \"{name}\" not found", r.qualified_plural()),
        )
        .with_details(details(r, name))
    }

    /// 404 for a path the server does not serve.
    pub fn no_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    /// 405 for a verb a resource does not support.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
        .with_details(json!({}))
    }

    /// 409 AlreadyExists.
    pub fn already_exists(r: &Resource, name: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", r.qualified_plural()),
        )
        .with_details(details(r, name))
    }

    /// 409 Conflict for a stale resourceVersion.
    pub fn conflict(r: &Resource, name: &str) -> Self {
        Self::conflict_because(
            r,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 Conflict with a reason of our own.
    pub fn conflict_because(r: &Resource, name: &str, why: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                r.qualified_plural()
            ),
        )
        .with_details(details(r, name))
    }

    /// 409 Conflict whose message is given whole (server-side apply conflicts).
    pub fn conflict_message(message: String, details: Value) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message).with_details(details)
    }

    /// 410 Expired: a watch or list from a compacted revision.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "Expired", message)
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
        )
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"
            ),
        )
    }

    /// 406 NotAcceptable.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_ACCEPTABLE, "NotAcceptable", message)
    }

    /// 422 Invalid: `Pod "x" is invalid: spec.volumes[1].name: Duplicate value: "log-volume"`.
    pub fn invalid(r: &Resource, name: &str, errors: &[FieldError]) -> Self {
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.kind.reason(), "message": e.body(), "field": e.field}))
            .collect();
        let mut d = json!({"name": name, "kind": r.kind, "causes": causes});
        if !r.group.is_empty() {
            d["group"] = json!(r.group);
        }
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("{} \"{name}\" is invalid: {}", r.kind, aggregate(errors)),
        )
        .with_details(d)
    }

    /// 422 Invalid for a request's options, which have no name:
    /// `DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: ...`.
    pub fn invalid_options(kind: &str, errors: &[FieldError]) -> Self {
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.kind.reason(), "message": e.body(), "field": e.field}))
            .collect();
        let d = json!({"group": "meta.k8s.io", "kind": kind, "causes": causes});
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("{kind}.meta.k8s.io \"\" is invalid: {}", aggregate(errors)),
        )
        .with_details(d)
    }

    /// 409 Conflict from a failed delete precondition. Kubernetes' BeforeDelete names the kind
    /// here, not the resource: `Operation cannot be fulfilled on ConfigMap "x": ...`.
    pub fn precondition_failed(r: &Resource, name: &str, why: &str) -> Self {
        let mut d = json!({"name": name, "kind": r.kind});
        let what = if r.group.is_empty() {
            r.kind.to_string()
        } else {
            d["group"] = json!(r.group);
            format!("{}.{}", r.kind, r.group)
        };
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("Operation cannot be fulfilled on {what} \"{name}\": {why}"),
        )
        .with_details(d)
    }

    /// 409 Conflict on a subresource: `Operation cannot be fulfilled on pods/binding "p": ...`.
    pub fn subresource_conflict(r: &Resource, sub: &str, name: &str, why: &str) -> Self {
        let resource = format!("{}/{sub}", r.plural);
        let mut d = json!({"name": name, "kind": resource});
        let what = if r.group.is_empty() {
            resource
        } else {
            d["group"] = json!(r.group);
            format!("{resource}.{}", r.group)
        };
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("Operation cannot be fulfilled on {what} \"{name}\": {why}"),
        )
        .with_details(d)
    }

    /// 422 for a patch that cannot be applied.
    pub fn invalid_patch(message: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            message.to_string(),
        )
    }

    /// 500 InternalError.
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("Internal error occurred: {message}"),
        )
    }

    /// 503 ServiceUnavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            message,
        )
    }

    /// The `Status` object.
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code.as_u16(),
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

/// `Status.details` naming one object of a resource.
pub fn details(r: &Resource, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": r.plural});
    if !r.group.is_empty() {
        d["group"] = json!(r.group);
    }
    d
}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::Compacted {
                requested,
                compacted,
            } => ApiError::expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            store::Error::Unavailable(source) => {
                ApiError::unavailable(format!("storage is unavailable: {source}"))
            }
            other => ApiError::internal(error_chain(&other)),
        }
    }
}

/// An error and its sources, joined with ": ".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.status()).unwrap_or_default();
        let mut resp = (self.code, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

/// A handler result.
pub type ApiResult<T> = std::result::Result<T, ApiError>;

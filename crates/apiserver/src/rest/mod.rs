//! The REST verbs, written once for every kind: each file holds one verb and calls the kind's
//! strategy (`api::strategy`) for what differs. [`dispatch`] maps a method and a path to a verb.

mod create;
mod delete;
mod get;
mod list;
mod patch;
pub mod proxy;
mod subresource;
mod update;
mod watch;

pub use delete::delete_object;

use crate::error::{ApiError, ApiResult};
use crate::objects::Objects;
use crate::request::{self, Query, Target};
use crate::server::State;
use crate::table;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::Arc;

/// One request to a resource path, parsed.
pub struct Call {
    /// The server's shared state.
    pub state: Arc<State>,
    /// What the path names.
    pub target: Target,
    /// The query parameters.
    pub query: Query,
    /// The request headers.
    pub headers: HeaderMap,
    /// The request body (empty for GET and most DELETEs).
    pub body: bytes::Bytes,
    /// The HTTP method.
    pub method: Method,
}

impl Call {
    /// The objects store.
    pub fn objects(&self) -> &Objects {
        &self.state.objects
    }

    /// The namespace of the path, as the store keys it.
    pub fn ns(&self) -> Option<&str> {
        self.target.namespace.as_deref()
    }

    /// The object name of an item path.
    pub fn name(&self) -> ApiResult<&str> {
        self.target
            .name
            .as_deref()
            .ok_or_else(ApiError::method_not_allowed)
    }

    /// The field manager: the `fieldManager` parameter, or the client's user agent up to its first `/`.
    fn field_manager(&self) -> &str {
        if let Some(m) = self.query.non_empty("fieldManager") {
            return m;
        }
        let agent = self
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown");
        agent.split('/').next().unwrap_or("unknown")
    }

    /// The field manager and the subresource this request writes through.
    pub fn writer(&self) -> api::patch::Writer<'_> {
        api::patch::Writer {
            manager: self.field_manager(),
            subresource: self.target.subresource.as_deref(),
        }
    }

    /// The options kind this verb takes (`CreateOptions`, ...), as validation errors name it.
    pub fn options_kind(&self) -> &'static str {
        match self.method {
            Method::POST => "CreateOptions",
            Method::PUT => "UpdateOptions",
            Method::PATCH => "PatchOptions",
            Method::DELETE => "DeleteOptions",
            _ => "GetOptions",
        }
    }

    /// `dryRun=All`; any other value is 422 as Kubernetes answers it.
    pub fn dry_run(&self) -> ApiResult<bool> {
        self.query
            .dry_run()
            .map_err(|e| ApiError::invalid_options(self.options_kind(), &[e]))
    }

    /// The `fieldValidation` directive (default Warn); an unknown value is 422.
    pub fn field_validation(&self) -> ApiResult<request::FieldValidation> {
        self.query
            .field_validation()
            .map_err(|e| ApiError::invalid_options(self.options_kind(), &[e]))
    }

    /// Whether this is a server-side apply, whose managed fields the apply itself records.
    pub fn is_apply(&self) -> bool {
        matches!(
            request::body_type(&self.headers),
            Ok(request::BodyType::ApplyPatch)
        )
    }

    /// Records the field manager's ownership of what this write changed (ordinary writes only).
    pub fn record_manager(&self, old: Option<&Value>, new: &mut Value, now: &str) {
        if !self.is_apply() {
            api::patch::record_update(old, new, self.writer(), self.target.resource, now);
        }
    }

    /// A reply holding `obj` (or its Table, when the client asked for one).
    pub fn reply(&self, code: StatusCode, obj: &Value) -> Response {
        if request::wants_table(&self.headers) {
            let t = table::table(
                self.target.resource,
                std::slice::from_ref(obj),
                None,
                &self.query,
            );
            return json_response(code, &t, TABLE_CONTENT_TYPE);
        }
        json_response(code, obj, "application/json")
    }
}

/// The content type of a server-side Table.
pub const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// A JSON reply.
pub fn json_response(code: StatusCode, body: &Value, content_type: &'static str) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = (code, bytes).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Adds `Warning: 299 - "<text>"` headers, as kube-apiserver reports accepted-but-dubious input.
pub fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {}", serde_json::Value::String(w.clone()));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

/// Runs the verb that `method` and the path name.
pub async fn dispatch(call: Call) -> Response {
    let method = call.method.clone();
    let result = match (
        &method,
        call.target.name.is_some(),
        call.target.subresource.as_deref(),
    ) {
        (&Method::GET, false, None) if call.query.flag("watch") => watch::watch(&call).await,
        (&Method::GET, false, None) => list::list(&call).await,
        (&Method::POST, false, None) => create::create(&call).await,
        (&Method::DELETE, false, None) => delete::delete_collection(&call).await,
        (&Method::GET, true, None | Some("status")) => get::get(&call).await,
        (&Method::PUT, true, None | Some("status") | Some("finalize")) => {
            update::update(&call).await
        }
        (&Method::PATCH, true, None | Some("status")) => patch::patch(&call).await,
        (&Method::DELETE, true, None) => delete::delete(&call).await,
        (_, true, Some(sub)) => subresource::handle(&call, &method, sub).await,
        _ => Err(ApiError::method_not_allowed()),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

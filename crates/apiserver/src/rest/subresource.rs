//! Subresources other than `status`: `pods/binding` (what a scheduler writes) and
//! `pods/eviction`. The streaming ones (`log`, `exec`, `attach`, `portforward`) belong to the
//! node agent.

use super::Call;
use super::delete::{DeleteOptions, Deleted, delete_object};
use crate::error::{ApiError, ApiResult};
use crate::request;
use crate::time;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

/// Serves `sub` of the target object.
pub async fn handle(call: &Call, method: &Method, sub: &str) -> ApiResult<Response> {
    match (method, sub) {
        (&Method::POST, "binding") => bind(call).await,
        (&Method::POST, "eviction") => evict(call).await,
        (&Method::GET | &Method::POST, "log" | "exec" | "attach" | "portforward") => {
            super::proxy::handle(call, method, sub).await
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// Assigns a Pod to a node, once: `spec.nodeName` and the PodScheduled condition.
async fn bind(call: &Call) -> ApiResult<Response> {
    let r = call.target.resource;
    let name = call.name()?;
    let binding = request::decode_body(&call.body, request::body_type(&call.headers)?)?;
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            r,
            name,
            &[api::field::FieldError::required("target.name", "")],
        ));
    }
    let old = call.objects().get(r, call.ns(), name).await?;
    if old.pointer("/metadata/deletionTimestamp").is_some() {
        // BindingREST reports these as conflicts on pods/binding.
        return Err(ApiError::subresource_conflict(
            r,
            "binding",
            name,
            &format!("pod {name} is being deleted, cannot be assigned to a host"),
        ));
    }
    if let Some(current) = old
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        // BindingREST reports these as conflicts on pods/binding.
        return Err(ApiError::subresource_conflict(
            r,
            "binding",
            name,
            &format!("pod {name} is already assigned to node {current:?}"),
        ));
    }
    let mut new = old.clone();
    new["spec"]["nodeName"] = json!(node);
    let conditions = new["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut conditions: Vec<Value> = conditions
        .into_iter()
        .filter(|c| c["type"] != "PodScheduled")
        .collect();
    conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": time::now()}));
    new["status"]["conditions"] = json!(conditions);
    // Binding sets spec.nodeName once and the condition with it: a system write that neither
    // update path would let a client make, so it goes to the store directly.
    let expected = crate::objects::revision_of(&old)
        .ok_or_else(|| ApiError::internal("stored pod has no resourceVersion"))?;
    call.objects().update(r, new, expected).await?;
    let reply = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    Ok(super::json_response(
        StatusCode::CREATED,
        &reply,
        "application/json",
    ))
}

/// Deletes a Pod as an Eviction asks (no disruption budgets exist here to refuse it).
async fn evict(call: &Call) -> ApiResult<Response> {
    let eviction = request::decode_body(&call.body, request::body_type(&call.headers)?)?;
    let opts = DeleteOptions {
        grace_period: eviction
            .pointer("/deleteOptions/gracePeriodSeconds")
            .and_then(Value::as_i64),
        ..Default::default()
    };
    match delete_object(
        call.objects(),
        call.target.resource,
        call.ns(),
        call.name()?,
        &opts,
    )
    .await?
    {
        Deleted::Pending(_) | Deleted::Gone(_) => {
            let reply = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
            Ok(super::json_response(
                StatusCode::CREATED,
                &reply,
                "application/json",
            ))
        }
    }
}

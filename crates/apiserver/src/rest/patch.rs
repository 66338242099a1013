//! PATCH of an object (or its `status`) in the four patch types: JSON patch (RFC 6902), merge
//! patch (RFC 7386), strategic merge patch and server-side apply. Apply creates the object when
//! it does not exist (not through `status`).

use super::create::{checked_body, create_object};
use super::update::retry_update;
use super::{Call, with_warnings};
use crate::error::{ApiError, ApiResult};
use crate::request::{self, BodyType};
use crate::time;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

/// Patches an object.
pub async fn patch(call: &Call) -> ApiResult<Response> {
    let r = call.target.resource;
    let name = call.name()?.to_string();
    let kind = request::body_type(&call.headers)?;
    let patch = match kind {
        BodyType::JsonPatch
        | BodyType::MergePatch
        | BodyType::StrategicMergePatch
        | BodyType::ApplyPatch => request::decode_body(&call.body, kind)?,
        _ => {
            let ct = call
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            return Err(ApiError::unsupported_media_type(ct));
        }
    };
    let mut patch = patch;
    if kind == BodyType::ApplyPatch {
        // A null in an apply configuration means "not set" (YAML's `emptyDir:`), not a value to own.
        strip_nulls(&mut patch);
        if call.query.non_empty("fieldManager").is_none() {
            return Err(ApiError::bad_request(
                "PATCH, application/apply-patch+yaml requests must have a fieldManager",
            ));
        }
        // Only the object itself is created so; a subresource of a missing one is not found.
        if call.target.subresource.is_none()
            && call.objects().try_get(r, call.ns(), &name).await?.is_none()
        {
            let (obj, warnings) = checked_body(call, patch.clone())?;
            let now = time::now();
            let applied = api::patch::apply(None, &obj, call.writer(), true, r, &now)
                .map_err(|e| apply_error(r, &name, e))?;
            let created = create_object(call, applied).await?;
            return Ok(with_warnings(
                call.reply(StatusCode::CREATED, &created),
                &warnings,
            ));
        }
    }
    let mut warnings = Vec::new();
    let saved = retry_update(call, |old| {
        let patched = apply_patch(call, kind, old, &patch, &name)?;
        let (checked, w) = checked_body(call, patched)?;
        warnings = w;
        Ok(checked)
    })
    .await?;
    Ok(with_warnings(call.reply(StatusCode::OK, &saved), &warnings))
}

fn apply_patch(
    call: &Call,
    kind: BodyType,
    old: &Value,
    patch: &Value,
    name: &str,
) -> ApiResult<Value> {
    let r = call.target.resource;
    let mut doc = old.clone();
    match kind {
        BodyType::JsonPatch => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| {
                ApiError::bad_request(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
            json_patch::patch(&mut doc, &ops)
                .map_err(|e| ApiError::invalid_patch(&e.to_string()))?;
        }
        BodyType::MergePatch => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "the request body must be a JSON object",
                ));
            }
            json_patch::merge(&mut doc, patch);
        }
        BodyType::StrategicMergePatch => {
            doc = api::patch::strategic_merge(old, patch, r).map_err(|e| match e.code() {
                400 => ApiError::bad_request(e.to_string()),
                422 => ApiError::invalid_patch(&e.to_string()),
                _ => ApiError::internal(e),
            })?;
        }
        BodyType::ApplyPatch => {
            let force = call.query.flag("force");
            let now = time::now();
            doc = api::patch::apply(Some(old), patch, call.writer(), force, r, &now)
                .map_err(|e| apply_error(r, name, e))?;
        }
        _ => return Err(ApiError::unsupported_media_type("")),
    }
    // The patch result keeps the stored resourceVersion unless the patch set one (a precondition).
    if patch.pointer("/metadata/resourceVersion").is_none()
        && let (Some(meta), Some(rv)) = (
            doc.get_mut("metadata").and_then(Value::as_object_mut),
            old.pointer("/metadata/resourceVersion"),
        )
    {
        meta.insert("resourceVersion".into(), rv.clone());
    }
    Ok(doc)
}

fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, x| !x.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn apply_error(r: &api::registry::Resource, name: &str, e: api::patch::ApplyError) -> ApiError {
    match e {
        api::patch::ApplyError::Conflicts(conflicts) => {
            let causes: Vec<Value> = conflicts
                .iter()
                .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {:?}", c.manager), "field": c.field}))
                .collect();
            let mut details = crate::error::details(r, name);
            details["causes"] = json!(causes);
            let message = api::patch::ApplyError::Conflicts(conflicts).to_string();
            ApiError::conflict_message(message, details)
        }
        other => ApiError::bad_request(other.to_string()),
    }
}

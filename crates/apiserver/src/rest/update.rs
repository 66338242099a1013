//! PUT of an object (or its `status`): optimistic concurrency on `resourceVersion`, the kind's
//! update rules, then the store. [`write_update`] is the shared tail of update and patch.

use super::create::checked_body;
use super::{Call, with_warnings};
use crate::error::{ApiError, ApiResult};
use crate::objects::{identity, revision_of};
use crate::request;
use crate::time;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

/// Replaces an object with the request body.
pub async fn update(call: &Call) -> ApiResult<Response> {
    let r = call.target.resource;
    let name = call.name()?;
    let body = request::decode_body(&call.body, request::body_type(&call.headers)?)?;
    let (new, warnings) = checked_body(call, body)?;
    let (_, body_name) = identity(&new);
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let precondition = revision_of(&new);
    if new.pointer("/metadata/resourceVersion").is_some() && precondition.is_none() {
        return Err(ApiError::bad_request(
            "resourceVersion: Invalid value: must be a number",
        ));
    }
    let old = call.objects().get(r, call.ns(), name).await?;
    if let Some(want) = precondition
        && revision_of(&old) != Some(want)
    {
        return Err(ApiError::conflict(r, name));
    }
    let saved = write_update(call, &old, new).await?;
    Ok(with_warnings(call.reply(StatusCode::OK, &saved), &warnings))
}

/// Runs the update path from `old` to `new` and stores the result if `old` is still current
/// (409 Conflict otherwise; callers without a precondition retry).
pub async fn write_update(call: &Call, old: &Value, mut new: Value) -> ApiResult<Value> {
    let r = call.target.resource;
    let (ns, name) = identity(old);
    // Identity and system fields come from the stored object, never from the client.
    for key in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "namespace",
        "name",
    ] {
        let meta = new["metadata"]
            .as_object_mut()
            .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
        match old.pointer(&format!("/metadata/{key}")) {
            Some(v) if key != "name" && key != "namespace" => {
                meta.insert(key.into(), v.clone());
            }
            None if key == "deletionTimestamp" || key == "deletionGracePeriodSeconds" => {
                meta.remove(key);
            }
            _ => {}
        }
    }
    match call.target.subresource.as_deref() {
        Some("status") => api::strategy::prepare_for_status_update(r, &mut new, old),
        Some("finalize") => {
            // Only spec.finalizers may change through namespaces/finalize.
            let finalizers = new.pointer("/spec/finalizers").cloned();
            new = old.clone();
            match finalizers {
                Some(f) => new["spec"]["finalizers"] = f,
                None => {
                    if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                        spec.remove("finalizers");
                    }
                }
            }
        }
        _ => api::strategy::prepare_for_update(r, &mut new, old),
    }
    api::strategy::default_object(r, &mut new);
    crate::objects::drop_empty_metadata(&mut new);
    let errors = api::strategy::validate_update(r, &new, old);
    if !errors.is_empty() {
        return Err(ApiError::invalid(r, &name, &errors));
    }
    let now = time::now();
    call.record_manager(Some(old), &mut new, &now);
    let expected = revision_of(old)
        .ok_or_else(|| ApiError::internal("stored object has no resourceVersion"))?;
    if call.dry_run()? {
        return Ok(new);
    }
    if same_ignoring_version(old, &new) {
        // Kubernetes skips writes that change nothing, so watchers see no event.
        return Ok(old.clone());
    }
    if should_delete_now(&new) {
        return call
            .objects()
            .delete(r, ns.as_deref(), &name, expected)
            .await;
    }
    call.objects().update(r, new, expected).await
}

/// Whether an object marked for deletion has nothing left to wait for: no finalizers and a
/// grace period of 0 (a Pod's grace period is waited for by its node). An object marked without
/// a grace period, as a terminating Namespace is, is never deleted by an update (the store's
/// `shouldDeleteDuringUpdate`); the namespace controller deletes it.
pub fn should_delete_now(obj: &Value) -> bool {
    let marked = obj.pointer("/metadata/deletionTimestamp").is_some();
    let finalizers = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    let grace = obj
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    marked && !finalizers && grace == Some(0)
}

fn same_ignoring_version(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            // managedFields timestamps move on every write; they alone are no change.
            m.remove("managedFields");
        }
        v
    };
    strip(old) == strip(new)
}

/// Runs `change` on the current object and writes the result, retrying when another writer got
/// there first (the patch path: patches apply to whatever is current).
pub async fn retry_update<F>(call: &Call, mut change: F) -> ApiResult<Value>
where
    F: FnMut(&Value) -> ApiResult<Value>,
{
    let r = call.target.resource;
    let name = call.name()?;
    for _ in 0..16 {
        let old = call.objects().get(r, call.ns(), name).await?;
        let new = change(&old)?;
        if let Some(want) = revision_of(&new)
            && revision_of(&old) != Some(want)
        {
            return Err(ApiError::conflict(r, name));
        }
        match write_update(call, &old, new).await {
            Err(e) if e.reason == "Conflict" => continue,
            other => return other,
        }
    }
    Err(ApiError::conflict(r, name))
}

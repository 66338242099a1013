//! DELETE of an object or a collection: preconditions, grace periods, finalizers, and the
//! `Status` reply kubectl reads the UID from.

use super::Call;
use super::list::list_request;
use crate::error::{ApiError, ApiResult, details};
use crate::objects::{Objects, revision_of};
use crate::request;
use crate::time;
use api::field::{ErrorType, FieldError};
use api::registry::Resource;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

/// What a DeleteOptions body and the query say.
#[derive(Default, Debug, Clone)]
pub struct DeleteOptions {
    /// Seconds to wait before the object is gone; `None` means the kind's default.
    pub grace_period: Option<i64>,
    /// `preconditions.uid`
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`
    pub resource_version: Option<String>,
    /// `dryRun=All`
    pub dry_run: bool,
}

fn options(call: &Call) -> ApiResult<DeleteOptions> {
    let body = if call.body.is_empty() {
        json!({})
    } else {
        request::decode_body(&call.body, request::body_type(&call.headers)?)?
    };
    let mut grace = body.get("gracePeriodSeconds").and_then(Value::as_i64);
    if let Some(g) = call.query.int("gracePeriodSeconds")? {
        grace = Some(g);
    }
    if let Some(p) = body
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or(call.query.non_empty("propagationPolicy"))
        && !["Orphan", "Background", "Foreground"].contains(&p)
    {
        // ValidateDeleteOptions lists the values in this order, unsorted.
        let error = FieldError::new(
            ErrorType::NotSupported,
            "propagationPolicy",
            json!(p),
            r#"supported values: "Foreground", "Background", "Orphan", "nil""#,
        );
        return Err(ApiError::invalid_options("DeleteOptions", &[error]));
    }
    let mut dry_run = call.dry_run()?;
    if let Some(values) = body.get("dryRun").and_then(Value::as_array) {
        dry_run |= values.iter().any(|v| v == "All");
    }
    Ok(DeleteOptions {
        grace_period: grace.map(|g| g.max(0)),
        uid: body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        dry_run,
    })
}

/// Deletes one object.
pub async fn delete(call: &Call) -> ApiResult<Response> {
    let opts = options(call)?;
    let r = call.target.resource;
    let name = call.name()?;
    if is_namespace(r) && IMMORTAL_NAMESPACES.contains(&name) {
        return Err(ApiError::forbidden(
            r,
            name,
            "this namespace may not be deleted",
        ));
    }
    match delete_object(call.objects(), r, call.ns(), name, &opts).await? {
        Deleted::Pending(obj) => Ok(call.reply(StatusCode::OK, &obj)),
        Deleted::Gone(obj) if returns_deleted_object(r) => Ok(call.reply(StatusCode::OK, &obj)),
        Deleted::Gone(obj) => {
            let uid = obj.pointer("/metadata/uid").cloned().unwrap_or(json!(""));
            let mut d = details(r, name);
            d["uid"] = uid;
            let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d});
            Ok(super::json_response(
                StatusCode::OK,
                &status,
                "application/json",
            ))
        }
    }
}

/// The namespaces the NamespaceLifecycle admission plugin never lets anyone delete.
const IMMORTAL_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];

fn is_namespace(r: &Resource) -> bool {
    r.kind == "Namespace" && r.group.is_empty()
}

/// Whether a delete that removed the object answers with the object rather than a Status
/// (`ReturnDeletedObject` in the kind's registry storage).
fn returns_deleted_object(r: &Resource) -> bool {
    matches!(
        (r.group, r.plural),
        (
            "",
            "pods"
                | "serviceaccounts"
                | "namespaces"
                | "persistentvolumes"
                | "persistentvolumeclaims"
        ) | ("storage.k8s.io", "storageclasses")
    )
}

/// The outcome of a delete.
pub enum Deleted {
    /// The object is marked (deletionTimestamp set) and waits for finalizers or its grace period.
    Pending(Value),
    /// The object is gone; its last state.
    Gone(Value),
}

/// The grace period Kubernetes gives an object of `r` when the client names none.
fn default_grace(r: &Resource, obj: &Value) -> i64 {
    if r.kind != "Pod" || !r.group.is_empty() {
        return 0;
    }
    // Unscheduled and finished Pods have nothing to stop (pod strategy CheckGracefulDelete).
    let scheduled = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let phase = obj
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !scheduled || phase == "Succeeded" || phase == "Failed" {
        return 0;
    }
    obj.pointer("/spec/terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(30)
}

/// Deletes one object through the generic path (also used by the namespace controller).
pub async fn delete_object(
    objects: &Objects,
    r: &'static Resource,
    ns: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
) -> ApiResult<Deleted> {
    for _ in 0..16 {
        let obj = objects.get(r, ns, name).await?;
        let marked = obj.pointer("/metadata/deletionTimestamp").is_some();
        if is_namespace(r) {
            match delete_namespace(objects, r, name, obj.clone(), marked, opts).await? {
                Some(Ok(done)) => return Ok(done),
                Some(Err(())) => continue,
                None => {}
            }
        }
        if let Some(uid) = &opts.uid {
            let actual = obj
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or("");
            if uid != actual {
                return Err(ApiError::precondition_failed(
                    r,
                    name,
                    &format!(
                        "the UID in the precondition ({uid}) does not match the UID in record ({actual}). The object might have been deleted and then recreated"
                    ),
                ));
            }
        }
        if let Some(rv) = &opts.resource_version {
            let actual = obj
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or("");
            if rv != actual {
                return Err(ApiError::precondition_failed(
                    r,
                    name,
                    &format!(
                        "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({actual}). The object might have been modified"
                    ),
                ));
            }
        }
        let expected = revision_of(&obj)
            .ok_or_else(|| ApiError::internal("stored object has no resourceVersion"))?;
        let scheduled_grace = default_grace(r, &obj);
        // A Pod that no node runs is deleted at once whatever the client asked (as upstream).
        let grace = if scheduled_grace == 0 && r.kind == "Pod" {
            0
        } else {
            opts.grace_period.unwrap_or(scheduled_grace)
        };
        let has_finalizers = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        let current_grace = obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        if grace == 0 && !has_finalizers {
            if opts.dry_run {
                return Ok(Deleted::Gone(obj));
            }
            match objects.delete(r, ns, name, expected).await {
                Ok(last) => return Ok(Deleted::Gone(last)),
                Err(e) if e.reason == "Conflict" => continue,
                Err(e) => return Err(e),
            }
        }
        if marked && current_grace.is_none_or(|g| g <= grace) {
            // Already being deleted, no sooner than asked now: nothing changes.
            return Ok(Deleted::Pending(obj));
        }
        let mut new = obj.clone();
        let deadline = time::after_seconds(grace);
        let meta = new["metadata"]
            .as_object_mut()
            .ok_or_else(|| ApiError::internal("metadata is not an object"))?;
        if !marked || grace < current_grace.unwrap_or(i64::MAX) {
            meta.insert("deletionTimestamp".into(), json!(deadline));
        }
        meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
        if r.kind == "Namespace" {
            new["status"]["phase"] = json!("Terminating");
        }
        if opts.dry_run {
            return Ok(Deleted::Pending(new));
        }
        match objects.update(r, new, expected).await {
            Ok(saved) => return Ok(Deleted::Pending(saved)),
            Err(e) if e.reason == "Conflict" => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(r, name))
}

/// What namespace storage's own Delete does before the generic path: the first delete only
/// marks the namespace Terminating (the namespace controller then empties it), and while
/// `spec.finalizers` remain a delete is refused. `None` means: continue on the generic path;
/// `Some(Err(()))`: the object changed underneath, read it again.
async fn delete_namespace(
    objects: &Objects,
    r: &'static Resource,
    name: &str,
    obj: Value,
    marked: bool,
    opts: &DeleteOptions,
) -> ApiResult<Option<Result<Deleted, ()>>> {
    if let Some(uid) = &opts.uid {
        let actual = obj
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        if uid != actual {
            return Err(ApiError::conflict_because(
                r,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                ),
            ));
        }
    }
    if !marked {
        let expected = revision_of(&obj)
            .ok_or_else(|| ApiError::internal("stored object has no resourceVersion"))?;
        let mut new = obj;
        new["metadata"]["deletionTimestamp"] = json!(time::now());
        new["status"]["phase"] = json!("Terminating");
        if opts.dry_run {
            return Ok(Some(Ok(Deleted::Pending(new))));
        }
        return match objects.update(r, new, expected).await {
            Ok(saved) => Ok(Some(Ok(Deleted::Pending(saved)))),
            Err(e) if e.reason == "Conflict" => Ok(Some(Err(()))),
            Err(e) => Err(e),
        };
    }
    let finalizing = obj
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if finalizing {
        return Err(ApiError::conflict_because(
            r,
            name,
            "The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system.",
        ));
    }
    Ok(None)
}

/// Deletes every object of a collection that the selectors match; replies with the list of
/// what was deleted.
pub async fn delete_collection(call: &Call) -> ApiResult<Response> {
    let r = call.target.resource;
    let opts = options(call)?;
    let req = list_request(call)?;
    let page = call.objects().list(r, call.ns(), &req).await?;
    let mut items = Vec::new();
    for obj in page.items {
        let (ns, name) = crate::objects::identity(&obj);
        match delete_object(call.objects(), r, ns.as_deref(), &name, &opts).await {
            Ok(Deleted::Gone(o) | Deleted::Pending(o)) => items.push(o),
            Err(e) if e.reason == "NotFound" => {}
            Err(e) => return Err(e),
        }
    }
    let list = json!({"kind": r.list_kind(), "apiVersion": r.api_version(), "metadata": {}, "items": items});
    Ok(super::json_response(
        StatusCode::OK,
        &list,
        "application/json",
    ))
}

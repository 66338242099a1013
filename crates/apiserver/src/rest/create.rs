//! POST to a collection: decode, check, default, validate, store.

use super::{Call, with_warnings};
use crate::error::{ApiError, ApiResult};
use crate::objects::identity;
use crate::request::{self, FieldValidation};
use crate::time;
use api::registry::Resource;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

/// Creates an object from the request body.
pub async fn create(call: &Call) -> ApiResult<Response> {
    let body_type = request::body_type(&call.headers)?;
    let obj = request::decode_body(&call.body, body_type)?;
    let (obj, warnings) = checked_body(call, obj)?;
    let created = create_object(call, obj).await?;
    Ok(with_warnings(
        call.reply(StatusCode::CREATED, &created),
        &warnings,
    ))
}

/// Checks a decoded body against the path: kind, apiVersion, namespace and (per
/// `fieldValidation`) unknown fields. Returns the object and any warnings.
pub fn checked_body(call: &Call, mut obj: Value) -> ApiResult<(Value, Vec<String>)> {
    let r = call.target.resource;
    let validation = call.field_validation()?;
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    let api_version = r.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), json!(api_version));
        }
        Some(v) if v != api_version => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
        Some(_) => {}
    }
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), json!(r.kind));
        }
        Some(k) if k != r.kind => {
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: the kind in the data ({k}) does not match the expected kind",
                r.kind, r.version, r.kind
            )));
        }
        Some(_) => {}
    }
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        return Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: metadata must be an object",
            r.kind, r.version, r.kind
        )));
    }
    if r.namespaced {
        let url_ns = call.ns().unwrap_or_default();
        match meta.get("namespace").and_then(Value::as_str) {
            None | Some("") => meta["namespace"] = json!(url_ns),
            Some(ns) if ns != url_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            Some(_) => {}
        }
    } else if let Some(m) = meta.as_object_mut() {
        m.remove("namespace");
    }
    let unknown = api::strategy::unknown_fields(r, &obj);
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        match validation {
            FieldValidation::Strict => {
                let list: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field {f:?}"))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                    r.kind,
                    r.version,
                    r.kind,
                    list.join(", ")
                )));
            }
            FieldValidation::Warn => {
                warnings.extend(unknown.iter().map(|f| format!("unknown field {f:?}")))
            }
            FieldValidation::Ignore => {}
        }
    }
    Ok((obj, warnings))
}

/// Runs the create path on a checked object: name generation, strategy, validation, identity
/// fields, namespace checks, managed fields, then the store (unless `dryRun`).
pub async fn create_object(call: &Call, mut obj: Value) -> ApiResult<Value> {
    let r = call.target.resource;
    let generated = generate_name(&mut obj);
    api::strategy::prepare_for_create(r, &mut obj);
    api::strategy::default_object(r, &mut obj);
    if r.kind == "Pod" && r.group.is_empty() {
        admit_service_account(call, &mut obj).await?;
    }
    crate::objects::drop_empty_metadata(&mut obj);
    let (ns, name) = identity(&obj);
    let errors = api::strategy::validate_create(r, &obj);
    if !errors.is_empty() {
        return Err(ApiError::invalid(r, &name, &errors));
    }
    if r.namespaced {
        let ns = ns.as_deref().unwrap_or_default();
        check_namespace_open(call, r, ns, &name).await?;
    }
    let now = time::now();
    let meta = obj["metadata"]
        .as_object_mut()
        .ok_or_else(|| ApiError::internal("metadata vanished"))?;
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now));
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("selfLink");
    call.record_manager(None, &mut obj, &now);
    if call.dry_run()? {
        // A dry run still fails where the write would: on a name that is taken.
        let (ns, name) = identity(&obj);
        if call
            .objects()
            .try_get(r, ns.as_deref(), &name)
            .await?
            .is_some()
        {
            return Err(ApiError::already_exists(r, &name));
        }
        return Ok(obj);
    }
    // A generated name can collide; kube-apiserver retries those with a new suffix.
    let mut tries = 0;
    let created = loop {
        match call.objects().create(r, obj.clone()).await {
            Err(e) if e.reason == "AlreadyExists" && generated && tries < 8 => {
                tries += 1;
                obj["metadata"]["name"] = json!(random_name(&obj));
            }
            other => break other?,
        }
    };
    crate::controllers::after_create(&call.state, r, &created).await;
    Ok(created)
}

/// The ServiceAccount admission plugin: a Pod whose ServiceAccount does not opt out gets the
/// `kube-api-access-<random>` token volume, when this server issues tokens.
async fn admit_service_account(call: &Call, pod: &mut Value) -> ApiResult<()> {
    if call.state.service_accounts.get().is_none() {
        return Ok(());
    }
    let (ns, _) = identity(pod);
    let sa_name = pod
        .pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let sas = crate::server::resource("serviceaccounts");
    let opted_out = match call.objects().try_get(sas, ns.as_deref(), &sa_name).await? {
        Some(sa) => sa["automountServiceAccountToken"] == json!(false),
        None => false,
    };
    // The Pod's own setting wins over its ServiceAccount's.
    let pod_says = pod.pointer("/spec/automountServiceAccountToken").cloned();
    if pod_says == Some(json!(true)) || (pod_says.is_none() && !opted_out) {
        api::pod::add_service_account_volume(pod, &random_suffix());
    }
    Ok(())
}

/// Refuses new objects in a namespace that does not exist or is being deleted, as the
/// NamespaceLifecycle admission plugin does.
async fn check_namespace_open(call: &Call, r: &Resource, ns: &str, name: &str) -> ApiResult<()> {
    let namespaces = crate::server::resource("namespaces");
    match call.objects().try_get(namespaces, None, ns).await? {
        None => Err(ApiError::not_found(namespaces, ns)),
        Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => Err(ApiError::forbidden(
            r,
            name,
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Gives an object with `generateName` and no name a name; says whether it did.
fn generate_name(obj: &mut Value) -> bool {
    let has_name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if has_name
        || obj
            .pointer("/metadata/generateName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return false;
    }
    obj["metadata"]["name"] = json!(random_name(obj));
    true
}

/// The `generateName` prefix and five random characters from Kubernetes' alphabet (no vowels,
/// no look-alike digits), the prefix trimmed so the name stays within 63 characters.
fn random_name(obj: &Value) -> String {
    let prefix = obj
        .pointer("/metadata/generateName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let trimmed: String = prefix.chars().take(58).collect();
    format!("{trimmed}{}", random_suffix())
}

/// Five random characters from Kubernetes' alphabet for generated names.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

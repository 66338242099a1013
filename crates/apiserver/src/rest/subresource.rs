//! Subresources other than `status`: `pods/binding` (what a scheduler writes),
//! `pods/eviction` and `serviceaccounts/token` (TokenRequest). The streaming ones (`log`, `exec`, `attach`, `portforward`) belong to the
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
        (&Method::POST, "token") => token(call).await,
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

/// Issues a token for a ServiceAccount (TokenRequest), optionally bound to a Pod.
async fn token(call: &Call) -> ApiResult<Response> {
    use crate::tokens::{Binding, Claims, ISSUER, Ref};
    let r = call.target.resource;
    let name = call.name()?;
    let ns = call.ns().unwrap_or_default();
    let issuer = call
        .state
        .service_accounts
        .get()
        .ok_or_else(|| ApiError::unavailable("this server issues no service account tokens"))?;
    let mut request = request::decode_body(&call.body, request::body_type(&call.headers)?)?;
    let spec = &request["spec"];
    let expiration = spec["expirationSeconds"].as_i64().unwrap_or(3600);
    let token_request = api::registry::Resource {
        kind: "TokenRequest",
        ..*r
    };
    if expiration < 600 {
        return Err(ApiError::invalid(
            &token_request,
            name,
            &[api::field::FieldError::invalid(
                "spec.expirationSeconds",
                json!(expiration),
                "may not specify a duration less than 10 minutes",
            )],
        ));
    }
    let audiences: Vec<String> = spec["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .filter(|a: &Vec<String>| !a.is_empty())
        .unwrap_or_else(|| vec![ISSUER.to_string()]);
    let sa = call.objects().get(r, call.ns(), name).await?;
    let uid = |obj: &Value| {
        obj["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let pod = match spec.pointer("/boundObjectRef") {
        Some(bound) if bound["kind"] == "Pod" => {
            let pods = crate::server::resource("pods");
            let pod_name = bound["name"].as_str().unwrap_or_default();
            let pod = call.objects().get(pods, call.ns(), pod_name).await?;
            if let Some(want) = bound["uid"].as_str().filter(|u| !u.is_empty())
                && want != uid(&pod)
            {
                return Err(ApiError::conflict_because(
                    pods,
                    pod_name,
                    &format!(
                        "the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
                    ),
                ));
            }
            Some(Ref {
                name: pod_name.to_string(),
                uid: uid(&pod),
            })
        }
        Some(bound) if !bound.is_null() => {
            return Err(ApiError::bad_request(format!(
                "cannot bind token to object of kind {:?}",
                bound["kind"].as_str().unwrap_or_default()
            )));
        }
        _ => None,
    };
    let now = jiff::Timestamp::now().as_second();
    let claims = Claims {
        aud: audiences.clone(),
        exp: now + expiration,
        iat: now,
        iss: ISSUER.to_string(),
        nbf: now,
        sub: format!("system:serviceaccount:{ns}:{name}"),
        kubernetes: Binding {
            namespace: ns.to_string(),
            serviceaccount: Ref {
                name: name.to_string(),
                uid: uid(&sa),
            },
            pod,
        },
    };
    let signed = issuer.sign(&claims).map_err(ApiError::internal)?;
    request["kind"] = json!("TokenRequest");
    request["apiVersion"] = json!("authentication.k8s.io/v1");
    request["metadata"] = json!({"name": name, "namespace": ns, "creationTimestamp": time::now()});
    request["spec"]["audiences"] = json!(audiences);
    request["spec"]["expirationSeconds"] = json!(expiration);
    request["status"] =
        json!({"token": signed, "expirationTimestamp": time::after_seconds(expiration)});
    Ok(super::json_response(
        StatusCode::CREATED,
        &request,
        "application/json",
    ))
}

//! What kube-apiserver's built-in controllers do for the objects here: the namespaces that
//! exist from the start, a `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap in every
//! namespace, and namespace deletion
//! (delete everything inside, then the namespace).

use crate::error::ApiResult;
use crate::objects::{Objects, identity};
use crate::rest::delete_object;
use crate::server::{State, resource};
use crate::time;
use api::registry::{RESOURCES, Resource};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Namespaces every cluster has.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates what a new cluster has (idempotent: existing objects are kept).
pub async fn bootstrap(state: &Arc<State>) -> ApiResult<()> {
    let namespaces = resource("namespaces");
    for ns in SYSTEM_NAMESPACES {
        if state.objects.try_get(namespaces, None, ns).await?.is_none() {
            let mut obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}});
            api::strategy::prepare_for_create(namespaces, &mut obj);
            api::strategy::default_object(namespaces, &mut obj);
            stamp(&mut obj);
            match state.objects.create(namespaces, obj).await {
                Ok(_) => {}
                Err(e) if e.reason == "AlreadyExists" => {}
                Err(e) => return Err(e),
            }
        }
        ensure_default_service_account(&state.objects, ns).await?;
        ensure_root_ca(state, ns).await?;
    }
    Ok(())
}

/// The `kube-root-ca.crt` ConfigMap every namespace has (kube-controller-manager's
/// root-ca-cert-publisher): the CA that Pods trust the API server by.
async fn ensure_root_ca(state: &State, ns: &str) -> ApiResult<()> {
    let Some(issuer) = state.service_accounts.get() else {
        return Ok(());
    };
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": ROOT_CA, "namespace": ns},
        "data": {"ca.crt": issuer.ca_cert}});
    ensure_system_object(&state.objects, resource("configmaps"), obj, None).await
}

/// The `kubernetes` Service of the `default` namespace and its Endpoints (kube-apiserver's
/// own controller): where Pods reach the API server, `ip:port`. Kept in step with the
/// address this start serves on.
pub async fn ensure_kubernetes_service(state: &State, ip: &str, port: u16) -> ApiResult<()> {
    let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster", "sessionAffinity": "None",
            "ports": [{"name": "https", "port": port, "protocol": "TCP", "targetPort": port}]},
        "status": {"loadBalancer": {}}});
    let endpoints = json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": ip}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]});
    ensure_system_object(&state.objects, resource("services"), service, Some("spec")).await?;
    ensure_system_object(
        &state.objects,
        resource("endpoints"),
        endpoints,
        Some("subsets"),
    )
    .await
}

/// Creates `desired` if it is missing; with `in_step`, also rewrites the stored object when that
/// field of it differs from `desired`'s.
async fn ensure_system_object(
    objects: &Objects,
    r: &Resource,
    mut desired: Value,
    in_step: Option<&str>,
) -> ApiResult<()> {
    let (ns, name) = identity(&desired);
    match objects.try_get(r, ns.as_deref(), &name).await? {
        None => {
            stamp(&mut desired);
            match objects.create(r, desired).await {
                Ok(_) => Ok(()),
                Err(e) if e.reason == "AlreadyExists" => Ok(()),
                Err(e) => Err(e),
            }
        }
        Some(mut stored) => {
            let Some(field) = in_step.filter(|f| stored[*f] != desired[*f]) else {
                return Ok(());
            };
            let revision = stored["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or_default();
            stored[field] = desired[field].take();
            if let Some(m) = stored["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            objects.update(r, stored, revision).await.map(|_| ())
        }
    }
}

/// The ConfigMap name of the cluster's CA in every namespace.
const ROOT_CA: &str = "kube-root-ca.crt";

/// Gives a system-made object the identity fields the create path would.
fn stamp(obj: &mut Value) {
    obj["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    obj["metadata"]["creationTimestamp"] = json!(time::now());
}

async fn ensure_default_service_account(objects: &Objects, ns: &str) -> ApiResult<()> {
    let obj = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}});
    ensure_system_object(objects, resource("serviceaccounts"), obj, None).await
}

/// Runs after every successful create.
pub async fn after_create(state: &Arc<State>, r: &Resource, obj: &Value) {
    if r.kind == "Namespace" && r.group.is_empty() {
        let (_, name) = identity(obj);
        if let Err(e) = ensure_default_service_account(&state.objects, &name).await {
            tracing::warn!(
                "cannot create the default service account in {name}: {}",
                e.message
            );
        }
        if let Err(e) = ensure_root_ca(state, &name).await {
            tracing::warn!("cannot publish the root CA in {name}: {}", e.message);
        }
    }
}

/// Finishes the deletion of terminating namespaces: deletes their contents, then the namespace
/// once nothing is left. Runs until the process ends.
pub async fn namespace_finalizer(state: Arc<State>) {
    let namespaces = resource("namespaces");
    loop {
        if let Ok(page) = state
            .objects
            .list(namespaces, None, &Default::default())
            .await
        {
            for ns in page
                .items
                .iter()
                .filter(|n| n.pointer("/metadata/deletionTimestamp").is_some())
            {
                let (_, name) = identity(ns);
                if let Err(e) = finalize_namespace(&state.objects, &name).await {
                    tracing::warn!("cannot finish deleting namespace {name}: {}", e.message);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn finalize_namespace(objects: &Objects, ns: &str) -> ApiResult<()> {
    let mut left = 0;
    for r in RESOURCES.iter().filter(|r| r.namespaced) {
        let page = objects.list(r, Some(ns), &Default::default()).await?;
        for obj in &page.items {
            let (_, name) = identity(obj);
            left += 1;
            let _ = delete_object(objects, r, Some(ns), &name, &Default::default()).await;
        }
    }
    if left > 0 {
        return Ok(());
    }
    let namespaces = resource("namespaces");
    if let Some(obj) = objects.try_get(namespaces, None, ns).await? {
        let expected = crate::objects::revision_of(&obj).unwrap_or_default();
        let _ = objects.delete(namespaces, None, ns, expected).await;
    }
    Ok(())
}

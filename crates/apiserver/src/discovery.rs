//! Discovery: `/api`, `/apis`, `/api/v1`, `/apis/<group>/<version>` in the legacy form, and the
//! aggregated `apidiscovery.k8s.io/v2` form of `/api` and `/apis` for clients that ask for it.
//! Both are built from the registry.

use api::registry::{self, ALL_VERBS, RESOURCES, Resource};
use serde_json::{Value, json};

/// The content type of aggregated discovery replies.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the client's Accept header asks for aggregated discovery (v2).
pub fn wants_aggregated(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=APIGroupDiscoveryList") && first.contains("v=v2"))
}

/// `/api` in the legacy form.
pub fn api_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
}

/// `/apis` in the legacy form.
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = registry::groups()
        .into_iter()
        .map(|g| {
            let versions = versions_of(g);
            let gv: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({"name": g, "versions": gv, "preferredVersion": gv[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn versions_of(group: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group == group) {
        if !out.contains(&r.version) {
            out.push(r.version);
        }
    }
    out
}

/// `/api/v1` or `/apis/<group>/<version>`: an APIResourceList, or `None` when not served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let served: Vec<&Resource> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for r in served {
        let mut entry = json!({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                               "kind": r.kind, "verbs": ALL_VERBS});
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for sub in r.subresources {
            let (kind, verbs) = subresource_shape(r, sub);
            resources.push(json!({"name": format!("{}/{sub}", r.plural), "singularName": "", "namespaced": r.namespaced,
                                  "kind": kind, "verbs": verbs}));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// The kind and verbs of a subresource, as kube-apiserver lists them.
fn subresource_shape(r: &Resource, sub: &str) -> (&'static str, Vec<&'static str>) {
    match sub {
        "status" => (r.kind, vec!["get", "patch", "update"]),
        "binding" => ("Binding", vec!["create"]),
        "eviction" => ("Eviction", vec!["create"]),
        "log" => ("Pod", vec!["get"]),
        "exec" | "attach" => ("PodExecOptions", vec!["create", "get"]),
        "portforward" => ("PodPortForwardOptions", vec!["create", "get"]),
        "scale" => ("Scale", vec!["get", "patch", "update"]),
        "token" => ("TokenRequest", vec!["create"]),
        "finalize" => ("Namespace", vec!["update"]),
        _ => (r.kind, vec!["get"]),
    }
}

/// The aggregated discovery document for the core group (`/api`) or the named groups (`/apis`).
pub fn aggregated(core: bool) -> Value {
    let groups: Vec<&str> = if core { vec![""] } else { registry::groups() };
    let items: Vec<Value> = groups
        .into_iter()
        .map(|g| {
            let versions: Vec<Value> = versions_of(g)
                .into_iter()
                .map(|v| {
                    let resources: Vec<Value> = RESOURCES
                        .iter()
                        .filter(|r| r.group == g && r.version == v)
                        .map(aggregated_resource)
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut meta = json!({"creationTimestamp": null});
            if !g.is_empty() {
                meta["name"] = json!(g);
            }
            json!({"metadata": meta, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

fn aggregated_resource(r: &Resource) -> Value {
    let gvk = |kind: &str| json!({"group": r.group, "version": r.version, "kind": kind});
    let subresources: Vec<Value> = r
        .subresources
        .iter()
        .map(|sub| {
            let (kind, verbs) = subresource_shape(r, sub);
            json!({"subresource": sub, "responseKind": gvk(kind), "verbs": verbs})
        })
        .collect();
    let mut entry = json!({
        "resource": r.plural, "responseKind": gvk(r.kind),
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular, "verbs": ALL_VERBS,
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        entry["categories"] = json!(r.categories);
    }
    if !subresources.is_empty() {
        entry["subresources"] = json!(subresources);
    }
    entry
}

use super::*;
use crate::registry::find;

fn doc_json(gv: &str) -> Value {
    let doc = document(gv).unwrap_or_else(|| panic!("no document for {gv}"));
    serde_json::from_slice(&doc.bytes).unwrap()
}

#[test]
fn index_lists_every_group_version_with_its_hash() {
    let index = index();
    let paths = index["paths"].as_object().unwrap();
    let names: Vec<&str> = paths.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "api/v1",
            "apis/apps/v1",
            "apis/batch/v1",
            "apis/coordination.k8s.io/v1",
            "apis/events.k8s.io/v1",
            "apis/storage.k8s.io/v1"
        ]
    );
    let doc = document("apis/apps/v1").unwrap();
    assert_eq!(doc.hash.len(), 32);
    assert_eq!(
        paths["apis/apps/v1"]["serverRelativeURL"],
        json!(format!("/openapi/v3/apis/apps/v1?hash={}", doc.hash))
    );
    assert_eq!(digest(b""), "6C62272E07BB014262B821756295C58D");
    assert!(document("apis/nope/v1").is_none());
}

#[test]
fn kinds_carry_gvk_and_descriptions() {
    let doc = doc_json("api/v1");
    assert_eq!(doc["openapi"], "3.0.0");
    let schemas = &doc["components"]["schemas"];
    let pod = &schemas["io.k8s.api.core.v1.Pod"];
    assert_eq!(
        pod["x-kubernetes-group-version-kind"],
        json!([{"group": "", "kind": "Pod", "version": "v1"}])
    );
    assert_eq!(
        schemas["io.k8s.api.core.v1.PodList"]["x-kubernetes-group-version-kind"],
        json!([{"group": "", "kind": "PodList", "version": "v1"}])
    );
    // A described reference is wrapped in allOf, as Kubernetes writes it.
    assert_eq!(
        pod["properties"]["spec"]["allOf"],
        json!([{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}])
    );
    assert!(
        pod["properties"]["spec"]["description"]
            .as_str()
            .unwrap()
            .starts_with("Specification of the desired behavior")
    );
    assert!(schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
    // Schemas of other groups stay out.
    assert!(schemas.get("io.k8s.api.apps.v1.Deployment").is_none());
    let apps = doc_json("apis/apps/v1");
    let deploy = &apps["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deploy["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    assert_eq!(
        apps["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"]
            ["x-kubernetes-patch-strategy"],
        "retainKeys"
    );
}

#[test]
fn every_ref_resolves_within_its_document() {
    for gv in [
        "api/v1",
        "apis/apps/v1",
        "apis/batch/v1",
        "apis/storage.k8s.io/v1",
        "apis/coordination.k8s.io/v1",
        "apis/events.k8s.io/v1",
    ] {
        let doc = doc_json(gv);
        let mut refs = Vec::new();
        refs_in(&doc, &mut refs);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for r in refs {
            assert!(schemas.contains_key(&r), "{gv}: dangling $ref {r}");
        }
    }
}

#[test]
fn pod_spec_lists_carry_kubernetes_patch_extensions() {
    let doc = doc_json("api/v1");
    let s = &doc["components"]["schemas"];
    let spec = &s["io.k8s.api.core.v1.PodSpec"]["properties"];
    assert_eq!(
        spec["volumes"]["x-kubernetes-patch-strategy"],
        "merge,retainKeys"
    );
    assert_eq!(spec["volumes"]["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(spec["volumes"]["x-kubernetes-list-type"], "map");
    assert_eq!(
        spec["volumes"]["x-kubernetes-list-map-keys"],
        json!(["name"])
    );
    for f in [
        "containers",
        "initContainers",
        "ephemeralContainers",
        "imagePullSecrets",
    ] {
        assert_eq!(spec[f]["x-kubernetes-patch-strategy"], "merge", "{f}");
        assert_eq!(spec[f]["x-kubernetes-patch-merge-key"], "name", "{f}");
    }
    assert_eq!(spec["tolerations"]["x-kubernetes-list-type"], "atomic");
    assert!(
        spec["tolerations"]
            .get("x-kubernetes-patch-strategy")
            .is_none()
    );
    let c = &s["io.k8s.api.core.v1.Container"]["properties"];
    assert_eq!(c["ports"]["x-kubernetes-patch-merge-key"], "containerPort");
    assert_eq!(
        c["ports"]["x-kubernetes-list-map-keys"],
        json!(["containerPort", "protocol"])
    );
    assert_eq!(c["env"]["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(
        c["volumeMounts"]["x-kubernetes-patch-merge-key"],
        "mountPath"
    );
    let ec = &s["io.k8s.api.core.v1.EphemeralContainer"]["properties"];
    assert_eq!(ec["env"]["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(
        s["io.k8s.api.core.v1.PodStatus"]["properties"]["conditions"]["x-kubernetes-patch-merge-key"],
        "type"
    );
    let m = &s["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"];
    assert_eq!(m["ownerReferences"]["x-kubernetes-patch-merge-key"], "uid");
    assert_eq!(m["finalizers"]["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(m["finalizers"]["x-kubernetes-list-type"], "set");
    assert_eq!(
        s["io.k8s.api.core.v1.LocalObjectReference"]["x-kubernetes-map-type"],
        "atomic"
    );
    let q = &s["io.k8s.apimachinery.pkg.api.resource.Quantity"];
    assert_eq!(q["oneOf"], json!([{"type": "string"}, {"type": "number"}]));
}

#[test]
fn every_table_row_names_an_existing_property() {
    let cat = catalog();
    for ext in table::FIELDS {
        let prop = cat
            .schemas
            .get(ext.schema)
            .and_then(|s| s["properties"].get(ext.field));
        assert!(
            prop.is_some(),
            "{}.{} is not in the schemas",
            ext.schema,
            ext.field
        );
    }
    for (name, _) in table::ATOMIC_STRUCTS {
        assert!(
            cat.schemas.contains_key(*name),
            "{name} is not in the schemas"
        );
    }
}

#[test]
fn patch_operations_satisfy_kubectl() {
    let doc = doc_json("api/v1");
    let paths = doc["paths"].as_object().unwrap();
    let item = &paths["/api/v1/namespaces/{namespace}/pods/{name}"];
    let patch = &item["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "", "version": "v1", "kind": "Pod"})
    );
    assert_eq!(patch["operationId"], "patchCoreV1NamespacedPod");
    let names: Vec<&str> = patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["dryRun", "fieldManager", "fieldValidation", "force"]
    );
    let content: Vec<&str> = patch["requestBody"]["content"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        content,
        [
            "application/apply-patch+yaml",
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json"
        ]
    );
    for verb in ["get", "put", "delete"] {
        assert!(item[verb].is_object(), "{verb}");
    }
    for verb in ["get", "post", "delete"] {
        assert!(
            paths["/api/v1/namespaces/{namespace}/pods"][verb].is_object(),
            "{verb}"
        );
    }
    assert_eq!(
        paths["/api/v1/namespaces/{namespace}/pods/{name}/status"]["patch"]["operationId"],
        "patchCoreV1NamespacedPodStatus"
    );
    assert_eq!(
        paths["/api/v1/nodes/{name}"]["patch"]["operationId"],
        "patchCoreV1Node"
    );
    assert!(paths["/api/v1/pods"]["get"].is_object());
    // Every served kind of the group-version has a PATCH operation naming it.
    for r in RESOURCES.iter().filter(|r| r.group.is_empty()) {
        let found = paths
            .values()
            .any(|p| p["patch"]["x-kubernetes-group-version-kind"]["kind"] == r.kind);
        assert!(found, "no patch operation for {}", r.kind);
    }
}

#[test]
fn schema_node_walks_a_pod() {
    let pods = find("", "v1", "pods").unwrap();
    let pod = SchemaNode::for_resource(pods).unwrap();
    assert_eq!(pod.type_name(), Some("io.k8s.api.core.v1.Pod"));
    assert_eq!(pod.shape(), Shape::Struct);
    let spec = pod.field("spec").unwrap();
    assert_eq!(spec.type_name(), Some("io.k8s.api.core.v1.PodSpec"));
    let containers = spec.field("containers").unwrap();
    assert_eq!(containers.shape(), Shape::List);
    assert_eq!(
        containers.patch_meta(),
        PatchMeta {
            strategy: Some("merge"),
            retain_keys: false,
            merge_key: Some("name"),
            list_type: Some(ListType::Map),
            map_keys: vec!["name"]
        }
    );
    let container = containers.items().unwrap();
    assert_eq!(container.type_name(), Some("io.k8s.api.core.v1.Container"));
    assert_eq!(container.field("image").unwrap().shape(), Shape::Scalar);
    let volumes = spec.field("volumes").unwrap().patch_meta();
    assert!(volumes.retain_keys);
    assert_eq!(volumes.strategy, Some("merge"));
    let labels = pod.field("metadata").unwrap().field("labels").unwrap();
    assert_eq!(labels.shape(), Shape::Map);
    assert_eq!(labels.values().unwrap().shape(), Shape::Scalar);
    assert!(spec.field("nodeSelector").unwrap().is_atomic_map());
    assert!(
        container
            .field("resources")
            .unwrap()
            .field("limits")
            .unwrap()
            .values()
            .unwrap()
            .shape()
            == Shape::Scalar
    );
    assert!(
        spec.field("imagePullSecrets")
            .unwrap()
            .items()
            .unwrap()
            .is_atomic_map()
    );
    assert!(!container.field("securityContext").unwrap().is_atomic_map());
    assert_eq!(
        patch_meta("io.k8s.api.core.v1.PodSpec", "tolerations")
            .unwrap()
            .list_type,
        Some(ListType::Atomic)
    );
    assert_eq!(
        patch_meta("io.k8s.api.core.v1.PodSpec", "hostname"),
        Some(PatchMeta::default())
    );
    assert!(spec.field("nope").is_none());
    let deploy = SchemaNode::for_resource(find("apps", "v1", "deployments").unwrap()).unwrap();
    let strategy = deploy
        .field("spec")
        .unwrap()
        .field("strategy")
        .unwrap()
        .patch_meta();
    assert_eq!((strategy.retain_keys, strategy.strategy), (true, None));
}

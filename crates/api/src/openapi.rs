//! The served OpenAPI v3 documents, and the schema navigator the patches use.
//!
//! Each served group-version gets one OpenAPI 3.0 document (`/openapi/v3/api/v1`,
//! `/openapi/v3/apis/apps/v1`, ...). The schemas come from k8s-openapi's `schemars` output,
//! which carries the field descriptions `kubectl explain` prints and already names schemas as
//! Kubernetes does (`io.k8s.api.core.v1.Pod`). What k8s-openapi lacks, the `x-kubernetes-*`
//! patch and list extensions, is added from [`table`]. The same enriched schemas back
//! [`SchemaNode`], so the strategic merge patch and server-side apply read exactly what kubectl
//! reads from the documents we serve.
//!
//! Everything is built once, on first use, so the server starts without paying for it.

pub mod table;

use crate::registry::{RESOURCES, Resource};
use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, coordination::v1 as coordination};
use k8s_openapi::api::{core::v1 as core, events::v1 as events, storage::v1 as storage};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

/// Where `$ref`s point: `#/components/schemas/<name>`.
const REF_PREFIX: &str = "#/components/schemas/";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

/// One served OpenAPI document: its JSON and a stable hash of those bytes.
#[derive(Debug)]
pub struct Document {
    /// The document as JSON.
    pub bytes: Vec<u8>,
    /// Upper-case hex digest of `bytes`; it goes into the `?hash=` of the discovery index, so
    /// clients may cache the hashed URL forever.
    pub hash: String,
}

/// The `/openapi/v3` discovery index:
/// `{"paths":{"api/v1":{"serverRelativeURL":"/openapi/v3/api/v1?hash=<HEX>"},...}}`.
pub fn index() -> Value {
    let mut paths = Map::new();
    for (gv, doc) in &documents().docs {
        let url = format!("/openapi/v3/{gv}?hash={}", doc.hash);
        paths.insert(gv.clone(), json!({ "serverRelativeURL": url }));
    }
    json!({ "paths": paths })
}

/// The document of one group-version, named as in the index (`api/v1`, `apis/apps/v1`).
pub fn document(gv_path: &str) -> Option<Arc<Document>> {
    documents().docs.get(gv_path).cloned()
}

/// The index path of a resource's group-version: `api/v1` or `apis/apps/v1`.
pub fn gv_path(r: &Resource) -> String {
    if r.group.is_empty() {
        format!("api/{}", r.version)
    } else {
        format!("apis/{}/{}", r.group, r.version)
    }
}

struct Documents {
    docs: BTreeMap<String, Arc<Document>>,
}

fn documents() -> &'static Documents {
    static DOCS: OnceLock<Documents> = OnceLock::new();
    DOCS.get_or_init(|| {
        let mut gvs: Vec<String> = Vec::new();
        for r in RESOURCES {
            let gv = gv_path(r);
            if !gvs.contains(&gv) {
                gvs.push(gv);
            }
        }
        let docs = gvs
            .into_iter()
            .map(|gv| {
                let value = build_document(&gv);
                // Serialising a `Value` cannot fail: its keys are strings and it holds no
                // non-finite floats.
                let bytes =
                    serde_json::to_vec(&value).expect("a serde_json::Value always serialises");
                let hash = digest(&bytes);
                (gv, Arc::new(Document { bytes, hash }))
            })
            .collect();
        Documents { docs }
    })
}

/// A 128-bit FNV-1a digest in upper-case hex. It only has to change when the bytes change.
fn digest(bytes: &[u8]) -> String {
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in bytes {
        h ^= u128::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    format!("{h:032X}")
}

/// Every schema of every served kind, with Kubernetes' extensions added.
struct Catalog {
    schemas: Map<String, Value>,
    /// The schema name of each served resource, in registry order.
    kinds: Vec<(&'static Resource, String)>,
}

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(build_catalog)
}

fn add<T: JsonSchema>(generator: &mut SchemaGenerator) -> Option<String> {
    generator.subschema_for::<T>();
    Some(T::schema_name().into_owned())
}

/// Registers the k8s-openapi type of a served kind and returns its schema name.
fn kind_schema(generator: &mut SchemaGenerator, r: &Resource) -> Option<String> {
    match (r.group, r.kind) {
        ("", "Pod") => add::<core::Pod>(generator),
        ("", "ReplicationController") => add::<core::ReplicationController>(generator),
        ("", "Service") => add::<core::Service>(generator),
        ("", "Namespace") => add::<core::Namespace>(generator),
        ("", "ConfigMap") => add::<core::ConfigMap>(generator),
        ("", "Secret") => add::<core::Secret>(generator),
        ("", "ServiceAccount") => add::<core::ServiceAccount>(generator),
        ("", "Event") => add::<core::Event>(generator),
        ("", "Endpoints") => add::<core::Endpoints>(generator),
        ("", "Node") => add::<core::Node>(generator),
        ("", "PersistentVolume") => add::<core::PersistentVolume>(generator),
        ("", "PersistentVolumeClaim") => add::<core::PersistentVolumeClaim>(generator),
        ("apps", "DaemonSet") => add::<apps::DaemonSet>(generator),
        ("apps", "Deployment") => add::<apps::Deployment>(generator),
        ("apps", "ReplicaSet") => add::<apps::ReplicaSet>(generator),
        ("apps", "StatefulSet") => add::<apps::StatefulSet>(generator),
        ("batch", "CronJob") => add::<batch::CronJob>(generator),
        ("batch", "Job") => add::<batch::Job>(generator),
        ("storage.k8s.io", "StorageClass") => add::<storage::StorageClass>(generator),
        ("coordination.k8s.io", "Lease") => add::<coordination::Lease>(generator),
        ("events.k8s.io", "Event") => add::<events::Event>(generator),
        _ => None,
    }
}

fn build_catalog() -> Catalog {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut kinds = Vec::new();
    for r in RESOURCES {
        if let Some(name) = kind_schema(&mut generator, r) {
            kinds.push((r, name));
        }
    }
    add::<meta::DeleteOptions>(&mut generator);
    add::<meta::Status>(&mut generator);
    add::<meta::Patch>(&mut generator);
    add::<meta::ListMeta>(&mut generator);
    // The OpenAPI 3 transforms turn `$ref`s with sibling descriptions into `allOf: [$ref]`, as
    // Kubernetes writes them.
    let mut schemas = generator.take_definitions(true);

    fix_scalar_formats(&mut schemas);
    for ext in table::FIELDS {
        let Some(prop) = schemas
            .get_mut(ext.schema)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(ext.field))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        if !ext.patch_strategy.is_empty() {
            prop.insert(
                "x-kubernetes-patch-strategy".into(),
                ext.patch_strategy.into(),
            );
        }
        if !ext.merge_key.is_empty() {
            prop.insert("x-kubernetes-patch-merge-key".into(), ext.merge_key.into());
        }
        if !ext.list_type.is_empty() {
            prop.insert("x-kubernetes-list-type".into(), ext.list_type.into());
        }
        if !ext.map_keys.is_empty() {
            prop.insert("x-kubernetes-list-map-keys".into(), json!(ext.map_keys));
        }
        if !ext.map_type.is_empty() {
            prop.insert("x-kubernetes-map-type".into(), ext.map_type.into());
        }
    }
    for (name, map_type) in table::ATOMIC_STRUCTS {
        if let Some(s) = schemas.get_mut(*name).and_then(Value::as_object_mut) {
            s.insert("x-kubernetes-map-type".into(), (*map_type).into());
        }
    }
    for (r, name) in &kinds {
        let gvk = json!([{ "group": r.group, "kind": r.kind, "version": r.version }]);
        if let Some(s) = schemas.get_mut(name).and_then(Value::as_object_mut) {
            s.insert("x-kubernetes-group-version-kind".into(), gvk);
        }
        schemas.insert(format!("{name}List"), list_schema(r, name));
    }
    Catalog { schemas, kinds }
}

/// k8s-openapi marks both IntOrString and Quantity with `x-kubernetes-int-or-string` and no
/// type; Kubernetes' documents give them `oneOf` alternatives, which `kubectl explain` shows.
fn fix_scalar_formats(schemas: &mut Map<String, Value>) {
    if let Some(s) = schemas
        .get_mut("io.k8s.apimachinery.pkg.util.intstr.IntOrString")
        .and_then(Value::as_object_mut)
    {
        s.insert("format".into(), "int-or-string".into());
        s.insert(
            "oneOf".into(),
            json!([{ "type": "integer" }, { "type": "string" }]),
        );
    }
    if let Some(s) = schemas
        .get_mut("io.k8s.apimachinery.pkg.api.resource.Quantity")
        .and_then(Value::as_object_mut)
    {
        s.remove("x-kubernetes-int-or-string");
        s.insert(
            "oneOf".into(),
            json!([{ "type": "string" }, { "type": "number" }]),
        );
    }
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{name}") })
}

fn list_schema(r: &Resource, item: &str) -> Value {
    json!({
        "description": format!("{} is a list of {} objects.", r.list_kind(), r.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
                "type": "string"
            },
            "items": {
                "description": format!("List of {}.", r.plural),
                "type": "array",
                "items": schema_ref(item)
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "type": "string"
            },
            "metadata": {
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "allOf": [schema_ref(LIST_META)]
            }
        },
        "x-kubernetes-group-version-kind": [{ "group": r.group, "kind": r.list_kind(), "version": r.version }]
    })
}

/// The names of the schemas `value` refers to, directly.
fn refs_in(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref")
                && let Some(name) = r.strip_prefix(REF_PREFIX)
            {
                out.push(name.to_string());
            }
            m.values().for_each(|v| refs_in(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| refs_in(v, out)),
        _ => {}
    }
}

fn build_document(gv: &str) -> Value {
    let cat = catalog();
    let served: Vec<&(&Resource, String)> =
        cat.kinds.iter().filter(|(r, _)| gv_path(r) == gv).collect();

    // The schemas this document needs: its kinds and lists, the common request and reply
    // types, and everything they refer to.
    let mut wanted: Vec<String> = vec![DELETE_OPTIONS.into(), STATUS.into(), PATCH.into()];
    for (_, name) in &served {
        wanted.push(name.clone());
        wanted.push(format!("{name}List"));
    }
    let mut included = BTreeSet::new();
    let mut components = Map::new();
    while let Some(name) = wanted.pop() {
        if !included.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = cat.schemas.get(&name) {
            refs_in(schema, &mut wanted);
            components.insert(name, schema.clone());
        }
    }

    let mut paths = Map::new();
    for (r, name) in &served {
        resource_paths(r, name, &mut paths);
    }
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "v1.32.4" },
        "paths": paths,
        "components": { "schemas": components }
    })
}

/// `core_v1`, `apps_v1`, `storage_v1`: Kubernetes' tag for a group-version.
fn tag(r: &Resource) -> String {
    let group = if r.group.is_empty() {
        "core"
    } else {
        r.group.split('.').next().unwrap_or(r.group)
    };
    format!("{group}_{}", r.version)
}

/// `CoreV1`, `AppsV1`, `StorageV1`: the middle of Kubernetes' operation ids.
fn op_group(r: &Resource) -> String {
    let mut out = String::new();
    let group = if r.group.is_empty() {
        "core"
    } else {
        r.group.split('.').next().unwrap_or(r.group)
    };
    for word in [group, r.version] {
        let mut chars = word.chars();
        if let Some(c) = chars.next() {
            out.extend(c.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

fn query(name: &str, description: &str, ty: &str) -> Value {
    json!({ "name": name, "in": "query", "description": description, "schema": { "type": ty, "uniqueItems": true } })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "description": description, "required": true, "schema": { "type": "string", "uniqueItems": true } })
}

fn dry_run() -> Value {
    query(
        "dryRun",
        "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed",
        "string",
    )
}

fn field_manager() -> Value {
    query(
        "fieldManager",
        "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.",
        "string",
    )
}

/// kubectl looks for this parameter on the PATCH operation of a kind to decide that the
/// server validates fields itself (`?fieldValidation=Strict`).
fn field_validation() -> Value {
    query(
        "fieldValidation",
        "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default. - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.",
        "string",
    )
}

fn reply(schema: &str) -> Value {
    let body = json!({ "schema": schema_ref(schema) });
    json!({
        "application/json": body,
        "application/yaml": body,
        "application/vnd.kubernetes.protobuf": body
    })
}

struct Op<'a> {
    r: &'a Resource,
    action: &'static str,
    description: String,
    operation_id: String,
    parameters: Vec<Value>,
    body: Option<Value>,
    /// Reply codes with the schema each returns.
    replies: Vec<(&'static str, &'static str, String)>,
}

impl Op<'_> {
    fn into_value(self) -> Value {
        let mut responses = Map::new();
        for (code, text, schema) in &self.replies {
            responses.insert(
                (*code).into(),
                json!({ "description": text, "content": reply(schema) }),
            );
        }
        responses.insert("401".into(), json!({ "description": "Unauthorized" }));
        let mut op = json!({
            "tags": [tag(self.r)],
            "description": self.description,
            "operationId": self.operation_id,
            "responses": responses,
            "x-kubernetes-action": self.action,
            "x-kubernetes-group-version-kind": { "group": self.r.group, "version": self.r.version, "kind": self.r.kind }
        });
        if !self.parameters.is_empty() {
            op["parameters"] = Value::Array(self.parameters);
        }
        if let Some(body) = self.body {
            op["requestBody"] = body;
        }
        op
    }
}

/// The request body of a PATCH: kubectl computes a client-side apply patch from our schemas
/// only when the strategic merge patch type is listed here.
fn patch_body() -> Value {
    let patch = json!({ "schema": schema_ref(PATCH) });
    json!({
        "content": {
            "application/apply-patch+yaml": patch,
            "application/json-patch+json": patch,
            "application/merge-patch+json": patch,
            "application/strategic-merge-patch+json": patch
        },
        "required": true
    })
}

fn object_body(schema: &str) -> Value {
    json!({ "content": { "*/*": { "schema": schema_ref(schema) } }, "required": true })
}

/// Adds the collection, item and status paths of one resource.
fn resource_paths(r: &Resource, schema: &str, paths: &mut Map<String, Value>) {
    let prefix = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let scope = if r.namespaced { "Namespaced" } else { "" };
    let (collection, item) = if r.namespaced {
        (
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural),
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
        )
    } else {
        (
            format!("{prefix}/{}", r.plural),
            format!("{prefix}/{}/{{name}}", r.plural),
        )
    };
    let g = op_group(r);
    let kind = r.kind;
    let list = format!("{schema}List");
    let mut scope_params = Vec::new();
    if r.namespaced {
        scope_params.push(path_param(
            "namespace",
            "object name and auth scope, such as for teams and projects",
        ));
    }
    let name_param = path_param("name", &format!("name of the {kind}"));
    let pretty = query(
        "pretty",
        "If 'true', then the output is pretty printed. Defaults to 'false' unless the user agent is a browser.",
        "string",
    );
    let write_params = || vec![dry_run(), field_manager(), field_validation()];

    let mut ops = Map::new();
    ops.insert(
        "get".into(),
        Op {
            r,
            action: "list",
            description: format!("list or watch objects of kind {kind}"),
            operation_id: format!("list{g}{scope}{kind}"),
            parameters: [
                "labelSelector",
                "fieldSelector",
                "limit",
                "continue",
                "resourceVersion",
                "watch",
            ]
            .iter()
            .map(|p| {
                query(
                    p,
                    &format!("the {p} of the list request"),
                    if *p == "limit" { "integer" } else { "string" },
                )
            })
            .collect(),
            body: None,
            replies: vec![("200", "OK", list.clone())],
        }
        .into_value(),
    );
    ops.insert(
        "post".into(),
        Op {
            r,
            action: "post",
            description: format!("create a {kind}"),
            operation_id: format!("create{g}{scope}{kind}"),
            parameters: write_params(),
            body: Some(object_body(schema)),
            replies: vec![
                ("200", "OK", schema.into()),
                ("201", "Created", schema.into()),
                ("202", "Accepted", schema.into()),
            ],
        }
        .into_value(),
    );
    ops.insert(
        "delete".into(),
        Op {
            r,
            action: "deletecollection",
            description: format!("delete collection of {kind}"),
            operation_id: format!("deletecollection{g}{scope}{kind}"),
            parameters: vec![
                dry_run(),
                query(
                    "labelSelector",
                    "A selector to restrict the list of returned objects by their labels.",
                    "string",
                ),
            ],
            body: Some(object_body(DELETE_OPTIONS)),
            replies: vec![("200", "OK", STATUS.into())],
        }
        .into_value(),
    );
    let mut params = scope_params.clone();
    params.push(pretty.clone());
    ops.insert("parameters".into(), Value::Array(params));
    paths.insert(collection, Value::Object(ops));

    let mut ops = Map::new();
    item_ops(r, schema, &format!("{g}{scope}{kind}"), "", &mut ops);
    ops.insert(
        "delete".into(),
        Op {
            r,
            action: "delete",
            description: format!("delete a {kind}"),
            operation_id: format!("delete{g}{scope}{kind}"),
            parameters: vec![
                dry_run(),
                query(
                    "gracePeriodSeconds",
                    "The duration in seconds before the object should be deleted.",
                    "integer",
                ),
                query(
                    "propagationPolicy",
                    "Whether and how garbage collection will be performed.",
                    "string",
                ),
            ],
            body: Some(object_body(DELETE_OPTIONS)),
            replies: vec![
                ("200", "OK", STATUS.into()),
                ("202", "Accepted", STATUS.into()),
            ],
        }
        .into_value(),
    );
    let mut params = vec![name_param.clone()];
    params.extend(scope_params.clone());
    params.push(pretty.clone());
    ops.insert("parameters".into(), Value::Array(params));
    paths.insert(item.clone(), Value::Object(ops));

    if r.subresources.contains(&"status") {
        let mut ops = Map::new();
        item_ops(
            r,
            schema,
            &format!("{g}{scope}{kind}Status"),
            " status of",
            &mut ops,
        );
        let mut params = vec![name_param];
        params.extend(scope_params);
        params.push(pretty);
        ops.insert("parameters".into(), Value::Array(params));
        paths.insert(format!("{item}/status"), Value::Object(ops));
    }

    // Listing across namespaces.
    if r.namespaced {
        let mut ops = Map::new();
        ops.insert(
            "get".into(),
            Op {
                r,
                action: "list",
                description: format!("list or watch objects of kind {kind}"),
                operation_id: format!("list{g}{kind}ForAllNamespaces"),
                parameters: Vec::new(),
                body: None,
                replies: vec![("200", "OK", list)],
            }
            .into_value(),
        );
        paths.insert(format!("{prefix}/{}", r.plural), Value::Object(ops));
    }
}

/// get, put and patch of an item (or of its status: `what` is `" status of"`).
fn item_ops(r: &Resource, schema: &str, id: &str, what: &str, ops: &mut Map<String, Value>) {
    let kind = r.kind;
    ops.insert(
        "get".into(),
        Op {
            r,
            action: "get",
            description: format!("read{what} the specified {kind}"),
            operation_id: format!("read{id}"),
            parameters: Vec::new(),
            body: None,
            replies: vec![("200", "OK", schema.into())],
        }
        .into_value(),
    );
    ops.insert(
        "put".into(),
        Op {
            r,
            action: "put",
            description: format!("replace{what} the specified {kind}"),
            operation_id: format!("replace{id}"),
            parameters: vec![dry_run(), field_manager(), field_validation()],
            body: Some(object_body(schema)),
            replies: vec![
                ("200", "OK", schema.into()),
                ("201", "Created", schema.into()),
            ],
        }
        .into_value(),
    );
    ops.insert(
        "patch".into(),
        Op {
            r,
            action: "patch",
            description: format!("partially update{what} the specified {kind}"),
            operation_id: format!("patch{id}"),
            parameters: vec![
                dry_run(),
                field_manager(),
                field_validation(),
                query("force", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.", "boolean"),
            ],
            body: Some(patch_body()),
            replies: vec![("200", "OK", schema.into()), ("201", "Created", schema.into())],
        }
        .into_value(),
    );
}

/// How a list is merged by a strategic merge patch and owned by server-side apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole (`x-kubernetes-list-type: atomic`).
    Atomic,
    /// A set of scalars (`set`).
    Set,
    /// A map keyed by the `x-kubernetes-list-map-keys` fields of its items (`map`).
    Map,
}

/// The patch extensions of one field.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatchMeta {
    /// The strategy other than `retainKeys`: `merge` or `replace` (`None` when unmarked:
    /// lists are replaced and maps merged).
    pub strategy: Option<&'static str>,
    /// Whether the strategy includes `retainKeys`.
    pub retain_keys: bool,
    /// `x-kubernetes-patch-merge-key`.
    pub merge_key: Option<&'static str>,
    /// `x-kubernetes-list-type`.
    pub list_type: Option<ListType>,
    /// `x-kubernetes-list-map-keys`.
    pub map_keys: Vec<&'static str>,
}

/// The structural shape of a schema node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// An object with named properties (a Go struct).
    Struct,
    /// An object with arbitrary keys (`additionalProperties`, a Go map).
    Map,
    /// An array.
    List,
    /// A string, number, boolean, IntOrString, Quantity, ...
    Scalar,
    /// Free-form JSON (RawExtension, FieldsV1) or unknown.
    Untyped,
}

/// A position in the schema of a served kind, for walking an object alongside its schema.
///
/// A node is the schema of one field (or list item, or map value) as its parent declares it:
/// the field's own extensions live on the node, its type's properties behind its `$ref`.
#[derive(Debug, Clone, Copy)]
pub struct SchemaNode {
    raw: &'static Value,
    /// Set when the node is a named schema itself rather than a field referring to one.
    name: Option<&'static str>,
}

impl SchemaNode {
    /// The schema of a served kind (`Pod` for `pods`).
    pub fn for_resource(r: &Resource) -> Option<SchemaNode> {
        let cat = catalog();
        let (_, name) = cat
            .kinds
            .iter()
            .find(|(k, _)| k.group == r.group && k.version == r.version && k.kind == r.kind)?;
        SchemaNode::named(name)
    }

    /// The schema named `name` (`io.k8s.api.core.v1.PodSpec`).
    pub fn named(name: &str) -> Option<SchemaNode> {
        catalog()
            .schemas
            .get_key_value(name)
            .map(|(name, raw)| SchemaNode {
                raw,
                name: Some(name.as_str()),
            })
    }

    /// The type schema behind this node's `$ref` (or `allOf: [$ref]`), followed to the end,
    /// with its name when there was a reference.
    fn resolve(self) -> (Option<&'static str>, &'static Value) {
        let schemas = &catalog().schemas;
        let mut name = None;
        let mut cur = self.raw;
        // References never form a loop of pure aliases, but bound the walk anyway.
        for _ in 0..8 {
            let target = cur
                .get("$ref")
                .or_else(|| {
                    cur.get("allOf")
                        .and_then(|a| a.get(0))
                        .and_then(|first| first.get("$ref"))
                })
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix(REF_PREFIX))
                .and_then(|n| schemas.get_key_value(n));
            match target {
                Some((n, t)) => {
                    name = Some(n.as_str());
                    cur = t;
                }
                None => break,
            }
        }
        (name, cur)
    }

    fn resolved(self) -> &'static Value {
        self.resolve().1
    }

    /// The name of the type schema this node refers to (`io.k8s.api.core.v1.Container`).
    pub fn type_name(self) -> Option<&'static str> {
        self.resolve().0.or(self.name)
    }

    /// The shape of this node's type.
    pub fn shape(self) -> Shape {
        let s = self.resolved();
        if s.get("properties").is_some() {
            return Shape::Struct;
        }
        match s.get("type").and_then(Value::as_str) {
            Some("array") => Shape::List,
            Some("object") if s.get("additionalProperties").is_some() => Shape::Map,
            Some("object") | None
                if s.get("x-kubernetes-int-or-string").is_none() && s.get("oneOf").is_none() =>
            {
                Shape::Untyped
            }
            _ => Shape::Scalar,
        }
    }

    /// The schema of field `name`, when this node is a struct that has it.
    pub fn field(self, name: &str) -> Option<SchemaNode> {
        self.resolved()
            .get("properties")?
            .get(name)
            .map(|raw| SchemaNode { raw, name: None })
    }

    /// The schema of the items, when this node is a list.
    pub fn items(self) -> Option<SchemaNode> {
        self.resolved()
            .get("items")
            .map(|raw| SchemaNode { raw, name: None })
    }

    /// The schema of the values, when this node is a map.
    pub fn values(self) -> Option<SchemaNode> {
        self.resolved()
            .get("additionalProperties")
            .filter(|v| v.is_object())
            .map(|raw| SchemaNode { raw, name: None })
    }

    /// The patch extensions declared on this field.
    pub fn patch_meta(self) -> PatchMeta {
        let ext = |k: &str| self.raw.get(k).and_then(Value::as_str);
        let mut meta = PatchMeta {
            merge_key: ext("x-kubernetes-patch-merge-key"),
            ..PatchMeta::default()
        };
        if let Some(strategies) = ext("x-kubernetes-patch-strategy") {
            for s in strategies.split(',') {
                match s {
                    "retainKeys" => meta.retain_keys = true,
                    "merge" => meta.strategy = Some("merge"),
                    "replace" => meta.strategy = Some("replace"),
                    _ => {}
                }
            }
        }
        meta.list_type = match ext("x-kubernetes-list-type") {
            Some("atomic") => Some(ListType::Atomic),
            Some("set") => Some(ListType::Set),
            Some("map") => Some(ListType::Map),
            _ => None,
        };
        if let Some(keys) = self
            .raw
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
        {
            meta.map_keys = keys.iter().filter_map(Value::as_str).collect();
        }
        meta
    }

    /// Whether this struct or map is owned as a whole (`x-kubernetes-map-type: atomic` on the
    /// field or on its type; a field may also say `granular` to override its type).
    pub fn is_atomic_map(self) -> bool {
        match self
            .raw
            .get("x-kubernetes-map-type")
            .and_then(Value::as_str)
        {
            Some(t) => t == "atomic",
            None => {
                self.resolved()
                    .get("x-kubernetes-map-type")
                    .and_then(Value::as_str)
                    == Some("atomic")
            }
        }
    }
}

/// The patch extensions of `field` in schema `schema` (`io.k8s.api.core.v1.PodSpec`, `volumes`).
pub fn patch_meta(schema: &str, field: &str) -> Option<PatchMeta> {
    SchemaNode::named(schema)?
        .field(field)
        .map(SchemaNode::patch_meta)
}

#[cfg(test)]
mod tests;

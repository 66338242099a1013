//! Strict decoding: fields an object has that its kind's schema does not, found by walking the
//! object alongside the schema k8s-openapi generates for the kind.

use crate::registry::Resource;
use k8s_openapi::api::{apps, batch, coordination, core::v1 as core, events, storage};
use schemars::JsonSchema;
use schemars::generate::SchemaGenerator;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::OnceLock;

fn schema<T: JsonSchema>() -> Value {
    SchemaGenerator::default()
        .into_root_schema_for::<T>()
        .to_value()
}

/// Every served kind's root schema, by `(apiVersion, kind)`; built once, on first use.
fn schemas() -> &'static BTreeMap<(&'static str, &'static str), Value> {
    static SCHEMAS: OnceLock<BTreeMap<(&'static str, &'static str), Value>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        BTreeMap::from([
            (("v1", "Pod"), schema::<core::Pod>()),
            (
                ("v1", "ReplicationController"),
                schema::<core::ReplicationController>(),
            ),
            (("v1", "Service"), schema::<core::Service>()),
            (("v1", "Namespace"), schema::<core::Namespace>()),
            (("v1", "ConfigMap"), schema::<core::ConfigMap>()),
            (("v1", "Secret"), schema::<core::Secret>()),
            (("v1", "ServiceAccount"), schema::<core::ServiceAccount>()),
            (("v1", "Event"), schema::<core::Event>()),
            (("v1", "Endpoints"), schema::<core::Endpoints>()),
            (("v1", "Node"), schema::<core::Node>()),
            (
                ("v1", "PersistentVolume"),
                schema::<core::PersistentVolume>(),
            ),
            (
                ("v1", "PersistentVolumeClaim"),
                schema::<core::PersistentVolumeClaim>(),
            ),
            (("apps/v1", "DaemonSet"), schema::<apps::v1::DaemonSet>()),
            (("apps/v1", "Deployment"), schema::<apps::v1::Deployment>()),
            (("apps/v1", "ReplicaSet"), schema::<apps::v1::ReplicaSet>()),
            (
                ("apps/v1", "StatefulSet"),
                schema::<apps::v1::StatefulSet>(),
            ),
            (("batch/v1", "CronJob"), schema::<batch::v1::CronJob>()),
            (("batch/v1", "Job"), schema::<batch::v1::Job>()),
            (
                ("storage.k8s.io/v1", "StorageClass"),
                schema::<storage::v1::StorageClass>(),
            ),
            (
                ("coordination.k8s.io/v1", "Lease"),
                schema::<coordination::v1::Lease>(),
            ),
            (("events.k8s.io/v1", "Event"), schema::<events::v1::Event>()),
        ])
    })
}

/// Follows `$ref`s (`#/$defs/...`) to the schema they name.
fn resolve<'a>(mut schema: &'a Value, root: &'a Value) -> &'a Value {
    for _ in 0..32 {
        let Some(r) = schema.get("$ref").and_then(Value::as_str) else {
            break;
        };
        match root.pointer(r.trim_start_matches('#')) {
            Some(s) => schema = s,
            None => break,
        }
    }
    schema
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(schema: &Value, root: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let schema = resolve(schema, root);
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, v) in map {
                if let Some(s) = props.and_then(|p| p.get(k)) {
                    walk(s, root, v, &join(path, k), out);
                } else if let Some(a) = additional {
                    walk(a, root, v, &join(path, k), out);
                } else if props.is_some() {
                    out.push(join(path, k));
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    walk(item_schema, root, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// The paths of the fields in `obj` that `r`'s kind does not define, in document order.
pub fn unknown_fields(r: &Resource, obj: &Value) -> Vec<String> {
    let api_version = r.api_version();
    let found = schemas()
        .iter()
        .find(|((v, k), _)| *v == api_version && *k == r.kind);
    let Some((_, root)) = found else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk(root, root, obj, "", &mut out);
    out
}

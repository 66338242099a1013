//! Strict decoding: fields an object has that its kind's schema does not, found by walking the
//! object alongside the kind's OpenAPI schema (the one `/openapi/v3` serves).

use crate::openapi::{SchemaNode, Shape};
use crate::registry::Resource;
use serde_json::Value;

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(node: SchemaNode, value: &Value, path: &str, out: &mut Vec<String>) {
    match (value, node.shape()) {
        (Value::Object(map), Shape::Struct) => {
            for (k, v) in map {
                match node.field(k) {
                    Some(field) => walk(field, v, &join(path, k), out),
                    None => out.push(join(path, k)),
                }
            }
        }
        (Value::Object(map), Shape::Map) => {
            if let Some(values) = node.values() {
                for (k, v) in map {
                    walk(values, v, &join(path, k), out);
                }
            }
        }
        (Value::Array(items), Shape::List) => {
            if let Some(item) = node.items() {
                for (i, v) in items.iter().enumerate() {
                    walk(item, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// The paths of the fields in `obj` that `r`'s kind does not define, in document order.
pub fn unknown_fields(r: &Resource, obj: &Value) -> Vec<String> {
    let Some(root) = SchemaNode::for_resource(r) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk(root, obj, "", &mut out);
    out
}

//! Server-side printing: wraps objects in a `meta.k8s.io/v1` Table with kubectl's columns.

use crate::request::Query;
use api::registry::Resource;
use jiff::Timestamp;
use serde_json::{Value, json};

/// A Table of `objs`. `list_meta` is the list's metadata (resourceVersion, continue); for a single
/// object, the object's resourceVersion is used.
pub fn table(r: &Resource, objs: &[Value], list_meta: Option<Value>, query: &Query) -> Value {
    let now = Timestamp::now();
    let include = query.non_empty("includeObject").unwrap_or("Metadata");
    let rows: Vec<Value> = objs.iter().map(|o| row(r, o, include, now)).collect();
    let metadata = list_meta.unwrap_or_else(|| {
        json!({"resourceVersion": objs.first().and_then(|o| o.pointer("/metadata/resourceVersion")).cloned().unwrap_or(json!(""))})
    });
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": api::table::column_definitions(r),
        "rows": rows,
    })
}

/// One row of a Table, with the object as `includeObject` asks (None, Metadata or Object).
pub fn row(r: &Resource, obj: &Value, include: &str, now: Timestamp) -> Value {
    let mut row = json!({"cells": api::table::cells(r, obj, now)});
    match include {
        "None" => {}
        "Object" => row["object"] = obj.clone(),
        _ => {
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
            })
        }
    }
    row
}

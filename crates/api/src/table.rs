//! Server-side printing: the `meta.k8s.io/v1` Table columns and cells kubectl shows for `get`.
//!
//! Every kind has the columns kube-apiserver's printers define
//! (`pkg/printers/internalversion/printers.go`): name, type, format, description and priority,
//! with descriptions taken from the same API documentation the upstream `SwaggerDoc()` calls
//! read. Cells are always the wide set, as the apiserver prints them; kubectl drops the
//! `priority: 1` columns itself unless `-o wide`. Ages use apimachinery's `HumanDuration`
//! ([`human_duration`]).
//!
//! Layout: this file holds the column registry, dispatch and shared formatting; `table/pod.rs`
//! holds the Pod status algorithm, `table/core.rs` the other core kinds and `table/workloads.rs`
//! the apps and batch kinds.

use crate::registry::{RESOURCES, Resource};
use crate::selector::LabelSelector;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

mod core;
mod pod;
mod workloads;

/// One column of a Table, as `metav1.TableColumnDefinition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The column's name; kubectl upper-cases it.
    pub name: &'static str,
    /// The OpenAPI type of the cells (`string`, `integer`, `boolean`).
    pub kind: &'static str,
    /// `name` for the column holding the object's name, else empty.
    pub format: &'static str,
    /// Human readable description.
    pub description: String,
    /// 0 for the default view, 1 for `-o wide` only.
    pub priority: i32,
}

impl Column {
    /// The JSON form kubectl reads.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.kind,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// Builds a column list from `(name, type, format, priority, description)` tuples.
fn columns(specs: Vec<(&'static str, &'static str, &'static str, i32, String)>) -> Vec<Column> {
    specs
        .into_iter()
        .map(|(name, kind, format, priority, description)| Column {
            name,
            kind,
            format,
            description,
            priority,
        })
        .collect()
}

/// The description of `field` in the API documentation of `T`, as the printers' `SwaggerDoc()` gives it.
fn doc<T: schemars::JsonSchema>(field: &str) -> String {
    let mut generator = schemars::SchemaGenerator::default();
    let schema = T::json_schema(&mut generator);
    schema
        .as_value()
        .pointer(&format!("/properties/{field}/description"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

type ObjectMeta = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The NAME column every printer starts with.
fn name_column() -> (&'static str, &'static str, &'static str, i32, String) {
    ("Name", "string", "name", 0, doc::<ObjectMeta>("name"))
}

/// The AGE column.
fn age_column() -> (&'static str, &'static str, &'static str, i32, String) {
    (
        "Age",
        "string",
        "",
        0,
        doc::<ObjectMeta>("creationTimestamp"),
    )
}

/// The columns of a kind; unknown kinds get NAME and AGE.
pub fn columns_for(r: &Resource) -> Vec<Column> {
    match (r.group, r.kind) {
        ("", "Pod") => pod::columns(),
        ("apps", _) | ("batch", _) | ("", "ReplicationController") => {
            workloads::columns(r.kind).unwrap_or_else(|| columns(vec![name_column(), age_column()]))
        }
        _ => core::columns(r.kind).unwrap_or_else(|| columns(vec![name_column(), age_column()])),
    }
}

/// The JSON array for a Table's `columnDefinitions`.
pub fn column_definitions(r: &Resource) -> Value {
    static CACHE: OnceLock<HashMap<(&'static str, &'static str, &'static str), Value>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(|| {
        RESOURCES
            .iter()
            .map(|r| {
                (
                    (r.group, r.version, r.plural),
                    Value::Array(columns_for(r).iter().map(Column::to_json).collect()),
                )
            })
            .collect()
    });
    match cache.get(&(r.group, r.version, r.plural)) {
        Some(v) => v.clone(),
        None => Value::Array(columns_for(r).iter().map(Column::to_json).collect()),
    }
}

/// The cells of one row: one per column of [`column_definitions`], wide ones included.
pub fn cells(r: &Resource, obj: &Value, now: Timestamp) -> Vec<Value> {
    let ctx = Ctx { obj, now };
    match (r.group, r.kind) {
        ("", "Pod") => pod::cells(&ctx),
        ("apps", _) | ("batch", _) | ("", "ReplicationController") => {
            workloads::cells(r.kind, &ctx)
                .unwrap_or_else(|| vec![json!(ctx.name()), json!(ctx.age())])
        }
        _ => core::cells(r.kind, &ctx).unwrap_or_else(|| vec![json!(ctx.name()), json!(ctx.age())]),
    }
}

/// apimachinery's `HumanDuration`: `"45s"`, `"3m20s"`, `"5h10m"`, `"3d4h"`, `"400d"`, `"2y30d"`.
pub fn human_duration(d: Duration) -> String {
    human_seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `HumanDuration` on whole seconds, which may be negative when clocks disagree.
fn human_seconds(seconds: i64) -> String {
    // Up to a second in the future counts as now; more is a clock problem.
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Parses a `metav1.Time` or `MicroTime`; absent, null or unparsable counts as Go's zero time.
fn parse_time(v: Option<&Value>) -> Option<Timestamp> {
    v.and_then(Value::as_str)
        .and_then(|s| s.parse::<Timestamp>().ok())
}

/// `translateTimestampSince`: the age of `t` at `now`, `<unknown>` for the zero time.
fn since(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        Some(t) => human_seconds(now.duration_since(t).as_secs()),
        None => "<unknown>".to_string(),
    }
}

/// The object being printed and the time to print it at.
struct Ctx<'a> {
    obj: &'a Value,
    now: Timestamp,
}

impl<'a> Ctx<'a> {
    fn at(&self, path: &str) -> Option<&'a Value> {
        self.obj.pointer(path)
    }

    /// The string at a JSON pointer, or "".
    fn str(&self, path: &str) -> &'a str {
        self.at(path).and_then(Value::as_str).unwrap_or_default()
    }

    /// The integer at a JSON pointer, or `default`.
    fn int(&self, path: &str, default: i64) -> i64 {
        self.at(path).and_then(Value::as_i64).unwrap_or(default)
    }

    fn array(&self, path: &str) -> &'a [Value] {
        self.at(path)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    fn object(&self, path: &str) -> Option<&'a Map<String, Value>> {
        self.at(path).and_then(Value::as_object)
    }

    fn name(&self) -> &'a str {
        self.str("/metadata/name")
    }

    fn age(&self) -> String {
        self.since(self.at("/metadata/creationTimestamp"))
    }

    fn since(&self, v: Option<&Value>) -> String {
        since(parse_time(v), self.now)
    }

    fn deleting(&self) -> bool {
        self.at("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null())
    }

    fn annotation(&self, key: &str) -> Option<&'a str> {
        self.object("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
    }
}

/// `labels.FormatLabels`: `k=v` pairs sorted by key, `<none>` when empty.
fn format_labels(labels: Option<&Map<String, Value>>) -> String {
    let mut pairs: Vec<String> = labels
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        "<none>".to_string()
    } else {
        pairs.join(",")
    }
}

/// `metav1.FormatLabelSelector`: the canonical selector string, `<none>` when empty, `<error>`
/// when it does not convert.
fn format_label_selector(selector: Option<&Value>) -> String {
    match LabelSelector::from_label_selector(selector) {
        Ok(s) => {
            let text = s.to_string();
            if text.is_empty() {
                "<none>".to_string()
            } else {
                text
            }
        }
        Err(_) => "<error>".to_string(),
    }
}

/// `layoutContainerCells`: container names and images, comma separated.
fn container_cells(containers: &[Value]) -> (String, String) {
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c.get("name").and_then(Value::as_str).unwrap_or_default())
        .collect();
    let images: Vec<&str> = containers
        .iter()
        .map(|c| c.get("image").and_then(Value::as_str).unwrap_or_default())
        .collect();
    (names.join(","), images.join(","))
}

#[cfg(test)]
mod tests;

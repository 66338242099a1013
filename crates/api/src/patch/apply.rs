//! Server-side apply (`application/apply-patch+yaml`) and the field ownership every write
//! records in `metadata.managedFields`, after sigs.k8s.io/structured-merge-diff and
//! apiserver's fieldmanager.
//!
//! Each manager owns a set of fields, written as Kubernetes writes FieldsV1:
//! `{"f:spec":{"f:containers":{"k:{\"name\":\"date\"}":{".":{},"f:image":{}}}}}`.
//! - An ordinary write ([`record_update`], operation `Update`) gives its manager the fields it
//!   added or changed and takes them from everyone else, silently.
//! - An apply ([`apply`], operation `Apply`) makes the manager own exactly the fields of its
//!   configuration. A field another manager owns with a different value is a conflict, unless
//!   forced, which moves the field. Fields the manager applied before and no longer applies
//!   are removed from the object when nobody else owns them.
//!
//! Lists are owned by item (`k:` for list-type `map`, `v:` for `set`) or whole (`atomic`),
//! as the schema's `x-kubernetes-list-type` says; lists without one follow their patch
//! strategy, as Kubernetes' schema conversion does.

use crate::openapi::{ListType, SchemaNode, Shape};
use crate::registry::Resource;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One element of a field path, in FieldsV1 spelling: `f:name`, `k:{"name":"x"}`, `v:"a"`,
/// `i:0`.
type Element = String;
/// A field path from the object's root.
type Path = Vec<Element>;
/// A set of fields; the flag tells whether the field is a leaf (a value) rather than a
/// struct, map or list item that holds other owned fields.
type FieldSet = BTreeMap<Path, bool>;

/// A field owned by another manager with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The manager as Kubernetes prints it: `"kubectl"` for an applier,
    /// `"kubectl-client-side-apply" using v1` for an updater.
    pub manager: String,
    /// The field: `.spec.containers[name="date"].image`.
    pub field: String,
}

/// Why an apply failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change (409 Conflict, reason `Conflict`, one
    /// `FieldManagerConflict` cause per entry).
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The applied configuration is not an object (400).
    #[error("invalid object: the applied configuration must be a JSON object")]
    NotAnObject,
}

fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [one] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            one.manager, one.field
        );
    }
    let mut by_manager: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for c in conflicts {
        by_manager.entry(&c.manager).or_default().push(&c.field);
    }
    let mut lines = Vec::new();
    for (manager, fields) in by_manager {
        lines.push(format!("conflicts with {manager}:"));
        lines.extend(fields.into_iter().map(|f| format!("- {f}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Identity fields the API server sets itself; nobody owns them.
const IGNORED: &[&[&str]] = &[
    &["f:apiVersion"],
    &["f:kind"],
    &["f:metadata", "f:name"],
    &["f:metadata", "f:namespace"],
    &["f:metadata", "f:uid"],
    &["f:metadata", "f:resourceVersion"],
    &["f:metadata", "f:generation"],
    &["f:metadata", "f:creationTimestamp"],
    &["f:metadata", "f:selfLink"],
    &["f:metadata", "f:managedFields"],
    &["f:metadata", "f:deletionTimestamp"],
];

fn ignored(path: &Path) -> bool {
    let metadata_itself = path.len() == 1 && path[0] == "f:metadata";
    metadata_itself
        || IGNORED
            .iter()
            .any(|i| path.len() >= i.len() && path.iter().zip(i.iter()).all(|(a, b)| a == b))
}

/// How a list field is owned.
fn list_kind(field: Option<SchemaNode>) -> (ListType, Vec<&'static str>) {
    let Some(f) = field else {
        return (ListType::Atomic, Vec::new());
    };
    let meta = f.patch_meta();
    match meta.list_type {
        Some(ListType::Map) => (ListType::Map, meta.map_keys),
        Some(t) => (t, Vec::new()),
        None => match (meta.strategy, meta.merge_key) {
            (Some("merge"), Some(k)) => (ListType::Map, vec![k]),
            (Some("merge"), None) => (ListType::Set, Vec::new()),
            _ => (ListType::Atomic, Vec::new()),
        },
    }
}

/// `k:{"name":"x"}` for an item of a list keyed by `keys` (Kubernetes writes the key fields
/// sorted by name).
fn key_element(item: &Value, keys: &[&str]) -> Option<Element> {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = item.get(*k) {
            m.insert((*k).to_string(), v.clone());
        }
    }
    if m.is_empty() {
        return None;
    }
    Some(format!("k:{}", Value::Object(m)))
}

/// Every field of `value`, walking alongside `schema`.
fn collect(value: &Value, schema: Option<SchemaNode>, path: &mut Path, out: &mut FieldSet) {
    match value {
        Value::Object(m) => {
            let atomic = schema.is_some_and(SchemaNode::is_atomic_map);
            if m.is_empty() || atomic || schema.is_some_and(|s| s.shape() == Shape::Untyped) {
                out.insert(path.clone(), true);
                return;
            }
            // Maps are members of their own (`"."`) once they exist; structs are not, as
            // Kubernetes' non-pointer Go structs always exist. (Pointer structs, which
            // Kubernetes does record, cannot be told apart from the schema.)
            if !path.is_empty() && !schema.is_some_and(|s| s.shape() == Shape::Struct) {
                out.insert(path.clone(), false);
            }
            for (k, v) in m {
                let child = schema.and_then(|s| match s.shape() {
                    Shape::Struct => s.field(k),
                    Shape::Map => s.values(),
                    _ => None,
                });
                path.push(format!("f:{k}"));
                collect(v, child, path, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            let (kind, keys) = list_kind(schema);
            let item_schema = schema.and_then(SchemaNode::items);
            match kind {
                ListType::Atomic => {
                    out.insert(path.clone(), true);
                }
                ListType::Set => {
                    for item in items {
                        path.push(format!("v:{item}"));
                        out.insert(path.clone(), true);
                        path.pop();
                    }
                }
                ListType::Map => {
                    for item in items {
                        let Some(element) = key_element(item, &keys) else {
                            continue;
                        };
                        path.push(element);
                        collect(item, item_schema, path, out);
                        // A keyed item is itself owned, even when it holds only its keys.
                        out.insert(path.clone(), false);
                        path.pop();
                    }
                }
            }
        }
        _ => {
            out.insert(path.clone(), true);
        }
    }
}

fn field_set(object: &Value, kind: &Resource) -> FieldSet {
    let mut out = FieldSet::new();
    collect(
        object,
        SchemaNode::for_resource(kind),
        &mut Vec::new(),
        &mut out,
    );
    out.retain(|p, _| !p.is_empty() && !ignored(p));
    out
}

/// The value at `path` in `value`.
fn lookup<'a>(value: &'a Value, path: &[Element]) -> Option<&'a Value> {
    let mut cur = value;
    for e in path {
        cur = if let Some(f) = e.strip_prefix("f:") {
            cur.get(f)?
        } else if let Some(k) = e.strip_prefix("k:") {
            let keys: Map<String, Value> = serde_json::from_str(k).ok()?;
            cur.as_array()?
                .iter()
                .find(|item| keys.iter().all(|(kk, kv)| item.get(kk) == Some(kv)))?
        } else if let Some(v) = e.strip_prefix("v:") {
            let v: Value = serde_json::from_str(v).ok()?;
            cur.as_array()?.iter().find(|item| **item == v)?
        } else if let Some(i) = e.strip_prefix("i:") {
            cur.as_array()?.get(i.parse::<usize>().ok()?)?
        } else {
            return None;
        };
    }
    Some(cur)
}

/// Removes the field at `path` from `value` (a key, or a list item).
fn remove(value: &mut Value, path: &[Element]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut cur = value;
    for e in parent_path {
        let next = if let Some(f) = e.strip_prefix("f:") {
            cur.get_mut(f)
        } else {
            let found = lookup(cur, std::slice::from_ref(e)).cloned();
            match (found, cur.as_array_mut()) {
                (Some(item), Some(items)) => items.iter_mut().find(|i| **i == item),
                _ => None,
            }
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(item) = lookup(cur, std::slice::from_ref(last)).cloned()
        && let Some(items) = cur.as_array_mut()
    {
        items.retain(|i| *i != item);
    }
}

/// A path as Kubernetes prints it in conflicts: `.spec.containers[name="date"].image`.
fn display_path(path: &[Element]) -> String {
    let mut out = String::new();
    for e in path {
        if let Some(f) = e.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = e.strip_prefix("k:") {
            let keys: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = e.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        } else if let Some(i) = e.strip_prefix("i:") {
            out.push_str(&format!("[{i}]"));
        }
    }
    out
}

/// FieldsV1 JSON for a set: a trie of elements, with `"."` marking a member that also has
/// members below it.
fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set.keys() {
        let mut cur = &mut root;
        for e in path {
            let next = cur.entry(e.clone()).or_insert_with(|| json!({}));
            // Every value in the trie is an object: inserted as one just above.
            cur = next.as_object_mut().expect("trie nodes are objects");
        }
    }
    for (path, leaf) in set {
        if *leaf {
            continue;
        }
        let mut cur = &mut root;
        for e in path {
            cur = cur
                .get_mut(e)
                .and_then(Value::as_object_mut)
                .expect("every set path is in the trie");
        }
        if !cur.is_empty() {
            cur.insert(".".into(), json!({}));
        }
    }
    Value::Object(root)
}

fn from_fields_v1(fields: &Value, path: &mut Path, out: &mut FieldSet) {
    let Some(m) = fields.as_object() else { return };
    for (k, v) in m {
        if k == "." {
            out.insert(path.clone(), false);
            continue;
        }
        path.push(k.clone());
        if v.as_object().is_some_and(Map::is_empty) {
            out.insert(path.clone(), true);
        } else {
            from_fields_v1(v, path, out);
        }
        path.pop();
    }
}

/// Who makes a write: a field manager, and the subresource (`status`) it writes through.
/// Kubernetes keeps one `managedFields` entry per manager, operation and subresource.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    /// The field manager.
    pub manager: &'a str,
    /// The subresource written through, if any.
    pub subresource: Option<&'a str>,
}

impl<'a> Writer<'a> {
    /// `manager` writing the object itself.
    pub const fn of(manager: &'a str) -> Self {
        Writer {
            manager,
            subresource: None,
        }
    }

    /// Whether `e` is this writer's entry for `operation`.
    fn owns(&self, e: &Entry, operation: &str) -> bool {
        e.manager == self.manager
            && e.operation == operation
            && e.subresource.as_deref() == self.subresource
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: Option<String>,
    fields: FieldSet,
}

impl Entry {
    fn parse(v: &Value) -> Option<Entry> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let mut fields = FieldSet::new();
        if let Some(f) = v.get("fieldsV1") {
            from_fields_v1(f, &mut Vec::new(), &mut fields);
        }
        Some(Entry {
            manager: s("manager")?,
            operation: s("operation")?,
            api_version: s("apiVersion").unwrap_or_default(),
            time: s("time"),
            subresource: s("subresource"),
            fields,
        })
    }

    fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), self.manager.clone().into());
        m.insert("operation".into(), self.operation.clone().into());
        m.insert("apiVersion".into(), self.api_version.clone().into());
        if let Some(t) = &self.time {
            m.insert("time".into(), t.clone().into());
        }
        m.insert("fieldsType".into(), "FieldsV1".into());
        m.insert("fieldsV1".into(), to_fields_v1(&self.fields));
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), s.clone().into());
        }
        Value::Object(m)
    }

    /// The manager as conflict messages print it.
    fn printed(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if let Some(s) = &self.subresource {
            out.push_str(&format!(" with subresource {s:?}"));
        }
        if self.operation == "Update" {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conflict with {}: {}", self.manager, self.field)
    }
}

fn entries_of(object: &Value) -> Vec<Entry> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|a| a.iter().filter_map(Entry::parse).collect())
        .unwrap_or_default()
}

/// Writes the entries back, dropping empty ones, in Kubernetes' order: by operation, time,
/// then manager.
fn store_entries(object: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.fields.is_empty());
    entries.sort_by(|a, b| {
        (&a.operation, &a.time, &a.manager, &a.api_version).cmp(&(
            &b.operation,
            &b.time,
            &b.manager,
            &b.api_version,
        ))
    });
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if entries.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert(
            "managedFields".into(),
            Value::Array(entries.iter().map(Entry::to_value).collect()),
        );
    }
}

/// Records the ownership of an ordinary create, update or patch (operation `Update`): the
/// manager takes the fields `new` adds or changes compared with `old`, and fields `new` no
/// longer has are dropped from every manager. `new`'s own `managedFields` are replaced. A
/// write through a subresource (`status`) is recorded in an entry of its own, which names it.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    writer: Writer,
    kind: &Resource,
    now: &str,
) {
    let mut entries = old.map(entries_of).unwrap_or_default();
    let empty = json!({});
    let before = old.unwrap_or(&empty);
    let after = field_set(new, kind);
    let before_set = field_set(before, kind);
    let changed: FieldSet = after
        .iter()
        .filter(|(p, leaf)| {
            if **leaf {
                lookup(before, p) != lookup(new, p)
            } else {
                !before_set.contains_key(*p)
            }
        })
        .map(|(p, l)| (p.clone(), *l))
        .collect();
    for e in &mut entries {
        e.fields
            .retain(|p, _| after.contains_key(p) && changed.get(p) != Some(&true));
    }
    let api_version = kind.api_version();
    if !changed.is_empty() {
        match entries
            .iter_mut()
            .find(|e| writer.owns(e, "Update") && e.api_version == api_version)
        {
            Some(e) => {
                e.fields.extend(changed);
                e.time = Some(now.to_string());
            }
            None => entries.push(Entry {
                manager: writer.manager.to_string(),
                operation: "Update".into(),
                api_version,
                time: Some(now.to_string()),
                subresource: writer.subresource.map(str::to_string),
                fields: changed,
            }),
        }
    }
    store_entries(new, entries);
}

/// Merges an applied configuration into the live object: structs and maps by key, keyed
/// lists by item, sets by value; atomic lists and scalars are replaced.
fn merge_applied(live: &mut Value, applied: &Value, schema: Option<SchemaNode>) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) if !schema.is_some_and(SchemaNode::is_atomic_map) => {
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                let child = schema.and_then(|s| match s.shape() {
                    Shape::Struct => s.field(k),
                    Shape::Map => s.values(),
                    _ => None,
                });
                match l.get_mut(k) {
                    Some(existing) => merge_applied(existing, v, child),
                    None => {
                        l.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(a)) => {
            let (kind, keys) = list_kind(schema);
            match kind {
                ListType::Atomic => *l = a.clone(),
                ListType::Set => {
                    for v in a {
                        if !l.contains(v) {
                            l.push(v.clone());
                        }
                    }
                }
                ListType::Map => {
                    let items = schema.and_then(SchemaNode::items);
                    for v in a {
                        let id = key_element(v, &keys);
                        match l
                            .iter_mut()
                            .find(|x| id.is_some() && key_element(x, &keys) == id)
                        {
                            Some(existing) => merge_applied(existing, v, items),
                            None => l.push(v.clone()),
                        }
                    }
                }
            }
        }
        (live, applied) => *live = applied.clone(),
    }
}

/// Server-side apply of `applied` by `writer` to `live` (`None` creates the object).
///
/// Returns the new object with its `managedFields` updated, or the conflicts with other
/// managers when `force` is false.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    writer: Writer,
    force: bool,
    kind: &Resource,
    now: &str,
) -> Result<Value, ApplyError> {
    if !applied.is_object() {
        return Err(ApplyError::NotAnObject);
    }
    let mut applied = applied.clone();
    if let Some(meta) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    let empty = json!({});
    let base = live.unwrap_or(&empty);
    let mut entries = live.map(entries_of).unwrap_or_default();
    // An applier owns values and list items, not the maps holding them.
    let mut set = field_set(&applied, kind);
    set.retain(|p, leaf| *leaf || p.last().is_some_and(|e| e.starts_with("k:")));

    // Conflicts: leaves someone else owns whose value would change.
    let mut conflicts = Vec::new();
    let mut taken: BTreeSet<(usize, Path)> = BTreeSet::new();
    let own = |e: &Entry| writer.owns(e, "Apply");
    for (i, e) in entries.iter().enumerate() {
        if own(e) {
            continue;
        }
        for (p, leaf) in &set {
            if *leaf && e.fields.contains_key(p) && lookup(base, p) != lookup(&applied, p) {
                conflicts.push(Conflict {
                    manager: e.printed(),
                    field: display_path(p),
                });
                taken.insert((i, p.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApplyError::Conflicts(conflicts));
    }
    for (i, p) in taken {
        entries[i].fields.remove(&p);
    }

    let mut object = base.clone();
    merge_applied(&mut object, &applied, SchemaNode::for_resource(kind));

    // Fields this manager applied before and no longer does go, unless someone else owns them.
    let previous = entries.iter().position(own);
    if let Some(i) = previous {
        let dropped: Vec<Path> = entries[i]
            .fields
            .keys()
            .filter(|p| !set.contains_key(*p))
            .cloned()
            .collect();
        for p in dropped {
            let owned_elsewhere = entries
                .iter()
                .enumerate()
                .any(|(j, e)| j != i && e.fields.keys().any(|q| q.starts_with(&p)));
            if !owned_elsewhere {
                remove(&mut object, &p);
            }
        }
        entries.remove(i);
    }
    entries.push(Entry {
        manager: writer.manager.to_string(),
        operation: "Apply".into(),
        api_version: kind.api_version(),
        time: Some(now.to_string()),
        subresource: writer.subresource.map(str::to_string),
        fields: set,
    });
    let present = field_set(&object, kind);
    for e in &mut entries {
        e.fields.retain(|p, _| present.contains_key(p));
    }
    store_entries(&mut object, entries);
    Ok(object)
}

#[cfg(test)]
mod tests;

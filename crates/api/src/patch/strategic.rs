//! The strategic merge patch (`application/strategic-merge-patch+json`), as the API server
//! applies it (apimachinery `util/strategicpatch`, with the server's options: parallel
//! deletion lists are applied and nulls for absent keys are ignored).
//!
//! A JSON merge patch, except where the schema says otherwise:
//! - lists whose strategy is `merge` and whose items are objects are merged by their merge
//!   key: patch items update the item with the same key or are added; a `{"$patch":"delete",
//!   <key>: v}` item removes it and `{"$patch":"replace"}` makes the list the patch's items;
//! - lists of scalars with strategy `merge` (`finalizers`) are unioned, and
//!   `$deleteFromPrimitiveList/<field>` removes values from them;
//! - `$setElementOrder/<field>` fixes the order of the merged list;
//! - `$retainKeys` drops the keys of a map it does not list (volumes, deployment strategy);
//! - `{"$patch":"replace"}` in a map replaces the map, `{"$patch":"delete"}` empties it;
//! - every other list is replaced, and `null` deletes a key.
//!
//! Ordering follows Kubernetes: items named by the patch take the patch's order (or the
//! `$setElementOrder` list's), and the others keep their place relative to them as in the
//! live object.
//!
//! Where Kubernetes would keep directive keys inside values it adds as they are (it later drops
//! them while decoding into Go structs), we strip them, because our objects stay JSON.

use super::gofmt;
use crate::openapi::{SchemaNode, Shape};
use crate::registry::Resource;
use serde_json::{Map, Value};

type Obj = Map<String, Value>;
type Entries = Vec<(String, Value)>;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

/// Why a strategic merge patch could not be applied. The texts are apimachinery's; see
/// [`PatchError::code`] for the HTTP status the API server answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The object or the patch is not a JSON object.
    #[error("invalid JSON document")]
    BadJsonDoc,
    /// A list of lists was merged.
    #[error("lists of lists are not supported")]
    NoListOfLists,
    /// A `$deleteFromPrimitiveList` key has no field name.
    #[error("invalid patch format of primitive list")]
    BadPrimitiveList,
    /// `$retainKeys` is not a list, or the patch sets a key it does not list.
    #[error("invalid patch format of retainKeys")]
    BadRetainKeys,
    /// A `$setElementOrder` key has no field name.
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrder,
    /// The kind has no schema to take merge keys from (custom resources).
    #[error("strategic merge patch format is not supported")]
    Unsupported,
    /// An item of a merged list lacks the merge key.
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey {
        /// The item, printed as Go prints a map.
        map: String,
        /// The merge key.
        key: String,
    },
    /// A value has the wrong JSON type for where it is used.
    #[error("expected a {expected}, but received a {actual}")]
    BadArgType {
        /// The Go type expected.
        expected: &'static str,
        /// The Go type received.
        actual: &'static str,
    },
    /// `$patch` holds something other than `replace`, `delete` (or `merge` in a list).
    #[error("unknown patch type: {directive} in map: {map}")]
    BadPatchType {
        /// The directive's value.
        directive: String,
        /// The map holding it.
        map: String,
    },
    /// `{"$patch":"merge"}` in a list, which Kubernetes has never implemented.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeListDirective,
    /// A list of objects with strategy `merge` has no merge key.
    #[error("cannot merge lists without merge key for {0}")]
    NoMergeKeyDeclared(&'static str),
    /// The items of the lists being merged have different JSON types.
    #[error("list element types are not identical: {0}")]
    MixedElementTypes(String),
    /// `$setElementOrder` was given for a list that is empty in the object and the patch.
    #[error("no elements in any of the given slices")]
    NoElements,
    /// The patch list's items are not in the order of its `$setElementOrder` list.
    #[error("The order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}\n")]
    OrderMismatch {
        /// The patch list, Go-printed.
        patch: String,
        /// The order list, Go-printed.
        order: String,
    },
}

impl PatchError {
    /// The HTTP status the API server answers with: 400 for malformed patches, 422 for the
    /// two errors Kubernetes deems invalid content, 500 for the rest (Kubernetes passes those
    /// on unclassified, which becomes an InternalError).
    pub fn code(&self) -> u16 {
        match self {
            PatchError::BadJsonDoc
            | PatchError::BadPrimitiveList
            | PatchError::BadRetainKeys
            | PatchError::BadSetElementOrder
            | PatchError::Unsupported => 400,
            PatchError::NoListOfLists => 422,
            _ => 500,
        }
    }
}

/// Applies a strategic merge `patch` to `original`, an object of kind `kind`.
pub fn strategic_merge(
    original: &Value,
    patch: &Value,
    kind: &Resource,
) -> Result<Value, PatchError> {
    let schema = SchemaNode::for_resource(kind).ok_or(PatchError::Unsupported)?;
    merge_with_schema(original, patch, schema)
}

/// Applies a strategic merge `patch` to `original`, typed by `schema`.
pub fn merge_with_schema(
    original: &Value,
    patch: &Value,
    schema: SchemaNode,
) -> Result<Value, PatchError> {
    let (Value::Object(original), Value::Object(patch)) = (original, patch) else {
        return Err(PatchError::BadJsonDoc);
    };
    merge_map(original.clone(), patch.clone(), Some(schema)).map(Value::Object)
}

/// The JSON type of a value as Go's reflection distinguishes decoded values.
fn kind_of(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(n) if n.is_f64() => 2,
        Value::Number(_) => 3,
        Value::String(_) => 4,
        Value::Array(_) => 5,
        Value::Object(_) => 6,
    }
}

/// The schema of the value under `key` of a struct or map node.
fn child(schema: Option<SchemaNode>, key: &str) -> Option<SchemaNode> {
    let s = schema?;
    match s.shape() {
        Shape::Struct => s.field(key),
        Shape::Map => s.values(),
        _ => None,
    }
}

/// The merge strategy (without `retainKeys`) and merge key of a field.
fn field_meta(field: Option<SchemaNode>) -> (Option<&'static str>, Option<&'static str>) {
    match field {
        Some(f) => {
            let m = f.patch_meta();
            (m.strategy, m.merge_key)
        }
        None => (None, None),
    }
}

fn merge_map(
    mut original: Obj,
    mut patch: Obj,
    schema: Option<SchemaNode>,
) -> Result<Obj, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                patch.remove(DIRECTIVE);
                Ok(patch)
            }
            Some("delete") => Ok(Obj::new()),
            _ => Err(PatchError::BadPatchType {
                directive: gofmt::value(directive),
                map: gofmt::value(&Value::Object(patch)),
            }),
        };
    }
    apply_retain_keys(&mut original, &mut patch)?;
    apply_element_orders(&mut original, &mut patch, schema)?;

    // Deletion lists go last so that a value both added to and removed from a primitive list
    // in one patch ends up removed, whatever the key order.
    let (deletions, others): (Entries, Entries) = patch
        .into_iter()
        .partition(|(k, _)| k.starts_with(DELETE_FROM_PRIMITIVE_LIST));
    for (key, patch_value) in others.into_iter().chain(deletions) {
        let (key, is_delete_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            Some(rest) => (
                rest.strip_prefix('/')
                    .ok_or(PatchError::BadPrimitiveList)?
                    .to_string(),
                true,
            ),
            None => (key, false),
        };
        if patch_value.is_null() {
            original.remove(&key);
            continue;
        }
        let Some(current) = original.get_mut(&key) else {
            if !is_delete_list {
                insert_new(&mut original, key, patch_value);
            }
            continue;
        };
        if kind_of(current) != kind_of(&patch_value) {
            if !is_delete_list {
                insert_new(&mut original, key, patch_value);
            }
            continue;
        }
        let field = child(schema, &key);
        let current = std::mem::take(current);
        let merged = match (current, patch_value) {
            (Value::Object(o), Value::Object(p)) => {
                let (strategy, _) = field_meta(field);
                Some(if strategy == Some("replace") {
                    Value::Object(p)
                } else {
                    Value::Object(merge_map(o, p, field)?)
                })
            }
            (Value::Array(o), Value::Array(p)) => {
                Some(Value::Array(merge_list_field(o, p, field, is_delete_list)?))
            }
            (_, p) => (!is_directive(&p)).then_some(p),
        };
        match merged {
            Some(v) => {
                original.insert(key, v);
            }
            None => {
                original.remove(&key);
            }
        }
    }
    Ok(original)
}

/// Sets a key the original does not have (or has with another type) to the patch's value,
/// without the nulls and directives the patch may carry inside it.
fn insert_new(original: &mut Obj, key: String, mut value: Value) {
    discard_nulls(&mut value);
    match strip_directives(value) {
        Some(v) => {
            original.insert(key, v);
        }
        None => {
            original.remove(&key);
        }
    }
}

fn is_directive(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.contains_key(DIRECTIVE))
}

fn discard_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(discard_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

/// Removes directives from a value being added: maps carrying `$patch` disappear (`None` at
/// the top), and the key directives are dropped.
fn strip_directives(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE) {
                return None;
            }
            let out = m
                .into_iter()
                .filter(|(k, _)| {
                    k != RETAIN_KEYS
                        && !k.starts_with(SET_ELEMENT_ORDER)
                        && !k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
                })
                .filter_map(|(k, v)| strip_directives(v).map(|v| (k, v)))
                .collect();
            Some(Value::Object(out))
        }
        Value::Array(a) => Some(Value::Array(
            a.into_iter().filter_map(strip_directives).collect(),
        )),
        other => Some(other),
    }
}

fn apply_retain_keys(original: &mut Obj, patch: &mut Obj) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::BadRetainKeys);
    };
    let listed = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || k.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !listed(k) {
            return Err(PatchError::BadRetainKeys);
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// Merges each list named by a `$setElementOrder/<field>` key with its patch list and puts
/// the result in the requested order; both keys leave the patch.
fn apply_element_orders(
    original: &mut Obj,
    patch: &mut Obj,
    schema: Option<SchemaNode>,
) -> Result<(), PatchError> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for key in keys {
        let Some(order) = patch.remove(&key) else {
            continue;
        };
        let Value::Array(order) = order else {
            return Err(PatchError::BadArgType {
                expected: "[]interface {}",
                actual: gofmt::type_name(&order),
            });
        };
        let field_name = key
            .strip_prefix(SET_ELEMENT_ORDER)
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or(PatchError::BadSetElementOrder)?
            .to_string();
        let original_list = match original.get(&field_name) {
            None => None,
            Some(Value::Array(a)) => Some(a.clone()),
            Some(other) => {
                return Err(PatchError::BadArgType {
                    expected: "[]interface {}",
                    actual: gofmt::type_name(other),
                });
            }
        };
        let patch_list = match patch.get(&field_name) {
            None => None,
            Some(Value::Array(a)) => Some(a.clone()),
            Some(other) => {
                return Err(PatchError::BadArgType {
                    expected: "[]interface {}",
                    actual: gofmt::type_name(other),
                });
            }
        };
        let field = child(schema, &field_name);
        let (_, merge_key) = field_meta(field);
        check_order(patch_list.as_deref().unwrap_or(&[]), &order, merge_key)?;

        let merged = match (&original_list, &patch_list) {
            (Some(o), None) => o.clone(),
            (None, Some(p)) => p.iter().cloned().filter_map(strip_directives).collect(),
            (Some(o), Some(p)) => merge_list_field(o.clone(), p.clone(), field, false)?,
            (None, None) => continue,
        };
        let (named, server_only) = partition(merged, &order, merge_key)?;
        let all: Vec<&Value> = original_list
            .iter()
            .flatten()
            .chain(patch_list.iter().flatten())
            .collect();
        let element_kind = element_kind(&all)?;
        let ordered = normalize_order(
            named,
            server_only,
            &order,
            original_list.as_deref().unwrap_or(&[]),
            merge_key,
            element_kind,
        )?;
        original.insert(field_name.clone(), Value::Array(ordered));
        patch.remove(&field_name);
    }
    Ok(())
}

/// The merge-key value of a list item, or the item itself for scalars.
fn identity<'a>(item: &'a Value, merge_key: Option<&str>) -> Option<&'a Value> {
    match merge_key {
        Some(k) => item.as_object().and_then(|m| m.get(k)),
        None => Some(item),
    }
}

fn no_merge_key(item: &Value, key: &str) -> PatchError {
    PatchError::NoMergeKey {
        map: gofmt::value(item),
        key: key.to_string(),
    }
}

/// Checks that the patch list names its items in the order of the `$setElementOrder` list
/// (deleted items and directives aside).
fn check_order(
    patch: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<(), PatchError> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let mut kept = Vec::new();
    for item in patch {
        if merge_key.is_some() {
            let Value::Object(m) = item else {
                return Err(PatchError::BadArgType {
                    expected: "map[string]interface {}",
                    actual: gofmt::type_name(item),
                });
            };
            if m.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                continue;
            }
        }
        kept.push(item);
    }
    let (mut p, mut o) = (0, 0);
    while p < kept.len() && o < order.len() {
        if is_directive(kept[p]) {
            p += 1;
            continue;
        }
        let equal = match merge_key {
            None => kept[p] == &order[o],
            Some(k) => {
                let left = identity(kept[p], Some(k)).ok_or_else(|| no_merge_key(kept[p], k))?;
                let right =
                    identity(&order[o], Some(k)).ok_or_else(|| no_merge_key(&order[o], k))?;
                left == right
            }
        };
        if equal {
            p += 1;
        }
        o += 1;
    }
    if p < kept.len() && o >= order.len() {
        return Err(PatchError::OrderMismatch {
            patch: gofmt::list(patch),
            order: gofmt::list(order),
        });
    }
    Ok(())
}

/// Splits `items` into those `by` names (by merge key, or by value for scalars) and the rest.
fn partition(
    items: Vec<Value>,
    by: &[Value],
    merge_key: Option<&str>,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut named = Vec::new();
    let mut rest = Vec::new();
    for item in items {
        let found = match merge_key {
            None => by.contains(&item),
            Some(k) => {
                let id = identity(&item, Some(k)).ok_or_else(|| no_merge_key(&item, k))?;
                by.iter().any(|b| identity(b, Some(k)) == Some(id))
            }
        };
        if found {
            named.push(item)
        } else {
            rest.push(item)
        }
    }
    Ok((named, rest))
}

/// The common JSON type of the items of the lists being merged.
fn element_kind(items: &[&Value]) -> Result<u8, PatchError> {
    let mut kind = None;
    for item in items {
        let k = kind_of(item);
        match kind {
            None if k == 5 => return Err(PatchError::NoListOfLists),
            None => kind = Some(k),
            Some(prev) if prev != k => {
                let shown: Vec<Value> = items.iter().map(|v| (*v).clone()).collect();
                return Err(PatchError::MixedElementTypes(gofmt::list(&shown)));
            }
            Some(_) => {}
        }
    }
    kind.ok_or(PatchError::NoElements)
}

/// A list field: merged when its strategy is `merge` (or for a deletion list), else replaced.
fn merge_list_field(
    original: Vec<Value>,
    patch: Vec<Value>,
    field: Option<SchemaNode>,
    is_delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    let (strategy, merge_key) = field_meta(field);
    if strategy == Some("merge") || is_delete_list {
        merge_list(
            original,
            patch,
            field.and_then(SchemaNode::items),
            merge_key,
            is_delete_list,
        )
    } else {
        Ok(patch)
    }
}

fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    items: Option<SchemaNode>,
    merge_key: Option<&'static str>,
    is_delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let all: Vec<&Value> = original.iter().chain(patch.iter()).collect();
    let kind = element_kind(&all)?;
    if kind != 6 {
        if is_delete_list {
            return Ok(original
                .into_iter()
                .filter(|v| !patch.contains(v))
                .collect());
        }
        let mut merged: Vec<Value> = Vec::new();
        for v in original.iter().chain(&patch) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        let (named, server_only) = partition(merged, &patch, None)?;
        return normalize_order(named, server_only, &patch, &original, None, kind);
    }
    let Some(key) = merge_key else {
        let name = match items.map(SchemaNode::shape) {
            Some(Shape::Map) => "map",
            _ => "struct",
        };
        return Err(PatchError::NoMergeKeyDeclared(name));
    };

    // Directive items first: deletions by key, and a replace marker that makes the list
    // the patch's ordinary items.
    let mut original = original;
    let mut ordinary = Vec::new();
    let mut replace = false;
    for item in patch {
        let Value::Object(m) = &item else {
            unreachable!("element_kind found only objects")
        };
        match m.get(DIRECTIVE) {
            None => ordinary.push(item),
            Some(d) => match d.as_str() {
                Some("delete") => {
                    let id = m.get(key).ok_or_else(|| no_merge_key(&item, key))?;
                    original.retain(|o| identity(o, Some(key)) != Some(id));
                }
                Some("replace") => replace = true,
                Some("merge") => return Err(PatchError::MergeListDirective),
                _ => {
                    return Err(PatchError::BadPatchType {
                        directive: gofmt::value(d),
                        map: gofmt::value(&item),
                    });
                }
            },
        }
    }
    let (original, patch) = if replace {
        (ordinary, Vec::new())
    } else {
        (original, ordinary)
    };

    let mut merged = original.clone();
    for item in &patch {
        let id = identity(item, Some(key)).ok_or_else(|| no_merge_key(item, key))?;
        match merged
            .iter()
            .position(|o| identity(o, Some(key)) == Some(id))
        {
            Some(i) => {
                let (Value::Object(o), Value::Object(p)) =
                    (std::mem::take(&mut merged[i]), item.clone())
                else {
                    unreachable!("element_kind found only objects")
                };
                merged[i] = Value::Object(merge_map(o, p, items)?);
            }
            None => {
                let mut new = item.clone();
                discard_nulls(&mut new);
                if let Some(v) = strip_directives(new) {
                    merged.push(v);
                }
            }
        }
    }
    let (named, server_only) = partition(merged, &patch, Some(key))?;
    normalize_order(named, server_only, &patch, &original, Some(key), kind)
}

fn position(list: &[Value], item: &Value, merge_key: Option<&str>, kind: u8) -> Option<usize> {
    let id = if kind == 6 {
        identity(item, merge_key)
    } else {
        Some(item)
    };
    list.iter().position(|v| {
        let other = if kind == 6 {
            identity(v, merge_key)
        } else {
            Some(v)
        };
        other == id
    })
}

/// Sorts `named` by `patch_order` and `server_only` by `server_order`, then interleaves
/// them: a server-only item goes before the first patch item that follows it in the live
/// list, so both relative orders are kept.
fn normalize_order(
    named: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
    kind: u8,
) -> Result<Vec<Value>, PatchError> {
    let named = sort_by_order(named, patch_order, merge_key, kind)?;
    let server_only = sort_by_order(server_only, server_order, merge_key, kind)?;
    let before = |l: &Value, r: &Value| match (
        position(server_order, l, merge_key, kind),
        position(server_order, r, merge_key, kind),
    ) {
        (Some(li), Some(ri)) => li < ri,
        _ => false,
    };
    let mut out = Vec::with_capacity(named.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = named.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => before(l, r),
            (None, None) => break,
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}

fn sort_by_order(
    items: Vec<Value>,
    order: &[Value],
    merge_key: Option<&str>,
    kind: u8,
) -> Result<Vec<Value>, PatchError> {
    let mut deleted = Vec::new();
    let mut kept = Vec::new();
    if kind == 6 {
        let key = merge_key.unwrap_or_default();
        for v in items.iter().chain(order) {
            match v {
                Value::Object(m) if m.contains_key(key) => {}
                Value::Object(_) => return Err(no_merge_key(v, key)),
                _ => {
                    return Err(PatchError::BadArgType {
                        expected: "map[string]interface {}",
                        actual: gofmt::type_name(v),
                    });
                }
            }
        }
        for v in items {
            if v.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                deleted.push(v)
            } else {
                kept.push(v)
            }
        }
    } else {
        kept = items;
    }
    // Items the order does not name keep their place; the others follow the order.
    let mut ranked: Vec<(usize, Option<usize>, Value)> = kept
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i, position(order, &v, merge_key, kind), v))
        .collect();
    let known: Vec<usize> = ranked
        .iter()
        .filter(|(_, p, _)| p.is_some())
        .map(|(i, _, _)| *i)
        .collect();
    let mut sorted_known: Vec<(usize, Value)> = ranked
        .iter()
        .filter_map(|(_, p, v)| p.map(|p| (p, v.clone())))
        .collect();
    sorted_known.sort_by_key(|(p, _)| *p);
    for (slot, (_, v)) in known.into_iter().zip(sorted_known) {
        ranked[slot].2 = v;
    }
    let mut out: Vec<Value> = ranked.into_iter().map(|(_, _, v)| v).collect();
    out.extend(deleted);
    Ok(out)
}

#[cfg(test)]
mod tests;

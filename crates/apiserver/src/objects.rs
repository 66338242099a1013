//! The generic object store: API objects of every kind as JSON values on top of a
//! [`Datastore`], with `resourceVersion` taken from the store's revision. No Kubernetes policy
//! lives here (that is the verbs' and the strategies' business), only keys, encoding and paging.

use crate::error::{ApiError, ApiResult};
use api::registry::Resource;
use api::selector::{FieldSelector, LabelSelector};
use base64::Engine;
use serde_json::{Value, json};
use std::sync::Arc;
use store::{Datastore, KeyValue, ListOptions, Revision};

/// API objects on a datastore.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn Datastore>,
}

/// What a list asks for.
#[derive(Default)]
pub struct ListRequest {
    /// Only objects whose labels match.
    pub labels: Option<LabelSelector>,
    /// Only objects whose fields match.
    pub fields: Option<FieldSelector>,
    /// At most this many items per page.
    pub limit: Option<usize>,
    /// The token of the previous page.
    pub continue_token: Option<String>,
}

/// One page of objects.
pub struct ListResult {
    /// The matching objects.
    pub items: Vec<Value>,
    /// The revision the list was read at.
    pub revision: Revision,
    /// The token for the next page, when there is one.
    pub continue_token: Option<String>,
    /// How many more keys follow (before selectors; as Kubernetes reports it).
    pub remaining: Option<usize>,
}

impl Objects {
    /// Objects on `store`.
    pub fn new(store: Arc<dyn Datastore>) -> Self {
        Objects { store }
    }

    /// The underlying datastore.
    pub fn store(&self) -> &Arc<dyn Datastore> {
        &self.store
    }

    /// The object with its `resourceVersion`, from a stored value.
    pub fn decode(kv: &KeyValue) -> ApiResult<Value> {
        let mut obj: Value = serde_json::from_slice(&kv.value).map_err(|e| {
            ApiError::internal(format!("stored object {} is not JSON: {e}", kv.key))
        })?;
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
        }
        Ok(obj)
    }

    /// The stored form: JSON with `metadata` first and no `resourceVersion` (it is the store's
    /// revision, set on every read). Putting metadata first lets [`Objects::raw`] splice the
    /// revision in without parsing the object.
    fn encode(obj: &Value) -> ApiResult<Vec<u8>> {
        let map = obj
            .as_object()
            .ok_or_else(|| ApiError::internal("an object must be a JSON map"))?;
        let mut meta = map.get("metadata").cloned().unwrap_or_else(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            m.remove("resourceVersion");
        }
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(b"{\"metadata\":");
        serde_json::to_writer(&mut out, &meta).map_err(ApiError::internal)?;
        for (k, v) in map.iter().filter(|(k, _)| k.as_str() != "metadata") {
            out.push(b',');
            serde_json::to_writer(&mut out, k).map_err(ApiError::internal)?;
            out.push(b':');
            serde_json::to_writer(&mut out, v).map_err(ApiError::internal)?;
        }
        out.push(b'}');
        Ok(out)
    }

    /// The object's JSON with its `resourceVersion`, spliced into the stored bytes (no parse).
    pub fn raw(kv: &KeyValue) -> ApiResult<Vec<u8>> {
        const PREFIX: &[u8] = b"{\"metadata\":{";
        if !kv.value.starts_with(PREFIX) {
            // Written by something else: take the slow road.
            return serde_json::to_vec(&Self::decode(kv)?).map_err(ApiError::internal);
        }
        let rv = format!("\"resourceVersion\":\"{}\"", kv.mod_revision);
        let rest = &kv.value[PREFIX.len()..];
        let mut out = Vec::with_capacity(kv.value.len() + rv.len() + 1);
        out.extend_from_slice(PREFIX);
        out.extend_from_slice(rv.as_bytes());
        if rest.first() != Some(&b'}') {
            out.push(b',');
        }
        out.extend_from_slice(rest);
        Ok(out)
    }

    /// The object, or `None`.
    pub async fn try_get(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
    ) -> ApiResult<Option<Value>> {
        let (_, kv) = self.store.get(&r.key(ns, name)).await?;
        kv.as_ref().map(Self::decode).transpose()
    }

    /// The object, or 404.
    pub async fn get(&self, r: &Resource, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        self.try_get(r, ns, name)
            .await?
            .ok_or_else(|| ApiError::not_found(r, name))
    }

    /// Lists objects of `r` in `ns` (all namespaces when `None`), filtered and paged.
    pub async fn list(
        &self,
        r: &'static Resource,
        ns: Option<&str>,
        req: &ListRequest,
    ) -> ApiResult<ListResult> {
        let mut items = Vec::new();
        let page = self
            .scan(r, ns, req, |kv| {
                let obj = Self::decode(kv)?;
                let keep = self.matches(r, &obj, req);
                if keep {
                    items.push(obj);
                }
                Ok(keep)
            })
            .await?;
        Ok(ListResult { items, ..page })
    }

    /// Like [`Objects::list`], but each item as JSON bytes: without selectors, no object is
    /// parsed at all (the fast path of big lists).
    pub async fn list_raw(
        &self,
        r: &'static Resource,
        ns: Option<&str>,
        req: &ListRequest,
    ) -> ApiResult<(Vec<Vec<u8>>, ListResult)> {
        let mut items = Vec::new();
        let filtered = req.labels.is_some() || req.fields.is_some();
        let page = self
            .scan(r, ns, req, |kv| {
                let keep = !filtered || self.matches(r, &Self::decode(kv)?, req);
                if keep {
                    items.push(Self::raw(kv)?);
                }
                Ok(keep)
            })
            .await?;
        Ok((items, page))
    }

    /// Walks the matching keys page by page; `take` sees each and says whether it matched.
    /// Returns the list's revision, continue token and remaining count (items left empty).
    async fn scan(
        &self,
        r: &'static Resource,
        ns: Option<&str>,
        req: &ListRequest,
        mut take: impl FnMut(&KeyValue) -> ApiResult<bool>,
    ) -> ApiResult<ListResult> {
        let prefix = r.key_prefix(ns);
        let (mut revision, mut after_key) = match &req.continue_token {
            Some(token) => decode_continue(token, &prefix)?,
            None => (None, None),
        };
        let done = |revision| ListResult {
            items: Vec::new(),
            revision,
            continue_token: None,
            remaining: None,
        };
        // A pinned name reads one key instead of the whole prefix.
        let pinned = req.fields.as_ref().and_then(|f| f.name_selector());
        if let Some(name) =
            pinned.filter(|_| req.continue_token.is_none() && (!r.namespaced || ns.is_some()))
        {
            let (rev, kv) = self.store.get(&r.key(ns, name)).await?;
            if let Some(kv) = kv {
                take(&kv)?;
            }
            return Ok(done(rev));
        }
        let mut taken = 0usize;
        loop {
            let want = req.limit.map(|l| l - taken);
            let page = self
                .store
                .list(
                    &prefix,
                    ListOptions {
                        limit: want,
                        after_key: after_key.clone(),
                        revision,
                    },
                )
                .await?;
            revision = Some(page.revision);
            let last_key = page.items.last().map(|kv| kv.key.clone());
            for kv in &page.items {
                if take(kv)? {
                    taken += 1;
                }
            }
            if page.remaining == 0 || last_key.is_none() {
                return Ok(done(page.revision));
            }
            after_key = last_key;
            if req.limit.is_some_and(|l| taken >= l) {
                let token =
                    encode_continue(page.revision, after_key.as_deref().unwrap_or(""), &prefix);
                let remaining = if req.labels.is_none() && req.fields.is_none() {
                    Some(page.remaining)
                } else {
                    None
                };
                return Ok(ListResult {
                    items: Vec::new(),
                    revision: page.revision,
                    continue_token: Some(token),
                    remaining,
                });
            }
        }
    }

    /// Whether `obj` passes the request's selectors.
    pub fn matches(&self, r: &Resource, obj: &Value, req: &ListRequest) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        req.labels.as_ref().is_none_or(|s| s.matches(labels))
            && req.fields.as_ref().is_none_or(|s| s.matches(r, obj))
    }

    /// Stores a new object; 409 AlreadyExists when the name is taken.
    pub async fn create(&self, r: &Resource, obj: Value) -> ApiResult<Value> {
        let (ns, name) = identity(&obj);
        let key = r.key(ns.as_deref(), &name);
        match self.store.create(&key, Self::encode(&obj)?).await {
            Ok(rev) => Ok(with_revision(obj, rev)),
            Err(store::Error::AlreadyExists { .. }) => Err(ApiError::already_exists(r, &name)),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces an object whose stored revision is `expected`; 409 Conflict otherwise.
    pub async fn update(&self, r: &Resource, obj: Value, expected: Revision) -> ApiResult<Value> {
        let (ns, name) = identity(&obj);
        match self
            .store
            .update(&r.key(ns.as_deref(), &name), Self::encode(&obj)?, expected)
            .await
        {
            Ok(rev) => Ok(with_revision(obj, rev)),
            Err(store::Error::Conflict { .. }) => Err(ApiError::conflict(r, &name)),
            Err(store::Error::NotFound { .. }) => Err(ApiError::not_found(r, &name)),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes an object whose stored revision is `expected`; returns its last state.
    pub async fn delete(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        expected: Revision,
    ) -> ApiResult<Value> {
        match self.store.delete(&r.key(ns, name), Some(expected)).await {
            Ok((rev, kv)) => Ok(with_revision(Self::decode(&kv)?, rev)),
            Err(store::Error::Conflict { .. }) => Err(ApiError::conflict(r, name)),
            Err(store::Error::NotFound { .. }) => Err(ApiError::not_found(r, name)),
            Err(e) => Err(e.into()),
        }
    }
}

/// An object's (namespace, name).
pub fn identity(obj: &Value) -> (Option<String>, String) {
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    (ns, name)
}

/// Drops empty `labels`, `annotations`, `finalizers` and `ownerReferences` from an object's
/// metadata. Kubernetes never shows them empty: its stored form cannot tell an empty map or
/// list from an absent one, so `kubectl label x k-` on the last label leaves no `labels: {}`.
pub fn drop_empty_metadata(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.retain(|k, v| {
            let listy = matches!(
                k.as_str(),
                "labels" | "annotations" | "finalizers" | "ownerReferences"
            );
            let empty = v.is_null()
                || v.as_object().is_some_and(|m| m.is_empty())
                || v.as_array().is_some_and(|a| a.is_empty());
            !(listy && empty)
        });
    }
}

/// An object's stored revision, parsed from its `resourceVersion`.
pub fn revision_of(obj: &Value) -> Option<Revision> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

fn with_revision(mut obj: Value, rev: Revision) -> Value {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(rev.to_string()));
    }
    obj
}

fn encode_continue(rev: Revision, after: &str, prefix: &str) -> String {
    let start = after.strip_prefix(prefix).unwrap_or(after);
    let token = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": start});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(token: &str, prefix: &str) -> ApiResult<(Option<Revision>, Option<String>)> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rev = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    Ok((Some(rev), Some(format!("{prefix}{start}"))))
}

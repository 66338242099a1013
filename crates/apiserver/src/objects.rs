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

/// How many keys a list without a limit reads from the store at a time.
const STORE_PAGE: usize = 500;

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
        let mut out = Vec::with_capacity(kv.value.len() + 32);
        Self::write_raw(kv, &mut out)?;
        Ok(out)
    }

    /// Appends [`Objects::raw`]'s bytes to `out`.
    pub fn write_raw(kv: &KeyValue, out: &mut Vec<u8>) -> ApiResult<()> {
        const PREFIX: &[u8] = b"{\"metadata\":{";
        let Some(rest) = kv.value.strip_prefix(PREFIX) else {
            // Written by something else: take the slow road.
            return serde_json::to_writer(out, &Self::decode(kv)?).map_err(ApiError::internal);
        };
        out.extend_from_slice(PREFIX);
        out.extend_from_slice(b"\"resourceVersion\":\"");
        out.extend_from_slice(kv.mod_revision.to_string().as_bytes());
        out.push(b'"');
        if rest.first() != Some(&b'}') {
            out.push(b',');
        }
        out.extend_from_slice(rest);
        Ok(())
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
        let mut pages = self.pages(r, ns, req)?;
        while let Some(found) = pages.next().await? {
            for Found { kv, obj } in found {
                items.push(obj.map_or_else(|| Self::decode(&kv), Ok)?);
            }
        }
        Ok(ListResult {
            items,
            ..pages.finish()
        })
    }

    /// Reads a list a store page at a time, at one revision: the way to send a big list while
    /// the rest of it is still read, and without parsing an object that no selector needs.
    pub fn pages<'a>(
        &'a self,
        r: &'static Resource,
        ns: Option<&str>,
        req: &'a ListRequest,
    ) -> ApiResult<Pages<'a>> {
        let prefix = r.key_prefix(ns);
        let (revision, after_key) = match &req.continue_token {
            Some(token) => decode_continue(token, &prefix)?,
            None => (None, None),
        };
        // A pinned name reads one key instead of the whole prefix.
        let pinned = req
            .fields
            .as_ref()
            .and_then(|f| f.name_selector())
            .filter(|_| req.continue_token.is_none() && (!r.namespaced || ns.is_some()))
            .map(|name| r.key(ns, name));
        Ok(Pages {
            objects: self,
            r,
            req,
            prefix,
            pinned,
            revision,
            after_key,
            taken: 0,
            end: None,
        })
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

/// A list being read: [`Objects::pages`].
pub struct Pages<'a> {
    objects: &'a Objects,
    r: &'static Resource,
    req: &'a ListRequest,
    prefix: String,
    /// The one key to read, for a `metadata.name` field selector.
    pinned: Option<String>,
    revision: Option<Revision>,
    after_key: Option<String>,
    taken: usize,
    /// Set once the last page was read.
    end: Option<ListResult>,
}

/// A stored object that passed the selectors, parsed if they needed it parsed.
pub struct Found {
    /// As stored.
    pub kv: KeyValue,
    /// The object, when matching it took a parse.
    pub obj: Option<Value>,
}

impl Pages<'_> {
    /// The matching objects of the next store page (perhaps none), or `None` once the list is
    /// done. The first page fixes the revision every later page is read at.
    pub async fn next(&mut self) -> ApiResult<Option<Vec<Found>>> {
        if self.end.is_some() {
            return Ok(None);
        }
        if let Some(key) = self.pinned.take() {
            let (revision, kv) = self.objects.store.get(&key).await?;
            self.end = Some(whole_list(revision));
            return Ok(Some(self.matching(kv.into_iter().collect())?));
        }
        let req = self.req;
        // Without a limit, the store is read in pages all the same.
        let (limit, skip_count) = match req.limit {
            Some(limit) => (limit - self.taken, false),
            None => (STORE_PAGE, true),
        };
        let page = self
            .objects
            .store
            .list(
                &self.prefix,
                ListOptions {
                    limit: Some(limit),
                    after_key: self.after_key.clone(),
                    revision: self.revision,
                    skip_count,
                },
            )
            .await?;
        self.revision = Some(page.revision);
        self.after_key = page.items.last().map(|kv| kv.key.clone());
        let found = self.matching(page.items)?;
        self.taken += found.len();
        let filtered = req.labels.is_some() || req.fields.is_some();
        match &self.after_key {
            None => self.end = Some(whole_list(page.revision)),
            Some(_) if page.remaining == 0 => self.end = Some(whole_list(page.revision)),
            Some(after) if req.limit.is_some_and(|l| self.taken >= l) => {
                self.end = Some(ListResult {
                    items: Vec::new(),
                    revision: page.revision,
                    continue_token: Some(encode_continue(page.revision, after, &self.prefix)),
                    remaining: (!filtered).then_some(page.remaining),
                });
            }
            Some(_) => {}
        }
        Ok(Some(found))
    }

    /// The list's revision, once a page was read.
    pub fn revision(&self) -> Option<Revision> {
        self.revision.or(self.end.as_ref().map(|end| end.revision))
    }

    /// The list's revision, continue token and remaining count (items left empty); call it
    /// after [`Pages::next`] said the list is done.
    pub fn finish(self) -> ListResult {
        self.end
            .unwrap_or_else(|| whole_list(self.revision.unwrap_or_default()))
    }

    fn matching(&self, kvs: Vec<KeyValue>) -> ApiResult<Vec<Found>> {
        if self.req.labels.is_none() && self.req.fields.is_none() {
            return Ok(kvs.into_iter().map(|kv| Found { kv, obj: None }).collect());
        }
        let mut found = Vec::new();
        for kv in kvs {
            let obj = Objects::decode(&kv)?;
            if self.objects.matches(self.r, &obj, self.req) {
                found.push(Found { kv, obj: Some(obj) });
            }
        }
        Ok(found)
    }
}

/// A complete list read at `revision`: no continue token, no remaining count.
pub fn whole_list(revision: Revision) -> ListResult {
    ListResult {
        items: Vec::new(),
        revision,
        continue_token: None,
        remaining: None,
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

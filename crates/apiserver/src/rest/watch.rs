//! GET with `watch=true`: newline-delimited `WatchEvent`s, flushed one by one. Starts with
//! synthetic ADDED events when no resourceVersion is given (or "0"), else from the revision after
//! it; a compacted revision gets an ERROR event with a 410 Status. Selector transitions turn
//! updates into ADDED or DELETED, as kube-apiserver's watch cache does.

use super::Call;
use super::list::list_request;
use crate::error::{ApiError, ApiResult};
use crate::objects::{ListRequest, Objects};
use crate::request;
use crate::table;
use api::registry::Resource;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use jiff::Timestamp;
use serde_json::{Value, json};
use std::time::Duration;
use store::{Event, EventKind};
use tokio::sync::mpsc;

/// kube-apiserver's default watch length when the client sets no timeoutSeconds.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// How long before the end of a watch its last bookmark is sent.
const BOOKMARK_BEFORE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a bookmark is sent to clients that allow them.
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

/// Serves a watch.
pub async fn watch(call: &Call) -> ApiResult<Response> {
    let r = call.target.resource;
    let req = list_request(call)?;
    let timeout = call
        .query
        .int("timeoutSeconds")?
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64));
    let format = Format {
        table: request::wants_table(&call.headers),
        include: call
            .query
            .non_empty("includeObject")
            .unwrap_or("Metadata")
            .to_string(),
        bookmarks: call.query.flag("allowWatchBookmarks"),
    };
    let objects = call.objects().clone();
    let ns = call.ns().map(str::to_string);
    let (initial, from) = match call.query.non_empty("resourceVersion") {
        None | Some("0") => {
            let all = ListRequest {
                labels: req.labels.clone(),
                fields: req.fields.clone(),
                ..Default::default()
            };
            let page = objects.list(r, ns.as_deref(), &all).await?;
            (page.items, page.revision)
        }
        Some(rv) => {
            let from: i64 = rv.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "resourceVersion: Invalid value: {rv:?}: must be a number"
                ))
            })?;
            (Vec::new(), from)
        }
    };
    let content_type = if format.table {
        super::TABLE_CONTENT_TYPE
    } else {
        "application/json"
    };
    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(64);
    tokio::spawn(run(
        objects,
        r,
        ns,
        req,
        initial,
        from,
        format,
        timeout.unwrap_or(DEFAULT_TIMEOUT),
        tx,
    ));
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(resp)
}

struct Format {
    table: bool,
    include: String,
    bookmarks: bool,
}

#[allow(clippy::too_many_arguments)]
async fn run(
    objects: Objects,
    r: &'static Resource,
    ns: Option<String>,
    req: ListRequest,
    initial: Vec<Value>,
    from: i64,
    format: Format,
    timeout: Duration,
    tx: mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
) {
    let plain = req.labels.is_none() && req.fields.is_none() && !format.table;
    let first = std::sync::atomic::AtomicBool::new(true);
    let send = async |kind: &str, obj: &Value| -> bool {
        let line = encode(
            r,
            kind,
            obj,
            &format,
            first.swap(false, std::sync::atomic::Ordering::Relaxed),
        );
        tx.send(Ok(line)).await.is_ok()
    };
    for obj in &initial {
        if !send("ADDED", obj).await {
            return;
        }
    }
    let mut events = match objects
        .store()
        .watch(&r.key_prefix(ns.as_deref()), from)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            let status = ApiError::from(e).status();
            send("ERROR", &status).await;
            return;
        }
    };
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    // Like kube-apiserver, a bookmark goes out just before the watch times out, so the client
    // resumes from the latest revision instead of relisting.
    let last_call = tokio::time::sleep(timeout.saturating_sub(BOOKMARK_BEFORE_TIMEOUT));
    tokio::pin!(last_call);
    let mut last_call_done = false;
    let mut bookmark =
        tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
    let mut last_revision = from;
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            _ = &mut last_call, if format.bookmarks && !last_call_done => {
                last_call_done = true;
                let mark = json!({"kind": r.kind, "apiVersion": r.api_version(),
                                  "metadata": {"resourceVersion": last_revision.to_string()}});
                if !send("BOOKMARK", &mark).await { return; }
            }
            _ = bookmark.tick(), if format.bookmarks => {
                let mark = json!({"kind": r.kind, "apiVersion": r.api_version(),
                                  "metadata": {"resourceVersion": last_revision.to_string()}});
                if !send("BOOKMARK", &mark).await { return; }
            }
            _ = tx.closed() => return,
            next = events.next() => {
                let event = match next {
                    None => return,
                    Some(Ok(e)) => e,
                    Some(Err(e)) => {
                        send("ERROR", &ApiError::from(e).status()).await;
                        return;
                    }
                };
                last_revision = event.revision();
                if plain {
                    // No selector and no table: the stored bytes go out as they are.
                    let Ok(line) = raw_line(&event) else { continue };
                    first.store(false, std::sync::atomic::Ordering::Relaxed);
                    if tx.send(Ok(line)).await.is_err() {
                        return;
                    }
                } else if let Some((kind, obj)) = translate(&objects, r, &req, &event)
                    && !send(kind, &obj).await
                {
                    return;
                }
            }
        }
    }
}

/// The watch line of a store event for a watcher without selectors, from the stored bytes.
fn raw_line(event: &Event) -> Result<Vec<u8>, ApiError> {
    let kind = match event.kind {
        EventKind::Create => "ADDED",
        EventKind::Update => "MODIFIED",
        EventKind::Delete => "DELETED",
    };
    let object = Objects::raw(&event.kv)?;
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(&object);
    line.extend_from_slice(b"}\n");
    Ok(line)
}

/// The watch event a store event becomes for this watcher, if any.
fn translate(
    objects: &Objects,
    r: &Resource,
    req: &ListRequest,
    event: &Event,
) -> Option<(&'static str, Value)> {
    let now = Objects::decode(&event.kv).ok()?;
    let prev_matches = event
        .prev
        .as_ref()
        .and_then(|p| Objects::decode(p).ok())
        .is_some_and(|p| objects.matches(r, &p, req));
    match event.kind {
        EventKind::Create => objects.matches(r, &now, req).then_some(("ADDED", now)),
        EventKind::Update => match (prev_matches, objects.matches(r, &now, req)) {
            (true, true) => Some(("MODIFIED", now)),
            (false, true) => Some(("ADDED", now)),
            (true, false) => Some(("DELETED", now)),
            (false, false) => None,
        },
        EventKind::Delete => {
            (prev_matches || objects.matches(r, &now, req)).then_some(("DELETED", now))
        }
    }
}

fn encode(r: &Resource, kind: &str, obj: &Value, format: &Format, first: bool) -> Vec<u8> {
    let object = if format.table && kind != "ERROR" && kind != "BOOKMARK" {
        json!({
            "kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""))},
            "columnDefinitions": if first { api::table::column_definitions(r) } else { json!([]) },
            "rows": [table::row(r, obj, &format.include, Timestamp::now())],
        })
    } else {
        obj.clone()
    };
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    line
}

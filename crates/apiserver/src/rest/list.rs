//! GET of a collection: a `<Kind>List` (or a Table), filtered by label and field selectors and
//! paged with `limit` and `continue`.

use super::{Call, TABLE_CONTENT_TYPE};
use crate::error::{ApiError, ApiResult};
use crate::objects::{Found, ListRequest, ListResult, Objects, whole_list};
use crate::request;
use crate::table;
use api::registry::Resource;
use api::selector::{FieldSelector, LabelSelector};
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The selectors and paging of a list or watch request.
pub fn list_request(call: &Call) -> ApiResult<ListRequest> {
    let labels = call
        .query
        .non_empty("labelSelector")
        .map(LabelSelector::parse)
        .transpose()
        // The parser's message already reads "unable to parse requirement: ...", as labels.Parse's does.
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let fields = call
        .query
        .non_empty("fieldSelector")
        .map(|s| {
            FieldSelector::parse(s).and_then(|f| f.check_supported(call.target.resource).map(|_| f))
        })
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let limit = call
        .query
        .int("limit")?
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    let continue_token = call.query.non_empty("continue").map(str::to_string);
    Ok(ListRequest {
        labels,
        fields,
        limit,
        continue_token,
    })
}

/// Lists a collection.
pub async fn list(call: &Call) -> ApiResult<Response> {
    let r = call.target.resource;
    let req = list_request(call)?;
    let objects = call.objects().clone();
    if request::wants_table(&call.headers) {
        return table_list(call, &objects, &req).await;
    }
    if req.limit.is_some() {
        // One page: built whole, so its metadata can carry the continue token.
        let mut pages = objects.pages(r, call.ns(), &req)?;
        let (mut items, mut any) = (Vec::new(), false);
        while let Some(found) = pages.next().await? {
            push_items(&mut items, &found, &mut any)?;
        }
        let mut body = list_head(r, &pages.finish())?;
        body.extend_from_slice(&items);
        body.extend_from_slice(LIST_TAIL);
        return Ok(raw_json_response(Body::from(body)));
    }
    // A whole collection is sent as it is read, a store page at a time: the head goes out with
    // the first page, whose revision it names.
    let (tx, mut rx) = mpsc::channel::<ApiResult<Vec<u8>>>(2);
    let ns = call.ns().map(str::to_string);
    tokio::spawn(async move {
        let sent = async {
            let mut pages = objects.pages(r, ns.as_deref(), &req)?;
            let mut chunk = Vec::new();
            let mut started = false;
            let mut any = false;
            while let Some(found) = pages.next().await? {
                if !started {
                    chunk = list_head(r, &whole_list(pages.revision().unwrap_or_default()))?;
                    started = true;
                }
                push_items(&mut chunk, &found, &mut any)?;
                if !chunk.is_empty() && tx.send(Ok(std::mem::take(&mut chunk))).await.is_err() {
                    return Ok(()); // the client went away
                }
            }
            let _ = tx.send(Ok(LIST_TAIL.to_vec())).await;
            Ok(())
        };
        if let Err(e) = sent.await {
            let _ = tx.send(Err(e)).await;
        }
    });
    // An error before anything was sent is the reply; one later can only cut the body short.
    let first = rx
        .recv()
        .await
        .unwrap_or_else(|| Err(ApiError::internal("the list ended early")))?;
    let rest = tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|chunk| chunk.map_err(|e| std::io::Error::other(e.message)));
    let body = futures::stream::once(async { Ok(first) }).chain(rest);
    Ok(raw_json_response(Body::from_stream(body)))
}

/// A list as a Table. Each store page's objects are turned into rows and dropped before the
/// next page is read, so a big list never holds every object parsed at once.
async fn table_list(call: &Call, objects: &Objects, req: &ListRequest) -> ApiResult<Response> {
    let r = call.target.resource;
    let include = call.query.non_empty("includeObject").unwrap_or("Metadata");
    let now = jiff::Timestamp::now();
    let mut pages = objects.pages(r, call.ns(), req)?;
    let mut rows = Vec::new();
    while let Some(found) = pages.next().await? {
        for Found { kv, obj } in found {
            let obj = obj.map_or_else(|| Objects::decode(&kv), Ok)?;
            if !rows.is_empty() {
                rows.push(b',');
            }
            serde_json::to_writer(&mut rows, &table::row(r, &obj, include, now))
                .map_err(ApiError::internal)?;
        }
    }
    let head = table::table(r, &[], Some(list_meta(&pages.finish())), &call.query);
    let mut body = serde_json::to_vec(&head).map_err(ApiError::internal)?;
    // The head ends in `"rows":[]}` (the last key): the rows go between its brackets.
    if !body.ends_with(b"\"rows\":[]}") {
        return Err(ApiError::internal("a Table's rows must come last"));
    }
    body.truncate(body.len() - 2);
    body.extend_from_slice(&rows);
    body.extend_from_slice(b"]}");
    let mut resp = raw_json_response(Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(TABLE_CONTENT_TYPE),
    );
    Ok(resp)
}

/// Closes the items array and the list.
const LIST_TAIL: &[u8] = b"]}";

/// The list up to its opening `"items":[`.
fn list_head(r: &Resource, page: &ListResult) -> ApiResult<Vec<u8>> {
    let head =
        json!({"kind": r.list_kind(), "apiVersion": r.api_version(), "metadata": list_meta(page)});
    let mut body = serde_json::to_vec(&head).map_err(ApiError::internal)?;
    body.pop(); // the closing brace: the items follow
    body.extend_from_slice(b",\"items\":[");
    Ok(body)
}

/// Appends the items' JSON to `out`, each after a comma once `any` item went before.
fn push_items(out: &mut Vec<u8>, found: &[Found], any: &mut bool) -> ApiResult<()> {
    for Found { kv, .. } in found {
        if *any {
            out.push(b',');
        }
        *any = true;
        Objects::write_raw(kv, out)?;
    }
    Ok(())
}

fn raw_json_response(body: Body) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn list_meta(page: &ListResult) -> Value {
    let mut meta = json!({"resourceVersion": page.revision.to_string()});
    if let Some(token) = &page.continue_token {
        meta["continue"] = json!(token);
    }
    if let Some(n) = page.remaining {
        meta["remainingItemCount"] = json!(n);
    }
    meta
}

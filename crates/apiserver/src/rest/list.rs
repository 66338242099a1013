//! GET of a collection: a `<Kind>List` (or a Table), filtered by label and field selectors and
//! paged with `limit` and `continue`.

use super::{Call, TABLE_CONTENT_TYPE, json_response};
use crate::error::{ApiError, ApiResult};
use crate::objects::{ListRequest, ListResult};
use crate::request;
use crate::table;
use api::selector::{FieldSelector, LabelSelector};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

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
    if request::wants_table(&call.headers) {
        let page = call.objects().list(r, call.ns(), &req).await?;
        let t = table::table(r, &page.items, Some(list_meta(&page)), &call.query);
        return Ok(json_response(StatusCode::OK, &t, TABLE_CONTENT_TYPE));
    }
    // Big lists are assembled from the stored bytes, with no object parsed or re-serialised.
    let (items, page) = call.objects().list_raw(r, call.ns(), &req).await?;
    let head =
        json!({"kind": r.list_kind(), "apiVersion": r.api_version(), "metadata": list_meta(&page)});
    let mut body = serde_json::to_vec(&head).map_err(ApiError::internal)?;
    body.pop(); // the closing brace: the items follow
    body.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
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
